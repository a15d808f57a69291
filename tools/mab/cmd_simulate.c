/*
 * cmd_simulate.c - `mab simulate`: simulated visitors against arms with
 * known rewards, one run of the experiment's own policy or a comparison of
 * policies over many runs (the simulator itself is tools/simulate).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "simulate.h"

#include "commands.h"
#include "engine_util.h"
#include "output.h"

/*
 * The config's "seed", when it is a non-negative integer, so that a
 * simulation without --seed follows it. Anything unreadable is left to
 * mab_open to report.
 */
static bool config_seed(const char *path, uint64_t *seed)
{
    char *text = sim_read_file(path, NULL);
    if (!text)
        return false;
    bool found = false;
    cJSON *root = cJSON_Parse(text);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (cJSON_IsNumber(item) && item->valuedouble >= 0 && item->valuedouble < 0x1.0p64 &&
        item->valuedouble == floor(item->valuedouble)) {
        *seed = (uint64_t)item->valuedouble;
        found = true;
    }
    cJSON_Delete(root);
    free(text);
    return found;
}

/* Below 2^53, so that the printed seed also works as the config's "seed". */
static bool random_seed(uint64_t *seed)
{
    if (getrandom(seed, sizeof *seed, 0) != (ssize_t)sizeof *seed)
        return false;
    *seed &= (UINT64_C(1) << 53) - 1;
    return true;
}

/* Parse "X1,X2,..." into a fresh array of finite numbers; a usage error
   names the option and the bad item. */
static int parse_numbers(const command *cmd, const char *option, const char *text,
                         double **out, size_t *n_out)
{
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    double *values = malloc(n * sizeof *values);
    char *copy = strdup(text);
    if (!values || !copy) {
        free(values);
        free(copy);
        return fail_oom();
    }
    char *item = copy;
    for (size_t i = 0; i < n; i++) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        if (!parse_double(item, &values[i]) || !isfinite(values[i])) {
            int status = usage_error(cmd, "simulate: %s value %zu ('%s') is not a number",
                                     option, i + 1, item);
            free(values);
            free(copy);
            return status;
        }
        item = comma ? comma + 1 : item + strlen(item);
    }
    free(copy);
    *out = values;
    *n_out = n;
    return 0;
}

/* The options, by the names of the command table in mab.c. */
enum {
    SIM_PROBS, SIM_MEANS, SIM_SD, SIM_STEPS, SIM_RUNS, SIM_SEED, SIM_POLICIES, SIM_THREADS,
    SIM_CSV, SIM_PLOT, SIM_REPORT_EVERY, SIM_JSON, SIM_PERSIST, SIM_CHANGE_AT, SIM_PROBS_AFTER,
    SIM_DRIFT, SIM_DRIFT_PERIOD, SIM_DELAY, SIM_WORKERS, SIM_REFRESH, SIM_CONTEXT, SIM_RATE,
    SIM_N_OPTIONS
};
static const char *const sim_option_names[SIM_N_OPTIONS] = {
    "probs", "means", "sd", "steps", "runs", "seed", "policies", "threads",
    "csv", "plot", "report-every", "json", "persist", "change-at", "probs-after",
    "drift", "drift-period", "delay", "workers", "refresh", "context", "rate"};

/* Runs per policy of a comparison without --runs. */
#define SIM_DEFAULT_RUNS 20

/* The command line of `mab simulate`, checked. */
typedef struct sim_args {
    const char *config;
    const char *experiment; /* NULL: the config's only experiment */
    sim_kind kind;
    double *param, *sd; /* param: --probs or --means; sd: --sd, NULL for Bernoulli */
    size_t n_param, n_sd;
    uint64_t steps, runs, seed, report_every, threads;
    bool json, persist;
    bool compare; /* any of --policies, --runs, --threads, --csv, --plot, a scenario */
    const char *policies, *csv, *plot;
    sim_scenario scenario;
    double *param_after; /* --probs-after */
    size_t n_after;
    bool delay_seconds;  /* --delay ended in 's' */
    double delay_given;  /* --delay as written (visitors or seconds) */
} sim_args;

static void sim_args_free(sim_args *a)
{
    free(a->param);
    free(a->sd);
    free(a->param_after);
}

static int parse_count_option(const command *cmd, const char *name, const char *text,
                              uint64_t max, uint64_t *out)
{
    if (!parse_u64(text, out) || *out == 0 || *out > max)
        return usage_error(cmd, "simulate: --%s '%s' is not an integer in [1, %" PRIu64 "]",
                           name, text, max);
    return 0;
}

/* A finite number >= min (and <= max), or a usage error naming the option. */
static int parse_real_option(const command *cmd, const char *name, const char *text, double min,
                             double max, double *out)
{
    if (!parse_double(text, out) || !isfinite(*out) || *out < min || *out > max)
        return usage_error(cmd, "simulate: --%s '%s' is not a number in [%g, %g]", name, text,
                           min, max);
    return 0;
}

