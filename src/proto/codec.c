/* JSON codecs of the REST API, the `type` protocol and QIFI. See codec.h for the contracts. */
#include "proto/codec.h"
#include "proto/json_builder.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ==========================================================================================
 * Building objects: one failure flag per object, so the encoders read as field lists
 * ========================================================================================== */

static int64_t ms_of(int64_t ns) {
    int64_t ms = ns / 1000000;
    return (ns % 1000000 < 0) ? ms - 1 : ms; /* floor, for times before 1970 */
}

static const char *account_id_of(const engine *e, uint32_t slot) {
    const account *a = engine_account_of(e, slot);
    return a ? a->account_id : "";
}

/* ==========================================================================================
 * Encoders
 * ========================================================================================== */

static void put_account_fields(json_builder *b, const engine *e, const account *acc) {
    account_view v;
    engine_account_view(e, acc, &v);
    jb_str(b, "user_id", acc->account_id);
    jb_str(b, "account_id", acc->account_id);
    jb_str(b, "portfolio_cookie", acc->user_id);
    jb_str(b, "account_name", acc->account_name);
    jb_str(b, "user_name", acc->account_name);
    jb_str(b, "currency", "CNY");
    jb_real(b, "pre_balance", acc->pre_balance);
    jb_real(b, "deposit", acc->deposit);
    jb_real(b, "withdraw", acc->withdraw);
    jb_real(b, "WithdrawQuota", v.withdraw_quota);
    jb_real(b, "static_balance", v.static_balance);
    jb_real(b, "close_profit", acc->close_profit);
    jb_real(b, "commission", acc->commission);
    jb_real(b, "premium", acc->premium);
    jb_real(b, "position_profit", v.position_profit);
    jb_real(b, "float_profit", v.float_profit);
    jb_real(b, "balance", v.balance);
    jb_real(b, "margin", v.margin);
    jb_real(b, "frozen_margin", acc->frozen_margin);
    jb_real(b, "frozen_commission", acc->frozen_commission);
    jb_real(b, "frozen_premium", acc->frozen_premium);
    jb_real(b, "available", v.available);
    jb_real(b, "risk_ratio", v.risk_ratio);
    jb_str(b, "risk_level", risk_level_name(risk_level_of(v.risk_ratio)));
    jb_bool(b, "is_frozen", acc->frozen);
    jb_real(b, "frozen", acc->frozen_margin + acc->frozen_commission + acc->frozen_premium);
    jb_real(b, "profit", v.balance - v.static_balance);
    jb_int(b, "created_at", ms_of(acc->created_ns));
}

json_t *codec_account(const engine *e, const account *acc) {
    json_builder b = jb_new();
    put_account_fields(&b, e, acc);
    return jb_done(&b);
}

json_t *codec_position(const engine *e, const position *pos) {
    const instrument *ins = engine_instrument_of(e, pos->instrument);
    const char *acc_id = account_id_of(e, pos->account);
    position_view v;
    engine_position_view(e, pos, &v);
    json_builder b = jb_new();
    jb_str(&b, "user_id", acc_id);
    jb_str(&b, "account_id", acc_id);
    jb_str(&b, "exchange_id", ins ? ins->spec.exchange : "");
    jb_str(&b, "instrument_id", ins ? ins->spec.instrument_id : "");

    jb_int(&b, "volume_long_today", pos->volume_long_today);
    jb_int(&b, "volume_long_his", pos->volume_long_his);
    jb_int(&b, "volume_long", v.volume_long);
    jb_int(&b, "volume_long_frozen_today", pos->volume_long_frozen_today);
    jb_int(&b, "volume_long_frozen_his", pos->volume_long_frozen_his);
    jb_int(&b, "volume_long_frozen", pos->volume_long_frozen_today + pos->volume_long_frozen_his);
    jb_int(&b, "volume_long_yd", pos->volume_long_his);
    jb_int(&b, "volume_short_today", pos->volume_short_today);
    jb_int(&b, "volume_short_his", pos->volume_short_his);
    jb_int(&b, "volume_short", v.volume_short);
    jb_int(&b, "volume_short_frozen_today", pos->volume_short_frozen_today);
    jb_int(&b, "volume_short_frozen_his", pos->volume_short_frozen_his);
    jb_int(&b, "volume_short_frozen",
           pos->volume_short_frozen_today + pos->volume_short_frozen_his);
    jb_int(&b, "volume_short_yd", pos->volume_short_his);
    jb_int(&b, "pos_long_his", pos->volume_long_his);
    jb_int(&b, "pos_long_today", pos->volume_long_today);
    jb_int(&b, "pos_short_his", pos->volume_short_his);
    jb_int(&b, "pos_short_today", pos->volume_short_today);

    jb_real(&b, "open_price_long", v.open_price_long);
    jb_real(&b, "open_price_short", v.open_price_short);
    jb_real(&b, "open_cost_long", pos->open_cost_long);
    jb_real(&b, "open_cost_short", pos->open_cost_short);
    jb_real(&b, "position_price_long", v.position_price_long);
    jb_real(&b, "position_price_short", v.position_price_short);
    jb_real(&b, "position_cost_long", pos->position_cost_long);
    jb_real(&b, "position_cost_short", pos->position_cost_short);
    jb_real(&b, "last_price", v.last_price);
    jb_real(&b, "float_profit_long", v.float_profit_long);
    jb_real(&b, "float_profit_short", v.float_profit_short);
    jb_real(&b, "float_profit", v.float_profit);
    jb_real(&b, "position_profit_long", v.position_profit_long);
    jb_real(&b, "position_profit_short", v.position_profit_short);
    jb_real(&b, "position_profit", v.position_profit);
    jb_real(&b, "margin_long", pos->margin_long);
    jb_real(&b, "margin_short", pos->margin_short);
    jb_real(&b, "margin", v.margin);
    jb_real(&b, "frozen_margin", pos->frozen_margin);

    jb_real(&b, "cost_long", v.open_price_long);
    jb_real(&b, "cost_short", v.open_price_short);
    jb_real(&b, "profit_long", v.float_profit_long);
    jb_real(&b, "profit_short", v.float_profit_short);
    return jb_done(&b);
}

