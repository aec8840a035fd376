/* processor.c: the `push` processor: a PushTask's devices (its own and those
 * of its users, from im-repo), one request each to APNs or FCM, sent
 * concurrently through the shared HTTP/2 client; then what the answers say:
 * tokens removed through im-repo, transient failures retried in a smaller
 * follow-up task, everything counted. See docs/push.md. */
#include "processor.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apns.h"
#include "dispatch/outcome.h"
#include "dispatch/task.h"
#include "fcm.h"
#include "infra/clock.h"
#include "infra/log.h"
#include "ledger.h"
#include "proto/push.pb-c.h"
#include "repoclient/repoclient.h"

#define LOG_TOKEN_CHARS 8 /* of a device token in logs */

/* ---- configuration -------------------------------------------------------- */

typedef struct {
    int64_t max_devices;
    int64_t imrepo_batch;
    int64_t followup_delay_ms;
    int64_t max_followups;
    int64_t max_retry_after_ms;
    int64_t ledger_slots;
    int64_t ledger_ttl_ms;
    int default_priority; /* 0 high, 1 normal */
} push_conf_t;

static const char *const prio_choices[] = {"high", "normal", NULL};

#define PC(f) offsetof(push_conf_t, f)
static const cfg_field_t push_fields[] = {
    {.key = "max_devices",
     .type = CFG_INT,
     .offset = PC(max_devices),
     .def = "20000",
     .min = 1,
     .max = 1000000,
     .help = "devices one task may resolve to (more: dead-lettered unsent)"},
    {.key = "imrepo_batch",
     .type = CFG_INT,
     .offset = PC(imrepo_batch),
     .def = "500",
     .min = 1,
     .max = 10000,
     .help = "user ids per im-repo GetUserDevices call"},
    {.key = "followup_delay",
     .type = CFG_DURATION,
     .offset = PC(followup_delay_ms),
     .def = "1s",
     .min = 0,
     .max = 3600000,
     .help = "least wait before a follow-up retries devices that failed transiently"},
    {.key = "max_followups",
     .type = CFG_INT,
     .offset = PC(max_followups),
     .def = "5",
     .min = 0,
     .max = 100,
     .help = "follow-up generations of one push; then transient failures are final"},
    {.key = "max_retry_after",
     .type = CFG_DURATION,
     .offset = PC(max_retry_after_ms),
     .def = "10m",
     .min = 0,
     .max = 86400000,
     .help = "a longer Retry-After is cut to this"},
    {.key = "ledger_slots",
     .type = CFG_INT,
     .offset = PC(ledger_slots),
     .def = "262144",
     .min = 64,
     .max = 1 << 28,
     .help = "slots of the sent-ledger (16 bytes each): settled devices remembered per process"},
    {.key = "ledger_ttl",
     .type = CFG_DURATION,
     .offset = PC(ledger_ttl_ms),
     .def = "1h",
     .min = 1000,
     .max = 86400000,
     .help = "longest a settled device is remembered"},
    {.key = "default_priority",
     .type = CFG_ENUM,
     .offset = PC(default_priority),
     .def = "high",
     .choices = prio_choices,
     .help = "priority of notifications that do not say"},
};

/* ---- state ------------------------------------------------------------------ */

enum { PROV_APNS = 0, PROV_FCM = 1, PROV_NONE = 2, NPROV = 3 };
static const char *const prov_names[NPROV] = {"apns", "fcm", "none"};

typedef struct {
    push_conf_t c;
    repo_conf_t *repo_conf; /* until start hands it to the client */
    repo_client_t *repo;
    push_apns_t *apns;
    push_fcm_t *fcm;
    push_h2_t *h2;
    push_ledger_t *ledger;
    metrics_family_t *f_failed;
    metrics_series_t *m_sent[NPROV], *m_removed[NPROV], *m_retries[NPROV], *m_refresh[NPROV];
    metrics_series_t *m_skipped, *m_followups, *m_expired;
} push_state_t;

static int push_configure(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    push_state_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg_bind(cfg, "push", push_fields, sizeof(push_fields) / sizeof(push_fields[0]), &s->c,
                 NULL, err, errlen))
        goto fail;
    s->repo_conf = repo_conf_new();
    if (!s->repo_conf || repo_conf_bind(s->repo_conf, cfg, "imrepo", err, errlen))
        goto fail;
    if (push_apns_configure(&s->apns, cfg, err, errlen) ||
        push_fcm_configure(&s->fcm, cfg, err, errlen))
        goto fail;
    *state = s;
    return 0;
fail:
    repo_conf_destroy(s->repo_conf);
    push_apns_free(&s->apns);
    push_fcm_free(&s->fcm);
    free(s);
    return -1;
}

