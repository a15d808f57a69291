/*
 * cmd_choose.c - `mab choose CONFIG EXP`: let the policy choose an arm and
 * count the pull.
 */
#include <math.h>
#include <stdio.h>

#include "commands.h"
#include "engine_util.h"
#include "output.h"

int cmd_choose(const command_args *args)
{
    mab_engine *engine;
    int status = open_engine(args->pos[0], 0, 0, &engine);
    if (status)
        return status;

    mab_choice choice = MAB_STRUCT_INIT(mab_choice);
    mab_error err = {0};
    if (mab_choose(engine, args->pos[1], &choice, &err) != MAB_OK) {
        status = fail(&err);
    } else {
        /* Not JSON: three tab-separated fields, the value as the config has it. */
        printf("%s\t%s\t", choice.arm_id, choice.value_json);
        if (isnan(choice.probability))
            puts("nan");
        else
            printf("%.17g\n", choice.probability);
    }
    return close_engine(engine, status);
}
