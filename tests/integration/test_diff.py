"""DIFF (shinnytech/diff; SPEC 6, issue 6) against the real server.

(a) The raw protocol over /ws/diff with a small Python client: the server speaks first, a peek is
held until something changes and is answered by exactly one rtn_data, many changes between two
peeks become one rtn_data, a client that never peeks is owed one state-sized patch, errors come
as notifies with the SPEC codes, and folding every rtn_data with RFC 7386 reproduces the REST view
of the account to the cent.
(b) The official TianQin JavaScript SDK (npm tqsdk, installed by scripts/setup) through
diff/tq_client.js: logins, quotes, crossing orders from several sessions, orders ALIVE ->
FINISHED, trades, positions, account fields equal to REST, and set_chart bars equal to
/api/klines."""
import copy
import json
import os
import subprocess
import time
import unittest

import qaex
from trading import Client, get, ok, open_accounts, order


class Server(qaex.Server):
    """qaex.Server that, when it stops, fails on any sanitizer report in the server's output."""

    def close(self):
        self.stop()
        out = self.output()
        super().close()
        for mark in ("runtime error:", "AddressSanitizer", "LeakSanitizer"):
            if mark in out:
                raise AssertionError(f"sanitizer report from the server:\n{out[-4000:]}")

HERE = os.path.dirname(os.path.abspath(__file__))
DIFF_DIR = os.path.join(HERE, "diff")
HAVE_SDK = os.path.isdir(os.path.join(DIFF_DIR, "node_modules"))
CENT = 0.005




def all_trades(srv, user):
    """Every trade of an account the server keeps, through the paged REST route."""
    out, page = [], 1
    while True:
        p = get(srv, f"/api/trades/user/{user}?page={page}&size=1000")
        out += p["trades"]
        if not p["trades"] or len(out) >= p["total"]:
            return out
        page += 1


