/* The notification broker (seed 004, SPEC 6 "Notifications"): typed notifications with default
 * priorities P0–P3 and channels, message_id dedup, per-session channel filters, batching and
 * backpressure.
 *
 * Pure and single-threaded: it runs on the I/O thread, has no libwebsockets inside and no clock
 * (every time is the caller's `now_ms`, any monotonic millisecond clock). Every allocation is
 * checked and memory is bounded (see the backpressure tiers and `p0_limit`).
 *
 * Use:
 *   - the producer builds a notify_message once (its JSON text is built then) and publishes it to
 *     every session that should see it; the message is refcounted and shared by all of them;
 *   - notify_publish() checks the id against the dedup window, the session's channel filter and
 *     the backpressure tier, and queues the message;
 *   - the caller asks notify_ready() what to write now (when the socket is writable, or when
 *     notify_next_deadline() has come) and releases each message once written.
 *
 * Delivery rules (the seed's P0 < 1 ms, P1 < 5 ms, P2 < 100 ms, P3 < 1 s):
 *   - P0 is never batched: notify_ready() returns every queued P0 at once, whatever the time.
 *   - P1–P3 wait in the session's batch. The batch becomes due when it holds `batch_size` (100)
 *     messages, when its oldest P2 or P3 message has waited `batch_interval_ms` (100 ms), or when
 *     its oldest P1 message has waited `p1_delay_ms` (chosen: 2 ms, inside the seed's 5 ms
 *     target while still coalescing a burst of order/trade events into one frame). A due batch
 *     goes out whole: every P1–P3 message queued at that moment.
 *   - Output order: P0 first, then P1, P2, P3; FIFO within a priority. If `max` cuts a due batch
 *     short, the rest of it stays due and comes out on the next call.
 *   - A message never jumps its session's filter: the filter is applied at publish time; changing
 *     it does not touch messages already queued.
 *
 * Backpressure, per session: backlog = messages queued here + the caller's external backlog
 * (notify_session_set_external_backlog: frames it still holds for the socket). A new message
 * (never an old one: what is queued keeps its order) is dropped and counted when
 *     backlog in [shed_p3_at, shed_p2_at)  = [500, 1000)  and it is P3,
 *     backlog in [shed_p2_at, shed_p1_at)  = [1000, 2000) and it is P2 or P3,
 *     backlog >= shed_p1_at                 = 2000         and it is not P0,
 * and a P0 is dropped only when the session already holds `p0_limit` (10,000) P0 messages, which
 * also marks the session overflowed (the caller should disconnect it). Notifications are events,
 * not state: trading state (orders, trades, accounts) is never lost by this, because a DIFF
 * client converges on its snapshot (the merge patches are not routed through this broker) and a
 * `type`-protocol client can query its state again.
 *
 * Dedup: the broker remembers the ids of the last `dedup_window` (10,000) admitted messages (a
 * ring plus a hash set). A message object is checked once, the first time it is published (or
 * passed to notify_broker_admit); the verdict is kept in the object, so fanning one object out
 * to many sessions is not a duplicate, but a second object with an id still in the window is.
 * A duplicate is never queued. The window slides by admissions only: after 10,000 newer ids an
 * old id is accepted again.
 *
 * Wire format:
 *   one message:  {"message_id":"…","message_type":"order_accepted","user_id":"…","priority":1,
 *                  "timestamp":<ns>,"source":"…","payload":<payload JSON>}
 *                 (the seed's to_json(): same keys in the same order; message_type is the seed's
 *                 snake_case as_str(), e.g. "trade_executed", "risk_alert"; strings escaped)
 *   a batch:      {"type":"notifications","messages":[<message>,<message>,…]}
 *   Suggested use: each P0 as its own frame (notify_message_json), the P1–P3 part of a
 *   notify_ready() result as one batch frame (notify_format_batch).
 *
 * Refcounts are plain integers: a message is retained and released on one thread (the I/O
 * thread) once it has been handed over. */
#ifndef QAEX_NOTIFY_H
#define QAEX_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- types, priorities and channels (seed 1.2–1.4) ---- */

