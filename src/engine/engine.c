/* The engine's state, its pools and lookups, the command dispatcher, the instrument and account
 * commands, and the queries. Matching lives in matching.c, settlement in settlement.c. */
#include "engine/engine_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void engine_config_default(engine_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->max_position_ratio = 0.5;
    cfg->max_order_value = 10000000.0;
    cfg->risk_ratio_reject = 0.95;
    cfg->min_order_volume = 1;
    cfg->max_order_volume = 10000;
    cfg->force_close_threshold = 1.0;
    cfg->self_trade_prevention = true;
    cfg->finished_orders_per_account = 2000;
    cfg->trades_per_account = 2000;
    cfg->kline_history = 10000;
    cfg->recent_trades = 1000;
    snprintf(cfg->trading_day, sizeof cfg->trading_day, "2025-01-02");
}

size_t engine_default_instruments(instrument_spec *out, size_t max) {
    static const struct {
        const char *id, *name;
        int32_t multiplier;
        double price;
    } defaults[] = {
        {"CFFEX.IF2501", "CSI 300 index future 2501", 300, 3800.0},
        {"CFFEX.IC2501", "CSI 500 index future 2501", 200, 5600.0},
        {"CFFEX.IH2501", "SSE 50 index future 2501", 300, 2800.0},
    };
    size_t n = sizeof defaults / sizeof defaults[0];
    for (size_t i = 0; i < n && i < max; i++) {
        instrument_spec *s = &out[i];
        memset(s, 0, sizeof *s);
        snprintf(s->instrument_id, sizeof s->instrument_id, "%s", defaults[i].id);
        snprintf(s->instrument_name, sizeof s->instrument_name, "%s", defaults[i].name);
        s->instrument_type = INSTRUMENT_FUTURE;
        s->contract_multiplier = defaults[i].multiplier;
        s->price_tick = 0.2;
        s->margin_rate = 0.10;
        s->commission_rate = 0.000023;
        s->limit_up_rate = 0.10;
        s->limit_down_rate = 0.10;
        s->pre_settlement = defaults[i].price;
        s->pre_close = defaults[i].price;
        snprintf(s->list_date, sizeof s->list_date, "2024-05-20");
        snprintf(s->expire_date, sizeof s->expire_date, "2025-01-17");
    }
    return n < max ? n : max;
}

/* ---- growth of the pools: the only allocations, and never per order once warm ---- */

int grow_array(void **array, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap) return 0;
    uint32_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > UINT32_MAX / 2) return -1;
        n *= 2;
    }
    void *p = realloc(*array, (size_t)n * elem);
    if (p == NULL) return -1;
    *array = p;
    *cap = n;
    return 0;
}

/* Gives a pool of records (pool_mem.h) room for exactly `n`, keeping the first `used`. */
static int size_pool(pool_mem *m, void **records, uint32_t *cap, uint32_t n, size_t elem,
                     uint32_t used) {
    if (pool_mem_grow(m, (size_t)used * elem, (size_t)n * elem) != 0) return -1;
    *records = m->lines;
    *cap = n;
    return 0;
}

/* Grows a pool of records by doubling to hold `need`. */
static int grow_pool(pool_mem *m, void **records, uint32_t *cap, uint32_t need, size_t elem,
                     uint32_t used) {
    if (need <= *cap) return 0;
    uint32_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > UINT32_MAX / 2) return -1;
        n *= 2;
    }
    return size_pool(m, records, cap, n, elem, used);
}

int engine_reserve_accounts(engine *e, uint32_t n) {
    uint32_t cap = e->cap_accounts;
    if (grow_pool(&e->accounts_mem, (void **)&e->accounts, &cap, n, sizeof(account),
                  e->n_accounts) != 0)
        return -1;
    uint32_t cap2 = e->cap_accounts;
    if (grow_array((void **)&e->account_epoch, &cap2, n, sizeof(uint64_t)) != 0) return -1;
    uint32_t cap3 = e->cap_accounts;
    if (grow_array((void **)&e->touched_accounts, &cap3, n, sizeof(uint32_t)) != 0) return -1;
    for (uint32_t i = e->cap_accounts; i < cap; i++)
        e->account_epoch[i] = 0;
    e->cap_accounts = cap;
    return 0;
}

int engine_reserve_positions(engine *e, uint32_t n) {
    uint32_t cap = e->cap_positions;
    if (grow_array((void **)&e->positions, &cap, n, sizeof(position)) != 0) return -1;
    uint32_t cap2 = e->cap_positions;
    if (grow_array((void **)&e->position_epoch, &cap2, n, sizeof(uint64_t)) != 0) return -1;
    uint32_t cap3 = e->cap_positions;
    if (grow_array((void **)&e->touched_positions, &cap3, n, sizeof(uint32_t)) != 0) return -1;
    for (uint32_t i = e->cap_positions; i < cap; i++)
        e->position_epoch[i] = 0;
    e->cap_positions = cap;
    return 0;
}

int engine_preallocate(engine *e, uint32_t orders, uint32_t trades) {
    /* exactly the size asked for (a doubling could take twice the memory); past it the pools
     * double as usual */
    if (orders > UINT32_MAX / 2 || trades > UINT32_MAX / 2) return -1;
    if ((orders > e->cap_orders && size_pool(&e->orders_mem, (void **)&e->orders, &e->cap_orders,
                                             orders, sizeof(order), e->order_fresh) != 0) ||
        (trades > e->cap_trades && size_pool(&e->trades_mem, (void **)&e->trades, &e->cap_trades,
                                             trades, sizeof(trade), e->trade_fresh) != 0) ||
        idmap_reserve(&e->order_map, orders) != 0)
        return -1;
    if (pool_mem_populate(&e->orders_mem, (size_t)e->cap_orders * sizeof(order)) != 0 ||
        pool_mem_populate(&e->trades_mem, (size_t)e->cap_trades * sizeof(trade)) != 0)
        return -1;
    return 0;
}

void engine_get_memory(const engine *e, engine_memory *m) {
    m->orders_in_use = e->orders_in_use;
    m->orders_capacity = e->cap_orders;
    m->trades_in_use = e->trades_in_use;
    m->trades_capacity = e->cap_trades;
    m->order_index_capacity = e->order_map.capacity;
}

/* Released slots are taken first (last released first), then never-used ones lowest first: the
 * allocation order is deterministic. Never-used slots are not touched when the pool grows (a
 * free list threaded through them faulted in every new page at once: 100 ms at a million
 * orders), only as they are taken. */
