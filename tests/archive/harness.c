/* harness.c: see harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "proto/schedule.pb-c.h"
#include "tasks/archive/segment.h"
#include "tests/support/support.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

h_env_t h_env;

static const char *need(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set: this integration test needs the local stack "
                 "(scripts/stack.sh up; run through scripts/test.sh or pass --test_env=%s)",
                 name, name);
    return v;
}

void h_env_load(const char *archive_bin, bool need_s3)
{
    h_env.brokers = need("IMTASK_KAFKA_BROKERS");
    h_env.imrepo_addr = need("IMTASK_IMREPO_ADDR");
    h_env.imrepo_admin = need("IMTASK_IMREPO_ADMIN");
    h_env.s3_endpoint = need_s3 ? need("IMTASK_S3_ENDPOINT") : NULL;
    h_env.archive_bin = archive_bin;
    const char *t = getenv("TEST_TMPDIR");
    snprintf(h_env.tmp, sizeof(h_env.tmp), "%s/archXXXXXX", t ? t : "/tmp");
    CHECK(mkdtemp(h_env.tmp) != NULL, "mkdtemp: %s", strerror(errno));
}

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

int h_http(const char *method, const char *url, char *out, size_t outlen)
{
    long status = 0;
    bool with_body = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    char *r = ts_http(method, url, with_body ? "" : NULL, 30000, &status);
    CHECK(r != NULL, "%s %s: no answer", method, url);
    if (out && outlen)
        snprintf(out, outlen, "%s", r);
    free(r);
    return (int)status;
}

void h_double_seed(int64_t n)
{
    char url[256], out[256];
    snprintf(url, sizeof(url), "%s/messages?count=%" PRId64 "&reset=1", h_env.imrepo_admin, n);
    CHECK(h_http("POST", url, out, sizeof(out)) == 200,
          "POST %s: %s (is the double current? "
          "scripts/stack.sh imrepo-restart)",
          url, out);
}

void h_double_latency(int latency_ms)
{
    char url[256], out[256];
    if (latency_ms > 0)
        snprintf(url, sizeof(url), "%s/faults?latency_ms=%d", h_env.imrepo_admin, latency_ms);
    else
        snprintf(url, sizeof(url), "%s/faults/reset", h_env.imrepo_admin);
    CHECK(h_http("POST", url, out, sizeof(out)) == 200, "POST %s: %s", url, out);
}

int64_t h_double_deleted(void)
{
    char url[256], out[256];
    snprintf(url, sizeof(url), "%s/messages", h_env.imrepo_admin);
    CHECK(h_http("GET", url, out, sizeof(out)) == 200, "GET %s: %s", url, out);
    cJSON *o = cJSON_Parse(out);
    const cJSON *d = cJSON_GetObjectItem(o, "deleted");
    CHECK(cJSON_IsNumber(d), "GET %s: %s", url, out);
    int64_t v = (int64_t)d->valuedouble;
    cJSON_Delete(o);
    return v;
}

void h_double_restore(void)
{
    h_double_latency(0);
    h_double_seed(100000);
}

repo_client_t *h_repo(void)
{
    char err[256];
    repo_conf_t *conf = repo_conf_new();
    CHECK(repo_conf_set(conf, "endpoints", h_env.imrepo_addr, err, sizeof(err)) == 0, "%s", err);
    CHECK(repo_conf_set(conf, "default_timeout", "30s", err, sizeof(err)) == 0, "%s", err);
    repo_client_t *r = NULL;
    CHECK(repo_client_new(&r, conf, err, sizeof(err)) == 0, "repo_client_new: %s", err);
    return r;
}

static int64_t id_num(const char *id)
{
    if (id[0] != 'm' || !id[1])
        return -1;
    char *end;
    long long v = strtoll(id + 1, &end, 10);
    return *end || v < 0 ? -1 : v;
}

uint8_t *h_repo_listed(repo_client_t *r, int64_t before, int64_t n, int64_t *count)
{
    uint8_t *bits = calloc((size_t)n / 8 + 1, 1);
    CHECK(bits != NULL, "oom");
    char cursor[SEG_CURSOR_MAX + 1] = "";
    *count = 0;
    for (;;) {
        ImRepo__V1__ListMessagesBeforeRequest req = IM_REPO__V1__LIST_MESSAGES_BEFORE_REQUEST__INIT;
        req.before = before;
        req.cursor = cursor;
        req.limit = 10000;
        ImRepo__V1__ListMessagesBeforeResponse *resp = NULL;
        repo_status_t st;
        CHECK(repo_list_messages_before(r, &req, NULL, &resp, &st) == REPO_ERR_OK,
              "ListMessagesBefore: %s", st.message);
        for (size_t i = 0; i < resp->n_messages; i++) {
            int64_t k = id_num(resp->messages[i]->id);
            CHECK(k >= 0 && k < n, "im-repo listed %s, outside the seeded history",
                  resp->messages[i]->id);
            bits[k / 8] |= (uint8_t)(1u << (k % 8));
            (*count)++;
        }
        bool more = resp->has_more;
        snprintf(cursor, sizeof(cursor), "%s", resp->next_cursor);
        repo_response_free(&resp->base);
        if (!more)
            break;
    }
    return bits;
}

store_t *h_store_open(const char *name, bool s3, char *yaml, size_t yamlcap)
{
    char err[512];
    store_config_t c = {.max_object_bytes = 256 << 20};
    static char dir[700], prefix[200];
    if (!s3) {
        snprintf(dir, sizeof(dir), "%s/%s", h_env.tmp, name);
        c.kind = STORE_LOCAL;
        c.dir = dir;
        snprintf(yaml, yamlcap, "storage:\n  kind: local\n  dir: %s\n", dir);
    } else {
        char url[400], out[512];
        snprintf(url, sizeof(url), "%s/imtask-test", h_env.s3_endpoint);
        int st = h_http("PUT", url, out, sizeof(out));
        CHECK(st == 200 || st == 409, "create bucket %s: HTTP %d %s", url, st, out);
        snprintf(prefix, sizeof(prefix), "t%d-%lld-%s/", (int)getpid(), (long long)h_now_ms(),
                 name);
        c.kind = STORE_S3;
        c.s3_endpoint = h_env.s3_endpoint;
        c.s3_bucket = "imtask-test";
        c.s3_region = "us-east-1";
        c.s3_prefix = prefix;
        c.s3_access_key_id = "testing";
        c.s3_secret_access_key = "testing";
        c.s3_timeout_ms = 30000;
        snprintf(yaml, yamlcap,
                 "storage:\n  kind: s3\n  s3_endpoint: %s\n  s3_bucket: imtask-test\n"
                 "  s3_region: us-east-1\n  s3_prefix: %s\n  s3_access_key_id: testing\n"
                 "  s3_secret_access_key: testing\n",
                 h_env.s3_endpoint, prefix);
    }
    store_t *s = store_open(&c, err, sizeof(err));
    CHECK(s != NULL, "store_open: %s", err);
    return s;
}

/* ---- reading an archive back -------------------------------------------- */

