/* kafka_roundtrip_test.c: produce and consume through the real broker of the
 * local stack (scripts/stack.sh), proving librdkafka 2.0.2 and the broker
 * agree: admin topic creation, idempotent produce with headers, delivery
 * reports, a consumer group reading everything back; a transactional
 * producer learning its topics ahead (mq_txn_learn_topics); mq_consumer
 * handing its handler a faithful copy of each record, and in ordered mode
 * sharing its workers across partitions; mq_topic_partitions. Needs
 * IMTASK_KAFKA_BROKERS (the test command passes it with --test_env). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqclient/mq.h"
#include "tests/support/support.h"

#define NMSG 500
#define NPART 3

static const char *brokers;
static char topic[128];

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *const *kv)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    for (; kv && kv[0]; kv += 2) {
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            fail_msg("%s=%s: %s", kv[0], kv[1], err);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk)
        fail_msg("rd_kafka_new: %s", err);
    return rk;
}

static void create_topic(void)
{
    char err[512];
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, NPART, 1, err, sizeof(err));
    assert_non_null(nt);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    assert_non_null(ev);
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    assert_non_null(res);
    size_t n;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
    assert_int_equal(n, 1);
    if (rd_kafka_topic_result_error(tr[0]))
        fail_msg("CreateTopics %s: %s", topic, rd_kafka_topic_result_error_string(tr[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static void delete_topic(void)
{
    const char *topics[] = {topic};
    ts_kafka_delete(brokers, topics, 1, NULL, "kafka round trip");
}

static int delivered_ok, delivered_err;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        delivered_err++;
    else
        delivered_ok++;
}

static int setup(void **state)
{
    (void)state;
    brokers = getenv("IMTASK_KAFKA_BROKERS");
    if (!brokers || !*brokers) {
        fprintf(stderr, "IMTASK_KAFKA_BROKERS is not set: start the stack (scripts/stack.sh up) "
                        "and run through scripts/test.sh\n");
        return -1;
    }
    snprintf(topic, sizeof(topic), "imtask-it-roundtrip-%ld-%d", (long)time(NULL), (int)getpid());
    create_topic();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    delete_topic();
    return 0;
}

static void test_produce_consume(void **state)
{
    static const char *const pconf[] = {"enable.idempotence", "true", "linger.ms", "5", NULL};
    static const char *const cconf[] = {
        "group.id", NULL, "auto.offset.reset", "earliest", "enable.auto.commit", "false", NULL};
    char group[160], err[512];
    const char *ccv[7];
    int seen[NMSG] = {0};
    int got = 0, with_headers = 0;
    (void)state;

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)), 0);
    for (const char *const *kv = pconf; kv[0]; kv += 2)
        assert_int_equal(rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)), 0);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(p);
    for (int i = 0; i < NMSG; i++) {
        char key[32], val[64];
        snprintf(key, sizeof(key), "k%d", i % 17);
        snprintf(val, sizeof(val), "roundtrip-%d", i);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("task_type", "roundtrip", -1), RD_KAFKA_V_HEADER("task_id", val, -1),
            RD_KAFKA_V_END);
        assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_poll(p, 0);
    }
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(delivered_ok, NMSG);
    assert_int_equal(delivered_err, 0);
    rd_kafka_destroy(p);

    snprintf(group, sizeof(group), "%s-group", topic);
    memcpy(ccv, cconf, sizeof(ccv));
    ccv[1] = group;
    rd_kafka_t *c = new_client(RD_KAFKA_CONSUMER, ccv);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);

    time_t until = time(NULL) + 60;
    while (got < NMSG && time(NULL) < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 500);
        if (!m)
            continue;
        if (m->err) {
            fprintf(stderr, "consumer: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int idx = -1;
        if (m->len > 10 && sscanf((const char *)m->payload, "roundtrip-%d", &idx) == 1 &&
            idx >= 0 && idx < NMSG && !seen[idx]) {
            seen[idx] = 1;
            got++;
        }
        rd_kafka_headers_t *h;
        const void *hv;
        size_t hl;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(h, "task_type", &hv, &hl) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            hl == strlen("roundtrip") && memcmp(hv, "roundtrip", hl) == 0)
            with_headers++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    assert_int_equal(got, NMSG);
    assert_int_equal(with_headers, NMSG);
}

/* A transactional producer learns the topic's partitions ahead: a topic
 * that exists counts, one that does not is reported as not learnt (the
 * broker does not create topics here), and the producer then writes to the
 * learnt topic in a transaction. */
