/* push_test.c: imtask-push (argv[1]) against the REAL broker, the im-repo
 * double and the APNs/FCM doubles of the local stack (scripts/stack.sh).
 *
 * Each case makes its own topics and consumer group and a tag that is part
 * of every device token it uses, runs an imtask-push child, produces push
 * tasks, waits (bounded) until the child's metrics say the expected tasks
 * are done, then checks what the doubles recorded per token, the follow-up
 * tasks on the task topic, the dead-letter topic, the child's metrics and
 * im-repo. The doubles answer by token prefix (docs/push.md): e.g.
 * "TooManyRequests-x1-ra2-<tag>-a11" gets 429 with Retry-After 2 once, then
 * 200.
 *
 *   outcomes       every documented answer of both providers and what follows
 *   partial        500 devices, 3 transient failures: only those 3 again
 *   imrepo_users   devices from im-repo; invalid tokens removed there; a user
 *                  without devices
 *   duplicate      the same task delivered twice: nothing pushed twice
 *   truncation     a 12 KB multi-byte body reaches the providers within 4096 bytes
 *   expired        past its time to live: nothing sent
 *   tls_verify     a provider whose certificate is not trusted: nothing sent,
 *                  retried, then dead-lettered
 *   goaway         GOAWAY in the middle of 300 streams: the ones the server did
 *                  not process go out again on a new connection, each device once
 *   multi_app      two APNs apps, keys of two teams, production and sandbox
 *   token_refresh  all streams at once: ExpiredProviderToken (APNs) and revoked
 *                  access tokens (FCM): one refresh each, every device once
 *   startup_errors invalid key, credentials and client certificate files (exit,
 *                  naming the file), a key readable by others (a warning), no
 *                  app at all (a warning)
 *   cert_auth      APNs certificate authentication: a client certificate the
 *                  test CA signed delivers every device, each request carried
 *                  it and no authorization header; an untrusted certificate
 *                  delivers nothing (BadCertificate, permanent); a connection
 *                  without one is refused (MissingProviderToken)
 *   rate_limit     apns.rate_limit / fcm.rate_limit 200/s, 1000 devices each:
 *                  every device once, and no second of the doubles' arrival
 *                  times holds more than the limit allows (an upper bound)
 *
 * No assertion is about timings except that a retry never comes before the
 * provider's Retry-After and that a rate limit is not exceeded (upper bounds
 * only: a slow machine makes them easier to meet). Needs the stack: IMTASK_KAFKA_BROKERS,
 * IMTASK_IMREPO_ADDR, IMTASK_PUSH_ADMIN (defaults: the stack's addresses).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DONE_METRIC "imtask_tasks_succeeded_total{task_type=\"push\"}"
#define WAIT_S 90

#define APNS IMTASK__V1__PUSH_PLATFORM__PUSH_PLATFORM_APNS
#define FCM IMTASK__V1__PUSH_PLATFORM__PUSH_PLATFORM_FCM

static int case_teardown(void **state)
{
    (void)state;
    ph_case_close(&ph_case);
    return 0;
}

/* ---- building tasks ------------------------------------------------------------- */

typedef struct {
    Imtask__V1__PushTask pt;
    Imtask__V1__PushNotification n;
    Imtask__V1__PushDevice *devs;
    Imtask__V1__PushDevice **devp;
    char (*tokens)[160];
    size_t cap;
} task_b_t;

static void tb_init(task_b_t *b, size_t cap, const char *body)
{
    memset(b, 0, sizeof(*b));
    imtask__v1__push_task__init(&b->pt);
    imtask__v1__push_notification__init(&b->n);
    b->n.title = (char *)"New message";
    b->n.body = (char *)(body ? body : "hello from push_test");
    b->n.conversation_id = (char *)"c-test";
    b->n.sender_id = (char *)"u-sender";
    b->n.message_id = (char *)"m-test";
    b->pt.notification = &b->n;
    b->pt.source = (char *)"push_test";
    b->cap = cap;
    b->devs = calloc(cap, sizeof(*b->devs));
    b->devp = calloc(cap, sizeof(*b->devp));
    b->tokens = calloc(cap, sizeof(*b->tokens));
    b->pt.devices = b->devp;
}

/* Adds a device whose token is "<prefix><tag>-<suffix>" ("" prefix: none);
 * returns the token. */
static const char *tb_add(task_b_t *b, Imtask__V1__PushPlatform p, const char *prefix,
                          const char *suffix)
{
    size_t i = b->pt.n_devices++;
    PH_CHECK(i < b->cap, "too many devices");
    snprintf(b->tokens[i], sizeof(b->tokens[i]), "%s%.23s-%s", prefix, ph_case.tag, suffix);
    ph_device(&b->devs[i], p, b->tokens[i], p == APNS ? "com.test.app" : "test-app");
    b->devp[i] = &b->devs[i];
    return b->tokens[i];
}

static void tb_free(task_b_t *b)
{
    free(b->devs);
    free(b->devp);
    free(b->tokens);
}

/* ---- what the doubles saw --------------------------------------------------------- */

typedef struct {
    int total, ok, fail;
    int64_t first_fail_t, first_ok_t;
    char fail_reason[64];
} seen_t;

static seen_t seen_of(cJSON *reqs, const char *token)
{
    seen_t s = {0};
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        const cJSON *tok = cJSON_GetObjectItem(r, "token");
        if (!cJSON_IsString(tok) || strcmp(tok->valuestring, token) != 0)
            continue;
        int st = cJSON_GetObjectItem(r, "status")->valueint;
        int64_t t = (int64_t)cJSON_GetObjectItem(r, "t")->valuedouble;
        s.total++;
        if (st == 200) {
            if (!s.ok++)
                s.first_ok_t = t;
        } else {
            if (!s.fail++) {
                s.first_fail_t = t;
                const cJSON *re = cJSON_GetObjectItem(r, "reason");
                snprintf(s.fail_reason, sizeof(s.fail_reason), "%s",
                         cJSON_IsString(re) ? re->valuestring : "");
            }
        }
    }
    return s;
}

/* The token got exactly: `fails` answers with reason (none when NULL), then
 * `oks` successes, in that order. */
static void expect_seen(cJSON *reqs, const char *token, int fails, const char *reason, int oks)
{
    seen_t s = seen_of(reqs, token);
    if (s.fail != fails || s.ok != oks || (reason && strcmp(s.fail_reason, reason) != 0))
        fail_msg("token %s: %d failures (first: %s) and %d successes; want %d x %s and %d", token,
                 s.fail, s.fail_reason, s.ok, fails, reason ? reason : "-", oks);
    if (fails && oks)
        PH_CHECK(s.first_fail_t <= s.first_ok_t, "token %s: success before its failure", token);
}

static bool has_token(const Imtask__V1__PushTask *pt, const char *token)
{
    for (size_t i = 0; pt && i < pt->n_devices; i++) {
        if (strcmp(pt->devices[i]->token, token) == 0)
            return true;
    }
    return false;
}

