/* report_unit_test.c: the report job's pure parts (tasks/archive/report_*):
 * outcome aggregation, CSV quoting, HTML escaping, chart scales, period
 * boundaries in time zones (DST days included) and the three renderings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "dispatch/outcome.h"
#include "tasks/archive/report_model.h"

/* An event as the emitter would send it (labels are name, value pairs). */
static Imtask__V1__OutcomeEvent *ev_new(const char *type, const char *kind, int64_t count,
                                        int64_t ts, int nl, ...)
{
    Imtask__V1__OutcomeEvent *e = calloc(1, sizeof(*e));
    va_list ap;
    imtask__v1__outcome_event__init(e);
    e->task_type = strdup(type);
    e->kind = strdup(kind);
    e->task_id = strdup("");
    e->binary = strdup("");
    e->count = count;
    e->ts_ms = ts;
    e->n_labels = (size_t)nl;
    e->labels = nl ? calloc((size_t)nl, sizeof(*e->labels)) : NULL;
    va_start(ap, nl);
    for (int i = 0; i < nl; i++) {
        e->labels[i] = calloc(1, sizeof(**e->labels));
        imtask__v1__outcome_label__init(e->labels[i]);
        e->labels[i]->name = strdup(va_arg(ap, const char *));
        e->labels[i]->value = strdup(va_arg(ap, const char *));
    }
    va_end(ap);
    return e;
}

static void ev_free(Imtask__V1__OutcomeEvent *e)
{
    imtask__v1__outcome_event__free_unpacked(e, NULL); /* frees with the default allocator */
}

static void add(report_agg_t *a, Imtask__V1__OutcomeEvent *e)
{
    assert_int_equal(report_agg_add(a, e), 0);
    ev_free(e);
}

static void test_agg_sums_and_sorts(void **st)
{
    (void)st;
    report_agg_t *a = report_agg_new(100);
    const report_series_t *s;
    char buf[64];
    add(a, ev_new("push", "push_result", 3, 0, 2, "provider", "fcm", "result", "ok"));
    add(a, ev_new("push", "push_result", 4, 0, 2, "provider", "apns", "result", "ok"));
    add(a, ev_new("push", "push_result", 5, 0, 2, "provider", "fcm", "result", "ok"));
    add(a, ev_new("fanout", "fanout_recipients", 1000, 0, 1, "delivery", "online"));
    add(a,
        ev_new("push", "push_result", -7, 0, 2, "provider", "fcm", "result", "ok")); /* ignored */
    size_t n = report_agg_series(a, &s);
    assert_int_equal(n, 3);
    assert_string_equal(s[0].task_type, "fanout");
    assert_int_equal(s[0].count, 1000);
    assert_string_equal(s[1].labels, "provider=apns;result=ok");
    assert_int_equal(s[1].count, 4);
    assert_string_equal(s[2].labels, "provider=fcm;result=ok");
    assert_int_equal(s[2].count, 8);
    assert_int_equal(s[2].events, 2);
    assert_string_equal(report_label(&s[2], "result", buf, sizeof(buf)), "ok");
    assert_string_equal(report_label(&s[2], "provider", buf, sizeof(buf)), "fcm");
    assert_string_equal(report_label(&s[2], "nope", buf, sizeof(buf)), "");
    /* still adds to the right series after sorting rebuilt the index */
    add(a, ev_new("push", "push_result", 1, 0, 2, "provider", "apns", "result", "ok"));
    n = report_agg_series(a, &s);
    assert_int_equal(n, 3);
    assert_int_equal(s[1].count, 5);
    report_agg_destroy(&a);
    assert_null(a);
}

