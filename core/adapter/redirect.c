/*
 * redirect.c - decide whether a redirect target is safe to send in a
 * Location header, so that a reward-and-redirect endpoint can never be used
 * as an open redirect.
 *
 * Browsers are generous with what they treat as "another host": "//host",
 * "/\host" and "\\host" all leave the site, they strip tabs and newlines
 * from URLs before parsing, and some servers decode "%2F" before routing.
 * So a relative target must be plain: one leading '/', then printable ASCII
 * with no backslash and no percent-encoded '/', '\' or control character.
 * An absolute target must match an allow-list entry by scheme, host and
 * port exactly and by path prefix, with no "." or ".." segment in its path
 * (the browser resolves them, which could climb out of the entry's path).
 */
#include <string.h>
#include <strings.h>

#include "redirect.h"

#define TARGET_MAX 2048

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Every byte printable ASCII, no backslash, every '%' a well-formed escape
   of a byte that is itself harmless. */
static int plain_characters(const char *s, const char **why)
{
    size_t n = strlen(s);
    if (n == 0) {
        *why = "empty target";
        return 0;
    }
    if (n > TARGET_MAX) {
        *why = "target longer than 2048 characters";
        return 0;
    }
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f) {
            *why = "control, space or non-ASCII character in target";
            return 0;
        }
        if (c == '\\') {
            *why = "backslash in target";
            return 0;
        }
        if (c == '%') {
            int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
            if (hi < 0 || lo < 0) {
                *why = "malformed percent-escape in target";
                return 0;
            }
            int decoded = hi * 16 + lo;
            if (decoded == '/' || decoded == '\\' || decoded < 0x20 || decoded == 0x7f) {
                *why = "percent-encoded '/', '\\' or control character in target";
                return 0;
            }
            p += 2;
        }
    }
    return 1;
}

static int relative_ok(const char *s, const char **why)
{
    if (s[0] != '/') {
        *why = "not a relative path (must start with '/') and not in redirect_allow";
        return 0;
    }
    if (s[1] == '/') {
        *why = "target starts with '//' (another host)";
        return 0;
    }
    return plain_characters(s, why);
}

/* Split "scheme://authority/path": lengths of scheme and authority, offset
   of the path (which may be empty). 0 when not of that shape. */
static int split_absolute(const char *s, size_t *scheme_len, size_t *authority_start,
                          size_t *path_start)
{
    const char *colon = strstr(s, "://");
    if (!colon || colon == s)
        return 0;
    for (const char *p = s; p < colon; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    *scheme_len = (size_t)(colon - s);
    *authority_start = *scheme_len + 3;
    *path_start = *authority_start + strcspn(s + *authority_start, "/?#");
    return 1;
}

int mab__redirect_allow_entry_ok(const char *entry, const char **why)
{
    if (entry[0] == '/')
        return relative_ok(entry, why);
    size_t scheme_len, authority, path;
    if (!split_absolute(entry, &scheme_len, &authority, &path) ||
        !((scheme_len == 4 && strncasecmp(entry, "http", 4) == 0) ||
          (scheme_len == 5 && strncasecmp(entry, "https", 5) == 0))) {
        *why = "expected a relative path \"/...\" or \"http(s)://HOST[:PORT]/PATH\"";
        return 0;
    }
    if (path == authority) {
        *why = "no host after the scheme";
        return 0;
    }
    int seen_colon = 0;
    for (size_t i = authority; i < path; i++) {
        char c = entry[i];
        int host_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '-';
        if (c == ':' && !seen_colon) {
            seen_colon = 1;
            continue;
        }
        if (!(seen_colon ? (c >= '0' && c <= '9') : host_char)) {
            *why = "the host may hold only letters, digits, '.', '-' and a ':PORT'";
            return 0;
        }
    }
    if (entry[path] != '/') {
        *why = "expected a path after the host (at least \"/\"), so that lookalike hosts "
               "cannot match";
        return 0;
    }
    return plain_characters(entry, why);
}

/* A path segment "." or ".." (a '.' may be written %2e): the browser removes
   it, so "https://host/app/../admin" is not under "https://host/app/". */
static int has_dot_segment(const char *path)
{
    const char *p = path;
    while (*p && *p != '?' && *p != '#') {
        p++; /* the '/' before the segment */
        size_t dots = 0;
        for (;;) {
            if (*p == '.')
                p++;
            else if (p[0] == '%' && p[1] == '2' && (p[2] == 'e' || p[2] == 'E'))
                p += 3;
            else
                break;
            dots++;
        }
        if ((dots == 1 || dots == 2) && (*p == '/' || *p == '?' || *p == '#' || *p == '\0'))
            return 1;
        p += strcspn(p, "/?#");
    }
    return 0;
}

static int absolute_match(const char *target, const char *entry)
{
    size_t t_scheme, t_auth, t_path, e_scheme, e_auth, e_path;
    if (!split_absolute(target, &t_scheme, &t_auth, &t_path) ||
        !split_absolute(entry, &e_scheme, &e_auth, &e_path))
        return 0;
    if (t_scheme != e_scheme || strncasecmp(target, entry, t_scheme) != 0)
        return 0;
    if (t_path - t_auth != e_path - e_auth ||
        strncasecmp(target + t_auth, entry + e_auth, t_path - t_auth) != 0)
        return 0;
    const char *want = entry + e_path, *have = target + t_path;
    size_t n = strlen(want);
    if (strncmp(have, want, n) != 0)
        return 0;
    if (want[n - 1] == '/')
        return 1;
    char next = have[n];
    return next == '\0' || next == '/' || next == '?' || next == '#';
}

int mab__redirect_check(const char *target, char *const *allow, size_t n_allow,
                        const char **why)
{
    if (!target) {
        *why = "no target";
        return 0;
    }
    if (target[0] == '/')
        return relative_ok(target, why);
    if (!plain_characters(target, why))
        return 0;
    size_t scheme_len, authority, path;
    if (split_absolute(target, &scheme_len, &authority, &path) && target[path] == '/' &&
        has_dot_segment(target + path)) {
        *why = "'.' or '..' path segment in an absolute target";
        return 0;
    }
    for (size_t i = 0; i < n_allow; i++)
        if (allow[i][0] != '/' && absolute_match(target, allow[i]))
            return 1;
    *why = "not a relative path and not under an entry of redirect_allow";
    return 0;
}
