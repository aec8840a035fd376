/* runtime_test.c: the task runtime (libs/mqclient + libs/dispatch) against
 * the REAL broker of the local stack (scripts/stack.sh), through the test
 * processor binary imtask-testproc (its path is argv[1]).
 *
 * Every case makes its own topics (Admin API, unique names) and consumer
 * group, runs imtask-testproc children (fork/exec, YAML config in a temp
 * file, stdout/stderr in a log printed when the case fails), produces task
 * envelopes with librdkafka and checks the outcome from the children's
 * record files, the DLQ/retry/output topics and the group's committed
 * offsets. Topics and groups are deleted at the end of each case.
 *
 *   1 outcomes     done / retry topic / local retry / permanent / retries
 *                  exhausted / undecodable / unknown type / other binary's
 *                  type: the record file, every DLQ record field by field,
 *                  the retry topic, and committed offsets at the end
 *   2 kill -9      at-least-once across a crash (duplicates are reported)
 *   3 SIGTERM      graceful drain, exit 0, zero duplicates after restart
 *   4 rebalance    two members of one group: nothing lost, both worked,
 *                  per-key order within each member
 *   8 stop mid-rebalance  members stopped while the group rebalances (joining,
 *                  mid-assignment, others leaving) exit 0 within the bound;
 *                  nothing lost
 *   5 broker away  the broker frozen (SIGSTOP) for 20 s, then more work
 *   6 outputs      outputs written before the input is committed
 *   7 exactly once outputs seen once by read_committed readers across kill -9
 *   9 lanes        exactly-once mode: one slow task on each of the 3 task
 *                  partitions, 3 workers: all three run at once (no two
 *                  partitions share a worker while another worker is idle)
 *
 * The children run with session.timeout.ms 6000 and heartbeat.interval.ms
 * 200 (a killed member is replaced and rebalances finish in seconds) and
 * auto.commit.interval.ms 200 (offsets are committed all the time, so that
 * committing unfinished work would lose tasks on kill -9).
 *
 * Needs IMTASK_KAFKA_BROKERS, and IMTASK_STACK_DIR for case 5 (the broker's
 * pid file). No assertion is about timings; every wait is bounded (and fails
 * early when nothing moves for STALL_S). Development knobs:
 * RUNTIME_TEST_FILTER (a cmocka test name pattern), RUNTIME_TEST_KAFKA_DEBUG
 * (librdkafka `debug` of the children, with log level debug).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "tests/support/support.h"

#define NAME_MAX_LEN 200
#define MAX_CHILDREN 4
#define MAX_HDRS 48
#define CHILD_STOP_TIMEOUT_S 60
#define LOG_TAIL_LINES 80
#define STALL_S 40 /* a wait fails when nothing moved for this long */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

/* ---- globals ---------------------------------------------------------- */

static const char *g_brokers;
static const char *g_stack_dir;
static char g_testproc[PATH_MAX];
static char g_tmp[1024];
static char **g_child_env;
static const char *g_kafka_debug; /* RUNTIME_TEST_KAFKA_DEBUG: librdkafka debug of the children */

/* For the signal handler and atexit: never leave the broker frozen or
 * children behind. */
static volatile pid_t g_frozen_pid;
static volatile pid_t g_thawer_pid;
static volatile pid_t g_child_pids[MAX_CHILDREN];

/* ---- small helpers ---------------------------------------------------- */

static int64_t mono_ms(void)
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

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void thaw_broker(void)
{
    pid_t p = g_frozen_pid;
    if (p > 0)
        kill(p, SIGCONT);
    g_frozen_pid = 0;
}

static void on_fatal_signal(int sig)
{
    pid_t p = g_frozen_pid;
    if (p > 0)
        kill(p, SIGCONT);
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (g_child_pids[i] > 0)
            kill(g_child_pids[i], SIGKILL);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void at_exit_thaw(void)
{
    thaw_broker();
}

/* ---- what a case owns -------------------------------------------------- */

/* Memory a case allocates is registered here and freed by the case's
 * teardown, also when an assertion leaves the test function by longjmp. */
typedef void (*own_fn)(void *p, int n);

typedef struct {
    own_fn fn;
    void *p;
    int n;
} owned_t;

#define MAX_OWNED 64
static owned_t g_owned[MAX_OWNED];
static int g_nowned;

static owned_t *own(void *p, own_fn fn, int n)
{
    CHECK(g_nowned < MAX_OWNED, "more than %d owned objects", MAX_OWNED);
    g_owned[g_nowned] = (owned_t){fn, p, n};
    return &g_owned[g_nowned++];
}

/* Free an owned object now (the most recently owned one is unregistered). */
static void own_drop(owned_t *o)
{
    if (o->p)
        o->fn(o->p, o->n);
    o->p = NULL;
    if (o == &g_owned[g_nowned - 1])
        g_nowned--;
}

static void own_release_all(void)
{
    while (g_nowned > 0)
        own_drop(&g_owned[g_nowned - 1]);
}

static void own_free(void *p, int n)
{
    (void)n;
    free(p);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    assert_non_null(p);
    own(p, own_free, 0);
    return p;
}

/* ---- kafka clients ---------------------------------------------------- */

typedef struct {
    int32_t partition;
    int64_t offset;
    int64_t timestamp;
    rd_kafka_resp_err_t err;
    bool reported;
} sent_t;

typedef struct {
    rd_kafka_t *rk;
    int queued, delivered, failed;
    char first_error[256];
} prod_t;

static void prod_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    prod_t *p = opaque;
    sent_t *s = m->_private;
    rd_kafka_timestamp_type_t tstype;
    (void)rk;
    if (m->err) {
        if (p->failed++ == 0)
            snprintf(p->first_error, sizeof(p->first_error), "%s", rd_kafka_err2str(m->err));
    } else {
        p->delivered++;
    }
    if (s) {
        s->err = m->err;
        s->partition = m->partition;
        s->offset = m->offset;
        s->timestamp = rd_kafka_message_timestamp(m, &tstype);
        s->reported = true;
    }
}

/* kv: NULL-terminated key, value pairs. */
static rd_kafka_t *kafka_new(rd_kafka_type_t type, const char *const *kv, prod_t *dr)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", g_brokers, err, sizeof(err)) !=
        RD_KAFKA_CONF_OK)
        fail_msg("bootstrap.servers: %s", err);
    for (; kv && kv[0]; kv += 2) {
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            fail_msg("%s=%s: %s", kv[0], kv[1], err);
    }
    if (dr) {
        rd_kafka_conf_set_dr_msg_cb(conf, prod_dr);
        rd_kafka_conf_set_opaque(conf, dr);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk)
        fail_msg("rd_kafka_new: %s", err);
    return rk;
}

static void prod_open(prod_t *p)
{
    static const char *const kv[] = {"enable.idempotence", "true", "acks", "all",
                                     "linger.ms",          "5",    NULL};
    memset(p, 0, sizeof(*p));
    p->rk = kafka_new(RD_KAFKA_PRODUCER, kv, p);
}

/* Queue one record; type_hdr/traceparent NULL: header left out. */
static void produce_raw(prod_t *p, const char *topic, const char *key, const char *type_hdr,
                        const char *id, const char *traceparent, const void *val, size_t len,
                        sent_t *s)
{
    rd_kafka_resp_err_t e;
    int64_t until = mono_ms() + 60000;
    for (;;) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(4);
        if (type_hdr)
            rd_kafka_header_add(h, HDR_TASK_TYPE, -1, type_hdr, -1);
        rd_kafka_header_add(h, HDR_TASK_ID, -1, id, -1);
        if (traceparent)
            rd_kafka_header_add(h, HDR_TRACEPARENT, -1, traceparent, -1);
        e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
            RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        rd_kafka_headers_destroy(h);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || mono_ms() > until)
            fail_msg("produce to %s: %s", topic, rd_kafka_err2str(e));
        rd_kafka_poll(p->rk, 100);
    }
    p->queued++;
    rd_kafka_poll(p->rk, 0);
}

/* Flush (bounded) and require every record acknowledged. */
static void prod_close(prod_t *p)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, 60000);
    CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "producer flush: %s (%d of %d delivered)",
          rd_kafka_err2str(e), p->delivered, p->queued);
    CHECK(p->failed == 0, "%d records not delivered, first: %s", p->failed, p->first_error);
    CHECK(p->delivered == p->queued, "%d of %d records delivered", p->delivered, p->queued);
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
}

/* ---- tasks ------------------------------------------------------------ */

enum {
    K_OK,
    K_SLEEP,
    K_F2, /* fail-until:2 */
    K_PERM,
    K_LOCAL,   /* local-until:1 */
    K_F100,    /* fail-until:100 */
    K_UNDEC,   /* random bytes */
    K_UNKNOWN, /* task_type mystery */
    K_PUSH,    /* task_type push: another binary's */
    K_OUT,
};

typedef struct {
    int kind;
    char id[64];
    char key[64];
    char type_hdr[TASK_TYPE_MAX];
    char traceparent[TASK_TRACEPARENT_LEN + 1];
    task_t env; /* as encoded (payload points to `payload`) */
    char payload[NAME_MAX_LEN + 32];
    uint8_t *value;
    size_t len;
    sent_t sent;
} task_rec_t;

static void task_fill(task_rec_t *t, int kind, const char *tag, int idx, const char *key,
                      const char *type, const char *payload)
{
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    snprintf(t->id, sizeof(t->id), "%.16s-%06d", tag, idx);
    snprintf(t->key, sizeof(t->key), "%s", key ? key : t->id);
    snprintf(t->type_hdr, sizeof(t->type_hdr), "%s", type);
    snprintf(t->payload, sizeof(t->payload), "%s", payload);
    snprintf(t->env.task_id, sizeof(t->env.task_id), "%s", t->id);
    snprintf(t->env.task_type, sizeof(t->env.task_type), "%s", type);
    task_trace_id_new(t->env.trace_id);
    task_traceparent_new(t->env.trace_id, t->env.traceparent);
    memcpy(t->traceparent, t->env.traceparent, sizeof(t->traceparent));
    t->env.created_at_ms = wall_ms();
    t->env.payload = (const uint8_t *)t->payload;
    t->env.payload_len = strlen(t->payload);
    assert_int_equal(task_encode(&t->env, &t->value, &t->len), 0);
}

/* A value that is surely not a task envelope. */
static void task_make_garbage(task_rec_t *t, unsigned *seed)
{
    task_t out;
    void *owner = NULL;
    char err[256];
    free(t->value);
    t->len = 48;
    t->value = malloc(t->len);
    assert_non_null(t->value);
    for (int tries = 0;; tries++) {
        for (size_t i = 0; i < t->len; i++)
            t->value[i] = (uint8_t)(rand_r(seed) & 0xff);
        if (task_decode(t->value, t->len, &out, &owner, err, sizeof(err)) != 0)
            return;
        task_decoded_free(owner);
        owner = NULL;
        CHECK(tries < 100, "cannot make an undecodable value");
    }
}

