/* fcm.c: the FCM HTTP v1 provider: service accounts, OAuth2 access tokens,
 * requests, and the answer classification table (see fcm.h, docs/push.md). */
#include "fcm.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infra/log.h"
#include "retry_after.h"

#define SA_FILE_MAX (64 * 1024)
#define TOKEN_RESP_MAX (64 * 1024)
#define FCM_TOKEN_MAX 4096
#define FCM_ERROR_TYPE "type.googleapis.com/google.firebase.fcm.v1.FcmError"

/* ---- configuration -------------------------------------------------------- */

typedef struct {
    push_conn_conf_t conn;
    const char *token_uri;
    int64_t token_margin_ms;
    cfg_list_t apps;
} fcm_conf_t;

#define FC(f) offsetof(fcm_conf_t, f)
static const cfg_field_t fcm_fields[] = {
    PUSH_CONN_FIELDS(fcm_conf_t, conn, "https://fcm.googleapis.com",
                     "FCM HTTP v1 endpoint (https://host[:port])",
                     "CA bundle for FCM and the token endpoint (\"\": the system's)", "400", "4",
                     "100"),
    {.key = "token_uri",
     .type = CFG_STRING,
     .offset = FC(token_uri),
     .help = "OAuth2 token endpoint (\"\": the service account's token_uri)"},
    {.key = "token_margin",
     .type = CFG_DURATION,
     .offset = FC(token_margin_ms),
     .def = "5m",
     .min = 0,
     .max = 30 * 60 * 1000,
     .help = "an access token is replaced this long before it expires"},
    {.key = "apps",
     .type = CFG_LIST,
     .offset = FC(apps),
     .help = "names of the fcm_app_<name> sections (none: FCM disabled)"},
};

typedef struct {
    cfg_list_t app_ids;
    const char *credentials_file;
    const char *project_id;
} fcm_app_conf_t;

#define FA(f) offsetof(fcm_app_conf_t, f)
static const cfg_field_t fcm_app_fields[] = {
    {.key = "app_ids",
     .type = CFG_LIST,
     .offset = FA(app_ids),
     .flags = CFG_REQUIRED,
     .help = "device app_id values this service account serves; \"*\": any"},
    {.key = "credentials_file",
     .type = CFG_STRING,
     .offset = FA(credentials_file),
     .flags = CFG_REQUIRED,
     .help = "the service account JSON (e.g. from a Kubernetes Secret)"},
    {.key = "project_id",
     .type = CFG_STRING,
     .offset = FA(project_id),
     .help = "Firebase project (\"\": the service account's project_id)"},
};

typedef struct {
    char name[64];
    fcm_app_conf_t c;
    char *project, *email, *token_uri, *path;
    push_key_t *key;
    push_fcm_auth_t *auth;
    int lane;
} fcm_app_t;

struct push_fcm_s {
    fcm_conf_t c;
    fcm_app_t apps[16];
    int napps;
    bool curl_inited;
};

int push_fcm_configure(push_fcm_t **out, cfg_t *cfg, char *err, size_t errlen)
{
    push_fcm_t *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg_bind(cfg, "fcm", fcm_fields, sizeof(fcm_fields) / sizeof(fcm_fields[0]), &f->c, NULL,
                 err, errlen))
        goto fail;
    if (!f->c.token_uri)
        f->c.token_uri = "";
    push_conn_conf_fix(&f->c.conn);
    if (f->c.apps.count > 16) {
        snprintf(err, errlen, "fcm.apps: at most 16 apps");
        goto fail;
    }
    for (size_t i = 0; i < f->c.apps.count; i++) {
        fcm_app_t *app = &f->apps[f->napps];
        const char *name = f->c.apps.items[i];
        char section[128];
        bool ok = strlen(name) > 0 && strlen(name) <= 40;
        for (const char *p = name; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok) {
            snprintf(err, errlen, "fcm.apps: \"%s\": app names are [a-z0-9_], 1 to 40 bytes", name);
            goto fail;
        }
        for (int k = 0; k < f->napps; k++) {
            if (strcmp(f->apps[k].name, name) == 0) {
                snprintf(err, errlen, "fcm.apps: \"%s\" listed twice", name);
                goto fail;
            }
        }
        snprintf(app->name, sizeof(app->name), "%s", name);
        snprintf(section, sizeof(section), "fcm_app_%s", name);
        if (cfg_bind(cfg, section, fcm_app_fields,
                     sizeof(fcm_app_fields) / sizeof(fcm_app_fields[0]), &app->c, NULL, err,
                     errlen))
            goto fail;
        if (!app->c.project_id)
            app->c.project_id = "";
        app->lane = -1;
        f->napps++;
    }
    *out = f;
    return 0;
