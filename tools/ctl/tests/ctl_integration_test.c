/* ctl_integration_test.c: imtask-ctl against the real Kafka of the local
 * stack (scripts/stack.sh), on topics of its own (created with the Admin API,
 * deleted at the end) so the shared im-task topics are never touched:
 * enqueue, dlq list/show/replay on synthetic dead-letter records, lag of a
 * group that committed, topics. Needs IMTASK_KAFKA_BROKERS; argv[1] is the
 * imtask-ctl binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"

#define OUT_MAX (1 << 20)
#define WAIT_MS 30000
#define MAX_RECORDS 1000

static const char *ctl_path;
static const char *brokers;
static char base[96], task_topic[128], retry_topic[128], dlq_topic[128], group[128];
static char out[OUT_MAX];

/* The synthetic dead-letter records (partition, offset) of test_dlq. */
static int64_t off_a, off_b, off_c;
static const char trace_a[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};

/* ---- helpers ------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *const *kv, rd_kafka_conf_t *conf)
{
    char err[512];
    if (!conf)
        conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)))
        fail_msg("bootstrap.servers: %s", err);
    for (; kv && kv[0]; kv += 2) {
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            fail_msg("%s=%s: %s", kv[0], kv[1], err);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk)
        fail_msg("rd_kafka_new: %s", err);
    return rk;
}

/* Run imtask-ctl with the test's topics; returns its exit status, output
 * (stdout and stderr) in `out`. with_brokers false: from the environment. */
static int run_ctl(bool with_brokers, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int run_ctl(bool with_brokers, const char *fmt, ...)
{
    char args[4096], cmd[8192];
    va_list ap;
    size_t n = 0;
    FILE *p;
    int status;

    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    /* the test's topics as options before the command: args may override them */
    snprintf(cmd, sizeof(cmd),
             "%s --task-topic %s --retry-topic %s --dlq-topic %s --timeout-ms 20000 %s%s %s 2>&1",
             ctl_path, task_topic, retry_topic, dlq_topic, with_brokers ? "--brokers " : "",
             with_brokers ? brokers : "", args);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (n < sizeof(out) - 1) {
        size_t got = fread(out + n, 1, sizeof(out) - 1 - n, p);
        if (got == 0)
            break;
        n += got;
    }
    out[n] = '\0';
    status = pclose(p);
    fprintf(stderr, "$ imtask-ctl %s\n%s(exit %d)\n\n", args, out,
            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void expect_out(const char *needle)
{
    if (!strstr(out, needle))
        fail_msg("the output does not contain \"%s\"", needle);
}

static void expect_not_out(const char *needle)
{
    if (strstr(out, needle))
        fail_msg("the output contains \"%s\"", needle);
}

/* The output line that contains all of a and b, or NULL (points into out;
 * the line is NUL-terminated in a static copy). */
static const char *out_line(const char *a, const char *b)
{
    static char line[4096];
    const char *p = out;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len < sizeof(line)) {
            memcpy(line, p, len);
            line[len] = '\0';
            if (strstr(line, a) && (!b || strstr(line, b)))
                return line;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    return NULL;
}

static void admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t type)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, WAIT_MS);
    assert_non_null(ev);
    assert_int_equal(rd_kafka_event_type(ev), type);
    if (type == RD_KAFKA_EVENT_CREATETOPICS_RESULT) {
        size_t n;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        for (size_t i = 0; i < n; i++) {
            if (rd_kafka_topic_result_error(tr[i]))
                fail_msg("CreateTopics %s: %s", rd_kafka_topic_result_name(tr[i]),
                         rd_kafka_topic_result_error_string(tr[i]));
        }
    }
    rd_kafka_event_destroy(ev);
}

