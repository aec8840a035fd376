/* client.c: the client's I/O thread: the call queue, the pool of endpoints
 * and connections (round robin, health, reconnect backoff), deadlines and
 * retries, and the public call functions on top. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "infra/clock.h"
#include "arena.h"
#include "internal.h"

#define LOOP_MAX_WAIT_MS 250

int64_t client_now(void)
{
    return clock_mono_ms();
}

static void fill_status(repo_status_t *st, repo_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fill_status(repo_status_t *st, repo_err_t code, const char *fmt, ...)
{
    va_list ap;
    st->code = code;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
}

static uint32_t rnd(repo_client_t *c)
{
    c->seed = c->seed * 1103515245u + 12345u;
    return c->seed >> 8;
}

/* base * 2^n capped at max, within +-20%. */
static int64_t backoff(repo_client_t *c, int64_t base, int64_t max, int n)
{
    int64_t d = base;
    for (int i = 0; i < n && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    int64_t j = d / 5;
    if (j > 0)
        d += (int64_t)(rnd(c) % (uint32_t)(2 * j + 1)) - j;
    return d < 1 ? 1 : d;
}

/* ------------------------------------------------------------- timer heap */

static bool heap_less(const call_t *a, const call_t *b)
{
    int64_t ta = a->state == CALL_WAITING && a->retry_at < a->deadline ? a->retry_at : a->deadline;
    int64_t tb = b->state == CALL_WAITING && b->retry_at < b->deadline ? b->retry_at : b->deadline;
    return ta < tb;
}

static int64_t call_timer(const call_t *a)
{
    return a->state == CALL_WAITING && a->retry_at < a->deadline ? a->retry_at : a->deadline;
}

static void heap_swap(repo_client_t *c, size_t i, size_t j)
{
    call_t *t = c->heap[i];
    c->heap[i] = c->heap[j];
    c->heap[j] = t;
    c->heap[i]->heap_idx = i;
    c->heap[j]->heap_idx = j;
}

static void heap_fix(repo_client_t *c, size_t i)
{
    while (i > 0 && heap_less(c->heap[i], c->heap[(i - 1) / 2])) {
        heap_swap(c, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->heap_len && heap_less(c->heap[l], c->heap[m]))
            m = l;
        if (r < c->heap_len && heap_less(c->heap[r], c->heap[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(c, i, m);
        i = m;
    }
}

static int heap_push(repo_client_t *c, call_t *call)
{
    if (c->heap_len == c->heap_cap) {
        size_t cap = c->heap_cap ? c->heap_cap * 2 : 1024;
        call_t **nh = realloc(c->heap, cap * sizeof *nh);
        if (!nh)
            return -1;
        c->heap = nh;
        c->heap_cap = cap;
    }
    call->heap_idx = c->heap_len;
    c->heap[c->heap_len++] = call;
    heap_fix(c, call->heap_idx);
    return 0;
}

static void heap_remove(repo_client_t *c, call_t *call)
{
    size_t i = call->heap_idx;
    if (i == SIZE_MAX)
        return;
    c->heap_len--;
    if (i != c->heap_len) {
        c->heap[i] = c->heap[c->heap_len];
        c->heap[i]->heap_idx = i;
        heap_fix(c, i);
    }
    call->heap_idx = SIZE_MAX;
}

/* ------------------------------------------------------------------ calls */

static void call_free(call_t *call)
{
    if (!call)
        return;
    wire_parser_reset(&call->parser);
    free(call->body);
    free(call->md_buf);
    free(call);
}

static void pending_unlink(repo_client_t *c, call_t *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        c->pending = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        c->pending_tail = call->prev;
    call->prev = call->next = NULL;
    atomic_fetch_sub(&c->st_pending, 1);
}

static void pending_push(repo_client_t *c, call_t *call)
{
    call->state = CALL_PENDING;
    call->next = NULL;
    call->prev = c->pending_tail;
    if (c->pending_tail)
        c->pending_tail->next = call;
    else
        c->pending = call;
    c->pending_tail = call;
    atomic_fetch_add(&c->st_pending, 1);
}

/* Finish: to the done list (callbacks run at the end of the iteration). */
static void call_finish(repo_client_t *c, call_t *call)
{
    heap_remove(c, call);
    if (call->state == CALL_PENDING)
        pending_unlink(c, call);
    call->state = CALL_DONE;
    call->next = c->done;
    c->done = call;
}

static void call_fail(repo_client_t *c, call_t *call, repo_err_t code, const char *msg)
{
    call->resp = NULL;
    call->result.code = code;
    snprintf(call->result.message, sizeof call->result.message, "%s", msg);
    call_finish(c, call);
}

/* A try ended without success: retry when allowed, else finish. */
static void call_after_failure(repo_client_t *c, call_t *call, int64_t now)
{
    bool eligible =
        call->result.code == REPO_ERR_UNAVAILABLE && (call->m->idempotent || call->unprocessed);
    if (eligible && call->attempts < c->conf->max_attempts) {
        int64_t at = now + backoff(c, c->conf->retry_backoff_ms, c->conf->retry_backoff_max_ms,
                                   call->attempts - 1);
        if (at < call->deadline) {
            atomic_fetch_add(&c->st_retries, 1);
            call->state = CALL_WAITING;
            call->retry_at = at;
            heap_fix(c, call->heap_idx);
            return;
        }
    }
    call_finish(c, call);
}

void client_stream_closed(repo_client_t *c, call_t *call)
{
    if (call->result.code == REPO_ERR_OK) {
        call_finish(c, call);
        return;
    }
    call_after_failure(c, call, client_now());
}

/* ---------------------------------------------------------------- pool */

void client_conn_ready(repo_client_t *c, conn_t *k)
{
    k->ep->fails = 0;
    k->ep->last_err[0] = '\0';
    atomic_fetch_add(&c->st_opened, 1);
    atomic_fetch_add(&c->st_ready, 1);
}

void client_conn_failed(repo_client_t *c, conn_t *k)
{
    endpoint_t *ep = k->ep;
    int64_t now = client_now();
    snprintf(ep->last_err, sizeof ep->last_err, "%s", k->why);
    if (k->was_ready) {
        if (!k->goaway)
            atomic_fetch_add(&c->st_lost, 1);
        ep->next_attempt = now; /* reconnect at once; a failure then backs off */
    } else {
        atomic_fetch_add(&c->st_conn_failed, 1);
        ep->fails++;
        ep->next_attempt = now + backoff(c, c->conf->reconnect_backoff_ms,
                                         c->conf->reconnect_backoff_max_ms, ep->fails - 1);
    }
}

static void ep_connect(repo_client_t *c, endpoint_t *ep)
{
    char err[160];
    if (ep->nconns >= REPO_MAX_CONNS_PER_ENDPOINT || ep->removed)
        return;
    conn_t *k = conn_open(c, ep, err, sizeof err);
    if (!k) {
        atomic_fetch_add(&c->st_conn_failed, 1);
        snprintf(ep->last_err, sizeof ep->last_err, "%s", err);
        ep->fails++;
        ep->next_attempt = client_now() + backoff(c, c->conf->reconnect_backoff_ms,
                                                  c->conf->reconnect_backoff_max_ms, ep->fails - 1);
        return;
    }
    ep->conns[ep->nconns++] = k;
}

/* Free dead connections and removed endpoints without connections. */
static void pool_sweep(repo_client_t *c)
{
    endpoint_t **pp = &c->eps;
    while (*pp) {
        endpoint_t *ep = *pp;
        for (int i = 0; i < ep->nconns;) {
            conn_t *k = ep->conns[i];
            if (ep->removed && k->state != CONN_DEAD && k->active == 0)
                conn_kill(k, "endpoint removed");
            if (k->state == CONN_DEAD) {
                conn_free(k);
                ep->conns[i] = ep->conns[--ep->nconns];
            } else {
                i++;
            }
        }
        if (ep->removed && ep->nconns == 0) {
            *pp = ep->next;
            free(ep);
            c->neps--;
            continue;
        }
        pp = &ep->next;
    }
    atomic_store(&c->st_eps, (uint32_t)c->neps);
}

/* A connection with a free stream, round robin over endpoints. */
static conn_t *pool_pick(repo_client_t *c)
{
    if (c->neps == 0)
        return NULL;
    size_t start = c->rr++ % c->neps, i = 0;
    endpoint_t *ep = c->eps;
    for (; i < start; i++)
        ep = ep->next;
    for (i = 0; i < c->neps; i++) {
        if (!ep->removed) {
            for (int j = 0; j < ep->nconns; j++)
                if (conn_has_capacity(ep->conns[j]))
                    return ep->conns[j];
        }
        ep = ep->next ? ep->next : c->eps;
    }
    return NULL;
}

/* No free stream now: is one coming (a connection being set up, or one we
 * can open beside full ones)? Starts connections as needed. */
static bool pool_can_wait(repo_client_t *c, int64_t now)
{
    bool coming = false;
    for (endpoint_t *ep = c->eps; ep; ep = ep->next) {
        if (ep->removed)
            continue;
        int ready = 0, setting_up = 0;
        for (int j = 0; j < ep->nconns; j++) {
            conn_state_t s = ep->conns[j]->state;
            if (s == CONN_READY && !ep->conns[j]->goaway)
                ready++;
            else if (s != CONN_READY && s != CONN_DEAD)
                setting_up++;
        }
        if (setting_up) {
            coming = true;
        } else if (ready > 0) {
            /* All full: open one more if allowed; else wait for a stream. */
            if (ep->nconns < c->conf->max_conns_per_endpoint)
                ep_connect(c, ep);
            coming = true;
        } else if (ep->next_attempt <= now) {
            ep_connect(c, ep);
            if (ep->nconns > 0)
                coming = true;
        }
    }
    return coming;
}

static const char *pool_last_error(repo_client_t *c)
{
    for (endpoint_t *ep = c->eps; ep; ep = ep->next)
        if (!ep->removed && ep->last_err[0])
            return ep->last_err;
    return c->neps ? "no connection ready" : "no endpoints";
}

/* Start pending calls on free streams. */
static void dispatch_pending(repo_client_t *c, int64_t now)
{
    while (c->pending) {
        call_t *call = c->pending;
        conn_t *k = pool_pick(c);
        if (!k) {
            if (pool_can_wait(c, now))
                return;
            /* Nothing can take calls now: fail them (retry policy applies). */
            char msg[REPO_MESSAGE_MAX];
            snprintf(msg, sizeof msg, "no im-repo endpoint available: %s", pool_last_error(c));
            while (c->pending) {
                call = c->pending;
                pending_unlink(c, call);
                call->state = CALL_INFLIGHT; /* as if a try failed */
                call->attempts++;
                call->unprocessed = true;
                fill_status(&call->result, REPO_ERR_UNAVAILABLE, "%s", msg);
                call_after_failure(c, call, now);
            }
            return;
        }
        pending_unlink(c, call);
        call->state = CALL_INFLIGHT;
        call->attempts++;
        if (conn_submit(k, call)) {
            call->unprocessed = true;
            fill_status(&call->result, REPO_ERR_UNAVAILABLE, "nghttp2 refused the request");
            call_after_failure(c, call, now);
        }
    }
}

/* Apply an endpoint set from set_endpoints / discovery. */
static void pool_apply(repo_client_t *c, epset_t *set, int64_t now)
{
    for (endpoint_t *ep = c->eps; ep; ep = ep->next)
        ep->seen = false;
    for (size_t i = 0; i < set->n; i++) {
        endpoint_t *ep;
        for (ep = c->eps; ep; ep = ep->next)
            if (!ep->removed && !strcmp(ep->addr, set->eps[i].addr))
                break;
        if (ep) {
            ep->seen = true;
            continue;
        }
        ep = calloc(1, sizeof *ep);
        if (!ep)
            continue;
        memcpy(ep->addr, set->eps[i].addr, sizeof ep->addr);
        memcpy(ep->host, set->eps[i].host, sizeof ep->host);
        ep->sa = set->eps[i].sa;
        ep->salen = set->eps[i].salen;
        ep->seen = true;
        ep->next_attempt = now;
        ep->next = c->eps;
        c->eps = ep;
        c->neps++;
        ep_connect(c, ep);
    }
    for (endpoint_t *ep = c->eps; ep; ep = ep->next)
        if (!ep->seen)
            ep->removed = true;
    atomic_fetch_add(&c->st_ep_updates, 1);
}

/* ------------------------------------------------------------------ loop */

static void drain_inbound(repo_client_t *c, bool *stopping, epset_t **set)
{
    uint64_t v;
    atomic_store(&c->wake_pending, false);
    while (read(c->evfd, &v, sizeof v) > 0)
        ;
    pthread_mutex_lock(&c->mu);
    call_t *in = c->inbound;
    c->inbound = c->inbound_tail = NULL;
    *stopping = c->stopping;
    *set = c->new_set;
    c->new_set = NULL;
    pthread_mutex_unlock(&c->mu);
    while (in) {
        call_t *call = in;
        in = in->next;
        call->next = NULL;
        if (heap_push(c, call)) {
            call->state = CALL_PENDING;
            call->heap_idx = SIZE_MAX;
            call_fail(c, call, REPO_ERR__NOMEM, "timer heap");
            continue;
        }
        pending_push(c, call);
    }
}

static void run_timers(repo_client_t *c, int64_t now)
{
    while (c->heap_len > 0 && call_timer(c->heap[0]) <= now) {
        call_t *call = c->heap[0];
        if (now >= call->deadline) {
            if (call->state == CALL_INFLIGHT && call->conn) {
                conn_t *k = call->conn;
                /* Reset the stream; its close callback finishes the call with
                 * the status set here. */
                fill_status(&call->local, REPO_ERR_DEADLINE_EXCEEDED,
                            "deadline exceeded (after %d tries, last on %s)", call->attempts,
                            k->ep->addr);
                heap_remove(c, call);
                call->deadline = INT64_MAX; /* no second expiry */
                heap_push(c, call);
                nghttp2_submit_rst_stream(k->h2, NGHTTP2_FLAG_NONE, call->stream_id,
                                          NGHTTP2_CANCEL);
                conn_flush(k);
                continue;
            }
            char msg[REPO_MESSAGE_MAX];
            if (call->attempts > 0 && call->result.code != REPO_ERR_OK)
                snprintf(msg, sizeof msg, "deadline exceeded after %d tries; last: %.180s",
                         call->attempts, call->result.message);
            else
                snprintf(msg, sizeof msg, "deadline exceeded waiting for a connection (%s)",
                         pool_last_error(c));
            call_fail(c, call, REPO_ERR_DEADLINE_EXCEEDED, msg);
            continue;
        }
        /* A retry is due. */
        heap_remove(c, call);
        call->state = CALL_PENDING;
        heap_push(c, call);
        pending_push(c, call);
    }
    for (endpoint_t *ep = c->eps; ep; ep = ep->next) {
        for (int j = 0; j < ep->nconns; j++)
            conn_timers(ep->conns[j], now);
        if (!ep->removed && ep->nconns == 0 && ep->next_attempt <= now)
            ep_connect(c, ep);
    }
}

static void run_callbacks(repo_client_t *c)
{
    call_t *d = c->done;
    c->done = NULL;
    /* Oldest first. */
    call_t *rev = NULL;
    while (d) {
        call_t *n = d->next;
        d->next = rev;
        rev = d;
        d = n;
    }
    while (rev) {
        call_t *call = rev;
        rev = rev->next;
        if (call->result.code == REPO_ERR_OK)
            atomic_fetch_add(&c->st_ok, 1);
        else
            atomic_fetch_add(&c->st_failed, 1);
        pthread_mutex_lock(&c->mu);
        c->queued--;
        pthread_mutex_unlock(&c->mu);
        call->cb(call->opaque, &call->result, call->resp);
        call_free(call);
    }
}

static int64_t next_wait(repo_client_t *c, int64_t now)
{
    int64_t w = LOOP_MAX_WAIT_MS;
    if (c->heap_len > 0) {
        int64_t t = call_timer(c->heap[0]) - now;
        if (t < w)
            w = t;
    }
    for (endpoint_t *ep = c->eps; ep; ep = ep->next)
        if (!ep->removed && ep->nconns == 0 && ep->next_attempt - now < w)
            w = ep->next_attempt - now;
    return w < 0 ? 0 : w;
}

static void shutdown_all(repo_client_t *c)
{
    for (endpoint_t *ep = c->eps; ep; ep = ep->next) {
        ep->removed = true;
        for (int j = 0; j < ep->nconns; j++) {
            conn_t *k = ep->conns[j];
            for (call_t *s = k->streams; s; s = s->next)
                fill_status(&s->local, REPO_ERR__SHUTDOWN, "client destroyed");
            conn_kill(k, "client destroyed");
        }
    }
    while (c->heap_len > 0) {
        call_t *call = c->heap[0];
        call_fail(c, call, REPO_ERR__SHUTDOWN, "client destroyed");
    }
    run_callbacks(c);
    pool_sweep(c);
}

static void *loop_main(void *arg)
{
    repo_client_t *c = arg;
    struct epoll_event evs[64];
    for (;;) {
        int64_t now = client_now();
        int n = epoll_wait(c->epfd, evs, 64, (int)next_wait(c, now));
        bool stopping = false;
        epset_t *set = NULL;
        for (int i = 0; i < n; i++)
            if (evs[i].data.ptr != NULL)
                conn_on_event(evs[i].data.ptr, evs[i].events);
        drain_inbound(c, &stopping, &set);
        now = client_now();
        if (set) {
            pool_apply(c, set, now);
            free(set->eps);
            free(set);
        }
        if (stopping) {
            shutdown_all(c);
            return NULL;
        }
        run_timers(c, now);
        dispatch_pending(c, now);
        for (endpoint_t *ep = c->eps; ep; ep = ep->next)
            for (int j = 0; j < ep->nconns; j++)
                conn_flush(ep->conns[j]);
        run_callbacks(c);
        pool_sweep(c);
    }
}

/* One eventfd write per loop iteration at most, however many calls come. */
static void wake(repo_client_t *c)
{
    if (atomic_exchange(&c->wake_pending, true))
        return;
    uint64_t one = 1;
    ssize_t r = write(c->evfd, &one, sizeof one);
    (void)r;
}

/* ------------------------------------------------------------- endpoints */

static int resolve(const char *addr, endpoint_t *ep, char *err, size_t errlen)
{
    char host[128], port[16];
    const char *colon;
    size_t alen = strlen(addr);
    if (alen == 0 || alen >= sizeof ep->addr) {
        snprintf(err, errlen, "endpoint \"%s\": empty or too long", addr);
        return -1;
    }
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - addr - 1) >= sizeof host) {
            snprintf(err, errlen, "endpoint \"%s\": want [v6addr]:port", addr);
            return -1;
        }
        memcpy(host, addr + 1, (size_t)(rb - addr - 1));
        host[rb - addr - 1] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) {
            snprintf(err, errlen, "endpoint \"%s\": want host:port", addr);
            return -1;
        }
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
    }
    snprintf(port, sizeof port, "%s", colon + 1);
    char *end;
    long pn = strtol(port, &end, 10);
    if (!port[0] || *end || pn < 1 || pn > 65535) {
        snprintf(err, errlen, "endpoint \"%s\": bad port", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rv = getaddrinfo(host, port, &hints, &ai);
    if (rv || !ai) {
        snprintf(err, errlen, "endpoint \"%s\": %s", addr, gai_strerror(rv));
        return -1;
    }
    memset(ep, 0, sizeof *ep);
    memcpy(&ep->sa, ai->ai_addr, ai->ai_addrlen);
    ep->salen = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(ep->addr, sizeof ep->addr, "%s", addr);
    snprintf(ep->host, sizeof ep->host, "%.99s", host);
    return 0;
}

int repo_client_set_endpoints(repo_client_t *c, const char *const *addrs, size_t n, char *err,
                              size_t errlen)
{
    return client_set_endpoints(c, addrs, n, false, err, errlen);
}

int client_set_endpoints(repo_client_t *c, const char *const *addrs, size_t n, bool skip_bad,
                         char *err, size_t errlen)
{
    if (!c || (n && !addrs) || n > REPO_MAX_ENDPOINTS) {
        snprintf(err, errlen, "set_endpoints: bad arguments (at most %d endpoints)",
                 REPO_MAX_ENDPOINTS);
        return -1;
    }
    epset_t *set = calloc(1, sizeof *set);
    if (!set || (n && !(set->eps = calloc(n, sizeof *set->eps)))) {
        free(set);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (resolve(addrs[i], &set->eps[set->n], err, errlen)) {
            if (skip_bad)
                continue;
            free(set->eps);
            free(set);
            return -1;
        }
        set->n++;
    }
    pthread_mutex_lock(&c->mu);
    epset_t *old = c->new_set;
    c->new_set = set;
    pthread_mutex_unlock(&c->mu);
    if (old) {
        free(old->eps);
        free(old);
    }
    wake(c);
    return 0;
}

/* "a:1,b:2" -> set_endpoints. */
static int set_endpoint_list(repo_client_t *c, const char *list, char *err, size_t errlen)
{
    char *copy = strdup(list), *save = NULL;
    const char *items[REPO_MAX_ENDPOINTS];
    size_t n = 0;
    int rv = -1;
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (n == REPO_MAX_ENDPOINTS) {
            snprintf(err, errlen, "endpoints: more than %d", REPO_MAX_ENDPOINTS);
            goto out;
        }
        items[n++] = t;
    }
    rv = repo_client_set_endpoints(c, items, n, err, errlen);
out:
    free(copy);
    return rv;
}

/* ----------------------------------------------------------- new/destroy */

static SSL_CTX *tls_ctx(const repo_conf_t *conf, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    static const unsigned char alpn[] = {2, 'h', '2'};
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn))
        goto fail;
    if (conf->tls_insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (conf->tls_ca_file[0] ? !SSL_CTX_load_verify_locations(ctx, conf->tls_ca_file, NULL)
                                 : !SSL_CTX_set_default_verify_paths(ctx)) {
            snprintf(err, errlen, "tls_ca_file \"%s\": cannot load", conf->tls_ca_file);
            SSL_CTX_free(ctx);
            ERR_clear_error();
            return NULL;
        }
    }
    return ctx;
