/* report.c: the `report` processor: for the period before a scheduled slot,
 * message activity from im-repo and im-task's outcomes from the outcome
 * topic, written as JSON, CSV and HTML through the archive storage
 * (docs/report.md). The same slot always writes the same keys, so a double
 * firing only rewrites them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/outcome.h"
#include "infra/clock.h"
#include "infra/log.h"
#include "proto/schedule.pb-c.h"
#include "report.h"
#include "report_model.h"
#include "repoclient/repoclient.h"
#include "storage.h"

typedef struct {
    const char *prefix;
    const char *default_period;
    const char *default_time_zone;
    int64_t settle_ms;
    int64_t clock_skew_ms;
    int64_t read_timeout_ms;
    int64_t imrepo_timeout_ms;
    int64_t max_series;
} report_conf_t;

#define RC(k) offsetof(report_conf_t, k)
static const cfg_field_t report_fields[] = {
    {.key = "prefix",
     .type = CFG_STRING,
     .offset = RC(prefix),
     .def = "reports",
     .help = "storage key prefix: <prefix>/<job>/<period start>.{json,csv,html}"},
    {.key = "default_period",
     .type = CFG_STRING,
     .offset = RC(default_period),
     .def = "day",
     .help = "period when the job's params have none: hour or day"},
    {.key = "default_time_zone",
     .type = CFG_STRING,
     .offset = RC(default_time_zone),
     .def = "UTC",
     .help = "time zone when the job's params have none (tz database name)"},
    {.key = "settle",
     .type = CFG_DURATION,
     .offset = RC(settle_ms),
     .def = "30s",
     .min = 0,
     .max = 3600000,
     .help = "wait this long after a period ends before reading it (late events)"},
    {.key = "clock_skew",
     .type = CFG_DURATION,
     .offset = RC(clock_skew_ms),
     .def = "60s",
     .min = 0,
     .max = 3600000,
     .help = "outcome records are read from start - skew to a record time of end + skew"},
    {.key = "read_timeout",
     .type = CFG_DURATION,
     .offset = RC(read_timeout_ms),
     .def = "120s",
     .min = 1000,
     .max = 3600000,
     .help = "reading one period of the outcome topic; past it the task is retried"},
    {.key = "imrepo_timeout",
     .type = CFG_DURATION,
     .offset = RC(imrepo_timeout_ms),
     .def = "30s",
     .min = 100,
     .max = 600000,
     .help = "deadline of the GetActivityStats call"},
    {.key = "max_series",
     .type = CFG_INT,
     .offset = RC(max_series),
     .def = "10000",
     .min = 1,
     .max = 1000000,
     .help = "distinct outcome series kept; events of further ones are summed as overflow"},
};
#undef RC

typedef struct {
    report_conf_t conf;
    report_period_t default_period;
    repo_conf_t *rconf; /* until start: then the client's */
    repo_client_t *rc;
    const char *brokers;
    const cfg_kvs_t *kafka_props;
    /* imtask_report_runs_total{result}: written, retry, dead */
    metrics_series_t *runs[3], *events, *seconds;
} report_state_t;

static int report_configure(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    report_state_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    report_tz_init();
    s->rconf = repo_conf_new();
    if (!s->rconf) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg_bind(cfg, "report", report_fields, sizeof(report_fields) / sizeof(report_fields[0]),
                 &s->conf, NULL, err, errlen) ||
        repo_conf_bind(s->rconf, cfg, "imrepo", err, errlen) || store_configure(cfg, err, errlen))
        goto fail;
    if (report_period_parse(s->conf.default_period, &s->default_period)) {
        snprintf(err, errlen, "report.default_period: expected hour or day, got \"%s\"",
                 s->conf.default_period);
        goto fail;
    }
    if (!report_tz_ok(s->conf.default_time_zone)) {
        snprintf(err, errlen,
                 "report.default_time_zone: expected UTC or a tz database name, got \"%s\"",
                 s->conf.default_time_zone);
        goto fail;
    }
    if (!store_key_ok(s->conf.prefix)) {
        snprintf(err, errlen, "report.prefix: \"%s\" is not a storage key prefix", s->conf.prefix);
        goto fail;
    }
    *state = s;
    return 0;
fail:
    repo_conf_destroy(s->rconf);
    free(s);
    return -1;
}

