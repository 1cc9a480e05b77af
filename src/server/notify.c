#include "server/notify.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- types, priorities and channels ---- */

typedef struct type_info {
    const char *name;
    const char *str;
    int priority;
    notify_channel channel;
} type_info;

/* default_priority() of seed 1.3, where the seed's match leaves a type out (TradeCanceled,
 * PositionProfit, PositionLimit) the group comment of 1.2; channel() of seed 1.4. */
static const type_info TYPES[NOTIFY_TYPE_COUNT] = {
    [NOTIFY_ORDER_ACCEPTED] = {"OrderAccepted", "order_accepted", 1, NOTIFY_CH_TRADE},
    [NOTIFY_ORDER_REJECTED] = {"OrderRejected", "order_rejected", 0, NOTIFY_CH_TRADE},
    [NOTIFY_ORDER_PARTIALLY_FILLED] = {"OrderPartiallyFilled", "order_partially_filled", 1,
                                       NOTIFY_CH_TRADE},
    [NOTIFY_ORDER_FILLED] = {"OrderFilled", "order_filled", 1, NOTIFY_CH_TRADE},
    [NOTIFY_ORDER_CANCELED] = {"OrderCanceled", "order_canceled", 1, NOTIFY_CH_TRADE},
    [NOTIFY_ORDER_EXPIRED] = {"OrderExpired", "order_expired", 3, NOTIFY_CH_TRADE},
    [NOTIFY_TRADE_EXECUTED] = {"TradeExecuted", "trade_executed", 1, NOTIFY_CH_TRADE},
    [NOTIFY_TRADE_CANCELED] = {"TradeCanceled", "trade_canceled", 1, NOTIFY_CH_TRADE},
    [NOTIFY_ACCOUNT_OPEN] = {"AccountOpen", "account_open", 2, NOTIFY_CH_ACCOUNT},
    [NOTIFY_ACCOUNT_UPDATE] = {"AccountUpdate", "account_update", 2, NOTIFY_CH_ACCOUNT},
    [NOTIFY_POSITION_UPDATE] = {"PositionUpdate", "position_update", 2, NOTIFY_CH_POSITION},
    [NOTIFY_POSITION_PROFIT] = {"PositionProfit", "position_profit", 2, NOTIFY_CH_POSITION},
    [NOTIFY_RISK_ALERT] = {"RiskAlert", "risk_alert", 0, NOTIFY_CH_RISK},
    [NOTIFY_MARGIN_CALL] = {"MarginCall", "margin_call", 0, NOTIFY_CH_RISK},
    [NOTIFY_POSITION_LIMIT] = {"PositionLimit", "position_limit", 0, NOTIFY_CH_RISK},
    [NOTIFY_SYSTEM_NOTICE] = {"SystemNotice", "system_notice", 3, NOTIFY_CH_SYSTEM},
    [NOTIFY_TRADING_SESSION_START] = {"TradingSessionStart", "trading_session_start", 3,
                                      NOTIFY_CH_SYSTEM},
    [NOTIFY_TRADING_SESSION_END] = {"TradingSessionEnd", "trading_session_end", 3,
                                    NOTIFY_CH_SYSTEM},
    [NOTIFY_MARKET_HALT] = {"MarketHalt", "market_halt", 3, NOTIFY_CH_SYSTEM},
};

static const char *const CHANNELS[NOTIFY_CHANNEL_COUNT] = {"trade", "account", "position", "risk",
                                                           "system"};

static bool type_ok(notify_type t) {
    return (unsigned)t < NOTIFY_TYPE_COUNT;
}

const char *notify_type_name(notify_type t) {
    return type_ok(t) ? TYPES[t].name : NULL;
}

const char *notify_type_str(notify_type t) {
    return type_ok(t) ? TYPES[t].str : NULL;
}

int notify_type_parse(const char *s) {
    if (s == NULL) return -1;
    for (int t = 0; t < NOTIFY_TYPE_COUNT; t++)
        if (strcmp(s, TYPES[t].name) == 0 || strcmp(s, TYPES[t].str) == 0) return t;
    return -1;
}