fail:
    free(f);
    return -1;
}

/* The service account JSON: project_id, client_email, private_key, token_uri. */
static int load_service_account(push_fcm_t *f, fcm_app_t *app, char *err, size_t errlen)
{
    const char *path = app->c.credentials_file;
    char what[PATH_MAX + 64], *buf = NULL;
    struct stat st;
    cJSON *j = NULL;
    int fd, rc = -1;
    ssize_t n;

    snprintf(what, sizeof(what), "fcm_app_%s.credentials_file %s", app->name, path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", what, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SA_FILE_MAX) {
        snprintf(err, errlen, "%s: not a regular file of at most %d bytes", what, SA_FILE_MAX);
        close(fd);
        return -1;
    }
    if (st.st_mode & S_IROTH)
        log_warn("%s can be read by other users: make it 0600 or 0640 (a Kubernetes Secret: "
                 "defaultMode 0440)",
                 what);
    buf = malloc((size_t)st.st_size + 1);
    n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n != st.st_size) {
        snprintf(err, errlen, "%s: cannot read it", what);
        goto out;
    }
    buf[n] = '\0';
    j = cJSON_ParseWithLength(buf, (size_t)n);
    if (!cJSON_IsObject(j)) {
        snprintf(err, errlen, "%s: not a JSON object (a service account key file is one)", what);
        goto out;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *proj = cJSON_GetObjectItemCaseSensitive(j, "project_id");
    const cJSON *email = cJSON_GetObjectItemCaseSensitive(j, "client_email");
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "private_key");
    const cJSON *uri = cJSON_GetObjectItemCaseSensitive(j, "token_uri");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "service_account") != 0) {
        snprintf(err, errlen, "%s: \"type\" is not \"service_account\"", what);
        goto out;
    }
    if (!cJSON_IsString(email) || !email->valuestring[0] || !cJSON_IsString(pk)) {
        snprintf(err, errlen, "%s: needs \"client_email\" and \"private_key\"", what);
        goto out;
    }
    const char *project = app->c.project_id[0]   ? app->c.project_id
                          : cJSON_IsString(proj) ? proj->valuestring
                                                 : "";
    if (!project[0]) {
        snprintf(err, errlen, "%s: no \"project_id\" (and fcm_app_%s.project_id is empty)", what,
                 app->name);
        goto out;
    }
    for (const char *p = project; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == ':' ||
              *p == '.')) {
            snprintf(err, errlen, "%s: project id \"%s\" has characters no project id has", what,
                     project);
            goto out;
        }
    }
    const char *turi = f->c.token_uri[0] ? f->c.token_uri
                       : cJSON_IsString(uri) && uri->valuestring[0]
                           ? uri->valuestring
                           : "https://oauth2.googleapis.com/token";
    char kwhat[PATH_MAX + 96];
    snprintf(kwhat, sizeof(kwhat), "%s: private_key", what);
    if (push_key_from_pem(&app->key, pk->valuestring, strlen(pk->valuestring), PUSH_KEY_RSA, kwhat,
                          err, errlen))
        goto out;
    app->project = strdup(project);
    app->email = strdup(email->valuestring);
    app->token_uri = strdup(turi);
    size_t ul = strlen(project) + 64;
    app->path = malloc(ul);
    if (!app->project || !app->email || !app->token_uri || !app->path) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(app->path, ul, "/v1/projects/%s/messages:send", project);
    rc = 0;
out:
    if (cJSON_IsObject(j)) { /* do not leave the key in freed memory */
        cJSON *pkm = cJSON_GetObjectItemCaseSensitive(j, "private_key");
        if (cJSON_IsString(pkm))
            OPENSSL_cleanse(pkm->valuestring, strlen(pkm->valuestring));
    }
    cJSON_Delete(j);
    if (buf) {
        OPENSSL_cleanse(buf, (size_t)st.st_size);
        free(buf);
    }
    return rc;
}