/* Wait until the metadata shows topic with every partition led. */
static void wait_topic(rd_kafka_t *rk, const char *topic, int partitions)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (now_ms() < deadline) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        bool ready = false;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            const struct rd_kafka_metadata_topic *t = &md->topics[0];
            ready = md->topic_cnt == 1 && !t->err && t->partition_cnt == partitions;
            for (int i = 0; ready && i < t->partition_cnt; i++)
                ready = t->partitions[i].leader >= 0 && !t->partitions[i].err;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (ready)
            return;
        usleep(200 * 1000);
    }
    fail_msg("topic %s is not ready after %d ms", topic, WAIT_MS);
}

typedef struct {
    int32_t partition;
    int64_t offset;
    int err;
    bool done;
} dr_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    dr_t *dr = m->_private;
    (void)rk;
    (void)opaque;
    dr->partition = m->partition;
    dr->offset = m->offset;
    dr->err = m->err;
    dr->done = true;
}

/* Produce one record (headers: name, value, ..., NULL) and return its offset. */
static int64_t produce(const char *topic, int32_t partition, const char *key, const void *val,
                       size_t len, const char *const *headers)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    dr_t dr = {-1, -1, 0, false};
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(16);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *p = client(RD_KAFKA_PRODUCER, NULL, conf);
    for (; headers && headers[0]; headers += 2)
        rd_kafka_header_add(hdrs, headers[0], -1, headers[1], -1);
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                       RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                       RD_KAFKA_V_VALUE((void *)val, len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&dr),
                                       RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, WAIT_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
    assert_true(dr.done);
    if (dr.err)
        fail_msg("produce to %s: %s", topic, rd_kafka_err2str(dr.err));
    return dr.offset;
}

/* A copy of one record read back. */
typedef struct {
    int32_t partition;
    int64_t offset;
    char key[64];
    uint8_t value[512];
    size_t len;
    char task_id[TASK_ID_MAX], task_type[TASK_TYPE_MAX], traceparent[64], replayed_from[256];
    bool has_attempt_header;
} rec_t;

static rec_t records[MAX_RECORDS];
static size_t nrecords;

static void header(const rd_kafka_message_t *m, const char *name, char *buf, size_t len)
{
    rd_kafka_headers_t *hdrs;
    const void *v;
    size_t n;
    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &hdrs) || rd_kafka_header_get_last(hdrs, name, &v, &n) || !v)
        return;
    if (n >= len)
        n = len - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
}

/* Read every record of topic into records[]. */
static void read_topic(const char *topic, int partitions)
{
    char grp[160];
    snprintf(grp, sizeof(grp), "%s-reader", base);
    /* clang-format off */
    const char *kv[] = {"group.id", grp,
                        "enable.auto.commit", "false",
                        "enable.partition.eof", "true",
                        NULL};
    /* clang-format on */
    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, kv, NULL);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    int eofs = 0;
    int64_t deadline = now_ms() + WAIT_MS;

    nrecords = 0;
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    while (eofs < partitions) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (now_ms() > deadline)
            fail_msg("reading %s: only %d of %d partitions read through", topic, eofs, partitions);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
        } else if (m->err) {
            fail_msg("reading %s: %s", topic, rd_kafka_message_errstr(m));
        } else {
            rec_t *r = &records[nrecords++];
            assert_true(nrecords < MAX_RECORDS);
            memset(r, 0, sizeof(*r));
            r->partition = m->partition;
            r->offset = m->offset;
            if (m->key)
                snprintf(r->key, sizeof(r->key), "%.*s", (int)m->key_len, (const char *)m->key);
            assert_true(m->len <= sizeof(r->value));
            memcpy(r->value, m->payload, m->len);
            r->len = m->len;
            header(m, HDR_TASK_ID, r->task_id, sizeof(r->task_id));
            header(m, HDR_TASK_TYPE, r->task_type, sizeof(r->task_type));
            header(m, HDR_TRACEPARENT, r->traceparent, sizeof(r->traceparent));
            header(m, HDR_REPLAYED_FROM, r->replayed_from, sizeof(r->replayed_from));
            char tmp[16];
            header(m, HDR_ATTEMPT, tmp, sizeof(tmp));
            r->has_attempt_header = tmp[0] != '\0';
        }
        if (m)
            rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

