/* cmd_lag.c: imtask-ctl lag: per consumer group and partition of the task
 * and retry topics, the committed offset, the end (high watermark) and the
 * lag. The groups are only looked at: the consumer never subscribes, so it
 * never joins them, and commits nothing. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "kafka.h"
#include "table.h"

static const char *const ctl_lag_default_groups[] = {"im-task-fanout", "im-task-push",
                                                     "im-task-audit", "im-task-archive"};

static const ctl_command_t ctl_lag_cmd = {
    "lag", "[--group GROUP ...]",
    "For each consumer group (default: im-task-fanout, im-task-push, im-task-audit,\n"
    "im-task-archive) and each partition of the task and retry topics: the committed\n"
    "offset, the end of the partition (high watermark) and the lag between them, then the\n"
    "total lag of the group. A partition the group never committed shows '-' and counts\n"
    "every record it still holds as lag.\n"
    "The committed offsets are read with a consumer of that group.id that does not\n"
    "subscribe: it does not join the group, so the group is not rebalanced."};

typedef struct {
    ctl_table_t *table;
    int64_t total;
    int errors;
} ctl_lag_t;

/* Add the rows of one topic for the group that rk's group.id names. */
static int ctl_lag_topic(const ctl_env_t *env, rd_kafka_t *rk, const char *group, const char *topic,
                         ctl_lag_t *lag)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    char err[CTL_ERR_MAX];
    rd_kafka_resp_err_t e;
    int32_t np = 0;
    int rc = -1;

    if (ctl_topic_partitions(rk, topic, (int)env->timeout_ms, &np, err, sizeof(err)) != 0) {
        ctl_fail("lag", "group %s: %s", group, err);
        goto out;
    }
    list = rd_kafka_topic_partition_list_new(np);
    for (int32_t p = 0; p < np; p++)
        rd_kafka_topic_partition_list_add(list, topic, p);
    e = rd_kafka_committed(rk, list, (int)env->timeout_ms);
    if (e) {
        ctl_fail("lag", "group %s: cannot read the committed offsets of %s: %s", group, topic,
                 rd_kafka_err2str(e));
        goto out;
    }
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        char part[16], committed[24], end[24], lagtxt[24];
        const char *cells[6] = {group, topic, part, committed, end, lagtxt};
        int64_t low = 0, high = 0, n;
        snprintf(part, sizeof(part), "%" PRId32, tp->partition);
        if (tp->err) {
            ctl_fail("lag", "group %s: %s partition %d: %s", group, topic, tp->partition,
                     rd_kafka_err2str(tp->err));
            goto out;
        }
        e = rd_kafka_query_watermark_offsets(rk, topic, tp->partition, &low, &high,
                                             (int)env->timeout_ms);
        if (e) {
            ctl_fail("lag", "%s partition %d: cannot read its offsets: %s", topic, tp->partition,
                     rd_kafka_err2str(e));
            goto out;
        }
        if (tp->offset >= 0) {
            snprintf(committed, sizeof(committed), "%" PRId64, tp->offset);
            n = high - (tp->offset > low ? tp->offset : low); /* retention may pass it */
        } else {
            snprintf(committed, sizeof(committed), "-");
            n = high - low;
        }
        if (n < 0)
            n = 0;
        snprintf(end, sizeof(end), "%" PRId64, high);
        snprintf(lagtxt, sizeof(lagtxt), "%" PRId64, n);
        lag->total += n;
        if (ctl_table_add(lag->table, cells) != 0) {
            ctl_fail("lag", "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

int ctl_cmd_lag(ctl_env_t *env, int argc, char **argv)
{
    static const char *const heads[] = {"GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"};
    ctl_list_t groups = {.count = 0};
    const ctl_opt_t opts[] = {
        {"group", CTL_OPT_LIST, &groups, "GROUP",
         "a consumer group (default: the four im-task groups)", 0, 0},
    };
    ctl_optset_t own = {opts, 1, "options"};
    ctl_lag_t lag = {NULL, 0, 0};
    int rc = ctl_parse(env, &ctl_lag_cmd, &own, argc, argv, NULL, 0, NULL);

    if (rc != CTL_PARSE_GO_ON)
        return rc;
    if (groups.count == 0) {
        for (size_t i = 0; i < 4; i++)
            groups.items[groups.count++] = ctl_lag_default_groups[i];
    }
    lag.table = ctl_table_new(6, heads);
    if (!lag.table) {
        ctl_fail("lag", "out of memory");
        return CTL_EXIT_FAIL;
    }
    for (size_t c = 2; c < 6; c++)
        ctl_table_align_right(lag.table, c);
    for (size_t g = 0; g < groups.count; g++) {
        const char *group = groups.items[g];
        const char *topics[2] = {env->task_topic, env->retry_topic};
        const char *cells[6] = {group, "(total)", "", "", "", NULL};
        char err[CTL_ERR_MAX], total[24];
        rd_kafka_t *rk;
        if (!group[0]) {
            ctl_table_destroy(&lag.table);
            return ctl_usage_error(&ctl_lag_cmd, "--group: empty group name");
        }
        rk = ctl_consumer_new(env, group, err, sizeof(err));
        if (!rk) {
            ctl_fail("lag", "group %s: %s", group, err);
            lag.errors++;
            continue;
        }
        lag.total = 0;
        for (size_t t = 0; t < 2; t++) {
            if (ctl_lag_topic(env, rk, group, topics[t], &lag) != 0)
                lag.errors++;
        }
        ctl_consumer_destroy(&rk);
        snprintf(total, sizeof(total), "%" PRId64, lag.total);
        cells[5] = total;
        ctl_table_add(lag.table, cells);
    }
    ctl_table_print(lag.table, stdout, 0);
    ctl_table_destroy(&lag.table);
    return lag.errors ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}
