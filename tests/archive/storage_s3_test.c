/* storage_s3_test.c: the S3 backend of storage.h against the stack's S3
 * server (moto, IMTASK_S3_ENDPOINT): put/get/delete, a missing key, an empty
 * object, create-only puts, keys with every allowed punctuation, the get bound, a listing over
 * several ListObjectsV2 pages (1100 keys) in order and within its prefix, and
 * a bucket that does not exist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static store_t *open_s3(const char *bucket, const char *prefix, int64_t max_bytes)
{
    char err[512];
    store_config_t c = {.kind = STORE_S3,
                        .s3_endpoint = h_env.s3_endpoint,
                        .s3_bucket = bucket,
                        .s3_region = "us-east-1",
                        .s3_prefix = prefix,
                        .s3_access_key_id = "testing",
                        .s3_secret_access_key = "testing",
                        .s3_timeout_ms = 30000,
                        .max_object_bytes = max_bytes};
    store_t *s = store_open(&c, err, sizeof(err));
    if (!s)
        fail_msg("store_open: %s", err);
    return s;
}

typedef struct {
    int n;
    char last[300];
    int unordered, outside;
    uint64_t bytes;
} listed_t;

static int on_key(void *opaque, const char *key, uint64_t size)
{
    listed_t *l = opaque;
    if (l->n && strcmp(l->last, key) >= 0)
        l->unordered++;
    if (strncmp(key, "many/", 5))
        l->outside++;
    snprintf(l->last, sizeof(l->last), "%s", key);
    l->n++;
    l->bytes += size;
    return 0;
}

static void test_s3(void **state)
{
    (void)state;
    char err[512], prefix[128];
    /* the bucket (moto: any credentials) */
    char url[300], out[512];
    snprintf(url, sizeof(url), "%s/imtask-test", h_env.s3_endpoint);
    int st = h_http("PUT", url, out, sizeof(out));
    assert_true(st == 200 || st == 409);
    snprintf(prefix, sizeof(prefix), "unit-%d-%lld/", (int)getpid(), (long long)time(NULL));
    store_t *s = open_s3("imtask-test", prefix, 1 << 20);

    const char *key = "a/b@1700000000000/x=1:2+3-4_5.json";
    assert_int_equal(store_put(s, key, "{\"k\":1}", 7, "application/json", err, sizeof(err)), 0);
    void *data;
    size_t len;
    assert_int_equal(store_get(s, key, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 7);
    assert_memory_equal(data, "{\"k\":1}", 7);
    free(data);
    assert_int_equal(store_put(s, "empty", "", 0, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_get(s, "empty", &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 0);
    free(data);
    assert_int_equal(store_get(s, "missing/key", &data, &len, err, sizeof(err)), 1);
    /* create only if absent (If-None-Match: *) */
    assert_int_equal(store_put_new(s, "once", "first", 5, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_put_new(s, "once", "second", 6, NULL, err, sizeof(err)), 1);
    assert_int_equal(store_get(s, "once", &data, &len, err, sizeof(err)), 0);
    assert_memory_equal(data, "first", 5);
    free(data);
    assert_int_equal(store_delete(s, key, err, sizeof(err)), 0);
    assert_int_equal(store_get(s, key, &data, &len, err, sizeof(err)), 1);
    assert_int_equal(store_delete(s, key, err, sizeof(err)), 0); /* again: fine */

    /* the get bound */
    char *big = malloc((1 << 20) + 10);
    memset(big, 'z', (1 << 20) + 10);
    assert_int_equal(store_put(s, "big", big, (1 << 20) + 10, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_get(s, "big", &data, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "larger than"));
    free(big);

    /* 1100 keys: more than one ListObjectsV2 page (1000) */
    for (int i = 0; i < 1100; i++) {
        char k[64];
        snprintf(k, sizeof(k), "many/%06d", i);
        assert_int_equal(store_put(s, k, "x", 1, NULL, err, sizeof(err)), 0);
    }
    listed_t l = {0};
    assert_int_equal(store_list(s, "many/", on_key, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 1100);
    assert_int_equal(l.unordered, 0);
    assert_int_equal(l.outside, 0);
    assert_int_equal(l.bytes, 1100);
    assert_string_equal(l.last, "many/001099");
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_list(s, "many/0010", on_key, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 100);
    store_close(s);

    /* another prefix sees none of it */
    store_t *other = open_s3("imtask-test", "unit-other-prefix/", 1 << 20);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_list(other, "many/", on_key, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 0);
    store_close(other);

    /* a bucket that does not exist: a clear error */
    store_t *nob = open_s3("imtask-no-such-bucket", "", 1 << 20);
    assert_int_equal(store_put(nob, "k", "v", 1, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "HTTP 404"));
    store_close(nob);
}

int main(void)
{
    h_env_load("", true);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_s3)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
