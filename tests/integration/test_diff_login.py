"""DIFF logins in token mode (open_mode = false) against the real server: nothing of an account
reaches a session before the engine accepts the session's login to it.

(1) A login to another user's account, refused by the engine's ownership check, must not show the
    session any of that account's data, even while the owner trades hard (the gateway used to join
    the account's push topic before the check: pushes in between were owed to the intruder and
    went out at its next peek_message).
(2) A refused re-login leaves the session's current login as it was: still logged in to its own
    account, still acting as its own user, still receiving its pushes.
(3) One login at a time: a req_login sent while another of the same session is still being
    checked is refused with a notify (9003), and the first one completes as if alone (the two
    used to share one password slot, the second overwriting the first's password)."""
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import unittest

from qaex import write_token_config
from test_diff import Diff, Server

SECRET = "diff-login-test-secret-0123456789abcdefgh"
ADMIN_PASSWORD = "Adm1n-Pw-d1ff-L0gin-4k"
PASSWORDS = {"alice": "Al1ce-Pw-d1ff-7a1c", "bob": "B0b-Pw-d1ff-2b0b"}
# how long the race of (1) is hammered, and the victim's commands per round
RACE_SECONDS = 8.0
BURST = 40


def write_config(directory):
    return write_token_config(directory, SECRET, ADMIN_PASSWORD)


def frame(obj):
    """One masked client text frame (several are written at once to make a burst)."""
    payload = json.dumps(obj).encode()
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                            bytes([0x80 | 126]) + struct.pack("!H", n))
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def login_msg(user, password):
    return {"aid": "req_login", "bid": "qaexchange", "user_name": user, "password": password}


class DiffLoginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qaex-diff-login-")
        cls.srv = Server(config=write_config(cls.tmp))
        try:
            cls.tokens, cls.accounts = {}, {}
            for name, pw in PASSWORDS.items():
                st, body = cls.srv.post("/api/auth/register", {"username": name, "password": pw})
                assert st == 200, body
                st, body = cls.srv.post("/api/auth/login", {"username": name, "password": pw})
                assert st == 200, body
                cls.tokens[name] = body["data"]["token"]
                st, body = cls.srv.post("/api/account/open", {"init_cash": 10_000_000},
                                        headers=cls.bearer(name))
                assert st == 200, body
                cls.accounts[name] = body["data"]["account_id"]
        except Exception:
            cls.srv.close()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def bearer(cls, name):
        return {"Authorization": "Bearer " + cls.tokens[name]}

    def session(self):
        d = Diff(self.srv.port)
        self.addCleanup(d.close)
        first = d.next(5.0)
        self.assertEqual(first.get("aid"), "rtn_brokers", first)
        return d

    def logged_in(self, name):
        d = self.session()
        d.login(self.accounts[name], self.tokens[name])
        return d

    def until_notify(self, d, timeout=10.0):
        """Peeks until a notify arrives; returns the notifies and every data part seen."""
        deadline = time.monotonic() + timeout
        before = len(d.notifies)
        parts = []
        while len(d.notifies) == before:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no notify within %.0fs; saw %s" % (timeout, parts[-5:]))
            d.send({"aid": "peek_message"})
            m = d.rtn(left)
            parts += m["data"]
        return d.notifies[before:], parts

    # ---- (1) the race ----

    def test_refused_login_never_shows_the_account(self):
        victim = self.accounts["bob"]
        bob = self.logged_in("bob")  # the engine watches bob's account: every change is pushed
        alice = self.session()
        burst = b"".join(frame({"aid": "req_transfer", "future_account": victim,
                                "amount": 1.0}) for _ in range(BURST))
        attempt = frame(login_msg(victim, self.tokens["alice"])) + frame({"aid": "peek_message"})
        rounds = 0
        deadline = time.monotonic() + RACE_SECONDS
        while time.monotonic() < deadline:
            rounds += 1
            # the victim's commands and the attempt reach the gateway together, so the owner's
            # pushes are in flight while the engine checks the attempt
            bob.sock.sendall(burst)
            alice.sock.sendall(attempt)
            before = len(alice.notifies)
            parts = []
            while len(alice.notifies) == before:
                m = alice.rtn(10.0)
                parts += m["data"]
                if len(alice.notifies) == before:
                    alice.send({"aid": "peek_message"})
            leaked = [p for p in parts if "trade" in p]
            self.assertEqual(leaked, [], f"round {rounds}: another user's account was shown")
            self.assertEqual([n["level"] for n in alice.notifies[before:]], ["ERROR"],
                             alice.notifies[before:])
            self.assertNotIn("trade", alice.tree, f"round {rounds}")
            # the victim's burst is through before the next (its socket does not pile up)
            while len(bob.notifies) < rounds * BURST + 1:
                bob.peek()
        self.assertGreater(rounds, 20)
        # the victim's commands all went through: the race was real
        bob.settle()
        deposit = bob.tree["trade"][victim]["accounts"]["CNY"]["deposit"]
        self.assertGreaterEqual(deposit, rounds * BURST * 1.0 - 0.005)
        # and the intruder, asking once more, is still owed nothing of it
        alice.send({"aid": "peek_message"})
        self.assertEqual(alice.drain(0.5), [])

    # ---- (2) a refused re-login ----

    def assert_still_trading(self, d, key, acc=None):
        """The session is logged in to `acc` under trade.<key>, acts for its owner (a transfer
        goes through, with no error notify) and is shown the change."""
        acc = acc or key
        d.settle()
        self.assertEqual(d.tree["trade"][key]["accounts"]["CNY"]["account_id"], acc)
        before = d.tree["trade"][key]["accounts"]["CNY"]["deposit"]
        seen = len(d.notifies)
        d.send({"aid": "req_transfer", "future_account": acc, "amount": 5.0})
        deadline = time.monotonic() + 10
        while d.tree["trade"][key]["accounts"]["CNY"]["deposit"] < before + 5.0 - 0.005:
            errors = [n for n in d.notifies[seen:] if n["level"] == "ERROR"]
            self.assertEqual(errors, [])  # 9002 not logged in, 9006 another user's account
            self.assertLess(time.monotonic(), deadline, "the transfer was not shown")
            d.peek()

    def test_refused_relogin_keeps_the_current_login(self):
        alice = self.logged_in("alice")
        # another user's account with alice's own token: refused by the engine
        alice.send(login_msg(self.accounts["bob"], self.tokens["alice"]))
        notes, parts = self.until_notify(alice)
        self.assertEqual([n["level"] for n in notes], ["ERROR"], notes)
        self.assertFalse([p for p in parts if self.accounts["bob"] in p.get("trade", {})])
        self.assert_still_trading(alice, self.accounts["alice"])
        # her own account with bob's valid token: refused, and the session still acts as alice
        alice.send(login_msg(self.accounts["alice"], self.tokens["bob"]))
        notes, _ = self.until_notify(alice)
        self.assertEqual([n["level"] for n in notes], ["ERROR"], notes)
        self.assert_still_trading(alice, self.accounts["alice"])
        # a wrong password (the password path): refused after the password check
        alice.send(login_msg("alice", "Wr0ng-pw-d1ff"))
        notes, _ = self.until_notify(alice)
        self.assertEqual([n["code"] for n in notes], [9001], notes)
        self.assert_still_trading(alice, self.accounts["alice"])
        # a good login to the same account still works afterwards
        alice.send(login_msg(self.accounts["alice"], self.tokens["alice"]))
        notes, _ = self.until_notify(alice)
        self.assertEqual([n["code"] for n in notes], [1000], notes)
        self.assert_still_trading(alice, self.accounts["alice"])

    def test_switching_accounts_drops_the_old_one(self):
        """alice has two accounts; a login to the second takes trade.<first> out of her
        mirror, so it does not look like a live account any more."""
        st, body = self.srv.post("/api/account/open", {"init_cash": 1_000_000},
                                 headers=self.bearer("alice"))
        self.assertEqual(st, 200, body)
        second = body["data"]["account_id"]
        alice = self.logged_in("alice")
        first = self.accounts["alice"]
        self.assertIn(first, alice.tree.get("trade", {}))
        alice.send(login_msg(second, self.tokens["alice"]))
        notes, _ = self.until_notify(alice)
        self.assertEqual([n["code"] for n in notes], [1000], notes)
        self.assertIn(second, alice.tree["trade"])
        self.assertNotIn(first, alice.tree["trade"])

    # ---- (3) one login at a time ----

    def test_second_login_while_one_is_checked_is_refused(self):
        d = self.session()
        # both in one write: the second arrives while the first's password is being checked
        d.sock.sendall(frame(login_msg("alice", PASSWORDS["alice"])) +
                       frame(login_msg("alice", "Wr0ng-pw-d1ff-2")))
        deadline = time.monotonic() + 10
        while len(d.notifies) < 2:
            self.assertLess(time.monotonic(), deadline, d.notifies)
            d.peek()
        codes = [n["code"] for n in d.notifies]
        self.assertEqual(codes, [9003, 1000], d.notifies)
        self.assertIn("still being checked", d.notifies[0]["content"])
        self.assert_still_trading(d, "alice", self.accounts["alice"])


if __name__ == "__main__":
    unittest.main()
