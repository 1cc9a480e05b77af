/* The history query thread (see query_worker.h). */
#include "server/query_worker.h"

#include "proto/codec.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUERY_QUEUE 256
#define WAIT_HISTORY_MS 5000

struct query_worker {
    history_feed *feed;
    void (*wake)(void *);
    void *wake_ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    query_job *todo[QUERY_QUEUE], *done[QUERY_QUEUE];
    unsigned todo_head, todo_count, done_head, done_count;
};

query_job *query_job_new(query_kind kind) {
    query_job *j = calloc(1, sizeof *j);
    if (j) j->kind = kind;
    return j;
}

void query_job_free(query_job *j) {
    if (j == NULL) return;
    free(j->text);
    free(j->body);
    free(j);
}

/* ---- results ---- */

static void set_body(query_job *j, int status, char *body) {
    free(j->body);
    j->status = status;
    j->body = body;
    j->len = body ? strlen(body) : 0;
}

static void set_json(query_job *j, int status, json_t *v) {
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(v);
    if (text == NULL) {
        text = strdup("{\"success\":false,\"data\":null,\"error\":{\"code\":5003,"
                      "\"message\":\"could not encode the result\"}}");
        status = 500;
    }
    set_body(j, status, text);
}

static void set_error(query_job *j, int code, const char *message) {
    int status = code == HISTORY_QERR_INVALID ? 400 : codec_http_status(code);
    set_json(j, status, codec_envelope_error(code, message));
}

/* The library's JSON text as the data of an envelope, without parsing it again. */
static void set_ok_text(query_job *j, char *data) {
    static const char head[] = "{\"success\":true,\"data\":", tail[] = ",\"error\":null}";
    size_t n = strlen(data);
    char *body = malloc(sizeof head - 1 + n + sizeof tail);
    if (body == NULL) {
        free(data);
        set_error(j, 5003, "out of memory");
        return;
    }
    memcpy(body, head, sizeof head - 1);
    memcpy(body + sizeof head - 1, data, n);
    memcpy(body + sizeof head - 1 + n, tail, sizeof tail);
    free(data);
    set_body(j, 200, body);
}

/* A finished query: its text as the body (JSON in an envelope; CSV and JSON lines as they are). */
static void finish(query_job *j, int rc, char *out, const history_query_error *err,
                   history_format fmt) {
    if (rc != 0) {
        free(out);
        set_error(j, err->code ? err->code : HISTORY_QERR_STORAGE, err->message);
        return;
    }
    if (fmt == HISTORY_FMT_CSV || fmt == HISTORY_FMT_JSONL) {
        j->content_type = fmt == HISTORY_FMT_CSV ? "text/csv" : "application/x-ndjson";
        set_body(j, 200, out);
        return;
    }
    set_ok_text(j, out);
}