/* The account, instrument and side an order or a trade belongs to, as both carry them. */
static void put_who_and_what(json_builder *b, const char *acc_id, const instrument *ins,
                             direction d, offset o) {
    jb_str(b, "account_id", acc_id);
    jb_str(b, "user_id", acc_id);
    jb_str(b, "instrument_id", ins ? ins->spec.instrument_id : "");
    jb_str(b, "exchange_id", ins ? ins->spec.exchange : "");
    jb_str(b, "direction", direction_name(d));
    jb_str(b, "offset", offset_name(o));
}

static void put_order_fields(json_builder *b, const engine *e, const order *ord) {
    const instrument *ins = engine_instrument_of(e, ord->instrument);
    const char *acc_id = account_id_of(e, ord->account);
    char exchange_order_id[QAEX_ID_LEN];
    engine_order_exchange_id(e, ord, exchange_order_id, sizeof exchange_order_id);
    jb_str(b, "order_id", ord->order_id);
    jb_str(b, "exchange_order_id", exchange_order_id);
    jb_int(b, "seqno", (int64_t)ord->seq);
    put_who_and_what(b, acc_id, ins, ord->direction, ord->offset);
    jb_str(b, "price_type", price_type_name(ord->price_type));
    jb_str(b, "order_type", ord->price_type == PRICE_ANY ? "MARKET" : "LIMIT");
    jb_real(b, "limit_price", ord->limit_price);
    jb_real(b, "price", ord->limit_price);
    jb_int(b, "volume_orign", ord->volume_orign);
    jb_int(b, "volume", ord->volume_orign);
    jb_int(b, "volume_left", ord->volume_left);
    jb_int(b, "filled_volume", ord->volume_orign - ord->volume_left);
    jb_str(b, "time_condition", time_condition_name(ord->time_condition));
    jb_str(b, "volume_condition", volume_condition_name(ord->volume_condition));
    jb_str(b, "status", order_status_name(ord->status));
    jb_real(b, "frozen_margin", ord->frozen_margin);
    jb_real(b, "frozen_commission", ord->frozen_commission);
    jb_str(b, "last_msg", ord->last_msg);
    jb_int(b, "insert_date_time", ms_of(ord->insert_ns));
    jb_int(b, "submit_time", ms_of(ord->insert_ns));
    jb_int(b, "update_time", ms_of(ord->update_ns));
    jb_int(b, "towards", towards_of(ord->direction, ord->offset));
}

json_t *codec_order(const engine *e, const order *ord) {
    json_builder b = jb_new();
    put_order_fields(&b, e, ord);
    return jb_done(&b);
}

bool codec_order_text(json_text *t, const engine *e, const order *ord) {
    json_builder b = jb_text(t);
    put_order_fields(&b, e, ord);
    return jb_end(&b);
}

static void put_trade_fields(json_builder *b, const engine *e, const trade *trd) {
    const instrument *ins = engine_instrument_of(e, trd->instrument);
    const char *acc_id = account_id_of(e, trd->account);
    char trade_id[32], match_id[32], exchange_order_id[QAEX_ID_LEN];
    order_format_seq('T', trd->seq, trade_id, sizeof trade_id);
    order_format_seq('M', trd->match_seq, match_id, sizeof match_id);
    if (ins != NULL)
        engine_trade_exchange_order_id(e, trd, exchange_order_id, sizeof exchange_order_id);
    else
        exchange_order_id[0] = '\0';
    jb_str(b, "trade_id", trade_id);
    jb_str(b, "order_id", trd->order_id);
    jb_str(b, "exchange_order_id", exchange_order_id);
    jb_str(b, "exchange_trade_id", match_id);
    put_who_and_what(b, acc_id, ins, trd->direction, trd->offset);
    jb_real(b, "price", trd->price);
    jb_int(b, "volume", trd->volume);
    jb_real(b, "commission", trd->commission);
    jb_real(b, "close_profit", trd->close_profit);
    jb_int(b, "trade_date_time", ms_of(trd->trade_ns));
    jb_int(b, "timestamp", ms_of(trd->trade_ns));
    jb_bool(b, "is_taker", trd->is_taker);
    jb_bool(b, "is_liquidation", trd->is_liquidation);
    jb_int(b, "towards", towards_of(trd->direction, trd->offset));
}

json_t *codec_trade(const engine *e, const trade *trd) {
    json_builder b = jb_new();
    put_trade_fields(&b, e, trd);
    return jb_done(&b);
}

json_t *codec_instrument(const engine *e, const instrument *ins) {
    const instrument_spec *s = &ins->spec;
    json_builder b = jb_new();
    jb_str(&b, "instrument_id", s->instrument_id);
    jb_str(&b, "instrument_name", s->instrument_name);
    jb_str(&b, "instrument_type", instrument_type_name(s->instrument_type));
    jb_str(&b, "exchange", s->exchange);
    jb_int(&b, "contract_multiplier", s->contract_multiplier);
    jb_real(&b, "price_tick", s->price_tick);
    jb_real(&b, "margin_rate", s->margin_rate);
    jb_real(&b, "commission_rate", s->commission_rate);
    jb_real(&b, "commission_per_lot", s->commission_per_lot);
    jb_real(&b, "limit_up_rate", s->limit_up_rate);
    jb_real(&b, "limit_down_rate", s->limit_down_rate);
    jb_date(&b, "list_date", s->list_date);
    jb_date(&b, "expire_date", s->expire_date);
    jb_str(&b, "status", instrument_status_name(ins->status));
    jb_real(&b, "pre_settlement", s->pre_settlement);
    jb_real(&b, "pre_close", s->pre_close);
    jb_real(&b, "upper_limit", instrument_upper_limit(ins));
    jb_real(&b, "lower_limit", instrument_lower_limit(ins));
    jb_real(&b, "last_price", instrument_last_price(ins)); /* as the tick shows it */
    jb_bool(&b, "in_auction", ins->in_auction);
    return jb_done(&b);
}

