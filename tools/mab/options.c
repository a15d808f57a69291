/*
 * options.c - parsing a command's arguments and numbers, strictly: the whole
 * string or a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "output.h"

int parse_args(const command *cmd, int argc, char **argv, command_args *out)
{
    memset(out, 0, sizeof *out);
    out->cmd = cmd;
    const char **pos = out->pos, **opt_values = out->opt;
    size_t n_pos = 0;
    bool options_done = false;

    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(cmd->usage, stdout);
            return -1;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || strncmp(arg, "--", 2) != 0) {
            if (n_pos == cmd->n_positional)
                return usage_error(cmd, "%s: unexpected argument '%s'", cmd->name, arg);
            pos[n_pos++] = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const option_spec *spec = NULL;
        size_t k;
        for (k = 0; k < cmd->n_options; k++) {
            if (strlen(cmd->options[k].name) == name_len &&
                strncmp(cmd->options[k].name, name, name_len) == 0) {
                spec = &cmd->options[k];
                break;
            }
        }
        if (!spec)
            return usage_error(cmd, "%s: unknown option '--%.*s'", cmd->name, (int)name_len, name);
        if (spec->takes_value) {
            if (eq) {
                opt_values[k] = eq + 1;
            } else if (i + 1 < argc) {
                opt_values[k] = argv[++i];
            } else {
                return usage_error(cmd, "%s: option '--%s' needs a value", cmd->name, spec->name);
            }
        } else {
            if (eq)
                return usage_error(cmd, "%s: option '--%s' takes no value", cmd->name,
                                   spec->name);
            opt_values[k] = "";
        }
    }
    if (n_pos < cmd->n_positional - cmd->n_optional)
        return usage_error(cmd, "%s: missing argument %s", cmd->name, cmd->positional[n_pos]);
    return 0;
}

const char *option_value(const command_args *args, const char *name)
{
    for (size_t k = 0; k < args->cmd->n_options; k++)
        if (strcmp(args->cmd->options[k].name, name) == 0)
            return args->opt[k];
    /* A command asking for an option its table entry does not declare is a
       bug in this program, not a user error: stop loudly. */
    fprintf(stderr, "mab: internal error: %s has no option --%s\n", args->cmd->name, name);
    abort();
}

/* ------------------------------------------------------------------ */
/* Parsing numbers strictly: the whole string, nothing else            */

bool parse_double(const char *s, double *out)
{
    if (s[0] == '\0' || s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\v' ||
        s[0] == '\f' || s[0] == '\r')
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0')
        return false;
    /* Overflow becomes infinity, which the engine rejects with its own
       message; underflow to a tiny number is a number all the same. */
    *out = v;
    return true;
}

bool parse_u64(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return false;
    *out = (uint64_t)v;
    return true;
}