/* {"columns":[...],"rows":[[...]]} -> [{column: value, ...}, ...] */
static json_t *rows_as_objects(const json_t *result) {
    const json_t *cols = json_object_get(result, "columns");
    const json_t *rows = json_object_get(result, "rows");
    json_t *arr = json_array();
    size_t i, k;
    const json_t *row;
    json_array_foreach(rows, i, row) {
        json_t *o = json_object();
        const json_t *name;
        json_array_foreach(cols, k, name) {
            if (json_is_string(name))
                json_object_set(o, json_string_value(name), json_array_get(row, k));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

/* A REAL column as a JSON real: the result text prints whole values as integers ("3800"),
 * where the engine's routes print the double they hold ("3800.0"). */
static json_t *real_of(const json_t *o, const char *key) {
    return json_real(json_number_value(json_object_get(o, key)));
}

static const char *str_of(const json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* A trade row in the shape GET /api/trades/user has always had (codec_trade). */
static json_t *trade_object(const json_t *r) {
    const char *ins = str_of(r, "instrument_id");
    const char *dot = strchr(ins, '.');
    char exchange[HISTORY_INSTRUMENT_LEN] = "";
    if (dot) snprintf(exchange, sizeof exchange, "%.*s", (int)(dot - ins), ins);
    direction d = DIR_BUY;
    offset o = OFFSET_OPEN;
    direction_parse(str_of(r, "direction"), &d);
    offset_parse(str_of(r, "offset"), &o);
    json_int_t ms = json_integer_value(json_object_get(r, "ts_ns")) / 1000000;
    const char *acc = str_of(r, "account_id");
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:O, s:o, s:o, s:I, "
        "s:I, s:b, s:b, s:i}",
        "trade_id", str_of(r, "trade_id"), "order_id", str_of(r, "order_id"), "exchange_order_id",
        str_of(r, "exchange_order_id"), "exchange_trade_id", str_of(r, "exchange_trade_id"),
        "account_id", acc, "user_id", acc, "instrument_id", ins, "exchange_id", exchange,
        "direction", str_of(r, "direction"), "offset", str_of(r, "offset"), "price",
        real_of(r, "price"), "volume", json_object_get(r, "volume"), "commission",
        real_of(r, "commission"), "close_profit", real_of(r, "close_profit"), "trade_date_time", ms,
        "timestamp", ms, "is_taker", json_integer_value(json_object_get(r, "is_taker")) != 0,
        "is_liquidation", json_integer_value(json_object_get(r, "is_liquidation")) != 0, "towards",
        towards_of(d, o));
}

static json_t *trades_of(const json_t *result) {
    json_t *rows = rows_as_objects(result), *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        json_array_append_new(out, trade_object(r));
    }
    json_decref(rows);
    return out;
}

/* Midnight (China time, as the trade blotter dates trades) of a YYYY-MM-DD date, epoch ms. */
static int64_t china_midnight_ms(const char *date, int add_days) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(date, "%d-%d-%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3) return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_mday += add_days;
    int64_t ms = ((int64_t)timegm(&tm) - 8 * 3600) * 1000;
    /* trades carry epoch nanoseconds: nothing lies past 2262 */
    return ms >= INT64_MAX / 1000000 ? INT64_MAX / 1000000 - 1 : ms < 1 ? 1 : ms;
}

/* Every trade of the account, newest first, as a structured query (values bound, never
 * spliced into SQL). */
static int account_trades(history_query_conn *c, const query_job *j, char **out,
                          history_query_error *err) {
    history_filter filters[2];
    size_t nf = 0;
    filters[nf++] = (history_filter){.column = "account_id",
                                     .op = HISTORY_OP_EQ,
                                     .value = {HISTORY_VAL_TEXT, 0, 0, j->account_id}};
    if (j->instrument_id[0])
        filters[nf++] = (history_filter){.column = "instrument_id",
                                         .op = HISTORY_OP_EQ,
                                         .value = {HISTORY_VAL_TEXT, 0, 0, j->instrument_id}};
    history_order_by newest[2] = {{"ts_ns", 1}, {"trade_id", 1}};
    history_structured_query q = {.table = "trades",
                                  .filters = filters,
                                  .n_filters = nf,
                                  .order_by = newest,
                                  .n_order_by = 2};
    history_query_limits lim = {.row_limit = HISTORY_MAX_ROW_LIMIT,
                                .time_limit_ms = j->lim.time_limit_ms};
    return history_structured(c, &q, &lim, out, NULL, err);
}

static void run_trades_page(history_query_conn *c, query_job *j) {
    history_query_error err = {0};
    /* checked before they become times: timegm would roll "2025-02-30" over into March */
    const char *bad = j->start_date[0] && !history_date_valid(j->start_date) ? "start_date"
                      : j->end_date[0] && !history_date_valid(j->end_date)   ? "end_date"
                                                                             : NULL;
    if (bad) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s '%s' is not a date (YYYY-MM-DD expected)", bad,
                 bad[0] == 's' ? j->start_date : j->end_date);
        set_error(j, HISTORY_QERR_INVALID, msg);
        return;
    }
    j->start_ms = j->start_date[0] ? china_midnight_ms(j->start_date, 0) : 0;
    j->end_ms = j->end_date[0] ? china_midnight_ms(j->end_date, 1) : 0;
    int64_t page = j->page > 0 ? j->page : 1, size = j->size > 0 ? j->size : 20;
    if (size > 1000) size = 1000;
    history_trades_page_query q = {.account_id = j->account_id,
                                   .instrument_id = j->instrument_id,
                                   .start_ms = j->start_ms,
                                   .end_ms = j->end_ms,
                                   .page = (long)page,
                                   .size = (long)size,
                                   .newest_first = 1};
    history_query_limits lim = {.time_limit_ms = j->lim.time_limit_ms};
    char *out = NULL;
    /* the page and every figure of the summary come from one read transaction: a trade
     * committed meanwhile is in all of them or in none */
    int rc = history_trades_page(c, &q, &lim, &out, &err);
    if (rc != 0) {
        free(out);
        set_error(j, err.code ? err.code : HISTORY_QERR_STORAGE, err.message);
        return;
    }
    json_t *res = json_loads(out, 0, NULL);
    free(out);
    json_t *data =
        json_pack("{s:o, s:I, s:I, s:I, s:{s:f, s:f, s:f}}", "trades", trades_of(res), "total",
                  json_integer_value(json_object_get(res, "total")), "page", (json_int_t)page,
                  "size", (json_int_t)size, "summary", "volume",
                  json_number_value(json_object_get(res, "total_volume")), "commission",
                  json_number_value(json_object_get(res, "total_commission")), "close_profit",
                  json_number_value(json_object_get(res, "total_close_profit")));
    json_decref(res);
    set_json(j, 200, codec_envelope_ok(data));
}