/* The scenario options; a->scenario.rate is set before. */
static int parse_scenario(const command *cmd, const char *const *opt, sim_args *a)
{
    sim_scenario *sc = &a->scenario;
    int status = 0;
    uint64_t v;
    if (opt[SIM_RATE])
        status = parse_real_option(cmd, "rate", opt[SIM_RATE], 1e-6, 1e9, &sc->rate);
    if (!status && opt[SIM_CHANGE_AT] != NULL) {
        status = parse_count_option(cmd, "change-at", opt[SIM_CHANGE_AT], UINT64_C(1) << 40, &v);
        sc->change_at = v;
    }
    if (!status && (opt[SIM_CHANGE_AT] != NULL) != (opt[SIM_PROBS_AFTER] != NULL))
        status = usage_error(cmd, "simulate: --change-at and --probs-after go together");
    if (!status && opt[SIM_PROBS_AFTER]) {
        status = parse_numbers(cmd, "--probs-after", opt[SIM_PROBS_AFTER], &a->param_after,
                               &a->n_after);
        if (!status && a->n_after != a->n_param)
            status = usage_error(cmd, "simulate: --probs-after has %zu values, --probs %zu",
                                 a->n_after, a->n_param);
        for (size_t i = 0; !status && i < a->n_after; i++)
            if (!(a->param_after[i] >= 0 && a->param_after[i] <= 1))
                status = usage_error(cmd, "simulate: --probs-after value %zu (%g) is not a "
                                          "probability in [0, 1]",
                                     i + 1, a->param_after[i]);
        sc->param_after = a->param_after;
    }
    sc->drift_period = 86400;
    if (!status && opt[SIM_DRIFT])
        status = parse_real_option(cmd, "drift", opt[SIM_DRIFT], 0, 1, &sc->drift);
    if (!status && opt[SIM_DRIFT_PERIOD]) {
        if (!opt[SIM_DRIFT])
            status = usage_error(cmd, "simulate: --drift-period needs --drift");
        else
            status = parse_real_option(cmd, "drift-period", opt[SIM_DRIFT_PERIOD], 1e-3, 1e12,
                                       &sc->drift_period);
    }
    if (!status && opt[SIM_DELAY]) {
        /* "100": visitors; "30s": simulated seconds. */
        char *text = strdup(opt[SIM_DELAY]);
        if (!text)
            return fail_oom();
        size_t len = strlen(text);
        a->delay_seconds = len > 1 && text[len - 1] == 's';
        if (a->delay_seconds)
            text[len - 1] = '\0';
        if (!parse_double(text, &a->delay_given) || !isfinite(a->delay_given) ||
            a->delay_given < 0 || a->delay_given > 1e12)
            status = usage_error(cmd, "simulate: --delay '%s' is not a mean delay in visitors "
                                      "(100) or simulated seconds (30s)",
                                 opt[SIM_DELAY]);
        free(text);
        sc->delay = a->delay_seconds ? a->delay_given * sc->rate : a->delay_given;
    }
    if (!status && opt[SIM_WORKERS]) {
        status = parse_count_option(cmd, "workers", opt[SIM_WORKERS], SIM_WORKERS_MAX, &v);
        sc->workers = (unsigned)v;
    }
    if (!status && opt[SIM_REFRESH]) {
        status = parse_count_option(cmd, "refresh", opt[SIM_REFRESH], 86400000, &v);
        sc->refresh_ms = (uint32_t)v;
    }
    if (!status && (opt[SIM_WORKERS] != NULL) != (opt[SIM_REFRESH] != NULL))
        status = usage_error(cmd, "simulate: --workers and --refresh go together");
    if (!status && opt[SIM_CONTEXT]) {
        const char *d = strncmp(opt[SIM_CONTEXT], "linear:", 7) == 0 ? opt[SIM_CONTEXT] + 7 : "";
        if (!parse_u64(d, &v) || v == 0 || v > SIM_CONTEXT_MAX)
            status = usage_error(cmd, "simulate: --context '%s' is not linear:D with D in "
                                      "[1, %d]",
                                 opt[SIM_CONTEXT], SIM_CONTEXT_MAX);
        sc->context_dim = (unsigned)v;
    }
    if (!status && a->kind != SIM_BERNOULLI &&
        (opt[SIM_CHANGE_AT] || opt[SIM_DRIFT] || opt[SIM_CONTEXT]))
        status = usage_error(cmd, "simulate: --change-at, --drift and --context need "
                                  "Bernoulli arms (--probs)");
    return status;
}

