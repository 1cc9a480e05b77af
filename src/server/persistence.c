#include "server/persistence.h"

#include "journal/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct persistence {
    persistence_options opt;
    journal_io timed_io; /* the real calls, with fdatasync timed into the metrics */
    char dir[1024];
    journal *j;
    uint64_t last_seq;
    uint64_t base_seq; /* the snapshot recovered from: everything up to it is on disk already */
    uint64_t commands_since_snapshot;
    int64_t last_snapshot_ns;
    unsigned char encoded[2 * sizeof(command) + 16];
    /* the snapshot writer: one snapshot in flight at a time */
    pthread_t writer;
    bool writer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    unsigned char *pending;
    size_t pending_len;
    uint64_t pending_seq;
    uint64_t started_seq; /* of the snapshot begun last (engine thread) */
    /* or a child process encoding it (periodic snapshots): the writer reads its pipe */
    pid_t pending_child;
    int pending_fd;
    bool busy;
    _Atomic uint64_t written_seq; /* the newest snapshot on disk */
    uint64_t pruned_seq;
    char writer_error[1024];
    persistence_log_hook log_hook;
    void *log_hook_ctx;
    persistence_prune_guard prune_guard;
    void *prune_guard_ctx;
};

/* ---- the command byte form ----
 * The command struct, with runs of zero bytes (the unused tails of its fixed string buffers and
 * union members) folded: a 0x00 byte is followed by the run length. A 600-byte struct typically
 * takes 60 to 120 bytes. The layout is tied to this build's struct: command_schema_id names it,
 * and the journal refuses segments of another schema. */

size_t command_encode(const command *cmd, unsigned char *out, size_t cap) {
    const unsigned char *in = (const unsigned char *)cmd;
    size_t n = sizeof *cmd, o = 0;
    for (size_t i = 0; i < n;) {
        if (o + 2 > cap) return 0;
        if (in[i] != 0) {
            out[o++] = in[i++];
            continue;
        }
        size_t run = 0;
        while (i < n && in[i] == 0 && run < 255) {
            run++;
            i++;
        }
        out[o++] = 0;
        out[o++] = (unsigned char)run;
    }
    return o;
}

int command_decode(const unsigned char *in, size_t len, command *cmd) {
    unsigned char *outp = (unsigned char *)cmd;
    size_t n = sizeof *cmd, o = 0;
    for (size_t i = 0; i < len;) {
        if (in[i] != 0) {
            if (o >= n) return -1;
            outp[o++] = in[i++];
            continue;
        }
        if (i + 1 >= len || in[i + 1] == 0 || o + in[i + 1] > n) return -1;
        memset(outp + o, 0, in[i + 1]);
        o += in[i + 1];
        i += 2;
    }
    if (o != n || cmd->type <= 0 || cmd->type >= CMD_TYPE_COUNT) return -1;
    return 0;
}

static int timed_fdatasync(void *ctx, int fd) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = fdatasync(fd);
    clock_gettime(CLOCK_MONOTONIC, &b);
    metrics_histogram_observe_ns(
        ctx, (uint64_t)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec)));
    return rc;
}

