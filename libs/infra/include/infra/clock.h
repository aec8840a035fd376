/* clock.h: the two clocks the project uses, in milliseconds. */
#ifndef INFRA_CLOCK_H
#define INFRA_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic: for timeouts, backoff and durations. */
static inline int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wall clock (Unix epoch): for timestamps that leave the process. */
static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
