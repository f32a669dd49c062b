"""kill -9 of torpord at every phase boundary of every operation (its crash points), then a restart
on the same data dir: every instance settles with its guest intact, no VMM runs that no record
owns, fork is all or nothing, nothing is left that nothing refers to (issue 7's four rules).

The daemon kills itself at a crash point (TORPOR_FAILPOINTS_FILE, "name=crash-daemon"); that it
died of SIGKILL proves the point was reached. Guests are real QEMU guests; a token written to
their tmpfs before the operation is read back after recovery."""
import json
import os
import random
import sqlite3
import subprocess
import threading
import time

import harness
from harness import guest

TOKEN = "/run/crash-token"


def vmm_processes(d):
    """pid -> cmdline of every process whose command line names this data dir's instances."""
    inst = os.path.join(d.data_dir, "instances") + "/"
    found = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if inst.encode() in cmd:
            found[int(p)] = cmd
    return found


class CrashBase(harness.FailpointTest):
    def crash_during(self, point, method, path, body=None):
        """Arm point (unless armed already), send the request, and wait (bounded) for the
        daemon to kill itself."""
        d = self.d
        with open(self.fp) as f:
            if point not in f.read():
                self.arm(f"{point}=crash-daemon")
        err = []

        def send():
            try:
                d.request(method, path, body)
            except Exception as e:  # the connection dies with the daemon
                err.append(e)

        t = threading.Thread(target=send)
        t.start()
        try:
            rc = d.proc.wait(timeout=120)
        except Exception:
            self.fail(f"{point}: the daemon did not reach the crash point\n{d.read_log()}")
        t.join(timeout=60)
        d.log.close()
        self.assertEqual(rc, -9, f"{point}: daemon exited {rc}, not by its crash point\n"
                         + d.read_log())
        self.arm("")
        d.start(env={"TORPOR_FAILPOINTS_FILE": self.fp})

    def instances(self):
        st, out = self.d.request("GET", "/v1/instances?all=1")
        self.assertEqual(st, 200, out)
        return {i["name"]: i for i in (out["instances"] if isinstance(out, dict) else out)}

    def check_invariants(self, point):
        """Rules 1, 2 and 4 of issue 7 for every instance; returns the listing."""
        d = self.d
        insts = self.instances()
        owned = set()
        for name, i in insts.items():
            self.assertIn(i["state"], ("Running", "Standby", "Stopped"),
                          f"{point}: {name} is {i['state']} ({i['last_error']})")
            if i["state"] == "Running":
                self.assertIsNotNone(i["pid"], f"{point}: {name} Running without a VMM")
                owned.add(i["pid"])
            else:
                self.assertIsNone(i["pid"], f"{point}: {name} {i['state']} with a VMM")
        stray = {p: c for p, c in vmm_processes(d).items() if p not in owned}
        self.assertEqual(stray, {}, f"{point}: VMMs no record owns")
        # Every instance dir has a record; every template is referred to.
        ids = {i["id"] for i in insts.values()}
        for e in os.listdir(os.path.join(d.data_dir, "instances")):
            self.assertIn(e, ids, f"{point}: instance dir {e} without a record")
        tdir = os.path.join(d.data_dir, "templates")
        refs = set()
        for e in ids:
            try:
                with open(os.path.join(d.data_dir, "instances", e, "template")) as f:
                    refs.add(f.read().strip())
            except FileNotFoundError:
                pass
        # ... or a kept warm-run template (DATA/warm/<key id>.json).
        wdir = os.path.join(d.data_dir, "warm")
        for e in (os.listdir(wdir) if os.path.isdir(wdir) else []):
            with open(os.path.join(wdir, e)) as f:
                refs.add(json.load(f)["tid"])
        for t in (os.listdir(tdir) if os.path.isdir(tdir) else []):
            self.assertIn(t, refs, f"{point}: template {t} nothing refers to")
        # Every journal was finished or undone.
        db = sqlite3.connect(f"file:{os.path.join(d.data_dir, 'torpor.db')}?mode=ro", uri=True)
        try:
            left = db.execute("SELECT name, op FROM instances WHERE op IS NOT NULL").fetchall()
        finally:
            db.close()
        self.assertEqual(left, [], f"{point}: operations left in the journal")
        # A Running instance has no snapshot-latest (it was consumed or never complete).
        for name, i in insts.items():
            latest = os.path.join(d.data_dir, "instances", i["id"], "snapshots",
                                  "snapshot-latest")
            if i["state"] == "Running":
                self.assertFalse(os.path.exists(latest), f"{point}: {name} Running with a latest")
        return insts

    def token_intact(self, name, token, point):
        """The guest is the same one: its tmpfs still holds the token (restoring if needed)."""
        d = self.d
        st, i = d.request("GET", f"/v1/instances/{name}")
        self.assertEqual(st, 200, i)
        if i["state"] == "Standby":
            st, out = d.op(name, "restore")
            self.assertEqual(st, 200, f"{point}: restore of {name}: {out}")
        self.assertEqual(guest(d, name, f"cat {TOKEN}"), token + "\n", f"{point}: {name}")


