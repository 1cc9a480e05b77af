/* The JSON codecs: encoders checked against engine state after real trades, every decoder error
 * message, enum leniency, the HTTP status table. Run under ASan, which also checks for leaks. */
#include "check.h"
#include "engine_fixture.h"
#include "proto/codec.h"

#include <jansson.h>
#include <stdlib.h>

static const char *const two[] = {"trader", "market"};

/* ---- reading encoded objects ---- */

static const char *jstr(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

static long long jint(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) {
        fprintf(stderr, "  %s is not an integer\n", key);
        return -999999;
    }
    return (long long)json_integer_value(v);
}

static double jreal(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) {
        fprintf(stderr, "  %s is not a number\n", key);
        return -999999.0;
    }
    return json_number_value(v);
}

static bool jbool(const json_t *obj, const char *key) {
    return json_is_true(json_object_get(obj, key));
}

static bool has(const json_t *obj, const char *key) {
    return json_object_get(obj, key) != NULL;
}

/* A compact dump in insertion order; the caller frees. */
static char *dump(const json_t *v) {
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* trader buys 10 @ 100 and market sells 4 into it: trader's order is PartiallyFilled. */
typedef struct scenario {
    engine *e;
    const order *buy;
    int64_t insert_ms, fill_ms;
} scenario;

static scenario partial_fill(void) {
    scenario s;
    engine_result r;
    s.e = fx_engine(two, 2, 1000000.0);
    CHECK_INT(fx_order(s.e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, &r), 0);
    s.insert_ms = fixture_clock_ns / 1000000;
    s.buy = engine_order_at(s.e, r.order);
    CHECK_INT(fx_order(s.e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 4, &r), 0);
    s.fill_ms = fixture_clock_ns / 1000000;
    return s;
}

/* ---- encoders ---- */

static void test_order_encoding(void) {
    scenario s = partial_fill();
    json_t *o = codec_order(s.e, s.buy);
    CHECK(o != NULL);
    CHECK_STR(jstr(o, "order_id"), s.buy->order_id);
    CHECK_INT(strlen(jstr(o, "order_id")), 21);
    CHECK(jstr(o, "order_id")[0] == 'O');
    char xid[QAEX_ID_LEN];
    engine_order_exchange_id(s.e, s.buy, xid, sizeof xid);
    CHECK_STR(jstr(o, "exchange_order_id"), xid);
    CHECK_STR(jstr(o, "account_id"), "trader");
    CHECK_STR(jstr(o, "user_id"), "trader");
    CHECK_STR(jstr(o, "instrument_id"), "CFFEX.IX2401");
    CHECK_STR(jstr(o, "exchange_id"), "CFFEX");
    CHECK_STR(jstr(o, "direction"), "BUY");
    CHECK_STR(jstr(o, "offset"), "OPEN");
    CHECK_STR(jstr(o, "price_type"), "LIMIT");
    CHECK_STR(jstr(o, "order_type"), "LIMIT");
    CHECK_MONEY(jreal(o, "limit_price"), 100.0);
    CHECK_MONEY(jreal(o, "price"), 100.0);
    CHECK_INT(jint(o, "volume_orign"), 10);
    CHECK_INT(jint(o, "volume"), 10);
    CHECK_INT(jint(o, "volume_left"), 6);
    CHECK_INT(jint(o, "filled_volume"), 4);
    CHECK_STR(jstr(o, "time_condition"), "GFD");
    CHECK_STR(jstr(o, "volume_condition"), "ANY");
    CHECK_STR(jstr(o, "status"), "PartiallyFilled");
    /* 6 lots still frozen: 100 * 6 * 200 * 10% */
    CHECK_MONEY(jreal(o, "frozen_margin"), 12000.0);
    CHECK(has(o, "last_msg"));
    CHECK_INT(jint(o, "insert_date_time"), s.insert_ms);
    CHECK_INT(jint(o, "submit_time"), s.insert_ms);
    CHECK_INT(jint(o, "update_time"), s.fill_ms);
    CHECK(jint(o, "insert_date_time") > 1700000000000LL && jint(o, "insert_date_time") < 2e12);
    CHECK_INT(jint(o, "towards"), 1);
    CHECK_INT(jint(o, "seqno"), (long long)s.buy->seq);
    json_decref(o);

    /* filled: the rest trades */
    engine_result r;
    CHECK_INT(fx_order(s.e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 6, &r), 0);
    o = codec_order(s.e, s.buy);
    CHECK_STR(jstr(o, "status"), "Filled");
    CHECK_INT(jint(o, "filled_volume"), 10);
    CHECK_INT(jint(o, "volume_left"), 0);
    CHECK_MONEY(jreal(o, "frozen_margin"), 0.0);
    json_decref(o);

    /* a cancelled sell close: towards -3 */
    CHECK_INT(fx_order(s.e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 105.0, 2, &r), 0);
    const order *close = engine_order_at(s.e, r.order);
    CHECK_INT(fx_cancel(s.e, "trader", close->order_id, NULL), 0);
    o = codec_order(s.e, close);
    CHECK_STR(jstr(o, "status"), "Cancelled");
    CHECK_STR(jstr(o, "direction"), "SELL");
    CHECK_STR(jstr(o, "offset"), "CLOSE");
    CHECK_INT(jint(o, "towards"), -3);
    CHECK_INT(jint(o, "filled_volume"), 0);
    json_decref(o);
    engine_destroy(s.e);
}

static void test_trade_encoding(void) {
    scenario s = partial_fill();
    const trade *mine = engine_trade_first(s.e, engine_account_find(s.e, "trader"));
    const trade *theirs = engine_trade_first(s.e, engine_account_find(s.e, "market"));
    CHECK(mine != NULL && theirs != NULL);
    if (mine == NULL || theirs == NULL) {
        engine_destroy(s.e);
        return;
    }
    json_t *a = codec_trade(s.e, mine), *b = codec_trade(s.e, theirs);
    char tid[32];
    order_format_seq('T', mine->seq, tid, sizeof tid);
    CHECK_STR(jstr(a, "trade_id"), tid);
    CHECK_INT(strlen(jstr(a, "trade_id")), 21);
    CHECK_STR(jstr(a, "order_id"), s.buy->order_id);
    char xid[QAEX_ID_LEN];
    engine_order_exchange_id(s.e, s.buy, xid, sizeof xid);
    CHECK_STR(jstr(a, "exchange_order_id"), xid);
    /* both sides of one match share the exchange trade id, never the trade id */
    CHECK_STR(jstr(a, "exchange_trade_id"), jstr(b, "exchange_trade_id"));
    CHECK(strcmp(jstr(a, "trade_id"), jstr(b, "trade_id")) != 0);
    CHECK(jstr(a, "exchange_trade_id")[0] == 'M');
    CHECK_STR(jstr(a, "account_id"), "trader");
    CHECK_STR(jstr(b, "account_id"), "market");
    CHECK_STR(jstr(a, "instrument_id"), "CFFEX.IX2401");
    CHECK_STR(jstr(a, "direction"), "BUY");
    CHECK_STR(jstr(b, "direction"), "SELL");
    CHECK_STR(jstr(a, "offset"), "OPEN");
    CHECK_MONEY(jreal(a, "price"), 100.0);
    CHECK_INT(jint(a, "volume"), 4);
    CHECK_MONEY(jreal(a, "commission"), 0.2); /* 4 lots * 0.05 */
    CHECK_MONEY(jreal(a, "close_profit"), 0.0);
    CHECK_INT(jint(a, "trade_date_time"), s.fill_ms);
    CHECK_INT(jint(a, "timestamp"), s.fill_ms);
    CHECK(!jbool(a, "is_taker"));
    CHECK(jbool(b, "is_taker"));
    CHECK(!jbool(a, "is_liquidation"));
    CHECK(json_is_boolean(json_object_get(a, "is_liquidation")));
    CHECK_INT(jint(a, "towards"), 1);
    CHECK_INT(jint(b, "towards"), -2);
    json_decref(a);
    json_decref(b);
    engine_destroy(s.e);
}

static void test_account_and_position_encoding(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, NULL), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, NULL), 0);
    /* the price moves to 101: a trade between the two at 101 (1 lot each way) */
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 101.0, 1, NULL), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 101.0, 1, NULL), 0);
    /* and a resting close order freezes 3 long lots */
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_SELL, OFFSET_CLOSE, 105.0, 3, NULL), 0);

    const account *a = engine_account_find(e, "trader");
    account_view v;
    engine_account_view(e, a, &v);
    json_t *j = codec_account(e, a);
    CHECK(j != NULL);
    CHECK_STR(jstr(j, "user_id"), "trader");
    CHECK_STR(jstr(j, "account_id"), "trader");
    CHECK_STR(jstr(j, "portfolio_cookie"), "trader");
    CHECK_STR(jstr(j, "currency"), "CNY");
    CHECK_MONEY(jreal(j, "pre_balance"), 1000000.0);
    CHECK_MONEY(jreal(j, "deposit"), 0.0);
    CHECK_MONEY(jreal(j, "withdraw"), 0.0);
    CHECK_MONEY(jreal(j, "WithdrawQuota"), v.withdraw_quota);
    CHECK_MONEY(jreal(j, "static_balance"), 1000000.0);
    CHECK_MONEY(jreal(j, "close_profit"), 0.0);
    CHECK_MONEY(jreal(j, "commission"), 0.55);
    CHECK_MONEY(jreal(j, "premium"), 0.0);
    /* 10 lots bought at 100 marked at 101: +2000; the lot bought at 101: 0 */
    CHECK_MONEY(jreal(j, "position_profit"), 2000.0);
    CHECK_MONEY(jreal(j, "float_profit"), 2000.0);
    CHECK_MONEY(jreal(j, "balance"), v.balance);
    CHECK_MONEY(jreal(j, "balance"), 1000000.0 - 0.55 + 2000.0);
    CHECK_MONEY(jreal(j, "margin"), v.margin);
    CHECK_MONEY(jreal(j, "frozen_margin"), 0.0);
    CHECK_MONEY(jreal(j, "frozen_commission"), 0.0);
    CHECK_MONEY(jreal(j, "frozen_premium"), 0.0);
    CHECK_MONEY(jreal(j, "available"), v.available);
    CHECK_MONEY(jreal(j, "risk_ratio"), v.risk_ratio);
    CHECK_STR(jstr(j, "risk_level"), "Low");
    CHECK(json_is_false(json_object_get(j, "is_frozen")));
    CHECK_MONEY(jreal(j, "frozen"), 0.0);
    CHECK_MONEY(jreal(j, "profit"), 2000.0 - 0.55);
    CHECK(json_is_integer(json_object_get(j, "created_at")));
    json_decref(j);

    const position *p = fx_position(e, "trader", "IX2401");
    position_view pv;
    engine_position_view(e, p, &pv);
    j = codec_position(e, p);
    CHECK(j != NULL);
    CHECK_STR(jstr(j, "user_id"), "trader");
    CHECK_STR(jstr(j, "exchange_id"), "CFFEX");
    CHECK_STR(jstr(j, "instrument_id"), "CFFEX.IX2401");
    CHECK_INT(jint(j, "volume_long_today"), 11);
    CHECK_INT(jint(j, "volume_long_his"), 0);
    CHECK_INT(jint(j, "volume_long"), 11);
    CHECK_INT(jint(j, "volume_long_frozen_today"), 3);
    CHECK_INT(jint(j, "volume_long_frozen_his"), 0);
    CHECK_INT(jint(j, "volume_long_frozen"), 3);
    CHECK_INT(jint(j, "volume_long_yd"), 0);
    CHECK_INT(jint(j, "volume_short"), 0);
    CHECK_INT(jint(j, "volume_short_today"), 0);
    CHECK_INT(jint(j, "volume_short_frozen"), 0);
    CHECK_MONEY(jreal(j, "open_price_long"), pv.open_price_long);
    CHECK_MONEY(jreal(j, "open_price_long"), (100.0 * 10 + 101.0) / 11);
    CHECK_MONEY(jreal(j, "open_cost_long"), (100.0 * 10 + 101.0) * 200);
    CHECK_MONEY(jreal(j, "position_price_long"), pv.position_price_long);
    CHECK_MONEY(jreal(j, "position_cost_long"), p->position_cost_long);
    CHECK_MONEY(jreal(j, "last_price"), 101.0);
    CHECK_MONEY(jreal(j, "float_profit_long"), 2000.0);
    CHECK_MONEY(jreal(j, "float_profit"), 2000.0);
    CHECK_MONEY(jreal(j, "position_profit_long"), 2000.0);
    CHECK_MONEY(jreal(j, "position_profit"), 2000.0);
    CHECK_MONEY(jreal(j, "margin_long"), p->margin_long);
    CHECK_MONEY(jreal(j, "margin"), pv.margin);
    CHECK_MONEY(jreal(j, "cost_long"), pv.open_price_long);
    CHECK_MONEY(jreal(j, "profit_long"), 2000.0);
    static const char *const every[] = {"volume_short_his",
                                        "volume_short_frozen_today",
                                        "volume_short_frozen_his",
                                        "volume_short_yd",
                                        "open_price_short",
                                        "open_cost_short",
                                        "position_price_short",
                                        "position_cost_short",
                                        "float_profit_short",
                                        "position_profit_short",
                                        "margin_short",
                                        "pos_long_his",
                                        "pos_long_today",
                                        "pos_short_his",
                                        "pos_short_today"};
    for (size_t i = 0; i < sizeof every / sizeof every[0]; i++)
        if (!has(j, every[i])) {
            fprintf(stderr, "  position lacks %s\n", every[i]);
            CHECK(has(j, every[i]));
        }
    json_decref(j);

    /* an operator freeze shows; frozen money shows as the seed's "frozen" number */
    command c = fx_command(CMD_ACCOUNT_FREEZE);
    snprintf(c.u.account_ref.account_id, sizeof c.u.account_ref.account_id, "market");
    CHECK_INT(fx_apply(e, &c, NULL), 0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 99.0, 1, NULL), 0);
    j = codec_account(e, a);
    CHECK_MONEY(jreal(j, "frozen_margin"), 99.0 * 200 * 0.1);
    CHECK_MONEY(jreal(j, "frozen"), 99.0 * 200 * 0.1 + 0.05);
    json_decref(j);
    j = codec_account(e, engine_account_find(e, "market"));
    CHECK(jbool(j, "is_frozen"));
    json_decref(j);
    engine_destroy(e);
}

