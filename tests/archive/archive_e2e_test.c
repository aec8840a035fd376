/* archive_e2e_test.c: the archive job against the local stack: the im-repo
 * double (grpc-go), Kafka, and for the s3 cases the S3 server (moto).
 *
 *   e2e        imtask-archive archives 20k old of 25k messages from a task:
 *              every old one in exactly one verified segment and deleted from
 *              im-repo, the new ones untouched, metrics agree
 *   windows    each crash window made by hand (archive_run in this process):
 *              after the manifest before the deletes, after part of the
 *              deletes before the checkpoint, after the segment before its
 *              manifest (a corrupt leftover), a stop through cancellation;
 *              the next run finishes with nothing lost and nothing twice;
 *              a checkpoint cursor im-repo refuses
 *   concurrent two runs of one job at once (threads): each segment committed
 *              by one of them, nothing lost, nothing twice
 *   kill9      imtask-archive killed with SIGKILL twice in the middle of a
 *              run (slowed by the double's latency) and started again, then
 *              stopped with SIGTERM (exits 0 within the grace) and started
 *              again: the run resumes from the checkpoint each time; nothing
 *              lost, nothing twice
 *
 * Usage: archive_e2e_test <imtask-archive> [s3]   (s3: e2e and kill9 with
 * storage kind s3 against IMTASK_S3_ENDPOINT). Tagged integration and
 * exclusive: it changes the double's message history and restores it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests/support/support.h"
#include "tasks/archive/segment.h"

static bool use_s3;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

static int64_t cutoff_of(int64_t old)
{
    return H_EPOCH_MS + old * H_STEP_MS;
}

/* The archive holds ids 0..old-1 exactly once each and nothing else; the
 * double lists exactly old..total-1. */
static void check_final(store_t *s, const char *job, int64_t old, int64_t total)
{
    h_archive_t a;
    h_archive_read(s, "archive", job, total, &a);
    int64_t missing = 0, twice = 0, newer = 0;
    for (int64_t i = 0; i < total; i++) {
        if (i < old && a.seen[i] == 0)
            missing++;
        if (a.seen[i] > 1)
            twice++;
        if (i >= old && a.seen[i])
            newer++;
    }
    print_message("archive %s: %" PRId64 " segments, %" PRId64 " messages\n", job, a.segments,
                  a.messages);
    CHECK(missing == 0, "%" PRId64 " old messages are in no segment", missing);
    CHECK(twice == 0, "%" PRId64 " messages are archived more than once", twice);
    CHECK(newer == 0, "%" PRId64 " messages newer than the cutoff were archived", newer);
    CHECK(a.foreign == 0, "%" PRId64 " unknown ids archived", a.foreign);
    CHECK(a.messages == old, "%" PRId64 " lines, expected %" PRId64, a.messages, old);
    CHECK(a.uncommitted == 0, "%" PRId64 " segment tries left that no manifest names",
          a.uncommitted);
    h_archive_free(&a);

    repo_client_t *r = h_repo();
    int64_t count = 0;
    uint8_t *bits = h_repo_listed(r, INT64_MAX / 2, total, &count);
    for (int64_t i = 0; i < total; i++) {
        bool listed = bits[i / 8] & (1u << (i % 8));
        CHECK(listed == (i >= old), "m%" PRId64 " is %s in im-repo", i,
              listed ? "still" : "no longer");
    }
    CHECK(count == total - old, "im-repo lists %" PRId64 ", expected %" PRId64, count, total - old);
    free(bits);
    repo_client_destroy(&r);
    CHECK(h_double_deleted() == old, "the double holds %" PRId64 " deletions, expected %" PRId64,
          h_double_deleted(), old);
}

/* Wait until the checkpoint of job says run_id is done (or next_seq reaches
 * min_seq when min_seq > 0). */
static void wait_checkpoint(store_t *s, h_child_t *c, const char *job, const char *run_id,
                            uint64_t min_seq, int timeout_s)
{
    char err[512];
    for (int64_t until = h_now_ms() + timeout_s * 1000LL;;) {
        archive_checkpoint_t cp;
        int rc = archive_checkpoint_load(s, "archive", job, &cp, err, sizeof(err));
        CHECK(rc >= 0, "checkpoint: %s", err);
        if (rc == 0) {
            if (min_seq > 0 && cp.next_seq >= min_seq) {
                CHECK(!cp.last_run_done, "the run finished before it could be interrupted");
                return;
            }
            if (min_seq == 0 && cp.last_run_done && strcmp(cp.last_run, run_id) == 0)
                return;
        }
        if (c)
            h_child_check_alive(c);
        CHECK(h_now_ms() < until, "checkpoint of %s not reached within %d s", job, timeout_s);
        h_sleep_ms(min_seq ? 10 : 100);
    }
}

