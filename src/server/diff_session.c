/* A DIFF session's owed state and its client messages (see diff_session.h). */
#include "server/diff_session.h"

#include "proto/codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int diff_session_init(diff_session *d) {
    memset(d, 0, sizeof *d);
    d->owed = json_object();
    d->notifies = json_object();
    d->forgotten = json_object();
    if (d->owed == NULL || d->notifies == NULL || d->forgotten == NULL) {
        diff_session_free(d);
        return -1;
    }
    return 0;
}

void diff_session_free(diff_session *d) {
    json_decref(d->owed);
    json_decref(d->notifies);
    json_decref(d->forgotten);
    d->owed = d->notifies = d->forgotten = NULL;
}

/* Folds patch into owed, so that the client applying `drops` then `owed` ends where applying
 * every patch folded so far, one by one, would have taken it. Applying one patch to another
 * (RFC 7386 itself) is not that: it would erase a null (a deletion the client must see) and
 * merge an object set anew into the old one the client still holds. So a null is kept in owed,
 * and a member that owed deletes or replaces with a scalar, and that a patch then sets to an
 * object, is deleted first through `drops` (the same tree of nulls, sent in an element before
 * owed). drops is NULL below a member drops already deletes: nothing under it survives anyway. */
static int compose(json_t *owed, json_t *drops, const json_t *patch) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)patch, key, v) {
        json_t *cur = json_object_get(owed, key);
        if (json_is_object(v) && json_is_object(cur)) {
            json_t *below = drops ? json_object_get(drops, key) : NULL;
            bool made = false;
            if (drops && below == NULL) {
                below = json_object();
                made = true;
                if (below == NULL || json_object_set_new(drops, key, below) != 0) return -1;
            }
            int rc = compose(cur, json_is_object(below) ? below : NULL, v);
            if (made && json_object_size(below) == 0) json_object_del(drops, key);
            if (rc != 0) return -1;
            continue;
        }
        if (json_is_object(v) && cur != NULL && drops != NULL &&
            json_object_set_new(drops, key, json_null()) != 0)
            return -1;
        json_t *copy = json_deep_copy(v);
        if (copy == NULL || json_object_set_new(owed, key, copy) != 0) return -1;
    }
    return 0;
}

int diff_session_merge(diff_session *d, const json_t *patch) {
    if (!json_is_object(patch)) return -1;
    const json_t *notify = json_object_get(patch, "notify");
    if (notify == NULL) return compose(d->owed, d->forgotten, patch);
    json_t *rest = json_copy((json_t *)patch); /* shallow: only the top level changes */
    if (rest == NULL) return -1;
    json_object_del(rest, "notify");
    int rc = compose(d->owed, d->forgotten, rest);
    json_decref(rest);
    if (rc == 0 && json_is_object(notify)) rc = compose(d->notifies, NULL, notify);
    return rc;
}

int diff_session_merge_trade(diff_session *d, const json_t *account_patch) {
    /* only an accepted login's account: a pending one may yet be refused */
    if (!d->logged_in) return 0;
    json_t *wrapped = json_pack("{s:{s:O}}", "trade", d->user_key, account_patch);
    if (wrapped == NULL) return -1;
    int rc = diff_session_merge(d, wrapped);
    json_decref(wrapped);
    return rc;
}

int diff_session_merge_klines(diff_session *d, const char *instrument_id, const json_t *patch) {
    const json_t *by_ins = json_object_get(json_object_get(patch, "klines"), instrument_id);
    if (!json_is_object(by_ins)) return 0;
    json_t *mine = json_object();
    if (mine == NULL) return -1;
    for (int i = 0; i < d->n_charts; i++) {
        const diff_chart *c = &d->charts[i];
        if (strcmp(c->instrument_id, instrument_id) != 0) continue;
        char key[32];
        snprintf(key, sizeof key, "%lld",
                 (long long)kline_period_seconds(c->period) * 1000000000LL);
        json_t *v = json_object_get(by_ins, key);
        if (v == NULL) continue;
        if (json_object_set(mine, key, v) != 0) {
            json_decref(mine);
            return -1;
        }
        json_int_t last = json_integer_value(json_object_get(v, "last_id"));
        if (!json_is_integer(json_object_get(v, "last_id")) || last <= c->right_id) continue;
        diff_chart *moved = &d->charts[i];
        moved->right_id = last;
        if (moved->left_id < 0) moved->left_id = last;
        if (moved->right_id - moved->left_id + 1 > moved->view_width)
            moved->left_id = moved->right_id - moved->view_width + 1;
        json_t *ids =
            json_pack("{s:{s:{s:I, s:I}}}", "charts", moved->chart_id, "left_id",
                      (json_int_t)moved->left_id, "right_id", (json_int_t)moved->right_id);
        int rc = ids ? diff_session_merge(d, ids) : -1;
        json_decref(ids);
        if (rc != 0) {
            json_decref(mine);
            return -1;
        }
    }
    int rc = 0;
    if (json_object_size(mine) > 0) {
        json_t *wrapped = json_pack("{s:{s:O}}", "klines", instrument_id, mine);
        rc = wrapped ? diff_session_merge(d, wrapped) : -1;
        json_decref(wrapped);
    }
    json_decref(mine);
    return rc;
}

