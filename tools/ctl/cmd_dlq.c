/* cmd_dlq.c: imtask-ctl dlq list and dlq show: read the dead-letter topic
 * (assign, no group, no commits) and print its records. dlq replay is in
 * cmd_replay.c. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "dlqrec.h"
#include "infra/clock.h"
#include "kafka.h"
#include "payloads.h"
#include "pbjson/pbjson.h"
#include "table.h"
#include "timeparse.h"
#include "util.h"

#define CTL_LIST_LIMIT_MAX 10000
#define CTL_SHOW_HEX_MAX 512 /* bytes of a value or payload shown in hex */

static const ctl_command_t ctl_dlq_cmd = {
    "dlq", "(list | show | replay) [ARGS...]",
    "The dead-letter queue of im-task (the --dlq-topic):\n"
    "  list    a table of its records, filtered by type, kind and time\n"
    "  show    one record: every header and the decoded envelope\n"
    "  replay  republish records to their original topic with a fresh attempt count\n"
    "Run 'imtask-ctl dlq SUBCOMMAND --help' for the options of each."};

static const ctl_command_t ctl_list_cmd = {
    "dlq list", "[--type TYPE] [--kind KIND] [--since TIME] [--until TIME] [--limit N]",
    "Read the dead-letter topic from its beginning to its end (as of now) and print a table\n"
    "of the records that match, oldest first: partition:offset, when it was dead-lettered\n"
    "(UTC), task type, task id, error kind, attempts, where it failed (topic/partition/\n"
    "offset) and the reason (cut to fit; --wide for all of it). With more matches than\n"
    "--limit, the most recent ones are shown. Ends with a count line.\n"
    "TIME: RFC 3339 (2024-11-28T14:10:37Z), a date, Unix milliseconds, or -2h / -30m / -7d.\n"
    "Nothing is committed: the topic is read with assign(), outside any consumer group."};

static const ctl_command_t ctl_show_cmd = {
    "dlq show", "PARTITION:OFFSET",
    "Print one dead-letter record: its timestamp and key, every header, and the envelope\n"
    "decoded (task id, type, trace, created, attempt, deadline, payload). The payload is\n"
    "printed as JSON when its type has a payload message in tools/ctl/payloads.c, else as\n"
    "a hex dump. A value that is not an envelope is shown in hex."};

/* ---- dlq list ----------------------------------------------------------- */

typedef struct {
    ctl_dlq_filter_t filter;
    ctl_dlq_rec_t *rows; /* a min-heap by (time, partition, offset) while scanning */
    size_t nrows, limit;
    int64_t matched;
} ctl_dlq_list_t;

/* a < b in the order rows are listed. */
static bool ctl_list_before(const ctl_dlq_rec_t *a, const ctl_dlq_rec_t *b)
{
    if (a->ts_ms != b->ts_ms)
        return a->ts_ms < b->ts_ms;
    if (a->partition != b->partition)
        return a->partition < b->partition;
    return a->offset < b->offset;
}

static int ctl_list_cmp(const void *a, const void *b)
{
    return ctl_list_before(a, b) ? -1 : ctl_list_before(b, a) ? 1 : 0;
}

static void ctl_list_sift_down(ctl_dlq_list_t *l, size_t i)
{
    for (;;) {
        size_t min = i, c1 = 2 * i + 1, c2 = 2 * i + 2;
        ctl_dlq_rec_t tmp;
        if (c1 < l->nrows && ctl_list_before(&l->rows[c1], &l->rows[min]))
            min = c1;
        if (c2 < l->nrows && ctl_list_before(&l->rows[c2], &l->rows[min]))
            min = c2;
        if (min == i)
            return;
        tmp = l->rows[i];
        l->rows[i] = l->rows[min];
        l->rows[min] = tmp;
        i = min;
    }
}

static void ctl_list_sift_up(ctl_dlq_list_t *l, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        ctl_dlq_rec_t tmp;
        if (!ctl_list_before(&l->rows[i], &l->rows[parent]))
            return;
        tmp = l->rows[i];
        l->rows[i] = l->rows[parent];
        l->rows[parent] = tmp;
        i = parent;
    }
}

