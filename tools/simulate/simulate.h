/*
 * simulate.h - simulated visitors against arms whose reward distributions
 * are known, for `mab simulate` and the decision-quality tests.
 *
 * Internal to the `mab` tool and its tests (not part of libmab): it drives
 * engines through the public API only, like any other host.
 *
 * Units. Rewards sent to the engine are in the experiment's own units (a
 * click is rewarded with the range's maximum). Expected regret is measured
 * on the reward range scaled to [0, 1], the scale the policies see, so that
 * with Bernoulli arms it counts lost clicks: T mu* - sum_t mu_{A_t}, from
 * the true means, never from the sampled rewards.
 *
 * Reproducibility. Run r of a simulation seeded with S opens its engine with
 * sim_engine_seed(S, r) and draws arm i's rewards from a stream of its own
 * seeded from (S, r, i): the n-th pull of an arm yields the same reward
 * whatever the policy and whichever thread runs it, so policies are compared
 * on the same visitors and the results do not depend on scheduling.
 */
#ifndef MAB_CLI_SIMULATE_H
#define MAB_CLI_SIMULATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mab/mab.h"

typedef enum sim_kind {
    SIM_BERNOULLI, /* a click (reward = range maximum) with probability p, else nothing */
    SIM_GAUSSIAN   /* every visitor sends N(mean, sd) clamped to the reward range */
} sim_kind;

/* The true arms of a simulation. */
typedef struct sim_bandit {
    sim_kind kind;
    size_t n_arms;
    double *param; /* click probability, or mean in reward units */
    double *sd;    /* Gaussian: standard deviation in reward units; else NULL */
    double reward_min, reward_max;
    double *mean;  /* expected reward of a pull, scaled to [0, 1] by the range
                      (for Gaussian arms: the mean after clamping) */
    size_t best;   /* an arm of highest mean (the first) */
    double best_mean;
} sim_bandit;

/**
 * @brief Validate and describe the arms. param and sd are copied (sd: one
 *        value per arm, NULL for Bernoulli arms).
 * @return 0, or -1 with a sentence in why (probabilities outside [0, 1],
 *         means outside the reward range, sd <= 0, out of memory).
 */
int sim_bandit_init(sim_bandit *b, sim_kind kind, size_t n_arms, const double *param,
                    const double *sd, double reward_min, double reward_max, char *why,
                    size_t why_size);
void sim_bandit_free(sim_bandit *b);

/** @brief Whether arm i has the best mean (ties count). */
bool sim_is_best(const sim_bandit *b, size_t arm);

/**
 * @brief Lai & Robbins' constant sum_{i: Delta_i > 0} Delta_i / KL(mu_i, mu*):
 *        for any consistent policy regret grows at least like this times ln T.
 *        Bernoulli KL for Bernoulli arms; for Gaussian arms the Gaussian KL
 *        Delta^2 / (2 sd^2) on the scaled range (exact without clamping).
 */
double sim_lai_robbins_rate(const sim_bandit *b);

/**
 * @brief Auer, Cesa-Bianchi & Fischer's bound on UCB1's expected regret
 *        after t plays: sum_{Delta_i > 0} 8 ln t / Delta_i + (1 + pi^2/3) sum Delta_i.
 */
double sim_auer_bound(const sim_bandit *b, uint64_t t);

/** @brief The seed of run `run`'s engine (its policy's random stream). */
uint64_t sim_engine_seed(uint64_t seed, uint64_t run);

/* ---- scenarios beside the stationary one ------------------------------ */

#define SIM_DEFAULT_RATE 100.0 /* visitors per simulated second */
#define SIM_WORKERS_MAX 64
#define SIM_CONTEXT_MAX 32     /* features of --context linear:D */
/* Simulated time starts at 2026-01-01T00:00:00Z (the engines' injected clock). */
#define SIM_EPOCH_NS INT64_C(1767225600000000000)

/*
 * How the world moves during a run. Zeroed fields (with rate set) are the
 * stationary case. Visitor n (from 1) arrives at (n - 1) / rate simulated
 * seconds; every engine reads that time from its injected clock
 * (mab_set_clock), so a run does not depend on the machine's clock.
 *
 *  - change_at T1: visitors after T1 see the click probabilities
 *    param_after (abrupt change).
 *  - drift A: arm i's click probability at simulated second s is
 *    p_i + A sin(2 pi (s / drift_period + i / K)), clamped to [0, 1]: a
 *    daily cycle (drift_period 86400 s) whose phase differs per arm, so the
 *    best arm changes during the day.
 *  - delay D: a click reaches the engine after an exponential delay of mean
 *    D visitors (D * rate for seconds); a visitor who does not click sends
 *    nothing, ever, and clicks still on their way at T are never sent.
 *  - workers N, refresh_ms R: N engines over one in-memory store
 *    (sim_shared), visitor n served by engine (n - 1) mod N; each writes
 *    and re-reads the store every R simulated ms, the N phases spread over
 *    the period, so each sees the others' counts only when it reloads.
 *  - context_dim D: every visitor has features x0..x{D-1} ~ N(0, 1), passed
 *    by name to mab_choose_ctx/mab_reward_ctx, and clicks arm a with
 *    probability sigmoid(theta_a . x - 2), theta_a ~ N(0, I) drawn from the
 *    seed alone (every run plays the same arms, on other visitors).
 *
 * Regret is dynamic: at each visitor, the mean of the best arm for that
 * visitor at that time minus the chosen arm's.
 */