static const rec_t *find_record(const char *task_id, bool replayed)
{
    const rec_t *found = NULL;
    for (size_t i = 0; i < nrecords; i++) {
        if (strcmp(records[i].task_id, task_id) == 0 &&
            (records[i].replayed_from[0] != '\0') == replayed) {
            if (found)
                fail_msg("task %s (replayed %d) is there twice", task_id, replayed);
            found = &records[i];
        }
    }
    return found;
}

static size_t count_replayed(void)
{
    size_t n = 0;
    for (size_t i = 0; i < nrecords; i++)
        n += records[i].replayed_from[0] != '\0';
    return n;
}

/* ---- setup -------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    brokers = getenv("IMTASK_KAFKA_BROKERS");
    if (!brokers || !*brokers) {
        fprintf(stderr, "IMTASK_KAFKA_BROKERS is not set: start the stack (bash scripts/stack.sh "
                        "up) and run bazel test --test_env=IMTASK_KAFKA_BROKERS=127.0.0.1:19092\n");
        return -1;
    }
    snprintf(base, sizeof(base), "imtask-it-ctl-%ld-%d", (long)time(NULL), (int)getpid());
    snprintf(task_topic, sizeof(task_topic), "%s-task", base);
    snprintf(retry_topic, sizeof(retry_topic), "%s-retry", base);
    snprintf(dlq_topic, sizeof(dlq_topic), "%s-dlq", base);
    snprintf(group, sizeof(group), "%s-group", base);

    char err[512];
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_NewTopic_t *nt[3] = {
        rd_kafka_NewTopic_new(task_topic, 3, 1, err, sizeof(err)),
        rd_kafka_NewTopic_new(retry_topic, 2, 1, err, sizeof(err)),
        rd_kafka_NewTopic_new(dlq_topic, 2, 1, err, sizeof(err)),
    };
    rd_kafka_CreateTopics(rk, nt, 3, NULL, q);
    admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
    rd_kafka_NewTopic_destroy_array(nt, 3);
    wait_topic(rk, task_topic, 3);
    wait_topic(rk, retry_topic, 2);
    wait_topic(rk, dlq_topic, 2);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t *dt[3] = {rd_kafka_DeleteTopic_new(task_topic),
                                     rd_kafka_DeleteTopic_new(retry_topic),
                                     rd_kafka_DeleteTopic_new(dlq_topic)};
    rd_kafka_DeleteGroup_t *dg = rd_kafka_DeleteGroup_new(group);
    rd_kafka_DeleteTopics(rk, dt, 3, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, WAIT_MS);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_DeleteGroups(rk, &dg, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, WAIT_MS);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_DeleteTopic_destroy_array(dt, 3);
    rd_kafka_DeleteGroup_destroy(dg);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return 0;
}

/* ---- enqueue ------------------------------------------------------------ */

