/* fc-double: shared definitions (version strings, error text, logging) of the Firecracker double.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define FCD_VERSION          "1.16.1" /* what --version, GET /version and GET / report */
#define FCD_SNAPSHOT_VERSION "10.0.0" /* snapshot data format of 1.16.x */
#define FCD_APP_NAME         "Firecracker"

/* Firecracker's process exit codes (FcExitCode) that the double uses. */
#define FCD_EXIT_OK          0
#define FCD_EXIT_GENERIC     1
#define FCD_EXIT_BAD_CONFIG  152
#define FCD_EXIT_ARG_PARSING 153

/* An error as the API reports it: the fault_message text. */
struct fcd_err {
    char msg[1024];
};

/* Record a failure in err (may be NULL); returns code (< 0) for `return fcd_fail(...)`. */
int fcd_fail(struct fcd_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix context to err's message; returns code. */
int fcd_wrap(struct fcd_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log lines go to the logger's file once configured (PUT /logger, --log-path), else stderr;
 * stdout is the guest's serial console. */
void fcd_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fcd_log_open(const char *path, const char *level, bool show_level, bool show_origin);

/* Serial console output of the fake guest (stdout, flushed per line). */
void fcd_console(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
