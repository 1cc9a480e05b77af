/* Determinism, snapshot and invariant soak test of the engine.
 *
 * A seeded generator (its own xorshift PRNG) writes a stream of commands over ~200 accounts and
 * four instruments: account opens, deposits and withdrawals (some invalid), limit orders near the
 * touch, crossing, market, IOC and FOK orders, CLOSE/CLOSETODAY/CLOSEYESTERDAY, cancels of live
 * and dead ids, suspend/resume, freeze/unfreeze, invalid commands, and a settlement (prices for
 * every instrument, then execute) every 100,000 commands; the third one marks two instruments 8%
 * down, so margin calls liquidate some accounts. The generator looks at engine A to
 * place orders near the touch and to pick live orders to cancel; every command is recorded in a
 * compact form so the same stream can be replayed.
 *
 *   A  applies the stream while it is generated; invariants are checked every CHECK_EVERY
 *      commands, after every settlement and at the end, through the public query API only.
 *   B  replays it: same result code for every command, same state hash at every checkpoint,
 *      same digest of the events.
 *   C  replays the first half, is saved with engine_snapshot_save and loaded into a fresh engine
 *      that replays the second half: same codes, same events, same final hash.
 *
 * 1,000,000 commands in the release build; 400,000 under the sanitizers, which run about five
 * times slower (the count used is printed).
 *
 * Money is checked two ways. Per account, from the events: balance = cash in (init cash,
 * deposits, withdrawals) - commission (EV_TRADE) + close profit (EV_TRADE) + position profit
 * realised by settlements (EV_ACCOUNT_SETTLED) + position profit now (account view). And across
 * accounts: every trade has two sides, so with average-cost accounting the sum over all accounts
 * of realised + settled + current position profit is the sum of sell values minus buy values plus
 * the value of the net position at the common mark price, which is zero because long lots equal
 * short lots in every instrument. Forced liquidation at settlement closes one side without a
 * counterparty; the test books the other side to a "house" so the identity stays exact. */
#include "check.h"
#include "engine/engine.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

#ifdef SANITIZED
#define N_COMMANDS 400000u
#else
#define N_COMMANDS 1000000u
#endif

#define SEED 0x9E3779B97F4A7C15ULL
/* settlement sequences start 2 commands before each multiple, so the half-way snapshot falls
 * between two settlement prices */
#define SETTLE_EVERY 100000u
#define CHECKPOINT_EVERY 50000u /* state hashes compared between A, B and C */
#define CHECK_EVERY 1000u       /* full invariant check of A */
#define N_INS 4
#define INS_UNKNOWN 4 /* an instrument id the engine does not know */
#define MAX_ACCOUNTS 200
#define FIRST_ACCOUNTS 150 /* opened at the start; the rest join during the run */
#define ACC_GHOST 0xFFFFu  /* an account that is never opened */
#define ACC_EMPTY 0xFFFEu  /* an empty account id */
#define T0_NS 1735783200000000000LL

static const char *const ins_ids[N_INS + 1] = {"CFFEX.IF2501", "CFFEX.IC2501", "CFFEX.IH2501",
                                               "SHFE.RB2505", "CFFEX.XX9999"};
static const char *const ins_codes[N_INS + 1] = {"IF2501", "IC2501", "IH2501", "RB2505", "XX9999"};

/* ---- the compact command record ---- */

enum { ID_NONE = 0, ID_CLIENT, ID_SERVER, ID_TOO_LONG };

typedef struct gcmd {
    uint8_t type;
    uint8_t ins; /* instrument index, or the spec index for CMD_INSTRUMENT_ADD */
    uint8_t dir, off, pt, tc, vc;
    uint8_t idkind;
    uint16_t acc;
    uint8_t alias; /* name the instrument by its code */
    uint8_t pad;
    int32_t volume;
    uint64_t id;  /* client order number or server sequence */
    double value; /* limit price, amount, init cash or settlement price */
} gcmd;

/* Specs the stream adds: the three defaults, one extra, a duplicate and an invalid one. */
#define N_SPECS 6
static instrument_spec specs[N_SPECS];

static void make_specs(void) {
    memset(specs, 0, sizeof specs);
    size_t n = engine_default_instruments(specs, 3);
    if (n != 3) {
        fprintf(stderr, "expected 3 default instruments, got %zu\n", n);
        exit(2);
    }
    instrument_spec *rb = &specs[3];
    snprintf(rb->instrument_id, sizeof rb->instrument_id, "%s", ins_ids[3]);
    snprintf(rb->instrument_name, sizeof rb->instrument_name, "rebar 2505");
    rb->instrument_type = INSTRUMENT_FUTURE;
    rb->contract_multiplier = 10;
    rb->price_tick = 1.0;
    rb->margin_rate = 0.08;
    rb->commission_rate = 0.0001;
    rb->commission_per_lot = 1.5;
    rb->limit_up_rate = 0.07;
    rb->limit_down_rate = 0.07;
    rb->pre_settlement = 3500.0;
    rb->pre_close = 3500.0;
    snprintf(rb->list_date, sizeof rb->list_date, "2024-05-15");
    snprintf(rb->expire_date, sizeof rb->expire_date, "2025-05-15");
    specs[4] = specs[0];              /* duplicate: refused */
    specs[5] = specs[3];              /* invalid: no multiplier */
    specs[5].contract_multiplier = 0; /* (its id is new, so only the terms are wrong) */
    snprintf(specs[5].instrument_id, sizeof specs[5].instrument_id, "SHFE.HC2505");
}

static void account_name(uint16_t acc, char *out, size_t n) {
    if (acc == ACC_EMPTY)
        out[0] = '\0';
    else if (acc == ACC_GHOST)
        snprintf(out, n, "ghost");
    else
        snprintf(out, n, "acct%03u", (unsigned)acc);
}

static void order_id_of(const gcmd *g, char *out) {
    switch (g->idkind) {
        case ID_CLIENT:
            snprintf(out, QAEX_ID_LEN, "c%" PRIu64, g->id);
            break;
        case ID_SERVER:
            snprintf(out, QAEX_ID_LEN, "O%020" PRIu64, g->id);
            break;
        case ID_TOO_LONG:
            memset(out, 'x', QAEX_ID_LEN); /* no terminator within the buffer */
            break;
        default:
            out[0] = '\0';
    }
}