static void task_produce(prod_t *p, const char *topic, task_rec_t *t)
{
    produce_raw(p, topic, t->key, t->type_hdr, t->id, t->traceparent, t->value, t->len, &t->sent);
}

static void tasks_free(void *p, int n)
{
    task_rec_t *ts = p;
    for (int i = 0; ts && i < n; i++)
        free(ts[i].value);
    free(ts);
}

static task_rec_t *tasks_new(int n)
{
    task_rec_t *ts = calloc((size_t)n, sizeof(*ts));
    assert_non_null(ts);
    own(ts, tasks_free, n);
    return ts;
}

/* ---- the case: topics, group, children -------------------------------- */

typedef struct {
    pid_t pid;
    bool running;
    int status;
    char name[32];
    char cfg[PATH_MAX], log[PATH_MAX], record[PATH_MAX];
} child_t;

typedef struct {
    int workers;       /* 0: 8 */
    int max_in_flight; /* 0: runtime default */
    int max_delayed;   /* 0: runtime default */
    const char *grace; /* NULL: 30s */
    const char *unknown_tasks;
    const char *retry_yaml;   /* lines of the retry: section, or NULL */
    bool exactly_once;        /* TESTPROC_EXACTLY_ONCE=1: transactional mode */
    const char *transactions; /* consumer.transactions; NULL: the default (shared) */
} child_conf_t;

typedef struct {
    char tag[8];
    char base[NAME_MAX_LEN];
    char dir[2048];
    char topics[4][NAME_MAX_LEN + 16]; /* task, retry, dlq, out */
    int parts[4];
    int ntopics;
    char group[NAME_MAX_LEN + 16];
    rd_kafka_t *meta; /* for watermarks */
    child_t ch[MAX_CHILDREN];
    int nch;
    bool passed;
    int64_t started_wall_ms;
} case_t;

#define T_TASK 0
#define T_RETRY 1
#define T_DLQ 2
#define T_OUT 3

static case_t g_case;

static void topics_create(case_t *c)
{
    char err[512];
    const char *topics[4];
    for (int i = 0; i < c->ntopics; i++)
        topics[i] = c->topics[i];
    CHECK(ts_kafka_create(g_brokers, topics, c->parts, (size_t)c->ntopics, err, sizeof(err)) == 0,
          "topics of case %s: %s", c->tag, err);
}

static void cleanup_kafka(case_t *c)
{
    const char *topics[4];
    char what[64];
    for (int i = 0; i < c->ntopics; i++)
        topics[i] = c->topics[i];
    snprintf(what, sizeof(what), "case %s", c->tag);
    ts_kafka_delete(g_brokers, topics, (size_t)c->ntopics, c->group, what);
}

static void case_open(case_t *c, const char *tag, const char *name, int nparts_retry,
                      int nparts_dlq, bool with_out)
{
    static const char *const sfx[] = {"task", "retry", "dlq", "out"};
    memset(c, 0, sizeof(*c));
    c->started_wall_ms = wall_ms();
    snprintf(c->tag, sizeof(c->tag), "%s", tag);
    snprintf(c->base, sizeof(c->base), "imtask-it-rt-%s-%lld-%d", name,
             (long long)(c->started_wall_ms / 1000), (int)getpid());
    snprintf(c->dir, sizeof(c->dir), "%s/%s", g_tmp, name);
    CHECK(mkdir(c->dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", c->dir, strerror(errno));
    c->ntopics = with_out ? 4 : 3;
    c->parts[T_TASK] = 3;
    c->parts[T_RETRY] = nparts_retry;
    c->parts[T_DLQ] = nparts_dlq;
    c->parts[T_OUT] = 2;
    for (int i = 0; i < c->ntopics; i++)
        snprintf(c->topics[i], sizeof(c->topics[i]), "%s-%s", c->base, sfx[i]);
    snprintf(c->group, sizeof(c->group), "%s-group", c->base);
    topics_create(c);
    c->meta = kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);
}

static void child_reap(child_t *ch, int slot)
{
    if (!ch->running)
        return;
    kill(ch->pid, SIGKILL);
    waitpid(ch->pid, &ch->status, 0);
    ch->running = false;
    g_child_pids[slot] = 0;
}

static void case_close(case_t *c)
{
    if (g_thawer_pid > 0) {
        thaw_broker();
        kill(g_thawer_pid, SIGKILL);
        waitpid(g_thawer_pid, NULL, 0);
        g_thawer_pid = 0;
    }
    thaw_broker();
    for (int i = 0; i < c->nch; i++)
        child_reap(&c->ch[i], i);
    if (!c->passed) {
        for (int i = 0; i < c->nch; i++) {
            fprintf(stderr,
                    "==== case %s: child %s: config %s, record file %s, log %s "
                    "(last %d lines):\n",
                    c->tag, c->ch[i].name, c->ch[i].cfg, c->ch[i].record, c->ch[i].log,
                    LOG_TAIL_LINES);
            ts_print_tail(c->ch[i].log, LOG_TAIL_LINES);
        }
    }
    if (c->meta)
        rd_kafka_destroy(c->meta);
    c->meta = NULL;
    if (c->ntopics)
        cleanup_kafka(c);
    own_release_all();
    memset(c, 0, sizeof(*c));
}

static int case_teardown(void **state)
{
    (void)state;
    case_close(&g_case);
    return 0;
}

static child_t *child_start(case_t *c, const char *name, const child_conf_t *cc)
{
    CHECK(c->nch < MAX_CHILDREN, "too many children");
    int slot = c->nch++;
    child_t *ch = &c->ch[slot];
    memset(ch, 0, sizeof(*ch));
    snprintf(ch->name, sizeof(ch->name), "%s", name);
    snprintf(ch->cfg, sizeof(ch->cfg), "%s/%s.yaml", c->dir, name);
    snprintf(ch->log, sizeof(ch->log), "%s/%s.log", c->dir, name);
    snprintf(ch->record, sizeof(ch->record), "%s/%s.records", c->dir, name);

    FILE *f = fopen(ch->cfg, "w");
    CHECK(f != NULL, "%s: %s", ch->cfg, strerror(errno));
    fprintf(f,
            "log:\n  level: %s\n"
            "http:\n  listen: 127.0.0.1:0\n"
            "kafka:\n  brokers: %s\n  session.timeout.ms: 6000\n  heartbeat.interval.ms: 200\n"
            "  auto.commit.interval.ms: 200\n"
            "%s" /* a killed child's open transaction expires in 10 s */
            "%s%s%s"
            "shutdown:\n  grace: %s\n"
            "consumer:\n  group_id: %s\n  topic: %s\n  retry_topic: %s\n  dlq_topic: %s\n"
            "  workers: %d\n  unknown_tasks: %s\n",
            g_kafka_debug ? "debug" : "info", g_brokers,
            cc->exactly_once ? "  transaction.timeout.ms: 10000\n" : "",
            g_kafka_debug ? "  debug: " : "", g_kafka_debug ? g_kafka_debug : "",
            g_kafka_debug ? "\n" : "", cc->grace ? cc->grace : "30s", c->group, c->topics[T_TASK],
            c->topics[T_RETRY], c->topics[T_DLQ], cc->workers ? cc->workers : 8,
            cc->unknown_tasks ? cc->unknown_tasks : "skip");
    if (cc->transactions)
        fprintf(f, "  transactions: %s\n", cc->transactions);
    if (cc->max_in_flight)
        fprintf(f, "  max_in_flight: %d\n", cc->max_in_flight);
    if (cc->max_delayed)
        fprintf(f, "  max_delayed: %d\n", cc->max_delayed);
    if (cc->retry_yaml)
        fprintf(f, "retry:\n%s", cc->retry_yaml);
    fprintf(f, "testproc:\n  record_file: %s\n", ch->record);
    CHECK(fclose(f) == 0, "%s: %s", ch->cfg, strerror(errno));

    char *argv[] = {g_testproc, (char *)"--config", ch->cfg, NULL};
    char **envp = g_child_env;
    if (cc->exactly_once) { /* built before fork: the child only execs */
        size_t n = 0;
        while (g_child_env[n])
            n++;
        envp = xcalloc(n + 2, sizeof(char *));
        memcpy(envp, g_child_env, n * sizeof(char *));
        envp[n] = (char *)"TESTPROC_EXACTLY_ONCE=1"; /* envp is owned by the case */
    }
    pid_t pid = ts_spawn(g_testproc, argv, envp, ch->log, false);
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    ch->pid = pid;
    ch->running = true;
    g_child_pids[slot] = pid;
    return ch;
}

static const char *status_str(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "status 0x%x", status);
    return buf;
}

/* Fails when a child that should be running has exited. */
static void children_check(case_t *c)
{
    char sbuf[64];
    for (int i = 0; i < c->nch; i++) {
        child_t *ch = &c->ch[i];
        if (!ch->running)
            continue;
        if (waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid) {
            ch->running = false;
            g_child_pids[i] = 0;
            fail_msg("child %s (pid %d) ended on its own: %s (log %s)", ch->name, (int)ch->pid,
                     status_str(ch->status, sbuf, sizeof(sbuf)), ch->log);
        }
    }
}

/* Send sig (0: none, it was sent already) and wait (bounded) for the child
 * to end; returns its wait status. */
static int child_stop(case_t *c, child_t *ch, int sig)
{
    int64_t until = mono_ms() + CHILD_STOP_TIMEOUT_S * 1000;
    CHECK(ch->running, "child %s is not running", ch->name);
    if (sig)
        kill(ch->pid, sig);
    for (;;) {
        pid_t r = waitpid(ch->pid, &ch->status, WNOHANG);
        if (r == ch->pid)
            break;
        if (mono_ms() > until) {
            kill(ch->pid, SIGKILL);
            waitpid(ch->pid, &ch->status, 0);
            ch->running = false;
            g_child_pids[ch - c->ch] = 0;
            fail_msg("child %s did not end within %d s of signal %d", ch->name,
                     CHILD_STOP_TIMEOUT_S, sig);
        }
        sleep_ms(20);
    }
    ch->running = false;
    g_child_pids[ch - c->ch] = 0;
    return ch->status;
}

/* SIGTERM (unless sent already) and require exit 0. */
static void child_stop_expect_0(case_t *c, child_t *ch, bool signalled)
{
    char sbuf[64];
    int st = child_stop(c, ch, signalled ? 0 : SIGTERM);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %s after SIGTERM: %s, want exit 0 (log %s)",
          ch->name, status_str(st, sbuf, sizeof(sbuf)), ch->log);
}

/* ---- record files ----------------------------------------------------- */

typedef void (*line_fn)(void *ctx, bool done, int idx, unsigned attempt);

/* Calls fn for every complete line of path whose id is "<tag>-<n>"; returns
 * the number of lines that are not such records. */
