/*
 * cmd_import.c - `mab import CONFIG FILE [--replace]` and `mab import CONFIG
 * --from-flask-mab FILE [--replace]`: add counters to the config's storage
 * in one all-or-nothing step, from a file written by `mab export` (read by
 * libmab's record-set reader, include/mab/records.h) or from a Flask-MAB
 * JSON storage file.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mab/records.h"

#include "commands.h"
#include "engine_util.h"
#include "output.h"

/* Records pointing into a parsed Flask-MAB file (not owned: free the array only). */
typedef struct record_list {
    mab_record *records;
    size_t n, cap;
} record_list;

static bool record_list_push(record_list *list, const mab_record *r)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 64;
        mab_record *grown = realloc(list->records, cap * sizeof *grown);
        if (!grown)
            return false;
        list->records = grown;
        list->cap = cap;
    }
    list->records[list->n++] = *r;
    return true;
}

/* ---- Flask-MAB files -------------------------------------------------- */

/* Parse JSON text, or print "FILE: invalid JSON at line L, column C". */
static cJSON *parse_input_json(const char *path, const char *text)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (root)
        return root;
    unsigned long line = 1, column = 1;
    for (const char *p = text; end && p < end; p++) {
        if (*p == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    fprintf(stderr, "mab: %s: invalid JSON at line %lu, column %lu; nothing was imported\n",
            path, line, column);
    return NULL;
}

static bool flask_counter(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > (double)MAB_RECORDS_COUNTER_MAX)
        return false;
    *out = (uint64_t)d;
    return true;
}

/* Counts of what a Flask-MAB import matched, for its report. */
typedef struct flask_report {
    size_t experiments, arms, skipped_experiments, skipped_arms;
    uint64_t pulls, rewards;
    bool fractional; /* some reward sum was not a whole number */
} flask_report;

/* One Flask-MAB bandit into records of the experiment of the same name. */
static bool flask_bandit_records(mab_engine *engine, const char *path, const cJSON *bandit,
                                 record_list *list, flask_report *report)
{
    const char *name = bandit->string;
    const cJSON *arms = cJSON_GetObjectItemCaseSensitive(bandit, "arms");
    const cJSON *pulls = cJSON_GetObjectItemCaseSensitive(bandit, "pulls");
    const cJSON *reward = cJSON_GetObjectItemCaseSensitive(bandit, "reward");
    int n = cJSON_GetArraySize(arms);
    if (!cJSON_IsObject(bandit) || !cJSON_IsArray(arms) || !cJSON_IsArray(pulls) ||
        !cJSON_IsArray(reward) || cJSON_GetArraySize(pulls) != n ||
        cJSON_GetArraySize(reward) != n) {
        fprintf(stderr,
                "mab: %s: %s: expected a Flask-MAB bandit with arrays \"arms\", \"pulls\" and "
                "\"reward\" of one length; nothing was imported\n",
                path, name);
        return false;
    }
    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    bool known = false;
    for (size_t i = 0; !known && i < mab_experiment_count(engine); i++)
        known = mab_experiment_at(engine, i, &info, NULL) == MAB_OK && strcmp(info.id, name) == 0;
    if (!known) {
        printf("%s: no experiment of that name in the config, skipped (%d arms)\n", name, n);
        report->skipped_experiments++;
        report->skipped_arms += (size_t)n;
        return true;
    }
    size_t matched = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *id = cJSON_GetArrayItem(arms, i);
        const cJSON *sum = cJSON_GetArrayItem(reward, i);
        mab_record r = {0};
        if (!cJSON_IsString(id) || !flask_counter(cJSON_GetArrayItem(pulls, i), &r.pulls) ||
            !cJSON_IsNumber(sum) || !isfinite(sum->valuedouble) || sum->valuedouble < 0 ||
            sum->valuedouble > (double)MAB_RECORDS_COUNTER_MAX) {
            fprintf(stderr,
                    "mab: %s: %s: arm %d: expected a string id, a pull count and a "
                    "non-negative reward sum; nothing was imported\n",
                    path, name, i);
            return false;
        }
        mab_choice choice = MAB_STRUCT_INIT(mab_choice);
        if (mab_arm_lookup(engine, name, id->valuestring, &choice, NULL) != MAB_OK) {
            printf("%s.%s: no arm of that name in the config, skipped\n", name, id->valuestring);
            report->skipped_arms++;
            continue;
        }
        /* Flask-MAB keeps only the sum of rewards; with 0/1 clicks it is also
           their count and the sum of their squares. */
        r.experiment = name;
        r.arm = id->valuestring;
        r.reward_sum = sum->valuedouble;
        r.reward_sum_sq = sum->valuedouble;
        r.rewards = (uint64_t)llround(sum->valuedouble);
        report->fractional |= sum->valuedouble != floor(sum->valuedouble);
        if (!record_list_push(list, &r)) {
            fail_oom();
            return false;
        }
        report->pulls += r.pulls;
        report->rewards += r.rewards;
        matched++;
    }
    printf("%s: matched %zu of %d arms\n", name, matched, n);
    report->experiments++;
    report->arms += matched;
    return true;
}