static void expand(const gcmd *g, uint64_t i, command *c) {
    memset(c, 0, sizeof *c);
    c->type = (command_type)g->type;
    /* 150 ms apart: the stream spans days, so bars of every period close, on trades and on the
     * clock alone */
    c->ts_ns = T0_NS + (int64_t)(i + 1) * 150000000;
    uint8_t k = g->ins <= N_INS ? g->ins : INS_UNKNOWN; /* ADD: ins is the spec index */
    const char *ins_name = g->alias ? ins_codes[k] : ins_ids[k];
    switch (g->type) {
        case CMD_INSTRUMENT_ADD:
            c->u.instrument.spec = specs[g->ins];
            break;
        case CMD_INSTRUMENT_SUSPEND:
        case CMD_INSTRUMENT_RESUME:
        case CMD_INSTRUMENT_DELIST:
            snprintf(c->u.instrument_ref.instrument_id, QAEX_INSTRUMENT_ID_LEN, "%s", ins_name);
            break;
        case CMD_ACCOUNT_OPEN:
            account_name(g->acc, c->u.account_open.account_id, QAEX_ID_LEN);
            snprintf(c->u.account_open.account_name, QAEX_NAME_LEN, "Trader %u", (unsigned)g->acc);
            c->u.account_open.init_cash = g->value;
            break;
        case CMD_DEPOSIT:
        case CMD_WITHDRAW:
            account_name(g->acc, c->u.transfer.account_id, QAEX_ID_LEN);
            c->u.transfer.amount = g->value;
            break;
        case CMD_ACCOUNT_FREEZE:
        case CMD_ACCOUNT_UNFREEZE:
            account_name(g->acc, c->u.account_ref.account_id, QAEX_ID_LEN);
            break;
        case CMD_ORDER_INSERT: {
            order_request *q = &c->u.order;
            account_name(g->acc, q->account_id, QAEX_ID_LEN);
            order_id_of(g, q->order_id);
            snprintf(q->instrument_id, QAEX_INSTRUMENT_ID_LEN, "%s", ins_name);
            q->direction = (direction)g->dir;
            q->offset = (offset)g->off;
            q->price_type = (price_type)g->pt;
            q->time_condition = (time_condition)g->tc;
            q->volume_condition = (volume_condition)g->vc;
            q->limit_price = g->value;
            q->volume = g->volume;
            break;
        }
        case CMD_ORDER_CANCEL:
            account_name(g->acc, c->u.cancel.account_id, QAEX_ID_LEN);
            order_id_of(g, c->u.cancel.order_id);
            if (g->idkind == ID_TOO_LONG) c->u.cancel.order_id[QAEX_ID_LEN - 1] = '\0';
            break;
        case CMD_SETTLEMENT_SET_PRICE:
            snprintf(c->u.settlement_price.instrument_id, QAEX_INSTRUMENT_ID_LEN, "%s", ins_name);
            c->u.settlement_price.price = g->value;
            break;
        default:
            break;
    }
}

/* ---- the PRNG: xorshift64* ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t rnd(uint32_t n) {
    return (uint32_t)((rng_next() >> 32) % n);
}

static double unif(void) {
    return (double)(rng_next() >> 11) * 0x1.0p-53;
}

static bool chance(double p) {
    return unif() < p;
}

/* ---- the generator, which looks at engine A ---- */

typedef struct gen {
    const engine *e;
    uint32_t n_open;    /* accounts acct000 .. acct(n_open-1) exist */
    uint64_t next_id;   /* client order numbers */
    uint64_t settle_at; /* the next settlement sequence starts here */
    uint32_t n_settle;  /* settlement sequences started */
    int settle_step;    /* 0: none in progress; 1..N_INS set prices; N_INS+1 execute */
    bool early_execute; /* one settlement attempted before the prices are set */
    uint64_t early_at;
    uint16_t recent_acc[512];
    uint8_t recent_kind[512];
    uint64_t recent_id[512];
    uint32_t n_recent;
} gen;

static const instrument *gen_ins(const gen *g, int k) {
    return engine_instrument_find(g->e, ins_ids[k]);
}

static double tick_price(const instrument *ins, int64_t tick) {
    return (double)tick * ins->spec.price_tick;
}

static int64_t clamp_tick(const instrument *ins, int64_t t) {
    if (t > ins->upper_tick) return ins->upper_tick;
    if (t < ins->lower_tick) return ins->lower_tick;
    return t;
}

/* The touch of a book, with stand-ins around the mark price for an empty side. */
static void touch(const instrument *ins, int64_t *bid, int64_t *ask) {
    const book *b = &ins->book;
    int32_t lb = book_best(b, DIR_BUY), la = book_best(b, DIR_SELL);
    int64_t mark = 0;
    instrument_price_to_tick(ins, instrument_mark_price(ins), &mark);
    if (lb != BOOK_NO_LEVEL && la != BOOK_NO_LEVEL) {
        *bid = book_level_tick(b, lb);
        *ask = book_level_tick(b, la);
    } else if (lb != BOOK_NO_LEVEL) {
        *bid = book_level_tick(b, lb);
        *ask = *bid + 1 + (int64_t)rnd(3);
    } else if (la != BOOK_NO_LEVEL) {
        *ask = book_level_tick(b, la);
        *bid = *ask - 1 - (int64_t)rnd(3);
    } else {
        *bid = mark - 1 - (int64_t)rnd(2);
        *ask = mark + 1 + (int64_t)rnd(2);
    }
}

static int pick_ins(void) {
    uint32_t r = rnd(100);
    return r < 40 ? 0 : r < 65 ? 1 : r < 85 ? 2 : 3;
}

static uint16_t pick_acc(const gen *g) {
    return (uint16_t)rnd(g->n_open);
}

static void remember(gen *g, const gcmd *c) {
    uint32_t k = g->n_recent++ % 512;
    g->recent_acc[k] = c->acc;
    g->recent_kind[k] = c->idkind;
    g->recent_id[k] = c->id;
}

static void assign_id(gen *g, gcmd *c) {
    if (chance(0.8)) {
        c->idkind = ID_CLIENT;
        c->id = ++g->next_id;
    } else {
        c->idkind = ID_NONE;
    }
}

static int64_t small_volume(void) {
    return chance(0.9) ? 1 + (int64_t)rnd(5) : 1 + (int64_t)rnd(30);
}

/* A limit order resting near the touch, a crossing one, or IOC/FOK/market. */
static void gen_open_order(gen *g, gcmd *c) {
    int k = pick_ins();
    const instrument *ins = gen_ins(g, k);
    int64_t bid, ask;
    touch(ins, &bid, &ask);
    c->type = CMD_ORDER_INSERT;
    c->acc = pick_acc(g);
    c->ins = (uint8_t)k;
    c->alias = chance(0.2);
    c->dir = (uint8_t)rnd(2);
    c->off = OFFSET_OPEN;
    c->pt = PRICE_LIMIT;
    c->tc = chance(0.15) ? TC_GTC : TC_GFD;
    c->vc = VC_ANY;
    c->volume = (int32_t)small_volume();
    assign_id(g, c);
    uint32_t kind = rnd(100);
    int64_t t;
    if (kind < 62) { /* passive, at or behind the touch, sometimes improving it */
        int64_t behind = chance(0.25) ? -1 : (int64_t)rnd(6);
        t = c->dir == DIR_BUY ? bid - behind : ask + behind;
        if (c->dir == DIR_BUY && t >= ask) t = ask - 1;
        if (c->dir == DIR_SELL && t <= bid) t = bid + 1;
    } else { /* crossing */
        int64_t through = (int64_t)rnd(3);
        t = c->dir == DIR_BUY ? ask + through : bid - through;
        if (kind < 74) {
            c->tc = TC_IOC;
        } else if (kind < 82) {
            c->tc = TC_IOC;
            c->vc = VC_ALL; /* FOK, often bigger than the touch */
            c->volume = (int32_t)(1 + rnd(15));
        } else if (kind < 88) {
            c->pt = PRICE_ANY;
            c->tc = chance(0.5) ? TC_IOC : TC_GFD; /* the engine makes ANY orders IOC */
            c->volume = (int32_t)(1 + rnd(4));
        }
    }
    c->value = tick_price(ins, clamp_tick(ins, t));
    if (c->pt == PRICE_ANY && chance(0.5)) c->value = 0; /* ignored */
    if (c->idkind != ID_NONE) remember(g, c);
}

