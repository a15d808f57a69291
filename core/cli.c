/*
 * cli.c - the `mab` command line tool.
 *
 * Check a config, choose and reward by hand, print statistics, simulate
 * traffic against arms with known click rates, reset an experiment, export
 * and import counters. It uses only the public engine API (mab/mab.h), like
 * any other host; cJSON is used for nothing but reading the config's "seed"
 * for `simulate` and the files given to `import`.
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

enum { EXIT_USER = 1, EXIT_USAGE = 2 };

/* ------------------------------------------------------------------ */
/* Commands and their usage                                            */

typedef struct command command;

typedef struct option_spec {
    const char *name; /* without the leading "--" */
    bool takes_value;
} option_spec;

#define MAX_OPTIONS 8
#define MAX_POSITIONAL 4

struct command {
    const char *name;
    const char *summary;
    const char *usage; /* printed by --help and after usage errors */
    const char *positional[MAX_POSITIONAL]; /* names, for "missing argument X" */
    size_t n_positional;
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

enum { SIM_PROBS, SIM_STEPS, SIM_SEED, SIM_REPORT_EVERY, SIM_JSON, SIM_PERSIST };

static const command commands[] = {
    {"check", "validate a config and describe its experiments",
     "usage: mab check CONFIG\n"
     "\n"
     "Open CONFIG with its storage and print every experiment (policy and the\n"
     "file it was loaded from, number of arms, reward range) and the storage\n"
     "plugin in use.\n",
     {"CONFIG"}, 1, {{0}}, 0, run_check},
    {"choose", "choose an arm and count the pull",
     "usage: mab choose CONFIG EXP\n"
     "\n"
     "Let the policy of experiment EXP choose an arm, count the pull in\n"
     "storage and print ARM_ID<TAB>VALUE_JSON<TAB>PROBABILITY (nan when the\n"
     "policy cannot tell).\n",
     {"CONFIG", "EXP"}, 2, {{0}}, 0, run_choose},
    {"reward", "record a reward for an arm",
     "usage: mab reward CONFIG EXP ARM VALUE\n"
     "\n"
     "Record reward VALUE (a number in the experiment's reward range, by\n"
     "default [0, 1]) for arm ARM of experiment EXP.\n",
     {"CONFIG", "EXP", "ARM", "VALUE"}, 4, {{0}}, 0, run_reward},
    {"stats", "print every arm's counters",
     "usage: mab stats CONFIG [--json]\n"
     "\n"
     "Print pulls, rewards, reward sum and mean reward of every arm.\n"
     "\n"
     "  --json   print one JSON object:\n"
     "           {\"experiments\":{EXP:{\"policy\":NAME,\"arms\":{ARM:{\"pulls\":N,\n"
     "           \"rewards\":N,\"reward_sum\":X,\"mean\":X}}}}}\n",
     {"CONFIG"}, 1, {{"json", false}}, 1, run_stats},
    {"simulate", "simulate visitors against known click rates",
     "usage: mab simulate CONFIG EXP --probs P1,P2,... [--steps N] [--seed S]\n"
     "                    [--report-every N] [--json] [--persist]\n"
     "\n"
     "Send N simulated visitors to experiment EXP. Arm i (in config order) is\n"
     "clicked with probability Pi; a click is rewarded with the experiment's\n"
     "reward maximum, a visitor who does not click sends nothing. Prints each\n"
     "arm's pulls and rewards, the total reward, the expected regret and the\n"
     "best arm. Counters start at zero and nothing is stored unless --persist.\n"
     "\n"
     "  --probs P1,P2,...   one click probability in [0, 1] per arm (required)\n"
     "  --steps N           number of visitors (default 10000)\n"
     "  --seed S            seed of the policy's and the visitors' random streams\n"
     "                      (default: the config's seed, else a random one;\n"
     "                      the seed used is printed, the same seed gives the\n"
     "                      same output)\n"
     "  --report-every N    every N visitors, print the share of traffic each arm\n"
     "                      got in that window\n"
     "  --json              print the results as one JSON object\n"
     "  --persist           load counters from storage and write them back\n",
     {"CONFIG", "EXP"}, 2,
     {{"probs", true}, {"steps", true}, {"seed", true}, {"report-every", true},
      {"json", false}, {"persist", false}}, 6, run_simulate},
    {"reset", "zero an experiment's counters",
     "usage: mab reset CONFIG EXP\n"
     "\n"
     "Zero the counters of every arm of experiment EXP, in storage too\n"
     "(counters of arms no longer in the config are removed).\n",
     {"CONFIG", "EXP"}, 2, {{0}}, 0, run_reset},
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
     {"CONFIG"}, 1, {{"out", true}}, 1, run_export},
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
     {"CONFIG", "FILE"}, 2, {{"replace", false}, {"from-flask-mab", false}}, 2, run_import},
    {"keygen", "create a cookie signing key file",
     "usage: mab keygen FILE\n"
     "\n"
     "Write 32 random bytes, base64 on one line, to FILE (mode 0600), for the\n"
     "config's \"secret_file\". Refuses to overwrite an existing file. To rotate\n"
     "keys, put a new key on the first line of secret_file and keep the old one\n"
     "below it for a cookie lifetime (docs/hosts.md).\n",
     {"FILE"}, 1, {{0}}, 0, run_keygen},
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
    if (n_pos < cmd->n_positional)
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
 * The visitors' own random stream (xoshiro256**, seeded through
 * splitmix64), separate from the engine's so that the clicks a seed
 * produces do not depend on how many numbers the policy draws.
 */
