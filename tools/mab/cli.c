/*
 * cli.c - the `mab` command line tool.
 *
 * Check a config, choose and reward by hand, print statistics, simulate
 * traffic against arms with known rewards and compare policies (the
 * simulator itself is in simulate.c), reset an experiment, export and import
 * counters, create a cookie key. It uses only the public API (mab/mab.h,
 * mab/adapter.h), like any other host; cJSON is used for nothing but reading
 * the config's "seed" for `simulate` and the files given to `import`.
 *
 * Exit status: 0 success, 1 an error the engine reported (printed as
 * "mab: MESSAGE"), 2 a usage error (message and usage on stderr).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mab/adapter.h"
#include "mab/mab.h"
#include "simulate.h"

enum { EXIT_USER = 1, EXIT_USAGE = 2 };

/* ------------------------------------------------------------------ */
/* Commands and their usage                                            */

typedef struct command command;

typedef struct option_spec {
    const char *name; /* without the leading "--" */
    bool takes_value;
} option_spec;

#define MAX_OPTIONS 16
#define MAX_POSITIONAL 4

struct command {
    const char *name;
    const char *summary;
    const char *usage; /* printed by --help and after usage errors */
    const char *positional[MAX_POSITIONAL]; /* names, for "missing argument X" */
    size_t n_positional;
    size_t n_optional; /* how many of the last positional arguments may be left out */
    option_spec options[MAX_OPTIONS];
    size_t n_options;
    int (*run)(const command *cmd, const char *const *pos, const char *const *opt_values);
};

/* opt_values[i] is NULL when option i is absent, "" for a present flag. */

static int run_check(const command *, const char *const *, const char *const *);
static int run_choose(const command *, const char *const *, const char *const *);
static int run_reward(const command *, const char *const *, const char *const *);
static int run_stats(const command *, const char *const *, const char *const *);
static int run_simulate(const command *, const char *const *, const char *const *);
static int run_reset(const command *, const char *const *, const char *const *);
static int run_export(const command *, const char *const *, const char *const *);
static int run_import(const command *, const char *const *, const char *const *);
static int run_keygen(const command *, const char *const *, const char *const *);

