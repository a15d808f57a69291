/*
 * cookie.h - the signed cookie of the adapter: entries in, base64url text
 * out, and back. Format (version 1), all integers big-endian:
 *
 *   u8 version (1) | u8 entry count |
 *   per entry: u8 len, experiment id | u8 len, arm id | 16 bytes assignment id |
 *              u8 flags (bit 0: rewarded, bit 1: holdout, bit 2: not learning) |
 *              u32 issued (unix seconds) |
 *              u32 probability (IEEE-754 single; NaN when unknown) |
 *   32 bytes HMAC-SHA-256 of everything before it
 *
 * then base64url without padding. Ids are checked on decoding as in the
 * config (1 to 128 of A-Z a-z 0-9 _ -).
 */
#ifndef MAB_COOKIE_H
#define MAB_COOKIE_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "replay.h"

#define MAB__COOKIE_ID_MAX 128
#define MAB__COOKIE_ENTRIES_MAX 24
/* Binary size limit: its base64 (3868 characters) plus the name and the
   attributes stays under the 4096 bytes browsers keep per cookie. */
#define MAB__COOKIE_BINARY_MAX 2900
#define MAB__COOKIE_TEXT_MAX 3900
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
} mab__cookie_entry;

/* Bytes `entry` takes in the binary form. */
size_t mab__cookie_entry_size(const mab__cookie_entry *entry);
/* Bytes of the binary form of `n` entries, signature included. */
size_t mab__cookie_binary_size(const mab__cookie_entry *entries, size_t n);

/* A signing key with its HMAC state already keyed: the two hash blocks of
   the padded key are computed once per key, not once per cookie. */
typedef struct mab__mac_key {
    crypto_auth_hmacsha256_state keyed;
} mab__mac_key;

void mab__mac_key_init(mab__mac_key *mac, const uint8_t key[MAB__KEY_BYTES]);

/* Sign `entries` with `key` and write the text (NUL-terminated) to `out`.
   Returns its length, or 0 when it does not fit MAB__COOKIE_BINARY_MAX or
   `cap`. */
size_t mab__cookie_encode(const mab__cookie_entry *entries, size_t n, const mab__mac_key *key,
                          char *out, size_t cap);

/* Decode `len` bytes of text. Returns 1 when it is well-formed and its
   signature verifies (in constant time) under one of the keys; then
   entries[0..*n) are filled. Returns 0 otherwise. */
int mab__cookie_decode(const char *text, size_t len, const mab__mac_key *keys, size_t n_keys,
                       mab__cookie_entry *entries, size_t *n);

#endif
