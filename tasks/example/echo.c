/* echo.c: the `echo` task type, the worked example of
 * docs/adding-a-task-type.md. A task's payload is copied, as it is, to a
 * topic (echo.topic), keyed by the task id, with the task's id and trace in
 * headers. An empty payload, or one larger than echo.max_bytes, is a
 * permanent error: the task is dead-lettered with the reason.
 *
 * Everything a real processor has is here, in small: its own config section
 * bound with a field table (no I/O in configure, so --check-config works), a
 * metric registered in start, process() called from several workers at once
 * on shared read-only state, outputs tied to the input (the offset advances
 * only once the echo is acknowledged), done / retry / dead-letter.
 */
#include "echo.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/log.h"
#include "infra/metrics.h"

typedef struct {
    const char *topic; /* owned by the cfg_t, which outlives the processor */
    int64_t max_bytes;
    metrics_series_t *bytes; /* imtask_echo_bytes_total; NULL before start */
} echo_state_t;

static const cfg_field_t echo_fields[] = {
    {"topic", CFG_STRING, offsetof(echo_state_t, topic), "im-task-echo-topic", 0, 0, 0, NULL,
     "topic the payloads are copied to"},
    {"max_bytes", CFG_INT, offsetof(echo_state_t, max_bytes), "65536", 0, 1, 1048576, NULL,
     "largest payload echoed; a larger one is dead-lettered"},
};

static int echo_configure(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    echo_state_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "echo: out of memory");
        return -1;
    }
    if (cfg_bind(cfg, "echo", echo_fields, sizeof(echo_fields) / sizeof(echo_fields[0]), s, NULL,
                 err, errlen)) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int echo_start(void *state, app_t *app, char *err, size_t errlen)
{
    echo_state_t *s = state;
    metrics_family_t *f = metrics_counter_new(app_metrics(app), "imtask_echo_bytes_total",
                                              "Payload bytes echoed", 0, NULL);
    s->bytes = metrics_series_get0(f);
    if (!s->bytes) {
        snprintf(err, errlen, "echo: cannot register imtask_echo_bytes_total");
        return -1;
    }
    log_info("echo: payloads of at most %" PRId64 " bytes to %s", s->max_bytes, s->topic);
    return 0;
}

static dispatch_result_t echo_process(void *state, dispatch_task_t *task)
{
    echo_state_t *s = state;
    size_t len;
    const uint8_t *payload = dispatch_task_payload(task, &len);
    if (len == 0)
        return dispatch_dead("echo: the payload is empty (expected the bytes to echo)");
    if ((int64_t)len > s->max_bytes)
        return dispatch_dead("echo: the payload has %zu bytes, more than echo.max_bytes (%" PRId64
                             ")",
                             len, s->max_bytes);

    const char *id = dispatch_task_id(task);
    const char *trace = dispatch_task_trace_id(task);
    mq_header_t headers[] = {
        {"task_id", id, strlen(id)},
        {"trace_id", trace, strlen(trace)},
    };
    if (dispatch_task_produce(task, s->topic, id, strlen(id), payload, len, headers, 2))
        return dispatch_retry(0, "echo: could not queue the record for %s", s->topic);
    metrics_counter_add(s->bytes, (double)len);
    return dispatch_done();
}

static void echo_destroy(void *state)
{
    free(state);
}

const dispatch_ops_t echo_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "echo",
    .configure = echo_configure,
    .start = echo_start,
    .process = echo_process,
    .destroy = echo_destroy,
};
