/* log_test.c: every line is one valid JSON object with the expected fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infra/log.h"

/* Capture what log_write prints through a pipe; returns the parsed lines. */
static char captured[1 << 16];

static void capture(void (*fn)(void))
{
    int fds[2];
    ssize_t n;
    assert_int_equal(pipe(fds), 0);
    log_set_fd(fds[1]);
    fn();
    log_set_fd(1);
    close(fds[1]);
    n = read(fds[0], captured, sizeof(captured) - 1);
    close(fds[0]);
    captured[n > 0 ? n : 0] = '\0';
}

static cJSON *line_json(int index)
{
    char *p = captured;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    assert_non_null(p);
    char *end = strchr(p, '\n');
    assert_non_null(end);
    *end = '\0';
    cJSON *j = cJSON_Parse(p);
    *end = '\n';
    if (!j)
        fail_msg("line %d is not JSON: %.*s", index, (int)(end - p), p);
    return j;
}

static const char *field(cJSON *j, const char *name)
{
    cJSON *f = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static void emit_basic(void)
{
    log_setup("fanout", LOG_LEVEL_INFO);
    log_debug("not shown");
    log_info("hello \"world\"\n\ttab %d", 42);
    log_ctx_set("task-1", "0af7651916cd43dd8448eb211c80319c");
    log_warn("with context");
    log_ctx_clear();
    log_error("after clear");
}

static void test_basic_lines(void **state)
{
    (void)state;
    capture(emit_basic);
    cJSON *a = line_json(0), *b = line_json(1), *c = line_json(2);
    assert_string_equal(field(a, "level"), "info");
    assert_string_equal(field(a, "component"), "fanout");
    assert_string_equal(field(a, "msg"), "hello \"world\"\n\ttab 42");
    assert_null(field(a, "task_id"));
    assert_non_null(field(a, "ts"));
    assert_int_equal(strlen(field(a, "ts")), strlen("2026-11-28T14:10:37.123Z"));
    assert_string_equal(field(b, "level"), "warn");
    assert_string_equal(field(b, "task_id"), "task-1");
    assert_string_equal(field(b, "trace_id"), "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(field(c, "level"), "error");
    assert_null(field(c, "task_id"));
    assert_null(strstr(captured, "not shown"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
}

static void emit_secret(void)
{
    log_setup("push", LOG_LEVEL_DEBUG);
    log_add_secret("topsecretvalue");
    log_add_secret("ab"); /* too short: ignored */
    log_info("token=topsecretvalue and again topsecretvalue; ab stays");
    log_clear_secrets();
}

static void test_secrets_redacted(void **state)
{
    (void)state;
    capture(emit_secret);
    cJSON *a = line_json(0);
    assert_string_equal(field(a, "msg"), "token=[REDACTED] and again [REDACTED]; ab stays");
    cJSON_Delete(a);
}

static void emit_long(void)
{
    static char big[LOG_LINE_MAX * 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_setup("audit", LOG_LEVEL_INFO);
    log_info("%s", big);
}

static void test_long_message_cut(void **state)
{
    (void)state;
    capture(emit_long);
    cJSON *a = line_json(0);
    const char *msg = field(a, "msg");
    assert_non_null(msg);
    assert_true(strlen(msg) < LOG_LINE_MAX);
    assert_string_equal(msg + strlen(msg) - strlen("...(cut)"), "...(cut)");
    cJSON_Delete(a);
}

static void test_levels(void **state)
{
    log_level_t l;
    (void)state;
    assert_int_equal(log_level_parse("WARNING", &l), 0);
    assert_int_equal(l, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("loud", &l), -1);
    assert_string_equal(log_level_name(LOG_LEVEL_ERROR), "error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_lines),
        cmocka_unit_test(test_secrets_redacted),
        cmocka_unit_test(test_long_message_cut),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
