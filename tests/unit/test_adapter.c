/*
 * test_adapter.c - the request hooks of adapter.h: sticky cookies, tampering,
 * expiry, stacked experiments, replays, reasons for uncounted rewards, the
 * redirect guard, key rotation and the adapter's config keys.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sodium.h>

#include <cmocka.h>

#include "mab/adapter.h"
#include "mab/mab.h"
#include "fixture.h"

static char key_file[300];

static int each(void **state)
{
    (void)state;
    fixture_dir_remove();
    fixture_dir_make("adapter");
    snprintf(key_file, sizeof key_file, "%s/mab.key", dir);
    mab_error err = {0, ""};
    assert_int_equal(mab_adapter_keygen(key_file, &err), MAB_OK);
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

/* Two experiments; `arms_color` lets a test remove an arm; `extra` adds
   top-level keys (with a leading comma). */
static void write_config_with(const char *arms_color, const char *extra)
{
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\"], \"seed\": 5,\n"
                        " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"},\n"
                        " \"secret_file\": \"mab.key\",\n"
                        " \"redirect_allow\": [\"https://shop.example.com/\", "
                        "\"http://localhost:8080/app\"],\n"
                        " \"debug_header\": true%s,\n"
                        " \"experiments\": {\n"
                        "  \"color\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, \"arms\": %s},\n"
                        "  \"txt\": {\"policy\": {\"plugin\": \"ucb1\"}, \"reward\": {\"min\": 0, "
                        "\"max\": 10},\n"
                        "           \"arms\": {\"casual\": \"Hey\", \"neutral\": \"Add to cart\"}}}}\n",
                        MAB_PLUGIN_DIR, extra,
                        arms_color ? arms_color
                                   : "{\"green\": \"#0f0\", \"red\": \"#f00\", \"blue\": \"#00f\"}"),
        0);
}

static void write_config(void)
{
    write_config_with(NULL, "");
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

static mab_adapter *open_adapter(mab_engine *e)
{
    mab_adapter *ad = NULL;
    mab_error err = {0, ""};
    int rc = mab_adapter_open(e, &ad, &err);
    if (rc)
        print_error("mab_adapter_open: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return ad;
}

static uint64_t total_pulls(mab_engine *e, const char *experiment)
{
    mab_arm_stats st[8] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, experiment, st, 8, &n, NULL), MAB_OK);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += st[i].pulls;
    return sum;
}

static uint64_t total_rewards(mab_engine *e, const char *experiment)
{
    mab_arm_stats st[8] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, experiment, st, 8, &n, NULL), MAB_OK);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += st[i].rewards;
    return sum;
}

/* The cookie's value out of a Set-Cookie line "mab=VALUE; Path=...". */
static void cookie_value(const char *set_cookie, char *out, size_t cap)
{
    assert_non_null(set_cookie);
    assert_true(strncmp(set_cookie, "mab=", 4) == 0);
    size_t n = strcspn(set_cookie + 4, ";");
    assert_true(n < cap);
    memcpy(out, set_cookie + 4, n);
    out[n] = '\0';
}

/* One request: choose `experiment` with `cookie` (a value, may be NULL). */
static mab_assignment choose_with(mab_adapter *ad, const char *cookie, const char *experiment,
                                  char *new_cookie, size_t cap)
{
    char header[5000];
    snprintf(header, sizeof header, "theme=dark; mab=%s; lang=en", cookie ? cookie : "");
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, cookie ? header : NULL, NULL, &rq, NULL), MAB_OK);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    mab_error err = {0, ""};
    int rc = mab_request_choose(rq, experiment, &a, &err);
    if (rc)
        print_error("choose: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    static char arm[200];
    snprintf(arm, sizeof arm, "%s", a.arm_id);
    a.arm_id = arm;
    a.value_json = NULL;
    a.experiment = NULL;
    if (new_cookie) {
        const char *sc = mab_request_set_cookie(rq);
        if (sc)
            cookie_value(sc, new_cookie, cap);
        else
            new_cookie[0] = '\0';
    }
    mab_request_end(rq);
    return a;
}

/* One request: reward `experiment` with `cookie`; returns the reason. */
static mab_reward_reason reward_with(mab_adapter *ad, const char *cookie, const char *experiment,
                                     double value, char *new_cookie, size_t cap)
{
    char header[5000];
    snprintf(header, sizeof header, "mab=%s", cookie ? cookie : "");
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, cookie ? header : NULL, NULL, &rq, NULL), MAB_OK);
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    mab_error err = {0, ""};
    int rc = mab_request_reward(rq, experiment, value, &r, &err);
    if (rc)
        print_error("reward: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    assert_int_equal(r.counted, r.reason == MAB_REWARD_COUNTED);
    if (new_cookie) {
        const char *sc = mab_request_set_cookie(rq);
        if (sc)
            cookie_value(sc, new_cookie, cap);
        else
            new_cookie[0] = '\0';
    }
    mab_request_end(rq);
    return r.reason;
}

static void test_cookie_round_trip(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);

    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &rq, NULL), MAB_OK);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(rq, "color", &a, NULL), MAB_OK);
    assert_true(a.is_new);
    assert_string_equal(a.experiment, "color");
    assert_true(a.probability > 0 && a.probability <= 1);
    char first_arm[64];
    snprintf(first_arm, sizeof first_arm, "%s", a.arm_id);
    const char *sc = mab_request_set_cookie(rq);
    assert_non_null(sc);
    assert_non_null(strstr(sc, "; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"));
    char cookie[4000];
    cookie_value(sc, cookie, sizeof cookie);
    assert_string_equal(mab_request_token(rq), cookie);
    char want_debug[100];
    snprintf(want_debug, sizeof want_debug, "STORE; color:%s", first_arm);
    assert_string_equal(mab_request_debug_header(rq), want_debug);
    mab_request_end(rq);
    assert_int_equal(total_pulls(e, "color"), 1);

    /* Sticky: same arm, no new pull, nothing to set, SAVED. */
    for (int i = 0; i < 20; i++) {
        char again[4000];
        mab_assignment b = choose_with(ad, cookie, "color", again, sizeof again);
        assert_false(b.is_new);
        assert_string_equal(b.arm_id, first_arm);
        assert_string_equal(again, "");
    }
    assert_int_equal(total_pulls(e, "color"), 1);

    /* The same state as a token, for callers without cookies. */
    assert_int_equal(mab_request_begin(ad, "mab=garbage", cookie, &rq, NULL), MAB_OK);
    assert_int_equal(mab_request_choose(rq, "color", &a, NULL), MAB_OK);
    assert_false(a.is_new);
    assert_string_equal(a.arm_id, first_arm);
    snprintf(want_debug, sizeof want_debug, "SAVED; color:%s", first_arm);
    assert_string_equal(mab_request_debug_header(rq), want_debug);
    assert_null(mab_request_set_cookie(rq));
    mab_request_end(rq);

    mab_adapter_counters c = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(ad, &c);
    assert_int_equal(c.cookies_forged, 0);
    assert_int_equal(c.assignments, 1);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

/* The adapter's counters are per thread (core/adapter/counters.h): many
   threads counting at once on one adapter lose no count, and a thread
   switching between two adapters counts each on its own. */
#define COUNTER_THREADS 8
#define COUNTER_ROUNDS 20000

struct counter_thread {
    mab_adapter *a, *b;
    int errors;
};

static void *counter_thread_main(void *arg)
{
    struct counter_thread *t = arg;
    for (int i = 0; i < COUNTER_ROUNDS; i++) {
        mab_request *rq;
        /* A forged cookie: one count of cookies_forged, nothing else. */
        mab_adapter *ad = i % 4 == 3 ? t->b : t->a;
        if (mab_request_begin(ad, "mab=forged", NULL, &rq, NULL) != MAB_OK)
            t->errors++;
        else
            mab_request_end(rq);
    }
    return NULL;
}

static void test_counters_exact_across_threads(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *a = open_adapter(e), *b = open_adapter(e);
    pthread_t threads[COUNTER_THREADS];
    struct counter_thread t[COUNTER_THREADS];
    for (int i = 0; i < COUNTER_THREADS; i++) {
        t[i] = (struct counter_thread){a, b, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, counter_thread_main, &t[i]), 0);
    }
    for (int i = 0; i < COUNTER_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(t[i].errors, 0);
    }
    mab_adapter_counters ca = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_counters cb = MAB_STRUCT_INIT(mab_adapter_counters);
    assert_int_equal(mab_adapter_get_counters(a, &ca), MAB_OK);
    assert_int_equal(mab_adapter_get_counters(b, &cb), MAB_OK);
    assert_int_equal(ca.cookies_forged, COUNTER_THREADS * COUNTER_ROUNDS * 3 / 4);
    assert_int_equal(cb.cookies_forged, COUNTER_THREADS * COUNTER_ROUNDS / 4);
    assert_int_equal(ca.assignments + cb.assignments, 0);
    mab_adapter_close(a);
    mab_adapter_close(b);
    mab_close(e, NULL);
}

