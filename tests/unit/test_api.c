/*
 * test_api.c - the public API of 0.2: structs that grow (struct_size
 * refused when too small, an older caller's shorter struct filled without a
 * byte past it), and the handle fast path (same choices and totals as the
 * string API, unknown ids refused, a handle of another engine refused, a
 * reloaded adapter never using the old engine's handles).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/adapter.h"
#include "mab/mab.h"
#include "support.h"

static char *dir;
static char config[300], key_file[300];

#define CANARY 0xA5

/* Four experiments: two policies of ABI 1 (epsilon_greedy, ucb1) and two of
   ABI 2 (thompson; the policy_stats fixture, with statistics of its own). */
static void write_config(void)
{
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\"], \"seed\": 17,\n"
                        " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"},\n"
                        " \"secret_file\": \"mab.key\",\n"
                        " \"redirect_allow\": [\"https://shop.example.com/\"],\n"
                        " \"experiments\": {\n"
                        "  \"eg\": {\"policy\": {\"plugin\": \"epsilon_greedy\", \"epsilon\": 0.3},"
                        " \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}},\n"
                        "  \"ucb\": {\"policy\": {\"plugin\": \"ucb1\"}, \"reward\": {\"min\": 0,"
                        " \"max\": 10}, \"arms\": {\"x\": \"X\", \"y\": \"Y\"}},\n"
                        "  \"ts\": {\"policy\": {\"plugin\": \"thompson\"},"
                        " \"arms\": {\"p\": 1, \"q\": 2, \"r\": 3, \"s\": 4}},\n"
                        "  \"st\": {\"policy\": {\"plugin\": \"%s/policy_stats.so\"},"
                        " \"arms\": {\"u\": 1, \"v\": 2}}}}\n",
                        MAB_PLUGIN_DIR, MAB_FIXTURE_DIR),
        0);
}

static int each(void **state)
{
    (void)state;
    dir = test_tmpdir("api");
    assert_non_null(dir);
    snprintf(config, sizeof config, "%s/mab.json", dir);
    snprintf(key_file, sizeof key_file, "%s/mab.key", dir);
    assert_int_equal(mab_adapter_keygen(key_file, NULL), MAB_OK);
    write_config();
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    test_rm_tree(dir);
    free(dir);
    dir = NULL;
    return 0;
}

static mab_engine *open_engine(void)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
    int rc = mab_open_ex(config, &opts, &e, &err);
    if (rc)
        print_error("mab_open: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return e;
}

static uint64_t pulls_of(mab_engine *e, const char *experiment)
{
    mab_arm_stats st[4] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, experiment, st, 4, &n, NULL), MAB_OK);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += st[i].pulls;
    return total;
}

static uint64_t rewards_of(mab_engine *e, const char *experiment)
{
    mab_arm_stats st[4] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, experiment, st, 4, &n, NULL), MAB_OK);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += st[i].rewards;
    return total;
}

/* Every byte of buf from `from` on is still the canary. */
static void assert_untouched(const unsigned char *buf, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (buf[i] != CANARY)
            fail_msg("byte %zu past struct_size %zu was written", i, from);
}

/* Visitor of a request with an assignment for "eg", as its cookie header. */
static void cookie_for(mab_adapter *ad, char *header, size_t cap)
{
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &rq, NULL), MAB_OK);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(rq, "eg", &a, NULL), MAB_OK);
    const char *token = mab_request_token(rq);
    assert_non_null(token);
    snprintf(header, cap, "mab=%s", token);
    mab_request_end(rq);
}

/* ---- struct_size ----------------------------------------------------- */

