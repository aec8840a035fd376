/* producer.c: idempotent producer with per-record delivery callbacks, a
 * thread serving delivery reports, and the shared conf/header helpers. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infra/clock.h"
#include "infra/log.h"
#include "mqclient/mq.h"

struct mq_producer_s {
    rd_kafka_t *rk;
    pthread_t thread;
    atomic_bool stop;
};

/* Per-record state carried as librdkafka's msg_opaque. */
typedef struct {
    mq_delivery_cb *cb;
    void *opaque;
} mq_dr_t;

static const char *const mq_err_strs[] = {
    [MQ_OK] = "success",
    [MQ_ERR_CONFIG] = "configuration refused",
    [MQ_ERR_NOMEM] = "out of memory",
    [MQ_ERR_KAFKA] = "kafka error",
    [MQ_ERR_TIMEOUT] = "timed out",
    [MQ_ERR_QUEUE_FULL] = "local producer queue full",
    [MQ_ERR_INVALID] = "invalid argument",
    [MQ_ERR_FATAL] = "fatal kafka error",
};

const char *mq_err_str(mq_err_t err)
{
    if ((size_t)err >= sizeof(mq_err_strs) / sizeof(mq_err_strs[0]) || !mq_err_strs[err])
        return "unknown error";
    return mq_err_strs[err];
}

bool mq_err_is_retriable(mq_err_t err)
{
    return err == MQ_ERR_KAFKA || err == MQ_ERR_TIMEOUT || err == MQ_ERR_QUEUE_FULL;
}

/* librdkafka's own log lines, as our JSON lines. */
static void mq_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 3 error, 4 warning, 5 notice, 6 info, 7 debug */
    log_level_t l = level <= 3   ? LOG_LEVEL_ERROR
                    : level == 4 ? LOG_LEVEL_WARN
                    : level <= 6 ? LOG_LEVEL_INFO
                                 : LOG_LEVEL_DEBUG;
    log_write(l, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

static void mq_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[256];
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        log_error("kafka %s: fatal: %s", rd_kafka_name(rk), fatal);
        return;
    }
    /* transport errors are retried by librdkafka; they are worth a warning */
    log_warn("kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err),
             reason);
}

rd_kafka_conf_t *mq_conf_build(const char *brokers, const cfg_kvs_t *props,
                               const char *const *extra, char *err, size_t errlen)
{
    char rderr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, rderr, sizeof(rderr)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka.brokers: %s", rderr);
        goto fail;
    }
    for (size_t i = 0; props && i < props->count; i++) {
        const cfg_kv_t *kv = &props->items[i];
        if (rd_kafka_conf_set(conf, kv->key, kv->value, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "%s: kafka.%s: %s", kv->origin, kv->key, rderr);
            goto fail;
        }
    }
    for (; extra && extra[0]; extra += 2) {
        if (rd_kafka_conf_set(conf, extra[0], extra[1], rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "%s: %s", extra[0], rderr);
            goto fail;
        }
    }
    rd_kafka_conf_set_log_cb(conf, mq_log_cb);
    rd_kafka_conf_set_error_cb(conf, mq_error_cb);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

ssize_t mq_header_get(const rd_kafka_message_t *m, const char *name, char *buf, size_t buflen)
{
    rd_kafka_headers_t *hdrs;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return mq_headers_get(hdrs, name, buf, buflen);
}

ssize_t mq_headers_get(const rd_kafka_headers_t *h, const char *name, char *buf, size_t buflen)
{
    const void *v;
    size_t len;
    if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    if (buf && buflen > 0) {
        size_t n = len < buflen - 1 ? len : buflen - 1;
        if (v)
            memcpy(buf, v, n);
        buf[n] = '\0';
    }
    return (ssize_t)len;
}

static void mq_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    mq_dr_t *dr = m->_private;
    mq_err_t err = MQ_OK;
    (void)rk;
    (void)opaque;
    if (!dr)
        return;
    if (m->err)
        err = m->err == RD_KAFKA_RESP_ERR__FATAL           ? MQ_ERR_FATAL
              : m->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ? MQ_ERR_TIMEOUT
                                                           : MQ_ERR_KAFKA;
    if (dr->cb)
        dr->cb(dr->opaque, err, m->err ? rd_kafka_err2str(m->err) : NULL, m->partition, m->offset);
    free(dr);
}

