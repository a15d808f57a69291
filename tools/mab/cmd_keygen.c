/*
 * cmd_keygen.c - `mab keygen FILE`: create a cookie signing key file.
 */
#include <stdio.h>

#include "mab/adapter.h"

#include "commands.h"
#include "output.h"

int cmd_keygen(const command_args *args)
{
    mab_error err = {0};
    if (mab_adapter_keygen(args->pos[0], &err) != MAB_OK)
        return fail(&err);
    printf("wrote a new key to %s (mode 0600)\n", args->pos[0]);
    return 0;
}
