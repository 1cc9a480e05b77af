/* The journal: segment files, group commit on a writer thread, failure and retry, recovery,
 * replay, snapshots and pruning. The format and the contract are in journal.h.
 *
 * Memory. The producer appends framed records to `in`. The writer takes `in` whole (swapping it
 * with its own empty buffer `w`, so the bytes are never copied twice), writes w[wpos..] and, once
 * fdatasync succeeded, forgets w. Until then w holds every byte not known to be on disk, which is
 * what a retry writes again after the segment was cut back to its last synced byte. The backlog
 * (in + the unsynced part of w) is bounded by max_pending_bytes.
 *
 * Durability order. A new segment's header is synced and its directory entry made durable
 * (fsync of DIR/journal) before any record goes into it; an old segment is synced before the
 * writer moves to the next one, so only the last segment can ever have a torn tail. */
#include "journal/journal.h"
#include "journal/crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEGMENT_MAGIC "QAEXWAL1"
#define SNAPSHOT_MAGIC "QAEXSNP1"
#define MAGIC_LEN 8
#define MIN_SEGMENT_SIZE 4096u
#define MIN_PENDING 1024u
/* Reading never trusts a length beyond this, whatever the options. */
#define SCAN_MAX_RECORD (1u << 30)

/* ---- small helpers ---- */

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p) {
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* strerror that is safe on any thread (the XSI strerror_r of _POSIX_C_SOURCE). */
static const char *errno_text(int e, char *buf, size_t len) {
    if (strerror_r(e, buf, len) != 0) snprintf(buf, len, "error %d", e);
    return buf;
}

/* "No space left on device (errno 28)" */
#define ERRNO_FMT "%s (errno %d)"
#define ERRNO_ARGS(e, buf) errno_text((e), (buf), sizeof(buf)), (e)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timespec deadline_ns(uint64_t t) {
    struct timespec ts;
    ts.tv_sec = (time_t)(t / 1000000000u);
    ts.tv_nsec = (long)(t % 1000000000u);
    return ts;
}

static bool parse_seq_name(const char *name, const char *prefix, const char *suffix,
                           uint64_t *seq) {
    size_t pl = strlen(prefix), sl = strlen(suffix), nl = strlen(name);
    if (nl != pl + 20 + sl || strncmp(name, prefix, pl) != 0 || strcmp(name + pl + 20, suffix) != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < 20; i++) {
        char c = name[pl + i];
        if (c < '0' || c > '9') return false;
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *seq = v;
    return true;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sequence numbers in the names of DIR's files "<prefix><20 digits><suffix>", ascending.
 * A missing directory is an empty list. */
static int list_seq_files(const char *dir, const char *prefix, const char *suffix, uint64_t **out,
                          size_t *count, char *err, size_t errlen) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT) return 0;
        char eb[128];
        set_err(err, errlen, "cannot read directory %s: " ERRNO_FMT, dir, ERRNO_ARGS(errno, eb));
        return -1;
    }
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;
        if (!parse_seq_name(de->d_name, prefix, suffix, &seq)) continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, ncap * sizeof *nv);
            if (nv == NULL) {
                free(v);
                closedir(d);
                set_err(err, errlen, "out of memory listing %s", dir);
                return -1;
            }
            v = nv;
            cap = ncap;
        }
        v[n++] = seq;
    }
    closedir(d);
    if (n > 1) qsort(v, n, sizeof *v, cmp_u64);
    *out = v;
    *count = n;
    return 0;
}

/* ---- the system calls, injectable ---- */

static int real_open(void *c, const char *path, int flags, mode_t mode) {
    (void)c;
    return open(path, flags, mode);
}
static int real_close(void *c, int fd) {
    (void)c;
    return close(fd);
}
static ssize_t real_read(void *c, int fd, void *buf, size_t len) {
    (void)c;
    return read(fd, buf, len);
}
static ssize_t real_write(void *c, int fd, const void *buf, size_t len) {
    (void)c;
    return write(fd, buf, len);
}
static int real_fdatasync(void *c, int fd) {
    (void)c;
    return fdatasync(fd);
}
static int real_fsync(void *c, int fd) {
    (void)c;
    return fsync(fd);
}
static int real_ftruncate(void *c, int fd, off_t len) {
    (void)c;
    return ftruncate(fd, len);
}
static int real_unlink(void *c, const char *path) {
    (void)c;
    return unlink(path);
}
static int real_rename(void *c, const char *from, const char *to) {
    (void)c;
    return rename(from, to);
}

static const journal_io default_io = {NULL,        real_open,      real_close, real_read,
                                      real_write,  real_fdatasync, real_fsync, real_ftruncate,
                                      real_unlink, real_rename};

static void io_fill(journal_io *out, const journal_io *in) {
    *out = default_io;
    if (in == NULL) return;
    out->ctx = in->ctx;
#define IO_TAKE(f)                                                                                 \
    if (in->f) out->f = in->f
    IO_TAKE(open);
    IO_TAKE(close);
    IO_TAKE(read);
    IO_TAKE(write);
    IO_TAKE(fdatasync);
    IO_TAKE(fsync);
    IO_TAKE(ftruncate);
    IO_TAKE(unlink);
    IO_TAKE(rename);
#undef IO_TAKE
}

