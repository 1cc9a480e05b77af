/* The server's own metrics (issue #7, `GET /metrics`): one registry made at start, its handles
 * shared by the engine thread, the gateway and the journal. Every update is a relaxed atomic,
 * so any thread may count; NULL handles (no registry) count nothing. */
#ifndef QAEX_SERVER_METRICS_H
#define QAEX_SERVER_METRICS_H

#include "server/metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct server_metrics {
    metrics_registry *reg;
    /* engine thread */
    metrics_counter *commands;        /* qaex_commands_total */
    metrics_counter *orders_accepted; /* qaex_orders_total{result="accepted"} */
    metrics_counter *orders_rejected; /* qaex_orders_total{result="rejected"} */
    metrics_counter *trades;          /* qaex_trades_total (matches) */
    metrics_histogram *order_latency; /* gateway stamp -> applied: qaex_order_processing_seconds */
    metrics_histogram *matching;      /* engine_apply of an order: qaex_matching_seconds */
    metrics_gauge *accounts, *users;  /* qaex_accounts, qaex_users */
    /* journal writer */
    metrics_histogram *journal_fsync; /* qaex_journal_fsync_seconds */
    /* gateway */
    metrics_counter *http_requests; /* qaex_http_requests_total */
    metrics_counter *ws_messages;   /* qaex_ws_messages_sent_total */
    metrics_histogram *ws_push;     /* engine event -> handed to the socket: qaex_ws_push_seconds */
} server_metrics;

/* Registers every series; false (with the registry's message in err) when that fails. */
bool server_metrics_init(server_metrics *m, char *err, size_t errlen);
void server_metrics_free(server_metrics *m);

#endif
