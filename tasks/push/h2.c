/* h2.c: the HTTP/2 client of the providers: nghttp2 over OpenSSL, one epoll
 * I/O thread per lane (see h2.h). */
#include "h2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "infra/clock.h"
#include "infra/log.h"

#define CONN_MAX 64
#define READ_CHUNK 65536
#define WRITE_BATCH 65536 /* nghttp2 output gathered before one SSL_write */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define TICK_MAX_MS 1000
#define SCAN_MS 100 /* how often streams in flight are checked for their timeout */

const char *push_h2_err_name(push_h2_err_t e)
{
    switch (e) {
    case PUSH_H2_OK:
        return "ok";
    case PUSH_H2_E_CANCELLED:
        return "not_sent";
    case PUSH_H2_E_CONNECT:
        return "connect";
    case PUSH_H2_E_TLS:
        return "tls";
    case PUSH_H2_E_TIMEOUT:
        return "timeout";
    case PUSH_H2_E_RESET:
        return "reset";
    case PUSH_H2_E_CLOSED:
        return "closed";
    case PUSH_H2_E_PROTOCOL:
        return "protocol";
    }
    return "?";
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t pending;
    atomic_bool cancelled;
} batch_t;

typedef enum { C_CONNECTING, C_TLS, C_SETTINGS, C_READY, C_DRAINING, C_DEAD } cstate_t;

struct lane_s;

typedef struct {
    struct lane_s *l;
    int fd;
    SSL *ssl;
    nghttp2_session *ng;
    cstate_t state;
    int64_t deadline_ms; /* connecting: give up after */
    int open_streams;    /* submitted, not closed by nghttp2 yet */
    uint32_t events;     /* registered with epoll */
    uint8_t *out;        /* pending output (TLS plaintext) */
    size_t out_len, out_off, out_cap;
    bool goaway;
    int32_t goaway_last;
    bool failed; /* set inside callbacks, acted on after */
    push_h2_err_t fail_err;
    char fail_msg[160];
    push_h2_req_t *streams; /* requests in flight here (next/prev) */
} conn_t;

typedef struct lane_s {
    push_lane_conf_t c;
    char *name, *provider;
    char host[256], port[8], authority[300];
    bool host_is_ip;
    SSL_CTX *ctx;
    struct push_h2_s *h;
    int ep, evfd;
    pthread_t thread;
    bool started;

    pthread_mutex_t qlock; /* the submission queue and stop */
    push_h2_req_t *qhead, *qtail;
    bool stop;

    /* I/O thread only */
    push_h2_req_t *head, *tail; /* waiting for a stream */
    conn_t *conns[CONN_MAX];
    int nconns;
    int in_flight;
    double tokens;
    int64_t refill_ms;
    int64_t backoff_ms, next_connect_ms, next_scan_ms;
    bool connect_failing;
    push_h2_err_t conn_err;
    char conn_msg[160];
    int seen_cancels;
    metrics_series_t *m_in_flight, *m_latency;
} lane_t;

struct push_h2_s {
    push_h2_conf_t c;
    lane_t lanes[PUSH_H2_MAX_LANES];
    int nlanes;
    bool started;
    atomic_int cancels;
    atomic_int in_flight;
};

/* ---- finishing requests -------------------------------------------------- */

static void batch_done_one(push_h2_req_t *r)
{
    batch_t *b = r->batch;
    pthread_mutex_lock(&b->lock);
    if (--b->pending == 0)
        pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock); /* b may be gone after this */
}

/* A request that never got a stream (or is given up before sending). */
static void finish_unsent(push_h2_req_t *r, push_h2_err_t e, const char *msg)
{
    r->status = 0;
    r->err = e;
    snprintf(r->error, sizeof(r->error), "%.159s", msg);
    batch_done_one(r);
}

static void conn_unlink(conn_t *c, push_h2_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->streams = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
    r->conn = NULL;
}

/* A request that had a stream: counted out of the lane and finished. */
static void finish_sent(lane_t *l, conn_t *c, push_h2_req_t *r, push_h2_err_t e, const char *msg)
{
    conn_unlink(c, r);
    l->in_flight--;
    atomic_fetch_sub(&l->h->in_flight, 1);
    metrics_gauge_add(l->m_in_flight, -1);
    r->err = e;
    r->latency_ms = clock_mono_ms() - r->sent_ms;
    if (e == PUSH_H2_OK)
        metrics_histogram_observe(l->m_latency, (double)r->latency_ms / 1000.0);
    else
        snprintf(r->error, sizeof(r->error), "%.159s", msg);
    batch_done_one(r);
}

static void fifo_push(lane_t *l, push_h2_req_t *r, bool front)
{
    r->next = r->prev = NULL;
    if (!l->head) {
        l->head = l->tail = r;
    } else if (front) {
        r->next = l->head;
        l->head = r;
    } else {
        l->tail->next = r;
        l->tail = r;
    }
}

