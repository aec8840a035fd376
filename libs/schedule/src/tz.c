/* tz.c: TZif (RFC 8536, versions 1-4) and POSIX TZ footer rules, read into an
 * immutable object (see tz.h for why not setenv("TZ") + localtime_r). */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schedule/tz.h"

#define TZ_FILE_MAX (512 * 1024) /* the largest zoneinfo file is ~4 KB (fat ~ 10 KB) */
#define TZ_MAX_TIMES 4096
#define TZ_MAX_TYPES 256

/* One end of daylight time in a POSIX rule: Jn, n or Mm.w.d, at secs. */
typedef struct {
    char kind; /* 'J', 'D' (zero-based day), 'M' */
    int day, week, month;
    int32_t secs; /* local time of day of the change (may be < 0 or > 24h) */
} tz_rule_end_t;

typedef struct {
    bool present;
    int32_t std_off, dst_off; /* seconds east of UTC */
    bool has_dst;
    tz_rule_end_t start, end; /* start in standard time, end in daylight time */
} tz_rule_t;

struct sched_tz_s {
    char name[SCHED_TZ_NAME_MAX];
    size_t ntimes;
    int64_t *times;   /* transition instants, ascending */
    uint8_t *idx;     /* type index in effect from times[i] */
    int32_t *offsets; /* per type, seconds east */
    size_t ntypes;
    tz_rule_t rule; /* after the last transition (the footer) */
};

/* ---- civil dates (H. Hinnant's algorithms) ------------------------------ */

int64_t sched_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void sched_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool tz_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int64_t tz_floordiv(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* ---- POSIX TZ strings --------------------------------------------------- */

/* A zone abbreviation: letters, or <...> with sign/digits. */
static const char *tz_parse_abbr(const char *p)
{
    if (*p == '<') {
        const char *q = strchr(p, '>');
        return q && q - p >= 4 ? q + 1 : NULL;
    }
    const char *s = p;
    while (isalpha((unsigned char)*p))
        p++;
    return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] as seconds; hours up to 167 (RFC 8536 extension). */
static const char *tz_parse_hms(const char *p, int32_t *out)
{
    int sign = 1;
    long h = 0, m = 0, s = 0;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*p))
        return NULL;
    char *e;
    h = strtol(p, &e, 10);
    p = e;
    if (*p == ':') {
        m = strtol(p + 1, &e, 10);
        if (e == p + 1)
            return NULL;
        p = e;
        if (*p == ':') {
            s = strtol(p + 1, &e, 10);
            if (e == p + 1)
                return NULL;
            p = e;
        }
    }
    if (h > 167 || m > 59 || s > 59)
        return NULL;
    *out = (int32_t)(sign * (h * 3600 + m * 60 + s));
    return p;
}

static const char *tz_parse_end(const char *p, tz_rule_end_t *r)
{
    char *e;
    r->secs = 2 * 3600;
    if (*p == 'M') {
        r->kind = 'M';
        r->month = (int)strtol(p + 1, &e, 10);
        if (e == p + 1 || *e != '.')
            return NULL;
        p = e + 1;
        r->week = (int)strtol(p, &e, 10);
        if (e == p || *e != '.')
            return NULL;
        p = e + 1;
        r->day = (int)strtol(p, &e, 10);
        if (e == p || r->month < 1 || r->month > 12 || r->week < 1 || r->week > 5 || r->day < 0 ||
            r->day > 6)
            return NULL;
        p = e;
    } else if (*p == 'J') {
        r->kind = 'J';
        r->day = (int)strtol(p + 1, &e, 10);
        if (e == p + 1 || r->day < 1 || r->day > 365)
            return NULL;
        p = e;
    } else if (isdigit((unsigned char)*p)) {
        r->kind = 'D';
        r->day = (int)strtol(p, &e, 10);
        if (r->day > 365)
            return NULL;
        p = e;
    } else {
        return NULL;
    }
    if (*p == '/') {
        p = tz_parse_hms(p + 1, &r->secs);
        if (!p)
            return NULL;
    }
    return p;
}

static int tz_parse_posix(const char *s, tz_rule_t *r)
{
    int32_t v;
    const char *p = tz_parse_abbr(s);
    memset(r, 0, sizeof(*r));
    if (!p || !(p = tz_parse_hms(p, &v)))
        return -1;
    r->std_off = -v; /* POSIX offsets are west-positive */
    r->dst_off = r->std_off;
    r->present = true;
    if (!*p)
        return 0;
    if (!(p = tz_parse_abbr(p)))
        return -1;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (*p && *p != ',') {
        if (!(p = tz_parse_hms(p, &v)))
            return -1;
        r->dst_off = -v;
    }
    if (*p != ',') /* no rule: POSIX leaves it to the implementation; refuse */
        return -1;
    if (!(p = tz_parse_end(p + 1, &r->start)) || *p != ',')
        return -1;
    if (!(p = tz_parse_end(p + 1, &r->end)) || *p)
        return -1;
    return 0;
}

