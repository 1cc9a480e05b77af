/* The storage layer (src/journal): CRC32C, the write-ahead journal and snapshots.
 *
 * The journal's system calls go through a fault-injecting journal_io that counts calls, can make
 * writes fail with ENOSPC (after letting a few bytes through, so a partial record is left in
 * the file), fail fdatasync with EIO, refuse to create segments, and hold every fdatasync at a
 * gate so a test can look at the journal while the writer is inside the sync. Records carry
 * payloads derived from their sequence number, so every replay checks content, order and that
 * nothing is missing or repeated. Damaged files are made by editing bytes, and a few segments are
 * written by hand from the format in journal.h, which also checks the format itself. */
#include "check.h"
#include "journal/crc32c.h"
#include "journal/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA 0x514145584A4E4C31ULL
#define FIXED_LEN 50
#define FIXED_REC (JOURNAL_RECORD_HEADER_SIZE + FIXED_LEN)

/* ---- helpers: directories, files, time ---- */

static char tmp_root[64];
static int dir_counter;

static void new_dir(char *out, size_t len) {
    snprintf(out, len, "%s/d%d", tmp_root, ++dir_counter);
}

/* rm -rf without following symbolic links. */
static void rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
                char child[1024];
                snprintf(child, sizeof child, "%s/%s", path, de->d_name);
                rm_rf(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void seg_path(char *out, size_t len, const char *dir, uint64_t seq) {
    snprintf(out, len, "%s/journal/%020llu.wal", dir, (unsigned long long)seq);
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b != NULL && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int write_all_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    size_t w = fwrite(data, 1, len, f);
    fclose(f);
    return w == len ? 0 : -1;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void flip_byte(const char *path, long long offset) {
    size_t len;
    unsigned char *b = read_all(path, &len);
    if (b == NULL || offset >= (long long)len) {
        fprintf(stderr, "flip_byte: cannot edit %s at %lld\n", path, offset);
        free(b);
        return;
    }
    b[offset] ^= 0x5A;
    write_all_file(path, b, len);
    free(b);
}

/* ---- payloads and replay checks ---- */

/* The payload of record `seq`: 1..120 bytes that depend on seq. */
static size_t payload_for(uint64_t seq, unsigned char *buf) {
    size_t len = 1 + (size_t)((seq * 7919u) % 120u);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(seq * 31u + i * 7u);
    return len;
}

/* A fixed-size payload (FIXED_LEN bytes) so offsets are easy to compute. */
static void fixed_payload(uint64_t seq, unsigned char *buf) {
    for (size_t i = 0; i < FIXED_LEN; i++)
        buf[i] = (unsigned char)(seq * 13u + i);
}

static size_t record_size(uint64_t seq) {
    unsigned char b[128];
    return JOURNAL_RECORD_HEADER_SIZE + payload_for(seq, b);
}

typedef struct replay_check {
    uint64_t next; /* the seq expected next */
    uint64_t count;
    bool fixed; /* payloads from fixed_payload */
    int bad;
    uint64_t replaced_seq; /* a record whose payload is `replaced` instead */
    const char *replaced;
} replay_check;

static int check_record(void *ctx, uint64_t seq, const void *data, size_t len) {
    replay_check *rc = ctx;
    unsigned char want[128];
    size_t wlen;
    if (rc->replaced != NULL && seq == rc->replaced_seq) {
        wlen = strlen(rc->replaced);
        memcpy(want, rc->replaced, wlen);
    } else if (rc->fixed) {
        fixed_payload(seq, want);
        wlen = FIXED_LEN;
    } else {
        wlen = payload_for(seq, want);
    }
    if (seq != rc->next || len != wlen || memcmp(data, want, len) != 0) {
        if (rc->bad++ < 5)
            fprintf(stderr, "replay: got seq %llu (len %zu), expected seq %llu (len %zu)\n",
                    (unsigned long long)seq, len, (unsigned long long)rc->next, wlen);
    }
    rc->next = seq + 1;
    rc->count++;
    return 0;
}

/* Replays DIR from from_seq and checks records from_seq+1 .. last. */
static void check_replay(const char *dir, uint64_t from_seq, uint64_t last, bool fixed) {
    replay_check rc = {.next = from_seq + 1, .fixed = fixed};
    char err[JOURNAL_MSG_MAX];
    int r = journal_replay(dir, from_seq, check_record, &rc, err, sizeof err);
    if (r != 0) fprintf(stderr, "replay: %s\n", err);
    CHECK_INT(r, 0);
    CHECK_INT(rc.bad, 0);
    CHECK_INT(rc.count, last - from_seq);
}

/* ---- the fault-injecting I/O ---- */

#define MAX_FD 1024

static struct {
    atomic_int writes, fdatasyncs, fsyncs, ftruncates;
    atomic_int write_errno;        /* writes to segments fail with this (0: they work) ... */
    atomic_llong write_budget;     /* ... after this many more bytes went through */
    atomic_int fdatasync_errno;    /* fdatasync of segments fails with this ... */
    atomic_int fdatasync_failures; /* ... this many times */
    atomic_int create_errno;       /* creating a segment fails with this */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gate; /* fdatasync waits while set */
    int gate_waiting;
    long long size[MAX_FD];
    bool wal[MAX_FD];
    atomic_llong wal_synced; /* bytes of the segment last synced (single-segment tests) */
} fio = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void fio_reset(void) {
    pthread_mutex_lock(&fio.mu);
    fio.writes = fio.fdatasyncs = fio.fsyncs = fio.ftruncates = 0;
    fio.write_errno = 0;
    fio.write_budget = 0;
    fio.fdatasync_errno = 0;
    fio.fdatasync_failures = 0;
    fio.create_errno = 0;
    fio.gate = false;
    fio.wal_synced = 0;
    pthread_mutex_unlock(&fio.mu);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool fd_is_wal(int fd) {
    pthread_mutex_lock(&fio.mu);
    bool w = fd >= 0 && fd < MAX_FD && fio.wal[fd];
    pthread_mutex_unlock(&fio.mu);
    return w;
}

static int f_open(void *c, const char *path, int flags, mode_t mode) {
    (void)c;
    bool wal = ends_with(path, ".wal");
    if (wal && (flags & O_CREAT) && fio.create_errno != 0) {
        errno = fio.create_errno;
        return -1;
    }
    int fd = open(path, flags, mode);
    if (fd >= 0 && fd < MAX_FD) {
        struct stat st;
        pthread_mutex_lock(&fio.mu);
        fio.wal[fd] = wal;
        fio.size[fd] = fstat(fd, &st) == 0 ? (long long)st.st_size : 0;
        pthread_mutex_unlock(&fio.mu);
    }
    return fd;
}

static int f_close(void *c, int fd) {
    (void)c;
    pthread_mutex_lock(&fio.mu);
    if (fd >= 0 && fd < MAX_FD) fio.wal[fd] = false;
    pthread_mutex_unlock(&fio.mu);
    return close(fd);
}

static ssize_t f_write(void *c, int fd, const void *buf, size_t len) {
    (void)c;
    if (fd_is_wal(fd) && fio.write_errno != 0) {
        long long budget = fio.write_budget;
        if (budget <= 0) {
            errno = fio.write_errno;
            return -1;
        }
        if ((long long)len > budget) len = (size_t)budget;
        fio.write_budget = budget - (long long)len;
    }
    ssize_t w = write(fd, buf, len);
    if (w > 0) {
        fio.writes++;
        pthread_mutex_lock(&fio.mu);
        if (fd < MAX_FD) fio.size[fd] += w;
        pthread_mutex_unlock(&fio.mu);
    }
    return w;
}

static int f_fdatasync(void *c, int fd) {
    (void)c;
    pthread_mutex_lock(&fio.mu);
    while (fio.gate) {
        fio.gate_waiting++;
        pthread_cond_wait(&fio.cv, &fio.mu);
        fio.gate_waiting--;
    }
    pthread_mutex_unlock(&fio.mu);
    bool wal = fd_is_wal(fd);
    if (wal && fio.fdatasync_errno != 0 && fio.fdatasync_failures > 0) {
        fio.fdatasync_failures--;
        errno = fio.fdatasync_errno;
        return -1;
    }
    int rc = fdatasync(fd);
    if (rc == 0) {
        fio.fdatasyncs++;
        if (wal) {
            pthread_mutex_lock(&fio.mu);
            fio.wal_synced = fio.size[fd];
            pthread_mutex_unlock(&fio.mu);
        }
    }
    return rc;
}

static int f_fsync(void *c, int fd) {
    (void)c;
    fio.fsyncs++;
    return fsync(fd);
}

static int f_ftruncate(void *c, int fd, off_t len) {
    (void)c;
    int rc = ftruncate(fd, len);
    if (rc == 0) {
        fio.ftruncates++;
        pthread_mutex_lock(&fio.mu);
        if (fd < MAX_FD) fio.size[fd] = len;
        if (fd < MAX_FD && fio.wal[fd] && fio.wal_synced > len) fio.wal_synced = len;
        pthread_mutex_unlock(&fio.mu);
    }
    return rc;
}

static const journal_io fault_io = {NULL,        f_open,  f_close,     NULL, f_write,
                                    f_fdatasync, f_fsync, f_ftruncate, NULL, NULL};

static void gate_close(void) {
    pthread_mutex_lock(&fio.mu);
    fio.gate = true;
    pthread_mutex_unlock(&fio.mu);
}

static void gate_open(void) {
    pthread_mutex_lock(&fio.mu);
    fio.gate = false;
    pthread_cond_broadcast(&fio.cv);
    pthread_mutex_unlock(&fio.mu);
}

/* Waits until the writer is held at the gate; false after 5 s. */
static bool gate_wait_held(void) {
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&fio.mu);
        int w = fio.gate_waiting;
        pthread_mutex_unlock(&fio.mu);
        if (w > 0) return true;
        sleep_ms(1);
    }
    return false;
}

/* ---- journal helpers ---- */

static journal_options test_options(void) {
    journal_options o;
    journal_options_default(&o);
    o.schema_id = SCHEMA;
    o.retry_interval_ms = 0; /* tests retry by hand */
    o.io = &fault_io;
    return o;
}

static journal *open_journal(const char *dir, const journal_options *o,
                             journal_recovery_info *info) {
    char err[JOURNAL_MSG_MAX];
    journal *j = journal_open(dir, o, info, err, sizeof err);
    if (j == NULL) fprintf(stderr, "journal_open(%s): %s\n", dir, err);
    return j;
}

static void close_journal(journal *j) {
    char err[JOURNAL_MSG_MAX];
    int rc = journal_close(j, err, sizeof err);
    if (rc != 0) fprintf(stderr, "journal_close: %s\n", err);
    CHECK_INT(rc, JOURNAL_OK);
}

/* Appends from..to with payload_for (or fixed payloads); returns the number of failures. */
static int append_range(journal *j, uint64_t from, uint64_t to, bool fixed) {
    int failures = 0;
    unsigned char buf[128];
    for (uint64_t s = from; s <= to; s++) {
        size_t len = FIXED_LEN;
        if (fixed)
            fixed_payload(s, buf);
        else
            len = payload_for(s, buf);
        if (journal_append(j, s, buf, len) != JOURNAL_OK) failures++;
    }
    return failures;
}

typedef struct seg_list {
    uint64_t first[256];
    int n;
    int problems;
} seg_list;

static void collect_segment(void *ctx, const journal_segment_report *r) {
    seg_list *l = ctx;
    if (l->n < 256) l->first[l->n++] = r->name_seq;
    if (!r->ok) l->problems++;
}

static seg_list list_segments(const char *dir) {
    seg_list l;
    memset(&l, 0, sizeof l);
    char err[JOURNAL_MSG_MAX];
    journal_inspect(dir, 0, NULL, collect_segment, &l, err, sizeof err);
    return l;
}

/* A hand-made segment, written from the format in journal.h. */
static void raw_segment(const char *path, uint64_t schema, uint64_t first_seq, const uint64_t *seqs,
                        int n) {
    unsigned char buf[65536];
    size_t len = JOURNAL_SEGMENT_HEADER_SIZE;
    memset(buf, 0, len);
    memcpy(buf, "QAEXWAL1", 8);
    uint32_t v32[2] = {JOURNAL_FORMAT_VERSION, JOURNAL_SEGMENT_HEADER_SIZE};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++)
            buf[8 + 4 * k + i] = (unsigned char)(v32[k] >> (8 * i));
    for (int i = 0; i < 8; i++) {
        buf[16 + i] = (unsigned char)(schema >> (8 * i));
        buf[24 + i] = (unsigned char)(first_seq >> (8 * i));
    }
    uint32_t hcrc = crc32c(0, buf, 32);
    for (int i = 0; i < 4; i++)
        buf[32 + i] = (unsigned char)(hcrc >> (8 * i));
    for (int r = 0; r < n; r++) {
        unsigned char *p = buf + len;
        uint32_t plen = (uint32_t)payload_for(seqs[r], p + 16);
        for (int i = 0; i < 8; i++)
            p[8 + i] = (unsigned char)(seqs[r] >> (8 * i));
        uint32_t crc = crc32c(0, p + 8, 8 + plen);
        for (int i = 0; i < 4; i++) {
            p[i] = (unsigned char)(plen >> (8 * i));
            p[4 + i] = (unsigned char)(crc >> (8 * i));
        }
        len += 16 + plen;
    }
    write_all_file(path, buf, len);
}

