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

#endif
