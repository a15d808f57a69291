/*
 * test_admin.c - mab_set_state (core/admin.c): pause, resume, conclude and
 * clear at run time, stored as the record "EXP@admin" so that a restart (and
 * every other engine over the store) keeps it; validation that changes
 * nothing; a failing store that changes nothing, in memory or in storage;
 * the precedence over the config's "state"; the decoding of the stored
 * record (the latest sequence wins, a torn record is ignored).
 *
 * Over the memory fixture with "shared" (the store outlives close, so a
 * reopen is a restart) and over json_file (a record written by hand).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "fixture.h"

static char store[300];
static int round_no;

static int each(void **state)
{
    (void)state;
    fixture_dir_make("admin");
    snprintf(store, sizeof store, "%s/state.json", dir);
    round_no++;
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

#define UNIFORM "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_uniform.so\"}"

/* The memory store named after this test's round, optionally failing. */
static void write_config(int fail_apply, const char *rules)
{
    assert_int_equal(
        test_write_file(config,
                        "{\"seed\": 5, \"plugin_path\": [\"%s\"],\n"
                        " \"storage\": {\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\", "
                        "\"shared\": \"admin%d\"%s},\n"
                        " \"experiments\": {\"exp\": {\"policy\": " UNIFORM ",\n"
                        "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}%s%s}}}\n",
                        MAB_PLUGIN_DIR, round_no, fail_apply ? ", \"fail_apply\": true" : "",
                        rules[0] ? ", " : "", rules),
        0);
}

static mab_engine *open_flags(unsigned flags)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    mab_options opts = {sizeof opts, flags, 0};
    int rc = mab_open_ex(config, &opts, &e, &err);
    if (rc)
        print_error("mab_open: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return e;
}

static mab_rules_info rules_of(mab_engine *e)
{
    mab_rules_info info = MAB_STRUCT_INIT(mab_rules_info);
    assert_int_equal(mab_rules(e, "exp", &info, NULL), MAB_OK);
    return info;
}

static uint64_t total_pulls(mab_engine *e)
{
    mab_arm_stats st[3];
    st[0].struct_size = sizeof st[0];
    size_t n = 0;
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, NULL), MAB_OK);
    return st[0].pulls + st[1].pulls + st[2].pulls;
}

/* Choose n times; every choice must be `arm` (NULL: any) with `flags`. */
static void choose_n(mab_engine *e, int n, const char *arm, unsigned flags)
{
    for (int i = 0; i < n; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        mab_error err = {0, ""};
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
        if (arm)
            assert_string_equal(c.arm_id, arm);
        assert_int_equal(c.flags, flags);
    }
}

