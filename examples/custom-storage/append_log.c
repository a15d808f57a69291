/*
 * append_log.c - a storage plugin built out of tree: counters kept in memory
 * and made durable in an append-only log file, for one process at a time.
 *
 * Config: {"plugin": "append_log", "path": "var/counts.log"}; "path" is
 * required and relative to the config file's directory.
 *
 * File format (text, one record per line):
 *
 *   mab-append-log 1                              header, written at creation
 *   B                                             a batch begins
 *   D EXP ARM PULLS REWARDS SUM SUM_SQ            add to (EXP, ARM); sums in %a
 *   R EXP                                         forget every record of EXP
 *   E                                             the batch is committed
 *
 * Every write (apply, reset, replace) appends one batch and fdatasync()s the
 * file before returning, so whatever a call reported as done survives a
 * crash. Open replays the committed batches into memory. A batch cut short by
 * a crash (a tail after the last "E" that starts like a batch) was never
 * reported as done: open discards it, truncating the file back to the last
 * committed batch. Anything else that does not parse is refused with
 * MAB_ECORRUPT, naming the line, and the file is left as it is.
 *
 * One process at a time: open takes flock(LOCK_EX | LOCK_NB) on the file
 * (it is never replaced, so the lock stays on the right inode) and refuses a
 * store locked by another process with MAB_EBUSY.
 *
 * What a production backend would add: compaction (the log only grows; a
 * rewrite of the totals into a new file renamed over the old one), a hash
 * table instead of the linear search below, and sharing between processes.
 * docs/writing-a-storage.md walks through this file.
 */
#define _GNU_SOURCE /* flock, fdatasync, pread/pwrite, strtok_r, memmem under -std=c11 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mab/storage.h>

#define LOG_HEADER "mab-append-log 1\n"
#define PATH_MAX_LEN 4096

typedef struct log_record {
    char *experiment;
    char *arm;
    mab_totals totals; /* all zero: the same as no record */
} log_record;

typedef struct log_store {
    char path[PATH_MAX_LEN];
    int fd;          /* open, flock()ed */
    off_t end;       /* end of the last committed batch: where the next one goes */
    int dirty_tail;  /* a failed write may have left bytes after `end` */
    log_record *records;
    size_t n_records, cap_records;
} log_store;

/* ---- the records in memory ------------------------------------------- */

static log_record *find_record(log_store *s, const char *experiment, const char *arm)
{
    for (size_t i = 0; i < s->n_records; i++)
        if (strcmp(s->records[i].experiment, experiment) == 0 &&
            strcmp(s->records[i].arm, arm) == 0)
            return &s->records[i];
    return NULL;
}

static char *copy_string(const char *text)
{
    size_t n = strlen(text) + 1;
    char *copy = malloc(n);
    return copy ? memcpy(copy, text, n) : NULL;
}

/* A new record starts at zero, which reads as no record: callers add records
   before writing so that nothing can fail once the batch is on disk. */
static log_record *find_or_add_record(log_store *s, const char *experiment, const char *arm)
{
    log_record *r = find_record(s, experiment, arm);
    if (r)
        return r;
    if (s->n_records == s->cap_records) {
        size_t cap = s->cap_records ? 2 * s->cap_records : 16;
        log_record *grown = realloc(s->records, cap * sizeof *grown);
        if (!grown)
            return NULL;
        s->records = grown;
        s->cap_records = cap;
    }
    char *e = copy_string(experiment), *a = copy_string(arm);
    if (!e || !a) {
        free(e);
        free(a);
        return NULL;
    }
    r = &s->records[s->n_records++];
    *r = (log_record){e, a, {0, 0, 0.0, 0.0}};
    return r;
}

static void add_totals(mab_totals *to, const mab_totals *add)
{
    to->pulls += add->pulls;
    to->rewards += add->rewards;
    to->reward_sum += add->reward_sum;
    to->reward_sum_sq += add->reward_sum_sq;
}

