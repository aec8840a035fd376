/* report_sample.c: writes the HTML page of a fixed report (known figures,
 * hostile label values) to argv[1], for the browser check
 * (browser_check.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/outcome.h"
#include "tasks/archive/report_model.h"

static void add(report_agg_t *a, const char *type, const char *kind, int64_t count, const char *l1,
                const char *v1, const char *l2, const char *v2)
{
    Imtask__V1__OutcomeLabel la = IMTASK__V1__OUTCOME_LABEL__INIT,
                             lb = IMTASK__V1__OUTCOME_LABEL__INIT;
    Imtask__V1__OutcomeLabel *ls[] = {&la, &lb};
    Imtask__V1__OutcomeEvent ev = IMTASK__V1__OUTCOME_EVENT__INIT;
    la.name = (char *)l1;
    la.value = (char *)v1;
    lb.name = (char *)l2;
    lb.value = (char *)v2;
    ev.task_type = (char *)type;
    ev.kind = (char *)kind;
    ev.count = count;
    ev.labels = ls;
    ev.n_labels = l2 ? 2 : 1;
    if (report_agg_add(a, &ev)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    report_t r;
    char *html;
    size_t len;
    if (argc != 2) {
        fprintf(stderr, "usage: %s <out.html>\n", argv[0]);
        return 2;
    }
    report_tz_init();
    memset(&r, 0, sizeof(r));
    snprintf(r.job, sizeof(r.job), "daily");
    snprintf(r.tz, sizeof(r.tz), "Europe/Berlin");
    r.period = REPORT_DAY;
    /* 2026-03-29 in Berlin: the 23-hour day of the DST change */
    r.start_ms = 1774738800000;
    r.end_ms = 1774821600000;
    r.slot_ms = r.end_ms;
    r.generated_ms = r.end_ms + 60000;
    report_buckets_init(&r);
    r.messages = 4321;
    r.active_users = 321;
    r.active_groups = 54;
    r.new_users = 7;
    r.by_type[0] = (report_type_count_t){1, 4000};
    r.by_type[1] = (report_type_count_t){2, 321};
    r.ntypes = 2;
    for (size_t i = 0; i < r.nbuckets; i++) {
        r.bucket_messages[i] = (int64_t)(i * 17 % 360);
    }
    r.agg = report_agg_new(100);
    add(r.agg, "fanout", OUTCOME_FANOUT_RECIPIENTS, 98765, "delivery", "online", NULL, NULL);
    add(r.agg, "fanout", OUTCOME_FANOUT_RECIPIENTS, 1234, "delivery", "offline", NULL, NULL);
    add(r.agg, "push", OUTCOME_PUSH_RESULT, 1100, "provider", "apns", "result", "ok");
    add(r.agg, "push", OUTCOME_PUSH_RESULT, 134, "provider", "fcm", "result",
        "<script>document.title='pwned'</script>");
    add(r.agg, "content_audit", OUTCOME_AUDIT_DECISION, 4300, "decision", "pass", NULL, NULL);
    add(r.agg, "content_audit", OUTCOME_AUDIT_DECISION, 22, "decision", "block", NULL, NULL);
    add(r.agg, "push", OUTCOME_DEAD_LETTERED, 3, "error_kind", "permanent", NULL, NULL);
    r.outcome_events = 7;
    if (report_render_html(&r, &html, &len)) {
        fprintf(stderr, "render failed\n");
        return 1;
    }
    FILE *f = fopen(argv[1], "wb");
    if (!f || fwrite(html, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", argv[1]);
        return 1;
    }
    free(html);
    report_agg_destroy(&r.agg);
    return 0;
}
