/* The notification broker (src/server/notify.h): types with their default priorities and
 * channels, the message JSON and the batch frame, the dedup window of exactly 10,000 ids,
 * per-session channel filters, P0 at once and P1–P3 batched (100 messages / 100 ms, P1 after
 * 2 ms), priority order with FIFO inside a priority, the backpressure tiers at their exact
 * boundaries, refcounts (one message shared by 1,000 sessions is freed once all are done), and
 * 1,000,000 random operations against a plain model (fixed-seed xorshift). */
#include "check.h"
#include "server/notify.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t xorshift64(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static uint32_t rnd(uint32_t n) {
    return (uint32_t)(xorshift64() % n);
}

/* A message of type t with id `id` and the given timestamp; priority -1 = the type's default. */
static notify_message *mk(notify_type t, const char *id, int priority, int64_t ts) {
    notify_message_init in = {.type = t,
                              .priority = priority,
                              .message_id = id,
                              .user_id = "user_01",
                              .source = "MatchingEngine",
                              .timestamp = ts,
                              .payload_json = "{\"k\":1}"};
    return notify_message_new(&in);
}

static notify_message *mk_n(notify_type t, long n, int priority) {
    char id[32];
    snprintf(id, sizeof id, "m-%ld", n);
    return mk(t, id, priority, n);
}

/* Publishes a fresh message and drops the creator's reference. */
static notify_result pub(notify_broker *b, notify_session *s, notify_type t, long n, int priority,
                         int64_t now) {
    notify_message *m = mk_n(t, n, priority);
    if (m == NULL) return NOTIFY_NOMEM;
    notify_result r = notify_publish(b, s, m, now);
    notify_message_release(m);
    return r;
}

static size_t drain(notify_broker *b, notify_session *s, int64_t now, int64_t *ts, size_t max) {
    notify_message *out[4096];
    if (max > 4096) max = 4096;
    size_t n = notify_ready(b, s, now, out, max);
    for (size_t i = 0; i < n; i++) {
        if (ts) ts[i] = out[i]->timestamp;
        notify_message_release(out[i]);
    }
    return n;
}

/* One message of each priority. */
static const notify_type P_TYPE[4] = {NOTIFY_RISK_ALERT, NOTIFY_ORDER_ACCEPTED,
                                      NOTIFY_ACCOUNT_UPDATE, NOTIFY_SYSTEM_NOTICE};

/* ---- types ---- */

static void test_types(void) {
    static const struct {
        notify_type t;
        const char *name, *str;
        int prio;
        notify_channel ch;
    } want[] = {
        {NOTIFY_ORDER_ACCEPTED, "OrderAccepted", "order_accepted", 1, NOTIFY_CH_TRADE},
        {NOTIFY_ORDER_REJECTED, "OrderRejected", "order_rejected", 0, NOTIFY_CH_TRADE},
        {NOTIFY_ORDER_PARTIALLY_FILLED, "OrderPartiallyFilled", "order_partially_filled", 1,
         NOTIFY_CH_TRADE},
        {NOTIFY_ORDER_FILLED, "OrderFilled", "order_filled", 1, NOTIFY_CH_TRADE},
        {NOTIFY_ORDER_CANCELED, "OrderCanceled", "order_canceled", 1, NOTIFY_CH_TRADE},
        {NOTIFY_ORDER_EXPIRED, "OrderExpired", "order_expired", 3, NOTIFY_CH_TRADE},
        {NOTIFY_TRADE_EXECUTED, "TradeExecuted", "trade_executed", 1, NOTIFY_CH_TRADE},
        {NOTIFY_TRADE_CANCELED, "TradeCanceled", "trade_canceled", 1, NOTIFY_CH_TRADE},
        {NOTIFY_ACCOUNT_OPEN, "AccountOpen", "account_open", 2, NOTIFY_CH_ACCOUNT},
        {NOTIFY_ACCOUNT_UPDATE, "AccountUpdate", "account_update", 2, NOTIFY_CH_ACCOUNT},
        {NOTIFY_POSITION_UPDATE, "PositionUpdate", "position_update", 2, NOTIFY_CH_POSITION},
        {NOTIFY_POSITION_PROFIT, "PositionProfit", "position_profit", 2, NOTIFY_CH_POSITION},
        {NOTIFY_RISK_ALERT, "RiskAlert", "risk_alert", 0, NOTIFY_CH_RISK},
        {NOTIFY_MARGIN_CALL, "MarginCall", "margin_call", 0, NOTIFY_CH_RISK},
        {NOTIFY_POSITION_LIMIT, "PositionLimit", "position_limit", 0, NOTIFY_CH_RISK},
        {NOTIFY_SYSTEM_NOTICE, "SystemNotice", "system_notice", 3, NOTIFY_CH_SYSTEM},
        {NOTIFY_TRADING_SESSION_START, "TradingSessionStart", "trading_session_start", 3,
         NOTIFY_CH_SYSTEM},
        {NOTIFY_TRADING_SESSION_END, "TradingSessionEnd", "trading_session_end", 3,
         NOTIFY_CH_SYSTEM},
        {NOTIFY_MARKET_HALT, "MarketHalt", "market_halt", 3, NOTIFY_CH_SYSTEM},
    };
    CHECK_INT(sizeof want / sizeof want[0], NOTIFY_TYPE_COUNT);
    CHECK_INT(NOTIFY_TYPE_COUNT, 19);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK_STR(notify_type_name(want[i].t), want[i].name);
        CHECK_STR(notify_type_str(want[i].t), want[i].str);
        CHECK_INT(notify_type_default_priority(want[i].t), want[i].prio);
        CHECK_INT(notify_type_channel(want[i].t), want[i].ch);
        CHECK_INT(notify_type_parse(want[i].name), want[i].t);
        CHECK_INT(notify_type_parse(want[i].str), want[i].t);
        notify_message *m = mk(want[i].t, "x", -1, 0);
        CHECK(m != NULL);
        if (m == NULL) continue;
        CHECK_INT(m->priority, want[i].prio);
        CHECK_INT(m->channel, want[i].ch);
        notify_message_release(m);
    }
    CHECK(notify_type_name(NOTIFY_TYPE_COUNT) == NULL);
    CHECK(notify_type_str((notify_type)-1) == NULL);
    CHECK_INT(notify_type_default_priority(NOTIFY_TYPE_COUNT), -1);
    CHECK_INT(notify_type_channel(NOTIFY_TYPE_COUNT), -1);
    CHECK_INT(notify_type_parse("Nope"), -1);
    CHECK_INT(notify_type_parse(NULL), -1);
    static const char *const ch[] = {"trade", "account", "position", "risk", "system"};
    for (int c = 0; c < NOTIFY_CHANNEL_COUNT; c++) {
        CHECK_STR(notify_channel_name((notify_channel)c), ch[c]);
        CHECK_INT(notify_channel_parse(ch[c]), c);
    }
    CHECK(notify_channel_name(NOTIFY_CHANNEL_COUNT) == NULL);
    CHECK_INT(notify_channel_parse("orderbook"), -1);
    CHECK_INT(NOTIFY_CHANNELS_ALL, 0x1f);
}

