"""torpord --socket-group: members of the group use torpor without root; others are told what
to do. Needs root (it creates a throwaway group and two users, removed afterwards)."""
import os
import subprocess
import unittest

import harness

SUFFIX = str(os.getpid())
GROUP = "tpsg" + SUFFIX
MEMBER = "tpsgm" + SUFFIX
OUTSIDER = "tpsgo" + SUFFIX


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


def as_user(user, *args, socket):
    # --init-groups: the user's groups from /etc/group, as a login would give them.
    return subprocess.run(["setpriv", "--reuid", user, "--regid", user, "--init-groups",
                           "env", f"TORPOR_SOCKET={socket}", harness.TORPOR, *args],
                          capture_output=True, timeout=60)


@unittest.skipIf(os.geteuid() != 0, "needs root: it creates a group and users for the test")
class SocketGroup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.made = []
        try:
            run("groupadd", GROUP)
            cls.made.append(("groupdel", GROUP))
            for user, extra in ((MEMBER, ["-G", GROUP]), (OUTSIDER, [])):
                run("useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
                    *extra, user)
                cls.made.insert(0, ("userdel", user))
            cls.d = harness.Daemon()
            # A directory torpord creates for its socket must let the group through; the test's
            # own temp dir (0700) only needs to be passable.
            os.chmod(cls.d.tmp, 0o711)
            cls.d.socket = os.path.join(cls.d.tmp, "run", "api.sock")
            cls.d.start(extra=["--socket-group", GROUP])
        except BaseException:
            cls.remove_accounts()
            raise

    @classmethod
    def remove_accounts(cls):
        for cmd in cls.made:
            subprocess.run(cmd, capture_output=True)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.cleanup()
        finally:
            cls.remove_accounts()

    def test_socket_mode_and_group(self):
        import grp
        st = os.stat(self.d.socket)
        self.assertEqual(st.st_mode & 0o777, 0o660)
        self.assertEqual(st.st_uid, 0)
        self.assertEqual(st.st_gid, grp.getgrnam(GROUP).gr_gid)
        self.assertEqual(os.stat(os.path.dirname(self.d.socket)).st_mode & 0o777, 0o755)

    def test_member_can_use_torpor(self):
        p = as_user(MEMBER, "ps", "-a", socket=self.d.socket)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith(b"ID "), p.stdout)

    def test_outsider_is_told_what_to_do(self):
        p = as_user(OUTSIDER, "ps", socket=self.d.socket)
        self.assertEqual(p.returncode, 1, p)
        self.assertEqual(p.stdout, b"")
        want = (f"torpor: permission denied on torpord's socket '{self.d.socket}': run torpor "
                "as root, or start torpord with --socket-group GROUP and join that group\n")
        self.assertEqual(p.stderr.decode(), want)

    def test_unknown_group_stops_the_start(self):
        d = harness.Daemon()
        try:
            with self.assertRaises(RuntimeError) as cm:
                d.start(extra=["--socket-group", "tp-no-such-group"])
            self.assertIn("unknown group 'tp-no-such-group'", str(cm.exception))
            self.assertEqual(d.proc.returncode, 2)
        finally:
            d.cleanup()


if __name__ == "__main__":
    harness.main()