static int parse_sim_args(const command *cmd, const char *const *pos, const char *const *opt,
                          sim_args *a)
{
    memset(a, 0, sizeof *a);
    a->config = pos[0];
    a->experiment = pos[1];
    a->steps = 10000;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    a->threads = cpus > 0 ? (uint64_t)cpus : 1;
    a->json = opt[SIM_JSON] != NULL;
    a->persist = opt[SIM_PERSIST] != NULL;
    a->policies = opt[SIM_POLICIES];
    a->csv = opt[SIM_CSV];
    a->plot = opt[SIM_PLOT];
    a->compare = opt[SIM_POLICIES] || opt[SIM_RUNS] || opt[SIM_THREADS] || opt[SIM_CSV] ||
                 opt[SIM_PLOT] || opt[SIM_CHANGE_AT] || opt[SIM_PROBS_AFTER] || opt[SIM_DRIFT] ||
                 opt[SIM_DRIFT_PERIOD] || opt[SIM_DELAY] || opt[SIM_WORKERS] ||
                 opt[SIM_REFRESH] || opt[SIM_CONTEXT] || opt[SIM_RATE];
    a->runs = a->compare ? SIM_DEFAULT_RUNS : 1;
    a->scenario.rate = SIM_DEFAULT_RATE;

    if (!opt[SIM_PROBS] && !opt[SIM_MEANS])
        return usage_error(cmd, "simulate: --probs or --means is required");
    if (opt[SIM_PROBS] && (opt[SIM_MEANS] || opt[SIM_SD]))
        return usage_error(cmd, "simulate: --probs (Bernoulli arms) cannot be combined with "
                                "--means/--sd (Gaussian arms)");
    if (opt[SIM_MEANS] && !opt[SIM_SD])
        return usage_error(cmd, "simulate: --means needs --sd");
    if (a->compare && (a->persist || opt[SIM_REPORT_EVERY]))
        return usage_error(cmd, "simulate: --persist and --report-every work only with a single "
                                "run of the experiment's own policy (no --policies, --runs, "
                                "--threads, --csv, --plot or scenario option)");
    int status = 0;
    if (opt[SIM_STEPS])
        status = parse_count_option(cmd, "steps", opt[SIM_STEPS], UINT64_C(1) << 40, &a->steps);
    if (!status && opt[SIM_RUNS])
        status = parse_count_option(cmd, "runs", opt[SIM_RUNS], 1000000, &a->runs);
    if (!status && opt[SIM_THREADS])
        status = parse_count_option(cmd, "threads", opt[SIM_THREADS], 1024, &a->threads);
    if (!status && opt[SIM_REPORT_EVERY])
        status = parse_count_option(cmd, "report-every", opt[SIM_REPORT_EVERY], UINT64_MAX,
                                    &a->report_every);
    if (status)
        return status;
    if (opt[SIM_SEED]) {
        if (!parse_u64(opt[SIM_SEED], &a->seed))
            return usage_error(cmd, "simulate: --seed '%s' is not an unsigned 64-bit integer",
                               opt[SIM_SEED]);
    } else if (!config_seed(a->config, &a->seed) && !random_seed(&a->seed)) {
        return fail_message("cannot get a random seed: %s", strerror(errno));
    }
    a->kind = opt[SIM_PROBS] ? SIM_BERNOULLI : SIM_GAUSSIAN;
    status = parse_numbers(cmd, a->kind == SIM_BERNOULLI ? "--probs" : "--means",
                           a->kind == SIM_BERNOULLI ? opt[SIM_PROBS] : opt[SIM_MEANS],
                           &a->param, &a->n_param);
    if (!status && a->kind == SIM_BERNOULLI) {
        for (size_t i = 0; i < a->n_param; i++) {
            if (!(a->param[i] >= 0 && a->param[i] <= 1)) {
                char *copy = strdup(opt[SIM_PROBS]);
                char *item = copy;
                for (size_t j = 0; copy && j < i; j++)
                    item = strchr(item, ',') + 1;
                if (copy && strchr(item, ','))
                    *strchr(item, ',') = '\0';
                status = usage_error(cmd,
                                     "simulate: --probs value %zu ('%s') is not a probability "
                                     "in [0, 1]",
                                     i + 1, copy ? item : "?");
                free(copy);
                break;
            }
        }
    }
    if (!status && opt[SIM_SD]) {
        status = parse_numbers(cmd, "--sd", opt[SIM_SD], &a->sd, &a->n_sd);
        if (!status && a->n_sd != 1 && a->n_sd != a->n_param)
            status = usage_error(cmd, "simulate: --sd has %zu values; give one for all arms "
                                      "or one per arm (%zu)",
                                 a->n_sd, a->n_param);
    }
    if (!status)
        status = parse_scenario(cmd, opt, a);
    return status;
}

/* The experiment to simulate: EXP, or the config's only experiment. */
static int pick_experiment(const command *cmd, mab_engine *engine, const sim_args *a,
                           mab_experiment_info *info)
{
    if (a->experiment)
        return find_experiment(engine, a->config, a->experiment, info);
    size_t n = mab_experiment_count(engine);
    if (n != 1)
        return usage_error(cmd, "simulate: %s has %zu experiments; name one as EXP", a->config,
                           n);
    mab_error err = {0};
    return mab_experiment_at(engine, 0, info, &err) == MAB_OK ? 0 : fail(&err);
}

/* The arms as the experiment's reward range allows; usage errors when
   the numbers do not fit the experiment. */
