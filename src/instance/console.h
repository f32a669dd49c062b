/* Serial console logs: size cap for files a VMM appends to. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CONSOLE_LOG_MAX_DEFAULT (4ull << 20)
#define CONSOLE_LOG_MAX_MIN     (64ull << 10)

/* When path is larger than max, drop its oldest bytes so that about max/2 remain; ret_cut gets
 * how many went. 0 also when there is no such file; -errno on failure. */
int console_log_trim(const char *path, uint64_t max, uint64_t *ret_cut);
/* Bytes cut from the head of the console log open at fd since it was created (0 if none, or
 * where the filesystem keeps no user xattrs). A reader at offset o before a cut of c bytes
 * continues at o - c. */
uint64_t console_log_cut_total(int fd);
/* Where the last `lines` lines of text start: after the lines-th '\n' from the end, not
 * counting a '\n' that ends the text (a last line without one counts as a line). 0 when the
 * text has fewer lines, len when lines is 0. */
uint64_t console_tail_offset_buf(const char *buf, size_t len, uint64_t lines);
/* The same for the file open at fd, read backwards in blocks (bounded memory); -errno. */
int console_tail_offset(int fd, uint64_t lines, uint64_t *ret);