static void *mq_producer_thread(void *arg)
{
    mq_producer_t *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

mq_producer_t *mq_producer_new(rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    char rderr[256];
    mq_producer_t *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", rderr, sizeof(rderr)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "enable.idempotence: %s", rderr);
        free(p);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, mq_dr_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    if (!p->rk) {
        snprintf(err, errlen, "cannot create the kafka producer: %s", rderr);
        free(p);
        return NULL;
    }
    if (pthread_create(&p->thread, NULL, mq_producer_thread, p) != 0) {
        snprintf(err, errlen, "cannot start the producer thread");
        rd_kafka_destroy(p->rk); /* takes conf with it */
        free(p);
        return NULL;
    }
    return p;
}

void mq_producer_destroy(mq_producer_t **pp, int timeout_ms)
{
    mq_producer_t *p = pp ? *pp : NULL;
    if (!p)
        return;
    rd_kafka_flush(p->rk, timeout_ms);
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    if (rd_kafka_outq_len(p->rk) > 0)
        log_warn("producer closing with %d records not delivered", rd_kafka_outq_len(p->rk));
    /* records still queued report __DESTROY to their callbacks here */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->rk, 0);
    rd_kafka_destroy(p->rk);
    free(p);
    *pp = NULL;
}

rd_kafka_t *mq_producer_handle(mq_producer_t *p)
{
    return p->rk;
}

int mq_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return -1;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    int n = e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && !md->topics[0].err
                ? md->topics[0].partition_cnt
                : -1;
    if (n < 0)
        log_debug("metadata of %s: %s", topic,
                  e || !md->topic_cnt ? rd_kafka_err2str(e) : rd_kafka_err2str(md->topics[0].err));
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n > 0 ? n : -1;
}

int mq_producer_outq_len(mq_producer_t *p)
{
    return rd_kafka_outq_len(p->rk);
}

mq_err_t mq_producer_flush(mq_producer_t *p, int timeout_ms)
{
    return rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? MQ_OK : MQ_ERR_TIMEOUT;
}

mq_err_t mq_produce(mq_producer_t *p, const char *topic, int32_t partition, const void *key,
                    size_t keylen, const void *value, size_t len, const mq_header_t *headers,
                    size_t nheaders, int block_ms, mq_delivery_cb *cb, void *opaque)
{
    int64_t deadline = clock_mono_ms() + (block_ms > 0 ? block_ms : 0);
    rd_kafka_headers_t *hdrs = NULL;
    mq_dr_t *dr;
    rd_kafka_resp_err_t e;

    if (!topic || nheaders > MQ_MAX_HEADERS)
        return MQ_ERR_INVALID;
    dr = malloc(sizeof(*dr));
    if (!dr)
        return MQ_ERR_NOMEM;
    dr->cb = cb;
    dr->opaque = opaque;
    for (;;) {
        if (nheaders) {
            hdrs = rd_kafka_headers_new(nheaders);
            for (size_t i = 0; i < nheaders; i++)
                rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                    (ssize_t)headers[i].len);
        }
        e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                              RD_KAFKA_V_OPAQUE(dr), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return MQ_OK; /* headers now belong to the record */
        rd_kafka_headers_destroy(hdrs);
        hdrs = NULL;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || clock_mono_ms() >= deadline)
            break;
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL); /* the producer thread drains the queue */
    }
    free(dr);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return MQ_ERR_QUEUE_FULL;
    if (e == RD_KAFKA_RESP_ERR__FATAL)
        return MQ_ERR_FATAL;
    log_warn("produce to %s failed: %s", topic, rd_kafka_err2str(e));
    return MQ_ERR_KAFKA;
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    mq_err_t err;
    char errstr[MQ_ERRSTR_MAX];
} mq_sync_t;

static void mq_sync_cb(void *opaque, mq_err_t err, const char *errstr, int32_t partition,
                       int64_t offset)
{
    mq_sync_t *s = opaque;
    (void)partition;
    (void)offset;
    pthread_mutex_lock(&s->lock);
    s->err = err;
    snprintf(s->errstr, sizeof(s->errstr), "%s", errstr ? errstr : "");
    s->done = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

mq_err_t mq_produce_sync(mq_producer_t *p, const char *topic, int32_t partition, const void *key,
                         size_t keylen, const void *value, size_t len, const mq_header_t *headers,
                         size_t nheaders, int timeout_ms, char *errstr, size_t errlen)
{
    mq_sync_t s = {.done = false, .err = MQ_OK};
    struct timespec deadline;
    mq_err_t err;

    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    err = mq_produce(p, topic, partition, key, keylen, value, len, headers, nheaders, timeout_ms,
                     mq_sync_cb, &s);
    if (err) {
        if (errstr)
            snprintf(errstr, errlen, "%s", mq_err_str(err));
        goto out;
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s.lock);
    while (!s.done) {
        if (pthread_cond_timedwait(&s.cond, &s.lock, &deadline) == ETIMEDOUT)
            break;
    }
    if (!s.done) {
        /* The callback still holds &s: wait for it (librdkafka reports every
         * record by message.timeout.ms at the latest). */
        pthread_mutex_unlock(&s.lock);
        log_warn("produce to %s: no delivery report after %d ms, still waiting", topic, timeout_ms);
        pthread_mutex_lock(&s.lock);
        while (!s.done)
            pthread_cond_wait(&s.cond, &s.lock);
    }
    err = s.err;
    if (errstr)
        snprintf(errstr, errlen, "%s", s.errstr);
    pthread_mutex_unlock(&s.lock);
out:
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    return err;
}