/* The UTC instant of a rule end in year y, given the offset in effect before. */
static int64_t tz_rule_instant(const tz_rule_end_t *e, int64_t y, int32_t off_before)
{
    int64_t day; /* days since epoch */
    if (e->kind == 'J') {
        int d = e->day; /* 1..365, Feb 29 never counted */
        day = sched_days_from_civil(y, 1, 1) + d - 1 + (tz_leap(y) && d >= 60);
    } else if (e->kind == 'D') {
        day = sched_days_from_civil(y, 1, 1) + e->day;
    } else {
        static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int64_t first = sched_days_from_civil(y, (unsigned)e->month, 1);
        int wd = (int)((first % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
        int64_t d = first + (e->day - wd + 7) % 7 + (int64_t)(e->week - 1) * 7;
        unsigned len = mdays[e->month - 1] + (e->month == 2 && tz_leap(y));
        while (d >= first + len)
            d -= 7;
        day = d;
    }
    return day * 86400 + e->secs - off_before;
}

static int32_t tz_rule_offset(const tz_rule_t *r, int64_t u)
{
    if (!r->has_dst)
        return r->std_off;
    int64_t y;
    unsigned m, d;
    sched_civil_from_days(tz_floordiv(u + r->std_off, 86400), &y, &m, &d);
    /* Check this year's and the neighbours' periods (rules near New Year). */
    for (int64_t yy = y - 1; yy <= y + 1; yy++) {
        int64_t s = tz_rule_instant(&r->start, yy, r->std_off);
        int64_t e = tz_rule_instant(&r->end, yy, r->dst_off);
        if (s < e) {
            if (u >= s && u < e)
                return r->dst_off;
        } else { /* southern hemisphere: daylight time spans New Year */
            int64_t e2 = tz_rule_instant(&r->end, yy + 1, r->dst_off);
            if (u >= s && u < e2)
                return r->dst_off;
        }
    }
    return r->std_off;
}

/* ---- TZif --------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct {
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} tzif_counts_t;

static int tzif_header(const uint8_t *p, size_t len, tzif_counts_t *c)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return -1;
    c->isutcnt = be32(p + 20);
    c->isstdcnt = be32(p + 24);
    c->leapcnt = be32(p + 28);
    c->timecnt = be32(p + 32);
    c->typecnt = be32(p + 36);
    c->charcnt = be32(p + 40);
    if (c->timecnt > TZ_MAX_TIMES || c->typecnt == 0 || c->typecnt > TZ_MAX_TYPES ||
        c->leapcnt > 1000 || c->charcnt > 1000 || c->isutcnt > TZ_MAX_TYPES ||
        c->isstdcnt > TZ_MAX_TYPES)
        return -1;
    return 0;
}

static size_t tzif_block_len(const tzif_counts_t *c, size_t tsize)
{
    return c->timecnt * tsize + c->timecnt + c->typecnt * 6 + c->charcnt +
           c->leapcnt * (tsize + 4) + c->isstdcnt + c->isutcnt;
}

static int tzif_parse(sched_tz_t *tz, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    tzif_counts_t c;
    size_t tsize = 4;
    const uint8_t *p = buf;
    if (tzif_header(p, len, &c)) {
        snprintf(err, errlen, "not a TZif file or counts out of bounds");
        return -1;
    }
    if (buf[4] >= '2') { /* skip the 32-bit block; use the 64-bit one */
        size_t skip = 44 + tzif_block_len(&c, 4);
        if (skip >= len || tzif_header(buf + skip, len - skip, &c)) {
            snprintf(err, errlen, "truncated TZif file (version 2+ header)");
            return -1;
        }
        p = buf + skip;
        len -= skip;
        tsize = 8;
    }
    if (44 + tzif_block_len(&c, tsize) > len) {
        snprintf(err, errlen, "truncated TZif file");
        return -1;
    }
    const uint8_t *t = p + 44, *ix = t + c.timecnt * tsize, *ty = ix + c.timecnt;
    tz->ntimes = c.timecnt;
    tz->ntypes = c.typecnt;
    tz->times = calloc(c.timecnt ? c.timecnt : 1, sizeof(*tz->times));
    tz->idx = calloc(c.timecnt ? c.timecnt : 1, 1);
    tz->offsets = calloc(c.typecnt, sizeof(*tz->offsets));
    if (!tz->times || !tz->idx || !tz->offsets) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c.timecnt; i++) {
        tz->times[i] = tsize == 8 ? be64(t + i * 8) : (int64_t)(int32_t)be32(t + i * 4);
        tz->idx[i] = ix[i];
        if (ix[i] >= c.typecnt || (i && tz->times[i] <= tz->times[i - 1])) {
            snprintf(err, errlen, "bad transition %zu", i);
            return -1;
        }
    }
    for (size_t i = 0; i < c.typecnt; i++)
        tz->offsets[i] = (int32_t)be32(ty + i * 6);
    if (tsize == 8) { /* footer: "\n<POSIX TZ>\n" */
        const uint8_t *f = p + 44 + tzif_block_len(&c, 8);
        const uint8_t *end = p + len;
        if (f < end && *f == '\n') {
            const uint8_t *nl = memchr(f + 1, '\n', (size_t)(end - f - 1));
            char rule[128];
            size_t rl = nl ? (size_t)(nl - f - 1) : 0;
            if (nl && rl > 0 && rl < sizeof(rule)) {
                memcpy(rule, f + 1, rl);
                rule[rl] = '\0';
                if (tz_parse_posix(rule, &tz->rule)) {
                    snprintf(err, errlen, "unsupported footer rule \"%s\"", rule);
                    return -1;
                }
            }
        }
    }
    return 0;
}

