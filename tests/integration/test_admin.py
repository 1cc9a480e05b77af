"""The operator's side over HTTP with tokens enforced (issue #7 must-show 1; SPEC 3, 4, 5, 7).

Users register and log in, own their accounts and trade; the admin (the development initial
admin, admin/admin123) runs instruments, settlement, risk, capital, freezes, the audit log and
monitoring. Every money figure is computed here by hand from SPEC 4 and compared to the cent:

    commission      = price x volume x multiplier x commission_rate + volume x commission_per_lot
    close profit    = (close - position_price) x volume x multiplier   (long; short the reverse)
    position profit = (settlement - position_price) x volume x multiplier (long; short reverse)
    balance         = pre_balance + deposit - withdraw + close_profit - commission + position_profit
    margin          = price x volume x multiplier x margin_rate,  risk ratio = margin / balance
"""
import os
import re
import shutil
import tempfile
import time
import unittest

from qaex import Server, ServerTest, write_token_config

CENT = 0.005
SECRET = "admin-test-token-secret-0123456789abcdef"
ADMIN = ("admin", "admin123")


def write_config(directory, secret=SECRET):
    return write_token_config(directory, secret)


def commission(price, volume, multiplier, rate, per_lot):
    return price * volume * multiplier * rate + volume * per_lot


