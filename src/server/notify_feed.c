#include "server/notify_feed.h"

#include "proto/json_builder.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Risk bands: below the warning ratio, at or above it (margin_call), at or above the engine's
 * risk_ratio_reject (risk_alert). */
enum { BAND_CALM = 0, BAND_WARNING = 1, BAND_REJECT = 2, BAND_UNKNOWN = 0xFF };

struct notify_feed {
    notify_sink_fn sink;
    void *ctx;
    uint32_t channels;
    double warning_ratio;
    uint8_t *risk_band; /* per account slot: the band last reported */
    uint32_t cap_risk_band;
    /* the order of the last EV_ORDER: the trade of a fill follows it at once */
    uint64_t last_order_seq;
    int64_t last_order_left;
};

/* ---- payloads ---- */

/* A payload object under construction (json_builder.h: the text the jansson encoders would
 * write, without a tree). */
typedef struct payload {
    json_text text;
    json_builder b;
} payload;

static void payload_begin(payload *p) {
    jt_init(&p->text);
    p->b = jb_text(&p->text);
}

/* Closes the payload and hands it to the sink; a failed allocation drops the notification. */
static void emit(notify_feed *f, notify_type type, const char *topic, int64_t now_ns, payload *p) {
    size_t len;
    char *text = jb_end(&p->b) ? jt_take(&p->text, &len) : NULL;
    if (text == NULL) {
        jt_free(&p->text);
        return;
    }
    notify_note note = {
        .type = type, .topic = topic, .event_ns = now_ns, .payload = text, .len = len};
    f->sink(f->ctx, &note);
}

static bool wanted(const notify_feed *f, notify_type type) {
    return (f->channels & NOTIFY_CHANNEL_BIT(notify_type_channel(type))) != 0;
}

/* ---- the feed ---- */

notify_feed *notify_feed_new(notify_sink_fn sink, void *ctx) {
    notify_feed *f = calloc(1, sizeof *f);
    if (f == NULL) return NULL;
    f->sink = sink;
    f->ctx = ctx;
    f->last_order_seq = UINT64_MAX;
    f->warning_ratio = 0.8;
    return f;
}

void notify_feed_free(notify_feed *f) {
    if (f == NULL) return;
    free(f->risk_band);
    free(f);
}

void notify_feed_set_channels(notify_feed *f, uint32_t channel_mask) {
    /* bands were not followed while nobody listened: start again from the next sight */
    if (f->channels == 0 && channel_mask != 0 && f->risk_band)
        memset(f->risk_band, BAND_UNKNOWN, f->cap_risk_band);
    f->channels = channel_mask;
}

void notify_feed_set_warning_ratio(notify_feed *f, double ratio) {
    f->warning_ratio = ratio;
}

static void order_note(notify_feed *f, const engine *e, const order *o, int64_t now_ns) {
    f->last_order_seq = o->seq;
    f->last_order_left = o->volume_left;
    static const notify_type by_status[] = {
        [ORDER_SUBMITTED] = NOTIFY_ORDER_ACCEPTED,
        [ORDER_PARTIALLY_FILLED] = NOTIFY_ORDER_PARTIALLY_FILLED,
        [ORDER_FILLED] = NOTIFY_ORDER_FILLED,
        [ORDER_CANCELLED] = NOTIFY_ORDER_CANCELED,
        [ORDER_REJECTED] = NOTIFY_ORDER_REJECTED,
    };
    if ((unsigned)o->status >= sizeof by_status / sizeof by_status[0]) return;
    notify_type type = by_status[o->status];
    if (!wanted(f, type)) return;
    const account *a = engine_account_of(e, o->account);
    const instrument *ins = engine_instrument_of(e, o->instrument);
    char exchange_id[QAEX_ID_LEN];
    engine_order_exchange_id(e, o, exchange_id, sizeof exchange_id);
    payload t;
    payload_begin(&t);
    jb_str(&t.b, "order_id", o->order_id);
    jb_str(&t.b, "exchange_order_id", exchange_id);
    jb_str(&t.b, "account_id", a->account_id);
    jb_str(&t.b, "instrument_id", ins->spec.instrument_id);
    jb_str(&t.b, "direction", direction_name(o->direction));
    jb_str(&t.b, "offset", offset_name(o->offset));
    jb_str(&t.b, "price_type", price_type_name(o->price_type));
    jb_real(&t.b, "limit_price", o->limit_price);
    jb_int(&t.b, "volume", o->volume_orign);
    jb_int(&t.b, "volume_left", o->volume_left);
    jb_int(&t.b, "volume_filled", o->volume_orign - o->volume_left);
    jb_str(&t.b, "status", order_status_name(o->status));
    jb_str(&t.b, "reason", o->last_msg);
    jb_int(&t.b, "timestamp", now_ns);
    emit(f, type, a->account_id, now_ns, &t);
}