static void test_every_mutation_is_rejected(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    char cookie[4000];
    choose_with(ad, NULL, "color", cookie, sizeof cookie);
    choose_with(ad, cookie, "txt", cookie, sizeof cookie);
    size_t len = strlen(cookie);
    assert_true(len > 100);

    uint64_t expected_forged = 0, expected_pulls = total_pulls(e, "color");
    char mutated[4000];
    for (size_t i = 0; i < len; i++) {
        for (int b = 1; b < 256; b++) {
            if (b == (unsigned char)cookie[i])
                continue;
            memcpy(mutated, cookie, len + 1);
            mutated[i] = (char)b;
            mab_assignment a = choose_with(ad, mutated, "color", NULL, 0);
            assert_true(a.is_new); /* a fresh assignment follows */
            expected_forged++;
            expected_pulls++;
        }
    }
    /* Every truncation too. */
    for (size_t n = 0; n < len; n++) {
        memcpy(mutated, cookie, n);
        mutated[n] = '\0';
        mab_assignment a = choose_with(ad, mutated, "color", NULL, 0);
        assert_true(a.is_new);
        expected_forged++;
        expected_pulls++;
    }
    mab_adapter_counters c = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(ad, &c);
    assert_int_equal(c.cookies_forged, expected_forged);
    assert_int_equal(total_pulls(e, "color"), expected_pulls);
    /* The original still works. */
    assert_false(choose_with(ad, cookie, "color", NULL, 0).is_new);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

static void test_expiry(void **state)
{
    (void)state;
    write_config_with(NULL, ", \"cookie\": {\"max_age\": 2}");
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    char cookie[4000], later[4000];
    choose_with(ad, NULL, "color", cookie, sizeof cookie);
    assert_false(choose_with(ad, cookie, "color", NULL, 0).is_new);
    sleep(3); /* whole seconds: issued + max_age <= now, however the clock ticked */
    assert_int_equal(reward_with(ad, cookie, "color", 1, NULL, 0), MAB_REWARD_EXPIRED);
    assert_true(choose_with(ad, cookie, "color", later, sizeof later).is_new);
    assert_int_equal(total_pulls(e, "color"), 2);
    assert_int_equal(total_rewards(e, "color"), 0);
    mab_adapter_counters c = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(ad, &c);
    assert_true(c.cookies_expired >= 2);
    assert_int_equal(c.cookies_forged, 0);
    assert_int_equal(reward_with(ad, later, "color", 1, NULL, 0), MAB_REWARD_COUNTED);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

static void test_redirect_guard(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    static const char *const allowed[] = {
        "/",
        "/thanks",
        "/cart?item=42&back=/shop#top",
        "/a/b/../c",
        "/caf%C3%A9",
        "https://shop.example.com/",
        "https://shop.example.com/checkout?x=1",
        "HTTPS://SHOP.EXAMPLE.COM/upper",
        "http://localhost:8080/app",
        "http://localhost:8080/app/page",
        "http://localhost:8080/app?x=1",
        "http://localhost:8080/app/a..b/.x/..y?../#/..",
        NULL};
    static const char *const refused[] = {
        "",
        "//evil.example",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "/\\/evil.example",
        "https://evil.example",
        "https://evil.example/",
        "http://evil.example/",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/%2f%2fevil.example",
        "/%5Cevil.example",
        "/%5cevil.example",
        "/%09/evil.example",
        "/%00",
        "/%zz",
        "/%2",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,hi",
        "evil.example",
        "thanks",
        "/\t/evil.example",
        "/\n/evil.example",
        " /thanks",
        "/th anks",
        "/\x7f",
        "/caf\xc3\xa9",
        "https://shop.example.com",            /* no path: not under "https://shop.example.com/" */
        "https://shop.example.com.evil/",
        "https://shop.example.com.evil.example/",
        "https://shop.example.com@evil.example/",
        "https://shop.example.com:443@evil.example/",
        "https://shop.example.com:8443/",
        "http://shop.example.com/",
        "https://evil.example/https://shop.example.com/",
        "https://shop.example.com\\@evil.example/",
        "https://shop.example.com/%2F%2Fevil",
        "http://localhost:8080/application",
        "http://localhost:8080/ap",
        "http://localhost:8081/app",
        "ftp://shop.example.com/",
        /* dot segments a browser resolves out of the entry's path (fuzz_redirect) */
        "http://localhost:8080/app/../admin",
        "http://localhost:8080/app/%2e%2e/admin",
        "http://localhost:8080/app/.%2E",
        "http://localhost:8080/app/%2E./x?y",
        "https://shop.example.com/./x",
        NULL};
    for (const char *const *t = allowed; *t; t++) {
        mab_error err = {0, ""};
        if (mab_adapter_check_redirect(ad, *t, &err) != MAB_OK)
            fail_msg("refused %s: %s", *t, err.message);
    }
    for (const char *const *t = refused; *t; t++) {
        mab_error err = {0, ""};
        if (mab_adapter_check_redirect(ad, *t, &err) != MAB_EINVAL)
            fail_msg("allowed %s", *t);
        assert_non_null(strstr(err.message, "redirect refused"));
    }
    assert_int_equal(mab_adapter_check_redirect(ad, NULL, NULL), MAB_EINVAL);

    /* Through the hook: a refused target counts nothing; an allowed one
       redirects even when there is nothing to count. */
    char cookie[4000];
    choose_with(ad, NULL, "color", cookie, sizeof cookie);
    char header[4100];
    snprintf(header, sizeof header, "mab=%s", cookie);
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, header, NULL, &rq, NULL), MAB_OK);
    mab_redirect r = MAB_STRUCT_INIT(mab_redirect);
    mab_reward_result result = MAB_STRUCT_INIT(mab_reward_result);
    mab_error err = {0, ""};
    assert_int_equal(mab_request_redirect(rq, "color", 1, "//evil.example", &result, &r, &err),
                     MAB_EINVAL);
    assert_int_equal(r.status, 0);
    assert_int_equal(total_rewards(e, "color"), 0);
    /* The Location outlives the caller's target string (valid until
       mab_request_end), as bindings pass temporaries. */
    char target[] = "/thanks";
    assert_int_equal(mab_request_redirect(rq, "color", 1, target, &result, &r, &err), MAB_OK);
    memset(target, 'x', sizeof target - 1);
    assert_int_equal(r.status, 303);
    assert_string_equal(r.location, "/thanks");
    assert_true(result.counted);
    assert_non_null(mab_request_set_cookie(rq));
    mab_request_end(rq);
    assert_int_equal(total_rewards(e, "color"), 1);

    assert_int_equal(mab_request_begin(ad, NULL, NULL, &rq, NULL), MAB_OK);
    assert_int_equal(mab_request_redirect(rq, "color", 1, "/thanks", &result, &r, &err), MAB_OK);
    assert_int_equal(r.status, 303);
    assert_false(result.counted);
    assert_int_equal(result.reason, MAB_REWARD_NO_COOKIE);
    mab_request_end(rq);

    mab_adapter_counters c = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(ad, &c);
    assert_int_equal(c.redirects_refused, 1);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

/* Flask-MAB counted a pull per stacked decorator and kept only the last
   experiment's cookie. Here: one cookie, one pull per experiment. */
static void test_stacked_experiments(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);

    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &rq, NULL), MAB_OK);
    mab_assignment color = MAB_STRUCT_INIT(mab_assignment), txt = color, again = color;
    assert_int_equal(mab_request_choose(rq, "color", &color, NULL), MAB_OK);
    assert_int_equal(mab_request_choose(rq, "txt", &txt, NULL), MAB_OK);
    assert_int_equal(mab_request_choose(rq, "color", &again, NULL), MAB_OK);
    assert_true(color.is_new && txt.is_new);
    assert_false(again.is_new);
    assert_string_equal(again.arm_id, color.arm_id);
    char want[200];
    snprintf(want, sizeof want, "STORE; color:%s;txt:%s", color.arm_id, txt.arm_id);
    assert_string_equal(mab_request_debug_header(rq), want);
    char cookie[4000];
    cookie_value(mab_request_set_cookie(rq), cookie, sizeof cookie);
    mab_request_end(rq);
    assert_int_equal(total_pulls(e, "color"), 1);
    assert_int_equal(total_pulls(e, "txt"), 1);

    /* Both entries come back in the one cookie: no new pulls, txt first now. */
    char header[4100];
    snprintf(header, sizeof header, "mab=%s", cookie);
    assert_int_equal(mab_request_begin(ad, header, NULL, &rq, NULL), MAB_OK);
    mab_assignment t2 = MAB_STRUCT_INIT(mab_assignment), c2 = t2;
    assert_int_equal(mab_request_choose(rq, "txt", &t2, NULL), MAB_OK);
    assert_int_equal(mab_request_choose(rq, "color", &c2, NULL), MAB_OK);
    assert_false(t2.is_new || c2.is_new);
    assert_string_equal(t2.arm_id, txt.arm_id);
    assert_string_equal(c2.arm_id, color.arm_id);
    snprintf(want, sizeof want, "SAVED; txt:%s;color:%s", txt.arm_id, color.arm_id);
    assert_string_equal(mab_request_debug_header(rq), want);
    assert_null(mab_request_set_cookie(rq));
    /* Rewards for both in one request, each once. */
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_reward(rq, "color", 1, &r, NULL), MAB_OK);
    assert_true(r.counted);
    assert_string_equal(r.arm_id, color.arm_id);
    assert_int_equal(mab_request_reward(rq, "txt", 7, &r, NULL), MAB_OK);
    assert_true(r.counted);
    assert_int_equal(mab_request_reward(rq, "color", 1, &r, NULL), MAB_OK);
    assert_int_equal(r.reason, MAB_REWARD_ALREADY_REWARDED);
    mab_request_end(rq);
    assert_int_equal(total_pulls(e, "color"), 1);
    assert_int_equal(total_pulls(e, "txt"), 1);
    assert_int_equal(total_rewards(e, "color"), 1);
    assert_int_equal(total_rewards(e, "txt"), 1);

    /* Many visitors, each with both experiments: pulls == visitors. */
    for (int v = 0; v < 200; v++) {
        char c[4000];
        choose_with(ad, NULL, "color", c, sizeof c);
        choose_with(ad, c, "txt", c, sizeof c);
        assert_false(choose_with(ad, c, "color", NULL, 0).is_new);
        assert_false(choose_with(ad, c, "txt", NULL, 0).is_new);
    }
    assert_int_equal(total_pulls(e, "color"), 201);
    assert_int_equal(total_pulls(e, "txt"), 201);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

