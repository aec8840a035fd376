/* cron.h: cron expressions and their next firing time in a time zone.
 *
 * Forms (fields separated by blanks; names are case-insensitive):
 *   5 fields  minute hour day-of-month month day-of-week
 *   6 fields  second minute hour day-of-month month day-of-week
 *             (the seconds form exists for tests and short intervals)
 *   @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly
 * A field is a list of items "a", "a-b", "*", each optionally "/step";
 * "a/step" means a-max/step. Months may be JAN..DEC, days of week SUN..SAT
 * (0-7, 0 and 7 are Sunday). Day of month and day of week follow Vixie cron:
 * when both are restricted (neither starts with '*'), a day matches if
 * EITHER matches; otherwise both must.
 *
 * Times are matched against local wall-clock time in the job's zone:
 * - a local time that does not exist (skipped by a spring-forward change)
 *   fires once, at the first valid instant after it (the change itself);
 * - a local time that occurs twice (autumn fall-back) fires once, at its
 *   first occurrence, when the hour field is restricted; when the hour field
 *   is '*' (a job running every hour or more often) each real occurrence
 *   fires, as in Vixie cron, so an every-10-minutes job keeps its interval.
 */
#ifndef SCHEDULE_CRON_H
#define SCHEDULE_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "schedule/tz.h"

#define SCHED_CRON_MAX 128 /* longest expression accepted */
/* A search gives up after this many years without a match ("0 0 30 2 *"). */
#define SCHED_CRON_SEARCH_YEARS 8

typedef struct {
    uint64_t second; /* bit s: second s (0-59); bit 0 only for 5-field forms */
    uint64_t minute; /* bits 0-59 */
    uint32_t hour;   /* bits 0-23 */
    uint32_t dom;    /* bits 1-31 */
    uint16_t month;  /* bits 1-12 */
    uint8_t dow;     /* bits 0-6 (Sunday 0) */
    bool dom_star, dow_star, hour_star;
    bool has_seconds;
} sched_cron_t;

/* Parse expr. Returns 0, or -1 with err like
 *   "field 2 (hour) value 25 out of range 0-23". */
int sched_cron_parse(const char *expr, sched_cron_t *out, char *err, size_t errlen);

/* The first firing instant strictly after after_ms (Unix ms, UTC), in ms and
 * whole seconds; -1 when none within SCHED_CRON_SEARCH_YEARS. Thread-safe. */
int64_t sched_cron_next(const sched_cron_t *c, const sched_tz_t *tz, int64_t after_ms);

#endif
