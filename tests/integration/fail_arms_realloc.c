/*
 * fail_arms_realloc.c - an LD_PRELOAD for mabd_metrics_oom_test.sh: makes
 * one realloc fail, the one that grows a buffer of mab_arm_stats to
 * MAB_TEST_FAIL_ARMS of them (metrics.c, arms_room), when the test asks.
 *
 * The test asks by writing a number N to the file MAB_TEST_FAIL_FILE: the
 * N-th such realloc from then on fails, and this library removes the file,
 * so that the test knows the failure happened and nothing else fails. Every
 * other call goes to the next realloc (the C library's).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mab/mab.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long seen; /* such reallocs since the file was written */

/* 1 if this call is the one the file asks to fail (and the file is gone). */
static int asked_to_fail(size_t n)
{
    const char *arms = getenv("MAB_TEST_FAIL_ARMS"), *path = getenv("MAB_TEST_FAIL_FILE");
    if (!arms || !path || n != (size_t)atol(arms) * sizeof(mab_arm_stats))
        return 0;
    pthread_mutex_lock(&mu);
    int fail = 0;
    FILE *f = fopen(path, "r");
    long nth = 0;
    if (f && fscanf(f, "%ld", &nth) == 1 && ++seen == nth) {
        fail = 1;
        seen = 0;
        unlink(path);
    }
    if (!f)
        seen = 0;
    else
        fclose(f);
    pthread_mutex_unlock(&mu);
    return fail;
}

__attribute__((visibility("default"))) void *realloc(void *p, size_t n)
{
    static void *(*next)(void *, size_t);
    if (!next)
        next = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    return asked_to_fail(n) ? NULL : next(p, n);
}
