"""The Firecracker double (tests/fc-double) against its own contract: flags, API socket, HTTP,
spec-driven body validation, phase rules, snapshot files, File/Uffd restore, vsock to the agent.

Real processes only. Nothing sleeps to synchronise: the API socket is awaited with inotify,
HTTP replies are synchronous, and the fake guest writes its counter page at every start/resume.
"""
import ctypes
import ctypes.util
import fcntl
import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import unittest

FC_DOUBLE = os.environ.get("FC_DOUBLE", "build/tests/fc-double/fc-double")
SPEC = os.environ.get("FC_DOUBLE_SPEC", "")
AGENT = os.environ.get("TORPOR_AGENT", "build/guest-agent/torpor-agent")
PAGE = 4096
MIB = 1 << 20

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
IN_CREATE = 0x100


def wait_for_path(path, proc, timeout=10.0):
    """Block until path exists (inotify on its directory) or proc exits."""
    fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    assert fd >= 0
    try:
        assert libc.inotify_add_watch(fd, os.path.dirname(path).encode(), IN_CREATE) >= 0
        while not os.path.exists(path):
            if proc.poll() is not None:
                raise AssertionError(f"fc-double exited {proc.returncode} before its socket")
            r, _, _ = select.select([fd], [], [], timeout)
            if not r:
                raise AssertionError(f"{path} did not appear")
            try:
                os.read(fd, 4096)
            except BlockingIOError:
                pass
    finally:
        os.close(fd)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        # bound but maybe not yet listening: retry refused connects briefly
        for _ in range(1000):
            try:
                self.sock.connect(self.unix_path)
                return
            except ConnectionRefusedError:
                select.select([], [], [], 0.001)
        self.sock.connect(self.unix_path)


