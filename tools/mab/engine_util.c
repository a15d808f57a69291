/*
 * engine_util.c - opening and closing engines and reading their
 * experiments for the commands of `mab`.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_util.h"
#include "json_exact.h"
#include "output.h"

/* The config sections of the hosts shipped with mab: `mab` accepts a config
   any of them reads (each host checks the contents of its own). */
const char *const host_sections[] = {"mabd", NULL};

int open_engine(const char *config, unsigned flags, uint64_t seed, mab_engine **out)
{
    mab_options opts = {.struct_size = sizeof opts, .flags = flags, .seed = seed};
    mab_error err = {0};
    if (mab_open_sections(config, &opts, host_sections, out, &err) != MAB_OK) {
        /* A store that a server holds: reading commands open it read-only
           (MAB_OPEN_READ_ONLY), so only a writing command gets here. */
        if (err.code == MAB_EBUSY)
            return fail_message("%s\nmab: this command writes to the store: stop the server "
                                "first, or use the lmdb storage, which the server and mab "
                                "share", err.message);
        return fail(&err);
    }
    return 0;
}

int close_engine(mab_engine *engine, int status)
{
    mab_error err = {0};
    if (mab_close(engine, &err) != MAB_OK) {
        fail(&err);
        if (status == 0)
            status = EXIT_USER;
    }
    return status;
}

int find_experiment(mab_engine *engine, const char *config, const char *id,
                    mab_experiment_info *info)
{
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; i < n; i++) {
        mab_error err = {0};
        if (mab_experiment_at(engine, i, info, &err) != MAB_OK)
            return fail(&err);
        if (strcmp(info->id, id) == 0)
            return 0;
    }
    return fail_message("%s: no experiment \"%s\"", config, id);
}

int load_stats(mab_engine *engine, const mab_experiment_info *info, mab_arm_stats **arms)
{
    size_t n = 0;
    mab_error err = {0};
    *arms = calloc(info->n_arms ? info->n_arms : 1, sizeof **arms);
    if (!*arms)
        return fail_oom();
    (*arms)[0].struct_size = sizeof **arms;
    if (mab_stats(engine, info->id, *arms, info->n_arms, &n, &err) != MAB_OK) {
        free(*arms);
        *arms = NULL;
        return fail(&err);
    }
    return 0;
}

int load_report(mab_engine *engine, const char *experiment, size_t history_max,
                mab_report *report)
{
    mab_error err = {0};
    memset(report, 0, sizeof *report);
    report->struct_size = sizeof *report;
    if (mab_report_get_buckets(engine, experiment, history_max, report, &err) != MAB_OK)
        return fail(&err);
    return 0;
}

cJSON *report_json(const mab_report *report)
{
    char *text = NULL;
    mab_error err = {0};
    if (mab_report_json(report, &text, &err) != MAB_OK) {
        fail(&err);
        return NULL;
    }
    /* Numbers exactly as the library wrote them (json_exact.h). */
    cJSON *doc = json_exact_parse(text);
    mab_report_json_free(text);
    if (!doc)
        fail_oom();
    return doc;
}

char *read_input_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail_message("%s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *grown = realloc(text, cap);
            if (!grown) {
                free(text);
                fclose(f);
                fail_oom();
                return NULL;
            }
            text = grown;
        }
        size_t got = fread(text + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int saved = errno;
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(text);
        fail_message("%s: cannot read: %s", path, strerror(saved));
        return NULL;
    }
    text[n] = '\0';
    *len = n;
    return text;
}