class Exchange:
    """Helpers bound to one server: envelopes, tokens, users, accounts, orders."""

    def __init__(self, test, srv):
        self.t, self.srv = test, srv

    def ok(self, status_body, status=200):
        st, body = status_body
        self.t.assertEqual(st, status, body)
        self.t.assertIsInstance(body, dict, body)
        self.t.assertTrue(body["success"], body)
        self.t.assertIsNone(body["error"], body)
        return body["data"]

    def err(self, status_body, code, status=None):
        st, body = status_body
        self.t.assertIsInstance(body, dict, (st, body))
        self.t.assertFalse(body["success"], body)
        self.t.assertIsNone(body["data"], body)
        self.t.assertEqual(body["error"]["code"], code, body)
        if status is not None:
            self.t.assertEqual(st, status, body)
        else:
            self.t.assertGreaterEqual(st, 400, body)
        return body["error"]["message"]

    def login(self, username, password):
        data = self.ok(self.srv.post("/api/auth/login",
                                     {"username": username, "password": password}))
        self.t.assertEqual(data["token_type"], "Bearer")
        self.t.assertEqual(data["username"], username)
        return {"Authorization": "Bearer " + data["token"]}, data["user_id"]

    def register(self, username, password, **extra):
        body = {"username": username, "password": password}
        body.update(extra)
        user = self.ok(self.srv.post("/api/auth/register", body))
        self.t.assertRegex(user["user_id"],
                           r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.t.assertEqual(user["username"], username)
        self.t.assertEqual(user["role"], "user")
        return user

    def user(self, username, password, cash):
        """Registers, logs in and opens one account: (headers, user_id, account_id)."""
        self.register(username, password, email=f"{username}@example.com")
        headers, uid = self.login(username, password)
        acc = self.ok(self.srv.post("/api/account/open", {"init_cash": cash},
                                    headers=headers))["account_id"]
        self.t.assertRegex(acc, r"^ACC_[0-9a-f]{32}$")
        return headers, uid, acc

    def get(self, path, headers):
        return self.ok(self.srv.get(path, headers=headers))

    def account(self, headers, acc):
        return self.get(f"/api/account/{acc}", headers)

    def order(self, headers, acc, instrument, direction, offset, price, volume):
        return self.srv.post("/api/order/submit", {
            "account_id": acc, "instrument_id": instrument, "direction": direction,
            "offset": offset, "price": price, "volume": volume, "order_type": "LIMIT"},
            headers=headers)

    def create_instrument(self, admin, instrument_id, **spec):
        body = {"instrument_id": instrument_id, "instrument_name": instrument_id.lower(),
                "contract_multiplier": 10, "price_tick": 1, "pre_settlement": 1000,
                "margin_rate": 0.1, "commission_rate": 0.0001, "commission_per_lot": 2,
                "limit_up_rate": 0.1, "limit_down_rate": 0.1}
        body.update(spec)
        data = self.ok(self.srv.post("/admin/instrument/create", body, headers=admin))
        self.t.assertEqual(data["instrument_id"], instrument_id)
        self.t.assertEqual(data["status"], "Trading")
        return data

    def cent(self, got, want, what=""):
        self.t.assertIsInstance(got, (int, float), what)
        self.t.assertLessEqual(abs(got - want), CENT, f"{what}: got {got}, want {want}")


class ServerCase(unittest.TestCase):
    storage = False

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qaex-admin-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.srv = Server(config=write_config(self.tmp), storage=self.storage)
        self.addCleanup(self.srv.close)
        self.x = Exchange(self, self.srv)
        self.admin, self.admin_id = self.x.login(*ADMIN)


class SettlementTest(ServerCase):
    """register -> login -> two users' accounts -> trade -> settlement -> figures to the cent."""

    MULT, RATE, PER_LOT, MARGIN = 10, 0.0001, 2.0, 0.1

    def test_settlement_and_forced_liquidation(self):
        x, admin = self.x, self.admin
        x.create_instrument(admin, "TEST.AD01", contract_multiplier=self.MULT,
                            commission_rate=self.RATE, commission_per_lot=self.PER_LOT,
                            margin_rate=self.MARGIN)
        ha, uid_a, acc_a = x.user("alice", "alice-pass-1", 1000000)
        hb, uid_b, acc_b = x.user("bob", "bob-pass-1", 1000000)
        self.assertNotEqual(uid_a, uid_b)
        # the users own their accounts
        me = x.get("/api/auth/current-user", ha)
        self.assertEqual(me["user_id"], uid_a)
        self.assertEqual(me["accounts"], [acc_a])
        self.assertEqual(x.account(ha, acc_a)["portfolio_cookie"], uid_a)

        # day 1: alice buys 10 @ 1000 from bob, then sells 4 back @ 1010
        o1 = x.ok(x.order(ha, acc_a, "TEST.AD01", "BUY", "OPEN", 1000, 10))
        self.assertEqual(o1["status"], "Submitted")
        o2 = x.ok(x.order(hb, acc_b, "TEST.AD01", "SELL", "OPEN", 1000, 10))
        self.assertEqual(o2["status"], "Filled")
        x.ok(x.order(ha, acc_a, "TEST.AD01", "SELL", "CLOSE", 1010, 4))
        o4 = x.ok(x.order(hb, acc_b, "TEST.AD01", "BUY", "CLOSE", 1010, 4))
        self.assertEqual(o4["status"], "Filled")

        fee = (commission(1000, 10, self.MULT, self.RATE, self.PER_LOT) +
               commission(1010, 4, self.MULT, self.RATE, self.PER_LOT))
        self.assertAlmostEqual(fee, 30 + 12.04)
        close_a = (1010 - 1000) * 4 * self.MULT      # long closed higher: +400
        close_b = -close_a                           # short closed higher: -400
        # before settlement: 6 lots held, marked to the last price 1010
        a = x.account(ha, acc_a)
        x.cent(a["close_profit"], close_a, "close_profit A")
        x.cent(a["commission"], fee, "commission A")
        x.cent(a["position_profit"], (1010 - 1000) * 6 * self.MULT, "position_profit A")
        x.cent(a["margin"], 1000 * 6 * self.MULT * self.MARGIN, "margin A")
        x.cent(a["balance"], 1000000 + close_a - fee + 600, "balance A")
        trades = x.get(f"/api/trades/user/{acc_a}", ha)
        x.cent(trades["summary"]["commission"], fee, "trade blotter commission")

        # execute refuses while a held instrument has no price, naming it (6001)
        day1 = x.get("/monitoring/state", admin)["trading_day"]
        msg = x.err(self.srv.post("/admin/settlement/execute", {}, headers=admin), 6001)
        self.assertIn("TEST.AD01", msg)
        self.assertEqual(x.get("/monitoring/state", admin)["trading_day"], day1)

        x.ok(self.srv.post("/admin/settlement/set-price",
                           {"instrument_id": "TEST.AD01", "settlement_price": 1020},
                           headers=admin))
        result = x.ok(self.srv.post("/admin/settlement/execute", {}, headers=admin))
        pp_a = (1020 - 1000) * 6 * self.MULT        # +1200
        bal_a = 1000000 + close_a - fee + pp_a      # 1,001,557.96
        bal_b = 1000000 + close_b - fee - pp_a      # 998,357.96
        margin1 = 1020 * 6 * self.MULT * self.MARGIN  # 6,120 at the settlement price
        self.assertEqual(result["settlement_date"], day1)
        self.assertEqual(result["total_accounts"], 2)
        self.assertEqual(result["settled_accounts"], 2)
        self.assertEqual(result["failed_accounts"], 0)
        self.assertEqual(result["force_closed_accounts"], [])
        x.cent(result["total_commission"], 2 * fee, "total_commission")
        x.cent(result["total_profit"], 0.0, "total_profit")
        want_rows = {
            acc_a: dict(pre_balance=1000000, balance=bal_a, close_profit=close_a,
                        position_profit=pp_a, commission=fee, risk_ratio=margin1 / bal_a),
            acc_b: dict(pre_balance=1000000, balance=bal_b, close_profit=close_b,
                        position_profit=-pp_a, commission=fee, risk_ratio=margin1 / bal_b),
        }
        self.check_rows(result["accounts"], want_rows, {acc_a: False, acc_b: False})

        # history and detail say the same
        history = x.get("/admin/settlement/history", admin)
        self.assertEqual([h["settlement_date"] for h in history], [day1])
        x.cent(history[0]["total_commission"], 2 * fee)
        self.assertEqual(x.get(f"/admin/settlement/history?start_date={day1}&end_date={day1}",
                               admin)[0]["settlement_date"], day1)
        self.assertEqual(x.get("/admin/settlement/history?start_date=2999-01-01", admin), [])
        detail = x.get(f"/admin/settlement/detail/{day1}", admin)
        self.check_rows(detail["accounts"], want_rows, {acc_a: False, acc_b: False})
        st, body = self.srv.get("/admin/settlement/detail/1999-01-01", headers=admin)
        self.assertEqual(st, 404, body)
        self.assertIn("1999-01-01", body["error"]["message"])

        # the accounts after settlement: profit realised, new pre_balance, re-margined
        for headers, acc, bal in ((ha, acc_a, bal_a), (hb, acc_b, bal_b)):
            a = x.account(headers, acc)
            x.cent(a["pre_balance"], bal, "pre_balance")
            x.cent(a["balance"], bal, "balance")
            x.cent(a["static_balance"], bal, "static_balance")
            x.cent(a["close_profit"], 0, "close_profit")
            x.cent(a["commission"], 0, "commission")
            x.cent(a["position_profit"], 0, "position_profit")
            x.cent(a["margin"], margin1, "margin")
            x.cent(a["available"], bal - margin1, "available")
            self.assertAlmostEqual(a["risk_ratio"], margin1 / bal, places=9)
        day2 = x.get("/monitoring/state", admin)["trading_day"]
        self.assertGreater(day2, day1)

        # ---- day 2: carol's short is pushed past risk ratio 1.0 and liquidated ----
        x.create_instrument(admin, "TEST.RK01", contract_multiplier=10, commission_rate=0.0001,
                            commission_per_lot=1, margin_rate=0.1)
        hc, uid_c, acc_c = x.user("carol", "carol-pass-1", 100000)
        hd, uid_d, acc_d = x.user("dave", "dave-pass-1", 1000000)
        x.ok(x.order(hc, acc_c, "TEST.RK01", "SELL", "OPEN", 1000, 40))
        self.assertEqual(x.ok(x.order(hd, acc_d, "TEST.RK01", "BUY", "OPEN", 1000, 40))["status"],
                         "Filled")
        fee_rk = commission(1000, 40, 10, 0.0001, 1)  # 80
        c = x.account(hc, acc_c)
        x.cent(c["margin"], 40000, "carol margin at 10%")
        x.cent(c["balance"], 100000 - fee_rk, "carol balance")
        # the operator raises the margin rate: positions are re-margined at once
        upd = x.ok(self.srv.request("PUT", "/admin/instrument/TEST.RK01/update",
                                    {"margin_rate": 0.5}, headers=admin))
        self.assertEqual(upd["margin_rate"], 0.5)
        c = x.account(hc, acc_c)
        x.cent(c["margin"], 200000, "carol margin at 50%")
        critical = x.get("/admin/risk/accounts?level=critical", admin)
        self.assertEqual([r["account_id"] for r in critical], [acc_c])
        self.assertEqual(critical[0]["user_id"], uid_c)
        self.assertEqual(critical[0]["level"], "critical")
        self.assertAlmostEqual(critical[0]["risk_ratio"], 200000 / (100000 - fee_rk), places=9)
        summary = x.get("/admin/risk/margin-summary", admin)
        self.assertEqual(summary["total_accounts"], 4)
        self.assertEqual(summary["critical_risk_count"], 1)
        self.assertEqual(summary["liquidation_count"], 0)

        # batch prices are all or none: an unknown instrument sets nothing
        x.err(self.srv.post("/admin/settlement/batch-set-prices", {"prices": [
            {"instrument_id": "TEST.AD01", "settlement_price": 1020},
            {"instrument_id": "TEST.NOPE", "settlement_price": 5}]}, headers=admin), 1007)
        # and a price whose limit band the book could not hold sets nothing either
        msg = x.err(self.srv.post("/admin/settlement/batch-set-prices", {"prices": [
            {"instrument_id": "TEST.AD01", "settlement_price": 1020},
            {"instrument_id": "TEST.RK01", "settlement_price": 9e11}]}, headers=admin), 1008)
        self.assertIn("limit band", msg)
        msg = x.err(self.srv.post("/admin/settlement/execute", {}, headers=admin), 6001)
        self.assertIn("TEST.AD01", msg)
        self.assertIn("TEST.RK01", msg)
        batch = x.ok(self.srv.post("/admin/settlement/batch-set-prices", {"prices": [
            {"instrument_id": "TEST.AD01", "settlement_price": 1020},
            {"instrument_id": "TEST.RK01", "settlement_price": 1200}]}, headers=admin))
        self.assertEqual(batch["count"], 2)
        result = x.ok(self.srv.post("/admin/settlement/execute", {}, headers=admin))

        pp_c = (1000 - 1200) * 40 * 10               # short, price up: -80,000
        bal_c = 100000 - fee_rk + pp_c               # 19,920
        bal_d = 1000000 - fee_rk - pp_c              # 1,079,920
        margin_rk = 1200 * 40 * 10 * 0.5             # 240,000
        self.assertEqual(result["settlement_date"], day2)
        self.assertEqual(result["total_accounts"], 4)
        self.assertEqual(result["force_closed_accounts"], [acc_c])
        self.assertEqual(result["force_closed_count"], 1)
        x.cent(result["total_commission"], 2 * fee_rk)
        x.cent(result["total_profit"], 0.0)
        want_rows = {
            acc_a: dict(pre_balance=bal_a, balance=bal_a, close_profit=0, position_profit=0,
                        commission=0, risk_ratio=margin1 / bal_a),
            acc_b: dict(pre_balance=bal_b, balance=bal_b, close_profit=0, position_profit=0,
                        commission=0, risk_ratio=margin1 / bal_b),
            acc_c: dict(pre_balance=100000, balance=bal_c, close_profit=0, position_profit=pp_c,
                        commission=fee_rk, risk_ratio=margin_rk / bal_c),
            acc_d: dict(pre_balance=1000000, balance=bal_d, close_profit=0,
                        position_profit=-pp_c, commission=fee_rk, risk_ratio=margin_rk / bal_d),
        }
        closed = {acc_a: False, acc_b: False, acc_c: True, acc_d: False}
        self.check_rows(result["accounts"], want_rows, closed)
        self.check_rows(x.get(f"/admin/settlement/detail/{day2}", admin)["accounts"], want_rows,
                        closed)
        self.assertGreaterEqual(want_rows[acc_c]["risk_ratio"], 1.0)

        # carol is flat, nothing frozen, her balance is what the settlement left
        c = x.account(hc, acc_c)
        x.cent(c["balance"], bal_c, "carol balance after liquidation")
        x.cent(c["margin"], 0, "carol margin after liquidation")
        x.cent(c["frozen_margin"], 0)
        self.assertEqual(c["risk_ratio"], 0.0)
        self.assertEqual(x.get(f"/api/position/{acc_c}", hc), [])
        d = x.account(hd, acc_d)
        x.cent(d["balance"], bal_d, "dave balance")
        x.cent(d["margin"], margin_rk, "dave margin")

        # the liquidation is on record, with her owner and the figures
        liq = x.get("/admin/risk/liquidations", admin)
        self.assertEqual(len(liq), 1, liq)
        self.assertEqual(liq[0]["account_id"], acc_c)
        self.assertEqual(liq[0]["user_id"], uid_c)
        self.assertEqual(liq[0]["liquidation_date"], day2)
        x.cent(liq[0]["pre_balance"], 100000)
        x.cent(liq[0]["post_balance"], bal_c)
        x.cent(liq[0]["loss"], 100000 - bal_c)
        self.assertAlmostEqual(liq[0]["risk_ratio"], margin_rk / bal_c, places=6)
        self.assertEqual(x.get(f"/admin/risk/liquidations?start_date={day1}&end_date={day1}",
                               admin), [])
        mine = x.get(f"/admin/risk/accounts?user_id={uid_c}", admin)
        self.assertEqual([(r["account_id"], r["level"]) for r in mine], [(acc_c, "low")])
        x.cent(mine[0]["balance"], bal_c)
        x.cent(mine[0]["margin"], 0)
        self.assertEqual(x.get("/admin/risk/accounts?level=critical", admin), [])
        summary = x.get("/admin/risk/margin-summary", admin)
        self.assertEqual(summary["liquidation_count"], 1)
        x.cent(summary["total_balance"], bal_a + bal_b + bal_c + bal_d)
        x.cent(summary["total_margin_used"], 2 * margin1 + margin_rk)
        history = x.get("/admin/settlement/history", admin)
        self.assertEqual([h["settlement_date"] for h in history], [day1, day2])
        self.assertEqual(history[1]["force_closed_accounts"], [acc_c])

    def check_rows(self, rows, want, closed):
        self.assertEqual(sorted(r["account_id"] for r in rows), sorted(want), rows)
        for r in rows:
            w = want[r["account_id"]]
            for k, v in w.items():
                if k == "risk_ratio":
                    self.assertAlmostEqual(r[k], v, places=6, msg=f"{r['account_id']} {k}")
                else:
                    self.x.cent(r[k], v, f"{r['account_id']} {k}")
            self.assertEqual(r["force_close"], closed[r["account_id"]], r)


class InstrumentTest(ServerCase):
    def test_suspend_resume_delist(self):
        x, admin = self.x, self.admin
        x.create_instrument(admin, "TEST.SU01")
        # a duplicate id is refused
        st, body = self.srv.post("/admin/instrument/create", {
            "instrument_id": "TEST.SU01", "contract_multiplier": 10, "price_tick": 1,
            "pre_settlement": 1000}, headers=admin)
        self.assertGreaterEqual(st, 400, body)
        self.assertFalse(body["success"])
        ha, _, acc_a = x.user("erin", "erin-pass-1", 1000000)
        hb, _, acc_b = x.user("frank", "frank-pass-1", 1000000)

        data = x.ok(self.srv.request("PUT", "/admin/instrument/TEST.SU01/suspend", {},
                                     headers=admin))
        self.assertEqual(data["status"], "Suspended")
        for instrument in ("TEST.SU01", "SU01"):
            msg = x.err(x.order(ha, acc_a, instrument, "BUY", "OPEN", 1000, 1), 1008, 400)
            self.assertIn("TEST.SU01", msg)
            self.assertIn("suspended", msg)
        x.err(self.srv.request("PUT", "/admin/instrument/TEST.SU01/suspend", {}, headers=admin),
              1008)
        listed = {i["instrument_id"]: i for i in x.get("/admin/instruments", admin)}
        self.assertEqual(listed["TEST.SU01"]["status"], "Suspended")
        self.assertEqual(x.get("/api/market/instruments", ha)[-1]["status"], "Suspended")
        x.err(self.srv.request("PUT", "/admin/instrument/TEST.NONE/suspend", {}, headers=admin),
              1007, 404)

        data = x.ok(self.srv.request("PUT", "/admin/instrument/TEST.SU01/resume", {},
                                     headers=admin))
        self.assertEqual(data["status"], "Trading")
        x.ok(x.order(ha, acc_a, "TEST.SU01", "BUY", "OPEN", 1000, 2))
        self.assertEqual(x.ok(x.order(hb, acc_b, "TEST.SU01", "SELL", "OPEN", 1000, 2))["status"],
                         "Filled")

        # delisting is refused while anyone holds lots, and the error names the holders
        msg = x.err(self.srv.request("DELETE", "/admin/instrument/TEST.SU01/delist",
                                     headers=admin), 1008)
        self.assertIn(acc_a, msg)
        self.assertIn(acc_b, msg)
        self.assertIn("TEST.SU01", msg)
        self.assertEqual({i["instrument_id"]: i["status"] for i in
                          x.get("/admin/instruments", admin)}["TEST.SU01"], "Trading")
        # once flat (a resting order is left), delisting goes through and cancels that order
        x.ok(x.order(ha, acc_a, "TEST.SU01", "SELL", "CLOSE", 1001, 2))
        x.ok(x.order(hb, acc_b, "TEST.SU01", "BUY", "CLOSE", 1001, 2))
        resting = x.ok(x.order(ha, acc_a, "TEST.SU01", "BUY", "OPEN", 995, 1))
        data = x.ok(self.srv.request("DELETE", "/admin/instrument/TEST.SU01/delist",
                                     headers=admin))
        self.assertEqual(data["status"], "Delisted")
        order = x.get(f"/api/order/{resting['order_id']}", ha)
        self.assertEqual(order["status"], "Cancelled")
        x.cent(x.account(ha, acc_a)["frozen_margin"], 0)
        msg = x.err(x.order(ha, acc_a, "TEST.SU01", "BUY", "OPEN", 1000, 1), 1008)
        self.assertIn("delisted", msg)
        x.err(self.srv.request("PUT", "/admin/instrument/TEST.SU01/resume", {}, headers=admin),
              1008)


class CapitalAuditTest(ServerCase):
    def test_capital_freeze_audit_monitoring(self):
        x, admin = self.x, self.admin
        ha, uid_a, acc_a = x.user("gina", "gina-pass-1", 1000000)
        hb, uid_b, acc_b = x.user("hank", "hank-pass-1", 500000)

        dep = x.ok(self.srv.post("/admin/capital/deposit", {"account_id": acc_a, "amount": 2500.5},
                                 headers=admin))
        self.assertRegex(dep["transaction_id"], r"^TXN\d{8}\d{8}$")
        self.assertEqual(dep["transaction_type"], "deposit")
        x.cent(dep["balance_before"], 1000000)
        x.cent(dep["balance_after"], 1002500.5)
        wd = x.ok(self.srv.post("/admin/capital/withdraw", {"account_id": acc_a, "amount": 500.25},
                                headers=admin))
        self.assertRegex(wd["transaction_id"], r"^TXN\d{8}\d{8}$")
        self.assertNotEqual(wd["transaction_id"], dep["transaction_id"])
        x.cent(wd["balance_before"], 1002500.5)
        x.cent(wd["balance_after"], 1002000.25)
        dep_b = x.ok(self.srv.post("/admin/capital/deposit", {"account_id": acc_b, "amount": 1},
                                   headers=admin))
        a = x.account(ha, acc_a)
        x.cent(a["balance"], 1002000.25)
        x.cent(a["deposit"], 2500.5)
        x.cent(a["withdraw"], 500.25)
        # refusals: nothing positive (2003), more than available (2004), unknown account
        x.err(self.srv.post("/admin/capital/deposit", {"account_id": acc_a, "amount": -5},
                            headers=admin), 2003)
        x.err(self.srv.post("/admin/capital/withdraw", {"account_id": acc_a, "amount": 10 ** 7},
                            headers=admin), 2004)
        x.err(self.srv.post("/admin/capital/deposit", {"account_id": "ACC_nobody", "amount": 5},
                            headers=admin), 1006, 404)

        ids = lambda rows: [r["transaction_id"] for r in rows]
        everything = x.get("/admin/capital/transactions", admin)
        self.assertEqual(ids(everything), [dep_b["transaction_id"], wd["transaction_id"],
                                           dep["transaction_id"]])  # newest first
        self.assertEqual(ids(x.get(f"/admin/capital/transactions?account_id={acc_a}", admin)),
                         [wd["transaction_id"], dep["transaction_id"]])
        self.assertEqual(ids(x.get(f"/admin/capital/transactions?user_id={uid_b}", admin)),
                         [dep_b["transaction_id"]])
        self.assertEqual(ids(x.get(f"/admin/capital/transactions?account_id={acc_a}&type=deposit",
                                   admin)), [dep["transaction_id"]])
        self.assertEqual(ids(x.get("/admin/capital/transactions?type=withdraw", admin)),
                         [wd["transaction_id"]])
        self.assertEqual(ids(x.get("/admin/capital/transactions?limit=1", admin)),
                         [dep_b["transaction_id"]])
        day = everything[0]["date"]
        self.assertEqual(len(x.get(f"/admin/capital/transactions?start_date={day}&end_date={day}",
                                   admin)), 3)
        self.assertEqual(x.get("/admin/capital/transactions?start_date=2999-01-01", admin), [])
        self.assertEqual(x.get("/admin/capital/transactions?end_date=1999-01-01", admin), [])
        for row in everything:
            self.assertEqual(row["status"], "completed")
            self.assertIn(row["user_id"], (uid_a, uid_b))

        # freeze blocks orders (2002) and withdrawals; unfreeze lets them through
        fr = x.ok(self.srv.post(f"/admin/account/{acc_a}/freeze", {}, headers=admin))
        self.assertTrue(fr["is_frozen"])
        msg = x.err(x.order(ha, acc_a, "IF2501", "BUY", "OPEN", 3800, 1), 2002)
        self.assertIn(acc_a, msg)
        x.err(self.srv.post("/api/account/withdraw", {"account_id": acc_a, "amount": 1},
                            headers=ha), 2002)
        x.ok(x.order(hb, acc_b, "IF2501", "BUY", "OPEN", 3700, 1))  # others trade on
        fr = x.ok(self.srv.post(f"/admin/account/{acc_a}/unfreeze", {}, headers=admin))
        self.assertFalse(fr["is_frozen"])
        x.ok(x.order(ha, acc_a, "IF2501", "BUY", "OPEN", 3800, 1))
        x.err(self.srv.post("/admin/account/ACC_nobody/freeze", {}, headers=admin), 1006, 404)

        # the audit log lists every admin action, newest first, with the admin's user id
        audit = x.get("/admin/audit", admin)
        actions = [(e["action"], e["code"]) for e in audit]
        want = [
            ("POST /admin/account/ACC_nobody/freeze", 1006),
            (f"POST /admin/account/{acc_a}/unfreeze", 0),
            (f"POST /admin/account/{acc_a}/freeze", 0),
            ("POST /admin/capital/deposit", 1006),
            ("POST /admin/capital/withdraw", 2004),
            ("POST /admin/capital/deposit", 2003),
            ("POST /admin/capital/deposit", 0),
            ("POST /admin/capital/withdraw", 0),
            ("POST /admin/capital/deposit", 0),
        ]
        self.assertEqual(actions, want, audit)
        for e in audit:
            self.assertEqual(e["user"], self.admin_id, e)
            self.assertIsInstance(e["timestamp"], int)
        self.assertEqual(audit[1]["target"], acc_a)
        self.assertEqual(len(x.get("/admin/audit?limit=2", admin)), 2)
        # a user's refused attempt at an admin route is not an admin action
        self.assertEqual(self.srv.post(f"/admin/account/{acc_b}/freeze", {}, headers=ha)[0], 403)
        self.assertEqual(len(x.get("/admin/audit", admin)), len(want))

        # monitoring answers with numbers that agree with what happened
        system = x.get("/monitoring/system", admin)
        self.assertEqual(system["pid"], self.srv.proc.pid)
        self.assertGreaterEqual(system["uptime"], 0)
        self.assertGreater(system["memory_rss_bytes"], 1 << 20)
        self.assertGreaterEqual(system["cpu_seconds"], 0)
        self.assertGreaterEqual(system["connections"], 1)
        self.assertEqual(system["websocket_sessions"], 0)
        self.assertFalse(system["open_mode"])
        accounts = x.get("/monitoring/accounts", admin)
        self.assertEqual(accounts["total_accounts"], 2)
        self.assertEqual(accounts["total_users"], 3)
        self.assertEqual(accounts["frozen_accounts"], 0)
        self.assertEqual(accounts["active_accounts"], 2)  # both have a live order
        bal_b = x.account(hb, acc_b)["balance"]
        x.cent(accounts["total_balance"], x.account(ha, acc_a)["balance"] + bal_b)
        orders = x.get("/monitoring/orders", admin)
        self.assertEqual(orders["live_orders"], 2)
        self.assertEqual(orders["orders_in_memory"], 2)
        self.assertGreaterEqual(orders["orders_capacity"], 2)
        self.assertLess(orders["orders_capacity"], 100000)  # grown on demand, not preallocated
        self.assertEqual(orders["buy_orders"], 2)
        self.assertEqual(orders["sell_orders"], 0)
        trades = x.get("/monitoring/trades", admin)
        self.assertEqual(trades["total_volume"], 0)
        self.assertIn("CFFEX.IF2501", trades["instruments"])
        storage = x.get("/monitoring/storage", admin)
        self.assertFalse(storage["enabled"])
        state = x.get("/monitoring/state", admin)
        self.assertRegex(state["state_hash"], r"^[0-9a-f]{16}$")
        self.assertEqual(state["accounts"], 2)
        report = x.ok(self.srv.post("/monitoring/report", {}, headers=admin))
        self.assertEqual(report["state_hash"], state["state_hash"])
        self.assertEqual(report["accounts"]["total_accounts"], 2)
        self.assertEqual(report["orders"]["live_orders"], 2)
        self.assertEqual(report["risk"]["total_accounts"], 2)
        self.assertEqual(x.get("/api/monitoring/state", admin)["state_hash"], state["state_hash"])
        self.assertEqual(x.get("/api/admin/audit?limit=1", admin), audit[:1])


class AdminInputTest(ServerTest):
    """Bad input to the operator's routes (open mode, no tokens): a clear 400 naming the value,
    and nothing changed."""

    def setUp(self):
        self.x = Exchange(self, self.srv)

    def test_date_filters_are_checked(self):
        x = self.x
        for route in ("/admin/settlement/history", "/admin/risk/liquidations",
                      "/admin/capital/transactions"):
            for arg in ("start_date", "end_date"):
                for bad in ("xx", "2025-1-5", "2025/10/05", "20251005", "2025-02-29"):
                    with self.subTest(route=route, arg=arg, value=bad):
                        msg = x.err(self.srv.get(f"{route}?{arg}={bad}"), 9003, 400)
                        self.assertIn(arg, msg)
                        self.assertIn(bad, msg)
            x.ok(self.srv.get(f"{route}?start_date=2024-02-29&end_date=2025-10-05"))
        # a malformed date in the path is bad input; a well-formed one without a settlement
        # is not found
        msg = x.err(self.srv.get("/admin/settlement/detail/garbage"), 9003, 400)
        self.assertIn("garbage", msg)
        x.err(self.srv.get("/admin/settlement/detail/2030-01-01"), 9007, 404)

    def test_enum_filters_are_checked(self):
        x = self.x
        x.ok(self.srv.post("/api/account/open", {"user_id": "enumf", "init_cash": 1000}))
        msg = x.err(self.srv.get("/admin/risk/accounts?level=bogus"), 9003, 400)
        self.assertIn("bogus", msg)
        self.assertIn("critical", msg)
        self.assertEqual([a["account_id"] for a in
                          x.ok(self.srv.get("/admin/risk/accounts?level=LOW&user_id=enumf"))],
                         ["enumf"])
        x.ok(self.srv.post("/admin/capital/withdraw", {"account_id": "enumf", "amount": 10}))
        msg = x.err(self.srv.get("/admin/capital/transactions?type=bogus"), 9003, 400)
        self.assertIn("bogus", msg)
        self.assertIn("deposit", msg)
        # the seed's TransactionType names it Withdrawal
        for kind in ("withdraw", "withdrawal", "Withdrawal"):
            with self.subTest(type=kind):
                txns = x.ok(self.srv.get(
                    f"/admin/capital/transactions?account_id=enumf&type={kind}"))
                self.assertEqual([t["transaction_type"] for t in txns], ["withdraw"])

    def test_settlement_price_of_the_wrong_type_is_named(self):
        x = self.x
        msg = x.err(self.srv.post("/admin/settlement/set-price",
                                  {"instrument_id": "IF2501", "settlement_price": "abc"}), 9003, 400)
        self.assertIn("settlement_price", msg)
        self.assertIn("abc", msg)
        msg = x.err(self.srv.post("/admin/settlement/batch-set-prices", {"prices": [
            {"instrument_id": "IF2501", "settlement_price": 3850},
            {"instrument_id": "IC2501", "settlement_price": [5600]}]}), 9003, 400)
        self.assertIn("prices[1]", msg)
        self.assertIn("settlement_price", msg)
        self.assertIn("array", msg)
        # a price out of range is the same error by either route (the engine's 1008)
        for bad in (0, -5):
            single = x.err(self.srv.post("/admin/settlement/set-price",
                                         {"instrument_id": "IF2501", "settlement_price": bad}),
                           1008, 400)
            batch = x.err(self.srv.post("/admin/settlement/batch-set-prices", {"prices": [
                {"instrument_id": "IF2501", "settlement_price": bad}]}), 1008, 400)
            self.assertEqual(batch, single)
        # the seed's name and the short one both still work
        x.ok(self.srv.post("/admin/settlement/set-price",
                           {"instrument_id": "IF2501", "settlement_price": 3850}))
        x.ok(self.srv.post("/admin/settlement/set-price", {"instrument_id": "IF2501", "price": 3850}))

    def test_instrument_dates_are_checked(self):
        x = self.x
        base = {"contract_multiplier": 10, "price_tick": 1, "pre_settlement": 100}
        for field, bad in (("list_date", "garbage"), ("expire_date", "2025-99-99"),
                           ("expire_date", "20250215")):
            with self.subTest(field=field, value=bad):
                body = dict(base, instrument_id="TEST.DT01", **{field: bad})
                msg = x.err(self.srv.post("/admin/instrument/create", body), 9003, 400)
                self.assertIn(field, msg)
                self.assertIn(bad, msg)
        ids = {i["instrument_id"] for i in x.ok(self.srv.get("/admin/instruments"))}
        self.assertNotIn("TEST.DT01", ids)
        x.ok(self.srv.post("/admin/instrument/create", dict(
            base, instrument_id="TEST.DT01", list_date="2025-02-01", expire_date="2025-02-15")))
        msg = x.err(self.srv.request("PUT", "/admin/instrument/TEST.DT01/update",
                                     {"expire_date": "2025-02-30"}), 9003, 400)
        self.assertIn("2025-02-30", msg)
        listed = {i["instrument_id"]: i for i in x.ok(self.srv.get("/admin/instruments"))}
        self.assertEqual(listed["TEST.DT01"]["expire_date"], "2025-02-15")

    def test_update_cannot_rename_and_create_cannot_repeat(self):
        x = self.x
        # the seed: instrument_id cannot be changed; a body naming another one is refused
        msg = x.err(self.srv.request("PUT", "/admin/instrument/IF2501/update",
                                     {"instrument_id": "CFFEX.ZZZ", "margin_rate": 0.2}), 9003, 400)
        self.assertIn("CFFEX.ZZZ", msg)
        listed = {i["instrument_id"]: i for i in x.ok(self.srv.get("/admin/instruments"))}
        self.assertEqual(listed["CFFEX.IF2501"]["margin_rate"], 0.1)
        self.assertNotIn("CFFEX.ZZZ", listed)
        # naming the same instrument (either spelling) is fine
        for same in ("IF2501", "CFFEX.IF2501"):
            x.ok(self.srv.request("PUT", "/admin/instrument/IF2501/update",
                                  {"instrument_id": same, "margin_rate": 0.1}))
        # creating one that exists is a conflict with the state, not bad input (SPEC 5: 409)
        msg = x.err(self.srv.post("/admin/instrument/create", {
            "instrument_id": "CFFEX.IF2501", "contract_multiplier": 300, "price_tick": 0.2,
            "pre_settlement": 3800}), 1008, 409)
        self.assertIn("CFFEX.IF2501", msg)


class MonitoringFieldsTest(ServerTest):
    """The monitoring routes answer with the seed's field names (admin API reference 15-20), so
    the seed's admin pages find them: beside the finer ones the C server adds."""

    def test_seed_field_names(self):
        x = Exchange(self, self.srv)
        for acc in ("mon1", "mon2"):
            x.ok(self.srv.post("/api/account/open", {"user_id": acc, "init_cash": 1000000}))
        for acc, side, price in (("mon1", "BUY", 3800), ("mon2", "SELL", 3800),
                                 ("mon1", "BUY", 3700), ("mon1", "BUY", 3600)):
            x.ok(self.srv.post("/api/order/submit", {
                "user_id": acc, "instrument_id": "IF2501", "direction": side, "offset": "OPEN",
                "volume": 1, "price": price, "order_type": "LIMIT"}))
        live = [o for o in x.ok(self.srv.get("/api/order/user/mon1")) if o["price"] == 3600]
        x.ok(self.srv.post("/api/order/cancel", {"user_id": "mon1",
                                                 "order_id": live[0]["order_id"]}))
        orders = x.ok(self.srv.get("/monitoring/orders"))
        self.assertEqual((orders["total_orders"], orders["pending_orders"],
                          orders["filled_orders"], orders["cancelled_orders"]), (4, 1, 2, 1))
        self.assertEqual(orders["pending_orders"], orders["live_orders"])
        system = x.ok(self.srv.get("/monitoring/system"))
        self.assertGreater(system["memory_usage"], 0)
        self.assertLess(system["memory_usage"], 100)
        report = x.ok(self.srv.post("/monitoring/report", {}))
        self.assertRegex(report["report_id"], r"^RPT\d{14}$")
        self.assertIsInstance(report["generated_at"], int)


class RestartTest(unittest.TestCase):
    def test_state_survives_restart(self):
        tmp = tempfile.mkdtemp(prefix="qaex-admin-restart-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg, data = write_config(tmp), os.path.join(tmp, "data")
        with Server(config=cfg, storage=True, data_dir=data) as srv:
            x = Exchange(self, srv)
            admin, admin_id = x.login(*ADMIN)
            x.create_instrument(admin, "TEST.PS01", pre_settlement=500)
            ha, uid, acc = x.user("ivan", "ivan-pass-1", 200000)
            x.ok(x.order(ha, acc, "TEST.PS01", "BUY", "OPEN", 500, 3))
            x.ok(srv.post("/admin/capital/deposit", {"account_id": acc, "amount": 1000},
                          headers=admin))
            x.ok(srv.request("PUT", "/admin/instrument/TEST.PS01/suspend", {}, headers=admin))
            before = x.account(ha, acc)
            state = x.get("/monitoring/state", admin)
            self.assertTrue(x.get("/monitoring/storage", admin)["enabled"])
            self.assertEqual(srv.stop(), 0)
        with Server(config=cfg, storage=True, data_dir=data) as srv:
            x = Exchange(self, srv)
            # users can still log in, with the same ids; a wrong password is still wrong
            ha2, uid2 = x.login("ivan", "ivan-pass-1")
            self.assertEqual(uid2, uid)
            admin2, admin_id2 = x.login(*ADMIN)
            self.assertEqual(admin_id2, admin_id)
            x.err(srv.post("/api/auth/login", {"username": "ivan", "password": "nope"}), 9001, 401)
            # an old token still verifies: the key comes from the configured secret
            self.assertEqual(x.get("/api/auth/current-user", ha)["user_id"], uid)
            self.assertEqual(x.get("/monitoring/state", admin2)["state_hash"], state["state_hash"])
            after = x.account(ha2, acc)
            for k in ("balance", "available", "frozen_margin", "deposit", "portfolio_cookie"):
                self.assertEqual(after[k], before[k], k)
            listed = {i["instrument_id"]: i for i in x.get("/admin/instruments", admin2)}
            self.assertIn("TEST.PS01", listed)
            self.assertEqual(listed["TEST.PS01"]["status"], "Suspended")
            self.assertEqual(listed["TEST.PS01"]["pre_settlement"], 500)
            txns = x.get(f"/admin/capital/transactions?account_id={acc}", admin2)
            self.assertEqual([t["transaction_type"] for t in txns], ["deposit"])
            x.ok(srv.request("PUT", "/admin/instrument/TEST.PS01/resume", {}, headers=admin2))
            x.ok(x.order(ha2, acc, "TEST.PS01", "BUY", "OPEN", 500, 1))
            with open(os.path.join(data, "audit.log")) as f:
                log = f.read()
            self.assertIn("POST /admin/instrument/create", log)
            self.assertIn("PUT /admin/instrument/TEST.PS01/resume", log)
            self.assertIn(admin_id, log)


class PreallocateTest(unittest.TestCase):
    """[engine] preallocate_*: the pools are sized at start, after recovery too, and trading
    within that size never grows them."""

    def capacities(self, x, admin):
        orders, trades = x.get("/monitoring/orders", admin), x.get("/monitoring/trades", admin)
        return (orders["orders_capacity"], orders["order_index_capacity"],
                trades["trades_capacity"], orders["orders_in_memory"], trades["trades_in_memory"])

    def test_pools_sized_at_start_and_after_restart(self):
        tmp = tempfile.mkdtemp(prefix="qaex-admin-prealloc-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg, data = write_config(tmp), os.path.join(tmp, "data")
        with open(cfg, "a") as f:
            f.write("\n[engine]\npreallocate_orders = 50000\npreallocate_trades = 20000\n")
        with Server(config=cfg, storage=True, data_dir=data) as srv:
            x = Exchange(self, srv)
            admin, _ = x.login(*ADMIN)
            orders_cap, index_cap, trades_cap, in_memory, trades = self.capacities(x, admin)
            self.assertGreaterEqual(orders_cap, 50000)
            self.assertGreaterEqual(index_cap * 7, 50000 * 10)  # room at the index's 70% load
            self.assertGreaterEqual(trades_cap, 20000)
            self.assertEqual((in_memory, trades), (0, 0))
            ha, _, acc = x.user("pia", "pia-pass-1", 10000000)
            hb, _, acc_b = x.user("max", "max-pass-1", 10000000)
            for i in range(20):
                x.ok(x.order(ha, acc, "CFFEX.IF2501", "BUY", "OPEN", 3800, 1))
            x.ok(x.order(hb, acc_b, "CFFEX.IF2501", "SELL", "OPEN", 3800, 5))
            self.assertEqual(self.capacities(x, admin),
                             (orders_cap, index_cap, trades_cap, 21, 10))
            self.assertEqual(srv.stop(), 0)
        with Server(config=cfg, storage=True, data_dir=data) as srv:
            x = Exchange(self, srv)
            admin, _ = x.login(*ADMIN)
            self.assertEqual(self.capacities(x, admin),
                             (orders_cap, index_cap, trades_cap, 21, 10))


if __name__ == "__main__":
    unittest.main()
