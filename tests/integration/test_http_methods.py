"""HTTP methods against the real server on loopback (SPEC 5).

A path no route has answers 404; a path that exists with another method answers 405 with an
Allow header (the route's methods plus OPTIONS, which every path answers for CORS) and the SPEC 5
error envelope, and changes nothing. In token mode the token (401) and the admin role (403) are
checked first, so the 405 tells nothing to a caller who may not use the path anyway.
"""
import http.client
import json
import os
import shutil
import tempfile
import unittest

from qaex import Server, ServerTest, write_token_config

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
NOT_FOUND, NOT_ALLOWED, FORBIDDEN = 9007, 9010, 9006

# Every HTTP route (SPEC 5 and the extras the gateway serves) with its methods. The operator's
# routes are listed once; each is also checked under /api.
ROUTES = [
    ("/health", {"GET"}),
    ("/metrics", {"GET"}),
    ("/api/auth/register", {"POST"}),
    ("/api/auth/login", {"POST"}),
    ("/api/auth/current-user", {"GET"}),
    ("/api/auth/user/u1", {"GET"}),
    ("/api/user/u1/accounts", {"GET"}),
    ("/api/user/u1/account/create", {"POST"}),
    ("/api/account/open", {"POST"}),
    ("/api/account/deposit", {"POST"}),
    ("/api/account/withdraw", {"POST"}),
    ("/api/account/list", {"GET"}),
    ("/api/account/a1", {"GET"}),
    ("/api/account/detail/a1", {"GET"}),
    ("/api/account/a1/curve", {"GET"}),
    ("/api/order/submit", {"POST"}),
    ("/api/order/cancel", {"POST"}),
    ("/api/order/o1", {"GET"}),
    ("/api/order/user/a1", {"GET"}),
    ("/api/order/user/a1/trades", {"GET"}),
    ("/api/position/a1", {"GET"}),
    ("/api/position/account/a1", {"GET"}),
    ("/api/trades/user/a1", {"GET"}),
    ("/api/market/instruments", {"GET"}),
    ("/api/market/tick/IF2501", {"GET"}),
    ("/api/market/orderbook/IF2501", {"GET"}),
    ("/api/market/recent-trades/IF2501", {"GET"}),
    ("/api/market/transactions", {"GET"}),
    ("/api/market/order-stats", {"GET"}),
    ("/api/market/symbols", {"GET"}),
    ("/api/market/kline/IF2501", {"GET"}),
    ("/api/klines/IF2501/1min", {"GET"}),
    ("/api/query/sql", {"POST"}),
    ("/api/query/structured", {"POST"}),
    ("/api/query/timeseries", {"POST"}),
]
OPERATOR_ROUTES = [
    ("/admin/instruments", {"GET"}),
    ("/admin/instrument/create", {"POST"}),
    ("/admin/instrument/X1/update", {"PUT"}),
    ("/admin/instrument/X1/suspend", {"PUT"}),
    ("/admin/instrument/X1/resume", {"PUT"}),
    ("/admin/instrument/X1/delist", {"DELETE"}),
    ("/admin/settlement/set-price", {"POST"}),
    ("/admin/settlement/batch-set-prices", {"POST"}),
    ("/admin/settlement/execute", {"POST"}),
    ("/admin/settlement/history", {"GET"}),
    ("/admin/settlement/detail/2025-01-02", {"GET"}),
    ("/admin/risk/accounts", {"GET"}),
    ("/admin/risk/margin-summary", {"GET"}),
    ("/admin/risk/liquidations", {"GET"}),
    ("/admin/capital/deposit", {"POST"}),
    ("/admin/capital/withdraw", {"POST"}),
    ("/admin/capital/transactions", {"GET"}),
    ("/admin/account/a1/freeze", {"POST"}),
    ("/admin/account/a1/unfreeze", {"POST"}),
    ("/admin/audit", {"GET"}),
    ("/monitoring/system", {"GET"}),
    ("/monitoring/state", {"GET"}),
    ("/monitoring/storage", {"GET"}),
    ("/monitoring/accounts", {"GET"}),
    ("/monitoring/orders", {"GET"}),
    ("/monitoring/trades", {"GET"}),
    ("/monitoring/report", {"POST"}),
]
UNKNOWN_PATHS = ["/", "/nope", "/api", "/api/nope", "/api/account/a1/nope", "/api/order/user/a1/nope",
                 "/api/market/nope", "/api/klines/IF2501", "/api/query/nope", "/admin",
                 "/admin/nope", "/api/admin/instrument/X1/nope", "/monitoring/nope",
                 "/api/monitoring/system/x", "/healthz"]


