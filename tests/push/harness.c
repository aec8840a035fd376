/* harness.c: topics, imtask-push children, HTTP and topic reading for the
 * push integration tests (see harness.h). */
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "tests/support/support.h"

ph_env_t ph_env;
ph_case_t ph_case;
static volatile pid_t g_child;

int64_t ph_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ph_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ph_sleep_ms(int64_t ms)
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

/* ---- HTTP ---------------------------------------------------------------------- */

char *ph_http(const char *url, const char *body, long *status)
{
    char *r = ts_http(NULL, url, body, 10000, status);
    return r ? r : strdup(""); /* no answer: an empty body, status 0 */
}

cJSON *ph_json(const char *url, const char *body)
{
    long st;
    char *r = ph_http(url, body, &st);
    cJSON *j = st == 200 ? cJSON_Parse(r) : NULL;
    if (!j)
        fail_msg("%s: HTTP %ld: %.300s", url, st, r);
    free(r);
    return j;
}

static void urlenc(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
    }
    out[o] = '\0';
}

cJSON *ph_stats(const char *provider, const char *match)
{
    char url[1024], m[512];
    urlenc(match, m, sizeof(m));
    snprintf(url, sizeof(url), "%s/stats?provider=%s&match=%s", ph_env.push_admin, provider, m);
    return ph_json(url, NULL);
}

cJSON *ph_requests(const char *provider, const char *match)
{
    char url[1024], m[512];
    urlenc(match, m, sizeof(m));
    snprintf(url, sizeof(url), "%s/requests?provider=%s&match=%s&limit=100000", ph_env.push_admin,
             provider, m);
    return ph_json(url, NULL);
}

void ph_script(const char *provider, const char *token, const char *spec)
{
    char url[512], body[1024];
    snprintf(url, sizeof(url), "%s/script?provider=%s", ph_env.push_admin, provider);
    snprintf(body, sizeof(body), "{\"token\":\"%s\",\"spec\":\"%s\"}", token, spec);
    cJSON_Delete(ph_json(url, body));
}

double ph_metric(ph_case_t *c, const char *prefix)
{
    char url[128];
    long st;
    double sum = 0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", c->metrics_port);
    char *m = ph_http(url, NULL, &st);
    size_t pl = strlen(prefix);
    for (char *line = m; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(line, prefix, pl) == 0 && (line[pl] == ' ' || line[pl] == '{')) {
            char *sp = strrchr(line, ' ');
            sum += sp ? strtod(sp + 1, NULL) : 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(m);
    return sum;
}

void ph_wait_metric(ph_case_t *c, const char *prefix, double want, int timeout_s)
{
    int64_t until = ph_mono_ms() + timeout_s * 1000LL;
    double v = 0;
    while ((v = ph_metric(c, prefix)) < want) {
        if (c->pid > 0 && waitpid(c->pid, &c->status, WNOHANG) == c->pid) {
            c->running = false;
            fail_msg("imtask-push exited while waiting for %s >= %g (log %s)", prefix, want,
                     c->log);
        }
        if (ph_mono_ms() > until)
            fail_msg("%s is %g after %d s, want %g (log %s)", prefix, v, timeout_s, want, c->log);
        ph_sleep_ms(100);
    }
}

/* ---- Kafka --------------------------------------------------------------------- */

static rd_kafka_t *kafka_new(rd_kafka_type_t type, const char *const *kv)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", ph_env.brokers, err, sizeof(err));
    for (; kv && kv[0]; kv += 2) {
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            fail_msg("%s: %s", kv[0], err);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    PH_CHECK(rk != NULL, "rd_kafka_new: %s", err);
    return rk;
}

static void topics_create(ph_case_t *c)
{
    char err[512];
    const char *topics[] = {c->topic[0], c->topic[1], c->topic[2]};
    const int parts[] = {3, 1, 1};
    PH_CHECK(ts_kafka_create(ph_env.brokers, topics, parts, 3, err, sizeof(err)) == 0,
             "topics of %s: %s", c->tag, err);
}

void ph_produce(ph_case_t *c, const char *task_id, const Imtask__V1__PushTask *pt)
{
    task_t t;
    uint8_t *val = NULL, *pl;
    size_t vlen, plen = imtask__v1__push_task__get_packed_size(pt);
    char err[256];
    static const char *const kv[] = {"enable.idempotence", "true", "acks", "all", NULL};
    pl = malloc(plen + 1);
    imtask__v1__push_task__pack(pt, pl);
    memset(&t, 0, sizeof(t));
    snprintf(t.task_id, sizeof(t.task_id), "%s", task_id);
    snprintf(t.task_type, sizeof(t.task_type), "push");
    task_trace_id_new(t.trace_id);
    task_traceparent_new(t.trace_id, t.traceparent);
    t.created_at_ms = ph_wall_ms();
    t.payload = pl;
    t.payload_len = plen;
    PH_CHECK(task_encode(&t, &val, &vlen) == 0, "task_encode");
    rd_kafka_t *rk = kafka_new(RD_KAFKA_PRODUCER, kv);
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    rd_kafka_header_add(h, HDR_TASK_TYPE, -1, "push", -1);
    rd_kafka_header_add(h, HDR_TASK_ID, -1, task_id, -1);
    rd_kafka_header_add(h, HDR_TRACEPARENT, -1, t.traceparent, -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(c->topic[0]), RD_KAFKA_V_KEY(task_id, strlen(task_id)),
        RD_KAFKA_V_VALUE(val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(h);
    PH_CHECK(e == 0, "produce: %s", rd_kafka_err2str(e));
    PH_CHECK(rd_kafka_flush(rk, 30000) == 0 && rd_kafka_outq_len(rk) == 0, "flush");
    (void)err;
    rd_kafka_destroy(rk);
    free(val);
    free(pl);
}

void ph_device(Imtask__V1__PushDevice *d, Imtask__V1__PushPlatform p, const char *token,
               const char *app_id)
{
    imtask__v1__push_device__init(d);
    d->platform = p;
    d->token = (char *)token;
    d->app_id = (char *)app_id;
    d->device_id = (char *)token;
    d->user_id = (char *)"u-explicit";
}

static void hdr_copy(const rd_kafka_message_t *m, const char *name, char *out, size_t cap)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t len;
    out[0] = '\0';
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &len))
        return;
    snprintf(out, cap, "%.*s", (int)len, (const char *)v);
}