/* ---- CRC32C ---- */

static void test_crc32c_vectors(void) {
    const char *s = "123456789";
    CHECK_INT(crc32c(0, s, 9), 0xE3069283u);
    CHECK_INT(crc32c_sw(0, s, 9), 0xE3069283u);
    CHECK_INT(crc32c_hw(0, s, 9), 0xE3069283u);
    CHECK_INT(crc32c(0, "", 0), 0);
    CHECK_INT(crc32c(0, "a", 1), 0xC1D04330u);
    /* RFC 3720 (iSCSI) B.4 */
    unsigned char b[48];
    memset(b, 0, 32);
    CHECK_INT(crc32c_sw(0, b, 32), 0x8A9136AAu);
    CHECK_INT(crc32c_hw(0, b, 32), 0x8A9136AAu);
    memset(b, 0xFF, 32);
    CHECK_INT(crc32c_sw(0, b, 32), 0x62A8AB43u);
    CHECK_INT(crc32c_hw(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    CHECK_INT(crc32c_sw(0, b, 32), 0x46DD794Eu);
    CHECK_INT(crc32c_hw(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)(31 - i);
    CHECK_INT(crc32c_sw(0, b, 32), 0x113FDB5Cu);
    CHECK_INT(crc32c_hw(0, b, 32), 0x113FDB5Cu);
    const unsigned char iscsi[48] = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                     0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
                                     0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
                                     0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                     0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    CHECK_INT(crc32c_sw(0, iscsi, 48), 0xD9963A56u);
    CHECK_INT(crc32c_hw(0, iscsi, 48), 0xD9963A56u);
    printf("crc32c: hardware (SSE4.2) %s\n", crc32c_hw_available() ? "used" : "not available");
}

/* Both implementations agree at every length and alignment, and chaining equals one call. */
static void test_crc32c_agree(void) {
    unsigned char buf[1100];
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < sizeof buf; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    int mismatches = 0;
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len <= 1024; len++)
            if (crc32c_sw(0, buf + off, len) != crc32c_hw(0, buf + off, len)) mismatches++;
    CHECK_INT(mismatches, 0);
    uint32_t whole = crc32c(0, buf, 1000);
    int chain_bad = 0;
    for (size_t cut = 0; cut <= 1000; cut += 7) {
        if (crc32c(crc32c(0, buf, cut), buf + cut, 1000 - cut) != whole) chain_bad++;
        if (crc32c_sw(crc32c_hw(0, buf, cut), buf + cut, 1000 - cut) != whole) chain_bad++;
    }
    CHECK_INT(chain_bad, 0);
}

/* ---- round trip ---- */

static void test_round_trip_rotation(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.segment_size = 256 * 1024;
    journal_recovery_info info;
    journal *j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(info.last_seq, 0);
    CHECK_INT(journal_next_seq(j), 0);
    const uint64_t n = 100000;
    CHECK_INT(append_range(j, 1, n, false), 0);
    CHECK_INT(journal_last_seq(j), n);
    CHECK_INT(journal_wait_durable(j, n, 30000), JOURNAL_OK);
    journal_stats st;
    journal_get_stats(j, &st);
    CHECK_INT(st.records, n);
    CHECK(st.segments_created >= 10);
    printf("round trip: %llu records, %llu writes, %llu syncs, %llu segments\n",
           (unsigned long long)st.records, (unsigned long long)st.writes,
           (unsigned long long)st.syncs, (unsigned long long)st.segments_created);
    close_journal(j);

    seg_list l = list_segments(dir);
    CHECK(l.n >= 10);
    CHECK_INT(l.problems, 0);
    CHECK_INT(l.first[0], 1);
    /* every segment but the last reached the size limit and overshot it by less than a record */
    for (int i = 0; i + 1 < l.n; i++) {
        char p[256];
        seg_path(p, sizeof p, dir, l.first[i]);
        long long sz = file_size(p);
        CHECK(sz >= (long long)o.segment_size && sz < (long long)o.segment_size + 140);
    }

    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(info.records, n);
    CHECK_INT(info.first_seq, 1);
    CHECK_INT(info.last_seq, n);
    CHECK_INT(info.segments, l.n);
    CHECK(!info.tail_truncated && !info.corruption_truncated);
    CHECK_STR(info.report, "");
    CHECK_INT(journal_next_seq(j), n + 1);
    CHECK_INT(journal_durable_seq(j), n);
    check_replay(dir, 0, n, false);
    check_replay(dir, 54321, n, false);
    check_replay(dir, n, n, false);
    CHECK_INT(append_range(j, n + 1, n + 100, false), 0);
    close_journal(j);
    check_replay(dir, 0, n + 100, false);
    check_replay(dir, n + 50, n + 100, false);
}

/* ---- group commit and durability ---- */

static void test_group_commit(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    /* Hold the writer inside its first sync, append 5,000 records, let go: they all share one
     * write and one fdatasync. */
    gate_close();
    CHECK_INT(append_range(j, 1, 1, false), 0);
    CHECK(gate_wait_held());
    CHECK_INT(append_range(j, 2, 5000, false), 0);
    CHECK_INT(journal_durable_seq(j), 0);
    gate_open();
    CHECK_INT(journal_wait_durable(j, 5000, 10000), JOURNAL_OK);
    journal_stats st;
    journal_get_stats(j, &st);
    /* the new segment's header sync, record 1's sync, one sync for 2..5000 */
    CHECK_INT(fio.fdatasyncs, 3);
    CHECK_INT(st.syncs, 2);
    CHECK_INT(st.writes, 2);

    /* Free running: 200,000 appends need far fewer syncs than records. */
    CHECK_INT(append_range(j, 5001, 205000, false), 0);
    CHECK_INT(journal_wait_durable(j, 205000, 30000), JOURNAL_OK);
    journal_get_stats(j, &st);
    printf("group commit: 205000 records, %llu writes, %llu fdatasyncs\n",
           (unsigned long long)st.writes, (unsigned long long)st.syncs);
    CHECK(st.syncs * 20 < 205000);
    close_journal(j);
    check_replay(dir, 0, 205000, false);
}

static void test_durable_after_fdatasync(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 1, false), 0);
    CHECK_INT(journal_wait_durable(j, 1, 5000), JOURNAL_OK);
    gate_close();
    int writes_before = fio.writes;
    CHECK_INT(append_range(j, 2, 11, false), 0);
    CHECK(gate_wait_held());
    CHECK(fio.writes > writes_before); /* written ... */
    sleep_ms(30);
    CHECK_INT(journal_durable_seq(j), 1); /* ... but not durable until fdatasync returns */
    CHECK_INT(journal_wait_durable(j, 11, 20), JOURNAL_ETIMEDOUT);
    gate_open();
    CHECK_INT(journal_wait_durable(j, 11, 5000), JOURNAL_OK);
    CHECK_INT(journal_durable_seq(j), 11);
    close_journal(j);
    check_replay(dir, 0, 11, false);
}

