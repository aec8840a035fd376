/* harness.c: see harness.h. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
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
#include "tests/support/support.h"

#define H_MAX_PIDS 16
#define H_CHILD_STOP_S 60

bool h_soft_fail;
const char *h_brokers;
char h_tmp[PATH_MAX];

static volatile pid_t h_pids[H_MAX_PIDS]; /* killed on a fatal signal */

void h_fail(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (h_soft_fail) {
        fprintf(stderr, "error: %s\n", buf);
        for (int i = 0; i < H_MAX_PIDS; i++) {
            if (h_pids[i] > 0)
                kill(h_pids[i], SIGKILL);
        }
        exit(1);
    }
    fail_msg("%s", buf);
    abort(); /* not reached */
}

int64_t h_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t h_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void h_pid_add(pid_t pid)
{
    for (int i = 0; i < H_MAX_PIDS; i++) {
        if (h_pids[i] == 0) {
            h_pids[i] = pid;
            return;
        }
    }
}

static void h_pid_del(pid_t pid)
{
    for (int i = 0; i < H_MAX_PIDS; i++) {
        if (h_pids[i] == pid)
            h_pids[i] = 0;
    }
}

static void h_on_signal(int sig)
{
    for (int i = 0; i < H_MAX_PIDS; i++) {
        if (h_pids[i] > 0)
            kill(h_pids[i], SIGKILL);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int h_setup(const char *what)
{
    h_brokers = getenv("IMTASK_KAFKA_BROKERS");
    if (!h_brokers || !*h_brokers) {
        fprintf(stderr,
                "%s: IMTASK_KAFKA_BROKERS is not set: start the stack (bash "
                "scripts/stack.sh up) and pass --test_env=IMTASK_KAFKA_BROKERS\n",
                what);
        return -1;
    }
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(h_tmp, sizeof(h_tmp), "%s/imtask-fanout-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(h_tmp)) {
        fprintf(stderr, "mkdtemp %s: %s\n", h_tmp, strerror(errno));
        return -1;
    }
    signal(SIGTERM, h_on_signal);
    signal(SIGINT, h_on_signal);
    signal(SIGHUP, h_on_signal);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    rd_kafka_t *rk = h_kafka_new(RD_KAFKA_PRODUCER, NULL);
    int64_t until = h_mono_ms() + 120000;
    for (;;) {
        const struct rd_kafka_metadata *md;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, 5000);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_metadata_destroy(md);
            break;
        }
        if (h_mono_ms() > until) {
            fprintf(stderr, "%s: the broker %s does not answer: %s\n", what, h_brokers,
                    rd_kafka_err2str(e));
            rd_kafka_destroy(rk);
            return -1;
        }
        h_sleep_ms(1000);
    }
    rd_kafka_destroy(rk);
    return 0;
}

/* ---- kafka ------------------------------------------------------------------- */

static void h_prod_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    h_prod_t *p = opaque;
    (void)rk;
    if (m->err) {
        if (p->failed++ == 0)
            snprintf(p->first_error, sizeof(p->first_error), "%s", rd_kafka_err2str(m->err));
    } else {
        p->delivered++;
    }
}

rd_kafka_t *h_kafka_new(rd_kafka_type_t type, const char *const *kv)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", h_brokers, err, sizeof(err)) !=
        RD_KAFKA_CONF_OK)
        h_fail("bootstrap.servers: %s", err);
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    for (; kv && kv[0]; kv += 2) {
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            h_fail("%s=%s: %s", kv[0], kv[1], err);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk)
        h_fail("rd_kafka_new: %s", err);
    return rk;
}

void h_topics_create(const char *const *names, const int *parts, int n)
{
    char err[512];
    H_CHECK(ts_kafka_create(h_brokers, names, parts, (size_t)n, err, sizeof(err)) == 0, "%s", err);
}

void h_topics_delete(const char *const *names, int n)
{
    if (n > 0)
        ts_kafka_delete(h_brokers, names, (size_t)n, NULL, "fan-out test");
}

void h_group_delete(const char *group)
{
    ts_kafka_delete(h_brokers, NULL, 0, group, "fan-out test");
}