typedef struct {
    ph_rec_t *out;
    int n, cap;
} ph_recs_t;

static void ph_collect(void *ctx, const rd_kafka_message_t *m)
{
    ph_recs_t *l = ctx;
    task_t t;
    void *owner = NULL;
    char err[256];
    if (l->n == l->cap) {
        l->cap *= 2;
        l->out = realloc(l->out, (size_t)l->cap * sizeof(*l->out));
        PH_CHECK(l->out != NULL, "out of memory");
    }
    ph_rec_t *r = &l->out[l->n++];
    memset(r, 0, sizeof(*r));
    r->ts = rd_kafka_message_timestamp(m, NULL);
    hdr_copy(m, HDR_TASK_ID, r->id, sizeof(r->id));
    hdr_copy(m, HDR_DLQ_ERROR_KIND, r->dlq_kind, sizeof(r->dlq_kind));
    hdr_copy(m, HDR_DLQ_ERROR_MESSAGE, r->dlq_msg, sizeof(r->dlq_msg));
    if (task_decode(m->payload, m->len, &t, &owner, err, sizeof(err)) == 0) {
        r->pt = imtask__v1__push_task__unpack(NULL, t.payload_len, t.payload);
        task_decoded_free(owner);
    }
}

ph_rec_t *ph_read_topic(ph_case_t *c, int which, int *n)
{
    char err[512];
    const char *topic = c->topic[which];
    int parts = which == 0 ? 3 : 1;
    ph_recs_t l = {.cap = 64};
    l.out = calloc((size_t)l.cap, sizeof(*l.out));
    PH_CHECK(l.out != NULL, "out of memory");
    PH_CHECK(ts_kafka_read(ph_env.brokers, &topic, &parts, 1, true, ph_collect, &l, 30, err,
                           sizeof(err)) == 0,
             "reading %s: %s", topic, err);
    *n = l.n;
    return l.out;
}

void ph_recs_free(ph_rec_t *r, int n)
{
    for (int i = 0; r && i < n; i++) {
        if (r[i].pt)
            imtask__v1__push_task__free_unpacked(r[i].pt, NULL);
    }
    free(r);
}

/* ---- client certificates ------------------------------------------------------------ */

static void ssl_fail(const char *what)
{
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    ERR_clear_error();
    fail_msg("%s: %s", what, buf);
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e || X509_add_ext(x, e, -1) != 1)
        ssl_fail("certificate extension");
    X509_EXTENSION_free(e);
}

