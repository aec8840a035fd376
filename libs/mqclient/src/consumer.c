/* consumer.c: the at-least-once consumer runtime: one poll thread that owns
 * all offset bookkeeping, key-ordered worker lanes, pause/resume at the
 * in-flight bound, delayed (not-before) messages, cooperative rebalancing and
 * graceful close. See mq.h for the guarantees. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/clock.h"
#include "infra/log.h"
#include "mqclient/mq.h"
#include "offsets.h"

#define MQ_MAX_PARTS 4096 /* partitions one member may own */
#define MQ_LAG_EVERY_MS 5000
#define MQ_JOIN_AFTER_GRACE_MS 5000
/* At the in-flight bound the poll thread first waits for completions
 * without polling (librdkafka keeps its prefetched messages); only when the
 * bound holds this long are the partitions paused (which drops the prefetch)
 * so that polling, rebalances and max.poll.interval.ms go on. */
#define MQ_PAUSE_AFTER_MS 1000
#define MQ_BOUND_WAIT_STEP_MS 10
#define MQ_DONE_EVERY_MS 1    /* a worker hands finished messages back at least this often */
#define MQ_POLL_BATCH 256     /* messages taken from librdkafka per loop, at most */
#define MQ_LEAVE_MAX_MS 10000 /* leaving the group, after the grace, at most */
#define MQ_LEAVE_STEP_MS 50

typedef struct mq_part_s {
    char *topic;
    int32_t partition;
    mq_offsets_t *offsets; /* NULL while not assigned */
    _Atomic uint32_t gen;  /* bumped on assign and revoke; workers read it */
    bool assigned;
    bool paused;  /* as we told librdkafka */
    int running;  /* dispatched in this generation, not completed */
    int delayed;  /* in the delay heap, this generation */
    bool blocked; /* ordered mode: a delayed message holds the partition */
    bool dirty;   /* finished offsets not yet stored */
    /* ordered mode, under lanes[0].lock: a worker runs one of its messages;
     * when the last one started (ord_seq); the last scan that saw it */
    bool busy;
    uint64_t started, seen;
    int64_t stored; /* last offset stored, -1 none */
    metrics_series_t *lag;
} mq_part_t;

/* Record copies up to this size keep their buffer when the mq_msg_t is kept
 * as a spare; bigger ones are freed (max_in_flight spares of at most this). */
#define MQ_SPARE_BUF_MAX 16384

struct mq_msg_s {
    mq_record_t rec; /* copied out of librdkafka's fetch buffer (mq_msg_copy) */
    uint8_t *buf;    /* rec's key and value */
    size_t cap;
    mq_consumer_t *c;
    mq_part_t *part;
    uint32_t gen;
    atomic_int refs;
    void *user;
    int64_t not_before_ms;
    atomic_bool abandoned;
    mq_msg_t *next;
};

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mq_msg_t *head, *tail;
    pthread_t thread;
    mq_consumer_t *c;
    bool started;
    mq_msg_t *pend_head, *pend_tail; /* poll thread only: dispatched, not yet handed over */
} mq_lane_t;

struct mq_consumer_s {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer queue, for yield */
    mq_consumer_opts_t opts;
    char *group_id;
    char **topics;
    size_t ntopics;

    mq_part_t *parts[MQ_MAX_PARTS];
    size_t nparts;

    /* keyed mode: one queue per worker; ordered mode: every worker takes
     * from lanes[0]'s queue (the others' stay empty) */
    mq_lane_t *lanes;
    unsigned rr;                /* round robin for keyless messages */
    uint64_t ord_seq, ord_scan; /* ordered mode, under lanes[0].lock */
    atomic_bool lanes_quit;

    /* completions: workers -> poll thread */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;
    mq_msg_t *done_head;

    /* delayed messages: a binary min-heap on not_before_ms */
    mq_msg_t **heap;
    size_t nheap;

    /* finished mq_msg_t kept for the next message instead of free + calloc
     * (poll thread only: messages are taken and freed there); at most
     * max_in_flight of them */
    mq_msg_t *spare;
    int nspare;

    size_t held;     /* tracker entries over all partitions */
    int outstanding; /* dispatched, not completed (all generations) */
    atomic_int in_flight_gauge;
    bool paused_all;
    int64_t bound_since; /* mono ms the in-flight bound was first hit, 0 when below */
    bool blocked_now;    /* ordered mode: a partition was just blocked, pause it first */
    bool in_shutdown;
    atomic_bool stop;
    atomic_bool joined;
    atomic_bool cancelled;
    int64_t next_lag_ms;

    metrics_series_t *m_in_flight, *m_paused, *m_delayed, *m_assigned, *m_revoked, *m_lost;
    metrics_family_t *f_lag;
};

/* ---- small helpers ---------------------------------------------------- */

static mq_part_t *mq_part_find(mq_consumer_t *c, const char *topic, int32_t partition, bool create)
{
    for (size_t i = 0; i < c->nparts; i++) {
        if (c->parts[i]->partition == partition && strcmp(c->parts[i]->topic, topic) == 0)
            return c->parts[i];
    }
    if (!create || c->nparts == MQ_MAX_PARTS)
        return NULL;
    mq_part_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->topic = strdup(topic);
    if (!p->topic) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->stored = -1;
    if (c->f_lag) {
        char pbuf[16];
        snprintf(pbuf, sizeof(pbuf), "%d", (int)partition);
        const char *labels[] = {topic, pbuf};
        p->lag = metrics_series_get(c->f_lag, labels);
    }
    c->parts[c->nparts++] = p;
    return p;
}