static void push_metrics(push_state_t *s, metrics_registry_t *reg)
{
    static const char *const lp[] = {"provider"};
    static const char *const lpr[] = {"provider", "reason"};
    metrics_family_t *sent = metrics_counter_new(reg, "imtask_push_sent_total",
                                                 "Notifications the provider accepted", 1, lp);
    s->f_failed = metrics_counter_new(
        reg, "imtask_push_failed_total",
        "Provider answers other than success, and devices given up, by reason", 2, lpr);
    metrics_family_t *removed =
        metrics_counter_new(reg, "imtask_push_tokens_removed_total",
                            "Invalid device tokens removed through im-repo", 1, lp);
    metrics_family_t *retries = metrics_counter_new(
        reg, "imtask_push_retries_total",
        "Devices handed to a retry (a follow-up task, or the task retried whole)", 1, lp);
    metrics_family_t *refresh = metrics_counter_new(
        reg, "imtask_push_auth_refreshes_total",
        "Provider tokens replaced because the provider said they expired", 1, lp);
    for (int i = 0; i < PROV_NONE; i++) { /* "none" devices only fail */
        s->m_sent[i] = metrics_series_get1(sent, prov_names[i]);
        s->m_removed[i] = metrics_series_get1(removed, prov_names[i]);
        s->m_retries[i] = metrics_series_get1(retries, prov_names[i]);
        s->m_refresh[i] = metrics_series_get1(refresh, prov_names[i]);
    }
    s->m_skipped = metrics_series_get0(metrics_counter_new(
        reg, "imtask_push_skipped_total",
        "Devices not pushed again because this process already settled them (sent-ledger)", 0,
        NULL));
    s->m_followups = metrics_series_get0(metrics_counter_new(
        reg, "imtask_push_followups_total",
        "Follow-up tasks enqueued with only the devices that failed transiently", 0, NULL));
    s->m_expired = metrics_series_get0(metrics_counter_new(
        reg, "imtask_push_tasks_expired_total",
        "Push tasks past their notification's time to live: nothing sent", 0, NULL));
}

static int push_start(void *state, app_t *app, char *err, size_t errlen)
{
    push_state_t *s = state;
    push_h2_conf_t hc = {.metrics = app ? app_metrics(app) : NULL};
    if (app)
        push_metrics(s, app_metrics(app));
    s->ledger = push_ledger_new((size_t)s->c.ledger_slots, s->c.ledger_ttl_ms);
    if (!s->ledger) {
        snprintf(err, errlen, "out of memory (ledger)");
        return -1;
    }
    if (push_h2_new(&s->h2, &hc, err, errlen))
        return -1;
    if (push_apns_start(s->apns, s->h2, NULL, NULL, err, errlen) ||
        push_fcm_start(s->fcm, s->h2, NULL, NULL, err, errlen))
        return -1;
    if (push_apns_napps(s->apns) + push_fcm_napps(s->fcm) == 0)
        log_warn("no provider app configured (apns.apps, fcm.apps): every device fails as "
                 "no_app");
    if (push_h2_start(s->h2, err, errlen))
        return -1;
    char rerr[512];
    if (repo_client_new(&s->repo, s->repo_conf, rerr, sizeof(rerr))) {
        snprintf(err, errlen, "imrepo: %s", rerr);
        return -1;
    }
    s->repo_conf = NULL;
    log_info("push: %d APNs and %d FCM apps; sent-ledger %" PRId64 " slots, ttl %" PRId64 " ms",
             push_apns_napps(s->apns), push_fcm_napps(s->fcm), s->c.ledger_slots,
             s->c.ledger_ttl_ms);
    return 0;
}

static void push_destroy(void *state)
{
    push_state_t *s = state;
    if (!s)
        return;
    repo_client_destroy(&s->repo);
    push_h2_destroy(&s->h2);
    push_apns_free(&s->apns);
    push_fcm_free(&s->fcm);
    push_ledger_free(&s->ledger);
    repo_conf_destroy(s->repo_conf);
    free(s);
}

/* ---- one task ------------------------------------------------------------------ */

/* Everything one process() call owns. */
typedef struct {
    push_state_t *s;
    dispatch_task_t *t;
    Imtask__V1__PushTask *pt;
    const char *root;
    push_note_t note;
    int64_t now, expires_at;

    /* devices: the task's own, then those from im-repo (pointing into the
     * responses kept in resps) */
    Imtask__V1__PushDevice *repo_devs;
    size_t nrepo_devs;
    ImRepo__V1__GetUserDevicesResponse **resps;
    size_t nresps;
    push_job_t *jobs;
    int *prov; /* provider of each job */
    size_t njobs;

    push_buf_t apns_payload;
    bool apns_built, apns_bad;
    push_fcm_msg_t fcm_msg;
    bool fcm_built, fcm_bad;
    char apns_err[160], fcm_err[160];

    /* the outcome */
    size_t sent, invalid, permanent, transient, skipped;
    int64_t retry_at;      /* the latest Retry-After of the transient failures (Unix ms), 0: none */
    char first_error[160]; /* the first transport error of the task, for its log line */
    Imtask__V1__PushTokenRemoval **removals;
    size_t nremovals;
} run_t;

static bool task_cancelled(void *t)
{
    return dispatch_task_cancelled(t);
}

static void fail_count(run_t *r, int prov, const char *reason, double n)
{
    const char *lv[] = {prov_names[prov], reason};
    metrics_counter_add(metrics_series_get(r->s->f_failed, lv), n);
}

