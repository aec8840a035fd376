/* providers_test.c: the three provider shapes (generic, Tencent TMS, OpenAI)
 * build requests and parse real-looking answers, including ones with missing,
 * unexpected or wrongly typed fields (a clear error naming the field, never
 * a crash); TC3-HMAC-SHA256 against a vector computed independently (Python
 * hmac); the JSON helpers; random bytes through every parser. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/config.h"
#include "tasks/audit/jsonutil.h"
#include "tasks/audit/provider.h"
#include "tasks/audit/tc3.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
    const audit_provider_t *p;
    void *st;
    cfg_t *cfg;
} prov_t;

static void prov_open(prov_t *pv, const audit_provider_t *p, const char *yaml)
{
    char err[CFG_ERR_MAX];
    pv->p = p;
    pv->cfg = cfg_load_string(yaml ? yaml : "", "test.yaml", err, sizeof(err));
    if (!pv->cfg)
        fail_msg("yaml: %s", err);
    if (p->configure(&pv->st, pv->cfg, true, err, sizeof(err)))
        fail_msg("configure %s: %s", p->name, err);
}

static void prov_close(prov_t *pv)
{
    pv->p->destroy(pv->st);
    cfg_destroy(pv->cfg);
}

/* configure must fail with err containing want */
static void prov_bad_config(const audit_provider_t *p, const char *yaml, const char *want)
{
    char err[CFG_ERR_MAX] = "";
    void *st = NULL;
    cfg_t *cfg = cfg_load_string(yaml, "test.yaml", err, sizeof(err));
    assert_non_null(cfg);
    int rc = p->configure(&st, cfg, true, err, sizeof(err));
    if (rc == 0) {
        p->destroy(st);
        cfg_destroy(cfg);
        fail_msg("configure %s accepted: %s", p->name, yaml);
    }
    cfg_destroy(cfg);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not mention \"%s\"", err, want);
}

static audit_outcome_t parse(prov_t *pv, long status, const char *body, audit_verdict_t *v,
                             char *err, size_t errlen)
{
    err[0] = '\0';
    return pv->p->parse(pv->st, status, body, strlen(body), v, err, errlen);
}

#define EXPECT_ERR(pv, status, body, outcome, needle)                                              \
    do {                                                                                           \
        audit_verdict_t v_;                                                                        \
        char e_[256];                                                                              \
        audit_outcome_t o_ = parse(pv, status, body, &v_, e_, sizeof(e_));                         \
        if (o_ != (outcome))                                                                       \
            fail_msg("%s: outcome %s, want %s (err \"%s\") for %s", (pv)->p->name,                 \
                     audit_outcome_name(o_), audit_outcome_name(outcome), e_, body);               \
        if (!strstr(e_, needle))                                                                   \
            fail_msg("%s: error \"%s\" does not mention \"%s\"", (pv)->p->name, e_, needle);       \
    } while (0)

static const audit_input_t *input(const char *text, audit_kind_t kind)
{
    static audit_input_t in;
    in = (audit_input_t){.content = text,
                         .content_len = strlen(text),
                         .kind = kind,
                         .task_id = "task-1",
                         .message_id = "m42",
                         .sender_id = "u7",
                         .conversation_id = "group:g1",
                         .biz_type = "",
                         .trace_id = "0af7651916cd43dd8448eb211c80319c"};
    return &in;
}

/* ---- OpenAI -------------------------------------------------------------- */

