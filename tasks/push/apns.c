/* apns.c: the APNs provider: apps, provider tokens, requests, and the
 * answer classification table (see apns.h and docs/push.md). */
#include "apns.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infra/log.h"
#include "retry_after.h"

#define APNS_TOKEN_MAX 200

/* ---- configuration -------------------------------------------------------- */

typedef struct {
    push_conn_conf_t conn;
    const char *sandbox_endpoint;
    int64_t token_refresh_ms;
    cfg_list_t apps;
} apns_conf_t;

#define AC(f) offsetof(apns_conf_t, f)
static const cfg_field_t apns_fields[] = {
    PUSH_CONN_FIELDS(
        apns_conf_t, conn, "https://api.push.apple.com",
        "APNs production endpoint (https://host[:port])",
        "CA bundle to verify APNs with (\"\": the system's); verification is always on", "1000",
        "1", "1000"),
    {.key = "sandbox_endpoint",
     .type = CFG_STRING,
     .offset = AC(sandbox_endpoint),
     .def = "https://api.sandbox.push.apple.com",
     .help = "APNs sandbox endpoint, for devices marked sandbox"},
    {.key = "token_refresh",
     .type = CFG_DURATION,
     .offset = AC(token_refresh_ms),
     .def = "40m",
     .min = 20 * 60 * 1000,
     .max = 59 * 60 * 1000,
     .help = "age at which a provider token is replaced (Apple: 20 to 60 minutes)"},
    {.key = "apps",
     .type = CFG_LIST,
     .offset = AC(apps),
     .help = "names of the apns_app_<name> sections (none: APNs disabled)"},
};

typedef struct {
    cfg_list_t topics;
    int auth; /* 0 token, 1 certificate */
    const char *team_id;
    const char *key_id;
    const char *key_file;
    const char *cert_file;
    const char *cert_key_file;
} apns_app_conf_t;

static const char *const auth_choices[] = {"token", "certificate", NULL};

#define AA(f) offsetof(apns_app_conf_t, f)
static const cfg_field_t apns_app_fields[] = {
    {.key = "topics",
     .type = CFG_LIST,
     .offset = AA(topics),
     .flags = CFG_REQUIRED,
     .help = "bundle ids (device app_id) this app's credentials serve; \"*\": any"},
    {.key = "auth",
     .type = CFG_ENUM,
     .offset = AA(auth),
     .def = "token",
     .choices = auth_choices,
     .help = "token (.p8 key, ES256 JWT) or certificate (TLS client certificate)"},
    {.key = "team_id",
     .type = CFG_STRING,
     .offset = AA(team_id),
     .help = "token auth: the 10-character team id (JWT iss)"},
    {.key = "key_id",
     .type = CFG_STRING,
     .offset = AA(key_id),
     .help = "token auth: the 10-character key id (JWT kid)"},
    {.key = "key_file",
     .type = CFG_STRING,
     .offset = AA(key_file),
     .help = "token auth: the .p8 signing key (PEM), e.g. from a Kubernetes Secret"},
    {.key = "cert_file",
     .type = CFG_STRING,
     .offset = AA(cert_file),
     .help = "certificate auth: the client certificate (PEM)"},
    {.key = "cert_key_file",
     .type = CFG_STRING,
     .offset = AA(cert_key_file),
     .help = "certificate auth: its private key (PEM)"},
};

typedef struct {
    char name[64];
    apns_app_conf_t c;
    push_key_t *key;
    push_apns_jwt_t *jwt;
    int lane, lane_sandbox; /* one per endpoint */
} apns_app_t;

struct push_apns_s {
    apns_conf_t c;
    apns_app_t apps[PUSH_MAX_APPS];
    int napps;
};

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

