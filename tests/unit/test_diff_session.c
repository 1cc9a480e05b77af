/* Unit tests for a DIFF session's owed state and client-message parsing (diff_session.h):
 * coalescing many patches into one rtn_data, notifies in an element of their own, bounded memory
 * for a client that never peeks, chart windows, and every aid with its errors. */
#include "check.h"
#include "proto/merge_patch.h"
#include "server/diff_session.h"

#include <jansson.h>
#include <stdlib.h>

static json_t *parse(const char *text) {
    json_t *j = json_loads(text, 0, NULL);
    if (j == NULL) fprintf(stderr, "bad test JSON: %s\n", text);
    return j;
}

static void merge_text(diff_session *d, const char *text) {
    json_t *p = parse(text);
    CHECK_INT(diff_session_merge(d, p), 0);
    json_decref(p);
}

/* Takes the owed rtn_data and returns its data array (a new reference). */
static json_t *take_data(diff_session *d) {
    size_t len = 0;
    char *text = diff_session_take(d, &len);
    CHECK(text != NULL);
    if (text == NULL) return NULL;
    CHECK_INT(len, strlen(text));
    json_t *msg = parse(text);
    free(text);
    CHECK_STR(json_string_value(json_object_get(msg, "aid")), "rtn_data");
    json_t *data = json_incref(json_object_get(msg, "data"));
    json_decref(msg);
    return data;
}

static void test_peek_and_coalescing(void) {
    diff_session d;
    CHECK_INT(diff_session_init(&d), 0);
    CHECK(!diff_session_ready(&d)); /* nothing owed, no peek */
    d.peek_waiting = true;
    CHECK(!diff_session_ready(&d)); /* a peek, nothing owed: held */
    merge_text(&d, "{\"quotes\":{\"X.A\":{\"last_price\":1,\"volume\":1}}}");
    merge_text(&d, "{\"quotes\":{\"X.A\":{\"last_price\":2}}}");
    merge_text(&d, "{\"quotes\":{\"X.B\":{\"last_price\":5}}}");
    CHECK(diff_session_ready(&d));
    json_t *data = take_data(&d);
    CHECK_INT(json_array_size(data), 1); /* three changes, one patch */
    json_t *expect = parse("{\"quotes\":{\"X.A\":{\"last_price\":2,\"volume\":1},"
                           "\"X.B\":{\"last_price\":5}}}");
    CHECK(json_equal(json_array_get(data, 0), expect));
    json_decref(expect);
    json_decref(data);
    CHECK(!d.peek_waiting);
    merge_text(&d, "{\"quotes\":{\"X.A\":{\"last_price\":3}}}");
    CHECK(!diff_session_ready(&d)); /* owed, but no peek: nothing goes out */
    diff_session_free(&d);
}

static void test_notify_apart(void) {
    diff_session d;
    CHECK_INT(diff_session_init(&d), 0);
    d.peek_waiting = true;
    merge_text(&d, "{\"trade\":{\"u\":{\"orders\":{\"o1\":{\"status\":\"FINISHED\"}}}},"
                   "\"notify\":{\"E1\":{\"type\":\"MESSAGE\",\"level\":\"ERROR\",\"code\":1001,"
                   "\"content\":\"no money\"}}}");
    CHECK_INT(diff_session_notify(&d, "INFO", 1000, "login ok"), 0);
    json_t *data = take_data(&d);
    CHECK_INT(json_array_size(data), 2);
    json_t *first = json_array_get(data, 0), *second = json_array_get(data, 1);
    CHECK(json_object_get(first, "notify") == NULL); /* clients drop an element with a notify */
    CHECK(json_object_get(first, "trade") != NULL);
    json_t *n = json_object_get(second, "notify");
    CHECK_INT(json_object_size(second), 1);
    CHECK_INT(json_object_size(n), 2);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(n, "E1"), "code")), 1001);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(n, "S1"), "code")), 1000);
    CHECK_STR(json_string_value(json_object_get(json_object_get(n, "S1"), "level")), "INFO");
    json_decref(data);
    /* a notify alone is owed too */
    d.peek_waiting = true;
    diff_session_notify(&d, "ERROR", 9002, "not logged in");
    CHECK(diff_session_ready(&d));
    data = take_data(&d);
    CHECK_INT(json_array_size(data), 1);
    CHECK(json_object_get(json_array_get(data, 0), "notify") != NULL);
    json_decref(data);
    diff_session_free(&d);
}

