/* Builds the qemu-system-x86_64 command line for a microvm guest from a VM spec. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/qemu/qemu.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

/* Appended to the manager's kernel command line. reboot=t: the kernel's default reboot on a
 * microvm ends in a jump to the firmware, which boots the guest again without QEMU seeing a
 * reset, so -no-reboot never fires and a guest that panics at boot loops forever. A triple
 * fault is a reset QEMU sees (on TCG and KVM alike). */
#define QEMU_GUEST_CMDLINE "reboot=t"
/* The kernel's console: the first serial port, or the second when the spec gives it a log of
 * its own (the first then carries only what the guest writes there). 8250.nr_uarts= keeps the
 * kernel from probing ports that are not there. */
#define QEMU_CONSOLE_SHARED "console=ttyS0 8250.nr_uarts=1"
#define QEMU_CONSOLE_OWN    "console=ttyS1 8250.nr_uarts=2"

struct argv_builder {
    char **v;
    size_t n, cap;
};

static void
argv_add(struct argv_builder *b, char *owned)
{
    if (b->n + 2 > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->v = xrealloc(b->v, b->cap * sizeof(char *));
    }
    b->v[b->n++] = owned;
    b->v[b->n] = NULL;
}

static void
argv_add2(struct argv_builder *b, const char *opt, char *owned_value)
{
    argv_add(b, xstrdup(opt));
    argv_add(b, owned_value);
}

/* QEMU splits option values at commas; a literal comma is written twice. */
static char *
opt_escape(const char *s)
{
    size_t n = strlen(s), commas = 0;
    for (size_t i = 0; i < n; i++)
        commas += s[i] == ',';
    char *out = xmalloc(n + commas + 1), *p = out;
    for (size_t i = 0; i < n; i++) {
        *p++ = s[i];
        if (s[i] == ',')
            *p++ = ',';
    }
    *p = '\0';
    return out;
}

static int
check_spec(const struct hv_vm_spec *spec, const struct qemu_argv_opts *o, struct tp_err *err)
{
    if (!spec->kernel || !o->mem_path || !spec->console_log)
        return tp_err_set(err, -EINVAL, "VM spec needs a kernel, a memory file and a console log");
    if (spec->memory_mib == 0 || spec->vcpus == 0)
        return tp_err_set(err, -EINVAL,
                          "VM spec needs memory and vCPUs (got %" PRIu32 " MiB, %" PRIu32 " vCPUs)",
                          spec->memory_mib, spec->vcpus);
    if (!o->accel || (strcmp(o->accel, "kvm") != 0 && strcmp(o->accel, "tcg") != 0))
        return tp_err_set(err, -EINVAL, "accelerator '%s' is not 'kvm' or 'tcg'",
                          o->accel ? o->accel : "(none)");
    if (o->qmp_fd < 0 || o->agent_fd < 0)
        return tp_err_set(err, -EINVAL, "QMP and agent socket fds are required");
    if (spec->nic && (o->net_fd < 0 || !spec->nic->mac))
        return tp_err_set(err, -EINVAL, "a NIC needs a TAP fd and a MAC");
    return 0;
}

int
qemu_argv_build(const struct hv_vm_spec *spec, const struct qemu_argv_opts *o, char ***ret_argv,
                struct tp_err *err)
{
    struct argv_builder b = { 0 };
    _cleanup_free_ char *mem = NULL, *con = NULL, *klog = NULL;
    const char *binary = o->binary;
    int r;

    r = check_spec(spec, o, err);
    if (r < 0)
        return r;
    if (!binary)
        binary = getenv(QEMU_BINARY_ENV);
    if (!binary || !*binary)
        binary = QEMU_BINARY_DEFAULT;

    mem = opt_escape(o->mem_path);
    con = opt_escape(spec->console_log);
    if (spec->kernel_log)
        klog = opt_escape(spec->kernel_log);