int push_apns_configure(push_apns_t **out, cfg_t *cfg, char *err, size_t errlen)
{
    push_apns_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg_bind(cfg, "apns", apns_fields, sizeof(apns_fields) / sizeof(apns_fields[0]), &a->c,
                 NULL, err, errlen))
        goto fail;
    push_conn_conf_fix(&a->c.conn);
    if (a->c.apps.count > PUSH_MAX_APPS) {
        snprintf(err, errlen, "apns.apps: at most %d apps", PUSH_MAX_APPS);
        goto fail;
    }
    for (size_t i = 0; i < a->c.apps.count; i++) {
        apns_app_t *app = &a->apps[a->napps];
        char section[128];
        const char *name = a->c.apps.items[i];
        if (!name_ok(name)) {
            snprintf(err, errlen, "apns.apps: \"%s\": app names are [a-z0-9_], 1 to 40 bytes",
                     name);
            goto fail;
        }
        for (int k = 0; k < a->napps; k++) {
            if (strcmp(a->apps[k].name, name) == 0) {
                snprintf(err, errlen, "apns.apps: \"%s\" listed twice", name);
                goto fail;
            }
        }
        snprintf(app->name, sizeof(app->name), "%s", name);
        snprintf(section, sizeof(section), "apns_app_%s", name);
        if (cfg_bind(cfg, section, apns_app_fields,
                     sizeof(apns_app_fields) / sizeof(apns_app_fields[0]), &app->c, NULL, err,
                     errlen))
            goto fail;
        const char **strs[] = {&app->c.team_id, &app->c.key_id, &app->c.key_file, &app->c.cert_file,
                               &app->c.cert_key_file};
        for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++) {
            if (!*strs[k])
                *strs[k] = "";
        }
        if (app->c.auth == 0 && (!app->c.team_id[0] || !app->c.key_id[0] || !app->c.key_file[0])) {
            snprintf(err, errlen, "%s: token auth needs team_id, key_id and key_file", section);
            goto fail;
        }
        if (app->c.auth == 1 && (!app->c.cert_file[0] || !app->c.cert_key_file[0])) {
            snprintf(err, errlen, "%s: certificate auth needs cert_file and cert_key_file",
                     section);
            goto fail;
        }
        if (app->c.topics.count == 0) {
            snprintf(err, errlen, "%s.topics: at least one bundle id (or \"*\")", section);
            goto fail;
        }
        app->lane = -1;
        a->napps++;
    }
    *out = a;
    return 0;
fail:
    free(a);
    return -1;
}

/* The first OpenSSL error's reason, or "" (the queue is cleared). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "";
}

/* Certificate auth: the client certificate and its key are checked here so
 * that a bad file is a start-up error naming the config key and the file
 * (the lane loads them into its TLS context afterwards): the certificate is
 * PEM, the key is an unencrypted PEM private key, the two belong together.
 * An expired or not yet valid certificate, or a key file readable by other
 * users, is a warning. */
static int check_client_cert(const apns_app_t *app, char *err, size_t errlen)
{
    const char *cf = app->c.cert_file, *kf = app->c.cert_key_file;
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    struct stat st;
    int rc = -1;
    FILE *f = fopen(cf, "r");
    if (!f) {
        snprintf(err, errlen, "apns_app_%s.cert_file %s: %s", app->name, cf, strerror(errno));
        return -1;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        const char *why = ssl_reason();
        snprintf(err, errlen, "apns_app_%s.cert_file %s: not a PEM certificate%s%s", app->name, cf,
                 why[0] ? ": " : "", why);
        goto out;
    }
    f = fopen(kf, "r");
    if (!f) {
        snprintf(err, errlen, "apns_app_%s.cert_key_file %s: %s", app->name, kf, strerror(errno));
        goto out;
    }
    bool others = fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH) != 0;
    /* "" as the passphrase: an encrypted key fails instead of prompting */
    pk = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
    fclose(f);
    if (!pk) {
        const char *why = ssl_reason();
        snprintf(err, errlen,
                 "apns_app_%s.cert_key_file %s: not an unencrypted PEM private key%s%s", app->name,
                 kf, why[0] ? ": " : "", why);
        goto out;
    }
    if (X509_check_private_key(x, pk) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "apns_app_%s.cert_key_file %s: not the key of the certificate %s",
                 app->name, kf, cf);
        goto out;
    }
    if (others)
        log_warn("apns_app_%s.cert_key_file %s can be read by other users: make it 0600 or 0640 "
                 "(a Kubernetes Secret: defaultMode 0440)",
                 app->name, kf);
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        log_warn("apns_app_%s.cert_file %s: the certificate has expired: APNs will refuse it",
                 app->name, cf);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        log_warn("apns_app_%s.cert_file %s: the certificate is not valid yet", app->name, cf);
    rc = 0;
