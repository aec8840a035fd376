/* report_period.c: the period of a report slot in a time zone, and local
 * time labels.
 *
 * The C library converts in a time zone only through the process-wide TZ
 * variable, so each conversion sets TZ, converts and restores it under one
 * lock (report_tz_init makes sure TZ exists before any thread runs, so
 * setting it later never reallocates the environment under another thread's
 * getenv). */
/* tm_gmtoff: _GNU_SOURCE comes from the build flags */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "report_model.h"

static pthread_mutex_t report_tz_lock = PTHREAD_MUTEX_INITIALIZER;

void report_tz_init(void)
{
    pthread_mutex_lock(&report_tz_lock);
    if (!getenv("TZ"))
        setenv("TZ", ":/etc/localtime", 0); /* what an unset TZ means to glibc */
    pthread_mutex_unlock(&report_tz_lock);
}

int report_tz_ok(const char *tz)
{
    char path[512];
    const char *dir = getenv("TZDIR");
    if (!tz || !*tz || strlen(tz) >= REPORT_TZ_MAX)
        return 0;
    if (strcmp(tz, "UTC") == 0)
        return 1;
    if (tz[0] == '/' || strstr(tz, ".."))
        return 0;
    for (const char *p = tz; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '+' || *p == '-' || *p == '/'))
            return 0;
    }
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
    return access(path, R_OK) == 0;
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

typedef struct {
    char saved[256];
    bool had;
} report_tz_t;

static void report_tz_enter(const char *tz, report_tz_t *st)
{
    char val[REPORT_TZ_MAX + 2];
    pthread_mutex_lock(&report_tz_lock);
    const char *old = getenv("TZ");
    st->had = old != NULL;
    snprintf(st->saved, sizeof(st->saved), "%s", old ? old : "");
    snprintf(val, sizeof(val), ":%s", tz); /* ":" : a file of the tz database */
    setenv("TZ", strcmp(tz, "UTC") == 0 ? "UTC0" : val, 1);
    tzset();
}

static void report_tz_leave(report_tz_t *st)
{
    if (st->had)
        setenv("TZ", st->saved, 1);
    else
        unsetenv("TZ");
    tzset();
    pthread_mutex_unlock(&report_tz_lock);
}

static time_t report_floor_day(time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return mktime(&tm);
}

static time_t report_floor_hour(time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm);
    return t - tm.tm_min * 60 - tm.tm_sec; /* local hours, also in :30/:45 zones */
}

int report_period_bounds(int64_t slot_ms, report_period_t period, const char *tz, int64_t *start_ms,
                         int64_t *end_ms, char *err, size_t errlen)
{
    report_tz_t st;
    time_t slot, end, start;
    if (!report_tz_ok(tz)) {
        snprintf(err, errlen, "time zone \"%s\": expected UTC or a name of the tz database",
                 tz ? tz : "");
        return -1;
    }
    if (slot_ms <= 0) {
        snprintf(err, errlen, "scheduled_at_ms %lld: expected a positive Unix ms time",
                 (long long)slot_ms);
        return -1;
    }
    slot = (time_t)(slot_ms / 1000);
    report_tz_enter(tz, &st);
    if (period == REPORT_DAY) {
        end = report_floor_day(slot);
        start = report_floor_day(end - 1);
    } else {
        end = report_floor_hour(slot);
        start = report_floor_hour(end - 1);
    }
    report_tz_leave(&st);
    if (end == (time_t)-1 || start == (time_t)-1 || start >= end) {
        snprintf(err, errlen, "no %s period before %lld in %s",
                 period == REPORT_DAY ? "day" : "hour", (long long)slot_ms, tz);
        return -1;
    }
    *start_ms = (int64_t)start * 1000;
    *end_ms = (int64_t)end * 1000;
    return 0;
}

int report_local_time(int64_t ms, const char *tz, bool hm_only, char *out, size_t outlen)
{
    report_tz_t st;
    struct tm tm;
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    if (!report_tz_ok(tz))
        return -1;
    report_tz_enter(tz, &st);
    localtime_r(&t, &tm);
    report_tz_leave(&st);
    if (hm_only) {
        snprintf(out, outlen, "%02d:%02d", tm.tm_hour, tm.tm_min);
        return 0;
    }
    long off = tm.tm_gmtoff;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 3600,
             (off % 3600) / 60);
    return 0;
}

void report_utc_stamp(int64_t ms, char *out, size_t outlen)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
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
