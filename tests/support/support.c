/* support.c: helpers the tests share (support.h). */
#include "tests/support/support.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TS_ADMIN_TIMEOUT_MS 30000

static int64_t ts_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A client of brokers (log level 3) with the given settings (pairs,
 * NULL-terminated; NULL: none); NULL with err set. */
static rd_kafka_t *ts_client(const char *brokers, rd_kafka_type_t type, const char *const *kv,
                             char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", err, errlen) != RD_KAFKA_CONF_OK)
        goto fail;
    for (; kv && kv[0]; kv += 2) {
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, errlen) != RD_KAFKA_CONF_OK)
            goto fail;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, errlen);
    if (rk)
        return rk;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* How many of the topics the metadata shows with all their partitions led. */
static size_t ts_topics_led(rd_kafka_t *rk, const char *const *topics, const int *parts,
                            size_t ntopics)
{
    const struct rd_kafka_metadata *md = NULL;
    size_t ready = 0;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    for (size_t i = 0; i < ntopics; i++) {
        for (int j = 0; j < md->topic_cnt; j++) {
            const struct rd_kafka_metadata_topic *t = &md->topics[j];
            if (strcmp(t->topic, topics[i]) != 0 || t->err || t->partition_cnt != parts[i])
                continue;
            bool led = true;
            for (int k = 0; k < t->partition_cnt; k++)
                led = led && t->partitions[k].leader >= 0;
            ready += led;
        }
    }
    rd_kafka_metadata_destroy(md);
    return ready;
}

int ts_kafka_create(const char *brokers, const char *const *topics, const int *parts,
                    size_t ntopics, char *err, size_t errlen)
{
    int rc = -1;
    rd_kafka_t *rk = ts_client(brokers, RD_KAFKA_PRODUCER, NULL, err, errlen);
    if (!rk)
        return -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, TS_ADMIN_TIMEOUT_MS, err, errlen);
    rd_kafka_NewTopic_t **nt = calloc(ntopics ? ntopics : 1, sizeof(*nt));
    rd_kafka_event_t *ev = NULL;
    size_t made = 0;
    if (!nt) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (; made < ntopics; made++) {
        if (!(nt[made] = rd_kafka_NewTopic_new(topics[made], parts[made], 1, err, errlen)))
            goto out;
    }
    rd_kafka_CreateTopics(rk, nt, ntopics, opt, q);
    ev = rd_kafka_queue_poll(q, 2 * TS_ADMIN_TIMEOUT_MS);
    if (!ev || rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "CreateTopics: %s",
                 ev ? rd_kafka_event_error_string(ev) : "no answer within 60 s");
        goto out;
    }
    size_t nr;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nr);
    for (size_t i = 0; i < nr; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            snprintf(err, errlen, "CreateTopics %s: %s", rd_kafka_topic_result_name(tr[i]),
                     rd_kafka_topic_result_error_string(tr[i]));
            goto out;
        }
    }
    for (int64_t until = ts_mono_ms() + TS_ADMIN_TIMEOUT_MS;;) {
        size_t ready = ts_topics_led(rk, topics, parts, ntopics);
        if (ready == ntopics)
            break;
        if (ts_mono_ms() >= until) {
            snprintf(err, errlen, "%zu of %zu topics have leaders for all partitions after 30 s",
                     ready, ntopics);
            goto out;
        }
        struct timespec pause = {0, 200 * 1000000};
        nanosleep(&pause, NULL);
    }
    rc = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (nt)
        rd_kafka_NewTopic_destroy_array(nt, made);
    free(nt);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* Waits for one admin answer; a missing or failed one is noted. */
static void ts_admin_wait(rd_kafka_queue_t *q, const char *what, const char *op)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TS_ADMIN_TIMEOUT_MS);
    if (!ev || rd_kafka_event_error(ev))
        fprintf(stderr, "note: %s: %s: %s\n", what, op,
                ev ? rd_kafka_event_error_string(ev) : "no answer");
    if (ev)
        rd_kafka_event_destroy(ev);
}

