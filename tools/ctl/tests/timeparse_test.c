/* timeparse_test.c: --since/--until time parsing and UTC formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <string.h>

#include "tools/ctl/timeparse.h"

#define NOW 1732803037123LL /* 2024-11-28T14:10:37.123Z */

static int64_t parse_ok(const char *s)
{
    char err[256];
    int64_t ms = -1;
    if (ctl_time_parse(s, NOW, &ms, err, sizeof(err)) != 0)
        fail_msg("\"%s\" refused: %s", s, err);
    return ms;
}

static void parse_bad(const char *s, const char *needle)
{
    char err[256] = "";
    int64_t ms = 0;
    if (ctl_time_parse(s, NOW, &ms, err, sizeof(err)) == 0)
        fail_msg("\"%s\" accepted as %lld", s, (long long)ms);
    if (!strstr(err, needle))
        fail_msg("\"%s\": error \"%s\" does not mention \"%s\"", s, err, needle);
}

static void test_rfc3339(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("2024-11-28T14:10:37Z"), 1732803037000LL);
    assert_int_equal(parse_ok("2024-11-28T14:10:37.123Z"), NOW);
    assert_int_equal(parse_ok("2024-11-28t14:10:37.1234567z"), NOW);
    assert_int_equal(parse_ok("2024-11-28 14:10:37.1Z"), 1732803037100LL);
    assert_int_equal(parse_ok("2024-11-28T15:10:37.123+01:00"), NOW);
    assert_int_equal(parse_ok("2024-11-28T09:40:37.123-04:30"), NOW);
    assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse_ok("2024-02-29T00:00:00Z"), 1709164800000LL);
    assert_int_equal(parse_ok("2000-02-29"), 951782400000LL);
    assert_int_equal(parse_ok("2024-11-28"), 1732752000000LL);
    assert_int_equal(parse_ok("2016-12-31T23:59:60Z"), parse_ok("2016-12-31T23:59:59Z"));
}

static void test_other_forms(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1732803037123"), NOW);
    assert_int_equal(parse_ok("now"), NOW);
    assert_int_equal(parse_ok("-2h"), NOW - 7200000);
    assert_int_equal(parse_ok("-30m"), NOW - 1800000);
    assert_int_equal(parse_ok("-90s"), NOW - 90000);
    assert_int_equal(parse_ok("-7d"), NOW - 7 * 86400000LL);
    assert_int_equal(parse_ok("-500ms"), NOW - 500);
}

static void test_errors(void **state)
{
    (void)state;
    parse_bad("", "expected RFC 3339");
    parse_bad("yesterday", "expected RFC 3339");
    parse_bad("1732803037", "Unix seconds");
    parse_bad("2024-13-01", "out of range");
    parse_bad("2023-02-29", "out of range");
    parse_bad("2024-04-31T00:00:00Z", "out of range");
    parse_bad("2024-11-28T24:00:00Z", "out of range");
    parse_bad("2024-11-28T14:10:37", "expected RFC 3339"); /* no zone */
    parse_bad("2024-11-28T14:10:37.Z", "expected RFC 3339");
    parse_bad("2024-11-28T14:10:37+0100", "expected RFC 3339");
    parse_bad("2024-11-28T14:10:37+25:00", "out of range");
    parse_bad("2024-11-28T14:10Z", "expected RFC 3339");
    parse_bad("2024-11-28Z", "expected RFC 3339");
    parse_bad("-2w", "bad relative time");
    parse_bad("-2", "bad relative time");
    parse_bad("99999999999999999999", "expected RFC 3339");
}

static void test_format(void **state)
{
    (void)state;
    char buf[CTL_TIME_MAX];
    ctl_time_format(NOW, 1, buf, sizeof(buf));
    assert_string_equal(buf, "2024-11-28T14:10:37.123Z");
    ctl_time_format(NOW, 0, buf, sizeof(buf));
    assert_string_equal(buf, "2024-11-28 14:10:37");
    ctl_time_format(0, 1, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    ctl_time_format(-1, 1, buf, sizeof(buf));
    assert_string_equal(buf, "-");
    ctl_time_format(951782400000LL + 86399999, 1, buf, sizeof(buf));
    assert_string_equal(buf, "2000-02-29T23:59:59.999Z");
    /* what is printed parses back */
    for (int64_t t = 0; t < 4102444800000LL; t += 86400000LL * 97 + 3600123) {
        ctl_time_format(t, 1, buf, sizeof(buf));
        assert_int_equal(parse_ok(buf), t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_other_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
