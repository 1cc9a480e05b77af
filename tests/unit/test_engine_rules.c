/* The rules of SPEC 4 and the engine-level error codes of SPEC 7, one scenario each.
 *
 * Every figure is worked out by hand from the contract terms: IX2401 (fx_ix2401) has multiplier
 * 200, tick 0.5, margin rate 0.10, 0.05 per lot and a previous settlement of 100.0, so its limit
 * band is [90.0, 110.0], one lot at 100.0 is 20,000 of notional, 2,000 of margin and 0.05 of fee.
 * Every rejection is also checked to leave the whole engine state (engine_state_hash) unchanged
 * and to name the offending value in its message. */
#include "check.h"
#include "engine_fixture.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* Corrupted snapshots can ask for gigabytes (a count or a tick read from the bytes). Under
 * AddressSanitizer such a request returns NULL, as it would on a machine without the memory,
 * instead of stopping the whole test; the release build caps the address space instead. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=32";
}
#endif

static const char *const three[] = {"trader", "market", "other"};

/* A rejected command: the expected code, a message naming the value, and no state change. */
#define CHECK_REJECT(e, r, call, code, needle)                                                     \
    do {                                                                                           \
        uint64_t rj_before_ = engine_state_hash(e);                                                \
        CHECK_INT((call), (code));                                                                 \
        CHECK_CONTAINS((r).message, (needle));                                                     \
        CHECK(engine_state_hash(e) == rj_before_);                                                 \
    } while (0)

/* ---- helpers ---- */

static engine *make_engine(const engine_config *cfg, const char *const *accounts, int n,
                           double cash) {
    engine *e = engine_create(cfg);
    instrument_spec s = fx_ix2401();
    fx_add_instrument(e, &s);
    for (int i = 0; i < n; i++)
        fx_open_account(e, accounts[i], cash);
    return e;
}

/* An order on IX2401 with a time and volume condition. */
static int order_tc(engine *e, const char *acc, direction d, offset o, double price, int64_t volume,
                    time_condition tc, volume_condition vc, engine_result *r) {
    return fx_order_full(e, acc, "IX2401", d, o, price, volume, PRICE_LIMIT, tc, vc, NULL, r);
}

static int market_order(engine *e, const char *acc, direction d, offset o, int64_t volume,
                        engine_result *r) {
    return fx_order_full(e, acc, "IX2401", d, o, 0.0, volume, PRICE_ANY, TC_GFD, VC_ANY, NULL, r);
}

static int client_order(engine *e, const char *acc, direction d, double price, int64_t volume,
                        const char *client_id, engine_result *r) {
    return fx_order_full(e, acc, "IX2401", d, OFFSET_OPEN, price, volume, PRICE_LIMIT, TC_GFD,
                         VC_ANY, client_id, r);
}

/* The id of the order a result names, copied (pool pointers move as the pool grows). */
static void id_of(engine *e, const engine_result *r, char out[QAEX_ID_LEN]) {
    const order *o = r->order == SLOT_NONE ? NULL : engine_order_at(e, r->order);
    snprintf(out, QAEX_ID_LEN, "%s", o ? o->order_id : "");
}

static const order *find_order(engine *e, const char *acc, const char *id) {
    const account *a = engine_account_find(e, acc);
    return a ? engine_order_find(e, a, id) : NULL;
}

static position_view pos_view(engine *e, const char *acc, const char *ins) {
    position_view v;
    memset(&v, 0, sizeof v);
    const position *p = fx_position(e, acc, ins);
    if (p) engine_position_view(e, p, &v);
    return v;
}

static const account *acc_find(engine *e, const char *acc) {
    return engine_account_find(e, acc);
}

/* The account's retained trades: count, and prices/volumes/taker flags of the first `max`. */
static int trades_of(engine *e, const char *acc, double *prices, int64_t *volumes, int max) {
    int n = 0;
    const account *a = acc_find(e, acc);
    for (const trade *t = a ? engine_trade_first(e, a) : NULL; t; t = engine_trade_next(e, t)) {
        if (n < max) {
            if (prices) prices[n] = t->price;
            if (volumes) volumes[n] = t->volume;
        }
        n++;
    }
    return n;
}

static int account_cmd(engine *e, command_type type, const char *acc, engine_result *r) {
    command c = fx_command(type);
    snprintf(c.u.account_ref.account_id, sizeof c.u.account_ref.account_id, "%s", acc);
    return fx_apply(e, &c, r);
}

/* Best bid/ask of IX2401 as prices, or -1 when the side is empty. */
static double best_price(engine *e, const char *ins_id, direction side) {
    const instrument *ins = engine_instrument_find(e, ins_id);
    int32_t lv = book_best(&ins->book, side);
    return lv == BOOK_NO_LEVEL ? -1.0
                               : instrument_tick_to_price(ins, book_level_tick(&ins->book, lv));
}

static int64_t best_volume(engine *e, const char *ins_id, direction side) {
    const instrument *ins = engine_instrument_find(e, ins_id);
    int32_t lv = book_best(&ins->book, side);
    return lv == BOOK_NO_LEVEL ? 0 : book_level_at(&ins->book, side, lv)->volume;
}

/* ====================================================================================== */
/* 1001-1005: pre-trade risk                                                               */
/* ====================================================================================== */

static void test_1001_insufficient_funds(void) {
    const char *const accs[] = {"poor", "market"};
    engine *e = fx_engine(accs, 2, 10000.0);
    engine_result r;
    /* 10 lots: 20,000 margin + 0.50 fee against 10,000 */
    CHECK_REJECT(e, r, fx_order(e, "poor", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r),
                 ERR_INSUFFICIENT_FUNDS, "need 20000.50, available 10000.00");
    CHECK_REJECT(e, r, fx_order(e, "poor", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r),
                 ERR_INSUFFICIENT_FUNDS, "need 20000.50, available 10000.00");
    /* money frozen by a resting order is not available: 2 lots freeze 4,000.10 */
    CHECK_INT(fx_order(e, "poor", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 2, &r), 0);
    CHECK_MONEY(fx_view(e, "poor").available, 10000.0 - 3960.0 - 0.10);
    /* 3 more lots at 101 need 6,060.15, 20 cents more than the 6,039.90 left */
    CHECK_REJECT(e, r, fx_order(e, "poor", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 3, &r),
                 ERR_INSUFFICIENT_FUNDS, "need 6060.15, available 6039.90");
    engine_destroy(e);

    /* the boundary: margin + fee exactly equal to available is accepted (limits relaxed so only
     * the funds rule applies) */
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.max_position_ratio = 1.0;
    cfg.risk_ratio_reject = 1.0;
    e = make_engine(&cfg, NULL, 0, 0);
    CHECK_INT(fx_open_account(e, "exact", 20000.50), 0);
    CHECK_INT(fx_open_account(e, "short", 20000.49), 0);
    CHECK_INT(fx_order(e, "exact", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_MONEY(fx_view(e, "exact").available, 0.0);
    CHECK_REJECT(e, r, fx_order(e, "short", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r),
                 ERR_INSUFFICIENT_FUNDS, "need 20000.50, available 20000.49");
    engine_destroy(e);
}

static void test_1002_position_ratio(void) {
    const char *const accs[] = {"rich", "market"};
    engine *e = fx_engine(accs, 2, 1000000.0);
    engine_result r;
    /* 250 lots = 500,000 margin = exactly 50% of the balance: accepted */
    CHECK_INT(fx_order(e, "rich", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 250, &r), 0);
    /* one more lot: the frozen 500,000 counts, 502,000 > 500,000 */
    CHECK_REJECT(e, r, fx_order(e, "rich", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_POSITION_LIMIT, "502000.00");
    CHECK_CONTAINS(r.message, "1000000.00");
    CHECK_CONTAINS(r.message, "CFFEX.IX2401");
    /* both sides of the instrument count: a short lot at 105 adds 2,100 */
    CHECK_REJECT(e, r, fx_order(e, "rich", "IX2401", DIR_SELL, OFFSET_OPEN, 105.0, 1, &r),
                 ERR_POSITION_LIMIT, "502100.00");
    /* once filled, the held margin counts against the balance after fees (999,987.50) */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 250, &r), 0);
    CHECK_MONEY(fx_view(e, "rich").margin, 500000.0);
    CHECK_MONEY(fx_view(e, "rich").balance, 999987.50);
    CHECK_REJECT(e, r, fx_order(e, "rich", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_POSITION_LIMIT, "502000.00");
    CHECK_CONTAINS(r.message, "999987.50");
    /* the ratio is per instrument: another contract is still open to the account */
    instrument_spec defs[3];
    engine_default_instruments(defs, 3);
    CHECK_INT(fx_add_instrument(e, &defs[0]), 0);
    /* IF2501: 1 lot at 3,800 x 300 x 0.10 = 114,000 */
    CHECK_INT(fx_order(e, "rich", "IF2501", DIR_BUY, OFFSET_OPEN, 3800.0, 1, &r), 0);
    CHECK_MONEY(acc_find(e, "rich")->frozen_margin, 114000.0);
    engine_destroy(e);
}

/* A contract where price x volume can pass 10,000,000: 1,000 a lot, tick 1, multiplier 1. */
static instrument_spec spec_xv(void) {
    instrument_spec s = fx_ix2401();
    snprintf(s.instrument_id, sizeof s.instrument_id, "SHFE.XV2501");
    snprintf(s.instrument_name, sizeof s.instrument_name, "XV2501");
    s.contract_multiplier = 1;
    s.price_tick = 1.0;
    s.commission_per_lot = 0.0;
    s.pre_settlement = 1000.0;
    s.pre_close = 1000.0;
    return s;
}

static void test_1003_order_value(void) {
    engine *e = fx_engine(NULL, 0, 0);
    engine_result r;
    instrument_spec s = spec_xv();
    CHECK_INT(fx_add_instrument(e, &s), 0);
    CHECK_INT(fx_open_account(e, "whale", 100000000.0), 0);
    /* 10,000 x 1,000 = 10,000,000: at the limit, accepted */
    CHECK_INT(fx_order(e, "whale", "XV2501", DIR_BUY, OFFSET_OPEN, 1000.0, 10000, &r), 0);
    CHECK_REJECT(e, r, fx_order(e, "whale", "XV2501", DIR_BUY, OFFSET_OPEN, 1001.0, 10000, &r),
                 ERR_ORDER_VALUE, "order value 10010000.00");
    CHECK_CONTAINS(r.message, "10000000.00");
    CHECK_REJECT(e, r, fx_order(e, "whale", "XV2501", DIR_SELL, OFFSET_OPEN, 1001.0, 9991, &r),
                 ERR_ORDER_VALUE, "10000991.00");
    /* a market buy is valued at the upper limit, 1,100: 9,500 lots = 10,450,000 */
    CHECK_REJECT(e, r,
                 fx_order_full(e, "whale", "XV2501", DIR_BUY, OFFSET_OPEN, 0, 9500, PRICE_ANY,
                               TC_IOC, VC_ANY, NULL, &r),
                 ERR_ORDER_VALUE, "10450000.00");
    engine_destroy(e);
}

static void test_1004_risk_ratio(void) {
    /* the position ratio is relaxed so the risk ratio is the rule that bites */
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.max_position_ratio = 2.0;
    engine *e = make_engine(&cfg, NULL, 0, 0);
    engine_result r;
    CHECK_INT(fx_open_account(e, "a", 100000.0), 0);
    CHECK_INT(fx_open_account(e, "b", 80000.0), 0);
    CHECK_INT(fx_open_account(e, "market", 10000000.0), 0);
    /* 48 lots: 96,000 / 100,000 = 0.96 > 0.95, although the funds (96,002.40) are there */
    CHECK_REJECT(e, r, fx_order(e, "a", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 48, &r),
                 ERR_RISK_RATIO, "0.9600");
    CHECK_CONTAINS(r.message, "0.9500");
    /* 47 lots: 0.94, accepted; one more lot counts the frozen 94,000: 0.96 */
    CHECK_INT(fx_order(e, "a", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 47, &r), 0);
    CHECK_REJECT(e, r, fx_order(e, "a", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_RISK_RATIO, "0.9600");
    /* filled, the held margin counts the same way: 96,000 / 99,997.65 */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 47, &r), 0);
    CHECK_MONEY(fx_view(e, "a").margin, 94000.0);
    CHECK_REJECT(e, r, fx_order(e, "a", "IX2401", DIR_SELL, OFFSET_OPEN, 105.0, 1, &r),
                 ERR_RISK_RATIO, "0.96");
    /* exactly 0.95 is accepted: 38 lots = 76,000 on 80,000; 39 lots is 0.975 */
    CHECK_REJECT(e, r, fx_order(e, "b", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 39, &r),
                 ERR_RISK_RATIO, "0.9750");
    CHECK_INT(fx_order(e, "b", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 38, &r), 0);
    engine_destroy(e);
}

static void test_1005_self_trade(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    char mine[QAEX_ID_LEN];
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, &r), 0);
    id_of(e, &r, mine);
    /* the buy of 5 meets only market's 5, ahead in time: no self-trade, it fills */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 5, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    CHECK_INT(pos_view(e, "market", "IX2401").volume_short, 5);
    CHECK_INT(pos_view(e, "trader", "IX2401").volume_long, 5);
    /* now the trader's own ask is first in line */
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_SELF_TRADE, "trader");
    CHECK_CONTAINS(r.message, "100");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 3, &r),
                 ERR_SELF_TRADE, "trader");
    /* a market buy would sweep it too; so would closing lots against it */
    CHECK_REJECT(e, r, market_order(e, "trader", DIR_BUY, OFFSET_OPEN, 1, &r), ERR_SELF_TRADE,
                 "trader");
    /* a bid below the own ask does not cross: fine */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.5, 5, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_SUBMITTED);
    /* another account crosses the trader's ask normally */
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 5, &r), 0);
    CHECK_INT(find_order(e, "trader", mine)->status, ORDER_FILLED);
    engine_destroy(e);

    /* with self_trade_prevention off the account trades with itself */
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.self_trade_prevention = false;
    e = make_engine(&cfg, three, 3, 1000000.0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 5, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    position_view pv = pos_view(e, "trader", "IX2401");
    CHECK_INT(pv.volume_long, 5);
    CHECK_INT(pv.volume_short, 5);
    CHECK_MONEY(acc_find(e, "trader")->commission, 0.50);
    CHECK_MONEY(fx_view(e, "trader").margin, 20000.0);
    CHECK_INT(trades_of(e, "trader", NULL, NULL, 0), 2);
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->stats.volume, 5);
    CHECK_INT(ins->stats.open_interest, 5);
    engine_destroy(e);
}