static void test_instrument_encoding(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    const instrument *ins = engine_instrument_find(e, "IX2401");
    json_t *j = codec_instrument(e, ins);
    CHECK(j != NULL);
    CHECK_STR(jstr(j, "instrument_id"), "CFFEX.IX2401");
    CHECK_STR(jstr(j, "instrument_name"), "IX2401");
    CHECK_STR(jstr(j, "instrument_type"), "Future");
    CHECK_STR(jstr(j, "exchange"), "CFFEX");
    CHECK_INT(jint(j, "contract_multiplier"), 200);
    CHECK_MONEY(jreal(j, "price_tick"), 0.5);
    CHECK_MONEY(jreal(j, "margin_rate"), 0.10);
    CHECK_MONEY(jreal(j, "commission_rate"), 0.0);
    CHECK_MONEY(jreal(j, "commission_per_lot"), 0.05);
    CHECK_MONEY(jreal(j, "limit_up_rate"), 0.10);
    CHECK_MONEY(jreal(j, "limit_down_rate"), 0.10);
    CHECK(json_is_null(json_object_get(j, "list_date")));
    CHECK(json_is_null(json_object_get(j, "expire_date")));
    CHECK_STR(jstr(j, "status"), "Trading");
    CHECK_MONEY(jreal(j, "pre_settlement"), 100.0);
    CHECK_MONEY(jreal(j, "pre_close"), 100.0);
    CHECK_MONEY(jreal(j, "upper_limit"), 110.0);
    CHECK_MONEY(jreal(j, "lower_limit"), 90.0);
    CHECK_MONEY(jreal(j, "last_price"), 100.0);
    CHECK(json_is_false(json_object_get(j, "in_auction")));
    /* no "-0.0" anywhere: commission_rate is a plain 0.0 */
    char *text = dump(j);
    CHECK(strstr(text, "-0.0") == NULL);
    free(text);
    json_decref(j);

    /* dates appear once set; suspension shows */
    instrument_spec s = fx_ix2401();
    snprintf(s.instrument_id, sizeof s.instrument_id, "SHFE.cu2501");
    snprintf(s.list_date, sizeof s.list_date, "2024-01-15");
    snprintf(s.expire_date, sizeof s.expire_date, "2025-01-15");
    CHECK_INT(fx_add_instrument(e, &s), 0);
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_SUSPEND, "SHFE.cu2501", NULL), 0);
    j = codec_instrument(e, engine_instrument_find(e, "cu2501"));
    CHECK_STR(jstr(j, "list_date"), "2024-01-15");
    CHECK_STR(jstr(j, "expire_date"), "2025-01-15");
    CHECK_STR(jstr(j, "exchange"), "SHFE");
    CHECK_STR(jstr(j, "status"), "Suspended");
    json_decref(j);
    engine_destroy(e);
}

