/*
 * adapter.h - request hooks for hosts (HTTP servers, frameworks, your C
 * program): sticky choice through a signed cookie, rewards counted once per
 * assignment, guarded redirects.
 *
 * The adapter is host-neutral. It takes the strings a host already has (the
 * Cookie header or a token, experiment ids, a reward value, a redirect
 * target) and returns the strings the host must send (a Set-Cookie value, a
 * token, a status and a Location, an X-MAB-Debug value). It never does I/O
 * on the network and never prints.
 *
 * A typical request:
 *
 *     mab_request *rq;
 *     mab_request_begin(adapter, cookie_header, NULL, &rq, &err);
 *     mab_assignment a;
 *     mab_request_choose(rq, "color_btn", &a, &err);   // a.arm_id, a.value_json
 *     const char *set_cookie = mab_request_set_cookie(rq); // NULL: send none
 *     ...send the response...
 *     mab_request_end(rq);
 *
 * Conventions are those of mab.h: int status (MAB_OK or a negative MAB_E*),
 * a `mab_error *err` last (may be NULL), no printing, no exit().
 *
 * The cookie. One cookie holds one entry per experiment: the arm id, a
 * random 128-bit assignment id, a "rewarded" flag, the probability the arm
 * was chosen with, the time it was issued and the values of the context
 * features the experiment's policy names (its config's "features"), so
 * that the reward's update() sees the features the choice saw (format 2;
 * cookies of format 1, without features, still decode). The
 * worst-case cookie is bounded: mab_adapter_open() refuses a config whose
 * cookie could exceed the 4096 bytes browsers keep. It is serialised compactly,
 * signed with HMAC-SHA-256 (RFC 2104; the key's hash states computed once,
 * when the keys are loaded) and encoded as base64url without padding. A cookie whose signature does not verify under
 * any configured key, that cannot be parsed, or whose entries were issued
 * more than `cookie.max_age` seconds ago is ignored (the visitor gets a fresh
 * assignment) and counted (mab_adapter_counters); it never makes a call
 * fail. The same string serves as a token for callers without cookies.
 *
 * Threads: one mab_adapter may be used by any number of threads at once;
 * a mab_request belongs to one thread at a time. mab_adapter_reload() must
 * not run concurrently with requests on the same adapter.
 *
 * Changelog (as SQLite's iVersion notes: what each version added):
 *  - 0.1: everything below except what 0.2 added.
 *  - 0.2: the structs the adapter fills start with `struct_size`, set by the
 *    caller (MAB_STRUCT_INIT, mab.h "Structs that grow"): mab_assignment,
 *    mab_reward_result, mab_redirect, mab_adapter_counters. A struct_size
 *    below the struct's MAB_*_SIZE_0_1 is MAB_EINVAL and nothing is counted;
 *    fields past the caller's struct_size are not written. Added in 0.2:
 *    mab_assignment.arm_index, mab_reward_result.probability;
 *    mab_adapter_get_counters() returns a status. The adapter looks each
 *    experiment up once per call (mab.h handles) instead of once per step.
 */
#ifndef MAB_ADAPTER_H
#define MAB_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "mab/mab.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mab_adapter mab_adapter;
typedef struct mab_request mab_request;

/**
 * @brief Create an adapter over an open engine, with the config's adapter
 *        keys `secret_file`, `cookie`, `redirect_allow` and `debug_header`
 *        (docs/config.md; validated already by mab_open(), which accepts
 *        them for the adapter). Reads the key file.
 * @param engine must outlive the adapter, or until mab_adapter_reload()
 *        points the adapter at another engine.
 * @param out receives the adapter; free it with mab_adapter_close().
 * @return MAB_OK; MAB_ECONFIG when the config has no `secret_file` or the
 *         key file is malformed, too open (readable or writable by others)
 *         or holds no key, or when the visitor cookie could exceed 4096
 *         bytes (name, value and attributes) with one entry for each
 *         experiment, each with its longest arm id and all its policy's
 *         features (at most 24 entries: the largest count); the message
 *         names those experiments, largest first; MAB_EIO when the key file
 *         cannot be read; MAB_ENOMEM.
 */
MAB_EXPORT int mab_adapter_open(mab_engine *engine, mab_adapter **out, mab_error *err);