typedef enum notify_type {
    /* trade channel */
    NOTIFY_ORDER_ACCEPTED,         /* P1 */
    NOTIFY_ORDER_REJECTED,         /* P0 (the seed's match, over its group comment) */
    NOTIFY_ORDER_PARTIALLY_FILLED, /* P1 */
    NOTIFY_ORDER_FILLED,           /* P1 */
    NOTIFY_ORDER_CANCELED,         /* P1 */
    NOTIFY_ORDER_EXPIRED,          /* P3 */
    NOTIFY_TRADE_EXECUTED,         /* P1 */
    NOTIFY_TRADE_CANCELED,         /* P1 (seed: left out of the match; group comment) */
    /* account channel */
    NOTIFY_ACCOUNT_OPEN,   /* P2 */
    NOTIFY_ACCOUNT_UPDATE, /* P2 */
    /* position channel */
    NOTIFY_POSITION_UPDATE, /* P2 */
    NOTIFY_POSITION_PROFIT, /* P2 (seed: left out of the match; group comment) */
    /* risk channel */
    NOTIFY_RISK_ALERT,     /* P0 */
    NOTIFY_MARGIN_CALL,    /* P0 */
    NOTIFY_POSITION_LIMIT, /* P0 (seed: left out of the match; group comment) */
    /* system channel */
    NOTIFY_SYSTEM_NOTICE,         /* P3 */
    NOTIFY_TRADING_SESSION_START, /* P3 */
    NOTIFY_TRADING_SESSION_END,   /* P3 */
    NOTIFY_MARKET_HALT,           /* P3 */
    NOTIFY_TYPE_COUNT
} notify_type;

typedef enum notify_channel {
    NOTIFY_CH_TRADE,
    NOTIFY_CH_ACCOUNT,
    NOTIFY_CH_POSITION,
    NOTIFY_CH_RISK,
    NOTIFY_CH_SYSTEM,
    NOTIFY_CHANNEL_COUNT
} notify_channel;

#define NOTIFY_CHANNEL_BIT(c) (1u << (unsigned)(c))
#define NOTIFY_CHANNELS_ALL ((1u << NOTIFY_CHANNEL_COUNT) - 1u)
#define NOTIFY_PRIORITIES 4

/* "OrderAccepted": the seed's enum spelling. NULL for an invalid type. */
const char *notify_type_name(notify_type t);
/* "order_accepted": the message_type on the wire. NULL for an invalid type. */
const char *notify_type_str(notify_type t);
/* Either spelling; -1 when unknown. */
int notify_type_parse(const char *s);
/* 0..3; -1 for an invalid type. */
int notify_type_default_priority(notify_type t);
/* The channel; -1 for an invalid type. */
int notify_type_channel(notify_type t);
/* "trade", "account", "position", "risk", "system"; NULL for an invalid channel. */
const char *notify_channel_name(notify_channel c);
/* -1 when unknown (the caller decides whether to refuse it). */
int notify_channel_parse(const char *name);

/* ---- messages ---- */

#define NOTIFY_ID_MAX 128        /* message_id: 1..127 bytes */
#define NOTIFY_HEADROOM_MAX 4096 /* writable bytes before the JSON text (LWS_PRE) */

typedef struct notify_message_init {
    notify_type type;
    int priority;             /* 0..3, or -1 for the type's default (values above 3 become 3) */
    const char *message_id;   /* required, 1..NOTIFY_ID_MAX-1 bytes */
    const char *user_id;      /* the target user/account; NULL = "" */
    const char *source;       /* "MatchingEngine", "AccountSystem", "RiskControl"; NULL = "" */
    int64_t timestamp;        /* ns, as in the seed */
    const char *payload_json; /* a JSON value, copied verbatim (not validated); NULL = {} */
    size_t headroom;          /* writable bytes kept before json (e.g. LWS_PRE) */
} notify_message_init;

/* Read-only for users of this module: create, retain and release through the functions. */
typedef struct notify_message {
    uint32_t refs;
    notify_type type;
    int priority;
    notify_channel channel;
    int64_t timestamp;
    const char *message_id;
    const char *user_id;
    const char *source;
    char *json; /* NUL-terminated; `headroom` writable bytes precede it */
    size_t json_len;
    size_t headroom;
    /* the dedup verdict, taken the first time a broker sees this object */
    const struct notify_broker *admitted_by;
    bool duplicate;
    char storage[];
} notify_message;

/* One allocation holding the strings and the JSON text; refs = 1. NULL when out of memory or
 * when init is invalid (bad type, missing or too long id, headroom too large). */
notify_message *notify_message_new(const notify_message_init *init);
notify_message *notify_message_retain(notify_message *m);
/* Drops one reference; the last one frees the message. NULL is ignored. */
void notify_message_release(notify_message *m);
/* The JSON text and its length (without the NUL). */
const char *notify_message_json(const notify_message *m, size_t *len);
/* Messages alive in the process (for tests and leak checks). */
long notify_messages_live(void);

/* The batch frame {"type":"notifications","messages":[…]} for msgs[0..n): its length without
 * the NUL, and the text written into buf (with a NUL). notify_format_batch returns the length, or
 * 0 when cap is smaller than length + 1. */
size_t notify_batch_len(notify_message *const *msgs, size_t n);
size_t notify_format_batch(notify_message *const *msgs, size_t n, char *buf, size_t cap);

/* ---- the broker ---- */

