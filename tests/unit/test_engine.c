/*
 * test_engine.c - the engine with real plugins (epsilon_greedy, ucb1,
 * json_file): counting, reward validation, reward units, persistence,
 * config reconciliation, durability modes, reset, reproducible seeds, the
 * config test (MAB_OPEN_CHECK, mab_check) and read-only opens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "mab/adapter.h"
#include "mab/mab.h"
#include "fixture.h"

static char state_file[300];

/* Config with one experiment "exp" with the given arms JSON and extras. */
static void write_config(const char *arms, const char *storage_extra, const char *exp_extra)
{
    assert_int_equal(test_write_file(config,
                                     "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n"
                                     " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"%s},\n"
                                     " \"experiments\": {\"exp\": {\"policy\": {\"plugin\": \"ucb1\"},"
                                     " \"arms\": %s%s}}}\n",
                                     MAB_PLUGIN_DIR, storage_extra, arms, exp_extra),
                     0);
}

static mab_arm_stats stats_of(mab_engine *e, const char *arm)
{
    mab_arm_stats st[8] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    mab_error err;
    assert_int_equal(mab_stats(e, "exp", st, 8, &n, &err), MAB_OK);
    for (size_t i = 0; i < n && i < 8; i++)
        if (strcmp(st[i].arm_id, arm) == 0)
            return st[i];
    fail_msg("arm %s not in stats", arm);
    return st[0];
}

/* Totals of one arm in the json_file state on disk. */
struct disk_field {
    const char *arm, *field;
    double v;
};

static int disk_visit(void *ctx, const mab_record *r)
{
    struct disk_field *d = ctx;
    if (strcmp(r->experiment, "exp") == 0 && strcmp(r->arm, d->arm) == 0)
        d->v = strcmp(d->field, "pulls") == 0     ? (double)r->pulls
               : strcmp(d->field, "rewards") == 0 ? (double)r->rewards
               : strcmp(d->field, "reward_sum") == 0 ? r->reward_sum
                                                     : r->reward_sum_sq;
    return 0;
}

/* What the store holds durably (json_file: its snapshot and journal), read
   as another process would: a read-only engine's export (which lists arms
   no longer in the config too). */
static double on_disk(const char *arm, const char *field)
{
    mab_options opts = {sizeof opts, MAB_OPEN_READ_ONLY, 0};
    mab_engine *ro = NULL;
    mab_error err = {0};
    if (mab_open_ex(config, &opts, &ro, &err) != MAB_OK)
        fail_msg("read-only open: %s", err.message);
    struct disk_field d = {arm, field, 0.0};
    assert_int_equal(mab_export(ro, disk_visit, &d, &err), MAB_OK);
    mab_close(ro, NULL);
    return d.v;
}

static void test_choose_counts_pulls_and_lookup_does_not(void **state)
{
    (void)state;
    write_config("{\"a\": 1, \"b\": 2, \"c\": 3}", "", "");
    mab_engine *e = open_ok();
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    mab_error err;
    /* UCB1 plays every untried arm first: three choices, three arms. */
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
        assert_true(c.arm_index < 3);
        seen[c.arm_index]++;
        assert_string_equal(c.value_json, c.arm_index == 0 ? "1" : c.arm_index == 1 ? "2" : "3");
    }
    assert_int_equal(seen[0] + seen[1] + seen[2], 3);
    assert_true(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    assert_int_equal(mab_arm_lookup(e, "exp", "b", &c, &err), MAB_OK);
    assert_true(isnan(c.probability));
    assert_int_equal(stats_of(e, "a").pulls + stats_of(e, "b").pulls + stats_of(e, "c").pulls, 3);
    assert_int_equal(mab_arm_lookup(e, "exp", "z", &c, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "experiments.exp has no arm \"z\""));
    assert_int_equal(mab_choose(e, "nope", &c, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "no experiment \"nope\""));
    close_ok(e);
}

static void test_bad_rewards_change_nothing(void **state)
{
    (void)state;
    write_config("{\"a\": 1, \"b\": 2}", "", ", \"reward\": {\"min\": 0, \"max\": 10}");
    mab_engine *e = open_ok();
    mab_error err;
    assert_int_equal(mab_reward(e, "exp", "a", 4.0, &err), MAB_OK);
    struct {
        const char *exp, *arm;
        double value;
        int code;
        const char *needle;
    } bad[] = {
        {"exp", "a", NAN, MAB_EINVAL, "reward for arm \"a\" is NaN"},
        {"exp", "a", INFINITY, MAB_EINVAL, "is infinite"},
        {"exp", "a", -INFINITY, MAB_EINVAL, "is infinite"},
        {"exp", "a", 10.5, MAB_ERANGE, "reward 10.5 for arm \"a\" is outside the reward range [0, 10]"},
        {"exp", "a", -0.1, MAB_ERANGE, "outside the reward range"},
        {"exp", "zz", 1.0, MAB_ENOTFOUND, "experiments.exp has no arm \"zz\""},
        {"nope", "a", 1.0, MAB_ENOTFOUND, "no experiment \"nope\""},
        {"exp", NULL, 1.0, MAB_ENOTFOUND, "has no arm"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.message[0] = '\0';
        assert_int_equal(mab_reward(e, bad[i].exp, bad[i].arm, bad[i].value, &err), bad[i].code);
        assert_int_equal(err.code, bad[i].code);
        if (!strstr(err.message, bad[i].needle))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.message, bad[i].needle);
    }
    mab_arm_stats a = stats_of(e, "a");
    assert_int_equal(a.rewards, 1);
    assert_true(a.reward_sum == 4.0);
    assert_true(a.reward_sum_sq == 16.0);
    assert_int_equal(mab_reward(NULL, "exp", "a", 1.0, &err), MAB_EINVAL);
    close_ok(e);
}

