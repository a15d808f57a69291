/*
 * floor_bench.c - the least work each decision needs at K arms, to count
 * with callgrind beside the library's calls (issue 18, tests/bench/
 * floor_callgrind.sh, docs/benchmarks.md "Decisions against the floor"):
 *
 *   valgrind --tool=callgrind --toggle-collect=floor_ucb1 mab-bench-floor ucb1 10 20000
 *
 * counts N calls of floor_ucb1() and what it calls (divide by N), the way
 * mab-bench-calls is counted with --toggle-collect=mab_choose_h. Each floor
 * is what a program written for one policy and one thread, keeping the
 * same counters as the engine (pulls, rewards, reward sum per arm, in one
 * array), must do per decision, and nothing more: no lookup, no lock, no
 * copy, no probability, no error checks, ties broken by the first arm.
 *
 *   epsilon_greedy  one uniform draw; explore: one bounded draw; exploit: K
 *                   means (a division each) and an argmax. Count the pull.
 *   ucb1            the total pulls (K adds), one log, K (division, square
 *                   root, multiply-add) and an argmax. Count the pull.
 *   softmax         K means and their max, K exp (kept), one uniform draw
 *                   and the inverse CDF. Count the pull.
 *   thompson        K Beta draws with the core's own sampler (mab_rng_beta
 *                   of libmab: the same generator and Gamma method the
 *                   thompson policy uses) and an argmax. Count the pull.
 *   exp3            K importance-weighted sums G_i, their max, K exp, the
 *                   K probabilities with gamma mixing, one uniform draw and
 *                   the inverse CDF. Count the pull.
 *   reward          add to two counters (the arm's rewards and reward sum).
 *
 * The uniform draws are the core's generator too (xoshiro256**, written
 * out here inline, as the core inlines it). The state is warmed up first
 * the way mab-bench-calls warms the engine: 50 K decisions, arm a rewarded
 * with probability about (a + 1) / (K + 1).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mab/rng.h"

#define FLOOR_MAX_ARMS 100

typedef struct floor_arm {
    uint64_t pulls;
    uint64_t rewards;
    double reward_sum;
    double g; /* exp3's importance-weighted reward sum */
} floor_arm;

typedef struct floor_state {
    floor_arm arms[FLOOR_MAX_ARMS];
    size_t n_arms;
    uint64_t s[4]; /* xoshiro256** */
    mab_rng *rng;  /* the core's, for Thompson's Beta draws */
    double epsilon, inv_tau, gamma;
} floor_state;

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t next_u64(floor_state *f)
{
    uint64_t *s = f->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static inline double uniform(floor_state *f)
{
    return (double)(next_u64(f) >> 11) * 0x1.0p-53;
}

static inline uint64_t below(floor_state *f, uint64_t n)
{
    /* Multiply-shift; the bias of one in 2^64 / n does not matter here. */
    return (uint64_t)(((unsigned __int128)next_u64(f) * n) >> 64);
}

static inline double mean(const floor_arm *a)
{
    return a->pulls ? a->reward_sum / (double)(int64_t)a->pulls : 0.0;
}

#define FLOOR_FN __attribute__((noinline, noclone))

FLOOR_FN static size_t floor_epsilon_greedy(floor_state *f)
{
    size_t k = f->n_arms, best = 0;
    if (uniform(f) < f->epsilon) {
        best = (size_t)below(f, k);
    } else {
        double best_mean = mean(&f->arms[0]);
        for (size_t i = 1; i < k; i++) {
            double m = mean(&f->arms[i]);
            if (m > best_mean) {
                best_mean = m;
                best = i;
            }
        }
    }
    f->arms[best].pulls++;
    return best;
}

FLOOR_FN static size_t floor_ucb1(floor_state *f)
{
    size_t k = f->n_arms, best = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < k; i++) {
        if (f->arms[i].pulls == 0) {
            f->arms[i].pulls++;
            return i;
        }
        total += f->arms[i].pulls;
    }
    double two_log_t = 2.0 * log((double)total), best_index = -INFINITY;
    for (size_t i = 0; i < k; i++) {
        double inv_n = 1.0 / (double)(int64_t)f->arms[i].pulls;
        double index = f->arms[i].reward_sum * inv_n + sqrt(two_log_t * inv_n);
        if (index > best_index) {
            best_index = index;
            best = i;
        }
    }
    f->arms[best].pulls++;
    return best;
}

FLOOR_FN static size_t floor_softmax(floor_state *f)
{
    size_t k = f->n_arms, chosen = k - 1;
    double means[FLOOR_MAX_ARMS], w[FLOOR_MAX_ARMS];
    double max = -INFINITY, total = 0.0;
    for (size_t i = 0; i < k; i++) {
        means[i] = mean(&f->arms[i]);
        if (means[i] > max)
            max = means[i];
    }
    for (size_t i = 0; i < k; i++) {
        w[i] = exp((means[i] - max) * f->inv_tau);
        total += w[i];
    }
    double target = uniform(f) * total, cumulative = 0.0;
    for (size_t i = 0; i < k; i++) {
        cumulative += w[i];
        if (target < cumulative) {
            chosen = i;
            break;
        }
    }
    f->arms[chosen].pulls++;
    return chosen;
}

