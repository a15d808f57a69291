/*
 * request_params.c - mabd's request parameter parsing (request_params.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
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

void mabd_features_init(mabd_features *f)
{
    f->n = 0;
    f->error[0] = '\0';
}

int mabd_features_add_value(mabd_features *f, const char *name, size_t name_len, double value)
{
    if (!mabd_valid_id(name, name_len)) {
        snprintf(f->error, sizeof f->error,
                 "a feature name must be 1 to %d of A-Z a-z 0-9 _ -", MABD_ID_MAX);
        return 0;
    }
    for (size_t i = 0; i < f->n; i++)
        if (strlen(f->names[i]) == name_len && memcmp(f->names[i], name, name_len) == 0) {
            snprintf(f->error, sizeof f->error, "feature %.*s is given twice", (int)name_len,
                     name);
            return 0;
        }
    if (f->n == MABD_FEATURES_MAX) {
        snprintf(f->error, sizeof f->error, "more than %d features", MABD_FEATURES_MAX);
        return 0;
    }
    memcpy(f->names[f->n], name, name_len);
    f->names[f->n][name_len] = '\0';
    f->name_ptrs[f->n] = f->names[f->n];
    f->values[f->n++] = value;
    return 1;
}

int mabd_features_add(mabd_features *f, const char *name, size_t name_len, const char *text)
{
    double value = NAN;
    if (text && !mabd_parse_number(text, &value)) {
        snprintf(f->error, sizeof f->error, "feature %.*s: \"%.40s\" is not a finite number",
                 (int)(name_len < MABD_ID_MAX ? name_len : MABD_ID_MAX), name, text);
        return 0;
    }
    return mabd_features_add_value(f, name, name_len, value);
}
