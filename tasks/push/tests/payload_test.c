/* payload_test.c: APNs payloads and FCM messages: valid JSON always, every
 * field where the providers want it, and shortening to 4096 bytes on UTF-8
 * boundaries with multi-byte text (never the JSON cut). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/push/payload.h"

/* A notification with the given texts and n_data custom entries. */
typedef struct {
    Imtask__V1__PushNotification n;
    Imtask__V1__PushNotification__DataEntry e[8];
    Imtask__V1__PushNotification__DataEntry *ep[8];
} note_t;

static void note_init(note_t *t, const char *title, const char *body)
{
    memset(t, 0, sizeof(*t));
    imtask__v1__push_notification__init(&t->n);
    t->n.title = (char *)title;
    t->n.body = (char *)body;
    t->n.conversation_id = (char *)"c42";
    t->n.sender_id = (char *)"u7";
    t->n.message_id = (char *)"m1001";
    t->n.data = t->ep;
}

static void note_data(note_t *t, const char *k, const char *v)
{
    size_t i = t->n.n_data++;
    imtask__v1__push_notification__data_entry__init(&t->e[i]);
    t->e[i].key = (char *)k;
    t->e[i].value = (char *)v;
    t->ep[i] = &t->e[i];
}

/* Valid UTF-8 (strict), as the JSON parser's output must be. */
static int utf8_valid(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        int n = *u < 0x80 ? 1 : (*u >> 5) == 6 ? 2 : (*u >> 4) == 14 ? 3 : (*u >> 3) == 30 ? 4 : 0;
        if (!n)
            return 0;
        for (int i = 1; i < n; i++) {
            if ((u[i] & 0xC0) != 0x80)
                return 0;
        }
        u += n;
    }
    return 1;
}

static char *repeat(const char *unit, size_t times)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * times] = '\0';
    return s;
}

static const char *jstr(const cJSON *o, const char *path1, const char *path2, const char *path3)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, path1);
    if (path2)
        x = cJSON_GetObjectItemCaseSensitive(x, path2);
    if (path3)
        x = cJSON_GetObjectItemCaseSensitive(x, path3);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static void test_utf8_cut(void **state)
{
    (void)state;
    const char *s = "a\xE4\xB8\xAD"
                    "b\xF0\x9F\x98\x80"; /* a 中 b 😀 */
    size_t len = strlen(s);
    assert_int_equal(push_utf8_cut(s, len, 0), 0);
    assert_int_equal(push_utf8_cut(s, len, 1), 1);
    assert_int_equal(push_utf8_cut(s, len, 2), 1); /* inside 中 */
    assert_int_equal(push_utf8_cut(s, len, 3), 1);
    assert_int_equal(push_utf8_cut(s, len, 4), 4);
    assert_int_equal(push_utf8_cut(s, len, 5), 5);
    assert_int_equal(push_utf8_cut(s, len, 6), 5); /* inside 😀 */
    assert_int_equal(push_utf8_cut(s, len, 8), 5);
    assert_int_equal(push_utf8_cut(s, len, 9), 9);
    assert_int_equal(push_utf8_cut(s, len, 100), 9);
}

static void test_json_escaping_and_bad_utf8(void **state)
{
    push_buf_t b = {0};
    (void)state;
    const char in[] = "q\"b\\n\n\x01\x7f ok \xE4\xB8\xAD bad:\xC3\x28 \xED\xA0\x80 end\xE4";
    push_buf_json_str(&b, in, sizeof(in) - 1);
    assert_false(b.overflow);
    assert_int_equal(b.len, push_json_str_len(in, sizeof(in) - 1));
    cJSON *j = cJSON_Parse(b.data);
    assert_non_null(j);
    assert_true(cJSON_IsString(j));
    assert_true(utf8_valid(j->valuestring));
    assert_non_null(strstr(j->valuestring, "q\"b\\n\n\x01\x7f ok \xE4\xB8\xAD bad:"));
    assert_non_null(strstr(j->valuestring, "\xEF\xBF\xBD(")); /* C3 28 -> FFFD ( */
    cJSON_Delete(j);
    push_buf_free(&b);
}