void ts_kafka_delete(const char *brokers, const char *const *topics, size_t ntopics,
                     const char *group, const char *what)
{
    char err[256];
    rd_kafka_t *rk = ts_client(brokers, RD_KAFKA_PRODUCER, NULL, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "note: %s: clean-up: %s\n", what, err);
        return;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
    rd_kafka_AdminOptions_set_request_timeout(opt, TS_ADMIN_TIMEOUT_MS, err, sizeof(err));
    rd_kafka_DeleteTopic_t **dt = ntopics ? calloc(ntopics, sizeof(*dt)) : NULL;
    if (dt) {
        for (size_t i = 0; i < ntopics; i++)
            dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
        rd_kafka_DeleteTopics(rk, dt, ntopics, opt, q);
        ts_admin_wait(q, what, "deleting topics");
        rd_kafka_DeleteTopic_destroy_array(dt, ntopics);
        free(dt);
    }
    if (group) {
        rd_kafka_DeleteGroup_t *dg = rd_kafka_DeleteGroup_new(group);
        rd_kafka_DeleteGroups(rk, &dg, 1, opt, q);
        ts_admin_wait(q, what, "deleting the consumer group");
        rd_kafka_DeleteGroup_destroy(dg);
    }
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

bool ts_file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    /* lines of any length: a window of the needle's length carried over
     * between reads, so a match across two reads is found too */
    size_t nl = strlen(needle), keep = nl ? nl - 1 : 0, have = 0;
    char *buf = malloc(keep + 65536 + 1);
    bool found = false;
    while (buf && !found) {
        size_t got = fread(buf + have, 1, 65536, f);
        if (got == 0)
            break;
        have += got;
        buf[have] = '\0';
        found = memmem(buf, have, needle, nl) != NULL;
        size_t tail = have < keep ? have : keep;
        memmove(buf, buf + have - tail, tail);
        have = tail;
    }
    free(buf);
    fclose(f);
    return found;
}

