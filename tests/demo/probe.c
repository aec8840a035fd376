/* probe.c: imtask-demo-probe, what scripts/demo.sh (and tests/demo) use to see
 * what the task binaries wrote to Kafka: the downlinks of one fan-out per
 * gateway topic, the audit result of one task, and the demo's own topics.
 *
 *   imtask-demo-probe topics-create NAME:PARTITIONS...
 *   imtask-demo-probe downlinks --since-ms T --trace-id X TOPIC...
 *       one line per topic: "TOPIC RECORDS USERS" (records of that trace,
 *       distinct target users), then "total RECORDS USERS DUPLICATES"
 *   imtask-demo-probe records --since-ms T TOPIC...
 *       one line per record: "TOPIC KEY VALUE TRACE" (bytes outside printable
 *       ASCII, spaces and backslashes as \xNN; TRACE: the trace_id header)
 *   imtask-demo-probe audit --since-ms T --task-id ID TOPIC
 *       "decision=BLOCK provider=generic labels=Terror:0.97 by_policy=0 ..."
 *       or exit 1 when no result of that task is found
 *
 * Options before the command: --brokers B (default $IMTASK_KAFKA_BROKERS),
 * --timeout-ms N (each read is bounded by it; default 60000). Reads use
 * isolation.level=read_committed, from the offsets of time T to the end of
 * every partition. Exit status: 0 ok, 1 failure, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "proto/audit.pb-c.h"
#include "proto/fanout.pb-c.h"
#include "tests/support/support.h"

#define PROBE_MAX_TOPICS 64
#define PROBE_MAX_USERS (16u * 1024 * 1024) /* distinct users one count may track */

static const char *brokers;
static int timeout_ms = 60000;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imtask-demo-probe: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static rd_kafka_t *kafka_new(rd_kafka_type_t type, const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[] = {"bootstrap.servers",
                        brokers,
                        "log_level",
                        "3",
                        "isolation.level",
                        "read_committed",
                        "enable.partition.eof",
                        "true",
                        "enable.auto.commit",
                        "false",
                        "group.id",
                        group ? group : "imtask-demo-probe",
                        NULL};
    for (int i = 0; kv[i]; i += 2) {
        if (type == RD_KAFKA_PRODUCER && i >= 4)
            break; /* consumer-only properties */
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            die("%s: %s", kv[i], err);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk)
        die("rd_kafka_new: %s", err);
    return rk;
}

/* ---------------------------------------------------------------- topics */

static int cmd_topics_create(int argc, char **argv)
{
    char err[512];
    int n = argc;
    if (n < 1 || n > PROBE_MAX_TOPICS)
        die("topics-create: give 1..%d NAME:PARTITIONS", PROBE_MAX_TOPICS);
    char names[PROBE_MAX_TOPICS][250];
    const char *topics[PROBE_MAX_TOPICS];
    int parts[PROBE_MAX_TOPICS];
    for (int i = 0; i < n; i++) {
        const char *colon = strrchr(argv[i], ':');
        char *end = NULL;
        long p = colon ? strtol(colon + 1, &end, 10) : 0;
        size_t len = colon ? (size_t)(colon - argv[i]) : 0;
        if (!colon || !end || *end || p < 1 || p > 1000 || len == 0 || len >= sizeof(names[i]))
            die("topics-create: '%s': expected NAME:PARTITIONS (partitions 1..1000)", argv[i]);
        memcpy(names[i], argv[i], len);
        names[i][len] = '\0';
        topics[i] = names[i];
        parts[i] = (int)p;
    }
    if (ts_kafka_create(brokers, topics, parts, (size_t)n, err, sizeof(err)))
        die("topics-create on %s: %s", brokers, err);
    printf("%d topics ready\n", n);
    return 0;
}

/* ------------------------------------------------------------ reading */

typedef void (*probe_msg_fn)(void *ctx, const rd_kafka_message_t *m, int topic_index);

/* Every committed record of the topics from time since_ms to the end of each
 * partition (its EOF), bounded by timeout_ms. */