static void test_small_struct_size_refused(void **state)
{
    (void)state;
    mab_engine *e = open_engine();
    mab_error err = {0, ""};
    mab_handle h;
    assert_int_equal(mab_experiment_handle(e, "eg", &h, &err), MAB_OK);
    mab_context ctx = {sizeof ctx, NULL, NULL, 0, 0, 0, 0, 0};

    /* mab_choice, through every entry point: refused, and no pull counted. */
    size_t sizes[] = {0, MAB_CHOICE_SIZE_0_1 - 1};
    for (size_t k = 0; k < 2; k++) {
        mab_choice c = {.struct_size = sizes[k]};
        err.message[0] = '\0';
        assert_int_equal(mab_choose(e, "eg", &c, &err), MAB_EINVAL);
        assert_non_null(strstr(err.message, "mab_choice.struct_size"));
        assert_int_equal(mab_choose_ctx(e, "eg", &ctx, &c, NULL, &err), MAB_EINVAL);
        assert_int_equal(mab_choose_h(e, h, NULL, &c, &err), MAB_EINVAL);
        assert_int_equal(mab_choose(e, "st", &c, &err), MAB_EINVAL); /* ABI 2 */
        assert_int_equal(mab_arm_lookup(e, "eg", "a", &c, &err), MAB_EINVAL);
    }
    assert_int_equal(mab_choose(e, "eg", NULL, &err), MAB_EINVAL);
    assert_int_equal(pulls_of(e, "eg"), 0);
    assert_int_equal(pulls_of(e, "st"), 0);

    mab_arm_stats st[3] = {{.struct_size = MAB_ARM_STATS_SIZE_0_1 - 1}};
    size_t n = 0;
    assert_int_equal(mab_stats(e, "eg", st, 3, &n, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "struct_size"));
    assert_int_equal(mab_stats(e, "eg", NULL, 3, &n, &err), MAB_EINVAL);
    assert_int_equal(mab_stats(e, "eg", NULL, 0, &n, &err), MAB_OK); /* count only */
    assert_int_equal(n, 3);

    mab_experiment_info info = {.struct_size = MAB_EXPERIMENT_INFO_SIZE_0_1 - 1};
    assert_int_equal(mab_experiment_at(e, 0, &info, &err), MAB_EINVAL);
    assert_null(info.id);
    assert_int_equal(mab_experiment_at(e, 0, NULL, &err), MAB_EINVAL);

    /* The adapter's structs: refused, nothing counted, nothing spent. */
    mab_adapter *ad = NULL;
    assert_int_equal(mab_adapter_open(e, &ad, &err), MAB_OK);
    char header[4200];
    cookie_for(ad, header, sizeof header);
    assert_int_equal(pulls_of(e, "eg"), 1);
    mab_adapter_counters before = MAB_STRUCT_INIT(mab_adapter_counters);
    assert_int_equal(mab_adapter_get_counters(ad, &before), MAB_OK);
    mab_adapter_counters small = {.struct_size = MAB_ADAPTER_COUNTERS_SIZE_0_1 - 1};
    assert_int_equal(mab_adapter_get_counters(ad, &small), MAB_EINVAL);
    assert_int_equal(small.cookies_forged, 0);
    assert_int_equal(small.assignments, 0);

    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &rq, NULL), MAB_OK);
    mab_assignment a = {.struct_size = MAB_ASSIGNMENT_SIZE_0_1 - 1};
    assert_int_equal(mab_request_choose(rq, "ucb", &a, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "mab_assignment.struct_size"));
    assert_null(mab_request_token(rq)); /* no entry was made */
    mab_request_end(rq);
    assert_int_equal(pulls_of(e, "ucb"), 0);

    assert_int_equal(mab_request_begin(ad, header, NULL, &rq, NULL), MAB_OK);
    mab_reward_result r = {.struct_size = MAB_REWARD_RESULT_SIZE_0_1 - 1};
    assert_int_equal(mab_request_reward(rq, "eg", 1, &r, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "mab_reward_result.struct_size"));
    mab_redirect small_where = {.struct_size = MAB_REDIRECT_SIZE_0_1 - 1};
    mab_reward_result full_r = MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_redirect(rq, "eg", 1, "/thanks", &full_r, &small_where, &err),
                     MAB_EINVAL);
    assert_non_null(strstr(err.message, "mab_redirect.struct_size"));
    mab_redirect where = MAB_STRUCT_INIT(mab_redirect);
    assert_int_equal(mab_request_redirect(rq, "eg", 1, "/thanks", &r, &where, &err),
                     MAB_EINVAL);
    assert_null(where.location);
    assert_int_equal(rewards_of(e, "eg"), 0);
    /* The assignment was not spent: a correct call still counts it. */
    assert_int_equal(mab_request_reward(rq, "eg", 1, &full_r, &err), MAB_OK);
    assert_true(full_r.counted);
    mab_request_end(rq);
    assert_int_equal(rewards_of(e, "eg"), 1);

    mab_adapter_counters after = MAB_STRUCT_INIT(mab_adapter_counters);
    assert_int_equal(mab_adapter_get_counters(ad, &after), MAB_OK);
    assert_int_equal(after.assignments, before.assignments);
    assert_int_equal(after.rewards_counted, before.rewards_counted + 1);
    assert_int_equal(after.rewards_refused, before.rewards_refused);
    mab_adapter_close(ad);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* A caller built against 0.1's fields passes their size: it gets them all,
   right, and not one byte past its struct_size is written. */
