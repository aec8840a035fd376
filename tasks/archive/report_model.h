/* report_model.h: the report job's parts, private to tasks/archive
 * (docs/report.md):
 *   report_period.c  the period of a slot in a time zone, local time labels
 *   report_agg.c     outcome events summed per (task type, kind, labels)
 *   report_read.c    the outcome topic over [start, end), aggregated while read
 *   report_render.c  JSON, CSV and the self-contained HTML page (inline SVG)
 *   report.c         the `report` processor: im-repo, outcomes, storage
 */
#ifndef IMTASK_ARCHIVE_REPORT_MODEL_H
#define IMTASK_ARCHIVE_REPORT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infra/config.h"
#include "proto/outcome.pb-c.h"

#define REPORT_TZ_MAX 64
#define REPORT_JOB_MAX 64
#define REPORT_MAX_BUCKETS 32 /* a day is 23..25 hours, an hour 12 x 5 min */
#define REPORT_MAX_TYPES 64   /* message types listed; the rest summed as "other" */
#define REPORT_LABELS_MAX 512 /* "name=value;name=value" of one series */
#define REPORT_LOCAL_MAX 40   /* "2026-03-29T02:00:00+02:00" */
#define REPORT_DEFAULT_SERIES 10000

typedef enum { REPORT_HOUR = 0, REPORT_DAY = 1 } report_period_t;

/* ---- periods (report_period.c) ----------------------------------------- */

/* Kept for callers: zones come from libs/schedule's TZif reader (no
 * process-wide TZ), so there is nothing to prepare. */
void report_tz_init(void);
/* 1 when tz is "UTC" or a zone of the system's tz database (TZDIR or
 * /usr/share/zoneinfo), read with schedule/tz.h. */
int report_tz_ok(const char *tz);
/* "hour" | "day" -> *out; -1 otherwise. */
int report_period_parse(const char *s, report_period_t *out);
/* The last whole period before the slot, in tz: end = the slot floored to
 * the period's boundary in tz, start = the boundary before end. A local day
 * is 23 or 25 hours on DST days. Returns 0, or -1 with err. */
int report_period_bounds(int64_t slot_ms, report_period_t period, const char *tz, int64_t *start_ms,
                         int64_t *end_ms, char *err, size_t errlen);
/* ms as local ISO 8601 in tz with its offset ("2026-11-28T08:00:00+08:00");
 * hm_only: "08:00". Returns 0, or -1. */
int report_local_time(int64_t ms, const char *tz, bool hm_only, char *out, size_t outlen);
/* ms as UTC "20261128T000000Z" (storage keys). */
void report_utc_stamp(int64_t ms, char *out, size_t outlen);

/* ---- outcome aggregation (report_agg.c) --------------------------------- */

typedef struct {
    char *task_type;
    char *kind;
    char *labels; /* "name=value;..." in the order emitted */
    int64_t count;
    int64_t events;
} report_series_t;

typedef struct report_agg_s report_agg_t;

/* At most max_series distinct series; events of further series are summed
 * in the overflow counter (report_agg_overflow), never held. */
report_agg_t *report_agg_new(size_t max_series);
void report_agg_destroy(report_agg_t **ap); /* NULL no-op */
/* Add one event (count < 0 is ignored). Returns 0, or -1 on allocation failure. */
int report_agg_add(report_agg_t *a, const Imtask__V1__OutcomeEvent *ev);
/* Series sorted by task_type, kind, labels (stable for output). */
size_t report_agg_series(report_agg_t *a, const report_series_t **out);
int64_t report_agg_overflow(const report_agg_t *a);
/* The value of label `name` in a series' labels text (copied into buf), or
 * "" when absent. */
const char *report_label(const report_series_t *s, const char *name, char *buf, size_t len);

/* ---- the report ---------------------------------------------------------- */

typedef struct {
    int32_t type;
    int64_t messages;
} report_type_count_t;

