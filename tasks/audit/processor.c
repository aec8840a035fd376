/* processor.c: the content_audit processor (see audit.h): configuration,
 * the decision of one task, the result record, metrics. */
#include "audit.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "dispatch/outcome.h"
#include "http.h"
#include "infra/clock.h"
#include "infra/log.h"
#include "infra/version.h"
#include "proto/audit.pb-c.h"
#include "provider.h"
#include "repoclient/repoclient.h"

#define AUDIT_REASON_MAX 200
#define AUDIT_MAX_LABEL_SERIES 64 /* distinct label values in metrics; the rest are "other" */

static const audit_provider_t *const audit_providers[] = {
    &audit_provider_generic,
    &audit_provider_tencent,
    &audit_provider_openai,
};
#define AUDIT_NPROVIDERS (sizeof(audit_providers) / sizeof(audit_providers[0]))
static const char *const audit_provider_choices[] = {"generic", "tencent", "openai", NULL};
static const char *const audit_exhausted_choices[] = {"review", "dead_letter", NULL};
static const char *const audit_engine_choices[] = {"multi", "easy", NULL};

enum { AUDIT_ON_EXHAUSTED_REVIEW = 0, AUDIT_ON_EXHAUSTED_DEAD = 1 };

typedef struct {
    int provider;
    const char *result_topic;
    int on_exhausted;
    int64_t max_content_bytes;
    int64_t imrepo_timeout_ms;
} audit_conf_t;

typedef struct {
    int engine;
    int64_t max_in_flight;
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
    int64_t max_response_bytes;
    int64_t max_idle_connections;
    const char *user_agent;
    const char *ca_file;
    bool insecure;
} audit_http_section_t;

typedef struct {
    int64_t failure_threshold;
    int64_t open_ms;
    int64_t open_max_ms;
    int64_t half_open_probes;
    int64_t retry_delay_ms;
} audit_breaker_section_t;

/* The retry policy of content_audit as the runtime reads it (retry: then
 * retry_content_audit:), to know when a retry would dead-letter. */
typedef struct {
    int64_t local_attempts;
    int64_t local_backoff_max_ms;
    int64_t max_attempts;
} audit_budget_t;

typedef struct {
    audit_conf_t conf;
    audit_http_section_t http_conf;
    audit_breaker_section_t breaker_conf;
    audit_budget_t budget;
    bool imrepo_set;
    const audit_provider_t *prov;
    void *prov_states[AUDIT_NPROVIDERS];
    void *prov_state;
    repo_conf_t *repo_conf;

    app_t *app;
    repo_client_t *repo;
    audit_http_t *http;
    audit_breaker_t *breaker;

    metrics_family_t *f_decisions, *f_labels, *f_requests, *f_transitions, *f_imrepo;
    metrics_series_t *m_latency, *m_breaker_state, *m_rejected, *m_in_flight, *m_queued;
    /* looked up once: [outcome] of audit_request_outcomes, [decision - 1][by policy] */
    metrics_series_t *m_requests[8], *m_decisions[3][2];
    pthread_mutex_t label_lock;
    char label_seen[AUDIT_MAX_LABEL_SERIES][AUDIT_LABEL_MAX];
    size_t nlabel_seen;
} audit_t;

/* ---- configuration ---------------------------------------------------- */

#define AC(k) offsetof(audit_conf_t, k)
static const cfg_field_t audit_fields[] = {
    {.key = "provider",
     .type = CFG_ENUM,
     .offset = AC(provider),
     .def = "generic",
     .choices = audit_provider_choices,
     .help = "the moderation API: generic, tencent, openai"},
    {.key = "result_topic",
     .type = CFG_STRING,
     .offset = AC(result_topic),
     .def = "im-audit-result-topic",
     .help = "where AuditResult records go (for im-logic)"},
    {.key = "on_exhausted",
     .type = CFG_ENUM,
     .offset = AC(on_exhausted),
     .def = "review",
     .choices = audit_exhausted_choices,
     .help = "when retries are used up or the provider cannot judge: review (fail closed) or "
             "dead_letter"},
    {.key = "max_content_bytes",
     .type = CFG_INT,
     .offset = AC(max_content_bytes),
     .def = "65536",
     .min = 1,
     .max = 16 << 20,
     .help = "longer content is not sent: on_exhausted decides"},
    {.key = "imrepo_timeout",
     .type = CFG_DURATION,
     .offset = AC(imrepo_timeout_ms),
     .def = "2s",
     .min = 1,
     .max = 600000,
     .help = "deadline of each im-repo call"},
};
#undef AC

