/* timeparse.c: RFC 3339 / Unix-ms / relative time parsing and UTC formatting. */
#include "timeparse.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CTL_MS_PER_DAY 86400000LL
#define CTL_UNIX_MS_MIN 100000000000LL /* 1973-03-03: fewer digits are likely seconds */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t ctl_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void ctl_civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static bool ctl_is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* n decimal digits at s into *v; false when they are not all digits. */
static bool ctl_digits(const char *s, int n, int64_t *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

/* "-2h" and friends: a duration before now. Returns 1 if s is one (parsed
 * into *ms or -1 on a bad one), 0 if it is not of that form. */
static int ctl_time_relative(const char *s, int64_t *ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", CTL_MS_PER_DAY}};
    const char *p = s + 1;
    int64_t n = 0;
    if (s[0] != '-' || !(p[0] >= '0' && p[0] <= '9'))
        return 0;
    while (*p >= '0' && *p <= '9') {
        if (n > 1000000000LL)
            return -1;
        n = n * 10 + (*p++ - '0');
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            *ms = n * units[i].ms;
            return 1;
        }
    }
    return -1;
}

int ctl_time_parse(const char *s, int64_t now_ms, int64_t *out_ms, char *err, size_t errlen)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t y, mo, d, h = 0, mi = 0, sec = 0, frac_ms = 0, off_min = 0, ago;
    size_t len = s ? strlen(s) : 0, i;
    int rel;

    if (!s || !*s)
        goto bad;
    if (strcmp(s, "now") == 0) {
        *out_ms = now_ms;
        return 0;
    }
    rel = ctl_time_relative(s, &ago);
    if (rel == 1) {
        *out_ms = now_ms - ago;
        return 0;
    }
    if (rel < 0) {
        snprintf(err, errlen, "bad relative time \"%s\": expected -N followed by ms, s, m, h or d",
                 s);
        return -1;
    }
    if (strspn(s, "0123456789") == len) {
        if (len > 15 || !ctl_digits(s, (int)len, out_ms))
            goto bad;
        if (*out_ms < CTL_UNIX_MS_MIN) {
            snprintf(err, errlen,
                     "time \"%s\" is too small for Unix milliseconds (Unix seconds? add 000)", s);
            return -1;
        }
        return 0;
    }
    /* YYYY-MM-DD */
    if (len < 10 || !ctl_digits(s, 4, &y) || s[4] != '-' || !ctl_digits(s + 5, 2, &mo) ||
        s[7] != '-' || !ctl_digits(s + 8, 2, &d))
        goto bad;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && ctl_is_leap(y)))
        goto bad_range;
    i = 10;
    if (len > 10) {
        /* THH:MM:SS[.frac](Z|+HH:MM|-HH:MM) */
        if (!(s[10] == 'T' || s[10] == 't' || s[10] == ' ') || len < 20 ||
            !ctl_digits(s + 11, 2, &h) || s[13] != ':' || !ctl_digits(s + 14, 2, &mi) ||
            s[16] != ':' || !ctl_digits(s + 17, 2, &sec))
            goto bad;
        if (h > 23 || mi > 59 || sec > 60)
            goto bad_range;
        if (sec == 60)
            sec = 59; /* a leap second: the instant before */
        i = 19;
        if (s[i] == '.') {
            int nd = 0;
            i++;
            while (s[i] >= '0' && s[i] <= '9') {
                if (nd < 3)
                    frac_ms = frac_ms * 10 + (s[i] - '0');
                nd++;
                i++;
            }
            if (nd == 0 || nd > 9)
                goto bad;
            for (; nd < 3; nd++)
                frac_ms *= 10;
        }
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            int64_t oh, om;
            if (!ctl_digits(s + i + 1, 2, &oh) || s[i + 3] != ':' || !ctl_digits(s + i + 4, 2, &om))
                goto bad;
            if (oh > 23 || om > 59)
                goto bad_range;
            off_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
            i += 6;
        } else {
            goto bad;
        }
    }
    if (i != len)
        goto bad;
    *out_ms = ctl_days_from_civil(y, mo, d) * CTL_MS_PER_DAY +
              ((h * 60 + mi - off_min) * 60 + sec) * 1000 + frac_ms;
    return 0;
bad_range:
    snprintf(err, errlen, "time \"%s\" has a field out of range (month, day, hour, ...)", s);
    return -1;
bad:
    snprintf(err, errlen,
             "bad time \"%s\": expected RFC 3339 (2024-11-28T14:10:37Z), a date (2024-11-28), "
             "Unix milliseconds, \"now\" or -DURATION (-2h)",
             s ? s : "");
    return -1;
}

void ctl_time_format(int64_t ms, int with_ms, char *out, size_t outlen)
{
    int64_t days, rem, y, m, d;
    if (ms < 0) {
        snprintf(out, outlen, "-");
        return;
    }
    days = ms / CTL_MS_PER_DAY;
    rem = ms % CTL_MS_PER_DAY;
    ctl_civil_from_days(days, &y, &m, &d);
    if (with_ms)
        snprintf(out, outlen, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ", (long long)y,
                 (long long)m, (long long)d, (long long)(rem / 3600000),
                 (long long)(rem / 60000 % 60), (long long)(rem / 1000 % 60),
                 (long long)(rem % 1000));
    else
        snprintf(out, outlen, "%04lld-%02lld-%02lld %02lld:%02lld:%02lld", (long long)y,
                 (long long)m, (long long)d, (long long)(rem / 3600000),
                 (long long)(rem / 60000 % 60), (long long)(rem / 1000 % 60));
}
