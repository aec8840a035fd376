/* breaker_test.c: the circuit breaker's states with a driven clock:
 * threshold, open period, half-open probes (bounded), closing after enough
 * successes, re-opening with a doubled period on a failed probe (capped),
 * late results of non-probes ignored, released probe slots, many threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "tasks/audit/breaker.h"

static audit_breaker_t *mk(void)
{
    audit_breaker_conf_t c = {
        .failure_threshold = 3, .open_ms = 1000, .open_max_ms = 3000, .half_open_probes = 2};
    audit_breaker_t *b = audit_breaker_new(&c);
    assert_non_null(b);
    return b;
}

static void test_open_and_close(void **state)
{
    audit_breaker_t *b = mk();
    bool probe;
    int64_t wait;
    (void)state;
    assert_true(audit_breaker_allow(b, 0, &probe, &wait));
    assert_false(probe);
    assert_false(audit_breaker_failure(b, 0, false));
    assert_false(audit_breaker_failure(b, 0, false));
    assert_false(audit_breaker_success(b, 0, false)); /* resets the run */
    assert_false(audit_breaker_failure(b, 0, false));
    assert_false(audit_breaker_failure(b, 0, false));
    assert_true(audit_breaker_failure(b, 10, false)); /* third in a row: open */
    assert_int_equal(audit_breaker_state(b, 10), AUDIT_BREAKER_OPEN);
    assert_false(audit_breaker_allow(b, 500, &probe, &wait));
    assert_int_equal(wait, 510);
    /* a late non-probe success does not close it */
    assert_false(audit_breaker_success(b, 600, false));
    assert_int_equal(audit_breaker_state(b, 600), AUDIT_BREAKER_OPEN);
    /* half-open at 1010: two probes, a third is refused */
    assert_true(audit_breaker_allow(b, 1010, &probe, &wait));
    assert_true(probe);
    assert_int_equal(audit_breaker_state(b, 1010), AUDIT_BREAKER_HALF_OPEN);
    assert_true(audit_breaker_allow(b, 1011, &probe, &wait));
    assert_true(probe);
    assert_false(audit_breaker_allow(b, 1012, &probe, &wait));
    assert_true(wait >= 1);
    assert_false(audit_breaker_success(b, 1100, true));
    assert_true(audit_breaker_success(b, 1101, true)); /* second success: closed */
    assert_int_equal(audit_breaker_state(b, 1101), AUDIT_BREAKER_CLOSED);
    assert_true(audit_breaker_allow(b, 1102, &probe, &wait));
    assert_false(probe);
    audit_breaker_destroy(&b);
    assert_null(b);
    audit_breaker_destroy(&b);
}

static void test_failed_probe_doubles(void **state)
{
    audit_breaker_t *b = mk();
    bool probe;
    int64_t wait, t = 0;
    (void)state;
    for (int i = 0; i < 3; i++)
        audit_breaker_failure(b, t, false);
    /* each failed probe: open again for 2000, then 3000 (the cap), 3000 */
    int64_t want[] = {2000, 3000, 3000};
    t = 1000;
    for (int round = 0; round < 3; round++) {
        assert_true(audit_breaker_allow(b, t, &probe, &wait));
        assert_true(probe);
        assert_true(audit_breaker_failure(b, t, true));
        assert_false(audit_breaker_allow(b, t, &probe, &wait));
        assert_int_equal(wait, want[round]);
        t += want[round];
    }
    /* a released probe gives its slot back */
    assert_true(audit_breaker_allow(b, t, &probe, &wait));
    assert_true(audit_breaker_allow(b, t, &probe, &wait));
    assert_false(audit_breaker_allow(b, t, &probe, &wait));
    audit_breaker_release(b, true);
    assert_true(audit_breaker_allow(b, t, &probe, &wait));
    assert_true(probe);
    /* success after recovery resets the open period to the first one */
    audit_breaker_success(b, t, true);
    audit_breaker_success(b, t, true);
    assert_int_equal(audit_breaker_state(b, t), AUDIT_BREAKER_CLOSED);
    for (int i = 0; i < 3; i++)
        audit_breaker_failure(b, t, false);
    assert_false(audit_breaker_allow(b, t, &probe, &wait));
    assert_int_equal(wait, 1000);
    audit_breaker_destroy(&b);
}

static void *hammer(void *arg)
{
    audit_breaker_t *b = arg;
    for (int i = 0; i < 20000; i++) {
        bool probe;
        int64_t wait;
        int64_t now = i / 10;
        if (audit_breaker_allow(b, now, &probe, &wait)) {
            if (i % 3 == 0)
                audit_breaker_failure(b, now, probe);
            else
                audit_breaker_success(b, now, probe);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    audit_breaker_t *b = mk();
    pthread_t th[4];
    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, b), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    audit_breaker_state_t s = audit_breaker_state(b, 1 << 30);
    assert_true(s == AUDIT_BREAKER_CLOSED || s == AUDIT_BREAKER_HALF_OPEN);
    audit_breaker_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_close),
        cmocka_unit_test(test_failed_probe_doubles),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
