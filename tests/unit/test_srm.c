/*
 * test_srm.c - the sample-ratio check (core/srm.c, core/srm_math.c;
 * ALGORITHMS.md "Sample-ratio check under changing weights"): the
 * chi-square tail against tabulated quantiles; a policy that plays other
 * probabilities than it reports is flagged at p < 0.001 and honest ones over
 * 10^5 visitors are not, with and without the rules' transforms (floor,
 * burn_in, concluded); the ledger "exp@srm" (counts, reopen through
 * json_file, reset, a hand-edited record); the config ("srm": false, a bad
 * value, a colliding id, a long id); what the report says when the check
 * is not available.
 *
 * Every run has a fixed seed. Under an honest assignment the p-value is
 * uniform, so each "not flagged" assertion would fail by chance with
 * probability 0.001 for a new seed, never for these.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "mab/mab.h"
#include "fixture.h"
#include "../core/srm_math.h"

static char store[300];

static int each(void **state)
{
    (void)state;
    fixture_dir_make("srm");
    snprintf(store, sizeof store, "%s/state.json", dir);
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

#define REPORTING "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_reporting.so\"}"
#define LIAR "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_reporting.so\", \"lie\": true}"
#define UNIFORM1 "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_uniform.so\"}"
#define EXP3 "{\"plugin\": \"exp3\", \"gamma\": 0.2}"
#define MEMORY "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\"}"
#define ARMS3 "{\"a\": 1, \"b\": 2, \"c\": 3}"

/* One experiment `id` with three arms, the policy and extra keys `rules`. */
static void write_config_id(const char *storage, const char *id, const char *policy,
                            const char *rules)
{
    assert_int_equal(test_write_file(config,
                                     "{\"seed\": 11, \"plugin_path\": [\"%s\"],\n"
                                     " \"storage\": %s,\n"
                                     " \"experiments\": {\"%s\": {\"policy\": %s,\n"
                                     "   \"arms\": " ARMS3 "%s%s}}}\n",
                                     MAB_PLUGIN_DIR, storage, id, policy,
                                     rules[0] ? ", " : "", rules),
                     0);
}

static void write_config(const char *policy, const char *rules)
{
    write_config_id(MEMORY, "exp", policy, rules);
}

static void choose_n(mab_engine *e, int n)
{
    mab_error err = {0, ""};
    for (int i = 0; i < n; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        int rc = mab_choose(e, "exp", &c, &err);
        if (rc)
            print_error("choose: %s\n", err.message);
        assert_int_equal(rc, MAB_OK);
    }
}

