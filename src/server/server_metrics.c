/* The server's metric series (see server_metrics.h). */
#include "server/server_metrics.h"

#include <stdio.h>
#include <string.h>

bool server_metrics_init(server_metrics *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->reg = metrics_registry_new(64);
    if (m->reg == NULL) {
        snprintf(err, errlen, "out of memory for metrics");
        return false;
    }
    metrics_registry *r = m->reg;
    m->commands = metrics_counter_register(
        r, "qaex_commands_total",
        "State-changing commands applied by the engine (not counting its own clock)", NULL);
    m->orders_accepted =
        metrics_counter_register(r, "qaex_orders_total", "Orders submitted, by outcome",
                                 (const char *const[]){"result", "accepted", NULL});
    m->orders_rejected =
        metrics_counter_register(r, "qaex_orders_total", "Orders submitted, by outcome",
                                 (const char *const[]){"result", "rejected", NULL});
    m->trades = metrics_counter_register(r, "qaex_trades_total", "Matches executed", NULL);
    m->order_latency = metrics_latency_register(
        r, "qaex_order_processing_seconds",
        "From the gateway's time stamp to the order applied by the engine thread", NULL, NULL, 0);
    m->matching = metrics_latency_register(r, "qaex_matching_seconds",
                                           "Engine time to validate, risk-check and match an order",
                                           NULL, NULL, 0);
    m->accounts = metrics_gauge_register(r, "qaex_accounts", "Trading accounts", NULL);
    m->users = metrics_gauge_register(r, "qaex_users", "Registered users", NULL);
    m->journal_fsync = metrics_latency_register(
        r, "qaex_journal_fsync_seconds", "fdatasync of the write-ahead journal", NULL, NULL, 0);
    m->http_requests =
        metrics_counter_register(r, "qaex_http_requests_total", "HTTP requests received", NULL);
    m->ws_messages = metrics_counter_register(r, "qaex_ws_messages_sent_total",
                                              "WebSocket messages queued to sessions", NULL);
    m->ws_push = metrics_latency_register(
        r, "qaex_ws_push_seconds",
        "From the engine event to its push handed to the sessions' queues", NULL, NULL, 0);
    if (!m->commands || !m->orders_accepted || !m->orders_rejected || !m->trades ||
        !m->order_latency || !m->matching || !m->accounts || !m->users || !m->journal_fsync ||
        !m->http_requests || !m->ws_messages || !m->ws_push) {
        snprintf(err, errlen, "metrics: %s", metrics_registry_error(r));
        server_metrics_free(m);
        return false;
    }
    return true;
}

void server_metrics_free(server_metrics *m) {
    metrics_registry_free(m->reg);
    memset(m, 0, sizeof *m);
}
