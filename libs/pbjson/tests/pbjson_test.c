/* pbjson_test.c: JSON <-> protobuf-c round trips (imtask.v1.Task and a
 * message with every field kind) and every kind of error pbjson reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libs/pbjson/tests/pbjson_test.pb-c.h"
#include "libs/pbjson/tests/pbjson_test2.pb-c.h"
#include "pbjson/pbjson.h"
#include "proto/task.pb-c.h"

static const ProtobufCMessageDescriptor *const task_desc = &imtask__v1__task__descriptor;
static const ProtobufCMessageDescriptor *const all_desc = &imtask__pbjsontest__all__descriptor;

/* Parse JSON that must be accepted. */
static ProtobufCMessage *must_parse(const ProtobufCMessageDescriptor *d, const char *json)
{
    char err[PBJSON_ERR_MAX];
    ProtobufCMessage *m = NULL;
    pbjson_err_t e = pbjson_to_message(d, json, strlen(json), &m, err, sizeof(err));
    if (e != PBJSON_OK)
        fail_msg("pbjson_to_message(%s) failed: %s: %s", json, pbjson_err_str(e), err);
    assert_non_null(m);
    return m;
}

/* Parse JSON that must be refused with e and a message containing each of
 * the NULL-terminated needles. */
static void must_fail(const ProtobufCMessageDescriptor *d, const char *json, pbjson_err_t want, ...)
{
    char err[PBJSON_ERR_MAX];
    ProtobufCMessage *m = NULL;
    va_list ap;
    const char *needle;
    pbjson_err_t e = pbjson_to_message(d, json, strlen(json), &m, err, sizeof(err));
    if (e != want)
        fail_msg("%s: got %s (%s), want %s", json, pbjson_err_str(e), err, pbjson_err_str(want));
    assert_null(m);
    va_start(ap, want);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (!strstr(err, needle))
            fail_msg("%s: error \"%s\" does not mention \"%s\"", json, err, needle);
    }
    va_end(ap);
}

static char *must_print(const ProtobufCMessage *m, unsigned flags)
{
    char err[PBJSON_ERR_MAX], *out = NULL;
    pbjson_err_t e = pbjson_from_message(m, flags, &out, err, sizeof(err));
    if (e != PBJSON_OK)
        fail_msg("pbjson_from_message failed: %s: %s", pbjson_err_str(e), err);
    assert_non_null(out);
    return out;
}