typedef struct notify_config {
    uint32_t dedup_window;      /* 10000 ids */
    uint32_t batch_size;        /* 100 P1–P3 messages make a batch due */
    uint32_t batch_interval_ms; /* 100: the oldest P2/P3 message makes the batch due */
    uint32_t p1_delay_ms;       /* 2: the oldest P1 message makes the batch due */
    uint32_t shed_p3_at;        /* 500 */
    uint32_t shed_p2_at;        /* 1000 */
    uint32_t shed_p1_at;        /* 2000 */
    uint32_t p0_limit;          /* 10000 P0 messages queued per session */
} notify_config;

void notify_config_default(notify_config *c);

typedef struct notify_broker notify_broker;
typedef struct notify_session notify_session;

typedef struct notify_stats {
    uint64_t published;                  /* distinct messages admitted by dedup */
    uint64_t deduplicated;               /* message objects refused as duplicates */
    uint64_t filtered;                   /* (session, message) pairs skipped by a channel filter */
    uint64_t queued;                     /* (session, message) pairs queued */
    uint64_t delivered;                  /* (session, message) pairs returned by notify_ready */
    uint64_t dropped[NOTIFY_PRIORITIES]; /* (session, message) pairs shed by backpressure */
    uint64_t nomem;                      /* pairs lost to a failed allocation */
    uint64_t backlog_max;                /* the largest session backlog seen */
    uint64_t sessions;                   /* sessions alive */
    uint64_t overflowed;                 /* sessions that hit p0_limit */
} notify_stats;

typedef struct notify_session_stats {
    uint64_t queued, delivered, filtered, nomem;
    uint64_t dropped[NOTIFY_PRIORITIES];
    uint64_t backlog_max;
} notify_session_stats;

/* cfg NULL = defaults. NULL when out of memory or when cfg is inconsistent (zero window or batch
 * size, thresholds not in order shed_p3_at <= shed_p2_at <= shed_p1_at). */
notify_broker *notify_broker_new(const notify_config *cfg);
/* Frees the broker and every session still registered (releasing their queued messages). */
void notify_broker_free(notify_broker *b);
const notify_config *notify_broker_config(const notify_broker *b);
void notify_broker_stats(const notify_broker *b, notify_stats *out);

/* Runs the dedup check for m (once per object, see above): true when m is new (admitted), false
 * for a duplicate. notify_publish calls it; call it directly for a message no session takes. */
bool notify_broker_admit(notify_broker *b, notify_message *m);

/* ---- sessions ---- */

/* A session with no filter (all channels) and empty queues. NULL when out of memory. */
notify_session *notify_session_new(notify_broker *b);
/* Releases the queued messages and frees the session. NULL is ignored. */
void notify_session_free(notify_session *s);

/* Channel filter: a set of NOTIFY_CHANNEL_BIT()s; the empty set means every channel (the seed's
 * rule, so unsubscribing the last channel receives everything again). */
void notify_session_subscribe(notify_session *s, uint32_t channel_mask);
void notify_session_unsubscribe(notify_session *s, uint32_t channel_mask);
void notify_session_unsubscribe_all(notify_session *s);
uint32_t notify_session_channels(const notify_session *s); /* 0 = all */
bool notify_session_wants(const notify_session *s, notify_channel c);

/* Frames the caller still holds for this session (outside the broker); counts in the backlog. */
void notify_session_set_external_backlog(notify_session *s, size_t n);
/* Queued here (priority 0..3, or -1 for all). */
size_t notify_session_queued(const notify_session *s, int priority);
/* Queued here + external. */
size_t notify_session_backlog(const notify_session *s);
/* True once a P0 was dropped at p0_limit. */
bool notify_session_overflowed(const notify_session *s);
void notify_session_stats_get(const notify_session *s, notify_session_stats *out);

typedef enum notify_result {
    NOTIFY_QUEUED,    /* queued for the session */
    NOTIFY_DUPLICATE, /* the id is in the dedup window */
    NOTIFY_FILTERED,  /* the session does not subscribe to the message's channel */
    NOTIFY_DROPPED,   /* shed by backpressure */
    NOTIFY_NOMEM,     /* the queue could not grow */
    NOTIFY_INVALID    /* NULL argument or a session of another broker */
} notify_result;

/* Dedup, filter, backpressure, then queue (taking its own reference; the caller keeps its own).
 * now_ms is when the message starts waiting. */
notify_result notify_publish(notify_broker *b, notify_session *s, notify_message *m,
                             int64_t now_ms);

/* Moves up to max messages that should be written now into out[], in the order described above,
 * and returns how many. Each reference passes to the caller, who releases it once written. */
size_t notify_ready(notify_broker *b, notify_session *s, int64_t now_ms, notify_message **out,
                    size_t max);

#define NOTIFY_NO_DEADLINE INT64_MAX
#define NOTIFY_NOW INT64_MIN
/* When notify_ready will next have something: NOTIFY_NOW when it has something already (P0, a
 * full or partly written batch), the time the batch becomes due, or NOTIFY_NO_DEADLINE when
 * nothing is queued. */
int64_t notify_next_deadline(const notify_session *s);

#endif