static void mq_msg_free(mq_msg_t *m)
{
    if (!m)
        return;
    if (m->rec.headers)
        rd_kafka_headers_destroy(m->rec.headers);
    m->rec.headers = NULL;
    mq_consumer_t *c = m->c;
    if (c && c->nspare < c->opts.max_in_flight) {
        if (m->cap > MQ_SPARE_BUF_MAX) {
            free(m->buf);
            m->buf = NULL;
            m->cap = 0;
        }
        m->next = c->spare;
        c->spare = m;
        c->nspare++;
        return;
    }
    free(m->buf);
    free(m);
}

/* A zeroed mq_msg_t: a spare one, or a new one (NULL: out of memory). */
static mq_msg_t *mq_msg_new(mq_consumer_t *c)
{
    mq_msg_t *m = c->spare;
    if (!m)
        return calloc(1, sizeof(*m));
    c->spare = m->next;
    c->nspare--;
    uint8_t *buf = m->buf;
    size_t cap = m->cap;
    memset(m, 0, sizeof(*m));
    m->buf = buf; /* a spare keeps its buffer */
    m->cap = cap;
    return m;
}

/* Copy what a handler may read of rkm (key, value, headers, position,
 * timestamp) into m, so that rkm can be destroyed at once. librdkafka's
 * records point into the fetch response they came in, which stays
 * allocated while any of its records lives: a task held for seconds (a
 * fan-out slice, a delayed retry) would pin the whole response, with every
 * other record in it, skipped ones included. Returns -1 when out of memory. */
