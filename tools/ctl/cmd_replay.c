/* cmd_replay.c: imtask-ctl dlq replay: republish dead-lettered tasks to the
 * topic they failed on, with a fresh attempt count and a replayed_from
 * header, each confirmed by its delivery report. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "dlqrec.h"
#include "infra/clock.h"
#include "kafka.h"
#include "timeparse.h"
#include "window.h"

#define CTL_REPLAY_OFFSETS_MAX 10000
#define CTL_REPLAY_PROGRESS 1000 /* a progress line every this many records */
#define CTL_REPLAY_TOPICS_MAX 32 /* distinct target topics checked to exist */

static const ctl_command_t ctl_replay_cmd = {
    "dlq replay",
    "(--offsets P:O[,P:O...] | --all | [--type TYPE] [--kind KIND] [--since TIME]\n"
    "       [--until TIME]) [--dry-run] [--to TOPIC] [--in-flight N]",
    "Republish dead-lettered tasks: for each selected record of the dead-letter topic, the\n"
    "original value goes back to its original topic (header dlq_original_topic, else the\n"
    "--task-topic) with its key and its task_type, task_id and traceparent headers, plus\n"
    "replayed_from = \"DLQTOPIC/PARTITION/OFFSET\". A value that decodes as an envelope is\n"
    "re-encoded with attempt = 0; one that does not is republished as it is.\n"
    "The producer is idempotent and every record is confirmed by the broker; a progress\n"
    "line comes every 1000 records and a summary at the end (exit 1 if any failed).\n"
    "Select records by --offsets, or by --type/--kind/--since/--until (combined), or take\n"
    "them --all. --dry-run prints what would be replayed and produces nothing.\n"
    "Replaying twice republishes twice: consumers deduplicate by task_id."};

typedef struct {
    char *name; /* owned */
    bool exists;
} ctl_replay_topic_t;

typedef struct {
    ctl_env_t *env;
    ctl_dlq_filter_t filter;
    ctl_partoff_t *offsets; /* sorted; NULL unless --offsets */
    bool *found;            /* per offset */
    size_t noffsets;
    const char *to;
    bool dry_run;
    mq_producer_t *producer;
    ctl_window_t *window;
    ctl_replay_topic_t topics[CTL_REPLAY_TOPICS_MAX];
    size_t ntopics;
    int64_t selected, skipped; /* skipped: target topic missing */
} ctl_replay_t;

static int ctl_partoff_cmp(const void *a, const void *b)
{
    const ctl_partoff_t *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : 0;
}

/* Does topic exist? Asked once per topic (the first CTL_REPLAY_TOPICS_MAX). */
static bool ctl_replay_topic_ok(ctl_replay_t *r, const char *topic, char *err, size_t errlen)
{
    int32_t np;
    for (size_t i = 0; i < r->ntopics; i++) {
        if (strcmp(r->topics[i].name, topic) == 0) {
            if (!r->topics[i].exists)
                snprintf(err, errlen, "topic %s does not exist", topic);
            return r->topics[i].exists;
        }
    }
    if (r->dry_run || r->ntopics >= CTL_REPLAY_TOPICS_MAX)
        return true; /* delivery reports will tell */
    r->topics[r->ntopics].name = strdup(topic);
    if (!r->topics[r->ntopics].name)
        return true;
    r->topics[r->ntopics].exists =
        ctl_topic_partitions(mq_producer_handle(r->producer), topic, (int)r->env->timeout_ms, &np,
                             err, errlen) == 0;
    return r->topics[r->ntopics++].exists;
}

/* The header's raw bytes, or NULL. Valid while m is. */
static const void *ctl_replay_header(const rd_kafka_message_t *m, const char *name, size_t *len)
{
    rd_kafka_headers_t *hdrs;
    const void *v = NULL;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &v, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return v;
}

/* Headers of the republished record: the original task headers (from the
 * envelope when the record lacks them) and replayed_from. */