static void test_async_mode(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.durability = JOURNAL_ASYNC;
    o.async_fsync_interval_ms = 50;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 1, false), 0);
    CHECK_INT(journal_wait_durable(j, 1, 5000), JOURNAL_OK);
    /* With every fdatasync held, the sequence still advances: written is enough in async. */
    gate_close();
    CHECK_INT(append_range(j, 2, 11, false), 0);
    CHECK_INT(journal_wait_durable(j, 11, 5000), JOURNAL_OK);
    gate_open();
    /* ... and the data is synced within the interval without further appends. */
    CHECK_INT(append_range(j, 12, 12, false), 0);
    int syncs = fio.fdatasyncs;
    for (int i = 0; i < 200 && fio.fdatasyncs == syncs; i++)
        sleep_ms(5);
    CHECK(fio.fdatasyncs > syncs);
    close_journal(j);
    check_replay(dir, 0, 12, false);
}

static void *backpressure_producer(void *arg) {
    journal *j = arg;
    unsigned char buf[FIXED_LEN];
    for (uint64_t s = 2; s <= 201; s++) {
        fixed_payload(s, buf);
        if (journal_append(j, s, buf, FIXED_LEN) != JOURNAL_OK) return (void *)1;
    }
    return NULL;
}

static void test_backpressure(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.max_pending_bytes = 4096;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 1, true), 0);
    CHECK_INT(journal_wait_durable(j, 1, 5000), JOURNAL_OK);
    gate_close();
    pthread_t t;
    pthread_create(&t, NULL, backpressure_producer, j);
    sleep_ms(100);
    journal_stats st;
    journal_get_stats(j, &st);
    /* 200 records of 66 bytes do not fit in 4 KiB: the producer is blocked */
    CHECK(st.records < 201);
    CHECK(st.pending_bytes <= 4096);
    gate_open();
    void *res;
    pthread_join(t, &res);
    CHECK(res == NULL);
    CHECK_INT(journal_wait_durable(j, 201, 5000), JOURNAL_OK);
    close_journal(j);
    check_replay(dir, 0, 201, true);
}