static void test_replay_refused(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    char before[4000], after[4000], again[4000];
    choose_with(ad, NULL, "color", before, sizeof before);
    assert_int_equal(reward_with(ad, before, "color", 1, after, sizeof after),
                     MAB_REWARD_COUNTED);
    assert_true(after[0] != '\0');
    assert_string_not_equal(after, before);
    /* The old cookie, sent again: remembered server side. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(reward_with(ad, before, "color", 1, again, sizeof again),
                         MAB_REWARD_REPLAYED);
    /* The new cookie carries the flag. */
    assert_int_equal(reward_with(ad, after, "color", 1, NULL, 0), MAB_REWARD_ALREADY_REWARDED);
    /* The visitor keeps the arm, with no new pull. */
    assert_false(choose_with(ad, after, "color", NULL, 0).is_new);
    assert_int_equal(total_rewards(e, "color"), 1);
    assert_int_equal(total_pulls(e, "color"), 1);
    mab_adapter_counters c = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(ad, &c);
    assert_int_equal(c.replays_refused, 3);
    assert_int_equal(c.rewards_refused, 4);
    assert_int_equal(c.rewards_counted, 1);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

static void test_uncounted_rewards_say_why(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    char txt_only[4000];
    choose_with(ad, NULL, "txt", txt_only, sizeof txt_only);

    assert_int_equal(reward_with(ad, NULL, "color", 1, NULL, 0), MAB_REWARD_NO_COOKIE);
    assert_int_equal(reward_with(ad, "forged", "color", 1, NULL, 0), MAB_REWARD_INVALID_COOKIE);
    assert_int_equal(reward_with(ad, txt_only, "color", 1, NULL, 0), MAB_REWARD_NO_ASSIGNMENT);
    assert_string_equal(mab_reward_reason_name(MAB_REWARD_NO_ASSIGNMENT), "no_assignment");
    assert_string_equal(mab_reward_reason_name(MAB_REWARD_REPLAYED), "replayed");

    /* Errors: unknown experiment, NaN, out of range; nothing is recorded and
       the assignment can still be rewarded afterwards. */
    char header[4100];
    snprintf(header, sizeof header, "mab=%s", txt_only);
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, header, NULL, &rq, NULL), MAB_OK);
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    mab_error err = {0, ""};
    assert_int_equal(mab_request_reward(rq, "nope", 1, &r, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "nope"));
    assert_int_equal(mab_request_reward(rq, "txt", NAN, &r, &err), MAB_EINVAL);
    assert_int_equal(mab_request_reward(rq, "txt", 11, &r, &err), MAB_ERANGE);
    assert_int_equal(mab_request_choose(rq, "nope", &(mab_assignment)MAB_STRUCT_INIT(mab_assignment), &err), MAB_ENOTFOUND);
    assert_int_equal(mab_request_reward(rq, "txt", 10, &r, &err), MAB_OK);
    assert_true(r.counted);
    mab_request_end(rq);
    assert_int_equal(total_rewards(e, "txt"), 1);

    /* An arm removed from the config: the reward counts nothing, choose
       assigns afresh. */
    char color_cookie[4000];
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    do {
        a = choose_with(ad, NULL, "color", color_cookie, sizeof color_cookie);
    } while (strcmp(a.arm_id, "blue") != 0);
    write_config_with("{\"green\": \"#0f0\", \"red\": \"#f00\"}", "");
    mab_engine *e2 = open_engine();
    mab_error rerr = {0, ""};
    assert_int_equal(mab_adapter_reload(ad, e2, &rerr), MAB_OK);
    mab_close(e, NULL);
    assert_int_equal(reward_with(ad, color_cookie, "color", 1, NULL, 0), MAB_REWARD_ARM_REMOVED);
    a = choose_with(ad, color_cookie, "color", NULL, 0);
    assert_true(a.is_new);
    assert_string_not_equal(a.arm_id, "blue");
    mab_adapter_close(ad);
    mab_close(e2, NULL);
}

static void test_key_rotation(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    char old_cookie[4000];
    mab_assignment a = choose_with(ad, NULL, "color", old_cookie, sizeof old_cookie);
    char arm[64];
    snprintf(arm, sizeof arm, "%s", a.arm_id);
    char *old_key = test_read_file(key_file);
    assert_non_null(old_key);

    /* New key first, old key below: old cookies verify, new ones are signed
       with the new key. */
    char new_file[320];
    snprintf(new_file, sizeof new_file, "%s/new.key", dir);
    assert_int_equal(mab_adapter_keygen(new_file, NULL), MAB_OK);
    char *new_key = test_read_file(new_file);
    assert_non_null(new_key);
    unlink(key_file);
    assert_int_equal(test_write_file(key_file, "# rotated\n%s\n%s", new_key, old_key), 0);
    chmod(key_file, 0600);
    mab_error err = {0, ""};
    assert_int_equal(mab_adapter_reload(ad, e, &err), MAB_OK);
    a = choose_with(ad, old_cookie, "color", NULL, 0);
    assert_false(a.is_new);
    assert_string_equal(a.arm_id, arm);
    char new_cookie[4000];
    choose_with(ad, old_cookie, "txt", new_cookie, sizeof new_cookie);

    /* The old key retired: old cookies are refused, new ones verify. */
    assert_int_equal(test_write_file(key_file, "%s", new_key), 0);
    assert_int_equal(mab_adapter_reload(ad, e, &err), MAB_OK);
    assert_true(choose_with(ad, old_cookie, "color", NULL, 0).is_new);
    assert_false(choose_with(ad, new_cookie, "color", NULL, 0).is_new);

    /* A bad key file on reload changes nothing. */
    assert_int_equal(test_write_file(key_file, "not base64!\n"), 0);
    assert_int_equal(mab_adapter_reload(ad, e, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "line 1"));
    assert_false(choose_with(ad, new_cookie, "color", NULL, 0).is_new);
    free(old_key);
    free(new_key);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

static void expect_config_error(const char *extra, const char *needle)
{
    write_config_with(NULL, extra);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
    assert_int_equal(mab_open_ex(config, &opts, &e, &err), MAB_ECONFIG);
    if (!strstr(err.message, needle))
        fail_msg("expected \"%s\" in: %s", needle, err.message);
}

static void test_config_keys(void **state)
{
    (void)state;
    expect_config_error(", \"cookie\": {\"nmae\": \"x\"}", "cookie: unknown key \"nmae\"");
    expect_config_error(", \"cookie\": {\"same_site\": \"None\"}", "cookie.same_site");
    expect_config_error(", \"cookie\": {\"same_site\": \"lax\"}", "cookie.same_site");
    expect_config_error(", \"cookie\": {\"max_age\": 0}", "cookie.max_age");
    expect_config_error(", \"cookie\": {\"name\": \"a;b\"}", "cookie.name");
    expect_config_error(", \"cookie\": {\"path\": \"nopath\"}", "cookie.path");
    expect_config_error(", \"cookie\": {\"secure\": 1}", "cookie.secure");
    expect_config_error(", \"cookie\": {\"http_only\": \"yes\"}", "cookie.http_only");
    expect_config_error(", \"secrt_file\": \"x\"", "unknown key \"secrt_file\"");
    /* A host's section is the host's: a program that does not name it when
       opening refuses it (test_config.c: a named section must be an object). */
    expect_config_error(", \"mabd\": {}", "unknown key \"mabd\"");

    /* redirect_allow entries are checked (the config above has two already). */
    static const char *const bad_allow[] = {"\"https://shop.example.com\"", "\"//evil\"",
                                            "\"evil.example/\"", "\"javascript:x\"",
                                            "\"https://a@b/\"", "3", NULL};
    for (const char *const *b = bad_allow; *b; b++) {
        assert_int_equal(
            test_write_file(config,
                            "{\"plugin_path\": [\"%s\"], \"storage\": {\"plugin\": \"json_file\"},"
                            " \"redirect_allow\": [%s], \"experiments\": {\"x\": {\"policy\": "
                            "{\"plugin\": \"ucb1\"}, \"arms\": {\"a\": 1, \"b\": 2}}}}",
                            MAB_PLUGIN_DIR, *b),
            0);
        mab_engine *e = NULL;
        mab_error err = {0, ""};
        mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
        assert_int_equal(mab_open_ex(config, &opts, &e, &err), MAB_ECONFIG);
        assert_non_null(strstr(err.message, "redirect_allow[0]"));
    }

    /* Accepted settings show in Set-Cookie. */
    write_config_with(NULL, ", \"cookie\": {\"name\": \"ab\", \"path\": \"/shop\", \"domain\": "
                            "\"example.com\", \"max_age\": 60, \"secure\": true, \"http_only\": "
                            "false, \"same_site\": \"None\"}");
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &rq, NULL), MAB_OK);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(rq, "txt", &a, NULL), MAB_OK);
    const char *sc = mab_request_set_cookie(rq);
    assert_true(strncmp(sc, "ab=", 3) == 0);
    assert_non_null(strstr(sc, "; Path=/shop; Domain=example.com; Max-Age=60; Secure; SameSite=None"));
    assert_null(strstr(sc, "HttpOnly"));
    mab_request_end(rq);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

