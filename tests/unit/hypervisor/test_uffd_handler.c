/* torpord's page-fault handler mode against a fake VMM of this test's own: a forked child that
 * registers anonymous memory with a real userfaultfd and sends it with its region list, as
 * Firecracker does. Checks pages copied from the memory file, a remove event's zero pages, the
 * counters, and that the handler goes when its VMM does. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "hypervisor/firecracker/fc_uffd.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/sock.h"
#include "util/xalloc.h"

#define PAGE   4096
#define NPAGES 16

enum vmm_mode {
    VMM_GOOD,
    VMM_BAD,    /* its region list runs past the memory file's end; it exits after sending it */
    VMM_CLOSES, /* closes its end of the socket after the handshake, and runs on */
};

/* The fake VMM: exit status 0 when every check passed, else the number of the failed one. */
static int
fake_vmm(const char *sock_path, enum vmm_mode mode)
{
    bool bad = mode == VMM_BAD;
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uint8_t *mem =
        mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    char msg[256];

    if (mem == MAP_FAILED || uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
        return 1;
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)mem, .len = NPAGES * PAGE },
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
        return 2;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    strcpy(sa.sun_path, sock_path);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return 3;
    int n = snprintf(msg, sizeof(msg),
                     "[{\"base_host_virt_addr\":%llu,\"size\":%d,\"offset\":0,\"page_size\":%d,"
                     "\"page_size_kib\":%d}]",
                     (unsigned long long)(uintptr_t)mem, (bad ? 2 : 1) * NPAGES * PAGE, PAGE, PAGE);
    if (sock_send_with_fd(s, msg, (size_t)n, uffd, NULL) < 0)
        return 4;
    if (bad)
        return 0;
    if (mode == VMM_CLOSES)
        close(s);
    /* Faults: each page holds its number + 1, from the file. */
    if (mem[3 * PAGE] != 4 || mem[3 * PAGE + PAGE - 1] != 4 || mem[7 * PAGE + 100] != 8)
        return 5;
    /* A balloon's madvise: the page must read as zeros from now on (a remove event). */
    if (madvise(mem + 3 * PAGE, PAGE, MADV_DONTNEED) < 0)
        return 6;
    for (int k = 0; k < PAGE; k++)
        if (mem[3 * PAGE + k] != 0)
            return 7;
    if (mem[15 * PAGE] != 16)
        return 8;
    return 0;
}

/* Write the memory file (page k holds k + 1) at mem, start the handler on it for instance dir
 * dir as the driver does, and return the handler's pid. */
static pid_t
handler_start(const char *torpord, const char *dir, const char *mem)
{
    _cleanup_free_ char *sock = fs_path_join(dir, FC_UFFD_SOCK);
    _cleanup_free_ char *pidfile = fs_path_join(dir, FC_UFFD_PIDFILE);
    _cleanup_free_ char *data = NULL;
    uint8_t page[PAGE];
    size_t len;
    int status;

    int fd = open(mem, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    for (int k = 0; k < NPAGES; k++) {
        memset(page, k + 1, sizeof(page));
        assert_int_equal(write(fd, page, sizeof(page)), sizeof(page));
    }
    close(fd);

    /* The driver's part: listen, start the handler with the socket as fd 3, await its record. */
    int lfd = sock_listen_unix(sock, 1, NULL);
    assert_true(lfd >= 0);
    pid_t starter = fork();
    assert_true(starter >= 0);
    if (starter == 0) {
        if (lfd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(lfd, 3) < 0)
            _exit(127);
        execl(torpord, "torpord", FC_UFFD_HANDLER_FLAG, mem, dir, (char *)NULL);
        _exit(127);
    }
    close(lfd);
    assert_int_equal(waitpid(starter, &status, 0), starter);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(fs_read_file(pidfile, 64, &data, &len, NULL), 0);
    pid_t handler = atoi(data);
    assert_true(handler > 0);
    return handler;
}

/* Run a fake VMM against the handler's socket in dir, then wait for the handler to exit. */
static void
vmm_run(const char *dir, pid_t handler, enum vmm_mode mode)
{
    _cleanup_free_ char *sock = fs_path_join(dir, FC_UFFD_SOCK);
    int status;
    int hfd = (int)syscall(SYS_pidfd_open, handler, 0);
    assert_true(hfd >= 0);

    pid_t vmm = fork();
    assert_true(vmm >= 0);
    if (vmm == 0)
        _exit(fake_vmm(sock, mode));
    assert_int_equal(waitpid(vmm, &status, 0), vmm);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("fake VMM: %s %d", WIFEXITED(status) ? "check" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));

    /* Its VMM gone, the handler goes too. */
    struct pollfd p = { .fd = hfd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 10000), 1);
    close(hfd);
}