static void report_ok(mab_engine *e, mab_report *r)
{
    mab_error err = {0, ""};
    r->struct_size = sizeof *r;
    int rc = mab_report_get(e, "exp", r, &err);
    if (rc)
        print_error("report: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
}

static void ledger_ok(mab_engine *e, mab_arm_stats st[3])
{
    size_t n = 0;
    mab_error err = {0, ""};
    st[0].struct_size = sizeof st[0];
    assert_int_equal(mab_stats(e, "exp@srm", st, 3, &n, &err), MAB_OK);
    assert_int_equal(n, 3);
}

/* ---- the chi-square tail ------------------------------------------------ */

static void assert_tail(double x2, double df, double expected, double tolerance)
{
    double p = mab__chi2_upper(x2, df);
    if (!(fabs(p - expected) <= tolerance * expected))
        fail_msg("chi-square(%g) tail at %g: %.9g, expected %.9g", df, x2, p, expected);
}

static void test_chi2_upper_tail_against_tables(void **state)
{
    (void)state;
    /* The brief's examples, as printed in the tables (4 or 5 digits). */
    assert_tail(3.841, 1, 0.05, 1e-3);
    assert_tail(18.467, 4, 0.001, 1e-3);
    /* Upper quantiles to 8 significant digits. */
    assert_tail(3.8414588, 1, 0.05, 1e-5);
    assert_tail(6.6348966, 1, 0.01, 1e-5);
    assert_tail(10.827566, 1, 0.001, 1e-5);
    assert_tail(5.9914645, 2, 0.05, 1e-5);
    assert_tail(13.815511, 2, 0.001, 1e-5);
    assert_tail(18.466827, 4, 0.001, 1e-5);
    assert_tail(9.4877290, 4, 0.05, 1e-5);
    assert_tail(23.209251, 10, 0.01, 1e-5);
    assert_tail(2.5582122, 10, 0.99, 1e-5); /* below a + 1: the series */
    assert_tail(0.015790887, 1, 0.90, 1e-5); /* far below */
    assert_tail(124.34211, 100, 0.05, 1e-5);
    assert_tail(149.44925, 100, 0.001, 1e-5);
    /* df 2 is exp(-x/2) exactly, in both branches and far in the tail. */
    assert_tail(1.0, 2, exp(-0.5), 1e-12);
    assert_tail(40.0, 2, exp(-20.0), 1e-12);
    assert_tail(1000.0, 2, exp(-500.0), 1e-12);
    assert_float_equal(mab__chi2_upper(0.0, 3), 1.0, 0);
    assert_float_equal(mab__chi2_upper(INFINITY, 3), 0.0, 0);
    assert_true(isnan(mab__chi2_upper(NAN, 3)));
}

/* ---- flagged and not flagged ------------------------------------------ */

static void test_a_policy_that_lies_is_flagged(void **state)
{
    (void)state;
    /* Plays 1/2, 1/3, 1/6 and reports 1/3 each. */
    write_config(LIAR, "");
    mab_engine *e = open_ok();
    choose_n(e, 3000);
    mab_report r;
    report_ok(e, &r);
    assert_true(r.available & MAB_REPORT_HAS_SRM);
    if (!(r.srm_p_value < 0.001))
        fail_msg("p = %g, status %s", r.srm_p_value, r.srm_status);
    assert_true(strncmp(r.srm_status, "mismatch: p = ", 14) == 0);
    assert_non_null(strstr(r.srm_status, "< 0.001"));
    assert_true(strncmp(r.recommendation, "sample-ratio mismatch: do not trust this report",
                        47) == 0);
    mab_report_free(&r);
    close_ok(e);
}

/* The rules' transforms cannot hide the lie either. */
static void test_a_policy_that_lies_under_a_floor_is_flagged(void **state)
{
    (void)state;
    write_config(LIAR, "\"floor\": 0.1");
    mab_engine *e = open_ok();
    choose_n(e, 10000);
    mab_report r;
    report_ok(e, &r);
    assert_true(r.available & MAB_REPORT_HAS_SRM);
    assert_true(r.srm_p_value < 0.001);
    mab_report_free(&r);
    close_ok(e);
}

/* Honest, over 10^5 visitors: not flagged, and the ledger holds O_i and
   E_i as srm.c says (every arm has N rewards summing to N p_i). */
static void honest_run(const char *policy, const char *rules, int visitors, int exact_e)
{
    write_config(policy, rules);
    mab_engine *e = open_ok();
    choose_n(e, visitors);
    mab_report r;
    report_ok(e, &r);
    if (!(r.available & MAB_REPORT_HAS_SRM) || !(r.srm_p_value >= 0.001))
        fail_msg("%s %s: p = %g, status %s", policy, rules, r.srm_p_value, r.srm_status);
    assert_true(strncmp(r.srm_status, "ok: p = ", 8) == 0);
    assert_null(strstr(r.recommendation, "sample-ratio"));
    mab_arm_stats st[3];
    ledger_ok(e, st);
    uint64_t pulls = 0;
    double expected = 0.0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(st[i].pulls, mab_report_arm_at(&r, (size_t)i)->pulls);
        assert_int_equal(st[i].rewards, (uint64_t)visitors);
        pulls += st[i].pulls;
        expected += st[i].reward_sum;
    }
    assert_int_equal(pulls, (uint64_t)visitors);
    assert_float_equal(expected, (double)visitors, 1e-6 * visitors);
    if (exact_e) {
        /* The fixture with floor f and burn-in B: the E_i are known. */
        double f = strstr(rules, "floor") ? 0.1 : 0.0, keep = 1.0 - 3.0 * f;
        const double p[3] = {0.5, 1.0 / 3.0, 1.0 / 6.0};
        for (int i = 0; i < 3; i++)
            if (!strstr(rules, "burn_in"))
                assert_float_equal(st[i].reward_sum, visitors * (f + keep * p[i]),
                                   1e-6 * visitors);
    }
    mab_report_free(&r);
    close_ok(e);
}