static void test_qifi(void) {
    scenario s = partial_fill();
    const account *a = engine_account_find(s.e, "trader");
    account_view v;
    engine_account_view(s.e, a, &v);
    json_t *q = codec_qifi(s.e, a);
    CHECK(q != NULL);
    CHECK_STR(jstr(q, "account_cookie"), "trader");
    CHECK_STR(jstr(q, "portfolio_cookie"), "trader");
    CHECK_STR(jstr(q, "user_cookie"), "trader");
    CHECK_STR(jstr(q, "broker"), "QAExchange");
    CHECK_STR(jstr(q, "market_type"), "future");
    CHECK_STR(jstr(q, "running_environment"), "sim");
    CHECK_STR(jstr(q, "trading_day"), engine_trading_day(s.e));
    /* the fill at 2025-01-02 10:00:00.00x +08:00 is the account's latest event */
    CHECK_CONTAINS(jstr(q, "updatetime"), "2025-01-02 10:00:00");
    CHECK_MONEY(jreal(q, "money"), v.available);

    const json_t *acc = json_object_get(q, "accounts");
    CHECK_MONEY(jreal(acc, "balance"), v.balance);
    CHECK_MONEY(jreal(acc, "available"), v.available);
    CHECK_MONEY(jreal(acc, "margin"), v.margin);
    CHECK_MONEY(jreal(acc, "margin"), 8000.0);

    const json_t *positions = json_object_get(q, "positions");
    CHECK_INT(json_object_size(positions), 1);
    CHECK_INT(jint(json_object_get(positions, "CFFEX.IX2401"), "volume_long"), 4);

    const json_t *orders = json_object_get(q, "orders");
    CHECK_INT(json_object_size(orders), 1);
    const json_t *o = json_object_get(orders, s.buy->order_id);
    CHECK_STR(jstr(o, "status"), "PartiallyFilled");
    CHECK_INT(jint(o, "filled_volume"), 4);

    const json_t *trades = json_object_get(q, "trades");
    CHECK_INT(json_object_size(trades), 1);
    const char *key;
    const json_t *t;
    json_object_foreach((json_t *)trades, key, t) {
        CHECK_STR(jstr(t, "trade_id"), key);
        CHECK_INT(jint(t, "volume"), 4);
    }
    static const char *const empties[] = {"banks", "transfers", "event", "settlement", "frozen"};
    for (size_t i = 0; i < 5; i++) {
        const json_t *m = json_object_get(q, empties[i]);
        CHECK(json_is_object(m) && json_object_size(m) == 0);
    }
    json_decref(q);

    /* an account with no activity: empty maps, updatetime from its opening */
    q = codec_qifi(s.e, engine_account_find(s.e, "market"));
    CHECK(q != NULL);
    json_decref(q);
    CHECK_INT(fx_open_account(s.e, "idle", 5000.0), 0);
    q = codec_qifi(s.e, engine_account_find(s.e, "idle"));
    CHECK_INT(json_object_size(json_object_get(q, "orders")), 0);
    CHECK_INT(json_object_size(json_object_get(q, "positions")), 0);
    CHECK_MONEY(jreal(json_object_get(q, "accounts"), "balance"), 5000.0);
    json_decref(q);
    engine_destroy(s.e);
}

static void test_settlement_encoding(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 10, NULL), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 10, NULL), 0);
    CHECK_INT(fx_set_settlement_price(e, "IX2401", 102.0, NULL), 0);
    CHECK_INT(fx_settle(e, NULL), 0);
    CHECK_INT(engine_settlement_count(e), 1);
    const settlement_result *sr = engine_settlement_at(e, 0);
    json_t *j = codec_settlement_result(sr);
    CHECK(j != NULL);
    CHECK_STR(jstr(j, "settlement_date"), sr->settlement_date);
    CHECK_INT(jint(j, "total_accounts"), 2);
    CHECK_INT(jint(j, "settled_accounts"), sr->settled_accounts);
    CHECK_INT(jint(j, "failed_accounts"), 0);
    CHECK(json_is_array(json_object_get(j, "force_closed_accounts")));
    CHECK_INT(json_array_size(json_object_get(j, "force_closed_accounts")), 0);
    CHECK_INT(jint(j, "force_closed_count"), 0);
    CHECK_MONEY(jreal(j, "total_commission"), sr->total_commission);
    CHECK_MONEY(jreal(j, "total_profit"), sr->total_profit);
    CHECK_INT(jint(j, "timestamp"), sr->ts_ns / 1000000);
    json_decref(j);

    /* a hand-made result with liquidations */
    char closed[2][QAEX_ID_LEN] = {"acc1", "acc2"};
    settlement_result fake = sr[0];
    fake.force_closed_count = 2;
    fake.force_closed_accounts = closed;
    j = codec_settlement_result(&fake);
    const json_t *list = json_object_get(j, "force_closed_accounts");
    CHECK_INT(json_array_size(list), 2);
    CHECK_STR(json_string_value(json_array_get(list, 1)), "acc2");
    json_decref(j);

    account_settlement as;
    memset(&as, 0, sizeof as);
    as.account = engine_account_find(e, "trader");
    snprintf(as.date, sizeof as.date, "2025-01-02");
    as.pre_balance = 1000000.0;
    as.balance = 1003999.5;
    as.position_profit = 4000.0;
    as.commission = 0.5;
    as.risk_ratio = 0.02;
    j = codec_account_settlement(&as);
    CHECK_STR(jstr(j, "user_id"), "trader");
    CHECK_STR(jstr(j, "account_id"), "trader");
    CHECK_STR(jstr(j, "date"), "2025-01-02");
    CHECK_MONEY(jreal(j, "pre_balance"), 1000000.0);
    CHECK_MONEY(jreal(j, "balance"), 1003999.5);
    CHECK_MONEY(jreal(j, "close_profit"), 0.0);
    CHECK_MONEY(jreal(j, "position_profit"), 4000.0);
    CHECK_MONEY(jreal(j, "commission"), 0.5);
    CHECK_MONEY(jreal(j, "risk_ratio"), 0.02);
    CHECK(json_is_false(json_object_get(j, "force_close")));
    json_decref(j);
    engine_destroy(e);
}

/* A name the engine holds with a cut multi-byte character still encodes. */
static void test_invalid_utf8_is_repaired(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    command c = fx_command(CMD_ACCOUNT_OPEN);
    snprintf(c.u.account_open.account_id, sizeof c.u.account_open.account_id, "named");
    snprintf(c.u.account_open.account_name, sizeof c.u.account_open.account_name,
             "\xe5\xbc\xa0\xe4\xb8"); /* "张" and half of "三" */
    CHECK_INT(fx_apply(e, &c, NULL), 0);
    json_t *j = codec_account(e, engine_account_find(e, "named"));
    CHECK(j != NULL);
    CHECK_STR(jstr(j, "account_name"), "\xe5\xbc\xa0");
    json_decref(j);
    engine_destroy(e);
}

/* Malformed bytes in the middle become '?'; valid text is never altered. */
static void test_malformed_bytes_are_replaced(void) {
    json_t *j = codec_envelope_error(5000, "bad \xff byte, \xe4\xb8 cut, \xed\xa0\x80 surrogate");
    CHECK(j != NULL);
    CHECK_STR(jstr(json_object_get(j, "error"), "message"), "bad ? byte, ?? cut, ??? surrogate");
    json_decref(j);
    j = codec_ws_error(1001, "资金不足 €");
    CHECK_STR(jstr(j, "message"), "资金不足 €");
    json_decref(j);
}

/* ---- allocation failures: every encoder returns NULL and leaks nothing (LeakSanitizer) ---- */

static long alloc_countdown = -1; /* fail the allocation this many calls ahead; -1: never */

static void *failing_malloc(size_t n) {
    if (alloc_countdown == 0) {
        alloc_countdown = -1;
        return NULL;
    }
    if (alloc_countdown > 0) alloc_countdown--;
    return malloc(n);
}

typedef json_t *(*encode_fn)(void *ctx);

/* Fails the 1st, 2nd, ... allocation of one encoding until it needs no more; returns the number
 * of allocations the encoding makes. */
static int fail_each_allocation(encode_fn fn, void *ctx) {
    json_set_alloc_funcs(failing_malloc, free);
    int n = 0;
    for (;; n++) {
        alloc_countdown = n;
        json_t *v = fn(ctx);
        bool injected = alloc_countdown == -1;
        alloc_countdown = -1;
        if (!injected) {
            CHECK(v != NULL);
            json_decref(v);
            break;
        }
        if (v != NULL) fprintf(stderr, "  allocation %d failed but a value came back\n", n);
        CHECK(v == NULL);
        json_decref(v);
    }
    json_set_alloc_funcs(malloc, free);
    return n;
}

static engine *alloc_engine;
static const order *alloc_order;