/* The follow-up tasks of root on the task topic. */
static int followups(ph_rec_t *recs, int n, const char *root, ph_rec_t **out, int max)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (recs[i].pt && recs[i].pt->root_task_id && strcmp(recs[i].pt->root_task_id, root) == 0 &&
            k < max)
            out[k++] = &recs[i];
    }
    return k;
}

/* ---- outcomes ---------------------------------------------------------------------- */

static void test_outcomes(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128];
    ph_case_open(c, "outcomes");
    ph_child_start(c, NULL);
    tb_init(&b, 64, NULL);

    /* APNs */
    const char *a_ok = tb_add(&b, APNS, "ok-", "a1");
    const char *a_inv[] = {tb_add(&b, APNS, "BadDeviceToken-", "a2"),
                           tb_add(&b, APNS, "DeviceTokenNotForTopic-", "a3"),
                           tb_add(&b, APNS, "Unregistered-", "a4"),
                           tb_add(&b, APNS, "ExpiredToken-", "a5")};
    const char *a_inv_r[] = {"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered",
                             "ExpiredToken"};
    const char *a_perm[] = {
        tb_add(&b, APNS, "PayloadTooLarge-", "a6"), tb_add(&b, APNS, "TopicDisallowed-", "a7"),
        tb_add(&b, APNS, "BadTopic-", "a8"), tb_add(&b, APNS, "Forbidden-", "a9"),
        tb_add(&b, APNS, "InvalidProviderToken-", "a10")};
    const char *a_perm_r[] = {"PayloadTooLarge", "TopicDisallowed", "BadTopic", "Forbidden",
                              "InvalidProviderToken"};
    const char *a_tr[] = {tb_add(&b, APNS, "TooManyRequests-x1-ra2-", "a11"),
                          tb_add(&b, APNS, "InternalServerError-x1-", "a12"),
                          tb_add(&b, APNS, "ServiceUnavailable-x1-radate2-", "a13"),
                          tb_add(&b, APNS, "Shutdown-x1-", "a14")};
    const char *a_tr_r[] = {"TooManyRequests", "InternalServerError", "ServiceUnavailable",
                            "Shutdown"};
    const char *a_reset = tb_add(&b, APNS, "reset-x1-", "a15");
    const char *a_exp = tb_add(&b, APNS, "ExpiredProviderToken-x1-", "a16");
    /* FCM */
    const char *f_ok = tb_add(&b, FCM, "ok-", "f1");
    const char *f_inv[] = {tb_add(&b, FCM, "UNREGISTERED-", "f2"),
                           tb_add(&b, FCM, "SENDER_ID_MISMATCH-", "f3")};
    const char *f_inv_r[] = {"UNREGISTERED", "SENDER_ID_MISMATCH"};
    const char *f_perm[] = {tb_add(&b, FCM, "INVALID_ARGUMENT-", "f4"),
                            tb_add(&b, FCM, "THIRD_PARTY_AUTH_ERROR-", "f5")};
    const char *f_perm_r[] = {"INVALID_ARGUMENT", "THIRD_PARTY_AUTH_ERROR"};
    const char *f_tr[] = {tb_add(&b, FCM, "QUOTA_EXCEEDED-x1-ra2-", "f6"),
                          tb_add(&b, FCM, "UNAVAILABLE-x1-", "f7"),
                          tb_add(&b, FCM, "INTERNAL-x1-", "f8")};
    const char *f_tr_r[] = {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"};
    const char *f_auth = tb_add(&b, FCM, "UNAUTHENTICATED-x1-", "f9");

    snprintf(tid, sizeof(tid), "%.23s-outcomes", c->tag);
    int64_t t0 = ph_wall_ms();
    ph_produce(c, tid, &b.pt);
    /* the task, then its one follow-up with the transient failures */
    ph_wait_metric(c, DONE_METRIC, 2, WAIT_S);

    cJSON *ra = ph_requests("apns", c->tag), *rf = ph_requests("fcm", c->tag);
    expect_seen(ra, a_ok, 0, NULL, 1);
    for (int i = 0; i < 4; i++) /* removed, never retried */
        expect_seen(ra, a_inv[i], 1, a_inv_r[i], 0);
    for (int i = 0; i < 5; i++) /* permanent: never retried */
        expect_seen(ra, a_perm[i], 1, a_perm_r[i], 0);
    for (int i = 0; i < 4; i++) /* transient: once more, later */
        expect_seen(ra, a_tr[i], 1, a_tr_r[i], 1);
    expect_seen(ra, a_reset, 1, "reset", 1);
    expect_seen(ra, a_exp, 1, "ExpiredProviderToken", 1);
    expect_seen(rf, f_ok, 0, NULL, 1);
    for (int i = 0; i < 2; i++)
        expect_seen(rf, f_inv[i], 1, f_inv_r[i], 0);
    for (int i = 0; i < 2; i++)
        expect_seen(rf, f_perm[i], 1, f_perm_r[i], 0);
    for (int i = 0; i < 3; i++)
        expect_seen(rf, f_tr[i], 1, f_tr_r[i], 1);
    expect_seen(rf, f_auth, 1, "UNAUTHENTICATED", 1);

    /* Retry-After (seconds and HTTP-date) honoured: never sooner */
    seen_t s = seen_of(ra, a_tr[0]);
    PH_CHECK(s.first_ok_t - s.first_fail_t >= 2000, "Retry-After 2 s: retried after %lld ms",
             (long long)(s.first_ok_t - s.first_fail_t));
    s = seen_of(ra, a_tr[2]);
    PH_CHECK(s.first_ok_t - s.first_fail_t >= 1000, "Retry-After date: retried after %lld ms",
             (long long)(s.first_ok_t - s.first_fail_t));
    s = seen_of(rf, f_tr[0]);
    PH_CHECK(s.first_ok_t - s.first_fail_t >= 2000, "FCM Retry-After: retried after %lld ms",
             (long long)(s.first_ok_t - s.first_fail_t));

    /* the follow-up: exactly the transient failures; the expired provider
     * tokens were refreshed and sent again within the first task */
    int n;
    ph_rec_t *recs = ph_read_topic(c, 0, &n), *fu[4];
    int nf = followups(recs, n, tid, fu, 4);
    PH_CHECK(nf == 1, "%d follow-ups of %s, want 1", nf, tid);
    Imtask__V1__PushTask *f = fu[0]->pt;
    PH_CHECK(f->n_devices == 8, "the follow-up has %zu devices, want 8", f->n_devices);
    for (int i = 0; i < 4; i++)
        PH_CHECK(has_token(f, a_tr[i]), "%s not in the follow-up", a_tr[i]);
    PH_CHECK(has_token(f, a_reset), "%s not in the follow-up", a_reset);
    for (int i = 0; i < 3; i++)
        PH_CHECK(has_token(f, f_tr[i]), "%s not in the follow-up", f_tr[i]);
    PH_CHECK(f->generation == 1 && f->n_user_ids == 0, "follow-up generation %u", f->generation);
    PH_CHECK(f->not_before_ms >= t0 + 2000, "the follow-up is due before Retry-After");
    PH_CHECK(strcmp(fu[0]->id, "") != 0 && strstr(fu[0]->id, "/f1"), "follow-up id %s", fu[0]->id);
    ph_recs_free(recs, n);

    /* the counters */
    PH_CHECK(ph_metric(c, "imtask_push_sent_total{provider=\"apns\"}") == 7, "apns sent");
    PH_CHECK(ph_metric(c, "imtask_push_sent_total{provider=\"fcm\"}") == 5, "fcm sent");
    PH_CHECK(ph_metric(c, "imtask_push_tokens_removed_total{provider=\"apns\"}") == 4,
             "apns tokens removed: %g",
             ph_metric(c, "imtask_push_tokens_removed_total{provider=\"apns\"}"));
    PH_CHECK(ph_metric(c, "imtask_push_tokens_removed_total{provider=\"fcm\"}") == 2,
             "fcm tokens removed");
    PH_CHECK(ph_metric(c, "imtask_push_auth_refreshes_total{provider=\"apns\"}") == 1,
             "apns token refreshes");
    PH_CHECK(ph_metric(c, "imtask_push_auth_refreshes_total{provider=\"fcm\"}") == 1,
             "fcm token refreshes");
    PH_CHECK(ph_metric(c, "imtask_push_failed_total{provider=\"apns\",reason=\"Forbidden\"}") == 1,
             "failed by reason");
    PH_CHECK(ph_metric(c, "imtask_push_retries_total") == 8, "retries");
    PH_CHECK(ph_metric(c, "imtask_push_followups_total") == 1, "follow-ups");
    PH_CHECK(ph_log_has(c, "not pushed for good: InvalidProviderToken"),
             "a permanent failure is logged with its reason");
    /* DLQ: nothing */
    ph_rec_t *dlq = ph_read_topic(c, 2, &n);
    PH_CHECK(n == 0, "%d dead-lettered", n);
    ph_recs_free(dlq, n);

    cJSON_Delete(ra);
    cJSON_Delete(rf);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- 500 devices, 3 transient failures ---------------------------------------------- */

static void test_partial(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128], sfx[32];
    ph_case_open(c, "partial");
    ph_child_start(c, NULL);
    tb_init(&b, 500, NULL);
    const char *bad[3];
    for (int i = 0; i < 500; i++) {
        snprintf(sfx, sizeof(sfx), "p%03d", i);
        if (i == 17)
            bad[0] = tb_add(&b, APNS, "ServiceUnavailable-x1-", sfx);
        else if (i == 250)
            bad[1] = tb_add(&b, FCM, "UNAVAILABLE-x1-", sfx);
        else if (i == 444)
            bad[2] = tb_add(&b, APNS, "reset-x1-", sfx);
        else
            tb_add(&b, i % 2 ? FCM : APNS, "", sfx);
    }
    snprintf(tid, sizeof(tid), "%.23s-partial", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 2, WAIT_S);

    cJSON *ra = ph_requests("apns", c->tag), *rf = ph_requests("fcm", c->tag);
    for (size_t i = 0; i < b.pt.n_devices; i++) {
        const char *t = b.tokens[i];
        cJSON *r = b.devs[i].platform == APNS ? ra : rf;
        if (t == bad[0] || t == bad[1] || t == bad[2])
            expect_seen(r, t, 1, NULL, 1); /* retried once */
        else
            expect_seen(r, t, 0, NULL, 1); /* the 497: exactly once */
    }
    PH_CHECK(cJSON_GetArraySize(ra) + cJSON_GetArraySize(rf) == 503,
             "%d requests in all, want 497 + 2 x 3",
             cJSON_GetArraySize(ra) + cJSON_GetArraySize(rf));
    int n;
    ph_rec_t *recs = ph_read_topic(c, 0, &n), *fu[4];
    int nf = followups(recs, n, tid, fu, 4);
    PH_CHECK(nf == 1, "%d follow-ups, want 1", nf);
    PH_CHECK(fu[0]->pt->n_devices == 3, "the follow-up has %zu devices, want 3",
             fu[0]->pt->n_devices);
    for (int i = 0; i < 3; i++)
        PH_CHECK(has_token(fu[0]->pt, bad[i]), "%s not in the follow-up", bad[i]);
    PH_CHECK(fu[0]->pt->notification && strcmp(fu[0]->pt->notification->body, b.n.body) == 0,
             "the follow-up carries the notification");
    ph_recs_free(recs, n);
    PH_CHECK(ph_metric(c, "imtask_push_sent_total") == 500, "sent %g, want 500",
             ph_metric(c, "imtask_push_sent_total"));
    cJSON_Delete(ra);
    cJSON_Delete(rf);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- devices from im-repo ------------------------------------------------------------ */

static ImRepo__V1__GetUserDevicesResponse *devices_of(const char *uid)
{
    ImRepo__V1__GetUserDevicesRequest req = IM_REPO__V1__GET_USER_DEVICES_REQUEST__INIT;
    ImRepo__V1__GetUserDevicesResponse *resp = NULL;
    repo_status_t st;
    char *ids[1] = {(char *)uid};
    req.user_ids = ids;
    req.n_user_ids = 1;
    PH_CHECK(repo_get_user_devices(ph_env.repo, &req, NULL, &resp, &st) == REPO_ERR_OK,
             "GetUserDevices: %s", st.message);
    return resp;
}

static void test_imrepo_users(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    char ua[64] = "", uz[64] = "", uid[64], tid[128];
    ph_case_open(c, "imrepo");
    /* a user with two or more devices, one with none (the double's data) */
    for (int k = 0; k < 200 && (!ua[0] || !uz[0]); k++) {
        snprintf(uid, sizeof(uid), "pt-%.23s-u%d", c->tag, k);
        ImRepo__V1__GetUserDevicesResponse *r = devices_of(uid);
        if (r->n_devices >= 2 && !ua[0])
            snprintf(ua, sizeof(ua), "%s", uid);
        if (r->n_devices == 0 && !uz[0])
            snprintf(uz, sizeof(uz), "%s", uid);
        repo_response_free(&r->base);
    }
    PH_CHECK(ua[0] && uz[0], "no suitable users in the im-repo double's data");
    ImRepo__V1__GetUserDevicesResponse *before = devices_of(ua);
    const ImRepo__V1__Device *dead = before->devices[0];
    int dead_apns = dead->platform == IM_REPO__V1__PUSH_PLATFORM__PUSH_PLATFORM_APNS;
    ph_script(dead_apns ? "apns" : "fcm", dead->token, dead_apns ? "Unregistered" : "UNREGISTERED");

    ph_child_start(c, NULL);
    task_b_t b;
    tb_init(&b, 1, NULL);
    char *users[] = {ua, uz};
    b.pt.user_ids = users;
    b.pt.n_user_ids = 2;
    snprintf(tid, sizeof(tid), "%.23s-users", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 1, WAIT_S);

    for (size_t i = 0; i < before->n_devices; i++) {
        const ImRepo__V1__Device *d = before->devices[i];
        int apns = d->platform == IM_REPO__V1__PUSH_PLATFORM__PUSH_PLATFORM_APNS;
        cJSON *r = ph_requests(apns ? "apns" : "fcm", d->token);
        if (i == 0)
            expect_seen(r, d->token, 1, apns ? "Unregistered" : "UNREGISTERED", 0);
        else
            expect_seen(r, d->token, 0, NULL, 1);
        cJSON_Delete(r);
    }
    /* the dead token is gone from im-repo, the others stay */
    ImRepo__V1__GetUserDevicesResponse *after = devices_of(ua);
    PH_CHECK(after->n_devices == before->n_devices - 1, "%zu devices after, %zu before",
             after->n_devices, before->n_devices);
    for (size_t i = 0; i < after->n_devices; i++)
        PH_CHECK(strcmp(after->devices[i]->token, dead->token) != 0, "token not removed");
    PH_CHECK(ph_metric(c, "imtask_push_tokens_removed_total") == 1, "removed metric");
    PH_CHECK(ph_metric(c, "imtask_push_sent_total") == (double)before->n_devices - 1, "sent");
    repo_response_free(&after->base);

    /* a task for a user without devices: done, nothing sent */
    char *only[] = {uz};
    b.pt.user_ids = only;
    b.pt.n_user_ids = 1;
    snprintf(tid, sizeof(tid), "%.23s-nodevices", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 2, WAIT_S);
    PH_CHECK(ph_metric(c, "imtask_push_sent_total") == (double)before->n_devices - 1,
             "something was sent for a user without devices");
    PH_CHECK(ph_metric(c, "imtask_push_failed_total") == 1, "failures: %g",
             ph_metric(c, "imtask_push_failed_total"));
    repo_response_free(&before->base);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- the same task twice ----------------------------------------------------------- */

static void test_duplicate(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128], sfx[16];
    ph_case_open(c, "duplicate");
    ph_child_start(c, NULL);
    tb_init(&b, 20, NULL);
    for (int i = 0; i < 20; i++) {
        snprintf(sfx, sizeof(sfx), "d%02d", i);
        tb_add(&b, i % 2 ? FCM : APNS, "", sfx);
    }
    snprintf(tid, sizeof(tid), "%.23s-dup", c->tag);
    ph_produce(c, tid, &b.pt); /* an at-least-once producer delivering twice */
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 2, WAIT_S);
    cJSON *ra = ph_requests("apns", c->tag), *rf = ph_requests("fcm", c->tag);
    for (size_t i = 0; i < b.pt.n_devices; i++)
        expect_seen(b.devs[i].platform == APNS ? ra : rf, b.tokens[i], 0, NULL, 1);
    PH_CHECK(ph_metric(c, "imtask_push_skipped_total") == 20, "skipped %g, want 20",
             ph_metric(c, "imtask_push_skipped_total"));
    cJSON_Delete(ra);
    cJSON_Delete(rf);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- a long multi-byte body ------------------------------------------------------------ */

static void test_truncation(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128];
    /* 3000 x U+1F600 (4 bytes) = 12000 bytes */
    char *body = malloc(12001);
    for (int i = 0; i < 3000; i++)
        memcpy(body + 4 * i, "\xF0\x9F\x98\x80", 4);
    body[12000] = '\0';
    ph_case_open(c, "truncation");
    ph_child_start(c, NULL);
    tb_init(&b, 2, body);
    const char *ta = tb_add(&b, APNS, "ok-", "long");
    const char *tf = tb_add(&b, FCM, "ok-", "long");
    snprintf(tid, sizeof(tid), "%.23s-long", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 1, WAIT_S);
    cJSON *ra = ph_requests("apns", ta), *rf = ph_requests("fcm", tf);
    expect_seen(ra, ta, 0, NULL, 1); /* the double refuses anything over 4096 bytes */
    expect_seen(rf, tf, 0, NULL, 1);
    cJSON *r = cJSON_GetArrayItem(ra, 0);
    PH_CHECK(cJSON_GetObjectItem(r, "size")->valueint <= 4096, "APNs payload of %d bytes",
             cJSON_GetObjectItem(r, "size")->valueint);
    cJSON *p = cJSON_Parse(cJSON_GetObjectItem(r, "payload")->valuestring);
    const char *got =
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "aps"), "alert"), "body")
            ->valuestring;
    size_t gl = strlen(got);
    PH_CHECK(gl > 3000 && (gl - 3) % 4 == 0 && memcmp(got, body, gl - 3) == 0 &&
                 strcmp(got + gl - 3, "\xE2\x80\xA6") == 0,
             "APNs body: %zu bytes, not whole emoji and an ellipsis", gl);
    cJSON_Delete(p);
    cJSON *fm = cJSON_GetObjectItem(cJSON_GetArrayItem(rf, 0), "message");
    const char *fb =
        cJSON_GetObjectItem(cJSON_GetObjectItem(fm, "notification"), "body")->valuestring;
    PH_CHECK((strlen(fb) - 3) % 4 == 0 && strlen(fb) <= 4096, "FCM body of %zu bytes", strlen(fb));
    cJSON_Delete(ra);
    cJSON_Delete(rf);
    tb_free(&b);
    free(body);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- expired ------------------------------------------------------------------------------ */