/* ---- messages and the wire format ---- */

static void test_message_json(void) {
    long live0 = notify_messages_live();
    notify_message_init in = {.type = NOTIFY_TRADE_EXECUTED,
                              .priority = -1,
                              .message_id = "550e8400-e29b-41d4-a716-446655440000",
                              .user_id = "user_01",
                              .source = "MatchingEngine",
                              .timestamp = 1700000000123456789LL,
                              .payload_json = "{\"trade_id\":\"T1\",\"price\":3800.5}",
                              .headroom = 16};
    notify_message *m = notify_message_new(&in);
    CHECK(m != NULL);
    if (m == NULL) return;
    CHECK_INT(notify_messages_live(), live0 + 1);
    size_t len = 0;
    const char *j = notify_message_json(m, &len);
    CHECK_STR(j, "{\"message_id\":\"550e8400-e29b-41d4-a716-446655440000\","
                 "\"message_type\":\"trade_executed\",\"user_id\":\"user_01\",\"priority\":1,"
                 "\"timestamp\":1700000000123456789,\"source\":\"MatchingEngine\","
                 "\"payload\":{\"trade_id\":\"T1\",\"price\":3800.5}}");
    CHECK_INT(len, strlen(j));
    CHECK_INT(m->headroom, 16);
    CHECK(j == m->storage + 16); /* writable headroom before the text */
    CHECK_STR(m->message_id, "550e8400-e29b-41d4-a716-446655440000");
    CHECK_STR(m->user_id, "user_01");
    CHECK_STR(m->source, "MatchingEngine");
    CHECK_INT(m->refs, 1);

    /* escaping, defaults, a priority override and a negative timestamp */
    notify_message_init e = {.type = NOTIFY_SYSTEM_NOTICE,
                             .priority = 9,
                             .message_id = "a\"b\\c",
                             .user_id = NULL,
                             .source = "line\nnext\x01",
                             .timestamp = -5,
                             .payload_json = NULL};
    notify_message *m2 = notify_message_new(&e);
    CHECK(m2 != NULL);
    if (m2 != NULL) {
        CHECK_STR(notify_message_json(m2, NULL),
                  "{\"message_id\":\"a\\\"b\\\\c\",\"message_type\":\"system_notice\","
                  "\"user_id\":\"\",\"priority\":3,\"timestamp\":-5,"
                  "\"source\":\"line\\nnext\\u0001\",\"payload\":{}}");
        CHECK_STR(m2->message_id, "a\"b\\c");
    }
    notify_message_init o = in;
    o.priority = 0;
    o.message_id = "o";
    notify_message *m3 = notify_message_new(&o);
    CHECK(m3 != NULL && m3->priority == 0);

    /* the batch frame */
    notify_message *batch[3] = {m, m2, m3};
    size_t blen = notify_batch_len(batch, 3);
    char *buf = malloc(blen + 1);
    CHECK(buf != NULL);
    if (buf != NULL && m2 != NULL && m3 != NULL) {
        CHECK_INT(notify_format_batch(batch, 3, buf, blen), 0); /* no room for the NUL */
        CHECK_INT(notify_format_batch(batch, 3, buf, blen + 1), blen);
        CHECK_INT(strlen(buf), blen);
        char want[4096];
        snprintf(want, sizeof want, "{\"type\":\"notifications\",\"messages\":[%s,%s,%s]}", m->json,
                 m2->json, m3->json);
        CHECK_STR(buf, want);
    }
    free(buf);
    char small[64];
    const char *empty = "{\"type\":\"notifications\",\"messages\":[]}";
    CHECK_INT(notify_format_batch(batch, 0, small, sizeof small), strlen(empty));
    CHECK_STR(small, empty);

    /* invalid inits */
    notify_message_init bad = in;
    bad.message_id = "";
    CHECK(notify_message_new(&bad) == NULL);
    bad.message_id = NULL;
    CHECK(notify_message_new(&bad) == NULL);
    char longid[NOTIFY_ID_MAX + 1];
    memset(longid, 'x', NOTIFY_ID_MAX);
    longid[NOTIFY_ID_MAX] = '\0';
    bad.message_id = longid;
    CHECK(notify_message_new(&bad) == NULL);
    longid[NOTIFY_ID_MAX - 1] = '\0'; /* 127 bytes: the longest accepted */
    notify_message *m4 = notify_message_new(&bad);
    CHECK(m4 != NULL);
    notify_message_release(m4);
    bad = in;
    bad.type = NOTIFY_TYPE_COUNT;
    CHECK(notify_message_new(&bad) == NULL);
    bad = in;
    bad.headroom = NOTIFY_HEADROOM_MAX + 1;
    CHECK(notify_message_new(&bad) == NULL);
    CHECK(notify_message_new(NULL) == NULL);

    CHECK(notify_message_retain(m) == m);
    CHECK_INT(m->refs, 2);
    notify_message_release(m);
    notify_message_release(m);
    notify_message_release(m2);
    notify_message_release(m3);
    notify_message_release(NULL);
    CHECK_INT(notify_messages_live(), live0);
}

static void test_config(void) {
    notify_config c;
    notify_config_default(&c);
    CHECK_INT(c.dedup_window, 10000);
    CHECK_INT(c.batch_size, 100);
    CHECK_INT(c.batch_interval_ms, 100);
    CHECK_INT(c.p1_delay_ms, 2);
    CHECK_INT(c.shed_p3_at, 500);
    CHECK_INT(c.shed_p2_at, 1000);
    CHECK_INT(c.shed_p1_at, 2000);
    CHECK_INT(c.p0_limit, 10000);
    notify_config bad = c;
    bad.dedup_window = 0;
    CHECK(notify_broker_new(&bad) == NULL);
    bad = c;
    bad.batch_size = 0;
    CHECK(notify_broker_new(&bad) == NULL);
    bad = c;
    bad.shed_p2_at = 400;
    CHECK(notify_broker_new(&bad) == NULL);
    notify_broker *b = notify_broker_new(NULL);
    CHECK(b != NULL);
    if (b) CHECK_INT(notify_broker_config(b)->dedup_window, 10000);
    notify_broker_free(b);
    notify_broker_free(NULL);
}

