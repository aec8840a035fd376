/* metrics.c: Prometheus registry with lock-free series updates and text-format rendering. */
#include "infra/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_SERIES_CAP0 8                /* first size of a family's series array */
#define METRICS_RENDER_CAP0 4096             /* first size of the render buffer */
#define METRICS_NUM_MAX 40                   /* a formatted number, NUL included */
#define METRICS_EXACT_INT 9007199254740992.0 /* 2^53: below, integral doubles are exact */

typedef enum {
    METRICS_TYPE_COUNTER,
    METRICS_TYPE_GAUGE,
    METRICS_TYPE_HISTOGRAM,
} metrics_type_t;

struct metrics_series_s {
    metrics_type_t type;
    const metrics_family_t *fam;
    char *label_values[METRICS_MAX_LABELS];
    _Atomic uint64_t value;     /* counter/gauge: the bits of a double */
    _Atomic uint64_t sum;       /* histogram: the bits of a double */
    size_t nbuckets;            /* histogram: nbounds + 1, the last one is +Inf */
    _Atomic uint64_t buckets[]; /* histogram: per-bucket counts, not cumulative */
};

struct metrics_family_s {
    metrics_registry_t *reg;
    metrics_family_t *next;
    metrics_type_t type;
    char *name;
    char *help; /* NULL: no HELP line */
    size_t nlabels;
    char *label_names[METRICS_MAX_LABELS];
    size_t nbounds;
    double bounds[METRICS_MAX_BUCKETS];
    char bound_text[METRICS_MAX_BUCKETS][METRICS_NUM_MAX]; /* le="..." values, made once */
    metrics_series_t **series;                             /* creation order */
    size_t nseries;
    size_t cap;
};

struct metrics_registry_s {
    pthread_mutex_t mu; /* families list, every family's series array */
    metrics_family_t *head;
    metrics_family_t *tail;
    size_t nfamilies;
};

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} metrics_buf_t;

const double metrics_latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,      2.5,   5,    10,    30,   60};
const size_t metrics_latency_nbounds =
    sizeof(metrics_latency_bounds) / sizeof(metrics_latency_bounds[0]);

static const char *const metrics_type_names[] = {
    [METRICS_TYPE_COUNTER] = "counter",
    [METRICS_TYPE_GAUGE] = "gauge",
    [METRICS_TYPE_HISTOGRAM] = "histogram",
};

/* ---- atomics on doubles ---- */

static uint64_t metrics_bits_from_double(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double metrics_double_from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static double metrics_atomic_load_double(const _Atomic uint64_t *p)
{
    /* C11 atomic_load takes a non-const pointer in older libcs' macros. */
    return metrics_double_from_bits(
        atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed));
}

static void metrics_atomic_store_double(_Atomic uint64_t *p, double d)
{
    atomic_store_explicit(p, metrics_bits_from_double(d), memory_order_relaxed);
}

static void metrics_atomic_add_double(_Atomic uint64_t *p, double delta)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    uint64_t next;
    do {
        next = metrics_bits_from_double(metrics_double_from_bits(old) + delta);
    } while (!atomic_compare_exchange_weak_explicit(p, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

/* ---- validation ---- */

static bool metrics_name_valid(const char *s, bool allow_colon)
{
    if (s == NULL || s[0] == '\0')
        return false;
    size_t n = strnlen(s, METRICS_MAX_NAME_LEN + 1);
    if (n > METRICS_MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool first = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                     (allow_colon && c == ':');
        bool digit = c >= '0' && c <= '9';
        if (!first && !(digit && i > 0))
            return false;
    }
    return true;
}

static bool metrics_labels_valid(metrics_type_t type, size_t nlabels,
                                 const char *const *label_names)
{
    if (nlabels > METRICS_MAX_LABELS)
        return false;
    if (nlabels > 0 && label_names == NULL)
        return false;
    for (size_t i = 0; i < nlabels; i++) {
        if (!metrics_name_valid(label_names[i], false))
            return false;
        if (strncmp(label_names[i], "__", 2) == 0)
            return false;
        if (type == METRICS_TYPE_HISTOGRAM && strcmp(label_names[i], "le") == 0)
            return false;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(label_names[i], label_names[j]) == 0)
                return false;
        }
    }
    return true;
}

static void metrics_format_double(double v, char out[METRICS_NUM_MAX]);

