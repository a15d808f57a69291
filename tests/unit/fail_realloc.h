/*
 * fail_realloc.h - out of memory on demand, for the unit tests of what grows
 * by realloc (a slot's rows and dirty list, the write-behind queue and its
 * batch). Include it in one file of a test binary: it defines realloc,
 * failing in the calling thread while `failing` is set and counting the
 * failures in `failed`, and otherwise calling the realloc it hides: the next
 * one in the lookup order (dlsym RTLD_NEXT), which is glibc's, or the
 * sanitizers' runtime's in a sanitizer build (its library comes first), so
 * that such a build tracks every block as before.
 */
#ifndef MAB_TEST_FAIL_REALLOC_H
#define MAB_TEST_FAIL_REALLOC_H

#ifndef _GNU_SOURCE
#error "fail_realloc.h needs _GNU_SOURCE (RTLD_NEXT): define it before any include"
#endif
#include <dlfcn.h>
#include <stddef.h>

static _Thread_local int failing; /* this thread's reallocs fail */
static _Thread_local unsigned long failed;

__attribute__((visibility("default"))) void *realloc(void *p, size_t n)
{
    static void *(*next)(void *, size_t);
    if (failing) {
        failed++;
        return NULL;
    }
    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "realloc");
    return next(p, n);
}

#endif
