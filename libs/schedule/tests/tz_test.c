/* tz_test.c: TZif loading and offsets (tz.h): zones with and without DST,
 * the footer rule past the last transition, POSIX rules alone, bad names,
 * and queries from several threads at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>

#include "schedule/tz.h"

static int64_t utc_s(int y, unsigned mo, unsigned d, int h, int mi)
{
    return sched_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

static void test_civil(void **state)
{
    int64_t y;
    unsigned m, d;
    (void)state;
    assert_true(sched_days_from_civil(1970, 1, 1) == 0);
    assert_true(sched_days_from_civil(2000, 3, 1) == 11017);
    for (int64_t z = -800000; z < 800000; z += 37) {
        sched_civil_from_days(z, &y, &m, &d);
        assert_true(sched_days_from_civil(y, m, d) == z);
    }
}

static void test_offsets(void **state)
{
    sched_tz_t *tz = NULL;
    char err[256];
    (void)state;
    assert_int_equal(sched_tz_load("Europe/Berlin", &tz, err, sizeof(err)), 0);
    assert_string_equal(sched_tz_name(tz), "Europe/Berlin");
    assert_int_equal(sched_tz_offset(tz, utc_s(2026, 3, 29, 0, 59)), 3600);
    assert_int_equal(sched_tz_offset(tz, utc_s(2026, 3, 29, 1, 0)), 7200);
    assert_int_equal(sched_tz_offset(tz, utc_s(2026, 10, 25, 0, 59)), 7200);
    assert_int_equal(sched_tz_offset(tz, utc_s(2026, 10, 25, 1, 0)), 3600);
    assert_int_equal(sched_tz_offset(tz, utc_s(2090, 8, 1, 0, 0)), 7200); /* footer */
    sched_tz_destroy(&tz);
    assert_null(tz);
    sched_tz_destroy(&tz); /* no-op */
    assert_int_equal(sched_tz_load("Asia/Shanghai", &tz, err, sizeof(err)), 0);
    assert_int_equal(sched_tz_offset(tz, utc_s(2026, 7, 1, 0, 0)), 8 * 3600);
    assert_int_equal(sched_tz_offset(tz, utc_s(2070, 1, 1, 0, 0)), 8 * 3600);
    sched_tz_destroy(&tz);
    assert_int_equal(sched_tz_load("UTC", &tz, err, sizeof(err)), 0);
    assert_int_equal(sched_tz_offset(tz, utc_s(2026, 7, 1, 0, 0)), 0);
    sched_tz_destroy(&tz);
}

static void test_posix_rules(void **state)
{
    sched_tz_t *tz = NULL;
    char err[256];
    (void)state;
    /* southern hemisphere, daylight time across New Year */
    assert_int_equal(sched_tz_from_posix("AEST-10AEDT,M10.1.0,M4.1.0/3", &tz, err, 256), 0);
    assert_int_equal(sched_tz_offset(tz, utc_s(2031, 1, 1, 0, 0)), 11 * 3600);
    assert_int_equal(sched_tz_offset(tz, utc_s(2031, 7, 1, 0, 0)), 10 * 3600);
    sched_tz_destroy(&tz);
    /* negative daylight time (Europe/Dublin's rule) and <+hh> names */
    assert_int_equal(sched_tz_from_posix("IST-1GMT0,M10.5.0,M3.5.0/1", &tz, err, 256), 0);
    assert_int_equal(sched_tz_offset(tz, utc_s(2031, 1, 15, 0, 0)), 0);
    assert_int_equal(sched_tz_offset(tz, utc_s(2031, 7, 15, 0, 0)), 3600);
    sched_tz_destroy(&tz);
    assert_int_equal(sched_tz_from_posix("<+0545>-5:45", &tz, err, 256), 0);
    assert_int_equal(sched_tz_offset(tz, 0), 5 * 3600 + 45 * 60);
    sched_tz_destroy(&tz);
    assert_int_equal(sched_tz_from_posix("EST5EDT", &tz, err, 256), -1);
    assert_int_equal(sched_tz_from_posix("5", &tz, err, 256), -1);
    assert_null(tz);
}

static void test_bad_names(void **state)
{
    sched_tz_t *tz = NULL;
    char err[256];
    (void)state;
    assert_int_equal(sched_tz_load("Mars/Olympus_Mons", &tz, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown time zone \"Mars/Olympus_Mons\""));
    assert_int_equal(sched_tz_load("../../etc/passwd", &tz, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an IANA time zone name"));
    assert_int_equal(sched_tz_load("/etc/localtime", &tz, err, sizeof(err)), -1);
    assert_int_equal(sched_tz_load("", &tz, err, sizeof(err)), -1);
    /* a directory is not a zone */
    assert_int_equal(sched_tz_load("Europe", &tz, err, sizeof(err)), -1);
    assert_null(tz);
}

static void *tz_worker(void *arg)
{
    sched_tz_t *tz = arg;
    long bad = 0;
    for (int i = 0; i < 20000; i++) {
        int64_t t = utc_s(2026, 1, 1, 0, 0) + (int64_t)i * 1800;
        int32_t o = sched_tz_offset(tz, t);
        bad += o != 3600 && o != 7200;
    }
    return (void *)bad;
}

static void test_threads(void **state)
{
    sched_tz_t *tz = NULL;
    char err[256];
    pthread_t th[4];
    (void)state;
    assert_int_equal(sched_tz_load("Europe/Berlin", &tz, err, sizeof(err)), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, tz_worker, tz), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_true(r == NULL);
    }
    sched_tz_destroy(&tz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_civil),       cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_posix_rules), cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
