/*
 * request_params.h - parsing of mabd's request parameters: experiment ids
 * in a route ("/v1/choose/EXP1,EXP2", "/v1/reward/EXP") and numbers in a
 * query ("?value=X"). Pure functions over strings, so tests/fuzz can call
 * them without a server.
 */
#ifndef MABD_REQUEST_PARAMS_H
#define MABD_REQUEST_PARAMS_H

#include <stddef.h>

#define MABD_MAX_EXPERIMENTS_PER_REQUEST 32
#define MABD_ID_MAX 128

/* 1 when s[0..n) is an id as the config allows them: 1 to MABD_ID_MAX of
   A-Z a-z 0-9 _ -; else 0. */
int mabd_valid_id(const char *s, size_t n);

/* Split "exp1,exp2" into ids (at most MABD_MAX_EXPERIMENTS_PER_REQUEST, each
   valid); *n receives the count. 0 when malformed (an empty or invalid id,
   too many ids); then ids and *n hold what was read before the fault. */
int mabd_split_ids(const char *list, char ids[][MABD_ID_MAX + 1], size_t *n);

/* Read a whole string as a finite number (strtod syntax, no leading space,
   nothing after it). 1 and *out set, or 0 and *out untouched. */
int mabd_parse_number(const char *s, double *out);

/* A request's context features (docs/hosts.md, "Context features"):
   from the query ("?f.NAME=NUMBER") or a JSON body ("features": {...}). */
#define MABD_FEATURES_MAX 64

typedef struct mabd_features {
    size_t n;
    char names[MABD_FEATURES_MAX][MABD_ID_MAX + 1];
    const char *name_ptrs[MABD_FEATURES_MAX]; /* names[i], for mab_request_set_features */
    double values[MABD_FEATURES_MAX];
    char error[MABD_ID_MAX + 120]; /* why the last add failed */
} mabd_features;

void mabd_features_init(mabd_features *f);

/* Add feature `name` (name_len bytes; an id as above). `text` is its value
   as text: a finite number (mabd_parse_number), else the add fails; NULL
   text adds the feature as missing (NAN), for a JSON null. Returns 1, or 0
   with f->error saying why (bad name, not a number, given twice, too many);
   then f is unchanged. */
int mabd_features_add(mabd_features *f, const char *name, size_t name_len, const char *text);

/* The same with a number already parsed (a JSON number). */
int mabd_features_add_value(mabd_features *f, const char *name, size_t name_len, double value);

#endif