#define AH(k) offsetof(audit_http_section_t, k)
static const cfg_field_t audit_http_fields[] = {
    {.key = "engine",
     .type = CFG_ENUM,
     .offset = AH(engine),
     .def = "multi",
     .choices = audit_engine_choices,
     .help = "multi: one curl multi handle for all workers; easy: a handle per worker"},
    {.key = "max_in_flight",
     .type = CFG_INT,
     .offset = AH(max_in_flight),
     .def = "128",
     .min = 1,
     .max = 10000,
     .help = "provider requests at once; more wait in a queue"},
    {.key = "timeout",
     .type = CFG_DURATION,
     .offset = AH(timeout_ms),
     .def = "5s",
     .min = 1,
     .max = 600000,
     .help = "one provider request, connect included"},
    {.key = "connect_timeout",
     .type = CFG_DURATION,
     .offset = AH(connect_timeout_ms),
     .def = "2s",
     .min = 1,
     .max = 600000,
     .help = "TCP + TLS connect"},
    {.key = "max_response_bytes",
     .type = CFG_INT,
     .offset = AH(max_response_bytes),
     .def = "1048576",
     .min = 1024,
     .max = 64 << 20,
     .help = "a longer answer is an error"},
    {.key = "max_idle_connections",
     .type = CFG_INT,
     .offset = AH(max_idle_connections),
     .def = "256",
     .min = 1,
     .max = 10000,
     .help = "connections kept alive (multi engine)"},
    {.key = "user_agent",
     .type = CFG_STRING,
     .offset = AH(user_agent),
     .def = "imtask-audit/" IMTASK_VERSION,
     .help = "User-Agent"},
    {.key = "ca_file",
     .type = CFG_STRING,
     .offset = AH(ca_file),
     .help = "CA bundle (PEM) for TLS (unset: the system's)"},
    {.key = "insecure",
     .type = CFG_BOOL,
     .offset = AH(insecure),
     .def = "false",
     .help = "do not verify TLS peers (development only)"},
};
#undef AH

#define AB(k) offsetof(audit_breaker_section_t, k)
static const cfg_field_t audit_breaker_fields[] = {
    {.key = "failure_threshold",
     .type = CFG_INT,
     .offset = AB(failure_threshold),
     .def = "10",
     .min = 1,
     .max = 100000,
     .help = "provider failures in a row that open the breaker"},
    {.key = "open_for",
     .type = CFG_DURATION,
     .offset = AB(open_ms),
     .def = "5s",
     .min = 1,
     .max = 3600000,
     .help = "first open period before probing"},
    {.key = "open_max",
     .type = CFG_DURATION,
     .offset = AB(open_max_ms),
     .def = "60s",
     .min = 1,
     .max = 3600000,
     .help = "longest open period (it doubles after each failed probe)"},
    {.key = "half_open_probes",
     .type = CFG_INT,
     .offset = AB(half_open_probes),
     .def = "3",
     .min = 1,
     .max = 1000,
     .help = "probes at once, and successes needed to close"},
    {.key = "retry_delay",
     .type = CFG_DURATION,
     .offset = AB(retry_delay_ms),
     .def = "10s",
     .min = 1,
     .max = 3600000,
     .help = "least delay of a task refused by the open breaker (above "
             "retry.local_backoff_max: it waits in the retry topic)"},
};
#undef AB

#define BU(k) offsetof(audit_budget_t, k)
static const cfg_field_t audit_budget_fields[] = {
    {.key = "local_attempts", .type = CFG_INT, .offset = BU(local_attempts), .min = 1, .max = 100},
    {.key = "local_backoff_max",
     .type = CFG_DURATION,
     .offset = BU(local_backoff_max_ms),
     .min = 1,
     .max = 60000},
    {.key = "max_attempts", .type = CFG_INT, .offset = BU(max_attempts), .min = 1, .max = 1000},
};
#undef BU

/* Read the retry budget the runtime uses for content_audit: the same file
 * and environment, retry: with the runtime's defaults, then
 * retry_content_audit: over it; and whether im-repo has endpoints (for a
 * warning). A separate cfg_t, so the binary's own config neither shows these
 * keys twice nor counts them as bound. */