static void test_apns_fields(void **state)
{
    note_t t;
    push_buf_t b = {0};
    push_fit_t fit;
    char err[256];
    push_apns_opts_t o = {.max_bytes = PUSH_APNS_MAX_PAYLOAD};
    (void)state;
    note_init(&t, "Alice", "hello \"world\"");
    t.n.badge_set_case = IMTASK__V1__PUSH_NOTIFICATION__BADGE_SET_BADGE;
    t.n.badge = 0; /* set to 0: clears the badge, so it must be written */
    t.n.sound = (char *)"default";
    t.n.seq_id = 77;
    note_data(&t, "k1", "v1");
    note_data(&t, "aps", "must not replace aps");
    note_data(&t, "message_id", "must not replace ours");
    note_data(&t, "k1", "duplicate");
    assert_int_equal(push_payload_apns(&t.n, &o, &b, &fit, err, sizeof(err)), 0);
    assert_false(fit.truncated);
    cJSON *j = cJSON_Parse(b.data);
    assert_non_null(j);
    assert_string_equal(jstr(j, "aps", "alert", "title"), "Alice");
    assert_string_equal(jstr(j, "aps", "alert", "body"), "hello \"world\"");
    assert_string_equal(jstr(j, "aps", "sound", NULL), "default");
    assert_string_equal(jstr(j, "aps", "thread-id", NULL), "c42");
    const cJSON *badge = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "aps"), "badge");
    assert_true(cJSON_IsNumber(badge) && badge->valueint == 0);
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "aps"), "content-available"));
    assert_string_equal(jstr(j, "message_id", NULL, NULL), "m1001");
    assert_string_equal(jstr(j, "k1", NULL, NULL), "v1");
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(j, "aps")));
    assert_int_equal(cJSON_GetArraySize(j), 6); /* aps, conversation, sender, message, seq, k1 */
    cJSON_Delete(j);

    /* no texts: a background push */
    note_init(&t, "", "");
    assert_int_equal(push_payload_apns(&t.n, &o, &b, &fit, err, sizeof(err)), 0);
    j = cJSON_Parse(b.data);
    assert_non_null(j);
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "aps"), "alert"));
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "aps"), "content-available")->valueint, 1);
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "aps"), "badge")); /* unset */
    cJSON_Delete(j);
    push_buf_free(&b);
}

/* Shortened bodies: within the limit, valid JSON and UTF-8, a prefix of the
 * original plus the ellipsis, and as long as possible (one more code point
 * would not fit). */
static void check_truncation(const char *unit, size_t times, size_t limit)
{
    note_t t;
    push_buf_t b = {0};
    push_fit_t fit;
    char err[256];
    push_apns_opts_t o = {.max_bytes = limit};
    char *body = repeat(unit, times);
    note_init(&t, "Title \xE6\xA0\x87\xE9\xA2\x98", body);
    assert_int_equal(push_payload_apns(&t.n, &o, &b, &fit, err, sizeof(err)), 0);
    assert_true(b.len <= limit);
    assert_true(fit.truncated);
    cJSON *j = cJSON_Parse(b.data);
    assert_non_null(j);
    const char *got = jstr(j, "aps", "alert", "body");
    assert_non_null(got);
    assert_true(utf8_valid(got));
    size_t gl = strlen(got);
    assert_true(gl >= 3);
    assert_memory_equal(got + gl - 3, "\xE2\x80\xA6", 3);
    assert_int_equal(gl - 3, fit.body_bytes);
    assert_memory_equal(got, body, gl - 3); /* a prefix, cut between code points */
    assert_int_equal(push_utf8_cut(body, strlen(body), fit.body_bytes), fit.body_bytes);
    /* maximal: one more code point would not have fit */
    size_t next = fit.body_bytes + strlen(unit) <= strlen(body) ? fit.body_bytes : 0;
    if (next) {
        note_t t2;
        push_buf_t b2 = {0};
        char *more = malloc(fit.body_bytes + 16);
        size_t ul = 1;
        while (((unsigned char)body[fit.body_bytes + ul] & 0xC0) == 0x80)
            ul++;
        memcpy(more, body, fit.body_bytes + ul);
        memcpy(more + fit.body_bytes + ul, "\xE2\x80\xA6", 4);
        note_init(&t2, t.n.title, more);
        push_apns_opts_t big = {.max_bytes = PUSH_JSON_MAX};
        assert_int_equal(push_payload_apns(&t2.n, &big, &b2, NULL, err, sizeof(err)), 0);
        assert_true(b2.len > limit);
        push_buf_free(&b2);
        free(more);
    }
    assert_string_equal(jstr(j, "aps", "alert", "title"), "Title \xE6\xA0\x87\xE9\xA2\x98");
    cJSON_Delete(j);
    push_buf_free(&b);
    free(body);
}