class CrashWalk(CrashBase):
    """Each crash point once, in order; one guest carries on from point to point."""

    def setUp(self):
        d = self.d
        if "walk" not in self.instances():
            d.cli("run", "--name", "walk")
        self.token = f"t{random.randrange(1 << 30)}"
        guest(d, "walk", f"echo {self.token} > {TOKEN}")

    def ensure(self, state):
        d = self.d
        cur = self.instances()["walk"]["state"]
        if cur == state:
            return
        verb = {"Standby": "standby", "Running": "restore"}[state]
        st, out = d.op("walk", verb)
        self.assertEqual(st, 200, out)

    def test_standby(self):
        durable = {"standby.committed", "standby.working_set", "standby.vmm_down",
                   "standby.released"}
        # standby.working_set is reached only by a VMM that a restore started: by then the
        # walk's guest has been restored (its adopted VMM after the points before does not).
        for p in ["standby.begin", "standby.paused", "standby.target", "standby.saved",
                  "standby.committed", "standby.working_set", "standby.vmm_down",
                  "standby.released"]:
            with self.subTest(point=p):
                self.ensure("Running")
                self.crash_during(p, "POST", "/v1/instances/walk/standby")
                insts = self.check_invariants(p)
                want = "Standby" if p in durable else "Running"
                self.assertEqual(insts["walk"]["state"], want, p)
                self.token_intact("walk", self.token, p)
                # The next standby works (never onto a half-written base).
                st, out = self.d.op("walk", "standby")
                self.assertEqual(st, 200, f"{p}: {out}")
                self.token_intact("walk", self.token, p)

    def test_restore(self):
        started = {"restore.load_snapshot", "restore.loaded", "restore.running",
                   "restore.retired"}
        for p in ["restore.begin", "vmm.recorded", "restore.start_process",
                  "restore.load_snapshot", "restore.loaded", "restore.running",
                  "restore.retired"]:
            with self.subTest(point=p):
                self.ensure("Standby")
                self.crash_during(p, "POST", "/v1/instances/walk/restore")
                insts = self.check_invariants(p)
                want = "Running" if p in started else "Standby"
                self.assertEqual(insts["walk"]["state"], want, p)
                self.token_intact("walk", self.token, p)

    def fork_points(self, source_state, points):
        d = self.d
        committed = {"fork.committed", "fork.cleaned"}
        for p in points:
            with self.subTest(point=p, source=source_state):
                self.ensure(source_state)
                before = set(self.instances())
                self.crash_during(p, "POST", "/v1/instances/walk/fork", {"count": 2})
                insts = self.check_invariants(p)
                kids = set(insts) - before
                self.assertEqual(insts["walk"]["state"], source_state, p)
                self.token_intact("walk", self.token, p)
                if p in committed:
                    self.assertEqual(len(kids), 2, f"{p}: children {kids}")
                    for k in kids:
                        self.token_intact(k, self.token, p)
                        self.assertEqual(guest(d, k, "hostname"), k + "\n", p)
                else:
                    self.assertEqual(kids, set(), f"{p}: fork not undone")
                for k in kids:
                    d.cli("rm", "-f", k)
                self.check_invariants(p + " (after rm)")
                # The source still standbys and restores as the same guest (its memory was
                # not taken from under it).
                self.cycle_source(p)

    def cycle_source(self, label):
        d = self.d
        if self.instances()["walk"]["state"] == "Running":
            st, out = d.op("walk", "standby")
            self.assertEqual(st, 200, f"{label}: standby after recovery: {out}")
        self.token_intact("walk", self.token, label)

    def test_crash_during_fork_rollback(self):
        """A fork that fails (a child cannot start) rolls back; the daemon dies at the end of
        that rollback. The source must come back on the memory the rollback chose."""
        d = self.d
        for source_state in ("Running", "Standby"):
            with self.subTest(source=source_state):
                self.ensure(source_state)
                before = set(self.instances())
                self.arm("fork.child=error,fork.rolled_back=crash-daemon")
                self.crash_during("fork.rolled_back", "POST", "/v1/instances/walk/fork",
                                  {"count": 2})
                insts = self.check_invariants("rollback")
                self.assertEqual(set(insts) - before, set())
                self.assertEqual(insts["walk"]["state"], source_state)
                self.cycle_source("rollback")

    def test_fork_running(self):
        self.fork_points("Running", [
            "fork.begin", "fork.frozen", "fork.children_created", "fork.source_moved",
            "fork.source_stopped", "vmm.recorded", "fork.source_restored", "fork.child_started",
            "fork.children_started", "fork.committed", "fork.cleaned"])

    def test_fork_standby(self):
        self.fork_points("Standby", [
            "fork.begin", "fork.frozen", "fork.children_created", "fork.source_moved",
            "vmm.recorded", "fork.child_started", "fork.children_started", "fork.committed"])


