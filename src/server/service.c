#include "server/service.h"

#include "proto/admin_codec.h"
#include "proto/codec.h"
#include "proto/diff_codec.h"
#include "proto/market_codec.h"
#include "proto/merge_patch.h"
#include "server/notify_feed.h"
#include "server/spsc.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define BOOK_PUSH_DEPTH 5

struct service {
    engine *e;
    persistence *p;
    spsc in, out;
    sem_t in_items;
    pthread_t thread;
    atomic_bool stopping;
    bool started;
    service_wake_fn wake;
    void *wake_ctx;
    atomic_int wake_pending;
    atomic_int push_listeners;
    atomic_int market_listeners;
    atomic_int diff_quote_listeners, diff_chart_listeners;
    /* DIFF: sessions logged in per account slot, and the slots with any */
    uint32_t *diff_watch;
    uint32_t cap_diff_watch;
    uint32_t *diff_watched, n_diff_watched;
    atomic_uint diff_watched_pub; /* n_diff_watched, for /monitoring/system */
    /* DIFF patches of the command being applied, per account id: one push each at the end */
    json_t *diff_accounts;
    json_t *diff_quotes_sent; /* per instrument, the quote DIFF sessions were last sent */
    uint64_t notify_seq;
    /* notifications of seed 004 for the channels some session wants */
    notify_feed *notes;
    atomic_uint notify_channels;
    uint64_t note_seq;
    bool prices_moved;       /* a trade since the last risk scan */
    int64_t risk_scanned_ns; /* CLOCK_MONOTONIC of the last risk scan */
    /* the operator's actions: the newest in memory, all in the audit file */
    json_t *audit;
    FILE *audit_file;
    const server_metrics *metrics;
    int64_t started_ns;
    /* pushes raised while one command applies: sent after its own response, so a client sees
     * order_response before order_status, trade and account_update */
    reply *pending;
    size_t n_pending, cap_pending;
    int64_t now_ns; /* the time of the request being handled */
    bool answering_query;
    bool refusing; /* answering a command the journal could not take */
};

