"""The `type` WebSocket protocol against the real server (SPEC 6; seed lines 6744-7579)."""
import json
import os
import socket
import tempfile
import time
import unittest

import http.client

from qaex import Server, WebSocket, free_port


class WsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        for user in ("wsa", "wsb", "wsc"):
            status, body = cls.srv.post("/api/account/open", {"user_id": user, "init_cash": 1000000})
            assert status == 200, body

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def connect(self, user=None):
        ws = self.srv.ws(f"/ws?user_id={user}" if user else "/ws")
        self.addCleanup(ws.close)
        return ws

    def test_ping_and_auth(self):
        ws = self.connect()
        ws.send({"type": "ping"})
        self.assertEqual(ws.recv(), {"type": "pong"})
        ws.send({"type": "query_account"})
        m = ws.recv()
        self.assertEqual(m["type"], "error")
        self.assertEqual(m["code"], 9002)
        ws.send({"type": "auth", "user_id": "wsa", "token": "demo_token"})
        m = ws.recv()
        self.assertEqual(m["type"], "auth_response")
        self.assertTrue(m["success"])
        self.assertEqual(m["user_id"], "wsa")
        ws.send({"type": "query_account"})
        m = ws.recv()
        self.assertEqual(m["type"], "query_response")
        self.assertEqual(m["data"]["balance"], 1000000.0)

    def test_bad_messages(self):
        ws = self.connect("wsa")
        for raw in ["not json", "[1,2]", '{"no_type": 1}', '{"type": "launch_rockets"}']:
            ws.send_text(raw)
            m = ws.recv()
            self.assertEqual(m["type"], "error", raw)
            self.assertEqual(m["code"], 9003, raw)
        ws.send({"type": "submit_order", "instrument_id": "IF2501", "direction": "BUY",
                 "offset": "OPEN", "volume": "x", "price": 3800})
        m = ws.recv()
        self.assertEqual(m["type"], "order_response")
        self.assertFalse(m["success"])
        # the session still works
        ws.send({"type": "ping"})
        self.assertEqual(ws.recv(), {"type": "pong"})

    def test_fill_push_order(self):
        maker = self.connect("wsb")
        taker = self.connect("wsc")
        maker.send({"type": "submit_order", "instrument_id": "IF2501", "direction": "SELL",
                    "offset": "OPEN", "volume": 2, "price": 3790.0, "order_type": "LIMIT"})
        resp, _ = maker.recv_until(lambda m: m["type"] == "order_response")
        self.assertTrue(resp["success"], resp)
        maker_order = resp["order_id"]
        taker.send({"type": "submit_order", "instrument_id": "IF2501", "direction": "BUY",
                    "offset": "OPEN", "volume": 1, "price": 3790.0, "order_type": "LIMIT"})
        # the taker sees, in order: order_response, order_status, trade, account_update
        kinds = []
        trade = None
        while "account_update" not in kinds:
            m = taker.recv()
            if m["type"] in ("order_response", "order_status", "trade", "account_update"):
                if not kinds or kinds[-1] != m["type"]:
                    kinds.append(m["type"])
                if m["type"] == "trade":
                    trade = m
        self.assertEqual(kinds[0], "order_response")
        self.assertLess(kinds.index("order_status"), kinds.index("trade"))
        self.assertLess(kinds.index("trade"), kinds.index("account_update"))
        self.assertEqual(trade["price"], 3790.0)
        self.assertEqual(trade["volume"], 1)
        # the maker sees its order partly filled
        m, _ = maker.recv_until(lambda m: m["type"] == "order_status" and m["order_id"] == maker_order
                                and m["status"] == "PartiallyFilled")
        self.assertEqual(m["filled_volume"], 1)

    def test_subscribe_market_data(self):
        watcher = self.connect("wsa")
        watcher.send({"type": "subscribe", "channels": ["orderbook", "ticker", "trade"],
                      "instruments": ["IF2501"]})
        m, _ = watcher.recv_until(lambda m: m["type"] == "subscribe_response")
        self.assertTrue(m["success"])
        watcher.recv_until(lambda m: m["type"] == "orderbook")
        trader = self.connect("wsb")
        trader.send({"type": "submit_order", "instrument_id": "IF2501", "direction": "BUY",
                     "offset": "OPEN", "volume": 1, "price": 3600.0})
        m, _ = watcher.recv_until(lambda m: m["type"] == "orderbook" and
                                  any(abs(b["price"] - 3600.0) < 1e-9 for b in m["bids"]))
        self.assertEqual(m["instrument_id"], "CFFEX.IF2501")

    def test_queries_take_their_fields(self):
        """query_position's optional instrument_id narrows the answer (seed: omitted = all);
        query_order without its order_id says so."""
        for user in ("wsq", "wsr"):
            status, body = self.srv.post("/api/account/open", {"user_id": user, "init_cash": 1e8})
            self.assertEqual(status, 200, body)
        for ins, price in (("IF2501", 3805.0), ("IH2501", 2805.0)):
            for user, side in (("wsr", "SELL"), ("wsq", "BUY")):
                status, body = self.srv.post("/api/order/submit", {
                    "user_id": user, "instrument_id": ins, "direction": side, "offset": "OPEN",
                    "volume": 1, "price": price, "order_type": "LIMIT"})
                self.assertEqual(status, 200, body)
        ws = self.connect("wsq")
        ws.send({"type": "query_position"})
        m, _ = ws.recv_until(lambda m: m["type"] in ("query_response", "error"))
        self.assertEqual(sorted(p["instrument_id"] for p in m["data"]),
                         ["CFFEX.IF2501", "CFFEX.IH2501"], m)
        for ask in ("IH2501", "CFFEX.IH2501"):
            ws.send({"type": "query_position", "instrument_id": ask})
            m, _ = ws.recv_until(lambda m: m["type"] in ("query_response", "error"))
            self.assertEqual([p["instrument_id"] for p in m["data"]], ["CFFEX.IH2501"], m)
        ws.send({"type": "query_position", "instrument_id": "XX9999"})
        m, _ = ws.recv_until(lambda m: m["type"] in ("query_response", "error"))
        self.assertEqual((m["type"], m["code"]), ("error", 1007), m)
        self.assertIn("XX9999", m["message"])
        ws.send({"type": "query_order"})
        m, _ = ws.recv_until(lambda m: m["type"] in ("query_response", "error"))
        self.assertEqual((m["type"], m["code"]), ("error", 9003), m)
        self.assertIn("order_id", m["message"])

    def test_cannot_act_for_another_account(self):
        ws = self.connect("wsa")
        ws.send({"type": "submit_order", "account_id": "wsb", "instrument_id": "IF2501",
                 "direction": "BUY", "offset": "OPEN", "volume": 1, "price": 3600.0})
        m = ws.recv()
        self.assertEqual(m["type"], "error")

    def test_upgrade_after_http_on_one_connection(self):
        """A kept-alive HTTP connection that then upgrades to a WebSocket (after an answered
        request, and pipelined right behind one) leaves the server sound: the keepalive sweep
        and the notification broadcast walk every registered session each second."""
        import base64
        port = self.srv.port
        upgrade = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: "
                   f"{base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        health = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        order = json.dumps({"user_id": "wsa", "instrument_id": "IF2501", "direction": "BUY",
                            "offset": "OPEN", "volume": 1, "price": 3500.0})
        post = (f"POST /api/order/submit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(order)}\r\n\r\n{order}")
        for first, pipelined in ((health, False), (post, True)):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                if pipelined:
                    sock.sendall((first + upgrade).encode())
                else:
                    sock.sendall(first.encode())
                    self.assertIn(b"200", sock.recv(65536).split(b"\r\n")[0])
                    sock.sendall(upgrade.encode())
                sock.settimeout(2)
                try:
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
            finally:
                sock.close()
        time.sleep(1.5)  # a keepalive sweep (every 1 s) walks the sessions
        status, body = self.srv.get("/health")
        self.assertEqual(status, 200, body)
        ws = self.connect("wsa")
        ws.send({"type": "ping"})
        self.assertEqual(ws.recv(timeout=2), {"type": "pong"})