class Double:
    def __init__(self, tmp, name="fc", extra=(), env=None):
        self.sock = os.path.join(tmp, name + ".sock")
        self.out = open(os.path.join(tmp, name + ".out"), "wb+")
        self.err = open(os.path.join(tmp, name + ".err"), "wb+")
        e = dict(os.environ, FC_DOUBLE_SPEC=SPEC, FC_DOUBLE_AGENT=AGENT, **(env or {}))
        self.proc = subprocess.Popen([FC_DOUBLE, "--api-sock", self.sock, "--id", name, *extra],
                                     stdout=self.out, stderr=self.err, env=e)
        wait_for_path(self.sock, self.proc)
        self.conn = UnixHTTP(self.sock)

    def call(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        self.conn.request(method, path, body=data,
                          headers={"Content-Type": "application/json"} if data else {})
        r = self.conn.getresponse()
        payload = r.read()
        assert r.getheader("Server") == "Firecracker API"
        return r.status, (json.loads(payload) if payload else None)

    def ok(self, method, path, body=None):
        st, b = self.call(method, path, body)
        if st not in (200, 204):
            raise AssertionError(f"{method} {path} -> {st} {b}\n{self.stderr()}")
        return b

    def fault(self, method, path, body=None, raw=None):
        st, b = self.call(method, path, body, raw)
        assert st == 400, (method, path, st, b)
        return b["fault_message"]

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stdout(self):
        self.out.seek(0)
        return self.out.read().decode(errors="replace")

    def state(self):
        return self.ok("GET", "/")["state"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.conn.close()

    def close_files(self):
        self.out.close()
        self.err.close()

    def check_clean_exit_log(self):
        log = self.stderr()
        assert "Sanitizer" not in log and "runtime error:" not in log, log


def data_offsets(path):
    """(start, end) extents of data in a sparse file, via SEEK_DATA/SEEK_HOLE."""
    out = []
    with open(path, "rb") as f:
        fd, off, size = f.fileno(), 0, os.fstat(f.fileno()).st_size
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            out.append((d, h))
            off = h
    return out


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class FcDoubleTest(unittest.TestCase):
    def setUp(self):
        if not SPEC or not os.path.exists(SPEC):
            raise unittest.SkipTest(f"Firecracker API spec not found ({SPEC!r})")
        self.tmp = tempfile.mkdtemp(prefix="fcd-", dir="/tmp")
        self.kernel = os.path.join(self.tmp, "vmlinux")
        with open(self.kernel, "wb") as f:
            f.write(b"\x7fELF" + bytes(60))
        self.rootfs = os.path.join(self.tmp, "rootfs.ext4")
        with open(self.rootfs, "wb") as f:
            f.truncate(MIB)
        self.doubles = []

    def tearDown(self):
        for d in self.doubles:
            d.kill()
            d.check_clean_exit_log()
            d.close_files()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def spawn(self, name="fc", **kw):
        d = Double(self.tmp, name, **kw)
        self.doubles.append(d)
        return d

    def boot(self, d, mem_mib=64, track=True, vsock=None):
        d.ok("PUT", "/boot-source", {"kernel_image_path": self.kernel,
                                     "boot_args": "console=ttyS0 reboot=k panic=1"})
        d.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": mem_mib,
                                        "track_dirty_pages": track})
        d.ok("PUT", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": self.rootfs,
                                       "is_root_device": True, "is_read_only": False})
        if vsock:
            d.ok("PUT", "/vsock", {"guest_cid": 3, "uds_path": vsock})
        d.ok("PUT", "/actions", {"action_type": "InstanceStart"})
        self.assertEqual(d.state(), "Running")

    # --- process ---

    def test_flags_version_and_unknown(self):
        p = subprocess.run([FC_DOUBLE, "--version"], capture_output=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"Firecracker v1.16.1", p.stdout)
        p = subprocess.run([FC_DOUBLE, "--seccomp-level", "0"], capture_output=True)
        self.assertEqual(p.returncode, 153)
        self.assertIn(b"wasn't expected", p.stderr)
        p = subprocess.run([FC_DOUBLE, "--id", "bad id!"], capture_output=True)
        self.assertNotEqual(p.returncode, 0)

    def test_socket_created_later_and_existing_path_refused(self):
        d = self.spawn(extra=["--no-seccomp", "--level", "Debug", "--show-level",
                              "--boot-timer"])
        info = d.ok("GET", "/")
        self.assertEqual(info, {"id": "fc", "state": "Not started", "vmm_version": "1.16.1",
                                "app_name": "Firecracker"})
        self.assertEqual(d.ok("GET", "/version"), {"firecracker_version": "1.16.1"})
        # the same path again: a second process must refuse it
        p = subprocess.run([FC_DOUBLE, "--api-sock", d.sock],
                           env=dict(os.environ, FC_DOUBLE_SPEC=SPEC), capture_output=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"Failed to open the API socket", p.stderr)

    # --- HTTP and validation ---

    def test_body_validation(self):
        d = self.spawn()
        m = d.fault("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, "bogus": 1})
        self.assertIn("unknown field `bogus`", m)
        m = d.fault("PUT", "/machine-config", {"vcpu_count": "1", "mem_size_mib": 64})
        self.assertIn("invalid type", m)
        self.assertIn("vcpu_count", m)
        m = d.fault("PUT", "/machine-config", {"vcpu_count": 1})
        self.assertIn("missing field `mem_size_mib`", m)
        m = d.fault("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                               "huge_pages": "1G"})
        self.assertIn("unknown variant `1G`", m)
        m = d.fault("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 64})
        self.assertIn("minimum", m)
        m = d.fault("PUT", "/vsock", {"guest_cid": 2, "uds_path": "/tmp/x"})
        self.assertIn("guest_cid", m)
        m = d.fault("PUT", "/drives/rootfs", {"drive_id": "rootfs", "is_root_device": True,
                                              "is_read_only": False, "path_on_host": "p",
                                              "rate_limiter": {"bandwidth": {"size": 1}}})
        self.assertIn("missing field `refill_time`", m)
        m = d.fault("PUT", "/drives/a", {"drive_id": "b", "is_root_device": False,
                                         "is_read_only": True, "path_on_host": self.rootfs})
        self.assertIn("does not match", m)
        self.assertIn("deserializing", d.fault("PUT", "/boot-source", raw="{not json"))
        self.assertEqual(d.fault("PUT", "/boot-source", raw=""), "Empty PUT request.")
        self.assertIn("Invalid request method and/or path",
                      d.fault("POST", "/machine-config", raw="{}"))
        self.assertIn("Invalid request method and/or path", d.fault("GET", "/nope"))
        self.assertIn("GET request cannot have a body", d.fault("GET", "/", raw="{}"))
        # the connection survived all of that (keep-alive), and nothing was configured
        self.assertEqual(d.ok("GET", "/machine-config")["mem_size_mib"], 128)
        # MMDS contents accept anything (additionalProperties: true)
        d.ok("PUT", "/mmds", {"any": {"thing": [1, 2]}})
        d.ok("PATCH", "/mmds", {"any": {"more": True}})
        self.assertEqual(d.ok("GET", "/mmds"), {"any": {"thing": [1, 2], "more": True}})

    def test_transport_error_body(self):
        d = self.spawn()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.sock)
        s.sendall(b"PUT /actions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        s.close()
        self.assertTrue(reply.startswith(b"HTTP/1.1 400"))
        self.assertIn(b"All previous unanswered requests will be dropped.", reply)

    # --- phase rules ---

    def test_boot_then_preboot_refused(self):
        d = self.spawn()
        self.assertIn("before starting", d.fault("PATCH", "/vm", {"state": "Paused"}))
        self.assertIn("without kernel", d.fault("PUT", "/actions",
                                                {"action_type": "InstanceStart"}))
        self.boot(d)
        self.assertIn("Linux version", d.stdout())
        after = "not supported after starting"
        self.assertIn(after, d.fault("PUT", "/boot-source", {"kernel_image_path": self.kernel}))
        self.assertIn(after, d.fault("PUT", "/machine-config", {"vcpu_count": 1,
                                                                "mem_size_mib": 64}))
        self.assertIn(after, d.fault("PUT", "/drives/data", {
            "drive_id": "data", "path_on_host": self.rootfs, "is_root_device": False,
            "is_read_only": True}))
        self.assertIn(after, d.fault("PUT", "/network-interfaces/eth0", {
            "iface_id": "eth0", "host_dev_name": "tap0"}))
        self.assertIn(after, d.fault("PUT", "/vsock", {"guest_cid": 3, "uds_path": "/tmp/v"}))
        self.assertIn(after, d.fault("PUT", "/actions", {"action_type": "InstanceStart"}))
        self.assertIn("unavailable while running", d.fault("PUT", "/snapshot/create", {
            "snapshot_path": os.path.join(self.tmp, "s"),
            "mem_file_path": os.path.join(self.tmp, "m")}))
        self.assertIn(after, d.fault("PUT", "/snapshot/load", {
            "snapshot_path": "/x", "mem_backend": {"backend_type": "File", "backend_path": "/y"}}))
        d.ok("PATCH", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": self.rootfs})
        d.ok("PATCH", "/vm", {"state": "Paused"})
        self.assertEqual(d.state(), "Paused")
        d.ok("PATCH", "/vm", {"state": "Paused"})  # accepted no-op
        d.ok("PATCH", "/vm", {"state": "Resumed"})
        self.assertEqual(d.state(), "Running")
        self.assertEqual(d.ok("GET", "/vm/config")["drives"][0]["drive_id"], "rootfs")

    def test_ctrl_alt_del_exits_zero(self):
        d = self.spawn()
        self.boot(d)
        d.ok("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
        self.assertEqual(d.proc.wait(timeout=30), 0)

    def test_load_refused_on_configured_process(self):
        d = self.spawn()
        d.ok("PUT", "/logger", {"log_path": os.path.join(self.tmp, "log"), "level": "Info"})
        d.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64})
        m = d.fault("PUT", "/snapshot/load", {
            "snapshot_path": "/x", "mem_backend": {"backend_type": "File", "backend_path": "/y"}})
        self.assertIn("not allowed after configuring boot-specific resources", m)

    def test_diff_needs_dirty_tracking(self):
        d = self.spawn()
        self.boot(d, track=False)
        d.ok("PATCH", "/vm", {"state": "Paused"})
        m = d.fault("PUT", "/snapshot/create", {
            "snapshot_type": "Diff", "snapshot_path": os.path.join(self.tmp, "s"),
            "mem_file_path": os.path.join(self.tmp, "m")})
        self.assertIn("dirty page tracking", m)

    # --- snapshots ---

    def test_full_diff_kill_load_file(self):
        t = self.tmp
        d = self.spawn("src")
        self.boot(d, mem_mib=64)
        d.ok("PATCH", "/vm", {"state": "Paused"})
        full_mem, full_state = os.path.join(t, "full.mem"), os.path.join(t, "full.state")
        d.ok("PUT", "/snapshot/create", {"snapshot_type": "Full", "snapshot_path": full_state,
                                         "mem_file_path": full_mem})
        self.assertEqual(os.path.getsize(full_mem), 64 * MIB)
        self.assertEqual(data_offsets(full_mem), [(0, 2 * PAGE)])  # header + counter pages
        # resume: the guest writes its counter page; nothing else is dirty
        d.ok("PATCH", "/vm", {"state": "Resumed"})
        d.ok("PATCH", "/vm", {"state": "Paused"})
        layer, diff_state = os.path.join(t, "layer.mem"), os.path.join(t, "diff.state")
        d.ok("PUT", "/snapshot/create", {"snapshot_type": "Diff", "snapshot_path": diff_state,
                                         "mem_file_path": layer})
        self.assertEqual(os.path.getsize(layer), 64 * MIB)
        self.assertEqual(data_offsets(layer), [(PAGE, 2 * PAGE)])
        # a second Diff straight onto the base (in place: right size), after another run
        d.ok("PATCH", "/vm", {"state": "Resumed"})
        d.ok("PATCH", "/vm", {"state": "Paused"})
        before = open(full_mem, "rb").read(PAGE)
        d.ok("PUT", "/snapshot/create", {"snapshot_type": "Diff", "snapshot_path": diff_state,
                                         "mem_file_path": full_mem})
        self.assertEqual(open(full_mem, "rb").read(PAGE), before)  # header page untouched
        p = subprocess.run([FC_DOUBLE, "--describe-snapshot", diff_state], capture_output=True)
        self.assertEqual(p.stdout.strip(), b"v10.0.0")
        d.kill()

        # the diff-only layer is not a resumable memory image: a fatal load
        bad = self.spawn("bad")
        m = bad.fault("PUT", "/snapshot/load", {
            "snapshot_path": diff_state,
            "mem_backend": {"backend_type": "File", "backend_path": layer}})
        self.assertIn("Load snapshot error", m)
        self.assertNotEqual(bad.proc.wait(timeout=30), 0)

        # the stale full state with the merged base: counter mismatch, fatal too
        stale = self.spawn("stale")
        stale.fault("PUT", "/snapshot/load", {
            "snapshot_path": full_state,
            "mem_backend": {"backend_type": "File", "backend_path": full_mem}})
        self.assertNotEqual(stale.proc.wait(timeout=30), 0)

        base_hash = sha(full_mem)
        n = self.spawn("dst")
        n.ok("PUT", "/logger", {"log_path": os.path.join(t, "dst.log")})
        n.ok("PUT", "/snapshot/load", {
            "snapshot_path": diff_state, "resume_vm": True, "track_dirty_pages": True,
            "mem_backend": {"backend_type": "File", "backend_path": full_mem}})
        self.assertEqual(n.state(), "Running")
        self.assertEqual(n.ok("GET", "/machine-config")["mem_size_mib"], 64)
        n.ok("PATCH", "/vm", {"state": "Paused"})
        n.ok("PUT", "/snapshot/create", {"snapshot_type": "Diff",
                                         "snapshot_path": os.path.join(t, "d2.state"),
                                         "mem_file_path": os.path.join(t, "d2.mem")})
        self.assertEqual(data_offsets(os.path.join(t, "d2.mem")), [(PAGE, 2 * PAGE)])
        self.assertEqual(sha(full_mem), base_hash)  # MAP_PRIVATE: the file never changes

    def test_load_deprecated_field_and_exclusive_backends(self):
        d = self.spawn("src")
        self.boot(d, mem_mib=16)
        d.ok("PATCH", "/vm", {"state": "Paused"})
        st, mem = os.path.join(self.tmp, "s"), os.path.join(self.tmp, "m")
        d.ok("PUT", "/snapshot/create", {"snapshot_path": st, "mem_file_path": mem})
        d.kill()
        both = self.spawn("both")
        m = both.fault("PUT", "/snapshot/load", {
            "snapshot_path": st, "mem_file_path": mem,
            "mem_backend": {"backend_type": "File", "backend_path": mem}})
        self.assertIn("mutually exclusive", m)
        self.assertIn("missing field", both.fault("PUT", "/snapshot/load", {"snapshot_path": st}))
        self.assertEqual(both.state(), "Not started")  # request errors are not fatal
        n = self.spawn("old")
        n.conn.request("PUT", "/snapshot/load", body=json.dumps({
            "snapshot_path": st, "mem_file_path": mem, "enable_diff_snapshots": True}))
        r = n.conn.getresponse()
        r.read()
        self.assertEqual(r.status, 204)
        self.assertEqual(r.getheader("Deprecation"), "true")
        self.assertEqual(n.state(), "Paused")

    def test_load_uffd(self):
        d = self.spawn("src")
        self.boot(d, mem_mib=16)
        d.ok("PATCH", "/vm", {"state": "Paused"})
        st, mem = os.path.join(self.tmp, "s"), os.path.join(self.tmp, "m")
        d.ok("PUT", "/snapshot/create", {"snapshot_path": st, "mem_file_path": mem})
        d.kill()
        uds = os.path.join(self.tmp, "pagefault-handler.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(uds)
        lsock.listen(1)
        n = self.spawn("uffd")
        result = {}
        t = threading.Thread(target=serve_uffd, args=(lsock, mem, result), daemon=True)
        t.start()
        n.ok("PUT", "/snapshot/load", {"snapshot_path": st, "resume_vm": True,
                                       "track_dirty_pages": True,
                                       "mem_backend": {"backend_type": "Uffd",
                                                       "backend_path": uds}})
        self.assertEqual(n.state(), "Running")
        self.assertEqual(result["regions"][0]["size"], 16 * MIB)
        self.assertEqual(result["regions"][0]["page_size"], PAGE)
        self.assertGreaterEqual(result["faults"], 2)
        result["stop"] = True
        n.kill()
        t.join(timeout=30)
        lsock.close()

    def test_config_file_boots(self):
        cfg = os.path.join(self.tmp, "vm.json")
        with open(cfg, "w") as f:
            json.dump({"boot-source": {"kernel_image_path": self.kernel},
                       "machine-config": {"vcpu_count": 2, "mem_size_mib": 32},
                       "drives": [{"drive_id": "rootfs", "path_on_host": self.rootfs,
                                   "is_root_device": True, "is_read_only": True}]}, f)
        d = self.spawn(extra=["--config-file", cfg])
        self.assertEqual(d.state(), "Running")
        self.assertEqual(d.ok("GET", "/vm/config")["machine-config"]["vcpu_count"], 2)
        with open(cfg, "w") as f:
            json.dump({"boot-source": {"kernel_image_path": self.kernel, "bogus": 1}}, f)
        p = subprocess.run([FC_DOUBLE, "--no-api", "--config-file", cfg],
                           env=dict(os.environ, FC_DOUBLE_SPEC=SPEC), capture_output=True)
        self.assertEqual(p.returncode, 152)
        self.assertIn(b"unknown field `bogus`", p.stderr)

    def test_fork_overrides_embedded_paths(self):
        if not os.path.exists(AGENT):
            self.skipTest("torpor-agent not built")
        t = self.tmp
        vs = os.path.join(t, "src.vsock")
        d = self.spawn("src", env={"FC_DOUBLE_AGENT_PORT": "1024"})
        d.ok("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap-src",
                                                 "guest_mac": "06:00:ac:10:00:02"})
        self.boot(d, vsock=vs)
        d.ok("PATCH", "/vm", {"state": "Paused"})
        st, mem = os.path.join(t, "f.state"), os.path.join(t, "f.mem")
        d.ok("PUT", "/snapshot/create", {"snapshot_path": st, "mem_file_path": mem})
        d.kill()
        # the recorded vsock path still exists (Firecracker leaves its socket file): fatal
        c0 = self.spawn("c0")
        self.assertIn("vsock", c0.fault("PUT", "/snapshot/load", {
            "snapshot_path": st, "mem_backend": {"backend_type": "File", "backend_path": mem}}))
        self.assertNotEqual(c0.proc.wait(timeout=30), 0)
        # an unknown interface in network_overrides: fatal
        c1 = self.spawn("c1")
        self.assertIn("Unknown Network Device", c1.fault("PUT", "/snapshot/load", {
            "snapshot_path": st, "mem_backend": {"backend_type": "File", "backend_path": mem},
            "network_overrides": [{"iface_id": "eth9", "host_dev_name": "tap9"}],
            "vsock_override": {"uds_path": os.path.join(t, "c1.vsock")}}))
        self.assertNotEqual(c1.proc.wait(timeout=30), 0)
        # two children from one snapshot, each with its own TAP and vsock path
        for name in ("c2", "c3"):
            c = self.spawn(name, env={"FC_DOUBLE_AGENT_PORT": "1024"})
            cvs = os.path.join(t, name + ".vsock")
            c.ok("PUT", "/snapshot/load", {
                "snapshot_path": st, "resume_vm": True, "track_dirty_pages": True,
                "mem_backend": {"backend_type": "File", "backend_path": mem},
                "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap-" + name}],
                "vsock_override": {"uds_path": cvs}})
            cfg = c.ok("GET", "/vm/config")
            self.assertEqual(cfg["network-interfaces"][0]["host_dev_name"], "tap-" + name)
            self.assertEqual(cfg["vsock"]["uds_path"], cvs)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(cvs)
            s.sendall(b"CONNECT 1024\n")
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"OK "))
            s.sendall(frame(0, 1))
            self.assertEqual(read_frame(f)[2], 101)
            s.close()

    # --- vsock ---

    def test_vsock_connect_reaches_agent(self):
        if not os.path.exists(AGENT):
            self.skipTest("torpor-agent not built")
        vs = os.path.join(self.tmp, "v.sock")
        d = self.spawn(env={"FC_DOUBLE_AGENT_PORT": "1024"})
        self.boot(d, vsock=vs)
        # nobody listens on another port: closed without OK
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(vs)
        s.sendall(b"CONNECT 7\n")
        self.assertEqual(s.recv(64), b"")
        s.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(vs)
        s.sendall(b"CONNECT 1024\n")
        f = s.makefile("rb")
        line = f.readline()
        self.assertRegex(line.decode(), r"^OK \d+\n$")
        s.sendall(frame(0, 1))  # AGENT_HELLO
        plen, fid, ftype, _ = read_frame(f)
        self.assertEqual((fid, ftype), (0, 101))  # AGENT_HELLO_OK
        self.assertIn(b"version=", plen)
        argv = [b"sh", b"-c", b"echo hello-from-guest; exit 3"]
        payload = struct.pack("<II", len(argv), 0) + b"\0" + b"".join(a + b"\0" for a in argv)
        s.sendall(frame(7, 2, payload))  # AGENT_EXEC
        out, code = b"", None
        while code is None:
            data, fid, ftype, _ = read_frame(f)
            self.assertEqual(fid, 7)
            self.assertNotEqual(ftype, 106, data)  # EXEC_ERROR
            if ftype == 103:
                out += data
            elif ftype == 105:
                code = struct.unpack("<i", data)[0]
        self.assertEqual(out, b"hello-from-guest\n")
        self.assertEqual(code, 3)
        # the bridged bytes were the guest's writes: a Diff holds more than the counter page
        d.ok("PATCH", "/vm", {"state": "Paused"})
        layer = os.path.join(self.tmp, "l.mem")
        d.ok("PUT", "/snapshot/create", {"snapshot_type": "Diff", "mem_file_path": layer,
                                         "snapshot_path": os.path.join(self.tmp, "l.state")})
        self.assertTrue(any(a >= 16 * PAGE for a, _ in data_offsets(layer)))
        s.close()