typedef struct visitor_rng {
    uint64_t s[4];
} visitor_rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void visitor_rng_seed(visitor_rng *rng, uint64_t seed)
{
    /* A fixed offset keeps this stream apart from the engine's, which is
       seeded from the same number. */
    uint64_t x = seed ^ 0x5349d2c1b0a7e6f3ULL;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

static double visitor_rng_uniform(visitor_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return (double)(result >> 11) * 0x1.0p-53;
}

/*
 * The config's "seed", when it is a non-negative integer, so that a
 * simulation without --seed follows it. Anything unreadable is left to
 * mab_open to report.
 */
static bool config_seed(const char *path, uint64_t *seed)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char *text = NULL;
    size_t len = 0, cap = 0;
    bool found = false;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *grown = realloc(text, cap);
            if (!grown)
                goto out;
            text = grown;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        goto out;
    text[len] = '\0';
    cJSON *root = cJSON_Parse(text);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (cJSON_IsNumber(item) && item->valuedouble >= 0 && item->valuedouble < 0x1.0p64 &&
        item->valuedouble == floor(item->valuedouble)) {
        *seed = (uint64_t)item->valuedouble;
        found = true;
    }
    cJSON_Delete(root);
out:
    free(text);
    fclose(f);
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

/* Parse "P1,P2,..." into a fresh array; a usage error names the problem. */
static int parse_probs(const command *cmd, const char *text, double **probs, size_t *n_probs)
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
        if (!parse_double(item, &values[i]) || !(values[i] >= 0 && values[i] <= 1)) {
            int status = usage_error(cmd,
                                     "simulate: --probs value %zu ('%s') is not a probability "
                                     "in [0, 1]",
                                     i + 1, item);
            free(values);
            free(copy);
            return status;
        }
        item = comma ? comma + 1 : item + strlen(item);
    }
    free(copy);
    *probs = values;
    *n_probs = n;
    return 0;
}

typedef struct sim_arm {
    const char *id;
    double click_rate;
    uint64_t pulls;
    uint64_t rewards;
    uint64_t window_pulls;
} sim_arm;

typedef struct simulation {
    const char *experiment;
    const char *policy;
    double reward_value; /* what a click is rewarded with: the range's maximum */
    sim_arm *arms;
    size_t n_arms;
    size_t best;         /* arm with the highest click rate (first of ties) */
    uint64_t steps;
    uint64_t report_every; /* 0: no window reports */
    uint64_t seed;
    bool json;
    double total_reward;
    double regret;       /* sum over steps of (p* - p[chosen arm]) */
    size_t n_windows;    /* windows reported so far */
} simulation;

static void report_window(simulation *sim, uint64_t first, uint64_t last)
{
    uint64_t total = last - first + 1;
    if (sim->json) {
        printf("%s{\"from\":%" PRIu64 ",\"to\":%" PRIu64 ",\"shares\":{",
               sim->n_windows ? "," : "", first, last);
        for (size_t a = 0; a < sim->n_arms; a++) {
            if (a)
                fputc(',', stdout);
            json_string(stdout, sim->arms[a].id);
            fputc(':', stdout);
            json_number(stdout, (double)sim->arms[a].window_pulls / (double)total);
        }
        fputs("}}", stdout);
    } else {
        int digits = snprintf(NULL, 0, "%" PRIu64, sim->steps);
        printf("steps %*" PRIu64 "-%-*" PRIu64 "", digits, first, digits, last);
        for (size_t a = 0; a < sim->n_arms; a++)
            printf("  %s %5.1f%%", sim->arms[a].id,
                   100.0 * (double)sim->arms[a].window_pulls / (double)total);
        fputc('\n', stdout);
    }
    for (size_t a = 0; a < sim->n_arms; a++)
        sim->arms[a].window_pulls = 0;
    sim->n_windows++;
}