static push_h2_req_t *fifo_pop(lane_t *l)
{
    push_h2_req_t *r = l->head;
    if (r) {
        l->head = r->next;
        if (!l->head)
            l->tail = NULL;
        r->next = NULL;
    }
    return r;
}

/* The server did not process it: back to the front of the queue, or, past
 * the replays allowed, finished as not sent. */
static void replay(lane_t *l, conn_t *c, push_h2_req_t *r, const char *why)
{
    conn_unlink(c, r);
    l->in_flight--;
    atomic_fetch_sub(&l->h->in_flight, 1);
    metrics_gauge_add(l->m_in_flight, -1);
    if (++r->replays > PUSH_H2_MAX_REPLAYS) {
        finish_unsent(r, PUSH_H2_E_CANCELLED, why);
        return;
    }
    r->stream_id = 0;
    r->status = 0;
    r->resp_len = 0;
    r->retry_after[0] = r->apns_id[0] = '\0';
    fifo_push(l, r, true);
}

/* ---- nghttp2 callbacks --------------------------------------------------- */

static ssize_t body_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    push_h2_req_t *r = src->ptr;
    size_t left = r->body_len - r->body_off;
    (void)ng;
    (void)sid;
    (void)ud;
    if (len > left)
        len = left;
    memcpy(buf, r->body + r->body_off, len);
    r->body_off += len;
    if (r->body_off == r->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)len;
}

static void copy_value(char *out, size_t cap, const uint8_t *v, size_t vl)
{
    if (vl >= cap)
        vl = cap - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    push_h2_req_t *r;
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    r = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!r)
        return 0;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        long st = 0;
        for (size_t i = 0; i < vl && i < 3; i++)
            st = st * 10 + (value[i] - '0');
        if (st >= 200) /* informational answers are not the answer */
            r->status = st;
    } else if (nl == 11 && memcmp(name, "retry-after", 11) == 0) {
        copy_value(r->retry_after, sizeof(r->retry_after), value, vl);
    } else if (nl == 7 && memcmp(name, "apns-id", 7) == 0) {
        copy_value(r->apns_id, sizeof(r->apns_id), value, vl);
    }
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *ud)
{
    push_h2_req_t *r = nghttp2_session_get_stream_user_data(ng, sid);
    (void)flags;
    (void)ud;
    if (!r)
        return 0;
    size_t room = PUSH_H2_MAX_RESP - r->resp_len;
    if (len > room)
        len = room;
    if (len == 0)
        return 0;                                       /* over the cap: dropped */
    char *nb = realloc(r->resp, r->resp_len + len + 1); /* answers are small: exact size */
    if (!nb)
        return 0;
    r->resp = nb;
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    r->resp[r->resp_len] = '\0';
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    conn_t *c = ud;
    lane_t *l = c->l;
    push_h2_req_t *r = nghttp2_session_get_stream_user_data(ng, sid);
    c->open_streams--;
    if (!r)
        return 0; /* given up already (timeout) */
    nghttp2_session_set_stream_user_data(ng, sid, NULL);
    if (r->status > 0) {
        finish_sent(l, c, r, PUSH_H2_OK, "");
    } else if (code == NGHTTP2_REFUSED_STREAM) {
        replay(l, c, r, "refused by the server every time it was sent");
    } else {
        char msg[96];
        snprintf(msg, sizeof(msg), "stream reset: %s", nghttp2_http2_strerror(code));
        finish_sent(l, c, r, code ? PUSH_H2_E_RESET : PUSH_H2_E_PROTOCOL,
                    code ? msg : "stream closed without an answer");
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    conn_t *c = ud;
    lane_t *l = c->l;
    (void)ng;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) &&
        c->state == C_SETTINGS) {
        c->state = C_READY;
        l->connect_failing = false;
        l->backoff_ms = BACKOFF_MIN_MS;
    } else if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        c->goaway_last = f->goaway.last_stream_id;
        if (c->state == C_READY || c->state == C_SETTINGS)
            c->state = C_DRAINING;
        if (f->goaway.error_code != NGHTTP2_NO_ERROR)
            log_warn("%s: GOAWAY %s (last stream %d)", l->name,
                     nghttp2_http2_strerror(f->goaway.error_code), f->goaway.last_stream_id);
    }
    return 0;
}

static nghttp2_session_callbacks *g_cbs;
static pthread_once_t g_cbs_once = PTHREAD_ONCE_INIT;