static void test_agg_bounded(void **st)
{
    (void)st;
    report_agg_t *a = report_agg_new(2);
    const report_series_t *s;
    char v[16];
    for (int i = 0; i < 50; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        add(a, ev_new("t", "k", 2, 0, 1, "x", v));
    }
    assert_int_equal(report_agg_series(a, &s), 2);
    assert_int_equal(s[0].count + s[1].count, 4);
    assert_int_equal(report_agg_overflow(a), 96);
    /* separators in values cannot forge another label */
    report_agg_t *b = report_agg_new(10);
    add(b, ev_new("t", "k", 1, 0, 1, "a", "1;b=2"));
    report_agg_series(b, &s);
    assert_string_equal(s[0].labels, "a=1_b_2");
    report_agg_destroy(&a);
    report_agg_destroy(&b);
}

static char *csv(const char *in)
{
    report_buf_t b;
    report_buf_init(&b, 1 << 20);
    report_buf_csv(&b, in);
    return b.data ? b.data : strdup("");
}

static void test_csv_quoting(void **st)
{
    (void)st;
    static const char *const cases[][2] = {
        {"plain", "plain"},
        {"", ""},
        {"a,b", "\"a,b\""},
        {"say \"hi\"", "\"say \"\"hi\"\"\""},
        {"two\nlines", "\"two\nlines\""},
        {"cr\rhere", "\"cr\rhere\""},
        {" padded ", "\" padded \""},
        {"=1+2", "\"'=1+2\""},
        {"-5", "\"'-5\""},
        {"@cmd", "\"'@cmd\""},
        {"provider=apns;result=ok", "provider=apns;result=ok"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = csv(cases[i][0]);
        assert_string_equal(got, cases[i][1]);
        free(got);
    }
}

static void test_html_escaping(void **st)
{
    (void)st;
    report_buf_t b;
    report_buf_init(&b, 1 << 20);
    report_buf_html(&b, "<script>alert('x&y')</script> \"q\"");
    assert_string_equal(b.data,
                        "&lt;script&gt;alert(&#39;x&amp;y&#39;)&lt;/script&gt; &quot;q&quot;");
    report_buf_free(&b);
    /* the cap: never past max, marked failed */
    report_buf_init(&b, 8);
    report_buf_puts(&b, "0123456789");
    assert_true(b.failed);
    report_buf_free(&b);
}

static void test_svg_scale(void **st)
{
    (void)st;
    static const int64_t in[] = {-3, 0, 1, 2, 3, 5, 6, 10, 11, 150, 1000, 1001, 45000};
    static const int64_t top[] = {1, 1, 1, 2, 5, 5, 10, 10, 20, 200, 1000, 2000, 50000};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        assert_int_equal(report_scale_top(in[i]), top[i]);
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) { /* integer grid steps */
        int n = report_scale_ticks(top[i]);
        assert_true(n >= 1 && n <= 5);
        assert_int_equal(top[i] % n, 0);
    }
    assert_int_equal(report_scale_ticks(1), 1);
    assert_int_equal(report_scale_ticks(2), 2);
    assert_int_equal(report_scale_ticks(5), 5);
    assert_int_equal(report_scale_ticks(20), 4);
    assert_int_equal(report_scale_ticks(1000), 5);
    assert_true(report_scale_px(0, 10, 180) == 0);
    assert_true(report_scale_px(5, 10, 180) == 90);
    assert_true(report_scale_px(10, 10, 180) == 180);
    assert_true(report_scale_px(20, 10, 180) == 180); /* clamped to the axis */
    assert_true(report_scale_px(-1, 10, 180) == 0);
}

typedef struct {
    const char *tz;
    report_period_t period;
    int64_t slot, start, end; /* Unix ms */
    const char *start_local;
    size_t buckets;
} period_case_t;

