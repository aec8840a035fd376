/* provider_tencent.c: a provider shaped like Tencent Cloud TMS TextModeration
 * (API 3.0, version 2020-12-29): the text base64-encoded in Content, the
 * request signed with TC3-HMAC-SHA256 (tc3.c); the answer's Suggestion
 * (Block/Review/Pass) is the decision, Label/SubLabel/Score (0..100)/Keywords
 * and DetailResults the labels. Errors come as HTTP 200 with
 * Response.Error.Code: AuthFailure.* and UnauthorizedOperation.* are
 * configuration, RequestLimitExceeded* throttling, InvalidParameter* /
 * MissingParameter* / LimitExceeded* this request, anything else provider
 * trouble.
 *
 *   audit_tencent:
 *     url: https://tms.tencentcloudapi.com
 *     region: ap-guangzhou
 *     secret_id: AKID...
 *     secret_key: ...
 *     biz_type: ""          # default BizType (a task's biz_type wins)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"
#include "provider.h"
#include "tc3.h"

#define TENCENT_CONTENT_TYPE "application/json; charset=utf-8"
#define TENCENT_BODY_MAX (1u << 20)

typedef struct {
    const char *url;
    const char *host;
    const char *region;
    const char *secret_id;
    const char *secret_key;
    const char *version;
    const char *service;
    const char *action;
    const char *biz_type;
    int64_t max_chars;
    char host_buf[256];
} tencent_t;

#define TO(k) offsetof(tencent_t, k)
static const cfg_field_t tencent_fields[] = {
    {.key = "url",
     .type = CFG_STRING,
     .offset = TO(url),
     .def = "https://tms.tencentcloudapi.com",
     .help = "the API endpoint"},
    {.key = "host",
     .type = CFG_STRING,
     .offset = TO(host),
     .help = "the host signed and sent (default: the host of url)"},
    {.key = "region",
     .type = CFG_STRING,
     .offset = TO(region),
     .def = "ap-guangzhou",
     .help = "X-TC-Region"},
    {.key = "secret_id",
     .type = CFG_STRING,
     .offset = TO(secret_id),
     .help = "SecretId (required when audit.provider is tencent)"},
    {.key = "secret_key",
     .type = CFG_STRING,
     .offset = TO(secret_key),
     .flags = CFG_SECRET,
     .help = "SecretKey (required when audit.provider is tencent)"},
    {.key = "version",
     .type = CFG_STRING,
     .offset = TO(version),
     .def = "2020-12-29",
     .help = "X-TC-Version"},
    {.key = "service",
     .type = CFG_STRING,
     .offset = TO(service),
     .def = "tms",
     .help = "the service of the credential scope"},
    {.key = "action",
     .type = CFG_STRING,
     .offset = TO(action),
     .def = "TextModeration",
     .help = "X-TC-Action"},
    {.key = "biz_type",
     .type = CFG_STRING,
     .offset = TO(biz_type),
     .help = "default BizType (a task's biz_type wins)"},
    {.key = "max_chars",
     .type = CFG_INT,
     .offset = TO(max_chars),
     .def = "10000",
     .min = 1,
     .max = 1000000,
     .help = "longest content in characters the API takes"},
};
#undef TO

static int tencent_configure(void **state, cfg_t *cfg, bool chosen, char *err, size_t errlen)
{
    tencent_t *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg_bind(cfg, "audit_tencent", tencent_fields,
                 sizeof(tencent_fields) / sizeof(tencent_fields[0]), t, NULL, err, errlen))
        goto fail;
    if (!t->host) {
        const char *p = strstr(t->url, "://");
        p = p ? p + 3 : t->url;
        size_t n = strcspn(p, "/?#");
        if (n == 0 || n >= sizeof(t->host_buf)) {
            snprintf(err, errlen, "audit_tencent.url: no host in \"%s\"", t->url);
            goto fail;
        }
        memcpy(t->host_buf, p, n);
        t->host_buf[n] = '\0';
        t->host = t->host_buf;
    }
    if (chosen && (!t->secret_id || !t->secret_key)) {
        snprintf(err, errlen,
                 "audit_tencent.secret_id and secret_key: required when "
                 "audit.provider is tencent (or IMTASK_AUDIT_TENCENT_SECRET_KEY)");
        goto fail;
    }
    *state = t;
    return 0;
fail:
    free(t);
    return -1;
}

static bool tencent_supports(void *state, audit_kind_t kind)
{
    (void)state;
    return kind == AUDIT_KIND_TEXT; /* TextModeration: images are another API */
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

