"""Market data against the real server (issue 5, SPEC 5 and 6): ticks, depth, the trade tape,
order statistics and K-lines over REST, the /ws orderbook/ticker/kline/market_trade pushes,
conflation for a subscriber that never reads, and K-line history across restarts.

Every expected figure is computed here from the trades the test itself makes; the server's only
contribution to the expectation is each trade's timestamp (which bar it falls in)."""
import json
import os
import shutil
import signal
import tempfile
import threading
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

PERIODS = ["3s", "1min", "5min", "15min", "30min", "60min", "day"]
PERIOD_MS = {"3s": 3000, "1min": 60000, "5min": 300000, "15min": 900000, "30min": 1800000,
             "60min": 3600000, "day": 86400000}
ALIASES = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "60min", "1d": "day"}
MULT = {"IF2501": 300, "IC2501": 200, "IH2501": 300}
PRE = {"IF2501": 3800.0, "IC2501": 5600.0, "IH2501": 2800.0}




def cancel(srv, user, order_id):
    return ok(srv, "POST", "/api/order/cancel", {"user_id": user, "order_id": order_id})


def near(a, b, tol=1e-6):
    return a is not None and b is not None and abs(a - b) <= tol * max(1.0, abs(b))


def wait_window_start(period=3.0, offset=0.2, need=1.5):
    """Sleeps until `offset` s into a `period`-long window with at least `need` s of it left."""
    into = time.time() % period
    if into < offset:
        time.sleep(offset - into)
    elif period - into < need:
        time.sleep(period - into + offset)


def wait_minute_clear(margin=8.0):
    """Sleeps past the next minute boundary when it is less than `margin` s away: every period
    from 1min up ends on a minute boundary, so a check that takes less than `margin` s then
    stays inside one bar of each."""
    left = 60.0 - time.time() % 60.0
    if left < margin:
        time.sleep(left + 0.5)


def server_trades(srv, ins, n):
    """The last n matches of an instrument from the tape, oldest first."""
    tape = get(srv, f"/api/market/recent-trades/{ins}?limit={n}")
    return list(reversed(tape))


def expected_bars(trades, period_ms, mult):
    """Bars computed from trades: dicts with ts (ms), price, volume, oi_before, oi_after."""
    bars = []
    for t in trades:
        start = t["ts"] - t["ts"] % period_ms
        if not bars or bars[-1]["timestamp"] != start:
            bars.append({"timestamp": start, "open": t["price"], "high": t["price"],
                         "low": t["price"], "close": t["price"], "volume": 0, "amount": 0.0,
                         "open_oi": t["oi_before"], "close_oi": 0, "trades": 0})
        b = bars[-1]
        b["high"] = max(b["high"], t["price"])
        b["low"] = min(b["low"], t["price"])
        b["close"] = t["price"]
        b["volume"] += t["volume"]
        b["amount"] += t["price"] * t["volume"] * mult
        b["close_oi"] = t["oi_after"]
        b["trades"] += 1
    return bars


class Trader:
    """Places crossing pairs through REST and keeps its own record of every match: price,
    volume, taker side, buyer, seller and the open interest before and after."""

    def __init__(self, srv, ins):
        self.srv, self.ins, self.oi, self.trades = srv, ins, 0, []

    def cross(self, maker, maker_dir, maker_off, taker, taker_off, volume, price):
        taker_dir = "BUY" if maker_dir == "SELL" else "SELL"
        order(self.srv, maker, self.ins, maker_dir, maker_off, volume, price)
        o = order(self.srv, taker, self.ins, taker_dir, taker_off, volume, price)
        assert o["volume_left"] == 0, o
        self.record(price, volume, taker_dir, maker if maker_dir == "BUY" else taker,
                    maker if maker_dir == "SELL" else taker, maker_off, taker_off)

    def record(self, price, volume, taker_dir, buyer, seller, off1, off2):
        before = self.oi
        opens = (off1 == "OPEN") + (off2 == "OPEN")
        self.oi += volume if opens == 2 else (-volume if opens == 0 else 0)
        self.trades.append({"price": price, "volume": volume, "direction": taker_dir,
                            "buyer": buyer, "seller": seller, "oi_before": before,
                            "oi_after": self.oi})

    def with_timestamps(self):
        """My trades with the server's timestamp of each (the tape must agree on the rest)."""
        tape = server_trades(self.srv, self.ins, len(self.trades))
        assert len(tape) == len(self.trades), (tape, self.trades)
        out = []
        for mine, theirs in zip(self.trades, tape):
            assert near(theirs["price"], mine["price"]) and theirs["volume"] == mine["volume"], \
                (mine, theirs)
            out.append(dict(mine, ts=theirs["timestamp"]))
        return out