/* Copies at most LOG_TOKEN_CHARS of a token for a log line. */
static const char *token_hint(const char *tok, char *buf)
{
    snprintf(buf, LOG_TOKEN_CHARS + 4, "%.*s...", LOG_TOKEN_CHARS, tok ? tok : "");
    return buf;
}

/* im-repo: the devices of the task's users, in batches. */
static dispatch_result_t resolve_users(run_t *r)
{
    Imtask__V1__PushTask *pt = r->pt;
    size_t batch = (size_t)r->s->c.imrepo_batch, total = pt->n_devices;
    repo_md_t md[] = {{"traceparent", dispatch_task_traceparent(r->t)}};
    repo_call_opts_t opts = {.md = md, .nmd = md[0].value && md[0].value[0] ? 1 : 0};

    if (pt->n_user_ids == 0)
        return dispatch_done();
    r->resps = calloc((pt->n_user_ids + batch - 1) / batch, sizeof(*r->resps));
    if (!r->resps)
        return dispatch_retry(0, "out of memory");
    for (size_t off = 0; off < pt->n_user_ids; off += batch) {
        ImRepo__V1__GetUserDevicesRequest req = IM_REPO__V1__GET_USER_DEVICES_REQUEST__INIT;
        ImRepo__V1__GetUserDevicesResponse *resp = NULL;
        repo_status_t st;
        req.user_ids = pt->user_ids + off;
        req.n_user_ids = pt->n_user_ids - off < batch ? pt->n_user_ids - off : batch;
        if (repo_get_user_devices(r->s->repo, &req, &opts, &resp, &st) != REPO_ERR_OK) {
            if (repo_err_is_retriable(st.code))
                return dispatch_retry(0, "im-repo GetUserDevices: %s: %s", repo_err_name(st.code),
                                      st.message);
            return dispatch_dead("im-repo GetUserDevices: %s: %s", repo_err_name(st.code),
                                 st.message);
        }
        r->resps[r->nresps++] = resp;
        total += resp->n_devices;
        if (total > (size_t)r->s->c.max_devices)
            return dispatch_dead("the task's users have more than %" PRId64
                                 " devices (push.max_devices); nothing was sent",
                                 r->s->c.max_devices);
    }
    r->repo_devs = calloc(total - pt->n_devices + 1, sizeof(*r->repo_devs));
    if (!r->repo_devs)
        return dispatch_retry(0, "out of memory");
    for (size_t i = 0; i < r->nresps; i++) {
        for (size_t k = 0; k < r->resps[i]->n_devices; k++) {
            const ImRepo__V1__Device *d = r->resps[i]->devices[k];
            Imtask__V1__PushDevice *o = &r->repo_devs[r->nrepo_devs++];
            imtask__v1__push_device__init(o);
            o->user_id = d->user_id;
            o->platform = (Imtask__V1__PushPlatform)d->platform; /* same numbers */
            o->token = d->token;
            o->app_id = d->app_id;
            o->sandbox = d->sandbox;
            o->locale = d->locale;
            o->device_id = d->device_id;
        }
    }
    return dispatch_done();
}

/* The jobs: distinct (platform, token) pairs this process has not settled. */
static int make_jobs(run_t *r)
{
    size_t n = r->pt->n_devices + r->nrepo_devs, cap = 64;
    while (cap < 2 * n)
        cap <<= 1;
    uint64_t *seen = calloc(cap, sizeof(uint64_t));
    r->jobs = calloc(n + 1, sizeof(*r->jobs));
    r->prov = calloc(n + 1, sizeof(*r->prov));
    if (!seen || !r->jobs || !r->prov) {
        free(seen);
        return -1;
    }
    int64_t mono = clock_mono_ms();
    for (size_t i = 0; i < n; i++) {
        const Imtask__V1__PushDevice *d =
            i < r->pt->n_devices ? r->pt->devices[i] : &r->repo_devs[i - r->pt->n_devices];
        uint64_t key = push_ledger_key(r->root, (int)d->platform, d->token);
        size_t k;
        for (k = key & (cap - 1); seen[k] && seen[k] != key; k = (k + 1) & (cap - 1)) {
        }
        if (seen[k] == key)
            continue; /* the same device twice in one task */
        seen[k] = key;
        if (push_ledger_has(r->s->ledger, key, mono)) {
            r->skipped++;
            continue;
        }
        push_job_t *j = &r->jobs[r->njobs];
        j->dev = d;
        j->app = -1;
        j->req.lane = -1;
        j->v.retry_after_ms = -1;
        r->prov[r->njobs] = d->platform == IMTASK__V1__PUSH_PLATFORM__PUSH_PLATFORM_APNS ? PROV_APNS
                            : d->platform == IMTASK__V1__PUSH_PLATFORM__PUSH_PLATFORM_FCM
                                ? PROV_FCM
                                : PROV_NONE;
        r->njobs++;
    }
    free(seen);
    return 0;
}

