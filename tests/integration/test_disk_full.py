"""A full disk never loses data: the journal on a tiny tmpfs fills up, new commands are refused
with 5002, the exchange stays readable, and once space returns everything acknowledged is there,
including after a kill -9 (SPEC 8)."""
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from qaex import Server

CONFIG = """
[storage]
durability = "sync"
snapshot_interval_commands = 0
snapshot_interval_secs = 0
journal_segment_size = 65536
"""


def order(srv, user, price, timeout=10):
    return srv.post("/api/order/submit", {"user_id": user, "instrument_id": "IF2501", "direction": "BUY",
                                          "offset": "OPEN", "volume": 1, "price": price}, timeout=timeout)


class DiskFullTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qaex-disk-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt])
        self.config = os.path.join(self.tmp, "exchange.toml")
        with open(self.config, "w") as f:
            f.write(CONFIG)

    def fill(self):
        """Fills the filesystem to the last byte; returns the filler's path."""
        path = os.path.join(self.mnt, "filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for size in (65536, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return path

    def test_full_disk_refuses_then_recovers(self):
        data = os.path.join(self.mnt, "data")
        srv = Server(storage=True, data_dir=data, config=self.config)
        self.addCleanup(srv.close)
        status, _ = srv.post("/api/account/open", {"user_id": "disk", "init_cash": 100000000})
        self.assertEqual(status, 200)
        acked = []
        for i in range(20):
            status, body = order(srv, "disk", 3700)
            self.assertEqual(status, 200, body)
            acked.append(body["data"]["order_id"])

        filler = self.fill()
        # Commands that still fit the segment's last page are written; the first one whose
        # write fails is held (its answer waits for the disk); every later one is refused with
        # 5002 and changes nothing. Each request runs in its own thread, since one may be held.
        results = [None] * 60

        def submit(i):
            try:
                results[i] = order(srv, "disk", 3702, timeout=60)
            except OSError as e:
                results[i] = (0, str(e))

        threads = []
        for i in range(len(results)):
            t = threading.Thread(target=submit, args=(i,), daemon=True)
            t.start()
            threads.append(t)
            t.join(timeout=0.2)  # in order, but never stuck behind a held one
        refused = [r for r in results if r and r[0] != 200]
        self.assertTrue(refused, "a full disk must refuse new commands with 5002")
        for status, body in refused:
            self.assertEqual(body["error"]["code"], 5002, body)
            self.assertIn("storage", body["error"]["message"])
        # still readable while the disk is full
        status, body = srv.get("/api/account/disk", timeout=5)
        self.assertEqual(status, 200, body)

        os.unlink(filler)  # space returns: the journal retries on its own
        for t in threads:
            t.join(timeout=30)
            self.assertFalse(t.is_alive(), "a held command was never answered")
        for status, body in results:
            if status == 200:
                acked.append(body["data"]["order_id"])
        status, body = order(srv, "disk", 3703)
        self.assertEqual(status, 200, body)
        acked.append(body["data"]["order_id"])
        refused = len(refused)

        srv.proc.kill()
        srv.proc.wait(timeout=10)
        srv2 = Server(storage=True, data_dir=data, config=self.config)
        self.addCleanup(srv2.close)
        status, body = srv2.get("/api/order/user/disk")
        self.assertEqual(status, 200)
        ids = {o["order_id"] for o in body["data"]}
        self.assertEqual(ids, set(acked), "exactly the acknowledged orders survive: none lost, none refused kept")
        print(f"\ndisk full: {refused} commands refused with 5002, {len(acked)} acknowledged, all recovered")


if __name__ == "__main__":
    unittest.main()
