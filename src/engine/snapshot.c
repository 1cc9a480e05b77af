/* The canonical view of the engine state: a digest for comparing engines, and snapshots that
 * rebuild an identical engine. Both walk the state in the same canonical order (instruments and
 * accounts by creation, positions by creation, each account's orders and trades by list order,
 * books by price then time), never by pool slot, so an engine restored from a snapshot has the
 * same digest as the one that wrote it. */
#include "engine/engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a visitor that either hashes or writes ---- */

typedef struct sink {
    uint64_t hash;      /* FNV-1a, when hashing */
    unsigned char *buf; /* when writing */
    size_t len, cap;
    bool writing;
    bool failed;
    /* streaming to a descriptor through a fixed buffer, with no allocation: fd >= 0 */
    int fd;
    unsigned char *chunk;
    size_t chunk_len, chunk_cap;
    uint64_t digest; /* FNV-1a of what was streamed, while digesting */
    bool digesting;
} sink;

static void stream_flush(sink *s) {
    for (size_t off = 0; off < s->chunk_len && !s->failed;) {
        ssize_t n = write(s->fd, s->chunk + off, s->chunk_len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) s->failed = true;
        if (n > 0) off += (size_t)n;
    }
    s->chunk_len = 0;
}

static void put_bytes(sink *s, const void *p, size_t n) {
    const unsigned char *b = p;
    if (s->fd >= 0) {
        for (size_t i = 0; i < n && !s->failed; i++) {
            if (s->digesting) {
                s->digest ^= b[i];
                s->digest *= 0x100000001b3ULL;
            }
            if (s->chunk_len == s->chunk_cap) stream_flush(s);
            s->chunk[s->chunk_len++] = b[i];
        }
        return;
    }
    if (!s->writing) {
        for (size_t i = 0; i < n; i++) {
            s->hash ^= b[i];
            s->hash *= 0x100000001b3ULL;
        }
        return;
    }
    if (s->failed) return;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n)
            cap *= 2;
        unsigned char *nb = realloc(s->buf, cap);
        if (nb == NULL) {
            s->failed = true;
            return;
        }
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, b, n);
    s->len += n;
}

static void put_u64(sink *s, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(s, b, 8);
}

static void put_i64(sink *s, int64_t v) {
    put_u64(s, (uint64_t)v);
}

static void put_f64(sink *s, double v) {
    uint64_t bits;
    if (v == 0) v = 0; /* -0.0 and 0.0 are the same money */
    memcpy(&bits, &v, 8);
    put_u64(s, bits);
}

static void put_str(sink *s, const char *str, size_t cap) {
    size_t n = strnlen(str, cap);
    put_u64(s, n);
    put_bytes(s, str, n);
}

#define PUT_STR(s, field) put_str((s), (field), sizeof(field))

/* ---- the canonical walk ---- */

static void put_spec(sink *s, const instrument_spec *sp) {
    PUT_STR(s, sp->instrument_id);
    PUT_STR(s, sp->instrument_name);
    put_u64(s, sp->instrument_type);
    PUT_STR(s, sp->exchange);
    put_i64(s, sp->contract_multiplier);
    put_f64(s, sp->price_tick);
    put_f64(s, sp->margin_rate);
    put_f64(s, sp->commission_rate);
    put_f64(s, sp->commission_per_lot);
    put_f64(s, sp->limit_up_rate);
    put_f64(s, sp->limit_down_rate);
    PUT_STR(s, sp->list_date);
    PUT_STR(s, sp->expire_date);
    put_f64(s, sp->pre_settlement);
    put_f64(s, sp->pre_close);
}

static void put_kline(sink *s, const kline *k) {
    put_i64(s, k->start_ms);
    put_f64(s, k->open);
    put_f64(s, k->high);
    put_f64(s, k->low);
    put_f64(s, k->close);
    put_i64(s, k->volume);
    put_f64(s, k->amount);
    put_i64(s, k->open_oi);
    put_i64(s, k->close_oi);
    put_i64(s, k->trades);
}

static void put_market(sink *s, const market_data *m) {
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        uint32_t n = market_kline_count(m, (kline_period)p);
        put_u64(s, n);
        for (uint32_t i = 0; i < n; i++)
            put_kline(s, market_kline_at(m, (kline_period)p, i));
        const kline *cur = market_kline_current(m, (kline_period)p);
        put_u64(s, cur != NULL);
        if (cur) put_kline(s, cur);
    }
    uint32_t n = market_trade_count(m);
    put_u64(s, n);
    for (uint32_t i = n; i-- > 0;) { /* oldest first */
        const market_trade *t = market_trade_at(m, i);
        put_i64(s, t->ts_ns);
        put_f64(s, t->price);
        put_i64(s, t->volume);
        put_u64(s, t->taker_side);
        put_u64(s, t->match_seq);
        put_u64(s, t->buyer);
        put_u64(s, t->seller);
    }
}

