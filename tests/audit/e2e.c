/* e2e.c: helpers of the audit end-to-end tests (see e2e.h). */
#include "e2e.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "tests/support/support.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

e2e_env_t e2e_env;

int64_t e2e_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void e2e_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

void e2e_env_load(const char *audit_bin)
{
    e2e_env.brokers = env_or("IMTASK_KAFKA_BROKERS", "127.0.0.1:19092");
    e2e_env.imrepo_addr = env_or("IMTASK_IMREPO_ADDR", "127.0.0.1:19500");
    e2e_env.imrepo_admin = env_or("IMTASK_IMREPO_ADMIN", "http://127.0.0.1:19501");
    e2e_env.moderation = env_or("IMTASK_MODERATION_ADDR", "http://127.0.0.1:19510");
    e2e_env.audit_bin = audit_bin;
    snprintf(e2e_env.tmp, sizeof(e2e_env.tmp), "%s/audit-e2e-%d",
             env_or("TEST_TMPDIR", env_or("TMPDIR", "/tmp")), (int)getpid());
    mkdir(e2e_env.tmp, 0755);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- HTTP (admin endpoints, /metrics) ------------------------------------ */

int e2e_http(const char *method, const char *url, const char *body, char *out, size_t outlen)
{
    long code = 0;
    char *r = ts_http(method, url, body, 10000, &code);
    if (out && outlen)
        snprintf(out, outlen, "%s", r ? r : "");
    free(r);
    return (int)code;
}

void e2e_scenario_put(e2e_case_t *c, const char *json)
{
    char url[512], out[2048];
    snprintf(url, sizeof(url), "%s/admin/scenarios/%s", e2e_env.moderation, c->scenario);
    int st = e2e_http("PUT", url, json, out, sizeof(out));
    CHECK(st == 200,
          "moderation double %s: PUT scenario: HTTP %d %s (is the stack up? "
          "scripts/stack.sh up)",
          e2e_env.moderation, st, out);
}

void e2e_scenario_patch(e2e_case_t *c, const char *json)
{
    char url[512], out[2048];
    snprintf(url, sizeof(url), "%s/admin/scenarios/%s", e2e_env.moderation, c->scenario);
    int st = e2e_http("PATCH", url, json, out, sizeof(out));
    CHECK(st == 200, "PATCH scenario: HTTP %d %s", st, out);
}

void e2e_scenario_outage(e2e_case_t *c, const char *mode)
{
    char url[512], out[2048];
    snprintf(url, sizeof(url), "%s/admin/scenarios/%s/outage%s%s", e2e_env.moderation, c->scenario,
             mode ? "?mode=" : "", mode ? mode : "");
    int st = e2e_http(mode ? "POST" : "DELETE", url, NULL, out, sizeof(out));
    CHECK(st == 200, "outage: HTTP %d %s", st, out);
}

double e2e_scenario_stat(e2e_case_t *c, const char *path)
{
    char url[512], out[8192];
    snprintf(url, sizeof(url), "%s/admin/scenarios/%s/stats", e2e_env.moderation, c->scenario);
    CHECK(e2e_http("GET", url, NULL, out, sizeof(out)) == 200, "scenario stats: %s", out);
    cJSON *j = cJSON_Parse(out);
    const cJSON *n = j;
    char key[128];
    const char *p = path;
    while (n && *p) {
        size_t l = strcspn(p, ".");
        snprintf(key, sizeof(key), "%.*s", (int)l, p);
        n = cJSON_GetObjectItemCaseSensitive(n, key);
        p += l + (p[l] == '.');
    }
    double v = cJSON_IsNumber(n) ? n->valuedouble : 0;
    cJSON_Delete(j);
    return v;
}

/* ---- Kafka ---------------------------------------------------------------- */

static rd_kafka_t *kafka_new(rd_kafka_type_t type, const char *const *kv)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", e2e_env.brokers, err, sizeof(err)) ==
              RD_KAFKA_CONF_OK,
          "%s", err);
    for (; kv && kv[0]; kv += 2)
        CHECK(rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)) == RD_KAFKA_CONF_OK, "%s: %s",
              kv[0], err);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    CHECK(rk != NULL, "rd_kafka_new: %s", err);
    return rk;
}

