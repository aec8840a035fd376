/* runtime.c: the dispatcher: registry, config, and the consume -> process ->
 * done/retry/dead-letter loop on top of mqclient. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/dispatch.h"
#include "dispatch/headers.h"
#include "dispatch/outcome.h"
#include "dispatch/task.h"
#include "infra/clock.h"
#include "infra/log.h"
#include "infra/str.h"

#define DISPATCH_PRODUCE_TIMEOUT_MS 30000
#define DISPATCH_PREMAKE_MS 10000 /* making the workers' producers at start */
#define DISPATCH_LEARN_MS 2000    /* a new producer learning one task topic's leaders */
#define DISPATCH_BLOCK_MS 10000
#define DISPATCH_NUM_MAX 32
#define DISPATCH_PARTS_TTL_MS 30000 /* the task topic's partition count, asked again after */
#define DISPATCH_PARTS_ASK_MS 2000  /* one such request at most */
#define DISPATCH_KNOWN_TYPES_MAX 8  /* entries of task_types[] with a skipped series */

/* ---- configuration ---------------------------------------------------- */

typedef struct {
    const char *group_id;
    const char *topic;
    const char *retry_topic;
    const char *dlq_topic;
    int64_t workers;
    int64_t max_in_flight;
    int64_t max_delayed;
    int64_t revoke_timeout_ms;
    int unknown_tasks; /* 0 skip, 1 dead_letter */
    int transactions;  /* exactly-once mode: 0 per_worker, 1 shared */
} dispatch_conf_t;

typedef struct {
    int64_t local_attempts;
    int64_t local_backoff_initial_ms;
    int64_t local_backoff_max_ms;
    int64_t max_attempts;
    int64_t backoff_initial_ms;
    int64_t backoff_max_ms;
    double jitter;
} dispatch_retry_t;

static const char *const dispatch_unknown_choices[] = {"skip", "dead_letter", NULL};
static const char *const dispatch_txn_choices[] = {"per_worker", "shared", NULL};

#define DC(k) offsetof(dispatch_conf_t, k)
static const cfg_field_t dispatch_consumer_fields[] = {
    {.key = "group_id",
     .type = CFG_STRING,
     .offset = DC(group_id),
     .help = "consumer group (default im-task-<binary>)"},
    {.key = "topic",
     .type = CFG_STRING,
     .offset = DC(topic),
     .def = "im-task-topic",
     .help = "the task topic"},
    {.key = "retry_topic",
     .type = CFG_STRING,
     .offset = DC(retry_topic),
     .def = "im-task-retry-topic",
     .help = "where failed tasks wait for their next attempt"},
    {.key = "dlq_topic",
     .type = CFG_STRING,
     .offset = DC(dlq_topic),
     .def = "im-task-dlq-topic",
     .help = "the dead-letter topic"},
    {.key = "workers",
     .type = CFG_INT,
     .offset = DC(workers),
     .def = "8",
     .min = 1,
     .max = 1024,
     .help = "threads running processors"},
    {.key = "max_in_flight",
     .type = CFG_INT,
     .offset = DC(max_in_flight),
     .def = "1000",
     .min = 1,
     .max = 1000000,
     .help = "messages held at once; fetching pauses at this bound"},
    {.key = "max_delayed",
     .type = CFG_INT,
     .offset = DC(max_delayed),
     .def = "250",
     .min = 1,
     .max = 1000000,
     .help = "of which retry messages waiting for their due time"},
    {.key = "revoke_timeout",
     .type = CFG_DURATION,
     .offset = DC(revoke_timeout_ms),
     .def = "10s",
     .min = 0,
     .max = 600000,
     .help = "how long a rebalance waits for in-flight work of revoked partitions"},
    {.key = "unknown_tasks",
     .type = CFG_ENUM,
     .offset = DC(unknown_tasks),
     .def = "skip",
     .choices = dispatch_unknown_choices,
     .help = "tasks whose type no binary handles: skip, or dead_letter (set on one deployment)"},
    {.key = "transactions",
     .type = CFG_ENUM,
     .offset = DC(transactions),
     .def = "shared",
     .choices = dispatch_txn_choices,
     .help = "exactly-once processors: shared (the workers' tasks commit together in one "
             "transaction of one producer) or per_worker (a transaction and producer each)"},
};
#undef DC

#define DR(k) offsetof(dispatch_retry_t, k)
static const cfg_field_t dispatch_retry_fields[] = {
    {.key = "local_attempts",
     .type = CFG_INT,
     .offset = DR(local_attempts),
     .def = "3",
     .min = 1,
     .max = 100,
     .help = "tries in process before the retry topic"},
    {.key = "local_backoff_initial",
     .type = CFG_DURATION,
     .offset = DR(local_backoff_initial_ms),
     .def = "100ms",
     .min = 1,
     .max = 60000,
     .help = "first in-process backoff"},
    {.key = "local_backoff_max",
     .type = CFG_DURATION,
     .offset = DR(local_backoff_max_ms),
     .def = "2s",
     .min = 1,
     .max = 60000,
     .help = "longest in-process backoff"},
    {.key = "max_attempts",
     .type = CFG_INT,
     .offset = DR(max_attempts),
     .def = "5",
     .min = 1,
     .max = 1000,
     .help = "deliveries (first + retry topic) before the dead-letter queue"},
    {.key = "backoff_initial",
     .type = CFG_DURATION,
     .offset = DR(backoff_initial_ms),
     .def = "1s",
     .min = 1,
     .max = 86400000,
     .help = "first retry-topic delay"},
    {.key = "backoff_max",
     .type = CFG_DURATION,
     .offset = DR(backoff_max_ms),
     .def = "30s",
     .min = 1,
     .max = 86400000,
     .help = "longest retry-topic delay"},
    {.key = "jitter",
     .type = CFG_DOUBLE,
     .offset = DR(jitter),
     .def = "0.2",
     .min = 0,
     .max = 1,
     .help = "random spread of every delay, as a fraction"},
};
#undef DR
#define DISPATCH_NRETRY (sizeof(dispatch_retry_fields) / sizeof(dispatch_retry_fields[0]))

/* ---- state ------------------------------------------------------------ */

typedef struct {
    char type[TASK_TYPE_MAX]; /* canonical; a copy, the caller's string may go */
    const dispatch_ops_t *ops;
    void *state;
    bool started;
    dispatch_retry_t retry;
    metrics_series_t *consumed, *succeeded, *retried_local, *retried_topic, *in_flight;
    metrics_series_t *processing;
} dispatch_proc_t;

/* A task in the shared transaction that finished and waits for its end. */
typedef struct dispatch_member_s {
    struct dispatch_member_s *next;
    const mq_record_t *input; /* its offset commits with the transaction */
    bool ended;
    mq_err_t err;
    char errstr[MQ_ERRSTR_MAX];
} dispatch_member_t;

/* consumer.transactions: shared (exactly-once mode): the tasks of all
 * workers join one open transaction of one producer. Once one of them has
 * finished, no new task joins; the last to finish commits the finished
 * tasks' offsets with every output, or aborts when a task that wrote outputs
 * failed (the others then run again). One producer's queue instead of one per
 * worker: batches per partition as many times bigger as there are busy
 * workers in the same memory, and one commit (one marker per partition) where
 * each worker made its own. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mq_txn_t *txn;
    bool open;                   /* begun, not ended */
    bool closed;                 /* a member finished: newcomers wait for the next one */
    bool ending;                 /* the last member commits or aborts */
    bool doomed;                 /* a member failed after writing: abort */
    int running;                 /* members still processing */
    dispatch_member_t *finished; /* waiting for the end */
} dispatch_shared_t;

struct dispatch_s {
    const char *name;
    char group_default[128];
    dispatch_proc_t procs[DISPATCH_MAX_PROCESSORS];
    size_t nprocs;
    dispatch_conf_t conf;
    dispatch_retry_t retry;
    app_t *app;
    mq_producer_t *producer;
    /* set once the consumer exists, cleared before it is destroyed: a
     * handler still running after the grace (left behind, see
     * mq_consumer_destroy) reads NULL, which means stopping */
    _Atomic(mq_consumer_t *) consumer;
    pthread_mutex_t ready_lock; /* consumer's set and clear vs the /readyz check */
    metrics_family_t *f_skipped, *f_dead;
    /* imtask_tasks_skipped_total by known type (task_types order), then
     * "unknown": looked up once, not per skipped task */
    _Atomic(metrics_series_t *) skipped[DISPATCH_KNOWN_TYPES_MAX + 1];
    metrics_series_t *unknown_consumed;
    bool eos; /* exactly-once mode: see dispatch_ops_t.exactly_once */
    pthread_mutex_t txn_lock;
    /* one per worker thread: made at start (dispatch_txns_premake), or on a
     * worker's first task when that failed; slots below nclaimed belong to
     * a worker */
    mq_txn_t *txns[1024];
    size_t ntxns, nclaimed;
    dispatch_shared_t shared; /* consumer.transactions: shared */
    /* exactly-once mode: transactions ended, finished tasks run again */
    metrics_series_t *txn_committed, *txn_aborted, *txn_repeated;
    /* the task topic's partition count for dispatch_task_enqueue_spread:
     * 0 unknown; asked at most every DISPATCH_PARTS_TTL_MS */
    pthread_mutex_t parts_lock;
    int task_parts;
    int64_t task_parts_at;
};