static void set_verdict(push_job_t *j, push_outcome_t o, const char *reason)
{
    j->v.outcome = o;
    j->v.retry_after_ms = -1;
    snprintf(j->v.reason, sizeof(j->v.reason), "%s", reason);
}

/* The bearer strings of one round, per app of each provider. */
typedef struct {
    char (*apns)[PUSH_JWS_MAX + 16];
    uint64_t *apns_gen;
    bool *apns_ok;
    char (*fcm)[PUSH_BEARER_MAX + 16];
    uint64_t *fcm_gen;
    bool *fcm_ok;
} bearers_t;

/* Builds the request of job i; on failure sets its verdict. Returns true
 * when it is ready to send. */
static bool prepare(run_t *r, size_t i, const bearers_t *b)
{
    push_job_t *j = &r->jobs[i];
    char err[256];
    int p = r->prov[i];
    if (p == PROV_NONE) {
        set_verdict(j, PUSH_PERMANENT, "unknown_platform");
        return false;
    }
    if (p == PROV_APNS) {
        j->app = push_apns_app_for(r->s->apns, j->dev->app_id);
        if (j->app < 0) {
            set_verdict(j, PUSH_PERMANENT, "no_app");
            return false;
        }
        if (!r->apns_built) {
            r->apns_built = true;
            r->apns_bad = push_apns_payload(&r->note, &r->apns_payload, NULL, r->apns_err,
                                            sizeof(r->apns_err)) != 0;
        }
        if (r->apns_bad) {
            set_verdict(j, PUSH_PERMANENT, "payload_too_large");
            return false;
        }
        if (!b->apns_ok[j->app]) {
            set_verdict(j, PUSH_TRANSIENT, "signing");
            return false;
        }
        if (push_apns_prepare(r->s->apns, j, &r->note, &r->apns_payload, b->apns[j->app],
                              b->apns_gen[j->app], err, sizeof(err))) {
            log_warn("apns: device %s not pushed: %s", j->dev->device_id, err);
            set_verdict(j, PUSH_PERMANENT, "bad_request");
            return false;
        }
        return true;
    }
    j->app = push_fcm_app_for(r->s->fcm, j->dev->app_id);
    if (j->app < 0) {
        set_verdict(j, PUSH_PERMANENT, "no_app");
        return false;
    }
    if (!r->fcm_built) {
        r->fcm_built = true;
        r->fcm_bad =
            push_fcm_message(&r->note, &r->fcm_msg, NULL, r->fcm_err, sizeof(r->fcm_err)) != 0;
    }
    if (r->fcm_bad) {
        set_verdict(j, PUSH_PERMANENT, "payload_too_large");
        return false;
    }
    if (!b->fcm_ok[j->app]) {
        set_verdict(j, PUSH_TRANSIENT, "oauth");
        return false;
    }
    if (push_fcm_prepare(r->s->fcm, j, &r->fcm_msg, b->fcm[j->app], b->fcm_gen[j->app], err,
                         sizeof(err))) {
        log_warn("fcm: device %s not pushed: %s", j->dev->device_id, err);
        set_verdict(j, PUSH_PERMANENT, "bad_request");
        return false;
    }
    return true;
}

/* One round: credentials of the apps used, prepare the jobs selected
 * (sel[i]), send them, classify. */