static const char openai_flagged[] =
    "{\"id\":\"modr-0d9740456c391e43c445bf0f010940c7\",\"model\":\"omni-moderation-latest\","
    "\"results\":[{\"flagged\":true,\"categories\":{\"harassment\":true,"
    "\"harassment/threatening\":true,\"sexual\":false,\"hate\":false,\"hate/threatening\":false,"
    "\"illicit\":false,\"illicit/violent\":false,\"self-harm/intent\":false,"
    "\"self-harm/instructions\":false,\"self-harm\":false,\"sexual/minors\":false,"
    "\"violence\":true,\"violence/graphic\":false},\"category_scores\":{\"harassment\":"
    "0.8189693396524255,\"harassment/threatening\":0.804985420696006,\"sexual\":"
    "1.1735807305272752e-05,\"hate\":0.007879603287666309,\"hate/threatening\":"
    "0.004576210909020681,\"illicit\":0.030679743510812267,\"illicit/violent\":"
    "0.008185278103758604,\"self-harm/intent\":0.00023011512838150326,"
    "\"self-harm/instructions\":0.0002333421223966647,\"self-harm\":0.012425095442961098,"
    "\"sexual/minors\":7.229961594064725e-06,\"violence\":0.9011140463652592,"
    "\"violence/graphic\":1.1235328063870752e-05},\"category_applied_input_types\":{"
    "\"harassment\":[\"text\"],\"violence\":[\"text\"]}}]}";

static void test_openai_build(void **state)
{
    prov_t pv;
    audit_req_t req = {0};
    char err[256];
    (void)state;
    prov_open(&pv, &audit_provider_openai,
              "audit_openai:\n  url: http://h/v1/moderations\n  api_key: sk-test-123\n");
    assert_int_equal(
        pv.p->build(pv.st, input("he said \"hi\"\n", AUDIT_KIND_TEXT), 0, &req, err, sizeof(err)),
        0);
    assert_string_equal(req.url, "http://h/v1/moderations");
    assert_string_equal(audit_req_header(&req, "authorization"), "Bearer sk-test-123");
    assert_string_equal(
        req.body, "{\"model\":\"omni-moderation-latest\",\"input\":\"he said \\\"hi\\\"\\n\"}");
    audit_req_free(&req);
    assert_int_equal(pv.p->build(pv.st, input("https://img/x.png", AUDIT_KIND_IMAGE_URL), 0, &req,
                                 err, sizeof(err)),
                     0);
    assert_non_null(strstr(req.body, "[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                                     "\"https://img/x.png\"}}]"));
    audit_req_free(&req);
    prov_close(&pv);
}

static void test_openai_decisions(void **state)
{
    prov_t pv;
    audit_verdict_t v;
    char err[256];
    (void)state;
    prov_open(&pv, &audit_provider_openai, NULL); /* block *=0.8, review *=0.4 */
    assert_int_equal(parse(&pv, 200, openai_flagged, &v, err, sizeof(err)), AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_BLOCK);
    assert_string_equal(v.request_id, "modr-0d9740456c391e43c445bf0f010940c7");
    assert_true(v.nlabels >= 3);
    assert_string_equal(v.labels[0].label, "harassment");
    assert_true(v.labels[0].score > 0.81 && v.labels[0].score < 0.82);
    prov_close(&pv);

    /* per-category thresholds: violence blocks only at 0.95, others review at 0.5 */
    prov_open(&pv, &audit_provider_openai,
              "audit_openai:\n  block_thresholds: [violence=0.95, harassment=0.9, "
              "harassment/threatening=0.9]\n  review_thresholds: ['*=0.5']\n  flagged: ignore\n");
    assert_int_equal(parse(&pv, 200, openai_flagged, &v, err, sizeof(err)), AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_REVIEW);
    prov_close(&pv);

    /* low scores, flagged false: pass, no labels; unknown extra fields ignored */
    prov_open(&pv, &audit_provider_openai, NULL);
    assert_int_equal(parse(&pv, 200,
                           "{\"id\":\"modr-1\",\"model\":\"m\",\"extra\":{\"x\":[1,2]},"
                           "\"results\":[{\"flagged\":false,\"categories\":{\"hate\":false},"
                           "\"category_scores\":{\"hate\":0.01,\"brand-new\":0.02},"
                           "\"unexpected\":null}]}",
                           &v, err, sizeof(err)),
                     AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_PASS);
    assert_int_equal(v.nlabels, 0);
    /* flagged true but low scores: at least review (flagged: review) */
    assert_int_equal(parse(&pv, 200,
                           "{\"id\":\"modr-2\",\"results\":[{\"flagged\":true,"
                           "\"category_scores\":{\"hate\":0.1}}]}",
                           &v, err, sizeof(err)),
                     AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_REVIEW);
    assert_string_equal(v.labels[0].label, "flagged");
    prov_close(&pv);
}