int diff_session_notify(diff_session *d, const char *level, int code, const char *content) {
    char key[32];
    snprintf(key, sizeof key, "S%llu", (unsigned long long)++d->notify_seq);
    json_t *n = json_pack("{s:s, s:s, s:i, s:s}", "type", "MESSAGE", "level", level, "code", code,
                          "content", content);
    if (n == NULL || json_object_set_new(d->notifies, key, n) != 0) return -1;
    return 0;
}

int diff_session_forget_trade(diff_session *d, const char *user_key) {
    json_object_del(json_object_get(d->owed, "trade"), user_key);
    json_t *drops = json_object_get(d->forgotten, "trade");
    if (!json_is_object(drops)) {
        drops = json_object();
        if (drops == NULL || json_object_set_new(d->forgotten, "trade", drops) != 0) return -1;
    }
    return json_object_set_new(drops, user_key, json_null());
}

static bool nothing_owed(const diff_session *d) {
    return json_object_size(d->owed) == 0 && json_object_size(d->notifies) == 0 &&
           json_object_size(d->forgotten) == 0;
}

bool diff_session_idle(const diff_session *d) {
    return d->peek_waiting && nothing_owed(d);
}

bool diff_session_ready(const diff_session *d) {
    return d->peek_waiting && !nothing_owed(d);
}

char *diff_session_take(diff_session *d, size_t *len) {
    json_t *data = json_array();
    if (data == NULL) return NULL;
    /* a merge patch cannot both delete a member and set it anew: the deletions go first */
    if (json_object_size(d->forgotten) > 0) json_array_append(data, d->forgotten);
    if (json_object_size(d->owed) > 0) json_array_append(data, d->owed);
    /* a notify travels in an element of its own: clients drop an element holding one whole */
    if (json_object_size(d->notifies) > 0)
        json_array_append_new(data, json_pack("{s:O}", "notify", d->notifies));
    json_t *msg = json_pack("{s:s, s:o}", "aid", "rtn_data", "data", data);
    char *text = msg ? json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(msg);
    if (text == NULL) return NULL;
    json_t *owed = json_object(), *notifies = json_object(), *forgotten = json_object();
    if (owed == NULL || notifies == NULL || forgotten == NULL) {
        json_decref(owed);
        json_decref(notifies);
        json_decref(forgotten);
        free(text);
        return NULL;
    }
    json_decref(d->owed);
    json_decref(d->notifies);
    json_decref(d->forgotten);
    d->owed = owed;
    d->notifies = notifies;
    d->forgotten = forgotten;
    d->peek_waiting = false;
    *len = strlen(text);
    return text;
}

bool diff_session_quotes(const diff_session *d, const char *instrument_id) {
    for (int i = 0; i < d->n_quotes; i++)
        if (strcmp(d->quotes[i], instrument_id) == 0) return true;
    return false;
}

bool diff_session_charts(const diff_session *d, const char *instrument_id) {
    for (int i = 0; i < d->n_charts; i++)
        if (strcmp(d->charts[i].instrument_id, instrument_id) == 0) return true;
    return false;
}

/* ---- client messages ---- */

static void bad(diff_message *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad(diff_message *m, int code, const char *fmt, ...) {
    m->aid = DIFF_AID_BAD;
    m->error_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof m->error, fmt, ap);
    va_end(ap);
}

/* "A,B , C" into m->ins (no empties, no duplicates). */
static bool split_ins_list(const char *list, diff_message *m) {
    m->n_ins = 0;
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0) break;
        if (n >= QAEX_INSTRUMENT_ID_LEN) {
            char shown[QAEX_INSTRUMENT_ID_LEN + 8];
            snprintf(shown, sizeof shown, "%.*s...", QAEX_INSTRUMENT_ID_LEN - 1, p);
            bad(m, ERR_INSTRUMENT_NOT_FOUND, "instrument id too long in ins_list: %s", shown);
            return false;
        }
        char id[QAEX_INSTRUMENT_ID_LEN];
        memcpy(id, p, n);
        id[n] = '\0';
        bool dup = false;
        for (int i = 0; i < m->n_ins; i++)
            dup = dup || strcmp(m->ins[i], id) == 0;
        if (!dup) {
            if (m->n_ins == DIFF_MAX_QUOTES) {
                bad(m, ERR_BAD_MESSAGE, "ins_list names more than %d instruments", DIFF_MAX_QUOTES);
                return false;
            }
            memcpy(m->ins[m->n_ins++], id, n + 1);
        }
        p += n;
    }
    return true;
}