static int tencent_build(void *state, const audit_input_t *in, int64_t now_ms, audit_req_t *req,
                         char *err, size_t errlen)
{
    tencent_t *t = state;
    audit_buf_t b;
    char auth[512];
    const char *biz = in->biz_type[0] ? in->biz_type : t->biz_type;
    const char *data_id = in->message_id[0] ? in->message_id : in->task_id;
    size_t chars = utf8_chars(in->content, in->content_len);
    int64_t ts = now_ms / 1000;

    if ((int64_t)chars > t->max_chars) {
        snprintf(err, errlen, "content has %zu characters, over the %lld TextModeration takes",
                 chars, (long long)t->max_chars);
        return -1;
    }
    char *b64 = audit_base64(in->content, in->content_len);
    if (!b64) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    audit_buf_init(&b, TENCENT_BODY_MAX);
    audit_buf_puts(&b, "{\"Content\":\"");
    audit_buf_puts(&b, b64);
    audit_buf_puts(&b, "\",\"DataId\":");
    audit_buf_json_string(&b, data_id, strlen(data_id));
    if (biz && *biz) {
        audit_buf_puts(&b, ",\"BizType\":");
        audit_buf_json_string(&b, biz, strlen(biz));
    }
    if (in->sender_id[0]) {
        audit_buf_puts(&b, ",\"User\":{\"UserId\":");
        audit_buf_json_string(&b, in->sender_id, strlen(in->sender_id));
        audit_buf_puts(&b, "}");
    }
    audit_buf_puts(&b, "}");
    free(b64);
    if (b.overflow) {
        audit_buf_free(&b);
        snprintf(err, errlen, "request body over %u bytes", TENCENT_BODY_MAX);
        return -1;
    }
    req->body = audit_buf_take(&b, &req->body_len);
    if (!req->body || audit_tc3_authorization(t->secret_id ? t->secret_id : "",
                                              t->secret_key ? t->secret_key : "", t->service,
                                              t->host, t->action, TENCENT_CONTENT_TYPE, ts,
                                              req->body, req->body_len, auth, sizeof(auth))) {
        snprintf(err, errlen, "cannot sign the request");
        return -1;
    }
    if (audit_req_set_url(req, t->url) ||
        audit_req_add_header(req, "Content-Type: %s", TENCENT_CONTENT_TYPE) ||
        audit_req_add_header(req, "Host: %s", t->host) ||
        audit_req_add_header(req, "X-TC-Action: %s", t->action) ||
        audit_req_add_header(req, "X-TC-Timestamp: %lld", (long long)ts) ||
        audit_req_add_header(req, "X-TC-Version: %s", t->version) ||
        audit_req_add_header(req, "X-TC-Region: %s", t->region) ||
        audit_req_add_header(req, "X-TC-RequestClient: imtask-audit") ||
        audit_req_add_header(req, "Authorization: %s", auth)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static audit_outcome_t tencent_error_outcome(const char *code)
{
    if (strncmp(code, "AuthFailure", 11) == 0 || strncmp(code, "UnauthorizedOperation", 21) == 0)
        return AUDIT_AUTH;
    if (strncmp(code, "RequestLimitExceeded", 20) == 0)
        return AUDIT_THROTTLED;
    if (strncmp(code, "InvalidParameter", 16) == 0 || strncmp(code, "MissingParameter", 16) == 0 ||
        strncmp(code, "LimitExceeded", 13) == 0 || strncmp(code, "UnknownParameter", 16) == 0)
        return AUDIT_REJECTED;
    return AUDIT_UNAVAILABLE;
}

/* Score 0..100 at key of obj; absent: 0. -1 when present but not valid. */
static int tencent_score(const cJSON *obj, double *out)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, "Score");
    *out = 0;
    if (!s || cJSON_IsNull(s))
        return 0;
    if (!cJSON_IsNumber(s) || !(s->valuedouble >= 0 && s->valuedouble <= 100))
        return -1;
    *out = s->valuedouble / 100.0;
    return 0;
}

static int tencent_suggestion(const cJSON *obj, audit_decision_t *d, char *bad, size_t badlen)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, "Suggestion");
    if (!cJSON_IsString(s) || !s->valuestring) {
        snprintf(bad, badlen, "missing or not a string");
        return -1;
    }
    if (strcmp(s->valuestring, "Block") == 0)
        *d = AUDIT_BLOCK;
    else if (strcmp(s->valuestring, "Review") == 0)
        *d = AUDIT_REVIEW;
    else if (strcmp(s->valuestring, "Pass") == 0)
        *d = AUDIT_PASS;
    else {
        snprintf(bad, badlen, "unexpected value \"%.40s\" (want Block, Review or Pass)",
                 s->valuestring);
        return -1;
    }
    return 0;
}