/* Closes lots an account holds, with the offset that fits them (sometimes more than it holds). */
static bool gen_close_order(gen *g, gcmd *c) {
    for (int attempt = 0; attempt < 4; attempt++) {
        int k = pick_ins();
        const instrument *ins = gen_ins(g, k);
        uint16_t acc = pick_acc(g);
        const account *a = engine_account_at(g->e, acc);
        const position *p = a ? engine_position_find(g->e, a, ins) : NULL;
        if (p == NULL) continue;
        int64_t lt = p->volume_long_today - p->volume_long_frozen_today;
        int64_t lh = p->volume_long_his - p->volume_long_frozen_his;
        int64_t st = p->volume_short_today - p->volume_short_frozen_today;
        int64_t sh = p->volume_short_his - p->volume_short_frozen_his;
        bool long_side;
        if (lt + lh > 0 && st + sh > 0)
            long_side = chance(0.5);
        else if (lt + lh > 0)
            long_side = true;
        else if (st + sh > 0)
            long_side = false;
        else
            continue;
        int64_t today = long_side ? lt : st, his = long_side ? lh : sh;
        c->type = CMD_ORDER_INSERT;
        c->acc = acc;
        c->ins = (uint8_t)k;
        c->dir = long_side ? DIR_SELL : DIR_BUY;
        c->pt = PRICE_LIMIT;
        c->tc = TC_GFD;
        c->vc = VC_ANY;
        int64_t avail;
        uint32_t which = rnd(10);
        if (which < 3 && today > 0) {
            c->off = OFFSET_CLOSETODAY;
            avail = today;
        } else if (which < 6 && his > 0) {
            c->off = OFFSET_CLOSEYESTERDAY;
            avail = his;
        } else {
            c->off = OFFSET_CLOSE;
            avail = today + his;
        }
        if (avail <= 0) avail = 1; /* CLOSETODAY/YESTERDAY of a bucket that is empty: refused */
        int64_t v = 1 + (int64_t)rnd((uint32_t)(avail < 20 ? avail : 20));
        if (chance(0.03)) v = avail + 1 + (int64_t)rnd(3); /* more than closable: 2005 */
        c->volume = (int32_t)v;
        assign_id(g, c);
        int64_t bid, ask;
        touch(ins, &bid, &ask);
        int64_t t;
        uint32_t how = rnd(10);
        if (how < 5) { /* crossing */
            t = c->dir == DIR_BUY ? ask + (int64_t)rnd(2) : bid - (int64_t)rnd(2);
            if (how == 0) c->tc = TC_IOC;
            if (how == 1) c->pt = PRICE_ANY;
        } else {
            t = c->dir == DIR_BUY ? bid - (int64_t)rnd(4) : ask + (int64_t)rnd(4);
        }
        c->value = tick_price(ins, clamp_tick(ins, t));
        if (c->idkind != ID_NONE) remember(g, c);
        return true;
    }
    return false;
}

static void set_id_from_string(gcmd *c, const char *id) {
    if (id[0] == 'O') {
        c->idkind = ID_SERVER;
        c->id = strtoull(id + 1, NULL, 10);
    } else {
        c->idkind = ID_CLIENT;
        c->id = strtoull(id + 1, NULL, 10);
    }
}

static void gen_cancel(gen *g, gcmd *c) {
    c->type = CMD_ORDER_CANCEL;
    uint32_t kind = rnd(100);
    if (kind < 75) { /* a live order */
        for (int attempt = 0; attempt < 6; attempt++) {
            uint16_t acc = pick_acc(g);
            const account *a = engine_account_at(g->e, acc);
            if (a == NULL || a->live_count == 0) continue;
            uint32_t n = rnd(a->live_count);
            const order *o = engine_order_first(g->e, a);
            while (n-- > 0 && o)
                o = engine_order_next(g->e, o);
            if (o == NULL) continue;
            c->acc = acc;
            set_id_from_string(c, o->order_id);
            return;
        }
    }
    if (kind < 92 && g->n_recent > 0) { /* an id issued earlier: live, finished or forgotten */
        uint32_t n = g->n_recent < 512 ? g->n_recent : 512;
        uint32_t k = rnd(n);
        c->acc = g->recent_acc[k];
        c->idkind = g->recent_kind[k];
        c->id = g->recent_id[k];
        return;
    }
    /* ids that never existed, another account's id, unknown accounts */
    c->acc = kind % 3 == 0 ? ACC_GHOST : pick_acc(g);
    c->idkind = chance(0.5) ? ID_CLIENT : ID_SERVER;
    c->id = chance(0.5) ? g->next_id + 1000000 + rnd(1000) : 1 + rnd(1000);
    if (chance(0.05)) c->idkind = ID_TOO_LONG;
}

static void gen_transfer(gen *g, gcmd *c) {
    c->acc = pick_acc(g);
    if (rnd(2) == 0) {
        c->type = CMD_DEPOSIT;
        c->value = chance(0.95) ? 1000.0 + rnd(1000000) : (chance(0.5) ? -5.0 : 0.0);
        return;
    }
    c->type = CMD_WITHDRAW;
    const account *a = engine_account_at(g->e, c->acc);
    account_view v;
    engine_account_view(g->e, a, &v);
    uint32_t kind = rnd(10);
    if (kind < 5)
        c->value = 100.0 + rnd(100000);
    else if (kind < 8)
        c->value = floor(v.withdraw_quota * (0.2 + unif())) + 1; /* sometimes too much: 2004 */
    else if (kind < 9)
        c->value = v.balance * 3 + 1;
    else
        c->value = -100.0;
    if (c->value <= 0 && kind < 9) c->value = 1.0;
    if (chance(0.02)) c->acc = ACC_GHOST;
}

static void gen_invalid(gen *g, gcmd *c) {
    gen_open_order(g, c);
    switch (rnd(11)) {
        case 0:
            c->acc = chance(0.5) ? ACC_GHOST : ACC_EMPTY;
            break;
        case 1:
            c->ins = INS_UNKNOWN;
            break;
        case 2:
            c->volume = chance(0.5) ? 0 : -3;
            break;
        case 3:
            c->volume = 20000; /* above max_order_volume */
            break;
        case 4: /* off the tick */
            c->pt = PRICE_LIMIT;
            c->value += gen_ins(g, c->ins < N_INS ? c->ins : 0)->spec.price_tick * 0.5;
            break;
        case 5: { /* outside the limit band */
            const instrument *ins = gen_ins(g, c->ins);
            c->pt = PRICE_LIMIT;
            c->value = tick_price(ins, chance(0.5) ? ins->upper_tick + 3 : ins->lower_tick - 3);
            break;
        }
        case 6:
            c->pt = PRICE_LIMIT;
            c->value = chance(0.5) ? -1.0 : NAN;
            break;
        case 7:
            c->dir = 5;
            break;
        case 8: /* a client id used before: refused while the order is still in memory */
            if (g->n_recent > 0) {
                uint32_t k = rnd(g->n_recent < 512 ? g->n_recent : 512);
                if (g->recent_kind[k] == ID_CLIENT) {
                    c->acc = g->recent_acc[k];
                    c->idkind = ID_CLIENT;
                    c->id = g->recent_id[k];
                }
            }
            break;
        case 9:
            c->idkind = chance(0.5) ? ID_SERVER : ID_TOO_LONG;
            c->id = 42;
            break;
        default:
            c->off = OFFSET_CLOSEYESTERDAY; /* usually nothing to close */
            c->volume = 500;
            break;
    }
}

/* Whether anyone holds lots of instrument k (any instrument when k is N_INS). */
static bool held(const engine *e, int k) {
    const instrument *want = k < N_INS ? engine_instrument_find(e, ins_ids[k]) : NULL;
    for (uint32_t i = 0; i < engine_account_count(e); i++) {
        const account *a = engine_account_at(e, i);
        for (uint32_t j = 0; engine_account_position(e, a, j); j++) {
            const position *p = engine_account_position(e, a, j);
            if (want && engine_instrument_at(e, p->instrument) != want) continue;
            if (position_volume_long(p) + position_volume_short(p) > 0) return true;
        }
    }
    return false;
}