static void send_round(run_t *r, const bool *sel)
{
    int na = push_apns_napps(r->s->apns), nf = push_fcm_napps(r->s->fcm);
    bearers_t b = {
        .apns = calloc((size_t)na + 1, sizeof(*b.apns)),
        .apns_gen = calloc((size_t)na + 1, sizeof(uint64_t)),
        .apns_ok = calloc((size_t)na + 1, sizeof(bool)),
        .fcm = calloc((size_t)nf + 1, sizeof(*b.fcm)),
        .fcm_gen = calloc((size_t)nf + 1, sizeof(uint64_t)),
        .fcm_ok = calloc((size_t)nf + 1, sizeof(bool)),
    };
    bool *awant = calloc((size_t)na + 1, sizeof(bool)), *fwant = calloc((size_t)nf + 1, 1);
    push_h2_req_t **reqs = calloc(r->njobs + 1, sizeof(*reqs));
    size_t nreq = 0;

    if (!b.apns || !b.apns_gen || !b.apns_ok || !b.fcm || !b.fcm_gen || !b.fcm_ok || !awant ||
        !fwant || !reqs) {
        for (size_t i = 0; i < r->njobs; i++) {
            if (sel[i])
                set_verdict(&r->jobs[i], PUSH_TRANSIENT, "out_of_memory");
        }
        goto out;
    }
    /* the credentials of the apps this round uses (an FCM fetch blocks) */
    for (size_t i = 0; i < r->njobs; i++) {
        if (!sel[i])
            continue;
        if (r->prov[i] == PROV_APNS) {
            int a = push_apns_app_for(r->s->apns, r->jobs[i].dev->app_id);
            if (a >= 0)
                awant[a] = true;
        } else if (r->prov[i] == PROV_FCM) {
            int a = push_fcm_app_for(r->s->fcm, r->jobs[i].dev->app_id);
            if (a >= 0)
                fwant[a] = true;
        }
    }
    for (int a = 0; a < na; a++) {
        if (!awant[a])
            continue;
        b.apns_ok[a] =
            push_apns_bearer(r->s->apns, a, b.apns[a], sizeof(b.apns[a]), &b.apns_gen[a]) == 0;
        if (!b.apns_ok[a])
            log_error("apns app %s: cannot sign a provider token",
                      push_apns_app_name(r->s->apns, a));
    }
    for (int a = 0; a < nf; a++) {
        char err[512];
        if (!fwant[a])
            continue;
        b.fcm_ok[a] = push_fcm_auth(r->s->fcm, a, b.fcm[a], sizeof(b.fcm[a]), &b.fcm_gen[a], err,
                                    sizeof(err)) == 0;
        if (!b.fcm_ok[a])
            log_warn("fcm app %s: %s", push_fcm_app_name(r->s->fcm, a), err);
    }
    for (size_t i = 0; i < r->njobs; i++) {
        if (sel[i] && prepare(r, i, &b))
            reqs[nreq++] = &r->jobs[i].req;
    }
    push_h2_run(r->s->h2, reqs, nreq, task_cancelled, r->t);
    int64_t now = clock_wall_ms();
    for (size_t k = 0; k < nreq; k++) {
        push_job_t *j = (push_job_t *)((char *)reqs[k] - offsetof(push_job_t, req));
        size_t i = (size_t)(j - r->jobs);
        if (r->prov[i] == PROV_APNS)
            push_apns_classify(&j->req, now, r->s->c.max_retry_after_ms, &j->v);
        else
            push_fcm_classify(&j->req, now, r->s->c.max_retry_after_ms, &j->v);
        /* Retry-After counts from the answer, not from the task's start */
        j->retry_at_ms = j->v.retry_after_ms >= 0 ? now + j->v.retry_after_ms : 0;
    }
out:
    free(b.apns);
    free(b.apns_gen);
    free(b.apns_ok);
    free(b.fcm);
    free(b.fcm_gen);
    free(b.fcm_ok);
    free(awant);
    free(fwant);
    free(reqs);
}

/* After AUTH_EXPIRED: retire the credentials once, send those jobs again
 * once; a second AUTH_EXPIRED is transient. */
static void auth_round(run_t *r)
{
    bool *sel = calloc(r->njobs + 1, sizeof(bool));
    size_t n = 0;
    if (!sel)
        return;
    for (size_t i = 0; i < r->njobs; i++) {
        push_job_t *j = &r->jobs[i];
        if (j->v.outcome != PUSH_AUTH_EXPIRED)
            continue;
        bool retired = r->prov[i] == PROV_APNS ? push_apns_auth_expired(r->s->apns, j)
                                               : push_fcm_auth_expired(r->s->fcm, j);
        if (retired) {
            metrics_counter_add(r->s->m_refresh[r->prov[i]], 1);
            log_info("%s app %s: provider token expired (%s): refreshing it",
                     prov_names[r->prov[i]],
                     r->prov[i] == PROV_APNS ? push_apns_app_name(r->s->apns, j->app)
                                             : push_fcm_app_name(r->s->fcm, j->app),
                     j->v.reason);
        }
        fail_count(r, r->prov[i], j->v.reason, 1);
        push_h2_req_clear(&j->req);
        sel[i] = true;
        n++;
    }
    if (n > 0) {
        send_round(r, sel);
        for (size_t i = 0; i < r->njobs; i++) {
            if (sel[i] && r->jobs[i].v.outcome == PUSH_AUTH_EXPIRED) {
                r->jobs[i].v.outcome = PUSH_TRANSIENT; /* refreshed and still refused */
                r->jobs[i].v.retry_after_ms = -1;
            }
        }
    }
    free(sel);
}

static int add_removal(run_t *r, Imtask__V1__PushPlatform platform, const char *token,
                       const char *reason)
{
    Imtask__V1__PushTokenRemoval *t = calloc(1, sizeof(*t));
    Imtask__V1__PushTokenRemoval **arr =
        realloc(r->removals, (r->nremovals + 1) * sizeof(*r->removals));
    if (!t || !arr) {
        free(t);
        if (arr)
            r->removals = arr;
        return -1;
    }
    r->removals = arr;
    imtask__v1__push_token_removal__init(t);
    t->platform = platform;
    t->token = (char *)token; /* points into the task or a response: lives as long */
    t->reason = (char *)reason;
    r->removals[r->nremovals++] = t;
    return 0;
}

/* Outcome events for the report (docs/report.md): one per provider and
 * result of this run, not one per device. */
static void push_outcomes(const run_t *r)
{
    int64_t n[NPROV][PUSH_PERMANENT + 1] = {{0}};
    for (size_t i = 0; i < r->njobs; i++)
        n[r->prov[i]][r->jobs[i].v.outcome]++;
    for (int p = 0; p < NPROV; p++) {
        for (int o = 0; o <= PUSH_PERMANENT; o++) {
            dispatch_outcome_label_t l[] = {{"provider", prov_names[p]},
                                            {"result", push_outcome_name((push_outcome_t)o)}};
            dispatch_outcome(r->t, OUTCOME_PUSH_RESULT, l, 2, n[p][o]);
        }
    }
}

