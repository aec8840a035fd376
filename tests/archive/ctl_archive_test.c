/* ctl_archive_test.c: imtask-ctl archive ls|verify|cat on a local store
 * built here (three committed segments of a job, an uncommitted leftover, a
 * checkpoint): what verify reports, that cat gives back exactly the NDJSON
 * that was archived (all, one segment, a created_at range), and that a
 * corrupted segment makes verify and cat fail. No services. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tasks/archive/archive_run.h"
#include "tasks/archive/segment.h"
#include "tasks/archive/storage.h"

#define BASE_MS 1735689600000LL
#define PER_SEG 100
#define NSEG 3

static const char *ctl;
static char dir[300];
static char *expected[NSEG]; /* NDJSON of each segment */
static size_t expected_len[NSEG];

static void make_message(ImRepo__V1__Message *m, int64_t i, char *id, char *content)
{
    im_repo__v1__message__init(m);
    sprintf(id, "m%" PRId64, i);
    sprintf(content, "hello \"%" PRId64 "\"\n", i);
    m->id = id;
    m->conversation_id = "single:u1:u2";
    m->sender_id = "u1";
    m->message_type = 1;
    m->content = content;
    m->seq_id = i + 1;
    m->created_at = BASE_MS + i * 60000;
    m->updated_at = m->created_at;
}

