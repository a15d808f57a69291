/*
 * test_records.c - the record-set JSON reader and writer shared by `mab
 * export`/`mab import` and the json_file storage plugin
 * (include/mab/records.h): exact round trips, the documents older versions
 * wrote, and hostile input refused with the file and JSON path named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mab/records.h"

#define NAME "/srv/state/counters.json"

static void assert_records_equal(const mab_record *a, const mab_record *b)
{
    assert_string_equal(a->experiment, b->experiment);
    assert_string_equal(a->arm, b->arm);
    assert_int_equal(a->pulls, b->pulls);
    assert_int_equal(a->rewards, b->rewards);
    /* Bit for bit: -0.0 and 0.0 differ, and so would a last-digit rounding. */
    assert_memory_equal(&a->reward_sum, &b->reward_sum, sizeof(double));
    assert_memory_equal(&a->reward_sum_sq, &b->reward_sum_sq, sizeof(double));
}

static char *print_ok(mab_records_kind kind, const mab_record *r, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    mab_error err = {0};
    int rc = mab_records_print(kind, r, n, &text, &len, &err);
    if (rc != MAB_OK)
        fail_msg("print: %d %s", rc, err.message);
    assert_int_equal(len, strlen(text));
    return text;
}

static void test_round_trip_is_bit_exact(void **state)
{
    (void)state;
    const double third = 1.0 / 3.0;
    const mab_record in[] = {
        {"color_btn", "green", 1200, 48, 0.1 + 0.2, 3.3333333333333335, },
        {"color_btn", "red", 0, 0, -0.0, 0.0},
        {"txt_btn", "casual", MAB_RECORDS_COUNTER_MAX, MAB_RECORDS_COUNTER_MAX, -2.5e-300,
         1.7976931348623157e308},
        {"txt_btn", "neutral \"quoted\" \\ \xc3\xbc \t\n\x01", 5, 4, 123456.789, 4.9e-324},
        /* Not adjacent to its experiment's other records: grouped all the same. */
        {"color_btn", "blue", 7, 3, third, third * third},
        {"e", "", 1, 1, 1e-320, 9007199254740993.0},
    };
    size_t n = sizeof in / sizeof in[0];
    for (int kind = MAB_RECORDS_EXPORT; kind <= MAB_RECORDS_JSON_STORE; kind++) {
        char *text = print_ok(kind, in, n);
        mab_record *out = NULL;
        size_t n_out = 0;
        mab_error err = {0};
        int rc = mab_records_parse(text, strlen(text), NAME, kind, &out, &n_out, &err);
        if (rc != MAB_OK)
            fail_msg("parse: %d %s in %s", rc, err.message, text);
        assert_int_equal(n_out, n);
        /* Grouped by experiment, in order of first appearance. */
        const size_t order[] = {0, 1, 4, 2, 3, 5};
        for (size_t i = 0; i < n; i++)
            assert_records_equal(&out[i], &in[order[i]]);
        /* Printing what was read gives the same text again. */
        char *again = print_ok(kind, out, n_out);
        assert_string_equal(again, text);
        free(again);
        mab_records_free(out);
        free(text);
    }
}

static void test_text_shape(void **state)
{
    (void)state;
    const mab_record r = {"btn", "red", 3, 1, 0.7, 0.49};
    char *text = print_ok(MAB_RECORDS_EXPORT, &r, 1);
    assert_string_equal(text, "{\n\t\"format\":\t\"mab-export\",\n\t\"version\":\t1,\n"
                              "\t\"experiments\":\t{\n\t\t\"btn\":\t{\n\t\t\t\"red\":\t{\n"
                              "\t\t\t\t\"pulls\":\t3,\n\t\t\t\t\"rewards\":\t1,\n"
                              "\t\t\t\t\"reward_sum\":\t0.7,\n"
                              "\t\t\t\t\"reward_sum_sq\":\t0.49\n\t\t\t}\n\t\t}\n\t}\n}\n");
    free(text);
    text = print_ok(MAB_RECORDS_JSON_STORE, NULL, 0);
    assert_string_equal(text, "{\n\t\"format\":\t\"mab-json-storage\",\n\t\"version\":\t1,\n"
                              "\t\"experiments\":\t{\n\t}\n}\n");
    free(text);
    assert_string_equal(mab_records_format_tag(MAB_RECORDS_EXPORT), "mab-export");
    assert_string_equal(mab_records_format_tag(MAB_RECORDS_JSON_STORE), "mab-json-storage");
    assert_null(mab_records_format_tag((mab_records_kind)99));
}

