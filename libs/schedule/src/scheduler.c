/* scheduler.c: leader election through an etcd lease and the firing loop of
 * the leader (scheduler.h, docs/schedule.md). One thread; all etcd I/O and
 * all producing happen on it. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/task.h"
#include "infra/clock.h"
#include "infra/log.h"
#include "schedule/etcd.h"
#include "schedule/scheduler.h"

#define SCHED_VALUE_MAX 256
#define SCHED_RETRY_MS 1000 /* after a failed firing or etcd error */

typedef struct {
    int64_t last;    /* last fired (and produced) slot, ms; -1 unknown */
    bool unrecorded; /* `last` produced but not yet written to etcd */
    int64_t retry_at_mono;
    metrics_series_t *fired, *skipped, *last_ts, *errors;
} sched_jobstate_t;

struct sched_s {
    const sched_conf_t *conf;
    mq_producer_t *producer;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;                   /* under lock */
    _Atomic bool cancel_io;      /* aborts etcd transfers while stopping */
    _Atomic bool leader;         /* readable from any thread */
    char identity[128];          /* host/pid/random */
    char value[SCHED_VALUE_MAX]; /* our leader key value: identity + lease */
    char key_leader[SCHED_ETCD_KEY_MAX];
    char seen_holder[SCHED_VALUE_MAX]; /* last leader we logged as a follower */
    sched_etcd_t *etcd;
    int64_t lease; /* 0: none */
    int64_t ttl_ms;
    int64_t lease_ok_mono; /* when the last successful grant/keep-alive was sent */
    int64_t next_keepalive_mono;
    sched_jobstate_t *js;
    metrics_series_t *m_leader, *m_etcd_errors;
    char last_error[640]; /* the last etcd error logged */
    int64_t last_error_mono;
    long errors_quiet; /* not logged since */
};

static bool sched_cancel_io(void *opaque)
{
    sched_t *s = opaque;
    return atomic_load(&s->cancel_io);
}

static bool sched_stopping(sched_t *s)
{
    pthread_mutex_lock(&s->lock);
    bool st = s->stop;
    pthread_mutex_unlock(&s->lock);
    return st;
}

/* Sleep up to ms (monotonic); true when a stop was asked for. */
static bool sched_wait(sched_t *s, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms < 0)
        ms = 0;
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->lock);
    while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0)
        ;
    bool st = s->stop;
    pthread_mutex_unlock(&s->lock);
    return st;
}

/* Count every failed etcd request; log a repeated one at most every 10 s
 * (a follower retries every second while etcd is away). */
static void sched_etcd_error(sched_t *s, const char *what, const char *err)
{
    char line[sizeof(s->last_error)];
    int64_t now = clock_mono_ms();
    metrics_counter_add(s->m_etcd_errors, 1);
    if (atomic_load(&s->cancel_io))
        return;
    snprintf(line, sizeof(line), "%s: %s", what, err);
    if (strcmp(line, s->last_error) == 0 && now - s->last_error_mono < 10000) {
        s->errors_quiet++;
        return;
    }
    if (s->errors_quiet)
        log_warn("schedule: etcd %s (and %ld more failed requests)", line, s->errors_quiet);
    else
        log_warn("schedule: etcd %s", line);
    memcpy(s->last_error, line, sizeof(line));
    s->last_error_mono = now;
    s->errors_quiet = 0;
}

/* ---- election ----------------------------------------------------------- */

static void sched_become_follower(sched_t *s, const char *why)
{
    if (atomic_load(&s->leader))
        log_warn("schedule: %s: stepping down; no jobs fire here until leader again", why);
    atomic_store(&s->leader, false);
    metrics_gauge_set(s->m_leader, 0);
    s->seen_holder[0] = '\0';
}

/* Forget the lease (it expires on its own in etcd if still there). */
static void sched_drop_lease(sched_t *s)
{
    s->lease = 0;
    s->value[0] = '\0';
}

