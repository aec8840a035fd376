/* http.c: the audit processor's HTTP client: one curl multi handle driven by
 * its own thread through the multi_socket API and epoll (the default), or an
 * easy handle per worker thread. See http.h. */
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"

typedef struct audit_call_s {
    const audit_req_t *req;
    audit_http_resp_t *resp;
    struct curl_slist *hdrs;
    audit_buf_t body;
    CURL *easy;
    bool done;
    pthread_cond_t cond;
    struct audit_call_s *next;
    char errbuf[CURL_ERROR_SIZE];
} audit_call_t;

struct audit_http_s {
    audit_http_conf_t conf;
    pthread_mutex_t lock;
    int active, queued;

    /* multi engine */
    CURLM *multi;
    int epfd, wakefd;
    int64_t timer_due_ms; /* -1: none; engine thread only */
    pthread_t thread;
    bool thread_started;
    bool curl_inited;
    bool quit;
    audit_call_t *qhead, *qtail;
    CURL **pool; /* idle easy handles (engine thread only) */
    size_t npool;

    /* easy engine */
    pthread_key_t key;
    bool key_made;
    pthread_cond_t slot_cond;
    CURL **all; /* every per-thread handle, for destroy */
    size_t nall, call;
};

static size_t http_write(char *data, size_t size, size_t nmemb, void *opaque)
{
    audit_call_t *c = opaque;
    size_t n = size * nmemb;
    if (audit_buf_append(&c->body, data, n)) {
        c->resp->too_large = true;
        return 0; /* CURLE_WRITE_ERROR */
    }
    return n;
}

static int http_setup(audit_http_t *h, CURL *e, audit_call_t *c)
{
    const audit_http_conf_t *cf = &h->conf;
    c->hdrs = NULL;
    for (size_t i = 0; i < c->req->nheaders; i++) {
        struct curl_slist *n = curl_slist_append(c->hdrs, c->req->headers[i]);
        if (!n)
            return -1;
        c->hdrs = n;
    }
    /* no "Expect: 100-continue" round trip for larger bodies */
    struct curl_slist *n = curl_slist_append(c->hdrs, "Expect:");
    if (!n)
        return -1;
    c->hdrs = n;
    audit_buf_init(&c->body, (size_t)cf->max_response_bytes + 1);
    c->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, c->req->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
    if (c->req->body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->req->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->req->body_len);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cf->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cf->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cf->max_response_bytes);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* whatever curl decodes */
    if (cf->user_agent)
        curl_easy_setopt(e, CURLOPT_USERAGENT, cf->user_agent);
    if (cf->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, cf->ca_file);
    if (cf->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return 0;
}

/* Fill resp from a finished transfer. */
static void http_finish(audit_call_t *c, CURL *e, CURLcode rc)
{
    audit_http_resp_t *r = c->resp;
    long status = 0;
    double secs = 0;
    curl_off_t ra = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME, &secs);
    if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
        r->retry_after_ms = (int64_t)ra * 1000;
    r->seconds = secs;
    r->curl_code = (int)rc;
    if (rc != CURLE_OK) {
        r->status = 0;
        r->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
        if (rc == CURLE_FILESIZE_EXCEEDED)
            r->too_large = true;
        snprintf(r->error, sizeof(r->error), "%s%s%.180s",
                 r->too_large ? "response body too large" : curl_easy_strerror(rc),
                 c->errbuf[0] ? ": " : "", c->errbuf);
    } else {
        r->status = status;
    }
    r->body = audit_buf_take(&c->body, &r->len);
    if (!r->body) { /* strdup("") failed */
        r->len = 0;
    }
    curl_slist_free_all(c->hdrs);
    c->hdrs = NULL;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
}

/* ---- multi engine ------------------------------------------------------ */

static void http_fail_call(audit_call_t *c, const char *why)
{
    c->resp->curl_code = CURLE_ABORTED_BY_CALLBACK;
    snprintf(c->resp->error, sizeof(c->resp->error), "%s", why);
    c->done = true;
    pthread_cond_signal(&c->cond);
}

/* libcurl's multi_socket API: curl says which sockets to watch
 * (http_sock_cb) and when to call it back (http_timer_cb); the loop waits
 * in epoll and hands curl only the sockets that are ready, so a wake-up
 * costs what is active, not what is open. */
static int http_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    audit_http_t *h = userp;
    struct epoll_event ev = {0};
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (socketp)
            epoll_ctl(h->epfd, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign(h->multi, s, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    ev.data.fd = s;
    if (socketp) {
        epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev);
    } else if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, s, &ev) == 0 ||
               (errno == EEXIST && epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev) == 0)) {
        curl_multi_assign(h->multi, s, h); /* any non-NULL: registered */
    }
    return 0;
}

