/*
 * cmd_stats.c - `mab stats CONFIG [--json]`: every arm's counters, as a
 * table or as one JSON object.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "commands.h"
#include "engine_util.h"
#include "output.h"

static int print_stats_text(mab_engine *engine)
{
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        mab_arm_stats *arms;
        mab_error err = {0};
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK)
            return fail(&err);
        int status = load_stats(engine, &info, &arms);
        if (status)
            return status;

        text_table table;
        table_init(&table, 5, 0x1eu);
        const char *header[] = {"arm", "pulls", "rewards", "reward_sum", "mean"};
        bool ok = table_add_row(&table, header);
        for (size_t a = 0; ok && a < info.n_arms; a++) {
            char pulls[32], rewards[32], sum[40], mean[40];
            snprintf(pulls, sizeof pulls, "%" PRIu64, arms[a].pulls);
            snprintf(rewards, sizeof rewards, "%" PRIu64, arms[a].rewards);
            snprintf(sum, sizeof sum, "%.10g", arms[a].reward_sum);
            snprintf(mean, sizeof mean, "%.6f", arms[a].mean);
            const char *row[] = {arms[a].arm_id, pulls, rewards, sum, mean};
            ok = table_add_row(&table, row);
        }
        if (ok) {
            printf("%sexperiment %s (policy %s)\n", i ? "\n" : "", info.id, info.policy);
            table_print(&table, stdout, "  ");
        }
        table_free(&table);
        free(arms);
        if (!ok)
            return fail_oom();
    }
    return 0;
}

/* {"experiments":{EXP:{"policy":NAME,"arms":{ARM:{"pulls":N,"rewards":N,
   "reward_sum":X,"mean":X, and the rest of the arm's fields in the core's
   report: "ci_low", "ci_high", "p_best", "expected_loss", "share_last_bucket",
   ...}}, "rules": the rules in force, as in the report}}}, built
   whole so that an error prints none of it. The arms come from the report,
   which reads every arm in one snapshot. */
static int print_stats_json(mab_engine *engine)
{
    bool ok = true;
    cJSON *root = cJSON_CreateObject();
    cJSON *experiments = json_put(&ok, root, "experiments", cJSON_CreateObject());
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; ok && i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        mab_report report;
        mab_error err = {0};
        int status = mab_experiment_at(engine, i, &info, &err) == MAB_OK
                         ? load_report(engine, info.id, 0, &report)
                         : fail(&err);
        cJSON *doc = status ? NULL : report_json(&report);
        if (!status)
            mab_report_free(&report);
        if (!doc) {
            cJSON_Delete(root);
            return status ? status : EXIT_USER;
        }
        cJSON *exp = json_put(&ok, experiments, info.id, cJSON_CreateObject());
        json_put(&ok, exp, "policy", cJSON_CreateString(info.policy));
        cJSON *arms = ok ? cJSON_DetachItemFromObjectCaseSensitive(doc, "arms") : NULL;
        json_put(&ok, exp, "arms", arms);
        cJSON *rules = ok ? cJSON_DetachItemFromObjectCaseSensitive(doc, "rules") : NULL;
        json_put(&ok, exp, "rules", rules);
        cJSON_Delete(doc);
    }
    return json_print_stdout(root, ok);
}

int cmd_stats(const command_args *args)
{
    mab_engine *engine;
    int status = open_engine(args->pos[0], MAB_OPEN_READ_ONLY, 0, &engine);
    if (status)
        return status;
    status = option_value(args, "json") ? print_stats_json(engine) : print_stats_text(engine);
    return close_engine(engine, status);
}
