"""The lifecycle through torpord with --hypervisor firecracker, against the strict Firecracker
double (tests/fc-double): every request the driver sends is checked against the official
OpenAPI file. The double has no guest: its "guest agent" is torpor's agent run on the host
(exec runs host commands in a temp dir), so these tests check torpor's side of each operation.
"""
import json
import os
import sys
import time
import unittest

import harness

FC_DOUBLE = os.environ.get("FC_DOUBLE", "")
SPEC = os.environ.get("FC_DOUBLE_SPEC", "")
AGENT = os.environ.get("TORPOR_AGENT", "")


def sqlite_get(d, name):
    """The record as the dead daemon left it: {"pid": ...} from the store itself."""
    import sqlite3
    db = sqlite3.connect(f"file:{os.path.join(d.data_dir, 'torpor.db')}?mode=ro", uri=True)
    try:
        (pid,) = db.execute("SELECT vmm_pid FROM instances WHERE name = ?", (name,)).fetchone()
    finally:
        db.close()
    return json.dumps({"pid": pid})


def fc_env():
    return {"FC_DOUBLE_SPEC": SPEC, "FC_DOUBLE_AGENT": AGENT}


class Firecracker(harness.FailpointTest):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.fp = os.path.join(cls.d.tmp, "failpoints")
        open(cls.fp, "w").close()
        cls.d.start(extra=["--firecracker", FC_DOUBLE],
                    env=dict(fc_env(), TORPOR_FAILPOINTS_FILE=cls.fp))
        # Firecracker boots an uncompressed ELF kernel; the double checks the magic only.
        cls.kernel = os.path.join(cls.d.tmp, "vmlinux")
        with open(cls.kernel, "wb") as f:
            f.write(b"\x7fELF" + bytes(60))
        cls.initrd = os.path.join(cls.d.tmp, "initrd")
        with open(cls.initrd, "wb") as f:
            f.write(b"070701")

    def run_fc(self, name):
        self.d.cli("run", "--name", name, "--hypervisor", "firecracker", "--kernel",
                   self.kernel, "--initrd", self.initrd)

    def manifest(self, name):
        p = os.path.join(self.d.inst_dir(name), "snapshots", "snapshot-latest", "manifest.json")
        with open(p) as f:
            return json.load(f)

    def test_capabilities(self):
        st, caps = self.d.request("GET", "/v1/capabilities")
        fc = caps["hypervisors"]["firecracker"]
        self.assertTrue(fc["available"])
        self.assertEqual(fc["vmm_version"], "1.16.1")
        self.assertFalse(fc["graceful_vmm_shutdown"])
        self.assertTrue(fc["snapshot_base_reuse"] and fc["resume_on_load"] and fc["fork"])

    def test_standby_restore_full_then_diff(self):
        d = self.d
        self.run_fc("fc1")
        self.assertEqual(d.cli("exec", "fc1", "echo", "up").stdout, b"up\n")
        inst_dir = d.inst_dir("fc1")
        self.assertTrue(os.path.exists(os.path.join(inst_dir, "fc.sock")))
        for k, want_diff in enumerate([False, True, True]):
            st, out = d.op("fc1", "standby")
            self.assertEqual(st, 200, out)
            self.assertEqual(out["state"], "Standby")
            m = self.manifest("fc1")
            self.assertEqual(m["type"], "diff" if want_diff else "full", k)
            self.assertEqual(m["hypervisor"], "firecracker")
            self.assertEqual(m["vmm_version"], "1.16.1")
            self.assertIsNone(out["pid"])
            st, out = d.op("fc1", "restore")
            self.assertEqual(st, 200, out)
            self.assertEqual(out["state"], "Running")
            phases = [p["name"] for p in out["last_operation"]["phases"]]
            self.assertIn("load_snapshot", phases)
            self.assertNotIn("resume_vm", phases)  # resumed by the load itself
            self.assertEqual(d.cli("exec", "fc1", "echo", str(k)).stdout, f"{k}\n".encode())
        d.cli("rm", "-f", "fc1")

    def test_default_kernel_becomes_elf(self):
        """Without --kernel the default (a bzImage) is converted to the ELF vmlinux Firecracker
        boots, cached by content; the initramfs still comes from the bzImage's modules."""
        d = self.d
        d.cli("run", "--name", "fcdef", "--hypervisor", "firecracker")
        st, inst = d.request("GET", "/v1/instances/fcdef")
        self.assertRegex(inst["kernel"], r"/vmlinux/[0-9a-f]{64}\.elf$")
        with open(inst["kernel"], "rb") as f:
            self.assertEqual(f.read(5), b"\x7fELF\x02")
        phases = [p["name"] for p in inst["last_operation"]["phases"]]
        self.assertIn("prepare_kernel", phases)
        d.cli("rm", "-f", "fcdef")

    def test_fork(self):
        d = self.d
        self.run_fc("fsrc")
        # A retained base first, so that the standby after the fork has one to (not) build on.
        self.assertEqual(d.op("fsrc", "standby")[0], 200)
        self.assertEqual(d.op("fsrc", "restore")[0], 200)
        # The double's agent cannot take a hostname (it runs on the host): no identity wait.
        pid = d.request("GET", "/v1/instances/fsrc")[1]["pid"]
        st, out = d.request("POST", "/v1/instances/fsrc/fork", {"count": 2, "no_wait": True})
        self.assertEqual(st, 201, out)
        kids = [i["name"] for i in out["instances"]]
        # Firecracker's snapshot leaves the source on its own memory: it only resumes (same
        # VMM), and nothing maps a template for it.
        st, src = d.request("GET", "/v1/instances/fsrc")
        self.assertEqual(src["pid"], pid)
        phases = [p["name"] for p in src["last_operation"]["phases"]]
        self.assertIn("resume_source", phases)
        self.assertNotIn("restore_source", phases)
        self.assertFalse(os.path.exists(os.path.join(d.inst_dir("fsrc"), "template")))
        # Its next standby is a Full one: the fork's snapshot reset the dirty tracking.
        self.assertEqual(d.op("fsrc", "standby")[0], 200)
        self.assertEqual(self.manifest("fsrc")["type"], "full")
        self.assertEqual(d.op("fsrc", "restore")[0], 200)
        for n in ["fsrc"] + kids:
            self.assertEqual(d.cli("exec", n, "echo", n).stdout, f"{n}\n".encode())
        for n in kids + ["fsrc"]:
            d.cli("rm", "-f", n)

    def test_children_born_in_standby_use_their_own_disk(self):
        """The drive path recorded in the snapshot is relative to the instance dir: a child
        restores onto its own disk, even once its parent is gone."""
        d = self.d
        self.run_fc("dsrc")
        st, out = d.request("POST", "/v1/instances/dsrc/fork", {"name": "dkid", "standby": True})
        self.assertEqual(st, 201, out)
        d.cli("rm", "-f", "dsrc")
        # The double's agent runs on the host and takes no identity: skip that step.
        os.unlink(os.path.join(d.inst_dir("dkid"), "identity-pending"))
        st, kid = d.op("dkid", "restore")
        self.assertEqual(st, 200, kid)
        self.assertEqual(d.cli("exec", "dkid", "echo", "own").stdout, b"own\n")
        d.cli("rm", "-f", "dkid")

    def test_base_not_reused_by_another_vmm(self):
        """A retained base serves only the VMM that loaded it: after the VMM dies and the
        instance boots afresh, the next standby is Full, not a Diff onto an old image."""
        d = self.d
        self.run_fc("fbase")
        self.assertEqual(d.op("fbase", "standby")[0], 200)
        st, inst = d.op("fbase", "restore")
        self.assertEqual(st, 200, inst)
        os.kill(inst["pid"], 9)
        st, inst = d.wait_state("fbase", "Stopped", 30000)
        self.assertEqual(st, 200, inst)
        d.cli("start", "fbase")
        self.assertEqual(d.op("fbase", "standby")[0], 200)
        self.assertEqual(self.manifest("fbase")["type"], "full")
        d.cli("rm", "-f", "fbase")

    def test_restore_whose_vmm_died_with_the_daemon(self):
        """The daemon dies once the load began and the VMM dies too before the restart: the
        guest may have run from the snapshot (Firecracker leaves no trace in the memory file),
        so the snapshot is not offered again: Stopped, saying why."""
        d = self.d
        self.run_fc("fdead")
        self.assertEqual(d.op("fdead", "standby")[0], 200)
        self.arm("restore.load_snapshot=crash-daemon")
        try:
            d.op("fdead", "restore")
        except Exception:
            pass
        self.assertEqual(d.proc.wait(timeout=60), -9)
        d.log.close()
        self.arm("")
        vmm = json.loads(sqlite_get(d, "fdead"))["pid"]
        os.kill(vmm, 9)
        d.start(extra=["--firecracker", FC_DOUBLE],
                env=dict(fc_env(), TORPOR_FAILPOINTS_FILE=self.fp))
        st, inst = d.request("GET", "/v1/instances/fdead")
        self.assertEqual(inst["state"], "Stopped", inst)
        self.assertIn("may have run", inst["last_error"])
        d.cli("rm", "-f", "fdead")

    def test_crash_recovery(self):
        """The same recovery as for QEMU: a durable snapshot ends Standby, a started load
        Running; no VMM left that no record owns."""
        d = self.d
        self.run_fc("fcrash")
        for point, verb, want in [("standby.saved", "standby", "Running"),
                                  ("standby.committed", "standby", "Standby"),
                                  ("restore.start_process", "restore", "Standby"),
                                  ("restore.loaded", "restore", "Running")]:
            with self.subTest(point=point):
                st, cur = d.request("GET", "/v1/instances/fcrash")
                if verb == "restore" and cur["state"] != "Standby":
                    self.assertEqual(d.op("fcrash", "standby")[0], 200)
                if verb == "standby" and cur["state"] != "Running":
                    self.assertEqual(d.op("fcrash", "restore")[0], 200)
                self.arm(f"{point}=crash-daemon")
                try:
                    d.op("fcrash", verb)
                except Exception:
                    pass  # the connection dies with the daemon
                self.assertEqual(d.proc.wait(timeout=60), -9)
                d.log.close()
                self.arm("")
                d.start(extra=["--firecracker", FC_DOUBLE],
                        env=dict(fc_env(), TORPOR_FAILPOINTS_FILE=self.fp))
                st, inst = d.request("GET", "/v1/instances/fcrash")
                self.assertEqual(inst["state"], want, f"{point}: {inst['last_error']}")
                if want == "Running":
                    self.assertEqual(d.cli("exec", "fcrash", "echo", "ok").stdout, b"ok\n")
        d.cli("rm", "-f", "fcrash")


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, timeout=30):
    """Wait (bounded, on the process's pidfd) until pid has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        import select
        return bool(select.select([fd], [], [], timeout)[0]) or not pid_alive(pid)
    finally:
        os.close(fd)


class FirecrackerUffd(harness.FailpointTest):
    """mem_backend Uffd: torpor's own page-fault handler process serves a restored VMM's
    memory from the snapshot's memory file, outlives torpord, and dies with its VMM."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.fp = os.path.join(cls.d.tmp, "failpoints")
        open(cls.fp, "w").close()
        cls.start_daemon()
        cls.kernel = os.path.join(cls.d.tmp, "vmlinux")
        with open(cls.kernel, "wb") as f:
            f.write(b"\x7fELF" + bytes(60))
        cls.initrd = os.path.join(cls.d.tmp, "initrd")
        with open(cls.initrd, "wb") as f:
            f.write(b"070701")

    @classmethod
    def start_daemon(cls):
        cls.d.start(extra=["--firecracker", FC_DOUBLE],
                    env=dict(fc_env(), TORPOR_FAILPOINTS_FILE=cls.fp))

    def run_uffd(self, name):
        self.d.cli("run", "--name", name, "--hypervisor", "firecracker", "--kernel",
                   self.kernel, "--initrd", self.initrd, "--mem-backend", "uffd")

    def handler(self, name, inst_dir=None):
        """(pid, stats) of the instance's recorded page-fault handler."""
        inst_dir = inst_dir or self.d.inst_dir(name)
        with open(os.path.join(inst_dir, "uffd.pid")) as f:
            pid = int(f.read().split()[0])
        with open(os.path.join(inst_dir, "uffd.stats")) as f:
            return pid, json.load(f)

    def handler_served(self, name, timeout=10.0):
        """(pid, stats) once the handler's counters show pages served: it writes them just
        after the copy that woke the VMM, so a reader can come first (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, stats = self.handler(name)
            except ValueError:  # caught mid-rewrite (the file is rewritten in place)
                pid, stats = None, {"pages": 0}
            if stats["pages"] > 0 or time.monotonic() > deadline:
                return pid, stats
            time.sleep(0.01)

    def counter(self, name):
        p = os.path.join(self.d.inst_dir(name), "snapshots", "snapshot-latest", "state")
        with open(p) as f:
            for line in f:
                if line.startswith("{"):
                    return json.loads(line)["guest"]["counter"]
        raise AssertionError("no state line")

    def manifest_type(self, name):
        p = os.path.join(self.d.inst_dir(name), "snapshots", "snapshot-latest", "manifest.json")
        with open(p) as f:
            return json.load(f)["type"]

    def test_refused_where_no_handler_exists(self):
        d = self.d
        st, caps = d.request("GET", "/v1/capabilities")
        self.assertTrue(caps["hypervisors"]["firecracker"]["mem_uffd"])
        self.assertFalse(caps["hypervisors"]["qemu"]["mem_uffd"])
        st, out = d.request("POST", "/v1/instances",
                            {"name": "uq", "hypervisor": "qemu", "mem_backend": "uffd"})
        self.assertEqual(st, 400, out)
        self.assertIn("userfaultfd", out["message"])
        st, out = d.request("POST", "/v1/instances",
                            {"name": "uq", "hypervisor": "firecracker", "mem_backend": "lazy"})
        self.assertEqual(st, 400, out)
        self.assertIn("mem_backend", out["message"])
        self.assertEqual(d.request("GET", "/v1/instances/uq")[0], 404)

    def test_standby_restore_serves_pages(self):
        d = self.d
        self.run_uffd("u1")
        st, inst = d.request("GET", "/v1/instances/u1")
        self.assertEqual(inst["mem_backend"], "uffd")
        last = -1
        for k, want in enumerate(["full", "diff", "diff"]):
            self.assertEqual(d.op("u1", "standby")[0], 200)
            self.assertEqual(self.manifest_type("u1"), want)
            c = self.counter("u1")
            self.assertGreater(c, last)  # the guest ran between the standbys
            last = c
            st, out = d.op("u1", "restore")
            self.assertEqual(st, 200, out)
            self.assertEqual(out["state"], "Running")
            pid, stats = self.handler_served("u1")
            self.assertTrue(pid_alive(pid))
            self.assertNotEqual(pid, out["pid"])
            # The double's load checks the header and counter pages it reads through the
            # handler against the state file: a wrong page fails the restore.
            self.assertGreater(stats["pages"], 0)
            self.assertEqual(d.cli("exec", "u1", "echo", str(k)).stdout, f"{k}\n".encode())
        vmm = d.request("GET", "/v1/instances/u1")[1]["pid"]
        d.cli("rm", "-f", "u1")
        self.assertTrue(wait_gone(vmm) and wait_gone(pid), "handler outlived its VMM")

    def test_working_set_feeds_the_prefetch(self):
        """The pages the handler served become the working set of the snapshot the next
        standby writes into the image it served (a Diff, in place); the restore after that
        reads them into the page cache first."""
        d = self.d
        self.run_uffd("uws")
        self.assertEqual(d.op("uws", "standby")[0], 200)
        self.assertEqual(d.op("uws", "restore")[0], 200)
        pid, stats = self.handler("uws")
        st, sb = d.op("uws", "standby")
        self.assertEqual(st, 200, sb)
        self.assertEqual(self.manifest_type("uws"), "diff")
        self.assertTrue(wait_gone(pid))
        latest = os.path.join(d.inst_dir("uws"), "snapshots", "snapshot-latest")
        with open(os.path.join(latest, "workingset"), "rb") as f:
            self.assertEqual(f.read(4), b"TPWS")
        self.assertFalse(os.path.exists(os.path.join(d.inst_dir("uws"), "uffd.pid")))
        st, rs = d.op("uws", "restore")
        self.assertEqual(st, 200, rs)
        counters = rs["last_operation"].get("counters", {})
        self.assertGreaterEqual(counters.get("prefetch_bytes", 0), 4096, rs["last_operation"])
        d.cli("rm", "-f", "uws")

    def test_fork_children_get_their_own_handler(self):
        d = self.d
        self.run_uffd("usrc")
        self.assertEqual(d.op("usrc", "standby")[0], 200)
        self.assertEqual(d.op("usrc", "restore")[0], 200)
        st, out = d.request("POST", "/v1/instances/usrc/fork", {"count": 2, "no_wait": True})
        self.assertEqual(st, 201, out)
        kids = [i["name"] for i in out["instances"]]
        pids = set()
        for n in kids:
            st, inst = d.request("GET", f"/v1/instances/{n}")
            self.assertEqual(inst["mem_backend"], "uffd")
            pid, stats = self.handler_served(n)
            self.assertTrue(pid_alive(pid))
            self.assertGreater(stats["pages"], 0)
            pids.add(pid)
        self.assertEqual(len(pids), 2)
        for n in ["usrc"] + kids:
            self.assertEqual(d.cli("exec", n, "echo", n).stdout, f"{n}\n".encode())
        for n in kids + ["usrc"]:
            d.cli("rm", "-f", n)

    def test_handler_outlives_the_daemon(self):
        d = self.d
        self.run_uffd("ukeep")
        self.assertEqual(d.op("ukeep", "standby")[0], 200)
        self.assertEqual(d.op("ukeep", "restore")[0], 200)
        pid, _ = self.handler("ukeep")
        vmm = d.request("GET", "/v1/instances/ukeep")[1]["pid"]
        d.kill9()
        self.assertTrue(pid_alive(pid) and pid_alive(vmm))
        self.start_daemon()
        st, inst = d.request("GET", "/v1/instances/ukeep")
        self.assertEqual(inst["state"], "Running", inst)
        self.assertEqual(inst["pid"], vmm)
        self.assertEqual(d.cli("exec", "ukeep", "echo", "kept").stdout, b"kept\n")
        # It still serves: the next standby reads every page through it (Diff: the dirty ones).
        self.assertEqual(d.op("ukeep", "standby")[0], 200)
        self.assertEqual(d.op("ukeep", "restore")[0], 200)
        self.assertEqual(d.cli("exec", "ukeep", "echo", "again").stdout, b"again\n")
        d.cli("rm", "-f", "ukeep")

    def test_handler_killed_vm_recovered_as_dead(self):
        d = self.d
        self.run_uffd("ukill")
        self.assertEqual(d.op("ukill", "standby")[0], 200)
        self.assertEqual(d.op("ukill", "restore")[0], 200)
        pid, _ = self.handler("ukill")
        vmm = d.request("GET", "/v1/instances/ukill")[1]["pid"]
        os.kill(pid, 9)
        # Its sentinel kills the VMM, which would hang at its next fault: the monitor sees it.
        self.assertTrue(wait_gone(vmm))
        st, inst = d.wait_state("ukill", "Stopped", 30000)
        self.assertEqual(st, 200, inst)
        d.cli("rm", "-f", "ukill")

    def test_handler_gone_while_daemon_down(self):
        """Handler and sentinel both gone while torpord is down, the VMM still alive: the next
        daemon does not adopt a VMM that would hang; it kills it and recovers it as dead."""
        d = self.d
        self.run_uffd("uorph")
        self.assertEqual(d.op("uorph", "standby")[0], 200)
        self.assertEqual(d.op("uorph", "restore")[0], 200)
        pid, _ = self.handler("uorph")
        vmm = d.request("GET", "/v1/instances/uorph")[1]["pid"]
        d.kill9()
        # The sentinel is the handler's child: stop it first, so the VMM survives the handler.
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
        for k in kids:
            os.kill(k, 9)
            self.assertTrue(wait_gone(k))
        os.kill(pid, 9)
        self.assertTrue(wait_gone(pid))
        self.assertTrue(pid_alive(vmm))
        self.start_daemon()
        st, inst = d.request("GET", "/v1/instances/uorph")
        self.assertNotIn(inst["state"], ("Running", "Paused", "Unknown"), inst)
        self.assertTrue(wait_gone(vmm))
        d.cli("rm", "-f", "uorph")

    def test_crash_points(self):
        """torpord dies with VMM and handler up before the load (Standby; the next restore
        replaces that handler), or once the load began (the VMM and its handler are adopted)."""
        d = self.d
        self.run_uffd("ucrash")
        self.assertEqual(d.op("ucrash", "standby")[0], 200)
        inst_dir = d.inst_dir("ucrash")
        for point, want in [("restore.start_uffd_handler", "Standby"),
                            ("restore.load_snapshot", "Running")]:
            with self.subTest(point=point):
                self.arm(f"{point}=crash-daemon")
                try:
                    d.op("ucrash", "restore")
                except Exception:
                    pass  # the connection dies with the daemon
                self.assertEqual(d.proc.wait(timeout=60), -9)
                d.log.close()
                self.arm("")
                old, _ = self.handler("ucrash", inst_dir)
                self.assertTrue(pid_alive(old))
                self.start_daemon()
                st, inst = d.request("GET", "/v1/instances/ucrash")
                self.assertEqual(inst["state"], want, f"{point}: {inst['last_error']}")
                if want == "Standby":
                    self.assertEqual(d.op("ucrash", "restore")[0], 200)
                    self.assertTrue(wait_gone(old))
                    self.assertNotEqual(self.handler("ucrash")[0], old)
                else:
                    self.assertEqual(self.handler("ucrash")[0], old)
                self.assertEqual(d.cli("exec", "ucrash", "echo", "ok").stdout, b"ok\n")
                self.assertEqual(d.op("ucrash", "standby")[0], 200)
        d.cli("rm", "-f", "ucrash")

    def test_bogus_region_list_from_a_fake_peer(self):
        """The handler takes its peer's message as outside input: a bad region list is refused
        with a message, and the peer (its "VMM") is killed rather than left to hang."""
        import socket
        import subprocess
        tmp = os.path.join(self.d.tmp, "fakepeer")
        os.makedirs(tmp, exist_ok=True)
        mem = os.path.join(tmp, "memory")
        with open(mem, "wb") as f:
            f.truncate(1 << 20)
        sock_path = os.path.join(tmp, "u.sock")
        for bad in [b'[{"base_host_virt_addr":4096,"size":8192,"offset":1048576,"page_size":4096}]',
                    b'{"regions":[]}', b'[]', b'not json',
                    b'[{"base_host_virt_addr":0,"size":4096,"offset":0,"page_size":1000}]']:
            with self.subTest(bad=bad):
                lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                if os.path.exists(sock_path):
                    os.unlink(sock_path)
                lsock.bind(sock_path)
                lsock.listen(1)
                logp = os.path.join(tmp, "log")
                with open(logp, "wb") as log:
                    starter = subprocess.Popen(
                        [harness.TORPORD, "--uffd-handler", mem, tmp], stderr=log,
                        pass_fds=(lsock.fileno(),),
                        preexec_fn=lambda fd=lsock.fileno(): os.dup2(fd, 3))
                    self.assertEqual(starter.wait(timeout=30), 0)
                lsock.close()
                with open(os.path.join(tmp, "uffd.pid")) as f:
                    hpid = int(f.read().split()[0])
                self.assertTrue(pid_alive(hpid))
                peer = subprocess.Popen([sys.executable, "-c", PEER, sock_path, bad.decode()])
                self.assertEqual(peer.wait(timeout=30), -9)  # killed by the sentinel
                self.assertTrue(wait_gone(hpid))
                self.assertFalse(os.path.exists(os.path.join(tmp, "uffd.pid")))
                with open(logp) as f:
                    self.assertIn("bad region list", f.read())


# A fake VMM: connects to the handler, sends a region list with an fd, and waits to be killed.
PEER = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
fd = os.open("/dev/null", os.O_RDONLY)
s.sendmsg([sys.argv[2].encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
time.sleep(60)
"""