static void test_expired(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128];
    ph_case_open(c, "expired");
    ph_child_start(c, NULL);
    tb_init(&b, 2, NULL);
    tb_add(&b, APNS, "ok-", "e1");
    tb_add(&b, FCM, "ok-", "e2");
    b.n.ttl_set_case = IMTASK__V1__PUSH_NOTIFICATION__TTL_SET_TTL_SECONDS;
    b.n.ttl_seconds = 5;
    b.n.sent_at_ms = ph_wall_ms() - 60000; /* sent a minute ago, worth 5 s */
    snprintf(tid, sizeof(tid), "%.23s-expired", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 1, WAIT_S);
    cJSON *s = ph_stats("apns", c->tag), *sf = ph_stats("fcm", c->tag);
    PH_CHECK(cJSON_GetObjectItem(s, "requests")->valueint == 0 &&
                 cJSON_GetObjectItem(sf, "requests")->valueint == 0,
             "an expired notification was sent");
    PH_CHECK(ph_metric(c, "imtask_push_tasks_expired_total") == 1, "expired metric");
    cJSON_Delete(s);
    cJSON_Delete(sf);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- TLS verification ----------------------------------------------------------------------- */

static void test_tls_verify(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128];
    ph_case_open(c, "tls");
    ph_child_opts_t o = {
        .apns_without_ca = true,
        .extra_yaml = "retry_push:\n  local_attempts: 2\n  local_backoff_initial: 50ms\n"
                      "  max_attempts: 1\n",
    };
    ph_child_start(c, &o);
    tb_init(&b, 1, NULL);
    const char *t = tb_add(&b, APNS, "ok-", "tls");
    snprintf(tid, sizeof(tid), "%.23s-tls", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, "imtask_tasks_dead_lettered_total", 1, WAIT_S);
    cJSON *s = ph_stats("apns", t);
    PH_CHECK(cJSON_GetObjectItem(s, "requests")->valueint == 0,
             "a request reached a server whose certificate is not trusted");
    cJSON_Delete(s);
    int n;
    ph_rec_t *dlq = ph_read_topic(c, 2, &n);
    PH_CHECK(n == 1 && strcmp(dlq[0].dlq_kind, "retries_exhausted") == 0 &&
                 strstr(dlq[0].dlq_msg, "tls"),
             "DLQ: %d records, kind %s, message %s", n, n ? dlq[0].dlq_kind : "-",
             n ? dlq[0].dlq_msg : "-");
    ph_recs_free(dlq, n);
    PH_CHECK(ph_metric(c, "imtask_push_failed_total{provider=\"apns\",reason=\"tls\"}") >= 1,
             "tls failures counted");
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- GOAWAY in the middle of a batch ----------------------------------------------- */

