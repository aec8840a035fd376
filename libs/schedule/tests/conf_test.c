/* conf_test.c: the `schedule:` config and job sections (scheduler.h): errors
 * naming the key, environment overrides, and the task record of a firing
 * (envelope, task id, headers' ids, ScheduledRun payload with params). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/task.h"
#include "proto/schedule.pb-c.h"
#include "schedule/scheduler.h"

static int bind_yaml(const char *yaml, sched_conf_t *c, char *err, size_t errlen, cfg_t **cfgp)
{
    cfg_t *cfg = cfg_load_string(yaml, "test.yaml", err, errlen);
    assert_non_null(cfg);
    int rc = sched_conf_bind(cfg, c, err, errlen);
    if (rc == 0)
        rc = cfg_finish(cfg, err, errlen);
    *cfgp = cfg;
    return rc;
}

static void expect_error(const char *yaml, const char *want)
{
    sched_conf_t c;
    cfg_t *cfg = NULL;
    char err[CFG_ERR_MAX] = "";
    assert_int_equal(bind_yaml(yaml, &c, err, sizeof(err), &cfg), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    sched_conf_free(&c);
    cfg_destroy(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("schedule:\n  jobs: [a, b]\n"
                 "schedule_job_a:\n  cron: '0 3 * * *'\n  task_type: archive\n"
                 "schedule_job_b:\n  cron: '0 25 * * *'\n  task_type: report\n",
                 "schedule_job_b.cron (schedule.jobs[1]): field 2 (hour) value 25 out of range "
                 "0-23");
    expect_error("schedule:\n  jobs: [a]\n"
                 "schedule_job_a:\n  cron: '0 3 * * *'\n  task_type: archive\n"
                 "  time_zone: Europe/Atlantis\n",
                 "schedule_job_a.time_zone (schedule.jobs[0]): unknown time zone "
                 "\"Europe/Atlantis\"");
    expect_error("schedule:\n  jobs: [a]\nschedule_job_a:\n  cron: '@daily'\n  task_type: fanout\n",
                 "schedule_job_a.task_type");
    expect_error("schedule:\n  jobs: [a]\nschedule_job_a:\n  task_type: report\n",
                 "schedule_job_a.cron: missing required key");
    expect_error("schedule:\n  jobs: [Bad-Name]\n",
                 "schedule.jobs[0]: \"Bad-Name\" is not a job name");
    expect_error("schedule:\n  jobs: [a, a]\nschedule_job_a:\n  cron: '@daily'\n"
                 "  task_type: report\n",
                 "schedule.jobs[1]: job \"a\" named twice");
    expect_error("schedule:\n  jobs: [a]\nschedule_job_a:\n  cron: '0 0 30 2 *'\n"
                 "  task_type: report\n",
                 "never fires");
    expect_error("schedule:\n  lease_ttl: 2500ms\n", "schedule.lease_ttl: expected whole seconds");
    expect_error("schedule:\n  lease_ttl: 1s\n", "schedule.lease_ttl");
    expect_error("schedule:\n  etcd_prefix: /x\n", "ending with '/'");
    expect_error("schedule:\n  lease_ttl: 6s\n  produce_timeout: 3s\n",
                 "schedule.produce_timeout (3000 ms) must be at most a third of "
                 "schedule.lease_ttl (6000 ms)");
    expect_error("schedule:\n  catch_up_max: 0\n", "schedule.catch_up_max");
    expect_error("schedule:\n  jobs: [a]\nschedule_job_a:\n  cron: '@daily'\n"
                 "  task_type: report\n  crno: x\n",
                 "schedule_job_a.crno: unknown key");
}

static void test_valid_and_env(void **state)
{
    sched_conf_t c;
    cfg_t *cfg = NULL;
    char err[CFG_ERR_MAX] = "";
    (void)state;
    setenv("IMTASK_SCHEDULE_JOB_NIGHTLY_TIME_ZONE", "Asia/Shanghai", 1);
    assert_int_equal(bind_yaml("schedule:\n  jobs: [nightly, hourly]\n  lease_ttl: 9s\n"
                               "schedule_job_nightly:\n  cron: '0 3 * * *'\n"
                               "  time_zone: Europe/Berlin\n  task_type: archive\n"
                               "schedule_params_nightly:\n  retention: 30d\n  batch: '1000'\n"
                               "schedule_job_hourly:\n  cron: '@hourly'\n  task_type: report\n",
                               &c, err, sizeof(err), &cfg),
                     0);
    unsetenv("IMTASK_SCHEDULE_JOB_NIGHTLY_TIME_ZONE");
    assert_int_equal(c.njobs, 2);
    assert_true(c.lease_ttl_ms == 9000);
    assert_true(c.catch_up_max == 10);
    assert_string_equal(c.topic, "im-task-topic");
    assert_string_equal(c.jobs[0].time_zone, "Asia/Shanghai"); /* the environment wins */
    assert_string_equal(sched_task_types[c.jobs[0].task_type], "archive");
    assert_int_equal(c.jobs[0].params.count, 2);
    assert_int_equal(c.jobs[1].params.count, 0);
    assert_ptr_equal(sched_conf_find(&c, "hourly"), &c.jobs[1]);
    assert_null(sched_conf_find(&c, "weekly"));
    char key[256];
    sched_key_leader(&c, key, sizeof(key));
    assert_string_equal(key, "/imtask/schedule/leader");
    sched_key_last(&c, "hourly", key, sizeof(key));
    assert_string_equal(key, "/imtask/schedule/last/hourly");

    /* the record of a firing */
    char id[TASK_ID_MAX], tp[64];
    uint8_t *env = NULL;
    size_t envlen = 0;
    assert_int_equal(
        sched_firing_encode(&c.jobs[0], 1795888800000, false, 1795888800123, id, tp, &env, &envlen),
        0);
    assert_string_equal(id, "nightly@1795888800000");
    task_t t;
    void *owner = NULL;
    assert_int_equal(task_decode(env, envlen, &t, &owner, err, sizeof(err)), 0);
    assert_string_equal(t.task_id, "nightly@1795888800000");
    assert_string_equal(t.task_type, "archive");
    assert_string_equal(t.traceparent, tp);
    Imtask__V1__ScheduledRun *run =
        imtask__v1__scheduled_run__unpack(NULL, t.payload_len, t.payload);
    assert_non_null(run);
    assert_string_equal(run->job, "nightly");
    assert_true(run->scheduled_at_ms == 1795888800000);
    assert_true(run->fired_at_ms == 1795888800123);
    assert_false(run->manual);
    assert_int_equal(run->n_params, 2);
    assert_string_equal(run->params[0]->key, "retention");
    assert_string_equal(run->params[0]->value, "30d");
    imtask__v1__scheduled_run__free_unpacked(run, NULL);
    task_decoded_free(owner);
    free(env);
    /* a manual firing has its own id form */
    sched_task_id(&c.jobs[1], 42, true, id, sizeof(id));
    assert_string_equal(id, "hourly@manual-42");
    sched_conf_free(&c);
    cfg_destroy(cfg);
}