static void forget_experiment(log_store *s, const char *experiment)
{
    for (size_t i = 0; i < s->n_records; i++)
        if (strcmp(s->records[i].experiment, experiment) == 0)
            s->records[i].totals = (mab_totals){0, 0, 0.0, 0.0};
}

static void free_records(log_store *s)
{
    for (size_t i = 0; i < s->n_records; i++) {
        free(s->records[i].experiment);
        free(s->records[i].arm);
    }
    free(s->records);
    s->records = NULL;
    s->n_records = s->cap_records = 0;
}

/* ---- writing batches --------------------------------------------------- */

typedef struct text {
    char *data;
    size_t len, cap;
    int failed; /* out of memory */
} text;

static void text_printf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text *t, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !t->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data ? t->data + t->len : NULL, t->data ? t->cap - t->len : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if (t->data && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = 2 * (t->cap + (size_t)n) + 64;
        char *grown = realloc(t->data, cap);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
}

/* Ids travel as space-separated words: refuse one that would not read back. */
static int check_id(const char *id, const char *what, mab_error *err)
{
    if (!id[0])
        return mab_error_set(err, MAB_EINVAL, "append_log: empty %s id", what);
    for (const unsigned char *c = (const unsigned char *)id; *c; c++)
        if (*c <= ' ' || *c == 0x7f)
            return mab_error_set(err, MAB_EINVAL,
                                 "append_log: %s id \"%s\" has a space or control character",
                                 what, id);
    return MAB_OK;
}

/* Append one batch at s->end and make it durable. On any failure the file
   is cut back to s->end, so a retry of the same batch does not double it. */
