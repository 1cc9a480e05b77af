"""The history store through the server (issue #8 must-shows 1 and 2).

A scripted trading day over REST (four accounts, crossing orders at known prices and volumes,
partial fills, cancels, deposits, a withdrawal, a settlement); then the SQL, structured and
time-series answers must equal what this test computes from its own script and from the
engine's in-memory tape (GET /api/market/recent-trades): counts, sums, OHLC per bucket. Paging is
stable; DELETE, ATTACH, PRAGMA writable_schema and friends are refused with 1008 and change
nothing. Then kill -9 during heavy trading from several client threads, restart, and the history
holds every trade of the journal exactly once: trade ids unique, and per account exactly the set
of trades the recovered engine holds (QIFI /api/account/detail, rebuilt from snapshot + journal).
"""
import http.client
import json
import os
import random
import signal
import threading
import time
import unittest

from qaex import Server

ASAN = "/asan/" in os.environ.get("QAEX_SERVER", "")


def ok(tc, resp):
    status, body = resp
    tc.assertEqual(status, 200, body)
    tc.assertTrue(body["success"], body)
    return body["data"]


def raw(srv, method, path, body):
    """status, content-type, text (for CSV and JSON lines answers)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def sql(tc, srv, text, **extra):
    body = dict(sql=text, **extra)
    data = ok(tc, srv.post("/api/query/sql", body, timeout=30))
    return data["columns"], data["rows"]


def cent(tc, got, want, what):
    tc.assertAlmostEqual(got, want, delta=0.005, msg=what)


class HistoryDayTest(unittest.TestCase):
    """A scripted day, then every kind of query checked against the test's own figures."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(storage=True)
        cls.run_id = f"{os.getpid() % 10000}"
        cls.acc = {k: f"hist{cls.run_id}{k}" for k in "ABCD"}
        cls.matches = []   # (buyer, seller, price, volume) in time order
        cls.cancelled = []  # order ids
        cls.txns = {}       # txn id -> (kind, amount, account)
        try:
            cls.script()
        except Exception:
            cls.srv.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    @classmethod
    def post_ok(cls, path, body):
        status, resp = cls.srv.post(path, body, timeout=10)
        assert status == 200 and resp["success"], (path, body, resp)
        return resp["data"]

    @classmethod
    def order(cls, who, side, price, volume):
        return cls.post_ok("/api/order/submit", {
            "account_id": cls.acc[who], "instrument_id": "IF2501", "direction": side,
            "offset": "OPEN", "volume": volume, "price": price, "order_type": "LIMIT"})

    @classmethod
    def match(cls, buyer, seller, price, volume):
        cls.order(buyer, "BUY", price, volume)
        o = cls.order(seller, "SELL", price, volume)
        assert o["status"] == "Filled", o
        cls.matches.append((buyer, seller, price, volume))

    @classmethod
    def script(cls):
        for k in "ABCD":
            cls.post_ok("/api/account/open", {"user_id": cls.acc[k], "account_id": cls.acc[k],
                                              "init_cash": 10000000})
        for who, kind, amount in [("A", "deposit", 100000), ("A", "deposit", 2500.5),
                                  ("B", "deposit", 50000), ("C", "withdraw", 1000)]:
            d = cls.post_ok(f"/api/account/{kind}", {"account_id": cls.acc[who], "amount": amount})
            cls.txns[d["transaction_id"]] = (kind, amount, cls.acc[who])
        # resting orders far from the trading prices, cancelled later
        far = [cls.order("A", "BUY", 3700.0, 1)["order_id"],
               cls.order("B", "SELL", 3900.0, 2)["order_id"]]
        # the first second
        cls.match("A", "B", 3800.0, 2)
        cls.match("C", "D", 3801.0, 1)
        cls.match("A", "D", 3799.2, 3)
        # one buy filled by two sellers
        cls.order("A", "BUY", 3802.0, 5)
        cls.order("B", "SELL", 3802.0, 2)
        cls.order("D", "SELL", 3802.0, 3)
        cls.matches += [("A", "B", 3802.0, 2), ("A", "D", 3802.0, 3)]
        time.sleep(1.1)  # the next trades fall in a later 1 s bucket
        cls.match("B", "A", 3805.0, 1)
        cls.match("D", "C", 3798.0, 4)
        partial = cls.order("C", "BUY", 3797.0, 4)["order_id"]
        cls.order("D", "SELL", 3797.0, 1)
        cls.matches.append(("C", "D", 3797.0, 1))
        for oid, who in [(far[0], "A"), (far[1], "B"), (partial, "C")]:
            cls.post_ok("/api/order/cancel", {"account_id": cls.acc[who], "order_id": oid})
            cls.cancelled.append(oid)
        # the engine's own tape of the matches, oldest first
        tape = cls.srv.get("/api/market/recent-trades/IF2501?limit=1000")[1]["data"]
        cls.tape = list(reversed(tape))
        cls.day = cls.srv.get("/monitoring/state")[1]["data"]["trading_day"]
        cls.post_ok("/admin/settlement/set-price", {"instrument_id": "IF2501",
                                                     "settlement_price": 3800})
        cls.settlement = cls.post_ok("/admin/settlement/execute", {})
        cls.accounts_after = {k: cls.post_ok_get(f"/api/account/{cls.acc[k]}") for k in "ABCD"}

    @classmethod
    def post_ok_get(cls, path):
        status, resp = cls.srv.get(path)
        assert status == 200 and resp["success"], (path, resp)
        return resp["data"]

    def ids(self):
        return "(" + ",".join(f"'{a}'" for a in self.acc.values()) + ")"

    # ---- SQL ----

    def test_sql_counts_and_sums(self):
        n = len(self.matches)
        vol = sum(m[3] for m in self.matches)
        cols, rows = sql(self, self.srv, "SELECT COUNT(*), SUM(volume), SUM(is_taker), "
                         "COUNT(DISTINCT trade_id) FROM trades")
        self.assertEqual(rows, [[2 * n, 2 * vol, n, 2 * n]])
        want = {}
        for buyer, seller, price, volume in self.matches:
            for who in (buyer, seller):
                c, v, amt = want.get(self.acc[who], (0, 0, 0.0))
                want[self.acc[who]] = (c + 1, v + volume, amt + price * volume)
        cols, rows = sql(self, self.srv, "SELECT account_id, COUNT(*), SUM(volume), "
                         "SUM(price * volume) FROM trades GROUP BY account_id ORDER BY account_id")
        self.assertEqual([r[0] for r in rows], sorted(want))
        for acc_id, count, volume, amount in rows:
            self.assertEqual((count, volume), want[acc_id][:2], acc_id)
            cent(self, amount, want[acc_id][2], acc_id)
        # buyers and sellers by side
        cols, rows = sql(self, self.srv, "SELECT direction, SUM(volume) FROM trades "
                         "GROUP BY direction ORDER BY direction")
        self.assertEqual(rows, [["BUY", vol], ["SELL", vol]])

    def test_orders_transfers_settlement_tables(self):
        cols, rows = sql(self, self.srv, "SELECT COUNT(DISTINCT order_id) FROM orders WHERE "
                         f"status = 'Cancelled' AND account_id IN {self.ids()}")
        self.assertEqual(rows, [[len(self.cancelled)]])
        cols, rows = sql(self, self.srv, "SELECT order_id FROM orders WHERE status = 'Cancelled'"
                         " ORDER BY order_id")
        self.assertEqual(sorted(r[0] for r in rows), sorted(self.cancelled))
        # every order reached the history: one insert row per order at least
        cols, rows = sql(self, self.srv, "SELECT COUNT(DISTINCT order_id) FROM orders")
        self.assertEqual(rows[0][0], 2 + 2 * 5 + 3 + 2)  # far, matched pairs, trio, partial
        ids = "(" + ",".join(f"'{t}'" for t in self.txns) + ")"
        cols, rows = sql(self, self.srv, "SELECT txn_id, kind, amount, account_id FROM transfers"
                         f" WHERE txn_id IN {ids}")
        self.assertEqual({r[0]: (r[1], r[2], r[3]) for r in rows}, self.txns)
        cols, rows = sql(self, self.srv, "SELECT settlement_date, total_accounts, "
                         "settled_accounts, total_commission FROM settlements")
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][:3], [self.day, self.settlement["total_accounts"],
                                       self.settlement["settled_accounts"]])
        cent(self, rows[0][3], self.settlement["total_commission"], "total_commission")
        # the day's commission is the sum of the trades'
        cols, rows = sql(self, self.srv, "SELECT SUM(commission) FROM trades")
        cent(self, rows[0][0], self.settlement["total_commission"], "commission of trades")

    def test_equity_curve_after_settlement(self):
        for k in "ABCD":
            curve = ok(self, self.srv.get(f"/api/account/{self.acc[k]}/curve"))
            self.assertEqual(curve["count"], 1, curve)
            point = curve["points"][0]
            self.assertEqual(point["trading_day"], self.day)
            self.assertEqual(point["reason"], "settlement")
            cent(self, point["balance"], self.accounts_after[k]["balance"], f"balance {k}")
            cent(self, point["available"], self.accounts_after[k]["available"], f"available {k}")
            cent(self, point["margin"], self.accounts_after[k]["margin"], f"margin {k}")
            # a window that excludes the day is empty; snapshots interval lists the same point
            empty = ok(self, self.srv.get(f"/api/account/{self.acc[k]}/curve"
                                          "?start_date=2999-01-01"))
            self.assertEqual(empty["points"], [])
            every = ok(self, self.srv.get(f"/api/account/{self.acc[k]}/curve?interval=snapshot"))
            self.assertEqual(every["count"], 1)
        st, body = self.srv.get(f"/api/account/{self.acc['A']}/curve?interval=fortnight")
        self.assertEqual(st, 400)
        self.assertEqual(body["error"]["code"], 1008)
        st, body = self.srv.get("/api/account/no-such-account/curve")
        self.assertEqual(st, 404)

    # ---- structured ----

    def test_structured(self):
        n = len(self.matches)
        vol = sum(m[3] for m in self.matches)
        data = ok(self, self.srv.post("/api/query/structured", {
            "query_type": {"Structured": {"select": ["direction"], "from": "trades"}},
            "aggregations": [{"agg_type": "Sum", "column": "volume"},
                             {"agg_type": "Count"}, {"agg_type": "Max", "column": "price"},
                             {"agg_type": "Min", "column": "price"}],
            "group_by": ["direction"],
            "order_by": [{"column": "direction", "descending": False}]}))
        cols = data["columns"]
        rows = [dict(zip(cols, r)) for r in data["rows"]]
        self.assertEqual([r["direction"] for r in rows], ["BUY", "SELL"])
        for r in rows:
            self.assertEqual(r["sum_volume"], vol)
            self.assertEqual(r["count"], n)
            self.assertEqual(r["max_price"], max(m[2] for m in self.matches))
            self.assertEqual(r["min_price"], min(m[2] for m in self.matches))
        # flat shape with filters: account A's buys
        a_buys = [m for m in self.matches if m[0] == "A"]
        data = ok(self, self.srv.post("/api/query/structured", {
            "table": "trades", "filters": [
                {"column": "account_id", "op": "Eq", "value": self.acc["A"]},
                {"column": "direction", "op": "Eq", "value": "BUY"}],
            "aggregations": [{"agg_type": "Sum", "column": "volume"}, {"agg_type": "Count"}]}))
        self.assertEqual(data["rows"], [[sum(m[3] for m in a_buys), len(a_buys)]])
        # a bad column is a clear 1008
        st, body = self.srv.post("/api/query/structured", {"table": "trades",
                                                           "select": ["no_such_column"]})
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["code"], 1008)
        self.assertIn("no_such_column", body["error"]["message"])

    # ---- time series ----

    def expected_buckets(self, seconds):
        self.assertEqual(len(self.tape), len(self.matches))
        for t, m in zip(self.tape, self.matches):
            self.assertEqual((t["price"], t["volume"]), (m[2], m[3]))
        buckets = {}
        for t in self.tape:
            start = t["timestamp"] // (seconds * 1000) * seconds * 1000
            b = buckets.setdefault(start, dict(open=t["price"], high=t["price"], low=t["price"],
                                               close=t["price"], volume=0, amount=0.0, count=0))
            b["high"] = max(b["high"], t["price"])
            b["low"] = min(b["low"], t["price"])
            b["close"] = t["price"]
            b["volume"] += t["volume"]
            b["amount"] += t["price"] * t["volume"]
            b["count"] += 1
        return buckets

    def check_series(self, granularity, seconds):
        data = ok(self, self.srv.post("/api/query/timeseries", {
            "instrument_id": "CFFEX.IF2501", "granularity": granularity}))
        want = self.expected_buckets(seconds)
        cols = data["columns"]
        got = {r[cols.index("bucket_start_ms")]: dict(zip(cols, r)) for r in data["rows"]}
        self.assertEqual(sorted(got), sorted(want), granularity)
        for start, w in want.items():
            g = got[start]
            self.assertEqual((g["open"], g["high"], g["low"], g["close"], g["volume"],
                              g["trade_count"]),
                             (w["open"], w["high"], w["low"], w["close"], w["volume"], w["count"]),
                             f"{granularity} bucket {start}")
            cent(self, g["amount"], w["amount"], "amount")
        return got

    def test_timeseries_ohlc_per_bucket(self):
        got = self.check_series("1s", 1)
        self.assertGreaterEqual(len(got), 2)  # the script slept across a second
        self.check_series("1m", 60)
        self.check_series("1d", 86400)
        # a window: only the buckets inside it
        first = min(got)
        data = ok(self, self.srv.post("/api/query/timeseries", {
            "instrument_id": "CFFEX.IF2501", "granularity": "1s", "start": first,
            "end": first + 1000}))
        self.assertEqual([r[0] for r in data["rows"]], [first])
        st, body = self.srv.post("/api/query/timeseries", {"instrument_id": "CFFEX.IF2501",
                                                           "granularity": "7x"})
        self.assertEqual(st, 400)
        self.assertEqual(body["error"]["code"], 1008)

    def test_timeseries_granularity_in_seconds(self):
        """README: granularity is "1s".."1d" or a number of seconds."""
        self.assertEqual(self.check_series(1, 1), self.check_series("1s", 1))
        self.assertEqual(self.check_series(60, 60), self.check_series("1m", 60))
        self.check_series(2, 2)
        self.check_series("3600", 3600)
        for bad in (0, -5, 367 * 86400, "0s", "abc"):
            st, body = self.srv.post("/api/query/timeseries", {"instrument_id": "CFFEX.IF2501",
                                                               "granularity": bad})
            self.assertEqual(st, 400, (bad, body))
            self.assertEqual(body["error"]["code"], 1008, body)
            self.assertIn(str(bad), body["error"]["message"], body)

    def test_bad_query_fields_name_their_value(self):
        """SPEC 7: a refusal names the offending value, not only the field."""
        for path, body, value in [
                ("/api/query/sql", {"sql": "SELECT 1", "format": "xml"}, "xml"),
                ("/api/query/sql", {"sql": "SELECT 1", "limit": -7}, "-7"),
                ("/api/query/sql", {"sql": "SELECT 1", "limit": "many"}, "many"),
                ("/api/query/sql", {"sql": "SELECT 1", "timeout_ms": 600001}, "600001"),
                ("/api/query/structured", {"table": "trades", "format": 5}, "5"),
                ("/api/query/timeseries", {"instrument_id": "IF2501", "granularity": 1.5}, "1.5"),
                ("/api/query/timeseries", {"instrument_id": "IF2501", "start": "yesterday"},
                 "yesterday")]:
            st, resp = self.srv.post(path, body)
            self.assertEqual(st, 400, (body, resp))
            self.assertEqual(resp["error"]["code"], 1008, resp)
            self.assertIn(value, resp["error"]["message"], (body, resp))

    # ---- trades pages ----

    def test_trades_paging_stable(self):
        acc_a = self.acc["A"]
        mine = [m for m in self.matches if "A" in (m[0], m[1])]
        full = ok(self, self.srv.get(f"/api/trades/user/{acc_a}?page=1&size=1000"))
        self.assertEqual(full["total"], len(mine))
        self.assertEqual(full["summary"]["volume"], sum(m[3] for m in mine))
        ids = [t["trade_id"] for t in full["trades"]]
        self.assertEqual(len(set(ids)), len(ids))
        # newest first, as the blotter always showed them
        stamps = [(t["trade_date_time"], t["trade_id"]) for t in full["trades"]]
        self.assertEqual(stamps, sorted(stamps, reverse=True))
        pages = []
        for page in range(1, 5):
            p = ok(self, self.srv.get(f"/api/trades/user/{acc_a}?page={page}&size=2"))
            self.assertEqual(p["total"], len(mine))
            self.assertEqual((p["page"], p["size"]), (page, 2))
            again = ok(self, self.srv.get(f"/api/trades/user/{acc_a}?page={page}&size=2"))
            self.assertEqual(again["trades"], p["trades"])
            pages += p["trades"]
        self.assertEqual([t["trade_id"] for t in pages], ids)
        # the shape of the engine's trades (codec_trade)
        for key in ["trade_id", "order_id", "exchange_trade_id", "account_id", "instrument_id",
                    "direction", "offset", "price", "volume", "commission", "close_profit",
                    "trade_date_time", "timestamp", "is_taker", "towards"]:
            self.assertIn(key, full["trades"][0])
        # the exchange order id is stored (schema 3) and is the engine's own for the order
        # (the engine's form: instrument code and the order's sequence on that instrument; one
        # per order)
        by_order = {}
        for t in full["trades"]:
            self.assertRegex(t["exchange_order_id"], r"^IF2501-\d{12}$", t)
            self.assertFalse(t["is_liquidation"])
            by_order.setdefault(t["order_id"], set()).add(t["exchange_order_id"])
        self.assertTrue(all(len(x) == 1 for x in by_order.values()), by_order)
        self.assertEqual(len({next(iter(x)) for x in by_order.values()}), len(by_order))
        # instrument filter (alias) and dates
        same = ok(self, self.srv.get(f"/api/trades/user/{acc_a}?size=1000&instrument_id=IF2501"))
        self.assertEqual(same["total"], len(mine))
        other = ok(self, self.srv.get(f"/api/trades/user/{acc_a}?instrument_id=IC2501"))
        self.assertEqual(other["total"], 0)
        none = ok(self, self.srv.get(f"/api/trades/user/{acc_a}?start_date=2999-01-01"))
        self.assertEqual((none["total"], none["trades"]), (0, []))
        # every trade, after the settlement cleared the day's trades from the engine's memory
        listed = ok(self, self.srv.get(f"/api/order/user/{acc_a}/trades"))
        self.assertEqual(sorted(t["trade_id"] for t in listed), sorted(ids))
        st, body = self.srv.get("/api/trades/user/nobody-at-all")
        self.assertEqual(st, 404, body)

    def test_dates_must_be_calendar_dates(self):
        """A date filter that names no day (month 13, 30 February) is refused with 400 / 9003
        naming the argument and its value, rather than rolled over into another day."""
        acc_a = self.acc["A"]
        for path, arg, value in [
                (f"/api/trades/user/{acc_a}?start_date=2025-13-45", "start_date", "2025-13-45"),
                (f"/api/trades/user/{acc_a}?end_date=2025-02-30", "end_date", "2025-02-30"),
                (f"/api/trades/user/{acc_a}?start_date=2025-1-5", "start_date", "2025-1-5"),
                (f"/api/trades/user/{acc_a}?end_date=2025-00-10", "end_date", "2025-00-10"),
                (f"/api/account/{acc_a}/curve?start_date=2025-99-99", "start_date", "2025-99-99"),
                (f"/api/account/{acc_a}/curve?end_date=2023-02-29", "end_date", "2023-02-29")]:
            st, body = self.srv.get(path)
            self.assertEqual(st, 400, (path, body))
            self.assertEqual(body["error"]["code"], 9003, body)
            self.assertIn(value, body["error"]["message"], body)
            self.assertIn(arg, body["error"]["message"], body)
        # real days, 29 February of a leap year among them, are taken; an empty range is empty
        for path in [f"/api/trades/user/{acc_a}?start_date=2024-02-29&end_date=2999-12-31",
                     f"/api/account/{acc_a}/curve?start_date=2024-02-29&end_date=2999-12-31"]:
            ok(self, self.srv.get(path))
        empty = ok(self, self.srv.get(f"/api/trades/user/{acc_a}"
                                      "?start_date=2999-01-02&end_date=2999-01-01"))
        self.assertEqual((empty["total"], empty["trades"]), (0, []))

    def test_money_fields_are_numbers_with_a_fraction(self):
        """Prices and money are doubles (SPEC 3): the history's trades and curve points print
        them as the engine's routes do (3800.0), whole values included, so a typed client reads
        the same type from both sources."""
        acc_a = self.acc["A"]
        page = ok(self, self.srv.get(f"/api/trades/user/{acc_a}?size=1000"))["trades"]
        listed = ok(self, self.srv.get(f"/api/order/user/{acc_a}/trades"))
        self.assertTrue(page and listed)
        for t in page + listed:
            for key in ("price", "commission", "close_profit"):
                self.assertIsInstance(t[key], float, (key, t))
            self.assertIsInstance(t["volume"], int, t)
        for p in ok(self, self.srv.get(f"/api/account/{acc_a}/curve"))["points"]:
            for key in ("balance", "available", "margin", "position_profit", "close_profit",
                        "commission", "risk_ratio"):
                self.assertIsInstance(p[key], float, (key, p))

    # ---- export formats ----

    def test_csv_and_json_lines(self):
        n = 2 * len(self.matches)
        st, ctype, text = raw(self.srv, "POST", "/api/query/sql", {
            "sql": "SELECT trade_id, price, volume FROM trades ORDER BY trade_id",
            "format": "csv"})
        self.assertEqual(st, 200, text)
        self.assertTrue(ctype.startswith("text/csv"), ctype)
        lines = text.strip().split("\n")
        self.assertEqual(lines[0].strip(), "trade_id,price,volume")
        self.assertEqual(len(lines), n + 1)
        st, ctype, text = raw(self.srv, "POST", "/api/query/sql", {
            "sql": "SELECT trade_id, volume FROM trades", "format": "jsonl"})
        self.assertEqual(st, 200, text)
        self.assertTrue(ctype.startswith("application/x-ndjson"), ctype)
        rows = [json.loads(line) for line in text.strip().split("\n")]
        self.assertEqual(len(rows), n)
        self.assertEqual(sum(r["volume"] for r in rows), 2 * sum(m[3] for m in self.matches))
        # limit truncates
        data = ok(self, self.srv.post("/api/query/sql", {"sql": "SELECT * FROM trades",
                                                         "limit": 3}))
        self.assertEqual((data["row_count"], data["truncated"]), (3, True))

    # ---- refusals ----

    def test_writes_and_attach_refused(self):
        before = sql(self, self.srv, "SELECT (SELECT COUNT(*) FROM trades), "
                     "(SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM accounts)")[1]
        attach_path = os.path.join(self.srv.tmp, "attached.db")
        for text in ["DELETE FROM trades", "UPDATE trades SET volume = 0",
                     "INSERT INTO trades(trade_id) VALUES('x')", "DROP TABLE trades",
                     f"ATTACH DATABASE '{attach_path}' AS x", "PRAGMA writable_schema = 1",
                     "PRAGMA writable_schema", "SELECT 1; DELETE FROM trades",
                     "SELECT * FROM sqlite_master", "SELECT * FROM meta",
                     "CREATE TABLE t(x)", "VACUUM", "SELEC oops"]:
            st, body = self.srv.post("/api/query/sql", {"sql": text})
            self.assertEqual(st, 400, (text, body))
            self.assertFalse(body["success"])
            self.assertEqual(body["error"]["code"], 1008, (text, body))
            self.assertTrue(body["error"]["message"], text)
        self.assertFalse(os.path.exists(attach_path))
        after = sql(self, self.srv, "SELECT (SELECT COUNT(*) FROM trades), "
                    "(SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM accounts)")[1]
        self.assertEqual(after, before)
        st, body = self.srv.post("/api/query/sql", {"sql": 42})
        self.assertEqual((st, body["error"]["code"]), (400, 1008))
        st, body = self.srv.post("/api/query/sql", {"sql": "SELECT 1", "format": "xml"})
        self.assertEqual((st, body["error"]["code"]), (400, 1008))

    def test_storage_reports_history(self):
        data = ok(self, self.srv.get("/monitoring/storage"))
        h = data["history"]
        self.assertEqual(h["rows"]["trades"], 2 * len(self.matches))
        self.assertGreater(h["db_bytes"] + h["wal_bytes"], 0)
        self.assertEqual(h["feed"]["gaps"], 0)
        self.assertTrue(h["path"].endswith("history.db"))