static void test_periods(void **st)
{
    (void)st;
    static const period_case_t cases[] = {
        /* UTC day, slot at midnight: the day before */
        {"UTC", REPORT_DAY, 1795824000000, 1795737600000, 1795824000000,
         "2026-11-27T00:00:00+00:00", 24},
        /* a slot that is not on a boundary: the last whole day before it */
        {"UTC", REPORT_DAY, 1795824000000 + 300000, 1795737600000, 1795824000000,
         "2026-11-27T00:00:00+00:00", 24},
        /* Shanghai (+08:00): local midnight 2026-11-28 is 2026-11-27T16:00Z */
        {"Asia/Shanghai", REPORT_DAY, 1795795200000, 1795708800000, 1795795200000,
         "2026-11-27T00:00:00+08:00", 24},
        /* Kolkata (+05:30) hours: 10:40 local -> 09:00..10:00 local */
        {"Asia/Kolkata", REPORT_HOUR, 1795842600000, 1795836600000, 1795840200000,
         "2026-11-28T09:00:00+05:30", 12},
        /* Berlin, spring forward on 2026-03-29: a 23-hour day */
        {"Europe/Berlin", REPORT_DAY, 1774821600000, 1774738800000, 1774821600000,
         "2026-03-29T00:00:00+01:00", 23},
        /* Berlin, fall back on 2026-10-25: a 25-hour day */
        {"Europe/Berlin", REPORT_DAY, 1792969200000, 1792879200000, 1792969200000,
         "2026-10-25T00:00:00+02:00", 25},
        /* New York, the hour after the 2026-03-08 jump (03:00 EDT is 07:00Z):
         * slot 04:00 EDT -> 03:00..04:00 EDT */
        /* Santiago skips midnight on 2026-09-06 (00:00 -> 01:00): the day
         * starts at 01:00 -03 and has 23 hours */
        {"America/Santiago", REPORT_DAY, 1788750000000, 1788667200000, 1788750000000,
         "2026-09-06T01:00:00-03:00", 23},
        {"America/New_York", REPORT_HOUR, 1772956800000, 1772953200000, 1772956800000,
         "2026-03-08T03:00:00-04:00", 12},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const period_case_t *c = &cases[i];
        int64_t s, e;
        char err[256], local[REPORT_LOCAL_MAX];
        report_t r;
        print_message("case %zu: %s\n", i, c->tz);
        assert_int_equal(report_period_bounds(c->slot, c->period, c->tz, &s, &e, err, sizeof(err)),
                         0);
        assert_int_equal(s, c->start);
        assert_int_equal(e, c->end);
        assert_int_equal(report_local_time(s, c->tz, false, local, sizeof(local)), 0);
        assert_string_equal(local, c->start_local);
        memset(&r, 0, sizeof(r));
        r.period = c->period;
        r.start_ms = s;
        r.end_ms = e;
        report_buckets_init(&r);
        assert_int_equal(r.nbuckets, c->buckets);
        assert_int_equal(r.bucket_start[r.nbuckets - 1] + r.bucket_ms, e);
    }
}

static void test_bad_time_zones(void **st)
{
    (void)st;
    int64_t s, e;
    char err[256];
    assert_true(report_tz_ok("UTC"));
    assert_true(report_tz_ok("Europe/Berlin"));
    assert_false(report_tz_ok("Mars/Olympus"));
    assert_false(report_tz_ok("../../etc/passwd"));
    assert_false(report_tz_ok("/etc/localtime"));
    assert_false(report_tz_ok(""));
    assert_int_equal(
        report_period_bounds(1795824000000, REPORT_DAY, "Nowhere/City", &s, &e, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "Nowhere/City"));
    report_period_t p;
    assert_int_equal(report_period_parse("week", &p), -1);
    assert_int_equal(report_period_parse("hour", &p), 0);
    assert_int_equal(p, REPORT_HOUR);
}