static void
test_serves_file_and_zero_pages(void **state)
{
    const char *torpord = getenv("TORPORD");
    char dir[] = "/tmp/torpor-test-uffd-XXXXXX";
    _cleanup_free_ char *mem = NULL, *stats = NULL, *pidfile = NULL, *data = NULL;
    size_t len;
    (void)state;

    if (!torpord)
        skip();
    assert_non_null(mkdtemp(dir));
    mem = fs_path_join(dir, "memory");
    stats = fs_path_join(dir, FC_UFFD_STATS);
    pidfile = fs_path_join(dir, FC_UFFD_PIDFILE);
    vmm_run(dir, handler_start(torpord, dir, mem), VMM_GOOD);

    /* It forgets its record. */
    assert_false(fs_exists(pidfile));
    assert_int_equal(fs_read_file(stats, 256, &data, &len, NULL), 0);
    /* Page 3's fault copies pages 3..15 (fault-around, up to the region's end), so 7 and 15 are
     * there already; page 3 again as a zero page after the remove: 2 faults, 14 pages. */
    assert_non_null(strstr(data, "\"faults\":2,"));
    assert_non_null(strstr(data, "\"pages\":14,"));
    assert_non_null(strstr(data, "\"zero_pages\":1,"));
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

/* The handler of an instance's snapshot-latest: a VMM served to its exit leaves the pages it
 * was served as the image's working set; one that sent a bad handshake leaves the recorded set
 * as it was (not an empty one). */
static void
test_working_set_only_after_served_vmm(void **state)
{
    const char *torpord = getenv("TORPORD");
    char data_dir[] = "/tmp/torpor-test-uffd-XXXXXX";
    _cleanup_free_ char *dir = NULL, *latest = NULL, *mem = NULL, *ws = NULL, *text = NULL;
    size_t len;
    (void)state;

    if (!torpord)
        skip();
    assert_non_null(mkdtemp(data_dir));
    dir = xasprintf("%s/instances/0123456789abcdef", data_dir);
    latest = fs_path_join(dir, "snapshots/snapshot-latest");
    assert_int_equal(fs_mkdir_p(latest, 0700, NULL), 0);
    mem = fs_path_join(latest, "memory");
    ws = fs_path_join(latest, "workingset");
    assert_int_equal(fs_write_atomic(ws, "recorded", 8, 0600, NULL), 0);

    vmm_run(dir, handler_start(torpord, dir, mem), VMM_BAD);
    assert_int_equal(fs_read_file(ws, 64, &text, &len, NULL), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(text, "recorded", 8);

    vmm_run(dir, handler_start(torpord, dir, mem), VMM_GOOD);
    free(text);
    text = NULL;
    assert_int_equal(fs_read_file(ws, 4096, &text, &len, NULL), 0);
    assert_false(len == 8 && memcmp(text, "recorded", 8) == 0);
    assert_int_equal(fs_rm_rf(data_dir, NULL), 0);
}

/* Firecracker keeps its end of the socket open, but the VMM's exit is its pidfd's to say: a
 * VMM that closes the socket and runs on is still served (not killed by the sentinel). */
static void
test_socket_eof_is_not_vmm_exit(void **state)
{
    const char *torpord = getenv("TORPORD");
    char dir[] = "/tmp/torpor-test-uffd-XXXXXX";
    _cleanup_free_ char *mem = NULL;
    (void)state;

    if (!torpord)
        skip();
    assert_non_null(mkdtemp(dir));
    mem = fs_path_join(dir, "memory");
    vmm_run(dir, handler_start(torpord, dir, mem), VMM_CLOSES);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serves_file_and_zero_pages),
        cmocka_unit_test(test_working_set_only_after_served_vmm),
        cmocka_unit_test(test_socket_eof_is_not_vmm_exit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
