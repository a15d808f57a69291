/*
 * test_report.c - the core's report (core/report.c): P(best) and expected
 * loss against closed forms (two Beta arms: Evan Miller's sum for P(B > A);
 * two Normal arms) and against numerical integration (three Beta arms), the
 * credible intervals against the Beta CDF, the winner rule at each of its
 * thresholds, one answer per snapshot, struct_size, bad input, and the
 * config's "winner" key through mab_report_get().
 */
#include <float.h>
#include <math.h>
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

/* ---- reference formulas ------------------------------------------------ */

static double lbeta(double a, double b)
{
    return lgamma(a) + lgamma(b) - lgamma(a + b);
}

/* Evan Miller, "Formulas for Bayesian A/B testing": for integer aB,
   P(B > A) = sum_{i=0}^{aB-1} B(aA+i, bA+bB) / ((bB+i) B(1+i, bB) B(aA, bA)). */
static double miller_p_b_beats_a(double aA, double bA, double aB, double bB)
{
    double total = 0.0;
    for (int i = 0; i < (int)aB; i++)
        total += exp(lbeta(aA + i, bA + bB) - log(bB + i) - lbeta(1 + i, bB) - lbeta(aA, bA));
    return total;
}

/* E[max(B - A, 0)] for A ~ Beta(aA, bA), B ~ Beta(aB, bB): size-biasing
   gives E[B 1{B>A}] = E[B] P(B' > A) with B' ~ Beta(aB + 1, bB), and
   E[A 1{B>A}] = E[A] P(B > A') with A' ~ Beta(aA + 1, bA). */
static double miller_loss_of_a(double aA, double bA, double aB, double bB)
{
    return aB / (aB + bB) * miller_p_b_beats_a(aA, bA, aB + 1, bB) -
           aA / (aA + bA) * miller_p_b_beats_a(aA + 1, bA, aB, bB);
}

/* E[(B - A)^2], an upper bound on E[loss^2]: the Monte Carlo tolerance. */
static double beta_second_moment_of_difference(double aA, double bA, double aB, double bB)
{
    double mA = aA / (aA + bA), mB = aB / (aB + bB);
    double vA = aA * bA / ((aA + bA) * (aA + bA) * (aA + bA + 1));
    double vB = aB * bB / ((aB + bB) * (aB + bB) * (aB + bB + 1));
    return vA + vB + (mB - mA) * (mB - mA);
}

/* The Beta(a, b) CDF for integer a, b: P(Binomial(a + b - 1, x) >= a). */
static double beta_cdf_integer(int a, int b, double x)
{
    if (x <= 0)
        return 0;
    if (x >= 1)
        return 1;
    int n = a + b - 1;
    double total = 0;
    for (int j = a; j <= n; j++)
        total += exp(lgamma(n + 1.0) - lgamma(j + 1.0) - lgamma(n - j + 1.0) + j * log(x) +
                     (n - j) * log1p(-x));
    return total;
}

static double beta_pdf(double a, double b, double x)
{
    if (x <= 0 || x >= 1)
        return 0;
    return exp((a - 1) * log(x) + (b - 1) * log1p(-x) - lbeta(a, b));
}

static double normal_cdf(double z)
{
    return 0.5 * erfc(-z / sqrt(2.0));
}

/* ---- helpers ------------------------------------------------------------- */

static mab_arm_stats arm(const char *id, uint64_t pulls, double reward_sum, double reward_sum_sq)
{
    mab_arm_stats s = {sizeof s, id, pulls, (uint64_t)reward_sum, reward_sum, reward_sum_sq,
                       pulls ? reward_sum / (double)pulls : 0.0, NULL};
    return s;
}

static void compute(const char *experiment, const mab_arm_stats *arms, size_t n, double min,
                    double max, double p_best, double loss, mab_report *out)
{
    mab_report_input in = {sizeof in, experiment, arms, n, min, max, p_best, loss};
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    mab_error err = {0, ""};
    int rc = mab_report_compute(&in, out, &err);
    if (rc != MAB_OK)
        fail_msg("mab_report_compute: %s", err.message);
}

static const mab_report_arm *at(const mab_report *r, size_t i)
{
    const mab_report_arm *a = mab_report_arm_at(r, i);
    assert_non_null(a);
    return a;
}

/* ---- two Beta arms: closed forms ---------------------------------------- */

