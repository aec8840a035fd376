/* provider_openai.c: a provider shaped like OpenAI's moderation endpoint
 * (POST /v1/moderations). The answer has no decision, only category scores:
 * thresholds per category in config decide (block first, then review).
 *
 *   audit_openai:
 *     url: https://api.openai.com/v1/moderations
 *     api_key: ...                      # Authorization: Bearer
 *     model: omni-moderation-latest
 *     block_thresholds: ["sexual/minors=0.2", "*=0.8"]
 *     review_thresholds: ["*=0.4"]
 *     flagged: review                   # what "flagged": true is at least
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"
#include "provider.h"

#define OPENAI_MAX_THRESHOLDS 64
#define OPENAI_CATEGORY_MAX 64
#define OPENAI_BODY_MAX (8u << 20)

typedef struct {
    char category[OPENAI_CATEGORY_MAX]; /* "*": every category not named */
    double threshold;
} openai_thr_t;

typedef struct {
    const char *url;
    const char *api_key;
    const char *model;
    cfg_list_t block_list, review_list;
    int flagged; /* 0 review, 1 block, 2 ignore */
    openai_thr_t block[OPENAI_MAX_THRESHOLDS], review[OPENAI_MAX_THRESHOLDS];
    size_t nblock, nreview;
} openai_t;

static const char *const openai_flagged_choices[] = {"review", "block", "ignore", NULL};

#define OO(k) offsetof(openai_t, k)
static const cfg_field_t openai_fields[] = {
    {.key = "url",
     .type = CFG_STRING,
     .offset = OO(url),
     .def = "https://api.openai.com/v1/moderations",
     .help = "the moderation endpoint"},
    {.key = "api_key",
     .type = CFG_STRING,
     .offset = OO(api_key),
     .flags = CFG_SECRET,
     .help = "sent as Authorization: Bearer (unset: no Authorization header)"},
    {.key = "model",
     .type = CFG_STRING,
     .offset = OO(model),
     .def = "omni-moderation-latest",
     .help = "the model field of the request"},
    {.key = "block_thresholds",
     .type = CFG_LIST,
     .offset = OO(block_list),
     .def = "sexual/minors=0.2,*=0.8",
     .help = "category=score at or above which content is blocked; * is every other category"},
    {.key = "review_thresholds",
     .type = CFG_LIST,
     .offset = OO(review_list),
     .def = "*=0.4",
     .help = "category=score at or above which content goes to review"},
    {.key = "flagged",
     .type = CFG_ENUM,
     .offset = OO(flagged),
     .def = "review",
     .choices = openai_flagged_choices,
     .help = "the least decision when the answer says flagged: review, block or ignore"},
};
#undef OO

static int openai_parse_thresholds(const char *key, const cfg_list_t *l, openai_thr_t *out,
                                   size_t *n, char *err, size_t errlen)
{
    *n = 0;
    for (size_t i = 0; i < l->count; i++) {
        const char *item = l->items[i], *eq = strrchr(item, '=');
        char *end;
        if (*n >= OPENAI_MAX_THRESHOLDS) {
            snprintf(err, errlen, "audit_openai.%s: more than %d thresholds", key,
                     OPENAI_MAX_THRESHOLDS);
            return -1;
        }
        if (!eq || eq == item || (size_t)(eq - item) >= OPENAI_CATEGORY_MAX) {
            snprintf(err, errlen, "audit_openai.%s: expected category=score, got \"%s\"", key,
                     item);
            return -1;
        }
        errno = 0;
        double v = strtod(eq + 1, &end);
        if (errno || end == eq + 1 || *end || !(v >= 0 && v <= 1)) {
            snprintf(err, errlen, "audit_openai.%s: score of \"%s\" must be a number in [0, 1]",
                     key, item);
            return -1;
        }
        memcpy(out[*n].category, item, (size_t)(eq - item));
        out[*n].category[eq - item] = '\0';
        out[*n].threshold = v;
        (*n)++;
    }
    return 0;
}

static int openai_configure(void **state, cfg_t *cfg, bool chosen, char *err, size_t errlen)
{
    openai_t *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg_bind(cfg, "audit_openai", openai_fields,
                 sizeof(openai_fields) / sizeof(openai_fields[0]), o, NULL, err, errlen) ||
        openai_parse_thresholds("block_thresholds", &o->block_list, o->block, &o->nblock, err,
                                errlen) ||
        openai_parse_thresholds("review_thresholds", &o->review_list, o->review, &o->nreview, err,
                                errlen)) {
        free(o);
        return -1;
    }
    if (chosen && (!o->url || !*o->url)) {
        snprintf(err, errlen, "audit_openai.url: required when audit.provider is openai");
        free(o);
        return -1;
    }
    *state = o;
    return 0;
}

static bool openai_supports(void *state, audit_kind_t kind)
{
    (void)state;
    (void)kind;
    return true; /* text and image_url inputs */
}