static void test_append_rules(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.max_record_size = 1000;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    unsigned char big[1001] = {0};
    CHECK_INT(journal_append(j, 0, "x", 1), JOURNAL_ESEQ);
    CHECK_INT(journal_append(j, 1000, big, 1001), JOURNAL_ETOOBIG);
    /* an empty journal starts at any seq: the segment is named after it */
    CHECK_INT(append_range(j, 1000, 1004, false), 0);
    CHECK_INT(journal_append(j, 1006, "x", 1), JOURNAL_ESEQ);
    CHECK_INT(journal_append(j, 1004, "x", 1), JOURNAL_ESEQ);
    CHECK_INT(journal_append(j, 1005, big, 0), JOURNAL_OK); /* empty payloads are records too */
    CHECK_INT(journal_next_seq(j), 1006);
    close_journal(j);
    char p[256];
    seg_path(p, sizeof p, dir, 1000);
    CHECK(file_size(p) > 0);
    /* replay: from before the journal's first record is a gap ... */
    replay_check rc = {.next = 1000};
    char err[JOURNAL_MSG_MAX];
    CHECK_INT(journal_replay(dir, 0, check_record, &rc, err, sizeof err), -1);
    CHECK_CONTAINS(err, "missing");
    /* ... from 999 it is complete */
    replay_check all = {.next = 1000, .replaced_seq = 1005, .replaced = ""};
    CHECK_INT(journal_replay(dir, 999, check_record, &all, err, sizeof err), 0);
    CHECK_INT(all.count, 6);
    CHECK_INT(all.bad, 0);
}

static int stop_at_3(void *ctx, uint64_t seq, const void *data, size_t len) {
    (void)data;
    (void)len;
    *(uint64_t *)ctx = seq;
    return seq == 3 ? 42 : 0;
}

static void test_replay_stop(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 10, false), 0);
    close_journal(j);
    uint64_t last = 0;
    char err[JOURNAL_MSG_MAX];
    CHECK_INT(journal_replay(dir, 0, stop_at_3, &last, err, sizeof err), 42);
    CHECK_INT(last, 3);
    /* an empty data directory replays nothing */
    char empty[128];
    new_dir(empty, sizeof empty);
    CHECK_INT(journal_replay(empty, 0, stop_at_3, &last, err, sizeof err), 0);
}

/* ---- recovery ---- */

