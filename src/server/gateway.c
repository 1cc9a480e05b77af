#include "server/gateway.h"

#include "engine/idmap.h"
#include "proto/codec.h"
#include "server/auth.h"
#include "server/diff_session.h"
#include "server/kdf_worker.h"
#include "server/notify.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_WS_MESSAGE ((size_t)64 * 1024)
/* lws's header storage per connection (its default, set explicitly): no URL argument is longer,
 * so url_arg's buffer of this size never takes an argument given for one absent, and a login
 * token (?token=, at most AUTH_TOKEN_MAX bytes) or a longer one is always seen and checked */
#define HTTP_HEADER_DATA 4096
#define URL_ARG_MAX HTTP_HEADER_DATA
_Static_assert(URL_ARG_MAX > AUTH_TOKEN_MAX + sizeof "token=", "a URL token must fit url_arg");
#define MAX_SUBSCRIPTIONS 64
/* A session that stops reading: beyond this many queued market messages the oldest are dropped;
 * its own order, trade and account messages are never dropped, but a session that lets them pile
 * past the hard limit is disconnected (its state can be queried again after reconnecting). */
#define WS_SOFT_BACKLOG 1000
#define WS_HARD_BACKLOG 20000

typedef enum http_method {
    M_OTHER,
    M_GET,
    M_POST,
    M_PUT,
    M_DELETE,
    M_OPTIONS,
    M_PATCH,
    M_HEAD
} http_method;

static const char *method_name(http_method m) {
    static const char *const names[] = {"?",      "GET",     "POST",  "PUT",
                                        "DELETE", "OPTIONS", "PATCH", "HEAD"};
    return names[m];
}

/* A set of methods, one bit each (a route's methods, a 405's Allow header). */
#define ALLOW(m) (1u << (m))

/* "GET, POST": the methods of a set, in the order of http_method. */
static void allow_list(unsigned methods, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (int m = M_GET; m <= M_HEAD && len < cap; m++)
        if (methods & ALLOW(m))
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ", " : "",
                                    method_name((http_method)m));
}

/* A message shared by every session it is pushed to. */
typedef struct shared_msg {
    int refs;
    size_t len;
    size_t head_room;     /* HTTP responses: bytes kept free for the headers before the text */
    unsigned char data[]; /* LWS_PRE + head_room bytes of headroom, then the text */
} shared_msg;

/* The text of a message. */
static unsigned char *msg_text(shared_msg *m) {
    return m->data + LWS_PRE + m->head_room;
}

/* An HTTP response keeps this much room in front of its body, so that the headers are written
 * there and headers and body leave in one send(): two sends per response cost a second TCP
 * segment and a second wake-up of the client for every request. */
#define HTTP_HEAD_ROOM 512

/* WebSocket messages queued for a session are framed into one buffer and leave in one send()
 * (up to this many bytes), instead of one send() per message: a client gets about five
 * messages per order it sends. */
#define WS_BATCH_BYTES 65536
#define WS_BATCH_MESSAGES 64
#define WS_FRAME_HEAD_MAX 10

typedef struct outq_item {
    shared_msg *msg;
    bool droppable;
    uint64_t conflate_key; /* nonzero: a newer push with the same key replaces this one */
    struct outq_item *next;
} outq_item;

typedef struct session {
    uint64_t conn_id;
    struct lws *wsi;
    bool is_ws;
    bool is_diff;
    diff_session *diff; /* the DIFF state of a /ws/diff session (or a /ws one that sent an aid) */
    /* who the token (HTTP: of this request; WebSocket: of the session) says is asking */
    bool auth_valid, auth_admin;
    char auth_user[QAEX_ID_LEN];
    char auth_name[QAEX_NAME_LEN];
    char pending_secret[AUTH_PASSWORD_MAX + 1]; /* a password waiting for its user's record */
    /* DIFF: who a req_login being checked proves the client is. It becomes the session's
     * identity only once the engine accepts the login, so a refused one leaves the current
     * login acting as before. */
    bool login_auth_valid, login_auth_admin;
    char login_auth_user[QAEX_ID_LEN];
    char login_auth_name[QAEX_NAME_LEN];
    /* HTTP */
    http_method method;
    char path[512];
    char query[512];
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    char bad_arg[160]; /* a URL argument too long for its field (url_arg_too_long), or "" */
    bool close_after_response;
    bool in_flight; /* a request is being answered: the connection reads nothing more meanwhile */
    bool awaiting_reply;
    shared_msg *response;      /* the HTTP response, once known */
    const char *response_type; /* its content type; NULL: JSON */
    unsigned response_allow;   /* a 405's Allow methods (ALLOW bits); 0: no Allow header */
    int response_status;
    query_job *pending_query; /* a history query waiting for the engine's permission */
    /* WebSocket */
    char account_id[QAEX_ID_LEN];
    bool authenticated;
    uint32_t channels;
    char subscriptions[MAX_SUBSCRIPTIONS][QAEX_INSTRUMENT_ID_LEN];
    int n_subscriptions;
    char *rx;
    size_t rx_len, rx_cap;
    bool rx_discard; /* dropping the rest of a message over the configured size */
    outq_item *out_head, *out_tail;
    size_t backlog, droppable_backlog;
    /* notifications (a `type` session once authenticated); listed: in g->notes_pending */
    notify_session *notes;
    bool notes_listed;
    /* keepalive: when the client was last heard from, when it was last pinged */
    int64_t heard_ms, pinged_ms;
    bool ping_due;
} session;

/* Sessions interested in a topic (an account id or an instrument id). */
/* Accounts and instruments are apart: a name in one is never the same topic as in the other (a
 * subscription to an "instrument" named like an account got that account's pushes). */
typedef enum topic_kind { TOPIC_ACCOUNT = 1, TOPIC_INSTRUMENT = 2 } topic_kind;

typedef struct topic {
    topic_kind kind;
    char name[QAEX_ID_LEN];
    uint64_t *conns;
    uint32_t n, cap;
} topic;

struct gateway {
    gateway_config cfg;
    service *svc;
    struct lws_context *ctx;
    atomic_bool stop;
    int64_t last_ts_ns;
    /* connections: the low 32 bits of a conn_id index this table, the high bits are a
     * generation, so a reply for a closed connection finds nothing */
    session **conns;
    uint32_t n_conns, cap_conns;
    uint32_t *free_slots;
    uint32_t n_free;
    uint32_t generation;
    int ws_sessions;
    int market_subscriptions;     /* instrument subscriptions over all sessions */
    int diff_quotes, diff_charts; /* DIFF quote subscriptions and charts over all sessions */
    /* authentication: token keys, the password-hashing thread, failed-login throttling */
    auth_keys keys;
    kdf_worker *kdf;
    auth_throttle *throttle;
    /* replies waiting for the journal to make them durable, oldest first */
    reply *held;
    size_t held_head, held_count, held_cap;
    topic *topics;
    uint32_t n_topics, cap_topics;
    idmap topic_index; /* hash of the name -> slot in topics */
    struct lws_protocols protocols[2];
    int http_port;
    bool closing; /* gateway_destroy: the service may be gone, sessions are only released */
    /* notifications (seed 004): the broker, sessions with messages queued in it, the timer
     * that flushes batches when they fall due, and how many sessions want each channel */
    notify_broker *notes;
    uint64_t *notes_pending;
    uint32_t n_notes_pending, cap_notes_pending;
    lws_sorted_usec_list_t notes_timer;
    int notes_wanted[NOTIFY_CHANNEL_COUNT];
    int64_t notes_epoch_ms; /* message ids are "<start ms>-<n>": unique across restarts */
    lws_sorted_usec_list_t keepalive_timer;
    unsigned char *ws_batch; /* LWS_PRE + WS_BATCH_BYTES: queued messages framed for one write */
};

/* ---- time and ids ---- */

static int64_t command_time(gateway *g) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    /* commands are stamped in increasing order even if the wall clock steps back */
    if (now <= g->last_ts_ns) now = g->last_ts_ns + 1;
    g->last_ts_ns = now;
    return now;
}

static void new_account_id(char *out, size_t outlen) {
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)(ts.tv_nsec >> (i % 8 * 4) ^ i);
    }
    int n = snprintf(out, outlen, "ACC_");
    for (size_t i = 0; i < sizeof r && (size_t)n + 2 < outlen; i++)
        n += snprintf(out + n, outlen - (size_t)n, "%02x", r[i]);
}

/* ---- shared messages and session queues ---- */

/* A message with room for len bytes of text (and the NUL) that the caller writes at
 * msg_text(m); the only place a shared_msg is allocated. */
static shared_msg *msg_alloc(size_t len, size_t head_room) {
    shared_msg *m = malloc(sizeof *m + LWS_PRE + head_room + len + 1);
    if (m == NULL) return NULL;
    m->refs = 1;
    m->len = len;
    m->head_room = head_room;
    return m;
}

static shared_msg *msg_new_room(const char *text, size_t len, size_t head_room) {
    shared_msg *m = msg_alloc(len, head_room);
    if (m == NULL) return NULL;
    memcpy(msg_text(m), text, len);
    msg_text(m)[len] = '\0';
    return m;
}

static shared_msg *msg_new(const char *text, size_t len) {
    return msg_new_room(text, len, 0);
}

/* head + body + tail as one message, without building the text twice. */
static shared_msg *msg_new_parts(const char *head, const char *body, size_t body_len,
                                 const char *tail) {
    size_t h = strlen(head), t = strlen(tail), len = h + body_len + t;
    shared_msg *m = msg_alloc(len, 0);
    if (m == NULL) return NULL;
    unsigned char *p = msg_text(m);
    memcpy(p, head, h);
    memcpy(p + h, body, body_len);
    memcpy(p + h + body_len, tail, t);
    p[len] = '\0';
    return m;
}

static void msg_release(shared_msg *m) {
    if (m && --m->refs == 0) free(m);
}

static void session_clear_queue(session *s) {
    while (s->out_head) {
        outq_item *it = s->out_head;
        s->out_head = it->next;
        msg_release(it->msg);
        free(it);
    }
    s->out_tail = NULL;
    s->backlog = s->droppable_backlog = 0;
}

/* Drops the oldest droppable (market data) message of a backlogged session. */
static void session_drop_oldest_market(session *s) {
    outq_item **pp = &s->out_head, *prev = NULL;
    while (*pp && !(*pp)->droppable) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    outq_item *it = *pp;
    if (it == NULL) return;
    *pp = it->next;
    if (s->out_tail == it) s->out_tail = prev;
    msg_release(it->msg);
    free(it);
    s->backlog--;
    s->droppable_backlog--;
}

/* Puts m in place of a queued, unsent message with the same conflation key; false when none. */
static bool session_conflate(session *s, shared_msg *m, uint64_t key) {
    for (outq_item *it = s->out_head; it; it = it->next)
        if (it->conflate_key == key) {
            msg_release(it->msg);
            m->refs++;
            it->msg = m;
            return true;
        }
    return false;
}

static void session_send_keyed(session *s, shared_msg *m, bool droppable, uint64_t key) {
    if (key && s->droppable_backlog > 0 && session_conflate(s, m, key)) return;
    if (droppable && s->droppable_backlog >= WS_SOFT_BACKLOG) session_drop_oldest_market(s);
    if (s->backlog >= WS_HARD_BACKLOG) {
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        return;
    }
    outq_item *it = malloc(sizeof *it);
    if (it == NULL) return;
    m->refs++;
    it->msg = m;
    it->droppable = droppable;
    it->conflate_key = key;
    it->next = NULL;
    if (s->out_tail)
        s->out_tail->next = it;
    else
        s->out_head = it;
    s->out_tail = it;
    s->backlog++;
    if (droppable) s->droppable_backlog++;
    lws_callback_on_writable(s->wsi);
}

static void session_send(session *s, shared_msg *m, bool droppable) {
    session_send_keyed(s, m, droppable, 0);
}

static double open_connections(void *ctx) {
    const gateway *g = ctx;
    return (double)(g->n_conns - g->n_free);
}

static double open_ws_sessions(void *ctx) {
    return (double)((const gateway *)ctx)->ws_sessions;
}

static void session_send_text(session *s, const char *text) {
    shared_msg *m = msg_new(text, strlen(text));
    if (m == NULL) return;
    session_send(s, m, false);
    msg_release(m);
}

static void session_send_json(session *s, json_t *j) {
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(j);
    if (text == NULL) return;
    session_send_text(s, text);
    free(text);
}

/* ---- connections ---- */

static int conn_register(gateway *g, session *s) {
    uint32_t slot;
    if (g->n_free) {
        slot = g->free_slots[--g->n_free];
    } else {
        if (g->n_conns == g->cap_conns) {
            uint32_t cap = g->cap_conns ? g->cap_conns * 2 : 1024;
            session **c = realloc(g->conns, cap * sizeof *c);
            if (c == NULL) return -1;
            g->conns = c;
            uint32_t *f = realloc(g->free_slots, cap * sizeof *f);
            if (f == NULL) return -1;
            g->free_slots = f;
            g->cap_conns = cap;
        }
        slot = g->n_conns++;
    }
    g->conns[slot] = s;
    s->conn_id = ((uint64_t)++g->generation << 32) | slot;
    return 0;
}

static void conn_unregister(gateway *g, session *s) {
    uint32_t slot = (uint32_t)s->conn_id;
    if (s->conn_id == 0 || slot >= g->n_conns || g->conns[slot] != s) return;
    g->conns[slot] = NULL;
    g->free_slots[g->n_free++] = slot;
    s->conn_id = 0;
}

static session *conn_find(gateway *g, uint64_t conn_id) {
    uint32_t slot = (uint32_t)conn_id;
    if (slot >= g->n_conns) return NULL;
    session *s = g->conns[slot];
    return s && s->conn_id == conn_id ? s : NULL;
}

/* ---- topics ---- */

typedef struct topic_key {
    const gateway *g;
    topic_kind kind;
    const char *name;
} topic_key;

static bool topic_matches(const void *ctx, uint32_t slot) {
    const topic_key *k = ctx;
    return k->g->topics[slot].kind == k->kind && strcmp(k->g->topics[slot].name, k->name) == 0;
}

