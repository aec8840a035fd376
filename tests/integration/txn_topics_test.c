/* txn_topics_test.c: a transactional producer shared by several threads
 * writing to more topics than it keeps handles of. Built against
 * //libs/mqclient:mqclient_4_topics (handles of at most 4 topics): four
 * threads write, each in its own order of the 6 topics, 50 records to every
 * topic in one transaction, racing to make the kept handles; the records of
 * the topics past the 4 go through a handle made for each record. After the
 * commit a read_committed reader sees every record once, on its own topic.
 * Needs IMTASK_KAFKA_BROKERS (the test command passes it with --test_env). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqclient/mq.h"
#include "tests/support/support.h"

#define NTOPICS 6  /* more than the 4 the producer keeps */
#define NTHREADS 4 /* the workers of a process sharing its producer */
#define NREC 50    /* per thread per topic */

static const char *brokers;
static char names[NTOPICS][128], group[160];
static const char *topics[NTOPICS];
static int parts[NTOPICS];

typedef struct {
    mq_txn_t *txn;
    int thread;
    int failed;
} writer_t;

static void *write_records(void *arg)
{
    writer_t *w = arg;
    char value[32];
    for (int r = 0; r < NREC; r++) {
        for (int k = 0; k < NTOPICS; k++) {
            int i = (w->thread + k) % NTOPICS; /* each thread its own order */
            int len = snprintf(value, sizeof(value), "%d %d %d", i, w->thread, r);
            if (mq_txn_produce(w->txn, topics[i], -1, "k", 1, value, (size_t)len, NULL, 0) != MQ_OK)
                w->failed++;
        }
    }
    return NULL;
}

typedef struct {
    int count, wrong_topic, bad;
    unsigned char seen[NTOPICS][NTHREADS][NREC];
} tally_t;

static void tally_record(void *ctx, const rd_kafka_message_t *m)
{
    tally_t *t = ctx;
    char value[32];
    int i, thread, r;
    size_t len = m->len < sizeof(value) - 1 ? m->len : sizeof(value) - 1;
    memcpy(value, m->payload, len);
    value[len] = '\0';
    if (sscanf(value, "%d %d %d", &i, &thread, &r) != 3 || i < 0 || i >= NTOPICS || thread < 0 ||
        thread >= NTHREADS || r < 0 || r >= NREC) {
        t->bad++;
        return;
    }
    if (strcmp(rd_kafka_topic_name(m->rkt), topics[i]) != 0)
        t->wrong_topic++;
    t->seen[i][thread][r]++;
    t->count++;
}

static int setup(void **state)
{
    (void)state;
    char err[512] = "";
    brokers = getenv("IMTASK_KAFKA_BROKERS");
    if (!brokers || !*brokers) {
        fprintf(stderr, "IMTASK_KAFKA_BROKERS is not set: start the stack (scripts/stack.sh up) "
                        "and run through scripts/test.sh\n");
        return -1;
    }
    for (int i = 0; i < NTOPICS; i++) {
        snprintf(names[i], sizeof(names[i]), "imtask-it-txntopics-%ld-%d-%d", (long)time(NULL),
                 (int)getpid(), i);
        topics[i] = names[i];
        parts[i] = 1;
    }
    snprintf(group, sizeof(group), "%s-group", names[0]);
    if (ts_kafka_create(brokers, topics, parts, NTOPICS, err, sizeof(err))) {
        fprintf(stderr, "creating the topics: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_kafka_delete(brokers, topics, NTOPICS, group, "txn topics");
    return 0;
}

static void test_more_topics_than_kept(void **state)
{
    (void)state;
    char err[512] = "", txid[160];
    const char *extra[] = {"log_level", "0", NULL};
    rd_kafka_conf_t *conf = mq_conf_build(brokers, NULL, extra, err, sizeof(err));
    assert_non_null(conf);
    snprintf(txid, sizeof(txid), "%s-txn", names[0]);
    mq_txn_t *txn = mq_txn_new(conf, txid, 30000, err, sizeof(err));
    if (!txn)
        fail_msg("mq_txn_new: %s", err);
    assert_int_equal(mq_txn_begin(txn, err, sizeof(err)), MQ_OK);

    pthread_t th[NTHREADS];
    writer_t w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (writer_t){.txn = txn, .thread = i};
        assert_int_equal(pthread_create(&th[i], NULL, write_records, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failed, 0);
    }

    /* the input whose offset the transaction commits: any partition will do */
    const char *cextra[] = {"group.id", group, "log_level", "0", NULL};
    rd_kafka_conf_t *cconf = mq_conf_build(brokers, NULL, cextra, err, sizeof(err));
    assert_non_null(cconf);
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    if (!consumer)
        fail_msg("rd_kafka_new: %s", err);
    mq_record_t input = {.topic = topics[0], .partition = 0, .offset = 0, .timestamp = -1};
    mq_err_t e = mq_txn_commit(txn, &input, consumer, 30000, err, sizeof(err));
    if (e != MQ_OK)
        fail_msg("mq_txn_commit: %s", err);
    rd_kafka_destroy(consumer);
    mq_txn_destroy(&txn);

    tally_t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    if (ts_kafka_read(brokers, topics, parts, NTOPICS, true, tally_record, t, 60, err, sizeof(err)))
        fail_msg("reading the topics: %s", err);
    int missing = 0, doubled = 0;
    for (int i = 0; i < NTOPICS; i++)
        for (int j = 0; j < NTHREADS; j++)
            for (int r = 0; r < NREC; r++) {
                missing += t->seen[i][j][r] == 0;
                doubled += t->seen[i][j][r] > 1;
            }
    fprintf(stderr, "txn topics: %d records read, %d missing, %d twice, %d on a wrong topic\n",
            t->count, missing, doubled, t->wrong_topic);
    assert_int_equal(t->bad, 0);
    assert_int_equal(t->wrong_topic, 0);
    assert_int_equal(missing, 0);
    assert_int_equal(doubled, 0);
    assert_int_equal(t->count, NTOPICS * NTHREADS * NREC);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_more_topics_than_kept),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
