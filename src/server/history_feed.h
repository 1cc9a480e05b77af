/* The history feed: keeps the history store (src/history) filled from the journaled commands,
 * on its own thread, without ever making the engine thread wait.
 *
 * A REPLICA engine applies the same commands as the live one, in journal order, and its events
 * become history records tagged with the command's journal sequence. The engine thread hands each
 * journaled command over through a bounded lock-free ring (history_feed_push, called from the
 * persistence log hook); when the ring is full the command is simply not pushed, and the feed,
 * seeing the sequence it expected missing, reads it back from the journal on disk. A command is
 * applied only once the journal holds it durably, so the history never shows a command a crash
 * could take back.
 *
 * Start-up: the history file says which command it holds last (H). The replica starts from the
 * newest snapshot at or before H (or an empty engine when there is none), replays the journal to
 * its end (records up to H are dropped by the writer, so nothing is written twice) and then
 * follows the ring. A journal pruned past what the replica needs is reported (warning, and
 * gaps in the stats); the server keeps such segments while the history needs them (the prune
 * guard). */
#ifndef QAEX_HISTORY_FEED_H
#define QAEX_HISTORY_FEED_H

#include "engine/engine.h"
#include "history/history.h"
#include "server/persistence.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct history_feed history_feed;

typedef struct history_feed_options {
    const char *data_dir;              /* the journal and snapshots; the history file goes here */
    const engine_config *engine_cfg;   /* the server's: an empty replica starts from it */
    persistence *p;                    /* the live journal: durable position */
    uint32_t retention_days;           /* 0: keep everything */
    uint32_t account_snapshot_secs;    /* 0: account snapshots at settlements only */
    size_t ring_capacity;              /* commands; 0 means 16384 */
    const history_options *store_opts; /* NULL: the library's defaults */
} history_feed_options;

/* Opens DATA_DIR/history.db and starts the feed thread (which bootstraps and catches up on its
 * own). Connects itself to p (log hook and prune guard). NULL with err on failure. */
history_feed *history_feed_start(const history_feed_options *o, char *err, size_t errlen);

/* Applies what is durable and still queued, commits, closes the file. Call after the engine
 * thread stopped and before the journal is closed. NULL is accepted. */
void history_feed_stop(history_feed *f);

/* Engine thread: a command was journaled as seq. Never blocks; a full ring drops it. */
void history_feed_push(history_feed *f, uint64_t seq, const command *cmd);

/* Waits until the history holds every command up to seq (committed). true when it does. Any
 * thread. */
bool history_feed_wait(history_feed *f, uint64_t seq, int timeout_ms);

/* The last command whose records are all committed (any thread, cheap). */
uint64_t history_feed_committed_seq(const history_feed *f);

/* The history file's path. */
const char *history_feed_db_path(const history_feed *f);

/* The store's stats plus the feed's (applied, ring drops, catch-ups, gaps), as JSON; free()
 * it. Runs COUNT(*) queries: call it from a query thread, never the engine or I/O thread. */
char *history_feed_stats_json(history_feed *f);

#endif