/* ---- dedup ---- */

static void test_dedup_window(void) {
    long live0 = notify_messages_live();
    notify_broker *b = notify_broker_new(NULL);
    notify_session *s = b ? notify_session_new(b) : NULL;
    CHECK(s != NULL);
    if (s == NULL) {
        notify_broker_free(b);
        return;
    }
    int64_t now = 0;
    /* 10,000 distinct ids fill the window */
    for (long i = 0; i < 10000; i++) {
        CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, i, -1, now), NOTIFY_QUEUED);
        if (i % 1000 == 999) drain(b, s, now, NULL, 4096);
    }
    drain(b, s, now, NULL, 4096);
    /* every one of them is now a duplicate: the oldest (m-0) and the newest (m-9999) */
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 0, -1, now), NOTIFY_DUPLICATE);
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 9999, -1, now), NOTIFY_DUPLICATE);
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 5000, -1, now), NOTIFY_DUPLICATE);
    CHECK_INT(notify_session_queued(s, -1), 0);
    /* the 10,001st id pushes m-0 out: m-0 is accepted again, m-1 is still remembered */
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 10000, -1, now), NOTIFY_QUEUED);
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 0, -1, now), NOTIFY_QUEUED);
    /* admitting m-0 again pushed m-1 out; m-2 is still inside */
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 2, -1, now), NOTIFY_DUPLICATE);
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 1, -1, now), NOTIFY_QUEUED);
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 10000, -1, now), NOTIFY_DUPLICATE);
    notify_stats st;
    notify_broker_stats(b, &st);
    CHECK_INT(st.published, 10003);
    CHECK_INT(st.deduplicated, 5);
    CHECK_INT(st.queued, 10003);

    /* one object fanned out to several sessions is one message, not a duplicate; a second
     * object with the same id is refused for every session */
    notify_session *s2 = notify_session_new(b);
    notify_message *m = mk(NOTIFY_ORDER_FILLED, "fan", -1, 0);
    notify_message *again = mk(NOTIFY_ORDER_FILLED, "fan", -1, 0);
    CHECK(s2 != NULL && m != NULL && again != NULL);
    if (s2 && m && again) {
        CHECK_INT(notify_publish(b, s, m, now), NOTIFY_QUEUED);
        CHECK_INT(notify_publish(b, s2, m, now), NOTIFY_QUEUED);
        CHECK_INT(notify_publish(b, s, again, now), NOTIFY_DUPLICATE);
        CHECK_INT(notify_publish(b, s2, again, now), NOTIFY_DUPLICATE);
        CHECK(notify_broker_admit(b, m));
        CHECK(!notify_broker_admit(b, again));
        notify_broker_stats(b, &st);
        CHECK_INT(st.published, 10004);
        CHECK_INT(st.deduplicated, 6); /* the object is counted once */
    }
    notify_message_release(m);
    notify_message_release(again);

    /* a message admitted by no session still enters the window */
    notify_message *lone = mk(NOTIFY_SYSTEM_NOTICE, "lone", -1, 0);
    notify_message *lone2 = mk(NOTIFY_SYSTEM_NOTICE, "lone", -1, 0);
    CHECK(lone && lone2);
    if (lone && lone2) {
        CHECK(notify_broker_admit(b, lone));
        CHECK_INT(notify_publish(b, s, lone2, now), NOTIFY_DUPLICATE);
    }
    notify_message_release(lone);
    notify_message_release(lone2);
    notify_broker_free(b); /* frees s and s2 with what they still hold */
    CHECK_INT(notify_messages_live(), live0);
}

/* A small window, every slot reused many times, against a brute-force list. */
static void test_dedup_small_window(void) {
    notify_config c;
    notify_config_default(&c);
    c.dedup_window = 7;
    notify_broker *b = notify_broker_new(&c);
    CHECK(b != NULL);
    if (b == NULL) return;
    long window[7];
    int count = 0, next = 0;
    for (int i = 0; i < 20000; i++) {
        long id = (long)rnd(20);
        bool in = false;
        for (int k = 0; k < count; k++)
            in |= window[k] == id;
        notify_message *m = mk_n(NOTIFY_SYSTEM_NOTICE, id, -1);
        CHECK(m != NULL);
        if (m == NULL) break;
        bool admitted = notify_broker_admit(b, m);
        CHECK_INT(admitted, !in);
        if (!in) {
            window[next] = id;
            next = (next + 1) % 7;
            if (count < 7) count++;
        }
        notify_message_release(m);
    }
    notify_broker_free(b);
}

/* ---- filters ---- */

static int queued_types(notify_broker *b, notify_session *s, long *serial, bool want[]) {
    int queued = 0;
    for (int t = 0; t < NOTIFY_TYPE_COUNT; t++) {
        notify_result r = pub(b, s, (notify_type)t, (*serial)++, -1, 0);
        CHECK(r == NOTIFY_QUEUED || r == NOTIFY_FILTERED);
        want[t] = r == NOTIFY_QUEUED;
        queued += want[t];
    }
    drain(b, s, 1000000, NULL, 4096);
    return queued;
}

