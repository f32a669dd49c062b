/* Running the external tools the image builder relies on (mkfs.ext4, debugfs, busybox). */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/xalloc.h"

#define STDERR_KEEP 2048 /* enough of a tool's complaint to act on, bounded */

int
image_find_tool(const char *name, char **ret_path, struct tp_err *err)
{
    const char *env_path = getenv("PATH");
    _cleanup_free_ char *dirs =
        xasprintf("%s:/usr/sbin:/sbin:/usr/bin:/bin", env_path ? env_path : "");
    char *save = NULL;

    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        _cleanup_free_ char *p = fs_path_join(d, name);
        if (access(p, X_OK) == 0) {
            *ret_path = TAKE_PTR(p);
            return 0;
        }
    }
    return tp_err_set(err, -ENOENT, "find '%s': not in PATH, /usr/sbin or /sbin", name);
}

/* The last size - 1 bytes of what the tool wrote, from a line start: tools print banners and
 * progress first and the reason they failed last. */
static void
read_tail(int fd, char *buf, size_t size)
{
    struct stat st;
    off_t from = 0;
    ssize_t n;

    buf[0] = '\0';
    if (fstat(fd, &st) < 0)
        return;
    if (st.st_size > (off_t)(size - 1))
        from = st.st_size - (off_t)(size - 1);
    do
        n = pread(fd, buf, size - 1, from);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return;
    buf[n] = '\0';
    if (from > 0) {
        char *nl = strchr(buf, '\n');
        if (nl) {
            n -= nl + 1 - buf;
            memmove(buf, nl + 1, (size_t)n + 1);
        }
    }
    /* One line in an error chain reads better than the tool's layout. */
    for (char *s = buf; *s; s++)
        if (*s == '\n')
            *s = ' ';
    while (n > 0 && buf[n - 1] == ' ')
        buf[--n] = '\0';
}

int
image_run(char *const *argv, int stdout_fd, struct tp_err *err)
{
    /* A memfd rather than a pipe: no reader thread, and a chatty tool can never block on it. */
    _cleanup_close_ int errfd = memfd_create("image-tool-stderr", MFD_CLOEXEC);
    char msg[STDERR_KEEP];
    pid_t pid;
    int status, r;

    if (errfd < 0)
        return tp_err_errno(err, -errno, "create stderr buffer for '%s'", argv[0]);
    struct proc_spawn_opts o = {
        .argv = argv,
        .stdin_fd = -1,
        .stdout_fd = stdout_fd,
        .stderr_fd = errfd,
    };
    r = proc_spawn(&o, &pid, err);
    if (r < 0)
        return r;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return tp_err_errno(err, -errno, "wait for '%s'", argv[0]);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    read_tail(errfd, msg, sizeof(msg));
    if (WIFSIGNALED(status))
        return tp_err_set(err, -EIO, "'%s' killed by signal %d%s%s", argv[0], WTERMSIG(status),
                          *msg ? ": " : "", msg);
    return tp_err_set(err, -EIO, "'%s' exited with status %d%s%s", argv[0], WEXITSTATUS(status),
                      *msg ? ": " : "", msg);
}
