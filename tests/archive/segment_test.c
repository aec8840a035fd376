/* segment_test.c: archive segments without services: the NDJSON line of a
 * message (every field, escaping, parsed back with cJSON), a segment written
 * and decoded (count, ids, hashes, time range, several zstd blocks), the
 * manifest to JSON and back, verification catching a flipped byte, a
 * truncated or wrong-size object and a manifest that lies, keys and job
 * names, the checkpoint JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/archive/archive_run.h"
#include "tasks/archive/segment.h"

static void fill(ImRepo__V1__Message *m, int64_t i, char *id, size_t idcap, char *content,
                 size_t ccap)
{
    im_repo__v1__message__init(m);
    snprintf(id, idcap, "m%" PRId64, i);
    snprintf(content, ccap, "message %" PRId64 " with \"quotes\", \\ and a\nnewline\t\x01", i);
    m->id = id;
    m->conversation_id = "group:g1";
    m->sender_id = "u42";
    m->message_type = 1;
    m->content = content;
    m->seq_id = i + 1;
    m->created_at = 1735689600000 + i * 60000;
    m->updated_at = m->created_at + 5;
    m->deleted = i % 7 == 0;
    m->extra = "{\"k\":\"v\"}";
    m->audit_status = IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_BLOCK;
}

static void test_message_json(void **state)
{
    (void)state;
    ImRepo__V1__Message m;
    char id[32], content[128], out[1024];
    fill(&m, 7, id, sizeof(id), content, sizeof(content));
    size_t n = seg_message_json(&m, out, sizeof(out));
    assert_true(n > 0);
    assert_null(memchr(out, '\n', n));
    cJSON *o = cJSON_ParseWithLength(out, n);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "id")->valuestring, "m7");
    assert_string_equal(cJSON_GetObjectItem(o, "conversation_id")->valuestring, "group:g1");
    assert_string_equal(cJSON_GetObjectItem(o, "sender_id")->valuestring, "u42");
    assert_int_equal(cJSON_GetObjectItem(o, "message_type")->valueint, 1);
    assert_string_equal(cJSON_GetObjectItem(o, "content")->valuestring, content);
    assert_true(cJSON_GetObjectItem(o, "seq_id")->valuedouble == 8);
    assert_true(cJSON_GetObjectItem(o, "created_at")->valuedouble == 1735690020000.0);
    assert_true(cJSON_GetObjectItem(o, "updated_at")->valuedouble == 1735690020005.0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "deleted")));
    assert_string_equal(cJSON_GetObjectItem(o, "extra")->valuestring, "{\"k\":\"v\"}");
    assert_string_equal(cJSON_GetObjectItem(o, "audit_status")->valuestring, "AUDIT_STATUS_BLOCK");
    cJSON_Delete(o);
    /* too small a buffer: 0, never a cut line */
    for (size_t cap = 0; cap < n; cap += 13)
        assert_int_equal(seg_message_json(&m, out, cap), 0);
    /* NULL strings (protobuf-c gives empty strings, but be safe) */
    ImRepo__V1__Message e;
    im_repo__v1__message__init(&e);
    e.id = NULL;
    e.content = NULL;
    n = seg_message_json(&e, out, sizeof(out));
    assert_true(n > 0);
    o = cJSON_ParseWithLength(out, n);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "id")->valuestring, "");
    cJSON_Delete(o);
}

typedef struct {
    int64_t n;
    int bad;
} lines_t;

static int check_line(void *opaque, const char *text, size_t n)
{
    lines_t *l = opaque;
    cJSON *o = cJSON_ParseWithLength(text, n);
    char want[32];
    snprintf(want, sizeof(want), "m%" PRId64, l->n);
    if (!o || strcmp(cJSON_GetObjectItem(o, "id")->valuestring, want))
        l->bad++;
    cJSON_Delete(o);
    l->n++;
    return 0;
}