/* ====================================================================================== */
/* 1006-1008: unknown account or instrument, invalid orders                               */
/* ====================================================================================== */

static void test_1006_unknown_account(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_REJECT(e, r, fx_order(e, "ghost", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_ACCOUNT_NOT_FOUND, "ghost");
    CHECK_REJECT(e, r, fx_cancel(e, "ghost", "O00000000000000000001", &r), ERR_ACCOUNT_NOT_FOUND,
                 "ghost");
    CHECK_REJECT(e, r, fx_transfer(e, CMD_DEPOSIT, "ghost", 100.0, &r), ERR_ACCOUNT_NOT_FOUND,
                 "ghost");
    CHECK_REJECT(e, r, fx_transfer(e, CMD_WITHDRAW, "ghost", 100.0, &r), ERR_ACCOUNT_NOT_FOUND,
                 "ghost");
    CHECK_REJECT(e, r, account_cmd(e, CMD_ACCOUNT_FREEZE, "ghost", &r), ERR_ACCOUNT_NOT_FOUND,
                 "ghost");
    CHECK_REJECT(e, r, account_cmd(e, CMD_ACCOUNT_UNFREEZE, "ghost", &r), ERR_ACCOUNT_NOT_FOUND,
                 "ghost");
    /* ids are exact: no case folding, no prefix match */
    CHECK_REJECT(e, r, fx_order(e, "Trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_ACCOUNT_NOT_FOUND, "Trader");
    CHECK_REJECT(e, r, fx_order(e, "trade", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_ACCOUNT_NOT_FOUND, "trade");
    engine_destroy(e);
}

static void test_1007_unknown_instrument(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_REJECT(e, r, fx_order(e, "trader", "CFFEX.IX9999", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_INSTRUMENT_NOT_FOUND, "CFFEX.IX9999");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX9999", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_INSTRUMENT_NOT_FOUND, "IX9999");
    CHECK_REJECT(e, r, fx_order(e, "trader", "SHFE.IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_INSTRUMENT_NOT_FOUND, "SHFE.IX2401");
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_INSTRUMENT_SUSPEND, "IX9999", &r),
                 ERR_INSTRUMENT_NOT_FOUND, "IX9999");
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IX9999", &r),
                 ERR_INSTRUMENT_NOT_FOUND, "IX9999");
    CHECK_REJECT(e, r, fx_set_settlement_price(e, "IX9999", 100.0, &r), ERR_INSTRUMENT_NOT_FOUND,
                 "IX9999");
    /* the full id and the short alias are the same instrument and the same book */
    const instrument *full = engine_instrument_find(e, "CFFEX.IX2401");
    CHECK(full != NULL);
    CHECK(engine_instrument_find(e, "IX2401") == full);
    CHECK_INT(fx_order(e, "market", "CFFEX.IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 2, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 2, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    CHECK(fx_position(e, "trader", "CFFEX.IX2401") == fx_position(e, "trader", "IX2401"));
    CHECK_INT(pos_view(e, "trader", "CFFEX.IX2401").volume_long, 2);
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 100.0, &r), 0);
    CHECK_MONEY(full->stats.settlement_price, 100.0);
    engine_destroy(e);
}

static void test_1008_volume(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 0, &r),
                 ERR_INVALID_ORDER, "volume 0");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10001, &r),
                 ERR_INVALID_ORDER, "volume 10001");
    CHECK_CONTAINS(r.message, "10000");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, -5, &r),
                 ERR_INVALID_ORDER, "volume -5");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 100.0, -1, &r),
                 ERR_INVALID_ORDER, "volume -1");
    /* the bounds themselves are valid: 1 and 10,000 lots */
    CHECK_INT(fx_open_account(e, "big", 1e9), 0);
    CHECK_INT(fx_order(e, "big", "IX2401", DIR_BUY, OFFSET_OPEN, 90.0, 10000, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 90.0, 1, &r), 0);
    engine_destroy(e);

    /* the bounds are configurable */
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.min_order_volume = 2;
    cfg.max_order_volume = 50;
    e = make_engine(&cfg, three, 3, 1000000.0);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_INVALID_ORDER, "volume 1 is outside [2, 50]");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 51, &r),
                 ERR_INVALID_ORDER, "volume 51 is outside [2, 50]");
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 50, &r), 0);
    engine_destroy(e);
}

static void test_1008_price(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 0.0, 1, &r),
                 ERR_INVALID_ORDER, "got 0");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, -100.0, 1, &r),
                 ERR_INVALID_ORDER, "-100");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, NAN, 1, &r),
                 ERR_INVALID_ORDER, "nan");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, INFINITY, 1, &r),
                 ERR_INVALID_ORDER, "inf");
    /* off the tick of 0.5 */
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.3, 1, &r),
                 ERR_INVALID_ORDER, "100.3");
    CHECK_CONTAINS(r.message, "0.5");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 99.75, 1, &r),
                 ERR_INVALID_ORDER, "99.75");
    /* the limit band [90, 110], both sides, both directions */
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 110.5, 1, &r),
                 ERR_INVALID_ORDER, "110.5");
    CHECK_CONTAINS(r.message, "[90, 110]");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 110.5, 1, &r),
                 ERR_INVALID_ORDER, "110.5");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 89.5, 1, &r),
                 ERR_INVALID_ORDER, "89.5");
    CHECK_CONTAINS(r.message, "[90, 110]");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 89.5, 1, &r),
                 ERR_INVALID_ORDER, "89.5");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 1000.0, 1, &r),
                 ERR_INVALID_ORDER, "1000");
    /* a price within a millionth of a tick is taken as that tick, and kept on it exactly */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 95.5000001, 1, &r), 0);
    CHECK(engine_order_at(e, r.order)->limit_price == 95.5);
    CHECK_INT(fx_cancel(e, "trader", engine_order_at(e, r.order)->order_id, &r), 0);
    /* the limits themselves are valid prices */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 90.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 110.0, 1, &r), 0);
    /* a market order ignores its limit price: NaN is fine there */
    CHECK_INT(fx_order_full(e, "other", "IX2401", DIR_BUY, OFFSET_OPEN, NAN, 1, PRICE_ANY, TC_IOC,
                            VC_ANY, NULL, &r),
              0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    engine_destroy(e);
}

/* Every price the engine derives from a tick (band edges, market orders, snapped limit prices)
 * is the double a user's decimal text parses to, not tick * 0.2 one ulp away from it. */
static void test_prices_are_decimals_of_the_tick(void) {
    instrument_spec specs[3];
    engine_default_instruments(specs, 3);
    CHECK_MONEY(specs[0].price_tick, 0.2);
    instrument ins;
    CHECK_INT(instrument_init(&ins, &specs[0]), 0);
    int differs_from_product = 0;
    for (int64_t k = ins.lower_tick; k <= ins.upper_tick; k++) {
        char text[32];
        snprintf(text, sizeof text, "%.1f", (double)k * 0.2);
        double decimal = strtod(text, NULL);
        if (instrument_tick_to_price(&ins, k) != decimal) {
            CHECK(instrument_tick_to_price(&ins, k) == decimal);
            break;
        }
        int64_t back = 0;
        CHECK(instrument_price_to_tick(&ins, decimal, &back) && back == k);
        differs_from_product += (double)k * 0.2 != decimal;
    }
    CHECK(differs_from_product > 0); /* the case this guards against does occur */
    instrument_free(&ins);

    static const char *const who[] = {"trader", "other"};
    engine *e = fx_engine(who, 2, 1e9);
    fx_add_instrument(e, &specs[0]);
    engine_result r;
    CHECK_INT(fx_order(e, "trader", "IF2501", DIR_BUY, OFFSET_OPEN, 3800.2, 1, &r), 0);
    CHECK(engine_order_at(e, r.order)->limit_price == 3800.2);
    CHECK_INT(fx_order_full(e, "other", "IF2501", DIR_BUY, OFFSET_OPEN, NAN, 1, PRICE_ANY, TC_IOC,
                            VC_ANY, NULL, &r),
              0);
    CHECK(engine_order_at(e, r.order)->limit_price == 4180.0);
    engine_destroy(e);
}

static void test_1008_instrument_status(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_SUSPEND, "IX2401", &r), 0);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_INVALID_ORDER, "suspended");
    CHECK_CONTAINS(r.message, "CFFEX.IX2401");
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_RESUME, "IX2401", &r), 0);
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_DELIST, "IX2401", &r), 0);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_INVALID_ORDER, "delisted");
    CHECK_CONTAINS(r.message, "CFFEX.IX2401");
    engine_destroy(e);
}

static void test_1008_enum_values(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_REJECT(e, r,
                 fx_order_full(e, "trader", "IX2401", (direction)7, OFFSET_OPEN, 100.0, 1,
                               PRICE_LIMIT, TC_GFD, VC_ANY, NULL, &r),
                 ERR_INVALID_ORDER, "direction");
    /* SPEC 7: the message names the offending value */
    CHECK_CONTAINS(r.message, "7");
    CHECK_REJECT(e, r,
                 fx_order_full(e, "trader", "IX2401", DIR_BUY, (offset)9, 100.0, 1, PRICE_LIMIT,
                               TC_GFD, VC_ANY, NULL, &r),
                 ERR_INVALID_ORDER, "offset");
    CHECK_CONTAINS(r.message, "9");
    CHECK_REJECT(e, r,
                 fx_order_full(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, (price_type)5,
                               TC_GFD, VC_ANY, NULL, &r),
                 ERR_INVALID_ORDER, "5");
    CHECK_REJECT(e, r,
                 fx_order_full(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, PRICE_LIMIT,
                               (time_condition)6, VC_ANY, NULL, &r),
                 ERR_INVALID_ORDER, "6");
    CHECK_REJECT(e, r,
                 fx_order_full(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, PRICE_LIMIT,
                               TC_GFD, (volume_condition)8, NULL, &r),
                 ERR_INVALID_ORDER, "8");
    CHECK_REJECT(e, r,
                 fx_order_full(e, "trader", "IX2401", (direction)-1, OFFSET_OPEN, 100.0, 1,
                               PRICE_LIMIT, TC_GFD, VC_ANY, NULL, &r),
                 ERR_INVALID_ORDER, "-1");
    /* client order ids: too long, or shaped like the server's ids */
    command c = fx_command(CMD_ORDER_INSERT);
    snprintf(c.u.order.account_id, sizeof c.u.order.account_id, "trader");
    snprintf(c.u.order.instrument_id, sizeof c.u.order.instrument_id, "IX2401");
    c.u.order.direction = DIR_BUY;
    c.u.order.limit_price = 100.0;
    c.u.order.volume = 1;
    memset(c.u.order.order_id, 'x', sizeof c.u.order.order_id); /* no terminating NUL */
    CHECK_REJECT(e, r, fx_apply(e, &c, &r), ERR_INVALID_ORDER, "order_id longer than 63");
    CHECK_REJECT(e, r, client_order(e, "trader", DIR_BUY, 100.0, 1, "O00000000000000000001", &r),
                 ERR_INVALID_ORDER, "O00000000000000000001");
    engine_destroy(e);
}

/* ====================================================================================== */
/* 2001-2005: accounts, money, positions                                                  */
/* ====================================================================================== */

static void test_2001_duplicate_account(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    command c = fx_command(CMD_ACCOUNT_OPEN);
    snprintf(c.u.account_open.account_id, sizeof c.u.account_open.account_id, "trader");
    c.u.account_open.init_cash = 5.0;
    CHECK_REJECT(e, r, fx_apply(e, &c, &r), ERR_ACCOUNT_EXISTS, "trader");
    CHECK_MONEY(fx_view(e, "trader").balance, 1000000.0);
    CHECK_INT(engine_account_count(e), 3);
    /* a negative opening balance is a failed deposit */
    snprintf(c.u.account_open.account_id, sizeof c.u.account_open.account_id, "newbie");
    c.u.account_open.init_cash = -1.0;
    CHECK_REJECT(e, r, fx_apply(e, &c, &r), ERR_DEPOSIT, "-1");
    c.u.account_open.init_cash = 0.0;
    CHECK_INT(fx_apply(e, &c, &r), 0);
    CHECK_MONEY(fx_view(e, "newbie").balance, 0.0);
    engine_destroy(e);
}

static void test_2002_frozen_account(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    char resting[QAEX_ID_LEN];
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 2, &r), 0);
    id_of(e, &r, resting);
    CHECK_INT(account_cmd(e, CMD_ACCOUNT_FREEZE, "trader", &r), 0);
    CHECK(acc_find(e, "trader")->frozen);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 1, &r),
                 ERR_ACCOUNT_FROZEN, "trader");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 101.0, 1, &r),
                 ERR_ACCOUNT_FROZEN, "trader");
    CHECK_REJECT(e, r, fx_transfer(e, CMD_WITHDRAW, "trader", 100.0, &r), ERR_ACCOUNT_FROZEN,
                 "trader");
    /* the resting order can still be cancelled, and its money comes back */
    CHECK_INT(fx_cancel(e, "trader", resting, &r), 0);
    CHECK_INT(find_order(e, "trader", resting)->status, ORDER_CANCELLED);
    CHECK_MONEY(fx_view(e, "trader").available, 1000000.0);
    /* other accounts are not affected */
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 1, &r), 0);
    /* unfreezing restores trading and withdrawals */
    CHECK_INT(account_cmd(e, CMD_ACCOUNT_UNFREEZE, "trader", &r), 0);
    CHECK(!acc_find(e, "trader")->frozen);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 1, &r), 0);
    CHECK_INT(fx_transfer(e, CMD_WITHDRAW, "trader", 100.0, &r), 0);
    CHECK_MONEY(fx_view(e, "trader").balance, 999900.0);
    engine_destroy(e);
}