static void test_two_beta_arms_closed_form(void **state)
{
    (void)state;
    /* (pulls, rewards) of A and of B: close, clear, lopsided sample sizes. */
    static const struct {
        uint64_t nA, sA, nB, sB;
    } cases[] = {{100, 10, 120, 18}, {1000, 50, 1000, 52}, {40, 2, 400, 60}, {0, 0, 10, 3},
                 {2000, 100, 2000, 160}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mab_arm_stats arms[2] = {arm("A", cases[c].nA, (double)cases[c].sA, (double)cases[c].sA),
                                 arm("B", cases[c].nB, (double)cases[c].sB, (double)cases[c].sB)};
        mab_report r;
        compute("two", arms, 2, 0, 1, 0.95, 0.001, &r);
        assert_int_equal(r.model, MAB_REPORT_BETA);
        double aA = 1.0 + cases[c].sA, bA = 1.0 + (double)(cases[c].nA - cases[c].sA);
        double aB = 1.0 + cases[c].sB, bB = 1.0 + (double)(cases[c].nB - cases[c].sB);
        double p_b = miller_p_b_beats_a(aA, bA, aB, bB);
        double loss_a = miller_loss_of_a(aA, bA, aB, bB);
        double loss_b = miller_loss_of_a(aB, bB, aA, bA);
        /* Four standard errors of S = 10^4 draws: sqrt(p(1-p)/S) <= 0.005. */
        double p_tol = 4 * sqrt(fmax(p_b * (1 - p_b), 1e-4) / MAB_REPORT_DRAWS);
        double l_tol = 4 * sqrt(beta_second_moment_of_difference(aA, bA, aB, bB) /
                                MAB_REPORT_DRAWS);
        printf("case %zu: P(B>A) %.5f (mc %.5f), loss A %.6f (mc %.6f), loss B %.6f (mc %.6f)\n",
               c, p_b, at(&r, 1)->p_best, loss_a, at(&r, 0)->expected_loss, loss_b,
               at(&r, 1)->expected_loss);
        assert_true(fabs(at(&r, 1)->p_best - p_b) <= p_tol);
        assert_true(fabs(at(&r, 0)->p_best - (1 - p_b)) <= p_tol);
        assert_true(fabs(at(&r, 0)->expected_loss - loss_a) <= l_tol);
        assert_true(fabs(at(&r, 1)->expected_loss - loss_b) <= l_tol);
        assert_true(at(&r, 0)->expected_loss >= 0 && at(&r, 1)->expected_loss >= 0);
        assert_int_equal(r.leader, p_b > 0.5 ? 1 : 0);
        mab_report_free(&r);
    }
}

/* ---- three Beta arms: numerical integration ----------------------------- */

static void test_three_beta_arms_integration(void **state)
{
    (void)state;
    const int n[3] = {300, 280, 320}, s[3] = {30, 36, 25};
    mab_arm_stats arms[3] = {arm("x", 300, 30, 30), arm("y", 280, 36, 36), arm("z", 320, 25, 25)};
    mab_report r;
    compute("three", arms, 3, 0, 1, 0.95, 0.001, &r);
    int a[3], b[3];
    for (int i = 0; i < 3; i++) {
        a[i] = 1 + s[i];
        b[i] = 1 + n[i] - s[i];
    }
    /* Simpson's rule on [0, 1]: P_i = int f_i prod_{j != i} F_j, and
       E[max] = int (1 - prod_j F_j), so loss_i = E[max] - E[theta_i]. */
    const int steps = 20000;
    double p[3] = {0, 0, 0}, e_max = 0;
    for (int k = 0; k <= steps; k++) {
        double x = (double)k / steps;
        double w = (k == 0 || k == steps) ? 1 : (k % 2 ? 4 : 2);
        double F[3];
        for (int i = 0; i < 3; i++)
            F[i] = beta_cdf_integer(a[i], b[i], x);
        for (int i = 0; i < 3; i++)
            p[i] += w * beta_pdf(a[i], b[i], x) * F[(i + 1) % 3] * F[(i + 2) % 3];
        e_max += w * (1 - F[0] * F[1] * F[2]);
    }
    e_max /= 3.0 * steps;
    double p_sum = 0;
    for (int i = 0; i < 3; i++) {
        p[i] /= 3.0 * steps;
        p_sum += p[i];
    }
    assert_true(fabs(p_sum - 1) < 1e-6); /* the quadrature itself is right */
    for (int i = 0; i < 3; i++) {
        double mean_i = (double)a[i] / (a[i] + b[i]);
        double loss_i = e_max - mean_i;
        /* E[loss_i^2] <= sum_j E[(theta_j - theta_i)^2]. */
        double second = 0;
        for (int j = 0; j < 3; j++)
            if (j != i)
                second += beta_second_moment_of_difference(a[i], b[i], a[j], b[j]);
        double p_tol = 4 * sqrt(fmax(p[i] * (1 - p[i]), 1e-4) / MAB_REPORT_DRAWS);
        double l_tol = 4 * sqrt(second / MAB_REPORT_DRAWS);
        printf("arm %d: P(best) %.5f (mc %.5f), loss %.6f (mc %.6f)\n", i, p[i],
               at(&r, (size_t)i)->p_best, loss_i, at(&r, (size_t)i)->expected_loss);
        assert_true(fabs(at(&r, (size_t)i)->p_best - p[i]) <= p_tol);
        assert_true(fabs(at(&r, (size_t)i)->expected_loss - loss_i) <= l_tol);
    }
    assert_int_equal(r.leader, 1);
    mab_report_free(&r);
}

/* ---- two Normal arms: closed forms -------------------------------------- */