static mab_record *parse_ok(const char *text, mab_records_kind kind, size_t *n)
{
    mab_record *out = NULL;
    mab_error err = {0};
    int rc = mab_records_parse(text, strlen(text), NAME, kind, &out, n, &err);
    if (rc != MAB_OK)
        fail_msg("parse: %d %s", rc, err.message);
    return out;
}

/* What `mab export` and the json_file plugin wrote before they shared this code. */
static void test_reads_older_layouts(void **state)
{
    (void)state;
    const char *old_export = "{\n  \"format\": \"mab-export\",\n  \"version\": 1,\n"
                             "  \"experiments\": {\n    \"btn\": {\n"
                             "      \"green\": {\"pulls\": 5, \"rewards\": 2, \"reward_sum\": "
                             "1.5, \"reward_sum_sq\": 1.25},\n"
                             "      \"red\": {\"pulls\": 3, \"rewards\": 1, \"reward_sum\": "
                             "0.69999999999999996, \"reward_sum_sq\": 0.48999999999999994}\n"
                             "    }\n  }\n}\n";
    size_t n;
    mab_record *r = parse_ok(old_export, MAB_RECORDS_EXPORT, &n);
    assert_int_equal(n, 2);
    mab_record want[] = {{"btn", "green", 5, 2, 1.5, 1.25},
                         {"btn", "red", 3, 1, 0.7, 0.48999999999999994}};
    assert_records_equal(&r[0], &want[0]);
    assert_records_equal(&r[1], &want[1]);
    mab_records_free(r);

    const char *old_store = "{\n\t\"format\":\t\"mab-json-storage\",\n\t\"version\":\t1,\n"
                            "\t\"experiments\":\t{\n\t\t\"e\":\t{\n\t\t\t\"a\":\t{\n"
                            "\t\t\t\t\"pulls\":\t9007199254740992,\n\t\t\t\t\"rewards\":\t0,\n"
                            "\t\t\t\t\"reward_sum\":\t-2.5e-300,\n"
                            "\t\t\t\t\"reward_sum_sq\":\t1e-320\n\t\t\t}\n\t\t}\n\t}\n}\n";
    r = parse_ok(old_store, MAB_RECORDS_JSON_STORE, &n);
    assert_int_equal(n, 1);
    mab_record w = {"e", "a", MAB_RECORDS_COUNTER_MAX, 0, -2.5e-300, 1e-320};
    assert_records_equal(&r[0], &w);
    mab_records_free(r);

    /* No records at all, and experiments without arms. */
    r = parse_ok("{\"format\":\"mab-export\",\"version\":1,\"experiments\":{\"x\":{}}}",
                 MAB_RECORDS_EXPORT, &n);
    assert_int_equal(n, 0);
    assert_null(r);
}

/* text of `len` bytes must be refused with MAB_ECORRUPT, naming NAME and `fragment`. */
static void refused_len(const char *text, size_t len, mab_records_kind kind,
                        const char *fragment)
{
    mab_record *out = (mab_record *)(uintptr_t)0x1;
    size_t n = 12345;
    mab_error err = {0};
    int rc = mab_records_parse(text, len, NAME, kind, &out, &n, &err);
    if (rc != MAB_ECORRUPT)
        fail_msg("expected MAB_ECORRUPT for '%.*s', got %d: %s", (int)len, text, rc,
                 err.message);
    assert_int_equal(err.code, MAB_ECORRUPT);
    assert_ptr_equal(out, (mab_record *)(uintptr_t)0x1); /* untouched */
    assert_int_equal(n, 12345);
    if (strncmp(err.message, NAME ": ", strlen(NAME) + 2) != 0)
        fail_msg("\"%s\" does not start with the name", err.message);
    if (!strstr(err.message, fragment))
        fail_msg("\"%s\" does not contain \"%s\"", err.message, fragment);
}

static void refused(const char *text, const char *fragment)
{
    refused_len(text, strlen(text), MAB_RECORDS_EXPORT, fragment);
}

