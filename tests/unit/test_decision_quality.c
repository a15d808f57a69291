/*
 * test_decision_quality.c - do the policies decide well? Seeded,
 * deterministic runs of the simulator behind `mab simulate` (tools/simulate/simulate.c,
 * linked in) on the standard cases of ALGORITHMS.md:
 *
 *  - Garivier & Cappé (2011)'s 10 low-reward Bernoulli arms and Chapelle &
 *    Li (2011)'s K = 10 arms (best 0.5, others 0.5 - eps, eps = 0.1, 0.02),
 *    T = 10,000, 20 runs: UCB1's mean regret stays below Auer et al.'s
 *    finite-time bound, Thompson's is below UCB1's, and the ratio of
 *    Thompson's regret to the Lai-Robbins bound is printed;
 *  - exploration is what the parameters say (epsilon-greedy's share of
 *    pulls on the best arm is 1 - eps + eps/K), through the simulator;
 *  - the results do not depend on the number of threads.
 *
 * The policies go through `--policies` parsing and the temporary config the
 * CLI writes, so the whole path of `mab simulate --policies` is exercised.
 */
#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "simulate.h"
#include "support.h"

#define STEPS 10000
#define RUNS 20
#define THREADS 2

static char *dir;

/* A config with one experiment "arms" of k arms, and its path. */
static void write_base_config(size_t k, char *path, size_t size)
{
    snprintf(path, size, "%s/base.json", dir);
    char arms[2048] = "";
    size_t len = 0;
    for (size_t a = 0; a < k; a++)
        len += (size_t)snprintf(arms + len, sizeof arms - len, "%s\"a%zu\": %zu", a ? ", " : "",
                                a, a);
    assert_int_equal(test_write_file(path,
                                     "{\"plugin_path\": [\"%s\"],"
                                     " \"storage\": {\"plugin\": \"json_file\", \"path\": "
                                     "\"unused.json\"},"
                                     " \"experiments\": {\"arms\": {\"policy\": {\"plugin\": "
                                     "\"ucb1\"}, \"arms\": {%s}}}}\n",
                                     MAB_PLUGIN_DIR, arms),
                     0);
}

typedef struct comparison {
    sim_policy_list policies;
    sim_bandit bandit;
    sim_plan plan;
    sim_results results;
    char config[4096];
    char *ids[8];
} comparison;

/* Simulate the policies of `list` on Bernoulli arms `probs`. */
static void compare(comparison *c, const char *list, const double *probs, size_t k,
                    uint64_t steps, uint64_t runs, unsigned threads, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    char why[256] = "";
    if (sim_policies_parse(list, &c->policies, why, sizeof why) != 0)
        fail_msg("--policies %s: %s", list, why);
    assert_true(c->policies.n <= 8);
    assert_int_equal(sim_bandit_init(&c->bandit, SIM_BERNOULLI, k, probs, NULL, 0, 1, why,
                                     sizeof why),
                     0);
    char base[300];
    write_base_config(k, base, sizeof base);
    mab_error err = {0, ""};
    int rc = sim_write_policy_config(base, "arms", &c->policies, c->config, sizeof c->config,
                                     &err);
    if (rc != MAB_OK)
        fail_msg("%s", err.message);
    for (size_t p = 0; p < c->policies.n; p++) {
        c->ids[p] = malloc(16);
        snprintf(c->ids[p], 16, "p%zu", p);
    }
    c->plan = (sim_plan){.config_path = c->config,
                         .experiments = (const char *const *)c->ids,
                         .n_policies = c->policies.n,
                         .bandit = &c->bandit,
                         .steps = steps,
                         .runs = runs,
                         .seed = seed,
                         .threads = threads,
                         .n_checkpoints = 50};
    rc = sim_compare(&c->plan, &c->results, &err);
    unlink(c->config);
    if (rc != MAB_OK)
        fail_msg("%s", err.message);
}

static void comparison_free(comparison *c)
{
    sim_results_free(&c->results);
    sim_bandit_free(&c->bandit);
    for (size_t p = 0; p < c->policies.n; p++)
        free(c->ids[p]);
    sim_policies_free(&c->policies);
}