static json_t *enc_qifi(void *ctx) {
    return codec_qifi(alloc_engine, ctx);
}
static json_t *enc_order(void *ctx) {
    return codec_order(alloc_engine, ctx);
}
static json_t *enc_instrument(void *ctx) {
    return codec_instrument(alloc_engine, ctx);
}
static json_t *enc_error(void *ctx) {
    return codec_envelope_error(1001, ctx);
}
static json_t *enc_ok(void *ctx) {
    return codec_envelope_ok(codec_order(alloc_engine, ctx));
}
static json_t *enc_settlement(void *ctx) {
    return codec_settlement_result(ctx);
}

static void test_allocation_failures(void) {
    scenario s = partial_fill();
    alloc_engine = s.e;
    alloc_order = s.buy;
    CHECK_INT(fx_set_settlement_price(s.e, "IX2401", 100.0, NULL), 0);
    CHECK_INT(fx_settle(s.e, NULL), 0);
    const account *a = engine_account_find(s.e, "trader");
    CHECK(fail_each_allocation(enc_qifi, (void *)a) > 100);
    CHECK(fail_each_allocation(enc_order, (void *)alloc_order) > 20);
    CHECK(fail_each_allocation(enc_instrument, (void *)engine_instrument_find(s.e, "IX2401")) > 10);
    CHECK(fail_each_allocation(enc_error, "资金不足") > 3);
    CHECK(fail_each_allocation(enc_ok, (void *)alloc_order) > 20);
    char closed[1][QAEX_ID_LEN] = {"trader"};
    settlement_result sr = *engine_settlement_at(s.e, 0);
    sr.force_closed_count = 1;
    sr.force_closed_accounts = closed;
    CHECK(fail_each_allocation(enc_settlement, &sr) > 5);
    engine_destroy(s.e);
}

/* ---- envelope, statuses, `type` messages ---- */

static void test_envelopes(void) {
    json_t *j = codec_envelope_ok(json_pack("{s:s}", "order_id", "O1"));
    char *text = dump(j);
    CHECK_STR(text, "{\"success\":true,\"data\":{\"order_id\":\"O1\"},\"error\":null}");
    free(text);
    json_decref(j);

    CHECK(codec_envelope_ok(NULL) == NULL); /* an inner encoder failed */
    j = codec_envelope_ok(json_null());
    text = dump(j);
    CHECK_STR(text, "{\"success\":true,\"data\":null,\"error\":null}");
    free(text);
    json_decref(j);

    j = codec_envelope_error(1001, "资金不足: 需要 10000.00, 可用 5000.00");
    text = dump(j);
    CHECK_STR(text, "{\"success\":false,\"data\":null,\"error\":{\"code\":1001,\"message\":"
                    "\"资金不足: 需要 10000.00, 可用 5000.00\"}}");
    free(text);
    json_decref(j);

    j = codec_envelope_error(5000, NULL);
    CHECK_STR(jstr(json_object_get(j, "error"), "message"), "");
    json_decref(j);
}