static bool metrics_bounds_valid(size_t nbounds, const double *bounds)
{
    if (nbounds > METRICS_MAX_BUCKETS)
        return false;
    if (nbounds > 0 && bounds == NULL)
        return false;
    for (size_t i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]))
            return false;
        if (i > 0 && !(bounds[i] > bounds[i - 1]))
            return false;
    }
    return true;
}

/* Same type, labels and bounds as an existing family (help is not compared). */
static bool metrics_family_matches(const metrics_family_t *fam, metrics_type_t type, size_t nlabels,
                                   const char *const *label_names, size_t nbounds,
                                   const double *bounds)
{
    if (fam->type != type || fam->nlabels != nlabels)
        return false;
    for (size_t i = 0; i < nlabels; i++) {
        if (strcmp(fam->label_names[i], label_names[i]) != 0)
            return false;
    }
    if (type != METRICS_TYPE_HISTOGRAM)
        return true;
    if (fam->nbounds != nbounds)
        return false;
    for (size_t i = 0; i < nbounds; i++) {
        if (fam->bounds[i] != bounds[i])
            return false;
    }
    return true;
}

/* ---- allocation ---- */

static void metrics_series_free(metrics_series_t *s, size_t nlabels)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < nlabels; i++)
        free(s->label_values[i]);
    free(s);
}

static metrics_series_t *metrics_series_alloc(const metrics_family_t *fam,
                                              const char *const *label_values)
{
    size_t nbuckets = fam->type == METRICS_TYPE_HISTOGRAM ? fam->nbounds + 1 : 0;
    metrics_series_t *s = calloc(1, sizeof(*s) + nbuckets * sizeof(s->buckets[0]));
    if (s == NULL)
        return NULL;
    s->type = fam->type;
    s->fam = fam;
    s->nbuckets = nbuckets;
    atomic_init(&s->value, metrics_bits_from_double(0.0));
    atomic_init(&s->sum, metrics_bits_from_double(0.0));
    for (size_t i = 0; i < nbuckets; i++)
        atomic_init(&s->buckets[i], 0);
    for (size_t i = 0; i < fam->nlabels; i++) {
        s->label_values[i] = strdup(label_values[i]);
        if (s->label_values[i] == NULL) {
            metrics_series_free(s, i);
            return NULL;
        }
    }
    return s;
}

static void metrics_family_free(metrics_family_t *fam)
{
    if (fam == NULL)
        return;
    for (size_t i = 0; i < fam->nseries; i++)
        metrics_series_free(fam->series[i], fam->nlabels);
    free(fam->series);
    for (size_t i = 0; i < fam->nlabels; i++)
        free(fam->label_names[i]);
    free(fam->help);
    free(fam->name);
    free(fam);
}

static metrics_family_t *metrics_family_alloc(metrics_registry_t *reg, metrics_type_t type,
                                              const char *name, const char *help, size_t nlabels,
                                              const char *const *label_names, size_t nbounds,
                                              const double *bounds)
{
    metrics_family_t *fam = calloc(1, sizeof(*fam));
    if (fam == NULL)
        return NULL;
    fam->reg = reg;
    fam->type = type;
    fam->name = strdup(name);
    if (fam->name == NULL)
        goto fail;
    if (help != NULL && help[0] != '\0') {
        fam->help = strdup(help);
        if (fam->help == NULL)
            goto fail;
    }
    for (size_t i = 0; i < nlabels; i++) {
        fam->label_names[i] = strdup(label_names[i]);
        if (fam->label_names[i] == NULL)
            goto fail;
        fam->nlabels = i + 1; /* what metrics_family_free() must release */
    }
    fam->nbounds = nbounds;
    if (nbounds > 0)
        memcpy(fam->bounds, bounds, nbounds * sizeof(bounds[0]));
    for (size_t i = 0; i < nbounds; i++)
        metrics_format_double(bounds[i], fam->bound_text[i]);
    return fam;
fail:
    metrics_family_free(fam);
    return NULL;
}

/* ---- registry ---- */

metrics_registry_t *metrics_registry_new(void)
{
    metrics_registry_t *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return NULL;
    if (pthread_mutex_init(&reg->mu, NULL) != 0) {
        free(reg);
        return NULL;
    }
    return reg;
}

