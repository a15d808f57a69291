/*
 * test_config.c - every kind of bad config gets its exact error, and the
 * engine opens nothing for it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/mab.h"

static char dir[] = "/tmp/mab-test-config-XXXXXX";
static char config_path[256];

/* Substitutions in configs and expected messages: @P plugin dir, @D temp
   dir, @F config file, @L default plugin dir. */
static void expand(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *c = in; *c && n + 1 < cap; c++) {
        const char *sub = NULL;
        if (c[0] == '@' && c[1] == 'P')
            sub = MAB_PLUGIN_DIR;
        else if (c[0] == '@' && c[1] == 'D')
            sub = dir;
        else if (c[0] == '@' && c[1] == 'F')
            sub = config_path;
        else if (c[0] == '@' && c[1] == 'L')
            sub = MAB_DEFAULT_PLUGIN_DIR;
        if (sub) {
            n += (size_t)snprintf(out + n, cap - n, "%s", sub);
            c++;
        } else {
            out[n++] = *c;
        }
    }
    out[n < cap ? n : cap - 1] = '\0';
}

static void write_config(const char *text)
{
    char expanded[4096];
    expand(text, expanded, sizeof expanded);
    FILE *f = fopen(config_path, "w");
    assert_non_null(f);
    fputs(expanded, f);
    fclose(f);
}

#define STORAGE "\"storage\": {\"plugin\": \"json_file\", \"path\": \"@D/state.json\"}"
#define PP "\"plugin_path\": [\"@P\"]"
#define ARMS "\"arms\": {\"red\": \"#f00\", \"blue\": {\"hex\": \"#00f\"}}"
#define EG "\"policy\": {\"plugin\": \"epsilon_greedy\", \"epsilon\": 0.1}"

struct bad_config {
    const char *name;
    const char *config;
    int code;
    const char *message;
};

