"""Standby and restore of real QEMU guests: state survives, later standbys write only what
changed, wrong states are refused, and failures never lose the VM."""
import hashlib
import json
import os
import subprocess

import harness
from harness import COUNTER, guest

MiB = 1 << 20


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class StandbyRestore(harness.DaemonTest):
    def test_state_survives_three_cycles(self):
        d = self.d
        d.cli("run", "--name", "keep")
        self.assertIn("tmpfs", guest(d, "keep", "grep ' /run ' /proc/mounts"))
        guest(d, "keep", "echo token-$$ > /run/token")
        token = guest(d, "keep", "cat /run/token")
        pid = guest(d, "keep", COUNTER).strip()
        uptime = float(guest(d, "keep", "cut -d' ' -f1 /proc/uptime"))
        inst_dir = d.inst_dir("keep")
        written = []
        for cycle in range(3):
            before = int(guest(d, "keep", "cat /run/counter"))
            st, inst = d.op("keep", "standby")
            self.assertEqual(st, 200, inst)
            self.assertEqual(inst["state"], "Standby")
            self.assertIsNone(inst["pid"])
            self.assertTrue(os.path.isdir(os.path.join(inst_dir, "snapshots/snapshot-latest")))
            self.assertFalse(os.path.exists(os.path.join(inst_dir, "snapshots/snapshot-base")))
            names = [p["name"] for p in inst["last_operation"]["phases"]]
            # A restored VMM's standby records the guest's working set; a booted one's does not.
            self.assertEqual(names, ["pause_vm", "create_snapshot"]
                             + (["record_working_set"] if cycle else [])
                             + ["shutdown_vmm", "release_memory"])
            c = inst["last_operation"]["counters"]
            self.assertEqual(c["diff"], 0 if cycle == 0 else 1)
            written.append(c["memory_written_bytes"])
            self.assertEqual(c["memory_resident_bytes"], 0)  # memory went back to the host

            st, inst = d.op("keep", "restore")
            self.assertEqual(st, 200, inst)
            self.assertEqual(inst["state"], "Running")
            names = [p["name"] for p in inst["last_operation"]["phases"]]
            # From the second cycle on there is a working set to read in while the VMM starts.
            self.assertEqual(names, ["prepare", "start_process", "load_snapshot", "wait_agent"]
                             + (["prefetch"] if cycle else []))
            # Resumed during the load: no separate resume phase; latest became the hidden base.
            self.assertFalse(os.path.exists(os.path.join(inst_dir, "snapshots/snapshot-latest")))
            self.assertTrue(os.path.isdir(os.path.join(inst_dir, "snapshots/snapshot-base")))

            self.assertEqual(guest(d, "keep", "cat /run/token"), token)
            self.assertEqual(guest(d, "keep", f"kill -0 {pid} && echo alive"), "alive\n")
            now = float(guest(d, "keep", "cut -d' ' -f1 /proc/uptime"))
            self.assertGreater(now, uptime)  # same boot, not a new one
            uptime = now
            # The counter process keeps counting after the restore.
            guest(d, "keep", f"while [ $(cat /run/counter) -le {before} ]; do sleep 0.05; done")
        # Full first, then only what changed (large host folios inflate both; see docs).
        self.assertGreater(written[0], 32 * MiB)
        self.assertLess(written[1], written[0])
        self.assertLess(written[2], written[0])

        # Dirtying memory costs proportionally: 48 MiB written in guest tmpfs must be written out.
        d.op("keep", "standby")
        d.op("keep", "restore")
        guest(d, "keep", "dd if=/dev/urandom of=/run/blob bs=1048576 count=48 2>/dev/null")
        st, inst = d.op("keep", "standby")
        self.assertGreaterEqual(inst["last_operation"]["counters"]["memory_written_bytes"], 48 * MiB)
        d.op("keep", "restore")
        self.assertEqual(guest(d, "keep", "wc -c < /run/blob").strip(), str(48 * MiB))
        # The guest clock was brought forward after the restore (it lags while in Standby).
        host = int(subprocess.run(["date", "+%s"], capture_output=True, text=True).stdout)
        self.assertLessEqual(abs(int(guest(d, "keep", "date +%s")) - host), 2)
        d.cli("rm", "-f", "keep")

    def test_working_set_prefetch(self):
        """standby → restore → exec → standby records what the guest touched; the next restore
        reads it in (phase prefetch); a corrupt, truncated or stale file is ignored."""
        d = self.d
        mem = 256 * MiB
        d.cli("run", "--name", "ws", "--memory", "256")
        latest = os.path.join(d.inst_dir("ws"), "snapshots/snapshot-latest")
        wsfile = os.path.join(latest, "workingset")

        def restore(prefetch):
            st, inst = d.op("ws", "restore")
            self.assertEqual(st, 200, inst)
            self.assertEqual(inst["state"], "Running")
            op = inst["last_operation"]
            names = [p["name"] for p in op["phases"]]
            self.assertEqual("prefetch" in names, prefetch, names)
            self.assertEqual("prefetch_bytes" in op["counters"], prefetch, op["counters"])
            return op["counters"].get("prefetch_bytes", 0), op["counters"]

        d.op("ws", "standby")  # a booted VMM: nothing recorded
        self.assertFalse(os.path.exists(wsfile))
        restore(False)
        # The guest touches 32 MiB of fresh memory after its restore.
        guest(d, "ws", "dd if=/dev/zero of=/run/ws bs=1048576 count=32 2>/dev/null")
        st, inst = d.op("ws", "standby")
        self.assertEqual(st, 200, inst)
        c = inst["last_operation"]["counters"]
        self.assertGreaterEqual(c["working_set_bytes"], 32 * MiB)
        self.assertLessEqual(c["working_set_bytes"], mem)
        self.assertGreater(c["working_set_ranges"], 0)
        self.assertTrue(os.path.exists(wsfile))
        # The file adds the receive buffers the guest posted (QEMU fills them on resume: the
        # agent channel's), a few pages no page table shows yet.
        self.assertGreater(c["working_set_posted_bytes"], 0)
        self.assertLessEqual(c["working_set_posted_bytes"], 1 * MiB)
        recorded = c["working_set_saved_bytes"]
        self.assertGreaterEqual(recorded, c["working_set_bytes"] + c["working_set_posted_bytes"])
        got, c = restore(True)
        self.assertGreater(got, 0)
        self.assertLessEqual(got, mem)
        self.assertEqual(got, recorded)
        self.assertGreater(c["prefetch_ranges"], 0)
        _, shown = d.request("GET", "/v1/instances/ws")  # what inspect shows
        self.assertIn("prefetch", [p["name"] for p in shown["last_operation"]["phases"]])
        self.assertEqual(guest(d, "ws", "wc -c < /run/ws").strip(), str(32 * MiB))

        # Damaged files: the restore succeeds without a prefetch.
        for damage in ("corrupt", "truncated", "stale"):
            with self.subTest(damage=damage):
                st, inst = d.op("ws", "standby")
                self.assertEqual(st, 200, inst)
                if damage == "corrupt":
                    with open(wsfile, "r+b") as f:
                        f.seek(70)
                        b = f.read(1)
                        f.seek(70)
                        f.write(bytes([b[0] ^ 0xff]))
                elif damage == "truncated":
                    os.truncate(wsfile, 40)
                else:  # from an earlier standby: it names the memory image as it was then
                    with open(wsfile, "rb") as f:
                        old = f.read()
                    d.op("ws", "restore")
                    guest(d, "ws", "echo more > /run/more")
                    d.op("ws", "standby")
                    with open(wsfile, "wb") as f:
                        f.write(old)
                restore(False)
                self.assertEqual(guest(d, "ws", "wc -c < /run/ws").strip(), str(32 * MiB))
        d.cli("rm", "-f", "ws")

    def test_wrong_states_and_stop(self):
        d = self.d
        d.cli("run", "--name", "states")
        st, err = d.op("states", "restore")
        self.assertEqual((st, err["code"]), (409, "conflict"))
        self.assertEqual(d.op("states", "standby")[0], 200)
        for verb in ("standby", "start"):
            st, err = d.op("states", verb)
            self.assertEqual((st, err["code"]), (409, "conflict"), verb)
        p = d.cli("exec", "states", "true", check=False)
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"Standby", p.stderr)
        # A restore/standby round leaves a hidden base; stop removes it and latest.
        d.op("states", "restore")
        d.op("states", "standby")
        d.op("states", "restore")
        d.op("states", "standby")
        snaps = os.path.join(d.inst_dir("states"), "snapshots")
        self.assertTrue(os.path.isdir(os.path.join(snaps, "snapshot-latest")))
        # Stopping discards the snapshot (the guest's memory): only when forced.
        st, err = d.op("states", "stop")
        self.assertEqual((st, err["code"]), (409, "conflict"))
        self.assertIn("stop -f", err["message"])
        self.assertTrue(os.path.isdir(os.path.join(snaps, "snapshot-latest")))
        st, inst = d.request("POST", "/v1/instances/states/stop?force=true")
        self.assertEqual(inst["state"], "Stopped")
        # Stop of a Stopped instance and start of a Running one: nothing to do, no error.
        self.assertEqual(d.cli("stop", "states").stdout, b"states\n")
        self.assertEqual(os.listdir(snaps), [])
        # And the instance boots afresh after that.
        d.cli("start", "states")
        self.assertEqual(guest(d, "states", "echo up"), "up\n")
        pid = d.request("GET", "/v1/instances/states")[1]["pid"]
        self.assertEqual(d.cli("start", "states").stdout, b"states\n")
        self.assertEqual(d.request("GET", "/v1/instances/states")[1]["pid"], pid)
        # The CLI's -f reaches stop too (options after the name, as docker).
        d.op("states", "standby")
        self.assertNotEqual(d.cli("stop", "states", check=False).returncode, 0)
        d.cli("stop", "states", "-f")
        d.cli("rm", "-f", "states")

    def test_standby_survives_daemon_restart(self):
        d = self.d
        d.cli("run", "--name", "persist")
        guest(d, "persist", "echo kept > /run/t")
        d.op("persist", "standby")
        d.kill9()
        d.start()
        st, inst = d.request("GET", "/v1/instances/persist")
        self.assertEqual(inst["state"], "Standby")
        self.assertEqual(d.op("persist", "restore")[0], 200)
        self.assertEqual(guest(d, "persist", "cat /run/t"), "kept\n")
        d.cli("rm", "-f", "persist")


    def test_exec_after_restore_while_old_exec_runs(self):
        """The guest never sees its pre-standby host leave: the exec ids of that connection
        must not clash with the new connection's, which start at 1 again."""
        d = self.d
        d.cli("run", "--name", "ids")
        env = dict(os.environ, TORPOR_SOCKET=d.socket)
        # The first exec of the connection, still running at standby.
        old = subprocess.Popen([harness.TORPOR, "exec", "ids", "sh", "-c",
                                "echo started; exec sleep 600"], env=env, stdout=subprocess.PIPE)
        self.assertEqual(old.stdout.readline(), b"started\n")
        d.cli("standby", "ids")
        old.wait(timeout=60)  # its stream ends with the old agent connection
        old.stdout.close()
        d.cli("restore", "ids")
        for k in range(3):
            self.assertEqual(guest(d, "ids", f"echo {k}"), f"{k}\n")
        d.cli("rm", "-f", "ids")

    def test_snapshot_of_another_vmm_version_refused(self):
        """The manifest records the VMM's version; a VMM that cannot load it says so (409) and
        the snapshot stays as it was."""
        d = self.d
        d.cli("run", "--name", "versioned")
        guest(d, "versioned", "echo kept > /run/v")
        st, out = d.op("versioned", "standby")
        self.assertEqual(st, 200, out)
        manifest = os.path.join(d.inst_dir("versioned"), "snapshots", "snapshot-latest",
                                "manifest.json")
        with open(manifest) as f:
            m = json.load(f)
        self.assertRegex(m["vmm_version"], r"^\d+\.\d+\.\d+$")
        real = m["vmm_version"]
        m["vmm_version"] = "1.0.0"
        with open(manifest, "w") as f:
            json.dump(m, f)
        st, out = d.op("versioned", "restore")
        self.assertEqual(st, 409, out)
        self.assertEqual(out["code"], "incompatible")
        self.assertIn("1.0.0", out["message"])
        self.assertIn(real, out["message"])
        st, inst = d.request("GET", "/v1/instances/versioned")
        self.assertEqual(inst["state"], "Standby")
        m["vmm_version"] = real
        with open(manifest, "w") as f:
            json.dump(m, f)
        st, out = d.op("versioned", "restore")
        self.assertEqual(st, 200, out)
        self.assertEqual(guest(d, "versioned", "cat /run/v"), "kept\n")
        d.cli("rm", "-f", "versioned")


