/*
 * test_id_index.c - core/id_index.c, compiled in: the id index that the
 * string-keyed calls (mab_choose, mab_reward) look experiments and arms up
 * with (issue 18: an id of at most 8 bytes is its own key).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../core/id_index.h"

typedef struct named {
    char *id; /* first member, as mab__arm and mab__experiment */
    int payload;
} named;

static named *make(char **ids, size_t n)
{
    named *v = calloc(n, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i].id = ids[i];
    return v;
}

static long find(const mab__id_index *ix, const named *v, const char *id)
{
    long inline_at = mab__id_index_lookup(ix, v, sizeof *v, id);
    long called_at = mab__id_index_find(ix, v, sizeof *v, id);
    assert_int_equal(inline_at, called_at); /* both entry points agree */
    return inline_at;
}

/* Ids that differ in one byte anywhere, that are prefixes of one another,
   that share their first or last 8 bytes, of every length from 1 to 40 and
   with bytes above 127: each found at its own position, and every id one
   byte longer, shorter or different is not found. */
static void test_every_id_found_and_near_misses_not(void **unused)
{
    (void)unused;
    enum { MAX = 400 };
    char *ids[MAX];
    size_t n = 0;
    char buf[64];
    for (size_t len = 1; len <= 40; len++) { /* x, xx, xxx, ... */
        memset(buf, 'x', len);
        buf[len] = '\0';
        ids[n++] = strdup(buf);
    }
    for (size_t len = 1; len <= 20; len++)
        for (size_t at = 0; at < len; at++) { /* xxxyxxx: one byte differs */
            memset(buf, 'x', len);
            buf[at] = 'y';
            buf[len] = '\0';
            ids[n++] = strdup(buf);
        }
    const char *more[] = {"abcdefgh1", "abcdefgh2", "1abcdefgh", "2abcdefgh", "abcdefgh",
                          "caf\xc3\xa9", "\xff\xfe\xfd", "\x80", "exp-0001", "exp-0002",
                          "homepage-hero-button-color", "homepage-hero-button-colour"};
    for (size_t k = 0; k < sizeof more / sizeof more[0]; k++)
        ids[n++] = strdup(more[k]);
    assert_true(n <= MAX);
    named *v = make(ids, n);
    mab__id_index ix;
    assert_int_equal(mab__id_index_build(&ix, v, sizeof *v, n), MAB_OK);
    assert_int_equal(mab__id_index_first_duplicate(v, sizeof *v, n), -1);
    for (size_t i = 0; i < n; i++) {
        if (find(&ix, v, ids[i]) != (long)i)
            fail_msg("\"%s\" found at %ld, not %zu", ids[i], find(&ix, v, ids[i]), i);
        size_t len = strlen(ids[i]);
        snprintf(buf, sizeof buf, "%sz", ids[i]); /* one byte longer */
        assert_int_equal(find(&ix, v, buf), -1);
        memcpy(buf, ids[i], len + 1);
        buf[len - 1] = 'z'; /* the last byte changed */
        assert_int_equal(find(&ix, v, buf), -1);
        buf[len - 1] = ids[i][len - 1];
        buf[0] = 'z'; /* the first byte changed */
        assert_int_equal(find(&ix, v, buf), -1);
    }
    assert_int_equal(find(&ix, v, ""), -1);
    assert_int_equal(find(&ix, v, "q"), -1);
    mab__id_index_free(&ix);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(v);
}

/* The duplicate check of a config: the first id equal to an earlier one. */
static void test_first_duplicate(void **unused)
{
    (void)unused;
    char *ids[] = {"a", "abcdefgh", "abcdefghij", "b", "abcdefghij", "a"};
    named *v = make(ids, 6);
    assert_int_equal(mab__id_index_first_duplicate(v, sizeof *v, 6), 4);
    assert_int_equal(mab__id_index_first_duplicate(v, sizeof *v, 4), -1);
    char *shorts[] = {"a", "b", "a"};
    named *w = make(shorts, 3);
    assert_int_equal(mab__id_index_first_duplicate(w, sizeof *w, 3), 2);
    free(v);
    free(w);
}

/* Sequential ids (a config of 100,000 experiments "exp-N", arms "aN")
   spread over the table: the slots probed past an id's first choice stay
   few on average and in the worst case. A spot function that clusters
   them (a weak mix of the key, the low bits of a product) fails here. */
static void test_sequential_ids_spread(void **unused)
{
    (void)unused;
    const char *prefixes[] = {"exp-", "a", "experiment-number-"};
    for (size_t f = 0; f < 3; f++) {
        enum { N = 100000 };
        char **ids = calloc(N, sizeof *ids);
        assert_non_null(ids);
        char buf[64];
        for (size_t i = 0; i < N; i++) {
            snprintf(buf, sizeof buf, "%s%zu", prefixes[f], i);
            ids[i] = strdup(buf);
        }
        named *v = make(ids, N);
        mab__id_index ix;
        assert_int_equal(mab__id_index_build(&ix, v, sizeof *v, N), MAB_OK);
        size_t total = 0, worst = 0;
        for (size_t i = 0; i < N; i++) {
            size_t len = strlen(ids[i]);
            uint32_t h = mab__id_spot(mab__id_key(ids[i], len), ix.shift), probes = 0;
            while (ix.slots[h].position != i + 1) {
                h = (h + 1) & ix.mask;
                probes++;
            }
            total += probes;
            worst = probes > worst ? probes : worst;
            assert_int_equal(find(&ix, v, ids[i]), (long)i);
        }
        print_message("%sN: %.3f slots past the first on average, %zu at worst\n", prefixes[f],
                      (double)total / N, worst);
        /* Linear probing at this load (100,000 of 262,144 slots) averages
           about 0.3 for a uniform hash. */
        assert_true((double)total / N < 1.0);
        assert_true(worst < 100);
        mab__id_index_free(&ix);
        for (size_t i = 0; i < N; i++)
            free(ids[i]);
        free(ids);
        free(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_id_found_and_near_misses_not),
        cmocka_unit_test(test_first_duplicate),
        cmocka_unit_test(test_sequential_ids_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