static int make_bandit(const command *cmd, const sim_args *a, const mab_experiment_info *info,
                       sim_bandit *bandit)
{
    const char *option = a->kind == SIM_BERNOULLI ? "--probs" : "--means";
    if (a->n_param != info->n_arms)
        return usage_error(cmd, "simulate: %s has %zu value%s but experiment '%s' has %zu arms",
                           option, a->n_param, a->n_param == 1 ? "" : "s", info->id,
                           info->n_arms);
    double *sd = NULL;
    if (a->kind == SIM_GAUSSIAN) {
        sd = malloc(a->n_param * sizeof *sd);
        if (!sd)
            return fail_oom();
        for (size_t i = 0; i < a->n_param; i++)
            sd[i] = a->sd[a->n_sd == 1 ? 0 : i];
    }
    char why[256];
    int rc = sim_bandit_init(bandit, a->kind, a->n_param, a->param, sd, info->reward_min,
                             info->reward_max, why, sizeof why);
    free(sd);
    if (rc != 0)
        return usage_error(cmd, "simulate: experiment '%s': %s", info->id, why);
    return 0;
}

/* ---- one run of the experiment's own policy (the original output) ---- */

typedef struct single_run {
    const char *experiment;
    const char *policy;
    const sim_bandit *bandit;
    mab_arm_stats *arms; /* ids, in config order */
    uint64_t steps, seed, report_every;
    bool json;
    uint64_t *window_pulls;
    uint64_t window_start;
    size_t n_windows;
    /* --json: each window's object, printed as it ends (raw text, so that a
       long run with many windows holds its output, not a tree of nodes) */
    cJSON *windows;
    bool json_ok;
    sim_run_result result;
} single_run;

static void report_window(single_run *sim, uint64_t first, uint64_t last)
{
    uint64_t total = last - first + 1;
    size_t k = sim->bandit->n_arms;
    if (sim->json) {
        bool ok = sim->json_ok;
        cJSON *window = cJSON_CreateObject();
        json_put(&ok, window, "from", json_counter(first));
        json_put(&ok, window, "to", json_counter(last));
        cJSON *shares = json_put(&ok, window, "shares", cJSON_CreateObject());
        for (size_t a = 0; a < k; a++)
            json_put(&ok, shares, sim->arms[a].arm_id,
                     json_number((double)sim->window_pulls[a] / (double)total));
        char *text = ok ? cJSON_PrintUnformatted(window) : NULL;
        cJSON_Delete(window);
        sim->json_ok = ok;
        json_put(&sim->json_ok, sim->windows, NULL, text ? cJSON_CreateRaw(text) : NULL);
        cJSON_free(text);
    } else {
        int digits = snprintf(NULL, 0, "%" PRIu64, sim->steps);
        printf("steps %*" PRIu64 "-%-*" PRIu64 "", digits, first, digits, last);
        for (size_t a = 0; a < k; a++)
            printf("  %s %5.1f%%", sim->arms[a].arm_id,
                   100.0 * (double)sim->window_pulls[a] / (double)total);
        fputc('\n', stdout);
    }
    memset(sim->window_pulls, 0, k * sizeof *sim->window_pulls);
    sim->n_windows++;
}

static void count_window(void *ctx, uint64_t step, size_t arm)
{
    single_run *sim = ctx;
    sim->window_pulls[arm]++;
    if (step % sim->report_every == 0 || step == sim->steps) {
        report_window(sim, sim->window_start, step);
        sim->window_start = step + 1;
    }
}

static const char *arm_param_name(const sim_bandit *b)
{
    return b->kind == SIM_BERNOULLI ? "click_rate" : "mean";
}

static int print_single_text(const single_run *sim)
{
    const sim_bandit *b = sim->bandit;
    const sim_run_result *r = &sim->result;
    text_table table;
    table_init(&table, 6, 0x3eu);
    const char *header[] = {"arm", arm_param_name(b), "observed", "pulls", "share", "rewards"};
    bool ok = table_add_row(&table, header);
    for (size_t a = 0; ok && a < b->n_arms; a++) {
        char param[40], observed[40], pulls[32], share[32], rewards[32];
        snprintf(param, sizeof param, "%g", b->param[a]);
        /* Observed click rate, or observed mean reward per pull. */
        double seen = b->kind == SIM_BERNOULLI ? (double)r->rewards[a] : r->reward_sum[a];
        if (r->pulls[a])
            snprintf(observed, sizeof observed, "%.4f", seen / (double)r->pulls[a]);
        else
            snprintf(observed, sizeof observed, "-");
        snprintf(pulls, sizeof pulls, "%" PRIu64, r->pulls[a]);
        snprintf(share, sizeof share, "%.1f%%", 100.0 * (double)r->pulls[a] / (double)sim->steps);
        snprintf(rewards, sizeof rewards, "%" PRIu64, r->rewards[a]);
        const char *row[] = {sim->arms[a].arm_id, param, observed, pulls, share, rewards};
        ok = table_add_row(&table, row);
    }
    if (ok) {
        if (sim->report_every)
            fputc('\n', stdout);
        table_print(&table, stdout, "");
        printf("\ntotal reward  %.10g\n", r->total_reward);
        printf("regret        %.6f\n", r->regret);
        printf("best arm      %s (%s %g, %.1f%% of pulls)\n", sim->arms[b->best].arm_id,
               b->kind == SIM_BERNOULLI ? "click rate" : "mean", b->param[b->best],
               100.0 * (double)r->pulls[b->best] / (double)sim->steps);
    }
    table_free(&table);
    return ok ? 0 : fail_oom();
}