static void put_instrument(sink *s, const instrument *ins) {
    put_spec(s, &ins->spec);
    put_u64(s, ins->status);
    put_u64(s, ins->in_auction);
    put_i64(s, ins->upper_tick);
    put_i64(s, ins->lower_tick);
    put_u64(s, ins->exchange_seq);
    const market_stats *st = &ins->stats;
    put_f64(s, st->open);
    put_f64(s, st->high);
    put_f64(s, st->low);
    put_f64(s, st->last_price);
    put_i64(s, st->volume);
    put_f64(s, st->amount);
    put_i64(s, st->open_interest);
    put_i64(s, st->pre_open_interest);
    put_i64(s, st->last_trade_ns);
    put_f64(s, st->settlement_price);
    put_u64(s, st->has_trade);
    put_u64(s, st->settlement_price_set);
    put_market(s, &ins->market);
}

static void put_position(sink *s, const position *p) {
    put_u64(s, p->account);
    put_u64(s, p->instrument);
    put_i64(s, p->volume_long_today);
    put_i64(s, p->volume_long_his);
    put_i64(s, p->volume_long_frozen_today);
    put_i64(s, p->volume_long_frozen_his);
    put_i64(s, p->volume_short_today);
    put_i64(s, p->volume_short_his);
    put_i64(s, p->volume_short_frozen_today);
    put_i64(s, p->volume_short_frozen_his);
    put_f64(s, p->open_cost_long);
    put_f64(s, p->open_cost_short);
    put_f64(s, p->position_cost_long);
    put_f64(s, p->position_cost_short);
    put_f64(s, p->margin_long);
    put_f64(s, p->margin_short);
    put_f64(s, p->frozen_margin);
    put_u64(s, p->live_orders[0]);
    put_u64(s, p->live_orders[1]);
}

static void put_order(sink *s, const order *o) {
    PUT_STR(s, o->order_id);
    put_u64(s, o->seq);
    put_u64(s, o->exchange_seq);
    put_u64(s, o->instrument);
    put_u64(s, o->direction);
    put_u64(s, o->offset);
    put_u64(s, o->price_type);
    put_u64(s, o->time_condition);
    put_u64(s, o->volume_condition);
    put_u64(s, o->status);
    put_f64(s, o->limit_price);
    put_i64(s, o->price_tick);
    put_i64(s, o->volume_orign);
    put_i64(s, o->volume_left);
    put_f64(s, o->frozen_margin);
    put_f64(s, o->frozen_commission);
    put_i64(s, o->frozen_today);
    put_i64(s, o->frozen_his);
    put_i64(s, o->insert_ns);
    put_i64(s, o->update_ns);
    PUT_STR(s, o->last_msg);
    put_u64(s, o->in_book);
}

static void put_trade(sink *s, const trade *t) {
    put_u64(s, t->seq);
    put_u64(s, t->match_seq);
    put_u64(s, t->order_seq);
    put_u64(s, t->exchange_seq);
    PUT_STR(s, t->order_id);
    put_u64(s, t->instrument);
    put_u64(s, t->direction);
    put_u64(s, t->offset);
    put_f64(s, t->price);
    put_i64(s, t->volume);
    put_f64(s, t->commission);
    put_f64(s, t->close_profit);
    put_i64(s, t->trade_ns);
    put_u64(s, t->is_taker);
    put_u64(s, t->is_liquidation);
}

static void put_account(sink *s, const engine *e, const account *a) {
    PUT_STR(s, a->account_id);
    PUT_STR(s, a->user_id);
    PUT_STR(s, a->account_name);
    put_f64(s, a->pre_balance);
    put_f64(s, a->deposit);
    put_f64(s, a->withdraw);
    put_f64(s, a->close_profit);
    put_f64(s, a->commission);
    put_f64(s, a->premium);
    put_f64(s, a->frozen_margin);
    put_f64(s, a->frozen_commission);
    put_f64(s, a->frozen_premium);
    put_u64(s, a->frozen);
    put_i64(s, a->created_ns);
    put_u64(s, a->live_count);
    for (uint32_t o = a->live_head; o != SLOT_NONE; o = e->orders[o].account_next)
        put_order(s, &e->orders[o]);
    put_u64(s, a->finished_count);
    for (uint32_t o = a->finished_head; o != SLOT_NONE; o = e->orders[o].account_next)
        put_order(s, &e->orders[o]);
    put_u64(s, a->trades_count);
    for (uint32_t t = a->trades_head; t != SLOT_NONE; t = e->trades[t].account_next)
        put_trade(s, &e->trades[t]);
}