static const command commands[] = {
    {"check", "validate a config and describe its experiments",
     "usage: mab check CONFIG\n"
     "\n"
     "Open CONFIG with its storage and print every experiment (policy and the\n"
     "file it was loaded from, number of arms, reward range) and the storage\n"
     "plugin in use.\n",
     {"CONFIG"}, 1, 0, {{0}}, 0, run_check},
    {"choose", "choose an arm and count the pull",
     "usage: mab choose CONFIG EXP\n"
     "\n"
     "Let the policy of experiment EXP choose an arm, count the pull in\n"
     "storage and print ARM_ID<TAB>VALUE_JSON<TAB>PROBABILITY (nan when the\n"
     "policy cannot tell).\n",
     {"CONFIG", "EXP"}, 2, 0, {{0}}, 0, run_choose},
    {"reward", "record a reward for an arm",
     "usage: mab reward CONFIG EXP ARM VALUE\n"
     "\n"
     "Record reward VALUE (a number in the experiment's reward range, by\n"
     "default [0, 1]) for arm ARM of experiment EXP.\n",
     {"CONFIG", "EXP", "ARM", "VALUE"}, 4, 0, {{0}}, 0, run_reward},
    {"stats", "print every arm's counters",
     "usage: mab stats CONFIG [--json]\n"
     "\n"
     "Print pulls, rewards, reward sum and mean reward of every arm.\n"
     "\n"
     "  --json   print one JSON object:\n"
     "           {\"experiments\":{EXP:{\"policy\":NAME,\"arms\":{ARM:{\"pulls\":N,\n"
     "           \"rewards\":N,\"reward_sum\":X,\"mean\":X}}}}}\n",
     {"CONFIG"}, 1, 0, {{"json", false}}, 1, run_stats},
    {"simulate", "simulate visitors and compare policies on known arms",
     "usage: mab simulate CONFIG [EXP] (--probs P1,P2,... | --means M1,M2,... --sd S)\n"
     "                    [--steps T] [--seed S] [--json]\n"
     "                    [--report-every N] [--persist]          (one run)\n"
     "                    [--policies LIST] [--runs R] [--threads N]\n"
     "                    [--csv FILE] [--plot FILE.svg]          (comparison)\n"
     "\n"
     "Send T simulated visitors to experiment EXP (optional when CONFIG has a\n"
     "single experiment) whose arms, in config order, have known rewards:\n"
     "\n"
     "  --probs P1,P2,...   Bernoulli arms: arm i is clicked with probability Pi\n"
     "                      in [0, 1]; a click is rewarded with the experiment's\n"
     "                      reward maximum, a visitor who does not click sends\n"
     "                      nothing\n"
     "  --means M1,M2,...   Gaussian arms: every visitor sends a reward drawn from\n"
     "  --sd S[,S2,...]     N(Mi, Si) (one S for all arms or one per arm), in the\n"
     "                      experiment's reward units. Draws outside the reward\n"
     "                      range [min, max] are clamped to its nearest end (the\n"
     "                      engine refuses rewards outside it); each Mi must lie in\n"
     "                      the range, and regret uses the means after clamping\n"
     "  --steps T           visitors per run (default 10000)\n"
     "  --seed S            seed of the policies' and the visitors' random streams\n"
     "                      (default: the config's seed, else a random one; the\n"
     "                      seed used is printed, the same seed gives the same\n"
     "                      output, whatever the number of threads)\n"
     "  --json              print the results as one JSON object\n"
     "\n"
     "One run (the default): the experiment's own policy plays; prints each arm's\n"
     "pulls and rewards, the total reward, the expected regret and the best arm.\n"
     "Counters start at zero and nothing is stored unless --persist.\n"
     "\n"
     "  --report-every N    every N visitors, print the share of traffic each arm\n"
     "                      got in that window\n"
     "  --persist           load counters from storage and write them back\n"
     "\n"
     "Comparison (any of the options below): R independent runs of each policy,\n"
     "on the same arms and the same reward draws (the n-th pull of an arm gives\n"
     "the same reward whichever policy pulls it), nothing stored. Prints per\n"
     "policy the mean regret at T with its 95% interval over runs (Student t),\n"
     "the share of pulls on the best arm and the reward per visitor, and the\n"
     "Lai-Robbins asymptotic lower bound ln(T) * sum_i Delta_i / KL(mu_i, mu*).\n"
     "Regret is expected regret T*mu* - sum_t mu(A_t) from the true means, on the\n"
     "reward range scaled to [0, 1] (with clicks: lost clicks).\n"
     "\n"
     "  --policies LIST     policies to compare instead of the experiment's own:\n"
     "                      comma-separated items NAME[:KEY=VALUE[:KEY=VALUE...]],\n"
     "                      a plugin found through the config's plugin_path and\n"
     "                      its parameters, e.g.\n"
     "                      epsilon_greedy:epsilon=0.1,ucb1,thompson,softmax:tau=0.1\n"
     "  --runs R            independent runs per policy (default 1)\n"
     "  --threads N         worker threads (default: the number of CPUs)\n"
     "  --csv FILE          write the regret curves, averaged over runs, with their\n"
     "                      95% interval and the Lai-Robbins bound: columns policy,\n"
     "                      step, regret_mean, regret_ci95_low, regret_ci95_high,\n"
     "                      lai_robbins_bound (200 steps per policy at most)\n"
     "  --plot FILE.svg     draw those curves, their bands and the bound as SVG\n",
     {"CONFIG", "EXP"}, 2, 1,
     {{"probs", true}, {"means", true}, {"sd", true}, {"steps", true}, {"runs", true},
      {"seed", true}, {"policies", true}, {"threads", true}, {"csv", true}, {"plot", true},
      {"report-every", true}, {"json", false}, {"persist", false}}, 13, run_simulate},
    {"reset", "zero an experiment's counters",
     "usage: mab reset CONFIG EXP\n"
     "\n"
     "Zero the counters of every arm of experiment EXP, in storage too\n"
     "(counters of arms no longer in the config are removed).\n",
     {"CONFIG", "EXP"}, 2, 0, {{0}}, 0, run_reset},
    {"export", "write every stored counter as JSON",
     "usage: mab export CONFIG [--out FILE]\n"
     "\n"
     "Write every record of the config's storage (arms and experiments no\n"
     "longer in the config included) as one JSON document:\n"
     "  {\"format\": \"mab-export\", \"version\": 1, \"experiments\": {EXP: {ARM:\n"
     "   {\"pulls\": N, \"rewards\": N, \"reward_sum\": X, \"reward_sum_sq\": X}}}}\n"
     "See docs/storage.md. Pending counts are written to storage first.\n"
     "\n"
     "  --out FILE   write to FILE (through FILE.tmp and a rename) instead of stdout\n",
     {"CONFIG"}, 1, 0, {{"out", true}}, 1, run_export},
    {"import", "add counters from an export or a Flask-MAB file",
     "usage: mab import CONFIG FILE [--replace]\n"
     "       mab import CONFIG --from-flask-mab FILE [--replace]\n"
     "\n"
     "Add the counters of FILE, written by `mab export`, to the config's\n"
     "storage, in one all-or-nothing step. Every experiment and arm in FILE\n"
     "must be in the config; an unreadable file, an unknown format or version\n"
     "or an unknown experiment or arm imports nothing (exit status 1).\n"
     "\n"
     "  --replace          make each experiment in FILE hold exactly FILE's\n"
     "                     counters (its other stored arms are removed)\n"
     "  --from-flask-mab   FILE is a Flask-MAB JSON storage file: each bandit's\n"
     "                     \"arms\", \"pulls\" and \"reward\" (reward sums) go to the\n"
     "                     experiment and arms of the same names; reward counts\n"
     "                     are the rounded sums (0/1 clicks). Bandits and arms\n"
     "                     not in the config are reported and skipped.\n",
     {"CONFIG", "FILE"}, 2, 0, {{"replace", false}, {"from-flask-mab", false}}, 2, run_import},
    {"keygen", "create a cookie signing key file",
     "usage: mab keygen FILE\n"
     "\n"
     "Write 32 random bytes, base64 on one line, to FILE (mode 0600), for the\n"
     "config's \"secret_file\". Refuses to overwrite an existing file. To rotate\n"
     "keys, put a new key on the first line of secret_file and keep the old one\n"
     "below it for a cookie lifetime (docs/hosts.md).\n",
     {"FILE"}, 1, 0, {{0}}, 0, run_keygen},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_main_usage(FILE *out)
{
    fprintf(out, "usage: mab COMMAND [ARGS...]\n"
                 "       mab --help | --version\n"
                 "\n"
                 "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun `mab COMMAND --help` for a command's arguments.\n");
}

static int usage_error(const command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mab: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd)
        fputs(cmd->usage, stderr);
    else
        print_main_usage(stderr);
    return EXIT_USAGE;
}

/* An error the engine (or the system) reported: exit status 1. */
static int fail(const mab_error *err)
{
    fprintf(stderr, "mab: %s\n", err->message[0] ? err->message : mab_strerror(err->code));
    return EXIT_USER;
}

static int fail_oom(void)
{
    fputs("mab: out of memory\n", stderr);
    return EXIT_USER;
}

/*
 * Split argv into positional arguments and --options. Arguments starting
 * with "--" are options ("--name VALUE" or "--name=VALUE"); "-h" is help;
 * anything else, "-1" included, is positional, so negative rewards work.
 * "--" ends the options. Returns 0, EXIT_USAGE, or -1 when --help was
 * printed.
 */
