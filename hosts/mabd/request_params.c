/*
 * request_params.c - mabd's request parameter parsing (request_params.h).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "request_params.h"

int mabd_valid_id(const char *s, size_t n)
{
    if (n == 0 || n > MABD_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int mabd_split_ids(const char *list, char ids[][MABD_ID_MAX + 1], size_t *n)
{
    *n = 0;
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (*n == MABD_MAX_EXPERIMENTS_PER_REQUEST || !mabd_valid_id(p, len))
            return 0;
        memcpy(ids[*n], p, len);
        ids[(*n)++][len] = '\0';
        if (p[len] == '\0')
            return 1;
        p += len + 1;
    }
}

int mabd_parse_number(const char *s, double *out)
{
    if (!s || !*s || *s == ' ')
        return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}