static void run_trades_all(history_query_conn *c, query_job *j) {
    history_query_error err = {0};
    char *out = NULL;
    if (account_trades(c, j, &out, &err) != 0) {
        free(out);
        set_error(j, err.code ? err.code : HISTORY_QERR_STORAGE, err.message);
        return;
    }
    json_t *res = json_loads(out, 0, NULL);
    free(out);
    set_json(j, 200, codec_envelope_ok(trades_of(res)));
    json_decref(res);
}

static void run_curve(history_query_conn *c, query_job *j) {
    history_query_error err = {0};
    char *out = NULL;
    int rc = history_equity_curve(c, j->account_id, j->start_date, j->end_date, j->per_day, &j->lim,
                                  &out, &err);
    if (rc != 0) {
        free(out);
        set_error(j, err.code ? err.code : HISTORY_QERR_STORAGE, err.message);
        return;
    }
    json_t *res = json_loads(out, 0, NULL);
    free(out);
    json_t *points = rows_as_objects(res);
    size_t i;
    json_t *p;
    static const char *const money[] = {"balance",         "available",    "margin",
                                        "position_profit", "close_profit", "commission",
                                        "risk_ratio"};
    json_array_foreach(points, i, p) { /* epoch ms beside the ns column, as other routes show */
        json_object_set_new(
            p, "timestamp",
            json_integer(json_integer_value(json_object_get(p, "ts_ns")) / 1000000));
        for (size_t k = 0; k < sizeof money / sizeof money[0]; k++)
            json_object_set_new(p, money[k], real_of(p, money[k]));
    }
    set_json(j, 200,
             codec_envelope_ok(json_pack("{s:s, s:s, s:I, s:o}", "account_id", j->account_id,
                                         "interval", j->per_day ? "day" : "snapshot", "count",
                                         (json_int_t)json_array_size(points), "points", points)));
    json_decref(res);
}

