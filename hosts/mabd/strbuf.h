/*
 * strbuf.h - a growable byte string for request bodies, files and the
 * metrics text (JSON is written with cJSON). A failed allocation sets
 * `failed` and later appends do nothing, so callers check once at the end.
 */
#ifndef MABD_STRBUF_H
#define MABD_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *data; /* NUL-terminated when not failed */
    size_t len, cap;
    int failed;
} strbuf;

void sb_init(strbuf *sb);
void sb_free(strbuf *sb);
/* Hand the bytes to the caller (free() them); the buffer is reset. */
char *sb_take(strbuf *sb, size_t *len);
void sb_append(strbuf *sb, const char *bytes, size_t n);
void sb_puts(strbuf *sb, const char *s);
void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
