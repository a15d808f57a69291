/*
 * internal.h - declarations shared by the files of libmab (mab__ prefix).
 * Nothing here is exported; the public API is include/mab/.
 */
#ifndef MAB_INTERNAL_H
#define MAB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mab/mab.h"
#include "mab/plugin.h"
#include "mab/rng.h"

struct mab_rng {
    uint64_t s[4];
};

void mab__rng_seed(mab_rng *rng, uint64_t seed);
void mab__rng_seed_random(mab_rng *rng);

#define MAB__ID_MAX 128 /* longest experiment or arm id */

/* A view of one config object (a plugin's, a section, the top level); see
   plugin.h. */
struct mab_params {
    const cJSON *object;     /* the JSON object (not owned, unless `owned`) */
    char *where;             /* "FILE: JSON.PATH" of the object, for errors;
                                "FILE" alone for the top level */
    char *config_dir;        /* directory relative paths resolve against */
    int top_level;           /* keys are named "FILE: key", not "WHERE.key" */
    unsigned char *used;     /* used[i]: child i was read through a getter */
    size_t n_children;
    mab_params *parent;      /* the view this one was read from (mab_params_object) */
    mab_params *nested;      /* the first view read from this one, linked by next */
    mab_params *next;
    char *key;               /* this view's key in parent */
    char error[MAB_ERROR_MAX]; /* last error, full sentence */
    cJSON *owned;            /* freed with params (mab_params_parse, sections) */
};

/* Set up params over `object`; `where` and `config_dir` are copied. */
int mab__params_init(mab_params *p, const cJSON *object, const char *where,
                     const char *config_dir);
void mab__params_fini(mab_params *p);
/* Mark `key` as read by the core (plugin, sync, ...). */
void mab__params_mark_used(mab_params *p, const char *key);
/* Mark every key of p's object used (keys a plugin could not be asked about). */
void mab__params_mark_all_used(mab_params *p);
/* The value of `key` (marked read), or NULL: for values no getter reads
   (arrays). */
const cJSON *mab__params_item(mab_params *p, const char *key);
/* The "FILE: JSON.PATH" that names `key` of p in errors; NULL when out of
   memory. Free it. */
char *mab__params_key_path(const mab_params *p, const char *key);
/* mab_params_check_unread(). */
int mab__params_check_unused(mab_params *p, mab_error *err);

/* How many times this process's ancestors forked to make it: compare two
   readings to know whether a fork() happened in between (engine.c). */
unsigned mab__fork_generation(void);

/* Copy of a string; NULL when out of memory. */
char *mab__strdup(const char *s);
/* Print into a fresh string; NULL when out of memory. */
char *mab__asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