static topic *topic_find(gateway *g, topic_kind kind, const char *name, bool create) {
    topic_key k = {g, kind, name};
    uint64_t h = idmap_hash_str(kind, name);
    uint32_t slot = idmap_find(&g->topic_index, h, topic_matches, &k);
    if (slot != IDMAP_NONE) return &g->topics[slot];
    if (!create) return NULL;
    if (g->n_topics == g->cap_topics) {
        uint32_t cap = g->cap_topics ? g->cap_topics * 2 : 64;
        topic *t = realloc(g->topics, cap * sizeof *t);
        if (t == NULL) return NULL;
        g->topics = t;
        g->cap_topics = cap;
    }
    if (idmap_insert(&g->topic_index, h, g->n_topics) != 0) return NULL;
    topic *t = &g->topics[g->n_topics++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

/* Frees the topic in `slot` (it has no member left) and moves the last topic into its place.
 * Topics live only while someone listens: every name a client subscribes with, logs in with or
 * authenticates as becomes a topic, so keeping empty ones let a client grow the table without
 * bound with names it made up. (The gateway cannot refuse unknown instruments instead: they live
 * on the engine thread and are created and delisted while sessions run.) */
static void topic_drop(gateway *g, uint32_t slot) {
    topic *t = &g->topics[slot];
    idmap_remove(&g->topic_index, idmap_hash_str(t->kind, t->name), slot);
    free(t->conns);
    uint32_t last = --g->n_topics;
    if (slot == last) return;
    uint64_t h = idmap_hash_str(g->topics[last].kind, g->topics[last].name);
    idmap_remove(&g->topic_index, h, last);
    g->topics[slot] = g->topics[last];
    /* two entries were just removed, so this insert needs no growth and cannot fail */
    idmap_insert(&g->topic_index, h, slot);
}

/* Adds a member; -1 (nothing changed) when out of memory. */
static int topic_add(gateway *g, topic_kind kind, const char *name, uint64_t conn_id) {
    topic *t = topic_find(g, kind, name, true);
    if (t == NULL) return -1;
    for (uint32_t i = 0; i < t->n; i++)
        if (t->conns[i] == conn_id) return 0;
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 8;
        uint64_t *c = realloc(t->conns, cap * sizeof *c);
        if (c == NULL) {
            if (t->n == 0) topic_drop(g, (uint32_t)(t - g->topics)); /* just created */
            return -1;
        }
        t->conns = c;
        t->cap = cap;
    }
    t->conns[t->n++] = conn_id;
    return 0;
}

static void topic_remove(gateway *g, topic_kind kind, const char *name, uint64_t conn_id) {
    topic *t = topic_find(g, kind, name, false);
    if (t == NULL) return;
    for (uint32_t i = 0; i < t->n; i++)
        if (t->conns[i] == conn_id) {
            t->conns[i] = t->conns[--t->n];
            if (t->n == 0) topic_drop(g, (uint32_t)(t - g->topics));
            return;
        }
}

static void ws_send_error(session *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- notifications (seed 004): broker sessions of `type` WebSocket sessions ---- */

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A session with no filter receives every channel (the seed's zero-configuration rule). */
static uint32_t notes_effective(const session *s) {
    uint32_t m = notify_session_channels(s->notes);
    return m ? m : NOTIFY_CHANNELS_ALL;
}

/* The engine thread only produces the channels some session wants. */
static void notes_count(gateway *g, uint32_t mask, int delta) {
    uint32_t wanted = 0;
    for (int c = 0; c < NOTIFY_CHANNEL_COUNT; c++) {
        if (mask & NOTIFY_CHANNEL_BIT(c)) g->notes_wanted[c] += delta;
        if (g->notes_wanted[c] > 0) wanted |= NOTIFY_CHANNEL_BIT(c);
    }
    if (!g->closing) service_set_notify_channels(g->svc, wanted);
}

static void notes_join(gateway *g, session *s) {
    if (s->notes || g->notes == NULL) return;
    s->notes = notify_session_new(g->notes);
    if (s->notes) notes_count(g, notes_effective(s), +1);
}

static void notes_leave(gateway *g, session *s) {
    s->notes_listed = false; /* a conn_id left in notes_pending is skipped at the flush */
    if (s->notes == NULL) return;
    notes_count(g, notes_effective(s), -1);
    notify_session_free(s->notes);
    s->notes = NULL;
    /* a listed conn_id left in notes_pending finds no session and is dropped at the flush */
}

/* {"action":"subscribe"|"unsubscribe","channels":[…]} and {"action":"get_subscriptions"}
 * (seed lines 4623–4645). Subscribe and unsubscribe answer nothing, as in the seed, unless a
 * channel is unknown: that is refused with 9003 and changes nothing.
 *
 * A session receives notifications from its first subscribe on (or from its authentication with
 * [notification] auto_subscribe): they repeat the order_status, trade and account_update pushes
 * of the `type` protocol in the seed's other format, and sending both to every client would
 * double the work per order. From then on the seed's rule holds: no channel named means every
 * channel (a subscribe that names none, too, whatever the filter was). */
static void notes_action(gateway *g, session *s, const json_t *m) {
    const char *action = json_string_value(json_object_get(m, "action"));
    if (action == NULL) {
        ws_send_error(s, ERR_BAD_MESSAGE, "\"action\" must be a string");
        return;
    }
    if (!s->authenticated) {
        ws_send_error(s, ERR_NOT_AUTHENTICATED,
                      "not authenticated: send {\"type\":\"auth\"} before managing notifications");
        return;
    }
    if (strcmp(action, "get_subscriptions") == 0) {
        json_t *list = json_array();
        uint32_t mask = s->notes ? notify_session_channels(s->notes) : 0;
        for (int c = 0; list && c < NOTIFY_CHANNEL_COUNT; c++)
            if (mask & NOTIFY_CHANNEL_BIT(c))
                json_array_append_new(list, json_string(notify_channel_name((notify_channel)c)));
        session_send_json(s, json_pack("{s:s, s:o, s:b}", "action", "subscriptions_response",
                                       "channels", list ? list : json_array(), "active",
                                       s->notes != NULL));
        return;
    }
    bool subscribe = strcmp(action, "subscribe") == 0;
    if (!subscribe && strcmp(action, "unsubscribe") != 0 &&
        strcmp(action, "unsubscribe_all") != 0) {
        ws_send_error(s, ERR_BAD_MESSAGE,
                      "unknown action %s (subscribe, unsubscribe, unsubscribe_all, "
                      "get_subscriptions)",
                      action);
        return;
    }
    uint32_t mask = 0;
    const json_t *channels = json_object_get(m, "channels");
    if (strcmp(action, "unsubscribe_all") != 0 && (channels || !subscribe)) {
        if (!json_is_array(channels)) {
            ws_send_error(s, ERR_BAD_MESSAGE, "\"channels\" must be an array of channel names");
            return;
        }
        size_t i;
        const json_t *v;
        json_array_foreach(channels, i, v) {
            int c = json_is_string(v) ? notify_channel_parse(json_string_value(v)) : -1;
            if (c < 0) {
                ws_send_error(s, ERR_BAD_MESSAGE,
                              "unknown notification channel %s (trade, account, position, risk, "
                              "system)",
                              json_is_string(v) ? json_string_value(v) : "(not a string)");
                return;
            }
            mask |= NOTIFY_CHANNEL_BIT(c);
        }
    }
    if (s->notes == NULL) {
        if (!subscribe) return; /* nothing to take away yet */
        notes_join(g, s);
        if (s->notes == NULL) {
            ws_send_error(s, ERR_UNAVAILABLE, "notifications unavailable: out of memory");
            return;
        }
    }
    notes_count(g, notes_effective(s), -1);
    if (subscribe && mask == 0) /* no channel named: every channel, even after a narrower one */
        notify_session_unsubscribe_all(s->notes);
    else if (subscribe)
        notify_session_subscribe(s->notes, mask);
    else if (mask)
        notify_session_unsubscribe(s->notes, mask);
    else
        notify_session_unsubscribe_all(s->notes);
    notes_count(g, notes_effective(s), +1);
}

static const char *notes_source(notify_type t) {
    switch (notify_type_channel(t)) {
        case NOTIFY_CH_TRADE:
            return "MatchingEngine";
        case NOTIFY_CH_ACCOUNT:
        case NOTIFY_CH_POSITION:
            return "AccountSystem";
        case NOTIFY_CH_RISK:
            return "RiskControl";
        default:
            return "System";
    }
}

static void notes_offer(gateway *g, session *s, notify_message *msg, int64_t now) {
    if (s == NULL || s->notes == NULL) return;
    notify_session_set_external_backlog(s->notes, s->backlog);
    notify_result rc = notify_publish(g->notes, s->notes, msg, now);
    if (notify_session_overflowed(s->notes)) { /* even P0 is being lost: the client is gone */
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        return;
    }
    if (rc != NOTIFY_QUEUED || s->notes_listed) return;
    if (g->n_notes_pending == g->cap_notes_pending) {
        uint32_t cap = g->cap_notes_pending ? g->cap_notes_pending * 2 : 64;
        uint64_t *n = realloc(g->notes_pending, cap * sizeof *n);
        if (n == NULL) return; /* it stays queued; the next notification lists it */
        g->notes_pending = n;
        g->cap_notes_pending = cap;
    }
    g->notes_pending[g->n_notes_pending++] = s->conn_id;
    s->notes_listed = true;
}

/* One notification from the engine thread, to its account's sessions or to all of them. */
static void notes_publish(gateway *g, const reply *r) {
    if (g->notes == NULL) return;
    char id[48];
    snprintf(id, sizeof id, "%lld-%llu", (long long)g->notes_epoch_ms,
             (unsigned long long)r->event_id);
    notify_message_init init = {
        .type = (notify_type)r->status,
        .priority = -1,
        .message_id = id,
        .user_id = r->topic,
        .source = notes_source((notify_type)r->status),
        .timestamp = r->event_ns,
        .payload_json = r->body,
    };
    notify_message *msg = notify_message_new(&init);
    if (msg == NULL) return;
    int64_t now = mono_ms();
    if (r->topic[0] == '\0') {
        for (uint32_t i = 0; i < g->n_conns; i++)
            if (g->conns[i] && g->conns[i]->notes) notes_offer(g, g->conns[i], msg, now);
    } else {
        topic *t = topic_find(g, TOPIC_ACCOUNT, r->topic, false);
        for (uint32_t i = 0; t && i < t->n; i++)
            notes_offer(g, conn_find(g, t->conns[i]), msg, now);
    }
    notify_message_release(msg);
}

static void notes_timer_fired(lws_sorted_usec_list_t *sul);

/* Moves what is due from the broker into the sessions' queues: each P0 as its own frame, the
 * rest of a due batch as one {"type":"notifications"} frame. Sessions with messages still
 * waiting stay listed, and the timer is set for the earliest. */
static void notes_flush(gateway *g) {
    if (g->n_notes_pending == 0) return;
    int64_t now = mono_ms(), next = NOTIFY_NO_DEADLINE;
    uint32_t kept = 0;
    notify_message *out[128];
    for (uint32_t i = 0; i < g->n_notes_pending; i++) {
        session *s = conn_find(g, g->notes_pending[i]);
        if (s == NULL) continue;
        if (s->notes == NULL) {
            s->notes_listed = false;
            continue;
        }
        size_t n;
        while ((n = notify_ready(g->notes, s->notes, now, out, 128)) > 0) {
            size_t first_batched = 0;
            for (; first_batched < n && out[first_batched]->priority == 0; first_batched++) {
                size_t len;
                const char *json = notify_message_json(out[first_batched], &len);
                shared_msg *m = msg_new(json, len);
                if (m) session_send(s, m, false), msg_release(m);
            }
            if (first_batched < n) {
                size_t len = notify_batch_len(out + first_batched, n - first_batched);
                shared_msg *m = msg_alloc(len, 0);
                if (m) {
                    m->len = notify_format_batch(out + first_batched, n - first_batched,
                                                 (char *)msg_text(m), len + 1);
                    if (m->len) session_send(s, m, false);
                    msg_release(m);
                }
            }
            for (size_t k = 0; k < n; k++)
                notify_message_release(out[k]);
        }
        int64_t due = notify_next_deadline(s->notes);
        if (due == NOTIFY_NO_DEADLINE) {
            s->notes_listed = false;
            continue;
        }
        if (due < next) next = due;
        g->notes_pending[kept++] = s->conn_id;
    }
    g->n_notes_pending = kept;
    if (kept && !g->closing) {
        int64_t wait_ms = next > now ? next - now : 1;
        lws_sul_schedule(g->ctx, 0, &g->notes_timer, notes_timer_fired,
                         (lws_usec_t)wait_ms * LWS_US_PER_MS);
    }
}

static void notes_timer_fired(lws_sorted_usec_list_t *sul) {
    gateway *g = lws_container_of(sul, gateway, notes_timer);
    notes_flush(g);
}

/* ---- WebSocket keepalive ---- */

/* One sweep over the sessions instead of libwebsockets' validity timers: lws 4.1 keeps every
 * connection's timer in one sorted list and re-arms it with an insert that walks the list, so
 * with 10,000 sessions pinging every 5 s the event loop spent most of its time walking it. */
static int keepalive_period_ms(const gateway *g) {
    int period = g->cfg.ws_ping_ms / 4;
    if (period > 1000) period = 1000;
    return period < 10 ? 10 : period;
}

static void keepalive_sweep(lws_sorted_usec_list_t *sul) {
    gateway *g = lws_container_of(sul, gateway, keepalive_timer);
    if (g->closing) return;
    int64_t now = mono_ms();
    for (uint32_t i = 0; i < g->n_conns; i++) {
        session *s = g->conns[i];
        if (s == NULL || !s->is_ws || s->wsi == NULL) continue;
        if (now - s->heard_ms >= g->cfg.ws_idle_ms) {
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        } else if (now - s->heard_ms >= g->cfg.ws_ping_ms &&
                   now - s->pinged_ms >= g->cfg.ws_ping_ms && !s->ping_due) {
            s->ping_due = true;
            lws_callback_on_writable(s->wsi);
        }
    }
    lws_sul_schedule(g->ctx, 0, &g->keepalive_timer, keepalive_sweep,
                     (lws_usec_t)keepalive_period_ms(g) * LWS_US_PER_MS);
}

static void diff_take_push(session *s, const reply *r, const json_t *patch);

static void deliver_to_topic(gateway *g, topic_kind kind, const char *name, shared_msg *m,
                             const reply *r, const json_t *diff_patch) {
    topic *t = topic_find(g, kind, name, false);
    if (t == NULL) return;
    if (r->channel & CHANNELS_DIFF) {
        /* a quote is the same patch for everyone: a session waiting with nothing owed gets the
         * one shared rtn_data, the others fold it into what they owe */
        shared_msg *direct = NULL;
        for (uint32_t i = 0; i < t->n && diff_patch; i++) {
            session *s = conn_find(g, t->conns[i]);
            if (s == NULL || s->diff == NULL) continue;
            if (r->channel == CHANNEL_DIFF_QUOTE && r->body && diff_session_idle(s->diff) &&
                diff_session_quotes(s->diff, r->topic)) {
                if (direct == NULL) {
                    static const char head[] = "{\"aid\":\"rtn_data\",\"data\":[", tail[] = "]}";
                    direct = msg_new_parts(head, r->body, r->len, tail);
                }
                if (direct) {
                    s->diff->peek_waiting = false;
                    session_send(s, direct, false);
                    continue;
                }
            }
            diff_take_push(s, r, diff_patch);
        }
        msg_release(direct);
        return;
    }
    bool market = r->kind == REPLY_PUSH_INSTRUMENT;
    uint64_t key = 0;
    if (market && (r->channel & CHANNELS_CONFLATED))
        key = idmap_hash_str(r->channel, r->topic) | 1; /* never 0 */
    for (uint32_t i = 0; i < t->n; i++) {
        session *s = conn_find(g, t->conns[i]);
        if (s == NULL || s->is_diff) continue;
        if (market && !(s->channels & r->channel)) continue;
        session_send_keyed(s, m, market, key);
        if (g->cfg.metrics) metrics_counter_inc(g->cfg.metrics->ws_messages);
    }
}

static topic_kind topic_of(const reply *r) {
    return r->kind == REPLY_PUSH_INSTRUMENT ? TOPIC_INSTRUMENT : TOPIC_ACCOUNT;
}

static void deliver_push(gateway *g, const reply *r) {
    if (g->cfg.metrics) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        if (now > r->made_ns)
            metrics_histogram_observe_ns(g->cfg.metrics->ws_push, (uint64_t)(now - r->made_ns));
    }
    if (r->channel == CHANNEL_NOTIFY) {
        notes_publish(g, r);
        return;
    }
    if (r->channel & CHANNELS_DIFF) { /* parsed once, folded into each session's patch */
        json_t *patch = json_loadb(r->body, r->len, 0, NULL);
        deliver_to_topic(g, topic_of(r), r->topic, NULL, r, patch);
        /* a quote or chart asked for by the short alias ("IF2501") is kept under that name in
         * the client's tree: the patch goes to those sessions renamed (and never as the shared
         * text, which names the full id) */
        const char *dot = r->kind == REPLY_PUSH_INSTRUMENT ? strchr(r->topic, '.') : NULL;
        const char *section = r->channel == CHANNEL_DIFF_QUOTE   ? "quotes"
                              : r->channel == CHANNEL_DIFF_KLINE ? "klines"
                                                                 : NULL;
        if (dot && section && patch && topic_find(g, TOPIC_INSTRUMENT, dot + 1, false)) {
            reply alias = *r;
            snprintf(alias.topic, sizeof alias.topic, "%s", dot + 1);
            alias.body = NULL;
            json_t *renamed = json_pack("{s:{s:O}}", section, dot + 1,
                                        json_object_get(json_object_get(patch, section), r->topic));
            if (renamed) deliver_to_topic(g, TOPIC_INSTRUMENT, dot + 1, NULL, &alias, renamed);
            json_decref(renamed);
        }
        json_decref(patch);
        return;
    }
    shared_msg *m = msg_new(r->body, r->len);
    if (m == NULL) return;
    deliver_to_topic(g, topic_of(r), r->topic, m, r, NULL);
    /* instrument subscribers may have used the short alias ("IF2501") */
    const char *dot = r->kind == REPLY_PUSH_INSTRUMENT ? strchr(r->topic, '.') : NULL;
    if (dot) deliver_to_topic(g, TOPIC_INSTRUMENT, dot + 1, m, r, NULL);
    msg_release(m);
}

/* ---- HTTP responses ---- */

static void respond(session *s, int status, const char *body, size_t len) {
    msg_release(s->response);
    s->response = msg_new_room(body, len, HTTP_HEAD_ROOM);
    s->response_status = status;
    s->awaiting_reply = false;
    lws_callback_on_writable(s->wsi);
}

static void respond_json(session *s, int status, json_t *j) {
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(j);
    if (text == NULL) {
        static const char oom[] = "{\"success\":false,\"data\":null,\"error\":{\"code\":5000,"
                                  "\"message\":\"out of memory\"}}";
        respond(s, 500, oom, sizeof oom - 1);
        return;
    }
    respond(s, status, text, strlen(text));
    free(text);
}

static void respond_error(session *s, int http_status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void respond_error(session *s, int http_status, int code, const char *fmt, ...) {
    char msg[QAEX_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    respond_json(s, http_status ? http_status : codec_http_status(code),
                 codec_envelope_error(code, msg));
}

static int write_response(gateway *g, session *s) {
    if (s->response == NULL) return 0;
    unsigned char hdr[LWS_PRE + 1024];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    const char *type = s->response_type ? s->response_type : "application/json";
    s->response_type = NULL;
    unsigned allow = s->response_allow;
    s->response_allow = 0;
    /* the CORS lines every response carries, as lws_add_http_header_by_name writes them for
     * HTTP/1 (the only HTTP the gateway serves): copied once instead of formatted three times */
    static const char cors[] = "access-control-allow-origin: *\r\n"
                               "access-control-allow-headers: content-type, authorization\r\n"
                               "access-control-allow-methods: GET, POST, PUT, DELETE, OPTIONS\r\n";
    if (lws_add_http_common_headers(s->wsi, (unsigned)s->response_status, type,
                                    (lws_filepos_t)s->response->len, &p, end) ||
        end - p < (ptrdiff_t)sizeof cors)
        return -1;
    memcpy(p, cors, sizeof cors - 1);
    p += sizeof cors - 1;
    if (allow) { /* a 405 (RFC 9110 15.5.6): rare, so formatted here rather than kept ready */
        char list[64];
        allow_list(allow, list, sizeof list);
        if (lws_add_http_header_by_name(s->wsi, (const unsigned char *)"allow:",
                                        (const unsigned char *)list, (int)strlen(list), &p, end))
            return -1;
    }
    if (lws_finalize_http_header(s->wsi, &p, end)) return -1;
    shared_msg *m = s->response;
    s->response = NULL;
    size_t head = (size_t)(p - start);
    int n;
    if (head <= m->head_room) { /* headers just before the body: one send */
        unsigned char *at = msg_text(m) - head;
        memcpy(at, start, head);
        n = lws_write(s->wsi, at, head + m->len, LWS_WRITE_HTTP_FINAL);
    } else {
        n = lws_write(s->wsi, start, head, LWS_WRITE_HTTP_HEADERS);
        if (n >= 0) n = lws_write(s->wsi, msg_text(m), m->len, LWS_WRITE_HTTP_FINAL);
    }
    msg_release(m);
    if (n < 0) return -1;
    free(s->body);
    s->body = NULL;
    s->body_len = s->body_cap = 0;
    s->body_too_large = false;
    if (s->close_after_response) return -1;
    s->in_flight = false;
    /* lws may free or reuse the session's memory once the transaction completes, and a client
     * may close a kept-alive connection without lws reporting it with this session: leave the
     * table now (the next request on the connection registers again) */
    conn_unregister(g, s);
    return lws_http_transaction_completed(s->wsi) ? -1 : 0;
}

/* ---- requests to the engine thread ---- */

static void diff_notify_error(session *s, int code, const char *message);

/* Queues a request acting for the user `valid`, `admin`, `user_id` say (DIFF logins act for the
 * identity they prove before it is the session's). */
static bool submit_as(gateway *g, session *s, request *rq, bool valid, bool admin,
                      const char *user_id) {
    if (!s->is_ws && s->bad_arg[0]) {
        respond_error(s, 400, ERR_BAD_MESSAGE, "%s", s->bad_arg);
        return false;
    }
    rq->conn_id = s->conn_id;
    if (!g->cfg.open_mode) {
        rq->auth_enforced = true;
        rq->auth_admin = valid && admin;
        snprintf(rq->auth_user, sizeof rq->auth_user, "%s", valid ? user_id : "");
    }
    if (rq->cmd.type != 0) rq->cmd.ts_ns = command_time(g);
    if (!service_submit(g->svc, rq)) {
        if (s->is_diff)
            diff_notify_error(s, ERR_UNAVAILABLE, "the exchange is busy: request queue full");
        else if (s->is_ws)
            session_send_json(s,
                              json_pack("{s:s, s:i, s:s}", "type", "error", "code", ERR_UNAVAILABLE,
                                        "message", "the exchange is busy: request queue full"));
        else
            respond_error(s, 503, ERR_UNAVAILABLE, "the exchange is busy: request queue full");
        return false;
    }
    if (!s->is_ws) s->awaiting_reply = true;
    return true;
}

static bool submit(gateway *g, session *s, request *rq) {
    return submit_as(g, s, rq, s->auth_valid, s->auth_admin, s->auth_user);
}

/* ---- history queries (a worker thread; see query_worker.h) ---- */

static void copy_id(char *dst, size_t cap, const char *src);

/* What an internal reply or a finished query is for (after the authentication purposes). */
enum {
    PURPOSE_HISTORY_ACCESS = 16, /* the engine's answer: may this user read the account? */
    PURPOSE_STORAGE_STATS,       /* the history's stats for /monitoring/storage */
};

static bool history_on(gateway *g, session *s) {
    if (g->cfg.queries) return true;
    respond_error(s, 503, ERR_UNAVAILABLE,
                  "the history store is off (storage disabled or [history] enabled = false)");
    return false;
}

/* Hands a job to the query thread; it sees every command acknowledged so far. */
static void query_submit(gateway *g, session *s, query_job *j) {
    j->conn_id = s->conn_id;
    uint64_t durable = service_durable_seq(g->svc);
    if (j->wait_seq == 0) j->wait_seq = durable == UINT64_MAX ? 0 : durable;
    if (!query_worker_submit(g->cfg.queries, j)) {
        respond_error(s, 503, ERR_UNAVAILABLE, "the history is busy: query queue full");
        return;
    }
    s->awaiting_reply = true;
}

/* A query of one account's history: the engine thread checks the account exists and belongs to
 * the asker (and resolves an instrument alias) before the job is queued. */
static void query_for_account(gateway *g, session *s, query_job *j, const char *account_id,
                              const char *instrument_id) {
    request rq;
    memset(&rq, 0, sizeof rq);
    rq.route = ROUTE_HISTORY_ACCESS;
    rq.purpose = PURPOSE_HISTORY_ACCESS;
    copy_id(rq.key, sizeof rq.key, account_id);
    copy_id(rq.key2, sizeof rq.key2, instrument_id);
    snprintf(j->account_id, sizeof j->account_id, "%s", rq.key);
    query_job_free(s->pending_query);
    s->pending_query = j;
    if (!submit(g, s, &rq)) {
        s->pending_query = NULL;
        query_job_free(j);
    }
}

static void history_access_done(gateway *g, session *s, const json_t *body) {
    query_job *j = s->pending_query;
    s->pending_query = NULL;
    if (j == NULL) return;
    int code = (int)json_integer_value(json_object_get(body, "code"));
    const char *msg = json_string_value(json_object_get(body, "message"));
    if (body == NULL) {
        code = ERR_INTERNAL;
        msg = "no answer from the engine";
    }
    if (code != 0) {
        respond_error(s, 0, code, "%s", msg ? msg : "refused");
        query_job_free(j);
        return;
    }
    const char *ins = json_string_value(json_object_get(body, "instrument_id"));
    snprintf(j->instrument_id, sizeof j->instrument_id, "%s", ins ? ins : "");
    j->wait_seq = (uint64_t)json_integer_value(json_object_get(body, "seq"));
    query_submit(g, s, j);
}

static void drain_queries(gateway *g) {
    query_job *j;
    while (g->cfg.queries && (j = query_worker_poll(g->cfg.queries)) != NULL) {
        session *s = conn_find(g, j->conn_id);
        if (s && j->purpose == PURPOSE_STORAGE_STATS) {
            /* the engine thread adds them to its own storage figures */
            request rq;
            memset(&rq, 0, sizeof rq);
            rq.route = ROUTE_MON_STORAGE;
            rq.extra = j->body;
            j->body = NULL;
            if (!submit(g, s, &rq)) free(rq.extra);
        } else if (s) {
            respond(s, j->status ? j->status : 500, j->body ? j->body : "", j->len);
            s->response_type = j->content_type;
        }
        query_job_free(j);
    }
}

/* A JSON value as the client sent it, cut to fit a message (SPEC 7: a refusal names the
 * offending value). */
static void json_value_text(const json_t *v, char *out, size_t cap) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(out, cap, "%s", t ? t : "?");
    free(t);
}

static bool json_int_field(session *s, const json_t *body, const char *name, int64_t min,
                           int64_t max, int64_t *out) {
    const json_t *v = json_object_get(body, name);
    if (v == NULL || json_is_null(v)) return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        char got[64];
        json_value_text(v, got, sizeof got);
        respond_error(s, 400, HISTORY_QERR_INVALID, "%s must be an integer in [%lld, %lld], got %s",
                      name, (long long)min, (long long)max, got);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

/* The common fields of the query routes: limit, timeout_ms, format. */
static bool query_limits(session *s, const json_t *body, history_query_limits *lim) {
    int64_t limit = 0, timeout = 0;
    if (!json_int_field(s, body, "limit", 1, HISTORY_MAX_ROW_LIMIT, &limit) ||
        !json_int_field(s, body, "timeout_ms", 1, 60000, &timeout))
        return false;
    lim->row_limit = (long)limit;
    lim->time_limit_ms = (int)timeout;
    const json_t *f = json_object_get(body, "format");
    if (f && !json_is_null(f)) {
        int fmt = json_is_string(f) ? history_format_parse(json_string_value(f)) : -1;
        if (fmt < 0) {
            char got[64];
            json_value_text(f, got, sizeof got);
            respond_error(s, 400, HISTORY_QERR_INVALID, "format must be json, csv or jsonl, got %s",
                          got);
            return false;
        }
        lim->format = (history_format)fmt;
    }
    return true;
}

/* POST /api/query/{sql,structured,timeseries} */
static void route_query(gateway *g, session *s, const char *what, json_t *body) {
    if (!history_on(g, s)) return;
    query_job *j = NULL;
    if (strcmp(what, "sql") == 0) {
        const json_t *sql = json_object_get(body, "sql");
        if (sql == NULL) sql = json_object_get(body, "query");
        if (!json_is_string(sql)) {
            respond_error(s, 400, HISTORY_QERR_INVALID,
                          "sql must be a string: {\"sql\": \"SELECT ...\"}");
            return;
        }
        j = query_job_new(QUERY_SQL);
        if (j && !query_limits(s, body, &j->lim)) {
            query_job_free(j);
            return;
        }
        if (j) j->text = strdup(json_string_value(sql));
    } else if (strcmp(what, "structured") == 0) {
        j = query_job_new(QUERY_STRUCTURED);
        if (j && !query_limits(s, body, &j->lim)) {
            query_job_free(j);
            return;
        }
        if (j) j->text = json_dumps(body, JSON_COMPACT);
    } else if (strcmp(what, "timeseries") == 0) {
        const json_t *ins = json_object_get(body, "instrument_id");
        const json_t *gran = json_object_get(body, "granularity");
        if (!json_is_string(ins) || json_string_length(ins) >= HISTORY_INSTRUMENT_LEN) {
            respond_error(s, 400, HISTORY_QERR_INVALID, "instrument_id must be a string");
            return;
        }
        char granularity[16] = "1m";
        if (json_is_integer(gran))
            snprintf(granularity, sizeof granularity, "%llds", (long long)json_integer_value(gran));
        else if (json_is_string(gran) && json_string_length(gran) < sizeof granularity)
            snprintf(granularity, sizeof granularity, "%s", json_string_value(gran));
        else if (gran && !json_is_null(gran)) {
            char got[64];
            json_value_text(gran, got, sizeof got);
            respond_error(s, 400, HISTORY_QERR_INVALID,
                          "granularity must be 1s 5s 10s 30s 1m 5m 15m 30m 1h 4h 1d or a number of "
                          "seconds, got %s",
                          got);
            return;
        }
        j = query_job_new(QUERY_TIMESERIES);
        if (j == NULL) goto oom;
        j->end_ms = INT64_MAX / 1000000;
        if (!query_limits(s, body, &j->lim) ||
            !json_int_field(s, body, "start", 0, INT64_MAX / 1000000, &j->start_ms) ||
            !json_int_field(s, body, "end", 0, INT64_MAX / 1000000, &j->end_ms)) {
            query_job_free(j);
            return;
        }
        snprintf(j->instrument_id, sizeof j->instrument_id, "%s", json_string_value(ins));
        memcpy(j->granularity, granularity, sizeof granularity);
    } else {
        respond_error(s, 404, CODEC_ERR_NOT_FOUND, "no route POST %s", s->path);
        return;
    }
    if (j == NULL || (j->kind != QUERY_TIMESERIES && j->text == NULL)) {
        query_job_free(j);
        goto oom;
    }
    query_submit(g, s, j);
    return;
oom:
    respond_error(s, 500, ERR_INTERNAL, "out of memory");
}

/* Copies src into dst[cap], cut to fit: for values already checked for length where they
 * entered (bodies by the codec, path segments by route_http). */
static void copy_id(char *dst, size_t cap, const char *src) {
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memmove(dst, src ? src : "", n);
    dst[n] = '\0';
}

/* ---- REST routing ---- */

/* Splits "/api/order/user/ACC1/trades" into segments; returns how many. */
static int split_path(char *path, char **seg, int max) {
    int n = 0;
    for (char *p = strtok(path, "/"); p && n < max; p = strtok(NULL, "/"))
        seg[n++] = p;
    return n;
}

static bool seg_is(char **seg, int n, int i, const char *what) {
    return i < n && strcmp(seg[i], what) == 0;
}

/* A URL argument's value ("page=" -> "2"); false when absent or longer than cap. */
/* 1 with the value in out, 0 when absent, -1 when longer than cap - 1 (out is then ""). */
static int url_arg_get(struct lws *wsi, const char *name, char *out, size_t cap) {
    /* as large as lws's whole header storage: lws finds nothing in a fragment longer than the
     * buffer, so a smaller one took a long token for no token at all */
    char buf[URL_ARG_MAX];
    /* lws copies the whole "name=value" fragment into buf and points past the name */
    const char *value = lws_get_urlarg_by_name(wsi, name, buf, sizeof buf);
    out[0] = '\0';
    if (value == NULL) return 0;
    if (strlen(value) >= cap) return -1;
    memmove(out, value, strlen(value) + 1);
    return 1;
}

static bool url_arg(struct lws *wsi, const char *name, char *out, size_t cap) {
    return url_arg_get(wsi, name, out, cap) == 1;
}

/* A URL argument too long for its field is remembered, and the request is refused with it when
 * it is submitted (submit_as): cut or dropped, it would ask for something else (a date filter
 * silently gone). */
static void url_arg_too_long(session *s, const char *name, size_t cap) {
    if (s->bad_arg[0] == '\0')
        snprintf(s->bad_arg, sizeof s->bad_arg, "URL argument %.*s is too long (at most %zu bytes)",
                 (int)strlen(name) - 1, name, cap - 1);
}

/* A URL argument that must be an integer in [min, max] when present: false (and the 400 is
 * sent) when it is not, naming the argument and the value received. */
static bool query_int_in(session *s, const char *name, int64_t def, int64_t min, int64_t max,
                         int64_t *out) {
    char buf[64];
    *out = def;
    int got = url_arg_get(s->wsi, name, buf, sizeof buf);
    if (got < 0) {
        respond_error(s, 400, ERR_BAD_MESSAGE, "%.*s must be an integer in [%lld, %lld], got %s",
                      (int)strlen(name) - 1, name, (long long)min, (long long)max,
                      "a value of 64 bytes or more");
        return false;
    }
    if (got == 0) return true;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end != '\0' || end == buf || errno != 0 || v < min || v > max) {
        respond_error(s, 400, ERR_BAD_MESSAGE, "%.*s must be an integer in [%lld, %lld], got '%s'",
                      (int)strlen(name) - 1, name, (long long)min, (long long)max, buf);
        return false;
    }
    *out = v;
    return true;
}

/* The period and window of a K-line request: false when answered with an error. */
static bool kline_args(session *s, const char *period_text, request *rq) {
    kline_period p;
    if (kline_period_parse(period_text, &p) != 0) {
        respond_error(s, 400, ERR_BAD_MESSAGE,
                      "unknown K-line period '%s' (3s, 1min, 5min, 15min, 30min, 60min, day)",
                      period_text);
        return false;
    }
    rq->num1 = p;
    return query_int_in(s, "count=", 100, 1, 100000, &rq->num2) &&
           query_int_in(s, "start=", 0, 0, INT64_MAX, &rq->start_ms) &&
           query_int_in(s, "end=", 0, 0, INT64_MAX, &rq->end_ms);
}

/* A date URL argument (start_date=, end_date=): absent, or a calendar date YYYY-MM-DD. The
 * filters compare dates as text, so any other spelling ("2025-1-5", "2025/01/05", "20250105")
 * would select the wrong days and answer 200 with them: false (and the 400 is sent) instead,
 * naming the argument and the value. */
static bool query_date(session *s, const char *name, char *out, size_t cap) {
    int got = url_arg_get(s->wsi, name, out, cap);
    if (got == 0 || (got == 1 && qaex_date_valid(out))) return true;
    respond_error(s, 400, ERR_BAD_MESSAGE, "%.*s must be a date YYYY-MM-DD, got '%s'",
                  (int)strlen(name) - 1, name, got < 0 ? "a longer value" : out);
    return false;
}

static void query_str(session *s, const char *name, char *out, size_t cap) {
    if (url_arg_get(s->wsi, name, out, cap) < 0) url_arg_too_long(s, name, cap);
}

static json_t *parse_body(session *s) {
    if (s->body_len == 0) return json_object();
    json_error_t err;
    json_t *j = codec_load(s->body, s->body_len, &err);
    if (j == NULL) {
        respond_error(s, 400, ERR_BAD_MESSAGE, "malformed JSON at line %d column %d: %s", err.line,
                      err.column, err.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        respond_error(s, 400, ERR_BAD_MESSAGE, "request body must be a JSON object");
        return NULL;
    }
    return j;
}

static void auth_register(gateway *g, session *s, json_t *body);
static void auth_login(gateway *g, session *s, json_t *body);
static bool http_authenticate(gateway *g, session *s, bool required);

/* The user_id an order or cancel body names beside a different account_id, in rq->key2 for the
 * engine thread to check against the account's owner (the seed: "the server verifies that
 * account_id belongs to user_id"); "" when the body names one id only (the legacy flow). The
 * decoder has type-checked user_id already. */
static void claimed_user(const json_t *body, const char *account_id, request *rq) {
    const char *user_id = json_string_value(json_object_get(body, "user_id"));
    if (user_id && strcmp(user_id, account_id) != 0) copy_id(rq->key2, sizeof rq->key2, user_id);
}

/* POST routes: the body is complete. */
static void route_post(gateway *g, session *s, char **seg, int n) {
    char msg[QAEX_MSG_LEN];
    json_t *body = parse_body(s);
    if (body == NULL) return;
    request rq;
    memset(&rq, 0, sizeof rq);
    int rc = 0;
    if (n == 3 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "auth") &&
        (seg_is(seg, n, 2, "register") || seg_is(seg, n, 2, "login"))) {
        if (seg_is(seg, n, 2, "register"))
            auth_register(g, s, body);
        else
            auth_login(g, s, body);
        json_decref(body);
        return;
    }
    if (n == 3 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "query")) {
        route_query(g, s, seg[2], body);
        json_decref(body);
        return;
    }
    if (n == 3 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "account") &&
        seg_is(seg, n, 2, "open")) {
        rq.route = ROUTE_ACCOUNT_OPEN;
        rq.cmd.type = CMD_ACCOUNT_OPEN;
        rc = codec_parse_open_account(body, &rq.cmd, msg, sizeof msg);
        char *owner = rq.cmd.u.account_open.user_id, *id = rq.cmd.u.account_open.account_id;
        if (rc == 0 && s->auth_valid && owner[0] == '\0') copy_id(owner, QAEX_ID_LEN, s->auth_user);
        /* the seed's legacy flow names the account by its owner; a logged-in user gets a new id */
        if (rc == 0 && id[0] == '\0') {
            if (g->cfg.open_mode)
                memcpy(id, owner, QAEX_ID_LEN);
            else
                new_account_id(id, QAEX_ID_LEN);
        }
        if (rc == 0 && id[0] != '\0') rc = codec_check_account_id(id, msg, sizeof msg);
        /* nothing names the account (open mode, no user_id): a malformed request, which the
         * engine would otherwise refuse as an invalid order (1008) about a field not sent */
        if (rc == 0 && id[0] == '\0') {
            snprintf(msg, sizeof msg, "user_id or account_id is required to open an account");
            rc = ERR_BAD_MESSAGE;
        }
    } else if (n == 5 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "user") &&
               seg_is(seg, n, 3, "account") && seg_is(seg, n, 4, "create")) {
        rq.route = ROUTE_USER_ACCOUNT_CREATE;
        rq.cmd.type = CMD_ACCOUNT_OPEN;
        json_object_set_new(body, "user_id", json_string(seg[2]));
        rc = codec_parse_open_account(body, &rq.cmd, msg, sizeof msg);
        if (rc == 0 && rq.cmd.u.account_open.account_id[0] == '\0')
            new_account_id(rq.cmd.u.account_open.account_id, QAEX_ID_LEN);
        if (rc == 0) rc = codec_check_account_id(rq.cmd.u.account_open.account_id, msg, sizeof msg);
    } else if (n == 3 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "account") &&
               (seg_is(seg, n, 2, "deposit") || seg_is(seg, n, 2, "withdraw"))) {
        bool dep = seg_is(seg, n, 2, "deposit");
        rq.route = dep ? ROUTE_DEPOSIT : ROUTE_WITHDRAW;
        rq.cmd.type = dep ? CMD_DEPOSIT : CMD_WITHDRAW;
        rc = codec_parse_transfer(body, rq.cmd.type, &rq.cmd, msg, sizeof msg);
    } else if (n == 3 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "order") &&
               seg_is(seg, n, 2, "submit")) {
        rq.route = ROUTE_ORDER_SUBMIT;
        rq.cmd.type = CMD_ORDER_INSERT;
        rc = codec_parse_order(body, &rq.cmd.u.order, msg, sizeof msg);
        if (rc == 0) claimed_user(body, rq.cmd.u.order.account_id, &rq);
    } else if (n == 3 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "order") &&
               seg_is(seg, n, 2, "cancel")) {
        rq.route = ROUTE_ORDER_CANCEL;
        rq.cmd.type = CMD_ORDER_CANCEL;
        rc = codec_parse_cancel(body, &rq.cmd, msg, sizeof msg);
        if (rc == 0) claimed_user(body, rq.cmd.u.cancel.account_id, &rq);
    } else {
        json_decref(body);
        respond_error(s, 404, CODEC_ERR_NOT_FOUND, "no route POST %s", s->path);
        return;
    }
    json_decref(body);
    if (rc != 0) {
        respond_error(s, 0, rc, "%s", msg);
        return;
    }
    submit(g, s, &rq);
}