fail:
    snprintf(err, errlen, "TLS context setup failed");
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

int repo_client_new(repo_client_t **out, repo_conf_t *conf, char *err, size_t errlen)
{
    repo_client_t *c = NULL;
    if (!out || !conf) {
        snprintf(err, errlen, "repo_client_new: NULL argument");
        return -1;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->conf = conf;
    c->epfd = c->evfd = -1;
    c->seed = (uint32_t)clock_wall_ms() ^ (uint32_t)(uintptr_t)c;
    pthread_mutex_init(&c->mu, NULL);
    if (conf->tls && !(c->ssl_ctx = tls_ctx(conf, err, errlen)))
        goto fail;
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->epfd < 0 || c->evfd < 0) {
        snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev) < 0) {
        snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    if (conf->endpoints[0] && set_endpoint_list(c, conf->endpoints, err, errlen))
        goto fail;
    if (pthread_create(&c->thread, NULL, loop_main, c)) {
        snprintf(err, errlen, "pthread_create failed");
        goto fail;
    }
    c->loop_tid = c->thread;
    if (conf->etcd_endpoints[0] && discovery_start(c, &c->disc, err, errlen)) {
        c->conf = NULL; /* the caller keeps conf on failure */
        repo_client_destroy(&c);
        return -1;
    }
    *out = c;
    return 0;
fail:
    if (c->new_set) {
        free(c->new_set->eps);
        free(c->new_set);
    }
    if (c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->evfd >= 0)
        close(c->evfd);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return -1;
}