static int report_start(void *state, app_t *app, char *err, size_t errlen)
{
    report_state_t *s = state;
    char rerr[256];
    if (repo_client_new(&s->rc, s->rconf, rerr, sizeof(rerr))) {
        snprintf(err, errlen, "im-repo client: %s", rerr);
        return -1;
    }
    s->rconf = NULL;
    static const char *const lr[] = {"result"};
    metrics_registry_t *reg = app_metrics(app);
    metrics_family_t *runs = metrics_counter_new(
        reg, "imtask_report_runs_total",
        "Report tasks by result: written, retry (tried again later), dead (dead-lettered)", 1, lr);
    s->runs[0] = metrics_series_get1(runs, "written");
    s->runs[1] = metrics_series_get1(runs, "retry");
    s->runs[2] = metrics_series_get1(runs, "dead");
    s->events = metrics_series_get0(
        metrics_counter_new(reg, "imtask_report_outcome_events_total",
                            "Outcome events counted into written reports", 0, NULL));
    s->seconds = metrics_series_get0(
        metrics_histogram_new(reg, "imtask_report_seconds", "Time to compute and write one report",
                              0, NULL, metrics_latency_nbounds, metrics_latency_bounds));
    s->brokers = app_config(app)->kafka_brokers;
    s->kafka_props = &app_config(app)->kafka_props;
    log_info("report: writing %s/<job>/..., outcomes from %s", s->conf.prefix,
             dispatch_outcome_topic());
    return 0;
}

static void report_destroy(void *state)
{
    report_state_t *s = state;
    if (!s)
        return;
    repo_client_destroy(&s->rc);
    repo_conf_destroy(s->rconf);
    free(s);
}

static const char *report_param(const Imtask__V1__ScheduledRun *run, const char *k1, const char *k2)
{
    for (size_t i = 0; i < run->n_params; i++) {
        const char *k = run->params[i]->key;
        if (k && (strcmp(k, k1) == 0 || (k2 && strcmp(k, k2) == 0)))
            return run->params[i]->value;
    }
    return NULL;
}

static bool report_repo_retriable(repo_err_t c)
{
    return repo_err_is_retriable(c) || c == REPO_ERR__SHUTDOWN || c == REPO_ERR_UNKNOWN ||
           c == REPO_ERR_INTERNAL || c == REPO_ERR__PROTOCOL;
}

/* GetActivityStats into r. 0, or a result to return. */
static int report_activity(report_state_t *s, report_t *r, dispatch_result_t *res)
{
    ImRepo__V1__GetActivityStatsRequest req = IM_REPO__V1__GET_ACTIVITY_STATS_REQUEST__INIT;
    ImRepo__V1__GetActivityStatsResponse *resp = NULL;
    repo_call_opts_t opts = {.timeout_ms = s->conf.imrepo_timeout_ms};
    repo_status_t st;
    req.from = r->start_ms;
    req.to = r->end_ms;
    req.bucket_ms = r->bucket_ms;
    if (repo_get_activity_stats(s->rc, &req, &opts, &resp, &st) != REPO_ERR_OK) {
        if (report_repo_retriable(st.code))
            *res = dispatch_retry(0, "im-repo GetActivityStats: %s: %s", repo_err_name(st.code),
                                  st.message);
        else
            *res = dispatch_dead("im-repo GetActivityStats: %s: %s", repo_err_name(st.code),
                                 st.message);
        return -1;
    }
    r->messages = resp->messages;
    r->active_users = resp->active_users;
    r->active_groups = resp->active_groups;
    r->new_users = resp->new_users;
    r->ntypes = 0;
    for (size_t i = 0; i < resp->n_by_type; i++) {
        if (resp->n_by_type <= REPORT_MAX_TYPES || r->ntypes < REPORT_MAX_TYPES - 1) {
            r->by_type[r->ntypes].type = resp->by_type[i]->message_type;
            r->by_type[r->ntypes++].messages = resp->by_type[i]->messages;
            continue;
        }
        if (r->ntypes == REPORT_MAX_TYPES - 1) /* the last row sums the rest, as type -1 */
            r->by_type[r->ntypes++] = (report_type_count_t){.type = -1};
        r->by_type[REPORT_MAX_TYPES - 1].messages += resp->by_type[i]->messages;
    }
    for (size_t i = 0; i < resp->n_by_bucket; i++) {
        int64_t off = resp->by_bucket[i]->start - r->start_ms;
        if (off < 0 || off % r->bucket_ms != 0 || (size_t)(off / r->bucket_ms) >= r->nbuckets) {
            log_warn("im-repo GetActivityStats: bucket at %lld is not one of the period's "
                     "(start %lld, %lld ms each): ignored",
                     (long long)resp->by_bucket[i]->start, (long long)r->start_ms,
                     (long long)r->bucket_ms);
            continue;
        }
        r->bucket_messages[off / r->bucket_ms] += resp->by_bucket[i]->messages;
    }
    repo_response_free(&resp->base);
    return 0;
}

