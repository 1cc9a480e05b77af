/* The worked examples of the seed (lines 2218-2283, SPEC 4), reproduced through the engine.
 * "trader" is the seed's account; "market" takes the other side so every fill happens through the
 * book at the price the seed gives. */
#include "check.h"
#include "engine_fixture.h"

static const char *const two[] = {"trader", "market"};

/* Case 1: BUY OPEN 10 @ 100.0, then SELL CLOSE 10 @ 100.5. */
static void test_long_round_trip(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    engine_result r;

    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    account_view v = fx_view(e, "trader");
    const account *a = engine_account_find(e, "trader");
    CHECK_MONEY(a->frozen_margin, 20000.0);
    CHECK_MONEY(a->frozen_commission, 0.5);
    CHECK_MONEY(v.balance, 1000000.0);
    CHECK_MONEY(v.margin, 0.0);
    /* SPEC 4 freezes the commission as well as the margin: 1,000,000 - 20,000 - 0.5 */
    CHECK_MONEY(v.available, 979999.5);
    CHECK_STR(order_status_name(engine_order_at(e, r.order)->status), "Submitted");

    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, &r), 0);
    v = fx_view(e, "trader");
    CHECK_MONEY(v.balance, 999999.5);
    CHECK_MONEY(v.available, 979999.5);
    CHECK_MONEY(v.margin, 20000.0);
    CHECK_MONEY(a->frozen_margin, 0.0);
    CHECK_MONEY(a->frozen_commission, 0.0);
    const position *p = fx_position(e, "trader", "IX2401");
    position_view pv;
    engine_position_view(e, p, &pv);
    CHECK_INT(pv.volume_long, 10);
    CHECK_INT(p->volume_long_today, 10);
    CHECK_MONEY(pv.open_price_long, 100.0);

    /* the price rises: market bids 100.5 and the trader sells to close */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_CLOSE, 100.5, 10, &r), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 100.5, 10, &r), 0);
    v = fx_view(e, "trader");
    CHECK_MONEY(a->close_profit, 1000.0);
    CHECK_MONEY(a->commission, 1.0);
    CHECK_MONEY(v.balance, 1000999.0);
    CHECK_MONEY(v.available, 1000999.0);
    CHECK_MONEY(v.margin, 0.0);
    CHECK_INT(position_volume_long(p), 0);
    engine_destroy(e);
}

/* Case 2: SELL OPEN 10 @ 100.0 (towards -2), then BUY CLOSE 10 @ 99.5. */
static void test_short_round_trip(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, NULL), 0);
    CHECK_MONEY(engine_account_find(e, "trader")->frozen_margin, 20000.0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, NULL), 0);
    account_view v = fx_view(e, "trader");
    CHECK_MONEY(v.balance, 999999.5);
    CHECK_MONEY(v.available, 979999.5);
    CHECK_MONEY(v.margin, 20000.0);
    position_view pv;
    engine_position_view(e, fx_position(e, "trader", "IX2401"), &pv);
    CHECK_INT(pv.volume_short, 10);
    CHECK_MONEY(pv.open_price_short, 100.0);

    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_CLOSE, 99.5, 10, NULL), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_CLOSE, 99.5, 10, NULL), 0);
    v = fx_view(e, "trader");
    CHECK_MONEY(v.balance, 1000999.0);
    CHECK_MONEY(v.available, 1000999.0);
    CHECK_MONEY(v.margin, 0.0);
    CHECK_MONEY(engine_account_find(e, "trader")->close_profit, 1000.0);
    CHECK_INT(position_volume_short(fx_position(e, "trader", "IX2401")), 0);
    engine_destroy(e);
}

/* Case 3: SELL CLOSE (towards -1/-3) with no long position is refused with 2005. */
static void test_sell_close_without_position(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    engine_result r;
    uint64_t before = engine_state_hash(e);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 100.0, 10, &r),
              ERR_INSUFFICIENT_POSITION);
    CHECK_CONTAINS(r.message, "closable 0, requested 10");
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSEYESTERDAY, 100.0, 10, &r),
              ERR_INSUFFICIENT_POSITION);
    CHECK(engine_state_hash(e) == before);
    engine_destroy(e);
}

/* Case 4: long 10 and short 5 both hold margin: (10 + 5) * 100 * 200 * 0.1 = 30,000. */
static void test_hedged_margin(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, NULL), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, NULL), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 5, NULL), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 5, NULL), 0);
    const position *p = fx_position(e, "trader", "IX2401");
    CHECK_INT(p->volume_long_today, 10);
    CHECK_INT(p->volume_short_today, 5);
    CHECK_MONEY(fx_view(e, "trader").margin, 30000.0);
    engine_destroy(e);
}

/* Settlement: the long position is marked to 101.0, its profit realised into the balance,
 * margin re-computed at the settlement price, and the lots become yesterday's. */