static int records_foreach(const char *path, const char *tag, line_fn fn, void *ctx)
{
    char line[512];
    size_t tl = strlen(tag);
    int bad = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* not written yet */
    while (fgets(line, sizeof(line), f)) {
        char what[16], id[160], *end;
        unsigned att;
        size_t l = strlen(line);
        if (l == 0 || line[l - 1] != '\n')
            break; /* being written */
        if (sscanf(line, "%15s %159s %u", what, id, &att) != 3 ||
            (strcmp(what, "done") != 0 && strcmp(what, "start") != 0) ||
            strncmp(id, tag, tl) != 0 || id[tl] != '-') {
            bad++;
            continue;
        }
        long idx = strtol(id + tl + 1, &end, 10);
        if (*end || idx < 0 || idx > INT_MAX) {
            bad++;
            continue;
        }
        fn(ctx, strcmp(what, "done") == 0, (int)idx, att);
    }
    fclose(f);
    return bad;
}

typedef struct {
    int n;
    int *done, *start;
    int *done_att_min, *done_att_max, *start_att_max;
    long done_lines, start_lines;
    int unique_done;
    int bad;
} tally_t;

static void tally_init(tally_t *t, int n)
{
    memset(t, 0, sizeof(*t));
    t->n = n;
    t->done = xcalloc((size_t)n, sizeof(int));
    t->start = xcalloc((size_t)n, sizeof(int));
    t->done_att_min = xcalloc((size_t)n, sizeof(int));
    t->done_att_max = xcalloc((size_t)n, sizeof(int));
    t->start_att_max = xcalloc((size_t)n, sizeof(int));
}

static void tally_reset(tally_t *t)
{
    size_t sz = (size_t)t->n * sizeof(int);
    memset(t->done, 0, sz);
    memset(t->start, 0, sz);
    memset(t->done_att_min, 0, sz);
    memset(t->done_att_max, 0, sz);
    memset(t->start_att_max, 0, sz);
    t->done_lines = t->start_lines = 0;
    t->unique_done = 0;
    t->bad = 0;
}

static void tally_line(void *ctx, bool done, int idx, unsigned attempt)
{
    tally_t *t = ctx;
    int a = (int)attempt;
    if (idx >= t->n) {
        t->bad++;
        return;
    }
    if (done) {
        if (t->done[idx] == 0) {
            t->unique_done++;
            t->done_att_min[idx] = a;
            t->done_att_max[idx] = a;
        }
        if (a < t->done_att_min[idx])
            t->done_att_min[idx] = a;
        if (a > t->done_att_max[idx])
            t->done_att_max[idx] = a;
        t->done[idx]++;
        t->done_lines++;
    } else {
        if (t->start[idx] == 0 || a > t->start_att_max[idx])
            t->start_att_max[idx] = a;
        t->start[idx]++;
        t->start_lines++;
    }
}

static void tally_add(tally_t *t, const char *path, const char *tag)
{
    t->bad += records_foreach(path, tag, tally_line, t);
}

/* Re-read the record files of the given children into t. */
static void tally_children(tally_t *t, case_t *c, const child_t *const *chs, int n)
{
    tally_reset(t);
    for (int i = 0; i < n; i++)
        tally_add(t, chs[i]->record, c->tag);
}

/* Wait (bounded, checking the children are alive) until the tally of the
 * given children reaches `want` unique done tasks, or start lines when
 * starts is true. */
static void wait_tally(case_t *c, tally_t *t, const child_t *const *chs, int n, bool starts,
                       long want, int timeout_s, const char *what)
{
    int64_t until = mono_ms() + (int64_t)timeout_s * 1000, moved = mono_ms();
    long last = -1;
    for (;;) {
        tally_children(t, c, chs, n);
        long have = starts ? t->start_lines : t->unique_done;
        if (have >= want)
            return;
        if (have != last) {
            last = have;
            moved = mono_ms();
        }
        children_check(c);
        CHECK(mono_ms() < until, "case %s: %s: %ld of %ld after %d s", c->tag, what, have, want,
              timeout_s);
        CHECK(mono_ms() - moved < STALL_S * 1000, "case %s: %s: %ld of %ld, no progress for %d s",
              c->tag, what, have, want, STALL_S);
        sleep_ms(starts ? 10 : 50);
    }
}

/* ---- reading topics --------------------------------------------------- */

typedef struct {
    int32_t partition;
    int64_t offset;
    char *key;
    size_t keylen;
    uint8_t *value;
    size_t len;
    int nh;
    char *hname[MAX_HDRS];
    char *hval[MAX_HDRS];
    size_t hlen[MAX_HDRS];
    bool hnull[MAX_HDRS];
} kmsg_t;

static void kmsgs_free(void *p, int n)
{
    kmsg_t *ms = p;
    for (int i = 0; ms && i < n; i++) {
        free(ms[i].key);
        free(ms[i].value);
        for (int j = 0; j < ms[i].nh; j++) {
            free(ms[i].hname[j]);
            free(ms[i].hval[j]);
        }
    }
    free(ms);
}

static char *memdup0(const void *p, size_t len)
{
    char *d = malloc(len + 1);
    assert_non_null(d);
    if (len)
        memcpy(d, p, len);
    d[len] = '\0';
    return d;
}

/* The last value of header name (NUL-terminated copy inside m), or NULL. */
static const char *kmsg_hdr(const kmsg_t *m, const char *name)
{
    for (int i = m->nh - 1; i >= 0; i--) {
        if (strcmp(m->hname[i], name) == 0)
            return m->hnull[i] ? NULL : m->hval[i];
    }
    return NULL;
}

static int kmsg_hdr_count(const kmsg_t *m, const char *name)
{
    int n = 0;
    for (int i = 0; i < m->nh; i++)
        n += strcmp(m->hname[i], name) == 0;
    return n;
}

static void watermarks(rd_kafka_t *rk, const char *topic, int32_t part, int64_t *lo, int64_t *hi)
{
    rd_kafka_resp_err_t e;
    int64_t until = mono_ms() + 30000;
    while ((e = rd_kafka_query_watermark_offsets(rk, topic, part, lo, hi, 5000)) !=
           RD_KAFKA_RESP_ERR_NO_ERROR) {
        CHECK(mono_ms() < until, "watermarks of %s[%d]: %s", topic, (int)part, rd_kafka_err2str(e));
        sleep_ms(200);
    }
}

static int64_t topic_end_sum(case_t *c, int which)
{
    int64_t sum = 0, lo, hi;
    for (int p = 0; p < c->parts[which]; p++) {
        watermarks(c->meta, c->topics[which], p, &lo, &hi);
        sum += hi;
    }
    return sum;
}

/* Every record of topic, read from the beginning with assign() (no group
 * membership, nothing committed). */
