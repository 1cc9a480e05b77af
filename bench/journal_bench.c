/* Journal benchmark: one producer appends 100-byte records with durability on (fdatasync group
 * commit unless --async), and the notify callback timestamps each record when it becomes
 * durable. Two runs:
 *
 *   full speed   N records as fast as append accepts them (back-pressure included): records/s,
 *                fdatasyncs/s, records per sync, append-to-durable latency;
 *   fixed rate   R records/s for S seconds, each sent at its scheduled time; the latency is
 *                measured from the scheduled time, so a stalled producer cannot hide a stall
 *                (no coordinated omission).
 *
 *   journal_bench [--dir DIR] [--records N] [--rate R] [--seconds S] [--size BYTES] [--async]
 *                 [--pace spin|sleep] [--keep]
 *
 * --pace: the producer spins until each record's scheduled time (default; exact, but it holds a
 * whole core, which on a 2-core machine leaves the writer one core shared with everything else)
 * or sleeps until it (clock_nanosleep, like an engine thread that waits for commands).
 *
 * DIR defaults to a fresh directory under /tmp (which must be a real disk for the numbers to
 * mean anything: on tmpfs fdatasync is free). */
#include "journal/journal.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct run {
    uint64_t first_seq, count;
    uint64_t *sent;        /* per record: when it was (scheduled to be) appended */
    uint64_t *latency;     /* per record: durable time - sent time */
    _Atomic uint64_t done; /* records with a latency so far (set by the writer thread) */
    uint64_t last_durable_ns;
} run;

static run *_Atomic current;
static bool pace_sleep; /* the producer sleeps until each record's time instead of spinning */

/* Writer thread: every record up to `durable` is durable now. */
static void on_durable(void *ctx, uint64_t durable) {
    (void)ctx;
    run *r = atomic_load(&current);
    if (r == NULL || durable < r->first_seq) return;
    uint64_t t = now_ns();
    uint64_t upto = durable - r->first_seq + 1, done = atomic_load(&r->done);
    if (upto > r->count) upto = r->count;
    if (upto <= done) return;
    for (uint64_t i = done; i < upto; i++)
        r->latency[i] = t - r->sent[i];
    r->last_durable_ns = t;
    atomic_store(&r->done, upto);
}

/* fdatasync durations, through the journal's injectable I/O: the disk's share of the latency. */
#define MAX_SYNCS (1u << 22)
static uint64_t *sync_ns;
static _Atomic uint64_t sync_count;

static int timed_fdatasync(void *ctx, int fd) {
    (void)ctx;
    uint64_t t = now_ns();
    int rc = fdatasync(fd);
    uint64_t n = atomic_fetch_add(&sync_count, 1);
    if (n < MAX_SYNCS) sync_ns[n] = now_ns() - t;
    return rc;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, uint64_t n, double p) {
    uint64_t i = (uint64_t)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1000.0; /* microseconds */
}

static void report(const char *what, uint64_t *v, uint64_t n) {
    if (n == 0) return;
    qsort(v, n, sizeof *v, cmp_u64);
    printf("  %s (us): p50 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", what, pct(v, n, 0.50),
           pct(v, n, 0.99), pct(v, n, 0.999), (double)v[n - 1] / 1000.0);
}