/* Books are content only: each level's orders by sequence, best price first. */
static void put_book(sink *s, const engine *e, const instrument *ins) {
    for (int side = 0; side < 2; side++) {
        put_u64(s, ins->book.order_count[side]);
        for (int32_t lv = book_best(&ins->book, side); lv != BOOK_NO_LEVEL;
             lv = book_next_worse(&ins->book, side, lv)) {
            const book_level *l = book_level_at(&ins->book, side, lv);
            put_i64(s, book_level_tick(&ins->book, lv));
            put_i64(s, l->volume);
            put_u64(s, l->count);
            for (uint32_t o = l->head; o != SLOT_NONE; o = e->orders[o].level_next)
                put_u64(s, e->orders[o].seq);
        }
    }
}

static void put_config(sink *s, const engine_config *c) {
    put_f64(s, c->max_position_ratio);
    put_f64(s, c->max_order_value);
    put_f64(s, c->risk_ratio_reject);
    put_i64(s, c->min_order_volume);
    put_i64(s, c->max_order_volume);
    put_f64(s, c->force_close_threshold);
    put_u64(s, c->self_trade_prevention);
    put_u64(s, c->finished_orders_per_account);
    put_u64(s, c->trades_per_account);
    put_u64(s, c->kline_history);
    put_u64(s, c->recent_trades);
    PUT_STR(s, c->trading_day);
}

#define SNAPSHOT_MAGIC 0x31504e5358454151ULL /* "QAEXSNP1" */
#define SNAPSHOT_VERSION 2

static void walk(sink *s, const engine *e, bool with_books) {
    put_config(s, &e->cfg);
    PUT_STR(s, e->trading_day);
    put_u64(s, e->order_seq);
    put_u64(s, e->trade_seq);
    put_u64(s, e->match_seq);
    put_u64(s, e->txn_seq);
    put_i64(s, e->clock_ms);
    put_u64(s, e->n_instruments);
    for (uint32_t i = 0; i < e->n_instruments; i++)
        put_instrument(s, &e->instruments[i]);
    put_u64(s, e->n_accounts);
    for (uint32_t i = 0; i < e->n_accounts; i++)
        put_account(s, e, &e->accounts[i]);
    put_u64(s, e->n_positions);
    for (uint32_t i = 0; i < e->n_positions; i++)
        put_position(s, &e->positions[i]);
    put_u64(s, e->n_settlements);
    for (uint32_t i = 0; i < e->n_settlements; i++) {
        const settlement_result *r = &e->settlements[i];
        PUT_STR(s, r->settlement_date);
        put_u64(s, r->total_accounts);
        put_u64(s, r->settled_accounts);
        put_u64(s, r->failed_accounts);
        put_u64(s, r->force_closed_count);
        for (uint32_t k = 0; k < r->force_closed_count; k++)
            put_str(s, r->force_closed_accounts[k], QAEX_ID_LEN);
        put_f64(s, r->total_commission);
        put_f64(s, r->total_profit);
        put_i64(s, r->ts_ns);
        put_u64(s, r->n_rows);
        for (uint32_t k = 0; k < r->n_rows; k++) {
            const settlement_row *row = &r->rows[k];
            PUT_STR(s, row->account_id);
            put_f64(s, row->pre_balance);
            put_f64(s, row->balance);
            put_f64(s, row->close_profit);
            put_f64(s, row->position_profit);
            put_f64(s, row->commission);
            put_f64(s, row->risk_ratio);
            put_u64(s, row->force_close);
        }
    }
    put_u64(s, e->transfers_count);
    for (uint32_t i = 0; i < e->transfers_count; i++) {
        const transfer_record *t = engine_transfer_at(e, i);
        PUT_STR(s, t->txn_id);
        put_u64(s, t->account);
        put_u64(s, t->is_deposit);
        put_f64(s, t->amount);
        put_f64(s, t->balance_before);
        put_f64(s, t->balance_after);
        put_i64(s, t->ts_ns);
    }
    put_u64(s, e->n_users);
    for (uint32_t i = 0; i < e->n_users; i++) {
        const user *u = &e->users[i];
        PUT_STR(s, u->user_id);
        PUT_STR(s, u->username);
        PUT_STR(s, u->email);
        PUT_STR(s, u->phone);
        PUT_STR(s, u->password_hash);
        put_u64(s, u->role);
        put_i64(s, u->created_ns);
    }
    if (with_books)
        for (uint32_t i = 0; i < e->n_instruments; i++)
            put_book(s, e, &e->instruments[i]);
}