def merge(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge(target.get(k), v)
    return target


class Diff(Client):
    """A DIFF session: folds every rtn_data into `tree`, keeps notifies apart."""

    def __init__(self, port, path="/ws/diff", **kw):
        super().__init__(port, path, **kw)
        self.tree = {}
        self.notifies = []
        self.rtn_count = 0

    def fold(self, m):
        assert m.get("aid") == "rtn_data", m
        assert isinstance(m.get("data"), list), m
        self.rtn_count += 1
        for part in m["data"]:
            if "notify" in part:
                # DIFF clients drop a data element carrying a notify: it must stand alone
                assert list(part) == ["notify"], part
                self.notifies.extend(part["notify"].values())
            else:
                self.tree = merge(self.tree, part)
        return m

    def rtn(self, timeout=10.0):
        m = self.next(timeout)
        return self.fold(m)

    def peek(self, timeout=10.0):
        self.send({"aid": "peek_message"})
        return self.rtn(timeout)

    def quiet(self, seconds=0.3):
        got = self.drain(seconds)
        for m in got:
            if m.get("aid") == "rtn_data":
                self.fold(m)
        return got

    def login(self, user, password="pw"):
        self.send({"aid": "req_login", "bid": "qaexchange", "user_name": user,
                   "password": password})
        m = self.peek()
        assert user in self.tree.get("trade", {}), m
        assert any(n.get("code") == 1000 for n in self.notifies), self.notifies
        return m

    def settle(self, quiet=0.5, limit=10.0):
        """Peeks until nothing more is owed (a peek stays unanswered for `quiet` s)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.send({"aid": "peek_message"})
            try:
                self.rtn(quiet)
            except TimeoutError:
                return
        raise AssertionError("the session kept receiving data for %.0fs" % limit)


ACCOUNT_FIELDS = ("pre_balance", "deposit", "withdraw", "static_balance", "close_profit",
                  "commission", "position_profit", "float_profit", "balance", "margin",
                  "frozen_margin", "frozen_commission", "available")
POSITION_FIELDS = ("volume_long_today", "volume_long_his", "volume_long", "volume_short_today",
                   "volume_short_his", "volume_short", "volume_long_frozen_today",
                   "volume_short_frozen_today", "open_price_long", "open_price_short",
                   "position_price_long", "position_price_short", "float_profit_long",
                   "float_profit_short", "position_profit_long", "position_profit_short",
                   "position_profit", "float_profit", "margin_long", "margin_short", "margin",
                   "last_price")
FINISHED = {"Filled", "Cancelled", "Rejected", "PartiallyCancelled", "PartialCancelled",
            "Expired"}


class RestCompare:
    def assert_cent(self, got, want, what):
        self.assertIsInstance(got, (int, float), what)
        self.assertLessEqual(abs(got - want), CENT, f"{what}: DIFF {got} REST {want}")

    def assert_matches_rest(self, srv, tree, user, check_trades=True):
        t = tree["trade"][user]
        acc = get(srv, f"/api/account/{user}")
        cny = t["accounts"]["CNY"]
        for k in ACCOUNT_FIELDS:
            self.assert_cent(cny[k], acc[k], f"{user} accounts.CNY.{k}")
        self.assertAlmostEqual(cny["risk_ratio"], acc["risk_ratio"], places=9)
        rest_pos = {p["instrument_id"]: p for p in get(srv, f"/api/position/{user}")}
        diff_pos = dict(t.get("positions", {}))
        # REST lists the positions holding lots; DIFF may also keep an empty one
        for ins in set(diff_pos) - set(rest_pos):
            for k in ("volume_long", "volume_short", "volume_long_today", "volume_short_today",
                      "volume_long_his", "volume_short_his", "margin"):
                self.assertEqual(diff_pos[ins].get(k, 0), 0, (user, ins, k, diff_pos[ins]))
        self.assertLessEqual(set(rest_pos), set(diff_pos), f"{user} positions")
        for ins, p in rest_pos.items():
            for k in POSITION_FIELDS:
                if k in p:
                    self.assert_cent(diff_pos[ins][k], p[k], f"{user} positions.{ins}.{k}")
        rest_orders = {o["order_id"]: o for o in get(srv, f"/api/order/user/{user}")}
        diff_orders = t.get("orders", {})
        self.assertEqual(set(diff_orders), set(rest_orders), f"{user} orders")
        for oid, o in rest_orders.items():
            d = diff_orders[oid]
            self.assertEqual(d["volume_left"], o["volume_left"], (user, oid, d, o))
            self.assertEqual(d["volume_orign"], o["volume_orign"], (user, oid))
            self.assertEqual((d["direction"], d["offset"]), (o["direction"], o["offset"]))
            self.assert_cent(d["limit_price"], o["limit_price"], f"{oid}.limit_price")
            self.assertEqual(d["status"], "FINISHED" if o["status"] in FINISHED else "ALIVE",
                             (user, oid, d["status"], o["status"]))
        if check_trades:
            rest_trades = {x["trade_id"]: x for x in all_trades(srv, user)}
            diff_trades = t.get("trades", {})
            self.assertEqual(set(diff_trades), set(rest_trades), f"{user} trades")
            for tid, x in rest_trades.items():
                d = diff_trades[tid]
                self.assertEqual((d["order_id"], d["volume"], d["direction"], d["offset"]),
                                 (x["order_id"], x["volume"], x["direction"], x["offset"]))
                self.assert_cent(d["price"], x["price"], f"{tid}.price")
                self.assert_cent(d["commission"], x["commission"], f"{tid}.commission")


# ---------------------------------------------------------------- (a) the raw protocol

class DiffProtocolTest(RestCompare, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        try:
            open_accounts(cls.srv, ["dA", "dB", "dC", "dD", "dG", "dH", "dK", "dS"])
            open_accounts(cls.srv, ["dPoor"], cash=50_000)
            open_accounts(cls.srv, ["dE", "dF"], cash=1_000_000_000)
        except Exception:
            cls.srv.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def session(self, path="/ws/diff"):
        d = Diff(self.srv.port, path)
        self.addCleanup(d.close)
        first = d.next(5.0)
        self.assertEqual(first.get("aid"), "rtn_brokers", first)  # the server speaks first
        self.assertIn("qaexchange", first["brokers"])
        return d

    def test_server_speaks_first_and_login(self):
        d = self.session()
        d.login("dS")
        t = d.tree["trade"]["dS"]
        self.assertEqual(t["trade_more_data"], False)
        self.assertTrue(t["session"]["trading_day"])
        self.assertEqual(t["accounts"]["CNY"]["balance"], 10_000_000)
        self.assertEqual((t["positions"], t["orders"], t["trades"]), ({}, {}, {}))
        n = [x for x in d.notifies if x.get("code") == 1000][0]
        self.assertEqual(n["level"], "INFO")
        self.assert_matches_rest(self.srv, d.tree, "dS")
        # a /ws session turns DIFF with its first aid message
        w = Diff(self.srv.port, "/ws")
        self.addCleanup(w.close)
        w.send({"aid": "req_login", "bid": "qaexchange", "user_name": "dA", "password": "x"})
        first = w.next(5.0)
        self.assertEqual(first.get("aid"), "rtn_brokers")
        w.peek()
        self.assertIn("dA", w.tree["trade"])

    def test_peek_is_held_until_a_change(self):
        d = self.session()
        # before anything is owed a peek is held, even before login
        d.send({"aid": "peek_message"})
        self.assertEqual(d.quiet(0.3), [], "a peek with nothing owed was answered")
        d.send({"aid": "req_login", "bid": "qaexchange", "user_name": "dB", "password": "x"})
        d.rtn(5.0)  # the held peek takes the login's data
        self.assertIn("dB", d.tree["trade"])
        self.assertEqual(d.quiet(0.3), [], "more than one rtn_data for one peek")
        d.send({"aid": "peek_message"})
        self.assertEqual(d.quiet(0.3), [], "a peek with nothing owed was answered")
        o = order(self.srv, "dB", "IF2501", "BUY", "OPEN", 1, 3700.0)
        m = d.rtn(5.0)
        self.assertEqual(m["aid"], "rtn_data")
        self.assertEqual(d.tree["trade"]["dB"]["orders"][o["order_id"]]["status"], "ALIVE")
        # exactly one rtn_data per peek: further changes wait for the next peek
        o2 = order(self.srv, "dB", "IF2501", "BUY", "OPEN", 1, 3700.2)
        self.assertEqual(d.quiet(0.3), [], "data sent without a peek")
        d.peek(5.0)
        self.assertIn(o2["order_id"], d.tree["trade"]["dB"]["orders"])
        self.assertEqual(d.quiet(0.3), [])
        # peeks are a flag, not a counter: two peeks, one change, one answer
        d.send({"aid": "peek_message"})
        d.send({"aid": "peek_message"})
        order(self.srv, "dB", "IF2501", "BUY", "OPEN", 1, 3700.4)
        d.rtn(5.0)
        self.assertEqual(d.quiet(0.4), [], "two answers to one pending peek")
        d.settle()
        self.assert_matches_rest(self.srv, d.tree, "dB")

    def test_changes_between_two_peeks_coalesce(self):
        d = self.session()
        d.login("dC")
        base = d.rtn_count
        ids = []
        for i in range(40):
            ids.append(order(self.srv, "dC", "IH2501", "SELL", "OPEN", 1,
                             round(2810.0 + (i % 10) * 0.2, 1))["order_id"])
        # ten of them fill against dD
        o = order(self.srv, "dD", "IH2501", "BUY", "OPEN", 10, 2810.0 + 0.2 * 9)
        self.assertEqual(o["volume_left"], 0)
        time.sleep(0.3)
        self.assertEqual(d.quiet(0.2), [], "data sent without a peek")
        d.peek(5.0)
        self.assertEqual(d.quiet(0.5), [], "more than one rtn_data for one peek")
        self.assertEqual(d.rtn_count - base, 1)
        orders = d.tree["trade"]["dC"]["orders"]
        self.assertTrue(set(ids) <= set(orders))
        self.assertEqual(sum(1 for i in ids if orders[i]["status"] == "FINISHED"), 10)
        self.assertEqual(len(d.tree["trade"]["dC"]["trades"]), 10)
        self.assert_matches_rest(self.srv, d.tree, "dC")

    def test_login_failure(self):
        d = self.session()
        d.send({"aid": "req_login", "bid": "qaexchange", "user_name": "no_such_account",
                "password": "x"})
        d.peek(5.0)
        errs = [n for n in d.notifies if n.get("level") == "ERROR"]
        self.assertEqual([n["code"] for n in errs], [9001], d.notifies)
        self.assertNotIn("no_such_account", d.tree.get("trade", {}))
        # the session stays usable and can log in afterwards
        d.login("dG")

    def test_trading_before_login(self):
        d = self.session()
        d.send({"aid": "insert_order", "user_id": "dG", "order_id": "early1", "exchange_id": "CFFEX",
                "instrument_id": "IF2501", "direction": "BUY", "offset": "OPEN", "volume": 1,
                "price_type": "LIMIT", "limit_price": 3700, "volume_condition": "ANY",
                "time_condition": "GFD"})
        d.send({"aid": "cancel_order", "user_id": "dG", "order_id": "early1"})
        d.peek(5.0)
        d.quiet(0.3)
        self.assertEqual([n["code"] for n in d.notifies], [9002, 9002], d.notifies)
        self.assertNotIn("trade", d.tree)
        st, _ = self.srv.get("/api/order/early1?account_id=dG")
        self.assertEqual(st, 404)

    def insert(self, d, oid, **kw):
        msg = {"aid": "insert_order", "user_id": kw.pop("user", "dH"), "order_id": oid,
               "exchange_id": "CFFEX", "instrument_id": "IF2501", "direction": "BUY",
               "offset": "OPEN", "volume": 1, "price_type": "LIMIT", "limit_price": 3700.0,
               "volume_condition": "ANY", "time_condition": "GFD"}
        msg.update(kw)
        d.send(msg)

    def test_refused_orders_are_finished_with_a_notify(self):
        d = self.session()
        d.login("dPoor")
        cases = [("bad_funds", {"limit_price": 3700.0, "volume": 1}, 1001),
                 ("bad_ins", {"instrument_id": "XX9999"}, 1007),
                 ("bad_tick", {"limit_price": 3700.1}, 1008),
                 ("bad_limit", {"limit_price": 9000.0}, 1008),
                 ("bad_close", {"offset": "CLOSE", "direction": "SELL"}, 2005)]
        for oid, kw, code in cases:
            self.insert(d, oid, user="dPoor", **kw)
            d.settle()
            o = d.tree["trade"]["dPoor"]["orders"].get(oid)
            self.assertIsNotNone(o, f"refused order {oid} not shown")
            self.assertEqual(o["status"], "FINISHED", o)
            self.assertTrue(o["last_msg"], o)
            self.assertEqual(d.notifies[-1]["level"], "ERROR", d.notifies)
            self.assertEqual(d.notifies[-1]["code"], code, (oid, d.notifies[-1]))
        self.assertEqual(d.tree["trade"]["dPoor"]["accounts"]["CNY"]["balance"], 50_000)
        # cancelling an unknown order: a notify with 3001
        d.send({"aid": "cancel_order", "user_id": "dPoor", "order_id": "nope"})
        d.settle()
        self.assertEqual(d.notifies[-1]["code"], 3001, d.notifies[-1])

    def test_malformed_orders_are_finished_with_a_notify(self):
        """An insert_order refused before it reaches the engine (a field missing or of the wrong
        kind) still closes the client's ALIVE placeholder of it, unless its id names an order
        that exists: that one stays as it is."""
        open_accounts(self.srv, ["dM"])
        d = self.session()
        d.login("dM")
        bad = [("m_no_price", {"limit_price": None}),  # a LIMIT order needs a price
               ("m_dir", {"direction": "UP"}),
               ("m_frac", {"volume": 1.5}),
               ("m_tc", {"time_condition": "GFS"})]
        for oid, kw in bad:
            msg = {"aid": "insert_order", "user_id": "dM", "order_id": oid, "exchange_id": "CFFEX",
                   "instrument_id": "IF2501", "direction": "BUY", "offset": "OPEN", "volume": 1,
                   "price_type": "LIMIT", "limit_price": 3700.0, "volume_condition": "ANY",
                   "time_condition": "GFD"}
            msg.update(kw)
            msg = {k: v for k, v in msg.items() if v is not None}
            d.send(msg)
            d.settle()
            o = d.tree["trade"]["dM"].get("orders", {}).get(oid)
            self.assertIsNotNone(o, f"malformed order {oid} not shown")
            self.assertEqual((o["order_id"], o["status"]), (oid, "FINISHED"), o)
            self.assertTrue(o["last_msg"], o)
            self.assertEqual((d.notifies[-1]["level"], d.notifies[-1]["code"]), ("ERROR", 1008),
                             (oid, d.notifies[-1]))
        # a malformed order reusing a live order's id: a notify, and the live order untouched
        self.insert(d, "m_live", user="dM", limit_price=3700.0)
        d.settle()
        self.insert(d, "m_live", user="dM", volume=2.5)
        d.settle()
        self.assertEqual(d.notifies[-1]["code"], 1008, d.notifies[-1])
        o = d.tree["trade"]["dM"]["orders"]["m_live"]
        self.assertEqual((o["status"], o["volume_left"]), ("ALIVE", 1), o)
        self.assertEqual(get(self.srv, "/api/account/dM")["balance"], 10_000_000)

    def test_unknown_aids_are_ignored(self):
        d = self.session()
        d.login("dH")
        for aid in ("make_coffee", "qry_settlement_info", "confirm_settlement"):
            d.send({"aid": aid, "trading_day": 20250102})
        d.send_text("{\"aid\": \"x\", \"nested\": {\"deep\": [1, 2, {}]}}")
        d.send({"aid": "peek_message"})
        self.assertEqual(d.quiet(0.3), [])
        self.insert(d, "after_unknown", limit_price=3700.0)
        d.rtn(5.0)
        d.settle()
        self.assertEqual(d.tree["trade"]["dH"]["orders"]["after_unknown"]["status"], "ALIVE")
        self.assertFalse([n for n in d.notifies if n.get("level") == "ERROR"], d.notifies)
        self.assert_matches_rest(self.srv, d.tree, "dH")

    def test_duplicate_order_id_leaves_the_original(self):
        d = self.session()
        d.login("dK")
        self.insert(d, "dup1", user="dK", limit_price=3700.0)
        d.settle()
        self.assertEqual(d.tree["trade"]["dK"]["orders"]["dup1"]["status"], "ALIVE")
        # the same client order id again: refused with 3003, the live original stays as it is
        self.insert(d, "dup1", user="dK", limit_price=3700.2, volume=2)
        d.settle()
        self.assertEqual(d.notifies[-1]["level"], "ERROR")
        self.assertEqual(d.notifies[-1]["code"], 3003, d.notifies[-1])
        rest = get(self.srv, "/api/order/dup1?account_id=dK")
        self.assertEqual((rest["volume_left"], rest["limit_price"]), (1, 3700.0))
        o = d.tree["trade"]["dK"]["orders"]["dup1"]
        self.assertEqual((o["status"], o["volume_left"], o["limit_price"]), ("ALIVE", 1, 3700.0),
                         "the refused duplicate overwrote the live order in the client's tree")
        self.assert_matches_rest(self.srv, d.tree, "dK")

    def test_fold_equals_rest_while_trading(self):
        """A client that peeks all the time: partial fills, a cancel, a close with profit,
        a move of the mark price, transfers both ways."""
        d = self.session()
        d.login("dG")
        d.send({"aid": "subscribe_quote", "ins_list": "CFFEX.IC2501"})
        d.send({"aid": "peek_message"})
        steps = [
            lambda: self.insert(d, "g1", user="dG", instrument_id="IC2501", direction="SELL",
                                volume=3, limit_price=5620.0),
            lambda: order(self.srv, "dD", "IC2501", "BUY", "OPEN", 2, 5620.0),
            lambda: d.send({"aid": "cancel_order", "user_id": "dG", "order_id": "g1"}),
            lambda: order(self.srv, "dD", "IC2501", "SELL", "CLOSE", 1, 5610.2),
            lambda: self.insert(d, "g2", user="dG", instrument_id="IC2501", direction="BUY",
                                offset="CLOSE", volume=1, limit_price=5610.2),
            lambda: order(self.srv, "dA", "IC2501", "SELL", "OPEN", 1, 5631.4),
            lambda: order(self.srv, "dD", "IC2501", "BUY", "OPEN", 1, 5631.4),
            lambda: d.send({"aid": "req_transfer", "future_account": "dG", "currency": "CNY",
                            "amount": 12345.67}),
            lambda: d.send({"aid": "req_transfer", "future_account": "dG", "currency": "CNY",
                            "amount": -2000.5}),
        ]
        for step in steps:
            step()
            d.quiet(0.15)
            d.send({"aid": "peek_message"})
        d.settle()
        t = d.tree["trade"]["dG"]
        self.assertEqual(t["orders"]["g1"]["status"], "FINISHED")
        self.assertEqual(t["orders"]["g1"]["volume_left"], 1)
        self.assertEqual(t["orders"]["g2"]["status"], "FINISHED")
        self.assertEqual(t["orders"]["g2"]["volume_left"], 0)
        cny = t["accounts"]["CNY"]
        self.assertAlmostEqual(cny["close_profit"], (5620.0 - 5610.2) * 200, delta=CENT)
        self.assertAlmostEqual(cny["position_profit"], (5620.0 - 5631.4) * 200, delta=CENT)
        self.assertAlmostEqual(cny["deposit"], 12345.67, delta=CENT)
        self.assertAlmostEqual(cny["withdraw"], 2000.5, delta=CENT)
        oks = [n for n in d.notifies if n.get("code") == 0]
        self.assertEqual(len(oks), 2, d.notifies)
        self.assertTrue(all(n["level"] == "INFO" for n in oks))
        q = d.tree["quotes"]["CFFEX.IC2501"]
        self.assertEqual((q["last_price"], q["volume"]), (5631.4, 4))
        # the instrument's terms quote.rst lists beside the prices ([risk] volume bounds)
        self.assertEqual((q["price_tick"], q["price_decs"], q["volume_multiple"]), (0.2, 1, 200))
        self.assertEqual((q["min_limit_order_volume"], q["max_limit_order_volume"],
                          q["min_market_order_volume"], q["max_market_order_volume"]),
                         (1, 10000, 1, 10000))
        self.assertEqual(d.tree["ins_list"], "CFFEX.IC2501")
        self.assert_matches_rest(self.srv, d.tree, "dG")
        # a withdrawal beyond the available funds: ERROR notify, nothing changes
        d.send({"aid": "req_transfer", "future_account": "dG", "currency": "CNY",
                "amount": -1e12})
        d.settle()
        self.assertEqual(d.notifies[-1]["level"], "ERROR")
        self.assertEqual(d.notifies[-1]["code"], 2004, d.notifies[-1])
        self.assert_matches_rest(self.srv, d.tree, "dG")

    def test_deleting_a_chart_reaches_the_client(self):
        """set_chart with view_width 0 deletes charts.<id> in the client's tree (a null in the
        rtn_data), also when the chart is deleted and made anew between two peeks."""
        d = self.session()
        chart = {"aid": "set_chart", "chart_id": "del1", "ins_list": "CFFEX.IH2501",
                 "duration": 60_000_000_000, "view_width": 5}
        d.send(chart)
        d.send({"aid": "set_chart", "chart_id": "keep", "ins_list": "CFFEX.IH2501",
                "duration": 3_000_000_000, "view_width": 5})
        d.settle()
        self.assertEqual(set(d.tree["charts"]), {"del1", "keep"}, d.tree.get("charts"))
        d.send(dict(chart, view_width=0))
        d.settle()
        self.assertEqual(set(d.tree["charts"]), {"keep"}, "a deleted chart stayed in the tree")
        # made anew with other settings, then deleted and made again before the next peek: the
        # client holds only the last request, not a merge of the old state into it
        d.send(dict(chart, view_width=7, left_kline_id=3))
        d.settle()
        d.send(dict(chart, view_width=0))
        d.send(dict(chart, view_width=9))
        d.settle()
        self.assertEqual(d.tree["charts"]["del1"]["state"]["view_width"], 9)
        self.assertNotIn("left_kline_id", d.tree["charts"]["del1"]["state"], d.tree["charts"])
        # a new request for a chart id replaces the old one without a deletion in between
        d.send(dict(chart, view_width=4, left_kline_id=2))
        d.settle()
        self.assertEqual(d.tree["charts"]["del1"]["state"]["left_kline_id"], 2)
        d.send(dict(chart, view_width=6))
        d.settle()
        state = d.tree["charts"]["del1"]["state"]
        self.assertEqual(state["view_width"], 6)
        self.assertNotIn("left_kline_id", state, "the old request stayed merged into the new")
        self.assertIn("right_id", d.tree["charts"]["del1"])

    def test_short_ids_are_followed_like_full_ids(self):
        """SPEC 2: short ids ("IH2501") are aliases everywhere. A quote subscribed and a chart
        set by the short id keep following the market, under the name the client used."""
        d = self.session()
        d.send({"aid": "subscribe_quote", "ins_list": "IH2501"})
        d.send({"aid": "set_chart", "chart_id": "short", "ins_list": "IH2501",
                "duration": 60_000_000_000, "view_width": 5})
        d.settle()
        volume = d.tree["quotes"]["IH2501"]["volume"]
        # (other tests leave orders in this book: a trade happens, at whatever price)
        order(self.srv, "dA", "IH2501", "SELL", "OPEN", 1, 2815.0)
        order(self.srv, "dD", "IH2501", "BUY", "OPEN", 1, 2815.0)
        d.settle()
        tick = get(self.srv, "/api/market/tick/IH2501")
        self.assertGreater(tick["volume"], volume)
        q = d.tree["quotes"]["IH2501"]
        self.assertEqual((q["last_price"], q["volume"]), (tick["last_price"], tick["volume"]),
                         "the quote subscribed by its short id went stale")
        bars = d.tree["klines"]["IH2501"]["60000000000"]
        last = bars["data"][str(bars["last_id"])]
        self.assertEqual(last["close"], tick["last_price"], bars)
        self.assertEqual(d.tree["charts"]["short"]["right_id"], bars["last_id"])

    def test_a_client_that_never_peeks(self):
        d = self.session()
        d.login("dE")
        base = d.rtn_count
        rss_before = rss_kb(self.srv.proc.pid)
        pairs = 1000  # 2,000 orders, all trading
        for i in range(pairs):
            price = round(3800.0 + (i % 7) * 0.2, 1)
            if i % 2 == 0:
                order(self.srv, "dE", "IF2501", "SELL", "OPEN", 1, price)
                order(self.srv, "dF", "IF2501", "BUY", "OPEN", 1, price)
            else:
                order(self.srv, "dF", "IF2501", "SELL", "CLOSE", 1, price)
                order(self.srv, "dE", "IF2501", "BUY", "CLOSE", 1, price)
        rss_after = rss_kb(self.srv.proc.pid)
        time.sleep(0.3)
        self.assertEqual(d.quiet(0.2), [], "data sent without a peek")
        d.send({"aid": "peek_message"})
        raw = d.next(30.0)
        size = len(json.dumps(raw))
        d.fold(raw)
        self.assertEqual(d.quiet(0.5), [], "more than one rtn_data for one peek")
        self.assertEqual(d.rtn_count - base, 1)
        t = d.tree["trade"]["dE"]
        self.assertEqual(len(t["orders"]), pairs)
        self.assertEqual(len(t["trades"]), pairs)
        self.assertTrue(all(o["status"] == "FINISHED" for o in t["orders"].values()))
        self.assert_matches_rest(self.srv, d.tree, "dE")
        # what was owed is the state, not a log of the 2,000 orders' events
        state = len(json.dumps(d.tree))
        self.assertLess(size, 1.2 * state + 20_000, f"rtn_data {size} bytes for a {state}-byte state")
        print(f"\nnever-peeking client: one rtn_data of {size} bytes for 2,000 orders "
              f"(state {state} bytes), server RSS +{rss_after - rss_before} kB")
        if not sanitized(self.srv.proc.pid):
            self.assertLess(rss_after - rss_before, 64 * 1024)


class DiffNewDayTest(RestCompare, unittest.TestCase):
    def test_settlement_starts_a_new_day_in_the_tree(self):
        """A settlement drops the day's finished orders and trades from memory and moves the
        trading day: a logged-in client's tree follows (orders and trades that REST no longer
        shows are deleted, the good-till-cancelled order stays, trading_day moves), and the
        next day's trading reaches it as before."""
        srv = Server()
        self.addCleanup(srv.close)
        open_accounts(srv, ["nA", "nB"])
        d = Diff(srv.port)
        self.addCleanup(d.close)
        d.next(5.0)
        d.login("nA")
        day0 = d.tree["trade"]["nA"]["trading_day"]
        d.send({"aid": "insert_order", "user_id": "nA", "order_id": "gtc1", "exchange_id": "CFFEX",
                "instrument_id": "IF2501", "direction": "BUY", "offset": "OPEN", "volume": 1,
                "price_type": "LIMIT", "limit_price": 3790.0, "volume_condition": "ANY",
                "time_condition": "GTC"})
        day_order = order(srv, "nA", "IF2501", "BUY", "OPEN", 2, 3800.0)["order_id"]
        order(srv, "nB", "IF2501", "SELL", "OPEN", 1, 3800.0)
        d.settle()
        t = d.tree["trade"]["nA"]
        self.assertEqual(set(t["orders"]), {"gtc1", day_order})
        self.assertEqual(len(t["trades"]), 1)
        ok(srv, "POST", "/admin/settlement/set-price",
           {"instrument_id": "IF2501", "settlement_price": 3810.0})
        ok(srv, "POST", "/admin/settlement/execute", {})
        d.settle()
        t = d.tree["trade"]["nA"]
        self.assertRegex(t["trading_day"], r"^\d{8}$")
        self.assertGreater(t["trading_day"], day0)
        self.assertEqual(t["session"]["trading_day"], t["trading_day"])
        self.assertEqual(set(t["orders"]), {"gtc1"}, "the day's orders stayed in the tree")
        self.assertEqual(t["orders"]["gtc1"]["status"], "ALIVE")
        self.assertEqual(t["trades"], {}, "the day's trades stayed in the tree")
        self.assertEqual(t["positions"]["CFFEX.IF2501"]["volume_long_his"], 1)
        self.assert_matches_rest(srv, d.tree, "nA")
        order(srv, "nB", "IF2501", "SELL", "OPEN", 1, 3790.0)
        d.settle()
        t = d.tree["trade"]["nA"]
        self.assertEqual(t["orders"]["gtc1"]["status"], "FINISHED")
        self.assertEqual(len(t["trades"]), 1)
        self.assert_matches_rest(srv, d.tree, "nA")


