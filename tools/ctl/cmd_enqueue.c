/* cmd_enqueue.c: imtask-ctl enqueue: build task envelopes (task.h) the way
 * im-logic does and produce them to the task topic, one or many. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "infra/clock.h"
#include "kafka.h"
#include "payloads.h"
#include "pbjson/pbjson.h"
#include "util.h"
#include "window.h"

#define CTL_ENQUEUE_MAX_COUNT 1000000
#define CTL_ENQUEUE_SUFFIX_MAX 8 /* "-1000000" */
#define CTL_ENQUEUE_DEADLINE_MAX (366LL * 24 * 3600 * 1000)

static const ctl_command_t ctl_enqueue_cmd = {
    "enqueue",
    "--type TYPE (--payload-json JSON|@FILE | --payload-file FILE | --payload-hex HEX |\n"
    "       --payload-text TEXT) [--id ID] [--trace TRACEPARENT] [--key KEY] [--deadline-ms N]\n"
    "       [--count N] [--in-flight N]",
    "Build a task envelope (imtask.v1.Task) and produce it to the task topic with the\n"
    "headers task_type, task_id and traceparent, as im-logic does; wait for the broker's\n"
    "acknowledgement and print the task id with its partition and offset.\n"
    "Without --id the id is a random UUID; without --trace a new trace is started;\n"
    "created_at is now. --count N produces N tasks (ids ID-1..ID-N, or random ones) with at\n"
    "most --in-flight unacknowledged, and prints the rate: a load generator.\n"
    "--payload-json needs the payload message of the type to be registered in\n"
    "tools/ctl/payloads.c; the other payload options take the payload bytes as they are."};

typedef struct {
    const char *type, *id, *trace, *key;
    const char *payload_json, *payload_file, *payload_hex, *payload_text;
    int64_t deadline_ms, count, in_flight;
} ctl_enqueue_opts_t;

/* What the delivery report of a single task said. */
typedef struct {
    int32_t partition;
    int64_t offset;
} ctl_enqueue_result_t;

static void ctl_enqueue_done(void *opaque, const char *label, mq_err_t err, const char *errstr,
                             int32_t partition, int64_t offset)
{
    ctl_enqueue_result_t *r = opaque;
    (void)label;
    (void)errstr;
    if (err == MQ_OK) {
        r->partition = partition;
        r->offset = offset;
    }
}

/* The payload bytes from whichever --payload-* was given (exactly one).
 * Returns CTL_PARSE_GO_ON, or the exit code after reporting. */
static int ctl_enqueue_payload(const ctl_enqueue_opts_t *o, const char *type, uint8_t **out,
                               size_t *outlen)
{
    char err[PBJSON_ERR_MAX];
    int given = !!o->payload_json + !!o->payload_file + !!o->payload_hex + !!o->payload_text;

    *out = NULL;
    *outlen = 0;
    if (given != 1)
        return ctl_usage_error(&ctl_enqueue_cmd,
                               "give exactly one of --payload-json, --payload-file, "
                               "--payload-hex, --payload-text (got %d)",
                               given);
    if (o->payload_text) {
        size_t n = strlen(o->payload_text);
        if (n > TASK_MAX_BYTES)
            return ctl_usage_error(&ctl_enqueue_cmd, "--payload-text is %zu bytes, at most %d", n,
                                   TASK_MAX_BYTES);
        *out = malloc(n ? n : 1);
        if (!*out) {
            ctl_fail("enqueue", "out of memory");
            return CTL_EXIT_FAIL;
        }
        memcpy(*out, o->payload_text, n);
        *outlen = n;
        return CTL_PARSE_GO_ON;
    }
    if (o->payload_hex) {
        if (ctl_hex_decode(o->payload_hex, TASK_MAX_BYTES, out, outlen, err, sizeof(err)) != 0)
            return ctl_usage_error(&ctl_enqueue_cmd, "--payload-hex: %s", err);
        return CTL_PARSE_GO_ON;
    }
    if (o->payload_file) {
        char *buf = NULL;
        if (ctl_read_file(o->payload_file, TASK_MAX_BYTES, &buf, outlen, err, sizeof(err)) != 0)
            return ctl_usage_error(&ctl_enqueue_cmd, "--payload-file: %s", err);
        *out = (uint8_t *)buf;
        return CTL_PARSE_GO_ON;
    }
    /* --payload-json JSON or @FILE */
    {
        const ProtobufCMessageDescriptor *d = ctl_payload_descriptor(type);
        const char *json = o->payload_json;
        char *file = NULL;
        size_t len = strlen(json);
        pbjson_err_t e;
        if (!d)
            return ctl_usage_error(&ctl_enqueue_cmd,
                                   "--payload-json: no payload message is registered for task "
                                   "type \"%s\" (types with one: %s; see tools/ctl/payloads.c); "
                                   "give the encoded payload with --payload-file, --payload-hex "
                                   "or --payload-text",
                                   type, ctl_payload_types());
        if (json[0] == '@') {
            if (ctl_read_file(json + 1, PBJSON_MAX_INPUT, &file, &len, err, sizeof(err)) != 0)
                return ctl_usage_error(&ctl_enqueue_cmd, "--payload-json: %s", err);
            json = file;
        }
        e = pbjson_json_to_packed(d, json, len, out, outlen, err, sizeof(err));
        free(file);
        if (e != PBJSON_OK)
            return ctl_usage_error(&ctl_enqueue_cmd, "--payload-json (%s payload %s): %s", type,
                                   d->name, err);
        return CTL_PARSE_GO_ON;
    }
}