class HistoryOffTest(unittest.TestCase):
    def test_memory_only_server_answers_503_and_keeps_trades_routes(self):
        with Server() as srv:
            st, body = srv.post("/api/query/sql", {"sql": "SELECT 1"})
            self.assertEqual(st, 503, body)
            srv.post("/api/account/open", {"user_id": "m1", "init_cash": 1000000})
            st, body = srv.get("/api/trades/user/m1")
            self.assertEqual(st, 200, body)
            self.assertEqual(body["data"]["total"], 0)


CRASH_CONFIG = """
[storage]
durability = "sync"
snapshot_interval_commands = 200
snapshot_interval_secs = 0

[engine]
trades_per_account = 100000
finished_orders_per_account = 100000
"""


class Load:
    """Client threads trading against each other until stopped."""

    def __init__(self, srv, accounts, threads):
        self.srv, self.accounts = srv, accounts
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, i):
        rng = random.Random(i)
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=5)
        try:
            while not self.stop.is_set():
                acc = self.accounts[rng.randrange(len(self.accounts))]
                body = json.dumps({"account_id": acc, "instrument_id": "IF2501",
                                   "direction": rng.choice(["BUY", "SELL"]), "offset": "OPEN",
                                   "volume": rng.randint(1, 2),
                                   "price": round(3800 + rng.randint(-3, 3) * 0.2, 1)})
                conn.request("POST", "/api/order/submit", body=body,
                             headers={"Content-Type": "application/json"})
                conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            return  # killed under us
        finally:
            conn.close()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


