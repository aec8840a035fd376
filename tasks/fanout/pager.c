/* pager.c: the member walks of one slice, pipelined over im-repo.
 *
 * Pages go through a ring of pages_in_flight slots, in order:
 *   EMPTY -> MEMBERS (GetGroupMembers in flight) -> STATUS (the page's
 *   GetMembersOnlineStatus in flight) -> READY -> handed to on_page -> EMPTY
 * Cursor paging makes a walk's member calls a chain: page k+1 needs page k's
 * next_cursor. So a walk's next member call starts from the callback of its
 * previous one (on the client's I/O thread), at the same time as that page's
 * status call, while the worker thread produces earlier pages. A slice may
 * have several walks (im-repo shards), each with one member call in flight:
 * their pages take turns in the ring, so one worker is not held to the
 * round trip of one chain. At most pages_in_flight pages are held, whatever
 * the group size.
 *
 * Threads: callbacks run on the repo client's I/O thread; on_page and the
 * waiting run on the caller's thread. The pager's mutex guards its state; it
 * is never held while calling into the client (calls are claimed under the
 * lock and started after it is released). The pager lives on the caller's
 * stack, so run() returns only once every call it started has called back.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fanout.h"
#include "infra/clock.h"

#define FANOUT_PAGER_POLL_MS 100 /* how often a waiting walk checks cancelled() */

typedef enum { SLOT_EMPTY, SLOT_MEMBERS, SLOT_STATUS, SLOT_READY } fanout_slot_state_t;

typedef struct fanout_pager_s fanout_pager_t;

typedef struct {
    fanout_pager_t *p;
    fanout_slot_state_t state;
    int walk;     /* index in the pager's walks */
    char *cursor; /* the cursor this page was asked with */
    int64_t started_ms;
    ImRepo__V1__GetGroupMembersResponse *members;
    ImRepo__V1__GetMembersOnlineStatusResponse *status;
    const char **ids;
    size_t nids, excluded;
} fanout_slot_t;

struct fanout_pager_s {
    const fanout_pager_opts_t *o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fanout_slot_t *slots;
    int cap;
    int issued;   /* pages whose member call was claimed */
    int consumed; /* pages handed to on_page */
    int calls;    /* calls claimed and not yet called back */
    /* per walk: cursor (where its next page starts), more (members after
     * its last page fetched), and whether its member call is in flight */
    fanout_walk_t walks[FANOUT_WALKS_MAX];
    bool inflight[FANOUT_WALKS_MAX];
    int nwalks;
    int turn; /* the walk asked first at the next claim */
    bool failed;
    fanout_pager_outcome_t outcome;
    repo_status_t st;
    const char *method;
};

static const char fanout_m_members[] = "GetGroupMembers";
static const char fanout_m_status[] = "GetMembersOnlineStatus";

static void fanout_slot_clear(fanout_slot_t *s)
{
    repo_response_free(s->members ? &s->members->base : NULL);
    repo_response_free(s->status ? &s->status->base : NULL);
    free(s->ids);
    free(s->cursor);
    fanout_pager_t *p = s->p;
    memset(s, 0, sizeof(*s));
    s->p = p;
}

/* The first failure wins. Called with the lock held. */
static void fanout_pager_fail_locked(fanout_pager_t *p, fanout_pager_outcome_t outcome,
                                     const char *method, repo_err_t code, const char *msg)
{
    if (p->failed)
        return;
    p->failed = true;
    p->outcome = outcome;
    p->method = method;
    p->st.code = code;
    snprintf(p->st.message, sizeof(p->st.message), "%s", msg ? msg : repo_err_str(code));
}

/* Claim the next member call if a walk may go on: not failed, below the
 * slice's pages and the ring's capacity, a walk with more members and no
 * member call in flight (taking turns). */
