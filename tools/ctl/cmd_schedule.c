/* cmd_schedule.c: imtask-ctl schedule list|run: the scheduled jobs of an
 * imtask-archive config with their next run times and, from etcd, the
 * current leader and each job's last fired slot; and a manual firing now
 * (docs/schedule.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "dispatch/task.h"
#include "infra/clock.h"
#include "infra/config.h"
#include "kafka.h"
#include "schedule/etcd.h"
#include "schedule/scheduler.h"
#include "table.h"

static const ctl_command_t ctl_schedule_cmd = {
    "schedule", "list|run ...",
    "The scheduled jobs of imtask-archive (the schedule: section of its config):\n"
    "  schedule list --config FILE [--next N]   jobs, cron, time zone, next run times,\n"
    "                                           the leader and last fired slots (etcd)\n"
    "  schedule run JOB --config FILE           fire JOB now: a task with id\n"
    "                                           \"<job>@manual-<now ms>\", manual=true\n"
    "The environment overrides the file as for the binary (IMTASK_SCHEDULE_...)."};

static const ctl_command_t ctl_schedule_list_cmd = {
    "schedule list", "--config FILE [--next N]",
    "List the jobs of the config with their cron expression, time zone and next run\n"
    "times (local time of the job's zone), and from etcd the current leader and each\n"
    "job's last fired slot. Exit status 1 when etcd could not be read."};

static const ctl_command_t ctl_schedule_run_cmd = {
    "schedule run", "JOB --config FILE",
    "Produce one firing of JOB now to the scheduler's topic (schedule.topic, or\n"
    "--task-topic when given): task id \"<job>@manual-<now ms>\", ScheduledRun with\n"
    "manual=true and the job's params. It does not touch the recorded last slot, so the\n"
    "scheduled firings go on as before."};

/* "2026-03-29 03:00:00 +02:00" for ms in tz. */
static void ctl_sched_fmt(const sched_tz_t *tz, int64_t ms, char *out, size_t len)
{
    int64_t s = ms / 1000 - (ms % 1000 < 0), y;
    int32_t off = sched_tz_offset(tz, s);
    int64_t l = s + off, days = l / 86400 - (l % 86400 < 0);
    int sod = (int)(l - days * 86400);
    unsigned m, d;
    int aoff = off < 0 ? -off : off;
    sched_civil_from_days(days, &y, &m, &d);
    snprintf(out, len, "%04lld-%02u-%02u %02d:%02d:%02d %c%02d:%02d", (long long)y, m, d,
             sod / 3600, sod / 60 % 60, sod % 60, off < 0 ? '-' : '+', aoff / 3600, aoff / 60 % 60);
}

/* Load and bind the config; 0 or -1 (reported). */
static int ctl_sched_conf(const char *cmd, const char *path, cfg_t **cfg, sched_conf_t *conf)
{
    char err[CFG_ERR_MAX];
    memset(conf, 0, sizeof(*conf));
    if (!(*cfg = cfg_load(path, err, sizeof(err)))) {
        ctl_fail(cmd, "%s", err);
        return -1;
    }
    if (sched_conf_bind(*cfg, conf, err, sizeof(err))) {
        ctl_fail(cmd, "%s: %s", path, err);
        return -1;
    }
    if (conf->njobs == 0) {
        ctl_fail(cmd, "%s: schedule.jobs names no job", path);
        return -1;
    }
    return 0;
}

