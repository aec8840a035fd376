/* task_test.c: envelope round trip and refusal, type aliases, ids, traceparent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dispatch/task.h"

static void test_round_trip(void **state)
{
    task_t in = {.created_at_ms = 1700000000123, .attempt = 3, .deadline_ms = 1700000999000};
    task_t out;
    uint8_t *buf;
    size_t len;
    void *owner = NULL;
    char err[256];
    static const uint8_t payload[] = {0, 1, 2, 255, 'x'};
    (void)state;
    strcpy(in.task_id, "t-1");
    strcpy(in.task_type, "fanout");
    task_trace_id_new(in.trace_id);
    task_traceparent_new(in.trace_id, in.traceparent);
    in.payload = payload;
    in.payload_len = sizeof(payload);
    assert_int_equal(task_encode(&in, &buf, &len), 0);
    assert_int_equal(task_decode(buf, len, &out, &owner, err, sizeof(err)), 0);
    assert_string_equal(out.task_id, "t-1");
    assert_string_equal(out.task_type, "fanout");
    assert_string_equal(out.trace_id, in.trace_id);
    assert_string_equal(out.traceparent, in.traceparent);
    assert_int_equal(out.created_at_ms, in.created_at_ms);
    assert_int_equal(out.attempt, 3);
    assert_int_equal(out.deadline_ms, in.deadline_ms);
    assert_int_equal(out.payload_len, sizeof(payload));
    assert_memory_equal(out.payload, payload, sizeof(payload));
    task_decoded_free(owner);
    free(buf);
}

static void test_refuses_garbage(void **state)
{
    task_t out;
    void *owner = NULL;
    char err[256];
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    uint8_t *buf;
    size_t len;
    task_t noid = {.attempt = 1};
    (void)state;
    assert_int_equal(task_decode(junk, sizeof(junk), &out, &owner, err, sizeof(err)), -1);
    assert_string_equal(err, "value is not a task envelope (imtask.v1.Task protobuf, 5 bytes)");
    strcpy(noid.task_type, "push");
    assert_int_equal(task_encode(&noid, &buf, &len), 0);
    assert_int_equal(task_decode(buf, len, &out, &owner, err, sizeof(err)), -1);
    assert_string_equal(err, "task envelope has no task_id");
    free(buf);
}

static void test_types(void **state)
{
    (void)state;
    assert_string_equal(task_type_canonical("audit"), "content_audit");
    assert_string_equal(task_type_canonical("content_audit"), "content_audit");
    assert_string_equal(task_type_canonical("fanout"), "fanout");
    assert_string_equal(task_type_canonical("report"), "report");
    assert_null(task_type_canonical("fan-out"));
    assert_null(task_type_canonical(NULL));
}

static void test_ids(void **state)
{
    char a[37], b[37], tr[33], tp[56], back[33];
    (void)state;
    task_id_new(a);
    task_id_new(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    task_trace_id_new(tr);
    assert_int_equal(strlen(tr), 32);
    task_traceparent_new(tr, tp);
    assert_int_equal(task_traceparent_parse(tp, back), 0);
    assert_string_equal(back, tr);
    assert_int_equal(
        task_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", back), 0);
    assert_string_equal(back, "4bf92f3577b34da6a3ce929d0e0e4736");
    /* all-zero ids, upper case, wrong version or length are refused */
    assert_int_equal(
        task_traceparent_parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", back),
        -1);
    assert_int_equal(
        task_traceparent_parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", back),
        -1);
    assert_int_equal(
        task_traceparent_parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", back),
        -1);
    assert_int_equal(
        task_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", back), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refuses_garbage),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
