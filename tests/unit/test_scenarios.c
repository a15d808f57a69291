/*
 * test_scenarios.c - the simulator's scenarios beside the stationary one
 * (tools/simulate, linked in), each checked where its answer is known:
 *
 *  - dynamic regret: a policy that always plays arm 0 (the echo fixture
 *    without its feature) loses exactly what the moving best arm says,
 *    after an abrupt change and under the daily drift;
 *  - time is the injected clock: rewards reach the policy at simulated
 *    times, and --rate moves them;
 *  - delayed conversions: every click arrives later or, past T, never, and
 *    none is invented;
 *  - workers: each engine sees the others' pulls exactly up to its last
 *    reload, and all of them after one more;
 *  - the linear context: features reach the policy by name, and the regret
 *    of a fixed arm is the click model's;
 *  - results do not depend on the number of threads, in every scenario.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/rng.h"
#include "simulate.h"
#include "support.h"

static char *dir;

static const double probs[3] = {0.05, 0.03, 0.02};
static const double after[3] = {0.02, 0.03, 0.06};

/* A config with experiment "e" of k arms whose policy object is `policy`. */
static void write_config(char *path, size_t size, size_t k, const char *policy,
                         const char *storage)
{
    snprintf(path, size, "%s/scen-%zu.json", dir, k);
    char arms[512] = "";
    size_t len = 0;
    for (size_t a = 0; a < k; a++)
        len += (size_t)snprintf(arms + len, sizeof arms - len, "%s\"a%zu\": %zu", a ? ", " : "",
                                a, a);
    assert_int_equal(test_write_file(path,
                                     "{\"plugin_path\": [\"%s\", \"%s\"], \"storage\": %s,"
                                     " \"experiments\": {\"e\": {\"policy\": %s,"
                                     " \"arms\": {%s}}}}\n",
                                     MAB_PLUGIN_DIR, MAB_FIXTURE_DIR, storage, policy, arms),
                     0);
}

#define ECHO "{\"plugin\": \"policy_echo\", \"features\": [\"slot\"]}"
#define NO_STORE "{\"plugin\": \"json_file\", \"path\": \"unused.json\"}"
#define SHARED "{\"plugin\": \"sim_shared\", \"sync\": {\"interval_ms\": 86400000}}"

typedef struct one_run {
    mab_engine *engines[8];
    size_t n;
    _Atomic int64_t clock;
    sim_bandit bandit;
    sim_run_result result;
    uint64_t pulls[8], rewards[8];
    double reward_sum[8];
} one_run;

/* Open n engines of the config (a store only for n > 1) on the run's clock. */
static void open_engines(one_run *r, const char *config, size_t n)
{
    r->n = n;
    r->clock = SIM_EPOCH_NS;
    for (size_t w = 0; w < n; w++) {
        mab_options opts = {.struct_size = sizeof opts,
                            .flags = MAB_OPEN_SEED | (n > 1 ? 0 : MAB_OPEN_NO_STORAGE),
                            .seed = 11 + w};
        mab_error err = {0, ""};
        if (mab_open_ex(config, &opts, &r->engines[w], &err) != MAB_OK)
            fail_msg("%s", err.message);
        assert_int_equal(mab_set_clock(r->engines[w], sim_clock_read, &r->clock, NULL), MAB_OK);
    }
}

static void close_engines(one_run *r)
{
    for (size_t w = 0; w < r->n; w++)
        assert_int_equal(mab_close(r->engines[w], NULL), MAB_OK);
    sim_bandit_free(&r->bandit);
}

/* One run of `steps` visitors through the engines, under scenario sc. */
static void run(one_run *r, const double *p, size_t k, const sim_scenario *sc, uint64_t steps)
{
    char why[256];
    assert_int_equal(sim_bandit_init(&r->bandit, SIM_BERNOULLI, k, p, NULL, 0, 1, why,
                                     sizeof why),
                     0);
    assert_int_equal(sim_scenario_check(sc, &r->bandit, why, sizeof why), 0);
    sim_run_spec spec = {.experiment = "e", .bandit = &r->bandit, .steps = steps, .seed = 5,
                         .run = 0, .scenario = sc, .clock = &r->clock};
    r->result = (sim_run_result){.pulls = r->pulls, .rewards = r->rewards,
                                 .reward_sum = r->reward_sum};
    mab_error err = {0, ""};
    if (sim_run_workers(r->engines, r->n, &spec, &r->result, &err) != MAB_OK)
        fail_msg("%s", err.message);
}