static int ctl_schedule_list(ctl_env_t *env, int argc, char **argv)
{
    static const char *const heads[] = {"JOB",       "TASK",       "CRON",
                                        "TIME ZONE", "LAST FIRED", "NEXT RUNS"};
    const char *path = NULL;
    int64_t next = 3;
    const ctl_opt_t opts[] = {
        {"config", CTL_OPT_STRING, &path, "FILE", "the imtask-archive config", 0, 0},
        {"next", CTL_OPT_INT, &next, "N", "next run times per job (default 3)", 1, 20},
    };
    ctl_optset_t own = {opts, 2, "options"};
    cfg_t *cfg = NULL;
    sched_conf_t conf;
    sched_etcd_t *etcd = NULL;
    ctl_table_t *t = NULL;
    char err[CTL_ERR_MAX], key[SCHED_ETCD_KEY_MAX], leader[SCHED_ETCD_VALUE_MAX];
    bool etcd_ok = true, found = false;
    int rc = ctl_parse(env, &ctl_schedule_list_cmd, &own, argc, argv, NULL, 0, NULL);

    memset(&conf, 0, sizeof(conf));
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    if (!path)
        return ctl_usage_error(&ctl_schedule_list_cmd, "--config FILE is required");
    rc = CTL_EXIT_FAIL;
    if (ctl_sched_conf("schedule list", path, &cfg, &conf))
        goto out;
    if (sched_etcd_new(conf.etcd_endpoints, env->timeout_ms, NULL, NULL, &etcd, err, sizeof(err))) {
        ctl_fail("schedule list", "%s", err);
        goto out;
    }
    sched_key_leader(&conf, key, sizeof(key));
    if (sched_etcd_get(etcd, key, leader, sizeof(leader), &found, err, sizeof(err))) {
        fprintf(stderr, "schedule list: etcd: %s\n", err);
        etcd_ok = false;
    }
    printf("leader: %s\n", !etcd_ok ? "unknown (etcd unreachable)" : found ? leader : "none");
    printf("etcd:   %s (key %s)\ntopic:  %s\n\n", conf.etcd_endpoints, key, conf.topic);
    if (!(t = ctl_table_new(6, heads))) {
        ctl_fail("schedule list", "out of memory");
        goto out;
    }
    ctl_table_set_flex(t, 5);
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < conf.njobs; i++) {
        const sched_job_t *j = &conf.jobs[i];
        char last[96] = "never", val[64], runs[1024] = "", when[40];
        size_t n = 0;
        bool have = false;
        if (!etcd_ok) {
            snprintf(last, sizeof(last), "?");
        } else {
            sched_key_last(&conf, j->name, key, sizeof(key));
            if (sched_etcd_get(etcd, key, val, sizeof(val), &have, err, sizeof(err))) {
                fprintf(stderr, "schedule list: etcd: %s\n", err);
                etcd_ok = false;
                snprintf(last, sizeof(last), "?");
            } else if (have) {
                ctl_sched_fmt(j->tz, strtoll(val, NULL, 10), when, sizeof(when));
                snprintf(last, sizeof(last), "%s", when);
            }
        }
        int64_t at = now;
        for (int64_t k = 0; k < next; k++) {
            at = sched_cron_next(&j->cron, j->tz, at);
            if (at < 0)
                break;
            ctl_sched_fmt(j->tz, at, when, sizeof(when));
            n += (size_t)snprintf(runs + n, sizeof(runs) - n, "%s%s", k ? ", " : "", when);
            if (n >= sizeof(runs))
                break;
        }
        const char *cells[6] = {
            j->name, sched_task_types[j->task_type], j->cron_text, j->time_zone, last, runs};
        if (ctl_table_add(t, cells)) {
            ctl_fail("schedule list", "out of memory");
            goto out;
        }
    }
    ctl_table_print(t, stdout, env->wide ? 0 : (size_t)env->width);
    rc = etcd_ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
out:
    ctl_table_destroy(&t);
    sched_etcd_destroy(&etcd);
    sched_conf_free(&conf);
    cfg_destroy(cfg);
    return rc;
}

static int ctl_schedule_run(ctl_env_t *env, int argc, char **argv)
{
    const char *path = NULL, *pos[1];
    size_t npos = 0;
    const ctl_opt_t opts[] = {
        {"config", CTL_OPT_STRING, &path, "FILE", "the imtask-archive config", 0, 0},
    };
    ctl_optset_t own = {opts, 1, "options"};
    cfg_t *cfg = NULL;
    sched_conf_t conf;
    mq_producer_t *p = NULL;
    char err[CTL_ERR_MAX], id[TASK_ID_MAX];
    int rc = ctl_parse(env, &ctl_schedule_run_cmd, &own, argc, argv, pos, 1, &npos);

    memset(&conf, 0, sizeof(conf));
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    if (npos != 1)
        return ctl_usage_error(&ctl_schedule_run_cmd, "expected the name of a job");
    if (!path)
        return ctl_usage_error(&ctl_schedule_run_cmd, "--config FILE is required");
    rc = CTL_EXIT_FAIL;
    if (ctl_sched_conf("schedule run", path, &cfg, &conf))
        goto out;
    const sched_job_t *job = sched_conf_find(&conf, pos[0]);
    if (!job) {
        ctl_fail("schedule run", "no job \"%s\" in %s (schedule.jobs)", pos[0], path);
        goto out;
    }
    const char *topic =
        strcmp(env->task_topic, CTL_DEFAULT_TASK_TOPIC) != 0 ? env->task_topic : conf.topic;
    if (!(p = ctl_producer_new(env, err, sizeof(err)))) {
        ctl_fail("schedule run", "%s", err);
        goto out;
    }
    if (sched_firing_produce(p, topic, job, clock_wall_ms(), true, (int)env->timeout_ms, id, err,
                             sizeof(err))) {
        ctl_fail("schedule run", "%s", err);
        goto out;
    }
    printf("produced %s (%s) to %s\n", id, sched_task_types[job->task_type], topic);
    rc = CTL_EXIT_OK;
out:
    mq_producer_destroy(&p, (int)env->timeout_ms);
    sched_conf_free(&conf);
    cfg_destroy(cfg);
    return rc;
}

int ctl_cmd_schedule(ctl_env_t *env, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return ctl_schedule_list(env, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return ctl_schedule_run(env, argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        ctl_usage(stdout, env, &ctl_schedule_cmd, NULL);
        return CTL_EXIT_OK;
    }
    if (argc < 2)
        return ctl_usage_error(&ctl_schedule_cmd, "expected a subcommand: list or run");
    return ctl_usage_error(&ctl_schedule_cmd, "unknown subcommand \"%s\", expected list or run",
                           argv[1]);
}