/* ---- replies ---- */

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void deliver(service *s, reply *r) {
    r->made_ns = mono_ns();
    /* Replies wait until the state they show is durable. While the journal cannot write, queries
     * are answered at once instead of waiting for the disk: the exchange stays readable, and what
     * they show is at most the commands accepted just before the failure, which the journal
     * still holds and retries. */
    r->seq = s->p ? persistence_last_seq(s->p) : 0;
    if (s->answering_query && s->p && persistence_failed(s->p, NULL, 0)) r->seq = 0;
    if (s->refusing) r->seq = 0; /* a refusal shows no state: it need not wait */
    /* the I/O thread drains the ring whenever woken; waiting here is back-pressure, bounded by
     * how fast it drains, never a lock */
    while (!spsc_push(&s->out, r)) {
        if (s->wake && atomic_exchange(&s->wake_pending, 1) == 0) s->wake(s->wake_ctx);
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
}

static void flush_wake(service *s) {
    if (s->wake && atomic_exchange(&s->wake_pending, 1) == 0) s->wake(s->wake_ctx);
}

/* Sends body (malloc'ed, len bytes; taken); NULL, a failed encoding, becomes an internal error
 * reply. */
static void send_body(service *s, const request *rq, reply_kind kind, int status, char *body,
                      size_t len) {
    reply r = {.conn_id = rq->conn_id,
               .kind = kind,
               .route = rq->route,
               .status = status,
               .body = body,
               .len = len};
    /* the account a DIFF login opened: if its session is gone when this arrives, the gateway
     * tells the engine to stop watching it */
    if (rq->route == ROUTE_DIFF_LOGIN) snprintf(r.topic, sizeof r.topic, "%s", rq->key);
    if (r.body == NULL) {
        static const char oom[] = "{\"success\":false,\"data\":null,\"error\":{\"code\":5003,"
                                  "\"message\":\"could not encode the response\"}}";
        r.body = strdup(oom);
        r.status = 500;
        if (r.body == NULL) return;
        r.len = strlen(r.body);
    }
    deliver(s, &r);
}

/* Encodes and frees `json`; a failed encoding becomes an internal error reply. */
static void send_json(service *s, const request *rq, reply_kind kind, int status, json_t *json) {
    char *body = json ? json_dumps(json, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(json);
    send_body(s, rq, kind, status, body, body ? strlen(body) : 0);
}

/* Sends the text t holds (t is left empty); a failed one becomes an internal error reply. */
static void send_text(service *s, const request *rq, reply_kind kind, int status, json_text *t) {
    size_t len;
    char *body = jt_take(t, &len);
    send_body(s, rq, kind, status, body, len);
}

static void reply_internal(service *s, const request *rq, json_t *body) {
    s->refusing = true; /* it shows no new state: it need not wait for the journal */
    send_json(s, rq, REPLY_INTERNAL, rq->purpose, body);
    s->refusing = false;
}

static void http_ok(service *s, const request *rq, json_t *data) {
    send_json(s, rq, REPLY_HTTP, 200, codec_envelope_ok(data));
}

static void http_error(service *s, const request *rq, int code, const char *message) {
    send_json(s, rq, REPLY_HTTP, codec_http_status(code), codec_envelope_error(code, message));
}

static void ws_send(service *s, const request *rq, json_t *msg) {
    if (msg && rq->req_id[0]) json_object_set_new(msg, "request_id", json_string(rq->req_id));
    send_json(s, rq, REPLY_WS, 200, msg);
}

static void ws_error(service *s, const request *rq, int code, const char *message) {
    ws_send(s, rq, codec_ws_error(code, message));
}

/* A new push of the command being applied, cleared; NULL when out of memory. */
static reply *pending_add(service *s) {
    if (s->n_pending == s->cap_pending) {
        size_t n = s->cap_pending ? s->cap_pending * 2 : 64;
        reply *p = realloc(s->pending, n * sizeof *p);
        if (p == NULL) return NULL;
        s->pending = p;
        s->cap_pending = n;
    }
    reply *r = &s->pending[s->n_pending++];
    memset(r, 0, sizeof *r);
    return r;
}

/* Queues body (malloc'ed, len bytes; taken) as a push sent after the command's response. */
static void queue_body(service *s, reply_kind kind, uint32_t channel, const char *topic, char *body,
                       size_t len) {
    if (body == NULL) return;
    reply *r = pending_add(s);
    if (r == NULL) {
        free(body);
        return;
    }
    r->kind = kind;
    r->channel = channel;
    snprintf(r->topic, sizeof r->topic, "%s", topic);
    r->body = body;
    r->len = len;
}

static void queue_push(service *s, reply_kind kind, uint32_t channel, const char *topic,
                       json_t *msg) {
    if (msg == NULL) return;
    char *body = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(msg);
    queue_body(s, kind, channel, topic, body, body ? strlen(body) : 0);
}

/* The hot pushes (order_status, trade, account_update: several per order) are written straight
 * to text by the codec instead of through a jansson tree; t is left empty. */
static void queue_push_text(service *s, reply_kind kind, uint32_t channel, const char *topic,
                            json_text *t) {
    size_t len;
    char *body = jt_take(t, &len);
    queue_body(s, kind, channel, topic, body, len);
}

/* The notification feed's sink: one push per notification, after the command's response. */
static void queue_note(void *ctx, notify_note *note) {
    service *s = ctx;
    reply *r = pending_add(s);
    if (r == NULL) {
        free(note->payload);
        return;
    }
    r->kind = REPLY_PUSH_ACCOUNT;
    r->channel = CHANNEL_NOTIFY;
    r->status = (int)note->type;
    snprintf(r->topic, sizeof r->topic, "%s", note->topic);
    r->body = note->payload;
    r->len = note->len;
    r->event_ns = note->event_ns;
    r->event_id = ++s->note_seq;
}

static void diff_flush(service *s);

static void flush_pushes(service *s) {
    diff_flush(s);
    for (size_t i = 0; i < s->n_pending; i++)
        deliver(s, &s->pending[i]);
    s->n_pending = 0;
}

/* ---- pushes from engine events ---- */

static int64_t ms_of(int64_t ns) {
    return ns / 1000000;
}

/* ---- DIFF ---- */

static bool diff_watching(const service *s, uint32_t account_slot) {
    return account_slot < s->cap_diff_watch && s->diff_watch[account_slot] > 0;
}

static int diff_watch(service *s, uint32_t slot, int delta) {
    if (slot >= s->cap_diff_watch) {
        uint32_t cap = s->cap_diff_watch ? s->cap_diff_watch : 64;
        while (cap <= slot)
            cap *= 2;
        uint32_t *w = realloc(s->diff_watch, cap * sizeof *w);
        if (w == NULL) return -1;
        memset(w + s->cap_diff_watch, 0, (cap - s->cap_diff_watch) * sizeof *w);
        uint32_t *list = realloc(s->diff_watched, cap * sizeof *list);
        if (list == NULL) {
            s->diff_watch = w;
            return -1;
        }
        s->diff_watch = w;
        s->diff_watched = list;
        s->cap_diff_watch = cap;
    }
    uint32_t before = s->diff_watch[slot];
    if (delta < 0 && before == 0) return 0;
    s->diff_watch[slot] = before + (uint32_t)delta;
    if (before == 0 && delta > 0) s->diff_watched[s->n_diff_watched++] = slot;
    if (before > 0 && s->diff_watch[slot] == 0)
        for (uint32_t i = 0; i < s->n_diff_watched; i++)
            if (s->diff_watched[i] == slot) {
                s->diff_watched[i] = s->diff_watched[--s->n_diff_watched];
                break;
            }
    atomic_store_explicit(&s->diff_watched_pub, s->n_diff_watched, memory_order_relaxed);
    return 0;
}

/* Sets section.key of the account's DIFF patch for this command (section NULL: key at the top:
 * accounts is {"CNY": ...}). Steals value. */
static void diff_put(service *s, const account *a, const char *section, const char *key,
                     json_t *value) {
    if (value == NULL) return;
    if (s->diff_accounts == NULL && (s->diff_accounts = json_object()) == NULL) {
        json_decref(value);
        return;
    }
    json_t *patch = json_object_get(s->diff_accounts, a->account_id);
    if (patch == NULL) {
        patch = json_object();
        if (patch == NULL || json_object_set_new(s->diff_accounts, a->account_id, patch) != 0) {
            json_decref(value);
            return;
        }
    }
    json_t *sec = json_object_get(patch, section);
    if (sec == NULL) {
        sec = json_object();
        if (sec == NULL || json_object_set_new(patch, section, sec) != 0) {
            json_decref(value);
            return;
        }
    }
    json_object_set_new(sec, key, value);
}

static void diff_put_account(service *s, const account *a) {
    diff_put(s, a, "accounts", "CNY", diff_account(s->e, a));
}

static void diff_put_position(service *s, const position *p) {
    const engine *e = s->e;
    const account *a = engine_account_of(e, p->account);
    diff_put(s, a, "positions", engine_instrument_of(e, p->instrument)->spec.instrument_id,
             diff_position(e, p));
}

/* A new price moves the position profit of every holder: watched accounts holding the
 * instrument get their account and position again, so a DIFF client never shows a stale
 * balance. */
static void diff_reprice(service *s, const instrument *ins) {
    const engine *e = s->e;
    for (uint32_t i = 0; i < s->n_diff_watched; i++) {
        const account *a = engine_account_of(e, s->diff_watched[i]);
        const position *p = a ? engine_position_find(e, a, ins) : NULL;
        if (p == NULL || (position_volume_long(p) == 0 && position_volume_short(p) == 0)) continue;
        diff_put_position(s, p);
        diff_put_account(s, a);
    }
}

/* The DIFF patches of the command, one push per account. */
static void diff_flush(service *s) {
    if (s->diff_accounts == NULL || json_object_size(s->diff_accounts) == 0) return;
    const char *id;
    json_t *patch;
    json_object_foreach(s->diff_accounts, id, patch) {
        queue_push(s, REPLY_PUSH_ACCOUNT, CHANNEL_DIFF_TRADE, id, json_incref(patch));
    }
    json_object_clear(s->diff_accounts);
}

/* A settlement starts a new trading day and drops the day's finished orders and trades from
 * memory. A merge patch cannot say "keep only these", so each watched account's client first
 * forgets its orders and trades, then gets what remains with the new trading day: its tree
 * stays what REST shows. The command's earlier patches go first, as they happened first. */
static void diff_new_day(service *s) {
    diff_flush(s);
    for (uint32_t i = 0; i < s->n_diff_watched; i++) {
        const account *a = engine_account_of(s->e, s->diff_watched[i]);
        queue_push(s, REPLY_PUSH_ACCOUNT, CHANNEL_DIFF_TRADE, a->account_id,
                   json_pack("{s:n, s:n}", "orders", "trades"));
        queue_push(s, REPLY_PUSH_ACCOUNT, CHANNEL_DIFF_TRADE, a->account_id,
                   diff_day_tree(s->e, a));
    }
}

/* The change from the quote last sent for an instrument to `now` (stolen), which becomes the
 * last sent. */
static json_t *diff_quote_delta(service *s, const char *id, json_t *now) {
    if (s->diff_quotes_sent == NULL && (s->diff_quotes_sent = json_object()) == NULL) {
        json_decref(now);
        return NULL;
    }
    json_t *last = json_object_get(s->diff_quotes_sent, id);
    json_t *patch = last ? merge_patch_diff(last, now) : json_incref(now);
    json_object_set_new(s->diff_quotes_sent, id, now);
    return patch;
}

static json_t *diff_notify(service *s, const char *level, int code, const char *content) {
    char key[32];
    snprintf(key, sizeof key, "E%llu", (unsigned long long)++s->notify_seq);
    return json_pack("{s:{s:s, s:s, s:i, s:s}}", key, "type", "MESSAGE", "level", level, "code",
                     code, "content", content);
}

static void on_event(void *ctx, const engine_event *ev) {
    service *s = ctx;
    if (ev->type == EV_TRADE && ev->trade->is_taker && s->metrics)
        metrics_counter_inc(s->metrics->trades);
    if (ev->type == EV_TICK) s->prices_moved = true;
    /* the feed learns of every change of the channels, a fall to none included: the risk bands
     * it followed are stale once nobody listened, and start again when someone does */
    uint32_t note_channels = atomic_load_explicit(&s->notify_channels, memory_order_relaxed);
    notify_feed_set_channels(s->notes, note_channels);
    if (atomic_load_explicit(&s->push_listeners, memory_order_relaxed) == 0) return;
    const engine *e = s->e;
    if (note_channels) notify_feed_event(s->notes, e, ev, s->now_ns);
    bool market = atomic_load_explicit(&s->market_listeners, memory_order_relaxed) > 0;
    if (s->n_diff_watched > 0) {
        switch (ev->type) {
            case EV_ORDER:
                if (diff_watching(s, ev->order->account))
                    diff_put(s, engine_account_of(e, ev->order->account), "orders",
                             ev->order->order_id, diff_order(e, ev->order));
                break;
            case EV_TRADE:
                if (diff_watching(s, ev->trade->account)) {
                    char key[32];
                    diff_trade_key(ev->trade, key, sizeof key);
                    diff_put(s, engine_account_of(e, ev->trade->account), "trades", key,
                             diff_trade(e, ev->trade));
                }
                break;
            case EV_POSITION:
                if (diff_watching(s, ev->position->account)) diff_put_position(s, ev->position);
                break;
            case EV_ACCOUNT: {
                uint32_t slot = (uint32_t)(ev->account - engine_account_at(e, 0));
                if (diff_watching(s, slot)) diff_put_account(s, ev->account);
                break;
            }
            case EV_TICK:
                diff_reprice(s, ev->instrument);
                break;
            case EV_SETTLEMENT:
                diff_new_day(s);
                break;
            default:
                break;
        }
    }
    if (ev->type == EV_BOOK &&
        atomic_load_explicit(&s->diff_quote_listeners, memory_order_relaxed) > 0) {
        /* only what changed since the last quote sent: a fill moves a few fields of forty */
        const char *id = ev->instrument->spec.instrument_id;
        json_t *now = diff_quote(e, ev->instrument, s->now_ns);
        json_t *patch = now ? diff_quote_delta(s, id, now) : NULL;
        if (patch && !merge_patch_is_empty(patch))
            queue_push(s, REPLY_PUSH_INSTRUMENT, CHANNEL_DIFF_QUOTE, id,
                       json_pack("{s:{s:o}}", "quotes", id, patch));
        else
            json_decref(patch);
    }
    if (ev->type == EV_TICK &&
        atomic_load_explicit(&s->diff_chart_listeners, memory_order_relaxed) > 0) {
        /* the bars in progress of every period: each session keeps the periods it charts */
        json_t *periods = json_object();
        for (int p = 0; periods && p < KLINE_PERIOD_COUNT; p++) {
            char key[32];
            snprintf(key, sizeof key, "%lld",
                     (long long)kline_period_seconds((kline_period)p) * 1000000000LL);
            json_object_set_new(periods, key, diff_kline_current(ev->instrument, (kline_period)p));
        }
        const char *id = ev->instrument->spec.instrument_id;
        queue_push(s, REPLY_PUSH_INSTRUMENT, CHANNEL_DIFF_KLINE, id,
                   periods ? json_pack("{s:{s:o}}", "klines", id, periods) : NULL);
    }
    switch (ev->type) {
        case EV_ORDER: {
            const order *o = ev->order;
            json_text text;
            jt_init(&text);
            codec_ws_order_status_text(&text, e, o);
            queue_push_text(s, REPLY_PUSH_ACCOUNT, CHANNEL_ORDER,
                            engine_account_of(e, o->account)->account_id, &text);
            break;
        }
        case EV_TRADE: {
            const trade *t = ev->trade;
            json_text text;
            jt_init(&text);
            codec_ws_trade_text(&text, e, t);
            queue_push_text(s, REPLY_PUSH_ACCOUNT, CHANNEL_TRADE,
                            engine_account_of(e, t->account)->account_id, &text);
            if (t->is_taker && market) {
                /* the public print, once per match, for the instrument's trade channel */
                const instrument *ins = engine_instrument_of(e, t->instrument);
                queue_push(s, REPLY_PUSH_INSTRUMENT, CHANNEL_TRADE, ins->spec.instrument_id,
                           json_pack("{s:s, s:s, s:f, s:I, s:s, s:I}", "type", "market_trade",
                                     "instrument_id", ins->spec.instrument_id, "price", t->price,
                                     "volume", (json_int_t)t->volume, "direction",
                                     direction_name(t->direction), "timestamp",
                                     (json_int_t)ms_of(t->trade_ns)));
            }
            break;
        }
        case EV_ACCOUNT: {
            json_text text;
            jt_init(&text);
            codec_ws_account_update_text(&text, e, ev->account, ms_of(s->now_ns));
            queue_push_text(s, REPLY_PUSH_ACCOUNT, CHANNEL_ACCOUNT, ev->account->account_id, &text);
            break;
        }
        case EV_BOOK: {
            if (!market) break;
            json_t *m = codec_orderbook(ev->instrument, BOOK_PUSH_DEPTH, s->now_ns);
            if (m) json_object_set_new(m, "type", json_string("orderbook"));
            queue_push(s, REPLY_PUSH_INSTRUMENT, CHANNEL_ORDERBOOK,
                       ev->instrument->spec.instrument_id, m);
            break;
        }
        /* a trade, and a change no trade shows (status, settlement price, the new day's
         * statistics and limits), which ticker subscribers would otherwise miss until one */
        case EV_TICK:
        case EV_INSTRUMENT: {
            if (!market) break;
            json_t *m = codec_market_snapshot(e, ev->instrument, s->now_ns);
            if (m) json_object_set_new(m, "type", json_string("ticker"));
            queue_push(s, REPLY_PUSH_INSTRUMENT, CHANNEL_TICKER, ev->instrument->spec.instrument_id,
                       m);
            break;
        }
        case EV_KLINE: {
            if (!market) break;
            json_t *m = codec_kline(ev->instrument, ev->kline_period, ev->kline, true);
            if (m) json_object_set_new(m, "type", json_string("kline"));
            queue_push(s, REPLY_PUSH_INSTRUMENT, CHANNEL_KLINE, ev->instrument->spec.instrument_id,
                       m);
            break;
        }
        default:
            break;
    }
}

/* ---- authorization ---- */

/* A refusal in the protocol the request came by. */
static void refuse(service *s, const request *rq, int code, const char *message) {
    s->refusing = true;
    if (rq->route >= ROUTE_DIFF_LOGIN)
        send_json(s, rq, REPLY_WS, codec_http_status(code),
                  json_pack("{s:o}", "notify", diff_notify(s, "ERROR", code, message)));
    else if (rq->route >= ROUTE_WS_AUTH)
        ws_error(s, rq, code, message);
    else
        http_error(s, rq, code, message);
    s->refusing = false;
}

/* True (and refused) when tokens are enforced and the asking user is neither the owner nor an
 * admin. */
static bool forbidden(service *s, const request *rq, const char *owner, const char *what) {
    if (!rq->auth_enforced || rq->auth_admin || strcmp(owner, rq->auth_user) == 0) return false;
    char msg[QAEX_MSG_LEN];
    snprintf(msg, sizeof msg, "%.120s does not belong to user %.64s", what, rq->auth_user);
    refuse(s, rq, CODEC_ERR_FORBIDDEN, msg);
    return true;
}

static bool admin_only(service *s, const request *rq, const char *what) {
    if (!rq->auth_enforced || rq->auth_admin) return false;
    char msg[QAEX_MSG_LEN];
    snprintf(msg, sizeof msg, "%.120s needs the admin role", what);
    refuse(s, rq, CODEC_ERR_FORBIDDEN, msg);
    return true;
}

/* Whether the asking user may run this command; refused (nothing journaled) when not. */
static bool command_allowed(service *s, const request *rq) {
    if (!rq->auth_enforced || rq->auth_admin) return true;
    const command *c = &rq->cmd;
    const char *acc_id = NULL;
    char what[QAEX_MSG_LEN];
    switch (c->type) {
        case CMD_ORDER_INSERT:
            acc_id = c->u.order.account_id;
            break;
        case CMD_ORDER_CANCEL:
            acc_id = c->u.cancel.account_id;
            break;
        case CMD_DEPOSIT:
        case CMD_WITHDRAW:
            acc_id = c->u.transfer.account_id;
            break;
        case CMD_ACCOUNT_OPEN:
            snprintf(what, sizeof what, "a new account of user %.64s", c->u.account_open.user_id);
            return !forbidden(s, rq, c->u.account_open.user_id, what);
        case CMD_USER_REGISTER:
            if (c->u.user.role != ROLE_ADMIN) return true;
            return !admin_only(s, rq, "registering an admin");
        default:
            return !admin_only(s, rq, "this operation");
    }
    const account *a = engine_account_find(s->e, acc_id);
    if (a == NULL) return true; /* the engine reports 1006 */
    snprintf(what, sizeof what, "account %.64s", a->account_id);
    return !forbidden(s, rq, a->user_id, what);
}

/* An order or cancel whose body names a user_id beside the account (rq->key2, see the gateway's
 * claimed_user): the seed's server "verifies that account_id belongs to user_id", so that a slip
 * cannot trade or cancel on another's account. With tokens the token's user is what counts
 * (command_allowed; an admin acts for others); without them the body's claim is all there is,
 * and it must name the owner, by id or username. False (and the 403 is sent) otherwise. */
static bool claimed_owner_ok(service *s, const request *rq) {
    if (rq->auth_enforced || rq->key2[0] == '\0') return true;
    if (rq->route != ROUTE_ORDER_SUBMIT && rq->route != ROUTE_ORDER_CANCEL) return true;
    const char *acc_id =
        rq->cmd.type == CMD_ORDER_INSERT ? rq->cmd.u.order.account_id : rq->cmd.u.cancel.account_id;
    const account *a = engine_account_find(s->e, acc_id);
    if (a == NULL || strcmp(a->user_id, rq->key2) == 0) return true; /* (the engine says 1006) */
    const user *u = engine_user_find(s->e, a->user_id);
    if (u && strcmp(u->username, rq->key2) == 0) return true;
    char msg[QAEX_MSG_LEN];
    snprintf(msg, sizeof msg, "account %.64s does not belong to user %.64s", a->account_id,
             rq->key2);
    http_error(s, rq, CODEC_ERR_FORBIDDEN, msg);
    return false;
}

static json_t *storage_json(service *s);

/* ---- queries ---- */

static const account *need_account(service *s, const request *rq, const char *id, bool ws) {
    const account *a = engine_account_find(s->e, id);
    if (a == NULL) {
        char msg[QAEX_MSG_LEN];
        snprintf(msg, sizeof msg, "account not found: %s", id);
        if (ws)
            ws_error(s, rq, ERR_ACCOUNT_NOT_FOUND, msg);
        else
            http_error(s, rq, ERR_ACCOUNT_NOT_FOUND, msg);
        return NULL;
    }
    char what[QAEX_MSG_LEN];
    snprintf(what, sizeof what, "account %.64s", a->account_id);
    return forbidden(s, rq, a->user_id, what) ? NULL : a;
}

static const instrument *need_instrument(service *s, const request *rq) {
    const instrument *ins = engine_instrument_find(s->e, rq->key);
    if (ins == NULL) {
        char msg[QAEX_MSG_LEN];
        snprintf(msg, sizeof msg, "instrument not found: %s", rq->key);
        http_error(s, rq, ERR_INSTRUMENT_NOT_FOUND, msg);
    }
    return ins;
}

static json_t *orders_json(const engine *e, const account *a) {
    json_t *arr = json_array();
    for (const order *o = engine_order_first(e, a); o && arr; o = engine_order_next(e, o))
        json_array_append_new(arr, codec_order(e, o));
    return arr;
}

/* The positions holding lots, of one instrument only when `only` is not NULL. */
static json_t *positions_json(const engine *e, const account *a, const instrument *only) {
    json_t *arr = json_array();
    for (uint32_t i = 0; arr; i++) {
        const position *p = engine_account_position(e, a, i);
        if (p == NULL) break;
        if (position_volume_long(p) + position_volume_short(p) == 0) continue;
        if (only && engine_instrument_of(e, p->instrument) != only) continue;
        json_array_append_new(arr, codec_position(e, p));
    }
    return arr;
}

/* The trading date (China time) of an epoch-ns timestamp, as YYYY-MM-DD. */
static void date_of(int64_t ns, char out[QAEX_DATE_LEN]) {
    time_t secs = (time_t)(ns / 1000000000LL) + 8 * 3600;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, QAEX_DATE_LEN, "%Y-%m-%d", &tm);
}

static json_t *trades_page(const engine *e, const account *a, const request *rq) {
    int64_t page = rq->num1 > 0 ? rq->num1 : 1;
    int64_t size = rq->num2 > 0 ? rq->num2 : 20;
    if (size > 1000) size = 1000;
    if (page > 1000000000) page = 1000000000; /* (page - 1) * size stays far from overflow */
    const instrument *filter = rq->key2[0] ? engine_instrument_find(e, rq->key2) : NULL;
    json_t *arr = json_array();
    int64_t total = 0, skip = (page - 1) * size;
    double volume = 0, commission = 0, profit = 0;
    /* newest first, as a trade blotter shows them */
    const trade **all = malloc((a->trades_count ? a->trades_count : 1) * sizeof *all);
    size_t n = 0;
    uint32_t filter_slot = filter ? (uint32_t)(filter - engine_instrument_at(e, 0)) : UINT32_MAX;
    for (const trade *t = engine_trade_first(e, a); t && all; t = engine_trade_next(e, t)) {
        if (rq->key2[0] && t->instrument != filter_slot) continue;
        char day[QAEX_DATE_LEN];
        date_of(t->trade_ns, day);
        if (rq->date_from[0] && strcmp(day, rq->date_from) < 0) continue;
        if (rq->date_to[0] && strcmp(day, rq->date_to) > 0) continue;
        all[n++] = t;
    }
    for (size_t i = n; i-- > 0;) {
        const trade *t = all[i];
        total++;
        volume += (double)t->volume;
        commission += t->commission;
        profit += t->close_profit;
        if (total > skip && total <= skip + size) json_array_append_new(arr, codec_trade(e, t));
    }
    free(all);
    return json_pack("{s:o, s:I, s:I, s:I, s:{s:f, s:f, s:f}}", "trades", arr, "total",
                     (json_int_t)total, "page", (json_int_t)page, "size", (json_int_t)size,
                     "summary", "volume", volume, "commission", commission, "close_profit", profit);
}

/* An insert_order the gateway could not read past its order id (a field missing or of the
 * wrong kind, rq->num1 the code, rq->extra the reason). DIFF clients show an order ALIVE from
 * the moment they send it, so it is closed: FINISHED with the reason, with only what is sure of
 * it. An id that names an order of the account leaves that order as it is: a notify only. */
static void diff_refused_insert(service *s, const request *rq) {
    const order_request *o = &rq->cmd.u.order;
    const char *why = rq->extra ? rq->extra : "invalid order";
    const account *a = engine_account_find(s->e, o->account_id);
    json_t *answer = json_pack("{s:o}", "notify", diff_notify(s, "ERROR", (int)rq->num1, why));
    if (answer && a && engine_order_find(s->e, a, o->order_id) == NULL)
        json_object_set_new(answer, "trade",
                            json_pack("{s:{s:{s:{s:s, s:s, s:s, s:I}}}}", rq->key2, "orders",
                                      o->order_id, "order_id", o->order_id, "status", "FINISHED",
                                      "last_msg", why, "insert_date_time", (json_int_t)s->now_ns));
    send_json(s, rq, REPLY_WS, codec_http_status((int)rq->num1), answer);
}

static void handle_query(service *s, const request *rq) {
    const engine *e = s->e;
    const account *a;
    switch (rq->route) {
        case ROUTE_ACCOUNT_GET:
            if ((a = need_account(s, rq, rq->key, false))) http_ok(s, rq, codec_account(e, a));
            break;
        case ROUTE_ACCOUNT_DETAIL:
            if ((a = need_account(s, rq, rq->key, false))) http_ok(s, rq, codec_qifi(e, a));
            break;
        case ROUTE_ACCOUNT_LIST:
        case ROUTE_USER_ACCOUNTS: {
            if (rq->route == ROUTE_USER_ACCOUNTS &&
                forbidden(s, rq, rq->key, "this user's accounts"))
                break;
            /* a user sees the accounts it owns; an admin (or open mode) sees all */
            bool mine_only = rq->auth_enforced && !rq->auth_admin;
            json_t *arr = json_array();
            for (uint32_t i = 0; i < engine_account_count(e) && arr; i++) {
                a = engine_account_at(e, i);
                if (rq->route == ROUTE_USER_ACCOUNTS && strcmp(a->user_id, rq->key) != 0) continue;
                if (mine_only && strcmp(a->user_id, rq->auth_user) != 0) continue;
                json_array_append_new(arr, codec_account(e, a));
            }
            http_ok(s, rq, arr);
            break;
        }
        case ROUTE_ORDER_GET: {
            const order *o = NULL;
            if (rq->key[0]) {
                a = engine_account_find(e, rq->key);
                o = a ? engine_order_find(e, a, rq->key2) : NULL;
            } else {
                o = engine_order_find_any(e, rq->key2);
            }
            if (o == NULL) {
                char msg[QAEX_MSG_LEN];
                snprintf(msg, sizeof msg, "order not found: %s", rq->key2);
                http_error(s, rq, ERR_ORDER_NOT_FOUND, msg);
            } else if (!forbidden(s, rq, engine_account_of(e, o->account)->user_id, "this order")) {
                http_ok(s, rq, codec_order(e, o));
            }
            break;
        }
        case ROUTE_ORDER_LIST:
            if ((a = need_account(s, rq, rq->key, false))) http_ok(s, rq, orders_json(e, a));
            break;
        case ROUTE_ORDER_TRADES:
        case ROUTE_TRADES_PAGE:
            if ((a = need_account(s, rq, rq->key, false))) {
                /* a filter naming no instrument is an error, as on the market routes: an empty
                 * page would read as "no trades in it" */
                if (rq->key2[0] && engine_instrument_find(e, rq->key2) == NULL) {
                    char msg[QAEX_MSG_LEN];
                    snprintf(msg, sizeof msg, "instrument not found: %s", rq->key2);
                    http_error(s, rq, ERR_INSTRUMENT_NOT_FOUND, msg);
                    break;
                }
                json_t *page = trades_page(e, a, rq);
                if (rq->route == ROUTE_ORDER_TRADES && page) {
                    json_t *list = json_incref(json_object_get(page, "trades"));
                    json_decref(page);
                    page = list;
                }
                http_ok(s, rq, page);
            }
            break;
        case ROUTE_POSITIONS:
            if ((a = need_account(s, rq, rq->key, false)))
                http_ok(s, rq, positions_json(e, a, NULL));
            break;
        case ROUTE_INSTRUMENTS: {
            json_t *arr = json_array();
            for (uint32_t i = 0; i < engine_instrument_count(e) && arr; i++)
                json_array_append_new(arr, codec_instrument(e, engine_instrument_at(e, i)));
            http_ok(s, rq, arr);
            break;
        }
        case ROUTE_TICK: {
            const instrument *ins = need_instrument(s, rq);
            if (ins) http_ok(s, rq, codec_market_snapshot(e, ins, s->now_ns));
            break;
        }
        case ROUTE_ORDERBOOK: {
            const instrument *ins = need_instrument(s, rq);
            int depth = rq->num1 > 0 ? (int)(rq->num1 > 50 ? 50 : rq->num1) : 5;
            if (ins) http_ok(s, rq, codec_orderbook(ins, depth, s->now_ns));
            break;
        }
        case ROUTE_RECENT_TRADES: {
            const instrument *ins = need_instrument(s, rq);
            if (ins) http_ok(s, rq, codec_recent_trades(ins, rq->num2 > 0 ? rq->num2 : 100));
            break;
        }
        case ROUTE_TRANSACTIONS: {
            const instrument *only = NULL;
            if (rq->key[0] && (only = need_instrument(s, rq)) == NULL) break;
            http_ok(s, rq, codec_transactions(e, only, rq->num2 > 0 ? rq->num2 : 100));
            break;
        }
        case ROUTE_ORDER_STATS:
            http_ok(s, rq, codec_order_stats(e));
            break;
        case ROUTE_KLINES: {
            const instrument *ins = need_instrument(s, rq);
            if (ins)
                http_ok(s, rq,
                        codec_klines(ins, (kline_period)rq->num1, rq->num2 > 0 ? rq->num2 : 100,
                                     rq->start_ms, rq->end_ms));
            break;
        }
        case ROUTE_AUTH_USER: {
            const user *u = engine_user_find(e, rq->key);
            if (u == NULL) {
                char msg[QAEX_MSG_LEN];
                snprintf(msg, sizeof msg, "user not found: %s", rq->key);
                http_error(s, rq, CODEC_ERR_NOT_FOUND, msg);
            } else if (!forbidden(s, rq, u->user_id, "this user")) {
                http_ok(s, rq, codec_user(e, u, true));
            }
            break;
        }
        case ROUTE_AUTH_LOOKUP: { /* a username, or an account standing for its owner */
            const user *u = engine_user_find_by_name(e, rq->key);
            const account *acc = u ? NULL : engine_account_find(e, rq->key);
            if (acc) u = engine_user_find(e, acc->user_id);
            for (uint32_t i = 0; u && !acc && i < engine_account_count(e); i++)
                if (strcmp(engine_account_at(e, i)->user_id, u->user_id) == 0)
                    acc = engine_account_at(e, i);
            reply_internal(s, rq,
                           u ? json_pack("{s:b, s:s, s:s, s:s, s:s, s:s}", "found", 1, "user_id",
                                         u->user_id, "username", u->username, "role",
                                         user_role_name(u->role), "hash", u->password_hash,
                                         "account_id", acc ? acc->account_id : "")
                             : json_pack("{s:b}", "found", 0));
            break;
        }
        case ROUTE_WS_AUTH: { /* may this token's user act on the account? */
            a = engine_account_find(e, rq->key);
            bool ok = a && (!rq->auth_enforced || rq->auth_admin ||
                            strcmp(a->user_id, rq->auth_user) == 0);
            char msg[QAEX_MSG_LEN];
            snprintf(msg, sizeof msg, "%s",
                     ok  ? "Authentication successful"
                     : a ? "this account belongs to another user"
                         : "account not found");
            reply_internal(
                s, rq,
                json_pack("{s:b, s:s, s:s}", "ok", ok, "account_id", rq->key, "message", msg));
            break;
        }
        case ROUTE_DIFF_LOGIN: {
            a = engine_account_find(e, rq->key);
            if (a == NULL) {
                char msg[QAEX_MSG_LEN];
                snprintf(msg, sizeof msg, "login failed: account not found: %s", rq->key);
                send_json(
                    s, rq, REPLY_WS, 404,
                    json_pack("{s:o}", "notify", diff_notify(s, "ERROR", ERR_AUTH_FAILED, msg)));
                break;
            }
            if (forbidden(s, rq, a->user_id, "this account")) break;
            diff_watch(s, (uint32_t)(a - engine_account_at(e, 0)), +1);
            json_t *tree = diff_trade_tree(e, a, rq->key2);
            send_json(s, rq, REPLY_WS, 200,
                      tree ? json_pack("{s:{s:o}, s:o}", "trade", rq->key2, tree, "notify",
                                       diff_notify(s, "INFO", 1000, "login ok"))
                           : NULL);
            break;
        }
        case ROUTE_DIFF_INSERT: /* refused by the gateway: only its order id is known */
            diff_refused_insert(s, rq);
            free(rq->extra);
            break;
        case ROUTE_DIFF_LOGOUT:
            if ((a = engine_account_find(e, rq->key)))
                diff_watch(s, (uint32_t)(a - engine_account_at(e, 0)), -1);
            break;
        case ROUTE_DIFF_QUOTE: {
            const instrument *ins = engine_instrument_find(e, rq->key);
            char msg[QAEX_MSG_LEN];
            snprintf(msg, sizeof msg, "instrument not found: %s", rq->key);
            json_t *full = ins ? diff_quote(e, ins, s->now_ns) : NULL;
            /* later deltas are measured from this quote, which the new session now holds */
            if (full)
                json_decref(diff_quote_delta(s, ins->spec.instrument_id, json_deep_copy(full)));
            send_json(s, rq, REPLY_WS, ins ? 200 : 404,
                      ins ? json_pack("{s:{s:o}}", "quotes", rq->key, full)
                          : json_pack("{s:o}", "notify",
                                      diff_notify(s, "ERROR", ERR_INSTRUMENT_NOT_FOUND, msg)));
            break;
        }
        case ROUTE_DIFF_CHART: {
            const instrument *ins = engine_instrument_find(e, rq->key);
            if (ins == NULL) {
                char msg[QAEX_MSG_LEN];
                snprintf(msg, sizeof msg, "instrument not found: %s", rq->key);
                send_json(s, rq, REPLY_WS, 404,
                          json_pack("{s:o}", "notify",
                                    diff_notify(s, "ERROR", ERR_INSTRUMENT_NOT_FOUND, msg)));
                break;
            }
            int64_t left, right;
            kline_period p = (kline_period)rq->num1;
            json_t *bars = diff_klines(ins, p, rq->num2, &left, &right);
            char dur[32];
            snprintf(dur, sizeof dur, "%lld", (long long)kline_period_seconds(p) * 1000000000LL);
            send_json(s, rq, REPLY_WS, 200,
                      bars ? json_pack("{s:{s:{s:o}}, s:{s:{s:I, s:I, s:b, s:b}}}", "klines",
                                       rq->key, dur, bars, "charts", rq->req_id, "left_id",
                                       (json_int_t)left, "right_id", (json_int_t)right, "more_data",
                                       0, "ready", 1)
                           : NULL);
            break;
        }
        case ROUTE_ADMIN_SETTLEMENTS:
            http_ok(s, rq, admin_settlement_history(e, rq->date_from, rq->date_to));
            break;
        case ROUTE_ADMIN_SETTLEMENT_DETAIL: {
            const settlement_result *sr = engine_settlement_find(e, rq->key);
            if (sr == NULL) {
                char msg[QAEX_MSG_LEN];
                snprintf(msg, sizeof msg, "no settlement on %s", rq->key);
                http_error(s, rq, CODEC_ERR_NOT_FOUND, msg);
            } else {
                http_ok(s, rq, admin_settlement(sr, true));
            }
            break;
        }
        case ROUTE_ADMIN_RISK_ACCOUNTS:
            http_ok(s, rq, admin_risk_accounts(e, rq->key2, rq->key));
            break;
        case ROUTE_ADMIN_MARGIN_SUMMARY:
            http_ok(s, rq, admin_margin_summary(e));
            break;
        case ROUTE_ADMIN_LIQUIDATIONS:
            http_ok(s, rq, admin_liquidations(e, rq->date_from, rq->date_to));
            break;
        case ROUTE_ADMIN_TRANSACTIONS:
            http_ok(s, rq,
                    admin_transactions(e, rq->key, rq->key2, rq->date_from, rq->date_to, rq->num2));
            break;
        case ROUTE_ADMIN_AUDIT: {
            json_t *arr = json_array();
            size_t n = s->audit ? json_array_size(s->audit) : 0;
            for (size_t i = n;
                 arr && i-- > 0 && (rq->num2 <= 0 || json_array_size(arr) < (size_t)rq->num2);)
                json_array_append(arr, json_array_get(s->audit, i));
            http_ok(s, rq, arr);
            break;
        }
        case ROUTE_MON_ACCOUNTS:
            http_ok(s, rq, monitor_accounts(e));
            break;
        case ROUTE_MON_ORDERS:
            http_ok(s, rq, monitor_orders(e));
            break;
        case ROUTE_MON_TRADES:
            http_ok(s, rq, monitor_trades(e));
            break;
        case ROUTE_MON_STORAGE: {
            json_t *st = storage_json(s);
            if (rq->extra) { /* the history store's stats, gathered on the query thread */
                json_t *h = json_loads(rq->extra, 0, NULL);
                free(rq->extra);
                if (st)
                    json_object_set_new(st, "history", h ? h : json_null());
                else
                    json_decref(h);
            }
            http_ok(s, rq, st);
            break;
        }
        case ROUTE_HISTORY_ACCESS: { /* before a history query of an account */
            a = engine_account_find(e, rq->key);
            int code = 0;
            char msg[QAEX_MSG_LEN] = "";
            if (a == NULL) {
                code = ERR_ACCOUNT_NOT_FOUND;
                snprintf(msg, sizeof msg, "account not found: %s", rq->key);
            } else if (rq->auth_enforced && !rq->auth_admin &&
                       strcmp(a->user_id, rq->auth_user) != 0) {
                code = CODEC_ERR_FORBIDDEN;
                snprintf(msg, sizeof msg, "account %.64s does not belong to user %.64s",
                         a->account_id, rq->auth_user);
            }
            const instrument *ins = rq->key2[0] ? engine_instrument_find(e, rq->key2) : NULL;
            if (code == 0 && rq->key2[0] && ins == NULL) { /* as the engine-memory page says */
                code = ERR_INSTRUMENT_NOT_FOUND;
                snprintf(msg, sizeof msg, "instrument not found: %s", rq->key2);
            }
            reply_internal(s, rq,
                           json_pack("{s:i, s:s, s:s, s:I}", "code", code, "message", msg,
                                     "instrument_id", ins ? ins->spec.instrument_id : rq->key2,
                                     "seq", (json_int_t)(s->p ? persistence_last_seq(s->p) : 0)));
            break;
        }
        case ROUTE_MON_REPORT: {
            char hash[24], id[32] = "RPT";
            snprintf(hash, sizeof hash, "%016llx", (unsigned long long)engine_state_hash(e));
            /* the seed's report_id: RPT + the China-time moment it was made, YYYYMMDDhhmmss */
            time_t secs = (time_t)(s->now_ns / 1000000000LL) + 8 * 3600;
            struct tm tm;
            if (gmtime_r(&secs, &tm)) strftime(id + 3, sizeof id - 3, "%Y%m%d%H%M%S", &tm);
            http_ok(s, rq,
                    json_pack("{s:s, s:I, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o}", "report_id", id,
                              "generated_at", (json_int_t)(s->now_ns / 1000000), "trading_day",
                              engine_trading_day(e), "state_hash", hash, "uptime_secs",
                              (json_int_t)((s->now_ns - s->started_ns) / 1000000000LL), "accounts",
                              monitor_accounts(e), "orders", monitor_orders(e), "trades",
                              monitor_trades(e), "risk", admin_margin_summary(e), "storage",
                              storage_json(s)));
            break;
        }
        case ROUTE_SYMBOLS: /* the bare document, as DIFF clients download it */
            send_json(s, rq, REPLY_HTTP, 200, codec_symbols(e));
            break;
        case ROUTE_STATE: {
            char hash[24];
            snprintf(hash, sizeof hash, "%016llx", (unsigned long long)engine_state_hash(e));
            json_t *data =
                json_pack("{s:s, s:s, s:I, s:I, s:I}", "state_hash", hash, "trading_day",
                          engine_trading_day(e), "accounts", (json_int_t)engine_account_count(e),
                          "last_seq", (json_int_t)(s->p ? persistence_last_seq(s->p) : 0),
                          "durable_seq", (json_int_t)(s->p ? persistence_durable_seq(s->p) : 0));
            http_ok(s, rq, data);
            break;
        }
        case ROUTE_WS_QUERY_ACCOUNT:
        case ROUTE_WS_QUERY_ORDERS:
        case ROUTE_WS_QUERY_POSITIONS:
        case ROUTE_WS_QUERY_ORDER: {
            if ((a = need_account(s, rq, rq->key, true)) == NULL) break;
            json_t *data;
            const char *what;
            if (rq->route == ROUTE_WS_QUERY_ACCOUNT) {
                data = codec_account(e, a);
                what = "account";
            } else if (rq->route == ROUTE_WS_QUERY_ORDERS) {
                data = orders_json(e, a);
                what = "orders";
            } else if (rq->route == ROUTE_WS_QUERY_POSITIONS) {
                /* instrument_id (optional) narrows the answer to that instrument */
                const instrument *only = rq->key2[0] ? engine_instrument_find(e, rq->key2) : NULL;
                if (rq->key2[0] && only == NULL) {
                    char msg[QAEX_MSG_LEN];
                    snprintf(msg, sizeof msg, "instrument not found: %s", rq->key2);
                    ws_error(s, rq, ERR_INSTRUMENT_NOT_FOUND, msg);
                    break;
                }
                data = positions_json(e, a, only);
                what = "positions";
            } else {
                const order *o = engine_order_find(e, a, rq->key2);
                if (o == NULL) {
                    char msg[QAEX_MSG_LEN];
                    snprintf(msg, sizeof msg, "order not found: %s", rq->key2);
                    ws_error(s, rq, ERR_ORDER_NOT_FOUND, msg);
                    break;
                }
                data = codec_order(e, o);
                what = "order";
            }
            ws_send(s, rq,
                    json_pack("{s:s, s:b, s:s, s:o}", "type", "query_response", "success", 1,
                              "query", what, "data", data ? data : json_null()));
            break;
        }
        case ROUTE_WS_SNAPSHOT: {
            const instrument *ins = engine_instrument_find(e, rq->key);
            if (ins == NULL) break;
            json_t *m = codec_orderbook(ins, BOOK_PUSH_DEPTH, s->now_ns);
            if (m) json_object_set_new(m, "type", json_string("orderbook"));
            ws_send(s, rq, m);
            m = codec_market_snapshot(e, ins, s->now_ns);
            if (m) json_object_set_new(m, "type", json_string("ticker"));
            ws_send(s, rq, m);
            break;
        }
        default:
            http_error(s, rq, ERR_INTERNAL, "unrouted request");
            break;
    }
}

/* ---- the operator's side ---- */

#define AUDIT_KEPT 10000

static void audit(service *s, const request *rq, int rc, const char *message) {
    if (rq->action[0] == '\0') return;
    json_t *entry =
        json_pack("{s:I, s:s, s:s, s:s, s:i, s:s}", "timestamp", (json_int_t)(s->now_ns / 1000000),
                  "user", rq->auth_user[0] ? rq->auth_user : "(open mode)", "action", rq->action,
                  "target", rq->key, "code", rc, "message", message);
    if (entry == NULL) return;
    if (s->audit_file) {
        char *line = json_dumps(entry, JSON_COMPACT);
        if (line) {
            fprintf(s->audit_file, "%s\n", line);
            fflush(s->audit_file);
            free(line);
        }
    }
    if (s->audit == NULL) s->audit = json_array();
    if (s->audit == NULL || json_array_append_new(s->audit, entry) != 0) return;
    if (json_array_size(s->audit) > AUDIT_KEPT) json_array_remove(s->audit, 0);
}

/* Sizes of the data directory: journal segments, snapshots, the rest. */
typedef struct storage_sizes {
    json_int_t wal, wal_files, snaps, snap_files, other;
} storage_sizes;

static void scan_dir(const char *dir, int depth, storage_sizes *z) {
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[1400];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && depth < 2) {
            scan_dir(path, depth + 1, z);
            continue;
        }
        if (!S_ISREG(st.st_mode)) continue;
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".wal") == 0) {
            z->wal += st.st_size;
            z->wal_files++;
        } else if (strncmp(de->d_name, "snapshot-", 9) == 0) {
            z->snaps += st.st_size;
            z->snap_files++;
        } else {
            z->other += st.st_size;
        }
    }
    if (d) closedir(d);
}

