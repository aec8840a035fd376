/* report_render.c: a report as JSON and CSV (for machines) and as one
 * self-contained HTML page (for people): inline CSS, inline SVG charts, no
 * script, no network. Everything that came from data is escaped. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/outcome.h"
#include "report_model.h"

/* ---- buffer -------------------------------------------------------------- */

void report_buf_init(report_buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void report_buf_free(report_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static void report_buf_add(report_buf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        if (b->len + n + 1 > cap) {
            b->failed = true;
            return;
        }
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void report_buf_puts(report_buf_t *b, const char *s)
{
    report_buf_add(b, s, strlen(s));
}

void report_buf_printf(report_buf_t *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        report_buf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    report_buf_add(b, big, (size_t)n);
    free(big);
}

void report_buf_html(report_buf_t *b, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            break;
        }
        if (rep) {
            report_buf_add(b, run, (size_t)(s - run));
            report_buf_puts(b, rep);
            run = s + 1;
        }
    }
    report_buf_add(b, run, (size_t)(s - run));
}

void report_buf_csv(report_buf_t *b, const char *s)
{
    bool formula = s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@';
    bool quote = formula || strpbrk(s, ",\"\r\n") != NULL || s[0] == ' ' ||
                 (s[0] && s[strlen(s) - 1] == ' ');
    if (!quote) {
        report_buf_puts(b, s);
        return;
    }
    report_buf_puts(b, "\"");
    if (formula)
        report_buf_puts(b, "'");
    for (const char *run = s;; s++) {
        if (*s == '"' || !*s) {
            report_buf_add(b, run, (size_t)(s - run));
            if (!*s)
                break;
            report_buf_puts(b, "\"\"");
            run = s + 1;
        }
    }
    report_buf_puts(b, "\"");
}

static int report_buf_take(report_buf_t *b, char **out, size_t *len)
{
    if (b->failed || !b->data) {
        report_buf_free(b);
        return -1;
    }
    *out = b->data;
    *len = b->len;
    b->data = NULL;
    return 0;
}

/* ---- scale -------------------------------------------------------------- */

int64_t report_scale_top(int64_t max)
{
    int64_t p = 1;
    if (max <= 1)
        return 1;
    for (;;) {
        static const int steps[] = {1, 2, 5};
        for (int i = 0; i < 3; i++) {
            if (p * steps[i] >= max)
                return p * steps[i];
        }
        if (p > INT64_MAX / 100)
            return max;
        p *= 10;
    }
}

int report_scale_ticks(int64_t top)
{
    int64_t m = top;
    while (m >= 10 && m % 10 == 0)
        m /= 10;
    if (m == 2)
        return top >= 20 ? 4 : 2; /* 20, 200, ...: steps of 5, 50, ... */
    if (m == 5)
        return 5; /* steps of 1, 10, ... */
    if (m == 1)
        return top >= 10 ? 5 : 1; /* 10, 100, ...: steps of 2, 20, ... */
    return 1;
}

double report_scale_px(int64_t v, int64_t top, double height)
{
    if (top <= 0 || v <= 0)
        return 0;
    if (v >= top)
        return height;
    return (double)v * height / (double)top;
}

/* ---- derived figures ---------------------------------------------------- */

int64_t report_sum_kind(const report_t *r, const char *kind)
{
    const report_series_t *s;
    size_t n = report_agg_series(r->agg, &s);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].kind, kind) == 0)
            sum += s[i].count;
    }
    return sum;
}

#define REPORT_GROUP_MAX 64
#define REPORT_PART_MAX 80
#define REPORT_KEY_MAX (2 * REPORT_PART_MAX + 4) /* "a / b" */

typedef struct {
    char key[REPORT_KEY_MAX];
    char a[REPORT_PART_MAX], b[REPORT_PART_MAX];
    int64_t count;
} report_group_t;

/* Sums of `kind` grouped by label la (NULL: the task type) and lb (NULL: none),
 * sorted by key; beyond REPORT_GROUP_MAX keys the rest go to "(other)". */
