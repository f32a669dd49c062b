/* fc-double: the snapshot state file: a version line, the VM state as JSON, a checksum line. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "fcd.h"

/* Truncate and write path with state (borrowed), then fsync. */
int snapfile_write(const char *path, json_t *state, struct fcd_err *err);
/* Read and check path: the format version must have our major and a minor <= ours, the checksum
 * must match. *ret_state is a new reference. */
int snapfile_read(const char *path, json_t **ret_state, struct fcd_err *err);
/* The data-format version stored in path ("10.0.0"), for --describe-snapshot. */
int snapfile_version(const char *path, char *ret_version, size_t size, struct fcd_err *err);