/* Appends `count` records starting at `first`; rate 0 means as fast as possible. */
static int run_load(journal *j, uint64_t first, uint64_t count, size_t size, double rate,
                    const char *title) {
    run r;
    memset(&r, 0, sizeof r);
    r.first_seq = first;
    r.count = count;
    r.sent = calloc(count, sizeof *r.sent);
    r.latency = calloc(count, sizeof *r.latency);
    unsigned char *payload = calloc(1, size);
    if (r.sent == NULL || r.latency == NULL || payload == NULL) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    journal_stats before, after;
    journal_get_stats(j, &before);
    uint64_t syncs_before = atomic_load(&sync_count);
    atomic_store(&current, &r);
    uint64_t t0 = now_ns();
    double interval = rate > 0 ? 1e9 / rate : 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t when = t0 + (uint64_t)((double)i * interval);
        if (rate > 0 && pace_sleep) {
            struct timespec ts = {(time_t)(when / 1000000000u), (long)(when % 1000000000u)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
                ;
        } else if (rate > 0) {
            while (now_ns() < when)
                ; /* spin */
        }
        r.sent[i] = rate > 0 ? when : now_ns();
        memcpy(payload, &i, sizeof i < size ? sizeof i : size);
        int rc = journal_append(j, first + i, payload, size);
        if (rc != JOURNAL_OK) {
            fprintf(stderr, "append %" PRIu64 ": %d %s\n", first + i, rc,
                    journal_error(j) ? journal_error(j) : "");
            return -1;
        }
    }
    uint64_t t_appended = now_ns();
    if (journal_wait_durable(j, first + count - 1, 60000) != JOURNAL_OK) {
        fprintf(stderr, "records did not become durable: %s\n",
                journal_error(j) ? journal_error(j) : "timeout");
        return -1;
    }
    /* the callback runs after the sequence is published: wait for it to have seen the end */
    while (atomic_load(&r.done) < count)
        usleep(100);
    atomic_store(&current, NULL);
    journal_get_stats(j, &after);
    double secs = (double)(r.last_durable_ns - t0) / 1e9;
    uint64_t syncs = after.syncs - before.syncs, writes = after.writes - before.writes;
    printf("%s\n", title);
    printf("  %" PRIu64 " records of %zu bytes in %.3f s (appends took %.3f s): %.0f records/s\n",
           count, size, secs, (double)(t_appended - t0) / 1e9, (double)count / secs);
    printf("  %" PRIu64 " fdatasyncs (%.0f/s), %" PRIu64 " writes, %.1f records per sync\n", syncs,
           (double)syncs / secs, writes, syncs ? (double)count / (double)syncs : 0.0);
    report("append-to-durable latency", r.latency, count);
    uint64_t s1 = atomic_load(&sync_count);
    if (s1 > MAX_SYNCS) s1 = MAX_SYNCS;
    if (s1 > syncs_before)
        report("fdatasync duration       ", sync_ns + syncs_before, s1 - syncs_before);
    free(r.sent);
    free(r.latency);
    free(payload);
    return 0;
}

static void rm_journal_dir(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    char dir[1024] = "";
    uint64_t records = 1000000, seconds = 5;
    double rate = 50000;
    size_t size = 100;
    bool async = false, keep = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--dir") == 0 && v) {
            snprintf(dir, sizeof dir, "%s", v);
            i++;
        } else if (strcmp(a, "--records") == 0 && v) {
            records = strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--rate") == 0 && v) {
            rate = strtod(v, NULL);
            i++;
        } else if (strcmp(a, "--seconds") == 0 && v) {
            seconds = strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--size") == 0 && v) {
            size = strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--async") == 0) {
            async = true;
        } else if (strcmp(a, "--pace") == 0 && v) {
            pace_sleep = strcmp(v, "sleep") == 0;
            i++;
        } else if (strcmp(a, "--keep") == 0) {
            keep = true;
        } else {
            fprintf(stderr,
                    "usage: journal_bench [--dir DIR] [--records N] [--rate R] [--seconds S] "
                    "[--size BYTES] [--async] [--pace spin|sleep] [--keep]\n");
            return 2;
        }
    }
    bool made = false;
    if (dir[0] == '\0') {
        snprintf(dir, sizeof dir, "/tmp/qaex_journal_bench_XXXXXX");
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        made = true;
    }
    sync_ns = calloc(MAX_SYNCS, sizeof *sync_ns);
    if (sync_ns == NULL) return 1;
    journal_io io = {.fdatasync = timed_fdatasync};
    journal_options o;
    journal_options_default(&o);
    o.io = &io;
    o.schema_id = 0xBE7C4;
    o.durability = async ? JOURNAL_ASYNC : JOURNAL_SYNC;
    o.notify = on_durable;
    char err[JOURNAL_MSG_MAX];
    journal_recovery_info info;
    journal *j = journal_open(dir, &o, &info, err, sizeof err);
    if (j == NULL) {
        fprintf(stderr, "journal_open: %s\n", err);
        return 1;
    }
    uint64_t next = info.last_seq + 1;
    printf("journal bench: %s, durability %s, segment %" PRIu64
           " MiB, backlog limit %zu MiB, pacing %s\n",
           dir, async ? "async" : "sync (fdatasync group commit)", o.segment_size >> 20,
           o.max_pending_bytes >> 20, pace_sleep ? "sleep" : "spin");
    int rc = run_load(j, next, records, size, 0, "full speed:");
    next += records;
    if (rc == 0 && rate > 0 && seconds > 0) {
        char title[64];
        snprintf(title, sizeof title, "fixed rate %.0f records/s:", rate);
        rc = run_load(j, next, (uint64_t)(rate * (double)seconds), size, rate, title);
    }
    if (journal_close(j, err, sizeof err) != JOURNAL_OK) {
        fprintf(stderr, "journal_close: %s\n", err);
        rc = -1;
    }
    if (made && !keep) rm_journal_dir(dir);
    return rc == 0 ? 0 : 1;
}