/*
 * The three checks of the issue for one case. With `separated`, Thompson
 * below UCB1 must hold for the 95% intervals, not only the means, so that it
 * is a finding about the policies and not luck of the seed.
 *
 * Auer et al.'s bound is above T * max Delta (the regret of always playing
 * the worst arm) in all three cases at T = 10,000, so "UCB1 below it" cannot
 * fail there; it is checked as the issue asks and printed as vacuous.
 */
static void check_case(const char *name, const double *probs, size_t k, bool separated)
{
    comparison c;
    /* probability_draws=0: these checks are about regret, not about the
       reported probability; Thompson's choices (and so these figures) are
       those of its default, minus the 256 estimate draws per choose. */
    compare(&c, "ucb1,thompson:probability_draws=0", probs, k, STEPS, RUNS, THREADS, 20120101);
    const sim_policy_result *ucb1 = &c.results.policies[0];
    const sim_policy_result *thompson = &c.results.policies[1];
    double auer = sim_auer_bound(&c.bandit, STEPS);
    double lai_robbins = sim_lai_robbins_rate(&c.bandit) * log((double)STEPS);
    double max_delta = 0;
    for (size_t a = 0; a < k; a++)
        max_delta = fmax(max_delta, c.bandit.best_mean - c.bandit.mean[a]);

    print_message("%s, T = %d, %d runs:\n"
                  "  UCB1      regret %8.2f +- %6.2f  (Auer et al.'s bound %.1f%s)\n"
                  "  Thompson  regret %8.2f +- %6.2f\n"
                  "  Lai-Robbins bound ln(T) * %.4g = %.2f; Thompson / Lai-Robbins = %.3f, "
                  "UCB1 / Lai-Robbins = %.3f\n",
                  name, STEPS, RUNS, ucb1->regret_mean, ucb1->regret_ci, auer,
                  auer > STEPS * max_delta ? ", above T * max Delta: vacuous at this T" : "",
                  thompson->regret_mean, thompson->regret_ci, sim_lai_robbins_rate(&c.bandit),
                  lai_robbins, thompson->regret_mean / lai_robbins,
                  ucb1->regret_mean / lai_robbins);

    if (!(ucb1->regret_mean < auer))
        fail_msg("%s: UCB1's regret %.2f is not below Auer et al.'s bound %.2f", name,
                 ucb1->regret_mean, auer);
    if (!(thompson->regret_mean < ucb1->regret_mean) ||
        (separated &&
         !(thompson->regret_mean + thompson->regret_ci < ucb1->regret_mean - ucb1->regret_ci)))
        fail_msg("%s: Thompson's regret %.2f +- %.2f is not below UCB1's %.2f +- %.2f", name,
                 thompson->regret_mean, thompson->regret_ci, ucb1->regret_mean,
                 ucb1->regret_ci);
    comparison_free(&c);
}

static void test_garivier_cappe_low_rewards(void **state)
{
    (void)state;
    static const double probs[10] = {0.1, 0.05, 0.05, 0.05, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01};
    check_case("Garivier & Cappe, 10 low-reward arms", probs, 10, true);
}

/*
 * With eps = 0.02 both policies are still mostly exploring at T = 10,000
 * (uniform play would lose 0.02 * 0.9 * T = 180): UCB1 ~173, Thompson ~155.
 * Thompson's mean was below UCB1's for every seed tried (1 to 6), and with
 * 200 runs the intervals separate (155 +- 4 against 173 +- 0.7), but with 20
 * runs they can overlap; so for that case only the means are compared.
 */
static void chapelle_li(double eps, bool separated)
{
    double probs[10];
    probs[0] = 0.5;
    for (size_t a = 1; a < 10; a++)
        probs[a] = 0.5 - eps;
    char name[64];
    snprintf(name, sizeof name, "Chapelle & Li, K = 10, eps = %g", eps);
    check_case(name, probs, 10, separated);
}

