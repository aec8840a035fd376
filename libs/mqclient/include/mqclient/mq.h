/* mq.h: Kafka for im-task, on librdkafka: a producer whose every record is
 * confirmed by its delivery report, and a consumer that runs messages on a
 * pool of workers at least once, in bounded memory.
 *
 * Consumer guarantees (see docs/runtime.md):
 * - An offset is stored only when that message and every earlier message of
 *   its partition is finished (enable.auto.offset.store=false; librdkafka
 *   auto-commits what is stored, and we commit explicitly on revoke/close).
 * - Messages of different partitions run in parallel; within a partition,
 *   messages with the same key run one after the other in offset order, those
 *   with different keys (or no key) may run in parallel.
 * - At most max_in_flight messages are held; at the bound every assigned
 *   partition is paused (librdkafka drops its prefetched messages and resumes
 *   from the next unconsumed offset), and polling goes on, so the member is
 *   never evicted for slow work.
 * - Rebalance (cooperative-sticky): revoked partitions take no new work, their
 *   in-flight messages get up to revoke_timeout to finish, finished offsets are
 *   committed before the revoke completes; offsets of lost partitions are never
 *   stored.
 *
 * Threads: mq_consumer_run() runs the poll loop on the calling thread and owns
 * all offset bookkeeping; the handler runs on worker threads; mq_msg_release
 * may be called from any thread (e.g. a producer's delivery callback).
 */
#ifndef MQCLIENT_MQ_H
#define MQCLIENT_MQ_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infra/config.h"
#include "infra/metrics.h"

/* ---- errors ----------------------------------------------------------- */

typedef enum {
    MQ_OK = 0,
    MQ_ERR_CONFIG = 1, /* a property librdkafka refused */
    MQ_ERR_NOMEM = 2,
    MQ_ERR_KAFKA = 3, /* see the message; may be retriable */
    MQ_ERR_TIMEOUT = 4,
    MQ_ERR_QUEUE_FULL = 5, /* local producer queue full: retriable */
    MQ_ERR_INVALID = 6,    /* bad argument */
    MQ_ERR_FATAL = 7,      /* librdkafka fatal error (e.g. fenced producer) */
} mq_err_t;

const char *mq_err_str(mq_err_t err);
bool mq_err_is_retriable(mq_err_t err);

#define MQ_MAX_HEADERS 32
#define MQ_ERRSTR_MAX 512

/* Build a librdkafka conf from bootstrap servers, the `kafka:` passthrough
 * properties (in order), then `extra` (NULL-terminated key, value pairs;
 * these win). Returns NULL with a message naming the property on error. */
rd_kafka_conf_t *mq_conf_build(const char *brokers, const cfg_kvs_t *props,
                               const char *const *extra, char *err, size_t errlen);

/* ---- headers ---------------------------------------------------------- */

typedef struct {
    const char *name;
    const void *value; /* NULL: a header with no value */
    size_t len;
} mq_header_t;

/* The value of the last header `name` of a message as a NUL-terminated copy in
 * buf (cut to buflen-1). Returns the value length, or -1 when absent. */
ssize_t mq_header_get(const rd_kafka_message_t *m, const char *name, char *buf, size_t buflen);
/* The same on a list of headers (NULL: none). */
ssize_t mq_headers_get(const rd_kafka_headers_t *h, const char *name, char *buf, size_t buflen);

/* A consumed record as a handler sees it (mq_msg_record). The consumer copies
 * it out of librdkafka when it takes it: librdkafka's records point into the
 * fetch response they came in, which stays allocated while any of its records
 * lives, so a record held for a long task would pin the whole response. */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* ms since the epoch; -1 when the record has none */
    const void *key;   /* NULL: none */
    size_t key_len;
    const void *payload; /* NULL: none */
    size_t len;
    rd_kafka_headers_t *headers; /* NULL: none */
} mq_record_t;

/* ---- producer --------------------------------------------------------- */

typedef struct mq_producer_s mq_producer_t;

/* Called once per record from the producer's poll thread; err MQ_OK when the
 * broker acknowledged it (with acks=all, idempotence on). */
typedef void(mq_delivery_cb)(void *opaque, mq_err_t err, const char *errstr, int32_t partition,
                             int64_t offset);

/* An idempotent producer (enable.idempotence=true) with its own thread serving
 * delivery reports. conf is consumed on success only. */