static void tencent_keywords(const cJSON *obj, audit_label_t *l)
{
    const cJSON *kws = cJSON_GetObjectItemCaseSensitive(obj, "Keywords"), *k;
    if (!cJSON_IsArray(kws))
        return;
    cJSON_ArrayForEach(k, kws)
    {
        if (cJSON_IsString(k) && k->valuestring)
            audit_label_add_keyword(l, k->valuestring);
    }
}

static audit_outcome_t tencent_parse(void *state, long status, const char *body, size_t len,
                                     audit_verdict_t *out, char *err, size_t errlen)
{
    audit_outcome_t oc = audit_outcome_of_status(status);
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *resp, *e, *details;
    char label[AUDIT_LABEL_MAX] = "", sub[AUDIT_LABEL_MAX] = "", bad[96];
    double score;
    (void)state;

    memset(out, 0, sizeof(*out));
    resp = root ? cJSON_GetObjectItemCaseSensitive(root, "Response") : NULL;
    if (resp)
        audit_json_path_str(resp, "RequestId", out->request_id, sizeof(out->request_id));
    e = resp ? cJSON_GetObjectItemCaseSensitive(resp, "Error") : NULL;
    if (e) {
        char code[96] = "", msg[200] = "";
        audit_json_path_str(e, "Code", code, sizeof(code));
        audit_json_path_str(e, "Message", msg, sizeof(msg));
        snprintf(err, errlen, "HTTP %ld, Response.Error %s: %s (RequestId %s)", status,
                 code[0] ? code : "(no Code)", msg, out->request_id[0] ? out->request_id : "-");
        oc = code[0] ? tencent_error_outcome(code) : AUDIT_MALFORMED;
        if (oc == AUDIT_OK)
            oc = AUDIT_UNAVAILABLE;
        goto done;
    }
    if (oc != AUDIT_OK) {
        snprintf(err, errlen, "HTTP %ld", status);
        goto done;
    }
    oc = AUDIT_MALFORMED;
    if (!cJSON_IsObject(resp)) {
        snprintf(err, errlen, "Response: missing or not an object%s",
                 root ? "" : " (the body is not JSON)");
        goto done;
    }
    if (tencent_suggestion(resp, &out->decision, bad, sizeof(bad))) {
        snprintf(err, errlen, "Response.Suggestion: %s", bad);
        goto done;
    }
    if (tencent_score(resp, &score)) {
        snprintf(err, errlen, "Response.Score: expected a number in [0, 100]");
        goto done;
    }
    audit_json_path_str(resp, "Label", label, sizeof(label));
    audit_json_path_str(resp, "SubLabel", sub, sizeof(sub));
    if (label[0] || out->decision != AUDIT_PASS) {
        audit_label_t *l = audit_verdict_add_label(out, label[0] ? label : "Unknown", sub, score);
        tencent_keywords(resp, l);
    }
    details = cJSON_GetObjectItemCaseSensitive(resp, "DetailResults");
    if (details && !cJSON_IsNull(details) && !cJSON_IsArray(details)) {
        snprintf(err, errlen, "Response.DetailResults: expected an array");
        goto done;
    }
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, details)
    {
        audit_decision_t dd;
        char dl[AUDIT_LABEL_MAX] = "", ds[AUDIT_LABEL_MAX] = "";
        double dsc;
        if (!cJSON_IsObject(d)) {
            snprintf(err, errlen, "Response.DetailResults[%d]: expected an object", i);
            goto done;
        }
        if (tencent_score(d, &dsc)) {
            snprintf(err, errlen,
                     "Response.DetailResults[%d].Score: expected a number in "
                     "[0, 100]",
                     i);
            goto done;
        }
        audit_json_path_str(d, "Label", dl, sizeof(dl));
        audit_json_path_str(d, "SubLabel", ds, sizeof(ds));
        /* a detail is worth a label when it is not a plain pass of the main label */
        bool pass = tencent_suggestion(d, &dd, bad, sizeof(bad)) == 0 && dd == AUDIT_PASS;
        if (dl[0] && !pass && !(strcmp(dl, label) == 0 && strcmp(ds, sub) == 0)) {
            audit_label_t *l = audit_verdict_add_label(out, dl, ds, dsc);
            tencent_keywords(d, l);
        }
        i++;
    }
    oc = AUDIT_OK;
done:
    cJSON_Delete(root);
    return oc;
}

static void tencent_destroy(void *state)
{
    free(state);
}

static const char *tencent_endpoint(void *state)
{
    return ((tencent_t *)state)->url;
}

const audit_provider_t audit_provider_tencent = {
    .name = "tencent",
    .configure = tencent_configure,
    .supports = tencent_supports,
    .build = tencent_build,
    .parse = tencent_parse,
    .destroy = tencent_destroy,
    .endpoint = tencent_endpoint,
};