static void test_openai_errors(void **state)
{
    prov_t pv;
    (void)state;
    prov_open(&pv, &audit_provider_openai, NULL);
    EXPECT_ERR(&pv, 200, "{\"id\":\"x\"}", AUDIT_MALFORMED, "results");
    EXPECT_ERR(&pv, 200, "{\"results\":[]}", AUDIT_MALFORMED, "results");
    EXPECT_ERR(&pv, 200, "{\"results\":{}}", AUDIT_MALFORMED, "results");
    EXPECT_ERR(&pv, 200, "{\"results\":[{\"flagged\":false}]}", AUDIT_MALFORMED,
               "results[0].category_scores");
    EXPECT_ERR(&pv, 200, "{\"results\":[{\"category_scores\":{\"hate\":\"high\"}}]}",
               AUDIT_MALFORMED, "category_scores.hate");
    EXPECT_ERR(&pv, 200, "{\"results\":[{\"category_scores\":{\"hate\":1.5}}]}", AUDIT_MALFORMED,
               "[0, 1]");
    EXPECT_ERR(&pv, 200, "{\"results\":[{\"flagged\":\"yes\",\"category_scores\":{}}]}",
               AUDIT_MALFORMED, "flagged");
    EXPECT_ERR(&pv, 200, "[1,2,3]", AUDIT_MALFORMED, "not a JSON object");
    EXPECT_ERR(&pv, 200, "<html>bad gateway</html>", AUDIT_MALFORMED, "not a JSON object");
    EXPECT_ERR(&pv, 200, "", AUDIT_MALFORMED, "not a JSON object");
    EXPECT_ERR(&pv, 429,
               "{\"error\":{\"message\":\"Rate limit reached for requests\",\"type\":"
               "\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}",
               AUDIT_THROTTLED, "rate_limit_exceeded: Rate limit reached");
    EXPECT_ERR(&pv, 401,
               "{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":"
               "\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
               AUDIT_AUTH, "invalid_api_key");
    EXPECT_ERR(&pv, 400,
               "{\"error\":{\"message\":\"bad input\",\"type\":\"invalid_request_error\"}}",
               AUDIT_REJECTED, "HTTP 400 invalid_request_error: bad input");
    EXPECT_ERR(&pv, 503, "upstream connect error", AUDIT_UNAVAILABLE, "HTTP 503");
    EXPECT_ERR(&pv, 200, "{\"error\":{\"message\":\"internal\"}}", AUDIT_UNAVAILABLE, "internal");
    prov_close(&pv);
    prov_bad_config(&audit_provider_openai, "audit_openai:\n  block_thresholds: [hate]\n",
                    "expected category=score");
    prov_bad_config(&audit_provider_openai, "audit_openai:\n  review_thresholds: ['hate=2']\n",
                    "in [0, 1]");
}

/* ---- Tencent ------------------------------------------------------------- */

static const char tencent_block[] =
    "{\"Response\":{\"BizType\":\"1001\",\"DataId\":\"m42\",\"Suggestion\":\"Block\","
    "\"Label\":\"Porn\",\"SubLabel\":\"SexualBehavior\",\"Score\":87,\"Keywords\":[\"kw1\","
    "\"kw2\"],\"DetailResults\":[{\"Label\":\"Porn\",\"Suggestion\":\"Block\",\"Keywords\":"
    "[\"kw1\"],\"Score\":87,\"LibType\":2,\"LibId\":\"lib-1\",\"LibName\":\"custom\","
    "\"SubLabel\":\"SexualBehavior\",\"Tags\":[],\"HitInfos\":[]},{\"Label\":\"Abuse\","
    "\"Suggestion\":\"Review\",\"Keywords\":[\"kw3\"],\"Score\":61,\"SubLabel\":\"\"},"
    "{\"Label\":\"Ad\",\"Suggestion\":\"Pass\",\"Score\":3}],\"RiskDetails\":[],\"Extra\":\"\","
    "\"ContextText\":\"\",\"SentimentAnalysis\":null,\"HitType\":\"\","
    "\"RequestId\":\"8e3a3d82-6a4f-4a36-9b65-2a4b2f5dbe77\"}}";