static void cbs_init(void)
{
    nghttp2_session_callbacks_new(&g_cbs);
    nghttp2_session_callbacks_set_on_header_callback(g_cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(g_cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(g_cbs, on_frame_recv);
}

/* ---- connections --------------------------------------------------------- */

static void conn_watch(conn_t *c, uint32_t events)
{
    if (c->fd < 0 || events == c->events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(c->l->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

/* Close and forget a connection; its streams end as h2.h says. */
static void conn_close(conn_t *c, push_h2_err_t e, const char *msg)
{
    lane_t *l = c->l;
    bool was_ready = c->state == C_READY || c->state == C_DRAINING;
    if (c->state == C_DEAD)
        return;
    while (c->streams) {
        push_h2_req_t *r = c->streams;
        if (c->goaway && r->stream_id > c->goaway_last)
            replay(l, c, r, "the server went away before processing it, every time");
        else
            finish_sent(l, c, r, e == PUSH_H2_OK ? PUSH_H2_E_CLOSED : e, msg);
    }
    if (!was_ready && e != PUSH_H2_OK) {
        /* never got to use it: back off before the next try, fail the
         * waiting requests fast meanwhile */
        l->connect_failing = true;
        l->conn_err = e;
        snprintf(l->conn_msg, sizeof(l->conn_msg), "%.159s", msg);
        l->next_connect_ms = clock_mono_ms() + l->backoff_ms;
        l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
        log_warn("%s: cannot connect to %s: %s (next try in %lld ms)", l->name, l->authority, msg,
                 (long long)(l->next_connect_ms - clock_mono_ms()));
    } else if (e != PUSH_H2_OK) {
        log_warn("%s: connection to %s lost: %s", l->name, l->authority, msg);
    }
    if (c->ng)
        nghttp2_session_del(c->ng);
    c->ng = NULL;
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_DEAD;
}

static void conn_free_dead(lane_t *l)
{
    int k = 0;
    for (int i = 0; i < l->nconns; i++) {
        if (l->conns[i]->state == C_DEAD) {
            free(l->conns[i]->out);
            free(l->conns[i]);
        } else {
            l->conns[k++] = l->conns[i];
        }
    }
    l->nconns = k;
}

static void conn_open(lane_t *l)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    conn_t *c = calloc(1, sizeof(*c));
    char msg[160];
    int rc;
    if (!c)
        return;
    c->l = l;
    c->fd = -1;
    c->state = C_CONNECTING;
    c->deadline_ms = clock_mono_ms() + l->c.connect_timeout_ms;
    l->conns[l->nconns++] = c;
    rc = getaddrinfo(l->host, l->port, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(msg, sizeof(msg), "%.80s: %.60s", l->host, gai_strerror(rc));
        conn_close(c, PUSH_H2_E_CONNECT, msg);
        return;
    }
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd >= 0) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        rc = connect(c->fd, ai->ai_addr, ai->ai_addrlen);
    }
    freeaddrinfo(ai);
    if (c->fd < 0 || (rc != 0 && errno != EINPROGRESS)) {
        snprintf(msg, sizeof(msg), "connect: %s", strerror(errno));
        conn_close(c, PUSH_H2_E_CONNECT, msg);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->events = EPOLLOUT;
}

static void conn_fail(conn_t *c, push_h2_err_t e, const char *msg)
{
    c->failed = true;
    c->fail_err = e;
    snprintf(c->fail_msg, sizeof(c->fail_msg), "%.159s", msg);
}

static void ssl_error_text(conn_t *c, char *out, size_t cap, const char *what)
{
    unsigned long e = ERR_get_error();
    long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(out, cap, "%s: certificate verification failed: %s", what,
                 X509_verify_cert_error_string(vr));
    else if (e)
        snprintf(out, cap, "%s: %s", what, ERR_reason_error_string(e));
    else
        snprintf(out, cap, "%s: %s", what, errno ? strerror(errno) : "connection closed");
    ERR_clear_error();
}

/* Output: nghttp2's frames gathered, then written; EPOLLOUT while some wait. */
static void conn_flush(conn_t *c)
{
    if (c->state < C_SETTINGS || c->failed || !c->ng)
        return;
    for (;;) {
        if (c->out_off == c->out_len) {
            c->out_off = c->out_len = 0;
            while (c->out_len < WRITE_BATCH) {
                const uint8_t *p;
                ssize_t n = nghttp2_session_mem_send(c->ng, &p);
                if (n < 0) {
                    conn_fail(c, PUSH_H2_E_PROTOCOL, nghttp2_strerror((int)n));
                    return;
                }
                if (n == 0)
                    break;
                if (c->out_len + (size_t)n > c->out_cap) {
                    size_t cap = c->out_cap ? c->out_cap : WRITE_BATCH;
                    while (cap < c->out_len + (size_t)n)
                        cap *= 2;
                    uint8_t *o = realloc(c->out, cap);
                    if (!o) {
                        conn_fail(c, PUSH_H2_E_PROTOCOL, "out of memory");
                        return;
                    }
                    c->out = o;
                    c->out_cap = cap;
                }
                memcpy(c->out + c->out_len, p, (size_t)n);
                c->out_len += (size_t)n;
            }
            if (c->out_len == 0)
                break;
        }
        ERR_clear_error();
        int n = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        int se = SSL_get_error(c->ssl, n);
        if (se == SSL_ERROR_WANT_WRITE || se == SSL_ERROR_WANT_READ) {
            conn_watch(c, EPOLLIN | EPOLLOUT);
            return;
        }
        char msg[160];
        ssl_error_text(c, msg, sizeof(msg), "write");
        conn_fail(c, PUSH_H2_E_CLOSED, msg);
        return;
    }
    conn_watch(c, EPOLLIN);
}

static void conn_start_h2(conn_t *c)
{
    lane_t *l = c->l;
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    nghttp2_option *opt = NULL;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
    if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
        conn_fail(c, PUSH_H2_E_TLS, "the server did not select HTTP/2 (ALPN h2)");
        return;
    }
    pthread_once(&g_cbs_once, cbs_init);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, 1); /* until its SETTINGS */
    int rc = nghttp2_session_client_new2(&c->ng, g_cbs, c, opt);
    nghttp2_option_del(opt);
    if (rc != 0) {
        conn_fail(c, PUSH_H2_E_PROTOCOL, nghttp2_strerror(rc));
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
    };
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, 1 << 24);
    c->state = C_SETTINGS; /* streams wait for the server's SETTINGS */
    (void)l;
}