uint32_t engine_alloc_order(engine *e) {
    uint32_t slot = e->order_free;
    if (slot != SLOT_NONE) {
        e->order_free = e->orders[slot].account_next;
    } else {
        if (e->order_fresh == e->cap_orders &&
            grow_pool(&e->orders_mem, (void **)&e->orders, &e->cap_orders, e->order_fresh + 1,
                      sizeof(order), e->order_fresh) != 0)
            return SLOT_NONE;
        slot = e->order_fresh++;
    }
    memset(&e->orders[slot], 0, sizeof(order));
    e->orders_in_use++;
    return slot;
}

static void release_order_slot(engine *e, uint32_t slot) {
    e->orders[slot].account_next = e->order_free;
    e->order_free = slot;
    e->orders_in_use--;
}

uint32_t engine_alloc_trade(engine *e) {
    uint32_t slot = e->trade_free;
    if (slot != SLOT_NONE) {
        e->trade_free = e->trades[slot].account_next;
    } else {
        if (e->trade_fresh == e->cap_trades &&
            grow_pool(&e->trades_mem, (void **)&e->trades, &e->cap_trades, e->trade_fresh + 1,
                      sizeof(trade), e->trade_fresh) != 0)
            return SLOT_NONE;
        slot = e->trade_fresh++;
    }
    memset(&e->trades[slot], 0, sizeof(trade));
    e->trades_in_use++;
    return slot;
}

void engine_account_append_trade(engine *e, uint32_t slot) {
    trade *t = &e->trades[slot];
    account *a = &e->accounts[t->account];
    t->account_next = SLOT_NONE;
    if (a->trades_tail != SLOT_NONE)
        e->trades[a->trades_tail].account_next = slot;
    else
        a->trades_head = slot;
    a->trades_tail = slot;
    a->trades_count++;
    while (a->trades_count > e->cfg.trades_per_account) {
        uint32_t oldest = a->trades_head;
        a->trades_head = e->trades[oldest].account_next;
        if (a->trades_head == SLOT_NONE) a->trades_tail = SLOT_NONE;
        a->trades_count--;
        engine_forget_trade(e, oldest);
    }
}

/* ---- lookups ---- */

/* Server ids ("O" + 20 digits) are unique across accounts and live in one namespace; a client's
 * own ids are unique only within its account. */
bool engine_is_server_order_id(const char *id) {
    if (id[0] != 'O') return false;
    /* the scan stops at the terminator (not a digit), so no strlen is needed first */
    for (int i = 1; i < 21; i++)
        if (id[i] < '0' || id[i] > '9') return false;
    return id[21] == '\0';
}

static uint32_t order_namespace(uint32_t account_slot, const char *id) {
    return engine_is_server_order_id(id) ? ORDER_NS_SERVER : account_slot;
}

typedef struct order_key {
    const engine *e;
    uint32_t ns;
    const char *id;
    uint64_t seq; /* the number in a server id, which equals the order's seq */
} order_key;

static bool order_matches(const void *ctx, uint32_t slot) {
    const order_key *k = ctx;
    const order *o = &k->e->orders[slot];
    if (o->id_namespace != k->ns) return false;
    /* a server id is its sequence number: compare it on the order's first cache line instead
     * of the id text on its last */
    if (k->ns == ORDER_NS_SERVER) return o->seq == k->seq;
    return strcmp(o->order_id, k->id) == 0;
}

static order_key make_order_key(const engine *e, uint32_t ns, const char *id) {
    order_key k = {e, ns, id, 0};
    if (ns == ORDER_NS_SERVER)
        for (int i = 1; i < 21; i++)
            k.seq = k.seq * 10 + (uint64_t)(id[i] - '0');
    return k;
}

uint32_t engine_find_order_slot(const engine *e, uint32_t account_slot, const char *order_id) {
    order_key k = make_order_key(e, order_namespace(account_slot, order_id), order_id);
    uint32_t slot = idmap_find(&e->order_map, idmap_hash_str(k.ns, order_id), order_matches, &k);
    if (slot != SLOT_NONE && e->orders[slot].account != account_slot) return SLOT_NONE;
    return slot;
}

int engine_register_order(engine *e, uint32_t slot) {
    order *o = &e->orders[slot];
    o->id_namespace = order_namespace(o->account, o->order_id);
    o->id_hash = idmap_hash_str(o->id_namespace, o->order_id);
    return idmap_insert(&e->order_map, o->id_hash, slot);
}

static void unregister_order(engine *e, uint32_t slot) {
    idmap_remove(&e->order_map, e->orders[slot].id_hash, slot);
}

typedef struct string_key {
    const engine *e;
    const char *id;
} string_key;

static bool instrument_matches(const void *ctx, uint32_t slot) {
    const string_key *k = ctx;
    const instrument *ins = &k->e->instruments[slot];
    return strcmp(ins->spec.instrument_id, k->id) == 0 || strcmp(ins->code, k->id) == 0;
}

uint32_t engine_find_instrument_slot(const engine *e, const char *id) {
    string_key k = {e, id};
    /* a lookup cache only: the answer is the same with or without it */
    if (e->recent_instrument < e->n_instruments && instrument_matches(&k, e->recent_instrument))
        return e->recent_instrument;
    return idmap_find(&e->instrument_map, idmap_hash_str(0, id), instrument_matches, &k);
}

static bool account_matches(const void *ctx, uint32_t slot) {
    const string_key *k = ctx;
    return strcmp(k->e->accounts[slot].account_id, k->id) == 0;
}

uint32_t engine_find_account_slot(const engine *e, const char *id) {
    string_key k = {e, id};
    return idmap_find(&e->account_map, idmap_hash_str(0, id), account_matches, &k);
}

static uint64_t position_key(uint32_t account_slot, uint32_t instrument_slot) {
    return ((uint64_t)account_slot << 32) | instrument_slot;
}

uint32_t engine_find_position_slot(const engine *e, uint32_t account_slot,
                                   uint32_t instrument_slot) {
    return idmap_find(&e->position_map, position_key(account_slot, instrument_slot), NULL, NULL);
}

uint32_t engine_get_position_slot(engine *e, uint32_t account_slot, uint32_t instrument_slot) {
    uint32_t slot = engine_find_position_slot(e, account_slot, instrument_slot);
    if (slot != SLOT_NONE) return slot;
    account *a = &e->accounts[account_slot];
    if (engine_reserve_positions(e, e->n_positions + 1) != 0) return SLOT_NONE;
    if (grow_array((void **)&a->positions, &a->cap_positions, a->n_positions + 1,
                   sizeof(uint32_t)) != 0)
        return SLOT_NONE;
    slot = e->n_positions;
    if (idmap_insert(&e->position_map, position_key(account_slot, instrument_slot), slot) != 0)
        return SLOT_NONE;
    e->n_positions++;
    position *p = &e->positions[slot];
    memset(p, 0, sizeof *p);
    p->account = account_slot;
    p->instrument = instrument_slot;
    e->position_epoch[slot] = 0;
    a->positions[a->n_positions++] = slot;
    return slot;
}