static void test_secret_file(void **state)
{
    (void)state;
    mab_error err = {0, ""};
    /* keygen refuses to overwrite and writes mode 0600. */
    assert_int_equal(mab_adapter_keygen(key_file, &err), MAB_EIO);
    assert_non_null(strstr(err.message, "refusing to overwrite"));
    struct stat st;
    assert_int_equal(stat(key_file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = NULL;
    chmod(key_file, 0644);
    assert_int_equal(mab_adapter_open(e, &ad, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "chmod 600"));
    chmod(key_file, 0600);
    assert_int_equal(test_write_file(key_file, "# only a comment\n\n"), 0);
    assert_int_equal(mab_adapter_open(e, &ad, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "holds no key"));
    assert_int_equal(test_write_file(key_file, "c2hvcnQ=\n"), 0);
    assert_int_equal(mab_adapter_open(e, &ad, &err), MAB_ECONFIG);
    unlink(key_file);
    assert_int_equal(mab_adapter_open(e, &ad, &err), MAB_EIO);
    assert_non_null(strstr(err.message, "mab.key"));
    assert_null(ad);
    mab_close(e, NULL);

    /* No secret_file at all: the engine opens, the adapter explains. */
    assert_int_equal(test_write_file(config,
                                     "{\"plugin_path\": [\"%s\"], \"storage\": {\"plugin\": "
                                     "\"json_file\"}, \"experiments\": {\"x\": {\"policy\": "
                                     "{\"plugin\": \"ucb1\"}, \"arms\": {\"a\": 1, \"b\": 2}}}}",
                                     MAB_PLUGIN_DIR),
                     0);
    e = open_engine();
    assert_int_equal(mab_adapter_open(e, &ad, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "secret_file"));
    mab_close(e, NULL);
}

/* The assignment id inside a cookie value (layout in core/cookie.h: version,
   entry count, then per entry: length-prefixed experiment and arm ids and the
   16-byte assignment id). */
static void assignment_id_of(const char *cookie, uint8_t id[16])
{
    uint8_t bin[3000];
    size_t n = 0;
    assert_int_equal(sodium_base642bin(bin, sizeof bin, cookie, strlen(cookie), NULL, &n, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    size_t p = 2;
    p += 1 + bin[p]; /* experiment */
    p += 1 + bin[p]; /* arm */
    assert_true(p + 16 <= n);
    memcpy(id, bin + p, 16);
}

/* Ids come from a per-thread pool of random bytes: a child of fork() must not
   hand out the ids its parent hands out next. */
static void test_assignment_ids_differ_across_fork(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    char first[4096], parent_next[4096], child_first[4096] = "";
    choose_with(ad, NULL, "color", first, sizeof first); /* fills this thread's pool */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* No cmocka asserts in the child: report through the pipe. */
        close(fds[0]);
        mab_engine *ce = NULL;
        mab_adapter *cad = NULL;
        mab_request *rq = NULL;
        mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
        mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
        const char *sc = NULL;
        if (mab_open_ex(config, &opts, &ce, NULL) == MAB_OK && mab_adapter_open(ce, &cad, NULL) == MAB_OK &&
            mab_request_begin(cad, NULL, NULL, &rq, NULL) == MAB_OK &&
            mab_request_choose(rq, "color", &a, NULL) == MAB_OK)
            sc = mab_request_set_cookie(rq);
        char line[4096] = "";
        if (sc && strncmp(sc, "mab=", 4) == 0)
            snprintf(line, sizeof line, "%.*s", (int)strcspn(sc + 4, ";"), sc + 4);
        ssize_t w = write(fds[1], line, strlen(line) + 1);
        _exit(w > 0 ? 0 : 1);
    }
    close(fds[1]);
    choose_with(ad, NULL, "color", parent_next, sizeof parent_next);
    ssize_t got = read(fds[0], child_first, sizeof child_first - 1);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(got > 1);
    child_first[got] = '\0';
    uint8_t a[16], b[16], c[16];
    assignment_id_of(first, a);
    assignment_id_of(parent_next, b);
    assignment_id_of(child_first, c);
    assert_true(memcmp(a, b, 16) != 0);
    assert_true(memcmp(b, c, 16) != 0); /* the child refilled its pool */
    mab_adapter_close(ad);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* ---- reward once through storage claims --------------------------------- */

/* One experiment over `storage` (a JSON object without braces' contents). */
static void write_claims_config(const char *storage_members)
{
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\", \"%s\"], \"seed\": 5,\n"
                        " \"storage\": {%s},\n"
                        " \"secret_file\": \"mab.key\",\n"
                        " \"experiments\": {\n"
                        "  \"color\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, \"arms\": "
                        "{\"green\": 1, \"red\": 2}}}}\n",
                        MAB_PLUGIN_DIR, MAB_FIXTURE_DIR, storage_members),
        0);
}

/* Two adapters (two replay memories, as in two worker processes) on one
   store: the second is refused by the claim, not by its memory. */
static void test_claim_shared_by_adapters(void **state)
{
    (void)state;
    write_claims_config("\"plugin\": \"storage_memory\", \"sync\": \"always\"");
    mab_engine *e = open_ok();
    mab_adapter *one = open_adapter(e), *two = open_adapter(e);
    char cookie[4000];
    choose_with(one, NULL, "color", cookie, sizeof cookie);
    assert_int_equal(reward_with(one, cookie, "color", 1, NULL, 0), MAB_REWARD_COUNTED);
    assert_int_equal(reward_with(two, cookie, "color", 1, NULL, 0), MAB_REWARD_REPLAYED);
    assert_int_equal(reward_with(two, cookie, "color", 1, NULL, 0), MAB_REWARD_REPLAYED);
    assert_int_equal(reward_with(one, cookie, "color", 1, NULL, 0), MAB_REWARD_REPLAYED);
    assert_int_equal(total_rewards(e, "color"), 1);
    mab_adapter_counters c = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(two, &c);
    assert_int_equal(c.replays_refused, 2);
    assert_int_equal(mab_storage_has_claims(e), 1);
    mab_adapter_close(one);
    mab_adapter_close(two);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* A reward whose claim storage could not write (sync "always") is not
   counted, leaves nothing claimed, and counts when the visitor retries. */
static void test_failed_claim_counts_on_retry(void **state)
{
    (void)state;
    write_claims_config("\"plugin\": \"storage_memory\", \"sync\": \"always\", "
                        "\"fail_claims\": 1");
    mab_engine *e = open_ok();
    mab_adapter *ad = open_adapter(e);
    char cookie[4000];
    choose_with(ad, NULL, "color", cookie, sizeof cookie);
    char header[5000];
    snprintf(header, sizeof header, "mab=%s", cookie);
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, header, NULL, &rq, NULL), MAB_OK);
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    mab_error err = {0, ""};
    assert_int_equal(mab_request_reward(rq, "color", 1, &r, &err), MAB_ESTORAGE);
    assert_string_equal(err.message, "fixture claim failure");
    assert_int_equal(r.counted, 0);
    assert_null(mab_request_set_cookie(rq)); /* the entry is not marked rewarded */
    mab_request_end(rq);
    assert_int_equal(total_rewards(e, "color"), 0);
    assert_int_equal(reward_with(ad, cookie, "color", 1, NULL, 0), MAB_REWARD_COUNTED);
    assert_int_equal(reward_with(ad, cookie, "color", 1, NULL, 0), MAB_REWARD_REPLAYED);
    assert_int_equal(total_rewards(e, "color"), 1);
    mab_adapter_close(ad);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* A storage plugin of ABI 1.1 keeps no claims: the adapter's memory is the
   guard, as before 1.3 (once per process). */
static void test_no_claims_before_abi_1_3(void **state)
{
    (void)state;
    write_claims_config("\"plugin\": \"storage_memory_v11\", \"sync\": \"always\"");
    mab_engine *e = open_ok();
    assert_int_equal(mab_storage_has_claims(e), 0);
    mab_adapter *one = open_adapter(e), *two = open_adapter(e);
    char cookie[4000];
    choose_with(one, NULL, "color", cookie, sizeof cookie);
    assert_int_equal(reward_with(one, cookie, "color", 1, NULL, 0), MAB_REWARD_COUNTED);
    assert_int_equal(reward_with(one, cookie, "color", 1, NULL, 0), MAB_REWARD_REPLAYED);
    /* Another memory (another process) does not know it: per process only. */
    assert_int_equal(reward_with(two, cookie, "color", 1, NULL, 0), MAB_REWARD_COUNTED);
    assert_int_equal(total_rewards(e, "color"), 2);
    mab_adapter_close(one);
    mab_adapter_close(two);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* The tests below need the lmdb plugin (MAB_WITH_LMDB): registered only
   when it is built (tests/CMakeLists.txt defines MAB_TEST_LMDB). */
#ifdef MAB_TEST_LMDB
#define LMDB_REWARDERS 4
#define LMDB_TRIES 20

/* Two-plus engines in separate processes on one LMDB store reward one
   cookie, many times each: counted once; after a restart still refused. */
static void test_claim_across_processes_and_restart(void **state)
{
    (void)state;
    char members[600];
    snprintf(members, sizeof members,
             "\"plugin\": \"lmdb\", \"path\": \"%s/store\", \"sync\": \"always\"", dir);
    write_claims_config(members);
    char cookie[4000];
    mab_engine *e = open_ok();
    mab_adapter *ad = open_adapter(e);
    choose_with(ad, NULL, "color", cookie, sizeof cookie);
    mab_adapter_close(ad);
    assert_int_equal(mab_close(e, NULL), MAB_OK);

    int pipes[LMDB_REWARDERS][2];
    pid_t children[LMDB_REWARDERS];
    for (int c = 0; c < LMDB_REWARDERS; c++) {
        assert_int_equal(pipe(pipes[c]), 0);
        children[c] = fork();
        assert_true(children[c] >= 0);
        if (children[c] == 0) {
            /* No cmocka asserts in a child: report through the pipe. */
            mab_engine *ce = NULL;
            mab_adapter *ca = NULL;
            if (mab_open(config, &ce, NULL) != MAB_OK || mab_adapter_open(ce, &ca, NULL) != MAB_OK)
                _exit(2);
            char header[5000];
            snprintf(header, sizeof header, "mab=%s", cookie);
            uint32_t counted = 0;
            for (int i = 0; i < LMDB_TRIES; i++) {
                mab_request *rq;
                mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
                if (mab_request_begin(ca, header, NULL, &rq, NULL) != MAB_OK ||
                    mab_request_reward(rq, "color", 1, &r, NULL) != MAB_OK)
                    _exit(3);
                counted += (uint32_t)r.counted;
                mab_request_end(rq);
            }
            mab_adapter_close(ca);
            if (mab_close(ce, NULL) != MAB_OK)
                _exit(4);
            if (write(pipes[c][1], &counted, sizeof counted) != (ssize_t)sizeof counted)
                _exit(5);
            _exit(0);
        }
        close(pipes[c][1]);
    }
    uint32_t total = 0;
    for (int c = 0; c < LMDB_REWARDERS; c++) {
        int status;
        assert_int_equal(waitpid(children[c], &status, 0), children[c]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        uint32_t counted = 0;
        assert_int_equal(read(pipes[c][0], &counted, sizeof counted), (ssize_t)sizeof counted);
        close(pipes[c][0]);
        total += counted;
    }
    assert_int_equal(total, 1);
    /* A restart: a fresh engine and adapter (an empty memory). */
    e = open_ok();
    ad = open_adapter(e);
    assert_int_equal(total_rewards(e, "color"), 1);
    assert_int_equal(reward_with(ad, cookie, "color", 1, NULL, 0), MAB_REWARD_REPLAYED);
    assert_int_equal(total_rewards(e, "color"), 1);
    mab_adapter_close(ad);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* Distinct assignments chosen and rewarded once each, from one thread of
   several: the claims of concurrent rewards share one storage write
   (claims.c, claim_wait), so the million below cost fewer commits and
   yields than from one thread. */
#define OUTLIVE_THREADS 4

struct outlive_thread {
    mab_adapter *ad;
    uint32_t n, counted;
    int errors;
};

static void *outlive_thread_main(void *arg)
{
    struct outlive_thread *t = arg;
    for (uint32_t i = 0; i < t->n; i++) {
        mab_request *rq, *again;
        mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
        mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
        if (mab_request_begin(t->ad, NULL, NULL, &rq, NULL) != MAB_OK) {
            t->errors++;
            continue;
        }
        if (mab_request_choose(rq, "color", &a, NULL) != MAB_OK ||
            mab_request_begin(t->ad, NULL, mab_request_token(rq), &again, NULL) != MAB_OK) {
            t->errors++;
            mab_request_end(rq);
            continue;
        }
        if (mab_request_reward(again, "color", 1, &r, NULL) == MAB_OK && r.counted)
            t->counted++;
        mab_request_end(again);
        mab_request_end(rq);
    }
    return NULL;
}

/* More distinct rewards than the adapter's memory holds (2^20): the first
   cookie is still refused, because storage remembers its claim. The store
   is on tmpfs (/dev/shm) so that a million claims take seconds. The size
   of the memory is REPLAY_CAPACITY in core/adapter/adapter.c, a constant
   of the shared library with no config key or test knob: a smaller one
   for this test alone would have to be a public setting. */
static void test_claim_outlives_replay_memory(void **state)
{
    (void)state;
    char *shm = strdup("/dev/shm/mab-claims-XXXXXX");
    assert_non_null(shm);
    assert_non_null(mkdtemp(shm));
    char members[600];
    snprintf(members, sizeof members,
             "\"plugin\": \"lmdb\", \"path\": \"%s/store\", \"map_size\": 268435456, "
             "\"sync\": {\"interval_ms\": 1000}",
             shm);
    write_claims_config(members);
    mab_engine *e = open_ok();
    mab_adapter *ad = open_adapter(e);
    char first[4000];
    choose_with(ad, NULL, "color", first, sizeof first);
    assert_int_equal(reward_with(ad, first, "color", 1, NULL, 0), MAB_REWARD_COUNTED);
    const uint32_t others = (1u << 20) + 1000;
    _Static_assert(((1u << 20) + 1000) % OUTLIVE_THREADS == 0, "equal shares");
    struct outlive_thread t[OUTLIVE_THREADS];
    pthread_t tid[OUTLIVE_THREADS];
    for (int k = 0; k < OUTLIVE_THREADS; k++) {
        t[k] = (struct outlive_thread){ad, others / OUTLIVE_THREADS, 0, 0};
        assert_int_equal(pthread_create(&tid[k], NULL, outlive_thread_main, &t[k]), 0);
    }
    uint32_t counted = 0;
    for (int k = 0; k < OUTLIVE_THREADS; k++) {
        assert_int_equal(pthread_join(tid[k], NULL), 0);
        assert_int_equal(t[k].errors, 0);
        counted += t[k].counted;
    }
    assert_int_equal(counted, others);
    mab_adapter_counters c = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(ad, &c);
    assert_true(c.replay_evictions > 0); /* the memory did forget the first id */
    assert_int_equal(reward_with(ad, first, "color", 1, NULL, 0), MAB_REWARD_REPLAYED);
    assert_int_equal(total_rewards(e, "color"), 1 + (uint64_t)others);
    mab_adapter_close(ad);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
    test_rm_tree(shm);
    free(shm);
}

#endif /* MAB_TEST_LMDB */

#define CLAIM_THREADS 8
#define CLAIM_ROUNDS 40

struct claim_thread {
    mab_adapter *ad;
    const char *shared; /* one cookie every thread rewards */
    int counted_shared, counted_own, errors;
};

static void *claim_thread_main(void *arg)
{
    struct claim_thread *t = arg;
    char header[5000];
    snprintf(header, sizeof header, "mab=%s", t->shared);
    for (int i = 0; i < CLAIM_ROUNDS; i++) {
        mab_request *rq, *own;
        mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
        mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
        if (mab_request_begin(t->ad, header, NULL, &rq, NULL) != MAB_OK ||
            mab_request_reward(rq, "color", 1, &r, NULL) != MAB_OK)
            t->errors++;
        else
            t->counted_shared += r.counted;
        mab_request_end(rq);
        /* And a cookie of its own, rewarded once: must count. */
        if (mab_request_begin(t->ad, NULL, NULL, &rq, NULL) != MAB_OK ||
            mab_request_choose(rq, "color", &a, NULL) != MAB_OK ||
            mab_request_begin(t->ad, NULL, mab_request_token(rq), &own, NULL) != MAB_OK)
            t->errors++;
        else if (mab_request_reward(own, "color", 1, &r, NULL) != MAB_OK)
            t->errors++;
        else
            t->counted_own += r.counted;
        mab_request_end(own);
        mab_request_end(rq);
    }
    return NULL;
}

/* Threads with adapters of their own (as workers) reward one cookie and
   their own cookies at once under sync "always": the engine decides their
   claims in groups, and each caller gets its own claim's answer. */
static void test_concurrent_claims(void **state)
{
    (void)state;
    write_claims_config("\"plugin\": \"storage_memory\", \"sync\": \"always\"");
    mab_engine *e = open_ok();
    mab_adapter *first = open_adapter(e);
    char cookie[4000];
    choose_with(first, NULL, "color", cookie, sizeof cookie);
    pthread_t threads[CLAIM_THREADS];
    struct claim_thread t[CLAIM_THREADS];
    for (int i = 0; i < CLAIM_THREADS; i++) {
        t[i] = (struct claim_thread){open_adapter(e), cookie, 0, 0, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, claim_thread_main, &t[i]), 0);
    }
    int shared = 0, own = 0;
    for (int i = 0; i < CLAIM_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(t[i].errors, 0);
        shared += t[i].counted_shared;
        own += t[i].counted_own;
        mab_adapter_close(t[i].ad);
    }
    assert_int_equal(shared, 1);
    assert_int_equal(own, CLAIM_THREADS * CLAIM_ROUNDS);
    assert_int_equal(total_rewards(e, "color"), 1 + CLAIM_THREADS * CLAIM_ROUNDS);
    mab_adapter_close(first);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

struct refused_thread {
    mab_adapter *ad;
    int counted, refused, errors;
};

/* Choose and reward fresh cookies: rewards of arm "red" must be refused
   (the store refuses them as invalid), every other must count. */
static void *refused_thread_main(void *arg)
{
    struct refused_thread *t = arg;
    for (int i = 0; i < CLAIM_ROUNDS; i++) {
        mab_request *rq, *own;
        mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
        mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
        if (mab_request_begin(t->ad, NULL, NULL, &rq, NULL) != MAB_OK ||
            mab_request_choose(rq, "color", &a, NULL) != MAB_OK ||
            mab_request_begin(t->ad, NULL, mab_request_token(rq), &own, NULL) != MAB_OK) {
            t->errors++;
            continue;
        }
        int red = strcmp(a.arm_id, "red") == 0;
        int rc = mab_request_reward(own, "color", 1, &r, NULL);
        if (red && rc == MAB_EINVAL && !r.counted)
            t->refused++;
        else if (!red && rc == MAB_OK && r.counted)
            t->counted++;
        else
            t->errors++;
        mab_request_end(own);
        mab_request_end(rq);
    }
    return NULL;
}

/* A reward storage refuses as invalid (a record that would overflow; here
   the fixture's refuse_arm) fails alone: the claims grouped with it are
   decided on their own, so concurrent rewards of other arms all count. */
static void test_refused_claim_blocks_no_one(void **state)
{
    (void)state;
    write_claims_config("\"plugin\": \"storage_memory\", \"sync\": \"always\", "
                        "\"refuse_arm\": \"red\"");
    mab_engine *e = open_ok();
    pthread_t threads[CLAIM_THREADS];
    struct refused_thread t[CLAIM_THREADS];
    for (int i = 0; i < CLAIM_THREADS; i++) {
        t[i] = (struct refused_thread){open_adapter(e), 0, 0, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, refused_thread_main, &t[i]), 0);
    }
    int counted = 0, refused = 0, errors = 0;
    for (int i = 0; i < CLAIM_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        counted += t[i].counted;
        refused += t[i].refused;
        errors += t[i].errors;
        mab_adapter_close(t[i].ad);
    }
    print_message("%d counted, %d refused, %d wrong answers\n", counted, refused, errors);
    assert_int_equal(errors, 0);
    assert_true(counted > 0 && refused > 0);
    assert_int_equal(total_rewards(e, "color"), (uint64_t)counted);
    mab_close(e, NULL); /* red's pulls were refused too: close reports them */
}

/* A reward that would make the arm's sums overflow is refused before it is
   claimed (MAB_ERANGE, as mab_reward refuses it): nothing is counted or
   claimed, so the same cookie's retry with a reward that fits counts. */
static void test_overflowing_claim_refused_unclaimed(void **state)
{
    (void)state;
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\", \"%s\"], \"seed\": 5,\n"
                        " \"storage\": {\"plugin\": \"storage_memory\", \"sync\": \"always\"},\n"
                        " \"secret_file\": \"mab.key\",\n"
                        " \"experiments\": {\n"
                        "  \"color\": {\"policy\": {\"plugin\": \"epsilon_greedy\"},\n"
                        "   \"reward\": {\"min\": 0, \"max\": 1e150},\n"
                        "   \"arms\": {\"green\": 1, \"red\": 2}}}}\n",
                        MAB_PLUGIN_DIR, MAB_FIXTURE_DIR),
        0);
    mab_engine *e = open_ok();
    /* Both arms already hold the largest sum of squares a double can. */
    mab_record full[] = {{"color", "green", 1, 1, 1.0, DBL_MAX},
                         {"color", "red", 1, 1, 1.0, DBL_MAX}};
    mab_error err = {0, ""};
    assert_int_equal(mab_import(e, full, 2, 0, &err), MAB_OK);
    mab_adapter *ad = open_adapter(e);
    char cookie[4000];
    choose_with(ad, NULL, "color", cookie, sizeof cookie);
    char header[5000];
    snprintf(header, sizeof header, "mab=%s", cookie);
    mab_request *rq;
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_begin(ad, header, NULL, &rq, NULL), MAB_OK);
    err.message[0] = '\0';
    assert_int_equal(mab_request_reward(rq, "color", 1e150, &r, &err), MAB_ERANGE);
    assert_int_equal(r.counted, 0);
    if (!strstr(err.message, "would make a sum") || !strstr(err.message, "nothing was claimed"))
        fail_msg("unexpected message: %s", err.message);
    mab_request_end(rq);
    assert_int_equal(total_rewards(e, "color"), 2);
    /* Not claimed: the retry counts, once. */
    assert_int_equal(reward_with(ad, cookie, "color", 1, NULL, 0), MAB_REWARD_COUNTED);
    assert_int_equal(reward_with(ad, cookie, "color", 1, NULL, 0), MAB_REWARD_REPLAYED);
    assert_int_equal(total_rewards(e, "color"), 3);
    mab_adapter_close(ad);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

#ifdef MAB_TEST_LMDB
/* An ABI 2 policy with statistics, rewarded through the adapter with claims
   over LMDB: a granted claim adds the reward's statistics exactly once (in
   memory and in the store, read back after a reopen), a refused second
   claim (another adapter: another process's memory) adds none, and the
   cookie's probability reaches update (exp3 adds r / p). Both syncs: under
   "always" the statistics follow the claim in a second commit, under
   interval_ms they go with the reward's queued increment. */
static void test_claim_stats_once_lmdb(void **state)
{
    (void)state;
    const char *syncs[] = {"\"always\"", "{\"interval_ms\": 50}"};
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(
            test_write_file(config,
                            "{\"plugin_path\": [\"%s\", \"%s\"], \"seed\": 5,\n"
                            " \"storage\": {\"plugin\": \"lmdb\", \"path\": \"%s/store%zu\", "
                            "\"sync\": %s},\n"
                            " \"secret_file\": \"mab.key\",\n"
                            " \"experiments\": {\n"
                            "  \"s\": {\"policy\": {\"plugin\": \"policy_stats\"}, \"arms\": "
                            "{\"a\": 1, \"b\": 2}},\n"
                            "  \"x\": {\"policy\": {\"plugin\": \"exp3\"}, \"arms\": "
                            "{\"a\": 1, \"b\": 2}}}}\n",
                            MAB_PLUGIN_DIR, MAB_FIXTURE_DIR, dir, k, syncs[k]),
            0);
        mab_engine *e = open_ok();
        assert_int_equal(mab_storage_has_claims(e), 1);
        mab_adapter *one = open_adapter(e), *two = open_adapter(e);
        char cookie[4000], cookie_x[4000];
        mab_assignment a = choose_with(one, NULL, "s", cookie, sizeof cookie);
        assert_string_equal(a.arm_id, "a"); /* policy_stats plays the first arm first */
        mab_assignment ax = choose_with(one, NULL, "x", cookie_x, sizeof cookie_x);
        size_t xi = strcmp(ax.arm_id, "a") == 0 ? 0 : 1;
        double px = ax.probability;
        assert_true(px > 0 && px <= 1);
        assert_int_equal(reward_with(one, cookie, "s", 0.75, NULL, 0), MAB_REWARD_COUNTED);
        assert_int_equal(reward_with(two, cookie, "s", 0.75, NULL, 0), MAB_REWARD_REPLAYED);
        assert_int_equal(reward_with(one, cookie_x, "x", 1, NULL, 0), MAB_REWARD_COUNTED);
        assert_int_equal(reward_with(two, cookie_x, "x", 1, NULL, 0), MAB_REWARD_REPLAYED);
        assert_int_equal(total_rewards(e, "s"), 1);
        for (int reopened = 0; reopened < 2; reopened++) {
            mab_policy_stats_info info = {sizeof info, NULL, 0, 0};
            double arm[4] = {0}, ex[1] = {0};
            mab_error err = {0, ""};
            assert_int_equal(mab_policy_stats(e, "s", &info, arm, 4, ex, 1, &err), MAB_OK);
            /* arm a: one pull, reward sum 0.75; b untouched; events: pull + reward */
            if (arm[0] != 1.0 || arm[1] != 0.75 || arm[2] != 0.0 || arm[3] != 0.0 ||
                ex[0] != 2.0)
                fail_msg("sync %s%s: statistics %g %g %g %g / %g", syncs[k],
                         reopened ? " (reopened)" : "", arm[0], arm[1], arm[2], arm[3], ex[0]);
            double g[2] = {0};
            info = (mab_policy_stats_info){sizeof info, NULL, 0, 0};
            assert_int_equal(mab_policy_stats(e, "x", &info, g, 2, NULL, 0, &err), MAB_OK);
            /* G = r / p with the cookie's p (a float) */
            if (!(fabs(g[xi] * px - 1.0) < 1e-6) || g[1 - xi] != 0.0)
                fail_msg("sync %s%s: exp3 G = %g %g, p = %g", syncs[k],
                         reopened ? " (reopened)" : "", g[0], g[1], px);
            if (reopened)
                break;
            mab_adapter_close(one);
            mab_adapter_close(two);
            assert_int_equal(mab_close(e, NULL), MAB_OK);
            e = open_ok();
            assert_int_equal(total_rewards(e, "s"), 1);
        }
        assert_int_equal(mab_close(e, NULL), MAB_OK);
    }
}
#endif /* MAB_TEST_LMDB */

/* ---- context features (format 2 cookies) ------------------------------ */

/* An experiment over the echo fixture (tests/fixtures/policy_echo.c): it
   plays the arm its first feature names; update() adds that feature to the
   arm at a pull (arm[0]), to exp[0] at a reward, counts missing features in
   exp[1] and adds the reward's time in seconds to exp[2]. `features` is
   the policy's JSON list. */
static void write_echo_config(const char *features, const char *extra)
{
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\"], \"secret_file\": \"mab.key\"%s,\n"
                        " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"},\n"
                        " \"experiments\": {\n"
                        "  \"ctx\": {\"policy\": {\"plugin\": \"%s/policy_echo.so\", "
                        "\"features\": %s},\n"
                        "          \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                        MAB_PLUGIN_DIR, extra, MAB_FIXTURE_DIR, features),
        0);
}