static void test_torn_tail_every_byte(void) {
    char dir[128], path[256];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 10, false), 0);
    close_journal(j);
    seg_path(path, sizeof path, dir, 1);
    size_t full;
    unsigned char *pristine = read_all(path, &full);
    CHECK(pristine != NULL);
    if (pristine == NULL) return;
    size_t last_start = full - record_size(10);
    int failures = 0;
    for (size_t cut = last_start; cut < full; cut++) {
        write_all_file(path, pristine, cut);
        journal_recovery_info info;
        j = open_journal(dir, &o, &info);
        if (j == NULL) {
            failures++;
            continue;
        }
        bool torn = cut > last_start;
        if (info.last_seq != 9 || info.tail_truncated != torn ||
            file_size(path) != (long long)last_start || (torn && info.offset != last_start) ||
            info.corruption_truncated) {
            fprintf(stderr, "cut %zu: last_seq %llu truncated %d size %lld offset %llu\n", cut,
                    (unsigned long long)info.last_seq, info.tail_truncated, file_size(path),
                    (unsigned long long)info.offset);
            failures++;
        }
        if (torn && strstr(info.report, "torn tail") == NULL) failures++;
        /* appends go on after the last good record */
        if (journal_append(j, 10, "new-10", 6) != JOURNAL_OK) failures++;
        close_journal(j);
        replay_check rc = {.next = 1, .replaced_seq = 10, .replaced = "new-10"};
        char err[JOURNAL_MSG_MAX];
        if (journal_replay(dir, 0, check_record, &rc, err, sizeof err) != 0 || rc.bad != 0 ||
            rc.count != 10)
            failures++;
    }
    CHECK_INT(failures, 0);

    /* a zero-filled tail (a crash after the size grew but before the data landed) */
    unsigned char zeros[300] = {0};
    unsigned char *with_zeros = malloc(full + sizeof zeros);
    memcpy(with_zeros, pristine, full);
    memcpy(with_zeros + full, zeros, sizeof zeros);
    write_all_file(path, with_zeros, full + sizeof zeros);
    journal_recovery_info info;
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_INT(info.last_seq, 10);
        CHECK(info.tail_truncated);
        CHECK_INT(file_size(path), full);
        close_journal(j);
    }
    /* a bad checksum in the very last record, nothing after it: also a torn tail */
    write_all_file(path, pristine, full);
    flip_byte(path, (long long)full - 1);
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_INT(info.last_seq, 9);
        CHECK(info.tail_truncated);
        CHECK_CONTAINS(info.report, "checksum");
        close_journal(j);
    }
    free(with_zeros);
    free(pristine);
}

static void test_torn_segment_header(void) {
    char dir[128], p1[256], p2[256];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 10, false), 0);
    close_journal(j);
    /* a crash while creating segment 11: its header is cut short */
    seg_path(p1, sizeof p1, dir, 1);
    seg_path(p2, sizeof p2, dir, 11);
    size_t len;
    unsigned char *b = read_all(p1, &len);
    CHECK(b != NULL);
    if (b == NULL) return;
    unsigned char header[JOURNAL_SEGMENT_HEADER_SIZE];
    memcpy(header, b, sizeof header);
    header[24] = 11; /* the start of a header for a segment starting at 11 */
    for (size_t cut = 0; cut < JOURNAL_SEGMENT_HEADER_SIZE; cut += 13) {
        write_all_file(p1, b, len);
        write_all_file(p2, header, cut);
        journal_recovery_info info;
        j = open_journal(dir, &o, &info);
        CHECK(j != NULL);
        if (j == NULL) break;
        CHECK_INT(info.last_seq, 10);
        CHECK(info.tail_truncated);
        CHECK_CONTAINS(info.report, "torn segment header");
        CHECK_INT(file_size(p2), -1); /* removed */
        /* appends go on in segment 1, which is below the size limit */
        CHECK_INT(append_range(j, 11, 12, false), 0);
        close_journal(j);
        CHECK_INT(file_size(p2), -1);
        CHECK(file_size(p1) > (long long)len);
        check_replay(dir, 0, 12, false);
    }
    /* an all-zero header with nothing after it is torn too */
    write_all_file(p1, b, len);
    memset(header, 0, sizeof header);
    write_all_file(p2, header, sizeof header);
    journal_recovery_info info;
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK(info.tail_truncated);
        CHECK_INT(info.last_seq, 10);
        close_journal(j);
    }
    CHECK_INT(file_size(p2), -1);
    free(b);
}

static void test_corruption_in_middle(void) {
    char dir[128], path[256];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 10, false), 0);
    close_journal(j);
    seg_path(path, sizeof path, dir, 1);
    long long off5 = JOURNAL_SEGMENT_HEADER_SIZE;
    for (uint64_t s = 1; s < 5; s++)
        off5 += (long long)record_size(s);
    flip_byte(path, off5 + JOURNAL_RECORD_HEADER_SIZE); /* record 5's first payload byte */
    long long size_before = file_size(path);

    char err[JOURNAL_MSG_MAX], want[64];
    journal_recovery_info info;
    CHECK(journal_open(dir, &o, &info, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "00000000000000000001.wal");
    snprintf(want, sizeof want, "at byte %lld", off5);
    CHECK_CONTAINS(err, want);
    CHECK_CONTAINS(err, "checksum");
    CHECK_INT(file_size(path), size_before); /* nothing was changed */
    CHECK_INT(journal_replay(dir, 0, check_record, &(replay_check){.next = 1}, err, sizeof err),
              -1);
    CHECK_CONTAINS(err, want);

    o.recover_to_corruption = true;
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK(info.corruption_truncated);
    CHECK_INT(info.last_seq, 4);
    CHECK_INT(info.offset, off5);
    CHECK_INT(info.discarded_records, 5); /* 6..10 were valid */
    CHECK_INT(info.discarded_bytes, size_before - off5);
    CHECK_CONTAINS(info.report, "recover_to_corruption");
    CHECK_INT(file_size(path), off5);
    char aside[300];
    snprintf(aside, sizeof aside, "%s.discarded-at-%lld", path, off5);
    CHECK_INT(file_size(aside), size_before - off5);
    CHECK_INT(append_range(j, 5, 12, false), 0);
    close_journal(j);
    check_replay(dir, 0, 12, false);
}

static void test_corruption_in_older_segment(void) {
    char dir[128], path[256];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.segment_size = 4096;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 300, false), 0);
    close_journal(j);
    seg_list l = list_segments(dir);
    CHECK(l.n >= 3);
    if (l.n < 3) return;
    /* damage the LAST record of the first segment: the tail of a file, but not of the journal */
    seg_path(path, sizeof path, dir, l.first[0]);
    long long sz = file_size(path);
    flip_byte(path, sz - 1);
    uint64_t bad_seq = l.first[1] - 1;
    long long bad_off = sz - (long long)record_size(bad_seq);
    char err[JOURNAL_MSG_MAX], want[64];
    CHECK(journal_open(dir, &o, NULL, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "00000000000000000001.wal");
    snprintf(want, sizeof want, "at byte %lld", bad_off);
    CHECK_CONTAINS(err, want);

    o.recover_to_corruption = true;
    journal_recovery_info info;
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(info.last_seq, bad_seq - 1);
    CHECK_INT(info.segments, 1);
    CHECK_INT(info.discarded_segments, l.n - 1);
    CHECK_INT(info.discarded_records, 300 - bad_seq); /* the later segments' records */
    CHECK_INT(append_range(j, bad_seq, 310, false), 0);
    close_journal(j);
    check_replay(dir, 0, 310, false);
    char moved[300];
    seg_path(path, sizeof path, dir, l.first[1]);
    snprintf(moved, sizeof moved, "%s.discarded", path);
    CHECK(file_size(moved) > 0);
}

