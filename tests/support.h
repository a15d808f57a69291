/* support.h - small helpers shared by the cmocka tests (header-only). */
#ifndef MAB_TEST_SUPPORT_H
#define MAB_TEST_SUPPORT_H

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mab/storage.h"

/* A fresh directory under /tmp; the caller frees the string after rm_tree. */
static inline char *test_tmpdir(const char *tag)
{
    char *d = malloc(256);
    if (!d)
        return NULL;
    snprintf(d, 256, "/tmp/mab-%s-XXXXXX", tag);
    return mkdtemp(d) ? d : (free(d), (char *)NULL);
}

static inline int test_rm_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

/* Write a file from a printf format; returns 0 on success. */
static inline int test_write_file(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int test_write_file(const char *path, const char *fmt, ...)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    return fclose(f);
}

/* Whole file as a NUL-terminated string, or NULL. */
static inline char *test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

/* dlopen a storage plugin the way the core does and return its descriptor
   (ABI major checked); NULL after printing why. *handle is for dlclose. */
static inline const mab_storage *test_load_storage(const char *path, void **handle)
{
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return NULL;
    }
    const mab_storage *(*entry)(void) =
        (const mab_storage *(*)(void))dlsym(*handle, MAB_STORAGE_ENTRY_SYMBOL);
    const mab_storage *storage = entry ? entry() : NULL;
    return storage && storage->abi_major == MAB_STORAGE_ABI_MAJOR ? storage : NULL;
}

#endif