static json_t *storage_json(service *s) {
    storage_sizes z = {0};
    const char *dir = s->p ? persistence_dir(s->p) : NULL;
    if (dir) scan_dir(dir, 0, &z);
    return json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "enabled", s->p != NULL,
                     "data_dir", dir ? dir : "", "wal_size", z.wal, "wal_files", z.wal_files,
                     "snapshot_size", z.snaps, "snapshot_files", z.snap_files, "other_size",
                     z.other, "last_seq", (json_int_t)(s->p ? persistence_last_seq(s->p) : 0),
                     "durable_seq", (json_int_t)(s->p ? persistence_durable_seq(s->p) : 0));
}

/* The answer to an operator's command, by what it changed. */
static json_t *admin_command_json(service *s, const request *rq, const engine_result *res) {
    const engine *e = s->e;
    const command *c = &rq->cmd;
    switch (c->type) {
        case CMD_INSTRUMENT_ADD:
        case CMD_INSTRUMENT_UPDATE:
            return codec_instrument(e,
                                    engine_instrument_find(e, c->u.instrument.spec.instrument_id));
        case CMD_INSTRUMENT_SUSPEND:
        case CMD_INSTRUMENT_RESUME:
        case CMD_INSTRUMENT_DELIST:
            return codec_instrument(e,
                                    engine_instrument_find(e, c->u.instrument_ref.instrument_id));
        case CMD_SETTLEMENT_SET_PRICE:
            return json_pack("{s:s, s:f}", "instrument_id", c->u.settlement_price.instrument_id,
                             "settlement_price", c->u.settlement_price.price);
        case CMD_SETTLEMENT_EXECUTE:
            return admin_settlement(engine_settlement_at(e, engine_settlement_count(e) - 1), true);
        case CMD_ACCOUNT_FREEZE:
        case CMD_ACCOUNT_UNFREEZE:
            return codec_account(e, engine_account_of(e, res->account));
        case CMD_DEPOSIT:
        case CMD_WITHDRAW: {
            json_t *list = admin_transactions(e, c->u.transfer.account_id, "", "", "", 1);
            json_t *one = json_incref(json_array_get(list, 0));
            json_decref(list);
            return one;
        }
        default:
            return json_object();
    }
}