/* A small report with known figures, rendered three ways. */
static void fill(report_t *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->job, sizeof(r->job), "daily");
    snprintf(r->tz, sizeof(r->tz), "Asia/Shanghai");
    r->period = REPORT_DAY;
    r->start_ms = 1795708800000;
    r->end_ms = 1795795200000;
    r->slot_ms = r->end_ms;
    r->generated_ms = r->end_ms + 60000;
    report_buckets_init(r);
    r->messages = 42;
    r->active_users = 7;
    r->active_groups = 3;
    r->new_users = 1;
    r->by_type[0] = (report_type_count_t){1, 40};
    r->by_type[1] = (report_type_count_t){2, 2};
    r->ntypes = 2;
    r->bucket_messages[0] = 30;
    r->bucket_messages[23] = 12;
    r->agg = report_agg_new(100);
    add(r->agg, ev_new("fanout", OUTCOME_FANOUT_RECIPIENTS, 1500, 0, 1, "delivery", "online"));
    add(r->agg, ev_new("fanout", OUTCOME_FANOUT_RECIPIENTS, 300, 0, 1, "delivery", "offline"));
    add(r->agg, ev_new("push", OUTCOME_PUSH_RESULT, 250, 0, 2, "provider", "apns", "result", "ok"));
    add(r->agg, ev_new("push", OUTCOME_PUSH_RESULT, 5, 0, 2, "provider", "fcm", "result",
                       "<img src=x onerror=alert(1)>"));
    add(r->agg, ev_new("content_audit", OUTCOME_AUDIT_DECISION, 9, 0, 1, "decision", "block"));
    add(r->agg, ev_new("push", OUTCOME_DEAD_LETTERED, 2, 0, 1, "error_kind", "permanent"));
    r->outcome_events = 6;
}

static void test_render_json(void **st)
{
    (void)st;
    report_t r;
    char *text;
    size_t len;
    fill(&r);
    assert_int_equal(report_render_json(&r, &text, &len), 0);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "start")->valuestring, "2026-11-27T00:00:00+08:00");
    cJSON *act = cJSON_GetObjectItem(j, "activity");
    assert_int_equal(cJSON_GetObjectItem(act, "messages")->valuedouble, 42);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(act, "by_bucket")), 24);
    cJSON *oc = cJSON_GetObjectItem(j, "outcomes");
    assert_int_equal(cJSON_GetObjectItem(oc, "fanout_recipients")->valuedouble, 1800);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(oc, "fanout_recipients_by_delivery"), "offline")
            ->valuedouble,
        300);
    assert_int_equal(cJSON_GetObjectItem(oc, "pushes")->valuedouble, 255);
    assert_int_equal(cJSON_GetObjectItem(oc, "dead_lettered")->valuedouble, 2);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(oc, "dead_lettered_by_task_type"), "push")
            ->valuedouble,
        2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(oc, "series")), 6);
    cJSON_Delete(j);
    free(text);
    report_agg_destroy(&r.agg);
}

static void test_render_csv_html(void **st)
{
    (void)st;
    report_t r;
    char *text;
    size_t len;
    fill(&r);
    assert_int_equal(report_render_csv(&r, &text, &len), 0);
    assert_int_equal(strncmp(text, "section,key,labels,value\r\n", 26), 0);
    assert_non_null(strstr(text, "\r\nactivity,messages,,42\r\n"));
    assert_non_null(strstr(text, "\r\noutcome_total,fanout_recipients,,1800\r\n"));
    assert_non_null(strstr(text, "\r\nactivity_by_bucket,2026-11-27T23:00:00+08:00,,12\r\n"));
    assert_non_null(strstr(text, "\r\noutcome,push/push_result,provider=apns;result=ok,250\r\n"));
    free(text);

    assert_int_equal(report_render_html(&r, &text, &len), 0);
    assert_null(strstr(text, "<img")); /* data never becomes markup */
    assert_non_null(strstr(text, "&lt;img src_x onerror_alert(1)&gt;"));
    assert_null(strstr(text, "<script"));
    for (const char *p = strstr(text, "http"); p; p = strstr(p + 1, "http")) /* no network */
        assert_int_equal(strncmp(p, "http://www.w3.org/2000/svg\"", 27), 0);
    assert_non_null(strstr(text, "id=\"tile-messages\"><div class=\"v\">42<"));
    assert_non_null(strstr(text, "id=\"tile-fanout-recipients\"><div class=\"v\">1800<"));
    assert_non_null(strstr(text, "<svg id=\"chart-messages\""));
    assert_non_null(strstr(text, "<svg id=\"chart-pushes\""));
    assert_non_null(strstr(text, "<polyline class=\"line\""));
    free(text);
    report_agg_destroy(&r.agg);

    /* an empty period renders too */
    memset(&r, 0, sizeof(r));
    snprintf(r.job, sizeof(r.job), "hourly");
    snprintf(r.tz, sizeof(r.tz), "UTC");
    r.period = REPORT_HOUR;
    r.start_ms = 1795824000000 - 3600000;
    r.end_ms = 1795824000000;
    report_buckets_init(&r);
    r.agg = report_agg_new(10);
    assert_int_equal(report_render_html(&r, &text, &len), 0);
    assert_non_null(strstr(text, "no outcome events in this period"));
    free(text);
    assert_int_equal(report_render_csv(&r, &text, &len), 0);
    free(text);
    assert_int_equal(report_render_json(&r, &text, &len), 0);
    free(text);
    report_agg_destroy(&r.agg);
}

