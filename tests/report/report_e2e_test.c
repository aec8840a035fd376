/* report_e2e_test.c: imtask-archive's report job end to end against the
 * local stack's broker and a private im-repo double (the stack's binary on
 * free ports, so the seeded activity is this test's alone): known activity
 * seeded into the double, known outcome events (and records just outside
 * the period, and an undecodable one) produced into a private outcome topic
 * with their timestamps, a `report` task for a day in Asia/Shanghai; the
 * JSON and CSV written to the storage directory must hold exactly the
 * expected figures, and firing the same slot again rewrites the same three
 * keys. When chromium is installed the page is also loaded headless and
 * its DOM must show the totals (tests/report/browser_check.sh does the full
 * browser check on a fixed report).
 *
 * Needs --test_env=IMTASK_KAFKA_BROKERS and IMTASK_STACK_DIR (or
 * IMTASK_IMREPO_DOUBLE_BIN). argv[1]: the imtask-archive binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dispatch/outcome.h"
#include "proto/outcome.pb-c.h"
#include "proto/schedule.pb-c.h"
#include "tests/fanout/harness.h"
#include "tests/support/support.h"

static const char *bin;
static const int64_t DAY = 86400000, HOUR = 3600000;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return b;
}

static void post_json(const char *url, const char *body)
{
    long code = 0;
    char *r = ts_http("POST", url, body, 30000, &code);
    H_CHECK(r && code == 200, "POST %s: %s, HTTP %ld", url, r ? "answered" : "no answer", code);
    free(r);
}

/* An outcome event at ts, produced to a partition with that record time. */
static void outcome(h_prod_t *p, const char *topic, int part, int64_t ts, const char *type,
                    const char *kind, int64_t count, const char *l1, const char *v1, const char *l2,
                    const char *v2)
{
    dispatch_outcome_label_t l[2] = {{l1, v1}, {l2, v2}};
    uint8_t *buf;
    size_t len;
    H_CHECK(dispatch_outcome_encode(ts, type, "t", type, kind, l, l2 ? 2 : 1, count, &buf, &len) ==
                0,
            "encode");
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_VALUE(buf, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_END);
    H_CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
    p->queued++;
    free(buf);
}

static double jnum(cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        o = cJSON_GetObjectItem(o, k);
        H_CHECK(o != NULL, "report JSON has no %s", path);
    }
    H_CHECK(cJSON_IsNumber(o), "report JSON %s is not a number", path);
    return o->valuedouble;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void report_task(h_prod_t *p, const char *topic, int64_t slot)
{
    Imtask__V1__ScheduledRun run = IMTASK__V1__SCHEDULED_RUN__INIT;
    Imtask__V1__ScheduledRun__ParamsEntry e1 = IMTASK__V1__SCHEDULED_RUN__PARAMS_ENTRY__INIT,
                                          e2 = IMTASK__V1__SCHEDULED_RUN__PARAMS_ENTRY__INIT;
    Imtask__V1__ScheduledRun__ParamsEntry *ps[] = {&e1, &e2};
    char id[64];
    uint8_t buf[512];
    e1.key = "period";
    e1.value = "day";
    e2.key = "time_zone";
    e2.value = "Asia/Shanghai";
    run.job = "daily";
    run.scheduled_at_ms = slot;
    run.fired_at_ms = h_wall_ms();
    run.n_params = 2;
    run.params = ps;
    size_t len = imtask__v1__scheduled_run__pack(&run, buf);
    snprintf(id, sizeof(id), "daily@%lld", (long long)slot);
    h_prod_task(p, topic, "daily", "report", id, buf, len);
}

static void wait_succeeded(h_child_t *ch, int port, double n)
{
    int64_t until = h_mono_ms() + 120000;
    while (h_metric(port, "imtask_tasks_succeeded_total{task_type=\"report\"} ") < n) {
        h_child_check(ch);
        if (h_mono_ms() > until) {
            h_child_print_log(ch, 60);
            h_fail("the report task did not succeed %g times within 120 s", n);
        }
        h_sleep_ms(200);
    }
}

static int dead_seen;

