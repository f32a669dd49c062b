"""torpord's own options: relative directories work, a bad --ready-fd is refused up front."""
import os
import shutil
import signal
import subprocess
import tempfile
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


if __name__ == "__main__":
    harness.main()