/* Checks of the options that need no broker. */
static int ctl_enqueue_check(const ctl_enqueue_opts_t *o, const char **type, char *trace_id)
{
    if (!o->type)
        return ctl_usage_error(&ctl_enqueue_cmd, "--type is required (one of fanout, push, "
                                                 "content_audit (or audit), archive, report)");
    *type = task_type_canonical(o->type);
    if (!*type) {
        /* A type outside the seed's (a test processor's, a new processor's
         * before this tool knows it) is accepted when it is a valid name. */
        bool valid = o->type[0] != '\0' && strlen(o->type) < TASK_TYPE_MAX;
        for (const char *c = o->type; *c && valid; c++)
            valid = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
        if (!valid)
            return ctl_usage_error(&ctl_enqueue_cmd,
                                   "--type: \"%s\" is not a task type: expected one of fanout, "
                                   "push, content_audit (or audit), archive, report, or another "
                                   "[a-z0-9_]+ name",
                                   o->type);
        fprintf(stderr,
                "imtask-ctl: note: \"%s\" is not one of the seed's task types; only a binary "
                "that registers it will process it\n",
                o->type);
        *type = o->type;
    }
    if (o->id) {
        size_t n = strlen(o->id);
        if (n == 0 || n >= TASK_ID_MAX - CTL_ENQUEUE_SUFFIX_MAX)
            return ctl_usage_error(&ctl_enqueue_cmd, "--id: expected 1 to %d bytes, got %zu",
                                   TASK_ID_MAX - CTL_ENQUEUE_SUFFIX_MAX - 1, n);
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)o->id[i] <= ' ' || o->id[i] == 0x7f)
                return ctl_usage_error(&ctl_enqueue_cmd,
                                       "--id: no spaces or control characters allowed "
                                       "(byte %zu)",
                                       i);
        }
    }
    if (o->trace && task_traceparent_parse(o->trace, trace_id) != 0)
        return ctl_usage_error(&ctl_enqueue_cmd,
                               "--trace: \"%s\" is not a W3C traceparent, expected "
                               "00-<32 hex>-<16 hex>-<2 hex> in lower case",
                               o->trace);
    if (o->key && strlen(o->key) > 1024)
        return ctl_usage_error(&ctl_enqueue_cmd, "--key: at most 1024 bytes");
    return CTL_PARSE_GO_ON;
}

