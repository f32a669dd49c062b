"""exec semantics against a real guest: exit codes, stderr apart from stdout, env, cwd,
concurrency, missing commands."""
import concurrent.futures
import json
import os
import select
import subprocess
import time

import harness


class Exec(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        # A short client timeout, so a test can outlast it without waiting minutes.
        cls.d = harness.Daemon().start(extra=("--client-timeout", "5"))
        cls.d.cli("run", "--name", "ex")

    def test_exit_code_and_streams(self):
        p = self.d.cli("exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
        self.assertEqual(p.returncode, 7)
        self.assertEqual(p.stdout, b"out\n")
        self.assertEqual(p.stderr, b"err\n")

    def test_options_after_command_belong_to_it(self):
        p = self.d.cli("exec", "ex", "ls", "-la", "/")
        self.assertIn(b"bin", p.stdout)

    def test_env_and_workdir(self):
        p = self.d.cli("exec", "ex", "--env", "FOO=bar baz", "--workdir", "/etc", "--",
                       "sh", "-c", 'pwd; echo "$FOO"')
        self.assertEqual(p.stdout, b"/etc\nbar baz\n")

    def test_quiet_streams_outlive_the_idle_timeout(self):
        """The API drops idle clients (--client-timeout, 5 s for this daemon); streams that stay
        silent longer (a quiet command, a quiet console under logs -f) must not be cut off."""
        d = self.d
        env = dict(os.environ, TORPOR_SOCKET=d.socket)
        logs = subprocess.Popen([harness.TORPOR, "logs", "-f", "ex"], env=env,
                                stdout=subprocess.PIPE)
        try:
            # The marker is computed so that no echo of the command line can match it.
            script = "sleep 8; echo done; echo mark-$((6*7)) >/dev/console"
            p = d.cli("exec", "ex", "sh", "-c", script, check=False)
            self.assertEqual((p.returncode, p.stdout), (0, b"done\n"), p.stderr)
            # The console line written after the silence reaches the follower, which stays on.
            seen, deadline = b"", time.monotonic() + 60
            while b"mark-42" not in seen and time.monotonic() < deadline:
                ready, _, _ = select.select([logs.stdout], [], [], deadline - time.monotonic())
                chunk = os.read(logs.stdout.fileno(), 65536) if ready else b""
                if not chunk:
                    break  # EOF: the stream was cut
                seen += chunk
            self.assertIn(b"mark-42", seen)
            self.assertIsNone(logs.poll())
        finally:
            logs.kill()
            logs.wait()
            logs.stdout.close()

    def test_missing_command(self):
        p = self.d.cli("exec", "ex", "/no/such/cmd", check=False)
        self.assertEqual(p.returncode, 127)
        self.assertIn(b"/no/such/cmd", p.stderr)

    def test_concurrent_execs(self):
        def one(k):
            return self.d.cli("exec", "ex", "sh", "-c", f"for i in 1 2 3; do echo {k}-$i; done")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(one, range(4)))
        for k, p in enumerate(outs):
            self.assertEqual(p.stdout.decode(), "".join(f"{k}-{i}\n" for i in (1, 2, 3)))

    def test_large_output(self):
        p = self.d.cli("exec", "ex", "head", "-c", "3000000", "/dev/zero")
        self.assertEqual(len(p.stdout), 3000000)

    def test_exec_stream_over_api(self):
        st, body = self.d.request("POST", "/v1/instances/ex/exec", {"cmd": ["echo", "api"]})
        self.assertEqual(st, 200)
        # frames: [kind, 0, 0, 0, len(be32)] payload
        frames, pos = [], 0
        while pos < len(body):
            kind, n = body[pos], int.from_bytes(body[pos + 4:pos + 8], "big")
            frames.append((kind, body[pos + 8:pos + 8 + n]))
            pos += 8 + n
        self.assertEqual(frames[0], (1, b"api\n"))
        self.assertEqual(frames[-1][0], 3)
        self.assertEqual(json.loads(frames[-1][1]), {"exit_code": 0})


if __name__ == "__main__":
    harness.main()
