/* audit_e2e_test.c: imtask-audit (argv[1]) end to end against the REAL
 * broker, the im-repo double and the moderation double of the local stack
 * (scripts/stack.sh up). Each case has its own topics (Admin API), consumer
 * group, im-repo listener (/spawn, so the call counts are its own) and
 * moderation scenario (/s/<id>/..., its own rules, faults and counters).
 *
 *   decisions_{generic,tencent,openai}  block / review / pass, fetched from
 *       im-repo and inline, with and without a message id, an image URL: the
 *       result records (decision, labels, provider, request id), im-repo's
 *       audit status read back through GetMessage, the calls on our listener,
 *       the double's counters (Tencent: every TC3 signature accepted), metrics
 *   missing_message  a message that does not exist and one deleted: dead-
 *       lettered (permanent) with a reason saying so; the others go on
 *   outage_breaker   the provider down (HTTP 503, then connections reset): the
 *       breaker opens, tasks wait in the retry topic (refusals counted), and
 *       after recovery every task has its provider decision, none dead-lettered
 *   fail_closed      retries used up with on_exhausted review: review by
 *       policy, status set in im-repo
 *   exhausted_dead_letter  the same with on_exhausted dead_letter: the DLQ
 *   provider_faults  malformed answers retried to a decision; 429 with
 *       Retry-After 3: the retry record is due >= 3 s after it was written
 *
 * No assertion is about timings; every wait is bounded. Environment:
 * IMTASK_KAFKA_BROKERS, IMTASK_IMREPO_ADDR, IMTASK_IMREPO_ADMIN,
 * IMTASK_MODERATION_ADDR (defaults: the stack's addresses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

#define WAIT_S 90
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

static e2e_case_t g_case;
static e2e_rec_t g_recs[E2E_MAX_RECS];
static int g_nrecs;

static int teardown(void **state)
{
    (void)state;
    e2e_recs_free(g_recs, g_nrecs);
    g_nrecs = 0;
    e2e_case_close(&g_case);
    return 0;
}

static const e2e_rec_t *find_result(const char *task_id)
{
    for (int i = 0; i < g_nrecs; i++) {
        if (g_recs[i].result && strcmp(g_recs[i].result->task_id, task_id) == 0)
            return &g_recs[i];
    }
    return NULL;
}

static int read_results(e2e_case_t *c, int want)
{
    e2e_recs_free(g_recs, g_nrecs);
    g_nrecs = e2e_read_topic(c->topic_result, g_recs, E2E_MAX_RECS, want, WAIT_S);
    return g_nrecs;
}

static void scenario_with_rules(e2e_case_t *c, const char *blk, const char *rev, int latency)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"latency_ms\":%d,\"rules\":[{\"text\":\"message %s\",\"match\":\"exact\","
             "\"decision\":\"block\",\"label\":\"Porn\"},{\"text\":\"message %s\",\"match\":"
             "\"exact\",\"decision\":\"review\",\"label\":\"Ad\"}]}",
             latency, blk + 1, rev + 1); /* "m123" -> "message 123" */
    e2e_scenario_put(c, json);
}

/* ---- decisions, each provider shape ---------------------------------------- */

static void expect_decision(const char *task_id, int decision, const char *provider, bool by_policy,
                            bool status_set)
{
    const e2e_rec_t *r = find_result(task_id);
    CHECK(r != NULL, "no result for task %s", task_id);
    const Imtask__V1__AuditResult *a = r->result;
    CHECK((int)a->decision == decision, "task %s: decision %d, want %d (reason \"%s\")", task_id,
          (int)a->decision, decision, a->reason);
    assert_string_equal(a->provider, provider);
    CHECK(a->by_policy == by_policy, "task %s: by_policy %d (reason \"%s\")", task_id, a->by_policy,
          a->reason);
    CHECK(a->status_set == status_set, "task %s: status_set %d", task_id, a->status_set);
    assert_string_equal(r->task_id, task_id); /* header */
    assert_true(a->decided_at_ms > 0);
    assert_int_equal(strlen(a->trace_id), 32);
    if (!by_policy) {
        CHECK(a->provider_request_id[0], "task %s: no provider request id", task_id);
        if (decision != IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_PASS)
            CHECK(a->n_labels > 0 && a->labels[0]->label[0] && a->labels[0]->score > 0.5,
                  "task %s: no label with a score", task_id);
    }
}