static void test_enqueue(void **state)
{
    (void)state;
    int64_t before = now_ms();
    assert_int_equal(run_ctl(true, "enqueue --type audit --id it-enq-1 --key k1 "
                                   "--deadline-ms 60000 --payload-text hello"),
                     0);
    expect_out("enqueued task it-enq-1 (type content_audit");
    expect_out(" partition ");
    int64_t after = now_ms();

    static const char tp[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_int_equal(run_ctl(true,
                             "enqueue --type push --id it-enq-2 --trace %s --payload-hex "
                             "0a0b",
                             tp),
                     0);
    /* brokers from the environment this time */
    assert_int_equal(run_ctl(false, "enqueue --type archive --id it-bulk --count 50 "
                                    "--in-flight 7 --payload-text b"),
                     0);
    expect_out("enqueued 50 of 50 tasks (type archive)");
    expect_out("task ids: it-bulk-1 .. it-bulk-50");

    /* refused before anything is produced; --payload-json needs a type whose
     * payload message tools/ctl/payloads.c registers */
    assert_int_equal(run_ctl(true, "enqueue --type it_no_payload --payload-json '{}'"), 2);
    expect_out("no payload message is registered for task type \"it_no_payload\"");
    assert_int_equal(run_ctl(true, "enqueue --type Bogus-Type --payload-text x"), 2);
    expect_out("\"Bogus-Type\" is not a task type");
    assert_int_equal(run_ctl(true, "enqueue --type push"), 2);
    expect_out("exactly one of --payload-json");
    assert_int_equal(run_ctl(true, "enqueue --type push --trace 00-xyz --payload-text x"), 2);
    expect_out("not a W3C traceparent");

    read_topic(task_topic, 3);
    assert_int_equal(nrecords, 52);

    const rec_t *r = find_record("it-enq-1", false);
    assert_non_null(r);
    assert_string_equal(r->task_type, "content_audit");
    assert_string_equal(r->key, "k1");
    task_t t;
    void *owner = NULL;
    char err[256], trace_id[TASK_TRACE_ID_LEN + 1];
    if (task_decode(r->value, r->len, &t, &owner, err, sizeof(err)) != 0)
        fail_msg("it-enq-1 does not decode: %s", err);
    assert_string_equal(t.task_id, "it-enq-1");
    assert_string_equal(t.task_type, "content_audit");
    assert_int_equal(t.attempt, 0);
    assert_int_equal(t.payload_len, 5);
    assert_memory_equal(t.payload, "hello", 5);
    assert_true(t.created_at_ms >= before && t.created_at_ms <= after);
    assert_int_equal(t.deadline_ms, t.created_at_ms + 60000);
    assert_int_equal(task_traceparent_parse(r->traceparent, trace_id), 0);
    assert_string_equal(trace_id, t.trace_id);
    assert_string_equal(r->traceparent, t.traceparent);
    task_decoded_free(owner);

    r = find_record("it-enq-2", false);
    assert_non_null(r);
    assert_string_equal(r->traceparent, tp);
    assert_int_equal(task_decode(r->value, r->len, &t, &owner, err, sizeof(err)), 0);
    assert_string_equal(t.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_int_equal(t.payload_len, 2);
    assert_memory_equal(t.payload, "\x0a\x0b", 2);
    assert_int_equal(t.deadline_ms, 0);
    task_decoded_free(owner);

    for (int i = 1; i <= 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "it-bulk-%d", i);
        r = find_record(id, false);
        if (!r)
            fail_msg("%s was not enqueued", id);
        assert_string_equal(r->task_type, "archive");
    }
}

/* ---- dlq ---------------------------------------------------------------- */

/* Write the three synthetic dead-letter records. */
static void write_dlq_records(void)
{
    task_t t;
    uint8_t *val = NULL;
    size_t len = 0;

    memset(&t, 0, sizeof(t));
    snprintf(t.task_id, sizeof(t.task_id), "dlq-a");
    snprintf(t.task_type, sizeof(t.task_type), "fanout");
    snprintf(t.traceparent, sizeof(t.traceparent), "%s", trace_a);
    assert_int_equal(task_traceparent_parse(trace_a, t.trace_id), 0);
    t.created_at_ms = 1732800000123LL;
    t.attempt = 5;
    t.payload = (const uint8_t *)"pa";
    t.payload_len = 2;
    assert_int_equal(task_encode(&t, &val, &len), 0);
    /* clang-format off */
    const char *ha[] = {
        HDR_TASK_TYPE, "fanout",
        HDR_TASK_ID, "dlq-a",
        HDR_TRACEPARENT, trace_a,
        HDR_ATTEMPT, "5",
        HDR_DLQ_ORIGINAL_TOPIC, task_topic,
        HDR_DLQ_ORIGINAL_PARTITION, "1",
        HDR_DLQ_ORIGINAL_OFFSET, "17",
        HDR_DLQ_TASK_TYPE, "fanout",
        HDR_DLQ_ATTEMPTS, "5",
        HDR_DLQ_ERROR_KIND, DLQ_KIND_RETRIES_EXHAUSTED,
        HDR_DLQ_ERROR_MESSAGE, "gateway timeout after 5 attempts",
        NULL};
    /* clang-format on */
    off_a = produce(dlq_topic, 0, "ka", val, len, ha);
    free(val);

    snprintf(t.task_id, sizeof(t.task_id), "dlq-b");
    snprintf(t.task_type, sizeof(t.task_type), "push");
    t.attempt = 1;
    assert_int_equal(task_encode(&t, &val, &len), 0);
    /* clang-format off */
    const char *hb[] = {
        HDR_TASK_TYPE, "push",
        HDR_TASK_ID, "dlq-b",
        HDR_TRACEPARENT, trace_a,
        HDR_DLQ_ORIGINAL_TOPIC, task_topic,
        HDR_DLQ_ORIGINAL_PARTITION, "2",
        HDR_DLQ_ORIGINAL_OFFSET, "4",
        HDR_DLQ_ATTEMPTS, "1",
        HDR_DLQ_ERROR_KIND, DLQ_KIND_PERMANENT,
        HDR_DLQ_ERROR_MESSAGE, "bad device token",
        NULL};
    /* clang-format on */
    off_b = produce(dlq_topic, 1, "kb", val, len, hb);
    free(val);

    /* clang-format off */
    const char *hc[] = {
        HDR_TASK_TYPE, "archive",
        HDR_TASK_ID, "dlq-c",
        HDR_DLQ_ORIGINAL_TOPIC, task_topic,
        HDR_DLQ_ORIGINAL_PARTITION, "0",
        HDR_DLQ_ORIGINAL_OFFSET, "9",
        HDR_DLQ_ATTEMPTS, "1",
        HDR_DLQ_ERROR_KIND, DLQ_KIND_UNDECODABLE,
        HDR_DLQ_ERROR_MESSAGE, "value is not a task envelope",
        NULL};
    /* clang-format on */
    off_c = produce(dlq_topic, 0, "kc", junk, sizeof(junk), hc);
}

static void test_dlq_list_show(void **state)
{
    (void)state;
    char po[64], origin[256];
    write_dlq_records();

    assert_int_equal(run_ctl(true, "dlq list --wide"), 0);
    snprintf(po, sizeof(po), "0:%lld ", (long long)off_a);
    const char *line = out_line(po, "dlq-a");
    if (!line)
        fail_msg("no line for 0:%lld dlq-a", (long long)off_a);
    snprintf(origin, sizeof(origin), "%s/1/17", task_topic);
    assert_non_null(strstr(line, "fanout"));
    assert_non_null(strstr(line, "retries_exhausted"));
    assert_non_null(strstr(line, origin));
    assert_non_null(strstr(line, "gateway timeout after 5 attempts"));
    assert_non_null(out_line("dlq-b", "permanent"));
    assert_non_null(out_line("dlq-c", "undecodable"));
    expect_out("PARTITION:OFFSET");
    expect_out("3 matching records; 3 records read from ");

    assert_int_equal(run_ctl(true, "dlq list --type push"), 0);
    expect_out("dlq-b");
    expect_not_out("dlq-a");
    expect_not_out("dlq-c");
    expect_out("1 matching record;");

    assert_int_equal(run_ctl(true, "dlq list --kind undecodable"), 0);
    expect_out("dlq-c");
    expect_not_out("dlq-a");
    expect_out("1 matching record;");

    assert_int_equal(run_ctl(true, "dlq list --type audit"), 0);
    expect_not_out("PARTITION:OFFSET");
    expect_out("0 matching records");

    assert_int_equal(run_ctl(true, "dlq list --since 2999-01-01"), 0);
    expect_out("0 matching records");
    assert_int_equal(run_ctl(true, "dlq list --since -1h --until now"), 0);
    expect_out("3 matching records");
    assert_int_equal(run_ctl(true, "dlq list --limit 2"), 0);
    expect_out("2 most recent of 3 matching records shown");
    assert_int_equal(run_ctl(true, "dlq list --since tomorrow"), 2);
    expect_out("--since: bad time \"tomorrow\"");

    /* a narrow table cuts the reason, nothing else */
    assert_int_equal(run_ctl(true, "dlq list --width 60"), 0);
    expect_not_out("gateway timeout after 5 attempts");
    expect_out("dlq-a");

    assert_int_equal(run_ctl(true, "dlq show 0:%lld", (long long)off_a), 0);
    expect_out("dlq_error_kind          retries_exhausted");
    expect_out("dlq_error_message       gateway timeout after 5 attempts");
    expect_out("headers (11):");
    expect_out("key           ka");
    expect_out("task_id       dlq-a");
    expect_out("attempt       5");
    expect_out("created_at    2024-11-28T13:20:00.123Z");
    expect_out("payload       2 bytes");
    expect_out("|pa|");

    assert_int_equal(run_ctl(true, "dlq show 0:%lld", (long long)off_c), 0);
    expect_out("envelope: not decodable");
    expect_out("ff ff ff 01");

    assert_int_equal(run_ctl(true, "dlq show 1:999999"), 1);
    expect_out("not 999999");
    assert_int_equal(run_ctl(true, "dlq show 7:0"), 1);
    expect_out("has no partition 7");
    assert_int_equal(run_ctl(true, "dlq show zero"), 2);
    assert_int_equal(run_ctl(true, "dlq frobnicate"), 2);
}

static void test_dlq_replay(void **state)
{
    (void)state;
    char from[256];
    task_t t;
    void *owner = NULL;
    char err[256];

    assert_int_equal(run_ctl(true, "dlq replay"), 2);
    expect_out("select what to replay");
    assert_int_equal(run_ctl(true, "dlq replay --all --type push"), 2);

    /* by offset: the envelope again, with attempt 0 */
    assert_int_equal(run_ctl(true, "dlq replay --offsets 0:%lld", (long long)off_a), 0);
    expect_out("replayed 1, failed 0");
    read_topic(task_topic, 3);
    assert_int_equal(count_replayed(), 1);
    const rec_t *r = find_record("dlq-a", true);
    assert_non_null(r);
    snprintf(from, sizeof(from), "%s/0/%lld", dlq_topic, (long long)off_a);
    assert_string_equal(r->replayed_from, from);
    assert_string_equal(r->task_type, "fanout");
    assert_string_equal(r->traceparent, trace_a);
    assert_string_equal(r->key, "ka");
    assert_false(r->has_attempt_header);
    assert_int_equal(task_decode(r->value, r->len, &t, &owner, err, sizeof(err)), 0);
    assert_string_equal(t.task_id, "dlq-a");
    assert_int_equal(t.attempt, 0);
    assert_int_equal(t.created_at_ms, 1732800000123LL);
    assert_int_equal(t.payload_len, 2);
    assert_memory_equal(t.payload, "pa", 2);
    task_decoded_free(owner);

    /* by type: a dry run first, then only the push task */
    assert_int_equal(run_ctl(true, "dlq replay --type push --dry-run"), 0);
    expect_out("would replay 1 record (dry run");
    expect_out("dlq-b");
    expect_not_out("dlq-a");
    read_topic(task_topic, 3);
    assert_int_equal(count_replayed(), 1);

    assert_int_equal(run_ctl(true, "dlq replay --type push"), 0);
    expect_out("replayed 1, failed 0");
    read_topic(task_topic, 3);
    assert_int_equal(count_replayed(), 2);
    r = find_record("dlq-b", true);
    assert_non_null(r);
    snprintf(from, sizeof(from), "%s/1/%lld", dlq_topic, (long long)off_b);
    assert_string_equal(r->replayed_from, from);
    assert_string_equal(r->task_type, "push");
    assert_non_null(find_record("dlq-a", true)); /* still once */

    /* a value that is not an envelope goes back as it is */
    assert_int_equal(run_ctl(true, "dlq replay --offsets 0:%lld", (long long)off_c), 0);
    read_topic(task_topic, 3);
    assert_int_equal(count_replayed(), 3);
    r = find_record("dlq-c", true);
    assert_non_null(r);
    assert_int_equal(r->len, sizeof(junk));
    assert_memory_equal(r->value, junk, sizeof(junk));
    assert_string_equal(r->task_type, "archive");

    /* an offset that is not there fails, naming it */
    assert_int_equal(run_ctl(true, "dlq replay --offsets 0:%lld,1:%lld", (long long)off_c + 1000,
                             (long long)off_b),
                     1);
    snprintf(from, sizeof(from), "0:%lld: not replayed: no such record", (long long)off_c + 1000);
    expect_out(from);
    expect_out("replayed 1, failed 1");
}

/* ---- lag and topics ----------------------------------------------------- */

static void test_lag(void **state)
{
    (void)state;
    int64_t low = 0, high = 0;
    const char *kv[] = {"group.id", group, "enable.auto.commit", "false", NULL};

    produce(task_topic, 0, NULL, "x", 1, NULL);
    produce(task_topic, 0, NULL, "y", 1, NULL);
    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, kv, NULL);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, task_topic, 0)->offset = 1;
    assert_int_equal(rd_kafka_commit(c, l, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_query_watermark_offsets(c, task_topic, 0, &low, &high, WAIT_MS), 0);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    assert_true(high >= 2);

    assert_int_equal(run_ctl(true, "lag --group %s", group), 0);
    expect_out("COMMITTED");
    const char *line = out_line(group, task_topic);
    assert_non_null(line);
    char g[160], topic[160], committed[32];
    long long part = -1, end = -1, lag = -1;
    assert_int_equal(
        sscanf(line, "%159s %159s %lld %31s %lld %lld", g, topic, &part, committed, &end, &lag), 6);
    assert_int_equal(part, 0); /* partition 0 comes first */
    assert_string_equal(committed, "1");
    assert_int_equal(end, high);
    assert_int_equal(lag, high - 1);
    line = out_line(group, retry_topic);
    assert_non_null(line);
    assert_non_null(strstr(line, " - "));
    assert_non_null(out_line(group, "(total)"));
    assert_int_equal(run_ctl(true, "lag --group %s --task-topic %s-missing", group, base), 1);
    expect_out("does not exist");
}

static void test_topics(void **state)
{
    (void)state;
    assert_int_equal(run_ctl(true, "topics"), 0);
    const char *line = out_line(task_topic, NULL);
    assert_non_null(line);
    char name[160];
    int parts = 0, replicas = 0;
    assert_int_equal(sscanf(line, "%159s %d %d", name, &parts, &replicas), 3);
    assert_int_equal(parts, 3);
    assert_int_equal(replicas, 1);
    expect_out("brokers (");

    assert_int_equal(run_ctl(true, "version"), 0);
    expect_out("imtask-ctl ");
    assert_int_equal(run_ctl(true, "help dlq replay"), 0);
    expect_out("usage: imtask-ctl dlq replay");
    assert_int_equal(run_ctl(true, "nope"), 2);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-OF-imtask-ctl\n", argv[0]);
        return 2;
    }
    ctl_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enqueue),    cmocka_unit_test(test_dlq_list_show),
        cmocka_unit_test(test_dlq_replay), cmocka_unit_test(test_lag),
        cmocka_unit_test(test_topics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
