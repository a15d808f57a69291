/*
 * json_exact.h - numbers of a parsed JSON document that print back exactly,
 * for the programs that re-emit libmab's JSON (the `mab` tool and mabd):
 * one home for what each of them once wrote for itself. Public API of libmab
 * only; a static library, not part of libmab.
 */
#ifndef MAB_JSON_EXACT_H
#define MAB_JSON_EXACT_H

#include <cjson/cJSON.h>

/* cJSON prints a parsed number with 15 digits when that reads back within
   an epsilon, not always exactly: give each number under node the shortest
   text that reads back as exactly its double (as a Raw item). 0 when out of
   memory (the tree is then partly converted; delete it). */
int json_exact_numbers(cJSON *node);

/* Parse text and make its numbers exact: NULL when text is not JSON or
   memory ran out. Delete the tree with cJSON_Delete(). */
cJSON *json_exact_parse(const char *text);

#endif