/* Fill t for task number i (1-based) of count. */
static void ctl_enqueue_task(const ctl_enqueue_opts_t *o, const char *type,
                             const char *given_trace_id, int64_t i, task_t *t)
{
    memset(t, 0, sizeof(*t));
    if (o->id && o->count == 1)
        snprintf(t->task_id, sizeof(t->task_id), "%s", o->id);
    else if (o->id)
        snprintf(t->task_id, sizeof(t->task_id), "%s-%" PRId64, o->id, i);
    else
        task_id_new(t->task_id);
    snprintf(t->task_type, sizeof(t->task_type), "%s", type);
    if (o->trace) {
        snprintf(t->trace_id, sizeof(t->trace_id), "%s", given_trace_id);
        snprintf(t->traceparent, sizeof(t->traceparent), "%s", o->trace);
    } else {
        task_trace_id_new(t->trace_id);
        task_traceparent_new(t->trace_id, t->traceparent);
    }
    t->created_at_ms = clock_wall_ms();
    t->attempt = 0;
    t->deadline_ms = o->deadline_ms > 0 ? t->created_at_ms + o->deadline_ms : 0;
}

/* Produce the tasks; returns the exit code. */
static int ctl_enqueue_run(ctl_env_t *env, const ctl_enqueue_opts_t *o, const char *type,
                           const char *trace_id, const uint8_t *payload, size_t payload_len)
{
    ctl_enqueue_result_t result = {-1, -1};
    char err[CTL_ERR_MAX], first[TASK_ID_MAX] = "", last[TASK_ID_MAX] = "";
    mq_producer_t *p = NULL;
    ctl_window_t *w = NULL;
    int64_t start = clock_mono_ms(), progress_every = o->count >= 10000 ? o->count / 10 : 0;
    uint64_t ok = 0, failed = 0;
    int32_t np = 0;
    int rc = CTL_EXIT_FAIL;
    task_t t;

    p = ctl_producer_new(env, err, sizeof(err));
    if (!p) {
        ctl_fail("enqueue", "%s", err);
        goto out;
    }
    if (ctl_topic_partitions(mq_producer_handle(p), env->task_topic, (int)env->timeout_ms, &np, err,
                             sizeof(err)) != 0) {
        ctl_fail("enqueue", "%s (brokers %s)", err, env->brokers);
        goto out;
    }
    w = ctl_window_new((int)(o->in_flight < o->count ? o->in_flight : o->count), ctl_enqueue_done,
                       &result);
    if (!w) {
        ctl_fail("enqueue", "out of memory");
        goto out;
    }
    for (int64_t i = 1; i <= o->count; i++) {
        uint8_t *value = NULL;
        size_t len = 0;
        mq_header_t hdrs[3];
        ctl_enqueue_task(o, type, trace_id, i, &t);
        t.payload = payload;
        t.payload_len = payload_len;
        if (task_encode(&t, &value, &len) != 0) {
            ctl_fail("enqueue", "out of memory encoding task %s", t.task_id);
            goto out;
        }
        if (len > TASK_MAX_BYTES) {
            ctl_fail("enqueue", "the envelope is %zu bytes, more than the %d a consumer accepts",
                     len, TASK_MAX_BYTES);
            free(value);
            goto out;
        }
        hdrs[0] = (mq_header_t){HDR_TASK_TYPE, t.task_type, strlen(t.task_type)};
        hdrs[1] = (mq_header_t){HDR_TASK_ID, t.task_id, strlen(t.task_id)};
        hdrs[2] = (mq_header_t){HDR_TRACEPARENT, t.traceparent, strlen(t.traceparent)};
        ctl_window_produce(w, p, env->task_topic, o->key, o->key ? strlen(o->key) : 0, value, len,
                           hdrs, 3, t.task_id, env->timeout_ms);
        free(value);
        if (i == 1)
            snprintf(first, sizeof(first), "%s", t.task_id);
        snprintf(last, sizeof(last), "%s", t.task_id);
        if (progress_every && i % progress_every == 0 && i < o->count) {
            double s = (double)(clock_mono_ms() - start) / 1000.0;
            fprintf(stderr, "queued %" PRId64 "/%" PRId64 " (%.0f tasks/s)\n", i, o->count,
                    s > 0 ? (double)i / s : 0.0);
        }
    }
    if (ctl_window_drain(w, env->timeout_ms + 1000) != 0)
        ctl_fail("enqueue", "some tasks are not confirmed after %" PRId64 " ms", env->timeout_ms);
    mq_producer_destroy(&p, (int)env->timeout_ms); /* reports whatever was left */
    ctl_window_stats(w, &ok, &failed, NULL);
    if (o->count == 1 && ok == 1) {
        printf(
            "enqueued task %s (type %s, trace %s) to %s partition %" PRId32 " offset %" PRId64 "\n",
            t.task_id, t.task_type, t.trace_id, env->task_topic, result.partition, result.offset);
    } else if (o->count > 1) {
        double s = (double)(clock_mono_ms() - start) / 1000.0;
        printf("enqueued %" PRIu64 " of %" PRId64 " tasks (type %s) to %s in %.3f s: %.0f "
               "tasks/s; failed %" PRIu64 "\n",
               ok, o->count, type, env->task_topic, s, s > 0 ? (double)ok / s : 0.0, failed);
        printf("task ids: %s .. %s\n", first, last);
    }
    rc = failed == 0 && ok == (uint64_t)o->count ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    if (rc != CTL_EXIT_OK && o->count == 1)
        ctl_fail("enqueue", "task %s was not enqueued", t.task_id);
out:
    mq_producer_destroy(&p, (int)env->timeout_ms);
    ctl_window_destroy(&w);
    return rc;
}