static bool flask_records(mab_engine *engine, const char *path, const cJSON *root,
                          record_list *list, flask_report *report)
{
    if (!cJSON_IsObject(root)) {
        fprintf(stderr,
                "mab: %s: expected a Flask-MAB storage file (a JSON object of bandit name -> "
                "bandit); nothing was imported\n",
                path);
        return false;
    }
    for (const cJSON *bandit = root->child; bandit; bandit = bandit->next)
        if (!flask_bandit_records(engine, path, bandit, list, report))
            return false;
    return true;
}

/* ---- the command ------------------------------------------------------ */

/* Records of a file written by `mab export`; false after printing why. */
static bool export_records(const char *path, const char *text, size_t len, mab_record **records,
                           size_t *n)
{
    mab_error err = {0};
    if (mab_records_parse(text, len, path, MAB_RECORDS_EXPORT, records, n, &err) == MAB_OK)
        return true;
    if (err.code == MAB_ENOMEM)
        fail_oom();
    else
        fail_message("%s; nothing was imported", err.message);
    return false;
}

int cmd_import(const command_args *args)
{
    const char *config = args->pos[0], *path = args->pos[1];
    bool flask = option_value(args, "from-flask-mab") != NULL;
    bool replace = option_value(args, "replace") != NULL;
    size_t len;
    char *text = read_input_file(path, &len);
    if (!text)
        return EXIT_USER;
    cJSON *root = NULL;
    mab_record *parsed = NULL; /* an export's records: one allocation */
    record_list list = {0};    /* Flask-MAB records, pointing into root */
    bool ok;
    if (flask) {
        ok = (root = parse_input_json(path, text)) != NULL;
    } else {
        ok = export_records(path, text, len, &parsed, &list.n);
        list.records = parsed;
    }
    free(text);
    if (!ok)
        return EXIT_USER;

    mab_engine *engine;
    int status = open_engine(config, 0, 0, &engine);
    if (status) {
        cJSON_Delete(root);
        mab_records_free(parsed);
        return status;
    }
    flask_report report = {0};
    if (flask && !flask_records(engine, path, root, &list, &report))
        status = EXIT_USER;
    if (status == 0 && flask && list.n == 0)
        status = fail_message("%s: no bandit matched an experiment and arm of %s; nothing was "
                              "imported",
                              path, config);
    mab_error err = {0};
    if (status == 0 && mab_import(engine, list.records, list.n, replace, &err) != MAB_OK)
        status = fail(&err);
    status = close_engine(engine, status);
    if (status == 0 && flask) {
        printf("imported %zu arms of %zu experiments (%" PRIu64 " pulls, %" PRIu64
               " rewards)%s; skipped %zu experiments and %zu arms\n",
               report.arms, report.experiments, report.pulls, report.rewards,
               replace ? ", replacing their counters" : "", report.skipped_experiments,
               report.skipped_arms);
        if (report.fractional)
            printf("note: some reward sums are not whole numbers; reward counts were rounded "
                   "(Flask-MAB keeps only sums, so counts assume 0/1 rewards)\n");
    } else if (status == 0) {
        printf("imported %zu records from %s%s\n", list.n, path,
               replace ? ", replacing the counters of their experiments" : "");
    }
    if (flask)
        free(list.records);
    mab_records_free(parsed);
    cJSON_Delete(root);
    return status;
}
