/* Accelerator choice (KVM only where it is real hardware virtualisation) and the host TSC rate. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hypervisor/qemu/qemu.h"
#include "util/cleanup.h"
#include "util/fs.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_RDTSC 1
#else
#define HAVE_RDTSC 0
#endif

#define CPUINFO_MAX (16u << 20)

static bool
is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* True when a "flags : ..." line of cpuinfo lists vmx or svm as a whole word. */
static bool
cpuinfo_has_virt(const char *text)
{
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);

        if (n >= 5 && strncmp(line, "flags", 5) == 0) {
            const char *p = line + 5, *stop = line + n;
            while (p < stop && is_space(*p))
                p++;
            if (p < stop && *p == ':') {
                for (p++; p < stop;) {
                    while (p < stop && is_space(*p))
                        p++;
                    const char *w = p;
                    while (p < stop && !is_space(*p))
                        p++;
                    size_t wl = (size_t)(p - w);
                    if (wl == 3 && (strncmp(w, "vmx", 3) == 0 || strncmp(w, "svm", 3) == 0))
                        return true;
                }
            }
        }
        line = end ? end + 1 : NULL;
    }
    return false;
}

int
qemu_accel_pick(const char *override, const char *cpuinfo_path, const char *kvm_path,
                const char **ret_accel, struct tp_err *err)
{
    _cleanup_free_ char *cpuinfo = NULL;
    _cleanup_close_ int fd = -EBADF;

    if (override) {
        if (strcmp(override, "kvm") == 0) {
            *ret_accel = "kvm";
            return 0;
        }
        if (strcmp(override, "tcg") == 0) {
            *ret_accel = "tcg";
            return 0;
        }
        return tp_err_set(err, -EINVAL, "accelerator '%s' is not 'kvm' or 'tcg'", override);
    }

    /* /dev/kvm can exist without hardware support (nested PVM emulates guest kernel code), so
     * the CPU flags decide first; an unreadable cpuinfo just means TCG. */
    *ret_accel = "tcg";
    if (fs_read_file(cpuinfo_path ? cpuinfo_path : "/proc/cpuinfo", CPUINFO_MAX, &cpuinfo, NULL,
                     NULL) < 0)
        return 0;
    if (!cpuinfo_has_virt(cpuinfo))
        return 0;
    fd = open(kvm_path ? kvm_path : "/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd >= 0)
        *ret_accel = "kvm";
    return 0;
}

static uint64_t tsc_khz_cached;
static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;

#if HAVE_RDTSC
static uint64_t
mono_raw_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* rdtsc against CLOCK_MONOTONIC_RAW over 20 ms; the smallest of 5 rejects samples stretched by
 * preemption between the two reads. */
static void
tsc_measure(void)
{
    uint64_t best = 0;

    for (int i = 0; i < 5; i++) {
        struct timespec d = { .tv_nsec = 20 * 1000 * 1000 };
        /* The counter brackets the clock, so a preemption can only inflate a sample: the
         * smallest of several is then the best estimate. */
        uint64_t c0 = __rdtsc(), t0 = mono_raw_ns();
        while (nanosleep(&d, &d) < 0 && errno == EINTR)
            ;
        uint64_t t1 = mono_raw_ns(), c1 = __rdtsc();
        if (t1 <= t0 || c1 <= c0)
            continue;
        uint64_t khz = (uint64_t)((double)(c1 - c0) * 1e6 / (double)(t1 - t0));
        if (best == 0 || khz < best)
            best = khz;
    }
    tsc_khz_cached = best;
}
#else
static void
tsc_measure(void)
{
    tsc_khz_cached = 0;
}
#endif

uint64_t
qemu_tsc_khz(void)
{
    pthread_once(&tsc_once, tsc_measure);
    return tsc_khz_cached;
}
