/* e2e.h: helpers of the audit end-to-end tests: a case's own Kafka topics
 * (Admin API), its own im-repo listener (the double's /spawn) and moderation
 * scenario, imtask-audit children, task records, reading result/retry/DLQ
 * topics, the children's /metrics, im-repo reads through repoclient.
 * Every wait is bounded; nothing asserts a duration. */
#ifndef TESTS_AUDIT_E2E_H
#define TESTS_AUDIT_E2E_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/audit.pb-c.h"
#include "repoclient/repoclient.h"

#define E2E_NAME_MAX 160
#define E2E_MAX_RECS 4096

typedef struct {
    const char *brokers;
    const char *imrepo_addr;
    const char *imrepo_admin;
    const char *moderation;
    const char *audit_bin;
    char tmp[512];
} e2e_env_t;

extern e2e_env_t e2e_env;

/* A record read back from a topic. */
typedef struct {
    char key[128];
    char task_id[128];
    char dlq_kind[64];
    char dlq_message[512];
    char last_error[512];
    int64_t timestamp;
    int64_t retry_due_ms;
    Imtask__V1__AuditResult *result; /* result topic only */
} e2e_rec_t;

typedef struct {
    char tag[32];
    char base[E2E_NAME_MAX];
    char topic_task[E2E_NAME_MAX + 8], topic_retry[E2E_NAME_MAX + 8];
    char topic_dlq[E2E_NAME_MAX + 8], topic_result[E2E_NAME_MAX + 8];
    char group[E2E_NAME_MAX + 8];
    char scenario[64];
    char repo_listener[64]; /* spawned im-repo listener host:port */
    char dir[700];
    pid_t child;
    char child_log[800];
    int metrics_port;
    rd_kafka_t *producer;
    repo_client_t *repo; /* to the stack's main listener, for checks */
    bool passed;
} e2e_case_t;

/* Options of an imtask-audit child. */
typedef struct {
    const char *provider;     /* generic | tencent | openai */
    const char *on_exhausted; /* NULL: review */
    const char *retry_yaml;   /* lines under retry_content_audit:, or NULL */
    const char *breaker_yaml; /* lines under audit_breaker:, or NULL */
    const char *http_timeout; /* NULL: 2s */
    int workers;              /* 0: 8 */
} e2e_child_opts_t;

void e2e_env_load(const char *audit_bin);

void e2e_case_open(e2e_case_t *c, const char *tag);
void e2e_case_close(e2e_case_t *c); /* kills the child, deletes topics, group, scenario, listener */

/* Moderation double admin: PUT/PATCH/POST/DELETE with a JSON body; returns
 * the HTTP status, the answer in out (may be NULL). */
int e2e_http(const char *method, const char *url, const char *body, char *out, size_t outlen);
void e2e_scenario_put(e2e_case_t *c, const char *json);    /* PUT  (replace) */
void e2e_scenario_patch(e2e_case_t *c, const char *json);  /* PATCH (merge) */
void e2e_scenario_outage(e2e_case_t *c, const char *mode); /* NULL: end it */
/* A number from the scenario's stats JSON (path like "decisions.block"). */
double e2e_scenario_stat(e2e_case_t *c, const char *path);

void e2e_child_start(e2e_case_t *c, const e2e_child_opts_t *o);
void e2e_child_stop(e2e_case_t *c); /* SIGTERM, bounded wait; asserts exit 0 */
/* The value of a series of the child's /metrics (exact series text, e.g.
 * "imtask_audit_breaker_state{provider=\"generic\"}"); -1 when absent. */
double e2e_metric(e2e_case_t *c, const char *series);

/* Produce a content_audit task (AuditTask fields; NULL/0 for none). */
void e2e_produce_task(e2e_case_t *c, const char *task_id, const char *message_id,
                      const char *content, int kind, const char *sender);
void e2e_produce_flush(e2e_case_t *c);

/* Read every record of topic from the beginning into recs (up to max),
 * polling until want records were read or timeout_s passed. Returns the
 * count. Results are unpacked for the result topic. */
int e2e_read_topic(const char *topic, e2e_rec_t *recs, int max, int want, int timeout_s);
void e2e_recs_free(e2e_rec_t *recs, int n);
/* High watermark sum of a topic's partitions. */
int64_t e2e_topic_count(const char *topic);

/* A message id no other run uses: "m<n>" with n random in [10M, 900M]. */
void e2e_message_id(char *out, size_t len);
/* im-repo double's audit status of a message (via GetMessage), or -1. */
int e2e_audit_status(e2e_case_t *c, const char *message_id);
void e2e_delete_message(e2e_case_t *c, const char *message_id);
/* Calls counted on the case's spawned listener. */
int64_t e2e_listener_calls(e2e_case_t *c);

/* Poll cond every 200 ms for up to timeout_s. */
#define E2E_WAIT(cond, timeout_s)                                                                  \
    ({                                                                                             \
        bool ok_ = false;                                                                          \
        for (int64_t end_ = e2e_now_ms() + (int64_t)(timeout_s)*1000;                              \
             !(ok_ = (cond)) && e2e_now_ms() < end_;)                                              \
            e2e_sleep_ms(200);                                                                     \
        ok_;                                                                                       \
    })
int64_t e2e_now_ms(void);
void e2e_sleep_ms(int64_t ms);

#endif
