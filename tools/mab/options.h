/*
 * options.h - the shape of a `mab` command and its arguments: positional
 * arguments and --options, parsed strictly, and strict number parsing.
 */
#ifndef MAB_TOOL_OPTIONS_H
#define MAB_TOOL_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_OPTIONS 24
#define MAX_POSITIONAL 4

typedef struct option_spec {
    const char *name; /* without the leading "--" */
    bool takes_value;
} option_spec;

typedef struct command_args command_args;

/* One subcommand: its help and the arguments it takes (the table is in mab.c). */
typedef struct command {
    const char *name;
    const char *summary;
    const char *usage; /* printed by --help and after usage errors */
    const char *positional[MAX_POSITIONAL]; /* names, for "missing argument X" */
    size_t n_positional;
    size_t n_optional; /* how many of the last positional arguments may be left out */
    option_spec options[MAX_OPTIONS];
    size_t n_options;
    int (*run)(const command_args *args);
} command;

/* A command line, parsed. */
struct command_args {
    const command *cmd;
    const char *pos[MAX_POSITIONAL];  /* NULL when an optional one is left out */
    const char *opt[MAX_OPTIONS];     /* by option index: NULL absent, "" a present flag */
};

/*
 * Split argv (the words after the command's name) into positional arguments
 * and --options. Arguments starting with "--" are options ("--name VALUE" or
 * "--name=VALUE"); "-h" is help; anything else, "-1" included, is
 * positional, so negative rewards work. "--" ends the options.
 * Returns 0, EXIT_USAGE (after printing why), or -1 when --help was printed.
 */
int parse_args(const command *cmd, int argc, char **argv, command_args *out);

/* The value of option --name: NULL when absent, "" for a present flag. */
const char *option_value(const command_args *args, const char *name);

/* The whole string as a double (no leading space, nothing after it). */
bool parse_double(const char *s, double *out);

/* The whole string as an unsigned 64-bit decimal integer. */
bool parse_u64(const char *s, uint64_t *out);

#endif /* MAB_TOOL_OPTIONS_H */
