/* discovery_test.c: endpoints from the real etcd of the local stack: the
 * double's own registration under /services/im-repo/, and instances added
 * and removed under a test prefix while calls run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static int setup(void **state)
{
    (void)state;
    if (!env_imrepo_addr() || !env_imrepo_admin() || !env_etcd()) {
        fprintf(stderr,
                "IMTASK_IMREPO_ADDR / IMTASK_IMREPO_ADMIN / IMTASK_ETCD_ENDPOINTS not set\n");
        return -1;
    }
    return 0;
}

static repo_err_t one_call(repo_client_t *c, repo_status_t *st)
{
    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    mr.message_id = "m1";
    ImRepo__V1__GetMessageResponse *m = NULL;
    repo_call_opts_t o = {.timeout_ms = 2000};
    repo_err_t e = repo_get_message(c, &mr, &o, &m, st);
    if (m)
        repo_response_free(&m->base);
    return e;
}

static void test_stack_registration(void **state)
{
    (void)state;
    const char *kv[] = {"etcd_endpoints", env_etcd(), NULL};
    repo_client_t *c = client_new(kv);
    repo_status_t st;
    int64_t end = now_ms() + 5000;
    repo_err_t e;
    while ((e = one_call(c, &st)) != REPO_ERR_OK && now_ms() < end)
        sleep_ms(50);
    assert_int_equal(e, REPO_ERR_OK);
    repo_stats_t s;
    repo_client_stats(c, &s);
    assert_true(s.endpoints >= 1);
    repo_client_destroy(&c);
}

/* Run calls for ms; count OKs. */
static int calls_for(repo_client_t *c, int64_t ms)
{
    repo_status_t st;
    int ok = 0;
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        if (one_call(c, &st) == REPO_ERR_OK)
            ok++;
        sleep_ms(2);
    }
    return ok;
}

static void test_join_and_leave(void **state)
{
    (void)state;
    char a[64], b[64], prefix[128], ka[160], kb[160], val[128];
    admin_spawn(a, sizeof a);
    admin_spawn(b, sizeof b);
    snprintf(prefix, sizeof prefix, "/imtask-test/%d-%lld/im-repo/", (int)getpid(),
             (long long)now_ms());
    snprintf(ka, sizeof ka, "%sa", prefix);
    snprintf(kb, sizeof kb, "%sb", prefix);
    snprintf(val, sizeof val, "{\"addr\":\"%s\"}", a);
    assert_int_equal(etcd_put(ka, val), 0);

    const char *kv[] = {"etcd_endpoints", env_etcd(), "etcd_prefix", prefix, NULL};
    repo_client_t *c = client_new(kv);
    repo_status_t st;
    int64_t end = now_ms() + 5000;
    while (one_call(c, &st) != REPO_ERR_OK && now_ms() < end)
        sleep_ms(20);

    /* Only a. */
    int64_t a0 = admin_listener_calls(a), b0 = admin_listener_calls(b);
    assert_true(calls_for(c, 300) > 10);
    assert_true(admin_listener_calls(a) > a0);
    assert_int_equal(admin_listener_calls(b), b0);

    /* b joins (plain "host:port" value): both get calls, round robin. */
    assert_int_equal(etcd_put(kb, b), 0);
    sleep_ms(300);
    a0 = admin_listener_calls(a);
    b0 = admin_listener_calls(b);
    int ok = calls_for(c, 500);
    int64_t da = admin_listener_calls(a) - a0, db = admin_listener_calls(b) - b0;
    fprintf(stderr, "a and b: %d calls, a %lld, b %lld\n", ok, (long long)da, (long long)db);
    assert_true(da > ok / 4 && db > ok / 4);

    /* a leaves: no more calls to a, and none fail. */
    assert_int_equal(etcd_del(ka), 0);
    sleep_ms(300);
    a0 = admin_listener_calls(a);
    b0 = admin_listener_calls(b);
    ok = calls_for(c, 300);
    assert_true(ok > 10);
    assert_int_equal(admin_listener_calls(a), a0);
    assert_int_equal(admin_listener_calls(b) - b0, ok);

    /* Garbage values are ignored, not fatal. */
    char kg[200];
    snprintf(kg, sizeof kg, "%sgarbage", prefix);
    assert_int_equal(etcd_put(kg, "not an address"), 0);
    sleep_ms(200);
    assert_int_equal(one_call(c, &st), REPO_ERR_OK);

    /* Everything gone: calls fail fast with UNAVAILABLE. */
    assert_int_equal(etcd_del(kb), 0);
    assert_int_equal(etcd_del(kg), 0);
    sleep_ms(300);
    repo_err_t e = one_call(c, &st);
    fprintf(stderr, "no instances: %s: %s\n", repo_err_name(e), st.message);
    assert_int_equal(e, REPO_ERR_UNAVAILABLE);

    repo_stats_t s;
    repo_client_stats(c, &s);
    assert_true(s.endpoint_updates >= 4);
    repo_client_destroy(&c);
    cJSON_Delete(admin(1, "/close?addr=%s", a));
    cJSON_Delete(admin(1, "/close?addr=%s", b));
}

static void test_etcd_down(void **state)
{
    (void)state;
    /* An etcd that does not answer: the client starts, calls fail with
     * UNAVAILABLE until endpoints come; destroy is quick. */
    const char *kv[] = {"etcd_endpoints", "http://127.0.0.1:1", NULL};
    repo_client_t *c = client_new(kv);
    repo_status_t st;
    assert_int_equal(one_call(c, &st), REPO_ERR_UNAVAILABLE);
    int64_t t0 = now_ms();
    repo_client_destroy(&c);
    assert_true(now_ms() - t0 < 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stack_registration),
        cmocka_unit_test(test_join_and_leave),
        cmocka_unit_test(test_etcd_down),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