static void test_persistence_and_reconciliation(void **state)
{
    (void)state;
    write_config("{\"a\": 1, \"b\": 2, \"c\": 3}", "", "");
    mab_engine *e = open_ok();
    mab_choice ch = MAB_STRUCT_INIT(mab_choice);
    mab_error err;
    for (int i = 0; i < 30; i++)
        assert_int_equal(mab_choose(e, "exp", &ch, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "b", 0.25, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "b", 0.5, &err), MAB_OK);
    mab_arm_stats a0 = stats_of(e, "a"), b0 = stats_of(e, "b"), c0 = stats_of(e, "c");
    assert_int_equal(a0.pulls + b0.pulls + c0.pulls, 30);
    close_ok(e);

    /* Reordered, "b" removed, "d" added. */
    write_config("{\"d\": 4, \"c\": 3, \"a\": 1}", "", "");
    e = open_ok();
    mab_arm_stats a1 = stats_of(e, "a"), c1 = stats_of(e, "c"), d1 = stats_of(e, "d");
    assert_int_equal(a1.pulls, a0.pulls);
    assert_int_equal(a1.rewards, 1);
    assert_int_equal(c1.pulls, c0.pulls);
    assert_int_equal(d1.pulls, 0);
    assert_int_equal(d1.rewards, 0);
    assert_true(on_disk("b", "rewards") == 2.0); /* the removed arm stays stored */
    close_ok(e);

    /* "b" back: its counters were kept. */
    write_config("{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4}", "", "");
    e = open_ok();
    mab_arm_stats b2 = stats_of(e, "b");
    assert_int_equal(b2.pulls, b0.pulls);
    assert_int_equal(b2.rewards, 2);
    assert_true(b2.reward_sum == 0.75);
    assert_true(b2.reward_sum_sq == 0.25 * 0.25 + 0.5 * 0.5);

    /* Reset zeroes the experiment, in memory and in storage. */
    assert_int_equal(mab_reset(e, "exp", &err), MAB_OK);
    assert_int_equal(stats_of(e, "b").pulls, 0);
    assert_true(on_disk("b", "pulls") == 0.0);
    assert_int_equal(mab_reset(e, "nope", &err), MAB_ENOTFOUND);
    close_ok(e);
}

static void test_sync_modes(void **state)
{
    (void)state;
    /* "always": on disk when mab_reward returns. */
    write_config("{\"a\": 1, \"b\": 2}", ", \"sync\": \"always\"", "");
    mab_engine *e = open_ok();
    mab_error err;
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
        assert_true(on_disk("a", "rewards") == (double)i);
    }
    close_ok(e);

    /* A long interval: not on disk until flushed. */
    write_config("{\"a\": 1, \"b\": 2}", ", \"sync\": {\"interval_ms\": 600000}", "");
    e = open_ok();
    assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_OK);
    assert_true(on_disk("b", "rewards") == 0.0);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    assert_true(on_disk("b", "rewards") == 1.0);
    assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_OK);
    close_ok(e); /* close writes what is pending */
    assert_true(on_disk("b", "rewards") == 2.0);

    /* A short interval: the background writer gets there on its own. */
    write_config("{\"a\": 1, \"b\": 2}", ", \"sync\": {\"interval_ms\": 20}", "");
    e = open_ok();
    assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_OK);
    for (int i = 0; i < 500 && on_disk("b", "rewards") != 3.0; i++)
        usleep(10000);
    assert_true(on_disk("b", "rewards") == 3.0);
    close_ok(e);
}

static void test_same_seed_same_choices(void **state)
{
    (void)state;
    assert_int_equal(test_write_file(config,
                                     "{\"plugin_path\": [\"%s\"], \"seed\": 11,"
                                     " \"storage\": {\"plugin\": \"json_file\", \"path\": \"unused.json\"},"
                                     " \"experiments\": {\"exp\": {\"policy\": {\"plugin\": \"epsilon_greedy\","
                                     " \"epsilon\": 0.5}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                                     MAB_PLUGIN_DIR),
                     0);
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
    char seq[2][201];
    for (int run = 0; run < 2; run++) {
        mab_engine *e = NULL;
        mab_error err;
        assert_int_equal(mab_open_ex(config, &opts, &e, &err), MAB_OK);
        assert_string_equal(mab_storage_name(e), "none");
        for (int i = 0; i < 200; i++) {
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
            seq[run][i] = c.arm_id[0];
            if (c.arm_id[0] == 'c')
                assert_int_equal(mab_reward(e, "exp", "c", 1.0, &err), MAB_OK);
        }
        seq[run][200] = '\0';
        close_ok(e);
    }
    assert_string_equal(seq[0], seq[1]);
    assert_non_null(strchr(seq[0], 'a')); /* epsilon 0.5 explores */
    /* NO_STORAGE never created the state file. */
    char unused[320];
    snprintf(unused, sizeof unused, "%s/unused.json", dir);
    assert_int_equal(access(unused, F_OK), -1);
}


/* Many arms: every id is found (the id index probes past collisions). */
static void test_many_arms_by_id(void **state)
{
    (void)state;
    char arms[300 * 16] = "{";
    for (int i = 0; i < 300; i++)
        snprintf(arms + strlen(arms), sizeof arms - strlen(arms), "%s\"arm%d\": %d", i ? ", " : "", i, i);
    strcat(arms, "}");
    write_config(arms, "", ", \"reward\": {\"min\": 0, \"max\": 300}");
    mab_engine *e = open_ok();
    mab_error err;
    char id[16];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "arm%d", i);
        assert_int_equal(mab_reward(e, "exp", id, (double)i, &err), MAB_OK);
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_arm_lookup(e, "exp", id, &c, &err), MAB_OK);
        assert_int_equal(c.arm_index, i);
    }
    assert_int_equal(mab_reward(e, "exp", "arm300", 1.0, &err), MAB_ENOTFOUND);
    assert_int_equal(mab_reward(e, "exp", "", 1.0, &err), MAB_ENOTFOUND);
    static mab_arm_stats st[300] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, "exp", st, 300, &n, &err), MAB_OK);
    assert_int_equal(n, 300);
    for (int i = 0; i < 300; i++) {
        assert_int_equal(st[i].rewards, 1);
        assert_true(st[i].reward_sum == (double)i);
    }
    close_ok(e);
}

