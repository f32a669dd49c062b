/* Unit tests for the guest agent's own helpers, compiled in from guest-agent/: the environment
 * and user commands get and the files that carry the guest's name. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

/* cmocka.h needs stdarg, stddef and setjmp first. */
#include <cmocka.h>

#include "agent.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/xalloc.h"

#define LOCALHOST "127.0.0.1\tlocalhost\n"

static char *
temp_dir(void)
{
    char *dir = xstrdup("/tmp/torpor-agent-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void
write_file(const char *dir, const char *name, const char *text)
{
    _cleanup_free_ char *path = fs_path_join(dir, name);
    assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, NULL), 0);
}

static char *
read_text(const char *dir, const char *name)
{
    _cleanup_free_ char *path = fs_path_join(dir, name);
    char *data = NULL;
    size_t len;
    assert_int_equal(fs_read_file(path, 1 << 20, &data, &len, NULL), 0);
    return data;
}

static size_t
env_len(char **env)
{
    size_t n = 0;
    while (env[n])
        n++;
    return n;
}

static void
test_passwd_home(void **state)
{
    _cleanup_free_ char *dir = temp_dir();
    _cleanup_free_ char *passwd = fs_path_join(dir, "passwd");
    char home[16];
    (void)state;

    write_file(dir, "passwd",
               "root:x:0:0:root:/root:/bin/sh\n"
               "# a comment\n"
               "not a passwd line\n"
               "neg:x:-1:0::/neg:/bin/sh\n"
               "u:x:1000:1000:U:/home/u:/bin/sh\n"
               "again:x:1000:1000::/home/again:/bin/sh\n"
               "nohome:x:1001:1001:::/bin/sh\n"
               "long:x:1002:1002::/home/far-too-long-for-the-buffer:/bin/sh\n"
               "last:x:1003:1003::/home/last"); /* no newline, no shell */
    assert_true(env_passwd_home(passwd, 0, home, sizeof(home)));
    assert_string_equal(home, "/root");
    assert_true(env_passwd_home(passwd, 1000, home, sizeof(home)));
    assert_string_equal(home, "/home/u"); /* the first entry wins */
    assert_false(env_passwd_home(passwd, 1001, home, sizeof(home)));
    assert_false(env_passwd_home(passwd, 1002, home, sizeof(home))); /* not truncated */
    assert_true(env_passwd_home(passwd, 1003, home, sizeof(home)));
    assert_string_equal(home, "/home/last");
    assert_false(env_passwd_home(passwd, 4242, home, sizeof(home)));
    assert_false(env_passwd_home("/nonexistent/passwd", 0, home, sizeof(home)));

    unlink(passwd);
    rmdir(dir);
}

static void
test_env_build(void **state)
{
    struct utsname u;
    (void)state;

    assert_int_equal(uname(&u), 0);
    _cleanup_free_ char *hostname = xasprintf("HOSTNAME=%s", u.nodename);

    /* Nothing from the host: all three defaults, and nothing else (no TERM). */
    char **e = env_build(NULL, "/var/root", false);
    assert_non_null(e);
    assert_int_equal(env_len(e), 3);
    assert_string_equal(e[0], "HOME=/var/root");
    assert_string_equal(e[1], AGENT_DEFAULT_PATH);
    assert_string_equal(e[2], hostname);
    free(e);

    /* The host's variables come first, borrowed as they are; its HOME, PATH and TERM win. */
    char *given[] = { (char *)"TERM=vt100", (char *)"HOME=/h", (char *)"PATH=/p", (char *)"HOMEX=1",
                      NULL };
    e = env_build(given, "/home/u", true);
    assert_non_null(e);
    assert_int_equal(env_len(e), 5);
    for (size_t i = 0; i < 4; i++)
        assert_ptr_equal(e[i], given[i]);
    assert_string_equal(e[4], hostname);
    free(e);

    /* Only a variable named exactly HOME counts; a terminal gets TERM=xterm. */
    char *homex[] = { (char *)"HOMEX=1", (char *)"HOSTNAME=h", (char *)"TERMX=1", NULL };
    e = env_build(homex, "/home/u", true);
    assert_int_equal(env_len(e), 6);
    assert_string_equal(e[2], "TERMX=1");
    assert_string_equal(e[3], "HOME=/home/u");
    assert_string_equal(e[4], AGENT_DEFAULT_PATH);
    assert_string_equal(e[5], "TERM=xterm");
    free(e);
}