uint64_t command_schema_id(void) {
    const uint64_t parts[] = {
        1, /* bump when a command's meaning changes */
        sizeof(command),
        offsetof(command, u),
        sizeof(order_request),
        sizeof(instrument_spec),
        offsetof(order_request, volume),
        /* the number of command types of the first schema: a type added since (CMD_RISK_CONFIG)
         * fits the same layout, and older journals simply never hold it */
        CMD_RISK_CONFIG,
    };
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        h ^= parts[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---- snapshots ---- */

static int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int collect_child(pid_t child, int fd, unsigned char **out, size_t *outlen, char *err,
                         size_t errlen);

static void *snapshot_writer(void *arg) {
    persistence *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->pending == NULL && p->pending_child == 0)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->pending == NULL && p->pending_child == 0 && p->stop) break;
        unsigned char *buf = p->pending;
        size_t len = p->pending_len;
        uint64_t seq = p->pending_seq;
        pid_t child = p->pending_child;
        int fd = p->pending_fd;
        p->pending = NULL;
        p->pending_child = 0;
        pthread_mutex_unlock(&p->mu);

        char err[512] = "";
        int rc = JOURNAL_OK;
        if (child > 0 && collect_child(child, fd, &buf, &len, err, sizeof err) != 0)
            rc = JOURNAL_EFAILED;
        /* a snapshot may only stand on a durable journal: in async mode the journal can lag */
        if (rc == JOURNAL_OK) rc = journal_wait_durable(p->j, seq, -1);
        if (rc == JOURNAL_OK) rc = snapshot_write(p->dir, seq, buf, len, err, sizeof err);
        free(buf);

        pthread_mutex_lock(&p->mu);
        if (rc == 0)
            atomic_store(&p->written_seq, seq);
        else
            snprintf(p->writer_error, sizeof p->writer_error, "snapshot at %llu failed: %s",
                     (unsigned long long)seq, err[0] ? err : "journal not durable");
        p->busy = false;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Reads a snapshot a child process encoded into the pipe fd, then reaps the child. */
static int collect_child(pid_t child, int fd, unsigned char **out, size_t *outlen, char *err,
                         size_t errlen) {
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    int rc = buf ? 0 : -1;
    while (rc == 0) {
        if (len == cap) {
            unsigned char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                rc = -1;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = -1;
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (rc == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) rc = -1;
    if (rc != 0) {
        snprintf(err, errlen, "the snapshot process failed (status %d)", status);
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

/* A child process, a copy-on-write image of the engine at this instant, encodes the snapshot
 * and writes it to a pipe, so the engine thread pays a fork (tens of milliseconds for gigabytes)
 * instead of the encoding (seconds). The writer thread reads the pipe and writes the file. */
static bool snapshot_begin_forked(persistence *p, const engine *e) {
    pthread_mutex_lock(&p->mu);
    bool busy = p->busy;
    pthread_mutex_unlock(&p->mu);
    if (busy) return false;
    int fds[2];
    if (pipe(fds) != 0) return false;
    pid_t child = fork();
    if (child < 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (child == 0) { /* only this thread exists here: no malloc, no locks, no stdio, _exit */
        close(fds[0]);
        _exit(engine_snapshot_write_fd(e, fds[1]) == 0 ? 0 : 2);
    }
    close(fds[1]);
    pthread_mutex_lock(&p->mu);
    p->pending_child = child;
    p->pending_fd = fds[0];
    p->pending_seq = p->last_seq;
    p->started_seq = p->last_seq;
    p->busy = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    p->commands_since_snapshot = 0;
    p->last_snapshot_ns = monotonic_ns();
    return true;
}

/* Hands the engine's current state to the writer; false when one is still being written. */
static bool snapshot_begin(persistence *p, const engine *e) {
    pthread_mutex_lock(&p->mu);
    bool busy = p->busy;
    pthread_mutex_unlock(&p->mu);
    if (busy) return false;
    unsigned char *buf;
    size_t len;
    if (engine_snapshot_save(e, &buf, &len) != 0) return false;
    pthread_mutex_lock(&p->mu);
    p->pending = buf;
    p->pending_len = len;
    p->pending_seq = p->last_seq;
    p->started_seq = p->last_seq;
    p->busy = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    p->commands_since_snapshot = 0;
    p->last_snapshot_ns = monotonic_ns();
    return true;
}

void persistence_tick(persistence *p, const engine *e, int64_t now_ns) {
    (void)now_ns;
    uint64_t written = atomic_load(&p->written_seq);
    /* the history store may still need commands the snapshot already holds */
    if (p->prune_guard) {
        uint64_t keep = p->prune_guard(p->prune_guard_ctx);
        if (keep < written) written = keep;
    }
    if (written > p->pruned_seq) {
        char err[256];
        journal_prune(p->j, written, err, sizeof err);
        p->pruned_seq = written;
    }
    if (p->commands_since_snapshot == 0) return;
    bool by_count = p->opt.snapshot_every_commands &&
                    p->commands_since_snapshot >= p->opt.snapshot_every_commands;
    bool by_time =
        p->opt.snapshot_every_secs &&
        monotonic_ns() - p->last_snapshot_ns >= (int64_t)p->opt.snapshot_every_secs * 1000000000LL;
    if ((by_count || by_time) && !snapshot_begin_forked(p, e)) snapshot_begin(p, e);
}

int persistence_snapshot_start(persistence *p, const engine *e) {
    return snapshot_begin_forked(p, e) ? 0 : -1;
}

bool persistence_snapshot_wait(persistence *p) {
    pthread_mutex_lock(&p->mu);
    while (p->busy)
        pthread_cond_wait(&p->cv, &p->mu);
    bool ok = atomic_load(&p->written_seq) >= p->started_seq;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

int persistence_snapshot(persistence *p, const engine *e, char *err, size_t errlen) {
    pthread_mutex_lock(&p->mu);
    while (p->busy)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    if (!snapshot_begin(p, e)) {
        snprintf(err, errlen, "could not encode the snapshot");
        return -1;
    }
    pthread_mutex_lock(&p->mu);
    while (p->busy)
        pthread_cond_wait(&p->cv, &p->mu);
    bool ok = atomic_load(&p->written_seq) == p->last_seq;
    if (!ok) snprintf(err, errlen, "%s", p->writer_error);
    pthread_mutex_unlock(&p->mu);
    return ok ? 0 : -1;
}

/* ---- recovery ---- */

typedef struct replay_ctx {
    engine *e;
    uint64_t applied;
    uint64_t last_seq;
} replay_ctx;

static int replay_one(void *ctx, uint64_t seq, const void *data, size_t len) {
    replay_ctx *rc = ctx;
    command cmd;
    if (command_decode(data, len, &cmd) != 0) return 1;
    engine_result r;
    engine_apply(rc->e, &cmd, &r); /* a rejection replays as the same rejection */
    rc->applied++;
    rc->last_seq = seq;
    return 0;
}

/* Renames DIR/journal to the first free DIR/journal.before-SEQ[.N] and makes the rename
 * durable, so that a crash cannot bring the old journal back under the new one. */
static int set_aside_journal(const char *dir, uint64_t snap_seq, char *to, size_t tolen, char *err,
                             size_t errlen) {
    char from[1100];
    snprintf(from, sizeof from, "%s/journal", dir);
    for (int n = 1; n <= 1000; n++) {
        if (n == 1)
            snprintf(to, tolen, "%s/journal.before-%llu", dir, (unsigned long long)snap_seq);
        else
            snprintf(to, tolen, "%s/journal.before-%llu.%d", dir, (unsigned long long)snap_seq, n);
        struct stat st;
        if (lstat(to, &st) == 0) continue;
        if (errno != ENOENT) {
            snprintf(err, errlen, "cannot set aside %s: %s: %s", from, to, strerror(errno));
            return -1;
        }
        if (rename(from, to) != 0) {
            snprintf(err, errlen, "cannot set aside %s as %s: %s", from, to, strerror(errno));
            return -1;
        }
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) {
            snprintf(err, errlen, "cannot sync %s after setting the journal aside: %s", dir,
                     strerror(errno));
            if (fd >= 0) close(fd);
            return -1;
        }
        close(fd);
        return 0;
    }
    snprintf(err, errlen, "cannot set aside %s: journal.before-%llu.1..1000 all exist", from,
             (unsigned long long)snap_seq);
    return -1;
}

persistence *persistence_open(const persistence_options *opt, const engine_config *cfg,
                              engine **out, persistence_recovery *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    *out = NULL;
    persistence *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->opt = *opt;
    snprintf(p->dir, sizeof p->dir, "%s", opt->data_dir);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);

    /* the newest valid snapshot, or a fresh engine */
    uint64_t snap_seq = 0;
    unsigned char *bytes = NULL;
    size_t len = 0;
    char why[1024] = "";
    int found = snapshot_load_latest(p->dir, &snap_seq, &bytes, &len, why, sizeof why);
    engine *e = NULL;
    if (found == 1) {
        e = engine_snapshot_load(bytes, len, err, errlen);
        free(bytes);
        if (e == NULL) goto fail;
        info->from_snapshot = true;
        info->snapshot_seq = snap_seq;
        if (why[0]) snprintf(info->report, sizeof info->report, "%s", why);
    } else if (found < 0) {
        snprintf(err, errlen, "no usable snapshot in %s: %s", p->dir, why);
        goto fail;
    } else {
        e = engine_create(cfg);
        if (e == NULL) {
            snprintf(err, errlen, "out of memory creating the engine");
            goto fail;
        }
    }

    journal_options jo;
    journal_options_default(&jo);
    jo.schema_id = command_schema_id();
    jo.durability = opt->async_durability ? JOURNAL_ASYNC : JOURNAL_SYNC;
    if (opt->segment_size) jo.segment_size = opt->segment_size;
    jo.recover_to_corruption = opt->recover_to_corruption;
    jo.notify = opt->notify;
    jo.notify_ctx = opt->notify_ctx;
    static const journal_io timed = {.fdatasync = timed_fdatasync};
    if (opt->fsync_seconds) {
        p->timed_io = timed;
        p->timed_io.ctx = opt->fsync_seconds;
        jo.io = &p->timed_io;
    }
    journal_recovery_info ji;
    p->j = journal_open(p->dir, &jo, &ji, err, errlen);
    if (p->j == NULL) goto fail;
    /* Where the journal ends: the seq before the one it expects next. An empty journal (0)
     * accepts any first seq, so it simply continues after the snapshot. */
    uint64_t journal_next = journal_next_seq(p->j);
    if (journal_next != 0 && journal_next - 1 < snap_seq) {
        /* the journal ends before the snapshot (an async tail lost, or a journal cut by
         * --recover-to-corruption): the snapshot alone is the state; the old journal is set
         * aside and a new one continues after the snapshot */
        journal_close(p->j, NULL, 0);
        p->j = NULL;
        char to[1200];
        if (set_aside_journal(p->dir, snap_seq, to, sizeof to, err, errlen) != 0) goto fail;
        size_t used = strlen(info->report);
        snprintf(info->report + used, sizeof info->report - used,
                 "%sthe journal ended at %llu, before the snapshot at %llu: kept as %s",
                 used ? "; " : "", (unsigned long long)(journal_next - 1),
                 (unsigned long long)snap_seq, to);
        memset(&ji, 0, sizeof ji);
        p->j = journal_open(p->dir, &jo, &ji, err, errlen);
        if (p->j == NULL) goto fail;
    }
    p->base_seq = snap_seq;
    if (ji.report[0]) {
        size_t used = strlen(info->report);
        snprintf(info->report + used, sizeof info->report - used, "%s%s", used ? "; " : "",
                 ji.report);
    }
    /* the journal after the snapshot; the journal may also end before it (async mode lost an
     * unsynced tail): then the snapshot alone is the state */
    replay_ctx rc = {.e = e, .last_seq = snap_seq};
    if (ji.last_seq > snap_seq &&
        journal_replay(p->dir, snap_seq, replay_one, &rc, err, errlen) != 0) {
        if (err[0] == '\0') snprintf(err, errlen, "a journal record does not decode");
        goto fail;
    }
    info->replayed = rc.applied;
    p->last_seq = rc.last_seq > snap_seq ? rc.last_seq : snap_seq;
    if (ji.last_seq > p->last_seq) p->last_seq = ji.last_seq;
    info->last_seq = p->last_seq;
    atomic_store(&p->written_seq, snap_seq);
    p->pruned_seq = snap_seq;
    p->last_snapshot_ns = monotonic_ns();
    if (pthread_create(&p->writer, NULL, snapshot_writer, p) != 0) {
        snprintf(err, errlen, "cannot start the snapshot thread");
        goto fail;
    }
    p->writer_started = true;
    *out = e;
    return p;

fail:
    if (p->j) journal_close(p->j, NULL, 0);
    engine_destroy(e);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    return NULL;
}

int persistence_log(persistence *p, const command *cmd, uint64_t *seq, char *err, size_t errlen) {
    size_t n = command_encode(cmd, p->encoded, sizeof p->encoded);
    uint64_t next = p->last_seq + 1;
    int rc = n ? journal_append(p->j, next, p->encoded, n) : JOURNAL_ETOOBIG;
    if (rc != JOURNAL_OK) {
        const char *why = rc == JOURNAL_EFAILED ? journal_error(p->j) : NULL;
        snprintf(err, errlen, "storage unavailable, command refused: %s",
                 why ? why : "the journal could not take the record");
        return -1;
    }
    p->last_seq = next;
    p->commands_since_snapshot++;
    *seq = next;
    if (p->log_hook) p->log_hook(p->log_hook_ctx, next, cmd);
    return 0;
}

void persistence_set_log_hook(persistence *p, persistence_log_hook fn, void *ctx) {
    p->log_hook = fn;
    p->log_hook_ctx = ctx;
}

void persistence_set_prune_guard(persistence *p, persistence_prune_guard fn, void *ctx) {
    p->prune_guard = fn;
    p->prune_guard_ctx = ctx;
}

/* ---- a snapshot at or before a position (the history feed's bootstrap) ---- */

typedef struct snapshot_pick {
    uint64_t max_seq;
    uint64_t seq;
    uint64_t length;
    char path[JOURNAL_PATH_MAX];
    bool found;
} snapshot_pick;

static void pick_snapshot(void *ctx, const snapshot_report *r) {
    snapshot_pick *k = ctx;
    if (!r->ok || r->seq > k->max_seq || (k->found && r->seq < k->seq)) return;
    k->found = true;
    k->seq = r->seq;
    k->length = r->length;
    snprintf(k->path, sizeof k->path, "%s", r->path);
}

static uint32_t le32(const unsigned char *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

int persistence_snapshot_load_at_most(const char *dir, uint64_t max_seq, uint64_t *seq,
                                      unsigned char **bytes, size_t *len, char *err,
                                      size_t errlen) {
    *bytes = NULL;
    *len = 0;
    snapshot_pick k = {.max_seq = max_seq};
    if (snapshot_inspect(dir, pick_snapshot, &k, err, errlen) < 0) return -1;
    if (!k.found) return 0;
    /* checked by snapshot_inspect just now; read again and checked again, since a prune may
     * remove the file meanwhile */
    FILE *f = fopen(k.path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", k.path, strerror(errno));
        return -1;
    }
    size_t total = (size_t)k.length + SNAPSHOT_HEADER_SIZE;
    unsigned char *buf = malloc(total ? total : 1);
    size_t got = buf ? fread(buf, 1, total, f) : 0;
    fclose(f);
    if (buf == NULL || got != total ||
        crc32c(0, buf + SNAPSHOT_HEADER_SIZE, (size_t)k.length) != le32(buf + 32)) {
        free(buf);
        snprintf(err, errlen, "snapshot %s changed while it was read", k.path);
        return -1;
    }
    memmove(buf, buf + SNAPSHOT_HEADER_SIZE, (size_t)k.length);
    *bytes = buf;
    *len = (size_t)k.length;
    *seq = k.seq;
    return 1;
}

const char *persistence_dir(const persistence *p) {
    return p->dir;
}

uint64_t persistence_last_seq(const persistence *p) {
    return p->last_seq;
}

uint64_t persistence_durable_seq(const persistence *p) {
    uint64_t d = journal_durable_seq(p->j);
    return d > p->base_seq ? d : p->base_seq;
}

bool persistence_failed(persistence *p, char *why, size_t whylen) {
    journal_stats st;
    journal_get_stats(p->j, &st);
    if (st.failed && why) snprintf(why, whylen, "the journal cannot write");
    return st.failed;
}

void persistence_close(persistence *p, const engine *e) {
    if (p == NULL) return;
    char err[512];
    if (e && p->last_seq > atomic_load(&p->written_seq) &&
        persistence_snapshot(p, e, err, sizeof err) != 0)
        fprintf(stderr, "qaexchange-server: final snapshot failed: %s\n", err);
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->writer_started) pthread_join(p->writer, NULL);
    free(p->pending);
    if (journal_close(p->j, err, sizeof err) != JOURNAL_OK)
        fprintf(stderr, "qaexchange-server: journal close: %s\n", err);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
