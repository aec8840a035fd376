/* util.h: byte helpers of imtask-ctl: hex in and out, printable escapes of
 * header values and keys, bounded file reading. */
#ifndef CTL_UTIL_H
#define CTL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Decode hex digits (either case, optional "0x" prefix, spaces and ':'
 * between bytes ignored) into a malloc'd buffer (*out, free(); NULL when
 * empty). Returns 0, or -1 with err naming the offending offset. At most max
 * bytes. */
int ctl_hex_decode(const char *s, size_t max, uint8_t **out, size_t *outlen, char *err,
                   size_t errlen);

/* Classic hex dump of the first max bytes, 16 a line, with offsets and an
 * ASCII column; says how many bytes were left out. */
void ctl_hexdump(FILE *out, const uint8_t *data, size_t len, size_t max, const char *indent);

/* data as text for one line: printable ASCII and valid UTF-8 as is, other
 * bytes as \xNN, '\\' as "\\\\"; cut with "..." to fit outlen. */
void ctl_escape(const void *data, size_t len, char *out, size_t outlen);

/* Read a whole file ("-" is stdin) of at most max bytes into a malloc'd
 * buffer with a NUL after the data. Returns 0, or -1 with err. */
int ctl_read_file(const char *path, size_t max, char **out, size_t *outlen, char *err,
                  size_t errlen);

#endif
