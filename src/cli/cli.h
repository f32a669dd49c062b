/* The torpor CLI's verbs: option structs, pure parsers (unit-tested) and runners. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "net/net.h"
#include "util/err.h"

#define CLI_DEFAULT_SOCKET "/run/torpor/torpor.sock"

/* Exit codes shared by the verbs (docker's convention for exec's own failures). A usage error
 * is CLI_EXIT_USAGE, as it always was here (docker says 125 for every verb); exec's is 125
 * because any other code could be its command's own. */
#define CLI_EXIT_OK          0
#define CLI_EXIT_FAIL        1
#define CLI_EXIT_USAGE       2
#define CLI_EXIT_EXEC_DAEMON 125
#define CLI_EXIT_EXEC_SPAWN  126
#define CLI_EXIT_EXEC_NOENT  127

/* What every runner gets from main(). */
struct cli_ctx {
    const char *socket; /* borrowed */
};

/* ---- global options ---------------------------------------------------------------------- */

struct cli_global_opts {
    const char *socket; /* borrowed: argv, env_socket or CLI_DEFAULT_SOCKET */
    bool help;
    bool version;
    bool man;       /* --man (hidden): print torpor(1) */
    int verb_index; /* argv index of the verb; == argc when there is none */
};

/* Parse `torpor [--socket PATH] [--help] [--version] VERB ...` with cli_parse_args(): options
 * end at VERB, whose words are its own. --socket wins over env_socket (the caller passes
 * getenv("TORPOR_SOCKET")), which wins over the default; an empty env_socket counts as unset.
 * -EINVAL on an unknown option. */
int cli_parse_global(int argc, char **argv, const char *env_socket, struct cli_global_opts *ret,
                     struct tp_err *err);

/* ---- helpers shared by the parsers (opts.c) --------------------------------------------- */

/* A positive decimal integer (no sign, no suffix) no larger than max, else -EINVAL naming opt. */
int cli_parse_uint(const char *opt, const char *s, uint32_t max, uint32_t *ret, struct tp_err *err);

/* A size in MiB: a plain number is MiB; K, M, G or T (any case, optionally followed by "B" or
 * "iB") give the unit: "512M", "2G", "524288K". Whole MiB from min to max, else -EINVAL with a
 * message naming opt. */
int cli_parse_size_mib(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *ret,
                       struct tp_err *err);

/* An instance name as torpord takes it ([a-z0-9][a-z0-9-]*, at most max characters), checked
 * here so the message names the user's option, not the API's field. -EINVAL otherwise. */
int cli_check_name(const char *opt, const char *s, size_t max, struct tp_err *err);

/* An absolute form of path for the daemon, whose cwd differs: realpath() when it resolves,
 * else path joined to the cwd (so the daemon reports the absolute path as missing).
 * Caller frees. */
char *cli_abspath(const char *path);

/* Values sent in a JSON request must be UTF-8: jansson refuses other strings, and a refused
 * string would silently go missing from the request (an argv losing a word). -EINVAL with
 * "<what> is not valid UTF-8" otherwise. */
int cli_check_utf8(const char *what, const char *s, struct tp_err *err);

/* "3 minutes ago"-style age of an event `seconds` in the past, into buf. */
void cli_format_ago(int64_t seconds, char *buf, size_t size);

/* Print "torpor: <msg>" to stderr. */
void cli_error(const char *fmt, ...) _printf_(1, 2);

/* ---- the option parser (opts.c) -----------------------------------------------------------
 * Every verb states its syntax in a cli_syntax table: its options and its operands. One parser
 * reads them all as docker's (pflag) and GNU getopt_long do: options and operands interleave
 * ("rm web -f" is "rm -f web"), "--" ends the options, and --help or -h anywhere before it
 * asks for the usage (generated from the same table) and nothing else. Values are handed over
 * as text: the verb checks them. */

/* A flag: --name, and -short_name where set; with arg set, an option taking a value. */
struct cli_flag {
    const char *name; /* long name without "--"; NULL ends the list; never "help" */
    char short_name;  /* 0 = long only; never 'h' (--help is implied) */
    const char *help; /* its line in the usage text; NULL = hidden: left out of the usage, the
                         shell completion and the manual */
    const char *arg;  /* NULL = a flag; else the value's name in the usage ("N") */
};

enum cli_operands {
    CLI_OPERANDS_NONE,     /* no arguments */
    CLI_OPERANDS_ONE,      /* exactly one NAME */
    CLI_OPERANDS_SOME,     /* one or more NAMEs */
    CLI_OPERANDS_ANY,      /* any number of NAMEs, none included (the verb decides) */
    CLI_OPERANDS_CMD,      /* [CMD [ARG...]]: the options end at CMD, whose words are its own */
    CLI_OPERANDS_NAME_CMD, /* NAME CMD [ARG...]: likewise (docker exec) */
};

