/* provider_generic.c: any JSON-over-HTTP moderation API, described in config:
 * a request body template and where the answer keeps its decision, score,
 * labels and request id.
 *
 *   audit_generic:
 *     url: https://moderation.example.com/v1/check
 *     headers: ["X-Tenant: gochat"]
 *     api_key: ...                       # sent as <api_key_header>: <prefix><key>
 *     body_template: '{"text":{{content}},"id":{{data_id}},"user":{{sender_id}}}'
 *     decision_path: result.suggestion   # or decision_by_score: true
 *     pass_values: [pass]
 *     review_values: [review]
 *     block_values: [block]
 *     score_path: result.score           # scaled by 1/score_scale to 0..1
 *     labels_path: result.labels         # strings, or objects with label_field
 *     request_id_path: request_id
 *     error_path: error                  # present and not null in a 2xx: an error
 *
 * Placeholders of the template are replaced by JSON strings (quotes
 * included): {{content}} {{content_base64}} {{kind}} {{task_id}}
 * {{message_id}} {{data_id}} (message id, else task id) {{sender_id}}
 * {{conversation_id}} {{biz_type}} {{trace_id}}. The template is checked at
 * start: unknown placeholders and a result that is not JSON are errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsonutil.h"
#include "provider.h"

#define GENERIC_BODY_MAX (8u << 20)

typedef struct {
    const char *url;
    cfg_list_t headers;
    const char *api_key;
    const char *api_key_header;
    const char *api_key_prefix;
    const char *body_template;
    const char *decision_path;
    cfg_list_t pass_values, review_values, block_values;
    const char *score_path;
    double score_scale;
    double review_score, block_score;
    const char *labels_path;
    const char *label_field;
    const char *label_score_field;
    const char *request_id_path;
    const char *error_path;
    bool image_urls;
    bool by_score;
} generic_t;

#define GO(k) offsetof(generic_t, k)
static const cfg_field_t generic_fields[] = {
    {.key = "url",
     .type = CFG_STRING,
     .offset = GO(url),
     .def = AUDIT_GENERIC_DEFAULT_URL,
     .help = "the endpoint (default: the local stack's moderation double)"},
    {.key = "headers",
     .type = CFG_LIST,
     .offset = GO(headers),
     .help = "extra request headers, \"Name: value\" each"},
    {.key = "api_key",
     .type = CFG_STRING,
     .offset = GO(api_key),
     .flags = CFG_SECRET,
     .help = "a credential sent in api_key_header (unset: none)"},
    {.key = "api_key_header",
     .type = CFG_STRING,
     .offset = GO(api_key_header),
     .def = "Authorization",
     .help = "the header carrying api_key"},
    {.key = "api_key_prefix",
     .type = CFG_STRING,
     .offset = GO(api_key_prefix),
     .help = "text before the key in its header (e.g. \"Bearer \")"},
    {.key = "body_template",
     .type = CFG_STRING,
     .offset = GO(body_template),
     .def = "{\"content\":{{content}},\"kind\":{{kind}},\"data_id\":{{data_id}},"
            "\"user_id\":{{sender_id}}}",
     .help = "the JSON request body with {{placeholders}}"},
    {.key = "decision_path",
     .type = CFG_STRING,
     .offset = GO(decision_path),
     .def = "result.decision",
     .help = "path of the decision in the answer"},
    {.key = "decision_by_score",
     .type = CFG_BOOL,
     .offset = GO(by_score),
     .def = "false",
     .help = "ignore decision_path: score_path with review_score/block_score decides"},
    {.key = "pass_values",
     .type = CFG_LIST,
     .offset = GO(pass_values),
     .def = "pass",
     .help = "decision values meaning pass (case-insensitive)"},
    {.key = "review_values",
     .type = CFG_LIST,
     .offset = GO(review_values),
     .def = "review",
     .help = "decision values meaning review"},
    {.key = "block_values",
     .type = CFG_LIST,
     .offset = GO(block_values),
     .def = "block",
     .help = "decision values meaning block"},
    {.key = "score_path",
     .type = CFG_STRING,
     .offset = GO(score_path),
     .def = "result.score",
     .help = "path of the overall score (optional in answers)"},
    {.key = "score_scale",
     .type = CFG_DOUBLE,
     .offset = GO(score_scale),
     .def = "1",
     .min = 1e-9,
     .max = 1e9,
     .help = "scores are divided by this to make 0..1 (100 for percent)"},
    {.key = "review_score",
     .type = CFG_DOUBLE,
     .offset = GO(review_score),
     .def = "0.5",
     .min = 0,
     .max = 1,
     .help = "without decision_path: score (0..1) from which to review"},
    {.key = "block_score",
     .type = CFG_DOUBLE,
     .offset = GO(block_score),
     .def = "0.9",
     .min = 0,
     .max = 1,
     .help = "without decision_path: score (0..1) from which to block"},
    {.key = "labels_path",
     .type = CFG_STRING,
     .offset = GO(labels_path),
     .def = "result.labels",
     .help = "path of the labels array (strings or objects)"},
    {.key = "label_field",
     .type = CFG_STRING,
     .offset = GO(label_field),
     .def = "label",
     .help = "the label of an object in the labels array"},
    {.key = "label_score_field",
     .type = CFG_STRING,
     .offset = GO(label_score_field),
     .def = "score",
     .help = "its score (scaled like score_path)"},
    {.key = "request_id_path",
     .type = CFG_STRING,
     .offset = GO(request_id_path),
     .def = "request_id",
     .help = "path of the provider's request id"},
    {.key = "error_path",
     .type = CFG_STRING,
     .offset = GO(error_path),
     .def = "error",
     .help = "path whose presence (not null) in a 2xx answer means an error"},
    {.key = "image_urls",
     .type = CFG_BOOL,
     .offset = GO(image_urls),
     .def = "true",
     .help = "whether the API judges image URLs ({{kind}} tells it which it got)"},
};
#undef GO

static const char *const generic_placeholders[] = {
    "content",   "content_base64",  "kind",     "task_id",  "message_id", "data_id",
    "sender_id", "conversation_id", "biz_type", "trace_id", NULL,
};

/* The value of placeholder name for in, or NULL when unknown; *n its length;
 * *owned set when the caller must free it. */
