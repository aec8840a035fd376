/* outcome_emit_test.c: the outcome emitter (libs/dispatch outcome.h) never
 * blocks and never grows past outcomes.max_pending: against a producer whose
 * broker does not exist, emitting many events returns at once, queues
 * max_pending of them and counts the rest as dropped; events with count 0
 * are not sent; after stop everything is dropped as "stopped"; a disabled
 * emitter sends nothing. No services needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dispatch/outcome.h"
#include "infra/config.h"
#include "infra/metrics.h"

static double series(metrics_registry_t *reg, const char *reason)
{
    static const char *const l[] = {"reason"};
    if (!reason)
        return metrics_series_value(metrics_series_get0(
            metrics_counter_new(reg, "imtask_outcomes_emitted_total",
                                "Outcome events queued for the outcome topic", 0, NULL)));
    metrics_family_t *f = metrics_counter_new(
        reg, "imtask_outcomes_dropped_total",
        "Outcome events dropped (never blocking a task): stopped, max_pending, queue_full, "
        "delivery, bad_event",
        1, l);
    return metrics_series_value(metrics_series_get1(f, reason));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static mq_producer_t *dead_producer(void)
{
    char err[512];
    const char *extra[] = {"message.timeout.ms", "600000", NULL};
    rd_kafka_conf_t *conf = mq_conf_build("127.0.0.1:1", NULL, extra, err, sizeof(err));
    assert_non_null(conf);
    mq_producer_t *p = mq_producer_new(conf, err, sizeof(err));
    assert_non_null(p);
    return p;
}

static void test_bounded_and_never_blocking(void **st)
{
    (void)st;
    char err[CFG_ERR_MAX];
    cfg_t *cfg = cfg_load_string("outcomes:\n  max_pending: 50\n  topic: outcome-emit-test\n",
                                 "test.yaml", err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(dispatch_outcome_configure(cfg, err, sizeof(err)), 0);
    assert_string_equal(dispatch_outcome_topic(), "outcome-emit-test");
    metrics_registry_t *reg = metrics_registry_new();
    mq_producer_t *p = dead_producer();
    dispatch_outcome_start(p, reg, "test");

    dispatch_outcome_label_t l[] = {{"provider", "apns"}, {"result", "ok"}};
    double t0 = now_s();
    dispatch_outcome_emit("push", "t1", "", l, 2, 1);                  /* malformed */
    dispatch_outcome_emit("push", "t1", OUTCOME_PUSH_RESULT, l, 2, 0); /* nothing */
    for (int i = 0; i < 5000; i++)
        dispatch_outcome_emit("push", "t1", OUTCOME_PUSH_RESULT, l, 2, 3);
    double took = now_s() - t0;
    print_message("5002 emits in %.3f s: emitted %g, max_pending %g, bad %g, queue_full %g\n", took,
                  series(reg, NULL), series(reg, "max_pending"), series(reg, "bad_event"),
                  series(reg, "queue_full"));
    assert_true(series(reg, NULL) == 50);
    assert_true(series(reg, "max_pending") == 4950);
    assert_true(series(reg, "bad_event") == 1);
    assert_true(mq_producer_outq_len(p) >= 50); /* + librdkafka events of the dead broker */

    dispatch_outcome_stop();
    dispatch_outcome_emit("push", "t1", OUTCOME_PUSH_RESULT, l, 2, 1);
    assert_true(series(reg, "stopped") == 1);
    mq_producer_destroy(&p, 0); /* undelivered: their delivery reports fail them */
    cfg_destroy(cfg);

    /* disabled: not even counted as dropped */
    cfg = cfg_load_string("outcomes:\n  enabled: false\n", "test2.yaml", err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(dispatch_outcome_configure(cfg, err, sizeof(err)), 0);
    p = dead_producer();
    dispatch_outcome_start(p, reg, "test");
    dispatch_outcome_emit("push", "t1", OUTCOME_PUSH_RESULT, l, 2, 1);
    assert_true(series(reg, NULL) == 50); /* nothing more emitted */
    assert_true(series(reg, "stopped") == 1);
    dispatch_outcome_stop();
    mq_producer_destroy(&p, 0);
    cfg_destroy(cfg);
    metrics_registry_destroy(reg);
}

static void test_config_errors(void **st)
{
    (void)st;
    char err[CFG_ERR_MAX];
    cfg_t *cfg = cfg_load_string("outcomes:\n  max_pending: 0\n", "bad.yaml", err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(dispatch_outcome_configure(cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "outcomes.max_pending"));
    cfg_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_and_never_blocking),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