/* ---- events ---- */

void engine_emit(engine *e, const engine_event *ev) {
    if (e->sink) e->sink(e->sink_ctx, ev);
}

void engine_emit_order(engine *e, const order *o) {
    engine_event ev = {.type = EV_ORDER, .order = o};
    engine_emit(e, &ev);
}

void engine_touch_account(engine *e, uint32_t slot) {
    if (e->account_epoch[slot] == e->epoch) return;
    e->account_epoch[slot] = e->epoch;
    e->touched_accounts[e->n_touched_accounts++] = slot;
}

void engine_touch_position(engine *e, uint32_t slot) {
    if (e->position_epoch[slot] == e->epoch) return;
    e->position_epoch[slot] = e->epoch;
    e->touched_positions[e->n_touched_positions++] = slot;
}

/* One event for each position, account and book a command changed, after its order and trade
 * events: a client sees the order move, then the trade, then the balances. */
static void flush_touched(engine *e) {
    for (uint32_t i = 0; i < e->n_touched_positions; i++) {
        engine_event ev = {.type = EV_POSITION, .position = &e->positions[e->touched_positions[i]]};
        engine_emit(e, &ev);
    }
    for (uint32_t i = 0; i < e->n_touched_accounts; i++) {
        engine_event ev = {.type = EV_ACCOUNT, .account = &e->accounts[e->touched_accounts[i]]};
        engine_emit(e, &ev);
    }
    if (e->touched_instrument != SLOT_NONE) {
        const instrument *ins = &e->instruments[e->touched_instrument];
        if (e->ticked) {
            engine_event ev = {.type = EV_TICK, .instrument = ins};
            engine_emit(e, &ev);
        }
        if (e->book_changed) {
            engine_event ev = {.type = EV_BOOK, .instrument = ins};
            engine_emit(e, &ev);
        }
    }
    e->n_touched_positions = e->n_touched_accounts = 0;
    e->touched_instrument = SLOT_NONE;
    e->book_changed = e->ticked = false;
}

void engine_touch_instrument(engine *e, uint32_t slot, bool traded) {
    if (e->touched_instrument != SLOT_NONE && e->touched_instrument != slot) {
        /* a command that spans instruments (settlement, delisting) reports each as it goes */
        engine_event ev = {.type = EV_BOOK, .instrument = &e->instruments[e->touched_instrument]};
        engine_emit(e, &ev);
        e->ticked = false;
    }
    e->touched_instrument = slot;
    e->book_changed = true;
    e->ticked = e->ticked || traded;
}