/* The next command; `i` is its index in the stream. */
static void gen_next(gen *g, uint64_t i, gcmd *c) {
    memset(c, 0, sizeof *c);
    /* the start: instruments (with a duplicate and an invalid one), then the first accounts */
    if (i < N_SPECS) {
        c->type = CMD_INSTRUMENT_ADD;
        c->ins = (uint8_t)i;
        return;
    }
    if (g->n_open < FIRST_ACCOUNTS) {
        c->type = CMD_ACCOUNT_OPEN;
        c->acc = (uint16_t)g->n_open;
        /* a few small accounts run into the funds, position and risk limits */
        c->value = g->n_open < 12 ? 2e6 + 1e5 * rnd(10) : 5e7 + 1e6 * rnd(250);
        g->n_open++;
        return;
    }
    /* settlement: a price for every instrument near its mark, then execute */
    if (g->settle_step == 0 && i >= g->settle_at) {
        g->settle_step = 1;
        g->settle_at += SETTLE_EVERY;
        g->n_settle++;
    }
    if (g->settle_step > 0) {
        if (g->settle_step <= N_INS) {
            int k = g->settle_step - 1;
            const instrument *ins = gen_ins(g, k);
            int64_t mark = 0;
            instrument_price_to_tick(ins, instrument_mark_price(ins), &mark);
            c->type = CMD_SETTLEMENT_SET_PRICE;
            c->ins = (uint8_t)k;
            c->alias = (uint8_t)(k & 1);
            c->value = tick_price(ins, mark + (int64_t)rnd(9) - 4);
            if (g->n_settle == 3 && k < 2) /* a crash: margin calls liquidate */
                c->value = tick_price(ins, mark - (int64_t)(0.08 * (double)mark));
            g->settle_step++;
        } else {
            c->type = CMD_SETTLEMENT_EXECUTE;
            g->settle_step = 0;
        }
        return;
    }
    if (!g->early_execute && i >= SETTLE_EVERY / 2 && held(g->e, N_INS)) {
        /* prices not set yet: refused with 6001 and no change */
        g->early_execute = true;
        g->early_at = i;
        c->type = CMD_SETTLEMENT_EXECUTE;
        return;
    }

    uint32_t r = rnd(10000);
    if (r < 4500) {
        gen_open_order(g, c);
    } else if (r < 6500) {
        if (!gen_close_order(g, c)) gen_open_order(g, c);
    } else if (r < 8600) {
        gen_cancel(g, c);
    } else if (r < 9300) {
        gen_transfer(g, c);
    } else if (r < 9900) {
        gen_invalid(g, c);
    } else if (r < 9920) { /* suspend or resume */
        int k = pick_ins();
        const instrument *ins = gen_ins(g, k);
        bool suspended = ins->status == INSTRUMENT_SUSPENDED;
        c->ins = (uint8_t)k;
        if (chance(0.1)) /* the wrong one: already in that state */
            c->type = suspended ? CMD_INSTRUMENT_SUSPEND : CMD_INSTRUMENT_RESUME;
        else if (suspended)
            c->type = CMD_INSTRUMENT_RESUME;
        else
            c->type = chance(0.05) ? CMD_INSTRUMENT_SUSPEND : CMD_INSTRUMENT_RESUME;
        if (chance(0.05)) c->ins = INS_UNKNOWN;
    } else if (r < 9940) { /* freeze an account, or unfreeze a frozen one (they stay few) */
        c->acc = pick_acc(g);
        c->type = chance(0.3) ? CMD_ACCOUNT_FREEZE : CMD_ACCOUNT_UNFREEZE;
        for (uint32_t k = 0; c->type == CMD_ACCOUNT_UNFREEZE && k < g->n_open; k++)
            if (engine_account_at(g->e, k)->frozen) {
                c->acc = (uint16_t)k;
                break;
            }
        if (chance(0.05)) c->acc = ACC_GHOST;
    } else if (r < 9960) { /* a new account, a duplicate, or a bad one */
        c->type = CMD_ACCOUNT_OPEN;
        c->value = 3e7 + 1e6 * rnd(100);
        uint32_t kind = rnd(10);
        if (g->n_open < MAX_ACCOUNTS && kind < 6) {
            c->acc = (uint16_t)g->n_open++;
        } else if (kind < 8) {
            c->acc = pick_acc(g); /* exists: 2001 */
        } else if (kind < 9) {
            c->acc = ACC_EMPTY;
        } else {
            c->acc = (uint16_t)g->n_open; /* the next name with bad cash: 2003, opened later */
            c->value = -1.0;
        }
    } else if (r < 9965) { /* the clock alone */
        c->type = CMD_CLOCK;
    } else if (r < 9970) { /* delisting an instrument people hold: refused */
        c->type = CMD_INSTRUMENT_DELIST;
        c->ins = (uint8_t)pick_ins();
        if (!held(g->e, c->ins)) c->ins = INS_UNKNOWN; /* it would succeed */
    } else {                                           /* unknown command type */
        c->type = CMD_TYPE_COUNT + 3;
    }
}

/* ---- event sink: money tracking and a digest of the events ---- */

typedef struct tracker {
    const engine *e;
    bool money;       /* track money (engine A only) */
    bool second_half; /* digest_half accumulates */
    uint64_t digest;  /* all events */
    uint64_t digest_half;
    uint64_t n_trades, n_liquidations, n_settled, n_klines;
    double cash_in[MAX_ACCOUNTS];
    double commission[MAX_ACCOUNTS];
    double close_profit[MAX_ACCOUNTS];
    double settled_profit[MAX_ACCOUNTS];
    double traded_value; /* scale of the rounding error */
    /* the house: the other side of forced liquidations */
    double house_cash[N_INS];
    int64_t house_long[N_INS], house_short[N_INS];
} tracker;

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static uint64_t dbits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static void on_event(void *ctx, const engine_event *ev) {
    tracker *t = ctx;
    uint64_t h = (uint64_t)ev->type;
    switch (ev->type) {
        case EV_ORDER:
            h = mix(h, ev->order->seq);
            h = mix(h, (uint64_t)ev->order->status);
            h = mix(h, (uint64_t)ev->order->volume_left);
            h = mix(h, dbits(ev->order->frozen_margin));
            break;
        case EV_TRADE: {
            const trade *tr = ev->trade;
            h = mix(h, tr->seq);
            h = mix(h, tr->match_seq);
            h = mix(h, tr->account);
            h = mix(h, dbits(tr->price));
            h = mix(h, (uint64_t)tr->volume);
            h = mix(h, dbits(tr->commission));
            h = mix(h, dbits(tr->close_profit));
            t->n_trades++;
            if (t->money && tr->account < MAX_ACCOUNTS) {
                t->commission[tr->account] += tr->commission;
                t->close_profit[tr->account] += tr->close_profit;
                const instrument *ins = engine_instrument_at(t->e, tr->instrument);
                double value = tr->price * (double)tr->volume * ins->spec.contract_multiplier;
                t->traded_value += value;
                if (tr->is_liquidation) {
                    t->n_liquidations++;
                    int k = (int)tr->instrument;
                    if (tr->direction == DIR_SELL) { /* a long was sold: the house buys */
                        t->house_cash[k] -= value;
                        t->house_long[k] += tr->volume;
                    } else {
                        t->house_cash[k] += value;
                        t->house_short[k] += tr->volume;
                    }
                }
            }
            break;
        }
        case EV_POSITION:
            h = mix(h, ((uint64_t)ev->position->account << 32) | ev->position->instrument);
            h = mix(h, (uint64_t)position_volume_long(ev->position));
            h = mix(h, (uint64_t)position_volume_short(ev->position));
            h = mix(h, dbits(ev->position->position_cost_long));
            break;
        case EV_ACCOUNT:
            h = mix(h, dbits(ev->account->commission));
            h = mix(h, dbits(ev->account->frozen_margin));
            h = mix(h, dbits(ev->account->close_profit));
            break;
        case EV_TRANSFER:
            h = mix(h, dbits(ev->transfer->amount));
            h = mix(h, dbits(ev->transfer->balance_after));
            h = mix(h, (uint64_t)ev->transfer->is_deposit);
            break;
        case EV_ACCOUNT_SETTLED: {
            const account_settlement *as = ev->settlement;
            h = mix(h, dbits(as->balance));
            h = mix(h, dbits(as->position_profit));
            h = mix(h, (uint64_t)as->force_close);
            if (t->money) {
                uint32_t slot = (uint32_t)(as->account - engine_account_at(t->e, 0));
                if (slot < MAX_ACCOUNTS) t->settled_profit[slot] += as->position_profit;
            }
            break;
        }
        case EV_SETTLEMENT:
            h = mix(h, ev->settlement_result->settled_accounts);
            h = mix(h, dbits(ev->settlement_result->total_profit));
            t->n_settled++;
            break;
        case EV_KLINE:
            t->n_klines++;
            h = mix(h, (uint64_t)ev->kline_period);
            h = mix(h, (uint64_t)ev->kline->start_ms);
            h = mix(h, dbits(ev->kline->close));
            h = mix(h, (uint64_t)ev->kline->volume);
            h = mix(h, (uint64_t)ev->kline->close_oi);
            break;
        case EV_BOOK:
        case EV_TICK:
        case EV_INSTRUMENT:
            h = mix(h, (uint64_t)ev->instrument->stats.volume);
            h = mix(h, (uint64_t)ev->instrument->status);
            break;
    }
    t->digest = mix(t->digest, h);
    if (t->second_half) t->digest_half = mix(t->digest_half, h);
}