static void test_http_status_table(void) {
    static const int table[][2] = {
        {0, 200},    {1001, 422},  {1002, 422}, {1003, 422}, {1004, 422}, {1005, 422}, {1006, 404},
        {1007, 404}, {1008, 400},  {2001, 409}, {2002, 422}, {2003, 400}, {2004, 400}, {2005, 422},
        {3001, 404}, {3002, 409},  {3003, 409}, {4001, 503}, {5000, 500}, {5001, 500}, {5002, 500},
        {5003, 500}, {6001, 422},  {6002, 500}, {6003, 500}, {9001, 401}, {9002, 401}, {9003, 400},
        {9004, 429}, {9005, 503},  {9006, 403}, {9007, 404}, {9008, 409}, {9009, 413}, {9010, 405},
        {9999, 500}, {12345, 500}, {-1, 500},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        int got = codec_http_status(table[i][0]);
        if (got != table[i][1])
            fprintf(stderr, "  code %d -> %d, expected %d\n", table[i][0], got, table[i][1]);
        CHECK_INT(got, table[i][1]);
    }
    CHECK_INT(CODEC_ERR_FORBIDDEN, 9006);
    CHECK_INT(codec_http_status(CODEC_ERR_TOO_LARGE), 413);

    /* the engine refuses a delisting while positions are held with 1008: a conflict */
    engine *e = fx_engine(two, 2, 1000000.0);
    CHECK_INT(fx_order(e, "trader", "IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, NULL), 0);
    CHECK_INT(fx_order(e, "market", "IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 1, NULL), 0);
    engine_result r;
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_DELIST, "IX2401", &r), 1008);
    CHECK_CONTAINS(r.message, "trader");
    CHECK_INT(codec_command_http_status(CMD_INSTRUMENT_DELIST, r.code), 409);
    CHECK_INT(codec_command_http_status(CMD_INSTRUMENT_SUSPEND, 1008), 409);
    CHECK_INT(codec_command_http_status(CMD_INSTRUMENT_DELIST, 1007), 404);
    CHECK_INT(codec_command_http_status(CMD_ORDER_INSERT, 1008), 400);
    CHECK_INT(codec_command_http_status(CMD_ORDER_INSERT, 0), 200);
    engine_destroy(e);
}

static void test_ws_messages(void) {
    json_t *j = codec_ws_error(9002, "not authenticated");
    char *text = dump(j);
    CHECK_STR(text, "{\"type\":\"error\",\"code\":9002,\"message\":\"not authenticated\"}");
    free(text);
    json_decref(j);

    j = codec_ws_order_response(0, "O00000000000000000001", NULL);
    CHECK(jbool(j, "success"));
    CHECK_STR(jstr(j, "type"), "order_response");
    CHECK_STR(jstr(j, "order_id"), "O00000000000000000001");
    CHECK(json_is_null(json_object_get(j, "error_code")));
    CHECK(json_is_null(json_object_get(j, "error_message")));
    json_decref(j);

    j = codec_ws_order_response(1001, NULL, "insufficient funds");
    CHECK(json_is_false(json_object_get(j, "success")));
    CHECK(json_is_null(json_object_get(j, "order_id")));
    CHECK_INT(jint(j, "error_code"), 1001);
    CHECK_STR(jstr(j, "error_message"), "insufficient funds");
    json_decref(j);

    scenario s = partial_fill();
    j = codec_ws_order_status(s.e, s.buy);
    CHECK_STR(jstr(j, "type"), "order_status");
    CHECK_STR(jstr(j, "order_id"), s.buy->order_id);
    CHECK_STR(jstr(j, "status"), "PartiallyFilled");
    CHECK_INT(jint(j, "filled_volume"), 4);
    CHECK_INT(jint(j, "remaining_volume"), 6);
    CHECK_INT(jint(j, "timestamp"), s.fill_ms);
    json_decref(j);

    const account *a = engine_account_find(s.e, "trader");
    j = codec_ws_trade(s.e, engine_trade_first(s.e, a));
    CHECK_STR(jstr(j, "type"), "trade");
    CHECK_INT(jint(j, "volume"), 4);
    CHECK_INT(jint(j, "timestamp"), s.fill_ms);
    json_decref(j);

    j = codec_ws_account_update(s.e, a, s.fill_ms);
    CHECK_STR(jstr(j, "type"), "account_update");
    CHECK_INT(jint(j, "timestamp"), s.fill_ms);
    CHECK_MONEY(jreal(j, "margin"), 8000.0);
    CHECK(has(j, "balance") && has(j, "available") && has(j, "frozen") && has(j, "profit") &&
          has(j, "risk_ratio"));
    json_decref(j);
    engine_destroy(s.e);
}

/* ---- decoders ---- */

static int order_from(const char *text, order_request *q, char *msg, size_t msglen) {
    json_error_t err;
    json_t *body = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (body == NULL) fprintf(stderr, "  bad test JSON: %s: %s\n", text, err.text);
    msg[0] = '\0';
    int rc = codec_parse_order(body, q, msg, msglen);
    json_decref(body);
    return rc;
}

/* Expects the order body to be refused with code and exactly message. */
#define ORDER_ERROR(text, code, message)                                                           \
    do {                                                                                           \
        order_request q_;                                                                          \
        char m_[QAEX_MSG_LEN];                                                                     \
        CHECK_INT(order_from(text, &q_, m_, sizeof m_), code);                                     \
        CHECK_STR(m_, message);                                                                    \
    } while (0)

#define BASE "\"user_id\":\"trader\",\"instrument_id\":\"IX2401\",\"direction\":\"BUY\""

static void test_parse_order_lenient(void) {
    order_request q;
    char msg[QAEX_MSG_LEN];
    CHECK_INT(order_from("{\"user_id\":\"trader\",\"instrument_id\":\"IX2401\",\"direction\":"
                         "\"Buy\",\"offset\":\"close_today\",\"volume\":3.0,\"price\":100.5,"
                         "\"order_type\":\"limit\"}",
                         &q, msg, sizeof msg),
              0);
    CHECK_STR(q.account_id, "trader");
    CHECK_STR(q.instrument_id, "IX2401");
    CHECK_INT(q.direction, DIR_BUY);
    CHECK_INT(q.offset, OFFSET_CLOSETODAY);
    CHECK_INT(q.volume, 3);
    CHECK_MONEY(q.limit_price, 100.5);
    CHECK_INT(q.price_type, PRICE_LIMIT);
    CHECK_INT(q.time_condition, TC_GFD);
    CHECK_INT(q.volume_condition, VC_ANY);
    CHECK_STR(q.order_id, "");

    /* defaults: offset OPEN, LIMIT; integer price; account_id wins over user_id */
    CHECK_INT(order_from("{\"user_id\":\"u1\",\"account_id\":\"ACC_1\",\"instrument_id\":"
                         "\"CFFEX.IF2501\",\"direction\":\"sell\",\"volume\":2,\"price\":3800}",
                         &q, msg, sizeof msg),
              0);
    CHECK_STR(q.account_id, "ACC_1");
    CHECK_INT(q.direction, DIR_SELL);
    CHECK_INT(q.offset, OFFSET_OPEN);
    CHECK_INT(q.price_type, PRICE_LIMIT);
    CHECK_MONEY(q.limit_price, 3800.0);

    /* market: no price needed, any price given ignored */
    CHECK_INT(order_from("{" BASE ",\"volume\":1,\"order_type\":\"market\"}", &q, msg, sizeof msg),
              0);
    CHECK_INT(q.price_type, PRICE_ANY);
    CHECK_MONEY(q.limit_price, 0.0);
    CHECK_INT(order_from("{" BASE ",\"volume\":1,\"order_type\":\"Market\",\"price\":null}", &q,
                         msg, sizeof msg),
              0);
    CHECK_INT(q.price_type, PRICE_ANY);

    /* DIFF spellings: price_type, limit_price, conditions, client order id */
    CHECK_INT(order_from("{\"account_id\":\"trader\",\"instrument_id\":\"IX2401\",\"direction\":"
                         "\"BUY\",\"offset\":\"CLOSEYESTERDAY\",\"volume\":\"5\",\"limit_price\":"
                         "99.5,\"price_type\":\"LIMIT\",\"time_condition\":\"ioc\","
                         "\"volume_condition\":\"All\",\"order_id\":\"my-1\"}",
                         &q, msg, sizeof msg),
              0);
    CHECK_INT(q.offset, OFFSET_CLOSEYESTERDAY);
    CHECK_INT(q.volume, 5);
    CHECK_MONEY(q.limit_price, 99.5);
    CHECK_INT(q.time_condition, TC_IOC);
    CHECK_INT(q.volume_condition, VC_ALL);
    CHECK_STR(q.order_id, "my-1");
    CHECK_INT(order_from("{" BASE ",\"volume\":1,\"price\":\"3850.2\",\"time_condition\":\"GTC\","
                         "\"order_id\":\"\"}",
                         &q, msg, sizeof msg),
              0);
    CHECK_MONEY(q.limit_price, 3850.2);
    CHECK_INT(q.time_condition, TC_GTC);
    CHECK_STR(q.order_id, "");
}

static void test_parse_order_errors(void) {
    ORDER_ERROR("[1,2]", 9003, "request body must be a JSON object, got array");
    ORDER_ERROR("\"text\"", 9003, "request body must be a JSON object, got string \"text\"");
    {
        order_request q;
        char m[QAEX_MSG_LEN];
        CHECK_INT(codec_parse_order(NULL, &q, m, sizeof m), 9003);
        CHECK_STR(m, "request body must be a JSON object, got nothing");
    }
    ORDER_ERROR("{\"instrument_id\":\"IX2401\",\"direction\":\"BUY\",\"volume\":1,\"price\":1}",
                1008, "account_id or user_id is required");
    ORDER_ERROR("{\"user_id\":5,\"instrument_id\":\"IX2401\"}", 1008,
                "user_id must be a string, got number 5");
    ORDER_ERROR("{\"account_id\":[\"a\"],\"user_id\":\"u\"}", 1008,
                "account_id must be a string, got array");
    ORDER_ERROR("{\"account_id\":\"a\",\"user_id\":{}}", 1008,
                "user_id must be a string, got object");
    ORDER_ERROR("{\"user_id\":\"" /* 70 bytes */
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
                1008, "user_id is too long: 70 bytes, at most 63");
    ORDER_ERROR("{\"user_id\":\"trader\",\"direction\":\"BUY\"}", 1008,
                "instrument_id is required");
    ORDER_ERROR("{\"user_id\":\"trader\",\"instrument_id\":null}", 1008,
                "instrument_id is required, got null");
    ORDER_ERROR("{\"user_id\":\"trader\",\"instrument_id\":\"\"}", 1008,
                "instrument_id must not be empty");
    ORDER_ERROR("{\"user_id\":\"trader\",\"instrument_id\":\"CFFEX.IF2501CFFEX.IF2501CFFEX.IF25\"}",
                1008, "instrument_id is too long: 34 bytes, at most 31");
    ORDER_ERROR("{\"user_id\":\"trader\",\"instrument_id\":\"IF\\u0000501\"}", 1008,
                "instrument_id must not contain a NUL character");
    ORDER_ERROR("{\"user_id\":\"trader\",\"instrument_id\":\"IX2401\"}", 1008,
                "direction is required");
    ORDER_ERROR("{\"user_id\":\"trader\",\"instrument_id\":\"IX2401\",\"direction\":\"UP\"}", 1008,
                "direction must be one of BUY, SELL; got \"UP\"");
    ORDER_ERROR("{\"user_id\":\"trader\",\"instrument_id\":\"IX2401\",\"direction\":1}", 1008,
                "direction must be a string, got number 1");
    ORDER_ERROR("{\"user_id\":\"trader\",\"instrument_id\":\"IX2401\",\"direction\":\"BUY"
                "YYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY\"}",
                1008,
                "direction must be one of BUY, SELL; got string "
                "\"BUYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY...\"" /* 40 bytes */);
    ORDER_ERROR("{" BASE ",\"offset\":\"SIDEWAYS\"}", 1008,
                "offset must be one of OPEN, CLOSE, CLOSETODAY, CLOSEYESTERDAY; got \"SIDEWAYS\"");
    ORDER_ERROR("{" BASE ",\"offset\":false}", 1008, "offset must be a string, got false");
    ORDER_ERROR("{" BASE ",\"price\":100}", 1008, "volume is required");
    ORDER_ERROR("{" BASE ",\"volume\":\"abc\"}", 1008,
                "volume must be a number, got string \"abc\"");
    ORDER_ERROR("{" BASE ",\"volume\":3.5}", 1008, "volume must be a whole number, got 3.5");
    ORDER_ERROR("{" BASE ",\"volume\":\"2.25\"}", 1008, "volume must be a whole number, got 2.25");
    ORDER_ERROR("{" BASE ",\"volume\":1e300}", 1008, "volume is out of range, got 1e+300");
    ORDER_ERROR("{" BASE ",\"volume\":true}", 1008, "volume must be a number, got true");
    ORDER_ERROR("{" BASE ",\"volume\":[]}", 1008, "volume must be a number, got array");
    ORDER_ERROR("{" BASE ",\"volume\":\"nan\"}", 1008,
                "volume must be a number, got string \"nan\"");
    ORDER_ERROR("{" BASE ",\"volume\":\"inf\"}", 1008,
                "volume must be a number, got string \"inf\"");
    ORDER_ERROR("{" BASE ",\"volume\":\"0x10\"}", 1008,
                "volume must be a number, got string \"0x10\"");
    ORDER_ERROR("{" BASE ",\"volume\":\" 5\"}", 1008, "volume must be a number, got string \" 5\"");
    ORDER_ERROR("{" BASE ",\"volume\":\"1e999\"}", 1008,
                "volume must be a number, got string \"1e999\"");
    ORDER_ERROR("{" BASE ",\"volume\":1}", 1008, "price is required for a LIMIT order");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"price\":null}", 1008,
                "price is required for a LIMIT order");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"price\":\"x\"}", 1008,
                "price must be a number, got string \"x\"");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"limit_price\":{}}", 1008,
                "limit_price must be a number, got object");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"order_type\":\"MARKET\",\"price\":\"cheap\"}", 1008,
                "price must be a number, got string \"cheap\"");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"price\":1,\"order_type\":\"STOP\"}", 1008,
                "order_type must be one of LIMIT, MARKET, ANY; got \"STOP\"");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"price\":1,\"price_type\":7}", 1008,
                "price_type must be a string, got number 7");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"price\":1,\"time_condition\":\"FOK\"}", 1008,
                "time_condition must be one of GFD, IOC, GTC; got \"FOK\"");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"price\":1,\"volume_condition\":\"SOME\"}", 1008,
                "volume_condition must be one of ANY, ALL; got \"SOME\"");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"price\":1,\"order_id\":"
                "\"0123456789012345678901234567890123456789012345678901234567890123\"}",
                1008, "order_id is too long: 64 bytes, at most 63");
    ORDER_ERROR("{" BASE ",\"volume\":1,\"price\":1,\"order_id\":12}", 1008,
                "order_id must be a string, got number 12");
}

