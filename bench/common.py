"""Shared by the bench scripts: machine description and percentiles."""
import os
import platform
import subprocess


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "?")
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
    accel = "kvm" if (" vmx" in flags or " svm" in flags) else "tcg"
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                          text=True).stdout.split("\n")[0]
    return (f"{platform.node()} {os.cpu_count()} cpus, {model}; host kernel {platform.release()}; "
            f"{qemu}; accel {accel} (auto)")


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]


def add_hypervisor_args(ap):
    """--hypervisor and --firecracker, the same for every bench script."""
    ap.add_argument("--hypervisor", default="qemu", choices=["qemu", "firecracker"])
    ap.add_argument("--firecracker", metavar="PATH",
                    help="the firecracker binary (torpord --firecracker); for the test double "
                         "also set FC_DOUBLE_SPEC and FC_DOUBLE_AGENT")
    ap.add_argument("--mem-backend", choices=["file", "uffd"],
                    help="run --mem-backend: how restores and fork children load guest memory "
                         "(firecracker: uffd = torpor's page-fault handler serves each page on "
                         "first touch)")


def daemon_args(a):
    return ["--firecracker", a.firecracker] if a.firecracker else []


def run_args(a):
    mb = getattr(a, "mem_backend", None)
    return ["--hypervisor", a.hypervisor] + (["--mem-backend", mb] if mb else [])


class Netns:
    """A network namespace of the bench's own: torpord --network and its guests live in it, so
    the host's own network is never touched. Deleted (with everything torpord set up in it) at
    the end."""

    def __init__(self):
        self.name = f"tpbench-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.exec("ip", "link", "set", "lo", "up")

    def argv(self, *args):
        return ["ip", "netns", "exec", self.name, *args]

    def exec(self, *args):
        subprocess.run(self.argv(*args), check=True)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def add_network_arg(ap):
    ap.add_argument("--network", action="store_true",
                    help="run torpord --network inside a network namespace this bench creates and "
                         "deletes; guests get the default network")


def start_daemon(a):
    """torpord for a bench run: (daemon, Netns or None). The scripts put harness on sys.path."""
    import harness
    ns = Netns() if getattr(a, "network", False) else None
    try:
        d = harness.Daemon(netns=ns.name if ns else None).start(
            extra=daemon_args(a) + (["--network"] if ns else []))
    except Exception:
        if ns:
            ns.delete()
        raise
    return d, ns


def stop_daemon(d, ns):
    try:
        d.cleanup()
    finally:
        if ns:
            ns.delete()