/* Connections the APNs double accepted so far. */
static int sessions_now(void)
{
    cJSON *st = ph_stats("apns", "");
    int n = cJSON_GetObjectItem(st, "sessions")->valueint;
    cJSON_Delete(st);
    return n;
}

static void test_goaway(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128], sfx[16];
    ph_case_open(c, "goaway");
    ph_child_start(c, NULL);
    tb_init(&b, 300, NULL);
    for (int i = 0; i < 300; i++) {
        snprintf(sfx, sizeof(sfx), "g%03d", i);
        /* all answered after 200 ms, but one at once with a GOAWAY naming it
         * the last stream processed: the streams opened after it are refused
         * and must go out again on a new connection */
        tb_add(&b, APNS, i == 150 ? "goaway-x1-" : "delay200-", sfx);
    }
    snprintf(tid, sizeof(tid), "%.23s-goaway", c->tag);
    int sessions_before = sessions_now();
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 1, WAIT_S);
    cJSON *ra = ph_requests("apns", c->tag);
    for (size_t i = 0; i < b.pt.n_devices; i++)
        expect_seen(ra, b.tokens[i], 0, NULL, 1); /* each exactly once, none lost */
    int sessions_after = sessions_now();
    PH_CHECK(sessions_after - sessions_before >= 2,
             "%d connections: the GOAWAY did not come in the middle of the batch",
             sessions_after - sessions_before);
    PH_CHECK(ph_metric(c, "imtask_push_sent_total") == 300, "sent %g",
             ph_metric(c, "imtask_push_sent_total"));
    PH_CHECK(ph_metric(c, "imtask_push_followups_total") == 0, "a follow-up after a GOAWAY");
    cJSON_Delete(ra);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- two APNs apps with keys of different teams --------------------------------------- */

