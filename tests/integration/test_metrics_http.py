"""GET /metrics scraped and parsed strictly as Prometheus text (issue #7 must-show 3).

Every line is a comment (# HELP / # TYPE) or `name{labels} value`; every sample belongs to a
declared family; histogram buckets rise with `le`, are cumulative, end with +Inf equal to
_count. Then N orders flow (accepted, rejected, matched) with storage on and a /ws subscriber
watching, and each counter and histogram moves by exactly what was sent.
"""
import math
import re
import time
import unittest

from qaex import Server

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
VALUE = r"[-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)"
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?,?\}})? ({VALUE})(?: -?[0-9]+)?$")
HELP = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text, test):
    """Strict parse: {family: type}, {(name, frozenset(labels)): value}."""
    test.assertTrue(text.endswith("\n"), "exposition must end with a newline")
    types, helps, samples = {}, {}, {}
    for n, line in enumerate(text.split("\n")[:-1], 1):
        test.assertNotEqual(line.strip(), "", f"line {n} is blank")
        if line.startswith("#"):
            m = TYPE.match(line)
            if m:
                test.assertNotIn(m.group(1), types, f"line {n}: TYPE repeated")
                test.assertNotIn(m.group(1), {s[0] for s in samples}, f"line {n}: TYPE late")
                types[m.group(1)] = m.group(2)
                continue
            m = HELP.match(line)
            test.assertIsNotNone(m, f"line {n}: a comment that is neither HELP nor TYPE: {line!r}")
            helps[m.group(1)] = m.group(2)
            continue
        m = SAMPLE.match(line)
        test.assertIsNotNone(m, f"line {n} is not `name{{labels}} value`: {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        test.assertTrue(name in types or family in types, f"line {n}: {name} has no TYPE")
        key = (name, frozenset(LABEL_PAIR.findall(labels)))
        test.assertNotIn(key, samples, f"line {n}: duplicate sample {line!r}")
        samples[key] = float(value.replace("Inf", "inf"))
    for family, kind in types.items():
        test.assertIn(family, helps, f"{family} has no HELP")
        if kind == "histogram":
            check_histogram(test, family, samples)
        elif kind == "counter":
            for (name, _), v in samples.items():
                if name == family:
                    test.assertGreaterEqual(v, 0, family)
    return types, samples


def check_histogram(test, family, samples):
    buckets = sorted(((float(dict(l)["le"].replace("Inf", "inf")), v)
                      for (name, l), v in samples.items() if name == family + "_bucket"))
    test.assertGreater(len(buckets), 1, f"{family}: no buckets")
    test.assertEqual(buckets[-1][0], math.inf, f"{family}: no +Inf bucket")
    for (le0, c0), (le1, c1) in zip(buckets, buckets[1:]):
        test.assertLess(le0, le1)
        test.assertLessEqual(c0, c1, f"{family}: bucket le={le1} below le={le0}")
    count = samples[(family + "_count", frozenset())]
    total = samples[(family + "_sum", frozenset())]
    test.assertEqual(buckets[-1][1], count, f"{family}: +Inf bucket != _count")
    test.assertGreaterEqual(total, 0)
    if count == 0:
        test.assertEqual(total, 0, family)


def one(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(storage=True)  # development defaults: open mode, no tokens

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def scrape(self):
        conn_text = self.srv.request("GET", "/metrics")
        status, text = conn_text
        self.assertEqual(status, 200)
        self.assertIsInstance(text, str)
        return parse(text, self)

    def test_format_and_series(self):
        types, samples = self.scrape()
        want = {"qaex_commands_total": "counter", "qaex_orders_total": "counter",
                "qaex_trades_total": "counter", "qaex_order_processing_seconds": "histogram",
                "qaex_matching_seconds": "histogram", "qaex_journal_fsync_seconds": "histogram",
                "qaex_ws_push_seconds": "histogram", "qaex_http_requests_total": "counter",
                "qaex_ws_messages_sent_total": "counter", "qaex_connections": "gauge",
                "qaex_ws_sessions": "gauge", "qaex_accounts": "gauge", "qaex_users": "gauge"}
        for family, kind in want.items():
            self.assertEqual(types.get(family), kind, family)
        for result in ("accepted", "rejected"):
            self.assertIn(("qaex_orders_total", frozenset({("result", result)})), samples)
        st, head = self.srv.request("HEAD", "/metrics")  # not served: never a 5xx
        self.assertLess(st, 500)

    def test_counts_move_with_orders(self):
        srv = self.srv
        for acc in ("m_maker", "m_taker"):
            st, body = srv.post("/api/account/open", {"user_id": acc, "init_cash": 10000000})
            self.assertEqual(st, 200, body)
        ws = srv.ws("/ws?user_id=m_maker")
        self.addCleanup(ws.close)
        ws.send({"type": "subscribe", "channels": ["trade", "orderbook", "ticker"],
                 "instruments": ["IF2501"]})
        ws.recv_until(lambda m: m.get("type") == "subscribe_response")
        time.sleep(0.2)

        st, state = srv.get("/monitoring/state")
        self.assertEqual(st, 200, state)
        seq_before = state["data"]["last_seq"]
        _, before = self.scrape()
        n_fill, n_rest, n_bad = 5, 3, 2
        for i in range(n_fill):  # maker rests 1 lot, taker takes it: 2 accepted, 1 trade
            st, body = srv.post("/api/order/submit", {
                "user_id": "m_maker", "instrument_id": "IF2501", "direction": "SELL",
                "offset": "OPEN", "volume": 1, "price": 3800, "order_type": "LIMIT"})
            self.assertEqual(st, 200, body)
            st, body = srv.post("/api/order/submit", {
                "user_id": "m_taker", "instrument_id": "IF2501", "direction": "BUY",
                "offset": "OPEN", "volume": 1, "price": 3800, "order_type": "LIMIT"})
            self.assertEqual((st, body["data"]["status"]), (200, "Filled"), body)
        for i in range(n_rest):  # rests without a match
            st, body = srv.post("/api/order/submit", {
                "user_id": "m_taker", "instrument_id": "IF2501", "direction": "BUY",
                "offset": "OPEN", "volume": 1, "price": 3700 - i, "order_type": "LIMIT"})
            self.assertEqual(st, 200, body)
        for price in (3800.1, 99999):  # off the tick, outside the limits: 1008
            st, body = srv.post("/api/order/submit", {
                "user_id": "m_taker", "instrument_id": "IF2501", "direction": "BUY",
                "offset": "OPEN", "volume": 1, "price": price, "order_type": "LIMIT"})
            self.assertEqual((st, body["error"]["code"]), (400, 1008), body)
        # the subscriber saw the trades
        got = 0
        while got < n_fill:
            m, _ = ws.recv_until(lambda m: m.get("type") in ("trade", "market_trade"))
            got += 1
        time.sleep(0.2)
        _, after = self.scrape()
        st, state = srv.get("/monitoring/state")
        self.assertEqual(st, 200, state)
        # journal records in the window: the orders, and any timer command (a K-line clock)
        records = state["data"]["last_seq"] - seq_before

        accepted, rejected = 2 * n_fill + n_rest, n_bad
        d = lambda name, **l: one(after, name, **l) - one(before, name, **l)
        self.assertEqual(d("qaex_orders_total", result="accepted"), accepted)
        self.assertEqual(d("qaex_orders_total", result="rejected"), rejected)
        self.assertEqual(d("qaex_trades_total"), n_fill)
        self.assertEqual(d("qaex_commands_total"), accepted + rejected)
        self.assertEqual(d("qaex_order_processing_seconds_count"), accepted + rejected)
        self.assertEqual(d("qaex_matching_seconds_count"), accepted + rejected)
        self.assertGreater(d("qaex_order_processing_seconds_sum"), 0)
        self.assertGreater(d("qaex_matching_seconds_sum"), 0)
        # every HTTP request between the scrapes, and the second scrape itself
        self.assertEqual(d("qaex_http_requests_total"), 2 * n_fill + n_rest + n_bad + 1)
        # storage on: every accepted order was journaled with an fdatasync (group commit may
        # cover several with one); the journal syncs only when it has records to make durable
        self.assertGreaterEqual(records, accepted)
        self.assertGreaterEqual(d("qaex_journal_fsync_seconds_count"), 1)
        self.assertLessEqual(d("qaex_journal_fsync_seconds_count"), records)
        self.assertGreater(d("qaex_journal_fsync_seconds_sum"), 0)
        # pushes reached the /ws subscriber
        self.assertGreaterEqual(d("qaex_ws_push_seconds_count"), n_fill)
        self.assertGreaterEqual(d("qaex_ws_messages_sent_total"), n_fill)
        # the order latency fits the buckets: a fill is well under a second
        self.assertEqual(d('qaex_order_processing_seconds_bucket', le="1"), accepted + rejected)
        self.assertEqual(one(after, "qaex_ws_sessions"), 1)
        self.assertGreaterEqual(one(after, "qaex_connections"), 2)
        self.assertEqual(one(after, "qaex_accounts"), 2)

    def test_connections_gauge_counts_open_connections(self):
        """qaex_connections is "Open HTTP and WebSocket connections": closed ones leave it."""
        _, s0 = self.scrape()
        base_ws = one(s0, "qaex_ws_sessions")
        for _ in range(20):
            self.assertEqual(self.srv.get("/health")[0], 200)  # each closes its connection
        deadline = time.time() + 5
        while True:
            _, s = self.scrape()
            open_now = one(s, "qaex_connections")
            # the scrape's own connection and any WebSocket sessions of other tests
            if open_now <= 1 + base_ws + 1 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertLessEqual(open_now, 1 + base_ws + 1,
                             "20 closed HTTP connections are still counted as open")


if __name__ == "__main__":
    unittest.main()