/* A client that never peeks: 10,000 changes to the same 100 orders keep the owed patch at the
 * size of the state, and the one rtn_data it finally gets is the latest state. */
static void test_never_peeking_is_bounded(void) {
    diff_session d;
    CHECK_INT(diff_session_init(&d), 0);
    snprintf(d.user_key, sizeof d.user_key, "alice");
    d.logged_in = true;
    size_t size_at_100 = 0;
    for (int i = 0; i < 10000; i++) {
        json_t *p = json_pack("{s:{s:{s:I, s:s}}}", "orders", "", "volume_left",
                              (json_int_t)(10000 - i), "status", "ALIVE");
        char key[16];
        snprintf(key, sizeof key, "o%d", i % 100);
        json_t *orders = json_object_get(p, "orders");
        json_object_set(orders, key, json_object_get(orders, ""));
        json_object_del(orders, "");
        CHECK_INT(diff_session_merge_trade(&d, p), 0);
        json_decref(p);
        if (i == 99) {
            char *t = json_dumps(d.owed, JSON_COMPACT);
            size_at_100 = strlen(t);
            free(t);
        }
    }
    char *t = json_dumps(d.owed, JSON_COMPACT);
    CHECK(size_at_100 > 0 && strlen(t) <= size_at_100); /* same keys: no growth */
    free(t);
    d.peek_waiting = true;
    json_t *data = take_data(&d);
    json_t *o7 = json_object_get(
        json_object_get(json_object_get(json_object_get(json_array_get(data, 0), "trade"), "alice"),
                        "orders"),
        "o7");
    CHECK_INT(json_integer_value(json_object_get(o7, "volume_left")), 10000 - 9907);
    json_decref(data);
    diff_session_free(&d);
}

static void test_trade_needs_login(void) {
    diff_session d;
    CHECK_INT(diff_session_init(&d), 0);
    json_t *p = parse("{\"accounts\":{\"CNY\":{\"balance\":1}}}");
    CHECK_INT(diff_session_merge_trade(&d, p), 0);
    CHECK_INT(json_object_size(d.owed), 0); /* not logged in: nothing of an account is owed */
    snprintf(d.user_key, sizeof d.user_key, "bob");
    d.login_pending = true; /* a login still being checked may be refused: nothing yet either */
    CHECK_INT(diff_session_merge_trade(&d, p), 0);
    CHECK_INT(json_object_size(d.owed), 0);
    d.login_pending = false;
    d.logged_in = true;
    CHECK_INT(diff_session_merge_trade(&d, p), 0);
    CHECK(json_object_get(json_object_get(d.owed, "trade"), "bob") != NULL);
    json_decref(p);
    diff_session_free(&d);
}

/* A switch to another account drops the old trade.<key> from the client: first in the next
 * rtn_data, with nothing still owed under it, and before whatever the new login brings. */
static void test_switch_forgets_the_old_account(void) {
    diff_session d;
    CHECK_INT(diff_session_init(&d), 0);
    merge_text(&d, "{\"trade\":{\"old\":{\"accounts\":{\"CNY\":{\"balance\":1}}}}}");
    CHECK_INT(diff_session_forget_trade(&d, "old"), 0);
    merge_text(&d, "{\"trade\":{\"new\":{\"accounts\":{\"CNY\":{\"balance\":2}}}}}");
    d.peek_waiting = true;
    CHECK(diff_session_ready(&d));
    json_t *data = take_data(&d);
    CHECK_INT(json_array_size(data), 2);
    json_t *drop = parse("{\"trade\":{\"old\":null}}");
    CHECK(json_equal(json_array_get(data, 0), drop));
    json_t *rest = parse("{\"trade\":{\"new\":{\"accounts\":{\"CNY\":{\"balance\":2}}}}}");
    CHECK(json_equal(json_array_get(data, 1), rest));
    json_decref(drop);
    json_decref(rest);
    json_decref(data);
    /* sent once: the next peek owes nothing */
    d.peek_waiting = true;
    CHECK(!diff_session_ready(&d));
    /* a forget alone is worth a message */
    CHECK_INT(diff_session_forget_trade(&d, "new"), 0);
    CHECK(diff_session_ready(&d));
    diff_session_free(&d);
}