pid_t ts_spawn(const char *bin, char *const argv[], char *const envp[], const char *log,
               bool fresh_log)
{
    extern char **environ;
    char *const *env = envp ? envp : environ; /* read before fork */
    if (fresh_log) { /* before fork: whoever reads the log next sees only the new run's */
        int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (lfd >= 0)
            close(lfd);
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* the child: only async-signal-safe calls until exec */
    static const char msg[] = "ts_spawn: exec failed\n";
    sigset_t none;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    if (nul >= 0) {
        dup2(nul, 0);
        close(nul);
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the test died before the line above */
        _exit(126);
    execve(bin, argv, env);
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(126);
    _exit(127);
}

void ts_print_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    int seen = 0, c;
    if (!f) {
        fprintf(stderr, "(no %s)\n", path);
        return;
    }
    /* back from the end (its final newline ends the last line, it does not
     * start one) to just after the newline before the last `lines` lines */
    fseek(f, 0, SEEK_END);
    long pos = ftell(f);
    if (pos > 0 && fseek(f, pos - 1, SEEK_SET) == 0 && fgetc(f) == '\n')
        pos--;
    while (pos > 0 && lines > 0) {
        fseek(f, pos - 1, SEEK_SET);
        if (fgetc(f) == '\n' && ++seen == lines)
            break;
        pos--;
    }
    fseek(f, pos, SEEK_SET);
    while (lines > 0 && (c = fgetc(f)) != EOF)
        fputc(c, stderr);
    fclose(f);
}

int ts_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int ts_kafka_read(const char *brokers, const char *const *topics, const int *parts, size_t ntopics,
                  bool committed, ts_record_fn fn, void *ctx, int timeout_s, char *err,
                  size_t errlen)
{
    static int readers; /* a fresh group each time */
    char group[96];
    const char *iso = committed ? "read_committed" : "read_uncommitted";
    snprintf(group, sizeof(group), "imtask-ts-reader-%lld-%d-%d", (long long)ts_mono_ms(),
             (int)getpid(), readers++);
    const char *kv[] = {"group.id",
                        group,
                        "enable.auto.commit",
                        "false",
                        "isolation.level",
                        iso,
                        "enable.partition.eof",
                        "true",
                        NULL};
    rd_kafka_t *rk = ts_client(brokers, RD_KAFKA_CONSUMER, kv, err, errlen);
    if (!rk)
        return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (size_t i = 0; i < ntopics; i++) {
        for (int p = 0; p < parts[i]; p++)
            rd_kafka_topic_partition_list_add(l, topics[i], p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    int total = l->cnt, ends = 0, rc = 0;
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    if (e) {
        snprintf(err, errlen, "assign: %s", rd_kafka_err2str(e));
        rc = -1;
    }
    int64_t until = ts_mono_ms() + (int64_t)timeout_s * 1000;
    while (rc == 0 && ends < total) {
        if (ts_mono_ms() > until) {
            snprintf(err, errlen, "reading (%s): %d of %d partitions at their end after %d s", iso,
                     ends, total, timeout_s);
            rc = -1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_find(l, rd_kafka_topic_name(m->rkt), m->partition);
            if (tp && !tp->opaque) { /* an end counts once: marked in the list's opaque */
                tp->opaque = tp;
                ends++;
            }
        } else if (!m->err) {
            fn(ctx, m);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

int ts_kafka_open_txns(const char *brokers, const char *const *topics, const int *parts,
                       size_t ntopics, char *where, size_t wherelen, char *err, size_t errlen)
{
    const char *kc[] = {"isolation.level", "read_committed", NULL};
    const char *ku[] = {"isolation.level", "read_uncommitted", NULL};
    rd_kafka_t *rc = ts_client(brokers, RD_KAFKA_CONSUMER, kc, err, errlen);
    rd_kafka_t *ru = rc ? ts_client(brokers, RD_KAFKA_CONSUMER, ku, err, errlen) : NULL;
    int open = 0;
    for (size_t i = 0; ru && i < ntopics && open >= 0; i++) {
        for (int p = 0; p < parts[i] && open >= 0; p++) {
            int64_t lo, lso, hw, until = ts_mono_ms() + 30000;
            rd_kafka_resp_err_t e;
            while ((e = rd_kafka_query_watermark_offsets(rc, topics[i], p, &lo, &lso, 5000)) ||
                   (e = rd_kafka_query_watermark_offsets(ru, topics[i], p, &lo, &hw, 5000))) {
                if (ts_mono_ms() >= until) {
                    snprintf(err, errlen, "ListOffsets %s [%d]: %s", topics[i], p,
                             rd_kafka_err2str(e));
                    open = -1;
                    break;
                }
                struct timespec ts = {0, 200 * 1000000L};
                nanosleep(&ts, NULL);
            }
            if (open >= 0 && lso < hw && open++ == 0 && where)
                snprintf(where, wherelen,
                         "%s [%d]: last stable offset %" PRId64 ", high watermark %" PRId64,
                         topics[i], p, lso, hw);
        }
    }
    if (rc)
        rd_kafka_destroy(rc);
    if (ru)
        rd_kafka_destroy(ru);
    return ru ? open : -1;
}

typedef struct {
    char *data;
    size_t len;
} ts_body_t;

static size_t ts_http_write(char *p, size_t size, size_t n, void *opaque)
{
    ts_body_t *b = opaque;
    size_t add = size * n;
    char *d = realloc(b->data, b->len + add + 1);
    if (!d)
        return 0; /* the transfer fails */
    memcpy(d + b->len, p, add);
    b->data = d;
    b->len += add;
    d[b->len] = '\0';
    return add;
}

char *ts_http(const char *method, const char *url, const char *body, int timeout_ms, long *status)
{
    ts_body_t b = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    *status = 0;
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ts_http_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    if (method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (rc != CURLE_OK) {
        free(b.data);
        return NULL;
    }
    return b.data ? b.data : calloc(1, 1);
}

double ts_metric(int port, const char *series)
{
    char url[64];
    long status = 0;
    double v = -1;
    size_t n = strlen(series);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    char *text = ts_http("GET", url, NULL, 5000, &status);
    for (const char *l = status == 200 ? text : NULL; l && *l;) {
        if (strncmp(l, series, n) == 0 && l[n] == ' ') {
            v = strtod(l + n + 1, NULL);
            break;
        }
        l = strchr(l, '\n');
        l = l ? l + 1 : NULL;
    }
    free(text);
    return v;
}