int push_fcm_start(push_fcm_t *f, push_h2_t *h2, push_clock_fn clock, void *clock_opaque, char *err,
                   size_t errlen)
{
    if (f->napps > 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init failed (the OAuth2 token exchange needs it)");
        return -1;
    }
    f->curl_inited = f->napps > 0;
    for (int i = 0; i < f->napps; i++) {
        fcm_app_t *app = &f->apps[i];
        char lname[96], aerr[256];
        if (load_service_account(f, app, err, errlen))
            return -1;
        push_fcm_auth_conf_t ac = {
            .key = app->key,
            .client_email = app->email,
            .token_uri = app->token_uri,
            .margin_ms = f->c.token_margin_ms,
            .fetch = push_fcm_fetch,
            .fetch_opaque = f,
            .clock = clock,
            .clock_opaque = clock_opaque,
        };
        if (push_fcm_auth_new(&app->auth, &ac, aerr, sizeof(aerr))) {
            snprintf(err, errlen, "fcm_app_%s: %s", app->name, aerr);
            return -1;
        }
        snprintf(lname, sizeof(lname), "fcm/%s", app->name);
        push_lane_conf_t lc = push_conn_lane(&f->c.conn, lname, "fcm");
        app->lane = push_h2_lane_add(h2, &lc, err, errlen);
        if (app->lane < 0)
            return -1;
        log_info("fcm app %s: project %s, service account %s, token endpoint %s", app->name,
                 app->project, app->email, app->token_uri);
    }
    return 0;
}

void push_fcm_free(push_fcm_t **fp)
{
    push_fcm_t *f = fp ? *fp : NULL;
    if (!f)
        return;
    for (int i = 0; i < f->napps; i++) {
        fcm_app_t *a = &f->apps[i];
        push_fcm_auth_free(&a->auth);
        push_key_free(&a->key);
        free(a->project);
        free(a->email);
        free(a->token_uri);
        free(a->path);
    }
    if (f->curl_inited)
        curl_global_cleanup();
    free(f);
    *fp = NULL;
}

int push_fcm_napps(const push_fcm_t *f)
{
    return f ? f->napps : 0;
}

const char *push_fcm_app_name(const push_fcm_t *f, int app)
{
    return app >= 0 && app < f->napps ? f->apps[app].name : "-";
}

push_fcm_auth_t *push_fcm_app_auth(push_fcm_t *f, int app)
{
    return app >= 0 && app < f->napps ? f->apps[app].auth : NULL;
}

int push_fcm_app_for(const push_fcm_t *f, const char *app_id)
{
    if (!f || f->napps == 0)
        return -1;
    if (!app_id || !app_id[0])
        return 0;
    for (int i = 0; i < f->napps; i++) {
        for (size_t k = 0; k < f->apps[i].c.app_ids.count; k++) {
            const char *id = f->apps[i].c.app_ids.items[k];
            if (strcmp(id, "*") == 0 || strcmp(id, app_id) == 0)
                return i;
        }
    }
    return -1;
}

/* ---- the token endpoint ---------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
} resp_t;

static size_t on_token_body(char *p, size_t size, size_t n, void *ud)
{
    resp_t *r = ud;
    size_t len = size * n;
    if (r->len + len > TOKEN_RESP_MAX)
        return 0; /* too large: the transfer fails */
    char *d = realloc(r->data, r->len + len + 1);
    if (!d)
        return 0;
    memcpy(d + r->len, p, len);
    r->data = d;
    r->len += len;
    d[r->len] = '\0';
    return len;
}

