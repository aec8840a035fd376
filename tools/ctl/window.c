/* window.c: bounded in-flight producing with per-record delivery reports. */
#include "window.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ctl_window_s {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int max, in_flight;
    uint64_t ok, failed;
    ctl_window_done_cb *done;
    void *opaque;
};

/* One queued record: the delivery report's opaque. */
typedef struct {
    ctl_window_t *w;
    char label[CTL_WINDOW_LABEL_MAX];
} ctl_window_rec_t;

ctl_window_t *ctl_window_new(int max_in_flight, ctl_window_done_cb *done, void *opaque)
{
    ctl_window_t *w;
    if (max_in_flight < 1 || max_in_flight > CTL_WINDOW_MAX)
        return NULL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->max = max_in_flight;
    w->done = done;
    w->opaque = opaque;
    return w;
}

void ctl_window_destroy(ctl_window_t **wp)
{
    ctl_window_t *w = wp ? *wp : NULL;
    if (!w)
        return;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
    *wp = NULL;
}

/* Count a failure and print it while few have been printed. Lock held. */
static void ctl_window_failed(ctl_window_t *w, const char *label, const char *why)
{
    w->failed++;
    if (w->failed <= CTL_WINDOW_ERRORS_SHOWN)
        fprintf(stderr, "%s: not delivered: %s\n", label, why);
    if (w->failed == CTL_WINDOW_ERRORS_SHOWN + 1)
        fprintf(stderr, "(more delivery failures are counted, not shown)\n");
}

static void ctl_window_dr(void *opaque, mq_err_t err, const char *errstr, int32_t partition,
                          int64_t offset)
{
    ctl_window_rec_t *rec = opaque;
    ctl_window_t *w = rec->w;
    pthread_mutex_lock(&w->lock);
    if (err == MQ_OK)
        w->ok++;
    else
        ctl_window_failed(w, rec->label, errstr && *errstr ? errstr : mq_err_str(err));
    if (w->done)
        w->done(w->opaque, rec->label, err, errstr, partition, offset);
    w->in_flight--;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    free(rec);
}

/* An absolute CLOCK_REALTIME time timeout_ms from now, for cond waits. */
static struct timespec ctl_window_deadline(int64_t timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

mq_err_t ctl_window_produce(ctl_window_t *w, mq_producer_t *p, const char *topic, const void *key,
                            size_t keylen, const void *value, size_t len,
                            const mq_header_t *headers, size_t nheaders, const char *label,
                            int64_t timeout_ms)
{
    struct timespec deadline = ctl_window_deadline(timeout_ms);
    ctl_window_rec_t *rec;
    mq_err_t err;

    pthread_mutex_lock(&w->lock);
    while (w->in_flight >= w->max) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) == ETIMEDOUT &&
            w->in_flight >= w->max) {
            ctl_window_failed(w, label, "no room: earlier records are not confirmed in time");
            pthread_mutex_unlock(&w->lock);
            return MQ_ERR_TIMEOUT;
        }
    }
    w->in_flight++;
    pthread_mutex_unlock(&w->lock);

    rec = malloc(sizeof(*rec));
    if (!rec) {
        err = MQ_ERR_NOMEM;
        goto fail;
    }
    rec->w = w;
    snprintf(rec->label, sizeof(rec->label), "%s", label);
    err = mq_produce(p, topic, -1, key, keylen, value, len, headers, nheaders, (int)timeout_ms,
                     ctl_window_dr, rec);
    if (err == MQ_OK)
        return MQ_OK;
    free(rec);
fail:
    pthread_mutex_lock(&w->lock);
    w->in_flight--;
    ctl_window_failed(w, label, mq_err_str(err));
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return err;
}

int ctl_window_drain(ctl_window_t *w, int64_t timeout_ms)
{
    struct timespec deadline = ctl_window_deadline(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    while (w->in_flight > 0) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) == ETIMEDOUT) {
            rc = w->in_flight > 0 ? -1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void ctl_window_stats(ctl_window_t *w, uint64_t *ok, uint64_t *failed, int *in_flight)
{
    pthread_mutex_lock(&w->lock);
    if (ok)
        *ok = w->ok;
    if (failed)
        *failed = w->failed;
    if (in_flight)
        *in_flight = w->in_flight;
    pthread_mutex_unlock(&w->lock);
}