static int mq_msg_copy(mq_msg_t *m, const mq_part_t *p, rd_kafka_message_t *rkm)
{
    size_t klen = rkm->key ? rkm->key_len : 0;
    size_t vlen = rkm->payload ? rkm->len : 0;
    if (klen + vlen > m->cap) {
        uint8_t *b = realloc(m->buf, klen + vlen);
        if (!b)
            return -1;
        m->buf = b;
        m->cap = klen + vlen;
    }
    if (klen)
        memcpy(m->buf, rkm->key, klen);
    if (vlen)
        memcpy(m->buf + klen, rkm->payload, vlen);
    const void *payload = NULL; /* an empty value stays distinct from none */
    if (rkm->payload)
        payload = vlen ? m->buf + klen : (const void *)"";
    rd_kafka_timestamp_type_t tstype;
    m->rec = (mq_record_t){.topic = p->topic,
                           .partition = rkm->partition,
                           .offset = rkm->offset,
                           .timestamp = rd_kafka_message_timestamp(rkm, &tstype),
                           .key = klen ? m->buf : NULL,
                           .key_len = klen,
                           .payload = payload,
                           .len = vlen};
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_detach_headers(rkm, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        m->rec.headers = h;
    return 0;
}

static void mq_update_gauges(mq_consumer_t *c)
{
    atomic_store(&c->in_flight_gauge, (int)c->held);
    metrics_gauge_set(c->m_in_flight, (double)c->held);
    metrics_gauge_set(c->m_delayed, (double)c->nheap);
    metrics_gauge_set(c->m_paused, c->paused_all ? 1 : 0);
}

/* ---- delay heap ------------------------------------------------------- */

static void mq_heap_swap(mq_consumer_t *c, size_t a, size_t b)
{
    mq_msg_t *t = c->heap[a];
    c->heap[a] = c->heap[b];
    c->heap[b] = t;
}

static void mq_heap_push(mq_consumer_t *c, mq_msg_t *m)
{
    size_t i = c->nheap++;
    c->heap[i] = m;
    while (i > 0 && c->heap[(i - 1) / 2]->not_before_ms > c->heap[i]->not_before_ms) {
        mq_heap_swap(c, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static mq_msg_t *mq_heap_pop(mq_consumer_t *c)
{
    mq_msg_t *top;
    size_t i = 0;
    if (c->nheap == 0)
        return NULL;
    top = c->heap[0];
    c->heap[0] = c->heap[--c->nheap];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->nheap && c->heap[l]->not_before_ms < c->heap[m]->not_before_ms)
            m = l;
        if (r < c->nheap && c->heap[r]->not_before_ms < c->heap[m]->not_before_ms)
            m = r;
        if (m == i)
            break;
        mq_heap_swap(c, i, m);
        i = m;
    }
    return top;
}

/* Drop the delayed messages of part (or of every partition when part is
 * NULL): they stay unfinished, so their offsets are never stored and the
 * next owner reads them again. */
static void mq_heap_drop(mq_consumer_t *c, mq_part_t *part)
{
    size_t keep = 0;
    for (size_t i = 0; i < c->nheap; i++) {
        mq_msg_t *m = c->heap[i];
        if (part && m->part != part) {
            c->heap[keep++] = m;
            continue;
        }
        m->part->delayed--;
        m->part->blocked = false;
        mq_msg_free(m);
    }
    c->nheap = keep;
    for (size_t i = c->nheap / 2; i-- > 0;) { /* re-heapify */
        size_t j = i;
        for (;;) {
            size_t l = 2 * j + 1, r = l + 1, m = j;
            if (l < c->nheap && c->heap[l]->not_before_ms < c->heap[m]->not_before_ms)
                m = l;
            if (r < c->nheap && c->heap[r]->not_before_ms < c->heap[m]->not_before_ms)
                m = r;
            if (m == j)
                break;
            mq_heap_swap(c, j, m);
            j = m;
        }
    }
}

/* ---- workers ---------------------------------------------------------- */

static void mq_lanes_flush(mq_consumer_t *c);

/* Hand finished messages first..last (linked by next) to the poll thread. */
static void mq_complete_list(mq_consumer_t *c, mq_msg_t *first, mq_msg_t *last)
{
    bool was_empty;
    pthread_mutex_lock(&c->done_lock);
    was_empty = c->done_head == NULL;
    last->next = c->done_head;
    c->done_head = first;
    pthread_cond_signal(&c->done_cond);
    pthread_mutex_unlock(&c->done_lock);
    if (was_empty)
        rd_kafka_queue_yield(c->queue); /* wake the poll thread */
}

static void mq_complete(mq_msg_t *m)
{
    mq_complete_list(m->c, m, m);
}

void mq_msg_hold(mq_msg_t *msg)
{
    atomic_fetch_add(&msg->refs, 1);
}

void mq_msg_release(mq_msg_t *msg)
{
    if (atomic_fetch_sub(&msg->refs, 1) == 1)
        mq_complete(msg);
}

void mq_msg_abandon(mq_msg_t *msg)
{
    atomic_store(&msg->abandoned, true);
}

bool mq_msg_revoked(const mq_msg_t *msg)
{
    return atomic_load(&msg->part->gen) != msg->gen;
}

const mq_record_t *mq_msg_record(const mq_msg_t *msg)
{
    return &msg->rec;
}

void mq_msg_set_user(mq_msg_t *msg, void *user)
{
    msg->user = user;
}

void *mq_msg_user(const mq_msg_t *msg)
{
    return msg->user;
}

mq_consumer_t *mq_msg_consumer(const mq_msg_t *msg)
{
    return msg->c;
}

static void *mq_lane_thread(void *arg)
{
    mq_lane_t *lane = arg;
    mq_consumer_t *c = lane->c;
    for (;;) {
        mq_msg_t *list, *done_first = NULL, *done_last = NULL;
        pthread_mutex_lock(&lane->lock);
        while (!lane->head && !atomic_load(&c->lanes_quit))
            pthread_cond_wait(&lane->cond, &lane->lock);
        list = lane->head; /* take the whole queue: one lock per batch */
        if (!list) {       /* quitting and empty */
            pthread_mutex_unlock(&lane->lock);
            return NULL;
        }
        lane->head = lane->tail = NULL;
        pthread_mutex_unlock(&lane->lock);

        int64_t since = clock_mono_ms();
        while (list) {
            mq_msg_t *m = list;
            list = m->next;
            m->next = NULL;
            atomic_store(&m->refs, 1);
            /* a message of a partition revoked since it was queued is not run */
            if (!atomic_load(&c->lanes_quit) && atomic_load(&m->part->gen) == m->gen)
                c->opts.handle(c->opts.opaque, m);
            if (atomic_fetch_sub(&m->refs, 1) == 1) { /* finished: batch the hand-back */
                if (done_last)
                    done_last->next = m;
                else
                    done_first = m;
                done_last = m;
            }
            /* slow handlers: hand back at least every MQ_DONE_EVERY_MS, so
             * offsets, the in-flight count and revokes never wait for a
             * whole batch */
            int64_t now = clock_mono_ms();
            if (done_first && (!list || now - since >= MQ_DONE_EVERY_MS)) {
                mq_complete_list(c, done_first, done_last);
                done_first = done_last = NULL;
                since = now;
            }
        }
    }
}

/* Ordered mode: the next message for a free worker (the caller holds
 * q->lock), *prev its predecessor in q: of the partitions no worker is
 * running, the oldest queued message of the one that started a message
 * longest ago (round robin over the partitions with work: a partition that
 * was fetched first does not run its whole queue before the others start,
 * which left one partition's chain of slice tasks alone at the end of a
 * sharded fan-out). NULL when every queued message waits for its partition. */
static mq_msg_t *mq_ordered_next(mq_consumer_t *c, mq_lane_t *q, mq_msg_t **prev)
{
    mq_msg_t *best = NULL;
    uint64_t scan = ++c->ord_scan;
    *prev = NULL;
    for (mq_msg_t *m = q->head, *before = NULL; m; before = m, m = m->next) {
        mq_part_t *p = m->part;
        if (p->busy || p->seen == scan) /* running, or not its oldest */
            continue;
        p->seen = scan;
        if (!best || p->started < best->part->started) {
            best = m;
            *prev = before;
        }
    }
    return best;
}

/* Ordered mode: every worker takes from one queue (lanes[0]'s) a message
 * whose partition no worker is running (mq_ordered_next), runs it and marks
 * the partition free again; so a partition's messages run one at a time in
 * offset order, and a worker is idle only when every queued message waits
 * for its partition. (Pinning a partition to a worker while it had queued
 * messages left a worker running two partitions' chains of tasks one after
 * the other while the others had nothing: the end of a sharded fan-out.) */
static void *mq_ordered_thread(void *arg)
{
    mq_lane_t *q = arg;
    mq_consumer_t *c = q->c;
    for (;;) {
        mq_msg_t *m = NULL, *prev = NULL;
        pthread_mutex_lock(&q->lock);
        for (;;) {
            m = mq_ordered_next(c, q, &prev);
            if (m || (atomic_load(&c->lanes_quit) && !q->head))
                break;
            pthread_cond_wait(&q->cond, &q->lock);
        }
        if (!m) { /* quitting and empty */
            pthread_mutex_unlock(&q->lock);
            return NULL;
        }
        if (prev)
            prev->next = m->next;
        else
            q->head = m->next;
        if (q->tail == m)
            q->tail = prev;
        m->next = NULL;
        mq_part_t *p = m->part; /* parts live as long as the consumer */
        p->busy = true;
        p->started = ++c->ord_seq;
        pthread_mutex_unlock(&q->lock);

        atomic_store(&m->refs, 1);
        if (!atomic_load(&c->lanes_quit) && atomic_load(&p->gen) == m->gen)
            c->opts.handle(c->opts.opaque, m);
        pthread_mutex_lock(&q->lock);
        p->busy = false;
        pthread_cond_broadcast(&q->cond); /* its next message may be waiting */
        pthread_mutex_unlock(&q->lock);
        if (atomic_fetch_sub(&m->refs, 1) == 1)
            mq_complete_list(c, m, m);
    }
}

/* The lane of a message. Keyed mode: FNV-1a over the partition and the
 * key, so one key keeps one lane and its order. Ordered mode: the one
 * queue all workers take from. */
static int mq_lane_of(mq_consumer_t *c, const mq_msg_t *m)
{
    const mq_record_t *r = &m->rec;
    int n = c->opts.workers;
    if (c->opts.ordered_partitions)
        return 0;
    if (!r->key || r->key_len == 0)
        return (int)(c->rr++ % (unsigned)n);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < r->key_len; i++)
        h = (h ^ ((const unsigned char *)r->key)[i]) * 16777619u;
    h = (h ^ (uint32_t)r->partition) * 16777619u;
    return (int)(h % (unsigned)n);
}

/* Queue m for its lane; mq_lanes_flush hands the queued messages over. */
static void mq_dispatch(mq_consumer_t *c, mq_msg_t *m)
{
    mq_lane_t *lane = &c->lanes[mq_lane_of(c, m)];
    m->part->running++;
    c->outstanding++;
    m->next = NULL;
    if (lane->pend_tail)
        lane->pend_tail->next = m;
    else
        lane->pend_head = m;
    lane->pend_tail = m;
}

/* One lock and at most one wake-up per lane for everything dispatched since
 * the last flush. */
static void mq_lanes_flush(mq_consumer_t *c)
{
    for (int i = 0; i < c->opts.workers; i++) {
        mq_lane_t *lane = &c->lanes[i];
        if (!lane->pend_head)
            continue;
        pthread_mutex_lock(&lane->lock);
        if (lane->tail)
            lane->tail->next = lane->pend_head;
        else
            lane->head = lane->pend_head;
        lane->tail = lane->pend_tail;
        if (c->opts.ordered_partitions) /* any worker may take them */
            pthread_cond_broadcast(&lane->cond);
        else
            pthread_cond_signal(&lane->cond);
        pthread_mutex_unlock(&lane->lock);
        lane->pend_head = lane->pend_tail = NULL;
    }
}

/* ---- offsets ---------------------------------------------------------- */

static void mq_held_track(mq_consumer_t *c, mq_part_t *p, size_t before)
{
    size_t after = mq_offsets_entries(p->offsets);
    c->held = c->held - before + after;
}

/* Store the partition's frontier with librdkafka when it moved. */
static void mq_store(mq_consumer_t *c, mq_part_t *p)
{
    size_t before = mq_offsets_entries(p->offsets);
    int64_t f = mq_offsets_frontier(p->offsets);
    mq_held_track(c, p, before);
    if (f < 0 || f == p->stored || c->opts.offsets_by_transaction)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = f;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        e = l->elems[0].err;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        p->stored = f;
    else
        log_warn("storing offset %s[%d]@%lld: %s", p->topic, (int)p->partition, (long long)f,
                 rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Take the finished messages from the workers: mark them done, store offsets. */
static void mq_drain_done(mq_consumer_t *c)
{
    mq_msg_t *list;
    pthread_mutex_lock(&c->done_lock);
    list = c->done_head;
    c->done_head = NULL;
    pthread_mutex_unlock(&c->done_lock);
    while (list) {
        mq_msg_t *m = list;
        mq_part_t *p = m->part;
        list = m->next;
        c->outstanding--;
        if (p->assigned && m->gen == atomic_load(&p->gen)) {
            p->running--;
            if (atomic_load(&m->abandoned))
                log_error("%s[%d]@%lld left unfinished: the partition's offset stays before it "
                          "until it is consumed again",
                          p->topic, (int)p->partition, (long long)m->rec.offset);
            else if (mq_offsets_done(p->offsets, m->rec.offset) == 0)
                p->dirty = true;
        }
        mq_msg_free(m);
    }
    /* one store per partition and drain, not one per message */
    for (size_t i = 0; i < c->nparts; i++) {
        mq_part_t *p = c->parts[i];
        if (p->dirty && p->assigned)
            mq_store(c, p);
        p->dirty = false;
    }
}

/* ---- pause / resume --------------------------------------------------- */

static void mq_apply_pauses(mq_consumer_t *c)
{
    bool delay_full = (int)c->nheap >= c->opts.max_delayed;
    rd_kafka_topic_partition_list_t *pause = NULL, *resume = NULL;

    if (!c->paused_all && (int)c->held >= c->opts.max_in_flight && c->bound_since &&
        clock_mono_ms() - c->bound_since >= MQ_PAUSE_AFTER_MS)
        c->paused_all = true;
    else if (c->paused_all && !c->in_shutdown &&
             (int)c->held <= c->opts.max_in_flight - (c->opts.max_in_flight + 3) / 4)
        c->paused_all = false;

    for (size_t i = 0; i < c->nparts; i++) {
        mq_part_t *p = c->parts[i];
        bool want;
        if (!p->assigned)
            continue;
        want = c->paused_all || c->in_shutdown || p->blocked || (delay_full && p->delayed > 0);
        if (want == p->paused)
            continue;
        rd_kafka_topic_partition_list_t **l = want ? &pause : &resume;
        if (!*l)
            *l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(*l, p->topic, p->partition);
        p->paused = want;
    }
    if (pause) {
        rd_kafka_pause_partitions(c->rk, pause);
        rd_kafka_topic_partition_list_destroy(pause);
    }
    if (resume) {
        rd_kafka_resume_partitions(c->rk, resume);
        rd_kafka_topic_partition_list_destroy(resume);
    }
    mq_update_gauges(c);
}

/* ---- rebalance -------------------------------------------------------- */

/* Wait up to ms for a completion from the workers. */
static void mq_wait_done(mq_consumer_t *c, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    while (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->done_lock);
    if (!c->done_head)
        pthread_cond_timedwait(&c->done_cond, &c->done_lock, &ts);
    pthread_mutex_unlock(&c->done_lock);
}

/* Wait (serving completions) until the given partitions have nothing running,
 * up to timeout_ms. */
static void mq_wait_parts(mq_consumer_t *c, mq_part_t **ps, size_t n, int64_t timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        int running = 0;
        mq_drain_done(c);
        for (size_t i = 0; i < n; i++)
            running += ps[i]->running;
        if (running == 0)
            return;
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) {
            log_warn("revoke: %d messages still running after %lld ms; they will be redelivered "
                     "to the next owner",
                     running, (long long)timeout_ms);
            return;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t step = left < 50 ? left : 50;
        ts.tv_nsec += step * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&c->done_lock);
        if (!c->done_head)
            pthread_cond_timedwait(&c->done_cond, &c->done_lock, &ts);
        pthread_mutex_unlock(&c->done_lock);
    }
}

static void mq_on_assign(mq_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        mq_part_t *p = mq_part_find(c, parts->elems[i].topic, parts->elems[i].partition, true);
        if (!p) {
            log_error("assign: cannot track %s[%d] (more than %d partitions?)",
                      parts->elems[i].topic, (int)parts->elems[i].partition, MQ_MAX_PARTS);
            continue;
        }
        mq_offsets_destroy(p->offsets);
        p->offsets = mq_offsets_new((size_t)c->opts.max_in_flight + 1);
        p->assigned = p->offsets != NULL;
        p->paused = false;
        p->running = 0;
        p->delayed = 0;
        p->blocked = false;
        p->stored = -1;
        atomic_fetch_add(&p->gen, 1);
    }
    metrics_counter_add(c->m_assigned, parts->cnt);
    log_info("assigned %d partitions", parts->cnt);
}

