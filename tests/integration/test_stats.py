"""torpor stats and GET /v1/instances/{ref}/stats against a real QEMU guest: the sample's
fields, docker's table, --format, streaming until Ctrl-C (on a pipe and on a terminal), and
instances whose VMM does not run."""
import json
import os
import pty
import re
import signal
import subprocess

import harness

MIB = 1 << 20


def popen_cli(d, *args, **kw):
    env = dict(os.environ, TORPOR_SOCKET=d.socket)
    return subprocess.Popen([harness.TORPOR, *args], env=env, **kw)


class Stats(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d.cli("run", "--name", "st", "--memory", "256M")

    def test_api_sample(self):
        st, s = self.d.request("GET", "/v1/instances/st/stats")
        self.assertEqual(st, 200, s)
        self.assertEqual(set(s), {"id", "name", "state", "pid", "cpu_ns", "threads", "rss_bytes",
                                  "pss_bytes", "memory_bytes", "console_bytes", "timestamp_ms",
                                  "guest_memory_total_bytes", "guest_memory_used_bytes"})
        self.assertEqual((s["name"], s["state"]), ("st", "Running"))
        self.assertEqual(s["pid"], harness.vmm_pid(self.d, "st"))
        self.assertEqual(s["memory_bytes"], 256 * MIB)
        self.assertGreater(s["cpu_ns"], 0)
        self.assertGreater(s["threads"], 1)
        self.assertGreater(s["pss_bytes"], 0)
        self.assertGreaterEqual(s["rss_bytes"], s["pss_bytes"])
        self.assertGreater(s["console_bytes"], 0)
        # The VMM's own view of itself agrees (RSS moves a little between the two reads).
        with open(f"/proc/{s['pid']}/status") as f:
            rss_kb = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
        self.assertLess(abs(rss_kb * 1024 - s["rss_bytes"]), 64 * MIB)
        st2, s2 = self.d.request("GET", "/v1/instances/st/stats")
        self.assertGreaterEqual(s2["cpu_ns"], s["cpu_ns"])
        self.assertGreaterEqual(s2["timestamp_ms"], s["timestamp_ms"])
        # The guest's own view: in use below its total, the total a little below the 256 MiB
        # configured (the kernel keeps some), and it grows when the guest takes memory.
        total, used = s2["guest_memory_total_bytes"], s2["guest_memory_used_bytes"]
        self.assertLess(used, total)
        self.assertGreater(total, 128 * MIB)
        self.assertLessEqual(total, 256 * MIB)
        self.d.cli("exec", "st", "sh", "-c", "head -c 40000000 /dev/zero > /dev/shm/fill")
        _, s3 = self.d.request("GET", "/v1/instances/st/stats")
        self.d.cli("exec", "st", "rm", "-f", "/dev/shm/fill")
        self.assertGreater(s3["guest_memory_used_bytes"], used + 30 * MIB)

    def test_table_no_stream(self):
        p = self.d.cli("stats", "--no-stream")
        lines = p.stdout.decode().splitlines()
        self.assertEqual(re.split(r"\s{3,}", lines[0]),
                         ["ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                          "GUEST MEM USED / TOTAL", "PIDS"])
        rows = [re.split(r"\s{3,}", l) for l in lines[1:]]
        row = [r for r in rows if r[1] == "st"]
        self.assertEqual(len(row), 1, lines)
        _, inst = self.d.request("GET", "/v1/instances/st")
        row = row[0]
        self.assertEqual(row[0], inst["id"][:12])
        self.assertRegex(row[2], r"^\d+\.\d\d%$")
        self.assertRegex(row[3], r"^[\d.]+(KiB|MiB|GiB) / 256MiB$")
        self.assertRegex(row[4], r"^\d+\.\d\d%$")
        self.assertRegex(row[5], r"^[\d.]+(KiB|MiB|GiB) / [\d.]+MiB$")
        self.assertRegex(row[6], r"^\d+$")
        p = self.d.cli("stats", "--no-stream", "--no-trunc", "st")
        self.assertIn(inst["id"], p.stdout.decode())

    def test_formats(self):
        p = self.d.cli("stats", "--no-stream", "--format", "json", "st")
        row = json.loads(p.stdout)
        self.assertEqual(set(row),
                         {"ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "GuestMem", "PIDs"})
        self.assertEqual(row["Name"], "st")
        p = self.d.cli("stats", "--no-stream", "--format", "{{.Name}}:{{.MemUsage}}", "st")
        self.assertRegex(p.stdout.decode(), r"^st:[\d.]+\w+ / 256MiB\n$")
        p = self.d.cli("stats", "--no-stream", "--format", "{{.Nope}}", "st", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no field", p.stderr)

    def test_busy_guest_shows_cpu(self):
        d = self.d
        d.cli("exec", "-d", "st", "sh", "-c", "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done")
        try:
            p = d.cli("stats", "--no-stream", "--format", "{{.CPUPerc}}", "st")
            # One vCPU spinning under TCG: most of a host CPU, shared with other tests' guests.
            self.assertGreater(float(p.stdout.decode().strip().rstrip("%")), 10.0, p.stdout)
        finally:
            harness.guest(d, "st", "pkill -f 'while \\[' || true")

    def test_stream_until_ctrl_c_on_a_pipe(self):
        p = popen_cli(self.d, "stats", "st", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            heads = 0
            while heads < 2:  # two blocks: it refreshes
                line = p.stdout.readline()
                if not line:
                    self.fail(f"stats ended: {p.stderr.read()!r}")
                self.assertNotIn(b"\033[", line)  # no screen control on a pipe
                heads += line.startswith(b"ID ")
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(timeout=30), 0)
        finally:
            p.kill()
            p.wait()

    def test_stream_on_a_terminal_redraws(self):
        master, slave = pty.openpty()
        p = popen_cli(self.d, "stats", "st", stdout=slave, stderr=slave)
        os.close(slave)
        try:
            out = b""
            while out.count(b"\033[2J\033[H") < 2:
                chunk = os.read(master, 4096)
                self.assertTrue(chunk, out)
                out += chunk
            self.assertIn(b"MEM USAGE / LIMIT", out)
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(timeout=30), 0)
        finally:
            os.close(master)
            p.kill()
            p.wait()

    def test_not_running(self):
        d = self.d
        d.cli("run", "--name", "st-off")
        d.cli("stop", "st-off")
        st, body = d.request("GET", "/v1/instances/st-off/stats")
        self.assertEqual(st, 409, body)
        self.assertEqual(body["code"], "conflict")
        self.assertIn("is Stopped", body["message"])
        # Named: a row of zeros, as docker shows a stopped container.
        p = d.cli("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}}",
                  "st-off")
        self.assertEqual(p.stdout, b"st-off 0.00% 0B / 0B\n")
        # Not named: left out, unless --all.
        p = d.cli("stats", "--no-stream", "--format", "{{.Name}}")
        self.assertNotIn(b"st-off", p.stdout)
        self.assertIn(b"st\n", p.stdout)
        p = d.cli("stats", "--no-stream", "-a", "--format", "{{.Name}}")
        self.assertIn(b"st-off\n", p.stdout)
        p = d.cli("stats", "--no-stream", "st", "nosuch", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"nosuch", p.stderr)
        self.assertEqual(d.request("GET", "/v1/instances/nosuch/stats")[0], 404)
        d.cli("rm", "st-off")


if __name__ == "__main__":
    harness.main()
