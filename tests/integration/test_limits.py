"""What the host cannot back is refused, and a chatty guest cannot fill the data dir."""
import os
import re
import stat
import subprocess
import threading
import time

import harness
from harness import guest

CAP = 128 * 1024  # torpord --console-log-max for this test: small, so it is reached fast


class Limits(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon().start(extra=["--console-log-max", str(CAP)])

    def test_memory_beyond_host_refused(self):
        d = self.d
        st, out = d.request("POST", "/v1/instances", {"name": "huge", "memory_mib": 65536})
        self.assertEqual(st, 400, out)
        self.assertIn("more than this host has", out["message"])
        st, out = d.request("GET", "/v1/instances/huge")
        self.assertEqual(st, 404, out)
        self.assertEqual(os.listdir(os.path.join(d.data_dir, "instances")), [])

    def test_console_log_is_capped(self):
        d = self.d
        d.cli("run", "--name", "chatty")
        log = os.path.join(d.inst_dir("chatty"), "logs", "console.log")
        # The guest writes to its serial console as fast as it can, in the background.
        # Numbered lines, so that a follower can tell a repeat from progress.
        pad = "x" * 100
        guest(d, "chatty", "setsid sh -c 'i=0; while true; do i=$((i+1)); echo line-$i-" + pad +
              "; done > /dev/console' </dev/null >/dev/null 2>&1 &")
        # A follower keeps receiving output across the cuts.
        env = dict(os.environ, TORPOR_SOCKET=d.socket)
        follower = subprocess.Popen([harness.TORPOR, "logs", "-f", "chatty"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        chunks = []
        received = []

        def follow():
            for data in iter(lambda: follower.stdout.read1(65536), b""):
                chunks.append(time.monotonic())
                received.append(data)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        written = 0
        largest = 0
        first_cut = None
        deadline = time.monotonic() + 120
        # Bounded wait for the guest to have written several caps' worth: the file must have
        # been cut (it shrank) and never grown far past the cap (one tick's worth of output).
        shrank = False
        last = 0
        while time.monotonic() < deadline and not (shrank and written > 4 * CAP):
            size = os.path.getsize(log)
            largest = max(largest, size)
            if size < last:
                shrank = True
                written += last
                first_cut = first_cut or time.monotonic()
            last = size
            time.sleep(0.05)  # sampling interval of a bounded wait
        self.assertTrue(shrank, f"console log never cut (largest {largest} bytes)")
        self.assertLess(largest, 8 * CAP, "console log grew far past its cap")
        # The newest output is what is kept.
        with open(log, "rb") as f:
            self.assertIn(b"line-", f.read()[-4096:])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(t > first_cut + 1 for t in chunks):
            time.sleep(0.05)  # sampling interval of a bounded wait
        self.assertTrue(any(t > first_cut + 1 for t in chunks), "logs -f stopped at the cut")
        d.cli("rm", "-f", "chatty")
        follower.wait(timeout=30)  # the stream ends with the instance
        follower.stdout.close()
        reader.join(timeout=30)
        # Across the cuts the follower kept its place: numbers only go up (it may miss what
        # was cut before it read it, never see a line twice).
        nums = [int(m) for m in re.findall(rb"line-(\d+)-x{100}\r?\n", b"".join(received))]
        self.assertGreater(len(nums), 1000)
        back = [(a, b) for a, b in zip(nums, nums[1:]) if b <= a]
        self.assertEqual(back[:5], [], f"{len(back)} repeats in the followed log")


    def test_files_are_private(self):
        """Guest memory, disks, logs, snapshots and records: readable by the daemon's user
        only (a guest's memory holds its secrets)."""
        d = self.d
        d.cli("run", "--name", "private")
        d.cli("standby", "private")
        loose = []
        for root, dirs, files in os.walk(d.data_dir):
            for n in dirs + files:
                p = os.path.join(root, n)
                st = os.lstat(p)
                if stat.S_ISSOCK(st.st_mode):
                    continue
                if st.st_mode & 0o077:
                    loose.append(f"{p} {oct(st.st_mode & 0o777)}")
        self.assertEqual(loose, [])
        d.cli("rm", "-f", "private")


if __name__ == "__main__":
    harness.main()
