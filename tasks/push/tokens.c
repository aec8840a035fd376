/* tokens.c: the APNs provider-token cache and the FCM access-token cache
 * (see tokens.h). */
#include "tokens.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/clock.h"
#include "payload.h"

#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define FCM_ASSERTION_LIFETIME_S 3600

static int64_t wall_clock(void *opaque)
{
    (void)opaque;
    return clock_wall_ms();
}

/* ---- APNs ---------------------------------------------------------------- */

struct push_apns_jwt_s {
    push_apns_jwt_conf_t c;
    char team_id[16], key_id[16];
    pthread_mutex_t lock;
    char token[PUSH_JWS_MAX];
    int64_t iat_ms; /* 0: none, or retired */
    uint64_t gen, nsigned;
};

/* Only [A-Z0-9] identifiers go into the JSON unescaped. */
static bool apple_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 15)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

int push_apns_jwt_new(push_apns_jwt_t **out, const push_apns_jwt_conf_t *conf, char *err,
                      size_t errlen)
{
    if (!conf->key || !apple_id_ok(conf->team_id) || !apple_id_ok(conf->key_id)) {
        snprintf(err, errlen,
                 "team_id and key_id must be Apple's alphanumeric ids (10 "
                 "characters), and a key is needed");
        return -1;
    }
    if (conf->refresh_ms < PUSH_JWT_REFRESH_MIN_MS || conf->refresh_ms >= PUSH_JWT_REFRESH_MAX_MS) {
        snprintf(err, errlen,
                 "the token refresh interval must be at least 20 minutes and less "
                 "than 60 (Apple refuses tokens older than an hour)");
        return -1;
    }
    push_apns_jwt_t *j = calloc(1, sizeof(*j));
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    j->c = *conf;
    if (!j->c.clock)
        j->c.clock = wall_clock;
    snprintf(j->team_id, sizeof(j->team_id), "%s", conf->team_id);
    snprintf(j->key_id, sizeof(j->key_id), "%s", conf->key_id);
    j->c.team_id = j->team_id;
    j->c.key_id = j->key_id;
    pthread_mutex_init(&j->lock, NULL);
    *out = j;
    return 0;
}

void push_apns_jwt_free(push_apns_jwt_t **jp)
{
    if (!jp || !*jp)
        return;
    pthread_mutex_destroy(&(*jp)->lock);
    free(*jp);
    *jp = NULL;
}