static void test_2003_2004_transfers(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_REJECT(e, r, fx_transfer(e, CMD_DEPOSIT, "trader", 0.0, &r), ERR_DEPOSIT, "got 0");
    CHECK_REJECT(e, r, fx_transfer(e, CMD_DEPOSIT, "trader", -100.0, &r), ERR_DEPOSIT, "-100");
    CHECK_REJECT(e, r, fx_transfer(e, CMD_DEPOSIT, "trader", NAN, &r), ERR_DEPOSIT, "nan");
    CHECK_REJECT(e, r, fx_transfer(e, CMD_DEPOSIT, "trader", INFINITY, &r), ERR_DEPOSIT, "inf");
    /* the seed's 2004 covers an illegal withdrawal amount as well */
    CHECK_REJECT(e, r, fx_transfer(e, CMD_WITHDRAW, "trader", 0.0, &r), ERR_WITHDRAW, "got 0");
    CHECK_REJECT(e, r, fx_transfer(e, CMD_WITHDRAW, "trader", -5.0, &r), ERR_WITHDRAW, "-5");
    /* a resting order freezes 20,000.50: 979,999.50 can leave, not a cent more */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_REJECT(e, r, fx_transfer(e, CMD_WITHDRAW, "trader", 980000.0, &r), ERR_WITHDRAW,
                 "980000.00");
    CHECK_CONTAINS(r.message, "979999.50");
    CHECK_REJECT(e, r, fx_transfer(e, CMD_WITHDRAW, "trader", 979999.51, &r), ERR_WITHDRAW,
                 "979999.51");
    CHECK_INT(fx_transfer(e, CMD_WITHDRAW, "trader", 979999.50, &r), 0);
    CHECK_STR(r.txn_id, "TXN2025010200000001");
    account_view v = fx_view(e, "trader");
    CHECK_MONEY(v.available, 0.0);
    CHECK_MONEY(v.balance, 20000.50);
    CHECK_MONEY(acc_find(e, "trader")->withdraw, 979999.50);
    CHECK_INT(fx_transfer(e, CMD_DEPOSIT, "trader", 1234.56, &r), 0);
    CHECK_STR(r.txn_id, "TXN2025010200000002");
    CHECK_MONEY(fx_view(e, "trader").available, 1234.56);
    CHECK_MONEY(fx_view(e, "trader").balance, 21235.06);
    engine_destroy(e);
}

static void test_2005_insufficient_position(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    /* trader: long 10, all today's */
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 101.0, 11, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 10, requested 11");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSETODAY, 101.0, 11, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 10, requested 11");
    CHECK_REJECT(e, r,
                 fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSEYESTERDAY, 101.0, 1, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 0, requested 1");
    /* no short lots to buy back */
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_CLOSE, 99.0, 1, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 0, requested 1");
    /* a resting close order freezes 6 lots: only 4 remain closable */
    char close6[QAEX_ID_LEN];
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 105.0, 6, &r), 0);
    id_of(e, &r, close6);
    const position *p = fx_position(e, "trader", "IX2401");
    CHECK_INT(p->volume_long_frozen_today, 6);
    CHECK_INT(p->volume_long_frozen_his, 0);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 105.0, 5, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 4, requested 5");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSETODAY, 105.0, 5, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 4, requested 5");
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSETODAY, 106.0, 4, &r), 0);
    CHECK_INT(p->volume_long_frozen_today, 10);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 105.0, 1, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 0, requested 1");
    /* cancelling gives the lots back */
    CHECK_INT(fx_cancel(e, "trader", close6, &r), 0);
    CHECK_INT(p->volume_long_frozen_today, 4);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 105.0, 6, &r), 0);
    engine_destroy(e);
}

/* ====================================================================================== */
/* 3001-3003: orders                                                                       */
/* ====================================================================================== */

static void test_3001_3002_cancel(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    char mkt[QAEX_ID_LEN], filled[QAEX_ID_LEN], live[QAEX_ID_LEN];
    CHECK_REJECT(e, r, fx_cancel(e, "trader", "O00000000000000000099", &r), ERR_ORDER_NOT_FOUND,
                 "O00000000000000000099");
    CHECK_REJECT(e, r, fx_cancel(e, "trader", "no-such-id", &r), ERR_ORDER_NOT_FOUND, "no-such-id");
    /* another account's order, by server id and by client id: not found for this account */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 101.0, 5, &r), 0);
    id_of(e, &r, mkt);
    CHECK_REJECT(e, r, fx_cancel(e, "trader", mkt, &r), ERR_ORDER_NOT_FOUND, mkt);
    CHECK_INT(client_order(e, "market", DIR_SELL, 102.0, 1, "mkt-1", &r), 0);
    CHECK_REJECT(e, r, fx_cancel(e, "trader", "mkt-1", &r), ERR_ORDER_NOT_FOUND, "mkt-1");
    CHECK_INT(find_order(e, "market", mkt)->status, ORDER_SUBMITTED);
    /* a filled order cannot be cancelled */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 5, &r), 0);
    id_of(e, &r, filled);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    CHECK_REJECT(e, r, fx_cancel(e, "trader", filled, &r), ERR_ORDER_NOT_CANCELLABLE, filled);
    CHECK_CONTAINS(r.message, "Filled");
    CHECK_REJECT(e, r, fx_cancel(e, "market", mkt, &r), ERR_ORDER_NOT_CANCELLABLE, "Filled");
    /* nor a cancelled one, twice */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 1, &r), 0);
    id_of(e, &r, live);
    CHECK_INT(fx_cancel(e, "trader", live, &r), 0);
    CHECK_REJECT(e, r, fx_cancel(e, "trader", live, &r), ERR_ORDER_NOT_CANCELLABLE, "Cancelled");
    CHECK_CONTAINS(r.message, live);
    /* an IOC order is finished as soon as it is entered */
    CHECK_INT(order_tc(e, "trader", DIR_BUY, OFFSET_OPEN, 99.0, 1, TC_IOC, VC_ANY, &r), 0);
    id_of(e, &r, live);
    CHECK_REJECT(e, r, fx_cancel(e, "trader", live, &r), ERR_ORDER_NOT_CANCELLABLE, "Cancelled");
    engine_destroy(e);
}

static void test_3003_duplicate_client_id(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_INT(client_order(e, "trader", DIR_BUY, 99.0, 1, "my-1", &r), 0);
    CHECK_STR(engine_order_at(e, r.order)->order_id, "my-1");
    CHECK_REJECT(e, r, client_order(e, "trader", DIR_BUY, 98.0, 2, "my-1", &r), ERR_SUBMIT_FAILED,
                 "my-1");
    CHECK_CONTAINS(r.message, "trader");
    /* the same id in another account is another order */
    CHECK_INT(client_order(e, "market", DIR_BUY, 98.0, 3, "my-1", &r), 0);
    /* each account cancels its own "my-1" */
    CHECK_INT(fx_cancel(e, "trader", "my-1", &r), 0);
    CHECK_INT(find_order(e, "trader", "my-1")->status, ORDER_CANCELLED);
    CHECK_INT(find_order(e, "market", "my-1")->status, ORDER_SUBMITTED);
    CHECK_INT(find_order(e, "market", "my-1")->volume_orign, 3);
    /* a finished order still owns its id */
    CHECK_REJECT(e, r, client_order(e, "trader", DIR_BUY, 98.0, 2, "my-1", &r), ERR_SUBMIT_FAILED,
                 "my-1");
    engine_destroy(e);
}

/* ====================================================================================== */
/* 6001: settlement without prices                                                         */
/* ====================================================================================== */

/* A settlement price sets tomorrow's limits: one whose band the book cannot hold (an instrument
 * with it as previous settlement would be refused) is refused, and nothing changes. */
static void test_settlement_price_must_make_a_valid_band(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    /* IX2401: tick 0.5, limits +-10%: 5e7 would span 2e7 ticks (the most is 2^24) */
    CHECK_REJECT(e, r, fx_set_settlement_price(e, "IX2401", 5e7, &r), ERR_INVALID_ORDER,
                 "limit band");
    CHECK_CONTAINS(r.message, "5e+07");
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 4e7, &r), 0); /* 1.6e7 ticks: allowed */
    engine_destroy(e);
}

/* A good-till-cancelled order outside the limits the settlement sets for the next day is
 * cancelled at the settlement, with what it froze; one inside stays. Nothing trades at a price
 * outside the day's band. */
static void test_gtc_outside_the_new_band_is_cancelled(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_INT(fx_order_full(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 109.0, 1, PRICE_LIMIT,
                            TC_GTC, VC_ANY, "high", &r),
              0);
    CHECK_INT(fx_order_full(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 95.0, 1, PRICE_LIMIT,
                            TC_GTC, VC_ANY, "inside", &r),
              0);
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 95.0, &r), 0);
    CHECK_INT(fx_settle(e, &r), 0);
    /* the new band is [85.5, 104.5] */
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_MONEY(instrument_upper_limit(ins), 104.5);
    const order *high = find_order(e, "trader", "high");
    CHECK(high == NULL || high->status == ORDER_CANCELLED);
    CHECK_INT(find_order(e, "trader", "inside")->status, ORDER_SUBMITTED);
    /* only the order inside is still frozen for: 95 * 200 * 10% */
    const account *a = engine_account_find(e, "trader");
    CHECK_MONEY(a->frozen_margin, 1900.0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK(!ins->stats.has_trade); /* it rests: nothing bids 100 or more any more */
    engine_destroy(e);
}

static void test_6001_settlement_price_missing(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    instrument_spec defs[3];
    engine_default_instruments(defs, 3);
    for (int i = 0; i < 3; i++)
        CHECK_INT(fx_add_instrument(e, &defs[i]), 0);
    /* positions in IX2401 and IC2501; IF2501 traded but is flat again; IH2501 never traded */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "market", "IC2501", DIR_SELL, OFFSET_OPEN, 5600.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IC2501", DIR_BUY, OFFSET_OPEN, 5600.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "market", "IF2501", DIR_SELL, OFFSET_OPEN, 3800.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IF2501", DIR_BUY, OFFSET_OPEN, 3800.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "market", "IF2501", DIR_BUY, OFFSET_CLOSE, 3800.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IF2501", DIR_SELL, OFFSET_CLOSE, 3800.0, 1, &r), 0);
    CHECK_REJECT(e, r, fx_settle(e, &r), ERR_SETTLEMENT_PRICE_MISSING, "CFFEX.IX2401");
    CHECK_CONTAINS(r.message, "CFFEX.IC2501");
    CHECK(strstr(r.message, "IF2501") == NULL);
    CHECK(strstr(r.message, "IH2501") == NULL);
    CHECK_INT(engine_settlement_count(e), 0);
    CHECK_STR(engine_trading_day(e), "2025-01-02");
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 100.0, &r), 0);
    CHECK_REJECT(e, r, fx_settle(e, &r), ERR_SETTLEMENT_PRICE_MISSING, "CFFEX.IC2501");
    CHECK(strstr(r.message, "IX2401") == NULL);
    CHECK_INT(fx_set_settlement_price(e, "IC2501", 5610.0, &r), 0);
    CHECK_INT(fx_settle(e, &r), 0);
    CHECK_INT(engine_settlement_count(e), 1);
    /* invalid settlement prices are refused */
    CHECK_REJECT(e, r, fx_set_settlement_price(e, "IX2401", 0.0, &r), ERR_INVALID_ORDER, "got 0");
    CHECK_REJECT(e, r, fx_set_settlement_price(e, "IX2401", NAN, &r), ERR_INVALID_ORDER, "nan");
    engine_destroy(e);
}

/* ====================================================================================== */
/* Matching: partial fills, priority, freezing, IOC, market, FOK                           */
/* ====================================================================================== */

static void test_partial_fills(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    char sell[QAEX_ID_LEN];
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r), 0);
    id_of(e, &r, sell);
    /* a buy of 3 at 101 trades at the resting 100 */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 3, &r), 0);
    const order *b1 = engine_order_at(e, r.order);
    CHECK_INT(b1->status, ORDER_FILLED);
    CHECK_INT(b1->volume_left, 0);
    const order *s = find_order(e, "market", sell);
    CHECK_INT(s->status, ORDER_PARTIALLY_FILLED);
    CHECK_INT(s->volume_left, 7);
    CHECK_INT(s->volume_orign, 10);
    double prices[4];
    int64_t vols[4];
    CHECK_INT(trades_of(e, "trader", prices, vols, 4), 1);
    CHECK_MONEY(prices[0], 100.0);
    CHECK_INT(vols[0], 3);
    const trade *t = engine_trade_first(e, acc_find(e, "trader"));
    CHECK(t->is_taker);
    CHECK_MONEY(t->commission, 0.15);
    CHECK(!engine_trade_first(e, acc_find(e, "market"))->is_taker);
    CHECK(engine_trade_first(e, acc_find(e, "market"))->match_seq == t->match_seq);

    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 4, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    s = find_order(e, "market", sell);
    CHECK_INT(s->status, ORDER_PARTIALLY_FILLED);
    CHECK_INT(s->volume_left, 3);
    CHECK_INT(best_volume(e, "IX2401", DIR_SELL), 3);

    /* the buyer: 7 lots at 100, every frozen cent moved to margin */
    account_view v = fx_view(e, "trader");
    CHECK_MONEY(v.margin, 14000.0);
    CHECK_MONEY(v.balance, 1000000.0 - 0.35);
    CHECK_MONEY(v.available, 1000000.0 - 0.35 - 14000.0);
    CHECK_MONEY(acc_find(e, "trader")->frozen_margin, 0.0);
    CHECK_MONEY(acc_find(e, "trader")->frozen_commission, 0.0);
    position_view pv = pos_view(e, "trader", "IX2401");
    CHECK_INT(pv.volume_long, 7);
    CHECK_MONEY(pv.open_price_long, 100.0);
    /* the seller: 7 sold, 3 still frozen (6,000 + 0.15) */
    CHECK_MONEY(acc_find(e, "market")->frozen_margin, 6000.0);
    CHECK_MONEY(acc_find(e, "market")->frozen_commission, 0.15);
    CHECK_MONEY(fx_view(e, "market").margin, 14000.0);
    CHECK_MONEY(fx_view(e, "market").available, 1000000.0 - 0.35 - 14000.0 - 6000.15);
    /* market statistics */
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_MONEY(ins->stats.last_price, 100.0);
    CHECK_INT(ins->stats.volume, 7);
    CHECK_MONEY(ins->stats.amount, 140000.0);
    CHECK_INT(ins->stats.open_interest, 7);
    engine_destroy(e);
}