static void test_filters(void) {
    notify_broker *b = notify_broker_new(NULL);
    notify_session *s = b ? notify_session_new(b) : NULL;
    CHECK(s != NULL);
    if (s == NULL) {
        notify_broker_free(b);
        return;
    }
    long serial = 0;
    bool got[NOTIFY_TYPE_COUNT];
    /* empty = all */
    CHECK_INT(notify_session_channels(s), 0);
    CHECK_INT(queued_types(b, s, &serial, got), NOTIFY_TYPE_COUNT);
    /* only risk */
    notify_session_subscribe(s, NOTIFY_CHANNEL_BIT(NOTIFY_CH_RISK));
    CHECK_INT(queued_types(b, s, &serial, got), 3);
    CHECK(got[NOTIFY_RISK_ALERT] && got[NOTIFY_MARGIN_CALL] && got[NOTIFY_POSITION_LIMIT]);
    CHECK(notify_session_wants(s, NOTIFY_CH_RISK));
    CHECK(!notify_session_wants(s, NOTIFY_CH_TRADE));
    /* risk + trade */
    notify_session_subscribe(s, NOTIFY_CHANNEL_BIT(NOTIFY_CH_TRADE));
    CHECK_INT(queued_types(b, s, &serial, got), 11);
    /* unsubscribe risk: trade only (the seed's trading terminal) */
    notify_session_unsubscribe(s, NOTIFY_CHANNEL_BIT(NOTIFY_CH_RISK));
    CHECK_INT(notify_session_channels(s), NOTIFY_CHANNEL_BIT(NOTIFY_CH_TRADE));
    CHECK_INT(queued_types(b, s, &serial, got), 8);
    CHECK(got[NOTIFY_ORDER_ACCEPTED] && got[NOTIFY_TRADE_EXECUTED] && !got[NOTIFY_ACCOUNT_UPDATE]);
    CHECK(!got[NOTIFY_POSITION_UPDATE] && !got[NOTIFY_RISK_ALERT]);
    /* unsubscribing the last channel leaves the empty set: everything again */
    notify_session_unsubscribe(s, NOTIFY_CHANNEL_BIT(NOTIFY_CH_TRADE));
    CHECK_INT(queued_types(b, s, &serial, got), NOTIFY_TYPE_COUNT);
    /* account + position, then unsubscribe_all */
    notify_session_subscribe(s, NOTIFY_CHANNEL_BIT(NOTIFY_CH_ACCOUNT) |
                                    NOTIFY_CHANNEL_BIT(NOTIFY_CH_POSITION) | 0x80000000u);
    CHECK_INT(notify_session_channels(s),
              NOTIFY_CHANNEL_BIT(NOTIFY_CH_ACCOUNT) | NOTIFY_CHANNEL_BIT(NOTIFY_CH_POSITION));
    CHECK_INT(queued_types(b, s, &serial, got), 4);
    notify_session_unsubscribe_all(s);
    CHECK_INT(queued_types(b, s, &serial, got), NOTIFY_TYPE_COUNT);
    /* the filter applies at publish time: queued messages stay when it changes */
    CHECK_INT(pub(b, s, NOTIFY_ACCOUNT_UPDATE, serial++, -1, 0), NOTIFY_QUEUED);
    notify_session_subscribe(s, NOTIFY_CHANNEL_BIT(NOTIFY_CH_RISK));
    CHECK_INT(drain(b, s, 1000, NULL, 10), 1);
    notify_session_stats ss;
    notify_session_stats_get(s, &ss);
    CHECK_INT(ss.filtered, 19 - 3 + 19 - 11 + 19 - 8 + 19 - 4);
    notify_stats st;
    notify_broker_stats(b, &st);
    CHECK_INT(st.filtered, ss.filtered);
    notify_broker_free(b);
}

/* ---- batching ---- */

static void test_p0_at_once_p2_waits(void) {
    notify_broker *b = notify_broker_new(NULL);
    notify_session *s = b ? notify_session_new(b) : NULL;
    CHECK(s != NULL);
    if (s == NULL) {
        notify_broker_free(b);
        return;
    }
    int64_t ts[4096];
    CHECK_INT(notify_next_deadline(s), NOTIFY_NO_DEADLINE);
    /* P2 at t=1000 waits for 100 ms */
    CHECK_INT(pub(b, s, NOTIFY_ACCOUNT_UPDATE, 1, -1, 1000), NOTIFY_QUEUED);
    CHECK_INT(notify_next_deadline(s), 1100);
    CHECK_INT(drain(b, s, 1000, ts, 100), 0);
    /* a P0 at t=1010 goes at once, alone */
    CHECK_INT(pub(b, s, NOTIFY_RISK_ALERT, 2, -1, 1010), NOTIFY_QUEUED);
    CHECK_INT(notify_next_deadline(s), NOTIFY_NOW);
    CHECK_INT(drain(b, s, 1010, ts, 100), 1);
    CHECK_INT(ts[0], 2);
    CHECK_INT(notify_next_deadline(s), 1100);
    CHECK_INT(drain(b, s, 1099, ts, 100), 0);
    CHECK_INT(drain(b, s, 1100, ts, 100), 1);
    CHECK_INT(ts[0], 1);
    CHECK_INT(notify_next_deadline(s), NOTIFY_NO_DEADLINE);

    /* 99 P2 wait; the 100th makes the batch full: all 100 go at once */
    for (long i = 0; i < 99; i++)
        CHECK_INT(pub(b, s, NOTIFY_POSITION_UPDATE, 100 + i, -1, 2000 + i / 10), NOTIFY_QUEUED);
    CHECK_INT(notify_next_deadline(s), 2100);
    CHECK_INT(drain(b, s, 2050, ts, 4096), 0);
    CHECK_INT(pub(b, s, NOTIFY_POSITION_UPDATE, 199, -1, 2051), NOTIFY_QUEUED);
    CHECK_INT(notify_next_deadline(s), NOTIFY_NOW);
    CHECK_INT(drain(b, s, 2051, ts, 4096), 100);
    for (int i = 0; i < 100; i++)
        CHECK_INT(ts[i], 100 + i);

    /* P3 waits 100 ms too; P1 waits 2 ms and takes the whole batch with it */
    CHECK_INT(pub(b, s, NOTIFY_SYSTEM_NOTICE, 300, -1, 3000), NOTIFY_QUEUED);
    CHECK_INT(pub(b, s, NOTIFY_ACCOUNT_OPEN, 301, -1, 3005), NOTIFY_QUEUED);
    CHECK_INT(notify_next_deadline(s), 3100);
    CHECK_INT(pub(b, s, NOTIFY_ORDER_ACCEPTED, 302, -1, 3010), NOTIFY_QUEUED);
    CHECK_INT(notify_next_deadline(s), 3012);
    CHECK_INT(drain(b, s, 3011, ts, 4096), 0);
    CHECK_INT(drain(b, s, 3012, ts, 4096), 3);
    CHECK_INT(ts[0], 302);
    CHECK_INT(ts[1], 301);
    CHECK_INT(ts[2], 300);

    /* a due batch cut short by max stays due */
    for (long i = 0; i < 10; i++)
        CHECK_INT(pub(b, s, NOTIFY_ACCOUNT_UPDATE, 400 + i, -1, 4000), NOTIFY_QUEUED);
    CHECK_INT(drain(b, s, 4100, ts, 4), 4);
    CHECK_INT(notify_next_deadline(s), NOTIFY_NOW);
    CHECK_INT(drain(b, s, 4100, ts, 4), 4);
    CHECK_INT(ts[0], 404);
    CHECK_INT(drain(b, s, 4100, ts, 4), 2);
    CHECK_INT(ts[1], 409);
    CHECK_INT(drain(b, s, 4100, ts, 0), 0);
    CHECK_INT(notify_next_deadline(s), NOTIFY_NO_DEADLINE);

    notify_session_stats ss;
    notify_session_stats_get(s, &ss);
    CHECK_INT(ss.queued, 115);
    CHECK_INT(ss.delivered, 115);
    notify_broker_free(b);
}

