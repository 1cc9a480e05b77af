"""Tokens, ownership and roles on every route of the server (issue #7 must-show 2; SPEC 5, 7).

ROUTES below is the server's whole HTTP surface, read off src/server/gateway.c (route_post,
route_get, route_admin, is_public_route, is_admin_route). Each protected route must refuse a
missing token (401 9002) and every bad one (401 9001): a changed signature, a changed payload, a
token signed with another secret, an expired token signed with the right key, `alg: none`,
garbage. Account routes refuse another user's token (403 9006) and serve the owner; operator
routes (/admin, /monitoring, and both under /api) refuse a user (403 9006) and serve the admin.
test_route_table_covers_gateway fails when gateway.c gains a path word the table does not know,
so a new route cannot slip in untested. Passwords never show in a response, the server's output
or the data directory (which holds argon2id hashes only). WebSocket and DIFF logins check the
token, the account's owner and the password; 5 failed logins lock the name out (429 9004).

Tokens are made here as the server makes them: HS256 over base64url(header).base64url(payload)
with a key of BLAKE2b-256(token_secret, salt 16 zero bytes, personal "qaex-jwt-hs256")
(src/server/auth.c auth_keys_from_secret), so an expired token with a valid signature is built
without waiting; a fresh one made the same way is accepted, which proves the key is right.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import time
import unittest

from qaex import Server, write_token_config

SECRET = "security-test-secret-0123456789abcdefghij"
OTHER_SECRET = "another-secret-entirely-9876543210zyxwvu"
ADMIN_PASSWORD = "Adm1n-Pw-f0r-Sec-7q2x"
PASSWORDS = {"alice": "Al1ce-Pw-5e6b1d7c", "bob": "B0b-Pw-93a0e2ff41"}
WRONG_PASSWORDS = ["Wr0ng-Guess-11aa22bb"]
GATEWAY_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "server",
                         "gateway.c")

PUBLIC, USER, OWNER, ADMIN = "public", "user", "owner", "admin"

# (method, path template, access, JSON body template or None). OWNER: the token's user must own
# the account / user / order named in the path or body; USER: any valid token.
ROUTES = [
    ("GET", "/health", PUBLIC, None),
    ("GET", "/metrics", PUBLIC, None),
    ("POST", "/api/auth/register", PUBLIC, {"username": "{fresh}", "password": "Fresh-Pw-0001"}),
    ("POST", "/api/auth/login", PUBLIC, {"username": "alice", "password": "{alice_password}"}),
    ("GET", "/api/market/instruments", PUBLIC, None),
    ("GET", "/api/market/tick/{instrument}", PUBLIC, None),
    ("GET", "/api/market/orderbook/{instrument}", PUBLIC, None),
    ("GET", "/api/market/recent-trades/{instrument}", PUBLIC, None),
    ("GET", "/api/market/transactions", PUBLIC, None),
    ("GET", "/api/market/order-stats", PUBLIC, None),
    ("GET", "/api/market/symbols", PUBLIC, None),
    ("GET", "/api/market/kline/{instrument}", PUBLIC, None),
    ("GET", "/api/klines/{instrument}/1min", PUBLIC, None),
    ("GET", "/api/auth/current-user", USER, None),
    ("GET", "/api/account/list", USER, None),
    ("GET", "/api/auth/user/{user_id}", OWNER, None),
    ("GET", "/api/user/{user_id}/accounts", OWNER, None),
    ("POST", "/api/user/{user_id}/account/create", OWNER, {"init_cash": 1000}),
    ("POST", "/api/account/open", OWNER, {"user_id": "{user_id}", "init_cash": 1000}),
    ("GET", "/api/account/{account_id}", OWNER, None),
    ("GET", "/api/account/detail/{account_id}", OWNER, None),
    ("POST", "/api/account/deposit", OWNER, {"account_id": "{account_id}", "amount": 1}),
    ("POST", "/api/account/withdraw", OWNER, {"account_id": "{account_id}", "amount": 1}),
    ("POST", "/api/order/submit", OWNER, {"account_id": "{account_id}", "instrument_id": "IF2501",
                                          "direction": "BUY", "offset": "OPEN", "volume": 1,
                                          "price": 3700, "order_type": "LIMIT"}),
    ("POST", "/api/order/cancel", OWNER, {"account_id": "{account_id}", "order_id": "{order_id}"}),
    ("GET", "/api/order/{order_id}", OWNER, None),
    ("GET", "/api/order/user/{account_id}", OWNER, None),
    ("GET", "/api/order/user/{account_id}/trades", OWNER, None),
    ("GET", "/api/position/{account_id}", OWNER, None),
    ("GET", "/api/position/account/{account_id}", OWNER, None),
    ("GET", "/api/trades/user/{account_id}", OWNER, None),
    ("GET", "/api/account/{account_id}/curve", OWNER, None),
    ("POST", "/api/query/sql", ADMIN, {"sql": "SELECT 1"}),
    ("POST", "/api/query/structured", ADMIN, {"table": "trades", "limit": 1}),
    ("POST", "/api/query/timeseries", ADMIN,
     {"instrument_id": "CFFEX.IF2501", "granularity": "1m"}),
    # the operator's routes; each is also served under /api
    ("GET", "/admin/instruments", ADMIN, None),
    ("POST", "/admin/instrument/create", ADMIN, {"instrument_id": "BAD"}),
    ("PUT", "/admin/instrument/{no_instrument}/update", ADMIN, {"margin_rate": 0.2}),
    ("PUT", "/admin/instrument/{no_instrument}/suspend", ADMIN, {}),
    ("PUT", "/admin/instrument/{no_instrument}/resume", ADMIN, {}),
    ("DELETE", "/admin/instrument/{no_instrument}/delist", ADMIN, None),
    ("POST", "/admin/settlement/set-price", ADMIN, {"instrument_id": "{no_instrument}",
                                                    "settlement_price": 1}),
    ("POST", "/admin/settlement/batch-set-prices", ADMIN,
     {"prices": [{"instrument_id": "{no_instrument}", "settlement_price": 1}]}),
    ("POST", "/admin/settlement/execute", ADMIN, {}),
    ("GET", "/admin/settlement/history", ADMIN, None),
    ("GET", "/admin/settlement/detail/{date}", ADMIN, None),
    ("GET", "/admin/risk/accounts", ADMIN, None),
    ("GET", "/admin/risk/margin-summary", ADMIN, None),
    ("GET", "/admin/risk/liquidations", ADMIN, None),
    ("GET", "/admin/capital/transactions", ADMIN, None),
    ("POST", "/admin/capital/deposit", ADMIN, {"account_id": "{no_account}", "amount": 1}),
    ("POST", "/admin/capital/withdraw", ADMIN, {"account_id": "{no_account}", "amount": 1}),
    ("POST", "/admin/account/{no_account}/freeze", ADMIN, {}),
    ("POST", "/admin/account/{no_account}/unfreeze", ADMIN, {}),
    ("GET", "/admin/audit", ADMIN, None),
    ("GET", "/monitoring/system", ADMIN, None),
    ("GET", "/monitoring/storage", ADMIN, None),
    ("GET", "/monitoring/accounts", ADMIN, None),
    ("GET", "/monitoring/orders", ADMIN, None),
    ("GET", "/monitoring/trades", ADMIN, None),
    ("GET", "/monitoring/state", ADMIN, None),
    ("POST", "/monitoring/report", ADMIN, {}),
]
# WebSocket upgrades, checked by their own tests: /ws (auth message or ?user_id=&token=) and
# /ws/diff (req_login with a password, or a token as the password).
WS_ROUTES = ["/ws", "/ws/diff"]


def all_routes():
    """ROUTES plus the /api/... twin of every operator route."""
    out = []
    for method, path, access, body in ROUTES:
        out.append((method, path, access, body))
        if access == ADMIN and not path.startswith("/api/"):
            out.append((method, "/api" + path, access, body))
    return out


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_key(secret):
    """auth_keys_from_secret: unkeyed BLAKE2b-256 of the secret, zero salt, personalised."""
    return hashlib.blake2b(secret.encode(), digest_size=32, salt=bytes(16),
                           person=b"qaex-jwt-hs256").digest()


def mint(claims, secret=SECRET, header=None, sign=True):
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing = (b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
               b64u(json.dumps(claims, separators=(",", ":")).encode()))
    if not sign:
        return signing + "."
    mac = hmac.new(token_key(secret), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(mac)


def write_config(directory, secret=SECRET):
    return write_token_config(directory, secret, ADMIN_PASSWORD)


def bearer(token):
    return {"Authorization": "Bearer " + token}


class SecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qaex-sec-")
        cls.data_dir = os.path.join(cls.tmp, "data")
        cls.srv = Server(config=write_config(cls.tmp), storage=True, data_dir=cls.data_dir)
        cls.bodies = []
        original = cls.srv.request

        def recording(*args, **kwargs):
            status, body = original(*args, **kwargs)
            cls.bodies.append(body if isinstance(body, str) else json.dumps(body))
            return status, body

        cls.srv.request = recording
        cls.fresh = 0
        srv = cls.srv
        cls.tokens, cls.user_ids, cls.accounts = {}, {}, {}
        for name, pw in PASSWORDS.items():
            st, body = srv.post("/api/auth/register", {"username": name, "password": pw,
                                                       "email": f"{name}@example.com"})
            assert st == 200, body
            cls.tokens[name], cls.user_ids[name] = cls.login(name, pw)
            st, body = srv.post("/api/account/open", {"init_cash": 10000000},
                                headers=bearer(cls.tokens[name]))
            assert st == 200, body
            cls.accounts[name] = body["data"]["account_id"]
        cls.tokens["admin"], cls.user_ids["admin"] = cls.login("admin", ADMIN_PASSWORD)
        st, body = srv.post("/api/order/submit", {
            "account_id": cls.accounts["alice"], "instrument_id": "IF2501", "direction": "BUY",
            "offset": "OPEN", "volume": 1, "price": 3600, "order_type": "LIMIT"},
            headers=bearer(cls.tokens["alice"]))
        assert st == 200, body
        cls.order_id = body["data"]["order_id"]

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def login(cls, name, password):
        st, body = cls.srv.post("/api/auth/login", {"username": name, "password": password})
        assert st == 200, body
        return body["data"]["token"], body["data"]["user_id"]

    def fill(self, text, owner="alice"):
        SecurityTest.fresh += 1
        values = {"user_id": self.user_ids[owner], "account_id": self.accounts[owner],
                  "order_id": self.order_id, "instrument": "IF2501",
                  "no_instrument": "TEST.NOPE", "no_account": "ACC_nobody", "date": "2025-01-02",
                  "fresh": f"u{os.getpid()}x{SecurityTest.fresh}",
                  "alice_password": PASSWORDS["alice"]}
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], text)

    def call(self, method, path, body, headers=None, owner="alice"):
        path = self.fill(path, owner)
        raw = self.fill(json.dumps(body), owner).encode() if body is not None else None
        st, resp = self.srv.request(method, path, raw=raw, headers=headers or {})
        return st, resp, f"{method} {path}"

    def assert_error(self, st, resp, what, status, code):
        self.assertEqual(st, status, f"{what}: {resp}")
        self.assertIsInstance(resp, dict, what)
        self.assertFalse(resp["success"], what)
        self.assertIsNone(resp["data"], what)
        self.assertEqual(resp["error"]["code"], code, f"{what}: {resp}")

    def claims(self, name="alice", **over):
        now = int(time.time())
        c = {"sub": self.user_ids[name], "name": name, "role": "admin" if name == "admin" else
             "user", "iat": now, "exp": now + 300}
        c.update(over)
        return c

    def bad_tokens(self):
        """Every way a token can be wrong, each with what it tries."""
        real = self.tokens["alice"]
        h, p, s = real.split(".")
        flipped = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
        claims = json.loads(unb64u(p))
        escalated = dict(claims, role="admin")
        now = int(time.time())
        return {
            "signature changed": f"{h}.{p}.{flipped}",
            "payload changed (role admin)": f"{h}.{b64u(json.dumps(escalated).encode())}.{s}",
            "signed with another secret": mint(self.claims(), secret=OTHER_SECRET),
            "admin claims with another secret": mint(self.claims("admin"), secret=OTHER_SECRET),
            "expired": mint(self.claims(iat=now - 3600, exp=now - 60)),
            "alg none": mint(self.claims(), header={"alg": "none", "typ": "JWT"}, sign=False),
            "alg none with signature": mint(self.claims(), header={"alg": "none"}),
            "alg HS512": mint(self.claims(), header={"alg": "HS512", "typ": "JWT"}),
            "garbage": "not-a-token",
            "two parts": f"{h}.{p}",
        }

    # ---- the route table ----

    def test_route_table_covers_gateway(self):
        """Every path word gateway.c routes on appears in ROUTES (a new route must be added)."""
        if not os.path.exists(GATEWAY_C):
            self.skipTest("gateway.c not found next to the tests")
        with open(GATEWAY_C) as f:
            src = f.read()
        # the HTTP routing part: from the REST routing up to the `type` WebSocket protocol
        start = src.find("/* ---- REST routing ---- */")
        end = src.find("/* ---- the `type` WebSocket protocol ---- */")
        self.assertTrue(0 <= start < end, "gateway.c section markers moved: update this test")
        src = src[start:end]
        words = set(re.findall(r'seg_is\(seg, n, \d+, "([^"]+)"\)', src))
        words |= set(re.findall(r'strcmp\((?:what|verb), "([^"]+)"\)', src))
        self.assertGreater(len(words), 40, words)
        known = set()
        for _, path, _, _ in ROUTES:
            known |= {w for w in path.split("/") if w and not w.startswith("{")}
        known |= {"ws", "diff"}
        self.assertEqual(words - known, set(),
                         "gateway.c routes on path words the security table does not cover")

    def test_public_routes_need_no_token(self):
        for method, path, access, body in ROUTES:
            if access != PUBLIC:
                continue
            st, resp, what = self.call(method, path, body)
            self.assertEqual(st, 200, f"{what}: {resp}")

    def test_missing_token_refused_everywhere(self):
        for method, path, access, body in all_routes():
            if access == PUBLIC:
                continue
            st, resp, what = self.call(method, path, body)
            self.assert_error(st, resp, what, 401, 9002)

    def test_bad_tokens_refused_everywhere(self):
        bad = self.bad_tokens()
        for method, path, access, body in all_routes():
            if access == PUBLIC:
                continue
            for why, token in bad.items():
                st, resp, what = self.call(method, path, body, headers=bearer(token))
                self.assert_error(st, resp, f"{what} [{why}]", 401, 9001)
        # without "Bearer " the header is taken as the token itself; still checked
        st, resp, what = self.call("GET", "/api/auth/current-user", None,
                                   headers={"Authorization": bad["signature changed"]})
        self.assert_error(st, resp, what, 401, 9001)
        # nothing was changed by any of those requests
        orders = self.srv.get(f"/api/order/user/{self.accounts['alice']}",
                              headers=bearer(self.tokens["alice"]))[1]["data"]
        self.assertEqual([o["order_id"] for o in orders], [self.order_id])

    def test_expired_and_forged_tokens_are_told_apart(self):
        # a token made here with the derived key is accepted: the key derivation is right ...
        good = mint(self.claims())
        st, resp = self.srv.get("/api/auth/current-user", headers=bearer(good))
        self.assertEqual(st, 200, resp)
        self.assertEqual(resp["data"]["user_id"], self.user_ids["alice"])
        # ... so the expired one is refused for its expiry, not its signature
        now = int(time.time())
        st, resp = self.srv.get("/api/auth/current-user",
                                headers=bearer(mint(self.claims(iat=now - 120, exp=now - 1))))
        self.assert_error(st, resp, "expired", 401, 9001)
        self.assertIn("expired", resp["error"]["message"])
        st, resp = self.srv.get("/api/auth/current-user",
                                headers=bearer(mint(self.claims(), secret=OTHER_SECRET)))
        self.assert_error(st, resp, "other secret", 401, 9001)
        self.assertIn("signature", resp["error"]["message"])
        st, resp = self.srv.get("/api/auth/current-user", headers=bearer(
            mint(self.claims(), header={"alg": "none", "typ": "JWT"}, sign=False)))
        self.assert_error(st, resp, "alg none", 401, 9001)
        self.assertIn("HS256", resp["error"]["message"])
        # unknown claims and a second role claim are not smuggled through either
        st, resp = self.srv.get("/api/auth/current-user", headers=bearer(
            mint(dict(self.claims(), admin=True))))
        self.assert_error(st, resp, "unknown claim", 401, 9001)

    def test_other_users_token_refused_on_account_routes(self):
        for method, path, access, body in ROUTES:
            if access != OWNER:
                continue
            st, resp, what = self.call(method, path, body, headers=bearer(self.tokens["bob"]))
            self.assert_error(st, resp, f"{what} with bob's token", 403, 9006)
            # the owner passes the ownership check (the request itself may still fail a rule)
            st, resp, what = self.call(method, path, body, headers=bearer(self.tokens["alice"]))
            self.assertNotIn(st, (401, 403), f"{what} with alice's token: {resp}")
            self.assertEqual(st, 200, f"{what} with alice's token: {resp}")
        # bob's attempts changed nothing of alice's
        acc = self.srv.get(f"/api/account/{self.accounts['alice']}",
                           headers=bearer(self.tokens["alice"]))[1]["data"]
        self.assertEqual(acc["portfolio_cookie"], self.user_ids["alice"])
        # a user lists only the accounts it owns
        st, resp = self.srv.get("/api/account/list", headers=bearer(self.tokens["bob"]))
        self.assertEqual(st, 200, resp)
        self.assertEqual([a["account_id"] for a in resp["data"]], [self.accounts["bob"]])
        # nobody but an admin registers an admin
        st, resp = self.srv.post("/api/auth/register", {"username": "mallory", "password":
                                                        "Mall0ry-pw-1", "role": "admin"},
                                 headers=bearer(self.tokens["bob"]))
        self.assert_error(st, resp, "register admin", 403, 9006)
        st, resp = self.srv.post("/api/auth/register", {"username": "mallory2", "password":
                                                        "Mall0ry-pw-2", "role": "admin"})
        self.assert_error(st, resp, "register admin without token", 403, 9006)

    def test_user_token_refused_on_admin_routes(self):
        for method, path, access, body in all_routes():
            if access != ADMIN:
                continue
            for name in ("alice", "bob"):
                st, resp, what = self.call(method, path, body, headers=bearer(self.tokens[name]))
                self.assert_error(st, resp, f"{what} as {name}", 403, 9006)
            # a correctly signed token with the user's claims is still only a user
            st, resp, what = self.call(method, path, body, headers=bearer(mint(self.claims())))
            self.assert_error(st, resp, f"{what} minted user", 403, 9006)
        # the admin passes the role check on every one (harmless arguments: unknown ids)
        for method, path, access, body in all_routes():
            if access != ADMIN or path.endswith("/execute"):
                continue
            st, resp, what = self.call(method, path, body, headers=bearer(self.tokens["admin"]))
            self.assertNotIn(st, (401, 403), f"{what} as admin: {resp}")
            self.assertLess(st, 500, f"{what} as admin: {resp}")

    def test_unknown_paths_never_200(self):
        user, admin = bearer(self.tokens["alice"]), bearer(self.tokens["admin"])
        probes = [
            ("GET", "/api/nothing"), ("GET", "/api/account"), ("GET", "/api/account/x/y/z"),
            ("POST", "/api/account/list"), ("PUT", "/api/account/list"),
            ("DELETE", "/api/account/{account_id}"), ("PATCH", "/api/order/submit"),
            ("GET", "/api/order/submit/extra"), ("POST", "/api/auth/logout"),
            ("GET", "/api/auth/users"), ("GET", "/api/admin"), ("GET", "/api/admin/nothing"),
            ("GET", "/admin"), ("GET", "/admin/"), ("GET", "/admin/users"),
            ("GET", "/admin/instrument/create"), ("POST", "/admin/instruments"),
            ("GET", "/admin/capital/deposit"), ("POST", "/admin/audit/clear"),
            ("GET", "/monitoring"), ("GET", "/monitoring/secret"),
            ("GET", "/api/monitoring/nothing"), ("POST", "/monitoring/system"),
            ("GET", "/API/account/list"), ("GET", "/Admin/instruments"),
            ("GET", "/"), ("GET", "/index.html"), ("GET", "/etc/passwd"),
        ]
        for method, path in probes:
            for who, headers in (("no token", {}), ("user", user), ("admin", admin)):
                st, resp, what = self.call(method, path, {} if method != "GET" else None,
                                           headers=headers)
                self.assertIn(st, (400, 401, 403, 404, 405), f"{what} [{who}]: {resp}")
                if isinstance(resp, dict):
                    self.assertFalse(resp.get("success"), f"{what} [{who}]: {resp}")
                if who == "no token":
                    # anything that could be protected is refused before it is routed
                    self.assertIn(st, (401, 404), f"{what} [{who}]: {resp}")
        # dot segments through a public prefix land on the protected route they name (or
        # nowhere): never past its token and role checks
        traversal = [
            ("/api/market/../account/list", USER), ("/api/market/%2e%2e/account/list", USER),
            ("/api/market/instruments/../../admin/audit", ADMIN),
            ("/api/klines/../admin/audit", ADMIN), ("/health/../admin/audit", ADMIN),
            ("/metrics/../monitoring/system", ADMIN), ("/api/market/../../monitoring/state", ADMIN),
            ("/api//admin//audit", ADMIN), ("/admin/./audit", ADMIN),
        ]
        for path, access in traversal:
            st, resp, what = self.call("GET", path, None)
            self.assertIn(st, (401, 404), f"{what} [no token]: {resp}")
            if st == 401:
                self.assertEqual(resp["error"]["code"], 9002, what)
            st, resp, what = self.call("GET", path, None, headers=user)
            if access == ADMIN:
                self.assertIn(st, (403, 404), f"{what} [user]: {resp}")
            if st == 200:  # the user's own data only
                self.assertNotIn(self.accounts["bob"], json.dumps(resp), what)

    # ---- WebSocket ----

    def test_ws_auth(self):
        acc_a = self.accounts["alice"]
        # a wrong token in the URL: refused with 9001 (naming why, never the token), no session;
        # trading is refused
        bad = self.bad_tokens()["signature changed"]
        ws = self.srv.ws(f"/ws?user_id={acc_a}&token={bad}")
        self.addCleanup(ws.close)
        m = ws.recv()
        self.assertEqual((m["type"], m["code"]), ("error", 9001), m)
        self.assertIn("token in the URL refused", m["message"])
        self.assertNotIn(bad, m["message"])
        ws.send({"type": "query_account"})
        m, _ = ws.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["code"], 9002)
        # the auth message: wrong token, another user's token, then the owner's
        for why, token in (("forged", self.bad_tokens()["signature changed"]),
                           ("expired", self.bad_tokens()["expired"]),
                           ("other secret", self.bad_tokens()["signed with another secret"]),
                           ("bob's", self.tokens["bob"])):
            ws.send({"type": "auth", "user_id": acc_a, "token": token})
            m, _ = ws.recv_until(lambda m: m.get("type") == "auth_response")
            self.assertFalse(m["success"], f"{why}: {m}")
            ws.send({"type": "submit_order", "instrument_id": "IF2501", "direction": "BUY",
                     "offset": "OPEN", "volume": 1, "price": 3600})
            m, _ = ws.recv_until(lambda m: m.get("type") in ("error", "order_response"))
            self.assertEqual((m["type"], m.get("code")), ("error", 9002), f"{why}: {m}")
        ws.send({"type": "auth", "user_id": acc_a, "token": self.tokens["alice"]})
        m, _ = ws.recv_until(lambda m: m.get("type") == "auth_response")
        self.assertTrue(m["success"], m)
        ws.send({"type": "query_account"})
        m, _ = ws.recv_until(lambda m: m.get("type") == "query_response")
        self.assertEqual(m["data"]["account_id"], acc_a)
        # the session trades its own account only
        ws.send({"type": "submit_order", "account_id": self.accounts["bob"],
                 "instrument_id": "IF2501", "direction": "BUY", "offset": "OPEN", "volume": 1,
                 "price": 3600})
        m, _ = ws.recv_until(lambda m: m.get("type") in ("error", "order_response"))
        self.assertEqual(m.get("code"), 9006, m)

        # another user's token in the URL
        ws2 = self.srv.ws(f"/ws?user_id={acc_a}&token={self.tokens['bob']}")
        self.addCleanup(ws2.close)
        m, _ = ws2.recv_until(lambda m: m.get("type") == "auth_response")
        self.assertFalse(m["success"], m)
        ws2.send({"type": "query_account"})
        m, _ = ws2.recv_until(lambda m: m.get("type") in ("error", "query_response"))
        self.assertEqual((m["type"], m.get("code")), ("error", 9002), m)
        # the owner's token in the URL
        ws3 = self.srv.ws(f"/ws?user_id={acc_a}&token={self.tokens['alice']}")
        self.addCleanup(ws3.close)
        m, _ = ws3.recv_until(lambda m: m.get("type") == "auth_response")
        self.assertTrue(m["success"], m)

    def diff_session(self):
        ws = self.srv.ws("/ws/diff")
        self.addCleanup(ws.close)
        first = ws.recv()
        self.assertEqual(first["aid"], "rtn_brokers")
        return ws

    def diff_until_notify(self, ws, timeout=10.0):
        """Peeks until a notify arrives: (notifies, the trade subtree seen)."""
        deadline = time.time() + timeout
        notifies, trade = [], {}
        while not notifies:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no notify")
            ws.send({"aid": "peek_message"})
            m, _ = ws.recv_until(lambda m: m.get("aid") == "rtn_data", timeout=left)
            self.bodies.append(json.dumps(m))
            for part in m["data"]:
                notifies.extend(part.get("notify", {}).values())
                trade.update(part.get("trade", {}))
        return notifies, trade

    def test_diff_login_password(self):
        ws = self.diff_session()
        ws.send({"aid": "req_login", "bid": "qaexchange", "user_name": "alice",
                 "password": WRONG_PASSWORDS[0]})
        notifies, trade = self.diff_until_notify(ws)
        self.assertEqual([n["code"] for n in notifies], [9001], notifies)
        self.assertEqual(trade, {})
        ws.send({"aid": "req_login", "bid": "qaexchange", "user_name": "alice",
                 "password": PASSWORDS["alice"]})
        notifies, trade = self.diff_until_notify(ws)
        self.assertIn(1000, [n["code"] for n in notifies], notifies)
        self.assertEqual(trade["alice"]["accounts"]["CNY"]["account_id"], self.accounts["alice"])
        # bob's password does not open alice's account
        ws2 = self.diff_session()
        ws2.send({"aid": "req_login", "bid": "qaexchange", "user_name": self.accounts["alice"],
                  "password": PASSWORDS["bob"]})
        notifies, trade = self.diff_until_notify(ws2)
        self.assertEqual([n["code"] for n in notifies], [9001], notifies)
        self.assertEqual(trade, {})

    def test_diff_login_token_of_another_user(self):
        ws = self.diff_session()
        ws.send({"aid": "req_login", "bid": "qaexchange", "user_name": self.accounts["alice"],
                 "password": self.tokens["bob"]})
        notifies, trade = self.diff_until_notify(ws)
        self.assertTrue(notifies and all(n["level"] == "ERROR" for n in notifies), notifies)
        self.assertIn(notifies[0]["code"], (9001, 9006), notifies)
        self.assertEqual(trade, {})

    def test_diff_login_own_token(self):
        """The gateway takes a login token as the DIFF password (diff_login); the owner's own
        token for its own account must log in."""
        ws = self.diff_session()
        ws.send({"aid": "req_login", "bid": "qaexchange", "user_name": self.accounts["alice"],
                 "password": self.tokens["alice"]})
        notifies, trade = self.diff_until_notify(ws)
        self.assertIn(1000, [n["code"] for n in notifies], notifies)
        self.assertIn(self.accounts["alice"], trade)

    # ---- passwords ----

    def test_zz_passwords_never_leak(self):
        """Runs last (zz): every body seen by this class, the server's output, the data dir."""
        # a failed login, so a wrong password has passed through too
        st, resp = self.srv.post("/api/auth/login", {"username": "bob",
                                                     "password": WRONG_PASSWORDS[0]})
        self.assert_error(st, resp, "wrong password", 401, 9001)
        secrets = list(PASSWORDS.values()) + WRONG_PASSWORDS + [ADMIN_PASSWORD, "Fresh-Pw-0001",
                                                                "Mall0ry-pw-1"]
        self.assertGreater(len(self.bodies), 200)
        for body in self.bodies:
            for pw in secrets:
                self.assertNotIn(pw, body)
            self.assertNotIn("$argon2", body)
            self.assertNotIn("password_hash", body)
        st, user = self.srv.get(f"/api/auth/user/{self.user_ids['alice']}",
                                headers=bearer(self.tokens["alice"]))
        self.assertEqual(st, 200)
        self.assertFalse(any("pass" in k or "hash" in k for k in user["data"]), user)
        self.assertEqual(self.srv.stop(), 0)
        output = self.srv.output()
        self.assertIn("QAExchange", output)
        for pw in secrets + [SECRET]:
            self.assertNotIn(pw, output)
        hashes = 0
        files = 0
        for root, _, names in os.walk(self.data_dir):
            for name in names:
                with open(os.path.join(root, name), "rb") as f:
                    data = f.read()
                files += 1
                for pw in secrets:
                    self.assertNotIn(pw.encode(), data, os.path.join(root, name))
                hashes += data.count(b"$argon2id$")
        self.assertGreater(files, 0)
        # admin, alice, bob and the users registered by the route checks, as argon2id hashes
        self.assertGreaterEqual(hashes, 3)


