/* main.c: imtask-archive, scheduled jobs: message archiving (archive.h) and
 * statistics reports (report.h) on the task runtime, and the scheduler
 * (libs/schedule, docs/schedule.md) that fires them as tasks.
 *
 * The scheduler is not a task processor, but it lives as long as they do:
 * the archive processor is registered through a thin wrapper whose
 * configure binds `schedule:` as well, whose start starts the scheduler
 * (with a producer of its own) and whose destroy stops it. The runtime calls
 * destroy after the consumer ended and before its own producer goes; the
 * scheduler stops earlier, at the signal, through a watcher thread, and its
 * producer is destroyed only after the scheduler thread was joined. Without
 * jobs in `schedule:` nothing of this runs: the binary runs processors only.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "infra/log.h"
#include "mqclient/mq.h"
#include "report.h"
#include "schedule/scheduler.h"

#define SCHED_FLUSH_MS 5000

typedef struct {
    void *inner; /* archive_ops' own state */
    sched_conf_t conf;
    app_t *app;
    mq_producer_t *producer;
    sched_t *sched;
    pthread_t watcher;
    bool watching;
} with_schedule_t;

static dispatch_ops_t archive_with_schedule_ops;

static int ws_configure(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    with_schedule_t *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *state = w; /* destroy frees it, also after a failure here */
    if (archive_ops.configure && archive_ops.configure(&w->inner, cfg, err, errlen))
        return -1;
    return sched_conf_bind(cfg, &w->conf, err, errlen);
}

static void *ws_watch(void *arg)
{
    with_schedule_t *w = arg;
    app_wait_stop(w->app, -1);
    sched_request_stop(w->sched); /* stop firing at the signal, not after the drain */
    return NULL;
}

static int ws_start(void *state, app_t *app, char *err, size_t errlen)
{
    with_schedule_t *w = state;
    const app_config_t *ac = app_config(app);
    char kerr[MQ_ERRSTR_MAX];
    if (archive_ops.start && archive_ops.start(w->inner, app, err, errlen))
        return -1;
    if (w->conf.njobs == 0) {
        log_info("schedule: no jobs configured; running the processors only");
        return 0;
    }
    const char *extra[] = {"client.id", "imtask-archive-scheduler", NULL};
    rd_kafka_conf_t *pconf =
        mq_conf_build(ac->kafka_brokers, &ac->kafka_props, extra, kerr, sizeof(kerr));
    if (!pconf || !(w->producer = mq_producer_new(pconf, kerr, sizeof(kerr)))) {
        if (pconf)
            rd_kafka_conf_destroy(pconf);
        snprintf(err, errlen, "scheduler producer: %s", kerr);
        return -1;
    }
    if (sched_new(&w->conf, w->producer, app_metrics(app), &w->sched, err, errlen))
        return -1;
    w->app = app;
    if (pthread_create(&w->watcher, NULL, ws_watch, w) != 0) {
        snprintf(err, errlen, "cannot start the scheduler's stop watcher");
        return -1;
    }
    w->watching = true;
    return 0;
}

static dispatch_result_t ws_process(void *state, dispatch_task_t *task)
{
    with_schedule_t *w = state;
    return archive_ops.process(w->inner, task);
}

static void ws_destroy(void *state)
{
    with_schedule_t *w = state;
    if (!w)
        return;
    if (w->watching) {
        app_request_stop(w->app); /* ends the watcher if the runtime ended on its own */
        pthread_join(w->watcher, NULL);
    }
    sched_destroy(&w->sched); /* before its producer */
    mq_producer_destroy(&w->producer, SCHED_FLUSH_MS);
    sched_conf_free(&w->conf);
    if (archive_ops.destroy && w->inner)
        archive_ops.destroy(w->inner);
    free(w);
}

static int archive_register(dispatch_t *d)
{
    archive_with_schedule_ops = archive_ops;
    archive_with_schedule_ops.configure = ws_configure;
    archive_with_schedule_ops.start = ws_start;
    archive_with_schedule_ops.process = archive_ops.process ? ws_process : NULL;
    archive_with_schedule_ops.destroy = ws_destroy;
    if (dispatch_register(d, ARCHIVE_TASK_TYPE, &archive_with_schedule_ops))
        return -1;
    return dispatch_register(d, REPORT_TASK_TYPE, &report_ops);
}

int main(int argc, char **argv)
{
    return dispatch_main(argc, argv, "archive",
                         "scheduled jobs: message archiving, statistics reports and their "
                         "scheduler",
                         archive_register);
}
