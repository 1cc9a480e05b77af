/* Durability for the engine thread: a write-ahead journal of commands, snapshots, recovery.
 *
 * Every command is journaled BEFORE the engine applies it, so the journal holds exactly the
 * command sequence the engine has seen (rejected commands included: replay rejects them again,
 * identically). When the journal cannot take a record, the command is refused with 5002 and
 * nothing changes. Snapshots are encoded on the engine thread and written by a background thread
 * once the journal is durable up to them. */
#ifndef QAEX_PERSISTENCE_H
#define QAEX_PERSISTENCE_H

#include "engine/engine.h"
#include "journal/journal.h"
#include "server/metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct persistence persistence;

typedef struct persistence_options {
    const char *data_dir;
    bool async_durability;
    uint64_t segment_size;
    uint64_t snapshot_every_commands; /* 0: never by count */
    uint32_t snapshot_every_secs;     /* 0: never by time */
    bool recover_to_corruption;
    journal_notify_fn notify; /* called from the journal thread when the durable seq moves */
    void *notify_ctx;
    metrics_histogram *fsync_seconds; /* each journal fdatasync observed here (NULL: none) */
} persistence_options;

typedef struct persistence_recovery {
    bool from_snapshot;
    uint64_t snapshot_seq;
    uint64_t replayed; /* journal records applied after the snapshot */
    uint64_t last_seq; /* the last command recovered */
    char report[1024]; /* what was found and cut, "" when the data was clean */
} persistence_recovery;

/* Recovers the engine from DIR (the newest valid snapshot plus the journal after it) or creates
 * a fresh one from cfg, and opens the journal for appending. NULL with err on failure. */
persistence *persistence_open(const persistence_options *opt, const engine_config *cfg,
                              engine **out, persistence_recovery *info, char *err, size_t errlen);

/* Journals a command: 0 and its sequence number, or -1 with a 5002 message (disk full, I/O
 * error). Engine thread only. */
int persistence_log(persistence *p, const command *cmd, uint64_t *seq, char *err, size_t errlen);

/* The last sequence journaled, and the last one on disk (any thread). */
uint64_t persistence_last_seq(const persistence *p);
/* The data directory: journal segments (*.wal) and snapshots (snapshot-*.bin). */
const char *persistence_dir(const persistence *p);
uint64_t persistence_durable_seq(const persistence *p);

/* Takes a snapshot when the interval has passed (engine thread, between commands). */
void persistence_tick(persistence *p, const engine *e, int64_t now_ns);
/* A snapshot now (engine thread); returns 0 once it is on disk. */
int persistence_snapshot(persistence *p, const engine *e, char *err, size_t errlen);
/* A snapshot in the background, as the interval takes them: a forked child encodes it, so the
 * calling thread pays only the fork. 0 when started, -1 when one is still being written or the
 * fork failed. persistence_snapshot_wait returns once none is being written; true when the
 * one started last (or a later one) reached the disk. Engine thread only, like the rest. */
int persistence_snapshot_start(persistence *p, const engine *e);
bool persistence_snapshot_wait(persistence *p);

/* Health for monitoring: journal failed, and the reason. */
bool persistence_failed(persistence *p, char *why, size_t whylen);

/* Flushes the journal, writes a final snapshot, stops the threads. */
void persistence_close(persistence *p, const engine *e);

/* Called on the engine thread right after a command was journaled as `seq` (before the engine
 * applies it); it must not block (the history feed copies the command into a ring). */
typedef void (*persistence_log_hook)(void *ctx, uint64_t seq, const command *cmd);
void persistence_set_log_hook(persistence *p, persistence_log_hook fn, void *ctx);

/* Journal segments holding commands after guard(ctx) are never pruned (the history store still
 * needs them to catch up): the prune bound is min(newest snapshot, guard). Any thread may move
 * the guard's value; it is read on the engine thread. */
typedef uint64_t (*persistence_prune_guard)(void *ctx);
void persistence_set_prune_guard(persistence *p, persistence_prune_guard fn, void *ctx);

/* Loads the newest valid snapshot of DIR whose sequence is at most max_seq into a malloc'd
 * buffer (*bytes, free it): 1 when loaded, 0 when there is none, -1 on error (err). */
int persistence_snapshot_load_at_most(const char *dir, uint64_t max_seq, uint64_t *seq,
                                      unsigned char **bytes, size_t *len, char *err, size_t errlen);

/* The byte form of a command in the journal (exposed for the tools and tests). */
size_t command_encode(const command *cmd, unsigned char *out, size_t cap);
int command_decode(const unsigned char *in, size_t len, command *cmd);
uint64_t command_schema_id(void);

#endif