static void test_settlement_pnl(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    engine_result r;
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, NULL), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, NULL), 0);
    CHECK_INT(fx_settle(e, &r), ERR_SETTLEMENT_PRICE_MISSING);
    CHECK_CONTAINS(r.message, "CFFEX.IX2401");
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 101.0, NULL), 0);
    CHECK_INT(fx_settle(e, &r), 0);

    /* trader: 1,000,000 - 0.5 + (101 - 100) * 10 * 200 = 1,001,999.5 */
    account_view v = fx_view(e, "trader");
    const account *a = engine_account_find(e, "trader");
    CHECK_MONEY(a->pre_balance, 1001999.5);
    CHECK_MONEY(v.balance, 1001999.5);
    CHECK_MONEY(v.margin, 101.0 * 10 * 200 * 0.10);
    CHECK_MONEY(v.available, 1001999.5 - 20200.0);
    CHECK_MONEY(a->commission, 0.0);
    const position *p = fx_position(e, "trader", "IX2401");
    CHECK_INT(p->volume_long_today, 0);
    CHECK_INT(p->volume_long_his, 10);
    position_view pv;
    engine_position_view(e, p, &pv);
    CHECK_MONEY(pv.position_price_long, 101.0);
    CHECK_MONEY(pv.open_price_long, 100.0);
    /* market: short 10 loses 2,000 and paid 0.5 */
    CHECK_MONEY(fx_view(e, "market").balance, 1000000.0 - 0.5 - 2000.0);

    const settlement_result *sr = engine_settlement_at(e, 0);
    CHECK(sr != NULL);
    CHECK_STR(sr->settlement_date, "2025-01-02");
    CHECK_INT(sr->total_accounts, 2);
    CHECK_INT(sr->settled_accounts, 2);
    CHECK_INT(sr->force_closed_count, 0);
    CHECK_MONEY(sr->total_commission, 1.0);
    CHECK_MONEY(sr->total_profit, 0.0);
    CHECK_STR(engine_trading_day(e), "2025-01-03");

    /* the new day's limits follow the settlement price; closing yesterday's lots works */
    const instrument *ins = engine_instrument_find(e, "IX2401");
    CHECK_MONEY(ins->spec.pre_settlement, 101.0);
    CHECK_MONEY(instrument_upper_limit(ins), 111.0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_BUY, OFFSET_CLOSE, 102.0, 10, NULL), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSEYESTERDAY, 102.0, 10, NULL), 0);
    /* closed against the position price 101: (102 - 101) * 10 * 200 */
    CHECK_MONEY(a->close_profit, 2000.0);
    CHECK_MONEY(fx_view(e, "trader").balance, 1001999.5 + 2000.0 - 0.5);
    engine_destroy(e);
}

/* Forced liquidation: an account whose risk ratio reaches 1.0 at settlement is closed out at the
 * settlement price and listed in the result. */
static void test_forced_liquidation(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    engine_result r;
    /* a thin account: 30,000 of equity behind a 10-lot long (margin 20,000) */
    CHECK_INT(fx_open_account(e, "thin", 30000.0), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, NULL), 0);
    /* the position ratio limit (0.5) would refuse 20,000 of margin on 30,000: open on a richer
     * balance, then withdraw */
    CHECK_INT(fx_transfer(e, CMD_DEPOSIT, "thin", 20000.0, NULL), 0);
    CHECK_INT(fx_order(e, "thin", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    CHECK_INT(fx_transfer(e, CMD_WITHDRAW, "thin", 20000.0, &r), 0);
    /* settlement at 95.5: loss (100 - 95.5) * 10 * 200 = 9,000; balance 30,000 - 0.5 - 9,000 =
     * 20,999.5; margin 95.5 * 10 * 200 * 0.1 = 19,100: risk 0.9096 -> kept */
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 95.5, NULL), 0);
    CHECK_INT(fx_settle(e, &r), 0);
    CHECK_MONEY(fx_view(e, "thin").balance, 20999.5);
    CHECK_INT(engine_settlement_at(e, 0)->force_closed_count, 0);
    /* next day, settlement at 91.0: another 9,000 lost: 11,999.5 against margin 18,200 -> 1.52 */
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 91.0, NULL), 0);
    CHECK_INT(fx_settle(e, &r), 0);
    const settlement_result *sr = engine_settlement_at(e, 1);
    CHECK_INT(sr->force_closed_count, 1);
    CHECK_STR(sr->force_closed_accounts[0], "thin");
    account_view v = fx_view(e, "thin");
    CHECK_MONEY(v.balance, 11999.5);
    CHECK_MONEY(v.margin, 0.0);
    CHECK_MONEY(v.available, 11999.5);
    CHECK_INT(position_volume_long(fx_position(e, "thin", "IX2401")), 0);
    /* the liquidation is recorded as a trade of the account */
    const trade *t = engine_trade_first(e, engine_account_find(e, "thin"));
    CHECK(t != NULL && t->is_liquidation);
    if (t) {
        CHECK_INT(t->volume, 10);
        CHECK_MONEY(t->price, 91.0);
        CHECK_INT(t->direction, DIR_SELL);
    }
    engine_destroy(e);
}

int main(void) {
    RUN_TEST(test_long_round_trip);
    RUN_TEST(test_short_round_trip);
    RUN_TEST(test_sell_close_without_position);
    RUN_TEST(test_hedged_margin);
    RUN_TEST(test_settlement_pnl);
    RUN_TEST(test_forced_liquidation);
    return CHECK_REPORT();
}