void metrics_registry_destroy(metrics_registry_t *reg)
{
    if (reg == NULL)
        return;
    metrics_family_t *fam = reg->head;
    while (fam != NULL) {
        metrics_family_t *next = fam->next;
        metrics_family_free(fam);
        fam = next;
    }
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

static metrics_family_t *metrics_family_declare(metrics_registry_t *reg, metrics_type_t type,
                                                const char *name, const char *help, size_t nlabels,
                                                const char *const *label_names, size_t nbounds,
                                                const double *bounds)
{
    if (reg == NULL || !metrics_name_valid(name, true))
        return NULL;
    if (help != NULL && strnlen(help, METRICS_MAX_HELP_LEN + 1) > METRICS_MAX_HELP_LEN)
        return NULL;
    if (!metrics_labels_valid(type, nlabels, label_names))
        return NULL;
    if (type == METRICS_TYPE_HISTOGRAM && !metrics_bounds_valid(nbounds, bounds))
        return NULL;

    metrics_family_t *fam = NULL;
    pthread_mutex_lock(&reg->mu);
    for (metrics_family_t *f = reg->head; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            if (metrics_family_matches(f, type, nlabels, label_names, nbounds, bounds))
                fam = f;
            goto out;
        }
    }
    if (reg->nfamilies >= METRICS_MAX_FAMILIES)
        goto out;
    fam = metrics_family_alloc(reg, type, name, help, nlabels, label_names, nbounds, bounds);
    if (fam == NULL)
        goto out;
    if (reg->tail != NULL)
        reg->tail->next = fam;
    else
        reg->head = fam;
    reg->tail = fam;
    reg->nfamilies++;
out:
    pthread_mutex_unlock(&reg->mu);
    return fam;
}

metrics_family_t *metrics_counter_new(metrics_registry_t *reg, const char *name, const char *help,
                                      size_t nlabels, const char *const *label_names)
{
    return metrics_family_declare(reg, METRICS_TYPE_COUNTER, name, help, nlabels, label_names, 0,
                                  NULL);
}

metrics_family_t *metrics_gauge_new(metrics_registry_t *reg, const char *name, const char *help,
                                    size_t nlabels, const char *const *label_names)
{
    return metrics_family_declare(reg, METRICS_TYPE_GAUGE, name, help, nlabels, label_names, 0,
                                  NULL);
}

metrics_family_t *metrics_histogram_new(metrics_registry_t *reg, const char *name, const char *help,
                                        size_t nlabels, const char *const *label_names,
                                        size_t nbounds, const double *bounds)
{
    return metrics_family_declare(reg, METRICS_TYPE_HISTOGRAM, name, help, nlabels, label_names,
                                  nbounds, bounds);
}

/* ---- series lookup ---- */

static bool metrics_series_matches(const metrics_series_t *s, size_t nlabels,
                                   const char *const *label_values)
{
    for (size_t i = 0; i < nlabels; i++) {
        if (strcmp(s->label_values[i], label_values[i]) != 0)
            return false;
    }
    return true;
}

/* Makes room for one more series; the caller holds the registry lock. */
static bool metrics_family_grow(metrics_family_t *fam)
{
    if (fam->nseries < fam->cap)
        return true;
    size_t cap = fam->cap == 0 ? METRICS_SERIES_CAP0 : fam->cap * 2;
    if (cap > METRICS_MAX_SERIES)
        cap = METRICS_MAX_SERIES;
    metrics_series_t **series = realloc(fam->series, cap * sizeof(series[0]));
    if (series == NULL)
        return false;
    fam->series = series;
    fam->cap = cap;
    return true;
}

metrics_series_t *metrics_series_get(metrics_family_t *fam, const char *const *label_values)
{
    if (fam == NULL)
        return NULL;
    if (fam->nlabels > 0 && label_values == NULL)
        return NULL;
    for (size_t i = 0; i < fam->nlabels; i++) {
        if (label_values[i] == NULL ||
            strnlen(label_values[i], METRICS_MAX_LABEL_VALUE_LEN + 1) > METRICS_MAX_LABEL_VALUE_LEN)
            return NULL;
    }

    metrics_series_t *s = NULL;
    pthread_mutex_lock(&fam->reg->mu);
    for (size_t i = 0; i < fam->nseries; i++) {
        if (metrics_series_matches(fam->series[i], fam->nlabels, label_values)) {
            s = fam->series[i];
            goto out;
        }
    }
    if (fam->nseries >= METRICS_MAX_SERIES || !metrics_family_grow(fam))
        goto out;
    s = metrics_series_alloc(fam, label_values);
    if (s == NULL)
        goto out;
    fam->series[fam->nseries++] = s;
out:
    pthread_mutex_unlock(&fam->reg->mu);
    return s;
}