def klines_of(srv, ins):
    return {p: get(srv, f"/api/klines/{ins}/{p}?count=100000") for p in PERIODS}


class MarketRestTest(unittest.TestCase):
    """One scripted session on IF2501 (and one match on IC2501), then read-only checks."""

    @classmethod
    def setUpClass(cls):
        cls.srv = srv = Server()
        try:
            open_accounts(srv, ["mA", "mB", "mC"])
            T = cls.trader = Trader(srv, "IF2501")
            ins = "IF2501"
            order(srv, "mA", ins, "SELL", "OPEN", 2, 3805.0)
            order(srv, "mA", ins, "SELL", "OPEN", 1, 3806.0)
            cls.o3 = order(srv, "mC", ins, "SELL", "OPEN", 4, 3807.0)
            o4 = order(srv, "mB", ins, "BUY", "OPEN", 3, 3806.0)   # lifts 3805x2 then 3806x1
            assert o4["volume_left"] == 0, o4
            T.record(3805.0, 2, "BUY", "mB", "mA", "OPEN", "OPEN")
            T.record(3806.0, 1, "BUY", "mB", "mA", "OPEN", "OPEN")
            order(srv, "mB", ins, "BUY", "OPEN", 1, 3790.0)
            order(srv, "mC", ins, "BUY", "OPEN", 2, 3789.8)
            order(srv, "mB", ins, "BUY", "OPEN", 5, 3788.0)
            o8 = order(srv, "mA", ins, "SELL", "OPEN", 2, 3789.8)  # hits 3790x1, 3789.8x1
            assert o8["volume_left"] == 0, o8
            T.record(3790.0, 1, "SELL", "mB", "mA", "OPEN", "OPEN")
            T.record(3789.8, 1, "SELL", "mC", "mA", "OPEN", "OPEN")
            o9 = order(srv, "mB", ins, "SELL", "CLOSE", 1, 3788.0)  # hits mC's 3789.8
            assert o9["volume_left"] == 0, o9
            T.record(3789.8, 1, "SELL", "mC", "mB", "OPEN", "CLOSE")
            o10 = order(srv, "mA", ins, "BUY", "CLOSE", 1, 3807.0)  # lifts mC's 3807
            assert o10["volume_left"] == 0, o10
            T.record(3807.0, 1, "BUY", "mA", "mC", "CLOSE", "OPEN")
            # resting depth
            order(srv, "mC", ins, "BUY", "OPEN", 1, 3787.0)
            order(srv, "mC", ins, "BUY", "OPEN", 2, 3786.4)
            order(srv, "mA", ins, "SELL", "OPEN", 1, 3808.0)
            order(srv, "mA", ins, "SELL", "OPEN", 2, 3808.0)
            order(srv, "mA", ins, "SELL", "OPEN", 1, 3810.2)
            gone = order(srv, "mA", ins, "SELL", "OPEN", 1, 3815.0)
            cancel(srv, "mA", gone["order_id"])
            # one match on another instrument, the newest of all
            cls.ic = Trader(srv, "IC2501")
            cls.ic.cross("mA", "SELL", "OPEN", "mB", "OPEN", 1, 5600.0)
        except Exception:
            srv.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def test_tick(self):
        t = get(self.srv, "/api/market/tick/IF2501")
        trades = self.trader.trades
        prices = [x["price"] for x in trades]
        volume = sum(x["volume"] for x in trades)
        turnover = sum(x["price"] * x["volume"] * 300 for x in trades)
        self.assertEqual(t["instrument_id"], "CFFEX.IF2501")
        self.assertEqual(t["last_price"], 3807.0)
        self.assertEqual(t["open"], prices[0])
        self.assertEqual(t["high"], max(prices))
        self.assertEqual(t["low"], min(prices))
        self.assertEqual(t["volume"], volume)
        self.assertEqual(volume, 7)
        self.assertTrue(near(t["turnover"], turnover), (t["turnover"], turnover))
        self.assertTrue(near(t["amount"], turnover))
        self.assertTrue(near(t["average"], turnover / (volume * 300)))
        self.assertEqual(t["open_interest"], self.trader.oi)
        self.assertEqual(t["open_interest"], 5)
        self.assertEqual(t["pre_close"], 3800.0)
        self.assertEqual(t["pre_settlement"], 3800.0)
        self.assertTrue(near(t["change_amount"], 7.0))
        self.assertTrue(near(t["change_percent"], 7.0 / 3800.0 * 100.0))
        self.assertTrue(near(t["upper_limit"], 4180.0) and near(t["lower_limit"], 3420.0))
        bids = [(3788.0, 5), (3787.0, 1), (3786.4, 2)]
        asks = [(3807.0, 3), (3808.0, 3), (3810.2, 1)]
        for side, levels in (("bid", bids), ("ask", asks)):
            for i in range(5):
                price, vol = levels[i] if i < len(levels) else (None, 0)
                got = t[f"{side}_price{i + 1}"]
                if price is None:
                    self.assertIsNone(got, f"{side}_price{i + 1}")
                else:
                    self.assertTrue(near(got, price), (side, i, got, price))
                self.assertEqual(t[f"{side}_volume{i + 1}"], vol, (side, i))
        self.assertTrue(near(t["bid_price"], 3788.0) and t["bid_volume"] == 5)
        self.assertTrue(near(t["ask_price"], 3807.0) and t["ask_volume"] == 3)
        self.assertGreaterEqual(len(t), 35)
        # the other instrument: its own multiplier
        ic = get(self.srv, "/api/market/tick/CFFEX.IC2501")
        self.assertEqual((ic["volume"], ic["open_interest"], ic["last_price"]), (1, 1, 5600.0))
        self.assertTrue(near(ic["turnover"], 5600.0 * 200))
        # an instrument without trades: no open/high/low yet, the reference price as last
        ih = get(self.srv, "/api/market/tick/IH2501")
        self.assertEqual((ih["volume"], ih["open_interest"]), (0, 0))
        self.assertIsNone(ih["open"])
        self.assertIsNone(ih["high"])
        self.assertEqual(ih["last_price"], 2800.0)
        self.assertIsNone(ih["bid_price1"])

    def test_depth(self):
        bids = [{"price": 3788.0, "volume": 5}, {"price": 3787.0, "volume": 1},
                {"price": 3786.4, "volume": 2}]
        asks = [{"price": 3807.0, "volume": 3}, {"price": 3808.0, "volume": 3},
                {"price": 3810.2, "volume": 1}]

        def levels(side):
            return [{"price": round(x["price"], 6), "volume": x["volume"]} for x in side]

        for depth in (1, 2, 3, 5, 50):
            ob = get(self.srv, f"/api/market/orderbook/IF2501?depth={depth}")
            self.assertEqual(ob["instrument_id"], "CFFEX.IF2501")
            self.assertEqual(levels(ob["bids"]), bids[:depth], depth)
            self.assertEqual(levels(ob["asks"]), asks[:depth], depth)
        ob = get(self.srv, "/api/market/orderbook/IF2501")  # default depth 5
        self.assertEqual((len(ob["bids"]), len(ob["asks"])), (3, 3))
        # the seed's Level2 entries count the orders of each level too: 3808 holds two
        self.assertEqual([x.get("order_count") for x in ob["bids"]], [1, 1, 1])
        self.assertEqual([x.get("order_count") for x in ob["asks"]], [1, 2, 1])
        empty = get(self.srv, "/api/market/orderbook/IH2501?depth=10")
        self.assertEqual((empty["bids"], empty["asks"]), ([], []))

    def test_recent_trades(self):
        tape = get(self.srv, "/api/market/recent-trades/IF2501")
        mine = list(reversed(self.trader.trades))
        self.assertEqual(len(tape), len(mine))
        for got, want in zip(tape, mine):
            self.assertTrue(near(got["price"], want["price"]), (got, want))
            self.assertEqual(got["volume"], want["volume"])
            self.assertEqual(got["direction"], want["direction"], (got, want))
        stamps = [x["timestamp"] for x in tape]
        self.assertEqual(stamps, sorted(stamps, reverse=True))
        two = get(self.srv, "/api/market/recent-trades/IF2501?limit=2")
        self.assertEqual(two, tape[:2])

    def test_transactions(self):
        every = get(self.srv, "/api/market/transactions")
        self.assertEqual(len(every), 7)
        newest = every[0]  # the IC2501 match came last
        self.assertEqual((newest["instrument_id"], newest["buyer"], newest["seller"]),
                         ("CFFEX.IC2501", "mB", "mA"))
        only = get(self.srv, "/api/market/transactions?instrument_id=IF2501&limit=100")
        mine = list(reversed(self.trader.trades))
        self.assertEqual(len(only), len(mine))
        for got, want in zip(only, mine):
            self.assertEqual(got["instrument_id"], "CFFEX.IF2501")
            self.assertEqual((got["buyer"], got["seller"], got["volume"], got["direction"]),
                             (want["buyer"], want["seller"], want["volume"], want["direction"]))
            self.assertTrue(near(got["price"], want["price"]))
        self.assertEqual(every[1:], only)
        three = get(self.srv, "/api/market/transactions?instrument_id=CFFEX.IF2501&limit=3")
        self.assertEqual(three, only[:3])

    def test_order_stats(self):
        s = get(self.srv, "/api/market/order-stats")
        # IF2501: 10 scripted + 5 resting + 1 cancelled; IC2501: 2
        self.assertEqual(s["total_orders"], 18)
        self.assertEqual(s["buy_orders"], 8)
        self.assertEqual(s["sell_orders"], 10)
        self.assertEqual(s["filled_orders"], 10)
        self.assertEqual(s["live_orders"], 7)
        self.assertEqual(s["cancelled_orders"], 1)
        self.assertEqual(s["by_instrument"], {"CFFEX.IF2501": 16, "CFFEX.IC2501": 2})

    def test_symbols_document(self):
        status, doc = self.srv.get("/api/market/symbols")
        self.assertEqual(status, 200)
        self.assertNotIn("success", doc)  # a bare document, no envelope
        self.assertEqual(set(doc), {"CFFEX.IF2501", "CFFEX.IC2501", "CFFEX.IH2501"})
        s = doc["CFFEX.IC2501"]
        self.assertEqual((s["class"], s["exchange_id"], s["ins_id"], s["volume_multiple"]),
                         ("FUTURE", "CFFEX", "IC2501", 200))
        self.assertTrue(near(s["price_tick"], 0.2))

    def test_errors(self):
        cases = [
            ("/api/klines/IF2501/2min", 400, 9003, "2min"),
            ("/api/klines/IF2501/0s", 400, 9003, "0s"),
            ("/api/market/kline/IF2501?period=7x", 400, 9003, "7x"),
            ("/api/klines/IF2501/1min?count=0", 400, 9003, "0"),
            ("/api/klines/IF2501/1min?count=abc", 400, 9003, "abc"),
            ("/api/klines/IF2501/1min?start=x1", 400, 9003, "x1"),
            ("/api/market/orderbook/IF2501?depth=0", 400, 9003, "0"),
            ("/api/market/orderbook/IF2501?depth=51", 400, 9003, "51"),
            ("/api/market/orderbook/IF2501?depth=deep", 400, 9003, "deep"),
            ("/api/market/recent-trades/IF2501?limit=-1", 400, 9003, "-1"),
            ("/api/market/tick/XX9999", 404, 1007, "XX9999"),
            ("/api/market/orderbook/XX9999", 404, 1007, "XX9999"),
            ("/api/klines/XX9999/3s", 404, 1007, "XX9999"),
            ("/api/market/kline/XX9999?period=1min", 404, 1007, "XX9999"),
            ("/api/market/recent-trades/XX9999", 404, 1007, "XX9999"),
        ]
        for path, status, code, named in cases:
            st, body = self.srv.get(path)
            self.assertEqual(st, status, (path, body))
            self.assertFalse(body["success"], path)
            self.assertEqual(body["error"]["code"], code, (path, body))
            self.assertIn(named, body["error"]["message"], (path, body))