/* Read the recorded last slot of every job. */
static int sched_load_last(sched_t *s)
{
    const sched_conf_t *c = s->conf;
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < c->njobs; i++) {
        char key[SCHED_ETCD_KEY_MAX], val[64], err[512];
        bool found = false;
        sched_key_last(c, c->jobs[i].name, key, sizeof(key));
        if (sched_etcd_get(s->etcd, key, val, sizeof(val), &found, err, sizeof(err))) {
            sched_etcd_error(s, "reading the last fired slots", err);
            return -1;
        }
        char *end = NULL;
        long long v = found ? strtoll(val, &end, 10) : 0;
        if (found && (end == val || *end || v < 0)) {
            log_warn("schedule: %s holds \"%s\", not a slot; treating the job as never fired", key,
                     val);
            found = false;
        }
        /* never fired: start from now (no catch-up of history before the job existed) */
        s->js[i].last = found ? (int64_t)v : now;
        s->js[i].unrecorded = false;
        s->js[i].retry_at_mono = 0;
    }
    return 0;
}

/* One campaign attempt: lease if needed, then create-if-absent. */
static void sched_campaign(sched_t *s)
{
    char err[512], holder[SCHED_VALUE_MAX];
    bool created = false;
    int64_t ttl_s = s->ttl_ms / 1000;
    if (s->lease == 0) {
        int64_t sent = clock_mono_ms();
        if (sched_etcd_lease_grant(s->etcd, ttl_s, &s->lease, err, sizeof(err))) {
            sched_etcd_error(s, "lease grant", err);
            s->lease = 0;
            return;
        }
        s->lease_ok_mono = sent;
        snprintf(s->value, sizeof(s->value), "%s lease=%" PRIx64, s->identity, (uint64_t)s->lease);
    } else {
        /* keep the follower's lease alive too, so a win is immediately safe */
        int64_t sent = clock_mono_ms(), left = 0;
        if (sched_etcd_lease_keepalive(s->etcd, s->lease, &left, err, sizeof(err))) {
            sched_etcd_error(s, "lease keep-alive", err);
            return;
        }
        if (left <= 0) {
            sched_drop_lease(s);
            return;
        }
        s->lease_ok_mono = sent;
    }
    if (sched_etcd_create(s->etcd, s->key_leader, s->value, s->lease, &created, holder,
                          sizeof(holder), err, sizeof(err))) {
        sched_etcd_error(s, "campaign", err);
        return;
    }
    if (!created) {
        if (strcmp(holder, s->seen_holder) != 0) {
            log_info("schedule: follower; the leader is \"%s\"", holder);
            snprintf(s->seen_holder, sizeof(s->seen_holder), "%s", holder);
        }
        return;
    }
    if (sched_load_last(s)) {
        /* cannot know what was fired: give the key back and try again later */
        sched_etcd_delete_if(s->etcd, s->key_leader, s->value, err, sizeof(err));
        return;
    }
    atomic_store(&s->leader, true);
    metrics_gauge_set(s->m_leader, 1);
    s->next_keepalive_mono = s->lease_ok_mono + s->ttl_ms / 3;
    log_info("schedule: leader (\"%s\"), %zu job(s)", s->value, s->conf->njobs);
}

/* The leader's keep-alive; false when it must step down. */
static bool sched_keepalive(sched_t *s)
{
    int64_t now = clock_mono_ms();
    if (now >= s->next_keepalive_mono) {
        char err[512];
        int64_t left = 0;
        if (sched_etcd_lease_keepalive(s->etcd, s->lease, &left, err, sizeof(err))) {
            sched_etcd_error(s, "leader keep-alive", err);
            s->next_keepalive_mono = clock_mono_ms() + 250;
        } else if (left <= 0) {
            sched_become_follower(s, "the leader lease expired");
            sched_drop_lease(s);
            return false;
        } else {
            s->lease_ok_mono = now;
            s->next_keepalive_mono = now + s->ttl_ms / 3;
        }
    }
    /* Another replica can win only after the lease expired (ttl after the
     * last good keep-alive was sent); stop firing well before that. */
    if (clock_mono_ms() > s->lease_ok_mono + s->ttl_ms * 2 / 3) {
        sched_become_follower(s, "keep-alive lost");
        sched_drop_lease(s);
        return false;
    }
    return true;
}