static void test_chapelle_li_eps_0_1(void **state)
{
    (void)state;
    chapelle_li(0.1, true);
}

static void test_chapelle_li_eps_0_02(void **state)
{
    (void)state;
    chapelle_li(0.02, false);
}

/*
 * Epsilon-greedy explores as its parameter says: once the best arm leads,
 * it gets 1 - eps + eps/K of the pulls, and every other arm eps/K.
 */
static void test_epsilon_greedy_explores_as_configured(void **state)
{
    (void)state;
    static const double probs[5] = {0.9, 0.1, 0.1, 0.1, 0.1};
    const double eps = 0.2;
    comparison c;
    compare(&c, "epsilon_greedy:epsilon=0.2", probs, 5, 20000, 4, THREADS, 7);
    const sim_policy_result *r = &c.results.policies[0];
    double expected_share = 1 - eps + eps / 5;
    print_message("epsilon-greedy eps = 0.2, K = 5: best-arm share %.4f (expected %.4f)\n",
                  r->best_share, expected_share);
    assert_true(fabs(r->best_share - expected_share) < 0.01);
    uint64_t total = 4 * 20000;
    for (size_t a = 1; a < 5; a++)
        assert_true(fabs((double)r->pulls[a] / (double)total - eps / 5) < 0.005);
    /* Regret is the exploration's: T * eps * (K-1)/K * Delta, give or take the start. */
    double expected_regret = 20000 * eps * 4.0 / 5.0 * 0.8;
    assert_true(fabs(r->regret_mean - expected_regret) < 0.05 * expected_regret);
    comparison_free(&c);
}

/* UCB1 with one arm far ahead plays the others only logarithmically often:
   its regret at T is far below the linear regret of uniform play. */
static void test_ucb1_regret_is_sublinear(void **state)
{
    (void)state;
    static const double probs[3] = {0.8, 0.2, 0.2};
    comparison c;
    compare(&c, "ucb1", probs, 3, 20000, 4, THREADS, 11);
    const sim_policy_result *r = &c.results.policies[0];
    /* Regret at T/2 and T: growing like ln t, the second half adds little. */
    double half = r->curve_mean[c.results.n_checkpoints / 2 - 1];
    print_message("ucb1 0.8/0.2/0.2: regret %.2f at T/2, %.2f at T\n", half, r->regret_mean);
    assert_true(r->regret_mean < 1.25 * half);
    assert_true(r->regret_mean < sim_auer_bound(&c.bandit, 20000));
    comparison_free(&c);
}

/* Same seed, 1 or 2 threads: bit-identical results. Another seed: different. */
static void test_results_do_not_depend_on_threads(void **state)
{
    (void)state;
    static const double probs[4] = {0.3, 0.2, 0.25, 0.1};
    comparison one, two, other;
    /* thompson with a few estimate draws: they come from the same stream as
       the choices, so they are part of what must not depend on threads (256,
       the default, would only cost time). */
    const char *list = "epsilon_greedy:epsilon=0.1,thompson:probability_draws=8,softmax:tau=0.05";
    compare(&one, list, probs, 4, 2000, 6, 1, 99);
    compare(&two, list, probs, 4, 2000, 6, 2, 99);
    compare(&other, list, probs, 4, 2000, 6, 2, 100);
    for (size_t p = 0; p < 3; p++) {
        const sim_policy_result *a = &one.results.policies[p], *b = &two.results.policies[p];
        assert_memory_equal(a->regret_by_run, b->regret_by_run, 6 * sizeof(double));
        assert_memory_equal(a->curve_mean, b->curve_mean, 50 * sizeof(double));
        assert_memory_equal(a->pulls, b->pulls, 4 * sizeof(uint64_t));
        assert_true(a->reward_per_visitor == b->reward_per_visitor);
    }
    assert_memory_not_equal(one.results.policies[1].regret_by_run,
                            other.results.policies[1].regret_by_run, 6 * sizeof(double));
    comparison_free(&one);
    comparison_free(&two);
    comparison_free(&other);
}

