/* metrics_test.c: tests for infra/metrics, checking rendered text by parsing it back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/metrics.h"

/* ---- a strict parser for the Prometheus text format (version 0.0.4) ---- */

#define P_MAX_LABELS (METRICS_MAX_LABELS + 1) /* + le */

typedef struct {
    char *name;
    char *help; /* NULL: no HELP line */
    char *type; /* NULL: no TYPE line yet */
} pfamily_t;

typedef struct {
    char *name;
    size_t nlabels;
    char *lname[P_MAX_LABELS];
    char *lvalue[P_MAX_LABELS];
    double value;
    size_t fam; /* index in parsed_t.fams */
} psample_t;

typedef struct {
    pfamily_t *fams;
    size_t nfams;
    psample_t *samples;
    size_t nsamples;
    char error[256];
} parsed_t;

static void parsed_free(parsed_t *p)
{
    for (size_t i = 0; i < p->nfams; i++) {
        free(p->fams[i].name);
        free(p->fams[i].help);
        free(p->fams[i].type);
    }
    for (size_t i = 0; i < p->nsamples; i++) {
        free(p->samples[i].name);
        for (size_t j = 0; j < p->samples[i].nlabels; j++) {
            free(p->samples[i].lname[j]);
            free(p->samples[i].lvalue[j]);
        }
    }
    free(p->fams);
    free(p->samples);
    memset(p, 0, sizeof(*p));
}

static char *pstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static bool pis_name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':'))
        return true;
    return !first && c >= '0' && c <= '9';
}

/* Reads a name at *s; returns its length (0: none). */
static size_t pscan_name(const char *s, bool colon)
{
    size_t n = 0;
    while (pis_name_char(s[n], n == 0, colon))
        n++;
    return n;
}

/* Unescapes s[0..n): \\ and \n always, \" when quote. NULL on a bad escape. */
static char *punescape(const char *s, size_t n, bool quote)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            d[j++] = s[i];
            continue;
        }
        if (++i >= n)
            goto bad;
        if (s[i] == '\\')
            d[j++] = '\\';
        else if (s[i] == 'n')
            d[j++] = '\n';
        else if (s[i] == '"' && quote)
            d[j++] = '"';
        else
            goto bad;
    }
    d[j] = '\0';
    return d;
bad:
    free(d);
    return NULL;
}

static int pparse_value(const char *s, size_t n, double *v)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "+Inf") == 0) {
        *v = INFINITY;
        return 0;
    }
    if (strcmp(buf, "-Inf") == 0) {
        *v = -INFINITY;
        return 0;
    }
    if (strcmp(buf, "NaN") == 0) {
        *v = NAN;
        return 0;
    }
    for (size_t i = 0; i < n; i++) { /* no "inf", "nan", hex floats or blanks */
        if (strchr("0123456789+-.eE", buf[i]) == NULL)
            return -1;
    }
    char *end = NULL;
    *v = strtod(buf, &end);
    return *end == '\0' ? 0 : -1;
}

static pfamily_t *pfamily(parsed_t *p, const char *name, size_t n, bool create)
{
    for (size_t i = 0; i < p->nfams; i++) {
        if (strlen(p->fams[i].name) == n && strncmp(p->fams[i].name, name, n) == 0)
            return &p->fams[i];
    }
    if (!create)
        return NULL;
    p->fams = realloc(p->fams, (p->nfams + 1) * sizeof(p->fams[0]));
    assert_non_null(p->fams);
    pfamily_t *f = &p->fams[p->nfams++];
    memset(f, 0, sizeof(*f));
    f->name = pstrndup(name, n);
    return f;
}

/* "# HELP name text" or "# TYPE name type". */
static int pparse_comment(parsed_t *p, const char *line, size_t len, pfamily_t **cur)
{
    bool help = len > 7 && strncmp(line, "# HELP ", 7) == 0;
    bool type = len > 7 && strncmp(line, "# TYPE ", 7) == 0;
    if (!help && !type)
        return -1;
    const char *s = line + 7;
    size_t n = pscan_name(s, true);
    if (n == 0 || s[n] != ' ')
        return -1;
    pfamily_t *f = pfamily(p, s, n, true);
    const char *rest = s + n + 1;
    size_t restlen = len - (size_t)(rest - line);
    if (help) {
        if (f->help != NULL || f->type != NULL) /* once, and before TYPE */
            return -1;
        f->help = punescape(rest, restlen, false);
        if (f->help == NULL)
            return -1;
    } else {
        if (f->type != NULL)
            return -1;
        f->type = pstrndup(rest, restlen);
        if (strcmp(f->type, "counter") != 0 && strcmp(f->type, "gauge") != 0 &&
            strcmp(f->type, "histogram") != 0 && strcmp(f->type, "summary") != 0 &&
            strcmp(f->type, "untyped") != 0)
            return -1;
        *cur = f;
    }
    return 0;
}

/* Does sample name n belong to family f ("x" or, for histograms, x_bucket/_sum/_count)? */
static bool psample_in_family(const pfamily_t *f, const char *name)
{
    if (strcmp(name, f->name) == 0)
        return strcmp(f->type, "histogram") != 0;
    if (strcmp(f->type, "histogram") != 0)
        return false;
    size_t fl = strlen(f->name);
    if (strncmp(name, f->name, fl) != 0)
        return false;
    return strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
           strcmp(name + fl, "_count") == 0;
}