/* What the client holds after every rtn_data equals what it would hold had each patch been sent
 * on its own, deletions included: a null (a deleted chart) must reach the client, and a member
 * deleted then set again before a peek must not keep the old member's fields. */
static void test_deletions_survive_coalescing(void) {
    static const char *const steps[][2] = {
        /* {patch, "peek" after it or NULL} */
        {"{\"charts\":{\"c1\":{\"left_id\":1,\"state\":{\"view_width\":5}},\"c2\":{\"x\":1}}}",
         "peek"},
        {"{\"charts\":{\"c1\":null}}", "peek"}, /* set_chart with view_width 0 */
        {"{\"charts\":{\"c2\":{\"y\":2}}}", NULL},
        {"{\"charts\":{\"c2\":null}}", "peek"}, /* owed c2.y, then c2 deleted */
        {"{\"charts\":{\"c3\":{\"a\":1,\"b\":{\"c\":1}}}}", "peek"},
        {"{\"charts\":{\"c3\":null}}", NULL},
        {"{\"charts\":{\"c3\":{\"b\":{\"d\":2}}}}", "peek"}, /* deleted, then made anew */
        {"{\"k\":5}", NULL},
        {"{\"k\":{\"e\":1}}", "peek"}, /* a scalar replaced by an object */
        {"{\"ins_list\":\"A\",\"quotes\":{\"A\":{\"p\":1,\"q\":2}}}", NULL},
        {"{\"quotes\":{\"A\":{\"q\":null}}}", NULL},
        {"{\"quotes\":{\"A\":{\"q\":3}}}", NULL},
        {"{\"quotes\":{\"A\":{\"p\":null}}}", "peek"},
    };
    diff_session d;
    CHECK_INT(diff_session_init(&d), 0);
    json_t *truth = json_object(), *client = json_object();
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        json_t *p = parse(steps[i][0]);
        json_t *next = merge_patch_apply(truth, p);
        json_decref(truth);
        truth = next;
        CHECK_INT(diff_session_merge(&d, p), 0);
        json_decref(p);
        if (steps[i][1] == NULL) continue;
        d.peek_waiting = true;
        json_t *data = take_data(&d);
        CHECK_INT(merge_patch_apply_all(&client, data), 0);
        json_decref(data);
        if (!json_equal(client, truth)) {
            char *c = json_dumps(client, JSON_COMPACT | JSON_SORT_KEYS);
            char *t = json_dumps(truth, JSON_COMPACT | JSON_SORT_KEYS);
            fprintf(stderr, "after step %zu the client holds %s, not %s\n", i, c, t);
            free(c);
            free(t);
            CHECK(false);
        }
    }
    json_decref(truth);
    json_decref(client);
    diff_session_free(&d);
}

static void test_klines_only_charted_periods(void) {
    diff_session d;
    CHECK_INT(diff_session_init(&d), 0);
    d.n_charts = 1;
    d.charts[0] = (diff_chart){.chart_id = "c1",
                               .instrument_id = "X.A",
                               .period = KLINE_1MIN,
                               .view_width = 3,
                               .left_id = -1,
                               .right_id = -1};
    CHECK(diff_session_charts(&d, "X.A"));
    CHECK(!diff_session_charts(&d, "X.B"));
    for (int id = 100; id < 105; id++) {
        json_t *p = json_pack("{s:{s:{s:{s:I}, s:{s:I}}}}", "klines", "X.A", "60000000000",
                              "last_id", (json_int_t)id, "3000000000", "last_id", (json_int_t)7);
        CHECK_INT(diff_session_merge_klines(&d, "X.A", p), 0);
        CHECK_INT(diff_session_merge_klines(&d, "X.B", p), 0); /* not charted: ignored */
        json_decref(p);
    }
    json_t *k = json_object_get(json_object_get(d.owed, "klines"), "X.A");
    CHECK(json_object_get(k, "60000000000") != NULL);
    CHECK(json_object_get(k, "3000000000") == NULL); /* a period nobody charts */
    CHECK(json_object_get(json_object_get(d.owed, "klines"), "X.B") == NULL);
    json_t *c1 = json_object_get(json_object_get(d.owed, "charts"), "c1");
    CHECK_INT(json_integer_value(json_object_get(c1, "right_id")), 104);
    CHECK_INT(json_integer_value(json_object_get(c1, "left_id")), 102); /* view_width 3 */
    CHECK_INT(d.charts[0].left_id, 102);
    diff_session_free(&d);
}