static size_t report_group(const report_t *r, const char *kind, const char *la, const char *lb,
                           report_group_t *g)
{
    const report_series_t *s;
    size_t n = report_agg_series(r->agg, &s), ng = 0;
    for (size_t i = 0; i < n; i++) {
        char a[REPORT_PART_MAX], b[REPORT_PART_MAX], key[REPORT_KEY_MAX];
        size_t k;
        if (strcmp(s[i].kind, kind) != 0)
            continue;
        if (la)
            report_label(&s[i], la, a, sizeof(a));
        else
            snprintf(a, sizeof(a), "%s", s[i].task_type);
        if (!a[0])
            snprintf(a, sizeof(a), "(none)");
        b[0] = '\0';
        if (lb) {
            report_label(&s[i], lb, b, sizeof(b));
            if (!b[0])
                snprintf(b, sizeof(b), "(none)");
        }
        snprintf(key, sizeof(key), "%s%s%s", a, lb ? " / " : "", b);
        for (k = 0; k < ng && strcmp(g[k].key, key) != 0; k++)
            ;
        if (k == ng && ng >= REPORT_GROUP_MAX - 1) { /* the last slot sums the rest */
            snprintf(key, sizeof(key), "(other)");
            snprintf(a, sizeof(a), "(other)");
            b[0] = '\0';
            for (k = 0; k < ng && strcmp(g[k].key, key) != 0; k++)
                ;
        }
        if (k == ng) {
            ng++;
            snprintf(g[k].key, sizeof(g[k].key), "%s", key);
            snprintf(g[k].a, sizeof(g[k].a), "%s", a);
            snprintf(g[k].b, sizeof(g[k].b), "%s", b);
            g[k].count = 0;
        }
        g[k].count += s[i].count;
    }
    for (size_t i = 1; i < ng; i++) { /* insertion sort: few keys */
        report_group_t t = g[i];
        size_t j = i;
        for (; j > 0 && strcmp(g[j - 1].key, t.key) > 0; j--)
            g[j] = g[j - 1];
        g[j] = t;
    }
    return ng;
}

static const char *report_period_name(const report_t *r)
{
    return r->period == REPORT_DAY ? "day" : "hour";
}

/* ---- JSON --------------------------------------------------------------- */

static cJSON *report_json_group(const report_t *r, const char *kind, const char *la)
{
    report_group_t g[REPORT_GROUP_MAX];
    size_t n = report_group(r, kind, la, NULL, g);
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < n; i++)
        cJSON_AddNumberToObject(o, g[i].key, (double)g[i].count);
    return o;
}

