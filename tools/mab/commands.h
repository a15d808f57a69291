/*
 * commands.h - one function per `mab` subcommand, each in cmd_NAME.c
 * (git's builtin/ style); the table that names them is in mab.c.
 * Each returns the exit status: 0, EXIT_USER or EXIT_USAGE (output.h).
 */
#ifndef MAB_TOOL_COMMANDS_H
#define MAB_TOOL_COMMANDS_H

#include "options.h"

int cmd_check(const command_args *args);
int cmd_choose(const command_args *args);
int cmd_reward(const command_args *args);
int cmd_stats(const command_args *args);
int cmd_report(const command_args *args);
int cmd_simulate(const command_args *args);
int cmd_reset(const command_args *args);
int cmd_pause(const command_args *args);   /* cmd_state.c, with the three below */
int cmd_resume(const command_args *args);
int cmd_conclude(const command_args *args);
int cmd_clear(const command_args *args);
int cmd_export(const command_args *args);
int cmd_import(const command_args *args);
int cmd_keygen(const command_args *args);

#endif /* MAB_TOOL_COMMANDS_H */