int notify_type_default_priority(notify_type t) {
    return type_ok(t) ? TYPES[t].priority : -1;
}

int notify_type_channel(notify_type t) {
    return type_ok(t) ? (int)TYPES[t].channel : -1;
}

const char *notify_channel_name(notify_channel c) {
    return (unsigned)c < NOTIFY_CHANNEL_COUNT ? CHANNELS[c] : NULL;
}

int notify_channel_parse(const char *name) {
    if (name == NULL) return -1;
    for (int c = 0; c < NOTIFY_CHANNEL_COUNT; c++)
        if (strcmp(name, CHANNELS[c]) == 0) return c;
    return -1;
}

/* ---- messages ---- */

static _Atomic long messages_live;

/* Writes s as the inside of a JSON string into dst (when not NULL); returns the length. */
static size_t json_escape(char *dst, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        char esc = 0;
        switch (c) {
            case '"':
                esc = '"';
                break;
            case '\\':
                esc = '\\';
                break;
            case '\b':
                esc = 'b';
                break;
            case '\f':
                esc = 'f';
                break;
            case '\n':
                esc = 'n';
                break;
            case '\r':
                esc = 'r';
                break;
            case '\t':
                esc = 't';
                break;
            default:
                break;
        }
        if (esc) {
            if (dst) {
                dst[n] = '\\';
                dst[n + 1] = esc;
            }
            n += 2;
        } else if (c < 0x20) {
            if (dst) {
                memcpy(dst + n, "\\u00", 4);
                dst[n + 4] = hex[c >> 4];
                dst[n + 5] = hex[c & 15];
            }
            n += 6;
        } else {
            if (dst) dst[n] = (char)c;
            n++;
        }
    }
    return n;
}

/* Appends a literal; dst may be NULL (counting only). */
static size_t put(char *dst, size_t at, const char *s) {
    size_t n = strlen(s);
    if (dst) memcpy(dst + at, s, n);
    return n;
}

static size_t put_i64(char *dst, size_t at, int64_t v) {
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[n++] = '-';
    if (dst)
        for (size_t i = 0; i < n; i++)
            dst[at + i] = tmp[n - 1 - i];
    return n;
}

/* The seed's to_json(); with dst NULL only the length. */
static size_t message_json(char *dst, const notify_message *m, const char *payload) {
    size_t n = 0;
    n += put(dst, n, "{\"message_id\":\"");
    n += json_escape(dst ? dst + n : NULL, m->message_id);
    n += put(dst, n, "\",\"message_type\":\"");
    n += put(dst, n, TYPES[m->type].str);
    n += put(dst, n, "\",\"user_id\":\"");
    n += json_escape(dst ? dst + n : NULL, m->user_id);
    n += put(dst, n, "\",\"priority\":");
    n += put_i64(dst, n, m->priority);
    n += put(dst, n, ",\"timestamp\":");
    n += put_i64(dst, n, m->timestamp);
    n += put(dst, n, ",\"source\":\"");
    n += json_escape(dst ? dst + n : NULL, m->source);
    n += put(dst, n, "\",\"payload\":");
    n += put(dst, n, payload);
    n += put(dst, n, "}");
    return n;
}