/* Books the money a successful command moved in or out. */
static void track_cash(tracker *t, const gcmd *g, const engine_result *r) {
    if (!t->money || r->code != 0 || g->acc >= MAX_ACCOUNTS) return;
    if (g->type == CMD_ACCOUNT_OPEN || g->type == CMD_DEPOSIT) t->cash_in[g->acc] += g->value;
    if (g->type == CMD_WITHDRAW) t->cash_in[g->acc] -= g->value;
}

/* ---- invariants, through the public query API ---- */

static int inv_failures;
/* the largest rounding residues seen, reported at the end */
static double max_balance_residue, max_zero_sum_residue, max_frozen_residue;

#define INV(cond, ...)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (inv_failures < 25) {                                                               \
                fprintf(stderr,                                                                    \
                        "%s:%d: invariant failed after command %" PRIu64 " (%s): ", __FILE__,      \
                        __LINE__, at, #cond);                                                      \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
            inv_failures++;                                                                        \
            check_failures_in_test++;                                                              \
        }                                                                                          \
    } while (0)

static bool close_rel(double a, double b, double rel) {
    double scale = fmax(1.0, fmax(fabs(a), fabs(b)));
    return fabs(a - b) <= rel * scale;
}

/* Sums over the live orders of one account and instrument. */
typedef struct live_sums {
    double margin, commission;
    int64_t long_today, long_his, short_today, short_his; /* lots frozen by close orders */
    uint32_t count[2];
} live_sums;

static live_sums sums[MAX_ACCOUNTS + 8][N_INS];
static uint32_t book_orders[N_INS][2];

/* The book of one instrument is never crossed. */
static void check_uncrossed(const instrument *ins, uint64_t at) {
    const book *b = &ins->book;
    int32_t lb = book_best(b, DIR_BUY), la = book_best(b, DIR_SELL);
    if (lb != BOOK_NO_LEVEL && la != BOOK_NO_LEVEL)
        INV(book_level_tick(b, lb) < book_level_tick(b, la),
            "%s crossed: bid %" PRId64 " >= ask %" PRId64, ins->spec.instrument_id,
            book_level_tick(b, lb), book_level_tick(b, la));
}

static void check_book(const engine *e, uint32_t k, uint64_t at) {
    const instrument *ins = engine_instrument_at(e, k);
    const book *b = &ins->book;
    check_uncrossed(ins, at);
    for (int side = 0; side < 2; side++) {
        uint32_t orders_seen = 0;
        int64_t prev_tick = 0;
        bool first = true;
        for (int32_t lv = book_best(b, (direction)side); lv != BOOK_NO_LEVEL;
             lv = book_next_worse(b, (direction)side, lv)) {
            const book_level *l = book_level_at(b, (direction)side, lv);
            int64_t tick = book_level_tick(b, lv);
            if (!first)
                INV(side == DIR_BUY ? tick < prev_tick : tick > prev_tick,
                    "%s side %d levels out of order", ins->spec.instrument_id, side);
            first = false;
            prev_tick = tick;
            int64_t vol = 0;
            uint32_t n = 0;
            uint64_t prev_seq = 0;
            uint32_t prev_slot = SLOT_NONE;
            for (uint32_t s = l->head; s != SLOT_NONE;) {
                const order *o = engine_order_at(e, s);
                INV(o != NULL, "level links to slot %u outside the pool", s);
                if (o == NULL) break;
                INV(order_status_alive(o->status) && o->in_book, "dead order %s in the book",
                    o->order_id);
                INV(o->direction == (direction)side && o->price_tick == tick && o->instrument == k,
                    "order %s at the wrong level", o->order_id);
                INV(o->volume_left > 0, "resting order %s has volume_left %" PRId64, o->order_id,
                    o->volume_left);
                INV(o->seq > prev_seq, "level of %s out of time priority", o->order_id);
                INV(o->level_prev == prev_slot, "broken level back-link at %s", o->order_id);
                prev_seq = o->seq;
                prev_slot = s;
                vol += o->volume_left;
                n++;
                if (n > 10000000) break;
                s = o->level_next;
            }
            INV(l->tail == prev_slot, "level tail mismatch in %s", ins->spec.instrument_id);
            INV(l->volume == vol,
                "%s side %d tick %" PRId64 ": level volume %" PRId64 ", orders sum %" PRId64,
                ins->spec.instrument_id, side, tick, l->volume, vol);
            INV(l->count == n && n > 0, "%s level count %u, orders %u", ins->spec.instrument_id,
                l->count, n);
            INV(l->volume > 0, "empty or negative level %" PRId64 " in %s", l->volume,
                ins->spec.instrument_id);
            orders_seen += n;
        }
        INV(orders_seen == b->order_count[side], "%s side %d: %u orders in levels, count %u",
            ins->spec.instrument_id, side, orders_seen, b->order_count[side]);
        if (k < N_INS) book_orders[k][side] = orders_seen;
    }
}