static void test_parse_messages(void) {
    diff_message m;
    const char *login = "{\"aid\":\"req_login\",\"bid\":\"qaexchange\",\"user_name\":\"alice\","
                        "\"password\":\"pw\"}";
    diff_parse(login, strlen(login), &m);
    CHECK_INT(m.aid, DIFF_AID_LOGIN);
    CHECK_STR(m.user_name, "alice");
    CHECK_STR(m.bid, "qaexchange");
    CHECK_STR(m.password, "pw");

    const char *peek = "{\"aid\":\"peek_message\"}";
    diff_parse(peek, strlen(peek), &m);
    CHECK_INT(m.aid, DIFF_AID_PEEK);

    const char *sub = "{\"aid\":\"subscribe_quote\",\"ins_list\":\"CFFEX.IF2501, CFFEX.IC2501,"
                      "CFFEX.IF2501,,\"}";
    diff_parse(sub, strlen(sub), &m);
    CHECK_INT(m.aid, DIFF_AID_SUBSCRIBE_QUOTE);
    CHECK_INT(m.n_ins, 2); /* spaces, empties and duplicates dropped */
    CHECK_STR(m.ins[0], "CFFEX.IF2501");
    CHECK_STR(m.ins[1], "CFFEX.IC2501");
    const char *unsub = "{\"aid\":\"subscribe_quote\",\"ins_list\":\"\"}";
    diff_parse(unsub, strlen(unsub), &m);
    CHECK_INT(m.aid, DIFF_AID_SUBSCRIBE_QUOTE);
    CHECK_INT(m.n_ins, 0);

    const char *chart = "{\"aid\":\"set_chart\",\"chart_id\":\"TQJS_kline_chart\",\"ins_list\":"
                        "\"CFFEX.IF2501\",\"duration\":60000000000,\"view_width\":500}";
    diff_parse(chart, strlen(chart), &m);
    CHECK_INT(m.aid, DIFF_AID_SET_CHART);
    CHECK_STR(m.chart.chart_id, "TQJS_kline_chart");
    CHECK_STR(m.chart.instrument_id, "CFFEX.IF2501");
    CHECK_INT(m.chart.period, KLINE_1MIN);
    CHECK_INT(m.chart.view_width, 500);
    const char *bad_dur = "{\"aid\":\"set_chart\",\"chart_id\":\"c\",\"ins_list\":\"X.A\","
                          "\"duration\":7000000000,\"view_width\":5}";
    diff_parse(bad_dur, strlen(bad_dur), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
    CHECK_INT(m.error_code, ERR_BAD_MESSAGE);
    CHECK_CONTAINS(m.error, "7000000000");
    const char *del = "{\"aid\":\"set_chart\",\"chart_id\":\"c\",\"ins_list\":\"X.A\","
                      "\"duration\":60000000000,\"view_width\":0}";
    diff_parse(del, strlen(del), &m);
    CHECK_INT(m.aid, DIFF_AID_SET_CHART);
    CHECK_INT(m.chart.view_width, 0);

    const char *ins = "{\"aid\":\"insert_order\",\"user_id\":\"alice\",\"order_id\":\"TQJS_1\","
                      "\"exchange_id\":\"CFFEX\",\"instrument_id\":\"IF2501\",\"direction\":"
                      "\"SELL\",\"offset\":\"CLOSETODAY\",\"volume\":3,\"price_type\":\"LIMIT\","
                      "\"limit_price\":3801.2,\"volume_condition\":\"ANY\",\"time_condition\":"
                      "\"GFD\"}";
    diff_parse(ins, strlen(ins), &m);
    CHECK_INT(m.aid, DIFF_AID_INSERT_ORDER);
    CHECK_STR(m.order.order_id, "TQJS_1");
    CHECK_STR(m.order.instrument_id, "CFFEX.IF2501");
    CHECK_INT(m.order.direction, DIR_SELL);
    CHECK_INT(m.order.offset, OFFSET_CLOSETODAY);
    CHECK_INT(m.order.volume, 3);
    CHECK_MONEY(m.order.limit_price, 3801.2);
    CHECK_INT(m.order.time_condition, TC_GFD);
    /* market orders carry limit_price null and default to IOC */
    const char *any = "{\"aid\":\"insert_order\",\"order_id\":\"TQJS_2\",\"exchange_id\":"
                      "\"CFFEX\",\"instrument_id\":\"IF2501\",\"direction\":\"BUY\",\"offset\":"
                      "\"OPEN\",\"volume\":1,\"price_type\":\"ANY\",\"limit_price\":null}";
    diff_parse(any, strlen(any), &m);
    CHECK_INT(m.aid, DIFF_AID_INSERT_ORDER);
    CHECK_INT(m.order.price_type, PRICE_ANY);
    CHECK_INT(m.order.time_condition, TC_IOC);
    const char *no_price = "{\"aid\":\"insert_order\",\"order_id\":\"TQJS_3\",\"instrument_id\":"
                           "\"CFFEX.IF2501\",\"direction\":\"BUY\",\"volume\":1}";
    diff_parse(no_price, strlen(no_price), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
    CHECK_INT(m.error_code, ERR_INVALID_ORDER);
    CHECK_CONTAINS(m.error, "limit_price");
    const char *bad_dir = "{\"aid\":\"insert_order\",\"order_id\":\"TQJS_4\",\"instrument_id\":"
                          "\"CFFEX.IF2501\",\"direction\":\"UP\",\"volume\":1,\"limit_price\":1}";
    diff_parse(bad_dir, strlen(bad_dir), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
    CHECK_CONTAINS(m.error, "UP");
    const char *frac = "{\"aid\":\"insert_order\",\"order_id\":\"TQJS_5\",\"instrument_id\":"
                       "\"CFFEX.IF2501\",\"direction\":\"BUY\",\"volume\":1.5,\"limit_price\":1}";
    diff_parse(frac, strlen(frac), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
    CHECK_CONTAINS(m.error, "1.5");
    CHECK_STR(m.order_id, "TQJS_5"); /* a refused order is still named: the client closes it */
    const char *no_id = "{\"aid\":\"insert_order\",\"instrument_id\":\"CFFEX.IF2501\","
                        "\"direction\":\"BUY\",\"volume\":1,\"limit_price\":1}";
    diff_parse(no_id, strlen(no_id), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
    CHECK_STR(m.order_id, "");

    const char *cancel = "{\"aid\":\"cancel_order\",\"user_id\":\"alice\",\"order_id\":\"TQJS_1\"}";
    diff_parse(cancel, strlen(cancel), &m);
    CHECK_INT(m.aid, DIFF_AID_CANCEL_ORDER);
    CHECK_STR(m.order_id, "TQJS_1");

    const char *transfer = "{\"aid\":\"req_transfer\",\"currency\":\"CNY\",\"amount\":-250.5}";
    diff_parse(transfer, strlen(transfer), &m);
    CHECK_INT(m.aid, DIFF_AID_TRANSFER);
    CHECK_MONEY(m.amount, -250.5);
    const char *zero = "{\"aid\":\"req_transfer\",\"amount\":0}";
    diff_parse(zero, strlen(zero), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
    CHECK_INT(m.error_code, ERR_DEPOSIT);

    const char *other = "{\"aid\":\"confirm_settlement\"}";
    diff_parse(other, strlen(other), &m);
    CHECK_INT(m.aid, DIFF_AID_IGNORED);
    CHECK_STR(m.aid_text, "confirm_settlement");

    const char *garbage = "{\"aid\":";
    diff_parse(garbage, strlen(garbage), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
    CHECK_INT(m.error_code, ERR_BAD_MESSAGE);
    const char *no_aid = "{\"type\":\"ping\"}";
    diff_parse(no_aid, strlen(no_aid), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
    CHECK_CONTAINS(m.error, "aid");
    const char *array = "[1,2]";
    diff_parse(array, strlen(array), &m);
    CHECK_INT(m.aid, DIFF_AID_BAD);
}

int main(void) {
    RUN_TEST(test_peek_and_coalescing);
    RUN_TEST(test_notify_apart);
    RUN_TEST(test_never_peeking_is_bounded);
    RUN_TEST(test_trade_needs_login);
    RUN_TEST(test_switch_forgets_the_old_account);
    RUN_TEST(test_deletions_survive_coalescing);
    RUN_TEST(test_klines_only_charted_periods);
    RUN_TEST(test_parse_messages);
    return CHECK_REPORT();
}