static void mq_on_revoke(mq_consumer_t *c, rd_kafka_topic_partition_list_t *parts, bool lost)
{
    mq_part_t *ps[MQ_MAX_PARTS];
    size_t n = 0;
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(parts->cnt);

    for (int i = 0; i < parts->cnt; i++) {
        mq_part_t *p = mq_part_find(c, parts->elems[i].topic, parts->elems[i].partition, false);
        if (p && p->assigned) {
            ps[n++] = p;
            mq_heap_drop(c, p);
        }
    }
    mq_lanes_flush(c); /* what was taken before this callback runs first */
    if (!lost)
        mq_wait_parts(c, ps, n, c->in_shutdown ? 0 : c->opts.revoke_timeout_ms);
    for (size_t i = 0; i < n; i++) {
        mq_part_t *p = ps[i];
        if (!lost) {
            mq_store(c, p);
            if (p->stored >= 0)
                rd_kafka_topic_partition_list_add(commit, p->topic, p->partition)->offset =
                    p->stored;
        }
        size_t before = mq_offsets_entries(p->offsets);
        c->held -= before;
        mq_offsets_destroy(p->offsets);
        p->offsets = NULL;
        p->assigned = false;
        p->paused = false;
        p->running = 0;
        atomic_fetch_add(&p->gen, 1); /* late completions of this owner are ignored */
    }
    if (commit->cnt > 0 && !c->opts.offsets_by_transaction) {
        rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, commit, 0 /* sync */);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_warn("revoke: committing %d partitions: %s", commit->cnt, rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(commit);
    metrics_counter_add(lost ? c->m_lost : c->m_revoked, parts->cnt);
    log_info("%s %d partitions", lost ? "lost" : "revoked", parts->cnt);
}

static void mq_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    mq_consumer_t *c = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        mq_on_assign(c, parts);
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        atomic_store(&c->joined, true);
    } else {
        mq_on_revoke(c, parts, rd_kafka_assignment_lost(rk) != 0);
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
    }
    if (error) {
        log_error("rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    mq_apply_pauses(c); /* newly assigned partitions follow the current pause state */
}

/* ---- lag -------------------------------------------------------------- */

static void mq_update_lag(mq_consumer_t *c)
{
    int64_t now = clock_mono_ms();
    if (now < c->next_lag_ms)
        return;
    c->next_lag_ms = now + MQ_LAG_EVERY_MS;
    for (size_t i = 0; i < c->nparts; i++) {
        mq_part_t *p = c->parts[i];
        int64_t lo, hi;
        if (!p->assigned || !p->lag)
            continue;
        if (rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi) || hi < 0)
            continue;
        size_t before = mq_offsets_entries(p->offsets);
        int64_t f = mq_offsets_frontier(p->offsets); /* what is finished, committed or not */
        mq_held_track(c, p, before);
        int64_t at = f >= 0 ? f : lo;
        metrics_gauge_set(p->lag, (double)(hi > at ? hi - at : 0));
    }
}