int ctl_cmd_enqueue(ctl_env_t *env, int argc, char **argv)
{
    ctl_enqueue_opts_t o = {.count = 1, .in_flight = 10000};
    const ctl_opt_t opts[] = {
        {"type", CTL_OPT_STRING, &o.type, "TYPE",
         "task type: fanout, push, content_audit (audit), archive, report", 0, 0},
        {"id", CTL_OPT_STRING, &o.id, "ID", "task id (default: a random UUID)", 0, 0},
        {"trace", CTL_OPT_STRING, &o.trace, "TRACEPARENT",
         "W3C traceparent to continue (default: a new trace)", 0, 0},
        {"key", CTL_OPT_STRING, &o.key, "KEY",
         "record key, which picks the partition (default: none)", 0, 0},
        {"deadline-ms", CTL_OPT_INT, &o.deadline_ms, "N",
         "the task expires N ms after it is created (default 0: never)", 0,
         CTL_ENQUEUE_DEADLINE_MAX},
        {"payload-json", CTL_OPT_STRING, &o.payload_json, "JSON|@FILE",
         "payload as JSON of the type's payload message", 0, 0},
        {"payload-file", CTL_OPT_STRING, &o.payload_file, "FILE",
         "payload bytes from FILE ('-': stdin)", 0, 0},
        {"payload-hex", CTL_OPT_STRING, &o.payload_hex, "HEX", "payload bytes in hex", 0, 0},
        {"payload-text", CTL_OPT_STRING, &o.payload_text, "TEXT", "payload bytes: TEXT as is", 0,
         0},
        {"count", CTL_OPT_INT, &o.count, "N", "produce N tasks (default 1, at most 1000000)", 1,
         CTL_ENQUEUE_MAX_COUNT},
        {"in-flight", CTL_OPT_INT, &o.in_flight, "N",
         "with --count: at most N unacknowledged at once (default 10000)", 1, CTL_WINDOW_MAX},
    };
    ctl_optset_t own = {opts, sizeof(opts) / sizeof(opts[0]), "options"};
    char trace_id[TASK_TRACE_ID_LEN + 1] = "";
    const char *type = NULL;
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    int rc;

    rc = ctl_parse(env, &ctl_enqueue_cmd, &own, argc, argv, NULL, 0, NULL);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    rc = ctl_enqueue_check(&o, &type, trace_id);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    rc = ctl_enqueue_payload(&o, type, &payload, &payload_len);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    rc = ctl_enqueue_run(env, &o, type, trace_id, payload, payload_len);
    free(payload);
    return rc;
}