/* A batch of settlement prices: every price is checked first, so either all are set or none. */
static void admin_batch_prices(service *s, const request *rq) {
    const admin_price *prices = rq->extra;
    char msg[QAEX_MSG_LEN] = "";
    int rc = QAEX_OK;
    for (uint32_t i = 0; i < rq->n_extra && rc == QAEX_OK; i++) {
        const instrument *ins = engine_instrument_find(s->e, prices[i].instrument_id);
        if (ins == NULL) {
            rc = ERR_INSTRUMENT_NOT_FOUND;
            snprintf(msg, sizeof msg, "instrument not found: %s", prices[i].instrument_id);
        } else if (!(prices[i].price > 0) || prices[i].price > 1e12) {
            rc = ERR_INVALID_ORDER; /* what set-price (settlement_set_price) answers */
            snprintf(msg, sizeof msg, "settlement price of %s must be positive, got %g",
                     prices[i].instrument_id, prices[i].price);
        } else {
            /* the engine's own check (settlement_set_price), made before anything is applied */
            instrument_spec next = ins->spec;
            next.pre_settlement = prices[i].price;
            char why[160];
            if (instrument_spec_validate(&next, why, sizeof why) != QAEX_OK) {
                rc = ERR_INVALID_ORDER;
                snprintf(msg, sizeof msg, "settlement price %g of %.40s refused: %s",
                         prices[i].price, prices[i].instrument_id, why);
            }
        }
    }
    json_t *done = json_array();
    for (uint32_t i = 0; i < rq->n_extra && rc == QAEX_OK; i++) {
        command c;
        memset(&c, 0, sizeof c);
        c.type = CMD_SETTLEMENT_SET_PRICE;
        c.ts_ns = rq->cmd.ts_ns;
        snprintf(c.u.settlement_price.instrument_id, sizeof c.u.settlement_price.instrument_id,
                 "%s", prices[i].instrument_id);
        c.u.settlement_price.price = prices[i].price;
        engine_result res;
        uint64_t seq;
        if (s->p && persistence_log(s->p, &c, &seq, msg, sizeof msg) != 0)
            rc = ERR_STORAGE;
        else
            rc = engine_apply(s->e, &c, &res);
        if (rc != QAEX_OK && rc != ERR_STORAGE) snprintf(msg, sizeof msg, "%s", res.message);
        if (rc != QAEX_OK && i > 0) {
            /* the journal failed between two records of the batch (it takes them in memory, so
             * only a failure of its writer meanwhile does this): say what stands, since a set
             * price is not taken back and the same batch sent again sets the rest */
            size_t used = strlen(msg);
            snprintf(msg + used, sizeof msg - used,
                     "; %u of %u prices were set before this (the first %u of the batch, up to "
                     "%.40s): send the batch again to set the rest",
                     i, rq->n_extra, i, prices[i - 1].instrument_id);
        }
        if (rc == QAEX_OK && done)
            json_array_append_new(done,
                                  json_pack("{s:s, s:f}", "instrument_id", prices[i].instrument_id,
                                            "settlement_price", prices[i].price));
    }
    free(rq->extra);
    audit(s, rq, rc, rc == QAEX_OK ? "ok" : msg);
    if (rc == QAEX_OK)
        http_ok(s, rq,
                json_pack("{s:o, s:I}", "prices", done ? done : json_array(), "count",
                          (json_int_t)rq->n_extra));
    else {
        json_decref(done);
        s->refusing = rc == ERR_STORAGE;
        http_error(s, rq, rc, msg);
        s->refusing = false;
    }
    flush_pushes(s);
}