/* The echo fixture's experiment statistics: [0] sum of features at
   rewards, [1] events without the feature, [2] sum of reward times (s). */
static void echo_stats(mab_engine *e, double out[3])
{
    mab_policy_stats_info info = {.struct_size = sizeof info};
    double arms[8];
    assert_int_equal(mab_policy_stats(e, "e", &info, arms, 8, out, 3, NULL), MAB_OK);
}

/* After an abrupt change the best arm is arm 2: a policy that stays on arm
   0 loses 0.06 - 0.02 per visitor from then on, and nothing before. */
static void test_abrupt_change_regret_is_dynamic(void **state)
{
    (void)state;
    char config[512];
    write_config(config, sizeof config, 3, ECHO, NO_STORE);
    one_run r = {0};
    open_engines(&r, config, 1);
    sim_scenario sc = {.change_at = 1000, .param_after = after, .rate = SIM_DEFAULT_RATE};
    run(&r, probs, 3, &sc, 3000);
    assert_int_equal(r.pulls[0], 3000);
    assert_true(fabs(r.result.regret - 2000 * (0.06 - 0.02)) < 1e-9);
    assert_int_equal(r.result.best_pulls, 1000);
    close_engines(&r);
}

/* Under the drift each arm's probability follows its own phase: the regret
   of arm 0 is the sum over visitors of the best minus arm 0, recomputed here
   from the documented formula. */
static void test_drift_regret_follows_the_cycle(void **state)
{
    (void)state;
    char config[512];
    write_config(config, sizeof config, 3, ECHO, NO_STORE);
    one_run r = {0};
    open_engines(&r, config, 1);
    sim_scenario sc = {.drift = 0.02, .drift_period = 20, .rate = 50};
    run(&r, probs, 3, &sc, 4000);
    double expected = 0;
    uint64_t best = 0;
    for (uint64_t n = 1; n <= 4000; n++) {
        double s = (double)(n - 1) / 50, mu[3], top = 0;
        for (int a = 0; a < 3; a++) {
            mu[a] = probs[a] + 0.02 * sin(2 * M_PI * (s / 20 + a / 3.0));
            mu[a] = mu[a] < 0 ? 0 : mu[a] > 1 ? 1 : mu[a];
            top = a == 0 || mu[a] > top ? mu[a] : top;
        }
        expected += top - mu[0];
        best += mu[0] >= top;
    }
    assert_true(expected > 10); /* the best arm does change */
    assert_true(fabs(r.result.regret - expected) < 1e-6);
    assert_int_equal(r.result.best_pulls, best);
    close_engines(&r);
}

/* Rewards reach the policy at simulated times: their mean is the middle of
   the run, (T - 1) / (2 rate) s after the epoch, not the machine's time. */
static void test_time_is_the_injected_clock(void **state)
{
    (void)state;
    char config[512];
    write_config(config, sizeof config, 3, ECHO, NO_STORE);
    const double rates[2] = {100, 10};
    for (int i = 0; i < 2; i++) {
        one_run r = {0};
        open_engines(&r, config, 1);
        sim_scenario sc = {.rate = rates[i]};
        run(&r, probs, 3, &sc, 20000);
        double exp_stats[3];
        echo_stats(r.engines[0], exp_stats);
        uint64_t clicks = r.rewards[0];
        assert_true(clicks > 500);
        double mean = exp_stats[2] / (double)clicks - (double)SIM_EPOCH_NS / 1e9;
        double middle = 19999 / (2 * rates[i]);
        /* Clicks are uniform over the run: sd of the mean ~ span / sqrt(12 n). */
        double se = 2 * middle / sqrt(12.0 * (double)clicks);
        assert_true(fabs(mean - middle) < 5 * se);
        close_engines(&r);
    }
}

