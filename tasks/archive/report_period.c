/* report_period.c: the period of a report slot in a time zone, and local
 * time labels, on libs/schedule's TZif reader (schedule/tz.h): immutable
 * zone objects, safe from any thread, no process-wide TZ. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_model.h"
#include "schedule/tz.h"

void report_tz_init(void)
{
    /* nothing process-wide to prepare: zones are loaded per use */
}

static sched_tz_t *report_tz_open(const char *tz)
{
    char err[256];
    sched_tz_t *z = NULL;
    if (!tz || !*tz || strlen(tz) >= REPORT_TZ_MAX || tz[0] == '/' || strstr(tz, ".."))
        return NULL;
    if (sched_tz_load(tz, &z, err, sizeof(err)))
        return NULL;
    return z;
}

int report_tz_ok(const char *tz)
{
    sched_tz_t *z = report_tz_open(tz);
    int ok = z != NULL;
    sched_tz_destroy(&z);
    return ok;
}

int report_period_parse(const char *s, report_period_t *out)
{
    if (s && strcmp(s, "hour") == 0)
        *out = REPORT_HOUR;
    else if (s && strcmp(s, "day") == 0)
        *out = REPORT_DAY;
    else
        return -1;
    return 0;
}

static int64_t report_floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The instant whose local time is local_s (seconds since the epoch in local
 * wall time). On a gap (the local time does not exist) the later candidate:
 * the first instant after the gap. */
static int64_t report_instant_of_local(const sched_tz_t *z, int64_t local_s, int64_t hint_s)
{
    int64_t u0 = local_s - sched_tz_offset(z, hint_s);
    int64_t u1 = local_s - sched_tz_offset(z, u0);
    if (u1 == u0)
        return u0;
    int64_t u2 = local_s - sched_tz_offset(z, u1);
    if (u2 == u1)
        return u1;
    return u1 > u2 ? u1 : u2; /* no such local time: the two sides of the gap */
}

/* The start of the local hour (or day) holding the instant t. */
static int64_t report_floor_local(const sched_tz_t *z, int64_t t, report_period_t period)
{
    int64_t local = t + sched_tz_offset(z, t);
    if (period == REPORT_HOUR)
        return t - (local - report_floor_div(local, 3600) * 3600); /* :30/:45 zones too */
    return report_instant_of_local(z, report_floor_div(local, 86400) * 86400, t);
}

int report_period_bounds(int64_t slot_ms, report_period_t period, const char *tz, int64_t *start_ms,
                         int64_t *end_ms, char *err, size_t errlen)
{
    sched_tz_t *z = report_tz_open(tz);
    if (!z) {
        snprintf(err, errlen, "time zone \"%s\": expected UTC or a name of the tz database",
                 tz ? tz : "");
        return -1;
    }
    if (slot_ms <= 0) {
        sched_tz_destroy(&z);
        snprintf(err, errlen, "scheduled_at_ms %lld: expected a positive Unix ms time",
                 (long long)slot_ms);
        return -1;
    }
    int64_t end = report_floor_local(z, slot_ms / 1000, period);
    int64_t start = report_floor_local(z, end - 1, period);
    sched_tz_destroy(&z);
    if (start >= end) {
        snprintf(err, errlen, "no %s period before %lld in %s",
                 period == REPORT_DAY ? "day" : "hour", (long long)slot_ms, tz);
        return -1;
    }
    *start_ms = start * 1000;
    *end_ms = end * 1000;
    return 0;
}

int report_local_time(int64_t ms, const char *tz, bool hm_only, char *out, size_t outlen)
{
    sched_tz_t *z = report_tz_open(tz);
    int64_t y, t = report_floor_div(ms, 1000);
    unsigned mo, d;
    if (!z)
        return -1;
    int32_t off = sched_tz_offset(z, t);
    sched_tz_destroy(&z);
    int64_t local = t + off, days = report_floor_div(local, 86400), sod = local - days * 86400;
    int hh = (int)(sod / 3600), mi = (int)(sod % 3600 / 60), ss = (int)(sod % 60);
    if (hm_only) {
        snprintf(out, outlen, "%02d:%02d", hh, mi);
        return 0;
    }
    sched_civil_from_days(days, &y, &mo, &d);
    char sign = off < 0 ? '-' : '+';
    int32_t a = off < 0 ? -off : off;
    snprintf(out, outlen, "%04lld-%02u-%02uT%02d:%02d:%02d%c%02d:%02d", (long long)y, mo, d, hh, mi,
             ss, sign, (int)(a / 3600), (int)(a % 3600 / 60));
    return 0;
}

void report_utc_stamp(int64_t ms, char *out, size_t outlen)
{
    int64_t t = report_floor_div(ms, 1000), days = report_floor_div(t, 86400), y;
    int64_t sod = t - days * 86400;
    unsigned mo, d;
    sched_civil_from_days(days, &y, &mo, &d);
    snprintf(out, outlen, "%04lld%02u%02uT%02d%02d%02dZ", (long long)y, mo, d, (int)(sod / 3600),
             (int)(sod % 3600 / 60), (int)(sod % 60));
}

void report_buckets_init(report_t *r)
{
    int64_t span = r->end_ms - r->start_ms;
    r->bucket_ms = r->period == REPORT_DAY ? 3600000 : 300000;
    r->nbuckets = (size_t)((span + r->bucket_ms - 1) / r->bucket_ms);
    if (r->nbuckets > REPORT_MAX_BUCKETS) { /* cannot happen for hour/day; stay bounded */
        r->bucket_ms = (span + REPORT_MAX_BUCKETS - 1) / REPORT_MAX_BUCKETS;
        r->nbuckets = (size_t)((span + r->bucket_ms - 1) / r->bucket_ms);
    }
    for (size_t i = 0; i < r->nbuckets; i++) {
        r->bucket_start[i] = r->start_ms + (int64_t)i * r->bucket_ms;
        r->bucket_messages[i] = 0;
    }
}