static void test_tencent_build_and_sign(void **state)
{
    prov_t pv;
    audit_req_t req = {0};
    char err[256], want[512];
    (void)state;
    prov_open(&pv, &audit_provider_tencent,
              "audit_tencent:\n  url: https://tms.tencentcloudapi.com\n  secret_id: AKIDtest\n"
              "  secret_key: testkey\n  biz_type: im_default\n");
    assert_int_equal(pv.p->build(pv.st, input("hello", AUDIT_KIND_TEXT), 1700000000123LL, &req, err,
                                 sizeof(err)),
                     0);
    assert_string_equal(req.body, "{\"Content\":\"aGVsbG8=\",\"DataId\":\"m42\",\"BizType\":"
                                  "\"im_default\",\"User\":{\"UserId\":\"u7\"}}");
    assert_string_equal(audit_req_header(&req, "X-TC-Action"), "TextModeration");
    assert_string_equal(audit_req_header(&req, "X-TC-Version"), "2020-12-29");
    assert_string_equal(audit_req_header(&req, "X-TC-Timestamp"), "1700000000");
    assert_string_equal(audit_req_header(&req, "Host"), "tms.tencentcloudapi.com");
    assert_int_equal(audit_tc3_authorization("AKIDtest", "testkey", "tms",
                                             "tms.tencentcloudapi.com", "TextModeration",
                                             "application/json; charset=utf-8", 1700000000,
                                             req.body, req.body_len, want, sizeof(want)),
                     0);
    assert_string_equal(audit_req_header(&req, "Authorization"), want);
    audit_req_free(&req);
    /* images are another API: not supported; too long content refused */
    assert_false(pv.p->supports(pv.st, AUDIT_KIND_IMAGE_URL));
    char *longtext = malloc(10002);
    memset(longtext, 'a', 10001);
    longtext[10001] = '\0';
    assert_int_not_equal(
        pv.p->build(pv.st, input(longtext, AUDIT_KIND_TEXT), 0, &req, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "10001 characters"));
    audit_req_free(&req);
    free(longtext);
    prov_close(&pv);
    prov_bad_config(&audit_provider_tencent, "audit_tencent:\n  secret_id: x\n", "secret_key");
}

/* The vector: Python's hmac/hashlib over the same canonical request
 * (tests/audit/providers_test.c's comment in docs/audit.md shows the script). */
static void test_tc3_vector(void **state)
{
    char out[512];
    const char body[] = "{\"Content\":\"aGVsbG8=\"}";
    (void)state;
    assert_int_equal(audit_tc3_authorization("AKIDtest", "testkey", "tms",
                                             "tms.tencentcloudapi.com", "TextModeration",
                                             "application/json; charset=utf-8", 1700000000, body,
                                             strlen(body), out, sizeof(out)),
                     0);
    assert_string_equal(out, "TC3-HMAC-SHA256 Credential=AKIDtest/2023-11-14/tms/tc3_request, "
                             "SignedHeaders=content-type;host;x-tc-action, "
                             "Signature=5324c4b921df221b451dbf426cc6f95d35f9999426f25543c60738e72f6"
                             "215ae");
    assert_int_equal(audit_tc3_authorization("AKIDtest", "testkey", "tms", "h", NULL, "c", 0, body,
                                             strlen(body), out, 20),
                     -1);
}

