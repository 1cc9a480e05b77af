/* The engine thread: the only thread that touches the engine.
 *
 * The gateway (I/O thread) turns HTTP and WebSocket messages into `request`s and pushes them into
 * a bounded lock-free ring; the service applies commands and answers queries in arrival order,
 * and pushes back `reply`s (a response for the connection that asked, or a push for everyone
 * subscribed to an account or an instrument) through a second ring. JSON is produced here, once
 * per reply, so a push fanned out to a thousand subscribers is encoded once. */
#ifndef QAEX_SERVICE_H
#define QAEX_SERVICE_H

#include "engine/engine.h"
#include "server/persistence.h"
#include "server/server_metrics.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum route {
    ROUTE_NONE = 0,
    /* REST */
    ROUTE_ACCOUNT_OPEN,
    ROUTE_USER_ACCOUNT_CREATE,
    ROUTE_ACCOUNT_GET,
    ROUTE_ACCOUNT_DETAIL,
    ROUTE_ACCOUNT_LIST,
    ROUTE_USER_ACCOUNTS,
    ROUTE_DEPOSIT,
    ROUTE_WITHDRAW,
    ROUTE_ORDER_SUBMIT,
    ROUTE_ORDER_CANCEL,
    ROUTE_ORDER_GET,
    ROUTE_ORDER_LIST,
    ROUTE_ORDER_TRADES,
    ROUTE_POSITIONS,
    ROUTE_TRADES_PAGE,
    ROUTE_INSTRUMENTS,
    ROUTE_TICK,
    ROUTE_ORDERBOOK,
    ROUTE_RECENT_TRADES,
    ROUTE_TRANSACTIONS,
    ROUTE_ORDER_STATS,
    ROUTE_KLINES, /* key instrument, num1 kline_period, num2 count, start_ms/end_ms */
    ROUTE_SYMBOLS,
    ROUTE_CLOCK,         /* internal: the engine thread's own CMD_CLOCK, answered to nobody */
    ROUTE_STATE,         /* state digest and journal position, for operators and crash tests */
    ROUTE_AUTH_REGISTER, /* CMD_USER_REGISTER */
    ROUTE_AUTH_USER,     /* key user id: the user and its accounts */
    ROUTE_AUTH_LOOKUP,   /* internal: key username (or account id): the user and its hash */
    /* the operator's routes (admin role) */
    ROUTE_ADMIN_COMMAND,           /* instrument, settlement, capital, freeze commands */
    ROUTE_ADMIN_BATCH_PRICES,      /* extra: admin_price[n_extra], applied all or none */
    ROUTE_ADMIN_SETTLEMENTS,       /* date_from, date_to */
    ROUTE_ADMIN_SETTLEMENT_DETAIL, /* key date */
    ROUTE_ADMIN_RISK_ACCOUNTS,     /* key owner or account, key2 level */
    ROUTE_ADMIN_MARGIN_SUMMARY,
    ROUTE_ADMIN_LIQUIDATIONS, /* date_from, date_to */
    ROUTE_ADMIN_TRANSACTIONS, /* key account or owner, key2 type, dates, num2 limit */
    ROUTE_ADMIN_AUDIT,        /* num2 limit */
    ROUTE_MON_ACCOUNTS,
    ROUTE_MON_ORDERS,
    ROUTE_MON_TRADES,
    ROUTE_MON_STORAGE, /* extra: the history store's stats (JSON text), or NULL */
    ROUTE_MON_REPORT,
    /* internal: may the asker read account `key`'s history? key2: an instrument id to resolve.
     * Answers {code, message, instrument_id, seq} */
    ROUTE_HISTORY_ACCESS,
    /* the `type` WebSocket protocol */
    ROUTE_WS_AUTH,
    ROUTE_WS_SUBMIT,
    ROUTE_WS_CANCEL,
    ROUTE_WS_QUERY_ACCOUNT,
    ROUTE_WS_QUERY_ORDERS,
    ROUTE_WS_QUERY_ORDER,
    ROUTE_WS_QUERY_POSITIONS,
    ROUTE_WS_SNAPSHOT, /* orderbook/ticker state right after a subscribe */
    /* DIFF: replies are merge patches of the DIFF tree (key2 = the login's user key) */
    ROUTE_DIFF_LOGIN,  /* key account: its whole trade subtree, and pushes from now on */
    ROUTE_DIFF_LOGOUT, /* key account: a DIFF session of it ended (no reply) */
    ROUTE_DIFF_INSERT, /* with no command: an insert_order the gateway could not read (key
                        * order id, message the reason), closed FINISHED in the client */
    ROUTE_DIFF_CANCEL,
    ROUTE_DIFF_TRANSFER,
    ROUTE_DIFF_QUOTE, /* key instrument: its quote */
    ROUTE_DIFF_CHART, /* key instrument, num1 period, num2 bars, req_id chart id */
    ROUTE_COUNT
} route;

typedef struct request {
    uint64_t conn_id;
    route route;
    command cmd;              /* for routes that change state; cmd.type == 0 otherwise */
    char key[QAEX_ID_LEN];    /* account, user or instrument id */
    char key2[QAEX_ID_LEN];   /* order id, or the user a request acts for */
    char req_id[QAEX_ID_LEN]; /* a client's request id, echoed back (WS) */
    int64_t num1, num2;       /* page and size, depth, count */
    int64_t start_ms, end_ms; /* a time window, 0 = open */
    char date_from[QAEX_DATE_LEN], date_to[QAEX_DATE_LEN];
    /* who asks, when tokens are enforced: the engine thread checks that this user owns the
     * account a request acts on (admins act on any) */
    bool auth_enforced;
    bool auth_admin;
    char auth_user[QAEX_ID_LEN];
    int purpose; /* internal requests: echoed in the reply's status */
    /* an operator's action, for the audit log ("PUT /admin/instrument/X/suspend") */
    char action[96];
    void *extra; /* malloc'ed by the gateway, freed by the service (batch prices) */
    uint32_t n_extra;
} request;

