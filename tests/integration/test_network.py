#!/usr/bin/env python3
"""Guest networks: every torpord here runs inside a network namespace this test creates (never
the host's), and traffic goes only to addresses inside it."""
import json
import os
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import TORPORD, Daemon, guest, main  # noqa: E402

# Host side of a ping, run inside the namespace: one ICMP echo over a raw socket (no ping binary
# needed on the host). Exit 0 on a reply from the address within the timeout.
PING = r"""
import os, select, socket, struct, sys, time
dst, tries = sys.argv[1], int(sys.argv[2])
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
for seq in range(tries):
    body = struct.pack('!BBHHH', 8, 0, 0, ident, seq) + b'torpor'
    body = body[:2] + struct.pack('!H', csum(body)) + body[4:]
    s.sendto(body, (dst, 0))
    end = time.time() + 1.0
    while time.time() < end:
        r, _, _ = select.select([s], [], [], end - time.time())
        if not r:
            break
        pkt, addr = s.recvfrom(2048)
        ihl = (pkt[0] & 15) * 4
        t, _, _, i, q = struct.unpack('!BBHHH', pkt[ihl:ihl + 8])
        if addr[0] == dst and t == 0 and i == ident:
            sys.exit(0)
sys.exit(1)
"""


def host_dns():
    """What torpord passes guests: up to three IPv4 name servers of the host that are not
    loopback, from /etc/resolv.conf or else systemd-resolved's list."""
    for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        out = []
        for l in lines:
            w = l.split()
            if len(w) >= 2 and w[0] == "nameserver" and w[1].count(".") == 3 \
                    and not w[1].startswith("127.") and w[1] != "0.0.0.0":
                out.append(w[1])
        if out:
            return out[:3]
    return []


class Netns:
    def __init__(self, tag):
        self.name = f"tpn-{tag}-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *args, check=True):
        return subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True,
                              text=True, check=check, timeout=60)

    def ping(self, ip, tries=5):
        return self.run(sys.executable, "-c", PING, ip, str(tries), check=False).returncode == 0

    def links(self):
        out = self.run("ip", "-j", "link", "show").stdout
        return {l["ifname"]: l for l in json.loads(out)}

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def inspect(d, name):
    return json.loads(d.cli("inspect", name).stdout)[0]