void repo_client_destroy(repo_client_t **cp)
{
    if (!cp || !*cp)
        return;
    repo_client_t *c = *cp;
    if (pthread_equal(pthread_self(), c->loop_tid))
        return; /* from a callback: refused (see the header) */
    discovery_stop(c->disc);
    c->disc = NULL;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_mutex_unlock(&c->mu);
    wake(c);
    pthread_join(c->thread, NULL);
    /* Calls submitted after the loop's last drain. */
    call_t *in = c->inbound;
    c->inbound = NULL;
    while (in) {
        call_t *call = in;
        in = in->next;
        fill_status(&call->result, REPO_ERR__SHUTDOWN, "client destroyed");
        call->cb(call->opaque, &call->result, NULL);
        call_free(call);
    }
    if (c->new_set) {
        free(c->new_set->eps);
        free(c->new_set);
    }
    free(c->heap);
    if (c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    close(c->epfd);
    close(c->evfd);
    pthread_mutex_destroy(&c->mu);
    repo_conf_destroy(c->conf);
    free(c);
    *cp = NULL;
}

void repo_client_stats(repo_client_t *c, repo_stats_t *o)
{
    memset(o, 0, sizeof *o);
    if (!c)
        return;
    o->calls = atomic_load(&c->st_calls);
    o->calls_ok = atomic_load(&c->st_ok);
    o->calls_failed = atomic_load(&c->st_failed);
    o->retries = atomic_load(&c->st_retries);
    o->conns_opened = atomic_load(&c->st_opened);
    o->conns_failed = atomic_load(&c->st_conn_failed);
    o->conns_lost = atomic_load(&c->st_lost);
    o->goaways = atomic_load(&c->st_goaways);
    o->keepalive_timeouts = atomic_load(&c->st_ka_timeouts);
    o->endpoint_updates = atomic_load(&c->st_ep_updates);
    o->endpoints = atomic_load(&c->st_eps);
    o->conns_ready = atomic_load(&c->st_ready);
    o->in_flight = atomic_load(&c->st_inflight);
    o->pending = atomic_load(&c->st_pending);
    o->max_in_flight_per_conn = atomic_load(&c->st_max_inflight);
}

/* ------------------------------------------------------------------ calls */

static bool md_name_ok(const char *s)
{
    if (!s || !*s || !strncmp(s, "grpc-", 5))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
              *s == '.'))
            return false;
    return true;
}