static void
test_user_home(void **state)
{
    _cleanup_free_ char *dir = temp_dir();
    _cleanup_free_ char *passwd = fs_path_join(dir, "passwd");
    char home[64];
    (void)state;

    write_file(dir, "passwd", "root:x:0:0:root:/var/root:/bin/sh\nu:x:7:7::/home/u:/bin/sh\n");
    user_home(0, passwd, home, sizeof(home));
    assert_string_equal(home, "/var/root");
    user_home(7, passwd, home, sizeof(home));
    assert_string_equal(home, "/home/u");
    /* No passwd entry: /root for root, / for anyone else. */
    user_home(0, "/nonexistent/passwd", home, sizeof(home));
    assert_string_equal(home, "/root");
    user_home(4242, passwd, home, sizeof(home));
    assert_string_equal(home, "/");
    unlink(passwd);
    rmdir(dir);
}

static void
test_user_lines(void **state)
{
    struct user_pw pw;
    struct user_gr gr;
    char l1[] = "www-data:x:33:34:www-data:/var/www:/usr/sbin/nologin\n";
    char l2[] = "short:x:1:1\n", l3[] = "bad:x:1x:1::/:/bin/sh", l4[] = ":x:1:1::/:/bin/sh";
    char l5[] = "big:x:4294967295:1::/:/bin/sh", l6[] = "nosh:x:5:6::/h";
    char g1[] = "wheel:x:10:root,alice,bob\n", g2[] = "empty:x:11:", g3[] = "nolist:x:12";
    char g4[] = "bad:x:-1:a";
    (void)state;

    assert_int_equal(user_passwd_parse(l1, &pw), 0);
    assert_string_equal(pw.name, "www-data");
    assert_int_equal(pw.uid, 33);
    assert_int_equal(pw.gid, 34);
    assert_string_equal(pw.home, "/var/www");
    assert_int_equal(user_passwd_parse(l2, &pw), -EINVAL);
    assert_int_equal(user_passwd_parse(l3, &pw), -EINVAL);
    assert_int_equal(user_passwd_parse(l4, &pw), -EINVAL);
    assert_int_equal(user_passwd_parse(l5, &pw), -EINVAL); /* (uid_t)-1 means "no change" */
    assert_int_equal(user_passwd_parse(l6, &pw), 0);
    assert_string_equal(pw.home, "/h");

    assert_int_equal(user_group_parse(g1, &gr), 0);
    assert_string_equal(gr.name, "wheel");
    assert_int_equal(gr.gid, 10);
    assert_true(user_group_has_member(gr.members, "alice"));
    assert_true(user_group_has_member(gr.members, "bob"));
    assert_true(user_group_has_member(gr.members, "root"));
    assert_false(user_group_has_member(gr.members, "ali"));
    assert_false(user_group_has_member(gr.members, "alice,bob"));
    assert_int_equal(user_group_parse(g2, &gr), 0);
    assert_false(user_group_has_member(gr.members, ""));
    assert_int_equal(user_group_parse(g3, &gr), 0);
    assert_string_equal(gr.members, "");
    assert_int_equal(user_group_parse(g4, &gr), -EINVAL);
}

static void
check_user(const char *dir, const char *spec, uid_t uid, gid_t gid, const char *home,
           const gid_t *groups, size_t ngroups)
{
    _cleanup_free_ char *passwd = fs_path_join(dir, "passwd");
    _cleanup_free_ char *group = fs_path_join(dir, "group");
    struct user u;
    char msg[256] = "";

    if (user_resolve(spec, passwd, group, &u, msg, sizeof(msg)) != 0)
        fail_msg("resolve '%s': %s", spec, msg);
    assert_int_equal(u.uid, uid);
    assert_int_equal(u.gid, gid);
    assert_string_equal(u.home, home);
    assert_true(u.set_groups);
    assert_int_equal(u.ngroups, ngroups);
    for (size_t i = 0; i < ngroups; i++)
        assert_int_equal(u.groups[i], groups[i]);
    user_release(&u);
}