/* Pack a message (for comparing two messages byte for byte). */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* JSON -> message -> JSON -> message gives the same encoding both times. */
static void assert_round_trip(const ProtobufCMessageDescriptor *d, ProtobufCMessage *m)
{
    size_t l1, l2;
    char *json = must_print(m, 0);
    ProtobufCMessage *m2 = must_parse(d, json);
    uint8_t *b1 = pack(m, &l1), *b2 = pack(m2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(b1, b2, l1);
    free(b1);
    free(b2);
    free(json);
    pbjson_message_free(&m2);
}

/* ---- imtask.v1.Task --------------------------------------------------- */

static const char task_json[] =
    "{\"task_id\":\"t-1\",\"task_type\":\"fanout\","
    "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
    "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\","
    "\"created_at_ms\":\"1732800000123\",\"attempt\":3,\"deadline_ms\":1732800060000,"
    "\"payload\":\"aGVsbG8=\"}";

static void test_task_round_trip(void **state)
{
    (void)state;
    ProtobufCMessage *m = must_parse(task_desc, task_json);
    Imtask__V1__Task *t = (Imtask__V1__Task *)m;
    assert_string_equal(t->task_id, "t-1");
    assert_string_equal(t->task_type, "fanout");
    assert_string_equal(t->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_int_equal(t->created_at_ms, 1732800000123LL);
    assert_int_equal(t->attempt, 3);
    assert_int_equal(t->deadline_ms, 1732800060000LL);
    assert_int_equal(t->payload.len, 5);
    assert_memory_equal(t->payload.data, "hello", 5);

    /* 64-bit integers print as strings, bytes as base64, in field order */
    char *json = must_print(m, 0);
    assert_string_equal(
        json, "{\"task_id\":\"t-1\",\"task_type\":\"fanout\","
              "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
              "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\","
              "\"created_at_ms\":\"1732800000123\",\"attempt\":3,"
              "\"deadline_ms\":\"1732800060000\",\"payload\":\"aGVsbG8=\"}");
    free(json);
    assert_round_trip(task_desc, m);

    /* the same through the packed helpers */
    uint8_t *packed = NULL;
    size_t plen = 0;
    char err[PBJSON_ERR_MAX], *back = NULL;
    assert_int_equal(pbjson_json_to_packed(task_desc, task_json, strlen(task_json), &packed, &plen,
                                           err, sizeof(err)),
                     PBJSON_OK);
    size_t l1;
    uint8_t *b1 = pack(m, &l1);
    assert_int_equal(plen, l1);
    assert_memory_equal(packed, b1, l1);
    assert_int_equal(
        pbjson_packed_to_json(task_desc, packed, plen, PBJSON_PRETTY, &back, err, sizeof(err)),
        PBJSON_OK);
    assert_non_null(strstr(back, "\"attempt\":\t3"));
    free(back);
    free(b1);
    free(packed);
    pbjson_message_free(&m);
    assert_null(m);
}

static void test_task_defaults_and_names(void **state)
{
    (void)state;
    /* lowerCamel names, null as default, white space around */
    ProtobufCMessage *m =
        must_parse(task_desc, "  {\"taskId\":\"x\",\"createdAtMs\":5,\"trace_id\":null}\n");
    Imtask__V1__Task *t = (Imtask__V1__Task *)m;
    assert_string_equal(t->task_id, "x");
    assert_string_equal(t->trace_id, "");
    assert_int_equal(t->created_at_ms, 5);
    char *json = must_print(m, 0);
    assert_string_equal(json, "{\"task_id\":\"x\",\"created_at_ms\":\"5\"}");
    free(json);
    json = must_print(m, PBJSON_EMIT_DEFAULTS);
    assert_string_equal(json, "{\"task_id\":\"x\",\"task_type\":\"\",\"trace_id\":\"\","
                              "\"traceparent\":\"\",\"created_at_ms\":\"5\",\"attempt\":0,"
                              "\"deadline_ms\":\"0\",\"payload\":\"\"}");
    free(json);
    pbjson_message_free(&m);

    /* an empty object is a message at all defaults */
    m = must_parse(task_desc, "{}");
    json = must_print(m, 0);
    assert_string_equal(json, "{}");
    free(json);
    pbjson_message_free(&m);
}

static void test_task_errors(void **state)
{
    (void)state;
    must_fail(task_desc, "{\"task_id\":\"a\",\"bogus\":1}", PBJSON_ERR_UNKNOWN_FIELD,
              "unknown field \"bogus\"", "imtask.v1.Task", "task_id, task_type", NULL);
    must_fail(task_desc, "{\"attempt\":\"abc\"}", PBJSON_ERR_TYPE, "$.attempt",
              "imtask.v1.Task.attempt", "uint32", "string \"abc\"", NULL);
    must_fail(task_desc, "{\"task_id\":5}", PBJSON_ERR_TYPE, "imtask.v1.Task.task_id",
              "expected a JSON string, got number 5", NULL);
    must_fail(task_desc, "{\"attempt\":-1}", PBJSON_ERR_TYPE, "attempt", "negative", NULL);
    must_fail(task_desc, "{\"attempt\":4294967296}", PBJSON_ERR_TYPE, "out of range", NULL);
    must_fail(task_desc, "{\"attempt\":1.5}", PBJSON_ERR_TYPE, "fractional", NULL);
    must_fail(task_desc, "{\"attempt\":true}", PBJSON_ERR_TYPE, "expected a JSON number", NULL);
    must_fail(task_desc, "{\"created_at_ms\":1152921504606846976}", PBJSON_ERR_TYPE,
              "created_at_ms", "2^53", "decimal string", NULL);
    must_fail(task_desc, "{\"created_at_ms\":\"99999999999999999999\"}", PBJSON_ERR_TYPE,
              "out of range", NULL);
    must_fail(task_desc, "{\"created_at_ms\":\"12x\"}", PBJSON_ERR_TYPE, "not a decimal", NULL);
    must_fail(task_desc, "{\"payload\":\"aGVs*G8=\"}", PBJSON_ERR_TYPE, "imtask.v1.Task.payload",
              "invalid base64 character '*' at offset 4", NULL);
    must_fail(task_desc, "{\"payload\":\"a\"}", PBJSON_ERR_TYPE, "impossible length", NULL);
    must_fail(task_desc, "{\"payload\":[1]}", PBJSON_ERR_TYPE, "expected a base64 string", NULL);
    must_fail(task_desc, "{\"task_id\":\"a\",\"taskId\":\"b\"}", PBJSON_ERR_TYPE,
              "imtask.v1.Task.task_id is given twice", NULL);
    must_fail(task_desc, "[1,2]", PBJSON_ERR_TYPE, "imtask.v1.Task",
              "expected a JSON object, got an array", NULL);
    must_fail(task_desc, "{\"task_id\":\"a\",}", PBJSON_ERR_SYNTAX, "not valid JSON",
              "imtask.v1.Task", "line 1", NULL);
    must_fail(task_desc, "{\n\"task_id\" \"a\"}", PBJSON_ERR_SYNTAX, "line 2", NULL);
    must_fail(task_desc, "{} x", PBJSON_ERR_SYNTAX, "byte 3", NULL);
    must_fail(task_desc, "", PBJSON_ERR_SYNTAX, "not valid JSON", NULL);

    /* 64-bit values beyond 2^53 are fine as strings */
    ProtobufCMessage *m = must_parse(task_desc, "{\"created_at_ms\":\"-1152921504606846976\"}");
    assert_int_equal(((Imtask__V1__Task *)m)->created_at_ms, -1152921504606846976LL);
    pbjson_message_free(&m);
}

static void test_bounds(void **state)
{
    (void)state;
    char err[PBJSON_ERR_MAX];
    ProtobufCMessage *m = NULL;
    size_t big = PBJSON_MAX_INPUT + 1;
    char *json = malloc(big + 1);
    assert_non_null(json);
    memset(json, ' ', big);
    json[0] = '{';
    json[big - 1] = '}';
    json[big] = '\0';
    assert_int_equal(pbjson_to_message(task_desc, json, big, &m, err, sizeof(err)),
                     PBJSON_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "at most 1048576"));
    assert_null(m);
    /* exactly the maximum is accepted */
    assert_int_equal(pbjson_to_message(task_desc, json + 1, big - 1, &m, err, sizeof(err)),
                     PBJSON_ERR_SYNTAX); /* (no opening brace: a syntax error, not a size one) */
    json[1] = '{';
    assert_int_equal(pbjson_to_message(task_desc, json + 1, big - 1, &m, err, sizeof(err)),
                     PBJSON_OK);
    pbjson_message_free(&m);
    free(json);

    /* bad arguments */
    assert_int_equal(pbjson_to_message(NULL, "{}", 2, &m, err, sizeof(err)), PBJSON_ERR_INVALID);
    assert_int_equal(pbjson_to_message(task_desc, NULL, 0, &m, err, sizeof(err)),
                     PBJSON_ERR_INVALID);
    assert_int_equal(pbjson_to_message(task_desc, "{}", 2, NULL, NULL, 0), PBJSON_ERR_INVALID);
    pbjson_message_free(NULL);
    assert_string_equal(pbjson_err_str(PBJSON_ERR_UNKNOWN_FIELD), "unknown field");
    assert_string_equal(pbjson_err_str((pbjson_err_t)99), "unknown error");

    /* bytes that are not a Task */
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    char *out = NULL;
    assert_int_equal(
        pbjson_packed_to_json(task_desc, junk, sizeof(junk), 0, &out, err, sizeof(err)),
        PBJSON_ERR_DECODE);
    assert_non_null(strstr(err, "imtask.v1.Task"));
    assert_null(out);
    /* zero bytes are a Task at all defaults */
    assert_int_equal(pbjson_packed_to_json(task_desc, NULL, 0, 0, &out, err, sizeof(err)),
                     PBJSON_OK);
    assert_string_equal(out, "{}");
    free(out);
}

/* "{"child":{"child":...{}}}" with n objects in all. */
static char *nested_inner(int n)
{
    size_t cap = (size_t)n * 12 + 8, used = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (int i = 1; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used, "{\"child\":");
    used += (size_t)snprintf(s + used, cap - used, "{}");
    for (int i = 1; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used, "}");
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *inner = &imtask__pbjsontest__inner__descriptor;
    char *ok = nested_inner(PBJSON_MAX_DEPTH);
    char *deep = nested_inner(PBJSON_MAX_DEPTH + 1);
    ProtobufCMessage *m = must_parse(inner, ok);
    assert_round_trip(inner, m);
    must_fail(inner, deep, PBJSON_ERR_DEPTH, "nested deeper than 16", NULL);

    /* printing refuses too: hang one more level under the deepest message */
    Imtask__Pbjsontest__Inner *leaf = (Imtask__Pbjsontest__Inner *)m, extra;
    while (leaf->child)
        leaf = leaf->child;
    imtask__pbjsontest__inner__init(&extra);
    leaf->child = &extra;
    char err[PBJSON_ERR_MAX], *out = NULL;
    assert_int_equal(pbjson_from_message(m, 0, &out, err, sizeof(err)), PBJSON_ERR_DEPTH);
    assert_null(out);
    assert_non_null(strstr(err, "deeper than 16"));
    leaf->child = NULL;
    pbjson_message_free(&m);
    free(ok);
    free(deep);
}

/* ---- every field kind ----------------------------------------------- */

static const char all_json[] =
    "{\"i32\":-5,\"s32\":\"-6\",\"sf32\":-2147483648,\"u32\":4294967295,\"f32\":\"7\","
    "\"i64\":\"-9223372036854775808\",\"s64\":-9007199254740992,\"sf64\":\"12\","
    "\"u64\":\"18446744073709551615\",\"f64\":9007199254740992,"
    "\"fl\":0.1,\"db\":\"NaN\",\"flag\":true,\"color\":\"COLOR_BLUE\",\"text\":\"h\\u00e9\\n\","
    "\"data\":\"_-8\","
    "\"inner\":{\"name\":\"in\",\"count\":2,\"child\":{\"name\":\"leaf\"}},"
    "\"tags\":[\"a\",\"b\",\"\"],\"nums\":[1,\"-2\",\"9223372036854775807\"],"
    "\"items\":[{\"name\":\"x\"},{}],\"colors\":[1,\"COLOR_BLUE\",9],\"blobs\":[\"AAE=\",\"\"],"
    "\"counts\":{\"a\":1,\"b\":-2},\"byId\":{\"42\":{\"name\":\"forty-two\"},\"-1\":{}},"
    "\"choiceInner\":{\"count\":1},\"ratioValue\":\"-Infinity\"}";

static void test_all_kinds(void **state)
{
    (void)state;
    ProtobufCMessage *m = must_parse(all_desc, all_json);
    Imtask__Pbjsontest__All *a = (Imtask__Pbjsontest__All *)m;
    assert_int_equal(a->i32, -5);
    assert_int_equal(a->s32, -6);
    assert_int_equal(a->sf32, INT32_MIN);
    assert_int_equal(a->u32, UINT32_MAX);
    assert_int_equal(a->f32, 7);
    assert_true(a->i64 == INT64_MIN);
    assert_true(a->s64 == -9007199254740992LL);
    assert_int_equal(a->sf64, 12);
    assert_true(a->u64 == UINT64_MAX);
    assert_true(a->f64 == 9007199254740992ULL);
    assert_true(a->fl == 0.1f);
    assert_true(isnan(a->db));
    assert_true(a->flag);
    assert_int_equal(a->color, IMTASK__PBJSONTEST__COLOR__COLOR_BLUE);
    assert_string_equal(a->text, "h\xc3\xa9\n");
    assert_int_equal(a->data.len, 2); /* URL-safe, unpadded "_-8" = ff ef */
    assert_int_equal(a->data.data[0], 0xff);
    assert_non_null(a->inner);
    assert_string_equal(a->inner->child->name, "leaf");
    assert_int_equal(a->n_tags, 3);
    assert_string_equal(a->tags[2], "");
    assert_int_equal(a->n_nums, 3);
    assert_true(a->nums[2] == INT64_MAX);
    assert_int_equal(a->n_items, 2);
    assert_int_equal(a->n_colors, 3);
    assert_int_equal(a->colors[2], 9);
    assert_int_equal(a->n_blobs, 2);
    assert_int_equal(a->blobs[0].len, 2);
    assert_int_equal(a->n_counts, 2);
    assert_string_equal(a->counts[1]->key, "b");
    assert_int_equal(a->counts[1]->value, -2);
    assert_int_equal(a->n_by_id, 2);
    assert_int_equal(a->by_id[0]->key, 42);
    assert_string_equal(a->by_id[0]->value->name, "forty-two");
    assert_int_equal(a->by_id[1]->key, -1);
    assert_int_equal(a->choice_case, IMTASK__PBJSONTEST__ALL__CHOICE_CHOICE_INNER);
    assert_int_equal(a->choice_inner->count, 1);
    assert_true(isinf(a->ratio_value) && a->ratio_value < 0);

    char *json = must_print(m, 0);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    /* shortest float, special doubles as strings, enums by name (number when unnamed) */
    assert_non_null(strstr(json, "\"fl\":0.1,"));
    assert_string_equal(cJSON_GetObjectItem(root, "db")->valuestring, "NaN");
    assert_string_equal(cJSON_GetObjectItem(root, "ratio_value")->valuestring, "-Infinity");
    assert_string_equal(cJSON_GetObjectItem(root, "color")->valuestring, "COLOR_BLUE");
    cJSON *colors = cJSON_GetObjectItem(root, "colors");
    assert_string_equal(cJSON_GetArrayItem(colors, 0)->valuestring, "COLOR_RED");
    assert_int_equal(cJSON_GetArrayItem(colors, 2)->valueint, 9);
    assert_string_equal(cJSON_GetObjectItem(root, "u64")->valuestring, "18446744073709551615");
    assert_string_equal(cJSON_GetObjectItem(root, "data")->valuestring, "/+8=");
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "by_id"), "42"));
    assert_non_null(cJSON_GetObjectItem(root, "choice_inner"));
    assert_null(cJSON_GetObjectItem(root, "choice_text"));
    cJSON_Delete(root);
    free(json);
    assert_round_trip(all_desc, m);
    pbjson_message_free(&m);

    /* a oneof member at its default value is still printed */
    m = must_parse(all_desc, "{\"choice_text\":\"\"}");
    json = must_print(m, 0);
    assert_string_equal(json, "{\"choice_text\":\"\"}");
    free(json);
    pbjson_message_free(&m);
}

