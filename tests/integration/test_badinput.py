"""Bad requests through the real socket: a clear 4xx JSON error, and nothing changes."""
import http.client
import json
import os
import socket

import harness


class BadInput(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d.cli("run", "--name", "only")

    def snapshot(self):
        st, body = self.d.request("GET", "/v1/instances?all=true")
        self.assertEqual(st, 200)
        insts = sorted((i["id"], i["name"], i["state"]) for i in body["instances"])
        dirs = sorted(os.listdir(os.path.join(self.d.data_dir, "instances")))
        return insts, dirs

    def expect(self, status, code, method, path, body=None, raw=None, contains=None):
        before = self.snapshot()
        st, err = self.d.request(method, path, body=body, raw=raw)
        self.assertEqual(st, status, err)
        self.assertEqual(err["code"], code, err)
        self.assertIsInstance(err["message"], str)
        if contains:
            self.assertIn(contains, err["message"])
        self.assertEqual(self.snapshot(), before, "a failed request changed state")

    def test_malformed_json(self):
        self.expect(400, "invalid_argument", "POST", "/v1/instances", raw=b'{"name": "x"')
        self.expect(400, "invalid_argument", "POST", "/v1/instances", raw=b'[1,2]')
        self.expect(400, "invalid_argument", "POST", "/v1/instances", raw=b'{"name":"a"} x')

    def test_unknown_and_mistyped_fields(self):
        self.expect(400, "invalid_argument", "POST", "/v1/instances", {"nmae": "x"},
                    contains="nmae")
        self.expect(400, "invalid_argument", "POST", "/v1/instances", {"memory_mib": "256"},
                    contains="memory_mib")
        self.expect(400, "invalid_argument", "POST", "/v1/instances/only/exec", {"cmd": "ls"})
        self.expect(400, "invalid_argument", "POST", "/v1/instances/only/exec", {"cmd": []})

    def test_bad_names(self):
        for name in ["Upper", "-lead", "under_score", "a" * 64, ""]:
            self.expect(400, "invalid_argument", "POST", "/v1/instances", {"name": name})

    def test_duplicate_name(self):
        self.expect(409, "conflict", "POST", "/v1/instances", {"name": "only"}, contains="only")

    def test_missing_files(self):
        self.expect(404, "not_found", "POST", "/v1/instances", {"kernel": "/no/such/vmlinuz"},
                    contains="/no/such/vmlinuz")
        self.expect(404, "not_found", "POST", "/v1/instances", {"rootfs": "/no/such/dir"},
                    contains="/no/such/dir")
        self.expect(400, "invalid_argument", "POST", "/v1/instances", {"kernel": "rel/vmlinuz"})

    def test_not_ext4_rootfs(self):
        path = os.path.join(self.d.tmp, "notext4.img")
        with open(path, "wb") as f:
            f.write(b"\0" * 8192)
        self.expect(400, "invalid_argument", "POST", "/v1/instances", {"rootfs": path})

    def test_wrong_state(self):
        # start of a Running instance is nothing to do (docker's start); restore is wrong.
        st, inst = self.d.request("POST", "/v1/instances/only/start")
        self.assertEqual((st, inst["state"]), (200, "Running"))
        self.expect(409, "conflict", "POST", "/v1/instances/only/restore", contains="Running")
        self.expect(409, "conflict", "DELETE", "/v1/instances/only")

    def test_oversize_body(self):
        """Refused from Content-Length alone. The body is never sent: the daemon answers and
        closes without reading it, so a client still writing it could get EPIPE first."""
        before = self.snapshot()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        try:
            s.connect(self.d.socket)
            s.sendall(b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 70011\r\n\r\n")
            resp = http.client.HTTPResponse(s)
            resp.begin()
            self.assertEqual(resp.status, 413)
            err = json.loads(resp.read())
        finally:
            s.close()
        self.assertEqual(err["code"], "too_large", err)
        self.assertIn("70011", err["message"])
        self.assertEqual(self.snapshot(), before, "a failed request changed state")

    def test_unknown_things(self):
        self.expect(404, "not_found", "GET", "/v1/instances/nosuch")
        self.expect(404, "not_found", "POST", "/v1/instances/nosuch/stop")
        self.expect(404, "not_found", "GET", "/v1/nothing")
        self.expect(405, "method_not_allowed", "PUT", "/v1/instances")

    def test_bad_refs(self):
        """A ref must be a name, id or id prefix: %00 must not cut it short (this DELETE would
        have removed "only"), and nothing else outside the name charset is looked up."""
        for ref in ["only%00junk", "only%00", "only%2Fstop", "Only", "only_1", "only%20", "%C3%A9",
                    "a" * 64]:
            self.expect(400, "invalid_argument", "DELETE", f"/v1/instances/{ref}?force=true",
                        contains="invalid instance reference")
        self.expect(400, "invalid_argument", "POST", "/v1/instances/only%00x/stop")
        self.expect(400, "invalid_argument", "GET", "/v1/instances/only%00x/logs")
        st, inst = self.d.request("GET", "/v1/instances/only")
        self.assertEqual((st, inst["state"]), (200, "Running"))

    def test_name_equal_to_an_id(self):
        """A name equal to another instance's id would shadow it: refused, and the id still
        names its instance."""
        _, inst = self.d.request("GET", "/v1/instances/only")
        self.expect(409, "conflict", "POST", "/v1/instances", {"name": inst["id"]},
                    contains="is the id of")
        st, same = self.d.request("GET", f"/v1/instances/{inst['id']}")
        self.assertEqual((st, same["name"]), (200, "only"))

    def test_capabilities(self):
        st, caps = self.d.request("GET", "/v1/capabilities")
        self.assertEqual(st, 200)
        q = caps["hypervisors"]["qemu"]
        self.assertTrue(q["pause"])
        self.assertTrue(q["graceful_vmm_shutdown"])


if __name__ == "__main__":
    harness.main()