int push_fcm_fetch(void *opaque, const char *token_uri, const char *assertion, char *token,
                   size_t tokencap, int64_t *expires_in_s, char *err, size_t errlen)
{
    static const char grant[] =
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
    push_fcm_t *f = opaque;
    resp_t r = {0};
    char *form = NULL, cerr[CURL_ERROR_SIZE] = "";
    struct curl_slist *h = NULL;
    long status = 0;
    int rc = -1;
    CURL *e = curl_easy_init();
    cJSON *j = NULL;

    form = malloc(sizeof(grant) + strlen(assertion));
    h = curl_slist_append(NULL, "content-type: application/x-www-form-urlencoded");
    if (!e || !form || !h) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(form, sizeof(grant) + strlen(assertion), "%s%s", grant, assertion);
    curl_easy_setopt(e, CURLOPT_URL, token_uri);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (f->c.conn.ca_file[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, f->c.conn.ca_file);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->c.conn.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)f->c.conn.request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_token_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr);
    CURLcode cc = curl_easy_perform(e);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", token_uri, cerr[0] ? cerr : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    j = r.data ? cJSON_ParseWithLength(r.data, r.len) : NULL;
    if (status != 200) {
        const cJSON *ee = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *ed = cJSON_GetObjectItemCaseSensitive(j, "error_description");
        snprintf(err, errlen, "%s answered %ld%s%.80s%s%.120s", token_uri, status,
                 cJSON_IsString(ee) ? ": " : "", cJSON_IsString(ee) ? ee->valuestring : "",
                 cJSON_IsString(ed) ? " - " : "", cJSON_IsString(ed) ? ed->valuestring : "");
        goto out;
    }
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(j, "token_type");
    if (!cJSON_IsString(at) || !at->valuestring[0] || !cJSON_IsNumber(ei) ||
        (cJSON_IsString(tt) && strcasecmp(tt->valuestring, "bearer") != 0)) {
        snprintf(err, errlen, "%s: the answer has no bearer access_token and expires_in",
                 token_uri);
        goto out;
    }
    if (strlen(at->valuestring) >= tokencap) {
        snprintf(err, errlen, "%s: access token longer than %zu bytes", token_uri, tokencap);
        goto out;
    }
    for (const char *p = at->valuestring; *p; p++) {
        if (*p <= ' ' || *p > '~') {
            snprintf(err, errlen, "%s: the access token has bytes a header cannot carry",
                     token_uri);
            goto out;
        }
    }
    snprintf(token, tokencap, "%s", at->valuestring);
    *expires_in_s = (int64_t)ei->valuedouble;
    rc = 0;
out:
    if (cJSON_IsObject(j)) {
        cJSON *atm = cJSON_GetObjectItemCaseSensitive(j, "access_token");
        if (cJSON_IsString(atm))
            OPENSSL_cleanse(atm->valuestring, strlen(atm->valuestring));
    }
    cJSON_Delete(j);
    if (r.data)
        OPENSSL_cleanse(r.data, r.len);
    free(r.data);
    if (form)
        OPENSSL_cleanse(form, strlen(form));
    free(form);
    curl_slist_free_all(h);
    if (e)
        curl_easy_cleanup(e);
    return rc;
}

/* ---- requests ------------------------------------------------------------- */

int push_fcm_message(const push_note_t *note, push_fcm_msg_t *out, push_fit_t *fit, char *err,
                     size_t errlen)
{
    push_fcm_opts_t o = {
        .max_bytes = PUSH_FCM_MAX_PAYLOAD,
        .high_priority = note->high_priority,
        .ttl_set = note->ttl_set,
        .ttl_seconds = note->ttl_seconds,
        .apns_expiration_s = note->expiration_s,
        .collapse_id = note->collapse_id,
    };
    return push_payload_fcm(note->n, &o, out, fit, err, errlen);
}

int push_fcm_auth(push_fcm_t *f, int app, char *bearer, size_t cap, uint64_t *gen, char *err,
                  size_t errlen)
{
    char tok[PUSH_BEARER_MAX];
    if (push_fcm_auth_get(f->apps[app].auth, tok, sizeof(tok), gen, err, errlen))
        return -1;
    snprintf(bearer, cap, "Bearer %s", tok);
    return 0;
}

