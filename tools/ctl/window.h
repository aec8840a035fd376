/* window.h: produce many records with a bounded number in flight, each
 * confirmed by its delivery report, counting successes and failures (for
 * enqueue --count and dlq replay). */
#ifndef CTL_WINDOW_H
#define CTL_WINDOW_H

#include <stdint.h>

#include "mqclient/mq.h"

#define CTL_WINDOW_MAX 100000      /* most records a window lets in flight */
#define CTL_WINDOW_LABEL_MAX 160   /* bytes of a record's label */
#define CTL_WINDOW_ERRORS_SHOWN 20 /* failures printed one by one */

typedef struct ctl_window_s ctl_window_t;

/* Called on the producer's delivery thread once per record, after the
 * window counted it. label: what the caller named the record. */
typedef void(ctl_window_done_cb)(void *opaque, const char *label, mq_err_t err, const char *errstr,
                                 int32_t partition, int64_t offset);

/* A window of at most max_in_flight records (1..CTL_WINDOW_MAX). done may be
 * NULL. Failures print "LABEL: not delivered: WHY" on stderr (the first
 * CTL_WINDOW_ERRORS_SHOWN of them). */
ctl_window_t *ctl_window_new(int max_in_flight, ctl_window_done_cb *done, void *opaque);
/* Only after the producer is destroyed (it reports every record first). */
void ctl_window_destroy(ctl_window_t **wp);

/* Wait up to timeout_ms for room, then queue the record on p (partition by
 * key). A record that cannot be queued counts as failed (and is printed).
 * Returns MQ_OK or why it was not queued. */
mq_err_t ctl_window_produce(ctl_window_t *w, mq_producer_t *p, const char *topic, const void *key,
                            size_t keylen, const void *value, size_t len,
                            const mq_header_t *headers, size_t nheaders, const char *label,
                            int64_t timeout_ms);

/* Wait up to timeout_ms until every queued record is reported. 0, or -1
 * with records still in flight. */
int ctl_window_drain(ctl_window_t *w, int64_t timeout_ms);

void ctl_window_stats(ctl_window_t *w, uint64_t *ok, uint64_t *failed, int *in_flight);

#endif