int report_render_json(const report_t *r, char **out, size_t *len)
{
    char start[REPORT_LOCAL_MAX], end[REPORT_LOCAL_MAX], t[REPORT_LOCAL_MAX];
    cJSON *root = cJSON_CreateObject(), *act, *arr, *oc, *pushes;
    report_group_t g[REPORT_GROUP_MAX];
    const report_series_t *s;
    size_t n;
    if (!root)
        return -1;
    report_local_time(r->start_ms, r->tz, false, start, sizeof(start));
    report_local_time(r->end_ms, r->tz, false, end, sizeof(end));
    cJSON_AddStringToObject(root, "job", r->job);
    cJSON_AddStringToObject(root, "period", report_period_name(r));
    cJSON_AddStringToObject(root, "time_zone", r->tz);
    cJSON_AddStringToObject(root, "start", start);
    cJSON_AddStringToObject(root, "end", end);
    cJSON_AddNumberToObject(root, "start_ms", (double)r->start_ms);
    cJSON_AddNumberToObject(root, "end_ms", (double)r->end_ms);
    cJSON_AddNumberToObject(root, "slot_ms", (double)r->slot_ms);
    cJSON_AddNumberToObject(root, "generated_at_ms", (double)r->generated_ms);
    cJSON_AddBoolToObject(root, "manual", r->manual);

    act = cJSON_AddObjectToObject(root, "activity");
    cJSON_AddNumberToObject(act, "messages", (double)r->messages);
    cJSON_AddNumberToObject(act, "active_users", (double)r->active_users);
    cJSON_AddNumberToObject(act, "active_groups", (double)r->active_groups);
    cJSON_AddNumberToObject(act, "new_users", (double)r->new_users);
    arr = cJSON_AddArrayToObject(act, "by_type");
    for (size_t i = 0; arr && i < r->ntypes; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "message_type", r->by_type[i].type);
        cJSON_AddNumberToObject(e, "messages", (double)r->by_type[i].messages);
        cJSON_AddItemToArray(arr, e);
    }
    cJSON_AddNumberToObject(act, "bucket_ms", (double)r->bucket_ms);
    arr = cJSON_AddArrayToObject(act, "by_bucket");
    for (size_t i = 0; arr && i < r->nbuckets; i++) {
        cJSON *e = cJSON_CreateObject();
        report_local_time(r->bucket_start[i], r->tz, false, t, sizeof(t));
        cJSON_AddStringToObject(e, "start", t);
        cJSON_AddNumberToObject(e, "start_ms", (double)r->bucket_start[i]);
        cJSON_AddNumberToObject(e, "messages", (double)r->bucket_messages[i]);
        cJSON_AddItemToArray(arr, e);
    }

    oc = cJSON_AddObjectToObject(root, "outcomes");
    cJSON_AddNumberToObject(oc, "events", (double)r->outcome_events);
    cJSON_AddNumberToObject(oc, "records_outside_period", (double)r->outcome_skipped);
    cJSON_AddNumberToObject(oc, "undecodable_records", (double)r->outcome_badrecs);
    cJSON_AddNumberToObject(oc, "overflow_count", (double)report_agg_overflow(r->agg));
    cJSON_AddNumberToObject(oc, "fanout_recipients",
                            (double)report_sum_kind(r, OUTCOME_FANOUT_RECIPIENTS));
    cJSON_AddItemToObject(oc, "fanout_recipients_by_delivery",
                          report_json_group(r, OUTCOME_FANOUT_RECIPIENTS, "delivery"));
    cJSON_AddNumberToObject(oc, "pushes", (double)report_sum_kind(r, OUTCOME_PUSH_RESULT));
    pushes = cJSON_AddArrayToObject(oc, "pushes_by_provider_result");
    n = report_group(r, OUTCOME_PUSH_RESULT, "provider", "result", g);
    for (size_t i = 0; pushes && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "provider", g[i].a);
        cJSON_AddStringToObject(e, "result", g[i].b);
        cJSON_AddNumberToObject(e, "count", (double)g[i].count);
        cJSON_AddItemToArray(pushes, e);
    }
    cJSON_AddNumberToObject(oc, "audit_decisions",
                            (double)report_sum_kind(r, OUTCOME_AUDIT_DECISION));
    cJSON_AddItemToObject(oc, "audit_decisions_by_decision",
                          report_json_group(r, OUTCOME_AUDIT_DECISION, "decision"));
    cJSON_AddNumberToObject(oc, "dead_lettered", (double)report_sum_kind(r, OUTCOME_DEAD_LETTERED));
    cJSON_AddItemToObject(oc, "dead_lettered_by_task_type",
                          report_json_group(r, OUTCOME_DEAD_LETTERED, NULL));
    arr = cJSON_AddArrayToObject(oc, "series");
    n = report_agg_series(r->agg, &s);
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *e = cJSON_CreateObject(), *l = cJSON_CreateObject();
        char labels[REPORT_LABELS_MAX];
        cJSON_AddStringToObject(e, "task_type", s[i].task_type);
        cJSON_AddStringToObject(e, "kind", s[i].kind);
        snprintf(labels, sizeof(labels), "%s", s[i].labels);
        for (char *save = NULL, *p = strtok_r(labels, ";", &save); p;
             p = strtok_r(NULL, ";", &save)) {
            char *eq = strchr(p, '=');
            if (eq) {
                *eq = '\0';
                cJSON_AddStringToObject(l, p, eq + 1);
            }
        }
        cJSON_AddItemToObject(e, "labels", l);
        cJSON_AddNumberToObject(e, "count", (double)s[i].count);
        cJSON_AddNumberToObject(e, "events", (double)s[i].events);
        cJSON_AddItemToArray(arr, e);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return -1;
    *len = strlen(text);
    *out = text; /* cJSON's default allocator is malloc: free() releases it */
    return 0;
}