/* ---- commands ---- */

/* DIFF answers a command only when it failed (the pushes show a success), except transfers,
 * which have no order to show. A refused order still appears, FINISHED with the reason, so the
 * client's own ALIVE placeholder of it is closed. */
static void diff_command_reply(service *s, const request *rq, int rc, const char *message) {
    bool ok = rc == QAEX_OK;
    s->refusing = rc == ERR_STORAGE;
    if (rq->route == ROUTE_DIFF_TRANSFER) {
        send_json(s, rq, REPLY_WS, ok ? 200 : 422,
                  json_pack("{s:o}", "notify",
                            diff_notify(s, ok ? "INFO" : "ERROR", ok ? 0 : rc,
                                        ok ? "transfer ok" : message)));
    } else if (!ok && rq->route == ROUTE_DIFF_INSERT && rc != ERR_SUBMIT_FAILED) {
        /* (3003, a duplicate id: the id names the live order, which must stay as it is) */
        const order_request *o = &rq->cmd.u.order;
        const instrument *ins = engine_instrument_find(s->e, o->instrument_id);
        const char *dot = strchr(o->instrument_id, '.');
        json_t *refused =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:f, s:s, s:s, s:I, s:s, s:s}",
                      "order_id", o->order_id, "exchange_id", ins ? ins->spec.exchange : "",
                      "instrument_id", ins ? ins->code : (dot ? dot + 1 : o->instrument_id),
                      "direction", direction_name(o->direction), "offset", offset_name(o->offset),
                      "volume_orign", (json_int_t)o->volume, "volume_left", (json_int_t)o->volume,
                      "price_type", price_type_name(o->price_type), "limit_price", o->limit_price,
                      "volume_condition", volume_condition_name(o->volume_condition),
                      "time_condition", time_condition_name(o->time_condition), "insert_date_time",
                      (json_int_t)rq->cmd.ts_ns, "status", "FINISHED", "last_msg", message);
        send_json(s, rq, REPLY_WS, codec_http_status(rc),
                  json_pack("{s:{s:{s:{s:o}}}, s:o}", "trade", rq->key2, "orders", o->order_id,
                            refused, "notify", diff_notify(s, "ERROR", rc, message)));
    } else if (!ok) {
        send_json(s, rq, REPLY_WS, codec_http_status(rc),
                  json_pack("{s:o}", "notify", diff_notify(s, "ERROR", rc, message)));
    }
    s->refusing = false;
}

