"""torpor run IMAGE: OCI images built here (ocibuild.py) in torpord's store, run as docker runs
containers: entrypoint/cmd/env/workdir/user and run's overrides, exit code in inspect and wait,
output in logs, whiteouts, hostile layers, bad images, standby/restore/fork, a shared base."""
import json
import os
import shutil
import subprocess
import tempfile

import harness
import oci_registry
import ocibuild

LIB = "docker.io/library/"


def echo_env_config(code):
    return {"Entrypoint": ["/bin/sh", "-c"],
            "Cmd": [f"echo \"hello from $HOSTNAME\"; env | sort; id; pwd; exit {code}"],
            "Env": ["FOO=image", "PATH=/usr/local/bin:/usr/bin:/bin"], "WorkingDir": "/srv"}


class OciRun(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.store = os.path.join(cls.d.data_dir, "images")
        cls.bb = ocibuild.busybox_members()
        cls.digest = ocibuild.build(cls.store, LIB + "envy:latest", [cls.bb],
                                    config=echo_env_config(3))
        ocibuild.build(cls.store, LIB + "bb:latest",
                       [ocibuild.busybox_members(extra_applets=("printf", "seq"))],
                       config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})

    def rootfs_dir(self):
        return os.path.join(self.store, "rootfs")

    def test_entrypoint_env_exit_code(self):
        p = self.d.cli("run", "--name", "envy", "envy", check=False)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertTrue(out.startswith("hello from envy\n"), out)  # nothing but the workload's
        self.assertIn("hello from envy", out)
        self.assertIn("FOO=image", out)
        self.assertIn("PATH=/usr/local/bin:/usr/bin:/bin", out)  # the image's, kept
        self.assertIn("HOME=/root", out)
        self.assertIn("uid=0(root)", out)
        self.assertIn("\n/srv\n", out)
        _, inst = self.d.request("GET", "/v1/instances/envy")
        self.assertEqual(inst["state"], "Stopped")
        self.assertEqual(inst["exit_code"], 3)
        self.assertIsNone(inst["last_error"])
        self.assertEqual(inst["image"], LIB + "envy:latest")
        self.assertEqual(inst["image_digest"], self.digest)
        self.assertEqual(self.d.cli("wait", "envy").stdout, b"3\n")
        self.assertEqual(self.d.cli("logs", "envy").stdout, p.stdout)
        # start boots the workload again, from the same spec.
        self.d.cli("start", "envy")
        self.d.wait_state("envy", "Stopped", 120000)
        self.assertEqual(self.d.cli("wait", "envy").stdout, b"3\n")
        self.d.cli("rm", "envy")

    def test_overrides(self):
        p = self.d.cli("run", "--rm", "-e", "FOO=over", "-e", "NEW=1", "-w", "/work", "-u", "app",
                       "envy", "echo \"$FOO $NEW $HOME\"; id -u; pwd; exit 7", check=False)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 7, p.stderr)
        self.assertIn("over 1 /home/app", out)
        self.assertIn("\n1000\n", out)
        self.assertIn("\n/work\n", out)
        # --entrypoint drops the image's Cmd; CMD after the image is its arguments.
        p = self.d.cli("run", "--rm", "--entrypoint", "/bin/echo", "envy", "just", "args",
                       check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"just args\n")
        _, insts = self.d.request("GET", "/v1/instances?all=true")
        self.assertEqual([i for i in insts["instances"] if i["image"]], [])  # --rm removed both

    def test_output_exact(self):
        # docker run prints exactly the container's bytes: no kernel or agent lines, no \r.
        p = self.d.cli("run", "--rm", "bb", "echo", "hello", check=False)
        self.assertEqual((p.returncode, p.stdout), (0, b"hello\n"), p.stderr)
        # Binary bytes, control characters included, come back unmodified.
        want = b"a\rb\n\x00\x01\x03\x04\x11\x13\x1a\x1b[0m\x7f\xff\r\n\tend"
        fmt = "".join(f"\\{c:03o}" for c in want)
        p = self.d.cli("run", "--rm", "bb", "printf", fmt, check=False)
        self.assertEqual((p.returncode, p.stdout), (0, want), p.stderr)
        # stderr appears too (one console: docker run -t's single stream), in order, and all
        # of a larger output reaches the host before the guest goes down.
        p = self.d.cli("run", "--rm", "bb", "sh", "-c", "echo out; echo err >&2; seq 1 3000",
                       check=False)
        want = b"out\nerr\n" + b"".join(b"%d\n" % n for n in range(1, 3001))
        self.assertEqual((p.returncode, p.stdout), (0, want), p.stderr)

    def test_logs_exact_kernel_log_apart(self):
        self.d.cli("run", "--name", "lg", "bb", "sh", "-c", "echo hello; echo oops >&2; exit 5",
                   check=False)
        self.d.wait_state("lg", "Stopped", 60000)
        self.assertEqual(self.d.cli("logs", "lg").stdout, b"hello\noops\n")
        self.assertEqual(self.d.cli("wait", "lg").stdout, b"5\n")
        # The kernel's console and the agent's lines: in their own file, kept for diagnosis.
        logs = os.path.join(self.d.inst_dir("lg"), "logs")
        with open(os.path.join(logs, "kernel.log"), "rb") as f:
            klog = f.read()
        self.assertIn(b"torpor-agent: ready", klog)
        self.assertIn(b"torpor-agent: workload exited with code 5", klog)
        with open(os.path.join(logs, "console.log"), "rb") as f:
            self.assertEqual(f.read(), b"hello\noops\n")
        # A second boot appends to both.
        self.d.cli("start", "lg")
        self.d.wait_state("lg", "Stopped", 120000)
        self.assertEqual(self.d.cli("logs", "lg").stdout, b"hello\noops\n" * 2)
        with open(os.path.join(logs, "kernel.log"), "rb") as f:
            self.assertEqual(f.read().count(b"workload exited with code 5"), 2)
        self.d.cli("rm", "lg")

    def test_entrypoint_errors(self):
        # As docker run: 127 when the command is not found, 126 when it cannot be run; the
        # runtime's words on the workload's stderr.
        p = self.d.cli("run", "--rm", "bb", "nosuchcmd", check=False)
        self.assertEqual(p.returncode, 127, p.stderr)
        self.assertIn(b'exec: "nosuchcmd": executable file not found in $PATH', p.stdout)
        p = self.d.cli("run", "--rm", "bb", "/no/such", check=False)
        self.assertEqual(p.returncode, 127, p.stderr)
        self.assertIn(b'exec: "/no/such": stat /no/such: no such file or directory', p.stdout)
        p = self.d.cli("run", "--rm", "--entrypoint", "/etc/hostname", "bb", check=False)
        self.assertEqual(p.returncode, 126, p.stderr)
        self.assertIn(b'exec: "/etc/hostname": permission denied', p.stdout)

    def test_interactive(self):
        # -i: the workload is exec'd attached to our stdin (not started at boot), in the
        # image's env and working dir; its code is ours; --rm removes the VM after.
        p = self.d.cli("run", "-i", "--rm", "--entrypoint", "/bin/sh", "envy", "-c",
                       "read line; echo \"got $line in $(pwd) with $FOO\"; exit 4",
                       input=b"hello\n", check=False)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertEqual(p.stdout, b"got hello in /srv with image\n")
        _, insts = self.d.request("GET", "/v1/instances?all=true")
        self.assertEqual([i for i in insts["instances"] if i["image"]], [])

    def test_whiteout_and_opaque(self):
        lower = self.bb + [("gone", "file", "x", None), ("opq", "dir", None, None),
                           ("opq/old", "file", "x", None), ("keep", "file", "k", None)]
        upper = [(".wh.gone", "file", "", None), ("opq/.wh..wh..opq", "file", "", None),
                 ("opq/new", "file", "n", None)]
        ocibuild.build(self.store, LIB + "wh:1", [lower, upper], compression="zstd", config={
            "Cmd": ["/bin/sh", "-c", "test ! -e /gone && test ! -e /opq/old && test -e /opq/new"
                    " && test -e /keep && ls /opq"]})
        p = self.d.cli("run", "--rm", "wh:1", check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_hostile_layers(self):
        escape = [("etc2", "symlink", "/etc", None), ("up", "symlink", "../../../../..", None)]
        through = [("up/pwned-by-torpor-test", "file", "evil", None)]
        ocibuild.build(self.store, LIB + "contained:1", [self.bb + escape, through],
                       config={"Cmd": ["/bin/cat", "/pwned-by-torpor-test"]})
        p = self.d.cli("run", "--rm", "contained:1", check=False)
        # Contained: the write landed at the tree's root, nowhere on the host.
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"evil", p.stdout)
        self.assertFalse(os.path.exists("/pwned-by-torpor-test"))
        for name, member in (("dotdot", ("../../outside-by-torpor-test", "file", "x", None)),
                             ("hardlink", ("stolen", "hardlink", "../../../../etc/shadow", None))):
            ocibuild.build(self.store, LIB + name + ":1", [self.bb, [member]],
                           config={"Cmd": ["/bin/true"]})
            p = self.d.cli("run", "--rm", name + ":1", check=False)
            self.assertEqual(p.returncode, 125)
            self.assertIn(b"outside the tree", p.stderr)
        self.assertEqual([n for n in os.listdir(self.rootfs_dir()) if n.startswith("tmp-")], [])
        _, insts = self.d.request("GET", "/v1/instances?all=true")
        self.assertNotIn("dotdot", json.dumps(insts))

    def test_bad_images(self):
        before = self.d.request("GET", "/v1/instances?all=true")[1]
        status, body = self.d.request("POST", "/v1/instances", {"image": "nosuch:tag"})
        self.assertEqual(status, 404)
        self.assertIn("No such image", body["message"])
        p = self.d.cli("run", "nosuch:tag", check=False)
        self.assertEqual(p.returncode, 125)
        status, _ = self.d.request("POST", "/v1/instances", {"image": "envy", "rootfs": "/x"})
        self.assertEqual(status, 400)
        status, _ = self.d.request("POST", "/v1/instances", {"env": ["A=1"]})
        self.assertEqual(status, 400)
        ocibuild.build(self.store, LIB + "bz:1", [self.bb], compression="gzip",
                       layer_media_type="application/vnd.oci.image.layer.v1.tar+bzip2")
        p = self.d.cli("run", "bz:1", check=False)
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"unsupported layer media type", p.stderr)
        ocibuild.build(self.store, LIB + "nocmd:1", [self.bb], config={})
        p = self.d.cli("run", "nocmd:1", check=False)
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"no command specified", p.stderr)
        ocibuild.build(self.store, LIB + "arm:1", [self.bb], architecture="arm64")
        p = self.d.cli("run", "arm:1", check=False)
        self.assertIn(b"arm64", p.stderr)
        # A corrupt gzip layer (its digest matches: it was stored so): a clear error, nothing
        # half-built left.
        good = ocibuild.layer([("f", "file", "x" * 4096, None)])
        bad = good[:20] + bytes(b ^ 0x5A for b in good[20:60]) + good[60:]
        digest = ocibuild.build(self.store, LIB + "corrupt:1", [self.bb, bad])
        p = self.d.cli("run", "corrupt:1", check=False)
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"unpack layer 2/2", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.rootfs_dir(), digest[7:] + ".ext4")))
        self.assertEqual([n for n in os.listdir(self.rootfs_dir()) if n.startswith("tmp-")], [])
        self.assertEqual(self.d.request("GET", "/v1/instances?all=true")[1], before)

    def test_standby_restore_fork_stop_signal(self):
        ocibuild.build(self.store, LIB + "svc:1", [self.bb], config={
            "Cmd": ["/bin/sh", "-c", "trap 'echo got-quit; exit 42' QUIT; echo started; "
                    "while true; do sleep 0.1; done"], "StopSignal": "SIGQUIT"})
        self.d.cli("run", "-d", "--name", "svc", "svc:1")
        self.d.cli("exec", "svc", "sh", "-c", "echo before > /root/state")
        self.d.cli("standby", "svc")
        self.d.cli("restore", "svc")
        self.assertEqual(self.d.cli("exec", "svc", "cat", "/root/state").stdout, b"before\n")
        # The restored VM has its boot's device set: the workload's port and the kernel's.
        self.assertEqual(self.d.cli("logs", "svc").stdout, b"started\n")
        with open(os.path.join(self.d.inst_dir("svc"), "logs", "kernel.log"), "rb") as f:
            self.assertIn(b"torpor-agent: ready", f.read())
        child = self.d.cli("fork", "svc").stdout.decode().split()[0]
        _, c = self.d.request("GET", f"/v1/instances/{child}")
        self.assertEqual(c["image"], LIB + "svc:1")
        self.assertEqual(self.d.cli("exec", child, "cat", "/root/state").stdout, b"before\n")
        # stop: the image's StopSignal first; the workload's code is the instance's.
        self.d.cli("stop", child)
        self.assertEqual(self.d.cli("wait", child).stdout, b"42\n")
        self.assertIn(b"got-quit", self.d.cli("logs", child).stdout)
        self.assertEqual(self.d.cli("exec", "svc", "echo", "alive").stdout, b"alive\n")
        self.d.cli("kill", "svc")
        self.assertEqual(self.d.cli("wait", "svc").stdout, b"137\n")
        self.d.cli("rm", "svc", child)

    def test_shared_base_disk(self):
        ocibuild.build(self.store, LIB + "share:1", [self.bb], config={"Cmd": ["/bin/true"]})
        self.d.cli("run", "-d", "--name", "sh1", "share:1")
        self.d.cli("run", "-d", "--name", "sh2", "share:1")
        a_digest = self.d.request("GET", "/v1/instances/sh1")[1]["image_digest"]
        phases = [[p["name"] for p in self.d.request("GET", f"/v1/instances/{n}")[1]
                   ["last_operation"]["phases"]] for n in ("sh1", "sh2")]
        self.assertIn("image_rootfs_cached", phases[1])
        # --disk-size grows this VM's copy, not the shared base.
        self.d.cli("run", "-d", "--name", "sh3", "--disk-size", "1G", "share:1")
        st = subprocess.run(["debugfs", "-R", "stats", os.path.join(self.d.inst_dir("sh3"),
                             "root.ext4")], capture_output=True, text=True).stdout
        blocks = int(next(l for l in st.splitlines() if l.startswith("Block count:")).split()[2])
        self.assertEqual(blocks * 4096, 1 << 30)
        self.assertLess(os.path.getsize(os.path.join(self.rootfs_dir(),
                        a_digest[7:] + ".ext4")), 1 << 30)
        self.d.wait_state("sh3", "Stopped", 60000)
        self.d.cli("rm", "sh3")
        # ps: docker's IMAGE column, the familiar name.
        ps = self.d.cli("ps", "-a").stdout.decode().splitlines()
        self.assertEqual(ps[0].split()[:3], ["ID", "IMAGE", "NAME"])
        self.assertIn(["share:1", "sh1"], [r.split()[1:3] for r in ps[1:]])
        _, a = self.d.request("GET", "/v1/instances/sh1")
        disks = [n for n in os.listdir(self.rootfs_dir()) if n.endswith(".ext4")]
        self.assertIn(a["image_digest"][7:] + ".ext4", disks)
        # Each VM has its own copy: removing the cached base breaks neither.
        os.unlink(os.path.join(self.rootfs_dir(), a["image_digest"][7:] + ".ext4"))
        self.d.cli("start", "sh1")
        self.d.wait_state("sh1", "Stopped", 120000)
        self.assertEqual(self.d.cli("wait", "sh1").stdout, b"0\n")
        self.assertEqual(self.d.cli("wait", "sh2").stdout, b"0\n")
        self.d.cli("rm", "sh1", "sh2")

    def test_rmi_keeps_instances(self):
        digest = ocibuild.build(self.store, LIB + "gc:1", [self.bb], config={"Cmd": ["/bin/true"]})
        self.d.cli("run", "-d", "--name", "gc1", "gc:1")
        disk = os.path.join(self.rootfs_dir(), digest[7:] + ".ext4")
        self.assertTrue(os.path.exists(disk))
        # docker refuses an image a container uses unless forced; forced, the instance keeps
        # its own disk.
        self.assertNotEqual(self.d.cli("rmi", "gc:1", check=False).returncode, 0)
        self.d.cli("rmi", "-f", "gc:1")
        self.assertFalse(os.path.exists(disk))  # gone with its manifest
        self.d.cli("start", "gc1")  # the instance's own copy
        self.d.wait_state("gc1", "Stopped", 120000)
        self.assertEqual(self.d.cli("wait", "gc1").stdout, b"0\n")
        self.d.cli("rm", "gc1")

    def test_daemon_restart(self):
        # torpord restarts under a running workload: it adopts the VMM; the workload's end is
        # still seen, with its code.
        ocibuild.build(self.store, LIB + "long:1", [self.bb], config={
            "Cmd": ["/bin/sh", "-c", "echo $$ > /run/wl.pid; trap 'exit 42' TERM; "
                    "while true; do sleep 0.1; done"]})
        self.d.cli("run", "-d", "--name", "long", "long:1")
        self.d.stop()
        self.d.start()
        # run -d returns once the agent is up; the workload writes its pid soon after (bounded)
        self.d.cli("exec", "long", "sh", "-c", "for i in $(seq 300); do [ -s /run/wl.pid ] && "
                   "break; sleep 0.1; done; kill -TERM $(cat /run/wl.pid)")
        self.d.wait_state("long", "Stopped", 60000)
        self.assertEqual(self.d.cli("wait", "long").stdout, b"42\n")
        _, inst = self.d.request("GET", "/v1/instances/long")
        self.assertIsNone(inst["last_error"])
        self.d.cli("rm", "long")

    def test_stale_build_dir_removed_at_start(self):
        stale = os.path.join(self.rootfs_dir(), "tmp-killed")
        os.makedirs(os.path.join(stale, "tree"), exist_ok=True)
        self.d.stop()
        self.d.start()
        self.assertFalse(os.path.exists(stale))