/* Keep the `limit` most recent matching records. */
static int ctl_list_cb(void *opaque, const rd_kafka_message_t *m)
{
    ctl_dlq_list_t *l = opaque;
    ctl_dlq_rec_t r;
    ctl_dlq_rec_fill(m, &r);
    if (!ctl_dlq_rec_match(&r, &l->filter))
        return 0;
    l->matched++;
    if (l->nrows < l->limit) {
        l->rows[l->nrows++] = r;
        ctl_list_sift_up(l, l->nrows - 1);
    } else if (ctl_list_before(&l->rows[0], &r)) {
        l->rows[0] = r;
        ctl_list_sift_down(l, 0);
    }
    return 0;
}

static int ctl_list_print(const ctl_env_t *env, ctl_dlq_list_t *l, const ctl_scan_stats_t *st)
{
    static const char *const heads[] = {"PARTITION:OFFSET", "WHEN (UTC)", "TYPE",
                                        "TASK ID",          "KIND",       "ATTEMPTS",
                                        "ORIGIN",           "REASON"};
    ctl_table_t *t = ctl_table_new(8, heads);
    if (!t) {
        ctl_fail("dlq list", "out of memory");
        return CTL_EXIT_FAIL;
    }
    ctl_table_align_right(t, 5);
    ctl_table_set_flex(t, 7);
    qsort(l->rows, l->nrows, sizeof(l->rows[0]), ctl_list_cmp);
    for (size_t i = 0; i < l->nrows; i++) {
        const ctl_dlq_rec_t *r = &l->rows[i];
        char po[48], when[CTL_TIME_MAX];
        const char *cells[8];
        snprintf(po, sizeof(po), "%" PRId32 ":%" PRId64, r->partition, r->offset);
        ctl_time_format(r->ts_ms, 0, when, sizeof(when));
        cells[0] = po;
        cells[1] = when;
        cells[2] = r->type[0] ? r->type : "-";
        cells[3] = r->id[0] ? r->id : "-";
        cells[4] = r->kind[0] ? r->kind : "-";
        cells[5] = r->attempts[0] ? r->attempts : "-";
        cells[6] = r->origin[0] ? r->origin : "-";
        cells[7] = r->reason[0] ? r->reason : "-";
        if (ctl_table_add(t, cells) != 0) {
            ctl_fail("dlq list", "out of memory");
            ctl_table_destroy(&t);
            return CTL_EXIT_FAIL;
        }
    }
    if (l->nrows > 0)
        ctl_table_print(t, stdout, env->wide ? 0 : (size_t)env->width);
    ctl_table_destroy(&t);
    if ((int64_t)l->nrows < l->matched)
        printf("%zu most recent of %" PRId64 " matching records shown (--limit); %" PRId64
               " records read from %s\n",
               l->nrows, l->matched, st->scanned, env->dlq_topic);
    else
        printf("%" PRId64 " matching record%s; %" PRId64 " records read from %s\n", l->matched,
               l->matched == 1 ? "" : "s", st->scanned, env->dlq_topic);
    return CTL_EXIT_OK;
}

/* Parse --since/--until into f. Returns CTL_PARSE_GO_ON or an exit code. */
static int ctl_dlq_times(const ctl_command_t *cmd, const char *since, const char *until,
                         ctl_dlq_filter_t *f)
{
    char err[CTL_ERR_MAX];
    int64_t now = clock_wall_ms();
    if (since && ctl_time_parse(since, now, &f->since_ms, err, sizeof(err)) != 0)
        return ctl_usage_error(cmd, "--since: %s", err);
    if (until && ctl_time_parse(until, now, &f->until_ms, err, sizeof(err)) != 0)
        return ctl_usage_error(cmd, "--until: %s", err);
    if (since && until && f->until_ms <= f->since_ms)
        return ctl_usage_error(cmd, "--until (%s) is not after --since (%s)", until, since);
    return CTL_PARSE_GO_ON;
}