static int print_single_json(single_run *sim)
{
    const sim_bandit *b = sim->bandit;
    const sim_run_result *r = &sim->result;
    bool ok = sim->json_ok;
    cJSON *root = cJSON_CreateObject();
    json_put(&ok, root, "experiment", cJSON_CreateString(sim->experiment));
    json_put(&ok, root, "policy", cJSON_CreateString(sim->policy));
    json_put(&ok, root, "steps", json_counter(sim->steps));
    json_put(&ok, root, "seed", json_counter(sim->seed));
    json_put(&ok, root, "windows", sim->windows);
    sim->windows = NULL; /* root owns it now, or json_put freed it */
    cJSON *arms = json_put(&ok, root, "arms", cJSON_CreateObject());
    for (size_t a = 0; a < b->n_arms; a++) {
        cJSON *arm = json_put(&ok, arms, sim->arms[a].arm_id, cJSON_CreateObject());
        json_put(&ok, arm, arm_param_name(b), json_number(b->param[a]));
        if (b->kind == SIM_GAUSSIAN)
            json_put(&ok, arm, "sd", json_number(b->sd[a]));
        json_put(&ok, arm, "pulls", json_counter(r->pulls[a]));
        json_put(&ok, arm, "share", json_number((double)r->pulls[a] / (double)sim->steps));
        json_put(&ok, arm, "rewards", json_counter(r->rewards[a]));
        json_put(&ok, arm, "reward_sum", json_number(r->reward_sum[a]));
    }
    json_put(&ok, root, "total_reward", json_number(r->total_reward));
    json_put(&ok, root, "regret", json_number(r->regret));
    json_put(&ok, root, "best_arm", cJSON_CreateString(sim->arms[b->best].arm_id));
    return json_print_stdout(root, ok);
}

static int simulate_single(mab_engine *engine, const sim_args *a,
                           const mab_experiment_info *info, const sim_bandit *bandit)
{
    size_t k = bandit->n_arms;
    single_run sim = {.experiment = info->id, .policy = info->policy, .bandit = bandit,
                      .steps = a->steps, .seed = a->seed, .report_every = a->report_every,
                      .json = a->json, .window_start = 1, .json_ok = true};
    int status = load_stats(engine, info, &sim.arms);
    if (status)
        return status;
    sim.window_pulls = calloc(k, sizeof *sim.window_pulls);
    sim.result.pulls = calloc(k, sizeof *sim.result.pulls);
    sim.result.rewards = calloc(k, sizeof *sim.result.rewards);
    sim.result.reward_sum = calloc(k, sizeof *sim.result.reward_sum);
    if (sim.json)
        sim.windows = cJSON_CreateArray();
    if (!sim.window_pulls || !sim.result.pulls || !sim.result.rewards ||
        !sim.result.reward_sum || (sim.json && !sim.windows))
        status = fail_oom();
    if (status == 0) {
        if (!sim.json)
            printf("experiment %s (policy %s): %" PRIu64 " steps, seed %" PRIu64 "\n",
                   sim.experiment, sim.policy, sim.steps, sim.seed);
        sim_run_spec spec = {.experiment = info->id, .bandit = bandit, .steps = a->steps,
                             .seed = a->seed, .run = 0,
                             .on_step = a->report_every ? count_window : NULL, .ctx = &sim};
        mab_error err = {0};
        if (sim_run(engine, &spec, &sim.result, &err) != MAB_OK)
            status = fail(&err);
    }
    if (status == 0) {
        if (sim.json)
            status = print_single_json(&sim);
        else
            status = print_single_text(&sim);
    }
    cJSON_Delete(sim.windows);
    free(sim.window_pulls);
    free(sim.result.pulls);
    free(sim.result.rewards);
    free(sim.result.reward_sum);
    free(sim.arms);
    return status;
}

/* ---- comparing policies over many runs -------------------------------- */

/* An error from the temporary config names the --policies item instead of
   a file the user never saw. */
static void name_policy_in_error(mab_error *err, const char *tmp_path,
                                 const sim_policy_list *policies)
{
    size_t len = strlen(tmp_path);
    const char *prefix = ": experiments.p";
    if (strncmp(err->message, tmp_path, len) != 0 ||
        strncmp(err->message + len, prefix, strlen(prefix)) != 0)
        return;
    char *end;
    const char *digits = err->message + len + strlen(prefix);
    unsigned long i = strtoul(digits, &end, 10);
    if (end == digits || i >= policies->n)
        return;
    char rewritten[MAB_ERROR_MAX];
    /* "TMP: experiments.p0.policy: unknown key" -> "--policies 'X': policy: ..." */
    snprintf(rewritten, sizeof rewritten, "--policies '%s'%s%s", policies->labels[i],
             *end == '.' ? ": " : "", *end == '.' ? end + 1 : end);
    snprintf(err->message, sizeof err->message, "%s", rewritten);
}

