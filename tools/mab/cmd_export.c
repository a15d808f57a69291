/*
 * cmd_export.c - `mab export CONFIG [--out FILE]`: every stored record as a
 * record-set document of kind "mab-export" (include/mab/records.h, the same
 * writer as the json_file storage's).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mab/records.h"

#include "commands.h"
#include "engine_util.h"
#include "output.h"

/* Records gathered by mab_export, with their own copies of the ids. */
typedef struct record_list {
    mab_record *records;
    size_t n, cap;
} record_list;

static void record_list_free(record_list *list)
{
    for (size_t i = 0; i < list->n; i++) {
        free((char *)list->records[i].experiment);
        free((char *)list->records[i].arm);
    }
    free(list->records);
    memset(list, 0, sizeof *list);
}

static bool record_list_add(record_list *list, const mab_record *r)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 64;
        mab_record *grown = realloc(list->records, cap * sizeof *grown);
        if (!grown)
            return false;
        list->records = grown;
        list->cap = cap;
    }
    mab_record copy = *r;
    copy.experiment = strdup(r->experiment);
    copy.arm = strdup(r->arm);
    if (!copy.experiment || !copy.arm) {
        free((char *)copy.experiment);
        free((char *)copy.arm);
        return false;
    }
    list->records[list->n++] = copy;
    return true;
}

static int collect_record(void *ctx, const mab_record *r)
{
    return record_list_add(ctx, r) ? 0 : MAB_ENOMEM;
}

static int compare_records(const void *a, const void *b)
{
    const mab_record *x = a, *y = b;
    int c = strcmp(x->experiment, y->experiment);
    return c ? c : strcmp(x->arm, y->arm);
}

/* Write the document to path through path.tmp and a rename, so a failed
   export never leaves half a file behind. */
static int write_export_file(const char *path, const record_list *list)
{
    size_t len = strlen(path) + 5;
    char *tmp = malloc(len);
    if (!tmp)
        return fail_oom();
    snprintf(tmp, len, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int status = fail_message("cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return status;
    }
    mab_error err = {0};
    if (mab_records_write(f, tmp, MAB_RECORDS_EXPORT, list->records, list->n, &err) != MAB_OK) {
        fclose(f);
        unlink(tmp);
        free(tmp);
        return fail(&err);
    }
    bool ok = fflush(f) == 0 && !ferror(f) && fsync(fileno(f)) == 0;
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        fail_message("cannot write %s: %s", path, strerror(saved));
        unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : EXIT_USER;
}

int cmd_export(const command_args *args)
{
    const char *out = option_value(args, "out");
    mab_engine *engine;
    int status = open_engine(args->pos[0], MAB_OPEN_READ_ONLY, 0, &engine);
    if (status)
        return status;
    record_list list = {0};
    mab_error err = {0};
    int rc = mab_export(engine, collect_record, &list, &err);
    if (rc == MAB_ENOMEM && !err.message[0])
        status = fail_oom();
    else if (rc != MAB_OK)
        status = fail(&err);
    status = close_engine(engine, status);
    /* Sorted by experiment, then arm: the same store gives the same text. */
    if (status == 0)
        qsort(list.records, list.n, sizeof *list.records, compare_records);
    if (status == 0 && out) {
        status = write_export_file(out, &list);
    } else if (status == 0 &&
               mab_records_write(stdout, "stdout", MAB_RECORDS_EXPORT, list.records, list.n,
                                 &err) != MAB_OK) {
        status = fail(&err); /* main() also checks stdout once it is flushed */
    }
    if (status == 0 && out)
        fprintf(stderr, "exported %zu records to %s\n", list.n, out);
    record_list_free(&list);
    return status;
}
