/* torpor kill [-s SIGNAL] NAME...: KILL powers the VM off at once, TERM stops it as `stop` does.
 * No other signal has a meaning: a VM has no single main process the host could signal (the
 * VMM is not the guest's init), and the guest's own processes are reached with exec. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/macro.h"

enum {
    FLAG_SIGNAL,
};

static const struct cli_syntax syntax = {
    .verb = "kill",
    .usage = "Usage: torpor kill [OPTIONS] NAME...\n"
             "\n"
             "Power running instances off at once: the VMM is killed, the guest gets no\n"
             "chance to sync its disk (KILL, the default). -s TERM stops them as 'torpor\n"
             "stop' does. Other signals are refused: a VM has no single main process the\n"
             "host could signal. Prints each NAME killed.\n",
    .operands = CLI_OPERANDS_SOME,
    .flags = {
        [FLAG_SIGNAL] = { "signal", 's', "KILL (default) or TERM; a name, with or without SIG, "
                                         "or a number", "SIGNAL" },
    },
};

static const struct {
    const char *name;
    int sig;
} signals[] = {
    { "HUP", SIGHUP },       { "INT", SIGINT },   { "QUIT", SIGQUIT },     { "ILL", SIGILL },
    { "TRAP", SIGTRAP },     { "ABRT", SIGABRT }, { "IOT", SIGIOT },       { "BUS", SIGBUS },
    { "FPE", SIGFPE },       { "KILL", SIGKILL }, { "USR1", SIGUSR1 },     { "SEGV", SIGSEGV },
    { "USR2", SIGUSR2 },     { "PIPE", SIGPIPE }, { "ALRM", SIGALRM },     { "TERM", SIGTERM },
    { "STKFLT", SIGSTKFLT }, { "CHLD", SIGCHLD }, { "CONT", SIGCONT },     { "STOP", SIGSTOP },
    { "TSTP", SIGTSTP },     { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU },     { "URG", SIGURG },
    { "XCPU", SIGXCPU },     { "XFSZ", SIGXFSZ }, { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF },
    { "WINCH", SIGWINCH },   { "IO", SIGIO },     { "POLL", SIGPOLL },     { "PWR", SIGPWR },
    { "SYS", SIGSYS },
};

int
cli_parse_signal(const char *s, int *ret, struct tp_err *err)
{
    const char *name = s;

    if (!s || !*s)
        return tp_err_set(err, -EINVAL, "invalid signal: ''");
    if (isdigit((unsigned char)s[0])) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || v < 1 || v > SIGRTMAX)
            return tp_err_set(err, -EINVAL, "invalid signal: '%s'", s);
        *ret = (int)v;
        return 0;
    }
    if (strncasecmp(name, "SIG", 3) == 0)
        name += 3;
    for (size_t i = 0; i < ELEMENTSOF(signals); i++)
        if (strcasecmp(name, signals[i].name) == 0) {
            *ret = signals[i].sig;
            return 0;
        }
    return tp_err_set(err, -EINVAL, "invalid signal: '%s'", s);
}

int
cli_parse_kill(int argc, char **argv, struct kill_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int sig = SIGKILL;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    if (!a.help && a.values[FLAG_SIGNAL] && cli_parse_signal(a.values[FLAG_SIGNAL], &sig, err) < 0)
        return -EINVAL;
    *ret = (struct kill_opts){
        .names = a.operands,
        .n_names = a.n_operands,
        .signal = sig,
        .signal_text = a.values[FLAG_SIGNAL],
        .help = a.help,
    };
    return 0;
}

int
cli_cmd_kill(const struct cli_ctx *ctx, const struct kill_opts *o)
{
    int rc = CLI_EXIT_OK;

    if (o->signal != SIGKILL && o->signal != SIGTERM) {
        cli_error("cannot send signal '%s' to an instance: a VM has no single main process the "
                  "host could signal; KILL powers it off, TERM stops it (send other signals to "
                  "processes in the guest with 'torpor exec NAME kill -s SIG PID')",
                  o->signal_text);
        return CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < o->n_names; i++) {
        _cleanup_free_ char *path =
            client_instance_path(o->names[i], o->signal == SIGKILL ? "/kill" : "/stop");
        json_t *body = json_object(), *reply = NULL;
        int r = cli_call(ctx, "POST", path, body, &reply);

        json_decref(body);
        json_decref(reply);
        if (r < 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        printf("%s\n", o->names[i]);
        fflush(stdout);
    }
    return rc;
}

int
cli_verb_kill(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct kill_opts o = { 0 };
    int r = cli_parse_kill(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_kill(ctx, &o);
}

CLI_SYNTAX_FN(cli_syntax_kill)
