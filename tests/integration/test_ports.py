#!/usr/bin/env python3
"""Published ports and isolation: every torpord here runs inside a network namespace this test
creates (never the host's); a second namespace plays a machine outside, on a veth link."""
import json
import os
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import TORPORD, Daemon, guest, main  # noqa: E402
from test_network import Netns, inspect  # noqa: E402

# A TCP client run inside a namespace: GET / over HTTP/1.0 to ip:port, retried for a few seconds
# (a guest's server may still be starting); prints the body, exit 1 when nothing answered.
GET = r"""
import socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
end = time.time() + float(sys.argv[3])
while True:
    try:
        s = socket.create_connection((ip, port), timeout=3)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        sys.stdout.write(data.decode(errors="replace").split("\r\n\r\n", 1)[-1])
        sys.exit(0)
    except OSError as e:
        if time.time() > end:
            sys.stderr.write(str(e))
            sys.exit(1)
        time.sleep(0.3)
"""

# Hold a listening socket on ip:port until stdin closes (a host process owning a port).
LISTEN = r"""
import socket, sys
s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("up", flush=True); sys.stdin.read()
"""

HTTPD = ("mkdir -p /srv && echo hello-from-{0} > /srv/index.html && "
         "setsid httpd -p 80 -h /srv </dev/null >/dev/null 2>&1; echo started")