typedef struct {
    char (*keys)[256];
    size_t n, cap;
} keys_t;

static int add_key(void *opaque, const char *key, uint64_t size)
{
    (void)size;
    keys_t *k = opaque;
    if (k->n == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 64;
        k->keys = realloc(k->keys, k->cap * sizeof(*k->keys));
        CHECK(k->keys != NULL, "oom");
    }
    snprintf(k->keys[k->n++], 256, "%s", key);
    return 0;
}

static int mark_line(void *opaque, const char *text, size_t n)
{
    h_archive_t *a = opaque;
    cJSON *o = cJSON_ParseWithLength(text, n);
    const cJSON *id = cJSON_GetObjectItem(o, "id");
    const cJSON *created = cJSON_GetObjectItem(o, "created_at");
    CHECK(cJSON_IsString(id) && cJSON_IsNumber(created),
          "a segment line without id/created_at: "
          "%.*s",
          (int)(n > 200 ? 200 : n), text);
    int64_t k = id_num(id->valuestring);
    if (k >= 0 && k < a->n) {
        CHECK((int64_t)created->valuedouble == H_EPOCH_MS + k * H_STEP_MS,
              "%s: created_at %.0f is not the double's", id->valuestring, created->valuedouble);
        if (a->seen[k] < 255)
            a->seen[k]++;
    } else {
        a->foreign++;
    }
    a->messages++;
    cJSON_Delete(o);
    return 0;
}