static int64_t test_clock(void *ctx)
{
    return *(const int64_t *)ctx;
}

typedef struct echo_stats {
    double arm[3], ex[3];
} echo_stats;

static echo_stats read_echo(mab_engine *e)
{
    echo_stats s = {{0}, {0}};
    mab_policy_stats_info info = {sizeof info, NULL, 0, 0};
    mab_error err = {0, ""};
    assert_int_equal(mab_policy_stats(e, "ctx", &info, s.arm, 3, s.ex, 3, &err), MAB_OK);
    return s;
}

/* One request with features: choose or reward "ctx". */
static mab_request *begin_with_features(mab_adapter *ad, const char *cookie,
                                        const char *const *names, const double *values,
                                        size_t n)
{
    char header[5000];
    snprintf(header, sizeof header, "mab=%s", cookie ? cookie : "");
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, cookie ? header : NULL, NULL, &rq, NULL), MAB_OK);
    mab_error err = {0, ""};
    assert_int_equal(mab_request_set_features(rq, names, values, n, &err), MAB_OK);
    return rq;
}

static void test_features_reach_choose_and_update(void **state)
{
    (void)state;
    write_echo_config("[\"slot\", \"hour\"]", "");
    mab_engine *e = open_engine();
    int64_t now = 1700000000LL * 1000000000LL;
    assert_int_equal(mab_set_clock(e, test_clock, &now, NULL), MAB_OK);
    mab_adapter *ad = open_adapter(e);

    /* Choose: the request's "slot" decides the arm; names the policy does
       not use are ignored. */
    const char *names[] = {"other", "slot", "hour"};
    double values[] = {99.0, 2.0, 13.0};
    mab_request *rq = begin_with_features(ad, NULL, names, values, 3);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(rq, "ctx", &a, NULL), MAB_OK);
    assert_true(a.is_new);
    assert_string_equal(a.arm_id, "c");
    char cookie[4000];
    cookie_value(mab_request_set_cookie(rq), cookie, sizeof cookie);
    mab_request_end(rq);
    echo_stats s = read_echo(e);
    assert_true(s.arm[0] == 0.0 && s.arm[1] == 0.0 && s.arm[2] == 2.0);

    /* Reward an hour later with other features: update() sees the
       cookie's (slot 2), dated when the arm was assigned. */
    now += 3600LL * 1000000000LL;
    double changed[] = {99.0, 0.0, 14.0};
    rq = begin_with_features(ad, cookie, names, changed, 3);
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    mab_error err = {0, ""};
    assert_int_equal(mab_request_reward(rq, "ctx", 1.0, &r, &err), MAB_OK);
    assert_true(r.counted);
    mab_request_end(rq);
    s = read_echo(e);
    if (s.ex[0] != 2.0 || s.ex[1] != 0.0 || s.ex[2] != 1700000000.0)
        fail_msg("reward's update saw slot sum %g, %g missing, time %.0f", s.ex[0], s.ex[1],
                 s.ex[2]);

    /* Kept from the cookie: no pull, whatever the request's features. */
    rq = begin_with_features(ad, cookie, names, changed, 3);
    assert_int_equal(mab_request_choose(rq, "ctx", &a, NULL), MAB_OK);
    assert_false(a.is_new);
    assert_string_equal(a.arm_id, "c");
    mab_request_end(rq);
    assert_int_equal(total_pulls(e, "ctx"), 1);

    /* Replacing the features before choose: the last call counts. */
    rq = begin_with_features(ad, NULL, names, values, 3);
    double one[] = {1.0};
    const char *slot[] = {"slot"};
    assert_int_equal(mab_request_set_features(rq, slot, one, 1, NULL), MAB_OK);
    assert_int_equal(mab_request_choose(rq, "ctx", &a, NULL), MAB_OK);
    assert_string_equal(a.arm_id, "b");
    /* Bad arguments change nothing. */
    const char *null_name[] = {NULL};
    assert_int_equal(mab_request_set_features(rq, null_name, one, 1, &err), MAB_EINVAL);
    assert_int_equal(mab_request_set_features(rq, slot, NULL, 1, &err), MAB_EINVAL);
    assert_int_equal(mab_request_set_features(rq, slot, one, MAB_REQUEST_FEATURES_MAX + 1, &err),
                     MAB_EINVAL);
    mab_request_end(rq);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