static void test_all_errors(void **state)
{
    (void)state;
    must_fail(all_desc, "{\"inner\":{\"nope\":1}}", PBJSON_ERR_UNKNOWN_FIELD,
              "$.inner:", "unknown field \"nope\" in message imtask.pbjsontest.Inner", NULL);
    must_fail(all_desc, "{\"items\":[{},{\"count\":\"ten\"}]}", PBJSON_ERR_TYPE, "$.items[1].count",
              "imtask.pbjsontest.Inner.count", NULL);
    must_fail(all_desc, "{\"tags\":\"a\"}", PBJSON_ERR_TYPE, "repeated string",
              "expected a JSON array", NULL);
    must_fail(all_desc, "{\"tags\":[\"a\",null]}", PBJSON_ERR_TYPE, "$.tags[1]", "null", NULL);
    must_fail(all_desc, "{\"color\":\"COLOR_GREEN\"}", PBJSON_ERR_TYPE, "imtask.pbjsontest.Color",
              "not a value of this enum", NULL);
    must_fail(all_desc, "{\"color\":1.5}", PBJSON_ERR_TYPE, "fractional", NULL);
    must_fail(all_desc, "{\"i32\":2147483648}", PBJSON_ERR_TYPE, "out of range", NULL);
    must_fail(all_desc, "{\"fl\":1e39}", PBJSON_ERR_TYPE, "range of a float", NULL);
    must_fail(all_desc, "{\"db\":\"fast\"}", PBJSON_ERR_TYPE, "not a number", NULL);
    must_fail(all_desc, "{\"flag\":\"true\"}", PBJSON_ERR_TYPE, "expected true or false", NULL);
    must_fail(all_desc, "{\"inner\":[]}", PBJSON_ERR_TYPE, "imtask.pbjsontest.Inner",
              "expected a JSON object", NULL);
    must_fail(all_desc, "{\"by_id\":{\"x\":{}}}", PBJSON_ERR_TYPE, "$.by_id[\"x\"]",
              "not a decimal integer", NULL);
    must_fail(all_desc, "{\"by_id\":[]}", PBJSON_ERR_TYPE, "(map)", "expected a JSON object", NULL);
    must_fail(all_desc, "{\"counts\":{\"a\":null}}", PBJSON_ERR_TYPE, "may not be null", NULL);
    must_fail(all_desc, "{\"choice_text\":\"a\",\"choice_inner\":{}}", PBJSON_ERR_TYPE, "one oneof",
              "choice_text", "choice_inner", NULL);
    must_fail(all_desc, "{\"u64\":\"-1\"}", PBJSON_ERR_TYPE, "negative", NULL);
    must_fail(all_desc, "{\"u64\":\" 1\"}", PBJSON_ERR_TYPE, "not a decimal", NULL);
}