static size_t ctl_replay_headers(const rd_kafka_message_t *m, const task_t *t, bool decoded,
                                 const char *from, mq_header_t *h)
{
    static const char *const names[] = {HDR_TASK_TYPE, HDR_TASK_ID, HDR_TRACEPARENT};
    size_t n = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t len = 0;
        const void *v = ctl_replay_header(m, names[i], &len);
        if (!v && decoded) {
            v = i == 0 ? t->task_type : i == 1 ? t->task_id : t->traceparent;
            len = strlen(v);
            if (len == 0)
                v = NULL;
        }
        if (v)
            h[n++] = (mq_header_t){names[i], v, len};
    }
    h[n++] = (mq_header_t){HDR_REPLAYED_FROM, from, strlen(from)};
    return n;
}

static int ctl_replay_cb(void *opaque, const rd_kafka_message_t *m)
{
    ctl_replay_t *r = opaque;
    ctl_env_t *env = r->env;
    ctl_dlq_rec_t rec;
    char from[400], label[CTL_WINDOW_LABEL_MAX], err[CTL_ERR_MAX];
    const char *topic;
    mq_header_t hdrs[4];
    size_t nh;
    task_t t;
    void *owner = NULL;
    uint8_t *value = NULL;
    size_t len = 0;
    bool decoded;

    memset(&t, 0, sizeof(t));
    if (r->offsets) {
        ctl_partoff_t key = {m->partition, m->offset};
        ctl_partoff_t *hit = bsearch(&key, r->offsets, r->noffsets, sizeof(key), ctl_partoff_cmp);
        if (!hit)
            return 0;
        r->found[hit - r->offsets] = true;
    }
    ctl_dlq_rec_fill(m, &rec);
    if (!r->offsets && !ctl_dlq_rec_match(&rec, &r->filter))
        return 0;
    r->selected++;
    topic = r->to ? r->to : rec.original_topic[0] ? rec.original_topic : env->task_topic;
    snprintf(from, sizeof(from), "%s/%" PRId32 "/%" PRId64, env->dlq_topic, m->partition,
             m->offset);
    snprintf(label, sizeof(label), "%" PRId32 ":%" PRId64 " task %s", m->partition, m->offset,
             rec.id[0] ? rec.id : "?");

    decoded = m->payload && task_decode(m->payload, m->len, &t, &owner, err, sizeof(err)) == 0;
    if (r->dry_run) {
        printf("would replay %s (%s) to %s%s\n", label, rec.type[0] ? rec.type : "?", topic,
               decoded ? "" : " (value is not an envelope: as is)");
        task_decoded_free(owner);
        return 0;
    }
    if (!ctl_replay_topic_ok(r, topic, err, sizeof(err))) {
        fprintf(stderr, "%s: not replayed: %s\n", label, err);
        r->skipped++;
        task_decoded_free(owner);
        return 0;
    }
    if (decoded) {
        t.attempt = 0;
        if (task_encode(&t, &value, &len) != 0) {
            task_decoded_free(owner);
            fprintf(stderr, "%s: out of memory\n", label);
            return -1;
        }
    }
    nh = ctl_replay_headers(m, &t, decoded, from, hdrs);
    ctl_window_produce(r->window, r->producer, topic, m->key, m->key_len,
                       decoded ? value : m->payload, decoded ? len : m->len, hdrs, nh, label,
                       env->timeout_ms);
    free(value);
    task_decoded_free(owner);
    if (r->selected % CTL_REPLAY_PROGRESS == 0) {
        uint64_t ok = 0, failed = 0;
        ctl_window_stats(r->window, &ok, &failed, NULL);
        fprintf(stderr,
                "replay: %" PRId64 " selected, %" PRIu64 " confirmed, %" PRIu64 " failed so far\n",
                r->selected, ok, failed);
    }
    return 0;
}