uint64_t engine_state_hash(const engine *e) {
    sink s = {.hash = 0xcbf29ce484222325ULL, .fd = -1};
    walk(&s, e, true);
    return s.hash;
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int engine_snapshot_write_fd(const engine *e, int fd) {
    if (fd < 0) return -1;
    unsigned char chunk[1 << 16];
    sink s = {.writing = true,
              .fd = fd,
              .chunk = chunk,
              .chunk_cap = sizeof chunk,
              .digest = 0xcbf29ce484222325ULL,
              .digesting = true};
    put_u64(&s, SNAPSHOT_MAGIC);
    put_u64(&s, SNAPSHOT_VERSION);
    walk(&s, e, false);
    s.digesting = false; /* the digest covers everything before it, not itself */
    put_u64(&s, s.digest);
    stream_flush(&s);
    return s.failed ? -1 : 0;
}

int engine_snapshot_save(const engine *e, unsigned char **out, size_t *outlen) {
    sink s = {.writing = true, .fd = -1};
    put_u64(&s, SNAPSHOT_MAGIC);
    put_u64(&s, SNAPSHOT_VERSION);
    /* books are rebuilt from the live orders on load: they are not written */
    walk(&s, e, false);
    /* a digest of everything before it: a flipped byte is refused, never loaded */
    uint64_t digest = s.failed ? 0 : fnv1a(s.buf, s.len);
    s.writing = true;
    put_u64(&s, digest);
    if (s.failed) {
        free(s.buf);
        return -1;
    }
    *out = s.buf;
    *outlen = s.len;
    return 0;
}

/* ---- loading ---- */

typedef struct source {
    const unsigned char *p;
    size_t len, off;
    bool failed;
    char *err;
    size_t errlen;
} source;

static void src_fail(source *s, const char *what) {
    if (!s->failed) snprintf(s->err, s->errlen, "snapshot corrupt at byte %zu: %s", s->off, what);
    s->failed = true;
}

static uint64_t get_u64(source *s) {
    if (s->failed || s->len - s->off < 8) {
        src_fail(s, "truncated");
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)s->p[s->off + i] << (8 * i);
    s->off += 8;
    return v;
}

static int64_t get_i64(source *s) {
    return (int64_t)get_u64(s);
}

static double get_f64(source *s) {
    uint64_t bits = get_u64(s);
    double v;
    memcpy(&v, &bits, 8);
    return v;
}

static uint32_t get_u32(source *s, uint64_t max, const char *what) {
    uint64_t v = get_u64(s);
    if (v > max) {
        src_fail(s, what);
        return 0;
    }
    return (uint32_t)v;
}

/* A count of records that follow: each takes at least 8 bytes, so a count beyond what is left
 * is corruption, caught before anything is allocated for it. */
static uint32_t get_count(source *s, const char *what) {
    uint64_t v = get_u64(s);
    if (v > (s->len - s->off) / 8 || v > UINT32_MAX) {
        src_fail(s, what);
        return 0;
    }
    return (uint32_t)v;
}

static void get_str(source *s, char *out, size_t cap) {
    uint64_t n = get_u64(s);
    if (s->failed || n >= cap || s->len - s->off < n) {
        src_fail(s, "bad string");
        out[0] = '\0';
        return;
    }
    memcpy(out, s->p + s->off, n);
    out[n] = '\0';
    s->off += n;
}

#define GET_STR(s, field) get_str((s), (field), sizeof(field))

/* A text that is only informational and whose room shrank (an order's last_msg, 64 bytes before
 * it was 48): a longer one from an older snapshot is cut, not refused. */
static void get_str_cut(source *s, char *out, size_t cap) {
    uint64_t n = get_u64(s);
    if (s->failed || s->len - s->off < n) {
        src_fail(s, "bad string");
        out[0] = '\0';
        return;
    }
    size_t keep = n < cap ? (size_t)n : cap - 1;
    memcpy(out, s->p + s->off, keep);
    out[keep] = '\0';
    s->off += n;
}

static void get_spec(source *s, instrument_spec *sp) {
    memset(sp, 0, sizeof *sp);
    GET_STR(s, sp->instrument_id);
    GET_STR(s, sp->instrument_name);
    sp->instrument_type = (instrument_type)get_u32(s, INSTRUMENT_STOCK, "instrument type");
    GET_STR(s, sp->exchange);
    sp->contract_multiplier = (int32_t)get_i64(s);
    sp->price_tick = get_f64(s);
    sp->margin_rate = get_f64(s);
    sp->commission_rate = get_f64(s);
    sp->commission_per_lot = get_f64(s);
    sp->limit_up_rate = get_f64(s);
    sp->limit_down_rate = get_f64(s);
    GET_STR(s, sp->list_date);
    GET_STR(s, sp->expire_date);
    sp->pre_settlement = get_f64(s);
    sp->pre_close = get_f64(s);
}

static void get_order(source *s, order *o, uint32_t n_instruments) {
    GET_STR(s, o->order_id);
    o->seq = get_u64(s);
    o->exchange_seq = get_u64(s);
    o->instrument = get_u32(s, n_instruments ? n_instruments - 1 : 0, "order instrument");
    o->direction = (direction)get_u32(s, DIR_SELL, "direction");
    o->offset = (offset)get_u32(s, OFFSET_CLOSEYESTERDAY, "offset");
    o->price_type = (price_type)get_u32(s, PRICE_ANY, "price type");
    o->time_condition = (time_condition)get_u32(s, TC_GTC, "time condition");
    o->volume_condition = (volume_condition)get_u32(s, VC_ALL, "volume condition");
    o->status = (order_status)get_u32(s, ORDER_REJECTED, "status");
    o->limit_price = get_f64(s);
    o->price_tick = get_i64(s);
    o->volume_orign = get_i64(s);
    o->volume_left = get_i64(s);
    o->frozen_margin = get_f64(s);
    o->frozen_commission = get_f64(s);
    o->frozen_today = get_i64(s);
    o->frozen_his = get_i64(s);
    o->insert_ns = get_i64(s);
    o->update_ns = get_i64(s);
    get_str_cut(s, o->last_msg, sizeof o->last_msg);
    o->in_book = get_u32(s, 1, "in_book") != 0;
    o->level_prev = o->level_next = SLOT_NONE;
}

static void get_trade(source *s, trade *t, uint32_t n_instruments) {
    t->seq = get_u64(s);
    t->match_seq = get_u64(s);
    t->order_seq = get_u64(s);
    t->exchange_seq = get_u64(s);
    GET_STR(s, t->order_id);
    t->instrument = get_u32(s, n_instruments ? n_instruments - 1 : 0, "trade instrument");
    t->direction = (direction)get_u32(s, DIR_SELL, "direction");
    t->offset = (offset)get_u32(s, OFFSET_CLOSEYESTERDAY, "offset");
    t->price = get_f64(s);
    t->volume = get_i64(s);
    t->commission = get_f64(s);
    t->close_profit = get_f64(s);
    t->trade_ns = get_i64(s);
    t->is_taker = get_u32(s, 1, "is_taker") != 0;
    t->is_liquidation = get_u32(s, 1, "is_liquidation") != 0;
}

/* Appends an order read from the snapshot to one of the account's lists. */
static int load_order(engine *e, source *s, uint32_t aslot, bool live, uint32_t **resting,
                      uint32_t *n_resting, uint32_t *cap_resting) {
    uint32_t slot = engine_alloc_order(e);
    if (slot == SLOT_NONE) return -1;
    order *o = &e->orders[slot];
    get_order(s, o, e->n_instruments);
    o->account = aslot;
    if (s->failed || engine_register_order(e, slot) != 0) return -1;
    account *a = &e->accounts[aslot];
    uint32_t *head = live ? &a->live_head : &a->finished_head;
    uint32_t *tail = live ? &a->live_tail : &a->finished_tail;
    o->account_prev = live ? *tail : SLOT_NONE;
    o->account_next = SLOT_NONE;
    if (*tail != SLOT_NONE)
        e->orders[*tail].account_next = slot;
    else
        *head = slot;
    *tail = slot;
    if (live)
        a->live_count++;
    else
        a->finished_count++;
    if (live && o->in_book) {
        o->in_book = false;
        if (*n_resting == *cap_resting) {
            uint32_t n = *cap_resting ? *cap_resting * 2 : 1024;
            uint32_t *p = realloc(*resting, n * sizeof(uint32_t));
            if (p == NULL) return -1;
            *resting = p;
            *cap_resting = n;
        }
        (*resting)[(*n_resting)++] = slot;
    }
    return 0;
}

static const order *sort_pool;

static int by_seq(const void *a, const void *b) {
    uint64_t x = sort_pool[*(const uint32_t *)a].seq, y = sort_pool[*(const uint32_t *)b].seq;
    return x < y ? -1 : x > y;
}

/* Puts resting orders back in their books, oldest first, widening a book where needed. */
static int rebuild_books(engine *e, uint32_t *resting, uint32_t n) {
    if (n == 0) return 0;
    sort_pool = e->orders;
    qsort(resting, n, sizeof(uint32_t), by_seq);
    for (uint32_t i = 0; i < n; i++) {
        order *o = &e->orders[resting[i]];
        instrument *ins = &e->instruments[o->instrument];
        /* a resting price lies near the band: anything else is a corrupt snapshot */
        if (o->price_tick < 1 || o->price_tick < ins->lower_tick - (1 << 24) ||
            o->price_tick > ins->upper_tick + (1 << 24))
            return -1;
        if (!book_covers(&ins->book, o->price_tick)) {
            int64_t lo = o->price_tick < ins->lower_tick ? o->price_tick : ins->lower_tick;
            int64_t hi = o->price_tick > ins->upper_tick ? o->price_tick : ins->upper_tick;
            if (book_rebase(&ins->book, lo, hi) != 0) return -1;
        }
        book_insert(&ins->book, e->orders, resting[i]);
    }
    return 0;
}

static void get_kline(source *s, kline *k) {
    k->start_ms = get_i64(s);
    k->open = get_f64(s);
    k->high = get_f64(s);
    k->low = get_f64(s);
    k->close = get_f64(s);
    k->volume = get_i64(s);
    k->amount = get_f64(s);
    k->open_oi = get_i64(s);
    k->close_oi = get_i64(s);
    k->trades = get_i64(s);
}

static int get_market(source *s, market_data *m) {
    for (int p = 0; p < KLINE_PERIOD_COUNT && !s->failed; p++) {
        uint32_t n = get_count(s, "kline count");
        for (uint32_t i = 0; i < n && !s->failed; i++) {
            kline k;
            get_kline(s, &k);
            if (!s->failed && market_restore_kline(m, (kline_period)p, &k) != 0) return -1;
        }
        if (get_u32(s, 1, "kline in progress")) {
            kline k;
            get_kline(s, &k);
            market_restore_current(m, (kline_period)p, &k);
        }
    }
    uint32_t n = get_count(s, "market trade count");
    for (uint32_t i = 0; i < n && !s->failed; i++) {
        market_trade t;
        t.ts_ns = get_i64(s);
        t.price = get_f64(s);
        t.volume = get_i64(s);
        t.taker_side = (direction)get_u32(s, DIR_SELL, "taker side");
        t.match_seq = get_u64(s);
        t.buyer = get_u32(s, UINT32_MAX, "buyer");
        t.seller = get_u32(s, UINT32_MAX, "seller");
        if (!s->failed && market_restore_trade(m, &t) != 0) return -1;
    }
    return s->failed ? -1 : 0;
}

static int load_body(engine *e, source *s) {
    e->order_seq = get_u64(s);
    e->trade_seq = get_u64(s);
    e->match_seq = get_u64(s);
    e->txn_seq = get_u64(s);
    e->clock_ms = get_i64(s);
    uint32_t n_ins = get_count(s, "instrument count");
    for (uint32_t i = 0; i < n_ins && !s->failed; i++) {
        instrument_spec spec;
        get_spec(s, &spec);
        engine_result r;
        if (s->failed || engine_add_instrument(e, &spec, &r) != QAEX_OK) {
            src_fail(s, "instrument rejected");
            return -1;
        }
        instrument *ins = &e->instruments[i];
        ins->status = (instrument_status)get_u32(s, INSTRUMENT_DELISTED, "instrument status");
        ins->in_auction = get_u32(s, 1, "in_auction") != 0;
        /* the band follows from the terms; a stored band that disagrees is corruption */
        if (get_i64(s) != ins->upper_tick || get_i64(s) != ins->lower_tick) {
            src_fail(s, "limit band does not match the instrument terms");
            return -1;
        }
        ins->exchange_seq = get_u64(s);
        market_stats *st = &ins->stats;
        st->open = get_f64(s);
        st->high = get_f64(s);
        st->low = get_f64(s);
        st->last_price = get_f64(s);
        st->volume = get_i64(s);
        st->amount = get_f64(s);
        st->open_interest = get_i64(s);
        st->pre_open_interest = get_i64(s);
        st->last_trade_ns = get_i64(s);
        st->settlement_price = get_f64(s);
        st->has_trade = get_u32(s, 1, "has_trade") != 0;
        st->settlement_price_set = get_u32(s, 1, "settlement_price_set") != 0;
        if (get_market(s, &ins->market) != 0) return -1;
        engine_note_bars(e, ins);
    }
    uint32_t n_acc = get_count(s, "account count");
    if (s->failed || engine_reserve_accounts(e, n_acc ? n_acc : 1) != 0) return -1;
    uint32_t *resting = NULL, n_resting = 0, cap_resting = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n_acc && !s->failed && rc == 0; i++) {
        account *a = &e->accounts[i];
        memset(a, 0, sizeof *a);
        GET_STR(s, a->account_id);
        GET_STR(s, a->user_id);
        GET_STR(s, a->account_name);
        a->pre_balance = get_f64(s);
        a->deposit = get_f64(s);
        a->withdraw = get_f64(s);
        a->close_profit = get_f64(s);
        a->commission = get_f64(s);
        a->premium = get_f64(s);
        a->frozen_margin = get_f64(s);
        a->frozen_commission = get_f64(s);
        a->frozen_premium = get_f64(s);
        a->frozen = get_u32(s, 1, "frozen") != 0;
        a->created_ns = get_i64(s);
        a->live_head = a->live_tail = a->finished_head = a->finished_tail = SLOT_NONE;
        a->trades_head = a->trades_tail = SLOT_NONE;
        if (s->failed || idmap_insert(&e->account_map, idmap_hash_str(0, a->account_id), i) != 0) {
            rc = -1;
            break;
        }
        e->n_accounts = i + 1;
        uint32_t n_live = get_count(s, "live order count");
        for (uint32_t k = 0; k < n_live && rc == 0 && !s->failed; k++)
            rc = load_order(e, s, i, true, &resting, &n_resting, &cap_resting);
        uint32_t n_fin = get_count(s, "finished order count");
        for (uint32_t k = 0; k < n_fin && rc == 0 && !s->failed; k++)
            rc = load_order(e, s, i, false, &resting, &n_resting, &cap_resting);
        uint32_t n_tr = get_count(s, "trade count");
        for (uint32_t k = 0; k < n_tr && rc == 0 && !s->failed; k++) {
            uint32_t t = engine_alloc_trade(e);
            if (t == SLOT_NONE) {
                rc = -1;
                break;
            }
            get_trade(s, &e->trades[t], e->n_instruments);
            e->trades[t].account = i;
            engine_account_append_trade(e, t);
        }
    }
    uint32_t n_pos = rc == 0 ? get_count(s, "position count") : 0;
    for (uint32_t i = 0; i < n_pos && rc == 0 && !s->failed; i++) {
        position p;
        p.account = get_u32(s, e->n_accounts ? e->n_accounts - 1 : 0, "position account");
        p.instrument =
            get_u32(s, e->n_instruments ? e->n_instruments - 1 : 0, "position instrument");
        if (s->failed) break;
        uint32_t slot = engine_get_position_slot(e, p.account, p.instrument);
        if (slot == SLOT_NONE) {
            rc = -1;
            break;
        }
        position *q = &e->positions[slot];
        q->volume_long_today = get_i64(s);
        q->volume_long_his = get_i64(s);
        q->volume_long_frozen_today = get_i64(s);
        q->volume_long_frozen_his = get_i64(s);
        q->volume_short_today = get_i64(s);
        q->volume_short_his = get_i64(s);
        q->volume_short_frozen_today = get_i64(s);
        q->volume_short_frozen_his = get_i64(s);
        q->open_cost_long = get_f64(s);
        q->open_cost_short = get_f64(s);
        q->position_cost_long = get_f64(s);
        q->position_cost_short = get_f64(s);
        q->margin_long = get_f64(s);
        q->margin_short = get_f64(s);
        q->frozen_margin = get_f64(s);
        q->live_orders[0] = get_u32(s, UINT32_MAX, "live orders");
        q->live_orders[1] = get_u32(s, UINT32_MAX, "live orders");
    }
    uint32_t n_set = rc == 0 ? get_count(s, "settlement count") : 0;
    for (uint32_t i = 0; i < n_set && rc == 0 && !s->failed; i++) {
        settlement_result r;
        memset(&r, 0, sizeof r);
        GET_STR(s, r.settlement_date);
        r.total_accounts = get_u32(s, UINT32_MAX, "total");
        r.settled_accounts = get_u32(s, UINT32_MAX, "settled");
        r.failed_accounts = get_u32(s, UINT32_MAX, "failed");
        r.force_closed_count = get_u32(s, e->n_accounts, "force closed count");
        if (s->failed) break;
        if (r.force_closed_count) {
            r.force_closed_accounts = calloc(r.force_closed_count, QAEX_ID_LEN);
            if (r.force_closed_accounts == NULL) {
                rc = -1;
                break;
            }
        }
        for (uint32_t k = 0; k < r.force_closed_count; k++)
            get_str(s, r.force_closed_accounts[k], QAEX_ID_LEN);
        r.total_commission = get_f64(s);
        r.total_profit = get_f64(s);
        r.ts_ns = get_i64(s);
        r.n_rows = get_u32(s, e->n_accounts, "settlement rows");
        if (!s->failed && r.n_rows) {
            r.rows = calloc(r.n_rows, sizeof *r.rows);
            if (r.rows == NULL) {
                free(r.force_closed_accounts);
                rc = -1;
                break;
            }
        }
        for (uint32_t k = 0; k < r.n_rows && !s->failed; k++) {
            settlement_row *row = &r.rows[k];
            GET_STR(s, row->account_id);
            row->pre_balance = get_f64(s);
            row->balance = get_f64(s);
            row->close_profit = get_f64(s);
            row->position_profit = get_f64(s);
            row->commission = get_f64(s);
            row->risk_ratio = get_f64(s);
            row->force_close = get_u32(s, 1, "force close") != 0;
        }
        if (s->failed || engine_add_settlement(e, &r) != 0) {
            free(r.force_closed_accounts);
            free(r.rows);
            rc = -1;
        }
    }
    uint32_t n_transfers = rc == 0 ? get_count(s, "transfer count") : 0;
    for (uint32_t i = 0; i < n_transfers && rc == 0 && !s->failed; i++) {
        transfer_record t;
        memset(&t, 0, sizeof t);
        GET_STR(s, t.txn_id);
        t.account = get_u32(s, e->n_accounts, "transfer account");
        t.is_deposit = get_u32(s, 1, "transfer kind") != 0;
        t.amount = get_f64(s);
        t.balance_before = get_f64(s);
        t.balance_after = get_f64(s);
        t.ts_ns = get_i64(s);
        if (!s->failed && engine_log_transfer(e, &t) != 0) rc = -1;
    }
    uint32_t n_users = rc == 0 ? get_count(s, "user count") : 0;
    for (uint32_t i = 0; i < n_users && rc == 0 && !s->failed; i++) {
        user u;
        memset(&u, 0, sizeof u);
        GET_STR(s, u.user_id);
        GET_STR(s, u.username);
        GET_STR(s, u.email);
        GET_STR(s, u.phone);
        GET_STR(s, u.password_hash);
        u.role = (user_role)get_u32(s, ROLE_ADMIN, "user role");
        u.created_ns = get_i64(s);
        if (!s->failed && users_add(e, &u) != 0) rc = -1;
    }
    /* orders point at their position, which exists once positions are loaded */
    for (uint32_t i = 0; rc == 0 && !s->failed && i < e->n_accounts; i++) {
        for (int list = 0; list < 2; list++) {
            uint32_t o = list == 0 ? e->accounts[i].live_head : e->accounts[i].finished_head;
            for (; o != SLOT_NONE && rc == 0; o = e->orders[o].account_next) {
                uint32_t p = engine_find_position_slot(e, i, e->orders[o].instrument);
                if (p == SLOT_NONE) {
                    src_fail(s, "order without its position");
                    rc = -1;
                }
                e->orders[o].position = p;
            }
        }
    }
    if (rc == 0 && !s->failed) rc = rebuild_books(e, resting, n_resting);
    free(resting);
    if (rc == 0 && !s->failed && s->off != s->len) src_fail(s, "trailing bytes");
    return rc != 0 || s->failed ? -1 : 0;
}