static void test_two_normal_arms_closed_form(void **state)
{
    (void)state;
    /* Revenue in [0, 50]: A 400 pulls mean 2.0, B 380 pulls mean 2.4. */
    mab_arm_stats arms[2] = {arm("A", 400, 800, 400 * (2.0 * 2.0 + 9.0)),
                             arm("B", 380, 912, 380 * (2.4 * 2.4 + 16.0))};
    mab_report r;
    compute("revenue", arms, 2, 0, 50, 0.95, 0.01, &r);
    assert_int_equal(r.model, MAB_REPORT_NORMAL);
    double sd[2], mu[2] = {2.0, 2.4};
    for (int i = 0; i < 2; i++) {
        double n = (double)arms[i].pulls;
        double v = (arms[i].reward_sum_sq - arms[i].reward_sum * arms[i].reward_sum / n) / (n - 1);
        sd[i] = sqrt(v / n);
        /* The interval is mean +- z sd of the Normal posterior. */
        assert_true(fabs(at(&r, (size_t)i)->ci_low - (mu[i] - 1.959963984540054 * sd[i])) < 1e-9);
        assert_true(fabs(at(&r, (size_t)i)->ci_high - (mu[i] + 1.959963984540054 * sd[i])) < 1e-9);
    }
    /* D = B - A ~ N(d, s^2): P(D > 0) = Phi(d/s); E[D+] = d Phi(d/s) + s phi(d/s). */
    double d = mu[1] - mu[0], s = sqrt(sd[0] * sd[0] + sd[1] * sd[1]);
    double p_b = normal_cdf(d / s);
    double phi = exp(-0.5 * (d / s) * (d / s)) / sqrt(2 * M_PI);
    double loss_a = d * p_b + s * phi, loss_b = -d * (1 - p_b) + s * phi;
    double p_tol = 4 * sqrt(p_b * (1 - p_b) / MAB_REPORT_DRAWS);
    double l_tol = 4 * sqrt((s * s + d * d) / MAB_REPORT_DRAWS);
    printf("normal: P(B>A) %.5f (mc %.5f), loss A %.6f (mc %.6f), loss B %.6f (mc %.6f)\n", p_b,
           at(&r, 1)->p_best, loss_a, at(&r, 0)->expected_loss, loss_b, at(&r, 1)->expected_loss);
    assert_true(fabs(at(&r, 1)->p_best - p_b) <= p_tol);
    assert_true(fabs(at(&r, 0)->expected_loss - loss_a) <= l_tol);
    assert_true(fabs(at(&r, 1)->expected_loss - loss_b) <= l_tol);
    mab_report_free(&r);

    /* No spread yet (every reward 0, or a single pull): the widest variance
       of the range, (50/2)^2; no pulls: centred on the range's middle. */
    mab_arm_stats flat[3] = {arm("zeros", 100, 0, 0), arm("one", 1, 7, 49), arm("none", 0, 0, 0)};
    compute("revenue", flat, 3, 0, 50, 0.95, 0.01, &r);
    assert_true(fabs(at(&r, 0)->ci_high - 1.959963984540054 * 25.0 / 10.0) < 1e-9);
    /* Normal intervals stop at what a mean can be: [0, 50] here. */
    assert_true(at(&r, 1)->ci_low == 0 && at(&r, 2)->ci_low == 0);
    assert_true(at(&r, 1)->ci_high == 50 && at(&r, 0)->ci_low == 0);
    assert_true(at(&r, 2)->ci_high == 50);
    mab_report_free(&r);
}

/* ---- credible intervals of Beta arms ------------------------------------ */