struct collected {
    mab_record records[16];
    char names[16][2][32];
    size_t n;
};

static int collect(void *ctx, const mab_record *r)
{
    struct collected *c = ctx;
    if (c->n == 16)
        return 99;
    snprintf(c->names[c->n][0], 32, "%s", r->experiment);
    snprintf(c->names[c->n][1], 32, "%s", r->arm);
    c->records[c->n] = *r;
    c->records[c->n].experiment = c->names[c->n][0];
    c->records[c->n].arm = c->names[c->n][1];
    c->n++;
    return 0;
}

static const mab_record *find_record(const struct collected *c, const char *arm)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->records[i].arm, arm) == 0)
            return &c->records[i];
    return NULL;
}

static void test_export_import(void **state)
{
    (void)state;
    write_config("{\"a\": 1, \"b\": 2, \"gone\": 3}", "", "");
    mab_engine *e = open_ok();
    mab_error err;
    assert_int_equal(mab_reward(e, "exp", "gone", 0.5, &err), MAB_OK);
    close_ok(e);
    write_config("{\"a\": 1, \"b\": 2}", "", "");
    e = open_ok();
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (int i = 0; i < 4; i++)
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 0.25, &err), MAB_OK);

    /* Export sees unflushed counts and the removed arm's record. */
    struct collected out = {.n = 0};
    assert_int_equal(mab_export(e, collect, &out, &err), MAB_OK);
    assert_int_equal(out.n, 3);
    const mab_record *a = find_record(&out, "a"), *gone = find_record(&out, "gone");
    assert_non_null(a);
    assert_non_null(gone);
    assert_int_equal(a->rewards, 2);
    assert_true(a->reward_sum == 1.25);
    assert_true(gone->reward_sum == 0.5);
    assert_int_equal(find_record(&out, "a")->pulls + find_record(&out, "b")->pulls, 4);

    /* An unknown arm: nothing is imported. */
    mab_record bad[2] = {{"exp", "a", 10, 10, 10.0, 10.0}, {"exp", "zz", 1, 1, 1.0, 1.0}};
    assert_int_equal(mab_import(e, bad, 2, 0, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "experiments.exp has no arm \"zz\""));
    assert_int_equal(stats_of(e, "a").rewards, 2);
    mab_record bad_exp = {"nope", "a", 1, 1, 1.0, 1.0};
    assert_int_equal(mab_import(e, &bad_exp, 1, 0, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "experiment \"nope\""));

    /* Additive import. */
    mab_record add = {"exp", "b", 100, 7, 7.0, 7.0};
    assert_int_equal(mab_import(e, &add, 1, 0, &err), MAB_OK);
    assert_int_equal(stats_of(e, "b").rewards, 7);
    assert_true(on_disk("b", "rewards") == 7.0);

    /* Replace: the experiment holds exactly the imported records. */
    mab_record only = {"exp", "a", 50, 5, 4.5, 4.25};
    assert_int_equal(mab_import(e, &only, 1, 1, &err), MAB_OK);
    mab_arm_stats sa = stats_of(e, "a"), sb = stats_of(e, "b");
    assert_int_equal(sa.pulls, 50);
    assert_int_equal(sa.rewards, 5);
    assert_true(sa.reward_sum == 4.5);
    assert_int_equal(sb.pulls, 0);
    out.n = 0;
    assert_int_equal(mab_export(e, collect, &out, &err), MAB_OK);
    assert_int_equal(out.n, 1); /* "b" and "gone" were removed */
    close_ok(e);
}

/* Issue 10, item 1: one reward whose sums cannot be stored must not stop
   persistence. The config (max 1e300) is refused; a reward that would
   push an arm's sum of squares past a double is refused at the API, and the
   rewards of other experiments keep reaching storage. */