static int parse_args(const command *cmd, int argc, char **argv, const char **pos,
                      const char **opt_values)
{
    size_t n_pos = 0;
    bool options_done = false;

    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(cmd->usage, stdout);
            return -1;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || strncmp(arg, "--", 2) != 0) {
            if (n_pos == cmd->n_positional)
                return usage_error(cmd, "%s: unexpected argument '%s'", cmd->name, arg);
            pos[n_pos++] = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const option_spec *spec = NULL;
        size_t k;
        for (k = 0; k < cmd->n_options; k++) {
            if (strlen(cmd->options[k].name) == name_len &&
                strncmp(cmd->options[k].name, name, name_len) == 0) {
                spec = &cmd->options[k];
                break;
            }
        }
        if (!spec)
            return usage_error(cmd, "%s: unknown option '--%.*s'", cmd->name, (int)name_len, name);
        if (spec->takes_value) {
            if (eq) {
                opt_values[k] = eq + 1;
            } else if (i + 1 < argc) {
                opt_values[k] = argv[++i];
            } else {
                return usage_error(cmd, "%s: option '--%s' needs a value", cmd->name, spec->name);
            }
        } else {
            if (eq)
                return usage_error(cmd, "%s: option '--%s' takes no value", cmd->name,
                                   spec->name);
            opt_values[k] = "";
        }
    }
    if (n_pos < cmd->n_positional - cmd->n_optional)
        return usage_error(cmd, "%s: missing argument %s", cmd->name, cmd->positional[n_pos]);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Parsing numbers strictly: the whole string, nothing else            */

static bool parse_double(const char *s, double *out)
{
    if (s[0] == '\0' || s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\v' ||
        s[0] == '\f' || s[0] == '\r')
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0')
        return false;
    /* Overflow becomes infinity, which the engine rejects with its own
       message; underflow to a tiny number is a number all the same. */
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* ------------------------------------------------------------------ */
/* Output helpers: JSON strings and numbers, aligned text tables       */

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* JSON has no NaN or infinity: those become null. */
static void json_number(FILE *out, double v)
{
    if (isfinite(v))
        fprintf(out, "%.17g", v);
    else
        fputs("null", out);
}

typedef struct text_table {
    size_t n_cols;
    size_t n_rows, cap_rows;
    char **cells;         /* row-major, owned */
    unsigned right_align; /* bit c set: column c is right-aligned */
} text_table;

static void table_init(text_table *t, size_t n_cols, unsigned right_align)
{
    memset(t, 0, sizeof *t);
    t->n_cols = n_cols;
    t->right_align = right_align;
}

static void table_free(text_table *t)
{
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* Append a row of n_cols strings (copied). */
static bool table_add_row(text_table *t, const char *const *cells)
{
    if (t->n_rows == t->cap_rows) {
        size_t cap = t->cap_rows ? 2 * t->cap_rows : 8;
        char **grown = realloc(t->cells, cap * t->n_cols * sizeof *grown);
        if (!grown)
            return false;
        t->cells = grown;
        t->cap_rows = cap;
    }
    char **row = t->cells + t->n_rows * t->n_cols;
    for (size_t c = 0; c < t->n_cols; c++) {
        row[c] = strdup(cells[c]);
        if (!row[c]) {
            while (c > 0)
                free(row[--c]);
            return false;
        }
    }
    t->n_rows++;
    return true;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        w += (*p & 0xc0) != 0x80;
    return w;
}

static void table_print(const text_table *t, FILE *out, const char *indent)
{
    size_t widths[16] = {0};
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols && c < 16; c++) {
            size_t w = text_width(t->cells[r * t->n_cols + c]);
            if (w > widths[c])
                widths[c] = w;
        }
    }
    for (size_t r = 0; r < t->n_rows; r++) {
        fputs(indent, out);
        for (size_t c = 0; c < t->n_cols && c < 16; c++) {
            const char *cell = t->cells[r * t->n_cols + c];
            size_t pad = widths[c] - text_width(cell);
            bool last = c + 1 == t->n_cols;
            if (c > 0)
                fputs("  ", out);
            if (t->right_align & (1u << c))
                fprintf(out, "%*s%s", (int)pad, "", cell);
            else
                fprintf(out, "%s%*s", cell, last ? 0 : (int)pad, "");
        }
        fputc('\n', out);
    }
}

/* ------------------------------------------------------------------ */
/* Opening and closing the engine                                      */

static int open_engine(const char *config, unsigned flags, uint64_t seed, mab_engine **out)
{
    mab_options opts = {.struct_size = sizeof opts, .flags = flags, .seed = seed};
    mab_error err = {0};
    if (mab_open_ex(config, &opts, out, &err) != MAB_OK)
        return fail(&err);
    return 0;
}

/* Close (which writes what is pending); a failed close turns success into 1. */
static int close_engine(mab_engine *engine, int status)
{
    mab_error err = {0};
    if (mab_close(engine, &err) != MAB_OK) {
        fail(&err);
        if (status == 0)
            status = EXIT_USER;
    }
    return status;
}

/* Find an experiment's description by id; config names the file in errors. */
static int find_experiment(mab_engine *engine, const char *config, const char *id,
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
    fprintf(stderr, "mab: %s: no experiment \"%s\"\n", config, id);
    return EXIT_USER;
}

/* The counters of every arm of an experiment; *arms is freed by the caller. */
static int load_stats(mab_engine *engine, const mab_experiment_info *info, mab_arm_stats **arms)
{
    size_t n = 0;
    mab_error err = {0};
    *arms = calloc(info->n_arms ? info->n_arms : 1, sizeof **arms);
    if (!*arms)
        return fail_oom();
    if (mab_stats(engine, info->id, *arms, info->n_arms, &n, &err) != MAB_OK) {
        free(*arms);
        *arms = NULL;
        return fail(&err);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* check                                                               */

static int run_check(const command *cmd, const char *const *pos, const char *const *opt)
{
    mab_engine *engine;
    int status = open_engine(pos[0], 0, 0, &engine);
    if (status)
        return status;

    text_table table;
    table_init(&table, 5, 1u << 2);
    const char *header[] = {"experiment", "policy", "arms", "reward", "policy file"};
    bool ok = table_add_row(&table, header);
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; ok && i < n && status == 0; i++) {
        mab_experiment_info info;
        mab_error err = {0};
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK) {
            status = fail(&err);
            break;
        }
        char n_arms[32], range[96];
        snprintf(n_arms, sizeof n_arms, "%zu", info.n_arms);
        snprintf(range, sizeof range, "[%g, %g]", info.reward_min, info.reward_max);
        const char *row[] = {info.id, info.policy, n_arms, range, info.policy_path};
        ok = table_add_row(&table, row);
    }
    if (!ok && status == 0)
        status = fail_oom();
    if (status == 0) {
        printf("config:      %s\n", pos[0]);
        const char *storage_file = mab_storage_path(engine);
        if (storage_file)
            printf("storage:     %s (%s)\n", mab_storage_name(engine), storage_file);
        else
            printf("storage:     %s\n", mab_storage_name(engine));
        printf("experiments: %zu\n\n", n);
        table_print(&table, stdout, "");
    }
    table_free(&table);
    return close_engine(engine, status);
}