notify_message *notify_message_new(const notify_message_init *init) {
    if (init == NULL || !type_ok(init->type) || init->message_id == NULL) return NULL;
    size_t id_len = strlen(init->message_id);
    if (id_len == 0 || id_len >= NOTIFY_ID_MAX || init->headroom > NOTIFY_HEADROOM_MAX) return NULL;
    const char *user = init->user_id ? init->user_id : "";
    const char *source = init->source ? init->source : "";
    const char *payload = init->payload_json ? init->payload_json : "{}";
    size_t user_len = strlen(user), source_len = strlen(source);
    if (user_len > SIZE_MAX / 8 || source_len > SIZE_MAX / 8 || strlen(payload) > SIZE_MAX / 8)
        return NULL;

    /* the header, with string pointers into the caller's text, to measure the JSON */
    notify_message h = {0};
    h.type = init->type;
    h.priority =
        init->priority < 0 ? TYPES[init->type].priority : (init->priority > 3 ? 3 : init->priority);
    h.channel = TYPES[init->type].channel;
    h.timestamp = init->timestamp;
    h.message_id = init->message_id;
    h.user_id = user;
    h.source = source;
    size_t json_len = message_json(NULL, &h, payload);

    size_t strings = id_len + 1 + user_len + 1 + source_len + 1;
    notify_message *m = malloc(sizeof *m + init->headroom + json_len + 1 + strings);
    if (m == NULL) return NULL;
    *m = h;
    m->refs = 1;
    m->headroom = init->headroom;
    m->json = m->storage + init->headroom;
    m->json_len = json_len;
    char *p = m->json + json_len + 1;
    memcpy(p, init->message_id, id_len + 1);
    m->message_id = p;
    p += id_len + 1;
    memcpy(p, user, user_len + 1);
    m->user_id = p;
    p += user_len + 1;
    memcpy(p, source, source_len + 1);
    m->source = p;
    message_json(m->json, m, payload);
    m->json[json_len] = '\0';
    m->admitted_by = NULL;
    m->duplicate = false;
    atomic_fetch_add_explicit(&messages_live, 1, memory_order_relaxed);
    return m;
}

notify_message *notify_message_retain(notify_message *m) {
    if (m) m->refs++;
    return m;
}

void notify_message_release(notify_message *m) {
    if (m == NULL || --m->refs > 0) return;
    atomic_fetch_sub_explicit(&messages_live, 1, memory_order_relaxed);
    free(m);
}

const char *notify_message_json(const notify_message *m, size_t *len) {
    if (len) *len = m->json_len;
    return m->json;
}

long notify_messages_live(void) {
    return atomic_load_explicit(&messages_live, memory_order_relaxed);
}

static const char BATCH_HEAD[] = "{\"type\":\"notifications\",\"messages\":[";
static const char BATCH_TAIL[] = "]}";

size_t notify_batch_len(notify_message *const *msgs, size_t n) {
    size_t len = sizeof BATCH_HEAD - 1 + sizeof BATCH_TAIL - 1;
    for (size_t i = 0; i < n; i++)
        len += msgs[i]->json_len + (i > 0);
    return len;
}

size_t notify_format_batch(notify_message *const *msgs, size_t n, char *buf, size_t cap) {
    size_t len = notify_batch_len(msgs, n);
    if (buf == NULL || cap < len + 1) return 0;
    size_t at = 0;
    memcpy(buf, BATCH_HEAD, sizeof BATCH_HEAD - 1);
    at += sizeof BATCH_HEAD - 1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) buf[at++] = ',';
        memcpy(buf + at, msgs[i]->json, msgs[i]->json_len);
        at += msgs[i]->json_len;
    }
    memcpy(buf + at, BATCH_TAIL, sizeof BATCH_TAIL);
    return len;
}

/* ---- the dedup window: a ring of the last N ids and an open-addressing set over it ---- */

#define SLOT_EMPTY UINT32_MAX

typedef struct dedup_id {
    uint64_t hash;
    char id[NOTIFY_ID_MAX];
} dedup_id;

typedef struct dedup {
    dedup_id *ring;  /* window entries */
    uint32_t window; /* capacity of the ring */
    uint32_t count;  /* entries in use */
    uint32_t next;   /* the ring slot written next (the oldest once full) */
    uint32_t *table; /* ring slot per bucket, SLOT_EMPTY when free */
    uint32_t mask;   /* buckets - 1; buckets >= 2 * window */
} dedup;