static void route_get(gateway *g, session *s, char **seg, int n) {
    request rq;
    memset(&rq, 0, sizeof rq);
    if (n == 1 && seg_is(seg, n, 0, "metrics")) {
        char *text = NULL;
        size_t len = 0;
        if (g->cfg.metrics == NULL || metrics_render(g->cfg.metrics->reg, &text, &len) != 0) {
            respond_error(s, 500, ERR_INTERNAL, "metrics are not available");
            return;
        }
        respond(s, 200, text, len);
        s->response_type = "text/plain; version=0.0.4";
        free(text);
        return;
    }
    if (n == 1 && seg_is(seg, n, 0, "health")) {
        char body[128];
        int len =
            snprintf(body, sizeof body, "{\"status\":\"ok\",\"version\":\"%s\"}", QAEX_VERSION);
        respond(s, 200, body, (size_t)len);
        return;
    }
    /* /monitoring/... is served under /api too */
    if (n >= 2 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "monitoring")) {
        seg++;
        n--;
    }
    if (n == 2 && seg_is(seg, n, 0, "monitoring") && seg_is(seg, n, 1, "state")) {
        rq.route = ROUTE_STATE;
        submit(g, s, &rq);
        return;
    }
    if (n < 2 || !seg_is(seg, n, 0, "api")) goto not_found;
    if (seg_is(seg, n, 1, "auth")) {
        if (n == 3 && seg_is(seg, n, 2, "current-user")) {
            if (!s->auth_valid) {
                respond_error(s, 401, ERR_NOT_AUTHENTICATED,
                              "no user: send Authorization: Bearer <token>");
                return;
            }
            copy_id(rq.key, sizeof rq.key, s->auth_user);
        } else if (n == 4 && seg_is(seg, n, 2, "user")) {
            copy_id(rq.key, sizeof rq.key, seg[3]);
        } else {
            goto not_found;
        }
        rq.route = ROUTE_AUTH_USER;
    } else if (seg_is(seg, n, 1, "account")) {
        if (n == 3 && seg_is(seg, n, 2, "list"))
            rq.route = ROUTE_ACCOUNT_LIST;
        else if (n == 4 && seg_is(seg, n, 2, "detail"))
            rq.route = ROUTE_ACCOUNT_DETAIL, copy_id(rq.key, sizeof rq.key, seg[3]);
        else if (n == 4 && seg_is(seg, n, 3, "curve")) {
            /* the equity curve: settlement (and interval) snapshots from the history */
            if (!history_on(g, s)) return;
            char interval[16] = "day";
            query_job *j = query_job_new(QUERY_CURVE);
            if (j == NULL) {
                respond_error(s, 500, ERR_INTERNAL, "out of memory");
                return;
            }
            if (!query_date(s, "start_date=", j->start_date, sizeof j->start_date) ||
                !query_date(s, "end_date=", j->end_date, sizeof j->end_date)) {
                query_job_free(j);
                return;
            }
            query_str(s, "interval=", interval, sizeof interval);
            if (interval[0] && strcmp(interval, "day") != 0 && strcmp(interval, "1d") != 0 &&
                strcmp(interval, "snapshot") != 0 && strcmp(interval, "all") != 0) {
                query_job_free(j);
                respond_error(s, 400, HISTORY_QERR_INVALID,
                              "interval must be day (one point per trading day) or snapshot, "
                              "got '%s'",
                              interval);
                return;
            }
            j->per_day =
                interval[0] == '\0' || strcmp(interval, "day") == 0 || strcmp(interval, "1d") == 0;
            query_for_account(g, s, j, seg[2], "");
            return;
        } else if (n == 3)
            rq.route = ROUTE_ACCOUNT_GET, copy_id(rq.key, sizeof rq.key, seg[2]);
        else
            goto not_found;
    } else if (seg_is(seg, n, 1, "user") && n == 4 && seg_is(seg, n, 3, "accounts")) {
        rq.route = ROUTE_USER_ACCOUNTS;
        copy_id(rq.key, sizeof rq.key, seg[2]);
    } else if (seg_is(seg, n, 1, "order")) {
        if (n == 4 && seg_is(seg, n, 2, "user"))
            rq.route = ROUTE_ORDER_LIST, copy_id(rq.key, sizeof rq.key, seg[3]);
        else if (n == 5 && seg_is(seg, n, 2, "user") && seg_is(seg, n, 4, "trades")) {
            query_job *j = g->cfg.queries ? query_job_new(QUERY_TRADES_ALL) : NULL;
            if (j) { /* every trade, from the history store */
                query_for_account(g, s, j, seg[3], "");
                return;
            }
            rq.route = ROUTE_ORDER_TRADES, copy_id(rq.key, sizeof rq.key, seg[3]);
        } else if (n == 3) {
            rq.route = ROUTE_ORDER_GET;
            copy_id(rq.key2, sizeof rq.key2, seg[2]);
            query_str(s, "account_id=", rq.key, sizeof rq.key);
        } else
            goto not_found;
    } else if (seg_is(seg, n, 1, "position")) {
        if (n == 3)
            copy_id(rq.key, sizeof rq.key, seg[2]);
        else if (n == 4 && seg_is(seg, n, 2, "account"))
            copy_id(rq.key, sizeof rq.key, seg[3]);
        else
            goto not_found;
        rq.route = ROUTE_POSITIONS;
    } else if (seg_is(seg, n, 1, "trades") && n == 4 && seg_is(seg, n, 2, "user")) {
        rq.route = ROUTE_TRADES_PAGE;
        copy_id(rq.key, sizeof rq.key, seg[3]);
        if (!query_int_in(s, "page=", 1, 1, 1000000000, &rq.num1) ||
            !query_int_in(s, "size=", 20, 1, 1000, &rq.num2))
            return;
        query_str(s, "instrument_id=", rq.key2, sizeof rq.key2);
        if (!query_date(s, "start_date=", rq.date_from, sizeof rq.date_from) ||
            !query_date(s, "end_date=", rq.date_to, sizeof rq.date_to))
            return;
        query_job *j = g->cfg.queries ? query_job_new(QUERY_TRADES_PAGE) : NULL;
        if (j) { /* every trade, from the history store, newest first */
            j->page = rq.num1;
            j->size = rq.num2;
            memcpy(j->start_date, rq.date_from, sizeof j->start_date - 1);
            memcpy(j->end_date, rq.date_to, sizeof j->end_date - 1);
            query_for_account(g, s, j, rq.key, rq.key2);
            return;
        }
    } else if (seg_is(seg, n, 1, "market")) {
        if (n == 3 && seg_is(seg, n, 2, "instruments"))
            rq.route = ROUTE_INSTRUMENTS;
        else if (n == 4 && seg_is(seg, n, 2, "tick"))
            rq.route = ROUTE_TICK, copy_id(rq.key, sizeof rq.key, seg[3]);
        else if (n == 4 && seg_is(seg, n, 2, "orderbook")) {
            rq.route = ROUTE_ORDERBOOK;
            copy_id(rq.key, sizeof rq.key, seg[3]);
            if (!query_int_in(s, "depth=", 5, 1, 50, &rq.num1)) return;
        } else if (n == 4 && seg_is(seg, n, 2, "recent-trades")) {
            rq.route = ROUTE_RECENT_TRADES;
            copy_id(rq.key, sizeof rq.key, seg[3]);
            if (!query_int_in(s, "limit=", 100, 1, 100000, &rq.num2)) return;
        } else if (n == 3 && seg_is(seg, n, 2, "transactions")) {
            rq.route = ROUTE_TRANSACTIONS;
            query_str(s, "instrument_id=", rq.key, sizeof rq.key);
            if (!query_int_in(s, "limit=", 100, 1, 100000, &rq.num2)) return;
        } else if (n == 3 && seg_is(seg, n, 2, "order-stats")) {
            rq.route = ROUTE_ORDER_STATS;
        } else if (n == 3 && seg_is(seg, n, 2, "symbols")) {
            rq.route = ROUTE_SYMBOLS;
        } else if (n == 4 && seg_is(seg, n, 2, "kline")) {
            char period[16];
            query_str(s, "period=", period, sizeof period);
            if (period[0] == '\0') snprintf(period, sizeof period, "1min");
            rq.route = ROUTE_KLINES;
            copy_id(rq.key, sizeof rq.key, seg[3]);
            if (!kline_args(s, period, &rq)) return;
        } else
            goto not_found;
    } else if (seg_is(seg, n, 1, "klines") && n == 4) {
        rq.route = ROUTE_KLINES;
        copy_id(rq.key, sizeof rq.key, seg[2]);
        if (!kline_args(s, seg[3], &rq)) return;
    } else {
        goto not_found;
    }
    submit(g, s, &rq);
    return;
