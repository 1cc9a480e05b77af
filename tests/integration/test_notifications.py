"""Notifications over the `type` WebSocket (seed 004: message types, priorities, channels,
batching and the {"action": ...} subscription protocol of seed lines 4623-4645), against the
real server. A session opts in with its first {"action":"subscribe"} (or every session gets them
with [notification] auto_subscribe); from then on no channel named means every channel."""
import os
import tempfile
import time
import unittest

from qaex import Server

TRADE_TYPES = {"order_accepted", "order_rejected", "order_partially_filled", "order_filled",
               "order_canceled", "order_expired", "trade_executed", "trade_canceled"}
CHANNEL_OF = {**{t: "trade" for t in TRADE_TYPES},
              "account_open": "account", "account_update": "account",
              "position_update": "position", "position_profit": "position",
              "risk_alert": "risk", "margin_call": "risk", "position_limit": "risk",
              "system_notice": "system", "trading_session_start": "system",
              "trading_session_end": "system", "market_halt": "system"}
PRIORITY_OF = {"order_rejected": 0, "risk_alert": 0, "margin_call": 0,
               "order_accepted": 1, "order_partially_filled": 1, "order_filled": 1,
               "order_canceled": 1, "trade_executed": 1,
               "account_update": 2, "position_update": 2,
               "system_notice": 3, "market_halt": 3, "trading_session_end": 3}


def drain(ws, quiet=0.4, limit=5.0):
    """Every frame until none came for `quiet` seconds: (notifications, frames, other messages).
    A notification frame is either one message (P0) or {"type":"notifications"} (a batch)."""
    notes, frames, other = [], [], []
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            m = ws.recv(timeout=quiet)
        except (TimeoutError, OSError):
            break
        if m.get("type") == "notifications":
            frames.append(("batch", m["messages"]))
            notes.extend(m["messages"])
        elif "message_id" in m and "message_type" in m:
            frames.append(("single", [m]))
            notes.append(m)
        else:
            other.append(m)
    return notes, frames, other


class NotificationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        for user, cash in (("nA", 10_000_000), ("nB", 10_000_000), ("nC", 10_000_000),
                           ("nRisk", 226_000), ("nPoor", 1_000)):
            status, body = cls.srv.post("/api/account/open", {"user_id": user, "init_cash": cash})
            assert status == 200, body

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def session(self, user, subscribe=True):
        ws = self.srv.ws("/ws")
        self.addCleanup(ws.close)
        ws.send({"type": "auth", "user_id": user, "token": "demo"})
        m, _ = ws.recv_until(lambda m: m.get("type") == "auth_response")
        self.assertTrue(m["success"], m)
        if subscribe:
            ws.send({"action": "subscribe"})  # every channel
        return ws

    def order(self, ws, direction, volume, price, instrument="IF2501"):
        ws.send({"type": "submit_order", "instrument_id": instrument, "direction": direction,
                 "offset": "OPEN", "volume": volume, "price": price, "order_type": "LIMIT"})

    def check_envelope(self, n, user):
        self.assertEqual(set(n), {"message_id", "message_type", "user_id", "priority",
                                  "timestamp", "source", "payload"})
        self.assertEqual(n["priority"], PRIORITY_OF.get(n["message_type"], n["priority"]))
        self.assertEqual(n["user_id"], user)
        self.assertGreater(n["timestamp"], 1_600_000_000 * 10**9)  # nanoseconds
        self.assertEqual(n["source"], {"trade": "MatchingEngine", "account": "AccountSystem",
                                       "position": "AccountSystem", "risk": "RiskControl",
                                       "system": "System"}[CHANNEL_OF[n["message_type"]]])

    def test_default_receives_every_channel_of_a_fill(self):
        maker, taker = self.session("nA"), self.session("nB")
        self.order(maker, "SELL", 3, 3801.0)
        drain(maker)
        self.order(taker, "BUY", 2, 3801.0)
        notes, frames, _ = drain(taker)
        for n in notes:
            self.check_envelope(n, "nB")
        types = [n["message_type"] for n in notes]
        for t in ("order_accepted", "order_filled", "trade_executed", "account_update",
                  "position_update"):
            self.assertIn(t, types)
        self.assertLess(types.index("order_accepted"), types.index("order_filled"))
        # P1-P3 come in batches, never one frame per event
        self.assertTrue(all(kind == "batch" for kind, _ in frames), frames)
        self.assertLess(len(frames), len(notes))
        trade = next(n["payload"] for n in notes if n["message_type"] == "trade_executed")
        self.assertEqual((trade["price"], trade["volume"], trade["direction"], trade["offset"]),
                         (3801.0, 2.0, "BUY", "OPEN"))
        self.assertEqual(trade["fill_type"], "FULL")
        self.assertEqual(trade["instrument_id"], "CFFEX.IF2501")
        status, acc = self.srv.get("/api/account/nB")
        self.assertEqual(status, 200, acc)
        last_acc = [n["payload"] for n in notes if n["message_type"] == "account_update"][-1]
        self.assertAlmostEqual(last_acc["balance"], acc["data"]["balance"], places=2)
        self.assertAlmostEqual(last_acc["margin"], acc["data"]["margin"], places=2)
        pos = [n["payload"] for n in notes if n["message_type"] == "position_update"][-1]
        self.assertEqual(pos["volume_long"], 2)
        # the maker's resting order was partly filled: 1 lot left
        mnotes, _, _ = drain(maker)
        partial = [n for n in mnotes if n["message_type"] == "order_partially_filled"]
        self.assertEqual(len(partial), 1, mnotes)
        self.assertEqual(partial[0]["payload"]["volume_left"], 1)
        mtrade = next(n["payload"] for n in mnotes if n["message_type"] == "trade_executed")
        self.assertEqual(mtrade["fill_type"], "PARTIAL")
        ids = [n["message_id"] for n in notes + mnotes]
        self.assertEqual(len(ids), len(set(ids)))
        # the other side never sees this account's notifications
        self.assertTrue(all(n["user_id"] == "nA" for n in mnotes))

    def test_no_notifications_before_subscribing(self):
        ws = self.session("nC", subscribe=False)
        ws.send({"action": "get_subscriptions"})
        m, _ = ws.recv_until(lambda m: m.get("action") == "subscriptions_response")
        self.assertEqual((m["channels"], m["active"]), ([], False))
        ws.send({"action": "unsubscribe", "channels": ["trade"]})  # nothing to take away
        self.order(ws, "BUY", 1, 3500.0)
        notes, _, other = drain(ws)
        self.assertEqual(notes, [])
        self.assertIn("order_status", [m.get("type") for m in other])  # the `type` pushes flow

    def test_channel_filter_and_subscription_protocol(self):
        ws = self.session("nC")
        ws.send({"action": "get_subscriptions"})
        m, _ = ws.recv_until(lambda m: m.get("action") == "subscriptions_response")
        self.assertEqual((m["channels"], m["active"]), ([], True))  # empty: everything
        ws.send({"action": "subscribe", "channels": ["trade", "risk"]})
        ws.send({"action": "get_subscriptions"})
        m, _ = ws.recv_until(lambda m: m.get("action") == "subscriptions_response")
        self.assertEqual(sorted(m["channels"]), ["risk", "trade"])
        self.order(ws, "BUY", 1, 3500.0)  # rests far below the market
        notes, _, _ = drain(ws)
        self.assertEqual({CHANNEL_OF[n["message_type"]] for n in notes}, {"trade"})
        self.assertIn("order_accepted", [n["message_type"] for n in notes], notes)
        # an unknown channel is refused and changes nothing
        ws.send({"action": "subscribe", "channels": ["trade", "orderbook"]})
        m, _ = ws.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["code"], 9003)
        self.assertIn("orderbook", m["message"])
        ws.send({"action": "get_subscriptions"})
        m, _ = ws.recv_until(lambda m: m.get("action") == "subscriptions_response")
        self.assertEqual(sorted(m["channels"]), ["risk", "trade"])
        ws.send({"action": "unsubscribe", "channels": ["trade"]})
        self.order(ws, "BUY", 1, 3500.0)
        notes, _, _ = drain(ws)
        self.assertEqual(notes, [])  # only risk is left, and nothing risky happened
        ws.send({"action": "unsubscribe", "channels": ["risk"]})  # empty again: everything
        self.order(ws, "BUY", 1, 3500.0)
        notes, _, _ = drain(ws)
        self.assertIn("account", {CHANNEL_OF[n["message_type"]] for n in notes})
        self.assertIn("trade", {CHANNEL_OF[n["message_type"]] for n in notes})
        ws.send({"action": "launch"})
        m, _ = ws.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["code"], 9003)

    def test_subscribe_naming_no_channel_means_every_channel(self):
        """README: {"action":"subscribe"} is every channel, also after a narrower filter."""
        ws = self.session("nC", subscribe=False)
        ws.send({"action": "subscribe", "channels": ["trade"]})
        self.order(ws, "BUY", 1, 3500.0)
        notes, _, _ = drain(ws)
        self.assertEqual({CHANNEL_OF[n["message_type"]] for n in notes}, {"trade"})
        for widen in ({"action": "subscribe"}, {"action": "subscribe", "channels": []}):
            ws.send({"action": "subscribe", "channels": ["trade"]})
            ws.send(widen)
            ws.send({"action": "get_subscriptions"})
            m, _ = ws.recv_until(lambda m: m.get("action") == "subscriptions_response")
            self.assertEqual((m["channels"], m["active"]), ([], True), widen)  # empty: all
            self.order(ws, "BUY", 1, 3500.0)
            notes, _, _ = drain(ws)
            self.assertIn("account", {CHANNEL_OF[n["message_type"]] for n in notes}, widen)

    def test_actions_need_authentication(self):
        ws = self.srv.ws("/ws")
        self.addCleanup(ws.close)
        ws.send({"action": "subscribe", "channels": ["trade"]})
        m = ws.recv()
        self.assertEqual((m["type"], m["code"]), ("error", 9002))

    def test_rejection_is_p0_and_alone_in_its_frame(self):
        ws = self.session("nPoor")
        self.order(ws, "BUY", 1, 3800.0)  # 1,000 of cash cannot margin a lot
        notes, frames, other = drain(ws)
        resp = next(m for m in other if m.get("type") == "order_response")
        self.assertFalse(resp["success"])
        self.assertEqual(resp["error_code"] if "error_code" in resp else resp.get("code"), 1001)
        rejected = [f for f in frames if f[1][0]["message_type"] == "order_rejected"]
        self.assertEqual(len(rejected), 1, frames)
        kind, (n,) = rejected[0]
        self.assertEqual(kind, "single")  # P0 is pushed at once, not batched
        self.assertEqual(n["priority"], 0)
        self.assertEqual(n["payload"]["code"], 1001)
        self.assertIn("1000", n["payload"]["reason"])  # names the available funds

    def test_margin_call_when_the_price_moves_against_a_holder(self):
        # short 1 IC2501 lot at 5600 (margin 112,000 on 226,000: ratio ~0.5), then other
        # accounts trade at 6100: the margin stays 112,000 (re-margined at settlement) on a balance
        # of ~126,000, ratio ~0.89
        risky = self.session("nRisk")
        a, b, c = self.session("nA"), self.session("nB"), self.session("nC")
        risky.send({"type": "submit_order", "instrument_id": "IC2501", "direction": "SELL",
                    "offset": "OPEN", "volume": 1, "price": 5600.0, "order_type": "LIMIT"})
        self.order(a, "BUY", 1, 5600.0, "IC2501")
        notes, _, _ = drain(risky)
        self.assertIn("trade_executed", [n["message_type"] for n in notes])
        self.assertNotIn("margin_call", [n["message_type"] for n in notes])
        self.order(b, "SELL", 1, 6100.0, "IC2501")
        self.order(c, "BUY", 1, 6100.0, "IC2501")
        notes, frames, _ = drain(risky)
        calls = [n for n in notes if n["message_type"] == "margin_call"]
        self.assertEqual(len(calls), 1, (notes, self.srv.get("/api/account/nRisk")))
        self.check_envelope(calls[0], "nRisk")
        self.assertIn(("single", calls), frames)  # P0: a frame of its own
        status, acc = self.srv.get("/api/account/nRisk")
        ratio = acc["data"]["risk_ratio"]
        self.assertGreaterEqual(ratio, 0.8)
        self.assertLess(ratio, 0.95)
        self.assertAlmostEqual(calls[0]["payload"]["risk_ratio"], ratio, places=6)
        self.assertEqual(calls[0]["payload"]["risk_level"], acc["data"]["risk_level"])
        # nothing new: no second call while the ratio stays in the band
        self.order(b, "SELL", 1, 6101.0, "IC2501")
        self.order(c, "BUY", 1, 6101.0, "IC2501")
        notes, _, _ = drain(risky)
        self.assertNotIn("margin_call", [n["message_type"] for n in notes])

    def test_market_halt_reaches_every_session(self):
        a, b = self.session("nA"), self.session("nB")
        drain(a), drain(b)
        status, body = self.srv.request("PUT", "/admin/instrument/CFFEX.IH2501/suspend")
        self.assertEqual(status, 200, body)
        try:
            for ws, user in ((a, "nA"), (b, "nB")):
                notes, _, _ = drain(ws)
                halts = [n for n in notes if n["message_type"] == "market_halt"]
                self.assertEqual(len(halts), 1, notes)
                self.assertEqual(halts[0]["priority"], 3)
                self.assertEqual(halts[0]["payload"]["instrument_id"], "CFFEX.IH2501")
                self.assertEqual(halts[0]["user_id"], "")
        finally:
            self.srv.request("PUT", "/admin/instrument/CFFEX.IH2501/resume")
        notes, _, _ = drain(a)
        self.assertEqual([n["message_type"] for n in notes], ["system_notice"])
        self.assertEqual(notes[0]["payload"]["status"], "Trading")