static void
check_user_fails(const char *dir, const char *spec, int code, const char *want)
{
    _cleanup_free_ char *passwd = fs_path_join(dir, "passwd");
    _cleanup_free_ char *group = fs_path_join(dir, "group");
    struct user u;
    char msg[256] = "";

    assert_int_equal(user_resolve(spec, passwd, group, &u, msg, sizeof(msg)), code);
    assert_string_equal(msg, want);
}

static void
test_user_resolve(void **state)
{
    _cleanup_free_ char *dir = temp_dir();
    (void)state;

    write_file(dir, "passwd",
               "root:x:0:0:root:/root:/bin/sh\n"
               "alice:x:1000:1000::/home/alice:/bin/sh\n"
               "1001:x:1002:1002::/home/digits:/bin/sh\n"
               "nohome:x:1003:1003::\n"
               "twin:x:1000:50::/home/twin:/bin/sh\n");
    write_file(dir, "group",
               "root:x:0:\n"
               "alice:x:1000:\n"
               "wheel:x:10:root,alice\n"
               "video:x:44:bob,alice\n"
               "wheel2:x:10:alice\n"
               "staff:x:50:\n");
    static const gid_t alice_groups[] = { 10, 44 }, root_groups[] = { 10 };

    /* By name or uid: the first matching entry, its memberships from the group file. */
    check_user(dir, "alice", 1000, 1000, "/home/alice", alice_groups, 2);
    check_user(dir, "1000", 1000, 1000, "/home/alice", alice_groups, 2);
    check_user(dir, "root", 0, 0, "/root", root_groups, 1);
    /* A name made of digits matches before a uid that follows it. */
    check_user(dir, "1001", 1002, 1002, "/home/digits", NULL, 0);
    check_user(dir, "nohome", 1003, 1003, "/", NULL, 0);
    /* An explicit group, by name or gid, and no supplementary groups (docker's rule). */
    check_user(dir, "alice:staff", 1000, 50, "/home/alice", NULL, 0);
    check_user(dir, "alice:44", 1000, 44, "/home/alice", NULL, 0);
    check_user(dir, "alice:4444", 1000, 4444, "/home/alice", NULL, 0);
    /* A uid without an entry runs as is: group root, home /. */
    check_user(dir, "65534", 65534, 0, "/", NULL, 0);
    check_user(dir, "65534:65534", 65534, 65534, "/", NULL, 0);

    check_user_fails(dir, "bob", -ESRCH,
                     "unable to find user bob: no matching entries in passwd file");
    check_user_fails(dir, "alice:nogroup", -ESRCH,
                     "unable to find group nogroup: no matching entries in group file");
    check_user_fails(dir, "", -EINVAL, "invalid user '': want USER|UID[:GROUP|GID]");
    check_user_fails(dir, ":0", -EINVAL, "invalid user ':0': want USER|UID[:GROUP|GID]");
    check_user_fails(dir, "alice:", -EINVAL, "invalid user 'alice:': want USER|UID[:GROUP|GID]");
    check_user_fails(dir, "a:b:c", -EINVAL, "invalid user 'a:b:c': want USER|UID[:GROUP|GID]");

    /* No files at all (a minimal image): numbers still work, names do not. */
    _cleanup_free_ char *passwd = fs_path_join(dir, "passwd");
    _cleanup_free_ char *group = fs_path_join(dir, "group");
    unlink(passwd);
    unlink(group);
    check_user(dir, "0:0", 0, 0, "/", NULL, 0);
    check_user_fails(dir, "root", -ESRCH,
                     "unable to find user root: no matching entries in passwd file");
    rmdir(dir);
}

static void
test_name_valid(void **state)
{
    char long_name[66];
    (void)state;

    assert_true(ident_name_valid("web"));
    assert_true(ident_name_valid("src-1.example_x"));
    assert_false(ident_name_valid(""));
    assert_false(ident_name_valid("a b"));
    assert_false(ident_name_valid("a\nb"));
    assert_false(ident_name_valid("a#b"));
    assert_false(ident_name_valid("a/b"));
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[65] = '\0';
    assert_false(ident_name_valid(long_name));
    long_name[64] = '\0';
    assert_true(ident_name_valid(long_name));
}