static int64_t wall_ns(void);

static void handle_command(service *s, const request *rq) {
    engine_result res;
    uint64_t seq;
    int rc;
    if (!command_allowed(s, rq)) {
        if (rq->route == ROUTE_ADMIN_BATCH_PRICES) free(rq->extra);
        audit(s, rq, CODEC_ERR_FORBIDDEN, "forbidden");
        flush_pushes(s);
        return;
    }
    if (!claimed_owner_ok(s, rq)) {
        flush_pushes(s);
        return;
    }
    if (rq->route == ROUTE_ADMIN_BATCH_PRICES) {
        admin_batch_prices(s, rq);
        return;
    }
    /* write-ahead: the command is in the journal before the engine sees it, or it is refused */
    int64_t t0 = mono_ns();
    if (s->p && persistence_log(s->p, &rq->cmd, &seq, res.message, sizeof res.message) != 0)
        rc = ERR_STORAGE;
    else
        rc = engine_apply(s->e, &rq->cmd, &res);
    const server_metrics *sm = s->metrics;
    if (sm && rq->route != ROUTE_CLOCK) { /* the engine thread's own clock is not traffic */
        metrics_counter_inc(sm->commands);
        if (rq->cmd.type == CMD_ORDER_INSERT) {
            metrics_counter_inc(rc == QAEX_OK ? sm->orders_accepted : sm->orders_rejected);
            metrics_histogram_observe_ns(sm->matching, (uint64_t)(mono_ns() - t0));
            int64_t waited = wall_ns() - rq->cmd.ts_ns;
            if (waited > 0) metrics_histogram_observe_ns(sm->order_latency, (uint64_t)waited);
        }
        metrics_gauge_set(sm->accounts, engine_account_count(s->e));
        metrics_gauge_set(sm->users, engine_user_count(s->e));
    }
    const engine *e = s->e;
    bool ws = rq->route >= ROUTE_WS_AUTH;
    if (rc != QAEX_OK && rc != ERR_STORAGE && rq->cmd.type == CMD_ORDER_INSERT &&
        atomic_load_explicit(&s->notify_channels, memory_order_relaxed)) {
        notify_feed_set_channels(s->notes, atomic_load(&s->notify_channels));
        notify_feed_rejected(s->notes, &rq->cmd.u.order, rc, res.message, rq->cmd.ts_ns);
    }
    if (rq->route == ROUTE_CLOCK) { /* nobody asked: only the pushes of closed bars go out */
        flush_pushes(s);
        return;
    }
    if (rq->route >= ROUTE_DIFF_LOGIN) {
        diff_command_reply(s, rq, rc, res.message);
        flush_pushes(s);
        return;
    }
    if (rc != QAEX_OK) {
        audit(s, rq, rc, res.message);
        s->refusing = rc == ERR_STORAGE;
        int status = codec_command_http_status(rq->cmd.type, rc);
        /* a valid instrument the engine refused is one that exists already: the request meets
         * the state, as a second suspend does, so 409 (SPEC 5), not 400 */
        if (rq->cmd.type == CMD_INSTRUMENT_ADD && rc == ERR_INVALID_ORDER) {
            char why[160];
            if (instrument_spec_validate(&rq->cmd.u.instrument.spec, why, sizeof why) == QAEX_OK)
                status = 409;
        }
        if (ws)
            ws_send(s, rq, codec_ws_order_response(rc, NULL, res.message));
        else
            send_json(s, rq, REPLY_HTTP, status, codec_envelope_error(rc, res.message));
        s->refusing = false;
        flush_pushes(s);
        return;
    }
    audit(s, rq, rc, rc == QAEX_OK ? "ok" : res.message);
    const account *a = res.account != SLOT_NONE ? engine_account_of(e, res.account) : NULL;
    const order *o = res.order != SLOT_NONE ? engine_order_at(e, res.order) : NULL;
    switch (rq->route) {
        case ROUTE_ADMIN_COMMAND:
            http_ok(s, rq, admin_command_json(s, rq, &res));
            break;
        case ROUTE_ACCOUNT_OPEN:
            http_ok(s, rq, json_pack("{s:s}", "account_id", a->account_id));
            break;
        case ROUTE_USER_ACCOUNT_CREATE:
            http_ok(s, rq, codec_account(e, a));
            break;
        case ROUTE_AUTH_REGISTER: {
            const user *u = engine_user_find(e, rq->cmd.u.user.user_id);
            http_ok(s, rq, u ? codec_user(e, u, true) : NULL);
            break;
        }
        case ROUTE_DEPOSIT:
        case ROUTE_WITHDRAW: {
            json_t *data = codec_account(e, a);
            if (data) json_object_set_new(data, "transaction_id", json_string(res.txn_id));
            http_ok(s, rq, data);
            break;
        }
        case ROUTE_ORDER_SUBMIT:
        case ROUTE_ORDER_CANCEL: {
            /* the busiest answers: written as text, the same bytes as http_ok(codec_order) */
            json_text text;
            jt_init(&text);
            codec_envelope_ok_open(&text);
            codec_order_text(&text, e, o);
            codec_envelope_ok_close(&text);
            send_text(s, rq, REPLY_HTTP, 200, &text);
            break;
        }
        case ROUTE_WS_SUBMIT:
        case ROUTE_WS_CANCEL: {
            /* as ws_send(codec_ws_order_response + status), written as text */
            json_text text;
            jt_init(&text);
            json_builder b = jb_text(&text);
            codec_put_ws_order_response(&b, 0, o->order_id,
                                        rq->route == ROUTE_WS_SUBMIT ? "Order submitted"
                                                                     : "Order cancelled");
            jb_str(&b, "status", order_status_name(o->status));
            if (rq->req_id[0]) jb_str(&b, "request_id", rq->req_id);
            jb_end(&b);
            send_text(s, rq, REPLY_WS, 200, &text);
            break;
        }
        default:
            http_ok(s, rq, json_object());
            break;
    }
    flush_pushes(s);
}