static void test_unstorable_reward_is_refused(void **state)
{
    (void)state;
#define BIG_CONFIG \
        "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n" \
        " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"},\n" \
        " \"experiments\": {\"exp\": {\"policy\": {\"plugin\": \"ucb1\"}, \"arms\": {\"a\": 1, \"b\": 2}},\n" \
        "  \"big\": {\"policy\": {\"plugin\": \"ucb1\"}, \"reward\": {\"min\": 0, \"max\": %s},\n" \
        "           \"arms\": {\"p\": 1, \"q\": 2}}}}\n"
    assert_int_equal(test_write_file(config, BIG_CONFIG, MAB_PLUGIN_DIR, "1e300"), 0);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config, &e, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "experiments.big.reward.max: 1e+300 is outside"));
    assert_null(e);

    assert_int_equal(test_write_file(config, BIG_CONFIG, MAB_PLUGIN_DIR, "1e150"), 0);
    e = open_ok();
    /* An arm whose sum of squares is already the largest double. */
    mab_record full = {"big", "p", 1, 1, 1.0, DBL_MAX};
    assert_int_equal(mab_import(e, &full, 1, 0, &err), MAB_OK);
    err.message[0] = '\0';
    assert_int_equal(mab_reward(e, "big", "p", 1e150, &err), MAB_ERANGE);
    assert_int_equal(err.code, MAB_ERANGE);
    if (!strstr(err.message, "experiments.big: reward 1e+150 for arm \"p\" would make a sum"))
        fail_msg("unexpected message: %s", err.message);
    /* A second import onto the same arm would overflow its sum of squares. */
    assert_int_equal(mab_import(e, &full, 1, 0, &err), MAB_ERANGE);
    assert_non_null(strstr(err.message, "record 0 (big/p): the arm's reward sums would overflow"));
    mab_arm_stats st[2] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, "big", st, 2, &n, &err), MAB_OK);
    assert_int_equal(st[0].rewards, 1);
    assert_true(st[0].reward_sum_sq == DBL_MAX);
    /* The largest reward the config allows is fine on a fresh arm. */
    assert_int_equal(mab_reward(e, "big", "q", 1e150, &err), MAB_OK);
    for (int i = 0; i < 200; i++)
        assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    close_ok(e);
    assert_true(on_disk("a", "rewards") == 200.0);
    e = open_ok();
    assert_int_equal(stats_of(e, "a").rewards, 200);
    assert_int_equal(mab_stats(e, "big", st, 2, &n, &err), MAB_OK);
    assert_int_equal(st[0].rewards, 1);
    assert_int_equal(st[1].rewards, 1);
    assert_true(st[1].reward_sum_sq == 1e150 * 1e150);
    assert_int_equal(mab_dropped_deltas(e, NULL), 0);
    close_ok(e);
}

/* Issue 18: reward skips the finite-sums check only for ranges where no
   reward can make a finite arm's sums overflow (min 0, 1 <= max <= 2^450:
   engine.c, sums_cannot_overflow). Every other range keeps it. Here an arm
   already holds a sum of 1e308, written under the default range [0, 1]
   (where it is finite and fits): reopened with [0, 0.5] its normalised sum
   (2e308) is not finite, with [-1, 1] its normalised sum of squares is not
   (2e308 / 4 after adding 2e308), so a reward there is refused and nothing
   recorded; [0, 1] and [0, 2^450] take it, and the sums stay finite. */
static void test_reward_sums_check_by_range(void **state)
{
    (void)state;
#define RANGE_CONFIG \
        "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n" \
        " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"},\n" \
        " \"experiments\": {\"exp\": {\"policy\": {\"plugin\": \"ucb1\"}, \"reward\": %s,\n" \
        "           \"arms\": {\"a\": 1, \"b\": 2}}}}\n"
    assert_int_equal(test_write_file(config, RANGE_CONFIG, MAB_PLUGIN_DIR,
                                     "{\"min\": 0, \"max\": 1}"), 0);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_record held = {"exp", "a", 2, 2, 1e308, 1.0};
    assert_int_equal(mab_import(e, &held, 1, 0, &err), MAB_OK);
    close_ok(e);
    static const struct {
        const char *range;
        double reward;
        int refused;
    } cases[] = {
        {"{\"min\": 0, \"max\": 0.5}", 0.5, 1},
        {"{\"min\": -1, \"max\": 1}", 1.0, 1},
        {"{\"min\": 0, \"max\": 1}", 1.0, 0},
        {"{\"min\": 0, \"max\": 2.9073548971824276e135}", 2.9073548971824276e135, 0}, /* 2^450 */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        assert_int_equal(test_write_file(config, RANGE_CONFIG, MAB_PLUGIN_DIR, cases[k].range),
                         0);
        e = open_ok();
        mab_arm_stats before = stats_of(e, "a");
        err.message[0] = '\0';
        int rc = mab_reward(e, "exp", "a", cases[k].reward, &err);
        mab_arm_stats after = stats_of(e, "a");
        if (cases[k].refused) {
            if (rc != MAB_ERANGE || !strstr(err.message, "would make a sum of the arm's rewards"))
                fail_msg("range %s: rc %d, message: %s", cases[k].range, rc, err.message);
            assert_int_equal(after.rewards, before.rewards); /* nothing recorded */
            assert_true(after.reward_sum == before.reward_sum);
        } else {
            if (rc != MAB_OK)
                fail_msg("range %s: rc %d, message: %s", cases[k].range, rc, err.message);
            assert_int_equal(after.rewards, before.rewards + 1);
            assert_true(isfinite(after.reward_sum) && isfinite(after.reward_sum_sq));
            /* undo it, so that the next range finds the same arm */
            mab_record again = {"exp", "a", 2, 2, 1e308, 1.0};
            assert_int_equal(mab_import(e, &again, 1, 1, &err), MAB_OK);
        }
        close_ok(e);
    }
}