def all_routes():
    return ROUTES + OPERATOR_ROUTES + [("/api" + p, m) for p, m in OPERATOR_ROUTES]


def allow_of(methods):
    """The Allow value the server sends: its methods in its fixed order, then OPTIONS."""
    return ", ".join(m for m in ("GET", "POST", "PUT", "DELETE") if m in methods) + ", OPTIONS"


def call(srv, method, path, body=None, headers=None, raw=None):
    """(status, headers, parsed body) over real HTTP on 127.0.0.1; raw: bytes sent as they are."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        text = resp.read().decode()
        return resp.status, resp.headers, (json.loads(text) if text else None)
    finally:
        conn.close()


class MethodsCase(unittest.TestCase):
    def envelope(self, body, code):
        self.assertIsInstance(body, dict, body)
        self.assertIs(body["success"], False, body)
        self.assertIsNone(body["data"], body)
        self.assertEqual(body["error"]["code"], code, body)
        return body["error"]["message"]

    def not_allowed(self, method, path, allowed, **kw):
        st, hdr, body = call(self.srv, method, path, **kw)
        self.assertEqual(st, 405, (method, path, body))
        self.assertEqual(hdr.get("Allow"), allow_of(allowed), (method, path))
        msg = self.envelope(body, NOT_ALLOWED)
        want = ", ".join(m for m in ("GET", "POST", "PUT", "DELETE") if m in allowed)
        self.assertEqual(msg, f"method {method} not allowed on {path}; allowed: {want}")

    def ok(self, method, path, body=None, headers=None):
        st, _, out = call(self.srv, method, path, body, headers)
        self.assertEqual(st, 200, (method, path, out))
        self.assertIs(out["success"], True, out)
        return out["data"]


class OpenModeTest(ServerTest, MethodsCase):
    """Open mode (no tokens): every route's wrong methods, unknown paths, and no state change."""

    def test_every_route_answers_405_for_other_methods(self):
        for path, allowed in all_routes():
            for method in METHODS:
                if method in allowed:
                    continue
                with self.subTest(method=method, path=path):
                    self.not_allowed(method, path, allowed)

    def test_405_for_a_body_too(self):
        # a well-formed body changes nothing about the answer, nor a malformed one (not parsed)
        self.not_allowed("PUT", "/api/account/list", {"GET"}, body={"x": 1})
        st, hdr, body = call(self.srv, "PATCH", "/api/order/submit", raw=b"{not json")
        self.assertEqual((st, hdr.get("Allow")), (405, "POST, OPTIONS"), body)

    def test_keep_alive_405_then_200(self):
        # the Allow header belongs to the 405 alone, not to the next answer on the connection
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=10)
        try:
            answers = []
            for method in ("POST", "GET"):
                conn.request(method, "/api/market/instruments", body=b"{}" if method == "POST"
                             else None, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                answers.append((resp.status, resp.getheader("Allow")))
            self.assertEqual(answers, [(405, "GET, OPTIONS"), (200, None)])
        finally:
            conn.close()

    def test_unknown_paths_answer_404_without_allow(self):
        for path in UNKNOWN_PATHS:
            for method in METHODS:
                with self.subTest(method=method, path=path):
                    st, hdr, body = call(self.srv, method, path)
                    self.assertEqual(st, 404, (method, path, body))
                    self.assertIsNone(hdr.get("Allow"))
                    self.assertEqual(self.envelope(body, NOT_FOUND),
                                     f"no route {method} {path}")

    def test_options_and_head(self):
        st, hdr, body = call(self.srv, "OPTIONS", "/api/order/submit")
        self.assertEqual((st, body), (204, None))
        self.assertIsNone(hdr.get("Allow"))
        # HEAD is not served: a GET route answers 405 (no body with HEAD)
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=10)
        try:
            conn.request("HEAD", "/health")
            resp = conn.getresponse()
            resp.read()
            self.assertEqual((resp.status, resp.getheader("Allow")), (405, "GET, OPTIONS"))
        finally:
            conn.close()

    def test_correct_methods_unchanged(self):
        st, _, body = call(self.srv, "GET", "/health")
        self.assertEqual(st, 200)
        self.assertEqual(body["status"], "ok")
        acc = self.ok("POST", "/api/account/open", {"user_id": "m_ok", "init_cash": 100000})
        self.assertEqual(acc["account_id"], "m_ok")
        # a literal route wins over an id, but a real id still reaches its GET route
        self.assertEqual(self.ok("GET", "/api/account/m_ok")["account_id"], "m_ok")
        self.assertIsInstance(self.ok("GET", "/api/admin/instruments"), list)
        self.assertIsInstance(self.ok("GET", "/monitoring/system"), dict)

    def snapshot(self, acc):
        paths = ["/api/account/list", f"/api/account/{acc}", f"/api/order/user/{acc}",
                 "/admin/instruments", "/admin/audit", "/admin/capital/transactions",
                 "/admin/settlement/history", "/api/market/instruments"]
        return {p: self.ok("GET", p) for p in paths}

    def test_wrong_method_changes_nothing(self):
        acc = self.ok("POST", "/api/account/open", {"user_id": "m_state", "init_cash": 500000})
        acc = acc["account_id"]
        first = self.ok("GET", "/admin/instruments")[0]
        instrument, price = first["instrument_id"], first["lower_limit"]
        before = self.snapshot(acc)
        order = {"user_id": acc, "account_id": acc, "instrument_id": instrument,
                 "direction": "BUY", "offset": "OPEN", "volume": 1, "price": price,
                 "order_type": "LIMIT"}
        spec = {"instrument_id": "TEST.MX01", "instrument_name": "mx", "contract_multiplier": 10,
                "price_tick": 1, "pre_settlement": 1000, "margin_rate": 0.1,
                "commission_rate": 0.0001, "commission_per_lot": 2, "limit_up_rate": 0.1,
                "limit_down_rate": 0.1}
        attempts = [
            ("GET", "/api/account/open", {"user_id": "m_ghost", "init_cash": 1}, {"POST"}),
            ("PUT", "/api/account/open", {"user_id": "m_ghost", "init_cash": 1}, {"POST"}),
            ("GET", "/api/user/m_ghost/account/create", {"init_cash": 1}, {"POST"}),
            ("GET", "/api/account/deposit", {"account_id": acc, "amount": 7}, {"POST"}),
            ("DELETE", "/api/account/withdraw", {"account_id": acc, "amount": 7}, {"POST"}),
            ("GET", "/api/order/submit", order, {"POST"}),
            ("PUT", "/api/order/submit", order, {"POST"}),
            ("GET", "/api/order/cancel", {"account_id": acc, "order_id": "x"}, {"POST"}),
            ("GET", "/api/auth/register", {"username": "m_ghost", "password": "pw123456"},
             {"POST"}),
            ("PUT", "/admin/instrument/create", spec, {"POST"}),
            ("GET", f"/admin/instrument/{instrument}/suspend", {}, {"PUT"}),
            ("POST", f"/api/admin/instrument/{instrument}/suspend", {}, {"PUT"}),
            ("POST", f"/admin/instrument/{instrument}/delist", None, {"DELETE"}),
            ("PUT", f"/admin/instrument/{instrument}/delist", None, {"DELETE"}),
            ("POST", f"/admin/instrument/{instrument}/update", {"margin_rate": 0.5}, {"PUT"}),
            ("GET", f"/admin/account/{acc}/freeze", {}, {"POST"}),
            ("PUT", f"/api/admin/account/{acc}/freeze", {}, {"POST"}),
            ("GET", "/admin/capital/deposit", {"account_id": acc, "amount": 9}, {"POST"}),
            ("PUT", "/admin/capital/withdraw", {"account_id": acc, "amount": 9}, {"POST"}),
            ("GET", "/admin/settlement/set-price",
             {"instrument_id": instrument, "settlement_price": 1}, {"POST"}),
            ("GET", "/admin/settlement/execute", {}, {"POST"}),
            ("PUT", "/api/admin/settlement/execute", {}, {"POST"}),
            ("GET", "/monitoring/report", {}, {"POST"}),
        ]
        for method, path, body, allowed in attempts:
            with self.subTest(method=method, path=path):
                self.not_allowed(method, path, allowed, body=body)
        self.assertEqual(self.snapshot(acc), before)
        st, _, body = call(self.srv, "GET", "/api/account/m_ghost")
        self.assertEqual(st, 404, body)
        # the instrument still trades and the account is not frozen: an order goes in
        self.ok("POST", "/api/order/submit", order)