class ResumeTest(unittest.TestCase):
    """Risk bands are followed only while someone listens: what an account did while nobody
    did is not reported late as a crossing when a session subscribes again."""

    def test_first_sight_after_a_pause_only_records_the_band(self):
        srv = Server()
        self.addCleanup(srv.close)
        for user, cash in (("rR", 226_000), ("rA", 10_000_000), ("rB", 10_000_000),
                           ("rC", 10_000_000)):
            status, body = srv.post("/api/account/open", {"user_id": user, "init_cash": cash})
            self.assertEqual(status, 200, body)

        def session(user):
            ws = srv.ws("/ws")
            self.addCleanup(ws.close)
            ws.send({"type": "auth", "user_id": user, "token": "demo"})
            m, _ = ws.recv_until(lambda m: m.get("type") == "auth_response")
            self.assertTrue(m["success"], m)
            return ws

        def order(ws, direction, price, volume=1):
            ws.send({"type": "submit_order", "instrument_id": "IC2501", "direction": direction,
                     "offset": "OPEN", "volume": volume, "price": price, "order_type": "LIMIT"})

        risky, a, b, c = session("rR"), session("rA"), session("rB"), session("rC")
        risky.send({"action": "subscribe"})
        order(risky, "SELL", 5600.0)  # seen in the calm band (ratio ~0.5)
        order(a, "BUY", 5600.0)
        notes, _, _ = drain(risky)
        self.assertIn("trade_executed", [n["message_type"] for n in notes])
        risky.close()  # the only subscriber leaves (unsubscribe_all would mean every channel)
        order(b, "SELL", 6100.0)  # while nobody listens the ratio rises to ~0.89
        order(c, "BUY", 6100.0)
        drain(b, limit=1.0)
        status, acc = srv.get("/api/account/rR")
        self.assertGreaterEqual(acc["data"]["risk_ratio"], 0.8)
        risky = session("rR")
        risky.send({"action": "subscribe"})
        drain(risky)
        order(b, "SELL", 6101.0)  # the first event for rR after the pause
        order(c, "BUY", 6101.0)
        notes, _, _ = drain(risky)
        self.assertNotIn("margin_call", [n["message_type"] for n in notes], notes)
        # and the subscription is live: rR's own rejected order comes through
        order(risky, "BUY", 6101.0, volume=100)
        notes, _, _ = drain(risky)
        self.assertIn("order_rejected", [n["message_type"] for n in notes], notes)