/* Issue 18: a store that loads a sum that is not finite voids the argument
   for skipping the check (sums_cannot_overflow assumes finite held sums):
   a reward on such an arm is refused, even in the default range. */
static void test_reward_checked_after_infinite_load(void **state)
{
    (void)state;
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n"
                        " \"storage\": {\"plugin\": \"%s/storage_memory.so\", "
                        "\"load_infinite\": true},\n"
                        " \"experiments\": {\n"
                        "  \"exp\": {\"policy\": {\"plugin\": \"ucb1\"}, \"arms\": {\"a\": 1, \"b\": 2}}}}\n",
                        MAB_PLUGIN_DIR, MAB_FIXTURE_DIR),
        0);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_ERANGE);
    if (!strstr(err.message, "would make a sum of the arm's rewards"))
        fail_msg("unexpected message: %s", err.message);
    assert_int_equal(stats_of(e, "a").rewards, 0);
    mab_close(e, NULL);
}

/* A config over the fixture memory storage with refuse_arm or fail_apply;
   experiments "exp" (arms a, bad, c) and "other" (x, y). */
static void write_memory_config(const char *storage_extra)
{
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n"
                        " \"storage\": {\"plugin\": \"%s/storage_memory.so\", "
                        "\"sync\": {\"interval_ms\": 86400000}%s},\n"
                        " \"experiments\": {\n"
                        "  \"exp\": {\"policy\": {\"plugin\": \"ucb1\"}, \"arms\": {\"a\": 1, \"bad\": 2, \"c\": 3}},\n"
                        "  \"other\": {\"policy\": {\"plugin\": \"ucb1\"}, \"arms\": {\"x\": 1, \"y\": 2}}}}\n",
                        MAB_PLUGIN_DIR, MAB_FIXTURE_DIR, storage_extra),
        0);
}

static const mab_record *record_of(const struct collected *c, const char *experiment,
                                   const char *arm)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->records[i].experiment, experiment) == 0 &&
            strcmp(c->records[i].arm, arm) == 0)
            return &c->records[i];
    return NULL;
}

/* A batch storage refuses as invalid is split: the delta at fault is dropped
   and counted, with its reason kept; the rest of the batch is written, and
   later writes are not blocked. */
static void test_poisoned_batch_is_split(void **state)
{
    (void)state;
    write_memory_config(", \"refuse_arm\": \"bad\"");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mab_choose(e, "other", &c, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "bad", 0.5, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "c", 0.25, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "other", "x", 1.0, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "other", "y", 0.75, &err), MAB_OK);
    assert_int_equal(mab_dropped_deltas(e, NULL), 0);
    int rc = mab_flush(e, &err);
    if (rc)
        print_error("mab_flush: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);

    mab_error last = {0, ""};
    assert_int_equal(mab_dropped_deltas(e, &last), 1);
    assert_int_equal(last.code, MAB_EINVAL);
    if (!strstr(last.message, "experiment \"exp\", arm \"bad\" (0 pulls, 1 rewards") ||
        !strstr(last.message, "dropped: fixture refuses arm bad"))
        fail_msg("unexpected drop message: %s", last.message);
    assert_true(mab_storage_errors(e) >= 1);
    /* The dropped reward leaves the in-memory totals as well. */
    assert_int_equal(stats_of(e, "bad").rewards, 0);
    assert_true(stats_of(e, "bad").reward_sum == 0.0);

    struct collected out = {.n = 0};
    assert_int_equal(mab_export(e, collect, &out, &err), MAB_OK);
    assert_int_equal(out.n, 4);
    assert_null(record_of(&out, "exp", "bad"));
    assert_true(record_of(&out, "exp", "a")->reward_sum == 1.0);
    assert_true(record_of(&out, "exp", "c")->reward_sum == 0.25);
    assert_int_equal(record_of(&out, "other", "x")->rewards, 1);
    assert_true(record_of(&out, "other", "y")->reward_sum == 0.75);
    assert_int_equal(record_of(&out, "other", "x")->pulls + record_of(&out, "other", "y")->pulls,
                     2);

    /* Later writes go through; the refused arm is refused again, alone. */
    assert_int_equal(mab_reward(e, "other", "x", 1.0, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "bad", 1.0, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 0.5, &err), MAB_OK);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    assert_int_equal(mab_dropped_deltas(e, NULL), 2);
    out.n = 0;
    assert_int_equal(mab_export(e, collect, &out, &err), MAB_OK);
    assert_int_equal(out.n, 4);
    assert_int_equal(record_of(&out, "other", "x")->rewards, 2);
    assert_true(record_of(&out, "exp", "a")->reward_sum == 1.5);
    close_ok(e);
}

/* With sync "always" a reward whose increment storage refused and the queue
   dropped is not acknowledged; the others are. */