/* Settle every job: ledger, metrics, removals, retries. */
static void settle(run_t *r)
{
    int64_t mono = clock_mono_ms();
    char hint[LOG_TOKEN_CHARS + 4];
    for (size_t i = 0; i < r->njobs; i++) {
        push_job_t *j = &r->jobs[i];
        int p = r->prov[i];
        uint64_t key = push_ledger_key(r->root, (int)j->dev->platform, j->dev->token);
        switch (j->v.outcome) {
        case PUSH_OK:
            push_ledger_add(r->s->ledger, key, mono);
            metrics_counter_add(r->s->m_sent[p], 1);
            r->sent++;
            break;
        case PUSH_INVALID_TOKEN:
            push_ledger_add(r->s->ledger, key, mono);
            fail_count(r, p, j->v.reason, 1);
            if (add_removal(r, j->dev->platform, j->dev->token, j->v.reason))
                log_error("out of memory: token %s not removed", token_hint(j->dev->token, hint));
            r->invalid++;
            break;
        case PUSH_PERMANENT:
            push_ledger_add(r->s->ledger, key, mono);
            fail_count(r, p, j->v.reason, 1);
            log_warn("%s: device %s (user %s, token %s) not pushed for good: %s", prov_names[p],
                     j->dev->device_id, j->dev->user_id, token_hint(j->dev->token, hint),
                     j->v.reason);
            r->permanent++;
            break;
        case PUSH_TRANSIENT:
        case PUSH_AUTH_EXPIRED:
            fail_count(r, p, j->v.reason, 1);
            if (!r->first_error[0] && j->req.err != PUSH_H2_OK)
                snprintf(r->first_error, sizeof(r->first_error), "%.40s: %.100s", j->v.reason,
                         j->req.error);
            if (j->retry_at_ms > r->retry_at)
                r->retry_at = j->retry_at_ms;
            r->transient++;
            break;
        }
    }
    push_outcomes(r);
}

/* RemoveInvalidTokens for what this run found and what the task carried.
 * Returns true when done (or given up for good); false: carry them on. */
static bool remove_tokens(run_t *r)
{
    Imtask__V1__PushTask *pt = r->pt;
    size_t n = r->nremovals + pt->n_remove_tokens;
    repo_md_t md[] = {{"traceparent", dispatch_task_traceparent(r->t)}};
    repo_call_opts_t opts = {.md = md, .nmd = md[0].value && md[0].value[0] ? 1 : 0};
    if (n == 0)
        return true;
    ImRepo__V1__InvalidToken *items = calloc(n, sizeof(*items));
    ImRepo__V1__InvalidToken **ptrs = calloc(n, sizeof(*ptrs));
    ImRepo__V1__RemoveInvalidTokensRequest req = IM_REPO__V1__REMOVE_INVALID_TOKENS_REQUEST__INIT;
    ImRepo__V1__RemoveInvalidTokensResponse *resp = NULL;
    repo_status_t st;
    size_t per[NPROV] = {0};
    bool done = true;
    if (!items || !ptrs) {
        free(items);
        free(ptrs);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const Imtask__V1__PushTokenRemoval *t =
            i < r->nremovals ? r->removals[i] : pt->remove_tokens[i - r->nremovals];
        im_repo__v1__invalid_token__init(&items[i]);
        items[i].platform = (ImRepo__V1__PushPlatform)t->platform;
        items[i].token = t->token;
        items[i].reason = t->reason;
        ptrs[i] = &items[i];
        per[t->platform == IMTASK__V1__PUSH_PLATFORM__PUSH_PLATFORM_APNS  ? PROV_APNS
            : t->platform == IMTASK__V1__PUSH_PLATFORM__PUSH_PLATFORM_FCM ? PROV_FCM
                                                                          : PROV_NONE]++;
    }
    req.tokens = ptrs;
    req.n_tokens = n;
    if (repo_remove_invalid_tokens(r->s->repo, &req, &opts, &resp, &st) == REPO_ERR_OK) {
        for (int p = 0; p < NPROV; p++)
            metrics_counter_add(r->s->m_removed[p], (double)per[p]);
        log_info("removed %zu invalid tokens through im-repo (%lld were still there)", n,
                 (long long)resp->removed);
        repo_response_free(&resp->base);
    } else if (repo_err_is_retriable(st.code)) {
        log_warn("im-repo RemoveInvalidTokens: %s: %s; a follow-up task will remove the %zu "
                 "tokens",
                 repo_err_name(st.code), st.message, n);
        done = false;
    } else {
        log_error("im-repo RemoveInvalidTokens refused %zu tokens: %s: %s (not retried)", n,
                  repo_err_name(st.code), st.message);
    }
    free(items);
    free(ptrs);
    return done;
}

/* The follow-up: the same notification, the devices that failed
 * transiently, and the removals still to do. */