out:
    EVP_PKEY_free(pk);
    X509_free(x);
    return rc;
}

int push_apns_start(push_apns_t *a, push_h2_t *h2, push_clock_fn clock, void *clock_opaque,
                    char *err, size_t errlen)
{
    for (int i = 0; i < a->napps; i++) {
        apns_app_t *app = &a->apps[i];
        char what[128], lname[96];
        snprintf(lname, sizeof(lname), "apns/%s", app->name);
        if (app->c.auth == 0) {
            bool others = false;
            snprintf(what, sizeof(what), "apns_app_%s.key_file", app->name);
            if (push_key_load(&app->key, app->c.key_file, PUSH_KEY_EC_P256, what, &others, err,
                              errlen))
                return -1;
            if (others)
                log_warn("%s %s can be read by other users: make it 0600 or 0640 (a Kubernetes "
                         "Secret: defaultMode 0440)",
                         what, app->c.key_file);
            push_apns_jwt_conf_t jc = {
                .key = app->key,
                .team_id = app->c.team_id,
                .key_id = app->c.key_id,
                .refresh_ms = a->c.token_refresh_ms,
                .clock = clock,
                .clock_opaque = clock_opaque,
            };
            char jerr[256];
            if (push_apns_jwt_new(&app->jwt, &jc, jerr, sizeof(jerr))) {
                snprintf(err, errlen, "apns_app_%s: %s", app->name, jerr);
                return -1;
            }
            /* sign one now: a key that cannot sign fails the start */
            char tok[PUSH_JWS_MAX];
            if (push_apns_jwt_get(app->jwt, tok, sizeof(tok), NULL)) {
                snprintf(err, errlen, "%s %s: cannot sign an ES256 token with it", what,
                         app->c.key_file);
                return -1;
            }
        } else if (check_client_cert(app, err, errlen)) {
            return -1;
        }
        push_lane_conf_t lc = push_conn_lane(&a->c.conn, lname, "apns");
        if (app->c.auth == 1) {
            lc.client_cert = app->c.cert_file;
            lc.client_key = app->c.cert_key_file;
        }
        app->lane = push_h2_lane_add(h2, &lc, err, errlen);
        if (app->lane < 0)
            return -1;
        app->lane_sandbox = app->lane;
        if (strcmp(a->c.sandbox_endpoint, a->c.conn.endpoint) != 0) {
            snprintf(lname, sizeof(lname), "apns/%s/sandbox", app->name);
            lc.origin = a->c.sandbox_endpoint;
            app->lane_sandbox = push_h2_lane_add(h2, &lc, err, errlen);
            if (app->lane_sandbox < 0)
                return -1;
        }
        log_info("apns app %s: %s auth, topics %zu, endpoint %s (sandbox %s)", app->name,
                 app->c.auth == 0 ? "token" : "certificate", app->c.topics.count,
                 a->c.conn.endpoint, a->c.sandbox_endpoint);
    }
    return 0;
}

void push_apns_free(push_apns_t **ap)
{
    push_apns_t *a = ap ? *ap : NULL;
    if (!a)
        return;
    for (int i = 0; i < a->napps; i++) {
        push_apns_jwt_free(&a->apps[i].jwt);
        push_key_free(&a->apps[i].key);
    }
    free(a);
    *ap = NULL;
}

int push_apns_napps(const push_apns_t *a)
{
    return a ? a->napps : 0;
}

const char *push_apns_app_name(const push_apns_t *a, int app)
{
    return app >= 0 && app < a->napps ? a->apps[app].name : "-";
}

push_apns_jwt_t *push_apns_app_jwt(push_apns_t *a, int app)
{
    return app >= 0 && app < a->napps ? a->apps[app].jwt : NULL;
}

/* A listed topic serves itself and its VoIP topic ("com.x" serves
 * "com.x.voip"); "*" serves any, "com.x.*" any topic starting "com.x.". */
static bool topic_matches(const char *listed, const char *topic)
{
    size_t n = strlen(listed);
    if (strcmp(listed, "*") == 0 || strcmp(listed, topic) == 0)
        return true;
    if (n >= 2 && listed[n - 1] == '*' && listed[n - 2] == '.')
        return strncmp(listed, topic, n - 1) == 0 && topic[n - 1] != '\0';
    return strncmp(listed, topic, n) == 0 && strcmp(topic + n, ".voip") == 0;
}