void h_archive_read(store_t *s, const char *prefix, const char *job, int64_t n, h_archive_t *out)
{
    char err[512], pfx[300];
    memset(out, 0, sizeof(*out));
    out->n = n;
    out->seen = calloc((size_t)n, 1);
    CHECK(out->seen != NULL, "oom");
    snprintf(pfx, sizeof(pfx), "%s/%s/segments/", prefix, job);
    keys_t k = {0};
    CHECK(store_list(s, pfx, add_key, &k, err, sizeof(err)) == 0, "list %s: %s", pfx, err);
    int64_t expect_seq = 0;
    for (size_t i = 0; i < k.n; i++) {
        int is_manifest = 0;
        int64_t seq = seg_key_seq(k.keys[i], &is_manifest);
        CHECK(seq >= 0, "unexpected key %s", k.keys[i]);
        if (!is_manifest)
            continue;
        CHECK(seq == expect_seq, "manifest %s: expected seq %" PRId64 " (no gaps)", k.keys[i],
              expect_seq);
        expect_seq++;
        void *mj, *data;
        size_t mlen, dlen;
        CHECK(store_get(s, k.keys[i], &mj, &mlen, err, sizeof(err)) == 0, "get %s: %s", k.keys[i],
              err);
        seg_manifest_t m;
        CHECK(seg_manifest_parse(mj, mlen, &m, err, sizeof(err)) == 0, "%s: %s", k.keys[i], err);
        free(mj);
        char dk[300];
        seg_key_data(dk, sizeof(dk), prefix, job, m.object);
        CHECK(store_get(s, dk, &data, &dlen, err, sizeof(err)) == 0, "get %s: %s", dk, err);
        CHECK(seg_verify(&m, data, dlen, err, sizeof(err)) == 0, "verify %s: %s", dk, err);
        int64_t before = out->messages;
        CHECK(seg_decode(data, dlen, 1 << 20, mark_line, out, NULL, NULL, NULL, err, sizeof(err)) ==
                  0,
              "decode %s: %s", dk, err);
        CHECK(out->messages - before == (int64_t)m.count,
              "%s: %" PRId64 " lines, manifest %" PRIu64, dk, out->messages - before, m.count);
        free(data);
        out->segments++;
    }
    /* objects no manifest names: tries that were not committed (after a
     * crash, or dropped for another run's commit); never part of the archive */
    for (size_t i = 0; i < k.n; i++) {
        int is_manifest = 0;
        seg_key_seq(k.keys[i], &is_manifest);
        out->uncommitted += !is_manifest;
    }
    out->uncommitted -= out->segments;
    free(k.keys);
}

void h_archive_free(h_archive_t *a)
{
    free(a->seen);
    a->seen = NULL;
}

/* ---- Kafka -------------------------------------------------------------- */

static rd_kafka_t *kafka_new(rd_kafka_type_t type)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", h_env.brokers, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    CHECK(rk != NULL, "rd_kafka_new: %s", err);
    return rk;
}

void h_topics_create(h_topics_t *t, const char *tag)
{
    char err[512];
    snprintf(t->base, sizeof(t->base), "arch-%s-%d-%lld", tag, (int)getpid(),
             (long long)h_now_ms());
    snprintf(t->topic, sizeof(t->topic), "%s-task", t->base);
    snprintf(t->retry, sizeof(t->retry), "%s-retry", t->base);
    snprintf(t->dlq, sizeof(t->dlq), "%s-dlq", t->base);
    snprintf(t->group, sizeof(t->group), "%s-group", t->base);
    const char *names[] = {t->topic, t->retry, t->dlq};
    const int parts[] = {1, 1, 1};
    CHECK(ts_kafka_create(h_env.brokers, names, parts, 3, err, sizeof(err)) == 0, "topics: %s",
          err);
}

void h_topics_delete(h_topics_t *t)
{
    if (!t->base[0])
        return;
    const char *names[] = {t->topic, t->retry, t->dlq};
    ts_kafka_delete(h_env.brokers, names, 3, NULL, t->base);
    t->base[0] = '\0';
}

