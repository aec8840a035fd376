/* support.c: helpers the tests share (support.h). */
#include "tests/support/support.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS_ADMIN_TIMEOUT_MS 30000

/* Waits for one admin answer; a missing or failed one is noted. */
static void ts_admin_wait(rd_kafka_queue_t *q, const char *what, const char *op)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TS_ADMIN_TIMEOUT_MS);
    if (!ev || rd_kafka_event_error(ev))
        fprintf(stderr, "note: %s: %s: %s\n", what, op,
                ev ? rd_kafka_event_error_string(ev) : "no answer");
    if (ev)
        rd_kafka_event_destroy(ev);
}

void ts_kafka_delete(const char *brokers, const char *const *topics, size_t ntopics,
                     const char *group, const char *what)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "note: %s: clean-up: %s\n", what, err);
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "note: %s: clean-up: %s\n", what, err);
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
    rd_kafka_AdminOptions_set_request_timeout(opt, TS_ADMIN_TIMEOUT_MS, err, sizeof(err));
    rd_kafka_DeleteTopic_t **dt = ntopics ? calloc(ntopics, sizeof(*dt)) : NULL;
    if (dt) {
        for (size_t i = 0; i < ntopics; i++)
            dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
        rd_kafka_DeleteTopics(rk, dt, ntopics, opt, q);
        ts_admin_wait(q, what, "deleting topics");
        rd_kafka_DeleteTopic_destroy_array(dt, ntopics);
        free(dt);
    }
    if (group) {
        rd_kafka_DeleteGroup_t *dg = rd_kafka_DeleteGroup_new(group);
        rd_kafka_DeleteGroups(rk, &dg, 1, opt, q);
        ts_admin_wait(q, what, "deleting the consumer group");
        rd_kafka_DeleteGroup_destroy(dg);
    }
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

bool ts_file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    /* lines of any length: a window of the needle's length carried over
     * between reads, so a match across two reads is found too */
    size_t nl = strlen(needle), keep = nl ? nl - 1 : 0, have = 0;
    char *buf = malloc(keep + 65536 + 1);
    bool found = false;
    while (buf && !found) {
        size_t got = fread(buf + have, 1, 65536, f);
        if (got == 0)
            break;
        have += got;
        buf[have] = '\0';
        found = memmem(buf, have, needle, nl) != NULL;
        size_t tail = have < keep ? have : keep;
        memmove(buf, buf + have - tail, tail);
        have = tail;
    }
    free(buf);
    fclose(f);
    return found;
}
