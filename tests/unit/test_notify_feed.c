/* The notification feed (src/server/notify_feed.h): which engine events become which
 * notifications, for whom, with which payload (parsed back as JSON), the channel mask, refused
 * orders, broadcast notices, and margin calls raised by a risk scan after a price move. */
#include "check.h"
#include "engine_fixture.h"
#include "server/notify_feed.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NOTES 64

typedef struct captured {
    notify_type type;
    char topic[QAEX_ID_LEN];
    json_t *payload;
} captured;

static captured notes[MAX_NOTES];
static int n_notes;
static notify_feed *feed;

static void clear_notes(void) {
    for (int i = 0; i < n_notes; i++)
        json_decref(notes[i].payload);
    n_notes = 0;
}

static void sink(void *ctx, notify_note *note) {
    (void)ctx;
    if (n_notes < MAX_NOTES) {
        captured *c = &notes[n_notes++];
        c->type = note->type;
        snprintf(c->topic, sizeof c->topic, "%s", note->topic);
        c->payload = json_loadb(note->payload, note->len, 0, NULL);
        CHECK(c->payload != NULL); /* every payload is valid JSON */
    }
    free(note->payload);
}

static void on_event(void *ctx, const engine_event *ev) {
    notify_feed_event(feed, ctx, ev, fixture_clock_ns);
}

/* The i-th captured notification of `type` for `topic`; NULL when there is none. */
static const captured *find(notify_type type, const char *topic, int nth) {
    for (int i = 0; i < n_notes; i++)
        if (notes[i].type == type && strcmp(notes[i].topic, topic) == 0 && nth-- == 0)
            return &notes[i];
    return NULL;
}

static const char *pstr(const captured *c, const char *key) {
    return c ? json_string_value(json_object_get(c->payload, key)) : NULL;
}

static double pnum(const captured *c, const char *key) {
    return c ? json_number_value(json_object_get(c->payload, key)) : -1;
}

static engine *setup(uint32_t channels) {
    static const char *const accounts[] = {"buyer", "seller", "poor"};
    engine *e = fx_engine(accounts, 2, 1000000.0);
    fx_open_account(e, "poor", 100.0);
    feed = notify_feed_new(sink, NULL);
    notify_feed_set_channels(feed, channels);
    engine_set_event_sink(e, on_event, e);
    clear_notes();
    return e;
}

static void teardown(engine *e) {
    clear_notes();
    notify_feed_free(feed);
    feed = NULL;
    engine_destroy(e);
}