static int io_write_all(const journal_io *io, int fd, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n > 0) {
        ssize_t w = io->write(io->ctx, fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int io_fdatasync(const journal_io *io, int fd) {
    int rc;
    do
        rc = io->fdatasync(io->ctx, fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

static int io_fsync(const journal_io *io, int fd) {
    int rc;
    do
        rc = io->fsync(io->ctx, fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

/* Makes the entries of directory `path` durable. */
static int io_fsync_dir(const journal_io *io, const char *path) {
    int fd = io->open(io->ctx, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return -1;
    int rc = io_fsync(io, fd);
    int saved = errno;
    io->close(io->ctx, fd);
    errno = saved;
    return rc;
}

/* Reads a whole file into a malloc'd buffer. */
static int io_read_file(const journal_io *io, const char *path, unsigned char **out, size_t *len,
                        char *err, size_t errlen) {
    char eb[128];
    *out = NULL;
    *len = 0;
    int fd = io->open(io->ctx, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errlen, "cannot open %s: " ERRNO_FMT, path, ERRNO_ARGS(errno, eb));
        return -1;
    }
    struct stat st;
    size_t cap = 1 << 16;
    if (fstat(fd, &st) == 0 && st.st_size > 0) cap = (size_t)st.st_size + 1;
    unsigned char *buf = malloc(cap);
    size_t n = 0;
    for (;;) {
        if (buf == NULL) {
            io->close(io->ctx, fd);
            set_err(err, errlen, "out of memory reading %s", path);
            return -1;
        }
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (nb == NULL) free(buf);
            buf = nb;
            cap *= 2;
            continue;
        }
        ssize_t r = io->read(io->ctx, fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            io->close(io->ctx, fd);
            set_err(err, errlen, "cannot read %s: " ERRNO_FMT, path, ERRNO_ARGS(e, eb));
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    io->close(io->ctx, fd);
    *out = buf;
    *len = n;
    return 0;
}

/* mkdir -p; fsyncs the parent of every directory it creates. */
static int make_dirs(const journal_io *io, const char *path, char *err, size_t errlen) {
    char buf[JOURNAL_PATH_MAX], eb[128];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        set_err(err, errlen, "bad directory path \"%s\"", path);
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) == 0) {
            char parent[JOURNAL_PATH_MAX];
            memcpy(parent, buf, i + 1);
            char *slash = strrchr(parent, '/');
            if (slash == parent)
                parent[1] = '\0';
            else if (slash != NULL)
                *slash = '\0';
            else
                strcpy(parent, ".");
            if (io_fsync_dir(io, parent) != 0) {
                set_err(err, errlen, "cannot sync directory %s: " ERRNO_FMT, parent,
                        ERRNO_ARGS(errno, eb));
                return -1;
            }
        } else if (errno != EEXIST) {
            set_err(err, errlen, "cannot create directory %s: " ERRNO_FMT, buf,
                    ERRNO_ARGS(errno, eb));
            return -1;
        }
        buf[i] = saved;
    }
    return 0;
}

static int join_path(char *out, size_t outlen, const char *dir, const char *name, char *err,
                     size_t errlen) {
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= outlen) {
        set_err(err, errlen, "path too long: %s/%s", dir, name);
        return -1;
    }
    return 0;
}

static void segment_name(char *out, size_t len, uint64_t seq) {
    snprintf(out, len, "%020llu.wal", (unsigned long long)seq);
}

static void snapshot_name(char *out, size_t len, uint64_t seq) {
    snprintf(out, len, "snapshot-%020llu.bin", (unsigned long long)seq);
}

/* ---- reading segments ---- */

typedef enum scan_problem {
    SP_NONE = 0,
    SP_HEADER_TORN,    /* shorter than a header, or an all-zero header */
    SP_HEADER_BAD,     /* bad magic, header checksum, or a header that contradicts the name */
    SP_HEADER_REFUSED, /* another format version or schema: never cut */
    SP_SEGMENT_GAP,    /* the segment does not continue the previous one */
    SP_PARTIAL,        /* the file ends inside a record */
    SP_BAD_LENGTH,     /* an impossible length */
    SP_BAD_CRC,
    SP_SEQ, /* a record with a valid checksum and the wrong sequence number */
} scan_problem;

typedef struct scan_params {
    uint64_t name_seq;
    uint64_t expected_first; /* 0: any */
    bool check_schema;
    uint64_t schema_id;
    uint64_t from_seq; /* deliver records with seq > from_seq */
    journal_record_fn fn;
    void *ctx;
} scan_params;

typedef struct scan_result {
    scan_problem problem;
    int stopped; /* the callback's non-zero value */
    uint64_t offset;
    uint64_t valid_end;
    uint64_t records, first_seq, last_seq;
    uint64_t header_first_seq; /* 0 when the header is unusable */
    uint64_t schema_id;
    uint32_t version;
    char msg[JOURNAL_MSG_MAX];
} scan_result;

static void scan_fail(scan_result *r, scan_problem p, uint64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void scan_fail(scan_result *r, scan_problem p, uint64_t offset, const char *fmt, ...) {
    r->problem = p;
    r->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

static bool all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0) return false;
    return true;
}

/* Walks one segment image; stops at the first problem or when the callback says so. */
static void scan_segment(const unsigned char *buf, size_t len, const scan_params *sp,
                         scan_result *r) {
    memset(r, 0, sizeof *r);
    if (len < JOURNAL_SEGMENT_HEADER_SIZE || all_zero(buf, JOURNAL_SEGMENT_HEADER_SIZE)) {
        if (len < JOURNAL_SEGMENT_HEADER_SIZE)
            scan_fail(r, SP_HEADER_TORN, 0, "file ends inside the segment header (%zu of %d bytes)",
                      len, JOURNAL_SEGMENT_HEADER_SIZE);
        else
            scan_fail(r, SP_HEADER_TORN, 0, "segment header is all zeros");
        return;
    }
    if (memcmp(buf, SEGMENT_MAGIC, MAGIC_LEN) != 0) {
        scan_fail(r, SP_HEADER_BAD, 0, "not a journal segment (bad magic)");
        return;
    }
    uint32_t hcrc = crc32c(0, buf, 32);
    if (get32(buf + 32) != hcrc) {
        scan_fail(r, SP_HEADER_BAD, 32,
                  "segment header checksum mismatch (stored %08x, computed %08x)", get32(buf + 32),
                  hcrc);
        return;
    }
    r->version = get32(buf + 8);
    r->schema_id = get64(buf + 16);
    if (r->version != JOURNAL_FORMAT_VERSION) {
        scan_fail(r, SP_HEADER_REFUSED, 8,
                  "journal format version %u, this binary reads version %d", r->version,
                  JOURNAL_FORMAT_VERSION);
        return;
    }
    if (get32(buf + 12) != JOURNAL_SEGMENT_HEADER_SIZE) {
        scan_fail(r, SP_HEADER_BAD, 12, "segment header size %u, expected %d", get32(buf + 12),
                  JOURNAL_SEGMENT_HEADER_SIZE);
        return;
    }
    if (sp->check_schema && r->schema_id != sp->schema_id) {
        scan_fail(r, SP_HEADER_REFUSED, 16,
                  "schema id %016llx, this binary's records have schema id %016llx (written by a "
                  "build with another command layout)",
                  (unsigned long long)r->schema_id, (unsigned long long)sp->schema_id);
        return;
    }
    uint64_t first = get64(buf + 24);
    if (first == 0 || first != sp->name_seq) {
        scan_fail(r, SP_HEADER_BAD, 24, "header says first seq %llu, file name says %llu",
                  (unsigned long long)first, (unsigned long long)sp->name_seq);
        return;
    }
    r->header_first_seq = first;
    r->valid_end = JOURNAL_SEGMENT_HEADER_SIZE;
    if (sp->expected_first != 0 && first != sp->expected_first) {
        scan_fail(r, SP_SEGMENT_GAP, 24,
                  "sequence gap: segment starts at seq %llu, the previous segment ends at seq %llu",
                  (unsigned long long)first, (unsigned long long)(sp->expected_first - 1));
        return;
    }
    uint64_t expect = first;
    size_t off = JOURNAL_SEGMENT_HEADER_SIZE;
    while (off < len) {
        size_t left = len - off;
        if (left < JOURNAL_RECORD_HEADER_SIZE) {
            scan_fail(r, SP_PARTIAL, off, "file ends inside a record header (%zu of %d bytes)",
                      left, JOURNAL_RECORD_HEADER_SIZE);
            return;
        }
        uint32_t plen = get32(buf + off);
        uint32_t stored = get32(buf + off + 4);
        uint64_t seq = get64(buf + off + 8);
        if (plen > SCAN_MAX_RECORD) {
            scan_fail(r, SP_BAD_LENGTH, off, "impossible record length %u", plen);
            return;
        }
        if (plen > left - JOURNAL_RECORD_HEADER_SIZE) {
            scan_fail(r, SP_PARTIAL, off,
                      "file ends inside a record (%zu of %u payload bytes present)",
                      left - JOURNAL_RECORD_HEADER_SIZE, plen);
            return;
        }
        uint32_t computed = crc32c(0, buf + off + 8, 8 + (size_t)plen);
        if (computed != stored) {
            scan_fail(r, SP_BAD_CRC, off,
                      "record checksum mismatch (stored %08x, computed %08x, length %u)", stored,
                      computed, plen);
            return;
        }
        if (seq != expect) {
            scan_fail(r, SP_SEQ, off, "sequence gap: record has seq %llu, expected seq %llu",
                      (unsigned long long)seq, (unsigned long long)expect);
            return;
        }
        r->records++;
        if (r->first_seq == 0) r->first_seq = seq;
        r->last_seq = seq;
        off += JOURNAL_RECORD_HEADER_SIZE + (size_t)plen;
        r->valid_end = off;
        expect++;
        if (sp->fn != NULL && seq > sp->from_seq) {
            int rc = sp->fn(sp->ctx, seq, buf + off - plen, plen);
            if (rc != 0) {
                r->stopped = rc;
                return;
            }
        }
    }
}

/* The offset of the first checksum-valid record at or after `start` whose sequence number could
 * follow `last_seq`, or -1. This is what tells a torn tail (nothing valid after the damage) from
 * corruption in the middle (valid records after it). */
static long long find_valid_after(const unsigned char *buf, size_t len, size_t start,
                                  uint64_t last_seq) {
    if (len < JOURNAL_RECORD_HEADER_SIZE) return -1;
    uint64_t max_ahead = (len - start) / JOURNAL_RECORD_HEADER_SIZE + 1;
    for (size_t p = start; p + JOURNAL_RECORD_HEADER_SIZE <= len; p++) {
        uint32_t plen = get32(buf + p);
        if (plen > len - p - JOURNAL_RECORD_HEADER_SIZE) continue;
        uint64_t seq = get64(buf + p + 8);
        if (seq <= last_seq || seq - last_seq > max_ahead) continue;
        if (crc32c(0, buf + p + 8, 8 + (size_t)plen) == get32(buf + p + 4)) return (long long)p;
    }
    return -1;
}

/* Checksum-valid records from `start` on (what recover_to_corruption discards). */
static uint64_t count_valid_after(const unsigned char *buf, size_t len, size_t start,
                                  uint64_t last_seq) {
    uint64_t n = 0;
    long long p;
    while ((p = find_valid_after(buf, len, start, last_seq)) >= 0) {
        n++;
        last_seq = get64(buf + p + 8);
        start = (size_t)p + JOURNAL_RECORD_HEADER_SIZE + get32(buf + p);
    }
    return n;
}

static bool problem_is_header(scan_problem p) {
    return p == SP_HEADER_TORN || p == SP_HEADER_BAD;
}

/* True when the problem found in the LAST segment is a torn tail: damage a crash can leave
 * (never a valid record with a wrong sequence number) with nothing valid after it. */
static bool is_torn_tail(const unsigned char *buf, size_t len, const scan_result *r,
                         uint64_t last_good) {
    switch (r->problem) {
        case SP_HEADER_TORN:
            return len <= JOURNAL_SEGMENT_HEADER_SIZE ||
                   find_valid_after(buf, len, JOURNAL_SEGMENT_HEADER_SIZE, last_good) < 0;
        case SP_PARTIAL:
        case SP_BAD_LENGTH:
        case SP_BAD_CRC:
            return find_valid_after(buf, len, (size_t)r->offset + 1, last_good) < 0;
        default:
            return false;
    }
}

/* ---- the journal ---- */

typedef struct jbuf {
    unsigned char *data;
    size_t len, cap;
} jbuf;

static int jbuf_reserve(jbuf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < b->len + extra)
        cap *= 2;
    unsigned char *nd = realloc(b->data, cap);
    if (nd == NULL) return -1;
    b->data = nd;
    b->cap = cap;
    return 0;
}

typedef struct segment_state {
    bool active; /* a segment exists whose synced part is trusted (fd may need reopening) */
    int fd;
    uint64_t first_seq;
    uint64_t size;        /* bytes written into it, as far as we know */
    uint64_t synced_size; /* bytes known durable */
    uint64_t records, synced_records;
    char path[JOURNAL_PATH_MAX];
} segment_state;

struct journal {
    char dir[JOURNAL_PATH_MAX];
    char jdir[JOURNAL_PATH_MAX];
    journal_options opt;
    journal_io io;

    /* owner thread */
    _Atomic uint64_t next_seq; /* 0: any (empty journal); written by the owner thread only */
    char err_copy[JOURNAL_MSG_MAX];

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t work_cond;    /* the writer waits for work or a retry */
    pthread_cond_t space_cond;   /* the producer waits for backlog space */
    pthread_cond_t durable_cond; /* durability waiters and journal_retry */
    jbuf in;
    size_t pending; /* in.len + unsynced part of w */
    bool writer_idle;
    bool producer_waiting;
    int durable_waiters;
    bool stop;
    bool failed;
    char errmsg[JOURNAL_MSG_MAX];
    uint64_t retry_req, retry_done;
    uint64_t *segs; /* first seqs of the segment files, ascending; the last is the active one */
    size_t nsegs, segcap;

    _Atomic uint64_t durable_seq;
    _Atomic uint64_t st_records, st_bytes, st_writes, st_syncs, st_segments;

    /* writer thread */
    pthread_t thread;
    bool thread_started;
    jbuf w;
    size_t wpos;       /* written up to here */
    size_t synced_pos; /* durable up to here */
    uint64_t written_seq, synced_seq;
    uint64_t last_sync_ns;
    segment_state seg;
    char werr[JOURNAL_MSG_MAX];
    int dir_fd;
};

void journal_options_default(journal_options *o) {
    memset(o, 0, sizeof *o);
    o->durability = JOURNAL_SYNC;
    o->segment_size = 64ull << 20;
    o->max_pending_bytes = 32u << 20;
    o->max_record_size = 16u << 20;
    o->async_fsync_interval_ms = 100;
    o->retry_interval_ms = 1000;
}

static void writer_error(journal *j, const char *op, const char *path, int e) {
    char eb[128];
    set_err(j->werr, sizeof j->werr, "journal: %s %s: " ERRNO_FMT, op, path, ERRNO_ARGS(e, eb));
}

static void publish_durable(journal *j, uint64_t seq) {
    if (seq > atomic_load_explicit(&j->durable_seq, memory_order_relaxed))
        atomic_store_explicit(&j->durable_seq, seq, memory_order_release);
}

/* fdatasync of the active segment; on success everything written is durable. */
static int writer_sync(journal *j) {
    if (j->seg.active && j->seg.size > j->seg.synced_size) {
        if (io_fdatasync(&j->io, j->seg.fd) != 0) {
            writer_error(j, "fdatasync", j->seg.path, errno);
            return -1;
        }
        atomic_fetch_add_explicit(&j->st_syncs, 1, memory_order_relaxed);
        j->seg.synced_size = j->seg.size;
        j->seg.synced_records = j->seg.records;
    }
    j->synced_pos = j->wpos;
    j->synced_seq = j->written_seq;
    j->last_sync_ns = now_ns();
    if (j->wpos == j->w.len) j->w.len = j->wpos = j->synced_pos = 0;
    publish_durable(j, j->synced_seq);
    return 0;
}

/* Creates segment `first_seq`: header written and synced, directory entry durable. */
static int segment_create(journal *j, uint64_t first_seq) {
    segment_state *s = &j->seg;
    char name[64];
    segment_name(name, sizeof name, first_seq);
    if (join_path(s->path, sizeof s->path, j->jdir, name, j->werr, sizeof j->werr) != 0) return -1;
    unsigned char h[JOURNAL_SEGMENT_HEADER_SIZE] = {0};
    memcpy(h, SEGMENT_MAGIC, MAGIC_LEN);
    put32(h + 8, JOURNAL_FORMAT_VERSION);
    put32(h + 12, JOURNAL_SEGMENT_HEADER_SIZE);
    put64(h + 16, j->opt.schema_id);
    put64(h + 24, first_seq);
    put32(h + 32, crc32c(0, h, 32));
    int fd =
        j->io.open(j->io.ctx, s->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        writer_error(j, "create", s->path, errno);
        return -1;
    }
    const char *op = NULL;
    if (io_write_all(&j->io, fd, h, sizeof h) != 0)
        op = "write header of";
    else if (io_fdatasync(&j->io, fd) != 0)
        op = "fdatasync";
    else if (io_fsync(&j->io, j->dir_fd) != 0)
        op = "fsync directory for";
    if (op != NULL) {
        writer_error(j, op, s->path, errno);
        j->io.close(j->io.ctx, fd);
        return -1;
    }
    s->active = true;
    s->fd = fd;
    s->first_seq = first_seq;
    s->size = s->synced_size = JOURNAL_SEGMENT_HEADER_SIZE;
    s->records = s->synced_records = 0;
    atomic_fetch_add_explicit(&j->st_segments, 1, memory_order_relaxed);
    pthread_mutex_lock(&j->mu);
    if (j->nsegs == j->segcap) {
        size_t ncap = j->segcap ? j->segcap * 2 : 16;
        uint64_t *ns = realloc(j->segs, ncap * sizeof *ns);
        if (ns != NULL) {
            j->segs = ns;
            j->segcap = ncap;
        }
    }
    /* Without room the list only forgets a segment prune could delete; nothing is lost. */
    if (j->nsegs < j->segcap) j->segs[j->nsegs++] = first_seq;
    pthread_mutex_unlock(&j->mu);
    return 0;
}

/* Writes w[wpos..], moving to a new segment whenever the current one has reached segment_size.
 * The old segment is synced before the move, so the records in it become durable there. */
static int writer_write(journal *j) {
    while (j->wpos < j->w.len) {
        const unsigned char *rec = j->w.data + j->wpos;
        if (j->seg.active && j->seg.records > 0 && j->seg.size >= j->opt.segment_size) {
            if (writer_sync(j) != 0) return -1;
            j->io.close(j->io.ctx, j->seg.fd);
            j->seg.fd = -1;
            j->seg.active = false;
        }
        if (!j->seg.active && segment_create(j, get64(rec + 8)) != 0) return -1;
        size_t end = j->wpos;
        uint64_t size = j->seg.size, n = 0, last = 0;
        while (end < j->w.len && size < j->opt.segment_size) {
            size_t r = JOURNAL_RECORD_HEADER_SIZE + get32(j->w.data + end);
            last = get64(j->w.data + end + 8);
            end += r;
            size += r;
            n++;
        }
        if (io_write_all(&j->io, j->seg.fd, rec, end - j->wpos) != 0) {
            writer_error(j, "write", j->seg.path, errno);
            return -1;
        }
        atomic_fetch_add_explicit(&j->st_writes, 1, memory_order_relaxed);
        j->seg.size = size;
        j->seg.records += n;
        j->wpos = end;
        j->written_seq = last;
    }
    return 0;
}

/* Before a retry: reopen the active segment, cut it back to its last synced byte and rewind the
 * batch to the first unsynced record. Whatever the failed calls left in the file is gone, and
 * after fsync failed the page cache is not trusted either: everything unsynced is written again. */
static int writer_prepare_retry(journal *j) {
    segment_state *s = &j->seg;
    if (s->active) {
        if (s->fd >= 0) j->io.close(j->io.ctx, s->fd);
        s->fd = j->io.open(j->io.ctx, s->path, O_WRONLY | O_APPEND | O_CLOEXEC, 0);
        if (s->fd < 0) {
            writer_error(j, "reopen", s->path, errno);
            return -1;
        }
        if (j->io.ftruncate(j->io.ctx, s->fd, (off_t)s->synced_size) != 0) {
            writer_error(j, "ftruncate", s->path, errno);
            return -1;
        }
        s->size = s->synced_size;
        s->records = s->synced_records;
    }
    j->wpos = j->synced_pos;
    j->written_seq = j->synced_seq;
    return 0;
}

static bool writer_has_unsynced(const journal *j) {
    return j->w.len > j->synced_pos;
}

/* Tells the durability waiters and the notify callback what changed since the last call. */
static void writer_announce(journal *j, uint64_t *notified, bool *notified_failed) {
    pthread_mutex_lock(&j->mu);
    if (j->durable_waiters > 0) pthread_cond_broadcast(&j->durable_cond);
    bool failed_now = j->failed;
    pthread_mutex_unlock(&j->mu);
    uint64_t d = atomic_load_explicit(&j->durable_seq, memory_order_acquire);
    if (j->opt.notify != NULL && (d != *notified || failed_now != *notified_failed))
        j->opt.notify(j->opt.notify_ctx, d);
    *notified = d;
    *notified_failed = failed_now;
}

/* The writer: wait for a batch (or the async sync timer, or a retry), write it, sync it, publish.
 * Everything appended while a cycle runs forms the next batch: that is the group commit. */
static void *writer_main(void *arg) {
    journal *j = arg;
    uint64_t interval_ns = (uint64_t)j->opt.async_fsync_interval_ms * 1000000u;
    uint64_t retry_ns = (uint64_t)j->opt.retry_interval_ms * 1000000u;
    uint64_t next_retry = 0;
    uint64_t notified = atomic_load(&j->durable_seq);
    bool notified_failed = false;
    bool async = j->opt.durability == JOURNAL_ASYNC;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        bool retrying = false, want_sync = false;
        uint64_t retry_gen = 0;
        for (;;) {
            uint64_t now = now_ns();
            if (j->failed) {
                if (j->stop) goto out;
                if (j->retry_req != j->retry_done || (retry_ns > 0 && now >= next_retry)) {
                    retrying = true;
                    retry_gen = j->retry_req;
                    break;
                }
                if (retry_ns > 0) {
                    struct timespec ts = deadline_ns(next_retry);
                    pthread_cond_timedwait(&j->work_cond, &j->mu, &ts);
                } else {
                    pthread_cond_wait(&j->work_cond, &j->mu);
                }
                continue;
            }
            if (j->in.len > 0) break;
            if (writer_has_unsynced(j)) {
                if (j->stop || j->producer_waiting || now >= j->last_sync_ns + interval_ns) break;
                struct timespec ts = deadline_ns(j->last_sync_ns + interval_ns);
                j->writer_idle = true;
                pthread_cond_timedwait(&j->work_cond, &j->mu, &ts);
                j->writer_idle = false;
                continue;
            }
            if (j->stop) goto out;
            j->writer_idle = true;
            pthread_cond_wait(&j->work_cond, &j->mu);
            j->writer_idle = false;
        }
        /* Take the batch: a swap when nothing is left over, else a copy after the leftover. */
        if (j->in.len > 0) {
            if (j->w.len == 0) {
                jbuf t = j->w;
                j->w = j->in;
                j->in = t;
                j->in.len = 0;
                j->wpos = j->synced_pos = 0;
            } else if (jbuf_reserve(&j->w, j->in.len) == 0) {
                memcpy(j->w.data + j->w.len, j->in.data, j->in.len);
                j->w.len += j->in.len;
                j->in.len = 0;
            }
        }
        want_sync = !async || j->stop || j->producer_waiting;
        pthread_mutex_unlock(&j->mu);

        int rc = 0;
        if (retrying) rc = writer_prepare_retry(j);
        if (rc == 0) rc = writer_write(j);
        if (rc == 0 && async) {
            /* Async: written is enough; announce before a periodic sync can hold us up. */
            publish_durable(j, j->written_seq);
            writer_announce(j, &notified, &notified_failed);
            want_sync = want_sync || now_ns() >= j->last_sync_ns + interval_ns ||
                        j->w.len - j->synced_pos >= j->opt.max_pending_bytes / 2;
        }
        if (rc == 0 && want_sync) rc = writer_sync(j);

        pthread_mutex_lock(&j->mu);
        if (rc != 0) {
            memcpy(j->errmsg, j->werr, sizeof j->errmsg); /* the latest reason */
            j->failed = true;
            next_retry = now_ns() + retry_ns;
        } else if (retrying) {
            j->failed = false;
            j->errmsg[0] = '\0';
        }
        if (retrying) j->retry_done = retry_gen;
        j->pending = j->in.len + (j->w.len - j->synced_pos);
        if (j->producer_waiting) pthread_cond_broadcast(&j->space_cond);
        pthread_mutex_unlock(&j->mu);
        writer_announce(j, &notified, &notified_failed);
        pthread_mutex_lock(&j->mu);
    }
out:
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---- recovery ---- */

/* Moves a file aside to <path>.discarded (never deletes what recovery cuts). */
static int set_aside(const journal_io *io, const char *path, char *err, size_t errlen) {
    char to[JOURNAL_PATH_MAX + 16], eb[128];
    snprintf(to, sizeof to, "%s.discarded", path);
    if (io->rename(io->ctx, path, to) != 0) {
        set_err(err, errlen, "cannot rename %s: " ERRNO_FMT, path, ERRNO_ARGS(errno, eb));
        return -1;
    }
    return 0;
}

/* Cuts `path` at `offset`, keeping the cut bytes in <path>.discarded-at-<offset> when asked. */
static int cut_file(const journal_io *io, const char *path, const unsigned char *buf, size_t len,
                    uint64_t offset, bool keep, char *err, size_t errlen) {
    char eb[128];
    if (keep && offset < len) {
        char aside[JOURNAL_PATH_MAX + 48];
        snprintf(aside, sizeof aside, "%s.discarded-at-%llu", path, (unsigned long long)offset);
        int afd = io->open(io->ctx, aside, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (afd < 0 || io_write_all(io, afd, buf + offset, len - (size_t)offset) != 0 ||
            io_fsync(io, afd) != 0) {
            int e = errno;
            if (afd >= 0) io->close(io->ctx, afd);
            set_err(err, errlen, "cannot save the discarded bytes to %s: " ERRNO_FMT, aside,
                    ERRNO_ARGS(e, eb));
            return -1;
        }
        io->close(io->ctx, afd);
    }
    int fd = io->open(io->ctx, path, O_WRONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errlen, "cannot open %s to truncate it: " ERRNO_FMT, path,
                ERRNO_ARGS(errno, eb));
        return -1;
    }
    if (io->ftruncate(io->ctx, fd, (off_t)offset) != 0 || io_fsync(io, fd) != 0) {
        int e = errno;
        io->close(io->ctx, fd);
        set_err(err, errlen, "cannot truncate %s at byte %llu: " ERRNO_FMT, path,
                (unsigned long long)offset, ERRNO_ARGS(e, eb));
        return -1;
    }
    io->close(io->ctx, fd);
    return 0;
}

/* Reads every segment, cuts a torn tail (or, if allowed, corruption) and leaves the journal
 * ready to append after the last valid record. */
static int journal_recover(journal *j, uint64_t *segs, size_t n, journal_recovery_info *info,
                           char *err, size_t errlen) {
    const journal_io *io = &j->io;
    uint64_t prev_last = 0; /* the last seq so far (records, or an empty segment's first - 1) */
    bool have_prev = false;
    size_t kept = 0;
    uint64_t last_valid_end = 0, last_records = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char name[64], path[JOURNAL_PATH_MAX];
        segment_name(name, sizeof name, segs[i]);
        if (join_path(path, sizeof path, j->jdir, name, err, errlen) != 0) return -1;
        unsigned char *buf;
        size_t len;
        if (io_read_file(io, path, &buf, &len, err, errlen) != 0) return -1;
        scan_params sp = {.name_seq = segs[i],
                          .expected_first = have_prev ? prev_last + 1 : 0,
                          .check_schema = true,
                          .schema_id = j->opt.schema_id};
        scan_result r;
        scan_segment(buf, len, &sp, &r);
        uint64_t last_good = r.records ? r.last_seq : (have_prev ? prev_last : 0);
        if (r.problem == SP_NONE) {
            kept++;
            info->records += r.records;
            if (info->first_seq == 0) info->first_seq = r.first_seq;
            prev_last = r.records ? r.last_seq : r.header_first_seq - 1;
            have_prev = true;
            last_valid_end = r.valid_end;
            last_records = r.records;
            free(buf);
            continue;
        }
        if (r.problem == SP_HEADER_REFUSED) {
            set_err(err, errlen, "journal refused: %s: %s", path, r.msg);
            free(buf);
            return -1;
        }
        bool is_last = i + 1 == n;
        bool header = problem_is_header(r.problem);
        if (is_last && is_torn_tail(buf, len, &r, last_good)) {
            info->tail_truncated = true;
            snprintf(info->file, sizeof info->file, "%s", path);
            info->offset = header ? 0 : r.offset;
            info->discarded_bytes = len - info->offset;
            if (header) {
                if (io->unlink(io->ctx, path) != 0 || io_fsync_dir(io, j->jdir) != 0) {
                    char eb[128];
                    set_err(err, errlen, "cannot remove torn segment %s: " ERRNO_FMT, path,
                            ERRNO_ARGS(errno, eb));
                    rc = -1;
                } else {
                    set_err(info->report, sizeof info->report,
                            "removed %s: torn segment header (%zu bytes: %s)", path, len, r.msg);
                }
            } else if (cut_file(io, path, buf, len, r.offset, false, err, errlen) != 0) {
                rc = -1;
            } else {
                kept++;
                info->records += r.records;
                if (info->first_seq == 0) info->first_seq = r.first_seq;
                prev_last = r.records ? r.last_seq : r.header_first_seq - 1;
                have_prev = true;
                last_valid_end = r.offset;
                last_records = r.records;
                set_err(info->report, sizeof info->report,
                        "cut the torn tail of %s at byte %llu (%llu bytes: %s); the journal ends "
                        "at seq %llu",
                        path, (unsigned long long)r.offset,
                        (unsigned long long)info->discarded_bytes, r.msg,
                        (unsigned long long)prev_last);
            }
            free(buf);
            break;
        }
        /* Corruption in the middle. */
        bool whole = header || r.problem == SP_SEGMENT_GAP;
        uint64_t cut_at = whole ? 0 : r.offset;
        uint64_t discarded = count_valid_after(
            buf, len, whole ? JOURNAL_SEGMENT_HEADER_SIZE : (size_t)cut_at, last_good);
        if (r.problem == SP_SEQ) discarded++; /* the valid record with the wrong seq */
        for (size_t k = i + 1; k < n; k++) {
            char kname[64], kpath[JOURNAL_PATH_MAX];
            segment_name(kname, sizeof kname, segs[k]);
            unsigned char *kb;
            size_t kl;
            if (join_path(kpath, sizeof kpath, j->jdir, kname, err, errlen) == 0 &&
                io_read_file(io, kpath, &kb, &kl, NULL, 0) == 0) {
                discarded += count_valid_after(kb, kl, JOURNAL_SEGMENT_HEADER_SIZE, segs[k] - 1);
                free(kb);
            }
        }
        if (!j->opt.recover_to_corruption) {
            set_err(err, errlen,
                    "journal corrupt: %s at byte %llu: %s. The valid records end at seq %llu; "
                    "%llu checksum-valid records and %zu later segment(s) follow. Restore the "
                    "file, or start with --recover-to-corruption to cut the journal there.",
                    path, (unsigned long long)r.offset, r.msg, (unsigned long long)last_good,
                    (unsigned long long)discarded, n - i - 1);
            free(buf);
            return -1;
        }
        info->corruption_truncated = true;
        snprintf(info->file, sizeof info->file, "%s", path);
        info->offset = cut_at;
        info->discarded_bytes = len - cut_at;
        info->discarded_records = discarded;
        info->discarded_segments = (uint32_t)(n - i - 1);
        if (whole) {
            rc = set_aside(io, path, err, errlen);
            info->discarded_segments++;
        } else {
            rc = cut_file(io, path, buf, len, cut_at, true, err, errlen);
            if (rc == 0) {
                kept++;
                info->records += r.records;
                if (info->first_seq == 0) info->first_seq = r.first_seq;
                prev_last = r.records ? r.last_seq : r.header_first_seq - 1;
                have_prev = true;
                last_valid_end = cut_at;
                last_records = r.records;
            }
        }
        for (size_t k = i + 1; rc == 0 && k < n; k++) {
            char kname[64], kpath[JOURNAL_PATH_MAX];
            segment_name(kname, sizeof kname, segs[k]);
            rc = join_path(kpath, sizeof kpath, j->jdir, kname, err, errlen);
            if (rc == 0) rc = set_aside(io, kpath, err, errlen);
        }
        if (rc == 0 && io_fsync_dir(io, j->jdir) != 0) {
            char eb[128];
            set_err(err, errlen, "cannot sync %s: " ERRNO_FMT, j->jdir, ERRNO_ARGS(errno, eb));
            rc = -1;
        }
        if (rc == 0)
            set_err(info->report, sizeof info->report,
                    "recover_to_corruption: cut %s at byte %llu (%s); discarded %llu bytes, %llu "
                    "checksum-valid records and %u segment file(s), kept aside as *.discarded*; "
                    "the journal ends at seq %llu",
                    path, (unsigned long long)cut_at, r.msg,
                    (unsigned long long)info->discarded_bytes,
                    (unsigned long long)info->discarded_records, info->discarded_segments,
                    (unsigned long long)prev_last);
        free(buf);
        break;
    }
    if (rc != 0) return -1;

    j->nsegs = kept;
    info->segments = (uint32_t)kept;
    info->last_seq = info->records ? prev_last : 0;
    atomic_store_explicit(&j->next_seq, have_prev ? prev_last + 1 : 0, memory_order_relaxed);
    atomic_store(&j->durable_seq, have_prev ? prev_last : 0);
    j->written_seq = j->synced_seq = have_prev ? prev_last : 0;
    j->seg.fd = -1;
    if (kept > 0) {
        char name[64], eb[128];
        segment_name(name, sizeof name, segs[kept - 1]);
        if (join_path(j->seg.path, sizeof j->seg.path, j->jdir, name, err, errlen) != 0) return -1;
        int fd = io->open(io->ctx, j->seg.path, O_WRONLY | O_APPEND | O_CLOEXEC, 0);
        if (fd < 0 || io_fdatasync(io, fd) != 0) {
            int e = errno;
            if (fd >= 0) io->close(io->ctx, fd);
            set_err(err, errlen, "cannot open %s for appending: " ERRNO_FMT, j->seg.path,
                    ERRNO_ARGS(e, eb));
            return -1;
        }
        j->seg.active = true;
        j->seg.fd = fd;
        j->seg.first_seq = segs[kept - 1];
        j->seg.size = j->seg.synced_size = last_valid_end;
        j->seg.records = j->seg.synced_records = last_records;
    }
    return 0;
}

static void journal_free(journal *j) {
    if (j->seg.fd >= 0) j->io.close(j->io.ctx, j->seg.fd);
    if (j->dir_fd >= 0) j->io.close(j->io.ctx, j->dir_fd);
    free(j->in.data);
    free(j->w.data);
    free(j->segs);
    free(j);
}

journal *journal_open(const char *dir, const journal_options *opt, journal_recovery_info *info,
                      char *err, size_t errlen) {
    journal_recovery_info local;
    if (info == NULL) info = &local;
    memset(info, 0, sizeof *info);
    set_err(err, errlen, "%s", "");
    journal *j = calloc(1, sizeof *j);
    if (j == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    j->seg.fd = -1;
    j->dir_fd = -1;
    if (opt != NULL)
        j->opt = *opt;
    else
        journal_options_default(&j->opt);
    if (j->opt.segment_size < MIN_SEGMENT_SIZE) j->opt.segment_size = MIN_SEGMENT_SIZE;
    if (j->opt.max_pending_bytes < MIN_PENDING) j->opt.max_pending_bytes = MIN_PENDING;
    if (j->opt.max_record_size == 0 || j->opt.max_record_size > SCAN_MAX_RECORD)
        j->opt.max_record_size = SCAN_MAX_RECORD;
    io_fill(&j->io, j->opt.io);
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    if (strlen(dir) >= sizeof j->dir ||
        join_path(j->jdir, sizeof j->jdir, dir, "journal", err, errlen) != 0) {
        set_err(err, errlen, "data directory path too long: %s", dir);
        free(j);
        return NULL;
    }
    if (make_dirs(&j->io, j->jdir, err, errlen) != 0) {
        free(j);
        return NULL;
    }
    j->dir_fd = j->io.open(j->io.ctx, j->jdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (j->dir_fd < 0) {
        char eb[128];
        set_err(err, errlen, "cannot open %s: " ERRNO_FMT, j->jdir, ERRNO_ARGS(errno, eb));
        free(j);
        return NULL;
    }
    uint64_t *segs;
    size_t n;
    if (list_seq_files(j->jdir, "", ".wal", &segs, &n, err, errlen) != 0) {
        journal_free(j);
        return NULL;
    }
    j->segs = segs;
    j->segcap = n;
    if (journal_recover(j, segs, n, info, err, errlen) != 0) {
        journal_free(j);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->work_cond, &ca);
    pthread_cond_init(&j->space_cond, &ca);
    pthread_cond_init(&j->durable_cond, &ca);
    pthread_condattr_destroy(&ca);
    j->last_sync_ns = now_ns();
    int prc = pthread_create(&j->thread, NULL, writer_main, j);
    if (prc != 0) {
        char eb[128];
        set_err(err, errlen, "cannot start the journal writer: " ERRNO_FMT, ERRNO_ARGS(prc, eb));
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->work_cond);
        pthread_cond_destroy(&j->space_cond);
        pthread_cond_destroy(&j->durable_cond);
        journal_free(j);
        return NULL;
    }
    j->thread_started = true;
    return j;
}

int journal_append(journal *j, uint64_t seq, const void *data, size_t len) {
    uint64_t next = atomic_load_explicit(&j->next_seq, memory_order_relaxed);
    if (seq == 0 || (next != 0 && seq != next)) return JOURNAL_ESEQ;
    if (len > j->opt.max_record_size) return JOURNAL_ETOOBIG;
    size_t rec = JOURNAL_RECORD_HEADER_SIZE + len;
    unsigned char h[JOURNAL_RECORD_HEADER_SIZE];
    put32(h, (uint32_t)len);
    put64(h + 8, seq);
    uint32_t crc = crc32c(0, h + 8, 8);
    if (len > 0) crc = crc32c(crc, data, len);
    put32(h + 4, crc);

    pthread_mutex_lock(&j->mu);
    while (!j->failed && j->pending > 0 && j->pending + rec > j->opt.max_pending_bytes) {
        j->producer_waiting = true;
        if (j->writer_idle) {
            j->writer_idle = false;
            pthread_cond_signal(&j->work_cond);
        }
        pthread_cond_wait(&j->space_cond, &j->mu);
    }
    j->producer_waiting = false;
    if (j->failed) {
        pthread_mutex_unlock(&j->mu);
        return JOURNAL_EFAILED;
    }
    if (jbuf_reserve(&j->in, rec) != 0) {
        pthread_mutex_unlock(&j->mu);
        return JOURNAL_ENOMEM;
    }
    unsigned char *p = j->in.data + j->in.len;
    memcpy(p, h, sizeof h);
    if (len > 0) memcpy(p + sizeof h, data, len);
    j->in.len += rec;
    j->pending += rec;
    if (j->writer_idle) {
        j->writer_idle = false;
        pthread_cond_signal(&j->work_cond);
    }
    pthread_mutex_unlock(&j->mu);
    atomic_store_explicit(&j->next_seq, seq + 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&j->st_records, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&j->st_bytes, rec, memory_order_relaxed);
    return JOURNAL_OK;
}

uint64_t journal_next_seq(const journal *j) {
    return atomic_load_explicit(&j->next_seq, memory_order_relaxed);
}

uint64_t journal_last_seq(const journal *j) {
    uint64_t next = journal_next_seq(j);
    return next ? next - 1 : 0;
}

uint64_t journal_durable_seq(const journal *j) {
    return atomic_load_explicit(&j->durable_seq, memory_order_acquire);
}

int journal_wait_durable(journal *j, uint64_t seq, int timeout_ms) {
    uint64_t deadline = timeout_ms >= 0 ? now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
    int rc = JOURNAL_OK;
    pthread_mutex_lock(&j->mu);
    while (journal_durable_seq(j) < seq) {
        if (j->failed) {
            rc = JOURNAL_EFAILED;
            break;
        }
        j->durable_waiters++;
        if (timeout_ms >= 0) {
            if (now_ns() >= deadline) {
                j->durable_waiters--;
                rc = JOURNAL_ETIMEDOUT;
                break;
            }
            struct timespec ts = deadline_ns(deadline);
            pthread_cond_timedwait(&j->durable_cond, &j->mu, &ts);
        } else {
            pthread_cond_wait(&j->durable_cond, &j->mu);
        }
        j->durable_waiters--;
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

const char *journal_error(journal *j) {
    pthread_mutex_lock(&j->mu);
    bool failed = j->failed;
    if (failed) memcpy(j->err_copy, j->errmsg, sizeof j->err_copy);
    pthread_mutex_unlock(&j->mu);
    return failed ? j->err_copy : NULL;
}

int journal_retry(journal *j) {
    pthread_mutex_lock(&j->mu);
    if (!j->failed) {
        pthread_mutex_unlock(&j->mu);
        return JOURNAL_OK;
    }
    uint64_t gen = ++j->retry_req;
    pthread_cond_signal(&j->work_cond);
    while (j->retry_done < gen && !j->stop) {
        j->durable_waiters++;
        pthread_cond_wait(&j->durable_cond, &j->mu);
        j->durable_waiters--;
    }
    int rc = j->failed ? JOURNAL_EFAILED : JOURNAL_OK;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void journal_get_stats(journal *j, journal_stats *out) {
    memset(out, 0, sizeof *out);
    out->records = atomic_load(&j->st_records);
    out->bytes = atomic_load(&j->st_bytes);
    out->writes = atomic_load(&j->st_writes);
    out->syncs = atomic_load(&j->st_syncs);
    out->segments_created = atomic_load(&j->st_segments);
    out->durable_seq = journal_durable_seq(j);
    pthread_mutex_lock(&j->mu);
    out->pending_bytes = j->pending;
    out->failed = j->failed;
    pthread_mutex_unlock(&j->mu);
    out->next_seq = journal_next_seq(j);
}

int journal_close(journal *j, char *err, size_t errlen) {
    if (j == NULL) return JOURNAL_OK;
    set_err(err, errlen, "%s", "");
    journal_retry(j); /* one last attempt when failed; nothing otherwise */
    pthread_mutex_lock(&j->mu);
    j->stop = true;
    pthread_cond_signal(&j->work_cond);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->thread, NULL);
    int rc = JOURNAL_OK;
    uint64_t last = journal_last_seq(j), durable = journal_durable_seq(j);
    if (j->failed || durable < last) {
        set_err(err, errlen, "journal closed with records %llu..%llu not durable: %s",
                (unsigned long long)durable + 1, (unsigned long long)last,
                j->failed ? j->errmsg : "unknown");
        rc = JOURNAL_EFAILED;
    }
    if (j->seg.fd >= 0 && j->io.close(j->io.ctx, j->seg.fd) != 0 && rc == JOURNAL_OK) {
        char eb[128];
        set_err(err, errlen, "close %s: " ERRNO_FMT, j->seg.path, ERRNO_ARGS(errno, eb));
        rc = JOURNAL_EFAILED;
    }
    j->seg.fd = -1;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->work_cond);
    pthread_cond_destroy(&j->space_cond);
    pthread_cond_destroy(&j->durable_cond);
    journal_free(j);
    return rc;
}

/* ---- replay and inspection ---- */

int journal_replay(const char *dir, uint64_t from_seq, journal_record_fn fn, void *ctx, char *err,
                   size_t errlen) {
    char jdir[JOURNAL_PATH_MAX];
    set_err(err, errlen, "%s", "");
    if (join_path(jdir, sizeof jdir, dir, "journal", err, errlen) != 0) return -1;
    uint64_t *segs;
    size_t n;
    if (list_seq_files(jdir, "", ".wal", &segs, &n, err, errlen) != 0) return -1;
    /* Skip the segments whose records all precede from_seq + 1. */
    size_t start = 0;
    while (start + 1 < n && segs[start + 1] <= from_seq + 1)
        start++;
    int rc = 0;
    if (start < n && segs[start] > from_seq + 1) {
        set_err(err, errlen,
                "journal starts at seq %llu (%s/%020llu.wal): records %llu..%llu needed after "
                "the snapshot are missing",
                (unsigned long long)segs[start], jdir, (unsigned long long)segs[start],
                (unsigned long long)from_seq + 1, (unsigned long long)segs[start] - 1);
        rc = -1;
    }
    uint64_t expected = 0;
    for (size_t i = start; rc == 0 && i < n; i++) {
        char name[64], path[JOURNAL_PATH_MAX];
        segment_name(name, sizeof name, segs[i]);
        if (join_path(path, sizeof path, jdir, name, err, errlen) != 0) {
            rc = -1;
            break;
        }
        unsigned char *buf;
        size_t len;
        if (io_read_file(&default_io, path, &buf, &len, err, errlen) != 0) {
            rc = -1;
            break;
        }
        scan_params sp = {.name_seq = segs[i],
                          .expected_first = expected,
                          .from_seq = from_seq,
                          .fn = fn,
                          .ctx = ctx};
        scan_result r;
        scan_segment(buf, len, &sp, &r);
        free(buf);
        if (r.stopped != 0) {
            rc = r.stopped;
        } else if (r.problem != SP_NONE) {
            set_err(err, errlen, "%s at byte %llu: %s", path, (unsigned long long)r.offset, r.msg);
            rc = -1;
        }
        expected = r.records ? r.last_seq + 1 : r.header_first_seq;
    }
    free(segs);
    return rc;
}

int journal_inspect(const char *dir, uint64_t from_seq, journal_record_fn rec_fn,
                    journal_segment_fn seg_fn, void *ctx, char *err, size_t errlen) {
    char jdir[JOURNAL_PATH_MAX];
    set_err(err, errlen, "%s", "");
    if (join_path(jdir, sizeof jdir, dir, "journal", err, errlen) != 0) return -1;
    uint64_t *segs;
    size_t n;
    if (list_seq_files(jdir, "", ".wal", &segs, &n, err, errlen) != 0) return -1;
    int problems = 0;
    uint64_t expected = 0, last_good = 0;
    for (size_t i = 0; i < n; i++) {
        journal_segment_report rep;
        memset(&rep, 0, sizeof rep);
        char name[64];
        segment_name(name, sizeof name, segs[i]);
        join_path(rep.path, sizeof rep.path, jdir, name, NULL, 0);
        rep.name_seq = segs[i];
        unsigned char *buf;
        size_t len;
        scan_result r;
        memset(&r, 0, sizeof r);
        if (io_read_file(&default_io, rep.path, &buf, &len, rep.problem, sizeof rep.problem) != 0) {
            problems++;
            expected = 0;
            if (seg_fn) seg_fn(ctx, &rep);
            continue;
        }
        scan_params sp = {.name_seq = segs[i],
                          .expected_first = expected,
                          .from_seq = from_seq,
                          .fn = rec_fn,
                          .ctx = ctx};
        scan_segment(buf, len, &sp, &r);
        rep.version = r.version;
        rep.schema_id = r.schema_id;
        rep.file_size = len;
        rep.valid_size = r.valid_end;
        rep.records = r.records;
        rep.first_seq = r.first_seq;
        rep.last_seq = r.last_seq;
        rep.ok = r.problem == SP_NONE;
        if (!rep.ok) {
            problems++;
            rep.problem_offset = r.offset;
            snprintf(rep.problem, sizeof rep.problem, "%s", r.msg);
            rep.torn_tail =
                i + 1 == n && is_torn_tail(buf, len, &r, r.records ? r.last_seq : last_good);
        }
        free(buf);
        if (r.stopped != 0) {
            if (seg_fn) seg_fn(ctx, &rep);
            break;
        }
        if (r.records) last_good = r.last_seq;
        expected = !rep.ok ? 0 : r.records ? r.last_seq + 1 : r.header_first_seq;
        if (seg_fn) seg_fn(ctx, &rep);
    }
    free(segs);
    return problems;
}

/* ---- snapshots ---- */

/* Checks one snapshot image; on success *body and *body_len describe the body inside buf. */
static bool snapshot_check(const unsigned char *buf, size_t len, uint64_t name_seq,
                           const unsigned char **body, uint64_t *body_len, char *msg,
                           size_t msglen) {
    if (len < SNAPSHOT_HEADER_SIZE) {
        set_err(msg, msglen, "file ends inside the header (%zu of %d bytes)", len,
                SNAPSHOT_HEADER_SIZE);
        return false;
    }
    if (memcmp(buf, SNAPSHOT_MAGIC, MAGIC_LEN) != 0) {
        set_err(msg, msglen, "not a snapshot (bad magic)");
        return false;
    }
    if (crc32c(0, buf, 36) != get32(buf + 36)) {
        set_err(msg, msglen, "header checksum mismatch");
        return false;
    }
    if (get32(buf + 8) != SNAPSHOT_FORMAT_VERSION || get32(buf + 12) != SNAPSHOT_HEADER_SIZE) {
        set_err(msg, msglen, "snapshot format version %u, this binary reads version %d",
                get32(buf + 8), SNAPSHOT_FORMAT_VERSION);
        return false;
    }
    uint64_t seq = get64(buf + 16), blen = get64(buf + 24);
    *body_len = blen;
    if (seq != name_seq) {
        set_err(msg, msglen, "header says seq %llu, file name says %llu", (unsigned long long)seq,
                (unsigned long long)name_seq);
        return false;
    }
    if (blen != len - SNAPSHOT_HEADER_SIZE) {
        set_err(msg, msglen, "header says %llu body bytes, the file has %zu",
                (unsigned long long)blen, len - SNAPSHOT_HEADER_SIZE);
        return false;
    }
    uint32_t c = crc32c(0, buf + SNAPSHOT_HEADER_SIZE, (size_t)blen);
    if (c != get32(buf + 32)) {
        set_err(msg, msglen, "body checksum mismatch (stored %08x, computed %08x)", get32(buf + 32),
                c);
        return false;
    }
    *body = buf + SNAPSHOT_HEADER_SIZE;
    return true;
}

int snapshot_write(const char *dir, uint64_t seq, const void *bytes, size_t len, char *err,
                   size_t errlen) {
    const journal_io *io = &default_io;
    char sdir[JOURNAL_PATH_MAX], name[64], path[JOURNAL_PATH_MAX], tmp[JOURNAL_PATH_MAX + 8];
    char eb[128];
    set_err(err, errlen, "%s", "");
    if (join_path(sdir, sizeof sdir, dir, "snapshots", err, errlen) != 0) return -1;
    if (make_dirs(io, sdir, err, errlen) != 0) return -1;
    snapshot_name(name, sizeof name, seq);
    if (join_path(path, sizeof path, sdir, name, err, errlen) != 0) return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unsigned char h[SNAPSHOT_HEADER_SIZE] = {0};
    memcpy(h, SNAPSHOT_MAGIC, MAGIC_LEN);
    put32(h + 8, SNAPSHOT_FORMAT_VERSION);
    put32(h + 12, SNAPSHOT_HEADER_SIZE);
    put64(h + 16, seq);
    put64(h + 24, len);
    put32(h + 32, crc32c(0, bytes, len));
    put32(h + 36, crc32c(0, h, 36));
    int fd = io->open(io->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_err(err, errlen, "cannot create %s: " ERRNO_FMT, tmp, ERRNO_ARGS(errno, eb));
        return -1;
    }
    const char *op = NULL;
    if (io_write_all(io, fd, h, sizeof h) != 0 || io_write_all(io, fd, bytes, len) != 0)
        op = "write";
    else if (io_fsync(io, fd) != 0)
        op = "fsync";
    int e = errno;
    if (io->close(io->ctx, fd) != 0 && op == NULL) {
        op = "close";
        e = errno;
    }
    if (op == NULL && io->rename(io->ctx, tmp, path) != 0) {
        op = "rename";
        e = errno;
    }
    if (op != NULL) {
        io->unlink(io->ctx, tmp);
        set_err(err, errlen, "snapshot %s %s: " ERRNO_FMT, op, tmp, ERRNO_ARGS(e, eb));
        return -1;
    }
    if (io_fsync_dir(io, sdir) != 0) {
        set_err(err, errlen, "snapshot fsync directory %s: " ERRNO_FMT, sdir,
                ERRNO_ARGS(errno, eb));
        return -1;
    }
    return 0;
}

int snapshot_load_latest(const char *dir, uint64_t *seq, unsigned char **bytes, size_t *len,
                         char *err, size_t errlen) {
    char sdir[JOURNAL_PATH_MAX];
    *bytes = NULL;
    *len = 0;
    *seq = 0;
    set_err(err, errlen, "%s", "");
    if (join_path(sdir, sizeof sdir, dir, "snapshots", err, errlen) != 0) return -1;
    uint64_t *seqs;
    size_t n;
    if (list_seq_files(sdir, "snapshot-", ".bin", &seqs, &n, err, errlen) != 0) return -1;
    char warn[2048] = "";
    size_t wl = 0;
    int rc = n == 0 ? 0 : -1;
    for (size_t k = n; k-- > 0;) {
        char name[64], path[JOURNAL_PATH_MAX], msg[JOURNAL_MSG_MAX];
        snapshot_name(name, sizeof name, seqs[k]);
        if (join_path(path, sizeof path, sdir, name, msg, sizeof msg) != 0) continue;
        unsigned char *buf;
        size_t blen;
        const unsigned char *body = NULL;
        uint64_t body_len = 0;
        if (io_read_file(&default_io, path, &buf, &blen, msg, sizeof msg) == 0) {
            if (snapshot_check(buf, blen, seqs[k], &body, &body_len, msg, sizeof msg)) {
                unsigned char *copy = malloc(body_len ? (size_t)body_len : 1);
                if (copy == NULL) {
                    free(buf);
                    snprintf(warn + wl, sizeof warn - wl, "out of memory loading %s", path);
                    break;
                }
                memcpy(copy, body, (size_t)body_len);
                free(buf);
                *bytes = copy;
                *len = (size_t)body_len;
                *seq = seqs[k];
                rc = 1;
                break;
            }
            free(buf);
        }
        int w = snprintf(warn + wl, sizeof warn - wl, "%ssnapshot %s is damaged (%s)",
                         wl ? "; " : "", path, msg);
        if (w > 0) wl = wl + (size_t)w < sizeof warn ? wl + (size_t)w : sizeof warn - 1;
    }
    free(seqs);
    if (rc == 1 && wl > 0)
        set_err(err, errlen, "%s; loaded the older snapshot of seq %llu instead", warn,
                (unsigned long long)*seq);
    else if (rc == -1)
        set_err(err, errlen, "no valid snapshot: %s", warn);
    return rc;
}

int snapshot_inspect(const char *dir, snapshot_fn fn, void *ctx, char *err, size_t errlen) {
    char sdir[JOURNAL_PATH_MAX];
    set_err(err, errlen, "%s", "");
    if (join_path(sdir, sizeof sdir, dir, "snapshots", err, errlen) != 0) return -1;
    uint64_t *seqs;
    size_t n;
    if (list_seq_files(sdir, "snapshot-", ".bin", &seqs, &n, err, errlen) != 0) return -1;
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        snapshot_report rep;
        memset(&rep, 0, sizeof rep);
        char name[64];
        snapshot_name(name, sizeof name, seqs[k]);
        join_path(rep.path, sizeof rep.path, sdir, name, NULL, 0);
        rep.seq = seqs[k];
        unsigned char *buf;
        size_t blen;
        if (io_read_file(&default_io, rep.path, &buf, &blen, rep.problem, sizeof rep.problem) ==
            0) {
            const unsigned char *body;
            rep.file_size = blen;
            rep.ok = snapshot_check(buf, blen, seqs[k], &body, &rep.length, rep.problem,
                                    sizeof rep.problem);
            free(buf);
        }
        if (!rep.ok) bad++;
        if (fn) fn(ctx, &rep);
    }
    free(seqs);
    return bad;
}

/* ---- pruning ---- */

int journal_prune(journal *j, uint64_t upto_seq, char *err, size_t errlen) {
    char sdir[JOURNAL_PATH_MAX], eb[128];
    set_err(err, errlen, "%s", "");
    if (join_path(sdir, sizeof sdir, j->dir, "snapshots", err, errlen) != 0) return -1;
    uint64_t *snaps;
    size_t ns;
    if (list_seq_files(sdir, "snapshot-", ".bin", &snaps, &ns, err, errlen) != 0) return -1;
    uint64_t limit = ns >= 2 ? snaps[ns - 2] : 0;
    if (upto_seq < limit) {
        /* A reader still behind the second-newest snapshot (the history store after a crash)
         * rebuilds its state at upto_seq from the newest snapshot at or before it plus the
         * journal after that snapshot: keep both. Cutting at upto_seq itself kept neither, and
         * the history lost the commands up to the next snapshot. No such snapshot: only the
         * whole journal will do. */
        limit = 0;
        for (size_t k = ns; k-- > 0 && limit == 0;)
            if (snaps[k] <= upto_seq) limit = snaps[k];
    }

    /* Segment i holds seqs segs[i] .. segs[i+1]-1; the last one is never deleted. */
    uint64_t *victims = NULL;
    size_t nv = 0;
    pthread_mutex_lock(&j->mu);
    size_t cut = 0;
    while (cut + 1 < j->nsegs && j->segs[cut + 1] - 1 <= limit)
        cut++;
    if (cut > 0) {
        victims = malloc(cut * sizeof *victims);
        if (victims != NULL) {
            memcpy(victims, j->segs, cut * sizeof *victims);
            memmove(j->segs, j->segs + cut, (j->nsegs - cut) * sizeof *j->segs);
            j->nsegs -= cut;
            nv = cut;
        }
    }
    pthread_mutex_unlock(&j->mu);

    int deleted = 0, rc = 0;
    for (size_t i = 0; i < nv; i++) {
        char name[64], path[JOURNAL_PATH_MAX];
        segment_name(name, sizeof name, victims[i]);
        if (join_path(path, sizeof path, j->jdir, name, err, errlen) != 0) {
            rc = -1;
            continue;
        }
        if (j->io.unlink(j->io.ctx, path) != 0 && errno != ENOENT) {
            set_err(err, errlen, "cannot delete %s: " ERRNO_FMT, path, ERRNO_ARGS(errno, eb));
            rc = -1;
        } else {
            deleted++;
        }
    }
    free(victims);
    if (nv > 0 && io_fsync_dir(&j->io, j->jdir) != 0) {
        set_err(err, errlen, "cannot sync %s: " ERRNO_FMT, j->jdir, ERRNO_ARGS(errno, eb));
        rc = -1;
    }

    /* Snapshots: keep the newest two, and every one from the snapshot the limit stands on
     * (all of them while the limit is 0); also remove the temp files a crash left behind. */
    int snap_deleted = 0;
    for (size_t k = 0; k + 2 < ns && snaps[k] < limit; k++) {
        char name[64], path[JOURNAL_PATH_MAX];
        snapshot_name(name, sizeof name, snaps[k]);
        if (join_path(path, sizeof path, sdir, name, err, errlen) != 0) {
            rc = -1;
            continue;
        }
        if (j->io.unlink(j->io.ctx, path) != 0 && errno != ENOENT) {
            set_err(err, errlen, "cannot delete %s: " ERRNO_FMT, path, ERRNO_ARGS(errno, eb));
            rc = -1;
        } else {
            snap_deleted++;
        }
    }
    DIR *d = opendir(sdir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            uint64_t s;
            if (l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0) {
                char base[256];
                snprintf(base, sizeof base, "%.*s", (int)(l - 4), de->d_name);
                /* A temp file newer than the newest snapshot may be a write in progress. */
                if (!parse_seq_name(base, "snapshot-", ".bin", &s)) continue;
                if (ns == 0 || s > snaps[ns - 1]) continue;
                char path[JOURNAL_PATH_MAX];
                if (join_path(path, sizeof path, sdir, de->d_name, NULL, 0) == 0 &&
                    j->io.unlink(j->io.ctx, path) == 0)
                    snap_deleted++;
            }
        }
        closedir(d);
    }
    free(snaps);
    if (snap_deleted > 0 && io_fsync_dir(&j->io, sdir) != 0) {
        set_err(err, errlen, "cannot sync %s: " ERRNO_FMT, sdir, ERRNO_ARGS(errno, eb));
        rc = -1;
    }
    return rc != 0 ? -1 : deleted + snap_deleted;
}