def write_config(directory):
    return write_token_config(directory, "methods-test-token-secret-0123456789abcdef")


class TokenModeTest(MethodsCase):
    """Tokens enforced: 401 and 403 come before 404/405, except on public routes."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qaex-methods-")
        try:
            cls.srv = Server(config=write_config(cls.tmp))
        except Exception:
            shutil.rmtree(cls.tmp, True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()
        shutil.rmtree(cls.tmp, True)

    def login(self, username, password):
        data = self.ok("POST", "/api/auth/login", {"username": username, "password": password})
        return {"Authorization": "Bearer " + data["token"]}

    def status(self, method, path, headers=None, body=None):
        st, hdr, out = call(self.srv, method, path, body, headers)
        return st, hdr.get("Allow"), out

    def test_public_routes_answer_405_without_a_token(self):
        for method, path, allowed in [("POST", "/health", {"GET"}), ("PUT", "/metrics", {"GET"}),
                                      ("GET", "/api/auth/login", {"POST"}),
                                      ("DELETE", "/api/auth/register", {"POST"}),
                                      ("POST", "/api/market/instruments", {"GET"}),
                                      ("POST", "/api/klines/IF2501/1min", {"GET"})]:
            with self.subTest(method=method, path=path):
                self.not_allowed(method, path, allowed)

    def test_without_a_token_protected_paths_answer_401(self):
        # known path with the wrong method, known path, unknown path: all alike
        for method, path in [("GET", "/api/account/open"), ("POST", "/api/account/list"),
                             ("GET", "/api/order/submit"), ("POST", "/api/account/open"),
                             ("GET", "/api/nope"), ("GET", "/admin/instrument/X1/suspend"),
                             ("PUT", "/admin/nope"), ("GET", "/api/query/sql")]:
            with self.subTest(method=method, path=path):
                st, allow, body = self.status(method, path)
                self.assertEqual((st, allow), (401, None), body)

    def test_non_admin_learns_nothing_of_operator_routes(self):
        self.ok("POST", "/api/auth/register", {"username": "m_user", "password": "pw123456"})
        user = self.login("m_user", "pw123456")
        for method, path in [("GET", "/admin/instrument/X1/suspend"),
                             ("PUT", "/admin/instrument/X1/suspend"),
                             ("GET", "/admin/nope"), ("POST", "/api/admin/audit"),
                             ("DELETE", "/monitoring/report"), ("GET", "/api/query/sql"),
                             ("GET", "/api/query/nope")]:
            with self.subTest(method=method, path=path):
                st, allow, body = self.status(method, path, user)
                self.assertEqual((st, allow), (403, None), body)
                self.envelope(body, FORBIDDEN)
        # the user's own routes: wrong method 405, unknown 404
        self.not_allowed("GET", "/api/order/submit", {"POST"}, headers=user)
        self.not_allowed("POST", "/api/auth/current-user", {"GET"}, headers=user)
        st, allow, body = self.status("POST", "/api/nope", user)
        self.assertEqual((st, allow), (404, None), body)

    def test_admin_gets_405_and_404(self):
        admin = self.login("admin", "admin123")
        self.not_allowed("GET", "/admin/instrument/X1/suspend", {"PUT"}, headers=admin)
        self.not_allowed("POST", "/api/admin/instrument/X1/delist", {"DELETE"}, headers=admin)
        self.not_allowed("GET", "/api/query/sql", {"POST"}, headers=admin)
        self.not_allowed("PUT", "/monitoring/system", {"GET"}, headers=admin)
        st, allow, body = self.status("GET", "/admin/nope", admin)
        self.assertEqual((st, allow), (404, None), body)
        self.envelope(body, NOT_FOUND)
        self.assertIsInstance(self.ok("GET", "/admin/audit", headers=admin), list)


if __name__ == "__main__":
    unittest.main()
