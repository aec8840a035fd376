/* plain_consumer.c: the baseline of bench/runtime_bench.sh: a minimal
 * at-least-once librdkafka consumer, the least any consumer of the task
 * topic has to do.
 *
 * A high-level consumer in its own group (auto.offset.reset=earliest,
 * enable.auto.offset.store=false, auto commit on) polls one message at a
 * time, reads its task_type header (the same cheap look-up the runtime's
 * filter does) and stores the message's offset right after reading it.
 * It stops when it has read --count messages (or, with --count 0, when every
 * assigned partition has reached the high watermark it had at the start),
 * commits, and prints:
 *
 *   plain_consumer: N msgs in S s (first to last message): R msgs/s; M matched
 *   task_type; W s from start incl. group join
 *
 * and, with --machine, one line "RESULT msgs=N secs=S rate=R cpu=C wall=W
 * matched=M maxrss_kib=K sys_busy=Y broker_cpu=Z" for scripts (cpu: seconds
 * of CPU of this process, all threads, first to last message; maxrss: peak
 * resident set; sys_busy: CPU seconds the whole machine was busy over the
 * same window; broker_cpu: the --broker-pid process's, 0 without it). Exits 1 when --timeout
 * passes before it is done. */
#include <librdkafka/rdkafka.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/headers.h"

#define PC_MAX_X 32

