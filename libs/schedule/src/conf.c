/* conf.c: the `schedule:` config and its job sections, and the task record of
 * a firing (scheduler.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/headers.h"
#include "dispatch/task.h"
#include "infra/clock.h"
#include "proto/schedule.pb-c.h"
#include "schedule/scheduler.h"

const char *const sched_task_types[] = {"archive", "report", NULL};

#define SC_OFF(f) offsetof(sched_conf_t, f)

static const cfg_field_t sched_fields[] = {
    {.key = "jobs",
     .type = CFG_LIST,
     .offset = SC_OFF(job_names),
     .help = "names of the jobs; each has a section schedule_job_<name>"},
    {.key = "etcd_endpoints",
     .type = CFG_STRING,
     .offset = SC_OFF(etcd_endpoints),
     .def = "http://127.0.0.1:2379",
     .help = "etcd v3 JSON gateway endpoints for leader election, comma-separated"},
    {.key = "etcd_prefix",
     .type = CFG_STRING,
     .offset = SC_OFF(etcd_prefix),
     .def = "/imtask/schedule/",
     .help = "etcd key prefix: <prefix>leader, <prefix>last/<job>"},
    {.key = "etcd_timeout",
     .type = CFG_DURATION,
     .offset = SC_OFF(etcd_timeout_ms),
     .def = "2s",
     .min = 100,
     .max = 60000,
     .help = "timeout of one etcd request"},
    {.key = "lease_ttl",
     .type = CFG_DURATION,
     .offset = SC_OFF(lease_ttl_ms),
     .def = "10s",
     .min = 2000,
     .max = 300000,
     .help = "leader lease; a dead leader is replaced after at most about this long"},
    {.key = "catch_up_max",
     .type = CFG_INT,
     .offset = SC_OFF(catch_up_max),
     .def = "10",
     .min = 1,
     .max = SCHED_MAX_CATCH_UP,
     .help = "missed slots a new leader fires per job (the newest); older ones are skipped"},
    {.key = "topic",
     .type = CFG_STRING,
     .offset = SC_OFF(topic),
     .def = "im-task-topic",
     .help = "the task topic firings are produced to"},
    {.key = "produce_timeout",
     .type = CFG_DURATION,
     .offset = SC_OFF(produce_timeout_ms),
     .def = "3s",
     .min = 100,
     .max = 100000,
     .help = "how long a firing waits for Kafka's acknowledgement (at most lease_ttl/3)"},
};

typedef struct {
    const char *cron;
    const char *time_zone;
    int task_type;
} sched_job_conf_t;

static const cfg_field_t sched_job_fields[] = {
    {.key = "cron",
     .type = CFG_STRING,
     .offset = offsetof(sched_job_conf_t, cron),
     .flags = CFG_REQUIRED,
     .help = "cron expression (5 fields, 6 with seconds first, or @daily etc.)"},
    {.key = "time_zone",
     .type = CFG_STRING,
     .offset = offsetof(sched_job_conf_t, time_zone),
     .def = "UTC",
     .help = "IANA time zone the cron expression is read in"},
    {.key = "task_type",
     .type = CFG_ENUM,
     .offset = offsetof(sched_job_conf_t, task_type),
     .flags = CFG_REQUIRED,
     .choices = sched_task_types,
     .help = "the task a firing produces"},
};

static bool sched_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SCHED_JOB_NAME_MAX)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

int sched_conf_bind(cfg_t *cfg, sched_conf_t *out, char *err, size_t errlen)
{
    char why[CFG_ERR_MAX];
    memset(out, 0, sizeof(*out));
    if (cfg_bind(cfg, "schedule", sched_fields, sizeof(sched_fields) / sizeof(sched_fields[0]), out,
                 NULL, err, errlen))
        return -1;
    if (out->lease_ttl_ms % 1000) {
        snprintf(err, errlen,
                 "schedule.lease_ttl: expected whole seconds (etcd leases), got %lld ms",
                 (long long)out->lease_ttl_ms);
        return -1;
    }
    /* the leader's one thread keeps the lease alive between firings: a firing
     * must not outlast a keep-alive period */
    if (out->produce_timeout_ms * 3 > out->lease_ttl_ms) {
        snprintf(err, errlen,
                 "schedule.produce_timeout (%lld ms) must be at most a third of "
                 "schedule.lease_ttl (%lld ms)",
                 (long long)out->produce_timeout_ms, (long long)out->lease_ttl_ms);
        return -1;
    }
    size_t pl = strlen(out->etcd_prefix);
    if (pl == 0 || pl > 128 || out->etcd_prefix[pl - 1] != '/') {
        snprintf(err, errlen,
                 "schedule.etcd_prefix: expected 1-128 bytes ending with '/', got \"%s\"",
                 out->etcd_prefix);
        return -1;
    }
    if (out->job_names.count > SCHED_MAX_JOBS) {
        snprintf(err, errlen, "schedule.jobs: at most %d jobs, got %zu", SCHED_MAX_JOBS,
                 out->job_names.count);
        return -1;
    }
    if (out->job_names.count == 0)
        return 0;
    if (!(out->jobs = calloc(out->job_names.count, sizeof(*out->jobs)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < out->job_names.count; i++) {
        const char *name = out->job_names.items[i];
        char section[96];
        sched_job_conf_t jc;
        sched_job_t *j = &out->jobs[i];
        if (!sched_name_ok(name)) {
            snprintf(err, errlen, "schedule.jobs[%zu]: \"%s\" is not a job name ([a-z0-9_], 1-%d)",
                     i, name, SCHED_JOB_NAME_MAX);
            return -1;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(out->jobs[k].name, name) == 0) {
                snprintf(err, errlen, "schedule.jobs[%zu]: job \"%s\" named twice", i, name);
                return -1;
            }
        }
        j->name = name;
        out->njobs = i + 1;
        snprintf(section, sizeof(section), "schedule_job_%s", name);
        if (cfg_bind(cfg, section, sched_job_fields,
                     sizeof(sched_job_fields) / sizeof(sched_job_fields[0]), &jc, NULL, err,
                     errlen))
            return -1;
        j->cron_text = jc.cron;
        j->time_zone = jc.time_zone;
        j->task_type = jc.task_type;
        if (sched_cron_parse(jc.cron, &j->cron, why, sizeof(why))) {
            snprintf(err, errlen, "%s.cron (schedule.jobs[%zu]): %s", section, i, why);
            return -1;
        }
        if (sched_tz_load(jc.time_zone, &j->tz, why, sizeof(why))) {
            snprintf(err, errlen, "%s.time_zone (schedule.jobs[%zu]): %s", section, i, why);
            return -1;
        }
        if (sched_cron_next(&j->cron, j->tz, clock_wall_ms()) < 0) {
            snprintf(err, errlen, "%s.cron (schedule.jobs[%zu]): \"%s\" never fires", section, i,
                     jc.cron);
            return -1;
        }
        snprintf(section, sizeof(section), "schedule_params_%s", name);
        if (cfg_bind(cfg, section, NULL, 0, &jc, &j->params, err, errlen))
            return -1;
    }
    return 0;
}