class RunPulls(harness.DaemonTest):
    """run IMAGE of an image torpord lacks: "No such image", the CLI pulls it from a real
    registry on 127.0.0.1 and creates again, as the docker CLI does."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tp-runpull-", dir="/tmp")
        cls.reg = oci_registry.Registry(cls.tmp).start()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.reg.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_run_pulls_docker_image(self):
        img = oci_registry.Image([ocibuild.layer(ocibuild.busybox_members())], docker=True,
                                 env=["PATH=/bin", "GREETING=pulled"],
                                 cmd=["/bin/sh", "-c", "echo $GREETING; exit 9"])
        img.push(self.reg, "t/app", "v1")
        ref = f"{self.reg.host}/t/app:v1"
        p = self.d.cli("run", "--name", "pulled", ref, check=False)
        self.assertEqual(p.returncode, 9, p.stderr)
        self.assertIn(f"Unable to find image '{ref}' locally".encode(), p.stderr)
        self.assertIn(b"pulled", p.stdout)
        _, inst = self.d.request("GET", "/v1/instances/pulled")
        self.assertEqual(inst["image"], ref)
        self.assertEqual(inst["image_digest"], img.digest)
        # Present now: no second pull.
        p = self.d.cli("run", "--rm", ref, check=False)
        self.assertEqual(p.returncode, 9)
        self.assertNotIn(b"Unable to find image", p.stderr)
        # A reference no registry has: the pull's error, exit 125, no instance.
        p = self.d.cli("run", f"{self.reg.host}/t/none:v1", check=False)
        self.assertEqual(p.returncode, 125)
        self.d.cli("rm", "pulled")


if __name__ == "__main__":
    harness.main()
