"""A daemon killed while a guest boots: the VMM it had just started is found again on restart."""
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


def running(pid):
    """Alive and not a zombie (no longer our child, it waits for PID 1 to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    harness.main()