class KeepaliveTest(unittest.TestCase):
    """The server pings a quiet session every ping_interval and drops one that stays silent
    (no message, no pong) for idle_timeout; a session that answers stays. Short intervals here
    (300 ms / 1 s) stand for the defaults of 5 s / 10 s."""

    @classmethod
    def setUpClass(cls):
        cls.cfg_dir = tempfile.mkdtemp(prefix="qaex-ka-")
        cfg = os.path.join(cls.cfg_dir, "exchange.toml")
        with open(cfg, "w") as f:
            f.write("[websocket]\nping_interval_ms = 300\nidle_timeout_ms = 1000\n")
        cls.srv = Server(config=cfg)

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def test_answering_session_stays_and_is_pinged(self):
        ws = self.srv.ws("/ws")
        self.addCleanup(ws.close)
        pings = 0
        deadline = time.time() + 3.0
        ws.sock.settimeout(0.5)
        while time.time() < deadline:
            try:
                opcode, payload = ws.recv_frame()
            except socket.timeout:
                continue
            self.assertNotEqual(opcode, 8, "the server closed a session that answered its pings")
            if opcode == 9:
                pings += 1
                ws.send_text(payload, opcode=10)  # pong
        # quiet for 3 s with pings every 300 ms (checked at most every 75 ms)
        self.assertGreaterEqual(pings, 5)
        self.assertLessEqual(pings, 11)
        ws.send({"type": "ping"})
        self.assertEqual(ws.recv(timeout=2), {"type": "pong"})

    def test_silent_session_is_dropped(self):
        ws = self.srv.ws("/ws")
        self.addCleanup(ws.close)
        started = time.time()
        ws.sock.settimeout(5.0)
        closed = False
        try:
            while True:
                opcode, _ = ws.recv_frame()  # pings arrive and are never answered
                if opcode == 8:
                    closed = True
                    break
        except (ConnectionError, OSError):
            closed = True
        waited = time.time() - started
        self.assertTrue(closed)
        self.assertGreaterEqual(waited, 0.9)
        self.assertLess(waited, 3.0)
        # the server is fine and takes new sessions
        other = self.srv.ws("/ws")
        self.addCleanup(other.close)
        other.send({"type": "ping"})
        self.assertEqual(other.recv(timeout=2), {"type": "pong"})