void h_produce_run(const h_topics_t *t, const char *job, int64_t slot_ms, const char *const *params,
                   size_t nparams)
{
    Imtask__V1__ScheduledRun run = IMTASK__V1__SCHEDULED_RUN__INIT;
    Imtask__V1__ScheduledRun__ParamsEntry ents[8], *pe[8];
    CHECK(nparams <= 8, "at most 8 params");
    for (size_t i = 0; i < nparams; i++) {
        imtask__v1__scheduled_run__params_entry__init(&ents[i]);
        ents[i].key = (char *)params[2 * i];
        ents[i].value = (char *)params[2 * i + 1];
        pe[i] = &ents[i];
    }
    run.job = (char *)job;
    run.scheduled_at_ms = slot_ms;
    run.fired_at_ms = slot_ms;
    run.manual = true;
    run.n_params = nparams;
    run.params = pe;
    uint8_t payload[4096];
    size_t plen = imtask__v1__scheduled_run__get_packed_size(&run);
    CHECK(plen <= sizeof(payload), "payload too big");
    imtask__v1__scheduled_run__pack(&run, payload);
    task_t tk;
    memset(&tk, 0, sizeof(tk));
    snprintf(tk.task_id, sizeof(tk.task_id), "%s@%" PRId64, job, slot_ms);
    snprintf(tk.task_type, sizeof(tk.task_type), "archive");
    task_trace_id_new(tk.trace_id);
    task_traceparent_new(tk.trace_id, tk.traceparent);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tk.created_at_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    tk.payload = payload;
    tk.payload_len = plen;
    uint8_t *val;
    size_t vlen;
    CHECK(task_encode(&tk, &val, &vlen) == 0, "task_encode");
    rd_kafka_t *rk = kafka_new(RD_KAFKA_PRODUCER);
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    rd_kafka_header_add(h, HDR_TASK_TYPE, -1, "archive", -1);
    rd_kafka_header_add(h, HDR_TASK_ID, -1, tk.task_id, -1);
    rd_kafka_header_add(h, HDR_TRACEPARENT, -1, tk.traceparent, -1);
    rd_kafka_resp_err_t e =
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(t->topic), RD_KAFKA_V_KEY(job, strlen(job)),
                          RD_KAFKA_V_VALUE(val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    free(val);
    if (e)
        rd_kafka_headers_destroy(h);
    CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
    CHECK(rd_kafka_flush(rk, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR, "flush");
    rd_kafka_destroy(rk);
}

int64_t h_topic_count(const char *topic)
{
    rd_kafka_t *rk = kafka_new(RD_KAFKA_PRODUCER);
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000);
    rd_kafka_destroy(rk);
    CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks of %s: %s", topic, rd_kafka_err2str(e));
    return hi - lo;
}

/* ---- children ----------------------------------------------------------- */

void h_child_start(h_child_t *c, const h_topics_t *t, const char *storage_yaml,
                   const char *archive_yaml, const char *dir)
{
    CHECK(c->pid <= 0, "a child is running already");
    mkdir(dir, 0755);
    snprintf(c->cfg, sizeof(c->cfg), "%s/archive.yaml", dir);
    snprintf(c->log, sizeof(c->log), "%s/archive.log", dir);
    c->port = ts_free_port();
    CHECK(c->port > 0, "no free port");
    FILE *f = fopen(c->cfg, "w");
    CHECK(f != NULL, "%s: %s", c->cfg, strerror(errno));
    fprintf(f,
            "log:\n  level: info\n"
            "http:\n  listen: 127.0.0.1:%d\n"
            "kafka:\n  brokers: %s\n  session.timeout.ms: 6000\n  heartbeat.interval.ms: 200\n"
            "shutdown:\n  grace: 5s\n"
            "consumer:\n  group_id: %s\n  topic: %s\n  retry_topic: %s\n  dlq_topic: %s\n"
            "  workers: 2\n"
            "imrepo:\n  endpoints: %s\n  default_timeout: 30s\n"
            "%s"
            "archive:\n%s",
            c->port, h_env.brokers, t->group, t->topic, t->retry, t->dlq, h_env.imrepo_addr,
            storage_yaml, archive_yaml);
    CHECK(fclose(f) == 0, "%s", c->cfg);
    char *argv[] = {(char *)h_env.archive_bin, (char *)"--config", c->cfg, NULL};
    pid_t pid = ts_spawn(argv[0], argv, NULL, c->log, false);
    CHECK(pid >= 0, "fork");
    c->pid = pid;
}

static void print_log(const h_child_t *c)
{
    fprintf(stderr, "---- %s (last lines)\n", c->log);
    ts_print_tail(c->log, 40);
}

void h_child_check_alive(h_child_t *c)
{
    int status;
    if (c->pid > 0 && waitpid(c->pid, &status, WNOHANG) == c->pid) {
        c->pid = -1;
        print_log(c);
        fail_msg("imtask-archive exited early with status %#x", status);
    }
}

void h_child_kill9(h_child_t *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    c->pid = -1;
}

void h_child_stop(h_child_t *c)
{
    int status = 0;
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    for (int64_t end = h_now_ms() + 30000; h_now_ms() < end;) {
        if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
            c->pid = -1;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                print_log(c);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "imtask-archive ended with status %#x", status);
            return;
        }
        h_sleep_ms(100);
    }
    h_child_kill9(c);
    print_log(c);
    fail_msg("imtask-archive did not stop within 30 s of SIGTERM");
}