static int http_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    audit_http_t *h = userp;
    struct timespec ts;
    (void)m;
    if (timeout_ms < 0) {
        h->timer_due_ms = -1;
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    h->timer_due_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
    return 0;
}

static int64_t http_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Hand finished transfers back to their callers; true when a slot was
 * freed while requests wait. */
static bool http_reap(audit_http_t *h)
{
    bool refill = false;
    int left = 0;
    CURLMsg *m;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        audit_call_t *c = NULL;
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
        curl_multi_remove_handle(h->multi, e);
        http_finish(c, e, rc);
        pthread_mutex_lock(&h->lock);
        if ((int64_t)h->npool < h->conf.max_in_flight)
            h->pool[h->npool++] = e;
        else
            curl_easy_cleanup(e);
        h->active--;
        refill = refill || h->qhead != NULL;
        c->done = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&h->lock);
    }
    return refill;
}

static void *http_loop(void *arg)
{
    audit_http_t *h = arg;
    struct epoll_event evs[64];
    bool refill = false;
    for (;;) {
        int running = 0;
        pthread_mutex_lock(&h->lock);
        if (h->quit) {
            pthread_mutex_unlock(&h->lock);
            break;
        }
        while (h->qhead && h->active < h->conf.max_in_flight) {
            audit_call_t *c = h->qhead;
            h->qhead = c->next;
            if (!h->qhead)
                h->qtail = NULL;
            h->queued--;
            CURL *e = h->npool ? h->pool[--h->npool] : curl_easy_init();
            if (e)
                curl_easy_reset(e);
            if (!e || http_setup(h, e, c) || curl_multi_add_handle(h->multi, e) != CURLM_OK) {
                curl_slist_free_all(c->hdrs);
                c->hdrs = NULL;
                if (e)
                    curl_easy_cleanup(e);
                http_fail_call(c, "cannot start the transfer (out of memory)");
                continue;
            }
            curl_easy_setopt(e, CURLOPT_PRIVATE, c);
            c->easy = e;
            h->active++;
        }
        pthread_mutex_unlock(&h->lock);

        /* wait for sockets, the timer or a wake-up; not at all when a freed
         * slot has requests waiting for it */
        int wait = 1000;
        if (refill) {
            wait = 0;
        } else if (h->timer_due_ms >= 0) {
            int64_t d = h->timer_due_ms - http_mono_ms();
            wait = d <= 0 ? 0 : d < 1000 ? (int)d : 1000;
        }
        int n = epoll_wait(h->epfd, evs, 64, wait);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == h->wakefd) {
                uint64_t v;
                if (read(h->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    break;
                continue;
            }
            int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(h->multi, evs[i].data.fd, flags, &running);
        }
        if (h->timer_due_ms >= 0 && http_mono_ms() >= h->timer_due_ms) {
            h->timer_due_ms = -1;
            curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        refill = http_reap(h);
    }
    return NULL;
}

static void http_wake(audit_http_t *h)
{
    uint64_t one = 1;
    if (write(h->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return;
}

static int http_do_multi(audit_http_t *h, audit_call_t *c)
{
    pthread_mutex_lock(&h->lock);
    if (h->quit) {
        pthread_mutex_unlock(&h->lock);
        snprintf(c->resp->error, sizeof(c->resp->error), "the HTTP client is stopping");
        c->resp->curl_code = CURLE_ABORTED_BY_CALLBACK;
        return -1;
    }
    if (h->qtail)
        h->qtail->next = c;
    else
        h->qhead = c;
    h->qtail = c;
    h->queued++;
    pthread_mutex_unlock(&h->lock);
    http_wake(h);
    pthread_mutex_lock(&h->lock);
    while (!c->done)
        pthread_cond_wait(&c->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

/* ---- easy engine ------------------------------------------------------- */

static CURL *http_thread_easy(audit_http_t *h)
{
    CURL *e = pthread_getspecific(h->key);
    if (e)
        return e;
    e = curl_easy_init();
    if (!e)
        return NULL;
    pthread_mutex_lock(&h->lock);
    if (h->nall == h->call) {
        size_t ncap = h->call ? h->call * 2 : 16;
        CURL **n = realloc(h->all, ncap * sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&h->lock);
            curl_easy_cleanup(e);
            return NULL;
        }
        h->all = n;
        h->call = ncap;
    }
    h->all[h->nall++] = e;
    pthread_mutex_unlock(&h->lock);
    pthread_setspecific(h->key, e);
    return e;
}

static int http_do_easy(audit_http_t *h, audit_call_t *c)
{
    CURL *e = http_thread_easy(h);
    if (!e) {
        snprintf(c->resp->error, sizeof(c->resp->error), "out of memory");
        c->resp->curl_code = CURLE_OUT_OF_MEMORY;
        return -1;
    }
    pthread_mutex_lock(&h->lock);
    h->queued++;
    while (h->active >= h->conf.max_in_flight)
        pthread_cond_wait(&h->slot_cond, &h->lock);
    h->queued--;
    h->active++;
    pthread_mutex_unlock(&h->lock);
    curl_easy_reset(e);
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    if (http_setup(h, e, c) == 0)
        rc = curl_easy_perform(e);
    http_finish(c, e, rc);
    pthread_mutex_lock(&h->lock);
    h->active--;
    pthread_cond_signal(&h->slot_cond);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

/* ---- API --------------------------------------------------------------- */

int audit_http_do(audit_http_t *h, const audit_req_t *req, audit_http_resp_t *resp)
{
    audit_call_t c;
    memset(resp, 0, sizeof(*resp));
    resp->retry_after_ms = -1;
    memset(&c, 0, sizeof(c));
    c.req = req;
    c.resp = resp;
    pthread_cond_init(&c.cond, NULL);
    int rc = h->conf.engine == AUDIT_HTTP_EASY ? http_do_easy(h, &c) : http_do_multi(h, &c);
    pthread_cond_destroy(&c.cond);
    audit_buf_free(&c.body);
    if (!resp->body) {
        resp->body = strdup("");
        resp->len = 0;
    }
    if (rc == 0 && resp->curl_code != 0)
        rc = -1;
    return rc;
}

void audit_http_resp_free(audit_http_resp_t *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
}

void audit_http_load(audit_http_t *h, int *in_flight, int *queued)
{
    pthread_mutex_lock(&h->lock);
    *in_flight = h->active;
    *queued = h->queued;
    pthread_mutex_unlock(&h->lock);
}

int audit_http_new(audit_http_t **out, const audit_http_conf_t *conf, char *err, size_t errlen)
{
    audit_http_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->epfd = h->wakefd = -1;
    h->conf = *conf;
    if (h->conf.max_in_flight < 1)
        h->conf.max_in_flight = 1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->slot_cond, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init failed");
        goto fail;
    }
    h->curl_inited = true;
    if (h->conf.engine == AUDIT_HTTP_EASY) {
        if (pthread_key_create(&h->key, NULL) != 0) {
            snprintf(err, errlen, "pthread_key_create failed");
            goto fail;
        }
        h->key_made = true;
    } else {
        h->multi = curl_multi_init();
        h->pool = calloc((size_t)h->conf.max_in_flight, sizeof(*h->pool));
        if (!h->multi || !h->pool) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->conf.max_conns);
        curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_sock_cb);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
        h->timer_due_ms = -1;
        h->epfd = epoll_create1(EPOLL_CLOEXEC);
        h->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = h->wakefd};
        if (h->epfd < 0 || h->wakefd < 0 || epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->wakefd, &ev)) {
            snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
            goto fail;
        }
        if (pthread_create(&h->thread, NULL, http_loop, h) != 0) {
            snprintf(err, errlen, "cannot start the HTTP thread");
            goto fail;
        }
        h->thread_started = true;
    }
    *out = h;
    return 0;
fail:
    audit_http_destroy(&h);
    return -1;
}