static void test_price_time_priority(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    char s1[QAEX_ID_LEN], s2[QAEX_ID_LEN], s3[QAEX_ID_LEN];
    /* three asks at 100, oldest first: market 5, other 5, market 5 */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, &r), 0);
    id_of(e, &r, s1);
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, &r), 0);
    id_of(e, &r, s2);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, &r), 0);
    id_of(e, &r, s3);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 7, &r), 0);
    CHECK_INT(find_order(e, "market", s1)->status, ORDER_FILLED);
    CHECK_INT(find_order(e, "other", s2)->status, ORDER_PARTIALLY_FILLED);
    CHECK_INT(find_order(e, "other", s2)->volume_left, 3);
    CHECK_INT(find_order(e, "market", s3)->status, ORDER_SUBMITTED);
    CHECK_INT(find_order(e, "market", s3)->volume_left, 5);
    double prices[4];
    int64_t vols[4];
    CHECK_INT(trades_of(e, "trader", prices, vols, 4), 2);
    CHECK_INT(vols[0], 5);
    CHECK_INT(vols[1], 2);
    engine_destroy(e);

    /* a better price beats an older, worse one */
    e = fx_engine(three, 3, 1000000.0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.5, 5, &r), 0);
    id_of(e, &r, s1);
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, &r), 0);
    id_of(e, &r, s2);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 5, &r), 0);
    CHECK_INT(find_order(e, "other", s2)->status, ORDER_FILLED);
    CHECK_INT(find_order(e, "market", s1)->volume_left, 5);
    CHECK_INT(trades_of(e, "trader", prices, vols, 4), 1);
    CHECK_MONEY(prices[0], 100.0);
    /* then the worse one; the rest of the buy rests at its limit */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 7, &r), 0);
    const order *b = engine_order_at(e, r.order);
    CHECK_INT(b->status, ORDER_PARTIALLY_FILLED);
    CHECK_INT(b->volume_left, 2);
    CHECK_INT(trades_of(e, "trader", prices, vols, 4), 2);
    CHECK_MONEY(prices[1], 100.5);
    CHECK_INT(vols[1], 5);
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), 101.0);
    CHECK_INT(best_volume(e, "IX2401", DIR_BUY), 2);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), -1.0);
    /* bids: other joins the trader at 101 (behind it), market bids 101.5 last but best */
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_BUY, OFFSET_CLOSE, 101.0, 1, &r), 0);
    id_of(e, &r, s3);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_CLOSE, 101.5, 2, &r), 0);
    /* 4 lots sold at 100.5: market's 2 @101.5, then the trader's 2 @101; other waits */
    CHECK_INT(fx_open_account(e, "seller", 1000000.0), 0);
    CHECK_INT(fx_order(e, "seller", "IX2401", DIR_SELL, OFFSET_OPEN, 100.5, 4, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    CHECK_INT(trades_of(e, "seller", prices, vols, 4), 2);
    CHECK_MONEY(prices[0], 101.5);
    CHECK_INT(vols[0], 2);
    CHECK_MONEY(prices[1], 101.0);
    CHECK_INT(vols[1], 2);
    CHECK_INT(trades_of(e, "trader", NULL, NULL, 0), 3);
    CHECK_INT(trades_of(e, "market", NULL, NULL, 0), 2);
    CHECK_INT(trades_of(e, "other", NULL, NULL, 0), 1);
    CHECK_INT(find_order(e, "other", s3)->status, ORDER_SUBMITTED);
    CHECK_INT(find_order(e, "other", s3)->volume_left, 1);
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), 101.0);
    CHECK_INT(best_volume(e, "IX2401", DIR_BUY), 1);
    engine_destroy(e);
}

static void test_cancel_releases_frozen(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    char b1[QAEX_ID_LEN], b2[QAEX_ID_LEN];
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 4, &r), 0);
    /* 10 @101 freezes 20,200 + 0.50; 4 fill at 100 */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 10, &r), 0);
    id_of(e, &r, b1);
    const account *a = acc_find(e, "trader");
    CHECK_MONEY(a->frozen_margin, 12120.0);
    CHECK_MONEY(a->frozen_commission, 0.30);
    account_view v = fx_view(e, "trader");
    CHECK_MONEY(v.margin, 8000.0);
    CHECK_MONEY(v.available, 1000000.0 - 0.20 - 8000.0 - 12120.0 - 0.30);
    /* a second bid: 5 @99 freezes 9,900 + 0.25 */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 5, &r), 0);
    id_of(e, &r, b2);
    CHECK_MONEY(a->frozen_margin, 22020.0);
    CHECK_MONEY(a->frozen_commission, 0.55);
    /* 3 sold at 99 meet the best bid, 101, at its price */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 99.0, 3, &r), 0);
    CHECK_INT(find_order(e, "trader", b1)->volume_left, 3);
    CHECK_INT(find_order(e, "trader", b2)->volume_left, 5);
    CHECK_MONEY(a->frozen_margin, 6060.0 + 9900.0);
    CHECK_MONEY(a->frozen_commission, 0.40);
    CHECK_MONEY(fx_view(e, "trader").margin, 8000.0 + 6060.0);

    CHECK_INT(fx_cancel(e, "trader", b1, &r), 0);
    CHECK_INT(find_order(e, "trader", b1)->status, ORDER_CANCELLED);
    CHECK_INT(find_order(e, "trader", b1)->volume_left, 3);
    CHECK_MONEY(find_order(e, "trader", b1)->frozen_margin, 0.0);
    CHECK_MONEY(a->frozen_margin, 9900.0);
    CHECK_MONEY(a->frozen_commission, 0.25);
    CHECK_INT(fx_cancel(e, "trader", b2, &r), 0);
    CHECK(a->frozen_margin == 0.0);
    CHECK(a->frozen_commission == 0.0);
    CHECK(fx_position(e, "trader", "IX2401")->frozen_margin == 0.0);
    /* balance: 7 lots, 4 @100 and 3 @101, marked at 101: +800; fees 0.35 */
    v = fx_view(e, "trader");
    CHECK_MONEY(v.balance, 1000000.0 - 0.35 + 800.0);
    CHECK_MONEY(v.margin, 14060.0);
    CHECK_MONEY(v.available, v.balance - v.margin);
    CHECK_MONEY(v.available, 1000000.0 - 0.35 + 800.0 - 14060.0);
    /* the seller's orders all filled: nothing frozen there either */
    CHECK(acc_find(e, "market")->frozen_margin == 0.0);
    engine_destroy(e);
}

static void test_close_order_releases_lots(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    char c1[QAEX_ID_LEN];
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 105.0, 6, &r), 0);
    id_of(e, &r, c1);
    const position *p = fx_position(e, "trader", "IX2401");
    CHECK_INT(p->volume_long_frozen_today, 6);
    /* a close order freezes lots, not money */
    CHECK(acc_find(e, "trader")->frozen_margin == 0.0);
    /* market buys back 2 at 105 */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_CLOSE, 105.0, 2, &r), 0);
    CHECK_INT(find_order(e, "trader", c1)->status, ORDER_PARTIALLY_FILLED);
    CHECK_INT(p->volume_long_today, 8);
    CHECK_INT(p->volume_long_frozen_today, 4);
    CHECK_MONEY(acc_find(e, "trader")->close_profit, 2000.0);
    CHECK_MONEY(acc_find(e, "market")->close_profit, -2000.0);
    /* two closing sides: open interest falls from 10 to 8 */
    CHECK_INT(engine_instrument_find(e, "IX2401")->stats.open_interest, 8);
    CHECK_INT(engine_instrument_find(e, "IX2401")->stats.volume, 12);
    CHECK_INT(fx_cancel(e, "trader", c1, &r), 0);
    CHECK_INT(p->volume_long_frozen_today, 0);
    CHECK_INT(p->volume_long_frozen_his, 0);
    CHECK_INT(find_order(e, "trader", c1)->frozen_today, 0);
    CHECK_INT(position_closable(p, DIR_BUY, OFFSET_CLOSE), 8);
    /* both sides' lots are intact and closable in full */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 106.0, 8, &r), 0);
    CHECK_INT(p->volume_long_frozen_today, 8);
    CHECK_INT(fx_cancel(e, "trader", engine_order_at(e, r.order)->order_id, &r), 0);
    CHECK_INT(p->volume_long_frozen_today, 0);
    const position *mp = fx_position(e, "market", "IX2401");
    CHECK_INT(mp->volume_short_today, 8);
    CHECK_INT(mp->volume_short_frozen_today, 0);
    /* margin follows the lots: 8 x 2,000 */
    CHECK_MONEY(fx_view(e, "trader").margin, 16000.0);
    CHECK_MONEY(fx_view(e, "market").margin, 16000.0);
    engine_destroy(e);
}

static void test_ioc(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 3, &r), 0);
    CHECK_INT(order_tc(e, "trader", DIR_BUY, OFFSET_OPEN, 100.0, 5, TC_IOC, VC_ANY, &r), 0);
    const order *o = engine_order_at(e, r.order);
    CHECK_INT(o->status, ORDER_CANCELLED);
    CHECK_INT(o->volume_left, 2);
    CHECK_MONEY(o->frozen_margin, 0.0);
    CHECK_MONEY(o->frozen_commission, 0.0);
    CHECK_CONTAINS(o->last_msg, "2");
    CHECK(acc_find(e, "trader")->frozen_margin == 0.0);
    CHECK(acc_find(e, "trader")->frozen_commission == 0.0);
    CHECK(fx_position(e, "trader", "IX2401")->frozen_margin == 0.0);
    CHECK_INT(pos_view(e, "trader", "IX2401").volume_long, 3);
    CHECK_MONEY(fx_view(e, "trader").margin, 6000.0);
    CHECK_MONEY(fx_view(e, "trader").available, 1000000.0 - 0.15 - 6000.0);
    /* nothing rests */
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), -1.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), -1.0);
    /* an IOC that meets nothing is cancelled whole, without a trade */
    CHECK_INT(order_tc(e, "other", DIR_SELL, OFFSET_OPEN, 100.0, 2, TC_IOC, VC_ANY, &r), 0);
    o = engine_order_at(e, r.order);
    CHECK_INT(o->status, ORDER_CANCELLED);
    CHECK_INT(o->volume_left, 2);
    CHECK_INT(trades_of(e, "other", NULL, NULL, 0), 0);
    CHECK(acc_find(e, "other")->frozen_margin == 0.0);
    CHECK_MONEY(fx_view(e, "other").available, 1000000.0);
    /* an IOC close gives its lots back */
    CHECK_INT(order_tc(e, "trader", DIR_SELL, OFFSET_CLOSE, 100.0, 3, TC_IOC, VC_ANY, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_CANCELLED);
    CHECK_INT(fx_position(e, "trader", "IX2401")->volume_long_frozen_today, 0);
    engine_destroy(e);
}