static void test_tencent_parse(void **state)
{
    prov_t pv;
    audit_verdict_t v;
    char err[256];
    (void)state;
    prov_open(&pv, &audit_provider_tencent, "audit_tencent:\n  secret_id: a\n  secret_key: b\n");
    assert_int_equal(parse(&pv, 200, tencent_block, &v, err, sizeof(err)), AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_BLOCK);
    assert_string_equal(v.request_id, "8e3a3d82-6a4f-4a36-9b65-2a4b2f5dbe77");
    assert_int_equal(v.nlabels, 2); /* Porn (main), Abuse (detail); the Ad pass is not a label */
    assert_string_equal(v.labels[0].label, "Porn");
    assert_string_equal(v.labels[0].sub_label, "SexualBehavior");
    assert_true(v.labels[0].score > 0.869 && v.labels[0].score < 0.871);
    assert_int_equal(v.labels[0].nkeywords, 2);
    assert_string_equal(v.labels[0].keywords[1], "kw2");
    assert_string_equal(v.labels[1].label, "Abuse");

    assert_int_equal(
        parse(&pv, 200,
              "{\"Response\":{\"Suggestion\":\"Pass\",\"Label\":\"Normal\",\"Score\":0,"
              "\"RequestId\":\"r1\"}}",
              &v, err, sizeof(err)),
        AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_PASS);
    assert_int_equal(parse(&pv, 200,
                           "{\"Response\":{\"Suggestion\":\"Review\",\"RequestId\":\"r2\","
                           "\"Keywords\":null,\"DetailResults\":null,\"NewField\":{\"a\":1}}}",
                           &v, err, sizeof(err)),
                     AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_REVIEW);
    assert_string_equal(v.labels[0].label, "Unknown");

    EXPECT_ERR(&pv, 200, "{\"Response\":{\"Label\":\"Porn\",\"RequestId\":\"r\"}}", AUDIT_MALFORMED,
               "Response.Suggestion: missing");
    EXPECT_ERR(&pv, 200, "{\"Response\":{\"Suggestion\":\"Maybe\"}}", AUDIT_MALFORMED,
               "unexpected value \"Maybe\"");
    EXPECT_ERR(&pv, 200, "{\"Response\":{\"Suggestion\":\"Block\",\"Score\":\"87\"}}",
               AUDIT_MALFORMED, "Response.Score");
    EXPECT_ERR(&pv, 200, "{\"Response\":{\"Suggestion\":\"Block\",\"Score\":187}}", AUDIT_MALFORMED,
               "Response.Score");
    EXPECT_ERR(&pv, 200, "{\"Response\":{\"Suggestion\":\"Block\",\"DetailResults\":{}}}",
               AUDIT_MALFORMED, "DetailResults");
    EXPECT_ERR(&pv, 200, "{\"Response\":{\"Suggestion\":\"Block\",\"DetailResults\":[3]}}",
               AUDIT_MALFORMED, "DetailResults[0]");
    EXPECT_ERR(&pv, 200, "{\"response\":{}}", AUDIT_MALFORMED, "Response: missing");
    EXPECT_ERR(&pv, 200, "not json", AUDIT_MALFORMED, "not JSON");
    EXPECT_ERR(&pv, 200,
               "{\"Response\":{\"Error\":{\"Code\":\"AuthFailure.SignatureFailure\",\"Message\":"
               "\"The provided credentials could not be validated.\"},\"RequestId\":\"e1\"}}",
               AUDIT_AUTH, "AuthFailure.SignatureFailure");
    EXPECT_ERR(&pv, 200,
               "{\"Response\":{\"Error\":{\"Code\":\"RequestLimitExceeded\",\"Message\":\"x\"},"
               "\"RequestId\":\"e2\"}}",
               AUDIT_THROTTLED, "RequestLimitExceeded");
    EXPECT_ERR(&pv, 200,
               "{\"Response\":{\"Error\":{\"Code\":\"InvalidParameterValue.ErrTextContentLen\","
               "\"Message\":\"x\"},\"RequestId\":\"e3\"}}",
               AUDIT_REJECTED, "ErrTextContentLen");
    EXPECT_ERR(&pv, 200,
               "{\"Response\":{\"Error\":{\"Code\":\"InternalError\",\"Message\":\"x\"}}}",
               AUDIT_UNAVAILABLE, "InternalError");
    EXPECT_ERR(&pv, 200, "{\"Response\":{\"Error\":{\"Message\":\"no code\"}}}", AUDIT_MALFORMED,
               "(no Code)");
    EXPECT_ERR(&pv, 502, "<html>Bad Gateway</html>", AUDIT_UNAVAILABLE, "HTTP 502");
    prov_close(&pv);
}