/* Not a finite number (NaN, an infinity) is a missing feature, at the
   choice and, from the cookie, at the reward; so is a feature not given. */
static void test_nonfinite_feature_is_missing(void **state)
{
    (void)state;
    write_echo_config("[\"slot\"]", "");
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    const char *names[] = {"slot"};
    double bad[] = {INFINITY, -INFINITY, NAN};
    for (int i = 0; i < 4; i++) {
        /* i == 3: no features at all */
        mab_request *rq = begin_with_features(ad, NULL, names, &bad[i < 3 ? i : 0], i < 3);
        mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
        assert_int_equal(mab_request_choose(rq, "ctx", &a, NULL), MAB_OK);
        assert_string_equal(a.arm_id, "a");
        char cookie[4000];
        cookie_value(mab_request_set_cookie(rq), cookie, sizeof cookie);
        mab_request_end(rq);
        double two[] = {2.0};
        rq = begin_with_features(ad, cookie, names, two, 1);
        mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
        assert_int_equal(mab_request_reward(rq, "ctx", 1.0, &r, NULL), MAB_OK);
        assert_true(r.counted);
        mab_request_end(rq);
        echo_stats s = read_echo(e);
        /* each round: a missing feature at the pull and at the reward */
        if (s.ex[1] != 2.0 * (i + 1) || s.ex[0] != 0.0 || s.arm[0] != 0.0)
            fail_msg("round %d: missing %g, reward slot sum %g, pull sum %g", i, s.ex[1],
                     s.ex[0], s.arm[0]);
    }
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

/* A cookie made under another "features" list (the config changed) does
   not hand its values to the new list's names. */
static void test_features_of_another_list_are_missing(void **state)
{
    (void)state;
    write_echo_config("[\"slot\", \"hour\"]", "");
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    const char *names[] = {"slot", "hour"};
    double values[] = {1.0, 2.0};
    mab_request *rq = begin_with_features(ad, NULL, names, values, 2);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(rq, "ctx", &a, NULL), MAB_OK);
    assert_string_equal(a.arm_id, "b");
    char cookie[4000];
    cookie_value(mab_request_set_cookie(rq), cookie, sizeof cookie);
    mab_request_end(rq);
    mab_adapter_close(ad);
    mab_close(e, NULL);

    write_echo_config("[\"hour\", \"slot\"]", "");
    e = open_engine();
    ad = open_adapter(e);
    rq = begin_with_features(ad, cookie, NULL, NULL, 0);
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_reward(rq, "ctx", 1.0, &r, NULL), MAB_OK);
    assert_true(r.counted);
    mab_request_end(rq);
    echo_stats s = read_echo(e);
    /* not "hour" = 1 from the old slot: missing */
    assert_true(s.ex[0] == 0.0 && s.ex[1] == 1.0);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