/* The keys of a `secret_file`, read into memory (opaque). */
typedef struct mab_adapter_keys mab_adapter_keys;

/**
 * @brief Read the key file named by the engine's `secret_file` into memory,
 *        with the checks of mab_adapter_open(). For hosts whose privileged
 *        process reads secrets and whose unprivileged workers serve requests
 *        (the nginx master reads it at configuration time, as nginx reads
 *        ssl_certificate_key, and its workers inherit it across fork()): the
 *        engine may be opened with MAB_OPEN_NO_STORAGE and closed afterwards;
 *        the keys do not refer to it.
 * @param out receives the keys; free them with mab_adapter_keys_free().
 * @return as mab_adapter_open().
 */
MAB_EXPORT int mab_adapter_keys_read(mab_engine *engine, mab_adapter_keys **out,
                                     mab_error *err);

/**
 * @brief mab_adapter_open() with keys read earlier by mab_adapter_keys_read()
 *        instead of reading the key file: nothing is read from disk. The
 *        adapter copies the keys; `keys` may be freed afterwards.
 *        mab_adapter_reload() on this adapter reads the key file again.
 * @return MAB_OK; MAB_EINVAL (engine, keys or out NULL); MAB_ENOMEM.
 */
MAB_EXPORT int mab_adapter_open_with_keys(mab_engine *engine, const mab_adapter_keys *keys,
                                          mab_adapter **out, mab_error *err);

/** @brief Wipe (sodium_memzero) and free keys. keys may be NULL. */
MAB_EXPORT void mab_adapter_keys_free(mab_adapter_keys *keys);

/**
 * @brief Point the adapter at another engine (a reloaded config) and re-read
 *        its settings and key file. The counters and the memory of rewarded
 *        assignments are kept. On failure nothing changes and the adapter
 *        keeps serving with the old engine and settings.
 * @return as mab_adapter_open().
 */
MAB_EXPORT int mab_adapter_reload(mab_adapter *adapter, mab_engine *engine, mab_error *err);

/** @brief Free the adapter (not the engine). adapter may be NULL. */
MAB_EXPORT void mab_adapter_close(mab_adapter *adapter);

/**
 * @brief Create a key file for `secret_file`: 32 random bytes (libsodium
 *        randombytes_buf), base64 on one line, mode 0600. Never overwrites.
 *        Key file format: one base64 key (standard alphabet, 32 bytes) per
 *        line; blank lines and lines starting with '#' are ignored; the first
 *        key signs, every key verifies (list the new key first and keep the
 *        old one below it for a cookie lifetime when rotating).
 * @return MAB_OK; MAB_EIO (the file exists or cannot be created or written;
 *         the message names it).
 */
MAB_EXPORT int mab_adapter_keygen(const char *path, mab_error *err);

/** @brief The engine the adapter currently serves. */
MAB_EXPORT mab_engine *mab_adapter_engine(const mab_adapter *adapter);

/* Counters since mab_adapter_open(), for metrics. Monotonic. */
typedef struct mab_adapter_counters {
    size_t struct_size;          /* sizeof(mab_adapter_counters), set by the caller */
    uint64_t cookies_forged;     /* present but bad signature, truncated or unparseable */
    uint64_t cookies_expired;    /* signed entries older than cookie.max_age, dropped */
    uint64_t assignments;        /* new assignments (pulls counted by the adapter) */
    uint64_t rewards_counted;
    uint64_t rewards_refused;    /* every reward that counted nothing, replays included */
    uint64_t replays_refused;    /* of those: an assignment already rewarded */
    uint64_t replay_evictions;   /* remembered ids dropped early because memory was full */
    uint64_t redirects_refused;  /* redirect targets refused by the guard */
} mab_adapter_counters;

/* struct_size of mab_adapter_counters as first versioned: through redirects_refused. */
#define MAB_ADAPTER_COUNTERS_SIZE_0_1 \
    (offsetof(mab_adapter_counters, redirects_refused) + sizeof(uint64_t))

/**
 * @brief Read the counters (each is read atomically; the set is not a snapshot).
 * @param out struct_size set by the caller; counters past it are not written.
 * @return MAB_OK or MAB_EINVAL (adapter or out NULL, or out->struct_size
 *         below MAB_ADAPTER_COUNTERS_SIZE_0_1: then *out is untouched).
 */