static bool psample_same_series(const psample_t *a, const psample_t *b)
{
    if (strcmp(a->name, b->name) != 0 || a->nlabels != b->nlabels)
        return false;
    for (size_t i = 0; i < a->nlabels; i++) {
        if (strcmp(a->lname[i], b->lname[i]) != 0 || strcmp(a->lvalue[i], b->lvalue[i]) != 0)
            return false;
    }
    return true;
}

/* name{l="v",...} value */
static int pparse_sample(parsed_t *p, const char *line, size_t len, const pfamily_t *cur)
{
    psample_t s;
    memset(&s, 0, sizeof(s));
    const char *q = line;
    const char *end = line + len;
    size_t n = pscan_name(q, true);
    if (n == 0 || cur == NULL)
        return -1;
    s.name = pstrndup(q, n);
    q += n;
    if (q < end && *q == '{') {
        q++;
        while (q < end && *q != '}') {
            if (s.nlabels > 0) {
                if (*q != ',')
                    goto bad;
                q++;
            }
            if (s.nlabels >= P_MAX_LABELS)
                goto bad;
            n = pscan_name(q, false);
            if (n == 0 || q + n + 2 > end || q[n] != '=' || q[n + 1] != '"')
                goto bad;
            s.lname[s.nlabels] = pstrndup(q, n);
            q += n + 2;
            const char *v = q;
            while (q < end && *q != '"') {
                if (*q == '\\')
                    q++;
                q++;
            }
            if (q >= end) {
                free(s.lname[s.nlabels]);
                goto bad;
            }
            s.lvalue[s.nlabels] = punescape(v, (size_t)(q - v), true);
            if (s.lvalue[s.nlabels] == NULL) {
                free(s.lname[s.nlabels]);
                goto bad;
            }
            for (size_t i = 0; i < s.nlabels; i++) {
                if (strcmp(s.lname[i], s.lname[s.nlabels]) == 0) {
                    s.nlabels++;
                    goto bad;
                }
            }
            s.nlabels++;
            q++; /* closing quote */
        }
        if (q >= end || s.nlabels == 0) /* "{}" is never rendered */
            goto bad;
        q++;
    }
    if (q >= end || *q != ' ')
        goto bad;
    q++;
    if (pparse_value(q, (size_t)(end - q), &s.value) != 0)
        goto bad;
    if (!psample_in_family(cur, s.name))
        goto bad;
    s.fam = (size_t)(cur - p->fams);
    for (size_t i = 0; i < p->nsamples; i++) {
        if (psample_same_series(&p->samples[i], &s))
            goto bad;
    }
    p->samples = realloc(p->samples, (p->nsamples + 1) * sizeof(p->samples[0]));
    assert_non_null(p->samples);
    p->samples[p->nsamples++] = s;
    return 0;
bad:
    free(s.name);
    for (size_t i = 0; i < s.nlabels; i++) {
        free(s.lname[i]);
        free(s.lvalue[i]);
    }
    return -1;
}

/* Parses text into p; 0, or -1 with p->error naming the bad line. */
static int parse_exposition(const char *text, size_t textlen, parsed_t *p)
{
    memset(p, 0, sizeof(*p));
    if (strlen(text) != textlen) {
        snprintf(p->error, sizeof(p->error), "length %zu != strlen %zu", textlen, strlen(text));
        return -1;
    }
    const pfamily_t *cur = NULL;
    size_t lineno = 0;
    const char *line = text;
    while (*line != '\0') {
        lineno++;
        const char *nl = strchr(line, '\n');
        if (nl == NULL) {
            snprintf(p->error, sizeof(p->error), "line %zu: no final newline", lineno);
            return -1;
        }
        size_t len = (size_t)(nl - line);
        int rc;
        if (len > 0 && line[0] == '#') {
            pfamily_t *f = NULL;
            rc = pparse_comment(p, line, len, &f);
            if (f != NULL)
                cur = f;
        } else {
            rc = pparse_sample(p, line, len, cur);
        }
        if (rc != 0) {
            snprintf(p->error, sizeof(p->error), "line %zu: bad line \"%.*s\"", lineno,
                     (int)(len > 150 ? 150 : len), line);
            return -1;
        }
        line = nl + 1;
    }
    return 0;
}