class Faults(harness.FailpointTest):
    """Fault injection through failpoints armed in a file the daemon reads at each check."""

    def test_snapshot_failure_resumes_and_discards_base(self):
        d = self.d
        d.cli("run", "--name", "f1")
        guest(d, "f1", "echo ok > /run/t")
        d.op("f1", "standby")
        d.op("f1", "restore")  # now a retained base exists
        snaps = os.path.join(d.inst_dir("f1"), "snapshots")
        self.assertTrue(os.path.isdir(os.path.join(snaps, "snapshot-base")))
        self.arm("standby.snapshot=error")
        st, err = d.op("f1", "standby")
        self.assertEqual(st, 500, err)
        self.assertIn("failpoint", err["message"])
        st, inst = d.request("GET", "/v1/instances/f1")
        self.assertEqual(inst["state"], "Running")
        self.assertEqual(guest(d, "f1", "cat /run/t"), "ok\n")  # the VM runs on
        self.assertEqual(os.listdir(snaps), [])  # promoted base discarded, never reused
        self.arm("")
        st, inst = d.op("f1", "standby")
        self.assertEqual(st, 200, inst)
        self.assertEqual(inst["last_operation"]["counters"]["diff"], 0)  # a full one
        d.op("f1", "restore")
        self.assertEqual(guest(d, "f1", "cat /run/t"), "ok\n")
        d.cli("rm", "-f", "f1")

    def test_vmm_killed_during_snapshot(self):
        d = self.d
        d.cli("run", "--name", "f2")
        self.arm("standby.snapshot=kill-vmm")
        st, err = d.op("f2", "standby")
        self.assertGreaterEqual(st, 500)
        st, inst = d.request("GET", "/v1/instances/f2")
        self.assertEqual(inst["state"], "Stopped")  # truthfully: no snapshot was completed
        self.assertIsNone(inst["pid"])
        self.assertEqual(os.listdir(os.path.join(d.inst_dir("f2"), "snapshots")), [])
        self.arm("")
        d.cli("start", "f2")
        self.assertEqual(guest(d, "f2", "echo back"), "back\n")
        d.cli("rm", "-f", "f2")

    def test_vmm_killed_after_snapshot(self):
        d = self.d
        d.cli("run", "--name", "f3")
        guest(d, "f3", "echo survived > /run/t")
        self.arm("standby.shutdown=kill-vmm")
        st, inst = d.op("f3", "standby")
        self.assertEqual(st, 200, inst)
        self.assertEqual(inst["state"], "Standby")  # the snapshot was durable before the kill
        self.arm("")
        self.assertEqual(d.op("f3", "restore")[0], 200)
        self.assertEqual(guest(d, "f3", "cat /run/t"), "survived\n")
        d.cli("rm", "-f", "f3")

    def test_corrupt_state_keeps_standby_and_snapshot(self):
        d = self.d
        d.cli("run", "--name", "f4")
        guest(d, "f4", "echo intact > /run/t")
        d.op("f4", "standby")
        latest = os.path.join(d.inst_dir("f4"), "snapshots/snapshot-latest")
        state = os.path.join(latest, "state")
        with open(state, "rb") as f:
            good = f.read()
        with open(state, "r+b") as f:
            f.seek(len(good) // 2)
            f.write(b"\xff" * 4096)
        sums = {n: sha(os.path.join(latest, n)) for n in os.listdir(latest)}
        st, err = d.op("f4", "restore")
        self.assertGreaterEqual(st, 500, err)
        st, inst = d.request("GET", "/v1/instances/f4")
        self.assertEqual(inst["state"], "Standby")
        self.assertIsNone(inst["pid"])
        self.assertEqual({n: sha(os.path.join(latest, n)) for n in os.listdir(latest)}, sums)
        # A missing state file is a clear error too.
        os.rename(state, state + ".away")
        st, err = d.op("f4", "restore")
        self.assertEqual(st, 404, err)
        self.assertIn("state", err["message"])
        # Put the good state back: the snapshot was never harmed.
        os.rename(state + ".away", state)
        with open(state, "wb") as f:
            f.write(good)
        self.assertEqual(d.op("f4", "restore")[0], 200)
        self.assertEqual(guest(d, "f4", "cat /run/t"), "intact\n")
        d.cli("rm", "-f", "f4")


class DeepTrace(harness.DaemonTest):
    """TORPOR_RESTORE_DEEP_TRACE=1: an explicit, separately timed resume and VMM counters."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon().start(env={"TORPOR_RESTORE_DEEP_TRACE": "1"})

    def test_deep_trace(self):
        d = self.d
        d.cli("run", "--name", "deep")
        guest(d, "deep", "echo deep > /run/t")
        d.op("deep", "standby")
        st, inst = d.op("deep", "restore")
        self.assertEqual(st, 200, inst)
        names = [p["name"] for p in inst["last_operation"]["phases"]]
        self.assertEqual(names, ["prepare", "start_process", "load_snapshot", "resume_vm",
                                 "wait_agent"])
        c = inst["last_operation"]["counters"]
        self.assertGreater(c["vmm_minor_faults"], 0)
        self.assertIn("vmm_major_faults", c)
        self.assertIn("vmm_read_bytes", c)
        self.assertEqual(guest(d, "deep", "cat /run/t"), "deep\n")
        p = d.cli("restore", "deep", check=False)  # and the CLI says why it cannot
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"Running", p.stderr)
        p = d.cli("standby", "--trace", "deep")
        self.assertIn(b"create_snapshot", p.stderr)
        d.cli("rm", "-f", "deep")


class FullDisk(harness.DaemonTest):
    """A data dir that runs out of space: a clear error, the VM keeps running."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        os.makedirs(cls.d.data_dir)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", cls.d.data_dir],
                       check=True)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
            cls.d.kill_vmms()
        finally:
            subprocess.run(["umount", "-l", cls.d.data_dir])
            cls.d.cleanup()

    def test_enospc(self):
        d = self.d
        d.cli("run", "--name", "full", "--memory", "128")
        guest(d, "full", "echo alive > /run/t")
        filler = os.path.join(d.data_dir, "filler")
        subprocess.run(["fallocate", "-l", "300M", filler], capture_output=True)  # may not fit
        with open(filler, "ab") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        st, err = d.op("full", "standby")
        self.assertEqual((st, err["code"]), (507, "insufficient_storage"), err)
        st, inst = d.request("GET", "/v1/instances/full")
        self.assertEqual(inst["state"], "Running")
        self.assertEqual(guest(d, "full", "cat /run/t"), "alive\n")
        os.unlink(filler)
        st, inst = d.op("full", "standby")
        self.assertEqual(st, 200, inst)
        self.assertEqual(d.op("full", "restore")[0], 200)
        self.assertEqual(guest(d, "full", "cat /run/t"), "alive\n")
        d.cli("rm", "-f", "full")


if __name__ == "__main__":
    harness.main()