static void test_sequence_gaps(void) {
    char dir[128], p1[256], p2[256], err[JOURNAL_MSG_MAX];
    journal_options o = test_options();
    fio_reset();

    /* hand-made segments open like the journal's own */
    new_dir(dir, sizeof dir);
    mkdir(dir, 0755);
    snprintf(p1, sizeof p1, "%s/journal", dir);
    mkdir(p1, 0755);
    seg_path(p1, sizeof p1, dir, 1);
    uint64_t good[] = {1, 2, 3, 4, 5};
    raw_segment(p1, SCHEMA, 1, good, 5);
    journal_recovery_info info;
    journal *j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_INT(info.last_seq, 5);
        close_journal(j);
    }
    check_replay(dir, 0, 5, false);

    /* a gap inside a segment */
    uint64_t gap[] = {1, 2, 3, 5, 6};
    raw_segment(p1, SCHEMA, 1, gap, 5);
    long long off =
        JOURNAL_SEGMENT_HEADER_SIZE + (long long)(record_size(1) + record_size(2) + record_size(3));
    CHECK(journal_open(dir, &o, NULL, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "sequence gap");
    char want[64];
    snprintf(want, sizeof want, "at byte %lld", off);
    CHECK_CONTAINS(err, want);
    CHECK_CONTAINS(err, "00000000000000000001.wal");
    o.recover_to_corruption = true;
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_INT(info.last_seq, 3);
        CHECK(info.corruption_truncated);
        close_journal(j);
    }
    o.recover_to_corruption = false;

    /* a gap between segments */
    uint64_t a[] = {1, 2, 3}, b[] = {5, 6};
    raw_segment(p1, SCHEMA, 1, a, 3);
    seg_path(p2, sizeof p2, dir, 5);
    raw_segment(p2, SCHEMA, 5, b, 2);
    CHECK(journal_open(dir, &o, NULL, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "00000000000000000005.wal");
    CHECK_CONTAINS(err, "sequence gap");
    CHECK_INT(journal_replay(dir, 0, check_record, &(replay_check){.next = 1}, err, sizeof err),
              -1);
    CHECK_CONTAINS(err, "sequence gap");
    o.recover_to_corruption = true;
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_INT(info.last_seq, 3);
        CHECK_INT(info.discarded_segments, 1);
        CHECK_INT(info.discarded_records, 2);
        CHECK_INT(append_range(j, 4, 6, false), 0);
        close_journal(j);
        check_replay(dir, 0, 6, false);
    }

    /* another schema is refused, even with recover_to_corruption */
    new_dir(dir, sizeof dir);
    mkdir(dir, 0755);
    snprintf(p1, sizeof p1, "%s/journal", dir);
    mkdir(p1, 0755);
    seg_path(p1, sizeof p1, dir, 1);
    raw_segment(p1, SCHEMA + 1, 1, good, 5);
    CHECK(journal_open(dir, &o, NULL, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "schema");
    CHECK_CONTAINS(err, "00000000000000000001.wal");
    CHECK_INT(file_size(p1) > 0, 1);
}

/* ---- I/O errors ---- */

static atomic_int notify_violations;
static atomic_llong notify_last;

/* Sync mode, one segment, fixed-size records: record d ends at 40 + d * FIXED_REC, and that
 * byte must have been synced before d is announced. */
static void check_notify(void *ctx, uint64_t durable) {
    (void)ctx;
    long long end = JOURNAL_SEGMENT_HEADER_SIZE + (long long)durable * FIXED_REC;
    if (durable > 0 && end > fio.wal_synced) notify_violations++;
    notify_last = (long long)durable;
}

static void test_enospc_and_retry(void) {
    char dir[128], path[256];
    new_dir(dir, sizeof dir);
    fio_reset();
    notify_violations = 0;
    journal_options o = test_options();
    o.notify = check_notify;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 100, true), 0);
    CHECK_INT(journal_wait_durable(j, 100, 5000), JOURNAL_OK);
    CHECK(journal_error(j) == NULL);

    /* The disk fills up in the middle of a batch: 100 bytes land, then ENOSPC. The writer is
     * held in the sync of record 101 while 102..110 are accepted, then the fault is armed. */
    gate_close();
    CHECK_INT(append_range(j, 101, 101, true), 0);
    CHECK(gate_wait_held());
    CHECK_INT(append_range(j, 102, 110, true), 0); /* accepted before anyone knew */
    fio.write_budget = 100;
    fio.write_errno = ENOSPC;
    gate_open();
    CHECK_INT(journal_wait_durable(j, 110, 5000), JOURNAL_EFAILED);
    CHECK_INT(journal_durable_seq(j), 101);
    const char *e = journal_error(j);
    CHECK(e != NULL);
    CHECK_CONTAINS(e, "00000000000000000001.wal");
    CHECK_CONTAINS(e, "errno 28");
    CHECK_CONTAINS(e, "write");
    unsigned char buf[FIXED_LEN];
    fixed_payload(111, buf);
    CHECK_INT(journal_append(j, 111, buf, FIXED_LEN), JOURNAL_EFAILED); /* refused, unchanged */
    CHECK_INT(journal_next_seq(j), 111);
    CHECK_INT(journal_retry(j), JOURNAL_EFAILED); /* still full */
    CHECK_INT(journal_durable_seq(j), 101);
    journal_stats st;
    journal_get_stats(j, &st);
    CHECK(st.failed);

    fio.write_errno = 0; /* space again */
    CHECK_INT(journal_retry(j), JOURNAL_OK);
    CHECK_INT(journal_wait_durable(j, 110, 5000), JOURNAL_OK);
    CHECK(journal_error(j) == NULL);
    CHECK_INT(append_range(j, 111, 120, true), 0);
    CHECK_INT(journal_wait_durable(j, 120, 5000), JOURNAL_OK);

    /* fdatasync fails once with EIO: the writer must not trust the page cache; the batch is
     * written again and synced */
    gate_close();
    CHECK_INT(append_range(j, 121, 121, true), 0);
    CHECK(gate_wait_held());
    CHECK_INT(append_range(j, 122, 130, true), 0);
    fio.fdatasync_failures = 1;
    fio.fdatasync_errno = EIO;
    gate_open();
    CHECK_INT(journal_wait_durable(j, 130, 5000), JOURNAL_EFAILED);
    CHECK_INT(journal_durable_seq(j), 120);
    e = journal_error(j);
    CHECK(e != NULL);
    CHECK_CONTAINS(e, "fdatasync");
    CHECK_CONTAINS(e, "errno 5");
    CHECK_INT(journal_retry(j), JOURNAL_OK);
    CHECK_INT(journal_wait_durable(j, 130, 5000), JOURNAL_OK);
    close_journal(j);
    CHECK_INT(notify_violations, 0);
    CHECK_INT(notify_last, 130);

    /* exactly 130 records on disk, none twice */
    seg_path(path, sizeof path, dir, 1);
    CHECK_INT(file_size(path), JOURNAL_SEGMENT_HEADER_SIZE + 130 * FIXED_REC);
    journal_recovery_info info;
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_INT(info.last_seq, 130);
        CHECK(!info.tail_truncated);
        close_journal(j);
    }
    check_replay(dir, 0, 130, true);
}