/* ---- CSV ---------------------------------------------------------------- */

static void report_csv_row(report_buf_t *b, const char *section, const char *key,
                           const char *labels, const char *value)
{
    report_buf_csv(b, section);
    report_buf_puts(b, ",");
    report_buf_csv(b, key);
    report_buf_puts(b, ",");
    report_buf_csv(b, labels);
    report_buf_puts(b, ",");
    report_buf_csv(b, value);
    report_buf_puts(b, "\r\n");
}

static void report_csv_num(report_buf_t *b, const char *section, const char *key,
                           const char *labels, int64_t v)
{
    char num[32];
    snprintf(num, sizeof(num), "%lld", (long long)v);
    report_csv_row(b, section, key, labels, num);
}

int report_render_csv(const report_t *r, char **out, size_t *len)
{
    report_buf_t b;
    char t[REPORT_LOCAL_MAX], key[64];
    const report_series_t *s;
    size_t n;
    static const char *const kinds[] = {OUTCOME_FANOUT_RECIPIENTS, OUTCOME_PUSH_RESULT,
                                        OUTCOME_AUDIT_DECISION, OUTCOME_DEAD_LETTERED};
    report_buf_init(&b, REPORT_RENDER_MAX);
    report_buf_puts(&b, "section,key,labels,value\r\n");
    report_csv_row(&b, "report", "job", "", r->job);
    report_csv_row(&b, "report", "period", "", report_period_name(r));
    report_csv_row(&b, "report", "time_zone", "", r->tz);
    report_local_time(r->start_ms, r->tz, false, t, sizeof(t));
    report_csv_row(&b, "report", "start", "", t);
    report_local_time(r->end_ms, r->tz, false, t, sizeof(t));
    report_csv_row(&b, "report", "end", "", t);
    report_csv_num(&b, "activity", "messages", "", r->messages);
    report_csv_num(&b, "activity", "active_users", "", r->active_users);
    report_csv_num(&b, "activity", "active_groups", "", r->active_groups);
    report_csv_num(&b, "activity", "new_users", "", r->new_users);
    for (size_t i = 0; i < r->ntypes; i++) {
        snprintf(key, sizeof(key), "%d", (int)r->by_type[i].type);
        report_csv_num(&b, "activity_by_type", key, "", r->by_type[i].messages);
    }
    for (size_t i = 0; i < r->nbuckets; i++) {
        report_local_time(r->bucket_start[i], r->tz, false, t, sizeof(t));
        report_csv_num(&b, "activity_by_bucket", t, "", r->bucket_messages[i]);
    }
    report_csv_num(&b, "outcomes", "events", "", r->outcome_events);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        report_csv_num(&b, "outcome_total", kinds[i], "", report_sum_kind(r, kinds[i]));
    n = report_agg_series(r->agg, &s);
    for (size_t i = 0; i < n; i++) {
        char k[256];
        snprintf(k, sizeof(k), "%s/%s", s[i].task_type, s[i].kind);
        report_csv_num(&b, "outcome", k, s[i].labels, s[i].count);
    }
    if (report_agg_overflow(r->agg))
        report_csv_num(&b, "outcome", "(overflow)", "", report_agg_overflow(r->agg));
    return report_buf_take(&b, out, len);
}

/* ---- HTML --------------------------------------------------------------- */

#define SVG_W 640.0
#define SVG_LEFT 56.0
#define SVG_RIGHT 16.0

