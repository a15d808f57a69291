/*
 * engine_util.h - opening a config's engine for one command and reading
 * what commands print, with errors printed the `mab` way.
 */
#ifndef MAB_TOOL_ENGINE_UTIL_H
#define MAB_TOOL_ENGINE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mab/mab.h"

/* The config sections of the hosts shipped with mab (NULL-terminated). */
extern const char *const host_sections[];

/* mab_open_sections with these flags, seed and host_sections; 0 or
   EXIT_USER after printing why. */
int open_engine(const char *config, unsigned flags, uint64_t seed, mab_engine **out);

/* Close (which writes what is pending); a failed close turns success into 1. */
int close_engine(mab_engine *engine, int status);

/* Find an experiment's description by id; config names the file in errors. */
int find_experiment(mab_engine *engine, const char *config, const char *id,
                    mab_experiment_info *info);

/* The counters of every arm of an experiment; *arms is freed by the caller. */
int load_stats(mab_engine *engine, const mab_experiment_info *info, mab_arm_stats **arms);

/* The core's report of an experiment (mab_report_get()); released by the
   caller with mab_report_free(). 0 or EXIT_USER after printing why. */
/* The core's report of one experiment, with at most history_max buckets of
   history (0: the library's default); release with mab_report_free(). */
int load_report(mab_engine *engine, const char *experiment, size_t history_max,
                mab_report *report);

/* The report as the core's JSON document, parsed (cJSON_Delete it);
   NULL after printing why. */
cJSON *report_json(const mab_report *report);

/* A file's whole text, NUL-terminated (*len excludes the NUL; the text may
   hold other NUL bytes), or NULL after printing "mab: FILE: REASON". */
char *read_input_file(const char *path, size_t *len);

#endif /* MAB_TOOL_ENGINE_UTIL_H */
