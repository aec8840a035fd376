/* headers.h: the Kafka header names of im-task records, shared by the
 * runtime, imtask-ctl and the docs (docs/formats.md). Values are UTF-8 text;
 * numbers are decimal, times Unix milliseconds. */
#ifndef DISPATCH_HEADERS_H
#define DISPATCH_HEADERS_H

/* On every task record (im-task-topic, retry and DLQ topics). */
#define HDR_TASK_TYPE "task_type"
#define HDR_TASK_ID "task_id"
#define HDR_TRACEPARENT "traceparent"

/* On retry-topic records. */
#define HDR_ATTEMPT "attempt"        /* deliveries so far (1 after the first) */
#define HDR_RETRY_DUE "retry_due_ms" /* not to run before this time */
#define HDR_LAST_ERROR "last_error"  /* reason of the last failure */

/* Where a retried or dead-lettered task first came from (kept across retries). */
#define HDR_ORIGIN_TOPIC "origin_topic"
#define HDR_ORIGIN_PARTITION "origin_partition"
#define HDR_ORIGIN_OFFSET "origin_offset"
#define HDR_ORIGIN_TIMESTAMP "origin_timestamp"
#define HDR_FIRST_FAILURE "first_failure_ms"

/* Added on dead-letter records (the original headers are kept too). */
#define HDR_DLQ_ORIGINAL_TOPIC "dlq_original_topic"
#define HDR_DLQ_ORIGINAL_PARTITION "dlq_original_partition"
#define HDR_DLQ_ORIGINAL_OFFSET "dlq_original_offset"
#define HDR_DLQ_ORIGINAL_TIMESTAMP "dlq_original_timestamp"
#define HDR_DLQ_CONSUMER_GROUP "dlq_consumer_group"
#define HDR_DLQ_TASK_TYPE "dlq_task_type"
#define HDR_DLQ_ATTEMPTS "dlq_attempts"
#define HDR_DLQ_ERROR_KIND "dlq_error_kind" /* see below */
#define HDR_DLQ_ERROR_MESSAGE "dlq_error_message"
#define HDR_DLQ_FIRST_FAILURE "dlq_first_failure_ms"
#define HDR_DLQ_LAST_FAILURE "dlq_last_failure_ms"

/* dlq_error_kind values */
#define DLQ_KIND_PERMANENT "permanent" /* the processor said so */
#define DLQ_KIND_RETRIES_EXHAUSTED "retries_exhausted"
#define DLQ_KIND_UNDECODABLE "undecodable"   /* envelope or payload */
#define DLQ_KIND_UNKNOWN_TYPE "unknown_type" /* no binary handles it */
#define DLQ_KIND_EXPIRED "expired"           /* past its deadline */

/* Set by imtask-ctl dlq replay on the republished record. */
#define HDR_REPLAYED_FROM "replayed_from" /* "topic/partition/offset" of the DLQ record */

#endif