static void test_market_orders(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 2, &r), 0);
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_SELL, OFFSET_OPEN, 100.5, 3, &r), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 101.0, 4, &r), 0);
    /* a market buy of 7 walks three levels at their prices */
    CHECK_INT(market_order(e, "trader", DIR_BUY, OFFSET_OPEN, 7, &r), 0);
    const order *o = engine_order_at(e, r.order);
    CHECK_INT(o->status, ORDER_FILLED);
    CHECK_INT(o->time_condition, TC_IOC);
    CHECK_MONEY(o->limit_price, 110.0); /* the upper limit */
    double prices[8];
    int64_t vols[8];
    CHECK_INT(trades_of(e, "trader", prices, vols, 8), 3);
    CHECK_MONEY(prices[0], 100.0);
    CHECK_INT(vols[0], 2);
    CHECK_MONEY(prices[1], 100.5);
    CHECK_INT(vols[1], 3);
    CHECK_MONEY(prices[2], 101.0);
    CHECK_INT(vols[2], 2);
    /* margin at the trade prices: (200 + 301.5 + 202) x 20 */
    CHECK_MONEY(fx_view(e, "trader").margin, 14070.0);
    CHECK(acc_find(e, "trader")->frozen_margin == 0.0);
    CHECK(acc_find(e, "trader")->frozen_commission == 0.0);
    /* a market buy of 20 takes the last 2 and the rest is cancelled */
    CHECK_INT(market_order(e, "trader", DIR_BUY, OFFSET_OPEN, 20, &r), 0);
    o = engine_order_at(e, r.order);
    CHECK_INT(o->status, ORDER_CANCELLED);
    CHECK_INT(o->volume_left, 18);
    CHECK_INT(trades_of(e, "trader", prices, vols, 8), 4);
    CHECK_MONEY(prices[3], 101.0);
    CHECK_INT(vols[3], 2);
    CHECK(acc_find(e, "trader")->frozen_margin == 0.0);
    CHECK_MONEY(fx_view(e, "trader").margin, 14070.0 + 4040.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), -1.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), -1.0);
    /* a market sell into an empty book: cancelled, nothing frozen */
    CHECK_INT(market_order(e, "other", DIR_SELL, OFFSET_OPEN, 5, &r), 0);
    o = engine_order_at(e, r.order);
    CHECK_INT(o->status, ORDER_CANCELLED);
    CHECK_INT(o->volume_left, 5);
    CHECK_MONEY(o->limit_price, 90.0); /* the lower limit */
    CHECK(acc_find(e, "other")->frozen_margin == 0.0);
    /* a market close: the trader sells 3 of its 9 lots into a bid */
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_BUY, OFFSET_CLOSE, 99.0, 3, &r), 0);
    CHECK_INT(market_order(e, "trader", DIR_SELL, OFFSET_CLOSE, 3, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    CHECK_INT(pos_view(e, "trader", "IX2401").volume_long, 6);
    engine_destroy(e);
}

static void test_fok(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 3, &r), 0);
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_SELL, OFFSET_OPEN, 100.5, 2, &r), 0);
    /* 6 wanted, 5 available: nothing trades */
    CHECK_INT(order_tc(e, "trader", DIR_BUY, OFFSET_OPEN, 100.5, 6, TC_IOC, VC_ALL, &r), 0);
    const order *o = engine_order_at(e, r.order);
    CHECK_INT(o->status, ORDER_CANCELLED);
    CHECK_INT(o->volume_left, 6);
    CHECK_INT(trades_of(e, "trader", NULL, NULL, 0), 0);
    CHECK(acc_find(e, "trader")->frozen_margin == 0.0);
    CHECK(acc_find(e, "trader")->frozen_commission == 0.0);
    CHECK_INT(best_volume(e, "IX2401", DIR_SELL), 3);
    CHECK_INT(engine_instrument_find(e, "IX2401")->stats.volume, 0);
    /* 5 wanted at 100: only 3 there at that price */
    CHECK_INT(order_tc(e, "trader", DIR_BUY, OFFSET_OPEN, 100.0, 5, TC_IOC, VC_ALL, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_CANCELLED);
    CHECK_INT(trades_of(e, "trader", NULL, NULL, 0), 0);
    /* 5 at 100.5: all of it, across two levels */
    CHECK_INT(order_tc(e, "trader", DIR_BUY, OFFSET_OPEN, 100.5, 5, TC_IOC, VC_ALL, &r), 0);
    o = engine_order_at(e, r.order);
    CHECK_INT(o->status, ORDER_FILLED);
    CHECK_INT(o->volume_left, 0);
    double prices[4];
    int64_t vols[4];
    CHECK_INT(trades_of(e, "trader", prices, vols, 4), 2);
    CHECK_MONEY(prices[0], 100.0);
    CHECK_INT(vols[0], 3);
    CHECK_MONEY(prices[1], 100.5);
    CHECK_INT(vols[1], 2);
    CHECK_INT(pos_view(e, "trader", "IX2401").volume_long, 5);
    CHECK(acc_find(e, "trader")->frozen_margin == 0.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), -1.0);
    engine_destroy(e);
}

/* ====================================================================================== */
/* Today's and yesterday's lots                                                            */
/* ====================================================================================== */

static void test_close_today_yesterday(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    /* day 1: long 10 */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 100.0, &r), 0);
    CHECK_INT(fx_settle(e, &r), 0);
    CHECK_STR(engine_trading_day(e), "2025-01-03");
    const position *p = fx_position(e, "trader", "IX2401");
    CHECK_INT(p->volume_long_today, 0);
    CHECK_INT(p->volume_long_his, 10);
    /* today's lots are gone: CLOSETODAY has nothing */
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSETODAY, 100.0, 1, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 0, requested 1");
    /* day 2: 6 more, today's */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 6, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 6, &r), 0);
    CHECK_INT(p->volume_long_today, 6);
    CHECK_INT(p->volume_long_his, 10);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSETODAY, 101.0, 7, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 6, requested 7");
    CHECK_REJECT(e, r,
                 fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSEYESTERDAY, 101.0, 11, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 10, requested 11");
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 101.0, 17, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 16, requested 17");
    /* CLOSE 8 freezes today's 6 first, then 2 of yesterday's */
    char c8[QAEX_ID_LEN], cy[QAEX_ID_LEN];
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 101.0, 8, &r), 0);
    id_of(e, &r, c8);
    CHECK_INT(p->volume_long_frozen_today, 6);
    CHECK_INT(p->volume_long_frozen_his, 2);
    CHECK_INT(find_order(e, "trader", c8)->frozen_today, 6);
    CHECK_INT(find_order(e, "trader", c8)->frozen_his, 2);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSETODAY, 101.0, 1, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 0, requested 1");
    /* CLOSEYESTERDAY takes only yesterday's */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSEYESTERDAY, 102.0, 8, &r), 0);
    id_of(e, &r, cy);
    CHECK_INT(p->volume_long_frozen_his, 10);
    CHECK_INT(p->volume_long_frozen_today, 6);
    CHECK_REJECT(e, r,
                 fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSEYESTERDAY, 102.0, 1, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 0, requested 1");
    CHECK_INT(fx_cancel(e, "trader", cy, &r), 0);
    CHECK_INT(p->volume_long_frozen_his, 2);
    /* the market buys back 8 at 101: today's 6 go first, then 2 of yesterday's */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_CLOSE, 101.0, 8, &r), 0);
    CHECK_INT(find_order(e, "trader", c8)->status, ORDER_FILLED);
    CHECK_INT(p->volume_long_today, 0);
    CHECK_INT(p->volume_long_his, 8);
    CHECK_INT(p->volume_long_frozen_today, 0);
    CHECK_INT(p->volume_long_frozen_his, 0);
    /* every lot stood at 100 (today's open, yesterday's settlement): (101 - 100) x 8 x 200 */
    CHECK_MONEY(acc_find(e, "trader")->close_profit, 1600.0);
    const position *mp = fx_position(e, "market", "IX2401");
    CHECK_INT(mp->volume_short_today, 0);
    CHECK_INT(mp->volume_short_his, 8);
    CHECK_MONEY(acc_find(e, "market")->close_profit, -1600.0);
    /* now only yesterday's lots remain */
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSETODAY, 101.0, 1, &r),
                 ERR_INSUFFICIENT_POSITION, "closable 0, requested 1");
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_CLOSEYESTERDAY, 99.5, 3, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSEYESTERDAY, 99.5, 3, &r), 0);
    CHECK_INT(p->volume_long_his, 5);
    CHECK_MONEY(acc_find(e, "trader")->close_profit, 1600.0 - 300.0);
    CHECK_MONEY(fx_view(e, "trader").margin, 5 * 2000.0);
    engine_destroy(e);
}

/* ====================================================================================== */
/* Call auction                                                                            */
/* ====================================================================================== */

static const char *const four[] = {"a1", "a2", "a3", "a4"};

static void test_call_auction(void) {
    engine *e = fx_engine(four, 4, 1000000.0);
    engine_result r;
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IX2401", &r), 0);
    CHECK(ins->in_auction);
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IX2401", &r), ERR_INVALID_ORDER,
                 "already");
    char o1[QAEX_ID_LEN], o2[QAEX_ID_LEN], o3[QAEX_ID_LEN], o4[QAEX_ID_LEN], o5[QAEX_ID_LEN];
    /* bids 101 x5 (a1), 100.5 x3 (a2), 99.5 x2 (a4); asks 99.5 x4 (a3), 100.5 x3 (a4) */
    CHECK_INT(fx_order(e, "a1", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 5, &r), 0);
    id_of(e, &r, o1);
    CHECK_INT(fx_order(e, "a3", "IX2401", DIR_SELL, OFFSET_OPEN, 99.5, 4, &r), 0);
    id_of(e, &r, o3);
    CHECK_INT(fx_order(e, "a2", "IX2401", DIR_BUY, OFFSET_OPEN, 100.5, 3, &r), 0);
    id_of(e, &r, o2);
    CHECK_INT(fx_order(e, "a4", "IX2401", DIR_SELL, OFFSET_OPEN, 100.5, 3, &r), 0);
    id_of(e, &r, o4);
    CHECK_INT(fx_order(e, "a4", "IX2401", DIR_BUY, OFFSET_OPEN, 99.5, 2, &r), 0);
    id_of(e, &r, o5);
    /* nothing trades during the auction: the book is crossed */
    CHECK_INT(ins->stats.volume, 0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), 101.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), 99.5);
    CHECK_INT(find_order(e, "a1", o1)->status, ORDER_SUBMITTED);
    /* only limit GFD/GTC orders are accepted */
    CHECK_REJECT(e, r, order_tc(e, "a2", DIR_BUY, OFFSET_OPEN, 101.0, 1, TC_IOC, VC_ANY, &r),
                 ERR_INVALID_ORDER, "call auction");
    CHECK_REJECT(e, r, market_order(e, "a2", DIR_BUY, OFFSET_OPEN, 1, &r), ERR_INVALID_ORDER,
                 "call auction");
    CHECK_REJECT(e, r, order_tc(e, "a2", DIR_BUY, OFFSET_OPEN, 101.0, 1, TC_IOC, VC_ALL, &r),
                 ERR_INVALID_ORDER, "call auction");
    CHECK_REJECT(e, r, order_tc(e, "a2", DIR_BUY, OFFSET_OPEN, 101.0, 1, TC_GFD, VC_ALL, &r),
                 ERR_INVALID_ORDER, "call auction");
    /* a3 bidding 99.5 would meet its own ask in the uncross */
    CHECK_REJECT(e, r, fx_order(e, "a3", "IX2401", DIR_BUY, OFFSET_OPEN, 99.5, 1, &r),
                 ERR_SELF_TRADE, "a3");

    /* by hand, at each order price:
     *   99.5: bids >= 99.5 = 10, asks <= 99.5 = 4 -> 4
     *  100.5: bids 8, asks 7 -> 7 (imbalance 1)
     *  101.0: bids 5, asks 7 -> 5
     * the most volume is at 100.5 */
    CHECK_INT(fx_instrument_cmd(e, CMD_AUCTION_CLOSE, "IX2401", &r), 0);
    CHECK(!ins->in_auction);
    CHECK_INT(ins->stats.volume, 7);
    CHECK_MONEY(ins->stats.last_price, 100.5);
    CHECK_MONEY(ins->stats.open, 100.5);
    CHECK_MONEY(ins->stats.high, 100.5);
    CHECK_MONEY(ins->stats.low, 100.5);
    CHECK_MONEY(ins->stats.amount, 100.5 * 7 * 200);
    CHECK_INT(ins->stats.open_interest, 7);
    double prices[8];
    int64_t vols[8];
    int total = 0;
    for (int i = 0; i < 4; i++) {
        int n = trades_of(e, four[i], prices, vols, 8);
        for (int k = 0; k < n && k < 8; k++) {
            CHECK_MONEY(prices[k], 100.5);
            total += (int)vols[k];
        }
    }
    CHECK_INT(total, 14); /* both sides of 7 lots */
    CHECK_INT(find_order(e, "a1", o1)->status, ORDER_FILLED);
    CHECK_INT(find_order(e, "a3", o3)->status, ORDER_FILLED);
    CHECK_INT(find_order(e, "a4", o4)->status, ORDER_FILLED);
    CHECK_INT(find_order(e, "a2", o2)->status, ORDER_PARTIALLY_FILLED);
    CHECK_INT(find_order(e, "a2", o2)->volume_left, 1);
    CHECK_INT(find_order(e, "a4", o5)->status, ORDER_SUBMITTED);
    CHECK_INT(pos_view(e, "a1", "IX2401").volume_long, 5);
    CHECK_INT(pos_view(e, "a2", "IX2401").volume_long, 2);
    CHECK_INT(pos_view(e, "a3", "IX2401").volume_short, 4);
    CHECK_INT(pos_view(e, "a4", "IX2401").volume_short, 3);
    /* a1 froze at 101, filled at 100.5: margin 10,050, nothing left frozen */
    CHECK(acc_find(e, "a1")->frozen_margin == 0.0);
    CHECK_MONEY(fx_view(e, "a1").margin, 10050.0);
    CHECK_MONEY(fx_view(e, "a1").available, 1000000.0 - 0.25 - 10050.0);
    /* the book is not crossed: bids 100.5 x1 and 99.5 x2, no asks */
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), 100.5);
    CHECK_INT(best_volume(e, "IX2401", DIR_BUY), 1);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), -1.0);
    /* continuous trading again: an ask at 100.5 trades at once */
    CHECK_INT(fx_order(e, "a3", "IX2401", DIR_SELL, OFFSET_OPEN, 100.5, 1, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    CHECK_INT(find_order(e, "a2", o2)->status, ORDER_FILLED);
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_AUCTION_CLOSE, "IX2401", &r), ERR_INVALID_ORDER,
                 "not in the call auction");
    engine_destroy(e);
}

/* One auction on a fresh engine: orders as (account, side, price, volume); returns the engine. */
typedef struct auction_order {
    const char *acc;
    direction side;
    double price;
    int64_t volume;
} auction_order;

