/* push_bench.c: pushes per second and peak RSS of one imtask-push process
 * against the push doubles (run by bench/push/run.sh with a private double
 * answering after 20 ms). Nothing is asserted: figures are printed.
 *
 *   push_bench IMTASK_PUSH --admin URL --provider apns|fcm|mixed
 *              [--tasks 400] [--devices 500] [--workers 8] [--max-in-flight 1000]
 *              [--conns 1] [--streams-per-conn 1000]
 *              [--brokers H:P] [--imrepo H:P]
 *
 * It creates private topics, produces every task first (each with an
 * explicit device list), then starts imtask-push and samples its
 * imtask_push_sent_total and /proc/<pid>/status every 200 ms until every
 * device was pushed. Printed: the rate over the whole run (first to last
 * push) and over its middle 80%, peak RSS (VmHWM), and the p50/p99 of the
 * provider latency histogram.
 */
#include <curl/curl.h>
#include <errno.h>
#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "proto/push.pb-c.h"
#include "tests/support/support.h"

#define MAX_SAMPLES 100000

static const char *g_brokers = "127.0.0.1:19092", *g_imrepo = "127.0.0.1:19500";
static pid_t g_child;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *fmt, const char *a)
{
    fprintf(stderr, "push_bench: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    if (g_child > 0)
        kill(g_child, SIGKILL);
    exit(1);
}

static char *http_get(const char *url)
{
    long status;
    return ts_http(NULL, url, NULL, 5000, &status);
}

/* "key":"value" out of a flat JSON text (the admin's /info). */
static void json_str(const char *j, const char *key, char *out, size_t cap)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":\"", key);
    const char *p = j ? strstr(j, k) : NULL;
    out[0] = '\0';
    if (!p)
        return;
    p += strlen(k);
    const char *e = strchr(p, '"');
    snprintf(out, cap, "%.*s", (int)(e ? e - p : 0), p);
}

static double metric(const char *text, const char *prefix)
{
    double sum = 0;
    size_t pl = strlen(prefix);
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        if (strncmp(l, prefix, pl) == 0 && (l[pl] == ' ' || l[pl] == '{')) {
            const char *sp = l + pl;
            while (*sp && *sp != ' ' && sp < (nl ? nl : sp + 1000))
                sp++;
            sum += strtod(sp, NULL);
        }
        l = nl ? nl + 1 : NULL;
    }
    return sum;
}

/* A quantile of imtask_push_latency_seconds (all providers summed), in ms:
 * the upper bound of the first bucket holding it. */
static double latency_q(const char *text, double q)
{
    double bounds[40], counts[40], total = 0;
    int n = 0;
    const char *pfx = "imtask_push_latency_seconds_bucket{";
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        const char *le = strstr(l, "le=\"");
        if (strncmp(l, pfx, strlen(pfx)) == 0 && le && (!nl || le < nl) && n < 40) {
            double b = strncmp(le + 4, "+Inf", 4) == 0 ? 1e9 : strtod(le + 4, NULL);
            const char *v = strstr(le, "} ");
            double c = v ? strtod(v + 2, NULL) : 0;
            int k;
            for (k = 0; k < n && bounds[k] != b; k++) {
            }
            if (k == n) {
                bounds[n] = b;
                counts[n++] = 0;
            }
            counts[k] += c;
        }
        l = nl ? nl + 1 : NULL;
    }
    for (int k = 0; k < n; k++)
        total = counts[k] > total ? counts[k] : total;
    for (int k = 0; k < n; k++) {
        if (total > 0 && counts[k] >= q * total)
            return bounds[k] * 1000;
    }
    return -1;
}

static long vm_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtol(line + strlen(field) + 1, NULL, 10);
    }
    if (f)
        fclose(f);
    return v;
}

/* CPU seconds (user + system) a process used so far. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    unsigned long ut = 0, st = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* fields after the command name */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static rd_kafka_t *kafka(rd_kafka_type_t t)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", g_brokers, err, sizeof(err));
    if (t == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set(c, "linger.ms", "20", err, sizeof(err));
        rd_kafka_conf_set(c, "enable.idempotence", "true", err, sizeof(err));
    }
    rd_kafka_t *rk = rd_kafka_new(t, c, err, sizeof(err));
    if (!rk)
        die("%s", err);
    return rk;
}

