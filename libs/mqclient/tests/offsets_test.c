/* offsets_test.c: the offset tracker: contiguous frontier, gaps, skips, bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "../src/offsets.h"

static void test_in_order(void **state)
{
    mq_offsets_t *t = mq_offsets_new(8);
    (void)state;
    assert_int_equal(mq_offsets_frontier(t), -1);
    for (int64_t o = 10; o < 13; o++)
        assert_int_equal(mq_offsets_add(t, o), 0);
    assert_int_equal(mq_offsets_pending(t), 3);
    assert_int_equal(mq_offsets_done(t, 10), 0);
    assert_int_equal(mq_offsets_frontier(t), 11);
    assert_int_equal(mq_offsets_done(t, 11), 0);
    assert_int_equal(mq_offsets_done(t, 12), 0);
    assert_int_equal(mq_offsets_frontier(t), 13);
    assert_int_equal(mq_offsets_entries(t), 0);
    mq_offsets_destroy(t);
}

static void test_out_of_order_holds_frontier(void **state)
{
    mq_offsets_t *t = mq_offsets_new(8);
    (void)state;
    for (int64_t o = 0; o < 5; o++)
        assert_int_equal(mq_offsets_add(t, o), 0);
    assert_int_equal(mq_offsets_done(t, 3), 0);
    assert_int_equal(mq_offsets_done(t, 1), 0);
    assert_int_equal(mq_offsets_frontier(t), -1); /* 0 still running */
    assert_int_equal(mq_offsets_done(t, 0), 0);
    assert_int_equal(mq_offsets_frontier(t), 2); /* 0,1 done; 2 running */
    assert_int_equal(mq_offsets_done(t, 2), 0);
    assert_int_equal(mq_offsets_frontier(t), 4);
    assert_int_equal(mq_offsets_done(t, 4), 0);
    assert_int_equal(mq_offsets_frontier(t), 5);
    mq_offsets_destroy(t);
}

static void test_gaps(void **state)
{
    /* compaction and transaction markers leave gaps: the frontier is the
     * last finished offset + 1, never a missing one */
    mq_offsets_t *t = mq_offsets_new(8);
    (void)state;
    assert_int_equal(mq_offsets_add(t, 100), 0);
    assert_int_equal(mq_offsets_add(t, 105), 0);
    assert_int_equal(mq_offsets_done(t, 105), 0);
    assert_int_equal(mq_offsets_frontier(t), -1);
    assert_int_equal(mq_offsets_done(t, 100), 0);
    assert_int_equal(mq_offsets_frontier(t), 106);
    mq_offsets_destroy(t);
}

static void test_skips_merge(void **state)
{
    mq_offsets_t *t = mq_offsets_new(4);
    (void)state;
    assert_int_equal(mq_offsets_skip(t, 0), 0); /* empty: frontier moves at once */
    assert_int_equal(mq_offsets_frontier(t), 1);
    assert_int_equal(mq_offsets_add(t, 1), 0);
    /* a million skipped messages behind a running one take one entry */
    for (int64_t o = 2; o < 1000002; o++)
        assert_int_equal(mq_offsets_skip(t, o), 0);
    assert_int_equal(mq_offsets_entries(t), 2);
    assert_int_equal(mq_offsets_frontier(t), 1);
    assert_int_equal(mq_offsets_done(t, 1), 0);
    assert_int_equal(mq_offsets_frontier(t), 1000002);
    mq_offsets_destroy(t);
}

static void test_bounds_and_misuse(void **state)
{
    mq_offsets_t *t = mq_offsets_new(3);
    (void)state;
    assert_null(mq_offsets_new(0));
    assert_int_equal(mq_offsets_add(t, 5), 0);
    assert_int_equal(mq_offsets_add(t, 5), -1); /* not ascending */
    assert_int_equal(mq_offsets_add(t, 4), -1);
    assert_int_equal(mq_offsets_skip(t, 5), -1);
    assert_int_equal(mq_offsets_add(t, 6), 0);
    assert_int_equal(mq_offsets_add(t, 7), 0);
    assert_int_equal(mq_offsets_add(t, 8), -1);  /* full */
    assert_int_equal(mq_offsets_skip(t, 8), -1); /* tail not done: needs an entry */
    assert_int_equal(mq_offsets_done(t, 9), -1); /* never added */
    assert_int_equal(mq_offsets_done(t, 6), 0);
    assert_int_equal(mq_offsets_done(t, 6), -1); /* twice */
    assert_int_equal(mq_offsets_done(t, 5), 0);
    assert_int_equal(mq_offsets_frontier(t), 7);
    assert_int_equal(mq_offsets_add(t, 8), 0); /* room again */
    mq_offsets_destroy(t);
    mq_offsets_destroy(NULL);
}

static void test_random_against_model(void **state)
{
    /* random completion order, checked against a simple model */
    enum { N = 20000, CAP = 64 };
    static unsigned char done[N];
    mq_offsets_t *t = mq_offsets_new(CAP);
    int64_t next = 0, model = -1;
    unsigned seed = 12345;
    (void)state;
    while (model < N) {
        if (next < N && mq_offsets_entries(t) < CAP && (rand_r(&seed) % 3 != 0)) {
            if (rand_r(&seed) % 5 == 0) {
                assert_int_equal(mq_offsets_skip(t, next), 0);
                done[next] = 1;
            } else {
                assert_int_equal(mq_offsets_add(t, next), 0);
            }
            next++;
        } else if (mq_offsets_pending(t) > 0) {
            int64_t o;
            do
                o = (int64_t)(rand_r(&seed) % (unsigned)next);
            while (done[o]);
            assert_int_equal(mq_offsets_done(t, o), 0);
            done[o] = 1;
        } else if (next == N) {
            break;
        }
        int64_t f = mq_offsets_frontier(t);
        int64_t m = model < 0 ? 0 : model;
        while (m < next && done[m])
            m++;
        if (m > 0 && (model >= 0 || done[0]))
            model = m;
        assert_int_equal(f, model);
    }
    assert_int_equal(mq_offsets_frontier(t), N);
    mq_offsets_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order_holds_frontier),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_skips_merge),
        cmocka_unit_test(test_bounds_and_misuse),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