static const char *generic_value(const char *name, size_t namelen, const audit_input_t *in,
                                 size_t *n, char **owned)
{
    const char *v = NULL;
    *owned = NULL;
#define IS(s) (namelen == strlen(s) && strncmp(name, s, namelen) == 0)
    if (IS("content")) {
        *n = in->content_len;
        return in->content;
    }
    if (IS("content_base64")) {
        *owned = audit_base64(in->content, in->content_len);
        v = *owned ? *owned : "";
    } else if (IS("kind"))
        v = audit_kind_name(in->kind);
    else if (IS("task_id"))
        v = in->task_id;
    else if (IS("message_id"))
        v = in->message_id;
    else if (IS("data_id"))
        v = in->message_id[0] ? in->message_id : in->task_id;
    else if (IS("sender_id"))
        v = in->sender_id;
    else if (IS("conversation_id"))
        v = in->conversation_id;
    else if (IS("biz_type"))
        v = in->biz_type;
    else if (IS("trace_id"))
        v = in->trace_id;
#undef IS
    if (v)
        *n = strlen(v);
    return v;
}

static int generic_render(const char *tpl, const audit_input_t *in, audit_buf_t *b, char *err,
                          size_t errlen)
{
    const char *p = tpl;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            audit_buf_puts(b, p);
            break;
        }
        audit_buf_append(b, p, (size_t)(open - p));
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            snprintf(err, errlen, "body_template: \"{{\" without \"}}\"");
            return -1;
        }
        const char *name = open + 2;
        size_t namelen = (size_t)(close - name);
        while (namelen && *name == ' ')
            name++, namelen--;
        while (namelen && name[namelen - 1] == ' ')
            namelen--;
        size_t n;
        char *owned;
        const char *v = generic_value(name, namelen, in, &n, &owned);
        if (!v) {
            snprintf(err, errlen,
                     "body_template: unknown placeholder {{%.*s}} (known: content, "
                     "content_base64, kind, task_id, message_id, data_id, sender_id, "
                     "conversation_id, biz_type, trace_id)",
                     (int)(namelen > 40 ? 40 : namelen), name);
            return -1;
        }
        audit_buf_json_string(b, v, n);
        free(owned);
        p = close + 2;
    }
    if (b->overflow) {
        snprintf(err, errlen, "request body over %zu bytes", b->max);
        return -1;
    }
    return 0;
}