static void run_decisions(const char *provider, const char *tag)
{
    e2e_case_t *c = &g_case;
    char mb[32], mr[32], mp[32], mi[32], mimg[32];
    bool tencent = strcmp(provider, "tencent") == 0;
    e2e_case_open(c, tag);
    e2e_message_id(mb, sizeof(mb));
    e2e_message_id(mr, sizeof(mr));
    e2e_message_id(mp, sizeof(mp));
    e2e_message_id(mi, sizeof(mi));
    e2e_message_id(mimg, sizeof(mimg));
    scenario_with_rules(c, mb, mr, 5);
    e2e_child_start(c, &(e2e_child_opts_t){.provider = provider});

    e2e_produce_task(c, "t-block", mb, NULL, 0, NULL);
    e2e_produce_task(c, "t-review", mr, NULL, 0, NULL);
    e2e_produce_task(c, "t-pass", mp, NULL, 0, NULL);
    e2e_produce_task(c, "t-inline-review", mi, "hello, reviewme please", 1, "u1");
    e2e_produce_task(c, "t-inline-only", NULL, "an ordinary sentence", 0, "u2");
    e2e_produce_task(c, "t-image", mimg, "https://img.example.com/cat.png", 2, "u3");
    e2e_produce_flush(c);
    CHECK(read_results(c, 6) == 6, "%d of 6 results", g_nrecs);

    const int B = IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_BLOCK;
    const int R = IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_REVIEW;
    const int P = IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_PASS;
    expect_decision("t-block", B, provider, false, true);
    expect_decision("t-review", R, provider, false, true);
    expect_decision("t-pass", P, provider, false, false);
    expect_decision("t-inline-review", R, provider, false, true);
    expect_decision("t-inline-only", P, provider, false, false);
    if (tencent) { /* TextModeration cannot judge images: the policy (review) decides */
        expect_decision("t-image", R, provider, true, true);
        assert_non_null(strstr(find_result("t-image")->result->reason, "cannot judge image_url"));
    } else {
        expect_decision("t-image", P, provider, false, false);
    }
    /* keys: the message id, else the task id; sender/conversation filled */
    const e2e_rec_t *r = find_result("t-block");
    assert_string_equal(r->key, mb);
    assert_string_equal(r->result->message_id, mb);
    assert_true(r->result->sender_id[0] && r->result->conversation_id[0]);
    assert_string_equal(find_result("t-inline-only")->key, "t-inline-only");
    if (strcmp(provider, "openai") != 0)
        assert_string_equal(r->result->labels[0]->label, "Porn");

    /* im-repo's audit status, read back from the double */
    assert_int_equal(e2e_audit_status(c, mb), 3);
    assert_int_equal(e2e_audit_status(c, mr), 2);
    assert_int_equal(e2e_audit_status(c, mi), 2);
    assert_int_equal(e2e_audit_status(c, mp), 0);
    assert_int_equal(e2e_audit_status(c, mimg), tencent ? 2 : 0);
    /* 3 GetMessage + 3 or 4 SetMessageAuditStatus on our own listener
     * (GetMessage for the image too: it has a message id but inline content: no) */
    int64_t calls = e2e_listener_calls(c);
    CHECK(calls >= (tencent ? 7 : 6), "%lld im-repo calls on our listener", (long long)calls);

    /* the double saw our shape; every Tencent request was signed right */
    const char *shape = tencent                           ? "by_shape.tencent"
                        : strcmp(provider, "openai") == 0 ? "by_shape.openai"
                                                          : "by_shape.generic";
    CHECK(e2e_scenario_stat(c, shape) >= (tencent ? 5 : 6), "%s: %g", shape,
          e2e_scenario_stat(c, shape));
    assert_true(e2e_scenario_stat(c, "signature_failures") == 0);

    char series[256];
    snprintf(series, sizeof(series),
             "imtask_audit_decisions_total{provider=\"%s\",decision=\"block\",by=\"provider\"}",
             provider);
    CHECK(e2e_metric(c, series) >= 1, "%s = %g", series, e2e_metric(c, series));
    snprintf(series, sizeof(series), "imtask_audit_provider_seconds_count{provider=\"%s\"}",
             provider);
    CHECK(e2e_metric(c, series) >= 5, "%s = %g", series, e2e_metric(c, series));
    CHECK(e2e_topic_count(c->topic_dlq) == 0, "dead-lettered records");
    e2e_child_stop(c);
    c->passed = true;
}