class ThrottleTest(unittest.TestCase):
    """5 failed logins lock the name out (429 9004), even for the right password then."""

    def test_login_throttling(self):
        tmp = tempfile.mkdtemp(prefix="qaex-throttle-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with Server(config=write_config(tmp)) as srv:
            st, body = srv.post("/api/auth/register", {"username": "victim",
                                                       "password": "V1ctim-pw-real"})
            self.assertEqual(st, 200, body)
            for i in range(5):
                st, body = srv.post("/api/auth/login", {"username": "victim",
                                                        "password": f"guess-{i}"})
                self.assertEqual((st, body["error"]["code"]), (401, 9001), body)
            st, body = srv.post("/api/auth/login", {"username": "victim",
                                                    "password": "V1ctim-pw-real"})
            self.assertEqual(st, 429, body)
            self.assertEqual(body["error"]["code"], 9004, body)
            self.assertNotIn("V1ctim-pw-real", json.dumps(body))
            self.assertRegex(body["error"]["message"], r"\d")  # says how long to wait
            # DIFF logins are throttled the same way
            ws = srv.ws("/ws/diff")
            self.addCleanup(ws.close)
            ws.recv()
            ws.send({"aid": "req_login", "bid": "qaexchange", "user_name": "victim",
                     "password": "V1ctim-pw-real"})
            codes = []
            deadline = time.time() + 10
            while not codes and time.time() < deadline:
                ws.send({"aid": "peek_message"})
                m, _ = ws.recv_until(lambda m: m.get("aid") == "rtn_data")
                for part in m["data"]:
                    codes += [n["code"] for n in part.get("notify", {}).values()]
            self.assertEqual(codes, [9004])
            self.assertNotIn("V1ctim-pw-real", srv.output())


if __name__ == "__main__":
    unittest.main()
