/* storage_test.c: the local-directory store: put/get/list/delete, replace,
 * missing keys, the size bound of get, key checks (nothing outside the
 * directory), no temporary files left, the `storage:` config section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "tasks/archive/storage.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TEST_TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/storeXXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct {
    char keys[16][128];
    uint64_t sizes[16];
    int n;
    int stop_after;
} seen_t;

static int collect(void *opaque, const char *key, uint64_t size)
{
    seen_t *s = opaque;
    if (s->n < 16) {
        snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
        s->sizes[s->n] = size;
    }
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static void test_put_get_list_delete(void **state)
{
    (void)state;
    char err[512], dir[300];
    snprintf(dir, sizeof(dir), "%s/a/b", tmpdir); /* created on open */
    store_t *s = store_open_local(dir, err, sizeof(err));
    assert_non_null(s);
    assert_string_equal(store_describe(s), strstr(store_describe(s), "local:"));
    assert_int_equal(store_put(s, "job/seg/000002.zst", "two", 3, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_put(s, "job/seg/000001.zst", "one!", 4, NULL, err, sizeof(err)), 0);
    assert_int_equal(
        store_put(s, "job/checkpoint.json", "{}", 2, "application/json", err, sizeof(err)), 0);
    assert_int_equal(store_put(s, "other/x", "", 0, NULL, err, sizeof(err)), 0);

    void *data;
    size_t len;
    assert_int_equal(store_get(s, "job/seg/000001.zst", &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "one!", 4);
    assert_int_equal(((char *)data)[4], '\0');
    free(data);
    assert_int_equal(store_get(s, "other/x", &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 0);
    free(data);
    assert_int_equal(store_get(s, "job/seg/none", &data, &len, err, sizeof(err)), 1);
    assert_null(data);
    assert_int_equal(store_get(s, "nodir/none", &data, &len, err, sizeof(err)), 1);

    /* replace */
    assert_int_equal(store_put(s, "job/seg/000002.zst", "TWO2", 4, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_get(s, "job/seg/000002.zst", &data, &len, err, sizeof(err)), 0);
    assert_memory_equal(data, "TWO2", 4);
    free(data);

    seen_t seen = {0};
    assert_int_equal(store_list(s, "job/", collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.keys[0], "job/checkpoint.json");
    assert_string_equal(seen.keys[1], "job/seg/000001.zst");
    assert_string_equal(seen.keys[2], "job/seg/000002.zst");
    assert_int_equal(seen.sizes[1], 4);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(store_list(s, "job/seg/00000", collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 2);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(store_list(s, "jo", collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 3);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(store_list(s, "", collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 4);
    memset(&seen, 0, sizeof(seen));
    seen.stop_after = 1;
    assert_int_equal(store_list(s, "", collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 1);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(store_list(s, "nothing/", collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 0);

    /* create only if absent */
    assert_int_equal(store_put_new(s, "job/new.json", "first", 5, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_put_new(s, "job/new.json", "second", 6, NULL, err, sizeof(err)), 1);
    assert_int_equal(store_get(s, "job/new.json", &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "first", 5);
    free(data);
    assert_int_equal(store_put_new(s, "fresh/dir/k", "x", 1, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_delete(s, "job/new.json", err, sizeof(err)), 0);
    assert_int_equal(store_delete(s, "fresh/dir/k", err, sizeof(err)), 0);

    assert_int_equal(store_delete(s, "job/seg/000001.zst", err, sizeof(err)), 0);
    assert_int_equal(store_delete(s, "job/seg/000001.zst", err, sizeof(err)), 0);
    assert_int_equal(store_delete(s, "zzz/none", err, sizeof(err)), 0);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(store_list(s, "job/seg/", collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 1);

    /* no temporary files left next to the objects */
    char segdir[400];
    snprintf(segdir, sizeof(segdir), "%s/job/seg", dir);
    DIR *d = opendir(segdir);
    assert_non_null(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            files++;
    }
    closedir(d);
    assert_int_equal(files, 1);
    store_close(s);
}

static void test_bad_keys(void **state)
{
    (void)state;
    char err[512];
    store_t *s = store_open_local(tmpdir, err, sizeof(err));
    assert_non_null(s);
    const char *bad[] = {"",          "/abs",    "a//b",       "a/",     "../x",
                         "a/../b",    "a/./b",   ".hidden",    "a/.tmp", "sp ace",
                         "new\nline", "q\"uote", "back\\slash"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(store_put(s, bad[i], "x", 1, NULL, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "storage key"));
        assert_int_equal(store_key_ok(bad[i]), 0);
    }
    char longkey[STORE_KEY_MAX + 2];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(store_key_ok(longkey), 0);
    const char *good[] = {"a", "a/b.c", "job@1700000000000/x=1:2+3-4_5", "a..b/c."};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(store_key_ok(good[i]), 1);
    store_close(s);
}

static void test_get_bound(void **state)
{
    (void)state;
    char err[512];
    store_config_t c = {.kind = STORE_LOCAL, .dir = tmpdir, .max_object_bytes = 1024};
    store_t *s = store_open(&c, err, sizeof(err));
    assert_non_null(s);
    char big[2048];
    memset(big, 'b', sizeof(big));
    assert_int_equal(store_put(s, "big", big, sizeof(big), NULL, err, sizeof(err)), 0);
    void *data;
    size_t len;
    assert_int_equal(store_get(s, "big", &data, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than the 1024 allowed"));
    assert_int_equal(store_put(s, "small", big, 1024, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_get(s, "small", &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 1024);
    free(data);
    store_close(s);
}

static void test_config(void **state)
{
    (void)state;
    char err[512], yaml[600];
    snprintf(yaml, sizeof(yaml), "storage:\n  dir: %s/cfg\n", tmpdir);
    cfg_t *cfg = cfg_load_string(yaml, "t.yaml", err, sizeof(err));
    assert_non_null(cfg);
    int rc = store_configure(cfg, err, sizeof(err));
    if (rc)
        fail_msg("store_configure: %s", err);
    assert_int_equal(store_configure(cfg, err, sizeof(err)), 0); /* second call: same */
    store_t *s = store_shared();
    assert_non_null(s);
    assert_ptr_equal(store_shared(), s);
    assert_int_equal(store_put(s, "r/x.json", "{}", 2, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg_finish(cfg, err, sizeof(err)), 0);
    store_shared_reset();
    cfg_destroy(cfg);

    cfg = cfg_load_string("storage:\n  kind: s3\n  s3_bucket: b\n", "t.yaml", err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(store_configure(cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "s3_endpoint"));
    cfg_destroy(cfg);

    cfg = cfg_load_string("storage:\n  kind: ftp\n", "t.yaml", err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(store_configure(cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "kind"));
    cfg_destroy(cfg);
    store_shared_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_list_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