static void test_honest_fixture_is_not_flagged(void **state)
{
    (void)state;
    honest_run(REPORTING, "", 100000, 1);
}

static void test_exp3_is_not_flagged(void **state)
{
    (void)state;
    honest_run(EXP3, "", 100000, 0);
}

static void test_honest_fixture_under_a_floor_is_not_flagged(void **state)
{
    (void)state;
    /* p_i = 0.1 + 0.7 p_policy(i): recording the policy's own vector would
       expect 50000 for a where 0.45 * 10^5 come. */
    honest_run(REPORTING, "\"floor\": 0.1", 100000, 1);
}

static void test_honest_fixture_under_burn_in_is_not_flagged(void **state)
{
    (void)state;
    /* Uniform until every arm has 20000 pulls (about 60000 visitors), then
       the policy's 1/2, 1/3, 1/6. */
    honest_run(REPORTING, "\"burn_in\": 20000", 100000, 1);
}

static void test_concluded_with_a_floor_is_not_flagged(void **state)
{
    (void)state;
    /* Known whatever the policy (ABI 1 here): 0.9 for b, 0.05 elsewhere. */
    honest_run(UNIFORM1, "\"state\": \"concluded\", \"serve\": \"b\", \"floor\": 0.05", 100000,
               0);
}

/* The bundled policies that report every arm's probability (exp3 above):
   each of 3000 choices counted, with rewards moving them, not flagged. */
static void test_bundled_policies_report_their_probabilities(void **state)
{
    (void)state;
    static const char *const policies[] = {
        "{\"plugin\": \"kl_ucb\"}",
        "{\"plugin\": \"sw_ucb\", \"window\": 7200}",
        "{\"plugin\": \"lin_ucb\", \"features\": [\"x\"]}",
        "{\"plugin\": \"lin_igw\", \"features\": [\"x\"]}",
    };
    for (size_t k = 0; k < sizeof policies / sizeof policies[0]; k++) {
        write_config(policies[k], "");
        mab_engine *e = open_ok();
        mab_error err = {0, ""};
        const char *names[] = {"x"};
        for (int i = 0; i < 3000; i++) {
            double x[] = {(double)(i % 3)};
            mab_context ctx = {sizeof ctx, names, x, 1, 0, 0, 0, 0};
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            int rc = mab_choose_ctx(e, "exp", &ctx, &c, NULL, &err);
            if (rc)
                fail_msg("%s: choose: %s", policies[k], err.message);
            ctx.probability = c.probability;
            /* Arm b pays when x is 1, arm c otherwise, one time in two. */
            int pays = (c.arm_index == 1 && i % 3 == 1) || (c.arm_index == 2 && i % 2);
            if (pays && mab_reward_ctx(e, "exp", c.arm_id, 1.0, &ctx, &err) != MAB_OK)
                fail_msg("%s: reward: %s", policies[k], err.message);
        }
        mab_arm_stats st[3];
        ledger_ok(e, st);
        if (st[0].pulls + st[1].pulls + st[2].pulls != 3000)
            fail_msg("%s: %llu of 3000 choices in the ledger", policies[k],
                     (unsigned long long)(st[0].pulls + st[1].pulls + st[2].pulls));
        mab_report r;
        report_ok(e, &r);
        if (!(r.available & MAB_REPORT_HAS_SRM) || !(r.srm_p_value >= 0.001))
            fail_msg("%s: p = %g, %s", policies[k], r.srm_p_value, r.srm_status);
        mab_report_free(&r);
        close_ok(e);
    }
}