static kmsg_t *topic_read_all(const char *topic, int nparts, int *count)
{
    char group[NAME_MAX_LEN + 32];
    snprintf(group, sizeof(group), "%s-reader-%lld", topic, (long long)mono_ms());
    const char *kv[] = {
        "group.id", group, "enable.auto.commit", "false", "enable.auto.offset.store",
        "false",    NULL};
    rd_kafka_t *rk = kafka_new(RD_KAFKA_CONSUMER, kv, NULL);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    int64_t hi[16], next[16], lo;
    int total = 0, n = 0, cap = 64;
    kmsg_t *ms = calloc((size_t)cap, sizeof(*ms));
    assert_non_null(ms);
    owned_t *o = own(ms, kmsgs_free, 0); /* freed by the case's teardown */
    assert_true(nparts <= 16);
    rd_kafka_poll_set_consumer(rk);
    for (int p = 0; p < nparts; p++) {
        watermarks(rk, topic, p, &lo, &hi[p]);
        next[p] = lo;
        total += (int)(hi[p] - lo);
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "assign %s: %s", topic, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);

    int64_t until = mono_ms() + 60000;
    for (;;) {
        bool all = true;
        for (int p = 0; p < nparts; p++)
            all = all && next[p] >= hi[p];
        if (all)
            break;
        CHECK(mono_ms() < until, "reading %s: %d of %d records after 60 s", topic, n, total);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "reading %s: %s\n", topic, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->partition < 0 || m->partition >= nparts || m->offset < next[m->partition]) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (n == cap) {
            cap *= 2;
            kmsg_t *grown = realloc(ms, (size_t)cap * sizeof(*ms));
            assert_non_null(grown);
            ms = grown;
            o->p = ms;
        }
        kmsg_t *k = &ms[n++];
        memset(k, 0, sizeof(*k));
        o->n = n;
        k->partition = m->partition;
        k->offset = m->offset;
        next[m->partition] = m->offset + 1;
        k->keylen = m->key_len;
        k->key = memdup0(m->key, m->key_len);
        k->len = m->len;
        k->value = (uint8_t *)memdup0(m->payload, m->len);
        rd_kafka_headers_t *hs;
        if (rd_kafka_message_headers(m, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            const char *hn;
            const void *hv;
            size_t hl;
            for (size_t i = 0; k->nh < MAX_HDRS && rd_kafka_header_get_all(hs, i, &hn, &hv, &hl) ==
                                                       RD_KAFKA_RESP_ERR_NO_ERROR;
                 i++) {
                k->hname[k->nh] = memdup0(hn, strlen(hn));
                k->hnull[k->nh] = hv == NULL;
                k->hval[k->nh] = memdup0(hv, hv ? hl : 0);
                k->hlen[k->nh] = hv ? hl : 0;
                k->nh++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    *count = n;
    return ms;
}

/* The group's committed offsets on topic must be its end (high watermark)
 * on every partition. Asks with a client of that group.id that never joins. */
static void assert_committed_at_end(case_t *c, int which)
{
    const char *topic = c->topics[which];
    const char *kv[] = {"group.id", c->group, "enable.auto.commit", "false", NULL};
    rd_kafka_t *rk = kafka_new(RD_KAFKA_CONSUMER, kv, NULL);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->parts[which]);
    rd_kafka_resp_err_t e;
    int64_t until = mono_ms() + 60000;
    for (int p = 0; p < c->parts[which]; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    while ((e = rd_kafka_committed(rk, l, 10000)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        CHECK(mono_ms() < until, "committed offsets of %s on %s: %s", c->group, topic,
              rd_kafka_err2str(e));
        sleep_ms(500);
    }
    for (int i = 0; i < l->cnt; i++) {
        int64_t lo, hi;
        rd_kafka_topic_partition_t *tp = &l->elems[i];
        watermarks(rk, topic, tp->partition, &lo, &hi);
        CHECK(tp->err == RD_KAFKA_RESP_ERR_NO_ERROR, "committed %s[%d]: %s", topic,
              (int)tp->partition, rd_kafka_err2str(tp->err));
        if (hi == 0 && tp->offset < 0)
            continue; /* an empty partition: nothing to commit */
        CHECK(tp->offset == hi,
              "group %s: committed offset of %s[%d] is %lld, the partition ends at %lld", c->group,
              topic, (int)tp->partition, (long long)tp->offset, (long long)hi);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
}

/* ---- case 1: outcomes ------------------------------------------------- */

#define C1_OK 100
#define C1_N 116

/* 1: a retries_exhausted DLQ record must hold the original record's value
 * bytes, as docs/runtime.md says of every dead-letter record. The runtime
 * writes the envelope of the task's last delivery instead (the retry topic
 * re-encodes it with attempt+1): set 0 to accept exactly that (the original
 * envelope with attempt = max_attempts - 1) if that is the intended format. */
#ifndef DLQ_EXHAUSTED_ORIGINAL_BYTES
#define DLQ_EXHAUSTED_ORIGINAL_BYTES 1
#endif

static const char *c1_retry_yaml = "  local_attempts: 2\n"
                                   "  local_backoff_initial: 10ms\n"
                                   "  local_backoff_max: 100ms\n"
                                   "  max_attempts: 4\n"
                                   "  backoff_initial: 200ms\n"
                                   "  backoff_max: 1s\n";

static int64_t num_hdr(const kmsg_t *m, const char *name, const char *id)
{
    const char *v = kmsg_hdr(m, name);
    char *end;
    CHECK(v && *v, "DLQ record of %s: header %s missing or empty", id, name);
    long long x = strtoll(v, &end, 10);
    CHECK(*end == '\0', "DLQ record of %s: header %s=\"%s\" is not a decimal number", id, name, v);
    return (int64_t)x;
}

static void str_hdr_eq(const kmsg_t *m, const char *name, const char *want, const char *id)
{
    const char *v = kmsg_hdr(m, name);
    CHECK(v != NULL, "record of %s: header %s missing", id, name);
    CHECK(strcmp(v, want) == 0, "record of %s: header %s=\"%s\", want \"%s\"", id, name, v, want);
}

static void test_outcomes(void **state)
{
    case_t *c = &g_case;
    task_rec_t *ts = tasks_new(C1_N);
    prod_t p;
    tally_t t;
    unsigned seed = (unsigned)getpid() ^ (unsigned)wall_ms();
    int n = 0, dlq_expected = 0, nd = 0, nr = 0;
    (void)state;
    case_open(c, "c1", "outcomes", 2, 2, false);

    /* specials first, then the ok tasks (so that ok tasks come after every
     * special one on its partition), the other binary's task last */
    for (int i = 0; i < 5; i++, n++)
        task_fill(&ts[n], K_F2, c->tag, n, NULL, "rt_test", "fail-until:2");
    for (int i = 0; i < 3; i++, n++)
        task_fill(&ts[n], K_PERM, c->tag, n, NULL, "rt_test", "perm");
    for (int i = 0; i < 2; i++, n++)
        task_fill(&ts[n], K_LOCAL, c->tag, n, NULL, "rt_test", "local-until:1");
    task_fill(&ts[n], K_F100, c->tag, n, NULL, "rt_test", "fail-until:100");
    n++;
    for (int i = 0; i < 2; i++, n++) {
        task_fill(&ts[n], K_UNDEC, c->tag, n, NULL, "rt_test", "ok");
        task_make_garbage(&ts[n], &seed);
    }
    for (int i = 0; i < 2; i++, n++)
        task_fill(&ts[n], K_UNKNOWN, c->tag, n, NULL, "mystery", "ok");
    for (int i = 0; i < C1_OK; i++, n++)
        task_fill(&ts[n], K_OK, c->tag, n, NULL, "rt_test", "ok");
    task_fill(&ts[n], K_PUSH, c->tag, n, NULL, "push", "ok");
    n++;
    assert_int_equal(n, C1_N);
    for (int i = 0; i < n; i++) {
        int k = ts[i].kind;
        dlq_expected += k == K_PERM || k == K_F100 || k == K_UNDEC || k == K_UNKNOWN;
    }
    assert_int_equal(dlq_expected, 8);

    prod_open(&p);
    for (int i = 0; i < n; i++)
        task_produce(&p, c->topics[T_TASK], &ts[i]);
    prod_close(&p);
    for (int i = 0; i < n; i++)
        CHECK(ts[i].sent.reported && ts[i].sent.err == 0, "no delivery report for %s", ts[i].id);

    /* an undecodable or unknown record must not stop its partition: there
     * must be ok tasks after it on the same partition (checked done below) */
    for (int i = 0; i < n; i++) {
        if (ts[i].kind != K_UNDEC && ts[i].kind != K_UNKNOWN)
            continue;
        int after = 0;
        for (int j = 0; j < n; j++)
            after += ts[j].kind == K_OK && ts[j].sent.partition == ts[i].sent.partition &&
                     ts[j].sent.offset > ts[i].sent.offset;
        CHECK(after > 0, "test setup: no ok task after %s on partition %d", ts[i].id,
              (int)ts[i].sent.partition);
    }

    child_conf_t cc = {.workers = 8, .unknown_tasks = "dead_letter", .retry_yaml = c1_retry_yaml};
    child_t *ch = child_start(c, "c1", &cc);
    const child_t *chs[] = {ch};
    int want_done = 0;
    for (int i = 0; i < n; i++)
        want_done += ts[i].kind == K_OK || ts[i].kind == K_F2 || ts[i].kind == K_LOCAL;
    tally_init(&t, n);
    wait_tally(c, &t, chs, 1, false, want_done, 120, "tasks done");
    int64_t until = mono_ms() + 90000;
    while (topic_end_sum(c, T_DLQ) < dlq_expected) {
        children_check(c);
        CHECK(mono_ms() < until, "DLQ holds %lld of %d records after 90 s",
              (long long)topic_end_sum(c, T_DLQ), dlq_expected);
        sleep_ms(100);
    }
    child_stop_expect_0(c, ch, false);
    tally_children(&t, c, chs, 1);
    CHECK(t.bad == 0, "%d malformed lines in %s", t.bad, ch->record);

    /* the record file */
    for (int i = 0; i < n; i++) {
        task_rec_t *x = &ts[i];
        switch (x->kind) {
        case K_OK:
            CHECK(t.done[i] >= 1, "ok task %s has no done line", x->id);
            CHECK(t.done_att_max[i] == 0, "ok task %s done at attempt %d", x->id,
                  t.done_att_max[i]);
            break;
        case K_F2:
            CHECK(t.done[i] >= 1, "fail-until:2 task %s has no done line", x->id);
            CHECK(t.done_att_min[i] == 2 && t.done_att_max[i] == 2,
                  "fail-until:2 task %s done at attempts %d..%d, want 2 (third delivery)", x->id,
                  t.done_att_min[i], t.done_att_max[i]);
            break;
        case K_LOCAL:
            CHECK(t.done[i] >= 1, "local-until:1 task %s has no done line", x->id);
            CHECK(t.done_att_max[i] == 0,
                  "local-until:1 task %s done at delivery attempt %d: it went through the retry "
                  "topic instead of an in-process retry",
                  x->id, t.done_att_max[i]);
            CHECK(t.start[i] >= 2, "local-until:1 task %s: %d tries, want >= 2", x->id, t.start[i]);
            break;
        case K_PERM:
            CHECK(t.start[i] >= 1 && t.done[i] == 0, "perm task %s: %d starts, %d done", x->id,
                  t.start[i], t.done[i]);
            break;
        case K_F100:
            CHECK(t.done[i] == 0, "fail-until:100 task %s was done", x->id);
            CHECK(t.start[i] >= 4 && t.start_att_max[i] == 3,
                  "fail-until:100 task %s: %d tries, last delivery attempt %d, want 3 (4 "
                  "deliveries)",
                  x->id, t.start[i], t.start_att_max[i]);
            break;
        default: /* undecodable, unknown, push: never reach the processor */
            CHECK(t.start[i] == 0 && t.done[i] == 0,
                  "task %s (header task_type %s) reached the processor (%d starts, %d done)", x->id,
                  x->type_hdr, t.start[i], t.done[i]);
        }
    }

    /* the DLQ: exactly the 8 records, each complete */
    kmsg_t *dlq = topic_read_all(c->topics[T_DLQ], c->parts[T_DLQ], &nd);
    CHECK(nd == dlq_expected, "DLQ holds %d records, want exactly %d", nd, dlq_expected);
    static const char *const dlq_hdrs[] = {
        HDR_DLQ_ORIGINAL_TOPIC,     HDR_DLQ_ORIGINAL_PARTITION, HDR_DLQ_ORIGINAL_OFFSET,
        HDR_DLQ_ORIGINAL_TIMESTAMP, HDR_DLQ_CONSUMER_GROUP,     HDR_DLQ_TASK_TYPE,
        HDR_DLQ_ATTEMPTS,           HDR_DLQ_ERROR_KIND,         HDR_DLQ_ERROR_MESSAGE,
        HDR_DLQ_FIRST_FAILURE,      HDR_DLQ_LAST_FAILURE,
    };
    int *seen = xcalloc((size_t)n, sizeof(int));
    const kmsg_t *exhausted = NULL;
    const task_rec_t *exhausted_task = NULL;
    assert_non_null(seen);
    for (int r = 0; r < nd; r++) {
        const kmsg_t *m = &dlq[r];
        const char *id = kmsg_hdr(m, HDR_TASK_ID);
        int idx = -1;
        CHECK(id != NULL, "DLQ record %d@%lld has no %s header", (int)m->partition,
              (long long)m->offset, HDR_TASK_ID);
        for (int i = 0; i < n && idx < 0; i++)
            idx = strcmp(ts[i].id, id) == 0 ? i : -1;
        CHECK(idx >= 0, "DLQ record with unknown task_id %s", id);
        task_rec_t *x = &ts[idx];
        seen[idx]++;
        CHECK(x->kind == K_PERM || x->kind == K_F100 || x->kind == K_UNDEC || x->kind == K_UNKNOWN,
              "task %s (payload \"%s\", header task_type %s) was dead-lettered", id, x->payload,
              x->type_hdr);
        for (size_t h = 0; h < sizeof(dlq_hdrs) / sizeof(dlq_hdrs[0]); h++)
            CHECK(kmsg_hdr_count(m, dlq_hdrs[h]) == 1,
                  "DLQ record of %s: header %s appears %d "
                  "times, want once",
                  id, dlq_hdrs[h], kmsg_hdr_count(m, dlq_hdrs[h]));
        /* original headers and key */
        str_hdr_eq(m, HDR_TASK_TYPE, x->type_hdr, id);
        str_hdr_eq(m, HDR_TRACEPARENT, x->traceparent, id);
        CHECK(m->keylen == strlen(x->key) && memcmp(m->key, x->key, m->keylen) == 0,
              "DLQ record of %s: key \"%s\", want \"%s\"", id, m->key, x->key);
        /* where it came from: the task topic record, also after retries */
        str_hdr_eq(m, HDR_DLQ_ORIGINAL_TOPIC, c->topics[T_TASK], id);
        CHECK(num_hdr(m, HDR_DLQ_ORIGINAL_PARTITION, id) == x->sent.partition &&
                  num_hdr(m, HDR_DLQ_ORIGINAL_OFFSET, id) == x->sent.offset,
              "DLQ record of %s: original %lld@%lld, it was produced to %d@%lld", id,
              (long long)num_hdr(m, HDR_DLQ_ORIGINAL_PARTITION, id),
              (long long)num_hdr(m, HDR_DLQ_ORIGINAL_OFFSET, id), (int)x->sent.partition,
              (long long)x->sent.offset);
        CHECK(num_hdr(m, HDR_DLQ_ORIGINAL_TIMESTAMP, id) == x->sent.timestamp,
              "DLQ record of %s: original timestamp %lld, the record's is %lld", id,
              (long long)num_hdr(m, HDR_DLQ_ORIGINAL_TIMESTAMP, id), (long long)x->sent.timestamp);
        str_hdr_eq(m, HDR_DLQ_CONSUMER_GROUP, c->group, id);
        const char *kind = x->kind == K_PERM    ? DLQ_KIND_PERMANENT
                           : x->kind == K_F100  ? DLQ_KIND_RETRIES_EXHAUSTED
                           : x->kind == K_UNDEC ? DLQ_KIND_UNDECODABLE
                                                : DLQ_KIND_UNKNOWN_TYPE;
        str_hdr_eq(m, HDR_DLQ_ERROR_KIND, kind, id);
        str_hdr_eq(m, HDR_DLQ_TASK_TYPE, x->kind == K_UNKNOWN ? "mystery" : "rt_test", id);
        CHECK(num_hdr(m, HDR_DLQ_ATTEMPTS, id) == (x->kind == K_F100 ? 4 : 1),
              "DLQ record of %s (%s): dlq_attempts %lld", id, kind,
              (long long)num_hdr(m, HDR_DLQ_ATTEMPTS, id));
        const char *msg = kmsg_hdr(m, HDR_DLQ_ERROR_MESSAGE);
        CHECK(msg && *msg, "DLQ record of %s: empty error message", id);
        if (x->kind == K_PERM)
            CHECK(strstr(msg, "permanent failure requested") != NULL,
                  "DLQ record of %s: error message \"%s\" is not the processor's reason", id, msg);
        int64_t first = num_hdr(m, HDR_DLQ_FIRST_FAILURE, id);
        int64_t last = num_hdr(m, HDR_DLQ_LAST_FAILURE, id);
        CHECK(first >= c->started_wall_ms - 600000 && first <= last && last <= wall_ms() + 600000,
              "DLQ record of %s: first failure %lld, last failure %lld are not Unix ms of this "
              "run in order",
              id, (long long)first, (long long)last);
        /* the value: the original bytes (checked last for the record that
         * went through the retry topic) */
        if (x->kind == K_F100) {
            exhausted = m;
            exhausted_task = x;
        } else {
            CHECK(m->len == x->len && memcmp(m->value, x->value, x->len) == 0,
                  "DLQ record of %s: the value is not the original bytes (%zu bytes, original "
                  "%zu)",
                  id, m->len, x->len);
        }
    }
    for (int i = 0; i < n; i++) {
        int k = ts[i].kind;
        bool want = k == K_PERM || k == K_F100 || k == K_UNDEC || k == K_UNKNOWN;
        CHECK(seen[i] == (want ? 1 : 0),
              "task %s (header task_type %s, payload \"%s\") is %d "
              "times in the DLQ, want %d",
              ts[i].id, ts[i].type_hdr, ts[i].payload, seen[i], want ? 1 : 0);
    }

    /* the retry topic: fail-until tasks only, each attempt once, origin kept */
    kmsg_t *rt = topic_read_all(c->topics[T_RETRY], c->parts[T_RETRY], &nr);
    int *mask = xcalloc((size_t)n, sizeof(int));
    assert_non_null(mask);
    for (int r = 0; r < nr; r++) {
        const kmsg_t *m = &rt[r];
        const char *id = kmsg_hdr(m, HDR_TASK_ID);
        int idx = -1;
        CHECK(id != NULL, "retry record without task_id");
        for (int i = 0; i < n && idx < 0; i++)
            idx = strcmp(ts[i].id, id) == 0 ? i : -1;
        CHECK(idx >= 0, "retry record with unknown task_id %s", id);
        CHECK(ts[idx].kind == K_F2 || ts[idx].kind == K_F100,
              "task %s (payload \"%s\") went through the retry topic", id, ts[idx].payload);
        int64_t a = num_hdr(m, HDR_ATTEMPT, id);
        CHECK(a >= 1 && a <= 3, "retry record of %s: attempt %lld", id, (long long)a);
        mask[idx] |= 1 << a;
        str_hdr_eq(m, HDR_ORIGIN_TOPIC, c->topics[T_TASK], id);
        CHECK(num_hdr(m, HDR_ORIGIN_OFFSET, id) == ts[idx].sent.offset &&
                  num_hdr(m, HDR_ORIGIN_PARTITION, id) == ts[idx].sent.partition,
              "retry record of %s: origin is not the task topic record", id);
    }
    for (int i = 0; i < n; i++) {
        if (ts[i].kind == K_F2)
            CHECK(mask[i] == ((1 << 1) | (1 << 2)),
                  "fail-until:2 task %s: retry topic attempts mask 0x%x, want attempts 1 and 2",
                  ts[i].id, mask[i]);
        if (ts[i].kind == K_F100)
            CHECK(mask[i] == ((1 << 1) | (1 << 2) | (1 << 3)),
                  "fail-until:100 task %s: retry topic attempts mask 0x%x, want 1, 2 and 3",
                  ts[i].id, mask[i]);
    }

    /* nothing left behind: the group committed the end of both topics */
    assert_committed_at_end(c, T_TASK);
    assert_committed_at_end(c, T_RETRY);
    print_message("case outcomes: %d tasks, %ld done lines, DLQ %d records, retry topic %d "
                  "records, duplicates %ld\n",
                  n, t.done_lines, nd, nr, t.done_lines - t.unique_done);

    /* Last: the retries_exhausted record must carry the original value too
     * (docs/runtime.md: "A dead-letter record has the original value and
     * headers"), not the envelope of its last delivery. */
    CHECK(exhausted != NULL, "no retries_exhausted DLQ record");
    if (exhausted->len != exhausted_task->len ||
        memcmp(exhausted->value, exhausted_task->value, exhausted_task->len) != 0) {
        task_t got, want = exhausted_task->env;
        void *owner = NULL;
        char err[256];
        bool same_task = false;
        unsigned att = 0;
        uint8_t *wbuf = NULL;
        size_t wlen = 0;
        if (task_decode(exhausted->value, exhausted->len, &got, &owner, err, sizeof(err)) == 0) {
            att = got.attempt;
            same_task = strcmp(got.task_id, want.task_id) == 0 &&
                        strcmp(got.trace_id, want.trace_id) == 0 &&
                        got.created_at_ms == want.created_at_ms &&
                        got.payload_len == want.payload_len &&
                        memcmp(got.payload, want.payload, want.payload_len) == 0;
            task_decoded_free(owner);
        }
        /* the original envelope with attempt 3, byte for byte */
        want.attempt = 3;
        assert_int_equal(task_encode(&want, &wbuf, &wlen), 0);
        bool reencoded = wlen == exhausted->len && memcmp(wbuf, exhausted->value, wlen) == 0;
        free(wbuf);
        if (!DLQ_EXHAUSTED_ORIGINAL_BYTES && reencoded) {
            print_message("note: the retries_exhausted DLQ record of %s carries the envelope of "
                          "its last delivery (attempt 3), not the original value bytes\n",
                          exhausted_task->id);
        } else {
            fail_msg("DLQ record of %s (retries_exhausted): the value is not the original "
                     "record's bytes (%zu bytes, original %zu): %s %u, original 0)",
                     exhausted_task->id, exhausted->len, exhausted_task->len,
                     same_task && reencoded
                         ? "it is the task's envelope as re-encoded for its last delivery "
                           "through the retry topic (envelope attempt"
                         : "it is not the original task envelope (envelope attempt",
                     att);
        }
    }
    c->passed = true;
}

/* ---- case 2: kill -9 -------------------------------------------------- */

#define C2_N 3000

typedef void (*payload_fn)(int idx, char *buf, size_t len);

/* n tasks <tag>-<first_idx..>, keyed by id (nkeys 0) or by one of nkeys keys
 * (key-<idx % nkeys>), with payload, or payload_of(idx) when payload is NULL. */
static void produce_tasks(case_t *c, int n, const char *payload, payload_fn payload_of, int nkeys,
                          int first_idx)
{
    prod_t p;
    task_rec_t t;
    prod_open(&p);
    for (int i = 0; i < n; i++) {
        char key[32], pl[NAME_MAX_LEN + 32];
        snprintf(key, sizeof(key), "key-%02d", (first_idx + i) % (nkeys > 0 ? nkeys : 1));
        if (!payload)
            payload_of(first_idx + i, pl, sizeof(pl));
        task_fill(&t, K_SLEEP, c->tag, first_idx + i, nkeys > 0 ? key : NULL, "rt_test",
                  payload ? payload : pl);
        owned_t *o = own(t.value, own_free, 0);
        produce_raw(&p, c->topics[T_TASK], t.key, t.type_hdr, t.id, t.traceparent, t.value, t.len,
                    NULL);
        own_drop(o);
    }
    prod_close(&p);
}

static void produce_simple(case_t *c, int n, const char *payload, int first_idx)
{
    produce_tasks(c, n, payload, NULL, 0, first_idx);
}

static void test_kill9(void **state)
{
    case_t *c = &g_case;
    tally_t t;
    char sbuf[64];
    (void)state;
    case_open(c, "c2", "kill9", 2, 1, false);
    produce_simple(c, C2_N, "sleep:2", 0);
    tally_init(&t, C2_N);

    child_conf_t cc = {.workers = 8};
    child_t *a = child_start(c, "c2-a", &cc);
    const child_t *only_a[] = {a};
    wait_tally(c, &t, only_a, 1, false, 500, 120, "done before kill -9");
    int st = child_stop(c, a, SIGKILL);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child a: %s, want killed by SIGKILL",
          status_str(st, sbuf, sizeof(sbuf)));
    tally_children(&t, c, only_a, 1);
    int done_by_a = t.unique_done;

    child_t *b = child_start(c, "c2-b", &cc);
    const child_t *both[] = {a, b};
    wait_tally(c, &t, both, 2, false, C2_N, 150, "done after the restart");
    child_stop_expect_0(c, b, false);
    tally_children(&t, c, both, 2);
    CHECK(t.bad == 0, "%d malformed record lines", t.bad);
    for (int i = 0; i < C2_N; i++)
        CHECK(t.done[i] >= 1, "task %s-%06d was never done: lost across kill -9", c->tag, i);
    tally_t tb;
    tally_init(&tb, C2_N);
    tally_add(&tb, b->record, c->tag);
    tally_t ta;
    tally_init(&ta, C2_N);
    tally_add(&ta, a->record, c->tag);
    int redone = 0;
    for (int i = 0; i < C2_N; i++)
        redone += ta.done[i] > 0 && tb.done[i] > 0;
    assert_committed_at_end(c, T_TASK);
    print_message("case kill9: %d tasks, %d done before kill -9 (%ld done lines), %ld done "
                  "lines in all, duplicates %ld (tasks done by both children: %d)\n",
                  C2_N, done_by_a, ta.done_lines, t.done_lines, t.done_lines - C2_N, redone);
    c->passed = true;
}

/* ---- case 3: SIGTERM drains ------------------------------------------- */

#define C3_N 64

static void test_sigterm_drains(void **state)
{
    case_t *c = &g_case;
    tally_t t, ta;
    (void)state;
    case_open(c, "c3", "sigterm", 2, 1, false);
    produce_simple(c, C3_N, "sleep:1500", 0);
    tally_init(&t, C3_N);
    tally_init(&ta, C3_N);

    /* max_in_flight 16: part of the work is left for the second child */
    child_conf_t cc = {.workers = 8, .max_in_flight = 16, .max_delayed = 16, .grace = "30s"};
    child_t *a = child_start(c, "c3-a", &cc);
    const child_t *only_a[] = {a};
    wait_tally(c, &t, only_a, 1, true, 8, 90, "start lines before SIGTERM");
    tally_children(&ta, c, only_a, 1);
    int started_before = 0;
    bool *was_started = xcalloc(C3_N, sizeof(bool));
    assert_non_null(was_started);
    for (int i = 0; i < C3_N; i++) {
        was_started[i] = ta.start[i] > 0;
        started_before += was_started[i];
    }
    child_stop_expect_0(c, a, false);
    tally_children(&ta, c, only_a, 1);
    for (int i = 0; i < C3_N; i++) {
        CHECK(!was_started[i] || ta.done[i] == 1,
              "task %s-%06d started before SIGTERM but has %d done lines in the stopped child's "
              "record: not drained",
              c->tag, i, ta.done[i]);
        CHECK(ta.start[i] == 0 || ta.done[i] >= 1,
              "task %s-%06d started during the drain but was not finished", c->tag, i);
    }
    int done_by_a = ta.unique_done;

    child_t *b = child_start(c, "c3-b", &cc);
    const child_t *both[] = {a, b};
    wait_tally(c, &t, both, 2, false, C3_N, 120, "done after the restart");
    child_stop_expect_0(c, b, false);
    tally_children(&t, c, both, 2);
    CHECK(t.bad == 0, "%d malformed record lines", t.bad);
    for (int i = 0; i < C3_N; i++) {
        CHECK(t.done[i] == 1,
              "task %s-%06d done %d times: a clean stop must commit exactly what finished", c->tag,
              i, t.done[i]);
    }
    assert_committed_at_end(c, T_TASK);
    print_message("case sigterm: %d tasks, %d started before SIGTERM, %d finished by the "
                  "stopped child, %d by the next, duplicates %ld\n",
                  C3_N, started_before, done_by_a, C3_N - done_by_a, t.done_lines - C3_N);
    c->passed = true;
}

/* ---- case 4: rebalance ------------------------------------------------ */

#define C4_N 600
#define C4_KEYS 30

typedef struct {
    int last[C4_KEYS];
    int violations;
    char first[256];
    long done;
} order_t;

static void order_line(void *ctx, bool done, int idx, unsigned attempt)
{
    order_t *o = ctx;
    (void)attempt;
    if (!done || idx < 0 || idx >= C4_N)
        return;
    o->done++;
    int k = idx % C4_KEYS;
    if (idx < o->last[k]) {
        if (o->violations++ == 0)
            snprintf(o->first, sizeof(o->first), "key-%02d: task %d done after task %d", k, idx,
                     o->last[k]);
    }
    if (idx > o->last[k])
        o->last[k] = idx;
}

/* sleep:20 on average, but rounds of one key alternate 38 ms and 2 ms: were
 * two records of one key run on different workers, the later (shorter) one
 * would often finish first and show as an order violation. */
static void c4_payload(int idx, char *buf, size_t len)
{
    snprintf(buf, len, "sleep:%d", (idx / C4_KEYS) % 2 == 0 ? 38 : 2);
}

static void test_rebalance(void **state)
{
    case_t *c = &g_case;
    tally_t t;
    (void)state;
    /* one retry partition: of the 4 partitions the group shares, the second
     * member surely gets a task partition */
    case_open(c, "c4", "rebalance", 1, 1, false);
    produce_tasks(c, C4_N, NULL, c4_payload, C4_KEYS, 0);
    tally_init(&t, C4_N);

    /* A bounded in-flight count, so that a revoke leaves work for the
     * newcomer (a revoke waits for what the member holds), yet large enough
     * for several records of one key to be held at once (so that running
     * them on different workers would show as a per-key order violation). */
    child_conf_t cc = {.workers = 4, .max_in_flight = 64, .max_delayed = 64};
    child_t *a = child_start(c, "c4-a", &cc);
    const child_t *only_a[] = {a};
    wait_tally(c, &t, only_a, 1, false, 100, 90, "done by the first member");
    child_t *b = child_start(c, "c4-b", &cc);
    const child_t *both[] = {a, b};
    wait_tally(c, &t, both, 2, false, C4_N, 150, "done by the two members");
    kill(a->pid, SIGTERM);
    kill(b->pid, SIGTERM);
    child_stop_expect_0(c, b, true);
    child_stop_expect_0(c, a, true);
    tally_children(&t, c, both, 2);
    CHECK(t.bad == 0, "%d malformed record lines", t.bad);
    for (int i = 0; i < C4_N; i++)
        CHECK(t.done[i] >= 1, "task %s-%06d was never done", c->tag, i);

    order_t oa, ob;
    memset(&oa, 0, sizeof(oa));
    memset(&ob, 0, sizeof(ob));
    for (int k = 0; k < C4_KEYS; k++)
        oa.last[k] = ob.last[k] = -1;
    CHECK(records_foreach(a->record, c->tag, order_line, &oa) == 0, "malformed lines");
    CHECK(records_foreach(b->record, c->tag, order_line, &ob) == 0, "malformed lines");
    CHECK(oa.done > 0 && ob.done > 0,
          "both members must have done work: first %ld, second %ld done lines", oa.done, ob.done);
    CHECK(oa.violations == 0, "first member: %d per-key order violations, first: %s", oa.violations,
          oa.first);
    CHECK(ob.violations == 0, "second member: %d per-key order violations, first: %s",
          ob.violations, ob.first);
    assert_committed_at_end(c, T_TASK);
    print_message("case rebalance: %d tasks, first member %ld done, second %ld done, duplicates "
                  "%ld\n",
                  C4_N, oa.done, ob.done, t.done_lines - C4_N);
    c->passed = true;
}

/* ---- case 8: stopped while the group rebalances ------------------------ */

#define C8_N 300
#define C8_ROUNDS 10
#define C8_MEMBERS 3 /* per round, in slots 1..3 */

/* Members that start and are stopped while the group rebalances (joining,
 * mid-assignment, while others leave) must each end with exit 0 within the
 * stop bound: librdkafka 2.0 aborts or hangs when a cooperative-sticky member
 * closes at some of these moments, which the runtime's leave steps avoid.
 * Every task is still done at least once. */
static void test_stop_mid_rebalance(void **state)
{
    case_t *c = &g_case;
    tally_t t;
    char(*records)[sizeof(c->ch[0].record)];
    int nrecords = 0;
    (void)state;
    case_open(c, "c8", "churn", 1, 1, false);
    produce_simple(c, C8_N, "sleep:5", 0);
    tally_init(&t, C8_N);
    records = xcalloc(1 + C8_ROUNDS * C8_MEMBERS, sizeof(*records)); /* owned by the case */

    child_conf_t anchor_cc = {.workers = 4};
    child_conf_t cc = {.workers = 4, .grace = "2s"};
    child_t *anchor = child_start(c, "c8-anchor", &anchor_cc);
    snprintf(records[nrecords++], sizeof(records[0]), "%s", anchor->record);
    for (int r = 0; r < C8_ROUNDS; r++) {
        child_t *m[C8_MEMBERS];
        for (int k = 0; k < C8_MEMBERS; k++) {
            char name[32];
            snprintf(name, sizeof(name), "c8-r%02d-m%d", r, k);
            m[k] = child_start(c, name, &cc);
            snprintf(records[nrecords++], sizeof(records[0]), "%s", m[k]->record);
        }
        /* each is stopped 0..990 ms after it began consuming, at a
         * different moment of the rebalances the round causes */
        int64_t began[C8_MEMBERS], until = mono_ms() + 60000;
        for (int k = 0; k < C8_MEMBERS; k++) {
            while (!ts_file_has(m[k]->log, "consuming as group")) {
                children_check(c);
                CHECK(mono_ms() < until, "member %s did not start consuming in 60 s (log %s)",
                      m[k]->name, m[k]->log);
                sleep_ms(5);
            }
            began[k] = mono_ms();
        }
        for (int k = 0; k < C8_MEMBERS; k++) {
            int64_t at = began[k] + ((r * 37 + k * 53) % 100) * 10;
            if (mono_ms() < at)
                sleep_ms(at - mono_ms());
            kill(m[k]->pid, SIGTERM);
        }
        for (int k = 0; k < C8_MEMBERS; k++)
            child_stop_expect_0(c, m[k], true);
        c->nch = 1; /* slots 1..3 serve the next round; the logs stay on disk */
    }

    int64_t until = mono_ms() + 120000;
    for (;;) {
        tally_reset(&t);
        for (int i = 0; i < nrecords; i++)
            tally_add(&t, records[i], c->tag);
        if (t.unique_done >= C8_N)
            break;
        children_check(c);
        CHECK(mono_ms() < until, "case c8: %d of %d tasks done 120 s after the churn",
              t.unique_done, C8_N);
        sleep_ms(100);
    }
    child_stop_expect_0(c, anchor, false);
    CHECK(t.bad == 0, "%d malformed record lines", t.bad);
    print_message("case stop mid-rebalance: %d members stopped, each with exit 0; %d tasks done, "
                  "duplicates %ld\n",
                  C8_ROUNDS * C8_MEMBERS, C8_N, t.done_lines - C8_N);
    c->passed = true;
}

/* ---- case 5: broker away ---------------------------------------------- */

#define C5_N 200
#define C5_FREEZE_MS 20000

static pid_t kafka_pid(void)
{
    char path[PATH_MAX], buf[64], cmd[4096];
    FILE *f;
    size_t n;
    CHECK(g_stack_dir && *g_stack_dir,
          "IMTASK_STACK_DIR is not set: pass --test_env=IMTASK_STACK_DIR=<stack dir> (the "
          "directory of kafka.pid)");
    snprintf(path, sizeof(path), "%s/kafka.pid", g_stack_dir);
    f = fopen(path, "r");
    CHECK(f != NULL, "%s: %s", path, strerror(errno));
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    long pid = strtol(buf, NULL, 10);
    CHECK(pid > 1, "%s holds no pid", path);
    /* make sure it is the broker before stopping it */
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    f = fopen(path, "r");
    CHECK(f != NULL, "the broker pid %ld is not running", pid);
    n = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        cmd[i] = cmd[i] ? cmd[i] : ' ';
    cmd[n] = '\0';
    CHECK(strstr(cmd, "kafka.Kafka") != NULL, "pid %ld is not the Kafka broker: %.200s", pid, cmd);
    return (pid_t)pid;
}

/* SIGSTOP the broker with a guard process (own session) that SIGCONTs it
 * after ms even if this test dies. */
static void broker_freeze(pid_t kpid, int64_t ms)
{
    pid_t g = fork();
    CHECK(g >= 0, "fork: %s", strerror(errno));
    if (g == 0) {
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        setsid();
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        kill(kpid, SIGCONT);
        _exit(0);
    }
    g_thawer_pid = g;
    g_frozen_pid = kpid;
    CHECK(kill(kpid, SIGSTOP) == 0, "SIGSTOP %d: %s", (int)kpid, strerror(errno));
}

static void test_broker_away(void **state)
{
    case_t *c = &g_case;
    tally_t t;
    (void)state;
    pid_t kpid = kafka_pid();
    case_open(c, "c5", "brokeraway", 2, 1, false);
    produce_simple(c, C5_N, "ok", 0);
    tally_init(&t, 2 * C5_N);

    child_conf_t cc = {.workers = 8};
    child_t *a = child_start(c, "c5", &cc);
    const child_t *only_a[] = {a};
    wait_tally(c, &t, only_a, 1, false, C5_N / 2, 90, "done before the broker freeze");
    broker_freeze(kpid, C5_FREEZE_MS);
    int64_t until = mono_ms() + C5_FREEZE_MS;
    while (mono_ms() < until) {
        children_check(c);
        sleep_ms(200);
    }
    thaw_broker();
    waitpid(g_thawer_pid, NULL, 0);
    g_thawer_pid = 0;
    produce_simple(c, C5_N, "ok", C5_N);
    wait_tally(c, &t, only_a, 1, false, 2 * C5_N, 120, "done after the broker came back");
    child_stop_expect_0(c, a, false);
    tally_children(&t, c, only_a, 1);
    CHECK(t.bad == 0, "%d malformed record lines", t.bad);
    for (int i = 0; i < 2 * C5_N; i++)
        CHECK(t.done[i] >= 1, "task %s-%06d was never done", c->tag, i);
    assert_committed_at_end(c, T_TASK);
    print_message("case broker away: %d tasks, duplicates %ld\n", 2 * C5_N,
                  t.done_lines - 2 * C5_N);
    c->passed = true;
}

/* ---- case 6: outputs -------------------------------------------------- */

#define C6_N 50

static void test_outputs(void **state)
{
    case_t *c = &g_case;
    tally_t t;
    char payload[NAME_MAX_LEN + 32];
    int nout = 0;
    (void)state;
    case_open(c, "c6", "outputs", 2, 1, true);
    snprintf(payload, sizeof(payload), "out:%.*s", NAME_MAX_LEN + 16, c->topics[T_OUT]);
    produce_simple(c, C6_N, payload, 0);
    tally_init(&t, C6_N);
    child_conf_t cc = {.workers = 8};
    child_t *a = child_start(c, "c6", &cc);
    const child_t *only_a[] = {a};
    wait_tally(c, &t, only_a, 1, false, C6_N, 90, "done");
    child_stop_expect_0(c, a, false);

    kmsg_t *out = topic_read_all(c->topics[T_OUT], c->parts[T_OUT], &nout);
    int *seen = xcalloc(C6_N, sizeof(int));
    assert_non_null(seen);
    for (int r = 0; r < nout; r++) {
        char want_prefix[16];
        snprintf(want_prefix, sizeof(want_prefix), "%.7s-", c->tag);
        const char *v = (const char *)out[r].value;
        CHECK(strncmp(v, want_prefix, strlen(want_prefix)) == 0, "output record \"%s\"", v);
        int idx = atoi(v + strlen(want_prefix));
        CHECK(idx >= 0 && idx < C6_N, "output record \"%s\"", v);
        CHECK(strcmp(out[r].key, v) == 0, "output record %s has key %s", v, out[r].key);
        seen[idx]++;
    }
    CHECK(nout >= C6_N, "the output topic holds %d records, want >= %d", nout, C6_N);
    for (int i = 0; i < C6_N; i++)
        CHECK(seen[i] >= 1, "task %s-%06d has no output record", c->tag, i);
    assert_committed_at_end(c, T_TASK);
    print_message("case outputs: %d tasks, %d output records\n", C6_N, nout);
    c->passed = true;
}

/* ---- case 7: exactly once across kill -9 --------------------------------- */

#define C7_N 600
#define C7_OUTS 5

/* Until no transaction is open on the topic: the last stable offset (what
 * ListOffsets answers a read_committed client) is the high watermark (what
 * it answers a read_uncommitted one) on every partition. A killed child's
 * open transaction stays open until the broker aborts it (its
 * transaction.timeout.ms, checked every 10 s), and a read_committed reader
 * meets its end of partition at the stable offset: reading before then
 * misses every record after the open transaction. */
static void wait_no_open_txn(const char *topic, int nparts, int timeout_s)
{
    char err[512], where[512] = "";
    int64_t until = mono_ms() + (int64_t)timeout_s * 1000;
    for (;;) {
        int open = ts_kafka_open_txns(g_brokers, &topic, &nparts, 1, where, sizeof(where), err,
                                      sizeof(err));
        CHECK(open >= 0, "%s", err);
        if (!open)
            break;
        CHECK(mono_ms() < until,
              "%s: %d partitions still have an open transaction after %d s "
              "(first %s)",
              topic, open, timeout_s, where);
        sleep_ms(250);
    }
}

typedef struct {
    kmsg_t *ms;
    int n, cap;
    owned_t *o;
} kmsg_list_t;

static void kmsg_collect(void *ctx, const rd_kafka_message_t *m)
{
    kmsg_list_t *l = ctx;
    if (l->n == l->cap) {
        l->cap *= 2;
        kmsg_t *grown = realloc(l->ms, (size_t)l->cap * sizeof(*l->ms));
        assert_non_null(grown);
        l->ms = grown;
        l->o->p = grown;
    }
    kmsg_t *k = &l->ms[l->n];
    memset(k, 0, sizeof(*k));
    k->partition = m->partition;
    k->offset = m->offset;
    k->value = (uint8_t *)memdup0(m->payload, m->len);
    k->len = m->len;
    k->key = memdup0(m->key, m->key_len);
    k->keylen = m->key_len;
    l->o->n = ++l->n;
}

/* Every committed record of topic (isolation.level=read_committed), read
 * until each partition reports its end, once no transaction is open. */
static kmsg_t *topic_read_committed(const char *topic, int nparts, int *count)
{
    char err[512];
    wait_no_open_txn(topic, nparts, 120); /* before the reader's first fetch */
    kmsg_list_t l = {.cap = 1024};
    l.ms = calloc((size_t)l.cap, sizeof(*l.ms));
    assert_non_null(l.ms);
    l.o = own(l.ms, kmsgs_free, 0); /* freed by the case's teardown */
    CHECK(ts_kafka_read(g_brokers, &topic, &nparts, 1, true, kmsg_collect, &l, 120, err,
                        sizeof(err)) == 0,
          "%s: %s (%d records)", topic, err, l.n);
    *count = l.n;
    return l.ms;
}

/* The output topic as a read_committed reader (a gateway) sees it: outputs
 * "<tag>-<task>/<k>" of tasks 0..n-1, k below outs, each exactly once.
 * Returns how many records it holds. */
static int check_outputs_once(case_t *c, int n, int outs)
{
    int nout = 0;
    kmsg_t *out = topic_read_committed(c->topics[T_OUT], c->parts[T_OUT], &nout);
    int *seen = xcalloc((size_t)n * (size_t)outs, sizeof(int));
    char want_prefix[16];
    snprintf(want_prefix, sizeof(want_prefix), "%.7s-", c->tag);
    for (int r = 0; r < nout; r++) {
        const char *v = (const char *)out[r].value;
        int idx = -1, k = -1;
        CHECK(strncmp(v, want_prefix, strlen(want_prefix)) == 0, "output record \"%s\"", v);
        CHECK(sscanf(v + strlen(want_prefix), "%d/%d", &idx, &k) == 2 && idx >= 0 && idx < n &&
                  k >= 0 && k < outs,
              "output record \"%s\"", v);
        seen[idx * outs + k]++;
    }
    for (int i = 0; i < n * outs; i++)
        CHECK(seen[i] == 1,
              "output %s-%06d/%d seen %d times by a read_committed reader, want "
              "exactly 1",
              c->tag, i / outs, i % outs, seen[i]);
    CHECK(nout == n * outs, "%d committed output records, want %d", nout, n * outs);
    return nout;
}

static void test_exactly_once(void **state)
{
    case_t *c = &g_case;
    tally_t t;
    char payload[NAME_MAX_LEN + 48], sbuf[64];
    (void)state;
    case_open(c, "c7", "eos", 2, 3, true);
    snprintf(payload, sizeof(payload), "outs:%d:%.*s", C7_OUTS, NAME_MAX_LEN + 16,
             c->topics[T_OUT]);
    produce_simple(c, C7_N, payload, 0);
    tally_init(&t, C7_N);
    child_conf_t cc = {.workers = 4, .exactly_once = true, .transactions = "per_worker"};
    child_t *a = child_start(c, "c7-a", &cc);
    const child_t *only_a[] = {a};
    wait_tally(c, &t, only_a, 1, false, C7_N / 4, 120, "done before kill -9");
    int st = child_stop(c, a, SIGKILL);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child a: %s, want killed by SIGKILL",
          status_str(st, sbuf, sizeof(sbuf)));
    child_t *b = child_start(c, "c7-b", &cc);
    const child_t *both[] = {a, b};
    wait_tally(c, &t, both, 2, false, C7_N, 150, "done after the restart");
    child_stop_expect_0(c, b, false);
    tally_children(&t, c, both, 2);
    /* each worker's transactional producer was made at start, before the
     * first task, not by the task that needed it */
    for (int i = 0; i < 2; i++)
        CHECK(ts_file_has(both[i]->log, "made 4 transactional producers for 4 workers"),
              "child %s did not make its 4 producers at start (log %s)", both[i]->name,
              both[i]->log);

    /* the outputs, as a read_committed reader (a gateway) sees them: each
     * task's C7_OUTS outputs exactly once, even for the tasks the killed
     * child had half done */
    int nout = check_outputs_once(c, C7_N, C7_OUTS);
    assert_committed_at_end(c, T_TASK);
    print_message("case exactly-once: %d tasks, %ld done lines (%ld processed twice), %d "
                  "committed outputs, each exactly once\n",
                  C7_N, t.done_lines, t.done_lines - C7_N, nout);
    c->passed = true;
}

/* ---- case 10: a task failing in the shared transaction ------------------- */

#define C10_N 240
#define C10_OUTS 4
#define C10_FAIL_EVERY 8 /* every 8th task fails once after writing its outputs */

static char g_c10_out[NAME_MAX_LEN + 16];

/* The value of series on a child's /metrics (ts_metric), or -1; the port is
 * the one its start line logged ("metrics and health on 127.0.0.1:0 (port
 * N)"). */
static double child_metric(const child_t *ch, const char *series)
{
    static const char at[] = " (port ";
    char line[4096];
    int port = 0;
    FILE *f = fopen(ch->log, "r");
    while (f && port <= 0 && fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, at);
        if (p)
            port = atoi(p + strlen(at));
    }
    if (f)
        fclose(f);
    return port > 0 ? ts_metric(port, series) : -1;
}

/* How many lines of the file at path contain needle. */
static int lines_with(const char *path, const char *needle)
{
    char line[8192];
    int n = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return n;
}

static void c10_payload(int idx, char *buf, size_t len)
{
    if (idx % C10_FAIL_EVERY == 0)
        snprintf(buf, len, "outs-until:1:%d:%s", C10_OUTS, g_c10_out);
    else
        snprintf(buf, len, "outs:%d:%s", C10_OUTS, g_c10_out);
}

/* Every worker's task joins one transaction (consumer.transactions:
 * shared, the default); a task that fails after writing takes the
 * transaction down with it, and the tasks that had finished in it run
 * again. A read_committed reader still sees every output exactly once and
 * the failed tasks' outputs of the failed attempt never. */
static void test_shared_txn(void **state)
{
    case_t *c = &g_case;
    tally_t t;
    (void)state;
    case_open(c, "c10", "shared", 2, 1, true);
    snprintf(g_c10_out, sizeof(g_c10_out), "%.*s", (int)sizeof(g_c10_out) - 1, c->topics[T_OUT]);
    produce_tasks(c, C10_N, NULL, c10_payload, 0, 0);
    tally_init(&t, C10_N);
    child_conf_t cc = {.workers = 4, .exactly_once = true};
    child_t *a = child_start(c, "c10-a", &cc);
    const child_t *only_a[] = {a};
    wait_tally(c, &t, only_a, 1, false, C10_N, 120, "all done");
    /* every task committed: each succeeded once (an attempt whose shared
     * transaction aborted does not count) */
    double ok = -1, aborted, committed, repeated;
    for (int64_t until = mono_ms() + 60000; mono_ms() < until; sleep_ms(100)) {
        if ((ok = child_metric(a, "imtask_tasks_succeeded_total{task_type=\"rt_test\"}")) >= C10_N)
            break;
    }
    CHECK(ok == C10_N, "imtask_tasks_succeeded_total %.0f, want %d (log %s)", ok, C10_N, a->log);
    aborted = child_metric(a, "imtask_transactions_total{result=\"aborted\"}");
    committed = child_metric(a, "imtask_transactions_total{result=\"committed\"}");
    repeated = child_metric(a, "imtask_transaction_tasks_repeated_total");
    child_stop_expect_0(c, a, false);
    tally_children(&t, c, only_a, 1);
    /* each failure after writing aborts its transaction (two may share
     * one). A failing task fails once per pass through its local attempts:
     * one aborted again by others until they ran out went through the retry
     * topic and failed once more, so the log, not C10_N / C10_FAIL_EVERY,
     * says how many failures there were (31 aborts for 30 failing tasks
     * seen once). Every finished task run again is counted. */
    int nfail = lines_with(a->log, "failure after writing requested");
    CHECK(nfail >= C10_N / C10_FAIL_EVERY, "%d failures after writing logged, want at least %d",
          nfail, C10_N / C10_FAIL_EVERY);
    CHECK(aborted >= 1 && aborted <= nfail,
          "%.0f aborted transactions, want 1 to %d (the failures after writing logged)", aborted,
          nfail);
    CHECK(committed >= 1, "%.0f committed transactions", committed);
    CHECK(repeated == (double)(t.done_lines - C10_N),
          "imtask_transaction_tasks_repeated_total %.0f, but %ld finished tasks ran again",
          repeated, t.done_lines - C10_N);
    CHECK(ts_file_has(a->log, "made the shared transactional producer"),
          "child did not make its one shared producer at start (log %s)", a->log);
    CHECK(ts_file_has(a->log, "failure after writing requested"),
          "no task failed after writing (log %s)", a->log);
    int nout = check_outputs_once(c, C10_N, C10_OUTS);
    assert_committed_at_end(c, T_TASK);
    print_message("case shared transaction: %d tasks, %d failing once after writing, %.0f "
                  "transactions committed and %.0f aborted, %ld done lines (%ld finished tasks "
                  "ran again after a shared abort), %d committed outputs, each exactly once\n",
                  C10_N, C10_N / C10_FAIL_EVERY, committed, aborted, t.done_lines,
                  t.done_lines - C10_N, nout);
    c->passed = true;
}

/* ---- case 9: exactly-once lanes spread the partitions ------------------- */

#define C9_SLEEP_MS 3000

/* A key the producer's default partitioner (consistent_random: CRC32 of the
 * key) puts on partition p of n. */
static void key_for_partition(int p, int n, char *key, size_t len)
{
    for (int i = 0; i < 100000; i++) {
        snprintf(key, len, "lane-key-%d", i);
        if (rd_kafka_msg_partitioner_consistent_random(NULL, key, strlen(key), n, NULL, NULL) == p)
            return;
    }
    fail_msg("no key for partition %d of %d", p, n);
}

static void test_lanes(void **state)
{
    case_t *c = &g_case;
    char payload[32], key[32], line[512];
    prod_t p;
    task_rec_t t;
    (void)state;
    case_open(c, "c9", "lanes", 1, 1, false);
    const int n = c->parts[T_TASK];
    snprintf(payload, sizeof(payload), "sleep:%d", C9_SLEEP_MS);
    prod_open(&p);
    for (int i = 0; i < n; i++) { /* one slow task on each partition */
        key_for_partition(i, n, key, sizeof(key));
        task_fill(&t, K_SLEEP, c->tag, i, key, "rt_test", payload);
        owned_t *o = own(t.value, own_free, 0);
        produce_raw(&p, c->topics[T_TASK], t.key, t.type_hdr, t.id, t.traceparent, t.value, t.len,
                    NULL);
        own_drop(o);
    }
    prod_close(&p);
    child_conf_t cc = {.workers = n, .exactly_once = true};
    child_t *a = child_start(c, "c9-a", &cc);
    const child_t *only_a[] = {a};
    tally_t tl;
    tally_init(&tl, n);
    wait_tally(c, &tl, only_a, 1, false, n, 120, "all done");
    child_stop_expect_0(c, a, false);
    /* every task started before any finished: each partition had a worker
     * of its own (a worker given two partitions starts the second only
     * after the first's C9_SLEEP_MS) */
    FILE *f = fopen(a->record, "r");
    CHECK(f != NULL, "record file %s: %s", a->record, strerror(errno));
    int starts = 0, starts_before_done = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "start ", 6) == 0)
            starts++;
        else if (strncmp(line, "done ", 5) == 0 && starts_before_done < 0)
            starts_before_done = starts;
    }
    fclose(f);
    CHECK(starts == n, "%d start lines, want %d (record %s)", starts, n, a->record);
    CHECK(starts_before_done == n,
          "%d of %d tasks had started when the first finished: partitions shared a worker while "
          "another was idle (record %s, log %s)",
          starts_before_done, n, a->record, a->log);
    assert_committed_at_end(c, T_TASK);
    print_message("case lanes: %d partitions, %d workers: all %d tasks ran at once\n", n, n, n);
    c->passed = true;
}

