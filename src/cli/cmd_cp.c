/* torpor cp: files and directories in and out of a guest, as docker cp. The guest side is the
 * agent's tar-out / tar-in built-ins (API archive routes); the host side is the same tar code
 * (util/tar.c), run in a thread on the other end of a pipe so that nothing is held in memory. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/name.h"
#include "util/tar.h"
#include "util/xalloc.h"

static const struct cli_syntax syntax = {
    .verb = "cp",
    .usage = "Usage: torpor cp [OPTIONS] NAME:SRC_PATH DEST_PATH|-\n"
             "       torpor cp [OPTIONS] SRC_PATH|- NAME:DEST_PATH\n"
             "\n"
             "Copy files and directories between an instance and the host, as docker cp: into\n"
             "DEST_PATH when it is an existing directory, else as DEST_PATH. SRC_PATH ending in\n"
             "'/.' copies the directory's contents. '-' is a tar stream on stdin or stdout.\n"
             "Modes and times are kept; owners too where the writer is root.\n",
    .operands = CLI_OPERANDS_ANY,

};

/* One side of the copy: an instance's path (name set) or a host path. */
struct side {
    char *name; /* NULL on the host */
    char *path;
};

static void
side_done(struct side *s)
{
    free(s->name);
    free(s->path);
}

/* docker's rule: "NAME:PATH" names an instance unless the text before the first ':' has a '/'
 * (or the operand starts with '/' or '.'): "./a:b" and "/x:y" stay host paths. */
static void
side_parse(const char *arg, struct side *ret)
{
    const char *colon = strchr(arg, ':');

    *ret = (struct side){ 0 };
    if (colon && colon != arg && arg[0] != '/' && arg[0] != '.' &&
        !memchr(arg, '/', (size_t)(colon - arg))) {
        ret->name = xstrndup(arg, (size_t)(colon - arg));
        /* A guest path is absolute; a relative one is taken from / (the agent's cwd). */
        ret->path = colon[1] == '/' ? xstrdup(colon + 1) : xasprintf("/%s", colon + 1);
        return;
    }
    ret->path = xstrdup(arg);
}

/* "/v1/instances/NAME<suffix>?path=P", P percent-encoded but for '/'. */
static char *
path_url(const char *name, const char *suffix, const char *path)
{
    _cleanup_free_ char *base = client_instance_path(name, suffix);
    size_t n = strlen(path);
    char *q = xmalloc(n * 3 + 1), *o = q;
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("/-._~", *c)) {
            *o++ = (char)*c;
        } else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    *o = '\0';
    char *url = xasprintf("%s?path=%s", base, q);
    free(q);
    return url;
}

/* The last component of p ("" for "/"), ignoring trailing slashes; malloc'd. */
static char *
leaf_of(const char *p)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        n--;
    const char *s = p + n;
    while (s > p && s[-1] != '/')
        s--;
    return xstrndup(s, (size_t)(p + n - s));
}

/* The directory part of p ("/" for "/x", "." for "x"); malloc'd. */
static char *
dir_of(const char *p)
{
    _cleanup_free_ char *c = xstrdup(p);
    size_t n = strlen(c);
    while (n > 1 && c[n - 1] == '/')
        c[--n] = '\0';
    return xstrdup(dirname(c));
}

static bool
ends_with_dot(const char *p)
{
    size_t n = strlen(p);
    return (n == 1 && p[0] == '.') || (n >= 2 && p[n - 1] == '.' && p[n - 2] == '/');
}

/* What the guest has at path: 0 with type ("file", "dir", ...; with follow, a symlink is what
 * it leads to) or -ENOENT. */
static int
guest_stat(const struct cli_ctx *ctx, const char *name, const char *path, bool follow,
           char type[16], struct tp_err *err)
{
    _cleanup_free_ char *url = path_url(name, "/stat", path);
    json_t *reply = NULL;
    int r = client_call(ctx->socket, "GET", url, NULL, &reply, err);

    if (r < 0)
        return r;
    const char *t = json_string_value(json_object_get(reply, "type"));
    const char *to = json_string_value(json_object_get(reply, "target_type"));
    /* A symlink counts as what it leads to, as docker cp treats a destination. */
    if (follow && t && strcmp(t, "symlink") == 0 && to && strcmp(to, "missing") != 0)
        t = to;
    snprintf(type, 16, "%s", t ? t : "other");
    json_decref(reply);
    return 0;
}