static engine *run_auction(const auction_order *orders, int n) {
    engine *e = fx_engine(four, 4, 1000000.0);
    CHECK_INT(fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IX2401", NULL), 0);
    for (int i = 0; i < n; i++)
        CHECK_INT(fx_order(e, orders[i].acc, "IX2401", orders[i].side, OFFSET_OPEN, orders[i].price,
                           orders[i].volume, NULL),
                  0);
    CHECK_INT(fx_instrument_cmd(e, CMD_AUCTION_CLOSE, "IX2401", NULL), 0);
    return e;
}

static void test_auction_tie_breaks(void) {
    /* equal volume (5) from 99 to 101; imbalance 1 up to 100 (a2's bid still counts), 0 above:
     * 100.5 wins, the nearest to the reference 100 of the prices without imbalance, although 100
     * is the reference itself */
    const auction_order imbalance[] = {
        {"a1", DIR_BUY, 101.0, 5}, {"a2", DIR_BUY, 100.0, 1}, {"a3", DIR_SELL, 99.0, 5}};
    engine *e = run_auction(imbalance, 3);
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->stats.volume, 5);
    CHECK_MONEY(ins->stats.last_price, 100.5);
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), 100.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), -1.0);
    engine_destroy(e);

    /* every price on the tick counts, not only those orders name: between 99 and 100.5 all 5
     * lots trade with no imbalance, and 100, with no order at it, is the reference itself */
    const auction_order inside[] = {{"a1", DIR_BUY, 100.5, 5}, {"a3", DIR_SELL, 99.0, 5}};
    e = run_auction(inside, 2);
    ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->stats.volume, 5);
    CHECK_MONEY(ins->stats.last_price, 100.0);
    double prices[2];
    CHECK_INT(trades_of(e, "a1", prices, NULL, 2), 1);
    CHECK_MONEY(prices[0], 100.0);
    engine_destroy(e);

    /* the least imbalance may lie between the order prices: 10 lots trade at 99, at 101 and at
     * every price between; at 99 the bids exceed the asks by 5 and at 101 the asks exceed the
     * bids by 5, but between them only a1's bid and a3's ask meet, 10 against 10 */
    const auction_order between[] = {{"a1", DIR_BUY, 101.0, 10},
                                     {"a2", DIR_BUY, 99.0, 5},
                                     {"a3", DIR_SELL, 99.0, 10},
                                     {"a4", DIR_SELL, 101.0, 5}};
    e = run_auction(between, 4);
    ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->stats.volume, 10);
    CHECK_MONEY(ins->stats.last_price, 100.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), 99.0);
    CHECK_INT(best_volume(e, "IX2401", DIR_BUY), 5);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), 101.0);
    CHECK_INT(best_volume(e, "IX2401", DIR_SELL), 5);
    engine_destroy(e);

    /* the reference above every executable price: the highest of them, the bid at 99.5 */
    const auction_order below[] = {{"a1", DIR_BUY, 99.5, 5}, {"a3", DIR_SELL, 98.0, 5}};
    e = run_auction(below, 2);
    ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->stats.volume, 5);
    CHECK_MONEY(ins->stats.last_price, 99.5);
    engine_destroy(e);

    /* and below them: the lowest, the ask at 100.5 */
    const auction_order above[] = {{"a1", DIR_BUY, 102.0, 5}, {"a3", DIR_SELL, 100.5, 5}};
    e = run_auction(above, 2);
    ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->stats.volume, 5);
    CHECK_MONEY(ins->stats.last_price, 100.5);
    engine_destroy(e);

    /* nothing crosses: no trade, the orders stay */
    const auction_order apart[] = {{"a1", DIR_BUY, 99.0, 5}, {"a3", DIR_SELL, 101.0, 5}};
    e = run_auction(apart, 2);
    ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->stats.volume, 0);
    CHECK(!ins->in_auction);
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), 99.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), 101.0);
    engine_destroy(e);
}

/* The reference price need not lie on the tick: a settlement price of 100.3 (tick 0.5) is a
 * legal operator input, and the next opening auction must still pick the candidate nearest it. */
static void test_auction_reference_off_tick(void) {
    engine *e = fx_engine(four, 4, 1000000.0);
    engine_result r;
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 100.3, &r), 0);
    CHECK_INT(fx_settle(e, &r), 0);
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_MONEY(ins->spec.pre_settlement, 100.3);
    CHECK_INT(fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IX2401", &r), 0);
    CHECK_INT(fx_order(e, "a1", "IX2401", DIR_BUY, OFFSET_OPEN, 100.5, 5, &r), 0);
    CHECK_INT(fx_order(e, "a3", "IX2401", DIR_SELL, OFFSET_OPEN, 99.5, 5, &r), 0);
    /* 5 lots at 99.5, 100 or 100.5, no imbalance: |100.5 - 100.3| = 0.2 < |100 - 100.3| */
    CHECK_INT(fx_instrument_cmd(e, CMD_AUCTION_CLOSE, "IX2401", &r), 0);
    CHECK_INT(ins->stats.volume, 5);
    CHECK_MONEY(ins->stats.last_price, 100.5);
    engine_destroy(e);
}

/* ====================================================================================== */
/* Instrument lifecycle                                                                    */
/* ====================================================================================== */

static void test_delist(void) {
    const char *const accs[] = {"trader", "market", "other", "idle"};
    engine *e = fx_engine(accs, 4, 1000000.0);
    engine_result r;
    char waiting[QAEX_ID_LEN];
    /* holders: trader long 2, other long 1, market short 3; idle only has a bid resting */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 3, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 2, &r), 0);
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "idle", "IX2401", DIR_BUY, OFFSET_OPEN, 95.0, 1, &r), 0);
    id_of(e, &r, waiting);
    uint64_t before = engine_state_hash(e);
    int rc = fx_instrument_cmd(e, CMD_INSTRUMENT_DELIST, "IX2401", &r);
    CHECK(rc != 0);
    CHECK_INT(r.code, rc);
    CHECK_CONTAINS(r.message, "CFFEX.IX2401");
    CHECK_CONTAINS(r.message, "trader");
    CHECK_CONTAINS(r.message, "market");
    CHECK_CONTAINS(r.message, "other");
    CHECK(strstr(r.message, "idle") == NULL);
    CHECK(engine_state_hash(e) == before);
    CHECK_INT(engine_instrument_find(e, "IX2401")->status, INSTRUMENT_TRADING);
    CHECK_INT(find_order(e, "idle", waiting)->status, ORDER_SUBMITTED);
    /* trader and other sell out to market: everyone flat */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 100.0, 2, &r), 0);
    CHECK_INT(fx_order(e, "other", "IX2401", DIR_SELL, OFFSET_CLOSE, 100.0, 1, &r), 0);
    /* still refused while the two close orders wait */
    CHECK(fx_instrument_cmd(e, CMD_INSTRUMENT_DELIST, "IX2401", &r) != 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_CLOSE, 100.0, 3, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    for (int i = 0; i < 4; i++) {
        position_view pv = pos_view(e, accs[i], "IX2401");
        CHECK_INT(pv.volume_long + pv.volume_short, 0);
    }
    /* idle's bid at 95 still rests, with money frozen: 95 x 200 x 0.10 */
    CHECK_MONEY(acc_find(e, "idle")->frozen_margin, 1900.0);
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_DELIST, "IX2401", &r), 0);
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->status, INSTRUMENT_DELISTED);
    CHECK_INT(find_order(e, "idle", waiting)->status, ORDER_CANCELLED);
    CHECK(acc_find(e, "idle")->frozen_margin == 0.0);
    CHECK(acc_find(e, "idle")->frozen_commission == 0.0);
    CHECK_MONEY(fx_view(e, "idle").available, 1000000.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_BUY), -1.0);
    CHECK_MONEY(best_price(e, "IX2401", DIR_SELL), -1.0);
    /* a delisted instrument stays delisted */
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r),
                 ERR_INVALID_ORDER, "delisted");
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_INSTRUMENT_RESUME, "IX2401", &r), ERR_INVALID_ORDER,
                 "delisted");
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_INSTRUMENT_SUSPEND, "IX2401", &r),
                 ERR_INVALID_ORDER, "delisted");
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IX2401", &r), ERR_INVALID_ORDER,
                 "Delisted");
    engine_destroy(e);
}

static void test_suspend_resume(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    char resting[QAEX_ID_LEN];
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 2, &r), 0);
    id_of(e, &r, resting);
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_SUSPEND, "IX2401", &r), 0);
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_INT(ins->status, INSTRUMENT_SUSPENDED);
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_INSTRUMENT_SUSPEND, "IX2401", &r),
                 ERR_INVALID_ORDER, "already suspended");
    CHECK_REJECT(e, r, fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 99.0, 2, &r),
                 ERR_INVALID_ORDER, "suspended");
    CHECK_REJECT(e, r, market_order(e, "market", DIR_SELL, OFFSET_OPEN, 1, &r), ERR_INVALID_ORDER,
                 "suspended");
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IX2401", &r), ERR_INVALID_ORDER,
                 "Suspended");
    /* the resting order survives the suspension and can be cancelled during it */
    CHECK_INT(find_order(e, "trader", resting)->status, ORDER_SUBMITTED);
    CHECK_INT(fx_cancel(e, "trader", resting, &r), 0);
    CHECK(acc_find(e, "trader")->frozen_margin == 0.0);
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_RESUME, "IX2401", &r), 0);
    CHECK_INT(ins->status, INSTRUMENT_TRADING);
    CHECK_REJECT(e, r, fx_instrument_cmd(e, CMD_INSTRUMENT_RESUME, "IX2401", &r), ERR_INVALID_ORDER,
                 "already trading");
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 2, &r), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 99.0, 2, &r), 0);
    CHECK_INT(engine_order_at(e, r.order)->status, ORDER_FILLED);
    engine_destroy(e);
}

/* ====================================================================================== */
/* Instrument update and events                                                            */
/* ====================================================================================== */

typedef struct ev_rec {
    event_type type;
    char account[QAEX_ID_LEN];
    order_status status;
    int64_t volume; /* order: volume_left; trade: volume */
    bool is_taker;
} ev_rec;

typedef struct ev_log {
    engine *e;
    ev_rec recs[64];
    int n;
} ev_log;

static void record_event(void *ctx, const engine_event *ev) {
    ev_log *log = ctx;
    if (log->n >= 64) return;
    ev_rec *x = &log->recs[log->n++];
    memset(x, 0, sizeof *x);
    x->type = ev->type;
    const account *a = NULL;
    switch (ev->type) {
        case EV_ORDER:
            a = engine_account_of(log->e, ev->order->account);
            x->status = ev->order->status;
            x->volume = ev->order->volume_left;
            break;
        case EV_TRADE:
            a = engine_account_of(log->e, ev->trade->account);
            x->volume = ev->trade->volume;
            x->is_taker = ev->trade->is_taker;
            break;
        case EV_POSITION:
            a = engine_account_of(log->e, ev->position->account);
            break;
        case EV_ACCOUNT:
            a = ev->account;
            break;
        default:
            break;
    }
    if (a) snprintf(x->account, sizeof x->account, "%s", a->account_id);
}

static void check_event(const ev_log *log, int i, event_type type, const char *acc) {
    if (i >= log->n) {
        fprintf(stderr, "event %d missing (only %d)\n", i, log->n);
        check_failures_in_test++;
        return;
    }
    if (log->recs[i].type != type || (acc && strcmp(log->recs[i].account, acc) != 0)) {
        fprintf(stderr, "event %d is type %d of \"%s\", expected type %d of \"%s\"\n", i,
                log->recs[i].type, log->recs[i].account, type, acc ? acc : "-");
        check_failures_in_test++;
    }
}

static void test_event_sequence(void) {
    const char *const accs[] = {"trader", "m1", "m2"};
    engine *e = fx_engine(accs, 3, 1000000.0);
    engine_result r;
    static ev_log log;
    memset(&log, 0, sizeof log);
    log.e = e;
    CHECK_INT(fx_order(e, "m1", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, &r), 0);
    CHECK_INT(fx_order(e, "m2", "IX2401", DIR_SELL, OFFSET_OPEN, 100.5, 5, &r), 0);
    engine_set_event_sink(e, record_event, &log);

    /* a rejected command emits nothing */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.3, 1, &r),
              ERR_INVALID_ORDER);
    CHECK_INT(log.n, 0);

    /* a resting order: accepted, then position, account, book */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 1, &r), 0);
    CHECK_INT(log.n, 4);
    check_event(&log, 0, EV_ORDER, "trader");
    CHECK_INT(log.recs[0].status, ORDER_SUBMITTED);
    check_event(&log, 1, EV_POSITION, "trader");
    check_event(&log, 2, EV_ACCOUNT, "trader");
    check_event(&log, 3, EV_BOOK, NULL);

    /* a buy of 10 at 100.5 meets m1 (5 @100) and m2 (5 @100.5) */
    log.n = 0;
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.5, 10, &r), 0);
    CHECK_INT(log.n, 17);
    int i = 0;
    check_event(&log, i, EV_ORDER, "trader"); /* accepted */
    CHECK_INT(log.recs[i].status, ORDER_SUBMITTED);
    CHECK_INT(log.recs[i].volume, 10);
    i++;
    check_event(&log, i, EV_ORDER, "m1"); /* match 1: maker */
    CHECK_INT(log.recs[i].status, ORDER_FILLED);
    i++;
    check_event(&log, i, EV_TRADE, "m1");
    CHECK(!log.recs[i].is_taker);
    CHECK_INT(log.recs[i].volume, 5);
    i++;
    check_event(&log, i, EV_ORDER, "trader"); /* match 1: taker */
    CHECK_INT(log.recs[i].status, ORDER_PARTIALLY_FILLED);
    CHECK_INT(log.recs[i].volume, 5);
    i++;
    check_event(&log, i, EV_TRADE, "trader");
    CHECK(log.recs[i].is_taker);
    i++;
    check_event(&log, i, EV_ORDER, "m2"); /* match 2: maker */
    CHECK_INT(log.recs[i].status, ORDER_FILLED);
    i++;
    check_event(&log, i, EV_TRADE, "m2");
    CHECK(!log.recs[i].is_taker);
    i++;
    check_event(&log, i, EV_ORDER, "trader"); /* match 2: taker */
    CHECK_INT(log.recs[i].status, ORDER_FILLED);
    CHECK_INT(log.recs[i].volume, 0);
    i++;
    check_event(&log, i, EV_TRADE, "trader");
    CHECK(log.recs[i].is_taker);
    i++;
    /* one position and one account event per touched account */
    const char *seen_pos[3] = {0}, *seen_acc[3] = {0};
    for (int k = 0; k < 3; k++, i++) {
        check_event(&log, i, EV_POSITION, NULL);
        seen_pos[k] = log.recs[i].account;
    }
    for (int k = 0; k < 3; k++, i++) {
        check_event(&log, i, EV_ACCOUNT, NULL);
        seen_acc[k] = log.recs[i].account;
    }
    for (int a = 0; a < 3; a++) {
        int pos_hits = 0, acc_hits = 0;
        for (int k = 0; k < 3; k++) {
            pos_hits += seen_pos[k] && strcmp(seen_pos[k], accs[a]) == 0;
            acc_hits += seen_acc[k] && strcmp(seen_acc[k], accs[a]) == 0;
        }
        CHECK_INT(pos_hits, 1);
        CHECK_INT(acc_hits, 1);
    }
    check_event(&log, i++, EV_TICK, NULL);
    check_event(&log, i++, EV_BOOK, NULL);
    CHECK_INT(i, 17);

    /* a cancel: the order, then position, account and book */
    log.n = 0;
    CHECK_INT(fx_cancel(e, "trader", "O00000000000000000003", &r), 0);
    CHECK_INT(log.n, 4);
    check_event(&log, 0, EV_ORDER, "trader");
    CHECK_INT(log.recs[0].status, ORDER_CANCELLED);
    check_event(&log, 1, EV_POSITION, "trader");
    check_event(&log, 2, EV_ACCOUNT, "trader");
    check_event(&log, 3, EV_BOOK, NULL);
    engine_destroy(e);
}