static void test_decisions_generic(void **state)
{
    (void)state;
    run_decisions("generic", "gen");
}

static void test_decisions_tencent(void **state)
{
    (void)state;
    run_decisions("tencent", "tms");
}

static void test_decisions_openai(void **state)
{
    (void)state;
    run_decisions("openai", "oai");
}

/* ---- a message that no longer exists ---------------------------------------- */

static void test_missing_message(void **state)
{
    e2e_case_t *c = &g_case;
    char mdel[32], mok[32];
    (void)state;
    e2e_case_open(c, "missing");
    e2e_message_id(mdel, sizeof(mdel));
    e2e_message_id(mok, sizeof(mok));
    e2e_delete_message(c, mdel);
    e2e_scenario_put(c, "{}");
    e2e_child_start(c, &(e2e_child_opts_t){.provider = "generic"});
    e2e_produce_task(c, "t-gone", "gone-no-such-message", NULL, 0, NULL);
    e2e_produce_task(c, "t-deleted", mdel, NULL, 0, NULL);
    e2e_produce_task(c, "t-ok", mok, NULL, 0, NULL);
    e2e_produce_task(c, "t-empty", NULL, NULL, 0, NULL); /* neither id nor content */
    e2e_produce_flush(c);
    CHECK(read_results(c, 1) == 1, "the existing message was not decided");
    assert_non_null(find_result("t-ok"));
    e2e_rec_t dlq[8];
    int n = e2e_read_topic(c->topic_dlq, dlq, 8, 3, WAIT_S);
    CHECK(n == 3, "%d of 3 dead-letter records", n);
    bool gone = false, deleted = false, empty = false;
    for (int i = 0; i < n; i++) {
        assert_string_equal(dlq[i].dlq_kind, "permanent");
        if (strcmp(dlq[i].task_id, "t-gone") == 0) {
            gone = true;
            CHECK(strstr(dlq[i].dlq_message, "message gone-no-such-message no longer exists in "
                                             "im-repo (GetMessage: NOT_FOUND"),
                  "reason: %s", dlq[i].dlq_message);
        } else if (strcmp(dlq[i].task_id, "t-deleted") == 0) {
            deleted = true;
            CHECK(strstr(dlq[i].dlq_message, "no longer exists in im-repo (deleted)"), "reason: %s",
                  dlq[i].dlq_message);
        } else if (strcmp(dlq[i].task_id, "t-empty") == 0) {
            empty = true;
            CHECK(strstr(dlq[i].dlq_message, "neither message_id nor content"), "reason: %s",
                  dlq[i].dlq_message);
        }
    }
    assert_true(gone && deleted && empty);
    CHECK(e2e_metric(
              c, "imtask_audit_imrepo_errors_total{method=\"GetMessage\",code=\"NOT_FOUND\"}") >= 1,
          "imrepo error metric");
    e2e_child_stop(c);
    c->passed = true;
}