class PortsTest(unittest.TestCase):
    """One daemon with --network; `web` serves HTTP on guest port 80, published three ways."""

    @classmethod
    def setUpClass(cls):
        cls.ns = Netns("ports")
        cls.out = Netns("outside")
        # The outside machine: 192.168.77.2, reaching torpord's namespace at 192.168.77.1.
        cls.ns.run("ip", "link", "add", "up0", "type", "veth", "peer", "name", "out0")
        cls.ns.run("ip", "link", "set", "out0", "netns", cls.out.name)
        cls.ns.run("ip", "addr", "add", "192.168.77.1/24", "dev", "up0")
        cls.ns.run("ip", "link", "set", "up0", "up")
        cls.out.run("ip", "addr", "add", "192.168.77.2/24", "dev", "out0")
        cls.out.run("ip", "link", "set", "out0", "up")
        cls.d = Daemon(netns=cls.ns.name)
        cls.fp = os.path.join(cls.d.tmp, "failpoints")
        open(cls.fp, "w").close()
        try:
            cls.start()
            cls.d.cli("run", "-d", "--name", "web", "-p", "8080:80", "-p", "0.0.0.0:8081:80",
                      "-p", "5353:53/udp")
            guest(cls.d, "web", HTTPD.format("web"))
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
            cls.out.delete()

    def get(self, ip, port, ns=None, wait=20):
        r = (ns or self.ns).run(sys.executable, "-c", GET, ip, str(port), str(wait), check=False)
        return r.stdout if r.returncode == 0 else None

    def table(self):
        return self.ns.run("nft", "list", "table", "inet", "torpor").stdout

    def elements(self, guest_ip):
        """Lines of the port maps that lead to guest_ip."""
        out = self.ns.run("nft", "-j", "list", "table", "inet", "torpor").stdout
        found = []
        for item in json.loads(out)["nftables"]:
            m = item.get("map")
            if not m or m["name"] not in ("ports", "ports_any"):
                continue
            for key, value in m.get("elem", []):
                if value["concat"][0] == guest_ip:
                    found.append((m["name"], json.dumps(key), value["concat"][1]))
        return found

    def test_1_published(self):
        self.assertEqual(self.get("127.0.0.1", 8080), "hello-from-web\n")
        # 0.0.0.0: every address of the host, the bridge's (the gateway) included.
        self.assertEqual(self.get("10.88.0.1", 8081), "hello-from-web\n")
        self.assertEqual(self.get("127.0.0.1", 8081), "hello-from-web\n")
        # From another machine (prerouting): 0.0.0.0 answers, 127.0.0.1 does not.
        self.assertEqual(self.get("192.168.77.1", 8081, ns=self.out), "hello-from-web\n")
        self.assertIsNone(self.get("192.168.77.1", 8080, ns=self.out, wait=1))
        # What is set: route_localnet on the bridge, the maps' elements tagged with the id.
        self.assertEqual(self.ns.run("sysctl", "-n",
                                     "net.ipv4.conf.torpor0.route_localnet").stdout.strip(), "1")
        inst = inspect(self.d, "web")
        self.assertIn(f'comment "{inst["id"]}"', self.table())
        self.assertEqual(len(self.elements("10.88.0.2")), 3)
        self.assertEqual(inst["ports"], [
            {"host_ip": "127.0.0.1", "host_port": 8080, "guest_port": 80, "proto": "tcp"},
            {"host_ip": "0.0.0.0", "host_port": 8081, "guest_port": 80, "proto": "tcp"},
            {"host_ip": "127.0.0.1", "host_port": 5353, "guest_port": 53, "proto": "udp"}])
        self.assertEqual(inst["network"]["mode"], "isolated")

    def test_2_port_verb(self):
        out = self.d.cli("port", "web").stdout.decode()
        self.assertEqual(out, "80/tcp -> 127.0.0.1:8080\n80/tcp -> 0.0.0.0:8081\n"
                              "53/udp -> 127.0.0.1:5353\n")
        self.assertEqual(self.d.cli("port", "web", "53/udp").stdout.decode(), "127.0.0.1:5353\n")
        r = self.d.cli("port", "web", "443", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no public port '443/tcp' published for 'web'", r.stderr.decode())

    def test_3_conflicts_refused(self):
        st, body = self.d.request("POST", "/v1/instances",
                                  {"name": "dup", "ports": [{"host_port": 8080, "guest_port": 80}]})
        self.assertEqual(st, 409, body)
        self.assertIn("port 127.0.0.1:8080/tcp is already published by instance 'web'",
                      body["message"])
        r = self.d.cli("run", "-d", "--name", "dup", "-p", "0.0.0.0:8080:80", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("port 0.0.0.0:8080/tcp overlaps 127.0.0.1:8080/tcp, published by instance "
                      "'web'", r.stderr.decode())
        # A host port another process holds: found by a bind probe, refused.
        holder = subprocess.Popen(["ip", "netns", "exec", self.ns.name, sys.executable, "-c",
                                   LISTEN, "127.0.0.1", "9090"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        try:
            self.assertEqual(holder.stdout.readline(), b"up\n")
            st, body = self.d.request("POST", "/v1/instances", {
                "name": "dup", "ports": [{"host_port": 9090, "guest_port": 80}]})
            self.assertEqual(st, 409, body)
            self.assertIn("host port 127.0.0.1:9090/tcp is in use by another process",
                          body["message"])
        finally:
            holder.stdin.close()
            holder.stdout.close()
            holder.wait(timeout=30)
        st, body = self.d.request("POST", "/v1/instances", {
            "name": "dup", "ports": [{"host_ip": "10.9.9.9", "host_port": 80, "guest_port": 80}]})
        self.assertEqual(st, 400, body)
        self.assertIn("10.9.9.9 is not an address of this host", body["message"])
        st, body = self.d.request("POST", "/v1/instances", {
            "name": "dup", "network": "none", "ports": [{"host_port": 7000, "guest_port": 80}]})
        self.assertEqual(st, 400, body)
        self.assertIn("published ports need a network", body["message"])
        # None of them left anything behind.
        self.assertEqual(self.d.request("GET", "/v1/instances/dup")[0], 404)
        self.assertNotIn("7000", self.table())

    def test_4_standby_restore(self):
        self.d.cli("standby", "web")
        self.assertEqual(self.elements("10.88.0.2"), [])  # no VMM: nothing to lead to
        self.assertIsNone(self.get("127.0.0.1", 8080, wait=1))
        self.d.cli("restore", "web")
        self.assertEqual(len(self.elements("10.88.0.2")), 3)
        self.assertEqual(self.get("127.0.0.1", 8080), "hello-from-web\n")
        self.assertEqual(self.get("192.168.77.1", 8081, ns=self.out), "hello-from-web\n")

    def test_5_failure_between_steps_leaves_nothing(self):
        # Fail after the TAP exists and before its ports are published, then after they are and
        # before the VMM runs: the run fails and leaves no instance, TAP or map element.
        for point in ("net.tap", "net.rules"):
            with open(self.fp, "w") as f:
                f.write(f"{point}=error")
            try:
                r = self.d.cli("run", "-d", "--name", "half", "-p", "7070:80", check=False)
            finally:
                with open(self.fp, "w") as f:
                    f.write("")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(f"failpoint '{point}'", r.stderr.decode())
            self.assertEqual(self.d.request("GET", "/v1/instances/half")[0], 404)
            self.assertNotIn("tp0a580003", self.ns.links())
            self.assertEqual(self.elements("10.88.0.3"), [])
            self.assertNotIn("7070", self.table())
        # The port and the address are free: the same run works now.
        self.d.cli("run", "-d", "--name", "half", "-p", "7070:80")
        guest(self.d, "half", HTTPD.format("half"))
        self.assertEqual(self.get("127.0.0.1", 7070), "hello-from-half\n")
        self.d.cli("rm", "-f", "half")
        self.assertEqual(self.elements("10.88.0.3"), [])

    def test_5b_crash_between_steps(self):
        # torpord dies with the ports published and no VMM yet: the restart removes the run
        # and rebuilds the maps without them.
        with open(self.fp, "w") as f:
            f.write("net.rules=crash-daemon")
        t = threading.Thread(target=self._send_quietly, args=(
            {"name": "crash", "ports": [{"host_port": 7171, "guest_port": 80}]},))
        t.start()
        rc = self.d.proc.wait(timeout=120)
        t.join(timeout=60)
        self.d.log.close()
        with open(self.fp, "w") as f:
            f.write("")
        self.assertEqual(rc, -9, self.d.read_log())
        self.assertIn("7171", self.table())  # published by the dead daemon
        self.start()
        self.assertEqual(self.d.request("GET", "/v1/instances/crash")[0], 404)
        self.assertNotIn("7171", self.table())
        self.assertEqual(self.elements("10.88.0.3"), [])
        self.assertEqual(self.get("127.0.0.1", 8080), "hello-from-web\n")

    def _send_quietly(self, body):
        try:
            self.d.request("POST", "/v1/instances", body)
        except Exception:
            pass  # the connection dies with the daemon

    def test_6_isolation(self):
        # web and iso are isolated: no layer 2 between them, the gateway for both.
        self.d.cli("run", "-d", "--name", "iso")
        ip = inspect(self.d, "iso")["network"]["ip"]
        out = guest(self.d, "iso", "ping -c 2 -W 2 10.88.0.2 || true; ping -c 1 -W 3 10.88.0.1")
        self.assertIn("2 packets transmitted, 0 packets received", out)
        self.assertIn("1 packets transmitted, 1 packets received", out)
        self.assertIn("0 packets received",
                      guest(self.d, "web", f"ping -c 2 -W 2 {ip} || true"))
        # Nor through the host: a route via the gateway to the other guest is dropped.
        out = guest(self.d, "iso", "ip route add 10.88.0.2/32 via 10.88.0.1; "
                                   "ping -c 2 -W 2 10.88.0.2 || true; ip route del 10.88.0.2/32")
        self.assertIn("2 packets transmitted, 0 packets received", out)
        # No guest sends with another's address (here web's): dropped at its TAP.
        out = guest(self.d, "iso", "ip addr add 10.88.0.2/16 dev eth0; "
                                   "ping -c 2 -W 2 -I 10.88.0.2 10.88.0.1 || true; "
                                   "ip addr del 10.88.0.2/16 dev eth0")
        self.assertIn("2 packets transmitted, 0 packets received", out)
        # web still answers at its own address.
        self.assertEqual(self.get("127.0.0.1", 8080), "hello-from-web\n")
        # Two shared VMs reach each other.
        self.d.cli("run", "-d", "--name", "sh1", "--network-mode", "shared")
        self.d.cli("run", "-d", "--name", "sh2", "--network-mode", "shared")
        self.assertEqual(inspect(self.d, "sh1")["network"]["mode"], "shared")
        ip2 = inspect(self.d, "sh2")["network"]["ip"]
        self.assertIn("1 packets received", guest(self.d, "sh1", f"ping -c 1 -W 3 {ip2}"))
        self.assertIn("1 packets received", guest(self.d, "sh2", "ping -c 1 -W 3 10.88.0.1"))
        links = json.loads(self.ns.run("bridge", "-j", "-d", "link", "show").stdout)
        iso = {l["ifname"]: l.get("isolated") for l in links}
        self.assertTrue(iso["tp0a580002"])
        self.assertFalse(iso[inspect(self.d, "sh1")["network"]["tap"]])
        for n in ("iso", "sh1", "sh2"):
            self.d.cli("rm", "-f", n)

    def test_7_fork_child_publishes_nothing(self):
        self.d.cli("fork", "web", "--name", "kid")
        kid = inspect(self.d, "kid")
        self.assertEqual(kid["ports"], [])
        self.assertEqual(kid["network"]["mode"], "isolated")
        self.assertEqual(self.d.cli("port", "kid").stdout.decode(), "")
        self.assertEqual(self.elements(kid["network"]["ip"]), [])
        self.assertEqual(self.get("127.0.0.1", 8080), "hello-from-web\n")  # still the parent's
        self.d.cli("rm", "-f", "kid")

    def test_7b_fork_child_publishes_what_is_asked(self):
        # Asked for: the child's own host port leads to the child (a copy of web, server
        # included); the parent's stays the parent's.
        self.d.cli("fork", "web", "--name", "kid2", "-p", "8091:80")
        kid = inspect(self.d, "kid2")
        self.assertEqual(self.d.cli("port", "kid2").stdout.decode(), "80/tcp -> 127.0.0.1:8091\n")
        self.assertEqual(self.elements(kid["network"]["ip"]) != [], True)
        self.assertEqual(self.get("127.0.0.1", 8091), "hello-from-web\n")
        self.assertEqual(self.get("127.0.0.1", 8080), "hello-from-web\n")
        # A host port already published is refused, and so is -p with several children.
        p = self.d.cli("fork", "web", "--name", "kid3", "-p", "8080:80", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"already published", p.stderr)
        p = self.d.cli("fork", "web", "--count", "2", "-p", "8092:80", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"one child", p.stderr)
        names = {i["name"] for i in self.d.request("GET", "/v1/instances?all=true")[1]["instances"]}
        self.assertNotIn("kid3", names)
        self.d.cli("rm", "-f", "kid2")
        self.assertEqual(self.elements(kid["network"]["ip"]), [])

    def test_8_restart_reclaims(self):
        # A leftover element for a guest no instance has (a crash could leave one), and web's
        # published ports, through a kill -9 and a restart.
        self.ns.run("nft", "add element inet torpor ports { 127.0.0.1 . tcp . 6060 : "
                           "10.88.0.99 . 80 }")
        self.d.kill9()
        self.assertEqual(self.get("127.0.0.1", 8080), "hello-from-web\n")  # no daemon needed
        self.start()
        self.assertEqual(self.elements("10.88.0.99"), [])
        self.assertEqual(len(self.elements("10.88.0.2")), 3)
        self.assertEqual(self.get("127.0.0.1", 8080), "hello-from-web\n")

    def test_9_rm_unpublishes(self):
        web = inspect(self.d, "web")
        self.d.cli("rm", "-f", "web")
        self.assertEqual(self.elements("10.88.0.2"), [])
        self.assertNotIn(web["id"], self.table())
        self.assertIsNone(self.get("127.0.0.1", 8080, wait=1))


class PortsNoPrivilege(unittest.TestCase):
    def test_no_cap_net_admin(self):
        # torpord --network without CAP_NET_ADMIN: refused at start, naming the cause, nothing
        # left in the namespace.
        ns = Netns("nocap")
        d = Daemon(netns=ns.name)
        d.prefix += ["setpriv", "--bounding-set", "-net_admin"]
        try:
            with self.assertRaises(RuntimeError) as cm:
                d.start(extra=["--network"])
            self.assertIn("Operation not permitted", str(cm.exception))
            self.assertEqual(set(ns.links()), {"lo"})
            self.assertNotIn("torpor", ns.run("nft", "list", "tables").stdout)
        finally:
            d.cleanup()
            ns.delete()

    def test_no_network_daemon(self):
        ns = Netns("noports")
        d = Daemon(netns=ns.name)
        try:
            d.start()
            st, body = d.request("POST", "/v1/instances",
                                 {"ports": [{"host_port": 8080, "guest_port": 80}]})
            self.assertEqual(st, 501, body)
            self.assertIn("published ports need a network: start torpord with --network",
                          body["message"])
        finally:
            d.cleanup()
            ns.delete()


if __name__ == "__main__":
    main()
