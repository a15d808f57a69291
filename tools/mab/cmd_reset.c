/*
 * cmd_reset.c - `mab reset CONFIG EXP`: zero an experiment's counters.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "commands.h"
#include "engine_util.h"
#include "output.h"

int cmd_reset(const command_args *args)
{
    const char *config = args->pos[0], *experiment = args->pos[1];
    mab_engine *engine;
    int status = open_engine(config, 0, 0, &engine);
    if (status)
        return status;

    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    mab_arm_stats *arms = NULL;
    uint64_t pulls = 0, rewards = 0;
    status = find_experiment(engine, config, experiment, &info);
    if (status == 0)
        status = load_stats(engine, &info, &arms);
    if (status == 0) {
        for (size_t a = 0; a < info.n_arms; a++) {
            pulls += arms[a].pulls;
            rewards += arms[a].rewards;
        }
        mab_error err = {0};
        if (mab_reset(engine, experiment, &err) != MAB_OK)
            status = fail(&err);
    }
    free(arms);
    status = close_engine(engine, status);
    if (status == 0)
        printf("reset experiment '%s': %zu arms, %" PRIu64 " pulls and %" PRIu64
               " rewards cleared\n",
               experiment, info.n_arms, pulls, rewards);
    return status;
}
