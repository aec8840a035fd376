/* timeparse.h: the times imtask-ctl takes (--since/--until) and prints, all UTC. */
#ifndef CTL_TIMEPARSE_H
#define CTL_TIMEPARSE_H

#include <stddef.h>
#include <stdint.h>

#define CTL_TIME_MAX 32 /* bytes of a formatted time, with the NUL */

/* Parse a point in time into Unix milliseconds:
 *   1732800000000                  Unix milliseconds (10 digits or more)
 *   2024-11-28T14:10:37Z           RFC 3339, fraction and offset optional:
 *   2024-11-28T14:10:37.123+01:00  ('t', 'z' and a space for 'T' accepted)
 *   2024-11-28                     midnight UTC of that day
 *   -2h, -30m, -90s, -7d, -500ms   that long before now_ms
 *   now                            now_ms
 * Returns 0, or -1 with err saying what was expected. */
int ctl_time_parse(const char *s, int64_t now_ms, int64_t *out_ms, char *err, size_t errlen);

/* "2024-11-28T14:10:37.123Z" (with_ms) or "2024-11-28 14:10:37" (not);
 * "-" for a negative time. out >= CTL_TIME_MAX bytes. */
void ctl_time_format(int64_t ms, int with_ms, char *out, size_t outlen);

#endif