json_t *codec_user(const engine *e, const user *u, bool with_accounts) {
    json_builder b = jb_new();
    jb_str(&b, "user_id", u->user_id);
    jb_str(&b, "username", u->username);
    jb_str(&b, "email", u->email);
    jb_str(&b, "phone", u->phone);
    jb_str(&b, "role", user_role_name(u->role));
    jb_put(&b, "roles", json_pack("[s]", user_role_name(u->role)));
    jb_int(&b, "created_at", ms_of(u->created_ns));
    if (with_accounts) {
        json_t *ids = json_array();
        for (uint32_t i = 0; ids && i < engine_account_count(e); i++) {
            const account *a = engine_account_at(e, i);
            if (strcmp(a->user_id, u->user_id) == 0)
                json_array_append_new(ids, json_string(a->account_id));
        }
        jb_put(&b, "accounts", ids);
    }
    return jb_done(&b);
}

/* "YYYY-MM-DD HH:MM:SS" in China Standard Time (UTC+8, no daylight saving), independent of TZ. */
static void format_china_time(int64_t ns, char *out, size_t outlen) {
    time_t secs = (time_t)(ms_of(ns) / 1000 + 8 * 3600);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || strftime(out, outlen, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(out, outlen, "%s", "");
}

/* Adds codec value under key to the object map; false on failure (value released). */
static bool map_add(json_t *map, const char *key, json_t *value) {
    return value != NULL && json_object_set_new(map, key, value) == 0;
}

json_t *codec_qifi(const engine *e, const account *acc) {
    json_t *positions = json_object(), *orders = json_object(), *trades = json_object();
    bool ok = positions && orders && trades;
    int64_t latest_ns = acc->created_ns;

    for (uint32_t i = 0; ok; i++) {
        const position *p = engine_account_position(e, acc, i);
        if (p == NULL) break;
        const instrument *ins = engine_instrument_of(e, p->instrument);
        ok = ins && map_add(positions, ins->spec.instrument_id, codec_position(e, p));
    }
    for (const order *o = engine_order_first(e, acc); ok && o; o = engine_order_next(e, o)) {
        if (o->update_ns > latest_ns) latest_ns = o->update_ns;
        ok = map_add(orders, o->order_id, codec_order(e, o));
    }
    for (const trade *t = engine_trade_first(e, acc); ok && t; t = engine_trade_next(e, t)) {
        char trade_id[32];
        order_format_seq('T', t->seq, trade_id, sizeof trade_id);
        if (t->trade_ns > latest_ns) latest_ns = t->trade_ns;
        ok = map_add(trades, trade_id, codec_trade(e, t));
    }
    if (!ok) {
        json_decref(positions);
        json_decref(orders);
        json_decref(trades);
        return NULL;
    }

    account_view v;
    engine_account_view(e, acc, &v);
    char updatetime[32];
    format_china_time(latest_ns, updatetime, sizeof updatetime);
    json_builder b = jb_new();
    jb_str(&b, "account_cookie", acc->account_id);
    jb_str(&b, "portfolio_cookie", acc->user_id);
    jb_str(&b, "user_cookie", acc->user_id);
    jb_str(&b, "investor_name", acc->account_name);
    jb_str(&b, "broker", "QAExchange");
    jb_str(&b, "broker_name", "QAExchange");
    jb_str(&b, "market_type", "future");
    jb_str(&b, "running_environment", "sim");
    jb_str(&b, "trading_day", engine_trading_day(e));
    jb_str(&b, "updatetime", updatetime);
    jb_real(&b, "money", v.available);
    jb_put(&b, "accounts", codec_account(e, acc));
    jb_put(&b, "positions", positions);
    jb_put(&b, "orders", orders);
    jb_put(&b, "trades", trades);
    jb_put(&b, "banks", json_object());
    jb_put(&b, "transfers", json_object());
    jb_put(&b, "event", json_object());
    jb_put(&b, "settlement", json_object());
    jb_put(&b, "frozen", json_object());
    return jb_done(&b);
}

json_t *codec_settlement_result(const settlement_result *sr) {
    json_t *closed = json_array();
    for (uint32_t i = 0; closed && i < sr->force_closed_count; i++) {
        if (json_array_append_new(closed, jb_string(sr->force_closed_accounts[i])) != 0) {
            json_decref(closed);
            closed = NULL;
        }
    }
    json_builder b = jb_new();
    jb_str(&b, "settlement_date", sr->settlement_date);
    jb_int(&b, "total_accounts", sr->total_accounts);
    jb_int(&b, "settled_accounts", sr->settled_accounts);
    jb_int(&b, "failed_accounts", sr->failed_accounts);
    jb_put(&b, "force_closed_accounts", closed);
    jb_int(&b, "force_closed_count", sr->force_closed_count);
    jb_real(&b, "total_commission", sr->total_commission);
    jb_real(&b, "total_profit", sr->total_profit);
    jb_int(&b, "timestamp", ms_of(sr->ts_ns));
    return jb_done(&b);
}

json_t *codec_account_settlement(const account_settlement *as) {
    const char *acc_id = as->account ? as->account->account_id : "";
    json_builder b = jb_new();
    jb_str(&b, "user_id", acc_id);
    jb_str(&b, "account_id", acc_id);
    jb_str(&b, "date", as->date);
    jb_real(&b, "pre_balance", as->pre_balance);
    jb_real(&b, "balance", as->balance);
    jb_real(&b, "close_profit", as->close_profit);
    jb_real(&b, "position_profit", as->position_profit);
    jb_real(&b, "commission", as->commission);
    jb_real(&b, "risk_ratio", as->risk_ratio);
    jb_bool(&b, "force_close", as->force_close);
    return jb_done(&b);
}

/* ==========================================================================================
 * Envelope, statuses, `type` protocol messages
 * ========================================================================================== */

json_t *codec_envelope_ok(json_t *data) {
    if (data == NULL) return NULL; /* the encoder that made it failed: so does the envelope */
    json_builder b = jb_new();
    jb_bool(&b, "success", true);
    jb_put(&b, "data", data);
    jb_put(&b, "error", json_null());
    return jb_done(&b);
}

void codec_envelope_ok_open(json_text *t) {
    static const char head[] = "{\"success\":true,\"data\":";
    jt_raw(t, head, sizeof head - 1);
}

bool codec_envelope_ok_close(json_text *t) {
    static const char tail[] = ",\"error\":null}";
    jt_raw(t, tail, sizeof tail - 1);
    return !t->failed;
}

json_t *codec_envelope_error(int code, const char *message) {
    json_builder err = jb_new();
    jb_int(&err, "code", code);
    jb_str(&err, "message", message);
    json_builder b = jb_new();
    jb_bool(&b, "success", false);
    jb_put(&b, "data", json_null());
    jb_put(&b, "error", jb_done(&err));
    return jb_done(&b);
}

int codec_http_status(int error_code) {
    switch (error_code) {
        case QAEX_OK:
            return 200;
        case ERR_INVALID_ORDER:
        case ERR_DEPOSIT:
        case ERR_WITHDRAW:
        case ERR_BAD_MESSAGE:
            return 400;
        case ERR_AUTH_FAILED:
        case ERR_NOT_AUTHENTICATED:
            return 401;
        case CODEC_ERR_FORBIDDEN:
            return 403;
        case ERR_ACCOUNT_NOT_FOUND:
        case ERR_INSTRUMENT_NOT_FOUND:
        case ERR_ORDER_NOT_FOUND:
        case CODEC_ERR_NOT_FOUND:
            return 404;
        case CODEC_ERR_METHOD_NOT_ALLOWED:
            return 405;
        case ERR_ACCOUNT_EXISTS:
        case ERR_ORDER_NOT_CANCELLABLE:
        case ERR_SUBMIT_FAILED:
        case CODEC_ERR_CONFLICT:
            return 409;
        case CODEC_ERR_TOO_LARGE:
            return 413;
        case ERR_INSUFFICIENT_FUNDS:
        case ERR_POSITION_LIMIT:
        case ERR_ORDER_VALUE:
        case ERR_RISK_RATIO:
        case ERR_SELF_TRADE:
        case ERR_ACCOUNT_FROZEN:
        case ERR_INSUFFICIENT_POSITION:
        case ERR_SETTLEMENT_PRICE_MISSING:
            return 422;
        case ERR_RATE_LIMITED:
            return 429;
        case ERR_NO_MATCHING_ENGINE:
        case ERR_UNAVAILABLE:
            return 503;
        default: /* 5000-5003, 6002, 6003, 9999 and codes nobody defined */
            return 500;
    }
}

int codec_command_http_status(command_type type, int code) {
    bool lifecycle = type == CMD_INSTRUMENT_SUSPEND || type == CMD_INSTRUMENT_RESUME ||
                     type == CMD_INSTRUMENT_DELIST;
    if (lifecycle && code == ERR_INVALID_ORDER) return 409;
    return codec_http_status(code);
}

json_t *codec_ws_error(int code, const char *message) {
    json_builder b = jb_new();
    jb_str(&b, "type", "error");
    jb_int(&b, "code", code);
    jb_str(&b, "message", message);
    return jb_done(&b);
}

void codec_put_ws_order_response(json_builder *b, int code, const char *order_id,
                                 const char *message) {
    jb_str(b, "type", "order_response");
    jb_bool(b, "success", code == 0);
    if (code == 0 && order_id)
        jb_str(b, "order_id", order_id);
    else
        jb_null(b, "order_id");
    if (code == 0) {
        jb_null(b, "error_code");
        jb_null(b, "error_message");
        jb_str(b, "message", message && message[0] ? message : "Order submitted");
    } else {
        jb_int(b, "error_code", code);
        jb_str(b, "error_message", message ? message : "");
    }
}

json_t *codec_ws_order_response(int code, const char *order_id, const char *message) {
    json_builder b = jb_new();
    codec_put_ws_order_response(&b, code, order_id, message);
    return jb_done(&b);
}

static void put_ws_order_status(json_builder *b, const order *ord) {
    jb_str(b, "type", "order_status");
    jb_str(b, "order_id", ord->order_id);
    jb_str(b, "status", order_status_name(ord->status));
    jb_int(b, "filled_volume", ord->volume_orign - ord->volume_left);
    jb_int(b, "remaining_volume", ord->volume_left);
    jb_int(b, "timestamp", ms_of(ord->update_ns));
}

json_t *codec_ws_order_status(const engine *e, const order *ord) {
    (void)e;
    json_builder b = jb_new();
    put_ws_order_status(&b, ord);
    return jb_done(&b);
}

bool codec_ws_order_status_text(json_text *t, const engine *e, const order *ord) {
    (void)e;
    json_builder b = jb_text(t);
    put_ws_order_status(&b, ord);
    return jb_end(&b);
}

json_t *codec_ws_trade(const engine *e, const trade *trd) {
    json_builder b = jb_new();
    jb_str(&b, "type", "trade");
    put_trade_fields(&b, e, trd);
    return jb_done(&b);
}

bool codec_ws_trade_text(json_text *t, const engine *e, const trade *trd) {
    json_builder b = jb_text(t);
    jb_str(&b, "type", "trade");
    put_trade_fields(&b, e, trd);
    return jb_end(&b);
}

json_t *codec_ws_account_update(const engine *e, const account *acc, int64_t timestamp_ms) {
    json_builder b = jb_new();
    jb_str(&b, "type", "account_update");
    put_account_fields(&b, e, acc);
    jb_int(&b, "timestamp", timestamp_ms);
    return jb_done(&b);
}

bool codec_ws_account_update_text(json_text *t, const engine *e, const account *acc,
                                  int64_t timestamp_ms) {
    json_builder b = jb_text(t);
    jb_str(&b, "type", "account_update");
    put_account_fields(&b, e, acc);
    jb_int(&b, "timestamp", timestamp_ms);
    return jb_end(&b);
}

/* ==========================================================================================
 * Decoders
 * ========================================================================================== */

static void set_msg(char *msg, size_t msglen, const char *fmt, ...) {
    if (msg == NULL || msglen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}

/* What the client sent, for messages: `string "abc"`, `number 3.5`, `true`, `object`. Long
 * strings are cut (at a character boundary) and marked with "...". */
static void describe(const json_t *v, char *out, size_t outlen) {
    switch (json_typeof(v)) {
        case JSON_STRING: {
            const char *s = json_string_value(v);
            size_t n = json_string_length(v), max = 40;
            bool cut = n > max;
            if (cut) {
                n = max;
                while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                    n--;
            }
            snprintf(out, outlen, "string \"%.*s%s\"", (int)n, s, cut ? "..." : "");
            return;
        }
        case JSON_INTEGER:
            snprintf(out, outlen, "number %lld", (long long)json_integer_value(v));
            return;
        case JSON_REAL:
            snprintf(out, outlen, "number %.15g", json_real_value(v));
            return;
        case JSON_TRUE:
            snprintf(out, outlen, "true");
            return;
        case JSON_FALSE:
            snprintf(out, outlen, "false");
            return;
        case JSON_NULL:
            snprintf(out, outlen, "null");
            return;
        case JSON_OBJECT:
            snprintf(out, outlen, "object");
            return;
        case JSON_ARRAY:
            snprintf(out, outlen, "array");
            return;
    }
    snprintf(out, outlen, "unknown");
}

void codec_describe(const json_t *v, char *out, size_t outlen) {
    describe(v, out, outlen);
}

/* The member, or NULL when absent or null. A required one that is absent is an error. */
static const json_t *member(const json_t *obj, const char *field, bool required, int *rc, char *msg,
                            size_t msglen) {
    const json_t *v = json_object_get(obj, field);
    *rc = CODEC_FIELD_OK;
    if (v != NULL && !json_is_null(v)) return v;
    if (required) {
        set_msg(msg, msglen, v ? "%s is required, got null" : "%s is required", field);
        *rc = CODEC_FIELD_ERROR;
    } else {
        *rc = CODEC_FIELD_ABSENT;
    }
    return NULL;
}

static int type_error(const char *field, const char *expected, const json_t *v, char *msg,
                      size_t msglen) {
    char got[80];
    describe(v, got, sizeof got);
    set_msg(msg, msglen, "%s must be %s, got %s", field, expected, got);
    return CODEC_FIELD_ERROR;
}

int codec_get_string(const json_t *obj, const char *field, char *out, size_t cap, bool required,
                     char *msg, size_t msglen) {
    int rc;
    if (cap > 0) out[0] = '\0';
    const json_t *v = member(obj, field, required, &rc, msg, msglen);
    if (v == NULL) return rc;
    if (!json_is_string(v)) return type_error(field, "a string", v, msg, msglen);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len) {
        set_msg(msg, msglen, "%s must not contain a NUL character", field);
        return CODEC_FIELD_ERROR;
    }
    if (len == 0) {
        if (!required) return CODEC_FIELD_ABSENT;
        set_msg(msg, msglen, "%s must not be empty", field);
        return CODEC_FIELD_ERROR;
    }
    if (cap == 0 || len > cap - 1) {
        set_msg(msg, msglen, "%s is too long: %zu bytes, at most %zu", field, len,
                cap ? cap - 1 : 0);
        return CODEC_FIELD_ERROR;
    }
    memcpy(out, s, len + 1);
    return CODEC_FIELD_OK;
}

/* A finite number from a numeric string: the whole string, no blanks, no hex, no nan/inf. */
static bool number_from_text(const char *s, double *out) {
    if (*s == '\0' || strlen(s) > 64) return false;
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return false;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(d)) return false;
    *out = d;
    return true;
}

