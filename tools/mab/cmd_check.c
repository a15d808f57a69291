/*
 * cmd_check.c - `mab check CONFIG`: test everything the hosts would load,
 * without creating, locking or writing anything, and describe it.
 *
 * Three parts, each with the code its owner runs:
 *  - the engine, opened with MAB_OPEN_CHECK: every key, every plugin (the
 *    file each came from is printed), the storage plugin's parameters and
 *    the existing store, read-only (storage.h, check);
 *  - mab_check(): what the adapter loads (the key file: present, readable,
 *    not open to others, holding a key; cookie and redirect_allow), when
 *    the config names a secret_file (without one only the hosts refuse it,
 *    and the output says so; mabd -t fails);
 *  - the "mabd" section, read by mabd's own reader (hosts/mabd/settings/,
 *    a library mabd links too) when mab was built with mabd.
 *  - policy statistics (policy ABI 2): each experiment's layout, and a line
 *    when the store (read by the check through the plugin's open_read_only,
 *    so nothing is created or locked) holds statistics of another layout (a
 *    policy change: it starts afresh).
 *  - a warning when json_file would hold more arms than it snapshots
 *    quickly: commits append to its journal, but the snapshot it rewrites
 *    when the journal outgrows it (and at close) costs the size of the store
 *    (docs/storage.md, "How large a json_file store");
 *  - json_file's journal: how many entries it holds beyond the snapshot, and
 *    a warning naming the file and the byte where a torn or damaged tail
 *    starts (the records.h framing, the reader the plugin uses).
 * The first fault is printed ("mab: FILE: JSON.PATH: what is wrong") and the
 * exit status is 1; mabd -t runs the same checks.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mab/records.h"

#include "commands.h"
#include "engine_util.h"
#include "output.h"

#ifdef MAB_CHECK_MABD
#include "mabd_settings.h"
#endif

/*
 * Arms above which json_file's snapshot (written when its journal outgrows
 * it, and at close) took longer than 1 s on the benchmark machine:
 * docs/benchmarks.md, "json_file commits by store size", 10^4 experiments x
 * 3 arms. The commits between snapshots cost what they change.
 */
#define JSON_FILE_WARN_ARMS 30000

/* The json_file size warning ("" when there is none). */
static void json_file_size_warning(mab_engine *engine, size_t arms, char *out, size_t cap)
{
    out[0] = '\0';
    const char *name = mab_storage_name(engine);
    if (name && strcmp(name, "json_file") == 0 && arms >= JSON_FILE_WARN_ARMS)
        snprintf(out, cap,
                 "json_file holds %zu arms, at or above %d: commits append to its journal, "
                 "but the snapshot it rewrites whenever the journal outgrows it (and at "
                 "close) then takes over a second, stalling the commit that triggers it "
                 "(docs/storage.md); use the lmdb storage plugin",
                 arms, JSON_FILE_WARN_ARMS);
}

/* The whole file, or NULL (errno set). */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        unsigned char *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return buf;
}

static int count_entry(void *ctx, const unsigned char *payload, size_t n, uint64_t offset)
{
    (void)payload, (void)n, (void)offset;
    ++*(size_t *)ctx;
    return 0;
}

/* json_file's state path from the config ("" when the store is not
   json_file), relative paths taken from the config file's directory. */
static void json_file_path(const char *config, char *out, size_t cap)
{
    out[0] = '\0';
    size_t len;
    char *text = read_input_file(config, &len);
    if (!text)
        return;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *storage = cJSON_GetObjectItemCaseSensitive(root, "storage");
    const cJSON *plugin = cJSON_GetObjectItemCaseSensitive(storage, "plugin");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(storage, "path");
    if (cJSON_IsString(plugin) && strcmp(plugin->valuestring, "json_file") == 0 &&
        cJSON_IsString(path)) {
        const char *slash = strrchr(config, '/');
        if (path->valuestring[0] == '/' || !slash)
            snprintf(out, cap, "%s", path->valuestring);
        else
            snprintf(out, cap, "%.*s/%s", (int)(slash - config), config, path->valuestring);
    }
    cJSON_Delete(root);
}

/* The journal's line ("" when there is none) and its warning (a torn or
   damaged tail: "" when there is none). The engine's check already read
   snapshot and journal as the plugin does; this says what it found. */
static void json_file_journal_note(const char *config, char *line, size_t line_cap,
                                   char *warning, size_t warning_cap)
{
    line[0] = warning[0] = '\0';
    char path[PATH_MAX], journal[PATH_MAX + 16];
    json_file_path(config, path, sizeof path);
    if (!path[0])
        return;
    snprintf(journal, sizeof journal, "%s.journal", path);
    size_t snap_len = 0, len = 0;
    unsigned char *snap = slurp(path, &snap_len);
    unsigned char *data = snap ? slurp(journal, &len) : NULL;
    int follows = 0;
    if (data && mab_records_journal_follows(journal, data, len, snap, snap_len, &follows, NULL) ==
                    MAB_OK) {
        if (!follows) {
            snprintf(line, line_cap,
                     "%s follows another snapshot (left by a crash between a snapshot and its "
                     "new journal): not replayed, the next commit replaces it",
                     journal);
        } else {
            size_t entries = 0;
            uint64_t end;
            char why[200];
            mab_records_journal_entries(data + MAB_RECORDS_JOURNAL_HEADER,
                                        len - MAB_RECORDS_JOURNAL_HEADER,
                                        MAB_RECORDS_JOURNAL_HEADER, count_entry, &entries, &end,
                                        why, sizeof why);
            snprintf(line, line_cap, "%s: %zu entries (%llu bytes) beyond the snapshot", journal,
                     entries, (unsigned long long)(end - MAB_RECORDS_JOURNAL_HEADER));
            if (end < len)
                snprintf(warning, warning_cap,
                         "%s: %s: it and the %llu bytes after it are not replayed (a writer "
                         "killed mid-append, or damage); the next open cuts them off",
                         journal, why, (unsigned long long)(len - end));
        }
    }
    free(snap);
    free(data);
}