static void test_old_struct_size_filled(void **state)
{
    (void)state;
    mab_engine *e = open_engine();
    mab_error err = {0, ""};

    /* mab_choice: the same arm, id and value as a full-size lookup. */
    mab_choice full = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_arm_lookup(e, "eg", "b", &full, &err), MAB_OK);
    assert_int_equal(full.estimated, 0);
    unsigned char buf[256];
    memset(buf, CANARY, sizeof buf);
    mab_choice *old = (mab_choice *)buf;
    old->struct_size = MAB_CHOICE_SIZE_0_1;
    assert_int_equal(mab_arm_lookup(e, "eg", "b", old, &err), MAB_OK);
    assert_int_equal(old->struct_size, MAB_CHOICE_SIZE_0_1);
    assert_int_equal(old->arm_index, 1);
    assert_string_equal(old->arm_id, "b");
    assert_string_equal(old->value_json, "2");
    assert_true(isnan(old->probability));
    assert_untouched(buf, MAB_CHOICE_SIZE_0_1, sizeof buf);
    /* A choice too: the pull is counted, the fields are those of its arm. */
    memset(buf, CANARY, sizeof buf);
    old->struct_size = MAB_CHOICE_SIZE_0_1;
    assert_int_equal(mab_choose(e, "eg", old, &err), MAB_OK);
    assert_true(old->arm_index < 3);
    assert_int_equal(old->arm_id[0], "abc"[old->arm_index]);
    assert_true(old->probability > 0 && old->probability <= 1);
    assert_untouched(buf, MAB_CHOICE_SIZE_0_1, sizeof buf);
    assert_int_equal(pulls_of(e, "eg"), 1);
    /* A caller with a newer, longer struct: the library writes what it knows. */
    memset(buf, CANARY, sizeof buf);
    old->struct_size = sizeof(mab_choice) + 32;
    assert_int_equal(mab_choose(e, "st", old, &err), MAB_OK);
    assert_int_equal(old->struct_size, sizeof(mab_choice) + 32);
    assert_int_equal(old->estimated, 0);
    assert_true(old->probability == 1.0);
    assert_untouched(buf, sizeof(mab_choice), sizeof buf);

    /* mab_arm_stats: the array's stride is out[0].struct_size. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(mab_reward(e, "eg", "c", 1.0, &err), MAB_OK);
    mab_arm_stats want[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, "eg", want, 3, &n, &err), MAB_OK);
    assert_string_equal(want[2].value_json, "3");
    size_t stride = MAB_ARM_STATS_SIZE_0_1;
    memset(buf, CANARY, sizeof buf);
    ((mab_arm_stats *)buf)->struct_size = stride;
    assert_int_equal(mab_stats(e, "eg", (mab_arm_stats *)buf, 3, &n, &err), MAB_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < 3; i++) {
        const mab_arm_stats *got = (const mab_arm_stats *)(buf + i * stride);
        assert_int_equal(got->struct_size, stride);
        assert_string_equal(got->arm_id, want[i].arm_id);
        assert_int_equal(got->pulls, want[i].pulls);
        assert_int_equal(got->rewards, want[i].rewards);
        assert_true(got->reward_sum == want[i].reward_sum);
        assert_true(got->reward_sum_sq == want[i].reward_sum_sq);
        assert_true(got->mean == want[i].mean);
    }
    assert_int_equal(((const mab_arm_stats *)(buf + 2 * stride))->rewards, 5);
    assert_untouched(buf, 3 * stride, sizeof buf);

    /* mab_experiment_info */
    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    assert_int_equal(mab_experiment_at(e, 3, &info, &err), MAB_OK);
    assert_int_equal(info.policy_abi, 2);
    assert_int_equal(info.n_features, 0);
    assert_int_equal(mab_experiment_at(e, 1, &info, &err), MAB_OK);
    assert_int_equal(info.policy_abi, 1);
    memset(buf, CANARY, sizeof buf);
    mab_experiment_info *old_info = (mab_experiment_info *)buf;
    old_info->struct_size = MAB_EXPERIMENT_INFO_SIZE_0_1;
    assert_int_equal(mab_experiment_at(e, 1, old_info, &err), MAB_OK);
    assert_string_equal(old_info->id, "ucb");
    assert_string_equal(old_info->policy, "ucb1");
    assert_string_equal(old_info->policy_path, info.policy_path);
    assert_int_equal(old_info->n_arms, 2);
    assert_true(old_info->reward_min == 0 && old_info->reward_max == 10);
    assert_untouched(buf, MAB_EXPERIMENT_INFO_SIZE_0_1, sizeof buf);

    /* The adapter's: an assignment and a reward result of 0.1's size. */
    mab_adapter *ad = NULL;
    assert_int_equal(mab_adapter_open(e, &ad, &err), MAB_OK);
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &rq, NULL), MAB_OK);
    memset(buf, CANARY, sizeof buf);
    mab_assignment *a = (mab_assignment *)buf;
    a->struct_size = MAB_ASSIGNMENT_SIZE_0_1;
    assert_int_equal(mab_request_choose(rq, "ucb", a, &err), MAB_OK);
    assert_string_equal(a->experiment, "ucb");
    assert_true(strcmp(a->arm_id, "x") == 0 || strcmp(a->arm_id, "y") == 0);
    assert_string_equal(a->value_json, a->arm_id[0] == 'x' ? "\"X\"" : "\"Y\"");
    assert_true(a->probability > 0 && a->probability <= 1);
    assert_int_equal(a->is_new, 1);
    assert_untouched(buf, MAB_ASSIGNMENT_SIZE_0_1, sizeof buf);
    char arm[8];
    snprintf(arm, sizeof arm, "%s", a->arm_id);
    mab_assignment again = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(rq, "ucb", &again, &err), MAB_OK);
    assert_string_equal(again.arm_id, arm);
    assert_int_equal(again.arm_index, arm[0] == 'x' ? 0 : 1);

    memset(buf, CANARY, sizeof buf);
    mab_reward_result *r = (mab_reward_result *)buf;
    r->struct_size = MAB_REWARD_RESULT_SIZE_0_1;
    assert_int_equal(mab_request_reward(rq, "ucb", 7, r, &err), MAB_OK);
    assert_int_equal(r->counted, 1);
    assert_int_equal(r->reason, MAB_REWARD_COUNTED);
    assert_string_equal(r->arm_id, arm);
    assert_untouched(buf, MAB_REWARD_RESULT_SIZE_0_1, sizeof buf);
    mab_reward_result full_r = MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_reward(rq, "ucb", 7, &full_r, &err), MAB_OK);
    assert_int_equal(full_r.reason, MAB_REWARD_ALREADY_REWARDED);
    assert_true(isnan(full_r.probability));
    mab_request_end(rq);

    memset(buf, CANARY, sizeof buf);
    mab_adapter_counters *c = (mab_adapter_counters *)buf;
    c->struct_size = MAB_ADAPTER_COUNTERS_SIZE_0_1;
    assert_int_equal(mab_adapter_get_counters(ad, c), MAB_OK);
    assert_int_equal(c->assignments, 1);
    assert_int_equal(c->rewards_counted, 1);
    assert_int_equal(c->rewards_refused, 1);
    assert_untouched(buf, MAB_ADAPTER_COUNTERS_SIZE_0_1, sizeof buf);
    mab_adapter_close(ad);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* ---- handles --------------------------------------------------------- */