static void find_dead(void *ctx, const rd_kafka_message_t *m)
{
    (void)ctx;
    Imtask__V1__OutcomeEvent *e =
        imtask__v1__outcome_event__unpack(NULL, m->len, (const uint8_t *)m->payload);
    if (!e)
        return; /* the junk record of the test */
    if (strcmp(e->kind, OUTCOME_DEAD_LETTERED) == 0 && strcmp(e->task_id, "bad-report-1") == 0) {
        assert_string_equal(e->task_type, "report");
        assert_string_equal(e->binary, "archive");
        assert_int_equal(e->n_labels, 1);
        assert_string_equal(e->labels[0]->name, "error_kind");
        assert_string_equal(e->labels[0]->value, "permanent");
        assert_int_equal(e->count, 1);
        assert_true(e->ts_ms > h_wall_ms() - 600000);
        dead_seen++;
    }
    imtask__v1__outcome_event__free_unpacked(e, NULL);
}

static void test_report_end_to_end(void **st)
{
    (void)st;
    char tasks[H_NAME_MAX], retry[H_NAME_MAX], dlq[H_NAME_MAX], otopic[H_NAME_MAX];
    char group[H_NAME_MAX], store[PATH_MAX], yaml[16384], path[PATH_MAX + 64], stamp[32];
    h_double_t dbl;
    h_prod_t p;
    h_child_t ch;
    int port = h_free_port();
    long tag = (long)getpid() ^ (long)(h_wall_ms() % 1000000);

    snprintf(tasks, sizeof(tasks), "report-test-%ld-tasks", tag);
    snprintf(retry, sizeof(retry), "report-test-%ld-retry", tag);
    snprintf(dlq, sizeof(dlq), "report-test-%ld-dlq", tag);
    snprintf(otopic, sizeof(otopic), "report-test-%ld-outcomes", tag);
    snprintf(group, sizeof(group), "report-test-%ld", tag);
    snprintf(store, sizeof(store), "%.3000s/store", h_tmp);
    const char *topics[] = {tasks, retry, dlq, otopic};
    const int parts[] = {1, 1, 1, 3};
    h_topics_create(topics, parts, 4);
    h_double_start(&dbl, 0.2, 4);

    /* A whole day in Asia/Shanghai (UTC+8, no DST), three days back: the
     * double's synthetic history (2025) has nothing there. */
    int64_t slot = (h_wall_ms() / DAY - 3) * DAY - 8 * HOUR; /* local midnight */
    int64_t start = slot - DAY, end = slot;
    {
        time_t t = (time_t)(start / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    }

    /* activity: 5 type-1 messages in the first local hour from u1/u2 in
     * group:g1, 3 type-2 in hour 13 from u3 in group:g2 (one a new user), a
     * direct message in hour 23, and two just outside the day */
    char body[4096];
    snprintf(
        body, sizeof(body),
        "{\"events\":["
        "{\"ts\":%lld,\"message_type\":1,\"sender_id\":\"u1\",\"conversation_id\":\"group:g1\"},"
        "{\"ts\":%lld,\"message_type\":1,\"sender_id\":\"u1\",\"conversation_id\":\"group:g1\"},"
        "{\"ts\":%lld,\"message_type\":1,\"sender_id\":\"u2\",\"conversation_id\":\"group:g1\"},"
        "{\"ts\":%lld,\"message_type\":1,\"sender_id\":\"u2\",\"conversation_id\":\"group:g1\"},"
        "{\"ts\":%lld,\"message_type\":1,\"sender_id\":\"u2\",\"conversation_id\":\"group:g1\"},"
        "{\"ts\":%lld,\"message_type\":2,\"sender_id\":\"u3\",\"conversation_id\":\"group:g2\","
        "\"new_user\":true},"
        "{\"ts\":%lld,\"message_type\":2,\"sender_id\":\"u3\",\"conversation_id\":\"group:g2\"},"
        "{\"ts\":%lld,\"message_type\":2,\"sender_id\":\"u3\",\"conversation_id\":\"group:g2\"},"
        "{\"ts\":%lld,\"message_type\":1,\"sender_id\":\"u4\",\"conversation_id\":\"single:u4:u1\"}"
        ","
        "{\"ts\":%lld,\"message_type\":1,\"sender_id\":\"u9\",\"conversation_id\":\"group:g9\"},"
        "{\"ts\":%lld,\"message_type\":1,\"sender_id\":\"u9\",\"conversation_id\":\"group:g9\"}"
        "]}",
        (long long)start, (long long)(start + 1000), (long long)(start + 60000),
        (long long)(start + 120000), (long long)(start + HOUR - 1), (long long)(start + 13 * HOUR),
        (long long)(start + 13 * HOUR + 5), (long long)(start + 14 * HOUR - 1),
        (long long)(start + 23 * HOUR + 30 * 60000), (long long)(start - 1), (long long)end);
    char url[256];
    snprintf(url, sizeof(url), "%s/activity", dbl.admin);
    post_json(url, body);

    /* outcomes */
    h_prod_open(&p);
    outcome(&p, otopic, 0, start + HOUR, "fanout", OUTCOME_FANOUT_RECIPIENTS, 1000, "delivery",
            "online", NULL, NULL);
    outcome(&p, otopic, 1, start + 20 * HOUR, "fanout", OUTCOME_FANOUT_RECIPIENTS, 500, "delivery",
            "online", NULL, NULL);
    outcome(&p, otopic, 2, start + 2 * HOUR, "fanout", OUTCOME_FANOUT_RECIPIENTS, 200, "delivery",
            "offline", NULL, NULL);
    outcome(&p, otopic, 0, start + 3 * HOUR, "push", OUTCOME_PUSH_RESULT, 40, "provider", "apns",
            "result", "ok");
    outcome(&p, otopic, 1, start + 4 * HOUR, "push", OUTCOME_PUSH_RESULT, 30, "provider", "fcm",
            "result", "ok");
    outcome(&p, otopic, 2, start + 5 * HOUR, "push", OUTCOME_PUSH_RESULT, 2, "provider", "fcm",
            "result", "invalid_token");
    outcome(&p, otopic, 0, start + 6 * HOUR, "content_audit", OUTCOME_AUDIT_DECISION, 10,
            "decision", "pass", NULL, NULL);
    outcome(&p, otopic, 1, start + 7 * HOUR, "content_audit", OUTCOME_AUDIT_DECISION, 3, "decision",
            "review", NULL, NULL);
    outcome(&p, otopic, 2, end - 1, "content_audit", OUTCOME_AUDIT_DECISION, 1, "decision", "block",
            NULL, NULL);
    outcome(&p, otopic, 0, start, "push", OUTCOME_DEAD_LETTERED, 1, "error_kind", "permanent", NULL,
            NULL);
    outcome(&p, otopic, 1, start + 8 * HOUR, "fanout", OUTCOME_DEAD_LETTERED, 1, "error_kind",
            "retries_exhausted", NULL, NULL);
    /* outside the day: read at the edges (clock skew) but not counted */
    outcome(&p, otopic, 0, start - 1, "push", OUTCOME_PUSH_RESULT, 1000, "provider", "apns",
            "result", "ok");
    outcome(&p, otopic, 1, end, "push", OUTCOME_PUSH_RESULT, 1000, "provider", "apns", "result",
            "ok");
    outcome(&p, otopic, 2, end + 30000, "fanout", OUTCOME_FANOUT_RECIPIENTS, 1000, "delivery",
            "online", NULL, NULL);
    /* far outside: not counted wherever they sit in a partition */
    outcome(&p, otopic, 2, start - 10 * 60000, "fanout", OUTCOME_FANOUT_RECIPIENTS, 7777,
            "delivery", "online", NULL, NULL);
    outcome(&p, otopic, 0, end + 10 * 60000, "fanout", OUTCOME_FANOUT_RECIPIENTS, 7777, "delivery",
            "online", NULL, NULL);
    /* an undecodable record inside the day */
    {
        static const char junk[] = "\xff\xff\xff not an OutcomeEvent";
        rd_kafka_resp_err_t e =
            rd_kafka_producev(p.rk, RD_KAFKA_V_TOPIC(otopic), RD_KAFKA_V_PARTITION(1),
                              RD_KAFKA_V_VALUE((void *)junk, sizeof(junk) - 1),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_TIMESTAMP(start + 9 * HOUR), RD_KAFKA_V_END);
        H_CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
        p.queued++;
    }
    h_prod_close(&p);

    snprintf(yaml, sizeof(yaml),
             "kafka:\n  brokers: %s\n"
             "http:\n  listen: 127.0.0.1:%d\n"
             "shutdown:\n  grace: 5s\n"
             "consumer:\n  group_id: %s\n  topic: %s\n  retry_topic: %s\n  dlq_topic: %s\n"
             "  workers: 2\n"
             "outcomes:\n  topic: %s\n"
             "imrepo:\n  endpoints: %s\n"
             "storage:\n  kind: local\n  dir: %s\n"
             "report:\n  settle: 0s\n  clock_skew: 60s\n  read_timeout: 60s\n",
             h_brokers, port, group, tasks, retry, dlq, otopic, dbl.addr, store);
    h_child_start(&ch, bin, h_tmp, "archive", yaml);

    h_prod_open(&p);
    report_task(&p, tasks, slot + 5 * 60000); /* a slot a little after midnight: same day */
    h_prod_close(&p);
    wait_succeeded(&ch, port, 1);

    /* JSON: exactly the seeded and produced figures */
    snprintf(path, sizeof(path), "%s/reports/daily/%s.json", store, stamp);
    char *text = slurp(path, NULL);
    if (!text)
        h_child_print_log(&ch, 60);
    H_CHECK(text != NULL, "no report at %s", path);
    cJSON *j = cJSON_Parse(text);
    H_CHECK(j != NULL, "%s is not JSON", path);
    assert_string_equal(cJSON_GetObjectItem(j, "time_zone")->valuestring, "Asia/Shanghai");
    assert_int_equal((int64_t)jnum(j, "start_ms"), start);
    assert_int_equal((int64_t)jnum(j, "end_ms"), end);
    assert_int_equal(jnum(j, "activity.messages"), 9);
    assert_int_equal(jnum(j, "activity.active_users"), 4);
    assert_int_equal(jnum(j, "activity.active_groups"), 2);
    assert_int_equal(jnum(j, "activity.new_users"), 1);
    cJSON *bt = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "activity"), "by_type");
    assert_int_equal(cJSON_GetArraySize(bt), 2);
    assert_int_equal(jnum(cJSON_GetArrayItem(bt, 0), "message_type"), 1);
    assert_int_equal(jnum(cJSON_GetArrayItem(bt, 0), "messages"), 6);
    assert_int_equal(jnum(cJSON_GetArrayItem(bt, 1), "message_type"), 2);
    assert_int_equal(jnum(cJSON_GetArrayItem(bt, 1), "messages"), 3);
    cJSON *bb = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "activity"), "by_bucket");
    assert_int_equal(cJSON_GetArraySize(bb), 24);
    for (int i = 0; i < 24; i++) {
        int want = i == 0 ? 5 : i == 13 ? 3 : i == 23 ? 1 : 0;
        assert_int_equal(jnum(cJSON_GetArrayItem(bb, i), "messages"), want);
    }
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(bb, 13), "start")->valuestring + 10,
                        "T13:00:00+08:00");
    assert_int_equal(jnum(j, "outcomes.events"), 11);
    assert_int_equal(jnum(j, "outcomes.undecodable_records"), 1);
    assert_int_equal(jnum(j, "outcomes.fanout_recipients"), 1700);
    assert_int_equal(jnum(j, "outcomes.fanout_recipients_by_delivery.online"), 1500);
    assert_int_equal(jnum(j, "outcomes.fanout_recipients_by_delivery.offline"), 200);
    assert_int_equal(jnum(j, "outcomes.pushes"), 72);
    assert_int_equal(jnum(j, "outcomes.audit_decisions"), 14);
    assert_int_equal(jnum(j, "outcomes.audit_decisions_by_decision.block"), 1);
    assert_int_equal(jnum(j, "outcomes.dead_lettered"), 2);
    assert_int_equal(jnum(j, "outcomes.dead_lettered_by_task_type.push"), 1);
    assert_int_equal(jnum(j, "outcomes.dead_lettered_by_task_type.fanout"), 1);
    cJSON *pr =
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "outcomes"), "pushes_by_provider_result");
    assert_int_equal(cJSON_GetArraySize(pr), 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(pr, 1), "provider")->valuestring,
                        "fcm");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(pr, 1), "result")->valuestring,
                        "invalid_token");
    assert_int_equal(jnum(cJSON_GetArrayItem(pr, 1), "count"), 2);
    cJSON_Delete(j);
    free(text);

    /* CSV: the same figures, line by line */
    snprintf(path, sizeof(path), "%s/reports/daily/%s.csv", store, stamp);
    text = slurp(path, NULL);
    H_CHECK(text != NULL, "no report at %s", path);
    static const char *const lines[] = {
        "section,key,labels,value\r\n",
        "\r\nreport,time_zone,,Asia/Shanghai\r\n",
        "\r\nactivity,messages,,9\r\n",
        "\r\nactivity,active_users,,4\r\n",
        "\r\nactivity,active_groups,,2\r\n",
        "\r\nactivity,new_users,,1\r\n",
        "\r\nactivity_by_type,1,,6\r\n",
        "\r\nactivity_by_type,2,,3\r\n",
        "\r\noutcomes,events,,11\r\n",
        "\r\noutcome_total,fanout_recipients,,1700\r\n",
        "\r\noutcome_total,push_result,,72\r\n",
        "\r\noutcome_total,audit_decision,,14\r\n",
        "\r\noutcome_total,dead_lettered,,2\r\n",
        "\r\noutcome,fanout/fanout_recipients,delivery=online,1500\r\n",
        "\r\noutcome,push/push_result,provider=apns;result=ok,40\r\n",
        "\r\noutcome,push/push_result,provider=fcm;result=invalid_token,2\r\n",
        "\r\noutcome,content_audit/audit_decision,decision=review,3\r\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        if (!strstr(text, lines[i]))
            fprintf(stderr, "CSV:\n%s\n", text);
        H_CHECK(strstr(text, lines[i]) != NULL, "CSV lacks the line %s", lines[i] + 2);
    }
    free(text);

    /* HTML, and in a real browser when there is one */
    snprintf(path, sizeof(path), "%s/reports/daily/%s.html", store, stamp);
    text = slurp(path, NULL);
    H_CHECK(text != NULL, "no report at %s", path);
    assert_non_null(strstr(text, "id=\"tile-fanout-recipients\"><div class=\"v\">1700<"));
    free(text);
    if (system("command -v chromium >/dev/null 2>&1") == 0) {
        char cmd[6 * PATH_MAX];
        snprintf(cmd, sizeof(cmd),
                 "HOME='%s' timeout 120 chromium --headless --no-sandbox --disable-gpu "
                 "--user-data-dir='%s/chromium' --dump-dom 'file://%s' >'%s/dom.html' "
                 "2>'%s/chromium.log'",
                 h_tmp, h_tmp, path, h_tmp, h_tmp);
        H_CHECK(system(cmd) == 0, "chromium failed (log %s/chromium.log)", h_tmp);
        snprintf(path, sizeof(path), "%s/dom.html", h_tmp);
        text = slurp(path, NULL);
        H_CHECK(text && strstr(text, "<div class=\"v\">1700</div>") &&
                    strstr(text, "<div class=\"v\">9</div>") &&
                    strstr(text, "<svg id=\"chart-messages\"") &&
                    strstr(text, "<svg id=\"chart-pushes\""),
                "chromium's DOM lacks the totals or the charts");
        free(text);
    } else {
        print_message("chromium not installed: the browser check is skipped here "
                      "(scripts/install-deps.sh installs it)\n");
    }

    /* a double firing of the same slot rewrites the same three keys */
    h_prod_open(&p);
    report_task(&p, tasks, slot);
    h_prod_close(&p);
    wait_succeeded(&ch, port, 2);
    snprintf(path, sizeof(path), "%s/reports/daily", store);
    assert_int_equal(count_files(path), 3);
    snprintf(path, sizeof(path), "%s/reports/daily/%s.json", store, stamp);
    text = slurp(path, NULL);
    j = text ? cJSON_Parse(text) : NULL;
    H_CHECK(j != NULL, "%s unreadable after the second firing", path);
    assert_int_equal(jnum(j, "activity.messages"), 9);
    assert_int_equal(jnum(j, "outcomes.fanout_recipients"), 1700);
    cJSON_Delete(j);
    free(text);

    /* the runtime's outcome hook: a malformed report task is dead-lettered
     * and a dead_lettered event reaches the (private) outcome topic */
    h_prod_open(&p);
    h_prod_task(&p, tasks, "bad", "report", "bad-report-1", "\x01\x02junk", 6);
    h_prod_close(&p);
    int64_t until = h_mono_ms() + 60000;
    while (h_metric(port, "imtask_outcomes_emitted_total ") < 1) {
        h_child_check(&ch);
        H_CHECK(h_mono_ms() < until, "no outcome event emitted for the dead-lettered task");
        h_sleep_ms(200);
    }
    const char *ot[] = {otopic};
    const int op[] = {3};
    for (;;) { /* queued is not yet written: read until it is there */
        dead_seen = 0;
        h_read_all(ot, op, 1, find_dead, NULL, 30);
        if (dead_seen > 0)
            break;
        H_CHECK(h_mono_ms() < until, "the dead_lettered event never reached %s", otopic);
        h_sleep_ms(200);
    }
    assert_int_equal(dead_seen, 1);
    assert_true(h_metric(port, "imtask_report_runs_total{result=\"written\"} ") == 2);
    assert_true(h_metric(port, "imtask_report_runs_total{result=\"dead\"} ") == 1);
    assert_true(h_metric(port, "imtask_report_outcome_events_total ") == 22);

    assert_int_equal(h_child_stop(&ch, SIGTERM), 0);
    h_double_stop(&dbl);
    h_topics_delete(topics, 4);
    h_group_delete(group);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <imtask-archive binary>\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    if (h_setup("report_e2e_test"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
