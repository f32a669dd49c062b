"""exec semantics against a real guest: exit codes, stderr apart from stdout, env, cwd,
concurrency, missing commands."""
import concurrent.futures
import json

import harness


class Exec(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
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