#define CLI_FLAGS_MAX 24

/* --trace of the verbs whose reply carries a last_operation worth showing. */
#define CLI_FLAG_TRACE                                                      \
    {                                                                       \
        .name = "trace", .help = "print the timing of each phase to stderr" \
    }

struct cli_syntax {
    const char *verb;
    const char *usage; /* "Usage: ..." line and description; the option list is appended */
    enum cli_operands operands;
    int usage_exit; /* the exit code of a usage error; 0 = CLI_EXIT_USAGE */
    struct cli_flag flags[CLI_FLAGS_MAX];
    const char *choices; /* the operands are some of these words ("bash zsh"); NULL = NAMEs */
};

/* The syntax of verb (a verb of the table, for the verbs that share one runner), into *ret. */
typedef void (*cli_syntax_fn)(const char *verb, struct cli_syntax *ret);
/* Defines cli_syntax_fn `fn` handing out the file's `syntax`. */
#define CLI_SYNTAX_FN(fn)                             \
    void fn(const char *verb, struct cli_syntax *ret) \
    {                                                 \
        (void)verb;                                   \
        *ret = syntax;                                \
    }

/* torpor's own options (before the verb), for the completion and the manual. */
extern const struct cli_syntax cli_global_syntax;

/* What cli_parse_args() found; values and operands borrow from argv. */
struct cli_args {
    bool help;
    unsigned flags;                    /* bit i set: syntax->flags[i] was given */
    const char *values[CLI_FLAGS_MAX]; /* the value of option i (the last one given), or NULL */
    char *const *operands;
    size_t n_operands;
};

/* Called for each option given, in order (value NULL for a flag): for repeatable options. */
typedef void (*cli_value_fn)(size_t flag, const char *value, void *userdata);

/* Parse argv (argv[0] = the verb) against syn. argv is reordered as GNU getopt does (options
 * first, then the operands, each in their order), so the operands are one array. With --help
 * nothing else is checked: not unknown options, not the operand count. -EINVAL with a message
 * for unknown options ("unknown flag: --foo", as docker says), missing values and wrong
 * operand counts; *ret is written only on success. Unique prefixes of long names are taken,
 * as getopt_long did. */
int cli_parse_args(const struct cli_syntax *syn, int argc, char **argv, struct cli_args *ret,
                   struct tp_err *err);
/* The same, calling each(i, value, userdata) for each option given, up to the first mistake. */
int cli_parse_args_each(const struct cli_syntax *syn, int argc, char **argv, cli_value_fn each,
                        void *userdata, struct cli_args *ret, struct tp_err *err);

/* syn's usage text followed by its "Options:" list (each flag, then -h, --help). */
void cli_usage_print(const struct cli_syntax *syn, FILE *f);

/* ---- requests and output (call.c, trace.c) ---------------------------------------------- */

struct json_t;
/* client_call() on ctx's socket, reporting a failure as "torpor: <message>" on stderr;
 * returns its result. *ret_reply is written on success only (may be NULL). */
int cli_call(const struct cli_ctx *ctx, const char *method, const char *path, struct json_t *body,
             struct json_t **ret_reply);

/* j as indented JSON and a newline, to stdout. */
void cli_print_json(const struct json_t *j);

/* The phases of an instance object's last_operation and its total, one "name  12.3 ms" line
 * each with names padded to one column, to stderr. Nothing without phases. */
void cli_print_trace(const struct json_t *inst);

/* ---- verbs -------------------------------------------------------------------------------
 * cli_parse_<verb>(argc, argv, ...) reads argv[0] = the verb name and what follows; it prints
 * nothing and returns -EINVAL with a message for usage errors. Unless noted, string fields
 * borrow from argv. `help` set means --help was given and nothing else was checked.
 * cli_verb_<verb>() parses, prints usage or errors, runs, and returns the exit code. */