/* More dead-letter task types than a chart has rows: the rest is summed
 * as "(other)", nothing is lost or written out of bounds. */
static void test_group_bound(void **st)
{
    (void)st;
    report_t r;
    char type[32], *text;
    size_t len;
    memset(&r, 0, sizeof(r));
    snprintf(r.job, sizeof(r.job), "j");
    snprintf(r.tz, sizeof(r.tz), "UTC");
    r.period = REPORT_HOUR;
    r.start_ms = 1795824000000 - 3600000;
    r.end_ms = 1795824000000;
    report_buckets_init(&r);
    r.agg = report_agg_new(1000);
    for (int i = 0; i < 200; i++) {
        snprintf(type, sizeof(type), "type%03d", i);
        add(r.agg, ev_new(type, OUTCOME_DEAD_LETTERED, 1, 0, 1, "error_kind", "permanent"));
    }
    assert_int_equal(report_render_json(&r, &text, &len), 0);
    cJSON *j = cJSON_Parse(text);
    cJSON *g =
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "outcomes"), "dead_lettered_by_task_type");
    double sum = 0;
    for (cJSON *e = g->child; e; e = e->next)
        sum += e->valuedouble;
    assert_true(sum == 200);
    assert_int_equal(cJSON_GetArraySize(g), 64);
    assert_true(cJSON_GetObjectItem(g, "(other)")->valuedouble == 200 - 63);
    cJSON_Delete(j);
    free(text);
    assert_int_equal(report_render_html(&r, &text, &len), 0);
    free(text);
    report_agg_destroy(&r.agg);
}

static void test_outcome_encode(void **st)
{
    (void)st;
    dispatch_outcome_label_t l[] = {{"provider", "apns"}, {"result", "ok"}};
    uint8_t *buf;
    size_t len;
    assert_int_equal(dispatch_outcome_encode(123, "push", "t1", "push", OUTCOME_PUSH_RESULT, l, 2,
                                             7, &buf, &len),
                     0);
    Imtask__V1__OutcomeEvent *e = imtask__v1__outcome_event__unpack(NULL, len, buf);
    assert_non_null(e);
    assert_int_equal(e->ts_ms, 123);
    assert_string_equal(e->kind, "push_result");
    assert_int_equal(e->n_labels, 2);
    assert_string_equal(e->labels[1]->value, "ok");
    assert_int_equal(e->count, 7);
    imtask__v1__outcome_event__free_unpacked(e, NULL);
    free(buf);
    assert_int_equal(dispatch_outcome_encode(1, "push", NULL, NULL, "", l, 2, 1, &buf, &len), -1);
    /* not started: dropped without a crash or a block */
    dispatch_outcome_emit("push", "t", OUTCOME_PUSH_RESULT, l, 2, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agg_sums_and_sorts), cmocka_unit_test(test_agg_bounded),
        cmocka_unit_test(test_csv_quoting),        cmocka_unit_test(test_html_escaping),
        cmocka_unit_test(test_svg_scale),          cmocka_unit_test(test_periods),
        cmocka_unit_test(test_bad_time_zones),     cmocka_unit_test(test_render_json),
        cmocka_unit_test(test_render_csv_html),    cmocka_unit_test(test_outcome_encode),
        cmocka_unit_test(test_group_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