static const char report_css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1f2328;"
    "background:#fff;max-width:1000px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}"
    ".sub{color:#59636e;margin:0 0 16px}"
    ".tiles{display:flex;flex-wrap:wrap;gap:12px}"
    ".tile{border:1px solid #d1d9e0;border-radius:8px;padding:10px 14px;min-width:120px}"
    ".tile .v{font-size:24px;font-weight:600}.tile .k{color:#59636e;font-size:13px}"
    "svg{display:block;margin:4px 0 12px}svg text{font-size:11px;fill:#1f2328}"
    ".axis{stroke:#8c959f;stroke-width:1}.grid{stroke:#eaeef2;stroke-width:1}"
    ".line{fill:none;stroke:#0969da;stroke-width:2}.dot{fill:#0969da}"
    ".bar{fill:#1a7f37}.bar.warn{fill:#bf8700}.bar.bad{fill:#cf222e}"
    "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #d1d9e0;"
    "padding:4px 8px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".none{color:#59636e;font-style:italic}"
    "@media print{body{margin:0}}";

static void report_tile(report_buf_t *b, const char *id, const char *name, int64_t v)
{
    report_buf_printf(b,
                      "<div class=\"tile\" id=\"tile-%s\"><div class=\"v\">%lld</div>"
                      "<div class=\"k\">",
                      id, (long long)v);
    report_buf_html(b, name);
    report_buf_puts(b, "</div></div>\n");
}

/* Messages per bucket as a line with dots, y axis from 0 to a round top. */
static void report_line_chart(report_buf_t *b, const report_t *r)
{
    const double h = 180, top_px = 16, base = top_px + h;
    int64_t max = 0;
    for (size_t i = 0; i < r->nbuckets; i++)
        max = r->bucket_messages[i] > max ? r->bucket_messages[i] : max;
    int64_t top = report_scale_top(max);
    double step = r->nbuckets > 1 ? (SVG_W - SVG_LEFT - SVG_RIGHT) / (double)(r->nbuckets - 1) : 0;
    report_buf_printf(b,
                      "<svg id=\"chart-messages\" xmlns=\"http://www.w3.org/2000/svg\" "
                      "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
                      "aria-label=\"messages per %s\">\n",
                      SVG_W, base + 40, SVG_W, base + 40,
                      r->period == REPORT_DAY ? "hour" : "5 minutes");
    int nticks = report_scale_ticks(top);
    for (int k = 0; k <= nticks; k++) { /* grid and y labels at even integer steps */
        int64_t v = top / nticks * k;
        double y = base - report_scale_px(v, top, h);
        report_buf_printf(b,
                          "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%lld</text>\n",
                          SVG_LEFT, y, SVG_W - SVG_RIGHT, y, SVG_LEFT - 6, y + 4, (long long)v);
    }
    report_buf_printf(b, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
                      SVG_LEFT, base, SVG_W - SVG_RIGHT, base);
    report_buf_puts(b, "<polyline class=\"line\" points=\"");
    for (size_t i = 0; i < r->nbuckets; i++)
        report_buf_printf(b, "%s%.1f,%.1f", i ? " " : "", SVG_LEFT + step * (double)i,
                          base - report_scale_px(r->bucket_messages[i], top, h));
    report_buf_puts(b, "\"/>\n");
    size_t every = r->nbuckets > 12 ? (r->nbuckets + 11) / 12 : 1;
    for (size_t i = 0; i < r->nbuckets; i++) {
        char hm[16];
        double x = SVG_LEFT + step * (double)i;
        report_local_time(r->bucket_start[i], r->tz, true, hm, sizeof(hm));
        report_buf_printf(b,
                          "<circle class=\"dot\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\"><title>%s: %lld"
                          "</title></circle>\n",
                          x, base - report_scale_px(r->bucket_messages[i], top, h), hm,
                          (long long)r->bucket_messages[i]);
        if (i % every == 0)
            report_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                              x, base + 16, hm);
    }
    report_buf_puts(b, "</svg>\n");
}

typedef struct {
    char label[REPORT_KEY_MAX];
    int64_t v;
    const char *cls; /* "bar", "bar warn", "bar bad" */
} report_bar_t;