class SettlementTickTest(unittest.TestCase):
    """The tick of IF2501 across a settlement: the day's statistics start again, the open
    interest carries over, and before the new day's first trade nothing has changed."""

    def setUp(self):
        self.srv = Server()
        self.addCleanup(self.srv.close)
        open_accounts(self.srv, ["sA", "sB", "sC"])

    def test_tick_across_settlement(self):
        srv = self.srv
        T = Trader(srv, "IF2501")
        T.cross("sA", "BUY", "OPEN", "sB", "OPEN", 2, 3801.0)   # OI 2
        T.cross("sB", "SELL", "OPEN", "sC", "OPEN", 1, 3802.0)  # OI 3
        T.cross("sA", "SELL", "CLOSE", "sB", "CLOSE", 1, 3799.0)  # OI 2
        t = get(srv, "/api/market/tick/IF2501")
        turnover = (3801.0 * 2 + 3802.0 + 3799.0) * 300
        self.assertEqual((t["volume"], t["open_interest"], t["last_price"]), (4, 2, 3799.0))
        self.assertTrue(near(t["turnover"], turnover))
        self.assertTrue(near(t["average"], turnover / (4 * 300)))  # 3800.75
        self.assertTrue(near(t["change_amount"], -1.0))
        self.assertTrue(near(t["change_percent"], -1.0 / 3800.0 * 100.0))
        ok(srv, "POST", "/admin/settlement/set-price",
           {"instrument_id": "IF2501", "settlement_price": 3805.0})
        ok(srv, "POST", "/admin/settlement/execute", {})
        t = get(srv, "/api/market/tick/IF2501")
        self.assertEqual((t["pre_close"], t["pre_settlement"]), (3799.0, 3805.0))
        self.assertEqual((t["volume"], t["turnover"], t["open"], t["high"], t["low"],
                          t["average"]), (0, 0.0, None, None, None, None))
        self.assertEqual((t["open_interest"], t["pre_open_interest"]), (2, 2))
        # no trade yet today: the last price is yesterday's close, nothing changed
        self.assertEqual(t["last_price"], 3799.0)
        self.assertEqual((t["change_amount"], t["change_percent"]), (0.0, 0.0))
        listed = {i["instrument_id"]: i for i in get(srv, "/api/market/instruments")}
        self.assertEqual(listed["CFFEX.IF2501"]["last_price"], 3799.0)
        # limits of the new day around the settlement price, on the tick
        self.assertTrue(near(t["upper_limit"], 4185.4) and near(t["lower_limit"], 3424.6), t)
        T.cross("sC", "SELL", "CLOSE", "sA", "OPEN", 1, 3806.0)  # OI 2
        t = get(srv, "/api/market/tick/IF2501")
        self.assertEqual((t["volume"], t["open_interest"], t["last_price"], t["open"]),
                         (1, 2, 3806.0, 3806.0))
        self.assertTrue(near(t["change_amount"], 7.0))
        self.assertTrue(near(t["change_percent"], 7.0 / 3799.0 * 100.0))

    def test_ticker_push_on_the_new_day(self):
        """A ticker subscriber learns of the new day (statistics reset, new limits) when the
        settlement opens it, not only at the next trade."""
        ws = Client(self.srv.port, "/ws")
        self.addCleanup(ws.close)
        ws.send({"type": "subscribe", "channels": ["ticker"], "instruments": ["IF2501"]})
        ws.until(lambda m: m.get("type") == "subscribe_response")
        T = Trader(self.srv, "IF2501")
        T.cross("sA", "BUY", "OPEN", "sB", "OPEN", 2, 3801.0)
        ws.until(lambda m: m.get("type") == "ticker" and m.get("volume") == 2)
        ok(self.srv, "POST", "/admin/settlement/set-price",
           {"instrument_id": "IF2501", "settlement_price": 3805.0})
        ok(self.srv, "POST", "/admin/settlement/execute", {})
        m, _ = ws.until(lambda m: m.get("type") == "ticker" and m.get("volume") == 0, 5.0)
        self.assertEqual((m["pre_close"], m["pre_settlement"], m["last_price"]),
                         (3801.0, 3805.0, 3801.0))
        self.assertEqual((m["open_interest"], m["pre_open_interest"], m["change_amount"]),
                         (2, 2, 0.0))
        self.assertTrue(near(m["upper_limit"], 4185.4) and near(m["lower_limit"], 3424.6), m)