int push_fcm_prepare(push_fcm_t *f, push_job_t *j, const push_fcm_msg_t *msg, const char *bearer,
                     uint64_t gen, char *err, size_t errlen)
{
    fcm_app_t *app = &f->apps[j->app];
    const char *tok = j->dev->token ? j->dev->token : "";

    if (!tok[0] || strlen(tok) > FCM_TOKEN_MAX) {
        snprintf(err, errlen, "malformed FCM registration token (empty or over %d bytes)",
                 FCM_TOKEN_MAX);
        return -1;
    }
    push_fcm_body(msg, tok, &j->body);
    if (j->body.overflow) {
        snprintf(err, errlen, "FCM request over %d bytes", PUSH_JSON_MAX);
        return -1;
    }
    j->req.nhdrs = 0;
    j->req.hdrs[j->req.nhdrs++] = (push_hdr_t){"authorization", bearer};
    j->req.hdrs[j->req.nhdrs++] = (push_hdr_t){"content-type", "application/json; charset=UTF-8"};
    j->auth_gen = gen;
    j->req.lane = app->lane;
    j->req.path = app->path;
    j->req.body = j->body.data;
    j->req.body_len = j->body.len;
    return 0;
}

/* ---- answers --------------------------------------------------------------- */

/* FCM's ErrorCode values (FcmError.errorCode) and what they mean for us. */
static const struct {
    const char *code;
    push_outcome_t outcome;
} fcm_codes[] = {
    {"UNREGISTERED", PUSH_INVALID_TOKEN},       /* 404: the app instance is gone */
    {"SENDER_ID_MISMATCH", PUSH_INVALID_TOKEN}, /* 403: token of another sender */
    {"QUOTA_EXCEEDED", PUSH_TRANSIENT},         /* 429: back off, honour Retry-After */
    {"UNAVAILABLE", PUSH_TRANSIENT},            /* 503 */
    {"INTERNAL", PUSH_TRANSIENT},               /* 500 */
    {"INVALID_ARGUMENT", PUSH_PERMANENT},       /* 400: our message is wrong */
    {"THIRD_PARTY_AUTH_ERROR", PUSH_PERMANENT}, /* 401: the APNs/web push credentials */
};

void push_fcm_classify(const push_h2_req_t *r, int64_t now_ms, int64_t max_ra, push_verdict_t *v)
{
    char code[PUSH_REASON_MAX] = "", status[PUSH_REASON_MAX] = "";
    bool known = false;
    cJSON *j = NULL;

    if (push_verdict_decided(r, v))
        return;
    if (r->resp && r->resp_len > 0)
        j = cJSON_ParseWithLength(r->resp, r->resp_len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "status");
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(e, "details");
    const cJSON *d;
    if (cJSON_IsString(st))
        snprintf(status, sizeof(status), "%s", st->valuestring);
    cJSON_ArrayForEach(d, details)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "@type");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "errorCode");
        if (cJSON_IsString(t) && strcmp(t->valuestring, FCM_ERROR_TYPE) == 0 && cJSON_IsString(c)) {
            snprintf(code, sizeof(code), "%s", c->valuestring);
            break;
        }
    }
    cJSON_Delete(j);
    for (size_t i = 0; i < sizeof(fcm_codes) / sizeof(fcm_codes[0]); i++) {
        if (strcmp(code, fcm_codes[i].code) == 0) {
            v->outcome = fcm_codes[i].outcome;
            known = true;
            break;
        }
    }
    if (known) {
        snprintf(v->reason, sizeof(v->reason), "%s", code);
    } else if (r->status == 401) {
        /* UNAUTHENTICATED without an FcmError: our access token */
        v->outcome = PUSH_AUTH_EXPIRED;
        snprintf(v->reason, sizeof(v->reason), "UNAUTHENTICATED");
    } else {
        /* no FcmError: the HTTP status decides; the canonical status name
         * (UNAVAILABLE, RESOURCE_EXHAUSTED, ...) is the reason when sane */
        bool sane = status[0] && strlen(status) <= 32;
        for (const char *p = status; sane && *p; p++)
            sane = (*p >= 'A' && *p <= 'Z') || *p == '_';
        v->outcome = r->status == 429 || r->status >= 500 ? PUSH_TRANSIENT : PUSH_PERMANENT;
        if (sane)
            snprintf(v->reason, sizeof(v->reason), "%s", status);
        else
            snprintf(v->reason, sizeof(v->reason), "http_%ld", r->status);
    }
    push_verdict_retry_after(r, now_ms, max_ra, v);
}

bool push_fcm_auth_expired(push_fcm_t *f, const push_job_t *j)
{
    push_fcm_auth_t *a = push_fcm_app_auth(f, j->app);
    return a ? push_fcm_auth_invalidate(a, j->auth_gen) : false;
}