static void test_beta_credible_interval(void **state)
{
    (void)state;
    static const struct {
        uint64_t n, s;
    } cases[] = {{0, 0}, {10, 0}, {10, 10}, {100, 7}, {5000, 260}, {3, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mab_arm_stats arms[2] = {arm("a", cases[c].n, (double)cases[c].s, (double)cases[c].s),
                                 arm("b", 10, 5, 5)};
        mab_report r;
        compute("ci", arms, 2, 0, 1, 0.95, 0.001, &r);
        int a = 1 + (int)cases[c].s, b = 1 + (int)(cases[c].n - cases[c].s);
        const mab_report_arm *x = at(&r, 0);
        printf("Beta(%d, %d): [%.8f, %.8f]\n", a, b, x->ci_low, x->ci_high);
        assert_true(x->ci_low < x->ci_high);
        assert_true(fabs(beta_cdf_integer(a, b, x->ci_low) - 0.025) < 1e-9);
        assert_true(fabs(beta_cdf_integer(a, b, x->ci_high) - 0.975) < 1e-9);
        mab_report_free(&r);
    }
    /* Counts far beyond what a sum of binomial terms could check: the
       interval still brackets the mean within a few standard deviations. */
    mab_arm_stats big[2] = {arm("a", 2000000000u, 1e8, 1e8), arm("b", 10, 5, 5)};
    mab_report r;
    compute("ci", big, 2, 0, 1, 0.95, 0.001, &r);
    double sd = sqrt(0.05 * 0.95 / 2e9);
    assert_true(fabs(at(&r, 0)->ci_low - (0.05 - 1.959963984540054 * sd)) < 0.01 * sd);
    assert_true(fabs(at(&r, 0)->ci_high - (0.05 + 1.959963984540054 * sd)) < 0.01 * sd);
    mab_report_free(&r);
}

/* ---- the winner rule ------------------------------------------------------ */

static void test_winner_rule_thresholds(void **state)
{
    (void)state;
    /* A clear leader: blue's P(best) is near 1, its loss tiny. */
    mab_arm_stats clear[3] = {arm("green", 5000, 250, 250), arm("blue", 5000, 300, 300),
                              arm("red", 5000, 240, 240)};
    mab_report r;
    compute("color", clear, 3, 0, 1, MAB_WINNER_P_BEST, MAB_WINNER_EXPECTED_LOSS, &r);
    assert_int_equal(r.leader, 1);
    assert_int_equal(r.winner, 1);
    double p = at(&r, 1)->p_best, l = at(&r, 1)->expected_loss;
    printf("leader blue: P(best) %.6f, expected loss %.3g\n", p, l);
    assert_true(p >= 0.95 && l < 0.001);
    mab_report_free(&r);

    /* Each threshold exactly at the leader's value, and one step past it. */
    struct {
        double p_best, loss;
        int winner;
    } rules[] = {
        {p, 1.0, 1},                     /* P(best) >= p_best: holds at equality */
        {nextafter(p, 2.0), 1.0, 0},     /* ... not one ulp above */
        {0.5, l, 0},                     /* expected loss < threshold: not at equality */
        {0.5, nextafter(l, 1.0), 1},     /* ... holds one ulp above */
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        compute("color", clear, 3, 0, 1, rules[i].p_best, rules[i].loss, &r);
        assert_int_equal(r.leader, 1);
        assert_true(at(&r, 1)->p_best == p && at(&r, 1)->expected_loss == l);
        if (r.winner != rules[i].winner)
            fail_msg("rule %zu (p_best %.17g, expected_loss %.17g): winner %d, expected %d", i,
                     rules[i].p_best, rules[i].loss, r.winner, rules[i].winner);
        mab_report_free(&r);
    }

    compute("color", clear, 3, 0, 1, MAB_WINNER_P_BEST, MAB_WINNER_EXPECTED_LOSS, &r);
    assert_string_equal(r.recommendation, "winner: blue, P(best) 0.983, expected loss 3.1e-05");
    mab_report_free(&r);

    /* Two arms that cannot be told apart yet: keep exploring. */
    mab_arm_stats close[2] = {arm("casual", 200, 20, 20), arm("neutral", 200, 22, 22)};
    compute("txt", close, 2, 0, 1, MAB_WINNER_P_BEST, MAB_WINNER_EXPECTED_LOSS, &r);
    assert_int_equal(r.winner, 0);
    assert_int_equal(r.leader, 1);
    assert_true(at(&r, 1)->p_best > 0.5 && at(&r, 1)->p_best < 0.95);
    char expected[MAB_REPORT_TEXT_MAX];
    snprintf(expected, sizeof expected, "keep exploring: P(best) %.3f for neutral, expected loss %.2g",
             at(&r, 1)->p_best, at(&r, 1)->expected_loss);
    assert_string_equal(r.recommendation, expected);
    mab_report_free(&r);

    /* P(best) is high but the loss is not below epsilon: no winner. */
    mab_arm_stats loose[2] = {arm("a", 20, 2, 2), arm("b", 20, 9, 9)};
    compute("loose", loose, 2, 0, 1, 0.95, 0.0001, &r);
    assert_true(at(&r, 1)->p_best >= 0.95);
    assert_true(at(&r, 1)->expected_loss >= 0.0001);
    assert_int_equal(r.winner, 0);
    mab_report_free(&r);
}

/* ---- one snapshot, one answer; struct sizes; placeholders ---------------- */

static void test_same_snapshot_same_answer(void **state)
{
    (void)state;
    mab_arm_stats arms[3] = {arm("a", 90, 9, 9), arm("b", 95, 11, 11), arm("c", 80, 8, 8)};
    mab_report r1, r2;
    compute("same", arms, 3, 0, 1, 0.95, 0.001, &r1);
    compute("same", arms, 3, 0, 1, 0.95, 0.001, &r2);
    assert_int_equal(r1.seed, r2.seed);
    assert_int_equal(r1.n_arms, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_memory_equal(at(&r1, i), at(&r2, i), sizeof(mab_report_arm));
        assert_string_equal(at(&r1, i)->arm_id, arms[i].arm_id);
    }
    assert_int_equal(r1.leader, r2.leader);
    assert_int_equal(r1.pulls, 265);
    /* What storage cannot tell yet is "not available", never a number. */
    assert_int_equal(r1.available, 0);
    assert_true(isnan(r1.srm_p_value) && isnan(r1.holdout_diff) && isnan(r1.holdout_diff_low) &&
                isnan(r1.holdout_diff_high));
    assert_true(strncmp(r1.srm_status, "not available: ", 15) == 0);
    for (size_t i = 0; i < 3; i++)
        assert_true(isnan(at(&r1, i)->share_last_bucket));
    double sum = 0;
    for (size_t i = 0; i < 3; i++)
        sum += at(&r1, i)->p_best;
    assert_true(fabs(sum - 1) < 1e-9);
    mab_report_free(&r1);
    mab_report_free(&r2);
    assert_null(r1.arms);
    mab_report_free(&r1); /* twice is fine */
}

static void test_struct_size(void **state)
{
    (void)state;
    mab_arm_stats arms[2] = {arm("a", 10, 1, 1), arm("b", 10, 2, 2)};
    mab_report_input in = {sizeof in, "sizes", arms, 2, 0, 1, 0.95, 0.001};
    mab_error err = {0, ""};
    /* Too small for this version: refused, nothing written. */
    mab_report small;
    memset(&small, 0x5a, sizeof small);
    small.struct_size = offsetof(mab_report, arms);
    assert_int_equal(mab_report_compute(&in, &small, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "struct_size"));
    assert_int_equal(small.n_arms, (size_t)0x5a5a5a5a5a5a5a5aULL);
    in.struct_size = sizeof in - 1;
    mab_report r = {.struct_size = sizeof r};
    assert_int_equal(mab_report_compute(&in, &r, &err), MAB_EINVAL);
    in.struct_size = sizeof in;
    /* A caller built against a later, larger mab_report: the library fills
       what it knows and leaves the rest alone. */
    unsigned char buffer[sizeof(mab_report) + 64];
    memset(buffer, 0xab, sizeof buffer);
    mab_report *big = (mab_report *)(void *)buffer;
    big->struct_size = sizeof buffer;
    assert_int_equal(mab_report_compute(&in, big, &err), MAB_OK);
    assert_int_equal(big->struct_size, sizeof buffer);
    for (size_t i = sizeof(mab_report); i < sizeof buffer; i++)
        assert_int_equal(buffer[i], 0xab);
    assert_int_equal(big->arm_size, sizeof(mab_report_arm));
    assert_ptr_equal(mab_report_arm_at(big, 1), (const char *)big->arms + big->arm_size);
    assert_null(mab_report_arm_at(big, 2));
    assert_null(mab_report_arm_at(NULL, 0));
    mab_report_free(big);
}

static void test_bad_input(void **state)
{
    (void)state;
    mab_arm_stats arms[2] = {arm("a", 10, 1, 1), arm("b", 10, 2, 2)};
    struct {
        const char *what;
        mab_report_input in;
        const char *message;
    } cases[] = {
        {"no arms", {sizeof(mab_report_input), "e", arms, 0, 0, 1, 0.95, 0.001}, "no arms"},
        {"range", {sizeof(mab_report_input), "e", arms, 2, 1, 1, 0.95, 0.001}, "[1, 1]"},
        {"p_best", {sizeof(mab_report_input), "e", arms, 2, 0, 1, 1.5, 0.001}, "p_best 1.5"},
        {"loss", {sizeof(mab_report_input), "e", arms, 2, 0, 1, 0.95, 0}, "expected_loss 0"},
        {"NULL", {sizeof(mab_report_input), "e", NULL, 2, 0, 1, 0.95, 0.001}, "no arms"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mab_report r = {.struct_size = sizeof r};
        mab_error err = {0, ""};
        assert_int_equal(mab_report_compute(&cases[i].in, &r, &err), MAB_EINVAL);
        if (!strstr(err.message, cases[i].message))
            fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].what, err.message, cases[i].message);
        assert_null(r.arms);
    }
    mab_arm_stats nan_arms[2] = {arm("a", 10, NAN, 1), arm("b", 10, 2, 2)};
    mab_report_input in = {sizeof in, "e", nan_arms, 2, 0, 1, 0.95, 0.001};
    mab_report r = {.struct_size = sizeof r};
    mab_error err = {0, ""};
    assert_int_equal(mab_report_compute(&in, &r, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "arm a"));
    assert_int_equal(mab_report_compute(NULL, &r, &err), MAB_EINVAL);
    assert_int_equal(mab_report_compute(&in, NULL, &err), MAB_EINVAL);
}