static void test_multi_app(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128], extra[4096], sfx[16];
    ph_case_open(c, "multiapp");
    snprintf(extra, sizeof(extra),
             "apns:\n  endpoint: %s\n  sandbox_endpoint: %s\n  ca_file: %s\n"
             "  apps: [main, second]\n"
             "apns_app_main:\n  topics: [com.test.main]\n  team_id: TESTTEAM01\n"
             "  key_id: TESTKEY001\n  key_file: %s\n"
             "apns_app_second:\n  topics: [com.test.second]\n  team_id: TESTTEAM02\n"
             "  key_id: TESTKEY002\n  key_file: %s\n",
             ph_env.apns_url, ph_env.apns_url, ph_env.ca_file, ph_env.apns_key, ph_env.apns_key2);
    ph_child_opts_t o = {.extra_yaml = extra};
    ph_child_start(c, &o);
    tb_init(&b, 40, NULL);
    for (int i = 0; i < 40; i++) {
        snprintf(sfx, sizeof(sfx), "m%02d", i);
        tb_add(&b, APNS, "", sfx);
        b.devs[i].app_id = (char *)(i % 2 ? "com.test.second" : "com.test.main");
        b.devs[i].sandbox = i % 4 == 0; /* the sandbox endpoint: its own connections */
    }
    snprintf(tid, sizeof(tid), "%.23s-apps", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 1, WAIT_S);
    cJSON *ra = ph_requests("apns", c->tag), *r;
    int seen = 0;
    cJSON_ArrayForEach(r, ra)
    {
        const char *topic = cJSON_GetObjectItem(r, "topic")->valuestring;
        const char *kid = cJSON_GetObjectItem(r, "kid")->valuestring;
        PH_CHECK(cJSON_GetObjectItem(r, "status")->valueint == 200, "status %d",
                 cJSON_GetObjectItem(r, "status")->valueint);
        PH_CHECK(strcmp(kid, strcmp(topic, "com.test.second") == 0 ? "TESTKEY002" : "TESTKEY001") ==
                     0,
                 "topic %s signed with %s", topic, kid);
        seen++;
    }
    PH_CHECK(seen == 40, "%d requests, want 40", seen);
    cJSON_Delete(ra);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- every stream at once says the provider token expired -------------------------------- */