int codec_get_number(const json_t *obj, const char *field, double *out, bool required, char *msg,
                     size_t msglen) {
    int rc;
    const json_t *v = member(obj, field, required, &rc, msg, msglen);
    if (v == NULL) return rc;
    double d;
    if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
    } else if (json_is_real(v)) {
        d = json_real_value(v);
    } else if (!json_is_string(v) || !number_from_text(json_string_value(v), &d)) {
        return type_error(field, "a number", v, msg, msglen);
    }
    *out = d;
    return CODEC_FIELD_OK;
}

int codec_get_whole(const json_t *obj, const char *field, int64_t *out, bool required, char *msg,
                    size_t msglen) {
    const json_t *v = json_object_get(obj, field);
    if (json_is_integer(v)) { /* exact, even past 2^53 */
        *out = (int64_t)json_integer_value(v);
        return CODEC_FIELD_OK;
    }
    double d = 0;
    int rc = codec_get_number(obj, field, &d, required, msg, msglen);
    if (rc != CODEC_FIELD_OK) return rc;
    if (fabs(d) > 9007199254740992.0) {
        set_msg(msg, msglen, "%s is out of range, got %.15g", field, d);
        return CODEC_FIELD_ERROR;
    }
    if (d != floor(d)) {
        set_msg(msg, msglen, "%s must be a whole number, got %.15g", field, d);
        return CODEC_FIELD_ERROR;
    }
    *out = (int64_t)d;
    return CODEC_FIELD_OK;
}

