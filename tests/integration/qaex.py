"""Test harness: the real qaexchange-server on a free loopback port, and small stdlib clients.

Every wait has a timeout, every server started is stopped, every temp dir is removed.
"""
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest

SERVER = os.environ.get("QAEX_SERVER", "")


def write_token_config(directory, secret, admin_password=None):
    """An exchange.toml for token mode (tokens enforced, fast password hashing); its path."""
    path = os.path.join(directory, "auth.toml")
    with open(path, "w") as f:
        f.write('[server]\nenvironment = "development"\n'
                '[auth]\nopen_mode = false\npassword_cost = "fast"\n'
                + (f'admin_password = "{admin_password}"\n' if admin_password else "")
                + f'token_secret = "{secret}"\ntoken_ttl_secs = 600\n')
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Starts qaexchange-server; use as a context manager."""

    def __init__(self, *args, data_dir=None, storage=False, env=None, config=None):
        if not SERVER or not os.path.exists(SERVER):
            raise RuntimeError("set QAEX_SERVER to the qaexchange-server binary")
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="qaex-it-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        cmd = [SERVER] + (["--config", config] if config else ["--no-config"])
        cmd += ["--http", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
        if not storage:
            cmd.append("--no-storage")
        cmd += list(args)
        self.log_path = os.path.join(self.tmp, "server.log")
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        try:
            self.wait_ready()
        except Exception:
            self.close()
            raise

    def wait_ready(self, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                status, body = self.get("/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready: " + self.output())

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def close(self):
        self.stop()
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- HTTP ----
    def request(self, method, path, body=None, raw=None, headers=None, timeout=10.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            h = {"Content-Type": "application/json"}
            h.update(headers or {})
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            text = resp.read().decode()
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def ws(self, path="/ws", timeout=10.0):
        return WebSocket(self.port, path, timeout)


class WebSocket:
    """A minimal RFC 6455 client: text frames, masking, ping/pong, close."""

    def __init__(self, port, path, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError("handshake refused: " + head.decode(errors="replace"))

    def send(self, obj):
        self.send_text(json.dumps(obj))

    def send_text(self, text, opcode=1):
        payload = text.encode() if isinstance(text, str) else text
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._read(2)
        opcode = b0 & 0x0F
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return opcode, self._read(n)

    def recv(self, timeout=10.0):
        """The next JSON text message (answers pings on the way)."""
        self.sock.settimeout(timeout)
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 9:
                self.send_text(payload, opcode=10)
                continue
            if opcode == 8:
                raise ConnectionError("server closed the WebSocket")
            if opcode == 1:
                return json.loads(payload.decode())

    def recv_until(self, pred, timeout=10.0):
        """Messages until one satisfies pred; returns (match, everything seen before it)."""
        deadline = time.time() + timeout
        seen = []
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"no matching message; saw {seen}")
            m = self.recv(timeout=left)
            if pred(m):
                return m, seen
            seen.append(m)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class ServerTest(unittest.TestCase):
    """One server with embedded defaults for the whole class, as self.srv / cls.srv."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()