static int generic_configure(void **state, cfg_t *cfg, bool chosen, char *err, size_t errlen)
{
    generic_t *g = calloc(1, sizeof(*g));
    audit_buf_t b;
    const audit_input_t probe = {.content = "probe \"text\"",
                                 .content_len = 12,
                                 .kind = AUDIT_KIND_TEXT,
                                 .task_id = "t",
                                 .message_id = "m",
                                 .sender_id = "u",
                                 .conversation_id = "c",
                                 .biz_type = "",
                                 .trace_id = ""};
    (void)generic_placeholders;
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg_bind(cfg, "audit_generic", generic_fields,
                 sizeof(generic_fields) / sizeof(generic_fields[0]), g, NULL, err, errlen))
        goto fail;
    for (size_t i = 0; i < g->headers.count; i++) {
        const char *h = g->headers.items[i], *colon = strchr(h, ':');
        if (!colon || colon == h || strchr(h, '\n') || strchr(h, '\r')) {
            snprintf(err, errlen, "audit_generic.headers: expected \"Name: value\", got \"%s\"", h);
            goto fail;
        }
    }
    if (g->headers.count + 3 > AUDIT_REQ_MAX_HEADERS) {
        snprintf(err, errlen, "audit_generic.headers: at most %d", AUDIT_REQ_MAX_HEADERS - 3);
        goto fail;
    }
    audit_buf_init(&b, GENERIC_BODY_MAX);
    if (generic_render(g->body_template, &probe, &b, err, errlen)) {
        char inner[CFG_ERR_MAX];
        snprintf(inner, sizeof(inner), "%s", err);
        snprintf(err, errlen, "audit_generic.%s", inner);
        audit_buf_free(&b);
        goto fail;
    }
    cJSON *j = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
    audit_buf_free(&b);
    if (!j) {
        snprintf(err, errlen,
                 "audit_generic.body_template: does not render to valid JSON "
                 "(placeholders become quoted strings: write {{content}}, not "
                 "\"{{content}}\")");
        goto fail;
    }
    cJSON_Delete(j);
    if (g->by_score)
        g->decision_path = NULL;
    if (!g->decision_path && g->review_score > g->block_score) {
        snprintf(err, errlen, "audit_generic: review_score must not exceed block_score");
        goto fail;
    }
    if (chosen && !g->decision_path && !g->score_path) {
        snprintf(err, errlen, "audit_generic: decision_path or score_path is needed");
        goto fail;
    }
    *state = g;
    return 0;
fail:
    free(g);
    return -1;
}

static bool generic_supports(void *state, audit_kind_t kind)
{
    generic_t *g = state;
    return kind == AUDIT_KIND_TEXT || g->image_urls;
}