void ph_make_client_cert(const char *cert_path, const char *key_path, const char *cn,
                         const char *ca_cert, const char *ca_key)
{
    X509 *ca = NULL;
    EVP_PKEY *cak = NULL, *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    static long serial = 1;
    if (!k || !x)
        ssl_fail("a P-256 key");
    if (ca_cert) {
        FILE *f = fopen(ca_cert, "r");
        PH_CHECK(f != NULL, "%s: %s", ca_cert, strerror(errno));
        ca = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        f = fopen(ca_key, "r");
        PH_CHECK(f != NULL, "%s: %s", ca_key, strerror(errno));
        cak = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
        fclose(f);
        if (!ca || !cak)
            ssl_fail("the test CA");
    }
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(ph_wall_ms() % 1000000000) * 100 + serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"imtask push_test",
                               -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name);
    add_ext(x, ca ? ca : x, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, ca ? ca : x, NID_key_usage, "critical,digitalSignature");
    add_ext(x, ca ? ca : x, NID_ext_key_usage, "clientAuth");
    if (X509_sign(x, ca ? cak : k, EVP_sha256()) <= 0)
        ssl_fail("signing the certificate");
    FILE *f = fopen(cert_path, "w");
    PH_CHECK(f != NULL, "%s: %s", cert_path, strerror(errno));
    PH_CHECK(PEM_write_X509(f, x) == 1 && fclose(f) == 0, "%s: write", cert_path);
    int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    PH_CHECK(fd >= 0 && (f = fdopen(fd, "w")) != NULL, "%s: %s", key_path, strerror(errno));
    PH_CHECK(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1 && fclose(f) == 0,
             "%s: write", key_path);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(k);
    EVP_PKEY_free(cak);
}

/* ---- children -------------------------------------------------------------------- */

void ph_case_open(ph_case_t *c, const char *name)
{
    static const char *const sfx[] = {"task", "retry", "dlq"};
    static int seq;
    memset(c, 0, sizeof(*c));
    snprintf(c->tag, sizeof(c->tag), "T%d%c%d", (int)getpid() % 100000, 'a' + seq % 26,
             (int)(ph_wall_ms() / 1000 % 100000));
    seq++;
    snprintf(c->dir, sizeof(c->dir), "%s/%s", ph_env.tmp, name);
    mkdir(c->dir, 0755);
    char tag[sizeof(c->tag)], dir[sizeof(c->dir)];
    memcpy(tag, c->tag, sizeof(tag));
    memcpy(dir, c->dir, sizeof(dir));
    for (int i = 0; i < 3; i++)
        snprintf(c->topic[i], sizeof(c->topic[i]), "imtask-it-push-%s-%s-%s", name, tag, sfx[i]);
    snprintf(c->group, sizeof(c->group), "imtask-it-push-%s-%s", name, tag);
    snprintf(c->cfg, sizeof(c->cfg), "%s/push.yaml", dir);
    snprintf(c->log, sizeof(c->log), "%s/push.log", dir);
    topics_create(c);
}

void ph_case_close(ph_case_t *c)
{
    if (c->running) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &c->status, 0);
        c->running = false;
        g_child = 0;
    }
    if (!c->passed && c->log[0]) {
        fprintf(stderr, "==== case %s: imtask-push log %s (last 60 lines):\n", c->tag, c->log);
        ts_print_tail(c->log, 60);
    }
    if (c->topic[0][0]) {
        const char *topics[] = {c->topic[0], c->topic[1], c->topic[2]};
        char what[80];
        snprintf(what, sizeof(what), "case %s", c->tag);
        ts_kafka_delete(ph_env.brokers, topics, 3, c->group, what);
    }
    memset(c, 0, sizeof(*c));
}

static bool has_section(const char *yaml, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "%s:\n", name);
    if (!yaml)
        return false;
    if (strncmp(yaml, key, strlen(key)) == 0)
        return true;
    char nkey[70];
    snprintf(nkey, sizeof(nkey), "\n%s", key);
    return strstr(yaml, nkey) != NULL;
}