/* ---- outage: breaker opens, retry topic, nothing lost ------------------------ */

static bool breaker_is(e2e_case_t *c, int state)
{
    return e2e_metric(c, "imtask_audit_breaker_state{provider=\"generic\"}") == state;
}

static void test_outage_breaker(void **state)
{
    e2e_case_t *c = &g_case;
    enum { N1 = 30, N2 = 10 };
    char ids[N1 + N2][32], tid[32];
    (void)state;
    e2e_case_open(c, "outage");
    e2e_scenario_put(c, "{\"latency_ms\":5}");
    e2e_scenario_outage(c, "503");
    e2e_child_start(
        c, &(e2e_child_opts_t){.provider = "generic",
                               .breaker_yaml = "  failure_threshold: 3\n  open_for: 500ms\n"
                                               "  open_max: 2s\n  half_open_probes: 2\n"
                                               "  retry_delay: 1s\n",
                               .retry_yaml = "  local_attempts: 2\n  local_backoff_initial: 50ms\n"
                                             "  local_backoff_max: 200ms\n  max_attempts: 100\n"
                                             "  backoff_initial: 300ms\n  backoff_max: 1s\n"});
    for (int i = 0; i < N1; i++) {
        e2e_message_id(ids[i], sizeof(ids[i]));
        snprintf(tid, sizeof(tid), "t-out-%02d", i);
        e2e_produce_task(c, tid, ids[i], NULL, 0, NULL);
    }
    e2e_produce_flush(c);
    /* the breaker opens and refused tasks wait in the retry topic */
    CHECK(E2E_WAIT(breaker_is(c, 1) && e2e_topic_count(c->topic_retry) > 0, WAIT_S),
          "breaker state %g, retry records %lld",
          e2e_metric(c, "imtask_audit_breaker_state{provider=\"generic\"}"),
          (long long)e2e_topic_count(c->topic_retry));
    CHECK(E2E_WAIT(e2e_metric(c, "imtask_audit_breaker_rejected_total{provider=\"generic\"}") > 0,
                   WAIT_S),
          "no task was refused by the open breaker");
    e2e_scenario_outage(c, NULL); /* the provider is back */
    CHECK(read_results(c, N1) == N1, "%d of %d results after recovery", g_nrecs, N1);
    CHECK(E2E_WAIT(breaker_is(c, 0), WAIT_S), "the breaker did not close");

    /* again, with connections reset instead of 503s */
    e2e_scenario_outage(c, "reset");
    for (int i = N1; i < N1 + N2; i++) {
        e2e_message_id(ids[i], sizeof(ids[i]));
        snprintf(tid, sizeof(tid), "t-out-%02d", i);
        e2e_produce_task(c, tid, ids[i], NULL, 0, NULL);
    }
    e2e_produce_flush(c);
    CHECK(E2E_WAIT(breaker_is(c, 1), WAIT_S), "the breaker did not open on resets");
    e2e_scenario_outage(c, NULL);
    CHECK(read_results(c, N1 + N2) == N1 + N2, "%d of %d results", g_nrecs, N1 + N2);

    /* every task decided by the provider, none lost, none dead-lettered */
    for (int i = 0; i < N1 + N2; i++) {
        snprintf(tid, sizeof(tid), "t-out-%02d", i);
        const e2e_rec_t *r = find_result(tid);
        CHECK(r != NULL, "no result for %s", tid);
        CHECK(!r->result->by_policy, "%s decided by policy: %s", tid, r->result->reason);
        assert_string_equal(r->result->message_id, ids[i]);
    }
    CHECK(e2e_topic_count(c->topic_dlq) == 0, "dead-lettered during the outage");
    CHECK(e2e_metric(
              c, "imtask_audit_breaker_transitions_total{provider=\"generic\",to=\"open\"}") >= 2,
          "open transitions");
    CHECK(e2e_metric(
              c, "imtask_audit_breaker_transitions_total{provider=\"generic\",to=\"closed\"}") >= 1,
          "closed transitions");
    CHECK(e2e_metric(c, "imtask_audit_provider_requests_total{provider=\"generic\","
                        "outcome=\"unavailable\"}") >= 3,
          "503s counted");
    CHECK(e2e_metric(c, "imtask_audit_provider_requests_total{provider=\"generic\","
                        "outcome=\"transport\"}") >= 1,
          "resets counted");
    e2e_child_stop(c);
    c->passed = true;
}