#define DOC(exps) "{\"format\":\"mab-export\",\"version\":1,\"experiments\":{" exps "}}"
#define ARM(fields) DOC("\"btn\":{\"green\":{" fields "}}")
#define OK_FIELDS "\"pulls\":5,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":1"

static void test_hostile_numbers(void **state)
{
    (void)state;
    const char *counter = "expected a non-negative integer (at most 2^53)";
    refused(ARM("\"pulls\":-5,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":1"),
            "experiments.btn.green.pulls: expected a non-negative integer");
    refused(ARM("\"pulls\":5,\"rewards\":-1,\"reward_sum\":1,\"reward_sum_sq\":1"),
            "experiments.btn.green.rewards: expected a non-negative integer");
    refused(ARM("\"pulls\":0.5,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":1"),
            "experiments.btn.green.pulls");
    /* 2^53 + 2: the first counter a double can hold but JSON readers may round. */
    refused(ARM("\"pulls\":9007199254740994,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":1"),
            counter);
    refused(ARM("\"pulls\":1e999,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":1"),
            "experiments.btn.green.pulls");
    /* Numbers too large for a double read as infinities: refused. */
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":1e999,\"reward_sum_sq\":1"),
            "experiments.btn.green.reward_sum: expected a finite number");
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":-1e999,\"reward_sum_sq\":1"),
            "experiments.btn.green.reward_sum: expected a finite number");
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":1e400"),
            "experiments.btn.green.reward_sum_sq: expected a finite, non-negative number");
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":-0.5"),
            "experiments.btn.green.reward_sum_sq");
    /* JSON has no NaN or Infinity: such text is not JSON at all. */
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":NaN,\"reward_sum_sq\":1"),
            "invalid JSON at line 1, column");
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":Infinity,\"reward_sum_sq\":1"),
            "invalid JSON at line 1, column");
    /* A negative reward sum is fine: reward ranges may be negative. */
    size_t n;
    mab_record *r =
        parse_ok(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":-3.5,\"reward_sum_sq\":12.25"),
                 MAB_RECORDS_EXPORT, &n);
    assert_int_equal(n, 1);
    assert_true(r[0].reward_sum == -3.5);
    mab_records_free(r);
}

static void test_hostile_types_and_fields(void **state)
{
    (void)state;
    refused(ARM("\"pulls\":\"5\",\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":1"),
            "experiments.btn.green.pulls");
    refused(ARM("\"pulls\":true,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":1"),
            "experiments.btn.green.pulls");
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":null,\"reward_sum_sq\":1"),
            "experiments.btn.green.reward_sum: expected a finite number");
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":[1],\"reward_sum_sq\":1"),
            "experiments.btn.green.reward_sum");
    refused(ARM("\"pulls\":5,\"rewards\":1,\"reward_sum\":1"), "experiments.btn.green.reward_sum_sq");
    refused(ARM(OK_FIELDS ",\"mean\":1"), "experiments.btn.green.mean: unknown field");
    refused(ARM(OK_FIELDS ",\"pulls\":6"), "experiments.btn.green.pulls: duplicate field");
    refused(DOC("\"btn\":{\"green\":[1,2]}"), "experiments.btn.green: expected an object");
    refused(DOC("\"btn\":[]"), "experiments.btn: expected an object");
    refused(DOC("\"btn\":3"), "experiments.btn: expected an object");
    refused("{\"format\":\"mab-export\",\"version\":1,\"experiments\":[]}",
            "experiments: expected an object");
    refused("{\"format\":\"mab-export\",\"version\":1}", "experiments: expected an object");
    refused("{\"format\":\"mab-export\",\"version\":\"1\",\"experiments\":{}}",
            "version: expected an integer");
    refused("{\"format\":\"mab-export\",\"experiments\":{}}", "version: expected an integer");
    refused("{\"format\":\"mab-export\",\"version\":2,\"experiments\":{}}",
            "unsupported export version 2 (this libmab reads version 1)");
    refused("{\"format\":\"mab-export\",\"version\":1.5,\"experiments\":{}}",
            "unsupported export version 1.5");
    refused("{\"format\":\"mab-export\",\"version\":1,\"experiments\":{},\"extra\":1}",
            "extra: unknown field");
    refused("{\"format\":\"mab-export\",\"version\":1,\"version\":1,\"experiments\":{}}",
            "version: duplicate field");
    refused("{\"version\":1,\"experiments\":{}}", "format: expected \"mab-export\"");
    refused("{\"format\":7,\"version\":1,\"experiments\":{}}", "format: expected \"mab-export\"");
    refused("[1,2,3]", "expected a JSON object at the top level");
    refused("\"mab-export\"", "expected a JSON object at the top level");
    /* One kind is not the other. */
    refused("{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{}}",
            "format: expected \"mab-export\" (a file written by `mab export`)");
    const char *export_doc = DOC("");
    refused_len(export_doc, strlen(export_doc), MAB_RECORDS_JSON_STORE,
                "format: expected \"mab-json-storage\"");
    refused_len("{\"format\":\"mab-json-storage\",\"version\":3,\"experiments\":{}}",
                strlen("{\"format\":\"mab-json-storage\",\"version\":3,\"experiments\":{}}"),
                MAB_RECORDS_JSON_STORE, "unsupported json_file store version 3");
}