/* ------------------------------------------------------------------ */
/* choose, reward                                                      */

static int run_choose(const command *cmd, const char *const *pos, const char *const *opt)
{
    mab_engine *engine;
    int status = open_engine(pos[0], 0, 0, &engine);
    if (status)
        return status;

    mab_choice choice;
    mab_error err = {0};
    if (mab_choose(engine, pos[1], &choice, &err) != MAB_OK) {
        status = fail(&err);
    } else {
        printf("%s\t%s\t", choice.arm_id, choice.value_json);
        if (isnan(choice.probability))
            puts("nan");
        else
            printf("%.17g\n", choice.probability);
    }
    return close_engine(engine, status);
}

static int run_reward(const command *cmd, const char *const *pos, const char *const *opt)
{
    double value;
    if (!parse_double(pos[3], &value))
        return usage_error(cmd, "reward: VALUE '%s' is not a number", pos[3]);

    mab_engine *engine;
    int status = open_engine(pos[0], 0, 0, &engine);
    if (status)
        return status;

    mab_error err = {0};
    if (mab_reward(engine, pos[1], pos[2], value, &err) != MAB_OK)
        status = fail(&err);
    status = close_engine(engine, status);
    if (status == 0)
        printf("recorded reward %.17g for arm '%s' of experiment '%s'\n", value, pos[2], pos[1]);
    return status;
}

/* ------------------------------------------------------------------ */
/* stats                                                               */

static int print_stats_text(mab_engine *engine)
{
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info;
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

static int print_stats_json(mab_engine *engine)
{
    size_t n = mab_experiment_count(engine);
    /* Gather everything first so that an error leaves no half object. */
    mab_experiment_info *infos = calloc(n ? n : 1, sizeof *infos);
    mab_arm_stats **arms = calloc(n ? n : 1, sizeof *arms);
    int status = 0;
    if (!infos || !arms)
        status = fail_oom();
    for (size_t i = 0; status == 0 && i < n; i++) {
        mab_error err = {0};
        if (mab_experiment_at(engine, i, &infos[i], &err) != MAB_OK)
            status = fail(&err);
        else
            status = load_stats(engine, &infos[i], &arms[i]);
    }
    if (status == 0) {
        fputs("{\"experiments\":{", stdout);
        for (size_t i = 0; i < n; i++) {
            if (i)
                fputc(',', stdout);
            json_string(stdout, infos[i].id);
            fputs(":{\"policy\":", stdout);
            json_string(stdout, infos[i].policy);
            fputs(",\"arms\":{", stdout);
            for (size_t a = 0; a < infos[i].n_arms; a++) {
                const mab_arm_stats *s = &arms[i][a];
                if (a)
                    fputc(',', stdout);
                json_string(stdout, s->arm_id);
                printf(":{\"pulls\":%" PRIu64 ",\"rewards\":%" PRIu64 ",\"reward_sum\":",
                       s->pulls, s->rewards);
                json_number(stdout, s->reward_sum);
                fputs(",\"mean\":", stdout);
                json_number(stdout, s->mean);
                fputc('}', stdout);
            }
            fputs("}}", stdout);
        }
        fputs("}}\n", stdout);
    }
    for (size_t i = 0; arms && i < n; i++)
        free(arms[i]);
    free(arms);
    free(infos);
    return status;
}

static int run_stats(const command *cmd, const char *const *pos, const char *const *opt)
{
    mab_engine *engine;
    int status = open_engine(pos[0], 0, 0, &engine);
    if (status)
        return status;
    status = opt[0] ? print_stats_json(engine) : print_stats_text(engine);
    return close_engine(engine, status);
}

/* ------------------------------------------------------------------ */
/* simulate                                                            */

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

enum {
    SIM_PROBS, SIM_MEANS, SIM_SD, SIM_STEPS, SIM_RUNS, SIM_SEED, SIM_POLICIES, SIM_THREADS,
    SIM_CSV, SIM_PLOT, SIM_REPORT_EVERY, SIM_JSON, SIM_PERSIST
};

/* The command line of `mab simulate`, checked. */
typedef struct sim_args {
    const char *config;
    const char *experiment; /* NULL: the config's only experiment */
    sim_kind kind;
    double *param, *sd; /* param: --probs or --means; sd: --sd, NULL for Bernoulli */
    size_t n_param, n_sd;
    uint64_t steps, runs, seed, report_every, threads;
    bool json, persist;
    bool compare; /* any of --policies, --runs, --threads, --csv, --plot */
    const char *policies, *csv, *plot;
} sim_args;

static void sim_args_free(sim_args *a)
{
    free(a->param);
    free(a->sd);
}

static int parse_count_option(const command *cmd, const char *name, const char *text,
                              uint64_t max, uint64_t *out)
{
    if (!parse_u64(text, out) || *out == 0 || *out > max)
        return usage_error(cmd, "simulate: --%s '%s' is not an integer in [1, %" PRIu64 "]",
                           name, text, max);
    return 0;
}

static int parse_sim_args(const command *cmd, const char *const *pos, const char *const *opt,
                          sim_args *a)
{
    memset(a, 0, sizeof *a);
    a->config = pos[0];
    a->experiment = pos[1];
    a->steps = 10000;
    a->runs = 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    a->threads = cpus > 0 ? (uint64_t)cpus : 1;
    a->json = opt[SIM_JSON] != NULL;
    a->persist = opt[SIM_PERSIST] != NULL;
    a->policies = opt[SIM_POLICIES];
    a->csv = opt[SIM_CSV];
    a->plot = opt[SIM_PLOT];
    a->compare = opt[SIM_POLICIES] || opt[SIM_RUNS] || opt[SIM_THREADS] || opt[SIM_CSV] ||
                 opt[SIM_PLOT];

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
                                "--threads, --csv or --plot)");
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
        fprintf(stderr, "mab: cannot get a random seed: %s\n", strerror(errno));
        return EXIT_USER;
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
    sim_run_result result;
} single_run;

