/* backoff.c: exponential backoff with jitter, shared by in-process retries
 * and the retry topic's due times. */
#include <stdlib.h>

#include "dispatch/dispatch.h"

int64_t dispatch_backoff_ms(int64_t initial_ms, int64_t max_ms, uint32_t n)
{
    int64_t d = initial_ms > 0 ? initial_ms : 1;
    for (uint32_t i = 0; i < n && d < max_ms; i++)
        d *= 2;
    return d < max_ms ? d : max_ms;
}

int64_t dispatch_backoff_jitter_ms(int64_t initial_ms, int64_t max_ms, uint32_t n, double jitter,
                                   unsigned *seed)
{
    int64_t d = dispatch_backoff_ms(initial_ms, max_ms, n);
    double r, v;
    if (jitter <= 0)
        return d;
    if (jitter > 1)
        jitter = 1;
    r = (double)rand_r(seed) / ((double)RAND_MAX + 1.0); /* [0, 1) */
    v = (double)d * (1.0 - jitter + 2.0 * jitter * r);
    if (v > (double)max_ms)
        v = (double)max_ms;
    return v < 1 ? 1 : (int64_t)v;
}