/* This worker's transactional producer (exactly-once mode). */
static _Thread_local mq_txn_t **dispatch_tl_txn;

struct dispatch_task_s {
    dispatch_t *d;
    dispatch_proc_t *proc;
    task_t task;
    uint32_t local_attempt;
    int64_t attempt_started_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int outputs_pending;
    int outputs_total;
    int outputs_failed;
    char output_error[DISPATCH_REASON_MAX];
    mq_txn_t *txn; /* exactly-once mode: the open transaction */
};

/* ---- results ---------------------------------------------------------- */

dispatch_result_t dispatch_done(void)
{
    dispatch_result_t r = {.status = DISPATCH_DONE};
    return r;
}

dispatch_result_t dispatch_retry(int64_t after_ms, const char *fmt, ...)
{
    dispatch_result_t r = {.status = DISPATCH_RETRY, .retry_after_ms = after_ms};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.reason, sizeof(r.reason), fmt, ap);
    va_end(ap);
    return r;
}

dispatch_result_t dispatch_dead(const char *fmt, ...)
{
    dispatch_result_t r = {.status = DISPATCH_DEAD};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.reason, sizeof(r.reason), fmt, ap);
    va_end(ap);
    return r;
}

/* ---- registry --------------------------------------------------------- */

static dispatch_proc_t *dispatch_find(dispatch_t *d, const char *type)
{
    for (size_t i = 0; type && i < d->nprocs; i++) {
        if (strcmp(d->procs[i].type, type) == 0)
            return &d->procs[i];
    }
    return NULL;
}

/* The processor of a task_type header value: an exact registered name
 * first (the common case, no alias table walk), then through the alias. */
static dispatch_proc_t *dispatch_find_header(dispatch_t *d, const char *type, const char **canon)
{
    dispatch_proc_t *p = dispatch_find(d, type);
    if (p) {
        *canon = p->type;
        return p;
    }
    *canon = task_type_canonical(type);
    return *canon && strcmp(*canon, type) != 0 ? dispatch_find(d, *canon) : NULL;
}

/* The skipped-tasks series of a canonical type (NULL: unknown). */
static metrics_series_t *dispatch_skipped_series(dispatch_t *d, const char *canon)
{
    size_t i = 0;
    while (canon && task_types[i] && task_types[i] != canon && i < DISPATCH_KNOWN_TYPES_MAX)
        i++;
    if (!canon || !task_types[i] || i >= DISPATCH_KNOWN_TYPES_MAX)
        i = DISPATCH_KNOWN_TYPES_MAX; /* "unknown" */
    metrics_series_t *s = atomic_load_explicit(&d->skipped[i], memory_order_acquire);
    if (!s) { /* racing threads get the same series from the registry */
        s = metrics_series_get1(d->f_skipped, i < DISPATCH_KNOWN_TYPES_MAX ? canon : "unknown");
        atomic_store_explicit(&d->skipped[i], s, memory_order_release);
    }
    return s;
}

