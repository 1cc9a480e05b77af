"""What the WebSocket gateway does with bad or hostile input (SPEC 6, 7), against the real server.

- A message over 64 KiB is refused whole (9003): none of it runs, not even a valid command at its
  end, whether it came as one frame or as fragments, on /ws and on /ws/diff.
- A bad subscribe changes nothing: every channel and instrument is checked before any is
  applied, and the error names the offending value.
- Push topics (one per instrument, account or name a session listens under) go when their last
  member leaves, so names made up by clients do not pile up (/monitoring/system push_topics).
- A subscribe without channels or instruments leaks nothing (checked at exit by LeakSanitizer in
  the sanitizer build: the server must exit 0 and print no leak report).
- A login token in the URL is read whatever its length, and a refused one is answered with 9001.
"""
import json
import os
import shutil
import struct
import tempfile
import time
import unittest

from qaex import Server, ServerTest
from trading import Client, get

MAX_WS_MESSAGE = 64 * 1024


def send_fragments(ws, parts):
    """One text message as several frames: opcode 1, then continuations, FIN on the last."""
    for i, part in enumerate(parts):
        payload = part.encode()
        b0 = (0x80 if i == len(parts) - 1 else 0) | (1 if i == 0 else 0)
        n = len(payload)
        if n < 126:
            head = bytes([b0, 0x80 | n])
        elif n < 65536:
            head = bytes([b0, 0x80 | 126]) + struct.pack("!H", n)
        else:
            head = bytes([b0, 0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        ws.sock.sendall(head + mask + bytes(b ^ mask[k % 4] for k, b in enumerate(payload)))


class OpenModeTest(ServerTest):
    def connect(self, path="/ws"):
        ws = Client(self.srv.port, path)
        self.addCleanup(ws.close)
        return ws

    def topics(self):
        return get(self.srv, "/monitoring/system")["push_topics"]

    def wait_topics(self, want, timeout=5.0):
        """push_topics once it equals want (a closed session is released a moment later)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.topics()
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    # ---- oversized messages ----

    def assert_too_large(self, m):
        self.assertEqual((m.get("type"), m.get("code")), ("error", 9003), m)
        self.assertIn(str(MAX_WS_MESSAGE), m["message"])

    def test_oversized_message_runs_nothing(self):
        """The tail of a refused message is dropped with it, not parsed as a message of its own."""
        smuggled = json.dumps({"type": "subscribe", "channels": ["ticker"],
                               "instruments": ["IF2501"]})
        for how in ("one frame", "fragments"):
            with self.subTest(how=how):
                ws = self.connect()
                garbage = "x" * MAX_WS_MESSAGE + " " * 20000
                if how == "one frame":
                    ws.send_text(garbage + smuggled)
                else:  # over the limit in the first fragment, the command in the last
                    send_fragments(ws, [garbage[:70000], garbage[70000:], " ", smuggled])
                self.assert_too_large(ws.next())
                # the session goes on: the next message is the answer to this ping, and nothing
                # of the smuggled subscribe ever arrives
                ws.send({"type": "ping"})
                self.assertEqual(ws.next(), {"type": "pong"})
                self.assertEqual(ws.drain(0.5), [])

    def test_oversized_message_at_its_last_fragment(self):
        """Over the limit only when the final fragment arrives: refused, the next one runs."""
        ws = self.connect()
        send_fragments(ws, ["x" * 60000, "y" * 6000])
        self.assert_too_large(ws.next())
        ws.send({"type": "ping"})
        self.assertEqual(ws.next(), {"type": "pong"})

    def test_oversized_diff_message_runs_nothing(self):
        ws = self.connect("/ws/diff")
        self.assertEqual(ws.next()["aid"], "rtn_brokers")
        smuggled = json.dumps({"aid": "subscribe_quote", "ins_list": "IF2501"})
        ws.send_text("x" * MAX_WS_MESSAGE + " " * 20000 + smuggled)
        ws.send({"aid": "peek_message"})
        m = ws.next()
        self.assertEqual(m.get("aid"), "rtn_data", m)  # a DIFF error, in a notify
        text = json.dumps(m)
        self.assertIn("9003", text)
        self.assertIn(str(MAX_WS_MESSAGE), text)
        self.assertNotIn("IF2501", text)
        # nothing more is owed: no quote of the smuggled subscription
        ws.send({"aid": "peek_message"})
        self.assertEqual(ws.drain(0.7), [])

    def test_configured_message_size(self):
        """[websocket] max_message_size sets the limit: a message over it is refused, one under
        it runs."""
        tmp = tempfile.mkdtemp(prefix="qaex-wsmax-")
        self.addCleanup(shutil.rmtree, tmp, True)
        config = os.path.join(tmp, "exchange.toml")
        with open(config, "w") as f:
            f.write("[websocket]\nmax_message_size = 2048\n")
        srv = Server(config=config)
        self.addCleanup(srv.close)
        ws = Client(srv.port, "/ws")
        self.addCleanup(ws.close)
        ws.send_text(json.dumps({"type": "ping", "pad": "x" * 1900}))
        self.assertEqual(ws.next(), {"type": "pong"})
        ws.send_text(json.dumps({"type": "ping", "pad": "x" * 2100}))
        m = ws.next()
        self.assertEqual((m.get("type"), m.get("code")), ("error", 9003), m)
        self.assertIn("at most 2048 allowed", m["message"])

    # ---- subscribe: all or nothing ----

    def test_bad_subscribe_changes_nothing(self):
        ws = self.connect("/ws?user_id=ws_input_sub")
        cases = [
            ("too long", {"channels": ["orderbook", "ticker"], "instruments": ["IF2501", "X" * 40]},
             ['"' + "X" * 40 + '"', "40 bytes"]),
            ("unknown channel", {"channels": ["orderbook", "sideways"], "instruments": ["IF2501"]},
             ['"sideways"', "channels[1]"]),
            ("not a string", {"channels": ["ticker"], "instruments": ["IF2501", 5]},
             ["number 5", "instruments[1]"]),
            ("empty", {"channels": ["ticker"], "instruments": ["IF2501", ""]},
             ['""', "instruments[1]"]),
            ("not an array", {"channels": ["ticker"], "instruments": "IF2501"},
             ['string "IF2501"', "array"]),
            ("too many", {"channels": ["ticker"],
                          "instruments": ["IF2501"] + [f"N{i:04d}" for i in range(64)]},
             ['"N0063"', "64"]),
        ]
        for why, body, named in cases:
            with self.subTest(why=why):
                ws.send(dict(type="subscribe", **body))
                m = ws.next()
                self.assertEqual((m.get("type"), m.get("code")), ("error", 9003), m)
                for part in named:
                    self.assertIn(part, m["message"])
                # no snapshot, no push: IF2501 was not subscribed
                self.assertEqual(ws.drain(0.5), [])
        # the session was left as it was: a good subscribe works, echoing what it was given
        ws.send({"type": "subscribe", "channels": ["ticker"], "instruments": ["IF2501"]})
        m = ws.next()
        self.assertEqual(m, {"type": "subscribe_response", "success": True,
                             "channels": ["ticker"], "instruments": ["IF2501"]})
        kinds = {x.get("type") for x in ws.drain(0.5)}
        self.assertIn("ticker", kinds)

    # ---- push topics ----

    def test_topics_go_with_their_last_member(self):
        base = self.wait_topics(0)
        self.assertEqual(base, 0)
        ws = self.connect()
        for batch in range(20):  # 1,200 names nobody trades
            ids = [f"Z{batch:03d}{k:02d}" for k in range(60)]
            ws.send({"type": "subscribe", "instruments": ids})
            self.assertEqual(ws.next()["type"], "subscribe_response")
            self.assertEqual(self.topics(), 60)
            ws.send({"type": "unsubscribe", "instruments": ids})
            self.assertEqual(ws.next()["type"], "unsubscribe_response")
            self.assertEqual(self.topics(), 0)
        # two sessions share a topic: it stays while either listens
        other = self.connect()
        for s in (ws, other):
            s.send({"type": "subscribe", "instruments": ["IF2501", "ZSHARED"]})
            self.assertEqual(s.next()["type"], "subscribe_response")
        ws.drain(0.3), other.drain(0.3)
        self.assertEqual(self.topics(), 2)
        ws.send({"type": "unsubscribe", "instruments": ["ZSHARED"]})
        self.assertEqual(ws.next()["type"], "unsubscribe_response")
        self.assertEqual(self.topics(), 2)
        other.close()  # a closing session leaves every topic
        self.assertEqual(self.wait_topics(1), 1)
        # names authenticated as: the previous one goes when the session takes another
        for i in range(50):
            ws.send({"type": "auth", "user_id": f"ACC_made_up_{i}"})
            self.assertTrue(ws.next()["success"])
        self.assertEqual(self.topics(), 2)  # IF2501 and the last account
        ws.close()
        self.assertEqual(self.wait_topics(0), 0)

    def test_an_instrument_named_like_an_account_gets_no_account_pushes(self):
        """Instrument and account topics are apart: subscribing to an "instrument" named like
        someone's account must not bring that account's order, trade and account pushes."""
        status, body = self.srv.post("/api/account/open", {"user_id": "nsvictim",
                                                            "init_cash": 10000000})
        self.assertEqual(status, 200, body)
        spy = self.connect()
        spy.send({"type": "subscribe", "channels": ["trade", "orderbook", "ticker"],
                  "instruments": ["nsvictim"]})
        self.assertEqual(spy.next()["type"], "subscribe_response")
        victim = self.connect()
        victim.send({"type": "auth", "user_id": "nsvictim"})
        self.assertTrue(victim.next()["success"])
        victim.send({"type": "submit_order", "instrument_id": "IF2501", "direction": "BUY",
                     "offset": "OPEN", "volume": 1, "price": 3500.0, "order_type": "LIMIT"})
        got, _ = victim.until(lambda m: m.get("type") == "order_response")
        self.assertTrue(got["success"], got)
        victim.drain(0.5)
        leaked = [m for m in spy.drain(0.8) if "nsvictim" in json.dumps(m)]
        self.assertEqual(leaked, [])

    def test_diff_login_closed_before_its_answer_watches_nothing(self):
        """A DIFF session that closes while its login is being checked: when the engine's yes
        arrives there is nobody to tell, and the engine must stop building that account's
        patches (/monitoring/system diff_watched_accounts goes back to 0)."""
        status, body = self.srv.post("/api/account/open", {"user_id": "dwatch",
                                                            "init_cash": 1000000})
        self.assertEqual(status, 200, body)
        login = json.dumps({"aid": "req_login", "bid": "qaexchange", "user_name": "dwatch",
                            "password": "x"}).encode()
        self.assertLess(len(login), 126)  # one short masked text frame
        mask = os.urandom(4)
        frame = (bytes([0x81, 0x80 | len(login)]) + mask
                 + bytes(b ^ mask[k % 4] for k, b in enumerate(login)))
        for _ in range(30):  # the login and the end of the connection in one write
            ws = self.connect("/ws/diff")
            ws.sock.sendall(frame + bytes([0x88, 0x80]) + os.urandom(4))
            ws.sock.close()
        deadline = time.monotonic() + 5
        while get(self.srv, "/monitoring/system")["diff_watched_accounts"] != 0:
            self.assertLess(time.monotonic(), deadline, "the engine still watches dwatch")
            time.sleep(0.05)
        # a login that stays is watched, and unwatched when it closes
        ws = self.connect("/ws/diff")
        ws.sock.sendall(frame)
        deadline = time.monotonic() + 5
        while get(self.srv, "/monitoring/system")["diff_watched_accounts"] != 1:
            self.assertLess(time.monotonic(), deadline, "a live login is not watched")
            time.sleep(0.05)
        ws.close()

    def test_diff_topics_go_with_their_last_member(self):
        self.assertEqual(self.wait_topics(0), 0)
        ws = self.connect("/ws/diff")
        ws.next()  # rtn_brokers
        for batch in range(10):  # subscribe_quote replaces the list: the old names go
            ws.send({"aid": "subscribe_quote",
                     "ins_list": ",".join(f"Q{batch:03d}{k:02d}" for k in range(30))})
            ws.send({"aid": "req_login", "bid": "qaexchange", "user_name": f"made_up_{batch}",
                     "password": "x"})
            ws.send({"aid": "peek_message"})
            ws.next()
            self.assertLessEqual(self.topics(), 31)
        ws.send({"aid": "subscribe_quote", "ins_list": ""})
        ws.send({"aid": "peek_message"})
        ws.next()
        self.assertLessEqual(self.topics(), 1)  # the login's account name at most
        ws.close()
        self.assertEqual(self.wait_topics(0), 0)


class LeakTest(unittest.TestCase):
    def test_subscribe_without_arrays_leaks_nothing(self):
        """The echo of a subscribe naming no channels or instruments used to keep its empty
        arrays forever; the sanitizer build reports that at exit (exit code, 'LeakSanitizer')."""
        srv = Server()
        try:
            ws = Client(srv.port, "/ws")
            try:
                for kind in ("subscribe", "unsubscribe") * 20:
                    ws.send({"type": kind})
                    m = ws.next()
                    self.assertEqual(m, {"type": kind + "_response", "success": True,
                                         "channels": [], "instruments": []})
            finally:
                ws.close()
            time.sleep(0.2)
            self.assertEqual(srv.stop(), 0, srv.output()[-3000:])
            self.assertNotIn("LeakSanitizer", srv.output())
        finally:
            srv.close()


class UrlTokenTest(unittest.TestCase):
    SECRET = "ws-input-test-secret-0123456789abcdefghij"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qaex-wsin-")
        config = os.path.join(cls.tmp, "auth.toml")
        with open(config, "w") as f:
            f.write('[server]\nenvironment = "development"\n'
                    '[auth]\nopen_mode = false\npassword_cost = "fast"\n'
                    f'token_secret = "{cls.SECRET}"\ntoken_ttl_secs = 600\n')
        cls.srv = Server(config=config)

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def user(self, name):
        password = "Url-T0ken-pw-77"
        st, body = self.srv.post("/api/auth/register", {"username": name, "password": password})
        self.assertEqual(st, 200, body)
        st, body = self.srv.post("/api/auth/login", {"username": name, "password": password})
        self.assertEqual(st, 200, body)
        token = body["data"]["token"]
        st, body = self.srv.post("/api/account/open", {"init_cash": 1000},
                                 headers={"Authorization": "Bearer " + token})
        self.assertEqual(st, 200, body)
        return token, body["data"]["account_id"]

    def connect(self, path):
        ws = Client(self.srv.port, path)
        self.addCleanup(ws.close)
        return ws

    def test_long_url_token_is_accepted(self):
        """A long username makes a token of about 300 bytes: it was silently ignored."""
        token, account = self.user("u" * 60)
        self.assertGreater(len(token), 256)
        ws = self.connect(f"/ws?user_id={account}&token={token}")
        m = ws.next(5)
        self.assertEqual((m["type"], m["success"], m["user_id"]), ("auth_response", True, account))
        ws.send({"type": "query_account"})
        m, _ = ws.until(lambda m: m.get("type") in ("query_response", "error"))
        self.assertEqual(m["data"]["account_id"], account, m)

    def test_refused_url_token_is_answered(self):
        token, account = self.user("short_user")
        head, payload, sig = token.split(".")
        forged = f"{head}.{payload}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
        for why, tok, named in (("forged", forged, "token in the URL refused"),
                                ("too long", "a" * 3000, "2048"),
                                ("garbage", "nonsense", "token in the URL refused")):
            with self.subTest(why=why):
                ws = self.connect(f"/ws?user_id={account}&token={tok}")
                m = ws.next(5)
                self.assertEqual((m.get("type"), m.get("code")), ("error", 9001), m)
                self.assertIn(named, m["message"])
                self.assertNotIn(tok, m["message"])
                ws.send({"type": "query_account"})
                m, _ = ws.until(lambda m: m.get("type") in ("query_response", "error"))
                self.assertEqual(m.get("code"), 9002, m)
        # a token with no account named: nothing to authenticate as, and said so
        ws = self.connect(f"/ws?token={token}")
        m = ws.next(5)
        self.assertEqual((m.get("type"), m.get("code")), ("error", 9001), m)
        self.assertIn("user_id", m["message"])


if __name__ == "__main__":
    unittest.main()