/* Which records: validates the selection options. */
static int ctl_replay_select(ctl_replay_t *r, const char *offsets, const char *since,
                             const char *until, bool all, ctl_scan_spec_t *spec,
                             ctl_range_t **ranges)
{
    char err[CTL_ERR_MAX];
    int64_t now = clock_wall_ms();
    bool filters = r->filter.type || r->filter.kind || since || until;

    if (offsets && (filters || all))
        return ctl_usage_error(&ctl_replay_cmd,
                               "--offsets selects by itself: no --type, --kind, --since, "
                               "--until or --all with it");
    if (all && filters)
        return ctl_usage_error(&ctl_replay_cmd, "--all selects everything: no filters with it");
    if (!offsets && !all && !filters)
        return ctl_usage_error(&ctl_replay_cmd,
                               "select what to replay: --offsets, --type, --kind, --since, "
                               "--until, or --all");
    if (since && ctl_time_parse(since, now, &r->filter.since_ms, err, sizeof(err)) != 0)
        return ctl_usage_error(&ctl_replay_cmd, "--since: %s", err);
    if (until && ctl_time_parse(until, now, &r->filter.until_ms, err, sizeof(err)) != 0)
        return ctl_usage_error(&ctl_replay_cmd, "--until: %s", err);
    if (since && until && r->filter.until_ms <= r->filter.since_ms)
        return ctl_usage_error(&ctl_replay_cmd, "--until is not after --since");
    spec->topic = r->env->dlq_topic;
    spec->since_ms = r->filter.since_ms;
    if (!offsets)
        return CTL_PARSE_GO_ON;

    r->offsets = calloc(CTL_REPLAY_OFFSETS_MAX, sizeof(*r->offsets));
    *ranges = calloc(CTL_REPLAY_OFFSETS_MAX, sizeof(**ranges));
    if (!r->offsets || !*ranges) {
        ctl_fail("dlq replay", "out of memory");
        return CTL_EXIT_FAIL;
    }
    if (ctl_parse_partoff_list(offsets, r->offsets, CTL_REPLAY_OFFSETS_MAX, &r->noffsets, err,
                               sizeof(err)) != 0)
        return ctl_usage_error(&ctl_replay_cmd, "--offsets: %s", err);
    r->found = calloc(r->noffsets, sizeof(*r->found));
    if (!r->found) {
        ctl_fail("dlq replay", "out of memory");
        return CTL_EXIT_FAIL;
    }
    qsort(r->offsets, r->noffsets, sizeof(*r->offsets), ctl_partoff_cmp);
    /* one range per partition, from its lowest to its highest offset */
    spec->nranges = 0;
    for (size_t i = 0; i < r->noffsets; i++) {
        ctl_range_t *last = spec->nranges ? &(*ranges)[spec->nranges - 1] : NULL;
        if (last && last->partition == r->offsets[i].partition) {
            last->end = r->offsets[i].offset + 1;
            continue;
        }
        (*ranges)[spec->nranges++] =
            (ctl_range_t){r->offsets[i].partition, r->offsets[i].offset, r->offsets[i].offset + 1};
    }
    spec->ranges = *ranges;
    return CTL_PARSE_GO_ON;
}

