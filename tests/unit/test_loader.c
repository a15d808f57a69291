/*
 * test_loader.c - the loader refuses broken plugins (real fixture .so files
 * in build/tests/fixtures) with errors naming the file and the reason, and
 * the engine keeps what a failing storage could not write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "mab/policy.h"
#include "mab/storage.h"
#include "support.h"

static char *dir;
static char config[300];

static void write_config(const char *policy, const char *storage)
{
    assert_int_equal(test_write_file(config,
                                     "{\"plugin_path\": [\"%s\"],\n"
                                     " \"storage\": %s,\n"
                                     " \"experiments\": {\"btn\": {\"policy\": %s,"
                                     " \"arms\": {\"red\": 1, \"blue\": 2}}}}\n",
                                     MAB_PLUGIN_DIR, storage, policy),
                     0);
}

#define MEMORY "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\"}"
#define UCB1 "{\"plugin\": \"ucb1\"}"
#define FIX(name) MAB_FIXTURE_DIR "/" name ".so"

static void expect_open_error(int code, const char *expected)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(config, &e, &err);
    char full[1024];
    snprintf(full, sizeof full, "%s: %s", config, expected);
    if (rc != code || strcmp(err.message, full) != 0)
        print_error("got %d \"%s\"\nexpected %d \"%s\"\n", rc, err.message, code, full);
    assert_int_equal(rc, code);
    assert_string_equal(err.message, full);
    assert_null(e);
}

static void test_policy_wrong_abi(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"" FIX("policy_wrong_abi") "\"}", MEMORY);
    char expected[600];
    snprintf(expected, sizeof expected,
             "experiments.btn.policy.plugin: %s: built for policy ABI %d.%d, but this libmab "
             "supports %d.x (up to %d.%d); rebuild the plugin against these headers",
             FIX("policy_wrong_abi"), MAB_POLICY_ABI_MAJOR + 1, MAB_POLICY_ABI_MINOR,
             MAB_POLICY_ABI_MAJOR, MAB_POLICY_ABI_MAJOR, MAB_POLICY_ABI_MINOR);
    expect_open_error(MAB_EPLUGIN, expected);
}

static void test_policy_missing_symbol(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"" FIX("policy_no_symbol") "\"}", MEMORY);
    expect_open_error(MAB_EPLUGIN, "experiments.btn.policy.plugin: " FIX("policy_no_symbol")
                                   ": missing symbol mab_policy_entry: not a mab policy plugin "
                                   "(or not exported)");
}

static void test_policy_small_struct(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"" FIX("policy_small_struct") "\"}", MEMORY);
    char expected[600];
    snprintf(expected, sizeof expected,
             "experiments.btn.policy.plugin: %s: policy descriptor is %zu bytes, smaller than "
             "the %zu bytes of policy ABI 1.0",
             FIX("policy_small_struct"), offsetof(mab_policy, choose),
             offsetof(mab_policy, choose) + sizeof(void *));
    expect_open_error(MAB_EPLUGIN, expected);
}

static void test_policy_null_callback(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"" FIX("policy_null_choose") "\"}", MEMORY);
    expect_open_error(MAB_EPLUGIN, "experiments.btn.policy.plugin: " FIX("policy_null_choose")
                                   ": policy descriptor leaves choose NULL");
}

static void test_policy_create_fails(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"" FIX("policy_create_fails") "\"}", MEMORY);
    expect_open_error(MAB_ECONFIG, "experiments.btn.policy: fixture refuses to start (refused by " FIX(
                                       "policy_create_fails") ")");
}

static void test_policy_not_a_shared_object(void **state)
{
    (void)state;
    char bogus[320];
    snprintf(bogus, sizeof bogus, "%s/bogus.so", dir);
    test_write_file(bogus, "not an ELF file\n");
    write_config("{\"plugin\": \"./bogus.so\"}", MEMORY);
    mab_engine *e = NULL;
    mab_error err;
    assert_int_equal(mab_open(config, &e, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, "experiments.btn.policy.plugin: "));
    assert_non_null(strstr(err.message, "/./bogus.so: cannot load policy plugin: "));
    if (!strstr(err.message, "invalid ELF header") && !strstr(err.message, "file too short"))
        fail_msg("no dlerror() reason in \"%s\"", err.message);
}

static void test_unknown_policy_key_after_create(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"" FIX("policy_uniform") "\", \"k_extra\": 3, \"k_exta\": 1}", MEMORY);
    expect_open_error(MAB_ECONFIG, "experiments.btn.policy: unknown key \"k_exta\"");
    /* The same plugin with only known keys opens. */
    write_config("{\"plugin\": \"" FIX("policy_uniform") "\", \"k_extra\": 3}", MEMORY);
    mab_engine *e = NULL;
    mab_error err;
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