void h_prod_open(h_prod_t *p)
{
    static const char *const kv[] = {"enable.idempotence", "true", "linger.ms", "5", NULL};
    char err[256];
    memset(p, 0, sizeof(*p));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", h_brokers, err, sizeof(err));
    for (const char *const *k = kv; *k; k += 2)
        rd_kafka_conf_set(conf, k[0], k[1], err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(conf, h_prod_dr);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    H_CHECK(p->rk != NULL, "producer: %s", err);
}

static void h_produce(h_prod_t *p, const char *topic, const char *key, rd_kafka_headers_t *h,
                      const void *v, size_t len)
{
    int64_t until = h_mono_ms() + 60000;
    for (;;) {
        rd_kafka_headers_t *hc = h ? rd_kafka_headers_copy(h) : NULL;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
            RD_KAFKA_V_VALUE((void *)v, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hc), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (hc)
            rd_kafka_headers_destroy(hc);
        H_CHECK(e == RD_KAFKA_RESP_ERR__QUEUE_FULL && h_mono_ms() < until, "produce to %s: %s",
                topic, rd_kafka_err2str(e));
        rd_kafka_poll(p->rk, 100);
    }
    if (h)
        rd_kafka_headers_destroy(h);
    p->queued++;
    rd_kafka_poll(p->rk, 0);
}

void h_prod_task(h_prod_t *p, const char *topic, const char *key, const char *type, const char *id,
                 const void *payload, size_t len)
{
    task_t t;
    uint8_t *buf;
    size_t blen;
    memset(&t, 0, sizeof(t));
    snprintf(t.task_id, sizeof(t.task_id), "%s", id);
    snprintf(t.task_type, sizeof(t.task_type), "%s", type);
    task_trace_id_new(t.trace_id);
    task_traceparent_new(t.trace_id, t.traceparent);
    t.created_at_ms = h_wall_ms();
    t.payload = payload;
    t.payload_len = len;
    H_CHECK(task_encode(&t, &buf, &blen) == 0, "task_encode");
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    rd_kafka_header_add(h, HDR_TASK_TYPE, -1, type, -1);
    rd_kafka_header_add(h, HDR_TASK_ID, -1, id, -1);
    rd_kafka_header_add(h, HDR_TRACEPARENT, -1, t.traceparent, -1);
    h_produce(p, topic, key, h, buf, blen);
    free(buf);
}

void h_prod_raw(h_prod_t *p, const char *topic, const char *key, const void *v, size_t len)
{
    h_produce(p, topic, key, NULL, v, len);
}

void h_prod_close(h_prod_t *p)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, 60000);
    H_CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "producer flush: %s (%d of %d delivered)",
            rd_kafka_err2str(e), p->delivered, p->queued);
    H_CHECK(p->failed == 0, "%d records not delivered, first: %s", p->failed, p->first_error);
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
}

void h_read_all(const char *const *topics, const int *parts, int n, h_msg_fn fn, void *ctx,
                int timeout_s)
{
    h_read_all_iso(topics, parts, n, fn, ctx, timeout_s, false);
}

void h_read_all_iso(const char *const *topics, const int *parts, int n, h_msg_fn fn, void *ctx,
                    int timeout_s, bool uncommitted)
{
    char err[512];
    if (ts_kafka_read(h_brokers, topics, parts, (size_t)n, !uncommitted, fn, ctx, timeout_s, err,
                      sizeof(err)))
        h_fail("%s", err);
}

int64_t h_high_sum(const char *const *topics, const int *parts, int n)
{
    static rd_kafka_t *rk; /* one metadata client for the run */
    int64_t sum = 0, lo, hi;
    if (!rk)
        rk = h_kafka_new(RD_KAFKA_PRODUCER, NULL);
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < parts[i]; p++) {
            if (rd_kafka_query_watermark_offsets(rk, topics[i], p, &lo, &hi, 5000) ==
                RD_KAFKA_RESP_ERR_NO_ERROR)
                sum += hi;
        }
    }
    return sum;
}

int h_open_txns(const char *const *topics, const int *parts, int n, char *where, size_t len)
{
    char err[512];
    int open =
        ts_kafka_open_txns(h_brokers, topics, parts, (size_t)n, where, len, err, sizeof(err));
    H_CHECK(open >= 0, "%s", err);
    return open;
}

void h_committed(const char *group, const char *topic, int nparts, int64_t *out)
{
    const char *kv[] = {"group.id", group, "enable.auto.commit", "false", NULL};
    rd_kafka_t *rk = h_kafka_new(RD_KAFKA_CONSUMER, kv);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    rd_kafka_resp_err_t e;
    int64_t until = h_mono_ms() + 60000;
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    while ((e = rd_kafka_committed(rk, l, 10000)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        H_CHECK(h_mono_ms() < until, "committed offsets of %s on %s: %s", group, topic,
                rd_kafka_err2str(e));
        h_sleep_ms(500);
    }
    for (int i = 0; i < l->cnt; i++)
        out[l->elems[i].partition] = l->elems[i].err ? -1 : l->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
}

const char *h_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t len)
{
    rd_kafka_headers_t *hdrs;
    const void *v;
    size_t vl;
    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, name, &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR && v) {
        if (vl >= len)
            vl = len - 1;
        memcpy(buf, v, vl);
        buf[vl] = '\0';
    }
    return buf;
}

/* ---- http (the double's admin endpoint, /metrics) -------------------------------- */

