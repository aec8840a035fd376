/* audit_bench.c: the helper of bench/audit/run.sh: topics, a backlog of
 * content_audit tasks, and the throughput of an imtask-audit process read
 * from its /metrics. Prints figures; asserts none.
 *
 *   audit_bench topics-create --brokers B --prefix P     (P-task 6, P-retry, P-dlq, P-result)
 *   audit_bench topics-delete --brokers B --prefix P [--group G]
 *   audit_bench produce --brokers B --topic T --count N [--inline]
 *       N tasks: message ids m<n> (the content, "message <n>", comes from
 *       im-repo), or with --inline the same text in the task (no GetMessage).
 *   audit_bench watch --metrics URL --count N [--warmup F] [--until G] [--timeout S]
 *       polls imtask_tasks_succeeded_total{task_type="content_audit"} every
 *       50 ms; the steady rate is measured from F*N (default 0.1) to G*N
 *       (default 0.9) tasks done: start-up, group join and the final drain
 *       are left out (the drain and the overall rate are printed too).
 *       Prints "audits/s R" and the provider latency from the histogram.
 *   audit_bench http --url U --count N --threads T --in-flight L [--engine multi|easy]
 *       the HTTP client of imtask-audit alone (tasks/audit/http.c): T threads
 *       each doing requests one after the other, L at once at most; prints
 *       requests/s and the mean time of a request. */
#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "proto/audit.pb-c.h"
#include "tasks/audit/http.h"
#include "tests/support/support.h"

#include <pthread.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static rd_kafka_t *kafka(rd_kafka_type_t type, const char *brokers, const char *const *kv)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof(err));
    for (; kv && kv[0]; kv += 2) {
        if (rd_kafka_conf_set(c, kv[0], kv[1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "audit_bench: %s: %s\n", kv[0], err);
            exit(1);
        }
    }
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "audit_bench: %s\n", err);
        exit(1);
    }
    return rk;
}

static int topics(const char *brokers, const char *prefix, const char *group, bool create)
{
    const char *sfx[] = {"task", "retry", "dlq", "result"};
    int parts[] = {6, 3, 1, 3};
    char names[4][256], err[512];
    rd_kafka_t *rk = kafka(RD_KAFKA_PRODUCER, brokers, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
    rd_kafka_AdminOptions_set_request_timeout(o, 30000, err, sizeof(err));
    int rc = 0;
    for (int i = 0; i < 4; i++)
        snprintf(names[i], sizeof(names[i]), "%s-%s", prefix, sfx[i]);
    if (create) {
        rd_kafka_NewTopic_t *nt[4];
        for (int i = 0; i < 4; i++)
            nt[i] = rd_kafka_NewTopic_new(names[i], parts[i], 1, err, sizeof(err));
        rd_kafka_CreateTopics(rk, nt, 4, o, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
        if (!ev || rd_kafka_event_error(ev)) {
            fprintf(stderr, "audit_bench: CreateTopics: %s\n",
                    ev ? rd_kafka_event_error_string(ev) : "no answer");
            rc = 1;
        }
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_NewTopic_destroy_array(nt, 4);
        sleep(1); /* leaders */
    } else {
        const char *topics[] = {names[0], names[1], names[2], names[3]};
        ts_kafka_delete(brokers, topics, 4, group, "audit_bench");
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

static long long delivered, failed;

static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op)
{
    (void)rk;
    (void)op;
    if (m->err)
        failed++;
    else
        delivered++;
}

static int produce(const char *brokers, const char *topic, long count, bool inline_content)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(c, "linger.ms", "20", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.idempotence", "true", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(c, dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "audit_bench: %s\n", err);
        return 1;
    }
    unsigned base = 100000000u + (unsigned)(wall_ms() % 100000) * 1000u;
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        Imtask__V1__AuditTask at = IMTASK__V1__AUDIT_TASK__INIT;
        char mid[32], text[128], tid[64];
        uint8_t payload[512], *val;
        size_t vlen;
        task_t t;
        snprintf(mid, sizeof(mid), "m%lu", (unsigned long)base + (unsigned long)i);
        snprintf(text, sizeof(text), "message %lu", (unsigned long)base + (unsigned long)i);
        snprintf(tid, sizeof(tid), "bench-%u-%ld", base, i);
        at.message_id = mid;
        at.content = inline_content ? text : (char *)"";
        at.sender_id = (char *)"u-bench";
        at.conversation_id = (char *)"group:g-bench";
        size_t plen = imtask__v1__audit_task__pack(&at, payload);
        memset(&t, 0, sizeof(t));
        snprintf(t.task_id, sizeof(t.task_id), "%s", tid);
        snprintf(t.task_type, sizeof(t.task_type), "content_audit");
        task_trace_id_new(t.trace_id);
        task_traceparent_new(t.trace_id, t.traceparent);
        t.created_at_ms = wall_ms();
        t.payload = payload;
        t.payload_len = plen;
        if (task_encode(&t, &val, &vlen))
            return 1;
        for (;;) {
            rd_kafka_headers_t *h = rd_kafka_headers_new(3);
            rd_kafka_header_add(h, HDR_TASK_TYPE, -1, "content_audit", -1);
            rd_kafka_header_add(h, HDR_TASK_ID, -1, tid, -1);
            rd_kafka_header_add(h, HDR_TRACEPARENT, -1, t.traceparent, -1);
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(mid, strlen(mid)),
                RD_KAFKA_V_VALUE(val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
            if (!e)
                break;
            rd_kafka_headers_destroy(h);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "audit_bench: produce: %s\n", rd_kafka_err2str(e));
                return 1;
            }
            rd_kafka_poll(rk, 50);
        }
        free(val);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 60000);
    rd_kafka_destroy(rk);
    printf("audit_bench: produced %lld tasks (%s) in %.2f s, %lld failed\n", delivered,
           inline_content ? "inline content" : "message ids", now_s() - t0, failed);
    return failed || delivered != count;
}