static const struct bad_config cases[] = {
    {"not JSON", "{\"experiments\": {\n  \"a\": [1, 2,,]\n}}", MAB_ECONFIG,
     "@F: invalid JSON at line 2, column 14"},
    {"top level array", "[1, 2]", MAB_ECONFIG, "@F: the top level must be a JSON object"},
    {"unknown top-level key",
     "{" PP ", " STORAGE ", \"experimentz\": {}}", MAB_ECONFIG, "@F: unknown key \"experimentz\""},
    {"storage missing", "{" PP ", \"experiments\": {\"btn\": {" EG ", " ARMS "}}}", MAB_ECONFIG,
     "@F: storage: required key is missing"},
    {"experiments missing", "{" PP ", " STORAGE "}", MAB_ECONFIG,
     "@F: experiments: required key is missing"},
    {"experiments empty", "{" PP ", " STORAGE ", \"experiments\": {}}", MAB_ECONFIG,
     "@F: experiments: at least one experiment is required"},
    {"arms missing", "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG "}}}", MAB_ECONFIG,
     "@F: experiments.btn.arms: required key is missing"},
    {"one arm", "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", \"arms\": {\"a\": 1}}}}",
     MAB_ECONFIG, "@F: experiments.btn.arms: at least 2 arms are required, found 1"},
    {"duplicate arm id",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG
     ", \"arms\": {\"red\": 1, \"blue\": 2, \"red\": 3}}}}",
     MAB_ECONFIG, "@F: experiments.btn.arms.red: duplicate arm id"},
    {"duplicate experiment id",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS "}, \"btn\": {" EG ", " ARMS
     "}}}",
     MAB_ECONFIG, "@F: experiments.btn: duplicate experiment id"},
    {"bad arm id",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", \"arms\": {\"a b\": 1, \"c\": 2}}}}",
     MAB_ECONFIG,
     "@F: experiments.btn.arms: arm id \"a b\" must be 1 to 128 letters, digits, '_' or '-'"},
    {"unknown experiment key",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS ", \"armz\": {}}}}",
     MAB_ECONFIG, "@F: experiments.btn: unknown key \"armz\""},
    {"policy without plugin",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {\"policy\": {\"epsilon\": 0.1}, " ARMS "}}}",
     MAB_ECONFIG, "@F: experiments.btn.policy: expected an object with \"plugin\" naming a policy"},
    {"unknown policy plugin",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {\"policy\": {\"plugin\": \"nosuch\"}, " ARMS
     "}}}",
     MAB_EPLUGIN,
     "@F: experiments.btn.policy.plugin: no plugin \"nosuch\" (looked for @P/nosuch.so, "
     "@L/nosuch.so)"},
    {"epsilon out of range",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {\"policy\": {\"plugin\": \"epsilon_greedy\", "
     "\"epsilon\": 1.5}, " ARMS "}}}",
     MAB_ECONFIG, "@F: experiments.btn.policy.epsilon: 1.5 is outside [0, 1] (refused by @P/epsilon_greedy.so)"},
    {"epsilon not a number",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {\"policy\": {\"plugin\": \"epsilon_greedy\", "
     "\"epsilon\": \"high\"}, " ARMS "}}}",
     MAB_ECONFIG, "@F: experiments.btn.policy.epsilon: expected a number (refused by @P/epsilon_greedy.so)"},
    {"misspelt policy parameter",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {\"policy\": {\"plugin\": \"epsilon_greedy\", "
     "\"epsilom\": 0.2}, " ARMS "}}}",
     MAB_ECONFIG, "@F: experiments.btn.policy: unknown key \"epsilom\""},
    {"reward range inverted",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS
     ", \"reward\": {\"min\": 1, \"max\": 0}}}}",
     MAB_ECONFIG, "@F: experiments.btn.reward: min (1) must be less than max (0)"},
    {"reward max too large for its square",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS
     ", \"reward\": {\"min\": 0, \"max\": 1e300}}}}",
     MAB_ECONFIG, "@F: experiments.btn.reward.max: 1e+300 is outside [-1e150, 1e150] (the square "
     "of a reward must be a finite number)"},
    {"reward min too small for its square",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS
     ", \"reward\": {\"min\": -1.0000001e150, \"max\": 0}}}}",
     MAB_ECONFIG, "@F: experiments.btn.reward.min: -1.0000001e+150 is outside [-1e150, 1e150] (the "
     "square of a reward must be a finite number)"},
    {"reward range too narrow to normalise by",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS
     ", \"reward\": {\"min\": 0, \"max\": 1e-200}}}}",
     MAB_ECONFIG, "@F: experiments.btn.reward: max - min is 1e-200; it must be at least 1e-150 "
     "(rewards are divided by it, and by its square)"},
    {"reward range unknown key",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS
     ", \"reward\": {\"low\": 1}}}}",
     MAB_ECONFIG, "@F: experiments.btn.reward: unknown key \"low\""},
    {"bad sync",
     "{" PP ", \"storage\": {\"plugin\": \"json_file\", \"path\": \"s.json\", \"sync\": \"often\"}, "
     "\"experiments\": {\"btn\": {" EG ", " ARMS "}}}",
     MAB_ECONFIG, "@F: storage.sync: expected \"always\" or {\"interval_ms\": N}"},
    {"sync interval out of range",
     "{" PP ", \"storage\": {\"plugin\": \"json_file\", \"path\": \"s.json\", \"sync\": "
     "{\"interval_ms\": 0}}, \"experiments\": {\"btn\": {" EG ", " ARMS "}}}",
     MAB_ECONFIG, "@F: storage.sync.interval_ms: 0 is outside [1, 86400000]"},
    {"unknown storage key",
     "{" PP ", \"storage\": {\"plugin\": \"json_file\", \"path\": \"s.json\", \"pth\": \"x\"}, "
     "\"experiments\": {\"btn\": {" EG ", " ARMS "}}}",
     MAB_ECONFIG, "@F: storage: unknown key \"pth\""},
    {"unknown storage plugin",
     "{" PP ", \"storage\": {\"plugin\": \"cassandra\"}, \"experiments\": {\"btn\": {" EG ", " ARMS
     "}}}",
     MAB_EPLUGIN,
     "@F: storage.plugin: no plugin \"cassandra\" (looked for @P/cassandra.so, @L/cassandra.so)"},
    {"storage plugin that is a policy",
     "{" PP ", \"storage\": {\"plugin\": \"ucb1\"}, \"experiments\": {\"btn\": {" EG ", " ARMS "}}}",
     MAB_EPLUGIN,
     "@F: storage.plugin: @P/ucb1.so: missing symbol mab_storage_entry: not a mab storage plugin "
     "(or not exported)"},
    {"negative seed",
     "{" PP ", " STORAGE ", \"seed\": -1, \"experiments\": {\"btn\": {" EG ", " ARMS "}}}",
     MAB_ECONFIG, "@F: seed: expected an integer in [0, 2^53)"},
    {"plugin_path not an array",
     "{\"plugin_path\": \"@P\", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS "}}}",
     MAB_ECONFIG, "@F: plugin_path: expected an array of directories"},
};

static void test_bad_configs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_config(cases[i].config);
        mab_engine *engine = NULL;
        mab_error err = {0, ""};
        int rc = mab_open(config_path, &engine, &err);
        char expected[1024];
        expand(cases[i].message, expected, sizeof expected);
        if (rc != cases[i].code || strcmp(err.message, expected) != 0)
            print_error("case \"%s\":\n  got      %d \"%s\"\n  expected %d \"%s\"\n", cases[i].name,
                        rc, err.message, cases[i].code, expected);
        assert_int_equal(rc, cases[i].code);
        assert_int_equal(err.code, cases[i].code);
        assert_string_equal(err.message, expected);
        assert_null(engine);
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/absent.json", dir);
    mab_engine *engine = NULL;
    mab_error err;
    assert_int_equal(mab_open(path, &engine, &err), MAB_EIO);
    char expected[400];
    snprintf(expected, sizeof expected, "%s: cannot open config: No such file or directory", path);
    assert_string_equal(err.message, expected);
    assert_null(engine);
}

