/*
 * test_config.c - every kind of bad config gets its exact error, and the
 * engine opens nothing for it; a caller's own sections (mab_open_sections,
 * mab_config_section) are refused when unclaimed and checked key by key.
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

#include <cjson/cJSON.h>

#include "mab/mab.h"
#include "mab/plugin.h"

static char dir[] = "/tmp/mab-test-config-XXXXXX";
static char config_path[256];

/* Substitutions in configs and expected messages: @P plugin dir, @D temp
   dir, @F config file. */
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
    /* Not JSON, though cJSON read it (core/json.c, docs/config.md "JSON"). */
    {"leading zero", "{\n  \"seed\": 007}", MAB_ECONFIG, "@F: invalid JSON at line 2, column 12"},
    {"control byte in a string", "{\"seed\": 1, \"x\": \"a\tb\"}", MAB_ECONFIG,
     "@F: invalid JSON at line 1, column 20"},
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
    {"duplicate arm id, 12 arms",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG
     ", \"arms\": {\"x1\": 1, \"x2\": 2, \"x3\": 3, \"x4\": 4, \"x5\": 5, \"x6\": 6, \"x7\": 7, "
     "\"x8\": 8, \"x9\": 9, \"x10\": 10, \"x11\": 11, \"x5\": 12}}}}",
     MAB_ECONFIG, "@F: experiments.btn.arms.x5: duplicate arm id"},
    {"experiment key twice",
     "{" PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS ", " EG "}}}",
     MAB_ECONFIG, "@F: experiments.btn: key \"policy\" appears twice"},
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
     "@F: experiments.btn.policy.plugin: no plugin \"nosuch\" (looked for @P/nosuch.so)"},
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
     "@F: storage.plugin: no plugin \"cassandra\" (looked for @P/cassandra.so)"},
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

/* A config file over 1 GiB is refused before it is read (a sparse file:
   nothing is written, and nothing is read or allocated by the check). */
static void test_oversized_file(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/huge.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"experiments\": {}}", f);
    fclose(f);
    assert_int_equal(truncate(path, (off_t)1 << 30), 0);
    mab_engine *engine = NULL;
    mab_error err;
    assert_int_equal(mab_open(path, &engine, &err), MAB_ECONFIG);
    char expected[400];
    snprintf(expected, sizeof expected, "%s: config is larger than 1073741824 bytes (1073741824)",
             path);
    assert_string_equal(err.message, expected);
    assert_null(engine);
    unlink(path);
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
    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    assert_int_equal(mab_experiment_at(engine, 1, &info, &err), MAB_OK);
    assert_string_equal(info.id, "txt");
    assert_string_equal(info.policy, "thompson");
    assert_int_equal(info.n_arms, 3);
    assert_true(info.reward_max == 5.0);
    assert_int_equal(mab_experiment_at(engine, 2, &info, &err), MAB_ENOTFOUND);
    assert_string_equal(mab_storage_name(engine), "json_file");
    mab_choice choice = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_arm_lookup(engine, "btn", "blue", &choice, &err), MAB_OK);
    assert_string_equal(choice.value_json, "{\"hex\":\"#00f\"}");
    assert_int_equal(mab_arm_lookup(engine, "txt", "b", &choice, &err), MAB_OK);
    assert_string_equal(choice.value_json, "null");
    assert_int_equal(mab_close(engine, &err), MAB_OK);
}

/* ---- sections: the caller's own top-level objects ---------------------- */

#define MINIMAL PP ", " STORAGE ", \"experiments\": {\"btn\": {" EG ", " ARMS "}}"

static const char *const web_only[] = {"web", NULL};

/* Open `text` with `sections`; expect code and (when not NULL) the exact
   message after expansion. */
static void expect_open(const char *text, const char *const *sections, int code,
                        const char *message)
{
    write_config(text);
    mab_options opts = {.struct_size = sizeof opts, .flags = MAB_OPEN_NO_STORAGE};
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    int rc = mab_open_sections(config_path, &opts, sections, &engine, &err);
    if (rc != code)
        print_error("%s\n  -> %d %s\n", text, rc, err.message);
    assert_int_equal(rc, code);
    if (code == MAB_OK) {
        assert_int_equal(mab_close(engine, &err), MAB_OK);
        return;
    }
    assert_null(engine);
    if (message) {
        char expected[1024];
        expand(message, expected, sizeof expected);
        assert_string_equal(err.message, expected);
    }
}

