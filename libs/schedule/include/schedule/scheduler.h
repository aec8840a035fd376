/* scheduler.h: scheduled jobs fired as tasks by one elected leader.
 *
 * Config (docs/schedule.md): the `schedule:` section names the jobs and sets
 * etcd, lease and catch-up; each job has its own section
 * `schedule_job_<name>` (cron, time_zone, task_type) and optionally
 * `schedule_params_<name>` (any keys: the job's params). The config library
 * binds sections of scalar keys, so a job is a section, not a list item; the
 * environment overrides any of it (IMTASK_SCHEDULE_JOB_<NAME>_CRON, ...).
 *
 * Running: replicas campaign for the key <prefix>leader in etcd with a lease
 * (create if absent); the holder keeps the lease alive and fires the jobs;
 * the others retry every poll interval and take over once the lease of a
 * dead leader expired. A firing is one task on the task topic with the id
 * "<job>@<slot ms>" and a ScheduledRun payload (proto/schedule.proto),
 * produced and acknowledged by Kafka before the slot is recorded in etcd
 * (<prefix>last/<job>, written only while we hold the leader key). A new
 * leader fires the slots missed since the recorded one, at most catch_up_max
 * of them (the newest), counting the older ones as skipped.
 */
#ifndef SCHEDULE_SCHEDULER_H
#define SCHEDULE_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infra/config.h"
#include "infra/metrics.h"
#include "mqclient/mq.h"
#include "schedule/cron.h"
#include "schedule/tz.h"

#define SCHED_JOB_NAME_MAX 48
#define SCHED_MAX_JOBS 64
#define SCHED_MAX_CATCH_UP 1000
/* The scan for missed slots stops after this many (an every-second job down
 * for weeks): the older ones are skipped without being counted one by one. */
#define SCHED_MAX_SCAN 100000

typedef struct {
    const char *name;      /* [a-z0-9_]{1,48} */
    const char *cron_text; /* as configured */
    const char *time_zone; /* IANA name */
    int task_type;         /* index into sched_task_types */
    sched_cron_t cron;
    sched_tz_t *tz;
    cfg_kvs_t params; /* strings owned by the cfg_t */
} sched_job_t;

/* The task types a job may produce: "archive", "report". */
extern const char *const sched_task_types[];

typedef struct {
    cfg_list_t job_names;       /* schedule.jobs */
    const char *etcd_endpoints; /* schedule.etcd_endpoints */
    const char *etcd_prefix;    /* schedule.etcd_prefix, ends with '/' */
    int64_t etcd_timeout_ms;    /* schedule.etcd_timeout */
    int64_t lease_ttl_ms;       /* schedule.lease_ttl, whole seconds */
    int64_t catch_up_max;       /* schedule.catch_up_max */
    const char *topic;          /* schedule.topic */
    int64_t produce_timeout_ms; /* schedule.produce_timeout */
    sched_job_t *jobs;          /* njobs of them, in config order */
    size_t njobs;
} sched_conf_t;

/* Bind `schedule:` and the sections of its jobs, parse every cron and load
 * every zone. Errors name the key: "schedule_job_archive_daily.cron: field 2
 * (hour) value 25 out of range 0-23". No I/O but reading zoneinfo files.
 * Free with sched_conf_free (also after a failure). cfg must outlive it. */
int sched_conf_bind(cfg_t *cfg, sched_conf_t *out, char *err, size_t errlen);
void sched_conf_free(sched_conf_t *c);
const sched_job_t *sched_conf_find(const sched_conf_t *c, const char *name);

/* etcd keys: <prefix>leader and <prefix>last/<job>. */
void sched_key_leader(const sched_conf_t *c, char *buf, size_t len);
void sched_key_last(const sched_conf_t *c, const char *job, char *buf, size_t len);

/* The task id of a firing: "<job>@<slot_ms>", or "<job>@manual-<slot_ms>"
 * for a manual one. buf >= TASK_ID_MAX. */
void sched_task_id(const sched_job_t *job, int64_t slot_ms, bool manual, char *buf, size_t len);

/* Build the envelope of a firing (task.h; the payload a ScheduledRun) into
 * *out (malloc'd, the caller frees), its task id into task_id (>=
 * TASK_ID_MAX) and, when not NULL, its traceparent (>= 56 bytes). */
int sched_firing_encode(const sched_job_t *job, int64_t slot_ms, bool manual, int64_t now_ms,
                        char *task_id, char *traceparent, uint8_t **out, size_t *outlen);
/* Encode and produce one firing to topic and wait for Kafka's acknowledgement
 * (the record key is the job name). Returns 0, or -1 with err. */
int sched_firing_produce(mq_producer_t *p, const char *topic, const sched_job_t *job,
                         int64_t slot_ms, bool manual, int timeout_ms, char *task_id, char *err,
                         size_t errlen);

/* The slots of job due after `last` up to `now` (ms), at most max of them
 * (the newest), oldest first into out (>= max entries). Returns how many;
 * *skipped gets how many older ones were left out, a lower bound
 * (SCHED_MAX_SCAN) when more than that were due. */
size_t sched_due_slots(const sched_job_t *job, int64_t last, int64_t now, size_t max, int64_t *out,
                       uint64_t *skipped);

/* ---- the running scheduler ---------------------------------------------- */

typedef struct sched_s sched_t;

/* Start the scheduler thread. conf and producer must outlive it (destroy the
 * scheduler first). reg may be NULL. Needs no etcd to start: it campaigns
 * until it can. Returns 0, or -1 with err. */
int sched_new(const sched_conf_t *conf, mq_producer_t *producer, metrics_registry_t *reg,
              sched_t **out, char *err, size_t errlen);
/* Ask it to stop (any thread, e.g. a signal watcher); returns at once. */
void sched_request_stop(sched_t *s);
/* Stop, resign (delete the leader key, revoke the lease), join, free. NULL
 * is a no-op. */
void sched_destroy(sched_t **sp);
bool sched_is_leader(sched_t *s);
/* This replica's identity in the leader key ("host/pid/random"). */
const char *sched_identity(sched_t *s);

#endif