static int append_batch(log_store *s, const text *batch, mab_error *err)
{
    /* Bytes a failed write left behind must go first: a shorter batch
       written over them would leave a stray tail that open cannot read. */
    if (s->dirty_tail) {
        if (ftruncate(s->fd, s->end) != 0)
            return mab_error_set(err, MAB_ESTORAGE, "%s: cannot write: %s", s->path,
                                 strerror(errno));
        s->dirty_tail = 0;
    }
    size_t done = 0;
    while (done < batch->len) {
        ssize_t n = pwrite(s->fd, batch->data + done, batch->len - done,
                           s->end + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto failed;
        done += (size_t)n;
    }
    if (fdatasync(s->fd) != 0)
        goto failed;
    s->end += (off_t)batch->len;
    return MAB_OK;

failed:;
    int saved = errno;
    /* If this fails too, the next append truncates first; and open discards
       an unfinished batch anyway. */
    if (ftruncate(s->fd, s->end) != 0)
        s->dirty_tail = 1;
    return mab_error_set(err, MAB_ESTORAGE, "%s: cannot write: %s", s->path,
                         strerror(saved ? saved : EIO));
}

static void batch_delta(text *t, const mab_delta *d)
{
    text_printf(t, "D %s %s %" PRIu64 " %" PRIu64 " %a %a\n", d->experiment, d->arm,
                d->add.pulls, d->add.rewards, d->add.reward_sum, d->add.reward_sum_sq);
}

/* ---- reading the log at open ------------------------------------------- */

/* One parsed line of a batch, pointing into the file's buffer. */
typedef struct log_op {
    char kind; /* 'D' or 'R' */
    const char *experiment, *arm;
    mab_totals add;
} log_op;

static int corrupt(const log_store *s, size_t line, const char *why, mab_error *err)
{
    return mab_error_set(err, MAB_ECORRUPT, "%s: line %zu: %s (the file was not modified)",
                         s->path, line, why);
}

/* Split a line (NUL-terminated, no newline) into at most max words. */
static size_t split_words(char *line, char **words, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *w = strtok_r(line, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (n == max)
            return max + 1;
        words[n++] = w;
    }
    return n;
}

static int parse_u64(const char *word, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(word, &end, 10);
    if (errno || *end || word[0] == '-' || end == word)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *word, double *out)
{
    char *end;
    double v = strtod(word, &end);
    if (*end || end == word || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int parse_op(char *line, log_op *op)
{
    char *w[7];
    size_t n = split_words(line, w, 7);
    if (n == 2 && strcmp(w[0], "R") == 0) {
        *op = (log_op){'R', w[1], NULL, {0, 0, 0.0, 0.0}};
        return 0;
    }
    if (n == 7 && strcmp(w[0], "D") == 0) {
        *op = (log_op){'D', w[1], w[2], {0, 0, 0.0, 0.0}};
        return parse_u64(w[3], &op->add.pulls) || parse_u64(w[4], &op->add.rewards) ||
                       parse_double(w[5], &op->add.reward_sum) ||
                       parse_double(w[6], &op->add.reward_sum_sq)
                   ? -1
                   : 0;
    }
    return -1;
}

/* Is there an "E" line at or after buf[from]? */
static int commit_follows(const char *buf, size_t from, size_t len)
{
    if (len - from >= 2 && buf[from] == 'E' && buf[from + 1] == '\n')
        return 1;
    return memmem(buf + from, len - from, "\nE\n", 3) != NULL;
}

/* Apply the operations of one committed batch, in order (R before D matters). */
static int commit_ops(log_store *s, const log_op *ops, size_t n_ops, mab_error *err)
{
    for (size_t i = 0; i < n_ops; i++) {
        if (ops[i].kind == 'R') {
            forget_experiment(s, ops[i].experiment);
            continue;
        }
        log_record *r = find_or_add_record(s, ops[i].experiment, ops[i].arm);
        if (!r)
            return mab_error_set(err, MAB_ENOMEM, "append_log: out of memory");
        add_totals(&r->totals, &ops[i].add);
    }
    return MAB_OK;
}

/* Replay buf[0..len) (the whole file) into memory; *committed receives the
   end of the last committed batch. Lines are split in place. */
static int replay(log_store *s, char *buf, size_t len, off_t *committed, mab_error *err)
{
    size_t header = strlen(LOG_HEADER);
    if (len < header || memcmp(buf, LOG_HEADER, header) != 0)
        return corrupt(s, 1, "not an append_log file (no \"mab-append-log 1\" header)", err);
    log_op *ops = NULL;
    size_t n_ops = 0, cap_ops = 0, line_no = 1, pos = header;
    int in_batch = 0, rc = MAB_OK;
    *committed = (off_t)header;
    while (rc == MAB_OK && pos < len) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl)
            break; /* a last line without its newline: torn, see below */
        *nl = '\0';
        char *line = buf + pos;
        size_t next = (size_t)(nl + 1 - buf);
        line_no++;
        if (!in_batch) {
            if (strcmp(line, "B") != 0) {
                rc = corrupt(s, line_no, "expected B, the start of a batch", err);
                break;
            }
            in_batch = 1;
            n_ops = 0;
        } else if (strcmp(line, "E") == 0) {
            rc = commit_ops(s, ops, n_ops, err);
            in_batch = 0;
            *committed = (off_t)next;
        } else {
            if (n_ops == cap_ops) {
                size_t cap = cap_ops ? 2 * cap_ops : 64;
                log_op *grown = realloc(ops, cap * sizeof *grown);
                if (!grown) {
                    rc = mab_error_set(err, MAB_ENOMEM, "append_log: out of memory");
                    break;
                }
                ops = grown;
                cap_ops = cap;
            }
            if (parse_op(line, &ops[n_ops]) != 0) {
                /* Inside a committed batch that is corruption; in the last,
                   unfinished one it is what a crash mid-write leaves. */
                if (commit_follows(buf, next, len))
                    rc = corrupt(s, line_no, "not a D or R record", err);
                break;
            }
            n_ops++;
        }
        pos = next;
    }
    free(ops);
    /* Outside a batch, the only torn line a crash can leave is a lone "B". */
    if (rc == MAB_OK && !in_batch && pos < len && !(len - pos == 1 && buf[pos] == 'B'))
        rc = corrupt(s, line_no + 1, "an unfinished line that is not the start of a batch", err);
    return rc;
}

/* ---- the callbacks ------------------------------------------------------ */

static int read_whole_file(int fd, char **buf, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    *len = (size_t)st.st_size;
    *buf = malloc(*len + 1);
    if (!*buf)
        return -1;
    size_t done = 0;
    while (done < *len) {
        ssize_t n = pread(fd, *buf + done, *len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(*buf);
            return -1;
        }
        done += (size_t)n;
    }
    (*buf)[*len] = '\0';
    return 0;
}

/* A new file: write the header and make the file's existence durable too. */
static int create_log(log_store *s, mab_error *err)
{
    text header = {NULL, 0, 0, 0};
    text_printf(&header, "%s", LOG_HEADER);
    if (header.failed)
        return mab_error_set(err, MAB_ENOMEM, "append_log: out of memory");
    s->end = 0;
    int rc = append_batch(s, &header, err);
    free(header.data);
    if (rc)
        return rc;
    char dir[PATH_MAX_LEN];
    snprintf(dir, sizeof dir, "%s", s->path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        slash[slash == dir] = '\0'; /* "/log" -> "/", "a/log" -> "a" */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        int saved = errno;
        if (dfd >= 0)
            close(dfd);
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot sync its directory: %s", s->path,
                             strerror(saved));
    }
    close(dfd);
    return MAB_OK;
}