static void test_unclaimed_keys_refused(void **state)
{
    (void)state;
    /* A typo of an engine key stays an error with sections declared. */
    expect_open("{" MINIMAL ", \"web\": {}, \"experiment\": {}}", web_only, MAB_ECONFIG,
                "@F: unknown key \"experiment\"");
    /* A section nobody claims: plain mab_open knows no sections... */
    write_config("{" MINIMAL ", \"web\": {\"port\": 80}}");
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config_path, &engine, &err), MAB_ECONFIG);
    char expected[512];
    expand("@F: unknown key \"web\"", expected, sizeof expected);
    assert_string_equal(err.message, expected);
    assert_null(engine);
    /* ... and a caller claiming other sections does not claim it either. */
    static const char *const other[] = {"admin", NULL};
    expect_open("{" MINIMAL ", \"web\": {\"port\": 80}}", other, MAB_ECONFIG,
                "@F: unknown key \"web\"");
    /* The same file opens for the caller that claims it, with or without
       the section present, and with the adapter's keys beside it. */
    expect_open("{" MINIMAL ", \"web\": {\"port\": 80}}", web_only, MAB_OK, NULL);
    expect_open("{" MINIMAL "}", web_only, MAB_OK, NULL);
    expect_open("{" MINIMAL ", \"debug_header\": true, \"cookie\": {\"name\": \"x\"}, "
                "\"web\": {}}", web_only, MAB_OK, NULL);
    /* A claimed section must be an object, once. */
    expect_open("{" MINIMAL ", \"web\": 3}", web_only, MAB_ECONFIG,
                "@F: web: expected an object");
    expect_open("{" MINIMAL ", \"web\": {}, \"web\": {}}", web_only, MAB_ECONFIG,
                "@F: key \"web\" appears twice");
}

static void test_bad_section_names(void **state)
{
    (void)state;
    static const char *const engine_key[] = {"storage", NULL};
    static const char *const adapter_key[] = {"web", "cookie", NULL};
    static const char *const empty[] = {"", NULL};
    static const char *const twice[] = {"web", "admin", "web", NULL};
    expect_open("{" MINIMAL "}", engine_key, MAB_EINVAL,
                "mab_open: section \"storage\" is a key of the engine");
    expect_open("{" MINIMAL "}", adapter_key, MAB_EINVAL,
                "mab_open: section \"cookie\" is a key of the adapter");
    expect_open("{" MINIMAL "}", empty, MAB_EINVAL, "mab_open: a section name is empty");
    expect_open("{" MINIMAL "}", twice, MAB_EINVAL, "mab_open: section \"web\" is listed twice");
}

/* Open the config with sections {"web"} (no storage). */
static mab_engine *open_web(const char *text)
{
    write_config(text);
    mab_options opts = {.struct_size = sizeof opts, .flags = MAB_OPEN_NO_STORAGE};
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    int rc = mab_open_sections(config_path, &opts, web_only, &engine, &err);
    if (rc)
        print_error("%s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return engine;
}

static void test_section_values(void **state)
{
    (void)state;
    mab_engine *engine = open_web("{" MINIMAL ", \"web\": {\"listen\": \"127.0.0.1:9\", "
                                  "\"threads\": 3, \"open\": true, \"tls\": {\"cert\": "
                                  "\"certs/a.pem\", \"strict\": false}}}");
    mab_params *web = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_config_section(engine, "web", &web, &err), MAB_OK);
    /* The view is the caller's: it outlives the engine. */
    assert_int_equal(mab_close(engine, &err), MAB_OK);

    const char *listen = NULL;
    int64_t threads = 0, timeout = 0;
    int open = 0, strict = 1;
    assert_int_equal(mab_params_string(web, "listen", NULL, &listen), MAB_OK);
    assert_string_equal(listen, "127.0.0.1:9");
    assert_int_equal(mab_params_int(web, "threads", 1, 1, 64, &threads), MAB_OK);
    assert_int_equal(threads, 3);
    assert_int_equal(mab_params_int(web, "timeout_s", 30, 1, 3600, &timeout), MAB_OK);
    assert_int_equal(timeout, 30); /* absent: the default */
    assert_int_equal(mab_params_bool(web, "open", 0, &open), MAB_OK);
    assert_int_equal(open, 1);
    mab_params *tls = NULL, *again = NULL;
    assert_int_equal(mab_params_object(web, "tls", &tls), MAB_OK);
    assert_int_equal(mab_params_object(web, "tls", &again), MAB_OK);
    assert_ptr_equal(tls, again);
    char cert[512], want[512];
    assert_int_equal(mab_params_path(tls, "cert", NULL, cert, sizeof cert), MAB_OK);
    snprintf(want, sizeof want, "%s/certs/a.pem", dir); /* against the config's directory */
    assert_string_equal(cert, want);
    assert_int_equal(mab_params_bool(tls, "strict", 1, &strict), MAB_OK);
    assert_int_equal(strict, 0);
    assert_int_equal(mab_params_check_unread(web, &err), MAB_OK);
    assert_string_equal(mab_params_last_error(web), "");
    mab_params_free(web);
}