static void report_window(single_run *sim, uint64_t first, uint64_t last)
{
    uint64_t total = last - first + 1;
    size_t k = sim->bandit->n_arms;
    if (sim->json) {
        printf("%s{\"from\":%" PRIu64 ",\"to\":%" PRIu64 ",\"shares\":{",
               sim->n_windows ? "," : "", first, last);
        for (size_t a = 0; a < k; a++) {
            if (a)
                fputc(',', stdout);
            json_string(stdout, sim->arms[a].arm_id);
            fputc(':', stdout);
            json_number(stdout, (double)sim->window_pulls[a] / (double)total);
        }
        fputs("}}", stdout);
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

static void print_single_json_head(const single_run *sim)
{
    fputs("{\"experiment\":", stdout);
    json_string(stdout, sim->experiment);
    fputs(",\"policy\":", stdout);
    json_string(stdout, sim->policy);
    printf(",\"steps\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"windows\":[", sim->steps, sim->seed);
}

static void print_single_json_result(const single_run *sim)
{
    const sim_bandit *b = sim->bandit;
    const sim_run_result *r = &sim->result;
    fputs("],\"arms\":{", stdout);
    for (size_t a = 0; a < b->n_arms; a++) {
        if (a)
            fputc(',', stdout);
        json_string(stdout, sim->arms[a].arm_id);
        printf(":{\"%s\":", arm_param_name(b));
        json_number(stdout, b->param[a]);
        if (b->kind == SIM_GAUSSIAN) {
            fputs(",\"sd\":", stdout);
            json_number(stdout, b->sd[a]);
        }
        printf(",\"pulls\":%" PRIu64 ",\"share\":", r->pulls[a]);
        json_number(stdout, (double)r->pulls[a] / (double)sim->steps);
        printf(",\"rewards\":%" PRIu64 ",\"reward_sum\":", r->rewards[a]);
        json_number(stdout, r->reward_sum[a]);
        fputc('}', stdout);
    }
    fputs("},\"total_reward\":", stdout);
    json_number(stdout, r->total_reward);
    fputs(",\"regret\":", stdout);
    json_number(stdout, r->regret);
    fputs(",\"best_arm\":", stdout);
    json_string(stdout, sim->arms[b->best].arm_id);
    fputs("}\n", stdout);
}

static int simulate_single(mab_engine *engine, const sim_args *a,
                           const mab_experiment_info *info, const sim_bandit *bandit)
{
    size_t k = bandit->n_arms;
    single_run sim = {.experiment = info->id, .policy = info->policy, .bandit = bandit,
                      .steps = a->steps, .seed = a->seed, .report_every = a->report_every,
                      .json = a->json, .window_start = 1};
    int status = load_stats(engine, info, &sim.arms);
    if (status)
        return status;
    sim.window_pulls = calloc(k, sizeof *sim.window_pulls);
    sim.result.pulls = calloc(k, sizeof *sim.result.pulls);
    sim.result.rewards = calloc(k, sizeof *sim.result.rewards);
    sim.result.reward_sum = calloc(k, sizeof *sim.result.reward_sum);
    if (!sim.window_pulls || !sim.result.pulls || !sim.result.rewards || !sim.result.reward_sum)
        status = fail_oom();
    if (status == 0) {
        if (sim.json)
            print_single_json_head(&sim);
        else
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
            print_single_json_result(&sim);
        else
            status = print_single_text(&sim);
    }
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
    printf(")\n%" PRIu64 " steps, %" PRIu64 " run%s, seed %" PRIu64 ", %u thread%s\n\n",
           a->steps, a->runs, a->runs == 1 ? "" : "s", a->seed, threads, threads == 1 ? "" : "s");

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
    printf("\nLai-Robbins lower bound  %.2f = ln(T) * %.4g (asymptotic; a reference, not a "
           "guarantee at this T)\n",
           rate * log((double)a->steps), rate);
    printf("regret: expected lost rewards T*mu* - sum of mu(chosen arm), from the true means,\n"
           "on the reward range scaled to [0, 1]; best arm: share of pulls on an arm of\n"
           "highest mean; reward/visitor: mean reward sent, in the experiment's units.\n");
}

static void print_compare_json(const sim_args *a, const mab_experiment_info *info,
                               const mab_arm_stats *arms, const sim_bandit *b,
                               const sim_results *r, const char *const *labels)
{
    fputs("{\"experiment\":", stdout);
    json_string(stdout, info->id);
    printf(",\"steps\":%" PRIu64 ",\"runs\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"arms\":{",
           a->steps, a->runs, a->seed);
    for (size_t i = 0; i < b->n_arms; i++) {
        if (i)
            fputc(',', stdout);
        json_string(stdout, arms[i].arm_id);
        printf(":{\"%s\":", arm_param_name(b));
        json_number(stdout, b->param[i]);
        if (b->kind == SIM_GAUSSIAN) {
            fputs(",\"sd\":", stdout);
            json_number(stdout, b->sd[i]);
        }
        fputs(",\"expected\":", stdout);
        json_number(stdout, b->mean[i]);
        fputc('}', stdout);
    }
    double rate = sim_lai_robbins_rate(b);
    fputs("},\"best_arm\":", stdout);
    json_string(stdout, arms[b->best].arm_id);
    fputs(",\"lai_robbins_rate\":", stdout);
    json_number(stdout, rate);
    fputs(",\"lai_robbins_bound\":", stdout);
    json_number(stdout, rate * log((double)a->steps));
    fputs(",\"policies\":[", stdout);
    for (size_t p = 0; p < r->n_policies; p++) {
        const sim_policy_result *pr = &r->policies[p];
        fputs(p ? ",{\"policy\":" : "{\"policy\":", stdout);
        json_string(stdout, labels[p]);
        fputs(",\"regret\":", stdout);
        json_number(stdout, pr->regret_mean);
        fputs(",\"regret_ci95\":", stdout);
        if (isnan(pr->regret_ci)) {
            fputs("null", stdout);
        } else {
            fputc('[', stdout);
            json_number(stdout, pr->regret_mean - pr->regret_ci);
            fputc(',', stdout);
            json_number(stdout, pr->regret_mean + pr->regret_ci);
            fputc(']', stdout);
        }
        fputs(",\"best_arm_share\":", stdout);
        json_number(stdout, pr->best_share);
        fputs(",\"reward_per_visitor\":", stdout);
        json_number(stdout, pr->reward_per_visitor);
        fputs(",\"pulls\":{", stdout);
        for (size_t i = 0; i < b->n_arms; i++) {
            if (i)
                fputc(',', stdout);
            json_string(stdout, arms[i].arm_id);
            printf(":%" PRIu64, pr->pulls[i]);
        }
        fputs("}}", stdout);
    }
    fputs("]}\n", stdout);
}

/* Write a report file with one of the writers of simulate.h. */
static int write_report_file(const char *path, int (*writer)(FILE *, const sim_report *),
                             const sim_report *report)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "mab: cannot write %s: %s\n", path, strerror(errno));
        return EXIT_USER;
    }
    int failed = writer(f, report) != 0;
    if (fclose(f) != 0)
        failed = 1;
    if (failed) {
        fprintf(stderr, "mab: cannot write %s\n", path);
        return EXIT_USER;
    }
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

    if (status == 0 && a->policies) {
        char why[512];
        if (sim_policies_parse(a->policies, &policies, why, sizeof why) != 0) {
            status = usage_error(cmd, "simulate: --policies: %s", why);
        } else {
            mab_error err = {0};
            ids = calloc(policies.n, sizeof *ids);
            if (!ids)
                status = fail_oom();
            for (size_t p = 0; status == 0 && p < policies.n; p++) {
                ids[p] = malloc(32);
                if (!ids[p])
                    status = fail_oom();
                else
                    snprintf(ids[p], 32, "p%zu", p);
            }
            if (status == 0 && sim_write_policy_config(a->config, info->id, &policies, tmp_path,
                                                       sizeof tmp_path, &err) != MAB_OK)
                status = fail(&err);
            labels = (const char *const *)policies.labels;
            experiments = (const char *const *)ids;
        }
    }

    sim_plan plan = {.config_path = tmp_path[0] ? tmp_path : a->config,
                     .experiments = experiments,
                     .n_policies = a->policies ? policies.n : 1,
                     .bandit = bandit,
                     .steps = a->steps,
                     .runs = a->runs,
                     .seed = a->seed,
                     .threads = (unsigned)a->threads,
                     .n_checkpoints = a->steps < 200 ? (size_t)a->steps : 200};
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
            print_compare_json(a, info, arms, bandit, &results, labels);
        else
            print_compare_text(a, info, bandit, &results, labels, threads);
        sim_report report = {.plan = &plan, .results = &results, .labels = labels,
                             .experiment = info->id};
        if (a->csv)
            status = write_report_file(a->csv, sim_write_csv, &report);
        if (status == 0 && a->plot)
            status = write_report_file(a->plot, sim_write_svg, &report);
    }
    sim_results_free(&results);
    for (size_t p = 0; ids && p < policies.n; p++)
        free(ids[p]);
    free(ids);
    sim_policies_free(&policies);
    free(arms);
    return status;
}

