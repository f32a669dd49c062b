"""Attached exec against a real guest: stdin (-i), a PTY (-t), signals from the client, a client
that dies or stops reading, detached exec, users (-u), and sessions cut by the instance going
away, all through the real CLI."""
import fcntl
import hashlib
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time

import harness


def guest_has(d, name, pattern):
    """Whether a process whose command line contains pattern runs in the guest."""
    p = d.cli("exec", name, "sh", "-c", f"ps -o args | grep -v grep | grep -q -- '{pattern}'",
              check=False)
    return p.returncode == 0


def wait_until(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)  # polling the guest; each probe is itself an exec round trip
    raise AssertionError(f"timed out waiting for {what}")


def read_until(fd, needle, timeout=30.0):
    """Read fd until needle (bytes) shows up; everything read so far."""
    seen, deadline = b"", time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {needle!r}; got {seen[-400:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            raise AssertionError(f"EOF before {needle!r}; got {seen[-400:]!r}")
        seen += chunk
    return seen


class Attach(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon().start()
        cls.d.cli("run", "--name", "at")

    def popen(self, *args, **kw):
        env = dict(os.environ, TORPOR_SOCKET=self.d.socket, **kw.pop("env", {}))
        return subprocess.Popen([harness.TORPOR, *args], env=env, **kw)

    def test_stdin_binary_round_trip(self):
        data = os.urandom(3 * 1024 * 1024 + 17)
        p = self.d.cli("exec", "-i", "at", "cat", input=data)
        self.assertEqual(hashlib.sha256(p.stdout).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_stdin_eof_reaches_the_command(self):
        p = self.d.cli("exec", "-i", "at", "sh", "-c", "wc -c; echo end", input=b"abcde")
        self.assertEqual(p.stdout.split(), [b"5", b"end"])

    def test_without_i_stdin_is_not_attached(self):
        p = self.d.cli("exec", "at", "cat", input=b"must not arrive")
        self.assertEqual((p.returncode, p.stdout), (0, b""))

    def test_env_from_the_client(self):
        env = dict(os.environ, TORPOR_SOCKET=self.d.socket, FROM_CLIENT="v a l")
        p = subprocess.run([harness.TORPOR, "exec", "-e", "FROM_CLIENT", "-e", "UNSET_HERE_X",
                            "at", "sh", "-c", 'echo "$FROM_CLIENT|${UNSET_HERE_X-unset}"'],
                           env=env, capture_output=True, check=True)
        self.assertEqual(p.stdout, b"v a l|unset\n")

    def test_sigint_is_forwarded(self):
        """The command sees SIGINT itself (a hang-up would be SIGHUP) and exits its own way."""
        script = "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.1; done"
        p = self.popen("exec", "at", "sh", "-c", script, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        try:
            read_until(p.stdout.fileno(), b"ready\n")
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
        self.assertEqual(p.returncode, 7, err)
        self.assertIn(b"got-int", out)

    def test_unread_stdin_holds_up_nothing_else(self):
        """A command that never reads stdin fills its window; other execs, signals and stop
        still go through (the connection to the guest is not blocked)."""
        self.d.cli("run", "--name", "stall")
        feeder = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
        p = self.popen("exec", "-i", "stall", "sh", "-c", "echo ready; exec sleep 999",
                       stdin=feeder.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            read_until(p.stdout.fileno(), b"ready\n")
            t0 = time.monotonic()
            self.assertEqual(self.d.cli("exec", "stall", "echo", "through", timeout=30).stdout,
                             b"through\n")
            self.assertLess(time.monotonic() - t0, 30)
            p.send_signal(signal.SIGINT)  # reaches sleep past the queued stdin
            self.assertEqual(p.wait(timeout=30), 130)
        finally:
            p.kill()
            p.wait()
            feeder.kill()
            feeder.wait()
        self.d.cli("stop", "stall", timeout=60)

    def test_client_killed_leaves_no_process(self):
        p = self.popen("exec", "at", "sleep", "4242", stdout=subprocess.DEVNULL)
        try:
            wait_until(lambda: guest_has(self.d, "at", "sleep 4242"), what="sleep to start")
        finally:
            p.kill()
            p.wait()
        wait_until(lambda: not guest_has(self.d, "at", "sleep 4242"), what="sleep to be gone")

    def test_closed_stdout_stops_the_command(self):
        t0 = time.monotonic()
        p = subprocess.run(f"'{harness.TORPOR}' exec at yes | head -n 1; "
                           "echo \"rc=${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash",
                           env=dict(os.environ, TORPOR_SOCKET=self.d.socket),
                           capture_output=True, timeout=60)
        self.assertEqual(p.stdout, b"y\nrc=141\n", p.stderr)
        self.assertLess(time.monotonic() - t0, 60)
        wait_until(lambda: not guest_has(self.d, "at", "yes"), what="yes to be gone")

    def test_detach(self):
        p = self.d.cli("exec", "-d", "at", "sleep", "4343")
        self.assertEqual(p.stdout, b"")
        self.assertTrue(guest_has(self.d, "at", "sleep 4343"))
        self.d.cli("exec", "at", "pkill", "-f", "sleep 4343", check=False)

    def test_detach_spawn_failures_keep_their_codes(self):
        p = self.d.cli("exec", "-d", "at", "/no/such/cmd", check=False)
        self.assertEqual(p.returncode, 127, p.stderr)
        p = self.d.cli("exec", "-d", "-u", "no-such-user", "at", "true", check=False)
        self.assertEqual(p.returncode, 126, p.stderr)
        p = self.d.cli("exec", "-d", "no-such-instance", "true", check=False)
        self.assertEqual(p.returncode, 125, p.stderr)

    def test_detach_excludes_interactive(self):
        p = self.d.cli("exec", "-d", "-i", "at", "true", check=False)
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"--detach", p.stderr)

    def test_user(self):
        p = self.d.cli("exec", "-u", "65534:65534", "at", "sh", "-c", "id -u; id -g")
        self.assertEqual(p.stdout, b"65534\n65534\n")
        p = self.d.cli("exec", "--user", "no-such-user", "at", "true", check=False)
        self.assertEqual(p.returncode, 126, p.stderr)
        self.assertIn(b"no-such-user", p.stderr)

    def test_tty_requires_a_terminal_for_stdin(self):
        p = self.d.cli("exec", "-it", "at", "sh", input=b"exit\n", check=False)
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"not a TTY", p.stderr)

    def test_interactive_shell_on_a_pty(self):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        before = termios.tcgetattr(slave)

        def make_ctty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        p = self.popen("exec", "-it", "at", "sh", stdin=slave, stdout=slave, stderr=slave,
                       start_new_session=True, preexec_fn=make_ctty,
                       env={"TERM": "xterm-256color"})
        try:
            os.write(master, b"stty size; tty; echo T=$TERM\r")
            out = read_until(master, b"T=xterm-256color")
            self.assertIn(b"30 100", out)
            self.assertIn(b"/dev/pts/", out)
            # The client's terminal is raw while attached: no local echo or line editing.
            self.assertFalse(termios.tcgetattr(slave)[3] & (termios.ICANON | termios.ECHO))
            # A resize reaches the guest's terminal (SIGWINCH -> resize frame).
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 41, 121, 0, 0))
            os.write(master, b"echo S=$(stty size)\r")
            read_until(master, b"S=41 121")
            # Ctrl-C goes through the guest's PTY to the foreground job only.
            os.write(master, b"sleep 300\r")
            time.sleep(0.5)  # let the shell start sleep before the interrupt is typed
            os.write(master, b"\x03")
            os.write(master, b"echo after-$((40+2))\r")
            read_until(master, b"after-42")
            os.write(master, b"exit 5\r")
            self.assertEqual(p.wait(timeout=30), 5)
            # The terminal is as it was.
            self.assertEqual(termios.tcgetattr(slave)[3], before[3])
        finally:
            p.kill()
            p.wait()
            os.close(master)
            os.close(slave)


class RunForeground(harness.DaemonTest):
    """`run CMD` as docker's: CMD attached, its exit code ours, the VM stopped or removed."""

    def names(self):
        _, body = self.d.request("GET", "/v1/instances?all=true")
        return {i["name"]: i["state"] for i in body["instances"]}

    def test_exit_code_and_output_then_stopped(self):
        p = self.d.cli("run", "--name", "fg1", "--", "sh", "-c", "echo hi; echo e >&2; exit 4",
                       check=False)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (4, b"hi\n", b"e\n"))
        self.assertEqual(self.names().get("fg1"), "Stopped")

    def test_rm_and_stdin(self):
        p = self.d.cli("run", "--rm", "-i", "--name", "fg2", "default", "--", "cat",
                       input=b"through stdin")
        self.assertEqual(p.stdout, b"through stdin")
        self.assertNotIn("fg2", self.names())

    def test_missing_command_127_and_removed(self):
        p = self.d.cli("run", "--rm", "--name", "fg3", "default", "no-such-cmd", check=False)
        self.assertEqual(p.returncode, 127, p.stderr)
        self.assertNotIn("fg3", self.names())

    def test_detach_prints_the_id(self):
        p = self.d.cli("run", "-d", "--name", "fg4", "--", "true")
        self.assertRegex(p.stdout.decode(), r"^[0-9a-f]{16}\n$")
        self.assertEqual(self.names().get("fg4"), "Running")
        self.d.cli("rm", "-f", "fg4")

    def test_name_in_use_is_125_and_says_what_to_do(self):
        self.d.cli("run", "-d", "--name", "fg5")
        p = self.d.cli("run", "-d", "--name", "fg5", check=False)
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"already in use", p.stderr)
        self.assertIn(b"torpor rm fg5", p.stderr)
        p = self.d.cli("inspect", "", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"empty NAME", p.stderr)
        self.d.cli("rm", "-f", "fg5")

    def test_usage_errors_are_125(self):
        for args in (("--rm",), ("-d", "--rm", "--", "true"), ("-it",), ("--bogus", "--", "true")):
            p = self.d.cli("run", *args, check=False)
            self.assertEqual(p.returncode, 125, (args, p.stderr))
        self.assertEqual(self.names().keys() - {"fg1"}, set())