static bool sched_safe(sched_t *s)
{
    return atomic_load(&s->leader) && clock_mono_ms() <= s->lease_ok_mono + s->ttl_ms * 2 / 3 &&
           !sched_stopping(s);
}

/* ---- firing ------------------------------------------------------------- */

/* Write the job's last slot to etcd while we hold the leader key. */
static int sched_record(sched_t *s, size_t i)
{
    char key[SCHED_ETCD_KEY_MAX], val[32], err[512];
    bool done = false;
    sched_key_last(s->conf, s->conf->jobs[i].name, key, sizeof(key));
    snprintf(val, sizeof(val), "%lld", (long long)s->js[i].last);
    if (sched_etcd_put_guarded(s->etcd, s->key_leader, s->value, key, val, &done, err,
                               sizeof(err))) {
        sched_etcd_error(s, "recording the last fired slot", err);
        return -1;
    }
    if (!done) {
        sched_become_follower(s, "the leader key is no longer ours");
        sched_drop_lease(s);
        return -1;
    }
    s->js[i].unrecorded = false;
    return 0;
}

/* Fire the due slots of job i (catch-up bounded). */
/* The due slots after `from` up to now into ring (mod max); returns how
 * many, stopping after limit (*capped then). */
static size_t sched_scan(const sched_job_t *job, int64_t from, int64_t now, int64_t *ring,
                         size_t max, size_t limit, bool *capped)
{
    size_t count = 0;
    *capped = false;
    for (;;) {
        int64_t n = sched_cron_next(&job->cron, job->tz, from);
        if (n < 0 || n > now)
            break;
        if (count == limit) {
            *capped = true;
            break;
        }
        ring[count % max] = n;
        count++;
        from = n;
    }
    return count;
}

size_t sched_due_slots(const sched_job_t *job, int64_t last, int64_t now, size_t max, int64_t *out,
                       uint64_t *skipped)
{
    int64_t ring[SCHED_MAX_CATCH_UP];
    bool capped = false;
    *skipped = 0;
    if (max == 0 || max > SCHED_MAX_CATCH_UP)
        return 0;
    size_t count = sched_scan(job, last, now, ring, max, SCHED_MAX_SCAN, &capped);
    if (capped) {
        /* Too many missed slots to walk (a frequent job, a long outage): take
         * the newest from a window before now that doubles until it holds max
         * of them; everything before it is skipped (counted as a lower bound). */
        for (int64_t back = 60000;; back *= 2) {
            int64_t start = now - back > last ? now - back : last;
            count = sched_scan(job, start, now, ring, max, SCHED_MAX_SCAN, &capped);
            if ((count >= max && !capped) || start == last)
                break;
        }
        *skipped = SCHED_MAX_SCAN;
    }
    size_t first = count > max ? count - max : 0;
    *skipped += first;
    for (size_t k = first; k < count; k++)
        out[k - first] = ring[k % max];
    return count - first;
}

