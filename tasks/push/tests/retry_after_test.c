/* retry_after_test.c: Retry-After as seconds and as each HTTP-date form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "tasks/push/retry_after.h"

/* 1994-11-06 08:49:37 UTC, the RFC's example */
#define EXAMPLE_S 784111777LL

static int64_t parse(const char *v, int64_t now_ms)
{
    int64_t d = -12345;
    if (push_retry_after_parse(v, now_ms, &d) != 0)
        return -1;
    return d;
}

static void test_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse("0", 0), 0);
    assert_int_equal(parse("120", 0), 120000);
    assert_int_equal(parse("  5 \r\n", 0), 5000);
    assert_int_equal(parse("99999999999999999999999", 0), PUSH_RETRY_AFTER_MAX_MS);
    assert_int_equal(parse("1.5", 0), -1);
    assert_int_equal(parse("-3", 0), -1);
    assert_int_equal(parse("12abc", 0), -1);
    assert_int_equal(parse("", 0), -1);
    assert_int_equal(parse(NULL, 0), -1);
}

static void test_dates(void **state)
{
    (void)state;
    int64_t now = (EXAMPLE_S - 30) * 1000;
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT", now), 30000);
    assert_int_equal(parse("Sunday, 06-Nov-94 08:49:37 GMT", now), 30000);
    assert_int_equal(parse("Sun Nov  6 08:49:37 1994", now), 30000);
    assert_int_equal(parse("Sun Nov  6 09:49:37 1994", now), 30000 + 3600000);
    assert_int_equal(parse("Wed Nov 16 08:49:37 1994", now), PUSH_RETRY_AFTER_MAX_MS);
    /* in the past: no wait */
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT", (EXAMPLE_S + 100) * 1000), 0);
    /* far future: capped */
    assert_int_equal(parse("Fri, 01 Jan 2100 00:00:00 GMT", now), PUSH_RETRY_AFTER_MAX_MS);
    /* malformed */
    assert_int_equal(parse("Sun, 6 Nov 1994 08:49:37 GMT", now), -1);
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 UTC", now), -1);
    assert_int_equal(parse("Sun, 06 Foo 1994 08:49:37 GMT", now), -1);
    assert_int_equal(parse("Sun, 06 Nov 1994 25:49:37 GMT", now), -1);
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT trailing", now), -1);
}

static void test_round_trip(void **state)
{
    char d[32];
    (void)state;
    push_http_date(EXAMPLE_S, d);
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    push_http_date(1767225600, d); /* 2026-01-01 */
    assert_int_equal(parse(d, 1767225600LL * 1000 - 7000), 7000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