static void check_invariants(const engine *e, const tracker *t, uint64_t at) {
    uint32_t n_acc = engine_account_count(e), n_ins = engine_instrument_count(e);
    INV(n_acc <= MAX_ACCOUNTS && n_ins == N_INS, "%u accounts, %u instruments", n_acc, n_ins);
    if (n_acc > MAX_ACCOUNTS || n_ins != N_INS) return;
    memset(sums, 0, sizeof sums);
    const engine_config *cfg = engine_get_config(e);

    /* orders, account by account */
    for (uint32_t i = 0; i < n_acc; i++) {
        const account *a = engine_account_at(e, i);
        double fm = 0, fc = 0;
        uint32_t live = 0, finished = 0;
        for (const order *o = engine_order_first(e, a); o; o = engine_order_next(e, o)) {
            INV(o->account == i, "order %s of account %u listed under %u", o->order_id, o->account,
                i);
            INV(o->instrument < N_INS, "order %s on instrument %u", o->order_id, o->instrument);
            INV(engine_order_find(e, a, o->order_id) == o, "order %s of %s not found by id",
                o->order_id, a->account_id);
            INV(o->volume_left >= 0 && o->volume_left <= o->volume_orign,
                "order %s volume_left %" PRId64 " of %" PRId64, o->order_id, o->volume_left,
                o->volume_orign);
            INV(o->frozen_today >= 0 && o->frozen_his >= 0 && o->frozen_margin >= -1e-6 &&
                    o->frozen_commission >= -1e-6,
                "order %s has negative freezes", o->order_id);
            if (order_status_alive(o->status)) {
                INV(finished == 0, "live order %s after finished ones", o->order_id);
                live++;
                INV(o->volume_left > 0, "live order %s has volume_left %" PRId64, o->order_id,
                    o->volume_left);
                INV(o->in_book, "live order %s is not in the book", o->order_id);
                INV((o->status == ORDER_SUBMITTED) == (o->volume_left == o->volume_orign),
                    "order %s status %s with %" PRId64 " of %" PRId64 " left", o->order_id,
                    order_status_name(o->status), o->volume_left, o->volume_orign);
                INV(o->time_condition != TC_IOC, "IOC order %s is live", o->order_id);
                if (o->instrument >= N_INS) continue;
                live_sums *ls = &sums[i][o->instrument];
                ls->count[o->direction & 1]++;
                if (o->offset == OFFSET_OPEN) {
                    INV(o->frozen_today == 0 && o->frozen_his == 0, "open order %s freezes lots",
                        o->order_id);
                    fm += o->frozen_margin;
                    fc += o->frozen_commission;
                    ls->margin += o->frozen_margin;
                    ls->commission += o->frozen_commission;
                } else {
                    INV(o->frozen_margin == 0 && o->frozen_commission == 0,
                        "close order %s freezes money", o->order_id);
                    INV(o->frozen_today + o->frozen_his == o->volume_left,
                        "close order %s freezes %" PRId64 "+%" PRId64 " lots for %" PRId64 " left",
                        o->order_id, o->frozen_today, o->frozen_his, o->volume_left);
                    if (o->direction == DIR_SELL) {
                        ls->long_today += o->frozen_today;
                        ls->long_his += o->frozen_his;
                    } else {
                        ls->short_today += o->frozen_today;
                        ls->short_his += o->frozen_his;
                    }
                }
            } else {
                finished++;
                INV(o->status == ORDER_FILLED || o->status == ORDER_CANCELLED,
                    "finished order %s is %s", o->order_id, order_status_name(o->status));
                INV((o->status == ORDER_FILLED) == (o->volume_left == 0),
                    "order %s is %s with %" PRId64 " left", o->order_id,
                    order_status_name(o->status), o->volume_left);
                INV(o->frozen_margin == 0 && o->frozen_commission == 0 && o->frozen_today == 0 &&
                        o->frozen_his == 0,
                    "finished order %s still freezes %g/%g/%" PRId64 "/%" PRId64, o->order_id,
                    o->frozen_margin, o->frozen_commission, o->frozen_today, o->frozen_his);
                INV(!o->in_book, "finished order %s is in the book", o->order_id);
            }
            if (live + finished > 1000000) break;
        }
        INV(live == a->live_count, "%s: %u live orders listed, live_count %u", a->account_id, live,
            a->live_count);
        INV(finished == a->finished_count && finished <= cfg->finished_orders_per_account,
            "%s: %u finished orders, count %u", a->account_id, finished, a->finished_count);
        max_frozen_residue = fmax(max_frozen_residue, fabs(a->frozen_margin - fm));
        max_frozen_residue = fmax(max_frozen_residue, fabs(a->frozen_commission - fc));
        INV(close_rel(a->frozen_margin, fm, 1e-6), "%s frozen_margin %.6f, live orders freeze %.6f",
            a->account_id, a->frozen_margin, fm);
        INV(close_rel(a->frozen_commission, fc, 1e-6),
            "%s frozen_commission %.6f, live orders freeze %.6f", a->account_id,
            a->frozen_commission, fc);
        INV(a->frozen_margin >= -1e-6 && a->frozen_commission >= -1e-6,
            "%s has negative frozen money", a->account_id);
        uint32_t n_trades = 0;
        for (const trade *tr = engine_trade_first(e, a); tr; tr = engine_trade_next(e, tr))
            if (++n_trades > 1000000) break;
        INV(n_trades == a->trades_count && n_trades <= cfg->trades_per_account,
            "%s: %u trades retained, count %u", a->account_id, n_trades, a->trades_count);
    }

    /* positions */
    int64_t longs[N_INS] = {0}, shorts[N_INS] = {0};
    double pnl_sum = 0, house_pnl = 0, balance_sum = 0, expected_sum = 0, money_scale = 0;
    for (uint32_t i = 0; i < n_acc; i++) {
        const account *a = engine_account_at(e, i);
        for (uint32_t k = 0;; k++) {
            const position *p = engine_account_position(e, a, k);
            if (p == NULL) break;
            INV(p->account == i && p->instrument < N_INS, "position %u of %s is (%u, %u)", k,
                a->account_id, p->account, p->instrument);
            if (p->instrument >= N_INS) continue;
            const char *id = engine_instrument_at(e, p->instrument)->spec.instrument_id;
            const live_sums *ls = &sums[i][p->instrument];
            INV(p->volume_long_today >= 0 && p->volume_long_his >= 0 &&
                    p->volume_short_today >= 0 && p->volume_short_his >= 0,
                "%s %s negative lots %" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64, a->account_id,
                id, p->volume_long_today, p->volume_long_his, p->volume_short_today,
                p->volume_short_his);
            INV(p->volume_long_frozen_today >= 0 && p->volume_long_frozen_his >= 0 &&
                    p->volume_short_frozen_today >= 0 && p->volume_short_frozen_his >= 0,
                "%s %s negative frozen lots", a->account_id, id);
            INV(p->volume_long_frozen_today <= p->volume_long_today &&
                    p->volume_long_frozen_his <= p->volume_long_his &&
                    p->volume_short_frozen_today <= p->volume_short_today &&
                    p->volume_short_frozen_his <= p->volume_short_his,
                "%s %s frozen lots exceed held: long %" PRId64 "/%" PRId64 " of %" PRId64
                "/%" PRId64 ", short %" PRId64 "/%" PRId64 " of %" PRId64 "/%" PRId64,
                a->account_id, id, p->volume_long_frozen_today, p->volume_long_frozen_his,
                p->volume_long_today, p->volume_long_his, p->volume_short_frozen_today,
                p->volume_short_frozen_his, p->volume_short_today, p->volume_short_his);
            INV(p->volume_long_frozen_today == ls->long_today &&
                    p->volume_long_frozen_his == ls->long_his &&
                    p->volume_short_frozen_today == ls->short_today &&
                    p->volume_short_frozen_his == ls->short_his,
                "%s %s frozen lots %" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64
                ", close orders freeze %" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64,
                a->account_id, id, p->volume_long_frozen_today, p->volume_long_frozen_his,
                p->volume_short_frozen_today, p->volume_short_frozen_his, ls->long_today,
                ls->long_his, ls->short_today, ls->short_his);
            INV(close_rel(p->frozen_margin, ls->margin, 1e-6),
                "%s %s position frozen_margin %.6f, orders %.6f", a->account_id, id,
                p->frozen_margin, ls->margin);
            INV(p->live_orders[0] == ls->count[0] && p->live_orders[1] == ls->count[1],
                "%s %s live_orders %u/%u, listed %u/%u", a->account_id, id, p->live_orders[0],
                p->live_orders[1], ls->count[0], ls->count[1]);
            INV(p->margin_long >= 0 && p->margin_short >= 0 && p->position_cost_long >= 0 &&
                    p->position_cost_short >= 0,
                "%s %s negative cost or margin", a->account_id, id);
            if (position_volume_long(p) == 0)
                INV(p->position_cost_long == 0 && p->margin_long == 0 && p->open_cost_long == 0,
                    "%s %s flat long side keeps cost %g", a->account_id, id, p->position_cost_long);
            if (position_volume_short(p) == 0)
                INV(p->position_cost_short == 0 && p->margin_short == 0 && p->open_cost_short == 0,
                    "%s %s flat short side keeps cost %g", a->account_id, id,
                    p->position_cost_short);
            longs[p->instrument] += position_volume_long(p);
            shorts[p->instrument] += position_volume_short(p);
        }
        account_view v;
        engine_account_view(e, a, &v);
        INV(isfinite(v.balance) && isfinite(v.available), "%s balance %g available %g",
            a->account_id, v.balance, v.available);
        if (t != NULL && t->money) {
            double expected = t->cash_in[i] - t->commission[i] + t->close_profit[i] +
                              t->settled_profit[i] + v.position_profit;
            max_balance_residue = fmax(max_balance_residue, fabs(v.balance - expected));
            INV(fabs(v.balance - expected) <= 1e-4 + 1e-12 * fabs(v.balance),
                "%s balance %.6f, cash in %.2f - commission %.6f + close profit %.6f + settled "
                "%.6f + position profit %.6f = %.6f",
                a->account_id, v.balance, t->cash_in[i], t->commission[i], t->close_profit[i],
                t->settled_profit[i], v.position_profit, expected);
            pnl_sum += t->close_profit[i] + t->settled_profit[i] + v.position_profit;
            balance_sum += v.balance;
            expected_sum += t->cash_in[i] - t->commission[i];
            money_scale += fabs(v.balance);
        }
    }

    /* books; lots and open interest */
    for (uint32_t k = 0; k < N_INS; k++) {
        check_book(e, k, at);
        uint32_t live_buy = 0, live_sell = 0;
        for (uint32_t i = 0; i < n_acc; i++) {
            live_buy += sums[i][k].count[DIR_BUY];
            live_sell += sums[i][k].count[DIR_SELL];
        }
        INV(live_buy == book_orders[k][DIR_BUY] && live_sell == book_orders[k][DIR_SELL],
            "%s: %u/%u live orders, %u/%u in the book", ins_ids[k], live_buy, live_sell,
            book_orders[k][DIR_BUY], book_orders[k][DIR_SELL]);
        if (t != NULL && t->money) {
            const instrument *ins = engine_instrument_at(e, k);
            int64_t hl = t->house_long[k], hs = t->house_short[k];
            INV(longs[k] + hl == shorts[k] + hs,
                "%s: %" PRId64 " long lots, %" PRId64 " short (house %" PRId64 "/%" PRId64 ")",
                ins_ids[k], longs[k], shorts[k], hl, hs);
            INV(longs[k] + hl == ins->stats.open_interest,
                "%s: %" PRId64 " long lots (+%" PRId64 " liquidated), open interest %" PRId64,
                ins_ids[k], longs[k], hl, ins->stats.open_interest);
            double m = ins->spec.contract_multiplier;
            house_pnl += t->house_cash[k] + (double)(hl - hs) * instrument_mark_price(ins) * m;
        }
    }

    if (t != NULL && t->money) {
        /* the sums: balance and zero-sum profit, within the rounding of the traded value */
        double tol = 1e-3 + 1e-15 * t->traded_value;
        INV(fabs(balance_sum - (expected_sum + pnl_sum)) <= 1e-3 + 1e-12 * money_scale,
            "sum of balances %.6f, cash in - commission + profit = %.6f", balance_sum,
            expected_sum + pnl_sum);
        max_zero_sum_residue = fmax(max_zero_sum_residue, fabs(pnl_sum + house_pnl));
        INV(fabs(pnl_sum + house_pnl) <= tol,
            "sum over accounts of close + settled + position profit is %.6f, the house's %.6f: "
            "not zero-sum (tolerance %.6f)",
            pnl_sum, house_pnl, tol);
    }
}