class HistoryCrashTest(unittest.TestCase):
    def wait_history(self, srv, timeout=60):
        """Until the history holds every command the recovered engine holds."""
        last = srv.get("/monitoring/state")[1]["data"]["last_seq"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            h = srv.get("/monitoring/storage", timeout=30)[1]["data"]["history"]
            if h["last_seq"] >= last:
                return h
            time.sleep(0.2)
        self.fail(f"history did not reach {last}: {h}")

    def check_exactly_once(self, srv, accounts):
        h = self.wait_history(srv)
        self.assertEqual(h["feed"]["gaps"], 0, h)
        data = ok(self, srv.post("/api/query/sql", {
            "sql": "SELECT COUNT(*), COUNT(DISTINCT trade_id) FROM trades", "limit": 10}))
        total, distinct = data["rows"][0]
        self.assertEqual(total, distinct)
        engine_total = 0
        for acc in accounts:
            qifi = ok(self, srv.get(f"/api/account/detail/{acc}"))
            engine_ids = set(qifi["trades"].keys())
            engine_total += len(engine_ids)
            got = ok(self, srv.post("/api/query/structured", {
                "table": "trades", "select": ["trade_id"],
                "filters": [{"column": "account_id", "op": "Eq", "value": acc}],
                "limit": 1000000}))
            hist_ids = [r[0] for r in got["rows"]]
            self.assertEqual(len(hist_ids), len(set(hist_ids)), acc)
            self.assertEqual(set(hist_ids), engine_ids, acc)
        self.assertEqual(total, engine_total)
        return total

    def test_kill_during_heavy_trading(self):
        import tempfile
        import shutil
        tmp = tempfile.mkdtemp(prefix="qaex-hist-crash-")
        data_dir = os.path.join(tmp, "data")
        config = os.path.join(tmp, "exchange.toml")
        with open(config, "w") as f:
            f.write(CRASH_CONFIG)
        accounts = [f"crash{i}" for i in range(6)]
        try:
            srv = Server(storage=True, data_dir=data_dir, config=config)
            try:
                for acc in accounts:
                    ok(self, srv.post("/api/account/open", {"user_id": acc, "account_id": acc,
                                                            "init_cash": 1e9}))
                totals = []
                for round_no in range(3):
                    load = Load(srv, accounts, threads=6)
                    time.sleep(4.0 if ASAN else 2.5)
                    srv.proc.send_signal(signal.SIGKILL)
                    srv.proc.wait(timeout=10)
                    load.join()
                    srv.close()
                    srv = Server(storage=True, data_dir=data_dir, config=config)
                    totals.append(self.check_exactly_once(srv, accounts))
                self.assertGreater(totals[0], 0)
                self.assertGreaterEqual(totals[-1], totals[0])
                # a clean stop and start changes nothing
                srv.close()
                srv = Server(storage=True, data_dir=data_dir, config=config)
                self.assertEqual(self.check_exactly_once(srv, accounts), totals[-1])
            finally:
                srv.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