MAB_EXPORT int mab_adapter_get_counters(const mab_adapter *adapter, mab_adapter_counters *out);

/**
 * @brief Start handling one request.
 * @param cookie_header the request's Cookie header as received ("a=1; mab=..."),
 *        or NULL. Several cookies of the configured name may be present (from
 *        different paths); the first that verifies is used.
 * @param token a token returned earlier by mab_request_token(), used in place
 *        of the cookie by callers without a cookie jar; NULL when absent. When
 *        both are given the token wins.
 * @param out receives the request; free it with mab_request_end().
 * @return MAB_OK, MAB_EINVAL (adapter or out NULL) or MAB_ENOMEM. A bad
 *         cookie or token is not an error: it is ignored and counted.
 */
MAB_EXPORT int mab_request_begin(mab_adapter *adapter, const char *cookie_header,
                                 const char *token, mab_request **out, mab_error *err);

/** @brief End a request: it and every string it returned are invalid afterwards.
 *         rq may be NULL. The calling thread keeps the request's memory (one
 *         request a thread, freed when the thread exits) for its next
 *         mab_request_begin(), which then allocates nothing. */
MAB_EXPORT void mab_request_end(mab_request *rq);

#define MAB_REQUEST_FEATURES_MAX 256

/**
 * @brief Give the request's context features (numbers by name), for the
 *        assignments mab_request_choose() makes afterwards: each experiment's
 *        policy gets the features its config names ("features"), a feature
 *        not given here being missing (NAN); names it does not use are
 *        ignored; of two equal names the first counts. A value that is not
 *        a finite number (NaN, an infinity) is taken as missing (NAN). The
 *        values a policy names are stored in the new cookie entry, and
 *        mab_request_reward() hands those to the policy's update(), never
 *        the reward request's own features. Calling it again replaces the
 *        features; an entry kept from the cookie keeps its features.
 * @param names, values n of each; copied (they may be freed on return).
 * @param n at most MAB_REQUEST_FEATURES_MAX; 0 clears the features.
 * @return MAB_OK; MAB_EINVAL (rq NULL, names or values NULL with n > 0, a
 *         NULL name, n too large): the request keeps its features;
 *         MAB_ENOMEM.
 */
MAB_EXPORT int mab_request_set_features(mab_request *rq, const char *const *names,
                                        const double *values, size_t n, mab_error *err);

/* What mab_request_choose() returns. Strings are valid until mab_request_end(). */
typedef struct mab_assignment {
    size_t struct_size;      /* sizeof(mab_assignment), set by the caller */
    const char *experiment;
    const char *arm_id;
    const char *value_json;  /* the arm's value as JSON text */
    double probability;      /* probability the arm was chosen with when it was
                                assigned, NAN when the policy cannot tell */
    int is_new;              /* 1: assigned now and a pull was counted;
                                0: kept from the cookie, no pull counted */
    /* Added in 0.2. */
    size_t arm_index;        /* the arm's position in the config (mab_reward_h()) */
    unsigned flags;          /* MAB_CHOICE_HOLDOUT and MAB_CHOICE_NOT_LEARNING as
                                recorded with the assignment; when is_new, every
                                MAB_CHOICE_* flag of the choice (mab.h) */
} mab_assignment;

/* struct_size of mab_assignment as first versioned: through is_new. */
#define MAB_ASSIGNMENT_SIZE_0_1 (offsetof(mab_assignment, is_new) + sizeof(int))

/**
 * @brief Give the visitor an arm of `experiment`. When the cookie (or token)
 *        holds a valid, unexpired entry for it whose arm still exists, that
 *        arm is kept and no pull is counted; otherwise the policy chooses, one
 *        pull is counted (mab_choose_ctx() with the request's features,
 *        mab_request_set_features(), and its time) and the entry is replaced. Calling it for
 *        several experiments, or twice for one, within a request is fine: each
 *        experiment gets one entry and at most one pull per request.
 * @param out struct_size set by the caller.
 * @return MAB_OK; MAB_ENOTFOUND (unknown experiment); MAB_EPLUGIN (the
 *         policy failed); MAB_ENOMEM; MAB_EINVAL (NULL argument, or
 *         out->struct_size below MAB_ASSIGNMENT_SIZE_0_1: nothing counted).
 */
MAB_EXPORT int mab_request_choose(mab_request *rq, const char *experiment, mab_assignment *out,
                                  mab_error *err);

