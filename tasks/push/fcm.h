/* fcm.h: the Firebase Cloud Messaging HTTP v1 provider: service accounts,
 * OAuth2 access tokens, messages:send requests, and the classification of
 * FCM answers.
 *
 * Configuration (docs/push.md):
 *   fcm:              endpoint, token_uri override, CA, timeouts, bounds,
 *                     token_margin, apps: [name, ...]
 *   fcm_app_<name>:   app_ids (device app_id values), credentials_file (the
 *                     service account JSON), project_id (default: the file's)
 */
#ifndef PUSH_FCM_H
#define PUSH_FCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infra/config.h"
#include "provider.h"
#include "tokens.h"

typedef struct push_fcm_s push_fcm_t;

int push_fcm_configure(push_fcm_t **out, cfg_t *cfg, char *err, size_t errlen);
/* Read and check the service accounts (a missing or invalid file fails here,
 * naming it and what is wrong); add the lanes. No token is fetched yet. */
int push_fcm_start(push_fcm_t *f, push_h2_t *h2, push_clock_fn clock, void *clock_opaque, char *err,
                   size_t errlen);
void push_fcm_free(push_fcm_t **fp);

int push_fcm_napps(const push_fcm_t *f);
const char *push_fcm_app_name(const push_fcm_t *f, int app);
int push_fcm_app_for(const push_fcm_t *f, const char *app_id);
push_fcm_auth_t *push_fcm_app_auth(push_fcm_t *f, int app);

/* The message of a notification without the token, once per task. */
int push_fcm_message(const push_note_t *note, push_fcm_msg_t *out, push_fit_t *fit, char *err,
                     size_t errlen);
/* The authorization header value of an app ("Bearer <access token>"): call
 * before prepare (may fetch, blocking; only the caller waits). Returns 0, or
 * -1 with err. */
int push_fcm_auth(push_fcm_t *f, int app, char *bearer, size_t cap, uint64_t *gen, char *err,
                  size_t errlen);
/* The request of one device (j->dev, j->app set) with the app's bearer
 * (which must live until the request ran). */
int push_fcm_prepare(push_fcm_t *f, push_job_t *j, const push_fcm_msg_t *msg, const char *bearer,
                     uint64_t gen, char *err, size_t errlen);
void push_fcm_classify(const push_h2_req_t *r, int64_t now_ms, int64_t max_retry_after_ms,
                       push_verdict_t *v);
bool push_fcm_auth_expired(push_fcm_t *f, const push_job_t *j);

/* The token endpoint exchange with libcurl (blocking), as the token cache's
 * fetch function; opaque is the push_fcm_t. */
int push_fcm_fetch(void *opaque, const char *token_uri, const char *assertion, char *token,
                   size_t tokencap, int64_t *expires_in_s, char *err, size_t errlen);

#endif