static double metric(const h_child_t *c, const char *series)
{
    return ts_metric(c->port, series);
}

static bool log_has(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return found;
}

static int teardown(void **state)
{
    (void)state;
    h_double_restore();
    return 0;
}

/* ---- e2e through imtask-archive ----------------------------------------- */

static void test_e2e(void **state)
{
    (void)state;
    const int64_t old = 20000, total = 25000;
    char yaml[1024], dir[600], run_id[128];
    h_double_seed(total);
    store_t *s = h_store_open("e2e", use_s3, yaml, sizeof(yaml));
    h_topics_t t = {0};
    h_topics_create(&t, "e2e");
    h_child_t c = {0};
    snprintf(dir, sizeof(dir), "%s/e2e-child", h_env.tmp);
    h_child_start(&c, &t, yaml, "  page_size: 1000\n  segment_max_messages: 5000\n", dir);
    /* retention 1d: the slot is a day after the 20000th message */
    int64_t slot = cutoff_of(old) + 86400000;
    const char *params[] = {"retention", "1d"};
    h_produce_run(&t, "e2e", slot, params, 1);
    snprintf(run_id, sizeof(run_id), "e2e@%" PRId64, slot);
    wait_checkpoint(s, &c, "e2e", run_id, 0, 120);
    check_final(s, "e2e", old, total);
    CHECK(metric(&c, "imtask_archive_messages_total") == (double)old,
          "imtask_archive_messages_total is %.0f", metric(&c, "imtask_archive_messages_total"));
    CHECK(metric(&c, "imtask_archive_segments_total") == 4.0, "imtask_archive_segments_total");
    CHECK(metric(&c, "imtask_archive_deletes_total") == (double)old, "deletes_total");
    CHECK(metric(&c, "imtask_archive_verify_failures_total") == 0.0, "verify failures");

    /* the same slot again (a double firing): nothing more is archived */
    h_produce_run(&t, "e2e", slot, params, 1);
    for (int64_t until = h_now_ms() + 60000;
         metric(&c, "imtask_archive_runs_total{result=\"done\"}") < 2.0;) {
        CHECK(h_now_ms() < until, "the second run did not finish");
        h_sleep_ms(100);
    }
    check_final(s, "e2e", old, total);
    CHECK(metric(&c, "imtask_archive_messages_total") == (double)old, "messages after rerun");
    CHECK(h_topic_count(t.dlq) == 0, "dead letters");
    h_child_stop(&c);
    h_topics_delete(&t);
    store_close(s);
}

/* ---- crash windows by hand ---------------------------------------------- */

static bool cancel_after(void *opaque)
{
    int *left = opaque;
    return (*left)-- <= 0;
}

static archive_rc_t run(store_t *s, repo_client_t *r, const char *job, const char *run_id,
                        int64_t cutoff, archive_counts_t *c, int *cancel_left)
{
    archive_limits_t lim;
    archive_limits_default(&lim);
    lim.page_size = 1000;
    lim.segment_max_messages = 2500;
    lim.delete_batch = 700;
    archive_env_t env = {.store = s, .repo = r};
    if (cancel_left) {
        env.cancelled = cancel_after;
        env.opaque = cancel_left;
    }
    char err[1024];
    archive_rc_t rc = archive_run(&env, &lim, job, run_id, cutoff, c, err, sizeof(err));
    if (rc != ARCHIVE_OK && rc != ARCHIVE_CANCELLED)
        fail_msg("archive_run: %d: %s", rc, err);
    return rc;
}

static void get_manifest(store_t *s, const char *job, uint64_t seq, seg_manifest_t *m)
{
    char key[300], err[512];
    void *d;
    size_t n;
    seg_key_manifest(key, sizeof(key), "archive", job, seq);
    CHECK(store_get(s, key, &d, &n, err, sizeof(err)) == 0, "get %s: %s", key, err);
    CHECK(seg_manifest_parse(d, n, m, err, sizeof(err)) == 0, "%s: %s", key, err);
    free(d);
}

