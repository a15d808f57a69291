/*
 * engine_access.h - the only engine internals the adapter (core/adapter/)
 * uses; for everything else it calls the public API (include/mab/) like any
 * host. Implemented by the engine (config.c); internal.h brings the shared
 * helpers (mab__strdup, mab__asprintf, mab__fork_generation, MAB__ID_MAX).
 */
#ifndef MAB_ENGINE_ACCESS_H
#define MAB_ENGINE_ACCESS_H

#include "internal.h"
#include "mab/storage.h"
#include "web_config.h"

/* The config file the engine was opened from, for error messages. */
const char *mab__engine_config_path(const mab_engine *engine);

/* The adapter's settings, parsed by web_config.c while the engine opened
   (never NULL for an open engine). Owned by the engine. */
const mab__web_config *mab__engine_web_config(const mab_engine *engine);

/* The reward range of an experiment, found by id without a public lookup
   (the adapter checks a reward before it spends the visitor's claim).
   MAB_OK, or MAB_ENOTFOUND for an unknown experiment. */
int mab__engine_reward_range(const mab_engine *engine, const char *experiment, double *min,
                             double *max);

/* The engine's clock (mab_set_clock(), else CLOCK_REALTIME), in ns since
   the Unix epoch: the adapter dates requests and cookie entries by it. */
int64_t mab__engine_time_ns(const mab_engine *engine);

/* The features an experiment's policy names ("features"), in its order,
   valid until mab_close(). MAB_OK (n 0 without features) or MAB_ENOTFOUND. */
int mab__engine_features(const mab_engine *engine, const char *experiment,
                         const char *const **names, size_t *n);

/* What the cookie carries for experiment number `index` (config order):
   its id, the length of its longest arm id and its number of features, for
   the worst-case cookie size. MAB_OK or MAB_ENOTFOUND (index out of range). */
int mab__engine_cookie_shape(const mab_engine *engine, size_t index, const char **id,
                             size_t *longest_arm_id, size_t *n_features);

/* The id of arm `arm_index` of a handle's experiment, owned by the engine;
   NULL for a stale handle or an index out of range. */
const char *mab__engine_arm_id(const mab_engine *engine, mab_handle experiment,
                               size_t arm_index);

/* Whether the engine's storage keeps claims (a storage plugin of ABI >= 1.3):
   then rewards go through mab__engine_claim_reward and count once across
   every process and restart; otherwise only the adapter's memory guards. */
int mab__engine_has_claims(const mab_engine *engine);

/*
 * Count a reward once per assignment: claim `assignment_id` in storage
 * (storage.h, claim) and count the reward only when the claim is granted.
 * Serialised with the engine's other storage calls. With sync "always" the
 * claim and the reward are durable together when this returns MAB_OK, and
 * on MAB_ESTORAGE neither was stored; with sync {"interval_ms": N} the claim
 * is durable and the reward queued (engine.c says what a crash then loses).
 * ctx (may be NULL) goes to an ABI 2 policy's update with the reward (its
 * probability, features, time); its statistics follow the claim in a second
 * commit under sync "always" (engine.c, claimed_reward_stats).
 * @return MAB_OK (counted); MAB_ECLAIMED (already claimed: nothing counted);
 *         MAB_ENOTFOUND, MAB_ERANGE (outside the range, or the arm's sums
 *         would overflow: checked before claiming), MAB_EINVAL (NaN, no
 *         claims in this storage, a read-only engine, or storage refused
 *         this reward's delta), MAB_ESTORAGE or MAB_ENOMEM: nothing claimed,
 *         nothing counted (but see engine.c for sync interval_ms, where a
 *         reward failing after its claim was granted is lost, never counted
 *         twice).
 */
int mab__engine_claim_reward(mab_engine *engine, const char *experiment, const char *arm,
                             double value, const uint8_t assignment_id[MAB_ASSIGNMENT_ID_BYTES],
                             int64_t expires_at, const mab_context *ctx, mab_error *err);

#endif
