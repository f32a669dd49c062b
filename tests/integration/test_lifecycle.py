"""run -> exec -> stop -> start -> exec -> rm on a real QEMU guest, through the CLI."""
import json

import harness


class Lifecycle(harness.DaemonTest):
    def test_full_cycle(self):
        d = self.d
        p = d.cli("run", "--name", "life", "--memory", "256")
        vid = p.stdout.decode().strip()
        self.assertRegex(vid, r"^[0-9a-f]{16}$")

        out = d.cli("exec", "life", "--", "cat", "/proc/version").stdout.decode()
        self.assertIn("Linux version", out)

        # The guest runs the default busybox root disk, mounted from virtio-blk.
        out = d.cli("exec", "life", "cat", "/etc/os-release").stdout.decode()
        self.assertIn("torpor", out)

        # A file on the root disk survives stop/start (same disk, guest synced on stop).
        d.cli("exec", "life", "sh", "-c", "echo kept > /root/marker")
        d.cli("stop", "life")
        st, inst = d.request("GET", "/v1/instances/life")
        self.assertEqual(inst["state"], "Stopped")
        self.assertIsNone(inst["pid"])
        phases = [ph["name"] for ph in inst["last_operation"]["phases"]]
        self.assertEqual(inst["last_operation"]["op"], "stop")
        self.assertIn("shutdown_vmm", phases)

        d.cli("start", vid[:6])  # a unique id prefix works wherever a name does
        out = d.cli("exec", "life", "cat", "/root/marker").stdout.decode()
        self.assertEqual(out, "kept\n")

        # ps shows it; inspect has the config and the last operation's phases.
        ps = json.loads(d.cli("ps", "--json").stdout)
        self.assertIn("life", [i["name"] for i in ps])
        self.assertIn(b"life Running\n",
                      d.cli("ps", "--format", "{{.Name}} {{.State}}").stdout)
        self.assertEqual(d.cli("ps", "--filter", "name=lif", "--filter", "state=running",
                               "--format", "{{.Name}}").stdout, b"life\n")
        self.assertEqual(d.cli("ps", "--filter", "state=Standby", "-q").stdout, b"")
        self.assertEqual(d.cli("inspect", "life", "--format", "{{.State}} {{.MemoryMib}}").stdout,
                         b"Running 256\n")
        insp = json.loads(d.cli("inspect", "life").stdout)
        self.assertEqual(len(insp), 1)  # always an array, as docker's
        insp = insp[0]
        self.assertEqual(insp["state"], "Running")
        self.assertEqual(insp["memory_mib"], 256)
        self.assertEqual(insp["last_operation"]["op"], "start")
        names = [ph["name"] for ph in insp["last_operation"]["phases"]]
        self.assertIn("start_process", names)
        self.assertIn("wait_agent", names)

        # restart: a fresh boot (another VMM) on the same disk.
        pid = insp["pid"]
        self.assertEqual(d.cli("restart", "life").stdout, b"life\n")
        st, again = d.request("GET", "/v1/instances/life")
        self.assertEqual(again["state"], "Running")
        self.assertNotEqual(again["pid"], pid)
        self.assertEqual(d.cli("exec", "life", "cat", "/root/marker").stdout, b"kept\n")

        # rm of a running instance needs force; then it is gone, files included.
        p = d.cli("rm", "life", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"Running", p.stderr)
        d.cli("rm", "-f", "life")
        st, _ = d.request("GET", "/v1/instances/life")
        self.assertEqual(st, 404)
        import os
        self.assertFalse(os.path.exists(os.path.join(d.data_dir, "instances", vid)))

    def test_logs_show_console(self):
        d = self.d
        d.cli("run", "--name", "logs")
        out = d.cli("logs", "logs").stdout.decode()
        self.assertIn("torpor-agent: ready", out)
        d.cli("rm", "-f", "logs")


if __name__ == "__main__":
    harness.main()
