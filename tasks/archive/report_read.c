/* report_read.c: the outcome topic over one period, aggregated while read
 * (a plain assigned consumer, no group, nothing committed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/clock.h"
#include "infra/log.h"
#include "mqclient/mq.h"
#include "report_model.h"

#define REPORT_READ_MAX_PARTS 1024
#define REPORT_KAFKA_TIMEOUT_MS 10000

typedef struct {
    int32_t partition;
    int64_t high; /* stop before this offset */
    bool done;
} report_part_t;

static void report_read_record(const rd_kafka_message_t *m, const report_read_opts_t *o,
                               report_t *r, report_part_t *pt, rd_kafka_t *rk, size_t *ndone)
{
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);
    bool last = m->offset + 1 >= pt->high;
    if (pt->done)
        return;
    if (m->offset >= pt->high || (ts >= 0 && ts >= r->end_ms + o->clock_skew_ms)) {
        last = true; /* past the period: not counted */
    } else {
        Imtask__V1__OutcomeEvent *ev =
            imtask__v1__outcome_event__unpack(NULL, m->len, (const uint8_t *)m->payload);
        if (!ev) {
            r->outcome_badrecs++;
        } else {
            if (ev->ts_ms >= r->start_ms && ev->ts_ms < r->end_ms) {
                r->outcome_events++;
                if (report_agg_add(r->agg, ev))
                    r->outcome_badrecs++; /* out of memory: not held, counted */
            } else {
                r->outcome_skipped++;
            }
            imtask__v1__outcome_event__free_unpacked(ev, NULL);
        }
    }
    if (last) {
        rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(one, o->topic, pt->partition);
        rd_kafka_pause_partitions(rk, one);
        rd_kafka_topic_partition_list_destroy(one);
        pt->done = true;
        (*ndone)++;
    }
}

int report_read_outcomes(const report_read_opts_t *o, report_t *r, char *err, size_t errlen)
{
    char errstr[512];
    const char *extra[] = {
        "enable.auto.commit", "false", "enable.partition.eof", "true", "isolation.level",
        "read_uncommitted", "group.id", "imtask-report-reader", "client.id", "imtask-report-reader",
        /* librdkafka's prefetch is the reader's memory: keep it small */
        "queued.max.messages.kbytes", "4096", "fetch.max.bytes", "8388608", NULL};
    rd_kafka_conf_t *conf = mq_conf_build(o->brokers, o->kafka_props, extra, err, errlen);
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *tpl = NULL, *assign = NULL;
    report_part_t *parts = NULL;
    size_t nparts = 0, nactive = 0, ndone = 0;
    rd_kafka_resp_err_t kerr;
    int rc = -1;
    int64_t deadline = clock_mono_ms() + o->timeout_ms;

    if (!conf)
        return -1;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "outcome reader: %s", errstr);
        return -1;
    }
    rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    kerr = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, REPORT_KAFKA_TIMEOUT_MS)
               : RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (kerr || !md || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(err, errlen, "outcome topic %s: no metadata: %s", o->topic,
                 rd_kafka_err2str(kerr                  ? kerr
                                  : md && md->topic_cnt ? md->topics[0].err
                                                        : kerr));
        goto out;
    }
    nparts = (size_t)md->topics[0].partition_cnt;
    if (nparts == 0 || nparts > REPORT_READ_MAX_PARTS) {
        snprintf(err, errlen, "outcome topic %s: %zu partitions (expected 1..%d)", o->topic, nparts,
                 REPORT_READ_MAX_PARTS);
        goto out;
    }
    parts = calloc(nparts, sizeof(*parts));
    tpl = rd_kafka_topic_partition_list_new((int)nparts);
    assign = rd_kafka_topic_partition_list_new((int)nparts);
    if (!parts || !tpl || !assign) {
        snprintf(err, errlen, "outcome reader: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nparts; i++) {
        parts[i].partition = md->topics[0].partitions[i].id;
        rd_kafka_topic_partition_list_add(tpl, o->topic, parts[i].partition)->offset =
            r->start_ms - o->clock_skew_ms;
    }
    kerr = rd_kafka_offsets_for_times(rk, tpl, REPORT_KAFKA_TIMEOUT_MS);
    if (kerr) {
        snprintf(err, errlen, "outcome topic %s: offsets for %lld: %s", o->topic,
                 (long long)(r->start_ms - o->clock_skew_ms), rd_kafka_err2str(kerr));
        goto out;
    }
    for (size_t i = 0; i < nparts; i++) {
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(tpl, o->topic, parts[i].partition);
        int64_t lo, hi;
        if (!tp || tp->err) {
            snprintf(err, errlen, "outcome topic %s [%d]: offsets for times: %s", o->topic,
                     (int)parts[i].partition, rd_kafka_err2str(tp ? tp->err : kerr));
            goto out;
        }
        kerr = rd_kafka_query_watermark_offsets(rk, o->topic, parts[i].partition, &lo, &hi,
                                                REPORT_KAFKA_TIMEOUT_MS);
        if (kerr) {
            snprintf(err, errlen, "outcome topic %s [%d]: watermarks: %s", o->topic,
                     (int)parts[i].partition, rd_kafka_err2str(kerr));
            goto out;
        }
        parts[i].high = hi;
        /* -1: no record at or after the time in this partition */
        if (tp->offset < 0 || tp->offset >= hi) {
            parts[i].done = true;
            ndone++;
            continue;
        }
        rd_kafka_topic_partition_list_add(assign, o->topic, parts[i].partition)->offset =
            tp->offset;
        nactive++;
    }
    if (nactive && (kerr = rd_kafka_assign(rk, assign)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "outcome topic %s: assign: %s", o->topic, rd_kafka_err2str(kerr));
        goto out;
    }
    while (ndone < nparts) {
        if (clock_mono_ms() > deadline) {
            snprintf(err, errlen,
                     "outcome topic %s: %zu of %zu partitions not read to the end of the period "
                     "within %lld ms",
                     o->topic, nparts - ndone, nparts, (long long)o->timeout_ms);
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        report_part_t *pt = NULL;
        for (size_t i = 0; i < nparts; i++) {
            if (parts[i].partition == m->partition)
                pt = &parts[i];
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (pt && !pt->done && m->offset >= pt->high) {
                pt->done = true;
                ndone++;
            }
        } else if (m->err) {
            log_warn("outcome topic %s: %s", o->topic, rd_kafka_message_errstr(m));
            if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT &&
                m->err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN &&
                m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && rd_kafka_fatal_error(rk, NULL, 0)) {
                snprintf(err, errlen, "outcome topic %s: %s", o->topic, rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                goto out;
            }
        } else if (pt) {
            report_read_record(m, o, r, pt, rk, &ndone);
        }
        rd_kafka_message_destroy(m);
    }
    rc = 0;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (tpl)
        rd_kafka_topic_partition_list_destroy(tpl);
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    free(parts);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk) {
        rd_kafka_assign(rk, NULL);
        rd_kafka_destroy(rk);
    }
    return rc;
}