engine *engine_snapshot_load(const unsigned char *data, size_t len, char *err, size_t errlen) {
    source s = {.p = data, .len = len, .err = err, .errlen = errlen};
    if (len < 24) {
        snprintf(err, errlen, "snapshot truncated: %zu bytes", len);
        return NULL;
    }
    uint64_t digest = 0;
    for (int i = 0; i < 8; i++)
        digest |= (uint64_t)data[len - 8 + i] << (8 * i);
    if (get_u64(&s) != SNAPSHOT_MAGIC) {
        snprintf(err, errlen, "not a QAExchange snapshot (bad magic)");
        return NULL;
    }
    uint64_t version = get_u64(&s);
    if (version != SNAPSHOT_VERSION) {
        snprintf(err, errlen, "snapshot version %llu is not supported (expected %d)",
                 (unsigned long long)version, SNAPSHOT_VERSION);
        return NULL;
    }
    if (fnv1a(data, len - 8) != digest) {
        snprintf(err, errlen, "snapshot checksum mismatch: the file is corrupt");
        return NULL;
    }
    s.len = len - 8;
    engine_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_position_ratio = get_f64(&s);
    cfg.max_order_value = get_f64(&s);
    cfg.risk_ratio_reject = get_f64(&s);
    cfg.min_order_volume = get_i64(&s);
    cfg.max_order_volume = get_i64(&s);
    cfg.force_close_threshold = get_f64(&s);
    cfg.self_trade_prevention = get_u32(&s, 1, "self_trade_prevention") != 0;
    cfg.finished_orders_per_account = get_u32(&s, UINT32_MAX, "finished orders");
    cfg.trades_per_account = get_u32(&s, UINT32_MAX, "trades");
    cfg.kline_history = get_u32(&s, UINT32_MAX, "kline history");
    cfg.recent_trades = get_u32(&s, UINT32_MAX, "recent trades");
    GET_STR(&s, cfg.trading_day);
    if (s.failed) return NULL;
    engine *e = engine_create(&cfg);
    if (e == NULL) {
        snprintf(err, errlen, "out of memory loading snapshot");
        return NULL;
    }
    GET_STR(&s, e->trading_day);
    if (load_body(e, &s) != 0) {
        if (!s.failed) snprintf(err, errlen, "out of memory loading snapshot");
        engine_destroy(e);
        return NULL;
    }
    return e;
}