static void conn_handshake(conn_t *c)
{
    lane_t *l = c->l;
    char msg[160];
    if (!c->ssl) {
        c->ssl = SSL_new(l->ctx);
        if (!c->ssl) {
            conn_fail(c, PUSH_H2_E_TLS, "SSL_new failed");
            return;
        }
        if (l->host_is_ip) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), l->host);
        } else {
            SSL_set_tlsext_host_name(c->ssl, l->host);
            SSL_set1_host(c->ssl, l->host);
        }
        SSL_set_fd(c->ssl, c->fd);
        c->state = C_TLS;
    }
    ERR_clear_error();
    int rc = SSL_connect(c->ssl);
    if (rc == 1) {
        conn_start_h2(c);
        return;
    }
    int se = SSL_get_error(c->ssl, rc);
    if (se == SSL_ERROR_WANT_READ) {
        conn_watch(c, EPOLLIN);
    } else if (se == SSL_ERROR_WANT_WRITE) {
        conn_watch(c, EPOLLIN | EPOLLOUT);
    } else {
        ssl_error_text(c, msg, sizeof(msg), "TLS handshake");
        conn_fail(c, PUSH_H2_E_TLS, msg);
    }
}

static void conn_read(conn_t *c)
{
    uint8_t buf[READ_CHUNK];
    for (int rounds = 0; rounds < 64 && !c->failed; rounds++) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, sizeof(buf));
        if (n > 0) {
            ssize_t rv = nghttp2_session_mem_recv(c->ng, buf, (size_t)n);
            if (rv < 0)
                conn_fail(c, PUSH_H2_E_PROTOCOL, nghttp2_strerror((int)rv));
            continue;
        }
        int se = SSL_get_error(c->ssl, n);
        if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE)
            return;
        char msg[160];
        if (se == SSL_ERROR_ZERO_RETURN || (se == SSL_ERROR_SYSCALL && n == 0))
            snprintf(msg, sizeof(msg), "closed by the server");
        else
            ssl_error_text(c, msg, sizeof(msg), "read");
        conn_fail(c, c->state == C_SETTINGS ? PUSH_H2_E_CONNECT : PUSH_H2_E_CLOSED, msg);
        return;
    }
}

static void conn_event(conn_t *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            char msg[160];
            snprintf(msg, sizeof(msg), "connect to %.80s: %.60s", c->l->authority, strerror(err));
            conn_fail(c, PUSH_H2_E_CONNECT, msg);
        } else if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            conn_handshake(c);
        }
    } else if (c->state == C_TLS) {
        conn_handshake(c);
    } else if (c->state != C_DEAD) {
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(c);
    }
    if (!c->failed)
        conn_flush(c);
    if (c->failed) {
        conn_close(c, c->fail_err, c->fail_msg);
        return;
    }
    /* drained after a GOAWAY: nothing more to come */
    if (c->state == C_DRAINING && c->open_streams == 0 && !c->streams)
        conn_close(c, PUSH_H2_OK, "drained");
}

/* ---- the lane's loop ------------------------------------------------------- */