/* A decoded order goes through the engine and comes back out encoded. */
static void test_decode_apply_encode(void) {
    engine *e = fx_engine(two, 2, 1000000.0);
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:s, s:f, s:f}", "user_id", "trader", "instrument_id", "IX2401",
                  "direction", "buy", "offset", "open", "volume", 2.0, "price", 100.0);
    command c = fx_command(CMD_ORDER_INSERT);
    char msg[QAEX_MSG_LEN];
    CHECK_INT(codec_parse_order(body, &c.u.order, msg, sizeof msg), 0);
    json_decref(body);
    engine_result r;
    CHECK_INT(fx_apply(e, &c, &r), 0);
    json_t *j = codec_envelope_ok(codec_order(e, engine_order_at(e, r.order)));
    const json_t *data = json_object_get(j, "data");
    CHECK_STR(jstr(data, "status"), "Submitted");
    CHECK_INT(jint(data, "volume_orign"), 2);
    CHECK_INT(jint(data, "insert_date_time"), c.ts_ns / 1000000);
    json_decref(j);

    /* a rule rejection maps to 422 with the engine's message */
    body = json_pack("{s:s, s:s, s:s, s:i, s:f}", "account_id", "trader", "instrument_id", "IX2401",
                     "direction", "SELL", "volume", 1, "price", 100.0);
    json_object_set_new(body, "offset", json_string("CLOSE"));
    c = fx_command(CMD_ORDER_INSERT);
    CHECK_INT(codec_parse_order(body, &c.u.order, msg, sizeof msg), 0);
    json_decref(body);
    CHECK_INT(fx_apply(e, &c, &r), 2005);
    CHECK_INT(codec_command_http_status(c.type, r.code), 422);
    j = codec_envelope_error(r.code, r.message);
    CHECK_INT(jint(json_object_get(j, "error"), "code"), 2005);
    json_decref(j);
    engine_destroy(e);
}

static json_t *load(const char *text) {
    return json_loads(text, JSON_DECODE_ANY, NULL);
}

