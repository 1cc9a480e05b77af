/* JSON of market data: quotes (the seed's 35-field MarketSnapshot), depth, K-lines, the public
 * trade tape, order statistics and the instrument list in the shape DIFF clients download.
 * Conventions of codec.h apply: a new reference or NULL when out of memory, times in epoch
 * milliseconds, read on the engine thread. */
#ifndef QAEX_PROTO_MARKET_CODEC_H
#define QAEX_PROTO_MARKET_CODEC_H

#include "engine/engine.h"

#include <jansson.h>

/* The seed's MarketSnapshot: instrument_id, timestamp, trading_day (YYYYMMDD), last_price,
 * change_percent, change_amount (against pre_close), pre_close, bid_price1..5, bid_volume1..5,
 * ask_price1..5, ask_volume1..5, open, high, low, volume, turnover, open_interest, upper_limit,
 * lower_limit; and besides: bid_price/bid_volume/ask_price/ask_volume (level 1), amount
 * (= turnover, price * volume * multiplier), average (turnover / (volume * multiplier)),
 * pre_settlement, settlement (when set), pre_open_interest, status. Prices of empty levels and
 * the day's open/high/low before the first trade are null. */
json_t *codec_market_snapshot(const engine *e, const instrument *ins, int64_t ts_ns);

/* {instrument_id, bids:[{price, volume, order_count}] best first, asks:[...], timestamp};
 * depth 1..50. */
json_t *codec_orderbook(const instrument *ins, int depth, int64_t ts_ns);

/* One bar: instrument_id, period ("1min"), timestamp (start, ms), open, high, low, close,
 * volume, amount, open_oi, close_oi, trades, is_finished. */
json_t *codec_kline(const instrument *ins, kline_period p, const kline *k, bool finished);

/* The bars of a period, oldest first: the kept history then the bar in progress, those starting
 * in [start_ms, end_ms) (0 = unbounded), at most the last `count` of them. */
json_t *codec_klines(const instrument *ins, kline_period p, int64_t count, int64_t start_ms,
                     int64_t end_ms);

/* The last matches of an instrument, newest first: price, volume, direction (the taker's side),
 * timestamp. */
json_t *codec_recent_trades(const instrument *ins, int64_t limit);

/* The newest matches of all instruments (or of one), newest first, with buyer and seller account
 * ids: instrument_id, price, volume, buyer, seller, direction, timestamp. */
json_t *codec_transactions(const engine *e, const instrument *only, int64_t limit);

/* Orders the engine still holds, counted: total_orders, buy_orders, sell_orders, live_orders,
 * filled_orders, cancelled_orders, and per instrument. */
json_t *codec_order_stats(const engine *e);

/* Decimal places of a price tick (0.2 -> 1, 0.05 -> 2, 1 -> 0). */
int codec_price_decimals(double tick);

/* The instrument list as shinnytech's symbols document: {"EXCH.code": {class, instrument_id,
 * exchange_id, ins_id, ins_name, price_tick, price_decs, volume_multiple, expired,
 * expire_datetime, product_id, ...}}. */
json_t *codec_symbols(const engine *e);

#endif