/* A reward for step i of arm `arm`: fixed, so that two runs agree. */
static double reward_at(const char *experiment, size_t arm, int i)
{
    if (strcmp(experiment, "ucb") == 0)
        return (double)((i * 7 + (int)arm * 3) % 11);
    return ((i + (int)arm) % 3 == 0) ? 1.0 : 0.0;
}

static void test_handle_path_equals_string_path(void **state)
{
    (void)state;
    const char *ids[] = {"eg", "ucb", "ts", "st"};
    enum { STEPS = 400 };
    char seq[2][4][STEPS];
    mab_arm_stats totals[2][4][4];
    double stats[2][4][5];
    for (int run = 0; run < 2; run++) {
        mab_engine *e = open_engine();
        mab_error err = {0, ""};
        mab_handle h[4];
        for (int x = 0; x < 4; x++)
            assert_int_equal(mab_experiment_handle(e, ids[x], &h[x], &err), MAB_OK);
        for (int i = 0; i < STEPS; i++) {
            for (int x = 0; x < 4; x++) {
                mab_choice c = MAB_STRUCT_INIT(mab_choice);
                if (run == 0)
                    assert_int_equal(mab_choose(e, ids[x], &c, &err), MAB_OK);
                else
                    assert_int_equal(mab_choose_h(e, h[x], NULL, &c, &err), MAB_OK);
                seq[run][x][i] = c.arm_id[0];
                double value = reward_at(ids[x], c.arm_index, i);
                if (i % 2 == 0)
                    continue; /* every other choice goes unrewarded */
                if (run == 0)
                    assert_int_equal(mab_reward(e, ids[x], c.arm_id, value, &err), MAB_OK);
                else
                    assert_int_equal(mab_reward_h(e, h[x], c.arm_index, value, NULL, &err),
                                     MAB_OK);
            }
        }
        for (int x = 0; x < 4; x++) {
            totals[run][x][0].struct_size = sizeof totals[run][x][0];
            size_t n = 0;
            assert_int_equal(mab_stats(e, ids[x], totals[run][x], 4, &n, &err), MAB_OK);
            for (size_t a = n; a < 4; a++)
                memset(&totals[run][x][a], 0, sizeof totals[run][x][a]);
        }
        mab_policy_stats_info si = {sizeof si, NULL, 0, 0};
        assert_int_equal(mab_policy_stats(e, "st", &si, stats[run][0], 4, stats[run][0] + 4, 1,
                                          &err),
                         MAB_OK);
        assert_int_equal(mab_close(e, NULL), MAB_OK);
    }
    for (int x = 0; x < 4; x++) {
        assert_memory_equal(seq[0][x], seq[1][x], STEPS);
        for (int a = 0; a < 4; a++) {
            const mab_arm_stats *s0 = &totals[0][x][a], *s1 = &totals[1][x][a];
            assert_int_equal(s0->pulls, s1->pulls);
            assert_int_equal(s0->rewards, s1->rewards);
            assert_true(s0->reward_sum == s1->reward_sum);
            assert_true(s0->reward_sum_sq == s1->reward_sum_sq);
        }
    }
    assert_memory_equal(stats[0][0], stats[1][0], 5 * sizeof(double));
    /* The runs did something worth comparing: every arm of eg was tried,
       and rewards were counted in every experiment. */
    for (int a = 0; a < 3; a++)
        assert_non_null(memchr(seq[0][0], "abc"[a], STEPS));
    for (int x = 0; x < 4; x++) {
        uint64_t rewards = 0;
        for (int a = 0; a < 4; a++)
            rewards += totals[0][x][a].rewards;
        assert_int_equal(rewards, STEPS / 2);
    }
}

