"""Durability: kill -9 at random moments under load, restart, and prove that nothing
acknowledged was lost and that the recovered server equals a fresh engine replaying the journal
(SPEC 8; seed lines 14067-14114)."""
import glob
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import qaex
from qaex import Server

ASAN = "/asan/" in qaex.SERVER
ROUNDS = 20
REPLAY = os.path.join(os.path.dirname(qaex.SERVER), "qaexchange-replay")
JOURNAL_TOOL = os.path.join(os.path.dirname(qaex.SERVER), "qaexchange-journal")


def journal_tool(*args):
    return subprocess.run([JOURNAL_TOOL, *args], capture_output=True, text=True, timeout=60)
CONFIG = """
[storage]
durability = "sync"
snapshot_interval_commands = 150
snapshot_interval_secs = 0
"""


def replay_hash(data_dir):
    out = subprocess.run([REPLAY, data_dir], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    fields = out.stdout.split()
    return fields[fields.index("state_hash") + 1], int(fields[fields.index("last_seq") + 1])


class Load:
    """Clients trading concurrently; remembers every acknowledged account and order."""

    def __init__(self, srv, round_no, clients=4):
        self.srv = srv
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.accounts, self.orders = set(), {}
        self.threads = [threading.Thread(target=self.run, args=(round_no, i), daemon=True)
                        for i in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, round_no, client):
        rng = random.Random(round_no * 100 + client)
        account = f"crash-r{round_no}-c{client}"
        try:
            status, body = self.srv.post("/api/account/open", {"user_id": account, "init_cash": 50000000},
                                         timeout=5)
            if status != 200:
                return
            with self.lock:
                self.accounts.add(account)
            while not self.stop.is_set():
                side = rng.choice(["BUY", "SELL"])
                price = round(3800 + rng.randint(-5, 5) * 0.2, 1)
                status, body = self.srv.post("/api/order/submit", {
                    "user_id": account, "instrument_id": "IF2501", "direction": side,
                    "offset": "OPEN", "volume": rng.randint(1, 3), "price": price}, timeout=5)
                if status == 200 and body["success"]:
                    with self.lock:
                        self.orders[body["data"]["order_id"]] = account
        except (OSError, ValueError):
            return  # the server was killed under us: whatever was not acknowledged may be lost

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


class CrashTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qaex-crash-")
        self.data = os.path.join(self.tmp, "data")
        self.config = os.path.join(self.tmp, "exchange.toml")
        with open(self.config, "w") as f:
            f.write(CONFIG)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def start(self):
        srv = Server(storage=True, data_dir=self.data, config=self.config)
        self.addCleanup(srv.close)
        return srv

    def check_recovered(self, srv, accounts, orders):
        for account in accounts:
            status, body = srv.get(f"/api/account/{account}")
            self.assertEqual(status, 200, f"acknowledged account {account} lost: {body}")
        missing = [oid for oid in orders if srv.get(f"/api/order/{oid}")[0] != 200]
        self.assertEqual(missing, [], f"{len(missing)} acknowledged orders lost")
        state, replayed, last_seq = self.state_and_replay(srv)
        self.assertEqual(last_seq, state["last_seq"])
        self.assertEqual(replayed, state["state_hash"],
                         "the recovered server differs from a fresh engine replaying the journal")

    def state_and_replay(self, srv):
        """The server's state and a replay of its journal, taken while no command came in
        between: a running server journals timer commands (a K-line bar closing) of its own."""
        for _ in range(10):
            status, body = srv.get("/monitoring/state")
            self.assertEqual(status, 200, body)
            replayed, last_seq = replay_hash(self.data)
            status, again = srv.get("/monitoring/state")
            self.assertEqual(status, 200, again)
            if again["data"]["last_seq"] == body["data"]["last_seq"]:
                return body["data"], replayed, last_seq
        self.fail("the server kept journaling commands of its own")

    def test_kill_9_rounds(self):
        rng = random.Random(7)
        accounts, orders = set(), {}
        snapshots_seen = 0
        for round_no in range(ROUNDS):
            srv = self.start()
            self.check_recovered(srv, accounts, orders)
            load = Load(srv, round_no)
            time.sleep(rng.uniform(0.15, 0.6))
            srv.proc.kill()  # SIGKILL: no flush, no final snapshot
            srv.proc.wait(timeout=10)
            load.join()
            accounts |= load.accounts
            orders.update(load.orders)
            snapshots_seen = max(snapshots_seen, len(glob.glob(os.path.join(self.data, "snapshots", "*.bin"))))
        srv = self.start()
        self.check_recovered(srv, accounts, orders)
        print(f"\n{ROUNDS} kill -9 rounds: {len(accounts)} accounts and {len(orders)} acknowledged "
              f"orders all recovered; snapshots on disk: {snapshots_seen}")
        self.assertGreater(len(orders), ROUNDS)
        self.assertGreater(snapshots_seen, 0)

    def test_risk_thresholds_change_between_runs(self):
        """[risk] may change between runs: a recovered engine applies the new thresholds, and
        a replay of the journal judges every order under the thresholds it met (the rejected
        20-lot order of the first run must not come back, the accepted one of the second must
        stay), with or without a snapshot."""
        def config(max_volume):
            with open(self.config, "w") as f:
                f.write(CONFIG + f"\n[risk]\nmax_order_volume = {max_volume}\n")

        def order(srv, volume, price):
            return srv.post("/api/order/submit", {
                "user_id": "risky", "instrument_id": "IF2501", "direction": "BUY",
                "offset": "OPEN", "volume": volume, "price": price, "order_type": "LIMIT"})

        config(10)
        srv = self.start()
        status, body = srv.post("/api/account/open", {"user_id": "risky", "init_cash": 1e9})
        self.assertEqual(status, 200, body)
        status, body = order(srv, 20, 3700.0)
        self.assertEqual(body["error"]["code"], 1008, body)
        self.assertIn("20", body["error"]["message"])
        status, body = order(srv, 5, 3701.0)
        self.assertEqual(status, 200, body)
        first = body["data"]["order_id"]
        srv.stop()  # SIGTERM: a final snapshot holding max_order_volume = 10

        config(100)
        srv = self.start()
        self.assertIn("Risk thresholds changed", srv.output())
        status, body = order(srv, 20, 3702.0)
        self.assertEqual(status, 200, body)
        second = body["data"]["order_id"]
        srv.proc.kill()
        srv.proc.wait(timeout=10)

        # the whole journal, no snapshot, under the default thresholds (10,000 lots)
        for snap in glob.glob(os.path.join(self.data, "snapshots", "*")):
            os.remove(snap)
        config(10000)
        srv = self.start()
        status, body = srv.get("/api/order/user/risky")
        self.assertEqual(status, 200, body)
        orders = body["data"] if isinstance(body["data"], list) else body["data"]["orders"]
        volumes = sorted((o["order_id"], o["volume_orign"] if "volume_orign" in o else o["volume"])
                         for o in orders)
        self.assertEqual(volumes, sorted([(first, 5), (second, 20)]))
        self.check_recovered(srv, {"risky"}, {first: None, second: None})

    def run_and_kill(self, rounds=1):
        accounts, orders = set(), {}
        for round_no in range(rounds):
            srv = self.start()
            load = Load(srv, 1000 + round_no)
            time.sleep(0.3)
            load.join()
            accounts |= load.accounts
            orders.update(load.orders)
            srv.proc.kill()
            srv.proc.wait(timeout=10)
        return accounts, orders

    def last_segment(self):
        return sorted(glob.glob(os.path.join(self.data, "journal", "*.wal")))[-1]

    def test_torn_tail_is_cut(self):
        accounts, orders = self.run_and_kill()
        with open(self.last_segment(), "ab") as f:
            f.write(b"\x40\x00\x00\x00garbage: a record torn by the crash")
        srv = self.start()
        self.assertIn("Recovered", srv.output())
        self.check_recovered(srv, accounts, orders)

    def test_truncated_segment_recovers_the_prefix(self):
        accounts, orders = self.run_and_kill()
        # journal alone: a snapshot that happened to cover the last record would otherwise be
        # newer than the cut journal (test_journal_cut_behind_the_snapshot covers that case)
        for snap in glob.glob(os.path.join(self.data, "snapshots", "*")):
            os.remove(snap)
        path = self.last_segment()
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size - 7)  # the disk lost the end of the last record
        srv = self.start()
        out = srv.output()
        self.assertIn("Recovered", out)
        state, replayed, _ = self.state_and_replay(srv)
        self.assertEqual(replayed, state["state_hash"])

    def test_journal_cut_behind_the_snapshot(self):
        """A clean stop snapshots the last record; if the disk then loses the journal's end, the
        snapshot alone is the state, the old journal is kept aside, and the new journal carries
        on after the snapshot's sequence so that later work survives the next crash."""
        accounts, orders = self.run_and_kill()
        srv = self.start()
        srv.stop()  # SIGTERM: a final snapshot at the last sequence
        path = self.last_segment()
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 7)
        srv = self.start()
        self.assertIn("before the snapshot", srv.output())
        self.assertTrue(glob.glob(os.path.join(self.data, "journal.before-*")))
        status, body = srv.get("/monitoring/state")
        self.assertEqual(status, 200, body)
        snapshot_seq = body["data"]["last_seq"]
        missing = [oid for oid in orders if srv.get(f"/api/order/{oid}")[0] != 200]
        self.assertEqual(missing, [], f"{len(missing)} orders of the snapshot lost")
        # restarts before any new command: the new journal is still empty, which is no reason
        # to set it aside again (that used to fail start-up for good)
        srv.stop()
        srv = self.start()
        srv.proc.kill()
        srv.proc.wait(timeout=10)
        srv = self.start()
        self.assertEqual(len(glob.glob(os.path.join(self.data, "journal.before-*"))), 1)
        status, body = srv.get("/monitoring/state")
        self.assertEqual(status, 200, body)
        # (the server may have journaled a K-line clock of its own since)
        self.assertGreaterEqual(body["data"]["last_seq"], snapshot_seq)
        load = Load(srv, 77)
        time.sleep(0.3)
        load.join()
        self.assertTrue(load.orders)
        srv.proc.kill()
        srv.proc.wait(timeout=10)
        srv = self.start()
        status, body = srv.get("/monitoring/state")
        self.assertEqual(status, 200, body)
        self.assertGreater(body["data"]["last_seq"], snapshot_seq)
        orders.update(load.orders)
        missing = [oid for oid in orders if srv.get(f"/api/order/{oid}")[0] != 200]
        self.assertEqual(missing, [], f"{len(missing)} acknowledged orders lost")

    def test_bad_snapshot_falls_back(self):
        accounts, orders = self.run_and_kill(rounds=2)
        srv = self.start()
        srv.stop()  # a clean stop writes a final snapshot
        snaps = sorted(glob.glob(os.path.join(self.data, "snapshots", "*.bin")))
        self.assertTrue(snaps)
        with open(snaps[-1], "r+b") as f:
            f.seek(os.path.getsize(snaps[-1]) // 2)
            f.write(b"\xff\xff\xff\xff")
        srv = self.start()
        self.check_recovered(srv, accounts, orders)

    def test_journal_tool(self):
        accounts, orders = self.run_and_kill(rounds=2)
        out = journal_tool("verify", self.data)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("OK", out.stdout)
        stats = journal_tool("stats", self.data)
        self.assertEqual(stats.returncode, 0)
        self.assertIn("records:", stats.stdout)
        dump = journal_tool("dump", self.data, "--limit", "5")
        self.assertEqual(dump.returncode, 0)
        self.assertEqual(len([l for l in dump.stdout.splitlines() if l.strip()]) >= 5, True, dump.stdout)
        # --from names the first record shown
        dump = journal_tool("dump", self.data, "--from", "3", "--limit", "2")
        self.assertEqual([l.split()[0] for l in dump.stdout.splitlines()], ["seq=3", "seq=4"],
                         dump.stdout)
        path = self.last_segment()
        with open(path, "r+b") as f:
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 0xFF]))
        out = journal_tool("verify", self.data)
        self.assertEqual(out.returncode, 1, out.stdout)

    def test_corruption_in_the_middle_stops_start_up(self):
        srv = self.start()
        load = Load(srv, 1000)
        time.sleep(0.3)
        load.join()
        # a query waits until the history holds every acknowledged command
        status, body = srv.post("/api/query/sql", {"sql": "SELECT COUNT(*) FROM orders"})
        self.assertEqual(status, 200, body)
        status, body = srv.get("/monitoring/storage")
        self.assertEqual(status, 200, body)
        history_seq = body["data"]["history"]["last_seq"]
        srv.proc.kill()
        srv.proc.wait(timeout=10)
        path = self.last_segment()
        with open(path, "r+b") as f:
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 0xFF]))
        srv_cmd_ok = True
        try:
            srv = Server(storage=True, data_dir=self.data, config=self.config)
            srv.close()
        except RuntimeError as e:
            srv_cmd_ok = False
            self.assertIn(".wal", str(e))
        self.assertFalse(srv_cmd_ok, "start-up must refuse a journal corrupted in the middle")
        # the operator may accept the loss: the server keeps what precedes the damage
        srv = Server("--recover-to-corruption", storage=True, data_dir=self.data, config=self.config)
        self.addCleanup(srv.close)
        self.assertEqual(srv.get("/health")[0], 200)
        self.assertIn("Recovered", srv.output())
        status, body = srv.get("/monitoring/state")
        self.assertEqual(status, 200, body)
        last_seq = body["data"]["last_seq"]
        # the history held commands after the cut (here the snapshot, or the journal's new
        # end): they are gone from it too
        if history_seq > last_seq:
            self.assertIn("after the end of the journal", srv.output())
        # and it trades on, durably, with the new commands in the history under their numbers
        status, body = srv.post("/api/account/open", {"user_id": "after-cut",
                                                      "init_cash": 10000000})
        self.assertEqual(status, 200, body)
        status, body = srv.post("/api/order/submit", {
            "user_id": "after-cut", "instrument_id": "IF2501", "direction": "BUY",
            "offset": "OPEN", "volume": 1, "price": 3500.0})
        self.assertEqual(status, 200, body)
        order_id = body["data"]["order_id"]
        status, body = srv.post("/api/query/sql", {
            "sql": "SELECT order_id, journal_seq FROM orders WHERE account_id = 'after-cut'"})
        self.assertEqual(status, 200, body)
        rows = body["data"]["rows"]
        self.assertEqual([r[0] for r in rows], [order_id], body)
        self.assertGreater(rows[0][1], last_seq)
        status, body = srv.post("/api/query/sql", {"sql": "SELECT MAX(journal_seq) FROM orders"})
        self.assertEqual(body["data"]["rows"][0][0], rows[0][1], body)


if __name__ == "__main__":
    unittest.main()