static fanout_slot_t *fanout_pager_claim_locked(fanout_pager_t *p)
{
    const fanout_pager_opts_t *o = p->o;
    int w = -1;
    if (p->failed || p->issued >= o->max_pages || p->issued - p->consumed >= p->cap)
        return NULL;
    for (int k = 0; k < p->nwalks && w < 0; k++) {
        int i = (p->turn + k) % p->nwalks;
        if (p->walks[i].more && !p->inflight[i])
            w = i;
    }
    if (w < 0)
        return NULL;
    if (o->issue_until_ms > 0 && p->issued > 0 && clock_mono_ms() >= o->issue_until_ms)
        return NULL; /* the slice's time is up: it ends after the pages begun */
    fanout_slot_t *s = &p->slots[p->issued % p->cap];
    s->cursor = strdup(p->walks[w].cursor);
    if (!s->cursor) {
        fanout_pager_fail_locked(p, FANOUT_PAGER_REPO, fanout_m_members, REPO_ERR__NOMEM,
                                 "out of memory");
        return NULL;
    }
    s->walk = w;
    s->state = SLOT_MEMBERS;
    p->turn = (w + 1) % p->nwalks;
    p->issued++;
    p->inflight[w] = true;
    p->calls++;
    return s;
}

static void fanout_pager_call_failed(fanout_slot_t *s, const char *method, repo_err_t e)
{
    fanout_pager_t *p = s->p;
    pthread_mutex_lock(&p->mu);
    p->calls--;
    if (method == fanout_m_members)
        p->inflight[s->walk] = false;
    fanout_pager_fail_locked(p, FANOUT_PAGER_REPO, method, e, NULL);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void fanout_members_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp);
static void fanout_status_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp);

static repo_call_opts_t fanout_pager_call_opts(const fanout_pager_opts_t *o)
{
    repo_call_opts_t co = {.timeout_ms = o->timeout_ms, .md = o->md, .nmd = o->nmd};
    return co;
}

static void fanout_issue_members(fanout_pager_t *p, fanout_slot_t *s)
{
    const fanout_pager_opts_t *o = p->o;
    ImRepo__V1__GetGroupMembersRequest req = IM_REPO__V1__GET_GROUP_MEMBERS_REQUEST__INIT;
    repo_call_opts_t co = fanout_pager_call_opts(o);
    req.group_id = (char *)o->group_id;
    req.limit = o->batch_size;
    req.cursor = s->cursor;
    if (o->shard_count > 1) {
        req.shard_index = p->walks[s->walk].shard;
        req.shard_count = o->shard_count;
    }
    s->started_ms = clock_mono_ms();
    repo_err_t e = repo_call_async(o->rc, &repo_method_get_group_members, &req.base, &co,
                                   fanout_members_done, s);
    if (e)
        fanout_pager_call_failed(s, fanout_m_members, e);
}

static void fanout_issue_status(fanout_pager_t *p, fanout_slot_t *s)
{
    const fanout_pager_opts_t *o = p->o;
    ImRepo__V1__GetMembersOnlineStatusRequest req =
        IM_REPO__V1__GET_MEMBERS_ONLINE_STATUS_REQUEST__INIT;
    repo_call_opts_t co = fanout_pager_call_opts(o);
    req.n_user_ids = s->nids;
    req.user_ids = (char **)s->ids;
    s->started_ms = clock_mono_ms();
    repo_err_t e = repo_call_async(o->rc, &repo_method_get_members_online_status, &req.base, &co,
                                   fanout_status_done, s);
    if (e)
        fanout_pager_call_failed(s, fanout_m_status, e);
}

/* The page's members that are not excluded, for the status call. Returns
 * REPO_ERR_OK, or the error (_PROTOCOL, _NOMEM) with the reason in msg. */
static repo_err_t fanout_slot_take_members(fanout_slot_t *s, ImRepo__V1__GetGroupMembersResponse *m,
                                           char *msg, size_t msglen)
{
    const fanout_pager_opts_t *o = s->p->o;
    if (m->has_more && (!m->next_cursor || !*m->next_cursor)) {
        snprintf(msg, msglen, "GetGroupMembers: has_more without next_cursor");
        return REPO_ERR__PROTOCOL;
    }
    if (m->has_more && strcmp(m->next_cursor, s->cursor) == 0) {
        snprintf(msg, msglen, "GetGroupMembers: next_cursor did not move");
        return REPO_ERR__PROTOCOL;
    }
    s->ids = malloc((m->n_members ? m->n_members : 1) * sizeof(*s->ids));
    if (!s->ids) {
        snprintf(msg, msglen, "out of memory");
        return REPO_ERR__NOMEM;
    }
    for (size_t i = 0; i < m->n_members; i++) {
        const char *uid = m->members[i]->user_id;
        if (!uid || !*uid || (o->exclude && fanout_exclude_has(o->exclude, uid)))
            s->excluded++;
        else
            s->ids[s->nids++] = uid;
    }
    s->members = m;
    return REPO_ERR_OK;
}

