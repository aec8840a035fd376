/* txn_test.c: mq_txn_new's ownership of conf when init_transactions fails
 * (no broker answers): the caller still owns conf and frees it, once
 * (regression: the producer used to free it too; ASan and valgrind see a
 * double free). No broker needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "mqclient/mq.h"

static void test_init_fails_conf_stays_with_caller(void **state)
{
    (void)state;
    char err[512] = "";
    /* port 1 on loopback: connections are refused at once */
    const char *extra[] = {"socket.connection.setup.timeout.ms", "1000", "log_level", "0", NULL};
    rd_kafka_conf_t *conf = mq_conf_build("127.0.0.1:1", NULL, extra, err, sizeof(err));
    assert_non_null(conf);
    mq_txn_t *t = mq_txn_new(conf, "txn-test-no-broker", 500, err, sizeof(err));
    assert_null(t);
    assert_non_null(strstr(err, "init_transactions"));
    rd_kafka_conf_destroy(conf); /* still ours: freed exactly once */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_fails_conf_stays_with_caller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
