/* json_diff.h - core/json.c against cJSON on one text (header-only; used by
 * tests/unit/test_json.c and tests/fuzz/fuzz_json.c).
 *
 * json_diff(text, len) parses text[0, len) with mab__json_parse and with
 * cJSON_ParseWithOpts (which reads up to the first NUL; text[len] must be
 * '\0'), and returns NULL when they agree, or what is wrong:
 *  - both accept: the trees must be the same (types, keys, strings, the
 *    doubles bit for bit, valueint, order, the links cJSON keeps);
 *  - only ours accepts: never (cJSON accepts every JSON text);
 *  - only cJSON accepts: ours must have refused for one of the reasons where
 *    cJSON is lenient (json.h), and the byte it points at must show it;
 *  - any refusal of ours must point where the text stops being JSON: the
 *    text cut there is JSON or a beginning of JSON (its parse runs out of
 *    text exactly at the cut), except for the depth limit.
 */
#ifndef MAB_TEST_JSON_DIFF_H
#define MAB_TEST_JSON_DIFF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../core/json.h"

static char json_diff_why[256];

/* Our list's links: head->prev is the tail, every other prev the one before. */
static int json_diff_links(const cJSON *first)
{
    const cJSON *prev = NULL, *c = first;
    for (; c; prev = c, c = c->next)
        if (c != first && c->prev != prev)
            return 0;
    return !first || first->prev == prev;
}

static int json_diff_same(const cJSON *a, const cJSON *b, int depth)
{
    for (; a && b; a = a->next, b = b->next) {
        if (a->type != b->type || a->valueint != b->valueint ||
            memcmp(&a->valuedouble, &b->valuedouble, sizeof a->valuedouble) != 0)
            return 0;
        if (!a->string != !b->string || (a->string && strcmp(a->string, b->string) != 0))
            return 0;
        if (!a->valuestring != !b->valuestring ||
            (a->valuestring && strcmp(a->valuestring, b->valuestring) != 0))
            return 0;
        if (!json_diff_links(a->child) || !json_diff_links(b->child) ||
            !json_diff_same(a->child, b->child, depth + 1))
            return 0;
    }
    return !a && !b;
}

/* Does the byte at offset o show the reason of a refusal cJSON does not make? */
static int json_diff_lenient(const unsigned char *t, size_t len, size_t o, int reason)
{
    unsigned char at = o < len ? t[o] : 0, before = o > 0 ? t[o - 1] : 0;
    switch (reason) {
    case MAB__JSON_ENUMBER:
        return strchr("-.eE+", before) ? before != 0 : before == '0' && at >= '0' && at <= '9';
    case MAB__JSON_ECONTROL:
        return o < len && at < 0x20;
    case MAB__JSON_ESPACE:
        return o < len && at > 0 && at < 0x20 && at != '\t' && at != '\n' && at != '\r';
    case MAB__JSON_ENUL:
        return (o < len && at == 0) || (o + 6 <= len && memcmp(t + o, "\\u0000", 6) == 0);
    case MAB__JSON_EHEX: /* a byte of the four after "\\u" that is no hex digit */
        for (size_t i = o >= 5 ? o - 5 : 0; i + 1 < o; i++)
            if (t[i] == '\\' && t[i + 1] == 'u')
                return o < len && !strchr("0123456789abcdefABCDEF", at);
        return 0;
    case MAB__JSON_EUTF8:
        for (size_t i = o >= 3 ? o - 3 : 0; i <= o && i < len; i++)
            if (t[i] >= 0x80)
                return 1;
        return 0;
    default:
        return 0;
    }
}

static const char *json_diff(const char *text, size_t len)
{
    mab__json_error err;
    cJSON *ours = mab__json_parse(text, len, &err);
    cJSON *theirs = cJSON_ParseWithOpts(text, NULL, 1);
    const char *why = NULL;
    if (ours && theirs) {
        if (!json_diff_same(ours, theirs, 0))
            why = "both accept, the trees differ";
    } else if (ours) {
        why = "only ours accepts";
    } else {
        if (err.reason == MAB__JSON_OK || err.offset > len)
            why = "refused without a reason or past the end";
        else if (theirs && !json_diff_lenient((const unsigned char *)text, len, err.offset,
                                              err.reason)) {
            snprintf(json_diff_why, sizeof json_diff_why,
                     "only cJSON accepts; ours refused (reason %d) at offset %zu", err.reason,
                     err.offset);
            why = json_diff_why;
        } else if (err.reason != MAB__JSON_EDEPTH && err.reason != MAB__JSON_ENOMEM) {
            /* The text cut where ours stopped is JSON, or runs out there. */
            mab__json_error cut_err;
            cJSON *cut = mab__json_parse(text, err.offset, &cut_err);
            if (!cut && cut_err.offset != err.offset) {
                snprintf(json_diff_why, sizeof json_diff_why,
                         "refused at offset %zu (reason %d), but the text cut there stops "
                         "being JSON at %zu",
                         err.offset, err.reason, cut_err.offset);
                why = json_diff_why;
            }
            mab__json_free(cut);
        }
    }
    mab__json_free(ours);
    cJSON_Delete(theirs);
    return why;
}

#endif
