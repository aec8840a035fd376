/* dlqrec.c: dead-letter record metadata from headers and envelope; filters. */
#include "dlqrec.h"

#include <stdio.h>
#include <string.h>

#include "dispatch/headers.h"
#include "mqclient/mq.h"

/* The header as text into buf, cleaned of nothing; "" when absent. */
static bool ctl_dlq_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t len)
{
    if (mq_header_get(m, name, buf, len) < 0) {
        buf[0] = '\0';
        return false;
    }
    return true;
}

void ctl_dlq_rec_fill(const rd_kafka_message_t *m, ctl_dlq_rec_t *r)
{
    char topic[256], part[24], off[24];
    rd_kafka_timestamp_type_t tstype;

    memset(r, 0, sizeof(*r));
    r->partition = m->partition;
    r->offset = m->offset;
    r->ts_ms = rd_kafka_message_timestamp(m, &tstype);
    if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
        r->ts_ms = -1;
    if (!ctl_dlq_header(m, HDR_TASK_TYPE, r->type, sizeof(r->type)) || !r->type[0])
        ctl_dlq_header(m, HDR_DLQ_TASK_TYPE, r->type, sizeof(r->type));
    ctl_dlq_header(m, HDR_TASK_ID, r->id, sizeof(r->id));
    ctl_dlq_header(m, HDR_DLQ_ERROR_KIND, r->kind, sizeof(r->kind));
    ctl_dlq_header(m, HDR_DLQ_ATTEMPTS, r->attempts, sizeof(r->attempts));
    ctl_dlq_header(m, HDR_DLQ_ERROR_MESSAGE, r->reason, sizeof(r->reason));
    ctl_dlq_header(m, HDR_DLQ_ORIGINAL_TOPIC, r->original_topic, sizeof(r->original_topic));

    /* where it failed: the dlq_original_* record, else where it first came from */
    if (r->original_topic[0]) {
        ctl_dlq_header(m, HDR_DLQ_ORIGINAL_PARTITION, part, sizeof(part));
        ctl_dlq_header(m, HDR_DLQ_ORIGINAL_OFFSET, off, sizeof(off));
        snprintf(r->origin, sizeof(r->origin), "%s/%s/%s", r->original_topic, part[0] ? part : "?",
                 off[0] ? off : "?");
    } else if (ctl_dlq_header(m, HDR_ORIGIN_TOPIC, topic, sizeof(topic))) {
        ctl_dlq_header(m, HDR_ORIGIN_PARTITION, part, sizeof(part));
        ctl_dlq_header(m, HDR_ORIGIN_OFFSET, off, sizeof(off));
        snprintf(r->origin, sizeof(r->origin), "%s/%s/%s", topic, part[0] ? part : "?",
                 off[0] ? off : "?");
    }

    if (!r->type[0] || !r->id[0]) {
        task_t t;
        void *owner = NULL;
        char err[256];
        if (m->payload && task_decode(m->payload, m->len, &t, &owner, err, sizeof(err)) == 0) {
            if (!r->type[0])
                snprintf(r->type, sizeof(r->type), "%s", t.task_type);
            if (!r->id[0])
                snprintf(r->id, sizeof(r->id), "%s", t.task_id);
            task_decoded_free(owner);
        }
    }
}

bool ctl_dlq_rec_match(const ctl_dlq_rec_t *r, const ctl_dlq_filter_t *f)
{
    if (f->type) {
        const char *want = task_type_canonical(f->type);
        const char *have = task_type_canonical(r->type);
        if (strcmp(want ? want : f->type, have ? have : r->type) != 0)
            return false;
    }
    if (f->kind && strcmp(f->kind, r->kind) != 0)
        return false;
    if (f->since_ms > 0 && r->ts_ms < f->since_ms)
        return false;
    if (f->until_ms > 0 && r->ts_ms >= f->until_ms)
        return false;
    return true;
}