static int audit_read_budget(cfg_t *cfg, audit_budget_t *b, bool *imrepo_set, char *err,
                             size_t errlen)
{
    const char *path = cfg_path(cfg);
    cfg_t *own = cfg_load(path && *path ? path : NULL, err, errlen);
    cfg_field_t f[3];
    char defs[3][32];
    int rc = -1;
    if (!own)
        return -1;
    memcpy(f, audit_budget_fields, sizeof(f));
    f[0].def = "3"; /* the runtime's defaults (docs/configuration.md) */
    f[1].def = "2s";
    f[2].def = "5";
    if (cfg_bind(own, "retry", f, 3, b, NULL, err, errlen))
        goto out;
    snprintf(defs[0], sizeof(defs[0]), "%lld", (long long)b->local_attempts);
    snprintf(defs[1], sizeof(defs[1]), "%lld", (long long)b->local_backoff_max_ms);
    snprintf(defs[2], sizeof(defs[2]), "%lld", (long long)b->max_attempts);
    for (int i = 0; i < 3; i++)
        f[i].def = defs[i];
    if (cfg_bind(own, "retry_" AUDIT_TASK_TYPE, f, 3, b, NULL, err, errlen))
        goto out;
    {
        struct {
            const char *endpoints, *etcd_endpoints;
        } ep = {0};
        const cfg_field_t ef[] = {
            {.key = "endpoints", .type = CFG_STRING, .offset = 0},
            {.key = "etcd_endpoints", .type = CFG_STRING, .offset = sizeof(const char *)},
        };
        if (cfg_bind(own, "imrepo", ef, 2, &ep, NULL, err, errlen))
            goto out;
        *imrepo_set = ep.endpoints || ep.etcd_endpoints;
    }
    rc = 0;
out:
    cfg_destroy(own);
    return rc;
}

static void audit_free(audit_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < AUDIT_NPROVIDERS; i++) {
        if (a->prov_states[i])
            audit_providers[i]->destroy(a->prov_states[i]);
    }
    repo_conf_destroy(a->repo_conf);
    pthread_mutex_destroy(&a->label_lock);
    free(a);
}

static int audit_configure(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    audit_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&a->label_lock, NULL);
    if (cfg_bind(cfg, "audit", audit_fields, sizeof(audit_fields) / sizeof(audit_fields[0]),
                 &a->conf, NULL, err, errlen) ||
        cfg_bind(cfg, "audit_http", audit_http_fields,
                 sizeof(audit_http_fields) / sizeof(audit_http_fields[0]), &a->http_conf, NULL, err,
                 errlen) ||
        cfg_bind(cfg, "audit_breaker", audit_breaker_fields,
                 sizeof(audit_breaker_fields) / sizeof(audit_breaker_fields[0]), &a->breaker_conf,
                 NULL, err, errlen))
        goto fail;
    if (a->breaker_conf.open_ms > a->breaker_conf.open_max_ms) {
        snprintf(err, errlen, "audit_breaker.open_for must not exceed audit_breaker.open_max");
        goto fail;
    }
    for (size_t i = 0; i < AUDIT_NPROVIDERS; i++) {
        if (audit_providers[i]->configure(&a->prov_states[i], cfg, (int)i == a->conf.provider, err,
                                          errlen))
            goto fail;
    }
    a->prov = audit_providers[a->conf.provider];
    a->prov_state = a->prov_states[a->conf.provider];
    a->repo_conf = repo_conf_new();
    if (!a->repo_conf) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (repo_conf_bind(a->repo_conf, cfg, "imrepo", err, errlen))
        goto fail;
    if (audit_read_budget(cfg, &a->budget, &a->imrepo_set, err, errlen))
        goto fail;
    *state = a;
    return 0;
fail:
    audit_free(a);
    return -1;
}

/* ---- metrics ---------------------------------------------------------- */

/* the outcomes of provider requests: audit_outcome_name() and two of ours */
static const char *const audit_request_outcomes[] = {
    "ok", "throttled", "unavailable", "malformed", "auth", "rejected", "timeout", "transport",
};