/* mab_params_strings: arrays of strings, with errors naming the path. */
static void test_section_strings(void **state)
{
    (void)state;
    mab_engine *engine = open_web("{" MINIMAL ", \"web\": {\"names\": [\"a\", \"b.example\"], "
                                  "\"mixed\": [\"a\", 3], \"many\": [\"1\", \"2\", \"3\"], "
                                  "\"one\": \"a\"}}");
    mab_params *web = NULL;
    assert_int_equal(mab_config_section(engine, "web", &web, NULL), MAB_OK);
    mab_close(engine, NULL);
    const char *got[2] = {NULL, NULL};
    size_t n = 99;
    assert_int_equal(mab_params_strings(web, "absent", 2, got, &n), MAB_OK);
    assert_int_equal(n, 0);
    assert_int_equal(mab_params_strings(web, "names", 2, got, &n), MAB_OK);
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "a");
    assert_string_equal(got[1], "b.example");
    assert_int_equal(mab_params_strings(web, "mixed", 2, got, &n), MAB_ECONFIG);
    assert_non_null(strstr(mab_params_last_error(web), "web.mixed: element 1: expected a string"));
    assert_int_equal(mab_params_strings(web, "many", 2, got, &n), MAB_ECONFIG);
    assert_non_null(strstr(mab_params_last_error(web), "web.many: expected an array of at most 2"));
    assert_int_equal(mab_params_strings(web, "one", 2, got, &n), MAB_ECONFIG);
    assert_non_null(strstr(mab_params_last_error(web), "web.one: expected an array"));
    mab_params_free(web);
}

static void test_section_absent(void **state)
{
    (void)state;
    mab_engine *engine = open_web("{" MINIMAL "}");
    mab_params *web = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_config_section(engine, "web", &web, &err), MAB_OK);
    int64_t threads = 0;
    assert_int_equal(mab_params_int(web, "threads", 4, 1, 64, &threads), MAB_OK);
    assert_int_equal(threads, 4);
    assert_int_equal(mab_params_has(web, "threads"), 0);
    mab_params *tls = NULL;
    assert_int_equal(mab_params_object(web, "tls", &tls), MAB_OK);
    assert_int_equal(mab_params_has(tls, "cert"), 0);
    assert_int_equal(mab_params_check_unread(web, &err), MAB_OK);
    mab_params_free(web);

    /* Only declared sections are handed out: not the engine's own keys. */
    err.code = 0;
    assert_int_equal(mab_config_section(engine, "storage", &web, &err), MAB_EINVAL);
    assert_int_equal(err.code, MAB_EINVAL);
    assert_string_equal(err.message,
                        "mab_config_section: \"storage\" was not named when the engine was "
                        "opened (mab_open_sections)");
    assert_int_equal(mab_config_section(engine, NULL, &web, &err), MAB_EINVAL);
    assert_int_equal(mab_config_section(NULL, "web", &web, &err), MAB_EINVAL);
    assert_int_equal(mab_close(engine, &err), MAB_OK);
}

/* Read the section's known keys ("listen", "tls" with "cert") the way a
   host does, then return the first error: a getter's or an unread key's. */