int ctl_cmd_dlq_replay(ctl_env_t *env, int argc, char **argv)
{
    const char *offsets = NULL, *since = NULL, *until = NULL;
    bool all = false;
    int64_t in_flight = 1000;
    ctl_replay_t r = {.env = env};
    const ctl_opt_t opts[] = {
        {"offsets", CTL_OPT_STRING, &offsets, "P:O[,P:O...]",
         "these records of the dead-letter topic (at most 10000)", 0, 0},
        {"type", CTL_OPT_STRING, &r.filter.type, "TYPE", "the records of this task type", 0, 0},
        {"kind", CTL_OPT_STRING, &r.filter.kind, "KIND", "the records of this dlq_error_kind", 0,
         0},
        {"since", CTL_OPT_STRING, &since, "TIME", "the records written at or after TIME", 0, 0},
        {"until", CTL_OPT_STRING, &until, "TIME", "the records written before TIME", 0, 0},
        {"all", CTL_OPT_FLAG, &all, NULL, "every record of the dead-letter topic", 0, 0},
        {"dry-run", CTL_OPT_FLAG, &r.dry_run, NULL, "print what would be replayed, produce nothing",
         0, 0},
        {"to", CTL_OPT_STRING, &r.to, "TOPIC",
         "republish to TOPIC instead of each record's original topic", 0, 0},
        {"in-flight", CTL_OPT_INT, &in_flight, "N",
         "at most N records unconfirmed at once (default 1000)", 1, CTL_WINDOW_MAX},
    };
    ctl_optset_t own = {opts, sizeof(opts) / sizeof(opts[0]), "options"};
    ctl_scan_spec_t spec = {.topic = NULL};
    ctl_range_t *ranges = NULL;
    ctl_scan_stats_t st = {0, 0};
    char err[CTL_ERR_MAX];
    uint64_t ok = 0, failed = 0;
    int64_t missing = 0;
    int rc = ctl_parse(env, &ctl_replay_cmd, &own, argc, argv, NULL, 0, NULL);

    if (rc != CTL_PARSE_GO_ON)
        return rc;
    rc = ctl_replay_select(&r, offsets, since, until, all, &spec, &ranges);
    if (rc != CTL_PARSE_GO_ON)
        goto out;
    rc = CTL_EXIT_FAIL;
    if (!r.dry_run) {
        r.producer = ctl_producer_new(env, err, sizeof(err));
        r.window = ctl_window_new((int)in_flight, NULL, NULL);
        if (!r.producer || !r.window) {
            ctl_fail("dlq replay", "%s", r.producer ? "out of memory" : err);
            goto out;
        }
    }
    if (ctl_scan(env, &spec, ctl_replay_cb, &r, &st, err, sizeof(err)) < 0) {
        ctl_fail("dlq replay", "%s (brokers %s)", err, env->brokers);
        /* what was queued is still confirmed and counted below */
    } else {
        rc = CTL_EXIT_OK;
    }
    for (size_t i = 0; i < r.noffsets && rc == CTL_EXIT_OK; i++) {
        if (!r.found[i]) {
            fprintf(stderr, "%" PRId32 ":%" PRId64 ": not replayed: no such record in %s\n",
                    r.offsets[i].partition, r.offsets[i].offset, env->dlq_topic);
            missing++;
        }
    }
    if (r.dry_run) {
        printf("would replay %" PRId64 " record%s (dry run: nothing produced); %" PRId64
               " records read from %s\n",
               r.selected, r.selected == 1 ? "" : "s", st.scanned, env->dlq_topic);
        if (missing)
            rc = CTL_EXIT_FAIL;
        goto out;
    }
    if (ctl_window_drain(r.window, env->timeout_ms + 1000) != 0)
        ctl_fail("dlq replay", "records still unconfirmed after %" PRId64 " ms",
                 env->timeout_ms + 1000);
    mq_producer_destroy(&r.producer, (int)env->timeout_ms); /* reports the rest */
    ctl_window_stats(r.window, &ok, &failed, NULL);
    failed += (uint64_t)(r.skipped + missing);
    printf("replayed %" PRIu64 ", failed %" PRIu64 " (%" PRId64 " selected; %" PRId64
           " records read from %s)\n",
           ok, failed, r.selected + missing, st.scanned, env->dlq_topic);
    if (failed > 0)
        rc = CTL_EXIT_FAIL;
out:
    mq_producer_destroy(&r.producer, (int)env->timeout_ms);
    ctl_window_destroy(&r.window);
    for (size_t i = 0; i < r.ntopics; i++)
        free(r.topics[i].name);
    free(r.offsets);
    free(r.found);
    free(ranges);
    return rc;
}