static void topics(char names[3][128], bool create)
{
    char err[256];
    rd_kafka_t *rk = kafka(RD_KAFKA_PRODUCER);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev;
    if (create) {
        rd_kafka_NewTopic_t *nt[3];
        for (int i = 0; i < 3; i++)
            nt[i] = rd_kafka_NewTopic_new(names[i], i == 0 ? 8 : 1, 1, err, sizeof(err));
        rd_kafka_CreateTopics(rk, nt, 3, NULL, q);
        ev = rd_kafka_queue_poll(q, 30000);
        if (!ev || rd_kafka_event_error(ev))
            die("CreateTopics: %s", ev ? rd_kafka_event_error_string(ev) : "timeout");
        rd_kafka_NewTopic_destroy_array(nt, 3);
        sleep(2); /* leaders */
    } else {
        rd_kafka_DeleteTopic_t *dt[3];
        for (int i = 0; i < 3; i++)
            dt[i] = rd_kafka_DeleteTopic_new(names[i]);
        rd_kafka_DeleteTopics(rk, dt, 3, NULL, q);
        ev = rd_kafka_queue_poll(q, 30000);
        rd_kafka_DeleteTopic_destroy_array(dt, 3);
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

int main(int argc, char **argv)
{
    const char *bin = argc > 1 ? argv[1] : NULL, *admin = "http://127.0.0.1:19702",
               *provider = "apns";
    int ntasks = 400, ndev = 500, workers = 8, max_in_flight = 1000, conns = 1, streams = 1000;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--admin"))
            admin = argv[i + 1];
        else if (!strcmp(argv[i], "--provider"))
            provider = argv[i + 1];
        else if (!strcmp(argv[i], "--tasks"))
            ntasks = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--devices"))
            ndev = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-in-flight"))
            max_in_flight = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--conns"))
            conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--streams-per-conn"))
            streams = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--brokers"))
            g_brokers = argv[i + 1];
        else if (!strcmp(argv[i], "--imrepo"))
            g_imrepo = argv[i + 1];
        else
            die("unknown option %s", argv[i]);
    }
    if (!bin)
        die("%s", "usage: push_bench IMTASK_PUSH [--admin URL] [--provider apns|fcm|mixed] ...");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char url[512], apns[128], fcm[128], ca[512], key[512], sa[512];
    snprintf(url, sizeof(url), "%s/info", admin);
    char *info = http_get(url);
    if (!info)
        die("the push double does not answer at %s", admin);
    json_str(info, "apns", apns, sizeof(apns));
    json_str(info, "fcm", fcm, sizeof(fcm));
    json_str(info, "ca_file", ca, sizeof(ca));
    json_str(info, "key_file", key, sizeof(key));
    json_str(info, "fcm_credentials_file", sa, sizeof(sa));
    free(info);

    char dir[] = "/tmp/push_bench.XXXXXX", names[3][128], group[160], cfg[600], log[600];
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    long tag = (long)time(NULL) % 1000000 * 100 + getpid() % 100;
    snprintf(names[0], 128, "imtask-bench-push-%ld-task", tag);
    snprintf(names[1], 128, "imtask-bench-push-%ld-retry", tag);
    snprintf(names[2], 128, "imtask-bench-push-%ld-dlq", tag);
    snprintf(group, sizeof(group), "imtask-bench-push-%ld", tag);
    topics(names, true);

    /* the tasks: ndev devices each (tokens unique per task) */
    int64_t t0 = mono_ms();
    rd_kafka_t *p = kafka(RD_KAFKA_PRODUCER);
    Imtask__V1__PushNotification n = IMTASK__V1__PUSH_NOTIFICATION__INIT;
    n.title = (char *)"Alice";
    n.body = (char *)"Are we still on for lunch tomorrow? I found a new place near the office.";
    n.conversation_id = (char *)"c-42";
    n.sender_id = (char *)"u-alice";
    n.message_id = (char *)"m-1001";
    Imtask__V1__PushDevice *devs = calloc((size_t)ndev, sizeof(*devs));
    Imtask__V1__PushDevice **devp = calloc((size_t)ndev, sizeof(*devp));
    char(*tok)[80] = calloc((size_t)ndev, sizeof(*tok));
    for (int t = 0; t < ntasks; t++) {
        Imtask__V1__PushTask pt = IMTASK__V1__PUSH_TASK__INIT;
        for (int i = 0; i < ndev; i++) {
            bool is_fcm = !strcmp(provider, "fcm") || (!strcmp(provider, "mixed") && i % 2);
            imtask__v1__push_device__init(&devs[i]);
            snprintf(tok[i], sizeof(tok[i]), "%s%08x%08x%08x", is_fcm ? "fcm-" : "", t, i,
                     (unsigned)tag);
            devs[i].token = tok[i];
            devs[i].platform = is_fcm ? IMTASK__V1__PUSH_PLATFORM__PUSH_PLATFORM_FCM
                                      : IMTASK__V1__PUSH_PLATFORM__PUSH_PLATFORM_APNS;
            devs[i].app_id = (char *)(is_fcm ? "gochat-im" : "com.gochat.im");
            devp[i] = &devs[i];
        }
        pt.notification = &n;
        pt.devices = devp;
        pt.n_devices = (size_t)ndev;
        size_t plen = imtask__v1__push_task__get_packed_size(&pt);
        uint8_t *pl = malloc(plen), *val;
        size_t vlen;
        imtask__v1__push_task__pack(&pt, pl);
        task_t env = {
            .created_at_ms = (int64_t)time(NULL) * 1000, .payload = pl, .payload_len = plen};
        snprintf(env.task_id, sizeof(env.task_id), "bench-%ld-%d", tag, t);
        snprintf(env.task_type, sizeof(env.task_type), "push");
        task_trace_id_new(env.trace_id);
        task_encode(&env, &val, &vlen);
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, HDR_TASK_TYPE, -1, "push", -1);
        rd_kafka_header_add(h, HDR_TASK_ID, -1, env.task_id, -1);
        while (rd_kafka_producev(
                   p, RD_KAFKA_V_TOPIC(names[0]), RD_KAFKA_V_KEY(env.task_id, strlen(env.task_id)),
                   RD_KAFKA_V_VALUE(val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                   RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 100);
        rd_kafka_poll(p, 0);
        free(val);
        free(pl);
    }
    if (rd_kafka_flush(p, 60000) != 0)
        die("%s", "producing the tasks failed");
    rd_kafka_destroy(p);
    fprintf(stderr, "push_bench: %d tasks x %d devices produced in %lld ms\n", ntasks, ndev,
            (long long)(mono_ms() - t0));

    /* the push binary */
    int port = ts_free_port();
    snprintf(cfg, sizeof(cfg), "%s/push.yaml", dir);
    snprintf(log, sizeof(log), "%s/push.log", dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "log:\n  level: %s\nhttp:\n  listen: 127.0.0.1:%d\nkafka:\n  brokers: %s\n"
            "consumer:\n  group_id: %s\n  topic: %s\n  retry_topic: %s\n  dlq_topic: %s\n"
            "  workers: %d\nimrepo:\n  endpoints: %s\n"
            "apns:\n  endpoint: %s\n  sandbox_endpoint: %s\n  ca_file: %s\n  apps: [main]\n"
            "  max_in_flight: %d\n  max_conns: %d\n  max_streams_per_conn: %d\n"
            "apns_app_main:\n  topics: [com.gochat.im]\n  team_id: TESTTEAM01\n"
            "  key_id: TESTKEY001\n  key_file: %s\n"
            "fcm:\n  endpoint: %s\n  ca_file: %s\n  apps: [main]\n  max_in_flight: %d\n"
            "  max_conns: %d\n  max_streams_per_conn: %d\n"
            "fcm_app_main:\n  app_ids: [\"*\"]\n  credentials_file: %s\n",
            getenv("BENCH_LOG_LEVEL") ? getenv("BENCH_LOG_LEVEL") : "warn", port, g_brokers, group,
            names[0], names[1], names[2], workers, g_imrepo, apns, apns, ca, max_in_flight, conns,
            streams, key, fcm, ca, max_in_flight, conns, streams, sa);
    fclose(f);
    int64_t started = mono_ms();
    char *child_argv[] = {(char *)bin, (char *)"--config", cfg, NULL};
    pid_t pid = ts_spawn(bin, child_argv, NULL, log, true);
    if (pid < 0)
        die("fork: %s", strerror(errno));
    g_child = pid;
    char murl[128];
    snprintf(murl, sizeof(murl), "http://127.0.0.1:%d/metrics", port);
    double want = (double)ntasks * ndev, sent = 0, first_t = -1, *samp_v = calloc(MAX_SAMPLES, 8);
    int64_t *samp_t = calloc(MAX_SAMPLES, 8);
    int ns = 0;
    char *last = NULL;
    while (sent < want) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            die("imtask-push exited; log %s", log);
        if (mono_ms() - started > 600000)
            die("%s", "no end after 10 minutes");
        usleep(200000);
        char *m = http_get(murl);
        if (!m)
            continue;
        sent = metric(m, "imtask_push_sent_total");
        int64_t now = mono_ms();
        if (sent > 0 && first_t < 0)
            first_t = (double)now;
        if (ns < MAX_SAMPLES) {
            samp_t[ns] = now;
            samp_v[ns++] = sent;
        }
        free(last);
        last = m;
    }
    int64_t end = mono_ms();
    long hwm = vm_kb(pid, "VmHWM"), rss = vm_kb(pid, "VmRSS");
    double cpu = cpu_s(pid);
    double failed = last ? metric(last, "imtask_push_failed_total") : -1;
    double p50 = last ? latency_q(last, 0.5) : -1, p99 = last ? latency_q(last, 0.99) : -1;
    /* the middle 80% */
    int64_t t10 = -1, t90 = -1;
    double v10 = 0, v90 = 0;
    for (int i = 0; i < ns; i++) {
        if (t10 < 0 && samp_v[i] >= 0.1 * want) {
            t10 = samp_t[i];
            v10 = samp_v[i];
        }
        if (t90 < 0 && samp_v[i] >= 0.9 * want) {
            t90 = samp_t[i];
            v90 = samp_v[i];
        }
    }
    double whole = want / ((double)(end - first_t) / 1000.0);
    double mid = t90 > t10 ? (v90 - v10) / ((double)(t90 - t10) / 1000.0) : 0;
    printf("provider=%s tasks=%d devices=%d pushes=%.0f workers=%d max_in_flight=%d conns=%d "
           "rate_whole=%.0f/s rate_mid80=%.0f/s duration_ms=%lld peak_rss_mb=%.1f "
           "rss_end_mb=%.1f latency_p50_ms=%.0f latency_p99_ms=%.0f failed=%.0f "
           "cpu_s=%.2f cpu_us_per_push=%.0f\n",
           provider, ntasks, ndev, want, workers, max_in_flight, conns, whole, mid,
           (long long)(end - (int64_t)first_t), hwm / 1024.0, rss / 1024.0, p50, p99, failed, cpu,
           cpu * 1e6 / want);
    fflush(stdout);
    for (const char *l = last; l && *l;) { /* what failed, for the operator */
        const char *nl = strchr(l, '\n');
        if (strncmp(l, "imtask_push_failed_total{", 25) == 0)
            fprintf(stderr, "push_bench:   %.*s\n", (int)(nl ? nl - l : (long)strlen(l)), l);
        l = nl ? nl + 1 : NULL;
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    g_child = 0;
    topics(names, false);
    if (getenv("BENCH_KEEP") && *getenv("BENCH_KEEP") == '1') {
        fprintf(stderr, "push_bench: kept %s\n", dir);
    } else {
        unlink(cfg);
        unlink(log);
        rmdir(dir);
    }
    free(last);
    free(samp_v);
    free(samp_t);
    free(devs);
    free(devp);
    free(tok);
    curl_global_cleanup();
    return 0;
}
