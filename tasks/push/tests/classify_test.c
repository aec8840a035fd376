/* classify_test.c: the answer classification tables of APNs and FCM, row by
 * row, with Retry-After as seconds and as a date. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/push/apns.h"
#include "tasks/push/fcm.h"
#include "tasks/push/retry_after.h"

#define NOW_MS 1767225600000LL
#define MAX_RA (600 * 1000LL)

static push_verdict_t classify(int fcm, long status, const char *body, const char *ra,
                               push_h2_err_t terr)
{
    push_h2_req_t r;
    push_verdict_t v;
    memset(&r, 0, sizeof(r));
    memset(&v, 0, sizeof(v));
    r.status = status;
    r.err = terr;
    if (body) {
        r.resp = strdup(body);
        r.resp_len = strlen(body);
    }
    snprintf(r.retry_after, sizeof(r.retry_after), "%s", ra ? ra : "");
    if (fcm)
        push_fcm_classify(&r, NOW_MS, MAX_RA, &v);
    else
        push_apns_classify(&r, NOW_MS, MAX_RA, &v);
    free(r.resp);
    return v;
}

static push_verdict_t apns(long status, const char *reason, const char *ra)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"reason\":\"%s\",\"timestamp\":1767225000000}", reason);
    return classify(0, status, reason ? body : NULL, ra, PUSH_H2_OK);
}

static void expect(push_verdict_t v, push_outcome_t o, const char *reason)
{
    if (v.outcome != o || strcmp(v.reason, reason) != 0)
        fail_msg("got %s/%s, want %s/%s", push_outcome_name(v.outcome), v.reason,
                 push_outcome_name(o), reason);
}

static void test_apns_table(void **state)
{
    (void)state;
    expect(classify(0, 200, NULL, NULL, PUSH_H2_OK), PUSH_OK, "ok");
    /* the token is dead: removed, never retried */
    expect(apns(400, "BadDeviceToken", NULL), PUSH_INVALID_TOKEN, "BadDeviceToken");
    expect(apns(400, "DeviceTokenNotForTopic", NULL), PUSH_INVALID_TOKEN, "DeviceTokenNotForTopic");
    expect(apns(410, "Unregistered", NULL), PUSH_INVALID_TOKEN, "Unregistered");
    expect(apns(410, "ExpiredToken", NULL), PUSH_INVALID_TOKEN, "ExpiredToken");
    expect(apns(410, "SomethingNew", NULL), PUSH_INVALID_TOKEN, "http_410");
    /* our provider token */
    expect(apns(403, "ExpiredProviderToken", NULL), PUSH_AUTH_EXPIRED, "ExpiredProviderToken");
    /* later */
    expect(apns(429, "TooManyRequests", NULL), PUSH_TRANSIENT, "TooManyRequests");
    expect(apns(429, "TooManyProviderTokenUpdates", NULL), PUSH_TRANSIENT,
           "TooManyProviderTokenUpdates");
    expect(apns(500, "InternalServerError", NULL), PUSH_TRANSIENT, "InternalServerError");
    expect(apns(503, "ServiceUnavailable", NULL), PUSH_TRANSIENT, "ServiceUnavailable");
    expect(apns(503, "Shutdown", NULL), PUSH_TRANSIENT, "Shutdown");
    expect(classify(0, 502, "<html>bad gateway</html>", NULL, PUSH_H2_OK), PUSH_TRANSIENT,
           "http_502");
    /* never */
    const char *perm[] = {"PayloadTooLarge",
                          "TopicDisallowed",
                          "BadTopic",
                          "Forbidden",
                          "InvalidProviderToken",
                          "MissingProviderToken",
                          "BadCollapseId",
                          "BadPriority",
                          "BadExpirationDate",
                          "MissingTopic",
                          NULL};
    for (int i = 0; perm[i]; i++)
        expect(apns(i < 3 ? 400 : 403, perm[i], NULL), PUSH_PERMANENT, perm[i]);
    expect(classify(0, 400, "not json", NULL, PUSH_H2_OK), PUSH_PERMANENT, "http_400");
    expect(classify(0, 404, NULL, NULL, PUSH_H2_OK), PUSH_PERMANENT, "http_404");
}

static void test_transport(void **state)
{
    (void)state;
    expect(classify(0, 0, NULL, NULL, PUSH_H2_E_CONNECT), PUSH_TRANSIENT, "connect");
    expect(classify(1, 0, NULL, NULL, PUSH_H2_E_TIMEOUT), PUSH_TRANSIENT, "timeout");
    expect(classify(0, 0, NULL, NULL, PUSH_H2_E_TLS), PUSH_TRANSIENT, "tls");
    expect(classify(1, 0, NULL, NULL, PUSH_H2_E_CANCELLED), PUSH_TRANSIENT, "not_sent");
    expect(classify(0, 0, NULL, NULL, PUSH_H2_E_RESET), PUSH_TRANSIENT, "reset");
    expect(classify(0, 0, NULL, NULL, PUSH_H2_E_CLOSED), PUSH_TRANSIENT, "closed");
    expect(classify(1, 0, NULL, NULL, PUSH_H2_E_PROTOCOL), PUSH_TRANSIENT, "protocol");
}