    argv_add(&b, xstrdup(binary));
    argv_add2(&b, "-M", xstrdup("microvm,memory-backend=mem"));
    argv_add2(&b, "-accel", xstrdup(o->accel));
    /* `host` aborts under TCG; the default model is also what TCG boots fastest. */
    argv_add2(&b, "-cpu", xstrdup(strcmp(o->accel, "kvm") == 0 ? "host" : "qemu64"));
    argv_add2(&b, "-smp", xasprintf("%" PRIu32, spec->vcpus));
    argv_add2(&b, "-m", xasprintf("%" PRIu32 "M", spec->memory_mib));
    /* RAM is a shared file so standby can keep it in place instead of streaming it. */
    /* share=off maps a fork template copy-on-write: the guest never writes the file. */
    argv_add2(&b, "-object",
              xasprintf("memory-backend-file,id=mem,size=%" PRIu32 "M,mem-path=%s,share=%s",
                        spec->memory_mib, mem, o->mem_private ? "off" : "on"));
    argv_add(&b, xstrdup("-nodefaults"));
    argv_add(&b, xstrdup("-no-user-config"));
    argv_add2(&b, "-display", xstrdup("none"));
    /* A guest reboot or panic (the manager passes panic=-1) ends QEMU instead of booting the
     * guest again; see QEMU_GUEST_CMDLINE for the other half. */
    argv_add(&b, xstrdup("-no-reboot"));
    /* QEMU confines itself with seccomp once set up: no obsolete or privilege-raising calls,
     * no child processes, no scheduling changes (it needs none of them). */
    argv_add2(&b, "-sandbox",
              xstrdup("on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"));
    /* Leave the run state out of snapshots: a restore then starts the guest as soon as the
     * state is loaded (resume on load) unless -S asks for an explicit `cont`. */
    argv_add2(&b, "-global", xstrdup("migration.store-global-state=off"));
    argv_add2(&b, "-kernel", xstrdup(spec->kernel));
    if (spec->initrd)
        argv_add2(&b, "-initrd", xstrdup(spec->initrd));
    /* Without tsc_early_khz a microvm guest can hang calibrating its TSC on a busy host. */
    _cleanup_free_ char *tsc =
        o->tsc_khz > 0 ? xasprintf(" tsc_early_khz=%" PRIu64, o->tsc_khz) : xstrdup("");
    argv_add2(&b, "-append",
              xasprintf("%s%s%s " QEMU_GUEST_CMDLINE "%s", spec->cmdline ? spec->cmdline : "",
                        spec->cmdline && *spec->cmdline ? " " : "",
                        klog ? QEMU_CONSOLE_OWN : QEMU_CONSOLE_SHARED, tsc));
    argv_add2(&b, "-chardev", xasprintf("file,id=con,path=%s,append=on", con));
    argv_add2(&b, "-serial", xstrdup("chardev:con"));
    if (klog) {
        /* ttyS1 (COM2: 0x2f8, IRQ 3; microvm makes only the first port of -serial). Only VMs given
         * a kernel log have it, so the device set of every other VM, and the snapshots it loads,
         * stay as they were. */
        argv_add2(&b, "-chardev", xasprintf("file,id=klog,path=%s,append=on", klog));
        argv_add2(&b, "-device", xstrdup("isa-serial,chardev=klog,index=1"));
    }
    argv_add2(&b, "-chardev", xasprintf("socket,id=qmp,fd=%d,server=on,wait=off", o->qmp_fd));
    argv_add2(&b, "-mon", xstrdup("chardev=qmp,mode=control"));
    argv_add2(&b, "-device", xstrdup("virtio-serial-device"));
    argv_add2(&b, "-chardev", xasprintf("socket,id=agent,fd=%d,server=on,wait=off", o->agent_fd));
    argv_add2(&b, "-device", xstrdup("virtserialport,chardev=agent,name=org.torpor.agent"));
    if (spec->root_disk) {
        _cleanup_free_ char *disk = opt_escape(spec->root_disk);
        /* writeback honours guest flushes, works on tmpfs (no O_DIRECT), and migration flushes
         * it before a snapshot completes. The only virtio-blk device, so the guest's /dev/vda. */
        argv_add2(
            &b, "-drive",
            xasprintf("if=none,id=root,file=%s,format=raw,cache=writeback,discard=unmap", disk));
        argv_add2(&b, "-device", xstrdup("virtio-blk-device,drive=root"));
    }
    argv_add2(&b, "-device", xstrdup("virtio-rng-device"));
    if (spec->nic) {
        /* No vhost: it aborts QEMU 7.2 here (RECIPES.md). The TAP has IFF_VNET_HDR, which QEMU
         * reads from the fd. Added last, so the devices of a snapshot taken without one keep
         * their order. */
        argv_add2(&b, "-netdev", xasprintf("tap,id=net0,fd=%d", o->net_fd));
        _cleanup_free_ char *mac = opt_escape(spec->nic->mac);
        argv_add2(&b, "-device", xasprintf("virtio-net-device,netdev=net0,mac=%s", mac));
    }
    if (o->start_paused)
        argv_add(&b, xstrdup("-S"));
    if (o->incoming)
        argv_add2(&b, "-incoming", xstrdup("defer"));

    *ret_argv = b.v;
    return 0;
}