/* ---- through the engine: the config's "winner" key ---------------------- */

static char dir[] = "/tmp/mab-test-report-XXXXXX";
static char config_path[300];

static void write_config(const char *experiment_extra)
{
    FILE *f = fopen(config_path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"plugin_path\": [\"%s\"],\n"
            " \"storage\": {\"plugin\": \"json_file\", \"path\": \"%s/state.json\"},\n"
            " \"experiments\": {\n"
            "  \"color\": {\"policy\": {\"plugin\": \"epsilon_greedy\", \"epsilon\": 0.2},\n"
            "            \"arms\": {\"green\": \"#00FF00\", \"blue\": \"#0000FF\"}%s},\n"
            "  \"spend\": {\"policy\": {\"plugin\": \"ucb1\"}, \"reward\": {\"min\": 0, \"max\": 20},\n"
            "            \"arms\": {\"a\": 1, \"b\": 2}}}}\n",
            MAB_PLUGIN_DIR, dir, experiment_extra);
    fclose(f);
}

static void test_engine_report_and_winner_key(void **state)
{
    (void)state;
    write_config(", \"winner\": {\"p_best\": 0.9, \"expected_loss\": 0.002}");
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    if (mab_open(config_path, &e, &err) != MAB_OK)
        fail_msg("mab_open: %s", err.message);
    mab_record records[] = {{"color", "green", 3000, 150, 150, 150},
                            {"color", "blue", 3000, 240, 240, 240},
                            {"spend", "a", 50, 10, 80, 900},
                            {"spend", "b", 50, 12, 70, 600}};
    assert_int_equal(mab_import(e, records, 4, 0, &err), MAB_OK);

    mab_report r = {.struct_size = sizeof r};
    assert_int_equal(mab_report_get(e, "color", &r, &err), MAB_OK);
    assert_string_equal(r.experiment, "color");
    assert_string_equal(r.policy, "epsilon_greedy");
    assert_string_equal(r.policy_json, "{\"plugin\":\"epsilon_greedy\",\"epsilon\":0.2}");
    assert_true(r.winner_p_best == 0.9 && r.winner_expected_loss == 0.002);
    assert_int_equal(r.model, MAB_REPORT_BETA);
    assert_int_equal(r.leader, 1);
    assert_int_equal(r.winner, 1);
    assert_string_equal(at(&r, 1)->arm_id, "blue");
    assert_int_equal(at(&r, 1)->pulls, 3000);
    /* The same answer as the pure function on the same snapshot. */
    mab_arm_stats snap[2];
    snap[0].struct_size = sizeof snap[0];
    size_t n = 0;
    assert_int_equal(mab_stats(e, "color", snap, 2, &n, &err), MAB_OK);
    mab_report pure;
    compute("color", snap, 2, 0, 1, 0.9, 0.002, &pure);
    for (size_t i = 0; i < 2; i++)
        assert_memory_equal(at(&r, i), at(&pure, i), sizeof(mab_report_arm));
    mab_report_free(&pure);

    /* The JSON document: every field, the placeholders null and listed. */
    char *text = NULL;
    assert_int_equal(mab_report_json(&r, &text, &err), MAB_OK);
    cJSON *doc = cJSON_Parse(text);
    assert_non_null(doc);
    assert_string_equal(cJSON_GetObjectItem(doc, "experiment")->valuestring, "color");
    assert_string_equal(cJSON_GetObjectItem(doc, "policy")->valuestring, "epsilon_greedy");
    cJSON *params = cJSON_GetObjectItem(doc, "policy_params");
    assert_true(cJSON_GetObjectItem(params, "epsilon")->valuedouble == 0.2);
    assert_string_equal(cJSON_GetObjectItem(doc, "model")->valuestring, "beta");
    assert_string_equal(cJSON_GetObjectItem(doc, "leader")->valuestring, "blue");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "winner")));
    assert_string_equal(cJSON_GetObjectItem(doc, "recommendation")->valuestring, r.recommendation);
    cJSON *rule = cJSON_GetObjectItem(doc, "winner_rule");
    assert_true(cJSON_GetObjectItem(rule, "p_best")->valuedouble == 0.9);
    assert_true(cJSON_GetObjectItem(rule, "expected_loss")->valuedouble == 0.002);
    assert_true(cJSON_GetObjectItem(doc, "pulls")->valuedouble == 6000);
    cJSON *blue = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "arms"), "blue");
    assert_non_null(blue);
    assert_true(cJSON_GetObjectItem(blue, "pulls")->valuedouble == 3000);
    assert_true(cJSON_GetObjectItem(blue, "rewards")->valuedouble == 240);
    assert_true(cJSON_GetObjectItem(blue, "mean")->valuedouble == 0.08);
    assert_true(cJSON_GetObjectItem(blue, "p_best")->valuedouble == at(&r, 1)->p_best);
    assert_true(cJSON_GetObjectItem(blue, "expected_loss")->valuedouble == at(&r, 1)->expected_loss);
    assert_true(cJSON_GetObjectItem(blue, "ci_low")->valuedouble == at(&r, 1)->ci_low);
    assert_true(cJSON_GetObjectItem(blue, "ci_high")->valuedouble == at(&r, 1)->ci_high);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(blue, "share_last_bucket")));
    /* Late rewards come from the attribution window: 0 without one. */
    assert_true(cJSON_GetObjectItem(blue, "late_rewards")->valuedouble == 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "holdout")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "srm_p_value")));
    /* epsilon_greedy is ABI 1: no probabilities of every arm, and why. */
    assert_string_equal(cJSON_GetObjectItem(doc, "srm_status")->valuestring, r.srm_status);
    assert_true(strncmp(r.srm_status, "not available: the policy reports no probabilities", 50) ==
                0);
    assert_true(cJSON_GetObjectItem(doc, "late_rewards")->valuedouble == 0);
    cJSON *missing = cJSON_GetObjectItem(doc, "not_available");
    assert_int_equal(cJSON_GetArraySize(missing), 3);
    assert_string_equal(cJSON_GetArrayItem(missing, 2)->valuestring, "srm_p_value");
    cJSON_Delete(doc);
    mab_report_json_free(text);
    mab_report_free(&r);
    assert_int_equal(mab_report_json(&r, &text, &err), MAB_EINVAL);

    /* The defaults, and the Normal model of a [0, 20] range. */
    assert_int_equal(mab_report_get(e, "spend", &r, &err), MAB_OK);
    assert_true(r.winner_p_best == MAB_WINNER_P_BEST &&
                r.winner_expected_loss == MAB_WINNER_EXPECTED_LOSS);
    assert_int_equal(r.model, MAB_REPORT_NORMAL);
    assert_true(r.reward_min == 0 && r.reward_max == 20);
    mab_report_free(&r);

    mab_report untouched;
    memset(&untouched, 0x33, sizeof untouched);
    untouched.struct_size = sizeof untouched;
    assert_int_equal(mab_report_get(e, "nope", &untouched, &err), MAB_ENOTFOUND);
    assert_non_null(strstr(err.message, "no experiment \"nope\""));
    assert_int_equal(untouched.n_arms, (size_t)0x3333333333333333ULL);
    assert_int_equal(mab_report_get(e, "color", NULL, &err), MAB_EINVAL);
    assert_int_equal(mab_report_get(NULL, "color", &r, &err), MAB_EINVAL);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

