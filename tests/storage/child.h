/*
 * child.h - a forked child process that a storage test drives over two
 * pipes (header-only; include after <cmocka.h>).
 *
 * test_child_fork runs fn(arg, go, done) in a child with the child's ends
 * of two pipes: it reads steps (or nothing) on go and reports on done. The
 * parent keeps the other ends. fn reports failure only through its exit
 * code (_exit, never a cmocka assertion: the child must not return into
 * the test runner); if fn returns, the child exits 0.
 *
 * Fork before this process opens an engine or a store (an engine's threads
 * and an LMDB environment must not cross fork).
 */
#ifndef MAB_TEST_STORAGE_CHILD_H
#define MAB_TEST_STORAGE_CHILD_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mab/mab.h"

typedef struct test_child {
    pid_t pid;
    int go;   /* the parent writes steps here */
    int done; /* the parent reads the child's reports here */
} test_child;

static inline test_child test_child_fork(void (*fn)(void *arg, int go, int done), void *arg)
{
    int go[2], done[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        close(done[0]);
        fn(arg, go[0], done[1]);
        _exit(0);
    }
    close(go[0]);
    close(done[1]);
    return (test_child){.pid = pid, .go = go[1], .done = done[0]};
}

/* Send one step byte and wait for the child's byte that says it is done. */
static inline void test_child_step(const test_child *c, char step)
{
    char byte;
    assert_int_equal(write(c->go, &step, 1), 1);
    assert_int_equal(read(c->done, &byte, 1), 1);
}

/* Read exactly len bytes from fd: 0, or -1 at end of file (every writer
   exited or was killed) or an error first. */
static inline int test_read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read exactly len bytes of the child's reports (test_read_full). */
static inline int test_child_read(const test_child *c, void *buf, size_t len)
{
    return test_read_full(c->done, buf, len);
}

/* Close the parent's ends (the child then reads end of file on go). */
static inline void test_child_close(test_child *c)
{
    if (c->go >= 0)
        close(c->go);
    if (c->done >= 0)
        close(c->done);
    c->go = c->done = -1;
}

/* Close the parent's ends and reap the child: the test fails unless it
   exited 0 (a non-zero code says which of the child's steps failed). */
static inline void test_child_wait_ok(test_child *c)
{
    int status;
    test_child_close(c);
    assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child %ld ended with status 0x%x", (long)c->pid, status);
}

/* SIGKILL and reap; the test fails if the child had ended by itself
   before (its exit code says why). The pipes stay open: what the child
   wrote before it died can still be read. */
static inline void test_child_kill(test_child *c, int round)
{
    int status;
    assert_int_equal(kill(c->pid, SIGKILL), 0);
    assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
    if (!WIFSIGNALED(status))
        fail_msg("round %d: child exited with %d before the kill", round,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/*
 * The body of a child that changes an engine one step at a time: at the
 * first step byte on go it opens config; for each step byte, do_step(e,
 * step, ctx) (0: done), then a flush (the step is durable) and a byte on
 * done; a step byte 0 or end of file on go ends it with a clean close.
 * Exit codes: 2 the open failed, 3 a step or its flush, 4 the close.
 */
static inline void test_child_engine_steps(const char *config, int go, int done,
                                           int (*do_step)(mab_engine *e, char step, void *ctx),
                                           void *ctx)
{
    char step;
    mab_engine *e = NULL;
    if (read(go, &step, 1) != 1 || mab_open(config, &e, NULL) != MAB_OK)
        _exit(2);
    do {
        if (do_step(e, step, ctx) != 0 || mab_flush(e, NULL) != MAB_OK ||
            write(done, "d", 1) != 1)
            _exit(3);
    } while (read(go, &step, 1) == 1 && step != 0);
    _exit(mab_close(e, NULL) == MAB_OK ? 0 : 4);
}

#endif