/* ---- the poll loop ---------------------------------------------------- */

static void mq_take(mq_consumer_t *c, rd_kafka_message_t *rkm)
{
    mq_part_t *p = mq_part_find(c, rd_kafka_topic_name(rkm->rkt), rkm->partition, false);
    int64_t not_before = 0;
    void *user = NULL;
    size_t before;

    if (!p || !p->assigned) { /* cannot happen after a synchronous revoke; be safe */
        rd_kafka_message_destroy(rkm);
        return;
    }
    before = mq_offsets_entries(p->offsets);
    if (c->opts.filter(c->opts.opaque, rkm, &not_before, &user) == MQ_SKIP) {
        if (mq_offsets_skip(p->offsets, rkm->offset) != 0)
            log_error("offset tracker refused skipped %s[%d]@%lld", p->topic, (int)p->partition,
                      (long long)rkm->offset);
        mq_held_track(c, p, before);
        p->dirty = true; /* stored with the next drain */
        rd_kafka_message_destroy(rkm);
        return;
    }
    mq_msg_t *m = mq_msg_new(c);
    if (!m || mq_msg_copy(m, p, rkm) != 0 || mq_offsets_add(p->offsets, rkm->offset) != 0) {
        /* Out of memory or a tracker bound that pausing should have
         * prevented: rewind so the message comes again, never lose it. */
        log_error("cannot take %s[%d]@%lld: rewinding", p->topic, (int)p->partition,
                  (long long)rkm->offset);
        mq_msg_free(m); /* m->c is not set yet: freed, not kept as a spare */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = rkm->offset;
        rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 5000);
        if (e)
            rd_kafka_error_destroy(e);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_message_destroy(rkm);
        return;
    }
    mq_held_track(c, p, before);
    rd_kafka_message_destroy(rkm); /* m holds a copy */
    m->c = c;
    m->part = p;
    m->gen = atomic_load(&p->gen);
    m->not_before_ms = not_before;
    m->user = user;
    if (not_before > clock_wall_ms()) {
        p->delayed++;
        p->blocked = c->opts.ordered_partitions;
        c->blocked_now = p->blocked;
        mq_heap_push(c, m);
    } else {
        mq_dispatch(c, m);
    }
}