/* Renders reg and parses it; the test fails on malformed text. Returns the text. */
static char *render_parse(metrics_registry_t *reg, parsed_t *p)
{
    size_t len = 0;
    char *text = metrics_render(reg, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    if (parse_exposition(text, len, p) != 0) {
        print_error("%s\n--- rendered ---\n%s", p->error, text);
        parsed_free(p);
        free(text);
        fail();
    }
    return text;
}

/* The sample with this name and exactly these labels (pairs: name, value, ...). */
static const psample_t *find_sample(const parsed_t *p, const char *name, size_t npairs,
                                    const char *const *pairs)
{
    for (size_t i = 0; i < p->nsamples; i++) {
        const psample_t *s = &p->samples[i];
        if (strcmp(s->name, name) != 0 || s->nlabels != npairs)
            continue;
        size_t matched = 0;
        for (size_t k = 0; k < npairs; k++) {
            for (size_t j = 0; j < s->nlabels; j++) {
                if (strcmp(s->lname[j], pairs[2 * k]) == 0 &&
                    strcmp(s->lvalue[j], pairs[2 * k + 1]) == 0)
                    matched++;
            }
        }
        if (matched == npairs)
            return s;
    }
    return NULL;
}

static const pfamily_t *find_family(const parsed_t *p, const char *name)
{
    for (size_t i = 0; i < p->nfams; i++) {
        if (strcmp(p->fams[i].name, name) == 0)
            return &p->fams[i];
    }
    return NULL;
}

static double sample_value(const parsed_t *p, const char *name, size_t npairs,
                           const char *const *pairs)
{
    const psample_t *s = find_sample(p, name, npairs, pairs);
    if (s == NULL) {
        print_error("no sample %s with %zu labels\n", name, npairs);
        fail();
    }
    return s->value;
}

#define assert_dbl_equal(a, b)                                                                     \
    do {                                                                                           \
        double a_ = (a);                                                                           \
        double b_ = (b);                                                                           \
        if (!(a_ == b_)) {                                                                         \
            print_error("%s = %.17g, want %.17g\n", #a, a_, b_);                                   \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

#define L0 0, NULL
// clang-format off
#define L1(k, v) 1, (const char *const[]){k, v}
#define L2(k1, v1, k2, v2) 2, (const char *const[]){k1, v1, k2, v2}
// clang-format on

/* Checks a rendered histogram series: labels (npairs/pairs) plus le, cumulative buckets
 * matching per-bucket counts want[0..nbounds] (the last is +Inf), _sum and _count. */
static void check_histogram(const parsed_t *p, const char *name, size_t npairs,
                            const char *const *pairs, size_t nbounds, const char *const *les,
                            const uint64_t *want, double want_sum)
{
    char bucket[300];
    char sum[300];
    char count[300];
    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    snprintf(sum, sizeof(sum), "%s_sum", name);
    snprintf(count, sizeof(count), "%s_count", name);
    const char *lp[2 * P_MAX_LABELS];
    assert_true(npairs < P_MAX_LABELS);
    for (size_t i = 0; i < 2 * npairs; i++)
        lp[i] = pairs[i];
    lp[2 * npairs] = "le";

    uint64_t cumulative = 0;
    double prev = -1;
    for (size_t i = 0; i <= nbounds; i++) {
        lp[2 * npairs + 1] = i < nbounds ? les[i] : "+Inf";
        const psample_t *s = find_sample(p, bucket, npairs + 1, lp);
        if (s == NULL) {
            print_error("no %s bucket le=\"%s\"\n", bucket, lp[2 * npairs + 1]);
            fail();
        }
        cumulative += want[i];
        assert_dbl_equal(s->value, (double)cumulative);
        assert_true(s->value >= prev);
        prev = s->value;
    }
    assert_dbl_equal(sample_value(p, sum, npairs, pairs), want_sum);
    assert_dbl_equal(sample_value(p, count, npairs, pairs), (double)cumulative);
}

/* ---- tests ---- */

static void test_parser_rejects_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "x 1\n",                              /* no TYPE */
        "# TYPE x counter\nx 1",              /* no final newline */
        "# TYPE x counter\nx{a=\"1\" 1\n",    /* unclosed labels */
        "# TYPE x counter\nx{a=\"\\q\"} 1\n", /* bad escape */
        "# TYPE x counter\nx one\n",          /* bad value */
        "# TYPE x counter\ny 1\n",            /* sample outside its family */
        "# TYPE x counter\nx 1\nx 2\n",       /* duplicate series */
        "# TYPE x counter\n# HELP x late\n",  /* HELP after TYPE */
        "# TYPE x widget\n",                  /* unknown type */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parsed_t p;
        if (parse_exposition(bad[i], strlen(bad[i]), &p) == 0) {
            print_error("parsed: %s\n", bad[i]);
            fail();
        }
        parsed_free(&p);
    }
    parsed_t p;
    const char *good = "# HELP x a \\\\ b\\nc\n# TYPE x counter\nx{a=\"q\\\"\"} +Inf\n";
    assert_int_equal(parse_exposition(good, strlen(good), &p), 0);
    assert_string_equal(find_family(&p, "x")->help, "a \\ b\nc");
    assert_true(isinf(sample_value(&p, "x", L1("a", "q\""))));
    parsed_free(&p);
}

static void test_null_safety(void **state)
{
    (void)state;
    metrics_registry_destroy(NULL);
    metrics_counter_add(NULL, 1);
    metrics_gauge_set(NULL, 1);
    metrics_gauge_add(NULL, 1);
    metrics_histogram_observe(NULL, 1);
    assert_dbl_equal(metrics_series_value(NULL), 0.0);
    size_t len = 99;
    assert_null(metrics_render(NULL, &len));
    assert_int_equal(len, 0);
    assert_null(metrics_series_get(NULL, NULL));
    assert_null(metrics_series_get0(NULL));
    assert_null(metrics_series_get1(NULL, "x"));
    assert_null(metrics_counter_new(NULL, "x", "h", 0, NULL));

    metrics_registry_t *reg = metrics_registry_new();
    assert_non_null(reg);
    char *text = metrics_render(reg, &len);
    assert_non_null(text);
    assert_string_equal(text, "");
    assert_int_equal(len, 0);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_counter_no_labels(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    metrics_family_t *fam = metrics_counter_new(reg, "im_jobs_total", "Jobs done.", 0, NULL);
    assert_non_null(fam);
    metrics_series_t *s = metrics_series_get0(fam);
    assert_non_null(s);
    assert_ptr_equal(metrics_series_get0(fam), s);
    assert_ptr_equal(metrics_series_get(fam, NULL), s);
    assert_null(metrics_series_get1(fam, "x")); /* count mismatch */

    metrics_counter_add(s, 1);
    metrics_counter_add(s, 2.5);
    metrics_counter_add(s, -5);  /* ignored */
    metrics_counter_add(s, NAN); /* ignored */
    metrics_gauge_set(s, 100);   /* wrong kind: ignored */
    metrics_gauge_add(s, 100);
    metrics_histogram_observe(s, 100);
    assert_dbl_equal(metrics_series_value(s), 3.5);

    parsed_t p;
    char *text = render_parse(reg, &p);
    assert_int_equal(p.nfams, 1);
    assert_string_equal(p.fams[0].name, "im_jobs_total");
    assert_string_equal(p.fams[0].help, "Jobs done.");
    assert_string_equal(p.fams[0].type, "counter");
    assert_int_equal(p.nsamples, 1);
    assert_dbl_equal(sample_value(&p, "im_jobs_total", L0), 3.5);
    assert_string_equal(text, "# HELP im_jobs_total Jobs done.\n"
                              "# TYPE im_jobs_total counter\n"
                              "im_jobs_total 3.5\n");
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_labels_0_1_2(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    const char *const l2[] = {"method", "code"};
    const char *const l1[] = {"queue"};
    metrics_family_t *req = metrics_counter_new(reg, "im_http_requests_total", "Requests.", 2, l2);
    metrics_family_t *depth = metrics_gauge_new(reg, "im_queue_depth", "Depth.", 1, l1);
    metrics_family_t *up = metrics_gauge_new(reg, "im_up", NULL, 0, NULL);
    assert_non_null(req);
    assert_non_null(depth);
    assert_non_null(up);

    metrics_series_t *get200 = metrics_series_get(req, (const char *const[]){"GET", "200"});
    metrics_series_t *get500 = metrics_series_get(req, (const char *const[]){"GET", "500"});
    metrics_series_t *post200 = metrics_series_get(req, (const char *const[]){"POST", "200"});
    assert_non_null(get200);
    assert_non_null(get500);
    assert_non_null(post200);
    assert_ptr_not_equal(get200, get500);
    assert_ptr_equal(metrics_series_get(req, (const char *const[]){"GET", "200"}), get200);
    assert_null(metrics_series_get(req, (const char *const[]){"GET", NULL}));
    assert_null(metrics_series_get(req, NULL));
    assert_null(metrics_series_get0(req));
    assert_null(metrics_series_get1(req, "GET"));
    metrics_counter_add(get200, 7);
    metrics_counter_add(get500, 1);
    metrics_counter_add(post200, 2);

    metrics_series_t *qa = metrics_series_get1(depth, "a");
    metrics_series_t *qb = metrics_series_get1(depth, "b");
    assert_null(metrics_series_get1(depth, NULL));
    assert_null(metrics_series_get0(depth));
    metrics_gauge_set(qa, 10);
    metrics_gauge_add(qa, -4);
    metrics_gauge_set(qb, -2);
    metrics_gauge_set(metrics_series_get0(up), 1);

    parsed_t p;
    char *text = render_parse(reg, &p);
    assert_int_equal(p.nfams, 3);
    assert_string_equal(p.fams[0].name, "im_http_requests_total");
    assert_string_equal(p.fams[1].name, "im_queue_depth");
    assert_string_equal(p.fams[1].type, "gauge");
    assert_string_equal(p.fams[2].name, "im_up");
    assert_null(p.fams[2].help); /* no help, no HELP line */
    assert_int_equal(p.nsamples, 6);
    assert_dbl_equal(sample_value(&p, "im_http_requests_total", L2("method", "GET", "code", "200")),
                     7);
    assert_dbl_equal(sample_value(&p, "im_http_requests_total", L2("method", "GET", "code", "500")),
                     1);
    assert_dbl_equal(
        sample_value(&p, "im_http_requests_total", L2("method", "POST", "code", "200")), 2);
    assert_null(find_sample(&p, "im_http_requests_total", L2("method", "POST", "code", "500")));
    assert_dbl_equal(sample_value(&p, "im_queue_depth", L1("queue", "a")), 6);
    assert_dbl_equal(sample_value(&p, "im_queue_depth", L1("queue", "b")), -2);
    assert_dbl_equal(sample_value(&p, "im_up", L0), 1);
    /* Label names in declaration order, series in creation order. */
    assert_string_equal(p.samples[0].lname[0], "method");
    assert_string_equal(p.samples[0].lname[1], "code");
    assert_string_equal(p.samples[1].lvalue[1], "500");
    assert_string_equal(p.samples[2].lvalue[0], "POST");
    assert_non_null(strstr(text, "im_http_requests_total{method=\"GET\",code=\"200\"} 7\n"));
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_number_format(void **state)
{
    (void)state;
    static const struct {
        const char *label;
        double v;
        const char *text;
    } cases[] = {
        {"int", 42, "42"},
        {"neg", -3, "-3"},
        {"zero", 0, "0"},
        {"negzero", -0.0, "0"},
        {"tenth", 0.1, "0.1"},
        {"third", 1.0 / 3.0, "0.3333333333333333"},
        {"big", 1e300, "1e+300"},
        {"huge_int", 9007199254740993.0 * 4, "3.602879701896397e+16"},
        {"exact_int", 1e15, "1000000000000000"},
        {"tiny", 5e-324, "4.94065645841247e-324"},
        {"pinf", INFINITY, "+Inf"},
        {"ninf", -INFINITY, "-Inf"},
        {"nan", NAN, "NaN"},
    };
    metrics_registry_t *reg = metrics_registry_new();
    const char *const l1[] = {"case"};
    metrics_family_t *g = metrics_gauge_new(reg, "num", "Numbers.", 1, l1);
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++)
        metrics_gauge_set(metrics_series_get1(g, cases[i].label), cases[i].v);

    parsed_t p;
    char *text = render_parse(reg, &p);
    for (size_t i = 0; i < n; i++) {
        char line[128];
        snprintf(line, sizeof(line), "num{case=\"%s\"} %s\n", cases[i].label, cases[i].text);
        if (strstr(text, line) == NULL) {
            print_error("missing %s--- rendered ---\n%s", line, text);
            fail();
        }
        double v = sample_value(&p, "num", L1("case", cases[i].label));
        if (isnan(cases[i].v))
            assert_true(isnan(v));
        else
            assert_dbl_equal(v, cases[i].v); /* reads back exactly */
    }
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_escaping(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    const char *const l2[] = {"path", "plain"};
    const char *help = "first line\nsecond \\ line with \"quotes\"";
    metrics_family_t *fam = metrics_counter_new(reg, "esc_total", help, 2, l2);
    const char *weird = "a\\b\"c\nd";
    metrics_counter_add(metrics_series_get(fam, (const char *const[]){weird, "x"}), 1);
    metrics_counter_add(metrics_series_get(fam, (const char *const[]){"", "\\"}), 2);
    metrics_counter_add(metrics_series_get(fam, (const char *const[]){"\n\n", "\"\""}), 3);

    parsed_t p;
    char *text = render_parse(reg, &p);
    assert_non_null(
        strstr(text, "# HELP esc_total first line\\nsecond \\\\ line with \"quotes\"\n"));
    assert_non_null(strstr(text, "esc_total{path=\"a\\\\b\\\"c\\nd\",plain=\"x\"} 1\n"));
    assert_string_equal(find_family(&p, "esc_total")->help, help);
    assert_dbl_equal(sample_value(&p, "esc_total", L2("path", weird, "plain", "x")), 1);
    assert_dbl_equal(sample_value(&p, "esc_total", L2("path", "", "plain", "\\")), 2);
    assert_dbl_equal(sample_value(&p, "esc_total", L2("path", "\n\n", "plain", "\"\"")), 3);
    /* Every sample is on one line despite the newlines in values. */
    assert_int_equal(p.nsamples, 3);
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_histogram(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    const double bounds[] = {0.1, 0.5, 1};
    const char *const les[] = {"0.1", "0.5", "1"};
    const char *const l2[] = {"op", "shard"};
    metrics_family_t *h0 =
        metrics_histogram_new(reg, "lat_seconds", "Latency.", 0, NULL, 3, bounds);
    metrics_family_t *h2 = metrics_histogram_new(reg, "op_seconds", "By op.", 2, l2, 3, bounds);
    assert_non_null(h0);
    assert_non_null(h2);

    metrics_series_t *s = metrics_series_get0(h0);
    metrics_histogram_observe(s, 0.05);
    metrics_histogram_observe(s, 0.1); /* le is inclusive */
    metrics_histogram_observe(s, 0.3);
    metrics_histogram_observe(s, 1);
    metrics_histogram_observe(s, 7);
    metrics_histogram_observe(s, -1);  /* below every bound: first bucket */
    metrics_histogram_observe(s, NAN); /* ignored */
    metrics_histogram_observe(s, INFINITY);
    metrics_counter_add(s, 1); /* wrong kind: ignored */
    assert_dbl_equal(metrics_series_value(s), 7);

    metrics_series_t *r = metrics_series_get(h2, (const char *const[]){"read", "1"});
    metrics_series_t *w = metrics_series_get(h2, (const char *const[]){"write", "1"});
    metrics_histogram_observe(r, 0.25);
    metrics_histogram_observe(r, 0.75);
    metrics_histogram_observe(w, 2);

    parsed_t p;
    char *text = render_parse(reg, &p);
    assert_string_equal(find_family(&p, "lat_seconds")->type, "histogram");
    check_histogram(&p, "lat_seconds", L0, 3, les, (const uint64_t[]){3, 1, 1, 2}, INFINITY);
    check_histogram(&p, "op_seconds", L2("op", "read", "shard", "1"), 3, les,
                    (const uint64_t[]){0, 1, 1, 0}, 1.0);
    check_histogram(&p, "op_seconds", L2("op", "write", "shard", "1"), 3, les,
                    (const uint64_t[]){0, 0, 0, 1}, 2.0);
    /* 3 series x (4 buckets + sum + count) */
    assert_int_equal(p.nsamples, 18);
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"+Inf\"} 7\n"));
    assert_non_null(strstr(text, "op_seconds_bucket{op=\"read\",shard=\"1\",le=\"0.5\"} 1\n"));
    assert_non_null(strstr(text, "lat_seconds_count 7\n"));
    assert_non_null(strstr(text, "lat_seconds_sum +Inf\n"));
    parsed_free(&p);
    free(text);

    /* No bounds at all: only the +Inf bucket. */
    metrics_family_t *hn = metrics_histogram_new(reg, "nob", NULL, 0, NULL, 0, NULL);
    assert_non_null(hn);
    metrics_histogram_observe(metrics_series_get0(hn), 3.5);
    text = render_parse(reg, &p);
    check_histogram(&p, "nob", L0, 0, NULL, (const uint64_t[]){1}, 3.5);
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_latency_bounds(void **state)
{
    (void)state;
    static const char *const les[] = {"0.001", "0.0025", "0.005", "0.01", "0.025",
                                      "0.05",  "0.1",    "0.25",  "0.5",  "1",
                                      "2.5",   "5",      "10",    "30",   "60"};
    assert_int_equal(metrics_latency_nbounds, 15);
    assert_dbl_equal(metrics_latency_bounds[0], 0.001);
    assert_dbl_equal(metrics_latency_bounds[14], 60);

    metrics_registry_t *reg = metrics_registry_new();
    metrics_family_t *h = metrics_histogram_new(reg, "rpc_seconds", "RPC.", 0, NULL,
                                                metrics_latency_nbounds, metrics_latency_bounds);
    assert_non_null(h);
    metrics_series_t *s = metrics_series_get0(h);
    uint64_t want[16] = {0};
    double sum = 0;
    /* One observation exactly on each bound, one above the last. */
    for (size_t i = 0; i < metrics_latency_nbounds; i++) {
        metrics_histogram_observe(s, metrics_latency_bounds[i]);
        want[i]++;
        sum += metrics_latency_bounds[i];
    }
    metrics_histogram_observe(s, 61);
    want[15]++;
    sum += 61;

    parsed_t p;
    char *text = render_parse(reg, &p);
    check_histogram(&p, "rpc_seconds", L0, metrics_latency_nbounds, les, want, sum);
    /* le values rendered in order. */
    size_t k = 0;
    for (size_t i = 0; i < p.nsamples; i++) {
        if (strcmp(p.samples[i].name, "rpc_seconds_bucket") != 0)
            continue;
        assert_string_equal(p.samples[i].lvalue[0], k < 15 ? les[k] : "+Inf");
        k++;
    }
    assert_int_equal(k, 16);
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_redeclare(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    const char *const ab[] = {"a", "b"};
    const char *const ba[] = {"b", "a"};
    const char *const ac[] = {"a", "c"};
    const double b1[] = {1, 2};
    const double b2[] = {1, 3};

    metrics_family_t *c = metrics_counter_new(reg, "c_total", "First help.", 2, ab);
    assert_non_null(c);
    assert_ptr_equal(metrics_counter_new(reg, "c_total", "First help.", 2, ab), c);
    assert_ptr_equal(metrics_counter_new(reg, "c_total", "Other help.", 2, ab), c);
    assert_null(metrics_gauge_new(reg, "c_total", "First help.", 2, ab));
    assert_null(metrics_counter_new(reg, "c_total", "First help.", 2, ba));
    assert_null(metrics_counter_new(reg, "c_total", "First help.", 2, ac));
    assert_null(metrics_counter_new(reg, "c_total", "First help.", 1, ab));
    assert_null(metrics_counter_new(reg, "c_total", "First help.", 0, NULL));
    assert_null(metrics_histogram_new(reg, "c_total", "First help.", 2, ab, 2, b1));

    metrics_family_t *h = metrics_histogram_new(reg, "h", "H.", 0, NULL, 2, b1);
    assert_non_null(h);
    assert_ptr_equal(metrics_histogram_new(reg, "h", "H.", 0, NULL, 2, b1), h);
    assert_null(metrics_histogram_new(reg, "h", "H.", 0, NULL, 2, b2));
    assert_null(metrics_histogram_new(reg, "h", "H.", 0, NULL, 1, b1));
    assert_null(metrics_counter_new(reg, "h", "H.", 0, NULL));

    /* Series survive a redeclaration: it is the same family. */
    metrics_series_t *s = metrics_series_get(c, (const char *const[]){"1", "2"});
    metrics_counter_add(s, 5);
    metrics_family_t *again = metrics_counter_new(reg, "c_total", NULL, 2, ab);
    assert_ptr_equal(metrics_series_get(again, (const char *const[]){"1", "2"}), s);

    parsed_t p;
    char *text = render_parse(reg, &p);
    assert_int_equal(p.nfams, 1); /* h has no series: skipped */
    assert_string_equal(p.fams[0].help, "First help.");
    assert_dbl_equal(sample_value(&p, "c_total", L2("a", "1", "b", "2")), 5);
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_invalid_names(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    static const char *const bad_names[] = {"", "1abc", "a-b", "a b", "a.b", "é", "a\n", "a{"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        assert_null(metrics_counter_new(reg, bad_names[i], "h", 0, NULL));
        assert_null(metrics_gauge_new(reg, bad_names[i], "h", 0, NULL));
        assert_null(metrics_histogram_new(reg, bad_names[i], "h", 0, NULL, 0, NULL));
    }
    assert_null(metrics_counter_new(reg, NULL, "h", 0, NULL));
    assert_non_null(metrics_counter_new(reg, "ns:sub_total", "colons ok", 0, NULL));
    assert_non_null(metrics_counter_new(reg, "_x9", "leading underscore ok", 0, NULL));

    static const char *const bad_labels[] = {"", "1a", "a:b", "a-b", "__reserved", "a b"};
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
        const char *const ln[] = {bad_labels[i]};
        assert_null(metrics_counter_new(reg, "lbl_total", "h", 1, ln));
    }
    const char *const nul[] = {NULL};
    assert_null(metrics_counter_new(reg, "lbl_total", "h", 1, nul));
    assert_null(metrics_counter_new(reg, "lbl_total", "h", 1, NULL));
    const char *const dup[] = {"a", "a"};
    assert_null(metrics_counter_new(reg, "lbl_total", "h", 2, dup));
    const char *const five[] = {"a", "b", "c", "d", "e"};
    assert_null(metrics_counter_new(reg, "lbl_total", "h", 5, five));
    assert_non_null(metrics_counter_new(reg, "lbl4_total", "h", 4, five));
    const char *const le[] = {"le"};
    assert_null(metrics_histogram_new(reg, "hle", "h", 1, le, 0, NULL));
    assert_non_null(metrics_counter_new(reg, "cle_total", "le is fine off histograms", 1, le));

    const double dec[] = {1, 0.5};
    const double eq[] = {1, 1};
    const double nan[] = {NAN};
    const double inf[] = {1, INFINITY};
    double many[METRICS_MAX_BUCKETS + 1];
    for (size_t i = 0; i < METRICS_MAX_BUCKETS + 1; i++)
        many[i] = (double)i;
    assert_null(metrics_histogram_new(reg, "hb", "h", 0, NULL, 2, dec));
    assert_null(metrics_histogram_new(reg, "hb", "h", 0, NULL, 2, eq));
    assert_null(metrics_histogram_new(reg, "hb", "h", 0, NULL, 1, nan));
    assert_null(metrics_histogram_new(reg, "hb", "h", 0, NULL, 2, inf));
    assert_null(metrics_histogram_new(reg, "hb", "h", 0, NULL, 1, NULL));
    assert_null(metrics_histogram_new(reg, "hb", "h", 0, NULL, METRICS_MAX_BUCKETS + 1, many));
    assert_non_null(metrics_histogram_new(reg, "hb", "h", 0, NULL, METRICS_MAX_BUCKETS, many));

    /* Length limits. */
    char longname[METRICS_MAX_NAME_LEN + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_null(metrics_counter_new(reg, longname, "h", 0, NULL));
    longname[METRICS_MAX_NAME_LEN] = '\0';
    assert_non_null(metrics_counter_new(reg, longname, "h", 0, NULL));
    char *longhelp = malloc(METRICS_MAX_HELP_LEN + 2);
    assert_non_null(longhelp);
    memset(longhelp, 'h', METRICS_MAX_HELP_LEN + 1);
    longhelp[METRICS_MAX_HELP_LEN + 1] = '\0';
    assert_null(metrics_counter_new(reg, "helpy_total", longhelp, 0, NULL));
    free(longhelp);
    char *longval = malloc(METRICS_MAX_LABEL_VALUE_LEN + 2);
    assert_non_null(longval);
    memset(longval, 'v', METRICS_MAX_LABEL_VALUE_LEN + 1);
    longval[METRICS_MAX_LABEL_VALUE_LEN + 1] = '\0';
    metrics_family_t *cle = metrics_counter_new(reg, "cle_total", NULL, 1, le);
    assert_null(metrics_series_get1(cle, longval));
    longval[METRICS_MAX_LABEL_VALUE_LEN] = '\0';
    assert_non_null(metrics_series_get1(cle, longval));
    free(longval);

    /* Whatever was accepted still renders as valid text. */
    parsed_t p;
    char *text = render_parse(reg, &p);
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

static void test_limits(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    const char *const l1[] = {"id"};
    metrics_family_t *fam = metrics_gauge_new(reg, "wide", "Many series.", 1, l1);
    char id[32];
    for (int i = 0; i < METRICS_MAX_SERIES; i++) {
        snprintf(id, sizeof(id), "%d", i);
        metrics_series_t *s = metrics_series_get1(fam, id);
        assert_non_null(s);
        metrics_gauge_set(s, i);
    }
    assert_null(metrics_series_get1(fam, "one too many"));
    metrics_series_t *s0 = metrics_series_get1(fam, "0");
    assert_non_null(s0); /* existing series are still found */
    metrics_series_t *s4095 = metrics_series_get1(fam, "4095");
    assert_non_null(s4095);
    assert_dbl_equal(metrics_series_value(s4095), 4095);

    parsed_t p;
    char *text = render_parse(reg, &p);
    assert_int_equal(p.nsamples, METRICS_MAX_SERIES);
    for (size_t i = 0; i < p.nsamples; i += 511) {
        snprintf(id, sizeof(id), "%zu", i);
        assert_string_equal(p.samples[i].lvalue[0], id); /* creation order */
        assert_dbl_equal(p.samples[i].value, (double)i);
    }
    parsed_free(&p);
    free(text);

    char name[32];
    for (int i = 1; i < METRICS_MAX_FAMILIES; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        assert_non_null(metrics_counter_new(reg, name, NULL, 0, NULL));
    }
    assert_null(metrics_counter_new(reg, "one_too_many", NULL, 0, NULL));
    assert_non_null(metrics_counter_new(reg, "f1", NULL, 0, NULL)); /* redeclare still works */
    metrics_registry_destroy(reg);
}

static void test_render_cap(void **state)
{
    (void)state;
    /* 4 labels x 1 KiB values x 4096 series is ~16.8 MiB: past METRICS_RENDER_MAX. */
    metrics_registry_t *reg = metrics_registry_new();
    const char *const l4[] = {"a", "b", "c", "d"};
    metrics_family_t *fam = metrics_counter_new(reg, "big_total", NULL, 4, l4);
    char *v = malloc(METRICS_MAX_LABEL_VALUE_LEN + 1);
    assert_non_null(v);
    memset(v, 'x', METRICS_MAX_LABEL_VALUE_LEN);
    v[METRICS_MAX_LABEL_VALUE_LEN] = '\0';
    for (int i = 0; i < METRICS_MAX_SERIES; i++) {
        snprintf(v, 16, "%08d", i);
        v[8] = 'x';
        assert_non_null(metrics_series_get(fam, (const char *const[]){v, v, v, v}));
    }
    free(v);
    size_t len = 1;
    assert_null(metrics_render(reg, &len));
    assert_int_equal(len, 0);
    metrics_registry_destroy(reg);
}

/* ---- threads ---- */

#define T_THREADS 8
#define T_ITERS 100000

typedef struct {
    metrics_family_t *per_thread; /* counter, label "thread" */
    metrics_series_t *shared_counter;
    metrics_series_t *shared_gauge;
    metrics_series_t *shared_hist;
    metrics_registry_t *reg;
    int index;
    _Atomic int *stop_render;
    _Atomic int *lookup_errors;
} t_arg_t;

static void *t_worker(void *p)
{
    t_arg_t *a = p;
    char label[16];
    snprintf(label, sizeof(label), "t%d", a->index);
    metrics_series_t *mine = NULL;
    for (int i = 0; i < T_ITERS; i++) {
        /* Look up once in a while (locked), racing with creation in the other threads and
         * with the renderer; update lock-free in between. */
        if (i % 1000 == 0) {
            metrics_series_t *again = metrics_series_get1(a->per_thread, label);
            if (mine != NULL && again != mine)
                atomic_fetch_add(a->lookup_errors, 1);
            mine = again;
        }
        metrics_counter_add(mine, 1);
        metrics_counter_add(a->shared_counter, 1);
        /* +1 per pair of iterations, 0 / 0.5 / 1 in turn for the histogram. */
        metrics_gauge_add(a->shared_gauge, (i % 2) ? 1.5 : -0.5);
        metrics_histogram_observe(a->shared_hist, (double)(i % 3) * 0.5);
    }
    return NULL;
}

static void *t_renderer(void *p)
{
    t_arg_t *a = p;
    while (!atomic_load(a->stop_render)) {
        char *text = metrics_render(a->reg, NULL);
        free(text);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    metrics_registry_t *reg = metrics_registry_new();
    const char *const lt[] = {"thread"};
    const double bounds[] = {0.25, 0.75};
    metrics_family_t *per = metrics_counter_new(reg, "per_thread_total", "Per.", 1, lt);
    metrics_family_t *c = metrics_counter_new(reg, "shared_total", "Shared.", 0, NULL);
    metrics_family_t *g = metrics_gauge_new(reg, "shared_gauge", "Gauge.", 0, NULL);
    metrics_family_t *h = metrics_histogram_new(reg, "shared_hist", "Hist.", 0, NULL, 2, bounds);
    _Atomic int stop = 0;
    _Atomic int lookup_errors = 0;

    t_arg_t args[T_THREADS + 1];
    pthread_t tids[T_THREADS + 1];
    for (int i = 0; i <= T_THREADS; i++) {
        args[i] = (t_arg_t){.per_thread = per,
                            .shared_counter = metrics_series_get0(c),
                            .shared_gauge = metrics_series_get0(g),
                            .shared_hist = metrics_series_get0(h),
                            .reg = reg,
                            .index = i,
                            .stop_render = &stop,
                            .lookup_errors = &lookup_errors};
    }
    assert_int_equal(pthread_create(&tids[T_THREADS], NULL, t_renderer, &args[T_THREADS]), 0);
    for (int i = 0; i < T_THREADS; i++)
        assert_int_equal(pthread_create(&tids[i], NULL, t_worker, &args[i]), 0);
    for (int i = 0; i < T_THREADS; i++)
        assert_int_equal(pthread_join(tids[i], NULL), 0);
    atomic_store(&stop, 1);
    assert_int_equal(pthread_join(tids[T_THREADS], NULL), 0);

    assert_int_equal(atomic_load(&lookup_errors), 0);
    const double total = (double)T_THREADS * T_ITERS;
    assert_dbl_equal(metrics_series_value(metrics_series_get0(c)), total);
    assert_dbl_equal(metrics_series_value(metrics_series_get0(g)), total / 2);
    assert_dbl_equal(metrics_series_value(metrics_series_get0(h)), total);

    parsed_t p;
    char *text = render_parse(reg, &p);
    assert_dbl_equal(sample_value(&p, "shared_total", L0), total);
    assert_dbl_equal(sample_value(&p, "shared_gauge", L0), total / 2);
    for (int i = 0; i < T_THREADS; i++) {
        char label[16];
        snprintf(label, sizeof(label), "t%d", i);
        assert_dbl_equal(sample_value(&p, "per_thread_total", L1("thread", label)), T_ITERS);
    }
    /* Per thread: i%3 == 0 -> 0, 1 -> 0.5, 2 -> 1.0 over 100000 iterations. */
    uint64_t n0 = (T_ITERS + 2) / 3, n1 = (T_ITERS + 1) / 3, n2 = T_ITERS / 3;
    const char *const les[] = {"0.25", "0.75"};
    check_histogram(&p, "shared_hist", L0, 2, les,
                    (const uint64_t[]){n0 * T_THREADS, n1 * T_THREADS, n2 * T_THREADS},
                    T_THREADS * (0.5 * (double)n1 + 1.0 * (double)n2));
    parsed_free(&p);
    free(text);
    metrics_registry_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_rejects_garbage),
        cmocka_unit_test(test_null_safety),
        cmocka_unit_test(test_counter_no_labels),
        cmocka_unit_test(test_labels_0_1_2),
        cmocka_unit_test(test_number_format),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_latency_bounds),
        cmocka_unit_test(test_redeclare),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_render_cap),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