static void test_retry_after(void **state)
{
    char date[32];
    (void)state;
    push_verdict_t v = apns(429, "TooManyRequests", "7");
    assert_int_equal(v.retry_after_ms, 7000);
    v = apns(503, "ServiceUnavailable", NULL);
    assert_int_equal(v.retry_after_ms, -1);
    push_http_date(NOW_MS / 1000 + 42, date);
    v = apns(503, "ServiceUnavailable", date);
    assert_int_equal(v.retry_after_ms, 42000);
    v = apns(429, "TooManyRequests", "86400"); /* capped */
    assert_int_equal(v.retry_after_ms, MAX_RA);
    v = apns(429, "TooManyRequests", "soon"); /* ignored */
    assert_int_equal(v.retry_after_ms, -1);
    v = apns(400, "BadDeviceToken", "5"); /* only transient answers wait */
    assert_int_equal(v.retry_after_ms, -1);
    v = classify(1, 429,
                 "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{"
                 "\"@type\":\"type.googleapis.com/google.firebase.fcm.v1.FcmError\","
                 "\"errorCode\":\"QUOTA_EXCEEDED\"}]}}",
                 date, PUSH_H2_OK);
    expect(v, PUSH_TRANSIENT, "QUOTA_EXCEEDED");
    assert_int_equal(v.retry_after_ms, 42000);
}

static push_verdict_t fcm(long status, const char *st, const char *code)
{
    char body[512];
    if (code)
        snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":%ld,\"message\":\"m\",\"status\":\"%s\",\"details\":[{"
                 "\"@type\":\"type.googleapis.com/google.rpc.BadRequest\"},{\"@type\":"
                 "\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"%s\"}"
                 "]}}",
                 status, st, code);
    else
        snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":%ld,\"message\":\"m\",\"status\":\"%s\"}}", status, st);
    return classify(1, status, body, NULL, PUSH_H2_OK);
}

static void test_fcm_table(void **state)
{
    (void)state;
    expect(classify(1, 200, "{\"name\":\"projects/p/messages/1\"}", NULL, PUSH_H2_OK), PUSH_OK,
           "ok");
    expect(fcm(404, "NOT_FOUND", "UNREGISTERED"), PUSH_INVALID_TOKEN, "UNREGISTERED");
    expect(fcm(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), PUSH_INVALID_TOKEN,
           "SENDER_ID_MISMATCH");
    expect(fcm(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), PUSH_PERMANENT, "INVALID_ARGUMENT");
    expect(fcm(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), PUSH_PERMANENT,
           "THIRD_PARTY_AUTH_ERROR");
    expect(fcm(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), PUSH_TRANSIENT, "QUOTA_EXCEEDED");
    expect(fcm(503, "UNAVAILABLE", "UNAVAILABLE"), PUSH_TRANSIENT, "UNAVAILABLE");
    expect(fcm(500, "INTERNAL", "INTERNAL"), PUSH_TRANSIENT, "INTERNAL");
    /* our access token: refresh once */
    expect(fcm(401, "UNAUTHENTICATED", NULL), PUSH_AUTH_EXPIRED, "UNAUTHENTICATED");
    expect(classify(1, 401, NULL, NULL, PUSH_H2_OK), PUSH_AUTH_EXPIRED, "UNAUTHENTICATED");
    /* no FcmError: the status decides, never a removal */
    expect(fcm(404, "NOT_FOUND", NULL), PUSH_PERMANENT, "NOT_FOUND");
    expect(fcm(503, "UNAVAILABLE", NULL), PUSH_TRANSIENT, "UNAVAILABLE");
    expect(fcm(500, "weird status!", NULL), PUSH_TRANSIENT, "http_500");
    expect(fcm(400, "INVALID_ARGUMENT", "UNSPECIFIED_ERROR"), PUSH_PERMANENT, "INVALID_ARGUMENT");
    expect(classify(1, 503, NULL, NULL, PUSH_H2_OK), PUSH_TRANSIENT, "http_503");
}

static void test_apns_tokens_and_uuid(void **state)
{
    char a[40], b[40], c[40];
    (void)state;
    assert_true(push_apns_token_ok("0123456789abcdefABCDEF"));
    assert_true(push_apns_token_ok("BadDeviceToken-t1-0001"));
    assert_false(push_apns_token_ok(""));
    assert_false(push_apns_token_ok("abc/../x"));
    assert_false(push_apns_token_ok("abc def"));
    push_uuid_for("task-1", "tok", a);
    push_uuid_for("task-1", "tok", b);
    push_uuid_for("task-2", "tok", c);
    assert_string_equal(a, b); /* the same notification to the same device */
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '8'); /* version */
    assert_true(strchr("89ab", a[19]) != NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apns_table),           cmocka_unit_test(test_transport),
        cmocka_unit_test(test_retry_after),          cmocka_unit_test(test_fcm_table),
        cmocka_unit_test(test_apns_tokens_and_uuid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