not_found:
    respond_error(s, 404, CODEC_ERR_NOT_FOUND, "no route GET %s", s->path);
}

/* ---- the operator's routes (/admin, /monitoring; admin role when tokens are enforced) ---- */

static int64_t process_start_ns;

/* /monitoring/system: answered here, it needs nothing of the engine. */
static void monitor_system(gateway *g, session *s) {
    long rss_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size;
        if (fscanf(f, "%ld %ld", &size, &rss_pages) != 2) rss_pages = 0;
        fclose(f);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t uptime_ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec - process_start_ns;
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) < 0) load[0] = load[1] = load[2] = 0;
    /* the seed's memory_usage: a percentage (of the machine's memory) where it reads one */
    long phys_pages = sysconf(_SC_PHYS_PAGES);
    double memory_usage = phys_pages > 0 ? 100.0 * (double)rss_pages / (double)phys_pages : 0;
    respond_json(s, 200,
                 codec_envelope_ok(json_pack(
                     "{s:s, s:i, s:I, s:I, s:f, s:f, s:f, s:i, s:i, s:i, s:i, s:I, s:i, s:[f,f,f], "
                     "s:b}",
                     "version", QAEX_VERSION, "pid", (int)getpid(), "uptime",
                     (json_int_t)(uptime_ns / 1000000000LL), "memory_rss_bytes",
                     (json_int_t)rss_pages * sysconf(_SC_PAGESIZE), "memory_usage", memory_usage,
                     "cpu_seconds", cpu, "cpu_usage",
                     uptime_ns > 0 ? 100.0 * cpu / ((double)uptime_ns / 1e9) : 0.0, "connections",
                     (int)(g->n_conns - g->n_free), "websocket_sessions", g->ws_sessions,
                     "cpu_count", (int)sysconf(_SC_NPROCESSORS_ONLN), "market_subscriptions",
                     g->market_subscriptions, "push_topics", (json_int_t)g->n_topics,
                     "diff_watched_accounts", (int)service_diff_watched(g->svc), "load_average",
                     load[0], load[1], load[2], "open_mode", g->cfg.open_mode)));
}

static void admin_action(session *s, request *rq) {
    snprintf(rq->action, sizeof rq->action, "%s %.80s", method_name(s->method), s->path);
}

/* Whether two spellings may name one instrument: equal, or equal codes when either is the short
 * id (IF2501 for CFFEX.IF2501), which is accepted everywhere as an alias. */
static bool same_instrument_id(const char *a, const char *b) {
    const char *da = strchr(a, '.'), *db = strchr(b, '.');
    if (da && db) return strcmp(a, b) == 0;
    return strcmp(da ? da + 1 : a, db ? db + 1 : b) == 0;
}

/* An instrument's command from the path: /admin/instrument/{id}/{verb}. */
static bool admin_instrument(session *s, char **seg, int n, json_t *body, request *rq) {
    char msg[QAEX_MSG_LEN];
    rq->route = ROUTE_ADMIN_COMMAND;
    if (n == 3 && seg_is(seg, n, 2, "create")) {
        uint32_t fields;
        rq->cmd.type = CMD_INSTRUMENT_ADD;
        if (codec_parse_instrument(body, &rq->cmd.u.instrument.spec, &fields, msg, sizeof msg)) {
            respond_error(s, 400, ERR_BAD_MESSAGE, "%s", msg);
            return false;
        }
        copy_id(rq->key, sizeof rq->key, rq->cmd.u.instrument.spec.instrument_id);
        return true;
    }
    if (n != 4) return false;
    const char *id = seg[2], *verb = seg[3];
    if (strlen(id) >= QAEX_INSTRUMENT_ID_LEN) {
        respond_error(s, 400, ERR_BAD_MESSAGE, "instrument id %s is too long (at most %d bytes)",
                      id, QAEX_INSTRUMENT_ID_LEN - 1);
        return false;
    }
    copy_id(rq->key, sizeof rq->key, id);
    if (strcmp(verb, "update") == 0) {
        uint32_t fields;
        rq->cmd.type = CMD_INSTRUMENT_UPDATE;
        if (codec_parse_instrument(body, &rq->cmd.u.instrument.spec, &fields, msg, sizeof msg)) {
            respond_error(s, 400, ERR_BAD_MESSAGE, "%s", msg);
            return false;
        }
        /* the seed: an instrument's id cannot be changed; a body naming another one asks for
         * something this route does not do, so it is refused rather than ignored */
        const char *named = rq->cmd.u.instrument.spec.instrument_id;
        if (named[0] != '\0' && !same_instrument_id(named, id)) {
            respond_error(s, 400, ERR_BAD_MESSAGE,
                          "instrument_id cannot be changed: the body names %s, the path %s", named,
                          id);
            return false;
        }
        copy_id(rq->cmd.u.instrument.spec.instrument_id,
                sizeof rq->cmd.u.instrument.spec.instrument_id, id);
        rq->cmd.u.instrument.fields = fields;
        return true;
    }
    command_type t = strcmp(verb, "suspend") == 0  ? CMD_INSTRUMENT_SUSPEND
                     : strcmp(verb, "resume") == 0 ? CMD_INSTRUMENT_RESUME
                     : strcmp(verb, "delist") == 0 ? CMD_INSTRUMENT_DELIST
                                                   : 0;
    if (t == 0) return false;
    rq->cmd.type = t;
    copy_id(rq->cmd.u.instrument_ref.instrument_id, sizeof rq->cmd.u.instrument_ref.instrument_id,
            id);
    return true;
}

/* A settlement price: settlement_price (the seed's name), else price. The one present is the one
 * read, so a malformed value is reported as itself ("settlement_price must be a number, got
 * string ...") rather than as a missing price. */
static int settlement_price_of(const json_t *item, double *price, char *msg, size_t msglen) {
    const json_t *v = json_object_get(item, "settlement_price");
    bool named = v != NULL && !json_is_null(v);
    if (!named && json_object_get(item, "price") != NULL)
        return codec_get_number(item, "price", price, true, msg, msglen);
    return codec_get_number(item, "settlement_price", price, true, msg, msglen);
}

static bool admin_batch(session *s, json_t *body, request *rq) {
    json_t *list = json_object_get(body, "prices");
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 10000) {
        respond_error(s, 400, ERR_BAD_MESSAGE,
                      "prices must be a non-empty array of {instrument_id, settlement_price}");
        return false;
    }
    admin_price *prices = calloc(json_array_size(list), sizeof *prices);
    if (prices == NULL) {
        respond_error(s, 500, ERR_INTERNAL, "out of memory");
        return false;
    }
    char msg[QAEX_MSG_LEN];
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        double price = 0;
        if (codec_get_string(item, "instrument_id", prices[i].instrument_id,
                             sizeof prices[i].instrument_id, true, msg,
                             sizeof msg) != CODEC_FIELD_OK ||
            settlement_price_of(item, &price, msg, sizeof msg) != CODEC_FIELD_OK) {
            free(prices);
            respond_error(s, 400, ERR_BAD_MESSAGE, "prices[%zu]: %s", i, msg);
            return false;
        }
        prices[i].price = price;
    }
    rq->route = ROUTE_ADMIN_BATCH_PRICES;
    rq->cmd.type = CMD_SETTLEMENT_SET_PRICE; /* marks it a command: stamped, audited, admin */
    rq->extra = prices;
    rq->n_extra = (uint32_t)json_array_size(list);
    return true;
}

static bool admin_settlement_route(session *s, char **seg, int n, json_t *body, request *rq) {
    char msg[QAEX_MSG_LEN];
    if (s->method == M_GET) {
        if (n == 3 && seg_is(seg, n, 2, "history")) {
            rq->route = ROUTE_ADMIN_SETTLEMENTS;
            return query_date(s, "start_date=", rq->date_from, sizeof rq->date_from) &&
                   query_date(s, "end_date=", rq->date_to, sizeof rq->date_to);
        }
        if (n == 4 && seg_is(seg, n, 2, "detail")) {
            /* a malformed date is bad input, not a day without a settlement (404) */
            if (!qaex_date_valid(seg[3])) {
                respond_error(s, 400, ERR_BAD_MESSAGE,
                              "settlement date must be a date YYYY-MM-DD, got '%.40s'", seg[3]);
                return false;
            }
            rq->route = ROUTE_ADMIN_SETTLEMENT_DETAIL;
            copy_id(rq->key, sizeof rq->key, seg[3]);
            return true;
        }
        return false;
    }
    if (n != 3) return false;
    if (seg_is(seg, n, 2, "batch-set-prices")) return admin_batch(s, body, rq);
    rq->route = ROUTE_ADMIN_COMMAND;
    if (seg_is(seg, n, 2, "execute")) {
        rq->cmd.type = CMD_SETTLEMENT_EXECUTE;
        return true;
    }
    if (!seg_is(seg, n, 2, "set-price")) return false;
    rq->cmd.type = CMD_SETTLEMENT_SET_PRICE;
    double *price = &rq->cmd.u.settlement_price.price;
    if (codec_get_string(body, "instrument_id", rq->cmd.u.settlement_price.instrument_id,
                         sizeof rq->cmd.u.settlement_price.instrument_id, true, msg,
                         sizeof msg) != CODEC_FIELD_OK ||
        settlement_price_of(body, price, msg, sizeof msg) != CODEC_FIELD_OK) {
        respond_error(s, 400, ERR_BAD_MESSAGE, "%s", msg);
        return false;
    }
    copy_id(rq->key, sizeof rq->key, rq->cmd.u.settlement_price.instrument_id);
    return true;
}

/* A filter argument that must be one of a few names (any case) when given: an unknown one would
 * match nothing and answer 200 with an empty list, as if there were nothing to show, so it is
 * refused (400) with the names it may take. */
static bool filter_in(session *s, const char *name, const char *value, const char *const *names) {
    if (value[0] == '\0') return true;
    char list[128] = "";
    size_t used = 0;
    for (const char *const *p = names; *p; p++) {
        if (strcasecmp(value, *p) == 0) return true;
        int w = snprintf(list + used, sizeof list - used, "%s%s", p == names ? "" : ", ", *p);
        if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
    }
    respond_error(s, 400, ERR_BAD_MESSAGE, "%s must be one of %s; got '%.40s'", name, list, value);
    return false;
}

static void route_admin(gateway *g, session *s, char **seg, int n) {
    if (seg_is(seg, n, 0, "api")) {
        seg++;
        n--;
    }
    request rq;
    memset(&rq, 0, sizeof rq);
    bool get = s->method == M_GET;
    json_t *body = NULL;
    if (seg_is(seg, n, 0, "monitoring")) {
        if (n == 2 && get && seg_is(seg, n, 1, "system")) {
            monitor_system(g, s);
            return;
        }
        if (n != 2) goto not_found;
        const char *what = seg[1];
        rq.route = strcmp(what, "state") == 0      ? ROUTE_STATE
                   : strcmp(what, "storage") == 0  ? ROUTE_MON_STORAGE
                   : strcmp(what, "accounts") == 0 ? ROUTE_MON_ACCOUNTS
                   : strcmp(what, "orders") == 0   ? ROUTE_MON_ORDERS
                   : strcmp(what, "trades") == 0   ? ROUTE_MON_TRADES
                   : strcmp(what, "report") == 0   ? ROUTE_MON_REPORT
                                                   : ROUTE_NONE;
        if (rq.route == ROUTE_NONE || (!get && rq.route != ROUTE_MON_REPORT)) goto not_found;
        query_job *j =
            rq.route == ROUTE_MON_STORAGE && g->cfg.queries ? query_job_new(QUERY_STATS) : NULL;
        if (j) { /* the history's stats are gathered on the query thread first */
            j->purpose = PURPOSE_STORAGE_STATS;
            query_submit(g, s, j);
            return;
        }
        submit(g, s, &rq);
        return;
    }
    if (!get && (body = parse_body(s)) == NULL) return;
    bool ok = false;
    if (n == 2 && get && seg_is(seg, n, 1, "instruments")) {
        rq.route = ROUTE_INSTRUMENTS;
        ok = true;
    } else if (n >= 3 && !get && seg_is(seg, n, 1, "instrument")) {
        ok = admin_instrument(s, seg, n, body, &rq);
        if (!ok && s->response) goto done; /* answered with an error */
    } else if (n >= 3 && seg_is(seg, n, 1, "settlement")) {
        ok = admin_settlement_route(s, seg, n, body, &rq);
        if (!ok && s->response) goto done;
    } else if (n == 3 && get && seg_is(seg, n, 1, "risk")) {
        ok = true;
        if (seg_is(seg, n, 2, "accounts")) {
            rq.route = ROUTE_ADMIN_RISK_ACCOUNTS;
            query_str(s, "user_id=", rq.key, sizeof rq.key);
            query_str(s, "level=", rq.key2, sizeof rq.key2);
            if (rq.key2[0] == '\0') query_str(s, "risk_level=", rq.key2, sizeof rq.key2);
            if (!filter_in(s, "level", rq.key2,
                           (const char *const[]){"low", "medium", "high", "critical", NULL}))
                goto done;
        } else if (seg_is(seg, n, 2, "margin-summary")) {
            rq.route = ROUTE_ADMIN_MARGIN_SUMMARY;
        } else if (seg_is(seg, n, 2, "liquidations")) {
            rq.route = ROUTE_ADMIN_LIQUIDATIONS;
            if (!query_date(s, "start_date=", rq.date_from, sizeof rq.date_from) ||
                !query_date(s, "end_date=", rq.date_to, sizeof rq.date_to))
                goto done;
        } else {
            ok = false;
        }
    } else if (n == 3 && seg_is(seg, n, 1, "capital")) {
        if (get && seg_is(seg, n, 2, "transactions")) {
            rq.route = ROUTE_ADMIN_TRANSACTIONS;
            query_str(s, "account_id=", rq.key, sizeof rq.key);
            if (rq.key[0] == '\0') query_str(s, "user_id=", rq.key, sizeof rq.key);
            query_str(s, "type=", rq.key2, sizeof rq.key2);
            /* the seed's TransactionType calls it Withdrawal; the records say "withdraw" */
            if (strcasecmp(rq.key2, "withdrawal") == 0)
                snprintf(rq.key2, sizeof rq.key2, "withdraw");
            if (!filter_in(s, "type", rq.key2, (const char *const[]){"deposit", "withdraw", NULL}))
                goto done;
            ok = query_date(s, "start_date=", rq.date_from, sizeof rq.date_from) &&
                 query_date(s, "end_date=", rq.date_to, sizeof rq.date_to) &&
                 query_int_in(s, "limit=", 100, 1, 100000, &rq.num2);
            if (!ok) goto done;
        } else if (!get && (seg_is(seg, n, 2, "deposit") || seg_is(seg, n, 2, "withdraw"))) {
            char msg[QAEX_MSG_LEN];
            command_type t = seg_is(seg, n, 2, "deposit") ? CMD_DEPOSIT : CMD_WITHDRAW;
            if (codec_parse_transfer(body, t, &rq.cmd, msg, sizeof msg) != 0) {
                respond_error(s, 400, ERR_BAD_MESSAGE, "%s", msg);
                goto done;
            }
            rq.route = ROUTE_ADMIN_COMMAND;
            copy_id(rq.key, sizeof rq.key, rq.cmd.u.transfer.account_id);
            ok = true;
        }
    } else if (n == 4 && !get && seg_is(seg, n, 1, "account") &&
               (seg_is(seg, n, 3, "freeze") || seg_is(seg, n, 3, "unfreeze"))) {
        rq.route = ROUTE_ADMIN_COMMAND;
        rq.cmd.type = seg_is(seg, n, 3, "freeze") ? CMD_ACCOUNT_FREEZE : CMD_ACCOUNT_UNFREEZE;
        copy_id(rq.cmd.u.account_ref.account_id, sizeof rq.cmd.u.account_ref.account_id, seg[2]);
        copy_id(rq.key, sizeof rq.key, seg[2]);
        ok = true;
    } else if (n == 2 && get && seg_is(seg, n, 1, "audit")) {
        rq.route = ROUTE_ADMIN_AUDIT;
        ok = query_int_in(s, "limit=", 100, 1, 10000, &rq.num2);
        if (!ok) goto done;
    }
    if (!ok) {
    not_found:
        json_decref(body);
        respond_error(s, 404, CODEC_ERR_NOT_FOUND, "no route %s %s", method_name(s->method),
                      s->path);
        return;
    }
    if (rq.cmd.type != 0) admin_action(s, &rq);
    submit(g, s, &rq);
done:
    json_decref(body);
}