static void test_segment_create_failure(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.segment_size = 4096;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 50, true), 0); /* 40 + 50 * 66 = 3340 bytes: one segment */
    CHECK_INT(journal_wait_durable(j, 50, 5000), JOURNAL_OK);
    fio.create_errno = ENOSPC;
    CHECK_INT(append_range(j, 51, 100, true), 0); /* the segment fills at 62 */
    CHECK_INT(journal_wait_durable(j, 100, 5000), JOURNAL_EFAILED);
    uint64_t d = journal_durable_seq(j);
    CHECK(d >= 50 && d < 100);
    CHECK_CONTAINS(journal_error(j), "create");
    fio.create_errno = 0;
    CHECK_INT(journal_retry(j), JOURNAL_OK);
    CHECK_INT(journal_wait_durable(j, 100, 5000), JOURNAL_OK);
    close_journal(j);
    check_replay(dir, 0, 100, true);
    seg_list l = list_segments(dir);
    CHECK_INT(l.n, 2);
    CHECK_INT(l.problems, 0);
}

static void test_automatic_retry(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.retry_interval_ms = 20;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 10, true), 0);
    CHECK_INT(journal_wait_durable(j, 10, 5000), JOURNAL_OK);
    gate_close();
    CHECK_INT(append_range(j, 11, 11, true), 0);
    CHECK(gate_wait_held());
    CHECK_INT(append_range(j, 12, 20, true), 0);
    fio.fdatasync_failures = 3;
    fio.fdatasync_errno = EIO;
    gate_open();
    for (int i = 0; i < 1000 && journal_durable_seq(j) < 20; i++)
        sleep_ms(5);
    CHECK_INT(journal_durable_seq(j), 20);
    CHECK(journal_error(j) == NULL);
    CHECK_INT(fio.fdatasync_failures, 0);
    close_journal(j);
    check_replay(dir, 0, 20, true);
}

static void test_close_while_failed(void) {
    char dir[128];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 10, true), 0);
    CHECK_INT(journal_wait_durable(j, 10, 5000), JOURNAL_OK);
    gate_close();
    CHECK_INT(append_range(j, 11, 11, true), 0);
    CHECK(gate_wait_held());
    CHECK_INT(append_range(j, 12, 13, true), 0);
    fio.write_errno = EIO;
    gate_open();
    CHECK_INT(journal_wait_durable(j, 13, 5000), JOURNAL_EFAILED);
    CHECK_INT(journal_durable_seq(j), 11);
    char err[JOURNAL_MSG_MAX];
    CHECK_INT(journal_close(j, err, sizeof err), JOURNAL_EFAILED);
    CHECK_CONTAINS(err, "12..13 not durable");
    CHECK_CONTAINS(err, "errno 5");
    fio.write_errno = 0;
    check_replay(dir, 0, 11, true); /* the durable part is intact */
}

/* ---- snapshots and pruning ---- */

static void snapshot_body(uint64_t seq, unsigned char *buf, size_t len) {
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(seq + i * 3);
}

static void test_snapshots(void) {
    char dir[128], err[JOURNAL_MSG_MAX], path[256];
    new_dir(dir, sizeof dir);
    uint64_t seq;
    unsigned char *bytes;
    size_t len;
    CHECK_INT(snapshot_load_latest(dir, &seq, &bytes, &len, err, sizeof err), 0);
    unsigned char body[3000], want[3000];
    for (uint64_t s = 100; s <= 300; s += 100) {
        snapshot_body(s, body, sizeof body);
        CHECK_INT(snapshot_write(dir, s, body, sizeof body - s, err, sizeof err), 0);
    }
    CHECK_INT(snapshot_load_latest(dir, &seq, &bytes, &len, err, sizeof err), 1);
    CHECK_INT(seq, 300);
    CHECK_INT(len, sizeof body - 300);
    snapshot_body(300, want, sizeof want);
    CHECK(bytes != NULL && memcmp(bytes, want, len) == 0);
    CHECK_STR(err, "");
    free(bytes);

    /* the newest is damaged: reported, and the previous one is loaded */
    snprintf(path, sizeof path, "%s/snapshots/snapshot-%020d.bin", dir, 300);
    flip_byte(path, SNAPSHOT_HEADER_SIZE + 1000);
    CHECK_INT(snapshot_load_latest(dir, &seq, &bytes, &len, err, sizeof err), 1);
    CHECK_INT(seq, 200);
    snapshot_body(200, want, sizeof want);
    CHECK(bytes != NULL && len == sizeof body - 200 && memcmp(bytes, want, len) == 0);
    CHECK_CONTAINS(err, "snapshot-00000000000000000300.bin");
    CHECK_CONTAINS(err, "checksum");
    free(bytes);

    /* a truncated one too */
    snprintf(path, sizeof path, "%s/snapshots/snapshot-%020d.bin", dir, 200);
    CHECK_INT(truncate(path, 20), 0);
    CHECK_INT(snapshot_load_latest(dir, &seq, &bytes, &len, err, sizeof err), 1);
    CHECK_INT(seq, 100);
    CHECK_CONTAINS(err, "snapshot-00000000000000000200.bin");
    free(bytes);
    CHECK_INT(snapshot_inspect(dir, NULL, NULL, err, sizeof err), 2);

    /* all damaged: an error, never an empty state */
    snprintf(path, sizeof path, "%s/snapshots/snapshot-%020d.bin", dir, 100);
    flip_byte(path, 3);
    CHECK_INT(snapshot_load_latest(dir, &seq, &bytes, &len, err, sizeof err), -1);
    CHECK_CONTAINS(err, "no valid snapshot");
    CHECK(bytes == NULL);

    /* an empty body is a valid snapshot; the same seq can be written again */
    CHECK_INT(snapshot_write(dir, 400, "", 0, err, sizeof err), 0);
    CHECK_INT(snapshot_write(dir, 400, "abc", 3, err, sizeof err), 0);
    CHECK_INT(snapshot_load_latest(dir, &seq, &bytes, &len, err, sizeof err), 1);
    CHECK_INT(seq, 400);
    CHECK_INT(len, 3);
    free(bytes);
}

