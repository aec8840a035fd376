/* conf_test.c: repo_conf_set and repo_conf_bind (file and environment). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "repoclient/repoclient.h"

static void test_set(void **state)
{
    (void)state;
    char err[256];
    repo_conf_t *c = repo_conf_new();
    assert_non_null(c);
    assert_int_equal(repo_conf_set(c, "default_timeout", "250ms", err, sizeof err), 0);
    assert_int_equal(repo_conf_set(c, "tls", "true", err, sizeof err), 0);
    assert_int_equal(repo_conf_set(c, "max_attempts", "0", err, sizeof err), -1);
    assert_non_null(strstr(err, "max_attempts"));
    assert_int_equal(repo_conf_set(c, "tls", "maybe", err, sizeof err), -1);
    assert_int_equal(repo_conf_set(c, "nope", "1", err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown"));
    assert_int_equal(repo_conf_set(c, "max_recv_msg_bytes", "999999999", err, sizeof err), -1);
    repo_conf_destroy(c);
    repo_conf_destroy(NULL);
}

static void test_bind(void **state)
{
    (void)state;
    char err[512];
    setenv("IMTASK_IMREPO_MAX_ATTEMPTS", "3", 1);
    cfg_t *cfg = cfg_load_string("imrepo:\n  endpoints: 127.0.0.1:1\n  default_timeout: 2s\n",
                                 "test.yaml", err, sizeof err);
    assert_non_null(cfg);
    repo_conf_t *c = repo_conf_new();
    assert_int_equal(repo_conf_bind(c, cfg, "imrepo", err, sizeof err), 0);
    assert_int_equal(cfg_finish(cfg, err, sizeof err), 0);
    repo_conf_destroy(c);
    cfg_destroy(cfg);
    cfg = cfg_load_string("imrepo:\n  default_timeout: soon\n", "bad.yaml", err, sizeof err);
    c = repo_conf_new();
    assert_int_equal(repo_conf_bind(c, cfg, "imrepo", err, sizeof err), -1);
    assert_non_null(strstr(err, "default_timeout"));
    repo_conf_destroy(c);
    cfg_destroy(cfg);
    unsetenv("IMTASK_IMREPO_MAX_ATTEMPTS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_bind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