static void test_winner_key_refused(void **state)
{
    (void)state;
    static const struct {
        const char *extra, *message;
    } cases[] = {
        {", \"winner\": 0.95", "experiments.color.winner: expected {\"p_best\": P"},
        {", \"winner\": {\"p_bset\": 0.95}", "experiments.color.winner: unknown key \"p_bset\""},
        {", \"winner\": {\"p_best\": 0.4}", "experiments.color.winner.p_best: expected a "
                                            "probability in [0.5, 1]"},
        {", \"winner\": {\"p_best\": 1.01}", "winner.p_best: expected a probability"},
        {", \"winner\": {\"p_best\": \"high\"}", "winner.p_best: expected a probability"},
        {", \"winner\": {\"expected_loss\": 0}", "experiments.color.winner.expected_loss: "
                                                 "expected a number above 0"},
        {", \"winner\": {\"expected_loss\": 2}", "at most the reward range's width (1)"},
        {", \"winner\": {\"p_best\": 0.9, \"p_best\": 0.99}", "key \"p_best\" appears twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_config(cases[i].extra);
        mab_engine *e = NULL;
        mab_error err = {0, ""};
        assert_int_equal(mab_open(config_path, &e, &err), MAB_ECONFIG);
        assert_null(e);
        if (!strstr(err.message, cases[i].message) || !strstr(err.message, config_path))
            fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].extra, err.message, cases[i].message);
    }
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(config_path, sizeof config_path, "%s/mab.json", dir);
    return 0;
}