static void topics_create(e2e_case_t *c)
{
    char err[512];
    const char *names[] = {c->topic_task, c->topic_retry, c->topic_dlq, c->topic_result};
    const int parts[] = {3, 1, 1, 2};
    CHECK(ts_kafka_create(e2e_env.brokers, names, parts, 4, err, sizeof(err)) == 0,
          "topics of case %s: %s", c->tag, err);
}

static void topics_delete(e2e_case_t *c)
{
    const char *names[] = {c->topic_task, c->topic_retry, c->topic_dlq, c->topic_result};
    char what[64];
    snprintf(what, sizeof(what), "case %s", c->tag);
    ts_kafka_delete(e2e_env.brokers, names, 4, c->group, what);
}

void e2e_produce_task(e2e_case_t *c, const char *task_id, const char *message_id,
                      const char *content, int kind, const char *sender)
{
    Imtask__V1__AuditTask at = IMTASK__V1__AUDIT_TASK__INIT;
    uint8_t payload[16384];
    task_t t;
    uint8_t *val = NULL;
    size_t vlen;
    at.message_id = (char *)(message_id ? message_id : "");
    at.content = (char *)(content ? content : "");
    at.kind = (Imtask__V1__ContentKind)kind;
    at.sender_id = (char *)(sender ? sender : "");
    at.conversation_id = (char *)"group:g-e2e";
    size_t plen = imtask__v1__audit_task__get_packed_size(&at);
    CHECK(plen <= sizeof(payload), "payload too big");
    imtask__v1__audit_task__pack(&at, payload);
    memset(&t, 0, sizeof(t));
    snprintf(t.task_id, sizeof(t.task_id), "%s", task_id);
    snprintf(t.task_type, sizeof(t.task_type), "content_audit");
    task_trace_id_new(t.trace_id);
    task_traceparent_new(t.trace_id, t.traceparent);
    t.created_at_ms = wall_ms();
    t.payload = payload;
    t.payload_len = plen;
    CHECK(task_encode(&t, &val, &vlen) == 0, "task_encode");
    const char *key = message_id && *message_id ? message_id : task_id;
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    rd_kafka_header_add(h, HDR_TASK_TYPE, -1, "content_audit", -1);
    rd_kafka_header_add(h, HDR_TASK_ID, -1, task_id, -1);
    rd_kafka_header_add(h, HDR_TRACEPARENT, -1, t.traceparent, -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        c->producer, RD_KAFKA_V_TOPIC(c->topic_task), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE(val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    free(val);
    if (e)
        rd_kafka_headers_destroy(h);
    CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
    rd_kafka_poll(c->producer, 0);
}

void e2e_produce_flush(e2e_case_t *c)
{
    CHECK(rd_kafka_flush(c->producer, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR, "flush");
}

static void hdr(const rd_kafka_message_t *m, const char *name, char *out, size_t len)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t n;
    out[0] = '\0';
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &n))
        return;
    snprintf(out, len, "%.*s", (int)n, (const char *)v);
}

