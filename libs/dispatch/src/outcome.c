/* outcome.c: the outcome-event emitter (outcome.h): encode, queue on the
 * runtime's producer without waiting, count what is dropped. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/outcome.h"
#include "infra/clock.h"
#include "infra/log.h"
#include "proto/outcome.pb-c.h"

typedef struct {
    bool enabled;
    const char *topic;
    int64_t max_pending;
} outcome_conf_t;

#define OC(k) offsetof(outcome_conf_t, k)
static const cfg_field_t outcome_fields[] = {
    {.key = "enabled",
     .type = CFG_BOOL,
     .offset = OC(enabled),
     .def = "true",
     .help = "emit outcome events for the report job"},
    {.key = "topic",
     .type = CFG_STRING,
     .offset = OC(topic),
     .def = OUTCOME_DEFAULT_TOPIC,
     .help = "the outcome topic"},
    {.key = "max_pending",
     .type = CFG_INT,
     .offset = OC(max_pending),
     .def = "10000",
     .min = 1,
     .max = 1000000,
     .help = "events queued and not yet acknowledged; beyond, events are dropped"},
};
#undef OC

enum { DROP_STOPPED, DROP_PENDING, DROP_QUEUE_FULL, DROP_DELIVERY, DROP_BAD, DROP_N };
static const char *const outcome_drop_names[DROP_N] = {"stopped", "max_pending", "queue_full",
                                                       "delivery", "bad_event"};

static struct {
    outcome_conf_t conf;
    char topic[256];
    char binary[64];
    _Atomic(mq_producer_t *) producer;
    atomic_long pending;
    metrics_series_t *emitted, *dropped[DROP_N];
} outcome_g = {.conf = {.enabled = true, .max_pending = 10000}};

int dispatch_outcome_configure(cfg_t *cfg, char *err, size_t errlen)
{
    outcome_conf_t c;
    if (cfg_bind(cfg, "outcomes", outcome_fields,
                 sizeof(outcome_fields) / sizeof(outcome_fields[0]), &c, NULL, err, errlen))
        return -1;
    if (!c.topic || !*c.topic || strlen(c.topic) >= sizeof(outcome_g.topic)) {
        snprintf(err, errlen, "outcomes.topic: expected a topic name of 1..%zu bytes",
                 sizeof(outcome_g.topic) - 1);
        return -1;
    }
    outcome_g.conf = c;
    snprintf(outcome_g.topic, sizeof(outcome_g.topic), "%s", c.topic);
    return 0;
}

void dispatch_outcome_start(mq_producer_t *p, metrics_registry_t *reg, const char *binary)
{
    static const char *const reason[] = {"reason"};
    if (!outcome_g.topic[0])
        snprintf(outcome_g.topic, sizeof(outcome_g.topic), "%s", OUTCOME_DEFAULT_TOPIC);
    snprintf(outcome_g.binary, sizeof(outcome_g.binary), "%s", binary ? binary : "");
    if (reg) {
        metrics_family_t *e =
            metrics_counter_new(reg, "imtask_outcomes_emitted_total",
                                "Outcome events queued for the outcome topic", 0, NULL);
        metrics_family_t *d = metrics_counter_new(
            reg, "imtask_outcomes_dropped_total",
            "Outcome events dropped (never blocking a task): stopped, max_pending, queue_full, "
            "delivery, bad_event",
            1, reason);
        outcome_g.emitted = metrics_series_get0(e);
        for (int i = 0; i < DROP_N; i++)
            outcome_g.dropped[i] = metrics_series_get1(d, outcome_drop_names[i]);
    }
    if (outcome_g.conf.enabled) {
        atomic_store(&outcome_g.producer, p);
        log_info("outcome events to %s (max_pending %lld)", outcome_g.topic,
                 (long long)outcome_g.conf.max_pending);
    }
}

const char *dispatch_outcome_topic(void)
{
    return outcome_g.topic[0] ? outcome_g.topic : OUTCOME_DEFAULT_TOPIC;
}

void dispatch_outcome_stop(void)
{
    atomic_store(&outcome_g.producer, NULL);
}

int dispatch_outcome_encode(int64_t ts_ms, const char *task_type, const char *task_id,
                            const char *binary, const char *kind,
                            const dispatch_outcome_label_t *labels, size_t nlabels, int64_t count,
                            uint8_t **out, size_t *outlen)
{
    Imtask__V1__OutcomeEvent ev = IMTASK__V1__OUTCOME_EVENT__INIT;
    Imtask__V1__OutcomeLabel lab[OUTCOME_MAX_LABELS];
    Imtask__V1__OutcomeLabel *plab[OUTCOME_MAX_LABELS];
    char vals[OUTCOME_MAX_LABELS][OUTCOME_LABEL_VALUE_MAX + 1];
    if (!kind || !*kind || strlen(kind) >= OUTCOME_KIND_MAX || !task_type || (nlabels && !labels))
        return -1;
    if (nlabels > OUTCOME_MAX_LABELS)
        nlabels = OUTCOME_MAX_LABELS;
    for (size_t i = 0; i < nlabels; i++) {
        imtask__v1__outcome_label__init(&lab[i]);
        if (!labels[i].name || !*labels[i].name)
            return -1;
        snprintf(vals[i], sizeof(vals[i]), "%s", labels[i].value ? labels[i].value : "");
        lab[i].name = (char *)labels[i].name;
        lab[i].value = vals[i];
        plab[i] = &lab[i];
    }
    ev.ts_ms = ts_ms;
    ev.task_type = (char *)task_type;
    ev.task_id = (char *)(task_id ? task_id : "");
    ev.binary = (char *)(binary ? binary : "");
    ev.kind = (char *)kind;
    ev.n_labels = nlabels;
    ev.labels = nlabels ? plab : NULL;
    ev.count = count;
    *outlen = imtask__v1__outcome_event__get_packed_size(&ev);
    *out = malloc(*outlen ? *outlen : 1);
    if (!*out)
        return -1;
    imtask__v1__outcome_event__pack(&ev, *out);
    return 0;
}

static void outcome_delivered(void *opaque, mq_err_t err, const char *errstr, int32_t partition,
                              int64_t offset)
{
    (void)opaque;
    (void)errstr;
    (void)partition;
    (void)offset;
    atomic_fetch_sub(&outcome_g.pending, 1);
    if (err)
        metrics_counter_add(outcome_g.dropped[DROP_DELIVERY], 1);
}

void dispatch_outcome_emit(const char *task_type, const char *task_id, const char *kind,
                           const dispatch_outcome_label_t *labels, size_t nlabels, int64_t count)
{
    uint8_t *buf;
    size_t len;
    mq_producer_t *p;
    if (count <= 0 || !outcome_g.conf.enabled)
        return;
    p = atomic_load(&outcome_g.producer);
    if (!p) {
        metrics_counter_add(outcome_g.dropped[DROP_STOPPED], 1);
        return;
    }
    if (atomic_fetch_add(&outcome_g.pending, 1) >= outcome_g.conf.max_pending) {
        atomic_fetch_sub(&outcome_g.pending, 1);
        metrics_counter_add(outcome_g.dropped[DROP_PENDING], 1);
        return;
    }
    if (dispatch_outcome_encode(clock_wall_ms(), task_type, task_id, outcome_g.binary, kind, labels,
                                nlabels, count, &buf, &len)) {
        atomic_fetch_sub(&outcome_g.pending, 1);
        metrics_counter_add(outcome_g.dropped[DROP_BAD], 1);
        return;
    }
    mq_err_t err =
        mq_produce(p, outcome_g.topic, -1, NULL, 0, buf, len, NULL, 0, 0, outcome_delivered, NULL);
    free(buf);
    if (err) {
        atomic_fetch_sub(&outcome_g.pending, 1);
        metrics_counter_add(
            outcome_g.dropped[err == MQ_ERR_QUEUE_FULL ? DROP_QUEUE_FULL : DROP_DELIVERY], 1);
        return;
    }
    metrics_counter_add(outcome_g.emitted, 1);
}

void dispatch_outcome(const dispatch_task_t *t, const char *kind,
                      const dispatch_outcome_label_t *labels, size_t nlabels, int64_t count)
{
    if (!t)
        return;
    dispatch_outcome_emit(dispatch_task_type(t), dispatch_task_id(t), kind, labels, nlabels, count);
}