void audit_http_destroy(audit_http_t **hp)
{
    audit_http_t *h = hp ? *hp : NULL;
    if (!h)
        return;
    if (h->thread_started) {
        pthread_mutex_lock(&h->lock);
        h->quit = true;
        pthread_mutex_unlock(&h->lock);
        http_wake(h);
        pthread_join(h->thread, NULL);
    }
    /* calls still queued or running (misuse: destroy before they returned)
     * are failed so their callers wake up */
    pthread_mutex_lock(&h->lock);
    for (audit_call_t *c = h->qhead; c; c = c->next)
        http_fail_call(c, "the HTTP client is stopping");
    h->qhead = h->qtail = NULL;
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < h->npool; i++)
        curl_easy_cleanup(h->pool[i]);
    free(h->pool);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    if (h->epfd >= 0)
        close(h->epfd);
    if (h->wakefd >= 0)
        close(h->wakefd);
    for (size_t i = 0; i < h->nall; i++)
        curl_easy_cleanup(h->all[i]);
    free(h->all);
    if (h->key_made)
        pthread_key_delete(h->key);
    pthread_cond_destroy(&h->slot_cond);
    pthread_mutex_destroy(&h->lock);
    if (h->curl_inited)
        curl_global_cleanup();
    free(h);
    *hp = NULL;
}
