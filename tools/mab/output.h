/*
 * output.h - what `mab` prints: error messages and exit statuses, aligned
 * text tables, and JSON built with cJSON.
 */
#ifndef MAB_TOOL_OUTPUT_H
#define MAB_TOOL_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "mab/mab.h"
#include "options.h"

/* Exit statuses: 0 success, 1 an error the engine or the system reported,
   2 a usage error. */
enum { EXIT_USER = 1, EXIT_USAGE = 2 };

/* "mab: MESSAGE" and the command's usage on stderr; returns EXIT_USAGE. */
int usage_error(const command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "mab: MESSAGE" for an error the engine reported; returns EXIT_USER. */
int fail(const mab_error *err);

/* "mab: MESSAGE"; returns EXIT_USER. */
int fail_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "mab: out of memory"; returns EXIT_USER. */
int fail_oom(void);

/* ---- aligned text tables ---- */

typedef struct text_table {
    size_t n_cols;
    size_t n_rows, cap_rows;
    char **cells;         /* row-major, owned */
    unsigned right_align; /* bit c set: column c is right-aligned */
} text_table;

void table_init(text_table *t, size_t n_cols, unsigned right_align);
void table_free(text_table *t);
/* Append a row of n_cols strings (copied); false when out of memory. */
bool table_add_row(text_table *t, const char *const *cells);
/* Columns padded to their widest cell (UTF-8 aware), two spaces apart. */
void table_print(const text_table *t, FILE *out, const char *indent);

/* ---- JSON, always through cJSON ---- */

/*
 * Add item to parent (under key for an object, appended for an array when
 * key is NULL) and return it. Building stops quietly at the first failure:
 * then *ok becomes false, item is freed and NULL returned, and every later
 * call does nothing, so a builder checks *ok once at the end.
 */
cJSON *json_put(bool *ok, cJSON *parent, const char *key, cJSON *item);

/* A number as "%.17g" (reads back exactly); NaN and infinities, which JSON
   lacks, become null. */
cJSON *json_number(double v);

/* An exact unsigned integer (cJSON's own numbers are doubles). */
cJSON *json_counter(uint64_t n);

/* Print root compactly with a newline to stdout and free it; when *ok is
   false (or root NULL) print "out of memory" instead. Returns 0 or EXIT_USER. */
int json_print_stdout(cJSON *root, bool ok);

#endif /* MAB_TOOL_OUTPUT_H */