/* An ABI 1 policy: only what the rules served (burn-in) is counted. */
static void test_abi1_policy_counts_only_what_the_rules_served(void **state)
{
    (void)state;
    write_config(UNIFORM1, "\"burn_in\": 100");
    mab_engine *e = open_ok();
    choose_n(e, 2000);
    mab_arm_stats st[3];
    ledger_ok(e, st);
    mab_report r;
    report_ok(e, &r);
    uint64_t ledger = st[0].pulls + st[1].pulls + st[2].pulls;
    uint64_t counted = 0;
    for (size_t i = 0; i < 3; i++) {
        counted += mab_report_arm_at(&r, i)->pulls;
        assert_true(st[i].pulls >= 100);
        assert_int_equal(st[i].rewards, ledger);
    }
    assert_int_equal(counted, 2000);
    assert_true(ledger >= 300 && ledger < 600); /* the burn-in's choices only */
    assert_true(r.available & MAB_REPORT_HAS_SRM);
    mab_report_free(&r);
    close_ok(e);

    write_config(UNIFORM1, "");
    e = open_ok();
    choose_n(e, 100);
    report_ok(e, &r);
    assert_false(r.available & MAB_REPORT_HAS_SRM);
    assert_true(isnan(r.srm_p_value));
    assert_string_equal(r.srm_status, "not available: the policy reports no probabilities for "
                                      "its arms (policy ABI 1), and no choice was served by "
                                      "the rules (burn_in, floor, concluded)");
    mab_report_free(&r);
    close_ok(e);
}

/* A vector that does not sum to 1 is not counted (no false alarm). */
static void test_a_vector_that_is_not_a_distribution_is_not_counted(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_reporting.so\", \"bad_vector\": "
                 "true}", "");
    mab_engine *e = open_ok();
    choose_n(e, 1000);
    mab_arm_stats st[3];
    ledger_ok(e, st);
    assert_int_equal(st[0].pulls + st[1].pulls + st[2].pulls, 0);
    assert_int_equal(st[0].rewards, 0);
    mab_report r;
    report_ok(e, &r);
    assert_false(r.available & MAB_REPORT_HAS_SRM);
    assert_int_equal(r.pulls, 1000);
    mab_report_free(&r);
    close_ok(e);
}

/* Paused and holdout choices are not part of the check. */
static void test_holdout_and_paused_choices_are_not_counted(void **state)
{
    (void)state;
    write_config(REPORTING, "\"holdout\": 0.3");
    mab_engine *e = open_ok();
    choose_n(e, 5000);
    mab_arm_stats st[3], held[3];
    ledger_ok(e, st);
    size_t n = 0;
    held[0].struct_size = sizeof held[0];
    assert_int_equal(mab_stats(e, "exp@holdout", held, 3, &n, NULL), MAB_OK);
    uint64_t in_ledger = st[0].pulls + st[1].pulls + st[2].pulls;
    uint64_t in_holdout = held[0].pulls + held[1].pulls + held[2].pulls;
    assert_true(in_holdout > 1000);
    assert_int_equal(in_ledger + in_holdout, 5000);
    close_ok(e);

    write_config(REPORTING, "\"state\": \"paused\"");
    e = open_ok();
    choose_n(e, 100);
    ledger_ok(e, st);
    assert_int_equal(st[0].pulls + st[1].pulls + st[2].pulls, 0);
    close_ok(e);
}

/* ---- the ledger -------------------------------------------------------- */

