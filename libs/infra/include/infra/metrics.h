/* metrics.h: Prometheus metrics (counters, gauges, histograms with labels),
 * safe to update from many threads, rendered in the text exposition format.
 *
 * A registry owns families; a family owns its series. Look a series up once
 * (metrics_*_get, takes a lock) and keep the pointer: updating it is lock-free
 * (atomics). Series pointers stay valid until metrics_registry_destroy().
 */
#ifndef INFRA_METRICS_H
#define INFRA_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_LABELS 4             /* label names per family */
#define METRICS_MAX_BUCKETS 32           /* histogram buckets, +Inf excluded */
#define METRICS_MAX_SERIES 4096          /* series per family; beyond, _get returns NULL */
#define METRICS_MAX_FAMILIES 1024        /* families per registry; beyond, _new returns NULL */
#define METRICS_MAX_NAME_LEN 256         /* metric and label names, in bytes */
#define METRICS_MAX_HELP_LEN 4096        /* help text, in bytes */
#define METRICS_MAX_LABEL_VALUE_LEN 1024 /* label values, in bytes; longer: _get returns NULL */
#define METRICS_RENDER_MAX (16u << 20)   /* metrics_render() output cap, NUL included */

typedef struct metrics_registry_s metrics_registry_t;
typedef struct metrics_family_s metrics_family_t;
typedef struct metrics_series_s metrics_series_t;

metrics_registry_t *metrics_registry_new(void);
void metrics_registry_destroy(metrics_registry_t *reg); /* NULL is a no-op */

/* Declare a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]*; label names
 * [a-zA-Z_][a-zA-Z0-9_]*. Declaring the same name again with the same type
 * and labels returns the existing family; with different ones, NULL.
 * Strings are copied. Also NULL: a NULL registry, names or help longer than the
 * METRICS_MAX_*_LEN limits, more than METRICS_MAX_LABELS labels, duplicate
 * label names, label names starting with "__", a histogram label named "le",
 * or more than METRICS_MAX_FAMILIES families. help may be NULL (no HELP line);
 * a redeclaration keeps the first help text. */
metrics_family_t *metrics_counter_new(metrics_registry_t *reg, const char *name, const char *help,
                                      size_t nlabels, const char *const *label_names);
metrics_family_t *metrics_gauge_new(metrics_registry_t *reg, const char *name, const char *help,
                                    size_t nlabels, const char *const *label_names);
/* bounds: strictly increasing finite upper bounds, at most METRICS_MAX_BUCKETS
 * (the +Inf bucket is implicit); a redeclaration must repeat the same bounds. */
metrics_family_t *metrics_histogram_new(metrics_registry_t *reg, const char *name, const char *help,
                                        size_t nlabels, const char *const *label_names,
                                        size_t nbounds, const double *bounds);

/* The series for these label values (nlabels of them, as declared), created
 * on first use. Returns NULL on a count mismatch, on allocation failure or
 * past METRICS_MAX_SERIES. Label values are escaped when rendered. */
metrics_series_t *metrics_series_get(metrics_family_t *fam, const char *const *label_values);
/* Shorthands for families with no label or one label. */
metrics_series_t *metrics_series_get0(metrics_family_t *fam);
metrics_series_t *metrics_series_get1(metrics_family_t *fam, const char *value);

/* Updates. All accept NULL series as a no-op, so a failed lookup never crashes
 * a hot path. Counters only go up (negative and NaN deltas are ignored).
 * NaN observations are ignored. An update of the wrong kind (e.g.
 * metrics_gauge_set on a counter series) is a no-op. */
void metrics_counter_add(metrics_series_t *s, double delta);
void metrics_gauge_set(metrics_series_t *s, double value);
void metrics_gauge_add(metrics_series_t *s, double delta);
void metrics_histogram_observe(metrics_series_t *s, double value);
double metrics_series_value(const metrics_series_t *s); /* counter/gauge value, histogram count */

/* Render the whole registry in the Prometheus text format (version 0.0.4).
 * Returns a malloc'd NUL-terminated string the caller frees, or NULL on
 * allocation failure; *len gets its length when len is not NULL. Also NULL
 * when reg is NULL or the text would exceed METRICS_RENDER_MAX. Families come
 * in registration order (those without series are skipped), series in creation
 * order. Integral values below 2^53 print as integers ("42"), others with
 * %.15g, or %.16g/%.17g when needed to read back the same double ("0.1",
 * "0.3333333333333333"); infinities as "+Inf"/"-Inf", NaN as "NaN". */
char *metrics_render(metrics_registry_t *reg, size_t *len);

/* Bounds for latency histograms in seconds: 1 ms .. 60 s. */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_nbounds;

#endif
