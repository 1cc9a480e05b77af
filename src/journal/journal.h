/* The write-ahead journal and the snapshots: the storage of section 8 of the spec.
 *
 * The journal is a sequence of opaque records, each carrying a 64-bit sequence number that
 * grows by exactly one from record to record. It lives in DIR/journal/ as segment files named
 * by the first sequence number they hold (00000000000000000001.wal). A segment starts with a
 * 40-byte header and continues with framed records; every integer is little-endian:
 *
 *     header  "QAEXWAL1" | u32 version | u32 header size (40) | u64 schema id | u64 first seq
 *             | u32 crc32c of the 32 bytes before | u32 zero
 *     record  u32 payload length | u32 crc32c over (seq, payload) | u64 seq | payload
 *
 * The schema id is the caller's fingerprint of its record layout: a binary whose commands are
 * laid out differently refuses a journal it would misread.
 *
 * Threads. One producer (the engine thread) appends: journal_append() copies the record into an
 * in-memory batch and returns without a system call. The journal's own writer thread takes the
 * whole batch, writes it with one write(2), makes it durable with one fdatasync(2) (group commit:
 * one sync covers everything appended meanwhile), then publishes journal_durable_seq() and calls
 * the notify callback, where the server wakes the thread that releases acknowledgements. With
 * durability "async" the sequence is published right after write(2) and the data is synced every
 * async_fsync_interval_ms. If the writer falls more than max_pending_bytes behind, append blocks.
 *
 * Failures. When a write or sync fails (ENOSPC, EIO) the journal enters the failed state: the
 * durable sequence stops, journal_append() refuses new records (JOURNAL_EFAILED, the server
 * answers 5002), journal_error() names the file and the errno. journal_retry(), or the writer by
 * itself every retry_interval_ms, cuts the segment back to its last synced byte and writes again
 * every record accepted since, so nothing accepted is lost or written twice.
 *
 * Recovery. journal_open() reads every segment, checks headers, checksums and the continuity of
 * sequence numbers. A torn tail (the end of the last segment: a partial record, or a bad one with
 * nothing valid after it) is reported and cut off. Anything else (a bad record followed by valid
 * ones, a bad record in an older segment, a sequence gap) stops the open with the file and byte
 * offset, unless recover_to_corruption is set: then the journal is cut there, the cut data is kept
 * aside in files ending ".discarded" and the report says what was cut.
 *
 * Snapshots are whole files in DIR/snapshots/snapshot-<20-digit seq>.bin, written to a temporary
 * file, synced and renamed, so a snapshot file is complete or absent; the newest valid one is
 * loaded, and a damaged newest one is reported and skipped.
 *
 * Owner-thread functions: journal_open, journal_append, journal_retry, journal_error,
 * journal_prune, journal_close. Any thread: journal_durable_seq, journal_wait_durable,
 * journal_get_stats. journal_replay and journal_inspect read files; call replay before the first
 * append. */
#ifndef QAEX_JOURNAL_H
#define QAEX_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define JOURNAL_FORMAT_VERSION 1
#define JOURNAL_SEGMENT_HEADER_SIZE 40
#define JOURNAL_RECORD_HEADER_SIZE 16
#define SNAPSHOT_FORMAT_VERSION 1
#define SNAPSHOT_HEADER_SIZE 40
#define JOURNAL_PATH_MAX 1024
#define JOURNAL_MSG_MAX 640

/* Results of the owner-thread calls. */
enum {
    JOURNAL_OK = 0,
    JOURNAL_EFAILED = -1,  /* the journal is in the failed state; see journal_error() */
    JOURNAL_ESEQ = -2,     /* the sequence number is not the next one (journal_next_seq) */
    JOURNAL_ETOOBIG = -3,  /* longer than max_record_size */
    JOURNAL_ENOMEM = -4,   /* the batch could not grow */
    JOURNAL_ETIMEDOUT = -5 /* journal_wait_durable only */
};

typedef enum journal_durability {
    JOURNAL_SYNC = 0, /* the durable sequence advances after fdatasync (the default) */
    JOURNAL_ASYNC     /* after write(2); synced every async_fsync_interval_ms */
} journal_durability;

/* The system calls the journal makes, so tests can inject ENOSPC and EIO and count syncs. Each
 * behaves as its POSIX namesake (returning -1 and setting errno on failure) and gets `ctx`
 * first. A struct with a NULL member uses the real call for that member. */