/* One line per scenario option in force. */
static void print_scenario(const sim_args *a, const sim_bandit *b)
{
    const sim_scenario *sc = &a->scenario;
    printf("%g visitors per simulated second (%.6g s in all)\n", sc->rate,
           (double)a->steps / sc->rate);
    if (sc->change_at) {
        printf("abrupt change after visitor %" PRIu64 ": click probabilities ", sc->change_at);
        for (size_t i = 0; i < b->n_arms; i++)
            printf("%s%g", i ? ", " : "", sc->param_after[i]);
        fputc('\n', stdout);
    }
    if (sc->drift != 0)
        printf("daily drift: amplitude %g, period %g s, arm i's phase i/%zu of a period\n",
               sc->drift, sc->drift_period, b->n_arms);
    if (sc->delay > 0)
        printf("conversion delay: exponential, mean %g %s (%g visitors)\n", a->delay_given,
               a->delay_seconds ? "simulated seconds" : "visitors", sc->delay);
    if (sc->workers > 1)
        printf("%u workers over one store, each reloading every %" PRIu32 " ms (%g visitors)\n",
               sc->workers, sc->refresh_ms, (double)sc->refresh_ms / 1000 * sc->rate);
    if (sc->context_dim)
        printf("linear context: %u features x0..x%u ~ N(0, 1), click sigmoid(theta_a . x - 2)\n",
               sc->context_dim, sc->context_dim - 1);
}

static void print_compare_text(const sim_args *a, const mab_experiment_info *info,
                               const sim_bandit *b, const sim_results *r,
                               const char *const *labels, unsigned threads)
{
    printf("experiment %s: %zu %s arms (%s ", info->id, b->n_arms,
           b->kind == SIM_BERNOULLI ? "Bernoulli" : "Gaussian",
           b->kind == SIM_BERNOULLI ? "click probabilities" : "means");
    for (size_t i = 0; i < b->n_arms; i++)
        printf("%s%g", i ? ", " : "", b->param[i]);
    if (b->kind == SIM_GAUSSIAN)
        printf("; sd %g%s, clamped to [%g, %g]", b->sd[0], a->n_sd > 1 ? ", ..." : "",
               b->reward_min, b->reward_max);
    printf(")\n%" PRIu64 " steps, %" PRIu64 " run%s, seed %" PRIu64 ", %u thread%s\n",
           a->steps, a->runs, a->runs == 1 ? "" : "s", a->seed, threads, threads == 1 ? "" : "s");
    print_scenario(a, b);
    fputc('\n', stdout);

    text_table table;
    table_init(&table, 5, 0x1eu);
    const char *header[] = {"policy", "regret at T", "95% interval", "best arm",
                            "reward/visitor"};
    bool ok = table_add_row(&table, header);
    for (size_t p = 0; ok && p < r->n_policies; p++) {
        const sim_policy_result *pr = &r->policies[p];
        char regret[40], interval[80], share[32], reward[40];
        snprintf(regret, sizeof regret, "%.2f", pr->regret_mean);
        if (isnan(pr->regret_ci))
            snprintf(interval, sizeof interval, "-");
        else
            snprintf(interval, sizeof interval, "[%.2f, %.2f]", pr->regret_mean - pr->regret_ci,
                     pr->regret_mean + pr->regret_ci);
        snprintf(share, sizeof share, "%.1f%%", 100 * pr->best_share);
        snprintf(reward, sizeof reward, "%.4f", pr->reward_per_visitor);
        const char *row[] = {labels[p], regret, interval, share, reward};
        ok = table_add_row(&table, row);
    }
    if (ok)
        table_print(&table, stdout, "");
    table_free(&table);
    double rate = sim_lai_robbins_rate(b);
    if (sim_scenario_static(&a->scenario)) {
        printf("\nLai-Robbins lower bound  %.2f = ln(T) * %.4g (asymptotic; a reference, not a "
               "guarantee at this T)\n",
               rate * log((double)a->steps), rate);
        printf("regret: expected lost rewards T*mu* - sum of mu(chosen arm), from the true "
               "means,\non the reward range scaled to [0, 1]; best arm: share of pulls on an "
               "arm of\nhighest mean; reward/visitor: mean reward sent, in the experiment's "
               "units.\n");
    } else {
        printf("\nregret: dynamic, sum over visitors of the best arm's click probability for "
               "that\nvisitor at that time minus the chosen arm's (lost clicks); best arm: "
               "share of\npulls on an arm best for that visitor then; reward/visitor: clicks "
               "sent per visitor.\n");
    }
    if (a->scenario.delay > 0) {
        printf("delayed clicks still on their way at T (never sent), mean per run:");
        for (size_t p = 0; p < r->n_policies; p++)
            printf(" %s %.1f", labels[p], r->policies[p].late_per_run);
        fputc('\n', stdout);
    }
}

