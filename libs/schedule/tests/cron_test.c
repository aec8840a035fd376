/* cron_test.c: cron parsing and next-run computation (cron.h): ranges, steps,
 * lists, names, Vixie day matching, month ends, Feb 29, time zones and DST
 * changes in Europe/Berlin and America/New_York (spring forward, fall back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "schedule/cron.h"

/* Unix ms of a UTC civil time. */
static int64_t utc(int y, unsigned mo, unsigned d, int h, int mi, int s)
{
    return (sched_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000;
}

static sched_tz_t *zone(const char *name)
{
    sched_tz_t *tz = NULL;
    char err[256];
    if (sched_tz_load(name, &tz, err, sizeof(err)) != 0)
        fail_msg("zone %s: %s", name, err);
    return tz;
}

/* The next firing of expr in zone after `after`. */
static int64_t next_in(const char *expr, const char *zname, int64_t after)
{
    sched_cron_t c;
    char err[256];
    if (sched_cron_parse(expr, &c, err, sizeof(err)) != 0)
        fail_msg("%s: %s", expr, err);
    sched_tz_t *tz = zone(zname);
    int64_t n = sched_cron_next(&c, tz, after);
    sched_tz_destroy(&tz);
    return n;
}

static void assert_parse_error(const char *expr, const char *want)
{
    sched_cron_t c;
    char err[256] = "";
    assert_int_equal(sched_cron_parse(expr, &c, err, sizeof(err)), -1);
    if (!strstr(err, want))
        fail_msg("%s: error \"%s\" does not contain \"%s\"", expr, err, want);
}

static void test_parse_errors(void **state)
{
    (void)state;
    assert_parse_error("0 25 * * *", "field 2 (hour) value 25 out of range 0-23");
    assert_parse_error("60 * * * *", "field 1 (minute) value 60 out of range 0-59");
    assert_parse_error("0 0 0 * *", "field 3 (day-of-month) value 0 out of range 1-31");
    assert_parse_error("0 0 * 13 *", "field 4 (month) value 13 out of range 1-12");
    assert_parse_error("0 0 * * 8", "field 5 (day-of-week) value 8 out of range 0-7");
    assert_parse_error("0 0 * JANX *", "field 4 (month): \"JANX\" is not a number or a name");
    assert_parse_error("0 MON * * *", "field 2 (hour): \"MON\" is not a number");
    assert_parse_error("* * * *", "expected 5 fields");
    assert_parse_error("* * * * * * *", "got 7");
    assert_parse_error("5-3 * * * *", "range 5-3 goes backwards");
    assert_parse_error("*/0 * * * *", "step must be a number 1-59");
    assert_parse_error("1,,2 * * * *", "empty list item");
    assert_parse_error("1, * * * *", "empty list item");
    assert_parse_error("1-x * * * *", "expected a value after '-'");
    assert_parse_error("61 * * * * *", "field 1 (second) value 61 out of range 0-59");
    assert_parse_error("99999999999 * * * *", "out of range");
    assert_parse_error("@reboot", "unknown \"@reboot\"");
    assert_parse_error("", "expected 5 fields");
}

static void test_parse_sets(void **state)
{
    sched_cron_t c;
    char err[256];
    (void)state;
    assert_int_equal(sched_cron_parse("*/15 9-17/4 1,15 jan-MAR,Dec mon-fri", &c, err, 256), 0);
    assert_true(c.minute == (1ull << 0 | 1ull << 15 | 1ull << 30 | 1ull << 45));
    assert_int_equal(c.hour, 1u << 9 | 1u << 13 | 1u << 17);
    assert_int_equal(c.dom, 1u << 1 | 1u << 15);
    assert_int_equal(c.month, 1u << 1 | 1u << 2 | 1u << 3 | 1u << 12);
    assert_int_equal(c.dow, 0x3e);
    assert_false(c.dom_star);
    assert_false(c.dow_star);
    assert_true(c.second == 1); /* 5 fields: at second 0 */
    /* 7 and 0 are Sunday; "a/n" runs to the maximum */
    assert_int_equal(sched_cron_parse("0 0 * * 5-7", &c, err, 256), 0);
    assert_int_equal(c.dow, 1u << 0 | 1u << 5 | 1u << 6);
    assert_int_equal(sched_cron_parse("10/20 * * * *", &c, err, 256), 0);
    assert_true(c.minute == (1ull << 10 | 1ull << 30 | 1ull << 50));
    assert_true(c.hour_star);
    assert_int_equal(sched_cron_parse("*/5 * * * * *", &c, err, 256), 0);
    assert_true(c.has_seconds);
    assert_int_equal(__builtin_popcountll(c.second), 12);
}

static void test_utc_basics(void **state)
{
    (void)state;
    /* every 15 minutes; strictly after: at a slot, the next one */
    assert_true(next_in("*/15 * * * *", "UTC", utc(2026, 5, 4, 10, 7, 0)) ==
                utc(2026, 5, 4, 10, 15, 0));
    assert_true(next_in("*/15 * * * *", "UTC", utc(2026, 5, 4, 10, 15, 0)) ==
                utc(2026, 5, 4, 10, 30, 0));
    assert_true(next_in("*/15 * * * *", "UTC", utc(2026, 5, 4, 10, 15, 0) - 1) ==
                utc(2026, 5, 4, 10, 15, 0));
    /* lists, ranges with steps, across midnight */
    assert_true(next_in("0 8,12,18 * * *", "UTC", utc(2026, 5, 4, 18, 0, 1)) ==
                utc(2026, 5, 5, 8, 0, 0));
    /* weekdays 2026-05-08 is a Friday: next is Monday the 11th */
    assert_true(next_in("30 9-17/2 * * MON-FRI", "UTC", utc(2026, 5, 8, 17, 31, 0)) ==
                utc(2026, 5, 11, 9, 30, 0));
    /* names in month and weekday, case-insensitive */
    assert_true(next_in("0 0 1 jan,JUL *", "UTC", utc(2026, 1, 1, 0, 0, 0)) ==
                utc(2026, 7, 1, 0, 0, 0));
    /* seconds form */
    assert_true(next_in("*/5 * * * * *", "UTC", utc(2026, 5, 4, 10, 0, 3) + 500) ==
                utc(2026, 5, 4, 10, 0, 5));
    assert_true(next_in("58 59 23 31 12 *", "UTC", utc(2026, 12, 31, 23, 59, 58)) ==
                utc(2027, 12, 31, 23, 59, 58));
    /* macros; @weekly is Sunday 00:00 (2026-05-10 is a Sunday) */
    assert_true(next_in("@hourly", "UTC", utc(2026, 5, 4, 10, 7, 0)) == utc(2026, 5, 4, 11, 0, 0));
    assert_true(next_in("@daily", "UTC", utc(2026, 5, 4, 10, 7, 0)) == utc(2026, 5, 5, 0, 0, 0));
    assert_true(next_in("@weekly", "UTC", utc(2026, 5, 4, 10, 7, 0)) == utc(2026, 5, 10, 0, 0, 0));
    assert_true(next_in("@monthly", "UTC", utc(2026, 5, 4, 10, 7, 0)) == utc(2026, 6, 1, 0, 0, 0));
    assert_true(next_in("@yearly", "UTC", utc(2026, 5, 4, 10, 7, 0)) == utc(2027, 1, 1, 0, 0, 0));
    /* before 1970 works too */
    assert_true(next_in("0 12 * * *", "UTC", utc(1969, 12, 31, 13, 0, 0)) ==
                utc(1970, 1, 1, 12, 0, 0));
}

static void test_vixie_days(void **state)
{
    (void)state;
    /* both restricted: the 13th OR a Monday (2026-02-13 is a Friday) */
    assert_true(next_in("0 0 13 * MON", "UTC", utc(2026, 2, 10, 0, 0, 0)) ==
                utc(2026, 2, 13, 0, 0, 0));
    assert_true(next_in("0 0 13 * MON", "UTC", utc(2026, 2, 13, 0, 0, 0)) ==
                utc(2026, 2, 16, 0, 0, 0));
    /* a field starting with '*' makes it AND: odd days that are Mondays */
    assert_true(next_in("0 0 */2 * MON", "UTC", utc(2026, 2, 1, 0, 0, 0)) ==
                utc(2026, 2, 9, 0, 0, 0));
    /* day of week alone */
    assert_true(next_in("0 0 * * 7", "UTC", utc(2026, 2, 2, 0, 0, 0)) == utc(2026, 2, 8, 0, 0, 0));
}

static void test_month_ends_and_feb29(void **state)
{
    (void)state;
    assert_true(next_in("0 0 31 * *", "UTC", utc(2026, 1, 31, 0, 0, 0)) ==
                utc(2026, 3, 31, 0, 0, 0));
    assert_true(next_in("0 0 30 * *", "UTC", utc(2026, 1, 30, 0, 0, 0)) ==
                utc(2026, 3, 30, 0, 0, 0));
    assert_true(next_in("0 0 29 2 *", "UTC", utc(2025, 3, 1, 0, 0, 0)) ==
                utc(2028, 2, 29, 0, 0, 0));
    /* 2100 is not a leap year, 2400 is */
    assert_true(next_in("0 0 29 2 *", "UTC", utc(2096, 3, 1, 0, 0, 0)) ==
                utc(2104, 2, 29, 0, 0, 0));
    assert_true(next_in("0 0 28-31 2 *", "UTC", utc(2027, 2, 28, 0, 0, 0)) ==
                utc(2028, 2, 28, 0, 0, 0));
    /* never: February 30th */
    assert_true(next_in("0 0 30 2 *", "UTC", utc(2026, 1, 1, 0, 0, 0)) == -1);
    assert_true(next_in("0 0 31 4,6,9,11 *", "UTC", utc(2026, 1, 1, 0, 0, 0)) == -1);
}

static void test_zones(void **state)
{
    (void)state;
    /* Asia/Shanghai is UTC+8 without DST: 03:00 local is 19:00 UTC the day before */
    assert_true(next_in("0 3 * * *", "Asia/Shanghai", utc(2026, 1, 1, 0, 0, 0)) ==
                utc(2026, 1, 1, 19, 0, 0));
    /* the day of week is the local one: Monday 01:00 in Shanghai is Sunday in UTC */
    assert_true(next_in("0 1 * * MON", "Asia/Shanghai", utc(2026, 5, 6, 0, 0, 0)) ==
                utc(2026, 5, 10, 17, 0, 0));
    /* Berlin winter (+1) and summer (+2), and past the last transition of the file
     * (the footer rule) */
    assert_true(next_in("0 12 * * *", "Europe/Berlin", utc(2026, 1, 15, 0, 0, 0)) ==
                utc(2026, 1, 15, 11, 0, 0));
    assert_true(next_in("0 12 * * *", "Europe/Berlin", utc(2060, 7, 1, 0, 0, 0)) ==
                utc(2060, 7, 1, 10, 0, 0));
    /* southern hemisphere: Sydney is +11 in January (daylight time) and +10 in July */
    assert_true(next_in("0 12 * * *", "Australia/Sydney", utc(2026, 1, 14, 12, 0, 0)) ==
                utc(2026, 1, 15, 1, 0, 0));
    assert_true(next_in("0 12 * * *", "Australia/Sydney", utc(2026, 7, 14, 12, 0, 0)) ==
                utc(2026, 7, 15, 2, 0, 0));
    /* a half-hour zone */
    assert_true(next_in("0 0 * * *", "Asia/Kolkata", utc(2026, 3, 1, 0, 0, 0)) ==
                utc(2026, 3, 1, 18, 30, 0));
}

/* Europe/Berlin 2026: 29 March 02:00 CET -> 03:00 CEST (01:00 UTC);
 * 25 October 03:00 CEST -> 02:00 CET (01:00 UTC). */
static void test_dst_berlin(void **state)
{
    (void)state;
    /* 02:30 does not exist on 29 March: fires at the change (03:00 CEST), once */
    assert_true(next_in("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 2, 0, 0)) ==
                utc(2026, 3, 29, 1, 0, 0));
    assert_true(next_in("30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 1, 0, 0)) ==
                utc(2026, 3, 30, 0, 30, 0));
    /* an every-minute job jumps from 01:59 CET to 03:00 CEST */
    assert_true(next_in("* * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 59, 0)) ==
                utc(2026, 3, 29, 1, 0, 0));
    assert_true(next_in("* * * * *", "Europe/Berlin", utc(2026, 3, 29, 1, 0, 0)) ==
                utc(2026, 3, 29, 1, 1, 0));
    /* 02:30 happens twice on 25 October: a fixed-hour job fires at the first one only */
    assert_true(next_in("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12, 0, 0)) ==
                utc(2026, 10, 25, 0, 30, 0));
    assert_true(next_in("30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 30, 0)) ==
                utc(2026, 10, 26, 1, 30, 0));
    /* ... also when the search starts inside the repeated hour */
    assert_true(next_in("30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 1, 10, 0)) ==
                utc(2026, 10, 26, 1, 30, 0));
    /* an every-30-minutes job keeps its interval through the repeated hour */
    int64_t t = utc(2026, 10, 25, 0, 0, 0);
    for (int i = 1; i <= 6; i++) {
        t = next_in("*/30 * * * *", "Europe/Berlin", t);
        assert_true(t == utc(2026, 10, 25, 0, 0, 0) + (int64_t)i * 30 * 60 * 1000);
    }
}

/* America/New_York 2026: 8 March 02:00 EST -> 03:00 EDT (07:00 UTC);
 * 1 November 02:00 EDT -> 01:00 EST (06:00 UTC). */
static void test_dst_new_york(void **state)
{
    (void)state;
    assert_true(next_in("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12, 0, 0)) ==
                utc(2026, 3, 8, 7, 0, 0));
    assert_true(next_in("30 2 * * *", "America/New_York", utc(2026, 3, 8, 7, 0, 0)) ==
                utc(2026, 3, 9, 6, 30, 0));
    assert_true(next_in("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12, 0, 0)) ==
                utc(2026, 11, 1, 5, 30, 0));
    assert_true(next_in("30 1 * * *", "America/New_York", utc(2026, 11, 1, 5, 30, 0)) ==
                utc(2026, 11, 2, 6, 30, 0));
    /* hourly through the repeated hour: 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST */
    assert_true(next_in("0 * * * *", "America/New_York", utc(2026, 11, 1, 4, 0, 0)) ==
                utc(2026, 11, 1, 5, 0, 0));
    assert_true(next_in("0 * * * *", "America/New_York", utc(2026, 11, 1, 5, 0, 0)) ==
                utc(2026, 11, 1, 6, 0, 0));
    assert_true(next_in("0 * * * *", "America/New_York", utc(2026, 11, 1, 6, 0, 0)) ==
                utc(2026, 11, 1, 7, 0, 0));
    /* the next day at local midnight is 05:00 UTC again (EST) */
    assert_true(next_in("@daily", "America/New_York", utc(2026, 11, 1, 5, 0, 0)) ==
                utc(2026, 11, 2, 5, 0, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),         cmocka_unit_test(test_parse_sets),
        cmocka_unit_test(test_utc_basics),           cmocka_unit_test(test_vixie_days),
        cmocka_unit_test(test_month_ends_and_feb29), cmocka_unit_test(test_zones),
        cmocka_unit_test(test_dst_berlin),           cmocka_unit_test(test_dst_new_york),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
