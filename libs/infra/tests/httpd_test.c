/* httpd_test.c: tests for infra/httpd over real HTTP on loopback, with libcurl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "infra/httpd.h"
#include "infra/metrics.h"

#define BODY_MAX (1u << 20)

typedef struct {
    long status;
    char *body; /* NUL-terminated, at most BODY_MAX bytes */
    size_t len;
    char ctype[128];
    char allow[128];
    char error[CURL_ERROR_SIZE];
} resp_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    resp_t *r = userdata;
    size_t n = size * nmemb;
    if (n > BODY_MAX - r->len)
        return 0; /* aborts the transfer */
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    resp_t *r = userdata;
    size_t n = size * nmemb;
    static const char allow[] = "allow:";
    if (n > sizeof(allow) - 1 && strncasecmp(data, allow, sizeof(allow) - 1) == 0) {
        const char *v = data + sizeof(allow) - 1;
        size_t vlen = n - (sizeof(allow) - 1);
        while (vlen > 0 && *v == ' ') {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
            vlen--;
        if (vlen >= sizeof(r->allow))
            vlen = sizeof(r->allow) - 1;
        memcpy(r->allow, v, vlen);
        r->allow[vlen] = '\0';
    }
    return n;
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* method: "GET", "HEAD", "POST" or any other verb. Returns the curl result. */
static CURLcode fetch_url(const char *url, const char *method, resp_t *r)
{
    memset(r, 0, sizeof(*r));
    r->body = calloc(1, BODY_MAX + 1);
    assert_non_null(r->body);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never through an environment proxy */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->error);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "a=b");
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ct != NULL)
            snprintf(r->ctype, sizeof(r->ctype), "%s", ct);
    }
    curl_easy_cleanup(c);
    return rc;
}

/* Fetches http://127.0.0.1:port/path; fails the test on a transport error. */
static void fetch(const httpd_t *h, const char *method, const char *path, resp_t *r)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)httpd_port(h), path);
    CURLcode rc = fetch_url(url, method, r);
    if (rc != CURLE_OK) {
        print_error("%s %s: %s (%s)\n", method, url, curl_easy_strerror(rc), r->error);
        resp_free(r);
        fail();
    }
}

static httpd_t *start_ok(const char *listen, metrics_registry_t *reg)
{
    char err[256] = "";
    httpd_t *h = httpd_start(listen, reg, err, sizeof(err));
    if (h == NULL) {
        print_error("httpd_start(%s): %s\n", listen, err);
        fail();
    }
    assert_int_not_equal(httpd_port(h), 0);
    return h;
}

/* ---- readiness checks ---- */

typedef struct {
    _Atomic int ready;
    _Atomic int calls;
    const char *reason;
} check_state_t;

static int check_cb(void *opaque, char *reason, size_t reasonlen)
{
    check_state_t *st = opaque;
    atomic_fetch_add(&st->calls, 1);
    if (atomic_load(&st->ready))
        return 1;
    if (st->reason != NULL)
        snprintf(reason, reasonlen, "%s", st->reason);
    return 0;
}

/* Writes reasonlen bytes with no NUL and a newline in the middle. */
static int check_rude(void *opaque, char *reason, size_t reasonlen)
{
    (void)opaque;
    memset(reason, 'r', reasonlen);
    reason[3] = '\n';
    return 0;
}

static int check_minus_one(void *opaque, char *reason, size_t reasonlen)
{
    (void)opaque;
    (void)reason;
    (void)reasonlen;
    return -1;
}

/* ---- tests ---- */