static int enqueue_followup(run_t *r, bool with_devices, bool carry_removals, int64_t due_in,
                            char *id_out, size_t idlen)
{
    Imtask__V1__PushTask *pt = r->pt;
    Imtask__V1__PushTask f = IMTASK__V1__PUSH_TASK__INIT;
    Imtask__V1__PushDevice **devs = NULL;
    Imtask__V1__PushTokenRemoval **rem = NULL;
    size_t nd = 0, nr = 0;
    uint8_t *buf = NULL;
    int rc = -1;

    if (with_devices) {
        devs = calloc(r->njobs + 1, sizeof(*devs));
        if (!devs)
            goto out;
        for (size_t i = 0; i < r->njobs; i++) {
            if (r->jobs[i].v.outcome == PUSH_TRANSIENT || r->jobs[i].v.outcome == PUSH_AUTH_EXPIRED)
                devs[nd++] = (Imtask__V1__PushDevice *)r->jobs[i].dev;
        }
    }
    if (carry_removals) {
        rem = calloc(r->nremovals + pt->n_remove_tokens + 1, sizeof(*rem));
        if (!rem)
            goto out;
        for (size_t i = 0; i < r->nremovals; i++)
            rem[nr++] = r->removals[i];
        for (size_t i = 0; i < pt->n_remove_tokens; i++)
            rem[nr++] = pt->remove_tokens[i];
    }
    f.notification = pt->notification;
    f.source = pt->source;
    f.group_id = pt->group_id;
    f.devices = devs;
    f.n_devices = nd;
    f.root_task_id = (char *)r->root;
    f.generation = pt->generation + 1;
    f.not_before_ms = r->now + due_in;
    f.expires_at_ms = r->expires_at;
    f.remove_tokens = rem;
    f.n_remove_tokens = nr;
    size_t len = imtask__v1__push_task__get_packed_size(&f);
    buf = malloc(len + 1);
    if (!buf)
        goto out;
    imtask__v1__push_task__pack(&f, buf);
    /* a deterministic id: a follow-up produced twice is the same task */
    char id[TASK_ID_MAX];
    int k = snprintf(id, sizeof(id), "%s/f%u", r->root, f.generation);
    bool fits = k > 0 && (size_t)k < sizeof(id);
    rc = dispatch_task_enqueue(r->t, "push", fits ? id : NULL, r->root, strlen(r->root), buf, len);
    snprintf(id_out, idlen, "%s", fits ? id : "(random id)");
out:
    free(devs);
    free(rem);
    free(buf);
    return rc;
}

static dispatch_result_t decide(run_t *r)
{
    Imtask__V1__PushTask *pt = r->pt;
    bool removals_done = remove_tokens(r);
    bool carry = !removals_done;
    size_t decided = r->sent + r->invalid + r->permanent;
    char id[TASK_ID_MAX + 16] = "";
    int64_t now = clock_wall_ms();
    int64_t wait = r->retry_at > now ? r->retry_at - now : 0; /* what Retry-After asks */

    metrics_counter_add(r->s->m_skipped, (double)r->skipped);

    log_info("push %s (generation %u): %zu devices: sent %zu, invalid %zu, failed %zu, "
             "transient %zu, already settled %zu%s%s",
             r->root, pt->generation, r->njobs + r->skipped, r->sent, r->invalid, r->permanent,
             r->transient, r->skipped, r->first_error[0] ? "; first transport error: " : "",
             r->first_error);
    if (r->transient == 0 && !carry)
        return dispatch_done();
    if (r->transient > 0 && decided == 0 && r->skipped == 0 && r->nremovals == 0 && !carry) {
        /* nothing went out: the task itself is retried, by the runtime's policy */
        for (size_t i = 0; i < r->njobs; i++)
            metrics_counter_add(r->s->m_retries[r->prov[i]], 1);
        return dispatch_retry(wait, "all %zu devices failed transiently (e.g. %s)", r->transient,
                              r->jobs[0].v.reason);
    }
    bool with_devices = r->transient > 0 && pt->generation < (uint32_t)r->s->c.max_followups;
    if (r->transient > 0 && !with_devices) {
        for (size_t i = 0; i < r->njobs; i++) {
            if (r->jobs[i].v.outcome == PUSH_TRANSIENT) {
                fail_count(r, r->prov[i], "retries_exhausted", 1);
                r->jobs[i].v.outcome = PUSH_PERMANENT;
            }
        }
        log_error("push %s: %zu devices still failing after %u follow-ups: given up", r->root,
                  r->transient, pt->generation);
    }
    if (!with_devices && !carry)
        return dispatch_done();
    int64_t due = r->s->c.followup_delay_ms;
    if (wait > due)
        due = wait;
    r->now = now;
    if (enqueue_followup(r, with_devices, carry, due, id, sizeof(id)))
        return dispatch_retry(0, "cannot enqueue the follow-up task");
    metrics_counter_add(r->s->m_followups, 1);
    if (with_devices) {
        for (size_t i = 0; i < r->njobs; i++) {
            if (r->jobs[i].v.outcome == PUSH_TRANSIENT || r->jobs[i].v.outcome == PUSH_AUTH_EXPIRED)
                metrics_counter_add(r->s->m_retries[r->prov[i]], 1);
        }
    }
    log_info("push %s: follow-up %s with %zu devices and %zu token removals, due in %" PRId64 " ms",
             r->root, id, with_devices ? r->transient : 0,
             carry ? r->nremovals + pt->n_remove_tokens : 0, due);
    return dispatch_done();
}

