/* http_test.c: the audit HTTP client (tasks/audit/http.c), both engines,
 * against the moderation double of the local stack (IMTASK_MODERATION_ADDR,
 * default http://127.0.0.1:19510), in a scenario of its own:
 * answers and their status, Retry-After, a hung server cut by the timeout,
 * a connection reset, a body over max_response_bytes, nothing listening, and
 * the in-flight bound held with many more callers than slots (the double's
 * own count of concurrent requests). No assertion is about timings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tasks/audit/http.h"

static char g_base[256]; /* http://host:port */
static char g_scenario[64];

/* The double's admin endpoint (libcurl directly: it needs PUT, PATCH, ...). */
static int admin(const char *method, const char *path, const char *body, char *out, size_t outlen)
{
    char url[512];
    long code = 0;
    snprintf(url, sizeof(url), "%s%s", g_base, path);
    CURL *e = curl_easy_init();
    FILE *mem = fmemopen(out, outlen, "w");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, mem);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    fclose(mem);
    curl_easy_cleanup(e);
    return (int)code;
}

static int setup(void **state)
{
    const char *m = getenv("IMTASK_MODERATION_ADDR");
    char out[4096];
    (void)state;
    snprintf(g_base, sizeof(g_base), "%s", m && *m ? m : "http://127.0.0.1:19510");
    snprintf(g_scenario, sizeof(g_scenario), "http-test-%d", (int)getpid());
    char path[128];
    snprintf(path, sizeof(path), "/admin/scenarios/%s", g_scenario);
    int st = admin("PUT", path, "{\"latency_ms\":20}", out, sizeof(out));
    if (st != 200)
        fail_msg("moderation double at %s: HTTP %d (scripts/stack.sh up)", g_base, st);
    return 0;
}

static int teardown(void **state)
{
    char out[1024], path[128];
    (void)state;
    snprintf(path, sizeof(path), "/admin/scenarios/%s", g_scenario);
    admin("DELETE", path, NULL, out, sizeof(out));
    return 0;
}

static audit_http_t *client(int engine, int in_flight, int64_t timeout_ms)
{
    audit_http_conf_t hc = {.engine = engine,
                            .max_in_flight = in_flight,
                            .timeout_ms = timeout_ms,
                            .connect_timeout_ms = 2000,
                            .max_response_bytes = 4096,
                            .max_conns = in_flight,
                            .user_agent = "http_test"};
    audit_http_t *h;
    char err[256];
    assert_int_equal(audit_http_new(&h, &hc, err, sizeof(err)), 0);
    return h;
}

static int call(audit_http_t *h, const char *force, const char *body, audit_http_resp_t *resp)
{
    audit_req_t req = {0};
    char url[512];
    snprintf(url, sizeof(url), "%s/s/%s/generic/moderate", g_base, g_scenario);
    audit_req_set_url(&req, url);
    audit_req_add_header(&req, "Content-Type: application/json");
    if (force)
        audit_req_add_header(&req, "x-moderation-force: %s", force);
    req.body = strdup(body ? body : "{\"text\":\"hello\"}");
    req.body_len = strlen(req.body);
    int rc = audit_http_do(h, &req, resp);
    audit_req_free(&req);
    return rc;
}

