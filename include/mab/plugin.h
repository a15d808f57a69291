/*
 * plugin.h - what every plugin (policy or storage) shares with the core:
 * the export macro and typed, validated access to its config parameters.
 *
 * A plugin never sees the config's JSON. The core hands it a mab_params for
 * its own object of the config (an experiment's "policy" object, or the
 * "storage" object). Each getter validates type and range and, on a bad
 * value, records an error that names the full JSON path of the key, e.g.
 * "shop.json: experiments.color_btn.policy.epsilon: 1.5 is outside [0, 1]".
 * A key present in the config that the plugin never asked for is reported
 * by the core as unknown once create/open returned, so typos cannot pass.
 *
 * Hosts read their own config section the same way: mab_config_section()
 * (mab.h) returns a mab_params over it, and the host calls
 * mab_params_check_unread() itself once it has read what it knows.
 *
 * Changelog (as SQLite's iVersion notes: what each version added):
 *  - 0.1: everything below.
 *  - 0.2: nothing added or changed. (Policy plugins of ABI 2 reach these
 *    getters through the function table of policy.h instead of linking
 *    them.)
 */
#ifndef MAB_PLUGIN_H
#define MAB_PLUGIN_H

#include <stdint.h>

#include "mab.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the one symbol a plugin exports (build plugins with -fvisibility=hidden). */
#if defined(__GNUC__)
#define MAB_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define MAB_PLUGIN_EXPORT
#endif

/**
 * @brief Read a number. Missing key: *out = def, MAB_OK.
 * @return MAB_OK, or MAB_ECONFIG when the value is not a finite number or
 *         lies outside [min, max] (the error is recorded in params).
 */
MAB_EXPORT int mab_params_double(mab_params *p, const char *key, double def, double min,
                                 double max, double *out);

/** @brief Read an integer (a JSON number without fraction) in [min, max]. */
MAB_EXPORT int mab_params_int(mab_params *p, const char *key, int64_t def, int64_t min,
                              int64_t max, int64_t *out);

/** @brief Read a boolean (JSON true/false); *out is 0 or 1. */
MAB_EXPORT int mab_params_bool(mab_params *p, const char *key, int def, int *out);

/**
 * @brief Read a string. *out stays valid until the plugin's create/open
 *        returns (for a view from mab_config_section() or mab_params_parse():
 *        until mab_params_free()); copy it to keep it.
 */
MAB_EXPORT int mab_params_string(mab_params *p, const char *key, const char *def,
                                 const char **out);

/**
 * @brief Read an array of at most `max` strings. A missing key reads as an
 *        empty array.
 * @param out receives the strings (caller's array of `max` pointers); they
 *        stay valid as long as those of mab_params_string().
 * @param n receives how many were read.
 * @return MAB_OK, or MAB_ECONFIG (not an array, an element that is not a
 *         string, more than max elements) with the JSON path in p's error.
 */
MAB_EXPORT int mab_params_strings(mab_params *p, const char *key, size_t max, const char **out,
                                  size_t *n);

/**
 * @brief Read a file path; a relative path is resolved against the directory
 *        of the config file. def may be NULL: then a missing key is an error.
 * @param buf receives the resolved path (NUL-terminated).
 * @return MAB_OK, MAB_ECONFIG (missing, not a string, too long for buf).
 */
MAB_EXPORT int mab_params_path(mab_params *p, const char *key, const char *def, char *buf,
                               size_t buf_len);

/**
 * @brief Read a nested object (e.g. "cookie": {...}) as a mab_params of its
 *        own: its getters' errors name the path ("FILE: web.tls.cert: ...").
 *        A missing key gives an empty view, whose getters return their
 *        defaults.
 * @param out receives a view owned by p: do not free it; it lives as long
 *        as p. Reading the same key twice gives the same view.
 * @return MAB_OK, MAB_ECONFIG (the value is not an object; recorded in p)
 *         or MAB_ENOMEM.
 */
MAB_EXPORT int mab_params_object(mab_params *p, const char *key, mab_params **out);

/**
 * @brief Refuse keys nobody read: the first key of p's object, or of a
 *        nested object read through mab_params_object(), that no getter
 *        asked for. A key present twice in one object is refused too.
 *        The core does this for plugins after create/open; a host calls it
 *        on its mab_config_section() view.
 * @return MAB_OK, or MAB_ECONFIG with err (may be NULL) and p's last error
 *         set to e.g. "shop.json: web: unknown key \"prot\"".
 */
MAB_EXPORT int mab_params_check_unread(mab_params *p, mab_error *err);

/** @brief 1 when the key is present in the plugin's config object. */
MAB_EXPORT int mab_params_has(const mab_params *p, const char *key);

/**
 * @brief Record a plugin-specific config error about `key` (NULL: the
 *        object itself); the core prefixes the file and JSON path.
 * @return MAB_ECONFIG.
 */
MAB_EXPORT int mab_params_fail(mab_params *p, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/**
 * @brief Build a mab_params from a JSON object text, for unit tests of a
 *        plugin outside an engine. `where` names it in errors (e.g. "test").
 * @return MAB_OK, MAB_ECONFIG (not a JSON object) or MAB_ENOMEM.
 */
MAB_EXPORT int mab_params_parse(const char *json_object, const char *where, mab_params **out,
                                mab_error *err);

/**
 * @brief The last error recorded in params ("" when none). An error recorded
 *        in a nested view (mab_params_object()) is recorded in the views it
 *        was read from too, so the outermost view always holds it.
 */
MAB_EXPORT const char *mab_params_last_error(const mab_params *p);

/** @brief Free a mab_params from mab_params_parse(). NULL is fine. */
MAB_EXPORT void mab_params_free(mab_params *p);

#ifdef __cplusplus
}
#endif
#endif /* MAB_PLUGIN_H */