static int read_web(const char *section_json, char *message, size_t cap)
{
    char text[2048];
    snprintf(text, sizeof text, "{" MINIMAL ", \"web\": %s}", section_json);
    mab_engine *engine = open_web(text);
    mab_params *web = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_config_section(engine, "web", &web, &err), MAB_OK);
    assert_int_equal(mab_close(engine, NULL), MAB_OK);
    const char *listen;
    mab_params *tls = NULL;
    char cert[512];
    int rc = mab_params_string(web, "listen", "x", &listen);
    if (rc == MAB_OK)
        rc = mab_params_object(web, "tls", &tls);
    if (rc == MAB_OK)
        rc = mab_params_path(tls, "cert", "default.pem", cert, sizeof cert);
    if (rc == MAB_OK) {
        rc = mab_params_check_unread(web, &err);
        if (rc) {
            assert_int_equal(err.code, rc);
            assert_string_equal(err.message, mab_params_last_error(web));
        }
    }
    snprintf(message, cap, "%s", mab_params_last_error(web));
    mab_params_free(web);
    return rc;
}

static void expect_section_error(const char *section_json, const char *message)
{
    char got[1024], expected[1024];
    assert_int_equal(read_web(section_json, got, sizeof got), MAB_ECONFIG);
    expand(message, expected, sizeof expected);
    assert_string_equal(got, expected);
}

static void test_section_errors_name_the_path(void **state)
{
    (void)state;
    char got[1024];
    assert_int_equal(read_web("{\"listen\": \"a:1\", \"tls\": {\"cert\": \"c.pem\"}}", got,
                              sizeof got), MAB_OK);
    expect_section_error("{\"listen\": \"a:1\", \"listen_typo\": 2}",
                         "@F: web: unknown key \"listen_typo\"");
    expect_section_error("{\"tls\": {\"cert\": \"c.pem\", \"kee\": \"k.pem\"}}",
                         "@F: web.tls: unknown key \"kee\"");
    expect_section_error("{\"listen\": \"a:1\", \"listen\": \"b:2\"}",
                         "@F: web: key \"listen\" appears twice");
    expect_section_error("{\"listen\": 80}", "@F: web.listen: expected a string");
    expect_section_error("{\"tls\": 3}", "@F: web.tls: expected an object");
    expect_section_error("{\"tls\": {\"cert\": true}}", "@F: web.tls.cert: expected a string");
}

/* A nested object the reader never opened is an unknown key of its parent. */
static void test_unopened_nested_object(void **state)
{
    (void)state;
    mab_engine *engine = open_web("{" MINIMAL ", \"web\": {\"tls\": {\"cert\": \"a\"}}}");
    mab_params *web = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_config_section(engine, "web", &web, &err), MAB_OK);
    assert_int_equal(mab_params_check_unread(web, &err), MAB_ECONFIG);
    char expected[512];
    expand("@F: web: unknown key \"tls\"", expected, sizeof expected);
    assert_string_equal(err.message, expected);
    mab_params_free(web);
    assert_int_equal(mab_close(engine, &err), MAB_OK);
}

/* Nested views work the same on any mab_params (a plugin's, from
   mab_params_parse) and are freed with it. */
static void test_nested_params(void **state)
{
    (void)state;
    mab_params *p = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_params_parse("{\"a\": {\"b\": 1, \"c\": {\"d\": 2}}}", "test", &p, &err),
                     MAB_OK);
    mab_params *a = NULL, *c = NULL;
    int64_t b = 0, d = 0;
    assert_int_equal(mab_params_object(p, "a", &a), MAB_OK);
    assert_int_equal(mab_params_int(a, "b", 0, 0, 9, &b), MAB_OK);
    assert_int_equal(b, 1);
    assert_int_equal(mab_params_object(a, "c", &c), MAB_OK);
    assert_int_equal(mab_params_check_unread(p, &err), MAB_ECONFIG);
    assert_string_equal(err.message, "test.a.c: unknown key \"d\"");
    assert_int_equal(mab_params_int(c, "d", 0, 0, 1, &d), MAB_ECONFIG);
    assert_string_equal(mab_params_last_error(c), "test.a.c.d: 2 is outside [0, 1]");
    assert_string_equal(mab_params_last_error(p), "test.a.c.d: 2 is outside [0, 1]");
    assert_int_equal(mab_params_check_unread(p, &err), MAB_OK);
    mab_params_free(p);
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

/* Arm values come back as cJSON writes them, whether the engine writes a
   whole number itself (config.c, value_text) or lets cJSON do it. */