int codec_get_bool(const json_t *obj, const char *field, bool *out, bool required, char *msg,
                   size_t msglen) {
    int rc;
    const json_t *v = member(obj, field, required, &rc, msg, msglen);
    if (v == NULL) return rc;
    if (!json_is_boolean(v)) return type_error(field, "true or false", v, msg, msglen);
    *out = json_is_true(v);
    return CODEC_FIELD_OK;
}

int codec_get_enum(const json_t *obj, const char *field, codec_enum_parser parse,
                   const char *allowed, int *out, bool required, char *msg, size_t msglen) {
    char text[QAEX_NAME_LEN];
    const json_t *v = json_object_get(obj, field);
    if (json_is_string(v) && json_string_length(v) >= sizeof text) {
        char got[80];
        describe(v, got, sizeof got);
        set_msg(msg, msglen, "%s must be one of %s; got %s", field, allowed, got);
        return CODEC_FIELD_ERROR;
    }
    int rc = codec_get_string(obj, field, text, sizeof text, required, msg, msglen);
    if (rc != CODEC_FIELD_OK) return rc;
    if (parse(text, out) != 0) {
        set_msg(msg, msglen, "%s must be one of %s; got \"%s\"", field, allowed, text);
        return CODEC_FIELD_ERROR;
    }
    return CODEC_FIELD_OK;
}