FLOOR_FN static size_t floor_thompson(floor_state *f)
{
    size_t k = f->n_arms, best = 0;
    double best_theta = -1.0;
    for (size_t i = 0; i < k; i++) {
        const floor_arm *a = &f->arms[i];
        double failures = (double)(int64_t)a->pulls - a->reward_sum; /* as thompson.c */
        double theta = mab_rng_beta(f->rng, 1.0 + a->reward_sum, 1.0 + failures);
        if (theta > best_theta) {
            best_theta = theta;
            best = i;
        }
    }
    f->arms[best].pulls++;
    return best;
}

FLOOR_FN static size_t floor_exp3(floor_state *f)
{
    size_t k = f->n_arms, chosen = k - 1;
    double p[FLOOR_MAX_ARMS];
    double max = f->arms[0].g, total = 0.0, scale = f->gamma / (double)k;
    for (size_t i = 1; i < k; i++)
        if (f->arms[i].g > max)
            max = f->arms[i].g;
    for (size_t i = 0; i < k; i++) {
        p[i] = exp(scale * (f->arms[i].g - max));
        total += p[i];
    }
    double mix = (1.0 - f->gamma) / total, cumulative = 0.0, u = uniform(f);
    for (size_t i = 0; i < k; i++) {
        cumulative += p[i] * mix + scale;
        if (u < cumulative) {
            chosen = i;
            break;
        }
    }
    f->arms[chosen].pulls++;
    return chosen;
}

FLOOR_FN static void floor_reward(floor_state *f, size_t arm, double value)
{
    f->arms[arm].rewards++;
    f->arms[arm].reward_sum += value;
}

typedef size_t (*floor_choose_fn)(floor_state *f);

static const struct {
    const char *name;
    floor_choose_fn choose;
} floors[] = {
    {"epsilon_greedy", floor_epsilon_greedy},
    {"ucb1", floor_ucb1},
    {"softmax", floor_softmax},
    {"thompson", floor_thompson},
    {"exp3", floor_exp3},
};

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: mab-bench-floor epsilon_greedy|ucb1|softmax|thompson|exp3|"
                        "reward K N\n");
        return 2;
    }
    size_t k = strtoul(argv[2], NULL, 10);
    long n = strtol(argv[3], NULL, 10);
    if (k < 1 || k > FLOOR_MAX_ARMS || n < 1) {
        fprintf(stderr, "mab-bench-floor: K in 1..%d, N > 0\n", FLOOR_MAX_ARMS);
        return 2;
    }
    int is_reward = strcmp(argv[1], "reward") == 0;
    floor_choose_fn choose = is_reward ? floor_ucb1 : NULL;
    for (size_t i = 0; i < sizeof floors / sizeof floors[0]; i++)
        if (strcmp(argv[1], floors[i].name) == 0)
            choose = floors[i].choose;
    if (!choose) {
        fprintf(stderr, "mab-bench-floor: unknown floor \"%s\"\n", argv[1]);
        return 2;
    }
    static floor_state f;
    f.n_arms = k;
    f.epsilon = 0.1;        /* the epsilon_greedy policy's default */
    f.inv_tau = 1.0 / 0.1;  /* softmax's default tau */
    f.gamma = 0.1;          /* exp3's default gamma */
    f.rng = mab_rng_create(1);
    if (!f.rng)
        return 1;
    uint64_t x = 1;
    for (int i = 0; i < 4; i++) /* any nonzero state */
        f.s[i] = (x = x * 6364136223846793005ULL + 1442695040888963407ULL) | 1;

    /* Warm up as mab-bench-calls does, with this floor's own decisions
       (reward's: ucb1's, a policy that keeps the counts spread). */
    unsigned long long lcg = 12345;
    for (size_t i = 0; i < 50 * k; i++) {
        size_t arm = choose(&f);
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(lcg >> 11) * 0x1.0p-53;
        if (u * (double)(k + 1) < (double)(arm + 1)) {
            floor_reward(&f, arm, 1.0);
            f.arms[arm].g += (double)k; /* r / p at p = 1/K */
        }
    }
    /* The measured calls: their results feed a checksum that is printed,
       so that none of them can be left out. */
    uint64_t checksum = 0;
    if (is_reward) {
        size_t a = 0;
        for (long i = 0; i < n; i++) {
            floor_reward(&f, a, (double)(i & 1));
            if (++a == k)
                a = 0;
        }
        for (size_t i = 0; i < k; i++)
            checksum += f.arms[i].rewards;
    } else {
        for (long i = 0; i < n; i++)
            checksum += choose(&f);
    }
    printf("%s K=%zu N=%ld checksum %llu\n", argv[1], k, n, (unsigned long long)checksum);
    mab_rng_destroy(f.rng);
    return 0;
}