/* Delays move clicks later and drop those still on the way at T; the
   clicks are the same draws (the n-th pull's), so sent + late = clicks. */
static void test_delays_lose_nothing_and_invent_nothing(void **state)
{
    (void)state;
    char config[512];
    write_config(config, sizeof config, 3, ECHO, NO_STORE);
    one_run now = {0}, later = {0};
    open_engines(&now, config, 1);
    sim_scenario sc = {.rate = 100};
    run(&now, probs, 3, &sc, 5000);
    open_engines(&later, config, 1);
    sim_scenario delayed = {.rate = 100, .delay = 400};
    run(&later, probs, 3, &delayed, 5000);
    assert_int_equal(now.result.late, 0);
    assert_true(later.result.late > 0);
    assert_int_equal(later.rewards[0] + later.result.late, now.rewards[0]);
    double a[3], b[3];
    echo_stats(now.engines[0], a);
    echo_stats(later.engines[0], b);
    /* Every click arrives later: the mean arrival time moves by about the
       mean delay (4 s), less the late ones' share. */
    double shift = b[2] / (double)later.rewards[0] - a[2] / (double)now.rewards[0];
    assert_true(shift > 1 && shift < 5);
    close_engines(&now);
    close_engines(&later);
}

/* Clicks on their way after each visitor, seen through the engine. */
typedef struct outstanding {
    mab_engine *engine;
    double sum, sum_sq;
    uint64_t n;
} outstanding;

static void count_outstanding(void *ctx, uint64_t step, size_t arm)
{
    (void)arm;
    outstanding *o = ctx;
    mab_arm_stats st[3];
    st[0].struct_size = sizeof st[0];
    size_t n;
    assert_int_equal(mab_stats(o->engine, "e", st, 3, &n, NULL), MAB_OK);
    if (step <= 500)
        return;
    double q = (double)(step - st[0].rewards);
    o->sum += q;
    o->sum_sq += q * q;
    o->n++;
}

/*
 * The delay's law: every visitor clicks (p = 1) and a click at visitor m
 * reaches the engine before the first visitor at or after m + d, d ~
 * Exp(mean D). So after visitor n the clicks on their way are the m <= n with
 * d_m > n - m: a sum of independent Bernoulli(e^{-j/D}), j >= 0, of mean
 * 1 / (1 - e^{-1/D}) and variance sum e^{-j/D} (1 - e^{-j/D}). A constant
 * delay would have none of that variance; instant delivery, no mean.
 */
static void test_delays_are_exponential(void **state)
{
    (void)state;
    char config[512];
    write_config(config, sizeof config, 3, ECHO, NO_STORE);
    one_run r = {0};
    open_engines(&r, config, 1);
    const double certain[3] = {1, 0, 0};
    char why[256];
    assert_int_equal(sim_bandit_init(&r.bandit, SIM_BERNOULLI, 3, certain, NULL, 0, 1, why,
                                     sizeof why),
                     0);
    sim_scenario sc = {.rate = 100, .delay = 50};
    outstanding o = {.engine = r.engines[0]};
    sim_run_spec spec = {.experiment = "e", .bandit = &r.bandit, .steps = 20000, .seed = 5,
                         .scenario = &sc, .clock = &r.clock, .on_step = count_outstanding,
                         .ctx = &o};
    r.result = (sim_run_result){.pulls = r.pulls, .rewards = r.rewards};
    assert_int_equal(sim_run_workers(r.engines, 1, &spec, &r.result, NULL), MAB_OK);
    double q = exp(-1 / 50.0), mean = 1 / (1 - q), var = mean - 1 / (1 - q * q);
    double m = o.sum / (double)o.n, v = o.sum_sq / (double)o.n - m * m;
    /* Samples are correlated over about D visitors: ~390 independent ones,
       a standard error of the mean near 0.25. */
    if (fabs(m - mean) > 2 || fabs(v - var) > 0.4 * var)
        fail_msg("clicks on their way: mean %.2f (expected %.2f), variance %.2f (expected "
                 "%.2f)",
                 m, mean, v, var);
    assert_int_equal(r.rewards[0] + r.result.late, 20000);
    close_engines(&r);
}

