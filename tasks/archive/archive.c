/* archive.c: the `archive` processor of imtask-archive: decodes the
 * ScheduledRun payload, works out the cutoff (slot - retention) and runs the
 * job (archive_run.c) against the shared store and im-repo; metrics. */
#include "archive.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive_run.h"
#include "infra/log.h"
#include "infra/metrics.h"
#include "proto/schedule.pb-c.h"
#include "repoclient/repoclient.h"
#include "storage.h"

#define ARCHIVE_MAX_JOBS 64 /* jobs running at once in one process */

typedef struct {
    const char *prefix;
    int64_t retention_ms;
    int64_t page_size;
    int64_t segment_max_messages;
    int64_t segment_max_bytes;
    int64_t delete_batch;
    int64_t zstd_level;
    int64_t call_timeout_ms;
} archive_conf_t;

#define AC(k) offsetof(archive_conf_t, k)
static const cfg_field_t archive_fields[] = {
    {.key = "prefix",
     .type = CFG_STRING,
     .offset = AC(prefix),
     .def = "archive",
     .help = "key prefix of archives in the store (<prefix>/<job>/...)"},
    {.key = "retention",
     .type = CFG_DURATION,
     .offset = AC(retention_ms),
     .def = "30d",
     .min = 1,
     .max = 36500.0 * 86400000,
     .help = "messages created before (the scheduled time - retention) are archived; a job's "
             "params.retention overrides it"},
    {.key = "page_size",
     .type = CFG_INT,
     .offset = AC(page_size),
     .def = "10000",
     .min = 1,
     .max = 10000,
     .help = "messages per ListMessagesBefore call"},
    {.key = "segment_max_messages",
     .type = CFG_INT,
     .offset = AC(segment_max_messages),
     .def = "100000",
     .min = 1,
     .max = 10000000,
     .help = "a segment ends at this many messages"},
    {.key = "segment_max_bytes",
     .type = CFG_INT,
     .offset = AC(segment_max_bytes),
     .def = "67108864",
     .min = 1024,
     .max = 1073741824,
     .help = "... or once its NDJSON reaches this many bytes"},
    {.key = "delete_batch",
     .type = CFG_INT,
     .offset = AC(delete_batch),
     .def = "10000",
     .min = 1,
     .max = 10000,
     .help = "message ids per DeleteMessages call"},
    {.key = "zstd_level",
     .type = CFG_INT,
     .offset = AC(zstd_level),
     .def = "3",
     .min = 1,
     .max = 19,
     .help = "zstd compression level"},
    {.key = "imrepo_timeout",
     .type = CFG_DURATION,
     .offset = AC(call_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = 600000,
     .help = "deadline of each im-repo call"},
};
#undef AC

typedef struct {
    archive_conf_t conf;
    repo_conf_t *repo_conf;
    repo_client_t *repo;
    store_t *store;
    app_t *app;
    metrics_series_t *m_messages, *m_segments, *m_ndjson, *m_zst, *m_deletes, *m_verify_fail,
        *m_recovered, *m_pages;
    metrics_family_t *f_runs;
    pthread_mutex_t mu;
    char running[ARCHIVE_MAX_JOBS][SEG_JOB_MAX + 1];
} archive_t;

static void archive_destroy(void *state)
{
    archive_t *a = state;
    if (!a)
        return;
    repo_client_destroy(&a->repo);
    repo_conf_destroy(a->repo_conf);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static int archive_configure(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    archive_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&a->mu, NULL);
    if (cfg_bind(cfg, "archive", archive_fields, sizeof(archive_fields) / sizeof(archive_fields[0]),
                 &a->conf, NULL, err, errlen))
        goto fail;
    if (!a->conf.prefix || !store_key_ok(a->conf.prefix)) {
        snprintf(err, errlen,
                 "archive.prefix: expected a storage key prefix ([A-Za-z0-9._=@:+-] parts "
                 "separated by '/'), got \"%s\"",
                 a->conf.prefix ? a->conf.prefix : "");
        goto fail;
    }
    if (store_configure(cfg, err, errlen))
        goto fail;
    a->repo_conf = repo_conf_new();
    if (!a->repo_conf) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (repo_conf_bind(a->repo_conf, cfg, "imrepo", err, errlen))
        goto fail;
    *state = a;
    return 0;
fail:
    archive_destroy(a);
    return -1;
}

static int archive_start(void *state, app_t *app, char *err, size_t errlen)
{
    archive_t *a = state;
    char why[512];
    a->store = store_shared();
    if (!a->store) {
        snprintf(err, errlen, "storage: cannot open the store (see the log)");
        return -1;
    }
    if (repo_client_new(&a->repo, a->repo_conf, why, sizeof(why))) {
        snprintf(err, errlen, "im-repo client (imrepo: section): %s", why);
        return -1;
    }
    a->repo_conf = NULL; /* the client owns it */
    a->app = app;
    metrics_registry_t *reg = app ? app_metrics(app) : NULL;
    if (reg) {
        static const char *const form[] = {"form"};
        static const char *const result[] = {"result"};
        a->m_messages = metrics_series_get0(metrics_counter_new(
            reg, "imtask_archive_messages_total",
            "Messages archived (in a verified segment and deleted from im-repo)", 0, NULL));
        a->m_segments = metrics_series_get0(metrics_counter_new(
            reg, "imtask_archive_segments_total", "Segments written and verified", 0, NULL));
        metrics_family_t *b = metrics_counter_new(reg, "imtask_archive_bytes_total",
                                                  "Bytes archived: ndjson (before compression) "
                                                  "and zst (stored)",
                                                  1, form);
        a->m_ndjson = metrics_series_get1(b, "ndjson");
        a->m_zst = metrics_series_get1(b, "zst");
        a->m_deletes = metrics_series_get0(
            metrics_counter_new(reg, "imtask_archive_deletes_total",
                                "Messages im-repo deleted for the archive", 0, NULL));
        a->m_verify_fail = metrics_series_get0(metrics_counter_new(
            reg, "imtask_archive_verify_failures_total",
            "Segments that did not match their manifest when read back", 0, NULL));
        a->m_recovered = metrics_series_get0(
            metrics_counter_new(reg, "imtask_archive_recovered_segments_total",
                                "Committed segments finished after a stop or crash", 0, NULL));
        a->m_pages = metrics_series_get0(metrics_counter_new(
            reg, "imtask_archive_pages_total", "ListMessagesBefore pages read", 0, NULL));
        a->f_runs =
            metrics_counter_new(reg, "imtask_archive_runs_total",
                                "Archive runs by result: done, cancelled, retry, dead", 1, result);
    }
    log_info("archive: storage %s, prefix %s", store_describe(a->store), a->conf.prefix);
    return 0;
}

static void add(metrics_series_t *s, uint64_t v)
{
    if (s && v)
        metrics_counter_add(s, (double)v);
}

typedef struct {
    archive_t *a;
    dispatch_task_t *task;
} run_ctx_t;

static void on_progress(void *opaque, const archive_counts_t *d)
{
    archive_t *a = ((run_ctx_t *)opaque)->a;
    add(a->m_messages, d->messages);
    add(a->m_segments, d->segments);
    add(a->m_ndjson, d->ndjson_bytes);
    add(a->m_zst, d->zst_bytes);
    add(a->m_deletes, d->deleted);
    add(a->m_verify_fail, d->verify_failures);
    add(a->m_recovered, d->recovered);
    add(a->m_pages, d->pages);
}

/* A run stops at its next safe point as soon as the binary is asked to stop
 * (it resumes from the checkpoint when the task comes again), rather than
 * only once the grace is over. app_stopping() stays true from then on, so
 * dispatch_task_cancelled() is not asked while the runtime is taking its
 * consumer down (it reads the consumer pointer the runtime clears then). */
static bool task_cancelled(void *opaque)
{
    run_ctx_t *ctx = opaque;
    if (ctx->a->app && app_stopping(ctx->a->app))
        return true;
    return dispatch_task_cancelled(ctx->task);
}

/* One run per job at a time in this process. */
static int job_lock(archive_t *a, const char *job)
{
    int rc = -1;
    pthread_mutex_lock(&a->mu);
    int free_slot = -1;
    for (int i = 0; i < ARCHIVE_MAX_JOBS; i++) {
        if (a->running[i][0] && strcmp(a->running[i], job) == 0) {
            free_slot = -2;
            break;
        }
        if (!a->running[i][0] && free_slot == -1)
            free_slot = i;
    }
    if (free_slot >= 0) {
        snprintf(a->running[free_slot], sizeof(a->running[0]), "%s", job);
        rc = 0;
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static void job_unlock(archive_t *a, const char *job)
{
    pthread_mutex_lock(&a->mu);
    for (int i = 0; i < ARCHIVE_MAX_JOBS; i++) {
        if (strcmp(a->running[i], job) == 0) {
            a->running[i][0] = '\0';
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
}

static void count_run(archive_t *a, const char *result)
{
    if (a->f_runs)
        metrics_counter_add(metrics_series_get1(a->f_runs, result), 1);
}

/* params of the run: retention (duration), page_size, segment_max_messages,
 * segment_max_bytes, delete_batch (integers). */
static int apply_params(const Imtask__V1__ScheduledRun *run, archive_limits_t *lim,
                        int64_t *retention_ms, char *err, size_t errlen)
{
    for (size_t i = 0; i < run->n_params; i++) {
        const char *k = run->params[i]->key ? run->params[i]->key : "";
        const char *v = run->params[i]->value ? run->params[i]->value : "";
        if (strcmp(k, "retention") == 0) {
            if (cfg_parse_duration_ms(v, retention_ms) || *retention_ms <= 0) {
                snprintf(err, errlen,
                         "params.retention: expected a positive duration (e.g. 30d, 12h), got "
                         "\"%.40s\"",
                         v);
                return -1;
            }
            continue;
        }
        struct {
            const char *name;
            int64_t *p;
            int64_t min, max;
        } ints[] = {
            {"page_size", &lim->page_size, 1, 10000},
            {"segment_max_messages", &lim->segment_max_messages, 1, 10000000},
            {"segment_max_bytes", &lim->segment_max_bytes, 1024, 1073741824},
            {"delete_batch", &lim->delete_batch, 1, 10000},
        };
        size_t j;
        for (j = 0; j < sizeof(ints) / sizeof(ints[0]); j++) {
            if (strcmp(k, ints[j].name))
                continue;
            char *end;
            long long n = strtoll(v, &end, 10);
            if (!*v || *end || n < ints[j].min || n > ints[j].max) {
                snprintf(err, errlen,
                         "params.%s: expected an integer in [%" PRId64 ", %" PRId64
                         "], got \"%.40s\"",
                         k, ints[j].min, ints[j].max, v);
                return -1;
            }
            *ints[j].p = n;
            break;
        }
        if (j == sizeof(ints) / sizeof(ints[0]))
            log_warn("archive: unknown param \"%.60s\" ignored", k);
    }
    return 0;
}

static dispatch_result_t archive_process(void *state, dispatch_task_t *task)
{
    archive_t *a = state;
    size_t len;
    const uint8_t *payload = dispatch_task_payload(task, &len);
    Imtask__V1__ScheduledRun *run = imtask__v1__scheduled_run__unpack(NULL, len, payload);
    if (!run)
        return dispatch_dead("payload: expected an imtask.v1.ScheduledRun (protobuf), %zu bytes "
                             "did not decode",
                             len);
    char err[1024];
    dispatch_result_t res;
    archive_limits_t lim;
    archive_limits_default(&lim);
    lim.prefix = a->conf.prefix;
    lim.page_size = a->conf.page_size;
    lim.segment_max_messages = a->conf.segment_max_messages;
    lim.segment_max_bytes = a->conf.segment_max_bytes;
    lim.delete_batch = a->conf.delete_batch;
    lim.zstd_level = (int)a->conf.zstd_level;
    lim.call_timeout_ms = a->conf.call_timeout_ms;
    int64_t retention = a->conf.retention_ms;
    const char *job = run->job ? run->job : "";
    if (!seg_job_ok(job)) {
        res = dispatch_dead("payload.job \"%.80s\": expected a job name of [A-Za-z0-9._-], 1..%d "
                            "bytes, not starting with '.'",
                            job, SEG_JOB_MAX);
        goto out;
    }
    if (run->scheduled_at_ms <= 0) {
        res = dispatch_dead("payload.scheduled_at_ms: expected Unix ms > 0, got %" PRId64,
                            run->scheduled_at_ms);
        goto out;
    }
    if (apply_params(run, &lim, &retention, err, sizeof(err))) {
        res = dispatch_dead("%s", err);
        goto out;
    }
    int64_t cutoff = run->scheduled_at_ms - retention;
    if (job_lock(a, job)) {
        res = dispatch_retry(5000, "archive job %s is running in another worker", job);
        goto out;
    }
    run_ctx_t ctx = {.a = a, .task = task};
    archive_env_t env = {.store = a->store,
                         .repo = a->repo,
                         .cancelled = task_cancelled,
                         .opaque = &ctx,
                         .progress = on_progress};
    archive_counts_t c;
    log_info("archive %s: run %s: messages created before %" PRId64 " (slot %" PRId64
             " - retention %" PRId64 " ms)",
             job, dispatch_task_id(task), cutoff, run->scheduled_at_ms, retention);
    archive_rc_t rc =
        archive_run(&env, &lim, job, dispatch_task_id(task), cutoff, &c, err, sizeof(err));
    job_unlock(a, job);
    switch (rc) {
    case ARCHIVE_OK:
        log_info("archive %s: run %s done: %" PRIu64 " messages in %" PRIu64 " segments (%" PRIu64
                 " bytes stored), %" PRIu64 " recovered segments",
                 job, dispatch_task_id(task), c.messages, c.segments, c.zst_bytes, c.recovered);
        count_run(a, "done");
        res = dispatch_done();
        break;
    case ARCHIVE_CANCELLED:
        log_info("archive %s: run %s stopped at a safe point after %" PRIu64
                 " messages; it resumes from the checkpoint",
                 job, dispatch_task_id(task), c.messages);
        count_run(a, "cancelled");
        res = dispatch_retry(1000,
                             "archive %s: stopping; %" PRIu64
                             " messages archived so far, resumes from the checkpoint",
                             job, c.messages);
        break;
    case ARCHIVE_TRANSIENT:
        count_run(a, "retry");
        log_warn("archive %s: %s", job, err);
        res = dispatch_retry(0, "archive %s: %s", job, err);
        break;
    default:
        count_run(a, "dead");
        log_error("archive %s: %s", job, err);
        res = dispatch_dead("archive %s: %s", job, err);
        break;
    }
out:
    imtask__v1__scheduled_run__free_unpacked(run, NULL);
    return res;
}

const dispatch_ops_t archive_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "archive",
    .configure = archive_configure,
    .start = archive_start,
    .process = archive_process,
    .destroy = archive_destroy,
};