/* ---- the HTTP surface: which paths exist, with which methods ---- */

/* A path the gateway serves and the methods it answers there. */
typedef struct route_spec {
    const char *pattern; /* segments without the leading '/'; "*" stands for any one segment */
    unsigned methods;    /* ALLOW bits */
    bool is_public;      /* served without a token (token mode); anything else needs one */
} route_spec;

#define GET_ ALLOW(M_GET)
#define POST_ ALLOW(M_POST)
#define PUT_ ALLOW(M_PUT)
#define DELETE_ ALLOW(M_DELETE)

/* The one list of routes: route_http answers 404 for a path none of these has and 405 (with
 * Allow) for a method its route lacks, before any dispatcher parses a body or reaches the
 * engine; so route_get, route_post and route_admin only see requests listed here, and a new
 * route is added here as well as there. /admin and /monitoring routes are listed once and their
 * /api twins are looked up without the "api". Where a literal segment and a "*" both match, the
 * literal wins (route_match), as in the dispatchers: GET /api/account/open is the POST-only
 * open route answering 405, not an account named "open". */
static const route_spec routes[] = {
    {"health", GET_, true},
    {"metrics", GET_, true},
    /* auth */
    {"api/auth/register", POST_, true},
    {"api/auth/login", POST_, true},
    {"api/auth/current-user", GET_, false},
    {"api/auth/user/*", GET_, false},
    /* accounts */
    {"api/user/*/accounts", GET_, false},
    {"api/user/*/account/create", POST_, false},
    {"api/account/open", POST_, false},
    {"api/account/deposit", POST_, false},
    {"api/account/withdraw", POST_, false},
    {"api/account/list", GET_, false},
    {"api/account/detail/*", GET_, false},
    {"api/account/*/curve", GET_, false},
    {"api/account/*", GET_, false},
    /* orders, positions, trades */
    {"api/order/submit", POST_, false},
    {"api/order/cancel", POST_, false},
    {"api/order/*", GET_, false},
    {"api/order/user/*", GET_, false},
    {"api/order/user/*/trades", GET_, false},
    {"api/position/*", GET_, false},
    {"api/position/account/*", GET_, false},
    {"api/trades/user/*", GET_, false},
    /* market data */
    {"api/market/instruments", GET_, true},
    {"api/market/tick/*", GET_, true},
    {"api/market/orderbook/*", GET_, true},
    {"api/market/recent-trades/*", GET_, true},
    {"api/market/transactions", GET_, true},
    {"api/market/order-stats", GET_, true},
    {"api/market/symbols", GET_, true},
    {"api/market/kline/*", GET_, true},
    {"api/klines/*/*", GET_, true},
    /* the history's queries */
    {"api/query/sql", POST_, false},
    {"api/query/structured", POST_, false},
    {"api/query/timeseries", POST_, false},
    /* the operator's */
    {"admin/instruments", GET_, false},
    {"admin/instrument/create", POST_, false},
    {"admin/instrument/*/update", PUT_, false},
    {"admin/instrument/*/suspend", PUT_, false},
    {"admin/instrument/*/resume", PUT_, false},
    {"admin/instrument/*/delist", DELETE_, false},
    {"admin/settlement/set-price", POST_, false},
    {"admin/settlement/batch-set-prices", POST_, false},
    {"admin/settlement/execute", POST_, false},
    {"admin/settlement/history", GET_, false},
    {"admin/settlement/detail/*", GET_, false},
    {"admin/risk/accounts", GET_, false},
    {"admin/risk/margin-summary", GET_, false},
    {"admin/risk/liquidations", GET_, false},
    {"admin/capital/deposit", POST_, false},
    {"admin/capital/withdraw", POST_, false},
    {"admin/capital/transactions", GET_, false},
    {"admin/account/*/freeze", POST_, false},
    {"admin/account/*/unfreeze", POST_, false},
    {"admin/audit", GET_, false},
    {"monitoring/system", GET_, false},
    {"monitoring/state", GET_, false},
    {"monitoring/storage", GET_, false},
    {"monitoring/accounts", GET_, false},
    {"monitoring/orders", GET_, false},
    {"monitoring/trades", GET_, false},
    {"monitoring/report", POST_, false},
};

#undef GET_
#undef POST_
#undef PUT_
#undef DELETE_

/* How a pattern fits the path: -1 when it does not; else higher for a more specific pattern (a
 * literal segment outweighs every segment after it), so the best fit is the highest score. */
static long route_match(const char *pattern, char **seg, int n) {
    long score = 0;
    const char *p = pattern;
    for (int i = 0; i < n; i++) {
        if (*p == '\0') return -1;
        size_t len = strcspn(p, "/");
        bool any = len == 1 && *p == '*';
        if (!any && (strncmp(seg[i], p, len) != 0 || seg[i][len] != '\0')) return -1;
        score = score * 2 + !any;
        p += len + (p[len] == '/');
    }
    return *p == '\0' ? score : -1;
}

/* The operator's routes: /admin, /monitoring (and both under /api). */
static bool is_admin_route(char **seg, int n) {
    int k = seg_is(seg, n, 0, "api") ? 1 : 0;
    return seg_is(seg, n, k, "admin") || seg_is(seg, n, k, "monitoring");
}

/* The route serving this path, whatever the method; NULL when none does. */
static const route_spec *route_find(char **seg, int n) {
    if (is_admin_route(seg, n) && seg_is(seg, n, 0, "api")) {
        seg++;
        n--;
    }
    const route_spec *best = NULL;
    long best_score = -1;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        long score = route_match(routes[i].pattern, seg, n);
        if (score > best_score) best = &routes[i], best_score = score;
    }
    return best;
}

/* 405 for a path that exists: the Allow header adds OPTIONS, answered on every path (CORS). */
static void respond_not_allowed(session *s, const route_spec *rt) {
    char list[64];
    allow_list(rt->methods, list, sizeof list);
    respond_error(s, 405, CODEC_ERR_METHOD_NOT_ALLOWED, "method %s not allowed on %s; allowed: %s",
                  method_name(s->method), s->path, list);
    s->response_allow = rt->methods | ALLOW(M_OPTIONS);
}

/* The history's SQL, structured and time-series queries: admin-only when tokens are enforced. */
static bool is_query_route(char **seg, int n) {
    return n >= 2 && seg_is(seg, n, 0, "api") && seg_is(seg, n, 1, "query");
}

/* Checks run in this order: 413, OPTIONS (204 on any path: CORS preflights carry no token), the
 * token (401), the admin role (403), then the route table (404 unknown path, 405 wrong method).
 * Token and role come before the table on purpose: in token mode a caller without a token learns
 * nothing of which protected paths exist, and a non-admin nothing of the operator's routes (any
 * /admin path answers them 403, as before). Public routes need no token with any method, so a
 * wrong method there is a 405 even without one. */
static void route_http(gateway *g, session *s) {
    s->in_flight = true;
    if (g->cfg.metrics) metrics_counter_inc(g->cfg.metrics->http_requests);
    if (s->body_too_large) {
        respond_error(s, 413, CODEC_ERR_TOO_LARGE, "request body exceeds %zu bytes",
                      g->cfg.max_body_bytes);
        return;
    }
    if (s->method == M_OPTIONS) {
        respond(s, 204, "", 0);
        return;
    }
    /* the --ws listener is for WebSocket only (SPEC 2): a plain request there is pointed to the
     * HTTP listener, which serves the REST API */
    if (strcmp(lws_get_vhost_name(lws_get_vhost(s->wsi)), "ws") == 0) {
        respond_error(s, 404, CODEC_ERR_NOT_FOUND,
                      "this listener serves WebSocket only (/ws, /ws/diff); %s is on the HTTP "
                      "listener, port %d",
                      s->path, g->http_port);
        return;
    }
    char path[sizeof s->path];
    memcpy(path, s->path, sizeof path);
    char *seg[16];
    int n = split_path(path, seg, 16);
    const route_spec *rt = route_find(seg, n);
    /* a token is read whenever one comes; without open mode every route but the public ones
     * needs it, and the operator's routes need the admin role */
    if (!http_authenticate(g, s, !g->cfg.open_mode && !(rt && rt->is_public))) return;
    if (!g->cfg.open_mode && (is_admin_route(seg, n) || is_query_route(seg, n)) && !s->auth_admin) {
        respond_error(s, 403, CODEC_ERR_FORBIDDEN, "%s needs the admin role", s->path);
        return;
    }
    if (rt == NULL) {
        respond_error(s, 404, CODEC_ERR_NOT_FOUND, "no route %s %s", method_name(s->method),
                      s->path);
        return;
    }
    if (!(rt->methods & ALLOW(s->method))) {
        respond_not_allowed(s, rt);
        return;
    }
    /* an id in the path longer than any id would be cut to fit and name another one */
    for (int i = 0; i < n; i++) {
        size_t len = strlen(seg[i]);
        if (len >= QAEX_ID_LEN) {
            respond_error(s, 400, ERR_BAD_MESSAGE,
                          "path segment %d is %zu bytes long (ids have at most %d): %.48s...",
                          i + 1, len, QAEX_ID_LEN - 1, seg[i]);
            return;
        }
    }
    /* /admin/... and /monitoring/... are also served under /api */
    if (is_admin_route(seg, n))
        route_admin(g, s, seg, n);
    else if (s->method == M_GET)
        route_get(g, s, seg, n);
    else if (s->method == M_POST)
        route_post(g, s, seg, n);
    else /* a method the table lists for a route no dispatcher serves with it */
        respond_error(s, 500, ERR_INTERNAL, "no dispatcher for %s %s", method_name(s->method),
                      s->path);
}

/* ---- the `type` WebSocket protocol ---- */