static void write_config(ph_case_t *c, const ph_child_opts_t *o)
{
    FILE *f = fopen(c->cfg, "w");
    const char *x = o ? o->extra_yaml : NULL;
    PH_CHECK(f != NULL, "%s: %s", c->cfg, strerror(errno));
    fprintf(f,
            "log:\n  level: info\n"
            "http:\n  listen: 127.0.0.1:0\n"
            "kafka:\n  brokers: %s\n  session.timeout.ms: 6000\n  heartbeat.interval.ms: 500\n"
            "  auto.commit.interval.ms: 200\n"
            "shutdown:\n  grace: 10s\n"
            "consumer:\n  group_id: %s\n  topic: %s\n  retry_topic: %s\n  dlq_topic: %s\n"
            "  workers: %d\n"
            "imrepo:\n  endpoints: %s\n",
            ph_env.brokers, c->group, c->topic[0], c->topic[1], c->topic[2],
            o && o->workers ? o->workers : 4, ph_env.imrepo_addr);
    if (!has_section(x, "retry_push"))
        fprintf(f, "retry_push:\n  local_attempts: 3\n  local_backoff_initial: 100ms\n"
                   "  local_backoff_max: 5s\n  backoff_initial: 500ms\n  backoff_max: 3s\n"
                   "  max_attempts: 5\n");
    if (!has_section(x, "push"))
        fprintf(f, "push:\n  followup_delay: 200ms\n");
    if (!has_section(x, "apns"))
        fprintf(f, "apns:\n  endpoint: %s\n  sandbox_endpoint: %s\n%s%s%s  apps: [main]\n",
                ph_env.apns_url, ph_env.apns_url, o && o->apns_without_ca ? "" : "  ca_file: ",
                o && o->apns_without_ca ? "" : ph_env.ca_file, o && o->apns_without_ca ? "" : "\n");
    if (!has_section(x, "apns_app_main"))
        fprintf(f,
                "apns_app_main:\n  topics: [com.gochat.im, \"com.test.*\"]\n"
                "  team_id: TESTTEAM01\n  key_id: TESTKEY001\n  key_file: %s\n",
                ph_env.apns_key);
    if (!has_section(x, "fcm"))
        fprintf(f, "fcm:\n  endpoint: %s\n  ca_file: %s\n  apps: [main]\n", ph_env.fcm_url,
                ph_env.ca_file);
    if (!has_section(x, "fcm_app_main"))
        fprintf(f, "fcm_app_main:\n  app_ids: [\"*\"]\n  credentials_file: %s\n", ph_env.fcm_sa);
    if (x)
        fputs(x, f);
    PH_CHECK(fclose(f) == 0, "%s", c->cfg);
}

static void spawn(ph_case_t *c)
{
    char *argv[] = {ph_env.binary, (char *)"--config", c->cfg, NULL};
    c->metrics_port = 0;
    pid_t pid = ts_spawn(ph_env.binary, argv, NULL, c->log, true); /* this run's log only */
    PH_CHECK(pid >= 0, "fork: %s", strerror(errno));
    c->pid = pid;
    c->running = true;
    g_child = pid;
}

bool ph_log_has(ph_case_t *c, const char *text)
{
    return ts_file_has(c->log, text);
}

void ph_child_start(ph_case_t *c, const ph_child_opts_t *o)
{
    if (o && o->full_config) {
        FILE *f = fopen(c->cfg, "w");
        PH_CHECK(f != NULL, "%s", c->cfg);
        fputs(o->full_config, f);
        fclose(f);
    } else {
        write_config(c, o);
    }
    spawn(c);
    /* its metrics port, from its log, then until it joined the group */
    int64_t until = ph_mono_ms() + 60000;
    while (c->metrics_port == 0) {
        FILE *f = fopen(c->log, "r");
        char line[4096];
        while (f && fgets(line, sizeof(line), f)) {
            char *p = strstr(line, "(port ");
            if (p && strstr(line, "started"))
                c->metrics_port = atoi(p + 6);
        }
        if (f)
            fclose(f);
        if (waitpid(c->pid, &c->status, WNOHANG) == c->pid) {
            c->running = false;
            fail_msg("imtask-push exited at start (log %s)", c->log);
        }
        PH_CHECK(ph_mono_ms() < until, "imtask-push did not start within 60 s (log %s)", c->log);
        ph_sleep_ms(50);
    }
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", c->metrics_port);
    /* /readyz answers 200 before the runtime registered its check (while the
     * processor starts): wait for the consumer too */
    for (;;) {
        long st;
        free(ph_http(url, NULL, &st));
        if (st == 200 && ph_log_has(c, "consuming as group"))
            break;
        PH_CHECK(ph_mono_ms() < until, "imtask-push not ready within 60 s (log %s)", c->log);
        PH_CHECK(waitpid(c->pid, &c->status, WNOHANG) != c->pid, "imtask-push exited (log %s)",
                 c->log);
        ph_sleep_ms(100);
    }
}