static void test_token_refresh(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128], sfx[16], url[256];
    ph_case_open(c, "refresh");
    ph_child_start(c, NULL);
    /* a first task: the FCM access token is fetched, the APNs token signed */
    tb_init(&b, 100, NULL);
    for (int i = 0; i < 10; i++) {
        snprintf(sfx, sizeof(sfx), "w%02d", i);
        tb_add(&b, i % 2 ? FCM : APNS, "", sfx);
    }
    snprintf(tid, sizeof(tid), "%.23s-warm", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 1, WAIT_S);
    tb_free(&b);

    /* FCM revokes every access token; APNs says ExpiredProviderToken to all
     * 50 streams of the next task: one refresh each, every device once */
    snprintf(url, sizeof(url), "%s/fcm/expire-tokens", ph_env.push_admin);
    cJSON_Delete(ph_json(url, "{}"));
    tb_init(&b, 100, NULL);
    for (int i = 0; i < 100; i++) {
        snprintf(sfx, sizeof(sfx), "r%02d", i);
        tb_add(&b, i % 2 ? FCM : APNS, i % 2 ? "" : "ExpiredProviderToken-x1-", sfx);
    }
    snprintf(tid, sizeof(tid), "%.23s-expired", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 2, WAIT_S);
    cJSON *ra = ph_requests("apns", c->tag), *rf = ph_requests("fcm", c->tag);
    for (size_t i = 0; i < b.pt.n_devices; i++) {
        if (b.devs[i].platform == APNS)
            expect_seen(ra, b.tokens[i], 1, "ExpiredProviderToken", 1);
        else
            expect_seen(rf, b.tokens[i], 1, "UNAUTHENTICATED", 1);
    }
    PH_CHECK(ph_metric(c, "imtask_push_auth_refreshes_total{provider=\"apns\"}") == 1,
             "apns refreshes %g, want 1",
             ph_metric(c, "imtask_push_auth_refreshes_total{provider=\"apns\"}"));
    PH_CHECK(ph_metric(c, "imtask_push_auth_refreshes_total{provider=\"fcm\"}") == 1,
             "fcm refreshes %g, want 1",
             ph_metric(c, "imtask_push_auth_refreshes_total{provider=\"fcm\"}"));
    PH_CHECK(ph_metric(c, "imtask_push_followups_total") == 0, "a follow-up");
    cJSON *st = ph_stats("apns", "");
    PH_CHECK(
        !cJSON_GetObjectItem(cJSON_GetObjectItem(st, "byReason"), "TooManyProviderTokenUpdates"),
        "the APNs double saw provider tokens replaced too often");
    cJSON_Delete(st);
    cJSON_Delete(ra);
    cJSON_Delete(rf);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- start-up errors --------------------------------------------------------------------------
 */

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    PH_CHECK(f != NULL, "%s", path);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static void test_startup_errors(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    char cfg[8192], bad_key[2400], bad_sa[2400], open_key[2400];
    ph_case_open(c, "startup");
    snprintf(bad_key, sizeof(bad_key), "%.2047s/garbage.p8", c->dir);
    snprintf(bad_sa, sizeof(bad_sa), "%.2047s/sa.json", c->dir);
    snprintf(open_key, sizeof(open_key), "%.2047s/open.p8", c->dir);
    write_file(bad_key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
               0600);
    write_file(bad_sa, "{\"type\":\"service_account\",\"client_email\":\"x@y\"}", 0600);
    const char *base = "kafka:\n  brokers: %s\nhttp:\n  listen: 127.0.0.1:0\n"
                       "consumer:\n  topic: %s\n  retry_topic: %s\n  dlq_topic: %s\n"
                       "  group_id: %s\nimrepo:\n  endpoints: %s\n";
    int k = snprintf(cfg, sizeof(cfg), base, ph_env.brokers, c->topic[0], c->topic[1], c->topic[2],
                     c->group, ph_env.imrepo_addr);

    /* an APNs key file that is no key */
    snprintf(cfg + k, sizeof(cfg) - (size_t)k,
             "apns:\n  apps: [main]\napns_app_main:\n  topics: [com.gochat.im]\n"
             "  team_id: TESTTEAM01\n  key_id: TESTKEY001\n  key_file: %s\n",
             bad_key);
    int st = ph_child_run_to_exit(c, cfg, 60);
    PH_CHECK(st != 0, "started with a garbage key");
    char want[6000];
    snprintf(want, sizeof(want), "apns_app_main.key_file %s: not a PEM private key", bad_key);
    PH_CHECK(ph_log_has(c, want), "no clear error naming the key file");

    /* a key file that does not exist */
    snprintf(cfg + k, sizeof(cfg) - (size_t)k,
             "apns:\n  apps: [main]\napns_app_main:\n  topics: [com.gochat.im]\n"
             "  team_id: TESTTEAM01\n  key_id: TESTKEY001\n  key_file: %s/missing.p8\n",
             c->dir);
    PH_CHECK(ph_child_run_to_exit(c, cfg, 60) != 0, "started without its key");
    PH_CHECK(ph_log_has(c, "missing.p8: No such file or directory"), "missing key not named");

    /* an FCM credentials file without a private key */
    snprintf(cfg + k, sizeof(cfg) - (size_t)k,
             "fcm:\n  apps: [main]\nfcm_app_main:\n  app_ids: [\"*\"]\n"
             "  credentials_file: %s\n",
             bad_sa);
    PH_CHECK(ph_child_run_to_exit(c, cfg, 60) != 0, "started with bad credentials");
    snprintf(want, sizeof(want),
             "fcm_app_main.credentials_file %s: needs \\\"client_email\\\" "
             "and \\\"private_key\\\"",
             bad_sa);
    PH_CHECK(ph_log_has(c, want), "no clear error naming the credentials file");

    /* certificate auth: a certificate file that is no certificate, one that
     * does not exist, a key that is not the certificate's */
    char cert[2400], key[2400], cert2[2400], key2[2400];
    snprintf(cert, sizeof(cert), "%.2047s/client.pem", c->dir);
    snprintf(key, sizeof(key), "%.2047s/client.key", c->dir);
    snprintf(cert2, sizeof(cert2), "%.2047s/other.pem", c->dir);
    snprintf(key2, sizeof(key2), "%.2047s/other.key", c->dir);
    ph_make_client_cert(cert, key, "imtask push_test startup", ph_env.ca_file, ph_env.ca_key);
    ph_make_client_cert(cert2, key2, "imtask push_test other", NULL, NULL); /* key2: another key */
    const char *cert_app = "apns:\n  apps: [main]\napns_app_main:\n  topics: [com.gochat.im]\n"
                           "  auth: certificate\n  cert_file: %s\n  cert_key_file: %s\n";
    write_file(bad_key,
               "-----BEGIN CERTIFICATE-----\nnot a certificate\n"
               "-----END CERTIFICATE-----\n",
               0600);
    snprintf(cfg + k, sizeof(cfg) - (size_t)k, cert_app, bad_key, key);
    PH_CHECK(ph_child_run_to_exit(c, cfg, 60) != 0, "started with a garbage certificate");
    snprintf(want, sizeof(want), "apns_app_main.cert_file %s: not a PEM certificate", bad_key);
    PH_CHECK(ph_log_has(c, want), "no clear error naming the certificate file");

    snprintf(cfg + k, sizeof(cfg) - (size_t)k, cert_app, "/nonexistent/imtask/client.pem", key);
    PH_CHECK(ph_child_run_to_exit(c, cfg, 60) != 0, "started without its certificate");
    PH_CHECK(ph_log_has(c, "apns_app_main.cert_file /nonexistent/imtask/client.pem: No such file"),
             "a missing certificate is not named");

    snprintf(cfg + k, sizeof(cfg) - (size_t)k, cert_app, cert, key2);
    PH_CHECK(ph_child_run_to_exit(c, cfg, 60) != 0, "started with a key of another certificate");
    snprintf(want, sizeof(want),
             "apns_app_main.cert_key_file %s: not the key of the certificate %s", key2, cert);
    PH_CHECK(ph_log_has(c, want), "no clear error for a key that is not the certificate's");

    write_file(key2, "garbage\n", 0600);
    snprintf(cfg + k, sizeof(cfg) - (size_t)k, cert_app, cert, key2);
    PH_CHECK(ph_child_run_to_exit(c, cfg, 60) != 0, "started with a garbage certificate key");
    snprintf(want, sizeof(want),
             "apns_app_main.cert_key_file %s: not an unencrypted PEM private key", key2);
    PH_CHECK(ph_log_has(c, want), "no clear error naming the certificate's key file");

    /* no app at all: it runs (every device would fail as no_app), and says so */
    snprintf(cfg + k, sizeof(cfg) - (size_t)k, "push:\n  max_followups: 3\n");
    ph_child_opts_t none = {.full_config = cfg};
    ph_child_start(c, &none);
    PH_CHECK(ph_log_has(c, "no provider app configured"), "no warning without apps");
    ph_child_stop(c);

    /* a valid key readable by everyone: a warning, and it runs */
    FILE *in = fopen(ph_env.apns_key, "r");
    char keytext[4096];
    size_t kl = fread(keytext, 1, sizeof(keytext) - 1, in);
    fclose(in);
    keytext[kl] = '\0';
    write_file(open_key, keytext, 0644);
    char extra[4096];
    snprintf(extra, sizeof(extra),
             "apns_app_main:\n  topics: [com.gochat.im]\n  team_id: TESTTEAM01\n"
             "  key_id: TESTKEY001\n  key_file: %s\n",
             open_key);
    ph_child_opts_t o = {.extra_yaml = extra};
    ph_child_start(c, &o);
    snprintf(want, sizeof(want), "%s can be read by other users", open_key);
    PH_CHECK(ph_log_has(c, want), "no warning for a world-readable key");
    PH_CHECK(!ph_log_has(c, "BEGIN PRIVATE KEY") && !ph_log_has(c, keytext + 40),
             "key material in the log");
    ph_child_stop(c);
    PH_CHECK(WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0, "exit after SIGTERM");
    c->passed = true;
}