/* Each enum parser of types.h, adapted to int. */
#define ENUM_ADAPTER(name, type, parser)                                                           \
    int name(const char *text, int *value) {                                                       \
        type parsed;                                                                               \
        if (parser(text, &parsed) != 0) return -1;                                                 \
        *value = (int)parsed;                                                                      \
        return 0;                                                                                  \
    }

ENUM_ADAPTER(codec_parse_direction, direction, direction_parse)
ENUM_ADAPTER(codec_parse_offset, offset, offset_parse)
ENUM_ADAPTER(codec_parse_price_type, price_type, price_type_parse)
ENUM_ADAPTER(codec_parse_time_condition, time_condition, time_condition_parse)
ENUM_ADAPTER(codec_parse_volume_condition, volume_condition, volume_condition_parse)

/* The body must be an object: 9003 otherwise. */
static int check_body(const json_t *body, char *msg, size_t msglen) {
    if (json_is_object(body)) return 0;
    if (body == NULL) {
        set_msg(msg, msglen, "request body must be a JSON object, got nothing");
    } else {
        char got[80];
        describe(body, got, sizeof got);
        set_msg(msg, msglen, "request body must be a JSON object, got %s", got);
    }
    return ERR_BAD_MESSAGE;
}

/* The first of two alias names that is present (non-null), else the first. */
static const char *alias(const json_t *body, const char *name, const char *other) {
    const json_t *v = json_object_get(body, name);
    if (v != NULL && !json_is_null(v)) return name;
    v = json_object_get(body, other);
    return v != NULL && !json_is_null(v) ? other : name;
}

/* account_id, or else user_id (an account named by its owner id in the legacy flow). user_id is
 * type-checked even when account_id is given. */
static int get_account_id(const json_t *body, char out[QAEX_ID_LEN], char *msg, size_t msglen) {
    char user_id[QAEX_ID_LEN];
    if (codec_get_string(body, "account_id", out, QAEX_ID_LEN, false, msg, msglen) < 0 ||
        codec_get_string(body, "user_id", user_id, sizeof user_id, false, msg, msglen) < 0)
        return -1;
    if (out[0] == '\0') memcpy(out, user_id, sizeof user_id);
    if (out[0] != '\0') return 0;
    set_msg(msg, msglen, "account_id or user_id is required");
    return -1;
}

int codec_parse_order(const json_t *body, order_request *out, char *msg, size_t msglen) {
    memset(out, 0, sizeof *out);
    int rc = check_body(body, msg, msglen);
    if (rc != 0) return rc;
    int dir = DIR_BUY, off = OFFSET_OPEN, pt = PRICE_LIMIT, tc = TC_GFD, vc = VC_ANY;
    const char *pt_field = alias(body, "order_type", "price_type");
    const char *price_field = alias(body, "price", "limit_price");
    if (get_account_id(body, out->account_id, msg, msglen) != 0 ||
        codec_get_string(body, "instrument_id", out->instrument_id, sizeof out->instrument_id, true,
                         msg, msglen) < 0 ||
        codec_get_enum(body, "direction", codec_parse_direction, "BUY, SELL", &dir, true, msg,
                       msglen) < 0 ||
        codec_get_enum(body, "offset", codec_parse_offset,
                       "OPEN, CLOSE, CLOSETODAY, CLOSEYESTERDAY", &off, false, msg, msglen) < 0 ||
        codec_get_whole(body, "volume", &out->volume, true, msg, msglen) < 0 ||
        codec_get_enum(body, pt_field, codec_parse_price_type, "LIMIT, MARKET, ANY", &pt, false,
                       msg, msglen) < 0 ||
        codec_get_enum(body, "time_condition", codec_parse_time_condition, "GFD, IOC, GTC", &tc,
                       false, msg, msglen) < 0 ||
        codec_get_enum(body, "volume_condition", codec_parse_volume_condition, "ANY, ALL", &vc,
                       false, msg, msglen) < 0 ||
        codec_get_string(body, "order_id", out->order_id, sizeof out->order_id, false, msg,
                         msglen) < 0)
        return ERR_INVALID_ORDER;
    /* a market order's price is ignored, but a malformed one is still reported */
    rc = codec_get_number(body, price_field, &out->limit_price, false, msg, msglen);
    if (rc < 0) return ERR_INVALID_ORDER;
    if (rc == CODEC_FIELD_ABSENT && pt == PRICE_LIMIT) {
        set_msg(msg, msglen, "price is required for a LIMIT order");
        return ERR_INVALID_ORDER;
    }
    if (pt == PRICE_ANY) out->limit_price = 0;
    out->direction = (direction)dir;
    out->offset = (offset)off;
    out->price_type = (price_type)pt;
    out->time_condition = (time_condition)tc;
    out->volume_condition = (volume_condition)vc;
    return 0;
}

/* ---- loading request text ---- */

static bool json_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r'; /* jansson's whitespace */
}

/* A plain string at text[*i] (just after its opening quote): printable ASCII without escapes.
 * Sets *start and *n and moves *i past the closing quote; false for anything else. */
static bool fast_string(const char *text, size_t len, size_t *i, size_t *start, size_t *n) {
    size_t j = *i;
    while (j < len) {
        unsigned char c = (unsigned char)text[j];
        if (c == '"') break;
        if (c < 0x20 || c >= 0x7F || c == '\\') return false;
        j++;
    }
    if (j >= len) return false;
    *start = *i;
    *n = j - *i;
    *i = j + 1;
    return true;
}

/* A number at text[*i] as jansson reads it, for the forms it reads without doubt: -?(0|[1-9]d*)
 * with at most 18 digits (an integer, strtoll cannot overflow) or followed by .d+ (a real,
 * strtod as jansson calls it). Exponents and everything else: false. */
