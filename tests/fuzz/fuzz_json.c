/*
 * fuzz_json.c - the config's JSON parser (core/json.c) against cJSON: the
 * input is any bytes; json_diff (tests/unit/json_diff.h) must find the two
 * in agreement (the same tree, or a refusal by both, or a refusal of ours
 * where cJSON is lenient and the byte pointed at shows it, always pointing
 * where the text stops being JSON). Any disagreement aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/json_diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* cJSON reads up to a NUL */
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *why = json_diff(text, size);
    if (why) {
        fprintf(stderr, "fuzz_json: %s\n", why);
        abort();
    }
    free(text);
    return 0;
}