/* ---- out of the guest ------------------------------------------------------------------- */

struct extract_job {
    int fd; /* the pipe's read end */
    const char *dir;
    const char *top_as;
    int status; /* TAR_EXIT_* */
};

static void *
extract_main(void *arg)
{
    struct extract_job *j = arg;
    j->status = tar_extract_untrusted(j->fd, j->dir, j->top_as, STDERR_FILENO);
    /* Drain what the extractor left (after a failure), so the writer never blocks. */
    char buf[4096];
    while (read(j->fd, buf, sizeof(buf)) > 0)
        ;
    return NULL;
}

static int
to_fd(const void *data, size_t len, void *userdata, struct tp_err *err)
{
    int r = fd_write_all(*(int *)userdata, data, len);
    return r < 0 ? tp_err_errno(err, r, "write the archive") : 0;
}

static int
copy_out(const struct cli_ctx *ctx, const struct side *src, const char *dest, struct tp_err *err)
{
    _cleanup_free_ char *url = path_url(src->name, "/archive", src->path);
    char type[16];
    struct stat st;
    int r = guest_stat(ctx, src->name, src->path, false, type, err);

    if (r < 0) /* torpord's words: no such instance, or "could not find P in instance N" */
        return r;
    if (strcmp(dest, "-") == 0) {
        int out = STDOUT_FILENO;
        fflush(stdout);
        return client_stream(ctx->socket, "GET", url, NULL, to_fd, &out, err);
    }

    /* Into an existing directory, or as a new name in an existing one. */
    _cleanup_free_ char *dir = NULL, *as = NULL;
    bool is_dir = strcmp(type, "dir") == 0;
    int sr = stat(dest, &st);
    r = sr < 0 ? -errno : 0;
    if (sr == 0 && S_ISDIR(st.st_mode)) {
        dir = xstrdup(dest);
        /* Named here, not by the archive: what the guest sends lands only where asked. */
        as = ends_with_dot(src->path) ? xstrdup("") : leaf_of(src->path);
    } else if (sr == 0) {
        if (is_dir)
            return tp_err_set(err, -ENOTDIR, "cannot copy a directory to the file '%s'", dest);
        dir = dir_of(dest);
        as = leaf_of(dest);
    } else {
        size_t n = strlen(dest);
        if (r != -ENOENT)
            return tp_err_errno(err, r, "'%s'", dest);
        if (!is_dir && n && dest[n - 1] == '/')
            return tp_err_set(err, -ENOENT, "destination directory '%s' does not exist", dest);
        dir = dir_of(dest);
        as = leaf_of(dest);
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            return tp_err_set(err, -ENOENT, "destination directory '%s' does not exist", dir);
    }

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return tp_err_errno(err, -errno, "pipe");
    struct extract_job job = { .fd = p[0], .dir = dir, .top_as = as };
    pthread_t t;
    if (pthread_create(&t, NULL, extract_main, &job) != 0) {
        close(p[0]);
        close(p[1]);
        return tp_err_set(err, -EAGAIN, "start the extractor");
    }
    r = client_stream(ctx->socket, "GET", url, NULL, to_fd, &p[1], err);
    close(p[1]); /* the extractor sees the end (a cut stream is a truncated archive) */
    pthread_join(t, NULL);
    close(p[0]);
    if (r < 0)
        return r;
    if (job.status != TAR_EXIT_OK)
        return tp_err_set(err, -EIO, "copy to '%s' failed (see above)", dest);
    return 0;
}

/* ---- into the guest --------------------------------------------------------------------- */

struct create_job {
    int fd; /* the pipe's write end, closed when done */
    const char *path;
    const char *as;
    int status;
};

static void *
create_main(void *arg)
{
    struct create_job *j = arg;
    j->status = tar_create_as(j->fd, j->path, j->as, STDERR_FILENO);
    close(j->fd);
    return NULL;
}