static int report_write(report_state_t *s, const report_t *r, dispatch_result_t *res)
{
    static const struct {
        const char *ext, *type;
        int (*render)(const report_t *, char **, size_t *);
    } outs[] = {
        {"json", "application/json", report_render_json},
        {"csv", "text/csv; charset=utf-8", report_render_csv},
        {"html", "text/html; charset=utf-8", report_render_html},
    };
    char stamp[32], key[STORE_KEY_MAX + 1], err[256];
    store_t *st = store_shared();
    if (!st) {
        *res = dispatch_retry(0, "storage is not available (see the log)");
        return -1;
    }
    report_utc_stamp(r->start_ms, stamp, sizeof(stamp));
    for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++) {
        char *text;
        size_t len;
        int n =
            snprintf(key, sizeof(key), "%s/%s/%s.%s", s->conf.prefix, r->job, stamp, outs[i].ext);
        if (n < 0 || (size_t)n >= sizeof(key) || !store_key_ok(key)) {
            *res = dispatch_dead("job name \"%s\" makes a bad storage key", r->job);
            return -1;
        }
        if (outs[i].render(r, &text, &len)) {
            *res =
                dispatch_retry(0, "rendering the %s report failed (out of memory?)", outs[i].ext);
            return -1;
        }
        int rc = store_put(st, key, text, len, outs[i].type, err, sizeof(err));
        free(text);
        if (rc) {
            *res = dispatch_retry(0, "writing %s: %s", key, err);
            return -1;
        }
    }
    log_info("report %s: %s/%s/%s.{json,csv,html} written (%lld messages, %lld outcome events)",
             r->job, s->conf.prefix, r->job, stamp, (long long)r->messages,
             (long long)r->outcome_events);
    return 0;
}

static dispatch_result_t report_process(void *state, dispatch_task_t *task)
{
    report_state_t *s = state;
    size_t plen;
    const uint8_t *payload = dispatch_task_payload(task, &plen);
    Imtask__V1__ScheduledRun *run = imtask__v1__scheduled_run__unpack(NULL, plen, payload);
    dispatch_result_t res = dispatch_done();
    report_t r;
    char err[512];
    const char *p, *tz;

    memset(&r, 0, sizeof(r));
    if (!run) {
        res = dispatch_dead("payload: not an imtask.v1.ScheduledRun (%zu bytes)", plen);
        goto out;
    }
    if (!run->job || !*run->job || strlen(run->job) >= sizeof(r.job)) {
        res = dispatch_dead("ScheduledRun.job: expected a job name of 1..%zu bytes",
                            sizeof(r.job) - 1);
        goto out;
    }
    snprintf(r.job, sizeof(r.job), "%s", run->job);
    p = report_param(run, "period", NULL);
    r.period = s->default_period;
    if (p && report_period_parse(p, &r.period)) {
        res = dispatch_dead("params.period: expected hour or day, got \"%s\"", p);
        goto out;
    }
    tz = report_param(run, "time_zone", "tz");
    if (!tz)
        tz = s->conf.default_time_zone;
    if (!report_tz_ok(tz)) {
        res = dispatch_dead("params.time_zone: expected UTC or a tz database name, got \"%s\"", tz);
        goto out;
    }
    snprintf(r.tz, sizeof(r.tz), "%s", tz);
    r.slot_ms = run->scheduled_at_ms;
    r.manual = run->manual;
    if (report_period_bounds(r.slot_ms, r.period, r.tz, &r.start_ms, &r.end_ms, err, sizeof(err))) {
        res = dispatch_dead("%s", err);
        goto out;
    }
    int64_t now = clock_wall_ms();
    if (now < r.end_ms + s->conf.settle_ms) {
        res = dispatch_retry(r.end_ms + s->conf.settle_ms - now,
                             "the period ends at %lld; reading it %lld ms later (report.settle)",
                             (long long)r.end_ms, (long long)s->conf.settle_ms);
        goto out;
    }
    report_buckets_init(&r);
    r.generated_ms = now;
    if (report_activity(s, &r, &res))
        goto out;
    r.agg = report_agg_new((size_t)s->conf.max_series);
    if (!r.agg) {
        res = dispatch_retry(0, "out of memory");
        goto out;
    }
    report_read_opts_t ro = {
        .brokers = s->brokers,
        .kafka_props = s->kafka_props,
        .topic = dispatch_outcome_topic(),
        .clock_skew_ms = s->conf.clock_skew_ms,
        .timeout_ms = s->conf.read_timeout_ms,
    };
    if (report_read_outcomes(&ro, &r, err, sizeof(err))) {
        res = dispatch_retry(0, "%s", err);
        goto out;
    }
    if (report_write(s, &r, &res) == 0) {
        metrics_counter_add(s->events, (double)r.outcome_events);
        metrics_histogram_observe(s->seconds, (double)(clock_wall_ms() - now) / 1000.0);
    }
out:
    metrics_counter_add(s->runs[res.status == DISPATCH_DONE    ? 0
                                : res.status == DISPATCH_RETRY ? 1
                                                               : 2],
                        1);
    report_agg_destroy(&r.agg);
    if (run)
        imtask__v1__scheduled_run__free_unpacked(run, NULL);
    return res;
}

const dispatch_ops_t report_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "report",
    .configure = report_configure,
    .start = report_start,
    .process = report_process,
    .destroy = report_destroy,
};
