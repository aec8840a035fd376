/* registry_test.c: dispatch_register: versions, names, aliases, duplicates, bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "dispatch/dispatch.h"
#include "infra/log.h"

static int destroyed;

static dispatch_result_t noop_process(void *state, dispatch_task_t *t)
{
    (void)state;
    (void)t;
    return dispatch_done();
}

static void count_destroy(void *state)
{
    (void)state;
    destroyed++;
}

static int set_state(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    (void)cfg;
    (void)err;
    (void)errlen;
    *state = &destroyed;
    return 0;
}

static const dispatch_ops_t good = {
    .api_version = DISPATCH_API_VERSION,
    .name = "good",
    .process = noop_process,
};
static const dispatch_ops_t other = {
    .api_version = DISPATCH_API_VERSION,
    .name = "other",
    .process = noop_process,
};

static int quiet(void **state)
{
    (void)state;
    log_set_fd(open("/dev/null", 1)); /* the refusals log errors */
    return 0;
}

static void test_register_and_lookup(void **state)
{
    dispatch_t *d = dispatch_new("t");
    (void)state;
    assert_int_equal(dispatch_register(d, "content_audit", &good), 0);
    assert_int_equal(dispatch_register(d, "push", &other), 0);
    assert_ptr_equal(dispatch_lookup(d, "content_audit"), &good);
    assert_ptr_equal(dispatch_lookup(d, "audit"), &good); /* the alias */
    assert_ptr_equal(dispatch_lookup(d, "push"), &other);
    assert_null(dispatch_lookup(d, "fanout"));
    assert_null(dispatch_lookup(d, "nothing"));
    dispatch_destroy(&d);
    assert_null(d);
    dispatch_destroy(NULL);
}

static void test_alias_registered_once(void **state)
{
    dispatch_t *d = dispatch_new("t");
    (void)state;
    assert_int_equal(dispatch_register(d, "audit", &good), 0);
    assert_int_equal(dispatch_register(d, "content_audit", &other), -1); /* same type */
    assert_ptr_equal(dispatch_lookup(d, "content_audit"), &good);
    dispatch_destroy(&d);
}

static void test_refusals(void **state)
{
    dispatch_t *d = dispatch_new("t");
    dispatch_ops_t v2 = good, noproc = good;
    (void)state;
    v2.api_version = DISPATCH_API_VERSION + 1;
    noproc.process = NULL;
    assert_int_equal(dispatch_register(d, "push", &v2), -1);
    assert_int_equal(dispatch_register(d, "push", &noproc), -1);
    assert_int_equal(dispatch_register(d, "push", NULL), -1);
    assert_int_equal(dispatch_register(d, "Push", &good), -1);
    assert_int_equal(dispatch_register(d, "push-x", &good), -1);
    assert_int_equal(dispatch_register(d, "", &good), -1);
    assert_int_equal(dispatch_register(d, NULL, &good), -1);
    assert_null(dispatch_lookup(d, "push"));
    /* a custom type of a new processor is fine */
    assert_int_equal(dispatch_register(d, "my_new_task", &good), 0);
    assert_int_equal(dispatch_register(d, "my_new_task", &good), -1);
    dispatch_destroy(&d);
}

static void test_bound(void **state)
{
    dispatch_t *d = dispatch_new("t");
    char name[32];
    (void)state;
    for (int i = 0; i < DISPATCH_MAX_PROCESSORS; i++) {
        snprintf(name, sizeof(name), "type_%d", i);
        assert_int_equal(dispatch_register(d, name, &good), 0);
    }
    assert_int_equal(dispatch_register(d, "one_too_many", &good), -1);
    dispatch_destroy(&d);
}

static void test_destroy_frees_states(void **state)
{
    dispatch_ops_t withstate = good;
    dispatch_t *d = dispatch_new("t");
    void *st = NULL;
    (void)state;
    withstate.configure = set_state;
    withstate.destroy = count_destroy;
    assert_int_equal(dispatch_register(d, "push", &withstate), 0);
    /* configure runs inside dispatch_main; here, check the ops are what a
     * binary would call */
    assert_int_equal(dispatch_lookup(d, "push")->configure(&st, NULL, NULL, 0), 0);
    assert_ptr_equal(st, &destroyed);
    destroyed = 0;
    dispatch_destroy(&d); /* no state was set in the registry itself */
    assert_int_equal(destroyed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_lookup),
        cmocka_unit_test(test_alias_registered_once),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_destroy_frees_states),
    };
    return cmocka_run_group_tests(tests, quiet, NULL);
}
