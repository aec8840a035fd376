/* txn.c: transactional producer: a task's outputs and its input offset
 * committed in one Kafka transaction. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/log.h"
#include "mqclient/mq.h"

#define MQ_TXN_RETRIES 5 /* retriable errors of one transactional call */

#ifndef MQ_TXN_TOPICS      /* a test builds with fewer */
#define MQ_TXN_TOPICS 1024 /* topic handles kept per producer (a power of 2) */
#endif
#define MQ_TXN_FULL_WAITS 10000 /* waits of 1 ms for room in a full queue */

typedef struct {
    uint64_t hash; /* mq_txn_name_hash(name) */
    rd_kafka_topic_t *rkt;
    char name[];
} mq_txn_topic_t;

/* Records are produced through topic handles, made on a topic's first record
 * (or mq_txn_learn_topics) and kept: producing by name takes the client's
 * write lock and compares the name with every known topic's, which with the
 * four workers of a fan-out on one producer was 11 % of their CPU (perf); a
 * handle does neither. A slot is filled once, under topics_lock, and read
 * without it; past MQ_TXN_TOPICS topics a record makes a handle for itself
 * (what producing by name does). */
struct mq_txn_s {
    rd_kafka_t *rk;
    bool open;
    pthread_mutex_t topics_lock;
    size_t ntopics;
    _Atomic(mq_txn_topic_t *) topics[2 * MQ_TXN_TOPICS]; /* open addressing */
};

_Static_assert((MQ_TXN_TOPICS & (MQ_TXN_TOPICS - 1)) == 0, "topics: a power of 2");

/* A topic name's hash, 8 bytes a step: it is taken for every record, and
 * with str_hash's byte steps mq_txn_topic was 6 % of a fan-out worker's CPU
 * (perf); 8-byte steps saved 330 instructions per downlink (callgrind). */
static uint64_t mq_txn_name_hash(const char *s)
{
    const uint64_t k = 0x9e3779b97f4a7c15ULL;
    size_t len = strlen(s), i = 0;
    uint64_t h = len * k, w;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, s + i, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    for (w = 0; i < len; i++)
        w = w << 8 | (unsigned char)s[i];
    h = (h ^ w) * k;
    return h ^ h >> 32;
}

/* Probes from *i for name (hash h): its entry, or NULL with *i at the empty
 * slot that ends its run. Slots are only ever filled, never emptied, so a
 * probe may go on later from that slot, which another thread may have
 * filled meanwhile. */