/* ---- APNs certificate authentication ---------------------------------------------------- */

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static bool bool_of(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static void test_cert_auth(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128], sfx[16], extra[16384], cn[96];
    char good[2400], good_key[2400], rogue[2400], rogue_key[2400];
    ph_case_open(c, "certauth");
    PH_CHECK(ph_env.apns_cert_url[0] && ph_env.ca_key[0],
             "the push double has no certificate-auth APNs port (restart it: "
             "bash scripts/stack.sh push-restart)");
    /* a client certificate the test CA signed, and one it did not (self-signed) */
    snprintf(good, sizeof(good), "%.2047s/client.pem", c->dir);
    snprintf(good_key, sizeof(good_key), "%.2047s/client.key", c->dir);
    snprintf(rogue, sizeof(rogue), "%.2047s/rogue.pem", c->dir);
    snprintf(rogue_key, sizeof(rogue_key), "%.2047s/rogue.key", c->dir);
    snprintf(cn, sizeof(cn), "Apple Push Services: com.test.certok %.23s", c->tag);
    ph_make_client_cert(good, good_key, cn, ph_env.ca_file, ph_env.ca_key);
    ph_make_client_cert(rogue, rogue_key, "rogue push provider", NULL, NULL);
    /* all apps against the certificate-auth port: two with certificates (main
     * the good one; the generated config would add a token apns_app_main), one
     * with a provider token (no certificate: that connection is refused) */
    snprintf(extra, sizeof(extra),
             "apns:\n  endpoint: %s\n  sandbox_endpoint: %s\n  ca_file: %s\n"
             "  apps: [main, certbad, tok]\n"
             "apns_app_main:\n  topics: [com.test.certok]\n  auth: certificate\n"
             "  cert_file: %s\n  cert_key_file: %s\n"
             "apns_app_certbad:\n  topics: [com.test.certbad]\n  auth: certificate\n"
             "  cert_file: %s\n  cert_key_file: %s\n"
             "apns_app_tok:\n  topics: [com.test.tok]\n  team_id: TESTTEAM01\n"
             "  key_id: TESTKEY001\n  key_file: %s\n",
             ph_env.apns_cert_url, ph_env.apns_cert_url, ph_env.ca_file, good, good_key, rogue,
             rogue_key, ph_env.apns_key);
    ph_child_opts_t o = {.extra_yaml = extra};
    ph_child_start(c, &o);
    PH_CHECK(ph_log_has(c, "apns app main: certificate auth"), "certificate auth not in use");

    enum { N_OK = 30, N_BAD = 5, N_TOK = 3 };
    tb_init(&b, N_OK + N_BAD + N_TOK, NULL);
    for (int i = 0; i < N_OK + N_BAD + N_TOK; i++) {
        snprintf(sfx, sizeof(sfx), "c%02d", i);
        tb_add(&b, APNS, "", sfx);
        b.devs[i].app_id = (char *)(i < N_OK           ? "com.test.certok"
                                    : i < N_OK + N_BAD ? "com.test.certbad"
                                                       : "com.test.tok");
        b.devs[i].sandbox = i % 3 == 0; /* the sandbox lane: connections of its own */
    }
    snprintf(tid, sizeof(tid), "%.23s-cert", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 1, WAIT_S);

    cJSON *rc = ph_requests("apns-cert", c->tag);
    for (int i = 0; i < N_OK + N_BAD + N_TOK; i++) {
        const char *t = b.tokens[i];
        int n = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, rc)
        {
            if (strcmp(str_of(r, "token"), t) != 0)
                continue;
            n++;
            int st = cJSON_GetObjectItem(r, "status")->valueint;
            if (i < N_OK) {
                /* delivered, authenticated by the certificate alone */
                PH_CHECK(st == 200, "%s: status %d (%s)", t, st, str_of(r, "reason"));
                PH_CHECK(bool_of(r, "client_cert"), "%s: no verified client certificate", t);
                PH_CHECK(strstr(str_of(r, "client_subject"), cn) != NULL,
                         "%s: client certificate subject \"%s\", want CN %s", t,
                         str_of(r, "client_subject"), cn);
                PH_CHECK(!bool_of(r, "authorization"), "%s: an authorization header", t);
            } else if (i < N_OK + N_BAD) {
                /* the certificate was presented, and refused */
                PH_CHECK(st == 403 && strcmp(str_of(r, "reason"), "BadCertificate") == 0,
                         "%s: %d %s, want 403 BadCertificate", t, st, str_of(r, "reason"));
                PH_CHECK(bool_of(r, "client_cert_present") && !bool_of(r, "client_cert"),
                         "%s: the untrusted certificate counted as verified", t);
                PH_CHECK(!bool_of(r, "authorization"), "%s: an authorization header", t);
            } else {
                PH_CHECK(st == 403 && strcmp(str_of(r, "reason"), "MissingProviderToken") == 0,
                         "%s: %d %s, want 403 MissingProviderToken", t, st, str_of(r, "reason"));
                PH_CHECK(!bool_of(r, "client_cert_present") && bool_of(r, "authorization"),
                         "%s: token auth sent a certificate or no token", t);
            }
        }
        /* once each: a refused certificate is permanent, never retried */
        PH_CHECK(n == 1, "%s: %d requests, want 1", t, n);
    }
    cJSON_Delete(rc);
    cJSON *st = ph_stats("apns", c->tag);
    PH_CHECK(cJSON_GetObjectItem(st, "requests")->valueint == 0,
             "requests reached the token-auth port");
    cJSON_Delete(st);

    PH_CHECK(ph_metric(c, "imtask_push_sent_total{provider=\"apns\"}") == N_OK, "sent %g",
             ph_metric(c, "imtask_push_sent_total{provider=\"apns\"}"));
    PH_CHECK(
        ph_metric(c, "imtask_push_failed_total{provider=\"apns\",reason=\"BadCertificate\"}") ==
            N_BAD,
        "BadCertificate failures");
    PH_CHECK(ph_metric(c, "imtask_push_failed_total{provider=\"apns\",reason="
                          "\"MissingProviderToken\"}") == N_TOK,
             "MissingProviderToken failures");
    PH_CHECK(ph_metric(c, "imtask_push_retries_total") == 0, "retries");
    PH_CHECK(ph_metric(c, "imtask_push_followups_total") == 0, "follow-ups");
    PH_CHECK(ph_log_has(c, "not pushed for good: BadCertificate"),
             "the refused certificate is not logged with its reason");
    int n;
    ph_rec_t *dlq = ph_read_topic(c, 2, &n);
    PH_CHECK(n == 0, "%d dead-lettered", n);
    ph_recs_free(dlq, n);
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