static void run_free(run_t *r)
{
    for (size_t i = 0; i < r->njobs; i++)
        push_job_clear(&r->jobs[i]);
    free(r->jobs);
    free(r->prov);
    for (size_t i = 0; i < r->nremovals; i++)
        free(r->removals[i]);
    free(r->removals);
    for (size_t i = 0; i < r->nresps; i++)
        repo_response_free(&r->resps[i]->base);
    free(r->resps);
    free(r->repo_devs);
    push_buf_free(&r->apns_payload);
    push_fcm_msg_free(&r->fcm_msg);
}

/* What the notification's options come to. */
static void make_note(run_t *r)
{
    const Imtask__V1__PushNotification *n = r->pt->notification;
    push_note_t *note = &r->note;
    note->n = n;
    note->root_task_id = r->root;
    note->high_priority = n->priority == IMTASK__V1__PUSH_PRIORITY__PUSH_PRIORITY_HIGH ||
                          (n->priority == IMTASK__V1__PUSH_PRIORITY__PUSH_PRIORITY_UNSPECIFIED &&
                           r->s->c.default_priority == 0);
    push_collapse_id(n, note->collapse_id);
    if (r->expires_at > 0) {
        note->ttl_set = true;
        note->expiration_s = r->expires_at / 1000;
        note->ttl_seconds = (r->expires_at - r->now) / 1000;
    } else if (n->ttl_set_case == IMTASK__V1__PUSH_NOTIFICATION__TTL_SET_TTL_SECONDS) {
        note->ttl_set = true; /* ttl 0: now or never */
        note->expiration_s = 0;
        note->ttl_seconds = 0;
    }
    snprintf(note->expiration, sizeof(note->expiration), "%" PRId64, note->expiration_s);
}

static dispatch_result_t push_process(void *state, dispatch_task_t *t)
{
    push_state_t *s = state;
    size_t plen;
    const uint8_t *p = dispatch_task_payload(t, &plen);
    run_t r = {.s = s, .t = t};
    dispatch_result_t res;

    r.pt = imtask__v1__push_task__unpack(NULL, plen, p);
    if (!r.pt)
        return dispatch_dead("the payload is not a PushTask");
    if (!r.pt->notification) {
        res = dispatch_dead("PushTask without a notification");
        goto out;
    }
    r.root = r.pt->root_task_id && r.pt->root_task_id[0] ? r.pt->root_task_id : dispatch_task_id(t);
    r.now = clock_wall_ms();

    /* when the notification stops being worth sending */
    const Imtask__V1__PushNotification *n = r.pt->notification;
    r.expires_at = r.pt->expires_at_ms;
    if (!r.expires_at && n->ttl_set_case == IMTASK__V1__PUSH_NOTIFICATION__TTL_SET_TTL_SECONDS &&
        n->ttl_seconds > 0) {
        int64_t base = n->sent_at_ms > 0 ? n->sent_at_ms : dispatch_task_created_ms(t);
        r.expires_at = (base > 0 ? base : r.now) + n->ttl_seconds * 1000;
    }
    if (r.expires_at > 0 && r.now >= r.expires_at) {
        metrics_counter_add(s->m_expired, 1);
        log_info("push %s: the notification expired %" PRId64 " ms ago: nothing sent", r.root,
                 r.now - r.expires_at);
        res = dispatch_done();
        goto out;
    }
    if (r.pt->not_before_ms > r.now + 20) { /* a follow-up not due yet */
        res = dispatch_retry(r.pt->not_before_ms - r.now, "follow-up due in %" PRId64 " ms",
                             r.pt->not_before_ms - r.now);
        goto out;
    }
    if (r.pt->n_devices > (size_t)s->c.max_devices) {
        res = dispatch_dead("%zu devices in the task, over push.max_devices", r.pt->n_devices);
        goto out;
    }
    res = resolve_users(&r);
    if (res.status != DISPATCH_DONE)
        goto out;
    if (make_jobs(&r)) {
        res = dispatch_retry(0, "out of memory");
        goto out;
    }
    make_note(&r);
    if (r.njobs > 0) {
        bool *all = malloc(r.njobs);
        if (!all) {
            res = dispatch_retry(0, "out of memory");
            goto out;
        }
        memset(all, 1, r.njobs);
        send_round(&r, all);
        free(all);
        auth_round(&r);
    }
    settle(&r);
    res = decide(&r);
out:
    run_free(&r);
    imtask__v1__push_task__free_unpacked(r.pt, NULL);
    return res;
}

const dispatch_ops_t push_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "push",
    .configure = push_configure,
    .start = push_start,
    .process = push_process,
    .destroy = push_destroy,
};