static void test_ordering(void) {
    notify_broker *b = notify_broker_new(NULL);
    notify_session *s = b ? notify_session_new(b) : NULL;
    CHECK(s != NULL);
    if (s == NULL) {
        notify_broker_free(b);
        return;
    }
    /* 40 messages, priorities cycling 3,1,2,0,2,... published in serial order */
    int prio_of[40];
    for (long i = 0; i < 40; i++) {
        int p = (int)((i * 7 + 3) % 4);
        prio_of[i] = p;
        CHECK_INT(pub(b, s, P_TYPE[p], i, -1, 0), NOTIFY_QUEUED);
    }
    int64_t ts[64];
    /* at t=0 only the P0s come, in publish order */
    size_t n = drain(b, s, 0, ts, 64);
    CHECK_INT(n, 10);
    for (size_t i = 0; i < n; i++) {
        CHECK_INT(prio_of[ts[i]], 0);
        if (i > 0) CHECK(ts[i] > ts[i - 1]);
    }
    /* at t=100 the batch: P1 then P2 then P3, each in publish order, fetched 7 at a time */
    int64_t all[64];
    size_t got = 0;
    for (;;) {
        size_t k = drain(b, s, 100, all + got, 7);
        if (k == 0) break;
        got += k;
    }
    CHECK_INT(got, 30);
    for (size_t i = 1; i < got; i++) {
        int pa = prio_of[all[i - 1]], pb = prio_of[all[i]];
        CHECK(pa < pb || (pa == pb && all[i - 1] < all[i]));
    }
    CHECK_INT(prio_of[all[0]], 1);
    CHECK_INT(prio_of[all[29]], 3);
    notify_broker_free(b);
}

/* ---- backpressure ---- */

static void test_backpressure_tiers(void) {
    notify_broker *b = notify_broker_new(NULL);
    notify_session *s = b ? notify_session_new(b) : NULL;
    CHECK(s != NULL);
    if (s == NULL) {
        notify_broker_free(b);
        return;
    }
    long id = 0;
    /* P3 is accepted while the backlog is 0..499: exactly 500 */
    int ok = 0;
    while (pub(b, s, NOTIFY_SYSTEM_NOTICE, id++, -1, 0) == NOTIFY_QUEUED)
        ok++;
    CHECK_INT(ok, 500);
    CHECK_INT(notify_session_backlog(s), 500);
    /* P2 from 500 to 999: 500 more; P3 keeps being dropped */
    ok = 0;
    while (pub(b, s, NOTIFY_ACCOUNT_UPDATE, id++, -1, 0) == NOTIFY_QUEUED) {
        ok++;
        CHECK_INT(pub(b, s, NOTIFY_SYSTEM_NOTICE, id++, -1, 0), NOTIFY_DROPPED);
    }
    CHECK_INT(ok, 500);
    CHECK_INT(notify_session_backlog(s), 1000);
    /* P1 from 1000 to 1999: 1000 more; P2 and P3 are dropped */
    ok = 0;
    while (pub(b, s, NOTIFY_ORDER_FILLED, id++, -1, 0) == NOTIFY_QUEUED) {
        ok++;
        if (ok % 100 == 0) {
            CHECK_INT(pub(b, s, NOTIFY_POSITION_UPDATE, id++, -1, 0), NOTIFY_DROPPED);
            CHECK_INT(pub(b, s, NOTIFY_MARKET_HALT, id++, -1, 0), NOTIFY_DROPPED);
        }
    }
    CHECK_INT(ok, 1000);
    CHECK_INT(notify_session_backlog(s), 2000);
    /* at 2000 only P0 */
    CHECK_INT(pub(b, s, NOTIFY_TRADE_EXECUTED, id++, -1, 0), NOTIFY_DROPPED);
    CHECK_INT(pub(b, s, NOTIFY_ACCOUNT_OPEN, id++, -1, 0), NOTIFY_DROPPED);
    CHECK_INT(pub(b, s, NOTIFY_TRADING_SESSION_END, id++, -1, 0), NOTIFY_DROPPED);
    for (int i = 0; i < 50; i++)
        CHECK_INT(pub(b, s, NOTIFY_MARGIN_CALL, id++, -1, 0), NOTIFY_QUEUED);
    CHECK_INT(notify_session_backlog(s), 2050);
    notify_session_stats ss;
    notify_session_stats_get(s, &ss);
    CHECK_INT(ss.dropped[0], 0);
    CHECK_INT(ss.dropped[1], 2);   /* the 1001st P1 and the one at 2000 */
    CHECK_INT(ss.dropped[2], 12);  /* the 501st, 10 while at 1000+, 1 at 2000 */
    CHECK_INT(ss.dropped[3], 512); /* the 501st, 500 between 500 and 1000, 10, 1 */
    CHECK_INT(ss.backlog_max, 2050);
    CHECK_INT(ss.queued, 2050);
    notify_stats st;
    notify_broker_stats(b, &st);
    CHECK_INT(st.dropped[1], 2);
    CHECK_INT(st.dropped[2], 12);
    CHECK_INT(st.dropped[3], 512);
    CHECK_INT(st.backlog_max, 2050);
    CHECK(!notify_session_overflowed(s));

    /* the boundaries exactly, with the caller's external backlog: 499 accepts everything, 500
     * drops P3, 999 accepts P2, 1000 drops P2, 1999 accepts P1, 2000 drops P1 */
    notify_session *e = notify_session_new(b);
    CHECK(e != NULL);
    if (e != NULL) {
        static const struct {
            size_t backlog;
            bool ok[4];
        } tiers[] = {
            {0, {1, 1, 1, 1}},    {499, {1, 1, 1, 1}},  {500, {1, 1, 1, 0}},  {999, {1, 1, 1, 0}},
            {1000, {1, 1, 0, 0}}, {1999, {1, 1, 0, 0}}, {2000, {1, 0, 0, 0}}, {5000, {1, 0, 0, 0}},
        };
        for (size_t i = 0; i < sizeof tiers / sizeof tiers[0]; i++) {
            for (int p = 0; p < 4; p++) {
                notify_session_set_external_backlog(e, tiers[i].backlog);
                CHECK_INT(notify_session_backlog(e), tiers[i].backlog);
                notify_result r = pub(b, e, P_TYPE[p], id++, -1, 0);
                if (r != (tiers[i].ok[p] ? NOTIFY_QUEUED : NOTIFY_DROPPED))
                    fprintf(stderr, "backlog %zu, P%d: result %d\n", tiers[i].backlog, p, r);
                CHECK_INT(r, tiers[i].ok[p] ? NOTIFY_QUEUED : NOTIFY_DROPPED);
                notify_session_set_external_backlog(e, 0);
                drain(b, e, 1000000, NULL, 4096);
            }
        }
        /* 499 external + 1 queued = 500: the next P3 goes */
        notify_session_set_external_backlog(e, 499);
        CHECK_INT(pub(b, e, NOTIFY_SYSTEM_NOTICE, id++, -1, 0), NOTIFY_QUEUED);
        CHECK_INT(pub(b, e, NOTIFY_SYSTEM_NOTICE, id++, -1, 0), NOTIFY_DROPPED);
        CHECK_INT(pub(b, e, NOTIFY_ACCOUNT_UPDATE, id++, -1, 0), NOTIFY_QUEUED);
        notify_session_stats_get(e, &ss);
        CHECK_INT(ss.dropped[0], 0);
        CHECK_INT(ss.dropped[1], 2);
        CHECK_INT(ss.dropped[2], 4);
        CHECK_INT(ss.dropped[3], 7);
    }

    /* draining brings the tiers back: after the P0s and the batch leave, P3 is accepted (the
     * batch is full, so it is due at once, after the P0s) */
    CHECK_INT(drain(b, s, 0, NULL, 50), 50);
    CHECK_INT(notify_session_backlog(s), 2000);
    CHECK_INT(pub(b, s, NOTIFY_SYSTEM_NOTICE, id++, -1, 0), NOTIFY_DROPPED);
    CHECK_INT(drain(b, s, 0, NULL, 4096), 2000);
    CHECK_INT(pub(b, s, NOTIFY_SYSTEM_NOTICE, id++, -1, 0), NOTIFY_QUEUED);
    notify_broker_free(b);
}