static void mq_release_due(mq_consumer_t *c)
{
    if (c->nheap == 0)
        return;
    int64_t now = clock_wall_ms();
    while (c->nheap > 0 && c->heap[0]->not_before_ms <= now) {
        mq_msg_t *m = mq_heap_pop(c);
        m->part->delayed--;
        m->part->blocked = false;
        mq_dispatch(c, m);
    }
}

static int mq_poll_timeout(mq_consumer_t *c)
{
    int64_t t = c->opts.poll_interval_ms;
    if (c->nheap > 0) {
        int64_t until = c->heap[0]->not_before_ms - clock_wall_ms();
        if (until < t)
            t = until < 0 ? 0 : until;
    }
    return (int)t;
}

/* Take one message or error from librdkafka; false on a fatal error. */
static bool mq_take_one(mq_consumer_t *c, rd_kafka_message_t *rkm)
{
    if (rkm->err) {
        if (rkm->err == RD_KAFKA_RESP_ERR__FATAL) {
            log_error("consumer fatal error: %s", rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            return false;
        }
        if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("consumer: %s", rd_kafka_message_errstr(rkm));
        rd_kafka_message_destroy(rkm);
    } else {
        mq_take(c, rkm);
    }
    return true;
}

static bool mq_poll_once(mq_consumer_t *c, int timeout_ms)
{
    bool ok = true;
    rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, timeout_ms);
    c->blocked_now = false;
    if (rkm) {
        ok = mq_take_one(c, rkm);
        /* more already fetched: take them without waiting, up to the bound.
         * rd_kafka_consumer_poll, not the batch API: in librdkafka 2.0.x
         * the batch consume calls can lose or repeat messages when pause,
         * resume, seek or a rebalance run at the same time (fixed in 2.1.0). */
        for (int n = 0; ok && n < MQ_POLL_BATCH && !c->paused_all && !c->in_shutdown &&
                        !c->blocked_now && (int)c->held < c->opts.max_in_flight;
             n++) {
            rkm = rd_kafka_consumer_poll(c->rk, 0);
            if (!rkm)
                break;
            ok = mq_take_one(c, rkm);
        }
    }
    mq_lanes_flush(c);
    mq_drain_done(c);
    mq_release_due(c);
    mq_lanes_flush(c);
    mq_apply_pauses(c);
    mq_update_lag(c);
    return ok;
}

/* ---- leaving the group -------------------------------------------------
 * librdkafka 2.0.x (Debian 12's) has two faults when a cooperative-sticky
 * member closes in the middle of a rebalance:
 *  - rd_kafka_destroy aborts on an assertion in the sticky assignor when the
 *    group had chosen its protocol (JoinGroup answered) but this member had
 *    not yet received its first assignment (librdkafka#4312, fixed in 2.3.0);
 *  - rd_kafka_consumer_close can wait forever when an incremental assignment
 *    arrives while it closes (librdkafka#4527, fixed in 2.4.0).
 * So a member leaves in steps, each bounded: it finishes joining if it has
 * begun, unsubscribes and serves the revocation until it owns no partition,
 * and only then closes. */

static rd_kafka_t *mq_abandoned_rk; /* kept reachable: see mq_leave_group */

static bool mq_join_begun(mq_consumer_t *c)
{
    const char *protocol = rd_kafka_rebalance_protocol(c->rk);
    return protocol && strcmp(protocol, "NONE") != 0;
}