/* ---- history and share of the last bucket, from the stored buckets ------ */

static int64_t test_clock_ns;
static int64_t fixed_clock(void *ctx)
{
    (void)ctx;
    return test_clock_ns;
}

static void write_bucket_config(void)
{
    FILE *f = fopen(config_path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"plugin_path\": [\"%s\"],\n"
            " \"storage\": {\"plugin\": \"json_file\", \"path\": \"%s/state.json\",\n"
            "             \"bucket_seconds\": 60, \"retention_seconds\": 315360000},\n"
            " \"experiments\": {\n"
            "  \"color\": {\"policy\": {\"plugin\": \"epsilon_greedy\", \"epsilon\": 0.5},\n"
            "            \"floor\": 0.1, \"burn_in\": 3,\n"
            "            \"arms\": {\"green\": 1, \"blue\": 2, \"red\": 3}}}}\n",
            MAB_PLUGIN_DIR, dir);
    fclose(f);
}

/* Three minutes (buckets of 60 s) of choices and rewards with the clock
   injected; the report's history must be what the test itself tallied. */
static void test_history_and_share(void **state)
{
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    unlink(path);
    write_bucket_config();
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    if (mab_open(config_path, &e, &err) != MAB_OK)
        fail_msg("mab_open: %s", err.message);
    const int64_t t0 = 1800000000; /* a multiple of 60 */
    uint64_t pulls[3][3] = {{0}}, rewards[3][3] = {{0}};
    static const int per_minute[3] = {40, 0, 25}; /* minute 1: rewards only */
    for (int m = 0; m < 3; m++) {
        test_clock_ns = (t0 + 60 * m + 5) * INT64_C(1000000000);
        assert_int_equal(mab_set_clock(e, fixed_clock, NULL, &err), MAB_OK);
        for (int v = 0; v < per_minute[m]; v++) {
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            assert_int_equal(mab_choose(e, "color", &c, &err), MAB_OK);
            pulls[m][c.arm_index]++;
            if (v % 3 == 0) {
                assert_int_equal(mab_reward(e, "color", c.arm_id, 1.0, &err), MAB_OK);
                rewards[m][c.arm_index]++;
            }
        }
        if (m == 1) { /* a reward with no pull in its minute */
            assert_int_equal(mab_reward(e, "color", "blue", 1.0, &err), MAB_OK);
            rewards[1][1]++;
        }
    }
    static const char *const ids[3] = {"green", "blue", "red"};
    mab_report r = MAB_STRUCT_INIT(mab_report);
    assert_int_equal(mab_report_get(e, "color", &r, &err), MAB_OK);
    assert_true(r.available & MAB_REPORT_HAS_HISTORY);
    assert_true(r.available & MAB_REPORT_HAS_SHARE);
    assert_int_equal(r.bucket_seconds, 60);
    assert_int_equal(r.n_history, 3);
    assert_int_equal(r.last_bucket_start, t0 + 120);
    for (size_t b = 0; b < 3; b++)
        for (size_t k = 0; k < 3; k++) {
            const mab_bucket_stats *s = mab_report_bucket_at(&r, b, k);
            assert_non_null(s);
            assert_int_equal(s->start, t0 + 60 * (int64_t)b);
            assert_int_equal(s->pulls, pulls[b][k]);
            assert_int_equal(s->rewards, rewards[b][k]);
            assert_true(s->reward_sum == (double)rewards[b][k]);
        }
    assert_null(mab_report_bucket_at(&r, 3, 0));
    assert_null(mab_report_bucket_at(&r, 0, 3));
    for (size_t k = 0; k < 3; k++)
        assert_true(at(&r, k)->share_last_bucket == (double)pulls[2][k] / 25.0);
    assert_non_null(r.rules);
    assert_string_equal(r.rules->state, "running");
    assert_true(r.rules->floor == 0.1 && r.rules->burn_in == 3);

    /* The JSON says the same, bucket by bucket. */
    char *text = NULL;
    assert_int_equal(mab_report_json(&r, &text, &err), MAB_OK);
    cJSON *doc = cJSON_Parse(text);
    mab_report_json_free(text);
    cJSON *history = cJSON_GetObjectItem(doc, "history");
    assert_int_equal(cJSON_GetArraySize(history), 3);
    for (int b = 0; b < 3; b++) {
        cJSON *bucket = cJSON_GetArrayItem(history, b);
        uint64_t total = pulls[b][0] + pulls[b][1] + pulls[b][2];
        assert_true(cJSON_GetObjectItem(bucket, "start")->valuedouble == (double)(t0 + 60 * b));
        assert_true(cJSON_GetObjectItem(bucket, "pulls")->valuedouble == (double)total);
        for (int k = 0; k < 3; k++) {
            cJSON *arm = cJSON_GetObjectItem(cJSON_GetObjectItem(bucket, "arms"), ids[k]);
            cJSON *rate = cJSON_GetObjectItem(arm, "rate"), *share = cJSON_GetObjectItem(arm, "share");
            if (pulls[b][k])
                assert_true(rate->valuedouble == (double)rewards[b][k] / (double)pulls[b][k]);
            else
                assert_true(cJSON_IsNull(rate));
            if (total)
                assert_true(share->valuedouble == (double)pulls[b][k] / (double)total);
            else
                assert_true(cJSON_IsNull(share));
        }
    }
    cJSON *rules = cJSON_GetObjectItem(doc, "rules");
    assert_string_equal(cJSON_GetObjectItem(rules, "state")->valuestring, "running");
    assert_true(cJSON_GetObjectItem(rules, "floor")->valuedouble == 0.1);
    assert_true(cJSON_GetObjectItem(rules, "burn_in")->valuedouble == 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(rules, "holdout")));
    cJSON_Delete(doc);
    mab_report_free(&r);
    assert_null(r.history);
    assert_null(r.rules);

    /* At most N buckets: the latest ones. */
    mab_report two = MAB_STRUCT_INIT(mab_report);
    assert_int_equal(mab_report_get_buckets(e, "color", 2, &two, &err), MAB_OK);
    assert_int_equal(two.n_history, 2);
    assert_int_equal(mab_report_bucket_at(&two, 0, 0)->start, t0 + 60);
    assert_int_equal(mab_report_bucket_at(&two, 1, 2)->pulls, pulls[2][2]);
    mab_report_free(&two);
    mab_report big = MAB_STRUCT_INIT(mab_report);
    assert_int_equal(mab_report_get_buckets(e, "color", MAB_REPORT_HISTORY_MAX + 1, &big, &err),
                     MAB_EINVAL);
    assert_non_null(strstr(err.message, "buckets of history"));

    /* A caller built against the first mab_report gets neither history nor
       rules, and nothing is written past its struct. */
    unsigned char buffer[sizeof(mab_report) + 16];
    memset(buffer, 0x5a, sizeof buffer);
    mab_report *old = (mab_report *)buffer;
    old->struct_size = MAB_REPORT_SIZE_0_1;
    assert_int_equal(mab_report_get(e, "color", old, &err), MAB_OK);
    assert_true(old->available & MAB_REPORT_HAS_SHARE);
    for (size_t i = MAB_REPORT_SIZE_0_1; i < sizeof buffer; i++)
        assert_int_equal(buffer[i], 0x5a);
    assert_int_equal(mab_report_json(old, &text, &err), MAB_OK);
    doc = cJSON_Parse(text);
    mab_report_json_free(text);
    assert_null(cJSON_GetObjectItem(doc, "history"));
    assert_null(cJSON_GetObjectItem(doc, "rules"));
    cJSON_Delete(doc);
    assert_null(mab_report_bucket_at(old, 0, 0));
    mab_report_free(old);
    assert_int_equal(mab_close(e, &err), MAB_OK);

    /* Without storage there are no stored buckets: not available, and the
       JSON says why (this process's own buckets are not the history). */
    mab_options opts = {.struct_size = sizeof opts, .flags = MAB_OPEN_NO_STORAGE};
    if (mab_open_ex(config_path, &opts, &e, &err) != MAB_OK)
        fail_msg("mab_open_ex: %s", err.message);
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "color", &c, &err), MAB_OK);
    mab_report none = MAB_STRUCT_INIT(mab_report);
    assert_int_equal(mab_report_get(e, "color", &none, &err), MAB_OK);
    assert_false(none.available & (MAB_REPORT_HAS_HISTORY | MAB_REPORT_HAS_SHARE));
    assert_true(isnan(at(&none, 0)->share_last_bucket));
    assert_int_equal(none.n_history, 0);
    assert_int_equal(mab_report_json(&none, &text, &err), MAB_OK);
    doc = cJSON_Parse(text);
    mab_report_json_free(text);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "history")));
    cJSON *reasons = cJSON_GetObjectItem(doc, "not_available_reasons");
    assert_non_null(strstr(cJSON_GetObjectItem(reasons, "history")->valuestring,
                           "keeps no time buckets"));
    assert_non_null(strstr(cJSON_GetObjectItem(reasons, "share_last_bucket")->valuestring,
                           "keeps no time buckets"));
    cJSON *missing = cJSON_GetObjectItem(doc, "not_available");
    int listed = 0;
    for (cJSON *m = missing ? missing->child : NULL; m; m = m->next)
        listed += strcmp(m->valuestring, "history") == 0;
    assert_int_equal(listed, 1);
    cJSON_Delete(doc);
    mab_report_free(&none);
    assert_int_equal(mab_close(e, &err), MAB_OK);
    unlink(path);
}

static int teardown(void **state)
{
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/state.json", dir);
    unlink(path);
    unlink(config_path);
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_beta_arms_closed_form),
        cmocka_unit_test(test_three_beta_arms_integration),
        cmocka_unit_test(test_two_normal_arms_closed_form),
        cmocka_unit_test(test_beta_credible_interval),
        cmocka_unit_test(test_winner_rule_thresholds),
        cmocka_unit_test(test_same_snapshot_same_answer),
        cmocka_unit_test(test_struct_size),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_engine_report_and_winner_key),
        cmocka_unit_test(test_winner_key_refused),
        cmocka_unit_test(test_history_and_share),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