typedef struct journal_io {
    void *ctx;
    int (*open)(void *ctx, const char *path, int flags, mode_t mode);
    int (*close)(void *ctx, int fd);
    ssize_t (*read)(void *ctx, int fd, void *buf, size_t len);
    ssize_t (*write)(void *ctx, int fd, const void *buf, size_t len);
    int (*fdatasync)(void *ctx, int fd);
    int (*fsync)(void *ctx, int fd); /* directories and snapshots */
    int (*ftruncate)(void *ctx, int fd, off_t len);
    int (*unlink)(void *ctx, const char *path);
    int (*rename)(void *ctx, const char *from, const char *to);
} journal_io;

/* Called on the writer thread after the durable sequence advanced or the journal failed. It must
 * be short and must not call back into the journal except journal_durable_seq. */
typedef void (*journal_notify_fn)(void *ctx, uint64_t durable_seq);

typedef struct journal_options {
    uint64_t schema_id;               /* written into new segments, required of old ones */
    journal_durability durability;    /* JOURNAL_SYNC */
    uint64_t segment_size;            /* rotate once a segment reaches this; 64 MiB, >= 4 KiB */
    size_t max_pending_bytes;         /* append blocks beyond this backlog; 32 MiB, >= 1 KiB */
    uint32_t max_record_size;         /* 16 MiB */
    uint32_t async_fsync_interval_ms; /* 100 */
    uint32_t retry_interval_ms;       /* automatic retry after a failure; 1000; 0 = never */
    bool recover_to_corruption;       /* cut the journal at mid-journal corruption */
    journal_notify_fn notify;         /* optional */
    void *notify_ctx;
    const journal_io *io; /* NULL: the real system calls */
} journal_options;

void journal_options_default(journal_options *o);

/* What journal_open found and did. */
typedef struct journal_recovery_info {
    uint32_t segments;            /* segment files in use */
    uint64_t records;             /* valid records in them */
    uint64_t first_seq;           /* 0 when there is no record */
    uint64_t last_seq;            /* the last valid record, 0 when none */
    bool tail_truncated;          /* a torn tail was cut (or a torn new segment removed) */
    bool corruption_truncated;    /* recover_to_corruption cut the journal */
    char file[JOURNAL_PATH_MAX];  /* the file cut */
    uint64_t offset;              /* where it was cut */
    uint64_t discarded_bytes;     /* bytes cut from that file */
    uint64_t discarded_records;   /* checksum-valid records in what was cut */
    uint32_t discarded_segments;  /* later segments set aside */
    char report[JOURNAL_MSG_MAX]; /* one human-readable line, "" when nothing was cut */
} journal_recovery_info;

typedef struct journal journal;

/* Opens (creating DIR and DIR/journal as needed), recovers and starts the writer. NULL on error,
 * with the reason in err. `info` may be NULL. */
journal *journal_open(const char *dir, const journal_options *opt, journal_recovery_info *info,
                      char *err, size_t errlen);

/* Accepts one record: `seq` must be journal_next_seq() (any seq >= 1 in an empty journal). The
 * data is copied; the record is durable once journal_durable_seq() >= seq. Blocks while the
 * backlog exceeds max_pending_bytes. Nothing is accepted when the result is not JOURNAL_OK. */
int journal_append(journal *j, uint64_t seq, const void *data, size_t len);

/* The sequence the next append must carry; 0 when the journal is empty (any). */
uint64_t journal_next_seq(const journal *j);

/* The last accepted record, 0 when none. */
uint64_t journal_last_seq(const journal *j);

/* Every record up to this one is durable (in async mode: written). Any thread. */
uint64_t journal_durable_seq(const journal *j);

/* Waits until journal_durable_seq() >= seq: JOURNAL_OK, JOURNAL_EFAILED (the journal failed) or
 * JOURNAL_ETIMEDOUT. timeout_ms < 0 waits without limit. Any thread. */
int journal_wait_durable(journal *j, uint64_t seq, int timeout_ms);

/* NULL while healthy; in the failed state a message naming the operation, file and errno. Valid
 * until the next journal call of the owner thread. */
const char *journal_error(journal *j);

/* Retries the failed writes now and waits for the outcome: JOURNAL_OK when the journal is
 * healthy again (or was), JOURNAL_EFAILED when the retry failed too. */
int journal_retry(journal *j);