metrics_series_t *metrics_series_get0(metrics_family_t *fam)
{
    if (fam == NULL || fam->nlabels != 0)
        return NULL;
    return metrics_series_get(fam, NULL);
}

metrics_series_t *metrics_series_get1(metrics_family_t *fam, const char *value)
{
    if (fam == NULL || fam->nlabels != 1)
        return NULL;
    const char *values[1] = {value};
    return metrics_series_get(fam, values);
}

/* ---- updates ---- */

void metrics_counter_add(metrics_series_t *s, double delta)
{
    if (s == NULL || s->type != METRICS_TYPE_COUNTER || !(delta >= 0.0))
        return;
    metrics_atomic_add_double(&s->value, delta);
}

void metrics_gauge_set(metrics_series_t *s, double value)
{
    if (s == NULL || s->type != METRICS_TYPE_GAUGE)
        return;
    metrics_atomic_store_double(&s->value, value);
}

void metrics_gauge_add(metrics_series_t *s, double delta)
{
    if (s == NULL || s->type != METRICS_TYPE_GAUGE)
        return;
    metrics_atomic_add_double(&s->value, delta);
}

void metrics_histogram_observe(metrics_series_t *s, double value)
{
    if (s == NULL || s->type != METRICS_TYPE_HISTOGRAM || isnan(value))
        return;
    /* First bucket whose upper bound is >= value; nbounds is the +Inf bucket. */
    const double *bounds = s->fam->bounds;
    size_t lo = 0;
    size_t hi = s->nbuckets - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (value <= bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->buckets[lo], 1, memory_order_relaxed);
    metrics_atomic_add_double(&s->sum, value);
}

static uint64_t metrics_histogram_count(const metrics_series_t *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->nbuckets; i++)
        n += atomic_load_explicit((_Atomic uint64_t *)&s->buckets[i], memory_order_relaxed);
    return n;
}

double metrics_series_value(const metrics_series_t *s)
{
    if (s == NULL)
        return 0.0;
    if (s->type == METRICS_TYPE_HISTOGRAM)
        return (double)metrics_histogram_count(s);
    return metrics_atomic_load_double(&s->value);
}

/* ---- rendering ---- */