typedef struct {
    char *buf;
    size_t len, cap;
} sink_t;

static size_t sink(char *d, size_t s, size_t n, void *op)
{
    sink_t *k = op;
    size_t m = s * n;
    if (k->len + m + 1 > k->cap) {
        size_t nc = (k->len + m + 1) * 2;
        char *b = realloc(k->buf, nc);
        if (!b)
            return 0;
        k->buf = b;
        k->cap = nc;
    }
    memcpy(k->buf + k->len, d, m);
    k->len += m;
    k->buf[k->len] = '\0';
    return m;
}

static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return -1;
}

static int fetch(CURL *e, const char *url, sink_t *k)
{
    k->len = 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 2000L);
    return curl_easy_perform(e) == CURLE_OK && k->buf ? 0 : -1;
}

typedef struct {
    double t, done, lat_sum, lat_cnt, task_sum, task_cnt;
    bool set;
} snap_t;

static void snap_take(snap_t *sn, const char *text, double done)
{
    sn->t = now_s();
    sn->done = done;
    sn->lat_sum = metric(text, "imtask_audit_provider_seconds_sum{provider=\"generic\"}");
    sn->lat_cnt = metric(text, "imtask_audit_provider_seconds_count{provider=\"generic\"}");
    sn->task_sum = metric(text, "imtask_task_processing_seconds_sum{task_type=\"content_audit\"}");
    sn->task_cnt =
        metric(text, "imtask_task_processing_seconds_count{task_type=\"content_audit\"}");
    sn->set = true;
}

/* Steady state: from warmup*N to until*N tasks done. The last tasks are left
 * out too: the backlog is spread over the workers' lanes by key, so at the
 * end some lanes still hold work while others are empty and fewer requests
 * are in flight (a drain, not the sustained rate); it is printed apart. */
static int watch(const char *url, long count, double warmup, double until, int timeout)
{
    CURL *e = curl_easy_init();
    sink_t k = {0};
    snap_t s0 = {0}, s1 = {0}, s2 = {0};
    double end = now_s() + timeout, peak = 0;
    while (now_s() < end) {
        if (fetch(e, url, &k) == 0) {
            double d = metric(k.buf, "imtask_tasks_succeeded_total{task_type=\"content_audit\"}");
            double inf = metric(k.buf, "imtask_audit_http_in_flight");
            if (inf > peak)
                peak = inf;
            if (!s0.set && d >= warmup * (double)count)
                snap_take(&s0, k.buf, d);
            if (!s1.set && d >= until * (double)count)
                snap_take(&s1, k.buf, d);
            if (d >= (double)count) {
                snap_take(&s2, k.buf, d);
                double rate = (s1.done - s0.done) / (s1.t - s0.t);
                double lc = s1.lat_cnt - s0.lat_cnt, tc = s1.task_cnt - s0.task_cnt;
                printf("audit_bench: %.0f tasks in %.2f s (from %.0f %% to %.0f %% done): "
                       "audits/s %.0f; provider latency mean %.1f ms; task (process + outputs) "
                       "mean %.1f ms; in flight seen up to %.0f; the last %.0f %%: %.0f/s; "
                       "overall %.0f/s\n",
                       s1.done - s0.done, s1.t - s0.t, warmup * 100, until * 100, rate,
                       lc > 0 ? 1000.0 * (s1.lat_sum - s0.lat_sum) / lc : 0,
                       tc > 0 ? 1000.0 * (s1.task_sum - s0.task_sum) / tc : 0, peak,
                       (1 - until) * 100, (s2.done - s1.done) / (s2.t - s1.t),
                       (s2.done - s0.done) / (s2.t - s0.t));
                free(k.buf);
                curl_easy_cleanup(e);
                return 0;
            }
        }
        usleep(50000);
    }
    fprintf(stderr, "audit_bench: not all %ld tasks done within %d s\n", count, timeout);
    free(k.buf);
    curl_easy_cleanup(e);
    return 1;
}

typedef struct {
    audit_http_t *h;
    const char *url;
    long n;
    double secs;
    long fails;
} hb_t;

