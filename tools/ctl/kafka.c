/* kafka.c: clients, metadata and assign()-based topic reading for imtask-ctl. */
#include "kafka.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/clock.h"

#define CTL_POLL_MS 200

/* What the scan knows of one partition. */
typedef struct {
    bool wanted, done;
    int64_t start, end, next;
} ctl_part_t;

mq_producer_t *ctl_producer_new(const ctl_env_t *env, char *err, size_t errlen)
{
    char timeout[32];
    /* clang-format off */
    const char *extra[] = {"message.timeout.ms", timeout,
                           "allow.auto.create.topics", "false",
                           "acks", "all",
                           "linger.ms", "5",
                           "log.connection.close", "false",
                           NULL};
    /* clang-format on */
    rd_kafka_conf_t *conf;
    mq_producer_t *p;

    snprintf(timeout, sizeof(timeout), "%" PRId64, env->timeout_ms);
    conf = mq_conf_build(env->brokers, NULL, extra, err, errlen);
    if (!conf)
        return NULL;
    p = mq_producer_new(conf, err, errlen);
    if (!p)
        rd_kafka_conf_destroy(conf);
    return p;
}

rd_kafka_t *ctl_consumer_new(const ctl_env_t *env, const char *group_id, char *err, size_t errlen)
{
    /* clang-format off */
    const char *extra[] = {"group.id", group_id,
                           "enable.auto.commit", "false",
                           "enable.auto.offset.store", "false",
                           "enable.partition.eof", "true",
                           "auto.offset.reset", "earliest",
                           "allow.auto.create.topics", "false",
                           "log.connection.close", "false",
                           NULL};
    /* clang-format on */
    char rderr[512];
    rd_kafka_conf_t *conf = mq_conf_build(env->brokers, NULL, extra, err, errlen);
    rd_kafka_t *rk;
    if (!conf)
        return NULL;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rderr, sizeof(rderr));
    if (!rk) {
        snprintf(err, errlen, "cannot create a kafka consumer: %s", rderr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk;
}

void ctl_consumer_destroy(rd_kafka_t **rkp)
{
    rd_kafka_t *rk = rkp ? *rkp : NULL;
    if (!rk)
        return;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    *rkp = NULL;
}

int ctl_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int32_t *count,
                         char *err, size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e;
    int rc = -1;

    if (!rkt) {
        snprintf(err, errlen, "bad topic name \"%s\": %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (e) {
        snprintf(err, errlen, "cannot get the metadata of topic %s within %d ms: %s", topic,
                 timeout_ms, rd_kafka_err2str(e));
        goto out;
    }
    if (md->topic_cnt != 1 || strcmp(md->topics[0].topic, topic) != 0) {
        snprintf(err, errlen, "metadata of topic %s: the broker answered about %d topics", topic,
                 md->topic_cnt);
        goto out;
    }
    if (md->topics[0].err) {
        if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            snprintf(err, errlen, "topic %s does not exist (see `%s topics`)", topic, CTL_NAME);
        else
            snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(md->topics[0].err));
        goto out;
    }
    if (md->topics[0].partition_cnt <= 0 || md->topics[0].partition_cnt > CTL_MAX_PARTITIONS) {
        snprintf(err, errlen, "topic %s has %d partitions, expected 1..%d", topic,
                 md->topics[0].partition_cnt, CTL_MAX_PARTITIONS);
        goto out;
    }
    *count = md->topics[0].partition_cnt;
    rc = 0;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* Clamp each wanted partition to [low, high) and apply since_ms. */
static int ctl_scan_bounds(rd_kafka_t *rk, const ctl_env_t *env, const ctl_scan_spec_t *spec,
                           ctl_part_t *parts, int32_t np, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *times = NULL;
    rd_kafka_resp_err_t e;
    int rc = -1;

    for (int32_t p = 0; p < np; p++) {
        int64_t low, high;
        if (!parts[p].wanted)
            continue;
        e = rd_kafka_query_watermark_offsets(rk, spec->topic, p, &low, &high, (int)env->timeout_ms);
        if (e) {
            snprintf(err, errlen, "cannot get the offsets of %s partition %d: %s", spec->topic, p,
                     rd_kafka_err2str(e));
            goto out;
        }
        if (parts[p].start < low)
            parts[p].start = low;
        if (parts[p].end > high)
            parts[p].end = high;
    }
    if (spec->since_ms > 0) {
        times = rd_kafka_topic_partition_list_new(np);
        for (int32_t p = 0; p < np; p++) {
            if (parts[p].wanted)
                rd_kafka_topic_partition_list_add(times, spec->topic, p)->offset = spec->since_ms;
        }
        e = rd_kafka_offsets_for_times(rk, times, (int)env->timeout_ms);
        if (e) {
            snprintf(err, errlen, "cannot find the offsets of %s at the --since time: %s",
                     spec->topic, rd_kafka_err2str(e));
            goto out;
        }
        for (int i = 0; i < times->cnt; i++) {
            ctl_part_t *pt = &parts[times->elems[i].partition];
            if (times->elems[i].err) {
                snprintf(err, errlen,
                         "cannot find the offset of %s partition %d at the --since "
                         "time: %s",
                         spec->topic, times->elems[i].partition,
                         rd_kafka_err2str(times->elems[i].err));
                goto out;
            }
            if (times->elems[i].offset < 0)
                pt->start = pt->end; /* nothing that recent */
            else if (times->elems[i].offset > pt->start)
                pt->start = times->elems[i].offset;
        }
    }
    rc = 0;
out:
    if (times)
        rd_kafka_topic_partition_list_destroy(times);
    return rc;
}

/* "0 (at 5, to 10), 2 (at 0, to 3)" of the partitions not yet read through. */
static void ctl_scan_pending(const ctl_part_t *parts, int32_t np, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t p = 0; p < np && used < len; p++) {
        int n;
        if (!parts[p].wanted || parts[p].done)
            continue;
        n = snprintf(buf + used, len - used, "%s%d (at %" PRId64 " of %" PRId64 ")",
                     used ? ", " : "", p, parts[p].next, parts[p].end);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Assign the wanted partitions and hand every record of their ranges to cb. */
static int ctl_scan_run(rd_kafka_t *rk, const ctl_env_t *env, const char *topic, ctl_part_t *parts,
                        int32_t np, ctl_scan_cb *cb, void *opaque, ctl_scan_stats_t *stats,
                        char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(np);
    int64_t last_progress = clock_mono_ms();
    int remaining = 0, rc = -1;
    rd_kafka_resp_err_t e;

    for (int32_t p = 0; p < np; p++) {
        if (!parts[p].wanted)
            continue;
        parts[p].next = parts[p].start;
        if (parts[p].start >= parts[p].end) {
            parts[p].done = true;
            continue;
        }
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = parts[p].start;
        remaining++;
        stats->partitions++;
    }
    if (remaining == 0) {
        rc = 0;
        goto out;
    }
    e = rd_kafka_assign(rk, list);
    if (e) {
        snprintf(err, errlen, "cannot assign partitions of %s: %s", topic, rd_kafka_err2str(e));
        goto out;
    }
    while (remaining > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, CTL_POLL_MS);
        ctl_part_t *pt;
        if (!m) {
            if (clock_mono_ms() - last_progress > env->timeout_ms) {
                char pending[256];
                ctl_scan_pending(parts, np, pending, sizeof(pending));
                snprintf(err, errlen,
                         "reading %s: nothing received for %" PRId64
                         " ms; partitions not read through: %s",
                         topic, env->timeout_ms, pending);
                goto out;
            }
            continue;
        }
        last_progress = clock_mono_ms();
        pt = m->partition >= 0 && m->partition < np ? &parts[m->partition] : NULL;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (pt && pt->wanted && !pt->done) {
                pt->done = true;
                remaining--;
            }
        } else if (m->err) {
            bool transient = m->err == RD_KAFKA_RESP_ERR__TRANSPORT ||
                             m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
                             m->err == RD_KAFKA_RESP_ERR__TIMED_OUT;
            if (!transient) {
                snprintf(err, errlen, "reading %s partition %d: %s", topic, m->partition,
                         rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                goto out;
            }
            /* librdkafka retries these; the idle timeout bounds them */
            if (env->verbose)
                fprintf(stderr, "reading %s: %s (retrying)\n", topic, rd_kafka_message_errstr(m));
        } else if (pt && pt->wanted && !pt->done) {
            if (m->offset >= pt->end) {
                pt->done = true;
                remaining--;
            } else {
                int r;
                pt->next = m->offset + 1;
                stats->scanned++;
                r = cb(opaque, m);
                if (r != 0) {
                    if (r < 0)
                        snprintf(err, errlen, "stopped at %s partition %d offset %" PRId64, topic,
                                 m->partition, m->offset);
                    rd_kafka_message_destroy(m);
                    rc = r < 0 ? -1 : 1;
                    goto out;
                }
                if (pt->next >= pt->end) {
                    pt->done = true;
                    remaining--;
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    rc = 0;
out:
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

int ctl_scan(const ctl_env_t *env, const ctl_scan_spec_t *spec, ctl_scan_cb *cb, void *opaque,
             ctl_scan_stats_t *stats, char *err, size_t errlen)
{
    ctl_scan_stats_t local = {0, 0};
    ctl_part_t *parts = NULL;
    rd_kafka_t *rk = NULL;
    int32_t np = 0;
    int rc = -1;

    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof(*stats));
    rk = ctl_consumer_new(env, CTL_READER_GROUP, err, errlen);
    if (!rk)
        return -1;
    if (ctl_topic_partitions(rk, spec->topic, (int)env->timeout_ms, &np, err, errlen) != 0)
        goto out;
    parts = calloc((size_t)np, sizeof(*parts));
    if (!parts) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (!spec->ranges) {
        for (int32_t p = 0; p < np; p++)
            parts[p] = (ctl_part_t){.wanted = true, .start = 0, .end = INT64_MAX};
    }
    for (size_t i = 0; spec->ranges && i < spec->nranges; i++) {
        const ctl_range_t *r = &spec->ranges[i];
        ctl_part_t *pt;
        if (r->partition < 0 || r->partition >= np) {
            snprintf(err, errlen, "topic %s has no partition %d (it has %d: 0..%d)", spec->topic,
                     r->partition, np, np - 1);
            goto out;
        }
        pt = &parts[r->partition];
        if (!pt->wanted) {
            *pt = (ctl_part_t){.wanted = true, .start = r->start, .end = r->end};
        } else {
            /* several ranges of one partition: read their hull */
            if (r->start < pt->start)
                pt->start = r->start;
            if (r->end > pt->end)
                pt->end = r->end;
        }
    }
    if (ctl_scan_bounds(rk, env, spec, parts, np, err, errlen) != 0)
        goto out;
    rc = ctl_scan_run(rk, env, spec->topic, parts, np, cb, opaque, stats, err, errlen);
out:
    free(parts);
    ctl_consumer_destroy(&rk);
    return rc;
}

/* fetch_one's callback: remember that the record was there. */
typedef struct {
    ctl_scan_cb *cb;
    void *opaque;
    int64_t offset;
    bool found;
} ctl_fetch_t;

static int ctl_fetch_cb(void *opaque, const rd_kafka_message_t *m)
{
    ctl_fetch_t *f = opaque;
    if (m->offset != f->offset)
        return 1; /* the offset itself is gone (compaction, a transaction marker) */
    f->found = true;
    return f->cb(f->opaque, m) < 0 ? -1 : 1;
}

int ctl_fetch_one(const ctl_env_t *env, const char *topic, int32_t partition, int64_t offset,
                  ctl_scan_cb *cb, void *opaque, char *err, size_t errlen)
{
    ctl_fetch_t f = {.cb = cb, .opaque = opaque, .offset = offset, .found = false};
    ctl_range_t r = {.partition = partition, .start = offset, .end = offset + 1};
    ctl_scan_spec_t spec = {.topic = topic, .ranges = &r, .nranges = 1, .since_ms = 0};
    rd_kafka_t *rk = NULL;
    int64_t low = 0, high = 0;
    int32_t np = 0;
    rd_kafka_resp_err_t e;
    int rc;

    /* say plainly why an offset is not there */
    rk = ctl_consumer_new(env, CTL_READER_GROUP, err, errlen);
    if (!rk)
        return -1;
    rc = ctl_topic_partitions(rk, topic, (int)env->timeout_ms, &np, err, errlen);
    if (rc == 0 && (partition < 0 || partition >= np)) {
        snprintf(err, errlen, "topic %s has no partition %d (it has %d: 0..%d)", topic, partition,
                 np, np - 1);
        rc = -1;
    }
    if (rc == 0) {
        e = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high,
                                             (int)env->timeout_ms);
        if (e) {
            snprintf(err, errlen, "cannot get the offsets of %s partition %d: %s", topic, partition,
                     rd_kafka_err2str(e));
            rc = -1;
        } else if (offset < low || offset >= high) {
            snprintf(err, errlen,
                     "%s partition %d holds offsets %" PRId64 "..%" PRId64 ", not %" PRId64 "%s",
                     topic, partition, low, high - 1, offset,
                     offset < low ? " (deleted by retention)" : "");
            if (low == high)
                snprintf(err, errlen, "%s partition %d is empty (next offset %" PRId64 ")", topic,
                         partition, high);
            rc = -1;
        }
    }
    ctl_consumer_destroy(&rk);
    if (rc != 0)
        return -1;
    rc = ctl_scan(env, &spec, ctl_fetch_cb, &f, NULL, err, errlen);
    if (rc < 0)
        return -1;
    if (!f.found) {
        snprintf(err, errlen,
                 "%s partition %d has no record at offset %" PRId64
                 " (compacted away, or a transaction marker)",
                 topic, partition, offset);
        return -1;
    }
    return 0;
}