int push_apns_jwt_get(push_apns_jwt_t *j, char *out, size_t outcap, uint64_t *gen)
{
    int rc = 0;
    pthread_mutex_lock(&j->lock);
    int64_t now = j->c.clock(j->c.clock_opaque);
    /* due, retired, or the clock went back by more than a minute */
    if (j->iat_ms == 0 || now - j->iat_ms >= j->c.refresh_ms || now < j->iat_ms - 60000) {
        char hdr[96], claims[96];
        int64_t iat_s = now / 1000;
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", j->key_id);
        snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"iat\":%" PRId64 "}", j->team_id, iat_s);
        if (push_jws_sign(j->c.key, hdr, claims, j->token, sizeof(j->token)) < 0) {
            rc = -1;
        } else {
            j->iat_ms = iat_s * 1000;
            j->gen++;
            j->nsigned++;
        }
    }
    if (rc == 0) {
        snprintf(out, outcap, "%s", j->token);
        if (gen)
            *gen = j->gen;
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

bool push_apns_jwt_expired(push_apns_jwt_t *j, uint64_t gen)
{
    bool retired = false;
    pthread_mutex_lock(&j->lock);
    if (gen == j->gen && j->iat_ms != 0) {
        j->iat_ms = 0;
        retired = true;
    }
    pthread_mutex_unlock(&j->lock);
    return retired;
}

uint64_t push_apns_jwt_signed(push_apns_jwt_t *j)
{
    pthread_mutex_lock(&j->lock);
    uint64_t n = j->nsigned;
    pthread_mutex_unlock(&j->lock);
    return n;
}

/* ---- FCM ----------------------------------------------------------------- */

struct push_fcm_auth_s {
    push_fcm_auth_conf_t c;
    char *email, *uri, *scope;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool fetching;
    char token[PUSH_BEARER_MAX];
    int64_t expires_ms;  /* 0: none */
    int64_t next_try_ms; /* after a failed fetch, none before this */
    char last_err[256];
    uint64_t gen, nfetches;
};

#define FCM_FETCH_RETRY_MS 2000 /* a failed fetch is not repeated sooner */

int push_fcm_assertion(const push_fcm_auth_conf_t *c, int64_t now_s, char *out, size_t outcap)
{
    push_buf_t claims = {0};
    char num[64];
    int rc;
    push_buf_str(&claims, "{\"iss\":");
    push_buf_json_str(&claims, c->client_email, strlen(c->client_email));
    push_buf_str(&claims, ",\"scope\":");
    const char *scope = c->scope ? c->scope : FCM_SCOPE;
    push_buf_json_str(&claims, scope, strlen(scope));
    push_buf_str(&claims, ",\"aud\":");
    push_buf_json_str(&claims, c->token_uri, strlen(c->token_uri));
    snprintf(num, sizeof(num), ",\"iat\":%" PRId64 ",\"exp\":%" PRId64 "}", now_s,
             now_s + FCM_ASSERTION_LIFETIME_S);
    push_buf_str(&claims, num);
    rc = claims.overflow ? -1
                         : push_jws_sign(c->key, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims.data,
                                         out, outcap);
    push_buf_free(&claims);
    return rc;
}

int push_fcm_auth_new(push_fcm_auth_t **out, const push_fcm_auth_conf_t *conf, char *err,
                      size_t errlen)
{
    if (!conf->key || !conf->client_email || !conf->client_email[0] || !conf->token_uri ||
        !conf->token_uri[0] || !conf->fetch) {
        snprintf(err, errlen,
                 "an FCM service account needs a private key, client_email and "
                 "token_uri");
        return -1;
    }
    push_fcm_auth_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->c = *conf;
    a->email = strdup(conf->client_email);
    a->uri = strdup(conf->token_uri);
    a->scope = strdup(conf->scope ? conf->scope : FCM_SCOPE);
    if (!a->email || !a->uri || !a->scope) {
        free(a->email);
        free(a->uri);
        free(a->scope);
        free(a);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->c.client_email = a->email;
    a->c.token_uri = a->uri;
    a->c.scope = a->scope;
    if (!a->c.clock)
        a->c.clock = wall_clock;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    *out = a;
    return 0;
}

void push_fcm_auth_free(push_fcm_auth_t **ap)
{
    push_fcm_auth_t *a = ap ? *ap : NULL;
    if (!a)
        return;
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->cond);
    free(a->email);
    free(a->uri);
    free(a->scope);
    free(a);
    *ap = NULL;
}

/* With the lock held: fetch a token (the lock is released meanwhile). */
static int fcm_fetch_locked(push_fcm_auth_t *a, char *err, size_t errlen)
{
    char assertion[PUSH_JWS_MAX], token[PUSH_BEARER_MAX];
    int64_t expires_in = 0, now = a->c.clock(a->c.clock_opaque);
    int rc;

    a->fetching = true;
    pthread_mutex_unlock(&a->lock);
    if (push_fcm_assertion(&a->c, now / 1000, assertion, sizeof(assertion)) < 0) {
        snprintf(err, errlen, "cannot sign the OAuth2 assertion");
        rc = -1;
    } else {
        rc = a->c.fetch(a->c.fetch_opaque, a->c.token_uri, assertion, token, sizeof(token),
                        &expires_in, err, errlen);
    }
    pthread_mutex_lock(&a->lock);
    a->fetching = false;
    a->nfetches++;
    if (rc != 0) {
        a->next_try_ms = now + FCM_FETCH_RETRY_MS;
        snprintf(a->last_err, sizeof(a->last_err), "%s", err);
    } else {
        a->next_try_ms = 0;
        if (expires_in < 60)
            expires_in = 60;
        if (expires_in > 86400)
            expires_in = 86400;
        snprintf(a->token, sizeof(a->token), "%s", token);
        a->expires_ms = now + expires_in * 1000;
        a->gen++;
    }
    pthread_cond_broadcast(&a->cond);
    return rc;
}

int push_fcm_auth_get(push_fcm_auth_t *a, char *out, size_t outcap, uint64_t *gen, char *err,
                      size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&a->lock);
    for (;;) {
        int64_t now = a->c.clock(a->c.clock_opaque);
        bool valid = a->expires_ms > now;
        bool due = !valid || now >= a->expires_ms - a->c.margin_ms;
        if (valid && (!due || a->fetching))
            break; /* fresh, or someone is fetching while this one still works */
        if (a->fetching) {
            pthread_cond_wait(&a->cond, &a->lock);
            continue;
        }
        if (now < a->next_try_ms) { /* the last fetch failed a moment ago */
            if (valid)
                break;
            snprintf(err, errlen, "FCM OAuth2 token: %s", a->last_err);
            rc = -1;
            break;
        }
        /* this thread fetches */
        char ferr[256] = "";
        if (fcm_fetch_locked(a, ferr, sizeof(ferr)) != 0) {
            now = a->c.clock(a->c.clock_opaque);
            if (a->expires_ms > now)
                break; /* the old token still works: use it, try again next time */
            snprintf(err, errlen, "FCM OAuth2 token: %s", ferr);
            rc = -1;
        }
        break;
    }
    if (rc == 0) {
        snprintf(out, outcap, "%s", a->token);
        if (gen)
            *gen = a->gen;
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

bool push_fcm_auth_invalidate(push_fcm_auth_t *a, uint64_t gen)
{
    bool dropped = false;
    pthread_mutex_lock(&a->lock);
    if (gen == a->gen && a->expires_ms != 0) {
        a->expires_ms = 0;
        dropped = true;
    }
    pthread_mutex_unlock(&a->lock);
    return dropped;
}

uint64_t push_fcm_auth_fetches(push_fcm_auth_t *a)
{
    pthread_mutex_lock(&a->lock);
    uint64_t n = a->nfetches;
    pthread_mutex_unlock(&a->lock);
    return n;
}