/* Sign `body` (len bytes) with the test's key file and base64url it. */
static void sign_cookie(const uint8_t *body, size_t len, char *out, size_t cap)
{
    char *text = test_read_file(key_file);
    assert_non_null(text);
    uint8_t key[32];
    size_t key_len = 0;
    assert_int_equal(sodium_base642bin(key, sizeof key, text, strcspn(text, "\n"), NULL, &key_len,
                                       NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(key_len, 32);
    free(text);
    uint8_t signed_bytes[3100];
    assert_true(len + 32 <= sizeof signed_bytes);
    memcpy(signed_bytes, body, len);
    crypto_auth_hmacsha256(signed_bytes + len, body, len, key);
    sodium_bin2base64(out, cap, signed_bytes, len + 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* A format-1 cookie entry for experiment "ctx", arm "b", issued `issued`
   (unix seconds), probability 0.5, into p; returns its end. */
static uint8_t *v1_entry(uint8_t *p, uint32_t issued, uint8_t id_byte)
{
    *p++ = 3;
    memcpy(p, "ctx", 3), p += 3;
    *p++ = 1;
    *p++ = 'b';
    memset(p, id_byte, 16), p += 16;
    *p++ = 0; /* not rewarded */
    for (int k = 3; k >= 0; k--)
        *p++ = (uint8_t)(issued >> (8 * k));
    float half = 0.5f;
    uint32_t bits;
    memcpy(&bits, &half, sizeof bits);
    for (int k = 3; k >= 0; k--)
        *p++ = (uint8_t)(bits >> (8 * k));
    return p;
}

static void test_v1_cookie_still_decodes(void **state)
{
    (void)state;
    write_echo_config("[\"slot\"]", "");
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    uint8_t body[200], *p = body;
    *p++ = 1; /* version */
    *p++ = 1; /* one entry */
    p = v1_entry(p, (uint32_t)time(NULL), 7);
    char cookie[400];
    sign_cookie(body, (size_t)(p - body), cookie, sizeof cookie);
    mab_assignment a = choose_with(ad, cookie, "ctx", NULL, 0);
    assert_false(a.is_new);
    assert_string_equal(a.arm_id, "b");
    assert_int_equal(total_pulls(e, "ctx"), 0);
    /* Its reward counts; the policy sees no features (format 1 has none). */
    char rewarded[4000];
    assert_int_equal(reward_with(ad, cookie, "ctx", 1.0, rewarded, sizeof rewarded),
                     MAB_REWARD_COUNTED);
    assert_int_equal(total_rewards(e, "ctx"), 1);
    echo_stats s = read_echo(e);
    assert_true(s.ex[1] == 1.0 && s.ex[0] == 0.0);
    /* The cookie sent back is format 2 and still says rewarded. */
    uint8_t bin[3100];
    size_t bin_len = 0;
    assert_int_equal(sodium_base642bin(bin, sizeof bin, rewarded, strlen(rewarded), NULL, &bin_len,
                                       NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_int_equal(bin[0], 2);
    assert_int_equal(reward_with(ad, rewarded, "ctx", 1.0, NULL, 0), MAB_REWARD_ALREADY_REWARDED);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

/* Format-2 cookies that are not what the adapter signed are refused: a
   feature value changed after signing, one signed by another key, and
   well-signed ones that are malformed (too many features, truncated
   values, an unknown version). */
static void test_forged_v2_cookie_refused(void **state)
{
    (void)state;
    write_echo_config("[\"slot\"]", "");
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    const char *names[] = {"slot"};
    double two[] = {2.0};
    mab_request *rq = begin_with_features(ad, NULL, names, two, 1);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(rq, "ctx", &a, NULL), MAB_OK);
    char cookie[4000];
    cookie_value(mab_request_set_cookie(rq), cookie, sizeof cookie);
    mab_request_end(rq);

    /* Change the feature (the last 8 bytes before the MAC) to 1.0, keep the MAC. */
    uint8_t bin[3100];
    size_t len = 0;
    assert_int_equal(sodium_base642bin(bin, sizeof bin, cookie, strlen(cookie), NULL, &len, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_int_equal(bin[0], 2);
    double v;
    uint64_t bits = 0;
    for (int k = 0; k < 8; k++)
        bits = bits << 8 | bin[len - 32 - 8 + k];
    memcpy(&v, &bits, sizeof v);
    assert_true(v == 2.0); /* the layout is what cookie.h says */
    bin[len - 32 - 8 + 1] ^= 0x10; /* 2.0 -> 1.0 */
    char forged[4000];
    sodium_bin2base64(forged, sizeof forged, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_int_equal(reward_with(ad, forged, "ctx", 1.0, NULL, 0), MAB_REWARD_INVALID_COOKIE);

    /* Signed by another key. */
    char other_key[300];
    snprintf(other_key, sizeof other_key, "%s/other.key", dir);
    assert_int_equal(mab_adapter_keygen(other_key, NULL), MAB_OK);
    char saved[300];
    snprintf(saved, sizeof saved, "%s", key_file);
    snprintf(key_file, sizeof key_file, "%s", other_key);
    sign_cookie(bin, len - 32, forged, sizeof forged);
    snprintf(key_file, sizeof key_file, "%s", saved);
    assert_int_equal(reward_with(ad, forged, "ctx", 1.0, NULL, 0), MAB_REWARD_INVALID_COOKIE);
    /* The same bytes under the right key do verify (the test is sound). */
    bin[len - 32 - 8 + 1] ^= 0x10;
    sign_cookie(bin, len - 32, forged, sizeof forged);
    assert_string_equal(forged, cookie);

    /* Well signed but malformed. */
    uint8_t body[1200], *p = body;
    *p++ = 2, *p++ = 1;
    p = v1_entry(p, (uint32_t)time(NULL), 9);
    *p++ = 65; /* more than MAB__COOKIE_FEATURES_MAX */
    memset(p, 0, 4 + 65 * 8), p += 4 + 65 * 8;
    sign_cookie(body, (size_t)(p - body), forged, sizeof forged);
    assert_int_equal(reward_with(ad, forged, "ctx", 1.0, NULL, 0), MAB_REWARD_INVALID_COOKIE);
    p = body + 2;
    p = v1_entry(p, (uint32_t)time(NULL), 9);
    *p++ = 2; /* two features, one value */
    memset(p, 0, 4 + 8), p += 4 + 8;
    sign_cookie(body, (size_t)(p - body), forged, sizeof forged);
    assert_int_equal(reward_with(ad, forged, "ctx", 1.0, NULL, 0), MAB_REWARD_INVALID_COOKIE);
    p = body + 2;
    p = v1_entry(p, (uint32_t)time(NULL), 9); /* format 2 without the count */
    sign_cookie(body, (size_t)(p - body), forged, sizeof forged);
    assert_int_equal(reward_with(ad, forged, "ctx", 1.0, NULL, 0), MAB_REWARD_INVALID_COOKIE);
    body[0] = 3;
    *p++ = 0;
    sign_cookie(body, (size_t)(p - body), forged, sizeof forged);
    assert_int_equal(reward_with(ad, forged, "ctx", 1.0, NULL, 0), MAB_REWARD_INVALID_COOKIE);
    /* ... and with version 2 it is fine: the cases above fail for their fault. */
    body[0] = 2;
    sign_cookie(body, (size_t)(p - body), forged, sizeof forged);
    assert_int_equal(reward_with(ad, forged, "ctx", 1.0, NULL, 0), MAB_REWARD_COUNTED);
    assert_int_equal(total_rewards(e, "ctx"), 1);
    mab_adapter_close(ad);
    mab_close(e, NULL);
}

/* n experiments "eNN_<pad>" with 64-character arm ids and `features`
   features each. */
static void write_wide_config(int n, int features, const char *extra)
{
    char *text = malloc(200000);
    assert_non_null(text);
    size_t len = (size_t)snprintf(text, 200000,
                                  "{\"plugin_path\": [\"%s\"], \"secret_file\": \"mab.key\"%s,\n"
                        " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\"},\n"
                                  " \"experiments\": {\n",
                                  MAB_PLUGIN_DIR, extra);
    char list[2000] = "[";
    for (int f = 0; f < features; f++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"f%d\"", f ? ", " : "", f);
    strcat(list, "]");
    const char *arm = "arm_with_a_long_id_0123456789012345678901234567890123456789012345";
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(
            text + len, 200000 - len,
            "%s  \"e%02d_experiment_with_a_long_id\": {\"policy\": {\"plugin\": "
            "\"%s/policy_echo.so\", \"features\": %s}, \"arms\": {\"%s\": 1, \"short\": 2}}",
            i ? ",\n" : "", i, MAB_FIXTURE_DIR, list, arm);
    snprintf(text + len, 200000 - len, "}}\n");
    assert_int_equal(test_write_file(config, "%s", text), 0);
    free(text);
}

/* A host's requests follow one another on a thread, and mab_request_end()
   keeps the ended request for the thread's next mab_request_begin()
   (core/adapter/adapter.c: the common case allocates nothing). The next
   request must start empty: nothing of the last one's cookie and entries,
   its forged-cookie state, its redirect, its debug header or its token. */
static void test_reused_request_starts_empty(void **state)
{
    (void)state;
    write_config();
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    mab_error err = {0, ""};

    /* A visitor assigned both experiments. */
    char cookie[4096], header[4200];
    choose_with(ad, NULL, "color", cookie, sizeof cookie);
    choose_with(ad, cookie, "txt", cookie, sizeof cookie);
    assert_true(cookie[0] != '\0');

    /* Request A: that visitor returns, is rewarded and redirected. */
    snprintf(header, sizeof header, "mab=%s", cookie);
    mab_request *a;
    assert_int_equal(mab_request_begin(ad, header, NULL, &a, &err), MAB_OK);
    const char *names[] = {"x"};
    const double values[] = {1.5};
    assert_int_equal(mab_request_set_features(a, names, values, 1, &err), MAB_OK);
    mab_assignment got = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(a, "txt", &got, &err), MAB_OK);
    mab_reward_result res = MAB_STRUCT_INIT(mab_reward_result);
    mab_redirect redir = MAB_STRUCT_INIT(mab_redirect);
    assert_int_equal(mab_request_redirect(a, "color", 1, "/thanks", &res, &redir, &err), MAB_OK);
    assert_int_equal(res.counted, 1);
    assert_string_equal(redir.location, "/thanks");
    assert_non_null(mab_request_token(a));
    assert_non_null(mab_request_set_cookie(a));
    assert_non_null(mab_request_debug_header(a));
    assert_false(isnan(mab_request_probability(a, "color")));
    const mab_request *ended = a;
    mab_request_end(a);

    /* Request B, a new visitor: the same memory, none of A's state. */
    mab_request *b;
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &b, &err), MAB_OK);
    assert_ptr_equal(b, ended); /* reused: else this test would test nothing */
    assert_true(isnan(mab_request_probability(b, "color")));
    assert_true(isnan(mab_request_probability(b, "txt")));
    assert_null(mab_request_token(b));
    assert_null(mab_request_set_cookie(b));
    assert_null(mab_request_debug_header(b));
    res = (mab_reward_result)MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_reward(b, "color", 1, &res, &err), MAB_OK);
    assert_int_equal(res.counted, 0);
    assert_int_equal(res.reason, MAB_REWARD_NO_COOKIE);
    mab_request_end(b);

    /* Request C with a forged cookie, then D without any: D's reward is
       refused for having no cookie, not for C's forged one; D's debug
       header lists only what D chose. */
    mab_request *c;
    assert_int_equal(mab_request_begin(ad, "mab=AAAAnot-a-cookie", NULL, &c, &err), MAB_OK);
    res = (mab_reward_result)MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_reward(c, "color", 1, &res, &err), MAB_OK);
    assert_int_equal(res.reason, MAB_REWARD_INVALID_COOKIE);
    assert_int_equal(mab_request_choose(c, "txt", &got, &err), MAB_OK);
    mab_request_end(c);
    mab_request *d;
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &d, &err), MAB_OK);
    assert_ptr_equal(d, ended);
    res = (mab_reward_result)MAB_STRUCT_INIT(mab_reward_result);
    assert_int_equal(mab_request_reward(d, "color", 1, &res, &err), MAB_OK);
    assert_int_equal(res.reason, MAB_REWARD_NO_COOKIE);
    assert_int_equal(mab_request_choose(d, "color", &got, &err), MAB_OK);
    char want[300];
    snprintf(want, sizeof want, "STORE; color:%s", got.arm_id);
    assert_string_equal(mab_request_debug_header(d), want);
    mab_request_end(d);

    /* Two requests open at once on one thread: two requests, each whole. */
    mab_request *p, *q;
    assert_int_equal(mab_request_begin(ad, header, NULL, &p, &err), MAB_OK);
    assert_int_equal(mab_request_begin(ad, NULL, NULL, &q, &err), MAB_OK);
    assert_ptr_not_equal(p, q);
    assert_false(isnan(mab_request_probability(p, "color")));
    assert_true(isnan(mab_request_probability(q, "color")));
    mab_request_end(p);
    mab_request_end(q);

    mab_adapter_close(ad);
    mab_close(e, NULL);
}

static void test_cookie_too_large_refused(void **state)
{
    (void)state;
    /* Each entry: 28 + 29 + 65 + 4 + 8 * 10 = 206 bytes; 14 of them and the
       overhead make 2918 bytes, 3891 in base64, 3944 with the name and the
       attributes: fits. */
    write_wide_config(14, 10, "");
    mab_engine *e = open_engine();
    mab_adapter *ad = open_adapter(e);
    /* All 13 with every feature: the cookie holds them all. */
    const char *names[10] = {"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"};
    double values[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    mab_request *rq = begin_with_features(ad, NULL, names, values, 10);
    for (int i = 0; i < 14; i++) {
        char id[64];
        snprintf(id, sizeof id, "e%02d_experiment_with_a_long_id", i);
        mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
        assert_int_equal(mab_request_choose(rq, id, &a, NULL), MAB_OK);
    }
    const char *sc = mab_request_set_cookie(rq);
    assert_non_null(sc);
    assert_true(strlen(sc) <= 4096);
    char cookie[5000];
    cookie_value(sc, cookie, sizeof cookie);
    mab_request_end(rq);
    for (int i = 0; i < 14; i++) {
        char id[64];
        snprintf(id, sizeof id, "e%02d_experiment_with_a_long_id", i);
        assert_false(choose_with(ad, cookie, id, NULL, 0).is_new);
    }
    mab_adapter_close(ad);
    mab_close(e, NULL);
    mab_error err = {0, ""};
    assert_int_equal(mab_check(config, NULL, &err), MAB_OK);

    /* One more: refused at mab_adapter_open, by mab_check, naming them. */
    char extras[2][300] = {"", ""};
    char domain[161];
    memset(domain, 'd', 160);
    domain[160] = '\0';
    memcpy(domain + 148, ".example.com", 12);
    snprintf(extras[1], sizeof extras[1], ", \"cookie\": {\"domain\": \"%s\"}", domain);
    for (int k = 0; k < 2; k++) {
        /* k == 1: 14 fit with the default attributes, not with a long domain. */
        write_wide_config(k ? 14 : 15, 10, extras[k]);
        e = open_engine();
        ad = NULL;
        err = (mab_error){0, ""};
        assert_int_equal(mab_adapter_open(e, &ad, &err), MAB_ECONFIG);
        assert_null(ad);
        if (!strstr(err.message, "e00_experiment_with_a_long_id (206 bytes)") ||
            !strstr(err.message, k ? "with entries for 14 experiments" : "for 15 experiments") ||
            !strstr(err.message, "more; shorten their ids") ||
            !strstr(err.message, "4096") || !strstr(err.message, config))
            fail_msg("message: %s", err.message);
        mab_adapter_keys *keys = NULL;
        assert_int_equal(mab_adapter_keys_read(e, &keys, &err), MAB_ECONFIG);
        mab_close(e, NULL);
        err = (mab_error){0, ""};
        assert_int_equal(mab_check(config, NULL, &err), MAB_ECONFIG);
        assert_non_null(strstr(err.message, "e00_experiment_with_a_long_id"));
    }
    /* Fewer features make room again. */
    write_wide_config(15, 2, "");
    err = (mab_error){0, ""};
    if (mab_check(config, NULL, &err) != MAB_OK)
        fail_msg("%s", err.message);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_features_reach_choose_and_update, each),
        cmocka_unit_test_setup(test_nonfinite_feature_is_missing, each),
        cmocka_unit_test_setup(test_features_of_another_list_are_missing, each),
        cmocka_unit_test_setup(test_v1_cookie_still_decodes, each),
        cmocka_unit_test_setup(test_forged_v2_cookie_refused, each),
        cmocka_unit_test_setup(test_cookie_too_large_refused, each),
        cmocka_unit_test_setup(test_reused_request_starts_empty, each),
        cmocka_unit_test_setup(test_cookie_round_trip, each),
        cmocka_unit_test_setup(test_every_mutation_is_rejected, each),
        cmocka_unit_test_setup(test_expiry, each),
        cmocka_unit_test_setup(test_redirect_guard, each),
        cmocka_unit_test_setup(test_stacked_experiments, each),
        cmocka_unit_test_setup(test_replay_refused, each),
        cmocka_unit_test_setup(test_uncounted_rewards_say_why, each),
        cmocka_unit_test_setup(test_key_rotation, each),
        cmocka_unit_test_setup(test_config_keys, each),
        cmocka_unit_test_setup(test_secret_file, each),
        cmocka_unit_test_setup(test_assignment_ids_differ_across_fork, each),
        cmocka_unit_test_setup(test_claim_shared_by_adapters, each),
        cmocka_unit_test_setup(test_failed_claim_counts_on_retry, each),
        cmocka_unit_test_setup(test_no_claims_before_abi_1_3, each),
#ifdef MAB_TEST_LMDB
        cmocka_unit_test_setup(test_claim_across_processes_and_restart, each),
        cmocka_unit_test_setup(test_claim_outlives_replay_memory, each),
#endif
        cmocka_unit_test_setup(test_concurrent_claims, each),
        cmocka_unit_test_setup(test_refused_claim_blocks_no_one, each),
        cmocka_unit_test_setup(test_counters_exact_across_threads, each),
        cmocka_unit_test_setup(test_overflowing_claim_refused_unclaimed, each),
#ifdef MAB_TEST_LMDB
        cmocka_unit_test_setup(test_claim_stats_once_lmdb, each),
#endif
    };
    /* MAB_TEST_FILTER=test_features* runs some of them (while iterating). */
    if (getenv("MAB_TEST_FILTER"))
        cmocka_set_test_filter(getenv("MAB_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
