"""torpor load: an OCI layout directory (umoci), an oci-archive and a docker-save tarball
(skopeo), bad archives; the store holds exactly what the loaded images reference."""
import fcntl
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import unittest

import harness


def blobs(d):
    p = os.path.join(d.data_dir, "images/blobs/sha256")
    return {"sha256:" + f for f in os.listdir(p)} if os.path.isdir(p) else set()


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


class Load(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.w = tempfile.mkdtemp(prefix="tp-load-", dir="/tmp")
        cls.layout = os.path.join(cls.w, "lay")
        run("umoci", "init", "--layout", cls.layout)
        run("umoci", "new", "--image", cls.layout + ":v1")
        run("umoci", "insert", "--image", cls.layout + ":v1", "/bin/busybox", "/bin/busybox")
        run("umoci", "config", "--image", cls.layout + ":v1", "--config.cmd", "/bin/busybox")
        with open(os.path.join(cls.layout, "index.json")) as f:
            cls.manifest = json.load(f)["manifests"][0]["digest"]
        cls.oci_archive = os.path.join(cls.w, "a.tar")
        run("skopeo", "copy", "oci:" + cls.layout + ":v1",
            "oci-archive:" + cls.oci_archive + ":localhost/test/app:v2")
        cls.docker_archive = os.path.join(cls.w, "d.tar")
        run("skopeo", "copy", "oci:" + cls.layout + ":v1",
            "docker-archive:" + cls.docker_archive + ":localhost/test/app:v3")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        subprocess.run(["rm", "-rf", cls.w])

    def setUp(self):
        self.d.request("POST", "/v1/images/prune?all=true")
        self.assertEqual(blobs(self.d), set())

    def layout_blobs(self):
        """What the layout's image references: its manifest, config and layers (umoci's
        layout also holds blobs of its earlier steps, which load leaves out)."""
        with open(os.path.join(self.layout, "blobs/sha256", self.manifest[7:])) as f:
            m = json.load(f)
        return {self.manifest, m["config"]["digest"], *(l["digest"] for l in m["layers"])}

    def test_layout_dir_unnamed_then_pruned(self):
        p = self.d.cli("load", "-i", self.layout)
        # umoci names the image by a bare tag: it loads without a repository, as docker does
        self.assertEqual(p.stdout.decode(), f"Loaded image ID: {self.manifest}\n")
        self.assertEqual(blobs(self.d), self.layout_blobs())
        rows = json.loads(self.d.cli("images", "--format", "json").stdout)
        self.assertEqual([(r["repository"], r["tag"]) for r in rows], [("<none>", "<none>")])
        p = self.d.cli("image", "prune", "-f")
        self.assertIn("deleted: " + self.manifest, p.stdout.decode())
        self.assertEqual(blobs(self.d), set())

    def test_oci_archive(self):
        p = self.d.cli("load", "-i", self.oci_archive)
        self.assertEqual(p.stdout.decode(), "Loaded image: localhost/test/app:v2\n")
        st, j = self.d.request("GET", "/v1/images/localhost%2Ftest%2Fapp:v2")
        self.assertEqual((st, j["digest"]), (200, self.manifest))
        self.assertEqual(blobs(self.d), self.layout_blobs())
        # loading it again changes nothing
        self.d.cli("load", "-q", "-i", self.oci_archive)
        self.assertEqual(blobs(self.d), self.layout_blobs())

    def test_docker_save_from_stdin(self):
        with open(self.docker_archive, "rb") as f:
            p = self.d.cli("load", input=f.read())
        self.assertEqual(p.stdout.decode(), "Loaded image: localhost/test/app:v3\n")
        st, j = self.d.request("GET", "/v1/images/localhost%2Ftest%2Fapp:v3")
        self.assertEqual(st, 200, j)
        self.assertEqual(j["config"]["Cmd"], ["/bin/busybox"])
        self.assertEqual([l["media_type"] for l in j["layers"]],
                         ["application/vnd.oci.image.layer.v1.tar"])
        self.d.cli("rmi", "localhost/test/app:v3")
        self.assertEqual(blobs(self.d), set())

    def test_docker_save_with_linked_layers(self):
        """docker save writes a layer it already wrote as a symlink to the first copy; a tar
        may also store a repeated file as a hard link. Both name that member's bytes."""
        with tarfile.open(self.docker_archive) as t:
            files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
        manifest = json.loads(files.pop("manifest.json"))
        layer = manifest[0]["Layers"][0]
        data = files.pop(layer)
        for kind in ("symlink", "hardlink"):
            m = [dict(manifest[0], Layers=["l/layer.tar"])]
            bio = io.BytesIO()
            with tarfile.open(fileobj=bio, mode="w") as t:
                for name, body in [*files.items(), ("real/layer.tar", data),
                                   ("manifest.json", json.dumps(m).encode())]:
                    ti = tarfile.TarInfo(name)
                    ti.size = len(body)
                    t.addfile(ti, io.BytesIO(body))
                ti = tarfile.TarInfo("l/layer.tar")
                if kind == "symlink":
                    ti.type, ti.linkname = tarfile.SYMTYPE, "../real/layer.tar"
                else:
                    ti.type, ti.linkname = tarfile.LNKTYPE, "real/layer.tar"
                t.addfile(ti)
            p = self.d.cli("load", input=bio.getvalue(), check=False)
            self.assertEqual(p.returncode, 0, (kind, p.stderr))
            st, j = self.d.request("GET", "/v1/images/localhost%2Ftest%2Fapp:v3")
            self.assertEqual(st, 200, j)
            self.assertEqual([l["digest"] for l in j["layers"]],
                             ["sha256:" + hashlib.sha256(data).hexdigest()], kind)
            self.d.cli("rmi", "localhost/test/app:v3")
        self.assertEqual(blobs(self.d), set())
        # a symlink out of the archive names nothing
        m = [dict(manifest[0], Layers=["l/layer.tar"])]
        bio = io.BytesIO()
        with tarfile.open(fileobj=bio, mode="w") as t:
            for name, body in [*files.items(), ("manifest.json", json.dumps(m).encode())]:
                ti = tarfile.TarInfo(name)
                ti.size = len(body)
                t.addfile(ti, io.BytesIO(body))
            ti = tarfile.TarInfo("l/layer.tar")
            ti.type, ti.linkname = tarfile.SYMTYPE, "../../etc/passwd"
            t.addfile(ti)
        p = self.d.cli("load", input=bio.getvalue(), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("lacks layer 'l/layer.tar'", p.stderr.decode())
        self.d.request("POST", "/v1/images/prune")
        self.assertEqual(blobs(self.d), set())

    def test_prune_while_a_pull_runs(self):
        """A prune that meets a running pull or load (its shared lock, held here) untags what
        it removes and says so; the blobs stay for the next prune instead of a 409 after the
        images were already gone."""
        self.d.cli("load", "-q", "-i", self.oci_archive)
        self.assertEqual(blobs(self.d), self.layout_blobs())
        lock = os.open(os.path.join(self.d.data_dir, "images/ingest/.pull.lock"), os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_SH)
            st, j = self.d.request("POST", "/v1/images/prune?all=true")
            self.assertEqual(st, 200, j)
            self.assertEqual([e["deleted"] for e in j["images_deleted"]], [self.manifest])
            self.assertEqual(j["space_reclaimed"], 0)
            self.assertEqual(json.loads(self.d.cli("images", "--format", "json").stdout), [])
            self.assertEqual(blobs(self.d), self.layout_blobs())
        finally:
            os.close(lock)
        st, j = self.d.request("POST", "/v1/images/prune")
        self.assertEqual(st, 200, j)
        self.assertGreater(j["space_reclaimed"], 0)
        self.assertEqual(blobs(self.d), set())

    def tar_of(self, members):
        bio = io.BytesIO()
        with tarfile.open(fileobj=bio, mode="w") as t:
            for name, data in members:
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
        return bio.getvalue()

    def test_bad_archives_change_nothing(self):
        # a blob that does not hash to its name
        with tarfile.open(self.oci_archive) as t:
            members = [(m.name, t.extractfile(m).read()) for m in t.getmembers() if m.isfile()]
        bad = [(n, b"tampered" if n.startswith("blobs/") and b"layers" not in data and
                len(data) > 1000 else data) for n, data in members]
        p = self.d.cli("load", input=self.tar_of(bad), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("digest mismatch", p.stderr.decode())
        self.assertEqual(json.loads(self.d.cli("images", "--format", "json").stdout), [])
        # not an archive at all; an archive of hostile names and no index
        p = self.d.cli("load", input=os.urandom(4096), check=False)
        self.assertEqual(p.returncode, 1)
        escape = os.path.join(self.w, "escaped")
        hostile = self.tar_of([("../../../../" + escape.lstrip("/"), b"x"), ("/" + escape, b"y")])
        p = self.d.cli("load", input=hostile, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not an image archive", p.stderr.decode())
        self.assertFalse(os.path.exists(escape))
        # a layout dir that is not one
        p = self.d.cli("load", "-i", self.w, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not an OCI layout directory", p.stderr.decode())
        self.d.request("POST", "/v1/images/prune")
        self.assertEqual(blobs(self.d), set())


if __name__ == "__main__":
    harness.main()
