/* provider.h: what the two providers (apns.c, fcm.c) share with the
 * processor: the verdict on one provider answer, and one device's request.
 *
 * Every answer falls in one of five classes (docs/push.md has the table):
 *   OK            delivered to the provider
 *   INVALID_TOKEN the token is dead: removed through im-repo, never retried
 *   TRANSIENT     429/500/503/network: retried later, not before Retry-After
 *   AUTH_EXPIRED  our provider token expired: refreshed once and sent again
 *   PERMANENT     anything else: counted and logged with the reason
 */
#ifndef PUSH_PROVIDER_H
#define PUSH_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2.h"
#include "infra/config.h"
#include "payload.h"
#include "proto/push.pb-c.h"

typedef enum {
    PUSH_OK = 0,
    PUSH_INVALID_TOKEN = 1,
    PUSH_TRANSIENT = 2,
    PUSH_AUTH_EXPIRED = 3,
    PUSH_PERMANENT = 4,
} push_outcome_t;

const char *push_outcome_name(push_outcome_t o);

#define PUSH_REASON_MAX 64

typedef struct {
    push_outcome_t outcome;
    int64_t retry_after_ms;       /* TRANSIENT: from Retry-After, -1 when none */
    char reason[PUSH_REASON_MAX]; /* provider reason, "network", ... (a metric label) */
} push_verdict_t;

/* The verdict when there was no HTTP answer (req.err != 0): transient, with
 * the transport error's name as the reason (connect, tls, timeout, reset,
 * closed, protocol, not_sent). */
void push_verdict_transport(const push_h2_req_t *r, push_verdict_t *v);
/* What every answer is before the provider's own table is read: true when
 * that already decides it (no HTTP answer: transport; 200: ok); else the
 * verdict is reset (no Retry-After) and false. */
bool push_verdict_decided(const push_h2_req_t *r, push_verdict_t *v);
/* A TRANSIENT verdict waits for the answer's Retry-After, at most max_ra ms. */
void push_verdict_retry_after(const push_h2_req_t *r, int64_t now_ms, int64_t max_ra,
                              push_verdict_t *v);

/* The connection settings both provider sections (apns:, fcm:) have. */
typedef struct {
    const char *endpoint;
    const char *ca_file; /* "" after push_conn_conf_fix: the system's CAs */
    int64_t connect_timeout_ms;
    int64_t request_timeout_ms;
    int64_t max_in_flight;
    int64_t max_conns;
    int64_t max_streams_per_conn;
    double rate_limit;
} push_conn_conf_t;

/* The cfg_field_t entries of a push_conn_conf_t member `mem` of the section
 * struct `stype`, with the provider's defaults and help texts. */
/* clang-format off */
#define PUSH_CONN_FIELDS(stype, mem, endpoint_def, endpoint_help, ca_help, in_flight, conns,     \
                         streams)                                                                \
    {.key = "endpoint", .type = CFG_STRING, .offset = offsetof(stype, mem.endpoint),             \
     .def = endpoint_def, .help = endpoint_help},                                                \
    {.key = "ca_file", .type = CFG_STRING, .offset = offsetof(stype, mem.ca_file),               \
     .help = ca_help},                                                                           \
    {.key = "connect_timeout", .type = CFG_DURATION,                                             \
     .offset = offsetof(stype, mem.connect_timeout_ms), .def = "5s", .min = 100, .max = 600000,  \
     .help = "TCP and TLS connect timeout"},                                                     \
    {.key = "request_timeout", .type = CFG_DURATION,                                             \
     .offset = offsetof(stype, mem.request_timeout_ms), .def = "15s", .min = 100, .max = 600000, \
     .help = "one request, waiting for a stream included"},                                      \
    {.key = "max_in_flight", .type = CFG_INT, .offset = offsetof(stype, mem.max_in_flight),      \
     .def = in_flight, .min = 1, .max = 100000, .help = "requests in flight per app"},           \
    {.key = "max_conns", .type = CFG_INT, .offset = offsetof(stype, mem.max_conns),              \
     .def = conns, .min = 1, .max = 64,                                                          \
     .help = "HTTP/2 connections per app (more open when streams are full)"},                    \
    {.key = "max_streams_per_conn", .type = CFG_INT,                                             \
     .offset = offsetof(stype, mem.max_streams_per_conn), .def = streams, .min = 1,              \
     .max = 100000,                                                                              \
     .help = "streams per connection before another is opened (the server's limit also holds)"}, \
    {.key = "rate_limit", .type = CFG_DOUBLE, .offset = offsetof(stype, mem.rate_limit),         \
     .def = "0", .min = 0, .max = 1e7, .help = "pushes per second per app (0: no limit)"}
/* clang-format on */

/* After cfg_bind: an unset ca_file becomes "". */
void push_conn_conf_fix(push_conn_conf_t *c);
/* One app's HTTP/2 lane on these settings (the origin: c->endpoint). */
push_lane_conf_t push_conn_lane(const push_conn_conf_t *c, const char *name, const char *provider);

/* One device of a task, with its request. The request's header values
 * point into the job, the note, the provider's configuration or the bearer
 * strings of the round: all live until push_h2_run returns. */
typedef struct {
    const Imtask__V1__PushDevice *dev;
    int app; /* index in the provider's apps; -1: none fits */
    push_h2_req_t req;
    char *path;        /* APNs: malloc'd "/3/device/<token>" (FCM uses its app's) */
    char uuid[40];     /* APNs: apns-id */
    push_buf_t body;   /* FCM: the body for this token (APNs shares one) */
    uint64_t auth_gen; /* the credential the request carried */
    push_verdict_t v;
    int64_t retry_at_ms; /* TRANSIENT with Retry-After: not before (Unix ms), else 0 */
} push_job_t;

/* What the notification's options come to, once per task. */
typedef struct {
    const Imtask__V1__PushNotification *n;
    const char *root_task_id;
    bool high_priority;
    bool ttl_set;         /* apns-expiration / android.ttl */
    int64_t expiration_s; /* apns-expiration (0: now or never) */
    int64_t ttl_seconds;  /* android.ttl: what is left of the ttl */
    char collapse_id[PUSH_COLLAPSE_ID_MAX + 1];
    char expiration[24]; /* expiration_s as text */
} push_note_t;

/* A name-based UUID for (root task id, token): the same notification to the
 * same device always carries the same apns-id. out >= 37 bytes. */
void push_uuid_for(const char *root_task_id, const char *token, char *out);

void push_job_clear(push_job_t *j);

#endif
