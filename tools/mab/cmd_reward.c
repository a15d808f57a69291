/*
 * cmd_reward.c - `mab reward CONFIG EXP ARM VALUE`: record a reward.
 */
#include <stdio.h>

#include "commands.h"
#include "engine_util.h"
#include "output.h"

int cmd_reward(const command_args *args)
{
    const char *config = args->pos[0], *experiment = args->pos[1], *arm = args->pos[2];
    double value;
    if (!parse_double(args->pos[3], &value))
        return usage_error(args->cmd, "reward: VALUE '%s' is not a number", args->pos[3]);

    mab_engine *engine;
    int status = open_engine(config, 0, 0, &engine);
    if (status)
        return status;

    mab_error err = {0};
    if (mab_reward(engine, experiment, arm, value, &err) != MAB_OK)
        status = fail(&err);
    status = close_engine(engine, status);
    if (status == 0)
        printf("recorded reward %.17g for arm '%s' of experiment '%s'\n", value, arm, experiment);
    return status;
}