static void test_txn_learn_topics(void **state)
{
    (void)state;
    char err[512] = "", txid[160], missing[160];
    const char *extra[] = {"log_level", "0", NULL};
    rd_kafka_conf_t *conf = mq_conf_build(brokers, NULL, extra, err, sizeof(err));
    assert_non_null(conf);
    snprintf(txid, sizeof(txid), "%s-txn", topic);
    mq_txn_t *t = mq_txn_new(conf, txid, 30000, err, sizeof(err));
    if (!t)
        fail_msg("mq_txn_new: %s", err);
    snprintf(missing, sizeof(missing), "%s-missing", topic);
    const char *topics[] = {topic, missing};
    assert_int_equal(mq_txn_learn_topics(t, topics, 2, 5000), 1);
    assert_int_equal(mq_txn_begin(t, err, sizeof(err)), MQ_OK);
    assert_int_equal(mq_txn_produce(t, topic, -1, "k", 1, "learnt", 6, NULL, 0), MQ_OK);
    assert_int_equal(mq_txn_abort(t, 30000), MQ_OK);
    mq_txn_destroy(&t);
    assert_null(t);
}

/* ---- mq_consumer: the record a handler sees ----------------------------- */

#define NCOPY 2

typedef struct {
    pthread_mutex_t lock;
    int got;
    int64_t offset[NCOPY]; /* from the delivery reports */
    struct {
        char topic[160], key[16], value[32], h[16], type[16];
        int32_t partition;
        int64_t offset, timestamp;
        bool key_null, value_null;
        size_t key_len, len;
        ssize_t hlen;
    } seen[NCOPY];
    mq_consumer_t *c;
} copy_state_t;

static copy_state_t cs = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void copy_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    intptr_t i = (intptr_t)m->_private;
    if (!m->err && i >= 0 && i < NCOPY)
        cs.offset[i] = m->offset;
}

static mq_verdict_t copy_filter(void *opaque, const rd_kafka_message_t *m, int64_t *not_before,
                                void **user)
{
    char type[16];
    (void)opaque;
    (void)not_before;
    (void)user;
    if (mq_header_get(m, "task_type", type, sizeof(type)) < 0 || strcmp(type, "copy") != 0)
        return MQ_SKIP; /* the other test's records */
    return MQ_ACCEPT;
}

static void copy_handle(void *opaque, mq_msg_t *msg)
{
    const mq_record_t *r = mq_msg_record(msg);
    (void)opaque;
    pthread_mutex_lock(&cs.lock);
    if (cs.got < NCOPY) {
        __typeof__(cs.seen[0]) *s = &cs.seen[cs.got++];
        snprintf(s->topic, sizeof(s->topic), "%s", r->topic);
        s->partition = r->partition;
        s->offset = r->offset;
        s->timestamp = r->timestamp;
        s->key_null = r->key == NULL;
        s->key_len = r->key_len;
        if (r->key && r->key_len < sizeof(s->key))
            memcpy(s->key, r->key, r->key_len);
        s->value_null = r->payload == NULL;
        s->len = r->len;
        if (r->payload && r->len < sizeof(s->value))
            memcpy(s->value, r->payload, r->len);
        s->hlen = mq_headers_get(r->headers, "h", s->h, sizeof(s->h));
        mq_headers_get(r->headers, "task_type", s->type, sizeof(s->type));
    }
    if (cs.got == NCOPY)
        mq_consumer_stop(cs.c);
    pthread_mutex_unlock(&cs.lock);
}

static void *copy_run(void *arg)
{
    mq_consumer_run(arg, 5000);
    return NULL;
}

/* A consumer of the test topic, group <topic>-<suffix>, two workers, from
 * the earliest records, run by a thread of its own (*th); *out is set
 * before the thread starts (the handlers stop the consumer through it). */
static void start_consumer(const char *suffix, bool ordered, int max_in_flight,
                           mq_verdict_t (*filter)(void *, const rd_kafka_message_t *, int64_t *,
                                                  void **),
                           void (*handle)(void *, mq_msg_t *), mq_consumer_t **out, pthread_t *th)
{
    char err[512] = "", group[192];
    snprintf(group, sizeof(group), "%s-%s", topic, suffix);
    const char *extra[] = {"auto.offset.reset", "earliest", "log_level", "0", NULL};
    rd_kafka_conf_t *cc = mq_conf_build(brokers, NULL, extra, err, sizeof(err));
    assert_non_null(cc);
    const char *topics[] = {topic, NULL};
    mq_consumer_opts_t o = {.group_id = group,
                            .topics = topics,
                            .workers = 2,
                            .max_in_flight = max_in_flight,
                            .max_delayed = 4,
                            .revoke_timeout_ms = 5000,
                            .poll_interval_ms = 100,
                            .ordered_partitions = ordered,
                            .filter = filter,
                            .handle = handle};
    *out = mq_consumer_new(cc, &o, err, sizeof(err));
    if (!*out)
        fail_msg("mq_consumer_new: %s", err);
    assert_int_equal(pthread_create(th, NULL, copy_run, *out), 0);
}

