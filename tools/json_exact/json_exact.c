/* json_exact.c - see json_exact.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_exact.h"

int json_exact_numbers(cJSON *node)
{
    for (cJSON *c = node ? node->child : NULL; c; c = c->next) {
        if (cJSON_IsNumber(c)) {
            char text[40];
            for (int digits = 15; digits <= 17; digits++) {
                snprintf(text, sizeof text, "%.*g", digits, c->valuedouble);
                if (strtod(text, NULL) == c->valuedouble)
                    break;
            }
            char *copy = cJSON_malloc(strlen(text) + 1);
            if (!copy)
                return 0;
            memcpy(copy, text, strlen(text) + 1);
            c->type = cJSON_Raw; /* a Raw item prints its valuestring as it is */
            c->valuestring = copy;
        } else if (!json_exact_numbers(c)) {
            return 0;
        }
    }
    return 1;
}

cJSON *json_exact_parse(const char *text)
{
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    if (doc && !json_exact_numbers(doc)) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}