class KlineTest(unittest.TestCase):
    """Trades in two 3-second windows on IH2501; bars of every period computed here."""

    @classmethod
    def setUpClass(cls):
        cls.srv = srv = Server()
        try:
            open_accounts(srv, ["kA", "kB"])
            T = cls.trader = Trader(srv, "IH2501")
            wait_minute_clear(12.0)
            wait_window_start()
            T.cross("kA", "SELL", "OPEN", "kB", "OPEN", 2, 2801.0)
            T.cross("kA", "SELL", "OPEN", "kB", "OPEN", 1, 2803.0)
            T.cross("kA", "BUY", "CLOSE", "kB", "CLOSE", 1, 2799.6)
            time.sleep(3.0 - time.time() % 3.0 + 0.2)  # the next 3 s window
            T.cross("kA", "SELL", "OPEN", "kB", "OPEN", 3, 2802.2)
            T.cross("kB", "SELL", "CLOSE", "kA", "OPEN", 2, 2800.0)
            cls.last_trade = time.time()
            cls.trades = T.with_timestamps()
            # a 3 s bar with no later trade closes by the clock
            deadline = cls.last_trade + 5.0
            cls.closed_after = None
            while time.time() < deadline:
                bars = get(srv, "/api/klines/IH2501/3s")
                if bars and all(b["is_finished"] for b in bars):
                    cls.closed_after = time.time() - cls.last_trade
                    break
                time.sleep(0.1)
        except Exception:
            srv.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def check_bars(self, got, period, t_before, t_after):
        want = expected_bars(self.trades, PERIOD_MS[period], 300)
        self.assertEqual(len(got), len(want), (period, got, want))
        for i, (g, w) in enumerate(zip(got, want)):
            for k in ("timestamp", "open", "high", "low", "close", "volume", "open_oi",
                      "close_oi", "trades"):
                self.assertEqual(g[k], w[k], (period, i, k, g, w))
            self.assertTrue(near(g["amount"], w["amount"]), (period, i, g["amount"], w["amount"]))
            self.assertEqual(g["instrument_id"], "CFFEX.IH2501")
            self.assertEqual(g["period"], period)
            end = w["timestamp"] + PERIOD_MS[period]
            if i < len(want) - 1 or end <= t_before * 1000 - 1000:
                self.assertTrue(g["is_finished"], (period, i, g))
            elif end > t_after * 1000:
                self.assertFalse(g["is_finished"], (period, i, g))

    def test_time_driven_close(self):
        self.assertIsNotNone(self.closed_after,
                             "the last 3s bar was not finished 5 s after the last trade: " +
                             json.dumps(get(self.srv, "/api/klines/IH2501/3s")))
        bars = get(self.srv, "/api/klines/IH2501/3s")
        self.assertGreaterEqual(len(bars), 2)
        self.assertTrue(all(b["is_finished"] for b in bars))

    def test_every_period(self):
        t0 = time.time()
        got = klines_of(self.srv, "IH2501")
        t1 = time.time()
        for p in PERIODS:
            self.check_bars(got[p], p, t0, t1)
        # the scripted trades span two 3 s bars; OI went 0 -> 3 -> 2 -> 5 -> 5
        self.assertEqual(len(got["3s"]), 2)
        self.assertEqual([(b["open_oi"], b["close_oi"]) for b in got["3s"]], [(0, 2), (2, 5)])
        self.assertEqual(got["3s"][0]["volume"], 4)
        self.assertEqual(got["3s"][1]["volume"], 5)
        day = got["day"][-1]
        self.assertEqual((day["open"], day["high"], day["low"], day["close"], day["volume"]),
                         (2801.0, 2803.0, 2799.6, 2800.0, 9))

    def test_routes_and_aliases_agree(self):
        for alias, name in ALIASES.items():
            a = get(self.srv, f"/api/klines/IH2501/{alias}")
            b = get(self.srv, f"/api/klines/CFFEX.IH2501/{name}")
            c = get(self.srv, f"/api/market/kline/IH2501?period={alias}")
            self.assertEqual(a, b, alias)
            self.assertEqual(a, c, alias)
        self.assertEqual(get(self.srv, "/api/market/kline/IH2501"),
                         get(self.srv, "/api/klines/IH2501/1min"))

    def test_count_start_end(self):
        bars = get(self.srv, "/api/klines/IH2501/3s")
        self.assertEqual(len(bars), 2)
        first, second = bars
        self.assertEqual(get(self.srv, "/api/klines/IH2501/3s?count=1"), [second])
        self.assertEqual(get(self.srv, f"/api/klines/IH2501/3s?start={second['timestamp']}"),
                         [second])
        self.assertEqual(get(self.srv, f"/api/klines/IH2501/3s?end={second['timestamp']}"),
                         [first])
        self.assertEqual(get(self.srv, f"/api/market/kline/IH2501?period=3s"
                                       f"&start={first['timestamp']}&end={second['timestamp'] + 1}"),
                         bars)
        self.assertEqual(get(self.srv, f"/api/klines/IH2501/3s?start={second['timestamp'] + 3000}"),
                         [])
        # no trades, no bars
        self.assertEqual(get(self.srv, "/api/klines/IF2501/3s"), [])