static void test_duplicates(void **state)
{
    (void)state;
    refused(DOC("\"btn\":{\"green\":{" OK_FIELDS "},\"red\":{" OK_FIELDS "},\"green\":{" OK_FIELDS
                "}}"),
            "experiments.btn.green: duplicate record");
    refused(DOC("\"btn\":{\"green\":{" OK_FIELDS "}},\"other\":{},\"btn\":{\"red\":{" OK_FIELDS
                "}}"),
            "experiments.btn: duplicate experiment");
    /* The same arm id in two experiments is two records. */
    size_t n;
    mab_record *r = parse_ok(DOC("\"a\":{\"x\":{" OK_FIELDS "}},\"b\":{\"x\":{" OK_FIELDS "}}"),
                             MAB_RECORDS_EXPORT, &n);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].experiment, "a");
    assert_string_equal(r[1].experiment, "b");
    mab_records_free(r);
    /* Many records: duplicates are found by hashing, the last one too. */
    enum { MANY = 3000 };
    mab_record *many = calloc(MANY + 1, sizeof *many);
    char (*ids)[16] = calloc(MANY, sizeof *ids);
    assert_non_null(many);
    assert_non_null(ids);
    for (size_t i = 0; i < MANY; i++) {
        snprintf(ids[i], sizeof ids[i], "arm%zu", i);
        many[i] = (mab_record){i % 2 ? "odd" : "even", ids[i], i, 0, 0, 0};
    }
    char *text = print_ok(MAB_RECORDS_EXPORT, many, MANY);
    r = parse_ok(text, MAB_RECORDS_EXPORT, &n);
    assert_int_equal(n, MANY);
    mab_records_free(r);
    free(text);
    many[MANY] = many[1234];
    mab_error err = {0};
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, many, MANY + 1, &text, NULL, &err),
                     MAB_EINVAL);
    assert_string_equal(err.message, "experiments.even.arm1234: the record is given twice");
    free(many);
    free(ids);
}

static void test_truncated_and_malformed(void **state)
{
    (void)state;
    const mab_record in[] = {{"btn", "green", 5, 2, 0.1, 0.01}, {"btn", "red", 3, 1, 0.7, 0.49}};
    char *text = print_ok(MAB_RECORDS_EXPORT, in, 2);
    size_t len = strlen(text);
    /* Every proper prefix is refused; only the final newline may go. */
    for (size_t cut = 0; cut + 1 < len; cut++)
        refused_len(text, cut, MAB_RECORDS_EXPORT, cut ? "invalid JSON at line" : "empty");
    size_t n;
    mab_record *out = NULL;
    mab_error err = {0};
    assert_int_equal(mab_records_parse(text, len - 1, NAME, MAB_RECORDS_EXPORT, &out, &n, &err),
                     MAB_OK);
    assert_int_equal(n, 2);
    mab_records_free(out);
    /* The position is the one where the JSON went wrong. */
    refused("{\"format\":\"mab-export\",\n\"version\":1,\n\"experiments\":{x}}",
            "invalid JSON at line 3, column 1");
    refused(DOC("") " trailing", "invalid JSON at line 1, column 54");
    refused(DOC("") "{}", "invalid JSON at line 1, column 53");
    /* A NUL byte inside the text. */
    char with_nul[] = "{\"format\":\"mab-export\",\0\"version\":1,\"experiments\":{}}";
    refused_len(with_nul, sizeof with_nul - 1, MAB_RECORDS_EXPORT,
                "invalid JSON at line 1, column 24");
    refused_len("", 0, MAB_RECORDS_EXPORT, "the file is empty");
    refused("   \n", "invalid JSON at line 1");
    free(text);
}