static void ws_send_error(session *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ws_send_error(session *s, int code, const char *fmt, ...) {
    char msg[QAEX_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    session_send_json(s, codec_ws_error(code, msg));
}

static void ws_authenticate(gateway *g, session *s, const char *account_id) {
    if (s->authenticated) topic_remove(g, TOPIC_ACCOUNT, s->account_id, s->conn_id);
    snprintf(s->account_id, sizeof s->account_id, "%s", account_id);
    s->authenticated = true;
    topic_add(g, TOPIC_ACCOUNT, s->account_id, s->conn_id);
    if (g->cfg.notify_auto_subscribe) notes_join(g, s);
}

static uint32_t channel_of(const char *name) {
    if (strcmp(name, "trade") == 0 || strcmp(name, "trades") == 0) return CHANNEL_TRADE;
    if (strcmp(name, "orderbook") == 0 || strcmp(name, "depth") == 0) return CHANNEL_ORDERBOOK;
    if (strcmp(name, "ticker") == 0 || strcmp(name, "tick") == 0) return CHANNEL_TICKER;
    if (strcmp(name, "account_update") == 0 || strcmp(name, "account") == 0) return CHANNEL_ACCOUNT;
    if (strcmp(name, "kline") == 0 || strcmp(name, "klines") == 0) return CHANNEL_KLINE;
    return 0;
}

static int subscription_index(const session *s, const char *id) {
    for (int k = 0; k < s->n_subscriptions; k++)
        if (strcmp(s->subscriptions[k], id) == 0) return k;
    return -1;
}

/* {"type":"subscribe"|"unsubscribe","channels":[…],"instruments":[…]}. Every entry is checked
 * before anything is applied: a message refused for its last entry must not have subscribed the
 * first ones (the client, told "error", would not expect their pushes). */
static void ws_subscribe(gateway *g, session *s, const json_t *m, bool subscribe) {
    json_t *channels = json_object_get(m, "channels");
    json_t *instruments = json_object_get(m, "instruments");
    char got[80];
    if (channels && !json_is_array(channels)) {
        codec_describe(channels, got, sizeof got);
        ws_send_error(s, ERR_BAD_MESSAGE, "channels must be an array of strings, got %s", got);
        return;
    }
    if (instruments && !json_is_array(instruments)) {
        codec_describe(instruments, got, sizeof got);
        ws_send_error(s, ERR_BAD_MESSAGE, "instruments must be an array of strings, got %s", got);
        return;
    }
    size_t i;
    json_t *v;
    uint32_t mask = 0;
    json_array_foreach(channels, i, v) {
        uint32_t c = json_is_string(v) ? channel_of(json_string_value(v)) : 0;
        if (c == 0) {
            codec_describe(v, got, sizeof got);
            ws_send_error(s, ERR_BAD_MESSAGE,
                          "channels[%zu]: unknown channel %s (trade, orderbook, ticker, "
                          "account_update, kline)",
                          i, got);
            return;
        }
        mask |= c;
    }
    int added = 0; /* distinct instruments this subscribe adds to the session */
    json_array_foreach(instruments, i, v) {
        codec_describe(v, got, sizeof got);
        if (!json_is_string(v)) {
            ws_send_error(s, ERR_BAD_MESSAGE, "instruments[%zu] must be a string, got %s", i, got);
            return;
        }
        const char *id = json_string_value(v);
        size_t len = json_string_length(v);
        if (len == 0 || len >= QAEX_INSTRUMENT_ID_LEN || strlen(id) != len) {
            ws_send_error(s, ERR_BAD_MESSAGE,
                          "instruments[%zu]: %s is %zu bytes, an instrument id has 1 to %d "
                          "(and no NUL)",
                          i, got, len, QAEX_INSTRUMENT_ID_LEN - 1);
            return;
        }
        if (!subscribe || subscription_index(s, id) >= 0) continue;
        bool repeated = false; /* named twice in this message: counted once */
        for (size_t k = 0; k < i && !repeated; k++)
            repeated = strcmp(json_string_value(json_array_get(instruments, k)), id) == 0;
        if (!repeated && s->n_subscriptions + ++added > MAX_SUBSCRIPTIONS) {
            ws_send_error(s, ERR_BAD_MESSAGE,
                          "instruments[%zu]: subscribing to %s would make %d subscriptions on "
                          "this session, at most %d",
                          i, got, s->n_subscriptions + added, MAX_SUBSCRIPTIONS);
            return;
        }
    }
    /* all valid: apply */
    int first_new = s->n_subscriptions;
    json_array_foreach(instruments, i, v) {
        /* topics are keyed as the client names the instrument, full id or alias; pushes are
         * delivered under both */
        const char *id = json_string_value(v);
        int found = subscription_index(s, id);
        if (subscribe && found < 0) {
            if (topic_add(g, TOPIC_INSTRUMENT, id, s->conn_id) != 0) {
                /* out of memory: undo this message's subscriptions, so it changed nothing */
                while (s->n_subscriptions > first_new)
                    topic_remove(g, TOPIC_INSTRUMENT, s->subscriptions[--s->n_subscriptions],
                                 s->conn_id);
                ws_send_error(s, ERR_INTERNAL, "out of memory subscribing to \"%s\"", id);
                return;
            }
            snprintf(s->subscriptions[s->n_subscriptions++], QAEX_INSTRUMENT_ID_LEN, "%s", id);
        } else if (!subscribe && found >= 0) {
            topic_remove(g, TOPIC_INSTRUMENT, id, s->conn_id);
            service_set_market_listeners(g->svc, --g->market_subscriptions);
            memcpy(s->subscriptions[found], s->subscriptions[--s->n_subscriptions],
                   QAEX_INSTRUMENT_ID_LEN);
        }
    }
    if (subscribe)
        s->channels |= mask;
    else
        s->channels &= ~mask;
    if (s->n_subscriptions > first_new) { /* subscribe: the new instruments' state at once */
        g->market_subscriptions += s->n_subscriptions - first_new;
        service_set_market_listeners(g->svc, g->market_subscriptions);
        for (int k = first_new; k < s->n_subscriptions; k++) {
            request rq;
            memset(&rq, 0, sizeof rq);
            rq.route = ROUTE_WS_SNAPSHOT;
            copy_id(rq.key, sizeof rq.key, s->subscriptions[k]);
            submit(g, s, &rq);
        }
    }
    /* the echo: the arrays as received (a new reference each, which json_pack's `o` takes), an
     * empty one for what was not given */
    json_t *resp = json_pack("{s:s, s:b, s:o, s:o}", "type",
                             subscribe ? "subscribe_response" : "unsubscribe_response", "success",
                             1, "channels", channels ? json_incref(channels) : json_array(),
                             "instruments", instruments ? json_incref(instruments) : json_array());
    session_send_json(s, resp);
}

static void diff_login_as(gateway *g, session *s, const char *user_key, const char *account_id);
static void diff_login_clear(session *s);
static void diff_login_refused(session *s, int code, const char *message);

/* ---- authentication ---- */

/* What an internal reply or a finished password job is for. */
enum {
    PURPOSE_LOGIN = 1, /* POST /api/auth/login */
    PURPOSE_REGISTER,  /* POST /api/auth/register */
    PURPOSE_WS_AUTH,   /* the `type` protocol's auth */
    PURPOSE_DIFF_LOGIN /* DIFF req_login with a password */
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Checks a token and, when good, makes its user the session's. */
static bool token_accept(gateway *g, session *s, const char *token, int *code, char *msg,
                         size_t cap) {
    auth_claims c;
    auth_result r = auth_token_verify(&g->keys, token, now_ms() / 1000, &c, msg, cap);
    if (r != AUTH_OK) {
        *code = ERR_AUTH_FAILED;
        return false;
    }
    s->auth_valid = true;
    s->auth_admin = c.role == AUTH_ROLE_ADMIN;
    snprintf(s->auth_user, sizeof s->auth_user, "%s", c.sub);
    snprintf(s->auth_name, sizeof s->auth_name, "%s", c.name);
    return true;
}

/* The bearer token of this HTTP request, if any. false (and answered 401) when one is required
 * and missing, or present and bad. */
static bool http_authenticate(gateway *g, session *s, bool required) {
    s->auth_valid = s->auth_admin = false;
    char header[AUTH_TOKEN_MAX + 16] = "";
    int n = lws_hdr_copy(s->wsi, header, sizeof header, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0) {
        if (!required) return true;
        respond_error(s, 401, ERR_NOT_AUTHENTICATED,
                      "authentication required: send Authorization: Bearer <token> (POST "
                      "/api/auth/login gives one)");
        return false;
    }
    const char *token = header;
    if (strncasecmp(token, "Bearer ", 7) == 0) token += 7;
    int code;
    char msg[QAEX_MSG_LEN];
    if (!token_accept(g, s, token, &code, msg, sizeof msg)) {
        respond_error(s, 401, code, "invalid token: %s", msg);
        return false;
    }
    return true;
}

static void throttle_keys(session *s, const char *username, char *ukey, char *ipkey, size_t cap) {
    char ip[64] = "";
    lws_get_peer_simple(s->wsi, ip, sizeof ip);
    snprintf(ukey, cap, "user:%s", username);
    snprintf(ipkey, cap, "ip:%s", ip);
}

/* Refused (429, 9004) while the username or the client address is locked out. */
static bool throttled(gateway *g, session *s, const char *username) {
    char ukey[128], ipkey[128];
    throttle_keys(s, username, ukey, ipkey, sizeof ukey);
    int64_t wait = auth_throttle_check(g->throttle, ukey, now_ms());
    const char *key = ukey;
    if (wait <= 0) {
        wait = auth_throttle_check(g->throttle, ipkey, now_ms());
        key = ipkey;
    }
    if (wait <= 0) return false;
    char msg[QAEX_MSG_LEN];
    auth_throttle_message(key, wait, msg, sizeof msg);
    if (s->is_ws)
        diff_notify_error(s, ERR_RATE_LIMITED, msg);
    else
        respond_error(s, 429, ERR_RATE_LIMITED, "%s", msg);
    return true;
}

static void login_failed(gateway *g, session *s, const char *username) {
    char ukey[128], ipkey[128];
    throttle_keys(s, username, ukey, ipkey, sizeof ukey);
    auth_throttle_failure(g->throttle, ukey, now_ms());
    auth_throttle_failure(g->throttle, ipkey, now_ms());
}

/* false (and the client told) when the password queue is full */
static bool kdf_submit(gateway *g, session *s, kdf_job *job) {
    job->conn_id = s->conn_id;
    if (kdf_worker_submit(g->kdf, job)) {
        if (!s->is_ws) s->awaiting_reply = true;
        return true;
    }
    if (s->is_ws)
        diff_notify_error(s, ERR_UNAVAILABLE, "the exchange is busy: try to log in again");
    else
        respond_error(s, 503, ERR_UNAVAILABLE, "the exchange is busy: password queue full");
    return false;
}

static void auth_register(gateway *g, session *s, json_t *body) {
    char msg[QAEX_MSG_LEN], role[16] = "user";
    kdf_job job;
    memset(&job, 0, sizeof job);
    user u;
    memset(&u, 0, sizeof u);
    if (codec_get_string(body, "username", u.username, sizeof u.username, true, msg, sizeof msg) !=
            CODEC_FIELD_OK ||
        codec_get_string(body, "password", job.password, sizeof job.password, true, msg,
                         sizeof msg) != CODEC_FIELD_OK ||
        codec_get_string(body, "email", u.email, sizeof u.email, false, msg, sizeof msg) ==
            CODEC_FIELD_ERROR ||
        codec_get_string(body, "phone", u.phone, sizeof u.phone, false, msg, sizeof msg) ==
            CODEC_FIELD_ERROR ||
        codec_get_string(body, "role", role, sizeof role, false, msg, sizeof msg) ==
            CODEC_FIELD_ERROR) {
        sodium_memzero(job.password, sizeof job.password);
        respond_error(s, 400, ERR_BAD_MESSAGE, "%s", msg);
        return;
    }
    if (role[0] == '\0') snprintf(role, sizeof role, "user");
    if (strcmp(role, "user") != 0 && strcmp(role, "admin") != 0) {
        sodium_memzero(job.password, sizeof job.password);
        respond_error(s, 400, ERR_BAD_MESSAGE, "role must be user or admin, got \"%s\"", role);
        return;
    }
    if (strcmp(role, "admin") == 0 && !(s->auth_valid && s->auth_admin)) {
        sodium_memzero(job.password, sizeof job.password);
        respond_error(s, 403, CODEC_ERR_FORBIDDEN, "only an admin may register an admin");
        return;
    }
    json_t *ctx = json_pack("{s:s, s:s, s:s, s:s}", "username", u.username, "email", u.email,
                            "phone", u.phone, "role", role);
    char *text = ctx ? json_dumps(ctx, JSON_COMPACT) : NULL;
    json_decref(ctx);
    if (text == NULL || strlen(text) >= sizeof job.context) {
        free(text);
        sodium_memzero(job.password, sizeof job.password);
        respond_error(s, 400, ERR_BAD_MESSAGE, "registration fields are too long");
        return;
    }
    snprintf(job.context, sizeof job.context, "%s", text);
    free(text);
    job.kind = KDF_HASH;
    job.purpose = PURPOSE_REGISTER;
    kdf_submit(g, s, &job);
}

static void auth_login(gateway *g, session *s, json_t *body) {
    char msg[QAEX_MSG_LEN], username[QAEX_NAME_LEN];
    kdf_job job;
    memset(&job, 0, sizeof job);
    if (codec_get_string(body, "username", username, sizeof username, true, msg, sizeof msg) !=
            CODEC_FIELD_OK ||
        codec_get_string(body, "password", job.password, sizeof job.password, true, msg,
                         sizeof msg) != CODEC_FIELD_OK) {
        sodium_memzero(job.password, sizeof job.password);
        respond_error(s, 400, ERR_BAD_MESSAGE, "%s", msg);
        return;
    }
    if (throttled(g, s, username)) {
        sodium_memzero(job.password, sizeof job.password);
        return;
    }
    /* the password waits in the session for the user's record from the engine thread */
    memcpy(s->pending_secret, job.password, sizeof s->pending_secret);
    sodium_memzero(job.password, sizeof job.password);
    request rq;
    memset(&rq, 0, sizeof rq);
    rq.route = ROUTE_AUTH_LOOKUP;
    rq.purpose = PURPOSE_LOGIN;
    copy_id(rq.key, sizeof rq.key, username);
    submit(g, s, &rq);
}

/* The engine thread found (or not) the user of a password login: verify off the I/O thread. */
static void auth_lookup_done(gateway *g, session *s, const json_t *found, int purpose) {
    kdf_job job;
    memset(&job, 0, sizeof job);
    job.kind = KDF_VERIFY;
    job.purpose = purpose;
    memcpy(job.password, s->pending_secret, sizeof s->pending_secret);
    sodium_memzero(s->pending_secret, sizeof s->pending_secret);
    if (json_is_true(json_object_get(found, "found"))) {
        snprintf(job.hash, sizeof job.hash, "%s",
                 json_string_value(json_object_get(found, "hash")));
        json_t *ctx = json_deep_copy(found);
        json_object_del(ctx, "hash");
        char *text = ctx ? json_dumps(ctx, JSON_COMPACT) : NULL;
        json_decref(ctx);
        if (text && strlen(text) < sizeof job.context)
            snprintf(job.context, sizeof job.context, "%s", text);
        free(text);
    } /* unknown: an empty hash burns the same time and fails, so timing tells nothing */
    if (!kdf_submit(g, s, &job) && purpose == PURPOSE_DIFF_LOGIN && s->diff)
        diff_login_clear(s); /* told to try again: that attempt is no longer pending */
}

/* A password job finished. */
static void auth_job_done(gateway *g, session *s, kdf_job *job) {
    json_t *ctx = job->context[0] ? json_loads(job->context, 0, NULL) : NULL;
    const char *username = json_string_value(json_object_get(ctx, "username"));
    if (job->purpose == PURPOSE_REGISTER) {
        if (job->result != AUTH_OK) {
            respond_error(s, 400, ERR_BAD_MESSAGE, "%s", job->error);
        } else {
            request rq;
            memset(&rq, 0, sizeof rq);
            rq.route = ROUTE_AUTH_REGISTER;
            rq.cmd.type = CMD_USER_REGISTER;
            user *u = &rq.cmd.u.user;
            if (!auth_uuid4(u->user_id)) {
                respond_error(s, 500, ERR_INTERNAL, "could not draw a user id");
                json_decref(ctx);
                return;
            }
            copy_id(u->username, sizeof u->username, username);
            copy_id(u->email, sizeof u->email, json_string_value(json_object_get(ctx, "email")));
            copy_id(u->phone, sizeof u->phone, json_string_value(json_object_get(ctx, "phone")));
            const char *role = json_string_value(json_object_get(ctx, "role"));
            u->role = role && strcmp(role, "admin") == 0 ? ROLE_ADMIN : ROLE_USER;
            memcpy(u->password_hash, job->hash, sizeof u->password_hash);
            submit(g, s, &rq);
        }
    } else if (job->result != AUTH_OK || ctx == NULL) {
        const char *who = s->diff ? s->diff->pending_key : s->auth_name;
        login_failed(g, s, username ? username : who);
        if (job->purpose == PURPOSE_DIFF_LOGIN && s->diff)
            diff_login_refused(s, ERR_AUTH_FAILED, "login failed: wrong user name or password");
        else
            respond_error(s, 401, ERR_AUTH_FAILED, "invalid username or password");
    } else {
        const char *user_id = json_string_value(json_object_get(ctx, "user_id"));
        const char *role = json_string_value(json_object_get(ctx, "role"));
        char ukey[128], ipkey[128];
        throttle_keys(s, username ? username : "", ukey, ipkey, sizeof ukey);
        auth_throttle_success(g->throttle, ukey);
        bool admin = role && strcmp(role, "admin") == 0;
        if (job->purpose == PURPOSE_DIFF_LOGIN && s->diff) {
            /* the login's identity, the session's only once the engine accepts the login */
            s->login_auth_valid = true;
            s->login_auth_admin = admin;
            copy_id(s->login_auth_user, sizeof s->login_auth_user, user_id);
            copy_id(s->login_auth_name, sizeof s->login_auth_name, username);
            const char *acc = json_string_value(json_object_get(ctx, "account_id"));
            if (acc == NULL || acc[0] == '\0')
                diff_login_refused(s, ERR_ACCOUNT_NOT_FOUND,
                                   "login failed: the user has no trading account yet");
            else
                diff_login_as(g, s, s->diff->pending_key, acc);
        } else {
            s->auth_valid = true;
            s->auth_admin = admin;
            copy_id(s->auth_user, sizeof s->auth_user, user_id);
            copy_id(s->auth_name, sizeof s->auth_name, username);
            auth_claims c;
            char token[AUTH_TOKEN_MAX], err[QAEX_MSG_LEN];
            int64_t now = now_ms() / 1000;
            if (auth_claims_init(&c, user_id, username,
                                 s->auth_admin ? AUTH_ROLE_ADMIN : AUTH_ROLE_USER, now,
                                 g->cfg.token_ttl_secs > 0 ? g->cfg.token_ttl_secs : 86400, err,
                                 sizeof err) != AUTH_OK ||
                auth_token_sign(&g->keys, &c, token, sizeof token, err, sizeof err) == 0) {
                respond_error(s, 500, ERR_INTERNAL, "could not issue a token: %s", err);
            } else {
                respond_json(s, 200,
                             codec_envelope_ok(json_pack(
                                 "{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "token", token,
                                 "token_type", "Bearer", "expires_in", (json_int_t)(c.exp - now),
                                 "expires_at", (json_int_t)c.exp, "user_id", user_id, "username",
                                 username, "role", role)));
            }
        }
    }
    json_decref(ctx);
}

static void drain_kdf(gateway *g) {
    kdf_job job;
    while (g->kdf && kdf_worker_poll(g->kdf, &job)) {
        session *s = conn_find(g, job.conn_id);
        if (s) auth_job_done(g, s, &job);
        sodium_memzero(&job, sizeof job);
    }
}

/* An answer of the engine thread meant for the gateway itself. */
static void internal_reply(gateway *g, session *s, const reply *r) {
    json_t *body = json_loadb(r->body, r->len, 0, NULL);
    if (r->status == PURPOSE_LOGIN || r->status == PURPOSE_DIFF_LOGIN) {
        auth_lookup_done(g, s, body, r->status);
    } else if (r->status == PURPOSE_HISTORY_ACCESS) {
        history_access_done(g, s, body);
    } else if (r->status == PURPOSE_WS_AUTH && !s->is_diff) { /* (a session may turn DIFF) */
        bool ok = json_is_true(json_object_get(body, "ok"));
        const char *acc = json_string_value(json_object_get(body, "account_id"));
        if (ok) ws_authenticate(g, s, acc);
        session_send_json(s, json_pack("{s:s, s:b, s:s, s:s}", "type", "auth_response", "success",
                                       ok, "user_id", acc ? acc : "", "message",
                                       json_string_value(json_object_get(body, "message"))));
    }
    json_decref(body);
}

/* ---- DIFF sessions ---- */

static void diff_wake(session *s) {
    if (diff_session_ready(s->diff)) lws_callback_on_writable(s->wsi);
}

static int diff_begin(gateway *g, session *s) {
    if (s->diff) return 0;
    s->diff = malloc(sizeof *s->diff);
    if (s->diff == NULL || diff_session_init(s->diff) != 0) {
        free(s->diff);
        s->diff = NULL;
        return -1;
    }
    /* DIFF clients peek only after they have received something: the server speaks first */
    json_t *brokers =
        json_pack("{s:s, s:[s]}", "aid", "rtn_brokers", "brokers",
                  g->cfg.diff_bid && g->cfg.diff_bid[0] ? g->cfg.diff_bid : "qaexchange");
    session_send_json(s, brokers);
    return 0;
}

static void diff_counts(gateway *g) {
    if (!g->closing) service_set_diff_listeners(g->svc, g->diff_quotes, g->diff_charts);
}

/* Registers the session under exactly the instruments it quotes or charts. */
static void diff_sync_topics(gateway *g, session *s) {
    diff_session *d = s->diff;
    for (int k = 0; k < s->n_subscriptions;) {
        const char *id = s->subscriptions[k];
        if (diff_session_quotes(d, id) || diff_session_charts(d, id)) {
            k++;
            continue;
        }
        topic_remove(g, TOPIC_INSTRUMENT, id, s->conn_id);
        g->market_subscriptions--;
        memcpy(s->subscriptions[k], s->subscriptions[--s->n_subscriptions], QAEX_INSTRUMENT_ID_LEN);
    }
    for (int i = 0; i < d->n_quotes + d->n_charts; i++) {
        const char *id = i < d->n_quotes ? d->quotes[i] : d->charts[i - d->n_quotes].instrument_id;
        bool have = false;
        for (int k = 0; k < s->n_subscriptions; k++)
            have = have || strcmp(s->subscriptions[k], id) == 0;
        if (have || s->n_subscriptions == MAX_SUBSCRIPTIONS) continue;
        snprintf(s->subscriptions[s->n_subscriptions++], QAEX_INSTRUMENT_ID_LEN, "%s", id);
        topic_add(g, TOPIC_INSTRUMENT, id, s->conn_id);
        g->market_subscriptions++;
    }
    if (!g->closing) service_set_market_listeners(g->svc, g->market_subscriptions);
}

/* Ends the accepted login (a login being checked is not in the account's topic and has no
 * watch of the engine yet). */
static void diff_logout(gateway *g, session *s) {
    diff_session *d = s->diff;
    if (!d->logged_in) return;
    topic_remove(g, TOPIC_ACCOUNT, d->account_id, s->conn_id);
    if (d->logged_in && !g->closing) { /* the engine thread stops watching the account */
        request rq;
        memset(&rq, 0, sizeof rq);
        rq.route = ROUTE_DIFF_LOGOUT;
        copy_id(rq.key, sizeof rq.key, d->account_id);
        rq.conn_id = s->conn_id;
        service_submit(g->svc, &rq);
    }
    d->logged_in = false;
}

/* The login being checked is over (refused, or to be tried again): forget what it proved. */
static void diff_login_clear(session *s) {
    diff_session *d = s->diff;
    d->login_pending = false;
    d->pending_key[0] = d->pending_account[0] = '\0';
    s->login_auth_valid = s->login_auth_admin = false;
    s->login_auth_user[0] = s->login_auth_name[0] = '\0';
}

static void diff_login_refused(session *s, int code, const char *message) {
    diff_login_clear(s);
    diff_notify_error(s, code, message);
}

static void diff_end(gateway *g, session *s) {
    diff_logout(g, s);
    g->diff_quotes -= s->diff->n_quotes;
    g->diff_charts -= s->diff->n_charts;
    diff_counts(g);
    diff_session_free(s->diff);
    free(s->diff);
    s->diff = NULL;
}

static void diff_take_push(session *s, const reply *r, const json_t *patch) {
    diff_session *d = s->diff;
    int rc = 0;
    if (r->channel == CHANNEL_DIFF_TRADE) {
        /* only the accepted login's account (a pending one is not in the topic either) */
        if (d->logged_in && strcmp(d->account_id, r->topic) == 0)
            rc = diff_session_merge_trade(d, patch);
    } else if (r->channel == CHANNEL_DIFF_QUOTE) {
        if (diff_session_quotes(d, r->topic)) rc = diff_session_merge(d, patch);
    } else if (r->channel == CHANNEL_DIFF_KLINE) {
        rc = diff_session_merge_klines(d, r->topic, patch);
    }
    if (rc != 0) { /* it can no longer converge: the client reconnects and starts afresh */
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        return;
    }
    diff_wake(s);
}

/* The engine's answer to the login being checked: its account's whole subtree, or a refusal.
 *
 * The session joins the account's topic only here, on the accepted answer. That loses no
 * change: the engine thread made the subtree after every push of the commands before it and
 * before any push of the commands after it, and the I/O thread releases them in that order
 * (a reply with a journal position waits behind the held ones; without storage all leave as
 * they come). So every push released before this one is already in the subtree, and every
 * push after it reaches the session through the topic. (One exception, as before: while the
 * journal cannot write, the subtree is answered at once and may pass pushes still held.) */
static void diff_login_answer(gateway *g, session *s, const json_t *patch, int status) {
    diff_session *d = s->diff;
    if (status != 200 || !json_is_object(json_object_get(patch, "trade"))) {
        diff_login_clear(s); /* the refusal's notify is merged with the rest of the reply */
        return;
    }
    /* another account's tree, sent under the old name, goes from the client */
    if (d->logged_in && strcmp(d->user_key, d->pending_key) != 0 &&
        diff_session_forget_trade(d, d->user_key) != 0)
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
    diff_logout(g, s); /* the previous login, if any, ends only now that this one stands */
    copy_id(d->user_key, sizeof d->user_key, d->pending_key);
    copy_id(d->account_id, sizeof d->account_id, d->pending_account);
    if (s->login_auth_valid) {
        s->auth_valid = true;
        s->auth_admin = s->login_auth_admin;
        copy_id(s->auth_user, sizeof s->auth_user, s->login_auth_user);
        copy_id(s->auth_name, sizeof s->auth_name, s->login_auth_name);
    }
    diff_login_clear(s);
    d->logged_in = true;
    topic_add(g, TOPIC_ACCOUNT, d->account_id, s->conn_id);
}

static void diff_take_reply(gateway *g, session *s, const reply *r) {
    diff_session *d = s->diff;
    json_t *patch = json_loadb(r->body, r->len, 0, NULL);
    if (r->route == ROUTE_DIFF_LOGIN) {
        if (!d->login_pending) { /* no login waits for it (cannot happen): show nothing of it */
            json_decref(patch);
            return;
        }
        diff_login_answer(g, s, patch, r->status);
    }
    /* a chart's first window: later bars move it on from there */
    json_t *charts = json_object_get(patch, "charts");
    for (int i = 0; charts && i < d->n_charts; i++) {
        json_t *c = json_object_get(charts, d->charts[i].chart_id);
        if (json_is_integer(json_object_get(c, "right_id"))) {
            d->charts[i].left_id = json_integer_value(json_object_get(c, "left_id"));
            d->charts[i].right_id = json_integer_value(json_object_get(c, "right_id"));
        }
    }
    if (patch == NULL || diff_session_merge(d, patch) != 0)
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
    json_decref(patch);
    diff_wake(s);
}

static void diff_notify_error(session *s, int code, const char *message) {
    diff_session_notify(s->diff, "ERROR", code, message);
    diff_wake(s);
}

static void diff_login(gateway *g, session *s, const diff_message *m) {
    diff_session *d = s->diff;
    /* one login at a time: a second would race the first for the password slot and for which
     * account the engine's answer opens. The current login, if any, stays as it is. */
    if (d->login_pending) {
        diff_notify_error(s, ERR_BAD_MESSAGE,
                          "login refused: the previous req_login of this session is still being "
                          "checked; send req_login again after its notify");
        return;
    }
    const char *bid = g->cfg.diff_bid && g->cfg.diff_bid[0] ? g->cfg.diff_bid : "qaexchange";
    if (g->cfg.diff_strict_bid && strcmp(m->bid, bid) != 0) {
        char msg[QAEX_MSG_LEN];
        snprintf(msg, sizeof msg, "login failed: unknown broker '%.64s' (this server is '%.64s')",
                 m->bid, bid);
        diff_notify_error(s, ERR_AUTH_FAILED, msg);
        return;
    }
    if (g->cfg.open_mode) { /* the user name names the account, no password asked */
        diff_login_as(g, s, m->user_name, m->user_name);
        return;
    }
    /* a login token as the password: user_name names an account of the token's user */
    if (strchr(m->password, '.') && strchr(strchr(m->password, '.') + 1, '.')) {
        auth_claims c;
        char msg[QAEX_MSG_LEN];
        if (auth_token_verify(&g->keys, m->password, now_ms() / 1000, &c, msg, sizeof msg) !=
            AUTH_OK) {
            char text[QAEX_MSG_LEN + 32];
            snprintf(text, sizeof text, "login failed: %s", msg);
            diff_notify_error(s, ERR_AUTH_FAILED, text);
            return;
        }
        /* the token's user acts for this login only: the session's once the engine agrees */
        s->login_auth_valid = true;
        s->login_auth_admin = c.role == AUTH_ROLE_ADMIN;
        copy_id(s->login_auth_user, sizeof s->login_auth_user, c.sub);
        copy_id(s->login_auth_name, sizeof s->login_auth_name, c.name);
        diff_login_as(g, s, m->user_name, m->user_name);
        return;
    }
    if (throttled(g, s, m->user_name)) return;
    /* user_name is a username (its first account trades) or an account (its owner's password) */
    if (strlen(m->password) > AUTH_PASSWORD_MAX) {
        diff_notify_error(s, ERR_AUTH_FAILED,
                          "login failed: the password is longer than 128 bytes");
        return;
    }
    copy_id(d->pending_key, sizeof d->pending_key, m->user_name);
    d->login_pending = true;
    memcpy(s->pending_secret, m->password, sizeof s->pending_secret); /* NUL-terminated: <= 128 */
    request rq;
    memset(&rq, 0, sizeof rq);
    rq.route = ROUTE_AUTH_LOOKUP;
    rq.purpose = PURPOSE_DIFF_LOGIN;
    copy_id(rq.key, sizeof rq.key, m->user_name);
    if (!submit(g, s, &rq)) { /* told the exchange is busy: this attempt is over */
        sodium_memzero(s->pending_secret, sizeof s->pending_secret);
        diff_login_clear(s);
    }
}

/* Asks the engine thread to log the session in to an account, acting for the identity the
 * login proved (s->login_auth_*): it answers with the account's whole subtree, or a refusal when
 * that user does not own it (diff_login_answer). Nothing of the account reaches the session
 * before, and the current login stays until then. */
static void diff_login_as(gateway *g, session *s, const char *user_key, const char *account_id) {
    diff_session *d = s->diff;
    char key[QAEX_ID_LEN], acc[QAEX_ID_LEN];
    copy_id(key, sizeof key, user_key);
    copy_id(acc, sizeof acc, account_id);
    /* the client's own spelling keys the trade subtree */
    copy_id(d->pending_key, sizeof d->pending_key, key);
    copy_id(d->pending_account, sizeof d->pending_account, acc);
    d->login_pending = true;
    request rq;
    memset(&rq, 0, sizeof rq);
    rq.route = ROUTE_DIFF_LOGIN;
    copy_id(rq.key, sizeof rq.key, d->pending_account);
    copy_id(rq.key2, sizeof rq.key2, d->pending_key);
    if (!submit_as(g, s, &rq, s->login_auth_valid, s->login_auth_admin, s->login_auth_user))
        diff_login_clear(s); /* told the exchange is busy: this attempt is over */
}

static void diff_subscribe(gateway *g, session *s, const diff_message *m) {
    diff_session *d = s->diff;
    g->diff_quotes -= d->n_quotes;
    char had[DIFF_MAX_QUOTES][QAEX_INSTRUMENT_ID_LEN];
    int n_had = d->n_quotes;
    memcpy(had, d->quotes, sizeof had);
    d->n_quotes = m->n_ins;
    memcpy(d->quotes, m->ins, sizeof d->quotes);
    g->diff_quotes += d->n_quotes;
    diff_sync_topics(g, s);
    diff_counts(g);
    /* ins_list echoes the subscription; new instruments get their quote at once */
    char list[DIFF_MAX_QUOTES * QAEX_INSTRUMENT_ID_LEN] = "";
    size_t used = 0;
    for (int i = 0; i < m->n_ins; i++) {
        int n = snprintf(list + used, sizeof list - used, "%s%s", i ? "," : "", m->ins[i]);
        if (n > 0) used += (size_t)n;
        bool known = false;
        for (int k = 0; k < n_had; k++)
            known = known || strcmp(had[k], m->ins[i]) == 0;
        if (known) continue;
        request rq;
        memset(&rq, 0, sizeof rq);
        rq.route = ROUTE_DIFF_QUOTE;
        copy_id(rq.key, sizeof rq.key, m->ins[i]);
        submit(g, s, &rq);
    }
    json_t *echo = json_pack("{s:s}", "ins_list", list);
    if (echo) diff_session_merge(d, echo);
    json_decref(echo);
    diff_wake(s);
}

/* charts.<id> goes from the client's tree (a null in the next rtn_data). */
static void diff_forget_chart(diff_session *d, const char *chart_id) {
    json_t *gone = json_pack("{s:{s:n}}", "charts", chart_id);
    if (gone) diff_session_merge(d, gone);
    json_decref(gone);
}

static void diff_set_chart(gateway *g, session *s, const diff_message *m, const char *text,
                           size_t len) {
    diff_session *d = s->diff;
    int at = -1;
    for (int i = 0; i < d->n_charts; i++)
        if (strcmp(d->charts[i].chart_id, m->chart.chart_id) == 0) at = i;
    if (m->chart.view_width == 0) { /* deleted */
        if (at >= 0) {
            d->charts[at] = d->charts[--d->n_charts];
            g->diff_charts--;
        }
        diff_forget_chart(d, m->chart.chart_id);
    } else {
        if (at < 0 && d->n_charts == DIFF_MAX_CHARTS) {
            diff_notify_error(s, ERR_BAD_MESSAGE, "too many charts on one session (at most 8)");
            return;
        }
        if (at < 0) {
            at = d->n_charts++;
            g->diff_charts++;
        } else {
            /* a new request for the same id replaces the old one: nothing of the old state (a
             * left_kline_id the new one does not name) may stay merged into the new */
            diff_forget_chart(d, m->chart.chart_id);
        }
        d->charts[at] = m->chart;
        d->charts[at].left_id = d->charts[at].right_id = -1;
        /* the chart's state is the request, as DIFF clients read it back */
        json_t *req = json_loadb(text, len, 0, NULL);
        if (req) {
            json_object_del(req, "aid");
            json_t *state = json_pack("{s:{s:{s:o}}}", "charts", m->chart.chart_id, "state", req);
            if (state) diff_session_merge(d, state);
            json_decref(state);
        }
        request rq;
        memset(&rq, 0, sizeof rq);
        rq.route = ROUTE_DIFF_CHART;
        copy_id(rq.key, sizeof rq.key, m->chart.instrument_id);
        copy_id(rq.req_id, sizeof rq.req_id, m->chart.chart_id);
        rq.num1 = m->chart.period;
        rq.num2 = m->chart.view_width;
        submit(g, s, &rq);
    }
    diff_sync_topics(g, s);
    diff_counts(g);
    diff_wake(s);
}

static void diff_message_in(gateway *g, session *s, const char *text, size_t len) {
    diff_session *d = s->diff;
    /* on the stack: a 3 KiB heap block per peek makes glibc consolidate its small blocks */
    diff_message parsed;
    diff_message *m = &parsed;
    diff_parse(text, len, m);
    request rq;
    memset(&rq, 0, sizeof rq);
    bool needs_login = m->aid == DIFF_AID_INSERT_ORDER || m->aid == DIFF_AID_CANCEL_ORDER ||
                       m->aid == DIFF_AID_TRANSFER;
    if (needs_login && !d->logged_in) {
        diff_notify_error(s, ERR_NOT_AUTHENTICATED, "not logged in: send req_login before trading");
        return;
    }
    switch (m->aid) {
        case DIFF_AID_PEEK:
            d->peek_waiting = true;
            diff_wake(s);
            break;
        case DIFF_AID_LOGIN:
            diff_login(g, s, m);
            /* the password (or token) is not left on the stack for whatever runs next */
            sodium_memzero(m->password, sizeof m->password);
            break;
        case DIFF_AID_SUBSCRIBE_QUOTE:
            diff_subscribe(g, s, m);
            break;
        case DIFF_AID_SET_CHART:
            diff_set_chart(g, s, m, text, len);
            break;
        case DIFF_AID_INSERT_ORDER:
            rq.route = ROUTE_DIFF_INSERT;
            rq.cmd.type = CMD_ORDER_INSERT;
            rq.cmd.u.order = m->order;
            copy_id(rq.cmd.u.order.account_id, sizeof rq.cmd.u.order.account_id, d->account_id);
            copy_id(rq.key2, sizeof rq.key2, d->user_key);
            submit(g, s, &rq);
            break;
        case DIFF_AID_CANCEL_ORDER:
            rq.route = ROUTE_DIFF_CANCEL;
            rq.cmd.type = CMD_ORDER_CANCEL;
            copy_id(rq.cmd.u.cancel.account_id, sizeof rq.cmd.u.cancel.account_id, d->account_id);
            copy_id(rq.cmd.u.cancel.order_id, sizeof rq.cmd.u.cancel.order_id, m->order_id);
            copy_id(rq.key2, sizeof rq.key2, d->user_key);
            submit(g, s, &rq);
            break;
        case DIFF_AID_TRANSFER: /* bank -> futures is a deposit, the reverse a withdrawal */
            rq.route = ROUTE_DIFF_TRANSFER;
            rq.cmd.type = m->amount > 0 ? CMD_DEPOSIT : CMD_WITHDRAW;
            copy_id(rq.cmd.u.transfer.account_id, sizeof rq.cmd.u.transfer.account_id,
                    d->account_id);
            rq.cmd.u.transfer.amount = m->amount > 0 ? m->amount : -m->amount;
            copy_id(rq.key2, sizeof rq.key2, d->user_key);
            submit(g, s, &rq);
            break;
        case DIFF_AID_BAD:
            if (d->logged_in && strcmp(m->aid_text, "insert_order") == 0 && m->order_id[0]) {
                /* the client shows the order ALIVE until told otherwise: the engine thread
                 * closes it with the refusal, unless the id names an order that exists */
                rq.route = ROUTE_DIFF_INSERT; /* cmd.type 0: a refusal, never a command */
                copy_id(rq.cmd.u.order.account_id, sizeof rq.cmd.u.order.account_id, d->account_id);
                copy_id(rq.cmd.u.order.order_id, sizeof rq.cmd.u.order.order_id, m->order_id);
                copy_id(rq.key2, sizeof rq.key2, d->user_key);
                rq.num1 = m->error_code;
                rq.extra = strdup(m->error);
                if (rq.extra && submit(g, s, &rq)) break;
                free(rq.extra);
            }
            diff_notify_error(s, m->error_code, m->error);
            break;
        case DIFF_AID_IGNORED:
            break;
    }
}

static void ws_message(gateway *g, session *s, const char *text, size_t len) {
    if (s->diff) {
        diff_message_in(g, s, text, len);
        return;
    }
    json_error_t err;
    json_t *m = codec_load(text, len, &err);
    if (m == NULL || !json_is_object(m)) {
        json_decref(m);
        ws_send_error(s, ERR_BAD_MESSAGE, "malformed JSON message: %s", err.text);
        return;
    }
    const char *type = json_string_value(json_object_get(m, "type"));
    if (type == NULL && json_object_get(m, "aid")) { /* a DIFF client on /ws */
        json_decref(m);
        if (s->authenticated) {
            topic_remove(g, TOPIC_ACCOUNT, s->account_id, s->conn_id);
            s->authenticated = false;
        }
        notes_leave(g, s); /* DIFF has its own notify */
        s->is_diff = true;
        if (diff_begin(g, s) != 0) {
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
            return;
        }
        diff_message_in(g, s, text, len);
        return;
    }
    char msg[QAEX_MSG_LEN];
    request rq;
    memset(&rq, 0, sizeof rq);
    codec_get_string(m, "request_id", rq.req_id, sizeof rq.req_id, false, msg, sizeof msg);
    if (type == NULL && json_object_get(m, "action")) {
        notes_action(g, s, m);
    } else if (type == NULL) {
        ws_send_error(s, ERR_BAD_MESSAGE, "message has no \"type\"");
    } else if (strcmp(type, "ping") == 0) {
        session_send_text(s, "{\"type\":\"pong\"}");
    } else if (strcmp(type, "auth") == 0) {
        char who[QAEX_ID_LEN];
        if (codec_get_string(m, "user_id", who, sizeof who, true, msg, sizeof msg) !=
            CODEC_FIELD_OK) {
            session_send_json(s, json_pack("{s:s, s:b, s:s, s:s}", "type", "auth_response",
                                           "success", 0, "user_id", "", "message", msg));
        } else if (!g->cfg.open_mode) {
            const char *token = json_string_value(json_object_get(m, "token"));
            int code;
            if (token == NULL || !token_accept(g, s, token, &code, msg, sizeof msg)) {
                session_send_json(s, json_pack("{s:s, s:b, s:s, s:s}", "type", "auth_response",
                                               "success", 0, "user_id", who, "message",
                                               token ? msg : "token is required"));
            } else {
                rq.route = ROUTE_WS_AUTH;
                rq.purpose = PURPOSE_WS_AUTH;
                copy_id(rq.key, sizeof rq.key, who);
                submit(g, s, &rq);
            }
        } else {
            ws_authenticate(g, s, who);
            session_send_json(s,
                              json_pack("{s:s, s:b, s:s, s:s}", "type", "auth_response", "success",
                                        1, "user_id", who, "message", "Authentication successful"));
        }
    } else if (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0) {
        ws_subscribe(g, s, m, strcmp(type, "subscribe") == 0);
    } else if (!s->authenticated) {
        ws_send_error(s, ERR_NOT_AUTHENTICATED,
                      "not authenticated: send {\"type\":\"auth\"} first");
    } else if (strcmp(type, "submit_order") == 0 || strcmp(type, "cancel_order") == 0) {
        bool submit_order = strcmp(type, "submit_order") == 0;
        /* the session's account acts; a message naming another account is refused */
        json_t *acc = json_object_get(m, "account_id");
        if (acc && (!json_is_string(acc) || strcmp(json_string_value(acc), s->account_id))) {
            ws_send_error(s, CODEC_ERR_FORBIDDEN, "this session trades account %s only",
                          s->account_id);
        } else {
            json_object_set_new(m, "account_id", json_string(s->account_id));
            int rc;
            if (submit_order) {
                rq.route = ROUTE_WS_SUBMIT;
                rq.cmd.type = CMD_ORDER_INSERT;
                rc = codec_parse_order(m, &rq.cmd.u.order, msg, sizeof msg);
            } else {
                rq.route = ROUTE_WS_CANCEL;
                rq.cmd.type = CMD_ORDER_CANCEL;
                rc = codec_parse_cancel(m, &rq.cmd, msg, sizeof msg);
            }
            if (rc != 0)
                session_send_json(s, codec_ws_order_response(rc, NULL, msg));
            else
                submit(g, s, &rq);
        }
    } else if (strncmp(type, "query_", 6) == 0) {
        const char *what = type + 6;
        copy_id(rq.key, sizeof rq.key, s->account_id);
        if (strcmp(what, "account") == 0)
            rq.route = ROUTE_WS_QUERY_ACCOUNT;
        else if (strcmp(what, "orders") == 0)
            rq.route = ROUTE_WS_QUERY_ORDERS;
        int field = CODEC_FIELD_OK;
        if (strcmp(what, "position") == 0 || strcmp(what, "positions") == 0) {
            field = codec_get_string(m, "instrument_id", rq.key2, sizeof rq.key2, false, msg,
                                     sizeof msg);
            rq.route = ROUTE_WS_QUERY_POSITIONS;
        } else if (strcmp(what, "order") == 0) {
            field = codec_get_string(m, "order_id", rq.key2, sizeof rq.key2, true, msg, sizeof msg);
            rq.route = ROUTE_WS_QUERY_ORDER;
        }
        if (rq.route == ROUTE_NONE)
            ws_send_error(s, ERR_BAD_MESSAGE, "unknown query %s", type);
        else if (field == CODEC_FIELD_ERROR) /* order_id missing, or a field of the wrong type */
            ws_send_error(s, ERR_BAD_MESSAGE, "%s", msg);
        else
            submit(g, s, &rq);
    } else {
        ws_send_error(s, ERR_BAD_MESSAGE, "unknown message type %s", type);
    }
    json_decref(m);
}

/* ---- the libwebsockets callback ---- */

static http_method method_of(struct lws *wsi, char *path, size_t cap) {
    static const struct {
        enum lws_token_indexes token;
        http_method method;
    } methods[] = {{WSI_TOKEN_GET_URI, M_GET},         {WSI_TOKEN_POST_URI, M_POST},
                   {WSI_TOKEN_PUT_URI, M_PUT},         {WSI_TOKEN_DELETE_URI, M_DELETE},
                   {WSI_TOKEN_OPTIONS_URI, M_OPTIONS}, {WSI_TOKEN_PATCH_URI, M_PATCH},
                   {WSI_TOKEN_HEAD_URI, M_HEAD}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (lws_hdr_total_length(wsi, methods[i].token) > 0) {
            if (lws_hdr_copy(wsi, path, (int)cap, methods[i].token) < 0) path[0] = '\0';
            return methods[i].method;
        }
    }
    path[0] = '\0';
    return M_OTHER;
}

static void diff_take_reply(gateway *g, session *s, const reply *r);
static void internal_reply(gateway *g, session *s, const reply *r);

static void release_reply(gateway *g, reply *r) {
    if (r->kind == REPLY_PUSH_ACCOUNT || r->kind == REPLY_PUSH_INSTRUMENT) {
        deliver_push(g, r);
    } else {
        session *s = conn_find(g, r->conn_id);
        if (s && r->kind == REPLY_HTTP)
            respond(s, r->status, r->body, r->len);
        else if (s && r->kind == REPLY_INTERNAL)
            internal_reply(g, s, r);
        else if (s && r->kind == REPLY_WS && s->diff)
            diff_take_reply(g, s, r);
        else if (s && r->kind == REPLY_WS)
            session_send_text(s, r->body);
        else if (s == NULL && r->kind == REPLY_WS && r->route == ROUTE_DIFF_LOGIN &&
                 r->status == 200 && !g->closing) {
            /* the session closed while its login was checked: nobody watches the account */
            request rq;
            memset(&rq, 0, sizeof rq);
            rq.route = ROUTE_DIFF_LOGOUT;
            copy_id(rq.key, sizeof rq.key, r->topic);
            service_submit(g->svc, &rq);
        }
    }
    free(r->body);
}

static bool hold_reply(gateway *g, const reply *r) {
    if (g->held_count == g->held_cap) {
        size_t cap = g->held_cap ? g->held_cap * 2 : 1024;
        reply *n = malloc(cap * sizeof *n);
        if (n == NULL) return false;
        for (size_t i = 0; i < g->held_count; i++)
            n[i] = g->held[(g->held_head + i) % g->held_cap];
        free(g->held);
        g->held = n;
        g->held_head = 0;
        g->held_cap = cap;
    }
    g->held[(g->held_head + g->held_count++) % g->held_cap] = *r;
    return true;
}

/* Releases, in order, every reply whose journal position is durable; the rest wait for the
 * journal's wake-up. */
static void drain_replies(gateway *g) {
    service_clear_wake(g->svc);
    uint64_t durable = service_durable_seq(g->svc);
    while (g->held_count && g->held[g->held_head].seq <= durable) {
        release_reply(g, &g->held[g->held_head]);
        g->held_head = (g->held_head + 1) % g->held_cap;
        g->held_count--;
    }
    reply r;
    while (service_poll(g->svc, &r)) {
        /* seq 0: an answer that shows no new state (a refusal, a read during a journal outage) */
        if (r.seq == 0 || (g->held_count == 0 && r.seq <= durable)) {
            release_reply(g, &r);
        } else if (!hold_reply(g, &r)) {
            free(r.body);
        }
    }
}

static void diff_end(gateway *g, session *s);

static void session_close(gateway *g, session *s) {
    /* lws reports the close of a connection that never sent a request with no session */
    if (s == NULL || s->conn_id == 0) return;
    if (s->diff) diff_end(g, s);
    notes_leave(g, s);
    if (s->is_ws) {
        if (s->authenticated) topic_remove(g, TOPIC_ACCOUNT, s->account_id, s->conn_id);
        for (int k = 0; k < s->n_subscriptions; k++)
            topic_remove(g, TOPIC_INSTRUMENT, s->subscriptions[k], s->conn_id);
        g->market_subscriptions -= s->n_subscriptions;
        g->ws_sessions--;
        if (!g->closing) {
            service_set_push_listeners(g->svc, g->ws_sessions);
            service_set_market_listeners(g->svc, g->market_subscriptions);
        }
    }
    session_clear_queue(s);
    query_job_free(s->pending_query);
    s->pending_query = NULL;
    msg_release(s->response);
    s->response = NULL;
    free(s->body);
    free(s->rx);
    s->body = s->rx = NULL;
    conn_unregister(g, s);
}

/* Drops the first queued message of a session. */
static void session_pop(session *s) {
    outq_item *it = s->out_head;
    s->out_head = it->next;
    if (s->out_head == NULL) s->out_tail = NULL;
    s->backlog--;
    if (it->droppable) s->droppable_backlog--;
    msg_release(it->msg);
    free(it);
}

/* Writes what a writable WebSocket session has queued: up to WS_BATCH_MESSAGES messages,
 * framed here (server frames are unmasked: FIN + text opcode, then the length) into the
 * gateway's batch buffer and written in one lws_write. libwebsockets passes LWS_WRITE_HTTP on
 * a WebSocket connection through unframed, and buffers what the socket does not take, as for
 * any write. A message too large for the batch goes alone through the library's framing.
 * -1: the connection failed. */
static int ws_write_queued(gateway *g, session *s) {
    if (g->ws_batch == NULL) {
        g->ws_batch = malloc(LWS_PRE + WS_BATCH_BYTES);
        if (g->ws_batch == NULL) { /* no batch buffer: one write per message */
            for (int sent = 0; s->out_head && sent < WS_BATCH_MESSAGES; sent++) {
                shared_msg *m = s->out_head->msg;
                int n = lws_write(s->wsi, msg_text(m), m->len, LWS_WRITE_TEXT);
                session_pop(s);
                if (n < 0) return -1;
                if (lws_send_pipe_choked(s->wsi)) break;
            }
            return 0;
        }
    }
    unsigned char *start = g->ws_batch + LWS_PRE, *p = start;
    for (int k = 0; s->out_head && k < WS_BATCH_MESSAGES; k++) {
        shared_msg *m = s->out_head->msg;
        if ((size_t)(p - start) + WS_FRAME_HEAD_MAX + m->len > WS_BATCH_BYTES) {
            if (p > start) break; /* the batch is full: this one goes next time */
            int n = lws_write(s->wsi, msg_text(m), m->len, LWS_WRITE_TEXT);
            session_pop(s);
            return n < 0 ? -1 : 0;
        }
        *p++ = 0x81;
        if (m->len < 126) {
            *p++ = (unsigned char)m->len;
        } else if (m->len <= 0xFFFF) {
            *p++ = 126;
            *p++ = (unsigned char)(m->len >> 8);
            *p++ = (unsigned char)m->len;
        } else {
            *p++ = 127;
            for (int i = 7; i >= 0; i--)
                *p++ = (unsigned char)((uint64_t)m->len >> (8 * i));
        }
        memcpy(p, msg_text(m), m->len);
        p += m->len;
        session_pop(s);
    }
    if (p == start) return 0;
    return lws_write(s->wsi, start, (size_t)(p - start), LWS_WRITE_HTTP) < 0 ? -1 : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *pss, void *in,
                    size_t len) {
    struct lws_context *ctx = lws_get_context(wsi);
    gateway *g = lws_context_user(ctx);
    session *s = pss;
    switch (reason) {
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
            if (!g->closing) {
                drain_replies(g);
                notes_flush(g);
                drain_kdf(g);
                drain_queries(g);
            }
            return 0;

        case LWS_CALLBACK_HTTP: {
            if (s == NULL) return -1;
            /* a keep-alive connection brings several requests through one session; a request
             * pipelined behind one still being answered is not supported: the connection closes */
            if (s->in_flight) return -1;
            s->wsi = wsi;
            if (s->conn_id == 0 && conn_register(g, s) != 0) return -1;
            s->body_len = 0;
            s->body_too_large = false;
            s->bad_arg[0] = '\0';
            s->method = method_of(wsi, s->path, sizeof s->path);
            /* whatever the method, a declared body is read before the answer */
            {
                char cl[32] = "";
                if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
                    unsigned long long n = strtoull(cl, NULL, 10);
                    if (n > g->cfg.max_body_bytes) {
                        /* refuse before reading; the connection closes after the answer */
                        s->close_after_response = true;
                        s->body_too_large = true;
                        route_http(g, s);
                        return 0;
                    }
                    if (n > 0) return 0; /* the body follows */
                }
            }
            route_http(g, s);
            return 0;
        }
        case LWS_CALLBACK_HTTP_BODY:
            if (s == NULL) return -1;
            if (len == 0) return 0;
            /* bytes past a request already being answered (a lying Content-Length, a smuggled
             * request): dropped, and the connection closes once the answer is out */
            if (s->in_flight) {
                s->close_after_response = true;
                return 0;
            }
            if (s->body_len + len > g->cfg.max_body_bytes) {
                s->body_too_large = true;
                return 0;
            }
            if (s->body_len + len > s->body_cap) {
                size_t cap = s->body_cap ? s->body_cap : 1024;
                while (cap < s->body_len + len)
                    cap *= 2;
                char *b = realloc(s->body, cap);
                if (b == NULL) return -1;
                s->body = b;
                s->body_cap = cap;
            }
            memcpy(s->body + s->body_len, in, len);
            s->body_len += len;
            return 0;
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
            if (s == NULL) return -1;
            if (s->in_flight) {
                s->close_after_response = true;
                return 0;
            }
            route_http(g, s);
            return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
            if (s == NULL) return -1;
            return write_response(g, s);
        case LWS_CALLBACK_CLOSED_HTTP:
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL: /* the session's memory is about to go (an upgrade
                                               * to WebSocket on a kept-alive connection) */
            session_close(g, s);
            return 0;

        case LWS_CALLBACK_ESTABLISHED: {
            if (s == NULL) return -1;
            session_close(g, s); /* an HTTP request of this connection still registered */
            memset(s, 0, sizeof *s);
            s->wsi = wsi;
            s->is_ws = true;
            s->heard_ms = s->pinged_ms = mono_ms();
            if (conn_register(g, s) != 0) return -1;
            char path[256] = "";
            lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI);
            s->is_diff = strncmp(path, "/ws/diff", 8) == 0;
            g->ws_sessions++;
            service_set_push_listeners(g->svc, g->ws_sessions);
            if (s->is_diff && diff_begin(g, s) != 0) return -1;
            char account_id[QAEX_ID_LEN], token[URL_ARG_MAX];
            bool named = !s->is_diff && url_arg(wsi, "user_id=", account_id, sizeof account_id) &&
                         account_id[0];
            if (named && g->cfg.open_mode) {
                ws_authenticate(g, s, account_id);
            } else if (!s->is_diff && !g->cfg.open_mode &&
                       url_arg(wsi, "token=", token, sizeof token)) {
                /* a refused URL token is said so (9001), as an auth message's is: a client left
                 * unanswered cannot tell a bad token from a slow server */
                int code;
                char msg[QAEX_MSG_LEN];
                if (!named) {
                    ws_send_error(s, ERR_AUTH_FAILED,
                                  "token in the URL refused: no user_id= names the account to "
                                  "authenticate as");
                } else if (token_accept(g, s, token, &code, msg, sizeof msg)) {
                    request rq;
                    memset(&rq, 0, sizeof rq);
                    rq.route = ROUTE_WS_AUTH;
                    rq.purpose = PURPOSE_WS_AUTH;
                    copy_id(rq.key, sizeof rq.key, account_id);
                    submit(g, s, &rq);
                } else {
                    ws_send_error(s, code, "token in the URL refused: %s", msg);
                }
                sodium_memzero(token, sizeof token);
            }
            return 0;
        }
        case LWS_CALLBACK_RECEIVE_PONG:
            if (s) s->heard_ms = mono_ms();
            return 0;
        case LWS_CALLBACK_RECEIVE: {
            if (s == NULL) return -1;
            s->heard_ms = mono_ms();
            /* the last piece of a message: its final frame, and nothing of that frame left */
            bool last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
            if (s->rx_discard) { /* the rest of a message already refused as too large */
                if (last) s->rx_discard = false;
                return 0;
            }
            if (s->rx_len + len > g->cfg.ws_max_message) {
                /* The whole message is refused: what is left of it is read and dropped up to its
                 * end, never parsed, or its tail would run as a command the client never sent
                 * on its own. Discarding (rather than closing with 1009) keeps the session, its
                 * subscriptions and login, as every other bad message does; nothing of the
                 * dropped bytes is kept, so memory stays bounded either way. */
                char msg[QAEX_MSG_LEN];
                snprintf(msg, sizeof msg,
                         "message too large: %zu bytes received so far, at most %zu allowed; the "
                         "whole message is dropped",
                         s->rx_len + len, g->cfg.ws_max_message);
                if (s->diff)
                    diff_notify_error(s, ERR_BAD_MESSAGE, msg);
                else
                    ws_send_error(s, ERR_BAD_MESSAGE, "%s", msg);
                s->rx_len = 0;
                s->rx_discard = !last;
                return 0;
            }
            if (s->rx_len + len > s->rx_cap) {
                size_t cap = s->rx_cap ? s->rx_cap : 1024;
                while (cap < s->rx_len + len)
                    cap *= 2;
                char *b = realloc(s->rx, cap);
                if (b == NULL) return -1;
                s->rx = b;
                s->rx_cap = cap;
            }
            memcpy(s->rx + s->rx_len, in, len);
            s->rx_len += len;
            if (!last) return 0;
            size_t n = s->rx_len;
            s->rx_len = 0;
            ws_message(g, s, s->rx, n);
            return 0;
        }
        case LWS_CALLBACK_SERVER_WRITEABLE: {
            if (s == NULL) return -1;
            if (s->ping_due) { /* with a payload: lws 4.1 reports no empty pong */
                unsigned char ping[LWS_PRE + 4] = {0};
                memcpy(ping + LWS_PRE, "qaex", 4);
                s->ping_due = false;
                s->pinged_ms = mono_ms();
                if (lws_write(wsi, ping + LWS_PRE, 4, LWS_WRITE_PING) < 0) return -1;
                if (lws_send_pipe_choked(wsi)) {
                    if (s->out_head || (s->diff && diff_session_ready(s->diff)))
                        lws_callback_on_writable(wsi);
                    return 0;
                }
            }
            if (s->diff && diff_session_ready(s->diff)) { /* everything owed, as one rtn_data */
                size_t n;
                char *text = diff_session_take(s->diff, &n);
                if (text == NULL) return -1;
                shared_msg *m = msg_new(text, n);
                free(text);
                if (m == NULL) return -1;
                session_send(s, m, false);
                msg_release(m);
            }
            if (ws_write_queued(g, s) < 0) return -1;
            if (s->out_head) lws_callback_on_writable(wsi);
            return 0;
        }
        case LWS_CALLBACK_CLOSED:
            session_close(g, s);
            return 0;
        default:
            break;
    }
    return lws_callback_http_dummy(wsi, reason, pss, in, len);
}

/* ---- lifecycle ---- */

gateway *gateway_create(const gateway_config *cfg, service *svc) {
    gateway *g = calloc(1, sizeof *g);
    if (g == NULL) return NULL;
    g->cfg = *cfg;
    if (g->cfg.ws_max_message == 0) g->cfg.ws_max_message = DEFAULT_WS_MESSAGE;
    g->svc = svc;
    if (idmap_init(&g->topic_index, 1024) != 0) {
        free(g);
        return NULL;
    }
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    process_start_ns = (int64_t)started.tv_sec * 1000000000LL + started.tv_nsec;
    /* read at render time, on this thread (the only one that changes them) */
    if (cfg->metrics &&
        (metrics_callback_register(cfg->metrics->reg, METRICS_GAUGE, "qaex_connections",
                                   "Open HTTP and WebSocket connections", NULL, open_connections,
                                   g) != 0 ||
         metrics_callback_register(cfg->metrics->reg, METRICS_GAUGE, "qaex_ws_sessions",
                                   "Open WebSocket sessions", NULL, open_ws_sessions, g) != 0)) {
        idmap_free(&g->topic_index);
        free(g);
        return NULL;
    }
    char err[QAEX_MSG_LEN];
    auth_pwhash_cost cost;
    if (cfg->password_cost_fast)
        auth_pwhash_cost_fast(&cost);
    else
        auth_pwhash_cost_interactive(&cost);
    auth_throttle_config tc;
    auth_throttle_config_default(&tc);
    /* without a configured secret, tokens are signed by a key drawn at start */
    bool keyed =
        cfg->token_secret && cfg->token_secret[0]
            ? auth_keys_from_secret(&g->keys, cfg->token_secret, err, sizeof err) == AUTH_OK
            : auth_keys_generate(&g->keys) == AUTH_OK;
    g->throttle = keyed ? auth_throttle_new(&tc, err, sizeof err) : NULL;
    g->kdf = g->throttle ? kdf_worker_start(&cost, gateway_wake, g) : NULL;
    notify_config nc;
    notify_config_default(&nc);
    if (cfg->notify_batch_size) nc.batch_size = cfg->notify_batch_size;
    if (cfg->notify_batch_interval_ms) nc.batch_interval_ms = cfg->notify_batch_interval_ms;
    if (nc.p1_delay_ms > nc.batch_interval_ms) nc.p1_delay_ms = nc.batch_interval_ms;
    g->notes = g->kdf ? notify_broker_new(&nc) : NULL;
    if (g->notes == NULL) {
        kdf_worker_stop(g->kdf);
        auth_throttle_free(g->throttle);
        idmap_free(&g->topic_index);
        free(g);
        return NULL;
    }
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    g->notes_epoch_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    g->protocols[0] = (struct lws_protocols){
        .name = "qaexchange",
        .callback = callback,
        .per_session_data_size = sizeof(session),
        .rx_buffer_size = 0,
        /* a batch of WebSocket messages (ws_write_queued) in one send(); left at 0, lws would
         * cut every write into sends of its 4 KiB service buffer and copy the rest aside */
        .tx_packet_size = WS_BATCH_BYTES,
    };
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = g;
    /* a connection holds a header table from its first byte until its request is parsed: with
     * lws's default of 32, a crowd of idle or slow connections makes new clients queue */
    info.max_http_header_pool = 1024;
    info.max_http_header_data = HTTP_HEADER_DATA;
    /* a connection that holds a header table without completing a request is dropped */
    info.timeout_secs_ah_idle = 5;
    info.timeout_secs = 10;
    g->ctx = lws_create_context(&info);
    if (g->ctx == NULL) {
        gateway_destroy(g);
        return NULL;
    }
    struct lws_context_creation_info vh;
    memset(&vh, 0, sizeof vh);
    vh.port = cfg->http_port;
    vh.iface = cfg->http_host;
    vh.protocols = g->protocols;
    vh.vhost_name = "http";
    vh.keepalive_timeout = 10; /* idle keep-alive connections, and requests lws cannot parse */
    struct lws_vhost *http_vhost = lws_create_vhost(g->ctx, &vh);
    if (http_vhost == NULL) {
        gateway_destroy(g);
        return NULL;
    }
    g->http_port = lws_get_vhost_listen_port(http_vhost); /* the one chosen, for port 0 */
    if (cfg->ws_port >= 0) {
        vh.port = cfg->ws_port;
        vh.iface = cfg->ws_host;
        vh.vhost_name = "ws";
        if (lws_create_vhost(g->ctx, &vh) == NULL) {
            gateway_destroy(g);
            return NULL;
        }
    }
    lws_sul_schedule(g->ctx, 0, &g->keepalive_timer, keepalive_sweep,
                     (lws_usec_t)keepalive_period_ms(g) * LWS_US_PER_MS);
    return g;
}

int gateway_http_port(const gateway *g) {
    return g->http_port;
}

void gateway_wake(void *arg) {
    gateway *g = arg;
    if (g->ctx) lws_cancel_service(g->ctx);
}

void gateway_stop(gateway *g) {
    atomic_store(&g->stop, true);
    lws_cancel_service(g->ctx);
}

int gateway_run(gateway *g) {
    while (!atomic_load(&g->stop)) {
        if (lws_service(g->ctx, 0) < 0) return -1;
    }
    return 0;
}

void gateway_destroy(gateway *g) {
    if (g == NULL) return;
    g->closing = true;
    kdf_worker_stop(g->kdf);
    lws_context_destroy(g->ctx);
    notify_broker_free(g->notes); /* after the sessions: they release their broker sessions */
    free(g->notes_pending);
    auth_throttle_free(g->throttle);
    auth_keys_wipe(&g->keys);
    for (uint32_t i = 0; i < g->n_topics; i++)
        free(g->topics[i].conns);
    for (size_t i = 0; i < g->held_count; i++)
        free(g->held[(g->held_head + i) % g->held_cap].body);
    free(g->held);
    free(g->topics);
    idmap_free(&g->topic_index);
    free(g->conns);
    free(g->free_slots);
    free(g->ws_batch);
    free(g);
}
