/* dispatch.h: task processors and the runtime that feeds them.
 *
 * A processor is a small versioned ops table registered under a task type;
 * adding a task type is a folder under tasks/, an ops table and one call:
 *
 *   static int register_all(dispatch_t *d)
 *   {
 *       return dispatch_register(d, "content_audit", &audit_ops);
 *   }
 *   int main(int argc, char **argv)
 *   {
 *       return dispatch_main(argc, argv, "audit", "content moderation", register_all);
 *   }
 *
 * The runtime consumes im-task-topic and its retry topic with one consumer
 * group per binary (im-task-<name>), skips tasks of other types by their
 * task_type header without decoding them, decodes the envelope, runs
 * process() on a worker, and acts on the result:
 *   done        the offset may advance (once every output is acknowledged);
 *   retry       short in-process retries with exponential backoff and jitter,
 *               then republished to the retry topic with its attempt count and
 *               due time, then after max_attempts dead-lettered;
 *   dead-letter the record goes to the DLQ topic with its origin and reason.
 * A record is never dropped: when the retry or DLQ record cannot be written,
 * the input offset is not stored.
 */
#ifndef DISPATCH_DISPATCH_H
#define DISPATCH_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infra/app.h"
#include "infra/config.h"
#include "mqclient/mq.h"

#define DISPATCH_API_VERSION 1
#define DISPATCH_REASON_MAX 256
#define DISPATCH_MAX_PROCESSORS 16
#define DISPATCH_MAX_OUTPUTS 100000 /* outputs one process() call may produce */

typedef enum {
    DISPATCH_DONE = 0,
    DISPATCH_RETRY = 1, /* transient: try again later */
    DISPATCH_DEAD = 2,  /* permanent: to the dead-letter queue */
} dispatch_status_t;

typedef struct {
    dispatch_status_t status;
    int64_t retry_after_ms;           /* RETRY: wait at least this long (0: the policy decides) */
    char reason[DISPATCH_REASON_MAX]; /* RETRY, DEAD: why, for logs and the DLQ */
} dispatch_result_t;

dispatch_result_t dispatch_done(void);
dispatch_result_t dispatch_retry(int64_t after_ms, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
dispatch_result_t dispatch_dead(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The task being processed; valid during process() only. */
typedef struct dispatch_task_s dispatch_task_t;

const char *dispatch_task_id(const dispatch_task_t *t);
const char *dispatch_task_type(const dispatch_task_t *t);
const char *dispatch_task_trace_id(const dispatch_task_t *t);
const char *dispatch_task_traceparent(const dispatch_task_t *t);
/* Deliveries before this one (0 on the first) and in-process tries of this
 * delivery before this call (0 on the first). */
uint32_t dispatch_task_attempt(const dispatch_task_t *t);
uint32_t dispatch_task_local_attempt(const dispatch_task_t *t);
int64_t dispatch_task_created_ms(const dispatch_task_t *t);
int64_t dispatch_task_deadline_ms(const dispatch_task_t *t); /* 0: none */
const uint8_t *dispatch_task_payload(const dispatch_task_t *t, size_t *len);
/* True when the binary is stopping and the grace is over: give up soon
 * (return a retry); the task will be consumed again. */
bool dispatch_task_cancelled(const dispatch_task_t *t);

/* Produce an output of this task (copied). The input offset advances only
 * after every output is acknowledged; if one fails, the task counts as a
 * transient failure and is retried (outputs are at least once). Returns 0,
 * or -1 (queue full past block time, bad topic, too many outputs). */
int dispatch_task_produce(dispatch_task_t *t, const char *topic, const void *key, size_t keylen,
                          const void *value, size_t len, const mq_header_t *headers,
                          size_t nheaders);
/* Enqueue a follow-up task of another type onto the task topic (e.g. push
 * work from a fan-out), as an output of this task. task_id NULL: a random
 * one. The trace id is carried over. */
int dispatch_task_enqueue(dispatch_task_t *t, const char *task_type, const char *task_id,
                          const void *key, size_t keylen, const void *payload, size_t len);
/* The same onto partition slot % N of the task topic (N: its partitions,
 * asked of the cluster at most every 30 s), for the independent pieces of
 * one job (the shards of a fan-out) numbered from any start: they spread
 * evenly over the partitions instead of where their keys' hashes fall. In
 * exactly-once mode a partition's tasks run one after the other, so two
 * pieces on one partition wait for each other while other workers may be
 * idle. While N is unknown (no answer yet), the key decides. */
int dispatch_task_enqueue_spread(dispatch_task_t *t, const char *task_type, const char *task_id,
                                 uint32_t slot, const void *key, size_t keylen, const void *payload,
                                 size_t len);

typedef struct {
    int api_version; /* DISPATCH_API_VERSION */
    const char *name;
    /* Bind the processor's own config sections (cfg_bind); no I/O: also
     * runs for --check-config. Sets *state. May be NULL. */
    int (*configure)(void **state, cfg_t *cfg, char *err, size_t errlen);
    /* Connect to what it needs, before consuming starts. May be NULL. */
    int (*start)(void *state, app_t *app, char *err, size_t errlen);
    /* Do one task; called from several workers at once. */
    dispatch_result_t (*process)(void *state, dispatch_task_t *task);
    /* Free the state (after every process() returned). May be NULL. */
    void (*destroy)(void *state);
    /* Exactly once: each process() call runs in a Kafka transaction with its
     * outputs (dispatch_task_produce/enqueue) and the input offset, committed
     * together on done; messages of a partition run one at a time. Readers of
     * the outputs use isolation.level=read_committed. If any processor of a
     * binary asks for it, the whole binary runs this way. */
    bool exactly_once;
} dispatch_ops_t;

typedef struct dispatch_s dispatch_t;

/* A dispatcher for the binary `name` (its consumer group is im-task-<name>).
 * dispatch_main makes one; tests may too. */
dispatch_t *dispatch_new(const char *name);
void dispatch_destroy(dispatch_t **dp); /* destroys processor states; NULL no-op */
/* The ops registered for a task type or its alias, or NULL. */
const dispatch_ops_t *dispatch_lookup(dispatch_t *d, const char *task_type);

/* Register ops for task_type (an alias is stored under its canonical name).
 * Returns 0, or -1 with a log line: wrong api_version, no process, a type
 * registered twice, or too many processors. ops must outlive the dispatcher. */
int dispatch_register(dispatch_t *d, const char *task_type, const dispatch_ops_t *ops);

/* The whole binary: app_main with the runtime as its work. */
int dispatch_main(int argc, char **argv, const char *name, const char *summary,
                  int (*register_fn)(dispatch_t *d));

/* For tests: the backoff policy (retry n, 0-based), in ms, before jitter. */
int64_t dispatch_backoff_ms(int64_t initial_ms, int64_t max_ms, uint32_t n);
/* With jitter: uniformly within +-jitter (0..1) of the value, never above max_ms. */
int64_t dispatch_backoff_jitter_ms(int64_t initial_ms, int64_t max_ms, uint32_t n, double jitter,
                                   unsigned *seed);

#endif
