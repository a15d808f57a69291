/*
 * fuzz_mabd_params.c - mabd's request parameters (hosts/mabd/request_params.c):
 * the experiment list of /v1/choose/EXP,EXP and /r/EXP,EXP, the single id
 * of /v1/reward/EXP and /v1/reset/EXP, and ?value=X.
 *
 * The input (up to its first NUL) is the parameter as libmicrohttpd hands
 * it over. Oracles: an accepted list holds 1 to 32 valid ids that, joined
 * with ',', give the input back; a list is accepted exactly when every
 * comma-separated part is a valid id and there are at most 32; an accepted
 * number is finite and strtod reads the whole input as that number.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request_params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The same rules, written again: each part 1..128 of [A-Za-z0-9_-]. */
static int list_ok(const char *s)
{
    size_t parts = 0, len = 0;
    for (const char *p = s;; p++) {
        if (*p == ',' || *p == '\0') {
            if (len == 0 || len > MABD_ID_MAX)
                return 0;
            parts++;
            len = 0;
            if (*p == '\0')
                break;
            continue;
        }
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", *p))
            return 0;
        len++;
    }
    return parts <= MABD_MAX_EXPERIMENTS_PER_REQUEST;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return -1;
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    size_t len = strlen(s);

    int one = mabd_valid_id(s, len);
    if (one != (len > 0 && len <= MABD_ID_MAX && strchr(s, ',') == NULL && list_ok(s)))
        abort();

    char ids[MABD_MAX_EXPERIMENTS_PER_REQUEST][MABD_ID_MAX + 1];
    size_t n = 0;
    int ok = mabd_split_ids(s, ids, &n);
    if (ok != list_ok(s))
        abort();
    if (ok) {
        if (n == 0 || n > MABD_MAX_EXPERIMENTS_PER_REQUEST)
            abort();
        char *joined = malloc(len + 1);
        if (!joined)
            abort();
        joined[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            if (!mabd_valid_id(ids[i], strlen(ids[i])))
                abort();
            if (i)
                strcat(joined, ",");
            strcat(joined, ids[i]);
        }
        if (strcmp(joined, s) != 0)
            abort();
        free(joined);
    }

    double v = 12345;
    if (mabd_parse_number(s, &v)) {
        char *end;
        errno = 0;
        double again = strtod(s, &end);
        if (!isfinite(v) || *end || again != v || s[0] == ' ')
            abort();
    } else if (v != 12345) {
        abort(); /* untouched on refusal */
    }
    free(s);
    return 0;
}
