/* The DIFF business tree (shinnytech/diff; SPEC 6) as the engine thread encodes it:
 *
 *   trade.<user>.{user_id, trading_day, session, trade_more_data, accounts.CNY, positions.<EX.INS>,
 *                 orders.<order_id>, trades.<trade_id>}
 *   quotes.<EX.INS>
 *   klines.<EX.INS>.<duration ns>.{last_id, trading_day_start_id, trading_day_end_id, data.<id>}
 *
 * Every function returns a new jansson reference (NULL when out of memory) that is a merge patch
 * a session folds into what it owes its client. DIFF clients read null as "delete", so absent
 * prices are sent as the string "NaN" (what DIFF quotes use), never as null. Instruments are
 * named the DIFF way: instrument_id without the exchange, exchange_id beside it; times are epoch
 * nanoseconds. */
#ifndef QAEX_PROTO_DIFF_CODEC_H
#define QAEX_PROTO_DIFF_CODEC_H

#include "engine/engine.h"

#include <jansson.h>

/* The whole trade subtree of an account, as the first rtn_data after a login carries it:
 * user_id, trading_day (YYYYMMDD), session {user_id, trading_day}, trade_more_data false,
 * accounts {CNY}, positions, orders (live and retained), trades (retained). */
json_t *diff_trade_tree(const engine *e, const account *acc, const char *user_key);

/* What a new trading day changes in that subtree: trading_day (also under session), and the
 * orders and trades still in memory once the settlement dropped the day's finished ones. */
json_t *diff_day_tree(const engine *e, const account *acc);

/* accounts.CNY: the QIFI account fields (codec_account). */
json_t *diff_account(const engine *e, const account *acc);
/* orders.<order_id>: order_id, exchange_order_id, exchange_id, instrument_id, direction, offset,
 * volume_orign, volume_left, price_type, limit_price, volume_condition, time_condition,
 * insert_date_time (ns), status ALIVE|FINISHED, last_msg, user_id, seqno, frozen_margin. */
json_t *diff_order(const engine *e, const order *ord);
/* trades.<trade_id>: trade_id, order_id, exchange_trade_id, exchange_order_id, exchange_id,
 * instrument_id, direction, offset, volume, price, trade_date_time (ns), commission,
 * close_profit, user_id, seqno. */
json_t *diff_trade(const engine *e, const trade *trd);
/* positions.<EX.INS>: the QA_Position fields (codec_position) named the DIFF way. */
json_t *diff_position(const engine *e, const position *pos);
/* The keys of those objects under their parents. */
void diff_trade_key(const trade *trd, char *out, size_t cap);

/* quotes.<EX.INS>: every field of quote.rst: instrument_id, datetime ("YYYY-MM-DD
 * HH:MM:SS.ffffff", China time), ask/bid_price1..5 and volumes, last_price, highest, lowest,
 * open, close, average, volume, amount, open_interest, settlement, upper_limit, lower_limit,
 * pre_open_interest, pre_settlement, pre_close, price_tick, volume_multiple, margin, commission,
 * status. */
json_t *diff_quote(const engine *e, const instrument *ins, int64_t ts_ns);

/* A bar's DIFF id: its start in ns divided by the period in ns. */
int64_t diff_kline_id(kline_period p, const kline *k);
/* {last_id, trading_day_start_id, trading_day_end_id, data: {id: bar}} with the last `count`
 * bars of the period (finished and in progress). *left_id and *right_id receive the first and
 * last ids sent (-1 when there are none). */
json_t *diff_klines(const instrument *ins, kline_period p, int64_t count, int64_t *left_id,
                    int64_t *right_id);
/* The same for the bar in progress only: what changes on a trade. NULL-free: an empty object
 * when no bar is open. */
json_t *diff_kline_current(const instrument *ins, kline_period p);

#endif