void sched_conf_free(sched_conf_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->njobs; i++)
        sched_tz_destroy(&c->jobs[i].tz);
    free(c->jobs);
    c->jobs = NULL;
    c->njobs = 0;
}

const sched_job_t *sched_conf_find(const sched_conf_t *c, const char *name)
{
    for (size_t i = 0; i < c->njobs; i++) {
        if (strcmp(c->jobs[i].name, name) == 0)
            return &c->jobs[i];
    }
    return NULL;
}

void sched_key_leader(const sched_conf_t *c, char *buf, size_t len)
{
    snprintf(buf, len, "%sleader", c->etcd_prefix);
}

void sched_key_last(const sched_conf_t *c, const char *job, char *buf, size_t len)
{
    snprintf(buf, len, "%slast/%s", c->etcd_prefix, job);
}

void sched_task_id(const sched_job_t *job, int64_t slot_ms, bool manual, char *buf, size_t len)
{
    snprintf(buf, len, "%s@%s%lld", job->name, manual ? "manual-" : "", (long long)slot_ms);
}

int sched_firing_encode(const sched_job_t *job, int64_t slot_ms, bool manual, int64_t now_ms,
                        char *task_id, char *traceparent, uint8_t **out, size_t *outlen)
{
    Imtask__V1__ScheduledRun run = IMTASK__V1__SCHEDULED_RUN__INIT;
    Imtask__V1__ScheduledRun__ParamsEntry *entries = NULL, **ptrs = NULL;
    uint8_t *payload = NULL;
    int rv = -1;
    size_t np = job->params.count;

    if (np && (!(entries = calloc(np, sizeof(*entries))) || !(ptrs = calloc(np, sizeof(*ptrs)))))
        goto out;
    for (size_t i = 0; i < np; i++) {
        Imtask__V1__ScheduledRun__ParamsEntry e = IMTASK__V1__SCHEDULED_RUN__PARAMS_ENTRY__INIT;
        e.key = (char *)job->params.items[i].key;
        e.value = (char *)job->params.items[i].value;
        entries[i] = e;
        ptrs[i] = &entries[i];
    }
    run.job = (char *)job->name;
    run.scheduled_at_ms = slot_ms;
    run.fired_at_ms = now_ms;
    run.manual = manual;
    run.n_params = np;
    run.params = ptrs;
    size_t plen = imtask__v1__scheduled_run__get_packed_size(&run);
    if (!(payload = malloc(plen ? plen : 1)))
        goto out;
    imtask__v1__scheduled_run__pack(&run, payload);

    task_t t = {0};
    sched_task_id(job, slot_ms, manual, t.task_id, sizeof(t.task_id));
    snprintf(t.task_type, sizeof(t.task_type), "%s", sched_task_types[job->task_type]);
    task_trace_id_new(t.trace_id);
    task_traceparent_new(t.trace_id, t.traceparent);
    t.created_at_ms = now_ms;
    t.payload = payload;
    t.payload_len = plen;
    if (task_encode(&t, out, outlen))
        goto out;
    memcpy(task_id, t.task_id, sizeof(t.task_id));
    if (traceparent)
        memcpy(traceparent, t.traceparent, sizeof(t.traceparent));
    rv = 0;
out:
    free(payload);
    free(entries);
    free(ptrs);
    return rv;
}

