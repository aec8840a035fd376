/* tz.h: IANA time zones read from the TZif files of the system's zoneinfo
 * (RFC 8536), for computing local wall-clock times in any thread.
 *
 * Why not localtime_r with setenv("TZ"): the C library keeps one process-wide
 * time zone, and setenv() while another thread calls getenv() or
 * localtime_r() (librdkafka, libcurl and our logger do) is undefined
 * behaviour; a mutex around our own calls cannot cover theirs. So a zone is
 * loaded once from $TZDIR (default /usr/share/zoneinfo) into an immutable
 * object that any number of threads may query at once.
 *
 * Times past the file's last transition follow its footer rule (a POSIX TZ
 * string such as "CET-1CEST,M3.5.0,M10.5.0/3"), so "slim" TZif files work.
 */
#ifndef SCHEDULE_TZ_H
#define SCHEDULE_TZ_H

#include <stddef.h>
#include <stdint.h>

#define SCHED_TZ_NAME_MAX 64

typedef struct sched_tz_s sched_tz_t;

/* Load the zone `name` ("Asia/Shanghai", "Europe/Berlin", "UTC"). Returns 0
 * and sets *out, or -1 with a message in err (unknown zone, bad file); *out is
 * untouched on failure. "UTC" works without a zoneinfo file. */
int sched_tz_load(const char *name, sched_tz_t **out, char *err, size_t errlen);
/* Parse a POSIX TZ rule string alone (the TZif footer form); for tests. */
int sched_tz_from_posix(const char *rule, sched_tz_t **out, char *err, size_t errlen);
void sched_tz_destroy(sched_tz_t **tzp); /* NULL is a no-op; sets *tzp NULL */

const char *sched_tz_name(const sched_tz_t *tz);
/* The offset of local time from UTC at the instant utc_s (seconds east). */
int32_t sched_tz_offset(const sched_tz_t *tz, int64_t utc_s);

/* Civil (proleptic Gregorian) date helpers, exact for any int64 range we use. */
int64_t sched_days_from_civil(int64_t y, unsigned m, unsigned d);
void sched_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

#endif
