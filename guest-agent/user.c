/* Who a command runs as: docker's -u "USER|UID[:GROUP|GID]" resolved against the guest's
 * /etc/passwd and /etc/group. A static binary has no NSS, so this is the one parser of both. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

#define GROUPS_MAX 65536 /* the kernel's NGROUPS_MAX */

/* A decimal id below (uid_t)-1 (which means "no change" to setuid and friends). */
static bool
parse_id(const char *s, unsigned *ret)
{
    char *end;

    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v >= 0xffffffffUL)
        return false;
    *ret = (unsigned)v;
    return true;
}

/* Split line (modified) at ':' into at most max fields; the count found. */
static size_t
split_fields(char *line, char **field, size_t max)
{
    size_t k = 0;

    line[strcspn(line, "\n")] = '\0';
    for (char *p = line; k < max && p; k++) {
        field[k] = p;
        p = strchr(p, ':');
        if (p)
            *p++ = '\0';
    }
    return k;
}

int
user_passwd_parse(char *line, struct user_pw *ret)
{
    /* name:password:uid:gid:gecos:home:shell (the shell may be missing) */
    char *f[7];
    size_t k = split_fields(line, f, 7);
    unsigned uid, gid;

    if (k < 6 || !*f[0] || !parse_id(f[2], &uid) || !parse_id(f[3], &gid))
        return -EINVAL;
    *ret = (struct user_pw){ .name = f[0], .uid = uid, .gid = gid, .home = f[5] };
    return 0;
}

int
user_group_parse(char *line, struct user_gr *ret)
{
    /* name:password:gid:member,member,... */
    char *f[4];
    size_t k = split_fields(line, f, 4);
    unsigned gid;

    if (k < 3 || !*f[0] || !parse_id(f[2], &gid))
        return -EINVAL;
    *ret = (struct user_gr){ .name = f[0], .gid = gid, .members = k == 4 ? f[3] : "" };
    return 0;
}

bool
user_group_has_member(const char *members, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = members; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len;
        p += *p == ',';
    }
    return false;
}

/* The first entry of passwd_path for which match() is true, copied into ret (name and home
 * into the caller's buffers). 0, -ENOENT (no such entry or no file), -ENAMETOOLONG when the
 * entry's strings do not fit (never truncated into another user or directory). */
static int
passwd_find(const char *passwd_path, const char *name, bool by_uid, uid_t uid, struct user *ret)
{
    FILE *f = fopen(passwd_path, "re");
    char *line = NULL;
    size_t cap = 0;
    int r = -ENOENT;

    if (!f)
        return -ENOENT;
    while (r == -ENOENT && getline(&line, &cap, f) > 0) {
        struct user_pw pw;
        if (user_passwd_parse(line, &pw) < 0)
            continue;
        if (!(name && strcmp(pw.name, name) == 0) && !(by_uid && pw.uid == uid))
            continue;
        /* The first matching entry decides, as getpwnam()/getpwuid() do. */
        if (strlen(pw.name) >= sizeof(ret->name) || strlen(pw.home) >= sizeof(ret->home)) {
            r = -ENAMETOOLONG;
            break;
        }
        ret->uid = pw.uid;
        ret->gid = pw.gid;
        strcpy(ret->name, pw.name);
        strcpy(ret->home, pw.home);
        r = 0;
    }
    free(line);
    fclose(f);
    return r;
}

bool
env_passwd_home(const char *passwd_path, uid_t uid, char *buf, size_t size)
{
    struct user u;

    if (passwd_find(passwd_path, NULL, true, uid, &u) < 0 || !u.home[0] || strlen(u.home) >= size)
        return false;
    strcpy(buf, u.home);
    return true;
}

void
user_home(uid_t uid, const char *passwd_path, char *buf, size_t size)
{
    if (!env_passwd_home(passwd_path, uid, buf, size))
        snprintf(buf, size, "%s", uid == 0 ? "/root" : "/");
}

static int
groups_add(struct user *u, gid_t gid)
{
    for (size_t i = 0; i < u->ngroups; i++)
        if (u->groups[i] == gid)
            return 0;
    if (u->ngroups >= GROUPS_MAX)
        return -E2BIG;
    gid_t *g = realloc(u->groups, (u->ngroups + 1) * sizeof(gid_t));
    if (!g)
        return -ENOMEM;
    u->groups = g;
    u->groups[u->ngroups++] = gid;
    return 0;
}

/* Scan group_path once: the gid of group spec grp (NULL = none) and, when collect is set, every
 * group listing u->name as a member. */
static int
group_scan(const char *group_path, const char *grp, bool collect, struct user *u, bool *found)
{
    FILE *f = fopen(group_path, "re");
    char *line = NULL;
    size_t cap = 0;
    unsigned num;
    bool numeric = grp && parse_id(grp, &num);
    int r = 0;

    *found = false;
    if (!f)
        return 0;
    while (r == 0 && getline(&line, &cap, f) > 0) {
        struct user_gr g;
        if (user_group_parse(line, &g) < 0)
            continue;
        if (grp && !*found && (strcmp(g.name, grp) == 0 || (numeric && g.gid == num))) {
            u->gid = g.gid;
            *found = true;
        }
        if (collect && user_group_has_member(g.members, u->name))
            r = groups_add(u, g.gid);
    }
    free(line);
    fclose(f);
    return r;
}

int
user_resolve(const char *spec, const char *passwd_path, const char *group_path, struct user *ret,
             char *msg, size_t msglen)
{
    struct user u = { .set_groups = true };
    char usr[256];
    const char *colon = strchr(spec, ':');
    const char *grp = colon ? colon + 1 : NULL;
    size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
    unsigned num;
    bool found_group;
    int r;

    if (ulen == 0 || ulen >= sizeof(usr) || (grp && (!*grp || strchr(grp, ':')))) {
        snprintf(msg, msglen, "invalid user '%.64s': want USER|UID[:GROUP|GID]", spec);
        return -EINVAL;
    }
    memcpy(usr, spec, ulen);
    usr[ulen] = '\0';
    bool numeric = parse_id(usr, &num);

    /* A name, or a uid, as docker: the first entry matching either. */
    r = passwd_find(passwd_path, usr, numeric, numeric ? num : 0, &u);
    if (r == -ENOENT && numeric) {
        /* Docker runs an unknown uid as it is: group root, home "/", no name. */
        u.uid = num;
        u.gid = 0;
        strcpy(u.home, "/");
    } else if (r == -ENOENT) {
        snprintf(msg, msglen, "unable to find user %s: no matching entries in passwd file", usr);
        return -ESRCH;
    } else if (r < 0) {
        snprintf(msg, msglen, "user %s: passwd entry too long", usr);
        return r;
    }
    if (!u.home[0])
        strcpy(u.home, "/");

    /* An explicit group replaces the primary one and, as with docker, the supplementary ones;
     * otherwise the user's memberships from the group file are added. */
    r = group_scan(group_path, grp, !grp && u.name[0], &u, &found_group);
    if (r < 0) {
        free(u.groups);
        snprintf(msg, msglen, "read the groups of %s: %s", usr, strerror(-r));
        return r;
    }
    if (grp && !found_group) {
        if (!parse_id(grp, &num)) {
            snprintf(msg, msglen, "unable to find group %s: no matching entries in group file",
                     grp);
            return -ESRCH;
        }
        u.gid = num;
    }
    *ret = u;
    return 0;
}

void
user_release(struct user *u)
{
    free(u->groups);
    u->groups = NULL;
    u->ngroups = 0;
}
