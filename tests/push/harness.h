/* harness.h: what the push integration tests need around imtask-push: the
 * local stack's addresses, per-case Kafka topics, imtask-push children with
 * their config and log, HTTP to the doubles' admin and the child's metrics,
 * reading topics back, and im-repo through repoclient.
 *
 * Failures call fail_msg (cmocka); everything a case makes is released by
 * ph_case_close, which the teardown runs also after a failed assertion. */
#ifndef TESTS_PUSH_HARNESS_H
#define TESTS_PUSH_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <sys/types.h>

#include "proto/push.pb-c.h"
#include "repoclient/repoclient.h"

#define PH_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

/* The stack and the doubles' files (from the push admin's /info). */
typedef struct {
    const char *brokers, *imrepo_addr, *push_admin;
    char apns_url[128], fcm_url[128], token_uri[160], ca_file[512];
    char apns_cert_url[128]; /* the APNs double with certificate auth */
    char ca_key[512];        /* the test CA's key: signs client certificates */
    char apns_key[512], apns_key2[512], fcm_sa[512];
    char binary[4096];
    char tmp[1024];
    repo_client_t *repo;
} ph_env_t;

extern ph_env_t ph_env;

int ph_setup(const char *binary); /* 0, or prints why and returns -1 */
void ph_teardown_all(void);

int64_t ph_mono_ms(void);
int64_t ph_wall_ms(void);
void ph_sleep_ms(int64_t ms);

/* ---- a case ---------------------------------------------------------------- */

typedef struct {
    char tag[24]; /* unique: goes into every token and topic of the case */
    char dir[2048];
    char topic[3][256]; /* task, retry, dlq */
    char group[256];
    pid_t pid;
    bool running;
    int status;
    char cfg[2300], log[2300];
    int metrics_port;
    bool passed;
} ph_case_t;

extern ph_case_t ph_case;

void ph_case_open(ph_case_t *c, const char *name);
void ph_case_close(ph_case_t *c);

/* Child options: extra YAML appended to the generated config (sections
 * push:, retry_push:, apns:... may be overridden with whole sections given
 * here: the generator leaves out a section `extra` has). */
typedef struct {
    const char *full_config; /* the whole config instead of the generated one */
    const char *extra_yaml;
    bool apns_without_ca; /* apns.ca_file unset: TLS verification must fail */
    int workers;          /* 0: 4 */
} ph_child_opts_t;

/* Write the config and start imtask-push; waits for its metrics port. */
void ph_child_start(ph_case_t *c, const ph_child_opts_t *o);
/* Start with an arbitrary config file and wait for the exit (bounded);
 * returns the exit status (-1: killed by a signal). */
int ph_child_run_to_exit(ph_case_t *c, const char *cfg_text, int timeout_s);
void ph_child_stop(ph_case_t *c);
/* True when the child's log has the text. */
bool ph_log_has(ph_case_t *c, const char *text);

/* ---- tasks ------------------------------------------------------------------ */

/* Produce a push task (envelope + headers) to the case's task topic and
 * wait for the broker's acknowledgement. */
void ph_produce(ph_case_t *c, const char *task_id, const Imtask__V1__PushTask *pt);

/* A device for a PushTask (strings are the caller's, kept while used). */
void ph_device(Imtask__V1__PushDevice *d, Imtask__V1__PushPlatform p, const char *token,
               const char *app_id);

typedef struct {
    char id[128];
    Imtask__V1__PushTask *pt; /* NULL when the payload is not a PushTask */
    int64_t ts;
    char dlq_kind[64], dlq_msg[512];
} ph_rec_t;

/* Every record of a case topic (0 task, 2 dlq), decoded; free with ph_recs_free. */
ph_rec_t *ph_read_topic(ph_case_t *c, int which, int *n);
void ph_recs_free(ph_rec_t *r, int n);

/* ---- client certificates ---------------------------------------------------- */

/* Writes a TLS client certificate (subject CN=cn, EC P-256, extended key
 * usage clientAuth, valid from an hour ago for a day) to cert_path and its
 * key (PKCS#8 PEM, 0600) to key_path, made with OpenSSL's API: signed by
 * the CA of ca_cert/ca_key, or self-signed when ca_cert is NULL. */
void ph_make_client_cert(const char *cert_path, const char *key_path, const char *cn,
                         const char *ca_cert, const char *ca_key);

/* ---- HTTP -------------------------------------------------------------------- */

/* GET or POST (body != NULL); returns the body (malloc'd) and sets *status. */
char *ph_http(const char *url, const char *body, long *status);
cJSON *ph_json(const char *url, const char *body);
/* The push double's per-token stats for tokens containing match. */
cJSON *ph_stats(const char *provider, const char *match);
/* Its recorded requests for tokens containing match (oldest first). */
cJSON *ph_requests(const char *provider, const char *match);
void ph_script(const char *provider, const char *token, const char *spec);

/* A metric of the child: the sum of the samples whose line starts with
 * prefix (e.g. "imtask_push_sent_total{provider=\"apns\"}"); 0 when absent. */
double ph_metric(ph_case_t *c, const char *prefix);
/* Wait (bounded) until the metric reaches at least want; fails otherwise. */
void ph_wait_metric(ph_case_t *c, const char *prefix, double want, int timeout_s);

#endif