static int64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void service_handle(service *s, const request *rq) {
    s->now_ns = rq->cmd.type ? rq->cmd.ts_ns : wall_ns();
    if (rq->cmd.type != 0) {
        handle_command(s, rq);
    } else {
        s->answering_query = true;
        handle_query(s, rq);
        s->answering_query = false;
    }
}

/* ---- the thread ---- */

/* K-line bars close on time even when nothing trades: once a bar's end has passed, the engine
 * thread applies a CMD_CLOCK of its own, journaled like any command so a replay closes the same
 * bars at the same moment. */
static void tick_clock(service *s) {
    int64_t now = wall_ns();
    if (now / 1000000 < engine_next_bar_close_ms(s->e)) return;
    request rq = {.route = ROUTE_CLOCK};
    rq.cmd.type = CMD_CLOCK;
    rq.cmd.ts_ns = now;
    service_handle(s, &rq);
    flush_wake(s);
}

/* A price move changes the risk of every holder, not only of the accounts that traded: after
 * trades, at most every 100 ms (and within the 200 ms idle wake-up), holders are checked for
 * margin calls. Notifications are not state: nothing is journaled. */
static void watch_risk(service *s) {
    if (!s->prices_moved) return;
    int64_t now = mono_ns();
    if (now - s->risk_scanned_ns < 100000000) return;
    s->prices_moved = false;
    s->risk_scanned_ns = now;
    uint32_t channels = atomic_load(&s->notify_channels);
    notify_feed_set_channels(s->notes, channels);
    if (!(channels & NOTIFY_CHANNEL_BIT(NOTIFY_CH_RISK))) return;
    notify_feed_risk_scan(s->notes, s->e, wall_ns());
    flush_pushes(s);
    flush_wake(s);
}