static int ctl_dlq_list(ctl_env_t *env, int argc, char **argv)
{
    const char *since = NULL, *until = NULL;
    int64_t limit = 1000;
    ctl_dlq_list_t l = {.filter = {NULL, NULL, 0, 0}};
    const ctl_opt_t opts[] = {
        {"type", CTL_OPT_STRING, &l.filter.type, "TYPE", "only tasks of this type", 0, 0},
        {"kind", CTL_OPT_STRING, &l.filter.kind, "KIND",
         "only this dlq_error_kind (permanent, retries_exhausted, undecodable, unknown_type, "
         "expired)",
         0, 0},
        {"since", CTL_OPT_STRING, &since, "TIME", "only records written at or after TIME", 0, 0},
        {"until", CTL_OPT_STRING, &until, "TIME", "only records written before TIME", 0, 0},
        {"limit", CTL_OPT_INT, &limit, "N",
         "show at most the N most recent matches (default 1000, at most 10000)", 1,
         CTL_LIST_LIMIT_MAX},
    };
    ctl_optset_t own = {opts, sizeof(opts) / sizeof(opts[0]), "options"};
    ctl_scan_spec_t spec = {.topic = NULL};
    ctl_scan_stats_t st;
    char err[CTL_ERR_MAX];
    int rc = ctl_parse(env, &ctl_list_cmd, &own, argc, argv, NULL, 0, NULL);

    if (rc != CTL_PARSE_GO_ON)
        return rc;
    rc = ctl_dlq_times(&ctl_list_cmd, since, until, &l.filter);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    l.limit = (size_t)limit;
    l.rows = calloc(l.limit, sizeof(*l.rows));
    if (!l.rows) {
        ctl_fail("dlq list", "out of memory for %zu rows", l.limit);
        return CTL_EXIT_FAIL;
    }
    spec.topic = env->dlq_topic;
    spec.since_ms = l.filter.since_ms;
    if (ctl_scan(env, &spec, ctl_list_cb, &l, &st, err, sizeof(err)) < 0) {
        ctl_fail("dlq list", "%s (brokers %s)", err, env->brokers);
        rc = CTL_EXIT_FAIL;
    } else {
        rc = ctl_list_print(env, &l, &st);
    }
    free(l.rows);
    return rc;
}

/* ---- dlq show ----------------------------------------------------------- */

static void ctl_show_envelope(const rd_kafka_message_t *m)
{
    char err[PBJSON_ERR_MAX], when[CTL_TIME_MAX];
    void *owner = NULL;
    task_t t;

    if (!m->payload || task_decode(m->payload, m->len, &t, &owner, err, sizeof(err)) != 0) {
        printf("\nenvelope: not decodable: %s\n", m->payload ? err : "the record has no value");
        if (m->payload) {
            printf("value (%zu bytes):\n", m->len);
            ctl_hexdump(stdout, m->payload, m->len, CTL_SHOW_HEX_MAX, "  ");
        }
        return;
    }
    printf("\nenvelope (imtask.v1.Task, %zu bytes):\n", m->len);
    printf("  task_id       %s\n", t.task_id);
    printf("  task_type     %s\n", t.task_type);
    printf("  trace_id      %s\n", t.trace_id[0] ? t.trace_id : "-");
    printf("  traceparent   %s\n", t.traceparent[0] ? t.traceparent : "-");
    ctl_time_format(t.created_at_ms, 1, when, sizeof(when));
    printf("  created_at    %s (%" PRId64 ")\n", when, t.created_at_ms);
    printf("  attempt       %" PRIu32 "\n", t.attempt);
    if (t.deadline_ms > 0) {
        ctl_time_format(t.deadline_ms, 1, when, sizeof(when));
        printf("  deadline      %s (%" PRId64 ")%s\n", when, t.deadline_ms,
               t.deadline_ms < clock_wall_ms() ? " passed" : "");
    } else {
        printf("  deadline      none\n");
    }
    printf("  payload       %zu bytes\n", t.payload_len);

    const char *canon = task_type_canonical(t.task_type);
    const ProtobufCMessageDescriptor *d = ctl_payload_descriptor(canon ? canon : t.task_type);
    char *json = NULL;
    if (d && pbjson_packed_to_json(d, t.payload, t.payload_len, PBJSON_PRETTY, &json, err,
                                   sizeof(err)) == PBJSON_OK) {
        printf("\npayload (%s):\n%s\n", d->name, json);
        free(json);
    } else if (t.payload_len > 0) {
        if (d)
            printf("\npayload: not a valid %s: %s\n", d->name, err);
        else
            printf("\npayload (no payload message registered for type \"%s\"; hex):\n",
                   t.task_type);
        ctl_hexdump(stdout, t.payload, t.payload_len, CTL_SHOW_HEX_MAX, "  ");
    }
    task_decoded_free(owner);
}