/* "CFFEX" + "IF2501" -> "CFFEX.IF2501"; an id that already has its exchange is kept. */
static bool full_instrument_id(const char *exchange, const char *ins, char *out, size_t cap) {
    int n = strchr(ins, '.') || exchange[0] == '\0' ? snprintf(out, cap, "%s", ins)
                                                    : snprintf(out, cap, "%s.%s", exchange, ins);
    return n > 0 && (size_t)n < cap;
}

static void parse_insert(const json_t *j, diff_message *m) {
    char msg[QAEX_MSG_LEN], exchange[16] = "", ins[QAEX_INSTRUMENT_ID_LEN];
    order_request *o = &m->order;
    int v;
    memset(o, 0, sizeof *o);
    if (codec_get_string(j, "order_id", o->order_id, sizeof o->order_id, true, msg, sizeof msg) !=
        CODEC_FIELD_OK) {
        o->order_id[0] = '\0';
        bad(m, ERR_INVALID_ORDER, "%s", msg);
        return;
    }
    /* known from here on even if the order is refused: the refusal closes it in the client */
    snprintf(m->order_id, sizeof m->order_id, "%s", o->order_id);
    if (codec_get_string(j, "exchange_id", exchange, sizeof exchange, false, msg, sizeof msg) ==
            CODEC_FIELD_ERROR ||
        codec_get_string(j, "instrument_id", ins, sizeof ins, true, msg, sizeof msg) !=
            CODEC_FIELD_OK ||
        codec_get_whole(j, "volume", &o->volume, true, msg, sizeof msg) != CODEC_FIELD_OK) {
        bad(m, ERR_INVALID_ORDER, "%s", msg);
        return;
    }
    if (!full_instrument_id(exchange, ins, o->instrument_id, sizeof o->instrument_id)) {
        bad(m, ERR_INSTRUMENT_NOT_FOUND, "instrument id too long: %s", ins);
        return;
    }
    if (codec_get_enum(j, "direction", codec_parse_direction, "BUY, SELL", &v, true, msg,
                       sizeof msg) != CODEC_FIELD_OK) {
        bad(m, ERR_INVALID_ORDER, "%s", msg);
        return;
    }
    o->direction = (direction)v;
    v = OFFSET_OPEN;
    if (codec_get_enum(j, "offset", codec_parse_offset, "OPEN, CLOSE, CLOSETODAY, CLOSEYESTERDAY",
                       &v, false, msg, sizeof msg) == CODEC_FIELD_ERROR) {
        bad(m, ERR_INVALID_ORDER, "%s", msg);
        return;
    }
    o->offset = (offset)v;
    v = PRICE_LIMIT;
    if (codec_get_enum(j, "price_type", codec_parse_price_type, "LIMIT, ANY", &v, false, msg,
                       sizeof msg) == CODEC_FIELD_ERROR) {
        bad(m, ERR_INVALID_ORDER, "%s", msg);
        return;
    }
    o->price_type = (price_type)v;
    v = o->price_type == PRICE_ANY ? TC_IOC : TC_GFD;
    if (codec_get_enum(j, "time_condition", codec_parse_time_condition, "GFD, IOC, GTC", &v, false,
                       msg, sizeof msg) == CODEC_FIELD_ERROR) {
        bad(m, ERR_INVALID_ORDER, "%s", msg);
        return;
    }
    o->time_condition = (time_condition)v;
    v = VC_ANY;
    if (codec_get_enum(j, "volume_condition", codec_parse_volume_condition, "ANY, ALL", &v, false,
                       msg, sizeof msg) == CODEC_FIELD_ERROR) {
        bad(m, ERR_INVALID_ORDER, "%s", msg);
        return;
    }
    o->volume_condition = (volume_condition)v;
    /* ANY orders arrive with limit_price null (a JavaScript NaN): no price is needed */
    const json_t *price = json_object_get(j, "limit_price");
    if (o->price_type == PRICE_LIMIT) {
        if (codec_get_number(j, "limit_price", &o->limit_price, true, msg, sizeof msg) !=
            CODEC_FIELD_OK) {
            bad(m, ERR_INVALID_ORDER, "%s", msg);
            return;
        }
    } else if (json_is_number(price)) {
        o->limit_price = json_number_value(price);
    }
    m->aid = DIFF_AID_INSERT_ORDER;
}