static void set_ok(mab_engine *e, const char *state, const char *arm)
{
    mab_error err = {0, ""};
    int rc = mab_set_state(e, "exp", state, arm, &err);
    if (rc)
        print_error("mab_set_state: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
}

static void test_pause_conclude_resume_survive_a_restart(void **state)
{
    (void)state;
    write_config(0, "");
    mab_engine *e = open_ok();
    mab_rules_info info = rules_of(e);
    assert_string_equal(info.state_source, "config");
    assert_null(info.admin_action);
    assert_int_equal(info.admin_sequence, 0);

    set_ok(e, "paused", "b");
    info = rules_of(e);
    assert_string_equal(info.state, "paused");
    assert_string_equal(info.serve, "b");
    assert_string_equal(info.state_source, "admin");
    assert_string_equal(info.admin_action, "pause");
    assert_int_equal(info.admin_sequence, 1);
    assert_true(info.admin_time_ns > 0);
    choose_n(e, 50, "b", MAB_CHOICE_NOT_LEARNING);
    assert_int_equal(total_pulls(e), 0); /* paused: nothing counted */
    close_ok(e);

    e = open_ok(); /* a restart: the store says paused */
    info = rules_of(e);
    assert_string_equal(info.state, "paused");
    assert_string_equal(info.serve, "b");
    assert_int_equal(info.admin_sequence, 1);
    choose_n(e, 20, "b", MAB_CHOICE_NOT_LEARNING);
    set_ok(e, "concluded", "c");
    choose_n(e, 20, "c", MAB_CHOICE_CONCLUDED);
    assert_int_equal(total_pulls(e), 20); /* concluded counts as usual */
    close_ok(e);

    e = open_ok();
    info = rules_of(e);
    assert_string_equal(info.state, "concluded");
    assert_string_equal(info.serve, "c");
    assert_string_equal(info.admin_action, "conclude");
    assert_int_equal(info.admin_sequence, 2);
    set_ok(e, "running", NULL);
    info = rules_of(e);
    assert_string_equal(info.state, "running");
    assert_string_equal(info.admin_action, "resume");
    uint64_t before = total_pulls(e);
    choose_n(e, 300, NULL, 0); /* the policy chooses and learns again */
    assert_int_equal(total_pulls(e), before + 300);
    close_ok(e);

    e = open_ok();
    assert_string_equal(rules_of(e).state, "running");
    assert_int_equal(rules_of(e).admin_sequence, 3);
    close_ok(e);
}

static void test_paused_on_the_leader(void **state)
{
    (void)state;
    write_config(0, "");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    for (int i = 0; i < 60; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
        if (c.arm_index == 2)
            assert_int_equal(mab_reward(e, "exp", "c", 1.0, &err), MAB_OK);
    }
    set_ok(e, "paused", NULL);
    assert_null(rules_of(e).serve);
    choose_n(e, 20, "c", MAB_CHOICE_NOT_LEARNING);
    close_ok(e);
}

/* The admin state goes over the config's; "config" returns to it. */
static void test_precedence_over_the_config_and_clear(void **state)
{
    (void)state;
    write_config(0, "\"state\": \"paused\", \"serve\": \"a\"");
    mab_engine *e = open_ok();
    choose_n(e, 5, "a", MAB_CHOICE_NOT_LEARNING);
    set_ok(e, "running", NULL);
    choose_n(e, 100, NULL, 0);
    assert_int_equal(total_pulls(e), 100);
    close_ok(e);

    e = open_ok(); /* the config still says paused; the store says running */
    assert_string_equal(rules_of(e).state, "running");
    set_ok(e, "config", NULL);
    mab_rules_info info = rules_of(e);
    assert_string_equal(info.state, "paused");
    assert_string_equal(info.serve, "a");
    assert_string_equal(info.state_source, "config");
    assert_string_equal(info.admin_action, "clear");
    assert_int_equal(info.admin_sequence, 2);
    choose_n(e, 5, "a", MAB_CHOICE_NOT_LEARNING);
    close_ok(e);

    e = open_ok();
    assert_string_equal(rules_of(e).state_source, "config");
    assert_string_equal(rules_of(e).state, "paused");
    close_ok(e);
}

static void expect_refused(mab_engine *e, const char *experiment, const char *state,
                           const char *arm, int code, const char *needle)
{
    mab_error err = {0, ""};
    assert_int_equal(mab_set_state(e, experiment, state, arm, &err), code);
    if (!strstr(err.message, needle))
        fail_msg("error \"%s\" does not name \"%s\"", err.message, needle);
}

static void test_bad_requests_change_nothing(void **state)
{
    (void)state;
    write_config(0, "");
    mab_engine *e = open_ok();
    set_ok(e, "paused", "a");
    expect_refused(e, "exp", "concluded", NULL, MAB_EINVAL, "winning arm");
    expect_refused(e, "exp", "concluded", "zzz", MAB_EINVAL, "\"zzz\"");
    expect_refused(e, "exp", "paused", "zzz", MAB_EINVAL, "\"zzz\"");
    expect_refused(e, "exp", "running", "b", MAB_EINVAL, "\"b\"");
    expect_refused(e, "exp", "stopped", NULL, MAB_EINVAL, "\"stopped\"");
    expect_refused(e, "exp", NULL, NULL, MAB_EINVAL, "(null)");
    expect_refused(e, "nope", "paused", NULL, MAB_ENOTFOUND, "\"nope\"");
    mab_rules_info info = rules_of(e);
    assert_string_equal(info.state, "paused");
    assert_string_equal(info.serve, "a");
    assert_int_equal(info.admin_sequence, 1);
    close_ok(e);

    /* Nothing reached the store either. */
    e = open_ok();
    assert_string_equal(rules_of(e).serve, "a");
    assert_int_equal(rules_of(e).admin_sequence, 1);
    close_ok(e);

    /* A read-only engine writes nothing. */
    e = open_flags(MAB_OPEN_READ_ONLY);
    assert_string_equal(rules_of(e).serve, "a"); /* but reads the stored state */
    expect_refused(e, "exp", "running", NULL, MAB_EINVAL, "read-only");
    close_ok(e);
}

static void test_a_failing_store_changes_nothing(void **state)
{
    (void)state;
    write_config(0, "");
    mab_engine *e = open_ok();
    set_ok(e, "paused", "a");
    close_ok(e);

    write_config(1, ""); /* the same store, every write failing */
    e = open_ok();
    mab_error err = {0, ""};
    assert_int_equal(mab_set_state(e, "exp", "concluded", "c", &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, "fixture apply failure"));
    assert_non_null(strstr(err.message, "not changed"));
    mab_rules_info info = rules_of(e);
    assert_string_equal(info.state, "paused"); /* this engine: unchanged */
    assert_string_equal(info.serve, "a");
    assert_int_equal(info.admin_sequence, 1);
    choose_n(e, 10, "a", MAB_CHOICE_NOT_LEARNING);
    assert_int_equal(mab_set_state(e, "exp", "running", NULL, &err), MAB_ESTORAGE);
    choose_n(e, 10, "a", MAB_CHOICE_NOT_LEARNING);
    close_ok(e);

    write_config(0, "");
    e = open_ok(); /* the store: unchanged */
    info = rules_of(e);
    assert_string_equal(info.state, "paused");
    assert_string_equal(info.serve, "a");
    assert_int_equal(info.admin_sequence, 1);
    close_ok(e);
}

/* A struct from before the admin fields is still served (its state only). */
static void test_old_rules_struct(void **state)
{
    (void)state;
    write_config(0, "");
    mab_engine *e = open_ok();
    set_ok(e, "paused", "b");
    struct {
        mab_rules_info info;
        char guard[64];
    } old;
    memset(&old, 0x5a, sizeof old);
    old.info.struct_size = MAB_RULES_INFO_SIZE_0_2;
    assert_int_equal(mab_rules(e, "exp", &old.info, NULL), MAB_OK);
    assert_string_equal(old.info.serve, "b");
    const unsigned char *tail = (const unsigned char *)&old.info + MAB_RULES_INFO_SIZE_0_2;
    for (size_t i = 0; i < sizeof old - MAB_RULES_INFO_SIZE_0_2; i++)
        assert_int_equal(tail[i], 0x5a);
    old.info.struct_size = MAB_RULES_INFO_SIZE_0_2 - 1;
    assert_int_equal(mab_rules(e, "exp", &old.info, NULL), MAB_EINVAL);
    close_ok(e);
}

/* json_file with records written by hand: the highest sequence wins; a
   record whose check fails (two actions added into one) is ignored. */
static void write_json(const char *records)
{
    assert_int_equal(test_write_file(config,
                                     "{\"plugin_path\": [\"%s\"],\n"
                                     " \"storage\": {\"plugin\": \"json_file\", \"path\": \"%s\"},\n"
                                     " \"experiments\": {\"exp\": {\"policy\": " UNIFORM ",\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                                     MAB_PLUGIN_DIR, store),
                     0);
    if (records)
        assert_int_equal(test_write_file(store, "%s", records), 0);
}

static void test_stored_record_decoding(void **state)
{
    (void)state;
    write_json(NULL);
    mab_engine *e = open_ok();
    set_ok(e, "concluded", "b");
    close_ok(e);
    char *text = test_read_file(store);
    assert_non_null(text);
    assert_non_null(strstr(text, "exp@admin"));
    free(text);

    /* Two records, as a store whose replace is not atomic could leave:
       sequence 7 (paused on c) beats sequence 5 (concluded on b). */
    write_json("{\"format\": \"mab-json-storage\", \"version\": 1, \"experiments\": {\"exp@admin\": {"
               "\"b\": {\"pulls\": 5, \"rewards\": 2, \"reward_sum\": 1000, "
               "\"reward_sum_sq\": 25},"
               "\"c\": {\"pulls\": 7, \"rewards\": 1, \"reward_sum\": 2000, "
               "\"reward_sum_sq\": 49}}}}\n");
    e = open_ok();
    mab_rules_info info = rules_of(e);
    assert_string_equal(info.state, "paused");
    assert_string_equal(info.serve, "c");
    assert_int_equal(info.admin_sequence, 7);
    assert_int_equal(info.admin_time_ns, 2000000000LL);
    set_ok(e, "running", NULL); /* the next action numbers after the highest */
    assert_int_equal(rules_of(e).admin_sequence, 8);
    close_ok(e);

    /* Sequences 3 and 4 added into one record: 7 with 25 != 49; ignored. */
    write_json("{\"format\": \"mab-json-storage\", \"version\": 1, \"experiments\": {\"exp@admin\": {"
               "\"b\": {\"pulls\": 7, \"rewards\": 3, \"reward_sum\": 3000, "
               "\"reward_sum_sq\": 25}}}}\n");
    e = open_ok();
    info = rules_of(e);
    assert_string_equal(info.state_source, "config");
    assert_int_equal(info.admin_sequence, 0);
    close_ok(e);
}

/* A config of MANY_EXPERIMENTS (at least MAB__SCAN_FROM, core/engine.h)
   experiments e0.. over json_file: its full read at open is one scan() of
   the store, which must find the admin records as the load() of each one
   did, in the format main's code wrote them (a store written before). */
#define MANY_EXPERIMENTS 300

static void write_many_json(const char *records)
{
    size_t cap = 200 * MANY_EXPERIMENTS + 1024, n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    n += (size_t)snprintf(text + n, cap - n,
                          "{\"plugin_path\": [\"%s\"],\n"
                          " \"storage\": {\"plugin\": \"json_file\", \"path\": \"%s\"},\n"
                          " \"experiments\": {",
                          MAB_PLUGIN_DIR, store);
    for (int i = 0; i < MANY_EXPERIMENTS; i++)
        n += (size_t)snprintf(text + n, cap - n,
                              "%s\"e%d\": {\"policy\": " UNIFORM
                              ", \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}",
                              i ? ",\n  " : "", i);
    snprintf(text + n, cap - n, "}}\n");
    assert_int_equal(test_write_file(config, "%s", text), 0);
    free(text);
    if (records)
        assert_int_equal(test_write_file(store, "%s", records), 0);
}

static mab_rules_info rules_of_id(mab_engine *e, const char *experiment)
{
    mab_rules_info info = MAB_STRUCT_INIT(mab_rules_info);
    assert_int_equal(mab_rules(e, experiment, &info, NULL), MAB_OK);
    return info;
}

static void test_many_experiments_read_in_one_pass(void **state)
{
    (void)state;
    /* e7 paused on c (sequence 7), e8 a torn record (ignored), e9 cleared,
       e5 counters; records of an experiment and an arm not in the config. */
    write_many_json(
        "{\"format\": \"mab-json-storage\", \"version\": 1, \"experiments\": {"
        "\"e7@admin\": {\"c\": {\"pulls\": 7, \"rewards\": 1, \"reward_sum\": 2000, "
        "\"reward_sum_sq\": 49}},"
        "\"e8@admin\": {\"b\": {\"pulls\": 7, \"rewards\": 3, \"reward_sum\": 3000, "
        "\"reward_sum_sq\": 25}},"
        "\"e9@admin\": {\"@none\": {\"pulls\": 2, \"rewards\": 3, \"reward_sum\": 4000, "
        "\"reward_sum_sq\": 4}},"
        "\"gone@admin\": {\"@none\": {\"pulls\": 1, \"rewards\": 1, \"reward_sum\": 1, "
        "\"reward_sum_sq\": 1}},"
        "\"e5\": {\"a\": {\"pulls\": 3, \"rewards\": 2, \"reward_sum\": 2, "
        "\"reward_sum_sq\": 2}, \"zz\": {\"pulls\": 9, \"rewards\": 9, \"reward_sum\": 9, "
        "\"reward_sum_sq\": 9}}}}\n");
    mab_engine *e = open_ok();
    mab_rules_info info = rules_of_id(e, "e7");
    assert_string_equal(info.state, "paused");
    assert_string_equal(info.serve, "c");
    assert_string_equal(info.state_source, "admin");
    assert_int_equal(info.admin_sequence, 7);
    assert_int_equal(info.admin_time_ns, 2000000000LL);
    info = rules_of_id(e, "e8");
    assert_string_equal(info.state_source, "config");
    assert_int_equal(info.admin_sequence, 0);
    info = rules_of_id(e, "e9");
    assert_string_equal(info.state_source, "config");
    assert_string_equal(info.admin_action, "clear");
    assert_int_equal(info.admin_sequence, 2);
    assert_string_equal(rules_of_id(e, "e6").state_source, "config");
    mab_arm_stats s[3] = {MAB_STRUCT_INIT(mab_arm_stats), MAB_STRUCT_INIT(mab_arm_stats),
                          MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, "e5", s, 3, &n, NULL), MAB_OK);
    assert_int_equal(n, 3);
    assert_int_equal(s[0].pulls, 3);
    assert_int_equal(s[0].rewards, 2);
    assert_int_equal(s[1].pulls, 0);
    /* An action taken now is seen at the next open, over the same scan. */
    mab_error err = {0, ""};
    assert_int_equal(mab_set_state(e, "e250", "concluded", "b", &err), MAB_OK);
    close_ok(e);
    e = open_ok();
    info = rules_of_id(e, "e250");
    assert_string_equal(info.state, "concluded");
    assert_string_equal(info.serve, "b");
    assert_string_equal(rules_of_id(e, "e7").state, "paused");
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pause_conclude_resume_survive_a_restart, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_paused_on_the_leader, each, cleanup),
        cmocka_unit_test_setup_teardown(test_precedence_over_the_config_and_clear, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_bad_requests_change_nothing, each, cleanup),
        cmocka_unit_test_setup_teardown(test_a_failing_store_changes_nothing, each, cleanup),
        cmocka_unit_test_setup_teardown(test_old_rules_struct, each, cleanup),
        cmocka_unit_test_setup_teardown(test_stored_record_decoding, each, cleanup),
        cmocka_unit_test_setup_teardown(test_many_experiments_read_in_one_pass, each, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