static int
copy_in(const struct cli_ctx *ctx, const char *src, const struct side *dest, struct tp_err *err)
{
    _cleanup_free_ char *dir = NULL, *as = NULL, *url = NULL;
    char type[16];
    struct stat st;
    bool from_stdin = strcmp(src, "-") == 0;

    if (!from_stdin && lstat(src, &st) < 0)
        return tp_err_errno(err, -errno, "'%s'", src);
    int r = guest_stat(ctx, dest->name, dest->path, true, type, err);
    if (r < 0 && !(r == -ENOENT && strstr(tp_err_msg(err), "could not find")))
        return r; /* no such instance, or worse */
    tp_err_clear(err);
    bool exists = r == 0, is_dir = exists && strcmp(type, "dir") == 0;
    if (from_stdin) {
        if (!is_dir)
            return tp_err_set(err, -ENOTDIR,
                              "'%s' in instance '%s' must be an existing directory to extract a "
                              "tar stream into",
                              dest->path, dest->name);
        url = path_url(dest->name, "/archive", dest->path);
        return client_upload(ctx->socket, "PUT", url, STDIN_FILENO, NULL, err);
    }
    if (is_dir) {
        dir = xstrdup(dest->path);
        if (ends_with_dot(src))
            as = xstrdup(".");
    } else {
        if (exists && S_ISDIR(st.st_mode))
            return tp_err_set(err, -ENOTDIR, "cannot copy a directory to the file '%s' in '%s'",
                              dest->path, dest->name);
        dir = dir_of(dest->path);
        as = leaf_of(dest->path);
    }
    url = path_url(dest->name, "/archive", dir);

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return tp_err_errno(err, -errno, "pipe");
    struct create_job job = { .fd = p[1], .path = src, .as = as };
    /* When torpord refuses early (a full disk) the archiver's writes fail with EPIPE instead of
     * killing us. */
    struct sigaction ign = { .sa_handler = SIG_IGN }, old;
    sigaction(SIGPIPE, &ign, &old);
    pthread_t t;
    if (pthread_create(&t, NULL, create_main, &job) != 0) {
        close(p[0]);
        close(p[1]);
        sigaction(SIGPIPE, &old, NULL);
        return tp_err_set(err, -EAGAIN, "start the archiver");
    }
    r = client_upload(ctx->socket, "PUT", url, p[0], NULL, err);
    close(p[0]); /* a writer still going gets EPIPE and ends */
    pthread_join(t, NULL);
    sigaction(SIGPIPE, &old, NULL);
    if (r == -ENOENT && strstr(tp_err_msg(err), "could not find"))
        return tp_err_set(err, r, "no directory '%s' in instance '%s'", dir, dest->name);
    if (r < 0)
        return r;
    if (job.status != TAR_EXIT_OK)
        return tp_err_set(err, -EIO, "reading '%s' failed (see above): the copy is incomplete",
                          src);
    return 0;
}

static int
cmd_cp(const struct cli_ctx *ctx, const struct side *a, const struct side *b)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    int r;

    if (a->name && b->name)
        r = tp_err_set(&err, -EINVAL, "copying between instances is not supported");
    else if (!a->name && !b->name)
        r = tp_err_set(&err, -EINVAL, "one of SRC and DEST must be NAME:PATH");
    else if (a->name)
        r = copy_out(ctx, a, b->path, &err);
    else
        r = copy_in(ctx, a->path, b, &err);
    if (r < 0) {
        cli_error("%s", tp_err_msg(&err));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int
cli_verb_cp(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);

    if (r >= 0 && !a.help && a.n_operands != 2)
        r = tp_err_set(&err, -EINVAL, "'cp' needs SRC and DEST, got %zu argument%s", a.n_operands,
                       a.n_operands == 1 ? "" : "s");
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);
    if (x >= 0)
        return x;
    struct side src, dest;
    side_parse(a.operands[0], &src);
    side_parse(a.operands[1], &dest);
    int rc = cmd_cp(ctx, &src, &dest);
    side_done(&src);
    side_done(&dest);
    return rc;
}
CLI_SYNTAX_FN(cli_syntax_cp)