static void test_prune(void) {
    char dir[128], err[JOURNAL_MSG_MAX];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.segment_size = 4096;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 1000, false), 0);
    CHECK_INT(journal_wait_durable(j, 1000, 10000), JOURNAL_OK);
    seg_list before = list_segments(dir);
    CHECK(before.n >= 10);
    unsigned char body[100] = {0};
    /* one snapshot: the fallback would need the whole journal, so nothing goes */
    CHECK_INT(snapshot_write(dir, 300, body, sizeof body, err, sizeof err), 0);
    CHECK_INT(journal_prune(j, 300, err, sizeof err), 0);
    CHECK_INT(list_segments(dir).n, before.n);
    CHECK_INT(snapshot_write(dir, 600, body, sizeof body, err, sizeof err), 0);
    CHECK_INT(snapshot_write(dir, 900, body, sizeof body, err, sizeof err), 0);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/snapshots/snapshot-%020d.bin.tmp", dir, 500);
    write_all_file(tmp, "x", 1); /* left by a crash */
    int deleted = journal_prune(j, 900, err, sizeof err);
    CHECK(deleted > 0);
    /* the limit is the second-newest snapshot (600): segments wholly <= 600 are gone, and the
     * first one left holds 601 */
    seg_list after = list_segments(dir);
    CHECK(after.n < before.n);
    CHECK(after.n >= 2);
    CHECK(after.first[0] <= 601);
    CHECK(after.first[1] > 601);
    CHECK_INT(deleted, (before.n - after.n) + 2); /* + snapshot 300 + the temp file */
    CHECK_INT(snapshot_inspect(dir, NULL, NULL, err, sizeof err), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/snapshots/snapshot-%020d.bin", dir, 300);
    CHECK_INT(file_size(p), -1);
    CHECK_INT(file_size(tmp), -1);
    check_replay(dir, 600, 1000, false);
    replay_check rc = {.next = 1};
    CHECK_INT(journal_replay(dir, 0, check_record, &rc, err, sizeof err), -1);
    CHECK_CONTAINS(err, "missing");

    /* the active segment is never deleted, even when all its records are old */
    CHECK_INT(snapshot_write(dir, 1000, body, sizeof body, err, sizeof err), 0);
    CHECK_INT(snapshot_write(dir, 1001, body, sizeof body, err, sizeof err), 0);
    CHECK(journal_prune(j, 1000, err, sizeof err) > 0);
    seg_list last = list_segments(dir);
    CHECK_INT(last.n, 1);
    CHECK_INT(append_range(j, 1001, 1010, false), 0);
    close_journal(j);
    journal_recovery_info info;
    j = open_journal(dir, &o, &info);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_INT(info.first_seq, last.first[0]);
        CHECK_INT(info.last_seq, 1010);
        close_journal(j);
    }
    check_replay(dir, 1000, 1010, false);
}

/* A reader behind the second-newest snapshot (the history store, whose position is the prune
 * bound after a crash) rebuilds from the newest snapshot at or before its position and the
 * journal after that snapshot: pruning keeps both, or everything when there is no such
 * snapshot. */
static void test_prune_behind_snapshots(void) {
    char dir[128], err[JOURNAL_MSG_MAX];
    new_dir(dir, sizeof dir);
    fio_reset();
    journal_options o = test_options();
    o.segment_size = 4096;
    journal *j = open_journal(dir, &o, NULL);
    CHECK(j != NULL);
    if (j == NULL) return;
    CHECK_INT(append_range(j, 1, 1000, false), 0);
    CHECK_INT(journal_wait_durable(j, 1000, 10000), JOURNAL_OK);
    seg_list before = list_segments(dir);
    unsigned char body[100] = {0};
    CHECK_INT(snapshot_write(dir, 300, body, sizeof body, err, sizeof err), 0);
    CHECK_INT(snapshot_write(dir, 600, body, sizeof body, err, sizeof err), 0);
    CHECK_INT(snapshot_write(dir, 900, body, sizeof body, err, sizeof err), 0);
    /* no snapshot at or before 250: only the whole journal rebuilds the state at 250 */
    CHECK_INT(journal_prune(j, 250, err, sizeof err), 0);
    CHECK_INT(list_segments(dir).n, before.n);
    check_replay(dir, 0, 1000, false);
    /* at 450: snapshot 300 and the journal after it stay */
    CHECK(journal_prune(j, 450, err, sizeof err) > 0);
    char p[256];
    snprintf(p, sizeof p, "%s/snapshots/snapshot-%020d.bin", dir, 300);
    CHECK(file_size(p) > 0);
    seg_list after = list_segments(dir);
    CHECK(after.n < before.n);
    CHECK(after.first[0] <= 301);
    check_replay(dir, 300, 1000, false);
    /* caught up: back to the two newest snapshots */
    CHECK(journal_prune(j, 1000, err, sizeof err) > 0);
    CHECK_INT(file_size(p), -1);
    check_replay(dir, 600, 1000, false);
    close_journal(j);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/qaex_journal_XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN_TEST(test_crc32c_vectors);
    RUN_TEST(test_crc32c_agree);
    RUN_TEST(test_round_trip_rotation);
    RUN_TEST(test_group_commit);
    RUN_TEST(test_durable_after_fdatasync);
    RUN_TEST(test_async_mode);
    RUN_TEST(test_backpressure);
    RUN_TEST(test_append_rules);
    RUN_TEST(test_replay_stop);
    RUN_TEST(test_torn_tail_every_byte);
    RUN_TEST(test_torn_segment_header);
    RUN_TEST(test_corruption_in_middle);
    RUN_TEST(test_corruption_in_older_segment);
    RUN_TEST(test_sequence_gaps);
    RUN_TEST(test_enospc_and_retry);
    RUN_TEST(test_segment_create_failure);
    RUN_TEST(test_automatic_retry);
    RUN_TEST(test_close_while_failed);
    RUN_TEST(test_snapshots);
    RUN_TEST(test_prune);
    RUN_TEST(test_prune_behind_snapshots);
    rm_rf(tmp_root);
    return CHECK_REPORT();
}
