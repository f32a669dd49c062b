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


def daemon_args(a):
    return ["--firecracker", a.firecracker] if a.firecracker else []


def run_args(a):
    return ["--hypervisor", a.hypervisor]