static uint64_t hash_id(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then a 64-bit finalizer */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static int dedup_init(dedup *d, uint32_t window) {
    memset(d, 0, sizeof *d);
    uint64_t buckets = 16;
    while (buckets < 2 * (uint64_t)window)
        buckets *= 2;
    if (buckets > UINT32_MAX) return -1;
    d->ring = malloc((size_t)window * sizeof *d->ring);
    d->table = malloc((size_t)buckets * sizeof *d->table);
    if (d->ring == NULL || d->table == NULL) {
        free(d->ring);
        free(d->table);
        return -1;
    }
    for (uint64_t i = 0; i < buckets; i++)
        d->table[i] = SLOT_EMPTY;
    d->window = window;
    d->mask = (uint32_t)(buckets - 1);
    return 0;
}

static void dedup_free(dedup *d) {
    free(d->ring);
    free(d->table);
}

/* The bucket holding id, or the free bucket where it would go. */
static uint32_t dedup_probe(const dedup *d, const char *id, uint64_t h) {
    uint32_t i = (uint32_t)h & d->mask;
    while (d->table[i] != SLOT_EMPTY) {
        const dedup_id *e = &d->ring[d->table[i]];
        if (e->hash == h && strcmp(e->id, id) == 0) return i;
        i = (i + 1) & d->mask;
    }
    return i;
}

/* Removes the bucket at i, shifting later members of its probe run back (no tombstones). */
static void dedup_delete_bucket(dedup *d, uint32_t i) {
    for (;;) {
        uint32_t j = i;
        for (;;) {
            j = (j + 1) & d->mask;
            if (d->table[j] == SLOT_EMPTY) {
                d->table[i] = SLOT_EMPTY;
                return;
            }
            uint32_t home = (uint32_t)d->ring[d->table[j]].hash & d->mask;
            /* the entry at j may move to i unless its home lies cyclically in (i, j] */
            bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) break;
        }
        d->table[i] = d->table[j];
        i = j;
    }
}

/* True when id is new: it is then recorded, evicting the oldest id once the window is full. */
static bool dedup_admit(dedup *d, const char *id) {
    uint64_t h = hash_id(id);
    uint32_t b = dedup_probe(d, id, h);
    if (d->table[b] != SLOT_EMPTY) return false;
    uint32_t slot = d->next;
    if (d->count == d->window) {
        dedup_id *old = &d->ring[slot];
        uint32_t ob = dedup_probe(d, old->id, old->hash);
        dedup_delete_bucket(d, ob);
        b = dedup_probe(d, id, h); /* the deletion may have moved the free bucket */
    } else {
        d->count++;
    }
    dedup_id *e = &d->ring[slot];
    e->hash = h;
    memcpy(e->id, id, strlen(id) + 1);
    d->table[b] = slot;
    d->next = slot + 1 == d->window ? 0 : slot + 1;
    return true;
}

/* ---- per-priority FIFO rings ---- */

typedef struct queue_item {
    notify_message *msg;
    int64_t since_ms;
} queue_item;

typedef struct queue {
    queue_item *items;
    uint32_t cap, head, count;
} queue;

#define QUEUE_MIN_CAP 16
#define QUEUE_KEEP_CAP 64 /* an emptied ring larger than this is given back */