static int print_compare_json(const sim_args *a, const mab_experiment_info *info,
                              const mab_arm_stats *arms, const sim_bandit *b,
                              const sim_results *r, const char *const *labels)
{
    bool ok = true;
    cJSON *root = cJSON_CreateObject();
    json_put(&ok, root, "experiment", cJSON_CreateString(info->id));
    json_put(&ok, root, "steps", json_counter(a->steps));
    json_put(&ok, root, "runs", json_counter(a->runs));
    json_put(&ok, root, "seed", json_counter(a->seed));
    cJSON *arms_json = json_put(&ok, root, "arms", cJSON_CreateObject());
    for (size_t i = 0; i < b->n_arms; i++) {
        cJSON *arm = json_put(&ok, arms_json, arms[i].arm_id, cJSON_CreateObject());
        json_put(&ok, arm, arm_param_name(b), json_number(b->param[i]));
        if (b->kind == SIM_GAUSSIAN)
            json_put(&ok, arm, "sd", json_number(b->sd[i]));
        json_put(&ok, arm, "expected", json_number(b->mean[i]));
    }
    double rate = sim_lai_robbins_rate(b);
    bool still = sim_scenario_static(&a->scenario);
    json_put(&ok, root, "best_arm", cJSON_CreateString(arms[b->best].arm_id));
    json_put(&ok, root, "lai_robbins_rate", still ? json_number(rate) : cJSON_CreateNull());
    json_put(&ok, root, "lai_robbins_bound",
             still ? json_number(rate * log((double)a->steps)) : cJSON_CreateNull());
    const sim_scenario *sc = &a->scenario;
    cJSON *scen = json_put(&ok, root, "scenario", cJSON_CreateObject());
    json_put(&ok, scen, "rate", json_number(sc->rate));
    json_put(&ok, scen, "dynamic_regret", cJSON_CreateBool(!still));
    if (sc->change_at) {
        json_put(&ok, scen, "change_at", json_counter(sc->change_at));
        cJSON *after = json_put(&ok, scen, "probs_after", cJSON_CreateArray());
        for (size_t i = 0; i < b->n_arms; i++)
            json_put(&ok, after, NULL, json_number(sc->param_after[i]));
    }
    if (sc->drift != 0) {
        json_put(&ok, scen, "drift", json_number(sc->drift));
        json_put(&ok, scen, "drift_period_s", json_number(sc->drift_period));
    }
    if (sc->delay > 0)
        json_put(&ok, scen, "delay_visitors", json_number(sc->delay));
    if (sc->workers > 1) {
        json_put(&ok, scen, "workers", json_counter(sc->workers));
        json_put(&ok, scen, "refresh_ms", json_counter(sc->refresh_ms));
    }
    if (sc->context_dim)
        json_put(&ok, scen, "context_dim", json_counter(sc->context_dim));
    cJSON *policies = json_put(&ok, root, "policies", cJSON_CreateArray());
    for (size_t p = 0; p < r->n_policies; p++) {
        const sim_policy_result *pr = &r->policies[p];
        cJSON *policy = json_put(&ok, policies, NULL, cJSON_CreateObject());
        json_put(&ok, policy, "policy", cJSON_CreateString(labels[p]));
        json_put(&ok, policy, "regret", json_number(pr->regret_mean));
        if (isnan(pr->regret_ci)) {
            json_put(&ok, policy, "regret_ci95", cJSON_CreateNull());
        } else {
            cJSON *ci = json_put(&ok, policy, "regret_ci95", cJSON_CreateArray());
            json_put(&ok, ci, NULL, json_number(pr->regret_mean - pr->regret_ci));
            json_put(&ok, ci, NULL, json_number(pr->regret_mean + pr->regret_ci));
        }
        json_put(&ok, policy, "best_arm_share", json_number(pr->best_share));
        json_put(&ok, policy, "reward_per_visitor", json_number(pr->reward_per_visitor));
        if (sc->delay > 0)
            json_put(&ok, policy, "late_per_run", json_number(pr->late_per_run));
        cJSON *pulls = json_put(&ok, policy, "pulls", cJSON_CreateObject());
        for (size_t i = 0; i < b->n_arms; i++)
            json_put(&ok, pulls, arms[i].arm_id, json_counter(pr->pulls[i]));
    }
    return json_print_stdout(root, ok);
}

/* Write a report file with one of the writers of simulate.h. */
static int write_report_file(const char *path, int (*writer)(FILE *, const sim_report *),
                             const sim_report *report)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return fail_message("cannot write %s: %s", path, strerror(errno));
    int failed = writer(f, report) != 0;
    if (fclose(f) != 0)
        failed = 1;
    if (failed)
        return fail_message("cannot write %s", path);
    return 0;
}