static void read_since(char **topics, int ntopics, int64_t since_ms, probe_msg_fn fn, void *ctx)
{
    rd_kafka_t *rk = kafka_new(RD_KAFKA_CONSUMER, NULL);
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (e)
        die("metadata from %s: %s", brokers, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(64);
    for (int i = 0; i < ntopics; i++) {
        int found = 0;
        for (int j = 0; j < md->topic_cnt; j++) {
            const struct rd_kafka_metadata_topic *t = &md->topics[j];
            if (strcmp(t->topic, topics[i]) || t->err)
                continue;
            for (int k = 0; k < t->partition_cnt; k++)
                rd_kafka_topic_partition_list_add(tl, topics[i], t->partitions[k].id)->offset =
                    since_ms;
            found = 1;
        }
        if (!found)
            die("topic %s does not exist on %s", topics[i], brokers);
    }
    rd_kafka_metadata_destroy(md);
    e = rd_kafka_offsets_for_times(rk, tl, timeout_ms);
    if (e)
        die("offsets_for_times: %s", rd_kafka_err2str(e));
    /* A partition with nothing after since_ms answers -1 (its end). */
    int waiting = tl->cnt;
    for (int i = 0; i < tl->cnt; i++)
        if (tl->elems[i].offset < 0)
            tl->elems[i].offset = RD_KAFKA_OFFSET_END;
    e = rd_kafka_assign(rk, tl);
    if (e)
        die("assign: %s", rd_kafka_err2str(e));
    int64_t until = mono_ms() + timeout_ms;
    while (waiting > 0) {
        if (mono_ms() > until)
            die("reading %d topics: %d partitions not at their end after %d ms", ntopics, waiting,
                timeout_ms);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            waiting--;
        } else if (m->err) {
            die("consume: %s", rd_kafka_message_errstr(m));
        } else {
            const char *tn = rd_kafka_topic_name(m->rkt);
            for (int i = 0; i < ntopics; i++)
                if (strcmp(tn, topics[i]) == 0)
                    fn(ctx, m, i);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tl);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* ---------------------------------------------------------- downlinks */

/* A set of 64-bit user hashes (FNV-1a of the user id), open addressing. */
typedef struct {
    uint64_t *slots;
    size_t cap, count;
} probe_set_t;

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ? h : 1; /* 0 marks an empty slot */
}

static bool set_add(probe_set_t *s, uint64_t h) /* true when new */
{
    if ((s->count + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 4096;
        if (ncap > 2 * (size_t)PROBE_MAX_USERS)
            die("more than %u distinct users: not a demo any more", PROBE_MAX_USERS);
        uint64_t *n = calloc(ncap, sizeof(*n));
        if (!n)
            die("out of memory");
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i]) {
                size_t j = s->slots[i] & (ncap - 1);
                while (n[j])
                    j = (j + 1) & (ncap - 1);
                n[j] = s->slots[i];
            }
        free(s->slots);
        s->slots = n;
        s->cap = ncap;
    }
    size_t j = h & (s->cap - 1);
    while (s->slots[j]) {
        if (s->slots[j] == h)
            return false;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = h;
    s->count++;
    return true;
}

typedef struct {
    const char *trace_id;
    probe_set_t all;
    int64_t records[PROBE_MAX_TOPICS], users[PROBE_MAX_TOPICS];
    int64_t undecodable, duplicates, total;
} downlinks_ctx_t;

static bool header_is(const rd_kafka_message_t *m, const char *name, const char *want)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v;
    size_t len;
    if (rd_kafka_message_headers(m, &hdrs) || rd_kafka_header_get_last(hdrs, name, &v, &len))
        return false;
    return len == strlen(want) && memcmp(v, want, len) == 0;
}

static void count_user(downlinks_ctx_t *c, int ti, const char *uid)
{
    if (set_add(&c->all, fnv1a64(uid)))
        c->users[ti]++;
    else
        c->duplicates++;
}

static void on_downlink(void *ctx, const rd_kafka_message_t *m, int ti)
{
    downlinks_ctx_t *c = ctx;
    if (header_is(m, "downlink_format", "batch")) {
        Imtask__V1__DownstreamBatch *b =
            imtask__v1__downstream_batch__unpack(NULL, m->len, m->payload);
        if (!b) {
            c->undecodable++;
            return;
        }
        if (b->message && strcmp(b->message->trace_id, c->trace_id) == 0) {
            c->records[ti]++;
            c->total++;
            for (size_t i = 0; i < b->n_target_user_ids; i++)
                count_user(c, ti, b->target_user_ids[i]);
        }
        imtask__v1__downstream_batch__free_unpacked(b, NULL);
        return;
    }
    Imtask__V1__DownstreamMessage *d =
        imtask__v1__downstream_message__unpack(NULL, m->len, m->payload);
    if (!d) {
        c->undecodable++;
        return;
    }
    if (strcmp(d->trace_id, c->trace_id) == 0) {
        c->records[ti]++;
        c->total++;
        count_user(c, ti, d->target_user_id);
    }
    imtask__v1__downstream_message__free_unpacked(d, NULL);
}

static int cmd_downlinks(int64_t since_ms, const char *trace_id, int ntopics, char **topics)
{
    if (!trace_id || since_ms <= 0 || ntopics < 1 || ntopics > PROBE_MAX_TOPICS)
        die("downlinks: needs --since-ms, --trace-id and 1..%d topics", PROBE_MAX_TOPICS);
    downlinks_ctx_t *c = calloc(1, sizeof(*c));
    if (!c)
        die("out of memory");
    c->trace_id = trace_id;
    read_since(topics, ntopics, since_ms, on_downlink, c);
    for (int i = 0; i < ntopics; i++)
        printf("%s %" PRId64 " %" PRId64 "\n", topics[i], c->records[i], c->users[i]);
    printf("total %" PRId64 " %zu %" PRId64 "\n", c->total, c->all.count, c->duplicates);
    if (c->undecodable)
        fprintf(stderr, "imtask-demo-probe: %" PRId64 " records did not decode as downlinks\n",
                c->undecodable);
    free(c->all.slots);
    free(c);
    return 0;
}

/* ------------------------------------------------------------- records */

