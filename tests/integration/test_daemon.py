"""torpord's own options and process life: relative directories work, a bad --ready-fd is
refused up front, one daemon per socket, a graceful SIGTERM, and an API that stays available
under many streams and idle clients."""
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import harness


class DaemonOptions(unittest.TestCase):
    def test_relative_dirs(self):
        """VMMs run in their instance dir: relative --data-dir/--cache-dir must still work."""
        d = harness.Daemon(data_dir="d")
        cache = os.path.relpath(os.path.abspath(harness.CACHE), d.tmp)
        cwd = os.getcwd()
        os.chdir(d.tmp)  # torpord inherits it
        try:
            d.start(extra=("--cache-dir", cache))
        finally:
            os.chdir(cwd)
        # For cleanup: the VMMs' command lines name the absolute data dir.
        d.data_dir = os.path.join(d.tmp, "d")
        try:
            d.cli("run", "--name", "rel")
            out = d.cli("exec", "rel", "echo", "hello").stdout
            self.assertEqual(out, b"hello\n")
            st, inst = d.request("GET", "/v1/instances/rel")
            self.assertEqual(inst["state"], "Running")
            self.assertTrue(os.path.isdir(os.path.join(d.data_dir, "instances", inst["id"])))
            d.cli("rm", "-f", "rel")
        finally:
            d.cleanup()

    def test_bad_ready_fd(self):
        tmp = tempfile.mkdtemp(prefix="tp-", dir="/tmp")
        try:
            data = os.path.join(tmp, "d")
            for bad in ["abc", "3x", "-1", "", "4096"]:
                p = subprocess.run([harness.TORPORD, "--data-dir", data, "--socket",
                                    os.path.join(tmp, "s.sock"), "--ready-fd", bad],
                                   capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
                self.assertEqual(p.returncode, 2, (bad, p.stderr))
                self.assertIn(b"--ready-fd", p.stderr)
                self.assertFalse(os.path.exists(data), "a refused start changed the disk")
            for bad in ["--data-dir", "--cache-dir"]:
                p = subprocess.run([harness.TORPORD, bad, ""], capture_output=True, timeout=30)
                self.assertEqual(p.returncode, 2, (bad, p.stderr))
                self.assertIn(b"empty", p.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_ready_fd_is_stderr(self):
        """--ready-fd 2 writes READY on stderr and keeps it: later log lines still go there."""
        tmp = tempfile.mkdtemp(prefix="tp-", dir="/tmp")
        sock = os.path.join(tmp, "s.sock")
        proc = subprocess.Popen(
            [harness.TORPORD, "--data-dir", os.path.join(tmp, "d"), "--socket", sock,
             "--cache-dir", harness.CACHE, "--ready-fd", "2", "--log-level", "debug"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while True:
                line = proc.stderr.readline()  # EOF if the daemon dies first
                self.assertNotEqual(line, b"", "torpord exited before READY")
                if line == b"READY\n":
                    break
            for _ in range(3):
                c = harness.UnixHTTPConnection(sock, timeout=30)
                c.request("GET", "/v1/instances")
                resp = c.getresponse()
                body = resp.read()
                c.close()
                self.assertEqual(resp.status, 200, body)
                self.assertTrue(body.startswith(b"{"), body)
            proc.send_signal(signal.SIGTERM)
            _, rest = proc.communicate(timeout=60)
            self.assertEqual(proc.returncode, 0, rest)
            self.assertIn(b"shutting down", rest)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            shutil.rmtree(tmp, ignore_errors=True)


def run_torpord(data_dir, sock):
    """A torpord that should refuse to start: its exit status and stderr."""
    return subprocess.run([harness.TORPORD, "--data-dir", data_dir, "--socket", sock,
                           "--cache-dir", harness.CACHE], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def version(sock, timeout=30):
    c = harness.UnixHTTPConnection(sock, timeout=timeout)
    try:
        c.request("GET", "/v1/version")
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        c.close()


class OneDaemonPerSocket(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tp-", dir="/tmp")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def daemon(self, sock):
        d = harness.Daemon()
        d.socket = sock
        self.daemons.append(d)
        return d.start()

    def test_live_socket_refused(self):
        """A second daemon (another data dir) on a live daemon's socket must not take it over."""
        sock = os.path.join(self.tmp, "s.sock")
        first = self.daemon(sock)
        ino = os.stat(sock).st_ino
        p = run_torpord(os.path.join(self.tmp, "d2"), sock)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(f"another torpord is serving '{sock}'".encode(), p.stderr)
        self.assertEqual(os.stat(sock).st_ino, ino, "the refused daemon replaced the socket")
        self.assertEqual(version(sock)[0], 200)
        first.stop()
        self.assertFalse(os.path.exists(sock), "the daemon left its own socket behind")

    def test_foreign_server_refused(self):
        """Whatever answers on the path (no lock of ours) is not replaced either."""
        sock = os.path.join(self.tmp, "s.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            srv.bind(sock)
            srv.listen(1)
            p = run_torpord(os.path.join(self.tmp, "d"), sock)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(b"another torpord is serving", p.stderr)
            # Still the same listening socket: a client still gets through to it.
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(sock)
            c.close()
        finally:
            srv.close()

    def test_stale_socket_replaced(self):
        sock = os.path.join(self.tmp, "s.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(sock)
        dead.close()  # the file stays, nobody listens: what a killed daemon leaves
        self.daemon(sock)
        self.assertEqual(version(sock)[0], 200)

    def test_exit_leaves_a_successors_socket(self):
        """A daemon whose socket path was taken over since must not delete it on exit."""
        sock = os.path.join(self.tmp, "s.sock")
        first = self.daemon(sock)
        os.unlink(sock)
        os.unlink(sock + ".lock")
        second = self.daemon(sock)
        ino = os.stat(sock).st_ino
        first.stop()
        self.assertEqual(os.stat(sock).st_ino, ino, "the first daemon removed its successor's socket")
        self.assertEqual(version(sock)[0], 200)
        second.stop()
        self.assertFalse(os.path.exists(sock))


class PipedDaemon(harness.Daemon):
    """A daemon whose log comes through a pipe, so that a test can wait for a line of it."""

    def start(self, extra=(), env=None):
        self.lines = queue.Queue()
        self.seen = []
        self.proc = subprocess.Popen(
            [harness.TORPORD, "--data-dir", self.data_dir, "--socket", self.socket,
             "--cache-dir", harness.CACHE, "--ready-fd", "2", "--log-level", "debug",
             "--no-warm-runs", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_line("READY", harness.READY_TIMEOUT)
        return self

    def _pump(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.seen.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_line(self, needle, timeout, nth=1):
        """Wait until the log holds nth lines with needle (counting from its start)."""
        deadline = time.monotonic() + timeout
        while sum(needle in line for line in list(self.seen)) < nth:
            try:  # every new line is a wake-up
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no log line with {needle!r} in {timeout} s:\n"
                                     + self.read_log())
            if line is None:
                self.lines.put(None)
                if sum(needle in line for line in list(self.seen)) < nth:
                    raise AssertionError(f"torpord exited before logging {needle!r}:\n"
                                         + self.read_log())

    def read_log(self):
        return "\n".join(self.seen)[-6000:]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def exec_frames(payload):
    frames, off = [], 0
    while off + 8 <= len(payload):
        kind, n = payload[off], struct.unpack(">I", payload[off + 4:off + 8])[0]
        frames.append((kind, payload[off + 8:off + 8 + n]))
        off += 8 + n
    return frames


class GracefulShutdown(unittest.TestCase):
    def test_sigterm_lets_requests_finish(self):
        """SIGTERM while a run boots: its client gets the real 201, open streams end cleanly
        (exec with an error frame, logs -f with a complete response), and the daemon exits 0."""
        d = PipedDaemon()
        d.start()
        try:
            d.cli("run", "--name", "up")
            # Two streams, open before the signal: their 200 status lines have arrived.
            ex = harness.UnixHTTPConnection(d.socket, timeout=120)
            ex.request("POST", "/v1/instances/up/exec", body=json.dumps({"cmd": ["sleep", "600"]}),
                       headers={"Content-Type": "application/json"})
            ex_resp = ex.getresponse()
            self.assertEqual(ex_resp.status, 200)
            lg = harness.UnixHTTPConnection(d.socket, timeout=120)
            lg.request("GET", "/v1/instances/up/logs?follow=true")
            lg_resp = lg.getresponse()
            self.assertEqual(lg_resp.status, 200)

            result = {}

            def run():
                c = harness.UnixHTTPConnection(d.socket, timeout=300)
                try:
                    c.request("POST", "/v1/instances", body=json.dumps({"name": "late"}),
                              headers={"Content-Type": "application/json"})
                    resp = c.getresponse()
                    result["reply"] = (resp.status, resp.read())
                except Exception as e:  # an empty reply is what this test is about
                    result["error"] = e
                finally:
                    c.close()

            t = threading.Thread(target=run)
            t.start()
            # The boot is under way once its VMM runs (the second VMM: "up" was the first).
            d.wait_line("launched QEMU", 120, nth=2)
            d.proc.send_signal(signal.SIGTERM)

            t.join(timeout=300)
            self.assertFalse(t.is_alive())
            self.assertNotIn("error", result, d.read_log())
            status, body = result["reply"]
            self.assertEqual(status, 201, body)
            inst = json.loads(body)
            self.assertEqual((inst["name"], inst["state"]), ("late", "Running"))

            frames = exec_frames(ex_resp.read())  # a clean end, or http.client raises
            self.assertTrue(frames)
            kind, last = frames[-1]
            self.assertEqual(kind, 4, frames)
            self.assertEqual(json.loads(last)["code"], "unavailable")
            self.assertIn(b"shutting down", last)
            lg_resp.read()  # IncompleteRead if the chunked stream were cut
            ex.close()
            lg.close()

            self.assertEqual(d.proc.wait(timeout=120), 0, d.read_log())
            self.assertIn("shutting down", d.read_log())
            self.assertFalse(os.path.exists(d.socket))
        finally:
            d.cleanup()


def raw_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    return s


def read_head(s):
    """Read a response's status line and headers off a raw socket: (status, rest)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
    return status, head, rest


STREAM_LIMIT = 64  # API_STREAM_LIMIT, documented in docs/api.md


class Availability(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d.cli("run", "--name", "busy")

    def test_streams_and_idle_clients_leave_room(self):
        """64 logs -f streams, 64 idle clients and 64 half-sent requests: a 65th stream is
        refused with 503, control requests still answer, idle clients are dropped."""
        socks = []
        try:
            for _ in range(STREAM_LIMIT):
                s = raw_connect(self.d.socket)
                socks.append(s)
                s.sendall(b"GET /v1/instances/busy/logs?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
                status, head, _ = read_head(s)
                self.assertEqual(status, 200, head)

            st, err = self.d.request("GET", "/v1/instances/busy/logs?follow=true")
            self.assertEqual(st, 503, err)
            self.assertEqual(err["code"], "unavailable")
            self.assertIn("streams", err["message"])

            idle = [raw_connect(self.d.socket) for _ in range(64)]
            half = [raw_connect(self.d.socket) for _ in range(64)]
            for s in half:
                s.sendall(b"GET /v1/vers")
            socks += idle + half

            # Control requests answer at all, within a bound (not a speed claim).
            c = harness.UnixHTTPConnection(self.d.socket, timeout=10)
            c.request("GET", "/v1/instances")
            resp = c.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertIn(b"busy", resp.read())
            c.close()
            st, _ = version(self.d.socket, timeout=10)
            self.assertEqual(st, 200)

            # Silent clients lose their connection (10 s), far sooner than the socket timeout.
            for s in idle + half:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"", "an idle client was answered instead of dropped")
        finally:
            for s in socks:
                s.close()


if __name__ == "__main__":
    harness.main()