/* ---- rate limit ------------------------------------------------------------------------------ */

/* The most arrivals (ascending, ms) within any window of win_ms. */
static int max_in_window(const cJSON *arr, double win_ms)
{
    int n = cJSON_GetArraySize(arr), best = 0, j = 0;
    double *t = calloc((size_t)n + 1, sizeof(*t));
    for (int i = 0; i < n; i++)
        t[i] = cJSON_GetArrayItem(arr, i)->valuedouble;
    for (int i = 0; i < n; i++) { /* windows [t[i], t[i] + win) */
        if (j < i)
            j = i;
        while (j < n && t[j] - t[i] < win_ms)
            j++;
        if (j - i > best)
            best = j - i;
    }
    free(t);
    return best;
}

static void test_rate_limit(void **state)
{
    (void)state;
    ph_case_t *c = &ph_case;
    task_b_t b;
    char tid[128], sfx[16], extra[4096], url[1024];
    enum { RATE = 200, N = 1000, JITTER_MS = 200 };
    /* The lane's token bucket holds rate/10 + 1 (h2.c), so imtask-push sends
     * at most RATE + BURST requests in any second. The times are the
     * double's, taken when it reads a request: a double that waited for the
     * CPU reads requests sent up to that wait apart within one second, so
     * the bound allows JITTER_MS of such bunching (without a limit the 1000
     * requests of a lane arrive within well under a second; a bucket per
     * connection would allow FCM's 4 connections 4 x RATE). */
    const int burst = RATE / 10 + 1, bound = RATE + burst + RATE * JITTER_MS / 1000;
    ph_case_open(c, "rate");
    snprintf(extra, sizeof(extra),
             "apns:\n  endpoint: %s\n  sandbox_endpoint: %s\n  ca_file: %s\n  apps: [main]\n"
             "  rate_limit: %d\n"
             "fcm:\n  endpoint: %s\n  ca_file: %s\n  apps: [main]\n  rate_limit: %d\n",
             ph_env.apns_url, ph_env.apns_url, ph_env.ca_file, RATE, ph_env.fcm_url, ph_env.ca_file,
             RATE);
    ph_child_opts_t o = {.extra_yaml = extra};
    ph_child_start(c, &o);
    tb_init(&b, 2 * N, NULL);
    for (int i = 0; i < 2 * N; i++) {
        snprintf(sfx, sizeof(sfx), "r%04d", i);
        tb_add(&b, i % 2 ? FCM : APNS, "", sfx);
    }
    snprintf(tid, sizeof(tid), "%.23s-rate", c->tag);
    ph_produce(c, tid, &b.pt);
    ph_wait_metric(c, DONE_METRIC, 1, WAIT_S);

    cJSON *ra = ph_requests("apns", c->tag), *rf = ph_requests("fcm", c->tag);
    for (int i = 0; i < 2 * N; i++)
        expect_seen(i % 2 ? rf : ra, b.tokens[i], 0, NULL, 1); /* each once */
    cJSON_Delete(ra);
    cJSON_Delete(rf);
    PH_CHECK(ph_metric(c, "imtask_push_followups_total") == 0, "a follow-up");
    static const char *const prov[] = {"apns", "fcm"};
    for (int p = 0; p < 2; p++) {
        snprintf(url, sizeof(url), "%s/stats?provider=%s&match=%.23s&arrivals=1", ph_env.push_admin,
                 prov[p], c->tag);
        cJSON *st = ph_json(url, NULL);
        const cJSON *arr = cJSON_GetObjectItem(st, "arrivals");
        PH_CHECK(cJSON_GetArraySize(arr) == N, "%s: %d arrival times, want %d", prov[p],
                 cJSON_GetArraySize(arr), N);
        int most = max_in_window(arr, 1000);
        print_message("rate_limit %s: at most %d requests in a second (limit %d, burst %d, "
                      "bound %d)\n",
                      prov[p], most, RATE, burst, bound);
        PH_CHECK(most <= bound,
                 "%s: %d requests within one second; limit %d + burst %d + %d ms of jitter: %d",
                 prov[p], most, RATE, burst, JITTER_MS, bound);
        cJSON_Delete(st);
    }
    tb_free(&b);
    ph_child_stop(c);
    c->passed = true;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_outcomes, case_teardown),
        cmocka_unit_test_teardown(test_partial, case_teardown),
        cmocka_unit_test_teardown(test_imrepo_users, case_teardown),
        cmocka_unit_test_teardown(test_duplicate, case_teardown),
        cmocka_unit_test_teardown(test_truncation, case_teardown),
        cmocka_unit_test_teardown(test_expired, case_teardown),
        cmocka_unit_test_teardown(test_tls_verify, case_teardown),
        cmocka_unit_test_teardown(test_goaway, case_teardown),
        cmocka_unit_test_teardown(test_multi_app, case_teardown),
        cmocka_unit_test_teardown(test_token_refresh, case_teardown),
        cmocka_unit_test_teardown(test_startup_errors, case_teardown),
        cmocka_unit_test_teardown(test_cert_auth, case_teardown),
        cmocka_unit_test_teardown(test_rate_limit, case_teardown),
    };
    if (ph_setup(argc > 1 ? argv[1] : NULL))
        return 1;
    if (getenv("PUSH_TEST_FILTER") && *getenv("PUSH_TEST_FILTER"))
        cmocka_set_test_filter(getenv("PUSH_TEST_FILTER"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ph_teardown_all();
    return rc;
}