static int openai_build(void *state, const audit_input_t *in, int64_t now_ms, audit_req_t *req,
                        char *err, size_t errlen)
{
    openai_t *o = state;
    audit_buf_t b;
    (void)now_ms;
    audit_buf_init(&b, OPENAI_BODY_MAX);
    audit_buf_puts(&b, "{\"model\":");
    audit_buf_json_string(&b, o->model, strlen(o->model));
    if (in->kind == AUDIT_KIND_IMAGE_URL) {
        audit_buf_puts(&b, ",\"input\":[{\"type\":\"image_url\",\"image_url\":{\"url\":");
        audit_buf_json_string(&b, in->content, in->content_len);
        audit_buf_puts(&b, "}}]}");
    } else {
        audit_buf_puts(&b, ",\"input\":");
        audit_buf_json_string(&b, in->content, in->content_len);
        audit_buf_puts(&b, "}");
    }
    if (b.overflow) {
        audit_buf_free(&b);
        snprintf(err, errlen, "request body over %u bytes", OPENAI_BODY_MAX);
        return -1;
    }
    req->body = audit_buf_take(&b, &req->body_len);
    if (!req->body || audit_req_set_url(req, o->url) ||
        audit_req_add_header(req, "Content-Type: application/json") ||
        (o->api_key && *o->api_key &&
         audit_req_add_header(req, "Authorization: Bearer %s", o->api_key))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static double openai_threshold(const openai_thr_t *t, size_t n, const char *category)
{
    double star = INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].category, category) == 0)
            return t[i].threshold;
        if (strcmp(t[i].category, "*") == 0)
            star = t[i].threshold;
    }
    return star;
}

/* The error of a non-2xx answer: {"error":{"message","type","code"}}. */
static void openai_error_text(const cJSON *root, long status, char *err, size_t errlen)
{
    char msg[200] = "", code[64] = "";
    if (root) {
        audit_json_path_str(root, "error.message", msg, sizeof(msg));
        if (audit_json_path_str(root, "error.code", code, sizeof(code)) != 0)
            audit_json_path_str(root, "error.type", code, sizeof(code));
    }
    snprintf(err, errlen, "HTTP %ld%s%s%s%s", status, code[0] ? " " : "", code, msg[0] ? ": " : "",
             msg);
}

static audit_outcome_t openai_parse(void *state, long status, const char *body, size_t len,
                                    audit_verdict_t *out, char *err, size_t errlen)
{
    openai_t *o = state;
    audit_outcome_t oc = audit_outcome_of_status(status);
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *results, *r;
    int idx = 0;

    memset(out, 0, sizeof(*out));
    out->decision = AUDIT_PASS;
    if (oc != AUDIT_OK) {
        openai_error_text(root, status, err, errlen);
        goto done;
    }
    oc = AUDIT_MALFORMED;
    if (!root || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "HTTP %ld: the body is not a JSON object", status);
        goto done;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "error")) {
        openai_error_text(root, status, err, errlen);
        oc = AUDIT_UNAVAILABLE;
        goto done;
    }
    audit_json_path_str(root, "id", out->request_id, sizeof(out->request_id));
    results = cJSON_GetObjectItemCaseSensitive(root, "results");
    if (!cJSON_IsArray(results) || cJSON_GetArraySize(results) == 0) {
        snprintf(err, errlen, "results: missing or not a non-empty array");
        goto done;
    }
    cJSON_ArrayForEach(r, results)
    {
        const cJSON *scores = cJSON_GetObjectItemCaseSensitive(r, "category_scores");
        const cJSON *flagged = cJSON_GetObjectItemCaseSensitive(r, "flagged");
        const cJSON *cats = cJSON_GetObjectItemCaseSensitive(r, "categories");
        const cJSON *s;
        if (!cJSON_IsObject(r) || !cJSON_IsObject(scores)) {
            snprintf(err, errlen, "results[%d].category_scores: missing or not an object", idx);
            goto done;
        }
        if (flagged && !cJSON_IsBool(flagged)) {
            snprintf(err, errlen, "results[%d].flagged: expected true or false", idx);
            goto done;
        }
        cJSON_ArrayForEach(s, scores)
        {
            if (!cJSON_IsNumber(s) || !(s->valuedouble >= 0 && s->valuedouble <= 1)) {
                snprintf(err, errlen,
                         "results[%d].category_scores.%.64s: expected a number in "
                         "[0, 1]",
                         idx, s->string ? s->string : "?");
                goto done;
            }
            double v = s->valuedouble;
            const cJSON *cat = cats ? cJSON_GetObjectItemCaseSensitive(cats, s->string) : NULL;
            bool hit = false;
            if (v >= openai_threshold(o->block, o->nblock, s->string)) {
                out->decision = AUDIT_BLOCK;
                hit = true;
            } else if (v >= openai_threshold(o->review, o->nreview, s->string)) {
                if (out->decision < AUDIT_REVIEW)
                    out->decision = AUDIT_REVIEW;
                hit = true;
            }
            if (hit || cJSON_IsTrue(cat))
                audit_verdict_add_label(out, s->string, "", v);
        }
        if (cJSON_IsTrue(flagged) && o->flagged != 2) {
            audit_decision_t least = o->flagged == 1 ? AUDIT_BLOCK : AUDIT_REVIEW;
            if (out->decision < least)
                out->decision = least;
            if (out->nlabels == 0)
                audit_verdict_add_label(out, "flagged", "", 1.0);
        }
        idx++;
    }
    oc = AUDIT_OK;
done:
    cJSON_Delete(root);
    return oc;
}

static void openai_destroy(void *state)
{
    free(state);
}

static const char *openai_endpoint(void *state)
{
    return ((openai_t *)state)->url;
}

const audit_provider_t audit_provider_openai = {
    .name = "openai",
    .configure = openai_configure,
    .supports = openai_supports,
    .build = openai_build,
    .parse = openai_parse,
    .destroy = openai_destroy,
    .endpoint = openai_endpoint,
};