static int simulate_steps(mab_engine *engine, simulation *sim)
{
    visitor_rng rng;
    visitor_rng_seed(&rng, sim->seed);
    double best_rate = sim->arms[sim->best].click_rate;
    uint64_t window_start = 1;

    for (uint64_t step = 1; step <= sim->steps; step++) {
        mab_choice choice;
        mab_error err = {0};
        if (mab_choose(engine, sim->experiment, &choice, &err) != MAB_OK)
            return fail(&err);
        if (choice.arm_index >= sim->n_arms) {
            fprintf(stderr, "mab: experiment '%s' chose arm index %zu of %zu\n",
                    sim->experiment, choice.arm_index, sim->n_arms);
            return EXIT_USER;
        }
        sim_arm *arm = &sim->arms[choice.arm_index];
        arm->pulls++;
        arm->window_pulls++;
        sim->regret += best_rate - arm->click_rate;
        if (visitor_rng_uniform(&rng) < arm->click_rate) {
            if (mab_reward(engine, sim->experiment, choice.arm_id, sim->reward_value, &err) !=
                MAB_OK)
                return fail(&err);
            arm->rewards++;
            sim->total_reward += sim->reward_value;
        }
        if (sim->report_every && (step % sim->report_every == 0 || step == sim->steps)) {
            report_window(sim, window_start, step);
            window_start = step + 1;
        }
    }
    return 0;
}

static void print_simulation_text_head(const simulation *sim)
{
    printf("experiment %s (policy %s): %" PRIu64 " steps, seed %" PRIu64 "\n", sim->experiment,
           sim->policy, sim->steps, sim->seed);
}

static int print_simulation_text_result(const simulation *sim)
{
    text_table table;
    table_init(&table, 6, 0x3eu);
    const char *header[] = {"arm", "click_rate", "observed", "pulls", "share", "rewards"};
    bool ok = table_add_row(&table, header);
    for (size_t a = 0; ok && a < sim->n_arms; a++) {
        const sim_arm *arm = &sim->arms[a];
        char rate[40], observed[40], pulls[32], share[32], rewards[32];
        snprintf(rate, sizeof rate, "%g", arm->click_rate);
        if (arm->pulls)
            snprintf(observed, sizeof observed, "%.4f",
                     (double)arm->rewards / (double)arm->pulls);
        else
            snprintf(observed, sizeof observed, "-");
        snprintf(pulls, sizeof pulls, "%" PRIu64, arm->pulls);
        snprintf(share, sizeof share, "%.1f%%", 100.0 * (double)arm->pulls / (double)sim->steps);
        snprintf(rewards, sizeof rewards, "%" PRIu64, arm->rewards);
        const char *row[] = {arm->id, rate, observed, pulls, share, rewards};
        ok = table_add_row(&table, row);
    }
    if (ok) {
        if (sim->report_every)
            fputc('\n', stdout);
        table_print(&table, stdout, "");
        const sim_arm *best = &sim->arms[sim->best];
        printf("\ntotal reward  %.10g\n", sim->total_reward);
        printf("regret        %.6f\n", sim->regret);
        printf("best arm      %s (click rate %g, %.1f%% of pulls)\n", best->id,
               best->click_rate, 100.0 * (double)best->pulls / (double)sim->steps);
    }
    table_free(&table);
    return ok ? 0 : fail_oom();
}

static void print_simulation_json_head(const simulation *sim)
{
    fputs("{\"experiment\":", stdout);
    json_string(stdout, sim->experiment);
    fputs(",\"policy\":", stdout);
    json_string(stdout, sim->policy);
    printf(",\"steps\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"windows\":[", sim->steps, sim->seed);
}

