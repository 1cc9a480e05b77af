/* The operator's JSON (see admin_codec.h). */
#include "proto/admin_codec.h"

#include "proto/codec.h"
#include "proto/json_builder.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *owner_of(const engine *e, const char *account_id) {
    const account *a = engine_account_find(e, account_id);
    return a ? a->user_id : "";
}

static bool date_in(const char *date, const char *from, const char *to) {
    return (from == NULL || from[0] == '\0' || strcmp(date, from) >= 0) &&
           (to == NULL || to[0] == '\0' || strcmp(date, to) <= 0);
}

/* The China-time date of an epoch-ns timestamp. */
static void china_date(int64_t ns, char out[QAEX_DATE_LEN]) {
    time_t secs = (time_t)(ns / 1000000000LL) + 8 * 3600;
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || strftime(out, QAEX_DATE_LEN, "%Y-%m-%d", &tm) == 0)
        out[0] = '\0';
}

static bool append(json_t *arr, json_t *v) {
    return v != NULL && json_array_append_new(arr, v) == 0;
}

json_t *admin_settlement(const settlement_result *sr, bool with_rows) {
    json_t *j = codec_settlement_result(sr);
    if (j == NULL || !with_rows) return j;
    json_t *rows = json_array();
    for (uint32_t i = 0; rows && i < sr->n_rows; i++) {
        const settlement_row *r = &sr->rows[i];
        json_builder b = jb_new();
        jb_str(&b, "account_id", r->account_id);
        jb_real(&b, "pre_balance", r->pre_balance);
        jb_real(&b, "balance", r->balance);
        jb_real(&b, "close_profit", r->close_profit);
        jb_real(&b, "position_profit", r->position_profit);
        jb_real(&b, "commission", r->commission);
        jb_real(&b, "risk_ratio", r->risk_ratio);
        jb_bool(&b, "force_close", r->force_close);
        if (!append(rows, jb_done(&b))) {
            json_decref(rows);
            rows = NULL;
        }
    }
    json_object_set_new(j, "accounts", rows ? rows : json_null());
    json_object_set_new(j, "detail_available", json_boolean(sr->rows != NULL));
    return j;
}

