"""Warm runs: the first run of a guest keeps a frozen booted template, later runs of the same
guest fork from it and get their own identity; --cold boots; templates are content-keyed,
listed, removed, survive a daemon restart, and a corrupt one is ignored and rebuilt."""
import json
import os
import re
import time

import harness
from harness import guest
from test_network import Netns


def phases(inst):
    return [p["name"] for p in inst["last_operation"]["phases"]]


def counters(inst):
    return inst["last_operation"].get("counters", {})


class Warm(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(warm=True).start()

    def run_vm(self, *args):
        self.d.cli("run", "-d", *args)
        name = args[args.index("--name") + 1]
        st, inst = self.d.request("GET", f"/v1/instances/{name}")
        self.assertEqual(st, 200, inst)
        self.assertEqual(inst["state"], "Running")
        return inst

    def templates(self):
        st, out = self.d.request("GET", "/v1/templates")
        self.assertEqual(st, 200, out)
        return out

    def entry(self, tpl):
        with open(os.path.join(self.d.data_dir, "warm", tpl["id"] + ".json")) as f:
            return json.load(f)

    def test_1_warm_run(self):
        d = self.d
        first = self.run_vm("--name", "w0")
        # The first run boots, then freezes a copy of itself into a template and runs on, on its
        # own memory (not on the template: its own standbys stay cheap).
        for ph in ("wait_agent", "freeze_template", "resume_source"):
            self.assertIn(ph, phases(first))
        self.assertNotIn("restart_on_template", phases(first))
        self.assertNotIn("warm", counters(first))
        tpls = self.templates()
        self.assertEqual(len(tpls), 1, tpls)
        self.assertEqual(tpls[0]["in_use"], 0)
        self.assertEqual(tpls[0]["memory_mib"], 256)
        self.assertEqual(guest(d, "w0", "hostname"), "w0\n")

        host_before = time.time()
        w1 = self.run_vm("--name", "w1")
        w2 = self.run_vm("--name", "w2")
        for w in (w1, w2):
            self.assertEqual(counters(w).get("warm"), 1, w["last_operation"])
            self.assertNotIn("warm_fallback", counters(w))
            for ph in ("load_snapshot", "apply_identity"):
                self.assertIn(ph, phases(w))
            self.assertNotIn("wait_agent", phases(w))
            self.assertNotIn("freeze_template", phases(w))
        self.assertEqual(self.templates()[0]["in_use"], 2)

        # Its own name, machine id, random state and a clock close to the host's.
        seen = {}
        for n in ("w0", "w1", "w2"):
            out = guest(d, n, "hostname; cat /etc/machine-id; "
                              "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; "
                              "date +%s").split("\n")
            self.assertEqual(out[0], n)
            self.assertRegex(out[1], r"^[0-9a-f]{32}$")
            self.assertAlmostEqual(int(out[3]), time.time(), delta=5)
            seen[n] = out
        self.assertGreaterEqual(int(seen["w2"][3]), int(host_before) - 1)
        self.assertEqual(len({seen[n][1] for n in seen}), 3, "machine ids are shared")
        self.assertEqual(len({seen[n][2] for n in seen}), 3, "random state is shared")
        # The same kernel boot (documented): its boot id is the template's.
        boot_ids = {guest(d, n, "cat /proc/sys/kernel/random/boot_id") for n in seen}
        self.assertEqual(len(boot_ids), 1)

        # Its own disk and console log.
        guest(d, "w1", "echo mine > /root/f; sync")
        self.assertEqual(guest(d, "w2", "cat /root/f 2>/dev/null; echo end"), "end\n")
        self.assertEqual(guest(d, "w0", "cat /root/f 2>/dev/null; echo end"), "end\n")
        disks = [os.stat(os.path.join(d.inst_dir(n), "root.ext4")) for n in ("w1", "w2")]
        self.assertNotEqual((disks[0].st_dev, disks[0].st_ino), (disks[1].st_dev, disks[1].st_ino))
        guest(d, "w1", "echo to-console > /dev/console")
        self.assertIn(b"to-console", d.cli("logs", "w1").stdout)
        self.assertNotIn(b"to-console", d.cli("logs", "w2").stdout)

        # standby / restore / fork of a warm VM.
        guest(d, "w1", "echo tok > /run/tok")
        st, out = d.op("w1", "standby")
        self.assertEqual(st, 200, out)
        st, out = d.op("w1", "restore")
        self.assertEqual(st, 200, out)
        self.assertEqual(guest(d, "w1", "hostname; cat /run/tok; cat /root/f"), "w1\ntok\nmine\n")
        st, out = d.request("POST", "/v1/instances/w1/fork", {"name": "w1-kid"})
        self.assertEqual(st, 201, out)
        self.assertEqual(guest(d, "w1-kid", "hostname; cat /run/tok"), "w1-kid\ntok\n")
        kid_mid = guest(d, "w1-kid", "cat /etc/machine-id").strip()
        self.assertNotEqual(kid_mid, seen["w1"][1])
        for n in ("w1", "w1-kid", "w2"):
            d.cli("rm", "-f", n)

    def test_2_cold_cmd_and_key(self):
        d = self.d
        if not self.templates():
            self.run_vm("--name", "k0")
        n = len(self.templates())
        # --cold boots and keeps nothing.
        c = self.run_vm("--cold", "--name", "c1")
        self.assertIn("wait_agent", phases(c))
        self.assertNotIn("warm", counters(c))
        self.assertNotIn("freeze_template", phases(c))
        self.assertEqual(len(self.templates()), n)
        # A command at boot: never from a template, and none kept.
        d.cli("run", "-d", "--name", "cmd1", "--", "sleep", "1000")
        st, inst = d.request("GET", "/v1/instances/cmd1")
        self.assertIn("wait_agent", phases(inst))
        self.assertNotIn("warm", counters(inst))
        self.assertEqual(len(self.templates()), n)
        # Another memory size is another key: a boot, and a second template.
        m1 = self.run_vm("--name", "m1", "-m", "320M")
        self.assertIn("freeze_template", phases(m1))
        tpls = self.templates()
        self.assertEqual(len(tpls), n + 1)
        self.assertIn(320, [t["memory_mib"] for t in tpls])
        m2 = self.run_vm("--name", "m2", "-m", "320M")
        self.assertEqual(counters(m2).get("warm"), 1)
        self.assertEqual(guest(d, "m2", "hostname"), "m2\n")
        for name in ("c1", "cmd1", "m1", "m2"):
            d.cli("rm", "-f", name)

    def test_3_corrupt_template_ignored(self):
        d = self.d
        self.run_vm("--name", "x0", "-m", "288M")
        tpl = [t for t in self.templates() if t["memory_mib"] == 288][0]
        tdir = os.path.join(d.data_dir, "templates", tpl["tid"])
        # The device state goes bad (the manifest no longer matches what is there).
        os.truncate(os.path.join(tdir, "state"), 100)
        x1 = self.run_vm("--name", "x1", "-m", "288M")
        self.assertNotIn("warm", counters(x1))
        self.assertEqual(counters(x1).get("warm_fallback"), 1)
        self.assertIn("wait_agent", phases(x1))
        self.assertIn("freeze_template", phases(x1))
        self.assertIn("unusable", d.read_log_all())
        tpl2 = [t for t in self.templates() if t["memory_mib"] == 288][0]
        self.assertEqual(tpl2["id"], tpl["id"])
        self.assertNotEqual(tpl2["tid"], tpl["tid"])
        # A missing template directory likewise.
        d.cli("rm", "-f", "x0")
        x2 = self.run_vm("--name", "x2", "-m", "288M")
        self.assertEqual(counters(x2).get("warm"), 1)
        for name in ("x1", "x2"):
            d.cli("rm", "-f", name)
        # Nobody uses the rebuilt one now; remove its files behind torpord's back.
        tdir2 = os.path.join(d.data_dir, "templates", tpl2["tid"])
        for f in os.listdir(tdir2):
            os.unlink(os.path.join(tdir2, f))
        x3 = self.run_vm("--name", "x3", "-m", "288M")
        self.assertNotIn("warm", counters(x3))
        self.assertIn("freeze_template", phases(x3))

        # Written by another VMM version: refused, rebuilt.
        tpl3 = [t for t in self.templates() if t["memory_mib"] == 288][0]
        man = os.path.join(d.data_dir, "templates", tpl3["tid"], "manifest.json")
        with open(man) as f:
            m = json.load(f)
        m["vmm_version"] = "0.1.0"
        with open(man, "w") as f:
            json.dump(m, f)
        x4 = self.run_vm("--name", "x4", "-m", "288M")
        self.assertNotIn("warm", counters(x4))
        self.assertIn("freeze_template", phases(x4))
        # An entry whose key is not the run's (a hash collision, a hand edit): refused.
        tpl4 = [t for t in self.templates() if t["memory_mib"] == 288][0]
        entry = os.path.join(d.data_dir, "warm", tpl4["id"] + ".json")
        with open(entry) as f:
            e = json.load(f)
        e["key"] = e["key"].replace("memory_mib=288", "memory_mib=999")
        with open(entry, "w") as f:
            json.dump(e, f)
        x5 = self.run_vm("--name", "x5", "-m", "288M")
        self.assertNotIn("warm", counters(x5))
        self.assertIn("its key differs", d.read_log_all())
        x6 = self.run_vm("--name", "x6", "-m", "288M")
        self.assertEqual(counters(x6).get("warm"), 1)
        for name in ("x3", "x4", "x5", "x6"):
            d.cli("rm", "-f", name)

    def test_4_list_rm_prune_restart(self):
        d = self.d
        self.run_vm("--name", "p0", "-m", "272M")
        out = d.cli("templates").stdout.decode()
        self.assertRegex(out, r"TEMPLATE ID\s+HYPERVISOR")
        ids = d.cli("templates", "-q").stdout.decode().split()
        self.assertTrue(all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids), ids)
        self.assertEqual(len(ids), len(self.templates()))
        # Unknown ids: an error that changes nothing.
        p = d.cli("template", "rm", "ffffffffffff0000", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no such template", p.stderr)
        self.assertEqual(len(self.templates()), len(ids))
        st, _ = d.request("DELETE", "/v1/templates/zz")
        self.assertEqual(st, 404)

        # Templates survive a daemon restart, and are used after it.
        d.stop()
        d.start()
        self.assertEqual(len(self.templates()), len(ids))
        p1 = self.run_vm("--name", "p1", "-m", "272M")
        self.assertEqual(counters(p1).get("warm"), 1)

        tpl = [t for t in self.templates() if t["memory_mib"] == 272][0]
        d.cli("template", "rm", tpl["id"][:12])
        self.assertNotIn(tpl["id"], [t["id"] for t in self.templates()])
        # Its files stay while p0 and p1 map its memory, and go with the last of them.
        tdir = os.path.join(d.data_dir, "templates", tpl["tid"])
        self.assertTrue(os.path.isdir(tdir))
        p2 = self.run_vm("--name", "p2", "-m", "272M")
        self.assertNotIn("warm", counters(p2))  # forgotten: a boot, which keeps a new one
        for name in ("p0", "p1"):
            d.cli("rm", "-f", name)
        self.assertFalse(os.path.exists(tdir))

        out = d.cli("templates", "prune").stdout.decode()
        self.assertRegex(out, r"Removed templates: [1-9]")
        self.assertEqual(self.templates(), [])
        p3 = self.run_vm("--name", "p3", "-m", "272M")
        self.assertNotIn("warm", counters(p3))
        for name in ("p2", "p3"):
            d.cli("rm", "-f", name)
        d.cli("templates", "prune")
        d.cli("rm", "-f", "w0", check=False)
        d.cli("rm", "-f", "k0", check=False)
        st, insts = d.request("GET", "/v1/instances?all=1")
        self.assertEqual(os.listdir(os.path.join(d.data_dir, "templates")), [],
                         f"{insts} {d.read_log_all()[-8000:]}")


class WarmNet(harness.DaemonTest):
    """A warm VM with a network: its own address, MAC and route before run returns, while the
    first VM keeps its own (torpord in a network namespace of the test's)."""

    @classmethod
    def setUpClass(cls):
        cls.ns = Netns("warm")
        cls.d = harness.Daemon(netns=cls.ns.name, warm=True)
        try:
            cls.d.start(extra=["--network"])
        except Exception:
            cls.ns.delete()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.cleanup()
        finally:
            cls.ns.delete()

    def test_warm_run_gets_its_own_address(self):
        d = self.d
        d.cli("run", "-d", "--name", "n0")
        d.cli("run", "-d", "--name", "n1")
        st, n1 = d.request("GET", "/v1/instances/n1")
        self.assertEqual(counters(n1).get("warm"), 1, n1["last_operation"])
        self.assertIn("apply_network", phases(n1))
        st, n0 = d.request("GET", "/v1/instances/n0")
        self.assertNotEqual(n0["network"]["ip"], n1["network"]["ip"])
        for inst in (n0, n1):
            net = inst["network"]
            out = guest(d, inst["name"], "ip -4 addr show eth0; cat /sys/class/net/eth0/address; "
                                         "ip route; ping -c 1 -W 3 " + net["gateway"])
            self.assertIn(f"inet {net['ip']}/{net['prefix']}", out)
            self.assertIn(net["mac"], out)
            self.assertIn(f"default via {net['gateway']}", out)
            self.assertIn("1 packets received", out)
            self.assertTrue(self.ns.ping(net["ip"]), inst["name"])


class TemplateIds(harness.DaemonTest):
    """`templates rm` takes any text as one id: a miss, never another route (no VM needed)."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(warm=True).start()

    def test_rm_odd_ids(self):
        d = self.d
        for ref in ("../instances/x", "a?b", "ab cd", "abc/def", ".", "%2e"):
            p = d.cli("templates", "rm", ref, check=False)
            self.assertEqual(p.returncode, 1, ref)
            self.assertIn(b"no such template", p.stderr, ref)
        st, out = d.request("DELETE", "/v1/templates/%2e%2e")
        self.assertEqual(st, 404, out)
        self.assertIn("no such template", out["message"])


if __name__ == "__main__":
    harness.main()