/* A segment of n messages (content padded to pad bytes). */
static void write_segment(seg_writer_t *w, int64_t n, size_t pad, seg_manifest_t *m,
                          const void **data, size_t *len)
{
    char err[256];
    char *big = malloc(pad + 1);
    assert_non_null(big);
    seg_writer_reset(w);
    for (int64_t i = 0; i < n; i++) {
        ImRepo__V1__Message msg;
        char id[32], content[128];
        fill(&msg, i, id, sizeof(id), content, sizeof(content));
        if (pad) {
            memset(big, 'a' + (int)(i % 26), pad);
            big[pad] = '\0';
            msg.content = big;
        }
        assert_int_equal(seg_writer_add(w, &msg, err, sizeof(err)), 0);
    }
    free(big);
    memset(m, 0, sizeof(*m));
    snprintf(m->job, sizeof(m->job), "daily");
    snprintf(m->run, sizeof(m->run), "daily@1700000000000");
    m->seq = 3;
    seg_object_name(m->object, sizeof(m->object), 3, "00112233445566ff");
    assert_int_equal(seg_writer_finish(w, m, data, len, err, sizeof(err)), 0);
}

static void test_segment_roundtrip(void **state)
{
    (void)state;
    char err[512];
    seg_writer_t *w = seg_writer_new(3, err, sizeof(err));
    assert_non_null(w);
    seg_manifest_t m;
    const void *data;
    size_t len;
    /* 3000 messages of 1 KiB: several staging flushes and zstd blocks */
    write_segment(w, 3000, 1024, &m, &data, &len);
    assert_int_equal(m.count, 3000);
    assert_int_equal(seg_writer_count(w), 3000);
    assert_string_equal(m.first_id, "m0");
    assert_string_equal(m.last_id, "m2999");
    assert_string_equal(seg_writer_id(w, 1234), "m1234");
    assert_null(seg_writer_id(w, 3000));
    assert_true(m.min_created_at == 1735689600000);
    assert_true(m.max_created_at == 1735689600000 + 2999 * 60000LL);
    assert_true(m.zst_bytes == len);
    assert_true(m.ndjson_bytes > 3000 * 1024);
    assert_true(len < m.ndjson_bytes / 4); /* repetitive content compresses */
    assert_int_equal(seg_verify(&m, data, len, err, sizeof(err)), 0);

    lines_t l = {0};
    uint64_t count, bytes;
    char sha[65];
    assert_int_equal(
        seg_decode(data, len, 1 << 20, check_line, &l, &count, &bytes, sha, err, sizeof(err)), 0);
    assert_int_equal(l.n, 3000);
    assert_int_equal(l.bad, 0);
    assert_int_equal(count, 3000);
    assert_true(bytes == m.ndjson_bytes);
    assert_string_equal(sha, m.ndjson_sha256);
    /* a line limit below the line length is an error */
    assert_int_equal(seg_decode(data, len, 100, NULL, NULL, NULL, NULL, NULL, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "longer than 100"));

    /* the writer is reusable; an empty segment is one empty frame */
    write_segment(w, 0, 0, &m, &data, &len);
    assert_int_equal(m.count, 0);
    assert_int_equal(seg_verify(&m, data, len, err, sizeof(err)), 0);
    seg_writer_destroy(w);
}

static void test_checksum_mismatch(void **state)
{
    (void)state;
    char err[512];
    seg_writer_t *w = seg_writer_new(0, err, sizeof(err));
    assert_non_null(w);
    seg_manifest_t m;
    const void *data;
    size_t len;
    write_segment(w, 500, 0, &m, &data, &len);
    unsigned char *copy = malloc(len);
    assert_non_null(copy);

    /* one flipped byte anywhere: the compressed sha256 differs */
    for (size_t at = 0; at < len; at += len / 7 + 1) {
        memcpy(copy, data, len);
        copy[at] ^= 0x20;
        assert_int_equal(seg_verify(&m, copy, len, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "sha256 of the compressed bytes"));
    }
    /* truncated */
    assert_int_equal(seg_verify(&m, data, len - 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "compressed bytes, the manifest says"));
    /* a manifest whose compressed hash matches but whose NDJSON facts lie */
    seg_manifest_t lie = m;
    lie.count++;
    assert_int_equal(seg_verify(&lie, data, len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "decompressed 500 lines"));
    lie = m;
    lie.ndjson_sha256[0] = lie.ndjson_sha256[0] == '0' ? '1' : '0';
    assert_int_equal(seg_verify(&lie, data, len, err, sizeof(err)), -1);
    /* a corrupted frame that still hashes as the manifest says: decode fails */
    memcpy(copy, data, len);
    copy[len / 2] ^= 0xff;
    lie = m;
    seg_sha256_hex(copy, len, lie.zst_sha256);
    assert_int_equal(seg_verify(&lie, copy, len, err, sizeof(err)), -1);
    /* not zstd at all */
    assert_int_equal(seg_decode("hello\n", 6, 100, NULL, NULL, NULL, NULL, NULL, err, sizeof(err)),
                     -1);
    assert_int_equal(seg_decode("", 0, 100, NULL, NULL, NULL, NULL, NULL, err, sizeof(err)), -1);
    free(copy);
    seg_writer_destroy(w);
}