static void
check_render(const char *old, const char *want)
{
    char *got = ident_hosts_render(old, "web");
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void
test_hosts_render(void **state)
{
    (void)state;

    check_render(NULL, LOCALHOST "127.0.1.1\tweb\n");
    check_render("", LOCALHOST "127.0.1.1\tweb\n");
    /* The default image's file: only the name changes. */
    check_render("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\ttorpor\n",
                 "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tweb\n");
    /* Other entries and comments stay where they were; every old 127.0.1.1 line goes. */
    check_render("# static table\n"
                 "127.0.1.1 old old.example # was me\n"
                 "  127.0.0.1   localhost.localdomain localhost\n"
                 "10.0.0.5\tdb # the database\n"
                 "# 127.0.1.1 commented out\n"
                 "127.0.1.1\tstale\n"
                 "\n",
                 "# static table\n"
                 "  127.0.0.1   localhost.localdomain localhost\n"
                 "10.0.0.5\tdb # the database\n"
                 "# 127.0.1.1 commented out\n"
                 "\n"
                 "127.0.1.1\tweb\n");
    /* No line maps localhost to 127.0.0.1 (a comment does not count): one comes first. */
    check_render("10.0.0.5 db\n127.0.0.1 localhost.localdomain # localhost\n::1 localhost",
                 LOCALHOST "10.0.0.5 db\n127.0.0.1 localhost.localdomain # localhost\n"
                           "::1 localhost\n127.0.1.1\tweb\n");
}

/* Names in dir other than those listed: a leftover temp file would show here. */
static void
check_only(const char *dir, const char *a, const char *b)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    assert_non_null(d);
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, a) &&
            strcmp(de->d_name, b))
            fail_msg("unexpected '%s' in '%s'", de->d_name, dir);
    closedir(d);
}

static void
test_write_files(void **state)
{
    _cleanup_free_ char *root = temp_dir();
    _cleanup_free_ char *etc = fs_path_join(root, "etc");
    _cleanup_free_ char *hosts_path = fs_path_join(etc, "hosts");
    struct stat st, st2;
    (void)state;

    /* No /etc: nothing is created, and the caller hears why. */
    assert_int_equal(ident_write_files(root, "web"), -ENOENT);
    assert_int_equal(rmdir(root), 0);
    assert_int_equal(mkdir(root, 0755), 0);

    /* An empty /etc gets both files, readable by all whatever the umask. */
    assert_int_equal(mkdir(etc, 0755), 0);
    mode_t old_mask = umask(077);
    assert_int_equal(ident_write_files(root, "web"), 0);
    umask(old_mask);
    _cleanup_free_ char *hostname = read_text(etc, "hostname");
    _cleanup_free_ char *hosts = read_text(etc, "hosts");
    assert_string_equal(hostname, "web\n");
    assert_string_equal(hosts, LOCALHOST "127.0.1.1\tweb\n");
    assert_int_equal(stat(hosts_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    check_only(etc, "hostname", "hosts");

    /* The same name again: nothing is rewritten. */
    assert_int_equal(ident_write_files(root, "web"), 0);
    assert_int_equal(stat(hosts_path, &st2), 0);
    assert_int_equal(st.st_ino, st2.st_ino);

    /* A new name (a fork child): the image's own entries are kept. */
    write_file(etc, "hosts", "127.0.0.1 localhost\n10.0.0.5 db\n127.0.1.1 web\n");
    assert_int_equal(ident_write_files(root, "web-1"), 0);
    free(hostname);
    free(hosts);
    hostname = read_text(etc, "hostname");
    hosts = read_text(etc, "hosts");
    assert_string_equal(hostname, "web-1\n");
    assert_string_equal(hosts, "127.0.0.1 localhost\n10.0.0.5 db\n127.0.1.1\tweb-1\n");
    check_only(etc, "hostname", "hosts");

    /* A hosts that cannot be read or replaced (here a directory) is reported, and the
     * hostname file is still written. */
    assert_int_equal(unlink(hosts_path), 0);
    assert_int_equal(mkdir(hosts_path, 0755), 0);
    assert_int_equal(ident_write_files(root, "web-2"), -EISDIR);
    free(hostname);
    hostname = read_text(etc, "hostname");
    assert_string_equal(hostname, "web-2\n");
    check_only(etc, "hostname", "hosts");

    assert_int_equal(fs_rm_rf(root, NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passwd_home),  cmocka_unit_test(test_env_build),
        cmocka_unit_test(test_user_home),    cmocka_unit_test(test_user_lines),
        cmocka_unit_test(test_user_resolve), cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_hosts_render), cmocka_unit_test(test_write_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
