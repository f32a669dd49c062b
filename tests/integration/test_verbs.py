"""docker's verbs torpor lacked: pause/unpause, kill, wait, logs --tail, -f ending at stop,
--since and -t, rm --all, against real QEMU guests through the CLI."""
import calendar
import datetime
import os
import pty
import select
import subprocess
import time

import harness
from harness import guest


def popen_cli(d, *args):
    env = dict(os.environ, TORPOR_SOCKET=d.socket)
    return subprocess.Popen([harness.TORPOR, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def uptime(d, name):
    return float(guest(d, name, "cut -d' ' -f1 /proc/uptime"))


class Verbs(harness.DaemonTest):
    def state(self, name):
        st, inst = self.d.request("GET", f"/v1/instances/{name}")
        self.assertEqual(st, 200, inst)
        return inst

    def test_pause_unpause(self):
        d = self.d
        d.cli("run", "--name", "pz")
        u1 = uptime(d, "pz")
        h1 = time.monotonic()
        self.assertEqual(d.cli("pause", "pz").stdout, b"pz\n")
        paused_at = time.monotonic()
        self.assertEqual(self.state("pz")["state"], "Paused")
        p = d.cli("pause", "pz", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"is already paused", p.stderr)
        # exec into a Paused instance: 409, naming unpause.
        p = d.cli("exec", "pz", "true", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"unpause", p.stderr)
        st, body = d.request("POST", "/v1/instances/pz/exec", {"cmd": ["true"]})
        self.assertEqual(st, 409, body)
        self.assertIn("unpause", body["message"])
        # A measurement window, not synchronisation: the guest's clock must not move in it.
        time.sleep(3)
        self.assertEqual(d.cli("unpause", "pz").stdout, b"pz\n")
        frozen = time.monotonic() - paused_at
        self.assertEqual(self.state("pz")["state"], "Running")
        u2 = uptime(d, "pz")
        h2 = time.monotonic()
        self.assertLess(u2 - u1, (h2 - h1) - frozen * 0.7,
                        f"guest uptime advanced {u2 - u1:.2f}s of {h2 - h1:.2f}s, "
                        f"{frozen:.2f}s of them paused")
        p = d.cli("unpause", "pz", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"is not paused", p.stderr)
        self.assertEqual(guest(d, "pz", "echo ok"), "ok\n")
        # stop and rm -f of a Paused instance work.
        d.cli("pause", "pz")
        d.cli("stop", "pz")
        inst = self.state("pz")
        self.assertEqual((inst["state"], inst["exit_code"]), ("Stopped", 0))
        p = d.cli("pause", "pz", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"not running", p.stderr)
        d.cli("start", "pz")
        d.cli("pause", "pz")
        d.cli("rm", "-f", "pz")
        self.assertEqual(d.request("GET", "/v1/instances/pz")[0], 404)

    def test_kill_and_wait(self):
        d = self.d
        d.cli("run", "--name", "kl")
        p = d.cli("kill", "-s", "FOO", "kl", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"invalid signal", p.stderr)
        for sig in ("HUP", "SIGUSR1", "2"):
            p = d.cli("kill", "--signal", sig, "kl", check=False)
            self.assertEqual(p.returncode, 1, sig)
            self.assertIn(b"no single main process", p.stderr)
        self.assertEqual(self.state("kl")["state"], "Running")
        # wait blocks until the instance stops, then prints docker's exit code.
        w = popen_cli(d, "wait", "kl")
        self.assertEqual(d.cli("kill", "kl").stdout, b"kl\n")
        out, err = w.communicate(timeout=120)
        self.assertEqual((w.returncode, out), (0, b"137\n"), err)
        inst = self.state("kl")
        self.assertEqual((inst["state"], inst["exit_code"], inst["last_operation"]["op"]),
                         ("Stopped", 137, "kill"))
        p = d.cli("kill", "kl", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"is not running", p.stderr)
        # wait on a Stopped instance answers at once.
        self.assertEqual(d.cli("wait", "kl").stdout, b"137\n")
        # TERM: the graceful stop.
        d.cli("start", "kl")
        w = popen_cli(d, "wait", "kl")
        self.assertEqual(d.cli("kill", "-s", "sigterm", "kl").stdout, b"kl\n")
        out, err = w.communicate(timeout=120)
        self.assertEqual((w.returncode, out), (0, b"0\n"), err)
        self.assertEqual(self.state("kl")["last_operation"]["op"], "stop")
        # kill -s 9 of a Paused instance.
        d.cli("start", "kl")
        d.cli("pause", "kl")
        d.cli("kill", "-s", "9", "kl")
        self.assertEqual(self.state("kl")["exit_code"], 137)
        # wait ends when the instance is removed.
        d.cli("start", "kl")
        w = popen_cli(d, "wait", "kl")
        d.cli("rm", "-f", "kl")
        out, err = w.communicate(timeout=120)
        self.assertEqual(w.returncode, 1, (out, err))
        self.assertIn(b"removed", err)
        p = d.cli("wait", "no-such", check=False)
        self.assertEqual(p.returncode, 1)

    def test_logs(self):
        d = self.d
        d.cli("run", "--name", "lg")
        guest(d, "lg", "for i in 1 2 3 4; do echo tailmark-$i > /dev/console; done")

        def lines(*args):
            out = d.cli("logs", *args, "lg").stdout.decode().replace("\r", "")
            return [ln for ln in out.split("\n") if ln]

        self.assertEqual(lines("--tail", "2"), ["tailmark-3", "tailmark-4"])
        self.assertEqual(lines("-n", "1"), ["tailmark-4"])
        self.assertEqual(lines("--tail", "0"), [])
        self.assertIn("tailmark-1", lines("--tail", "all"))
        self.assertGreater(len(lines()), 4)
        p = d.cli("logs", "--tail", "x", "lg", check=False)
        self.assertEqual(p.returncode, 2)
        st, _ = d.request("GET", "/v1/instances/lg/logs?tail=-1")
        self.assertEqual(st, 400)
        # -f (with --tail) ends when the instance stops.
        f = popen_cli(d, "logs", "-f", "--tail", "1", "lg")
        d.cli("stop", "lg")
        out, err = f.communicate(timeout=60)
        self.assertEqual(f.returncode, 0, err)
        self.assertTrue(out.replace(b"\r", b"").startswith(b"tailmark-4\n"), out[:200])
        # ... and at once for a Stopped one; and when it is removed.
        f = popen_cli(d, "logs", "-f", "lg")
        f.communicate(timeout=60)
        self.assertEqual(f.returncode, 0)
        d.cli("start", "lg")
        f = popen_cli(d, "logs", "-f", "lg")
        d.cli("rm", "-f", "lg")
        f.communicate(timeout=60)
        self.assertEqual(f.returncode, 0)


def rfc3339_ns(ts):
    """'2026-12-01T11:40:00.123456789Z' -> ns since the epoch."""
    secs, frac = ts.rstrip("Z").split(".")
    dt = datetime.datetime.strptime(secs, "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(dt.timetuple()) * 10**9 + int(frac)


class LogsTimes(harness.DaemonTest):
    """logs -t and --since: a line's time is when torpord saw it arrive, also across a restart."""

    def stamped(self, *args):
        """{marker: ns} from `logs -t ARGS lt`, for the stampmark lines."""
        out = self.d.cli("logs", "-t", *args, "lt").stdout.decode().replace("\r", "")
        got = {}
        for ln in out.split("\n"):
            if not ln:
                continue
            ts, _, text = ln.partition(" ")
            self.assertRegex(ts, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$", ln)
            if text.startswith("stampmark-"):
                got[text] = rfc3339_ns(ts)
        return got

    def test_timestamps_since(self):
        d = self.d
        d.cli("run", "--name", "lt")
        # A follower prints each line as it arrives: the marker's time lies between the moment
        # before the exec that writes it and the moment the follower shows it.
        f = popen_cli(d, "logs", "-f", "-t", "--tail", "0", "lt")
        buf = b""

        def mark(name):
            nonlocal buf
            t0 = time.time_ns()
            guest(d, "lt", f"echo stampmark-{name} > /dev/console")
            want = f"stampmark-{name}".encode()
            deadline = time.monotonic() + 60
            while want not in buf:
                ready, _, _ = select.select([f.stdout], [], [], deadline - time.monotonic())
                self.assertTrue(ready, f"logs -f never showed {want}: {buf[-500:]!r}")
                chunk = os.read(f.stdout.fileno(), 65536)
                self.assertTrue(chunk, "logs -f ended")
                buf += chunk
            return t0, time.time_ns()

        win_a = mark("A")
        time.sleep(0.2)  # measurement: A and B at two moments apart
        win_b = mark("B")
        f.kill()
        f.wait()
        f.stdout.close()
        f.stderr.close()
        followed = {}
        for ln in buf.decode().replace("\r", "").split("\n"):
            ts, _, text = ln.partition(" ")
            if text.startswith("stampmark-"):
                followed[text] = rfc3339_ns(ts)
        self.assertEqual(sorted(followed), ["stampmark-A", "stampmark-B"], buf)
        for name, (t0, t1) in (("A", win_a), ("B", win_b)):
            ts = followed[f"stampmark-{name}"]
            self.assertTrue(t0 <= ts <= t1, f"{name}: {ts} outside [{t0}, {t1}]")
        # Read again later: the same times (they come from the index, not from the reading).
        self.assertEqual(self.stamped(), followed)

        # --since between the two: only B. As RFC 3339, as unix seconds, and with --tail.
        mid = win_a[1] + 1
        mid_rfc = (datetime.datetime.fromtimestamp(mid // 10**9, datetime.timezone.utc)
                   .strftime("%Y-%m-%dT%H:%M:%S") + f".{mid % 10**9:09d}Z")
        mid_unix = f"{mid // 10**9}.{mid % 10**9:09d}"
        for since in (mid_rfc, mid_unix):
            self.assertEqual(list(self.stamped("--since", since)), ["stampmark-B"], since)
            out = d.cli("logs", "--since", since, "lt").stdout.decode().replace("\r", "")
            self.assertEqual(out, "stampmark-B\n")
        self.assertEqual(d.cli("logs", "--since", mid_rfc, "--tail", "1", "lt").stdout
                         .replace(b"\r", b""), b"stampmark-B\n")
        self.assertEqual(d.cli("logs", "--since", mid_rfc, "--tail", "0", "lt").stdout, b"")
        # --tail 2 counts lines after --since: B only, not A and B.
        self.assertEqual(list(self.stamped("--since", mid_unix, "--tail", "2")), ["stampmark-B"])
        self.assertEqual(sorted(self.stamped("--since", "1h")), ["stampmark-A", "stampmark-B"])
        self.assertEqual(self.stamped("--since", "2099-01-01T00:00:00Z"), {})

        # Bad values: the CLI names the option, the API the parameter.
        p = d.cli("logs", "--since", "yesterday", "lt", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"invalid value for --since", p.stderr)
        st, body = d.request("GET", "/v1/instances/lt/logs?since=yesterday")
        self.assertEqual(st, 400, body)
        self.assertIn("'since'", body["message"])
        st, body = d.request("GET", "/v1/instances/lt/logs?timestamps=maybe")
        self.assertEqual(st, 400, body)
        self.assertIn("'timestamps'", body["message"])

        # Across a restart: what arrived while torpord was down gets the time the new one first
        # saw it; the lines before keep theirs.
        log = os.path.join(d.inst_dir("lt"), "logs", "console.log")
        d.cli("exec", "-d", "lt", "sh", "-c", "sleep 2; echo stampmark-C > /dev/console")
        d.stop()
        down_at = time.time_ns()
        def console():
            with open(log, "rb") as fh:
                return fh.read()

        deadline = time.monotonic() + 60
        while b"stampmark-C" not in console():
            self.assertLess(time.monotonic(), deadline, "the guest never wrote stampmark-C")
            time.sleep(0.05)  # polling a file the guest writes, with no daemon to ask
        start_at = time.time_ns()
        d.start()
        got = self.stamped()
        read_at = time.time_ns()
        self.assertEqual({k: got[k] for k in followed}, followed)
        self.assertTrue(start_at <= got["stampmark-C"] <= read_at,
                        f"C: {got['stampmark-C']} outside [{start_at}, {read_at}]")
        self.assertGreater(start_at, down_at)
        d.cli("rm", "-f", "lt")


class RmAll(harness.DaemonTest):
    def names(self):
        st, out = self.d.request("GET", "/v1/instances?all=true")
        return sorted(i["name"] for i in out["instances"])

    def rm_all_tty(self, answer):
        """rm --all on a pseudo-terminal, answering the prompt."""
        env = dict(os.environ, TORPOR_SOCKET=self.d.socket)
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(harness.TORPOR, [harness.TORPOR, "rm", "--all"], env)
        out = b""
        while b"[y/N]" not in out:
            out += os.read(fd, 4096)
        os.write(fd, answer + b"\n")
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode(errors="replace")

    def test_rm_all(self):
        d = self.d
        d.cli("run", "--name", "up")
        d.cli("run", "--name", "down")
        d.cli("stop", "down")
        p = d.cli("rm", "--all", check=False)  # no terminal, no --force
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"--force", p.stderr)
        p = d.cli("rm", "-a", "up", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(self.names(), ["down", "up"])
        rc, out = self.rm_all_tty(b"n")
        self.assertIn("WARNING! This will remove all 2 instances.\r\nAre you sure you want to "
                      "continue? [y/N]", out)
        self.assertEqual(rc, 0)
        self.assertEqual(self.names(), ["down", "up"])
        rc, out = self.rm_all_tty(b"y")
        self.assertEqual(rc, 1, out)  # the running one is an error without -f
        self.assertIn("down", out)
        self.assertIn("cannot remove instance 'up'", out)
        self.assertEqual(self.names(), ["up"])
        self.assertEqual(d.cli("rm", "--all", "--force").stdout, b"up\n")
        self.assertEqual(self.names(), [])
        self.assertEqual(d.cli("rm", "--all").stdout, b"")  # nothing to ask about


class WaitShutdown(harness.DaemonTest):
    def test_wait_ends_on_shutdown(self):
        d = self.d
        d.cli("run", "--name", "ws")
        w = popen_cli(d, "wait", "ws")
        d.stop()
        out, err = w.communicate(timeout=120)
        self.assertEqual(w.returncode, 1, (out, err))
        self.assertEqual(out, b"")


if __name__ == "__main__":
    harness.main()