static int run_simulate(const command *cmd, const char *const *pos, const char *const *opt)
{
    sim_args args;
    int status = parse_sim_args(cmd, pos, opt, &args);
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
    mab_experiment_info info;
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

/* ------------------------------------------------------------------ */
/* reset                                                               */

static int run_reset(const command *cmd, const char *const *pos, const char *const *opt)
{
    mab_engine *engine;
    int status = open_engine(pos[0], 0, 0, &engine);
    if (status)
        return status;

    mab_experiment_info info;
    mab_arm_stats *arms = NULL;
    uint64_t pulls = 0, rewards = 0;
    status = find_experiment(engine, pos[0], pos[1], &info);
    if (status == 0)
        status = load_stats(engine, &info, &arms);
    if (status == 0) {
        for (size_t a = 0; a < info.n_arms; a++) {
            pulls += arms[a].pulls;
            rewards += arms[a].rewards;
        }
        mab_error err = {0};
        if (mab_reset(engine, pos[1], &err) != MAB_OK)
            status = fail(&err);
    }
    free(arms);
    status = close_engine(engine, status);
    if (status == 0)
        printf("reset experiment '%s': %zu arms, %" PRIu64 " pulls and %" PRIu64
               " rewards cleared\n",
               pos[1], info.n_arms, pulls, rewards);
    return status;
}

/* ------------------------------------------------------------------ */
/* export, import                                                      */

#define EXPORT_FORMAT "mab-export"
#define EXPORT_VERSION 1
/* Counters travel as JSON numbers, which readers such as cJSON and
   JavaScript hold as doubles: exact up to 2^53. */
#define EXPORT_COUNTER_MAX 9007199254740992.0

/* Records gathered by mab_export, with their own copies of the ids. */
typedef struct record_list {
    mab_record *records;
    size_t n, cap;
} record_list;

static void record_list_free(record_list *list)
{
    for (size_t i = 0; i < list->n; i++) {
        free((char *)list->records[i].experiment);
        free((char *)list->records[i].arm);
    }
    free(list->records);
    memset(list, 0, sizeof *list);
}

static bool record_list_add(record_list *list, const mab_record *r)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 64;
        mab_record *grown = realloc(list->records, cap * sizeof *grown);
        if (!grown)
            return false;
        list->records = grown;
        list->cap = cap;
    }
    mab_record copy = *r;
    copy.experiment = strdup(r->experiment);
    copy.arm = strdup(r->arm);
    if (!copy.experiment || !copy.arm) {
        free((char *)copy.experiment);
        free((char *)copy.arm);
        return false;
    }
    list->records[list->n++] = copy;
    return true;
}