/*
 * Workers: engine w reloads at the simulated times (w + 1) R / N + k R
 * (R in visitors), seeing then every visitor before; between reloads it
 * adds its own (visitor n goes to engine (n - 1) mod N). So after T
 * visitors its pulls are those before its last reload plus its own since.
 */
static uint64_t expected_view(uint64_t steps, size_t n, size_t w, double period)
{
    double next = period * (double)(w + 1) / (double)n;
    uint64_t seen = 0;
    for (uint64_t step = 1; step <= steps; step++) {
        double elapsed = (double)(step - 1);
        if (elapsed >= next) {
            seen = step - 1;
            while (next <= elapsed)
                next += period;
        }
        if ((step - 1) % n == w)
            seen++;
    }
    return seen;
}

static void test_workers_see_each_other_at_refresh_only(void **state)
{
    (void)state;
    char config[512];
    write_config(config, sizeof config, 3, ECHO, SHARED);
    const uint32_t refresh[2] = {1000, 86400000};
    for (int i = 0; i < 2; i++) {
        one_run r = {0};
        open_engines(&r, config, 5);
        sim_scenario sc = {.rate = 100, .workers = 5, .refresh_ms = refresh[i]};
        run(&r, probs, 3, &sc, 1234);
        uint64_t total = 0;
        for (size_t w = 0; w < 5; w++) {
            mab_arm_stats st[3];
            st[0].struct_size = sizeof st[0];
            size_t n;
            assert_int_equal(mab_stats(r.engines[w], "e", st, 3, &n, NULL), MAB_OK);
            uint64_t want = expected_view(1234, 5, w, refresh[i] / 1000.0 * 100);
            if (st[0].pulls != want)
                fail_msg("refresh %u ms: engine %zu sees %llu pulls, expected %llu",
                         (unsigned)refresh[i], w, (unsigned long long)st[0].pulls,
                         (unsigned long long)want);
            total += st[0].pulls;
        }
        /* Never refreshed: each sees only its own share. */
        if (i == 1)
            assert_int_equal(total, 1234);
        /* One more reload: all of them. */
        mab_arm_stats st[3];
        st[0].struct_size = sizeof st[0];
        size_t n;
        assert_int_equal(mab_import(r.engines[3], NULL, 0, 0, NULL), MAB_OK);
        assert_int_equal(mab_stats(r.engines[3], "e", st, 3, &n, NULL), MAB_OK);
        assert_int_equal(st[0].pulls, 1234);
        assert_int_equal(st[0].rewards, r.rewards[0]);
        close_engines(&r);
    }
}

/* The linear context: a policy that reads x0 plays arm (int) x0, so its
   pulls follow N(0, 1)'s mass in [1, 2) and [2, 3); the features of its
   rewards reach it too. */
static void test_context_features_reach_the_policy(void **state)
{
    (void)state;
    char config[512];
    write_config(config, sizeof config, 5,
                 "{\"plugin\": \"policy_echo\", \"features\": [\"x0\"]}", NO_STORE);
    one_run r = {0};
    open_engines(&r, config, 1);
    sim_scenario sc = {.rate = 100, .context_dim = 3};
    const double zero[5] = {0, 0, 0, 0, 0};
    run(&r, zero, 5, &sc, 40000);
    const double mass[3] = {0.5 * (erf(2 / M_SQRT2) - erf(1 / M_SQRT2)),
                            0.5 * (erf(3 / M_SQRT2) - erf(2 / M_SQRT2)),
                            0.5 * (erf(4 / M_SQRT2) - erf(3 / M_SQRT2))};
    for (int i = 0; i < 3; i++) {
        double expected = 40000 * mass[i], sd = sqrt(expected * (1 - mass[i]));
        if (fabs((double)r.pulls[i + 1] - expected) > 5 * sd + 1)
            fail_msg("arm %d: %llu pulls, expected %.0f", i + 1,
                     (unsigned long long)r.pulls[i + 1], expected);
    }
    double exp_stats[3];
    echo_stats(r.engines[0], exp_stats);
    assert_true(exp_stats[1] == 0); /* no event lacked x0 */
    assert_true(exp_stats[0] != 0); /* rewards carried it */
    close_engines(&r);
}