static bool tz_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= SCHED_TZ_NAME_MAX || name[0] == '/' || strstr(name, ".."))
        return false;
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("/_+-", *p))
            return false;
    }
    return true;
}

static sched_tz_t *tz_new(const char *name)
{
    sched_tz_t *tz = calloc(1, sizeof(*tz));
    if (tz)
        snprintf(tz->name, sizeof(tz->name), "%s", name);
    return tz;
}

int sched_tz_from_posix(const char *rule, sched_tz_t **out, char *err, size_t errlen)
{
    sched_tz_t *tz = tz_new(rule);
    if (!tz) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (tz_parse_posix(rule, &tz->rule)) {
        snprintf(err, errlen, "\"%s\" is not a POSIX TZ rule with explicit transitions", rule);
        sched_tz_destroy(&tz);
        return -1;
    }
    *out = tz;
    return 0;
}

int sched_tz_load(const char *name, sched_tz_t **out, char *err, size_t errlen)
{
    char path[512], why[160] = "";
    const char *dir = getenv("TZDIR");
    uint8_t *buf = NULL;
    size_t len = 0;
    FILE *f = NULL;
    sched_tz_t *tz = NULL;

    if (!name || !tz_name_ok(name)) {
        snprintf(err, errlen, "\"%s\" is not an IANA time zone name (like Europe/Berlin)",
                 name ? name : "");
        return -1;
    }
    if (!(tz = tz_new(name)) || !(buf = malloc(TZ_FILE_MAX))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    f = fopen(path, "rb");
    if (!f) {
        if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0) {
            tz->rule = (tz_rule_t){.present = true};
            free(buf);
            *out = tz;
            return 0;
        }
        snprintf(err, errlen, "unknown time zone \"%s\" (%s: %s)", name, path, strerror(errno));
        goto fail;
    }
    len = fread(buf, 1, TZ_FILE_MAX, f);
    if (ferror(f) || len == TZ_FILE_MAX) {
        snprintf(err, errlen, "time zone \"%s\": %s: unreadable or larger than %d bytes", name,
                 path, TZ_FILE_MAX);
        goto fail;
    }
    if (tzif_parse(tz, buf, len, why, sizeof(why))) {
        snprintf(err, errlen, "time zone \"%s\": %s: %s", name, path, why);
        goto fail;
    }
    fclose(f);
    free(buf);
    *out = tz;
    return 0;
fail:
    if (f)
        fclose(f);
    free(buf);
    sched_tz_destroy(&tz);
    return -1;
}

void sched_tz_destroy(sched_tz_t **tzp)
{
    sched_tz_t *tz = tzp ? *tzp : NULL;
    if (!tz)
        return;
    free(tz->times);
    free(tz->idx);
    free(tz->offsets);
    free(tz);
    *tzp = NULL;
}

const char *sched_tz_name(const sched_tz_t *tz)
{
    return tz->name;
}

int32_t sched_tz_offset(const sched_tz_t *tz, int64_t u)
{
    if (tz->ntimes == 0 || u < tz->times[0]) {
        if (tz->ntimes == 0 && tz->rule.present)
            return tz_rule_offset(&tz->rule, u);
        return tz->ntypes ? tz->offsets[0] : tz->rule.std_off;
    }
    if (u >= tz->times[tz->ntimes - 1] && tz->rule.present)
        return tz_rule_offset(&tz->rule, u);
    size_t lo = 0, hi = tz->ntimes; /* last i with times[i] <= u */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->times[mid] <= u)
            lo = mid;
        else
            hi = mid;
    }
    return tz->offsets[tz->idx[lo]];
}