/* The formulas the checks rest on, against values computed by hand. */
static void test_bounds_and_quantiles(void **state)
{
    (void)state;
    static const double probs[2] = {0.5, 0.4};
    sim_bandit b;
    char why[128];
    assert_int_equal(sim_bandit_init(&b, SIM_BERNOULLI, 2, probs, NULL, 0, 1, why, sizeof why),
                     0);
    /* KL(0.4, 0.5) = 0.4 ln 0.8 + 0.6 ln 1.2 = 0.0201355... */
    double kl = 0.4 * log(0.8) + 0.6 * log(1.2);
    assert_true(fabs(sim_lai_robbins_rate(&b) - 0.1 / kl) < 1e-12);
    assert_true(fabs(sim_auer_bound(&b, 1000) -
                     (8 * log(1000.0) / 0.1 + (1 + M_PI * M_PI / 3) * 0.1)) < 1e-9);
    sim_bandit_free(&b);

    /* Gaussian arms clamped to [0, 1]: a mean of 0.5 stays 0.5 by symmetry;
       N(0.9, 0.5) loses mass above 1, so its clamped mean is below 0.9. */
    static const double means[2] = {0.5, 0.9}, sds[2] = {0.3, 0.5};
    assert_int_equal(sim_bandit_init(&b, SIM_GAUSSIAN, 2, means, sds, 0, 1, why, sizeof why), 0);
    assert_true(fabs(b.mean[0] - 0.5) < 1e-12);
    assert_true(b.mean[1] < 0.9 && b.mean[1] > 0.6);
    sim_bandit_free(&b);
    static const double outside[2] = {0.5, 1.5};
    assert_int_equal(sim_bandit_init(&b, SIM_GAUSSIAN, 2, outside, sds, 0, 1, why, sizeof why),
                     -1);

    assert_true(fabs(sim_t95(19) - 2.093) < 1e-9);
    assert_true(fabs(sim_t95(60) - 2.000) < 2e-3);
    assert_true(fabs(sim_t95(1000000) - 1.95996) < 1e-4);
}

static void test_policies_parse(void **state)
{
    (void)state;
    sim_policy_list list;
    char why[256];
    assert_int_equal(sim_policies_parse("epsilon_greedy:epsilon=0.1,ucb1,softmax:tau=0.1,"
                                        "annealing=true,thompson:alpha0=2:beta0=3",
                                        &list, why, sizeof why),
                     0);
    assert_int_equal(list.n, 4);
    assert_string_equal(list.labels[0], "epsilon_greedy:epsilon=0.1");
    assert_string_equal(list.policy_json[0], "{\"plugin\":\"epsilon_greedy\",\"epsilon\":0.1}");
    assert_string_equal(list.policy_json[1], "{\"plugin\":\"ucb1\"}");
    assert_string_equal(list.labels[2], "softmax:tau=0.1,annealing=true");
    assert_string_equal(list.policy_json[2],
                        "{\"plugin\":\"softmax\",\"tau\":0.1,\"annealing\":true}");
    assert_string_equal(list.policy_json[3], "{\"plugin\":\"thompson\",\"alpha0\":2,\"beta0\":3}");
    sim_policies_free(&list);

    static const char *const bad[] = {"", "ucb1,,thompson", "tau=0.1", "softmax:tau",
                                      "softmax:tau=1:tau=2", ":x=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        if (sim_policies_parse(bad[i], &list, why, sizeof why) != -1)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(why[0] != '\0');
    }
}

static int setup(void **state)
{
    (void)state;
    dir = test_tmpdir("quality");
    return dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    test_rm_tree(dir);
    free(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_and_quantiles),
        cmocka_unit_test(test_policies_parse),
        cmocka_unit_test(test_results_do_not_depend_on_threads),
        cmocka_unit_test(test_epsilon_greedy_explores_as_configured),
        cmocka_unit_test(test_ucb1_regret_is_sublinear),
        cmocka_unit_test(test_garivier_cappe_low_rewards),
        cmocka_unit_test(test_chapelle_li_eps_0_1),
        cmocka_unit_test(test_chapelle_li_eps_0_02),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