static int collect_record(void *ctx, const mab_record *r)
{
    return record_list_add(ctx, r) ? 0 : MAB_ENOMEM;
}

static int compare_records(const void *a, const void *b)
{
    const mab_record *x = a, *y = b;
    int c = strcmp(x->experiment, y->experiment);
    return c ? c : strcmp(x->arm, y->arm);
}

/* The shortest text that reads back as exactly v (finite v). */
static void json_number_exact(FILE *out, double v)
{
    char text[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, v);
        if (strtod(text, NULL) == v)
            break;
    }
    fputs(text, out);
}

/* The export document, records sorted by experiment then arm. */
static void write_export(FILE *out, const record_list *list)
{
    fprintf(out, "{\n  \"format\": \"" EXPORT_FORMAT "\",\n  \"version\": %d,\n"
                 "  \"experiments\": {",
            EXPORT_VERSION);
    for (size_t i = 0; i < list->n; i++) {
        const mab_record *r = &list->records[i];
        bool first_of_experiment =
            i == 0 || strcmp(r->experiment, list->records[i - 1].experiment) != 0;
        if (first_of_experiment) {
            fputs(i ? "\n    },\n    " : "\n    ", out);
            json_string(out, r->experiment);
            fputs(": {\n      ", out);
        } else {
            fputs(",\n      ", out);
        }
        json_string(out, r->arm);
        fprintf(out, ": {\"pulls\": %" PRIu64 ", \"rewards\": %" PRIu64 ", \"reward_sum\": ",
                r->pulls, r->rewards);
        json_number_exact(out, r->reward_sum);
        fputs(", \"reward_sum_sq\": ", out);
        json_number_exact(out, r->reward_sum_sq);
        fputc('}', out);
    }
    fputs(list->n ? "\n    }\n  }\n}\n" : "}\n}\n", out);
}

/* Write the export to path through path.tmp and a rename, so a failed
   export never leaves half a file behind. */
static int write_export_file(const char *path, const record_list *list)
{
    size_t len = strlen(path) + 5;
    char *tmp = malloc(len);
    if (!tmp)
        return fail_oom();
    snprintf(tmp, len, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "mab: cannot create %s: %s\n", tmp, strerror(errno));
        free(tmp);
        return EXIT_USER;
    }
    write_export(f, list);
    bool ok = fflush(f) == 0 && !ferror(f) && fsync(fileno(f)) == 0;
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        fprintf(stderr, "mab: cannot write %s: %s\n", path, strerror(saved));
        unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : EXIT_USER;
}

enum { EXPORT_OUT };

static int run_export(const command *cmd, const char *const *pos, const char *const *opt)
{
    mab_engine *engine;
    int status = open_engine(pos[0], 0, 0, &engine);
    if (status)
        return status;
    record_list list = {0};
    mab_error err = {0};
    int rc = mab_export(engine, collect_record, &list, &err);
    if (rc == MAB_ENOMEM && !err.message[0])
        status = fail_oom();
    else if (rc != MAB_OK)
        status = fail(&err);
    status = close_engine(engine, status);
    if (status == 0) {
        qsort(list.records, list.n, sizeof *list.records, compare_records);
        if (opt[EXPORT_OUT])
            status = write_export_file(opt[EXPORT_OUT], &list);
        else
            write_export(stdout, &list);
    }
    if (status == 0 && opt[EXPORT_OUT])
        fprintf(stderr, "exported %zu records to %s\n", list.n, opt[EXPORT_OUT]);
    record_list_free(&list);
    return status;
}

/* The file's text, NUL-terminated, or NULL after printing why. */
static char *read_input_file(const char *path)
{
    mab_error err = {0};
    char *text = sim_read_file(path, &err);
    if (!text)
        fail(&err);
    return text;
}

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

static bool json_counter(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > EXPORT_COUNTER_MAX)
        return false;
    *out = (uint64_t)d;
    return true;
}

/* One arm's object of an export file into r; false after printing why. */
static bool export_arm_record(const char *path, const cJSON *exp, const cJSON *arm,
                              mab_record *r)
{
    static const char *const fields[] = {"pulls", "rewards", "reward_sum", "reward_sum_sq"};
    const char *why = NULL, *field = "";
    if (!cJSON_IsObject(arm))
        why = "expected an object";
    for (const cJSON *c = arm->child; !why && c; c = c->next) {
        bool known = false;
        for (size_t i = 0; i < 4; i++)
            known |= strcmp(c->string, fields[i]) == 0;
        if (!known) {
            field = c->string;
            why = "unknown field";
        }
    }
    const cJSON *v;
    r->experiment = exp->string;
    r->arm = arm->string;
    if (!why && !json_counter(cJSON_GetObjectItemCaseSensitive(arm, field = "pulls"), &r->pulls))
        why = "expected an integer in [0, 2^53]";
    if (!why &&
        !json_counter(cJSON_GetObjectItemCaseSensitive(arm, field = "rewards"), &r->rewards))
        why = "expected an integer in [0, 2^53]";
    if (!why && !(cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(arm, field = "reward_sum")) &&
                  isfinite(v->valuedouble)))
        why = "expected a finite number";
    if (!why)
        r->reward_sum = v->valuedouble;
    if (!why &&
        !(cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(arm, field = "reward_sum_sq")) &&
          isfinite(v->valuedouble) && v->valuedouble >= 0))
        why = "expected a finite, non-negative number";
    if (!why)
        r->reward_sum_sq = v->valuedouble;
    if (why)
        fprintf(stderr, "mab: %s: experiments.%s.%s%s%s: %s; nothing was imported\n", path,
                exp->string, arm->string, field[0] ? "." : "", field, why);
    return why == NULL;
}