static void log_close(void *state);

static int log_open(mab_params *params, void **state, mab_error *err)
{
    log_store *s = calloc(1, sizeof *s);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "append_log: out of memory");
    s->fd = -1;
    if (mab_params_path(params, "path", NULL, s->path, sizeof s->path) != MAB_OK) {
        free(s);
        return mab_error_set(err, MAB_ECONFIG, "%s", mab_params_last_error(params));
    }
    int rc = MAB_OK;
    char *buf = NULL;
    size_t len = 0;
    s->fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        rc = mab_error_set(err, MAB_ESTORAGE, "%s: cannot open: %s", s->path, strerror(errno));
    } else if (flock(s->fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK
                 ? mab_error_set(err, MAB_EBUSY, "%s: in use by another process (append_log "
                                                 "serves one process at a time)", s->path)
                 : mab_error_set(err, MAB_ESTORAGE, "%s: cannot lock: %s", s->path,
                                 strerror(errno));
    } else if (read_whole_file(s->fd, &buf, &len) != 0) {
        rc = mab_error_set(err, MAB_ESTORAGE, "%s: cannot read: %s", s->path, strerror(errno));
    } else if (len == 0) {
        rc = create_log(s, err);
    } else {
        off_t committed = 0;
        rc = replay(s, buf, len, &committed, err);
        s->end = committed;
        /* Drop a torn batch, so the next batch follows the last committed one. */
        if (rc == MAB_OK && (size_t)committed < len &&
            (ftruncate(s->fd, committed) != 0 || fdatasync(s->fd) != 0))
            rc = mab_error_set(err, MAB_ESTORAGE, "%s: cannot drop an unfinished batch: %s",
                               s->path, strerror(errno));
    }
    free(buf);
    if (rc) {
        log_close(s);
        return rc;
    }
    *state = s;
    return MAB_OK;
}

static int log_load(void *state, const char *experiment, const char *const *arm_ids,
                    size_t n_arms, mab_totals *out, mab_error *err)
{
    (void)err; /* reading memory cannot fail */
    log_store *s = state;
    for (size_t i = 0; i < n_arms; i++) {
        const log_record *r = find_record(s, experiment, arm_ids[i]);
        out[i] = r ? r->totals : (mab_totals){0, 0, 0.0, 0.0};
    }
    return MAB_OK;
}