static void test_policy_bad_index_is_refused_at_choose(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"" FIX("policy_bad_index") "\"}", MEMORY);
    mab_engine *e = NULL;
    mab_error err;
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "btn", &c, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, "chose arm 2 of only 2"));
    mab_arm_stats st[2] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n;
    assert_int_equal(mab_stats(e, "btn", st, 2, &n, &err), MAB_OK);
    assert_int_equal(st[0].pulls + st[1].pulls, 0); /* nothing counted */
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

/* A storage ABI 1.3 plugin must set claim; a 1.1 one (no claims) loads. */
static void test_storage_null_claim(void **state)
{
    (void)state;
    write_config(UCB1, "{\"plugin\": \"" FIX("storage_memory_null_claim") "\"}");
    mab_engine *e = NULL;
    mab_error err;
    assert_int_equal(mab_open(config, &e, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, "storage.plugin: " FIX("storage_memory_null_claim")
                                        ": storage descriptor leaves claim NULL"));
    assert_null(e);
    write_config(UCB1, "{\"plugin\": \"" FIX("storage_memory_v11") "\"}");
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    assert_int_equal(mab_storage_has_claims(e), 0);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

static void test_storage_wrong_abi(void **state)
{
    (void)state;
    write_config(UCB1, "{\"plugin\": \"" FIX("storage_wrong_abi") "\"}");
    mab_engine *e = NULL;
    mab_error err;
    assert_int_equal(mab_open(config, &e, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, "storage.plugin: " FIX("storage_wrong_abi")
                                        ": built for storage ABI "));
}

static void test_storage_open_fails(void **state)
{
    (void)state;
    write_config(UCB1, "{\"plugin\": \"" FIX("storage_create_fails") "\"}");
    expect_open_error(MAB_ESTORAGE, "storage: fixture storage refuses to open");
}

static void test_failed_writes_are_kept_and_reported(void **state)
{
    (void)state;
    write_config(UCB1, "{\"plugin\": \"" FIX("storage_memory") "\", \"fail_apply\": true}");
    mab_engine *e = NULL;
    mab_error err;
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (int i = 0; i < 5; i++)
        assert_int_equal(mab_choose(e, "btn", &c, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "btn", "red", 1.0, &err), MAB_OK);
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, "fixture apply failure"));
    /* Still counted in memory, and offered again: a second flush fails too. */
    mab_arm_stats st[2] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n;
    assert_int_equal(mab_stats(e, "btn", st, 2, &n, &err), MAB_OK);
    assert_int_equal(st[0].pulls + st[1].pulls, 5);
    assert_int_equal(st[0].rewards, 1);
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    assert_int_equal(mab_close(e, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, "fixture apply failure; 5 pulls and 1 rewards were not written"));
}

/* ---- where plugin names are looked up ---------------------------------- */

/* A config naming `policy` and `storage` plugins, with plugin_path only when
   plugin_path_json is not NULL (a JSON array). */
