/* provider.h: what a moderation provider is to the audit processor.
 *
 * A provider only turns a piece of content into an HTTP request and an HTTP
 * answer into a verdict; it does no I/O. The processor owns the transport
 * (http.h), timeouts, retries, the circuit breaker and the decision policy,
 * so every provider behaves the same on 429, 5xx, outages and garbage.
 *
 *   configure  bind the provider's config section; `chosen` is true for the
 *              provider named in audit.provider: only then are its required
 *              keys checked (the others take defaults and stay unused);
 *   build      the request for one input (url, headers, body);
 *   parse      any HTTP answer (status and body) to a verdict, or to an
 *              outcome saying what went wrong, with a message in err.
 *
 * Adding a provider: a file with one audit_provider_t, a row in
 * audit_providers[] (processor.c), a section in docs/audit.md.
 */
#ifndef AUDIT_PROVIDER_H
#define AUDIT_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infra/config.h"

/* The same numbers as imtask.v1.AuditDecision. */
typedef enum {
    AUDIT_PASS = 1,
    AUDIT_REVIEW = 2,
    AUDIT_BLOCK = 3,
} audit_decision_t;

/* The same numbers as imtask.v1.ContentKind. */
typedef enum {
    AUDIT_KIND_TEXT = 1,
    AUDIT_KIND_IMAGE_URL = 2,
} audit_kind_t;

const char *audit_decision_name(audit_decision_t d); /* "pass", "review", "block" */
const char *audit_kind_name(audit_kind_t k);         /* "text", "image_url" */

#define AUDIT_MAX_LABELS 16  /* labels kept per verdict; more are dropped */
#define AUDIT_LABEL_MAX 64   /* bytes of a label, a sub-label, a keyword */
#define AUDIT_MAX_KEYWORDS 8 /* keywords kept per label */
#define AUDIT_REQID_MAX 128  /* bytes of the provider's request id */

typedef struct {
    char label[AUDIT_LABEL_MAX];
    char sub_label[AUDIT_LABEL_MAX];
    double score; /* 0..1 */
    char keywords[AUDIT_MAX_KEYWORDS][AUDIT_LABEL_MAX];
    size_t nkeywords;
} audit_label_t;

typedef struct {
    audit_decision_t decision;
    audit_label_t labels[AUDIT_MAX_LABELS];
    size_t nlabels;
    char request_id[AUDIT_REQID_MAX];
} audit_verdict_t;

/* Append a label (copied, cut to fit); returns it, or NULL when full. */
audit_label_t *audit_verdict_add_label(audit_verdict_t *v, const char *label, const char *sub_label,
                                       double score);
void audit_label_add_keyword(audit_label_t *l, const char *kw);

/* What is moderated. Strings are never NULL ("" when unknown); content is
 * not NUL-terminated necessarily: use content_len. */
typedef struct {
    const char *content;
    size_t content_len;
    audit_kind_t kind;
    const char *task_id;
    const char *message_id;
    const char *sender_id;
    const char *conversation_id;
    const char *biz_type;
    const char *trace_id;
} audit_input_t;

/* An HTTP request as a provider builds it; everything malloc'd, freed with
 * audit_req_free. Headers are "Name: value" lines. */
#define AUDIT_REQ_MAX_HEADERS 24
typedef struct {
    char *url;
    char *headers[AUDIT_REQ_MAX_HEADERS];
    size_t nheaders;
    char *body;
    size_t body_len;
} audit_req_t;

int audit_req_set_url(audit_req_t *r, const char *url);
int audit_req_add_header(audit_req_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The value of header `name` (case-insensitive), or NULL. For tests. */
const char *audit_req_header(const audit_req_t *r, const char *name);
void audit_req_free(audit_req_t *r);

/* How an answer turned out. */
typedef enum {
    AUDIT_OK = 0,          /* a verdict */
    AUDIT_THROTTLED = 1,   /* 429 or an in-body rate limit: retry later */
    AUDIT_UNAVAILABLE = 2, /* 5xx, provider-side error, transport failure: retry */
    AUDIT_MALFORMED = 3,   /* not the documented shape: retry (a provider fault) */
    AUDIT_AUTH = 4,        /* credentials or endpoint wrong (401/403/404): retry,
                              an operator must act */
    AUDIT_REJECTED = 5,    /* this request refused (400/413/422, invalid
                              parameter): retrying the same content will not help */
} audit_outcome_t;

const char *audit_outcome_name(audit_outcome_t o); /* "ok", "throttled", ... */

/* The outcome an HTTP status implies before the body is read: AUDIT_OK for
 * 2xx, else the classes above (1xx/3xx: AUDIT_MALFORMED). */
audit_outcome_t audit_outcome_of_status(long status);

typedef struct {
    const char *name; /* "generic", "tencent", "openai" */
    int (*configure)(void **state, cfg_t *cfg, bool chosen, char *err, size_t errlen);
    /* Whether it can judge this kind of content at all. */
    bool (*supports)(void *state, audit_kind_t kind);
    /* Build the request; now_ms is the wall clock (request signing). Returns
     * 0, or -1 with err (the request is freed by the caller either way). */
    int (*build)(void *state, const audit_input_t *in, int64_t now_ms, audit_req_t *req, char *err,
                 size_t errlen);
    /* Any answer; body is NUL-terminated (len bytes before the NUL). On
     * AUDIT_OK *out is filled; otherwise err says what was wrong, naming the
     * field or the provider's error code. Never crashes on any input. */
    audit_outcome_t (*parse)(void *state, long status, const char *body, size_t len,
                             audit_verdict_t *out, char *err, size_t errlen);
    void (*destroy)(void *state); /* NULL state: no-op */
    /* Where requests go (for the start-up log line). */
    const char *(*endpoint)(void *state);
} audit_provider_t;

/* The generic provider's default endpoint: the local stack's moderation
 * double (scripts/stack.sh), so a bare config starts; imtask-audit warns at
 * start when it is in use. */
#define AUDIT_GENERIC_DEFAULT_URL "http://127.0.0.1:19510/generic/moderate"

extern const audit_provider_t audit_provider_generic;
extern const audit_provider_t audit_provider_tencent;
extern const audit_provider_t audit_provider_openai;

#endif
