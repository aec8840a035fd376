/* report_agg.c: outcome events summed per (task type, kind, labels) in a
 * bounded hash table, so reading a period's events takes memory in the
 * number of distinct series, not of events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/str.h"
#include "report_model.h"

struct report_agg_s {
    report_series_t *series; /* in insertion order */
    size_t n, max;
    size_t *slots; /* index + 1, 0 empty; open addressing */
    size_t nslots; /* power of two, >= 2 * max */
    int64_t overflow;
    const report_series_t **sorted; /* built by report_agg_series */
};

static uint64_t report_fnv(uint64_t h, const char *s)
{
    return (str_hash_more(h, s) ^ 0x1f) * STR_HASH_PRIME; /* 0x1f: separator */
}

report_agg_t *report_agg_new(size_t max_series)
{
    report_agg_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->max = max_series ? max_series : 1;
    a->nslots = 16;
    while (a->nslots < 2 * a->max)
        a->nslots *= 2;
    a->slots = calloc(a->nslots, sizeof(*a->slots));
    if (!a->slots) {
        free(a);
        return NULL;
    }
    return a;
}

void report_agg_destroy(report_agg_t **ap)
{
    report_agg_t *a = ap ? *ap : NULL;
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->series[i].task_type);
        free(a->series[i].kind);
        free(a->series[i].labels);
    }
    free(a->series);
    free(a->slots);
    free(a->sorted);
    free(a);
    *ap = NULL;
}

/* "name=value;..." with ';' and '=' in values replaced by '_' (labels are
 * identifiers and short values; the text stays unambiguous). */
static void report_labels_text(const Imtask__V1__OutcomeEvent *ev, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ev->n_labels && i < 8; i++) {
        const char *parts[2] = {ev->labels[i]->name, ev->labels[i]->value};
        if (i && o + 1 < len)
            out[o++] = ';';
        for (int k = 0; k < 2; k++) {
            if (k && o + 1 < len)
                out[o++] = '=';
            for (const char *p = parts[k] ? parts[k] : ""; *p && o + 1 < len; p++)
                out[o++] = (*p == ';' || *p == '=' || (unsigned char)*p < 0x20) ? '_' : *p;
        }
    }
    out[o] = '\0';
}

int report_agg_add(report_agg_t *a, const Imtask__V1__OutcomeEvent *ev)
{
    char labels[REPORT_LABELS_MAX];
    const char *type = ev->task_type ? ev->task_type : "";
    const char *kind = ev->kind ? ev->kind : "";
    if (ev->count < 0)
        return 0;
    report_labels_text(ev, labels, sizeof(labels));
    uint64_t h = report_fnv(report_fnv(report_fnv(STR_HASH_INIT, type), kind), labels);
    size_t mask = a->nslots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        if (a->slots[i]) {
            report_series_t *s = &a->series[a->slots[i] - 1];
            if (strcmp(s->task_type, type) == 0 && strcmp(s->kind, kind) == 0 &&
                strcmp(s->labels, labels) == 0) {
                s->count += ev->count;
                s->events++;
                return 0;
            }
            continue;
        }
        if (a->n == a->max) {
            a->overflow += ev->count;
            return 0;
        }
        if ((a->n & (a->n - 1)) == 0) { /* grow at powers of two, up to max */
            size_t cap = a->n ? a->n * 2 : 8;
            if (cap > a->max)
                cap = a->max;
            report_series_t *ns = realloc(a->series, cap * sizeof(*ns));
            if (!ns)
                return -1;
            a->series = ns;
        }
        report_series_t *s = &a->series[a->n];
        s->task_type = strdup(type);
        s->kind = strdup(kind);
        s->labels = strdup(labels);
        if (!s->task_type || !s->kind || !s->labels) {
            free(s->task_type);
            free(s->kind);
            free(s->labels);
            return -1;
        }
        s->count = ev->count;
        s->events = 1;
        a->slots[i] = ++a->n;
        return 0;
    }
}

static int report_series_cmp(const void *x, const void *y)
{
    const report_series_t *a = *(const report_series_t *const *)x;
    const report_series_t *b = *(const report_series_t *const *)y;
    int c = strcmp(a->task_type, b->task_type);
    if (!c)
        c = strcmp(a->kind, b->kind);
    return c ? c : strcmp(a->labels, b->labels);
}

size_t report_agg_series(report_agg_t *a, const report_series_t **out)
{
    const report_series_t **sorted;
    if (!a || a->n == 0) {
        *out = NULL;
        return 0;
    }
    sorted = realloc(a->sorted, a->n * sizeof(*sorted));
    if (!sorted) { /* unsorted then: still every figure */
        *out = a->series;
        return a->n;
    }
    a->sorted = sorted;
    for (size_t i = 0; i < a->n; i++)
        sorted[i] = &a->series[i];
    qsort(sorted, a->n, sizeof(*sorted), report_series_cmp);
    /* hand out an array of structs in sorted order: reorder a copy in place */
    report_series_t *tmp = malloc(a->n * sizeof(*tmp));
    if (!tmp) {
        *out = a->series;
        return a->n;
    }
    for (size_t i = 0; i < a->n; i++)
        tmp[i] = *sorted[i];
    memcpy(a->series, tmp, a->n * sizeof(*tmp));
    free(tmp);
    /* the hash slots point by index: rebuild them */
    memset(a->slots, 0, a->nslots * sizeof(*a->slots));
    for (size_t k = 0; k < a->n; k++) {
        report_series_t *s = &a->series[k];
        uint64_t h = report_fnv(
            report_fnv(report_fnv(14695981039346656037ull, s->task_type), s->kind), s->labels);
        size_t i = (size_t)h & (a->nslots - 1);
        while (a->slots[i])
            i = (i + 1) & (a->nslots - 1);
        a->slots[i] = k + 1;
    }
    *out = a->series;
    return a->n;
}

int64_t report_agg_overflow(const report_agg_t *a)
{
    return a ? a->overflow : 0;
}

const char *report_label(const report_series_t *s, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *p = s->labels;
    buf[0] = '\0';
    while (p && *p) {
        const char *end = strchr(p, ';');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        if (seg > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = seg - nl - 1;
            if (vl >= len)
                vl = len - 1;
            memcpy(buf, p + nl + 1, vl);
            buf[vl] = '\0';
            return buf;
        }
        p = end ? end + 1 : NULL;
    }
    return buf;
}
