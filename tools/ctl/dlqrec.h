/* dlqrec.h: what imtask-ctl reads from a dead-letter record (its headers,
 * see dispatch/headers.h, else its envelope) and the filters of dlq list and
 * dlq replay. */
#ifndef CTL_DLQREC_H
#define CTL_DLQREC_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "dispatch/task.h"

#define CTL_DLQ_TEXT_MAX 512 /* bytes kept of a header value */

typedef struct {
    int32_t partition;
    int64_t offset;
    int64_t ts_ms;                 /* the record's timestamp; -1 when it has none */
    char type[TASK_TYPE_MAX];      /* task_type, else dlq_task_type, else the envelope's */
    char id[TASK_ID_MAX];          /* task_id, else the envelope's */
    char kind[64];                 /* dlq_error_kind */
    char attempts[24];             /* dlq_attempts */
    char original_topic[256];      /* dlq_original_topic ("" when absent) */
    char origin[320];              /* "topic/partition/offset" it failed at, or "" */
    char reason[CTL_DLQ_TEXT_MAX]; /* dlq_error_message */
} ctl_dlq_rec_t;

/* Read the record's metadata. Never fails: absent fields stay "". */
void ctl_dlq_rec_fill(const rd_kafka_message_t *m, ctl_dlq_rec_t *r);

typedef struct {
    const char *type; /* task type (aliases allowed), or NULL */
    const char *kind; /* dlq_error_kind, or NULL */
    int64_t since_ms; /* record timestamp >= this (0: no bound) */
    int64_t until_ms; /* record timestamp < this (0: no bound) */
} ctl_dlq_filter_t;

bool ctl_dlq_rec_match(const ctl_dlq_rec_t *r, const ctl_dlq_filter_t *f);

#endif