/* ---- generic ------------------------------------------------------------- */

static const char generic_yaml[] =
    "audit_generic:\n"
    "  url: http://h/check\n"
    "  headers: ['X-Tenant: gochat']\n"
    "  api_key: k-123\n"
    "  api_key_prefix: 'Bearer '\n"
    "  body_template: '{\"text\":{{content}},\"id\":{{data_id}},\"user\":{{ sender_id }},"
    "\"b64\":{{content_base64}}}'\n"
    "  decision_path: data.results[0].suggestion\n"
    "  pass_values: [PASS, ok]\n"
    "  review_values: [REVIEW, suspect]\n"
    "  block_values: [BLOCK, reject]\n"
    "  score_path: data.results[0].rate\n"
    "  score_scale: 100\n"
    "  labels_path: data.results[0].hits\n"
    "  label_field: name\n"
    "  label_score_field: rate\n"
    "  request_id_path: meta.req\n"
    "  error_path: err\n";

static void test_generic_build(void **state)
{
    prov_t pv;
    audit_req_t req = {0};
    char err[256];
    (void)state;
    prov_open(&pv, &audit_provider_generic, generic_yaml);
    assert_int_equal(pv.p->build(pv.st, input("a\"b\\c\x01 \xe4\xbd\xa0 \xff", AUDIT_KIND_TEXT), 0,
                                 &req, err, sizeof(err)),
                     0);
    assert_string_equal(req.body, "{\"text\":\"a\\\"b\\\\c\\u0001 \xe4\xbd\xa0 \\ufffd\","
                                  "\"id\":\"m42\",\"user\":\"u7\",\"b64\":\"YSJiXGMBIOS9oCD/\"}");
    assert_string_equal(audit_req_header(&req, "X-Tenant"), "gochat");
    assert_string_equal(audit_req_header(&req, "Authorization"), "Bearer k-123");
    audit_req_free(&req);
    prov_close(&pv);
    prov_bad_config(&audit_provider_generic,
                    "audit_generic:\n  url: u\n  decision_path: d\n  body_template: "
                    "'{\"t\":{{text}}}'\n",
                    "unknown placeholder {{text}}");
    prov_bad_config(&audit_provider_generic,
                    "audit_generic:\n  url: u\n  decision_path: d\n  body_template: "
                    "'{\"t\":\"{{content}}\"}'\n",
                    "does not render to valid JSON");
    prov_bad_config(&audit_provider_generic,
                    "audit_generic:\n  decision_by_score: true\n  review_score: 0.9\n"
                    "  block_score: 0.5\n",
                    "review_score must not exceed block_score");
    prov_bad_config(&audit_provider_generic,
                    "audit_generic:\n  url: u\n  decision_path: d\n  headers: [nocolon]\n",
                    "Name: value");
}

