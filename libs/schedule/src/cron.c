/* cron.c: parsing cron expressions into bit sets and finding the next firing
 * in a time zone (rules in cron.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "schedule/cron.h"

typedef struct {
    const char *name;
    int min, max;
    const char *const *names; /* names[i] is value min+i; NULL: numbers only */
} cron_field_t;

static const char *const cron_months[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const cron_days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW, F_N };

static const cron_field_t cron_fields[F_N] = {
    {"second", 0, 59, NULL},       {"minute", 0, 59, NULL},       {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL}, {"month", 1, 12, cron_months}, {"day-of-week", 0, 7, cron_days},
};

static int64_t cron_floordiv(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* A number or a name of field f; *end after it. -1 when neither. */
static int cron_value(const cron_field_t *f, const char *s, const char **end, long *out)
{
    if (isdigit((unsigned char)*s)) {
        char *e;
        long v = strtol(s, &e, 10);
        if (e - s > 4)
            v = 100000; /* out of range for every field, without overflow */
        *end = e;
        *out = v;
        return 0;
    }
    for (int i = 0; f->names && f->names[i]; i++) {
        if (strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
            *end = s + 3;
            *out = f->min + i;
            return 0;
        }
    }
    return -1;
}

/* One field's text (NUL-terminated) into a bit mask. pos: 1-based position. */
static int cron_field_parse(const cron_field_t *f, int pos, const char *text, uint64_t *mask,
                            bool *star, char *err, size_t errlen)
{
    char item[SCHED_CRON_MAX];
    const char *p = text;
    *mask = 0;
    *star = text[0] == '*';
    while (*p) {
        size_t n = strcspn(p, ",");
        long lo, hi, step = 1;
        const char *q, *e;
        if (n == 0 || n >= sizeof(item)) {
            snprintf(err, errlen, "field %d (%s): empty list item in \"%s\"", pos, f->name, text);
            return -1;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        q = item;
        if (*q == '*') {
            lo = f->min;
            hi = f->max;
            q++;
        } else {
            if (cron_value(f, q, &e, &lo)) {
                snprintf(err, errlen, "field %d (%s): \"%s\" is not a number%s", pos, f->name, item,
                         f->names ? " or a name" : "");
                return -1;
            }
            q = e;
            hi = lo;
            if (*q == '-') {
                if (cron_value(f, q + 1, &e, &hi)) {
                    snprintf(err, errlen, "field %d (%s): \"%s\": expected a value after '-'", pos,
                             f->name, item);
                    return -1;
                }
                q = e;
            } else if (*q == '/') {
                hi = f->max; /* "a/n": from a to the maximum */
            }
        }
        if (*q == '/') {
            char *se;
            step = strtol(q + 1, &se, 10);
            if (se == q + 1 || *se || step < 1 || step > f->max) {
                snprintf(err, errlen, "field %d (%s): \"%s\": step must be a number 1-%d", pos,
                         f->name, item, f->max);
                return -1;
            }
            q = se;
        }
        if (*q) {
            snprintf(err, errlen, "field %d (%s): unexpected \"%s\" in \"%s\"", pos, f->name, q,
                     item);
            return -1;
        }
        if (lo < f->min || lo > f->max || hi < f->min || hi > f->max) {
            snprintf(err, errlen, "field %d (%s) value %ld out of range %d-%d", pos, f->name,
                     lo < f->min || lo > f->max ? lo : hi, f->min, f->max);
            return -1;
        }
        if (lo > hi) {
            snprintf(err, errlen, "field %d (%s): range %ld-%ld goes backwards", pos, f->name, lo,
                     hi);
            return -1;
        }
        for (long v = lo; v <= hi; v += step)
            *mask |= 1ull << v;
        p += n;
        if (*p == ',') {
            p++;
            if (!*p) {
                snprintf(err, errlen, "field %d (%s): empty list item in \"%s\"", pos, f->name,
                         text);
                return -1;
            }
        }
    }
    return 0;
}

static const struct {
    const char *name, *expr;
} cron_macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

int sched_cron_parse(const char *expr, sched_cron_t *out, char *err, size_t errlen)
{
    char buf[SCHED_CRON_MAX], *tok[F_N + 1], *save = NULL;
    int n = 0;
    sched_cron_t c = {0};

    if (!expr || strlen(expr) >= sizeof(buf)) {
        snprintf(err, errlen, "expected a cron expression of at most %d characters",
                 SCHED_CRON_MAX - 1);
        return -1;
    }
    while (isspace((unsigned char)*expr))
        expr++;
    if (*expr == '@') {
        size_t i;
        for (i = 0; i < sizeof(cron_macros) / sizeof(cron_macros[0]); i++) {
            if (strcasecmp(expr, cron_macros[i].name) == 0)
                return sched_cron_parse(cron_macros[i].expr, out, err, errlen);
        }
        snprintf(err, errlen,
                 "unknown \"%s\" (expected @yearly, @annually, @monthly, @weekly, @daily, "
                 "@midnight or @hourly)",
                 expr);
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", expr);
    for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (n == F_N + 1)
            break;
        tok[n++] = t;
    }
    if (n != 5 && n != 6) {
        snprintf(err, errlen,
                 "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second "
                 "first), got %d in \"%s\"",
                 n > F_N ? F_N + 1 : n, expr);
        return -1;
    }
    c.has_seconds = n == 6;
    int first = n == 6 ? F_SEC : F_MIN;
    uint64_t m[F_N] = {1, 0, 0, 0, 0, 0}; /* 5 fields: second 0 */
    bool star[F_N] = {0};
    for (int i = first; i < F_N; i++) {
        if (cron_field_parse(&cron_fields[i], i - first + 1, tok[i - first], &m[i], &star[i], err,
                             errlen))
            return -1;
    }
    if (m[F_DOW] & (1u << 7))
        m[F_DOW] = (m[F_DOW] | 1u) & 0x7f; /* 7 is Sunday too */
    c.second = m[F_SEC];
    c.minute = m[F_MIN];
    c.hour = (uint32_t)m[F_HOUR];
    c.dom = (uint32_t)m[F_DOM];
    c.month = (uint16_t)m[F_MON];
    c.dow = (uint8_t)m[F_DOW];
    c.dom_star = star[F_DOM];
    c.dow_star = star[F_DOW];
    c.hour_star = c.hour == 0xffffffu;
    *out = c;
    return 0;
}

/* ---- next firing -------------------------------------------------------- */

/* Lowest set bit of mask at or above from, or -1. */
static int cron_next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    mask &= ~0ull << from;
    return mask ? __builtin_ctzll(mask) : -1;
}

static bool cron_day_ok(const sched_cron_t *c, int64_t days, unsigned d)
{
    int wd = (int)((days % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    bool dom_ok = (c->dom >> d) & 1, dow_ok = (c->dow >> wd) & 1;
    if (c->dom_star || c->dow_star)
        return dom_ok && dow_ok;
    return dom_ok || dow_ok;
}

/* The first local (civil) second >= l that matches, or -1 past limit. */
static int64_t cron_next_civil(const sched_cron_t *c, int64_t l, int64_t limit)
{
    while (l <= limit) {
        int64_t days = cron_floordiv(l, 86400), y;
        int sod = (int)(l - days * 86400), b;
        unsigned m, d;
        sched_civil_from_days(days, &y, &m, &d);
        if (!((c->month >> m) & 1)) {
            l = sched_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * 86400;
            continue;
        }
        if (!cron_day_ok(c, days, d)) {
            l = (days + 1) * 86400;
            continue;
        }
        int h = sod / 3600, mi = sod / 60 % 60, s = sod % 60;
        if ((b = cron_next_bit(c->hour, h)) != h) {
            l = b < 0 ? (days + 1) * 86400 : days * 86400 + b * 3600;
            continue;
        }
        if ((b = cron_next_bit(c->minute, mi)) != mi) {
            l = b < 0 ? days * 86400 + (h + 1) * 3600 : days * 86400 + h * 3600 + b * 60;
            continue;
        }
        if ((b = cron_next_bit(c->second, s)) != s) {
            l = b < 0 ? l - s + 60 : l - s + b;
            continue;
        }
        return l;
    }
    return -1;
}

/* The instant of the offset change in (lo, hi] where offset(lo) != offset(hi). */
static int64_t cron_transition(const sched_tz_t *tz, int64_t lo, int64_t hi)
{
    int32_t olo = sched_tz_offset(tz, lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sched_tz_offset(tz, mid) == olo)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

int64_t sched_cron_next(const sched_cron_t *c, const sched_tz_t *tz, int64_t after_ms)
{
    int64_t from = cron_floordiv(after_ms, 1000) + 1; /* the first eligible second */
    int32_t o1 = sched_tz_offset(tz, from), o2 = sched_tz_offset(tz, from + 86400);
    int64_t l = from + (o1 < o2 ? o1 : o2); /* no later instant has an earlier local time */
    int64_t limit = l + (int64_t)SCHED_CRON_SEARCH_YEARS * 366 * 86400;
    int64_t best = -1;

    while ((l = cron_next_civil(c, l, limit)) >= 0) {
        int32_t oa = sched_tz_offset(tz, l - 86400), ob = sched_tz_offset(tz, l + 86400);
        int32_t omax = oa > ob ? oa : ob;
        if (best >= 0 && l - omax >= best)
            break; /* every later local time maps past best */
        int64_t u[2];
        int nu = 0;
        if (sched_tz_offset(tz, l - oa) == oa)
            u[nu++] = l - oa;
        if (ob != oa && sched_tz_offset(tz, l - ob) == ob)
            u[nu++] = l - ob;
        if (nu == 2 && u[1] < u[0]) {
            int64_t t = u[0];
            u[0] = u[1];
            u[1] = t;
        }
        if (nu == 2 && !c->hour_star)
            nu = 1;              /* a repeated local time fires at its first occurrence only */
        if (nu == 0 && oa != ob) /* skipped local time: the change itself */
            u[nu++] = cron_transition(tz, l - 86400, l + 86400);
        for (int i = 0; i < nu; i++) {
            if (u[i] >= from && (best < 0 || u[i] < best)) {
                best = u[i];
                break;
            }
        }
        if (best >= 0)
            limit = best + 2 * 86400; /* bounds the search for an earlier mapping */
        l++;
    }
    return best < 0 ? -1 : best * 1000;
}