/* Horizontal bars, one row each: label, bar, value. */
static void report_bar_chart(report_buf_t *b, const char *id, const char *aria,
                             const report_bar_t *bars, size_t n)
{
    const double row = 24, label_w = 200, value_w = 70;
    const double w = SVG_W - label_w - value_w;
    int64_t max = 0;
    if (n == 0) {
        report_buf_printf(b, "<p class=\"none\" id=\"%s\">none in this period</p>\n", id);
        return;
    }
    for (size_t i = 0; i < n; i++)
        max = bars[i].v > max ? bars[i].v : max;
    int64_t top = report_scale_top(max);
    report_buf_printf(b,
                      "<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
                      "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"",
                      id, SVG_W, row * (double)n + 8, SVG_W, row * (double)n + 8);
    report_buf_html(b, aria);
    report_buf_puts(b, "\">\n");
    for (size_t i = 0; i < n; i++) {
        double y = 4 + row * (double)i;
        report_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", label_w - 8,
                          y + 15);
        report_buf_html(b, bars[i].label);
        report_buf_printf(b,
                          "</text><rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                          "height=\"%.1f\"><title>",
                          bars[i].cls, label_w, y + 2, report_scale_px(bars[i].v, top, w), row - 6);
        report_buf_html(b, bars[i].label);
        report_buf_printf(b, ": %lld</title></rect><text x=\"%.1f\" y=\"%.1f\">%lld</text>\n",
                          (long long)bars[i].v, label_w + report_scale_px(bars[i].v, top, w) + 6,
                          y + 15, (long long)bars[i].v);
    }
    report_buf_puts(b, "</svg>\n");
}

static const char *report_result_class(const char *result)
{
    if (strcmp(result, "ok") == 0 || strcmp(result, "pass") == 0 || strcmp(result, "online") == 0 ||
        strcmp(result, "delivered") == 0)
        return "bar";
    if (strcmp(result, "review") == 0 || strcmp(result, "retry") == 0 ||
        strcmp(result, "offline") == 0)
        return "bar warn";
    return "bar bad";
}

static void report_group_chart(report_buf_t *b, const report_t *r, const char *id, const char *aria,
                               const char *kind, const char *la, const char *lb)
{
    report_group_t g[REPORT_GROUP_MAX];
    report_bar_t bars[REPORT_GROUP_MAX];
    size_t n = report_group(r, kind, la, lb, g);
    for (size_t i = 0; i < n; i++) {
        _Static_assert(sizeof(bars[i].label) == sizeof(g[i].key), "same label size");
        memcpy(bars[i].label, g[i].key, sizeof(bars[i].label)); /* NUL-terminated, same size */
        bars[i].v = g[i].count;
        bars[i].cls = report_result_class(lb ? g[i].b : g[i].a);
        if (!la) /* dead letters by task type: all bad */
            bars[i].cls = "bar bad";
    }
    report_bar_chart(b, id, aria, bars, n);
}