static void test_dropped_reward_not_acknowledged(void **state)
{
    (void)state;
    write_memory_config(", \"refuse_arm\": \"bad\"");
    char *text = test_read_file(config);
    assert_non_null(text);
    char *sync = strstr(text, "{\"interval_ms\": 86400000}");
    assert_non_null(sync);
    assert_int_equal(test_write_file(config, "%.*s\"always\"%s", (int)(sync - text), text,
                                     sync + strlen("{\"interval_ms\": 86400000}")),
                     0);
    free(text);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    err.message[0] = '\0';
    assert_int_equal(mab_reward(e, "exp", "bad", 1.0, &err), MAB_ESTORAGE);
    if (!strstr(err.message, "experiments.exp: the reward for arm \"bad\" was not written") ||
        !strstr(err.message, "fixture refuses arm bad"))
        fail_msg("unexpected message: %s", err.message);
    assert_int_equal(mab_reward(e, "other", "x", 1.0, &err), MAB_OK);
    assert_int_equal(mab_dropped_deltas(e, NULL), 1);
    struct collected out = {.n = 0};
    assert_int_equal(mab_export(e, collect, &out, &err), MAB_OK);
    assert_int_equal(out.n, 2);
    assert_int_equal(record_of(&out, "exp", "a")->rewards, 1);
    assert_int_equal(record_of(&out, "other", "x")->rewards, 1);
    close_ok(e);
}

/* A batch refused for another reason (the store is unavailable) is kept
   whole and retried: nothing is dropped. */
static void test_unavailable_store_drops_nothing(void **state)
{
    (void)state;
    write_memory_config(", \"fail_apply\": true");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "other", "y", 0.5, &err), MAB_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
        assert_non_null(strstr(err.message, "fixture apply failure"));
    }
    assert_int_equal(mab_dropped_deltas(e, &err), 0);
    assert_true(mab_storage_errors(e) >= 3);
    assert_int_equal(stats_of(e, "a").rewards, 1);
    assert_int_equal(mab_close(e, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, "2 rewards were not written"));
}

/* An engine is refused in a child of fork(); the parent is unaffected. */
static void test_engine_refused_after_fork(void **state)
{
    (void)state;
    write_config("{\"a\": 1, \"b\": 2}", ", \"sync\": {\"interval_ms\": 10}", "");
    mab_engine *e = open_ok();
    mab_error err;
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        mab_error cerr;
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        int ok = mab_choose(e, "exp", &c, &cerr) == MAB_EINVAL &&
                 strstr(cerr.message, "opened before fork()") != NULL &&
                 mab_reward(e, "exp", "a", 1.0, &cerr) == MAB_EINVAL &&
                 mab_flush(e, &cerr) == MAB_EINVAL && mab_close(e, &cerr) == MAB_EINVAL;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    assert_int_equal(stats_of(e, "a").rewards, 2);
    close_ok(e);
    assert_true(on_disk("a", "rewards") == 2.0);
}

/* Every arm of the engine lives in one pool (core/engine.c,
   mab__arms_take), which grows while the config is parsed and again for
   each kind of ledger, and moves as it grows: every experiment's arms and
   its ledgers' must still be where rewards and choices are counted, under
   the right ids and values, and stored under them. 60 experiments of 2 to
   8 arms (the pool starts at 64 arms and doubles), a holdout on every
   fourth, a sample-ratio ledger on each (a policy that reports its
   probabilities, so that the ledger counts every choice it serves). */
#define POOL_EXPERIMENTS 60
static int pool_arms(int i)
{
    return 2 + i % 7;
}

static void pool_check(mab_engine *e, int chooses)
{
    mab_error err = {0, ""};
    for (int i = 0; i < POOL_EXPERIMENTS; i++) {
        char id[32], name[48];
        snprintf(id, sizeof id, "x%d", i);
        mab_arm_stats st[8] = {MAB_STRUCT_INIT(mab_arm_stats)}, held[8], srm[8];
        size_t n = 0, n_held = 0, n_srm = 0;
        assert_int_equal(mab_stats(e, id, st, 8, &n, &err), MAB_OK);
        assert_int_equal(n, pool_arms(i));
        held[0].struct_size = srm[0].struct_size = sizeof st[0];
        snprintf(name, sizeof name, "%s@holdout", id);
        int rc = mab_stats(e, name, held, 8, &n_held, &err);
        assert_int_equal(rc, i % 4 == 0 ? MAB_OK : MAB_ENOTFOUND);
        snprintf(name, sizeof name, "%s@srm", id);
        assert_int_equal(mab_stats(e, name, srm, 8, &n_srm, &err), MAB_OK);
        assert_int_equal(n_srm, n);
        uint64_t pulls = 0, held_pulls = 0, srm_pulls = 0;
        for (size_t j = 0; j < n; j++) {
            char arm[48], value[32];
            snprintf(arm, sizeof arm, "x%d_%zu", i, j);
            snprintf(value, sizeof value, "%zu", (size_t)i * 100 + j);
            assert_string_equal(st[j].arm_id, arm);
            assert_string_equal(st[j].value_json, value);
            assert_string_equal(srm[j].arm_id, arm);
            uint64_t rewards = st[j].rewards;
            double sum = st[j].reward_sum;
            if (n_held) {
                assert_string_equal(held[j].arm_id, arm);
                rewards += held[j].rewards;
                sum += held[j].reward_sum;
                held_pulls += held[j].pulls;
            }
            assert_int_equal(rewards, 1); /* one reward of value j, in one of the two */
            assert_true(sum == (double)j);
            pulls += st[j].pulls;
            srm_pulls += srm[j].pulls;
        }
        /* Every choice counted once: in the experiment (and then in its
           sample-ratio ledger) or in its holdout. */
        assert_int_equal(pulls + held_pulls, chooses);
        assert_int_equal(srm_pulls, pulls);
    }
}