static int conn_room(conn_t *c)
{
    if (c->state != C_READY || c->goaway)
        return 0;
    uint32_t server =
        nghttp2_session_get_remote_settings(c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    int cap = c->l->c.max_streams_per_conn;
    if ((uint32_t)cap > server)
        cap = (int)server;
    return cap - c->open_streams;
}

static bool submit(lane_t *l, conn_t *c, push_h2_req_t *r)
{
    nghttp2_nv nv[PUSH_H2_MAX_HDRS + 5];
    char clen[24];
    size_t n = 0;
#define NV(nm, val)                                                                                \
    do {                                                                                           \
        nv[n].name = (uint8_t *)(nm);                                                              \
        nv[n].namelen = strlen(nm);                                                                \
        nv[n].value = (uint8_t *)(val);                                                            \
        nv[n].valuelen = strlen(val);                                                              \
        nv[n].flags = NGHTTP2_NV_FLAG_NONE;                                                        \
        n++;                                                                                       \
    } while (0)
    NV(":method", "POST");
    NV(":scheme", "https");
    NV(":authority", l->authority);
    NV(":path", r->path);
    for (size_t i = 0; i < r->nhdrs && i < PUSH_H2_MAX_HDRS; i++)
        NV(r->hdrs[i].name, r->hdrs[i].value);
    snprintf(clen, sizeof(clen), "%zu", r->body_len);
    NV("content-length", clen);
#undef NV
    nghttp2_data_provider dp = {.source.ptr = r, .read_callback = body_read};
    r->body_off = 0;
    int32_t sid = nghttp2_submit_request(c->ng, NULL, nv, n, &dp, r);
    if (sid < 0) {
        finish_unsent(r, PUSH_H2_E_PROTOCOL, nghttp2_strerror(sid));
        return false;
    }
    r->stream_id = sid;
    r->conn = c;
    r->sent_ms = clock_mono_ms();
    r->prev = NULL;
    r->next = c->streams;
    if (c->streams)
        c->streams->prev = r;
    c->streams = r;
    c->open_streams++;
    l->in_flight++;
    atomic_fetch_add(&l->h->in_flight, 1);
    metrics_gauge_add(l->m_in_flight, 1);
    return true;
}

/* Hand waiting requests to connections; open one when all are full. */
static void dispatch(lane_t *l, int64_t now, int64_t *wake)
{
    if (l->c.rate_per_s > 0) {
        double burst = l->c.rate_per_s / 10 + 1;
        l->tokens += (double)(now - l->refill_ms) * l->c.rate_per_s / 1000.0;
        if (l->tokens > burst)
            l->tokens = burst;
        l->refill_ms = now;
    }
    while (l->head && l->in_flight < l->c.max_in_flight) {
        conn_t *best = NULL;
        int room = 0, live = 0;
        bool connecting = false;
        for (int i = 0; i < l->nconns; i++) {
            conn_t *c = l->conns[i];
            if (c->state == C_DEAD || c->state == C_DRAINING)
                continue;
            live++;
            connecting = connecting || c->state < C_READY;
            int rm = conn_room(c);
            if (rm > room) {
                room = rm;
                best = c;
            }
        }
        if (!best) {
            if (!connecting && live < l->c.max_conns && now >= l->next_connect_ms) {
                conn_open(l);
                continue; /* it may have failed at once */
            }
            if (!connecting && live == 0 && l->connect_failing) {
                /* no connection and backing off: fail fast */
                push_h2_req_t *r;
                while ((r = fifo_pop(l)))
                    finish_unsent(r, l->conn_err, l->conn_msg);
            }
            if (!connecting && live == 0 && l->next_connect_ms > now && l->next_connect_ms < *wake)
                *wake = l->next_connect_ms;
            return;
        }
        if (l->c.rate_per_s > 0) {
            if (l->tokens < 1) {
                int64_t w = now + (int64_t)((1 - l->tokens) * 1000.0 / l->c.rate_per_s) + 1;
                if (w < *wake)
                    *wake = w;
                return;
            }
            l->tokens -= 1;
        }
        push_h2_req_t *r = fifo_pop(l);
        if (atomic_load(&((batch_t *)r->batch)->cancelled))
            finish_unsent(r, PUSH_H2_E_CANCELLED, "cancelled before it was sent");
        else
            submit(l, best, r);
    }
}

/* Timeouts: waiting requests, requests in flight, connections being made.
 * The queue is in order of queueing (replays go to the front, and they were
 * queued earlier), so only its head is looked at; streams in flight and
 * connections are scanned every SCAN_MS (timeouts need not be exact). */
static void expire(lane_t *l, int64_t now, int64_t *wake)
{
    int64_t to = l->c.request_timeout_ms;
    char msg[96];
    while (l->head && now - l->head->queued_ms >= to) {
        push_h2_req_t *r = fifo_pop(l);
        snprintf(msg, sizeof(msg), "no stream within %lld ms", (long long)to);
        finish_unsent(r, PUSH_H2_E_TIMEOUT, msg);
    }
    if (l->head && l->head->queued_ms + to < *wake)
        *wake = l->head->queued_ms + to;
    if (now < l->next_scan_ms) {
        if (l->in_flight > 0 || l->nconns > 0)
            *wake = *wake < l->next_scan_ms ? *wake : l->next_scan_ms;
        return;
    }
    l->next_scan_ms = now + SCAN_MS;
    for (int i = 0; i < l->nconns; i++) {
        conn_t *c = l->conns[i];
        if (c->state == C_DEAD)
            continue;
        if (c->state < C_READY && now >= c->deadline_ms) {
            snprintf(msg, sizeof(msg), "no TLS connection and SETTINGS within %lld ms",
                     (long long)l->c.connect_timeout_ms);
            conn_close(c, PUSH_H2_E_CONNECT, msg);
            continue;
        }
        for (push_h2_req_t *s = c->streams, *nx; s; s = nx) {
            nx = s->next;
            if (now - s->queued_ms < to)
                continue;
            nghttp2_session_set_stream_user_data(c->ng, s->stream_id, NULL);
            nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->stream_id, NGHTTP2_CANCEL);
            snprintf(msg, sizeof(msg), "no answer within %lld ms", (long long)to);
            finish_sent(l, c, s, PUSH_H2_E_TIMEOUT, msg);
        }
    }
    if (l->in_flight > 0 || l->nconns > 0)
        *wake = *wake < l->next_scan_ms ? *wake : l->next_scan_ms;
}

