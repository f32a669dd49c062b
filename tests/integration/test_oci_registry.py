"""Images pulled from a real registry (Debian's docker-registry on 127.0.0.1) holding images the
test builds itself: tags, digests, manifest lists and OCI indexes, OCI and Docker media types,
basic auth from a config.json, a bearer token flow, bad blobs, an interrupted pull, a registry
that is down, a full disk, and the store's garbage collection."""
import base64
import json
import os
import subprocess
import tempfile
import unittest

import harness
import oci_registry as R


def enc(ref):
    return ref.replace("/", "%2F")


def pull_lines(d, ref):
    c = harness.UnixHTTPConnection(d.socket)
    c.request("POST", "/v1/images/pull", body=json.dumps({"ref": ref}).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    if r.status != 200:
        return r.status, [json.loads(text)]
    return r.status, [json.loads(l) for l in text.splitlines() if l]


def blobs(d):
    p = os.path.join(d.data_dir, "images/blobs/sha256")
    return {"sha256:" + f for f in os.listdir(p)} if os.path.isdir(p) else set()


def ingest(d):
    p = os.path.join(d.data_dir, "images/ingest")
    return [f for f in os.listdir(p) if not f.startswith(".")] if os.path.isdir(p) else []


def image_blobs(img, extra=()):
    return {img.digest, img.config_digest, *(R.sha256(l) for l in img.layers), *extra}


class Registry(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tp-reg-", dir="/tmp")
        cls.reg = R.Registry(cls.tmp).start()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.reg.stop()
            subprocess.run(["rm", "-rf", cls.tmp])

    def setUp(self):
        # each test starts from an empty store
        for im in json.loads(self.d.cli("images", "--format", "json").stdout or b"[]"):
            self.d.request("DELETE", "/v1/images/" + im["digest"] + "?force=true")
        self.d.request("POST", "/v1/images/prune?all=true")
        self.assertEqual(blobs(self.d), set())

    def ref(self, repo, tag):
        return f"{self.reg.host}/{repo}:{tag}"

    def test_pull_by_tag_oci_then_cache_hit(self):
        img = R.Image([R.make_layer({"bin/a": b"a" * 5000}), R.make_layer({"etc/b": b"b"})])
        img.push(self.reg, "t/tag", "v1")
        p = self.d.cli("pull", self.ref("t/tag", "v1"))
        out = p.stdout.decode()
        self.assertIn(f"Digest: {img.digest}", out)
        self.assertIn("Downloaded newer image", out)
        self.assertEqual(blobs(self.d), image_blobs(img))
        self.assertEqual(ingest(self.d), [])
        # the second pull only checks the manifest
        p = self.d.cli("pull", self.ref("t/tag", "v1"))
        self.assertIn("Image is up to date", p.stdout.decode())
        # images: docker's columns; -q ids; a template
        table = self.d.cli("images").stdout.decode().splitlines()
        self.assertEqual(table[0].split()[:5], ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED"])
        self.assertIn(f"{self.reg.host}/t/tag", table[1])
        self.assertIn(img.config_digest[7:19], table[1])
        q = self.d.cli("images", "-q").stdout.decode().split()
        self.assertEqual(q, [img.config_digest[7:19]])
        f = self.d.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
        self.assertEqual(f.strip(), f"{self.reg.host}/t/tag:v1")
        # inspect by name, id prefix and digest
        st, j = self.d.request("GET", "/v1/images/" + enc(self.ref("t/tag", "v1")))
        self.assertEqual(st, 200, j)
        self.assertEqual(j["id"], img.config_digest)
        self.assertEqual(j["config"]["Cmd"], ["/bin/sh"])
        for ref in (img.config_digest[7:19], img.digest):
            st, j = self.d.request("GET", "/v1/images/" + ref)
            self.assertEqual((st, j["digest"]), (200, img.digest))
        ins = json.loads(self.d.cli("image", "inspect", self.ref("t/tag", "v1")).stdout)
        self.assertEqual(ins[0]["repo_tags"], [self.ref("t/tag", "v1")])

    def test_pull_progress_lines(self):
        img = R.Image([R.make_layer({"x": os.urandom(300000)})])
        img.push(self.reg, "t/progress", "v1")
        st, lines = pull_lines(self.d, self.ref("t/progress", "v1"))
        self.assertEqual(st, 200)
        layer = R.sha256(img.layers[0])
        statuses = [l["status"] for l in lines if l.get("digest") == layer and "id" in l]
        self.assertEqual(statuses[0], "Waiting")
        self.assertIn("Downloading", statuses)
        self.assertEqual(statuses[-1], "Download complete")
        done = [l for l in lines if l.get("digest") == layer and l["status"] == "Download complete"]
        self.assertEqual(done[0]["progress"]["current"], len(img.layers[0]))
        self.assertEqual(lines[-1]["digest"], img.digest)
        self.assertFalse(lines[-1]["up_to_date"])

    def test_pull_by_digest_docker_media_types(self):
        img = R.Image([R.make_layer({"d": b"docker"})], docker=True)
        digest = img.push(self.reg, "t/docker", "v2")
        ref = f"{self.reg.host}/t/docker@{digest}"
        p = self.d.cli("pull", "-q", ref)
        self.assertEqual(p.stdout.decode().strip(), ref)
        st, j = self.d.request("GET", "/v1/images/" + enc(ref))
        self.assertEqual((st, j["media_type"]), (200, R.DOCKER_MANIFEST))
        self.assertEqual(j["repo_digests"], [ref])
        self.assertEqual(blobs(self.d), image_blobs(img))
        # a digest that the registry does not have
        bad = f"{self.reg.host}/t/docker@sha256:" + "0" * 64
        p = self.d.cli("pull", bad, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("manifest unknown", p.stderr.decode())

    def test_manifest_list_and_oci_index_pick_amd64(self):
        amd = R.Image([R.make_layer({"arch": b"amd64"})], docker=True)
        arm = R.Image([R.make_layer({"arch": b"arm64"})], docker=True, arch="arm64")
        list_digest, _ = R.push_index(self.reg, "t/multi", "list",
                                      [(arm, "linux", "arm64"), (amd, "linux", "amd64")],
                                      docker=True)
        st, lines = pull_lines(self.d, self.ref("t/multi", "list"))
        self.assertEqual(lines[-1].get("digest"), amd.digest, lines[-1])
        # the list is kept (named in the index.json entry), the arm64 image is not fetched
        self.assertEqual(blobs(self.d), image_blobs(amd, [list_digest]))
        with open(os.path.join(self.d.data_dir, "images/index.json")) as f:
            entry = json.load(f)["manifests"][0]
        self.assertEqual(entry["annotations"]["io.torpor.index.digest"], list_digest)
        self.assertEqual(entry["annotations"]["org.opencontainers.image.ref.name"],
                         self.ref("t/multi", "list"))
        # an OCI index
        oamd = R.Image([R.make_layer({"oci": b"amd64"})])
        R.push_index(self.reg, "t/multi", "index", [(oamd, "linux", "amd64")])
        st, lines = pull_lines(self.d, self.ref("t/multi", "index"))
        self.assertEqual(lines[-1].get("digest"), oamd.digest, lines[-1])
        # no linux/amd64 entry: the platforms available are named, nothing is tagged
        R.push_index(self.reg, "t/multi", "armonly", [(arm, "linux", "arm64")], docker=True)
        p = self.d.cli("pull", self.ref("t/multi", "armonly"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no matching manifest for linux/amd64", p.stderr.decode())
        self.assertIn("available: linux/arm64", p.stderr.decode())
        st, _ = self.d.request("GET", "/v1/images/" + enc(self.ref("t/multi", "armonly")))
        self.assertEqual(st, 404)

    def test_unknown_tag_repo_and_bad_refs(self):
        for ref in (self.ref("t/none", "v1"), self.ref("t/tag", "nope")):
            p = self.d.cli("pull", ref, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("manifest unknown", p.stderr.decode())
        st, j = self.d.request("POST", "/v1/images/pull", {"ref": "Bad/Upper"})
        self.assertEqual(st, 400)
        self.assertIn("must be lowercase", j["message"])
        st, j = self.d.request("POST", "/v1/images/pull", {"ref": "x:bad tag"})
        self.assertEqual(st, 400)
        st, j = self.d.request("GET", "/v1/images/nothere")
        self.assertEqual((st, j["message"]), (404, "No such image: nothere"))
        self.assertEqual(blobs(self.d), set())

    def test_corrupt_and_truncated_blobs(self):
        img = R.Image([R.make_layer({"c": os.urandom(20000)})])
        img.push(self.reg, "t/corrupt", "v1")
        layer = R.sha256(img.layers[0])
        path = self.reg.blob_file(layer)
        with open(path, "r+b") as f:  # same size, other bytes
            f.seek(100)
            f.write(b"\0" * 64)
        p = self.d.cli("pull", self.ref("t/corrupt", "v1"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("digest mismatch", p.stderr.decode())
        self.assertNotIn(layer, blobs(self.d))
        self.assertEqual(ingest(self.d), [])
        st, _ = self.d.request("GET", "/v1/images/" + enc(self.ref("t/corrupt", "v1")))
        self.assertEqual(st, 404)
        # truncated: the registry serves fewer bytes than the descriptor says
        with open(path, "wb") as f:
            f.write(img.layers[0][:5000])
        p = self.d.cli("pull", self.ref("t/corrupt", "v1"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("truncated", p.stderr.decode())
        self.assertNotIn(layer, blobs(self.d))
        self.assertEqual(ingest(self.d), [])

    def test_concurrent_pulls_of_one_image(self):
        """Three pulls of one image at once (and one of a second name): each succeeds, every blob
        is downloaded into place once, nothing is left in ingest/."""
        import concurrent.futures
        img = R.Image([R.make_layer({"c": os.urandom(1 << 20)}), R.make_layer({"d": b"d"})])
        img.push(self.reg, "t/conc", "v1")
        img.push(self.reg, "t/conc", "v2")
        refs = [self.ref("t/conc", "v1")] * 3 + [self.ref("t/conc", "v2")]
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda r: self.d.cli("pull", "-q", r, check=False), refs))
        for r, p in zip(refs, outs):
            self.assertEqual((p.returncode, p.stdout.decode().strip()), (0, r), p.stderr)
        self.assertEqual(blobs(self.d), image_blobs(img))
        self.assertEqual(ingest(self.d), [])
        rows = json.loads(self.d.cli("images", "--format", "json").stdout)
        self.assertEqual(sorted(r["tag"] for r in rows), ["v1", "v2"])

    def test_registry_down(self):
        port = R.free_port()
        p = self.d.cli("pull", f"127.0.0.1:{port}/t/x:v1", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"connect to registry '127.0.0.1:{port}'", p.stderr.decode())

    def test_rmi_and_prune_keep_exactly_the_referenced_blobs(self):
        shared = R.make_layer({"shared": b"s" * 1000})
        a = R.Image([shared, R.make_layer({"a": b"a"})])
        b = R.Image([shared, R.make_layer({"b": b"b"})])
        a.push(self.reg, "t/gc", "a")
        b.push(self.reg, "t/gc", "b")
        self.d.cli("pull", self.ref("t/gc", "a"))
        self.d.cli("pull", self.ref("t/gc", "b"))
        self.assertEqual(blobs(self.d), image_blobs(a) | image_blobs(b))
        # a second name for a: removing one name keeps the image
        a.push(self.reg, "t/gc", "a2")
        self.d.cli("pull", self.ref("t/gc", "a2"))
        p = self.d.cli("rmi", self.ref("t/gc", "a2"))
        self.assertIn("Untagged: " + self.ref("t/gc", "a2"), p.stdout.decode())
        self.assertNotIn("Deleted", p.stdout.decode())
        self.assertEqual(blobs(self.d), image_blobs(a) | image_blobs(b))
        # by id while it has one name: gone, the shared layer stays for b
        self.d.cli("pull", self.ref("t/gc", "a2"))
        p = self.d.cli("rmi", a.config_digest[7:19], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("must be forced", p.stderr.decode())
        p = self.d.cli("rmi", "-f", a.config_digest[7:19])
        self.assertIn("Deleted: " + a.digest, p.stdout.decode())
        self.assertEqual(blobs(self.d), image_blobs(b))
        p = self.d.cli("rmi", self.ref("t/gc", "a"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("No such image", p.stderr.decode())
        # prune: stray blobs and partial downloads go, b's stay; -a removes b too
        junk = os.path.join(self.d.data_dir, "images/blobs/sha256", "ab" * 32)
        with open(junk, "w") as f:
            f.write("stray")
        with open(os.path.join(self.d.data_dir, "images/ingest", "cd" * 32 + ".partial"), "w") as f:
            f.write("partial")
        p = self.d.cli("image", "prune", "-f")
        self.assertIn("Total reclaimed space", p.stdout.decode())
        self.assertEqual(blobs(self.d), image_blobs(b))
        self.assertEqual(ingest(self.d), [])
        p = self.d.cli("image", "prune", "-a", "-f")
        self.assertIn("untagged: " + self.ref("t/gc", "b"), p.stdout.decode())
        self.assertEqual(blobs(self.d), set())


class Https(unittest.TestCase):
    """A registry serving only HTTPS (self-signed): loopback is insecure by default, so the
    certificate is not verified, and the pull goes over TLS (plain HTTP would get no answer)."""

    def test_https_registry(self):
        tmp = tempfile.mkdtemp(prefix="tp-tls-", dir="/tmp")
        reg = R.Registry(tmp, tls=True).start()
        d = harness.Daemon()
        try:
            img = R.Image([R.make_layer({"tls": b"ok"})])
            img.push(reg, "t/tls", "v1")
            d.start(["--insecure-registry", "example.test:5000"])
            ref = f"{reg.host}/t/tls:v1"
            self.assertEqual(d.cli("pull", "-q", ref).stdout.decode().strip(), ref)
        finally:
            d.cleanup()
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])

    def test_insecure_registry_option_checked(self):
        p = subprocess.run([harness.TORPORD, "--insecure-registry", "bad/host"],
                           capture_output=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("is not HOST[:PORT]", p.stderr.decode())


class Auth(unittest.TestCase):
    """Basic auth: the registry's htpasswd, credentials from a docker config.json."""

    def test_basic_auth_from_config_json(self):
        tmp = tempfile.mkdtemp(prefix="tp-auth-", dir="/tmp")
        reg = R.Registry(tmp, auth=("alice", "s3cret")).start()
        d = None
        try:
            img = R.Image([R.make_layer({"auth": b"ok"})])
            img.push(reg, "t/auth", "v1")
            ref = f"{reg.host}/t/auth:v1"
            cfg = os.path.join(tmp, "config.json")
            with open(cfg, "w") as f:
                json.dump({"auths": {reg.host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}, f)
            d = harness.Daemon().start(["--registry-config", cfg])
            self.assertEqual(d.cli("pull", "-q", ref).stdout.decode().strip(), ref)
            d.stop()
            # wrong password, then no credentials at all
            with open(cfg, "w") as f:
                json.dump({"auths": {reg.host: {"auth": base64.b64encode(b"alice:bad").decode()}}}, f)
            d.start(["--registry-config", cfg])
            p = d.cli("pull", ref, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("unauthorized", p.stderr.decode().lower())
            d.stop()
            d.start(["--registry-config", os.path.join(tmp, "missing.json")])
            p = d.cli("pull", ref, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("no credentials", p.stderr.decode())
        finally:
            if d:
                d.cleanup()
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])

    def test_anonymous_bearer_token(self):
        """A front that demands a token from its token server, before the real registry."""
        tmp = tempfile.mkdtemp(prefix="tp-bearer-", dir="/tmp")
        reg = R.Registry(tmp).start()
        front = R.Front(reg, token="tok-123")
        d = harness.Daemon()
        try:
            img = R.Image([R.make_layer({"bearer": b"ok"})])
            img.push(reg, "t/bearer", "v1")
            d.start()
            ref = f"{front.host}/t/bearer:v1"
            self.assertEqual(d.cli("pull", "-q", ref).stdout.decode().strip(), ref)
            self.assertTrue(front.token_requests)
            self.assertIn("scope=repository%3At%2Fbearer%3Apull", front.token_requests[0])
            self.assertIn("service=test-registry", front.token_requests[0])
            self.assertGreaterEqual(front.authorized, 4)  # ping, manifest, config, layer
        finally:
            d.cleanup()
            front.stop()
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])


class Front(unittest.TestCase):
    """Blobs redirected elsewhere (as registries send them to storage), and a registry whose
    Docker-Content-Digest does not match the manifest it sent."""

    def test_redirects_and_digest_header(self):
        tmp = tempfile.mkdtemp(prefix="tp-front-", dir="/tmp")
        reg = R.Registry(tmp).start()
        redir = R.Front(reg, redirect_blobs=True)
        liar = R.Front(reg, bad_digest=True)
        d = harness.Daemon()
        try:
            img = R.Image([R.make_layer({"r": b"redirected"})])
            img.push(reg, "t/front", "v1")
            d.start()
            ref = f"{redir.host}/t/front:v1"
            self.assertEqual(d.cli("pull", "-q", ref).stdout.decode().strip(), ref)
            self.assertEqual(redir.redirected, 2)  # config and layer
            d.cli("rmi", ref)
            p = d.cli("pull", f"{liar.host}/t/front:v1", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("digest mismatch: Docker-Content-Digest", p.stderr.decode())
            self.assertEqual(blobs(d), set())
        finally:
            d.cleanup()
            redir.stop()
            liar.stop()
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])


    def test_token_not_sent_to_the_redirect_target(self):
        """A registry that wants a token redirects blobs to storage on another port: the token
        is for the registry only (libcurl drops a custom Authorization when the host or port
        changes; this pins that down)."""
        tmp = tempfile.mkdtemp(prefix="tp-redir-auth-", dir="/tmp")
        reg = R.Registry(tmp).start()
        storage = R.Front(reg)
        front = R.Front(reg, token="tok-secret", redirect_blobs=True, redirect_to=storage.host)
        d = harness.Daemon()
        try:
            img = R.Image([R.make_layer({"ra": b"redirected with a token"})])
            img.push(reg, "t/redir-auth", "v1")
            d.start()
            ref = f"{front.host}/t/redir-auth:v1"
            self.assertEqual(d.cli("pull", "-q", ref).stdout.decode().strip(), ref)
            self.assertEqual(front.redirected, 2)  # config and layer
            self.assertIn("Bearer tok-secret", front.auth_seen)
            self.assertEqual(len(storage.auth_seen), 2)
            self.assertEqual(storage.auth_seen, [None, None])
        finally:
            d.cleanup()
            front.stop()
            storage.stop()
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])


    def test_registry_text_cannot_drive_the_terminal(self):
        """A registry's error message with terminal escapes (a title change, a colour, a
        cursor move) reaches the user's stderr with its control bytes made harmless."""
        tmp = tempfile.mkdtemp(prefix="tp-esc-", dir="/tmp")
        reg = R.Registry(tmp).start()
        front = R.Front(reg, error_message="gone\x1b]0;owned\x07\x1b[31m red\x1b[2A\r")
        d = harness.Daemon()
        try:
            d.start()
            p = d.cli("pull", f"{front.host}/t/esc:v1", check=False)
            self.assertEqual(p.returncode, 1)
            err = p.stderr.decode()
            self.assertIn("manifest unknown: gone?]0;owned??[31m red?[2A?", err)
            self.assertFalse(any(ord(c) < 0x20 and c not in "\n\t" for c in err), err)
        finally:
            d.cleanup()
            front.stop()
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])


class Interrupted(unittest.TestCase):
    """torpord SIGKILLed (failpoint pull.blob-data: half of a blob in) and started again: the
    pull resumes from the bytes kept, nothing unverified is in blobs/."""

    def test_resume_after_crash(self):
        tmp = tempfile.mkdtemp(prefix="tp-resume-", dir="/tmp")
        reg = R.Registry(tmp).start()
        d = harness.Daemon()
        fp = os.path.join(d.tmp, "failpoints")
        try:
            big = R.make_layer({"big": os.urandom(6 << 20)}, gz=False)
            img = R.Image([big], gz=False)
            img.push(reg, "t/resume", "v1")
            ref = f"{reg.host}/t/resume:v1"
            layer = R.sha256(big)
            with open(fp, "w") as f:
                f.write("pull.blob-data=crash-daemon")
            d.start(env={"TORPOR_FAILPOINTS_FILE": fp})
            p = d.cli("pull", ref, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIsNotNone(d.proc.wait(timeout=60))  # it killed itself
            d.log.close()
            self.assertNotIn(layer, blobs(d))
            partial = os.path.join(d.data_dir, "images/ingest", layer[7:] + ".partial")
            kept = os.path.getsize(partial)
            self.assertGreaterEqual(kept, len(big) // 2)
            with open(fp, "w") as f:
                f.write("")
            d.start(env={"TORPOR_FAILPOINTS_FILE": fp})
            st, lines = pull_lines(d, ref)
            self.assertEqual(lines[-1].get("digest"), img.digest, lines[-1])
            done = [l for l in lines if l.get("digest") == layer and
                    l.get("status") == "Download complete"]
            self.assertEqual(done[0]["resumed"], kept)  # those bytes were not fetched again
            self.assertIn(layer, blobs(d))
            self.assertEqual(ingest(d), [])
        finally:
            d.cleanup()
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])

    def test_crash_points_leave_a_consistent_store(self):
        """pull.blob-committed (a blob in, others not) and pull.before-tag (every blob in,
        index.json not written): the next pull completes; nothing is tagged before."""
        tmp = tempfile.mkdtemp(prefix="tp-crashpt-", dir="/tmp")
        reg = R.Registry(tmp).start()
        d = harness.Daemon()
        fp = os.path.join(d.tmp, "failpoints")
        try:
            img = R.Image([R.make_layer({"one": b"1"}), R.make_layer({"two": b"2"})])
            img.push(reg, "t/crash", "v1")
            ref = f"{reg.host}/t/crash:v1"
            for point in ("pull.blob-committed", "pull.before-tag"):
                with open(fp, "w") as f:
                    f.write(f"{point}=crash-daemon")
                d.start(env={"TORPOR_FAILPOINTS_FILE": fp})
                d.cli("pull", ref, check=False)
                d.proc.wait(timeout=60)
                d.log.close()
                with open(os.path.join(d.data_dir, "images/index.json")) as f:
                    self.assertEqual(json.load(f)["manifests"], [], point)
                self.assertLessEqual(blobs(d), image_blobs(img))
                with open(fp, "w") as f:
                    f.write("")
                d.start(env={"TORPOR_FAILPOINTS_FILE": fp})
                self.assertEqual(d.cli("pull", "-q", ref).stdout.decode().strip(), ref)
                self.assertEqual(blobs(d), image_blobs(img))
                d.cli("rmi", ref)
                d.stop()
        finally:
            d.cleanup()
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])


class DiskFull(unittest.TestCase):
    """A data dir on a 4 MiB tmpfs: a 6 MiB layer fails with ENOSPC and leaves nothing."""

    def test_disk_full(self):
        tmp = tempfile.mkdtemp(prefix="tp-full-", dir="/tmp")
        reg = R.Registry(tmp).start()
        mnt = os.path.join(tmp, "mnt")
        os.makedirs(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt]).returncode:
            reg.stop()
            self.skipTest("cannot mount a tmpfs")
        d = harness.Daemon(data_dir=os.path.join(mnt, "d"))
        try:
            big = R.make_layer({"big": os.urandom(6 << 20)}, gz=False)
            img = R.Image([big], gz=False)
            img.push(reg, "t/full", "v1")
            d.start()
            p = d.cli("pull", f"{reg.host}/t/full:v1", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("No space left on device", p.stderr.decode())
            # refused before a byte came: the declared sizes exceed the free space
            self.assertIn("bytes of blobs with", p.stderr.decode())
            self.assertNotIn(R.sha256(big), blobs(d))
            self.assertEqual(ingest(d), [])  # the partial went: it only took space
            # the store still works
            small = R.Image([R.make_layer({"s": b"small"})])
            small.push(reg, "t/full", "small")
            d.cli("pull", f"{reg.host}/t/full:small")
        finally:
            d.cleanup()
            subprocess.run(["umount", mnt])
            reg.stop()
            subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    harness.main()