/* The mabd section with mabd's reader; 0 or EXIT_USER after printing why. */
static int check_mabd_section(mab_engine *engine, const char **verdict)
{
#ifdef MAB_CHECK_MABD
    mabd_settings settings;
    char msg[1024];
    if (mabd_settings_load(engine, &settings, msg, sizeof msg) != 0)
        return fail_message("%s", msg);
    mabd_settings_free(&settings);
    *verdict = "ok";
#else
    (void)engine;
    *verdict = "not checked (this mab was built without mabd)";
#endif
    return 0;
}

/* Whether the config names a secret_file (the engine has accepted the file). */
static int config_names_key(const char *config, int *has_key)
{
    size_t len;
    char *text = read_input_file(config, &len);
    if (!text)
        return EXIT_USER;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root)
        return fail_oom();
    *has_key = cJSON_GetObjectItemCaseSensitive(root, "secret_file") != NULL;
    cJSON_Delete(root);
    return 0;
}

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

/* Each experiment's statistics layout, then the stored layouts that differ
   (as the check engine read them, without opening the store for writing). */
static int print_layouts(mab_engine *engine, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        mab_error err = {0};
        mab_policy_stats_info stats = {sizeof stats, NULL, 0, 0};
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK ||
            mab_policy_stats(engine, info.id, &stats, NULL, 0, NULL, 0, &err) != MAB_OK)
            return fail(&err);
        if (stats.layout[0])
            printf("experiments.%s: policy statistics %s (%zu per arm, %zu per experiment)\n",
                   info.id, stats.layout, stats.per_arm, stats.per_experiment);
        struct layout_note note = {info.id, stats.layout};
        int rc = mab_stored_layouts(engine, info.id, note_other_layout, &note, &err);
        if (rc == MAB_EINVAL) {
            printf("stored policy statistics: not read (%s)\n", err.message);
            return 0;
        }
        if (rc != MAB_OK)
            return fail(&err);
    }
    return 0;
}

int cmd_check(const command_args *args)
{
    const char *config = args->pos[0];
    mab_engine *engine;
    int status = open_engine(config, MAB_OPEN_CHECK, 0, &engine);
    if (status)
        return status;
    mab_error err = {0};
    /* Without secret_file no host starts, but `mab` itself and programs
       that use the engine alone do: say so rather than fail. */
    int has_key = 0;
    if ((status = config_names_key(config, &has_key)) != 0)
        return close_engine(engine, status);
    if (has_key && mab_check(config, host_sections, &err) != MAB_OK)
        return close_engine(engine, fail(&err));
    const char *mabd_verdict = "";
    if ((status = check_mabd_section(engine, &mabd_verdict)) != 0)
        return close_engine(engine, status);

    text_table table;
    table_init(&table, 5, 1u << 2);
    const char *header[] = {"experiment", "policy", "arms", "reward", "policy file"};
    bool ok = table_add_row(&table, header);
    size_t n = mab_experiment_count(engine), arms = 0;
    for (size_t i = 0; ok && i < n && status == 0; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK) {
            status = fail(&err);
            break;
        }
        char n_arms[32], range[96];
        arms += info.n_arms;
        snprintf(n_arms, sizeof n_arms, "%zu", info.n_arms);
        snprintf(range, sizeof range, "[%g, %g]", info.reward_min, info.reward_max);
        const char *row[] = {info.id, info.policy, n_arms, range, info.policy_path};
        ok = table_add_row(&table, row);
    }
    if (!ok && status == 0)
        status = fail_oom();
    if (status == 0) {
        printf("config:      %s\n", config);
        printf("storage:     %s (%s)\n", mab_storage_name(engine), mab_storage_path(engine));
        printf("store:       %s\n", mab_storage_checked(engine)
                                        ? "ok (parameters and existing data checked read-only)"
                                        : "not checked (the storage plugin predates storage "
                                          "ABI 1.2 and has no check callback)");
        printf("reward once: %s\n",
               mab_storage_has_claims(engine)
                   ? "per assignment across every process and restart (claims in storage)"
                   : "per process only (this storage keeps no claims: storage ABI < 1.3)");
        printf("history:     %s\n",
               mab_storage_has_buckets(engine)
                   ? "time buckets kept in storage (windows and history survive restarts)"
                   : "this process only (this storage keeps no time buckets: storage ABI < 1.5)");
        printf("secret_file: %s\n", has_key ? "ok (present, not open to others, holds a key)"
                                              : "not set: mabd, the nginx module and the Flask "
                                                "extension refuse to start without one "
                                                "(`mab keygen FILE`)");
        printf("mabd:        %s\n", mabd_verdict);
        char warning[PATH_MAX + 400], journal[PATH_MAX + 400];
        json_file_journal_note(config, journal, sizeof journal, warning, sizeof warning);
        if (journal[0])
            printf("journal:     %s\n", journal);
        if (warning[0]) {
            printf("warning:     %s\n", warning);
            fprintf(stderr, "mab: %s: warning: %s\n", config, warning);
        }
        json_file_size_warning(engine, arms, warning, sizeof warning);
        if (warning[0]) {
            printf("warning:     %s\n", warning);
            fprintf(stderr, "mab: %s: warning: %s\n", config, warning);
        }
        printf("experiments: %zu\n\n", n);
        table_print(&table, stdout, "");
        status = print_layouts(engine, n);
    }
    table_free(&table);
    return close_engine(engine, status);
}
