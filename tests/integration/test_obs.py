"""What operators watch, against real QEMU guests: GET /metrics before and after a
standby/restore cycle (counters move by exactly the operations done; promtool accepts the
scrape), GET /v1/events across run -> standby -> restore -> rm, and a stalled events reader that
must not slow a standby down."""
import json
import re
import shutil
import socket
import subprocess
import time

import harness

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


def scrape(d):
    c = harness.UnixHTTPConnection(d.socket)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read().decode()
    ctype = r.getheader("Content-Type")
    c.close()
    assert r.status == 200, body
    assert ctype == "text/plain; version=0.0.4", ctype
    return body


def samples(text):
    """{'name{labels}': value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def delta(before, after, key):
    return after.get(key, 0.0) - before.get(key, 0.0)


class EventStream:
    """GET /v1/events on a raw socket; read=False leaves it unread (a stalled client)."""

    def __init__(self, d, query="", rcvbuf=None):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.connect(d.socket)
        self.s.sendall(f"GET /v1/events{query} HTTP/1.1\r\nHost: torpor\r\n\r\n".encode())
        self.f = self.s.makefile("rb")

    def headers(self):
        status = self.f.readline()
        assert b" 200 " in status, status
        while self.f.readline() not in (b"\r\n", b""):
            pass

    def next(self):
        """The next event (chunked transfer: a size line, then data)."""
        while True:
            size = int(self.f.readline().strip(), 16)
            if size == 0:
                return None
            data = self.f.read(size)
            self.f.readline()
            for line in data.decode().splitlines():
                if line:
                    return json.loads(line)

    def close(self):
        self.f.close()
        self.s.close()


class Metrics(harness.DaemonTest):
    def test_standby_restore_counters(self):
        d = self.d
        d.cli("run", "--name", "m1")
        self.addCleanup(d.cli, "rm", "-f", "m1")
        before = samples(scrape(d))
        self.assertEqual(d.op("m1", "standby")[0], 200)
        self.assertEqual(d.op("m1", "restore")[0], 200)
        mid_text = scrape(d)
        after = samples(mid_text)
        written = d.request("GET", "/v1/instances/m1")[1]
        for op in ("standby", "restore"):
            key = f'torpor_operation_duration_seconds_count{{op="{op}",result="ok"}}'
            self.assertEqual(delta(before, after, key), 1, key)
            inf = f'torpor_operation_duration_seconds_bucket{{op="{op}",result="ok",le="+Inf"}}'
            self.assertEqual(delta(before, after, inf), 1, inf)
        self.assertGreater(delta(before, after,
                                 'torpor_operation_phase_seconds_count{op="standby",phase="create_snapshot"}'
                                 ), 0, mid_text)
        for frm, to in (("running", "paused"), ("paused", "standby"), ("standby", "running")):
            key = f'torpor_state_transitions_total{{from="{frm}",to="{to}"}}'
            self.assertGreaterEqual(delta(before, after, key), 1, key)
        self.assertEqual(delta(before, after,
                               'torpor_api_requests_total{route="standby",status="200"}'), 1)
        self.assertEqual(delta(before, after,
                               'torpor_api_requests_total{route="restore",status="200"}'), 1)
        self.assertGreater(delta(before, after, "torpor_standby_written_bytes_total"), 0)
        self.assertEqual(after['torpor_instances{hypervisor="qemu",state="running"}'], 1)
        self.assertEqual(after['torpor_instances{hypervisor="qemu",state="standby"}'], 0)
        self.assertGreater(after['torpor_vmm_pss_bytes{instance="m1"}'], 0)
        self.assertGreaterEqual(after['torpor_vmm_rss_bytes{instance="m1"}'],
                                after['torpor_vmm_pss_bytes{instance="m1"}'])
        self.assertGreater(after['torpor_console_log_bytes{instance="m1"}'], 0)
        # The guest's own account: some tens of MiB in use, below its 256 MiB.
        self.assertGreater(after['torpor_guest_memory_used_bytes{instance="m1"}'], 4 << 20)
        self.assertLess(after['torpor_guest_memory_used_bytes{instance="m1"}'], 256 << 20)
        self.assertGreater(after["torpor_daemon_open_fds"], 0)
        self.assertGreater(after["torpor_daemon_cpu_seconds_total"], 0)
        del written

        # A fork of the Running source: one fork operation, one child more running.
        st, body = d.request("POST", "/v1/instances/m1/fork", {"name": "m1-child"})
        self.assertEqual(st, 201, body)
        self.addCleanup(d.cli, "rm", "-f", "m1-child")
        forked = samples(scrape(d))
        self.assertEqual(delta(after, forked,
                               'torpor_operation_duration_seconds_count{op="fork",result="ok"}'), 1)
        self.assertGreater(forked['torpor_vmm_pss_bytes{instance="m1-child"}'], 0)
        after = forked

        # A failure is counted by reason: standby of a standby instance is a conflict.
        self.assertEqual(d.op("m1", "standby")[0], 200)
        self.assertEqual(d.op("m1", "standby")[0], 409)
        again = samples(scrape(d))
        self.assertEqual(delta(after, again,
                               'torpor_api_requests_total{route="standby",status="409"}'), 1)


    def test_exec_counted(self):
        d = self.d
        d.cli("run", "--name", "mx")
        self.addCleanup(d.cli, "rm", "-f", "mx")
        before = samples(scrape(d))
        d.cli("exec", "mx", "true")                                  # attached session
        d.request("POST", "/v1/instances/mx/exec", {"cmd": ["true"]})  # plain stream
        d.cli("exec", "mx", "sh", "-c", "exit 3", check=False)       # an exit is an exec that ran
        d.cli("exec", "mx", "/no/such/cmd", check=False)             # did not start
        after = samples(scrape(d))
        ok = 'torpor_operation_duration_seconds_count{op="exec",result="ok"}'
        err = 'torpor_operation_duration_seconds_count{op="exec",result="error"}'
        self.assertEqual(delta(before, after, ok), 3)
        self.assertEqual(delta(before, after, err), 1)
        self.assertEqual(delta(before, after,
                               'torpor_operation_failures_total{op="exec",reason="ENOENT"}'), 1)

    def test_promtool_check(self):
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool not installed (Debian: prometheus)")
        d = self.d
        d.cli("run", "--name", "m2")
        self.addCleanup(d.cli, "rm", "-f", "m2")
        self.assertEqual(d.op("m2", "standby")[0], 200)
        self.assertEqual(d.op("m2", "restore")[0], 200)
        text = scrape(d)
        p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_metrics_listen_tcp(self):
        d = harness.Daemon()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        d.start(extra=("--metrics-listen", f"127.0.0.1:{port}"))
        try:
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/metrics")
            r = c.getresponse()
            body = r.read().decode()
            self.assertEqual(r.status, 200)
            self.assertIn("# TYPE torpor_instances gauge", body)
            c.request("GET", "/v1/instances")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 404)  # only /metrics on the network
        finally:
            d.cleanup()


class MetricsFailure(harness.FailpointTest):
    def test_failed_standby_counted(self):
        d = self.d
        d.cli("run", "--name", "f1")
        self.addCleanup(d.cli, "rm", "-f", "f1")
        before = samples(scrape(d))
        self.arm("standby.snapshot=error")
        self.assertNotEqual(d.op("f1", "standby")[0], 200)
        self.arm("")
        after = samples(scrape(d))
        key = 'torpor_operation_duration_seconds_count{op="standby",result="error"}'
        self.assertEqual(delta(before, after, key), 1)
        failures = {k: v for k, v in after.items()
                    if k.startswith('torpor_operation_failures_total{op="standby",reason="')}
        self.assertEqual(sum(failures.values()) - sum(
            before.get(k, 0) for k in failures), 1, failures)
        # Refused before it begins (wrong state): an API 409, not an operation failure.
        self.assertEqual(d.op("f1", "restore")[0], 409)
        again = samples(scrape(d))
        self.assertEqual(delta(after, again,
                               'torpor_api_requests_total{route="restore",status="409"}'), 1)
        self.assertEqual(delta(after, again,
                               'torpor_operation_duration_seconds_count{op="restore",'
                               'result="error"}'), 0)


class Events(harness.DaemonTest):
    def test_lifecycle_sequence(self):
        d = self.d
        t0 = time.time()
        ev = EventStream(d)
        ev.headers()
        d.cli("run", "--name", "e1")
        self.assertEqual(d.op("e1", "standby")[0], 200)
        self.assertEqual(d.op("e1", "restore")[0], 200)
        d.cli("rm", "-f", "e1")
        seen = []
        while True:
            e = ev.next()
            self.assertIsNotNone(e)
            self.assertEqual(e["name"], "e1")
            seen.append((e["type"], e["action"], e.get("status", "")))
            if e["type"] == "instance" and e["action"] == "rm" and e["status"] != "start":
                break
        ev.close()
        want = [("instance", "run", "start"), ("state", "running", ""), ("instance", "run", "ok"),
                ("instance", "standby", "start"), ("state", "paused", ""),
                ("state", "standby", ""), ("instance", "standby", "ok"),
                ("instance", "restore", "start")]
        self.assertEqual(seen[:len(want)], want, seen)
        self.assertIn(("state", "running", ""), seen[len(want):])
        self.assertIn(("instance", "restore", "ok"), seen[len(want):])
        self.assertEqual(seen[-1], ("instance", "rm", "ok"))

        # ?since= replays from the ring; the CLI prints docker's line.
        until = str(time.time())
        p = d.cli("events", "--since", str(int(t0)), "--until", until)
        lines = p.stdout.decode().splitlines()
        self.assertTrue(any(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z instance standby "
                                     r"[0-9a-f]+ \(.*name=e1.*\)$", ln) for ln in lines), lines)
        p = d.cli("events", "--since", str(int(t0)), "--until", until, "--format", "json",
                  "--filter", "action=restore")
        got = [json.loads(ln) for ln in p.stdout.decode().splitlines()]
        self.assertEqual([(g["action"], g["status"]) for g in got],
                         [("restore", "start"), ("restore", "ok")])
        self.assertIn("trace", got[1])

    def test_stalled_reader_does_not_delay_standby(self):
        d = self.d
        d.cli("run", "--name", "e2")
        # Baseline: one standby/restore with nobody listening.
        t = time.monotonic()
        self.assertEqual(d.op("e2", "standby")[0], 200)
        base = time.monotonic() - t
        self.assertEqual(d.op("e2", "restore")[0], 200)
        # A reader that never reads, with a tiny receive buffer, and a flood of events (restore
        # and standby cycles publish several each) beyond its queue's bound.
        stalled = EventStream(d, "?since=0", rcvbuf=1024)
        try:
            t = time.monotonic()
            self.assertEqual(d.op("e2", "standby")[0], 200)
            took = time.monotonic() - t
            # Its usual bound: the baseline, with room for a loaded 2-core CI host.
            self.assertLess(took, max(3 * base, base + 5), (base, took))
        finally:
            stalled.close()
        d.cli("rm", "-f", "e2")


if __name__ == "__main__":
    harness.main()
