"""Shell completion and manual pages, as a user's shell and man see them: the bash script loads
and registers, completes verbs, options and (from a real torpord) instance names; the zsh one
loads where zsh is; the generated pages render without warnings."""
import os
import shutil
import subprocess
import unittest

import harness

BUILD = harness.BUILD


def complete(words, socket=None):
    """COMPREPLY of torpor's bash completion for words (the last one being completed)."""
    script = ('source <("$TORPOR" completion bash) || exit 1\n'
              'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _torpor\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    # The script runs the torpor the user typed (COMP_WORDS[0]) for instance names: ours.
    env = dict(os.environ, TORPOR=harness.TORPOR,
               PATH=os.path.dirname(harness.TORPOR) + ":" + os.environ["PATH"])
    p = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, env=env,
                       timeout=60)
    if p.returncode != 0:
        raise AssertionError(p)
    return p.stdout.decode().split()


class Completion(unittest.TestCase):
    def test_bash_registers(self):
        p = subprocess.run(["bash", "-c", f'source <("{harness.TORPOR}" completion bash) && '
                            "complete -p torpor"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout, b"complete -F _torpor torpor\n")
        self.assertEqual(p.stderr, b"")

    def test_verbs_and_options(self):
        self.assertEqual(complete(["torpor", "ex"]), ["exec"])
        self.assertEqual(complete(["torpor", "--socket", "/x", "st"]),
                         ["stats", "stop", "start", "standby"])
        self.assertEqual(complete(["torpor", "stats", "--no-"]), ["--no-stream", "--no-trunc"])
        self.assertEqual(complete(["torpor", "logs", "web", "--fol"]), ["--follow"])
        self.assertEqual(complete(["torpor", "help", "inspe"]), ["inspect"])
        self.assertEqual(complete(["torpor", "completion", ""]), ["bash", "zsh"])
        # Past CMD the words are the guest command's: no torpor options.
        self.assertEqual(complete(["torpor", "exec", "web", "ls", "-"]), [])
        # A value: files for paths, nothing to guess for others.
        src = os.path.join(BUILD, "src")
        self.assertEqual(complete(["torpor", "run", "--kernel", src + "/cl"]), [src + "/cli"])
        self.assertEqual(complete(["torpor", "run", "--name", ""]), [])

    def test_usage_errors(self):
        p = subprocess.run([harness.TORPOR, "completion", "fish"], capture_output=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"no completion for shell 'fish'", p.stderr)
        # Hidden from the verb list and the global options.
        p = subprocess.run([harness.TORPOR, "--help"], capture_output=True)
        self.assertNotIn(b"completion", p.stdout)
        self.assertNotIn(b"--man", p.stdout)

    @unittest.skipIf(not shutil.which("zsh"), "zsh is not installed")
    def test_zsh_loads(self):
        p = subprocess.run(["zsh", "-fc", f'autoload -U compinit && compinit -u && '
                            f'source <("{harness.TORPOR}" completion zsh) && '
                            "print ${_comps[torpor]}"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn(b"_bash_complete", p.stdout)


class InstanceNames(harness.DaemonTest):
    def test_names_from_the_daemon(self):
        d = self.d
        d.cli("run", "--no-agent", "--name", "cmp-one")
        try:
            self.assertEqual(complete(["torpor", "--socket", d.socket, "rm", "cmp"]), ["cmp-one"])
            self.assertEqual(complete(["torpor", f"--socket={d.socket}", "logs", "--tail", "5",
                                       ""]), ["cmp-one"])
            # logs takes one NAME: nothing after it.
            self.assertEqual(complete(["torpor", "--socket", d.socket, "logs", "cmp-one", ""]), [])
        finally:
            d.cli("rm", "-f", "cmp-one")


class ManPages(unittest.TestCase):
    PAGES = [os.path.join(BUILD, "src/cli/torpor.1"), os.path.join(BUILD, "src/daemon/torpord.8")]

    def test_pages_are_built_and_current(self):
        # The build's pages are what the binaries print now.
        for page, cmd in zip(self.PAGES, ([harness.TORPOR, "--man"], [harness.TORPORD, "--man"])):
            with open(page, "rb") as f:
                self.assertEqual(f.read(), subprocess.run(cmd, capture_output=True,
                                                          check=True).stdout)

    @unittest.skipIf(not shutil.which("man"), "man-db is not installed")
    def test_render_without_warnings(self):
        for page in self.PAGES:
            p = subprocess.run(["man", "--warnings", "-l", page], capture_output=True,
                               env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"),
                               timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stderr, b"", page)
            self.assertIn(b"--socket", p.stdout.replace(b"\xe2\x80\x90", b"-"))


if __name__ == "__main__":
    harness.main()
