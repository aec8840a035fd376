/* tokens.h: the provider credentials' caches, shared by every worker and
 * connection of a binary.
 *
 * APNs provider token (push_apns_jwt_t): an ES256 JWT {"alg":"ES256",
 * "kid":key id} {"iss":team id,"iat":now}. Apple rejects a token older than
 * an hour (403 ExpiredProviderToken) and one replaced more often than every
 * 20 minutes (429 TooManyProviderTokenUpdates), so a token is signed once
 * and reused until it is `refresh` old (20..60 min, default 40). When APNs
 * says ExpiredProviderToken anyway (clock skew), push_apns_jwt_expired()
 * replaces it once: only when the caller's token is still the current one,
 * so a hundred streams failing together cause one new token, not a hundred.
 *
 * FCM access token (push_fcm_auth_t): an RS256 assertion for the service
 * account ({"iss":client_email,"scope":..,"aud":token_uri,"iat","exp"})
 * exchanged at token_uri for an OAuth2 access token, cached until `margin`
 * before it expires. One thread fetches at a time: while the current token
 * is still valid the others keep using it; when none is valid they wait for
 * the fetch. push_fcm_auth_invalidate() drops the token after a 401 (again
 * only when it is the caller's).
 *
 * Both take their time from an injectable clock (wall clock, Unix ms) so the
 * tests can walk through an hour in microseconds. Thread-safe.
 */
#ifndef PUSH_TOKENS_H
#define PUSH_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jws.h"

typedef int64_t (*push_clock_fn)(void *opaque); /* Unix ms */

#define PUSH_JWT_REFRESH_MIN_MS (20LL * 60 * 1000)
#define PUSH_JWT_REFRESH_MAX_MS (60LL * 60 * 1000)
#define PUSH_BEARER_MAX 2048 /* a token with its NUL */

/* ---- APNs ---------------------------------------------------------------- */

typedef struct push_apns_jwt_s push_apns_jwt_t;

typedef struct {
    const push_key_t *key; /* EC P-256; must outlive the cache */
    const char *team_id;   /* iss (10 characters) */
    const char *key_id;    /* kid (10 characters) */
    int64_t refresh_ms;    /* PUSH_JWT_REFRESH_MIN_MS .. _MAX_MS (exclusive) */
    push_clock_fn clock;   /* NULL: the wall clock */
    void *clock_opaque;
} push_apns_jwt_conf_t;

int push_apns_jwt_new(push_apns_jwt_t **out, const push_apns_jwt_conf_t *conf, char *err,
                      size_t errlen);
void push_apns_jwt_free(push_apns_jwt_t **jp);
/* The current token (signing a new one when due) into out; *gen identifies
 * it for push_apns_jwt_expired. Returns 0, or -1 when signing failed. */
int push_apns_jwt_get(push_apns_jwt_t *j, char *out, size_t outcap, uint64_t *gen);
/* APNs said the token `gen` expired: the next get signs a new one, unless a
 * newer one exists already. Returns true when this call retired it. */
bool push_apns_jwt_expired(push_apns_jwt_t *j, uint64_t gen);
/* Tokens signed so far. */
uint64_t push_apns_jwt_signed(push_apns_jwt_t *j);

/* ---- FCM ----------------------------------------------------------------- */

typedef struct push_fcm_auth_s push_fcm_auth_t;

/* Exchange an assertion for an access token: POST the form to token_uri.
 * On success fill token (NUL-terminated) and *expires_in_s and return 0;
 * else -1 with err (never containing the assertion). */
typedef int (*push_fcm_fetch_fn)(void *opaque, const char *token_uri, const char *assertion,
                                 char *token, size_t tokencap, int64_t *expires_in_s, char *err,
                                 size_t errlen);

typedef struct {
    const push_key_t *key;    /* RSA; must outlive the cache */
    const char *client_email; /* iss */
    const char *token_uri;    /* aud and where to POST */
    const char *scope;        /* NULL: https://www.googleapis.com/auth/firebase.messaging */
    int64_t margin_ms;        /* refresh this long before expiry */
    push_fcm_fetch_fn fetch;
    void *fetch_opaque;
    push_clock_fn clock; /* NULL: the wall clock */
    void *clock_opaque;
} push_fcm_auth_conf_t;

int push_fcm_auth_new(push_fcm_auth_t **out, const push_fcm_auth_conf_t *conf, char *err,
                      size_t errlen);
void push_fcm_auth_free(push_fcm_auth_t **ap);
/* A valid access token into out. Returns 0, or -1 with err (fetch failed
 * and no valid token is left). */
int push_fcm_auth_get(push_fcm_auth_t *a, char *out, size_t outcap, uint64_t *gen, char *err,
                      size_t errlen);
/* FCM answered 401 to the token `gen`: fetch a new one on the next get
 * unless that happened already. Returns true when this call dropped it. */
bool push_fcm_auth_invalidate(push_fcm_auth_t *a, uint64_t gen);
uint64_t push_fcm_auth_fetches(push_fcm_auth_t *a);

/* The assertion JWT (exposed for the tests). Returns its length or -1. */
int push_fcm_assertion(const push_fcm_auth_conf_t *c, int64_t now_s, char *out, size_t outcap);

#endif