static void test_p0_limit(void) {
    notify_config c;
    notify_config_default(&c);
    c.p0_limit = 5;
    notify_broker *b = notify_broker_new(&c);
    notify_session *s = b ? notify_session_new(b) : NULL;
    CHECK(s != NULL);
    if (s == NULL) {
        notify_broker_free(b);
        return;
    }
    for (long i = 0; i < 5; i++)
        CHECK_INT(pub(b, s, NOTIFY_ORDER_REJECTED, i, -1, 0), NOTIFY_QUEUED);
    CHECK(!notify_session_overflowed(s));
    CHECK_INT(pub(b, s, NOTIFY_ORDER_REJECTED, 5, -1, 0), NOTIFY_DROPPED);
    CHECK_INT(pub(b, s, NOTIFY_ORDER_REJECTED, 6, -1, 0), NOTIFY_DROPPED);
    CHECK(notify_session_overflowed(s));
    notify_stats st;
    notify_broker_stats(b, &st);
    CHECK_INT(st.dropped[0], 2);
    CHECK_INT(st.overflowed, 1);
    CHECK_INT(drain(b, s, 0, NULL, 100), 5);
    CHECK_INT(pub(b, s, NOTIFY_ORDER_REJECTED, 7, -1, 0), NOTIFY_QUEUED);
    notify_broker_free(b);
}

/* ---- refcounts ---- */

static void test_refcounts_shared(void) {
    long live0 = notify_messages_live();
    notify_broker *b = notify_broker_new(NULL);
    CHECK(b != NULL);
    if (b == NULL) return;
    enum { N = 1000 };
    static notify_session *ss[N];
    for (int i = 0; i < N; i++) {
        ss[i] = notify_session_new(b);
        CHECK(ss[i] != NULL);
        if (ss[i] == NULL) return;
    }
    notify_message *m = mk(NOTIFY_ORDER_FILLED, "shared", -1, 7);
    notify_message *p0 = mk(NOTIFY_MARGIN_CALL, "shared-p0", -1, 8);
    CHECK(m != NULL && p0 != NULL);
    if (m == NULL || p0 == NULL) return;
    for (int i = 0; i < N; i++) {
        CHECK_INT(notify_publish(b, ss[i], m, 0), NOTIFY_QUEUED);
        CHECK_INT(notify_publish(b, ss[i], p0, 0), NOTIFY_QUEUED);
    }
    CHECK_INT(m->refs, N + 1);
    CHECK_INT(notify_messages_live(), live0 + 2);
    notify_message_release(m); /* the producer is done; the sessions keep it */
    notify_message_release(p0);
    CHECK_INT(m->refs, N);
    CHECK_INT(notify_messages_live(), live0 + 2);
    notify_stats st;
    notify_broker_stats(b, &st);
    CHECK_INT(st.sessions, N);
    CHECK_INT(st.published, 2);
    CHECK_INT(st.queued, 2 * N);
    /* each session writes and releases; the last one frees the message */
    for (int i = 0; i < N; i++) {
        notify_message *out[4];
        size_t n = notify_ready(b, ss[i], 10, out, 4);
        CHECK_INT(n, 2);
        if (n != 2) continue;
        CHECK(out[0] == p0 && out[1] == m);
        CHECK_INT(m->refs, N - i);
        notify_message_release(out[0]);
        if (i < N - 1) {
            notify_message_release(out[1]);
            CHECK_INT(m->refs, N - 1 - i);
            CHECK_INT(notify_messages_live(), live0 + (i < N - 1 ? 2 : 1));
        } else {
            CHECK_INT(m->refs, 1);
            CHECK_INT(notify_messages_live(), live0 + 1);
            notify_message_release(out[1]);
        }
    }
    CHECK_INT(notify_messages_live(), live0);

    /* freeing sessions releases what they still hold */
    notify_message *q = mk(NOTIFY_SYSTEM_NOTICE, "queued", -1, 0);
    CHECK(q != NULL);
    if (q == NULL) return;
    for (int i = 0; i < N; i++)
        notify_publish(b, ss[i], q, 0);
    notify_message_release(q);
    for (int i = 0; i < N / 2; i++)
        notify_session_free(ss[i]);
    CHECK_INT(q->refs, N / 2);
    notify_broker_stats(b, &st);
    CHECK_INT(st.sessions, N / 2);
    notify_broker_free(b); /* the other half */
    CHECK_INT(notify_messages_live(), live0);
}