static void run(query_worker *w, history_query_conn *c, const history_query_error *open_err,
                query_job *j) {
    if (j->kind == QUERY_STATS) {
        char *text = history_feed_stats_json(w->feed);
        set_body(j, text ? 200 : 500, text);
        return;
    }
    if (c == NULL) {
        set_error(j, HISTORY_QERR_STORAGE, open_err->message);
        return;
    }
    if (j->wait_seq) history_feed_wait(w->feed, j->wait_seq, WAIT_HISTORY_MS);
    history_query_error err = {0};
    char *out = NULL;
    int rc;
    switch (j->kind) {
        case QUERY_SQL:
            rc = history_sql(c, j->text ? j->text : "", &j->lim, &out, NULL, &err);
            finish(j, rc, out, &err, j->lim.format);
            break;
        case QUERY_STRUCTURED: {
            /* "format" in the request overrides the limits' format: learn which one it is */
            json_t *req = json_loads(j->text ? j->text : "", 0, NULL);
            int fmt = history_format_parse(json_string_value(json_object_get(req, "format")));
            json_decref(req);
            if (fmt >= 0) j->lim.format = (history_format)fmt;
            rc = history_structured_json(c, j->text ? j->text : "", &j->lim, &out, NULL, &err);
            finish(j, rc, out, &err, j->lim.format);
            break;
        }
        case QUERY_TIMESERIES:
            rc = history_timeseries(c, j->instrument_id, j->granularity, j->start_ms, j->end_ms,
                                    &j->lim, &out, NULL, &err);
            finish(j, rc, out, &err, j->lim.format);
            break;
        case QUERY_TRADES_PAGE:
            run_trades_page(c, j);
            break;
        case QUERY_TRADES_ALL:
            run_trades_all(c, j);
            break;
        case QUERY_CURVE:
            run_curve(c, j);
            break;
        default:
            set_error(j, HISTORY_QERR_INVALID, "unknown query");
            break;
    }
}

static void *worker_main(void *arg) {
    query_worker *w = arg;
    history_query_error open_err = {0};
    history_query_conn *c = history_query_open(history_feed_db_path(w->feed), &open_err);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && (w->todo_count == 0 || w->done_count == QUERY_QUEUE))
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop) break;
        query_job *j = w->todo[w->todo_head];
        w->todo_head = (w->todo_head + 1) % QUERY_QUEUE;
        w->todo_count--;
        pthread_mutex_unlock(&w->mu);
        if (c == NULL) /* the file may have been created since */
            c = history_query_open(history_feed_db_path(w->feed), &open_err);
        run(w, c, &open_err, j);
        pthread_mutex_lock(&w->mu);
        w->done[(w->done_head + w->done_count) % QUERY_QUEUE] = j;
        w->done_count++;
        pthread_mutex_unlock(&w->mu);
        w->wake(w->wake_ctx);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    history_query_close(c);
    return NULL;
}

query_worker *query_worker_start(history_feed *feed, void (*wake)(void *), void *wake_ctx) {
    query_worker *w = calloc(1, sizeof *w);
    if (w == NULL) return NULL;
    w->feed = feed;
    w->wake = wake;
    w->wake_ctx = wake_ctx;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0 ||
        pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void query_worker_stop(query_worker *w) {
    if (w == NULL) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    for (unsigned i = 0; i < w->todo_count; i++)
        query_job_free(w->todo[(w->todo_head + i) % QUERY_QUEUE]);
    for (unsigned i = 0; i < w->done_count; i++)
        query_job_free(w->done[(w->done_head + i) % QUERY_QUEUE]);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

bool query_worker_submit(query_worker *w, query_job *j) {
    pthread_mutex_lock(&w->mu);
    bool ok = !w->stop && w->todo_count < QUERY_QUEUE;
    if (ok) {
        w->todo[(w->todo_head + w->todo_count) % QUERY_QUEUE] = j;
        w->todo_count++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    if (!ok) query_job_free(j);
    return ok;
}

query_job *query_worker_poll(query_worker *w) {
    pthread_mutex_lock(&w->mu);
    query_job *j = NULL;
    if (w->done_count > 0) {
        j = w->done[w->done_head];
        w->done_head = (w->done_head + 1) % QUERY_QUEUE;
        w->done_count--;
        pthread_cond_signal(&w->cv); /* room for a result the worker may hold */
    }
    pthread_mutex_unlock(&w->mu);
    return j;
}