/* The consumer copies each record out of librdkafka before the handler
 * runs (so a held task does not pin its fetch response): the copy keeps
 * the topic, partition, offset, timestamp, key, value and headers, an
 * empty value stays distinct from a missing key, and other records are
 * skipped by the filter. */
static void test_consumer_records(void **state)
{
    (void)state;
    char err[512] = "";
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set_dr_msg_cb(pc, copy_dr);
    assert_int_equal(rd_kafka_conf_set(pc, "bootstrap.servers", brokers, err, sizeof(err)), 0);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(
        rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(1), RD_KAFKA_V_KEY("kc", 2),
            RD_KAFKA_V_VALUE("copy-1", 6), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_TIMESTAMP(1700000000123), RD_KAFKA_V_HEADER("task_type", "copy", -1),
            RD_KAFKA_V_HEADER("h", "first", -1), RD_KAFKA_V_HEADER("h", "last", -1),
            RD_KAFKA_V_OPAQUE((void *)(intptr_t)0), RD_KAFKA_V_END),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(1),
                                       RD_KAFKA_V_VALUE("", 0),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_TIMESTAMP(1700000000456),
                                       RD_KAFKA_V_HEADER("task_type", "copy", -1),
                                       RD_KAFKA_V_OPAQUE((void *)(intptr_t)1), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);

    pthread_t th;
    start_consumer("copy", false, 16, copy_filter, copy_handle, &cs.c, &th);
    for (int i = 0; i < 600; i++) { /* 60 s at most */
        pthread_mutex_lock(&cs.lock);
        int got = cs.got;
        pthread_mutex_unlock(&cs.lock);
        if (got == NCOPY)
            break;
        usleep(100 * 1000);
    }
    mq_consumer_stop(cs.c);
    pthread_join(th, NULL);
    mq_consumer_destroy(&cs.c);

    assert_int_equal(cs.got, NCOPY);
    for (int i = 0; i < NCOPY; i++) { /* one partition: in offset order */
        assert_string_equal(cs.seen[i].topic, topic);
        assert_int_equal(cs.seen[i].partition, 1);
        assert_int_equal(cs.seen[i].offset, cs.offset[i]);
        assert_string_equal(cs.seen[i].type, "copy");
    }
    assert_int_equal(cs.seen[0].timestamp, 1700000000123);
    assert_false(cs.seen[0].key_null);
    assert_int_equal(cs.seen[0].key_len, 2);
    assert_memory_equal(cs.seen[0].key, "kc", 2);
    assert_int_equal(cs.seen[0].len, 6);
    assert_memory_equal(cs.seen[0].value, "copy-1", 6);
    assert_int_equal(cs.seen[0].hlen, 4); /* the last of two "h" headers */
    assert_string_equal(cs.seen[0].h, "last");
    assert_int_equal(cs.seen[1].timestamp, 1700000000456);
    assert_true(cs.seen[1].key_null);
    assert_int_equal(cs.seen[1].key_len, 0);
    assert_false(cs.seen[1].value_null); /* empty, not missing */
    assert_int_equal(cs.seen[1].len, 0);
    assert_int_equal(cs.seen[1].hlen, -1);
}

/* ---- ordered mode: the workers share one queue ----------------------- */

/* records: partition 0 "block" + 2, partition 1 "hold" + 3, partition 2
 * (written later) 3 */
#define ORD_P1 4
#define ORD_P2 3

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mq_consumer_t *c;
    bool release_block, release_hold; /* the held records may finish */
    bool block_started, hold_started;
    bool block_running;    /* partition 0's first record is in its handler */
    int got, others_done;  /* handled in all; of partitions 1 and 2 */
    int running[NPART];    /* handlers of a partition running at once */
    int overlap;           /* a partition had two at once */
    int64_t last[NPART];   /* offset of its last handled record */
    int out_of_order;      /* a partition's records handled out of offset order */
    int others_while_held; /* of partitions 1 and 2 while partition 0's first was held */
} ord = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static mq_verdict_t ord_filter(void *opaque, const rd_kafka_message_t *m, int64_t *not_before,
                               void **user)
{
    char type[16];
    (void)opaque;
    (void)not_before;
    (void)user;
    if (mq_header_get(m, "task_type", type, sizeof(type)) < 0 || strcmp(type, "ord") != 0)
        return MQ_SKIP; /* the other tests' records */
    return MQ_ACCEPT;
}

/* Wait (the caller holds ord.lock) until *flag, at most secs. The test
 * waits 30 s at most for a step, the held records 120 s for the test: a
 * held record is never let go by its own bound while the test looks. */
static void ord_wait(const bool *flag, int secs)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += secs;
    while (!*flag)
        if (pthread_cond_timedwait(&ord.cond, &ord.lock, &until) != 0)
            break;
}

