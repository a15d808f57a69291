/* core/json.h - the config's JSON parser (RFC 8259), building a cJSON tree.
 *
 * The engine and the plugins read the parsed config as cJSON nodes; this
 * parser builds the same nodes cJSON_ParseWithOpts would, but all of them and
 * their strings in a few large blocks that are freed together: a tree from
 * mab__json_parse is freed with mab__json_free only, never with cJSON_Delete
 * (cJSON_Duplicate of any of its nodes is an ordinary cJSON tree).
 *
 * It accepts exactly RFC 8259 JSON text, plus a leading UTF-8 byte order
 * mark (as cJSON does). Where cJSON is more lenient it refuses: leading
 * zeros, "1." or "-.5", control characters or invalid UTF-8 in strings,
 * control characters other than space, tab, CR and LF between tokens, a NUL
 * byte anywhere (cJSON stops reading there), "\u0000" (cJSON cuts the
 * string there), "\u" and four bytes that are not all hex digits (cJSON
 * reads U+0000, cutting the string). Nesting deeper than MAB__JSON_MAX_DEPTH arrays and objects is
 * refused, as cJSON does. docs/config.md, "JSON".
 */
#ifndef MAB_CORE_JSON_H
#define MAB_CORE_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define MAB__JSON_MAX_DEPTH 1000 /* cJSON's CJSON_NESTING_LIMIT */

/* Why a text was refused (mab__json_error.reason). */
enum {
    MAB__JSON_OK = 0,
    MAB__JSON_ESYNTAX,  /* not JSON's grammar: a missing or unexpected token */
    MAB__JSON_ENUMBER,  /* a number outside JSON's grammar (leading zero, "1.", "-") */
    MAB__JSON_ESTRING,  /* a bad escape, a lone surrogate, an unterminated string */
    MAB__JSON_EHEX,     /* "\u" without four hex digits (cJSON reads it as U+0000) */
    MAB__JSON_ECONTROL, /* a control character (below 0x20) inside a string */
    MAB__JSON_EUTF8,    /* bytes that are not UTF-8 */
    MAB__JSON_ENUL,     /* a NUL byte in the text, or "\u0000" in a string */
    MAB__JSON_ESPACE,   /* a control character between tokens that is not JSON's space */
    MAB__JSON_EDEPTH,   /* nesting deeper than MAB__JSON_MAX_DEPTH */
    MAB__JSON_ENOMEM,   /* out of memory */
};

typedef struct mab__json_error {
    int reason;    /* MAB__JSON_E* */
    size_t offset; /* the byte where the text stops being JSON (len when it ends early) */
} mab__json_error;

/* Parses text[0, len) as one JSON value with optional white space around it.
   Returns the root node, or NULL with *err filled (err may be NULL). */
cJSON *mab__json_parse(const char *text, size_t len, mab__json_error *err);

/* Frees a tree returned by mab__json_parse (its root; NULL is allowed). */
void mab__json_free(cJSON *root);

#endif