static int generic_build(void *state, const audit_input_t *in, int64_t now_ms, audit_req_t *req,
                         char *err, size_t errlen)
{
    generic_t *g = state;
    audit_buf_t b;
    (void)now_ms;
    audit_buf_init(&b, GENERIC_BODY_MAX);
    if (generic_render(g->body_template, in, &b, err, errlen)) {
        audit_buf_free(&b);
        return -1;
    }
    req->body = audit_buf_take(&b, &req->body_len);
    if (!req->body || audit_req_set_url(req, g->url) ||
        audit_req_add_header(req, "Content-Type: application/json"))
        goto nomem;
    for (size_t i = 0; i < g->headers.count; i++) {
        if (audit_req_add_header(req, "%s", g->headers.items[i]))
            goto nomem;
    }
    if (g->api_key && audit_req_add_header(req, "%s: %s%s", g->api_key_header,
                                           g->api_key_prefix ? g->api_key_prefix : "", g->api_key))
        goto nomem;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static bool generic_in(const cfg_list_t *l, const char *v)
{
    for (size_t i = 0; i < l->count; i++) {
        if (strcasecmp(l->items[i], v) == 0)
            return true;
    }
    return false;
}

/* Scalar at node as text: strings, numbers, booleans. */
static int generic_scalar(const cJSON *n, char *out, size_t outlen)
{
    if (cJSON_IsString(n) && n->valuestring)
        audit_copy_utf8(out, outlen, n->valuestring);
    else if (cJSON_IsNumber(n))
        snprintf(out, outlen, "%.17g", n->valuedouble);
    else if (cJSON_IsBool(n))
        snprintf(out, outlen, "%s", cJSON_IsTrue(n) ? "true" : "false");
    else
        return -1;
    return 0;
}

static int generic_score(const generic_t *g, const cJSON *n, double *out)
{
    if (!cJSON_IsNumber(n))
        return -1;
    double v = n->valuedouble / g->score_scale;
    if (!(v >= 0 && v <= 1))
        return -1;
    *out = v;
    return 0;
}

static audit_outcome_t generic_parse(void *state, long status, const char *body, size_t len,
                                     audit_verdict_t *out, char *err, size_t errlen)
{
    generic_t *g = state;
    audit_outcome_t oc = audit_outcome_of_status(status);
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *n;
    char v[AUDIT_LABEL_MAX];
    double score = 0;
    bool have_score = false;

    memset(out, 0, sizeof(*out));
    if (root && g->request_id_path)
        audit_json_path_str(root, g->request_id_path, out->request_id, sizeof(out->request_id));
    if (oc != AUDIT_OK) {
        char msg[200] = "";
        n = root && g->error_path ? audit_json_path(root, g->error_path) : NULL;
        if (n && generic_scalar(n, msg, sizeof(msg)) != 0 && cJSON_IsObject(n))
            audit_json_path_str(n, "message", msg, sizeof(msg));
        snprintf(err, errlen, "HTTP %ld%s%s", status, msg[0] ? ": " : "", msg);
        goto done;
    }
    oc = AUDIT_MALFORMED;
    if (!root) {
        snprintf(err, errlen, "HTTP %ld: the body is not JSON", status);
        goto done;
    }
    n = g->error_path ? audit_json_path(root, g->error_path) : NULL;
    if (n && !cJSON_IsNull(n) && !cJSON_IsFalse(n)) {
        char msg[200] = "";
        if (generic_scalar(n, msg, sizeof(msg)) != 0 && cJSON_IsObject(n))
            audit_json_path_str(n, "message", msg, sizeof(msg));
        snprintf(err, errlen, "HTTP %ld with %s: %s", status, g->error_path,
                 msg[0] ? msg : "(an error object)");
        oc = AUDIT_UNAVAILABLE;
        goto done;
    }
    if (g->score_path) {
        n = audit_json_path(root, g->score_path);
        if (n && !cJSON_IsNull(n)) {
            if (generic_score(g, n, &score)) {
                snprintf(err, errlen, "%s: expected a number in [0, %g]", g->score_path,
                         g->score_scale);
                goto done;
            }
            have_score = true;
        }
    }
    if (g->decision_path) {
        n = audit_json_path(root, g->decision_path);
        if (!n || generic_scalar(n, v, sizeof(v))) {
            snprintf(err, errlen, "%s: missing or not a string", g->decision_path);
            goto done;
        }
        if (generic_in(&g->block_values, v))
            out->decision = AUDIT_BLOCK;
        else if (generic_in(&g->review_values, v))
            out->decision = AUDIT_REVIEW;
        else if (generic_in(&g->pass_values, v))
            out->decision = AUDIT_PASS;
        else {
            snprintf(err, errlen, "%s: unexpected value \"%s\"", g->decision_path, v);
            goto done;
        }
    } else {
        if (!have_score) {
            snprintf(err, errlen, "%s: missing (it decides: no decision_path)", g->score_path);
            goto done;
        }
        out->decision = score >= g->block_score    ? AUDIT_BLOCK
                        : score >= g->review_score ? AUDIT_REVIEW
                                                   : AUDIT_PASS;
    }
    n = g->labels_path ? audit_json_path(root, g->labels_path) : NULL;
    if (n && !cJSON_IsNull(n)) {
        const cJSON *it;
        int i = 0;
        if (!cJSON_IsArray(n)) {
            snprintf(err, errlen, "%s: expected an array", g->labels_path);
            goto done;
        }
        cJSON_ArrayForEach(it, n)
        {
            if (cJSON_IsString(it) && it->valuestring) {
                audit_verdict_add_label(out, it->valuestring, "", score);
            } else if (cJSON_IsObject(it)) {
                const cJSON *ln = cJSON_GetObjectItemCaseSensitive(it, g->label_field);
                const cJSON *sn = cJSON_GetObjectItemCaseSensitive(it, g->label_score_field);
                double ls = score;
                if (!cJSON_IsString(ln) || !ln->valuestring) {
                    snprintf(err, errlen, "%s[%d].%s: missing or not a string", g->labels_path, i,
                             g->label_field);
                    goto done;
                }
                if (sn && !cJSON_IsNull(sn) && generic_score(g, sn, &ls)) {
                    snprintf(err, errlen, "%s[%d].%s: expected a number in [0, %g]", g->labels_path,
                             i, g->label_score_field, g->score_scale);
                    goto done;
                }
                audit_verdict_add_label(out, ln->valuestring, "", ls);
            } else {
                snprintf(err, errlen, "%s[%d]: expected a string or an object", g->labels_path, i);
                goto done;
            }
            i++;
        }
    }
    if (out->nlabels == 0 && have_score && out->decision != AUDIT_PASS)
        audit_verdict_add_label(out, "score", "", score);
    oc = AUDIT_OK;
done:
    cJSON_Delete(root);
    return oc;
}

static void generic_destroy(void *state)
{
    free(state);
}

static const char *generic_endpoint(void *state)
{
    return ((generic_t *)state)->url;
}

const audit_provider_t audit_provider_generic = {
    .name = "generic",
    .configure = generic_configure,
    .supports = generic_supports,
    .build = generic_build,
    .parse = generic_parse,
    .destroy = generic_destroy,
    .endpoint = generic_endpoint,
};