class NoFirecracker(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon().start(extra=["--firecracker", "/nonexistent/firecracker"])

    def test_unavailable(self):
        d = self.d
        st, caps = d.request("GET", "/v1/capabilities")
        self.assertFalse(caps["hypervisors"]["firecracker"]["available"])
        self.assertTrue(caps["hypervisors"]["qemu"]["available"])
        st, out = d.request("POST", "/v1/instances", {"name": "nofc", "hypervisor": "firecracker"})
        self.assertEqual(st, 501, out)
        self.assertIn("firecracker is not available", out["message"])
        self.assertIn("/nonexistent/firecracker", out["message"])
        self.assertEqual(d.request("GET", "/v1/instances/nofc")[0], 404)


def fc_get(sock, path):
    """GET path from a Firecracker API socket (the double takes up to 10 connections)."""
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, body = buf.split(b"\r\n\r\n", 1)
        n = int(next(l.split(b":")[1] for l in head.split(b"\r\n")
                     if l.lower().startswith(b"content-length:")))
        while len(body) < n:
            body += s.recv(65536)
    return json.loads(body)


class FirecrackerNetwork(unittest.TestCase):
    """torpord --network in a network namespace of the test's own, VMs on the double. The
    double opens no TAP and runs no guest kernel, so what is checked is torpor's side: the
    persistent TAP by name, PUT /network-interfaces before boot (validated against the spec)
    and network_overrides on load, as the VMM's own GET /vm/config reports them. A guest's
    traffic cannot be tested here."""

    @classmethod
    def setUpClass(cls):
        from test_network import Netns
        cls.ns = Netns("fc")
        cls.d = harness.Daemon(netns=cls.ns.name)
        try:
            cls.d.start(extra=["--firecracker", FC_DOUBLE, "--network"], env=fc_env())
        except Exception:
            cls.ns.delete()
            raise
        cls.kernel = os.path.join(cls.d.tmp, "vmlinux")
        with open(cls.kernel, "wb") as f:
            f.write(b"\x7fELF" + bytes(60))
        cls.initrd = os.path.join(cls.d.tmp, "initrd")
        with open(cls.initrd, "wb") as f:
            f.write(b"070701")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.cleanup()
        finally:
            cls.ns.delete()

    def nic(self, name):
        net = fc_get(os.path.join(self.d.inst_dir(name), "fc.sock"), "/vm/config")
        return net["network-interfaces"]

    def test_nic_overrides_and_persistent_taps(self):
        d, ns = self.d, self.ns
        st, caps = d.request("GET", "/v1/capabilities")
        self.assertTrue(caps["hypervisors"]["firecracker"]["network"])
        d.cli("run", "--name", "fn", "--hypervisor", "firecracker", "--kernel", self.kernel,
              "--initrd", self.initrd)
        net = d.request("GET", "/v1/instances/fn")[1]["network"]
        self.assertEqual(self.nic("fn"), [{"iface_id": "eth0", "host_dev_name": net["tap"],
                                           "guest_mac": net["mac"]}])
        # Firecracker opens the TAP by name: it is persistent, a port of the bridge.
        self.assertEqual(ns.links()[net["tap"]].get("master"), "torpor0")
        # A fork child loads the snapshot with its own TAP; its MAC in the device state stays
        # the parent's until the guest agent applies its own (no agent guest here: no_wait).
        st, out = d.request("POST", "/v1/instances/fn/fork", {"name": "fk", "no_wait": True})
        self.assertEqual(st, 201, out)
        kid = out["instances"][0]["network"]
        self.assertNotEqual(kid["tap"], net["tap"])
        self.assertEqual(self.nic("fk"), [{"iface_id": "eth0", "host_dev_name": kid["tap"],
                                           "guest_mac": net["mac"]}])
        self.assertIn(kid["tap"], ns.links())
        # The VMM gone, its persistent TAP goes too; restore makes it again (overridden with
        # the same name).
        d.cli("standby", "fn")
        self.assertNotIn(net["tap"], ns.links())
        d.cli("restore", "fn")
        self.assertEqual(self.nic("fn")[0]["host_dev_name"], net["tap"])
        self.assertIn(net["tap"], ns.links())
        d.cli("stop", "fk")
        self.assertNotIn(kid["tap"], ns.links())
        # A TAP left by a VMM that died with the daemon goes at restart (recovery).
        vmm = d.request("GET", "/v1/instances/fn")[1]["pid"]
        d.kill9()
        os.kill(vmm, 9)
        d.start(extra=["--firecracker", FC_DOUBLE, "--network"], env=fc_env())
        self.assertNotIn(net["tap"], ns.links())
        d.cli("rm", "-f", "fn", "fk")
        self.assertEqual([l for l in ns.links() if l.startswith("tp")], [])


if __name__ == "__main__":
    if not (FC_DOUBLE and os.access(FC_DOUBLE, os.X_OK) and SPEC and os.path.exists(SPEC)):
        print("no Firecracker double or spec file: skipped")
        sys.exit(77)
    harness.main()