static void audit_metrics_init(audit_t *a, metrics_registry_t *reg)
{
    static const char *const pdb[] = {"provider", "decision", "by"};
    static const char *const pl[] = {"provider", "label"};
    static const char *const po[] = {"provider", "outcome"};
    static const char *const pt[] = {"provider", "to"};
    static const char *const p1[] = {"provider"};
    static const char *const mc[] = {"method", "code"};
    const char *name = a->prov->name;
    a->f_decisions = metrics_counter_new(
        reg, "imtask_audit_decisions_total",
        "Decisions made, by decision and by whom (provider, or policy: fail closed or content "
        "the provider cannot judge)",
        3, pdb);
    a->f_labels =
        metrics_counter_new(reg, "imtask_audit_labels_total",
                            "Labels in decisions (at most 64 distinct; then other)", 2, pl);
    a->f_requests = metrics_counter_new(
        reg, "imtask_audit_provider_requests_total",
        "Provider requests by outcome (ok, throttled, unavailable, timeout, transport, "
        "malformed, auth, rejected)",
        2, po);
    a->m_latency = metrics_series_get1(
        metrics_histogram_new(reg, "imtask_audit_provider_seconds",
                              "Time of one provider request (queueing excluded)", 1, p1,
                              metrics_latency_nbounds, metrics_latency_bounds),
        name);
    a->m_breaker_state = metrics_series_get1(
        metrics_gauge_new(reg, "imtask_audit_breaker_state",
                          "Circuit breaker: 0 closed, 1 open, 2 half-open", 1, p1),
        name);
    a->f_transitions = metrics_counter_new(reg, "imtask_audit_breaker_transitions_total",
                                           "Circuit breaker state changes", 2, pt);
    a->m_rejected = metrics_series_get1(
        metrics_counter_new(reg, "imtask_audit_breaker_rejected_total",
                            "Tasks refused by the open breaker (retried later)", 1, p1),
        name);
    a->m_in_flight = metrics_series_get0(metrics_gauge_new(reg, "imtask_audit_http_in_flight",
                                                           "Provider requests running", 0, NULL));
    a->m_queued = metrics_series_get0(metrics_gauge_new(
        reg, "imtask_audit_http_queued", "Provider requests waiting for a slot", 0, NULL));
    a->f_imrepo =
        metrics_counter_new(reg, "imtask_audit_imrepo_errors_total", "Failed im-repo calls", 2, mc);
    metrics_gauge_set(a->m_breaker_state, 0);
    for (size_t i = 0; i < 8; i++) {
        const char *v[] = {name, audit_request_outcomes[i]};
        a->m_requests[i] = metrics_series_get(a->f_requests, v);
    }
    for (int d = 0; d < 3; d++) {
        for (int by = 0; by < 2; by++) {
            const char *v[] = {name, audit_decision_name((audit_decision_t)(d + 1)),
                               by ? "policy" : "provider"};
            a->m_decisions[d][by] = metrics_series_get(a->f_decisions, v);
        }
    }
}

static void audit_count_request(audit_t *a, const char *outcome)
{
    for (size_t i = 0; i < 8; i++) {
        if (strcmp(audit_request_outcomes[i], outcome) == 0) {
            metrics_counter_add(a->m_requests[i], 1);
            return;
        }
    }
    const char *v[] = {a->prov->name, outcome};
    metrics_counter_add(metrics_series_get(a->f_requests, v), 1);
}

static void audit_count_label(audit_t *a, const char *label)
{
    const char *use = "other";
    pthread_mutex_lock(&a->label_lock);
    for (size_t i = 0; i < a->nlabel_seen; i++) {
        if (strcmp(a->label_seen[i], label) == 0) {
            use = label;
            break;
        }
    }
    if (use != label && a->nlabel_seen < AUDIT_MAX_LABEL_SERIES) {
        snprintf(a->label_seen[a->nlabel_seen++], AUDIT_LABEL_MAX, "%s", label);
        use = label;
    }
    pthread_mutex_unlock(&a->label_lock);
    const char *v[] = {a->prov->name, use};
    metrics_counter_add(metrics_series_get(a->f_labels, v), 1);
}

static void audit_breaker_changed(audit_t *a)
{
    audit_breaker_state_t s = audit_breaker_state(a->breaker, clock_mono_ms());
    const char *v[] = {a->prov->name, audit_breaker_state_name(s)};
    metrics_gauge_set(a->m_breaker_state, (double)s);
    metrics_counter_add(metrics_series_get(a->f_transitions, v), 1);
    if (s == AUDIT_BREAKER_OPEN)
        log_warn("provider %s: circuit breaker open: tasks wait in the retry topic until probes "
                 "succeed",
                 a->prov->name);
    else
        log_info("provider %s: circuit breaker %s", a->prov->name, audit_breaker_state_name(s));
}

static void audit_count_imrepo(audit_t *a, const char *method, repo_err_t code)
{
    const char *v[] = {method, repo_err_name(code)};
    metrics_counter_add(metrics_series_get(a->f_imrepo, v), 1);
}

/* ---- start / destroy -------------------------------------------------- */