static bool md_value_ok(const char *s)
{
    if (!s)
        return false;
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            return false;
    return true;
}

static repo_err_t call_new(repo_client_t *c, const repo_method_t *m, const ProtobufCMessage *req,
                           const repo_call_opts_t *opts, call_t **out)
{
    if (!m || !req || req->descriptor != m->req)
        return REPO_ERR__BAD_ARG;
    size_t nmd = opts ? opts->nmd : 0, mdbytes = 0;
    if (nmd > REPO_MAX_MD || (nmd && !opts->md))
        return REPO_ERR__BAD_ARG;
    for (size_t i = 0; i < nmd; i++) {
        if (!md_name_ok(opts->md[i].name) || !md_value_ok(opts->md[i].value))
            return REPO_ERR__BAD_ARG;
        mdbytes += strlen(opts->md[i].name) + strlen(opts->md[i].value) + 2;
    }
    if (mdbytes > REPO_MAX_MD_BYTES)
        return REPO_ERR__BAD_ARG;
    size_t len = protobuf_c_message_get_packed_size(req);
    if (len > (size_t)c->conf->max_send_msg_bytes)
        return REPO_ERR__MSG_TOO_LARGE;
    call_t *call = calloc(1, sizeof *call);
    if (!call)
        return REPO_ERR__NOMEM;
    call->heap_idx = SIZE_MAX;
    call->body = malloc(WIRE_PREFIX + len);
    call->md_buf = malloc(mdbytes ? mdbytes : 1);
    if (!call->body || !call->md_buf) {
        call_free(call);
        return REPO_ERR__NOMEM;
    }
    if (protobuf_c_message_pack(req, call->body + WIRE_PREFIX) != len) {
        call_free(call);
        return REPO_ERR__ENCODE;
    }
    call->body[0] = 0;
    call->body[1] = (uint8_t)(len >> 24);
    call->body[2] = (uint8_t)(len >> 16);
    call->body[3] = (uint8_t)(len >> 8);
    call->body[4] = (uint8_t)len;
    call->body_len = WIRE_PREFIX + len;
    char *p = call->md_buf;
    for (size_t i = 0; i < nmd; i++) {
        size_t a = strlen(opts->md[i].name) + 1, b = strlen(opts->md[i].value) + 1;
        memcpy(p, opts->md[i].name, a);
        memcpy(p + a, opts->md[i].value, b);
        p += a + b;
    }
    call->nmd = nmd;
    call->m = m;
    call->client = c;
    call->grpc_status = -1;
    int64_t timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : c->conf->default_timeout_ms;
    call->deadline = client_now() + timeout;
    *out = call;
    return REPO_ERR_OK;
}

