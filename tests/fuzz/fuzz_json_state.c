/*
 * fuzz_json_state.c - the json_file storage plugin's open and load over a
 * fuzzed state file: the input is the file's content; the engine opens it
 * through the plugin (config: fuzz_store_common.h), uses it, closes it and
 * checks that it opens again; then the plugin's time buckets are read and
 * written directly (fuzz_store_buckets).
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "fuzz_store_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char config_path[4096], state_path[4096], bucket_params[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_pin_plugins();
    fuzz_write_config("config.json",
                      "\"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\","
                      " \"sync\": {\"interval_ms\": 60000}}, " FUZZ_STORE_EXPERIMENTS);
    snprintf(config_path, sizeof config_path, "%s", fuzz_path("config.json"));
    snprintf(state_path, sizeof state_path, "%s", fuzz_path("state.json"));
    snprintf(bucket_params, sizeof bucket_params, "{\"path\": \"%s\"}", state_path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return -1;
    fuzz_write_file(state_path, data, size, 0600);
    fuzz_store_exercise(config_path);
    fuzz_write_file(state_path, data, size, 0600);
    fuzz_store_buckets(MAB_FUZZ_PLUGIN_DIR "/json_file.so", bucket_params);
    return 0;
}
