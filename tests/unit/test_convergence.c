/*
 * test_convergence.c - Flask-MAB's Monte-Carlo test, through the engine:
 * with click rates 0.99/0.01/0.01 (0.01/0.01/0.98 for softmax), the best arm
 * is the most chosen, for every policy, over several seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "mab/rng.h"
#include "support.h"

static char *dir;

static void converge(const char *policy_json, const double probs[3], size_t best)
{
    char config[300];
    snprintf(config, sizeof config, "%s/mab.json", dir);
    test_write_file(config,
                    "{\"plugin_path\": [\"%s\"],"
                    " \"storage\": {\"plugin\": \"json_file\", \"path\": \"unused.json\"},"
                    " \"experiments\": {\"exp\": {\"policy\": %s,"
                    " \"arms\": {\"first\": 1, \"second\": 2, \"third\": 3}}}}\n",
                    MAB_PLUGIN_DIR, policy_json);
    for (uint64_t seed = 1; seed <= 5; seed++) {
        mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE | MAB_OPEN_SEED, seed};
        mab_engine *e = NULL;
        mab_error err = {0, ""};
        int rc = mab_open_ex(config, &opts, &e, &err);
        if (rc)
            print_error("%s\n", err.message);
        assert_int_equal(rc, MAB_OK);
        mab_rng *clicks = mab_rng_create(1000 + seed);
        uint64_t chosen[3] = {0, 0, 0};
        for (int step = 0; step < 2000; step++) {
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
            chosen[c.arm_index]++;
            if (mab_rng_uniform(clicks) < probs[c.arm_index])
                assert_int_equal(mab_reward(e, "exp", c.arm_id, 1.0, &err), MAB_OK);
        }
        for (size_t a = 0; a < 3; a++)
            if (a != best && chosen[a] >= chosen[best])
                fail_msg("%s seed %llu: arm %zu chosen %llu times, best arm %zu only %llu",
                         policy_json, (unsigned long long)seed, a, (unsigned long long)chosen[a],
                         best, (unsigned long long)chosen[best]);
        mab_rng_destroy(clicks);
        assert_int_equal(mab_close(e, &err), MAB_OK);
    }
}

static const double first_best[3] = {0.99, 0.01, 0.01};
static const double last_best[3] = {0.01, 0.01, 0.98};

static void test_epsilon_greedy(void **state)
{
    (void)state;
    converge("{\"plugin\": \"epsilon_greedy\", \"epsilon\": 0.1}", first_best, 0);
}

static void test_softmax(void **state)
{
    (void)state;
    converge("{\"plugin\": \"softmax\", \"tau\": 0.1}", last_best, 2);
}

static void test_annealing_softmax(void **state)
{
    (void)state;
    converge("{\"plugin\": \"softmax\", \"annealing\": true}", first_best, 0);
}

static void test_ucb1(void **state)
{
    (void)state;
    converge("{\"plugin\": \"ucb1\"}", first_best, 0);
}

static void test_thompson(void **state)
{
    (void)state;
    /* About convergence, not the reported probability: without the estimate
       (256 draws per choose by default; its own tests are test_policies'). */
    converge("{\"plugin\": \"thompson\", \"probability_draws\": 0}", first_best, 0);
}

static int setup(void **state)
{
    (void)state;
    dir = test_tmpdir("converge");
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
        cmocka_unit_test(test_epsilon_greedy), cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_annealing_softmax), cmocka_unit_test(test_ucb1),
        cmocka_unit_test(test_thompson),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