static int audit_start(void *state, app_t *app, char *err, size_t errlen)
{
    audit_t *a = state;
    audit_http_conf_t hc = {
        .engine = a->http_conf.engine,
        .max_in_flight = a->http_conf.max_in_flight,
        .timeout_ms = a->http_conf.timeout_ms,
        .connect_timeout_ms = a->http_conf.connect_timeout_ms,
        .max_response_bytes = a->http_conf.max_response_bytes,
        .max_conns = a->http_conf.max_idle_connections,
        .user_agent = a->http_conf.user_agent,
        .ca_file = a->http_conf.ca_file,
        .insecure = a->http_conf.insecure,
    };
    audit_breaker_conf_t bc = {
        .failure_threshold = a->breaker_conf.failure_threshold,
        .open_ms = a->breaker_conf.open_ms,
        .open_max_ms = a->breaker_conf.open_max_ms,
        .half_open_probes = a->breaker_conf.half_open_probes,
    };
    char why[CFG_ERR_MAX];
    a->app = app;
    audit_metrics_init(a, app_metrics(app));
    if (!(a->breaker = audit_breaker_new(&bc))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (audit_http_new(&a->http, &hc, why, sizeof(why))) {
        snprintf(err, errlen, "HTTP client: %s", why);
        return -1;
    }
    if (repo_client_new(&a->repo, a->repo_conf, why, sizeof(why))) {
        snprintf(err, errlen, "im-repo client (imrepo: section): %s", why);
        return -1;
    }
    a->repo_conf = NULL; /* the client owns it */
    const char *url = a->prov->endpoint(a->prov_state);
    if (strcmp(url, AUDIT_GENERIC_DEFAULT_URL) == 0)
        log_warn("audit_generic.url is %s, the local stack's moderation double (the default)", url);
    if (!a->imrepo_set)
        log_warn("imrepo: neither endpoints nor etcd_endpoints is set: tasks with a message id "
                 "and no content will be retried until they are");
    log_info(
        "content_audit: provider %s at %s, HTTP engine %s with %lld requests in flight, result "
        "topic %s, on_exhausted %s, retry budget %lld deliveries x %lld local tries",
        a->prov->name, url, audit_engine_choices[a->http_conf.engine],
        (long long)a->http_conf.max_in_flight, a->conf.result_topic,
        audit_exhausted_choices[a->conf.on_exhausted], (long long)a->budget.max_attempts,
        (long long)a->budget.local_attempts);
    return 0;
}

static void audit_destroy(void *state)
{
    audit_t *a = state;
    if (!a)
        return;
    repo_client_destroy(&a->repo);
    audit_http_destroy(&a->http);
    audit_breaker_destroy(&a->breaker);
    audit_free(a);
}

/* ---- one task ---------------------------------------------------------- */

typedef struct {
    dispatch_task_t *t;
    const Imtask__V1__AuditTask *task;
    audit_input_t in;
    audit_verdict_t verdict;
    bool by_policy;
    char reason[AUDIT_REASON_MAX];
} audit_job_t;

/* Whether a retry returned now would make the runtime dead-letter the task
 * (the same test as the runtime's: last delivery, and no local try left or a
 * wait longer than local tries may take). */
static bool audit_last_chance(const audit_t *a, dispatch_task_t *t, int64_t after_ms)
{
    if ((int64_t)dispatch_task_attempt(t) + 1 < a->budget.max_attempts)
        return false;
    return (int64_t)dispatch_task_local_attempt(t) + 1 >= a->budget.local_attempts ||
           after_ms > a->budget.local_backoff_max_ms || app_stopping(a->app);
}

static dispatch_result_t audit_decide(audit_t *a, audit_job_t *j);

/* No verdict can be had for this task: the policy decides. */
static dispatch_result_t audit_policy(audit_t *a, audit_job_t *j, const char *why)
{
    if (a->conf.on_exhausted == AUDIT_ON_EXHAUSTED_DEAD)
        return dispatch_dead("%s (audit.on_exhausted: dead_letter)", why);
    memset(&j->verdict, 0, sizeof(j->verdict));
    j->verdict.decision = AUDIT_REVIEW;
    j->by_policy = true;
    snprintf(j->reason, sizeof(j->reason), "fail closed: %s", why);
    log_warn("task %s: no verdict from provider %s (%s): sent to review (audit.on_exhausted)",
             dispatch_task_id(j->t), a->prov->name, why);
    return audit_decide(a, j);
}

/* A transient failure: retry, or on the last chance the policy. */
static dispatch_result_t audit_transient(audit_t *a, audit_job_t *j, int64_t after_ms,
                                         const char *why)
{
    if (dispatch_task_cancelled(j->t))
        return dispatch_retry(0, "%s (stopping)", why);
    if (audit_last_chance(a, j->t, after_ms)) {
        char r[AUDIT_REASON_MAX];
        snprintf(r, sizeof(r), "%s; retries used up (%lld deliveries)", why,
                 (long long)a->budget.max_attempts);
        if (a->conf.on_exhausted == AUDIT_ON_EXHAUSTED_DEAD)
            return dispatch_retry(after_ms, "%s", why); /* the runtime dead-letters it */
        return audit_policy(a, j, r);
    }
    return dispatch_retry(after_ms, "%s", why);
}

/* Ask the provider. Returns true with j->verdict, or false with *res set. */
static bool audit_moderate(audit_t *a, audit_job_t *j, dispatch_result_t *res)
{
    bool probe;
    int64_t wait_ms;
    char err[AUDIT_REASON_MAX], why[AUDIT_REASON_MAX + 64];
    audit_req_t req;
    audit_http_resp_t resp;
    audit_outcome_t oc;
    const char *pname = a->prov->name;

    if (!audit_breaker_allow(a->breaker, clock_mono_ms(), &probe, &wait_ms)) {
        int64_t delay =
            wait_ms > a->breaker_conf.retry_delay_ms ? wait_ms : a->breaker_conf.retry_delay_ms;
        metrics_counter_add(a->m_rejected, 1);
        snprintf(why, sizeof(why), "provider %s: circuit breaker open (probes in %lld ms)", pname,
                 (long long)wait_ms);
        *res = audit_transient(a, j, delay, why);
        return false;
    }
    memset(&req, 0, sizeof(req));
    err[0] = '\0';
    if (a->prov->build(a->prov_state, &j->in, clock_wall_ms(), &req, err, sizeof(err))) {
        audit_req_free(&req);
        audit_breaker_release(a->breaker, probe);
        snprintf(why, sizeof(why), "provider %s cannot take this content: %s", pname, err);
        *res = audit_policy(a, j, why);
        return false;
    }
    audit_http_do(a->http, &req, &resp);
    audit_req_free(&req);
    {
        int in_flight, queued;
        audit_http_load(a->http, &in_flight, &queued);
        metrics_gauge_set(a->m_in_flight, in_flight);
        metrics_gauge_set(a->m_queued, queued);
    }
    if (resp.curl_code) {
        oc = AUDIT_UNAVAILABLE;
        snprintf(err, sizeof(err), "%.150s", resp.error);
        audit_count_request(a, resp.timed_out ? "timeout" : "transport");
    } else {
        metrics_histogram_observe(a->m_latency, resp.seconds);
        oc = a->prov->parse(a->prov_state, resp.status, resp.body, resp.len, &j->verdict, err,
                            sizeof(err));
        audit_count_request(a, audit_outcome_name(oc));
    }
    bool changed = oc == AUDIT_OK || oc == AUDIT_REJECTED
                       ? audit_breaker_success(a->breaker, clock_mono_ms(), probe)
                       : audit_breaker_failure(a->breaker, clock_mono_ms(), probe);
    if (changed)
        audit_breaker_changed(a);
    int64_t after = resp.retry_after_ms > 0 ? resp.retry_after_ms : 0;
    audit_http_resp_free(&resp);
    if (oc == AUDIT_OK)
        return true;
    snprintf(why, sizeof(why), "provider %s: %s: %s", pname, audit_outcome_name(oc), err);
    if (oc == AUDIT_REJECTED)
        *res = audit_policy(a, j, why);
    else
        *res = audit_transient(a, j, after, why);
    return false;
}

static void audit_labels_text(const audit_verdict_t *v, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < v->nlabels && used < len; i++) {
        int n = snprintf(out + used, len - used, "%s%s:%.2f", i ? "," : "", v->labels[i].label,
                         v->labels[i].score);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Record the decision: im-repo status for review/block, the result record. */
static dispatch_result_t audit_decide(audit_t *a, audit_job_t *j)
{
    Imtask__V1__AuditResult res = IMTASK__V1__AUDIT_RESULT__INIT;
    Imtask__V1__AuditLabel lbl[AUDIT_MAX_LABELS];
    Imtask__V1__AuditLabel *lp[AUDIT_MAX_LABELS];
    char *kws[AUDIT_MAX_LABELS][AUDIT_MAX_KEYWORDS];
    char labels[256];
    audit_verdict_t *v = &j->verdict;
    dispatch_task_t *t = j->t;
    const char *decision = audit_decision_name(v->decision);
    bool status_set = false;

    audit_labels_text(v, labels, sizeof(labels));
    if (v->decision != AUDIT_PASS && j->in.message_id[0]) {
        ImRepo__V1__SetMessageAuditStatusRequest req =
            IM_REPO__V1__SET_MESSAGE_AUDIT_STATUS_REQUEST__INIT;
        ImRepo__V1__SetMessageAuditStatusResponse *resp = NULL;
        repo_md_t md[] = {{"traceparent", dispatch_task_traceparent(t)}};
        repo_call_opts_t opts = {
            .timeout_ms = a->conf.imrepo_timeout_ms, .md = md, .nmd = md[0].value[0] ? 1 : 0};
        repo_status_t st;
        char reason[AUDIT_REASON_MAX + 300];
        if (j->by_policy)
            snprintf(reason, sizeof(reason), "%s by policy: %s", decision, j->reason);
        else
            snprintf(reason, sizeof(reason), "%s by %s [%s] request %s", decision, a->prov->name,
                     labels, v->request_id);
        req.message_id = (char *)j->in.message_id;
        req.status = v->decision == AUDIT_BLOCK ? IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_BLOCK
                                                : IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_REVIEW;
        req.reason = reason;
        repo_err_t rc = repo_set_message_audit_status(a->repo, &req, &opts, &resp, &st);
        if (rc == REPO_ERR_OK) {
            repo_response_free(&resp->base);
            status_set = true;
        } else {
            audit_count_imrepo(a, "SetMessageAuditStatus", rc);
            if (rc == REPO_ERR_NOT_FOUND)
                return dispatch_dead("message %s no longer exists in im-repo "
                                     "(SetMessageAuditStatus: NOT_FOUND: %s)",
                                     j->in.message_id, st.message);
            if (rc == REPO_ERR_INVALID_ARGUMENT || rc == REPO_ERR_FAILED_PRECONDITION)
                return dispatch_dead("im-repo SetMessageAuditStatus %s: %s: %s", j->in.message_id,
                                     repo_err_name(rc), st.message);
            return dispatch_retry(0, "im-repo SetMessageAuditStatus %s: %s: %s", j->in.message_id,
                                  repo_err_name(rc), st.message);
        }
    }

    for (size_t i = 0; i < v->nlabels; i++) {
        imtask__v1__audit_label__init(&lbl[i]);
        lbl[i].label = v->labels[i].label;
        lbl[i].sub_label = v->labels[i].sub_label;
        lbl[i].score = v->labels[i].score;
        for (size_t k = 0; k < v->labels[i].nkeywords; k++)
            kws[i][k] = v->labels[i].keywords[k];
        lbl[i].n_keywords = v->labels[i].nkeywords;
        lbl[i].keywords = kws[i];
        lp[i] = &lbl[i];
    }
    res.task_id = (char *)dispatch_task_id(t);
    res.message_id = (char *)j->in.message_id;
    res.conversation_id = (char *)j->in.conversation_id;
    res.sender_id = (char *)j->in.sender_id;
    res.kind = (Imtask__V1__ContentKind)j->in.kind;
    res.decision = (Imtask__V1__AuditDecision)v->decision;
    res.n_labels = v->nlabels;
    res.labels = lp;
    res.provider = (char *)a->prov->name;
    res.provider_request_id = v->request_id;
    res.by_policy = j->by_policy;
    res.reason = j->reason;
    res.decided_at_ms = clock_wall_ms();
    res.attempt = dispatch_task_attempt(t);
    res.trace_id = (char *)dispatch_task_trace_id(t);
    res.status_set = status_set;

    size_t len = imtask__v1__audit_result__get_packed_size(&res);
    uint8_t stackbuf[4096], *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
    if (!buf)
        return dispatch_retry(0, "out of memory for the result record");
    imtask__v1__audit_result__pack(&res, buf);
    const char *key = j->in.message_id[0] ? j->in.message_id : dispatch_task_id(t);
    const char *tp = dispatch_task_traceparent(t);
    mq_header_t h[] = {
        {"task_id", dispatch_task_id(t), strlen(dispatch_task_id(t))},
        {"audit_decision", decision, strlen(decision)},
        {"traceparent", tp, strlen(tp)},
    };
    int rc = dispatch_task_produce(t, a->conf.result_topic, key, strlen(key), buf, len, h,
                                   tp[0] ? 3 : 2);
    if (buf != stackbuf)
        free(buf);
    if (rc)
        return dispatch_retry(0, "cannot queue the result record to %s", a->conf.result_topic);

    {
        dispatch_outcome_label_t ol[] = {{"decision", decision}}; /* docs/report.md */
        metrics_counter_add(a->m_decisions[v->decision - 1][j->by_policy ? 1 : 0], 1);
        dispatch_outcome(t, OUTCOME_AUDIT_DECISION, ol, 1, 1);
        for (size_t i = 0; i < v->nlabels; i++)
            audit_count_label(a, v->labels[i].label);
    }
    if (v->decision == AUDIT_PASS)
        log_debug("message %s: pass (%s, request %s)", key, a->prov->name, v->request_id);
    else
        log_info("message %s: %s by %s [%s] request %s%s%s", key, decision,
                 j->by_policy ? "policy" : a->prov->name, labels, v->request_id,
                 j->reason[0] ? ": " : "", j->reason);
    return dispatch_done();
}

/* Fetch the content from im-repo. Returns true with *msg (the caller frees
 * *resp), or false with *res. */
static bool audit_fetch(audit_t *a, audit_job_t *j, ImRepo__V1__GetMessageResponse **resp,
                        dispatch_result_t *res)
{
    ImRepo__V1__GetMessageRequest req = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    repo_md_t md[] = {{"traceparent", dispatch_task_traceparent(j->t)}};
    repo_call_opts_t opts = {
        .timeout_ms = a->conf.imrepo_timeout_ms, .md = md, .nmd = md[0].value[0] ? 1 : 0};
    repo_status_t st;
    const char *id = j->task->message_id;
    req.message_id = (char *)id;
    repo_err_t rc = repo_get_message(a->repo, &req, &opts, resp, &st);
    if (rc != REPO_ERR_OK) {
        audit_count_imrepo(a, "GetMessage", rc);
        if (rc == REPO_ERR_NOT_FOUND)
            *res = dispatch_dead("message %s no longer exists in im-repo (GetMessage: NOT_FOUND: "
                                 "%s)",
                                 id, st.message);
        else if (rc == REPO_ERR_INVALID_ARGUMENT || rc == REPO_ERR_OUT_OF_RANGE ||
                 rc == REPO_ERR_FAILED_PRECONDITION)
            *res =
                dispatch_dead("im-repo GetMessage %s: %s: %s", id, repo_err_name(rc), st.message);
        else
            *res = dispatch_retry(0, "im-repo GetMessage %s: %s: %s", id, repo_err_name(rc),
                                  st.message);
        return false;
    }
    if (!(*resp)->message) {
        *res = dispatch_retry(0, "im-repo GetMessage %s: the answer has no message", id);
        return false;
    }
    if ((*resp)->message->deleted) {
        *res = dispatch_dead("message %s no longer exists in im-repo (deleted)", id);
        return false;
    }
    return true;
}

static dispatch_result_t audit_process(void *state, dispatch_task_t *t)
{
    audit_t *a = state;
    size_t plen;
    const uint8_t *p = dispatch_task_payload(t, &plen);
    Imtask__V1__AuditTask *task = imtask__v1__audit_task__unpack(NULL, plen, p);
    ImRepo__V1__GetMessageResponse *msg = NULL;
    dispatch_result_t res;
    audit_job_t j;

    if (!task)
        return dispatch_dead("payload is not an imtask.v1.AuditTask (%zu bytes)", plen);
    memset(&j, 0, sizeof(j));
    j.t = t;
    j.task = task;
    if (!task->message_id[0] && !task->content[0]) {
        res = dispatch_dead("AuditTask has neither message_id nor content");
        goto out;
    }
    if (task->kind != IMTASK__V1__CONTENT_KIND__CONTENT_KIND_UNSPECIFIED &&
        task->kind != IMTASK__V1__CONTENT_KIND__CONTENT_KIND_TEXT &&
        task->kind != IMTASK__V1__CONTENT_KIND__CONTENT_KIND_IMAGE_URL) {
        res = dispatch_dead("AuditTask.kind %d is not a known ContentKind", (int)task->kind);
        goto out;
    }
    j.in.kind = task->kind == IMTASK__V1__CONTENT_KIND__CONTENT_KIND_IMAGE_URL
                    ? AUDIT_KIND_IMAGE_URL
                    : AUDIT_KIND_TEXT;
    j.in.task_id = dispatch_task_id(t);
    j.in.trace_id = dispatch_task_trace_id(t);
    j.in.message_id = task->message_id;
    j.in.sender_id = task->sender_id;
    j.in.conversation_id = task->conversation_id;
    j.in.biz_type = task->biz_type;
    if (task->content[0]) {
        j.in.content = task->content;
    } else {
        if (!audit_fetch(a, &j, &msg, &res))
            goto out;
        j.in.content = msg->message->content ? msg->message->content : "";
        if (!j.in.sender_id[0] && msg->message->sender_id)
            j.in.sender_id = msg->message->sender_id;
        if (!j.in.conversation_id[0] && msg->message->conversation_id)
            j.in.conversation_id = msg->message->conversation_id;
    }
    j.in.content_len = strlen(j.in.content);
    if (j.in.content_len == 0) {
        j.verdict.decision = AUDIT_PASS;
        j.by_policy = true;
        snprintf(j.reason, sizeof(j.reason), "empty content");
        res = audit_decide(a, &j);
        goto out;
    }
    if ((int64_t)j.in.content_len > a->conf.max_content_bytes) {
        char why[AUDIT_REASON_MAX];
        snprintf(why, sizeof(why), "content of %zu bytes is over audit.max_content_bytes (%lld)",
                 j.in.content_len, (long long)a->conf.max_content_bytes);
        res = audit_policy(a, &j, why);
        goto out;
    }
    if (!a->prov->supports(a->prov_state, j.in.kind)) {
        char why[AUDIT_REASON_MAX];
        snprintf(why, sizeof(why), "provider %s cannot judge %s content", a->prov->name,
                 audit_kind_name(j.in.kind));
        res = audit_policy(a, &j, why);
        goto out;
    }
    if (audit_moderate(a, &j, &res))
        res = audit_decide(a, &j);
out:
    repo_response_free(msg ? &msg->base : NULL);
    imtask__v1__audit_task__free_unpacked(task, NULL);
    return res;
}

const dispatch_ops_t audit_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "audit",
    .configure = audit_configure,
    .start = audit_start,
    .process = audit_process,
    .destroy = audit_destroy,
};
