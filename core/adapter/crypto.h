/*
 * crypto.h - the cookie's primitives, sized for a request: HMAC-SHA-256
 * with the key's inner and outer states computed once per key, and
 * base64url (RFC 4648 section 5, no padding) in constant time.
 *
 * SHA-256 (FIPS 180-4) runs on the x86 SHA extensions when the CPU has them
 * (checked once with cpuid) and on portable C otherwise; both give the same
 * bytes (tests/unit/test_cookie.c checks each against the same vectors).
 * Nothing here branches on or indexes a table by the data: the round
 * constants are indexed by the round number, base64 maps each 6-bit group
 * with arithmetic and masks.
 */
#ifndef MAB_CRYPTO_H
#define MAB_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define MAB__SHA256_BYTES 32
#define MAB__SHA256_BLOCK 64

/* An HMAC-SHA-256 key as the two chaining states after its padded blocks
   (key ^ ipad, key ^ opad): what the key is to HMAC, so it is as secret as
   the key; the owner zeroes it when done (sodium_memzero). */
typedef struct mab__hmac_key {
    uint32_t inner[8];
    uint32_t outer[8];
} mab__hmac_key;

/* Key `key` of `len` bytes (any length: above 64 it is hashed first, as
   RFC 2104 says). The stack copies of the padded key are zeroed. */
void mab__hmac_key_init(mab__hmac_key *hk, const uint8_t *key, size_t len);

/* HMAC-SHA-256 of msg[0..len) under `hk`: two compressions for a message
   under 56 bytes, one more per further 64; no allocation. */
void mab__hmac_sha256(const mab__hmac_key *hk, const uint8_t *msg, size_t len,
                      uint8_t out[MAB__SHA256_BYTES]);

/* SHA-256 of msg[0..len). */
void mab__sha256(const uint8_t *msg, size_t len, uint8_t out[MAB__SHA256_BYTES]);

/* Which code runs: 1 the SHA extensions (SHA-256), SSSE3 (base64url, 16
   characters at a time), 0 portable C. For tests:
   mab__crypto_force_portable(1) makes every later call use portable C,
   (0) goes back to what the CPU offers. */
int mab__sha256_accelerated(void);
int mab__base64url_accelerated(void);
void mab__crypto_force_portable(int on);

/* Characters of the base64url text of `len` bytes, no padding. */
#define MAB__BASE64URL_LEN(len) (((len) / 3) * 4 + ((len) % 3 ? (len) % 3 + 1 : 0))

/* Write the base64url text of in[0..len) to out, then a NUL: out holds
   MAB__BASE64URL_LEN(len) + 1 bytes. Returns the text's length. */
size_t mab__base64url_encode(char *out, const uint8_t *in, size_t len);

/* Decode base64url text in[0..len) (no padding, nothing else allowed) into
   out (cap bytes). Returns 1 and sets *out_len when the text is canonical:
   every character of the alphabet, a length that is not 1 modulo 4, and
   the last character's unused bits zero (so one byte string has exactly
   one text). Returns 0 otherwise; out may then hold anything. The work
   does not depend on the characters, only on len. */
int mab__base64url_decode(uint8_t *out, size_t cap, const char *in, size_t len, size_t *out_len);

#endif