/* ---- 1,000,000 random operations against a model ---- */

#define MS 12          /* sessions */
#define ID_SPACE 40000 /* message ids drawn from m-0 .. m-39999 */
#define POOL 8         /* recent message objects kept for re-publishing */
#define MODEL_WINDOW 10000
#define MODEL_P0_LIMIT 24

typedef struct mitem {
    long serial;
    int64_t since;
} mitem;

typedef struct mq {
    mitem *v;
    size_t head, len, cap;
} mq;

typedef struct msess {
    notify_session *s;
    mq q[4];
    uint32_t channels;
    size_t external, released;
    bool overflowed;
    uint64_t backlog_max;
} msess;

typedef struct mmsg {
    notify_message *m; /* NULL: empty pool slot */
    long id;
    bool checked, dup;
} mmsg;

static struct {
    msess s[MS];
    mmsg pool[POOL];
    long ring[MODEL_WINDOW];
    int ring_count, ring_next;
    bool in_window[ID_SPACE];
    notify_stats st;
    int64_t now;
} M;

static void mq_push(mq *q, long serial, int64_t since) {
    if (q->head > 0 && q->head + q->len == q->cap) {
        memmove(q->v, q->v + q->head, q->len * sizeof *q->v);
        q->head = 0;
    }
    if (q->len == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 64;
        q->v = realloc(q->v, q->cap * sizeof *q->v);
        if (q->v == NULL) abort();
    }
    q->v[q->head + q->len++] = (mitem){serial, since};
}

static long mq_pop(mq *q) {
    long s = q->v[q->head].serial;
    q->head++;
    if (--q->len == 0) q->head = 0;
    return s;
}

static size_t m_queued(const msess *ms) {
    return ms->q[0].len + ms->q[1].len + ms->q[2].len + ms->q[3].len;
}

static int64_t m_age_deadline(const msess *ms) {
    int64_t d = NOTIFY_NO_DEADLINE;
    for (int p = 1; p < 4; p++) {
        if (ms->q[p].len == 0) continue;
        int64_t t = ms->q[p].v[ms->q[p].head].since + (p == 1 ? 2 : 100);
        if (t < d) d = t;
    }
    return d;
}

static int64_t m_deadline(const msess *ms) {
    size_t waiting = ms->q[1].len + ms->q[2].len + ms->q[3].len;
    if (ms->q[0].len > 0 || ms->released > 0 || waiting >= 100) return NOTIFY_NOW;
    return m_age_deadline(ms);
}

static notify_result m_publish(msess *ms, mmsg *mm) {
    if (!mm->checked) {
        mm->checked = true;
        mm->dup = M.in_window[mm->id];
        if (mm->dup) {
            M.st.deduplicated++;
        } else {
            if (M.ring_count == MODEL_WINDOW)
                M.in_window[M.ring[M.ring_next]] = false;
            else
                M.ring_count++;
            M.ring[M.ring_next] = mm->id;
            M.ring_next = (M.ring_next + 1) % MODEL_WINDOW;
            M.in_window[mm->id] = true;
            M.st.published++;
        }
    }
    if (mm->dup) return NOTIFY_DUPLICATE;
    int ch = mm->m->channel, p = mm->m->priority;
    if (ms->channels != 0 && !(ms->channels & (1u << ch))) {
        M.st.filtered++;
        return NOTIFY_FILTERED;
    }
    size_t backlog = m_queued(ms) + ms->external;
    bool drop;
    if (p == 0)
        drop = ms->q[0].len >= MODEL_P0_LIMIT;
    else
        drop = backlog >= 2000 || (backlog >= 1000 && p >= 2) || (backlog >= 500 && p == 3);
    if (drop) {
        M.st.dropped[p]++;
        if (p == 0 && !ms->overflowed) {
            ms->overflowed = true;
            M.st.overflowed++;
        }
        return NOTIFY_DROPPED;
    }
    mq_push(&ms->q[p], (long)mm->m->timestamp, M.now);
    M.st.queued++;
    backlog++;
    if (backlog > ms->backlog_max) ms->backlog_max = backlog;
    if (backlog > M.st.backlog_max) M.st.backlog_max = backlog;
    return NOTIFY_QUEUED;
}

static size_t m_ready(msess *ms, long *out, size_t max) {
    size_t n = 0;
    while (n < max && ms->q[0].len > 0)
        out[n++] = mq_pop(&ms->q[0]);
    size_t waiting = ms->q[1].len + ms->q[2].len + ms->q[3].len;
    if (waiting > 0 && (waiting >= 100 || m_age_deadline(ms) <= M.now)) ms->released = waiting;
    for (int p = 1; p < 4; p++)
        while (n < max && ms->released > 0 && ms->q[p].len > 0) {
            out[n++] = mq_pop(&ms->q[p]);
            ms->released--;
        }
    if (ms->q[1].len + ms->q[2].len + ms->q[3].len == 0) ms->released = 0;
    M.st.delivered += n;
    return n;
}

static void m_session_reset(notify_broker *b, msess *ms) {
    notify_session_free(ms->s);
    for (int p = 0; p < 4; p++) {
        free(ms->q[p].v);
        ms->q[p] = (mq){0};
    }
    ms->channels = 0;
    ms->external = ms->released = 0;
    ms->overflowed = false;
    ms->backlog_max = 0;
    ms->s = b ? notify_session_new(b) : NULL;
}

