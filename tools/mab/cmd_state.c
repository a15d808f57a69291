/*
 * cmd_state.c - `mab pause|resume|conclude|clear CONFIG EXP [ARM]`: an admin
 * action, stored for every engine over the config's store (mab_set_state;
 * docs/operating.md, "Admin actions"). One concept, four commands.
 */
#include <inttypes.h>
#include <stdio.h>

#include "commands.h"
#include "engine_util.h"
#include "output.h"

static int set_state(const command_args *args, const char *state)
{
    const char *config = args->pos[0], *experiment = args->pos[1], *arm = args->pos[2];
    mab_engine *engine;
    int status = open_engine(config, 0, 0, &engine);
    if (status)
        return status;
    mab_error err = {0};
    mab_rules_info rules = MAB_STRUCT_INIT(mab_rules_info);
    char line[600] = "";
    if (mab_set_state(engine, experiment, state, arm, &err) != MAB_OK ||
        mab_rules(engine, experiment, &rules, &err) != MAB_OK)
        status = fail(&err);
    else /* the engine's strings end with mab_close: the line is written first */
        snprintf(line, sizeof line,
                 "experiment '%s': %s%s%s%s (%s; admin action %" PRIu64
                 ", stored: every engine over the store follows at its next refresh)\n",
                 experiment, rules.state, rules.serve ? ", serving '" : "",
                 rules.serve ? rules.serve : "", rules.serve ? "'" : "",
                 rules.state_source[0] == 'a' ? "admin state" : "the config's state",
                 rules.admin_sequence);
    status = close_engine(engine, status);
    if (status == 0)
        fputs(line, stdout);
    return status;
}

int cmd_pause(const command_args *args)
{
    return set_state(args, "paused");
}

int cmd_resume(const command_args *args)
{
    return set_state(args, "running");
}

int cmd_conclude(const command_args *args)
{
    return set_state(args, "concluded");
}

int cmd_clear(const command_args *args)
{
    return set_state(args, "config");
}