static void test_ledger_survives_reopen_through_json_file(void **state)
{
    (void)state;
    char storage[400];
    snprintf(storage, sizeof storage, "{\"plugin\": \"json_file\", \"path\": \"%s\"}", store);
    write_config_id(storage, "exp", REPORTING, "");
    mab_engine *e = open_ok();
    choose_n(e, 1000);
    mab_arm_stats before[3], after[3];
    ledger_ok(e, before);
    mab_report r1, r2;
    report_ok(e, &r1);
    close_ok(e);

    e = open_ok();
    ledger_ok(e, after);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(after[i].pulls, before[i].pulls);
        assert_int_equal(after[i].rewards, 1000);
        assert_float_equal(after[i].reward_sum, before[i].reward_sum, 1e-9);
    }
    report_ok(e, &r2);
    assert_float_equal(r2.srm_p_value, r1.srm_p_value, 1e-12);
    assert_string_equal(r2.srm_status, r1.srm_status);
    /* Counting goes on from the stored totals. */
    choose_n(e, 10);
    ledger_ok(e, after);
    assert_int_equal(after[0].rewards, 1010);
    mab_report_free(&r1);
    mab_report_free(&r2);
    close_ok(e);

    /* A hand-edited record: arm c pulled but never served. */
    char *text = test_read_file(store);
    assert_non_null(text);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "experiments"),
                                                       "exp@srm"),
                                   "c");
    assert_non_null(c);
    cJSON_ReplaceItemInObject(c, "reward_sum", cJSON_CreateNumber(0));
    cJSON_ReplaceItemInObject(c, "reward_sum_sq", cJSON_CreateNumber(0));
    char *edited = cJSON_Print(doc);
    cJSON_Delete(doc);
    assert_int_equal(test_write_file(store, "%s", edited), 0);
    free(edited);
    e = open_ok();
    report_ok(e, &r1);
    assert_true(r1.available & MAB_REPORT_HAS_SRM);
    assert_float_equal(r1.srm_p_value, 0.0, 0);
    assert_true(strncmp(r1.srm_status, "mismatch", 8) == 0);
    mab_report_free(&r1);
    /* mab_reset clears the check with the experiment. */
    mab_error err = {0, ""};
    assert_int_equal(mab_reset(e, "exp", &err), MAB_OK);
    ledger_ok(e, after);
    for (int i = 0; i < 3; i++)
        assert_true(after[i].pulls == 0 && after[i].rewards == 0);
    report_ok(e, &r1);
    assert_false(r1.available & MAB_REPORT_HAS_SRM);
    assert_string_equal(r1.srm_status, "not available: no counted choice with the "
                                       "probabilities of every arm yet");
    mab_report_free(&r1);
    close_ok(e);
}

static void test_the_ledger_takes_no_choice_nor_reward(void **state)
{
    (void)state;
    write_config(REPORTING, "");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "exp@srm", &c, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "sample-ratio check"));
    assert_int_equal(mab_reward(e, "exp@srm", "a", 1.0, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "takes no rewards"));
    mab_arm_stats st[3];
    ledger_ok(e, st);
    assert_true(st[0].rewards == 0 && st[0].pulls == 0);
    /* Not listed among the experiments. */
    assert_int_equal(mab_experiment_count(e), 1);
    close_ok(e);
}

/* ---- the config ---------------------------------------------------------- */

static void open_fails(const char *message)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config, &e, &err), MAB_ECONFIG);
    assert_null(e);
    if (!strstr(err.message, message))
        fail_msg("error \"%s\" does not say \"%s\"", err.message, message);
}

static void test_srm_false_creates_no_ledger(void **state)
{
    (void)state;
    write_config(REPORTING, "\"srm\": false");
    mab_engine *e = open_ok();
    choose_n(e, 100);
    mab_arm_stats st[3];
    size_t n = 0;
    st[0].struct_size = sizeof st[0];
    assert_int_equal(mab_stats(e, "exp@srm", st, 3, &n, NULL), MAB_ENOTFOUND);
    mab_report r;
    report_ok(e, &r);
    assert_false(r.available & MAB_REPORT_HAS_SRM);
    assert_string_equal(r.srm_status, "not available: \"srm\": false in the config");
    mab_report_free(&r);
    close_ok(e);

    write_config(REPORTING, "\"srm\": true");
    close_ok(open_ok());
}