class WsListenerTest(unittest.TestCase):
    def test_ws_listener_serves_websocket_only(self):
        """--ws HOST:PORT is a second listener for WebSocket only (SPEC 2): the type and DIFF
        protocols work there, a plain HTTP request is pointed to the HTTP listener."""
        ws_port = free_port()
        srv = Server("--ws", f"127.0.0.1:{ws_port}")
        self.addCleanup(srv.close)
        status, body = srv.post("/api/account/open", {"user_id": "wsl", "init_cash": 1000})
        self.assertEqual(status, 200, body)
        conn = http.client.HTTPConnection("127.0.0.1", ws_port, timeout=5)
        self.addCleanup(conn.close)
        conn.request("GET", "/api/account/wsl")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        self.assertEqual(resp.status, 404, body)
        self.assertEqual(body["error"]["code"], 9007, body)
        self.assertIn(f"port {srv.port}", body["error"]["message"])
        ws = WebSocket(ws_port, "/ws?user_id=wsl")
        self.addCleanup(ws.close)
        ws.send({"type": "query_account"})
        m, _ = ws.recv_until(lambda m: m["type"] in ("query_response", "error"))
        self.assertEqual(m["type"], "query_response", m)
        self.assertEqual(m["data"]["balance"], 1000.0)
        diff = WebSocket(ws_port, "/ws/diff")
        self.addCleanup(diff.close)
        self.assertEqual(diff.recv()["aid"], "rtn_brokers")


if __name__ == "__main__":
    unittest.main()