/* Why a reward counted nothing. Values are never renumbered. */
typedef enum mab_reward_reason {
    MAB_REWARD_COUNTED = 0,          /* it counted */
    MAB_REWARD_NO_COOKIE = 1,        /* no cookie or token came with the request */
    MAB_REWARD_INVALID_COOKIE = 2,   /* the cookie or token was forged, truncated or unparseable */
    MAB_REWARD_NO_ASSIGNMENT = 3,    /* valid cookie, but no entry for this experiment */
    MAB_REWARD_ALREADY_REWARDED = 4, /* the entry is marked rewarded */
    MAB_REWARD_REPLAYED = 5,         /* an older copy of the cookie was sent again */
    MAB_REWARD_ARM_REMOVED = 6,      /* the assigned arm is no longer in the config */
    MAB_REWARD_EXPIRED = 7,          /* the entry is older than cookie.max_age */
    MAB_REWARD_PAUSED = 8,           /* assigned while the experiment was paused */
    MAB_REWARD_LATE = 9,             /* after the experiment's attribution_window
                                        (counted in mab_rules_info.late_rewards) */
    MAB_REWARD_HOLDOUT_REMOVED = 10  /* assigned in a holdout the config no longer has */
} mab_reward_reason;

/** @brief A short stable name for a reason: "counted", "no_cookie", "invalid_cookie",
 *         "no_assignment", "already_rewarded", "replayed", "arm_removed", "expired",
 *         "paused", "late", "holdout_removed". */
MAB_EXPORT const char *mab_reward_reason_name(mab_reward_reason reason);

/* What mab_request_reward() and mab_request_redirect() return. */
typedef struct mab_reward_result {
    size_t struct_size;        /* sizeof(mab_reward_result), set by the caller */
    int counted;               /* 1 when the reward was recorded */
    mab_reward_reason reason;  /* MAB_REWARD_COUNTED or why not */
    const char *arm_id;        /* the arm credited, or NULL; valid until mab_request_end() */
    /* Added in 0.2. */
    double probability;        /* when counted: the probability the arm had been
                                  chosen with (the cookie's), NAN when unknown;
                                  otherwise NAN */
} mab_reward_result;

/* struct_size of mab_reward_result as first versioned: through arm_id. */
#define MAB_REWARD_RESULT_SIZE_0_1 (offsetof(mab_reward_result, arm_id) + sizeof(const char *))

/**
 * @brief Credit the visitor's arm of `experiment` with `value`, once per
 *        assignment (an ABI 2 policy's update() gets the entry's features,
 *        probability and issue time from the cookie, see
 *        mab_request_set_features()): the entry is marked rewarded (so the new cookie carries
 *        the flag) and, when the storage keeps claims (storage ABI >= 1.3,
 *        mab_storage_has_claims()), the reward counts only if storage grants
 *        the claim of the entry's assignment id, which it does once across
 *        every thread, process, restart and machine sharing the store
 *        (docs/hosts.md, "What counted once means"). Each adapter also keeps
 *        a bounded memory of the ids it saw (mab_adapter_counters.replay_evictions
 *        counts ids dropped early when it is full): a cache of refusals with
 *        claims, the only guard (per process) without them.
 * @param out says whether it counted and, when not, why (struct_size set
 *        by the caller; below MAB_REWARD_RESULT_SIZE_0_1 is MAB_EINVAL and
 *        nothing is counted). A reward that
 *        cannot be counted for one of the mab_reward_reason reasons is not an
 *        error: the call returns MAB_OK with out->counted = 0. An assignment
 *        storage says was already claimed is MAB_REWARD_REPLAYED.
 * @return MAB_OK; MAB_ENOTFOUND (unknown experiment); MAB_EINVAL (NaN or
 *         infinite value); MAB_ERANGE (outside the experiment's reward range);
 *         MAB_ENOMEM. MAB_ESTORAGE when storage failed: with claims (storage
 *         ABI >= 1.3), nothing was claimed or counted (out->counted is 0, the
 *         entry is not marked rewarded, a retry may count). Without claims
 *         and with `sync: "always"`, a failed write is reported as by
 *         mab_reward() (the reward stays queued and out->counted is 1, but
 *         the entry is not marked rewarded, so the cookie still allows a
 *         retry once this process has lost the queued reward; the replay
 *         memory refuses a retry while it holds it). Either way a host should
 *         answer such a reward as not durable (mabd: 503).
 */
