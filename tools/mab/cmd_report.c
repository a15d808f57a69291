/*
 * cmd_report.c - `mab report CONFIG [EXP] [--json]`: who is winning and how
 * sure, from the core's report (mab_report_get(), core/report.c): per arm
 * pulls, mean with its 95% credible interval, P(best), expected loss and
 * share of the last time bucket, the rules in force, then the
 * recommendation, what is not available and the sample-ratio check in
 * words (mab_report.srm_status). --json prints the core's document per
 * experiment (mab_report_json()).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "engine_util.h"
#include "output.h"

/* What storage cannot tell yet, by name, for the line that says so. */
static void print_not_available(const mab_report *r)
{
    static const struct {
        unsigned bit;
        const char *what;
    } fields[] = {{MAB_REPORT_HAS_SHARE, "share of traffic in the last bucket"},
                  {MAB_REPORT_HAS_HISTORY, "history of time buckets"},
                  {MAB_REPORT_HAS_HOLDOUT, "holdout comparison"},
                  {MAB_REPORT_HAS_SRM, "sample-ratio check"},
                  {MAB_REPORT_HAS_LATE, "late rewards"}};
    const char *sep = "  not available: ";
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (r->available & fields[i].bit)
            continue;
        printf("%s%s", sep, fields[i].what);
        sep = ", ";
    }
    if (sep[0] == ',')
        putchar('\n');
}

/* As the core words it in the recommendation: 10^4 draws cannot tell
   certainty from 0.9999, so never "1.000" or "0.000". */
static void format_probability(double p, char *out, size_t cap)
{
    if (p >= 0.9995)
        snprintf(out, cap, ">0.999");
    else if (p < 0.0005)
        snprintf(out, cap, "<0.001");
    else
        snprintf(out, cap, "%.3f", p);
}

/* The policy's parameters: its config object without "plugin". */
static char *policy_parameters(const mab_report *r)
{
    cJSON *params = cJSON_Parse(r->policy_json);
    cJSON_DeleteItemFromObjectCaseSensitive(params, "plugin");
    char *text = params ? cJSON_PrintUnformatted(params) : NULL;
    cJSON_Delete(params);
    return text;
}

/* The operating rules in force, as one line: every rule named, "none"
   for one not set. */
static void print_rules(const mab_report *r)
{
    const mab_rules_info *rules = r->rules;
    if (!rules)
        return;
    printf("  rules: state %s", rules->state);
    if (strcmp(rules->state, "running") != 0)
        printf(" (serving %s)", rules->serve ? rules->serve : "the leader");
    if (rules->floor > 0)
        printf(", floor %g", rules->floor);
    else
        printf(", floor none");
    if (rules->burn_in)
        printf(", burn-in %" PRIu64 " pulls per arm", rules->burn_in);
    else
        printf(", burn-in none");
    if (rules->holdout_share > 0)
        printf(", holdout %g%% (%s%s)", 100 * rules->holdout_share,
               rules->holdout_arm ? "arm " : "uniform",
               rules->holdout_arm ? rules->holdout_arm : "");
    else
        printf(", holdout none");
    if (rules->attribution_window > 0)
        printf(", attribution window %" PRId64 " s\n", rules->attribution_window);
    else
        printf(", attribution window none\n");
}

/* Which bucket the share column is of, and how much history there is. */
static void print_last_bucket(const mab_report *r)
{
    if (!(r->available & MAB_REPORT_HAS_SHARE))
        return;
    time_t start = (time_t)r->last_bucket_start;
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&start, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("  share: of the pulls of the bucket starting %s (%" PRId64 " s wide); "
           "history: %zu buckets\n",
           when, r->bucket_seconds, r->n_history);
}

