/* outcome_read_bench.c: how fast the report job reads one period of the
 * outcome topic, and that its memory does not grow with the events: N
 * outcome events (default 1,000,000; 40 distinct series) are produced into
 * a private topic within one day, then report_read_outcomes reads and
 * aggregates them; prints events/s and the peak RSS before and after.
 * Needs IMTASK_KAFKA_BROKERS. Figures in docs/report.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "dispatch/outcome.h"
#include "tasks/archive/report_model.h"
#include "tests/support/support.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long peak_rss_kb(void)
{
    char line[256];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    }
    if (f)
        fclose(f);
    return v;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "outcome_read_bench: %s: %s\n", what, why);
    exit(1);
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("IMTASK_KAFKA_BROKERS");
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char topic[128], errstr[512];
    if (!brokers || !*brokers)
        die("IMTASK_KAFKA_BROKERS", "not set (eval \"$(bash scripts/stack.sh env)\")");
    snprintf(topic, sizeof(topic), "report-bench-%ld-%d", (long)time(NULL), (int)getpid());

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "linger.ms", "20", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "compression.type", "lz4", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        die("producer", errstr);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 3, 1, errstr, sizeof(errstr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev || rd_kafka_event_error(ev))
        die("create topic", ev ? rd_kafka_event_error_string(ev) : "timeout");
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    sleep(2); /* leaders */

    int64_t day = 86400000, start = (time(NULL) * 1000LL / day - 2) * day, end = start + day;
    static const char *const types[] = {"fanout", "push", "content_audit", "archive"};
    static const char *const vals[] = {"ok",           "invalid_token", "transient", "permanent",
                                       "auth_expired", "online",        "offline",   "pass",
                                       "review",       "block"};
    int64_t t0 = mono_ms();
    for (long i = 0; i < n; i++) {
        dispatch_outcome_label_t l[] = {{"result", vals[i % 10]}};
        uint8_t *buf;
        size_t len;
        int64_t ts = start + (i * (day / n));
        if (dispatch_outcome_encode(ts, types[(i / 10) % 4], "bench-task", "bench", "bench_kind", l,
                                    1, 1, &buf, &len))
            die("encode", "failed");
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION((int)(i % 3)),
                                 RD_KAFKA_V_VALUE(buf, len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        free(buf);
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 120000))
        die("flush", "records not delivered");
    long in_topic = 0;
    for (int p = 0; p < 3; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000) == 0)
            in_topic += (long)(hi - lo);
    }
    printf("produced %ld events in %.1f s, %ld in the topic\n", n,
           (double)(mono_ms() - t0) / 1000.0, in_topic);

    long rss0 = peak_rss_kb();
    report_t r;
    memset(&r, 0, sizeof(r));
    r.start_ms = start;
    r.end_ms = end;
    r.agg = report_agg_new(10000);
    report_read_opts_t o = {
        .brokers = brokers, .topic = topic, .clock_skew_ms = 60000, .timeout_ms = 600000};
    char err[512];
    t0 = mono_ms();
    if (report_read_outcomes(&o, &r, err, sizeof(err)))
        die("read", err);
    double secs = (double)(mono_ms() - t0) / 1000.0;
    const report_series_t *s;
    size_t ns = report_agg_series(r.agg, &s);
    int64_t total = 0;
    for (size_t i = 0; i < ns; i++)
        total += s[i].count;
    printf("read %lld events (%zu series, sum %lld) in %.2f s: %.0f events/s; peak RSS %ld kB "
           "before reading, %ld kB after\n",
           (long long)r.outcome_events, ns, (long long)total, secs, (double)r.outcome_events / secs,
           rss0, peak_rss_kb());
    report_agg_destroy(&r.agg);

    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    const char *topics[] = {topic};
    ts_kafka_delete(brokers, topics, 1, NULL, "outcome_read_bench");
    return r.outcome_events == in_topic ? 0 : 1;
}