static void write_search_config(const char *plugin_path_json, const char *policy,
                                const char *storage)
{
    char pp[600] = "";
    if (plugin_path_json)
        snprintf(pp, sizeof pp, "\"plugin_path\": %s,\n ", plugin_path_json);
    assert_int_equal(test_write_file(config,
                                     "{%s\"storage\": {\"plugin\": \"%s\"},\n"
                                     " \"experiments\": {\"btn\": {\"policy\": {\"plugin\": \"%s\"},"
                                     " \"arms\": {\"red\": 1, \"blue\": 2}}}}\n",
                                     pp, storage, policy),
                     0);
}

/* dir/sub, created; the caller frees it. */
static char *make_subdir(const char *sub)
{
    char *d = malloc(400);
    assert_non_null(d);
    snprintf(d, 400, "%s/%s", dir, sub);
    assert_int_equal(mkdir(d, 0755), 0);
    return d;
}

/* Make dir/name.so a link to the fixture `fixture` (a real plugin file). */
static void plant(const char *in, const char *name, const char *fixture)
{
    char link[600];
    snprintf(link, sizeof link, "%s/%s.so", in, name);
    assert_int_equal(symlink(fixture, link), 0);
}

/* Open the config and check which files the policy and storage came from. */
static void expect_found(const char *policy_dir, const char *policy,
                         const char *storage_dir, const char *storage)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(config, &e, &err);
    if (rc != MAB_OK)
        print_error("mab_open: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    assert_int_equal(mab_experiment_at(e, 0, &info, &err), MAB_OK);
    char want[700];
    snprintf(want, sizeof want, "%s/%s.so", policy_dir, policy);
    assert_string_equal(info.policy_path, want);
    snprintf(want, sizeof want, "%s/%s.so", storage_dir, storage);
    assert_non_null(mab_storage_path(e));
    assert_string_equal(mab_storage_path(e), want);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

/* A config without plugin_path finds the plugins of this libmab: in the build
   tree, build/plugins (the old loader looked only in plugin_path and in the
   configure-time install directory). */
static void test_plugins_found_without_plugin_path(void **state)
{
    (void)state;
    unsetenv("MAB_PLUGIN_PATH");
    assert_int_equal(test_write_file(config,
                                     "{\"storage\": {\"plugin\": \"json_file\", \"path\": \"s.json\"},\n"
                                     " \"experiments\": {\"btn\": {\"policy\": {\"plugin\": \"ucb1\"},"
                                     " \"arms\": {\"red\": 1, \"blue\": 2}}}}\n"),
                     0);
    expect_found(MAB_PLUGIN_DIR, "ucb1", MAB_PLUGIN_DIR, "json_file");
    /* And the storage plugin's file is NULL when no storage is opened. */
    mab_engine *e = NULL;
    mab_error err;
    mab_options opts = {.struct_size = sizeof opts, .flags = MAB_OPEN_NO_STORAGE};
    assert_int_equal(mab_open_ex(config, &opts, &e, &err), MAB_OK);
    assert_null(mab_storage_path(e));
    assert_int_equal(mab_close(e, &err), MAB_OK);
    assert_null(mab_storage_path(NULL));
}

/* MAB_PLUGIN_PATH is searched, entry by entry, before plugin_path; libmab's
   own plugins come before both (docs/config.md, "Where plugins are found"). */
static void test_search_order(void **state)
{
    (void)state;
    char *env1 = make_subdir("env1"), *env2 = make_subdir("env2"), *cfg = make_subdir("cfg");
    /* probe_policy in env2 and cfg; probe_store in env1 and cfg; ucb1 (a
       plugin of this libmab) also in env1 and cfg, pointing elsewhere. */
    plant(env2, "probe_policy", FIX("policy_uniform"));
    plant(cfg, "probe_policy", FIX("policy_uniform"));
    plant(env1, "probe_store", FIX("storage_memory"));
    plant(cfg, "probe_store", FIX("storage_memory"));
    plant(env1, "ucb1", FIX("policy_uniform"));
    plant(cfg, "ucb1", FIX("policy_uniform"));
    char pp[500], env[900];
    snprintf(pp, sizeof pp, "[\"%s\"]", cfg);
    /* Empty entries are ignored, as are directories that do not exist. */
    snprintf(env, sizeof env, ":%s/nowhere::%s:%s:", dir, env1, env2);

    assert_int_equal(setenv("MAB_PLUGIN_PATH", env, 1), 0);
    write_search_config(pp, "probe_policy", "probe_store");
    expect_found(env2, "probe_policy", env1, "probe_store");
    /* The plugins that go with libmab win over same-named files elsewhere. */
    write_search_config(pp, "ucb1", "probe_store");
    expect_found(MAB_PLUGIN_DIR, "ucb1", env1, "probe_store");

    /* Without the variable, plugin_path is next. */
    assert_int_equal(unsetenv("MAB_PLUGIN_PATH"), 0);
    write_search_config(pp, "probe_policy", "probe_store");
    expect_found(cfg, "probe_policy", cfg, "probe_store");

    /* The variable alone is enough: no plugin_path. */
    snprintf(env, sizeof env, "%s", env1);
    assert_int_equal(setenv("MAB_PLUGIN_PATH", env, 1), 0);
    write_search_config(NULL, "ucb1", "probe_store");
    expect_found(MAB_PLUGIN_DIR, "ucb1", env1, "probe_store");
    assert_int_equal(unsetenv("MAB_PLUGIN_PATH"), 0);
    free(env1);
    free(env2);
    free(cfg);
}

/* A name found nowhere: the error names every directory tried, in order,
   each once (env1 is in MAB_PLUGIN_PATH and in plugin_path). */
static void test_missing_plugin_names_every_directory(void **state)
{
    (void)state;
    char *env1 = make_subdir("miss1"), *env2 = make_subdir("miss2"), *cfg = make_subdir("miss3");
    char pp[900], env[900];
    snprintf(pp, sizeof pp, "[\"%s\", \"%s\"]", env1, cfg);
    snprintf(env, sizeof env, "%s:%s", env1, env2);
    assert_int_equal(setenv("MAB_PLUGIN_PATH", env, 1), 0);
    write_search_config(pp, "nosuch", "json_file");
    char expected[2000];
    snprintf(expected, sizeof expected,
             "experiments.btn.policy.plugin: no plugin \"nosuch\" (looked for %s/nosuch.so, "
             "%s/nosuch.so, %s/nosuch.so, %s/nosuch.so)",
             MAB_PLUGIN_DIR, env1, env2, cfg);
    expect_open_error(MAB_EPLUGIN, expected);
    assert_int_equal(unsetenv("MAB_PLUGIN_PATH"), 0);
    free(env1);
    free(env2);
    free(cfg);
}

static int setup(void **state)
{
    (void)state;
    dir = test_tmpdir("loader");
    snprintf(config, sizeof config, "%s/mab.json", dir);
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
        cmocka_unit_test(test_policy_wrong_abi),
        cmocka_unit_test(test_policy_missing_symbol),
        cmocka_unit_test(test_policy_small_struct),
        cmocka_unit_test(test_policy_null_callback),
        cmocka_unit_test(test_storage_null_claim),
        cmocka_unit_test(test_policy_create_fails),
        cmocka_unit_test(test_policy_not_a_shared_object),
        cmocka_unit_test(test_unknown_policy_key_after_create),
        cmocka_unit_test(test_policy_bad_index_is_refused_at_choose),
        cmocka_unit_test(test_storage_wrong_abi),
        cmocka_unit_test(test_storage_open_fails),
        cmocka_unit_test(test_failed_writes_are_kept_and_reported),
        cmocka_unit_test(test_plugins_found_without_plugin_path),
        cmocka_unit_test(test_search_order),
        cmocka_unit_test(test_missing_plugin_names_every_directory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
