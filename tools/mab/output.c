/*
 * output.c - error messages, text tables and JSON output of `mab`.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

int usage_error(const command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mab: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs(cmd->usage, stderr);
    return EXIT_USAGE;
}

/* An error the engine (or the system) reported: exit status 1. */
int fail(const mab_error *err)
{
    fprintf(stderr, "mab: %s\n", err->message[0] ? err->message : mab_strerror(err->code));
    return EXIT_USER;
}

int fail_message(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mab: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USER;
}

int fail_oom(void)
{
    fputs("mab: out of memory\n", stderr);
    return EXIT_USER;
}

/* ------------------------------------------------------------------ */
/* Aligned text tables                                                 */

void table_init(text_table *t, size_t n_cols, unsigned right_align)
{
    memset(t, 0, sizeof *t);
    t->n_cols = n_cols;
    t->right_align = right_align;
}
void table_free(text_table *t)
{
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}
bool table_add_row(text_table *t, const char *const *cells)
{
    if (t->n_rows == t->cap_rows) {
        size_t cap = t->cap_rows ? 2 * t->cap_rows : 8;
        char **grown = realloc(t->cells, cap * t->n_cols * sizeof *grown);
        if (!grown)
            return false;
        t->cells = grown;
        t->cap_rows = cap;
    }
    char **row = t->cells + t->n_rows * t->n_cols;
    for (size_t c = 0; c < t->n_cols; c++) {
        row[c] = strdup(cells[c]);
        if (!row[c]) {
            while (c > 0)
                free(row[--c]);
            return false;
        }
    }
    t->n_rows++;
    return true;
}
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        w += (*p & 0xc0) != 0x80;
    return w;
}
void table_print(const text_table *t, FILE *out, const char *indent)
{
    size_t widths[16] = {0};
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols && c < 16; c++) {
            size_t w = text_width(t->cells[r * t->n_cols + c]);
            if (w > widths[c])
                widths[c] = w;
        }
    }
    for (size_t r = 0; r < t->n_rows; r++) {
        fputs(indent, out);
        for (size_t c = 0; c < t->n_cols && c < 16; c++) {
            const char *cell = t->cells[r * t->n_cols + c];
            size_t pad = widths[c] - text_width(cell);
            bool last = c + 1 == t->n_cols;
            if (c > 0)
                fputs("  ", out);
            if (t->right_align & (1u << c))
                fprintf(out, "%*s%s", (int)pad, "", cell);
            else
                fprintf(out, "%s%*s", cell, last ? 0 : (int)pad, "");
        }
        fputc('\n', out);
    }
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */

cJSON *json_put(bool *ok, cJSON *parent, const char *key, cJSON *item)
{
    if (*ok && item && parent &&
        (key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item)))
        return item;
    *ok = false;
    cJSON_Delete(item);
    return NULL;
}

cJSON *json_number(double v)
{
    if (!isfinite(v))
        return cJSON_CreateNull();
    char text[40];
    snprintf(text, sizeof text, "%.17g", v);
    return cJSON_CreateRaw(text);
}

cJSON *json_counter(uint64_t n)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRIu64, n);
    return cJSON_CreateRaw(text);
}

int json_print_stdout(cJSON *root, bool ok)
{
    char *text = ok && root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return fail_oom();
    fputs(text, stdout);
    fputc('\n', stdout);
    cJSON_free(text);
    return 0;
}
