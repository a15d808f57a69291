/*
 * fuzz_redirect.c - the redirect guard (mab_adapter_check_redirect), with an
 * oracle.
 *
 * The input is a redirect target. Whenever the guard accepts it, the harness
 * reads the target as a browser reads a Location header, with a small
 * resolver of its own written from the WHATWG URL standard (not from the
 * guard): leading and trailing C0 controls and spaces trimmed, tabs and
 * newlines removed anywhere, backslashes read as slashes in special
 * schemes, "//" (and "/\", "\\", ...) starting an authority, "https:x"
 * relative to an https base, userinfo before '@', default ports, hosts
 * percent-decoded and lowercased, dot segments (".", "..", "%2e" forms)
 * removed from the path. The resolved URL must stay on the site (the base's
 * origin) or lie under an entry of redirect_allow (same origin, path under
 * the entry's path); otherwise the harness aborts.
 *
 * The base is the reward endpoint, once as https and once as http, because
 * "https:/x"-style targets resolve differently against each.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mab/adapter.h"
#include "mab/mab.h"

#define URL_MAX 4096

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const allow[] = {"/shop/", "https://shop.example.com/",
                                    "https://shop.example.com:8443/app",
                                    "http://localhost/", "https://pay.example.org/checkout/", NULL};

static mab_engine *engine;
static mab_adapter *adapter;

/* ---- the oracle's resolver --------------------------------------------- */

typedef enum url_kind {
    URL_INVALID, /* the browser cannot parse it: no navigation */
    URL_FOREIGN, /* a non-http(s) scheme (javascript:, data:, ftp:, ...) */
    URL_HTTP     /* http or https: scheme, host, port and path are set */
} url_kind;

typedef struct url {
    url_kind kind;
    char scheme[8];
    char host[URL_MAX];
    int port; /* explicit or the scheme's default */
    char path[URL_MAX];
} url;

static int is_special(const char *scheme)
{
    return !strcmp(scheme, "http") || !strcmp(scheme, "https") || !strcmp(scheme, "ws") ||
           !strcmp(scheme, "wss") || !strcmp(scheme, "ftp") || !strcmp(scheme, "file");
}

static int default_port(const char *scheme)
{
    return strcmp(scheme, "https") == 0 ? 443 : 80;
}

static int slash(char c)
{
    return c == '/' || c == '\\';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A path segment that is "." (1) or ".." (2) once %2e is read as '.'. */
static int dot_segment(const char *s, size_t n)
{
    size_t dots = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '.') {
            i++;
        } else if (i + 2 < n && s[i] == '%' && s[i + 1] == '2' &&
                   (s[i + 2] == 'e' || s[i + 2] == 'E')) {
            i += 3;
        } else {
            return 0;
        }
        dots++;
    }
    return dots == 1 || dots == 2 ? (int)dots : 0;
}

/* Append the segments of `in` (backslashes are slashes) to `path`, applying
   dot segments as the standard's path state does. */
static void path_append(char *path, const char *in, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && !slash(in[j]))
            j++;
        int last = j == n;
        int dots = dot_segment(in + i, j - i);
        if (dots == 2) {
            char *cut = strrchr(path, '/');
            if (cut && cut != path)
                *cut = '\0';
            else
                path[0] = '\0';
            if (last)
                strcat(path, "/");
        } else if (dots == 1) {
            if (last)
                strcat(path, "/");
        } else {
            strcat(path, "/");
            strncat(path, in + i, j - i);
        }
        i = j + 1;
    }
    if (!path[0])
        strcpy(path, "/");
}

/* Authority "user@host:port" of length n into u; 0 when the URL fails. */
static int parse_authority(url *u, const char *s, size_t n)
{
    const char *at = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '@')
            at = s + i;
    if (at) {
        n -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    size_t host_len = 0;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return 0;
        host_len = (size_t)(close - s) + 1;
    } else {
        while (host_len < n && s[host_len] != ':')
            host_len++;
    }
    if (host_len == 0)
        return 0;
    size_t o = 0;
    for (size_t i = 0; i < host_len; i++) {
        char c = s[i];
        if (c == '%' && i + 2 < host_len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        u->host[o++] = (char)tolower((unsigned char)c);
    }
    u->host[o] = '\0';
    u->port = default_port(u->scheme);
    if (host_len < n) { /* ':' then digits, possibly none */
        if (s[host_len] != ':')
            return 0;
        long port = 0;
        size_t digits = 0;
        for (size_t i = host_len + 1; i < n; i++, digits++) {
            if (!isdigit((unsigned char)s[i]))
                return 0;
            port = port * 10 + (s[i] - '0');
            if (port > 65535)
                return 0;
        }
        if (digits)
            u->port = (int)port;
    }
    return 1;
}

/* After the authority, or for a path-absolute reference: the path up to
   '?' or '#'. */
static void parse_path(url *u, const char *s)
{
    size_t n = strcspn(s, "?#");
    u->path[0] = '\0';
    if (n == 0) {
        strcpy(u->path, "/");
        return;
    }
    /* A leading slash only separates; path_append adds one per segment. */
    if (slash(s[0]))
        s++, n--;
    path_append(u->path, s, n);
}