static void test_writer_refusals(void **state)
{
    (void)state;
    char *text = (char *)(uintptr_t)0x1;
    mab_error err = {0};
    mab_record r = {"btn", "green", 1, 1, NAN, 0};
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, &r, 1, &text, NULL, &err), MAB_EINVAL);
    assert_string_equal(err.message, "experiments.btn.green.reward_sum: not a finite number");
    r.reward_sum = INFINITY;
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, &r, 1, &text, NULL, &err), MAB_EINVAL);
    r.reward_sum = 1;
    r.reward_sum_sq = -1;
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, &r, 1, &text, NULL, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "experiments.btn.green.reward_sum_sq"));
    r.reward_sum_sq = NAN;
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, &r, 1, &text, NULL, &err), MAB_EINVAL);
    r.reward_sum_sq = 1;
    r.pulls = MAB_RECORDS_COUNTER_MAX + 1;
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, &r, 1, &text, NULL, &err), MAB_ERANGE);
    assert_non_null(strstr(err.message, "experiments.btn.green.pulls"));
    r.pulls = 1;
    r.rewards = UINT64_MAX;
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, &r, 1, &text, NULL, &err), MAB_ERANGE);
    r.rewards = 1;
    r.arm = NULL;
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, &r, 1, &text, NULL, &err), MAB_EINVAL);
    r.arm = "green";
    assert_int_equal(mab_records_print((mab_records_kind)0, &r, 1, &text, NULL, &err), MAB_EINVAL);
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, &r, 1, NULL, NULL, &err), MAB_EINVAL);
    assert_ptr_equal(text, (char *)(uintptr_t)0x1); /* untouched by every failure */

    mab_record *out;
    size_t n;
    assert_int_equal(mab_records_parse("{}", 2, NULL, MAB_RECORDS_EXPORT, &out, &n, &err),
                     MAB_EINVAL);
    assert_int_equal(mab_records_parse("{}", 2, NAME, (mab_records_kind)7, &out, &n, &err),
                     MAB_EINVAL);
    /* err may be NULL. */
    assert_int_equal(mab_records_parse("{", 1, NAME, MAB_RECORDS_EXPORT, &out, &n, NULL),
                     MAB_ECORRUPT);
}

static void test_write_to_stream(void **state)
{
    (void)state;
    const mab_record r = {"btn", "red", 3, 1, 0.7, 0.49};
    FILE *f = tmpfile();
    assert_non_null(f);
    mab_error err = {0};
    assert_int_equal(mab_records_write(f, "tmpfile", MAB_RECORDS_EXPORT, &r, 1, &err), MAB_OK);
    long size = ftell(f);
    rewind(f);
    char buf[1024];
    size_t got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char *text = print_ok(MAB_RECORDS_EXPORT, &r, 1);
    assert_int_equal(got, (size_t)size);
    assert_int_equal(got, strlen(text));
    assert_memory_equal(buf, text, got);
    free(text);

    /* A stream that cannot take the text: MAB_EIO naming it. */
    FILE *full = fopen("/dev/full", "w");
    assert_non_null(full);
    setvbuf(full, NULL, _IONBF, 0);
    assert_int_equal(mab_records_write(full, "/dev/full", MAB_RECORDS_EXPORT, &r, 1, &err),
                     MAB_EIO);
    assert_non_null(strstr(err.message, "/dev/full: cannot write: "));
    fclose(full);
}

