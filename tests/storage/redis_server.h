/*
 * redis_server.h - Debian's redis-server for the tests (header-only): started
 * on a free loopback port with a directory of its own, AOF on with
 * appendfsync always, no RDB snapshots; stopped by its pid.
 */
#ifndef MAB_TEST_REDIS_SERVER_H
#define MAB_TEST_REDIS_SERVER_H

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define REDIS_SERVER_BIN "/usr/bin/redis-server"

typedef struct redis_server {
    pid_t pid;
    int port;          /* 0 before the first start: a free one is picked */
    char dir[200];     /* its working directory (AOF files, log) */
    char url[64];      /* redis://127.0.0.1:PORT/0 */
    char where[64];    /* 127.0.0.1:PORT, as messages name it */
    char extra[256];   /* more arguments, space-separated (e.g. "--requirepass x") */
} redis_server;

static inline int64_t redis_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void redis_test_sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* A loopback TCP port nobody listens on now. */
static inline int redis_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* 1 when the server answers PING (or NOAUTH: it is up, with a password). */
static inline int redis_server_answers(const redis_server *s)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    int up = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        up = r && (r->type == REDIS_REPLY_STATUS ||
                   (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0));
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return up;
}

/* Start (or restart, on the same port and directory) and wait until it
   answers. dir must exist. Returns 0, or -1 after printing why. */
static inline int redis_server_start(redis_server *s)
{
    if (!s->port && (s->port = redis_test_free_port()) < 0)
        return -1;
    snprintf(s->url, sizeof s->url, "redis://127.0.0.1:%d/0", s->port);
    snprintf(s->where, sizeof s->where, "127.0.0.1:%d", s->port);
    char port[16], log[260];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Dies with the test, even when the test is killed (a CTest timeout). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[40] = {REDIS_SERVER_BIN, "--port", port, "--bind", "127.0.0.1",
                                "--dir", s->dir, "--save", "", "--appendonly", "yes",
                                "--appendfsync", "always", "--daemonize", "no",
                                "--protected-mode", "yes", "--enable-debug-command", "local"};
        int n = 19;
        char extra[sizeof s->extra];
        snprintf(extra, sizeof extra, "%s", s->extra);
        for (char *tok = strtok(extra, " "); tok && n < 38; tok = strtok(NULL, " "))
            argv[n++] = tok;
        argv[n] = NULL;
        execv(REDIS_SERVER_BIN, (char **)argv);
        _exit(127);
    }
    s->pid = pid;
    /* Until it answers (not while it loads its append-only file: a restart
       reads back everything the earlier tests wrote, tens of seconds on a
       loaded machine) or exits; the deadline only stops a server that hangs. */
    for (int64_t until = redis_test_now_ms() + 240000; redis_test_now_ms() < until;
         redis_test_sleep_ms(20)) {
        if (redis_server_answers(s))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "redis-server exited (status %d); see %s\n", status, log);
            return -1;
        }
    }
    fprintf(stderr, "redis-server did not answer within 240 s; see %s\n", log);
    return -1;
}

/* Stop with sig (SIGTERM: a clean shutdown; SIGKILL: a crash) and reap. */
static inline void redis_server_stop(redis_server *s, int sig)
{
    if (!s->pid)
        return;
    kill(s->pid, sig);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

/* A connection of the test's own (NULL after printing why). */
static inline redisContext *redis_server_connect(const redis_server *s)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (!c || c->err) {
        fprintf(stderr, "cannot connect to redis-server on %d: %s\n", s->port,
                c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    return c;
}

#endif