static void test_good_config_opens(void **state)
{
    (void)state;
    write_config("{" PP ", " STORAGE ", \"seed\": 7, \"experiments\": {"
                 "\"btn\": {" EG ", " ARMS "},"
                 "\"txt\": {\"policy\": {\"plugin\": \"thompson\"}, \"reward\": {\"min\": 0, \"max\": 5},"
                 " \"arms\": {\"a\": \"Buy\", \"b\": null, \"c\": [1, 2]}}}}");
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(config_path, &engine, &err);
    if (rc)
        print_error("%s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    assert_int_equal(mab_experiment_count(engine), 2);
    mab_experiment_info info;
    assert_int_equal(mab_experiment_at(engine, 1, &info, &err), MAB_OK);
    assert_string_equal(info.id, "txt");
    assert_string_equal(info.policy, "thompson");
    assert_int_equal(info.n_arms, 3);
    assert_true(info.reward_max == 5.0);
    assert_int_equal(mab_experiment_at(engine, 2, &info, &err), MAB_ENOTFOUND);
    assert_string_equal(mab_storage_name(engine), "json_file");
    mab_choice choice;
    assert_int_equal(mab_arm_lookup(engine, "btn", "blue", &choice, &err), MAB_OK);
    assert_string_equal(choice.value_json, "{\"hex\":\"#00f\"}");
    assert_int_equal(mab_arm_lookup(engine, "txt", "b", &choice, &err), MAB_OK);
    assert_string_equal(choice.value_json, "null");
    assert_int_equal(mab_close(engine, &err), MAB_OK);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(config_path, sizeof config_path, "%s/mab.json", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_good_config_opens),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