typedef struct {
    char job[REPORT_JOB_MAX];
    report_period_t period;
    char tz[REPORT_TZ_MAX];
    int64_t slot_ms, start_ms, end_ms, generated_ms;
    bool manual;

    /* message activity from im-repo */
    int64_t messages, active_users, active_groups, new_users;
    report_type_count_t by_type[REPORT_MAX_TYPES];
    size_t ntypes;
    int64_t bucket_ms;
    size_t nbuckets;
    int64_t bucket_start[REPORT_MAX_BUCKETS];
    int64_t bucket_messages[REPORT_MAX_BUCKETS];

    /* im-task outcomes, read from the outcome topic */
    report_agg_t *agg;       /* owned */
    int64_t outcome_events;  /* events in range */
    int64_t outcome_skipped; /* records read but outside the range */
    int64_t outcome_badrecs; /* undecodable records */
} report_t;

/* Buckets of the period: one hour for a day, five minutes for an hour,
 * aligned to start (so in the report's time zone). Fills bucket_ms,
 * nbuckets, bucket_start. */
void report_buckets_init(report_t *r);

/* Derived figures (report_render.c). */
int64_t report_sum_kind(const report_t *r, const char *kind);

/* ---- the outcome topic (report_read.c) ---------------------------------- */

typedef struct {
    const char *brokers;
    const cfg_kvs_t *kafka_props; /* the binary's `kafka:` passthrough (may be NULL) */
    const char *topic;
    int64_t clock_skew_ms; /* read from start - skew, stop at a record time >= end + skew */
    int64_t timeout_ms;    /* the whole read */
} report_read_opts_t;

/* Sum the events of [r->start_ms, r->end_ms) (by the event's ts_ms) into
 * r->agg: each partition from rd_kafka_offsets_for_times(start - skew) up to
 * its high watermark at the start, or the first record timestamped at or
 * past end + skew. Memory: the aggregation only. Returns 0, or -1 with err
 * (the caller retries the task). */
int report_read_outcomes(const report_read_opts_t *o, report_t *r, char *err, size_t errlen);

/* ---- rendering (report_render.c) ---------------------------------------- */

/* A growing text buffer with a hard cap. */
typedef struct {
    char *data;
    size_t len, cap, max;
    bool failed; /* allocation failed or max reached: the text is incomplete */
} report_buf_t;

void report_buf_init(report_buf_t *b, size_t max);
void report_buf_free(report_buf_t *b);
void report_buf_puts(report_buf_t *b, const char *s);
void report_buf_printf(report_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s HTML-escaped (& < > " ') for text and attribute values. */
void report_buf_html(report_buf_t *b, const char *s);
/* s as one CSV field (RFC 4180): quoted when it holds , " CR or LF, or
 * leading/trailing spaces; quotes doubled. Fields starting with = + - @ get
 * a leading ' so spreadsheets do not run them as formulas. */
void report_buf_csv(report_buf_t *b, const char *s);

/* The top of a chart axis for a maximum value: the next 1, 2, 5 x 10^k at or
 * above max (1 for max <= 0). */
int64_t report_scale_top(int64_t max);
/* Grid steps for an axis top from report_scale_top: every step an integer
 * (1 -> 1 step, 2 -> 2, 5 and 10 -> 5, 20 -> 4, ...). */
int report_scale_ticks(int64_t top);
/* The pixel offset from the chart's bottom for v on a height-px axis to top. */
double report_scale_px(int64_t v, int64_t top, double height);

/* Each returns 0 with a malloc'd text (*out, *len; the caller frees), or -1. */
int report_render_json(const report_t *r, char **out, size_t *len);
int report_render_csv(const report_t *r, char **out, size_t *len);
int report_render_html(const report_t *r, char **out, size_t *len);

#define REPORT_RENDER_MAX (64u << 20) /* a rendering larger than this fails */

#endif
