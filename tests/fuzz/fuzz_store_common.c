/*
 * fuzz_store_common.c - open, use, close and reopen a planted store
 * (fuzz_store_common.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_store_common.h"
#include "mab/mab.h"

static int count_record(void *ctx, const mab_record *record)
{
    if (!record->experiment || !record->arm)
        abort();
    (*(size_t *)ctx)++;
    return 0;
}

static void use(mab_engine *engine)
{
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info;
        mab_error err = {0, ""};
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK)
            abort();
        mab_arm_stats stats[8];
        size_t n_arms;
        if (mab_stats(engine, info.id, stats, 8, &n_arms, &err) != MAB_OK)
            abort();
        mab_choice choice;
        if (mab_choose(engine, info.id, &choice, &err) == MAB_OK)
            mab_reward(engine, info.id, choice.arm_id, info.reward_max, &err);
    }
    size_t records = 0;
    mab_error err = {0, ""};
    mab_export(engine, count_record, &records, &err);
}

void fuzz_store_exercise(const char *config_path)
{
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    mab_options opts = {sizeof opts, MAB_OPEN_SEED, 3};
    int rc = mab_open_ex(config_path, &opts, &engine, &err);
    if (rc != MAB_OK) {
        if (rc > 0 || err.message[0] == '\0' || engine)
            abort();
        return;
    }
    use(engine);
    mab_close(engine, &err);

    rc = mab_open_ex(config_path, &opts, &engine, &err);
    if (rc != MAB_OK) {
        fprintf(stderr, "fuzz: a store that opened, then was written by its plugin, is "
                        "refused: %s\n",
                err.message);
        abort();
    }
    mab_close(engine, &err);
}