/* Fire the due slots of job i (catch-up bounded). */
static void sched_fire_job(sched_t *s, size_t i)
{
    const sched_conf_t *c = s->conf;
    const sched_job_t *job = &c->jobs[i];
    sched_jobstate_t *st = &s->js[i];
    int64_t due[SCHED_MAX_CATCH_UP];
    uint64_t skipped = 0;

    if (clock_mono_ms() < st->retry_at_mono)
        return;
    if (st->unrecorded && sched_record(s, i))
        return;
    size_t count =
        sched_due_slots(job, st->last, clock_wall_ms(), (size_t)c->catch_up_max, due, &skipped);
    if (skipped) {
        log_warn("schedule: job %s: %s%llu missed slot(s) after %lld beyond catch_up_max %lld "
                 "skipped; firing the newest %zu",
                 job->name, skipped >= SCHED_MAX_SCAN ? "at least " : "",
                 (unsigned long long)skipped, (long long)st->last, (long long)c->catch_up_max,
                 count);
        metrics_counter_add(st->skipped, (double)skipped);
    }
    for (size_t k = 0; k < count; k++) {
        int64_t slot = due[k];
        char task_id[TASK_ID_MAX], err[1024];
        /* a long catch-up keeps the lease alive between its firings */
        if (!sched_keepalive(s) || !sched_safe(s))
            return;
        if (sched_firing_produce(s->producer, c->topic, job, slot, false,
                                 (int)c->produce_timeout_ms, task_id, err, sizeof(err))) {
            log_error("schedule: %s; retrying", err);
            metrics_counter_add(st->errors, 1);
            st->retry_at_mono = clock_mono_ms() + SCHED_RETRY_MS;
            return;
        }
        st->last = slot;
        st->unrecorded = true;
        metrics_counter_add(st->fired, 1);
        metrics_gauge_set(st->last_ts, (double)slot / 1000.0);
        log_info("schedule: job %s fired %s (slot %lld%s)", job->name, task_id, (long long)slot,
                 k + 1 < count ? ", catching up" : "");
        if (sched_record(s, i)) {
            st->retry_at_mono = clock_mono_ms() + SCHED_RETRY_MS;
            return;
        }
    }
}

/* How long the leader may sleep: until the next slot or keep-alive. */
static int64_t sched_leader_sleep_ms(sched_t *s)
{
    int64_t now_wall = clock_wall_ms(), now = clock_mono_ms();
    int64_t wait = s->next_keepalive_mono - now;
    for (size_t i = 0; i < s->conf->njobs; i++) {
        const sched_job_t *job = &s->conf->jobs[i];
        int64_t n = sched_cron_next(&job->cron, job->tz, s->js[i].last);
        int64_t w = n < 0 ? wait : n - now_wall;
        if (s->js[i].retry_at_mono > now)
            w = s->js[i].retry_at_mono - now;
        if (w < wait)
            wait = w;
    }
    return wait < 0 ? 0 : wait > 1000 ? 1000 : wait;
}