static void test_apns_truncation_multibyte(void **state)
{
    (void)state;
    check_truncation("\xE4\xB8\xAD", 3000, PUSH_APNS_MAX_PAYLOAD);     /* 3-byte CJK */
    check_truncation("\xF0\x9F\x98\x80", 2000, PUSH_APNS_MAX_PAYLOAD); /* 4-byte emoji */
    check_truncation("a\xC3\xA9", 3000, PUSH_APNS_MAX_PAYLOAD);        /* mixed 1 and 2 */
    check_truncation("\"\\", 3000, PUSH_APNS_MAX_PAYLOAD);             /* escapes double */
    check_truncation("\x01", 3000, PUSH_APNS_MAX_PAYLOAD);             /* \u0001: 6 bytes each */
    /* every limit around a boundary */
    for (size_t lim = 300; lim < 340; lim++)
        check_truncation("\xF0\x9F\x98\x80"
                         "x",
                         200, lim);
}

static void test_apns_title_and_too_large(void **state)
{
    note_t t;
    push_buf_t b = {0};
    push_fit_t fit;
    char err[256];
    push_apns_opts_t o = {.max_bytes = PUSH_APNS_MAX_PAYLOAD};
    (void)state;
    char *title = repeat("\xE4\xB8\xAD", 2000);
    char *body = repeat("b", 100);
    note_init(&t, title, body);
    assert_int_equal(push_payload_apns(&t.n, &o, &b, &fit, err, sizeof(err)), 0);
    assert_true(b.len <= PUSH_APNS_MAX_PAYLOAD);
    assert_true(fit.truncated);
    assert_int_equal(fit.body_bytes, 0);
    cJSON *j = cJSON_Parse(b.data);
    assert_non_null(j);
    assert_string_equal(jstr(j, "aps", "alert", "body"), "\xE2\x80\xA6");
    assert_true(utf8_valid(jstr(j, "aps", "alert", "title")));
    cJSON_Delete(j);

    /* custom data alone over the limit: an error, not a broken payload */
    char *big = repeat("d", 5000);
    note_init(&t, "t", "b");
    note_data(&t, "blob", big);
    assert_int_equal(push_payload_apns(&t.n, &o, &b, &fit, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "4096"));
    push_buf_free(&b);
    free(title);
    free(body);
    free(big);
}

