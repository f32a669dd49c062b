"""torpor cp against a real guest, both ways, as docker cp: files and trees with modes, symlinks
and long names, into a directory or as a new name, '/.' contents, tar on stdin/stdout, the API's
archive routes, and bad paths. Files cross through the agent's built-ins (no tar in the guest
is used)."""
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import harness

LONG = "a-name-longer-than-a-ustar-field-" + "x" * 90


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Cp(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon().start()
        cls.d.cli("run", "--name", "cp")

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="torpor-cp-")
        self.addCleanup(shutil.rmtree, self.tmp)

    def tree(self):
        top = os.path.join(self.tmp, "tree")
        os.makedirs(os.path.join(top, "sub", "empty"))
        with open(os.path.join(top, "run.sh"), "w") as f:
            f.write("#!/bin/sh\necho hi\n")
        os.chmod(os.path.join(top, "run.sh"), 0o751)
        with open(os.path.join(top, "sub", LONG), "wb") as f:
            f.write(os.urandom(300000))
        os.symlink("run.sh", os.path.join(top, "link"))
        return top

    def guest(self, script):
        return harness.guest(self.d, "cp", script)

    def test_tree_round_trip(self):
        top = self.tree()
        self.d.cli("exec", "cp", "mkdir", "-p", "/srv/in")
        self.d.cli("cp", top, "cp:/srv/in")
        out = self.guest("cd /srv/in/tree; stat -c '%a %F' run.sh; readlink link; "
                         f"sha256sum sub/{LONG} | cut -d' ' -f1; test -d sub/empty && echo empty")
        self.assertEqual(out.split("\n")[:4], ["751 regular file", "run.sh",
                                               sha(os.path.join(top, "sub", LONG)), "empty"])
        back = os.path.join(self.tmp, "back")
        os.mkdir(back)
        self.d.cli("cp", "cp:/srv/in/tree", back)
        got = os.path.join(back, "tree")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(got, "run.sh")).st_mode), 0o751)
        self.assertEqual(os.readlink(os.path.join(got, "link")), "run.sh")
        self.assertEqual(sha(os.path.join(got, "sub", LONG)), sha(os.path.join(top, "sub", LONG)))
        self.assertTrue(os.path.isdir(os.path.join(got, "sub", "empty")))

    def test_as_a_new_name_and_contents(self):
        top = self.tree()
        self.d.cli("exec", "cp", "mkdir", "-p", "/srv")
        self.d.cli("cp", top, "cp:/srv/renamed")  # /srv/renamed does not exist: the tree becomes it
        self.assertEqual(self.guest("ls /srv/renamed | sort | tr '\\n' ' '"), "link run.sh sub ")
        self.d.cli("exec", "cp", "mkdir", "-p", "/srv/flat")
        self.d.cli("cp", top + "/.", "cp:/srv/flat")  # '/.': the contents
        self.assertEqual(self.guest("ls /srv/flat | sort | tr '\\n' ' '"), "link run.sh sub ")
        dest = os.path.join(self.tmp, "hostname.txt")
        self.d.cli("cp", "cp:/etc/hostname", dest)  # a file to a new host name
        with open(dest) as f:
            self.assertEqual(f.read(), "cp\n")

    def test_out_of_the_guest_drops_set_id_bits(self):
        """What comes from a guest is not trusted on the host: no setuid file appears."""
        self.guest("echo '#!/bin/sh' > /root/suid; chmod 4755 /root/suid")
        dest = os.path.join(self.tmp, "suid")
        self.d.cli("cp", "cp:/root/suid", dest)
        self.assertEqual(stat.S_IMODE(os.stat(dest).st_mode), 0o755)

    def test_tar_on_stdin_and_stdout(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("from-stdin.txt")
            data = b"piped in\n"
            info.size, info.mode = len(data), 0o600
            t.addfile(info, io.BytesIO(data))
        self.d.cli("cp", "-", "cp:/tmp", input=buf.getvalue())
        self.assertEqual(self.guest("stat -c %a /tmp/from-stdin.txt; cat /tmp/from-stdin.txt"),
                         "600\npiped in\n")
        p = self.d.cli("cp", "cp:/tmp/from-stdin.txt", "-")
        with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
            self.assertEqual(t.getnames(), ["from-stdin.txt"])
            self.assertEqual(t.extractfile("from-stdin.txt").read(), b"piped in\n")

    def test_bad_paths(self):
        p = self.d.cli("cp", "cp:/no/such/file", self.tmp, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"could not find '/no/such/file'", p.stderr)
        p = self.d.cli("cp", os.path.join(self.tmp, "missing"), "cp:/tmp", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"missing", p.stderr)
        src = os.path.join(self.tmp, "f")
        open(src, "w").close()
        p = self.d.cli("cp", src, "cp:/no/such/dir/f", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no directory '/no/such/dir'", p.stderr)
        p = self.d.cli("cp", "cp:/etc", os.path.join(self.tmp, "nodir", "x"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"does not exist", p.stderr)
        p = self.d.cli("cp", src, self.tmp, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"NAME:PATH", p.stderr)
        p = self.d.cli("cp", "nosuch:/x", self.tmp, check=False)
        self.assertEqual(p.returncode, 1)

    def test_hostile_archive_is_refused_over_the_api(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("../escaped")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
        self.d.cli("exec", "cp", "mkdir", "-p", "/srv/jail")
        st, body = self.d.request("PUT", "/v1/instances/cp/archive?path=/srv/jail",
                                  raw=buf.getvalue(),
                                  headers={"Content-Type": "application/x-tar"})
        self.assertEqual(st, 400, body)
        self.assertIn("escaped", body["message"])
        self.assertEqual(self.guest("ls /srv/escaped 2>/dev/null; echo done"), "done\n")

    def test_full_disk_is_507_and_leaves_no_partial_file(self):
        # The whole file system's size: more than fits, root's reserved blocks included.
        size_kb = int(self.guest("df -k / | tail -1 | awk '{print $2}'"))
        big = os.path.join(self.tmp, "big")
        with open(big, "wb") as f:
            f.truncate((size_kb + 8192) * 1024)  # sparse here, real blocks in the guest
        p = self.d.cli("cp", big, "cp:/root/big", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"No space left", p.stderr)
        self.assertEqual(self.guest("ls /root/big 2>/dev/null; echo gone"), "gone\n")


if __name__ == "__main__":
    harness.main()
