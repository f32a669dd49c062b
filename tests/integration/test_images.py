"""Guests from what the user gives: a root directory, an ext4 image, a command, no agent."""
import os
import shutil
import stat
import subprocess
import time
import uuid

import harness


def busybox_tree(path, marker):
    os.makedirs(os.path.join(path, "bin"))
    shutil.copy("/bin/busybox", os.path.join(path, "bin/busybox"))
    for applet in ("sh", "cat", "echo", "sync", "ls"):
        os.symlink("busybox", os.path.join(path, "bin", applet))
    for d in ("etc", "proc", "sys", "dev", "run", "tmp"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    with open(os.path.join(path, "etc/marker"), "w") as f:
        f.write(marker + "\n")


def debugfs_cat(image, path):
    return subprocess.run(["debugfs", "-R", f"cat {path}", image], capture_output=True,
                          text=True).stdout


class Images(harness.DaemonTest):
    def test_rootfs_directory(self):
        tree = os.path.join(self.d.tmp, "tree")
        marker = "from-a-directory-" + uuid.uuid4().hex
        busybox_tree(tree, marker)
        # A file only its owner may read on the host...
        secret = os.path.join(tree, "etc/secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("host-only\n")
        started = time.time()
        self.d.cli("run", "--name", "fromdir", "--rootfs", tree)
        out = self.d.cli("exec", "fromdir", "cat", "/etc/marker").stdout
        self.assertEqual(out, (marker + "\n").encode())
        # ...is in the cached image, which only the daemon's user may read.
        cache = os.path.join(harness.CACHE, "rootfs")
        self.assertEqual(stat.S_IMODE(os.stat(cache).st_mode), 0o700)
        ours = [p for p in (os.path.join(cache, n) for n in os.listdir(cache))
                if p.endswith(".ext4") and os.stat(p).st_mtime >= started - 1
                and debugfs_cat(p, "/etc/marker") == marker + "\n"]
        self.assertEqual(len(ours), 1, ours)
        self.assertEqual(debugfs_cat(ours[0], "/etc/secret"), "host-only\n")
        self.assertEqual(stat.S_IMODE(os.stat(ours[0]).st_mode), 0o600)
        self.d.cli("rm", "-f", "fromdir")

    def test_rootfs_ext4_image_relative_path(self):
        tree = os.path.join(self.d.tmp, "tree2")
        busybox_tree(tree, "from-an-image")
        img = os.path.join(self.d.tmp, "root.img")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, img, "64M"], check=True)
        # The CLI makes relative paths absolute before the daemon sees them.
        cwd = os.getcwd()
        os.chdir(self.d.tmp)
        try:
            self.d.cli("run", "--name", "fromimg", "--rootfs", "root.img")
        finally:
            os.chdir(cwd)
        out = self.d.cli("exec", "fromimg", "cat", "/etc/marker").stdout
        self.assertEqual(out, b"from-an-image\n")
        # The instance writes to its own copy: the user's image is untouched.
        self.d.cli("exec", "fromimg", "sh", "-c", "echo changed > /etc/marker; sync")
        self.d.cli("rm", "-f", "fromimg")
        dump = subprocess.run(["debugfs", "-R", "cat /etc/marker", img], capture_output=True)
        self.assertEqual(dump.stdout, b"from-an-image\n")

    def test_command_runs_on_console(self):
        # -d: a CMD then runs at boot (without it, run would run CMD in the foreground).
        self.d.cli("run", "-d", "--name", "withcmd", "--", "sh", "-c",
                   "echo hello from the command")
        st, inst = self.d.request("GET", "/v1/instances/withcmd")
        self.assertEqual(inst["cmd"], ["sh", "-c", "echo hello from the command"])
        # The agent reports ready before the command runs: follow the log until the line shows.
        p = subprocess.Popen([harness.TORPOR, "logs", "-f", "withcmd"], stdout=subprocess.PIPE,
                             env=dict(os.environ, TORPOR_SOCKET=self.d.socket))
        try:
            found = False
            for line in p.stdout:  # bounded by the test's meson timeout
                if b"hello from the command" in line:
                    found = True
                    break
            self.assertTrue(found)
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
        self.d.cli("rm", "-f", "withcmd")

    def test_no_agent(self):
        self.d.cli("run", "--name", "bare", "--no-agent")
        st, inst = self.d.request("GET", "/v1/instances/bare")
        self.assertEqual(inst["state"], "Running")
        self.assertFalse(inst["agent"])
        phases = [p["name"] for p in inst["last_operation"]["phases"]]
        self.assertNotIn("wait_agent", phases)
        p = self.d.cli("exec", "bare", "true", check=False)
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"without the guest agent", p.stderr)
        self.d.cli("rm", "-f", "bare")

    def test_explicit_kernel_and_tcg(self):
        kernel = os.environ["TORPOR_TEST_KERNEL"]
        self.d.cli("run", "--name", "kern", "--kernel", kernel, "--accel", "tcg",
                   "--memory", "128")
        st, inst = self.d.request("GET", "/v1/instances/kern")
        self.assertEqual(inst["kernel"], kernel)
        self.assertEqual(inst["accel"], "tcg")
        out = self.d.cli("exec", "kern", "cat", "/proc/meminfo").stdout.decode()
        total_kb = int(out.split("MemTotal:")[1].split()[0])
        self.assertLess(total_kb, 128 * 1024)
        self.assertGreater(total_kb, 64 * 1024)
        self.d.cli("rm", "-f", "kern")


if __name__ == "__main__":
    harness.main()