static void test_fcm_message(void **state)
{
    note_t t;
    push_fcm_msg_t m = {0};
    push_buf_t body = {0};
    push_fit_t fit;
    char err[256];
    (void)state;
    note_init(&t, "Bob", "hi");
    t.n.badge_set_case = IMTASK__V1__PUSH_NOTIFICATION__BADGE_SET_BADGE;
    t.n.badge = 3;
    t.n.sound = (char *)"default";
    note_data(&t, "k", "v");
    note_data(&t, "google.x", "reserved");
    note_data(&t, "from", "reserved");
    push_fcm_opts_t o = {.max_bytes = PUSH_FCM_MAX_PAYLOAD,
                         .high_priority = true,
                         .ttl_set = true,
                         .ttl_seconds = 3600,
                         .apns_expiration_s = 1900000000,
                         .collapse_id = "m1001"};
    assert_int_equal(push_payload_fcm(&t.n, &o, &m, &fit, err, sizeof(err)), 0);
    push_fcm_body(&m, "tok\"en", &body);
    cJSON *j = cJSON_Parse(body.data);
    assert_non_null(j);
    cJSON *msg = cJSON_GetObjectItem(j, "message");
    assert_string_equal(jstr(msg, "token", NULL, NULL), "tok\"en");
    assert_string_equal(jstr(msg, "notification", "title", NULL), "Bob");
    assert_string_equal(jstr(msg, "notification", "body", NULL), "hi");
    assert_string_equal(jstr(msg, "data", "k", NULL), "v");
    assert_string_equal(jstr(msg, "data", "message_id", NULL), "m1001");
    assert_null(jstr(msg, "data", "google.x", NULL));
    assert_null(jstr(msg, "data", "from", NULL));
    assert_string_equal(jstr(msg, "android", "priority", NULL), "HIGH");
    assert_string_equal(jstr(msg, "android", "ttl", NULL), "3600s");
    assert_string_equal(jstr(msg, "android", "collapse_key", NULL), "m1001");
    assert_string_equal(jstr(msg, "android", "notification", "tag"), "m1001");
    assert_string_equal(jstr(msg, "apns", "headers", "apns-priority"), "10");
    assert_string_equal(jstr(msg, "apns", "headers", "apns-expiration"), "1900000000");
    assert_string_equal(jstr(msg, "apns", "headers", "apns-collapse-id"), "m1001");
    cJSON *aps = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(msg, "apns"), "payload"), "aps");
    assert_int_equal(cJSON_GetObjectItem(aps, "badge")->valueint, 3);
    /* every data value is a string, as FCM requires */
    cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(msg, "data")) assert_true(cJSON_IsString(d));
    cJSON_Delete(j);

    /* shortened by FCM's count: the raw bytes of texts and data */
    char *long_body = repeat("\xF0\x9F\x98\x80", 2000);
    note_init(&t, "T", long_body);
    assert_int_equal(push_payload_fcm(&t.n, &o, &m, &fit, err, sizeof(err)), 0);
    assert_true(fit.truncated);
    push_fcm_body(&m, "abc", &body);
    j = cJSON_Parse(body.data);
    assert_non_null(j);
    const char *nb = jstr(cJSON_GetObjectItem(j, "message"), "notification", "body", NULL);
    assert_true(utf8_valid(nb));
    size_t data = strlen("conversation_idc42sender_idu7message_idm1001");
    assert_true(1 + strlen(nb) + data <= PUSH_FCM_MAX_PAYLOAD);
    assert_true(1 + strlen(nb) + data + 4 > PUSH_FCM_MAX_PAYLOAD); /* one more emoji: over */
    assert_int_equal(strlen(nb) % 4, 3);                           /* whole emoji + ellipsis */
    cJSON_Delete(j);
    push_fcm_msg_free(&m);
    push_buf_free(&body);
    free(long_body);
}

static void test_collapse_id(void **state)
{
    note_t t;
    char out[PUSH_COLLAPSE_ID_MAX + 1];
    (void)state;
    note_init(&t, "", "");
    push_collapse_id(&t.n, out);
    assert_string_equal(out, "m1001"); /* the message id: duplicates replace themselves */
    t.n.collapse_key = (char *)"chat-c42";
    push_collapse_id(&t.n, out);
    assert_string_equal(out, "chat-c42");
    char *lng = repeat("k", 65);
    t.n.collapse_key = lng;
    push_collapse_id(&t.n, out);
    assert_int_equal(strlen(out), 64);
    assert_true(strspn(out, "0123456789abcdef") == 64);
    t.n.collapse_key = NULL;
    t.n.message_id = NULL;
    push_collapse_id(&t.n, out);
    assert_string_equal(out, "");
    free(lng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_cut),
        cmocka_unit_test(test_json_escaping_and_bad_utf8),
        cmocka_unit_test(test_apns_fields),
        cmocka_unit_test(test_apns_truncation_multibyte),
        cmocka_unit_test(test_apns_title_and_too_large),
        cmocka_unit_test(test_fcm_message),
        cmocka_unit_test(test_collapse_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