/* replace() and apply() share this: R lines for `forget`, then D lines. */
static int write_batch(log_store *s, const char *const *forget, size_t n_forget,
                       const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    int rc = MAB_OK;
    for (size_t i = 0; i < n_forget && rc == MAB_OK; i++)
        rc = check_id(forget[i], "experiment", err);
    for (size_t i = 0; i < n_deltas && rc == MAB_OK; i++)
        if ((rc = check_id(deltas[i].experiment, "experiment", err)) == MAB_OK)
            rc = check_id(deltas[i].arm, "arm", err);
    if (rc)
        return rc;
    /* Every record the batch adds to exists before anything is written. */
    for (size_t i = 0; i < n_deltas; i++)
        if (!find_or_add_record(s, deltas[i].experiment, deltas[i].arm))
            return mab_error_set(err, MAB_ENOMEM, "append_log: out of memory");
    text batch = {NULL, 0, 0, 0};
    text_printf(&batch, "B\n");
    for (size_t i = 0; i < n_forget; i++)
        text_printf(&batch, "R %s\n", forget[i]);
    for (size_t i = 0; i < n_deltas; i++)
        batch_delta(&batch, &deltas[i]);
    text_printf(&batch, "E\n");
    if (batch.failed)
        rc = mab_error_set(err, MAB_ENOMEM, "append_log: out of memory");
    else
        rc = append_batch(s, &batch, err);
    free(batch.data);
    if (rc)
        return rc;
    /* Durable: now the same changes in memory, which cannot fail. */
    for (size_t i = 0; i < n_forget; i++)
        forget_experiment(s, forget[i]);
    for (size_t i = 0; i < n_deltas; i++)
        add_totals(&find_record(s, deltas[i].experiment, deltas[i].arm)->totals, &deltas[i].add);
    return MAB_OK;
}

static int log_apply(void *state, const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    return write_batch(state, NULL, 0, deltas, n_deltas, err);
}

static int log_reset(void *state, const char *experiment, mab_error *err)
{
    return write_batch(state, &experiment, 1, NULL, 0, err);
}

static int log_replace(void *state, const char *const *experiments, size_t n_experiments,
                       const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    return write_batch(state, experiments, n_experiments, deltas, n_deltas, err);
}

static int log_scan(void *state,
                    int (*visit)(void *ctx, const char *experiment, const char *arm,
                                 const mab_totals *totals),
                    void *ctx, mab_error *err)
{
    (void)err; /* only visit's own value stops a scan */
    const log_store *s = state;
    static const mab_totals zero = {0, 0, 0.0, 0.0};
    for (size_t i = 0; i < s->n_records; i++) {
        const log_record *r = &s->records[i];
        if (memcmp(&r->totals, &zero, sizeof zero) == 0)
            continue; /* forgotten, or never written */
        int rc = visit(ctx, r->experiment, r->arm, &r->totals);
        if (rc)
            return rc;
    }
    return MAB_OK;
}

static void log_close(void *state)
{
    log_store *s = state;
    if (!s)
        return;
    free_records(s);
    if (s->fd >= 0)
        close(s->fd); /* releases the flock */
    free(s);
}

/* Storage ABI 1.2, declared as such: this backend keeps no claims (the
   `claim` callback of ABI 1.3), so the adapter guards rewards once per
   process with its own memory. struct_size ends before `claim`, so the core
   never reads it; a plugin declaring 1.3 (MAB_STORAGE_HEADER) must set it. */
static const mab_storage append_log = {
    MAB_STORAGE_ABI_MAJOR,
    2,
    (uint32_t)offsetof(mab_storage, claim),
    "append_log",
    "counters in memory, durable in an append-only log (one process)",
    log_open,
    log_load,
    log_apply,
    log_reset,
    log_close,
    0, /* refresh_ms: no other writers */
    log_scan,
    log_replace,
    NULL, /* check (ABI 1.2, optional): `mab check` says the store was not checked */
    NULL, /* open_read_only (ABI 1.2, optional): open() is used */
    NULL, /* claim (ABI 1.3): past struct_size, never read */
    NULL, NULL, NULL, /* apply_stats, load_stats, scan_stats (ABI 1.4): no policy statistics */
    NULL, NULL, NULL, /* apply_buckets, load_buckets, scan_buckets (ABI 1.5): no time buckets */
    NULL, /* changed (ABI 1.6, optional): past struct_size, never read */
};

MAB_STORAGE_DEFINE(append_log)
