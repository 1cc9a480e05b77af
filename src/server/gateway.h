/* The gateway: one libwebsockets event loop (the I/O thread) serving REST, the `type`
 * WebSocket protocol on /ws and, later, DIFF on /ws/diff, on one listener (and optionally a
 * second WebSocket listener). It parses and validates input, stamps commands with the time,
 * hands them to the engine thread, and writes back what the engine thread answers. It never
 * blocks on the engine: a full queue is answered with 9005. */
#ifndef QAEX_GATEWAY_H
#define QAEX_GATEWAY_H

#include "server/query_worker.h"
#include "server/service.h"

#include <stddef.h>

typedef struct gateway_config {
    const char *http_host;
    int http_port; /* 0: an ephemeral port, reported by gateway_http_port */
    const char *ws_host;
    int ws_port; /* -1: no second listener */
    size_t max_body_bytes;
    size_t ws_max_message;    /* bytes of one WebSocket message; 0: 64 KiB */
    int ws_ping_ms;           /* a WebSocket quiet this long is pinged */
    int ws_idle_ms;           /* and one silent this long (no message, no pong) is dropped */
    bool open_mode;           /* no token needed: the seed's demo mode */
    const char *diff_bid;     /* the broker id DIFF clients log in to ("qaexchange") */
    const char *token_secret; /* signs login tokens; empty: a random key per start */
    int64_t token_ttl_secs;
    bool password_cost_fast;       /* argon2id at its minimum (tests) */
    const server_metrics *metrics; /* served at GET /metrics (NULL: none) */
    bool diff_strict_bid;          /* refuse a req_login naming another bid */
    unsigned max_connections;      /* sizes lws's header-table pool */
    query_worker *queries;         /* history queries (NULL: no history store) */
    /* notifications (seed 004): batch size and interval (0: the broker's defaults), and whether
     * every authenticated /ws session receives them without {"action":"subscribe"} */
    uint32_t notify_batch_size, notify_batch_interval_ms;
    bool notify_auto_subscribe;
} gateway_config;

typedef struct gateway gateway;

gateway *gateway_create(const gateway_config *cfg, service *svc);
void gateway_destroy(gateway *g);
int gateway_http_port(const gateway *g);
/* Runs the event loop until gateway_stop (async-signal-safe) is called. */
int gateway_run(gateway *g);
void gateway_stop(gateway *g);
/* The service's wake callback: safe from any thread. */
void gateway_wake(void *g);

#endif
