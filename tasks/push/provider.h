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
