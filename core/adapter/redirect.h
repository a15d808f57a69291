/*
 * redirect.h - the open-redirect guard of the adapter (rules: adapter.h,
 * mab_adapter_check_redirect). Pure functions over strings.
 */
#ifndef MAB_REDIRECT_H
#define MAB_REDIRECT_H

#include <stddef.h>

/* 1 when `entry` may appear in redirect_allow: a relative path accepted by
   the guard, or "http(s)://HOST[:PORT]/PATH". Else 0 and *why says why. */
int mab__redirect_allow_entry_ok(const char *entry, const char **why);

/* 1 when `target` is a safe redirect target given the allow-list. Else 0
   and *why says why (a static sentence fragment). */
int mab__redirect_check(const char *target, char *const *allow, size_t n_allow,
                        const char **why);

#endif
