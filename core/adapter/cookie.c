/*
 * cookie.c - serialise, sign, verify and parse the adapter's cookie (format:
 * cookie.h). Verification comes before parsing, so unsigned bytes are never
 * interpreted; parsing still checks every length, as a leaked key must not
 * turn into a crash.
 */
#include <math.h>
#include <string.h>

#include <sodium.h>

#include "cookie.h"

#define COOKIE_VERSION 2
#define COOKIE_VERSION_1 1
#define MAC_BYTES MAB__SHA256_BYTES
#define ENTRY_FIXED_BYTES_V1 (1 + 1 + MAB__ASSIGNMENT_ID_BYTES + 1 + 4 + 4)
#define ENTRY_FIXED_BYTES (ENTRY_FIXED_BYTES_V1 + 1)

size_t mab__cookie_entry_bytes(size_t experiment_len, size_t arm_len, size_t n_features)
{
    return ENTRY_FIXED_BYTES + experiment_len + arm_len + (n_features ? 4 + 8 * n_features : 0);
}

size_t mab__cookie_entry_size(const mab__cookie_entry *entry)
{
    return mab__cookie_entry_bytes(strlen(entry->experiment), strlen(entry->arm),
                                   entry->n_features);
}

size_t mab__cookie_overhead(void)
{
    return 2 + MAC_BYTES;
}

uint32_t mab__cookie_features_hash(const char *const *names, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        const char *s = names[i];
        do {
            h ^= (uint8_t)*s;
            h *= 16777619u;
        } while (*s++);
    }
    return h;
}

