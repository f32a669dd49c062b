"""Integration harness: a real torpord on a temp data dir, the real CLI, real QEMU guests.

Nothing here sleeps to synchronise: the daemon signals readiness on a pipe (--ready-fd), the
API blocks until guests are ready, and state changes are awaited with the API's bounded wait.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

BUILD = os.environ.get("TORPOR_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
TORPORD = os.environ.get("TORPORD", os.path.join(BUILD, "src/daemon/torpord"))
TORPOR = os.environ.get("TORPOR", os.path.join(BUILD, "src/cli/torpor"))
CACHE = os.environ.get("TORPOR_CACHE_DIR", "/var/cache/torpor")
READY_TIMEOUT = 120


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=300):
        super().__init__("torpor", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Daemon:
    """A torpord process on its own data dir (short path: socket paths are limited)."""

    def __init__(self, data_dir=None, netns=None, warm=False):
        self.tmp = tempfile.mkdtemp(prefix="tp-", dir="/tmp")
        # torpord (and so its VMMs) in a network namespace the test owns: `ip netns exec` execs
        # it, so self.proc is torpord itself.
        self.prefix = ["ip", "netns", "exec", netns] if netns else []
        self.data_dir = data_dir or os.path.join(self.tmp, "d")
        self.socket = os.path.join(self.tmp, "s.sock")
        self.log_path = os.path.join(self.tmp, "torpord.log")
        self.proc = None
        # Warm runs (a run forks from a template its first boot left) are test_warm.py's
        # subject; elsewhere every run boots, as the tests about booting expect.
        self.warm = warm

    def start(self, extra=(), env=None):
        r, w = os.pipe()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(env=dict(os.environ, **(env or {})), args=
            [*self.prefix, TORPORD, "--data-dir", self.data_dir, "--socket", self.socket,
             "--cache-dir", CACHE, "--ready-fd", str(w), "--log-level", "debug",
             *([] if self.warm else ["--no-warm-runs"]), *extra],
            stdout=self.log, stderr=self.log, pass_fds=(w,))
        os.close(w)
        with os.fdopen(r, "rb") as f:
            line = f.readline()  # EOF if the daemon dies first
        if line != b"READY\n":
            self.proc.wait(timeout=30)
            self.log.close()
            raise RuntimeError("torpord did not start:\n" + self.read_log())
        return self

    def read_log_all(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-6000:]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self):
        """SIGTERM the daemon; it must exit 0 with no sanitizer report in its log."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(timeout=60)
            self.log.close()
            log = self.read_log()
            if rc != 0 or "Sanitizer" in log or "runtime error:" in log:
                raise AssertionError(f"torpord exited {rc} or reported a sanitizer error:\n{log}")
        elif self.proc:
            self.log.close()

    def cleanup(self):
        """Stop the daemon and every VMM it started (they outlive it by design)."""
        try:
            self.stop()
        finally:
            self.kill_vmms()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def kill_vmms(self):
        pids = []
        inst = os.path.join(self.data_dir, "instances")
        if os.path.isdir(inst):
            # The VMMs' pids come from their /proc cmdline mentioning our data dir.
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        if self.data_dir.encode() in f.read():
                            pids.append(int(p))
                except OSError:
                    pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # --- API ---
    def request(self, method, path, body=None, raw=None, headers=None):
        c = UnixHTTPConnection(self.socket)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        resp = c.getresponse()
        payload = resp.read()
        c.close()
        ctype = resp.getheader("Content-Type", "")
        if "json" in ctype and payload:
            return resp.status, json.loads(payload)
        return resp.status, payload

    def cli(self, *args, check=True, timeout=300, input=None):
        env = dict(os.environ, TORPOR_SOCKET=self.socket)
        p = subprocess.run([TORPOR, *args], capture_output=True, env=env, timeout=timeout,
                           input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"torpor {' '.join(args)} -> {p.returncode}\n"
                                 f"stdout: {p.stdout!r}\nstderr: {p.stderr!r}\n"
                                 f"daemon log:\n{self.read_log()}")
        return p

    def op(self, ref, verb):
        """POST a lifecycle verb; returns (status, body) like request()."""
        return self.request("POST", f"/v1/instances/{ref}/{verb}")

    def counters(self, ref):
        _, inst = self.request("GET", f"/v1/instances/{ref}")
        return inst["last_operation"]["counters"]

    def inst_dir(self, ref):
        _, inst = self.request("GET", f"/v1/instances/{ref}")
        return os.path.join(self.data_dir, "instances", inst["id"])

    def wait_state(self, ref, state, timeout_ms=30000):
        return self.request("POST", f"/v1/instances/{ref}/wait",
                            {"state": state, "timeout_ms": timeout_ms})


# A counter that ticks inside the guest, detached so exec returns at once; prints its pid.
COUNTER = ("setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done'"
           " </dev/null >/dev/null 2>&1 & echo $!")


def guest(d, name, script):
    """Run a shell script in the guest; its stdout as text (fails the test on non-zero exit)."""
    return d.cli("exec", name, "sh", "-c", script).stdout.decode()


def vmm_pid(daemon, ref):
    st, inst = daemon.request("GET", f"/v1/instances/{ref}")
    assert st == 200, inst
    return inst["pid"]


class DaemonTest(unittest.TestCase):
    """One daemon per test class; tests in a class may share a VM to save boot time."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon().start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()


class FailpointTest(DaemonTest):
    """A daemon whose failpoints a test arms and disarms through a file (see util/failpoint.h)."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        cls.fp = os.path.join(cls.d.tmp, "failpoints")
        open(cls.fp, "w").close()
        cls.d.start(env={"TORPOR_FAILPOINTS_FILE": cls.fp})

    def arm(self, spec=""):
        with open(self.fp, "w") as f:
            f.write(spec)

    def tearDown(self):
        self.arm("")


def main():
    unittest.main(verbosity=2)