/* ---- retries used up ----------------------------------------------------------- */

static const char exhaust_retry[] = "  local_attempts: 2\n  local_backoff_initial: 20ms\n"
                                    "  local_backoff_max: 100ms\n  max_attempts: 2\n"
                                    "  backoff_initial: 200ms\n  backoff_max: 300ms\n";

static void test_fail_closed(void **state)
{
    e2e_case_t *c = &g_case;
    char m[3][32], tid[32];
    (void)state;
    e2e_case_open(c, "failclosed");
    e2e_scenario_put(c, "{}");
    e2e_scenario_outage(c, "503");
    e2e_child_start(c, &(e2e_child_opts_t){.provider = "generic", .retry_yaml = exhaust_retry});
    for (int i = 0; i < 3; i++) {
        e2e_message_id(m[i], sizeof(m[i]));
        snprintf(tid, sizeof(tid), "t-fc-%d", i);
        e2e_produce_task(c, tid, m[i], NULL, 0, NULL);
    }
    e2e_produce_flush(c);
    CHECK(read_results(c, 3) == 3, "%d of 3 fail-closed results", g_nrecs);
    for (int i = 0; i < 3; i++) {
        snprintf(tid, sizeof(tid), "t-fc-%d", i);
        expect_decision(tid, IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_REVIEW, "generic", true,
                        true);
        const Imtask__V1__AuditResult *a = find_result(tid)->result;
        CHECK(strstr(a->reason, "fail closed") && strstr(a->reason, "retries used up"),
              "reason: %s", a->reason);
        assert_int_equal(a->attempt, 1); /* decided on the last (second) delivery */
        assert_int_equal(e2e_audit_status(c, m[i]), 2);
    }
    CHECK(e2e_topic_count(c->topic_dlq) == 0, "dead-lettered despite on_exhausted: review");
    CHECK(e2e_metric(c, "imtask_audit_decisions_total{provider=\"generic\",decision=\"review\","
                        "by=\"policy\"}") == 3,
          "policy decisions");
    e2e_scenario_outage(c, NULL);
    e2e_child_stop(c);
    c->passed = true;
}

static void test_exhausted_dead_letter(void **state)
{
    e2e_case_t *c = &g_case;
    char m[32];
    (void)state;
    e2e_case_open(c, "exhdlq");
    e2e_scenario_put(c, "{}");
    e2e_scenario_outage(c, "503");
    e2e_child_start(c, &(e2e_child_opts_t){.provider = "generic",
                                           .retry_yaml = exhaust_retry,
                                           .on_exhausted = "dead_letter"});
    e2e_message_id(m, sizeof(m));
    e2e_produce_task(c, "t-exh", m, NULL, 0, NULL);
    e2e_produce_task(c, "t-exh-img", NULL, "x", 2, NULL); /* generic judges images: same path */
    e2e_produce_flush(c);
    e2e_rec_t dlq[4];
    int n = e2e_read_topic(c->topic_dlq, dlq, 4, 2, WAIT_S);
    CHECK(n == 2, "%d of 2 dead-letter records", n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(dlq[i].dlq_kind, "retries_exhausted");
        CHECK(strstr(dlq[i].dlq_message, "unavailable: HTTP 503"), "reason: %s",
              dlq[i].dlq_message);
    }
    CHECK(e2e_topic_count(c->topic_result) == 0, "a result despite the outage");
    assert_int_equal(e2e_audit_status(c, m), 0);
    e2e_scenario_outage(c, NULL);
    e2e_child_stop(c);
    c->passed = true;
}