int ph_child_run_to_exit(ph_case_t *c, const char *cfg_text, int timeout_s)
{
    FILE *f = fopen(c->cfg, "w");
    PH_CHECK(f != NULL, "%s", c->cfg);
    fputs(cfg_text, f);
    fclose(f);
    spawn(c);
    int64_t until = ph_mono_ms() + timeout_s * 1000LL;
    while (waitpid(c->pid, &c->status, WNOHANG) != c->pid) {
        if (ph_mono_ms() > until) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &c->status, 0);
            c->running = false;
            fail_msg("imtask-push did not exit within %d s (log %s)", timeout_s, c->log);
        }
        ph_sleep_ms(50);
    }
    c->running = false;
    g_child = 0;
    return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
}

void ph_child_stop(ph_case_t *c)
{
    if (!c->running)
        return;
    kill(c->pid, SIGTERM);
    int64_t until = ph_mono_ms() + 30000;
    while (waitpid(c->pid, &c->status, WNOHANG) != c->pid) {
        if (ph_mono_ms() > until) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &c->status, 0);
            break;
        }
        ph_sleep_ms(50);
    }
    c->running = false;
    g_child = 0;
}

/* ---- set-up ------------------------------------------------------------------------ */

static void on_signal(int sig)
{
    if (g_child > 0)
        kill(g_child, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void copy_str(const cJSON *o, const char *key, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(out, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

int ph_setup(const char *binary)
{
    char err[512];
    long st;
    ph_env.brokers = env_or("IMTASK_KAFKA_BROKERS", "127.0.0.1:19092");
    ph_env.imrepo_addr = env_or("IMTASK_IMREPO_ADDR", "127.0.0.1:19500");
    ph_env.push_admin = env_or("IMTASK_PUSH_ADMIN", "http://127.0.0.1:19602");
    if (!binary || !realpath(binary, ph_env.binary) || access(ph_env.binary, X_OK) != 0) {
        fprintf(stderr, "push_test: usage: push_test <path of imtask-push>\n");
        return -1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char url[256];
    snprintf(url, sizeof(url), "%s/info", ph_env.push_admin);
    char *info = ph_http(url, NULL, &st);
    cJSON *j = st == 200 ? cJSON_Parse(info) : NULL;
    free(info);
    if (!j) {
        fprintf(stderr,
                "push_test: the push doubles do not answer at %s: start the stack "
                "(bash scripts/stack.sh up)\n",
                ph_env.push_admin);
        return -1;
    }
    copy_str(j, "apns", ph_env.apns_url, sizeof(ph_env.apns_url));
    copy_str(j, "fcm", ph_env.fcm_url, sizeof(ph_env.fcm_url));
    copy_str(j, "token_uri", ph_env.token_uri, sizeof(ph_env.token_uri));
    copy_str(j, "ca_file", ph_env.ca_file, sizeof(ph_env.ca_file));
    copy_str(j, "apns_cert", ph_env.apns_cert_url, sizeof(ph_env.apns_cert_url));
    copy_str(j, "ca_key_file", ph_env.ca_key, sizeof(ph_env.ca_key));
    copy_str(j, "fcm_credentials_file", ph_env.fcm_sa, sizeof(ph_env.fcm_sa));
    const cJSON *keys = cJSON_GetObjectItem(j, "apns_keys");
    copy_str(cJSON_GetArrayItem(keys, 0), "key_file", ph_env.apns_key, sizeof(ph_env.apns_key));
    copy_str(cJSON_GetArrayItem(keys, 1), "key_file", ph_env.apns_key2, sizeof(ph_env.apns_key2));
    cJSON_Delete(j);

    repo_conf_t *rc = repo_conf_new();
    if (repo_conf_set(rc, "endpoints", ph_env.imrepo_addr, err, sizeof(err)) ||
        repo_client_new(&ph_env.repo, rc, err, sizeof(err))) {
        fprintf(stderr, "push_test: im-repo client: %s\n", err);
        repo_conf_destroy(rc);
        return -1;
    }
    snprintf(ph_env.tmp, sizeof(ph_env.tmp), "%s/push_test.XXXXXX", env_or("TEST_TMPDIR", "/tmp"));
    if (!mkdtemp(ph_env.tmp)) {
        fprintf(stderr, "push_test: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

void ph_teardown_all(void)
{
    repo_client_destroy(&ph_env.repo);
    curl_global_cleanup();
}