struct run_opts {
    char *name;          /* owned, like every string in run_opts */
    uint32_t memory_mib; /* 0 = the daemon's default; likewise vcpus and disk_mib */
    uint32_t vcpus;
    char *hypervisor;
    char *kernel;           /* absolute */
    char *initrd;           /* absolute */
    char *rootfs;           /* absolute */
    char *accel;            /* "kvm" or "tcg" */
    char *mem_backend;      /* "file" or "uffd" */
    char *network;          /* "default" | "none"; NULL: torpord decides */
    char *network_mode;     /* "isolated" | "shared"; NULL: torpord's default (isolated) */
    struct net_port *ports; /* -p, in order; owned */
    size_t n_ports;
    uint32_t disk_mib;
    bool no_agent;
    bool trace;
    bool cold;        /* --cold: boot, never fork from a kept template */
    char **cmd;       /* NULL-terminated, NULL when none given */
    char *image;      /* IMAGE: an OCI image from torpord's store (pulled when missing) */
    char *entrypoint; /* --entrypoint ("" clears the image's) */
    char **env;       /* -e K=V, in order; NULL when none */
    size_t n_env;
    char *workdir; /* -w */
    char *user;    /* -u */
    bool detach, interactive, tty, rm;
    bool help;
};
int cli_parse_run(int argc, char **argv, struct run_opts *ret, struct tp_err *err);
void cli_run_opts_done(struct run_opts *o);

#define PS_FILTERS_MAX 16

struct ps_opts {
    bool all;
    const char *filters[PS_FILTERS_MAX]; /* "key=value", borrowed from argv */
    size_t n_filters;
    bool json; /* --json, or --format json */
    bool quiet;
    bool no_trunc;      /* full ids */
    const char *format; /* --format TEMPLATE (not "json"/"table"), borrowed from argv */
    bool help;
};
int cli_parse_ps(int argc, char **argv, struct ps_opts *ret, struct tp_err *err);

struct inspect_opts {
    char *const *names;
    size_t n_names;
    const char *format; /* --format TEMPLATE (not "json"), borrowed from argv */
    bool help;
};
int cli_parse_inspect(int argc, char **argv, struct inspect_opts *ret, struct tp_err *err);

struct exec_opts {
    char *name;    /* owned, like every string in exec_opts */
    char **env;    /* NULL-terminated "K=V" list, NULL when none */
    char *workdir; /* NULL = the guest's default */
    char *user;    /* NULL = root */
    char **cmd;    /* NULL-terminated, non-empty */
    bool interactive, tty, detach;
    bool help;
};
int cli_parse_exec(int argc, char **argv, struct exec_opts *ret, struct tp_err *err);
void cli_exec_opts_done(struct exec_opts *o);

struct logs_opts {
    const char *name;
    bool follow;
    int64_t tail;     /* --tail: the last N lines; -1 = all */
    bool has_since;   /* --since: only lines that arrived at or after since_ns */
    int64_t since_ns; /* ns since the epoch (a duration is taken back from now) */
    bool timestamps;  /* -t: each line prefixed with its arrival time */
    bool help;
};
/* --tail's value: a number of lines (0 included) or "all" (-1). -EINVAL otherwise. */
int cli_parse_tail(const char *s, int64_t *ret, struct tp_err *err);
int cli_parse_logs(int argc, char **argv, struct logs_opts *ret, struct tp_err *err);

/* stop, start, standby, restore and rm (cmd_lifecycle.c): one request per NAME, going on past
 * failures; argv[0] says which. */
struct cli_lifecycle;
struct lifecycle_opts {
    const struct cli_lifecycle *verb; /* the verb's row of cmd_lifecycle.c's table */
    char *const *names;
    size_t n_names;
    bool trace; /* standby, restore: --trace prints each reply's last_operation */
    bool force; /* rm: -f also kills a running VMM */
    bool all;   /* rm: --all, every instance (names is empty) */
    bool help;
};
/* rm --all's prompt: whether answer (a line read from the terminal) says yes. */
bool cli_rm_all_confirmed(const char *answer);
/* -EINVAL also when argv[0] is none of the lifecycle verbs. */
int cli_parse_lifecycle(int argc, char **argv, struct lifecycle_opts *ret, struct tp_err *err);

struct kill_opts {
    char *const *names;
    size_t n_names;
    int signal;              /* SIGKILL unless -s said otherwise */
    const char *signal_text; /* -s as given, NULL when absent */
    bool help;
};
/* A signal as docker's kill -s takes it: a name with or without "SIG" (any case) or a number
 * 1..SIGRTMAX. -EINVAL "invalid signal: 'X'" otherwise. */
int cli_parse_signal(const char *s, int *ret, struct tp_err *err);
/* -s must be a valid signal (cli_parse_signal); which ones can be sent is the runner's call. */
int cli_parse_kill(int argc, char **argv, struct kill_opts *ret, struct tp_err *err);

/* The "ports" array of a create or fork request (cmd_run.c). */
struct json_t *cli_ports_json(const struct net_port *v, size_t n);

#define FORK_PORTS_MAX 16