static int queue_push(queue *q, notify_message *m, int64_t now_ms) {
    if (q->count == q->cap) {
        if (q->cap > UINT32_MAX / 2) return -1;
        uint32_t cap = q->cap ? q->cap * 2 : QUEUE_MIN_CAP;
        queue_item *items = malloc((size_t)cap * sizeof *items);
        if (items == NULL) return -1;
        for (uint32_t i = 0; i < q->count; i++)
            items[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = items;
        q->cap = cap;
        q->head = 0;
    }
    q->items[(q->head + q->count) % q->cap] = (queue_item){m, now_ms};
    q->count++;
    return 0;
}

static notify_message *queue_pop(queue *q) {
    notify_message *m = q->items[q->head].msg;
    q->head = q->head + 1 == q->cap ? 0 : q->head + 1;
    if (--q->count == 0) {
        q->head = 0;
        if (q->cap > QUEUE_KEEP_CAP) {
            free(q->items);
            q->items = NULL;
            q->cap = 0;
        }
    }
    return m;
}

static void queue_clear(queue *q) {
    while (q->count)
        notify_message_release(queue_pop(q));
    free(q->items);
    q->items = NULL;
    q->cap = 0;
}

/* ---- broker and sessions ---- */

struct notify_session {
    notify_broker *broker;
    notify_session *prev, *next;
    uint32_t channels; /* 0 = all */
    queue q[NOTIFY_PRIORITIES];
    size_t external; /* the caller's own backlog */
    size_t released; /* P1–P3 messages of a due batch not yet returned */
    bool overflowed;
    notify_session_stats stats;
};

struct notify_broker {
    notify_config cfg;
    dedup dd;
    notify_session *sessions;
    notify_stats stats;
};

void notify_config_default(notify_config *c) {
    c->dedup_window = 10000;
    c->batch_size = 100;
    c->batch_interval_ms = 100;
    c->p1_delay_ms = 2;
    c->shed_p3_at = 500;
    c->shed_p2_at = 1000;
    c->shed_p1_at = 2000;
    c->p0_limit = 10000;
}

notify_broker *notify_broker_new(const notify_config *cfg) {
    notify_config c;
    if (cfg)
        c = *cfg;
    else
        notify_config_default(&c);
    if (c.dedup_window == 0 || c.batch_size == 0 || c.shed_p3_at > c.shed_p2_at ||
        c.shed_p2_at > c.shed_p1_at)
        return NULL;
    notify_broker *b = calloc(1, sizeof *b);
    if (b == NULL) return NULL;
    b->cfg = c;
    if (dedup_init(&b->dd, c.dedup_window) < 0) {
        free(b);
        return NULL;
    }
    return b;
}

void notify_broker_free(notify_broker *b) {
    if (b == NULL) return;
    while (b->sessions)
        notify_session_free(b->sessions);
    dedup_free(&b->dd);
    free(b);
}

const notify_config *notify_broker_config(const notify_broker *b) {
    return &b->cfg;
}

void notify_broker_stats(const notify_broker *b, notify_stats *out) {
    *out = b->stats;
}

bool notify_broker_admit(notify_broker *b, notify_message *m) {
    if (m->admitted_by != b) {
        m->admitted_by = b;
        m->duplicate = !dedup_admit(&b->dd, m->message_id);
        if (m->duplicate)
            b->stats.deduplicated++;
        else
            b->stats.published++;
    }
    return !m->duplicate;
}

notify_session *notify_session_new(notify_broker *b) {
    notify_session *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->broker = b;
    s->next = b->sessions;
    if (b->sessions) b->sessions->prev = s;
    b->sessions = s;
    b->stats.sessions++;
    return s;
}

void notify_session_free(notify_session *s) {
    if (s == NULL) return;
    notify_broker *b = s->broker;
    for (int p = 0; p < NOTIFY_PRIORITIES; p++)
        queue_clear(&s->q[p]);
    if (s->prev)
        s->prev->next = s->next;
    else
        b->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    b->stats.sessions--;
    free(s);
}

void notify_session_subscribe(notify_session *s, uint32_t channel_mask) {
    s->channels |= channel_mask & NOTIFY_CHANNELS_ALL;
}

void notify_session_unsubscribe(notify_session *s, uint32_t channel_mask) {
    s->channels &= ~channel_mask;
}

void notify_session_unsubscribe_all(notify_session *s) {
    s->channels = 0;
}

uint32_t notify_session_channels(const notify_session *s) {
    return s->channels;
}

bool notify_session_wants(const notify_session *s, notify_channel c) {
    return s->channels == 0 || (s->channels & NOTIFY_CHANNEL_BIT(c)) != 0;
}

void notify_session_set_external_backlog(notify_session *s, size_t n) {
    s->external = n;
}

size_t notify_session_queued(const notify_session *s, int priority) {
    if (priority >= 0 && priority < NOTIFY_PRIORITIES) return s->q[priority].count;
    size_t n = 0;
    for (int p = 0; p < NOTIFY_PRIORITIES; p++)
        n += s->q[p].count;
    return n;
}

size_t notify_session_backlog(const notify_session *s) {
    return notify_session_queued(s, -1) + s->external;
}

bool notify_session_overflowed(const notify_session *s) {
    return s->overflowed;
}

void notify_session_stats_get(const notify_session *s, notify_session_stats *out) {
    *out = s->stats;
}

/* Whether backpressure sheds a new message of priority p at this backlog. */
static bool shed(const notify_broker *b, const notify_session *s, int p, size_t backlog) {
    const notify_config *c = &b->cfg;
    if (p == 0) return s->q[0].count >= c->p0_limit;
    if (backlog >= c->shed_p1_at) return true;
    if (backlog >= c->shed_p2_at) return p >= 2;
    if (backlog >= c->shed_p3_at) return p >= 3;
    return false;
}

notify_result notify_publish(notify_broker *b, notify_session *s, notify_message *m,
                             int64_t now_ms) {
    if (b == NULL || s == NULL || m == NULL || s->broker != b) return NOTIFY_INVALID;
    if (!notify_broker_admit(b, m)) return NOTIFY_DUPLICATE;
    if (!notify_session_wants(s, m->channel)) {
        s->stats.filtered++;
        b->stats.filtered++;
        return NOTIFY_FILTERED;
    }
    int p = m->priority;
    size_t backlog = notify_session_backlog(s);
    if (shed(b, s, p, backlog)) {
        s->stats.dropped[p]++;
        b->stats.dropped[p]++;
        if (p == 0 && !s->overflowed) {
            s->overflowed = true;
            b->stats.overflowed++;
        }
        return NOTIFY_DROPPED;
    }
    if (queue_push(&s->q[p], m, now_ms) < 0) {
        s->stats.nomem++;
        b->stats.nomem++;
        return NOTIFY_NOMEM;
    }
    m->refs++;
    s->stats.queued++;
    b->stats.queued++;
    backlog++;
    if (backlog > s->stats.backlog_max) s->stats.backlog_max = backlog;
    if (backlog > b->stats.backlog_max) b->stats.backlog_max = backlog;
    return NOTIFY_QUEUED;
}

static size_t batch_count(const notify_session *s) {
    return (size_t)s->q[1].count + s->q[2].count + s->q[3].count;
}

/* When the P1–P3 batch becomes due by age (NOTIFY_NO_DEADLINE when empty). */
static int64_t batch_age_deadline(const notify_session *s) {
    const notify_config *c = &s->broker->cfg;
    int64_t d = NOTIFY_NO_DEADLINE;
    for (int p = 1; p < NOTIFY_PRIORITIES; p++) {
        const queue *q = &s->q[p];
        if (q->count == 0) continue;
        int64_t wait = p == 1 ? c->p1_delay_ms : c->batch_interval_ms;
        int64_t since = q->items[q->head].since_ms;
        int64_t t = since > INT64_MAX - wait ? INT64_MAX : since + wait;
        if (t < d) d = t;
    }
    return d;
}

int64_t notify_next_deadline(const notify_session *s) {
    if (s->q[0].count > 0 || s->released > 0) return NOTIFY_NOW;
    if (batch_count(s) >= s->broker->cfg.batch_size) return NOTIFY_NOW;
    return batch_age_deadline(s);
}

size_t notify_ready(notify_broker *b, notify_session *s, int64_t now_ms, notify_message **out,
                    size_t max) {
    if (b == NULL || s == NULL || s->broker != b || (out == NULL && max > 0)) return 0;
    size_t n = 0;
    while (n < max && s->q[0].count > 0)
        out[n++] = queue_pop(&s->q[0]);
    size_t waiting = batch_count(s);
    if (waiting > 0 && (waiting >= b->cfg.batch_size || batch_age_deadline(s) <= now_ms))
        s->released = waiting;
    for (int p = 1; p < NOTIFY_PRIORITIES && n < max && s->released > 0; p++) {
        while (n < max && s->released > 0 && s->q[p].count > 0) {
            out[n++] = queue_pop(&s->q[p]);
            s->released--;
        }
    }
    if (batch_count(s) == 0) s->released = 0;
    s->stats.delivered += n;
    b->stats.delivered += n;
    return n;
}