/* ---- proto2 presence -------------------------------------------------- */

static void test_proto2_presence(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &imtask__pbjsontest2__legacy__descriptor;
    ProtobufCMessage *m = must_parse(d, "{\"id\":\"a\"}");
    Imtask__Pbjsontest2__Legacy *l = (Imtask__Pbjsontest2__Legacy *)m;
    assert_false(l->has_level);
    assert_int_equal(l->level, 7);
    char *json = must_print(m, 0);
    assert_string_equal(json, "{\"id\":\"a\"}"); /* defaults are not printed */
    free(json);
    pbjson_message_free(&m);

    /* an explicit value equal to the zero value is present */
    m = must_parse(d, "{\"id\":\"a\",\"level\":0,\"note\":\"n\",\"raw\":\"\"}");
    l = (Imtask__Pbjsontest2__Legacy *)m;
    assert_true(l->has_level);
    assert_true(l->has_raw);
    json = must_print(m, 0);
    assert_string_equal(json, "{\"id\":\"a\",\"level\":0,\"note\":\"n\",\"raw\":\"\"}");
    free(json);
    assert_round_trip(d, m);
    pbjson_message_free(&m);

    must_fail(d, "{\"level\":1}", PBJSON_ERR_TYPE,
              "required field imtask.pbjsontest2.Legacy.id (string) is missing", NULL);
    must_fail(d, "{\"id\":null}", PBJSON_ERR_TYPE, "Legacy.id (string) may not be null", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_round_trip), cmocka_unit_test(test_task_defaults_and_names),
        cmocka_unit_test(test_task_errors),     cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_depth),           cmocka_unit_test(test_all_kinds),
        cmocka_unit_test(test_all_errors),      cmocka_unit_test(test_proto2_presence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