/* ---- the runs ---- */

typedef struct stream {
    gcmd *cmds;
    int16_t *codes;
    uint64_t n;
    uint64_t *hashes; /* after command (k+1)*CHECKPOINT_EVERY-1 */
    uint32_t n_hashes;
    uint64_t mid_hash, final_hash;
    uint64_t digest, digest_half;
} stream;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static engine *new_engine(void) {
    engine_config cfg;
    engine_config_default(&cfg);
    /* small histories: eviction runs all the time and the state hash stays cheap */
    cfg.finished_orders_per_account = 40;
    cfg.trades_per_account = 40;
    return engine_create(&cfg);
}

static bool is_checkpoint(uint64_t i) {
    return (i + 1) % CHECKPOINT_EVERY == 0;
}

static uint32_t touched_instrument(const gcmd *g) {
    return g->type == CMD_ORDER_INSERT && g->ins < N_INS ? g->ins : SLOT_NONE;
}

/* A: generate, apply, check. */
static void run_a(stream *s) {
    engine *e = new_engine();
    CHECK(e != NULL);
    if (e == NULL) return;
    static tracker t;
    memset(&t, 0, sizeof t);
    t.e = e;
    t.money = true;
    engine_set_event_sink(e, on_event, &t);
    gen g;
    memset(&g, 0, sizeof g);
    g.e = e;
    g.settle_at = SETTLE_EVERY - 2;
    rng_state = SEED;
    uint64_t codes_by_class[10] = {0}, mid = s->n / 2;
    uint32_t checks = 0;
    for (uint64_t i = 0; i < s->n && inv_failures < 25; i++) {
        gcmd *gc = &s->cmds[i];
        gen_next(&g, i, gc);
        if (i == mid) {
            t.second_half = true;
            s->mid_hash = engine_state_hash(e);
        }
        command c;
        expand(gc, i, &c);
        engine_result r;
        int rc = engine_apply(e, &c, &r);
        CHECK_INT(rc, r.code);
        s->codes[i] = (int16_t)rc;
        codes_by_class[rc == 0 ? 0 : rc / 1000 < 10 ? rc / 1000 : 9]++;
        track_cash(&t, gc, &r);
        uint64_t at = i;
        /* spot checks of individual outcomes */
        if (gc->type == CMD_SETTLEMENT_EXECUTE && g.early_execute && i == g.early_at)
            INV(rc == ERR_SETTLEMENT_PRICE_MISSING, "early settlement returned %d", rc);
        else if (gc->type == CMD_SETTLEMENT_EXECUTE)
            INV(rc == 0, "settlement failed with %d: %s", rc, r.message);
        if (gc->type == CMD_INSTRUMENT_DELIST)
            INV(rc == (gc->ins < N_INS ? ERR_INVALID_ORDER : ERR_INSTRUMENT_NOT_FOUND),
                "delisting %u returned %d: %s", gc->ins, rc, r.message);
        if (gc->type == CMD_INSTRUMENT_ADD)
            INV((rc == 0) == (gc->ins < N_INS), "instrument add %u returned %d: %s", gc->ins, rc,
                r.message);
        uint32_t k = touched_instrument(gc);
        if (k != SLOT_NONE) check_uncrossed(engine_instrument_at(e, k), at);
        if ((i + 1) % CHECK_EVERY == 0 || gc->type == CMD_SETTLEMENT_EXECUTE || i + 1 == s->n) {
            check_invariants(e, &t, at);
            checks++;
        }
        if (is_checkpoint(i)) s->hashes[s->n_hashes++] = engine_state_hash(e);
    }
    s->final_hash = engine_state_hash(e);
    s->digest = t.digest;
    s->digest_half = t.digest_half;
    printf("A: %" PRIu64 " commands over %u accounts: %" PRIu64 " ok, %" PRIu64 " 1xxx, %" PRIu64
           " 2xxx, %" PRIu64 " 3xxx, %" PRIu64 " other rejections; %" PRIu64
           " trade events, %" PRIu64 " settlements, %" PRIu64
           " liquidation fills; %u invariant checks\n",
           s->n, engine_account_count(e), codes_by_class[0], codes_by_class[1], codes_by_class[2],
           codes_by_class[3],
           s->n - codes_by_class[0] - codes_by_class[1] - codes_by_class[2] - codes_by_class[3],
           t.n_trades, t.n_settled, t.n_liquidations, checks);
    printf("A: largest residues: balance vs events %.3g, zero-sum %.3g (traded value %.3g), "
           "frozen money vs live orders %.3g\n",
           max_balance_residue, max_zero_sum_residue, t.traded_value, max_frozen_residue);
    CHECK(t.n_settled >= s->n / SETTLE_EVERY - 1);
    CHECK(t.n_trades > s->n / 20);
    CHECK(t.n_liquidations > 0); /* the crash at the third settlement */
    CHECK(t.n_klines > 0);
    printf("A: %" PRIu64 " K-line bars closed\n", t.n_klines);
    engine_destroy(e);
}