MAB_EXPORT int mab_request_reward(mab_request *rq, const char *experiment, double value,
                                  mab_reward_result *out, mab_error *err);

/* Where to send the visitor after a reward. */
typedef struct mab_redirect {
    size_t struct_size;   /* sizeof(mab_redirect), set by the caller */
    int status;           /* 303 (See Other) */
    const char *location; /* the target, verbatim; valid until mab_request_end() */
} mab_redirect;

/* struct_size of mab_redirect as first versioned: through location. */
#define MAB_REDIRECT_SIZE_0_1 (offsetof(mab_redirect, location) + sizeof(const char *))

/**
 * @brief The guard alone: is `target` an acceptable redirect target?
 *        Accepted: a relative path (exactly one leading '/', no backslash, no
 *        control character, no percent-encoded '/', '\\' or control character,
 *        no scheme), or a target that starts with an entry of `redirect_allow`.
 *        An absolute entry "https://host[:port]/path" matches targets with the
 *        same scheme and host (case-insensitive) and port, whose path starts
 *        with the entry's path; when that path does not end in '/', the next
 *        character of the target must be '/', '?', '#' or the end; and whose
 *        path holds no "." or ".." segment (also as %2e), which a browser
 *        would resolve out of the entry's path. So
 *        "https://shop.example.com/" never matches
 *        "https://shop.example.com.evil/" nor "https://shop.example.com@evil/".
 * @return MAB_OK, or MAB_EINVAL with a sentence saying why it was refused.
 */
MAB_EXPORT int mab_adapter_check_redirect(const mab_adapter *adapter, const char *target,
                                          mab_error *err);

/**
 * @brief mab_request_reward(), then a redirect. The target is checked first:
 *        a refused target counts nothing and returns MAB_EINVAL (answer 400).
 *        Otherwise the reward is attempted (whether it counted is in
 *        `result`) and `out` holds status 303 and the Location, even when the
 *        reward counted nothing, so a visitor always reaches the page.
 * @param result may be NULL; else struct_size set by the caller.
 * @param out struct_size set by the caller.
 * @return MAB_OK; MAB_EINVAL (target refused, NaN value, or a struct_size
 *         below its MAB_*_SIZE_0_1: nothing counted); the errors of
 *         mab_request_reward().
 */
MAB_EXPORT int mab_request_redirect(mab_request *rq, const char *experiment, double value,
                                    const char *target, mab_reward_result *result,
                                    mab_redirect *out, mab_error *err);

/**
 * @brief The value of the Set-Cookie header to send ("mab=...; Path=/; Max-Age=...;
 *        HttpOnly; SameSite=Lax"), or NULL when the cookie did not change.
 *        Valid until the next call on rq or mab_request_end().
 */
MAB_EXPORT const char *mab_request_set_cookie(mab_request *rq);

/**
 * @brief The signed state as a token (the cookie's value), for callers
 *        without cookies: send it back through mab_request_begin()'s `token`.
 *        NULL when the request holds no entry. Valid as mab_request_set_cookie().
 */
MAB_EXPORT const char *mab_request_token(mab_request *rq);

/**
 * @brief The probability the visitor's arm of `experiment` was chosen with
 *        when it was assigned, as the signed cookie carries it (after
 *        mab_request_choose() or mab_request_reward(): the entry they used).
 *        For logs that serve off-policy evaluation (inverse propensity).
 * @return the probability, or NAN when the request holds no entry for the
 *         experiment or the policy could not tell (Thompson, probability_draws 0).
 */
MAB_EXPORT double mab_request_probability(const mab_request *rq, const char *experiment);

/**
 * @brief The X-MAB-Debug header value when `debug_header` is on, else NULL:
 *        "STORE; exp:arm;exp2:arm2" when this request made a new assignment,
 *        "SAVED; exp:arm;..." otherwise, listing the experiments chosen in
 *        this request. NULL too when no experiment was chosen.
 *        Valid as mab_request_set_cookie().
 */
MAB_EXPORT const char *mab_request_debug_header(mab_request *rq);

#ifdef __cplusplus
}
#endif
#endif /* MAB_ADAPTER_H */
