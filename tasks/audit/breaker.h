/* breaker.h: a circuit breaker in front of the moderation provider.
 *
 *   closed     requests go; failure_threshold failures in a row open it.
 *   open       requests are refused for open_for (doubling after each failed
 *              probe round, up to open_max); the processor turns a refusal
 *              into a retry with a delay, so tasks wait in the retry topic
 *              instead of spinning or piling up in memory.
 *   half-open  after the open time, up to half_open_probes requests go at
 *              once as probes; that many successes close it, one failure
 *              opens it again.
 * Results of requests that were not probes do not move an open or half-open
 * breaker. Thread-safe; times are passed in (monotonic ms) so tests can
 * drive it.
 */
#ifndef AUDIT_BREAKER_H
#define AUDIT_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    AUDIT_BREAKER_CLOSED = 0,
    AUDIT_BREAKER_OPEN = 1,
    AUDIT_BREAKER_HALF_OPEN = 2,
} audit_breaker_state_t;

typedef struct {
    int64_t failure_threshold; /* failures in a row that open it */
    int64_t open_ms;           /* first open period */
    int64_t open_max_ms;       /* longest open period */
    int64_t half_open_probes;  /* probes at once, and successes needed to close */
} audit_breaker_conf_t;

typedef struct audit_breaker_s audit_breaker_t;

audit_breaker_t *audit_breaker_new(const audit_breaker_conf_t *conf);
void audit_breaker_destroy(audit_breaker_t **bp); /* NULL no-op */

/* May a request go now? true: go, *probe says whether it is a probe (its
 * result must be reported with probe=true, or released). false: refused,
 * *wait_ms is the time until probes may go (at least 1). */
bool audit_breaker_allow(audit_breaker_t *b, int64_t now_ms, bool *probe, int64_t *wait_ms);
/* Report the result of an allowed request. Returns true when the state
 * changed (read it with audit_breaker_state). */
bool audit_breaker_success(audit_breaker_t *b, int64_t now_ms, bool probe);
bool audit_breaker_failure(audit_breaker_t *b, int64_t now_ms, bool probe);
/* An allowed request that was never sent (or whose result says nothing about
 * the provider): gives its probe slot back. */
void audit_breaker_release(audit_breaker_t *b, bool probe);

audit_breaker_state_t audit_breaker_state(audit_breaker_t *b, int64_t now_ms);
const char *audit_breaker_state_name(audit_breaker_state_t s); /* "closed", "open", "half_open" */

#endif