/* Policy statistics ride in "policy_stats": bit exact both ways, strict. */
static void test_policy_stats_field(void **state)
{
    (void)state;
    const mab_record rec[1] = {{"exp", "a", 3, 1, 0.5, 0.25}};
    const double arm_values[2] = {0.1 + 0.2, 1e-300};
    const double own_values[1] = {-7.125};
    const mab_stats_record st[2] = {{"exp", "a", "exp3/1:2,1", arm_values, 2},
                                    {"exp", NULL, "exp3/1:2,1", own_values, 1}};
    char *text = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_records_print_stats(MAB_RECORDS_JSON_STORE, rec, 1, st, 2, &text, NULL,
                                             &err),
                     MAB_OK);
    mab_record *records = NULL;
    mab_stats_record *stats = NULL;
    size_t n = 0, n_stats = 0;
    assert_int_equal(mab_records_parse_stats(text, strlen(text), "t", MAB_RECORDS_JSON_STORE,
                                             &records, &n, &stats, &n_stats, &err),
                     MAB_OK);
    assert_int_equal(n, 1);
    assert_int_equal(n_stats, 2);
    assert_string_equal(stats[0].arm, "a");
    assert_null(stats[1].arm);
    assert_string_equal(stats[1].layout, "exp3/1:2,1");
    assert_memory_equal(stats[0].values, arm_values, sizeof arm_values);
    assert_true(stats[1].values[0] == -7.125);
    mab_records_stats_free(stats);
    mab_records_free(records);
    /* The plain reader refuses the field, as any unknown one. */
    assert_int_equal(mab_records_parse(text, strlen(text), "t", MAB_RECORDS_JSON_STORE,
                                       &records, &n, &err),
                     MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "policy_stats: unknown field"));
    free(text);
    /* Without statistics the text is exactly mab_records_print()'s. */
    char *plain = NULL, *with_none = NULL;
    assert_int_equal(mab_records_print(MAB_RECORDS_EXPORT, rec, 1, &plain, NULL, &err), MAB_OK);
    assert_int_equal(mab_records_print_stats(MAB_RECORDS_EXPORT, rec, 1, NULL, 0, &with_none,
                                             NULL, &err),
                     MAB_OK);
    assert_string_equal(plain, with_none);
    free(plain);
    free(with_none);
    /* Duplicates and non-finite values are refused, naming the entry. */
    const mab_stats_record twice[2] = {st[0], st[0]};
    assert_int_equal(mab_records_print_stats(MAB_RECORDS_JSON_STORE, rec, 1, twice, 2, &text,
                                             NULL, &err),
                     MAB_EINVAL);
    assert_non_null(strstr(err.message, "policy_stats[1]"));
    const char *bad = "{\"format\": \"mab-json-storage\", \"version\": 1, \"experiments\": {},"
                      " \"policy_stats\": [{\"experiment\": \"e\", \"layout\": \"l\","
                      " \"values\": [1, \"x\"]}]}";
    assert_int_equal(mab_records_parse_stats(bad, strlen(bad), "t", MAB_RECORDS_JSON_STORE,
                                             &records, &n, &stats, &n_stats, &err),
                     MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "policy_stats[0].values[1]"));
    const char *dup = "{\"format\": \"mab-json-storage\", \"version\": 1, \"experiments\": {},"
                      " \"policy_stats\": [{\"experiment\": \"e\", \"layout\": \"l\", \"values\": []},"
                      " {\"experiment\": \"e\", \"layout\": \"l\", \"values\": []}]}";
    assert_int_equal(mab_records_parse_stats(dup, strlen(dup), "t", MAB_RECORDS_JSON_STORE,
                                             &records, &n, &stats, &n_stats, &err),
                     MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "duplicate"));
}

/* Time buckets (json_file store): a bit-exact round trip, grouped by
   experiment and arm; the writer refuses what the reader would (out of
   order, duplicates, non-finite, out of range, an export), naming the
   bucket; the other readers refuse the field as unknown. */
