/* backoff_test.c: the backoff policy: doubling, cap, jitter bounds, no overflow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dispatch/dispatch.h"

static void test_doubling_and_cap(void **state)
{
    (void)state;
    assert_int_equal(dispatch_backoff_ms(100, 2000, 0), 100);
    assert_int_equal(dispatch_backoff_ms(100, 2000, 1), 200);
    assert_int_equal(dispatch_backoff_ms(100, 2000, 4), 1600);
    assert_int_equal(dispatch_backoff_ms(100, 2000, 5), 2000);
    assert_int_equal(dispatch_backoff_ms(1000, 30000, 60), 30000); /* no overflow */
    assert_int_equal(dispatch_backoff_ms(1000, 30000, UINT32_MAX), 30000);
    assert_int_equal(dispatch_backoff_ms(0, 10, 0), 1);
}

static void test_jitter_bounds(void **state)
{
    unsigned seed = 7;
    int64_t lo = INT64_MAX, hi = 0;
    (void)state;
    for (int i = 0; i < 100000; i++) {
        int64_t v = dispatch_backoff_jitter_ms(1000, 30000, 2, 0.2, &seed);
        assert_true(v >= 3200 && v <= 4800);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    /* the spread is really used, not a constant */
    assert_true(lo < 3300);
    assert_true(hi > 4700);
    for (int i = 0; i < 1000; i++) /* never above the cap */
        assert_true(dispatch_backoff_jitter_ms(1000, 30000, 10, 0.5, &seed) <= 30000);
    assert_int_equal(dispatch_backoff_jitter_ms(1000, 30000, 1, 0, &seed), 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubling_and_cap),
        cmocka_unit_test(test_jitter_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