def frame(fid, ftype, payload=b"", flags=0):
    return struct.pack("<IIHH", len(payload), fid, ftype, flags) + payload


def read_frame(f):
    hdr = f.read(12)
    assert len(hdr) == 12, hdr
    plen, fid, ftype, flags = struct.unpack("<IIHH", hdr)
    data = f.read(plen)
    assert len(data) == plen
    return data, fid, ftype, flags


UFFDIO_COPY = 0xC028AA03
UFFD_EVENT_PAGEFAULT = 0x12


def serve_uffd(lsock, mem_path, result):
    """A minimal page-fault handler: receives the regions and the userfaultfd, copies pages."""
    conn, _ = lsock.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 65536, 1)
    regions = json.loads(msg)
    result["regions"] = regions
    uffd = fds[0]
    with open(mem_path, "rb") as f:
        image = f.read()
    buf = ctypes.create_string_buffer(image, len(image))
    src = ctypes.addressof(buf)
    faults = 0
    while not result.get("stop"):
        r, _, _ = select.select([uffd], [], [], 0.2)
        if not r:
            continue
        try:
            ev = os.read(uffd, 32)
        except BlockingIOError:
            continue
        if len(ev) < 32 or ev[0] != UFFD_EVENT_PAGEFAULT:
            continue
        addr = struct.unpack_from("<Q", ev, 16)[0] & ~(PAGE - 1)
        for reg in regions:
            base = reg["base_host_virt_addr"]
            if base <= addr < base + reg["size"]:
                off = reg["offset"] + addr - base
                arg = ctypes.create_string_buffer(struct.pack("<QQQQq", addr, src + off, PAGE,
                                                              0, 0))
                faults += 1
                result["faults"] = faults  # before the copy wakes the faulting thread
                try:
                    fcntl.ioctl(uffd, UFFDIO_COPY, arg)
                except OSError:
                    pass
    conn.close()
    os.close(uffd)


if __name__ == "__main__":
    if not SPEC or not os.path.exists(SPEC):
        print(f"skip: Firecracker API spec not found ({SPEC!r})")
        raise SystemExit(77)  # meson: skipped
    unittest.main(verbosity=2)