class AutoSubscribeTest(unittest.TestCase):
    """[notification] auto_subscribe = true: every authenticated session gets every channel
    (with batch_size and batch_interval_ms set, which the broker takes)."""

    def test_sessions_receive_without_asking(self):
        tmp = tempfile.mkdtemp(prefix="qaex-notify-")
        cfg = os.path.join(tmp, "exchange.toml")
        with open(cfg, "w") as f:
            f.write("[notification]\nauto_subscribe = true\nbatch_size = 2\n"
                    "batch_interval_ms = 50\n")
        srv = Server(config=cfg)
        self.addCleanup(srv.close)
        status, body = srv.post("/api/account/open", {"user_id": "auto", "init_cash": 1e7})
        self.assertEqual(status, 200, body)
        ws = srv.ws("/ws")
        self.addCleanup(ws.close)
        ws.send({"type": "auth", "user_id": "auto", "token": "demo"})
        ws.recv_until(lambda m: m.get("type") == "auth_response")
        ws.send({"type": "submit_order", "instrument_id": "IF2501", "direction": "BUY",
                 "offset": "OPEN", "volume": 1, "price": 3500.0, "order_type": "LIMIT"})
        notes, frames, _ = drain(ws)
        types = [n["message_type"] for n in notes]
        self.assertIn("order_accepted", types)
        self.assertIn("account_update", types)
        self.assertTrue(all(kind == "batch" for kind, _ in frames), frames)


if __name__ == "__main__":
    unittest.main()