static void run_answers(int engine)
{
    audit_http_t *h = client(engine, 4, 1500);
    audit_http_resp_t r;

    assert_int_equal(call(h, NULL, "{\"text\":\"please blockme\"}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"decision\":\"block\""));
    assert_int_equal(r.retry_after_ms, -1);
    assert_true(r.seconds > 0);
    audit_http_resp_free(&r);

    assert_int_equal(call(h, "429", NULL, &r), 0); /* an answer, whatever its status */
    assert_int_equal(r.status, 429);
    assert_int_equal(r.retry_after_ms, 1000);
    audit_http_resp_free(&r);

    assert_int_equal(call(h, "503", NULL, &r), 0);
    assert_int_equal(r.status, 503);
    audit_http_resp_free(&r);

    assert_int_equal(call(h, "hang", NULL, &r), -1);
    assert_true(r.timed_out);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.error, "imeout"));
    audit_http_resp_free(&r);

    assert_int_equal(call(h, "reset", NULL, &r), -1);
    assert_false(r.timed_out);
    assert_int_not_equal(r.curl_code, 0);
    audit_http_resp_free(&r);

    /* the client still works after those */
    assert_int_equal(call(h, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    audit_http_resp_free(&r);
    audit_http_destroy(&h);
    assert_null(h);
}

static void test_answers_multi(void **state)
{
    (void)state;
    run_answers(AUDIT_HTTP_MULTI);
}

static void test_answers_easy(void **state)
{
    (void)state;
    run_answers(AUDIT_HTTP_EASY);
}

static void test_too_large_and_refused(void **state)
{
    char out[1024], path[128], *big;
    audit_http_resp_t r;
    (void)state;
    /* the next answer is 64 KiB, over the client's 4 KiB */
    big = malloc(70000);
    int n = snprintf(big, 70000, "{\"answer\":{\"status\":200,\"count\":2,\"body\":\"");
    memset(big + n, 'x', 65536);
    strcpy(big + n + 65536, "\"}}");
    snprintf(path, sizeof(path), "/admin/scenarios/%s", g_scenario);
    assert_int_equal(admin("PATCH", path, big, out, sizeof(out)), 200);
    free(big);
    for (int engine = 0; engine < 2; engine++) {
        audit_http_t *h = client(engine, 2, 3000);
        assert_int_equal(call(h, NULL, NULL, &r), -1);
        assert_true(r.too_large);
        assert_non_null(strstr(r.error, "too large"));
        audit_http_resp_free(&r);
        audit_http_destroy(&h);
    }
    /* nothing listening: a transport error, not a hang */
    audit_http_t *h = client(AUDIT_HTTP_MULTI, 2, 3000);
    audit_req_t req = {0};
    audit_req_set_url(&req, "http://127.0.0.1:9/nothing");
    req.body = strdup("{}");
    req.body_len = 2;
    assert_int_equal(audit_http_do(h, &req, &r), -1);
    assert_false(r.timed_out);
    assert_non_null(strstr(r.error, "onnect"));
    audit_http_resp_free(&r);
    audit_req_free(&req);
    audit_http_destroy(&h);
}

typedef struct {
    audit_http_t *h;
    int ok, failed;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < 10; i++) {
        audit_http_resp_t r;
        if (call(w->h, NULL, NULL, &r) == 0 && r.status == 200)
            w->ok++;
        else
            w->failed++;
        audit_http_resp_free(&r);
    }
    return NULL;
}

static double scenario_stat(const char *key)
{
    char out[8192], path[128];
    snprintf(path, sizeof(path), "/admin/scenarios/%s/stats", g_scenario);
    assert_int_equal(admin("GET", path, NULL, out, sizeof(out)), 200);
    cJSON *j = cJSON_Parse(out);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, key);
    double v = cJSON_IsNumber(n) ? n->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}

static void test_in_flight_bound(void **state)
{
    enum { THREADS = 48, LIMIT = 8 };
    char out[1024], path[128];
    (void)state;
    for (int engine = 0; engine < 2; engine++) {
        /* a fresh scenario: its max_in_flight counter starts at 0 */
        snprintf(path, sizeof(path), "/admin/scenarios/%s", g_scenario);
        assert_int_equal(admin("PUT", path, "{\"latency_ms\":30}", out, sizeof(out)), 200);
        audit_http_t *h = client(engine, LIMIT, 5000);
        pthread_t th[THREADS];
        worker_t w[THREADS];
        for (int i = 0; i < THREADS; i++) {
            w[i] = (worker_t){.h = h};
            assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
        }
        int ok = 0, failed = 0;
        for (int i = 0; i < THREADS; i++) {
            pthread_join(th[i], NULL);
            ok += w[i].ok;
            failed += w[i].failed;
        }
        audit_http_destroy(&h);
        assert_int_equal(ok, THREADS * 10);
        assert_int_equal(failed, 0);
        double seen = scenario_stat("max_in_flight");
        if (seen > LIMIT || seen < 1)
            fail_msg("%s engine: the double saw %g requests at once (limit %d)",
                     engine ? "easy" : "multi", seen, LIMIT);
        assert_true(scenario_stat("requests") == THREADS * 10);
    }
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_multi),
        cmocka_unit_test(test_answers_easy),
        cmocka_unit_test(test_too_large_and_refused),
        cmocka_unit_test(test_in_flight_bound),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