/* ---- malformed answers, 429 with Retry-After ------------------------------------ */

static bool retry_record_for(e2e_case_t *c, const char *task_id, e2e_rec_t *out)
{
    e2e_rec_t recs[64];
    int n = e2e_read_topic(c->topic_retry, recs, 64, 64, 2);
    for (int i = 0; i < n; i++) {
        if (strcmp(recs[i].task_id, task_id) == 0) {
            *out = recs[i];
            return true;
        }
    }
    return false;
}

static void test_provider_faults(void **state)
{
    e2e_case_t *c = &g_case;
    char mb[32], mr[32];
    e2e_rec_t rr;
    (void)state;
    e2e_case_open(c, "faults");
    e2e_message_id(mb, sizeof(mb));
    e2e_message_id(mr, sizeof(mr));
    scenario_with_rules(c, mb, mr, 0);
    /* the next 3 answers are not the documented shape */
    e2e_scenario_patch(c,
                       "{\"answer\":{\"status\":200,\"body\":\"{\\\"result\\\":{\\\"decision\\\":"
                       "\\\"perhaps\\\"}}\",\"count\":3}}");
    e2e_child_start(c, &(e2e_child_opts_t){.provider = "generic"});
    e2e_produce_task(c, "t-malformed", mb, NULL, 0, NULL);
    e2e_produce_flush(c);
    CHECK(read_results(c, 1) == 1, "no result after malformed answers");
    expect_decision("t-malformed", IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_BLOCK, "generic",
                    false, true);
    CHECK(e2e_metric(c, "imtask_audit_provider_requests_total{provider=\"generic\","
                        "outcome=\"malformed\"}") == 3,
          "malformed answers counted");

    /* throttled with Retry-After: 3 -> the retry record is due 3 s later (the
     * topic backoff alone would be 0.3..1 s) */
    e2e_scenario_patch(c, "{\"throttle_rate\":1,\"retry_after_s\":3}");
    e2e_produce_task(c, "t-throttled", mr, NULL, 0, NULL);
    e2e_produce_flush(c);
    CHECK(E2E_WAIT(retry_record_for(c, "t-throttled", &rr), WAIT_S), "no retry record");
    CHECK(strstr(rr.last_error, "throttled"), "last_error: %s", rr.last_error);
    CHECK(rr.retry_due_ms - rr.timestamp >= 2900, "due %lld ms after it was written",
          (long long)(rr.retry_due_ms - rr.timestamp));
    e2e_scenario_patch(c, "{\"throttle_rate\":0}");
    CHECK(read_results(c, 2) == 2, "no result after throttling");
    expect_decision("t-throttled", IMTASK__V1__AUDIT_DECISION__AUDIT_DECISION_REVIEW, "generic",
                    false, true);
    assert_true(find_result("t-throttled")->result->attempt >= 1);
    e2e_child_stop(c);
    c->passed = true;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/imtask-audit\n", argv[0]);
        return 2;
    }
    e2e_env_load(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_decisions_generic, teardown),
        cmocka_unit_test_teardown(test_decisions_tencent, teardown),
        cmocka_unit_test_teardown(test_decisions_openai, teardown),
        cmocka_unit_test_teardown(test_missing_message, teardown),
        cmocka_unit_test_teardown(test_outage_breaker, teardown),
        cmocka_unit_test_teardown(test_fail_closed, teardown),
        cmocka_unit_test_teardown(test_exhausted_dead_letter, teardown),
        cmocka_unit_test_teardown(test_provider_faults, teardown),
    };
    const char *filter = getenv("AUDIT_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