/* GET or POST url; the body (caller frees) or NULL; *code the HTTP status. */
static char *h_http(const char *url, bool post, long *code)
{
    return ts_http(post ? "POST" : "GET", url, post ? "" : NULL, 10000, code);
}

char *h_metrics_text(int port)
{
    char url[128];
    long code;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    return h_http(url, false, &code);
}

double h_metric_in(const char *text, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, prefix, pl) == 0)
            return strtod(line + pl, NULL);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

double h_metric(int port, const char *prefix)
{
    char *body = h_metrics_text(port);
    double v = body ? h_metric_in(body, prefix) : -1;
    free(body);
    return v;
}

double h_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

long h_peak_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    return kb;
}

/* ---- the private im-repo double ----------------------------------------------------- */

static bool h_port_free(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (s >= 0)
        close(s);
    return ok;
}

int h_free_port(void)
{
    int port = ts_free_port();
    H_CHECK(port > 0, "no free port: %s", strerror(errno));
    return port;
}

/* The double's binary: IMTASK_IMREPO_DOUBLE_BIN, or the executable of the
 * stack's running double. */
static void h_double_bin(char *out, size_t len)
{
    const char *env = getenv("IMTASK_IMREPO_DOUBLE_BIN");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    const char *dir = getenv("IMTASK_STACK_DIR");
    char path[PATH_MAX], pid[32] = "";
    snprintf(path, sizeof(path), "%s/imrepo.pid", dir && *dir ? dir : "/tmp/imtask-stack");
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(pid, sizeof(pid), f))
            pid[0] = '\0';
        fclose(f);
    }
    char exe[64];
    snprintf(exe, sizeof(exe), "/proc/%d/exe", atoi(pid));
    ssize_t n = atoi(pid) > 0 ? readlink(exe, out, len - 1) : -1;
    H_CHECK(n > 0,
            "cannot find the im-repo double's binary: set IMTASK_IMREPO_DOUBLE_BIN, or run "
            "the stack (bash scripts/stack.sh up) and pass --test_env=IMTASK_STACK_DIR "
            "(looked at %s)",
            path);
    out[n] = '\0';
}

void h_double_start(h_double_t *d, double online_ratio, int gateways)
{
    char bin[PATH_MAX], ratio[32], gws[16], port[16], statedir[PATH_MAX];
    memset(d, 0, sizeof(*d));
    h_double_bin(bin, sizeof(bin));
    unsigned seed = (unsigned)h_mono_ms() ^ (unsigned)getpid();
    /* Below the kernel's ephemeral ports: the cases take the double's
     * listener down for up to 20 s while the fan-out keeps connecting to
     * it, and a connect to a free port of that range can be given the same
     * port as its own (a TCP self-connect), which then keeps the double from
     * binding it again (seen once in the ASan pass: the listener never came
     * back). */
    int low = 32768;
    FILE *range = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (range) {
        if (fscanf(range, "%d", &low) != 1)
            low = 32768;
        fclose(range);
    }
    H_CHECK(low > 12000, "the ephemeral port range starts at %d: no room below it", low);
    for (int tries = 0;; tries++) {
        int p = 10000 + (int)(rand_r(&seed) % (unsigned)(low - 10000 - 4));
        if (h_port_free(p) && h_port_free(p + 1) && h_port_free(p + 2) && h_port_free(p + 3)) {
            d->port = p;
            break;
        }
        H_CHECK(tries < 200, "no 4 free ports in a row for the im-repo double");
    }
    snprintf(d->addr, sizeof(d->addr), "127.0.0.1:%d", d->port);
    snprintf(d->admin, sizeof(d->admin), "http://127.0.0.1:%d", d->port + 1);
    if (snprintf(d->log, sizeof(d->log), "%.3900s/imrepo-double-%d.log", h_tmp, d->port) < 0 ||
        snprintf(statedir, sizeof(statedir), "%.3900s/imrepo-%d", h_tmp, d->port) < 0)
        h_fail("path too long");
    mkdir(statedir, 0755);
    snprintf(ratio, sizeof(ratio), "%.6f", online_ratio);
    snprintf(gws, sizeof(gws), "%d", gateways);
    snprintf(port, sizeof(port), "%d", d->port);
    char sd[PATH_MAX + 16];
    snprintf(sd, sizeof(sd), "-state-dir=%s", statedir);
    char *argv[] = {bin,
                    (char *)"-host",
                    (char *)"127.0.0.1",
                    (char *)"-port",
                    port,
                    (char *)"-etcd",
                    (char *)"",
                    sd,
                    (char *)"-online-ratio",
                    ratio,
                    (char *)"-gateways",
                    gws,
                    NULL};
    pid_t pid = ts_spawn(bin, argv, NULL, d->log, false);
    H_CHECK(pid >= 0, "fork: %s", strerror(errno));
    d->pid = pid;
    h_pid_add(pid);
    int64_t until = h_mono_ms() + 30000;
    for (;;) {
        char url[128];
        long code;
        snprintf(url, sizeof(url), "%s/healthz", d->admin);
        char *b = h_http(url, false, &code);
        free(b);
        if (b && code == 200)
            break;
        int st;
        H_CHECK(waitpid(pid, &st, WNOHANG) != pid, "the im-repo double %s exited (log %s)", bin,
                d->log);
        H_CHECK(h_mono_ms() < until, "the im-repo double did not answer in 30 s (log %s)", d->log);
        h_sleep_ms(100);
    }
}