class Cut(harness.DaemonTest):
    """A session cut because the instance went away says why, with 137 or 125, never 126."""

    def run_cut(self, name, verb, expect_rc, expect_msg):
        self.d.cli("run", "--name", name)
        p = subprocess.Popen([harness.TORPOR, "exec", name, "sh", "-c", "echo up; sleep 600"],
                             env=dict(os.environ, TORPOR_SOCKET=self.d.socket),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            read_until(p.stdout.fileno(), b"up\n")
            result = {}
            t = threading.Thread(target=lambda: result.update(
                p=self.d.cli(verb, name, check=False)))
            t.start()
            _, err = p.communicate(timeout=120)
            t.join(timeout=120)
        finally:
            p.kill()
            p.wait()
        self.assertEqual(result["p"].returncode, 0, result["p"].stderr)
        self.assertEqual(p.returncode, expect_rc, err)
        self.assertIn(expect_msg, err)

    def test_stop_cuts_with_137(self):
        self.run_cut("cut-stop", "stop", 137, b"stopped")

    def test_fork_of_a_running_source_cuts_with_125_and_the_command_lives_on(self):
        self.run_cut("cut-fk", "fork", 125, b"forked")
        self.assertTrue(guest_has(self.d, "cut-fk", "sleep 600"))

    def test_standby_cuts_with_125_and_the_command_lives_on(self):
        self.run_cut("cut-sb", "standby", 125, b"standby")
        self.d.cli("restore", "cut-sb")
        self.assertTrue(guest_has(self.d, "cut-sb", "sleep 600"))


if __name__ == "__main__":
    harness.main()
