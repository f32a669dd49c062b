"""The daemon can die (kill -9) without harming guests; a VMM that dies is noticed."""
import os
import signal
import time

import harness


class Restart(harness.DaemonTest):
    def test_kill9_daemon_keeps_vm(self):
        d = self.d
        d.cli("run", "--name", "survivor")
        d.cli("exec", "survivor", "sh", "-c", "echo before > /tmp/t")
        pid = harness.vmm_pid(d, "survivor")

        d.kill9()
        os.kill(pid, 0)  # the VMM outlived the daemon
        d.start()

        st, inst = d.request("GET", "/v1/instances/survivor")
        self.assertEqual(inst["state"], "Running")
        self.assertEqual(inst["pid"], pid)
        out = d.cli("exec", "survivor", "cat", "/tmp/t").stdout
        self.assertEqual(out, b"before\n")  # same guest, same tmpfs
        d.cli("rm", "-f", "survivor")

    def test_agent_idles_while_daemon_down(self):
        """With no host on its virtio port the agent blocks; it must not spin on read() == 0."""
        d = self.d
        d.cli("run", "--name", "idler")
        # The agent is PID 1 of the default guest: its user + system clock ticks (1/100 s).
        ticks = "awk '{print $14 + $15}' /proc/1/stat"
        before = int(harness.guest(d, "idler", ticks))
        d.kill9()
        time.sleep(2)  # a window to measure CPU use over, not a wait for an event
        d.start()
        spent = int(harness.guest(d, "idler", ticks)) - before
        # A spinning agent burns ~100 ticks a second here; an idle one a handful in all.
        self.assertLess(spent, 50, f"agent used {spent} ticks while its host was away")
        d.cli("rm", "-f", "idler")

    def test_vmm_death_is_noticed(self):
        d = self.d
        d.cli("run", "--name", "victim")
        pid = harness.vmm_pid(d, "victim")
        os.kill(pid, signal.SIGKILL)
        st, inst = d.wait_state("victim", "Stopped", 30000)
        self.assertEqual(st, 200, inst)
        self.assertIsNone(inst["pid"])
        self.assertIn("exited unexpectedly", inst["last_error"])
        # and it can be started again
        d.cli("start", "victim")
        self.assertEqual(d.cli("exec", "victim", "echo", "ok").stdout, b"ok\n")
        d.cli("rm", "-f", "victim")

    def test_dead_vmm_while_daemon_down(self):
        d = self.d
        d.cli("run", "--name", "lost")
        pid = harness.vmm_pid(d, "lost")
        d.kill9()
        os.kill(pid, signal.SIGKILL)
        d.start()
        st, inst = d.request("GET", "/v1/instances/lost")
        self.assertEqual(inst["state"], "Stopped")
        d.cli("rm", "lost")

    def test_second_daemon_refused(self):
        other = harness.Daemon(data_dir=self.d.data_dir)
        with self.assertRaises(RuntimeError) as cm:
            other.start()
        self.assertIn("another torpord", str(cm.exception))
        other.tmp and os.path.isdir(other.tmp) and __import__("shutil").rmtree(other.tmp)


if __name__ == "__main__":
    harness.main()