json_t *admin_settlement_history(const engine *e, const char *from, const char *to) {
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < engine_settlement_count(e); i++) {
        const settlement_result *sr = engine_settlement_at(e, i);
        if (!date_in(sr->settlement_date, from, to)) continue;
        if (!append(arr, codec_settlement_result(sr))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

static const char *level_name(risk_level r) {
    static const char *const names[] = {"low", "medium", "high", "critical"};
    return names[r];
}

typedef struct risk_item {
    const account *a;
    account_view v;
} risk_item;

static int riskiest_first(const void *x, const void *y) {
    double a = ((const risk_item *)x)->v.risk_ratio, b = ((const risk_item *)y)->v.risk_ratio;
    return a < b ? 1 : a > b ? -1 : 0;
}

json_t *admin_risk_accounts(const engine *e, const char *level, const char *owner) {
    uint32_t n = engine_account_count(e), k = 0;
    risk_item *items = malloc((n ? n : 1) * sizeof *items);
    if (items == NULL) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        const account *a = engine_account_at(e, i);
        if (owner && owner[0] && strcmp(a->user_id, owner) != 0 && strcmp(a->account_id, owner))
            continue;
        engine_account_view(e, a, &items[k].v);
        if (level && level[0] &&
            strcasecmp(level, level_name(risk_level_of(items[k].v.risk_ratio))))
            continue;
        items[k++].a = a;
    }
    qsort(items, k, sizeof *items, riskiest_first);
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < k; i++) {
        json_builder b = jb_new();
        jb_str(&b, "user_id", items[i].a->user_id);
        jb_str(&b, "account_id", items[i].a->account_id);
        jb_str(&b, "user_name", items[i].a->account_name);
        jb_real(&b, "balance", items[i].v.balance);
        jb_real(&b, "margin", items[i].v.margin);
        jb_real(&b, "available", items[i].v.available);
        jb_real(&b, "risk_ratio", items[i].v.risk_ratio);
        jb_str(&b, "level", level_name(risk_level_of(items[i].v.risk_ratio)));
        if (!append(arr, jb_done(&b))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(items);
    return arr;
}

static int64_t liquidation_count(const engine *e) {
    int64_t n = 0;
    for (uint32_t i = 0; i < engine_settlement_count(e); i++)
        n += engine_settlement_at(e, i)->force_closed_count;
    return n;
}

json_t *admin_margin_summary(const engine *e) {
    double balance = 0, margin = 0, available = 0, ratio_sum = 0;
    int64_t by_level[4] = {0};
    uint32_t n = engine_account_count(e);
    for (uint32_t i = 0; i < n; i++) {
        account_view v;
        engine_account_view(e, engine_account_at(e, i), &v);
        balance += v.balance;
        margin += v.margin;
        available += v.available;
        ratio_sum += v.risk_ratio;
        by_level[risk_level_of(v.risk_ratio)]++;
    }
    json_builder b = jb_new();
    jb_int(&b, "total_accounts", n);
    jb_real(&b, "total_balance", balance);
    jb_real(&b, "total_margin_used", margin);
    jb_real(&b, "total_available", available);
    jb_real(&b, "average_risk_ratio", n ? ratio_sum / n : 0);
    jb_int(&b, "low_risk_count", by_level[RISK_LOW]);
    jb_int(&b, "medium_risk_count", by_level[RISK_MEDIUM]);
    jb_int(&b, "high_risk_count", by_level[RISK_HIGH]);
    jb_int(&b, "critical_risk_count", by_level[RISK_CRITICAL]);
    jb_int(&b, "liquidation_count", liquidation_count(e));
    return jb_done(&b);
}

json_t *admin_liquidations(const engine *e, const char *from, const char *to) {
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < engine_settlement_count(e); i++) {
        const settlement_result *sr = engine_settlement_at(e, i);
        if (!date_in(sr->settlement_date, from, to)) continue;
        for (uint32_t k = 0; arr && k < sr->n_rows; k++) {
            const settlement_row *r = &sr->rows[k];
            if (!r->force_close) continue;
            json_builder b = jb_new();
            jb_str(&b, "account_id", r->account_id);
            jb_str(&b, "user_id", owner_of(e, r->account_id));
            jb_str(&b, "liquidation_date", sr->settlement_date);
            jb_real(&b, "pre_balance", r->pre_balance);
            jb_real(&b, "post_balance", r->balance);
            jb_real(&b, "loss", r->pre_balance - r->balance);
            jb_real(&b, "risk_ratio", r->risk_ratio);
            if (!append(arr, jb_done(&b))) {
                json_decref(arr);
                arr = NULL;
            }
        }
        /* days past the detail window still name who was liquidated */
        for (uint32_t k = 0; arr && sr->rows == NULL && k < sr->force_closed_count; k++) {
            json_builder b = jb_new();
            jb_str(&b, "account_id", sr->force_closed_accounts[k]);
            jb_str(&b, "user_id", owner_of(e, sr->force_closed_accounts[k]));
            jb_str(&b, "liquidation_date", sr->settlement_date);
            if (!append(arr, jb_done(&b))) {
                json_decref(arr);
                arr = NULL;
            }
        }
    }
    return arr;
}

json_t *admin_transactions(const engine *e, const char *who, const char *type, const char *from,
                           const char *to, int64_t limit) {
    json_t *arr = json_array();
    for (uint32_t i = engine_transfer_count(e); arr && i-- > 0;) {
        if (limit > 0 && (int64_t)json_array_size(arr) >= limit) break;
        const transfer_record *t = engine_transfer_at(e, i);
        const account *a = engine_account_at(e, t->account);
        if (a == NULL) continue;
        if (who && who[0] && strcmp(a->account_id, who) != 0 && strcmp(a->user_id, who) != 0)
            continue;
        const char *kind = t->is_deposit ? "deposit" : "withdraw";
        if (type && type[0] && strcasecmp(type, kind) != 0) continue;
        char day[QAEX_DATE_LEN];
        china_date(t->ts_ns, day);
        if (!date_in(day, from, to)) continue;
        json_builder b = jb_new();
        jb_str(&b, "transaction_id", t->txn_id);
        jb_str(&b, "account_id", a->account_id);
        jb_str(&b, "user_id", a->user_id);
        jb_str(&b, "transaction_type", kind);
        jb_real(&b, "amount", t->amount);
        jb_real(&b, "balance_before", t->balance_before);
        jb_real(&b, "balance_after", t->balance_after);
        jb_str(&b, "status", "completed");
        jb_str(&b, "date", day);
        jb_int(&b, "created_at", t->ts_ns / 1000000);
        if (!append(arr, jb_done(&b))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

json_t *monitor_accounts(const engine *e) {
    uint32_t n = engine_account_count(e);
    int64_t active = 0, frozen = 0;
    double balance = 0, margin = 0, available = 0;
    for (uint32_t i = 0; i < n; i++) {
        const account *a = engine_account_at(e, i);
        account_view v;
        engine_account_view(e, a, &v);
        balance += v.balance;
        margin += v.margin;
        available += v.available;
        frozen += a->frozen;
        bool holds = a->live_count > 0;
        for (uint32_t k = 0; !holds; k++) {
            const position *p = engine_account_position(e, a, k);
            if (p == NULL) break;
            holds = position_volume_long(p) + position_volume_short(p) > 0;
        }
        active += holds;
    }
    json_builder b = jb_new();
    jb_int(&b, "total_accounts", n);
    jb_int(&b, "active_accounts", active);
    jb_int(&b, "frozen_accounts", frozen);
    jb_int(&b, "total_users", engine_user_count(e));
    jb_real(&b, "total_balance", balance);
    jb_real(&b, "total_margin", margin);
    jb_real(&b, "total_available", available);
    return jb_done(&b);
}

json_t *monitor_orders(const engine *e) {
    int64_t by_status[5] = {0}, buy = 0, sell = 0, total = 0;
    for (uint32_t i = 0; i < engine_account_count(e); i++) {
        const account *a = engine_account_at(e, i);
        for (const order *o = engine_order_first(e, a); o; o = engine_order_next(e, o)) {
            total++;
            by_status[o->status]++;
            if (o->direction == DIR_BUY)
                buy++;
            else
                sell++;
        }
    }
    json_builder b = jb_new();
    jb_int(&b, "total_orders", total);
    jb_int(&b, "live_orders", by_status[ORDER_SUBMITTED] + by_status[ORDER_PARTIALLY_FILLED]);
    jb_int(&b, "submitted", by_status[ORDER_SUBMITTED]);
    jb_int(&b, "partially_filled", by_status[ORDER_PARTIALLY_FILLED]);
    jb_int(&b, "filled", by_status[ORDER_FILLED]);
    jb_int(&b, "cancelled", by_status[ORDER_CANCELLED]);
    jb_int(&b, "rejected", by_status[ORDER_REJECTED]);
    jb_int(&b, "buy_orders", buy);
    jb_int(&b, "sell_orders", sell);
    /* the pool the engine holds them in: a capacity that keeps doubling under load says
     * [engine] preallocate_orders is too small */
    engine_memory m;
    engine_get_memory(e, &m);
    jb_int(&b, "orders_in_memory", m.orders_in_use);
    jb_int(&b, "orders_capacity", m.orders_capacity);
    jb_int(&b, "order_index_capacity", m.order_index_capacity);
    /* the seed's names (admin API reference, GET /monitoring/orders), which its admin pages read */
    jb_int(&b, "pending_orders", by_status[ORDER_SUBMITTED] + by_status[ORDER_PARTIALLY_FILLED]);
    jb_int(&b, "filled_orders", by_status[ORDER_FILLED]);
    jb_int(&b, "cancelled_orders", by_status[ORDER_CANCELLED]);
    return jb_done(&b);
}

json_t *monitor_trades(const engine *e) {
    json_t *per = json_object();
    int64_t volume = 0, matches = 0;
    double turnover = 0;
    for (uint32_t i = 0; per && i < engine_instrument_count(e); i++) {
        const instrument *ins = engine_instrument_at(e, i);
        const market_stats *st = &ins->stats;
        volume += st->volume;
        turnover += st->amount;
        matches += (int64_t)market_trade_count(&ins->market);
        json_builder b = jb_new();
        jb_int(&b, "volume", st->volume);
        jb_real(&b, "turnover", st->amount);
        jb_int(&b, "open_interest", st->open_interest);
        json_object_set_new(per, ins->spec.instrument_id, jb_done(&b));
    }
    json_builder b = jb_new();
    jb_int(&b, "total_volume", volume);
    jb_real(&b, "total_turnover", turnover);
    jb_int(&b, "recent_matches", matches);
    engine_memory m;
    engine_get_memory(e, &m);
    jb_int(&b, "trades_in_memory", m.trades_in_use);
    jb_int(&b, "trades_capacity", m.trades_capacity);
    jb_str(&b, "trading_day", engine_trading_day(e));
    jb_put(&b, "instruments", per);
    return jb_done(&b);
}