typedef struct sim_scenario {
    uint64_t change_at;        /* 0: no change */
    const double *param_after; /* n_arms click probabilities, with change_at */
    double drift;              /* amplitude in click probability, 0: none */
    double drift_period;       /* simulated seconds (> 0 with drift) */
    double delay;              /* mean delay in visitors, 0: instant */
    unsigned workers;          /* 0 or 1: one engine */
    uint32_t refresh_ms;       /* with workers >= 2 */
    unsigned context_dim;      /* 0: no context */
    double rate;               /* visitors per simulated second (> 0) */
} sim_scenario;

/** @brief Whether the scenario fits the arms; -1 with a sentence in why. */
int sim_scenario_check(const sim_scenario *sc, const sim_bandit *b, char *why, size_t why_size);

/** @brief Whether the arms' means never move (no change, drift or context). */
bool sim_scenario_static(const sim_scenario *sc);

/** @brief The linear click model's theta (n_arms x dim, row per arm) of a seed. */
void sim_context_theta(uint64_t seed, size_t n_arms, unsigned dim, double *theta);
double sim_sigmoid(double z);
/** @brief "x0", "x1", ...: the names the features are passed by. */
const char *sim_feature_name(unsigned i);

/** @brief A clock for mab_set_clock(): reads the int64_t clock_ctx points to. */
int64_t sim_clock_read(void *clock_ctx);

/* What one run produced. Arrays have one entry per arm; the caller
   allocates them (n_arms each) or leaves them NULL. */
typedef struct sim_run_result {
    uint64_t *pulls;
    uint64_t *rewards;   /* rewards sent (Bernoulli: clicks) */
    double *reward_sum;  /* in reward units */
    double total_reward; /* in reward units */
    double regret;       /* expected regret after the last step, scaled units */
    uint64_t best_pulls; /* pulls of an arm that was best for that visitor */
    uint64_t late;       /* clicks still on their way at the end (never sent) */
} sim_run_result;

/* Called after every step with the step number (from 1) and the arm chosen. */
typedef void (*sim_step_fn)(void *ctx, uint64_t step, size_t arm);

/* How to run one simulation on an engine that is already open. */
typedef struct sim_run_spec {
    const char *experiment;
    const sim_bandit *bandit;
    uint64_t steps;
    uint64_t seed, run;          /* the rewards' streams come from (seed, run) */
    const uint64_t *checkpoints; /* increasing steps at which to record the regret */
    size_t n_checkpoints;
    double *regret_at;           /* n_checkpoints entries, or NULL */
    double *share_at;            /* n_checkpoints x n_arms: each arm's share of the
                                    pulls since the previous checkpoint, or NULL */
    const sim_scenario *scenario;/* NULL: stationary at SIM_DEFAULT_RATE */
    _Atomic int64_t *clock;      /* the engines' clock (sim_clock_read), set to each
                                    event's simulated time; NULL: not driven */
    sim_step_fn on_step;         /* may be NULL */
    void *ctx;
} sim_run_spec;

/**
 * @brief Send spec->steps simulated visitors to an experiment: choose, then
 *        reward as the chosen arm's distribution says.
 * @return MAB_OK or the engine's error (also when the experiment's number of
 *         arms differs from the bandit's: MAB_EINVAL).
 */
int sim_run(mab_engine *engine, const sim_run_spec *spec, sim_run_result *out, mab_error *err);

/**
 * @brief sim_run() over n_engines engines sharing one store (the
 *        scenario's workers; every engine holds the experiment).
 */
int sim_run_workers(mab_engine *const *engines, size_t n_engines, const sim_run_spec *spec,
                    sim_run_result *out, mab_error *err);

/* ---- comparing policies over many runs -------------------------------- */

/* Policies to compare, parsed from "NAME[:KEY=VALUE...],..." */
typedef struct sim_policy_list {
    size_t n;
    char **labels;      /* each item as written */
    char **policy_json; /* {"plugin": NAME, KEY: VALUE, ...} */
} sim_policy_list;