static void test_buckets_field(void **state)
{
    (void)state;
    const mab_record rec[1] = {{"exp", "a", 3, 1, 0.5, 0.25}};
    const mab_bucket_record bk[4] = {
        {"exp", "a", -3600, 1, 1, 0.1 + 0.2, 1e-300},
        {"exp", "a", 7200, 2, 0, -0.0, 0},
        {"exp", "b", MAB_RECORDS_BUCKET_START_MAX, MAB_RECORDS_COUNTER_MAX, 1, 1e300, 1.7e308},
        {"other", "a", 0, 0, 0, 0, 0}};
    char *text = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_records_print_state(MAB_RECORDS_JSON_STORE, rec, 1, NULL, 0, NULL, 0,
                                             bk, 4, &text, NULL, &err),
                     MAB_OK);
    mab_record *records = NULL;
    mab_bucket_record *got = NULL;
    size_t n = 0, n_got = 0;
    assert_int_equal(mab_records_parse_state(text, strlen(text), "t", MAB_RECORDS_JSON_STORE,
                                             &records, &n, NULL, NULL, NULL, NULL, &got, &n_got,
                                             &err),
                     MAB_OK);
    assert_int_equal(n_got, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(got[i].experiment, bk[i].experiment);
        assert_string_equal(got[i].arm, bk[i].arm);
        assert_true(got[i].start == bk[i].start);
        assert_int_equal(got[i].pulls, bk[i].pulls);
        assert_int_equal(got[i].rewards, bk[i].rewards);
        assert_memory_equal(&got[i].reward_sum, &bk[i].reward_sum, sizeof(double));
        assert_memory_equal(&got[i].reward_sum_sq, &bk[i].reward_sum_sq, sizeof(double));
    }
    mab_records_buckets_free(got);
    mab_records_free(records);
    assert_int_equal(mab_records_parse_store(text, strlen(text), "t", MAB_RECORDS_JSON_STORE,
                                             &records, &n, NULL, NULL, NULL, NULL, &err),
                     MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "buckets: unknown field"));
    free(text);
    /* Without buckets the text is exactly mab_records_print_store()'s. */
    char *plain = NULL, *with_none = NULL;
    assert_int_equal(mab_records_print_store(MAB_RECORDS_JSON_STORE, rec, 1, NULL, 0, NULL, 0,
                                             &plain, NULL, &err),
                     MAB_OK);
    assert_int_equal(mab_records_print_state(MAB_RECORDS_JSON_STORE, rec, 1, NULL, 0, NULL, 0,
                                             NULL, 0, &with_none, NULL, &err),
                     MAB_OK);
    assert_string_equal(plain, with_none);
    free(plain);
    free(with_none);
    struct {
        mab_bucket_record b[2];
        int code;
        const char *names;
    } bad[] = {
        {{{"e", "a", 10, 1, 1, 1, 1}, {"e", "a", 10, 1, 1, 1, 1}}, MAB_EINVAL, "buckets.e.a[1]"},
        {{{"e", "a", 10, 1, 1, 1, 1}, {"e", "a", 9, 1, 1, 1, 1}}, MAB_EINVAL, "buckets.e.a[1]"},
        {{{"e", "a", 10, 1, 1, 1, 1}, {"e", "b", 9, 1, 1, NAN, 1}}, MAB_EINVAL, "buckets.e.b[0]"},
        {{{"e", "a", 10, 1, 1, 1, -1}, {"e", "b", 9, 1, 1, 1, 1}}, MAB_EINVAL, "buckets.e.a[0]"},
        {{{"e", "a", MAB_RECORDS_BUCKET_START_MAX + 1, 1, 1, 1, 1}, {"e", "b", 9, 1, 1, 1, 1}},
         MAB_EINVAL, "buckets.e.a[0]"},
        {{{"e", "a", 1, MAB_RECORDS_COUNTER_MAX + 1, 1, 1, 1}, {"e", "b", 9, 1, 1, 1, 1}},
         MAB_ERANGE, "buckets.e.a[0]"},
        {{{"e", "", 1, 1, 1, 1, 1}, {"e", "b", 9, 1, 1, 1, 1}}, MAB_EINVAL, "buckets[0]"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        text = NULL;
        int rc = mab_records_print_state(MAB_RECORDS_JSON_STORE, rec, 1, NULL, 0, NULL, 0,
                                         bad[k].b, 2, &text, NULL, &err);
        if (rc != bad[k].code || !strstr(err.message, bad[k].names))
            fail_msg("case %zu: %d %s", k, rc, err.message);
        assert_null(text);
    }
    assert_int_equal(mab_records_print_state(MAB_RECORDS_EXPORT, rec, 1, NULL, 0, NULL, 0, bk, 1,
                                             &text, NULL, &err),
                     MAB_EINVAL);
}

/* The json_file journal's framing (records.h 0.3): a header names its
   snapshot; entries are visited in order up to the first one cut short,
   of an impossible length or failing its checksum, which is named. */
struct frames_seen {
    int n;
    size_t lens[4];
    uint64_t offsets[4];
};

static int see_frame(void *ctx, const unsigned char *payload, size_t n, uint64_t offset)
{
    struct frames_seen *s = ctx;
    (void)payload;
    if (s->n < 4) {
        s->lens[s->n] = n;
        s->offsets[s->n] = offset;
    }
    s->n++;
    return 0;
}