/* Records of a mab-export document (pointing into root); false after printing why. */
static bool export_records(const char *path, const cJSON *root, record_list *list)
{
    const char *why = NULL;
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *experiments = cJSON_GetObjectItemCaseSensitive(root, "experiments");
    if (!cJSON_IsObject(root))
        why = "expected a JSON object at the top level";
    else if (!cJSON_IsString(format) || strcmp(format->valuestring, EXPORT_FORMAT) != 0)
        why = "format: expected \"" EXPORT_FORMAT "\" (a file written by `mab export`)";
    else if (!cJSON_IsNumber(version))
        why = "version: expected an integer";
    if (why) {
        fprintf(stderr, "mab: %s: %s; nothing was imported\n", path, why);
        return false;
    }
    if (version->valuedouble != EXPORT_VERSION) {
        fprintf(stderr,
                "mab: %s: unsupported export version %g (this mab reads version %d); nothing "
                "was imported\n",
                path, version->valuedouble, EXPORT_VERSION);
        return false;
    }
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "format") && strcmp(c->string, "version") &&
            strcmp(c->string, "experiments")) {
            fprintf(stderr, "mab: %s: %s: unknown field; nothing was imported\n", path,
                    c->string);
            return false;
        }
    }
    if (!cJSON_IsObject(experiments)) {
        fprintf(stderr, "mab: %s: experiments: expected an object; nothing was imported\n", path);
        return false;
    }
    for (const cJSON *exp = experiments->child; exp; exp = exp->next) {
        if (!cJSON_IsObject(exp)) {
            fprintf(stderr, "mab: %s: experiments.%s: expected an object; nothing was imported\n",
                    path, exp->string);
            return false;
        }
        for (const cJSON *arm = exp->child; arm; arm = arm->next) {
            mab_record r;
            if (!export_arm_record(path, exp, arm, &r))
                return false;
            if (list->n == list->cap) {
                size_t cap = list->cap ? 2 * list->cap : 64;
                mab_record *grown = realloc(list->records, cap * sizeof *grown);
                if (!grown) {
                    fail_oom();
                    return false;
                }
                list->records = grown;
                list->cap = cap;
            }
            list->records[list->n++] = r;
        }
    }
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
    mab_experiment_info info;
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
        if (!cJSON_IsString(id) || !json_counter(cJSON_GetArrayItem(pulls, i), &r.pulls) ||
            !cJSON_IsNumber(sum) || !isfinite(sum->valuedouble) || sum->valuedouble < 0 ||
            sum->valuedouble > EXPORT_COUNTER_MAX) {
            fprintf(stderr,
                    "mab: %s: %s: arm %d: expected a string id, a pull count and a "
                    "non-negative reward sum; nothing was imported\n",
                    path, name, i);
            return false;
        }
        mab_choice choice;
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
        mab_record keep = r;
        if (list->n == list->cap) {
            size_t cap = list->cap ? 2 * list->cap : 64;
            mab_record *grown = realloc(list->records, cap * sizeof *grown);
            if (!grown) {
                fail_oom();
                return false;
            }
            list->records = grown;
            list->cap = cap;
        }
        list->records[list->n++] = keep;
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

enum { IMPORT_REPLACE, IMPORT_FROM_FLASK_MAB };

static int run_import(const command *cmd, const char *const *pos, const char *const *opt)
{
    bool flask = opt[IMPORT_FROM_FLASK_MAB] != NULL, replace = opt[IMPORT_REPLACE] != NULL;
    char *text = read_input_file(pos[1]);
    if (!text)
        return EXIT_USER;
    cJSON *root = parse_input_json(pos[1], text);
    free(text);
    if (!root)
        return EXIT_USER;

    mab_engine *engine;
    int status = open_engine(pos[0], 0, 0, &engine);
    if (status) {
        cJSON_Delete(root);
        return status;
    }
    /* Records point into root (ids) and are not owned: free only the array. */
    record_list list = {0};
    flask_report report = {0};
    bool ok = flask ? flask_records(engine, pos[1], root, &list, &report)
                    : export_records(pos[1], root, &list);
    if (!ok)
        status = EXIT_USER;
    if (status == 0 && flask && list.n == 0) {
        fprintf(stderr, "mab: %s: no bandit matched an experiment and arm of %s; nothing was "
                        "imported\n",
                pos[1], pos[0]);
        status = EXIT_USER;
    }
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
        printf("imported %zu records from %s%s\n", list.n, pos[1],
               replace ? ", replacing the counters of their experiments" : "");
    }
    free(list.records);
    cJSON_Delete(root);
    return status;
}

/* ------------------------------------------------------------------ */
/* keygen                                                              */

static int run_keygen(const command *cmd, const char *const *pos, const char *const *opt)
{
    mab_error err = {0};
    if (mab_adapter_keygen(pos[0], &err) != MAB_OK)
        return fail(&err);
    printf("wrote a new key to %s (mode 0600)\n", pos[0]);
    return 0;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error(NULL, "missing command");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_main_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("mab %s (libmab %s)\n", MAB_VERSION_STRING, mab_version());
        return 0;
    }

    const command *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            cmd = &commands[i];
    }
    if (!cmd)
        return usage_error(NULL, "unknown command '%s'", argv[1]);

    const char *pos[MAX_POSITIONAL] = {0};
    const char *opt_values[MAX_OPTIONS] = {0};
    int status = parse_args(cmd, argc - 2, argv + 2, pos, opt_values);
    if (status == -1)
        status = 0;
    else if (status == 0)
        status = cmd->run(cmd, pos, opt_values);

    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "mab: cannot write output: %s\n", strerror(errno));
        if (status == 0)
            status = EXIT_USER;
    }
    return status;
}