static bool dispatch_type_name_ok(const char *s)
{
    if (!s || !*s || strlen(s) >= TASK_TYPE_MAX)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

int dispatch_register(dispatch_t *d, const char *task_type, const dispatch_ops_t *ops)
{
    const char *canon = task_type_canonical(task_type);
    const char *type = canon ? canon : task_type;
    if (!ops || ops->api_version != DISPATCH_API_VERSION) {
        log_error("register %s: processor api_version %d, this runtime speaks %d", task_type,
                  ops ? ops->api_version : -1, DISPATCH_API_VERSION);
        return -1;
    }
    if (!dispatch_type_name_ok(task_type) || !ops->process) {
        log_error("register %s: a task type is [a-z0-9_]+ and a processor needs process()",
                  task_type ? task_type : "(null)");
        return -1;
    }
    if (dispatch_find(d, type)) {
        log_error("register %s: task type registered twice", type);
        return -1;
    }
    if (d->nprocs == DISPATCH_MAX_PROCESSORS) {
        log_error("register %s: more than %d processors", type, DISPATCH_MAX_PROCESSORS);
        return -1;
    }
    d->procs[d->nprocs] = (dispatch_proc_t){.ops = ops};
    snprintf(d->procs[d->nprocs].type, TASK_TYPE_MAX, "%s", type);
    d->nprocs++;
    return 0;
}

/* ---- task accessors --------------------------------------------------- */

const char *dispatch_task_id(const dispatch_task_t *t)
{
    return t->task.task_id;
}

const char *dispatch_task_type(const dispatch_task_t *t)
{
    return t->proc->type;
}

const char *dispatch_task_trace_id(const dispatch_task_t *t)
{
    return t->task.trace_id;
}

const char *dispatch_task_traceparent(const dispatch_task_t *t)
{
    return t->task.traceparent;
}

uint32_t dispatch_task_attempt(const dispatch_task_t *t)
{
    return t->task.attempt;
}

uint32_t dispatch_task_local_attempt(const dispatch_task_t *t)
{
    return t->local_attempt;
}

int64_t dispatch_task_created_ms(const dispatch_task_t *t)
{
    return t->task.created_at_ms;
}

int64_t dispatch_task_deadline_ms(const dispatch_task_t *t)
{
    return t->task.deadline_ms;
}

const uint8_t *dispatch_task_payload(const dispatch_task_t *t, size_t *len)
{
    *len = t->task.payload_len;
    return t->task.payload;
}

bool dispatch_task_cancelled(const dispatch_task_t *t)
{
    return mq_consumer_cancelled(t->d->consumer);
}

/* ---- outputs ---------------------------------------------------------- */

static void dispatch_output_cb(void *opaque, mq_err_t err, const char *errstr, int32_t partition,
                               int64_t offset)
{
    dispatch_task_t *t = opaque;
    (void)partition;
    (void)offset;
    pthread_mutex_lock(&t->lock);
    if (err) {
        if (t->outputs_failed++ == 0)
            snprintf(t->output_error, sizeof(t->output_error), "an output was not delivered: %s",
                     errstr ? errstr : mq_err_str(err));
    }
    if (--t->outputs_pending == 0)
        pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

/* dispatch_task_produce onto a partition (-1: the key's). */
static int dispatch_task_produce_at(dispatch_task_t *t, const char *topic, int32_t partition,
                                    const void *key, size_t keylen, const void *value, size_t len,
                                    const mq_header_t *headers, size_t nheaders)
{
    mq_err_t err;
    pthread_mutex_lock(&t->lock);
    if (t->outputs_total >= DISPATCH_MAX_OUTPUTS) {
        pthread_mutex_unlock(&t->lock);
        log_error("task produced more than %d outputs", DISPATCH_MAX_OUTPUTS);
        return -1;
    }
    t->outputs_total++;
    if (t->txn) { /* the outcome is known at commit */
        pthread_mutex_unlock(&t->lock);
        err = mq_txn_produce(t->txn, topic, partition, key, keylen, value, len, headers, nheaders);
        if (err)
            log_warn("transactional output to %s: %s", topic, mq_err_str(err));
        return err ? -1 : 0;
    }
    t->outputs_pending++;
    pthread_mutex_unlock(&t->lock);
    err = mq_produce(t->d->producer, topic, partition, key, keylen, value, len, headers, nheaders,
                     DISPATCH_BLOCK_MS, dispatch_output_cb, t);
    if (err) {
        pthread_mutex_lock(&t->lock);
        t->outputs_pending--;
        t->outputs_total--;
        pthread_mutex_unlock(&t->lock);
        log_warn("output to %s: %s", topic, mq_err_str(err));
        return -1;
    }
    return 0;
}

int dispatch_task_produce(dispatch_task_t *t, const char *topic, const void *key, size_t keylen,
                          const void *value, size_t len, const mq_header_t *headers,
                          size_t nheaders)
{
    return dispatch_task_produce_at(t, topic, -1, key, keylen, value, len, headers, nheaders);
}

/* The task topic's partition count, or 0 when it is not known: asked of
 * the cluster at most every DISPATCH_PARTS_TTL_MS (partitions may be
 * added), the last answer kept when asking fails. */
static int dispatch_task_partitions(dispatch_t *d)
{
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&d->parts_lock);
    bool ask = !d->task_parts_at || now - d->task_parts_at >= DISPATCH_PARTS_TTL_MS;
    if (ask)
        d->task_parts_at = now; /* one asker; the others use the last answer */
    int n = d->task_parts;
    pthread_mutex_unlock(&d->parts_lock);
    if (!ask || !d->producer)
        return n;
    int got =
        mq_topic_partitions(mq_producer_handle(d->producer), d->conf.topic, DISPATCH_PARTS_ASK_MS);
    if (got <= 0) {
        log_warn("partitions of %s: no answer; follow-ups go by their keys", d->conf.topic);
        return n;
    }
    pthread_mutex_lock(&d->parts_lock);
    d->task_parts = got;
    pthread_mutex_unlock(&d->parts_lock);
    return got;
}

/* dispatch_task_enqueue onto a partition of the task topic (-1: the key's). */
static int dispatch_task_enqueue_at(dispatch_task_t *t, const char *task_type, const char *task_id,
                                    int32_t partition, const void *key, size_t keylen,
                                    const void *payload, size_t len)
{
    task_t nt = {.created_at_ms = clock_wall_ms()};
    const char *canon = task_type_canonical(task_type);
    uint8_t *buf;
    size_t blen;
    int rc;
    if (!canon)
        return -1;
    snprintf(nt.task_type, sizeof(nt.task_type), "%s", canon);
    if (task_id)
        snprintf(nt.task_id, sizeof(nt.task_id), "%s", task_id);
    else
        task_id_new(nt.task_id);
    memcpy(nt.trace_id, t->task.trace_id, sizeof(nt.trace_id));
    if (!nt.trace_id[0])
        task_trace_id_new(nt.trace_id);
    task_traceparent_new(nt.trace_id, nt.traceparent);
    nt.payload = payload;
    nt.payload_len = len;
    if (task_encode(&nt, &buf, &blen))
        return -1;
    mq_header_t h[] = {
        {HDR_TASK_TYPE, nt.task_type, strlen(nt.task_type)},
        {HDR_TASK_ID, nt.task_id, strlen(nt.task_id)},
        {HDR_TRACEPARENT, nt.traceparent, strlen(nt.traceparent)},
    };
    rc = dispatch_task_produce_at(t, t->d->conf.topic, partition, key, keylen, buf, blen, h, 3);
    free(buf);
    return rc;
}

int dispatch_task_enqueue(dispatch_task_t *t, const char *task_type, const char *task_id,
                          const void *key, size_t keylen, const void *payload, size_t len)
{
    return dispatch_task_enqueue_at(t, task_type, task_id, -1, key, keylen, payload, len);
}

int dispatch_task_enqueue_spread(dispatch_task_t *t, const char *task_type, const char *task_id,
                                 uint32_t slot, const void *key, size_t keylen, const void *payload,
                                 size_t len)
{
    int n = dispatch_task_partitions(t->d);
    return dispatch_task_enqueue_at(t, task_type, task_id,
                                    n > 0 ? (int32_t)(slot % (uint32_t)n) : -1, key, keylen,
                                    payload, len);
}

/* Wait for every output of this attempt; returns the number that failed. */
static int dispatch_wait_outputs(dispatch_task_t *t)
{
    int failed;
    pthread_mutex_lock(&t->lock);
    while (t->outputs_pending > 0)
        pthread_cond_wait(&t->cond, &t->lock);
    failed = t->outputs_failed;
    t->outputs_failed = 0;
    t->outputs_total = 0;
    pthread_mutex_unlock(&t->lock);
    return failed;
}

/* ---- retry and dead-letter records ------------------------------------- */

/* Headers of the original record, without the ones named in `drop`. */
static size_t dispatch_copy_headers(const mq_record_t *m, const char *const *drop, mq_header_t *out,
                                    size_t max)
{
    const char *name;
    const void *val;
    size_t size, n = 0;
    if (!m->headers)
        return 0;
    for (size_t i = 0; n < max && rd_kafka_header_get_all(m->headers, i, &name, &val, &size) == 0;
         i++) {
        bool skip = strncmp(name, "dlq_", 4) == 0; /* never two sets of DLQ headers */
        for (const char *const *d = drop; *d && !skip; d++)
            skip = strcmp(name, *d) == 0;
        if (!skip)
            out[n++] = (mq_header_t){name, val, size};
    }
    return n;
}

typedef struct {
    char text[DISPATCH_NUM_MAX];
} dispatch_num_t;

static mq_header_t dispatch_hdr_num(const char *name, dispatch_num_t *buf, long long v)
{
    snprintf(buf->text, sizeof(buf->text), "%lld", v);
    return (mq_header_t){name, buf->text, strlen(buf->text)};
}

static mq_header_t dispatch_hdr_str(const char *name, const char *v)
{
    return (mq_header_t){name, v, strlen(v)};
}

/* Sleep up to ms, waking early when the binary stops. */
static void dispatch_sleep(dispatch_t *d, int64_t ms)
{
    app_wait_stop(d->app, ms);
}

/* Produce a record the input depends on, until it is acknowledged. Gives up
 * only when the grace is over: then the message is abandoned (its offset is
 * never stored) and it will be consumed again. Returns 0 when written. */
static int dispatch_write_until_done(dispatch_t *d, mq_msg_t *msg, const char *topic,
                                     const void *key, size_t keylen, const void *value, size_t len,
                                     const mq_header_t *h, size_t nh)
{
    char errstr[MQ_ERRSTR_MAX];
    for (uint32_t n = 0;; n++) {
        mq_err_t err = mq_produce_sync(d->producer, topic, -1, key, keylen, value, len, h, nh,
                                       DISPATCH_PRODUCE_TIMEOUT_MS, errstr, sizeof(errstr));
        if (err == MQ_OK)
            return 0;
        if (mq_msg_revoked(msg)) {
            log_warn("writing to %s failed (%s) and the partition was revoked: the next owner "
                     "consumes the input again",
                     topic, errstr);
            mq_msg_abandon(msg);
            return -1;
        }
        if (mq_consumer_cancelled(d->consumer)) {
            log_error("writing to %s failed (%s) and the grace is over: the input stays "
                      "uncommitted and will be consumed again",
                      topic, errstr);
            mq_msg_abandon(msg);
            return -1;
        }
        int64_t wait = dispatch_backoff_ms(500, 10000, n);
        log_warn("writing to %s failed (%s); trying again in %lld ms", topic, errstr,
                 (long long)wait);
        struct timespec ts = {wait / 1000, (wait % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* not interrupted by stop: the record must be written */
    }
}

/* One transactional producer (one attempt, at most timeout_ms); NULL with
 * *err set. */
static mq_txn_t *dispatch_txn_make(dispatch_t *d, int timeout_ms, char *err, size_t errlen)
{
    static atomic_uint seq;
    char txid[256], host[64];
    const app_config_t *ac = app_config(d->app);
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    /* kafka.transaction.timeout.ms overrides: a crashed producer's open
     * transaction holds read_committed readers back that long */
    const char *extra[] = {"transaction.timeout.ms", "60000", NULL};
    for (size_t i = 0; i < ac->kafka_props.count; i++) {
        if (strcmp(ac->kafka_props.items[i].key, "transaction.timeout.ms") == 0)
            extra[0] = NULL;
    }
    snprintf(txid, sizeof(txid), "%s-%s-%d-%u", d->conf.group_id, host, (int)getpid(),
             atomic_fetch_add(&seq, 1));
    rd_kafka_conf_t *conf = mq_conf_build(ac->kafka_brokers, &ac->kafka_props, extra, err, errlen);
    mq_txn_t *txn = conf ? mq_txn_new(conf, txid, timeout_ms, err, errlen) : NULL;
    if (!txn && conf)
        rd_kafka_conf_destroy(conf);
    if (txn) { /* the task topics every processor may write: follow-ups, retries */
        const char *topics[] = {d->conf.topic, d->conf.retry_topic, d->conf.dlq_topic};
        mq_txn_learn_topics(txn, topics, 3, DISPATCH_LEARN_MS);
    }
    return txn;
}

/* Exactly-once mode: every worker's producer made before the first task, so
 * that no task waits for one (the coordinator lookup and InitProducerId) and
 * a broker that refuses transactions shows at start. Bounded: at most
 * DISPATCH_PREMAKE_MS in all, and none after the first failure (the broker
 * is likely away); a worker without one makes it on its first task. */
static void dispatch_txns_premake(dispatch_t *d)
{
    char err[CFG_ERR_MAX];
    int64_t t0 = clock_mono_ms();
    if (d->conf.transactions == 1) { /* one producer; no worker runs yet */
        d->shared.txn = dispatch_txn_make(d, DISPATCH_PREMAKE_MS, err, sizeof(err));
        if (d->shared.txn)
            log_info("made the shared transactional producer in %lld ms",
                     (long long)(clock_mono_ms() - t0));
        else
            log_warn("shared transactional producer: %s; made on the first task", err);
        return;
    }
    /* no worker runs yet: the slots filled here are the first ntxns */
    while (d->ntxns < (size_t)d->conf.workers && d->ntxns < sizeof(d->txns) / sizeof(d->txns[0])) {
        int64_t left = DISPATCH_PREMAKE_MS - (clock_mono_ms() - t0);
        if (app_stopping(d->app))
            return;
        mq_txn_t *txn = left > 0 ? dispatch_txn_make(d, (int)left, err, sizeof(err)) : NULL;
        if (!txn) {
            log_warn("transactional producers: %zu of %lld made at start (%s); the others are "
                     "made on their worker's first task",
                     d->ntxns, (long long)d->conf.workers, left > 0 ? err : "out of time");
            return;
        }
        pthread_mutex_lock(&d->txn_lock);
        d->txns[d->ntxns++] = txn;
        pthread_mutex_unlock(&d->txn_lock);
    }
    log_info("made %zu transactional producers for %lld workers in %lld ms", d->ntxns,
             (long long)d->conf.workers, (long long)(clock_mono_ms() - t0));
}

/* This worker's transactional producer: the one made for its slot at start,
 * or a new one; waits and tries again while the broker refuses, until the
 * grace is over (then NULL). */
static mq_txn_t *dispatch_txn_get(dispatch_t *d)
{
    char err[CFG_ERR_MAX];
    if (!dispatch_tl_txn) { /* this thread's first task: claim a slot */
        pthread_mutex_lock(&d->txn_lock);
        if (d->nclaimed == d->ntxns && d->ntxns < sizeof(d->txns) / sizeof(d->txns[0]))
            d->txns[d->ntxns++] = NULL;
        if (d->nclaimed < d->ntxns)
            dispatch_tl_txn = &d->txns[d->nclaimed++];
        pthread_mutex_unlock(&d->txn_lock);
        if (!dispatch_tl_txn)
            return NULL; /* more worker threads than slots */
    }
    if (*dispatch_tl_txn)
        return *dispatch_tl_txn;
    for (uint32_t n = 0; !mq_consumer_cancelled(d->consumer); n++) {
        mq_txn_t *txn = dispatch_txn_make(d, DISPATCH_PRODUCE_TIMEOUT_MS, err, sizeof(err));
        if (txn)
            return *dispatch_tl_txn = txn;
        int64_t wait = dispatch_backoff_ms(500, 10000, n);
        log_warn("transactional producer: %s; trying again in %lld ms", err, (long long)wait);
        dispatch_sleep(d, wait);
    }
    return NULL;
}

/* After a fatal transaction error: the producer is replaced on next use. */
static void dispatch_txn_drop(void)
{
    if (dispatch_tl_txn)
        mq_txn_destroy(dispatch_tl_txn);
}

/* Abort the open transaction; a producer the abort left fatal (e.g. the
 * broker's INVALID_TXN_STATE, librdkafka#4849) is replaced on next use
 * instead of failing every later begin. */
static void dispatch_txn_abort(mq_txn_t *txn)
{
    if (mq_txn_abort(txn, DISPATCH_PRODUCE_TIMEOUT_MS) == MQ_ERR_FATAL)
        dispatch_txn_drop();
}

/* Commit the open transaction with the input offset; on failure abort it. */
static mq_err_t dispatch_txn_commit(dispatch_t *d, mq_txn_t *txn, mq_msg_t *msg, char *errstr,
                                    size_t errlen)
{
    rd_kafka_t *consumer = mq_consumer_handle(d->consumer);
    if (!consumer) { /* stopping: the consumer is gone, so is its group membership */
        snprintf(errstr, errlen, "stopping: no consumer group to commit the offset in");
        dispatch_txn_abort(txn);
        return MQ_ERR_KAFKA;
    }
    mq_err_t err = mq_txn_commit(txn, mq_msg_record(msg), consumer, DISPATCH_PRODUCE_TIMEOUT_MS,
                                 errstr, errlen);
    if (err == MQ_ERR_FATAL)
        dispatch_txn_drop();
    else if (err)
        dispatch_txn_abort(txn);
    return err;
}

/* Open a task's transaction: its worker's own, begun here, or the shared one,
 * joined (waiting while the open one is closing). MQ_OK with *txn set;
 * MQ_ERR_TIMEOUT when stopping without a producer (the input is consumed
 * again); another error: try again later. */
static mq_err_t dispatch_txn_enter(dispatch_t *d, mq_txn_t **txn, char *err, size_t errlen)
{
    mq_err_t e = MQ_OK;
    *txn = NULL;
    if (d->conf.transactions == 0) {
        mq_txn_t *own = dispatch_txn_get(d);
        if (!own) {
            snprintf(err, errlen, "stopping: no transactional producer");
            return MQ_ERR_TIMEOUT;
        }
        e = mq_txn_begin(own, err, errlen);
        if (e == MQ_OK)
            *txn = own;
        else if (e == MQ_ERR_FATAL)
            dispatch_txn_drop(); /* begin can never work again on this producer */
        return e;
    }
    dispatch_shared_t *s = &d->shared;
    pthread_mutex_lock(&s->lock);
    while (s->closed || s->ending)
        pthread_cond_wait(&s->cond, &s->lock);
    if (!s->txn) /* one try: the caller's retry policy waits between tries */
        s->txn = dispatch_txn_make(d, DISPATCH_PRODUCE_TIMEOUT_MS, err, errlen);
    if (!s->txn) {
        e = MQ_ERR_KAFKA;
    } else if (!s->open) {
        e = mq_txn_begin(s->txn, err, errlen);
        if (e == MQ_ERR_FATAL)
            mq_txn_destroy(&s->txn);
        s->open = e == MQ_OK;
    }
    if (e == MQ_OK) {
        s->running++;
        *txn = s->txn;
    }
    pthread_mutex_unlock(&s->lock);
    return e;
}

/* End the shared transaction (its last member, no lock held: newcomers wait
 * while ending) and tell the finished members how it went. */
static mq_err_t dispatch_shared_end(dispatch_t *d, char *err, size_t errlen)
{
    dispatch_shared_t *s = &d->shared;
    const mq_record_t *inputs[sizeof(d->txns) / sizeof(d->txns[0])];
    size_t n = 0;
    mq_err_t e = MQ_ERR_KAFKA;
    for (dispatch_member_t *m = s->finished; m && n < sizeof(inputs) / sizeof(inputs[0]);
         m = m->next)
        inputs[n++] = m->input;
    rd_kafka_t *consumer = mq_consumer_handle(d->consumer);
    int64_t t0 = clock_mono_ms();
    if (s->doomed) {
        snprintf(err, errlen,
                 "a task sharing the transaction failed after writing: its outputs "
                 "and these were discarded");
    } else if (n > 0 && !consumer) {
        snprintf(err, errlen, "stopping: no consumer group to commit the offsets in");
    } else if (n > 0) {
        e = mq_txn_commit_many(s->txn, inputs, n, consumer, DISPATCH_PRODUCE_TIMEOUT_MS, err,
                               errlen);
    }
    if (e != MQ_OK && e != MQ_ERR_FATAL &&
        mq_txn_abort(s->txn, DISPATCH_PRODUCE_TIMEOUT_MS) == MQ_ERR_FATAL)
        e = MQ_ERR_FATAL;
    metrics_counter_add(e == MQ_OK ? d->txn_committed : d->txn_aborted, 1);
    if (e == MQ_OK) {
        log_debug("shared transaction of %zu tasks committed in %lld ms", n,
                  (long long)(clock_mono_ms() - t0));
    } else if (n > 0) {
        metrics_counter_add(d->txn_repeated, (double)n);
        log_info("shared transaction of %zu finished tasks aborted (%s): they run again", n, err);
    }
    pthread_mutex_lock(&s->lock);
    for (dispatch_member_t *m = s->finished; m; m = m->next) {
        m->err = e;
        snprintf(m->errstr, sizeof(m->errstr), "%s", e == MQ_OK ? "" : err);
        m->ended = true;
    }
    if (e == MQ_ERR_FATAL)
        mq_txn_destroy(&s->txn); /* replaced by the next member */
    s->finished = NULL;
    s->open = s->closed = s->ending = s->doomed = false;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return e;
}

/* Leave the transaction dispatch_txn_enter opened: done (commit the input's
 * offset with the outputs) or failed (the outputs are discarded; wrote: it
 * queued some). MQ_OK when the outputs and the offset are committed. In
 * shared mode a finished task waits for the transaction's end. */
static mq_err_t dispatch_txn_leave(dispatch_t *d, mq_txn_t *txn, mq_msg_t *msg, bool done,
                                   bool wrote, char *err, size_t errlen)
{
    if (d->conf.transactions == 0) {
        mq_err_t e = MQ_ERR_KAFKA;
        if (done)
            e = dispatch_txn_commit(d, txn, msg, err, errlen);
        else
            dispatch_txn_abort(txn);
        metrics_counter_add(e == MQ_OK ? d->txn_committed : d->txn_aborted, 1);
        return e;
    }
    dispatch_shared_t *s = &d->shared;
    dispatch_member_t me = {.input = mq_msg_record(msg)};
    pthread_mutex_lock(&s->lock);
    s->running--;
    s->closed = true;
    if (done) {
        me.next = s->finished;
        s->finished = &me;
    } else if (wrote) {
        s->doomed = true;
    }
    if (s->running > 0) { /* the last member ends it */
        while (done && !me.ended)
            pthread_cond_wait(&s->cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
        if (!done)
            return MQ_ERR_KAFKA;
        snprintf(err, errlen, "%s", me.errstr);
        return me.err;
    }
    s->ending = true;
    pthread_mutex_unlock(&s->lock);
    mq_err_t e = dispatch_shared_end(d, err, errlen);
    return done ? e : MQ_ERR_KAFKA;
}

/* Write the record the input now depends on (retry or dead-letter record):
 * in exactly-once mode in a transaction with the input offset, else
 * confirmed by its delivery report. Returns 0 when written. */
static int dispatch_write_record(dispatch_t *d, mq_msg_t *msg, const char *topic, const void *key,
                                 size_t keylen, const void *value, size_t len, const mq_header_t *h,
                                 size_t nh)
{
    char errstr[MQ_ERRSTR_MAX];
    if (!d->eos)
        return dispatch_write_until_done(d, msg, topic, key, keylen, value, len, h, nh);
    for (uint32_t n = 0;; n++) {
        mq_txn_t *txn;
        mq_err_t err = dispatch_txn_enter(d, &txn, errstr, sizeof(errstr));
        if (err == MQ_ERR_TIMEOUT)
            break;
        if (err == MQ_OK) {
            err = mq_txn_produce(txn, topic, -1, key, keylen, value, len, h, nh);
            if (err != MQ_OK)
                snprintf(errstr, sizeof(errstr), "produce: %s", mq_err_str(err));
            /* aborts, or replaces the producer, when it fails */
            if (dispatch_txn_leave(d, txn, msg, err == MQ_OK, err == MQ_OK, errstr,
                                   sizeof(errstr)) == MQ_OK &&
                err == MQ_OK)
                return 0;
        }
        if (mq_consumer_cancelled(d->consumer) || mq_msg_revoked(msg))
            break;
        int64_t wait = dispatch_backoff_ms(500, 10000, n);
        log_warn("writing to %s in a transaction failed (%s); trying again in %lld ms", topic,
                 errstr, (long long)wait);
        dispatch_sleep(d, wait);
    }
    log_error("writing to %s failed and the grace is over or the partition was revoked: the "
              "input stays uncommitted and will be consumed again",
              topic);
    mq_msg_abandon(msg);
    return -1;
}

static const char *dispatch_origin(const mq_record_t *m, const char *name, char *buf, size_t len,
                                   const char *fallback)
{
    if (mq_headers_get(m->headers, name, buf, len) >= 0)
        return buf;
    snprintf(buf, len, "%s", fallback);
    return buf;
}

static void dispatch_dead_letter(dispatch_t *d, mq_msg_t *msg, const char *type, const char *kind,
                                 const char *reason, uint32_t attempts, int64_t first_failure_ms)
{
    static const char *const drop[] = {NULL};
    const mq_record_t *m = mq_msg_record(msg);
    mq_header_t h[MQ_MAX_HEADERS];
    dispatch_num_t part, off, ts, att, first, last;
    char otopic[256], opart[DISPATCH_NUM_MAX], ooff[DISPATCH_NUM_MAX], ots[DISPATCH_NUM_MAX];
    char ffirst[DISPATCH_NUM_MAX], mypart[DISPATCH_NUM_MAX], myoff[DISPATCH_NUM_MAX];
    char myts[DISPATCH_NUM_MAX];
    int64_t now = clock_wall_ms();
    size_t n = dispatch_copy_headers(m, drop, h, MQ_MAX_HEADERS - 11);

    snprintf(mypart, sizeof(mypart), "%d", (int)m->partition);
    snprintf(myoff, sizeof(myoff), "%lld", (long long)m->offset);
    snprintf(myts, sizeof(myts), "%lld", (long long)m->timestamp);
    dispatch_origin(m, HDR_ORIGIN_TOPIC, otopic, sizeof(otopic), m->topic);
    dispatch_origin(m, HDR_ORIGIN_PARTITION, opart, sizeof(opart), mypart);
    dispatch_origin(m, HDR_ORIGIN_OFFSET, ooff, sizeof(ooff), myoff);
    dispatch_origin(m, HDR_ORIGIN_TIMESTAMP, ots, sizeof(ots), myts);
    if (mq_headers_get(m->headers, HDR_FIRST_FAILURE, ffirst, sizeof(ffirst)) >= 0)
        first_failure_ms = strtoll(ffirst, NULL, 10);

    h[n++] = dispatch_hdr_str(HDR_DLQ_ORIGINAL_TOPIC, otopic);
    h[n++] = dispatch_hdr_num(HDR_DLQ_ORIGINAL_PARTITION, &part, strtoll(opart, NULL, 10));
    h[n++] = dispatch_hdr_num(HDR_DLQ_ORIGINAL_OFFSET, &off, strtoll(ooff, NULL, 10));
    h[n++] = dispatch_hdr_num(HDR_DLQ_ORIGINAL_TIMESTAMP, &ts, strtoll(ots, NULL, 10));
    h[n++] = dispatch_hdr_str(HDR_DLQ_CONSUMER_GROUP, d->conf.group_id);
    h[n++] = dispatch_hdr_str(HDR_DLQ_TASK_TYPE, type);
    h[n++] = dispatch_hdr_num(HDR_DLQ_ATTEMPTS, &att, attempts);
    h[n++] = dispatch_hdr_str(HDR_DLQ_ERROR_KIND, kind);
    h[n++] = dispatch_hdr_str(HDR_DLQ_ERROR_MESSAGE, reason);
    h[n++] =
        dispatch_hdr_num(HDR_DLQ_FIRST_FAILURE, &first, first_failure_ms ? first_failure_ms : now);
    h[n++] = dispatch_hdr_num(HDR_DLQ_LAST_FAILURE, &last, now);

    log_error("dead-lettering %s task from %s[%s]@%s after %u attempts: %s: %s", type, otopic,
              opart, ooff, attempts, kind, reason);
    if (dispatch_write_record(d, msg, d->conf.dlq_topic, m->key, m->key_len, m->payload, m->len, h,
                              n) == 0) {
        const char *labels[] = {type, kind};
        dispatch_outcome_label_t ol[] = {{"error_kind", kind}};
        char tid[TASK_ID_MAX];
        metrics_counter_add(metrics_series_get(d->f_dead, labels), 1);
        if (mq_headers_get(m->headers, HDR_TASK_ID, tid, sizeof(tid)) < 0)
            tid[0] = '\0';
        dispatch_outcome_emit(type, tid, OUTCOME_DEAD_LETTERED, ol, 1, 1);
    }
}

static void dispatch_republish(dispatch_t *d, mq_msg_t *msg, dispatch_task_t *t, const char *reason,
                               int64_t delay_ms)
{
    static const char *const drop[] = {
        HDR_ATTEMPT,          HDR_RETRY_DUE,        HDR_LAST_ERROR,
        HDR_ORIGIN_TOPIC,     HDR_ORIGIN_PARTITION, HDR_ORIGIN_OFFSET,
        HDR_ORIGIN_TIMESTAMP, HDR_FIRST_FAILURE,    NULL};
    const mq_record_t *m = mq_msg_record(msg);
    mq_header_t h[MQ_MAX_HEADERS];
    dispatch_num_t att, due, part, off, ts, first;
    char otopic[256], opart[DISPATCH_NUM_MAX], ooff[DISPATCH_NUM_MAX], ots[DISPATCH_NUM_MAX];
    char ffirst[DISPATCH_NUM_MAX], mypart[DISPATCH_NUM_MAX], myoff[DISPATCH_NUM_MAX];
    char myts[DISPATCH_NUM_MAX], nowtxt[DISPATCH_NUM_MAX];
    int64_t now = clock_wall_ms();
    uint32_t next_attempt = t->task.attempt + 1;
    size_t n = dispatch_copy_headers(m, drop, h, MQ_MAX_HEADERS - 8);
    snprintf(mypart, sizeof(mypart), "%d", (int)m->partition);
    snprintf(myoff, sizeof(myoff), "%lld", (long long)m->offset);
    snprintf(myts, sizeof(myts), "%lld", (long long)m->timestamp);
    snprintf(nowtxt, sizeof(nowtxt), "%lld", (long long)now);
    dispatch_origin(m, HDR_ORIGIN_TOPIC, otopic, sizeof(otopic), m->topic);
    dispatch_origin(m, HDR_ORIGIN_PARTITION, opart, sizeof(opart), mypart);
    dispatch_origin(m, HDR_ORIGIN_OFFSET, ooff, sizeof(ooff), myoff);
    dispatch_origin(m, HDR_ORIGIN_TIMESTAMP, ots, sizeof(ots), myts);
    dispatch_origin(m, HDR_FIRST_FAILURE, ffirst, sizeof(ffirst), nowtxt);

    h[n++] = dispatch_hdr_num(HDR_ATTEMPT, &att, next_attempt);
    h[n++] = dispatch_hdr_num(HDR_RETRY_DUE, &due, now + delay_ms);
    h[n++] = dispatch_hdr_str(HDR_LAST_ERROR, reason);
    h[n++] = dispatch_hdr_str(HDR_ORIGIN_TOPIC, otopic);
    h[n++] = dispatch_hdr_num(HDR_ORIGIN_PARTITION, &part, strtoll(opart, NULL, 10));
    h[n++] = dispatch_hdr_num(HDR_ORIGIN_OFFSET, &off, strtoll(ooff, NULL, 10));
    h[n++] = dispatch_hdr_num(HDR_ORIGIN_TIMESTAMP, &ts, strtoll(ots, NULL, 10));
    h[n++] = dispatch_hdr_num(HDR_FIRST_FAILURE, &first, strtoll(ffirst, NULL, 10));

    log_warn("task failed (%s): retry %u of %lld in %lld ms through %s", reason, next_attempt,
             (long long)t->proc->retry.max_attempts - 1, (long long)delay_ms, d->conf.retry_topic);
    /* the value stays the original bytes: the attempt count travels in a
     * header, so a dead-letter record holds exactly what was produced */
    if (dispatch_write_record(d, msg, d->conf.retry_topic, m->key, m->key_len, m->payload, m->len,
                              h, n) == 0)
        metrics_counter_add(t->proc->retried_topic, 1);
}

/* ---- the two consumer callbacks ----------------------------------------- */

static bool dispatch_from_retry_topic(const dispatch_t *d, const char *topic)
{
    return strcmp(topic, d->conf.retry_topic) == 0;
}

static mq_verdict_t dispatch_filter(void *opaque, const rd_kafka_message_t *m,
                                    int64_t *not_before_ms, void **user)
{
    dispatch_t *d = opaque;
    char type[TASK_TYPE_MAX], due[DISPATCH_NUM_MAX];
    const char *canon;
    dispatch_proc_t *p;

    if (mq_header_get(m, HDR_TASK_TYPE, type, sizeof(type)) < 0)
        type[0] = '\0';
    p = dispatch_find_header(d, type, &canon);
    if (p) {
        metrics_counter_add(p->consumed, 1);
        if (dispatch_from_retry_topic(d, rd_kafka_topic_name(m->rkt)) &&
            mq_header_get(m, HDR_RETRY_DUE, due, sizeof(due)) > 0)
            *not_before_ms = strtoll(due, NULL, 10);
        *user = p; /* the handler need not look the type up again */
        return MQ_ACCEPT;
    }
    if (!canon && d->conf.unknown_tasks == 1) {
        metrics_counter_add(d->unknown_consumed, 1);
        return MQ_ACCEPT; /* the handler dead-letters it */
    }
    metrics_counter_add(dispatch_skipped_series(d, canon), 1);
    return MQ_SKIP;
}

static void dispatch_handle(void *opaque, mq_msg_t *msg)
{
    dispatch_t *d = opaque;
    const mq_record_t *m = mq_msg_record(msg);
    static _Thread_local unsigned seed;
    char type[TASK_TYPE_MAX], err[DISPATCH_REASON_MAX];
    const char *canon;
    dispatch_task_t t;
    void *owner = NULL;
    int64_t first_failure = 0;

    if (!seed)
        seed = (unsigned)clock_mono_ms() ^ (unsigned)(uintptr_t)&t;
    memset(&t, 0, sizeof(t));
    t.d = d;
    t.proc = mq_msg_user(msg); /* found by the filter; NULL: an unknown type */
    if (t.proc) {
        str_copy(type, sizeof(type), t.proc->type);
    } else {
        if (mq_headers_get(m->headers, HDR_TASK_TYPE, type, sizeof(type)) < 0)
            type[0] = '\0';
        canon = task_type_canonical(type);
        t.proc = dispatch_find(d, canon ? canon : type);
    }
    if (!t.proc) {
        snprintf(err, sizeof(err), "no processor handles task_type \"%s\"", type);
        dispatch_dead_letter(d, msg, type[0] ? type : "unknown", DLQ_KIND_UNKNOWN_TYPE, err, 1, 0);
        return;
    }
    if (task_decode(m->payload, m->len, &t.task, &owner, err, sizeof(err))) {
        dispatch_dead_letter(d, msg, t.proc->type, DLQ_KIND_UNDECODABLE, err, 1, 0);
        return;
    }
    if (!t.task.trace_id[0]) { /* a producer that sent only a W3C traceparent */
        char tp[TASK_TRACEPARENT_LEN + 2];
        if (t.task.traceparent[0])
            task_traceparent_parse(t.task.traceparent, t.task.trace_id);
        else if (mq_headers_get(m->headers, HDR_TRACEPARENT, tp, sizeof(tp)) ==
                     TASK_TRACEPARENT_LEN &&
                 task_traceparent_parse(tp, t.task.trace_id) == 0)
            memcpy(t.task.traceparent, tp, sizeof(t.task.traceparent));
    }
    log_ctx_set(t.task.task_id, t.task.trace_id);
    {
        char att[DISPATCH_NUM_MAX];
        if (dispatch_from_retry_topic(d, m->topic) &&
            mq_headers_get(m->headers, HDR_ATTEMPT, att, sizeof(att)) > 0) {
            long long a = strtoll(att, NULL, 10);
            if (a > (long long)t.task.attempt && a < 1000000)
                t.task.attempt = (uint32_t)a; /* deliveries through the retry topic */
        }
    }
    /* the envelope's type must be the header's (an alias counts as its name) */
    const char *envtype = t.task.task_type;
    if (strcmp(envtype, t.proc->type) != 0 &&
        (!(envtype = task_type_canonical(envtype)) || strcmp(envtype, t.proc->type) != 0)) {
        snprintf(err, sizeof(err), "task_type header \"%s\" but envelope says \"%s\"", type,
                 t.task.task_type);
        dispatch_dead_letter(d, msg, t.proc->type, DLQ_KIND_UNDECODABLE, err, t.task.attempt + 1,
                             0);
        goto out;
    }
    pthread_mutex_init(&t.lock, NULL);
    pthread_cond_init(&t.cond, NULL);
    metrics_gauge_add(t.proc->in_flight, 1);

    for (t.local_attempt = 0;; t.local_attempt++) {
        dispatch_result_t r;
        const dispatch_retry_t *rp = &t.proc->retry;
        if (t.task.deadline_ms > 0 && clock_wall_ms() > t.task.deadline_ms) {
            snprintf(err, sizeof(err), "deadline %lld passed", (long long)t.task.deadline_ms);
            dispatch_dead_letter(d, msg, t.proc->type, DLQ_KIND_EXPIRED, err, t.task.attempt + 1,
                                 first_failure);
            break;
        }
        t.attempt_started_ms = clock_mono_ms();
        if (d->eos) {
            mq_err_t berr = dispatch_txn_enter(d, &t.txn, err, sizeof(err));
            if (berr == MQ_ERR_TIMEOUT) {
                mq_msg_abandon(msg); /* stopping: consumed again later */
                break;
            }
            if (berr != MQ_OK) {
                r = dispatch_retry(0, "%s", err);
                goto decided;
            }
        }
        r = t.proc->ops->process(t.proc->state, &t);
        bool wrote = t.outputs_total > 0; /* this attempt's, counted until the wait */
        if (dispatch_wait_outputs(&t) > 0 && r.status == DISPATCH_DONE)
            r = dispatch_retry(0, "%s", t.output_error);
        if (t.txn) {
            bool done = r.status == DISPATCH_DONE;
            int64_t c0 = clock_mono_ms();
            /* not done: outputs discarded */
            if (dispatch_txn_leave(d, t.txn, msg, done, wrote, err, sizeof(err)) != MQ_OK && done)
                r = dispatch_retry(0, "%s", err);
            if (done)
                log_debug("transaction of %s[%d]@%lld: process %lld ms, commit %lld ms", m->topic,
                          (int)m->partition, (long long)m->offset,
                          (long long)(c0 - t.attempt_started_ms),
                          (long long)(clock_mono_ms() - c0));
            t.txn = NULL;
        }
    decided:
        metrics_histogram_observe(t.proc->processing,
                                  (double)(clock_mono_ms() - t.attempt_started_ms) / 1000.0);
        if (r.status == DISPATCH_DONE) {
            metrics_counter_add(t.proc->succeeded, 1);
            break;
        }
        if (!first_failure)
            first_failure = clock_wall_ms();
        if (r.status == DISPATCH_DEAD) {
            dispatch_dead_letter(d, msg, t.proc->type, DLQ_KIND_PERMANENT, r.reason,
                                 t.task.attempt + 1, first_failure);
            break;
        }
        /* retry: in process while tries are left and the wait is short */
        int64_t local_wait =
            dispatch_backoff_jitter_ms(rp->local_backoff_initial_ms, rp->local_backoff_max_ms,
                                       t.local_attempt, rp->jitter, &seed);
        if (r.retry_after_ms > local_wait)
            local_wait = r.retry_after_ms;
        if (mq_msg_revoked(msg) || mq_consumer_cancelled(d->consumer)) {
            log_info("task failed (%s) while %s: it stays uncommitted and is consumed again",
                     r.reason, mq_msg_revoked(msg) ? "its partition was revoked" : "shutting down");
            mq_msg_abandon(msg);
            break;
        }
        if ((int64_t)t.local_attempt + 1 < rp->local_attempts &&
            local_wait <= rp->local_backoff_max_ms && !app_stopping(d->app)) {
            metrics_counter_add(t.proc->retried_local, 1);
            log_info("task failed (%s): trying again in %lld ms", r.reason, (long long)local_wait);
            dispatch_sleep(d, local_wait);
            continue;
        }
        if ((int64_t)t.task.attempt + 1 >= rp->max_attempts) {
            dispatch_dead_letter(d, msg, t.proc->type, DLQ_KIND_RETRIES_EXHAUSTED, r.reason,
                                 t.task.attempt + 1, first_failure);
            break;
        }
        int64_t delay = dispatch_backoff_jitter_ms(rp->backoff_initial_ms, rp->backoff_max_ms,
                                                   t.task.attempt, rp->jitter, &seed);
        if (r.retry_after_ms > delay)
            delay = r.retry_after_ms;
        dispatch_republish(d, msg, &t, r.reason, delay);
        break;
    }
    metrics_gauge_add(t.proc->in_flight, -1);
    pthread_cond_destroy(&t.cond);
    pthread_mutex_destroy(&t.lock);
out:
    log_ctx_clear();
    task_decoded_free(owner);
}

/* ---- configure and run ------------------------------------------------- */

static int dispatch_bind_retry(cfg_t *cfg, const char *section, const dispatch_retry_t *base,
                               dispatch_retry_t *out, char *err, size_t errlen)
{
    cfg_field_t fields[DISPATCH_NRETRY];
    char defs[DISPATCH_NRETRY][DISPATCH_NUM_MAX];
    memcpy(fields, dispatch_retry_fields, sizeof(fields));
    for (size_t i = 0; base && i < DISPATCH_NRETRY; i++) {
        const char *slot = (const char *)base + fields[i].offset;
        if (fields[i].type == CFG_DOUBLE) {
            double v;
            memcpy(&v, slot, sizeof(v));
            snprintf(defs[i], sizeof(defs[i]), "%.17g", v);
        } else {
            int64_t v;
            memcpy(&v, slot, sizeof(v));
            snprintf(defs[i], sizeof(defs[i]), "%lld", (long long)v);
        }
        fields[i].def = defs[i];
    }
    return cfg_bind(cfg, section, fields, DISPATCH_NRETRY, out, NULL, err, errlen);
}

static int dispatch_configure(app_t *app, cfg_t *cfg, void *opaque, char *err, size_t errlen)
{
    dispatch_t *d = opaque;
    cfg_field_t cfields[sizeof(dispatch_consumer_fields) / sizeof(dispatch_consumer_fields[0])];
    (void)app;
    memcpy(cfields, dispatch_consumer_fields, sizeof(cfields));
    snprintf(d->group_default, sizeof(d->group_default), "im-task-%s", d->name);
    cfields[0].def = d->group_default;
    if (cfg_bind(cfg, "consumer", cfields, sizeof(cfields) / sizeof(cfields[0]), &d->conf, NULL,
                 err, errlen))
        return -1;
    if (d->conf.max_delayed > d->conf.max_in_flight) {
        snprintf(err, errlen,
                 "consumer.max_delayed (%lld) must not exceed "
                 "consumer.max_in_flight (%lld)",
                 (long long)d->conf.max_delayed, (long long)d->conf.max_in_flight);
        return -1;
    }
    if (dispatch_bind_retry(cfg, "retry", NULL, &d->retry, err, errlen))
        return -1;
    if (dispatch_outcome_configure(cfg, err, errlen))
        return -1;
    for (size_t i = 0; i < d->nprocs; i++) {
        dispatch_proc_t *p = &d->procs[i];
        char section[TASK_TYPE_MAX + 8];
        snprintf(section, sizeof(section), "retry_%s", p->type);
        if (dispatch_bind_retry(cfg, section, &d->retry, &p->retry, err, errlen))
            return -1;
        if (p->retry.local_backoff_initial_ms > p->retry.local_backoff_max_ms ||
            p->retry.backoff_initial_ms > p->retry.backoff_max_ms) {
            snprintf(err, errlen, "%s: backoff initial values must not exceed their max", section);
            return -1;
        }
        if (p->ops->configure && p->ops->configure(&p->state, cfg, err, errlen))
            return -1;
        d->eos = d->eos || p->ops->exactly_once;
    }
    return 0;
}

static int dispatch_ready(void *opaque, char *reason, size_t len)
{
    dispatch_t *d = opaque;
    pthread_mutex_lock(&d->ready_lock);
    mq_consumer_t *c = d->consumer;
    int ready = c && mq_consumer_ready(c);
    if (!ready && !c)
        snprintf(reason, len, "starting: processors and consumer not running yet");
    else if (!ready)
        snprintf(reason, len, "not a member of consumer group %s yet", d->conf.group_id);
    pthread_mutex_unlock(&d->ready_lock);
    return ready;
}

static void *dispatch_stop_watch(void *arg)
{
    dispatch_t *d = arg;
    app_wait_stop(d->app, -1);
    mq_consumer_stop(d->consumer);
    return NULL;
}

static void dispatch_metrics_init(dispatch_t *d, metrics_registry_t *reg)
{
    static const char *const t1[] = {"task_type"};
    static const char *const t2[] = {"task_type", "where"};
    static const char *const tk[] = {"task_type", "kind"};
    metrics_family_t *consumed = metrics_counter_new(
        reg, "imtask_tasks_consumed_total", "Tasks of this binary's types taken from Kafka", 1, t1);
    metrics_family_t *succeeded = metrics_counter_new(reg, "imtask_tasks_succeeded_total",
                                                      "Tasks processed successfully", 1, t1);
    metrics_family_t *retried = metrics_counter_new(
        reg, "imtask_tasks_retried_total",
        "Failed attempts retried, in process (local) or through the retry topic (topic)", 2, t2);
    metrics_family_t *in_flight =
        metrics_gauge_new(reg, "imtask_tasks_in_flight", "Tasks being processed now", 1, t1);
    metrics_family_t *processing = metrics_histogram_new(
        reg, "imtask_task_processing_seconds", "Time of one process() call with its outputs", 1, t1,
        metrics_latency_nbounds, metrics_latency_bounds);
    d->f_skipped = metrics_counter_new(reg, "imtask_tasks_skipped_total",
                                       "Tasks of other binaries' types passed over", 1, t1);
    d->f_dead = metrics_counter_new(reg, "imtask_tasks_dead_lettered_total",
                                    "Tasks written to the dead-letter topic", 2, tk);
    d->unknown_consumed = metrics_series_get1(consumed, "unknown");
    if (d->eos) {
        static const char *const tr[] = {"result"};
        metrics_family_t *txns = metrics_counter_new(
            reg, "imtask_transactions_total",
            "Exactly-once transactions ended, by result (committed, aborted); with "
            "consumer.transactions shared, one holds the tasks the workers ran together",
            1, tr);
        d->txn_committed = metrics_series_get1(txns, "committed");
        d->txn_aborted = metrics_series_get1(txns, "aborted");
        d->txn_repeated = metrics_series_get0(metrics_counter_new(
            reg, "imtask_transaction_tasks_repeated_total",
            "Finished tasks run again because a task sharing their transaction failed after "
            "writing, or its commit failed",
            0, NULL));
    }
    for (size_t i = 0; i < d->nprocs; i++) {
        dispatch_proc_t *p = &d->procs[i];
        const char *local[] = {p->type, "local"}, *topic[] = {p->type, "topic"};
        p->consumed = metrics_series_get1(consumed, p->type);
        p->succeeded = metrics_series_get1(succeeded, p->type);
        p->retried_local = metrics_series_get(retried, local);
        p->retried_topic = metrics_series_get(retried, topic);
        p->in_flight = metrics_series_get1(in_flight, p->type);
        p->processing = metrics_series_get1(processing, p->type);
    }
}

static int dispatch_run(app_t *app, void *opaque)
{
    dispatch_t *d = opaque;
    const app_config_t *ac = app_config(app);
    char err[CFG_ERR_MAX], client_id[160];
    rd_kafka_conf_t *pconf = NULL, *cconf = NULL;
    pthread_t watcher;
    bool watching = false;
    int status = 1;
    const char *topics[] = {d->conf.topic, d->conf.retry_topic, NULL};

    d->app = app;
    dispatch_metrics_init(d, app_metrics(app));
    if (d->eos)
        log_info("exactly-once mode: each task's outputs and input offset commit in one "
                 "transaction (%s); partitions run one message at a time",
                 d->conf.transactions ? "shared by the workers' tasks" : "one per worker");
    snprintf(client_id, sizeof(client_id), "imtask-%s", d->name);
    const char *extra[] = {"client.id", client_id, NULL};
    pconf = mq_conf_build(ac->kafka_brokers, &ac->kafka_props, extra, err, sizeof(err));
    if (!pconf || !(d->producer = mq_producer_new(pconf, err, sizeof(err)))) {
        log_error("kafka producer: %s", err);
        goto out;
    }
    pconf = NULL;
    dispatch_outcome_start(d->producer, app_metrics(app), d->name);
    /* not ready until the processors started and the consumer joined */
    httpd_add_ready_check(app_httpd(app), "kafka_consumer_group", dispatch_ready, d);
    for (size_t i = 0; i < d->nprocs; i++) {
        dispatch_proc_t *p = &d->procs[i];
        if (p->ops->start && p->ops->start(p->state, app, err, sizeof(err))) {
            log_error("processor %s: %s", p->type, err);
            goto out;
        }
        p->started = true;
    }
    if (d->eos)
        dispatch_txns_premake(d);
    mq_consumer_opts_t opts = {
        .group_id = d->conf.group_id,
        .topics = topics,
        .workers = (int)d->conf.workers,
        .max_in_flight = (int)d->conf.max_in_flight,
        .max_delayed = (int)d->conf.max_delayed,
        .revoke_timeout_ms = d->conf.revoke_timeout_ms,
        .ordered_partitions = d->eos,
        .offsets_by_transaction = d->eos,
        .filter = dispatch_filter,
        .handle = dispatch_handle,
        .opaque = d,
        .metrics = app_metrics(app),
    };
    /* A new group starts at the oldest task, not the newest: tasks enqueued
     * before a binary's first start are work too (kafka.auto.offset.reset
     * overrides). */
    const char *cextra[] = {"client.id", client_id, "auto.offset.reset", "earliest", NULL};
    for (size_t i = 0; i < ac->kafka_props.count; i++) {
        if (strcmp(ac->kafka_props.items[i].key, "auto.offset.reset") == 0)
            cextra[2] = NULL;
    }
    cconf = mq_conf_build(ac->kafka_brokers, &ac->kafka_props, cextra, err, sizeof(err));
    mq_consumer_t *consumer = cconf ? mq_consumer_new(cconf, &opts, err, sizeof(err)) : NULL;
    if (!consumer) {
        log_error("kafka consumer: %s", err);
        goto out;
    }
    cconf = NULL;
    pthread_mutex_lock(&d->ready_lock);
    d->consumer = consumer;
    pthread_mutex_unlock(&d->ready_lock);
    if (pthread_create(&watcher, NULL, dispatch_stop_watch, d) != 0) {
        log_error("cannot start the stop watcher");
        goto out;
    }
    watching = true;

    mq_err_t rc = mq_consumer_run(d->consumer, ac->shutdown_grace_ms);
    status = rc == MQ_OK ? 0 : rc == MQ_ERR_TIMEOUT ? 0 : 1;

out:
    if (watching) {
        app_request_stop(app); /* ends the watcher when run ended on its own */
        pthread_join(watcher, NULL);
    }
    if (d->producer && mq_producer_flush(d->producer, DISPATCH_PRODUCE_TIMEOUT_MS) != MQ_OK)
        log_warn("producer: records still unconfirmed at exit");
    pthread_mutex_lock(&d->ready_lock);
    mq_consumer_t *ended = d->consumer;
    d->consumer = NULL;
    pthread_mutex_unlock(&d->ready_lock);
    mq_consumer_destroy(&ended);
    for (size_t i = 0; i < d->ntxns; i++)
        mq_txn_destroy(&d->txns[i]);
    mq_txn_destroy(&d->shared.txn);
    for (size_t i = 0; i < d->nprocs; i++) {
        dispatch_proc_t *p = &d->procs[i];
        if (p->ops->destroy)
            p->ops->destroy(p->state);
        p->state = NULL;
    }
    dispatch_outcome_stop();
    mq_producer_destroy(&d->producer, DISPATCH_PRODUCE_TIMEOUT_MS);
    if (pconf)
        rd_kafka_conf_destroy(pconf);
    if (cconf)
        rd_kafka_conf_destroy(cconf);
    return status;
}

dispatch_t *dispatch_new(const char *name)
{
    dispatch_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->name = name;
    pthread_mutex_init(&d->txn_lock, NULL);
    pthread_mutex_init(&d->shared.lock, NULL);
    pthread_cond_init(&d->shared.cond, NULL);
    pthread_mutex_init(&d->parts_lock, NULL);
    pthread_mutex_init(&d->ready_lock, NULL);
    return d;
}

void dispatch_destroy(dispatch_t **dp)
{
    dispatch_t *d = dp ? *dp : NULL;
    if (!d)
        return;
    for (size_t i = 0; i < d->nprocs; i++) {
        if (d->procs[i].state && d->procs[i].ops->destroy)
            d->procs[i].ops->destroy(d->procs[i].state);
    }
    pthread_mutex_destroy(&d->txn_lock);
    pthread_mutex_destroy(&d->shared.lock);
    pthread_cond_destroy(&d->shared.cond);
    pthread_mutex_destroy(&d->parts_lock);
    pthread_mutex_destroy(&d->ready_lock);
    free(d);
    *dp = NULL;
}

const dispatch_ops_t *dispatch_lookup(dispatch_t *d, const char *task_type)
{
    const char *canon = task_type_canonical(task_type);
    dispatch_proc_t *p = dispatch_find(d, canon ? canon : task_type);
    return p ? p->ops : NULL;
}

int dispatch_main(int argc, char **argv, const char *name, const char *summary,
                  int (*register_fn)(dispatch_t *d))
{
    dispatch_t *d;
    int status;
    log_setup(name, LOG_LEVEL_INFO);
    d = dispatch_new(name);
    if (!d)
        return 1;
    if (register_fn(d) != 0 || d->nprocs == 0) {
        log_error("imtask-%s: registering processors failed", name);
        dispatch_destroy(&d);
        return 2;
    }
    app_spec_t spec = {
        .name = name,
        .summary = summary,
        .configure = dispatch_configure,
        .run = dispatch_run,
        .opaque = d,
    };
    status = app_main(argc, argv, &spec);
    dispatch_destroy(&d); /* run() destroyed the states it used; this frees the rest */
    return status;
}
