/* Internal interfaces of the guest agent: boot duties, device waits, exec children, serving. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* One "torpor-agent: ..." line on stderr (the console when PID 1). */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The first max bytes of path, NUL-terminated (malloc); NULL when it cannot be read. */
char *agent_read_file(const char *path, size_t max);

/* Milliseconds since boot (CLOCK_BOOTTIME, the clock behind /proc/uptime). */
uint64_t agent_uptime_ms(void);

/* A connected SOCK_STREAM | SOCK_CLOEXEC socket to the Unix socket at path, or -errno. */
int agent_connect_unix(const char *path);

/* Decode len hex digits (either case) into out, which has room for size bytes: the number of
 * bytes, -EINVAL for an odd length or a non-hex digit, -ENOBUFS when out is too small. */
ssize_t agent_hex_decode(const char *hex, size_t len, uint8_t *out, size_t size);

/* net.c: the guest's NIC from "IP/PREFIX,GATEWAY[,MAC]" (torpor.net= at boot, the identity's
 * net= for a fork child). Addresses in network byte order. */
struct net_cfg {
    uint32_t ip, gw;
    unsigned prefix;
    uint8_t mac[6];
    bool has_mac;
    const char *dns;  /* "IP[,IP...]" (torpor.dns=) for resolv.conf; NULL: the gateway */
    bool keep_resolv; /* a fork child's identity: resolv.conf stays as its parent's */
};
/* 0, or -EINVAL when malformed. */
int net_cfg_parse(const char *text, struct net_cfg *ret);
/* Replace the NIC's IPv4 addresses with c's, set its MAC if given, bring it up, make the
 * gateway the default route, write /etc/resolv.conf. 0 or -errno (-ENODEV: no NIC). */
int net_apply(const struct net_cfg *c);

/* Boot duties when the agent is PID 1; never returns. */
void boot_main(void) __attribute__((noreturn));

/* uevent.c: wait for a kernel object to show up without polling the filesystem in a loop. */
typedef bool (*uevent_check_fn)(void *userdata);
/* A non-blocking NETLINK_KOBJECT_UEVENT socket, or -errno. */
int uevent_open(void);
/* Read and discard every queued uevent message. */
void uevent_drain(int fd);
/* True as soon as check() is true, rechecking after every uevent; false after timeout_ms. */
bool uevent_wait(uevent_check_fn check, void *userdata, int timeout_ms);

/* The /dev path of the virtio-serial port named `name` (malloc'd), or NULL if not there yet. */
char *port_find(const char *name);

/* user.c: who a command runs as (docker's -u), from the guest's passwd and group files. */
#define USER_HOME_MAX 4096
struct user_pw { /* one passwd line; the strings point into the parsed line */
    const char *name;
    uid_t uid;
    gid_t gid;
    const char *home;
};
struct user_gr { /* one group line; the strings point into the parsed line */
    const char *name;
    gid_t gid;
    const char *members; /* "a,b,c" */
};
struct user {
    uid_t uid;
    gid_t gid;
    char name[256]; /* "" for a uid without a passwd entry */
    char home[USER_HOME_MAX];
    bool set_groups; /* replace the supplementary groups with groups[] (possibly none) */
    gid_t *groups;   /* malloc'd */
    size_t ngroups;
};
/* Parse one line (modified in place: ':' and '\n' become NULs): 0 or -EINVAL for comments,
 * short lines and ids that are not plain decimal numbers. */
int user_passwd_parse(char *line, struct user_pw *ret);
int user_group_parse(char *line, struct user_gr *ret);
/* True when the comma-separated member list names name exactly. */
bool user_group_has_member(const char *members, const char *name);
/* The home directory of uid in the passwd file at passwd_path, into buf (size bytes): true when
 * the first entry for uid has one and it fits. */
bool env_passwd_home(const char *passwd_path, uid_t uid, char *buf, size_t size);
/* HOME for uid: its passwd entry's, else /root for uid 0 and / for anyone else. */
void user_home(uid_t uid, const char *passwd_path, char *buf, size_t size);
/* Resolve spec "USER|UID[:GROUP|GID]" as docker does: the first passwd entry whose name or uid
 * matches; a uid without an entry runs as is (gid 0, home /). Without GROUP the user's primary
 * group plus every group listing the user as a member; with GROUP that group alone. Returns 0
 * with *ret filled (user_release() it), or -errno with msg set: -EINVAL (malformed spec), -ESRCH
 * (unknown name: "unable to find user NAME: no matching entries in passwd file", likewise for
 * a group). */
int user_resolve(const char *spec, const char *passwd_path, const char *group_path,
                 struct user *ret, char *msg, size_t msglen);
void user_release(struct user *u);

/* env.c: the environment commands start with. */
/* env (NULL = none) plus, for each of them env lacks, HOME=home, AGENT_DEFAULT_PATH, HOSTNAME
 * (the kernel's) and, when tty, TERM=xterm. Nothing else is added. One malloc'd block for free();
 * the strings of env are borrowed, not copied. NULL when out of memory. */
char **env_build(char *const *env, const char *home, bool tty);