static int mq_owned_partitions(mq_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *owned = NULL;
    if (rd_kafka_assignment(c->rk, &owned) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    int n = owned->cnt;
    rd_kafka_topic_partition_list_destroy(owned);
    return n;
}

/* Leave the group; false when the handle must not be destroyed. */
static bool mq_leave_group(mq_consumer_t *c, int64_t grace_deadline)
{
    int64_t limit = clock_mono_ms() + MQ_LEAVE_MAX_MS;

    /* A JoinGroup may still be in flight while the protocol reads NONE:
     * give the join the rest of the grace, and more once it has begun. */
    while (!atomic_load(&c->joined) && clock_mono_ms() < limit &&
           (clock_mono_ms() < grace_deadline || mq_join_begun(c)))
        mq_poll_once(c, MQ_LEAVE_STEP_MS);
    bool destroyable = atomic_load(&c->joined) || !mq_join_begun(c);

    rd_kafka_resp_err_t e = rd_kafka_unsubscribe(c->rk);
    if (e)
        log_warn("unsubscribe: %s", rd_kafka_err2str(e));
    while (mq_owned_partitions(c) > 0 && clock_mono_ms() < limit)
        mq_poll_once(c, MQ_LEAVE_STEP_MS);
    int owned = mq_owned_partitions(c);
    if (owned > 0)
        log_warn("leaving group %s still owning %d partitions after %d ms", c->group_id, owned,
                 MQ_LEAVE_MAX_MS);
    rd_kafka_consumer_close(c->rk); /* revokes what is left through the rebalance callback */
    if (!destroyable)
        log_error("left group %s in the middle of its first rebalance: the Kafka client is "
                  "not destroyed (librdkafka 2.0 would abort, librdkafka#4312)",
                  c->group_id);
    return destroyable;
}

mq_err_t mq_consumer_run(mq_consumer_t *c, int64_t grace_ms)
{
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new((int)c->ntopics);
    mq_err_t result = MQ_OK;
    rd_kafka_resp_err_t e;

    for (size_t i = 0; i < c->ntopics; i++)
        rd_kafka_topic_partition_list_add(sub, c->topics[i], RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(c->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        log_error("subscribe: %s", rd_kafka_err2str(e));
        return MQ_ERR_KAFKA;
    }
    log_info("consuming as group %s with %d workers, at most %d in flight", c->group_id,
             c->opts.workers, c->opts.max_in_flight);

    while (!atomic_load(&c->stop)) {
        if (!c->paused_all && (int)c->held >= c->opts.max_in_flight) {
            int64_t now = clock_mono_ms();
            if (!c->bound_since)
                c->bound_since = now;
            if (now - c->bound_since < MQ_PAUSE_AFTER_MS) {
                mq_wait_done(c, MQ_BOUND_WAIT_STEP_MS);
                mq_drain_done(c);
                mq_release_due(c);
                mq_lanes_flush(c);
                continue;
            }
        } else if ((int)c->held < c->opts.max_in_flight) {
            c->bound_since = 0;
        }
        if (!mq_poll_once(c, mq_poll_timeout(c))) {
            result = MQ_ERR_FATAL;
            break;
        }
    }

    /* Graceful stop: no new work, finish what is in flight within the grace. */
    c->in_shutdown = true;
    mq_heap_drop(c, NULL);
    mq_apply_pauses(c);
    int64_t deadline = clock_mono_ms() + grace_ms;
    log_info("stopping: %d messages in flight, grace %lld ms", c->outstanding, (long long)grace_ms);
    while (c->outstanding > 0 && clock_mono_ms() < deadline) {
        if (!mq_poll_once(c, 50))
            break;
    }
    if (c->outstanding > 0) {
        log_warn("stopping: %d messages unfinished after the grace; their offsets are not "
                 "committed and they will be consumed again",
                 c->outstanding);
        atomic_store(&c->cancelled, true);
        result = MQ_ERR_TIMEOUT;
    }
    if (!c->opts.offsets_by_transaction) {
        e = rd_kafka_commit(c->rk, NULL, 0);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_warn("final commit: %s", rd_kafka_err2str(e));
    }
    if (!mq_leave_group(c, deadline)) {
        mq_abandoned_rk = c->rk;
        c->rk = NULL;
    }
    mq_drain_done(c);
    log_info("left group %s", c->group_id);
    return result;
}

void mq_consumer_stop(mq_consumer_t *c)
{
    atomic_store(&c->stop, true);
    rd_kafka_queue_yield(c->queue);
}

bool mq_consumer_ready(const mq_consumer_t *c)
{
    return atomic_load(&c->joined) && !atomic_load(&c->stop);
}

bool mq_consumer_cancelled(const mq_consumer_t *c)
{
    return !c || atomic_load(&c->cancelled); /* none (any more): stopping */
}

rd_kafka_t *mq_consumer_handle(mq_consumer_t *c)
{
    return c ? c->rk : NULL;
}

int mq_consumer_in_flight(const mq_consumer_t *c)
{
    return atomic_load(&((mq_consumer_t *)c)->in_flight_gauge);
}

/* ---- construction ----------------------------------------------------- */

static void mq_metrics_init(mq_consumer_t *c, metrics_registry_t *reg)
{
    static const char *const lag_labels[] = {"topic", "partition"};
    if (!reg)
        return;
    c->m_in_flight = metrics_series_get0(metrics_gauge_new(
        reg, "imtask_consumer_in_flight",
        "Messages held by the consumer: running, queued, delayed or finished behind an "
        "unfinished one",
        0, NULL));
    c->m_delayed = metrics_series_get0(metrics_gauge_new(
        reg, "imtask_consumer_delayed", "Retry messages waiting for their due time", 0, NULL));
    c->m_paused = metrics_series_get0(
        metrics_gauge_new(reg, "imtask_consumer_paused",
                          "1 while fetching is paused at the in-flight bound", 0, NULL));
    static const char *const rb_labels[] = {"event"};
    metrics_family_t *rb =
        metrics_counter_new(reg, "imtask_consumer_rebalance_partitions_total",
                            "Partitions assigned, revoked or lost", 1, rb_labels);
    c->m_assigned = metrics_series_get1(rb, "assigned");
    c->m_revoked = metrics_series_get1(rb, "revoked");
    c->m_lost = metrics_series_get1(rb, "lost");
    c->f_lag =
        metrics_gauge_new(reg, "imtask_consumer_lag",
                          "Messages in the partition after the committed position", 2, lag_labels);
}

mq_consumer_t *mq_consumer_new(rd_kafka_conf_t *conf, const mq_consumer_opts_t *opts, char *err,
                               size_t errlen)
{
    static const char *const fixed[] = {
        "enable.auto.offset.store", "false", "partition.assignment.strategy",
        "cooperative-sticky",       NULL,
    };
    char rderr[256];
    mq_consumer_t *c;

    if (!opts->group_id || !opts->topics || !opts->topics[0] || opts->workers < 1 ||
        opts->max_in_flight < 1 || opts->max_delayed < 1 ||
        opts->max_delayed > opts->max_in_flight || !opts->filter || !opts->handle ||
        (opts->offsets_by_transaction && !opts->ordered_partitions)) {
        snprintf(err, errlen,
                 "invalid consumer options (group, topics, workers >= 1, "
                 "1 <= max_delayed <= max_in_flight, filter and handle needed)");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->opts = *opts;
    if (c->opts.poll_interval_ms <= 0)
        c->opts.poll_interval_ms = 100;
    pthread_mutex_init(&c->done_lock, NULL);
    pthread_cond_init(&c->done_cond, NULL);
    c->group_id = strdup(opts->group_id);
    for (const char *const *t = opts->topics; *t; t++)
        c->ntopics++;
    c->topics = calloc(c->ntopics, sizeof(char *));
    c->heap = calloc((size_t)opts->max_in_flight, sizeof(mq_msg_t *));
    c->lanes = calloc((size_t)opts->workers, sizeof(mq_lane_t));
    if (!c->group_id || !c->topics || !c->heap || !c->lanes)
        goto nomem;
    for (size_t i = 0; i < c->ntopics; i++) {
        c->topics[i] = strdup(opts->topics[i]);
        if (!c->topics[i])
            goto nomem;
    }
    c->opts.group_id = c->group_id;
    c->opts.topics = NULL;
    mq_metrics_init(c, opts->metrics);

    if (rd_kafka_conf_set(conf, "group.id", opts->group_id, rderr, sizeof(rderr)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "group.id: %s", rderr);
        goto fail;
    }
    if (rd_kafka_conf_set(conf, "enable.auto.commit",
                          opts->offsets_by_transaction ? "false" : "true", rderr,
                          sizeof(rderr)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "enable.auto.commit: %s", rderr);
        goto fail;
    }
    for (const char *const *kv = fixed; kv[0]; kv += 2) {
        if (rd_kafka_conf_set(conf, kv[0], kv[1], rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "%s: %s", kv[0], rderr);
            goto fail;
        }
    }
    rd_kafka_conf_set_rebalance_cb(conf, mq_rebalance_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rderr, sizeof(rderr));
    if (!c->rk) {
        snprintf(err, errlen, "cannot create the kafka consumer: %s", rderr);
        goto fail;
    }
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);

    for (int i = 0; i < opts->workers; i++) {
        mq_lane_t *lane = &c->lanes[i];
        pthread_mutex_init(&lane->lock, NULL);
        pthread_cond_init(&lane->cond, NULL);
        lane->c = c;
        int rc = opts->ordered_partitions
                     ? pthread_create(&lane->thread, NULL, mq_ordered_thread, &c->lanes[0])
                     : pthread_create(&lane->thread, NULL, mq_lane_thread, lane);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start worker %d", i);
            c->opts.workers = i; /* destroy joins only the started ones */
            mq_consumer_destroy(&c);
            return NULL;
        }
        lane->started = true;
    }
    return c;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    /* conf is not ours to free on failure: the caller keeps it */
    for (size_t i = 0; c->topics && i < c->ntopics; i++)
        free(c->topics[i]);
    free(c->topics);
    free(c->heap);
    free(c->lanes);
    free(c->group_id);
    pthread_cond_destroy(&c->done_cond);
    pthread_mutex_destroy(&c->done_lock);
    free(c);
    return NULL;
}

void mq_consumer_destroy(mq_consumer_t **cp)
{
    mq_consumer_t *c = cp ? *cp : NULL;
    bool stuck = false;
    if (!c)
        return;
    atomic_store(&c->lanes_quit, true);
    for (int i = 0; i < c->opts.workers; i++) {
        mq_lane_t *lane = &c->lanes[i];
        for (mq_msg_t *m = lane->pend_head; m;) { /* taken, never handed over */
            mq_msg_t *next = m->next;
            mq_msg_free(m);
            m = next;
        }
        lane->pend_head = lane->pend_tail = NULL;
        pthread_mutex_lock(&lane->lock);
        for (mq_msg_t *m = lane->head; m;) { /* queued, never started: unfinished */
            mq_msg_t *next = m->next;
            mq_msg_free(m);
            m = next;
        }
        lane->head = lane->tail = NULL;
        pthread_cond_broadcast(&lane->cond);
        pthread_mutex_unlock(&lane->lock);
    }
    for (int i = 0; i < c->opts.workers; i++) {
        if (!c->lanes[i].started)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += MQ_JOIN_AFTER_GRACE_MS / 1000;
        if (pthread_timedjoin_np(c->lanes[i].thread, NULL, &ts) != 0) {
            log_error("worker %d is still in its handler after the grace: leaving it", i);
            stuck = true;
        }
    }
    if (stuck) { /* a handler may still touch c: leak it rather than free it under it */
        *cp = NULL;
        return;
    }
    mq_drain_done(c);
    mq_heap_drop(c, NULL);
    if (c->queue)
        rd_kafka_queue_destroy(c->queue);
    if (c->rk)
        rd_kafka_destroy(c->rk);
    for (size_t i = 0; i < c->nparts; i++) {
        mq_offsets_destroy(c->parts[i]->offsets);
        free(c->parts[i]->topic);
        free(c->parts[i]);
    }
    for (int i = 0; i < c->opts.workers; i++) {
        pthread_cond_destroy(&c->lanes[i].cond);
        pthread_mutex_destroy(&c->lanes[i].lock);
    }
    for (size_t i = 0; i < c->ntopics; i++)
        free(c->topics[i]);
    free(c->topics);
    free(c->heap);
    while (c->spare) {
        mq_msg_t *m = c->spare;
        c->spare = m->next;
        free(m->buf);
        free(m);
    }
    free(c->lanes);
    free(c->group_id);
    pthread_cond_destroy(&c->done_cond);
    pthread_mutex_destroy(&c->done_lock);
    free(c);
    *cp = NULL;
}