static void test_arms_of_many_experiments_and_ledgers(void **state)
{
    (void)state;
    char *text = malloc(64 * 1024);
    assert_non_null(text);
    size_t at = (size_t)snprintf(text, 64 * 1024,
                                 "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n"
                                 " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"},\n"
                                 " \"experiments\": {",
                                 MAB_PLUGIN_DIR);
    for (int i = 0; i < POOL_EXPERIMENTS; i++) {
        at += (size_t)snprintf(text + at, 64 * 1024 - at,
                               "%s\n  \"x%d\": {\"policy\": {\"plugin\": \"%s/policy_reporting.so\"}, "
                               "\"reward\": {\"min\": 0, \"max\": 10}%s, \"arms\": {",
                               i ? "," : "", i, MAB_FIXTURE_DIR, i % 4 == 0 ? ", \"holdout\": 0.5" : "");
        for (int j = 0; j < pool_arms(i); j++)
            at += (size_t)snprintf(text + at, 64 * 1024 - at, "%s\"x%d_%d\": %d", j ? ", " : "",
                                   i, j, i * 100 + j);
        at += (size_t)snprintf(text + at, 64 * 1024 - at, "}}");
    }
    snprintf(text + at, 64 * 1024 - at, "}}\n");
    assert_int_equal(test_write_file(config, "%s", text), 0);
    free(text);

    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    for (int i = 0; i < POOL_EXPERIMENTS; i++) {
        char id[32], arm[48];
        snprintf(id, sizeof id, "x%d", i);
        for (int j = 0; j < pool_arms(i); j++) {
            snprintf(arm, sizeof arm, "x%d_%d", i, j);
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            assert_int_equal(mab_arm_lookup(e, id, arm, &c, &err), MAB_OK);
            assert_int_equal(c.arm_index, j);
            assert_int_equal(mab_reward(e, id, arm, (double)j, &err), MAB_OK);
        }
        for (int k = 0; k < 3; k++) {
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            assert_int_equal(mab_choose(e, id, &c, &err), MAB_OK);
        }
    }
    pool_check(e, 3);
    close_ok(e);
    /* Stored under the same experiments and arms: a reopen reads them back. */
    e = open_ok();
    pool_check(e, 3);
    close_ok(e);
}

/* A ledger carries none of its experiment's rules, ledgers or policy (it
   has its own record and the engine's one ledger part, engine.h), while its
   arms are its experiment's (the same ids, values and order), and a report
   on the sample-ratio ledger names its kind and judges by the experiment's
   winner rule. Fails when a ledger shares its experiment's part. */
static void test_ledgers_carry_no_rules(void **state)
{
    (void)state;
    write_config("{\"a\": 1, \"b\": \"two\", \"c\": [3]}", "",
                 ", \"holdout\": {\"share\": 0.25, \"arm\": \"b\"}, \"attribution_window\": 60,"
                 " \"burn_in\": 5, \"floor\": 0.1, \"winner\": {\"p_best\": 0.9}");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_rules_info info = MAB_STRUCT_INIT(mab_rules_info);
    assert_int_equal(mab_rules(e, "exp", &info, &err), MAB_OK);
    assert_true(info.holdout_share == 0.25);
    assert_string_equal(info.holdout_arm, "b");
    assert_int_equal(info.attribution_window, 60);
    assert_int_equal(info.burn_in, 5);
    const char *ledgers[] = {"exp@holdout", "exp@late", "exp@srm"};
    for (int k = 0; k < 3; k++) {
        mab_rules_info l = MAB_STRUCT_INIT(mab_rules_info);
        assert_int_equal(mab_rules(e, ledgers[k], &l, &err), MAB_OK);
        assert_string_equal(l.state, "running");
        assert_null(l.serve);
        assert_true(l.holdout_share == 0.0 && l.floor == 0.0);
        assert_null(l.holdout_arm);
        assert_int_equal(l.attribution_window, 0);
        assert_int_equal(l.burn_in, 0);
        mab_arm_stats st[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
        size_t n = 0;
        assert_int_equal(mab_stats(e, ledgers[k], st, 3, &n, &err), MAB_OK);
        assert_int_equal(n, 3);
        assert_string_equal(st[0].arm_id, "a");
        assert_string_equal(st[1].value_json, "\"two\"");
        assert_string_equal(st[2].value_json, "[3]");
    }
    mab_report r = MAB_STRUCT_INIT(mab_report);
    assert_int_equal(mab_report_get(e, "exp@srm", &r, &err), MAB_OK);
    assert_string_equal(r.policy, "srm");
    assert_true(r.winner_p_best == 0.9);
    mab_report_free(&r);
    mab_report x = MAB_STRUCT_INIT(mab_report);
    assert_int_equal(mab_report_get(e, "exp", &x, &err), MAB_OK);
    assert_string_equal(x.policy, "ucb1");
    mab_report_free(&x);
    close_ok(e);
}

static int setup(void **state)
{
    (void)state;
    fixture_dir_make("engine");
    snprintf(state_file, sizeof state_file, "%s/state.json", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

static int each(void **state)
{
    (void)state;
    unlink(state_file);
    return 0;
}

static int open_flags(unsigned flags, mab_engine **e, mab_error *err)
{
    mab_options opts = {sizeof opts, flags, 0};
    return mab_open_ex(config, &opts, e, err);
}

/* MAB_OPEN_CHECK validates the store without opening it: nothing created,
   writes refused, a corrupt store and a bad parameter still found. */
static void test_open_check_creates_nothing(void **state)
{
    (void)state;
    char lock_file[320];
    snprintf(lock_file, sizeof lock_file, "%s.lock", state_file);
    unlink(lock_file);
    write_config("{\"a\": 1, \"b\": 2}", "", "");
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_flags(MAB_OPEN_CHECK, &e, &err), MAB_OK);
    assert_int_equal(mab_storage_checked(e), 1);
    assert_string_equal(mab_storage_name(e), "json_file");
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "read-only"));
    assert_int_equal(mab_reward(e, "exp", "a", 1, &err), MAB_EINVAL);
    assert_int_equal(mab_reset(e, "exp", &err), MAB_EINVAL);
    close_ok(e);
    assert_int_equal(access(state_file, F_OK), -1);
    assert_int_equal(access(lock_file, F_OK), -1);

    assert_int_equal(test_write_file(state_file, "{\"format\": \"other\"}"), 0);
    assert_int_equal(open_flags(MAB_OPEN_CHECK, &e, &err), MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "state.json"));
    unlink(state_file);

    write_config("{\"a\": 1, \"b\": 2}", ", \"pth\": 1", "");
    assert_int_equal(open_flags(MAB_OPEN_CHECK, &e, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "storage: unknown key \"pth\""));
    assert_int_equal(access(lock_file, F_OK), -1);
    assert_int_equal(open_flags(MAB_OPEN_CHECK | MAB_OPEN_NO_STORAGE, &e, &err), MAB_EINVAL);
}