static void test_arm_values_as_cjson_writes_them(void **state)
{
    (void)state;
    static const char *const values[] = {"0", "-0", "7", "-42", "999999999999999",
                                         "1000000000000000", "-999999999999999", "1.5",
                                         "1e300", "2147483648", "\"x\"", "true",
                                         "[1,{\"k\":null}]", "\"q\\\"\"", "{}", "9", "10",
                                         "-10", "99", "100", "123456789", "2147483646",
                                         "2147483647", "-2147483647", "-2147483648", "-1"};
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text,
                                "{" PP ", " STORAGE ", \"experiments\": {\"e\": {" EG
                                ", \"arms\": {");
    size_t count = sizeof values / sizeof *values;
    for (size_t i = 0; i < count; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%s\"a%zu\": %s", i ? ", " : "", i,
                              values[i]);
    snprintf(text + n, sizeof text - n, "}}}}");
    write_config(text);
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config_path, &engine, &err), MAB_OK);
    for (size_t i = 0; i < count; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%zu", i);
        mab_choice choice = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_arm_lookup(engine, "e", id, &choice, &err), MAB_OK);
        cJSON *parsed = cJSON_Parse(values[i]);
        char *expected = cJSON_PrintUnformatted(parsed);
        if (strcmp(choice.value_json, expected) != 0)
            print_error("%s: engine wrote %s, cJSON %s\n", values[i], choice.value_json,
                        expected);
        assert_string_equal(choice.value_json, expected);
        cJSON_free(expected);
        cJSON_Delete(parsed);
    }
    mab_close(engine, NULL);
}

/* The policy text of a report: experiments whose policy objects print the
   same share one copy (config.c, same_json), and no other does: keys in
   another order print in that order, a number one ulp away prints itself. */
static void test_policy_text_shared_only_when_identical(void **state)
{
    (void)state;
    static const char *const policies[] = {
        "{\"plugin\":\"epsilon_greedy\",\"epsilon\":0.1}",
        "{\"plugin\":\"epsilon_greedy\",\"epsilon\":0.1}",
        "{\"epsilon\":0.1,\"plugin\":\"epsilon_greedy\"}",
        "{\"plugin\":\"epsilon_greedy\",\"epsilon\":0.10000000000000001}",
        "{\"plugin\":\"epsilon_greedy\",\"epsilon\":0.10000000000000002}",
        "{\"plugin\":\"epsilon_greedy\",\"epsilon\":0.1}",
        "{\"plugin\":\"ucb1\"}",
        "{\"plugin\":\"ucb1\"}"};
    size_t count = sizeof policies / sizeof *policies;
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, "{" PP ", " STORAGE ", \"experiments\": {");
    for (size_t i = 0; i < count; i++)
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "%s\"e%zu\": {\"policy\": %s, \"arms\": {\"a\": 1, \"b\": 2}}",
                              i ? ", " : "", i, policies[i]);
    snprintf(text + n, sizeof text - n, "}}");
    write_config(text);
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    mab_options opts = {.struct_size = sizeof opts, .flags = MAB_OPEN_NO_STORAGE};
    assert_int_equal(mab_open_ex(config_path, &opts, &engine, &err), MAB_OK);
    for (size_t i = 0; i < count; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%zu", i);
        mab_report r = {.struct_size = sizeof r};
        assert_int_equal(mab_report_get(engine, id, &r, &err), MAB_OK);
        cJSON *parsed = cJSON_Parse(policies[i]);
        char *expected = cJSON_PrintUnformatted(parsed);
        assert_string_equal(r.policy_json, expected);
        cJSON_free(expected);
        cJSON_Delete(parsed);
        mab_report_free(&r);
    }
    mab_close(engine, NULL);
}

int main(void)
{
    /* The expected "looked for" lists assume no extra directories. */
    unsetenv("MAB_PLUGIN_PATH");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_oversized_file),
        cmocka_unit_test(test_good_config_opens),
        cmocka_unit_test(test_arm_values_as_cjson_writes_them),
        cmocka_unit_test(test_policy_text_shared_only_when_identical),
        cmocka_unit_test(test_unclaimed_keys_refused),
        cmocka_unit_test(test_bad_section_names),
        cmocka_unit_test(test_section_values),
        cmocka_unit_test(test_section_strings),
        cmocka_unit_test(test_section_absent),
        cmocka_unit_test(test_section_errors_name_the_path),
        cmocka_unit_test(test_unopened_nested_object),
        cmocka_unit_test(test_nested_params),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
