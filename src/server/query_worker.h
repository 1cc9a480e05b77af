/* History queries off the I/O and engine threads. One worker thread owns a read-only connection
 * to the history file (history_query_open); the gateway hands it jobs through a bounded queue and
 * gets back finished HTTP bodies, woken through the given callback (as kdf_worker does).
 *
 * Before a job runs, the worker waits (a few seconds at most) until the history holds every
 * command up to job->wait_seq, so a client reads its own acknowledged trades. */
#ifndef QAEX_QUERY_WORKER_H
#define QAEX_QUERY_WORKER_H

#include "history/history.h"
#include "history/query.h"
#include "server/history_feed.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum query_kind {
    QUERY_SQL = 1,     /* text: one SELECT; lim.format json|csv|jsonl */
    QUERY_STRUCTURED,  /* text: the JSON request (history_structured_json) */
    QUERY_TIMESERIES,  /* instrument_id, granularity, start_ms, end_ms */
    QUERY_TRADES_PAGE, /* account_id, instrument_id, dates, page, size: GET /api/trades/user */
    QUERY_TRADES_ALL,  /* account_id: every trade, newest first (GET /api/order/user/X/trades) */
    QUERY_CURVE,       /* account_id, dates, per_day */
    QUERY_STATS,       /* the store's and the feed's stats (text: JSON) */
} query_kind;

typedef struct query_job {
    query_kind kind;
    uint64_t conn_id;
    int purpose; /* the caller's */
    uint64_t wait_seq;
    char *text; /* owned by the job */
    history_query_limits lim;
    char account_id[HISTORY_ACCOUNT_LEN];
    char instrument_id[HISTORY_INSTRUMENT_LEN];
    char start_date[HISTORY_DAY_LEN], end_date[HISTORY_DAY_LEN];
    char granularity[16];
    int64_t start_ms, end_ms;
    int64_t page, size;
    bool per_day;
    /* the result: an HTTP status and body (a JSON envelope, or CSV / JSON lines text) */
    int status;
    char *body;
    size_t len;
    const char *content_type; /* NULL: application/json */
} query_job;

typedef struct query_worker query_worker;

/* Starts the thread (its connection opens on it). NULL on failure. */
query_worker *query_worker_start(history_feed *feed, void (*wake)(void *), void *wake_ctx);
/* Stops the thread; jobs not yet taken or not yet polled are freed. NULL is accepted. */
void query_worker_stop(query_worker *w);

/* A new zeroed job (calloc). */
query_job *query_job_new(query_kind kind);
void query_job_free(query_job *j);

/* Takes the job (it is freed when refused): false when the queue is full. */
bool query_worker_submit(query_worker *w, query_job *j);
/* The next finished job (the caller frees it), NULL when none. */
query_job *query_worker_poll(query_worker *w);

#endif