static void print_escaped(const void *p, size_t len)
{
    const unsigned char *b = p;
    if (len == 0)
        fputc('-', stdout);
    for (size_t i = 0; i < len; i++) {
        if (b[i] > ' ' && b[i] < 0x7f && b[i] != '\\')
            fputc(b[i], stdout);
        else
            printf("\\x%02x", b[i]);
    }
}

static void on_record(void *ctx, const rd_kafka_message_t *m, int ti)
{
    char **topics = ctx;
    rd_kafka_headers_t *hdrs = NULL;
    const void *tv = NULL;
    size_t tlen = 0;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        (void)rd_kafka_header_get_last(hdrs, "trace_id", &tv, &tlen);
    printf("%s ", topics[ti]);
    print_escaped(m->key, m->key_len);
    fputc(' ', stdout);
    print_escaped(m->payload, m->len);
    fputc(' ', stdout);
    print_escaped(tv, tv ? tlen : 0);
    fputc('\n', stdout);
}

static int cmd_records(int64_t since_ms, int ntopics, char **topics)
{
    if (since_ms <= 0 || ntopics < 1 || ntopics > PROBE_MAX_TOPICS)
        die("records: needs --since-ms and 1..%d topics", PROBE_MAX_TOPICS);
    read_since(topics, ntopics, since_ms, on_record, topics);
    return 0;
}

/* --------------------------------------------------------------- audit */

typedef struct {
    const char *task_id;
    Imtask__V1__AuditResult *found; /* the last result of the task */
} audit_ctx_t;

static void on_result(void *ctx, const rd_kafka_message_t *m, int ti)
{
    (void)ti;
    audit_ctx_t *c = ctx;
    Imtask__V1__AuditResult *r = imtask__v1__audit_result__unpack(NULL, m->len, m->payload);
    if (!r)
        return;
    if (strcmp(r->task_id, c->task_id) == 0) {
        if (c->found)
            imtask__v1__audit_result__free_unpacked(c->found, NULL);
        c->found = r;
    } else {
        imtask__v1__audit_result__free_unpacked(r, NULL);
    }
}

static const char *decision_name(Imtask__V1__AuditDecision d)
{
    switch (d) {
    case IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_PASS:
        return "PASS";
    case IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_REVIEW:
        return "REVIEW";
    case IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_BLOCK:
        return "BLOCK";
    default:
        return "UNSPECIFIED";
    }
}

static int cmd_audit(int64_t since_ms, const char *task_id, int ntopics, char **topics)
{
    if (!task_id || since_ms <= 0 || ntopics != 1)
        die("audit: needs --since-ms, --task-id and one topic");
    audit_ctx_t c = {.task_id = task_id};
    read_since(topics, 1, since_ms, on_result, &c);
    if (!c.found) {
        fprintf(stderr, "imtask-demo-probe: no audit result of task %s on %s\n", task_id,
                topics[0]);
        return 1;
    }
    Imtask__V1__AuditResult *r = c.found;
    printf("decision=%s provider=%s message=%s labels=", decision_name(r->decision), r->provider,
           r->message_id);
    for (size_t i = 0; i < r->n_labels; i++)
        printf("%s%s:%.2f", i ? "," : "", r->labels[i]->label, r->labels[i]->score);
    printf("%s by_policy=%d status_set=%d\n", r->n_labels ? "" : "-", r->by_policy ? 1 : 0,
           r->status_set ? 1 : 0);
    imtask__v1__audit_result__free_unpacked(r, NULL);
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
    fputs("usage: imtask-demo-probe [--brokers B] [--timeout-ms N] COMMAND ...\n"
          "  topics-create NAME:PARTITIONS...\n"
          "  downlinks --since-ms T --trace-id X TOPIC...\n"
          "  records --since-ms T TOPIC...\n"
          "  audit --since-ms T --task-id ID TOPIC\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    brokers = getenv("IMTASK_KAFKA_BROKERS");
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--brokers") == 0)
            brokers = argv[i + 1];
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            timeout_ms = atoi(argv[i + 1]);
        else
            usage();
    }
    if (!brokers || !*brokers)
        die("no brokers: pass --brokers or set IMTASK_KAFKA_BROKERS");
    if (timeout_ms < 1000)
        timeout_ms = 1000;
    if (i >= argc)
        usage();
    const char *cmd = argv[i++];
    if (strcmp(cmd, "topics-create") == 0)
        return cmd_topics_create(argc - i, argv + i);
    int64_t since = 0;
    const char *trace = NULL, *task = NULL;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--since-ms") == 0)
            since = strtoll(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--trace-id") == 0)
            trace = argv[i + 1];
        else if (strcmp(argv[i], "--task-id") == 0)
            task = argv[i + 1];
        else
            usage();
    }
    if (strcmp(cmd, "downlinks") == 0)
        return cmd_downlinks(since, trace, argc - i, argv + i);
    if (strcmp(cmd, "records") == 0)
        return cmd_records(since, argc - i, argv + i);
    if (strcmp(cmd, "audit") == 0)
        return cmd_audit(since, task, argc - i, argv + i);
    usage();
    return 2;
}