static void drop_cancelled(lane_t *l)
{
    push_h2_req_t *keep = NULL, *keep_tail = NULL, *r;
    while ((r = fifo_pop(l))) {
        if (atomic_load(&((batch_t *)r->batch)->cancelled)) {
            finish_unsent(r, PUSH_H2_E_CANCELLED, "cancelled before it was sent");
            continue;
        }
        if (keep_tail)
            keep_tail->next = r;
        else
            keep = r;
        keep_tail = r;
    }
    l->head = keep;
    l->tail = keep_tail;
}

static void *io_main(void *arg)
{
    lane_t *l = arg;
    struct epoll_event evs[64];
    push_h2_req_t *q, *r;
    for (;;) {
        bool stop;
        pthread_mutex_lock(&l->qlock);
        q = l->qhead;
        l->qhead = l->qtail = NULL;
        stop = l->stop;
        pthread_mutex_unlock(&l->qlock);
        while ((r = q)) {
            q = r->next;
            fifo_push(l, r, false);
        }
        if (stop)
            break;
        int cancels = atomic_load(&l->h->cancels);
        if (cancels != l->seen_cancels) {
            l->seen_cancels = cancels;
            drop_cancelled(l);
        }
        int64_t now = clock_mono_ms(), wake = now + TICK_MAX_MS;
        expire(l, now, &wake);
        dispatch(l, now, &wake);
        for (int i = 0; i < l->nconns; i++) {
            conn_t *c = l->conns[i];
            if (c->state >= C_SETTINGS && c->state != C_DEAD) {
                conn_flush(c);
                if (c->failed)
                    conn_close(c, c->fail_err, c->fail_msg);
            }
        }
        conn_free_dead(l);
        int64_t t = wake - clock_mono_ms();
        int n = epoll_wait(l->ep, evs, 64, t < 0 ? 0 : (int)t);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t v;
                if (read(l->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    log_warn("%s: eventfd: %s", l->name, strerror(errno));
                continue;
            }
            conn_event(evs[i].data.ptr, evs[i].events);
        }
        conn_free_dead(l);
    }
    /* stopping: everything still here ends as not sent / aborted */
    while ((r = fifo_pop(l)))
        finish_unsent(r, PUSH_H2_E_CANCELLED, "the push client is shutting down");
    for (int i = 0; i < l->nconns; i++)
        conn_close(l->conns[i], PUSH_H2_E_CLOSED, "the push client is shutting down");
    conn_free_dead(l);
    return NULL;
}

/* ---- construction ------------------------------------------------------------ */

int push_h2_new(push_h2_t **out, const push_h2_conf_t *conf, char *err, size_t errlen)
{
    push_h2_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->c = *conf;
    *out = h;
    return 0;
}

/* "https://host[:port]" (IPv6 in brackets), nothing after but "/". */
static int parse_origin(lane_t *l, const char *o, char *err, size_t errlen)
{
    const char *p = o, *hs, *he;
    if (strncmp(p, "https://", 8) != 0)
        goto bad;
    p += 8;
    if (*p == '[') {
        hs = ++p;
        he = strchr(p, ']');
        if (!he)
            goto bad;
        p = he + 1;
    } else {
        hs = p;
        while (*p && *p != ':' && *p != '/')
            p++;
        he = p;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(l->host))
        goto bad;
    memcpy(l->host, hs, (size_t)(he - hs));
    l->host[he - hs] = '\0';
    snprintf(l->port, sizeof(l->port), "443");
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            goto bad;
        snprintf(l->port, sizeof(l->port), "%ld", port);
        p = end;
    }
    if (*p && strcmp(p, "/") != 0)
        goto bad;
    unsigned char tmp[16];
    l->host_is_ip = inet_pton(AF_INET, l->host, tmp) == 1 || inet_pton(AF_INET6, l->host, tmp) == 1;
    bool v6 = strchr(l->host, ':') != NULL;
    if (strcmp(l->port, "443") == 0)
        snprintf(l->authority, sizeof(l->authority), v6 ? "[%s]" : "%s", l->host);
    else
        snprintf(l->authority, sizeof(l->authority), v6 ? "[%s]:%s" : "%s:%s", l->host, l->port);
    return 0;