mq_producer_t *mq_producer_new(rd_kafka_conf_t *conf, char *err, size_t errlen);
/* Flush up to timeout_ms, then free; NULL is a no-op; sets *pp to NULL. */
void mq_producer_destroy(mq_producer_t **pp, int timeout_ms);

/* Queue one record; cb(opaque, ...) reports the outcome exactly once unless
 * this returns an error. partition -1: by key (murmur2_random). Copies all
 * data. On a full local queue it waits up to block_ms for room. */
mq_err_t mq_produce(mq_producer_t *p, const char *topic, int32_t partition, const void *key,
                    size_t keylen, const void *value, size_t len, const mq_header_t *headers,
                    size_t nheaders, int block_ms, mq_delivery_cb *cb, void *opaque);
/* Produce and wait for the delivery report (up to timeout_ms). */
mq_err_t mq_produce_sync(mq_producer_t *p, const char *topic, int32_t partition, const void *key,
                         size_t keylen, const void *value, size_t len, const mq_header_t *headers,
                         size_t nheaders, int timeout_ms, char *errstr, size_t errlen);
mq_err_t mq_producer_flush(mq_producer_t *p, int timeout_ms);
rd_kafka_t *mq_producer_handle(mq_producer_t *p);
/* The partition count of topic, asked of the cluster (one metadata request,
 * at most timeout_ms), or -1 when it cannot be known (no such topic, no
 * broker). */
int mq_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms);
/* Records queued and not yet reported. */
int mq_producer_outq_len(mq_producer_t *p);

/* ---- transactional producer -------------------------------------------- */

/* Outputs and the input offset committed together (Kafka transactions with
 * KIP-447 group-metadata fencing): readers with isolation.level=
 * read_committed see a task's outputs exactly once. Begin, commit and abort
 * are called by one thread at a time; while the transaction is open, several
 * threads may produce into it. */
typedef struct mq_txn_s mq_txn_t;

/* conf is consumed on success only. transactional_id must be unique among
 * live producers. Calls init_transactions (fencing an older producer with the
 * same id). */
mq_txn_t *mq_txn_new(rd_kafka_conf_t *conf, const char *transactional_id, int timeout_ms, char *err,
                     size_t errlen);
void mq_txn_destroy(mq_txn_t **tp); /* aborts an open transaction; NULL no-op */
/* Learn the partitions and leaders of topics the producer will write, so
 * its first records to them do not wait for metadata (up to a second seen);
 * the producer keeps a handle of each. At most timeout_ms per topic; returns how
 * many were learnt (a topic that does not exist or times out is learnt on
 * its first record instead). */
int mq_txn_learn_topics(mq_txn_t *t, const char *const *topics, size_t n, int timeout_ms);
mq_err_t mq_txn_begin(mq_txn_t *t, char *errstr, size_t errlen);
/* Queue a record in the open transaction; its outcome is known at commit.
 * partition -1 (RD_KAFKA_PARTITION_UA): the key's, by the partitioner. */
mq_err_t mq_txn_produce(mq_txn_t *t, const char *topic, int32_t partition, const void *key,
                        size_t keylen, const void *value, size_t len, const mq_header_t *headers,
                        size_t nheaders);
/* Add the offset after `input` for the group of `consumer` and commit.
 * MQ_OK: outputs and offset are committed. MQ_ERR_KAFKA: aborted, nothing
 * visible, try again. MQ_ERR_FATAL: the producer is unusable (fenced):
 * destroy it and make a new one. */
mq_err_t mq_txn_commit(mq_txn_t *t, const mq_record_t *input, rd_kafka_t *consumer, int timeout_ms,
                       char *errstr, size_t errlen);
/* The same for the inputs of several tasks whose outputs share the open
 * transaction (n >= 1; per partition the offset after the latest input). */
mq_err_t mq_txn_commit_many(mq_txn_t *t, const mq_record_t *const *inputs, size_t n,
                            rd_kafka_t *consumer, int timeout_ms, char *errstr, size_t errlen);
mq_err_t mq_txn_abort(mq_txn_t *t, int timeout_ms);

/* ---- consumer --------------------------------------------------------- */

typedef struct mq_consumer_s mq_consumer_t;
typedef struct mq_msg_s mq_msg_t;

typedef enum {
    MQ_ACCEPT = 0, /* run it on a worker (possibly after *not_before_ms) */
    MQ_SKIP = 1,   /* not ours: finished at once, offset advances */
} mq_verdict_t;