static void *sched_main(void *arg)
{
    sched_t *s = arg;
    int64_t poll = s->ttl_ms / 4;
    if (poll > 1000)
        poll = 1000;
    log_info("schedule: campaigning as \"%s\" for %s (lease %llds)", s->identity, s->key_leader,
             (long long)(s->ttl_ms / 1000));
    while (!sched_stopping(s)) {
        if (!atomic_load(&s->leader)) {
            sched_campaign(s);
            if (!atomic_load(&s->leader)) {
                sched_wait(s, poll);
                continue;
            }
        }
        if (!sched_keepalive(s))
            continue;
        for (size_t i = 0; i < s->conf->njobs && sched_safe(s); i++)
            sched_fire_job(s, i);
        if (atomic_load(&s->leader))
            sched_wait(s, sched_leader_sleep_ms(s));
    }
    /* resign: give the key back at once so another replica takes over
     * without waiting for the lease to expire */
    atomic_store(&s->cancel_io, false);
    if (s->lease) {
        char err[512];
        if (atomic_load(&s->leader))
            for (size_t i = 0; i < s->conf->njobs; i++)
                if (s->js[i].unrecorded)
                    sched_record(s, i);
        if (atomic_load(&s->leader) &&
            sched_etcd_delete_if(s->etcd, s->key_leader, s->value, err, sizeof(err)))
            sched_etcd_error(s, "resigning", err);
        if (sched_etcd_lease_revoke(s->etcd, s->lease, err, sizeof(err)))
            sched_etcd_error(s, "revoking the lease", err);
    }
    if (atomic_load(&s->leader))
        log_info("schedule: resigned as leader");
    atomic_store(&s->leader, false);
    metrics_gauge_set(s->m_leader, 0);
    return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

static void sched_metrics_init(sched_t *s, metrics_registry_t *reg)
{
    static const char *const job_label[] = {"job"};
    metrics_family_t *leader = metrics_gauge_new(
        reg, "imtask_schedule_is_leader", "1 while this replica is the scheduling leader", 0, NULL);
    metrics_family_t *fired =
        metrics_counter_new(reg, "imtask_schedule_fired_total",
                            "firings produced (acknowledged by Kafka)", 1, job_label);
    metrics_family_t *skipped = metrics_counter_new(
        reg, "imtask_schedule_skipped_total",
        "missed slots not fired because they were beyond schedule.catch_up_max", 1, job_label);
    metrics_family_t *last =
        metrics_gauge_new(reg, "imtask_schedule_last_fire_timestamp_seconds",
                          "the slot of the last firing (Unix seconds)", 1, job_label);
    metrics_family_t *errors =
        metrics_counter_new(reg, "imtask_schedule_fire_errors_total",
                            "firings that could not be produced (retried)", 1, job_label);
    metrics_family_t *etcd = metrics_counter_new(reg, "imtask_schedule_etcd_errors_total",
                                                 "failed etcd requests of the scheduler", 0, NULL);
    s->m_leader = leader ? metrics_series_get0(leader) : NULL;
    s->m_etcd_errors = etcd ? metrics_series_get0(etcd) : NULL;
    metrics_gauge_set(s->m_leader, 0);
    for (size_t i = 0; i < s->conf->njobs; i++) {
        const char *name = s->conf->jobs[i].name;
        s->js[i].fired = fired ? metrics_series_get1(fired, name) : NULL;
        s->js[i].skipped = skipped ? metrics_series_get1(skipped, name) : NULL;
        s->js[i].last_ts = last ? metrics_series_get1(last, name) : NULL;
        s->js[i].errors = errors ? metrics_series_get1(errors, name) : NULL;
    }
}

int sched_new(const sched_conf_t *conf, mq_producer_t *producer, metrics_registry_t *reg,
              sched_t **out, char *err, size_t errlen)
{
    sched_t *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;
    char host[64] = "", rnd[TASK_TRACE_ID_LEN + 1];
    if (!s || !(s->js = calloc(conf->njobs ? conf->njobs : 1, sizeof(*s->js)))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->conf = conf;
    s->producer = producer;
    s->ttl_ms = conf->lease_ttl_ms;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    gethostname(host, sizeof(host) - 1);
    task_trace_id_new(rnd);
    snprintf(s->identity, sizeof(s->identity), "%s/%ld/%.8s", host[0] ? host : "unknown",
             (long)getpid(), rnd);
    sched_key_leader(conf, s->key_leader, sizeof(s->key_leader));
    if (reg)
        sched_metrics_init(s, reg);
    if (sched_etcd_new(conf->etcd_endpoints, conf->etcd_timeout_ms, sched_cancel_io, s, &s->etcd,
                       err, errlen))
        goto fail;
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        snprintf(err, errlen, "cannot start the scheduler thread");
        goto fail;
    }
    s->started = true;
    *out = s;
    return 0;
fail:
    sched_destroy(&s);
    return -1;
}

void sched_request_stop(sched_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    if (!s->stop) /* once: the thread clears cancel_io to resign */
        atomic_store(&s->cancel_io, true);
    s->stop = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void sched_destroy(sched_t **sp)
{
    sched_t *s = sp ? *sp : NULL;
    if (!s)
        return;
    if (s->started) {
        sched_request_stop(s);
        pthread_join(s->thread, NULL);
    }
    sched_etcd_destroy(&s->etcd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->js);
    free(s);
    *sp = NULL;
}

bool sched_is_leader(sched_t *s)
{
    return atomic_load(&s->leader);
}

const char *sched_identity(sched_t *s)
{
    return s->identity;
}