static double pc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time (user + system) of this process so far, all threads. */
static double pc_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds all CPUs spent busy (not idle or iowait) since boot. */
static double pc_sys_busy(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return 0;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime of another process in seconds, 0 when unknown. */
static double pc_pid_cpu(int pid)
{
    char path[64], buf[2048];
    unsigned long long ut = 0, st = 0;
    FILE *f;
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Peak resident set of this process so far, KiB. */
static long pc_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int pc_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "plain_consumer: %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

static void pc_usage(FILE *out)
{
    fprintf(out, "usage: plain_consumer --brokers HOST:PORT --topic TOPIC --group GROUP\n"
                 "                      [--count N] [--task-type TYPE] [--timeout SECONDS]\n"
                 "                      [--machine] [--broker-pid PID]\n"
                 "                      [-X librdkafka.property=value]...\n");
}

/* The sum of the high watermarks of topic's partitions (0 on error). */
static long long pc_high_watermarks(rd_kafka_t *rk, const char *topic)
{
    const rd_kafka_metadata_t *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    long long total = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_destroy(rkt);
        return 0;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        for (int p = 0; p < md->topics[i].partition_cnt; p++) {
            int64_t lo, hi;
            if (rd_kafka_query_watermark_offsets(rk, topic, md->topics[i].partitions[p].id, &lo,
                                                 &hi, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
                total += hi - lo;
        }
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return total;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"group", required_argument, NULL, 'g'},
        {"count", required_argument, NULL, 'n'},
        {"task-type", required_argument, NULL, 'T'},
        {"timeout", required_argument, NULL, 'w'},
        {"machine", no_argument, NULL, 'm'},
        {"broker-pid", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *brokers = NULL, *topic = NULL, *group = NULL, *type = "rt_test";
    const char *xs[PC_MAX_X];
    int nx = 0, opt, broker_pid = 0;
    long long count = 0, seen = 0, matched = 0;
    double timeout = 600;
    bool machine = false;
    char err[512];

    while ((opt = getopt_long(argc, argv, "b:t:g:n:T:w:mB:X:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            brokers = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'n':
            count = strtoll(optarg, NULL, 10);
            break;
        case 'T':
            type = optarg;
            break;
        case 'w':
            timeout = strtod(optarg, NULL);
            break;
        case 'm':
            machine = true;
            break;
        case 'B':
            broker_pid = atoi(optarg);
            break;
        case 'X':
            if (nx == PC_MAX_X || !strchr(optarg, '=')) {
                fprintf(stderr, "plain_consumer: -X wants key=value (at most %d)\n", PC_MAX_X);
                return 2;
            }
            xs[nx++] = optarg;
            break;
        case 'h':
            pc_usage(stdout);
            return 0;
        default:
            pc_usage(stderr);
            return 2;
        }
    }
    if (!brokers || !topic || !group || count < 0 || timeout <= 0) {
        pc_usage(stderr);
        return 2;
    }

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (pc_set(conf, "bootstrap.servers", brokers) || pc_set(conf, "group.id", group) ||
        pc_set(conf, "auto.offset.reset", "earliest") ||
        pc_set(conf, "enable.auto.offset.store", "false") ||
        pc_set(conf, "enable.auto.commit", "true") ||
        pc_set(conf, "client.id", "imtask-bench-plain-consumer"))
        return 2;
    /* --count 0: stop at the high watermarks, told by partition EOF events */
    if (count == 0 && pc_set(conf, "enable.partition.eof", "true"))
        return 2;
    for (int i = 0; i < nx; i++) {
        char kv[512];
        snprintf(kv, sizeof(kv), "%s", xs[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        if (pc_set(conf, kv, eq + 1))
            return 2;
    }
    double t_start = pc_now();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "plain_consumer: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);

    long long backlog = pc_high_watermarks(rk, topic);
    int partitions_eof = 0, partitions = 0;
    {
        const rd_kafka_metadata_t *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            partitions = md->topic_cnt > 0 ? md->topics[0].partition_cnt : 0;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
    }
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        fprintf(stderr, "plain_consumer: subscribe: %s\n", rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return 1;
    }

    double t_first = 0, t_last = 0, cpu_first = 0, cpu_last = 0;
    double sys_first = 0, sys_last = 0, broker_first = 0, broker_last = 0;
    size_t typelen = strlen(type);
    bool timed_out = false;
    for (;;) {
        if (count > 0 && seen >= count)
            break;
        if (count == 0 && partitions > 0 && partitions_eof >= partitions)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            if (pc_now() - t_start > timeout) {
                timed_out = true;
                break;
            }
            continue;
        }
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                partitions_eof++;
            else
                fprintf(stderr, "plain_consumer: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (seen == 0) {
            t_first = pc_now();
            cpu_first = pc_cpu();
            sys_first = pc_sys_busy();
            broker_first = pc_pid_cpu(broker_pid);
        }
        seen++;
        /* the filter's work: the task_type header, compared with ours */
        rd_kafka_headers_t *hdrs;
        const void *v;
        size_t len;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(hdrs, HDR_TASK_TYPE, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            len == typelen && memcmp(v, type, len) == 0)
            matched++;
        /* at least once: store the offset once the message is handled */
        e = rd_kafka_offset_store(m->rkt, m->partition, m->offset);
        if (e)
            fprintf(stderr, "plain_consumer: offset store: %s\n", rd_kafka_err2str(e));
        rd_kafka_message_destroy(m);
        t_last = pc_now();
        if ((seen & 4095) == 0 && t_last - t_start > timeout) {
            timed_out = true;
            break;
        }
    }
    cpu_last = pc_cpu();
    sys_last = pc_sys_busy();
    broker_last = pc_pid_cpu(broker_pid);
    double t_end = pc_now();
    e = rd_kafka_commit(rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        fprintf(stderr, "plain_consumer: commit: %s\n", rd_kafka_err2str(e));
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);

    double secs = t_last > t_first ? t_last - t_first : 0;
    double rate = secs > 0 ? (double)(seen - 1) / secs : 0;
    printf("plain_consumer: %lld msgs in %.3f s (first to last message): %.0f msgs/s; %lld "
           "matched task_type %s; %.3f s from start incl. group join; backlog at start %lld\n",
           seen, secs, rate, matched, type, t_end - t_start, backlog);
    if (machine)
        printf("RESULT msgs=%lld secs=%.3f rate=%.0f cpu=%.2f wall=%.3f matched=%lld "
               "maxrss_kib=%ld sys_busy=%.2f broker_cpu=%.2f\n",
               seen, secs, rate, cpu_last - cpu_first, t_end - t_start, matched, pc_maxrss_kib(),
               sys_last - sys_first, broker_last - broker_first);
    if (timed_out) {
        fprintf(stderr, "plain_consumer: timed out after %.0f s with %lld of %lld messages\n",
                timeout, seen, count ? count : backlog);
        return 1;
    }
    return 0;
}