/* A fixed arm's regret per visitor under the click model is
   E[max_a s(theta_a . x - 2) - s(theta_0 . x - 2)], estimated here apart. */
static void test_context_regret_is_the_click_model(void **state)
{
    (void)state;
    char config[512];
    write_config(config, sizeof config, 5, ECHO, NO_STORE);
    one_run r = {0};
    open_engines(&r, config, 1);
    sim_scenario sc = {.rate = 100, .context_dim = 5};
    const double zero[5] = {0, 0, 0, 0, 0};
    run(&r, zero, 5, &sc, 50000);
    assert_int_equal(r.pulls[0], 50000);
    double theta[25];
    sim_context_theta(5, 5, 5, theta);
    mab_rng *rng = mab_rng_create(987654321);
    double sum = 0, sum_sq = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double x[5], top = 0, mu0 = 0;
        for (int d = 0; d < 5; d++)
            x[d] = mab_rng_normal(rng);
        for (int a = 0; a < 5; a++) {
            double z = -2;
            for (int d = 0; d < 5; d++)
                z += theta[a * 5 + d] * x[d];
            double mu = 1 / (1 + exp(-z));
            if (a == 0)
                mu0 = mu;
            top = a == 0 || mu > top ? mu : top;
        }
        sum += top - mu0;
        sum_sq += (top - mu0) * (top - mu0);
    }
    mab_rng_destroy(rng);
    double mean = sum / n, var = sum_sq / n - mean * mean;
    double got = r.result.regret / 50000;
    /* Both are means of the same quantity over independent visitors. */
    double se = sqrt(var / n + var / 50000);
    if (fabs(got - mean) > 5 * se)
        fail_msg("regret per visitor %.5f, the click model says %.5f (se %.5f)", got, mean, se);
    assert_true(mean > 0.05); /* arm 0 is often not the best */
    close_engines(&r);
}

/* Every scenario at once, on a pool of 1 and of 3 threads: the same runs. */
static void test_threads_do_not_change_results(void **state)
{
    (void)state;
    char base[512];
    write_config(base, sizeof base, 3, "{\"plugin\": \"thompson\"}", NO_STORE);
    sim_policy_list list;
    char why[256];
    /* thompson with a few estimate draws (from the same stream as its
       choices; the default 256 would only cost time). */
    assert_int_equal(
        sim_policies_parse("thompson:probability_draws=8,exp3,ucb1", &list, why, sizeof why), 0);
    char config[4096];
    mab_error err = {0, ""};
    assert_int_equal(sim_write_policy_config_ex(base, "e", &list, SIM_CONFIG_SHARED_STORE,
                                                config, sizeof config, &err),
                     MAB_OK);
    sim_bandit b;
    assert_int_equal(sim_bandit_init(&b, SIM_BERNOULLI, 3, probs, NULL, 0, 1, why, sizeof why),
                     0);
    sim_scenario sc = {.change_at = 2000, .param_after = after, .drift = 0.01,
                       .drift_period = 30, .delay = 50, .workers = 4, .refresh_ms = 500,
                       .rate = 100};
    const char *ids[3] = {"p0", "p1", "p2"};
    sim_results res[2];
    for (int i = 0; i < 2; i++) {
        sim_plan plan = {.config_path = config, .experiments = ids, .n_policies = 3,
                         .bandit = &b, .steps = 4000, .runs = 4, .seed = 77,
                         .threads = i ? 3 : 1, .n_checkpoints = 40, .scenario = &sc};
        if (sim_compare(&plan, &res[i], &err) != MAB_OK)
            fail_msg("%s", err.message);
    }
    for (size_t p = 0; p < 3; p++) {
        assert_memory_equal(res[0].policies[p].regret_by_run, res[1].policies[p].regret_by_run,
                            4 * sizeof(double));
        assert_memory_equal(res[0].policies[p].share_mean, res[1].policies[p].share_mean,
                            40 * 3 * sizeof(double));
        /* Shares of each interval sum to 1. */
        for (size_t c = 0; c < 40; c++) {
            const double *s = &res[0].policies[p].share_mean[c * 3];
            assert_true(fabs(s[0] + s[1] + s[2] - 1) < 1e-9);
        }
    }
    sim_results_free(&res[0]);
    sim_results_free(&res[1]);
    unlink(config);
    sim_bandit_free(&b);
    sim_policies_free(&list);
}

