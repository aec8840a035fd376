/* loadgen.c: fills a topic with N task records as fast as the broker takes
 * them, for bench/runtime_bench.sh.
 *
 * Each record is a real task envelope (imtask.v1.Task, task_encode) whose
 * payload is the text "noop" (or --payload), with the headers task_type,
 * task_id and traceparent, keyed by its task id, like imtask-ctl would write
 * it. The producer is idempotent (acks=all) with large batches
 * (linger.ms=20, batch.size 1 MB), and every record is confirmed by its
 * delivery report before the rate is printed.
 *
 *   loadgen --brokers HOST:PORT --topic T --count N [--task-type rt_test]
 *           [--payload noop] [--compression none] [-X key=value]...
 *
 * Prints one line "loadgen: produced N records (B bytes of values) in S s:
 * R msgs/s, M MiB/s" on stdout and exits 0 when every record was
 * acknowledged, 1 otherwise. */
#include <librdkafka/rdkafka.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"

#define LG_MAX_X 32

static long long lg_delivered, lg_failed;
static char lg_first_error[512];

static double lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64: ids and trace ids need to be unique, not secret; getrandom(2)
 * for each of a million records would cost more than the produce itself. */
static uint64_t lg_state;

static uint64_t lg_rand(void)
{
    uint64_t z = (lg_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void lg_hex(uint64_t v, int digits, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = hex[v & 0xf];
        v >>= 4;
    }
}

/* A UUIDv4-shaped task id. */
static void lg_task_id(char *out)
{
    char h[32];
    lg_hex(lg_rand(), 16, h);
    lg_hex(lg_rand(), 16, h + 16);
    h[12] = '4';
    h[16] = "89ab"[h[16] & 3];
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

static void lg_trace(char *trace_id, char *traceparent)
{
    char parent[17];
    lg_hex(lg_rand() | 1, 16, trace_id);
    lg_hex(lg_rand(), 16, trace_id + 16);
    trace_id[32] = '\0';
    lg_hex(lg_rand() | 1, 16, parent);
    parent[16] = '\0';
    snprintf(traceparent, TASK_TRACEPARENT_LEN + 1, "00-%.32s-%s-01", trace_id, parent);
}

static void lg_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (lg_failed++ == 0)
            snprintf(lg_first_error, sizeof(lg_first_error), "%s", rd_kafka_err2str(m->err));
    } else {
        lg_delivered++;
    }
}

static int lg_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "loadgen: %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

static void lg_usage(FILE *out)
{
    fprintf(out, "usage: loadgen --brokers HOST:PORT --topic TOPIC --count N\n"
                 "               [--task-type TYPE] [--payload TEXT] [--compression CODEC]\n"
                 "               [-X librdkafka.property=value]...\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"brokers", required_argument, NULL, 'b'}, {"topic", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},   {"task-type", required_argument, NULL, 'T'},
        {"payload", required_argument, NULL, 'p'}, {"compression", required_argument, NULL, 'z'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *brokers = NULL, *topic = NULL, *type = "rt_test", *payload = "noop";
    const char *compression = "none";
    const char *xs[LG_MAX_X];
    int nx = 0, opt;
    long long count = -1, bytes = 0;
    char err[512];

    while ((opt = getopt_long(argc, argv, "b:t:n:T:p:z:X:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            brokers = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'n':
            count = strtoll(optarg, NULL, 10);
            break;
        case 'T':
            type = optarg;
            break;
        case 'p':
            payload = optarg;
            break;
        case 'z':
            compression = optarg;
            break;
        case 'X':
            if (nx == LG_MAX_X || !strchr(optarg, '=')) {
                fprintf(stderr, "loadgen: -X wants key=value (at most %d)\n", LG_MAX_X);
                return 2;
            }
            xs[nx++] = optarg;
            break;
        case 'h':
            lg_usage(stdout);
            return 0;
        default:
            lg_usage(stderr);
            return 2;
        }
    }
    if (!brokers || !topic || count < 1 || strlen(type) >= TASK_TYPE_MAX) {
        lg_usage(stderr);
        return 2;
    }
    if (getrandom(&lg_state, sizeof(lg_state), 0) != (ssize_t)sizeof(lg_state))
        lg_state = (uint64_t)time(NULL);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (lg_set(conf, "bootstrap.servers", brokers) || lg_set(conf, "enable.idempotence", "true") ||
        lg_set(conf, "acks", "all") || lg_set(conf, "linger.ms", "20") ||
        lg_set(conf, "batch.size", "1000000") || lg_set(conf, "batch.num.messages", "100000") ||
        lg_set(conf, "queue.buffering.max.messages", "2000000") ||
        lg_set(conf, "queue.buffering.max.kbytes", "1048576") ||
        lg_set(conf, "compression.codec", compression) ||
        lg_set(conf, "client.id", "imtask-bench-loadgen"))
        return 2;
    for (int i = 0; i < nx; i++) {
        char kv[512];
        snprintf(kv, sizeof(kv), "%s", xs[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        if (lg_set(conf, kv, eq + 1))
            return 2;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, lg_dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 1;
    }

    task_t t;
    memset(&t, 0, sizeof(t));
    snprintf(t.task_type, sizeof(t.task_type), "%s", type);
    t.payload = (const uint8_t *)payload;
    t.payload_len = strlen(payload);
    size_t typelen = strlen(type);

    double t0 = lg_now();
    for (long long i = 0; i < count; i++) {
        uint8_t *buf;
        size_t len;
        struct timespec ts;
        lg_task_id(t.task_id);
        lg_trace(t.trace_id, t.traceparent);
        clock_gettime(CLOCK_REALTIME, &ts);
        t.created_at_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (task_encode(&t, &buf, &len)) {
            fprintf(stderr, "loadgen: out of memory\n");
            return 1;
        }
        bytes += (long long)len;
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(t.task_id, 36),
                RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                RD_KAFKA_V_HEADER(HDR_TASK_TYPE, type, (ssize_t)typelen),
                RD_KAFKA_V_HEADER(HDR_TASK_ID, t.task_id, 36),
                RD_KAFKA_V_HEADER(HDR_TRACEPARENT, t.traceparent, TASK_TRACEPARENT_LEN),
                RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "loadgen: produce: %s\n", rd_kafka_err2str(e));
                free(buf);
                rd_kafka_destroy(rk);
                return 1;
            }
            rd_kafka_poll(rk, 50); /* serve delivery reports, making room */
        }
        if ((i & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    double t_queued = lg_now();
    while (rd_kafka_outq_len(rk) > 0 && lg_now() - t_queued < 300)
        rd_kafka_flush(rk, 1000);
    double t1 = lg_now();
    rd_kafka_poll(rk, 0);
    int left = rd_kafka_outq_len(rk);
    rd_kafka_destroy(rk);

    double secs = t1 - t0;
    printf("loadgen: produced %lld records (%lld bytes of values, %.0f B each) to %s in %.3f s: "
           "%.0f msgs/s, %.1f MiB/s of values\n",
           lg_delivered, bytes, (double)bytes / (double)count, topic, secs,
           (double)lg_delivered / secs, (double)bytes / secs / (1024.0 * 1024.0));
    if (lg_failed || left || lg_delivered != count) {
        fprintf(stderr, "loadgen: %lld of %lld records not acknowledged (%d still queued)%s%s\n",
                count - lg_delivered, count, left, lg_failed ? ": first error: " : "",
                lg_first_error);
        return 1;
    }
    return 0;
}
