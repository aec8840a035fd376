/* cmd_topics.c: imtask-ctl topics: the brokers and the topics with their
 * partition counts, from cluster metadata (a quick check of the broker). */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "kafka.h"
#include "table.h"

static const ctl_command_t ctl_topics_cmd = {
    "topics", "[--internal]",
    "Print the brokers and the topics of the cluster with their partition counts and\n"
    "replication factors, sorted by name. Internal topics (__consumer_offsets, ...) only\n"
    "with --internal."};

static int ctl_topics_cmp(const void *a, const void *b)
{
    const struct rd_kafka_metadata_topic *x = *(const struct rd_kafka_metadata_topic *const *)a;
    const struct rd_kafka_metadata_topic *y = *(const struct rd_kafka_metadata_topic *const *)b;
    return strcmp(x->topic, y->topic);
}

int ctl_cmd_topics(ctl_env_t *env, int argc, char **argv)
{
    static const char *const heads[] = {"TOPIC", "PARTITIONS", "REPLICAS", "ERROR"};
    bool internal = false;
    const ctl_opt_t opts[] = {
        {"internal", CTL_OPT_FLAG, &internal, NULL, "list internal topics too", 0, 0},
    };
    ctl_optset_t own = {opts, 1, "options"};
    const struct rd_kafka_metadata *md = NULL;
    const struct rd_kafka_metadata_topic **sorted = NULL;
    ctl_table_t *t = NULL;
    rd_kafka_t *rk = NULL;
    char err[CTL_ERR_MAX];
    rd_kafka_resp_err_t e;
    int errors = 0;
    int rc = ctl_parse(env, &ctl_topics_cmd, &own, argc, argv, NULL, 0, NULL);

    if (rc != CTL_PARSE_GO_ON)
        return rc;
    rc = CTL_EXIT_FAIL;
    rk = ctl_consumer_new(env, CTL_READER_GROUP, err, sizeof(err));
    if (!rk) {
        ctl_fail("topics", "%s", err);
        goto out;
    }
    e = rd_kafka_metadata(rk, 1, NULL, &md, (int)env->timeout_ms);
    if (e) {
        ctl_fail("topics", "no metadata from %s within %lld ms: %s", env->brokers,
                 (long long)env->timeout_ms, rd_kafka_err2str(e));
        goto out;
    }
    printf("brokers (%d):", md->broker_cnt);
    for (int i = 0; i < md->broker_cnt; i++)
        printf(" %d=%s:%d", md->brokers[i].id, md->brokers[i].host, md->brokers[i].port);
    printf("\n\n");
    sorted = calloc((size_t)md->topic_cnt + 1, sizeof(*sorted));
    for (int i = 0; i < md->topic_cnt; i++)
        errors += md->topics[i].err != RD_KAFKA_RESP_ERR_NO_ERROR;
    t = ctl_table_new(errors ? 4 : 3, heads); /* the ERROR column only when needed */
    if (!sorted || !t) {
        ctl_fail("topics", "out of memory");
        goto out;
    }
    ctl_table_align_right(t, 1);
    ctl_table_align_right(t, 2);
    for (int i = 0; i < md->topic_cnt; i++)
        sorted[i] = &md->topics[i];
    qsort(sorted, (size_t)md->topic_cnt, sizeof(*sorted), ctl_topics_cmp);
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *tp = sorted[i];
        char parts[16], replicas[16];
        const char *cells[4] = {tp->topic, parts, replicas,
                                tp->err ? rd_kafka_err2str(tp->err) : ""};
        if (!internal && strncmp(tp->topic, "__", 2) == 0)
            continue;
        snprintf(parts, sizeof(parts), "%d", tp->partition_cnt);
        snprintf(replicas, sizeof(replicas), "%d",
                 tp->partition_cnt > 0 ? tp->partitions[0].replica_cnt : 0);
        if (ctl_table_add(t, cells) != 0) {
            ctl_fail("topics", "out of memory");
            goto out;
        }
    }
    ctl_table_print(t, stdout, 0);
    printf("%zu topics\n", ctl_table_rows(t));
    rc = CTL_EXIT_OK;
out:
    ctl_table_destroy(&t);
    free(sorted);
    if (md)
        rd_kafka_metadata_destroy(md);
    ctl_consumer_destroy(&rk);
    return rc;
}