static void test_generic_parse(void **state)
{
    prov_t pv;
    audit_verdict_t v;
    char err[256];
    (void)state;
    prov_open(&pv, &audit_provider_generic, generic_yaml);
    assert_int_equal(parse(&pv, 200,
                           "{\"meta\":{\"req\":\"abc-1\",\"took\":12},\"data\":{\"results\":[{"
                           "\"suggestion\":\"reject\",\"rate\":93,\"hits\":[{\"name\":\"gamble\","
                           "\"rate\":93,\"extra\":true},\"spam\"]}]},\"err\":null}",
                           &v, err, sizeof(err)),
                     AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_BLOCK);
    assert_string_equal(v.request_id, "abc-1");
    assert_int_equal(v.nlabels, 2);
    assert_string_equal(v.labels[0].label, "gamble");
    assert_true(v.labels[0].score > 0.929 && v.labels[0].score < 0.931);
    assert_string_equal(v.labels[1].label, "spam");
    /* numbers as request ids; case-insensitive values; no labels */
    assert_int_equal(parse(&pv, 200,
                           "{\"meta\":{\"req\":12345},\"data\":{\"results\":[{\"suggestion\":"
                           "\"Suspect\"}]}}",
                           &v, err, sizeof(err)),
                     AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_REVIEW);
    assert_string_equal(v.request_id, "12345");

    EXPECT_ERR(&pv, 200, "{\"data\":{\"results\":[]}}", AUDIT_MALFORMED,
               "data.results[0].suggestion: missing");
    EXPECT_ERR(&pv, 200, "{\"data\":{\"results\":[{\"suggestion\":\"maybe\"}]}}", AUDIT_MALFORMED,
               "unexpected value \"maybe\"");
    EXPECT_ERR(&pv, 200, "{\"data\":{\"results\":[{\"suggestion\":{\"a\":1}}]}}", AUDIT_MALFORMED,
               "not a string");
    EXPECT_ERR(&pv, 200, "{\"data\":{\"results\":[{\"suggestion\":\"ok\",\"rate\":\"x\"}]}}",
               AUDIT_MALFORMED, "data.results[0].rate");
    EXPECT_ERR(&pv, 200, "{\"data\":{\"results\":[{\"suggestion\":\"ok\",\"hits\":\"x\"}]}}",
               AUDIT_MALFORMED, "expected an array");
    EXPECT_ERR(&pv, 200, "{\"data\":{\"results\":[{\"suggestion\":\"ok\",\"hits\":[{\"n\":1}]}]}}",
               AUDIT_MALFORMED, "hits[0].name");
    EXPECT_ERR(&pv, 200, "{\"data\":{\"results\":[{\"suggestion\":\"ok\",\"hits\":[[1]]}]}}",
               AUDIT_MALFORMED, "hits[0]: expected a string or an object");
    EXPECT_ERR(&pv, 200, "{\"err\":\"quota exceeded\"}", AUDIT_UNAVAILABLE, "quota exceeded");
    EXPECT_ERR(&pv, 200, "{\"err\":{\"message\":\"backend down\"}}", AUDIT_UNAVAILABLE,
               "backend down");
    EXPECT_ERR(&pv, 200, "{{{", AUDIT_MALFORMED, "not JSON");
    EXPECT_ERR(&pv, 429, "{\"err\":\"slow down\"}", AUDIT_THROTTLED, "HTTP 429: slow down");
    EXPECT_ERR(&pv, 500, "", AUDIT_UNAVAILABLE, "HTTP 500");
    EXPECT_ERR(&pv, 403, "", AUDIT_AUTH, "HTTP 403");
    EXPECT_ERR(&pv, 422, "{\"err\":\"text too long\"}", AUDIT_REJECTED, "text too long");
    EXPECT_ERR(&pv, 302, "", AUDIT_MALFORMED, "HTTP 302");
    prov_close(&pv);

    /* decided by score alone */
    prov_open(&pv, &audit_provider_generic,
              "audit_generic:\n  url: u\n  score_path: risk\n  review_score: 0.3\n"
              "  block_score: 0.8\n  decision_by_score: true\n");
    assert_int_equal(parse(&pv, 200, "{\"risk\":0.5}", &v, err, sizeof(err)), AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_REVIEW);
    assert_string_equal(v.labels[0].label, "score");
    assert_int_equal(parse(&pv, 200, "{\"risk\":0.85}", &v, err, sizeof(err)), AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_BLOCK);
    assert_int_equal(parse(&pv, 200, "{\"risk\":0.1}", &v, err, sizeof(err)), AUDIT_OK);
    assert_int_equal(v.decision, AUDIT_PASS);
    EXPECT_ERR(&pv, 200, "{\"other\":1}", AUDIT_MALFORMED, "risk: missing");
    prov_close(&pv);
}