class CrashBootStop(CrashBase):
    """run, start, stop and rm: fresh boots, so each point gets its own guest."""

    def test_run(self):
        booted = {"boot.spawned", "run.booted"}
        for n, p in enumerate(["run.recorded", "run.disk", "vmm.recorded", "boot.spawned",
                               "run.booted"]):
            with self.subTest(point=p):
                name = f"r{n}"
                self.crash_during(p, "POST", "/v1/instances", {"name": name})
                insts = self.check_invariants(p)
                if p in booted:
                    self.assertEqual(insts[name]["state"], "Running", p)
                    self.assertEqual(guest(self.d, name, "hostname"), name + "\n", p)
                    self.d.cli("rm", "-f", name)
                else:
                    self.assertNotIn(name, insts, f"{p}: an interrupted run left a record")
                self.check_invariants(p + " (after)")

    def test_run_image(self):
        """A root disk build cut short leaves only its temp dir, removed by the next start; the
        image then runs."""
        import ocibuild
        store = os.path.join(self.d.data_dir, "images")
        digest = ocibuild.build(store, "docker.io/library/crashimg:1", [ocibuild.busybox_members()],
                                config={"Cmd": ["/bin/sh", "-c", "exit 5"]})
        rootfs = os.path.join(store, "rootfs")
        for p in ("image.unpacked", "image.built"):
            with self.subTest(point=p):
                self.crash_during(p, "POST", "/v1/instances", {"name": "img", "image": "crashimg:1"})
                insts = self.check_invariants(p)
                self.assertNotIn("img", insts, f"{p}: an interrupted run left a record")
                self.assertEqual(sorted(os.listdir(rootfs)), [], f"{p}: build leftovers")
        st, out = self.d.request("POST", "/v1/instances", {"name": "img", "image": "crashimg:1"})
        self.assertEqual(st, 201, out)
        self.assertTrue(os.path.exists(os.path.join(rootfs, digest[7:] + ".ext4")))
        self.d.wait_state("img", "Stopped", 120000)
        # Between the workload spec and the VMM: a run leaves nothing, a start stays Stopped.
        self.crash_during("boot.workload", "POST", "/v1/instances",
                          {"name": "img2", "image": "crashimg:1"})
        insts = self.check_invariants("boot.workload")
        self.assertNotIn("img2", insts)
        self.crash_during("boot.workload", "POST", "/v1/instances/img/start")
        insts = self.check_invariants("boot.workload (start)")
        self.assertEqual(insts["img"]["state"], "Stopped")
        self.arm("")
        st, out = self.d.request("POST", "/v1/instances/img/start")
        self.assertEqual(st, 200, out)
        self.d.wait_state("img", "Stopped", 120000)
        _, i = self.d.request("GET", "/v1/instances/img")
        self.assertEqual(i["exit_code"], 5)
        self.d.cli("rm", "img")

    def test_start_stop_rm(self):
        d = self.d
        d.cli("run", "--name", "ssr")
        for p in ["stop.begin", "stop.halted", "stop.discarded"]:
            with self.subTest(point=p):
                if self.instances()["ssr"]["state"] != "Running":
                    d.cli("start", "ssr")
                self.crash_during(p, "POST", "/v1/instances/ssr/stop")
                self.assertEqual(self.check_invariants(p)["ssr"]["state"], "Stopped", p)
        for p in ["start.begin", "vmm.recorded", "boot.spawned", "start.booted"]:
            with self.subTest(point=p):
                if self.instances()["ssr"]["state"] != "Stopped":
                    d.cli("stop", "ssr")
                self.crash_during(p, "POST", "/v1/instances/ssr/start")
                insts = self.check_invariants(p)
                want = "Running" if p in ("boot.spawned", "start.booted") else "Stopped"
                self.assertEqual(insts["ssr"]["state"], want, p)
                if want == "Running":
                    self.assertEqual(guest(d, "ssr", "echo up"), "up\n", p)
        for n, p in enumerate(["rm.begin", "rm.halted", "rm.files_removed"]):
            with self.subTest(point=p):
                name = f"gone{n}"
                d.cli("run", "--name", name)
                self.crash_during(p, "DELETE", f"/v1/instances/{name}?force=1")
                self.assertNotIn(name, self.check_invariants(p), f"{p}: rm not finished")


