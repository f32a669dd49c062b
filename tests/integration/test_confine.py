"""The VMM within its limits: no privileges, no fds but its own, and a disk that fills up."""
import os
import subprocess

import harness
from harness import guest, vmm_pid


def status(pid):
    """/proc/PID/status as a dict of its fields."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


class Confined(harness.DaemonTest):
    def assert_confined(self, ref):
        pid = vmm_pid(self.d, ref)
        s = status(pid)
        self.assertEqual(s["NoNewPrivs"], "1", (ref, s))
        self.assertEqual(s["Seccomp"], "2", (ref, s))  # a filter: QEMU's -sandbox
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(int(s[cap], 16), 0, (ref, cap, s))

    def test_vmm_holds_no_privilege_through_its_lifecycle(self):
        d = self.d
        d.cli("run", "--name", "conf")
        self.assert_confined("conf")
        guest(d, "conf", "echo kept > /run/token")
        self.assertEqual(d.op("conf", "standby")[0], 200)
        st, out = d.op("conf", "restore")
        self.assertEqual(st, 200, out)
        self.assert_confined("conf")
        self.assertEqual(guest(d, "conf", "cat /run/token"), "kept\n")
        st, out = d.request("POST", "/v1/instances/conf/fork", {"name": "conf-child"})
        self.assertEqual(st, 201, out)
        self.assert_confined("conf")
        self.assert_confined("conf-child")
        self.assertEqual(guest(d, "conf-child", "cat /run/token"), "kept\n")
        d.cli("rm", "-f", "conf", "conf-child")


class InheritedFds(harness.DaemonTest):
    """A daemon started with an fd it does not know about (no O_CLOEXEC, as inherited)."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.marker = os.path.join(cls.d.tmp, "inherited-marker")
        # Above the fds the driver maps (3 and 4), which would replace it anyway.
        low = os.open(cls.marker, os.O_WRONLY | os.O_CREAT, 0o600)
        fd = os.dup2(low, 77)
        os.close(low)
        r, w = os.pipe()
        cls.d.log = open(cls.d.log_path, "ab")
        cls.d.proc = subprocess.Popen(
            [harness.TORPORD, "--data-dir", cls.d.data_dir, "--socket", cls.d.socket,
             "--cache-dir", harness.CACHE, "--ready-fd", str(w), "--log-level", "debug",
             "--no-warm-runs"],
            stdout=cls.d.log, stderr=cls.d.log, pass_fds=(w, fd))
        os.close(w)
        os.close(fd)
        with os.fdopen(r, "rb") as f:
            ready = f.readline()
        if ready != b"READY\n":
            cls.d.cleanup()
            raise RuntimeError("torpord did not start:\n" + cls.d.read_log())

    def test_inherited_fd_does_not_reach_the_vmm(self):
        d = self.d
        theirs = lambda pid: {os.readlink(f"/proc/{pid}/fd/{fd}")  # noqa: E731
                              for fd in os.listdir(f"/proc/{pid}/fd")}
        self.assertIn(self.marker, theirs(d.proc.pid))  # the daemon holds it
        d.cli("run", "--name", "fds")
        self.assertNotIn(self.marker, theirs(vmm_pid(d, "fds")))
        # Nor does the daemon's log, which is its stdout and stderr.
        self.assertNotIn(d.log_path, theirs(vmm_pid(d, "fds")))
        d.cli("rm", "-f", "fds")


class FullDisk(harness.DaemonTest):
    """Instances live on a small tmpfs; the database stays on the normal disk."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.inst = os.path.join(cls.d.data_dir, "instances")
        os.makedirs(cls.inst, mode=0o700)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m,mode=0700", "tmpfs", cls.inst],
                       check=True)
        try:
            cls.d.start()
        except Exception:
            subprocess.run(["umount", "-l", cls.inst])
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.d.kill_vmms()
            subprocess.run(["umount", "-l", cls.inst])
            cls.d.cleanup()

    def setUp(self):
        self.filler = os.path.join(self.inst, "filler")

    def tearDown(self):
        if os.path.exists(self.filler):
            os.unlink(self.filler)

    def fill(self):
        """Take every free block of the tmpfs."""
        chunk = b"\xa5" * (1 << 20)
        with open(self.filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError as e:
                self.assertEqual(e.errno, 28)  # ENOSPC
            # Whatever a partial write left: single bytes until not even one fits.
            try:
                while True:
                    f.write(b"\0")
            except OSError as e:
                self.assertEqual(e.errno, 28)

    def test_standby_on_full_disk(self):
        d = self.d
        d.cli("run", "--name", "full", "--memory", "128")
        guest(d, "full", "echo alive > /run/token")
        self.fill()
        st, err = d.op("full", "standby")
        self.assertEqual(st, 507, err)
        self.assertEqual(err["code"], "insufficient_storage", err)
        self.assertIn("No space left on device", err["message"])
        # The guest runs on, untouched.
        self.assertEqual(guest(d, "full", "cat /run/token"), "alive\n")
        _, inst = d.request("GET", "/v1/instances/full")
        self.assertEqual(inst["state"], "Running", inst)
        # With room again, standby works.
        os.unlink(self.filler)
        self.assertEqual(d.op("full", "standby")[0], 200)
        self.assertEqual(d.op("full", "restore")[0], 200)
        self.assertEqual(guest(d, "full", "cat /run/token"), "alive\n")
        d.cli("rm", "-f", "full")

    def test_start_on_full_disk_leaves_no_memory_file(self):
        d = self.d
        d.cli("run", "--name", "nomem", "--memory", "128")
        self.assertEqual(d.op("nomem", "stop")[0], 200)
        mem = os.path.join(d.inst_dir("nomem"), "mem")
        self.assertFalse(os.path.exists(mem))
        self.fill()
        st, err = d.op("nomem", "start")
        self.assertEqual(st, 507, err)
        self.assertIn("No space left on device", err["message"])
        # Not even an empty one: the next start finds no half-allocated file.
        self.assertFalse(os.path.exists(mem))
        os.unlink(self.filler)
        self.assertEqual(d.op("nomem", "start")[0], 200)
        self.assertEqual(guest(d, "nomem", "echo up"), "up\n")
        d.cli("rm", "-f", "nomem")


if __name__ == "__main__":
    harness.main()