static void print_simulation_json_result(const simulation *sim)
{
    fputs("],\"arms\":{", stdout);
    for (size_t a = 0; a < sim->n_arms; a++) {
        const sim_arm *arm = &sim->arms[a];
        if (a)
            fputc(',', stdout);
        json_string(stdout, arm->id);
        fputs(":{\"click_rate\":", stdout);
        json_number(stdout, arm->click_rate);
        printf(",\"pulls\":%" PRIu64 ",\"share\":", arm->pulls);
        json_number(stdout, (double)arm->pulls / (double)sim->steps);
        printf(",\"rewards\":%" PRIu64 "}", arm->rewards);
    }
    fputs("},\"total_reward\":", stdout);
    json_number(stdout, sim->total_reward);
    fputs(",\"regret\":", stdout);
    json_number(stdout, sim->regret);
    fputs(",\"best_arm\":", stdout);
    json_string(stdout, sim->arms[sim->best].id);
    fputs("}\n", stdout);
}

static int run_simulate(const command *cmd, const char *const *pos, const char *const *opt)
{
    simulation sim = {.experiment = pos[1], .steps = 10000, .json = opt[SIM_JSON] != NULL};

    if (!opt[SIM_PROBS])
        return usage_error(cmd, "simulate: --probs is required");
    if (opt[SIM_STEPS] && (!parse_u64(opt[SIM_STEPS], &sim.steps) || sim.steps == 0))
        return usage_error(cmd, "simulate: --steps '%s' is not a positive integer",
                           opt[SIM_STEPS]);
    if (opt[SIM_REPORT_EVERY] &&
        (!parse_u64(opt[SIM_REPORT_EVERY], &sim.report_every) || sim.report_every == 0))
        return usage_error(cmd, "simulate: --report-every '%s' is not a positive integer",
                           opt[SIM_REPORT_EVERY]);
    if (opt[SIM_SEED]) {
        if (!parse_u64(opt[SIM_SEED], &sim.seed))
            return usage_error(cmd, "simulate: --seed '%s' is not an unsigned 64-bit integer",
                               opt[SIM_SEED]);
    } else if (!config_seed(pos[0], &sim.seed) && !random_seed(&sim.seed)) {
        fprintf(stderr, "mab: cannot get a random seed: %s\n", strerror(errno));
        return EXIT_USER;
    }
    double *probs = NULL;
    size_t n_probs = 0;
    int status = parse_probs(cmd, opt[SIM_PROBS], &probs, &n_probs);
    if (status)
        return status;

    /* The seed is always passed on, so that the printed seed reproduces
       the run whether it came from --seed, the config or the system. */
    unsigned flags = MAB_OPEN_SEED | (opt[SIM_PERSIST] ? 0 : MAB_OPEN_NO_STORAGE);
    mab_engine *engine;
    status = open_engine(pos[0], flags, sim.seed, &engine);
    if (status) {
        free(probs);
        return status;
    }

    mab_experiment_info info;
    mab_arm_stats *stats = NULL;
    status = find_experiment(engine, pos[0], sim.experiment, &info);
    if (status == 0 && n_probs != info.n_arms)
        status = usage_error(cmd, "simulate: --probs has %zu value%s but experiment '%s' has "
                                  "%zu arms",
                             n_probs, n_probs == 1 ? "" : "s", sim.experiment, info.n_arms);
    if (status == 0)
        status = load_stats(engine, &info, &stats);
    if (status == 0) {
        sim.arms = calloc(info.n_arms, sizeof *sim.arms);
        if (!sim.arms)
            status = fail_oom();
    }
    if (status == 0) {
        sim.policy = info.policy;
        sim.n_arms = info.n_arms;
        sim.reward_value = info.reward_max;
        for (size_t a = 0; a < sim.n_arms; a++) {
            sim.arms[a].id = stats[a].arm_id;
            sim.arms[a].click_rate = probs[a];
            if (probs[a] > probs[sim.best])
                sim.best = a;
        }
        if (sim.json)
            print_simulation_json_head(&sim);
        else
            print_simulation_text_head(&sim);
        status = simulate_steps(engine, &sim);
        if (status == 0) {
            if (sim.json)
                print_simulation_json_result(&sim);
            else
                status = print_simulation_text_result(&sim);
        }
    }
    free(stats);
    free(probs);
    /* Arm ids belong to the engine: everything that prints them is done. */
    status = close_engine(engine, status);
    free(sim.arms);
    return status;
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
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mab: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
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
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "mab: cannot read %s\n", path);
        free(text);
        return NULL;
    }
    text[len] = '\0';
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