/* Deletes the segments whose records are all <= upto_seq (never the active segment) and all but
 * the two newest snapshots. To keep the fallback to the older of those two snapshots possible,
 * segments holding records newer than it are kept: the effective limit is the seq of the
 * second-newest snapshot (0 with fewer than two snapshots). When upto_seq is below it, the
 * limit is the newest snapshot at or before upto_seq, which is kept too (0 when there is none),
 * so the state at upto_seq can still be rebuilt. Returns the number of files deleted, -1 on
 * error (err). */
int journal_prune(journal *j, uint64_t upto_seq, char *err, size_t errlen);

/* Counters since open. */
typedef struct journal_stats {
    uint64_t records; /* appended */
    uint64_t bytes;   /* framed bytes appended */
    uint64_t writes;  /* write(2) calls for records */
    uint64_t syncs;   /* fdatasync(2) calls for records */
    uint64_t segments_created;
    uint64_t next_seq;
    uint64_t durable_seq;
    uint64_t pending_bytes; /* accepted, not yet synced */
    bool failed;
} journal_stats;

void journal_get_stats(journal *j, journal_stats *out);

/* Writes everything accepted, syncs, stops the writer and frees the journal. JOURNAL_OK when
 * every accepted record is durable; otherwise JOURNAL_EFAILED with the reason in err (after one
 * last retry). */
int journal_close(journal *j, char *err, size_t errlen);

/* ---- reading ---- */

/* One record: return 0 to go on, anything else to stop (and that value is returned). */
typedef int (*journal_record_fn)(void *ctx, uint64_t seq, const void *data, size_t len);

/* Calls fn for every record with seq > from_seq, in order, checking checksums and continuity.
 * It does not know the schema id: open the journal first (journal_open refuses another schema
 * and cuts a torn tail), then replay, then append.
 * 0 when all were delivered; -1 on any problem (a gap before from_seq + 1, a bad record), with the
 * file and offset in err; or the callback's non-zero value. */
int journal_replay(const char *dir, uint64_t from_seq, journal_record_fn fn, void *ctx, char *err,
                   size_t errlen);

/* One segment as found on disk. */
typedef struct journal_segment_report {
    char path[JOURNAL_PATH_MAX];
    uint64_t name_seq; /* from the file name */
    uint32_t version;  /* from the header (0 if unreadable) */
    uint64_t schema_id;
    uint64_t file_size;
    uint64_t valid_size; /* the end of the last valid record */
    uint64_t records;
    uint64_t first_seq, last_seq; /* of the valid records; 0 when none */
    bool ok;
    bool torn_tail; /* the problem is a torn tail that journal_open cuts silently */
    uint64_t problem_offset;
    char problem[JOURNAL_MSG_MAX];
} journal_segment_report;

typedef void (*journal_segment_fn)(void *ctx, const journal_segment_report *r);

/* Reads every segment in order without changing anything: rec_fn (optional) gets each valid
 * record with seq > from_seq until a segment's first problem; seg_fn (optional) gets each
 * segment's report, including continuity with the previous segment. Returns the number of
 * segments with a problem, or -1 (err) when the directory cannot be read. Stops early when rec_fn
 * returns non-zero. */
int journal_inspect(const char *dir, uint64_t from_seq, journal_record_fn rec_fn,
                    journal_segment_fn seg_fn, void *ctx, char *err, size_t errlen);

/* ---- snapshots ---- */

/* Writes DIR/snapshots/snapshot-<seq>.bin durably (temp file, fsync, rename, fsync dir).
 * 0, or -1 with err. */
int snapshot_write(const char *dir, uint64_t seq, const void *bytes, size_t len, char *err,
                   size_t errlen);

/* Loads the newest valid snapshot into a malloc'd buffer (*bytes, free it). 1 when loaded (err
 * then holds "" or a warning naming newer snapshots that were damaged and skipped), 0 when there
 * is no snapshot, -1 when snapshots exist but none is valid (err). */
int snapshot_load_latest(const char *dir, uint64_t *seq, unsigned char **bytes, size_t *len,
                         char *err, size_t errlen);

typedef struct snapshot_report {
    char path[JOURNAL_PATH_MAX];
    uint64_t seq;    /* from the name */
    uint64_t length; /* body bytes, from the header */
    uint64_t file_size;
    bool ok;
    char problem[JOURNAL_MSG_MAX];
} snapshot_report;

typedef void (*snapshot_fn)(void *ctx, const snapshot_report *r);

/* Checks every snapshot, oldest first. The number of damaged ones, or -1 (err). */
int snapshot_inspect(const char *dir, snapshot_fn fn, void *ctx, char *err, size_t errlen);

#endif