# ---------------------------------------------------------------- (b) the official SDK

def run_tq(srv, script, timeout=90):
    """Runs diff/tq_client.js over a script; returns its events (one dict per stdout line)."""
    p = subprocess.run(["node", os.path.join(DIFF_DIR, "tq_client.js"), "--server",
                        f"http://127.0.0.1:{srv.port}", "--timeout", "8"],
                       input=json.dumps(script), capture_output=True, text=True, timeout=timeout)
    events = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if p.returncode != 0:
        raise AssertionError(f"tq_client exited {p.returncode}: {events[-1:] if events else ''}\n"
                             f"{p.stderr[-3000:]}")
    return events


@unittest.skipUnless(HAVE_SDK or os.environ.get("CI"),
                     "tests/integration/diff/node_modules missing (scripts/setup installs it)")
class TqSdkTest(RestCompare, unittest.TestCase):
    """Four accounts on one SDK instance (one trade websocket each, plus market data)."""

    def test_sdk_trades_and_charts(self):
        srv = Server()
        self.addCleanup(srv.close)
        users = ["alice", "bob", "carol", "dave"]
        open_accounts(srv, users)
        sym = "CFFEX.IF2501"
        fee = 0.000023 * 300
        script = {"accounts": [{"user_id": u, "password": "pw"} for u in users], "actions": [
            {"do": "login", "account": u} for u in users] + [
            {"do": "subscribe", "symbols": [sym]},
            {"do": "wait_quote", "symbol": sym},
            {"do": "set_chart", "chart_id": "c3s", "symbol": sym, "duration": 3_000_000_000,
             "view_width": 20},
            {"do": "set_chart", "chart_id": "c1m", "symbol": sym, "duration": 60_000_000_000,
             "view_width": 20},
            {"do": "insert_order", "ref": "s1", "account": "alice", "symbol": sym,
             "direction": "SELL", "offset": "OPEN", "volume": 3, "limit_price": 3810},
            {"do": "wait_order", "ref": "s1", "match": {"status": "ALIVE", "volume_left": 3}},
            {"do": "insert_order", "ref": "b1", "account": "bob", "symbol": sym,
             "direction": "BUY", "offset": "OPEN", "volume": 2, "limit_price": 3810},
            {"do": "wait_order", "ref": "b1", "match": {"status": "FINISHED", "volume_left": 0}},
            {"do": "wait_order", "ref": "s1", "match": {"status": "ALIVE", "volume_left": 1}},
            {"do": "wait_trades", "ref": "b1", "volume": 2},
            {"do": "wait_trades", "ref": "s1", "volume": 2},
            {"do": "cancel_order", "ref": "s1"},
            {"do": "wait_order", "ref": "s1", "match": {"status": "FINISHED", "volume_left": 1}},
            # carol and dave trade higher: alice's and bob's positions are repriced
            {"do": "insert_order", "ref": "c1", "account": "carol", "symbol": sym,
             "direction": "SELL", "offset": "OPEN", "volume": 1, "limit_price": 3812.4},
            {"do": "insert_order", "ref": "d1", "account": "dave", "symbol": sym,
             "direction": "BUY", "offset": "OPEN", "volume": 1, "limit_price": 3812.4},
            {"do": "wait_order", "ref": "d1", "match": {"status": "FINISHED", "volume_left": 0}},
            # bob closes one lot against carol: close profit
            {"do": "insert_order", "ref": "b2", "account": "bob", "symbol": sym,
             "direction": "SELL", "offset": "CLOSE", "volume": 1, "limit_price": 3812.4},
            {"do": "insert_order", "ref": "c2", "account": "carol", "symbol": sym,
             "direction": "BUY", "offset": "CLOSE", "volume": 1, "limit_price": 3812.4},
            {"do": "wait_order", "ref": "c2", "match": {"status": "FINISHED", "volume_left": 0}},
            {"do": "wait_order", "ref": "b2", "match": {"status": "FINISHED", "volume_left": 0}},
            {"do": "transfer", "account": "alice", "amount": 5000},
            {"do": "wait_notify", "match": {"user_id": "alice", "code": 0, "level": "INFO"}},
            {"do": "wait_position", "account": "alice", "symbol": sym,
             "match": {"volume_short_today": 2, "volume_long_today": 0}},
            {"do": "wait_position", "account": "bob", "symbol": sym,
             "match": {"volume_long_today": 1, "volume_short_today": 0}},
            {"do": "wait_account", "account": "alice",
             "match": {"position_profit": {"approx": -2.4 * 300 * 2, "tol": CENT},
                       "deposit": {"approx": 5000, "tol": CENT}}},
            {"do": "wait_account", "account": "bob",
             "match": {"close_profit": {"approx": 2.4 * 300, "tol": CENT},
                       "position_profit": {"approx": 2.4 * 300, "tol": CENT}}},
            {"do": "wait_quote", "symbol": sym, "match": {"last_price": 3812.4, "volume": 4}},
            {"do": "wait_klines", "symbol": sym, "duration": 3_000_000_000,
             "match_last": {"close": 3812.4}},
            {"do": "wait_klines", "symbol": sym, "duration": 60_000_000_000,
             "match_last": {"close": 3812.4}},
            {"do": "sleep", "ms": 300},
        ] + [{"do": "snapshot", "account": u} for u in users]}
        events = run_tq(srv, script)
        by = {}
        for e in events:
            by.setdefault(e["event"], []).append(e)
        self.assertEqual(len(by["login"]), 4)
        for e in by["login"]:
            self.assertTrue(e["session"]["trading_day"])
        self.assertEqual(sorted(n["user_id"] for n in by["notify"] if n["code"] == 1000), users)
        self.assertFalse([n for n in by["notify"] if n["level"] == "ERROR"], by["notify"])
        orders = {}
        for e in by["order"]:
            orders.setdefault(e["ref"], []).append((e["status"], e["volume_left"]))
        self.assertEqual(orders["s1"], [("ALIVE", 3), ("ALIVE", 1), ("FINISHED", 1)])
        self.assertEqual(orders["b1"], [("FINISHED", 0)])
        trades = {e["ref"]: e for e in by["trades"]}
        for ref in ("s1", "b1"):
            self.assertEqual(trades[ref]["volume"], 2)
            for t in trades[ref]["trades"]:
                self.assertEqual(t["price"], 3810)
                self.assertEqual((t["exchange_id"], t["instrument_id"]), ("CFFEX", "IF2501"))
                self.assertAlmostEqual(t["commission"], 3810 * fee * t["volume"], delta=CENT)
        quote = by["quote"][-1]
        tick = get(srv, "/api/market/tick/IF2501")
        self.assertEqual((quote["last_price"], quote["volume"], quote["open_interest"]),
                         (tick["last_price"], tick["volume"], tick["open_interest"]))
        self.assertEqual(tick["open_interest"], 2)  # 2 opened, 1 opened, 1 closed by both
        # each account as the SDK holds it equals REST, to the cent
        for snap in by["snapshot"]:
            u = snap["user_id"]
            tree = {"trade": {u: {"accounts": {"CNY": snap["account"]},
                                  "positions": snap["positions"], "orders": snap["orders"],
                                  "trades": snap["trades"]}}}
            self.assert_matches_rest(srv, tree, u)
            acc = get(srv, f"/api/account/{u}")
            for k in ("balance", "available", "margin", "commission", "position_profit",
                      "close_profit"):
                self.assert_cent(snap["account"][k], acc[k], f"{u} {k}")
        alice = get(srv, "/api/account/alice")
        self.assertAlmostEqual(alice["position_profit"], -1440.0, delta=CENT)
        self.assertAlmostEqual(get(srv, "/api/account/bob")["close_profit"], 720.0, delta=CENT)
        # chart bars equal /api/klines
        for dur, period in ((3_000_000_000, "3s"), (60_000_000_000, "1min")):
            ks = [e for e in by["klines"] if e["duration"] == dur][-1]
            rest = {b["timestamp"]: b for b in get(srv, f"/api/klines/IF2501/{period}")}
            self.assertTrue(ks["bars"])
            self.assertEqual(ks["last_id"], ks["bars"][-1]["id"])
            self.assertEqual(ks["chart"]["right_id"], ks["bars"][-1]["id"])
            self.assertIs(ks["chart"]["more_data"], False)
            seen = 0
            for bar in ks["bars"]:
                ts = bar["id"] * (dur // 1_000_000)
                self.assertEqual(round(bar["datetime"] / 1e6), ts)
                if ts not in rest:
                    continue
                seen += 1
                r = rest[ts]
                for k in ("open", "high", "low", "close", "volume", "open_oi", "close_oi"):
                    self.assertEqual(bar[k], r[k], (period, ts, k, bar, r))
            self.assertEqual(seen, len(rest), (period, ks["bars"], rest))
            self.assertEqual(sum(b["volume"] for b in rest.values()), 4)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sanitized(pid):
    """True for an AddressSanitizer build: its quarantine keeps freed memory, so RSS growth
    measures nothing there."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()