/* Delete the ids of segment seq from im-repo: all, or every other one. */
static void delete_segment_ids(store_t *s, repo_client_t *r, const char *job, uint64_t seq,
                               bool half)
{
    seg_manifest_t m;
    get_manifest(s, job, seq, &m);
    int64_t first = strtoll(m.first_id + 1, NULL, 10), last = strtoll(m.last_id + 1, NULL, 10);
    char **ids = calloc((size_t)(last - first + 1), sizeof(*ids));
    size_t n = 0;
    for (int64_t i = first; i <= last; i += half ? 2 : 1) {
        char buf[32];
        snprintf(buf, sizeof(buf), "m%" PRId64, i);
        ids[n++] = strdup(buf);
    }
    ImRepo__V1__DeleteMessagesRequest req = IM_REPO__V1__DELETE_MESSAGES_REQUEST__INIT;
    req.n_message_ids = n;
    req.message_ids = ids;
    ImRepo__V1__DeleteMessagesResponse *resp = NULL;
    repo_status_t st;
    CHECK(repo_delete_messages(r, &req, NULL, &resp, &st) == REPO_ERR_OK, "DeleteMessages: %s",
          st.message);
    repo_response_free(&resp->base);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

typedef enum {
    W_AFTER_MANIFEST, /* committed, no deletes, no checkpoint */
    W_PARTIAL_DELETE, /* committed, half deleted, no checkpoint */
    W_AFTER_DELETE,   /* committed, all deleted, no checkpoint */
    W_BEFORE_MANIFEST /* segment object written (here: garbage), no manifest */
} window_t;

/* Rebuild the state of a crash in window w while segment k was being done
 * (segments after k did not exist yet). */
static void make_window(store_t *s, repo_client_t *r, const char *job, uint64_t k, uint64_t nsegs,
                        int64_t total, window_t w)
{
    char key[300], err[512];
    seg_manifest_t mk;
    get_manifest(s, job, k, &mk);
    h_double_seed(total); /* every message back */
    for (uint64_t i = 0; i < k; i++)
        delete_segment_ids(s, r, job, i, false);
    if (w == W_PARTIAL_DELETE || w == W_AFTER_DELETE)
        delete_segment_ids(s, r, job, k, w == W_PARTIAL_DELETE);
    for (uint64_t i = k + 1; i < nsegs; i++) {
        seg_manifest_t mi;
        get_manifest(s, job, i, &mi);
        seg_key_data(key, sizeof(key), "archive", job, mi.object);
        CHECK(store_delete(s, key, err, sizeof(err)) == 0, "%s", err);
        seg_key_manifest(key, sizeof(key), "archive", job, i);
        CHECK(store_delete(s, key, err, sizeof(err)) == 0, "%s", err);
    }
    if (w == W_BEFORE_MANIFEST) {
        /* the try's object stays (written and verified, never committed),
         * beside a corrupt one of an earlier try */
        seg_key_manifest(key, sizeof(key), "archive", job, k);
        CHECK(store_delete(s, key, err, sizeof(err)) == 0, "%s", err);
        char obj[64];
        seg_object_name(obj, sizeof(obj), k, "00000000deadbeef");
        seg_key_data(key, sizeof(key), "archive", job, obj);
        CHECK(store_put(s, key, "not a segment", 13, NULL, err, sizeof(err)) == 0, "%s", err);
    }
    archive_checkpoint_t cp = {.next_seq = k, .archived_total = 2500 * k, .segments_total = k};
    snprintf(cp.cursor, sizeof(cp.cursor), "%s", mk.start_cursor);
    snprintf(cp.last_run, sizeof(cp.last_run), "w@1");
    char *json = archive_checkpoint_to_json(job, &cp);
    seg_key_checkpoint(key, sizeof(key), "archive", job);
    CHECK(store_put(s, key, json, strlen(json), NULL, err, sizeof(err)) == 0, "%s", err);
    free(json);
}

static void test_windows(void **state)
{
    (void)state;
    const int64_t old = 10000, total = 12000;
    const uint64_t nsegs = 4; /* 10000 / 2500 */
    char yaml[1024];
    const char *job = "windows";
    h_double_seed(total);
    store_t *s = h_store_open("windows", use_s3, yaml, sizeof(yaml));
    repo_client_t *r = h_repo();
    archive_counts_t c;
    int64_t cutoff = cutoff_of(old);

    CHECK(run(s, r, job, "w@1", cutoff, &c, NULL) == ARCHIVE_OK, "first run");
    CHECK(c.messages == (uint64_t)old && c.segments == nsegs && c.recovered == 0,
          "first run: %" PRIu64 " messages, %" PRIu64 " segments", c.messages, c.segments);
    CHECK(c.deleted == (uint64_t)old, "first run deleted %" PRIu64, c.deleted);
    check_final(s, job, old, total);
    /* the same run again: nothing to do */
    CHECK(run(s, r, job, "w@1", cutoff, &c, NULL) == ARCHIVE_OK && c.messages == 0 &&
              c.segments == 0,
          "a second run archived %" PRIu64, c.messages);

    struct {
        window_t w;
        uint64_t k;
        const char *name;
        uint64_t want_recovered, want_new_segments;
    } cases[] = {
        {W_AFTER_MANIFEST, 1, "after the manifest, before the deletes", 1, 2},
        {W_PARTIAL_DELETE, 2, "after half of the deletes", 1, 1},
        {W_AFTER_DELETE, 3, "after the deletes, before the checkpoint", 1, 0},
        {W_BEFORE_MANIFEST, 2, "after the segment, before its manifest", 0, 2},
        {W_AFTER_MANIFEST, 0, "after the first manifest", 1, 3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("crash window: %s (segment %" PRIu64 ")\n", cases[i].name, cases[i].k);
        make_window(s, r, job, cases[i].k, nsegs, total, cases[i].w);
        CHECK(run(s, r, job, "w@1", cutoff, &c, NULL) == ARCHIVE_OK, "%s", cases[i].name);
        CHECK(c.recovered == cases[i].want_recovered && c.segments == cases[i].want_new_segments,
              "%s: %" PRIu64 " recovered, %" PRIu64 " new segments", cases[i].name, c.recovered,
              c.segments);
        check_final(s, job, old, total);
    }

    /* a stop (cancellation) in the middle, then the rest */
    const char *job2 = "cancelled";
    h_double_seed(total);
    int left = 12; /* cancelled() is asked per segment, page and delete batch */
    CHECK(run(s, r, job2, "c@1", cutoff, &c, &left) == ARCHIVE_CANCELLED, "cancel");
    CHECK(c.segments > 0 && c.segments < nsegs, "cancelled after %" PRIu64 " segments", c.segments);
    CHECK(run(s, r, job2, "c@1", cutoff, &c, NULL) == ARCHIVE_OK, "after the cancel");
    check_final(s, job2, old, total);

    /* a checkpoint whose cursor im-repo refuses: the run starts over from the
     * oldest message left */
    const char *job3 = "badcursor";
    h_double_seed(total);
    archive_checkpoint_t cp = {.next_seq = 0};
    snprintf(cp.cursor, sizeof(cp.cursor), "not-a-cursor");
    char key[300], err[512];
    char *json = archive_checkpoint_to_json(job3, &cp);
    seg_key_checkpoint(key, sizeof(key), "archive", job3);
    CHECK(store_put(s, key, json, strlen(json), NULL, err, sizeof(err)) == 0, "%s", err);
    free(json);
    CHECK(run(s, r, job3, "b@1", cutoff, &c, NULL) == ARCHIVE_OK, "with a refused cursor");
    check_final(s, job3, old, total);

    repo_client_destroy(&r);
    store_close(s);
}

/* ---- two runs of one job at once ---------------------------------------- */

typedef struct {
    store_t *s;
    repo_client_t *r;
    const char *job, *run_id;
    int64_t cutoff;
    archive_counts_t c;
    archive_rc_t rc;
    char err[1024];
} racer_t;

static void *racer(void *arg)
{
    racer_t *x = arg;
    archive_limits_t lim;
    archive_limits_default(&lim);
    lim.page_size = 500;
    lim.segment_max_messages = 1000;
    lim.delete_batch = 400;
    archive_env_t env = {.store = x->s, .repo = x->r};
    x->rc = archive_run(&env, &lim, x->job, x->run_id, x->cutoff, &x->c, x->err, sizeof(x->err));
    return NULL;
}

/* Two runners of the same job at the same time (what a task redelivered
 * after a rebalance while the first owner still runs it amounts to): a
 * segment is committed by exactly one of them (create-only manifests, each
 * try its own object), the other drops its try and finishes the committed
 * one; nothing lost, nothing twice. Whether the runs collide in a given
 * round depends on timing, so several rounds; correctness is asserted every
 * time, collisions only counted. */
static void test_concurrent(void **state)
{
    (void)state;
    const int64_t old = 8000, total = 9000;
    char yaml[1024], job[32];
    store_t *s = h_store_open("concurrent", use_s3, yaml, sizeof(yaml));
    repo_client_t *r = h_repo();
    uint64_t conflicts = 0, recovered = 0;
    for (int round = 0; round < 3; round++) {
        h_double_seed(total);
        snprintf(job, sizeof(job), "race%d", round);
        racer_t a = {.s = s, .r = r, .job = job, .run_id = "race@1", .cutoff = cutoff_of(old)};
        racer_t b = a;
        b.run_id = "race@2";
        pthread_t ta, tb;
        CHECK(pthread_create(&ta, NULL, racer, &a) == 0, "pthread_create");
        CHECK(pthread_create(&tb, NULL, racer, &b) == 0, "pthread_create");
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        CHECK(a.rc == ARCHIVE_OK && b.rc == ARCHIVE_OK, "runs: %d (%s), %d (%s)", a.rc, a.err, b.rc,
              b.err);
        check_final(s, job, old, total);
        CHECK(a.c.messages + b.c.messages == (uint64_t)old,
              "the runs committed %" PRIu64 " + %" PRIu64 " messages, expected %" PRId64 " in all",
              a.c.messages, b.c.messages, old);
        conflicts += a.c.conflicts + b.c.conflicts;
        recovered += a.c.recovered + b.c.recovered;
    }
    print_message("3 rounds: %" PRIu64 " tries dropped for the other's commit, %" PRIu64
                  " committed segments finished by the other run\n",
                  conflicts, recovered);
    repo_client_destroy(&r);
    store_close(s);
}

/* ---- kill -9 of imtask-archive ------------------------------------------ */

static void test_kill9(void **state)
{
    (void)state;
    const int64_t old = 30000, total = 32000;
    char yaml[1024], dir[600], run_id[128];
    h_double_seed(total);
    h_double_latency(15); /* every call: so the run lasts long enough to be killed */
    store_t *s = h_store_open("kill9", use_s3, yaml, sizeof(yaml));
    h_topics_t t = {0};
    h_topics_create(&t, "kill9");
    h_child_t c = {0};
    snprintf(dir, sizeof(dir), "%s/kill9-child", h_env.tmp);
    const char *ay = "  page_size: 500\n  segment_max_messages: 1500\n  delete_batch: 500\n";
    h_child_start(&c, &t, yaml, ay, dir);
    int64_t slot = cutoff_of(old) + 7 * 86400000LL;
    const char *params[] = {"retention", "7d"};
    h_produce_run(&t, "kill9", slot, params, 1);
    snprintf(run_id, sizeof(run_id), "kill9@%" PRId64, slot);

    wait_checkpoint(s, &c, "kill9", run_id, 4, 120);
    h_child_kill9(&c);
    print_message("killed at segment >= 4\n");
    h_child_start(&c, &t, yaml, ay, dir);
    wait_checkpoint(s, &c, "kill9", run_id, 11, 120);
    h_child_kill9(&c);
    print_message("killed at segment >= 11\n");
    h_child_start(&c, &t, yaml, ay, dir);
    /* SIGTERM in the middle, with im-repo slow enough that the rest cannot be
     * done within the 5 s grace: the run stops at a safe point (cancelled),
     * the binary exits 0, the task is consumed again after the restart */
    wait_checkpoint(s, &c, "kill9", run_id, 15, 120);
    h_double_latency(500);
    h_child_stop(&c);
    print_message("stopped with SIGTERM at segment >= 15 (%s)\n",
                  log_has(c.log, "resumes from the checkpoint") ? "the run was cancelled"
                                                                : "the run ended in the grace");
    h_double_latency(0);
    h_child_start(&c, &t, yaml, ay, dir);
    wait_checkpoint(s, &c, "kill9", run_id, 0, 180);
    check_final(s, "kill9", old, total);
    CHECK(h_topic_count(t.dlq) == 0, "dead letters");
    h_child_stop(&c);
    h_topics_delete(&t);
    store_close(s);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <imtask-archive> [s3]\n", argv[0]);
        return 2;
    }
    use_s3 = argc > 2 && strcmp(argv[2], "s3") == 0;
    h_env_load(argv[1], use_s3);
    const struct CMUnitTest local[] = {
        cmocka_unit_test_teardown(test_e2e, teardown),
        cmocka_unit_test_teardown(test_windows, teardown),
        cmocka_unit_test_teardown(test_concurrent, teardown),
        cmocka_unit_test_teardown(test_kill9, teardown),
    };
    const struct CMUnitTest s3[] = {
        cmocka_unit_test_teardown(test_e2e, teardown),
        cmocka_unit_test_teardown(test_concurrent, teardown),
        cmocka_unit_test_teardown(test_kill9, teardown),
    };
    if (use_s3)
        return cmocka_run_group_tests_name("archive on s3", s3, NULL, NULL);
    return cmocka_run_group_tests_name("archive on a local directory", local, NULL, NULL);
}
