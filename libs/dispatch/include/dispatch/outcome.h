/* outcome.h: outcome events (proto/outcome.proto) that the task binaries
 * emit about the work they did, for the report job (docs/report.md).
 *
 *   dispatch_outcome_label_t l[] = {{"provider", "apns"}, {"result", "ok"}};
 *   dispatch_outcome(task, "push_result", l, 2, delivered);
 *
 * Fire and forget: an event is encoded and queued on the runtime's producer
 * (never waiting for room) and the call returns. It is dropped, and counted
 * in imtask_outcomes_dropped_total{reason}, when outcomes are disabled or
 * not started, when more than outcomes.max_pending events await their
 * delivery report, when the producer's queue is full, or when the broker
 * does not take it. Emission never fails or slows a task. Aggregate before
 * emitting: one event per task (e.g. recipients of a fan-out slice), not
 * one per item.
 *
 * Config, section `outcomes:` (env IMTASK_OUTCOMES_<KEY>), bound by the
 * runtime for every task binary:
 *   enabled      true
 *   topic        im-task-outcome-topic
 *   max_pending  10000   events queued and not yet acknowledged
 *
 * Thread-safety: emitting is safe from any thread. The runtime starts the
 * emitter once the producer exists and stops it before destroying it; events
 * outside that window are dropped (reason "stopped"). One emitter per process.
 */
#ifndef DISPATCH_OUTCOME_H
#define DISPATCH_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dispatch/dispatch.h"
#include "infra/config.h"
#include "infra/metrics.h"
#include "mqclient/mq.h"

#define OUTCOME_MAX_LABELS 8
#define OUTCOME_LABEL_VALUE_MAX 128 /* longer values are cut */
#define OUTCOME_KIND_MAX 64
#define OUTCOME_DEFAULT_TOPIC "im-task-outcome-topic"

/* Kinds emitted by im-task's own binaries (others may add their own). */
#define OUTCOME_FANOUT_RECIPIENTS "fanout_recipients" /* labels: delivery */
#define OUTCOME_PUSH_RESULT "push_result"             /* labels: provider, result */
#define OUTCOME_AUDIT_DECISION "audit_decision"       /* labels: decision */
#define OUTCOME_DEAD_LETTERED "dead_lettered"         /* labels: error_kind */

typedef struct {
    const char *name; /* [a-z0-9_]+ */
    const char *value;
} dispatch_outcome_label_t;

/* Emit an event about task t (its type and id go into the event). count <= 0
 * emits nothing. At most OUTCOME_MAX_LABELS labels are kept. */
void dispatch_outcome(const dispatch_task_t *t, const char *kind,
                      const dispatch_outcome_label_t *labels, size_t nlabels, int64_t count);
/* The same without a task (task_id may be NULL or ""). */
void dispatch_outcome_emit(const char *task_type, const char *task_id, const char *kind,
                           const dispatch_outcome_label_t *labels, size_t nlabels, int64_t count);

/* ---- the runtime's side ---------------------------------------------- */

/* Bind the `outcomes:` section; no I/O. */
int dispatch_outcome_configure(cfg_t *cfg, char *err, size_t errlen);
/* Start emitting through p (not owned) as binary `binary` (copied); metrics
 * in reg (may be NULL). */
void dispatch_outcome_start(mq_producer_t *p, metrics_registry_t *reg, const char *binary);
/* The configured topic (outcomes.topic), for readers such as the report job. */
const char *dispatch_outcome_topic(void);
/* Stop: later events are dropped. Call before the producer is destroyed;
 * events already queued are delivered (or fail) with the producer's flush. */
void dispatch_outcome_stop(void);

/* Encode an event into a malloc'd buffer (the caller frees *out). Returns 0,
 * or -1 on a bad argument or allocation failure. For the emitter and tests. */
int dispatch_outcome_encode(int64_t ts_ms, const char *task_type, const char *task_id,
                            const char *binary, const char *kind,
                            const dispatch_outcome_label_t *labels, size_t nlabels, int64_t count,
                            uint8_t **out, size_t *outlen);

#endif