static void test_manifest_json(void **state)
{
    (void)state;
    char err[512];
    seg_writer_t *w = seg_writer_new(3, err, sizeof(err));
    seg_manifest_t m, back;
    const void *data;
    size_t len;
    write_segment(w, 10, 0, &m, &data, &len);
    snprintf(m.start_cursor, sizeof(m.start_cursor), "c-start");
    snprintf(m.end_cursor, sizeof(m.end_cursor), "c-end");
    m.cutoff_ms = 1735689600000 + 3600000;
    char *json = seg_manifest_to_json(&m);
    assert_non_null(json);
    assert_int_equal(seg_manifest_parse(json, strlen(json), &back, err, sizeof(err)), 0);
    assert_memory_equal(&m, &back, sizeof(m));
    assert_int_equal(seg_verify(&back, data, len, err, sizeof(err)), 0);
    cJSON *o = cJSON_Parse(json);
    assert_string_equal(cJSON_GetObjectItem(o, "format")->valuestring, "imtask-archive-segment");
    assert_int_equal(cJSON_GetObjectItem(o, "version")->valueint, 1);
    assert_string_equal(cJSON_GetObjectItem(o, "compression")->valuestring, "zstd");

    /* wrong version, missing field, wrong type, not JSON */
    cJSON_ReplaceItemInObject(o, "version", cJSON_CreateNumber(2));
    char *bad = cJSON_PrintUnformatted(o);
    assert_int_equal(seg_manifest_parse(bad, strlen(bad), &back, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version 2"));
    free(bad);
    cJSON_ReplaceItemInObject(o, "version", cJSON_CreateNumber(1));
    cJSON_DeleteItemFromObject(o, "count");
    bad = cJSON_PrintUnformatted(o);
    assert_int_equal(seg_manifest_parse(bad, strlen(bad), &back, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"count\""));
    free(bad);
    cJSON_AddStringToObject(o, "count", "10");
    bad = cJSON_PrintUnformatted(o);
    assert_int_equal(seg_manifest_parse(bad, strlen(bad), &back, err, sizeof(err)), -1);
    free(bad);
    /* an object of another seq */
    cJSON_ReplaceItemInObject(o, "count", cJSON_CreateNumber(10));
    cJSON_ReplaceItemInObject(o, "object",
                              cJSON_CreateString("000000000004.00112233445566ff.ndjson.zst"));
    bad = cJSON_PrintUnformatted(o);
    assert_int_equal(seg_manifest_parse(bad, strlen(bad), &back, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"object\""));
    free(bad);
    assert_int_equal(seg_manifest_parse("[1]", 3, &back, err, sizeof(err)), -1);
    assert_int_equal(seg_manifest_parse("{", 1, &back, err, sizeof(err)), -1);
    cJSON_Delete(o);
    free(json);
    seg_writer_destroy(w);
}

static void test_keys(void **state)
{
    (void)state;
    char k[128];
    int is_manifest = -1;
    char obj[64], tok[SEG_TOKEN_LEN + 1], tok2[SEG_TOKEN_LEN + 1];
    seg_token_new(tok);
    seg_token_new(tok2);
    assert_int_equal(strlen(tok), SEG_TOKEN_LEN);
    assert_string_not_equal(tok, tok2); /* each try its own object */
    assert_int_equal(seg_object_name(obj, sizeof(obj), 42, "0123456789abcdef"), 0);
    assert_string_equal(obj, "000000000042.0123456789abcdef.ndjson.zst");
    assert_int_equal(seg_key_data(k, sizeof(k), "archive", "daily", obj), 0);
    assert_string_equal(k, "archive/daily/segments/000000000042.0123456789abcdef.ndjson.zst");
    assert_int_equal(seg_key_seq(k, &is_manifest), 42);
    assert_int_equal(is_manifest, 0);
    assert_int_equal(seg_key_seq(obj, &is_manifest), 42);
    assert_int_equal(seg_key_manifest(k, sizeof(k), "archive", "daily", 7), 0);
    assert_string_equal(k, "archive/daily/segments/000000000007.manifest.json");
    assert_int_equal(seg_key_seq(k, &is_manifest), 7);
    assert_int_equal(is_manifest, 1);
    assert_int_equal(seg_key_checkpoint(k, sizeof(k), "a/b", "daily"), 0);
    assert_string_equal(k, "a/b/daily/checkpoint.json");
    assert_int_equal(seg_key_data(k, 20, "archive", "daily", obj), -1); /* does not fit */
    assert_int_equal(seg_key_seq("archive/daily/checkpoint.json", NULL), -1);
    assert_int_equal(seg_key_seq("archive/daily/segments/42.ndjson.zst", NULL), -1);
    assert_int_equal(seg_key_seq("archive/daily/segments/000000000042.ndjson.zst", NULL), -1);
    assert_int_equal(
        seg_key_seq("archive/daily/segments/000000000042.0123456789ABCDEF.ndjson.zst", NULL), -1);
    assert_int_equal(seg_key_seq("archive/daily/segments/000000000042.txt", NULL), -1);
    /* keys sort by seq */
    char a[128], b[128], oa[64], ob[64];
    seg_object_name(oa, sizeof(oa), 9, tok);
    seg_object_name(ob, sizeof(ob), 10, tok2);
    seg_key_data(a, sizeof(a), "archive", "j", oa);
    seg_key_data(b, sizeof(b), "archive", "j", ob);
    assert_true(strcmp(a, b) < 0);

    assert_true(seg_job_ok("daily-archive_1.x"));
    assert_false(seg_job_ok(""));
    assert_false(seg_job_ok(".hidden"));
    assert_false(seg_job_ok("a/b"));
    assert_false(seg_job_ok("a b"));
    assert_false(seg_job_ok("a@b"));
    char longjob[SEG_JOB_MAX + 2];
    memset(longjob, 'j', sizeof(longjob) - 1);
    longjob[sizeof(longjob) - 1] = '\0';
    assert_false(seg_job_ok(longjob));
    longjob[SEG_JOB_MAX] = '\0';
    assert_true(seg_job_ok(longjob));
}

static void test_checkpoint_json(void **state)
{
    (void)state;
    char err[256];
    archive_checkpoint_t cp = {.next_seq = 12,
                               .archived_total = 1200000,
                               .segments_total = 12,
                               .last_run_done = true,
                               .updated_at_ms = 1700000000123};
    snprintf(cp.cursor, sizeof(cp.cursor), "bWVzc2FnZXM6MTIz");
    snprintf(cp.last_run, sizeof(cp.last_run), "daily@1700000000000");
    char *json = archive_checkpoint_to_json("daily", &cp);
    assert_non_null(json);
    archive_checkpoint_t back;
    assert_int_equal(archive_checkpoint_parse(json, strlen(json), &back, err, sizeof(err)), 0);
    assert_memory_equal(&cp, &back, sizeof(cp));
    free(json);
    assert_int_equal(archive_checkpoint_parse("{}", 2, &back, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "imtask-archive-checkpoint"));
    const char *neg = "{\"format\":\"imtask-archive-checkpoint\",\"version\":1,\"next_seq\":-1,"
                      "\"cursor\":\"\"}";
    assert_int_equal(archive_checkpoint_parse(neg, strlen(neg), &back, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "next_seq"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_json),
        cmocka_unit_test(test_segment_roundtrip),
        cmocka_unit_test(test_checksum_mismatch),
        cmocka_unit_test(test_manifest_json),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_checkpoint_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