/* identity.c: the guest's name. */
/* 1..64 letters, digits, '-', '.' or '_': a name that fits a hostname and a hosts line. */
bool ident_name_valid(const char *name);
/* /etc/hosts for name, from its current text old (NULL = no file): every line kept but the
 * 127.0.1.1 ones, a "127.0.0.1 localhost" line first when there is none, "127.0.1.1 NAME" last.
 * malloc'd; NULL when out of memory. */
char *ident_hosts_render(const char *old, const char *name);
/* Write ROOT/etc/hostname and ROOT/etc/hosts for name (root "" is /), each replaced whole by a
 * rename and only when its text changes. Failures are logged; returns the first (-errno), e.g.
 * -ENOENT without ROOT/etc or -EROFS. */
int ident_write_files(const char *root, const char *name);
/* sethostname(name), then the files under /: -errno when the hostname could not be set (logged);
 * file failures are only logged. */
int ident_apply(const char *name);
/* The guest's machine id: 32 lowercase hex digits, in /etc/machine-id (replaced whole, only
 * when it changes; -errno logged, e.g. -EROFS). */
#define MACHINE_ID_LEN 32
bool ident_machine_id_valid(const char *id);
int ident_machine_id_apply(const char *id);

/* exec.c: one command started for the host. */
struct exec {
    uint32_t id; /* 0 once its host went away: output is read and dropped */
    pid_t pid;   /* also the process group (the child calls setsid) */
    bool tty;    /* out_fd is a PTY master (in_fd a dup of it), err_fd is -1 */
    int in_fd;   /* write end of stdin, -1 once closed */
    int out_fd;  /* read ends of stdout/stderr, -1 after EOF */
    int err_fd;
    bool tty_hup; /* no process holds the terminal now: out_fd waits for the reap, unpolled */
    bool reaped;
    int code;       /* exit code or 128+signal, valid once reaped */
    uint8_t *inbuf; /* stdin bytes not yet accepted by the pipe */
    size_t inlen;
    bool in_close;        /* close stdin once inbuf drains */
    uint32_t in_ack;      /* stdin bytes written (or dropped) not yet acknowledged */
    uint32_t out_unacked; /* output sent that the host has not acknowledged */
    bool acks;            /* the host acknowledges output (AGENT_EXEC_F_ACKS) */
    struct exec *next;
};

/* What the host asked to run (an EXEC payload); the strings are borrowed. */
struct exec_req {
    char *const *argv;
    char *const *env;
    const char *cwd; /* "" = / */
    bool stdin_open;
    bool tty;
    uint16_t rows, cols; /* tty size, 0 = the kernel's default */
    const char *user;    /* NULL = the agent's own user */
    bool builtin;        /* argv[0] names a built-in (builtin.c) run in the child */
};

/* Fork and run req in its own session with env (completed by env_build()) and cwd. On failure
 * returns -errno and fills msg (what failed): -ESRCH for an unknown user or group, -ENOENT for
 * an unknown built-in. A cwd that cannot be entered is not a spawn failure: as with docker exec,
 * the command exits 126 and says why on its stderr. */
int exec_spawn(struct exec *x, const struct exec_req *req, char *msg, size_t msglen);
/* Close every fd of x and free its buffers (not x itself). */
void exec_release(struct exec *x);
/* Exit code as the protocol reports it from a wait status. */
int exec_status_code(int status);

/* builtin.c: commands the agent runs itself (AGENT_EXEC_F_BUILTIN), in a forked child. */
typedef int (*builtin_fn)(char *const *argv); /* returns the exit code */
/* The built-in named name, or NULL. */
builtin_fn builtin_find(const char *name);

/* workload.c: an image's workload (torpor.workload=SPEC on the kernel command line). */
extern pid_t workload_pid; /* 0 until started */
/* Start it from the spec file; its pid. With defer, only make its WorkingDir (the host execs
 * it, attached) and return 0. */
pid_t workload_start(const char *spec_path, bool defer);
/* It ended with code: record the code on the root disk, end every process, sync, remount the
 * root read-only and reset the guest (the VMM exits). */
__attribute__((noreturn)) void workload_finish(int code);
int workload_builtin_stop(char *const *argv);

/* serve.c */
enum port_kind {
    PORT_STREAM, /* socket or other stream: EOF means the host is gone for good */
    PORT_VIRTIO, /* virtio-serial char device: hosts come and go, announced by SIGIO */
};

struct serve_cfg {
    int fd; /* connected stream, or -1 to discover port_name */
    enum port_kind kind;
    const char *reconnect_path; /* PORT_STREAM: Unix socket to reconnect to after EOF */
    const char *port_name;      /* discovery by virtio-serial port name (fd == -1) */
    pid_t cmd_pid;              /* the boot command (its exit is logged), or 0 */
    bool workload;              /* cmd_pid is an image's workload: its end ends the guest */
};

/* Serve the protocol until the host is gone for good (PORT_STREAM without reconnect path):
 * returns 0, or -errno on a fatal setup error. */
int serve_run(const struct serve_cfg *cfg);
