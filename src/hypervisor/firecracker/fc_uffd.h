/* The userfaultfd memory backend's page-fault handler, as the driver sees it: a process of its
 * own per restored VMM (torpord re-exec'd with FC_UFFD_HANDLER_FLAG), started before the load,
 * recorded by pid and start time in the instance dir, outliving torpord and exiting with its
 * VMM. docs/design/uffd.md has the design. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "util/err.h"

/* argv[1] of the handler process: the program that links the driver (torpord) must dispatch it
 * to its handler mode before anything else (/proc/self/exe is what the driver runs). */
#define FC_UFFD_HANDLER_FLAG "--uffd-handler"

/* Files in the instance dir. */
#define FC_UFFD_SOCK    "uffd.sock"  /* the socket the VMM connects to */
#define FC_UFFD_PIDFILE "uffd.pid"   /* "<pid> <start time>\n" of the live handler */
#define FC_UFFD_STATS   "uffd.stats" /* the handler's counters, rewritten as it serves */

/* Start a handler serving memory (a snapshot's memory file) for a VMM about to be restored in
 * dir. Returns once its socket listens; *ret_sock is the socket path for mem_backend (caller
 * frees), *ret_starter the process to hand to fc_uffd_started() (or fc_uffd_abort()) before
 * the load. Handler messages are appended to log_path. A handler recorded earlier for dir is
 * killed first. */
int fc_uffd_start(const char *dir, const char *memory, const char *log_path, pid_t *ret_starter,
                  char **ret_sock, struct tp_err *err);

/* Wait until the handler has detached and recorded itself (its starter exits 0). On failure
 * the handler is stopped. */
int fc_uffd_started(const char *dir, pid_t starter, const char *log_path, struct tp_err *err);

/* Give up on a handler being started: kill and reap its starter, stop the handler. */
void fc_uffd_abort(const char *dir, pid_t starter);

/* Kill the handler recorded in dir, if it lives, and forget it. */
void fc_uffd_stop(const char *dir);

/* Forget dir's handler record (a VMM that does not use one is about to start). */
void fc_uffd_forget(const char *dir);

/* Whether dir records a handler (alive or not). */
bool fc_uffd_recorded(const char *dir);

/* Wait up to timeout_ms for dir's recorded handler to exit (its VMM is gone). */
void fc_uffd_wait(const char *dir, int timeout_ms);

/* 0: the VMM in dir needs no handler or its handler lives; -ESRCH: one was recorded and is gone
 * (the VMM hangs at its next fault). */
int fc_uffd_check(const char *dir);