static void test_instrument_update_margin_rate(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    engine_result r;
    static ev_log log;
    memset(&log, 0, sizeof log);
    log.e = e;
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_MONEY(fx_view(e, "trader").margin, 20000.0);
    engine_set_event_sink(e, record_event, &log);

    command c = fx_command(CMD_INSTRUMENT_UPDATE);
    snprintf(c.u.instrument.spec.instrument_id, sizeof c.u.instrument.spec.instrument_id, "IX2401");
    c.u.instrument.spec.margin_rate = 1.5;
    c.u.instrument.fields = UPDATE_MARGIN_RATE;
    CHECK_REJECT(e, r, fx_apply(e, &c, &r), ERR_INVALID_ORDER, "margin_rate");
    CHECK_CONTAINS(r.message, "1.5");
    CHECK_INT(log.n, 0);
    c.u.instrument.spec.margin_rate = 0.20;
    CHECK_INT(fx_apply(e, &c, &r), 0);
    /* the held lots are re-margined at once: both holders' positions and accounts change */
    CHECK_INT(log.n, 5);
    CHECK_INT(log.recs[0].type, EV_INSTRUMENT);
    CHECK_INT(log.recs[1].type, EV_POSITION);
    CHECK_INT(log.recs[2].type, EV_POSITION);
    CHECK_INT(log.recs[3].type, EV_ACCOUNT);
    CHECK_INT(log.recs[4].type, EV_ACCOUNT);
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_MONEY(ins->spec.margin_rate, 0.20);
    /* only the masked field changes (the update's spec carried zeros elsewhere) */
    CHECK_INT(ins->spec.contract_multiplier, 200);
    CHECK_MONEY(ins->spec.price_tick, 0.5);
    CHECK_MONEY(ins->spec.commission_per_lot, 0.05);
    CHECK_MONEY(instrument_upper_limit(ins), 110.0);
    CHECK_STR(ins->spec.instrument_name, "IX2401");

    /* a new order freezes at the new rate: 100 x 1 x 200 x 0.20 */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK_MONEY(acc_find(e, "trader")->frozen_margin, 4000.0);
    /* SPEC 3: a held position's margin is position_price x volume x multiplier x margin_rate,
     * at the instrument's rate; the next fill re-margins all 11 lots at 0.20 (below), so the
     * 10 held lots cannot still stand at 0.10 here */
    CHECK_MONEY(fx_view(e, "trader").margin, 10 * 100.0 * 200 * 0.20);
    /* one more lot filled: 11 lots at 0.20 */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK_MONEY(fx_view(e, "trader").margin, 11 * 100.0 * 200 * 0.20);
    /* the terms of held lots cannot change under them */
    command m = fx_command(CMD_INSTRUMENT_UPDATE);
    snprintf(m.u.instrument.spec.instrument_id, sizeof m.u.instrument.spec.instrument_id,
             "CFFEX.IX2401");
    m.u.instrument.spec.contract_multiplier = 300;
    m.u.instrument.fields = UPDATE_MULTIPLIER;
    CHECK_REJECT(e, r, fx_apply(e, &m, &r), ERR_INVALID_ORDER, "CFFEX.IX2401");
    CHECK_INT(ins->spec.contract_multiplier, 200);
    snprintf(m.u.instrument.spec.instrument_id, sizeof m.u.instrument.spec.instrument_id, "IX9999");
    CHECK_REJECT(e, r, fx_apply(e, &m, &r), ERR_INSTRUMENT_NOT_FOUND, "IX9999");
    engine_destroy(e);
}

/* ====================================================================================== */
/* Snapshots                                                                               */
/* ====================================================================================== */

static command order_command(const char *acc, const char *ins, direction d, offset o, double price,
                             int64_t volume, time_condition tc, const char *client_id) {
    command c = fx_command(CMD_ORDER_INSERT);
    order_request *q = &c.u.order;
    snprintf(q->account_id, sizeof q->account_id, "%s", acc);
    snprintf(q->instrument_id, sizeof q->instrument_id, "%s", ins);
    if (client_id) snprintf(q->order_id, sizeof q->order_id, "%s", client_id);
    q->direction = d;
    q->offset = o;
    q->limit_price = price;
    q->volume = volume;
    q->time_condition = tc;
    return c;
}

/* Applies one command to two engines: the same result, and still the same state. */
static void apply_both(engine *a, engine *b, const command *c) {
    engine_result ra, rb;
    int x = engine_apply(a, c, &ra);
    int y = engine_apply(b, c, &rb);
    CHECK_INT(x, y);
    CHECK_STR(ra.message, rb.message);
    CHECK(engine_state_hash(a) == engine_state_hash(b));
}

/* Two days of business: fills, partial fills, client ids, a GTC order across the settlement,
 * a frozen account, resting close orders, and an auction in progress with a crossed book. */
static engine *busy_engine(void) {
    const char *const accs[] = {"trader", "market", "other", "idle"};
    engine *e = fx_engine(accs, 4, 1000000.0);
    engine_result r;
    instrument_spec defs[3];
    engine_default_instruments(defs, 3);
    for (int i = 0; i < 3; i++)
        CHECK_INT(fx_add_instrument(e, &defs[i]), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.5, 6, &r), 0);
    CHECK_INT(client_order(e, "other", DIR_BUY, 99.0, 2, "o-1", &r), 0);
    CHECK_INT(fx_order_full(e, "other", "IX2401", DIR_BUY, OFFSET_OPEN, 98.0, 3, PRICE_LIMIT,
                            TC_GTC, VC_ANY, "gtc-1", &r),
              0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 102.0, 2, &r), 0);
    CHECK_INT(fx_cancel(e, "trader", engine_order_at(e, r.order)->order_id, &r), 0);
    CHECK_INT(fx_transfer(e, CMD_DEPOSIT, "trader", 5000.0, &r), 0);
    CHECK_INT(fx_transfer(e, CMD_WITHDRAW, "market", 1000.0, &r), 0);
    CHECK_INT(fx_order(e, "market", "IF2501", DIR_SELL, OFFSET_OPEN, 3800.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IF2501", DIR_BUY, OFFSET_OPEN, 3800.0, 1, &r), 0);
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 101.0, &r), 0);
    CHECK_INT(fx_set_settlement_price(e, "IF2501", 3790.0, &r), 0);
    CHECK_INT(fx_settle(e, &r), 0);
    /* day 2 */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 101.5, 3, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.5, 1, &r), 0);
    CHECK_INT(fx_order_full(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSEYESTERDAY, 103.0, 2,
                            PRICE_LIMIT, TC_GFD, VC_ANY, "cy-1", &r),
              0);
    CHECK_INT(account_cmd(e, CMD_ACCOUNT_FREEZE, "idle", &r), 0);
    CHECK_INT(fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IC2501", &r), 0);
    CHECK_INT(fx_order(e, "market", "IC2501", DIR_BUY, OFFSET_OPEN, 5610.0, 2, &r), 0);
    CHECK_INT(fx_order(e, "other", "IC2501", DIR_SELL, OFFSET_OPEN, 5590.0, 1, &r), 0);
    return e;
}

/* A smaller state for the byte-level tests (every variant loads a whole engine): one day of
 * business on two narrow contracts, with resting orders, a settlement and an auction. */
static engine *small_engine(void) {
    const char *const accs[] = {"trader", "market", "other"};
    engine *e = fx_engine(accs, 3, 1000000.0);
    engine_result r;
    instrument_spec s = fx_ix2401();
    snprintf(s.instrument_id, sizeof s.instrument_id, "CFFEX.IY2401");
    CHECK_INT(fx_add_instrument(e, &s), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.5, 6, &r), 0);
    CHECK_INT(fx_order_full(e, "other", "IX2401", DIR_BUY, OFFSET_OPEN, 98.0, 3, PRICE_LIMIT,
                            TC_GTC, VC_ANY, "gtc-1", &r),
              0);
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 101.0, &r), 0);
    CHECK_INT(fx_settle(e, &r), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 101.5, 3, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.5, 1, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 103.0, 2, &r), 0);
    CHECK_INT(account_cmd(e, CMD_ACCOUNT_FREEZE, "other", &r), 0);
    CHECK_INT(fx_instrument_cmd(e, CMD_AUCTION_OPEN, "IY2401", &r), 0);
    CHECK_INT(fx_order(e, "market", "IY2401", DIR_BUY, OFFSET_OPEN, 101.0, 2, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IY2401", DIR_SELL, OFFSET_OPEN, 99.0, 1, &r), 0);
    return e;
}

static void test_snapshot_round_trip(void) {
    engine *e = busy_engine();
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_INT(engine_snapshot_save(e, &buf, &len), 0);
    char err[256] = "";
    engine *l = engine_snapshot_load(buf, len, err, sizeof err);
    CHECK(l != NULL);
    if (l == NULL) {
        fprintf(stderr, "load failed: %s\n", err);
        free(buf);
        engine_destroy(e);
        return;
    }
    CHECK(engine_state_hash(l) == engine_state_hash(e));
    /* saving the loaded engine gives the same bytes */
    unsigned char *buf2 = NULL;
    size_t len2 = 0;
    CHECK_INT(engine_snapshot_save(l, &buf2, &len2), 0);
    CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);
    /* lookups work in the restored engine */
    CHECK_STR(engine_trading_day(l), "2025-01-03");
    CHECK(engine_instrument_find(l, "IC2501") != NULL);
    CHECK(engine_instrument_find(l, "IC2501")->in_auction);
    CHECK_INT(find_order(l, "other", "gtc-1")->status, ORDER_SUBMITTED);
    CHECK_INT(find_order(l, "trader", "cy-1")->frozen_his, 2);
    CHECK(acc_find(l, "idle")->frozen);
    CHECK_INT(engine_settlement_count(l), 1);
    const char *const accs[] = {"trader", "market", "other", "idle"};
    for (int i = 0; i < 4; i++) {
        account_view a = fx_view(e, accs[i]), b = fx_view(l, accs[i]);
        CHECK_MONEY(b.balance, a.balance);
        CHECK_MONEY(b.available, a.available);
        CHECK_MONEY(b.margin, a.margin);
    }

    /* the same further commands keep both engines identical */
    command cmds[16];
    int n = 0;
    cmds[n] = fx_command(CMD_AUCTION_CLOSE);
    snprintf(cmds[n++].u.instrument_ref.instrument_id, QAEX_INSTRUMENT_ID_LEN, "IC2501");
    cmds[n] = fx_command(CMD_ORDER_CANCEL);
    snprintf(cmds[n].u.cancel.account_id, QAEX_ID_LEN, "trader");
    snprintf(cmds[n++].u.cancel.order_id, QAEX_ID_LEN, "cy-1");
    cmds[n++] = order_command("other", "IX2401", DIR_BUY, OFFSET_OPEN, 101.5, 3, TC_GFD, NULL);
    cmds[n++] = order_command("trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 101.5, 3, TC_GFD, "x-2");
    cmds[n++] = order_command("idle", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, TC_GFD, NULL);
    cmds[n] = fx_command(CMD_ACCOUNT_UNFREEZE);
    snprintf(cmds[n++].u.account_ref.account_id, QAEX_ID_LEN, "idle");
    cmds[n++] = order_command("idle", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, TC_GFD, NULL);
    cmds[n++] = order_command("market", "IX2401", DIR_SELL, OFFSET_OPEN, 98.0, 4, TC_IOC, NULL);
    cmds[n++] = order_command("other", "IX2401", DIR_SELL, OFFSET_OPEN, 99.0, 1, TC_GFD, "x-2");
    cmds[n] = fx_command(CMD_SETTLEMENT_SET_PRICE);
    snprintf(cmds[n].u.settlement_price.instrument_id, QAEX_INSTRUMENT_ID_LEN, "IX2401");
    cmds[n++].u.settlement_price.price = 100.5;
    cmds[n] = fx_command(CMD_SETTLEMENT_SET_PRICE);
    snprintf(cmds[n].u.settlement_price.instrument_id, QAEX_INSTRUMENT_ID_LEN, "IC2501");
    cmds[n++].u.settlement_price.price = 5600.0;
    cmds[n] = fx_command(CMD_SETTLEMENT_SET_PRICE);
    snprintf(cmds[n].u.settlement_price.instrument_id, QAEX_INSTRUMENT_ID_LEN, "IF2501");
    cmds[n++].u.settlement_price.price = 3795.0;
    cmds[n++] = fx_command(CMD_SETTLEMENT_EXECUTE);
    cmds[n++] = order_command("trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.5, 1, TC_GFD, NULL);
    for (int i = 0; i < n; i++)
        apply_both(e, l, &cmds[i]);
    CHECK_INT(engine_settlement_count(l), 2);
    CHECK(engine_instrument_find(l, "IC2501")->stats.volume == 0); /* reset by the settlement */
    free(buf);
    engine_destroy(l);
    engine_destroy(e);
}

/* Runs in a child process: memory is capped so a corrupt count cannot take the machine. */
static void limit_memory(void) {
#if !defined(__SANITIZE_ADDRESS__)
    struct rlimit rl = {(rlim_t)256 << 20, (rlim_t)256 << 20};
    setrlimit(RLIMIT_AS, &rl);
#endif
}

/* Runs fn in a child process, so that a crash (or a sanitizer abort) is reported as a failed
 * check instead of ending the whole test program. */
static void run_isolated(void (*fn)(void), const char *what) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        CHECK(!"fork failed");
        return;
    }
    if (pid == 0) {
        limit_memory();
        check_failures_in_test = 0;
        fn();
        _exit(check_failures_in_test == 0 ? 0 : 2);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
        fprintf(stderr, "%s: checks failed (see above)\n", what);
    } else {
        fprintf(stderr, "%s: crashed (%s %d)\n", what,
                WIFSIGNALED(status) ? "signal" : "exit status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
    check_failures_in_test++;
}

static void round_trip(engine *e) {
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_INT(engine_snapshot_save(e, &buf, &len), 0);
    char err[256] = "";
    engine *l = engine_snapshot_load(buf, len, err, sizeof err);
    CHECK(l != NULL);
    if (l != NULL) {
        CHECK(engine_state_hash(l) == engine_state_hash(e));
        /* and it trades on like the original */
        command c = order_command("trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, TC_GFD, NULL);
        apply_both(e, l, &c);
        engine_destroy(l);
    } else {
        fprintf(stderr, "load failed: %s\n", err);
    }
    free(buf);
}

/* A new engine: instruments and accounts, no order anywhere. */
static void snapshot_fresh_engine(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    round_trip(e);
    engine_destroy(e);
}

/* The usual checkpoint: right after a settlement, which cancels every day order, positions held
 * but no order resting. */
static void snapshot_after_settlement(void) {
    engine *e = fx_engine(three, 3, 1000000.0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 3, NULL), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 2, NULL), 0);
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 100.5, NULL), 0);
    CHECK_INT(fx_settle(e, NULL), 0);
    round_trip(e);
    engine_destroy(e);
}

