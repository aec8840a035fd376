/* task.h: the task envelope (proto/task.proto) in C: task type names, ids,
 * W3C trace context, and encoding/decoding of the envelope. Shared by the
 * runtime and imtask-ctl. */
#ifndef DISPATCH_TASK_H
#define DISPATCH_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TASK_ID_MAX 128
#define TASK_TYPE_MAX 64
#define TASK_TRACE_ID_LEN 32         /* hex digits */
#define TASK_TRACEPARENT_LEN 55      /* "00-<32 hex>-<16 hex>-<2 hex>" */
#define TASK_MAX_BYTES (1024 * 1024) /* an envelope larger than this is refused */

/* The task types of the seed, NULL-terminated: fanout, push, content_audit,
 * archive, report. */
extern const char *const task_types[];

/* The canonical name of a task type ("audit" is an alias of
 * "content_audit"), or NULL when it is not a known type. */
const char *task_type_canonical(const char *name);

/* A task as the runtime sees it. Strings are NUL-terminated copies; payload
 * points into memory owned by whoever filled the struct. */
typedef struct {
    char task_id[TASK_ID_MAX];
    char task_type[TASK_TYPE_MAX];
    char trace_id[TASK_TRACE_ID_LEN + 1];
    char traceparent[TASK_TRACEPARENT_LEN + 1];
    int64_t created_at_ms;
    uint32_t attempt;
    int64_t deadline_ms;
    const uint8_t *payload;
    size_t payload_len;
} task_t;

/* Encode into a malloc'd buffer (*out, freed by the caller). Returns 0, or
 * -1 on allocation failure. */
int task_encode(const task_t *t, uint8_t **out, size_t *outlen);

/* Decode an envelope. On success returns 0 and fills t, whose payload points
 * into *owner (free it with task_decoded_free after use, on the same thread:
 * decoding allocates from a per-thread arena). On failure returns
 * -1 and writes what was wrong into err. */
int task_decode(const uint8_t *buf, size_t len, task_t *t, void **owner, char *err, size_t errlen);
void task_decoded_free(void *owner);

/* A random UUIDv4 ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"), out >= 37 bytes. */
void task_id_new(char *out);
/* A random W3C trace id (32 lower-case hex), out >= 33 bytes. */
void task_trace_id_new(char *out);
/* Validate a W3C traceparent ("00-<trace id>-<parent id>-<flags>"); on
 * success copy its trace id into trace_id (>= 33 bytes) and return 0. */
int task_traceparent_parse(const char *tp, char *trace_id);
/* A traceparent for trace_id with a random parent id, out >= 56 bytes. */
void task_traceparent_new(const char *trace_id, char *out);

#endif