int engine_fail(engine_result *r, int code, const char *fmt, ...) {
    r->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- hints ---- */

void engine_prefetch_account(const engine *e, uint32_t slot) {
    const account *a = &e->accounts[slot];
    engine_prefetch_bytes(&a->pre_balance,
                          offsetof(account, user_id) - offsetof(account, pre_balance));
}

void engine_prefetch_finish(const engine *e, uint32_t order_slot) {
    const order *o = &e->orders[order_slot];
    const account *a = &e->accounts[o->account];
    engine_prefetch_bytes(&e->positions[o->position], sizeof(position));
    if (a->finished_tail != SLOT_NONE)
        __builtin_prefetch(&e->orders[a->finished_tail].account_next, 1, 3);
    if (a->finished_count >= e->cfg.finished_orders_per_account && a->finished_head != SLOT_NONE)
        __builtin_prefetch(&e->orders[a->finished_head].account_next, 1, 3);
}

/* ---- orders leaving the live set ---- */

static void list_unlink_live(engine *e, account *a, uint32_t slot) {
    order *o = &e->orders[slot];
    if (o->account_prev != SLOT_NONE)
        e->orders[o->account_prev].account_next = o->account_next;
    else
        a->live_head = o->account_next;
    if (o->account_next != SLOT_NONE)
        e->orders[o->account_next].account_prev = o->account_prev;
    else
        a->live_tail = o->account_prev;
    a->live_count--;
}

void engine_forget_order(engine *e, uint32_t slot) {
    unregister_order(e, slot);
    release_order_slot(e, slot);
}

void engine_forget_trade(engine *e, uint32_t slot) {
    e->trades[slot].account_next = e->trade_free;
    e->trade_free = slot;
    e->trades_in_use--;
}

static void evict_oldest_finished(engine *e, account *a) {
    uint32_t slot = a->finished_head;
    order *o = &e->orders[slot];
    /* the finished list is walked forwards only: its back links are not kept up (the next
     * order's would be a write to a line nothing else needs now) */
    a->finished_head = o->account_next;
    if (a->finished_head == SLOT_NONE) a->finished_tail = SLOT_NONE;
    a->finished_count--;
    engine_forget_order(e, slot);
}

void engine_finish_order(engine *e, uint32_t slot) {
    order *o = &e->orders[slot];
    account *a = &e->accounts[o->account];
    uint32_t pslot = o->position;
    position *p = &e->positions[pslot];

    /* whatever is still frozen for the order goes back */
    if (o->offset == OFFSET_OPEN) {
        a->frozen_margin -= o->frozen_margin;
        a->frozen_commission -= o->frozen_commission;
        p->frozen_margin -= o->frozen_margin;
        o->frozen_margin = o->frozen_commission = 0;
    } else if (o->direction == DIR_SELL) {
        p->volume_long_frozen_today -= o->frozen_today;
        p->volume_long_frozen_his -= o->frozen_his;
    } else {
        p->volume_short_frozen_today -= o->frozen_today;
        p->volume_short_frozen_his -= o->frozen_his;
    }
    o->frozen_today = o->frozen_his = 0;
    p->live_orders[o->direction]--;
    list_unlink_live(e, a, slot);
    if (a->live_count == 0) {
        /* no live order: the sums are exactly zero, whatever rounding they gathered */
        a->frozen_margin = a->frozen_commission = 0;
    }
    if (p->live_orders[DIR_BUY] + p->live_orders[DIR_SELL] == 0) p->frozen_margin = 0;

    o->account_prev = SLOT_NONE; /* (see evict_oldest_finished) */
    o->account_next = SLOT_NONE;
    if (a->finished_tail != SLOT_NONE)
        e->orders[a->finished_tail].account_next = slot;
    else
        a->finished_head = slot;
    a->finished_tail = slot;
    a->finished_count++;
    engine_touch_account(e, o->account);
    engine_touch_position(e, pslot);
    while (a->finished_count > e->cfg.finished_orders_per_account && a->finished_head != slot)
        evict_oldest_finished(e, a);
}

/* ---- instruments ---- */

int engine_add_instrument(engine *e, const instrument_spec *spec, engine_result *r) {
    int rc = instrument_spec_validate(spec, r->message, sizeof r->message);
    if (rc != QAEX_OK) return r->code = rc;
    if (engine_find_instrument_slot(e, spec->instrument_id) != SLOT_NONE)
        return engine_fail(r, ERR_INVALID_ORDER, "instrument %s already exists",
                           spec->instrument_id);
    if (grow_array((void **)&e->instruments, &e->cap_instruments, e->n_instruments + 1,
                   sizeof(instrument)) != 0)
        return engine_fail(r, ERR_INTERNAL, "out of memory adding instrument %s",
                           spec->instrument_id);
    uint32_t slot = e->n_instruments;
    instrument *ins = &e->instruments[slot];
    if (instrument_init(ins, spec) != 0)
        return engine_fail(r, ERR_INTERNAL, "out of memory for the book of %s",
                           spec->instrument_id);
    market_init(&ins->market, e->cfg.kline_history, e->cfg.recent_trades);
    if (idmap_insert(&e->instrument_map, idmap_hash_str(0, ins->spec.instrument_id), slot) != 0) {
        instrument_free(ins);
        return engine_fail(r, ERR_INTERNAL, "out of memory adding instrument %s",
                           spec->instrument_id);
    }
    e->n_instruments++;
    /* the alias resolves to the first instrument with that code */
    if (engine_find_instrument_slot(e, ins->code) == SLOT_NONE &&
        idmap_insert(&e->instrument_map, idmap_hash_str(0, ins->code), slot) != 0) {
        idmap_remove(&e->instrument_map, idmap_hash_str(0, ins->spec.instrument_id), slot);
        e->n_instruments--;
        instrument_free(ins);
        return engine_fail(r, ERR_INTERNAL, "out of memory adding instrument %s",
                           spec->instrument_id);
    }
    engine_event ev = {.type = EV_INSTRUMENT, .instrument = ins};
    engine_emit(e, &ev);
    return QAEX_OK;
}

static instrument *instrument_for(engine *e, const char *id, engine_result *r) {
    uint32_t slot = engine_find_instrument_slot(e, id);
    if (slot == SLOT_NONE) {
        engine_fail(r, ERR_INSTRUMENT_NOT_FOUND, "instrument not found: %s", id);
        return NULL;
    }
    return &e->instruments[slot];
}

static int update_instrument(engine *e, const command *cmd, engine_result *r) {
    instrument *ins = instrument_for(e, cmd->u.instrument.spec.instrument_id, r);
    if (ins == NULL) return r->code;
    const instrument_spec *in = &cmd->u.instrument.spec;
    uint32_t f = cmd->u.instrument.fields;
    instrument_spec s = ins->spec;
    if (f & UPDATE_NAME) memcpy(s.instrument_name, in->instrument_name, sizeof s.instrument_name);
    if (f & UPDATE_MULTIPLIER) s.contract_multiplier = in->contract_multiplier;
    if (f & UPDATE_PRICE_TICK) s.price_tick = in->price_tick;
    if (f & UPDATE_MARGIN_RATE) s.margin_rate = in->margin_rate;
    if (f & UPDATE_COMMISSION_RATE) s.commission_rate = in->commission_rate;
    if (f & UPDATE_COMMISSION_PER_LOT) s.commission_per_lot = in->commission_per_lot;
    if (f & UPDATE_LIMIT_UP_RATE) s.limit_up_rate = in->limit_up_rate;
    if (f & UPDATE_LIMIT_DOWN_RATE) s.limit_down_rate = in->limit_down_rate;
    if (f & UPDATE_EXPIRE_DATE) memcpy(s.expire_date, in->expire_date, sizeof s.expire_date);
    int rc = instrument_spec_validate(&s, r->message, sizeof r->message);
    if (rc != QAEX_OK) return r->code = rc;
    bool terms_of_held_lots = (f & (UPDATE_MULTIPLIER | UPDATE_PRICE_TICK)) != 0;
    if (terms_of_held_lots) {
        /* lots and resting prices were struck under the old terms */
        uint32_t slot = (uint32_t)(ins - e->instruments);
        for (uint32_t i = 0; i < e->n_positions; i++) {
            const position *p = &e->positions[i];
            if (p->instrument == slot && !position_is_empty(p))
                return engine_fail(r, ERR_INVALID_ORDER,
                                   "cannot change the multiplier or tick of %s while orders or "
                                   "positions exist",
                                   s.instrument_id);
        }
    }
    instrument_spec old = ins->spec;
    ins->spec = s;
    if ((f & (UPDATE_LIMIT_UP_RATE | UPDATE_LIMIT_DOWN_RATE | UPDATE_PRICE_TICK)) &&
        instrument_rebase_band(ins) != 0) {
        ins->spec = old;
        instrument_rebase_band(ins);
        return engine_fail(r, ERR_INTERNAL, "out of memory re-spanning the book of %s",
                           s.instrument_id);
    }
    if (f & UPDATE_MARGIN_RATE) {
        /* held lots are margined at the new rate from now on (SPEC 3: position price x volume
         * x multiplier x margin rate), whatever fills come later */
        uint32_t slot = (uint32_t)(ins - e->instruments);
        for (uint32_t i = 0; i < e->n_positions; i++) {
            position *p = &e->positions[i];
            if (p->instrument != slot) continue;
            p->margin_long = p->position_cost_long * s.margin_rate;
            p->margin_short = p->position_cost_short * s.margin_rate;
            engine_touch_position(e, i);
            engine_touch_account(e, p->account);
        }
    }
    engine_event ev = {.type = EV_INSTRUMENT, .instrument = ins};
    engine_emit(e, &ev);
    return QAEX_OK;
}

static int set_instrument_status(engine *e, const command *cmd, engine_result *r) {
    instrument *ins = instrument_for(e, cmd->u.instrument_ref.instrument_id, r);
    if (ins == NULL) return r->code;
    const char *id = ins->spec.instrument_id;
    if (ins->status == INSTRUMENT_DELISTED)
        return engine_fail(r, ERR_INVALID_ORDER, "instrument %s is delisted", id);
    uint32_t slot = (uint32_t)(ins - e->instruments);
    switch (cmd->type) {
        case CMD_INSTRUMENT_SUSPEND:
            if (ins->status == INSTRUMENT_SUSPENDED)
                return engine_fail(r, ERR_INVALID_ORDER, "instrument %s is already suspended", id);
            ins->status = INSTRUMENT_SUSPENDED;
            break;
        case CMD_INSTRUMENT_RESUME:
            if (ins->status == INSTRUMENT_TRADING)
                return engine_fail(r, ERR_INVALID_ORDER, "instrument %s is already trading", id);
            ins->status = INSTRUMENT_TRADING;
            break;
        default: { /* delist: refused while anyone holds lots, naming them */
            char holders[QAEX_MSG_LEN] = "";
            size_t used = 0;
            uint32_t n = 0;
            for (uint32_t i = 0; i < e->n_accounts; i++) {
                const position *p = engine_position_find(e, &e->accounts[i], ins);
                if (p == NULL || position_volume_long(p) + position_volume_short(p) == 0) continue;
                const char *acc = e->accounts[i].account_id;
                if (used + strlen(acc) + 8 < sizeof holders)
                    used += (size_t)snprintf(holders + used, sizeof holders - used, "%s%s",
                                             n ? ", " : "", acc);
                n++;
            }
            if (n > 0)
                return engine_fail(r, ERR_INVALID_ORDER,
                                   "cannot delist %s: %u account(s) hold positions: %s", id, n,
                                   holders);
            /* resting orders are cancelled: nobody can trade a delisted instrument */
            for (uint32_t i = 0; i < e->n_accounts; i++) {
                uint32_t o = e->accounts[i].live_head;
                while (o != SLOT_NONE) {
                    uint32_t next = e->orders[o].account_next;
                    if (e->orders[o].instrument == slot)
                        matching_cancel_slot(e, o, cmd->ts_ns, "instrument delisted");
                    o = next;
                }
            }
            ins->status = INSTRUMENT_DELISTED;
            break;
        }
    }
    engine_event ev = {.type = EV_INSTRUMENT, .instrument = ins};
    engine_emit(e, &ev);
    return QAEX_OK;
}

/* ---- accounts and money ---- */

/* Money moves in cents at least, and below 1e15, where doubles still hold every cent. */
static bool money_amount_valid(double amount) {
    return isfinite(amount) && amount >= 0.01 && amount < 1e15;
}

static int open_account(engine *e, const command *cmd, engine_result *r) {
    const char *id = cmd->u.account_open.account_id;
    double cash = cmd->u.account_open.init_cash;
    if (id[0] == '\0') return engine_fail(r, ERR_INVALID_ORDER, "account_id must not be empty");
    if (!isfinite(cash) || cash < 0 || cash >= 1e15)
        return engine_fail(r, ERR_DEPOSIT, "init_cash must be a non-negative amount, got %g", cash);
    if (engine_find_account_slot(e, id) != SLOT_NONE)
        return engine_fail(r, ERR_ACCOUNT_EXISTS, "account already exists: %s", id);
    if (engine_reserve_accounts(e, e->n_accounts + 1) != 0)
        return engine_fail(r, ERR_INTERNAL, "out of memory opening account %s", id);
    uint32_t slot = e->n_accounts;
    if (idmap_insert(&e->account_map, idmap_hash_str(0, id), slot) != 0)
        return engine_fail(r, ERR_INTERNAL, "out of memory opening account %s", id);
    e->n_accounts++;
    account *a = &e->accounts[slot];
    memset(a, 0, sizeof *a);
    memcpy(a->account_id, id, sizeof a->account_id);
    memcpy(a->user_id, cmd->u.account_open.user_id[0] ? cmd->u.account_open.user_id : id,
           sizeof a->user_id);
    memcpy(a->account_name, cmd->u.account_open.account_name, sizeof a->account_name);
    a->pre_balance = cash;
    a->created_ns = cmd->ts_ns;
    a->live_head = a->live_tail = SLOT_NONE;
    a->finished_head = a->finished_tail = SLOT_NONE;
    a->trades_head = a->trades_tail = SLOT_NONE;
    e->account_epoch[slot] = 0;
    r->account = slot;
    engine_touch_account(e, slot);
    return QAEX_OK;
}

static account *account_for(engine *e, const char *id, engine_result *r) {
    uint32_t slot = engine_find_account_slot(e, id);
    if (slot == SLOT_NONE) {
        engine_fail(r, ERR_ACCOUNT_NOT_FOUND, "account not found: %s", id);
        return NULL;
    }
    r->account = slot;
    return &e->accounts[slot];
}

static int transfer(engine *e, const command *cmd, engine_result *r) {
    bool deposit = cmd->type == CMD_DEPOSIT;
    double amount = cmd->u.transfer.amount;
    account *a = account_for(e, cmd->u.transfer.account_id, r);
    if (a == NULL) return r->code;
    if (!money_amount_valid(amount))
        return engine_fail(r, deposit ? ERR_DEPOSIT : ERR_WITHDRAW,
                           "%s amount must be at least 0.01 and below 1e15, got %g",
                           deposit ? "deposit" : "withdraw", amount);
    account_view v;
    engine_view_of(e, a, &v);
    double balance_before = v.balance;
    if (!deposit) {
        if (a->frozen)
            return engine_fail(r, ERR_ACCOUNT_FROZEN, "account %s is frozen", a->account_id);
        if (amount > v.withdraw_quota + 1e-9)
            return engine_fail(r, ERR_WITHDRAW, "withdraw %.2f exceeds withdrawable %.2f", amount,
                               v.withdraw_quota);
        a->withdraw += amount;
    } else {
        a->deposit += amount;
    }
    e->txn_seq++;
    capital_transfer t = {
        .account = a, .is_deposit = deposit, .amount = amount, .ts_ns = cmd->ts_ns};
    char day[9] = {0};
    for (int i = 0, j = 0; e->trading_day[i] && j < 8; i++)
        if (e->trading_day[i] != '-') day[j++] = e->trading_day[i];
    snprintf(t.txn_id, sizeof t.txn_id, "TXN%s%08llu", day,
             (unsigned long long)(e->txn_seq % 100000000ULL));
    memcpy(r->txn_id, t.txn_id, sizeof r->txn_id);
    engine_view_of(e, a, &v);
    t.balance_before = balance_before;
    t.balance_after = v.balance;
    transfer_record rec = {.account = r->account,
                           .is_deposit = deposit,
                           .amount = amount,
                           .balance_before = balance_before,
                           .balance_after = v.balance,
                           .ts_ns = cmd->ts_ns};
    memcpy(rec.txn_id, t.txn_id, sizeof rec.txn_id);
    if (engine_log_transfer(e, &rec) != 0)
        return engine_fail(r, ERR_INTERNAL, "out of memory logging transaction %s", t.txn_id);
    engine_event ev = {.type = EV_TRANSFER, .transfer = &t};
    engine_emit(e, &ev);
    engine_touch_account(e, r->account);
    return QAEX_OK;
}

static int set_account_frozen(engine *e, const command *cmd, engine_result *r) {
    account *a = account_for(e, cmd->u.account_ref.account_id, r);
    if (a == NULL) return r->code;
    a->frozen = cmd->type == CMD_ACCOUNT_FREEZE;
    engine_touch_account(e, r->account);
    return QAEX_OK;
}

void engine_view_of(const engine *e, const account *a, account_view *v) {
    double position_profit = 0, float_profit = 0, margin = 0;
    for (uint32_t i = 0; i < a->n_positions; i++) {
        const position *p = &e->positions[a->positions[i]];
        int64_t vl = position_volume_long(p), vs = position_volume_short(p);
        if (vl == 0 && vs == 0) continue;
        const instrument *ins = &e->instruments[p->instrument];
        double value = instrument_mark_price(ins) * ins->spec.contract_multiplier;
        position_profit += (value * (double)vl - p->position_cost_long) +
                           (p->position_cost_short - value * (double)vs);
        float_profit +=
            (value * (double)vl - p->open_cost_long) + (p->open_cost_short - value * (double)vs);
        margin += p->margin_long + p->margin_short;
    }
    account_view_finish(a, position_profit, float_profit, margin, v);
}

/* ---- the dispatcher ---- */

engine *engine_create(const engine_config *cfg) {
    engine *e = calloc(1, sizeof *e);
    if (e == NULL) return NULL;
    e->cfg = *cfg;
    if (e->cfg.finished_orders_per_account < 1) e->cfg.finished_orders_per_account = 1;
    if (e->cfg.trades_per_account < 1) e->cfg.trades_per_account = 1;
    memcpy(e->trading_day, cfg->trading_day, sizeof e->trading_day);
    e->order_free = e->trade_free = SLOT_NONE;
    e->touched_instrument = SLOT_NONE;
    e->recent_instrument = SLOT_NONE;
    e->next_close_ms = INT64_MAX;
    if (idmap_init(&e->instrument_map, 16) || idmap_init(&e->account_map, 1024) ||
        idmap_init(&e->position_map, 1024) || idmap_init(&e->order_map, 4096) ||
        idmap_init(&e->user_map, 64)) {
        engine_destroy(e);
        return NULL;
    }
    return e;
}

void engine_destroy(engine *e) {
    if (e == NULL) return;
    for (uint32_t i = 0; i < e->n_instruments; i++)
        instrument_free(&e->instruments[i]);
    for (uint32_t i = 0; i < e->n_accounts; i++)
        free(e->accounts[i].positions);
    for (uint32_t i = 0; i < e->n_settlements; i++) {
        free(e->settlements[i].force_closed_accounts);
        free(e->settlements[i].rows);
    }
    free(e->instruments);
    pool_mem_free(&e->accounts_mem);
    free(e->positions);
    pool_mem_free(&e->orders_mem);
    pool_mem_free(&e->trades_mem);
    free(e->settlements);
    free(e->transfers);
    free(e->account_epoch);
    free(e->position_epoch);
    free(e->touched_accounts);
    free(e->touched_positions);
    idmap_free(&e->instrument_map);
    idmap_free(&e->account_map);
    idmap_free(&e->position_map);
    idmap_free(&e->order_map);
    idmap_free(&e->user_map);
    free(e->users);
    free(e);
}

void engine_set_event_sink(engine *e, engine_event_fn fn, void *ctx) {
    e->sink = fn;
    e->sink_ctx = ctx;
}

void engine_risk_config_of(const engine_config *cfg, engine_risk_config *out) {
    memset(out, 0, sizeof *out);
    out->max_position_ratio = cfg->max_position_ratio;
    out->max_order_value = cfg->max_order_value;
    out->risk_ratio_reject = cfg->risk_ratio_reject;
    out->force_close_threshold = cfg->force_close_threshold;
    out->min_order_volume = cfg->min_order_volume;
    out->max_order_volume = cfg->max_order_volume;
    out->self_trade_prevention = cfg->self_trade_prevention;
}

void engine_config_set_risk(engine_config *cfg, const engine_risk_config *c) {
    cfg->max_position_ratio = c->max_position_ratio;
    cfg->max_order_value = c->max_order_value;
    cfg->risk_ratio_reject = c->risk_ratio_reject;
    cfg->force_close_threshold = c->force_close_threshold;
    cfg->min_order_volume = c->min_order_volume;
    cfg->max_order_volume = c->max_order_volume;
    cfg->self_trade_prevention = c->self_trade_prevention;
}

bool engine_risk_config_equal(const engine_risk_config *a, const engine_risk_config *b) {
    return a->max_position_ratio == b->max_position_ratio &&
           a->max_order_value == b->max_order_value &&
           a->risk_ratio_reject == b->risk_ratio_reject &&
           a->force_close_threshold == b->force_close_threshold &&
           a->min_order_volume == b->min_order_volume &&
           a->max_order_volume == b->max_order_volume &&
           a->self_trade_prevention == b->self_trade_prevention;
}

/* The same bounds as the [risk] section of the config file. */
int engine_risk_config_check(const engine_risk_config *c, char *msg, size_t cap) {
    if (!(c->max_position_ratio > 0 && c->max_position_ratio <= 1))
        snprintf(msg, cap, "max_position_ratio must be in (0, 1], got %g", c->max_position_ratio);
    else if (!(c->max_order_value > 0 && c->max_order_value <= 1e15))
        snprintf(msg, cap, "max_order_value must be in (0, 1e15], got %g", c->max_order_value);
    else if (!(c->risk_ratio_reject > 0 && c->risk_ratio_reject <= 10))
        snprintf(msg, cap, "risk_ratio_reject must be in (0, 10], got %g", c->risk_ratio_reject);
    else if (!(c->force_close_threshold > 0 && c->force_close_threshold <= 10))
        snprintf(msg, cap, "force_close_threshold must be in (0, 10], got %g",
                 c->force_close_threshold);
    else if (c->min_order_volume < 1 || c->max_order_volume > 1000000000 ||
             c->min_order_volume > c->max_order_volume)
        snprintf(msg, cap,
                 "order volume limits must satisfy 1 <= min (%lld) <= max (%lld) <= 1000000000",
                 (long long)c->min_order_volume, (long long)c->max_order_volume);
    else
        return QAEX_OK;
    return ERR_CONFIG;
}

static int set_risk_config(engine *e, const command *cmd, engine_result *r) {
    char msg[QAEX_MSG_LEN];
    if (engine_risk_config_check(&cmd->u.risk, msg, sizeof msg) != QAEX_OK)
        return engine_fail(r, ERR_CONFIG, "%s", msg);
    engine_config_set_risk(&e->cfg, &cmd->u.risk);
    return QAEX_OK;
}

const engine_config *engine_get_config(const engine *e) {
    return &e->cfg;
}

int engine_apply(engine *e, const command *cmd, engine_result *r) {
    memset(r, 0, offsetof(engine_result, message) + 1);
    r->order = r->account = SLOT_NONE;
    r->txn_id[0] = '\0';
    e->epoch++;
    int rc;
    switch (cmd->type) {
        case CMD_INSTRUMENT_ADD:
            rc = engine_add_instrument(e, &cmd->u.instrument.spec, r);
            break;
        case CMD_INSTRUMENT_UPDATE:
            rc = update_instrument(e, cmd, r);
            break;
        case CMD_INSTRUMENT_SUSPEND:
        case CMD_INSTRUMENT_RESUME:
        case CMD_INSTRUMENT_DELIST:
            rc = set_instrument_status(e, cmd, r);
            break;
        case CMD_ACCOUNT_OPEN:
            rc = open_account(e, cmd, r);
            break;
        case CMD_DEPOSIT:
        case CMD_WITHDRAW:
            rc = transfer(e, cmd, r);
            break;
        case CMD_ACCOUNT_FREEZE:
        case CMD_ACCOUNT_UNFREEZE:
            rc = set_account_frozen(e, cmd, r);
            break;
        case CMD_ORDER_INSERT:
            rc = matching_insert(e, cmd, r);
            break;
        case CMD_ORDER_CANCEL:
            rc = matching_cancel(e, cmd, r);
            break;
        case CMD_AUCTION_OPEN:
            rc = matching_auction_open(e, cmd, r);
            break;
        case CMD_AUCTION_CLOSE:
            rc = matching_auction_close(e, cmd, r);
            break;
        case CMD_SETTLEMENT_SET_PRICE:
            rc = settlement_set_price(e, cmd, r);
            break;
        case CMD_SETTLEMENT_EXECUTE:
            rc = settlement_execute(e, cmd, r);
            break;
        case CMD_CLOCK:
            rc = QAEX_OK;
            break;
        case CMD_USER_REGISTER:
            rc = users_register(e, cmd, r);
            break;
        case CMD_RISK_CONFIG:
            rc = set_risk_config(e, cmd, r);
            break;
        default:
            rc = engine_fail(r, ERR_BAD_MESSAGE, "unknown command type %d", (int)cmd->type);
    }
    flush_touched(e);
    e->commands_applied++;
    /* only an accepted command moves the clock: a rejected one changes nothing at all */
    if (rc == QAEX_OK) {
        int64_t now_ms = cmd->ts_ns / 1000000;
        if (now_ms > e->clock_ms) e->clock_ms = now_ms;
        if (e->clock_ms >= e->next_close_ms) engine_close_due_bars(e);
    }
    return rc;
}

/* ---- K-lines on the command clock ---- */

typedef struct kline_ctx {
    engine *e;
    const instrument *ins;
} kline_ctx;

static void kline_closed(void *ctx, kline_period p, const kline *bar) {
    kline_ctx *k = ctx;
    engine_event ev = {.type = EV_KLINE, .instrument = k->ins, .kline = bar, .kline_period = p};
    engine_emit(k->e, &ev);
}

void engine_note_bars(engine *e, const instrument *ins) {
    int64_t next = market_next_close_ms(&ins->market);
    if (next < e->next_close_ms) e->next_close_ms = next;
}

void engine_record_market_trade(engine *e, instrument *ins, const market_trade *mt, double amount,
                                int64_t oi_before) {
    kline_ctx ctx = {e, ins};
    /* a command stamped before the clock (two stampers racing) joins the bars of the clock's
     * time, so no bar reopens after it closed */
    market_trade at = *mt;
    if (at.ts_ns / 1000000 < e->clock_ms) at.ts_ns = e->clock_ms * 1000000;
    (void)market_record_trade(&ins->market, &at, amount, oi_before, ins->stats.open_interest,
                              kline_closed, &ctx);
    engine_note_bars(e, ins);
}

void engine_close_due_bars(engine *e) {
    e->next_close_ms = INT64_MAX;
    for (uint32_t i = 0; i < e->n_instruments; i++) {
        instrument *ins = &e->instruments[i];
        kline_ctx ctx = {e, ins};
        /* out of memory only shortens the kept history; the bars themselves stay right */
        (void)market_advance_clock(&ins->market, e->clock_ms, kline_closed, &ctx);
        engine_note_bars(e, ins);
    }
}

int engine_log_transfer(engine *e, const transfer_record *t) {
    if (e->transfers_count == e->transfers_cap && e->transfers_cap < TRANSFER_LOG_SIZE) {
        uint32_t cap = e->transfers_cap ? e->transfers_cap * 2 : 64;
        if (cap > TRANSFER_LOG_SIZE) cap = TRANSFER_LOG_SIZE;
        transfer_record *grown = malloc((size_t)cap * sizeof *grown);
        if (grown == NULL) return -1;
        for (uint32_t i = 0; i < e->transfers_count; i++)
            grown[i] = e->transfers[(e->transfers_start + i) % e->transfers_cap];
        free(e->transfers);
        e->transfers = grown;
        e->transfers_cap = cap;
        e->transfers_start = 0;
    }
    if (e->transfers_count == e->transfers_cap) { /* full: the oldest gives way */
        e->transfers[e->transfers_start] = *t;
        e->transfers_start = (e->transfers_start + 1) % e->transfers_cap;
    } else {
        e->transfers[(e->transfers_start + e->transfers_count++) % e->transfers_cap] = *t;
    }
    return 0;
}

uint32_t engine_transfer_count(const engine *e) {
    return e->transfers_count;
}

const transfer_record *engine_transfer_at(const engine *e, uint32_t i) {
    return i < e->transfers_count ? &e->transfers[(e->transfers_start + i) % e->transfers_cap]
                                  : NULL;
}

int engine_add_settlement(engine *e, const settlement_result *sr) {
    if (grow_array((void **)&e->settlements, &e->cap_settlements, e->n_settlements + 1,
                   sizeof(settlement_result)) != 0)
        return -1;
    e->settlements[e->n_settlements++] = *sr;
    /* per-account lines are kept for a window of days; the history store keeps them all */
    if (e->n_settlements > SETTLEMENT_DETAIL_DAYS) {
        settlement_result *old = &e->settlements[e->n_settlements - SETTLEMENT_DETAIL_DAYS - 1];
        free(old->rows);
        old->rows = NULL;
        old->n_rows = 0;
    }
    return 0;
}

/* ---- queries ---- */

const char *engine_trading_day(const engine *e) {
    return e->trading_day;
}

uint64_t engine_commands_applied(const engine *e) {
    return e->commands_applied;
}

void engine_market_snapshot(const instrument *ins, int depth, market_snapshot *out) {
    int64_t ticks[MARKET_SNAPSHOT_DEPTH];
    if (depth > MARKET_SNAPSHOT_DEPTH) depth = MARKET_SNAPSHOT_DEPTH;
    if (depth < 0) depth = 0;
    out->depth_bid = book_depth(&ins->book, DIR_BUY, depth, ticks, out->bid_volume);
    for (int i = 0; i < out->depth_bid; i++)
        out->bid_price[i] = instrument_tick_to_price(ins, ticks[i]);
    out->depth_ask = book_depth(&ins->book, DIR_SELL, depth, ticks, out->ask_volume);
    for (int i = 0; i < out->depth_ask; i++)
        out->ask_price[i] = instrument_tick_to_price(ins, ticks[i]);
    for (int i = out->depth_bid; i < depth; i++) {
        out->bid_price[i] = 0;
        out->bid_volume[i] = 0;
    }
    for (int i = out->depth_ask; i < depth; i++) {
        out->ask_price[i] = 0;
        out->ask_volume[i] = 0;
    }
    const market_stats *st = &ins->stats;
    const instrument_spec *sp = &ins->spec;
    /* not the mark price, which is the settlement price before the day's first trade */
    out->last_price = instrument_last_price(ins);
    out->pre_close = sp->pre_close;
    out->pre_settlement = sp->pre_settlement;
    out->change_amount = sp->pre_close > 0 ? out->last_price - sp->pre_close : 0;
    out->change_percent = sp->pre_close > 0 ? out->change_amount / sp->pre_close * 100.0 : 0;
    out->has_trade = st->has_trade;
    out->open = st->open;
    out->high = st->high;
    out->low = st->low;
    double lots = (double)st->volume * sp->contract_multiplier;
    out->average = lots > 0 ? st->amount / lots : 0;
    out->volume = st->volume;
    out->turnover = st->amount;
    out->open_interest = st->open_interest;
    out->pre_open_interest = st->pre_open_interest;
    out->upper_limit = instrument_upper_limit(ins);
    out->lower_limit = instrument_lower_limit(ins);
    out->has_settlement = st->settlement_price_set;
    out->settlement = st->settlement_price;
}

int64_t engine_clock_ms(const engine *e) {
    return e->clock_ms;
}

int64_t engine_next_bar_close_ms(const engine *e) {
    return e->next_close_ms;
}

uint32_t engine_instrument_count(const engine *e) {
    return e->n_instruments;
}

const instrument *engine_instrument_at(const engine *e, uint32_t slot) {
    return slot < e->n_instruments ? &e->instruments[slot] : NULL;
}

const instrument *engine_instrument_of(const engine *e, uint32_t slot) {
    return engine_instrument_at(e, slot);
}

const instrument *engine_instrument_find(const engine *e, const char *id) {
    uint32_t slot = engine_find_instrument_slot(e, id);
    return slot == SLOT_NONE ? NULL : &e->instruments[slot];
}

uint32_t engine_account_count(const engine *e) {
    return e->n_accounts;
}

const account *engine_account_at(const engine *e, uint32_t slot) {
    return slot < e->n_accounts ? &e->accounts[slot] : NULL;
}

const account *engine_account_of(const engine *e, uint32_t slot) {
    return engine_account_at(e, slot);
}

const account *engine_account_find(const engine *e, const char *account_id) {
    uint32_t slot = engine_find_account_slot(e, account_id);
    return slot == SLOT_NONE ? NULL : &e->accounts[slot];
}

void engine_account_view(const engine *e, const account *a, account_view *v) {
    engine_view_of(e, a, v);
}

const position *engine_account_position(const engine *e, const account *a, uint32_t i) {
    return i < a->n_positions ? &e->positions[a->positions[i]] : NULL;
}

const position *engine_position_find(const engine *e, const account *a, const instrument *ins) {
    uint32_t slot =
        engine_find_position_slot(e, (uint32_t)(a - e->accounts), (uint32_t)(ins - e->instruments));
    return slot == SLOT_NONE ? NULL : &e->positions[slot];
}

void engine_position_view(const engine *e, const position *p, position_view *v) {
    position_view_of(p, &e->instruments[p->instrument], v);
}

const order *engine_order_find(const engine *e, const account *a, const char *order_id) {
    uint32_t slot = engine_find_order_slot(e, (uint32_t)(a - e->accounts), order_id);
    return slot == SLOT_NONE ? NULL : &e->orders[slot];
}

const order *engine_order_find_any(const engine *e, const char *order_id) {
    if (!engine_is_server_order_id(order_id)) return NULL;
    order_key k = make_order_key(e, ORDER_NS_SERVER, order_id);
    uint32_t slot =
        idmap_find(&e->order_map, idmap_hash_str(ORDER_NS_SERVER, order_id), order_matches, &k);
    return slot == SLOT_NONE ? NULL : &e->orders[slot];
}

const order *engine_order_at(const engine *e, uint32_t slot) {
    return slot < e->order_fresh ? &e->orders[slot] : NULL; /* (above: never used) */
}

const order *engine_order_first(const engine *e, const account *a) {
    uint32_t s = a->live_head != SLOT_NONE ? a->live_head : a->finished_head;
    return s == SLOT_NONE ? NULL : &e->orders[s];
}

const order *engine_order_next(const engine *e, const order *o) {
    if (o->account_next != SLOT_NONE) return &e->orders[o->account_next];
    if (order_status_alive(o->status)) {
        uint32_t s = e->accounts[o->account].finished_head;
        return s == SLOT_NONE ? NULL : &e->orders[s];
    }
    return NULL;
}

const trade *engine_trade_first(const engine *e, const account *a) {
    return a->trades_head == SLOT_NONE ? NULL : &e->trades[a->trades_head];
}

const trade *engine_trade_next(const engine *e, const trade *t) {
    return t->account_next == SLOT_NONE ? NULL : &e->trades[t->account_next];
}

uint32_t engine_settlement_count(const engine *e) {
    return e->n_settlements;
}

const settlement_result *engine_settlement_at(const engine *e, uint32_t i) {
    return i < e->n_settlements ? &e->settlements[i] : NULL;
}

const settlement_result *engine_settlement_find(const engine *e, const char *date) {
    for (uint32_t i = e->n_settlements; i-- > 0;)
        if (strcmp(e->settlements[i].settlement_date, date) == 0) return &e->settlements[i];
    return NULL;
}

void order_format_seq(char prefix, uint64_t seq, char *out, size_t outlen) {
    snprintf(out, outlen, "%c%020llu", prefix, (unsigned long long)seq);
}

static void format_exchange_id(const engine *e, uint32_t instrument_slot, uint64_t exchange_seq,
                               char *out, size_t outlen) {
    snprintf(out, outlen, "%s-%012llu", e->instruments[instrument_slot].code,
             (unsigned long long)exchange_seq);
}

void engine_order_exchange_id(const engine *e, const order *o, char *out, size_t outlen) {
    format_exchange_id(e, o->instrument, o->exchange_seq, out, outlen);
}

void engine_trade_exchange_order_id(const engine *e, const trade *t, char *out, size_t outlen) {
    format_exchange_id(e, t->instrument, t->exchange_seq, out, outlen);
}