/* Scenarios that cannot be are refused by name. */
static void test_bad_scenarios_are_refused(void **state)
{
    (void)state;
    sim_bandit b, g;
    char why[256];
    const double sd[3] = {1, 1, 1};
    assert_int_equal(sim_bandit_init(&b, SIM_BERNOULLI, 3, probs, NULL, 0, 1, why, sizeof why),
                     0);
    assert_int_equal(sim_bandit_init(&g, SIM_GAUSSIAN, 3, probs, sd, 0, 1, why, sizeof why), 0);
    const double bad_after[3] = {0.1, 1.5, 0};
    struct {
        sim_scenario sc;
        const sim_bandit *b;
        const char *needle;
    } cases[] = {
        {{.change_at = 10, .param_after = bad_after, .rate = 1}, &b, "--probs-after value 2"},
        {{.change_at = 10, .rate = 1}, &b, "--probs-after"},
        {{.workers = 4, .rate = 1}, &b, "--refresh"},
        {{.refresh_ms = 10, .rate = 1}, &b, "--workers"},
        {{.rate = 0}, &b, "rate"},
        {{.drift = 0.1, .drift_period = 0, .rate = 1}, &b, "period"},
        {{.context_dim = 2, .rate = 1}, &g, "Bernoulli"},
        {{.context_dim = SIM_CONTEXT_MAX + 1, .rate = 1}, &b, "features"},
        {{.workers = SIM_WORKERS_MAX + 1, .refresh_ms = 1, .rate = 1}, &b, "--workers"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        why[0] = '\0';
        assert_int_equal(sim_scenario_check(&cases[i].sc, cases[i].b, why, sizeof why), -1);
        if (!strstr(why, cases[i].needle))
            fail_msg("case %zu: '%s' does not name '%s'", i, why, cases[i].needle);
    }
    sim_bandit_free(&b);
    sim_bandit_free(&g);
}

/* "features=x0;x1" in --policies is a list of names. */
static void test_features_parameter_is_a_list(void **state)
{
    (void)state;
    sim_policy_list list;
    char why[256];
    assert_int_equal(sim_policies_parse("exp3:features=x0;x1;x2,ucb1", &list, why, sizeof why),
                     0);
    assert_int_equal(list.n, 2);
    assert_string_equal(list.policy_json[0],
                        "{\"plugin\":\"exp3\",\"features\":[\"x0\",\"x1\",\"x2\"]}");
    sim_policies_free(&list);
}

static int setup(void **state)
{
    (void)state;
    dir = test_tmpdir("scenarios");
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
        cmocka_unit_test(test_abrupt_change_regret_is_dynamic),
        cmocka_unit_test(test_drift_regret_follows_the_cycle),
        cmocka_unit_test(test_time_is_the_injected_clock),
        cmocka_unit_test(test_delays_lose_nothing_and_invent_nothing),
        cmocka_unit_test(test_delays_are_exponential),
        cmocka_unit_test(test_workers_see_each_other_at_refresh_only),
        cmocka_unit_test(test_context_features_reach_the_policy),
        cmocka_unit_test(test_context_regret_is_the_click_model),
        cmocka_unit_test(test_threads_do_not_change_results),
        cmocka_unit_test(test_bad_scenarios_are_refused),
        cmocka_unit_test(test_features_parameter_is_a_list),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