class CrashWarm(CrashBase):
    """A run's template (its freeze, its VMM's restart on it, the kept entry) and a warm run
    (its disk, its VMM on the template before the guest knows its name): the interrupted run
    is finished or undone, and no half-made template is ever used."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(warm=True)
        cls.fp = os.path.join(cls.d.tmp, "failpoints")
        open(cls.fp, "w").close()
        cls.d.start(env={"TORPOR_FAILPOINTS_FILE": cls.fp})

    def kept(self):
        st, out = self.d.request("GET", "/v1/templates")
        self.assertEqual(st, 200, out)
        return out

    def last_counters(self, name):
        st, i = self.d.request("GET", f"/v1/instances/{name}")
        return i["last_operation"].get("counters", {})

    def hostname_becomes(self, name, point):
        """A warm VM adopted before its identity: recovery applies it (in the background)."""
        for _ in range(100):
            if guest(self.d, name, "hostname") == name + "\n":
                return
        self.fail(f"{point}: {name} never got its hostname")

    def test_template_points(self):
        d = self.d
        # QEMU copies the memory out (prepare_fork keep_source): the first VM only resumes, so
        # run.template_stopped / run.template_restarted (a driver that must restart it on the
        # template) are not reached here.
        for n, p in enumerate(["run.template_frozen", "run.source_resumed",
                               "run.template_kept"]):
            with self.subTest(point=p):
                d.cli("templates", "prune")
                name = f"t{n}"
                self.crash_during(p, "POST", "/v1/instances", {"name": name})
                insts = self.check_invariants(p)
                self.assertEqual(insts[name]["state"], "Running", p)
                self.assertEqual(guest(d, name, "hostname"), name + "\n", p)
                # On its own memory: no template ref (its standbys stay cheap).
                idir = os.path.join(d.data_dir, "instances", insts[name]["id"])
                self.assertFalse(os.path.exists(os.path.join(idir, "template")), p)
                self.assertEqual(len(self.kept()), 1 if p == "run.template_kept" else 0, p)
                # The next run of the key: warm from a complete template, or a boot.
                d.cli("run", "-d", "--name", f"{name}-next")
                warm = self.last_counters(f"{name}-next").get("warm") == 1
                self.assertEqual(warm, p == "run.template_kept", p)
                self.assertEqual(guest(d, f"{name}-next", "hostname"), f"{name}-next\n", p)
                self.check_invariants(p + " (after)")
                for x in (name, f"{name}-next"):
                    d.cli("rm", "-f", x, check=False)

    def test_warm_run_points(self):
        d = self.d
        if not self.kept():
            d.cli("run", "-d", "--name", "wsrc")
        for n, p in enumerate(["run.disk", "run.warm_started", "run.booted"]):
            with self.subTest(point=p):
                name = f"wr{n}"
                self.crash_during(p, "POST", "/v1/instances", {"name": name})
                insts = self.check_invariants(p)
                if p == "run.disk":
                    self.assertNotIn(name, insts, p)
                else:
                    self.assertEqual(insts[name]["state"], "Running", p)
                    self.hostname_becomes(name, p)
                    d.cli("rm", "-f", name)
                self.assertEqual(len(self.kept()), 1, p)
                self.check_invariants(p + " (after)")


class CrashPause(CrashBase):
    """pause, unpause and kill at each of their points, and a plain kill -9 while Paused: a
    user's pause survives a restart (the VMM stays paused), a half-done one never does."""

    def setUp(self):
        d = self.d
        insts = self.instances()
        if "pw" not in insts:
            d.cli("run", "--name", "pw")
        elif insts["pw"]["state"] == "Paused":
            d.cli("unpause", "pw")
        elif insts["pw"]["state"] == "Stopped":
            d.cli("start", "pw")
        self.token = f"t{random.randrange(1 << 30)}"
        guest(d, "pw", f"echo {self.token} > {TOKEN}")

    def settle(self, point, want):
        """pw is in state want, its recorded VMM the only one, no journal left."""
        i = self.instances()["pw"]
        self.assertEqual(i["state"], want, f"{point}: {i['last_error']}")
        owned = {i["pid"]} if i["pid"] else set()
        self.assertEqual(set(vmm_processes(self.d)) - owned, set(), f"{point}: stray VMMs")
        if want in ("Running", "Paused"):
            self.assertIsNotNone(i["pid"], point)
        else:
            self.assertIsNone(i["pid"], point)
        db = sqlite3.connect(f"file:{os.path.join(self.d.data_dir, 'torpor.db')}?mode=ro",
                             uri=True)
        try:
            left = db.execute("SELECT name, op FROM instances WHERE op IS NOT NULL").fetchall()
        finally:
            db.close()
        self.assertEqual(left, [], f"{point}: operations left in the journal")
        return i

    def test_pause_points(self):
        for p, want in [("pause.begin", "Running"), ("pause.paused", "Running"),
                        ("pause.committed", "Paused")]:
            with self.subTest(point=p):
                self.setUp()
                self.crash_during(p, "POST", "/v1/instances/pw/pause")
                self.settle(p, want)
                if want == "Paused":
                    self.d.cli("unpause", "pw")
                self.token_intact("pw", self.token, p)

    def test_unpause_points(self):
        for p, want in [("unpause.begin", "Paused"), ("unpause.resumed", "Running"),
                        ("unpause.committed", "Running")]:
            with self.subTest(point=p):
                self.setUp()
                self.d.cli("pause", "pw")
                self.crash_during(p, "POST", "/v1/instances/pw/unpause")
                self.settle(p, want)
                if want == "Paused":
                    self.d.cli("unpause", "pw")
                self.token_intact("pw", self.token, p)

    def test_kill9_while_paused(self):
        d = self.d
        d.cli("pause", "pw")
        pid = self.instances()["pw"]["pid"]
        d.kill9()
        d.start(env={"TORPOR_FAILPOINTS_FILE": self.fp})
        i = self.settle("kill -9 while Paused", "Paused")
        self.assertEqual(i["pid"], pid, "the same VMM, adopted")
        p = d.cli("exec", "pw", "true", check=False)
        self.assertIn(b"unpause", p.stderr)
        d.cli("unpause", "pw")
        self.token_intact("pw", self.token, "kill -9 while Paused")

    def test_kill_points(self):
        for p in ["kill.begin", "kill.halted", "kill.discarded"]:
            with self.subTest(point=p):
                self.setUp()
                self.crash_during(p, "POST", "/v1/instances/pw/kill")
                i = self.settle(p, "Stopped")
                self.assertEqual(i["exit_code"], 137, p)


