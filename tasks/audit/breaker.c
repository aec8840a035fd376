/* breaker.c: the circuit breaker of the audit processor (see breaker.h). */
#include "breaker.h"

#include <pthread.h>
#include <stdlib.h>

struct audit_breaker_s {
    audit_breaker_conf_t conf;
    pthread_mutex_t lock;
    audit_breaker_state_t state;
    int64_t failures;   /* in a row, while closed */
    int64_t open_until; /* while open */
    int64_t open_ms;    /* the current open period */
    int64_t probes;     /* probes in flight, half-open */
    int64_t successes;  /* probe successes, half-open */
};

audit_breaker_t *audit_breaker_new(const audit_breaker_conf_t *conf)
{
    audit_breaker_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->conf = *conf;
    if (b->conf.failure_threshold < 1)
        b->conf.failure_threshold = 1;
    if (b->conf.half_open_probes < 1)
        b->conf.half_open_probes = 1;
    if (b->conf.open_ms < 1)
        b->conf.open_ms = 1;
    if (b->conf.open_max_ms < b->conf.open_ms)
        b->conf.open_max_ms = b->conf.open_ms;
    b->open_ms = b->conf.open_ms;
    pthread_mutex_init(&b->lock, NULL);
    return b;
}

void audit_breaker_destroy(audit_breaker_t **bp)
{
    if (!bp || !*bp)
        return;
    pthread_mutex_destroy(&(*bp)->lock);
    free(*bp);
    *bp = NULL;
}

/* Open (or re-open) now; called with the lock held. */
static void breaker_open(audit_breaker_t *b, int64_t now_ms, bool longer)
{
    if (longer) {
        b->open_ms *= 2;
        if (b->open_ms > b->conf.open_max_ms)
            b->open_ms = b->conf.open_max_ms;
    }
    b->state = AUDIT_BREAKER_OPEN;
    b->open_until = now_ms + b->open_ms;
    b->probes = 0;
    b->successes = 0;
}

/* open -> half-open when its time is over; with the lock held. */
static void breaker_tick(audit_breaker_t *b, int64_t now_ms)
{
    if (b->state == AUDIT_BREAKER_OPEN && now_ms >= b->open_until) {
        b->state = AUDIT_BREAKER_HALF_OPEN;
        b->probes = 0;
        b->successes = 0;
    }
}

bool audit_breaker_allow(audit_breaker_t *b, int64_t now_ms, bool *probe, int64_t *wait_ms)
{
    bool ok = false;
    pthread_mutex_lock(&b->lock);
    breaker_tick(b, now_ms);
    *probe = false;
    *wait_ms = 0;
    switch (b->state) {
    case AUDIT_BREAKER_CLOSED:
        ok = true;
        break;
    case AUDIT_BREAKER_OPEN:
        *wait_ms = b->open_until - now_ms;
        break;
    case AUDIT_BREAKER_HALF_OPEN:
        if (b->probes + b->successes < b->conf.half_open_probes) {
            b->probes++;
            *probe = true;
            ok = true;
        } else {
            /* probes are out: ask again after about one open period */
            *wait_ms = b->conf.open_ms;
        }
        break;
    }
    if (!ok && *wait_ms < 1)
        *wait_ms = 1;
    pthread_mutex_unlock(&b->lock);
    return ok;
}

bool audit_breaker_success(audit_breaker_t *b, int64_t now_ms, bool probe)
{
    bool changed = false;
    pthread_mutex_lock(&b->lock);
    breaker_tick(b, now_ms);
    if (b->state == AUDIT_BREAKER_CLOSED) {
        b->failures = 0;
    } else if (probe && b->state == AUDIT_BREAKER_HALF_OPEN) {
        if (b->probes > 0)
            b->probes--;
        b->successes++;
        if (b->successes >= b->conf.half_open_probes) {
            b->state = AUDIT_BREAKER_CLOSED;
            b->failures = 0;
            b->open_ms = b->conf.open_ms;
            changed = true;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return changed;
}

bool audit_breaker_failure(audit_breaker_t *b, int64_t now_ms, bool probe)
{
    bool changed = false;
    pthread_mutex_lock(&b->lock);
    breaker_tick(b, now_ms);
    if (b->state == AUDIT_BREAKER_CLOSED) {
        if (++b->failures >= b->conf.failure_threshold) {
            breaker_open(b, now_ms, false);
            changed = true;
        }
    } else if (probe && b->state == AUDIT_BREAKER_HALF_OPEN) {
        breaker_open(b, now_ms, true);
        changed = true;
    }
    pthread_mutex_unlock(&b->lock);
    return changed;
}

void audit_breaker_release(audit_breaker_t *b, bool probe)
{
    if (!probe)
        return;
    pthread_mutex_lock(&b->lock);
    if (b->state == AUDIT_BREAKER_HALF_OPEN && b->probes > 0)
        b->probes--;
    pthread_mutex_unlock(&b->lock);
}

audit_breaker_state_t audit_breaker_state(audit_breaker_t *b, int64_t now_ms)
{
    pthread_mutex_lock(&b->lock);
    breaker_tick(b, now_ms);
    audit_breaker_state_t s = b->state;
    pthread_mutex_unlock(&b->lock);
    return s;
}

const char *audit_breaker_state_name(audit_breaker_state_t s)
{
    return s == AUDIT_BREAKER_OPEN ? "open" : s == AUDIT_BREAKER_HALF_OPEN ? "half_open" : "closed";
}