/* One settlement price of a batch. */
typedef struct admin_price {
    char instrument_id[QAEX_INSTRUMENT_ID_LEN];
    double price;
} admin_price;

typedef enum reply_kind {
    REPLY_HTTP = 1,        /* the response to an HTTP request: status and body */
    REPLY_WS,              /* a message to one WebSocket connection */
    REPLY_PUSH_ACCOUNT,    /* a push to sessions watching `topic` (an account id) */
    REPLY_PUSH_INSTRUMENT, /* a push to sessions subscribed to `topic` (an instrument id) */
    REPLY_INTERNAL,        /* for the gateway itself (status = the request's purpose) */
} reply_kind;

/* Channels of the `type` protocol's subscriptions. */
typedef enum push_channel {
    CHANNEL_TRADE = 1 << 0,
    CHANNEL_ORDERBOOK = 1 << 1,
    CHANNEL_TICKER = 1 << 2,
    CHANNEL_ACCOUNT = 1 << 3,
    CHANNEL_ORDER = 1 << 4,
    CHANNEL_KLINE = 1 << 5,
    /* DIFF merge patches: an account's subtree, a quote, the bars in progress */
    CHANNEL_DIFF_TRADE = 1 << 8,
    CHANNEL_DIFF_QUOTE = 1 << 9,
    CHANNEL_DIFF_KLINE = 1 << 10,
    /* a notification of seed 004 (status = its notify_type): to the account's sessions, or to
     * every session when the topic is "" */
    CHANNEL_NOTIFY = 1 << 11,
} push_channel;

#define CHANNELS_DIFF (CHANNEL_DIFF_TRADE | CHANNEL_DIFF_QUOTE | CHANNEL_DIFF_KLINE)

/* Market pushes of these channels replace an unsent one of the same instrument and channel in a
 * session's queue: a slow reader gets the latest depth, not a backlog. */
#define CHANNELS_CONFLATED (CHANNEL_ORDERBOOK | CHANNEL_TICKER)

typedef struct reply {
    uint64_t conn_id;
    reply_kind kind;
    /* the route of the request answered (ROUTE_NONE for pushes): the gateway tells a DIFF
     * login's answer from the answers of the session's other requests by it, whatever they
     * carry */
    route route;
    int status;       /* HTTP status */
    uint32_t channel; /* push_channel of a push */
    char topic[QAEX_ID_LEN];
    char *body; /* malloc'ed JSON text; the receiver frees it */
    size_t len;
    /* the journal position when the reply was made: it may leave only once that is durable,
     * so nobody sees a state that a crash could take back */
    uint64_t seq;
    int64_t made_ns; /* CLOCK_MONOTONIC when the engine thread made it (push latency) */
    /* a notification: the time of the command that caused it, and its number in this run */
    int64_t event_ns;
    uint64_t event_id;
} reply;

typedef struct service service;

/* Called from the engine thread when replies are waiting (e.g. lws_cancel_service). */
typedef void (*service_wake_fn)(void *ctx);

/* p may be NULL (memory only): every reply is then released at once. */
service *service_create(engine *e, persistence *p, size_t queue_capacity, service_wake_fn wake,
                        void *wake_ctx);
/* Stops the thread after the requests already queued; frees the rings (not the engine). */
void service_destroy(service *s);
int service_start(service *s);
/* Connects the wake callback (before service_start). */
void service_set_wake(service *s, service_wake_fn wake, void *wake_ctx);

/* I/O thread: false when the ring is full (answer 9005 / 503). */
bool service_submit(service *s, const request *r);
/* I/O thread: the next reply, false when none. */
bool service_poll(service *s, reply *out);
/* I/O thread: call before draining, so a wake that races the drain is not lost. */
void service_clear_wake(service *s);

/* Replies with seq up to this may be released (any thread). */
uint64_t service_durable_seq(const service *s);

/* Accounts that DIFF sessions are logged in to (the engine builds their patches). Any thread. */
uint32_t service_diff_watched(service *s);

/* How many WebSocket sessions exist: no pushes are encoded while it is zero. */
void service_set_push_listeners(service *s, int n);
/* How many instrument subscriptions exist: no market push is encoded while it is zero. */
void service_set_market_listeners(service *s, int n);

/* How many DIFF quote subscriptions and charts exist: no DIFF market patch is encoded while
 * they are zero. (Logged-in accounts are counted by ROUTE_DIFF_LOGIN/LOGOUT.) */
void service_set_diff_listeners(service *s, int quotes, int charts);

/* The notification channels (NOTIFY_CHANNEL_BIT set) some session wants: notifications of
 * other channels are not produced. 0 (the default) produces none. */
void service_set_notify_channels(service *s, uint32_t channel_mask);

/* margin_call notifications from this risk ratio on ([risk] risk_ratio_warning); before
 * service_start. */
void service_set_risk_warning(service *s, double ratio);

/* Counts commands, orders, trades and latencies into these series (NULL: none). */
void service_set_metrics(service *s, const server_metrics *m);

/* Appends every operator action to this file as JSON lines (NULL: memory only). */
void service_set_audit_file(service *s, FILE *f);

/* Runs one request on the calling thread (tests and the synchronous tools). */
void service_handle(service *s, const request *r);

#endif