void h_double_stop(h_double_t *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            h_pid_del(d->pid);
            d->pid = 0;
            return;
        }
        h_sleep_ms(50);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    h_pid_del(d->pid);
    d->pid = 0;
}

cJSON *h_double_admin(h_double_t *d, bool post, const char *fmt, ...)
{
    char path[512], url[640];
    long code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    snprintf(url, sizeof(url), "%s%s", d->admin, path);
    char *b = h_http(url, post, &code);
    H_CHECK(b && code == 200, "im-repo double %s %s: HTTP %ld", post ? "POST" : "GET", path, code);
    cJSON *j = cJSON_Parse(b);
    free(b);
    H_CHECK(j != NULL, "im-repo double %s: not JSON", path);
    return j;
}

int64_t h_double_calls(h_double_t *d, const char *method, int64_t *items)
{
    cJSON *j = h_double_admin(d, false, "/stats");
    cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "methods"), method);
    int64_t calls = 0;
    if (m) {
        calls = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(m, "calls"));
        if (items)
            *items = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(m, "items"));
    } else if (items) {
        *items = 0;
    }
    cJSON_Delete(j);
    return calls;
}

/* ---- children ----------------------------------------------------------------------- */

void h_child_start(h_child_t *ch, const char *bin, const char *dir, const char *name,
                   const char *yaml)
{
    memset(ch, 0, sizeof(*ch));
    snprintf(ch->name, sizeof(ch->name), "%s", name);
    snprintf(ch->cfg, sizeof(ch->cfg), "%s/%s.yaml", dir, name);
    snprintf(ch->log, sizeof(ch->log), "%s/%s.log", dir, name);
    FILE *f = fopen(ch->cfg, "w");
    H_CHECK(f != NULL, "%s: %s", ch->cfg, strerror(errno));
    fputs(yaml, f);
    H_CHECK(fclose(f) == 0, "%s: %s", ch->cfg, strerror(errno));

    /* the child's config comes from its file only */
    extern char **environ;
    size_t n = 0, k = 0;
    for (char **e = environ; *e; e++)
        n++;
    char **envp = calloc(n + 1, sizeof(char *));
    H_CHECK(envp != NULL, "out of memory");
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "IMTASK_", 7) != 0)
            envp[k++] = *e;
    }
    char *argv[] = {(char *)bin, (char *)"--config", ch->cfg, NULL};
    pid_t pid = ts_spawn(bin, argv, envp, ch->log, false);
    H_CHECK(pid >= 0, "fork: %s", strerror(errno));
    free(envp);
    ch->pid = pid;
    ch->running = true;
    h_pid_add(pid);
}

static const char *h_status_str(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "status 0x%x", status);
    return buf;
}

void h_child_check(h_child_t *ch)
{
    char sbuf[64];
    if (ch->running && waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid) {
        ch->running = false;
        h_pid_del(ch->pid);
        h_fail("child %s (pid %d) ended on its own: %s (log %s)", ch->name, (int)ch->pid,
               h_status_str(ch->status, sbuf, sizeof(sbuf)), ch->log);
    }
}

int h_child_stop(h_child_t *ch, int sig)
{
    int64_t until = h_mono_ms() + H_CHILD_STOP_S * 1000;
    H_CHECK(ch->running, "child %s is not running", ch->name);
    if (sig)
        kill(ch->pid, sig);
    for (;;) {
        if (waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid)
            break;
        if (h_mono_ms() > until) {
            h_child_kill(ch);
            h_fail("child %s did not end within %d s of signal %d", ch->name, H_CHILD_STOP_S, sig);
        }
        h_sleep_ms(20);
    }
    ch->running = false;
    h_pid_del(ch->pid);
    return ch->status;
}

void h_child_kill(h_child_t *ch)
{
    if (!ch->running)
        return;
    kill(ch->pid, SIGKILL);
    waitpid(ch->pid, &ch->status, 0);
    ch->running = false;
    h_pid_del(ch->pid);
}

void h_child_print_log(const h_child_t *ch, int lines)
{
    fprintf(stderr, "==== child %s: config %s, log %s (last %d lines):\n", ch->name, ch->cfg,
            ch->log, lines);
    ts_print_tail(ch->log, lines);
}