static int parse_after_slashes(url *u, const char *s)
{
    while (slash(*s))
        s++;
    size_t n = strcspn(s, "/\\?#");
    if (!parse_authority(u, s, n))
        return 0;
    parse_path(u, s + n);
    return 1;
}

/* Resolve `input` against `base` (itself already resolved). */
static void resolve(const char *input, const url *base, url *u)
{
    static char buf[URL_MAX * 2];
    size_t len = strlen(input);
    while (len && (unsigned char)input[len - 1] <= 0x20)
        len--;
    size_t start = 0;
    while (start < len && (unsigned char)input[start] <= 0x20)
        start++;
    size_t o = 0;
    for (size_t i = start; i < len && o < sizeof buf - 1; i++)
        if (input[i] != '\t' && input[i] != '\n' && input[i] != '\r')
            buf[o++] = input[i];
    buf[o] = '\0';
    const char *s = buf;

    memset(u, 0, sizeof *u);
    u->kind = URL_HTTP;
    size_t k = 0;
    if (isalpha((unsigned char)s[0])) {
        while (isalnum((unsigned char)s[k]) || s[k] == '+' || s[k] == '-' || s[k] == '.')
            k++;
    }
    if (k && s[k] == ':') {
        char scheme[64] = "";
        for (size_t i = 0; i < k && i < sizeof scheme - 1; i++)
            scheme[i] = (char)tolower((unsigned char)s[i]);
        scheme[k < sizeof scheme - 1 ? k : sizeof scheme - 1] = '\0';
        const char *rest = s + k + 1;
        if (!is_special(scheme) || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
            u->kind = URL_FOREIGN;
            return;
        }
        strcpy(u->scheme, scheme);
        if (strcmp(scheme, base->scheme) != 0) {
            /* special authority slashes: any run of slashes, then the host */
            if (!parse_after_slashes(u, rest))
                u->kind = URL_INVALID;
            return;
        }
        if (rest[0] == '/' && rest[1] == '/') {
            if (!parse_after_slashes(u, rest))
                u->kind = URL_INVALID;
            return;
        }
        s = rest; /* relative to the base, which has this scheme */
    }
    strcpy(u->scheme, base->scheme);
    if (slash(s[0]) && slash(s[1])) {
        if (!parse_after_slashes(u, s))
            u->kind = URL_INVALID;
        return;
    }
    strcpy(u->host, base->host);
    u->port = base->port;
    if (slash(s[0])) {
        parse_path(u, s);
    } else if (s[0] == '?' || s[0] == '#' || s[0] == '\0') {
        strcpy(u->path, base->path);
    } else {
        /* merge: the base's path without its last segment, then s */
        strcpy(u->path, base->path);
        char *cut = strrchr(u->path, '/');
        *cut = '\0';
        size_t n = strcspn(s, "?#");
        char merged[URL_MAX * 2];
        snprintf(merged, sizeof merged, "%s/%.*s", u->path, (int)n, s);
        u->path[0] = '\0';
        path_append(u->path, merged + 1, strlen(merged + 1));
    }
}

static int same_origin(const url *a, const url *b)
{
    return a->kind == URL_HTTP && b->kind == URL_HTTP && !strcmp(a->scheme, b->scheme) &&
           !strcmp(a->host, b->host) && a->port == b->port;
}

static int under_entry(const url *target, const url *entry, const char *entry_text)
{
    if (!same_origin(target, entry))
        return 0;
    /* The entry's path as written: "https://h/app" resolves to "/app". */
    size_t n = strlen(entry->path);
    if (strncmp(target->path, entry->path, n) != 0)
        return 0;
    if (entry->path[n - 1] == '/')
        return 1;
    (void)entry_text;
    return target->path[n] == '\0' || target->path[n] == '/';
}

static void describe(const char *what, const url *u)
{
    fprintf(stderr, "  %s: kind %d scheme \"%s\" host \"%s\" port %d path \"%s\"\n", what,
            u->kind, u->scheme, u->host, u->port, u->path);
}

/* 1 when `target`, resolved against `base_text`, leaves the site and every
   allow entry; *u receives the resolved URL. */
static int leaves(const char *target, const char *base_text, url *u)
{
    url base;
    resolve(base_text, &(url){.kind = URL_HTTP, .scheme = "https", .host = "x", .port = 443,
                              .path = "/"},
            &base);
    resolve(target, &base, u);
    if (u->kind == URL_INVALID || same_origin(u, &base))
        return 0;
    for (const char *const *a = allow; *a; a++) {
        if ((*a)[0] == '/')
            continue; /* relative entries are on the site */
        url entry;
        resolve(*a, &base, &entry);
        if (under_entry(u, &entry, *a))
            return 0;
    }
    return 1;
}

static void oracle(const char *target, const char *base_text)
{
    url u;
    if (!leaves(target, base_text, &u))
        return;
    fprintf(stderr, "fuzz_redirect: the guard accepted \"%s\", which leaves the site "
                    "(base %s) and every allow entry\n",
            target, base_text);
    describe("resolved", &u);
    abort();
}