static void metrics_buf_append(metrics_buf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n >= METRICS_RENDER_MAX - b->len) { /* keeps room for the NUL */
        b->failed = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? METRICS_RENDER_CAP0 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > METRICS_RENDER_MAX)
            cap = METRICS_RENDER_MAX;
        char *data = realloc(b->data, cap);
        if (data == NULL) {
            b->failed = true;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void metrics_buf_puts(metrics_buf_t *b, const char *s)
{
    metrics_buf_append(b, s, strlen(s));
}

/* Escapes backslash and newline, and the double quote when quote is set. */
static void metrics_buf_put_escaped(metrics_buf_t *b, const char *s, bool quote)
{
    const char *run = s;
    for (const char *p = s; *p != '\0'; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (*p == '"' && quote)
            esc = "\\\"";
        if (esc == NULL)
            continue;
        metrics_buf_append(b, run, (size_t)(p - run));
        metrics_buf_append(b, esc, 2);
        run = p + 1;
    }
    metrics_buf_puts(b, run);
}

/* v in decimal; returns the length. Scrapes render every series: printf's
 * "%.0f" and "%llu" were most of a render's cost (callgrind). */
static size_t metrics_format_u64(uint64_t v, char out[METRICS_NUM_MAX])
{
    char rev[24];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
    return n;
}

/* Integral values as integers, others with the first of %.15g/%.16g/%.17g that reads back
 * exactly: "0.1", not %.17g's "0.10000000000000001" (le="0.1" must stay le="0.1"). */
static void metrics_format_double(double v, char out[METRICS_NUM_MAX])
{
    if (isnan(v)) {
        snprintf(out, METRICS_NUM_MAX, "NaN");
    } else if (isinf(v)) {
        snprintf(out, METRICS_NUM_MAX, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0.0) {
        snprintf(out, METRICS_NUM_MAX, "0"); /* also for -0.0 */
    } else if (v == trunc(v) && fabs(v) < METRICS_EXACT_INT) {
        out[0] = '-';
        metrics_format_u64((uint64_t)fabs(v), v < 0 ? out + 1 : out);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, METRICS_NUM_MAX, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
        /* The text format wants '.', whatever LC_NUMERIC says. */
        for (char *p = out; *p != '\0'; p++) {
            if (*p == ',')
                *p = '.';
        }
    }
}

static void metrics_buf_put_double(metrics_buf_t *b, double v)
{
    char num[METRICS_NUM_MAX];
    metrics_format_double(v, num);
    metrics_buf_puts(b, num);
}

static void metrics_buf_put_u64(metrics_buf_t *b, uint64_t v)
{
    char num[METRICS_NUM_MAX];
    metrics_buf_append(b, num, metrics_format_u64(v, num));
}

/* "{a="x",b="y"}" plus le="..." when le is not NULL; nothing without labels. */
static void metrics_buf_put_labels(metrics_buf_t *b, const metrics_family_t *fam,
                                   const metrics_series_t *s, const char *le)
{
    if (fam->nlabels == 0 && le == NULL)
        return;
    metrics_buf_puts(b, "{");
    for (size_t i = 0; i < fam->nlabels; i++) {
        if (i > 0)
            metrics_buf_puts(b, ",");
        metrics_buf_puts(b, fam->label_names[i]);
        metrics_buf_puts(b, "=\"");
        metrics_buf_put_escaped(b, s->label_values[i], true);
        metrics_buf_puts(b, "\"");
    }
    if (le != NULL) {
        if (fam->nlabels > 0)
            metrics_buf_puts(b, ",");
        metrics_buf_puts(b, "le=\"");
        metrics_buf_puts(b, le);
        metrics_buf_puts(b, "\"");
    }
    metrics_buf_puts(b, "}");
}

static void metrics_render_histogram(metrics_buf_t *b, const metrics_family_t *fam,
                                     const metrics_series_t *s)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i < s->nbuckets; i++) {
        cumulative +=
            atomic_load_explicit((_Atomic uint64_t *)&s->buckets[i], memory_order_relaxed);
        metrics_buf_puts(b, fam->name);
        metrics_buf_puts(b, "_bucket");
        metrics_buf_put_labels(b, fam, s, i < fam->nbounds ? fam->bound_text[i] : "+Inf");
        metrics_buf_puts(b, " ");
        metrics_buf_put_u64(b, cumulative);
        metrics_buf_puts(b, "\n");
    }
    metrics_buf_puts(b, fam->name);
    metrics_buf_puts(b, "_sum");
    metrics_buf_put_labels(b, fam, s, NULL);
    metrics_buf_puts(b, " ");
    metrics_buf_put_double(b, metrics_atomic_load_double(&s->sum));
    metrics_buf_puts(b, "\n");
    metrics_buf_puts(b, fam->name);
    metrics_buf_puts(b, "_count");
    metrics_buf_put_labels(b, fam, s, NULL);
    metrics_buf_puts(b, " ");
    metrics_buf_put_u64(b, cumulative); /* the +Inf bucket, so the two always agree */
    metrics_buf_puts(b, "\n");
}

static void metrics_render_family(metrics_buf_t *b, const metrics_family_t *fam)
{
    if (fam->nseries == 0)
        return;
    if (fam->help != NULL) {
        metrics_buf_puts(b, "# HELP ");
        metrics_buf_puts(b, fam->name);
        metrics_buf_puts(b, " ");
        metrics_buf_put_escaped(b, fam->help, false);
        metrics_buf_puts(b, "\n");
    }
    metrics_buf_puts(b, "# TYPE ");
    metrics_buf_puts(b, fam->name);
    metrics_buf_puts(b, " ");
    metrics_buf_puts(b, metrics_type_names[fam->type]);
    metrics_buf_puts(b, "\n");
    for (size_t i = 0; i < fam->nseries && !b->failed; i++) {
        const metrics_series_t *s = fam->series[i];
        if (fam->type == METRICS_TYPE_HISTOGRAM) {
            metrics_render_histogram(b, fam, s);
            continue;
        }
        metrics_buf_puts(b, fam->name);
        metrics_buf_put_labels(b, fam, s, NULL);
        metrics_buf_puts(b, " ");
        metrics_buf_put_double(b, metrics_atomic_load_double(&s->value));
        metrics_buf_puts(b, "\n");
    }
}

char *metrics_render(metrics_registry_t *reg, size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (reg == NULL)
        return NULL;
    metrics_buf_t b = {0};
    metrics_buf_append(&b, "", 0); /* an empty registry still renders "" */
    pthread_mutex_lock(&reg->mu);
    for (const metrics_family_t *fam = reg->head; fam != NULL && !b.failed; fam = fam->next)
        metrics_render_family(&b, fam);
    pthread_mutex_unlock(&reg->mu);
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.data;
}
