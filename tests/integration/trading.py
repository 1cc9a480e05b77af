"""Helpers shared by the market-data and DIFF integration tests: a WebSocket client with a hard
deadline on every wait, and the REST calls that open accounts and place orders."""
import base64
import json
import os
import socket
import struct
import time

import qaex


class Client(qaex.WebSocket):
    """qaex.WebSocket with a hard deadline on every wait (server pings do not extend it) that
    never loses a partly received frame; optionally a small receive buffer (a slow reader)."""

    def __init__(self, port, path, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in head:
            if time.monotonic() > deadline:
                raise TimeoutError("no handshake answer")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError("handshake refused: " + head.decode(errors="replace"))

    def _frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        n, off = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, off = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, off = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < off + n:
            return None
        self.buf = b[off + n:]
        return b[0] & 0x0F, b[off:off + n]

    def next(self, timeout=10.0):
        """The next JSON text message within timeout seconds, else TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._frame()
            if f is not None:
                op, payload = f
                if op == 9:
                    self.send_text(payload, opcode=10)
                elif op == 8:
                    raise ConnectionError("server closed the WebSocket")
                elif op == 1:
                    return json.loads(payload.decode())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message within %.1fs" % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                raise TimeoutError("no message within %.1fs" % timeout) from None
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk

    def until(self, pred, timeout=10.0):
        """Messages until one satisfies pred: (match, the ones before it)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            try:
                m = self.next(max(left, 0.001))
            except TimeoutError:
                raise TimeoutError(f"no matching message within {timeout}s; saw {str(seen)[-2000:]}") from None
            if pred(m):
                return m, seen
            seen.append(m)

    def drain(self, seconds):
        """Every message that arrives within the next `seconds`."""
        deadline = time.monotonic() + seconds
        got = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(self.next(left))
            except TimeoutError:
                return got


# ---------------------------------------------------------------- helpers

def ok(srv, method, path, body=None):
    status, resp = srv.request(method, path, body=body)
    if status != 200 or not isinstance(resp, dict) or not resp.get("success"):
        raise AssertionError(f"{method} {path} {body}: {status} {resp}")
    return resp["data"]


def get(srv, path):
    return ok(srv, "GET", path)


def open_accounts(srv, names, cash=10_000_000):
    for name in names:
        ok(srv, "POST", "/api/account/open", {"user_id": name, "init_cash": cash})


def order(srv, user, ins, direction, offset, volume, price):
    return ok(srv, "POST", "/api/order/submit",
              {"user_id": user, "instrument_id": ins, "direction": direction, "offset": offset,
               "volume": volume, "price": price, "order_type": "LIMIT"})