int report_render_html(const report_t *r, char **out, size_t *len)
{
    report_buf_t b;
    char start[REPORT_LOCAL_MAX], end[REPORT_LOCAL_MAX], gen[REPORT_LOCAL_MAX];
    const report_series_t *s;
    size_t n;
    report_bar_t types[REPORT_MAX_TYPES];

    report_buf_init(&b, REPORT_RENDER_MAX);
    report_local_time(r->start_ms, r->tz, false, start, sizeof(start));
    report_local_time(r->end_ms, r->tz, false, end, sizeof(end));
    report_local_time(r->generated_ms, r->tz, false, gen, sizeof(gen));
    report_buf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                        "<title>im-task report ");
    report_buf_html(&b, r->job);
    report_buf_puts(&b, " ");
    report_buf_html(&b, start);
    report_buf_printf(&b, "</title>\n<style>%s</style>\n</head>\n<body>\n", report_css);
    report_buf_puts(&b, "<h1>im-task report: ");
    report_buf_html(&b, r->job);
    report_buf_printf(&b, " (%s)</h1>\n<p class=\"sub\" id=\"period\">", report_period_name(r));
    report_buf_html(&b, start);
    report_buf_puts(&b, " to ");
    report_buf_html(&b, end);
    report_buf_puts(&b, " (");
    report_buf_html(&b, r->tz);
    report_buf_puts(&b, "), generated ");
    report_buf_html(&b, gen);
    report_buf_puts(&b, r->manual ? ", run by hand" : "");
    report_buf_puts(&b, "</p>\n");

    report_buf_puts(&b, "<h2>Message activity</h2>\n<div class=\"tiles\">\n");
    report_tile(&b, "messages", "messages", r->messages);
    report_tile(&b, "active-users", "active users", r->active_users);
    report_tile(&b, "active-groups", "active groups", r->active_groups);
    report_tile(&b, "new-users", "new users", r->new_users);
    report_buf_printf(&b, "</div>\n<h2>Messages per %s</h2>\n",
                      r->period == REPORT_DAY ? "hour" : "5 minutes");
    report_line_chart(&b, r);
    report_buf_puts(&b, "<h2>Messages by type</h2>\n");
    for (size_t i = 0; i < r->ntypes; i++) {
        snprintf(types[i].label, sizeof(types[i].label), "type %d", (int)r->by_type[i].type);
        types[i].v = r->by_type[i].messages;
        types[i].cls = "bar";
    }
    report_bar_chart(&b, "chart-types", "messages by type", types, r->ntypes);

    report_buf_puts(&b, "<h2>im-task outcomes</h2>\n<div class=\"tiles\">\n");
    report_tile(&b, "fanout-recipients", "fan-out recipients",
                report_sum_kind(r, OUTCOME_FANOUT_RECIPIENTS));
    report_tile(&b, "pushes", "pushes", report_sum_kind(r, OUTCOME_PUSH_RESULT));
    report_tile(&b, "audit-decisions", "audit decisions",
                report_sum_kind(r, OUTCOME_AUDIT_DECISION));
    report_tile(&b, "dead-lettered", "dead-lettered tasks",
                report_sum_kind(r, OUTCOME_DEAD_LETTERED));
    report_buf_puts(&b, "</div>\n<h2>Fan-out recipients by delivery</h2>\n");
    report_group_chart(&b, r, "chart-fanout", "fan-out recipients by delivery",
                       OUTCOME_FANOUT_RECIPIENTS, "delivery", NULL);
    report_buf_puts(&b, "<h2>Pushes by provider and result</h2>\n");
    report_group_chart(&b, r, "chart-pushes", "pushes by provider and result", OUTCOME_PUSH_RESULT,
                       "provider", "result");
    report_buf_puts(&b, "<h2>Audit decisions</h2>\n");
    report_group_chart(&b, r, "chart-audit", "audit decisions", OUTCOME_AUDIT_DECISION, "decision",
                       NULL);
    report_buf_puts(&b, "<h2>Dead-lettered tasks by type</h2>\n");
    report_group_chart(&b, r, "chart-dead", "dead-lettered tasks by type", OUTCOME_DEAD_LETTERED,
                       NULL, NULL);

    report_buf_puts(&b, "<h2>All outcome series</h2>\n");
    n = report_agg_series(r->agg, &s);
    if (n == 0) {
        report_buf_puts(&b, "<p class=\"none\">no outcome events in this period</p>\n");
    } else {
        report_buf_puts(&b, "<table id=\"series\">\n<tr><th>task type</th><th>kind</th>"
                            "<th>labels</th><th>count</th><th>events</th></tr>\n");
        for (size_t i = 0; i < n; i++) {
            report_buf_puts(&b, "<tr><td>");
            report_buf_html(&b, s[i].task_type);
            report_buf_puts(&b, "</td><td>");
            report_buf_html(&b, s[i].kind);
            report_buf_puts(&b, "</td><td>");
            report_buf_html(&b, s[i].labels);
            report_buf_printf(&b, "</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td></tr>\n",
                              (long long)s[i].count, (long long)s[i].events);
        }
        report_buf_puts(&b, "</table>\n");
    }
    report_buf_printf(&b,
                      "<p class=\"sub\">%lld outcome events in the period; %lld records outside "
                      "it read at the edges; %lld undecodable; %lld counted past the series "
                      "bound.</p>\n</body>\n</html>\n",
                      (long long)r->outcome_events, (long long)r->outcome_skipped,
                      (long long)r->outcome_badrecs, (long long)report_agg_overflow(r->agg));
    return report_buf_take(&b, out, len);
}
