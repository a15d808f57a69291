/*
 * fail_realloc.h - out of memory on demand, for the unit tests of what grows
 * by realloc (a slot's rows and dirty list, the write-behind queue and its
 * batch). Include it in one file of a test binary: it defines realloc over
 * glibc's (__libc_realloc), failing in the calling thread while `failing` is
 * set and counting the failures in `failed`. Such a binary is built without
 * the sanitizers, whose runtime defines realloc (tests/CMakeLists.txt).
 */
#ifndef MAB_TEST_FAIL_REALLOC_H
#define MAB_TEST_FAIL_REALLOC_H

#include <stddef.h>

extern void *__libc_realloc(void *, size_t);

static _Thread_local int failing; /* this thread's reallocs fail */
static _Thread_local unsigned long failed;

__attribute__((visibility("default"))) void *realloc(void *p, size_t n)
{
    if (failing) {
        failed++;
        return NULL;
    }
    return __libc_realloc(p, n);
}

#endif