static void ord_handle(void *opaque, mq_msg_t *msg)
{
    const mq_record_t *r = mq_msg_record(msg);
    int p = (int)r->partition;
    (void)opaque;
    pthread_mutex_lock(&ord.lock);
    if (++ord.running[p] > 1)
        ord.overlap++;
    if (r->offset <= ord.last[p])
        ord.out_of_order++;
    ord.last[p] = r->offset;
    if (r->len == 5 && memcmp(r->payload, "block", 5) == 0) {
        ord.block_started = ord.block_running = true;
        pthread_cond_broadcast(&ord.cond);
        ord_wait(&ord.release_block, 120);
        ord.block_running = false;
    } else if (r->len == 4 && memcmp(r->payload, "hold", 4) == 0) {
        ord.hold_started = true;
        pthread_cond_broadcast(&ord.cond);
        ord_wait(&ord.release_hold, 120);
    }
    ord.running[p]--;
    ord.got++;
    if (p != 0) {
        ord.others_done++;
        if (ord.block_running)
            ord.others_while_held++;
    }
    pthread_cond_broadcast(&ord.cond);
    if (ord.got == 3 + ORD_P1 + ORD_P2)
        mq_consumer_stop(ord.c);
    pthread_mutex_unlock(&ord.lock);
}

static void ord_produce(int part, const char *first, int n)
{
    rd_kafka_t *p = new_client(RD_KAFKA_PRODUCER, NULL);
    for (int i = 0; i < n; i++) {
        const char *v = i == 0 && first ? first : "work";
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                                           RD_KAFKA_V_VALUE((void *)v, strlen(v)),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_HEADER("task_type", "ord", -1),
                                           RD_KAFKA_V_END),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

/* Ordered mode (one record of a partition at a time, in offset order, as
 * exactly-once processing needs), two workers: partition 0's first record
 * is held for the whole case and partition 1's first until partition 2's
 * records have arrived (both workers busy meanwhile). Then the freed worker
 * runs the rest of partition 1 and all of partition 2: a partition waits
 * only for itself. (Before, a partition was pinned to a worker while it had
 * records queued there, and partition 2 joined the worker with fewer
 * queued, partition 0's, behind its held record, while the other worker
 * went idle.) */
static void test_ordered_shared_queue(void **state)
{
    (void)state;
    for (int i = 0; i < NPART; i++)
        ord.last[i] = -1;
    ord_produce(0, "block", 3);
    ord_produce(1, "hold", ORD_P1);

    pthread_t th;
    start_consumer("ord", true, 64, ord_filter, ord_handle, &ord.c, &th);

    pthread_mutex_lock(&ord.lock);
    ord_wait(&ord.block_started, 30);
    ord_wait(&ord.hold_started, 30);
    bool both = ord.block_started && ord.hold_started;
    pthread_mutex_unlock(&ord.lock);
    ord_produce(2, NULL, ORD_P2);
    sleep(2); /* the consumer takes them meanwhile (not a timing check: any delay passes) */
    pthread_mutex_lock(&ord.lock);
    ord.release_hold = true;
    pthread_cond_broadcast(&ord.cond);
    /* liveness bound only: the records take milliseconds */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    while (ord.others_done < ORD_P1 + ORD_P2)
        if (pthread_cond_timedwait(&ord.cond, &ord.lock, &until) != 0)
            break;
    int while_held = ord.others_while_held;
    ord.release_block = true;
    pthread_cond_broadcast(&ord.cond);
    pthread_mutex_unlock(&ord.lock);

    pthread_join(th, NULL);
    mq_consumer_destroy(&ord.c);
    assert_true(both); /* the two held records ran at once, one per worker */
    assert_int_equal(ord.got, 3 + ORD_P1 + ORD_P2);
    if (while_held != ORD_P1 + ORD_P2)
        fail_msg("%d of the %d records of partitions 1 and 2 ran while partition 0's first was "
                 "held: a partition waited for another",
                 while_held, ORD_P1 + ORD_P2);
    assert_int_equal(ord.overlap, 0);      /* one at a time per partition */
    assert_int_equal(ord.out_of_order, 0); /* in offset order */
}

/* The partition count of a topic, from the cluster; -1 for a topic that
 * does not exist (the stack's broker does not create topics on demand). */
static void test_topic_partitions(void **state)
{
    (void)state;
    char missing[160];
    rd_kafka_t *p = new_client(RD_KAFKA_PRODUCER, NULL);
    assert_int_equal(mq_topic_partitions(p, topic, 10000), NPART);
    snprintf(missing, sizeof(missing), "%s-missing", topic);
    assert_int_equal(mq_topic_partitions(p, missing, 10000), -1);
    rd_kafka_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_produce_consume),  cmocka_unit_test(test_txn_learn_topics),
        cmocka_unit_test(test_consumer_records), cmocka_unit_test(test_ordered_shared_queue),
        cmocka_unit_test(test_topic_partitions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