static void test_handle_lookup_refuses_unknown(void **state)
{
    (void)state;
    mab_engine *e = open_engine();
    mab_error err = {0, ""};
    mab_handle h = {77, 77};
    assert_int_equal(mab_experiment_handle(e, "nope", &h, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "\"nope\""));
    assert_int_equal(h.engine, 77); /* untouched */
    assert_int_equal(mab_experiment_handle(e, NULL, &h, &err), MAB_EINVAL);
    assert_int_equal(mab_experiment_handle(e, "eg", NULL, &err), MAB_EINVAL);

    assert_int_equal(mab_experiment_handle(e, "ucb", &h, &err), MAB_OK);
    assert_int_equal(h.index, 1);
    size_t arm = 99;
    assert_int_equal(mab_arm_index(e, h, "y", &arm, &err), MAB_OK);
    assert_int_equal(arm, 1);
    assert_int_equal(mab_arm_index(e, h, "z", &arm, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "\"z\""));
    assert_non_null(strstr(err.message, "ucb"));
    assert_int_equal(mab_arm_index(e, h, NULL, &arm, &err), MAB_ENOTFOUND);

    /* An arm index out of range: refused, nothing recorded. */
    assert_int_equal(mab_reward_h(e, h, 2, 1.0, NULL, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "no arm number 2"));
    assert_int_equal(mab_reward_h(e, h, SIZE_MAX, 1.0, NULL, &err), MAB_ENOTFOUND);
    /* The value checks of mab_reward() hold by handle too. */
    assert_int_equal(mab_reward_h(e, h, 1, 11.0, NULL, &err), MAB_ERANGE);
    assert_int_equal(mab_reward_h(e, h, 1, NAN, NULL, &err), MAB_EINVAL);
    assert_int_equal(rewards_of(e, "ucb"), 0);
    assert_int_equal(mab_reward_h(e, h, 1, 10.0, NULL, &err), MAB_OK);
    assert_int_equal(rewards_of(e, "ucb"), 1);

    /* A handle whose index is past the experiments (forged). */
    mab_handle forged = h;
    forged.index = 4;
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose_h(e, forged, NULL, &c, &err), MAB_EINVAL);
    assert_int_equal(mab_choose_h(NULL, h, NULL, &c, &err), MAB_EINVAL);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

