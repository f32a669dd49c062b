"""What a command finds inside a real guest: loopback up, the instance's name as hostname, in
/etc/hostname and /etc/hosts (a fork child's own name too), HOME, PATH and HOSTNAME set."""
import harness
from harness import guest

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class GuestEnv(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d.cli("run", "--name", "genv")

    def check_name(self, name):
        self.assertEqual(guest(self.d, name, "hostname; cat /etc/hostname"), f"{name}\n{name}\n")
        hosts = guest(self.d, name, "cat /etc/hosts").splitlines()
        self.assertIn(f"127.0.1.1\t{name}", hosts)
        self.assertEqual([h for h in hosts if h.startswith("127.0.1.1")], [f"127.0.1.1\t{name}"])
        self.assertIn("127.0.0.1\tlocalhost", hosts)
        self.assertEqual(guest(self.d, name, f"grep -w {name} /etc/hosts"), f"127.0.1.1\t{name}\n")
        self.assertEqual(guest(self.d, name, "echo $HOSTNAME"), f"{name}\n")

    def test_loopback(self):
        out = guest(self.d, "genv", "ping -c1 -W2 127.0.0.1")
        self.assertIn("1 packets received", out)
        # ::1 comes with the loopback device going up, where the kernel has IPv6.
        if guest(self.d, "genv", "test -e /proc/net/if_inet6 && echo yes; true") == "yes\n":
            self.assertIn("1 packets received", guest(self.d, "genv", "ping6 -c1 -W2 ::1"))

    def test_hostname(self):
        self.check_name("genv")

    def test_exec_env(self):
        out = guest(self.d, "genv", 'echo "$HOME|$PATH|${TERM-unset}"; pwd')
        self.assertEqual(out, f"/root|{DEFAULT_PATH}|unset\n/\n")
        # What the caller passes wins over the defaults.
        p = self.d.cli("exec", "genv", "-e", "HOME=/tmp", "-e", "TERM=vt100", "--",
                       "sh", "-c", 'echo "$HOME|$TERM|$HOSTNAME"')
        self.assertEqual(p.stdout, b"/tmp|vt100|genv\n")

    def test_missing_workdir(self):
        """As `docker exec -w /nonexist`: exit 126 and the reason on stderr."""
        p = self.d.cli("exec", "-w", "/nonexist", "genv", "true", check=False)
        self.assertEqual(p.returncode, 126, p)
        self.assertIn(b"/nonexist", p.stderr)
        self.assertIn(b"No such file or directory", p.stderr)
        self.assertEqual(p.stdout, b"")

    def test_fork_child_has_its_own_name(self):
        d = self.d
        st, out = d.request("POST", "/v1/instances/genv/fork", {"name": "genv-kid"})
        self.assertEqual(st, 201, out)
        try:
            self.check_name("genv-kid")
            self.check_name("genv")  # the source keeps its own
        finally:
            d.cli("rm", "-f", "genv-kid")


if __name__ == "__main__":
    harness.main()