static void test_journal_framing(void **state)
{
    (void)state;
    const char *snap = "{\"format\": \"mab-json-storage\"}\n";
    unsigned char buf[256];
    mab_records_journal_header(snap, strlen(snap), buf);
    int follows = -1;
    mab_error err = {0};
    assert_int_equal(mab_records_journal_follows("j", buf, 32, snap, strlen(snap), &follows, &err),
                     MAB_OK);
    assert_int_equal(follows, 1);
    const char *other = "{\"format\": \"mab-json-storage\"} \n";
    assert_int_equal(mab_records_journal_follows("j", buf, 32, other, strlen(other), &follows,
                                                 &err),
                     MAB_OK);
    assert_int_equal(follows, 0);
    assert_int_equal(mab_records_journal_follows("j", buf, 31, snap, strlen(snap), &follows, &err),
                     MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "j: byte 0: the journal header is cut short"));
    buf[9] ^= 1; /* the snapshot length: the header's own checksum fails */
    assert_int_equal(mab_records_journal_follows("j", buf, 32, snap, strlen(snap), &follows, &err),
                     MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "fails its checksum"));
    buf[9] ^= 1;
    buf[0] = 'X';
    assert_int_equal(mab_records_journal_follows("j", buf, 32, snap, strlen(snap), &follows, &err),
                     MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "not a json_file journal"));

    /* Two entries of 3 and 5 bytes, then a third cut short. */
    unsigned char *p = buf + 32;
    mab_records_journal_frame("abc", 3, p);
    memcpy(p + 12, "abc", 3);
    p += 15;
    mab_records_journal_frame("defgh", 5, p);
    memcpy(p + 12, "defgh", 5);
    p += 17;
    mab_records_journal_frame("ijkl", 4, p);
    memcpy(p + 12, "ijkl", 4);
    size_t whole = (size_t)(p + 16 - buf);
    struct frames_seen s = {0};
    uint64_t end = 0;
    char why[200];
    assert_int_equal(mab_records_journal_entries(buf + 32, whole - 32, 32, see_frame, &s, &end,
                                                 why, sizeof why),
                     0);
    assert_int_equal(s.n, 3);
    assert_int_equal(end, whole);
    assert_string_equal(why, "");
    assert_int_equal(s.lens[1], 5);
    assert_int_equal(s.offsets[1], 47);
    memset(&s, 0, sizeof s);
    assert_int_equal(mab_records_journal_entries(buf + 32, whole - 33, 32, see_frame, &s, &end,
                                                 why, sizeof why),
                     0);
    assert_int_equal(s.n, 2);
    assert_int_equal(end, 64);
    assert_string_equal(why, "the entry at byte 64 is cut short (15 of 16 bytes)");
    memset(&s, 0, sizeof s);
    assert_int_equal(mab_records_journal_entries(buf + 32, 40, 32, see_frame, &s, &end, why,
                                                 sizeof why),
                     0);
    assert_string_equal(why, "the entry at byte 64 is cut short in its frame (8 of 12 bytes)");
    buf[47 + 12 + 2] ^= 0x40; /* a payload byte of entry 2 */
    memset(&s, 0, sizeof s);
    assert_int_equal(mab_records_journal_entries(buf + 32, whole - 32, 32, see_frame, &s, &end,
                                                 why, sizeof why),
                     0);
    assert_int_equal(s.n, 1);
    assert_int_equal(end, 47);
    assert_string_equal(why, "the entry at byte 47 fails its checksum");
    memset(buf + 32, 0, 4); /* a length of 0 */
    assert_int_equal(mab_records_journal_entries(buf + 32, whole - 32, 32, see_frame, &s, &end,
                                                 why, sizeof why),
                     0);
    assert_int_equal(end, 32);
    assert_string_equal(why, "the entry at byte 32 has an impossible length (0)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_is_bit_exact),
        cmocka_unit_test(test_text_shape),
        cmocka_unit_test(test_reads_older_layouts),
        cmocka_unit_test(test_hostile_numbers),
        cmocka_unit_test(test_hostile_types_and_fields),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_truncated_and_malformed),
        cmocka_unit_test(test_writer_refusals),
        cmocka_unit_test(test_write_to_stream),
        cmocka_unit_test(test_policy_stats_field),
        cmocka_unit_test(test_buckets_field),
        cmocka_unit_test(test_journal_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