/**
 * @brief Parse a --policies list: items separated by commas, each a policy
 *        plugin name (or path) with optional KEY=VALUE parameters separated
 *        by ':' (a comma-separated KEY=VALUE continues the item before it).
 *        VALUE is a JSON number, true, false, or else a string; the key
 *        "features" takes a list of names separated by ';' (x0;x1;x2).
 * @return 0, or -1 with a sentence in why.
 */
int sim_policies_parse(const char *text, sim_policy_list *out, char *why, size_t why_size);
void sim_policies_free(sim_policy_list *list);

/**
 * @brief Write a temporary config with one experiment "p0", "p1", ... per
 *        policy, each with the arms and reward range of `experiment` in the
 *        config at config_path, and that config's plugin_path (made absolute)
 *        and storage. The caller unlinks path_out.
 * @return MAB_OK, MAB_EIO, MAB_ECONFIG (unreadable config, unknown
 *         experiment) or MAB_ENOMEM.
 */
int sim_write_policy_config(const char *config_path, const char *experiment,
                            const sim_policy_list *policies, char *path_out,
                            size_t path_size, mab_error *err);

/* sim_write_policy_config_ex() flags. */
#define SIM_CONFIG_SHARED_STORE 1u /* storage: the workers' sim_shared store */

/**
 * @brief sim_write_policy_config() with flags; policies NULL: one
 *        experiment "p0" with the experiment's own policy object.
 */
int sim_write_policy_config_ex(const char *config_path, const char *experiment,
                               const sim_policy_list *policies, unsigned flags, char *path_out,
                               size_t path_size, mab_error *err);

typedef struct sim_plan {
    const char *config_path;       /* a config holding every experiment below */
    const char *const *experiments;/* one per policy compared */
    size_t n_policies;
    const sim_bandit *bandit;
    uint64_t steps, runs, seed;
    unsigned threads;              /* worker threads (>= 1) */
    size_t n_checkpoints;          /* points of the regret curves, 1..steps */
    const char *const *sections;   /* hosts' sections the config may hold (mab_open_sections) */
    const sim_scenario *scenario;  /* NULL: stationary; with workers >= 2 the config's
                                      storage must be sim_shared (sim_write_policy_config_ex) */
} sim_plan;

typedef struct sim_policy_result {
    double regret_mean;        /* mean over runs of the regret at T */
    double regret_ci;          /* half-width of its 95% interval (Student t); NAN for 1 run */
    double best_share;         /* share of all pulls that went to an arm best for
                                  that visitor at that time */
    double reward_per_visitor; /* mean reward per visitor, reward units */
    double *curve_mean, *curve_lo, *curve_hi; /* regret at each checkpoint, 95% band */
    double *regret_by_run;     /* regret at T of each run */
    uint64_t *pulls;           /* per arm, summed over runs */
    double *share_mean;        /* [checkpoint][arm]: mean share of the pulls between
                                  the checkpoint before and this one */
    double late_per_run;       /* clicks still delayed at T, mean per run */
} sim_policy_result;

typedef struct sim_results {
    size_t n_policies, n_checkpoints;
    uint64_t *checkpoints;
    sim_policy_result *policies;
} sim_results;

/**
 * @brief Run every (run, policy) pair of the plan on a pool of threads, each
 *        pair on an engine of its own opened without storage.
 * @return MAB_OK or the first error (by run, then policy) an engine reported.
 */
int sim_compare(const sim_plan *plan, sim_results *out, mab_error *err);
void sim_results_free(sim_results *r);

/** @brief Two-sided 95% quantile of Student's t with df degrees of freedom. */
double sim_t95(uint64_t df);

/* ---- output ----------------------------------------------------------- */

/* Everything a plot or CSV file needs besides the results. */
typedef struct sim_report {
    const sim_plan *plan;
    const sim_results *results;
    const char *const *labels; /* one per policy */
    const char *experiment;    /* the experiment whose arms were simulated */
    const char *const *arm_ids;/* one per arm, or NULL ("arm 1", ...) */
} sim_report;

/** @brief Regret curves as CSV, one row per policy and checkpoint. */
int sim_write_csv(FILE *out, const sim_report *report);

/** @brief Regret curves with 95% bands (and the Lai-Robbins line when the
 *         arms do not move) as SVG, and below them one panel per policy of
 *         each arm's share of traffic over time. */
int sim_write_svg(FILE *out, const sim_report *report);

/* A whole file as a NUL-terminated string (caller frees), or NULL with err
   naming the file. Shared with the rest of the mab tool. */
char *sim_read_file(const char *path, mab_error *err);

#endif /* MAB_CLI_SIMULATE_H */