class WsMarketTest(unittest.TestCase):
    def setUp(self):
        self.srv = Server()
        self.addCleanup(self.srv.close)
        open_accounts(self.srv, ["wA", "wB"])

    def client(self, path="/ws", **kw):
        c = Client(self.srv.port, path, **kw)
        self.addCleanup(c.close)
        return c

    def test_pushes_have_the_right_values(self):
        ws = self.client()
        ws.send({"type": "subscribe", "channels": ["orderbook", "ticker", "kline", "trade"],
                 "instruments": ["IC2501"]})
        m, _ = ws.until(lambda m: m.get("type") == "subscribe_response")
        self.assertTrue(m["success"])
        # the current state on subscribing
        ws.until(lambda m: m.get("type") == "orderbook")
        wait_window_start(need=2.0)
        order(self.srv, "wA", "IC2501", "SELL", "OPEN", 2, 5610.0)
        ob, _ = ws.until(lambda m: m.get("type") == "orderbook" and m["asks"])
        self.assertEqual(ob["instrument_id"], "CFFEX.IC2501")
        self.assertEqual(ob["asks"], [{"price": 5610.0, "volume": 2, "order_count": 1}])
        order(self.srv, "wB", "IC2501", "BUY", "OPEN", 1, 5610.0)
        mt, _ = ws.until(lambda m: m.get("type") == "market_trade")
        self.assertEqual((mt["instrument_id"], mt["price"], mt["volume"], mt["direction"]),
                         ("CFFEX.IC2501", 5610.0, 1, "BUY"))
        tk, _ = ws.until(lambda m: m.get("type") == "ticker" and m.get("volume") == 1)
        self.assertEqual(tk["instrument_id"], "CFFEX.IC2501")
        self.assertEqual(tk["last_price"], 5610.0)
        self.assertTrue(near(tk["turnover"], 5610.0 * 200))
        self.assertEqual(tk["open_interest"], 1)
        self.assertEqual((tk["ask_price1"], tk["ask_volume1"]), (5610.0, 1))
        self.assertEqual((tk["bid_price1"], tk["bid_volume1"]), (None, 0))
        self.assertEqual((tk["open"], tk["high"], tk["low"]), (5610.0, 5610.0, 5610.0))
        self.assertTrue(near(tk["change_amount"], 10.0))
        order(self.srv, "wB", "IC2501", "BUY", "OPEN", 3, 5604.4)
        ob, _ = ws.until(lambda m: m.get("type") == "orderbook" and m["bids"])
        self.assertEqual(ob["asks"], [{"price": 5610.0, "volume": 1, "order_count": 1}])
        self.assertEqual(ob["bids"], [{"price": 5604.4, "volume": 3, "order_count": 1}])
        # the 3 s bar closes by the clock and is pushed
        kl, _ = ws.until(lambda m: m.get("type") == "kline" and m.get("period") == "3s", 6.0)
        self.assertTrue(kl["is_finished"])
        self.assertEqual((kl["open"], kl["high"], kl["low"], kl["close"], kl["volume"],
                          kl["open_oi"], kl["close_oi"]), (5610.0, 5610.0, 5610.0, 5610.0, 1, 0, 1))
        self.assertTrue(near(kl["amount"], 5610.0 * 200))
        rest = get(self.srv, "/api/klines/IC2501/3s")
        self.assertEqual(dict(kl, type=None), dict(rest[-1], type=None))

    def test_a_subscriber_that_never_reads(self):
        n = 5000
        open_accounts(self.srv, ["wBig"], cash=2_000_000_000)
        slow = self.client(rcvbuf=4096)
        slow.send({"type": "subscribe", "channels": ["orderbook", "ticker", "trade"],
                   "instruments": ["IF2501"]})
        fast = self.client()
        fast.send({"type": "subscribe", "channels": ["orderbook"], "instruments": ["IF2501"]})
        fast.until(lambda m: m.get("type") == "orderbook")
        rss_before = rss_kb(self.srv.proc.pid)
        # n book changes, pipelined over one session; a thread reads its answers
        trader = self.client("/ws?user_id=wBig")
        answered = []
        failures = []

        def read_answers():
            try:
                while len(answered) < n:
                    m = trader.next(60)
                    if m.get("type") == "order_response":
                        answered.append(m.get("success"))
            except Exception as e:  # reported below
                failures.append(e)

        reader = threading.Thread(target=read_answers, daemon=True)
        reader.start()
        for i in range(n):
            trader.send({"type": "submit_order", "instrument_id": "IF2501", "direction": "BUY",
                         "offset": "OPEN", "volume": 1, "price": round(3500 + (i % 500) * 0.2, 1)})
        reader.join(90)
        self.assertFalse(reader.is_alive(), f"only {len(answered)} of {n} orders answered")
        self.assertEqual(failures, [])
        self.assertTrue(all(answered), "some orders of the burst were refused")
        # other clients do not suffer: a fresh change reaches the reading subscriber at once
        t0 = time.monotonic()
        order(self.srv, "wA", "IF2501", "SELL", "OPEN", 1, 4000.0)
        m, _ = fast.until(lambda m: m.get("type") == "orderbook" and
                          any(a["price"] == 4000.0 for a in m["asks"]), 5.0)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(m["bids"][0],
                         {"price": 3599.8, "volume": n // 500, "order_count": n // 500})
        self.assertEqual(self.srv.get("/health")[0], 200)
        # the slow session was owed the latest book, not a backlog of n: what it gets is what the
        # kernel's socket buffers took before it stopped reading (the server writes up to 64 KiB
        # of queued frames at once) plus one conflated book, far below one push per change
        rss_after = rss_kb(self.srv.proc.pid)
        got = slow.drain(3.0)
        books = [m for m in got if m.get("type") == "orderbook"]
        self.assertLess(len(books), n // 4, f"{len(books)} orderbook pushes queued for {n} changes")
        self.assertTrue(books and any(a["price"] == 4000.0 for a in books[-1]["asks"]),
                        "the slow subscriber's last book is not the latest")
        if not sanitized(self.srv.proc.pid):  # the order pools grow too; far below a backlog
            self.assertLess(rss_after - rss_before, 64 * 1024,
                            f"server grew {rss_after - rss_before} kB during the burst")


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


class KlineRestartTest(unittest.TestCase):
    """K-line history is the same after a clean stop and after kill -9."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qaex-market-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.data = os.path.join(self.tmp, "data")

    def start(self):
        srv = Server(storage=True, data_dir=self.data)
        self.addCleanup(srv.close)
        return srv

    def snapshot(self, srv):
        return {ins: klines_of(srv, ins) for ins in ("IF2501", "IH2501")}

    def assert_same(self, before, after, t_after):
        """Identical, except that a bar in progress whose period ended before `t_after` may
        have been closed by the clock meanwhile (then it differs only in is_finished)."""
        for ins in before:
            for p in PERIODS:
                b, a = before[ins][p], after[ins][p]
                self.assertEqual(len(a), len(b), (ins, p, b, a))
                for x, y in zip(b, a):
                    if x != y and not x["is_finished"] and y["is_finished"] and \
                            x["timestamp"] + PERIOD_MS[p] <= t_after * 1000 + 500:
                        x = dict(x, is_finished=True)
                    self.assertEqual(x, y, (ins, p))

    def wait_closed(self, srv, ins, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            bars = get(srv, f"/api/klines/{ins}/3s")
            if bars and all(b["is_finished"] for b in bars):
                return
            time.sleep(0.1)
        self.fail(f"3s bars of {ins} not closed by the clock: {bars}")

    def test_restart_keeps_klines(self):
        srv = self.start()
        open_accounts(srv, ["rA", "rB"])
        wait_minute_clear(14.0)
        wait_window_start()
        T = Trader(srv, "IF2501")
        H = Trader(srv, "IH2501")
        T.cross("rA", "SELL", "OPEN", "rB", "OPEN", 2, 3801.0)
        H.cross("rB", "SELL", "OPEN", "rA", "OPEN", 1, 2799.0)
        T.cross("rA", "BUY", "CLOSE", "rB", "CLOSE", 1, 3799.4)
        time.sleep(3.0 - time.time() % 3.0 + 0.2)
        T.cross("rA", "SELL", "OPEN", "rB", "OPEN", 3, 3802.6)
        H.cross("rB", "SELL", "OPEN", "rA", "OPEN", 2, 2800.4)
        self.wait_closed(srv, "IF2501")
        before = self.snapshot(srv)
        self.assertEqual(len(before["IF2501"]["3s"]), 2)
        # expected from my own trades too
        trades = T.with_timestamps()
        for p in PERIODS:
            want = expected_bars(trades, PERIOD_MS[p], 300)
            got = before["IF2501"][p]
            self.assertEqual([(g["timestamp"], g["open"], g["high"], g["low"], g["close"],
                               g["volume"], g["open_oi"], g["close_oi"]) for g in got],
                             [(w["timestamp"], w["open"], w["high"], w["low"], w["close"],
                               w["volume"], w["open_oi"], w["close_oi"]) for w in want], p)
        # clean stop (SIGTERM: final snapshot), restart
        self.assertEqual(srv.stop(signal.SIGTERM), 0, srv.output())
        srv = self.start()
        after = self.snapshot(srv)
        self.assert_same(before, after, time.time())
        # one more bar, then kill -9: the journal after the snapshot is replayed
        T.srv = srv
        T.cross("rB", "SELL", "CLOSE", "rA", "OPEN", 1, 3800.2)
        self.wait_closed(srv, "IF2501")
        before = self.snapshot(srv)
        self.assertGreaterEqual(len(before["IF2501"]["3s"]), 3)
        srv.proc.kill()
        srv.proc.wait(timeout=10)
        srv = self.start()
        after = self.snapshot(srv)
        self.assert_same(before, after, time.time())


if __name__ == "__main__":
    unittest.main()