static int setup(void **state)
{
    (void)state;
    char err[512], key[300];
    const char *t = getenv("TEST_TMPDIR");
    snprintf(dir, sizeof(dir), "%s/ctlXXXXXX", t ? t : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    store_t *s = store_open_local(dir, err, sizeof(err));
    seg_writer_t *w = seg_writer_new(3, err, sizeof(err));
    if (!s || !w)
        return -1;
    for (int k = 0; k < NSEG; k++) {
        seg_writer_reset(w);
        expected[k] = malloc(PER_SEG * 512);
        expected_len[k] = 0;
        for (int64_t i = (int64_t)k * PER_SEG; i < (int64_t)(k + 1) * PER_SEG; i++) {
            ImRepo__V1__Message m;
            char id[32], content[64];
            make_message(&m, i, id, content);
            if (seg_writer_add(w, &m, err, sizeof(err)))
                return -1;
            expected_len[k] += seg_message_json(&m, expected[k] + expected_len[k], 512);
            expected[k][expected_len[k]++] = '\n';
        }
        seg_manifest_t man;
        memset(&man, 0, sizeof(man));
        snprintf(man.job, sizeof(man.job), "j");
        snprintf(man.run, sizeof(man.run), "j@1");
        man.seq = (uint64_t)k;
        seg_object_name(man.object, sizeof(man.object), (uint64_t)k, "00000000000000aa");
        const void *data;
        size_t len;
        if (seg_writer_finish(w, &man, &data, &len, err, sizeof(err)))
            return -1;
        seg_key_data(key, sizeof(key), "archive", "j", man.object);
        if (store_put(s, key, data, len, NULL, err, sizeof(err)))
            return -1;
        char *mj = seg_manifest_to_json(&man);
        seg_key_manifest(key, sizeof(key), "archive", "j", (uint64_t)k);
        if (store_put(s, key, mj, strlen(mj), NULL, err, sizeof(err)))
            return -1;
        free(mj);
    }
    /* leftovers of tries that were not committed: one beside a committed
     * segment, one after the last */
    seg_key_data(key, sizeof(key), "archive", "j", "000000000001.00000000000000bb.ndjson.zst");
    if (store_put(s, key, "other try", 9, NULL, err, sizeof(err)))
        return -1;
    seg_key_data(key, sizeof(key), "archive", "j", "000000000003.00000000000000cc.ndjson.zst");
    if (store_put(s, key, "partial", 7, NULL, err, sizeof(err)))
        return -1;
    archive_checkpoint_t cp = {.next_seq = NSEG,
                               .archived_total = NSEG * PER_SEG,
                               .segments_total = NSEG,
                               .last_run_done = true};
    snprintf(cp.last_run, sizeof(cp.last_run), "j@1");
    char *cj = archive_checkpoint_to_json("j", &cp);
    seg_key_checkpoint(key, sizeof(key), "archive", "j");
    if (store_put(s, key, cj, strlen(cj), NULL, err, sizeof(err)))
        return -1;
    free(cj);
    seg_writer_destroy(w);
    store_close(s);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    for (int k = 0; k < NSEG; k++)
        free(expected[k]);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run imtask-ctl with args; stdout into a malloc'd buffer; returns the exit
 * status. */
static int run_ctl(const char *args, char **out, size_t *outlen)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' %s 2>/dev/null", ctl, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t r; (r = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += r;
        if (cap - n < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[n] = '\0';
    int st = pclose(p);
    *out = buf;
    *outlen = n;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_verify_ls(void **state)
{
    (void)state;
    char args[600], *out;
    size_t n;
    snprintf(args, sizeof(args), "archive verify --dir '%s'", dir);
    assert_int_equal(run_ctl(args, &out, &n), 0);
    assert_non_null(strstr(out, "3 segments verified (300 messages), 0 failed"));
    assert_non_null(strstr(out, "SKIP j/000000000003.00000000000000cc.ndjson.zst: no manifest"));
    assert_non_null(strstr(out, "SKIP j/000000000001.00000000000000bb.ndjson.zst: no manifest"));
    assert_null(strstr(out, "FAIL"));
    free(out);
    snprintf(args, sizeof(args), "archive ls --dir '%s' --wide", dir);
    assert_int_equal(run_ctl(args, &out, &n), 0);
    assert_non_null(strstr(out, "(uncommitted try)"));
    assert_non_null(strstr(out, "m100"));
    assert_non_null(strstr(out, "3 segments, 300 messages"));
    assert_non_null(strstr(out, "checkpoint j: next seq 3, 300 messages archived"));
    free(out);
}

static void test_cat(void **state)
{
    (void)state;
    char args[600], *out;
    size_t n;
    snprintf(args, sizeof(args), "archive cat --dir '%s' --job j", dir);
    assert_int_equal(run_ctl(args, &out, &n), 0);
    size_t total = 0;
    for (int k = 0; k < NSEG; k++) {
        assert_true(total + expected_len[k] <= n);
        assert_memory_equal(out + total, expected[k], expected_len[k]);
        total += expected_len[k];
    }
    assert_int_equal(n, total);
    free(out);

    snprintf(args, sizeof(args), "archive cat --dir '%s' --job j --seq 1", dir);
    assert_int_equal(run_ctl(args, &out, &n), 0);
    assert_int_equal(n, expected_len[1]);
    assert_memory_equal(out, expected[1], n);
    free(out);

    /* messages 150..249: created_at in [BASE + 150 min, BASE + 250 min) */
    snprintf(args, sizeof(args), "archive cat --dir '%s' --job j --from %lld --to %lld", dir,
             BASE_MS + 150 * 60000LL, BASE_MS + 250 * 60000LL);
    assert_int_equal(run_ctl(args, &out, &n), 0);
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += out[i] == '\n';
    assert_int_equal(lines, 100);
    assert_non_null(strstr(out, "{\"id\":\"m150\","));
    assert_non_null(strstr(out, "{\"id\":\"m249\","));
    assert_null(strstr(out, "{\"id\":\"m149\","));
    assert_null(strstr(out, "{\"id\":\"m250\","));
    free(out);

    snprintf(args, sizeof(args), "archive cat --dir '%s' --job j --seq 7", dir);
    assert_int_equal(run_ctl(args, &out, &n), 1);
    free(out);
    snprintf(args, sizeof(args), "archive cat --dir '%s'", dir);
    assert_int_equal(run_ctl(args, &out, &n), 2); /* --job is required */
    free(out);
    assert_int_equal(run_ctl("archive ls", &out, &n), 1); /* neither --dir nor --config */
    free(out);
}

static void test_corrupt(void **state)
{
    (void)state;
    char path[600], args[600], *out;
    size_t n;
    snprintf(path, sizeof(path), "%s/archive/j/segments/000000000001.00000000000000aa.ndjson.zst",
             dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 40, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 40, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
    snprintf(args, sizeof(args), "archive verify --dir '%s'", dir);
    assert_int_equal(run_ctl(args, &out, &n), 1);
    assert_non_null(strstr(out, "FAIL"));
    assert_non_null(strstr(out, "2 segments verified (200 messages), 1 failed"));
    free(out);
    snprintf(args, sizeof(args), "archive cat --dir '%s' --job j --seq 1", dir);
    assert_int_equal(run_ctl(args, &out, &n), 1);
    assert_int_equal(n, 0); /* nothing of a bad segment is written */
    free(out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <imtask-ctl>\n", argv[0]);
        return 2;
    }
    ctl = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_ls),
        cmocka_unit_test(test_cat),
        cmocka_unit_test(test_corrupt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
