/*
 * mab.c - the `mab` command line tool: the command table, dispatch and the
 * main usage. Each command is cmd_NAME() in cmd_NAME.c (git's builtin/
 * style); options.c parses arguments, output.c prints.
 *
 * Check a config, choose and reward by hand, print statistics and reports, simulate
 * traffic against arms with known rewards and compare policies, reset an
 * experiment, export and import counters, create a cookie key. It uses only
 * the public API (include/mab/), like any other host; every JSON it writes
 * is built with cJSON.
 *
 * Exit status: 0 success, 1 an error the engine reported (printed as
 * "mab: MESSAGE"), 2 a usage error (message and usage on stderr).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mab/mab.h"

#include "commands.h"
#include "options.h"
#include "output.h"

/* The paragraph every stored admin action's help ends with (pause, resume,
   conclude, clear). */
#define STATE_ACTION_HELP                                                              \
    "The action is written to the config's storage first (nothing changes when\n"    \
    "the store refuses it) and holds over the config's \"state\" and \"serve\"\n"    \
    "until the next action, across restarts and reloads: every engine over the\n"    \
    "store (mabd, nginx and Flask workers, other machines) follows at its next\n"    \
    "refresh (storage.refresh_ms). The store must take a second writer (LMDB,\n"    \
    "Redis, MongoDB; json_file is held by a running server: use mabd's\n"           \
    "POST /v1/admin/experiments/EXP/ACTION there). See docs/operating.md.\n"