bad:
    snprintf(err, errlen, "%s: not an https://host[:port] origin", o ? o : "(null)");
    return -1;
}

static int tls_ctx(lane_t *l, const push_lane_conf_t *c, char *err, size_t errlen)
{
    static const unsigned char alpn[] = "\x02h2";
    l->ctx = SSL_CTX_new(TLS_client_method());
    if (!l->ctx) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return -1;
    }
    SSL_CTX_set_min_proto_version(l->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(l->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(l->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_protos(l->ctx, alpn, sizeof(alpn) - 1);
    if (c->ca_file && c->ca_file[0]) {
        if (SSL_CTX_load_verify_locations(l->ctx, c->ca_file, NULL) != 1) {
            snprintf(err, errlen, "%s: CA file %s cannot be loaded", c->name, c->ca_file);
            ERR_clear_error();
            return -1;
        }
    } else if (SSL_CTX_set_default_verify_paths(l->ctx) != 1) {
        snprintf(err, errlen, "%s: the system's CA certificates cannot be loaded", c->name);
        ERR_clear_error();
        return -1;
    }
    if (c->client_cert && c->client_cert[0]) {
        if (SSL_CTX_use_certificate_chain_file(l->ctx, c->client_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(l->ctx, c->client_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(l->ctx) != 1) {
            snprintf(err, errlen, "%s: client certificate %s with key %s cannot be used", c->name,
                     c->client_cert, c->client_key ? c->client_key : "(none)");
            ERR_clear_error();
            return -1;
        }
    }
    return 0;
}

int push_h2_lane_add(push_h2_t *h, const push_lane_conf_t *conf, char *err, size_t errlen)
{
    if (h->started || h->nlanes >= PUSH_H2_MAX_LANES) {
        snprintf(err, errlen, "%s",
                 h->started ? "lanes must be added before start" : "too many provider lanes");
        return -1;
    }
    lane_t *l = &h->lanes[h->nlanes];
    memset(l, 0, sizeof(*l));
    l->c = *conf;
    l->h = h;
    l->ep = l->evfd = -1;
    if (parse_origin(l, conf->origin, err, errlen) || tls_ctx(l, conf, err, errlen))
        goto fail;
    l->name = strdup(conf->name ? conf->name : "lane");
    l->provider = strdup(conf->provider ? conf->provider : "http");
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!l->name || !l->provider || l->ep < 0 || l->evfd < 0) {
        snprintf(err, errlen, "out of resources for a lane");
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(l->ep, EPOLL_CTL_ADD, l->evfd, &ev);
    l->c.name = l->name;
    l->c.provider = l->provider;
    l->c.origin = NULL;
    l->c.ca_file = l->c.client_cert = l->c.client_key = NULL;
    if (l->c.max_in_flight < 1)
        l->c.max_in_flight = 1;
    if (l->c.max_conns < 1)
        l->c.max_conns = 1;
    if (l->c.max_conns > CONN_MAX)
        l->c.max_conns = CONN_MAX;
    if (l->c.max_streams_per_conn < 1)
        l->c.max_streams_per_conn = 100;
    if (l->c.connect_timeout_ms <= 0)
        l->c.connect_timeout_ms = 5000;
    if (l->c.request_timeout_ms <= 0)
        l->c.request_timeout_ms = 15000;
    l->backoff_ms = BACKOFF_MIN_MS;
    l->tokens = l->c.rate_per_s > 0 ? l->c.rate_per_s / 10 + 1 : 0;
    l->refill_ms = clock_mono_ms();
    pthread_mutex_init(&l->qlock, NULL);
    if (h->c.metrics) {
        static const char *const lbl[] = {"provider"};
        metrics_family_t *inf =
            metrics_gauge_new(h->c.metrics, "imtask_push_in_flight",
                              "Provider requests (HTTP/2 streams) in flight", 1, lbl);
        metrics_family_t *lat =
            metrics_histogram_new(h->c.metrics, "imtask_push_latency_seconds",
                                  "Time from sending a push request to its answer", 1, lbl,
                                  metrics_latency_nbounds, metrics_latency_bounds);
        l->m_in_flight = metrics_series_get1(inf, l->provider);
        l->m_latency = metrics_series_get1(lat, l->provider);
    }
    return h->nlanes++;
fail:
    if (l->ctx)
        SSL_CTX_free(l->ctx);
    if (l->ep >= 0)
        close(l->ep);
    if (l->evfd >= 0)
        close(l->evfd);
    free(l->name);
    free(l->provider);
    memset(l, 0, sizeof(*l));
    return -1;
}

int push_h2_start(push_h2_t *h, char *err, size_t errlen)
{
    for (int i = 0; i < h->nlanes; i++) {
        if (pthread_create(&h->lanes[i].thread, NULL, io_main, &h->lanes[i]) != 0) {
            snprintf(err, errlen, "cannot start the I/O thread of %s", h->lanes[i].name);
            return -1;
        }
        h->lanes[i].started = true;
    }
    h->started = true;
    return 0;
}

static void lane_wake(lane_t *l)
{
    uint64_t one = 1;
    if (write(l->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("%s: eventfd: %s", l->name, strerror(errno));
}

/* ---- callers ------------------------------------------------------------------- */

void push_h2_run(push_h2_t *h, push_h2_req_t *const *reqs, size_t n,
                 bool (*cancelled)(void *opaque), void *cancel_opaque)
{
    batch_t b;
    if (n == 0)
        return;
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    b.pending = n;
    atomic_init(&b.cancelled, false);
    push_h2_req_t *head[PUSH_H2_MAX_LANES] = {0}, *tail[PUSH_H2_MAX_LANES] = {0};
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < n; i++) {
        push_h2_req_t *r = reqs[i];
        r->batch = &b;
        r->next = r->prev = NULL;
        r->conn = NULL;
        r->status = 0;
        r->err = PUSH_H2_OK;
        r->error[0] = '\0';
        r->resp_len = 0;
        if (r->resp)
            r->resp[0] = '\0';
        r->retry_after[0] = r->apns_id[0] = '\0';
        r->replays = 0;
        r->stream_id = 0;
        r->queued_ms = now;
        r->latency_ms = 0;
        if (r->lane < 0 || r->lane >= h->nlanes) {
            finish_unsent(r, PUSH_H2_E_PROTOCOL, "no such lane");
            continue;
        }
        if (tail[r->lane])
            tail[r->lane]->next = r;
        else
            head[r->lane] = r;
        tail[r->lane] = r;
    }
    for (int k = 0; k < h->nlanes; k++) {
        lane_t *l = &h->lanes[k];
        if (!head[k])
            continue;
        pthread_mutex_lock(&l->qlock);
        if (l->stop || !l->started) {
            pthread_mutex_unlock(&l->qlock);
            for (push_h2_req_t *r = head[k], *nx; r; r = nx) {
                nx = r->next;
                r->next = NULL;
                finish_unsent(r, PUSH_H2_E_CANCELLED, "the push client is not running");
            }
            continue;
        }
        bool was_empty = l->qhead == NULL;
        if (l->qtail)
            l->qtail->next = head[k];
        else
            l->qhead = head[k];
        l->qtail = tail[k];
        pthread_mutex_unlock(&l->qlock);
        if (was_empty)
            lane_wake(l);
    }

    pthread_mutex_lock(&b.lock);
    while (b.pending > 0) {
        if (cancelled && !atomic_load(&b.cancelled)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&b.cond, &b.lock, &ts);
            if (b.pending > 0 && cancelled(cancel_opaque)) {
                atomic_store(&b.cancelled, true);
                atomic_fetch_add(&h->cancels, 1);
                for (int k = 0; k < h->nlanes; k++)
                    lane_wake(&h->lanes[k]);
            }
        } else {
            pthread_cond_wait(&b.cond, &b.lock);
        }
    }
    pthread_mutex_unlock(&b.lock);
    pthread_mutex_destroy(&b.lock);
    pthread_cond_destroy(&b.cond);
    for (size_t i = 0; i < n; i++)
        reqs[i]->batch = NULL;
}

void push_h2_req_clear(push_h2_req_t *r)
{
    free(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
}

int push_h2_in_flight(push_h2_t *h)
{
    return atomic_load(&h->in_flight);
}

void push_h2_destroy(push_h2_t **hp)
{
    push_h2_t *h = hp ? *hp : NULL;
    if (!h)
        return;
    for (int i = 0; i < h->nlanes; i++) {
        lane_t *l = &h->lanes[i];
        if (l->started) {
            pthread_mutex_lock(&l->qlock);
            l->stop = true;
            pthread_mutex_unlock(&l->qlock);
            lane_wake(l);
            pthread_join(l->thread, NULL);
        }
        pthread_mutex_destroy(&l->qlock);
        SSL_CTX_free(l->ctx);
        close(l->ep);
        close(l->evfd);
        free(l->name);
        free(l->provider);
    }
    free(h);
    *hp = NULL;
}