int push_apns_app_for(const push_apns_t *a, const char *app_id)
{
    if (!a || a->napps == 0)
        return -1;
    if (!app_id || !app_id[0])
        return 0;
    for (int i = 0; i < a->napps; i++) {
        for (size_t k = 0; k < a->apps[i].c.topics.count; k++) {
            if (topic_matches(a->apps[i].c.topics.items[k], app_id))
                return i;
        }
    }
    return -1;
}

bool push_apns_token_ok(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > APNS_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ---- requests ------------------------------------------------------------ */

int push_apns_payload(const push_note_t *note, push_buf_t *out, push_fit_t *fit, char *err,
                      size_t errlen)
{
    push_apns_opts_t o = {.max_bytes = PUSH_APNS_MAX_PAYLOAD};
    return push_payload_apns(note->n, &o, out, fit, err, errlen);
}

int push_apns_bearer(push_apns_t *a, int app, char *out, size_t cap, uint64_t *gen)
{
    apns_app_t *ap = &a->apps[app];
    char tok[PUSH_JWS_MAX];
    out[0] = '\0';
    if (!ap->jwt)
        return 0; /* certificate auth */
    if (push_apns_jwt_get(ap->jwt, tok, sizeof(tok), gen))
        return -1;
    snprintf(out, cap, "bearer %s", tok);
    return 0;
}

static void hdr(push_job_t *j, const char *name, const char *value)
{
    push_h2_req_t *r = &j->req;
    if (r->nhdrs < PUSH_H2_MAX_HDRS) {
        r->hdrs[r->nhdrs].name = name;
        r->hdrs[r->nhdrs].value = value;
        r->nhdrs++;
    }
}

int push_apns_prepare(push_apns_t *a, push_job_t *j, const push_note_t *note,
                      const push_buf_t *payload, const char *bearer, uint64_t gen, char *err,
                      size_t errlen)
{
    const Imtask__V1__PushDevice *d = j->dev;
    apns_app_t *app = &a->apps[j->app];
    const char *topic = d->app_id && d->app_id[0] ? d->app_id : app->c.topics.items[0];
    const Imtask__V1__PushNotification *n = note->n;
    bool alert = (n->title && n->title[0]) || (n->body && n->body[0]);
    size_t tl = strlen(topic);
    bool voip = tl > 5 && strcmp(topic + tl - 5, ".voip") == 0;
    const char *type = voip ? "voip" : alert ? "alert" : "background";
    /* background pushes must go with priority 5 */
    const char *prio = voip || (alert && note->high_priority) ? "10" : "5";

    if (strchr(topic, '*')) {
        snprintf(err, errlen,
                 "no bundle id: the device has no app_id and apns_app_%s.topics "
                 "starts with a pattern",
                 app->name);
        return -1;
    }
    if (!push_apns_token_ok(d->token)) {
        snprintf(err, errlen, "malformed APNs device token (want 1..%d of [0-9A-Za-z_-])",
                 APNS_TOKEN_MAX);
        return -1;
    }
    if (app->jwt && (!bearer || !bearer[0])) {
        snprintf(err, errlen, "no provider token for apns_app_%s", app->name);
        return -1;
    }
    free(j->path);
    size_t pl = strlen(d->token) + 16;
    j->path = malloc(pl);
    if (!j->path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(j->path, pl, "/3/device/%s", d->token);
    push_uuid_for(note->root_task_id, d->token, j->uuid);
    j->req.nhdrs = 0;
    if (app->jwt)
        hdr(j, "authorization", bearer);
    hdr(j, "apns-topic", topic);
    hdr(j, "apns-push-type", type);
    hdr(j, "apns-priority", prio);
    hdr(j, "apns-id", j->uuid);
    hdr(j, "content-type", "application/json");
    if (note->ttl_set)
        hdr(j, "apns-expiration", note->expiration);
    if (note->collapse_id[0])
        hdr(j, "apns-collapse-id", note->collapse_id);
    j->auth_gen = gen;
    j->req.lane = d->sandbox ? app->lane_sandbox : app->lane;
    j->req.path = j->path;
    j->req.body = payload->data;
    j->req.body_len = payload->len;
    return 0;
}

/* ---- answers ------------------------------------------------------------- */

/* Every reason Apple documents, and what it means for us. */
static const struct {
    const char *reason;
    push_outcome_t outcome;
} apns_reasons[] = {
    /* the token is dead: remove it */
    {"BadDeviceToken", PUSH_INVALID_TOKEN},
    {"DeviceTokenNotForTopic", PUSH_INVALID_TOKEN},
    {"Unregistered", PUSH_INVALID_TOKEN},
    {"ExpiredToken", PUSH_INVALID_TOKEN},
    /* our provider token: refresh once */
    {"ExpiredProviderToken", PUSH_AUTH_EXPIRED},
    /* later */
    {"TooManyRequests", PUSH_TRANSIENT},
    {"TooManyProviderTokenUpdates", PUSH_TRANSIENT},
    {"InternalServerError", PUSH_TRANSIENT},
    {"ServiceUnavailable", PUSH_TRANSIENT},
    {"Shutdown", PUSH_TRANSIENT},
    {"IdleTimeout", PUSH_TRANSIENT},
    /* never: our request or configuration is wrong */
    {"BadCollapseId", PUSH_PERMANENT},
    {"BadExpirationDate", PUSH_PERMANENT},
    {"BadMessageId", PUSH_PERMANENT},
    {"BadPriority", PUSH_PERMANENT},
    {"BadTopic", PUSH_PERMANENT},
    {"DuplicateHeaders", PUSH_PERMANENT},
    {"InvalidPushType", PUSH_PERMANENT},
    {"MissingDeviceToken", PUSH_PERMANENT},
    {"MissingTopic", PUSH_PERMANENT},
    {"PayloadEmpty", PUSH_PERMANENT},
    {"TopicDisallowed", PUSH_PERMANENT},
    {"BadCertificate", PUSH_PERMANENT},
    {"BadCertificateEnvironment", PUSH_PERMANENT},
    {"Forbidden", PUSH_PERMANENT},
    {"InvalidProviderToken", PUSH_PERMANENT},
    {"MissingProviderToken", PUSH_PERMANENT},
    {"UnrelatedKeyIdInToken", PUSH_PERMANENT},
    {"BadPath", PUSH_PERMANENT},
    {"MethodNotAllowed", PUSH_PERMANENT},
    {"PayloadTooLarge", PUSH_PERMANENT},
};

void push_apns_classify(const push_h2_req_t *r, int64_t now_ms, int64_t max_ra, push_verdict_t *v)
{
    char reason[PUSH_REASON_MAX] = "";
    bool known = false;
    size_t i;

    if (push_verdict_decided(r, v))
        return;
    if (r->resp && r->resp_len > 0) {
        cJSON *j = cJSON_ParseWithLength(r->resp, r->resp_len);
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "reason");
        if (cJSON_IsString(rs) && rs->valuestring)
            snprintf(reason, sizeof(reason), "%s", rs->valuestring);
        cJSON_Delete(j);
    }
    for (i = 0; i < sizeof(apns_reasons) / sizeof(apns_reasons[0]); i++) {
        if (strcmp(reason, apns_reasons[i].reason) == 0) {
            known = true;
            v->outcome = apns_reasons[i].outcome;
            break;
        }
    }
    if (r->status == 410) /* "no longer active for the topic", whatever the reason says */
        v->outcome = PUSH_INVALID_TOKEN;
    else if (!known)
        v->outcome = r->status == 429 || r->status >= 500 ? PUSH_TRANSIENT : PUSH_PERMANENT;
    if (known)
        snprintf(v->reason, sizeof(v->reason), "%s", reason);
    else
        snprintf(v->reason, sizeof(v->reason), "http_%ld", r->status);
    push_verdict_retry_after(r, now_ms, max_ra, v);
}

bool push_apns_auth_expired(push_apns_t *a, const push_job_t *j)
{
    push_apns_jwt_t *jwt = push_apns_app_jwt(a, j->app);
    return jwt ? push_apns_jwt_expired(jwt, j->auth_gen) : false;
}
