/*
 * cookie.h - the signed cookie of the adapter: entries in, base64url text
 * out, and back. Format (version 2), all integers big-endian:
 *
 *   u8 version (2) | u8 entry count |
 *   per entry: u8 len, experiment id | u8 len, arm id | 16 bytes assignment id |
 *              u8 flags (bit 0: rewarded, bit 1: holdout, bit 2: not learning) |
 *              u32 issued (unix seconds) |
 *              u32 probability (IEEE-754 single; NaN when unknown) |
 *              u8 feature count n (<= MAB__COOKIE_FEATURES_MAX) |
 *              when n > 0: u32 feature names hash (mab__cookie_features_hash
 *              of the policy's "features" when the entry was made) |
 *              n x u64 feature value (IEEE-754 double, the policy's order;
 *              NaN when missing) |
 *   32 bytes HMAC-SHA-256 of everything before it
 *
 * then base64url without padding. Version 1 is the same without the
 * feature count and what follows it; it still decodes (as entries without
 * features) and is never written. Features are doubles, not singles, so
 * that a reward's update() sees exactly the values the choice saw. Ids are
 * checked on decoding as in the config (1 to 128 of A-Z a-z 0-9 _ -).
 */
#ifndef MAB_COOKIE_H
#define MAB_COOKIE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "replay.h"

#define MAB__COOKIE_ID_MAX 128
#define MAB__COOKIE_ENTRIES_MAX 24
/* The policy's features (MAB_POLICY_FEATURES_MAX). */
#define MAB__COOKIE_FEATURES_MAX 64
/* Browsers keep 4096 bytes per cookie: name, value and attributes. */
#define MAB__COOKIE_LINE_MAX 4096
/* Buffer bounds: a binary form whose base64 alone reaches the line limit
   can never be sent. The adapter's own limit (from the attributes) is
   lower; configs whose worst case exceeds it are refused. */
#define MAB__COOKIE_BINARY_MAX 3072
#define MAB__COOKIE_TEXT_MAX 4096
#define MAB__KEY_BYTES 32
#define MAB__KEYS_MAX 16

typedef struct mab__cookie_entry {
    char experiment[MAB__COOKIE_ID_MAX + 1];
    char arm[MAB__COOKIE_ID_MAX + 1];
    uint8_t assignment_id[MAB__ASSIGNMENT_ID_BYTES];
    int rewarded;
    int holdout;      /* served by the experiment's holdout (MAB_CHOICE_HOLDOUT) */
    int not_learning; /* served while paused: a reward must not count */
    uint32_t issued;
    float probability;
    size_t n_features;   /* 0: none (or a version 1 cookie) */
    uint32_t features_hash;
    double features[MAB__COOKIE_FEATURES_MAX];
} mab__cookie_entry;

/* Bytes an entry with ids of these lengths and n features takes. */
size_t mab__cookie_entry_bytes(size_t experiment_len, size_t arm_len, size_t n_features);
/* Bytes of the binary form's header and signature. */
size_t mab__cookie_overhead(void);
/* FNV-1a of the names (each with its NUL), so an entry made under another
   "features" list is recognised at reward time. */
uint32_t mab__cookie_features_hash(const char *const *names, size_t n);

/* Bytes `entry` takes in the binary form. */
size_t mab__cookie_entry_size(const mab__cookie_entry *entry);
/* Bytes of the binary form of `n` entries, signature included. */
size_t mab__cookie_binary_size(const mab__cookie_entry *entries, size_t n);

/* A signing key as its HMAC inner and outer states (crypto.h): the two
   hash blocks of the padded key are computed once per key, not once per
   cookie, and the key itself is not kept. Zeroed by its owner at close. */
typedef struct mab__mac_key {
    mab__hmac_key keyed;
} mab__mac_key;

void mab__mac_key_init(mab__mac_key *mac, const uint8_t key[MAB__KEY_BYTES]);

/* Sign `entries` with `key` and write the text (NUL-terminated) to `out`.
   Returns its length, or 0 when it does not fit MAB__COOKIE_BINARY_MAX or
   `cap`. Writes version 2. */
size_t mab__cookie_encode(const mab__cookie_entry *entries, size_t n, const mab__mac_key *key,
                          char *out, size_t cap);

/* Decode `len` bytes of text. Returns 1 when it is well-formed and its
   signature verifies (in constant time) under one of the keys; then
   entries[0..*n) are filled (a version 1 cookie's without features).
   Returns 0 otherwise. */
int mab__cookie_decode(const char *text, size_t len, const mab__mac_key *keys, size_t n_keys,
                       mab__cookie_entry *entries, size_t *n);

#endif
