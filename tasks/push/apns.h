/* apns.h: the Apple Push Notification service provider (HTTP/2 provider
 * API): configuration of the apps, provider tokens, requests and the
 * classification of APNs answers.
 *
 * Configuration (docs/push.md):
 *   apns:               endpoints, CA, timeouts, bounds, token refresh,
 *                       apps: [name, ...]
 *   apns_app_<name>:    topics (bundle ids), auth token|certificate,
 *                       team_id/key_id/key_file or cert_file/cert_key_file
 * Each app is one lane of the HTTP/2 client (its own bound on streams in
 * flight and rate) and one provider-token cache shared by all its requests.
 */
#ifndef PUSH_APNS_H
#define PUSH_APNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infra/config.h"
#include "provider.h"
#include "tokens.h"

#define PUSH_MAX_APPS 16 /* apps per provider */

typedef struct push_apns_s push_apns_t;

/* Bind apns and apns_app_<name> (no I/O). *out is NULL-free on success. */
int push_apns_configure(push_apns_t **out, cfg_t *cfg, char *err, size_t errlen);
/* Load and check the keys (a bad or missing key file fails here, naming it;
 * one readable by others is logged as a warning), add the lanes. The clock
 * (NULL: wall) drives the token caches. */
int push_apns_start(push_apns_t *a, push_h2_t *h2, push_clock_fn clock, void *clock_opaque,
                    char *err, size_t errlen);
void push_apns_free(push_apns_t **ap);

int push_apns_napps(const push_apns_t *a);
const char *push_apns_app_name(const push_apns_t *a, int app);
/* The app serving this bundle id ("" : the first app), or -1. */
int push_apns_app_for(const push_apns_t *a, const char *app_id);
push_apns_jwt_t *push_apns_app_jwt(push_apns_t *a, int app); /* NULL with certificate auth */

/* The payload of a notification (the same for every device). */
int push_apns_payload(const push_note_t *note, push_buf_t *out, push_fit_t *fit, char *err,
                      size_t errlen);
/* The authorization header value of an app ("bearer <provider token>"),
 * signing a new token when due; "" with certificate auth. *gen identifies
 * the token (push_apns_auth_expired). Returns 0, or -1 when signing failed. */
int push_apns_bearer(push_apns_t *a, int app, char *out, size_t cap, uint64_t *gen);
/* The request of one device (j->dev, j->app set) with the shared payload
 * and the app's bearer (which must live until the request ran). Returns 0,
 * or -1 when it cannot be sent (err: why; a permanent failure). */
int push_apns_prepare(push_apns_t *a, push_job_t *j, const push_note_t *note,
                      const push_buf_t *payload, const char *bearer, uint64_t gen, char *err,
                      size_t errlen);
/* The verdict on an answer (or its absence). max_retry_after_ms caps a
 * Retry-After; now_ms is the wall clock (for HTTP-dates). */
void push_apns_classify(const push_h2_req_t *r, int64_t now_ms, int64_t max_retry_after_ms,
                        push_verdict_t *v);
/* After AUTH_EXPIRED: retire the provider token the job carried (once for
 * all the jobs that carried it). Returns true when this call retired it. */
bool push_apns_auth_expired(push_apns_t *a, const push_job_t *j);

/* Whether a token can go into the request path: 1..200 of [0-9A-Za-z_-]. */
bool push_apns_token_ok(const char *token);

#endif