static void test_parse_cancel(void) {
    command c;
    memset(&c, 0, sizeof c);
    c.ts_ns = 42;
    char msg[QAEX_MSG_LEN] = "";
    json_t *b = load("{\"user_id\":\"u\",\"account_id\":\"ACC_1\",\"order_id\":\"O1\"}");
    CHECK_INT(codec_parse_cancel(b, &c, msg, sizeof msg), 0);
    CHECK_INT(c.type, CMD_ORDER_CANCEL);
    CHECK_INT(c.ts_ns, 42);
    CHECK_STR(c.u.cancel.account_id, "ACC_1");
    CHECK_STR(c.u.cancel.order_id, "O1");
    json_decref(b);

    b = load("{\"user_id\":\"trader\",\"order_id\":\"O2\"}");
    CHECK_INT(codec_parse_cancel(b, &c, msg, sizeof msg), 0);
    CHECK_STR(c.u.cancel.account_id, "trader");
    json_decref(b);

    b = load("{\"user_id\":\"trader\"}");
    CHECK_INT(codec_parse_cancel(b, &c, msg, sizeof msg), 1008);
    CHECK_STR(msg, "order_id is required");
    json_decref(b);

    b = load("{\"order_id\":\"O1\"}");
    CHECK_INT(codec_parse_cancel(b, &c, msg, sizeof msg), 1008);
    CHECK_STR(msg, "account_id or user_id is required");
    json_decref(b);

    b = load("{\"user_id\":\"trader\",\"order_id\":1}");
    CHECK_INT(codec_parse_cancel(b, &c, msg, sizeof msg), 1008);
    CHECK_STR(msg, "order_id must be a string, got number 1");
    json_decref(b);

    b = load("42");
    CHECK_INT(codec_parse_cancel(b, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "request body must be a JSON object, got number 42");
    json_decref(b);
}

static void test_parse_open_account(void) {
    command c;
    char msg[QAEX_MSG_LEN] = "";
    json_t *b = load("{\"user_id\":\"user001\",\"user_name\":\"张三\",\"init_cash\":1000000,"
                     "\"account_type\":\"individual\",\"password\":\"p\"}");
    CHECK_INT(codec_parse_open_account(b, &c, msg, sizeof msg), 0);
    CHECK_INT(c.type, CMD_ACCOUNT_OPEN);
    CHECK_STR(c.u.account_open.user_id, "user001");
    CHECK_STR(c.u.account_open.account_id, ""); /* the caller applies the legacy rule */
    CHECK_STR(c.u.account_open.account_name, "张三");
    CHECK_MONEY(c.u.account_open.init_cash, 1000000.0);
    json_decref(b);

    b = load("{\"account_id\":\"ACC_custom_123\",\"account_name\":\"My Trading Account\","
             "\"init_balance\":2500.5}");
    CHECK_INT(codec_parse_open_account(b, &c, msg, sizeof msg), 0);
    CHECK_STR(c.u.account_open.account_id, "ACC_custom_123");
    CHECK_STR(c.u.account_open.user_id, "");
    CHECK_STR(c.u.account_open.account_name, "My Trading Account");
    CHECK_MONEY(c.u.account_open.init_cash, 2500.5);
    json_decref(b);

    b = load("{}");
    CHECK_INT(codec_parse_open_account(b, &c, msg, sizeof msg), 0);
    CHECK_MONEY(c.u.account_open.init_cash, 0.0);
    json_decref(b);

    b = load("{\"user_id\":\"u\",\"init_cash\":\"lots\"}");
    CHECK_INT(codec_parse_open_account(b, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "init_cash must be a number, got string \"lots\"");
    json_decref(b);

    b = load("{\"user_id\":\"u\",\"init_balance\":false}");
    CHECK_INT(codec_parse_open_account(b, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "init_balance must be a number, got false");
    json_decref(b);

    b = load("{\"user_id\":\"u\",\"user_name\":"
             "\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\"}");
    CHECK_INT(codec_parse_open_account(b, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "user_name is too long: 68 bytes, at most 63");
    json_decref(b);

    b = load("{\"user_id\":true}");
    CHECK_INT(codec_parse_open_account(b, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "user_id must be a string, got true");
    json_decref(b);

    b = load("null");
    CHECK_INT(codec_parse_open_account(b, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "request body must be a JSON object, got null");
    json_decref(b);
}

static void test_parse_transfer(void) {
    command c;
    char msg[QAEX_MSG_LEN] = "";
    json_t *b = load("{\"user_id\":\"user001\",\"amount\":500}");
    CHECK_INT(codec_parse_transfer(b, CMD_DEPOSIT, &c, msg, sizeof msg), 0);
    CHECK_INT(c.type, CMD_DEPOSIT);
    CHECK_STR(c.u.transfer.account_id, "user001");
    CHECK_MONEY(c.u.transfer.amount, 500.0);
    json_decref(b);

    b = load("{\"account_id\":\"ACC_1\",\"amount\":\"12.5\"}");
    CHECK_INT(codec_parse_transfer(b, CMD_WITHDRAW, &c, msg, sizeof msg), 0);
    CHECK_INT(c.type, CMD_WITHDRAW);
    CHECK_STR(c.u.transfer.account_id, "ACC_1");
    CHECK_MONEY(c.u.transfer.amount, 12.5);
    json_decref(b);

    b = load("{\"account_id\":\"ACC_1\"}");
    CHECK_INT(codec_parse_transfer(b, CMD_DEPOSIT, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "amount is required");
    json_decref(b);

    b = load("{\"account_id\":\"ACC_1\",\"amount\":\"ten\"}");
    CHECK_INT(codec_parse_transfer(b, CMD_DEPOSIT, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "amount must be a number, got string \"ten\"");
    json_decref(b);

    b = load("{\"amount\":1}");
    CHECK_INT(codec_parse_transfer(b, CMD_DEPOSIT, &c, msg, sizeof msg), 9003);
    CHECK_STR(msg, "account_id or user_id is required");
    json_decref(b);

    /* a negative amount decodes; the engine refuses it with 2003 and the HTTP status is 400 */
    engine *e = fx_engine(two, 2, 1000.0);
    b = load("{\"account_id\":\"trader\",\"amount\":-5}");
    c = fx_command(CMD_DEPOSIT);
    CHECK_INT(codec_parse_transfer(b, CMD_DEPOSIT, &c, msg, sizeof msg), 0);
    json_decref(b);
    engine_result r;
    CHECK_INT(fx_apply(e, &c, &r), 2003);
    CHECK_INT(codec_http_status(r.code), 400);
    engine_destroy(e);
}

static void test_field_helpers(void) {
    json_t *o = load("{\"s\":\"abc\",\"n\":2.5,\"i\":7,\"t\":true,\"z\":null,\"e\":\"\"}");
    char buf[8], msg[QAEX_MSG_LEN];
    double d = -1;
    int64_t w = -1;
    bool flag = false;
    CHECK_INT(codec_get_string(o, "s", buf, sizeof buf, true, msg, sizeof msg), CODEC_FIELD_OK);
    CHECK_STR(buf, "abc");
    CHECK_INT(codec_get_string(o, "missing", buf, sizeof buf, false, msg, sizeof msg),
              CODEC_FIELD_ABSENT);
    CHECK_STR(buf, "");
    CHECK_INT(codec_get_string(o, "e", buf, sizeof buf, false, msg, sizeof msg),
              CODEC_FIELD_ABSENT);
    CHECK_INT(codec_get_string(o, "s", buf, 3, true, msg, sizeof msg), CODEC_FIELD_ERROR);
    CHECK_STR(msg, "s is too long: 3 bytes, at most 2");
    CHECK_INT(codec_get_number(o, "z", &d, false, msg, sizeof msg), CODEC_FIELD_ABSENT);
    CHECK_MONEY(d, -1.0); /* untouched */
    CHECK_INT(codec_get_number(o, "n", &d, true, msg, sizeof msg), CODEC_FIELD_OK);
    CHECK_MONEY(d, 2.5);
    CHECK_INT(codec_get_whole(o, "i", &w, true, msg, sizeof msg), CODEC_FIELD_OK);
    CHECK_INT(w, 7);
    CHECK_INT(codec_get_whole(o, "n", &w, true, msg, sizeof msg), CODEC_FIELD_ERROR);
    CHECK_STR(msg, "n must be a whole number, got 2.5");
    CHECK_INT(codec_get_bool(o, "t", &flag, true, msg, sizeof msg), CODEC_FIELD_OK);
    CHECK(flag);
    CHECK_INT(codec_get_bool(o, "i", &flag, true, msg, sizeof msg), CODEC_FIELD_ERROR);
    CHECK_STR(msg, "i must be true or false, got number 7");
    int v = -1;
    CHECK_INT(codec_get_enum(o, "s", codec_parse_direction, "BUY, SELL", &v, true, msg, sizeof msg),
              CODEC_FIELD_ERROR);
    CHECK_STR(msg, "s must be one of BUY, SELL; got \"abc\"");
    /* a small msg buffer truncates, never overflows */
    char tiny[8];
    CHECK_INT(codec_get_number(o, "s", &d, true, tiny, sizeof tiny), CODEC_FIELD_ERROR);
    CHECK_STR(tiny, "s must ");
    json_decref(o);

    /* every spelling SPEC 5 promises */
    CHECK_INT(codec_parse_offset("CLOSE_TODAY", &v), 0);
    CHECK_INT(v, OFFSET_CLOSETODAY);
    CHECK_INT(codec_parse_offset("closetoday", &v), 0);
    CHECK_INT(codec_parse_price_type("Limit", &v), 0);
    CHECK_INT(v, PRICE_LIMIT);
    CHECK_INT(codec_parse_price_type("market", &v), 0);
    CHECK_INT(v, PRICE_ANY);
    CHECK_INT(codec_parse_direction("Sell", &v), 0);
    CHECK_INT(v, DIR_SELL);
    CHECK_INT(codec_parse_direction("", &v), -1);
}

/* ---- JSON text written directly (json_builder.h: jb_text) ---- */

/* What the server sends for a jansson value: the flags of service.c and gateway.c. */
static char *dump15(const json_t *v) {
    return json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY);
}

/* The text t holds (taken) equals the jansson dump of want (released). */
static int text_differs(json_text *t, json_t *want, const char *what) {
    char *expected = want ? dump15(want) : NULL;
    json_decref(want);
    size_t len = 0;
    char *got = jt_take(t, &len);
    int bad = expected == NULL || got == NULL || strcmp(expected, got) != 0 || len != strlen(got);
    if (bad)
        fprintf(stderr, "  %s:\n    jansson %s\n    text    %s\n", what,
                expected ? expected : "(null)", got ? got : "(null)");
    free(expected);
    free(got);
    return bad;
}

static int real_differs(double v) {
    json_text t;
    jt_init(&t);
    jt_real(&t, v);
    char what[64];
    snprintf(what, sizeof what, "real %.17g", v);
    return text_differs(&t, jb_real_value(v), what);
}

static uint64_t xorshift_state = 0x9E3779B97F4A7C15ULL;
static uint64_t xorshift(void) {
    xorshift_state ^= xorshift_state << 13;
    xorshift_state ^= xorshift_state >> 7;
    xorshift_state ^= xorshift_state << 17;
    return xorshift_state;
}

static void test_text_reals_match_jansson(void) {
    static const double fixed[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   0.1,
                                   0.1 + 0.2,
                                   3800.2,
                                   3799.8000000000002,
                                   1e12,
                                   999999999999999.0,
                                   1e15,
                                   -1e15,
                                   1e15 + 2,
                                   123456789012345.6,
                                   12345678901234.56,
                                   1e16,
                                   1.5e300,
                                   1e-4,
                                   0.00012345,
                                   0.000123456789,
                                   9.99999999999999e-5,
                                   1e-5,
                                   -2.5e-7,
                                   5e-324,
                                   1.7976931348623157e308,
                                   0.30000000000000004,
                                   2.0 / 3.0,
                                   100.0 / 7.0,
                                   1234567.891,
                                   4.35,
                                   0.5,
                                   9007199254740993.0,
                                   1e9 + 0.5,
                                   100000000000000.5,
                                   100000000000001.5,
                                   123456789012345.5,
                                   999999999999999.5,
                                   99999999999999.95,
                                   9.999999999999995,
                                   0.00099999999999999995,
                                   0.123456789,
                                   0.1234567891,
                                   HUGE_VAL,
                                   -HUGE_VAL,
                                   NAN};
    int bad = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        bad += real_differs(fixed[i]);
    /* decimals with 0..12 places over many magnitudes, their sums and products (money from
     * prices, volumes and rates), and arbitrary bit patterns */
    for (int i = 0; i < 200000 && bad < 10; i++) {
        uint64_t r = xorshift();
        double v;
        switch (i % 6) {
            case 5: /* exact ties at the 16th digit: printf rounds them to even */
                v = (double)(100000000000000ULL + r % 900000000000000ULL) + 0.5;
                break;
            case 0:
                v = (double)(int64_t)(r % 2000000000000000ULL) / pow(10, (double)((r >> 59) % 13));
                break;
            case 1:
                v = (double)(r % 100000) / 10.0 * (double)(1 + (r >> 40) % 300) * 0.0001 * 200;
                break;
            case 2:
                v = (double)(r % 1000000) / 100.0 + (double)((r >> 20) % 1000000) / 1000.0;
                break;
            case 3: {
                memcpy(&v, &r, sizeof v);
                break;
            }
            default:
                v = (double)(r % 100000000) * pow(10, (double)((int)((r >> 56) % 40) - 20));
                break;
        }
        if (r & 1) v = -v;
        bad += real_differs(v);
    }
    CHECK_INT(bad, 0);
}

static void test_text_strings_and_ints_match_jansson(void) {
    static const char *const strings[] = {
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "\b\f\n\r\t\x01\x1f\x7f end",
        "资金不足: 余额 100",
        "emoji \xF0\x9F\x98\x80",
        "bad \xC3\x28 byte",
        "lone \x80 continuation",
        "overlong \xC0\xAF",
        "surrogate \xED\xA0\x80",
        "cut at the end \xE8\xB5",
        "\xFF\xFE",
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        json_text t;
        jt_init(&t);
        jt_string(&t, strings[i]);
        bad += text_differs(&t, jb_string(strings[i]), strings[i]);
    }
    static const int64_t ints[] = {0, 1, -1, 9, 10, -10, 1735783200000, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        json_text t;
        jt_init(&t);
        jt_int(&t, ints[i]);
        bad += text_differs(&t, json_integer((json_int_t)ints[i]), "integer");
    }
    /* a builder: every kind of member, a nested value through jb_put, a long object that
     * outgrows the first buffer */
    json_text t;
    jt_init(&t);
    json_builder tb = jb_text(&t), jb = jb_new();
    json_builder *both[] = {&tb, &jb};
    for (int k = 0; k < 2; k++) {
        json_builder *b = both[k];
        jb_str(b, "s", "x\"y");
        jb_null(b, "n");
        jb_date(b, "d0", "");
        jb_date(b, "d1", "2025-01-02");
        jb_bool(b, "t", true);
        jb_bool(b, "f", false);
        jb_int(b, "i", -42);
        jb_real(b, "r", 3800.2);
        jb_real(b, "inf", INFINITY);
        jb_put(b, "nested", json_pack("{s:[i,f,s]}", "a", 1, 2.5, "z"));
        for (int i = 0; i < 100; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", i);
            jb_real(b, key, i / 3.0);
        }
    }
    CHECK(jb_end(&tb));
    bad += text_differs(&t, jb_done(&jb), "builder");
    CHECK_INT(bad, 0);

    /* a failed text gives nothing back and holds nothing (ASan checks the leak) */
    jt_init(&t);
    jt_raw(&t, "{", 1);
    t.failed = true;
    jt_raw(&t, "}", 1);
    size_t len = 99;
    CHECK(jt_take(&t, &len) == NULL);
    CHECK_INT(len, 0);
    CHECK(t.buf == NULL);
}

/* Every order, trade and account of a trading session: the text encoders give the bytes the
 * jansson encoders give after json_dumps. */
static void test_text_encoders_match_jansson(void) {
    static const char *const accounts[] = {"a0", "a1", "a2", "a3", "用户4", "a\"5"};
    engine *e = fx_engine(accounts, 6, 1234567.89);
    engine_result r;
    /* resting orders at odd prices, crossing orders, IOC remainders cancelled, closes */
    for (int i = 0; i < 120; i++) {
        const char *acc = accounts[i % 6];
        direction d = i % 2 ? DIR_SELL : DIR_BUY;
        double price = 100.0 + (double)(i % 7) * 0.5 * (d == DIR_BUY ? -1 : 1) +
                       (i % 3 == 0 ? (d == DIR_BUY ? 1.5 : -1.5) : 0);
        time_condition tc = i % 5 == 0 ? TC_IOC : TC_GFD;
        offset o = i > 60 && i % 4 == 1 ? OFFSET_CLOSE : OFFSET_OPEN;
        fx_order_full(e, acc, "IX2401", d, o, price, 1 + i % 4, PRICE_LIMIT, tc, VC_ANY, NULL, &r);
        if (i % 11 == 0 && r.order != SLOT_NONE) {
            const order *placed = engine_order_at(e, r.order);
            fx_cancel(e, acc, placed->order_id, NULL);
        }
    }
    /* a refused order leaves its message in last_msg */
    fx_order(e, "a0", "IX2401", DIR_BUY, OFFSET_OPEN, 100.05, 1, &r);
    int bad = 0, orders = 0, trades = 0;
    for (uint32_t i = 0; i < engine_account_count(e); i++) {
        const account *a = engine_account_at(e, i);
        json_text t;
        jt_init(&t);
        codec_ws_account_update_text(&t, e, a, 1735783200123LL);
        bad += text_differs(&t, codec_ws_account_update(e, a, 1735783200123LL), "account_update");
        for (const order *o = engine_order_first(e, a); o; o = engine_order_next(e, o)) {
            orders++;
            jt_init(&t);
            codec_envelope_ok_open(&t);
            codec_order_text(&t, e, o);
            CHECK(codec_envelope_ok_close(&t));
            bad += text_differs(&t, codec_envelope_ok(codec_order(e, o)), "order");
            jt_init(&t);
            CHECK(codec_ws_order_status_text(&t, e, o));
            bad += text_differs(&t, codec_ws_order_status(e, o), "order_status");
        }
        for (const trade *td = engine_trade_first(e, a); td; td = engine_trade_next(e, td)) {
            trades++;
            jt_init(&t);
            CHECK(codec_ws_trade_text(&t, e, td));
            bad += text_differs(&t, codec_ws_trade(e, td), "trade");
        }
    }
    CHECK(orders > 100);
    CHECK(trades > 20);
    /* order_response, accepted and refused */
    for (int code = 0; code <= 1001; code += 1001) {
        json_text t;
        jt_init(&t);
        json_builder b = jb_text(&t);
        codec_put_ws_order_response(&b, code, "O123", code ? "资金不足" : "Order submitted");
        CHECK(jb_end(&b));
        bad += text_differs(
            &t, codec_ws_order_response(code, "O123", code ? "资金不足" : "Order submitted"),
            "order_response");
    }
    CHECK_INT(bad, 0);
    engine_destroy(e);
}

/* codec_load and json_loadb agree on text (both fail, or give values with the same dump, which
 * tells integers from reals and keeps member order). */
static int load_differs(const char *text, size_t len) {
    json_error_t e1, e2;
    json_t *a = codec_load(text, len, &e1), *b = json_loadb(text, len, 0, &e2);
    char *da = a ? json_dumps(a, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) : NULL;
    char *db = b ? json_dumps(b, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) : NULL;
    int bad = (a == NULL) != (b == NULL) || (a && (!da || !db || strcmp(da, db) != 0)) ||
              (!a && strcmp(e1.text, e2.text) != 0);
    if (bad)
        fprintf(stderr, "  load %.*s:\n    codec_load %s\n    jansson    %s\n", (int)len, text,
                da ? da : e1.text, db ? db : e2.text);
    free(da);
    free(db);
    json_decref(a);
    json_decref(b);
    return bad;
}

static void test_load_matches_jansson(void) {
    static const char *const texts[] = {
        "{\"user_id\":\"B12\",\"instrument_id\":\"IF2501\",\"direction\":\"BUY\",\"offset\":"
        "\"OPEN\",\"volume\":1,\"price\":3800.2,\"order_type\":\"LIMIT\",\"time_condition\":"
        "\"IOC\"}",
        "{\"type\":\"submit_order\",\"request_id\":\"r1\",\"volume\":1,\"price\":3799.8}",
        "  {  \"a\" : 1 ,\n\t\"b\":\r\n-2.50 }  \n",
        "{}",
        "{ }",
        "{\"a\":true,\"b\":false,\"c\":null}",
        "{\"a\":1,\"a\":2}",
        "{\"a\":0,\"b\":-0,\"c\":-0.0,\"d\":0.5,\"e\":123456789012345678}",
        "{\"a\":1234567890123456789}",
        "{\"a\":12345678901234567890123}",
        "{\"a\":1e5}",
        "{\"a\":1E-5}",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1.5.5}",
        "{\"a\":0.1000000000000000055511151231257827}",
        "{\"a\":1"
        "00000000000000000000000000000000000000000000000000000000000000000000000.5}",
        "{\"a\":\"x\\\"y\"}",
        "{\"a\":\"\\u00e9\"}",
        "{\"a\":\"\xc3\xa9\"}",
        "{\"a\":\"\xc3\"}",
        "{\"a\":\"\x7f\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":{\"b\":1}}",
        "{\"a\":[1,2]}",
        "[1,2]",
        "\"str\"",
        "3",
        "{\"a\":1,}",
        "{,}",
        "{\"a\" 1}",
        "{\"a\":1",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":nul",
        "{\"\":1}",
        "{a:1}",
        "",
        "   ",
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        bad += load_differs(texts[i], strlen(texts[i]));
    /* every prefix of an order, and single-byte changes of it at every position */
    const char *body = texts[0];
    size_t n = strlen(body);
    static const char swaps[] = "\"{}[],:. -+0123456789eEtfn\\\x01\x7f\xc3";
    char buf[512];
    for (size_t cut = 0; cut <= n; cut++)
        bad += load_differs(body, cut);
    for (size_t pos = 0; pos < n && bad < 10; pos++) {
        for (size_t k = 0; k < sizeof swaps - 1; k++) {
            memcpy(buf, body, n);
            buf[pos] = swaps[k];
            bad += load_differs(buf, n);
        }
    }
    CHECK_INT(bad, 0);
}

int main(void) {
    RUN_TEST(test_order_encoding);
    RUN_TEST(test_trade_encoding);
    RUN_TEST(test_account_and_position_encoding);
    RUN_TEST(test_instrument_encoding);
    RUN_TEST(test_qifi);
    RUN_TEST(test_settlement_encoding);
    RUN_TEST(test_invalid_utf8_is_repaired);
    RUN_TEST(test_malformed_bytes_are_replaced);
    RUN_TEST(test_allocation_failures);
    RUN_TEST(test_envelopes);
    RUN_TEST(test_http_status_table);
    RUN_TEST(test_ws_messages);
    RUN_TEST(test_parse_order_lenient);
    RUN_TEST(test_parse_order_errors);
    RUN_TEST(test_decode_apply_encode);
    RUN_TEST(test_parse_cancel);
    RUN_TEST(test_parse_open_account);
    RUN_TEST(test_parse_transfer);
    RUN_TEST(test_field_helpers);
    RUN_TEST(test_text_reals_match_jansson);
    RUN_TEST(test_text_strings_and_ints_match_jansson);
    RUN_TEST(test_text_encoders_match_jansson);
    RUN_TEST(test_load_matches_jansson);
    return CHECK_REPORT();
}