static void test_snapshot_without_resting_orders(void) {
    run_isolated(snapshot_fresh_engine, "snapshot round trip of a fresh engine");
    run_isolated(snapshot_after_settlement, "snapshot round trip right after a settlement");
}

/* The streamed snapshot (what a forked child writes, allocating nothing) is byte for byte the
 * one engine_snapshot_save builds, and loads into the same state. */
static void test_snapshot_streamed_equals_saved(void) {
    engine *e = small_engine();
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_INT(engine_snapshot_save(e, &buf, &len), 0);
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (f == NULL) {
        free(buf);
        engine_destroy(e);
        return;
    }
    CHECK_INT(engine_snapshot_write_fd(e, fileno(f)), 0);
    CHECK_INT(lseek(fileno(f), 0, SEEK_END), (long)len);
    unsigned char *streamed = malloc(len + 1);
    CHECK(lseek(fileno(f), 0, SEEK_SET) == 0);
    size_t got = streamed ? fread(streamed, 1, len + 1, f) : 0;
    CHECK_INT(got, len);
    CHECK(streamed && memcmp(streamed, buf, len) == 0);
    char err[256];
    engine *back = streamed ? engine_snapshot_load(streamed, got, err, sizeof err) : NULL;
    CHECK(back != NULL);
    if (back) CHECK(engine_state_hash(back) == engine_state_hash(e));
    CHECK_INT(engine_snapshot_write_fd(e, -1), -1); /* a bad descriptor fails, never crashes */
    engine_destroy(back);
    free(streamed);
    free(buf);
    fclose(f);
    engine_destroy(e);
}

static void test_snapshot_refuses_bad_bytes(void) {
    engine *e = small_engine();
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_INT(engine_snapshot_save(e, &buf, &len), 0);
    char err[256];
    /* empty, bad magic, unknown version, trailing garbage */
    err[0] = '\0';
    CHECK(engine_snapshot_load(buf, 0, err, sizeof err) == NULL);
    CHECK(err[0] != '\0');
    unsigned char *copy = malloc(len + 1);
    memcpy(copy, buf, len);
    copy[0] ^= 0x01;
    err[0] = '\0';
    CHECK(engine_snapshot_load(copy, len, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "magic");
    memcpy(copy, buf, len);
    copy[8] = 99; /* a version from the future */
    err[0] = '\0';
    CHECK(engine_snapshot_load(copy, len, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "version");
    memcpy(copy, buf, len);
    copy[len] = 0;
    err[0] = '\0';
    CHECK(engine_snapshot_load(copy, len + 1, err, sizeof err) == NULL);
    /* trailing bytes move the digest: the checksum refuses the file */
    CHECK_CONTAINS(err, "checksum");
    /* every truncation is refused with a message */
    int silent = 0, accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        err[0] = '\0';
        engine *l = engine_snapshot_load(buf, cut, err, sizeof err);
        if (l != NULL) {
            accepted++;
            engine_destroy(l);
        } else if (err[0] == '\0') {
            silent++;
        }
    }
    CHECK_INT(accepted, 0);
    CHECK_INT(silent, 0);
    free(copy);
    free(buf);
    engine_destroy(e);
}

/* Corrupted bytes: every byte of a snapshot altered in four ways. The loader must refuse with a
 * message or build an engine, never crash. (A changed amount cannot be detected without a
 * checksum, which the journal layer adds; what the loader owes is not to crash.) Each variant
 * runs in a child process, so a crash is reported with its offset and the scan goes on. */
#define FLIP_PATTERNS 4

static void mutate(unsigned char *b, size_t idx) {
    size_t at = idx / FLIP_PATTERNS;
    switch (idx % FLIP_PATTERNS) {
        case 0:
            b[at] ^= 0x80;
            break;
        case 1:
            b[at] ^= 0x01;
            break;
        case 2:
            b[at] ^= 0x40;
            break;
        default:
            b[at] = 0xFF;
            break;
    }
}

typedef struct fuzz_msg {
    uint32_t idx;
    uint32_t kind; /* 0 starting, 1 refused without a message, 2 done */
} fuzz_msg;

static void fuzz_child(const unsigned char *snap, size_t len, size_t from, int fd) {
    limit_memory();
    unsigned char *b = malloc(len);
    size_t total = len * FLIP_PATTERNS;
    for (size_t i = from; i < total; i++) {
        fuzz_msg m = {(uint32_t)i, 0};
        if (write(fd, &m, sizeof m) != (ssize_t)sizeof m) _exit(3);
        memcpy(b, snap, len);
        mutate(b, i);
        char err[256] = "";
        engine *l = engine_snapshot_load(b, len, err, sizeof err);
        if (l != NULL) {
            (void)engine_state_hash(l);
            unsigned char *out = NULL;
            size_t n = 0;
            if (engine_snapshot_save(l, &out, &n) == 0) free(out);
            engine_destroy(l);
        } else if (err[0] == '\0') {
            m.kind = 1;
            if (write(fd, &m, sizeof m) != (ssize_t)sizeof m) _exit(3);
        }
    }
    fuzz_msg done = {0, 2};
    if (write(fd, &done, sizeof done) != (ssize_t)sizeof done) _exit(3);
    free(b);
    _exit(0);
}

static void test_snapshot_corruption_never_crashes(void) {
    engine *e = small_engine();
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_INT(engine_snapshot_save(e, &buf, &len), 0);
    engine_destroy(e);
    size_t total = len * FLIP_PATTERNS, next = 0;
    int crashes = 0, silent = 0;
    static const char *const pattern_name[FLIP_PATTERNS] = {"xor 0x80", "xor 0x01", "xor 0x40",
                                                            "set 0xff"};
    while (next < total && crashes < 25) {
        int fds[2];
        if (pipe(fds) != 0) {
            CHECK(!"pipe failed");
            break;
        }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            CHECK(!"fork failed");
            close(fds[0]);
            close(fds[1]);
            break;
        }
        if (pid == 0) {
            close(fds[0]);
            if (crashes > 0) { /* the first crash's sanitizer report is enough */
                int devnull = open("/dev/null", O_WRONLY);
                if (devnull >= 0) dup2(devnull, 2);
            }
            fuzz_child(buf, len, next, fds[1]);
        }
        close(fds[1]);
        fuzz_msg m;
        size_t last = next;
        bool done = false;
        while (read(fds[0], &m, sizeof m) == (ssize_t)sizeof m) {
            if (m.kind == 0) last = m.idx;
            if (m.kind == 1) {
                if (silent < 5)
                    fprintf(stderr, "snapshot byte %u (%s): refused without a message\n",
                            m.idx / FLIP_PATTERNS, pattern_name[m.idx % FLIP_PATTERNS]);
                silent++;
            }
            if (m.kind == 2) done = true;
        }
        close(fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        if (done && WIFEXITED(status) && WEXITSTATUS(status) == 0) break;
        fprintf(stderr,
                "snapshot of %zu bytes with byte %zu changed (%s) crashed the loader (%s %d)\n",
                len, last / FLIP_PATTERNS, pattern_name[last % FLIP_PATTERNS],
                WIFSIGNALED(status) ? "signal" : "exit status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        crashes++;
        next = last + 1;
    }
    CHECK_INT(crashes, 0);
    CHECK_INT(silent, 0);
    free(buf);
}

/* CMD_RISK_CONFIG: thresholds out of bounds are refused with 5001 naming the value and change
 * nothing; accepted ones judge the next order and are part of the state (hash, snapshot). */
static void test_risk_config_command(void) {
    engine_config cfg;
    engine_config_default(&cfg);
    const char *const accounts[] = {"trader"};
    engine *e = make_engine(&cfg, accounts, 1, 1e9);
    engine_result r;
    command c = fx_command(CMD_RISK_CONFIG);
    engine_risk_config_of(&cfg, &c.u.risk);
    c.u.risk.max_position_ratio = 1.5;
    CHECK_REJECT(e, r, fx_apply(e, &c, &r), ERR_CONFIG, "1.5");
    engine_risk_config_of(&cfg, &c.u.risk);
    c.u.risk.min_order_volume = 50;
    c.u.risk.max_order_volume = 40;
    CHECK_REJECT(e, r, fx_apply(e, &c, &r), ERR_CONFIG, "min (50)");
    engine_risk_config_of(&cfg, &c.u.risk);
    c.u.risk.risk_ratio_reject = NAN;
    CHECK_REJECT(e, r, fx_apply(e, &c, &r), ERR_CONFIG, "nan");
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 20, &r), 0);
    uint64_t before = engine_state_hash(e);
    engine_risk_config_of(&cfg, &c.u.risk);
    c.u.risk.max_order_volume = 10;
    CHECK_INT(fx_apply(e, &c, &r), 0);
    CHECK(engine_state_hash(e) != before);
    CHECK_INT(engine_get_config(e)->max_order_volume, 10);
    CHECK_REJECT(e, r, fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 20, &r),
                 ERR_INVALID_ORDER, "20");
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    /* a snapshot keeps the thresholds */
    unsigned char *bytes = NULL;
    size_t len = 0;
    CHECK_INT(engine_snapshot_save(e, &bytes, &len), 0);
    char err[256];
    engine *copy = bytes ? engine_snapshot_load(bytes, len, err, sizeof err) : NULL;
    CHECK(copy != NULL);
    if (copy) {
        CHECK_INT(engine_get_config(copy)->max_order_volume, 10);
        CHECK(engine_state_hash(copy) == engine_state_hash(e));
        engine_destroy(copy);
    }
    free(bytes);
    engine_destroy(e);
}

int main(void) {
    RUN_TEST(test_1001_insufficient_funds);
    RUN_TEST(test_prices_are_decimals_of_the_tick);
    RUN_TEST(test_risk_config_command);
    RUN_TEST(test_1002_position_ratio);
    RUN_TEST(test_1003_order_value);
    RUN_TEST(test_1004_risk_ratio);
    RUN_TEST(test_1005_self_trade);
    RUN_TEST(test_1006_unknown_account);
    RUN_TEST(test_1007_unknown_instrument);
    RUN_TEST(test_1008_volume);
    RUN_TEST(test_1008_price);
    RUN_TEST(test_1008_instrument_status);
    RUN_TEST(test_1008_enum_values);
    RUN_TEST(test_2001_duplicate_account);
    RUN_TEST(test_2002_frozen_account);
    RUN_TEST(test_2003_2004_transfers);
    RUN_TEST(test_2005_insufficient_position);
    RUN_TEST(test_3001_3002_cancel);
    RUN_TEST(test_3003_duplicate_client_id);
    RUN_TEST(test_6001_settlement_price_missing);
    RUN_TEST(test_settlement_price_must_make_a_valid_band);
    RUN_TEST(test_gtc_outside_the_new_band_is_cancelled);
    RUN_TEST(test_partial_fills);
    RUN_TEST(test_price_time_priority);
    RUN_TEST(test_cancel_releases_frozen);
    RUN_TEST(test_close_order_releases_lots);
    RUN_TEST(test_ioc);
    RUN_TEST(test_market_orders);
    RUN_TEST(test_fok);
    RUN_TEST(test_close_today_yesterday);
    RUN_TEST(test_call_auction);
    RUN_TEST(test_auction_tie_breaks);
    RUN_TEST(test_auction_reference_off_tick);
    RUN_TEST(test_delist);
    RUN_TEST(test_suspend_resume);
    RUN_TEST(test_event_sequence);
    RUN_TEST(test_instrument_update_margin_rate);
    RUN_TEST(test_snapshot_round_trip);
    RUN_TEST(test_snapshot_without_resting_orders);
    RUN_TEST(test_snapshot_refuses_bad_bytes);
    RUN_TEST(test_snapshot_streamed_equals_saved);
    RUN_TEST(test_snapshot_corruption_never_crashes);
    return CHECK_REPORT();
}