static int simulate_compare(const command *cmd, mab_engine *engine, const sim_args *a,
                            const mab_experiment_info *info, const sim_bandit *bandit)
{
    sim_policy_list policies = {0};
    char tmp_path[4096] = "";
    const char *own_label[1] = {info->policy};
    const char *own_experiment[1] = {info->id};
    const char *const *labels = own_label;
    const char *const *experiments = own_experiment;
    char **ids = NULL;
    mab_arm_stats *arms = NULL;
    int status = load_stats(engine, info, &arms);

    bool workers = a->scenario.workers > 1;
    if (status == 0 && a->policies) {
        char why[512];
        if (sim_policies_parse(a->policies, &policies, why, sizeof why) != 0)
            status = usage_error(cmd, "simulate: --policies: %s", why);
        else
            labels = (const char *const *)policies.labels;
    }
    /* A config of its own for --policies, and for workers (their store). */
    size_t n_policies = a->policies ? policies.n : 1;
    if (status == 0 && (a->policies || workers)) {
        mab_error err = {0};
        ids = calloc(n_policies, sizeof *ids);
        if (!ids)
            status = fail_oom();
        for (size_t p = 0; status == 0 && p < n_policies; p++) {
            ids[p] = malloc(32);
            if (!ids[p])
                status = fail_oom();
            else
                snprintf(ids[p], 32, "p%zu", p);
        }
        if (status == 0 &&
            sim_write_policy_config_ex(a->config, info->id, a->policies ? &policies : NULL,
                                       workers ? SIM_CONFIG_SHARED_STORE : 0, tmp_path,
                                       sizeof tmp_path, &err) != MAB_OK)
            status = fail(&err);
        experiments = (const char *const *)ids;
    }

    sim_plan plan = {.config_path = tmp_path[0] ? tmp_path : a->config,
                     .experiments = experiments,
                     .n_policies = n_policies,
                     .bandit = bandit,
                     .steps = a->steps,
                     .runs = a->runs,
                     .seed = a->seed,
                     .threads = (unsigned)a->threads,
                     .n_checkpoints = a->steps < 200 ? (size_t)a->steps : 200,
                     .sections = host_sections,
                     .scenario = &a->scenario};
    sim_results results = {0};
    if (status == 0) {
        mab_error err = {0};
        if (sim_compare(&plan, &results, &err) != MAB_OK) {
            if (tmp_path[0])
                name_policy_in_error(&err, tmp_path, &policies);
            status = fail(&err);
        }
    }
    if (tmp_path[0])
        unlink(tmp_path);

    if (status == 0) {
        unsigned threads = a->threads < a->runs * plan.n_policies
                               ? (unsigned)a->threads
                               : (unsigned)(a->runs * plan.n_policies);
        if (a->json)
            status = print_compare_json(a, info, arms, bandit, &results, labels);
        else
            print_compare_text(a, info, bandit, &results, labels, threads);
        const char **arm_ids = calloc(bandit->n_arms, sizeof *arm_ids);
        for (size_t i = 0; arm_ids && i < bandit->n_arms; i++)
            arm_ids[i] = arms[i].arm_id;
        sim_report report = {.plan = &plan, .results = &results, .labels = labels,
                             .experiment = info->id, .arm_ids = arm_ids};
        if (status == 0 && a->csv)
            status = write_report_file(a->csv, sim_write_csv, &report);
        if (status == 0 && a->plot)
            status = write_report_file(a->plot, sim_write_svg, &report);
        free(arm_ids);
    }
    sim_results_free(&results);
    for (size_t p = 0; ids && p < n_policies; p++)
        free(ids[p]);
    free(ids);
    sim_policies_free(&policies);
    free(arms);
    return status;
}

int cmd_simulate(const command_args *cli)
{
    const command *cmd = cli->cmd;
    const char *opt[SIM_N_OPTIONS];
    for (size_t i = 0; i < SIM_N_OPTIONS; i++)
        opt[i] = option_value(cli, sim_option_names[i]);
    sim_args args;
    int status = parse_sim_args(cmd, cli->pos, opt, &args);
    if (status) {
        sim_args_free(&args);
        return status;
    }
    /* The seed is always passed on (through sim_engine_seed), so that the
       printed seed reproduces the run whether it came from --seed, the
       config or the system. Comparisons open engines of their own; this
       one only describes the experiment then. */
    unsigned flags = MAB_OPEN_SEED | (args.persist ? 0 : MAB_OPEN_NO_STORAGE);
    mab_engine *engine;
    status = open_engine(args.config, flags, sim_engine_seed(args.seed, 0), &engine);
    if (status) {
        sim_args_free(&args);
        return status;
    }
    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    sim_bandit bandit = {0};
    status = pick_experiment(cmd, engine, &args, &info);
    if (status == 0)
        status = make_bandit(cmd, &args, &info, &bandit);
    if (status == 0)
        status = args.compare ? simulate_compare(cmd, engine, &args, &info, &bandit)
                              : simulate_single(engine, &args, &info, &bandit);
    sim_bandit_free(&bandit);
    sim_args_free(&args);
    /* Arm ids belong to the engine: everything that prints them is done. */
    return close_engine(engine, status);
}