#define WAKE_EVERY 64

static void *service_main(void *arg) {
    service *s = arg;
    request rq;
    unsigned since_wake = 0;
    for (;;) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += 200000000; /* bars close within 200 ms of their end */
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
        int w;
        while ((w = sem_timedwait(&s->in_items, &deadline)) != 0 && errno == EINTR) {
        }
        if (w != 0) { /* timed out: no request, perhaps a bar to close */
            if (atomic_load(&s->stopping)) break;
            tick_clock(s);
            watch_risk(s);
            if (s->p) persistence_tick(s->p, s->e, 0);
            continue;
        }
        if (!spsc_pop(&s->in, &rq)) {
            if (atomic_load(&s->stopping)) break;
            continue;
        }
        service_handle(s, &rq);
        tick_clock(s); /* a steady stream of queries must not hold bars open */
        watch_risk(s);
        if (s->p) persistence_tick(s->p, s->e, 0);
        /* wake the I/O thread once the burst of work is done, and every WAKE_EVERY requests
         * within a long burst: woken only at its end, the I/O thread slept while the engine
         * worked through a burst and the engine slept while the I/O thread sent the replies,
         * the two alternating instead of overlapping. A wake-up already pending costs nothing
         * more, so this is at most one per drain of the I/O thread. */
        if (spsc_size(&s->in) == 0 || ++since_wake >= WAKE_EVERY) {
            flush_wake(s);
            since_wake = 0;
        }
    }
    flush_wake(s);
    return NULL;
}

service *service_create(engine *e, persistence *p, size_t queue_capacity, service_wake_fn wake,
                        void *wake_ctx) {
    service *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->e = e;
    s->p = p;
    s->wake = wake;
    s->wake_ctx = wake_ctx;
    if (spsc_init(&s->in, queue_capacity, sizeof(request)) != 0) {
        free(s);
        return NULL;
    }
    if (spsc_init(&s->out, queue_capacity * 4, sizeof(reply)) != 0) {
        spsc_free(&s->in);
        free(s);
        return NULL;
    }
    s->notes = notify_feed_new(queue_note, s);
    if (s->notes == NULL || sem_init(&s->in_items, 0, 0) != 0) {
        notify_feed_free(s->notes);
        spsc_free(&s->in);
        spsc_free(&s->out);
        free(s);
        return NULL;
    }
    engine_set_event_sink(e, on_event, s);
    s->started_ns = wall_ns();
    return s;
}

void service_set_wake(service *s, service_wake_fn wake, void *wake_ctx) {
    s->wake = wake;
    s->wake_ctx = wake_ctx;
}

int service_start(service *s) {
    if (pthread_create(&s->thread, NULL, service_main, s) != 0) return -1;
    s->started = true;
    return 0;
}

void service_destroy(service *s) {
    if (s == NULL) return;
    if (s->started) {
        atomic_store(&s->stopping, true);
        sem_post(&s->in_items);
        pthread_join(s->thread, NULL);
    }
    reply r;
    while (spsc_pop(&s->out, &r))
        free(r.body);
    for (size_t i = 0; i < s->n_pending; i++)
        free(s->pending[i].body);
    free(s->pending);
    free(s->diff_watch);
    free(s->diff_watched);
    json_decref(s->diff_accounts);
    json_decref(s->diff_quotes_sent);
    json_decref(s->audit);
    notify_feed_free(s->notes);
    engine_set_event_sink(s->e, NULL, NULL);
    sem_destroy(&s->in_items);
    spsc_free(&s->in);
    spsc_free(&s->out);
    free(s);
}

bool service_submit(service *s, const request *r) {
    if (!spsc_push(&s->in, r)) return false;
    sem_post(&s->in_items);
    return true;
}

bool service_poll(service *s, reply *out) {
    return spsc_pop(&s->out, out);
}

void service_clear_wake(service *s) {
    atomic_store(&s->wake_pending, 0);
}

uint32_t service_diff_watched(service *s) {
    return atomic_load_explicit(&s->diff_watched_pub, memory_order_relaxed);
}

uint64_t service_durable_seq(const service *s) {
    return s->p ? persistence_durable_seq(s->p) : UINT64_MAX;
}

void service_set_market_listeners(service *s, int n) {
    atomic_store(&s->market_listeners, n);
}

void service_set_risk_warning(service *s, double ratio) {
    notify_feed_set_warning_ratio(s->notes, ratio);
}

void service_set_notify_channels(service *s, uint32_t channel_mask) {
    atomic_store(&s->notify_channels, channel_mask);
}

void service_set_metrics(service *s, const server_metrics *m) {
    s->metrics = m;
}

void service_set_audit_file(service *s, FILE *f) {
    s->audit_file = f;
}

void service_set_diff_listeners(service *s, int quotes, int charts) {
    atomic_store(&s->diff_quote_listeners, quotes);
    atomic_store(&s->diff_chart_listeners, charts);
}

void service_set_push_listeners(service *s, int n) {
    atomic_store(&s->push_listeners, n);
}