static void fanout_members_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp)
{
    fanout_slot_t *s = opaque;
    fanout_pager_t *p = s->p;
    fanout_slot_t *next = NULL;
    bool need_status = false;
    char msg[REPO_MESSAGE_MAX];

    fanout_metrics_call(p->o->metrics, fanout_m_members, clock_mono_ms() - s->started_ms, st);
    pthread_mutex_lock(&p->mu);
    p->calls--;
    p->inflight[s->walk] = false;
    if (st->code != REPO_ERR_OK) {
        fanout_pager_fail_locked(p, FANOUT_PAGER_REPO, fanout_m_members, st->code, st->message);
    } else if (!p->failed) {
        ImRepo__V1__GetGroupMembersResponse *m = (ImRepo__V1__GetGroupMembersResponse *)resp;
        char *cursor = NULL;
        repo_err_t rc = fanout_slot_take_members(s, m, msg, sizeof(msg));
        if (rc == REPO_ERR_OK && m->has_more && !(cursor = strdup(m->next_cursor))) {
            snprintf(msg, sizeof(msg), "out of memory");
            rc = REPO_ERR__NOMEM;
        }
        if (rc == REPO_ERR_OK) {
            resp = NULL; /* the slot's now */
            free(p->walks[s->walk].cursor);
            p->walks[s->walk].cursor = cursor;
            p->walks[s->walk].more = m->has_more;
            if (s->nids) {
                s->state = SLOT_STATUS;
                p->calls++;
                need_status = true;
            } else {
                s->state = SLOT_READY;
            }
            next = fanout_pager_claim_locked(p);
        } else {
            s->members = NULL; /* resp is freed below, with the strings ids point to */
            free(s->ids);
            s->ids = NULL;
            s->nids = 0;
            fanout_pager_fail_locked(p, FANOUT_PAGER_REPO, fanout_m_members, rc, msg);
        }
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    repo_response_free(resp);
    if (need_status)
        fanout_issue_status(p, s);
    if (next)
        fanout_issue_members(p, next);
}

static void fanout_status_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp)
{
    fanout_slot_t *s = opaque;
    fanout_pager_t *p = s->p;
    char msg[REPO_MESSAGE_MAX];

    fanout_metrics_call(p->o->metrics, fanout_m_status, clock_mono_ms() - s->started_ms, st);
    pthread_mutex_lock(&p->mu);
    p->calls--;
    if (st->code != REPO_ERR_OK) {
        fanout_pager_fail_locked(p, FANOUT_PAGER_REPO, fanout_m_status, st->code, st->message);
    } else if (!p->failed) {
        ImRepo__V1__GetMembersOnlineStatusResponse *r =
            (ImRepo__V1__GetMembersOnlineStatusResponse *)resp;
        bool ok = r->n_statuses == s->nids;
        for (size_t i = 0; ok && i < s->nids; i++) {
            const char *uid = r->statuses[i]->user_id;
            ok = !uid || !*uid || strcmp(uid, s->ids[i]) == 0;
        }
        if (ok) {
            s->status = r;
            s->state = SLOT_READY;
            resp = NULL;
        } else {
            snprintf(msg, sizeof(msg),
                     "GetMembersOnlineStatus: %zu statuses for %zu user ids, not one per id in "
                     "order",
                     r->n_statuses, s->nids);
            fanout_pager_fail_locked(p, FANOUT_PAGER_REPO, fanout_m_status, REPO_ERR__PROTOCOL,
                                     msg);
        }
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    repo_response_free(resp);
}

static void fanout_pager_wait(fanout_pager_t *p, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

void fanout_pager_run(const fanout_pager_opts_t *o, fanout_pager_result_t *r)
{
    fanout_pager_t p = {.o = o};
    pthread_condattr_t ca;
    fanout_slot_t *s;
    bool nomem = false;

    memset(r, 0, sizeof(*r));
    p.nwalks = o->nwalks < 1 ? 1 : o->nwalks > FANOUT_WALKS_MAX ? FANOUT_WALKS_MAX : o->nwalks;
    p.cap = o->pages_in_flight > 0 ? o->pages_in_flight : 1;
    for (int i = 0; i < p.nwalks; i++) {
        const fanout_walk_t *w = o->walks ? &o->walks[i] : NULL;
        p.walks[i].shard = w ? w->shard : 0;
        p.walks[i].cursor = strdup(w && w->cursor ? w->cursor : "");
        p.walks[i].more = true;
        nomem = nomem || !p.walks[i].cursor;
    }
    pthread_mutex_init(&p.mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p.cv, &ca);
    pthread_condattr_destroy(&ca);
    p.slots = calloc((size_t)p.cap, sizeof(*p.slots));
    if (!p.slots || nomem) {
        r->outcome = FANOUT_PAGER_REPO;
        r->method = fanout_m_members;
        r->status.code = REPO_ERR__NOMEM;
        snprintf(r->status.message, sizeof(r->status.message), "out of memory");
        goto out;
    }
    for (int i = 0; i < p.cap; i++)
        p.slots[i].p = &p;

    pthread_mutex_lock(&p.mu);
    for (;;) {
        fanout_slot_t *h = &p.slots[p.consumed % p.cap];
        if (!p.failed && p.consumed < p.issued && h->state == SLOT_READY) {
            fanout_page_t page = {.members = h->members,
                                  .ids = h->ids,
                                  .nids = h->nids,
                                  .statuses = h->status ? h->status->statuses : NULL,
                                  .excluded = h->excluded};
            pthread_mutex_unlock(&p.mu);
            int rc = o->on_page(o->opaque, &page, r->err, sizeof(r->err));
            fanout_slot_clear(h);
            pthread_mutex_lock(&p.mu);
            p.consumed++;
            if (rc)
                fanout_pager_fail_locked(&p, FANOUT_PAGER_CALLBACK, NULL, REPO_ERR_OK, r->err);
            continue;
        }
        if (p.failed)
            break;
        if ((s = fanout_pager_claim_locked(&p)) != NULL) {
            pthread_mutex_unlock(&p.mu);
            fanout_issue_members(&p, s);
            pthread_mutex_lock(&p.mu);
            continue;
        }
        if (p.consumed == p.issued)
            break; /* nothing in flight and nothing more to claim: the slice is done */
        if (o->cancelled && o->cancelled(o->opaque)) {
            fanout_pager_fail_locked(&p, FANOUT_PAGER_CANCELLED, NULL, REPO_ERR_CANCELLED,
                                     "cancelled");
            break;
        }
        fanout_pager_wait(&p, FANOUT_PAGER_POLL_MS);
    }
    while (p.calls > 0) /* every accepted call calls back, at its deadline at the latest */
        pthread_cond_wait(&p.cv, &p.mu);
    pthread_mutex_unlock(&p.mu);

    r->pages = p.consumed;
    if (p.failed) {
        r->outcome = p.outcome;
        r->method = p.method;
        r->status = p.st;
    } else {
        r->nwalks = p.nwalks;
        for (int i = 0; i < p.nwalks; i++) { /* a finished walk's cursor is NULL already */
            r->walks[i] = p.walks[i];
            p.walks[i].cursor = NULL;
            r->more = r->more || p.walks[i].more;
        }
    }
out:
    for (int i = 0; p.slots && i < p.cap; i++)
        fanout_slot_clear(&p.slots[i]);
    for (int i = 0; i < p.nwalks; i++)
        free(p.walks[i].cursor);
    free(p.slots);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
}

void fanout_pager_result_free(fanout_pager_result_t *r)
{
    for (int i = 0; i < r->nwalks; i++) {
        free(r->walks[i].cursor);
        r->walks[i].cursor = NULL;
    }
    r->nwalks = 0;
}