static void trade_note(notify_feed *f, const engine *e, const trade *tr, int64_t now_ns) {
    if (!wanted(f, NOTIFY_TRADE_EXECUTED)) return;
    const account *a = engine_account_of(e, tr->account);
    const instrument *ins = engine_instrument_of(e, tr->instrument);
    char trade_id[32], exchange_id[QAEX_ID_LEN];
    order_format_seq('T', tr->seq, trade_id, sizeof trade_id);
    /* the order's exchange id as its own notifications, REST and the history spell it
     * ("IF2501-000000000003"), so a client can tie the fill to its order */
    engine_trade_exchange_order_id(e, tr, exchange_id, sizeof exchange_id);
    bool full = tr->order_seq == f->last_order_seq && f->last_order_left == 0;
    payload t;
    payload_begin(&t);
    jb_str(&t.b, "trade_id", trade_id);
    jb_str(&t.b, "order_id", tr->order_id);
    jb_str(&t.b, "exchange_order_id", exchange_id);
    jb_str(&t.b, "account_id", a->account_id);
    jb_str(&t.b, "instrument_id", ins->spec.instrument_id);
    jb_str(&t.b, "direction", direction_name(tr->direction));
    jb_str(&t.b, "offset", offset_name(tr->offset));
    jb_real(&t.b, "price", tr->price);
    jb_real(&t.b, "volume", (double)tr->volume);
    jb_real(&t.b, "commission", tr->commission);
    jb_real(&t.b, "close_profit", tr->close_profit);
    jb_str(&t.b, "fill_type", full ? "FULL" : "PARTIAL");
    jb_int(&t.b, "timestamp", tr->trade_ns);
    emit(f, NOTIFY_TRADE_EXECUTED, a->account_id, now_ns, &t);
}

static void position_note(notify_feed *f, const engine *e, const position *p, int64_t now_ns) {
    if (!wanted(f, NOTIFY_POSITION_UPDATE)) return;
    const account *a = engine_account_of(e, p->account);
    const instrument *ins = engine_instrument_of(e, p->instrument);
    position_view v;
    engine_position_view(e, p, &v);
    payload t;
    payload_begin(&t);
    jb_str(&t.b, "account_id", a->account_id);
    jb_str(&t.b, "instrument_id", ins->spec.instrument_id);
    jb_int(&t.b, "volume_long", v.volume_long);
    jb_int(&t.b, "volume_short", v.volume_short);
    jb_real(&t.b, "open_price_long", v.open_price_long);
    jb_real(&t.b, "open_price_short", v.open_price_short);
    jb_real(&t.b, "last_price", v.last_price);
    jb_real(&t.b, "float_profit", v.float_profit);
    jb_real(&t.b, "position_profit", v.position_profit);
    jb_real(&t.b, "margin", v.margin);
    jb_int(&t.b, "timestamp", now_ns);
    emit(f, NOTIFY_POSITION_UPDATE, a->account_id, now_ns, &t);
}