static void test_handle_of_another_engine_refused(void **state)
{
    (void)state;
    mab_engine *old = open_engine();
    mab_error err = {0, ""};
    mab_handle stale;
    assert_int_equal(mab_experiment_handle(old, "eg", &stale, &err), MAB_OK);
    /* A reload: a new engine over the same config, then the old one closed. */
    mab_engine *fresh = open_engine();
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose_h(fresh, stale, NULL, &c, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "handle of another engine"));
    assert_int_equal(mab_reward_h(fresh, stale, 0, 1.0, NULL, &err), MAB_EINVAL);
    size_t arm;
    assert_int_equal(mab_arm_index(fresh, stale, "a", &arm, &err), MAB_EINVAL);
    assert_int_equal(pulls_of(fresh, "eg"), 0);
    assert_int_equal(rewards_of(fresh, "eg"), 0);
    assert_int_equal(mab_close(old, NULL), MAB_OK);
    /* An engine opened after the old one closed may reuse its memory; the
       old handle still names no experiment of it. */
    mab_engine *later = open_engine();
    assert_int_equal(mab_choose_h(later, stale, NULL, &c, &err), MAB_EINVAL);
    assert_int_equal(pulls_of(later, "eg"), 0);
    /* Its own handles work. */
    mab_handle h;
    assert_int_equal(mab_experiment_handle(later, "eg", &h, &err), MAB_OK);
    assert_int_equal(mab_choose_h(later, h, NULL, &c, &err), MAB_OK);
    assert_int_equal(pulls_of(later, "eg"), 1);
    assert_int_equal(mab_close(later, NULL), MAB_OK);
    assert_int_equal(mab_close(fresh, NULL), MAB_OK);
}

/* The adapter looks experiments up in the engine it serves at each call, so
   after mab_adapter_reload() and the old engine's close, rewards of
   assignments made before the reload count in the new engine. */
static void test_adapter_reload_uses_the_new_engine(void **state)
{
    (void)state;
    mab_engine *old = open_engine();
    mab_adapter *ad = NULL;
    assert_int_equal(mab_adapter_open(old, &ad, NULL), MAB_OK);
    char header[4200];
    cookie_for(ad, header, sizeof header);
    mab_engine *fresh = open_engine();
    mab_error err = {0, ""};
    assert_int_equal(mab_adapter_reload(ad, fresh, &err), MAB_OK);
    assert_int_equal(mab_close(old, NULL), MAB_OK);
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, header, NULL, &rq, NULL), MAB_OK);
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_reward(rq, "eg", 1, &r, &err), MAB_OK);
    assert_true(r.counted);
    assert_false(isnan(r.probability));
    assert_true(r.probability > 0 && r.probability <= 1);
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_arm_lookup(fresh, "eg", r.arm_id, &c, NULL), MAB_OK);
    assert_ptr_equal(r.arm_id, c.arm_id); /* the new engine's string */
    mab_request_end(rq);
    assert_int_equal(rewards_of(fresh, "eg"), 1);
    mab_adapter_close(ad);
    assert_int_equal(mab_close(fresh, NULL), MAB_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_small_struct_size_refused, each, cleanup),
        cmocka_unit_test_setup_teardown(test_old_struct_size_filled, each, cleanup),
        cmocka_unit_test_setup_teardown(test_handle_path_equals_string_path, each, cleanup),
        cmocka_unit_test_setup_teardown(test_handle_lookup_refuses_unknown, each, cleanup),
        cmocka_unit_test_setup_teardown(test_handle_of_another_engine_refused, each, cleanup),
        cmocka_unit_test_setup_teardown(test_adapter_reload_uses_the_new_engine, each, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