static void test_no_jobs(void **state)
{
    sched_conf_t c;
    cfg_t *cfg = NULL;
    char err[CFG_ERR_MAX] = "";
    (void)state;
    assert_int_equal(bind_yaml("log:\n  level: info\n", &c, err, sizeof(err), &cfg), -1);
    /* (log: is nobody's here, so cfg_finish fails; without it:) */
    cfg_destroy(cfg);
    assert_int_equal(bind_yaml("schedule:\n  lease_ttl: 3s\n  produce_timeout: 1s\n", &c, err,
                               sizeof(err), &cfg),
                     0);
    assert_int_equal(c.njobs, 0);
    sched_conf_free(&c);
    cfg_destroy(cfg);
}

/* Catch-up: the newest catch_up_max due slots, oldest first, the rest skipped;
 * a long outage of a frequent job is bounded (SCHED_MAX_SCAN). */
static void test_due_slots(void **state)
{
    sched_conf_t c;
    cfg_t *cfg = NULL;
    char err[CFG_ERR_MAX] = "";
    int64_t out[SCHED_MAX_CATCH_UP];
    uint64_t skipped = 0;
    (void)state;
    assert_int_equal(bind_yaml("schedule:\n  jobs: [s, d]\n"
                               "schedule_job_s:\n  cron: '*/2 * * * * *'\n  task_type: report\n"
                               "schedule_job_d:\n  cron: '0 3 * * *'\n  task_type: archive\n"
                               "  time_zone: Asia/Shanghai\n",
                               &c, err, sizeof(err), &cfg),
                     0);
    int64_t now = 1795888801500; /* 2026-11-28T..:01.5 UTC, an odd second */
    /* nothing due: last is the newest slot */
    assert_int_equal(sched_due_slots(&c.jobs[0], now - 1500, now, 3, out, &skipped), 0);
    assert_true(skipped == 0);
    /* 10 s missed: 5 slots, the newest 3 fired, 2 skipped */
    assert_int_equal(sched_due_slots(&c.jobs[0], now - 10500, now, 3, out, &skipped), 3);
    assert_true(skipped == 2);
    assert_true(out[0] == now - 5500 && out[1] == now - 3500 && out[2] == now - 1500);
    /* within the bound: all of them, oldest first */
    assert_int_equal(sched_due_slots(&c.jobs[0], now - 10500, now, 10, out, &skipped), 5);
    assert_true(skipped == 0 && out[0] == now - 9500 && out[4] == now - 1500);
    /* 30 days of a job every 2 s (1.3M slots): bounded, the newest are fired */
    assert_int_equal(sched_due_slots(&c.jobs[0], now - 30LL * 86400000, now, 4, out, &skipped), 4);
    assert_true(skipped >= SCHED_MAX_SCAN);
    assert_true(out[3] == now - 1500 && out[0] == now - 7500);
    /* a daily job in Shanghai after a 3-day outage: 3 slots at 19:00 UTC */
    int64_t day = 86400000, last = 1795888800000 - 3 * day;
    assert_int_equal(sched_due_slots(&c.jobs[1], last, 1795888800000, 10, out, &skipped), 3);
    for (int i = 0; i < 3; i++)
        assert_true(out[i] % day == 19 * 3600000);
    sched_conf_free(&c);
    cfg_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_valid_and_env),
        cmocka_unit_test(test_no_jobs),
        cmocka_unit_test(test_due_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