/* The risk payload shared by margin_call and risk_alert. */
static void risk_note(notify_feed *f, notify_type type, const account *a, double risk_ratio,
                      double balance, double margin, const char *message, int64_t now_ns) {
    if (!wanted(f, type)) return;
    payload t;
    payload_begin(&t);
    jb_str(&t.b, "account_id", a->account_id);
    jb_real(&t.b, "risk_ratio", risk_ratio);
    jb_str(&t.b, "risk_level", risk_level_name(risk_level_of(risk_ratio)));
    jb_real(&t.b, "balance", balance);
    jb_real(&t.b, "margin", margin);
    jb_str(&t.b, "message", message);
    jb_int(&t.b, "timestamp", now_ns);
    emit(f, type, a->account_id, now_ns, &t);
}

static uint8_t *band_of(notify_feed *f, uint32_t slot) {
    if (slot >= f->cap_risk_band) {
        uint32_t cap = f->cap_risk_band ? f->cap_risk_band : 1024;
        while (cap <= slot)
            cap *= 2;
        uint8_t *n = realloc(f->risk_band, cap);
        if (n == NULL) return NULL;
        memset(n + f->cap_risk_band, BAND_UNKNOWN, cap - f->cap_risk_band);
        f->risk_band = n;
        f->cap_risk_band = cap;
    }
    return &f->risk_band[slot];
}

/* Alerts fire when the ratio climbs into a higher band, not on every update inside it; a fall
 * re-arms them. The first sight of an account only records its band, so a restart does not
 * repeat an alert for a state that has not changed. */
static void check_band(notify_feed *f, const engine *e, const account *a, const account_view *v,
                       int64_t now_ns) {
    uint8_t *band = band_of(f, (uint32_t)(a - engine_account_at(e, 0)));
    if (band == NULL) return;
    double reject = engine_get_config(e)->risk_ratio_reject;
    uint8_t now_band = v->risk_ratio >= reject             ? BAND_REJECT
                       : v->risk_ratio >= f->warning_ratio ? BAND_WARNING
                                                           : BAND_CALM;
    uint8_t before = *band;
    *band = now_band;
    if (before == BAND_UNKNOWN || now_band <= before) return;
    char msg[160];
    if (now_band == BAND_REJECT) {
        snprintf(msg, sizeof msg,
                 "risk ratio %.4f reached %.4f: orders that raise it further are refused",
                 v->risk_ratio, reject);
        risk_note(f, NOTIFY_RISK_ALERT, a, v->risk_ratio, v->balance, v->margin, msg, now_ns);
    } else {
        snprintf(msg, sizeof msg, "margin call: risk ratio %.4f", v->risk_ratio);
        risk_note(f, NOTIFY_MARGIN_CALL, a, v->risk_ratio, v->balance, v->margin, msg, now_ns);
    }
}

static void account_note(notify_feed *f, const engine *e, const account *a, int64_t now_ns) {
    account_view v;
    engine_account_view(e, a, &v);
    if (wanted(f, NOTIFY_ACCOUNT_UPDATE)) {
        payload t;
        payload_begin(&t);
        jb_str(&t.b, "account_id", a->account_id);
        jb_real(&t.b, "balance", v.balance);
        jb_real(&t.b, "available", v.available);
        jb_real(&t.b, "margin", v.margin);
        jb_real(&t.b, "frozen_margin", a->frozen_margin);
        jb_real(&t.b, "position_profit", v.position_profit);
        jb_real(&t.b, "close_profit", a->close_profit);
        jb_real(&t.b, "commission", a->commission);
        jb_real(&t.b, "risk_ratio", v.risk_ratio);
        jb_int(&t.b, "timestamp", now_ns);
        emit(f, NOTIFY_ACCOUNT_UPDATE, a->account_id, now_ns, &t);
    }
    check_band(f, e, a, &v, now_ns);
}