static json_t *fast_number(const char *text, size_t len, size_t *i) {
    size_t j = *i, digits = 0;
    bool real = false;
    if (j < len && text[j] == '-') j++;
    if (j < len && text[j] == '0') {
        j++;
        digits = 1;
    } else {
        while (j < len && text[j] >= '0' && text[j] <= '9') {
            j++;
            digits++;
        }
    }
    if (digits == 0) return NULL;
    if (j < len && text[j] == '.') {
        real = true;
        size_t frac = 0;
        for (j++; j < len && text[j] >= '0' && text[j] <= '9'; j++)
            frac++;
        if (frac == 0) return NULL;
    }
    /* what may follow a value in an object; anything else (e, E, a digit after 0) is jansson's */
    if (j >= len || !(json_space(text[j]) || text[j] == ',' || text[j] == '}')) return NULL;
    char buf[64];
    size_t n = j - *i;
    if (n >= sizeof buf || (!real && digits > 18)) return NULL;
    memcpy(buf, text + *i, n);
    buf[n] = '\0';
    *i = j;
    if (!real) return json_integer((json_int_t)strtoll(buf, NULL, 10));
    errno = 0;
    double d = strtod(buf, NULL);
    if (errno == ERANGE || !isfinite(d)) return NULL; /* jansson reports these itself */
    return json_real(d);
}

/* The flat object text holds, or NULL when the text is anything else (or memory ran out): the
 * caller then asks jansson, so only text both read the same is taken here. */
static json_t *fast_object(const char *text, size_t len) {
    size_t i = 0;
    while (i < len && json_space(text[i]))
        i++;
    if (i >= len || text[i] != '{') return NULL;
    json_t *obj = json_object();
    if (obj == NULL) return NULL;
    i++;
    bool first = true;
    for (;;) {
        while (i < len && json_space(text[i]))
            i++;
        if (i >= len) goto decline;
        if (text[i] == '}' && first) {
            i++;
            break;
        }
        if (text[i] != '"') goto decline;
        i++;
        size_t ks, kn;
        char key[128];
        if (!fast_string(text, len, &i, &ks, &kn) || kn >= sizeof key) goto decline;
        memcpy(key, text + ks, kn);
        key[kn] = '\0';
        while (i < len && json_space(text[i]))
            i++;
        if (i >= len || text[i] != ':') goto decline;
        i++;
        while (i < len && json_space(text[i]))
            i++;
        if (i >= len) goto decline;
        json_t *v = NULL;
        char c = text[i];
        if (c == '"') {
            size_t vs, vn;
            i++;
            if (!fast_string(text, len, &i, &vs, &vn)) goto decline;
            v = json_stringn_nocheck(text + vs, vn);
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            v = fast_number(text, len, &i);
        } else {
            static const struct {
                const char *word;
                size_t n;
            } words[] = {{"true", 4}, {"false", 5}, {"null", 4}};
            for (int w = 0; w < 3; w++) {
                if (len - i > words[w].n && memcmp(text + i, words[w].word, words[w].n) == 0) {
                    char after = text[i + words[w].n];
                    if (!(json_space(after) || after == ',' || after == '}')) break;
                    v = w == 0 ? json_true() : w == 1 ? json_false() : json_null();
                    i += words[w].n;
                    break;
                }
            }
        }
        /* a repeated key keeps the last value, as jansson's parser does */
        if (v == NULL || json_object_set_new_nocheck(obj, key, v) != 0) goto decline;
        first = false;
        while (i < len && json_space(text[i]))
            i++;
        if (i >= len) goto decline;
        if (text[i] == ',') {
            i++;
            continue;
        }
        if (text[i] != '}') goto decline;
        i++;
        break;
    }
    while (i < len && json_space(text[i]))
        i++;
    if (i == len) return obj;
decline:
    json_decref(obj);
    return NULL;
}

json_t *codec_load(const char *text, size_t len, json_error_t *err) {
    json_t *obj = fast_object(text, len);
    return obj ? obj : json_loadb(text, len, 0, err);
}

/* Clears what a decoder owns of a command; ts_ns stays the gateway's. */
static void command_reset(command *out, command_type type) {
    memset(&out->u, 0, sizeof out->u);
    out->type = type;
}

int codec_parse_cancel(const json_t *body, command *out, char *msg, size_t msglen) {
    command_reset(out, CMD_ORDER_CANCEL);
    int rc = check_body(body, msg, msglen);
    if (rc != 0) return rc;
    if (get_account_id(body, out->u.cancel.account_id, msg, msglen) != 0 ||
        codec_get_string(body, "order_id", out->u.cancel.order_id, sizeof out->u.cancel.order_id,
                         true, msg, msglen) < 0)
        return ERR_INVALID_ORDER;
    return 0;
}

int codec_parse_open_account(const json_t *body, command *out, char *msg, size_t msglen) {
    command_reset(out, CMD_ACCOUNT_OPEN);
    int rc = check_body(body, msg, msglen);
    if (rc != 0) return rc;
    char *name = out->u.account_open.account_name;
    size_t name_cap = sizeof out->u.account_open.account_name;
    if (codec_get_string(body, "user_id", out->u.account_open.user_id,
                         sizeof out->u.account_open.user_id, false, msg, msglen) < 0 ||
        codec_get_string(body, "account_id", out->u.account_open.account_id,
                         sizeof out->u.account_open.account_id, false, msg, msglen) < 0 ||
        codec_get_string(body, alias(body, "account_name", "user_name"), name, name_cap, false, msg,
                         msglen) < 0 ||
        codec_get_number(body, alias(body, "init_cash", "init_balance"),
                         &out->u.account_open.init_cash, false, msg, msglen) < 0)
        return ERR_BAD_MESSAGE;
    return 0;
}

int codec_check_account_id(const char *id, char *msg, size_t msglen) {
    static const char *const reserved[] = {".",       "..",       "list",  "open",
                                           "deposit", "withdraw", "detail"};
    size_t len = strlen(id);
    if (len == 0 || len >= QAEX_ID_LEN) {
        snprintf(msg, msglen, "account id \"%.63s\" must have 1 to %d characters", id,
                 QAEX_ID_LEN - 1);
        return ERR_BAD_MESSAGE;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && !strchr("_.-@:", c)) {
            snprintf(msg, msglen,
                     "account id \"%s\" has the character 0x%02x at %zu (allowed: letters, "
                     "digits and _ . - @ :)",
                     id, c, i);
            return ERR_BAD_MESSAGE;
        }
    }
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(id, reserved[i]) == 0) {
            snprintf(msg, msglen, "account id \"%s\" is reserved: a URL could not name it", id);
            return ERR_BAD_MESSAGE;
        }
    return 0;
}