static void test_fill_notifications(void) {
    engine *e = setup(NOTIFY_CHANNELS_ALL);
    engine_result r;
    CHECK_INT(fx_order(e, "seller", "CFFEX.IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 3, &r), 0);
    const captured *acc = find(NOTIFY_ORDER_ACCEPTED, "seller", 0);
    CHECK_STR(pstr(acc, "status"), order_status_name(ORDER_SUBMITTED));
    CHECK_INT(pnum(acc, "volume_left"), 3);
    clear_notes();
    /* a client id with characters JSON must escape */
    CHECK_INT(fx_order_full(e, "buyer", "CFFEX.IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 2, PRICE_LIMIT,
                            TC_GFD, VC_ANY, "my\"id\\1", &r),
              0);
    const captured *filled = find(NOTIFY_ORDER_FILLED, "buyer", 0);
    CHECK_STR(pstr(filled, "order_id"), "my\"id\\1");
    CHECK_INT(pnum(filled, "volume_filled"), 2);
    CHECK_INT(pnum(filled, "volume_left"), 0);
    const captured *t = find(NOTIFY_TRADE_EXECUTED, "buyer", 0);
    CHECK_STR(pstr(t, "fill_type"), "FULL");
    CHECK_STR(pstr(t, "order_id"), "my\"id\\1");
    CHECK_STR(pstr(t, "direction"), "BUY");
    CHECK_MONEY(pnum(t, "price"), 100.0);
    CHECK_MONEY(pnum(t, "volume"), 2);
    CHECK_STR(pstr(t, "instrument_id"), "CFFEX.IX2401");
    /* the trade names its order by the exchange order id the order's own notifications (and
     * REST, and the history) give it, so a client can match the two */
    CHECK(pstr(filled, "exchange_order_id") != NULL);
    CHECK_STR(pstr(t, "exchange_order_id"), pstr(filled, "exchange_order_id"));
    /* the maker: partly filled, its trade PARTIAL */
    const captured *part = find(NOTIFY_ORDER_PARTIALLY_FILLED, "seller", 0);
    CHECK_INT(pnum(part, "volume_left"), 1);
    CHECK_STR(pstr(find(NOTIFY_TRADE_EXECUTED, "seller", 0), "fill_type"), "PARTIAL");
    CHECK_STR(pstr(find(NOTIFY_TRADE_EXECUTED, "seller", 0), "exchange_order_id"),
              pstr(part, "exchange_order_id"));
    /* positions and accounts of both sides, with the engine's figures */
    const captured *pos = find(NOTIFY_POSITION_UPDATE, "buyer", 0);
    CHECK_INT(pnum(pos, "volume_long"), 2);
    account_view v = fx_view(e, "buyer");
    const captured *au = find(NOTIFY_ACCOUNT_UPDATE, "buyer", 0);
    CHECK_MONEY(pnum(au, "balance"), v.balance);
    CHECK_MONEY(pnum(au, "margin"), v.margin);
    CHECK_MONEY(pnum(au, "available"), v.available);
    CHECK(find(NOTIFY_ACCOUNT_UPDATE, "seller", 0) != NULL);
    /* the cancel of the maker's last lot */
    clear_notes();
    const account *seller = engine_account_find(e, "seller");
    const order *live = engine_order_first(e, seller);
    CHECK(live != NULL);
    if (live) CHECK_INT(fx_cancel(e, "seller", live->order_id, &r), 0);
    CHECK_INT(pnum(find(NOTIFY_ORDER_CANCELED, "seller", 0), "volume_left"), 1);
    teardown(e);
}

static void test_channel_mask(void) {
    engine *e = setup(NOTIFY_CHANNEL_BIT(NOTIFY_CH_POSITION));
    engine_result r;
    CHECK_INT(fx_order(e, "seller", "CFFEX.IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "buyer", "CFFEX.IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK(n_notes > 0);
    for (int i = 0; i < n_notes; i++)
        CHECK_INT(notes[i].type, NOTIFY_POSITION_UPDATE);
    clear_notes();
    notify_feed_set_channels(feed, 0);
    CHECK_INT(fx_order(e, "seller", "CFFEX.IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK_INT(n_notes, 0);
    teardown(e);
}

static void test_rejected_and_broadcasts(void) {
    engine *e = setup(NOTIFY_CHANNELS_ALL);
    command c = fx_command(CMD_ORDER_INSERT);
    order_request *o = &c.u.order;
    snprintf(o->account_id, sizeof o->account_id, "poor");
    snprintf(o->instrument_id, sizeof o->instrument_id, "CFFEX.IX2401");
    o->direction = DIR_BUY;
    o->offset = OFFSET_OPEN;
    o->limit_price = 100.0;
    o->volume = 1;
    engine_result r;
    int rc = fx_apply(e, &c, &r);
    CHECK_INT(rc, ERR_INSUFFICIENT_FUNDS);
    CHECK_INT(n_notes, 0); /* a refused command raises no event */
    notify_feed_rejected(feed, o, rc, r.message, fixture_clock_ns);
    const captured *rej = find(NOTIFY_ORDER_REJECTED, "poor", 0);
    CHECK_INT(pnum(rej, "code"), ERR_INSUFFICIENT_FUNDS);
    CHECK_STR(pstr(rej, "reason"), r.message);
    clear_notes();
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_SUSPEND, "CFFEX.IX2401", &r), 0);
    const captured *halt = find(NOTIFY_MARKET_HALT, "", 0);
    CHECK_STR(pstr(halt, "instrument_id"), "CFFEX.IX2401");
    CHECK_STR(pstr(halt, "status"), instrument_status_name(INSTRUMENT_SUSPENDED));
    clear_notes();
    CHECK_INT(fx_instrument_cmd(e, CMD_INSTRUMENT_RESUME, "CFFEX.IX2401", &r), 0);
    CHECK(find(NOTIFY_SYSTEM_NOTICE, "", 0) != NULL);
    CHECK(find(NOTIFY_MARKET_HALT, "", 0) == NULL);
    teardown(e);
}

/* A short position loses as others trade higher: the holder's account raises no event, the scan
 * finds it in a higher band once, and not again while it stays there. */
static void test_margin_call_from_the_scan(void) {
    engine *e = setup(NOTIFY_CHANNELS_ALL);
    fx_open_account(e, "short", 4100.0); /* a lot margins 100 * 200 * 0.10 = 2,000 */
    fx_open_account(e, "x", 1000000.0);
    engine_result r;
    CHECK_INT(fx_order(e, "short", "CFFEX.IX2401", DIR_SELL, OFFSET_OPEN, 100.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "buyer", "CFFEX.IX2401", DIR_BUY, OFFSET_OPEN, 100.0, 1, &r), 0);
    notify_feed_risk_scan(feed, e, fixture_clock_ns);
    CHECK(find(NOTIFY_MARGIN_CALL, "short", 0) == NULL); /* ratio ~0.49 */
    /* trades at 109: balance 4,100 - 1,800 - fees = ~2,300, margin 2,000: ratio ~0.87 */
    CHECK_INT(fx_order(e, "seller", "CFFEX.IX2401", DIR_SELL, OFFSET_OPEN, 109.0, 1, &r), 0);
    CHECK_INT(fx_order(e, "x", "CFFEX.IX2401", DIR_BUY, OFFSET_OPEN, 109.0, 1, &r), 0);
    CHECK(find(NOTIFY_MARGIN_CALL, "short", 0) == NULL);
    notify_feed_risk_scan(feed, e, fixture_clock_ns);
    const captured *call = find(NOTIFY_MARGIN_CALL, "short", 0);
    account_view v = fx_view(e, "short");
    CHECK(v.risk_ratio >= 0.8 && v.risk_ratio < 0.95);
    CHECK_MONEY(pnum(call, "risk_ratio"), v.risk_ratio);
    CHECK_STR(pstr(call, "risk_level"), risk_level_name(RISK_HIGH));
    clear_notes();
    notify_feed_risk_scan(feed, e, fixture_clock_ns);
    CHECK_INT(n_notes, 0);
    teardown(e);
}

int main(void) {
    RUN_TEST(test_fill_notifications);
    RUN_TEST(test_channel_mask);
    RUN_TEST(test_rejected_and_broadcasts);
    RUN_TEST(test_margin_call_from_the_scan);
    return CHECK_REPORT();
}