static void test_random_model(void) {
    long live0 = notify_messages_live();
    notify_config c;
    notify_config_default(&c);
    c.p0_limit = MODEL_P0_LIMIT;
    notify_broker *b = notify_broker_new(&c);
    CHECK(b != NULL);
    if (b == NULL) return;
    memset(&M, 0, sizeof M);
    M.now = 1000;
    for (int i = 0; i < MS; i++) {
        M.s[i].s = notify_session_new(b);
        if (M.s[i].s == NULL) abort();
    }
    rng_state = 0x2545F4914F6CDD1DULL;
    long serial = 0;
    int failures = 0;
    uint64_t results[6] = {0};
    static notify_message *out[512];
    static long want[512];
    for (long op = 0; op < 1000000 && failures < 20; op++) {
        /* phases: a quarter of the time sessions hardly read, so real backlogs build up */
        bool slow = (op / 50000) % 4 == 3;
        uint32_t r = rnd(100);
        int si = (int)rnd(MS);
        msess *ms = &M.s[si];
        int before_fail = check_failures_in_test;
        if (r < 35) { /* a new message, fanned out to some sessions */
            int slot = (int)rnd(POOL);
            mmsg *mm = &M.pool[slot];
            notify_message_release(mm->m);
            notify_type t = (notify_type)rnd(NOTIFY_TYPE_COUNT);
            int prio = rnd(10) == 0 ? (int)rnd(4) : -1;
            mm->id = (long)rnd(ID_SPACE);
            char id[32];
            snprintf(id, sizeof id, "m-%ld", mm->id);
            mm->m = mk(t, id, prio, serial++);
            if (mm->m == NULL) abort();
            mm->checked = mm->dup = false;
            uint32_t fan = rnd(3) == 0 ? 0xffffu : (uint32_t)xorshift64();
            for (int k = 0; k < MS; k++) {
                if (!(fan & (1u << k))) continue;
                notify_result got = notify_publish(b, M.s[k].s, mm->m, M.now);
                notify_result exp = m_publish(&M.s[k], mm);
                CHECK_INT(got, exp);
                results[got]++;
            }
        } else if (r < 45) { /* an older object published to one more session */
            mmsg *mm = &M.pool[rnd(POOL)];
            if (mm->m != NULL) {
                notify_result got = notify_publish(b, ms->s, mm->m, M.now);
                CHECK_INT(got, m_publish(ms, mm));
                results[got]++;
            }
        } else if (r < (slow ? 48u : 72u)) { /* the socket is writable */
            size_t max = rnd(4) == 0 ? rnd(8) : 1 + rnd(512);
            size_t n = notify_ready(b, ms->s, M.now, out, max);
            size_t wn = m_ready(ms, want, max);
            CHECK_INT(n, wn);
            for (size_t i = 0; i < n && i < wn; i++) {
                CHECK_INT(out[i]->timestamp, want[i]);
                CHECK(out[i]->refs >= 1);
            }
            for (size_t i = 0; i < n; i++)
                notify_message_release(out[i]);
        } else if (r < 84) { /* time passes */
            M.now += rnd(8) == 0 ? rnd(150) : rnd(6);
        } else if (r < 90) { /* filters */
            uint32_t mask = 1u << rnd(NOTIFY_CHANNEL_COUNT);
            uint32_t k = rnd(5);
            if (k < 2) {
                notify_session_subscribe(ms->s, mask);
                ms->channels |= mask;
            } else if (k < 4) {
                notify_session_unsubscribe(ms->s, mask);
                ms->channels &= ~mask;
            } else {
                notify_session_unsubscribe_all(ms->s);
                ms->channels = 0;
            }
        } else if (r < 97) { /* the caller's own backlog */
            static const size_t near[] = {0, 0, 0, 498, 499, 500, 999, 1000, 1999, 2000};
            size_t e = rnd(2) ? near[rnd(10)] : rnd(2600);
            notify_session_set_external_backlog(ms->s, e);
            ms->external = e;
        } else if (r < 99) {       /* nothing to check but the deadline */
        } else if (rnd(10) == 0) { /* a session goes away and a new one comes */
            m_session_reset(b, ms);
            if (ms->s == NULL) abort();
        }
        CHECK_INT(notify_next_deadline(ms->s), m_deadline(ms));
        CHECK_INT(notify_session_queued(ms->s, -1), m_queued(ms));
        CHECK_INT(notify_session_backlog(ms->s), m_queued(ms) + ms->external);
        CHECK_INT(notify_session_overflowed(ms->s), ms->overflowed);
        if (check_failures_in_test != before_fail) {
            fprintf(stderr, "  at op %ld (r=%u, session %d, now %lld)\n", op, r, si,
                    (long long)M.now);
            failures++;
        }
    }
    notify_stats st;
    notify_broker_stats(b, &st);
    CHECK_INT(st.published, M.st.published);
    CHECK_INT(st.deduplicated, M.st.deduplicated);
    CHECK_INT(st.filtered, M.st.filtered);
    CHECK_INT(st.queued, M.st.queued);
    CHECK_INT(st.delivered, M.st.delivered);
    for (int p = 0; p < 4; p++)
        CHECK_INT(st.dropped[p], M.st.dropped[p]);
    CHECK_INT(st.nomem, 0);
    CHECK_INT(st.backlog_max, M.st.backlog_max);
    CHECK_INT(st.overflowed, M.st.overflowed);
    CHECK_INT(st.sessions, MS);
    for (int i = 0; i < MS; i++) {
        notify_session_stats ss;
        notify_session_stats_get(M.s[i].s, &ss);
        CHECK_INT(ss.backlog_max, M.s[i].backlog_max);
    }
    /* every path was taken */
    CHECK(results[NOTIFY_QUEUED] > 100000);
    CHECK(results[NOTIFY_DUPLICATE] > 1000);
    CHECK(results[NOTIFY_FILTERED] > 1000);
    CHECK(results[NOTIFY_DROPPED] > 1000);
    CHECK(M.st.dropped[0] > 0 && M.st.dropped[1] > 0 && M.st.dropped[2] > 0);
    CHECK(M.st.dropped[3] > 0);
    printf("model: %llu queued, %llu delivered, %llu duplicates, %llu filtered, dropped "
           "%llu/%llu/%llu/%llu, backlog max %llu\n",
           (unsigned long long)st.queued, (unsigned long long)st.delivered,
           (unsigned long long)st.deduplicated, (unsigned long long)st.filtered,
           (unsigned long long)st.dropped[0], (unsigned long long)st.dropped[1],
           (unsigned long long)st.dropped[2], (unsigned long long)st.dropped[3],
           (unsigned long long)st.backlog_max);

    for (int i = 0; i < POOL; i++)
        notify_message_release(M.pool[i].m);
    for (int i = 0; i < MS; i++)
        for (int p = 0; p < 4; p++)
            free(M.s[i].q[p].v);
    notify_broker_free(b);
    CHECK_INT(notify_messages_live(), live0);
}

int main(void) {
    RUN_TEST(test_types);
    RUN_TEST(test_message_json);
    RUN_TEST(test_config);
    RUN_TEST(test_dedup_window);
    RUN_TEST(test_dedup_small_window);
    RUN_TEST(test_filters);
    RUN_TEST(test_p0_at_once_p2_waits);
    RUN_TEST(test_ordering);
    RUN_TEST(test_backpressure_tiers);
    RUN_TEST(test_p0_limit);
    RUN_TEST(test_refcounts_shared);
    RUN_TEST(test_random_model);
    return CHECK_REPORT();
}