/* Replays [from, to) on e, comparing codes; returns false at the first difference. */
static bool replay(engine *e, const stream *s, uint64_t from, uint64_t to, const char *name,
                   const uint64_t *hashes) {
    for (uint64_t i = from; i < to; i++) {
        command c;
        expand(&s->cmds[i], i, &c);
        engine_result r;
        int rc = engine_apply(e, &c, &r);
        if (rc != s->codes[i]) {
            fprintf(stderr, "%s: command %" PRIu64 " (type %u) returned %d, A returned %d: %s\n",
                    name, i, s->cmds[i].type, rc, s->codes[i], r.message);
            check_failures_in_test++;
            return false;
        }
        if (hashes && is_checkpoint(i)) {
            uint64_t h = engine_state_hash(e);
            if (h != hashes[i / CHECKPOINT_EVERY]) {
                fprintf(stderr, "%s: state hash differs from A after command %" PRIu64 "\n", name,
                        i);
                check_failures_in_test++;
                return false;
            }
        }
    }
    return true;
}

static void run_b(const stream *s) {
    engine *e = new_engine();
    /* B runs on pools sized in advance: capacity must change nothing that happens. A size that
     * cannot be had is refused and changes nothing either. */
    engine_memory m0, m1;
    engine_get_memory(e, &m0);
    CHECK_INT(engine_preallocate(e, UINT32_MAX, 0), -1);
    engine_get_memory(e, &m1);
    CHECK_INT(m1.orders_capacity, m0.orders_capacity);
    CHECK_INT(engine_preallocate(e, 100000, 50000), 0);
    engine_get_memory(e, &m0);
    CHECK(m0.orders_capacity >= 100000 && m0.trades_capacity >= 50000);
    CHECK(m0.order_index_capacity >= 100000 / 7 * 10);
    static tracker t;
    memset(&t, 0, sizeof t);
    t.e = e;
    engine_set_event_sink(e, on_event, &t);
    if (replay(e, s, 0, s->n, "B", s->hashes)) {
        CHECK(engine_state_hash(e) == s->final_hash);
        CHECK(t.digest == s->digest);
        printf("B: identical codes for %" PRIu64 " commands, hashes at %u checkpoints and the end "
               "(%016" PRIx64 "), event digest %016" PRIx64 "\n",
               s->n, s->n_hashes, s->final_hash, t.digest);
        engine_get_memory(e, &m1);
        printf("B: preallocated for %u orders and %u trades; at most %u and %u in memory at the "
               "end, pools %s\n",
               m0.orders_capacity, m0.trades_capacity, m1.orders_in_use, m1.trades_in_use,
               m1.orders_capacity == m0.orders_capacity ? "never grew" : "GREW");
        CHECK_INT(m1.orders_capacity, m0.orders_capacity);
        CHECK_INT(m1.trades_capacity, m0.trades_capacity);
        CHECK_INT(m1.order_index_capacity, m0.order_index_capacity);
    }
    engine_destroy(e);
}

static void run_c(const stream *s) {
    uint64_t mid = s->n / 2;
    engine *first = new_engine();
    if (!replay(first, s, 0, mid, "C", s->hashes)) {
        engine_destroy(first);
        return;
    }
    CHECK(engine_state_hash(first) == s->mid_hash);
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_INT(engine_snapshot_save(first, &buf, &len), 0);
    char err[256] = "";
    engine *e = engine_snapshot_load(buf, len, err, sizeof err);
    free(buf);
    if (e == NULL) {
        fprintf(stderr, "snapshot load failed: %s\n", err);
        check_failures_in_test++;
        engine_destroy(first);
        return;
    }
    uint64_t before = engine_state_hash(first), after = engine_state_hash(e);
    engine_destroy(first);
    CHECK(after == before);
    check_invariants(e, NULL, mid);
    static tracker t;
    memset(&t, 0, sizeof t);
    t.e = e;
    t.second_half = true;
    engine_set_event_sink(e, on_event, &t);
    if (replay(e, s, mid, s->n, "C(loaded)", s->hashes)) {
        check_invariants(e, NULL, s->n - 1);
        uint64_t h = engine_state_hash(e);
        CHECK(h == s->final_hash);
        CHECK(t.digest_half == s->digest_half);
        printf("C: snapshot of %zu bytes after %" PRIu64 " commands; loaded engine replayed the "
               "rest: codes, events and final hash %s\n",
               len, mid,
               h == s->final_hash && t.digest_half == s->digest_half ? "identical" : "DIFFER");
    }
    engine_destroy(e);
}

static void test_determinism_snapshot_invariants(void) {
    make_specs();
    stream s;
    memset(&s, 0, sizeof s);
    s.n = N_COMMANDS;
    s.cmds = calloc(s.n, sizeof *s.cmds);
    s.codes = calloc(s.n, sizeof *s.codes);
    s.hashes = calloc(s.n / CHECKPOINT_EVERY + 1, sizeof *s.hashes);
    CHECK(s.cmds && s.codes && s.hashes);
    if (!s.cmds || !s.codes || !s.hashes) return;
#ifdef SANITIZED
    const char *build = "sanitizer build: scaled down";
#else
    const char *build = "release build";
#endif
    printf("determinism: %" PRIu64 " commands (%s), seed %016llx\n", s.n, build,
           (unsigned long long)SEED);
    double t0 = now_s();
    run_a(&s);
    double t1 = now_s();
    if (check_failures_in_test == 0) run_b(&s);
    double t2 = now_s();
    if (check_failures_in_test == 0) run_c(&s);
    double t3 = now_s();
    printf("time: A (generate, apply, check) %.2fs, B %.2fs, C %.2fs\n", t1 - t0, t2 - t1, t3 - t2);
    free(s.cmds);
    free(s.codes);
    free(s.hashes);
}

int main(void) {
    RUN_TEST(test_determinism_snapshot_invariants);
    return CHECK_REPORT();
}