static void instrument_note(notify_feed *f, const instrument *ins, int64_t now_ns) {
    notify_type type =
        ins->status == INSTRUMENT_SUSPENDED ? NOTIFY_MARKET_HALT : NOTIFY_SYSTEM_NOTICE;
    if (!wanted(f, type)) return;
    char msg[128];
    snprintf(msg, sizeof msg, "instrument %s is %s", ins->spec.instrument_id,
             instrument_status_name(ins->status));
    payload t;
    payload_begin(&t);
    jb_str(&t.b, "instrument_id", ins->spec.instrument_id);
    jb_str(&t.b, "status", instrument_status_name(ins->status));
    jb_str(&t.b, "message", msg);
    jb_int(&t.b, "timestamp", now_ns);
    emit(f, type, "", now_ns, &t);
}

static void settlement_note(notify_feed *f, const settlement_result *sr, int64_t now_ns) {
    if (!wanted(f, NOTIFY_TRADING_SESSION_END)) return;
    payload t;
    payload_begin(&t);
    jb_str(&t.b, "settlement_date", sr->settlement_date);
    jb_int(&t.b, "settled_accounts", sr->settled_accounts);
    jb_int(&t.b, "force_closed_count", sr->force_closed_count);
    jb_str(&t.b, "message", "daily settlement done");
    jb_int(&t.b, "timestamp", now_ns);
    emit(f, NOTIFY_TRADING_SESSION_END, "", now_ns, &t);
}

void notify_feed_event(notify_feed *f, const engine *e, const engine_event *ev, int64_t now_ns) {
    if (f == NULL || f->channels == 0) return;
    switch (ev->type) {
        case EV_ORDER:
            order_note(f, e, ev->order, now_ns);
            break;
        case EV_TRADE:
            trade_note(f, e, ev->trade, now_ns);
            break;
        case EV_POSITION:
            position_note(f, e, ev->position, now_ns);
            break;
        case EV_ACCOUNT:
            account_note(f, e, ev->account, now_ns);
            break;
        case EV_ACCOUNT_SETTLED: {
            const account_settlement *as = ev->settlement;
            if (!as->force_close) break;
            char msg[128];
            snprintf(msg, sizeof msg, "positions force-closed at settlement %s: risk ratio %.4f",
                     as->date, as->risk_ratio);
            risk_note(f, NOTIFY_RISK_ALERT, as->account, as->risk_ratio, as->balance, 0, msg,
                      now_ns);
            break;
        }
        case EV_INSTRUMENT:
            instrument_note(f, ev->instrument, now_ns);
            break;
        case EV_SETTLEMENT:
            settlement_note(f, ev->settlement_result, now_ns);
            break;
        default:
            break;
    }
}

void notify_feed_risk_scan(notify_feed *f, const engine *e, int64_t now_ns) {
    if (f == NULL || !(f->channels & NOTIFY_CHANNEL_BIT(NOTIFY_CH_RISK))) return;
    uint32_t n = engine_account_count(e);
    for (uint32_t i = 0; i < n; i++) {
        const account *a = engine_account_at(e, i);
        if (a == NULL || a->n_positions == 0) continue;
        account_view v;
        engine_account_view(e, a, &v);
        check_band(f, e, a, &v, now_ns);
    }
}

void notify_feed_rejected(notify_feed *f, const order_request *o, int code, const char *message,
                          int64_t now_ns) {
    if (f == NULL || !wanted(f, NOTIFY_ORDER_REJECTED) || o->account_id[0] == '\0') return;
    payload t;
    payload_begin(&t);
    jb_str(&t.b, "order_id", o->order_id);
    jb_str(&t.b, "account_id", o->account_id);
    jb_str(&t.b, "instrument_id", o->instrument_id);
    jb_str(&t.b, "direction", direction_name(o->direction));
    jb_str(&t.b, "offset", offset_name(o->offset));
    jb_real(&t.b, "limit_price", o->limit_price);
    jb_int(&t.b, "volume", o->volume);
    jb_int(&t.b, "code", code);
    jb_str(&t.b, "reason", message);
    jb_int(&t.b, "timestamp", now_ns);
    emit(f, NOTIFY_ORDER_REJECTED, o->account_id, now_ns, &t);
}