static long hb_left;
static pthread_mutex_t hb_lock = PTHREAD_MUTEX_INITIALIZER;

static void *hb_thread(void *arg)
{
    hb_t *b = arg;
    for (;;) {
        pthread_mutex_lock(&hb_lock);
        bool go = hb_left-- > 0;
        pthread_mutex_unlock(&hb_lock);
        if (!go)
            return NULL;
        audit_req_t req = {0};
        audit_http_resp_t resp;
        audit_req_set_url(&req, b->url);
        audit_req_add_header(&req, "Content-Type: application/json");
        req.body = strdup("{\"text\":\"hello bench\"}");
        req.body_len = strlen(req.body);
        double t0 = now_s();
        if (audit_http_do(b->h, &req, &resp) || resp.status != 200)
            b->fails++;
        b->secs += now_s() - t0;
        b->n++;
        audit_http_resp_free(&resp);
        audit_req_free(&req);
    }
}

static int http_bench(const char *url, long count, int threads, int in_flight, int engine)
{
    char err[256];
    audit_http_conf_t hc = {.engine = engine,
                            .max_in_flight = in_flight,
                            .timeout_ms = 10000,
                            .connect_timeout_ms = 2000,
                            .max_response_bytes = 1 << 20,
                            .max_conns = in_flight,
                            .user_agent = "audit_bench"};
    audit_http_t *h;
    if (audit_http_new(&h, &hc, err, sizeof(err))) {
        fprintf(stderr, "audit_bench: %s\n", err);
        return 1;
    }
    pthread_t th[1024];
    hb_t b[1024];
    if (threads > 1024)
        threads = 1024;
    hb_left = count;
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        b[i] = (hb_t){.h = h, .url = url};
        pthread_create(&th[i], NULL, hb_thread, &b[i]);
    }
    double secs = 0;
    long n = 0, fails = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        secs += b[i].secs;
        n += b[i].n;
        fails += b[i].fails;
    }
    double t = now_s() - t0;
    printf("audit_bench: http %s engine, %d threads, %d in flight: %ld requests in %.2f s: "
           "%.0f/s, mean %.1f ms per call, %ld failed\n",
           engine ? "easy" : "multi", threads, in_flight, n, t, (double)n / t,
           1000.0 * secs / (double)n, fails);
    audit_http_destroy(&h);
    return fails != 0;
}

int main(int argc, char **argv)
{
    const char *brokers = "127.0.0.1:19092", *prefix = NULL, *topic = NULL, *url = NULL,
               *group = NULL;
    long count = 0;
    double warmup = 0.1, until = 0.9;
    int timeout = 600;
    bool inline_content = false;
    const char *hurl = NULL;
    int threads = 128, in_flight = 128, engine = 0;
    static const struct option lo[] = {
        {"brokers", 1, 0, 'b'}, {"prefix", 1, 0, 'p'},  {"topic", 1, 0, 't'},
        {"count", 1, 0, 'n'},   {"inline", 0, 0, 'i'},  {"metrics", 1, 0, 'm'},
        {"warmup", 1, 0, 'w'},  {"timeout", 1, 0, 'T'}, {"group", 1, 0, 'g'},
        {"url", 1, 0, 'u'},     {"threads", 1, 0, 'h'}, {"in-flight", 1, 0, 'l'},
        {"engine", 1, 0, 'e'},  {"until", 1, 0, 'U'},   {0, 0, 0, 0},
    };
    if (argc < 2) {
        fprintf(stderr, "usage: audit_bench topics-create|topics-delete|produce|watch ...\n");
        return 2;
    }
    const char *cmd = argv[1];
    optind = 2;
    for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (c) {
        case 'b':
            brokers = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'n':
            count = atol(optarg);
            break;
        case 'i':
            inline_content = true;
            break;
        case 'm':
            url = optarg;
            break;
        case 'w':
            warmup = atof(optarg);
            break;
        case 'T':
            timeout = atoi(optarg);
            break;
        case 'g':
            group = optarg;
            break;
        case 'u':
            hurl = optarg;
            break;
        case 'h':
            threads = atoi(optarg);
            break;
        case 'l':
            in_flight = atoi(optarg);
            break;
        case 'e':
            engine = strcmp(optarg, "easy") == 0;
            break;
        default:
            return 2;
        }
    }
    if (strcmp(cmd, "topics-create") == 0 && prefix)
        return topics(brokers, prefix, NULL, true);
    if (strcmp(cmd, "topics-delete") == 0 && prefix)
        return topics(brokers, prefix, group, false);
    if (strcmp(cmd, "produce") == 0 && topic && count > 0)
        return produce(brokers, topic, count, inline_content);
    if (strcmp(cmd, "http") == 0 && hurl && count > 0)
        return http_bench(hurl, count, threads, in_flight, engine);
    if (strcmp(cmd, "watch") == 0 && url && count > 0)
        return watch(url, count, warmup, until, timeout);
    fprintf(stderr, "audit_bench: bad arguments for %s\n", cmd);
    return 2;
}