static int group_setup(void **state)
{
    (void)state;
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

static void test_healthz(void **state)
{
    (void)state;
    httpd_t *h = start_ok("127.0.0.1:0", NULL);
    resp_t r;
    fetch(h, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    assert_string_equal(r.ctype, "text/plain; charset=utf-8");
    resp_free(&r);

    fetch(h, "HEAD", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    resp_free(&r);

    /* Query strings do not change the path. */
    fetch(h, "GET", "/healthz?verbose=1", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);

    /* A NULL registry serves an empty /metrics. */
    fetch(h, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    resp_free(&r);
    httpd_stop(&h);
    assert_null(h);
}

static void test_readyz(void **state)
{
    (void)state;
    httpd_t *h = start_ok("127.0.0.1:0", NULL);
    resp_t r;

    /* No check: ready, empty body. */
    fetch(h, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");
    resp_free(&r);

    check_state_t db = {.ready = 0, .reason = "warming up"};
    check_state_t kafka = {.ready = 1, .reason = NULL};
    assert_int_equal(httpd_add_ready_check(h, "db", check_cb, &db), 0);
    assert_int_equal(httpd_add_ready_check(h, "kafka", check_cb, &kafka), 0);

    fetch(h, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "db: not ready: warming up\nkafka: ok\n");
    assert_string_equal(r.ctype, "text/plain; charset=utf-8");
    resp_free(&r);

    atomic_store(&db.ready, 1);
    fetch(h, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "db: ok\nkafka: ok\n");
    resp_free(&r);

    /* Not ready without a reason, and a flip back. */
    atomic_store(&kafka.ready, 0);
    fetch(h, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "db: ok\nkafka: not ready: no reason given\n");
    resp_free(&r);
    assert_true(atomic_load(&db.calls) >= 3);
    httpd_stop(&h);
}

static void test_readyz_hostile_checks(void **state)
{
    (void)state;
    httpd_t *h = start_ok("127.0.0.1:0", NULL);
    assert_int_equal(httpd_add_ready_check(h, "rude", check_rude, NULL), 0);
    resp_t r;
    fetch(h, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    /* Truncated to HTTPD_MAX_REASON - 1 bytes, the newline made a space: still one line. */
    assert_int_equal(r.len, strlen("rude: not ready: ") + HTTPD_MAX_REASON - 1 + 1);
    assert_memory_equal(r.body, "rude: not ready: rrr r", strlen("rude: not ready: rrr r"));
    assert_ptr_equal(strchr(r.body, '\n'), r.body + r.len - 1);
    resp_free(&r);
    httpd_stop(&h);

    /* Only exactly 1 means ready. */
    h = start_ok("127.0.0.1:0", NULL);
    assert_int_equal(httpd_add_ready_check(h, "weird", check_minus_one, NULL), 0);
    fetch(h, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    resp_free(&r);
    httpd_stop(&h);
}

static void test_ready_check_limits(void **state)
{
    (void)state;
    httpd_t *h = start_ok("127.0.0.1:0", NULL);
    check_state_t ok = {.ready = 1};
    char name[HTTPD_MAX_CHECK_NAME + 1];

    assert_int_equal(httpd_add_ready_check(NULL, "x", check_cb, &ok), -1);
    assert_int_equal(httpd_add_ready_check(h, NULL, check_cb, &ok), -1);
    assert_int_equal(httpd_add_ready_check(h, "", check_cb, &ok), -1);
    assert_int_equal(httpd_add_ready_check(h, "x", NULL, &ok), -1);
    assert_int_equal(httpd_add_ready_check(h, "a\nb", check_cb, &ok), -1);
    memset(name, 'n', HTTPD_MAX_CHECK_NAME);
    name[HTTPD_MAX_CHECK_NAME] = '\0';
    assert_int_equal(httpd_add_ready_check(h, name, check_cb, &ok), -1);
    name[HTTPD_MAX_CHECK_NAME - 1] = '\0'; /* just fits */
    assert_int_equal(httpd_add_ready_check(h, name, check_cb, &ok), 0);

    for (int i = 1; i < HTTPD_MAX_CHECKS; i++) {
        char n[16];
        snprintf(n, sizeof(n), "c%d", i);
        assert_int_equal(httpd_add_ready_check(h, n, check_cb, &ok), 0);
    }
    assert_int_equal(httpd_add_ready_check(h, "one_too_many", check_cb, &ok), -1);

    resp_t r;
    fetch(h, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    size_t lines = 0;
    for (const char *p = r.body; *p != '\0'; p++)
        lines += *p == '\n';
    assert_int_equal(lines, HTTPD_MAX_CHECKS);
    assert_non_null(strstr(r.body, "c15: ok\n"));
    resp_free(&r);
    httpd_stop(&h);
}

static void test_metrics(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    metrics_family_t *fam =
        metrics_counter_new(reg, "im_test_requests_total", "Requests seen.", 0, NULL);
    metrics_series_t *s = metrics_series_get0(fam);
    metrics_counter_add(s, 41);
    httpd_t *h = start_ok("127.0.0.1:0", reg);

    resp_t r;
    fetch(h, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "# TYPE im_test_requests_total counter\n"));
    assert_non_null(strstr(r.body, "\nim_test_requests_total 41\n"));
    /* Exactly what metrics_render says. */
    size_t len = 0;
    char *text = metrics_render(reg, &len);
    assert_int_equal(r.len, len);
    assert_string_equal(r.body, text);
    free(text);
    resp_free(&r);

    /* Live values, and families added while serving. */
    metrics_counter_add(s, 1);
    const char *const l1[] = {"k"};
    metrics_gauge_set(metrics_series_get1(metrics_gauge_new(reg, "im_late", "Late.", 1, l1), "v"),
                      2.5);
    fetch(h, "GET", "/metrics", &r);
    assert_non_null(strstr(r.body, "\nim_test_requests_total 42\n"));
    assert_non_null(strstr(r.body, "\nim_late{k=\"v\"} 2.5\n"));
    resp_free(&r);

    fetch(h, "HEAD", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    resp_free(&r);

    httpd_stop(&h);
    metrics_registry_destroy(reg);
}

static void test_not_found_and_method(void **state)
{
    (void)state;
    httpd_t *h = start_ok("127.0.0.1:0", NULL);
    static const char *const paths[] = {"/", "/nope", "/healthz/", "/HEALTHZ", "/metricsx"};
    resp_t r;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        fetch(h, "GET", paths[i], &r);
        assert_int_equal(r.status, 404);
        assert_string_equal(r.body, "not found\n");
        resp_free(&r);
    }
    static const char *const methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        fetch(h, methods[i], "/healthz", &r);
        assert_int_equal(r.status, 405);
        assert_string_equal(r.allow, "GET, HEAD");
        assert_string_equal(r.body, "method not allowed\n");
        resp_free(&r);
    }
    /* 405 comes before 404. */
    fetch(h, "POST", "/nope", &r);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    /* And the server still answers afterwards. */
    fetch(h, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    httpd_stop(&h);
}

static void test_bad_listen(void **state)
{
    (void)state;
    static const struct {
        const char *listen;
        const char *want; /* in err */
    } cases[] = {
        {"nope", "no port"},
        {"1.2.3.4:99999", "out of range"},
        {"", "empty"},
        {"127.0.0.1:", "empty port"},
        {":9090", "empty host"},
        {"127.0.0.1:abc", "not a decimal number"},
        {"127.0.0.1:-1", "not a decimal number"},
        {"127.0.0.1:+80", "not a decimal number"},
        {"127.0.0.1: 80", "not a decimal number"},
        {"127.0.0.1:123456", "out of range"},
        {"127.0.0.1:65536", "out of range"},
        {"999.1.1.1:80", "not a numeric IPv4"},
        {"example.com:80", "not a numeric IPv4"},
        {"*:80", "not a numeric IPv4"},
        {"::1:80", "brackets"},
        {"[::1", "no ']'"},
        {"[::1]80", "no ':port'"},
        {"[1.2.3.4]:80", "not a numeric IPv6"},
        {"[]:80", "empty host"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "untouched";
        httpd_t *h = httpd_start(cases[i].listen, NULL, err, sizeof(err));
        if (h != NULL || strstr(err, cases[i].want) == NULL) {
            print_error("listen \"%s\": %s, err \"%s\", want \"%s\"\n", cases[i].listen,
                        h != NULL ? "started" : "failed", err, cases[i].want);
            httpd_stop(&h);
            fail();
        }
    }
    char err[256] = "";
    assert_null(httpd_start(NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "empty"));
    assert_null(httpd_start("nope", NULL, NULL, 0)); /* no err buffer: no crash */
    char tiny[8];
    assert_null(httpd_start("nope", NULL, tiny, sizeof(tiny)));
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1); /* truncated, terminated */
    char *huge = malloc(4096);
    assert_non_null(huge);
    memset(huge, '1', 4095);
    huge[4095] = '\0';
    assert_null(httpd_start(huge, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "longer"));
    free(huge);
}

static void test_port_in_use(void **state)
{
    (void)state;
    httpd_t *a = start_ok("127.0.0.1:0", NULL);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)httpd_port(a));
    char err[256] = "";
    httpd_t *b = httpd_start(listen, NULL, err, sizeof(err));
    assert_null(b);
    /* Says where and why (libmicrohttpd's own words, not a generic failure). */
    assert_non_null(strstr(err, "cannot serve HTTP on"));
    assert_non_null(strstr(err, listen));
    assert_non_null(strstr(err, "bind"));
    httpd_stop(&a);

    /* Freed: the same port can be taken again. */
    a = start_ok(listen, NULL);
    httpd_stop(&a);
}

static void test_address_not_local(void **state)
{
    (void)state;
    /* Well-formed, but 192.0.2.1 (TEST-NET-1) is not an address of this host. */
    char err[256] = "";
    assert_null(httpd_start("192.0.2.1:0", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot serve HTTP on 192.0.2.1:0"));
    assert_non_null(strstr(err, "bind"));
}

static void test_stop_and_port_null(void **state)
{
    (void)state;
    httpd_stop(NULL);
    httpd_t *h = NULL;
    httpd_stop(&h);
    assert_int_equal(httpd_port(NULL), 0);

    /* "localhost" means 127.0.0.1; 0.0.0.0 binds all interfaces. */
    h = start_ok("localhost:0", NULL);
    resp_t r;
    fetch(h, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    httpd_stop(&h);
    h = start_ok("0.0.0.0:0", NULL);
    fetch(h, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    httpd_stop(&h);
}

static void test_bound_to_given_host(void **state)
{
    (void)state;
    /* Bound to 127.0.0.2 only: 127.0.0.1 on the same port must be refused. */
    char err[256] = "";
    httpd_t *h = httpd_start("127.0.0.2:0", NULL, err, sizeof(err));
    if (h == NULL) {
        print_message("skipped: cannot bind 127.0.0.2 here: %s\n", err);
        skip();
    }
    char url[128];
    resp_t r;
    snprintf(url, sizeof(url), "http://127.0.0.2:%u/healthz", (unsigned)httpd_port(h));
    assert_int_equal(fetch_url(url, "GET", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/healthz", (unsigned)httpd_port(h));
    assert_int_not_equal(fetch_url(url, "GET", &r), CURLE_OK);
    resp_free(&r);
    httpd_stop(&h);
}

static void test_ipv6(void **state)
{
    (void)state;
    char err[256] = "";
    httpd_t *h = httpd_start("[::1]:0", NULL, err, sizeof(err));
    if (h == NULL) {
        print_message("skipped: no IPv6 loopback here: %s\n", err);
        skip();
    }
    char url[128];
    snprintf(url, sizeof(url), "http://[::1]:%u/healthz", (unsigned)httpd_port(h));
    resp_t r;
    assert_int_equal(fetch_url(url, "GET", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    resp_free(&r);
    httpd_stop(&h);
}

/* Many clients at once while checks are being added. */
typedef struct {
    const httpd_t *h;
    _Atomic int *failures;
} client_arg_t;

static void *client_thread(void *p)
{
    client_arg_t *a = p;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/metrics", (unsigned)httpd_port(a->h));
    for (int i = 0; i < 20; i++) {
        resp_t r;
        if (fetch_url(url, "GET", &r) != CURLE_OK || r.status != 200 ||
            strstr(r.body, "im_hits_total") == NULL)
            atomic_fetch_add(a->failures, 1);
        resp_free(&r);
    }
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    metrics_counter_add(
        metrics_series_get0(metrics_counter_new(reg, "im_hits_total", NULL, 0, NULL)), 1);
    httpd_t *h = start_ok("127.0.0.1:0", reg);
    _Atomic int failures = 0;
    client_arg_t arg = {.h = h, .failures = &failures};
    pthread_t tids[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&tids[i], NULL, client_thread, &arg), 0);
    check_state_t ok = {.ready = 1};
    for (int i = 0; i < HTTPD_MAX_CHECKS; i++) {
        char n[16];
        snprintf(n, sizeof(n), "c%d", i);
        assert_int_equal(httpd_add_ready_check(h, n, check_cb, &ok), 0);
        resp_t r;
        fetch(h, "GET", "/readyz", &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(tids[i], NULL), 0);
    assert_int_equal(atomic_load(&failures), 0);
    httpd_stop(&h);
    metrics_registry_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_readyz),
        cmocka_unit_test(test_readyz_hostile_checks),
        cmocka_unit_test(test_ready_check_limits),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_bad_listen),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_address_not_local),
        cmocka_unit_test(test_stop_and_port_null),
        cmocka_unit_test(test_bound_to_given_host),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_concurrent_clients),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
