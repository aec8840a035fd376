/* kafka.h: imtask-ctl's Kafka plumbing: clients made from the common
 * options, topic metadata, and reading a range of a topic with a consumer
 * that assign()s partitions (it never joins a group and never commits). */
#ifndef CTL_KAFKA_H
#define CTL_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl.h"
#include "mqclient/mq.h"

/* librdkafka needs a group.id even for assign(); this one is never joined
 * and nothing is ever committed under it. */
#define CTL_READER_GROUP "imtask-ctl-reader"
#define CTL_MAX_PARTITIONS 10000 /* of one topic */

/* An idempotent producer whose delivery reports come within env->timeout_ms.
 * It does not create topics by producing to them. */
mq_producer_t *ctl_producer_new(const ctl_env_t *env, char *err, size_t errlen);

/* A consumer with group.id group_id that neither subscribes nor commits. */
rd_kafka_t *ctl_consumer_new(const ctl_env_t *env, const char *group_id, char *err, size_t errlen);
/* Close and destroy; NULL no-op; sets *rkp NULL. */
void ctl_consumer_destroy(rd_kafka_t **rkp);

/* The number of partitions of topic. 0, or -1 with err (e.g. it does not
 * exist). */
int ctl_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int32_t *count,
                         char *err, size_t errlen);

/* Offsets [start, end) of one partition; clamped to what the topic holds. */
typedef struct {
    int32_t partition;
    int64_t start;
    int64_t end;
} ctl_range_t;

typedef struct {
    const char *topic;
    const ctl_range_t *ranges; /* NULL: every partition, all it holds */
    size_t nranges;
    int64_t since_ms; /* > 0: start each partition at its first record at or
                         after this time (offsets_for_times) */
} ctl_scan_spec_t;

typedef struct {
    int64_t scanned;    /* records handed to the callback */
    int32_t partitions; /* partitions read */
} ctl_scan_stats_t;

/* Per record, in offset order within a partition (partitions interleave).
 * Return 0 to go on, 1 to stop early, -1 to fail (having printed why). */
typedef int(ctl_scan_cb)(void *opaque, const rd_kafka_message_t *m);

/* Read the records of spec from the low to the high watermark as they were
 * when the scan started. Waits up to env->timeout_ms without progress.
 * Returns 0, 1 when the callback stopped, -1 with err. */
int ctl_scan(const ctl_env_t *env, const ctl_scan_spec_t *spec, ctl_scan_cb *cb, void *opaque,
             ctl_scan_stats_t *stats, char *err, size_t errlen);

/* The record at partition:offset of topic, given to cb. -1 with err when the
 * topic, partition or offset is not there. */
int ctl_fetch_one(const ctl_env_t *env, const char *topic, int32_t partition, int64_t offset,
                  ctl_scan_cb *cb, void *opaque, char *err, size_t errlen);

#endif