class CrashRandom(CrashBase):
    """Real operations with kill -9 of torpord at random delays; bounded in count and time."""

    N = int(os.environ.get("TORPOR_CRASH_RANDOM_N", "40"))
    BUDGET_S = 420

    def test_random_kills(self):
        d = self.d
        seed = os.environ.get("TORPOR_CRASH_SEED") or str(time.time_ns())
        rng = random.Random(seed)
        d.cli("run", "--name", "rnd")
        token = "rnd-token"
        guest(d, "rnd", f"echo {token} > {TOKEN}")
        deadline = time.monotonic() + self.BUDGET_S
        done = mid_op = 0
        while done < self.N and time.monotonic() < deadline:
            st = self.instances()["rnd"]["state"]
            # Delays span each operation's length here (standby ~40 ms, restore ~300 ms with
            # the agent, fork ~200 ms), so most kills land inside one.
            if st == "Running":
                verb, body, delay = rng.choice([("standby", None, 0.06),
                                                ("fork", {"count": 1}, 0.3)])
            else:
                verb, body, delay = rng.choice([("restore", None, 0.3),
                                                ("fork", {"count": 1}, 0.3)])
            before = set(self.instances())
            wait = rng.uniform(0, delay)
            t = threading.Thread(target=lambda: self.quiet(d.request, "POST",
                                                           f"/v1/instances/rnd/{verb}", body))
            t.start()
            time.sleep(wait)  # the random crash instant: the point of the test
            d.kill9()
            t.join(timeout=60)
            log_before = len(d.read_log_all())
            d.start(env={"TORPOR_FAILPOINTS_FILE": self.fp})
            label = f"#{done} {verb} killed after {wait * 1000:.0f} ms (TORPOR_CRASH_SEED={seed})"
            if "was in flight" in d.read_log_all()[log_before:]:
                mid_op += 1
            insts = self.check_invariants(label)
            self.token_intact("rnd", token, label)
            kids = set(insts) - before
            if verb == "fork":
                self.assertIn(len(kids), (0, 1), label)
            for k in kids:
                self.token_intact(k, token, label)
                d.cli("rm", "-f", k)
            done += 1
        self.assertGreaterEqual(done, min(self.N, 10), "too few iterations in the time budget")
        print(f"random crash test: {done} kills, {mid_op} inside an operation", flush=True)
        # The test is about kills inside operations: most must land there.
        self.assertGreaterEqual(mid_op, done // 3, "too few kills landed inside an operation")

    @staticmethod
    def quiet(fn, *args):
        try:
            fn(*args)
        except Exception:
            pass


class Leftovers(CrashBase):
    """What a crash or a failure could leave behind is cleaned up, and nothing is left waiting."""

    def test_stray_vmms_killed_at_start(self):
        d = self.d
        d.cli("run", "--name", "owner")
        st, owner = d.request("GET", "/v1/instances/owner")
        inst = os.path.join(d.data_dir, "instances")
        # Two processes that look like VMMs of this data dir: one for an instance that has no
        # record, one posing as a second VMM of a live guest. Neither is recorded anywhere.
        sleeper = "import time; time.sleep(600)"
        strays = [subprocess.Popen(["python3", "-c", sleeper, f"{inst}/{x}/mem"],
                                   start_new_session=True)
                  for x in ("0123456789abcdef", owner["id"])]
        # Not ours: another data dir whose path merely ends like ours, and a process that only
        # reads an instance's file (not a VMM: no session of its own).
        other = subprocess.Popen(["python3", "-c", sleeper,
                                  f"{d.data_dir}x/instances/0123456789abcdef/mem"],
                                 start_new_session=True)
        reader = subprocess.Popen(["python3", "-c", sleeper, f"{inst}/{owner['id']}/logs"])
        d.kill9()
        d.start(env={"TORPOR_FAILPOINTS_FILE": self.fp})
        for p in strays:
            # Recovery ran before the daemon said READY: they are gone already (reaped here).
            self.assertEqual(p.wait(timeout=10), -9)
        for p in (other, reader):
            self.assertIsNone(p.poll(), "recovery killed a process that is not its VMM")
            p.kill()
            p.wait(timeout=10)
        st, again = d.request("GET", "/v1/instances/owner")
        self.assertEqual(again["state"], "Running")
        self.assertEqual(again["pid"], owner["pid"])  # the real VMM was kept
        self.assertEqual(guest(d, "owner", "echo ok"), "ok\n")
        self.check_invariants("strays")
        d.cli("rm", "-f", "owner")

    def test_failed_run_leaves_nothing(self):
        d = self.d
        bad_kernel = os.path.join(d.tmp, "not-a-kernel")
        with open(bad_kernel, "w") as f:
            f.write("this is not a kernel\n")
        p = d.cli("run", "--name", "failed", "--kernel", bad_kernel, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn("failed", self.instances())
        self.check_invariants("failed run")

    def test_rm_does_not_wait_for_a_boot(self):
        d = self.d
        env = dict(os.environ, TORPOR_SOCKET=d.socket)
        run = subprocess.Popen([harness.TORPOR, "run", "--name", "slow"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                st, i = d.request("GET", "/v1/instances/slow")
                if st == 200 and i["pid"]:
                    break
                time.sleep(0.02)  # poll interval of a bounded wait
            self.assertEqual(i["state"], "Created", "the boot finished before rm could race it")
            t0 = time.monotonic()
            d.cli("rm", "-f", "slow", timeout=30)
            self.assertLess(time.monotonic() - t0, 20, "rm -f waited for the boot")
        finally:
            run.wait(timeout=60)
        self.assertNotEqual(run.returncode, 0)
        self.assertNotIn("slow", self.instances())
        self.check_invariants("rm during boot")



class ImageCrash(CrashBase):
    """A pull (or load) killed at each of its crash points: index.json is untouched, blobs/ holds only
    verified blobs of the image, and the next pull completes (the image store's rules)."""

    def test_pull_points(self):
        import json
        import tempfile

        import oci_registry as R
        tmp = tempfile.mkdtemp(prefix="tp-pullcrash-", dir="/tmp")
        reg = R.Registry(tmp).start()
        try:
            big = R.make_layer({"big": os.urandom(2 << 20)}, gz=False)
            img = R.Image([big, R.make_layer({"small": b"s"})], gz=False)
            img.push(reg, "t/crash", "v1")
            ref = f"{reg.host}/t/crash:v1"
            want = {img.digest, img.config_digest, *(R.sha256(l) for l in img.layers)}
            bdir = os.path.join(self.d.data_dir, "images/blobs/sha256")
            for point in ("pull.blob-data", "pull.blob-committed", "pull.before-tag"):
                self.crash_during(point, "POST", "/v1/images/pull", {"ref": ref})
                with open(os.path.join(self.d.data_dir, "images/index.json")) as f:
                    self.assertEqual(json.load(f)["manifests"], [], point)
                have = {"sha256:" + b for b in os.listdir(bdir)}
                self.assertLessEqual(have, want, point)
                for b in have:  # each is complete and verified
                    with open(os.path.join(bdir, b[7:]), "rb") as f:
                        self.assertEqual(R.sha256(f.read()), b, point)
                self.assertEqual(self.d.cli("pull", "-q", ref).stdout.decode().strip(), ref)
                self.d.cli("rmi", ref)
        finally:
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])

    def test_load_point(self):
        """load.before-tag: the archive's blobs are in, nothing is tagged; the next start
        removes the load's temp files and the load, repeated, succeeds."""
        import json
        import tempfile

        import oci_registry as R
        tmp = tempfile.mkdtemp(prefix="tp-loadcrash-", dir="/tmp")
        try:
            img = R.Image([R.make_layer({"l": b"loaded"})])
            lay = os.path.join(tmp, "lay")
            os.makedirs(os.path.join(lay, "blobs/sha256"))
            for b in (*img.blobs(), img.manifest):
                with open(os.path.join(lay, "blobs/sha256", R.sha256(b)[7:]), "wb") as f:
                    f.write(b)
            with open(os.path.join(lay, "index.json"), "w") as f:
                json.dump({"schemaVersion": 2, "manifests": [{
                    "mediaType": R.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
                    "annotations": {"org.opencontainers.image.ref.name": "localhost/crash:v1"}}]}, f)
            archive = os.path.join(tmp, "a.tar")
            subprocess.run(["tar", "-C", lay, "-cf", archive, "index.json", "blobs"], check=True)
            with open(archive, "rb") as f:
                data = f.read()
            stray = os.path.join(self.d.data_dir, "images/ingest/load-stray1")
            with open(stray, "w") as f:  # what a crash mid-member leaves
                f.write("half")
            self.arm("load.before-tag=crash-daemon")
            p = self.d.cli("load", input=data, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertEqual(self.d.proc.wait(timeout=60), -9)  # died at its crash point
            self.d.log.close()
            bdir = os.path.join(self.d.data_dir, "images/blobs/sha256")
            self.assertEqual({"sha256:" + b for b in os.listdir(bdir)},
                             {img.digest, img.config_digest, R.sha256(img.layers[0])})
            self.arm("")
            self.d.start(env={"TORPOR_FAILPOINTS_FILE": self.fp})
            self.assertFalse(os.path.exists(stray))
            with open(os.path.join(self.d.data_dir, "images/index.json")) as f:
                self.assertEqual(json.load(f)["manifests"], [])
            p = self.d.cli("load", input=data)
            self.assertEqual(p.stdout.decode(), "Loaded image: localhost/crash:v1\n")
            self.d.cli("rmi", "localhost/crash:v1")
        finally:
            subprocess.run(["rm", "-rf", tmp])

if __name__ == "__main__":
    harness.main()