int sched_firing_produce(mq_producer_t *p, const char *topic, const sched_job_t *job,
                         int64_t slot_ms, bool manual, int timeout_ms, char *task_id, char *err,
                         size_t errlen)
{
    uint8_t *env = NULL;
    size_t envlen = 0;
    char kerr[MQ_ERRSTR_MAX], tp[TASK_TRACEPARENT_LEN + 1];
    if (sched_firing_encode(job, slot_ms, manual, clock_wall_ms(), task_id, tp, &env, &envlen)) {
        snprintf(err, errlen, "job %s: encoding the task failed (out of memory)", job->name);
        return -1;
    }
    const char *type = sched_task_types[job->task_type];
    mq_header_t h[] = {
        {HDR_TASK_TYPE, type, strlen(type)},
        {HDR_TASK_ID, task_id, strlen(task_id)},
        {HDR_TRACEPARENT, tp, strlen(tp)},
    };
    mq_err_t rc = mq_produce_sync(p, topic, -1, job->name, strlen(job->name), env, envlen, h,
                                  sizeof(h) / sizeof(h[0]), timeout_ms, kerr, sizeof(kerr));
    free(env);
    if (rc != MQ_OK) {
        snprintf(err, errlen, "job %s: producing %s to %s: %s: %s", job->name, task_id, topic,
                 mq_err_str(rc), kerr);
        return -1;
    }
    return 0;
}