int e2e_read_topic(const char *topic, e2e_rec_t *recs, int max, int want, int timeout_s)
{
    char group[200];
    snprintf(group, sizeof(group), "e2e-reader-%d-%lld", (int)getpid(), (long long)wall_ms());
    const char *kv[] = {"group.id", group, "enable.auto.commit", "false", NULL};
    rd_kafka_t *rk = kafka_new(RD_KAFKA_CONSUMER, kv);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    CHECK(rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0 && md->topic_cnt == 1, "metadata of %s",
          topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(l, topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0;
    bool is_result = strstr(topic, "-result") != NULL;
    for (int64_t end = e2e_now_ms() + (int64_t)timeout_s * 1000;
         n < want && n < max && e2e_now_ms() < end;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        e2e_rec_t *r = &recs[n++];
        memset(r, 0, sizeof(*r));
        snprintf(r->key, sizeof(r->key), "%.*s", (int)m->key_len, (const char *)m->key);
        hdr(m, HDR_TASK_ID, r->task_id, sizeof(r->task_id));
        hdr(m, HDR_DLQ_ERROR_KIND, r->dlq_kind, sizeof(r->dlq_kind));
        hdr(m, HDR_DLQ_ERROR_MESSAGE, r->dlq_message, sizeof(r->dlq_message));
        hdr(m, HDR_LAST_ERROR, r->last_error, sizeof(r->last_error));
        char due[32];
        hdr(m, HDR_RETRY_DUE, due, sizeof(due));
        r->retry_due_ms = atoll(due);
        r->timestamp = rd_kafka_message_timestamp(m, NULL);
        if (is_result) {
            r->result = imtask__v1__audit_result__unpack(NULL, m->len, m->payload);
            CHECK(r->result != NULL, "a record of %s is not an AuditResult", topic);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

void e2e_recs_free(e2e_rec_t *recs, int n)
{
    for (int i = 0; i < n; i++) {
        if (recs[i].result)
            imtask__v1__audit_result__free_unpacked(recs[i].result, NULL);
        recs[i].result = NULL;
    }
}

int64_t e2e_topic_count(const char *topic)
{
    rd_kafka_t *rk = kafka_new(RD_KAFKA_PRODUCER, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int64_t sum = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0 && md->topic_cnt == 1) {
        for (int i = 0; i < md->topics[0].partition_cnt; i++) {
            int64_t lo, hi;
            if (rd_kafka_query_watermark_offsets(rk, topic, md->topics[0].partitions[i].id, &lo,
                                                 &hi, 5000) == 0)
                sum += hi;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return sum;
}

/* ---- im-repo ---------------------------------------------------------------- */

void e2e_message_id(char *out, size_t len)
{
    uint32_t r;
    CHECK(getrandom(&r, sizeof(r), 0) == sizeof(r), "getrandom");
    snprintf(out, len, "m%u", 10000000u + r % 890000000u);
}

int e2e_audit_status(e2e_case_t *c, const char *message_id)
{
    ImRepo__V1__GetMessageRequest req = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    ImRepo__V1__GetMessageResponse *resp = NULL;
    repo_status_t st;
    req.message_id = (char *)message_id;
    if (repo_get_message(c->repo, &req, NULL, &resp, &st) != REPO_ERR_OK)
        return -1;
    int s = resp->message ? (int)resp->message->audit_status : -1;
    repo_response_free(&resp->base);
    return s;
}

void e2e_delete_message(e2e_case_t *c, const char *message_id)
{
    ImRepo__V1__DeleteMessagesRequest req = IM_REPO__V1__DELETE_MESSAGES_REQUEST__INIT;
    ImRepo__V1__DeleteMessagesResponse *resp = NULL;
    repo_status_t st;
    char *ids[] = {(char *)message_id};
    req.n_message_ids = 1;
    req.message_ids = ids;
    CHECK(repo_delete_messages(c->repo, &req, NULL, &resp, &st) == REPO_ERR_OK,
          "DeleteMessages: %s", st.message);
    repo_response_free(&resp->base);
}

int64_t e2e_listener_calls(e2e_case_t *c)
{
    char url[256], out[16384];
    snprintf(url, sizeof(url), "%s/stats", e2e_env.imrepo_admin);
    CHECK(e2e_http("GET", url, NULL, out, sizeof(out)) == 200, "im-repo /stats");
    cJSON *j = cJSON_Parse(out);
    const cJSON *bl = cJSON_GetObjectItemCaseSensitive(j, "by_listener");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(bl, c->repo_listener);
    int64_t v = cJSON_IsNumber(n) ? (int64_t)n->valuedouble : 0;
    cJSON_Delete(j);
    return v;
}

/* ---- the case -------------------------------------------------------------- */

void e2e_case_open(e2e_case_t *c, const char *tag)
{
    char url[256], out[1024], err[256];
    memset(c, 0, sizeof(*c));
    snprintf(c->tag, sizeof(c->tag), "%s", tag);
    snprintf(c->base, sizeof(c->base), "imtask-it-audit-%s-%lld-%d", tag,
             (long long)(wall_ms() / 1000), (int)getpid());
    snprintf(c->topic_task, sizeof(c->topic_task), "%s-task", c->base);
    snprintf(c->topic_retry, sizeof(c->topic_retry), "%s-retry", c->base);
    snprintf(c->topic_dlq, sizeof(c->topic_dlq), "%s-dlq", c->base);
    snprintf(c->topic_result, sizeof(c->topic_result), "%s-result", c->base);
    snprintf(c->group, sizeof(c->group), "%s-group", c->base);
    snprintf(c->scenario, sizeof(c->scenario), "e2e-%s-%d-%lld", tag, (int)getpid(),
             (long long)(wall_ms() % 100000000));
    snprintf(c->dir, sizeof(c->dir), "%s/%s", e2e_env.tmp, tag);
    mkdir(c->dir, 0755);
    c->child = -1;

    /* our own im-repo listener, so its call count is ours alone */
    snprintf(url, sizeof(url), "%s/spawn", e2e_env.imrepo_admin);
    int st = e2e_http("POST", url, NULL, out, sizeof(out));
    CHECK(st == 200, "im-repo double %s: /spawn: HTTP %d (is the stack up?)", e2e_env.imrepo_admin,
          st);
    cJSON *j = cJSON_Parse(out);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "addr");
    CHECK(cJSON_IsString(a), "/spawn answer: %s", out);
    snprintf(c->repo_listener, sizeof(c->repo_listener), "%s", a->valuestring);
    cJSON_Delete(j);

    repo_conf_t *rc = repo_conf_new();
    CHECK(repo_conf_set(rc, "endpoints", e2e_env.imrepo_addr, err, sizeof(err)) == 0, "%s", err);
    CHECK(repo_client_new(&c->repo, rc, err, sizeof(err)) == 0, "repo client: %s", err);

    topics_create(c);
    const char *kv[] = {"linger.ms", "5", "enable.idempotence", "true", NULL};
    c->producer = kafka_new(RD_KAFKA_PRODUCER, kv);
}

void e2e_case_close(e2e_case_t *c)
{
    char url[512];
    if (c->child > 0) {
        kill(c->child, SIGKILL);
        waitpid(c->child, NULL, 0);
        c->child = -1;
    }
    if (!c->passed && c->child_log[0]) {
        fprintf(stderr, "==== case %s: imtask-audit log %s (last 60 lines):\n", c->tag,
                c->child_log);
        ts_print_tail(c->child_log, 60);
    }
    if (c->producer)
        rd_kafka_destroy(c->producer);
    c->producer = NULL;
    repo_client_destroy(&c->repo);
    if (c->topic_task[0])
        topics_delete(c);
    if (c->scenario[0]) {
        snprintf(url, sizeof(url), "%s/admin/scenarios/%s", e2e_env.moderation, c->scenario);
        e2e_http("DELETE", url, NULL, NULL, 0);
    }
    if (c->repo_listener[0]) {
        snprintf(url, sizeof(url), "%s/close?addr=%s", e2e_env.imrepo_admin, c->repo_listener);
        e2e_http("POST", url, NULL, NULL, 0);
    }
    memset(c, 0, sizeof(*c));
}

void e2e_child_start(e2e_case_t *c, const e2e_child_opts_t *o)
{
    char cfg[800];
    const char *m = e2e_env.moderation;
    CHECK(c->child <= 0, "a child is running already");
    snprintf(cfg, sizeof(cfg), "%s/audit.yaml", c->dir);
    snprintf(c->child_log, sizeof(c->child_log), "%s/audit.log", c->dir);
    c->metrics_port = ts_free_port();
    CHECK(c->metrics_port > 0, "no free port");
    FILE *f = fopen(cfg, "w");
    CHECK(f != NULL, "%s: %s", cfg, strerror(errno));
    fprintf(f,
            "log:\n  level: debug\n"
            "http:\n  listen: 127.0.0.1:%d\n"
            "kafka:\n  brokers: %s\n  session.timeout.ms: 6000\n  heartbeat.interval.ms: 200\n"
            "  auto.commit.interval.ms: 200\n"
            "shutdown:\n  grace: 10s\n"
            "consumer:\n  group_id: %s\n  topic: %s\n  retry_topic: %s\n  dlq_topic: %s\n"
            "  workers: %d\n"
            "retry_content_audit:\n%s"
            "audit:\n  provider: %s\n  result_topic: %s\n  on_exhausted: %s\n"
            "imrepo:\n  endpoints: %s\n  default_timeout: 3s\n"
            "audit_http:\n  timeout: %s\n  max_in_flight: 16\n"
            "audit_breaker:\n%s"
            "audit_generic:\n  url: %s/s/%s/generic/moderate\n"
            "  body_template: '{\"text\":{{content}},\"kind\":{{kind}},\"data_id\":{{data_id}}}'\n"
            "  decision_path: result.decision\n  score_path: result.score\n"
            "  labels_path: result.labels\n"
            "audit_tencent:\n  url: %s/s/%s/\n  secret_id: AKIDe2etest\n"
            "  secret_key: imtask-moderation-double-secret\n"
            "audit_openai:\n  url: %s/s/%s/v1/moderations\n  api_key: sk-e2e-test\n",
            c->metrics_port, e2e_env.brokers, c->group, c->topic_task, c->topic_retry, c->topic_dlq,
            o->workers ? o->workers : 8,
            o->retry_yaml ? o->retry_yaml
                          : "  local_attempts: 2\n  local_backoff_initial: 50ms\n"
                            "  local_backoff_max: 200ms\n  max_attempts: 20\n"
                            "  backoff_initial: 300ms\n  backoff_max: 1s\n",
            o->provider, c->topic_result, o->on_exhausted ? o->on_exhausted : "review",
            c->repo_listener, o->http_timeout ? o->http_timeout : "2s",
            o->breaker_yaml ? o->breaker_yaml
                            : "  failure_threshold: 5\n  open_for: 500ms\n  open_max: 2s\n"
                              "  half_open_probes: 2\n  retry_delay: 1s\n",
            m, c->scenario, m, c->scenario, m, c->scenario);
    CHECK(fclose(f) == 0, "%s", cfg);

    char *argv[] = {(char *)e2e_env.audit_bin, (char *)"--config", cfg, NULL};
    pid_t pid = ts_spawn(argv[0], argv, NULL, c->child_log, false);
    CHECK(pid >= 0, "fork");
    c->child = pid;
}

void e2e_child_stop(e2e_case_t *c)
{
    int status = 0;
    if (c->child <= 0)
        return;
    kill(c->child, SIGTERM);
    for (int64_t end = e2e_now_ms() + 30000; e2e_now_ms() < end;) {
        pid_t w = waitpid(c->child, &status, WNOHANG);
        if (w == c->child) {
            c->child = -1;
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "imtask-audit ended with status %#x", status);
            return;
        }
        e2e_sleep_ms(100);
    }
    fail_msg("imtask-audit did not stop within 30 s of SIGTERM");
}

double e2e_metric(e2e_case_t *c, const char *series)
{
    return ts_metric(c->metrics_port, series);
}