class NetTest(unittest.TestCase):
    """One daemon with --network in a namespace; the tests share its VMs (boots are slow)."""

    @classmethod
    def setUpClass(cls):
        cls.ns = Netns("net")
        cls.d = Daemon(netns=cls.ns.name)
        try:
            cls.d.start(extra=["--network"])
            cls.d.cli("run", "-d", "--name", "a")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.cleanup()
        finally:
            cls.ns.delete()

    def test_1_connectivity(self):
        net = inspect(self.d, "a")["network"]
        self.assertEqual(net["ip"], "10.88.0.2")
        self.assertEqual(net["prefix"], 16)
        self.assertEqual(net["gateway"], "10.88.0.1")
        self.assertEqual(net["mac"], "02:74:0a:58:00:02")
        self.assertEqual(net["tap"], "tp0a580002")
        links = self.ns.links()
        self.assertEqual(links["tp0a580002"].get("master"), "torpor0")
        self.assertEqual(links["torpor0"]["address"], "02:74:0a:58:00:01")
        self.assertTrue(self.ns.ping("10.88.0.2"), "the host side cannot ping the guest")
        out = guest(self.d, "a", "ip -4 addr show eth0; ip route; cat /etc/resolv.conf; "
                    "cat /sys/class/net/eth0/address; ping -c 1 -W 3 10.88.0.1")
        self.assertIn("inet 10.88.0.2/16", out)
        self.assertIn("default via 10.88.0.1 dev eth0", out)
        # The host's own name servers a guest can reach (IPv4, not loopback), else the gateway.
        for ns in host_dns() or ["10.88.0.1"]:
            self.assertIn(f"nameserver {ns}", out)
        self.assertIn("02:74:0a:58:00:02", out)
        self.assertIn("1 packets received", out)
        tables = self.ns.run("nft", "list", "tables").stdout
        self.assertIn("table inet torpor", tables)
        self.assertIn("masquerade", self.ns.run("nft", "list", "table", "inet", "torpor").stdout)

    def test_2_two_vms_distinct_and_rm_frees(self):
        self.d.cli("run", "-d", "--name", "b")
        na, nb = inspect(self.d, "a")["network"], inspect(self.d, "b")["network"]
        self.assertEqual(nb["ip"], "10.88.0.3")
        self.assertNotEqual(na["mac"], nb["mac"])
        self.assertNotEqual(na["tap"], nb["tap"])
        # Isolated by default (test_ports.py covers --network-mode shared): the gateway only.
        out = guest(self.d, "b", "ping -c 1 -W 2 10.88.0.2 || true; ping -c 1 -W 3 10.88.0.1")
        self.assertIn("1 packets transmitted, 0 packets received", out)
        self.assertIn("1 packets transmitted, 1 packets received", out)
        ps = self.d.cli("ps").stdout.decode()
        self.assertIn("10.88.0.3", ps)
        # rm removes the TAP and frees the address: the next guest gets it again.
        self.d.cli("rm", "-f", "b")
        self.assertNotIn(nb["tap"], self.ns.links())
        self.d.cli("run", "-d", "--name", "c")
        self.assertEqual(inspect(self.d, "c")["network"]["ip"], "10.88.0.3")
        self.d.cli("rm", "-f", "c")

    def test_3_network_none(self):
        self.d.cli("run", "-d", "--name", "nonet", "--network", "none")
        self.assertIsNone(inspect(self.d, "nonet")["network"])
        self.assertEqual(guest(self.d, "nonet", "ls /sys/class/net").split(), ["lo"])
        self.d.cli("rm", "-f", "nonet")
        bad = self.d.cli("run", "-d", "--network", "bridge", check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("'default' or 'none'", bad.stderr.decode())

    def test_4_standby_restore(self):
        guest(self.d, "a", "echo token > /run/tok")
        self.d.cli("standby", "a")
        self.assertNotIn("tp0a580002", self.ns.links())  # the VMM took its TAP along
        self.assertFalse(self.ns.ping("10.88.0.2", tries=1))
        self.d.cli("restore", "a")
        self.assertEqual(inspect(self.d, "a")["network"]["ip"], "10.88.0.2")
        self.assertEqual(self.ns.links()["tp0a580002"].get("master"), "torpor0")
        self.assertTrue(self.ns.ping("10.88.0.2"))
        out = guest(self.d, "a", "cat /run/tok; ping -c 1 -W 3 10.88.0.1")
        self.assertIn("token", out)
        self.assertIn("1 packets received", out)

    def test_5_fork_child_own_address(self):
        self.d.cli("fork", "a", "--name", "kid")
        kid = inspect(self.d, "kid")
        nk = kid["network"]
        # The new address is applied (and timed) apart from the hostname and seed.
        phases = [p["name"] for p in kid["last_operation"]["phases"]]
        self.assertLess(phases.index("apply_identity"), phases.index("apply_network"))
        self.assertNotEqual(nk["ip"], "10.88.0.2")
        self.assertNotEqual(nk["mac"], "02:74:0a:58:00:02")
        out = guest(self.d, "kid", "ip -4 addr show eth0; cat /sys/class/net/eth0/address; "
                    "ip route; ping -c 1 -W 3 10.88.0.1")
        self.assertIn(f"inet {nk['ip']}/16", out)
        self.assertNotIn("10.88.0.2/", out)
        self.assertIn(nk["mac"], out)
        self.assertIn("default via 10.88.0.1", out)
        self.assertIn("1 packets received", out)
        # Both answer at their own address.
        self.assertTrue(self.ns.ping(nk["ip"]))
        self.assertTrue(self.ns.ping("10.88.0.2"))
        self.assertIn("inet 10.88.0.2/16", guest(self.d, "a", "ip -4 addr show eth0"))
        self.d.cli("rm", "-f", "kid")
        self.assertNotIn(nk["tap"], self.ns.links())

    def test_6_kill9_restart_reclaims(self):
        # A TAP of ours that no instance's VMM uses (as a crash could leave one), and a VM that
        # lives on through the restart with its TAP.
        self.ns.run("ip", "tuntap", "add", "dev", "tp0a58ffff", "mode", "tap")
        self.d.kill9()
        self.d.start(extra=["--network"])
        links = self.ns.links()
        self.assertNotIn("tp0a58ffff", links)
        self.assertIn("tp0a580002", links)
        self.assertTrue(self.ns.ping("10.88.0.2"))
        self.assertIn("1 packets received", guest(self.d, "a", "ping -c 1 -W 3 10.88.0.1"))

    def test_7_cleanup_network(self):
        self.d.cli("rm", "-f", "a")
        self.d.stop()
        r = self.ns.run(TORPORD, "--cleanup-network", check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(set(self.ns.links()), {"lo"})
        self.assertNotIn("torpor", self.ns.run("nft", "list", "tables").stdout)
        # Nothing left: a second cleanup is a no-op.
        self.assertEqual(self.ns.run(TORPORD, "--cleanup-network", check=False).returncode, 0)


class NetCrash(unittest.TestCase):
    """kill -9 in the middle of run and fork: addresses and TAPs of what recovery undoes are
    freed, the survivors keep theirs."""

    @classmethod
    def setUpClass(cls):
        cls.ns = Netns("crash")
        cls.d = Daemon(netns=cls.ns.name)
        cls.fp = os.path.join(cls.d.tmp, "failpoints")
        open(cls.fp, "w").close()
        try:
            cls.start()
            cls.d.cli("run", "-d", "--name", "src")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls):
        cls.d.start(extra=["--network"], env={"TORPOR_FAILPOINTS_FILE": cls.fp})

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.cleanup()
        finally:
            cls.ns.delete()

    def crash_during(self, point, method, path, body=None):
        with open(self.fp, "w") as f:
            f.write(f"{point}=crash-daemon")
        t = threading.Thread(target=lambda: self._send(method, path, body))
        t.start()
        rc = self.d.proc.wait(timeout=120)
        t.join(timeout=60)
        self.d.log.close()
        self.assertEqual(rc, -9, self.d.read_log())
        with open(self.fp, "w") as f:
            f.write("")
        self.start()

    def _send(self, method, path, body):
        try:
            self.d.request(method, path, body)
        except Exception:
            pass  # the connection dies with the daemon

    def names(self):
        _, out = self.d.request("GET", "/v1/instances?all=true")
        return {i["name"]: i for i in out["instances"]}

    def test_run_crash_frees_address(self):
        # Killed once the VMM runs and its TAP exists, before the guest answered.
        self.crash_during("boot.spawned", "POST", "/v1/instances", {"name": "half"})
        insts = self.names()
        if "half" in insts:  # recovery adopted the VMM: the guest boots on, address its own
            self.assertEqual(insts["half"]["network"]["ip"], "10.88.0.3")
            self.d.cli("rm", "-f", "half")
        self.crash_during("run.disk", "POST", "/v1/instances", {"name": "half2"})
        self.assertNotIn("half2", self.names())
        self.assertNotIn("tp0a580003", self.ns.links())
        # Its address is free again.
        self.d.cli("run", "-d", "--name", "whole")
        self.assertEqual(inspect(self.d, "whole")["network"]["ip"], "10.88.0.3")
        self.assertTrue(self.ns.ping("10.88.0.3"))
        self.d.cli("rm", "-f", "whole")

    def test_fork_crash_removes_children(self):
        self.crash_during("fork.children_started", "POST", "/v1/instances/src/fork",
                          {"count": 2})
        insts = self.names()
        self.assertEqual(set(insts), {"src"}, insts)
        self.assertEqual(insts["src"]["network"]["ip"], "10.88.0.2")
        self.assertEqual([l for l in self.ns.links() if l.startswith("tp")], ["tp0a580002"])
        self.assertTrue(self.ns.ping("10.88.0.2"))
        self.assertIn("inet 10.88.0.2/16", guest(self.d, "src", "ip -4 addr show eth0"))
        # The children's addresses were freed with them.
        self.d.cli("fork", "src", "--name", "kid")
        self.assertEqual(inspect(self.d, "kid")["network"]["ip"], "10.88.0.3")
        self.assertTrue(self.ns.ping("10.88.0.3"))
        self.d.cli("rm", "-f", "kid")


class NetBadInput(unittest.TestCase):
    def test_bad_subnet(self):
        for bad, msg in (("10.88.0.1/16", "host bits set"), ("10.88.0.0/31", "outside /8../30"),
                         ("banana", "is not A.B.C.D/N")):
            r = subprocess.run([TORPORD, "--subnet", bad], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(msg, r.stderr)

    def test_no_network_daemon(self):
        # Without --network torpord touches nothing and refuses network default clearly.
        ns = Netns("nonet")
        d = Daemon(netns=ns.name)
        try:
            d.start()
            r = d.cli("run", "-d", "--network", "default", check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("--network", r.stderr.decode())
            self.assertEqual(set(ns.links()), {"lo"})
        finally:
            d.cleanup()
            ns.delete()

    def test_name_clashes_are_refused_and_left_alone(self):
        """A bridge torpor0 or an nftables table torpor that torpord did not make belongs to
        someone else: torpord refuses to start with --network, and touches neither."""
        for what, setup, msg in (
                ("bridge", ["ip", "link", "add", "torpor0", "type", "bridge"],
                 "a bridge 'torpor0' exists that torpord did not make"),
                ("table", ["nft", "add", "table", "inet", "torpor"],
                 "table 'inet torpor' exists that torpord did not make")):
            ns = Netns(f"clash{what}")
            try:
                ns.run(*setup)
                if what == "table":
                    ns.run("nft", "add", "chain", "inet", "torpor", "theirs")
                r = ns.run(TORPORD, "--network", "--data-dir", f"/tmp/tpn-clash-{os.getpid()}",
                           "--socket", f"/tmp/tpn-clash-{os.getpid()}.sock", check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(msg, r.stderr)
                if what == "table":  # their chain is still there
                    self.assertIn("chain theirs", ns.run("nft", "list", "table", "inet",
                                                        "torpor").stdout)
                else:  # their bridge keeps its own MAC: no address was given to it
                    self.assertNotIn("10.88.0.1",
                                     ns.run("ip", "-4", "addr", "show", "torpor0").stdout)
            finally:
                ns.delete()
                subprocess.run(["rm", "-rf", f"/tmp/tpn-clash-{os.getpid()}",
                                f"/tmp/tpn-clash-{os.getpid()}.sock"])

    def test_exhausted_subnet(self):
        ns = Netns("tiny")
        d = Daemon(netns=ns.name)
        try:
            d.start(extra=["--subnet", "10.99.0.0/30"])  # one guest address: .2
            d.cli("run", "-d", "--name", "one")
            self.assertEqual(inspect(d, "one")["network"]["ip"], "10.99.0.2")
            st, body = d.request("POST", "/v1/instances", {"name": "two"})
            self.assertEqual(st, 503, body)
            self.assertIn("no free address in subnet '10.99.0.0/30'", body["message"])
            self.assertEqual(d.request("GET", "/v1/instances/two")[0], 404)
        finally:
            d.cleanup()
            ns.delete()


if __name__ == "__main__":
    main()