/* The first of several spellings of a number member that is present. */
static int get_number_any(const json_t *body, const char *const *names, double *out, bool *seen,
                          char *msg, size_t msglen) {
    for (; *names; names++) {
        int r = codec_get_number(body, *names, out, false, msg, msglen);
        if (r == CODEC_FIELD_ERROR) return -1;
        if (r == CODEC_FIELD_OK) {
            *seen = true;
            return 0;
        }
    }
    return 0;
}

int codec_parse_instrument(const json_t *body, instrument_spec *out, uint32_t *fields, char *msg,
                           size_t msglen) {
    memset(out, 0, sizeof *out);
    *fields = 0;
    int rc = check_body(body, msg, msglen);
    if (rc != 0) return rc;
    out->instrument_type = INSTRUMENT_FUTURE;
    out->margin_rate = 0.1;
    out->limit_up_rate = out->limit_down_rate = 0.1;
    static const struct {
        const char *const names[4];
        size_t offset;
        uint32_t bit;
    } numbers[] = {
        {{"contract_multiplier", "multiplier", "volume_multiple", NULL}, 0, UPDATE_MULTIPLIER},
        {{"price_tick", NULL}, offsetof(instrument_spec, price_tick), UPDATE_PRICE_TICK},
        {{"margin_rate", "margin_ratio", NULL},
         offsetof(instrument_spec, margin_rate),
         UPDATE_MARGIN_RATE},
        {{"commission_rate", NULL},
         offsetof(instrument_spec, commission_rate),
         UPDATE_COMMISSION_RATE},
        {{"commission_per_lot", NULL},
         offsetof(instrument_spec, commission_per_lot),
         UPDATE_COMMISSION_PER_LOT},
        {{"limit_up_rate", NULL}, offsetof(instrument_spec, limit_up_rate), UPDATE_LIMIT_UP_RATE},
        {{"limit_down_rate", NULL},
         offsetof(instrument_spec, limit_down_rate),
         UPDATE_LIMIT_DOWN_RATE},
        {{"pre_settlement", "init_price", NULL}, offsetof(instrument_spec, pre_settlement), 0},
        {{"pre_close", NULL}, offsetof(instrument_spec, pre_close), 0},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        double v = 0;
        bool seen = false;
        if (get_number_any(body, numbers[i].names, &v, &seen, msg, msglen) != 0)
            return ERR_BAD_MESSAGE;
        if (!seen) continue;
        *fields |= numbers[i].bit;
        if (i == 0) {
            if (v != floor(v) || v < 1 || v > 1e9) {
                snprintf(msg, msglen, "contract_multiplier must be a whole number >= 1, got %g", v);
                return ERR_BAD_MESSAGE;
            }
            out->contract_multiplier = (int32_t)v;
        } else {
            *(double *)((char *)out + numbers[i].offset) = v;
        }
    }
    if (out->pre_close == 0) out->pre_close = out->pre_settlement;
    char type[16];
    if (codec_get_string(body, "instrument_id", out->instrument_id, sizeof out->instrument_id,
                         false, msg, msglen) == CODEC_FIELD_ERROR ||
        codec_get_string(body, "exchange", out->exchange, sizeof out->exchange, false, msg,
                         msglen) == CODEC_FIELD_ERROR ||
        codec_get_string(body, "list_date", out->list_date, sizeof out->list_date, false, msg,
                         msglen) == CODEC_FIELD_ERROR)
        return ERR_BAD_MESSAGE;
    if (out->exchange[0] == '\0' &&
        codec_get_string(body, "exchange_id", out->exchange, sizeof out->exchange, false, msg,
                         msglen) == CODEC_FIELD_ERROR)
        return ERR_BAD_MESSAGE;
    int r = codec_get_string(body, "instrument_name", out->instrument_name,
                             sizeof out->instrument_name, false, msg, msglen);
    if (r == CODEC_FIELD_ABSENT)
        r = codec_get_string(body, "name", out->instrument_name, sizeof out->instrument_name, false,
                             msg, msglen);
    if (r == CODEC_FIELD_ERROR) return ERR_BAD_MESSAGE;
    if (r == CODEC_FIELD_OK) *fields |= UPDATE_NAME;
    r = codec_get_string(body, "expire_date", out->expire_date, sizeof out->expire_date, false, msg,
                         msglen);
    if (r == CODEC_FIELD_ERROR) return ERR_BAD_MESSAGE;
    if (r == CODEC_FIELD_OK) *fields |= UPDATE_EXPIRE_DATE;
    /* dates are YYYY-MM-DD like every date of the API; DIFF's symbol list derives
     * expire_datetime from expire_date, so a malformed one would mislead its clients */
    const char *const date_names[] = {"list_date", "expire_date"};
    const char *const date_values[] = {out->list_date, out->expire_date};
    for (int i = 0; i < 2; i++)
        if (date_values[i][0] != '\0' && !qaex_date_valid(date_values[i])) {
            snprintf(msg, msglen, "%s must be a date YYYY-MM-DD, got \"%s\"", date_names[i],
                     date_values[i]);
            return ERR_BAD_MESSAGE;
        }
    r = codec_get_string(body, "instrument_type", type, sizeof type, false, msg, msglen);
    if (r == CODEC_FIELD_ERROR) return ERR_BAD_MESSAGE;
    if (r == CODEC_FIELD_OK && instrument_type_parse(type, &out->instrument_type) != 0) {
        snprintf(msg, msglen, "instrument_type must be one of Future, Option, Stock; got \"%s\"",
                 type);
        return ERR_BAD_MESSAGE;
    }
    return 0;
}

int codec_parse_transfer(const json_t *body, command_type type, command *out, char *msg,
                         size_t msglen) {
    command_reset(out, type);
    int rc = check_body(body, msg, msglen);
    if (rc != 0) return rc;
    if (get_account_id(body, out->u.transfer.account_id, msg, msglen) != 0 ||
        codec_get_number(body, "amount", &out->u.transfer.amount, true, msg, msglen) < 0)
        return ERR_BAD_MESSAGE;
    return 0;
}
