/*
 * fuzz_config.c - the config loader: the input is a config file, opened with
 * mab_open_ex. When it opens, every experiment is exercised once (choose,
 * reward, stats) so that the parsed policy parameters are used, then closed.
 *
 * Storage is not opened (MAB_OPEN_NO_STORAGE): a fuzzed "path" could name
 * any file on the machine, and a fuzzed mongodb URI any host. The storage
 * section is still parsed and validated by the core; the storage plugins'
 * own loading is fuzzed by fuzz_json_state and fuzz_lmdb.
 *
 * Plugins resolve along "plugin_path": the seeds say ["plugins"], a link
 * in the scratch directory (next to the config file) to the build's plugins.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "mab/mab.h"

static char config_path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_pin_plugins();
    if (symlink(MAB_FUZZ_PLUGIN_DIR, fuzz_path("plugins")) != 0) {
        perror("fuzz_config: symlink");
        abort();
    }
    snprintf(config_path, sizeof config_path, "%s", fuzz_path("config.json"));
    return 0;
}

static void exercise(mab_engine *engine)
{
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        mab_error err;
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK)
            abort(); /* every index below the count exists */
        mab_choice choice = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose(engine, info.id, &choice, &err) == MAB_OK) {
            if (choice.arm_index >= info.n_arms || !choice.arm_id || !choice.value_json)
                abort();
            mab_reward(engine, info.id, choice.arm_id, info.reward_max, &err);
            mab_choose(engine, info.id, &choice, &err);
        }
        mab_arm_stats stats[4] = {MAB_STRUCT_INIT(mab_arm_stats)};
        size_t n_arms;
        if (mab_stats(engine, info.id, stats, 4, &n_arms, &err) != MAB_OK || n_arms != info.n_arms)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(config_path, data, size, 0600);
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE | MAB_OPEN_SEED, 42};
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    int rc = mab_open_ex(config_path, &opts, &engine, &err);
    if (rc != MAB_OK) {
        /* A refusal must say something (it names the file, key or arm). */
        if (rc > 0 || err.message[0] == '\0' || engine)
            abort();
        return 0;
    }
    exercise(engine);
    mab_close(engine, &err);
    return 0;
}