size_t mab__cookie_binary_size(const mab__cookie_entry *entries, size_t n)
{
    size_t size = mab__cookie_overhead();
    for (size_t i = 0; i < n; i++)
        size += mab__cookie_entry_size(&entries[i]);
    return size;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint8_t *put_double(uint8_t *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    p = put_u32(p, (uint32_t)(bits >> 32));
    return put_u32(p, (uint32_t)bits);
}

static double get_double(const uint8_t *p)
{
    uint64_t bits = (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static uint8_t *put_id(uint8_t *p, const char *id)
{
    size_t n = strlen(id);
    *p++ = (uint8_t)n;
    memcpy(p, id, n);
    return p + n;
}

void mab__mac_key_init(mab__mac_key *mac, const uint8_t key[MAB__KEY_BYTES])
{
    mab__hmac_key_init(&mac->keyed, key, MAB__KEY_BYTES);
}

size_t mab__cookie_encode(const mab__cookie_entry *entries, size_t n, const mab__mac_key *key,
                          char *out, size_t cap)
{
    size_t size = mab__cookie_binary_size(entries, n);
    for (size_t i = 0; i < n; i++)
        if (entries[i].n_features > MAB__COOKIE_FEATURES_MAX)
            return 0;
    if (n > MAB__COOKIE_ENTRIES_MAX || size > MAB__COOKIE_BINARY_MAX ||
        MAB__BASE64URL_LEN(size) + 1 > cap)
        return 0;
    uint8_t binary[MAB__COOKIE_BINARY_MAX];
    uint8_t *p = binary;
    *p++ = COOKIE_VERSION;
    *p++ = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        const mab__cookie_entry *e = &entries[i];
        p = put_id(p, e->experiment);
        p = put_id(p, e->arm);
        memcpy(p, e->assignment_id, MAB__ASSIGNMENT_ID_BYTES);
        p += MAB__ASSIGNMENT_ID_BYTES;
        *p++ = (uint8_t)((e->rewarded ? 1 : 0) | (e->holdout ? 2 : 0) | (e->not_learning ? 4 : 0));
        p = put_u32(p, e->issued);
        uint32_t bits;
        memcpy(&bits, &e->probability, sizeof bits);
        p = put_u32(p, bits);
        *p++ = (uint8_t)e->n_features;
        if (e->n_features) {
            p = put_u32(p, e->features_hash);
            for (size_t k = 0; k < e->n_features; k++)
                p = put_double(p, e->features[k]);
        }
    }
    mab__hmac_sha256(&key->keyed, binary, (size_t)(p - binary), p);
    p += MAC_BYTES;
    return mab__base64url_encode(out, binary, (size_t)(p - binary));
}

static int valid_id(const uint8_t *s, size_t n)
{
    if (n == 0 || n > MAB__COOKIE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Read one length-prefixed id at *p (bounded by end) into dst. */
static int get_id(const uint8_t **p, const uint8_t *end, char *dst)
{
    if (*p >= end)
        return 0;
    size_t n = **p;
    (*p)++;
    if ((size_t)(end - *p) < n || !valid_id(*p, n))
        return 0;
    memcpy(dst, *p, n);
    dst[n] = '\0';
    *p += n;
    return 1;
}

static int parse(const uint8_t *binary, size_t size, mab__cookie_entry *entries, size_t *n_out)
{
    const uint8_t *p = binary, *end = binary + size;
    if (size < 2 || (p[0] != COOKIE_VERSION && p[0] != COOKIE_VERSION_1) ||
        p[1] > MAB__COOKIE_ENTRIES_MAX)
        return 0;
    int version = p[0];
    size_t n = p[1];
    p += 2;
    for (size_t i = 0; i < n; i++) {
        mab__cookie_entry *e = &entries[i];
        if (!get_id(&p, end, e->experiment) || !get_id(&p, end, e->arm))
            return 0;
        if ((size_t)(end - p) < MAB__ASSIGNMENT_ID_BYTES + 1 + 4 + 4 || p[MAB__ASSIGNMENT_ID_BYTES] > 7)
            return 0;
        memcpy(e->assignment_id, p, MAB__ASSIGNMENT_ID_BYTES);
        p += MAB__ASSIGNMENT_ID_BYTES;
        e->rewarded = *p & 1;
        e->holdout = (*p >> 1) & 1;
        e->not_learning = (*p >> 2) & 1;
        p++;
        e->issued = get_u32(p);
        uint32_t bits = get_u32(p + 4);
        memcpy(&e->probability, &bits, sizeof bits);
        p += 8;
        e->n_features = 0;
        e->features_hash = 0;
        if (version == COOKIE_VERSION) {
            if (p >= end || *p > MAB__COOKIE_FEATURES_MAX)
                return 0;
            size_t nf = *p++;
            if (nf) {
                if ((size_t)(end - p) < 4 + 8 * nf)
                    return 0;
                e->features_hash = get_u32(p);
                p += 4;
                for (size_t k = 0; k < nf; k++, p += 8) {
                    double v = get_double(p);
                    /* One meaning for "missing", whatever bits were signed. */
                    e->features[k] = isfinite(v) ? v : NAN;
                }
            }
            e->n_features = nf;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(entries[j].experiment, e->experiment) == 0)
                return 0;
    }
    if (p != end)
        return 0;
    *n_out = n;
    return 1;
}

int mab__cookie_decode(const char *text, size_t len, const mab__mac_key *keys, size_t n_keys,
                       mab__cookie_entry *entries, size_t *n)
{
    if (len == 0 || len > MAB__COOKIE_TEXT_MAX)
        return 0;
    uint8_t binary[MAB__COOKIE_BINARY_MAX];
    size_t size;
    /* Only the canonical text decodes (the last character's spare bits
       zero), so that every different text is refused. */
    if (!mab__base64url_decode(binary, sizeof binary, text, len, &size) || size < 2 + MAC_BYTES)
        return 0;
    size_t body = size - MAC_BYTES;
    int verified = 0;
    for (size_t k = 0; k < n_keys; k++) {
        uint8_t expected[MAC_BYTES];
        mab__hmac_sha256(&keys[k].keyed, binary, body, expected);
        verified |= crypto_verify_32(expected, binary + body) == 0; /* constant time */
    }
    if (!verified)
        return 0;
    return parse(binary, body, entries, n);
}