static int print_report_text(const mab_report *r, int first)
{
    /* Means and intervals: 4 decimals on a reward range up to 1 wide,
       else 2, as the dashboard shows them. */
    int digits = r->reward_max - r->reward_min <= 1 ? 4 : 2;
    text_table table;
    table_init(&table, 7, 0x7eu);
    const char *header[] = {"arm",     "pulls",         "mean", "95% interval",
                            "P(best)", "expected loss", "share"};
    bool ok = table_add_row(&table, header);
    for (size_t i = 0; ok && i < r->n_arms; i++) {
        const mab_report_arm *a = mab_report_arm_at(r, i);
        char id[160], pulls[32], mean[48], interval[104], p_best[32], loss[32], share[32];
        snprintf(id, sizeof id, "%s%s", a->arm_id, i == r->leader ? " *" : "");
        snprintf(pulls, sizeof pulls, "%" PRIu64, a->pulls);
        snprintf(mean, sizeof mean, "%.*f", digits, a->mean);
        snprintf(interval, sizeof interval, "[%.*f, %.*f]", digits, a->ci_low, digits,
                 a->ci_high);
        format_probability(a->p_best, p_best, sizeof p_best);
        snprintf(loss, sizeof loss, "%.2g", a->expected_loss);
        if (r->available & MAB_REPORT_HAS_SHARE)
            snprintf(share, sizeof share, "%.1f%%", 100 * a->share_last_bucket);
        else
            snprintf(share, sizeof share, "-");
        const char *row[] = {id, pulls, mean, interval, p_best, loss, share};
        ok = table_add_row(&table, row);
    }
    char *params = ok ? policy_parameters(r) : NULL;
    ok = ok && params;
    if (ok) {
        printf("%sexperiment %s (policy %s, parameters %s)\n", first ? "" : "\n", r->experiment,
               r->policy, params);
        printf("  %s posterior, %u draws; winner rule: P(best) >= %g and expected loss < %g\n",
               r->model == MAB_REPORT_BETA ? "Beta" : "Normal", r->draws, r->winner_p_best,
               r->winner_expected_loss);
        print_rules(r);
        table_print(&table, stdout, "  ");
        print_last_bucket(r);
        printf("  %s\n", r->recommendation);
        if ((r->available & MAB_REPORT_HAS_HOLDOUT) && isnan(r->holdout_diff))
            printf("  bandit minus holdout, reward per visitor: none yet (a group has fewer "
                   "than 2 visitors)\n");
        else if (r->available & MAB_REPORT_HAS_HOLDOUT)
            printf("  bandit minus holdout, reward per visitor: %.*f [%.*f, %.*f]\n", digits,
                   r->holdout_diff, digits, r->holdout_diff_low, digits, r->holdout_diff_high);
        if (r->available & MAB_REPORT_HAS_LATE)
            printf("  late rewards (refused by the attribution window): %" PRIu64 "\n",
                   r->late_rewards);
        print_not_available(r);
        printf("  sample-ratio check: %s\n", r->srm_status);
    }
    cJSON_free(params);
    table_free(&table);
    return ok ? 0 : fail_oom();
}

int cmd_report(const command_args *args)
{
    const char *config = args->pos[0], *only = args->pos[1];
    bool as_json = option_value(args, "json") != NULL;
    const char *history_text = option_value(args, "history");
    uint64_t history_max = 0;
    if (history_text && (!parse_u64(history_text, &history_max) || history_max < 1 ||
                         history_max > MAB_REPORT_HISTORY_MAX))
        return usage_error(args->cmd, "report: --history '%s' is not an integer in [1, %d]",
                           history_text, MAB_REPORT_HISTORY_MAX);
    mab_engine *engine;
    int status = open_engine(config, MAB_OPEN_READ_ONLY, 0, &engine);
    if (status)
        return status;
    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    if (only && (status = find_experiment(engine, config, only, &info)))
        return close_engine(engine, status);

    /* JSON is built whole, so an error prints none of it. */
    bool ok = true;
    cJSON *root = as_json ? cJSON_CreateObject() : NULL;
    cJSON *experiments = as_json ? json_put(&ok, root, "experiments", cJSON_CreateObject()) : NULL;
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; status == 0 && i < n; i++) {
        mab_error err = {0};
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK) {
            status = fail(&err);
            break;
        }
        if (only && strcmp(info.id, only) != 0)
            continue;
        mab_report report;
        if ((status = load_report(engine, info.id, history_max, &report)))
            break;
        if (as_json) {
            cJSON *doc = report_json(&report);
            if (doc)
                json_put(&ok, experiments, info.id, doc);
            else
                status = EXIT_USER;
        } else {
            status = print_report_text(&report, only || i == 0);
        }
        mab_report_free(&report);
    }
    if (as_json) {
        if (status == 0)
            status = json_print_stdout(root, ok);
        else
            cJSON_Delete(root);
    }
    return close_engine(engine, status);
}
