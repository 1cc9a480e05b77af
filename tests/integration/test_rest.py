"""REST API against the real server on loopback (SPEC 5; seed quick start)."""
import socket
import unittest

from qaex import Server, ServerTest


def raw_http(port, data, timeout=5.0):
    """Sends bytes as they are and returns what the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def ok(test, status_body, status=200):
    status_code, body = status_body
    test.assertEqual(status_code, status, body)
    test.assertTrue(body["success"], body)
    test.assertIsNone(body["error"])
    return body["data"]


def err(test, status_body, code, status):
    status_code, body = status_body
    test.assertEqual(status_code, status, body)
    test.assertFalse(body["success"], body)
    test.assertIsNone(body["data"])
    test.assertEqual(body["error"]["code"], code, body)
    return body["error"]["message"]


class RestTest(ServerTest):
    def open(self, user, cash=1000000):
        return ok(self, self.srv.post("/api/account/open", {
            "user_id": user, "user_name": user, "init_cash": cash,
            "account_type": "individual", "password": "pw"}))

    def order(self, user, direction, offset, price, volume, **extra):
        body = {"user_id": user, "instrument_id": "IF2501", "direction": direction,
                "offset": offset, "volume": volume, "price": price, "order_type": "LIMIT"}
        body.update(extra)
        return self.srv.post("/api/order/submit", body)

    def account(self, user):
        return ok(self, self.srv.get(f"/api/account/{user}"))

    def test_health(self):
        status, body = self.srv.get("/health")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")
        self.assertIn("version", body)

    def test_quick_start_unchanged(self):
        """The seed's quick-start curl commands, as written."""
        data = self.open("demo_user")
        self.assertEqual(data, {"account_id": "demo_user"})
        acc = self.account("demo_user")
        self.assertEqual(acc["balance"], 1000000.0)
        self.assertEqual(acc["available"], 1000000.0)
        self.assertEqual(acc["risk_ratio"], 0.0)
        data = ok(self, self.order("demo_user", "BUY", "OPEN", 3800, 1))
        self.assertRegex(data["order_id"], r"^O\d{20}$")
        self.assertEqual(data["status"], "Submitted")
        got = ok(self, self.srv.get(f"/api/order/{data['order_id']}"))
        self.assertEqual(got["order_id"], data["order_id"])
        self.assertEqual(got["volume_left"], 1)
        orders = ok(self, self.srv.get("/api/order/user/demo_user"))
        self.assertIn(data["order_id"], [o["order_id"] for o in orders])
        # the open order freezes 3800 * 300 * 10% margin and its commission
        acc = self.account("demo_user")
        self.assertAlmostEqual(acc["frozen_margin"], 114000.0, places=2)
        self.assertAlmostEqual(acc["available"], 1000000 - 114000 - 3800 * 300 * 0.000023, places=2)

    def test_cross_partial_fill_cancel_close(self):
        self.open("alice")
        self.open("bob")
        sell = ok(self, self.order("bob", "SELL", "OPEN", 3800.2, 4))
        buy = ok(self, self.order("alice", "BUY", "OPEN", 3800.4, 2))
        self.assertEqual(buy["status"], "Filled")
        got = ok(self, self.srv.get(f"/api/order/{sell['order_id']}"))
        self.assertEqual(got["status"], "PartiallyFilled")
        self.assertEqual(got["volume_left"], 2)
        self.assertEqual(got["filled_volume"], 2)
        trades = ok(self, self.srv.get("/api/order/user/alice/trades"))
        self.assertEqual(len(trades), 1)
        self.assertEqual(trades[0]["price"], 3800.2)  # the resting order's price
        self.assertEqual(trades[0]["volume"], 2)

        # cancelling bob's remainder releases every frozen amount
        ok(self, self.srv.post("/api/order/cancel", {"user_id": "bob", "order_id": sell["order_id"]}))
        bob = self.account("bob")
        self.assertAlmostEqual(bob["frozen_margin"], 0.0, places=6)
        self.assertAlmostEqual(bob["frozen_commission"], 0.0, places=6)
        self.assertAlmostEqual(bob["available"], bob["balance"] - bob["margin"], places=6)
        err(self, self.srv.post("/api/order/cancel", {"user_id": "bob", "order_id": sell["order_id"]}),
            3002, 409)

        # positions: alice long 2, bob short 2
        pos = ok(self, self.srv.get("/api/position/alice"))
        self.assertEqual(pos[0]["volume_long"], 2)
        pos = ok(self, self.srv.get("/api/position/account/bob"))
        self.assertEqual(pos[0]["volume_short"], 2)

        # alice closes at 3810.2 against bob's buy-to-close: (3810.2 - 3800.2) * 2 * 300 = 6000
        ok(self, self.order("bob", "BUY", "CLOSE", 3810.2, 2))
        close = ok(self, self.order("alice", "SELL", "CLOSE", 3810.2, 2))
        self.assertEqual(close["status"], "Filled")
        alice = self.account("alice")
        self.assertAlmostEqual(alice["close_profit"], 6000.0, places=2)
        fees = (3800.2 * 2 + 3810.2 * 2) * 300 * 0.000023
        self.assertAlmostEqual(alice["commission"], fees, places=4)
        self.assertAlmostEqual(alice["balance"], 1000000 + 6000 - fees, places=2)
        self.assertAlmostEqual(alice["margin"], 0.0, places=6)
        page = ok(self, self.srv.get("/api/trades/user/alice?page=1&size=1"))
        self.assertEqual(page["total"], 2)
        self.assertEqual(len(page["trades"]), 1)
        self.assertEqual(page["trades"][0]["offset"], "CLOSE")  # newest first

    def test_ownership(self):
        self.open("owner1")
        self.open("other1")
        o = ok(self, self.order("owner1", "BUY", "OPEN", 3700, 1))
        # another account cannot cancel it: the order is not found in that account
        err(self, self.srv.post("/api/order/cancel", {"user_id": "other1", "order_id": o["order_id"]}),
            3001, 404)
        got = ok(self, self.srv.get(f"/api/order/{o['order_id']}"))
        self.assertEqual(got["status"], "Submitted")

    def test_deposit_withdraw(self):
        self.open("cash1", 1000)
        d = ok(self, self.srv.post("/api/account/deposit", {"user_id": "cash1", "amount": 500}))
        self.assertEqual(d["balance"], 1500.0)
        self.assertRegex(d["transaction_id"], r"^TXN\d{8}\d{8}$")
        w = ok(self, self.srv.post("/api/account/withdraw", {"user_id": "cash1", "amount": 200}))
        self.assertEqual(w["balance"], 1300.0)
        msg = err(self, self.srv.post("/api/account/withdraw", {"user_id": "cash1", "amount": 5000}),
                  2004, 400)
        self.assertIn("5000", msg)
        err(self, self.srv.post("/api/account/deposit", {"user_id": "cash1", "amount": -5}), 2003, 400)
        self.assertEqual(self.account("cash1")["balance"], 1300.0)

    def test_errors_change_nothing(self):
        self.open("err1")
        before = self.account("err1")
        cases = [
            (self.order("nobody", "BUY", "OPEN", 3800, 1), 1006, 404),
            (self.srv.post("/api/order/submit", {"user_id": "err1", "instrument_id": "XX9999",
                                                  "direction": "BUY", "offset": "OPEN",
                                                  "volume": 1, "price": 3800}), 1007, 404),
            (self.order("err1", "BUY", "OPEN", 3800.1, 1), 1008, 400),   # off tick
            (self.order("err1", "BUY", "OPEN", 5000, 1), 1008, 400),     # above the limit
            (self.order("err1", "BUY", "OPEN", 3800, 0), 1008, 400),
            (self.order("err1", "BUY", "OPEN", 3800, 1.5), 1008, 400),
            (self.order("err1", "UP", "OPEN", 3800, 1), 1008, 400),
            (self.order("err1", "BUY", "OPEN", "abc", 1), 1008, 400),
            (self.order("err1", "BUY", "OPEN", 3800, 100), 1001, 422),   # 11.4M of margin
            (self.order("err1", "SELL", "CLOSE", 3800, 1), 2005, 422),
            (self.srv.post("/api/order/submit", raw=b'{"user_id": "err1", '), 9003, 400),
            (self.srv.post("/api/order/submit", raw=b'[1,2,3]'), 9003, 400),
            (self.srv.post("/api/order/submit", {"user_id": "err1"}), 1008, 400),
            (self.srv.get("/api/account/nobody"), 1006, 404),
            (self.srv.get("/api/order/O99999999999999999999"), 3001, 404),
            (self.srv.post("/api/order/cancel", {"user_id": "err1", "order_id": "nope"}), 3001, 404),
            (self.open_raw("err1"), 2001, 409),
        ]
        for (status, body), code, http_status in cases:
            with self.subTest(code=code, body=body):
                self.assertEqual(status, http_status, body)
                self.assertEqual(body["error"]["code"], code, body)
                self.assertTrue(body["error"]["message"])
        self.assertEqual(self.account("err1"), before)

    def test_ids_are_checked_not_cut(self):
        """An id longer than any id would be cut to fit and name another account; an id a URL
        cannot carry would make an account nobody can read. Both are refused, naming the id."""
        long_id = "L" * 63
        self.open(long_id)
        for path in (f"/admin/account/{long_id}ZZZZ/freeze", f"/api/admin/account/{long_id}Z/freeze"):
            status, body = self.srv.post(path, {})
            self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
            self.assertIn("67 bytes" if path.endswith("ZZZZ/freeze") else "64 bytes",
                          body["error"]["message"])
        status, body = self.srv.get(f"/api/account/{long_id}ZZ")
        self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
        self.assertFalse(self.account(long_id)["is_frozen"])
        status, body = self.srv.request("PUT", "/admin/instrument/CFFEX.IF2501XXXXXXXXXXXXXXXXXXXXXX/suspend")
        self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
        self.assertIn("CFFEX.IF2501XXXX", body["error"]["message"])
        self.assertEqual(ok(self, self.srv.get("/api/market/tick/IF2501"))["instrument_id"],
                         "CFFEX.IF2501")
        for bad in ("x/y", "a b", "..", "list", "open", "é", "x%2Fy", "a?b"):
            with self.subTest(account_id=bad):
                status, body = self.srv.post("/api/account/open", {
                    "user_id": "idcheck", "account_id": bad, "init_cash": 1})
                self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
                self.assertIn("account id", body["error"]["message"])
        status, body = self.srv.post("/api/account/open", {"user_id": "a/b", "init_cash": 1})
        self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
        status, body = self.srv.get("/api/account/list")
        ids = {a["account_id"] for a in ok(self, (status, body))} if status == 200 else set()
        self.assertFalse(ids & {"x/y", "a b", "..", "a/b"})
        self.open("ok.id-1@desk:2")
        self.assertEqual(self.account("ok.id-1@desk:2")["user_id"], "ok.id-1@desk:2")

    def test_trade_page_arguments_are_checked(self):
        self.open("pager")
        for query in ("page=9223372036854775807&size=1000", "page=0", "page=abc", "size=1001",
                      "size=-5"):
            with self.subTest(query=query):
                status, body = self.srv.get(f"/api/trades/user/pager?{query}")
                self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
                self.assertIn(query.split("&")[0].split("=")[1], body["error"]["message"])
        ok(self, self.srv.get("/api/trades/user/pager?page=2&size=10"))
        # a filter too long for its field is refused, not dropped (which would answer unfiltered)
        for path, arg in (("/api/trades/user/pager?start_date=2025-01-01T00", "start_date"),
                          ("/api/trades/user/pager?instrument_id=" + "I" * 80, "instrument_id"),
                          ("/api/market/kline/IF2501?period=" + "m" * 40, "period"),
                          ("/api/market/orderbook/IF2501?depth=" + "1" * 70, "depth")):
            with self.subTest(path=path):
                status, body = self.srv.get(path)
                self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
                self.assertIn(arg, body["error"]["message"])
        ok(self, self.srv.get("/api/trades/user/pager?start_date=2025-01-01"))

    def test_date_arguments_are_checked(self):
        """start_date and end_date are compared as YYYY-MM-DD text: anything else would pick
        the wrong days without a word, so it is refused, naming the argument and the value."""
        self.open("dated")
        for arg in ("start_date", "end_date"):
            for bad in ("notadate", "2025-1-5", "2025/01/05", "20250105", "2025-13-01",
                        "2025-02-30", "2025-01-00"):
                with self.subTest(arg=arg, value=bad):
                    status, body = self.srv.get(f"/api/trades/user/dated?{arg}={bad}")
                    self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
                    self.assertIn(arg, body["error"]["message"])
                    self.assertIn(bad, body["error"]["message"])
        ok(self, self.srv.get("/api/trades/user/dated?start_date=2024-02-29&end_date=2025-12-31"))

    def test_date_arguments_are_checked_by_the_history(self):
        """The history store's trade pages and equity curve refuse the same dates, with the
        same code as every other malformed URL argument."""
        with Server(storage=True) as srv:
            ok(self, srv.post("/api/account/open", {"user_id": "hist", "init_cash": 1000}))
            for path in ("/api/trades/user/hist?start_date=2025-02-30",
                         "/api/trades/user/hist?end_date=2025/01/05",
                         "/api/account/hist/curve?start_date=2025-1-5",
                         "/api/account/hist/curve?end_date=bad"):
                with self.subTest(path=path):
                    status, body = srv.get(path)
                    self.assertEqual((status, body["error"]["code"]), (400, 9003), body)
                    arg, value = path.split("?")[1].split("=")
                    self.assertIn(arg, body["error"]["message"])
                    self.assertIn(value, body["error"]["message"])
            ok(self, srv.get("/api/trades/user/hist?start_date=2025-01-01"))
            ok(self, srv.get("/api/account/hist/curve?start_date=2025-01-01&end_date=2025-01-31"))

    def test_trade_page_of_an_unknown_instrument(self):
        """An instrument filter naming no instrument is 404 (1007), as the market routes answer
        it, rather than an empty page that reads as "no trades in it"; in memory and in the
        history store alike."""
        self.open("insfilter")
        msg = err(self, self.srv.get("/api/trades/user/insfilter?instrument_id=NOPE"), 1007, 404)
        self.assertIn("NOPE", msg)
        ok(self, self.srv.get("/api/trades/user/insfilter?instrument_id=IF2501"))
        with Server(storage=True) as srv:
            ok(self, srv.post("/api/account/open", {"user_id": "insfilter", "init_cash": 1000}))
            msg = err(self, srv.get("/api/trades/user/insfilter?instrument_id=NOPE"), 1007, 404)
            self.assertIn("NOPE", msg)
            ok(self, srv.get("/api/trades/user/insfilter?instrument_id=IF2501"))
            # an unknown account still comes first
            err(self, srv.get("/api/trades/user/nobody?instrument_id=NOPE"), 1006, 404)

    def test_orders_check_that_the_account_belongs_to_user_id(self):
        """The seed: the server verifies that account_id belongs to user_id, so a slip cannot
        trade or cancel on another's account. Without tokens the body's user_id is the only
        claim there is: an account of another owner is 403 (9006) and nothing changes."""
        self.open("own1")
        self.open("own2")
        msg = err(self, self.order("own1", "BUY", "OPEN", 3700, 1, account_id="own2"), 9006, 403)
        self.assertIn("own1", msg)
        self.assertIn("own2", msg)
        self.assertEqual(ok(self, self.srv.get("/api/order/user/own2")), [])
        placed = ok(self, self.order("own2", "BUY", "OPEN", 3700, 1))
        err(self, self.srv.post("/api/order/cancel", {
            "user_id": "own1", "account_id": "own2", "order_id": placed["order_id"]}), 9006, 403)
        self.assertEqual(ok(self, self.srv.get(f"/api/order/{placed['order_id']}"))["status"],
                         "Submitted")
        # the owner, named by its id or its username, acts on its accounts
        user = ok(self, self.srv.post("/api/auth/register",
                                      {"username": "ownerbob", "password": "pw-ownerbob"}))
        acc = ok(self, self.srv.post(f"/api/user/{user['user_id']}/account/create",
                                     {"init_cash": 1000000}))["account_id"]
        for who in (user["user_id"], "ownerbob"):
            placed = ok(self, self.order(who, "BUY", "OPEN", 3700, 1, account_id=acc))
            ok(self, self.srv.post("/api/order/cancel", {
                "user_id": who, "account_id": acc, "order_id": placed["order_id"]}))
        err(self, self.order("own1", "BUY", "OPEN", 3700, 1, account_id=acc), 9006, 403)

    def test_trades_from_the_history_keep_their_doubles(self):
        """Prices and money are doubles (SPEC 3) whether a trade comes from the engine's memory
        or from the history store: 3800.0, not 3800."""
        def fields(trade):
            return {k: type(trade[k]) for k in ("price", "commission", "close_profit")}
        for storage in (False, True):
            with self.subTest(storage=storage), Server(storage=storage) as srv:
                for acc in ("dbl1", "dbl2"):
                    ok(self, srv.post("/api/account/open", {"user_id": acc, "init_cash": 1000000}))
                for acc, side in (("dbl1", "BUY"), ("dbl2", "SELL")):
                    ok(self, srv.post("/api/order/submit", {
                        "user_id": acc, "instrument_id": "IF2501", "direction": side,
                        "offset": "OPEN", "volume": 1, "price": 3800, "order_type": "LIMIT"}))
                listed = ok(self, srv.get("/api/order/user/dbl1/trades"))
                paged = ok(self, srv.get("/api/trades/user/dbl1"))["trades"]
                self.assertEqual(len(listed), 1)
                self.assertEqual(len(paged), 1)
                for trade in listed + paged:
                    self.assertEqual(fields(trade), dict.fromkeys(fields(trade), float), trade)

    def test_open_without_an_account_id(self):
        """Neither user_id nor account_id: the request is malformed (9003, naming both fields),
        not an invalid order (1008)."""
        for body in ({}, {"init_cash": 1000}, {"user_id": "", "account_id": ""}):
            with self.subTest(body=body):
                message = err(self, self.srv.post("/api/account/open", body), 9003, 400)
                self.assertIn("user_id", message)
                self.assertIn("account_id", message)

    def open_raw(self, user):
        return self.srv.post("/api/account/open", {"user_id": user, "init_cash": 1})

    def test_case_insensitive_enums(self):
        self.open("enum1")
        ok(self, self.srv.post("/api/order/submit", {
            "user_id": "enum1", "instrument_id": "CFFEX.IF2501", "direction": "Buy",
            "offset": "Open", "volume": 1, "price": 3600, "order_type": "Limit"}))

    def test_routes_and_limits(self):
        status, body = self.srv.get("/api/nothing/here")
        self.assertEqual(status, 404)
        self.assertFalse(body["success"])
        # a body over the limit is refused from its Content-Length, before it is read
        head = raw_http(self.srv.port, b"POST /api/order/submit HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n" + b"x" * 1024)
        self.assertTrue(head.startswith(b"HTTP/1.1 413"), head[:200])
        insts = ok(self, self.srv.get("/api/market/instruments"))
        self.assertEqual({i["instrument_id"] for i in insts},
                         {"CFFEX.IF2501", "CFFEX.IC2501", "CFFEX.IH2501"})
        book = ok(self, self.srv.get("/api/market/orderbook/IF2501?depth=3"))
        self.assertEqual(book["instrument_id"], "CFFEX.IF2501")
        self.assertLessEqual(len(book["bids"]), 3)
        tick = ok(self, self.srv.get("/api/market/tick/IF2501"))
        self.assertAlmostEqual(tick["upper_limit"], 4180.0)

    def test_user_accounts(self):
        created = ok(self, self.srv.post("/api/user/u-42/account/create",
                                         {"account_name": "main", "init_cash": 5000}))
        self.assertRegex(created["account_id"], r"^ACC_[0-9a-f]{32}$")
        accounts = ok(self, self.srv.get("/api/user/u-42/accounts"))
        self.assertEqual([a["account_id"] for a in accounts], [created["account_id"]])
        detail = ok(self, self.srv.get(f"/api/account/detail/{created['account_id']}"))
        self.assertEqual(detail["accounts"]["balance"], 5000.0)


if __name__ == "__main__":
    unittest.main()