static const command commands[] = {
    {"check", "test everything the hosts would load, read-only",
     "usage: mab check CONFIG\n"
     "\n"
     "Test CONFIG as the hosts load it, creating, locking and writing nothing (it\n"
     "works while a server holds the store): every key, every plugin, the storage\n"
     "parameters and the existing store (read-only), the key file of secret_file\n"
     "(present, readable, not readable or writable by others, holding a key),\n"
     "cookie and redirect_allow, and the mabd section as mabd reads it. Prints the\n"
     "storage plugin and every experiment (policy and the file it was loaded from,\n"
     "number of arms, reward range), and whether rewards count once per assignment\n"
     "across every process (the storage keeps claims) or only per process; exit 1\n"
     "naming the first fault. `mabd -t` runs the same checks.\n",
     {"CONFIG"}, 1, 0, {{0}}, 0, cmd_check},
    {"choose", "choose an arm and count the pull",
     "usage: mab choose CONFIG EXP\n"
     "\n"
     "Let the policy of experiment EXP choose an arm, count the pull in\n"
     "storage and print ARM_ID<TAB>VALUE_JSON<TAB>PROBABILITY (nan when the\n"
     "policy cannot tell).\n",
     {"CONFIG", "EXP"}, 2, 0, {{0}}, 0, cmd_choose},
    {"reward", "record a reward for an arm",
     "usage: mab reward CONFIG EXP ARM VALUE\n"
     "\n"
     "Record reward VALUE (a number in the experiment's reward range, by\n"
     "default [0, 1]) for arm ARM of experiment EXP.\n",
     {"CONFIG", "EXP", "ARM", "VALUE"}, 4, 0, {{0}}, 0, cmd_reward},
    {"stats", "print every arm's counters",
     "usage: mab stats CONFIG [--json]\n"
     "\n"
     "Print pulls, rewards, reward sum and mean reward of every arm. The store\n"
     "is read read-only, so this works while a server holds a json_file store\n"
     "(showing what the server has written).\n"
     "\n"
     "  --json   print one JSON object:\n"
     "           {\"experiments\":{EXP:{\"policy\":NAME,\"arms\":{ARM:{\"pulls\":N,\n"
     "           \"rewards\":N,\"reward_sum\":X,\"mean\":X,\"ci_low\":X,\"ci_high\":X,\n"
     "           \"p_best\":X,\"expected_loss\":X,\"share_last_bucket\":X,\n"
     "           \"late_rewards\":N}},\"rules\":{...}}}}, the arms' fields and the\n"
     "           rules in force of `mab report` (null: not available)\n",
     {"CONFIG"}, 1, 0, {{"json", false}}, 1, cmd_stats},
    {"report", "say which arm is winning, and how sure",
     "usage: mab report CONFIG [EXP] [--json] [--history N]\n"
     "\n"
     "Report on experiment EXP (every experiment without it): per arm the pulls,\n"
     "the mean reward with its 95% credible interval, P(best) (the probability\n"
     "that the arm has the highest mean) and the expected loss of choosing it\n"
     "(in reward units), its share of the pulls of the last stored time bucket,\n"
     "the leader (marked *), the operating rules in force, and the recommendation:\n"
     "\"winner: ARM, ...\" once the leader's P(best) reaches the experiment's\n"
     "winner.p_best (default 0.95) and its expected loss is below\n"
     "winner.expected_loss (default 0.001), else \"keep exploring: ...\".\n"
     "Posteriors are Beta for a reward range of [0, 1], Normal with the arm's\n"
     "sample variance otherwise; P(best) and expected loss come from 10000\n"
     "draws seeded by the experiment's id, so a store gives one answer. What\n"
     "storage cannot tell yet is printed as not available. Reads the store\n"
     "read-only, as stats does. See docs/operating.md.\n"
     "\n"
     "  --json   print one JSON object: {\"experiments\":{EXP:REPORT}}, REPORT as\n"
     "           documented in docs/cli.md (\"leader\", \"winner\",\n"
     "           \"recommendation\", \"arms\":{ARM:{\"pulls\", \"mean\", \"ci_low\",\n"
     "           \"ci_high\", \"p_best\", \"expected_loss\", ...}}, \"rules\",\n"
     "           \"history\": the last N time buckets, ...)\n"
     "  --history N  buckets of history in the JSON (default 24, at most 8760;\n"
     "           about 100 bytes per arm and bucket)\n",
     {"CONFIG", "EXP"}, 2, 1, {{"json", false}, {"history", true}}, 2, cmd_report},
    {"simulate", "simulate visitors and compare policies on known arms",
     "usage: mab simulate CONFIG [EXP] (--probs P1,P2,... | --means M1,M2,... --sd S)\n"
     "                    [--steps T] [--seed S] [--json]\n"
     "                    [--report-every N] [--persist]          (one run)\n"
     "                    [--policies LIST] [--runs R] [--threads N]\n"
     "                    [--csv FILE] [--plot FILE.svg]          (comparison)\n"
     "                    [--change-at T1 --probs-after P1,P2,...] [--drift A]\n"
     "                    [--drift-period S] [--delay D[s]] [--workers N --refresh MS]\n"
     "                    [--context linear:D] [--rate V]         (scenarios)\n"
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
     "                      a plugin found as the config's policies are (next to\n"
     "                      libmab, MAB_PLUGIN_PATH, plugin_path) and\n"
     "                      its parameters, e.g.\n"
     "                      epsilon_greedy:epsilon=0.1,ucb1,thompson,softmax:tau=0.1\n"
     "  --runs R            independent runs per policy (default 20)\n"
     "  --threads N         worker threads (default: the number of CPUs)\n"
     "  --csv FILE          write the regret curves, averaged over runs, with their\n"
     "                      95% interval and the Lai-Robbins bound: columns policy,\n"
     "                      step, regret_mean, regret_ci95_low, regret_ci95_high,\n"
     "                      lai_robbins_bound (200 steps per policy at most)\n"
     "  --plot FILE.svg     draw those curves, their bands and the bound as SVG,\n"
     "                      and below them each policy's share of traffic per arm\n"
     "                      over time (mean over runs)\n"
     "\n"
     "Scenarios (each makes a comparison; they combine). Time is simulated:\n"
     "visitor n arrives at (n - 1) / V seconds and the engines read that time\n"
     "from their injected clock, so results never depend on the machine.\n"
     "Regret is dynamic: each visitor's best arm at that time minus the chosen.\n"
     "\n"
     "  --rate V            visitors per simulated second (default 100)\n"
     "  --change-at T1      abrupt change: visitors after T1 click with the\n"
     "  --probs-after P,... probabilities of --probs-after (Bernoulli arms)\n"
     "  --drift A           daily cycle: arm i's click probability at second s is\n"
     "                      Pi + A sin(2 pi (s / PERIOD + i / K)), clamped to\n"
     "                      [0, 1] (A in click probability, K arms)\n"
     "  --drift-period S    the cycle's PERIOD in simulated seconds (default\n"
     "                      86400, one day)\n"
     "  --delay D[s]        clicks reach the engine after an exponential delay\n"
     "                      of mean D visitors, or D simulated seconds with the\n"
     "                      suffix s (30s); a visitor who does not click never\n"
     "                      sends anything, and clicks still delayed at T are\n"
     "                      never sent\n"
     "  --workers N         N engines over one in-memory store, visitor n served\n"
     "  --refresh MS        by engine n mod N; each writes its counts and\n"
     "                      re-reads the store every MS simulated ms (phases\n"
     "                      spread), seeing the others' counts only then\n"
     "  --context linear:D  visitors have features x0..x{D-1} ~ N(0, 1), passed\n"
     "                      by name (mab_choose_ctx, mab_reward_ctx), and click\n"
     "                      arm a with probability sigmoid(theta_a . x - 2),\n"
     "                      theta_a ~ N(0, I) fixed by the seed; a policy reads\n"
     "                      them when its item says features=x0;x1;...\n",
     {"CONFIG", "EXP"}, 2, 1,
     {{"probs", true}, {"means", true}, {"sd", true}, {"steps", true}, {"runs", true},
      {"seed", true}, {"policies", true}, {"threads", true}, {"csv", true}, {"plot", true},
      {"report-every", true}, {"json", false}, {"persist", false}, {"change-at", true},
      {"probs-after", true}, {"drift", true}, {"drift-period", true}, {"delay", true},
      {"workers", true}, {"refresh", true}, {"context", true}, {"rate", true}}, 22,
     cmd_simulate},
    {"reset", "zero an experiment's counters",
     "usage: mab reset CONFIG EXP\n"
     "\n"
     "Zero the counters of every arm of experiment EXP, in storage too\n"
     "(counters of arms no longer in the config are removed).\n",
     {"CONFIG", "EXP"}, 2, 0, {{0}}, 0, cmd_reset},
    {"pause", "pause an experiment at run time (stored)",
     "usage: mab pause CONFIG EXP [ARM]\n"
     "\n"
     "Serve ARM (or the leader, the arm of highest mean) to new visitors and\n"
     "count nothing.\n"
     "\n"
     STATE_ACTION_HELP,
     {"CONFIG", "EXP", "ARM"}, 3, 1, {{0}}, 0, cmd_pause},
    {"resume", "run an experiment again at run time (stored)",
     "usage: mab resume CONFIG EXP\n"
     "\n"
     "The policy chooses and learns again, whatever the config's state.\n"
     "\n"
     STATE_ACTION_HELP,
     {"CONFIG", "EXP"}, 2, 0, {{0}}, 0, cmd_resume},
    {"conclude", "conclude an experiment with a winner (stored)",
     "usage: mab conclude CONFIG EXP ARM\n"
     "\n"
     "Serve ARM, the winner (with the config's floor, if any); pulls and rewards\n"
     "are still counted.\n"
     "\n"
     STATE_ACTION_HELP,
     {"CONFIG", "EXP", "ARM"}, 3, 0, {{0}}, 0, cmd_conclude},
    {"clear", "drop the admin state: follow the config's state again",
     "usage: mab clear CONFIG EXP\n"
     "\n"
     "Undo pause, resume or conclude: the config's \"state\" and \"serve\" apply\n"
     "again.\n"
     "\n"
     STATE_ACTION_HELP,
     {"CONFIG", "EXP"}, 2, 0, {{0}}, 0, cmd_clear},
    {"export", "write every stored counter as JSON",
     "usage: mab export CONFIG [--out FILE]\n"
     "\n"
     "Write every record of the config's storage (arms and experiments no\n"
     "longer in the config included) as one JSON document:\n"
     "  {\"format\": \"mab-export\", \"version\": 1, \"experiments\": {EXP: {ARM:\n"
     "   {\"pulls\": N, \"rewards\": N, \"reward_sum\": X, \"reward_sum_sq\": X}}}}\n"
     "See docs/storage.md. The store is read read-only, so this works while a\n"
     "server holds a json_file store (what the server has written).\n"
     "\n"
     "  --out FILE   write to FILE (through FILE.tmp and a rename) instead of stdout\n",
     {"CONFIG"}, 1, 0, {{"out", true}}, 1, cmd_export},
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
     {"CONFIG", "FILE"}, 2, 0, {{"replace", false}, {"from-flask-mab", false}}, 2, cmd_import},
    {"keygen", "create a cookie signing key file",
     "usage: mab keygen FILE\n"
     "\n"
     "Write 32 random bytes, base64 on one line, to FILE (mode 0600), for the\n"
     "config's \"secret_file\". Refuses to overwrite an existing file. To rotate\n"
     "keys, put a new key on the first line of secret_file and keep the old one\n"
     "below it for a cookie lifetime (docs/hosts.md).\n",
     {"FILE"}, 1, 0, {{0}}, 0, cmd_keygen},
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

static int main_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error before any command was found: the main usage follows. */
static int main_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mab: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    print_main_usage(stderr);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return main_usage_error("missing command");
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
        return main_usage_error("unknown command '%s'", argv[1]);

    command_args args;
    int status = parse_args(cmd, argc - 2, argv + 2, &args);
    if (status == -1)
        status = 0;
    else if (status == 0)
        status = cmd->run(&args);

    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "mab: cannot write output: %s\n", strerror(errno));
        if (status == 0)
            status = EXIT_USER;
    }
    return status;
}