repo_err_t repo_call_async(repo_client_t *c, const repo_method_t *m, const ProtobufCMessage *req,
                           const repo_call_opts_t *opts, repo_done_cb cb, void *opaque)
{
    call_t *call = NULL;
    if (!c || !cb)
        return REPO_ERR__BAD_ARG;
    repo_err_t e = call_new(c, m, req, opts, &call);
    if (e)
        return e;
    call->cb = cb;
    call->opaque = opaque;
    pthread_mutex_lock(&c->mu);
    if (c->stopping) {
        e = REPO_ERR__SHUTDOWN;
    } else if (c->queued >= (size_t)c->conf->max_pending) {
        e = REPO_ERR__QUEUE_FULL;
    } else {
        c->queued++;
        if (c->inbound_tail)
            c->inbound_tail->next = call;
        else
            c->inbound = call;
        c->inbound_tail = call;
    }
    pthread_mutex_unlock(&c->mu);
    if (e) {
        call_free(call);
        return e;
    }
    atomic_fetch_add(&c->st_calls, 1);
    wake(c);
    return REPO_ERR_OK;
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    repo_status_t st;
    ProtobufCMessage *resp;
} waiter_t;

static void waiter_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp)
{
    waiter_t *w = opaque;
    pthread_mutex_lock(&w->mu);
    w->st = *st;
    w->resp = resp;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

repo_err_t repo_call(repo_client_t *c, const repo_method_t *m, const ProtobufCMessage *req,
                     const repo_call_opts_t *opts, ProtobufCMessage **resp, repo_status_t *st)
{
    repo_status_t local;
    if (!st)
        st = &local;
    if (resp)
        *resp = NULL;
    if (!c || !resp || pthread_equal(pthread_self(), c->loop_tid)) {
        fill_status(st, REPO_ERR__BAD_ARG, "repo_call: NULL argument or called from a callback");
        return st->code;
    }
    waiter_t w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    repo_err_t e = repo_call_async(c, m, req, opts, waiter_done, &w);
    if (e) {
        fill_status(st, e, "%s", repo_err_str(e));
    } else {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        *st = w.st;
        *resp = w.resp;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return st->code;
}

void repo_response_free(ProtobufCMessage *resp)
{
    arena_free(resp);
}