static void parse_chart(const json_t *j, diff_message *m) {
    char msg[QAEX_MSG_LEN], list[256];
    diff_chart *c = &m->chart;
    int64_t duration = 0;
    c->view_width = 500;
    if (codec_get_string(j, "chart_id", c->chart_id, sizeof c->chart_id, true, msg, sizeof msg) !=
            CODEC_FIELD_OK ||
        codec_get_string(j, "ins_list", list, sizeof list, false, msg, sizeof msg) ==
            CODEC_FIELD_ERROR ||
        codec_get_whole(j, "duration", &duration, false, msg, sizeof msg) == CODEC_FIELD_ERROR ||
        codec_get_whole(j, "view_width", &c->view_width, false, msg, sizeof msg) ==
            CODEC_FIELD_ERROR) {
        bad(m, ERR_BAD_MESSAGE, "%s", msg);
        return;
    }
    m->aid = DIFF_AID_SET_CHART;
    if (c->view_width <= 0 || list[0] == '\0') { /* a chart of no width is deleted */
        c->view_width = 0;
        return;
    }
    if (!split_ins_list(list, m)) return;
    if (m->n_ins != 1) {
        bad(m, ERR_BAD_MESSAGE, "set_chart takes one instrument, got \"%s\"", list);
        return;
    }
    snprintf(c->instrument_id, sizeof c->instrument_id, "%s", m->ins[0]);
    if (kline_period_from_duration_ns(duration, &c->period) != 0) {
        char shown[32];
        snprintf(shown, sizeof shown, "%lld", (long long)duration);
        bad(m, ERR_BAD_MESSAGE,
            "set_chart duration %s ns is no K-line period (3s, 1min, 5min, 15min, 30min, 60min, "
            "1 day)",
            shown);
        return;
    }
    if (c->view_width > 10000) c->view_width = 10000;
}

void diff_parse(const char *text, size_t len, diff_message *m) {
    /* a peek follows every rtn_data: the one message worth recognising without a parse */
    static const char peek[] = "{\"aid\":\"peek_message\"}";
    if (len == sizeof peek - 1 && memcmp(text, peek, len) == 0) {
        m->aid = DIFF_AID_PEEK;
        return;
    }
    memset(m, 0, sizeof *m);
    json_error_t err;
    json_t *j = json_loadb(text, len, 0, &err);
    char msg[QAEX_MSG_LEN];
    if (!json_is_object(j)) {
        bad(m, ERR_BAD_MESSAGE, "malformed DIFF message: %s", j ? "not an object" : err.text);
        json_decref(j);
        return;
    }
    if (codec_get_string(j, "aid", m->aid_text, sizeof m->aid_text, true, msg, sizeof msg) !=
        CODEC_FIELD_OK) {
        bad(m, ERR_BAD_MESSAGE, "%s", msg);
        json_decref(j);
        return;
    }
    const char *aid = m->aid_text;
    if (strcmp(aid, "peek_message") == 0) {
        m->aid = DIFF_AID_PEEK;
    } else if (strcmp(aid, "req_login") == 0) {
        if (codec_get_string(j, "user_name", m->user_name, sizeof m->user_name, true, msg,
                             sizeof msg) != CODEC_FIELD_OK ||
            codec_get_string(j, "bid", m->bid, sizeof m->bid, false, msg, sizeof msg) ==
                CODEC_FIELD_ERROR ||
            codec_get_string(j, "password", m->password, sizeof m->password, false, msg,
                             sizeof msg) == CODEC_FIELD_ERROR)
            bad(m, ERR_AUTH_FAILED, "%s", msg);
        else
            m->aid = DIFF_AID_LOGIN;
    } else if (strcmp(aid, "subscribe_quote") == 0) {
        char list[4096];
        if (codec_get_string(j, "ins_list", list, sizeof list, false, msg, sizeof msg) ==
            CODEC_FIELD_ERROR)
            bad(m, ERR_BAD_MESSAGE, "%s", msg);
        else if (split_ins_list(list, m))
            m->aid = DIFF_AID_SUBSCRIBE_QUOTE;
    } else if (strcmp(aid, "set_chart") == 0) {
        parse_chart(j, m);
    } else if (strcmp(aid, "insert_order") == 0) {
        parse_insert(j, m);
    } else if (strcmp(aid, "cancel_order") == 0) {
        if (codec_get_string(j, "order_id", m->order_id, sizeof m->order_id, true, msg,
                             sizeof msg) != CODEC_FIELD_OK)
            bad(m, ERR_ORDER_NOT_FOUND, "%s", msg);
        else
            m->aid = DIFF_AID_CANCEL_ORDER;
    } else if (strcmp(aid, "req_transfer") == 0) {
        if (codec_get_number(j, "amount", &m->amount, true, msg, sizeof msg) != CODEC_FIELD_OK)
            bad(m, ERR_DEPOSIT, "%s", msg);
        else if (m->amount == 0)
            bad(m, ERR_DEPOSIT, "transfer amount must not be 0");
        else
            m->aid = DIFF_AID_TRANSFER;
    } else {
        m->aid = DIFF_AID_IGNORED;
    }
    json_decref(j);
}
