/* kadmin.c: the few admin operations bench/runtime_bench.sh needs, on
 * librdkafka's Admin API (no JVM start-up per call):
 *
 *   kadmin -b BROKERS create TOPIC:PARTITIONS...   create, wait for leaders
 *   kadmin -b BROKERS delete TOPIC...              delete (missing ones: ok)
 *   kadmin -b BROKERS count TOPIC                  records held (sum hi - lo)
 *   kadmin -b BROKERS lag GROUP TOPIC              sum over partitions of
 *                                                  hi - committed (hi - lo when
 *                                                  nothing is committed)
 *   kadmin -b BROKERS delete-group GROUP...        delete consumer groups
 *   kadmin -b BROKERS list-groups [PREFIX]         consumer groups, one a line
 *                                                  (e.g. to clean up after an
 *                                                  interrupted benchmark)
 *
 * Prints numbers alone on stdout; errors on stderr; exit 0 on success. */
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KA_TIMEOUT_MS 30000

static rd_kafka_t *ka_new(const char *brokers, rd_kafka_type_t type, const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "client.id", "imtask-bench-kadmin", err, sizeof(err)) ||
        (group && (rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
                   rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err))))) {
        fprintf(stderr, "kadmin: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk)
        fprintf(stderr, "kadmin: %s\n", err);
    return rk;
}

/* Partition count of topic with a leader for each, -1 when unknown. */
static int ka_partitions(rd_kafka_t *rk, const char *topic, int *with_leader)
{
    const rd_kafka_metadata_t *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int n = -1;
    *with_leader = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err) {
            n = md->topics[0].partition_cnt;
            for (int i = 0; i < n; i++)
                *with_leader += md->topics[0].partitions[i].leader >= 0;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

static int ka_create(rd_kafka_t *rk, int n, char **specs)
{
    rd_kafka_NewTopic_t *nts[64];
    char names[64][256];
    int parts[64], rc = 0;
    char err[512];
    if (n > 64) {
        fprintf(stderr, "kadmin: at most 64 topics at once\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        char *colon = strrchr(specs[i], ':');
        parts[i] = colon ? atoi(colon + 1) : 0;
        if (!colon || parts[i] < 1 || (size_t)(colon - specs[i]) >= sizeof(names[i])) {
            fprintf(stderr, "kadmin: bad topic spec %s (want NAME:PARTITIONS)\n", specs[i]);
            return 2;
        }
        snprintf(names[i], sizeof(names[i]), "%.*s", (int)(colon - specs[i]), specs[i]);
        nts[i] = rd_kafka_NewTopic_new(names[i], parts[i], 1, err, sizeof(err));
        if (!nts[i]) {
            fprintf(stderr, "kadmin: %s: %s\n", names[i], err);
            return 2;
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(o, KA_TIMEOUT_MS, err, sizeof(err));
    rd_kafka_CreateTopics(rk, nts, (size_t)n, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, KA_TIMEOUT_MS + 5000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (!res) {
        fprintf(stderr, "kadmin: create: %s\n", ev ? rd_kafka_event_error_string(ev) : "timed out");
        rc = 1;
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            if (rd_kafka_topic_result_error(tr[i])) {
                fprintf(stderr, "kadmin: create %s: %s\n", rd_kafka_topic_result_name(tr[i]),
                        rd_kafka_topic_result_error_string(tr[i]));
                rc = 1;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy_array(nts, (size_t)n);
    /* every partition has a leader in the metadata before we say ready */
    for (int i = 0; rc == 0 && i < n; i++) {
        int tries, lead = 0;
        for (tries = 0; tries < 300; tries++) {
            if (ka_partitions(rk, names[i], &lead) == parts[i] && lead == parts[i])
                break;
            usleep(100 * 1000);
        }
        if (tries == 300) {
            fprintf(stderr, "kadmin: %s: %d of %d partitions with a leader after 30 s\n", names[i],
                    lead, parts[i]);
            rc = 1;
        }
    }
    return rc;
}

static int ka_delete(rd_kafka_t *rk, int n, char **topics)
{
    rd_kafka_DeleteTopic_t *dts[64];
    char err[512];
    int rc = 0;
    if (n > 64)
        return 2;
    for (int i = 0; i < n; i++)
        dts[i] = rd_kafka_DeleteTopic_new(topics[i]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(o, KA_TIMEOUT_MS, err, sizeof(err));
    rd_kafka_DeleteTopics(rk, dts, (size_t)n, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, KA_TIMEOUT_MS + 5000);
    const rd_kafka_DeleteTopics_result_t *res = ev ? rd_kafka_event_DeleteTopics_result(ev) : NULL;
    if (!res) {
        fprintf(stderr, "kadmin: delete: %s\n", ev ? rd_kafka_event_error_string(ev) : "timed out");
        rc = 1;
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **tr = rd_kafka_DeleteTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e && e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                fprintf(stderr, "kadmin: delete %s: %s\n", rd_kafka_topic_result_name(tr[i]),
                        rd_kafka_topic_result_error_string(tr[i]));
                rc = 1;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy_array(dts, (size_t)n);
    return rc;
}

static int ka_delete_groups(rd_kafka_t *rk, int n, char **groups)
{
    rd_kafka_DeleteGroup_t *dgs[64];
    int rc = 0;
    if (n > 64)
        return 2;
    for (int i = 0; i < n; i++)
        dgs[i] = rd_kafka_DeleteGroup_new(groups[i]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteGroups(rk, dgs, (size_t)n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, KA_TIMEOUT_MS);
    const rd_kafka_DeleteGroups_result_t *res = ev ? rd_kafka_event_DeleteGroups_result(ev) : NULL;
    if (!res) {
        fprintf(stderr, "kadmin: delete-group: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "timed out");
        rc = 1;
    } else {
        size_t cnt;
        const rd_kafka_group_result_t **gr = rd_kafka_DeleteGroups_result_groups(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            const rd_kafka_error_t *e = rd_kafka_group_result_error(gr[i]);
            if (e && rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
                fprintf(stderr, "kadmin: delete-group %s: %s\n", rd_kafka_group_result_name(gr[i]),
                        rd_kafka_error_string(e));
                rc = 1;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteGroup_destroy_array(dgs, (size_t)n);
    return rc;
}

static int ka_list_groups(rd_kafka_t *rk, const char *prefix)
{
    const struct rd_kafka_group_list *gl;
    rd_kafka_resp_err_t e = rd_kafka_list_groups(rk, NULL, &gl, 10000);
    if (e) {
        fprintf(stderr, "kadmin: list groups: %s\n", rd_kafka_err2str(e));
        return 1;
    }
    for (int i = 0; i < gl->group_cnt; i++) {
        const char *g = gl->groups[i].group;
        if (!prefix || strncmp(g, prefix, strlen(prefix)) == 0)
            printf("%s\n", g);
    }
    rd_kafka_group_list_destroy(gl);
    return 0;
}

/* Sum of hi - from over topic's partitions, from = committed offset of group
 * (or lo when group is NULL or has nothing committed). */
static int ka_count(rd_kafka_t *rk, const char *topic, const char *group)
{
    int lead, n = ka_partitions(rk, topic, &lead);
    long long total = 0;
    if (n < 0) {
        fprintf(stderr, "kadmin: %s: no such topic\n", topic);
        return 1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_INVALID;
    if (group) {
        rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
        if (e) {
            fprintf(stderr, "kadmin: committed offsets of %s: %s\n", group, rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(l);
            return 1;
        }
    }
    for (int i = 0; i < n; i++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 10000);
        if (e) {
            fprintf(stderr, "kadmin: watermarks of %s[%d]: %s\n", topic, i, rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(l);
            return 1;
        }
        int64_t from = l->elems[i].offset >= 0 ? l->elems[i].offset : lo;
        total += hi > from ? hi - from : 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    printf("%lld\n", total);
    return 0;
}

int main(int argc, char **argv)
{
    const char *brokers = NULL;
    int i = 1, rc;
    if (i + 1 < argc && strcmp(argv[i], "-b") == 0) {
        brokers = argv[i + 1];
        i += 2;
    }
    if (!brokers || i >= argc) {
        fprintf(stderr, "usage: kadmin -b BROKERS create TOPIC:PARTITIONS... | delete TOPIC... |"
                        " count TOPIC | lag GROUP TOPIC | delete-group GROUP... |"
                        " list-groups [PREFIX]\n");
        return 2;
    }
    const char *cmd = argv[i++];
    bool is_lag = strcmp(cmd, "lag") == 0;
    rd_kafka_t *rk = ka_new(brokers, is_lag ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER,
                            is_lag && i < argc ? argv[i] : NULL);
    if (!rk)
        return 1;
    if (strcmp(cmd, "create") == 0 && i < argc)
        rc = ka_create(rk, argc - i, argv + i);
    else if (strcmp(cmd, "delete") == 0 && i < argc)
        rc = ka_delete(rk, argc - i, argv + i);
    else if (strcmp(cmd, "delete-group") == 0 && i < argc)
        rc = ka_delete_groups(rk, argc - i, argv + i);
    else if (strcmp(cmd, "list-groups") == 0 && i + 1 >= argc)
        rc = ka_list_groups(rk, i < argc ? argv[i] : NULL);
    else if (strcmp(cmd, "count") == 0 && i + 1 == argc)
        rc = ka_count(rk, argv[i], NULL);
    else if (is_lag && i + 2 == argc)
        rc = ka_count(rk, argv[i + 1], argv[i]);
    else {
        fprintf(stderr, "kadmin: bad command line (see the usage in bench/kadmin.c)\n");
        rc = 2;
    }
    rd_kafka_destroy(rk);
    return rc;
}