typedef struct {
    const char *group_id;
    const char *const *topics; /* NULL-terminated */
    int workers;               /* threads running the handler, >= 1 */
    int max_in_flight;         /* messages held at once (running + queued + delayed) */
    int max_delayed;           /* of which waiting for a not_before time */
    int64_t revoke_timeout_ms; /* how long a revoke waits for in-flight work */
    int64_t poll_interval_ms;  /* poll timeout: bounds the latency of completions */
    /* One message of a partition at a time, in offset order (for
     * transactions: committing offset N+1 is then safe). The workers share
     * one queue: a free worker takes the oldest message of a partition no
     * other worker is running, the partitions with work taking turns, so no
     * worker waits while another partition has work. A delayed message
     * pauses its partition until it is due. */
    bool ordered_partitions;
    /* Offsets are committed by the handler's transactions (mq_txn_commit),
     * never by the consumer: no offset store, no auto-commit, no commit on
     * revoke or close. A consumer commit could move the group's offset back
     * behind one a transaction committed (its tracker lags the transactions),
     * and a crash would then redo committed work. Skipped records' offsets
     * advance with the next transaction of their partition. Needs
     * ordered_partitions. */
    bool offsets_by_transaction;

    /* On the poll thread, for every message: accept or skip, cheaply (headers
     * only). May set *not_before_ms (Unix ms) to delay an accepted message,
     * and *user to what it learnt (mq_msg_user gives it to the handler). */
    mq_verdict_t (*filter)(void *opaque, const rd_kafka_message_t *m, int64_t *not_before_ms,
                           void **user);
    /* On a worker: do the work. The message is finished when handle returns,
     * unless it took references with mq_msg_hold; then when the last
     * mq_msg_release comes. */
    void (*handle)(void *opaque, mq_msg_t *msg);
    void *opaque;

    metrics_registry_t *metrics; /* may be NULL */
} mq_consumer_opts_t;

/* conf: built with mq_conf_build; the consumer sets group.id,
 * enable.auto.offset.store=false, enable.auto.commit=true,
 * partition.assignment.strategy=cooperative-sticky and the rebalance callback
 * (and leaves the rest). conf is consumed on success only. */
mq_consumer_t *mq_consumer_new(rd_kafka_conf_t *conf, const mq_consumer_opts_t *opts, char *err,
                               size_t errlen);
/* Poll, dispatch and track until mq_consumer_stop; then stop fetching, wait
 * up to grace_ms for in-flight work, store and commit finished offsets and
 * leave the group. Returns MQ_OK when everything in flight finished. */
mq_err_t mq_consumer_run(mq_consumer_t *c, int64_t grace_ms);
/* Ask run() to stop; any thread, async-signal-unsafe. */
void mq_consumer_stop(mq_consumer_t *c);
void mq_consumer_destroy(mq_consumer_t **cp); /* after run returned; NULL no-op */

/* True once the member has joined its group (got its first assignment, maybe
 * empty) and is not stopping: the readiness of a task binary. */
bool mq_consumer_ready(const mq_consumer_t *c);
/* True when the in-flight work is past its grace: handlers should give up. */
bool mq_consumer_cancelled(const mq_consumer_t *c);
rd_kafka_t *mq_consumer_handle(mq_consumer_t *c);
int mq_consumer_in_flight(const mq_consumer_t *c);

/* The record of a handler call. Valid until it is finished. */
const mq_record_t *mq_msg_record(const mq_msg_t *msg);
/* Take one more reference: the message stays unfinished until released. */
void mq_msg_hold(mq_msg_t *msg);
/* Drop a reference taken with mq_msg_hold. Any thread. */
void mq_msg_release(mq_msg_t *msg);
/* The message could not be finished (e.g. its dead-letter record could not
 * be written before shutdown): when its last reference goes, its offset is
 * NOT marked done, so neither it nor any later offset of its partition is
 * committed by this member; it is consumed again after a rebalance or
 * restart. Nothing is dropped. */
void mq_msg_abandon(mq_msg_t *msg);
/* True when the message's partition was revoked or lost since it was
 * handed out: its result no longer counts (the next owner consumes it again),
 * so a handler may stop retrying. Any thread. */
bool mq_msg_revoked(const mq_msg_t *msg);
/* The handler's per-message slot (e.g. the decoded task); not touched by mq. */
void mq_msg_set_user(mq_msg_t *msg, void *user);
void *mq_msg_user(const mq_msg_t *msg);
mq_consumer_t *mq_msg_consumer(const mq_msg_t *msg);

#endif
