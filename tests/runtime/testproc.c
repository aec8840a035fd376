/* testproc.c: imtask-testproc, a task binary whose processor does what each
 * task's payload says, for the runtime's integration tests and benchmarks.
 * Payload commands (text):
 *   ok                 done
 *   noop               done, records nothing (benchmarks)
 *   sleep:MS           sleep MS (giving up if cancelled), then done
 *   fail-until:N       retry while the delivery attempt is below N, then done
 *   local-until:N      retry while the in-process attempt is below N, then done
 *   perm               dead-letter ("permanent failure requested")
 *   out:TOPIC          produce one output to TOPIC, then done
 *   outs:N:TOPIC       produce N outputs to TOPIC, then done
 *   outs-until:K:N:TOPIC  produce N outputs to TOPIC, then retry while the
 *                      in-process attempt is below K (a failure after writing)
 * TESTPROC_EXACTLY_ONCE=1 runs the binary in exactly-once (transactional) mode.
 * Every done task appends "done <task_id> <attempt>" to testproc.record_file,
 * and every start "start <task_id>" (one write(2) per line, O_APPEND). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/dispatch.h"

typedef struct {
    const char *record_file;
    const char *task_type;
    int fd;
} testproc_t;

static const cfg_field_t testproc_fields[] = {
    {.key = "record_file",
     .type = CFG_STRING,
     .offset = offsetof(testproc_t, record_file),
     .help = "where to append one line per started and finished task (unset: nowhere)"},
};

static testproc_t testproc_state = {.fd = -1};

static void testproc_record(testproc_t *s, const char *what, dispatch_task_t *t)
{
    char line[256];
    int n;
    if (s->fd < 0)
        return;
    n = snprintf(line, sizeof(line), "%s %s %u\n", what, dispatch_task_id(t),
                 dispatch_task_attempt(t));
    if (write(s->fd, line, (size_t)n) != n)
        perror("testproc: record");
}

static int testproc_configure(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    testproc_t *s = &testproc_state;
    if (cfg_bind(cfg, "testproc", testproc_fields, 1, s, NULL, err, errlen))
        return -1;
    *state = s;
    return 0;
}

static int testproc_start(void *state, app_t *app, char *err, size_t errlen)
{
    testproc_t *s = state;
    (void)app;
    if (!s->record_file)
        return 0;
    s->fd = open(s->record_file, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (s->fd < 0) {
        snprintf(err, errlen, "testproc.record_file %s: cannot open", s->record_file);
        return -1;
    }
    return 0;
}

static dispatch_result_t testproc_process(void *state, dispatch_task_t *t)
{
    testproc_t *s = state;
    size_t len;
    const uint8_t *p = dispatch_task_payload(t, &len);
    char cmd[256];
    long n;

    if (len >= sizeof(cmd))
        return dispatch_dead("payload longer than %zu bytes", sizeof(cmd) - 1);
    memcpy(cmd, p, len);
    cmd[len] = '\0';
    if (strcmp(cmd, "noop") == 0)
        return dispatch_done();
    testproc_record(s, "start", t);
    if (strcmp(cmd, "perm") == 0)
        return dispatch_dead("permanent failure requested");
    if (sscanf(cmd, "fail-until:%ld", &n) == 1 && (long)dispatch_task_attempt(t) < n)
        return dispatch_retry(0, "transient failure requested (attempt %u < %ld)",
                              dispatch_task_attempt(t), n);
    if (sscanf(cmd, "local-until:%ld", &n) == 1 && (long)dispatch_task_local_attempt(t) < n)
        return dispatch_retry(0, "transient failure requested (local attempt %u < %ld)",
                              dispatch_task_local_attempt(t), n);
    if (sscanf(cmd, "sleep:%ld", &n) == 1) {
        for (long slept = 0; slept < n; slept += 10) {
            if (dispatch_task_cancelled(t))
                return dispatch_retry(0, "cancelled by shutdown");
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    char topic[200];
    long until = 0;
    if (sscanf(cmd, "outs-until:%ld:%ld:%199s", &until, &n, topic) == 3 ||
        sscanf(cmd, "outs:%ld:%199s", &n, topic) == 2) {
        const char *id = dispatch_task_id(t);
        for (long i = 0; i < n; i++) {
            char v[300];
            int vl = snprintf(v, sizeof(v), "%s/%ld", id, i);
            if (dispatch_task_produce(t, topic, id, strlen(id), v, (size_t)vl, NULL, 0))
                return dispatch_retry(0, "cannot queue output %ld", i);
        }
        if ((long)dispatch_task_local_attempt(t) < until)
            return dispatch_retry(0, "failure after writing requested (local attempt %u < %ld)",
                                  dispatch_task_local_attempt(t), until);
    }
    if (strncmp(cmd, "out:", 4) == 0) {
        const char *id = dispatch_task_id(t);
        if (dispatch_task_produce(t, cmd + 4, id, strlen(id), id, strlen(id), NULL, 0))
            return dispatch_retry(0, "cannot queue the output");
    }
    testproc_record(s, "done", t);
    return dispatch_done();
}

static void testproc_destroy(void *state)
{
    testproc_t *s = state;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

static dispatch_ops_t testproc_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "testproc",
    .configure = testproc_configure,
    .start = testproc_start,
    .process = testproc_process,
    .destroy = testproc_destroy,
};

static int testproc_register(dispatch_t *d)
{
    const char *type = getenv("TESTPROC_TASK_TYPE");
    const char *eos = getenv("TESTPROC_EXACTLY_ONCE");
    testproc_ops.exactly_once = eos && strcmp(eos, "1") == 0;
    return dispatch_register(d, type && *type ? type : "rt_test", &testproc_ops);
}

int main(int argc, char **argv)
{
    return dispatch_main(argc, argv, "testproc", "test processor for the runtime's tests",
                         testproc_register);
}
