/* retry_after.c: parsing Retry-After, delta-seconds or HTTP-date. */
#include "retry_after.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wdays_long[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};

/* Reads exactly n digits. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool lit(const char **p, const char *s)
{
    size_t n = strlen(s);
    if (strncmp(*p, s, n) != 0)
        return false;
    *p += n;
    return true;
}

static bool month(const char **p, int *out)
{
    for (int i = 0; i < 12; i++) {
        if (strncmp(*p, months[i], 3) == 0) {
            *p += 3;
            *out = i;
            return true;
        }
    }
    return false;
}

static bool word(const char **p, const char *const *names, size_t len)
{
    for (int i = 0; i < 7; i++) {
        size_t n = len ? len : strlen(names[i]);
        if (strncmp(*p, names[i], n) == 0) {
            *p += n;
            return true;
        }
    }
    return false;
}

static bool hms(const char **p, struct tm *tm)
{
    return digits(p, 2, &tm->tm_hour) && lit(p, ":") && digits(p, 2, &tm->tm_min) && lit(p, ":") &&
           digits(p, 2, &tm->tm_sec) && tm->tm_hour < 24 && tm->tm_min < 60 && tm->tm_sec <= 60;
}

/* Sun, 06 Nov 1994 08:49:37 GMT */
static bool imf_fixdate(const char *p, struct tm *tm)
{
    int y;
    return word(&p, wdays, 3) && lit(&p, ", ") && digits(&p, 2, &tm->tm_mday) && lit(&p, " ") &&
           month(&p, &tm->tm_mon) && lit(&p, " ") && digits(&p, 4, &y) && lit(&p, " ") &&
           hms(&p, tm) && lit(&p, " GMT") && *p == '\0' && (tm->tm_year = y - 1900, true);
}

/* Sunday, 06-Nov-94 08:49:37 GMT (two-digit years: 70..99 -> 19xx) */
static bool rfc850(const char *p, struct tm *tm)
{
    int y;
    return word(&p, wdays_long, 0) && lit(&p, ", ") && digits(&p, 2, &tm->tm_mday) &&
           lit(&p, "-") && month(&p, &tm->tm_mon) && lit(&p, "-") && digits(&p, 2, &y) &&
           lit(&p, " ") && hms(&p, tm) && lit(&p, " GMT") && *p == '\0' &&
           (tm->tm_year = y < 70 ? y + 100 : y, true);
}

/* Sun Nov  6 08:49:37 1994 */
static bool asctime_date(const char *p, struct tm *tm)
{
    int y;
    if (!(word(&p, wdays, 3) && lit(&p, " ") && month(&p, &tm->tm_mon) && lit(&p, " ")))
        return false;
    if (*p == ' ') {
        p++;
        if (!digits(&p, 1, &tm->tm_mday))
            return false;
    } else if (!digits(&p, 2, &tm->tm_mday)) {
        return false;
    }
    return lit(&p, " ") && hms(&p, tm) && lit(&p, " ") && digits(&p, 4, &y) && *p == '\0' &&
           (tm->tm_year = y - 1900, true);
}

int push_retry_after_parse(const char *value, int64_t now_ms, int64_t *delay_ms)
{
    char v[64];
    size_t n;
    struct tm tm;

    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t' || value[n - 1] == '\r' ||
                     value[n - 1] == '\n'))
        n--;
    if (n == 0 || n >= sizeof(v))
        return -1;
    memcpy(v, value, n);
    v[n] = '\0';

    if (isdigit((unsigned char)v[0])) {
        int64_t secs = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)v[i]))
                return -1;
            if (secs < PUSH_RETRY_AFTER_MAX_MS / 1000)
                secs = secs * 10 + (v[i] - '0');
        }
        int64_t ms = secs * 1000;
        *delay_ms = ms > PUSH_RETRY_AFTER_MAX_MS ? PUSH_RETRY_AFTER_MAX_MS : ms;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    if (!imf_fixdate(v, &tm) && !(memset(&tm, 0, sizeof(tm)), rfc850(v, &tm)) &&
        !(memset(&tm, 0, sizeof(tm)), asctime_date(v, &tm)))
        return -1;
    if (tm.tm_mday < 1 || tm.tm_mday > 31)
        return -1;
    int64_t t = (int64_t)timegm(&tm);
    int64_t d = t * 1000 - now_ms;
    if (d < 0)
        d = 0;
    *delay_ms = d > PUSH_RETRY_AFTER_MAX_MS ? PUSH_RETRY_AFTER_MAX_MS : d;
    return 0;
}

void push_http_date(int64_t t, char *out)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(out, tmp, 30);
    out[29] = '\0';
}