/* ---- main ------------------------------------------------------------- */

static void build_child_env(void)
{
    size_t n = 0, k = 0;
    for (char **e = environ; *e; e++)
        n++;
    g_child_env = calloc(n + 1, sizeof(char *));
    assert_non_null(g_child_env);
    for (char **e = environ; *e; e++) {
        /* the children's config comes from their file only */
        if (strncmp(*e, "IMTASK_", 7) == 0 || strncmp(*e, "TESTPROC_", 9) == 0)
            continue;
        g_child_env[k++] = *e;
    }
}

static int group_setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(g_tmp, sizeof(g_tmp), "%s/imtask-rt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "mkdtemp %s: %s\n", g_tmp, strerror(errno));
        return -1;
    }
    build_child_env();

    /* the broker answers (it may be restarting: wait a little) */
    rd_kafka_t *rk = kafka_new(RD_KAFKA_PRODUCER, NULL, NULL);
    int64_t until = mono_ms() + 120000;
    for (;;) {
        const struct rd_kafka_metadata *md;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, 5000);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_metadata_destroy(md);
            break;
        }
        if (mono_ms() > until) {
            fprintf(stderr, "the broker %s does not answer: %s\n", g_brokers, rd_kafka_err2str(e));
            rd_kafka_destroy(rk);
            return -1;
        }
        sleep_ms(1000);
    }
    rd_kafka_destroy(rk);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_outcomes, case_teardown),
        cmocka_unit_test_teardown(test_kill9, case_teardown),
        cmocka_unit_test_teardown(test_sigterm_drains, case_teardown),
        cmocka_unit_test_teardown(test_rebalance, case_teardown),
        cmocka_unit_test_teardown(test_stop_mid_rebalance, case_teardown),
        cmocka_unit_test_teardown(test_broker_away, case_teardown),
        cmocka_unit_test_teardown(test_outputs, case_teardown),
        cmocka_unit_test_teardown(test_exactly_once, case_teardown),
        cmocka_unit_test_teardown(test_lanes, case_teardown),
        cmocka_unit_test_teardown(test_shared_txn, case_teardown),
    };
    g_brokers = getenv("IMTASK_KAFKA_BROKERS");
    if (!g_brokers || !*g_brokers) {
        fprintf(stderr, "runtime_test: IMTASK_KAFKA_BROKERS is not set: start the stack "
                        "(bash scripts/stack.sh up) and pass "
                        "--test_env=IMTASK_KAFKA_BROKERS=127.0.0.1:19092\n");
        return 1;
    }
    g_stack_dir = getenv("IMTASK_STACK_DIR");
    if (argc < 2 || !realpath(argv[1], g_testproc) || access(g_testproc, X_OK) != 0) {
        fprintf(stderr, "runtime_test: usage: runtime_test <path of imtask-testproc> (got %s)\n",
                argc > 1 ? argv[1] : "nothing");
        return 1;
    }
    /* RUNTIME_TEST_FILTER=test_kill9 (a cmocka pattern) runs some cases only */
    if (getenv("RUNTIME_TEST_FILTER") && *getenv("RUNTIME_TEST_FILTER"))
        cmocka_set_test_filter(getenv("RUNTIME_TEST_FILTER"));
    g_kafka_debug = getenv("RUNTIME_TEST_KAFKA_DEBUG");
    if (g_kafka_debug && !*g_kafka_debug)
        g_kafka_debug = NULL;
    atexit(at_exit_thaw);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGINT, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
