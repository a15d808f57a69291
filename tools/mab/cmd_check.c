/*
 * cmd_check.c - `mab check CONFIG`: open a config with its storage and
 * describe it. For policies that keep statistics (policy ABI 2) it names
 * their layout, and says when storage holds statistics of another layout
 * for an experiment: a policy change in the config, which starts afresh.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "engine_util.h"
#include "output.h"

struct layout_note {
    const char *experiment;
    const char *current;
};

static int note_other_layout(void *ctx, const char *layout)
{
    const struct layout_note *note = ctx;
    if (strcmp(layout, note->current) != 0)
        printf("experiments.%s: storage holds policy statistics of layout %s, not the "
               "policy's %s: %s starts afresh (the stored ones are kept)\n",
               note->experiment, layout, note->current[0] ? note->current : "(none: ABI 1)",
               note->current[0] ? "it" : "the policy reads none of them and");
    return 0;
}

/* One line per experiment whose stored statistics differ from its policy's. */
static int print_layout_changes(mab_engine *engine, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info;
        mab_error err = {0};
        mab_policy_stats_info stats = {sizeof stats, NULL, 0, 0};
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK ||
            mab_policy_stats(engine, info.id, &stats, NULL, 0, NULL, 0, &err) != MAB_OK)
            return fail(&err);
        if (stats.layout[0])
            printf("experiments.%s: policy statistics %s (%zu per arm, %zu per experiment)\n",
                   info.id, stats.layout, stats.per_arm, stats.per_experiment);
        struct layout_note note = {info.id, stats.layout};
        if (mab_stored_layouts(engine, info.id, note_other_layout, &note, &err) != MAB_OK)
            return fail(&err);
    }
    return 0;
}

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
        if (mab_storage_path(engine))
            status = print_layout_changes(engine, n);
    }
    table_free(&table);
    return close_engine(engine, status);
}
