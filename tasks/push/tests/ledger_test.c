/* ledger_test.c: the sent-ledger remembers settled devices per push, for at
 * least half its capacity or half its ttl, and stays bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>

#include "tasks/push/ledger.h"

static void test_basic(void **state)
{
    (void)state;
    push_ledger_t *l = push_ledger_new(1024, 60000);
    uint64_t k1 = push_ledger_key("task-1", 1, "tok"), k2 = push_ledger_key("task-2", 1, "tok");
    uint64_t k3 = push_ledger_key("task-1", 2, "tok"), k4 = push_ledger_key("task-1tok", 1, "");
    assert_non_null(l);
    assert_true(k1 != k2 && k1 != k3 && k1 != k4);
    assert_false(push_ledger_has(l, k1, 0));
    push_ledger_add(l, k1, 0);
    push_ledger_add(l, k1, 0); /* twice is once */
    assert_true(push_ledger_has(l, k1, 1));
    assert_false(push_ledger_has(l, k2, 1)); /* another push to the same token */
    assert_false(push_ledger_has(l, k3, 1)); /* another platform */
    push_ledger_free(&l);
    assert_null(l);
}

static void test_bounded_by_volume(void **state)
{
    (void)state;
    char tok[32];
    push_ledger_t *l = push_ledger_new(1000, 3600000); /* 1024 slots per generation */
    for (int i = 0; i < 100000; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        push_ledger_add(l, push_ledger_key("r", 1, tok), i);
    }
    /* the last capacity/2 keys are always there */
    for (int i = 100000 - 512; i < 100000; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        assert_true(push_ledger_has(l, push_ledger_key("r", 1, tok), 100000));
    }
    /* old ones are gone (bounded memory) */
    int old = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        old += push_ledger_has(l, push_ledger_key("r", 1, tok), 100000);
    }
    assert_int_equal(old, 0);
    push_ledger_free(&l);
}

static void test_ttl(void **state)
{
    (void)state;
    push_ledger_t *l = push_ledger_new(4096, 10000);
    uint64_t k = push_ledger_key("r", 1, "x");
    push_ledger_add(l, k, 1000);
    assert_true(push_ledger_has(l, k, 5999)); /* under ttl/2: surely kept */
    assert_true(push_ledger_has(l, k, 9000));
    assert_false(push_ledger_has(l, k, 12000)); /* past the ttl: forgotten */
    push_ledger_free(&l);
}

static push_ledger_t *g_l;

static void *adder(void *arg)
{
    char tok[32];
    long id = (long)arg;
    for (int i = 0; i < 20000; i++) {
        snprintf(tok, sizeof(tok), "%ld-%d", id, i);
        uint64_t k = push_ledger_key("r", 1, tok);
        push_ledger_add(g_l, k, 0);
        if (!push_ledger_has(g_l, k, 0))
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    g_l = push_ledger_new(1 << 18, 3600000);
    for (long i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, adder, (void *)i);
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    push_ledger_free(&g_l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_bounded_by_volume),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
