"""Boots that go wrong: a daemon killed while a guest boots (the VMM it had just started is found
again on restart), and a guest kernel that panics at boot (the run fails at once)."""
import os
import subprocess
import time

import harness


class BootCrash(harness.DaemonTest):
    def test_kill9_during_boot_keeps_vmm(self):
        d = self.d
        env = dict(os.environ, TORPOR_SOCKET=d.socket)
        run = subprocess.Popen([harness.TORPOR, "run", "--name", "booting"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # The record names the VMM as soon as it exists, long before the guest agent
            # answers (a TCG boot takes seconds). Bounded: the boot itself is the deadline.
            pid = None
            deadline = time.monotonic() + 60
            while pid is None and time.monotonic() < deadline:
                st, inst = d.request("GET", "/v1/instances/booting")
                if st == 200:
                    self.assertEqual(inst["state"], "Created",
                                     "the VMM was not recorded before the guest was ready")
                    pid = inst["pid"]
                if pid is None:
                    time.sleep(0.02)  # poll interval of a bounded wait, not a synchronisation
            self.assertIsNotNone(pid, "no VMM pid recorded while the guest booted")
            # The pid is recorded before the VMM runs (the process is held until then); once
            # it runs QEMU it belongs to the guest. A daemon killed earlier takes the held
            # process with it (test_crash covers that point, vmm.recorded).
            while time.monotonic() < deadline and not is_qemu(pid):
                time.sleep(0.005)  # poll interval of a bounded wait
            self.assertTrue(is_qemu(pid), "the recorded process never became QEMU")
            d.kill9()
        finally:
            run.wait(timeout=60)
        os.kill(pid, 0)  # the VMM outlived the daemon

        d.start()
        st, inst = d.request("GET", "/v1/instances/booting")
        self.assertEqual(st, 200, inst)
        self.assertEqual(inst["state"], "Running", inst)
        self.assertEqual(inst["pid"], pid)
        # The same guest finishes its boot and answers through its agent.
        self.assertEqual(harness.guest(d, "booting", "echo up"), "up\n")
        d.cli("rm", "-f", "booting")
        self.assertFalse(running(pid), "rm left the VMM running")

    def test_initrd_that_is_not_an_initramfs(self):
        d = self.d
        bad = os.path.join(d.tmp, "not-an-initramfs")
        with open(bad, "wb") as f:
            f.write(os.urandom(64 << 10))
        # The kernel finds no root and panics; panic=-1 reboots, and a reboot ends QEMU
        # (-no-reboot) instead of booting the same panic again until the agent wait runs out.
        t = time.monotonic()
        p = d.cli("run", "--name", "panics", "--initrd", bad, check=False, timeout=120)
        elapsed = time.monotonic() - t
        self.assertNotEqual(p.returncode, 0, p)
        self.assertTrue(p.stderr.strip(), p)
        self.assertLess(elapsed, 30, f"run took {elapsed:.1f} s: the guest rebooted in a loop "
                        f"until the agent wait ran out\n{p.stderr!r}")
        # The error says why, in the guest kernel's words; and a failed run leaves nothing.
        self.assertIn(b"guest kernel panicked", p.stderr)
        self.assertIn(b"Kernel panic", p.stderr)
        st, _ = d.request("GET", "/v1/instances/panics")
        self.assertEqual(st, 404)
        self.assertEqual(vmms_of(d), [])


def vmms_of(d):
    """Pids of processes other than the daemon whose command line names its data dir."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == d.proc.pid:
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if d.data_dir.encode() in f.read() and running(int(p)):
                    pids.append(int(p))
        except OSError:
            pass
    return pids


def is_qemu(pid):
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("qemu-system")
    except OSError:
        return False


def running(pid):
    """Alive and not a zombie (no longer our child, it waits for PID 1 to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    harness.main()