#define HTTPS_BASE "https://site.invalid/r/color_btn"
#define HTTP_BASE "http://site.invalid/r/color_btn"

/* The oracle is only worth its verdicts: check it on targets whose reading
   by browsers is known, before fuzzing starts. */
static void oracle_self_test(void)
{
    static const char *const leave_both[] = {
        "//evil.example", "/\\evil.example", "\\\\evil.example", " //evil.example",
        "/\t/evil.example", "\n//evil.example/x", "https://evil.example/",
        "HTTPS://EVIL.EXAMPLE/", "https://shop.example.com@evil.example/",
        "https://shop.example.com:8443@evil.example/", "https://shop.example.com.evil/",
        "https://pay.example.org/checkout/../admin", "https://pay.example.org/checkout/%2e%2E/x",
        "https://pay.example.org/checkout", "https://shop.example.com:8443/apple",
        "https://shop.example.com:8443/app/../x", "https://shop.example.com:8443/",
        "http://shop.example.com/", "javascript:alert(1)", "data:text/html,x",
        "ftp://shop.example.com/", "https:\\\\evil.example", "https:///evil.example",
        "https:/\\evil.example",
        "http://localhost:81/", "https://localhost/", NULL};
    static const char *const stay_both[] = {
        "/", "/shop/../x", "/a/%2e%2e/b", "thanks", "?x", "#y", "", "https://shop.example.com/x",
        "HTTPS://SHOP.EXAMPLE.COM/x", "https://shop.example.com:443/",
        "https://user@shop.example.com/", "https://shop.example.com:8443/app",
        "https://shop.example.com:8443/app?x", "https://shop.example.com:8443/app/./y",
        "https://pay.example.org/checkout/a/../b", "http://localhost:80/x",
        "https://sh%6Fp.example.com/", "https://shop.example.com:99999/", NULL};
    /* "https:" without "//" is relative to an https base, an authority
       against an http one (and the reverse for "http:"). */
    static const char *const leave_https_only[] = {"http:evil.example", "http:/evil.example",
                                                    NULL};
    static const char *const leave_http_only[] = {"https:evil.example", "https:/evil.example",
                                                   NULL};
    url u;
    int bad = 0;
    for (const char *const *t = leave_both; *t; t++)
        for (int b = 0; b < 2; b++)
            if (!leaves(*t, b ? HTTP_BASE : HTTPS_BASE, &u))
                bad = fprintf(stderr, "oracle: \"%s\" should leave (base %s)\n", *t,
                              b ? HTTP_BASE : HTTPS_BASE);
    for (const char *const *t = stay_both; *t; t++)
        for (int b = 0; b < 2; b++)
            if (leaves(*t, b ? HTTP_BASE : HTTPS_BASE, &u))
                bad = fprintf(stderr, "oracle: \"%s\" should stay (base %s)\n", *t,
                              b ? HTTP_BASE : HTTPS_BASE);
    for (const char *const *t = leave_https_only; *t; t++)
        if (!leaves(*t, HTTPS_BASE, &u) || leaves(*t, "http://localhost/r/x", &u))
            bad = fprintf(stderr, "oracle: \"%s\" against https and http bases\n", *t);
    for (const char *const *t = leave_http_only; *t; t++)
        if (!leaves(*t, HTTP_BASE, &u) || leaves(*t, HTTPS_BASE, &u))
            bad = fprintf(stderr, "oracle: \"%s\" against http and https bases\n", *t);
    if (bad)
        abort();
}

/* ---- the target ---------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    oracle_self_test();
    fuzz_pin_plugins();
    const char key[] = "bWFiLWZ1enotdGVzdC1rZXktbm90LWEtc2VjcmV0IQA=\n";
    fuzz_write_file(fuzz_path("key"), key, strlen(key), 0600);
    char body[2048] = "\"storage\": {\"plugin\": \"json_file\", \"path\": \"unused.json\"}, "
                      "\"secret_file\": \"key\", \"redirect_allow\": [";
    for (const char *const *a = allow; *a; a++) {
        strcat(body, a == allow ? "\"" : ", \"");
        strcat(body, *a);
        strcat(body, "\"");
    }
    strcat(body, "], \"experiments\": {\"e\": {\"policy\": {\"plugin\": \"ucb1\"},"
                 " \"arms\": {\"a\": 1, \"b\": 2}}}");
    fuzz_write_config("config.json", body);
    mab_error err = {0, ""};
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
    if (mab_open_ex(fuzz_path("config.json"), &opts, &engine, &err) != MAB_OK ||
        mab_adapter_open(engine, &adapter, &err) != MAB_OK) {
        fprintf(stderr, "fuzz_redirect: %s\n", err.message);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > URL_MAX - 1)
        return -1;
    static char target[URL_MAX];
    memcpy(target, data, size);
    target[size] = '\0';
    mab_error err = {0, ""};
    int rc = mab_adapter_check_redirect(adapter, target, &err);
    if (rc != MAB_OK) {
        if (rc != MAB_EINVAL || err.message[0] == '\0')
            abort();
        return 0;
    }
    oracle(target, HTTPS_BASE);
    oracle(target, HTTP_BASE);
    return 0;
}