/* ---- robustness: random and truncated input through every parser -------- */

static void test_fuzz(void **state)
{
    const audit_provider_t *ps[] = {&audit_provider_generic, &audit_provider_tencent,
                                    &audit_provider_openai};
    const char *yamls[] = {generic_yaml, "audit_tencent:\n  secret_id: a\n  secret_key: b\n", NULL};
    const char *samples[] = {openai_flagged, tencent_block,
                             "{\"meta\":{\"req\":\"a\"},\"data\":{\"results\":[{\"suggestion\":"
                             "\"ok\",\"hits\":[\"x\",{\"name\":\"y\"}]}]}}"};
    unsigned seed = 7;
    char buf[4096], err[256];
    audit_verdict_t v;
    (void)state;
    for (size_t p = 0; p < 3; p++) {
        prov_t pv;
        prov_open(&pv, ps[p], yamls[p]);
        for (size_t s = 0; s < 3; s++) {
            size_t n = strlen(samples[s]);
            for (size_t cut = 0; cut <= n; cut++) { /* every prefix */
                memcpy(buf, samples[s], cut);
                buf[cut] = '\0';
                pv.p->parse(pv.st, 200, buf, cut, &v, err, sizeof(err));
            }
            for (int i = 0; i < 3000; i++) { /* random byte flips */
                memcpy(buf, samples[s], n + 1);
                for (int k = 0; k < 4; k++)
                    buf[(size_t)rand_r(&seed) % n] = (char)(rand_r(&seed) & 0xff);
                pv.p->parse(pv.st, 200, buf, n, &v, err, sizeof(err));
            }
        }
        prov_close(&pv);
    }
}

/* ---- JSON helpers ---------------------------------------------------------- */

static void test_jsonutil(void **state)
{
    audit_buf_t b;
    char out[16];
    (void)state;
    audit_buf_init(&b, 8);
    assert_int_equal(audit_buf_puts(&b, "1234567"), 0);
    assert_int_equal(audit_buf_puts(&b, "8"), -1); /* max includes the NUL */
    assert_true(b.overflow);
    audit_buf_free(&b);

    cJSON *j = cJSON_Parse("{\"a\":{\"b\":[1,{\"c\":\"x\"}]},\"n\":3}");
    assert_string_equal(audit_json_path(j, "a.b[1].c")->valuestring, "x");
    assert_null(audit_json_path(j, "a.b[2]"));
    assert_null(audit_json_path(j, "a.b.c"));
    assert_null(audit_json_path(j, "a[0]"));
    assert_null(audit_json_path(j, "a.b[x]"));
    assert_ptr_equal(audit_json_path(j, ""), j);
    assert_int_equal(audit_json_path_str(j, "n", out, sizeof(out)), 0);
    assert_string_equal(out, "3");
    cJSON_Delete(j);

    audit_copy_utf8(out, 6, "ab\xe4\xbd\xa0\xe5\xa5\xbd"); /* never cut a sequence */
    assert_string_equal(out, "ab\xe4\xbd\xa0");
    audit_copy_utf8(out, 5, "ab\xe4\xbd\xa0");
    assert_string_equal(out, "ab");
    char *b64 = audit_base64("hello", 5);
    assert_string_equal(b64, "aGVsbG8=");
    free(b64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_build),  cmocka_unit_test(test_openai_decisions),
        cmocka_unit_test(test_openai_errors), cmocka_unit_test(test_tencent_build_and_sign),
        cmocka_unit_test(test_tc3_vector),    cmocka_unit_test(test_tencent_parse),
        cmocka_unit_test(test_generic_build), cmocka_unit_test(test_generic_parse),
        cmocka_unit_test(test_fuzz),          cmocka_unit_test(test_jsonutil),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