struct fork_opts {
    const char *source;     /* the instance to fork */
    uint32_t count;         /* 0 = not given: the daemon's default, one child */
    const char *child_name; /* --name: the only child's name; NULL = generated */
    const char *prefix;     /* --prefix: children are <prefix>-<n>; NULL = the daemon's default */
    bool standby;
    bool no_wait;
    bool trace; /* the source's last_operation, read back after the fork */
    struct net_port ports[FORK_PORTS_MAX]; /* --publish: the only child's own ports */
    size_t n_ports;
    bool help;
};
/* --count is 1..64; --name and --prefix exclude each other, --name wants a count of 1. */
int cli_parse_fork(int argc, char **argv, struct fork_opts *ret, struct tp_err *err);

struct stats_opts {
    char *const *names; /* none: every Running or Paused instance */
    size_t n_names;
    bool all;           /* -a: every instance, those without a VMM as zeros */
    bool no_stream;     /* one sample pair, then exit */
    bool no_trunc;      /* full ids */
    bool json;          /* --format json: one JSON object per line */
    const char *format; /* --format TEMPLATE (not "json"/"table"), borrowed from argv */
    bool help;
};
int cli_parse_stats(int argc, char **argv, struct stats_opts *ret, struct tp_err *err);
/* n bytes as docker prints sizes: binary units, four significant digits ("123.4MiB", "256MiB",
 * "0B"). */
void cli_format_bytes(uint64_t n, char *buf, size_t size);
/* One row of torpor stats from two samples of GET .../stats (prev NULL: CPU % 0): an object
 * with docker's keys ID, Name, CPUPerc, MemUsage ("PSS / guest memory"), MemPerc and PIDs (the
 * VMM's threads), all strings. */
struct json_t *cli_stats_row(const struct json_t *prev, const struct json_t *cur, bool no_trunc);

/* Runners: do the verb against the daemon, return the exit code. */
int cli_cmd_run(const struct cli_ctx *ctx, const struct run_opts *o);
int cli_cmd_ps(const struct cli_ctx *ctx, const struct ps_opts *o);
int cli_cmd_inspect(const struct cli_ctx *ctx, const struct inspect_opts *o);
int cli_cmd_exec(const struct cli_ctx *ctx, const struct exec_opts *o);
int cli_cmd_logs(const struct cli_ctx *ctx, const struct logs_opts *o);
/* Prints each NAME done to stdout (then, with trace, its reply's trace) and each failure as
 * "torpor: <message>"; CLI_EXIT_FAIL if any failed. */
int cli_cmd_lifecycle(const struct cli_ctx *ctx, const struct lifecycle_opts *o);
int cli_cmd_fork(const struct cli_ctx *ctx, const struct fork_opts *o);
/* KILL -> POST /kill, TERM -> POST /stop, per NAME; any other signal: an error, exit 1. */
int cli_cmd_kill(const struct cli_ctx *ctx, const struct kill_opts *o);
/* Prints each NAME's exit code once it is Stopped; CLI_EXIT_FAIL if any wait failed. */
int cli_cmd_wait(const struct cli_ctx *ctx, char *const *names, size_t n);
/* Samples until SIGINT/SIGTERM (exit 0) or once with no_stream; CLI_EXIT_FAIL when a NAME is
 * unknown or torpord cannot be reached. */
int cli_cmd_stats(const struct cli_ctx *ctx, const struct stats_opts *o);
/* capabilities and version take no options or arguments. */
int cli_cmd_caps(const struct cli_ctx *ctx);
int cli_cmd_version(const struct cli_ctx *ctx);
/* cmd_templates.c: `torpor templates [ls|prune|rm ID...]` and `torpor template ...`. */
int cli_verb_templates(const struct cli_ctx *ctx, int argc, char **argv);
void cli_syntax_templates(const char *verb, struct cli_syntax *ret);

/* ---- images (cmd_pull.c, cmd_images.c, cmd_rmi.c, cmd_image_prune.c, cmd_load.c) ---------- */

/* Pull ref through torpord, drawing per-layer progress on a terminal (quiet: only the
 * reference at the end); run IMAGE calls it for an image not in the store. The exit code. */
int cli_image_pull(const struct cli_ctx *ctx, const char *ref, bool quiet);
/* "/v1/images/<ref, percent-encoded, '/' as %2F><suffix>". Caller frees. */
char *cli_image_path(const char *ref, const char *suffix);
/* n bytes as docker images prints sizes: decimal units, four significant digits ("7.34MB"). */
void cli_format_size_si(uint64_t n, char *buf, size_t size);
/* DELETE each image; prints Untagged:/Deleted: lines; CLI_EXIT_FAIL if any failed. */
int cli_cmd_rmi(const struct cli_ctx *ctx, char *const *refs, size_t n, bool force);