/* MAB_OPEN_READ_ONLY reads a json_file store that a writer holds. */
static void test_read_only_beside_a_writer(void **state)
{
    (void)state;
    write_config("{\"a\": 1, \"b\": 2}", ", \"sync\": \"always\"", "");
    mab_engine *w = open_ok();
    mab_error err = {0, ""};
    assert_int_equal(mab_reward(w, "exp", "a", 1, &err), MAB_OK);
    mab_engine *busy = NULL;
    assert_int_equal(mab_open(config, &busy, &err), MAB_EBUSY);
    mab_engine *r = NULL;
    assert_int_equal(open_flags(MAB_OPEN_READ_ONLY, &r, &err), MAB_OK);
    assert_int_equal(stats_of(r, "a").rewards, 1);
    assert_int_equal(mab_reward(r, "exp", "a", 1, &err), MAB_EINVAL);
    assert_int_equal(mab_import(r, NULL, 0, 0, &err), MAB_EINVAL);
    close_ok(r);
    assert_int_equal(mab_reward(w, "exp", "b", 1, &err), MAB_OK);
    close_ok(w);
    assert_int_equal(on_disk("a", "rewards"), 1);
    assert_int_equal(on_disk("b", "rewards"), 1);
}

/* mab_check: the engine's checks plus the adapter's key checks. */
static void test_mab_check_reads_the_key(void **state)
{
    (void)state;
    char key[320];
    snprintf(key, sizeof key, "%s/check.key", dir);
    unlink(key);
    assert_int_equal(test_write_file(config,
                                     "{\"plugin_path\": [\"%s\"], \"secret_file\": \"check.key\",\n"
                                     " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"},\n"
                                     " \"experiments\": {\"exp\": {\"policy\": {\"plugin\": \"ucb1\"},"
                                     " \"arms\": {\"a\": 1, \"b\": 2}}}}\n",
                                     MAB_PLUGIN_DIR),
                     0);
    mab_error err = {0, ""};
    assert_int_equal(mab_check(config, NULL, &err), MAB_EIO);
    assert_non_null(strstr(err.message, "check.key: cannot open secret_file"));
    assert_int_equal(mab_adapter_keygen(key, &err), MAB_OK);
    assert_int_equal(mab_check(config, NULL, &err), MAB_OK);
    assert_int_equal(chmod(key, 0644), 0);
    assert_int_equal(mab_check(config, NULL, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "readable or writable by others"));
    assert_int_equal(access(state_file, F_OK), -1);
    unlink(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_choose_counts_pulls_and_lookup_does_not, each),
        cmocka_unit_test_setup(test_bad_rewards_change_nothing, each),
        cmocka_unit_test_setup(test_persistence_and_reconciliation, each),
        cmocka_unit_test_setup(test_sync_modes, each),
        cmocka_unit_test_setup(test_same_seed_same_choices, each),
        cmocka_unit_test_setup(test_many_arms_by_id, each),
        cmocka_unit_test_setup(test_export_import, each),
        cmocka_unit_test_setup(test_engine_refused_after_fork, each),
        cmocka_unit_test_setup(test_unstorable_reward_is_refused, each),
        cmocka_unit_test_setup(test_reward_sums_check_by_range, each),
        cmocka_unit_test_setup(test_reward_checked_after_infinite_load, each),
        cmocka_unit_test_setup(test_poisoned_batch_is_split, each),
        cmocka_unit_test_setup(test_dropped_reward_not_acknowledged, each),
        cmocka_unit_test_setup(test_unavailable_store_drops_nothing, each),
        cmocka_unit_test_setup(test_open_check_creates_nothing, each),
        cmocka_unit_test_setup(test_read_only_beside_a_writer, each),
        cmocka_unit_test_setup(test_mab_check_reads_the_key, each),
        cmocka_unit_test_setup(test_arms_of_many_experiments_and_ledgers, each),
        cmocka_unit_test_setup(test_ledgers_carry_no_rules, each),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