static void test_config_errors(void **state)
{
    (void)state;
    write_config(REPORTING, "\"srm\": \"yes\"");
    open_fails("experiments.exp.srm: expected true or false");
    write_config(REPORTING, "\"srm_check\": true");
    open_fails("unknown key \"srm_check\"");
    /* An id that would collide with a ledger is refused, naming it. */
    write_config_id(MEMORY, "exp@srm", REPORTING, "");
    open_fails("\"exp@srm\"");

    /* The longest ids: no ledger by default (the report says why), refused
       when the check is asked for. */
    char id[130];
    memset(id, 'x', 125);
    id[125] = '\0';
    write_config_id(MEMORY, id, REPORTING, "\"srm\": true");
    open_fails("at most 124 characters");
    write_config_id(MEMORY, id, REPORTING, "");
    mab_engine *e = open_ok();
    mab_report r;
    r.struct_size = sizeof r;
    assert_int_equal(mab_report_get(e, id, &r, NULL), MAB_OK);
    assert_non_null(strstr(r.srm_status, "longer than 124 characters"));
    mab_report_free(&r);
    close_ok(e);
    id[124] = '\0';
    write_config_id(MEMORY, id, REPORTING, "\"srm\": true");
    close_ok(open_ok());
}

/* A caller built before srm_status still gets its report, unchanged. */
static void test_a_short_report_struct_still_works(void **state)
{
    (void)state;
    write_config(LIAR, "");
    mab_engine *e = open_ok();
    choose_n(e, 3000);
    struct {
        mab_report r;
        char guard[8];
    } old;
    memset(&old, 0x5a, sizeof old);
    old.r.struct_size = offsetof(mab_report, srm_status);
    assert_int_equal(mab_report_get(e, "exp", &old.r, NULL), MAB_OK);
    assert_true(old.r.available & MAB_REPORT_HAS_SRM);
    assert_true(old.r.srm_p_value < 0.001);
    for (size_t i = 0; i < sizeof old.r.srm_status; i++)
        assert_int_equal((unsigned char)old.r.srm_status[i], 0x5a);
    char *json = NULL;
    assert_int_equal(mab_report_json(&old.r, &json, NULL), MAB_OK);
    assert_non_null(strstr(json, "\"srm_status\":\"not available\""));
    mab_report_json_free(json);
    mab_report_free(&old.r);
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chi2_upper_tail_against_tables),
        cmocka_unit_test_setup_teardown(test_a_policy_that_lies_is_flagged, each, cleanup),
        cmocka_unit_test_setup_teardown(test_a_policy_that_lies_under_a_floor_is_flagged, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_honest_fixture_is_not_flagged, each, cleanup),
        cmocka_unit_test_setup_teardown(test_exp3_is_not_flagged, each, cleanup),
        cmocka_unit_test_setup_teardown(test_honest_fixture_under_a_floor_is_not_flagged, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_honest_fixture_under_burn_in_is_not_flagged, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_concluded_with_a_floor_is_not_flagged, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_bundled_policies_report_their_probabilities, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_abi1_policy_counts_only_what_the_rules_served,
                                        each, cleanup),
        cmocka_unit_test_setup_teardown(test_a_vector_that_is_not_a_distribution_is_not_counted,
                                        each, cleanup),
        cmocka_unit_test_setup_teardown(test_holdout_and_paused_choices_are_not_counted, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_ledger_survives_reopen_through_json_file, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_the_ledger_takes_no_choice_nor_reward, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_srm_false_creates_no_ledger, each, cleanup),
        cmocka_unit_test_setup_teardown(test_config_errors, each, cleanup),
        cmocka_unit_test_setup_teardown(test_a_short_report_struct_still_works, each, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