/* The verbs main() dispatches to (verbs.c), in the order `torpor --help` lists them. */
struct cli_verb {
    const char *name;
    int (*fn)(const struct cli_ctx *ctx, int argc, char **argv); /* argv[0] = name */
    const char *help;     /* NULL = hidden: left out of `torpor --help` and the manual */
    cli_syntax_fn syntax; /* what fn parses: the source of --help, completion and manual */
};
extern const struct cli_verb cli_verbs[];
extern const size_t cli_n_verbs;
/* The verb called name, or NULL. */
const struct cli_verb *cli_verb_find(const char *name);

/* Verb entry points for the table: parse + usage/errors + run. */
int cli_verb_run(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_ps(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_inspect(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_exec(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_logs(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_cp(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_lifecycle(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_fork(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_kill(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_wait(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_stats(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_events(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_completion(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_port(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_pull(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_images(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_rmi(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_load(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_image(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_image_prune(const struct cli_ctx *ctx, int argc, char **argv);
/* The text `torpor port` prints for an instance object's "ports": every port as
 * "GUESTPORT/PROTO -> HOSTIP:HOSTPORT\n", or with filter ("80", "53/udp") the host side of
 * that one ("HOSTIP:HOSTPORT\n"; -ENOENT when none, -EINVAL for a bad filter). Caller frees. */
int cli_format_ports(const struct json_t *ports, const char *filter, char **ret,
                     struct tp_err *err);

/* Each verb's syntax, for the table. */
void cli_syntax_run(const char *verb, struct cli_syntax *ret);
void cli_syntax_ps(const char *verb, struct cli_syntax *ret);
void cli_syntax_inspect(const char *verb, struct cli_syntax *ret);
void cli_syntax_exec(const char *verb, struct cli_syntax *ret);
void cli_syntax_logs(const char *verb, struct cli_syntax *ret);
void cli_syntax_cp(const char *verb, struct cli_syntax *ret);
void cli_syntax_stats(const char *verb, struct cli_syntax *ret);
void cli_syntax_events(const char *verb, struct cli_syntax *ret);
void cli_syntax_lifecycle(const char *verb, struct cli_syntax *ret);
void cli_syntax_kill(const char *verb, struct cli_syntax *ret);
void cli_syntax_wait(const char *verb, struct cli_syntax *ret);
void cli_syntax_fork(const char *verb, struct cli_syntax *ret);
void cli_syntax_caps(const char *verb, struct cli_syntax *ret);
void cli_syntax_version(const char *verb, struct cli_syntax *ret);
void cli_syntax_completion(const char *verb, struct cli_syntax *ret);
void cli_syntax_port(const char *verb, struct cli_syntax *ret);
void cli_syntax_pull(const char *verb, struct cli_syntax *ret);
void cli_syntax_images(const char *verb, struct cli_syntax *ret);
void cli_syntax_rmi(const char *verb, struct cli_syntax *ret);
void cli_syntax_load(const char *verb, struct cli_syntax *ret);
void cli_syntax_image(const char *verb, struct cli_syntax *ret);
void cli_syntax_image_prune(const char *verb, struct cli_syntax *ret);

/* ---- generated from the tables (gendoc.c) ------------------------------------------------- */

/* A bash completion script for torpor: verbs, each verb's options (long and short), values of
 * options that take one (file names for PATH, DIR and FILE values), instance names from
 * `torpor ps -a --format '{{.Name}}'` on the socket the command line names. */
void cli_completion_bash(FILE *f);
/* The same for zsh (through its bash completion emulation). */
void cli_completion_zsh(FILE *f);
/* torpor(1) in roff: global options, then each verb's usage, description and options. */
void cli_man_page(FILE *f);
int cli_verb_caps(const struct cli_ctx *ctx, int argc, char **argv);
int cli_verb_version(const struct cli_ctx *ctx, int argc, char **argv);

/* The common tail of a cli_verb_*(): r < 0 prints the usage error and "See 'torpor VERB
 * --help'." to stderr and returns syn's usage exit code; help prints cli_usage_print(syn) to
 * stdout and returns 0; else returns -1 (go on). */
int cli_syntax_prologue(const struct cli_syntax *syn, int r, bool help, const struct tp_err *err);
/* A whole cli_verb_*() for a verb whose syn has no flags and CLI_OPERANDS_NONE: parse argv
 * (only --help), print usage or errors, else return run(ctx). */
int cli_verb_without_args(const struct cli_ctx *ctx, const struct cli_syntax *syn, int argc,
                          char **argv, int (*run)(const struct cli_ctx *ctx));