static int ctl_show_cb(void *opaque, const rd_kafka_message_t *m)
{
    const ctl_env_t *env = opaque;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    char when[CTL_TIME_MAX], text[CTL_DLQ_TEXT_MAX * 2];
    size_t nh = 0, namew = 0;
    const char *name;
    const void *val;
    size_t size;

    printf("record        %s %" PRId32 ":%" PRId64 "\n", env->dlq_topic, m->partition, m->offset);
    ctl_time_format(ts, 1, when, sizeof(when));
    printf("timestamp     %s (%s)\n", when,
           tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME       ? "create time"
           : tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? "log append time"
                                                          : "none");
    if (m->key) {
        ctl_escape(m->key, m->key_len, text, sizeof(text));
        printf("key           %s\n", text);
    } else {
        printf("key           (none)\n");
    }
    printf("value         %zu bytes\n", m->len);

    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        while (rd_kafka_header_get_all(hdrs, nh, &name, &val, &size) ==
               RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (strlen(name) > namew)
                namew = strlen(name);
            nh++;
        }
    }
    printf("\nheaders (%zu):\n", nh);
    if (namew > 32)
        namew = 32;
    for (size_t i = 0; i < nh; i++) {
        rd_kafka_header_get_all(hdrs, i, &name, &val, &size);
        if (val)
            ctl_escape(val, size, text, sizeof(text));
        printf("  %-*s  %s\n", (int)namew, name, val ? text : "(null)");
    }
    ctl_show_envelope(m);
    return 0;
}

static int ctl_dlq_show(ctl_env_t *env, int argc, char **argv)
{
    const char *pos[1];
    size_t npos = 0;
    ctl_partoff_t po;
    char err[CTL_ERR_MAX];
    int rc = ctl_parse(env, &ctl_show_cmd, NULL, argc, argv, pos, 1, &npos);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    if (npos != 1)
        return ctl_usage_error(&ctl_show_cmd, "expected PARTITION:OFFSET (e.g. 2:1534)");
    if (ctl_parse_partoff(pos[0], &po) != 0)
        return ctl_usage_error(&ctl_show_cmd, "expected PARTITION:OFFSET like 2:1534, got \"%s\"",
                               pos[0]);
    if (ctl_fetch_one(env, env->dlq_topic, po.partition, po.offset, ctl_show_cb, env, err,
                      sizeof(err)) != 0) {
        ctl_fail("dlq show", "%s", err);
        return CTL_EXIT_FAIL;
    }
    return CTL_EXIT_OK;
}

/* ---- dlq ---------------------------------------------------------------- */

int ctl_cmd_dlq(ctl_env_t *env, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return ctl_dlq_list(env, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "show") == 0)
        return ctl_dlq_show(env, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "replay") == 0)
        return ctl_cmd_dlq_replay(env, argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        ctl_usage(stdout, env, &ctl_dlq_cmd, NULL);
        return CTL_EXIT_OK;
    }
    if (argc < 2)
        return ctl_usage_error(&ctl_dlq_cmd, "expected a subcommand: list, show or replay");
    return ctl_usage_error(&ctl_dlq_cmd, "unknown subcommand \"%s\", expected list, show or replay",
                           argv[1]);
}
