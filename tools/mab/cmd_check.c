/*
 * cmd_check.c - `mab check CONFIG`: open a config with its storage and
 * describe it.
 */
#include <stdio.h>

#include "commands.h"
#include "engine_util.h"
#include "output.h"

int cmd_check(const command_args *args)
{
    const char *config = args->pos[0];
    mab_engine *engine;
    int status = open_engine(config, 0, 0, &engine);
    if (status)
        return status;

    text_table table;
    table_init(&table, 5, 1u << 2);
    const char *header[] = {"experiment", "policy", "arms", "reward", "policy file"};
    bool ok = table_add_row(&table, header);
    size_t n = mab_experiment_count(engine);
    for (size_t i = 0; ok && i < n && status == 0; i++) {
        mab_experiment_info info;
        mab_error err = {0};
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK) {
            status = fail(&err);
            break;
        }
        char n_arms[32], range[96];
        snprintf(n_arms, sizeof n_arms, "%zu", info.n_arms);
        snprintf(range, sizeof range, "[%g, %g]", info.reward_min, info.reward_max);
        const char *row[] = {info.id, info.policy, n_arms, range, info.policy_path};
        ok = table_add_row(&table, row);
    }
    if (!ok && status == 0)
        status = fail_oom();
    if (status == 0) {
        printf("config:      %s\n", config);
        const char *storage_file = mab_storage_path(engine);
        if (storage_file)
            printf("storage:     %s (%s)\n", mab_storage_name(engine), storage_file);
        else
            printf("storage:     %s\n", mab_storage_name(engine));
        printf("experiments: %zu\n\n", n);
        table_print(&table, stdout, "");
    }
    table_free(&table);
    return close_engine(engine, status);
}