static mq_txn_topic_t *mq_txn_find(mq_txn_t *t, const char *name, uint64_t h, size_t *i)
{
    const size_t mask = sizeof(t->topics) / sizeof(t->topics[0]) - 1;
    mq_txn_topic_t *e;
    for (; (e = atomic_load_explicit(&t->topics[*i], memory_order_acquire)); *i = (*i + 1) & mask) {
        if (e->hash == h && strcmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

/* The producer's kept handle of a topic, made if there is room; NULL when
 * there is none (or no memory): the caller makes a handle of its own. */
static rd_kafka_topic_t *mq_txn_topic(mq_txn_t *t, const char *name)
{
    const uint64_t h = mq_txn_name_hash(name);
    size_t i = h & (sizeof(t->topics) / sizeof(t->topics[0]) - 1);
    mq_txn_topic_t *e = mq_txn_find(t, name, h, &i);

    if (e)
        return e->rkt;
    pthread_mutex_lock(&t->topics_lock);
    e = mq_txn_find(t, name, h, &i); /* made by another thread meanwhile? */
    if (!e && t->ntopics < MQ_TXN_TOPICS) {
        size_t len = strlen(name);
        e = malloc(sizeof(*e) + len + 1);
        if (e && !(e->rkt = rd_kafka_topic_new(t->rk, name, NULL))) {
            free(e);
            e = NULL;
        }
        if (e) {
            e->hash = h;
            memcpy(e->name, name, len + 1);
            atomic_store_explicit(&t->topics[i], e, memory_order_release);
            t->ntopics++;
        }
    }
    pthread_mutex_unlock(&t->topics_lock);
    return e ? e->rkt : NULL;
}

/* Turn a transactional API error into our error, logging it. */
static mq_err_t mq_txn_err(mq_txn_t *t, rd_kafka_error_t *e, const char *what, char *errstr,
                           size_t errlen)
{
    mq_err_t err = rd_kafka_error_is_fatal(e) ? MQ_ERR_FATAL : MQ_ERR_KAFKA;
    if (errstr)
        snprintf(errstr, errlen, "%s: %s", what, rd_kafka_error_string(e));
    log_warn("transaction %s: %s%s", what, rd_kafka_error_string(e),
             err == MQ_ERR_FATAL ? " (fatal: the producer must be replaced)" : "");
    if (err != MQ_ERR_FATAL && rd_kafka_error_txn_requires_abort(e))
        mq_txn_abort(t, 30000);
    rd_kafka_error_destroy(e);
    return err;
}

mq_txn_t *mq_txn_new(rd_kafka_conf_t *conf, const char *transactional_id, int timeout_ms, char *err,
                     size_t errlen)
{
    char rderr[256];
    rd_kafka_error_t *e;
    mq_txn_t *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (rd_kafka_conf_set(conf, "transactional.id", transactional_id, rderr, sizeof(rderr)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "transactional.id: %s", rderr);
        free(t);
        return NULL;
    }
    /* the producer gets a copy: if init_transactions fails, the producer
     * (and what it was given) is destroyed, while conf stays the caller's */
    rd_kafka_conf_t *own = rd_kafka_conf_dup(conf);
    t->rk = own ? rd_kafka_new(RD_KAFKA_PRODUCER, own, rderr, sizeof(rderr)) : NULL;
    if (!t->rk) {
        snprintf(err, errlen, "cannot create the transactional producer: %s",
                 own ? rderr : "out of memory");
        if (own)
            rd_kafka_conf_destroy(own);
        free(t);
        return NULL;
    }
    e = rd_kafka_init_transactions(t->rk, timeout_ms);
    if (e) {
        snprintf(err, errlen, "init_transactions (%s): %s", transactional_id,
                 rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rd_kafka_destroy(t->rk); /* with own */
        free(t);
        return NULL;
    }
    rd_kafka_conf_destroy(conf);
    pthread_mutex_init(&t->topics_lock, NULL);
    return t;
}

void mq_txn_destroy(mq_txn_t **tp)
{
    mq_txn_t *t = tp ? *tp : NULL;
    if (!t)
        return;
    if (t->open)
        mq_txn_abort(t, 10000);
    for (size_t i = 0; i < sizeof(t->topics) / sizeof(t->topics[0]); i++) {
        mq_txn_topic_t *e = atomic_load_explicit(&t->topics[i], memory_order_relaxed);
        if (e) {
            rd_kafka_topic_destroy(e->rkt);
            free(e);
        }
    }
    pthread_mutex_destroy(&t->topics_lock);
    rd_kafka_destroy(t->rk);
    free(t);
    *tp = NULL;
}

int mq_txn_learn_topics(mq_txn_t *t, const char *const *topics, size_t n, int timeout_ms)
{
    int learnt = 0;
    for (size_t i = 0; i < n; i++) {
        /* the kept handle first: the producer keeps the leaders of a topic
         * it has a handle of */
        if (mq_txn_topic(t, topics[i]) && mq_topic_partitions(t->rk, topics[i], timeout_ms) > 0)
            learnt++;
    }
    return learnt;
}

mq_err_t mq_txn_begin(mq_txn_t *t, char *errstr, size_t errlen)
{
    rd_kafka_error_t *e = rd_kafka_begin_transaction(t->rk);
    if (e)
        return mq_txn_err(t, e, "begin", errstr, errlen);
    t->open = true;
    return MQ_OK;
}

mq_err_t mq_txn_produce(mq_txn_t *t, const char *topic, int32_t partition, const void *key,
                        size_t keylen, const void *value, size_t len, const mq_header_t *headers,
                        size_t nheaders)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t e;
    rd_kafka_topic_t *rkt, *own = NULL;
    if (!t->open || nheaders > MQ_MAX_HEADERS)
        return MQ_ERR_INVALID;
    if (!(rkt = mq_txn_topic(t, topic)) && !(rkt = own = rd_kafka_topic_new(t->rk, topic, NULL))) {
        log_warn("transactional produce to %s: cannot make a topic handle", topic);
        return MQ_ERR_KAFKA;
    }
    for (int tries = 0;; tries++) {
        if (nheaders) {
            hdrs = rd_kafka_headers_new(nheaders);
            for (size_t i = 0; i < nheaders; i++)
                rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                    (ssize_t)headers[i].len);
        }
        e = rd_kafka_producev(t->rk, RD_KAFKA_V_RKT(rkt),
                              RD_KAFKA_V_PARTITION(partition), /* -1: RD_KAFKA_PARTITION_UA */
                              RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                              RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        rd_kafka_headers_destroy(hdrs);
        hdrs = NULL;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries >= MQ_TXN_FULL_WAITS)
            break;
        /* The queue is full: its batches are as big as they will get, so send
         * them now (a flush overrides linger.ms) rather than wait out the
         * linger; try again after at most 1 ms. Not longer: a flush returns
         * early only when the whole queue is delivered, and the threads that
         * share the producer would let it run dry before refilling it (with a
         * 10 ms wait the shared producer's 1M fan-out ran at 205,000-252,000
         * downlinks/s, with 1 ms at 210,000-275,000 in alternating runs). */
        rd_kafka_flush(t->rk, 1);
    }
    if (own)
        rd_kafka_topic_destroy(own);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return MQ_OK;
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return MQ_ERR_QUEUE_FULL;
    log_warn("transactional produce to %s: %s", topic, rd_kafka_err2str(e));
    return e == RD_KAFKA_RESP_ERR__FATAL ? MQ_ERR_FATAL : MQ_ERR_KAFKA;
}

mq_err_t mq_txn_commit(mq_txn_t *t, const mq_record_t *input, rd_kafka_t *consumer, int timeout_ms,
                       char *errstr, size_t errlen)
{
    return mq_txn_commit_many(t, &input, 1, consumer, timeout_ms, errstr, errlen);
}

mq_err_t mq_txn_commit_many(mq_txn_t *t, const mq_record_t *const *inputs, size_t n,
                            rd_kafka_t *consumer, int timeout_ms, char *errstr, size_t errlen)
{
    rd_kafka_error_t *e = NULL;
    rd_kafka_consumer_group_metadata_t *meta;
    rd_kafka_topic_partition_list_t *offsets;

    if (!t->open || n == 0)
        return MQ_ERR_INVALID;
    meta = rd_kafka_consumer_group_metadata(consumer);
    offsets = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        /* one entry per partition: the offset after its latest input */
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(offsets, inputs[i]->topic, inputs[i]->partition);
        if (!p)
            p = rd_kafka_topic_partition_list_add(offsets, inputs[i]->topic, inputs[i]->partition);
        if (p->offset < inputs[i]->offset + 1)
            p->offset = inputs[i]->offset + 1;
    }
    for (int i = 0; i < MQ_TXN_RETRIES; i++) {
        e = rd_kafka_send_offsets_to_transaction(t->rk, offsets, meta, timeout_ms);
        if (!e || !rd_kafka_error_is_retriable(e))
            break;
        rd_kafka_error_destroy(e);
        e = NULL;
    }
    rd_kafka_topic_partition_list_destroy(offsets);
    rd_kafka_consumer_group_metadata_destroy(meta);
    if (e)
        return mq_txn_err(t, e, "send_offsets", errstr, errlen);
    for (int i = 0; i < MQ_TXN_RETRIES; i++) {
        e = rd_kafka_commit_transaction(t->rk, timeout_ms);
        if (!e || !rd_kafka_error_is_retriable(e))
            break;
        rd_kafka_error_destroy(e);
        e = NULL;
    }
    if (e)
        return mq_txn_err(t, e, "commit", errstr, errlen);
    t->open = false;
    return MQ_OK;
}

mq_err_t mq_txn_abort(mq_txn_t *t, int timeout_ms)
{
    rd_kafka_error_t *e;
    if (!t->open)
        return MQ_OK;
    /* Let the records already produced reach the broker first: librdkafka
     * (seen with 2.0.2 against Kafka 3.9; librdkafka#4849) may send EndTxn(abort) before
     * the coordinator has processed the transaction's first
     * AddPartitionsToTxn; the broker then answers INVALID_TXN_STATE, which
     * is fatal for the producer. A delivered record proves its partition
     * was added. Aborted records stay invisible to read_committed readers. */
    rd_kafka_flush(t->rk, timeout_ms);
    e = rd_kafka_abort_transaction(t->rk, timeout_ms);
    t->open = false;
    if (e) {
        mq_err_t err = rd_kafka_error_is_fatal(e) ? MQ_ERR_FATAL : MQ_ERR_KAFKA;
        log_warn("transaction abort: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return err;
    }
    return MQ_OK;
}
