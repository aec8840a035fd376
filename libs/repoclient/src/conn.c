/* conn.c: one HTTP/2 connection of the pool: non-blocking TCP, optional TLS
 * (ALPN h2), an nghttp2 client session, the streams of the calls on it, and
 * how a gRPC response is read from them. Runs on the client's I/O thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/err.h>

#include "arena.h"
#include "internal.h"

#define OUT_HIGH_WATER (256 * 1024) /* stop asking nghttp2 for more output */
#define READS_PER_EVENT 32
#define STREAM_WINDOW (4 * 1024 * 1024)
#define CONN_WINDOW (16 * 1024 * 1024)

static void set_status(repo_status_t *st, repo_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_status(repo_status_t *st, repo_err_t code, const char *fmt, ...)
{
    va_list ap;
    st->code = code;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
}

/* ----------------------------------------------------------- streams */

static void stream_unlink(conn_t *k, call_t *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        k->streams = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
    call->conn = NULL;
    k->active--;
    atomic_fetch_sub(&k->client->st_inflight, 1);
}

/* The gRPC outcome of a closed stream, into call->result / call->resp. */
static void stream_result(conn_t *k, call_t *call, uint32_t h2err)
{
    repo_status_t *r = &call->result;
    call->resp = NULL;
    if (call->local.code != REPO_ERR_OK) {
        *r = call->local;
        return;
    }
    if (h2err == NGHTTP2_REFUSED_STREAM) {
        call->unprocessed = true;
        set_status(r, REPO_ERR_UNAVAILABLE, "%s refused the stream", k->ep->addr);
        return;
    }
    if (call->grpc_status == -1 && h2err == NGHTTP2_CANCEL && client_now() >= call->deadline - 20) {
        /* The server's copy of our grpc-timeout ran out first. */
        set_status(r, REPO_ERR_DEADLINE_EXCEEDED, "deadline exceeded (stream reset by %s)",
                   k->ep->addr);
        return;
    }
    if (call->grpc_status == -1 && h2err != NGHTTP2_NO_ERROR) {
        set_status(r, wire_h2_to_grpc(h2err), "stream reset by %s: %s", k->ep->addr,
                   nghttp2_http2_strerror(h2err));
        return;
    }
    if (call->grpc_status == -1) {
        if (call->http_status != 200 && call->http_status != 0)
            set_status(r, wire_http_to_grpc(call->http_status), "HTTP status %d from %s",
                       call->http_status, k->ep->addr);
        else if (!call->grpc_ct)
            set_status(r, REPO_ERR_UNKNOWN, "response from %s is not application/grpc",
                       k->ep->addr);
        else
            set_status(r, REPO_ERR_INTERNAL, "no grpc-status from %s", k->ep->addr);
        return;
    }
    if (call->grpc_status == -2) {
        set_status(r, REPO_ERR_UNKNOWN, "malformed grpc-status from %s", k->ep->addr);
        return;
    }
    if (call->grpc_status != 0) {
        r->code = call->grpc_status > 16 ? REPO_ERR_UNKNOWN : (repo_err_t)call->grpc_status;
        snprintf(r->message, sizeof r->message, "%s", call->grpc_message);
        return;
    }
    if (!call->grpc_ct) {
        set_status(r, REPO_ERR_UNKNOWN, "response from %s is not application/grpc", k->ep->addr);
        return;
    }
    wire_err_t we = wire_parser_finish(&call->parser);
    if (we) {
        set_status(r, REPO_ERR__PROTOCOL, "from %s: %s", k->ep->addr, wire_err_str(we));
        return;
    }
    size_t len;
    uint8_t *msg = wire_parser_take(&call->parser, &len);
    if (!msg) {
        set_status(r, REPO_ERR_INTERNAL, "no response message from %s", k->ep->addr);
        return;
    }
    call->resp = arena_unpack(call->m->resp, len, msg);
    free(msg);
    if (!call->resp) {
        set_status(r, REPO_ERR__DECODE, "undecodable %s from %s", call->m->resp->name, k->ep->addr);
        return;
    }
    r->code = REPO_ERR_OK;
    r->message[0] = '\0';
}

/* ------------------------------------------------- nghttp2 callbacks */

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    conn_t *k = ud;
    (void)s;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && k->state == CONN_H2) {
            k->state = CONN_READY;
            k->was_ready = true;
            client_conn_ready(k->client, k);
        }
        break;
    case NGHTTP2_GOAWAY:
        if (!k->goaway) {
            k->goaway = true;
            atomic_fetch_add(&k->client->st_goaways, 1);
        }
        break;
    case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK)
            k->ping_sent = 0;
        break;
    }
    return 0;
}

static bool is_grpc_ct(const uint8_t *v, size_t n)
{
    static const char ct[] = "application/grpc";
    size_t m = sizeof ct - 1;
    return n >= m && !memcmp(v, ct, m) && (n == m || v[m] == '+' || v[m] == ';');
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    conn_t *k = ud;
    call_t *call = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    (void)flags;
    if (!call || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    call->header_bytes += namelen + valuelen + 32;
    if (call->header_bytes > (size_t)k->client->conf->max_header_bytes) {
        if (call->local.code == REPO_ERR_OK)
            set_status(&call->local, REPO_ERR__PROTOCOL, "response headers from %s over %lld bytes",
                       k->ep->addr, (long long)k->client->conf->max_header_bytes);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
#define IS(lit) (namelen == sizeof(lit) - 1 && !memcmp(name, lit, namelen))
    if (IS(":status")) {
        int v = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            v = v * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
        call->http_status = v;
    } else if (IS("content-type")) {
        call->grpc_ct = is_grpc_ct(value, valuelen);
    } else if (IS("grpc-status")) {
        int st = wire_status_parse((const char *)value, valuelen);
        call->grpc_status = st < 0 ? -2 : st;
    } else if (IS("grpc-message")) {
        wire_percent_decode((const char *)value, valuelen, call->grpc_message,
                            sizeof call->grpc_message);
    }
#undef IS
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud)
{
    conn_t *k = ud;
    call_t *call = nghttp2_session_get_stream_user_data(s, sid);
    (void)flags;
    if (!call || call->local.code != REPO_ERR_OK)
        return 0;
    if (call->http_status != 200 || !call->grpc_ct)
        return 0; /* not gRPC: the status decides; the body is dropped */
    wire_err_t we = wire_parser_feed(&call->parser, data, len);
    if (we == WIRE_OK)
        return 0;
    if (we == WIRE_TOO_LARGE)
        set_status(&call->local, REPO_ERR__MSG_TOO_LARGE, "response from %s over %lld bytes",
                   k->ep->addr, (long long)call->parser.max_len);
    else if (we == WIRE_NOMEM)
        set_status(&call->local, REPO_ERR__NOMEM, "response buffer");
    else
        set_status(&call->local, REPO_ERR__PROTOCOL, "from %s: %s", k->ep->addr, wire_err_str(we));
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *ud)
{
    conn_t *k = ud;
    call_t *call = nghttp2_session_get_stream_user_data(s, sid);
    if (!call || call->conn != k)
        return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    stream_unlink(k, call);
    stream_result(k, call, error_code);
    client_stream_closed(k->client, call);
    return 0;
}

static ssize_t body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    call_t *call = src->ptr;
    size_t n = call->body_len - call->body_off;
    (void)s;
    (void)sid;
    (void)ud;
    if (n > len)
        n = len;
    memcpy(buf, call->body + call->body_off, n);
    call->body_off += n;
    if (call->body_off == call->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_session_callbacks *g_cbs;
static pthread_once_t g_cbs_once = PTHREAD_ONCE_INIT;

static void cbs_init(void)
{
    if (nghttp2_session_callbacks_new(&g_cbs))
        return;
    nghttp2_session_callbacks_set_on_frame_recv_callback(g_cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_header_callback(g_cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(g_cbs, on_stream_close);
}

/* ------------------------------------------------------- lifecycle */

static void epoll_update(conn_t *k, uint32_t mask)
{
    if (k->fd < 0 || mask == k->epoll_mask)
        return;
    struct epoll_event ev = {.events = mask, .data.ptr = k};
    epoll_ctl(k->client->epfd, EPOLL_CTL_MOD, k->fd, &ev);
    k->epoll_mask = mask;
}

conn_t *conn_open(repo_client_t *c, endpoint_t *ep, char *err, size_t errlen)
{
    conn_t *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    k->client = c;
    k->ep = ep;
    k->started = k->last_recv = client_now();
    k->fd = socket(ep->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        free(k);
        return NULL;
    }
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(k->fd, (struct sockaddr *)&ep->sa, ep->salen) < 0 && errno != EINPROGRESS) {
        snprintf(err, errlen, "connect %s: %s", ep->addr, strerror(errno));
        close(k->fd);
        free(k);
        return NULL;
    }
    k->state = CONN_CONNECTING;
    k->epoll_mask = EPOLLIN | EPOLLOUT;
    struct epoll_event ev = {.events = k->epoll_mask, .data.ptr = k};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, k->fd, &ev) < 0) {
        snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
        close(k->fd);
        free(k);
        return NULL;
    }
    return k;
}

static int start_h2(conn_t *k)
{
    repo_client_t *c = k->client;
    pthread_once(&g_cbs_once, cbs_init);
    if (!g_cbs)
        return -1;
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt))
        return -1;
    /* We answer PINGs and SETTINGS ourselves through the session as usual;
     * the peer's header table is bounded by nghttp2's defaults. */
    nghttp2_option_set_max_reserved_remote_streams(opt, 0);
    int rv = nghttp2_session_client_new2(&k->h2, g_cbs, k, opt);
    nghttp2_option_del(opt);
    if (rv)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)c->conf->max_header_bytes},
    };
    if (nghttp2_submit_settings(k->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]))
        return -1;
    nghttp2_session_set_local_window_size(k->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    k->state = CONN_H2;
    return 0;
}

static void ssl_errstr(char *out, size_t outlen)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, out, outlen);
    else
        snprintf(out, outlen, "%s", errno ? strerror(errno) : "connection closed");
    ERR_clear_error();
}

static int tls_start(conn_t *k)
{
    repo_client_t *c = k->client;
    const char *name = c->conf->tls_server_name[0] ? c->conf->tls_server_name : k->ep->host;
    k->ssl = SSL_new(c->ssl_ctx);
    if (!k->ssl || !SSL_set_fd(k->ssl, k->fd))
        return -1;
    SSL_set_mode(k->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    struct in6_addr tmp;
    bool is_ip = inet_pton(AF_INET, name, &tmp) == 1 || inet_pton(AF_INET6, name, &tmp) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(k->ssl, name);
    if (!c->conf->tls_insecure) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(k->ssl);
        if (is_ip ? !X509_VERIFY_PARAM_set1_ip_asc(vp, name) : !SSL_set1_host(k->ssl, name))
            return -1;
    }
    SSL_set_connect_state(k->ssl);
    k->state = CONN_TLS;
    return 0;
}

static void tls_handshake(conn_t *k)
{
    ERR_clear_error();
    int rv = SSL_do_handshake(k->ssl);
    if (rv == 1) {
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(k->ssl, &alpn, &alen);
        if (alen != 2 || memcmp(alpn, "h2", 2)) {
            conn_kill(k, "TLS: the server did not select ALPN h2");
            return;
        }
        k->want_write = false;
        if (start_h2(k))
            conn_kill(k, "nghttp2 session setup failed");
        return;
    }
    int e = SSL_get_error(k->ssl, rv);
    if (e == SSL_ERROR_WANT_READ) {
        k->want_write = false;
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        k->want_write = true;
        return;
    }
    char why[120], msg[160];
    ssl_errstr(why, sizeof why);
    long vr = SSL_get_verify_result(k->ssl);
    if (vr != X509_V_OK)
        snprintf(msg, sizeof msg, "TLS handshake: %s", X509_verify_cert_error_string(vr));
    else
        snprintf(msg, sizeof msg, "TLS handshake: %s", why);
    conn_kill(k, msg);
}

static void on_connected(conn_t *k)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr) {
        char msg[160];
        snprintf(msg, sizeof msg, "connect: %s", strerror(soerr));
        conn_kill(k, msg);
        return;
    }
    if (k->client->ssl_ctx) {
        if (tls_start(k)) {
            conn_kill(k, "TLS setup failed");
            return;
        }
        tls_handshake(k);
        return;
    }
    if (start_h2(k))
        conn_kill(k, "nghttp2 session setup failed");
}

/* Read what the socket has and feed nghttp2. */
static void conn_read(conn_t *k)
{
    repo_client_t *c = k->client;
    for (int i = 0; i < READS_PER_EVENT && k->state != CONN_DEAD; i++) {
        ssize_t n;
        if (k->ssl) {
            ERR_clear_error();
            int rv = SSL_read(k->ssl, c->rbuf, sizeof c->rbuf);
            if (rv <= 0) {
                int e = SSL_get_error(k->ssl, rv);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    k->want_write = true;
                    return;
                }
                char why[120], msg[160];
                ssl_errstr(why, sizeof why);
                snprintf(msg, sizeof msg, "TLS read: %s",
                         e == SSL_ERROR_ZERO_RETURN ? "closed by peer" : why);
                conn_kill(k, msg);
                return;
            }
            n = rv;
        } else {
            n = read(k->fd, c->rbuf, sizeof c->rbuf);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                char msg[160];
                snprintf(msg, sizeof msg, "%s", n == 0 ? "closed by peer" : strerror(errno));
                conn_kill(k, msg);
                return;
            }
        }
        k->last_recv = client_now();
        ssize_t rv = nghttp2_session_mem_recv(k->h2, c->rbuf, (size_t)n);
        if (rv < 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "HTTP/2 protocol error: %s", nghttp2_strerror((int)rv));
            conn_kill(k, msg);
            return;
        }
        if ((size_t)n < sizeof c->rbuf && !k->ssl)
            return;
    }
}

void conn_on_event(conn_t *k, uint32_t ev)
{
    if (k->state == CONN_DEAD)
        return;
    if (k->state == CONN_CONNECTING) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            on_connected(k);
    } else if (k->state == CONN_TLS) {
        tls_handshake(k);
    } else {
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(k);
        if (k->state == CONN_DEAD)
            return;
        if ((ev & (EPOLLERR | EPOLLHUP)) && !(ev & EPOLLIN)) {
            conn_kill(k, "connection reset");
            return;
        }
    }
    if (k->state != CONN_DEAD)
        conn_flush(k);
}

void conn_flush(conn_t *k)
{
    if (k->state == CONN_DEAD)
        return;
    if (k->state == CONN_CONNECTING || k->state == CONN_TLS) {
        epoll_update(k, EPOLLIN | (k->state == CONN_CONNECTING || k->want_write ? EPOLLOUT : 0));
        return;
    }
    for (;;) {
        /* Gather nghttp2's output. */
        while (k->out_len - k->out_off < OUT_HIGH_WATER && nghttp2_session_want_write(k->h2)) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(k->h2, &d);
            if (n < 0) {
                char msg[160];
                snprintf(msg, sizeof msg, "nghttp2: %s", nghttp2_strerror((int)n));
                conn_kill(k, msg);
                return;
            }
            if (n == 0)
                break;
            if (k->out_off > 0 && k->out_off == k->out_len)
                k->out_off = k->out_len = 0;
            if (k->out_len + (size_t)n > k->out_cap) {
                if (k->out_off > 0) {
                    memmove(k->out, k->out + k->out_off, k->out_len - k->out_off);
                    k->out_len -= k->out_off;
                    k->out_off = 0;
                }
                size_t cap = k->out_cap ? k->out_cap : 16384;
                while (cap < k->out_len + (size_t)n)
                    cap *= 2;
                uint8_t *nb = realloc(k->out, cap);
                if (!nb) {
                    conn_kill(k, "out of memory");
                    return;
                }
                k->out = nb;
                k->out_cap = cap;
            }
            memcpy(k->out + k->out_len, d, (size_t)n);
            k->out_len += (size_t)n;
        }
        /* Write. */
        k->want_write = false;
        while (k->out_off < k->out_len) {
            size_t left = k->out_len - k->out_off;
            ssize_t n;
            if (k->ssl) {
                ERR_clear_error();
                int rv =
                    SSL_write(k->ssl, k->out + k->out_off, (int)(left > 1 << 30 ? 1 << 30 : left));
                if (rv <= 0) {
                    int e = SSL_get_error(k->ssl, rv);
                    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                        k->want_write = e == SSL_ERROR_WANT_WRITE;
                        break;
                    }
                    char why[120], msg[160];
                    ssl_errstr(why, sizeof why);
                    snprintf(msg, sizeof msg, "TLS write: %s", why);
                    conn_kill(k, msg);
                    return;
                }
                n = rv;
            } else {
                n = send(k->fd, k->out + k->out_off, left, MSG_NOSIGNAL);
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    k->want_write = true;
                    break;
                }
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0) {
                    char msg[160];
                    snprintf(msg, sizeof msg, "write: %s", strerror(errno));
                    conn_kill(k, msg);
                    return;
                }
            }
            k->out_off += (size_t)n;
        }
        if (k->want_write || k->out_off < k->out_len || !nghttp2_session_want_write(k->h2))
            break;
    }
    if (k->out_off == k->out_len)
        k->out_off = k->out_len = 0;
    bool more = k->out_len > 0 || k->want_write;
    epoll_update(k, EPOLLIN | (more ? EPOLLOUT : 0));
    if (k->goaway && k->active == 0 && k->out_len == 0)
        conn_kill(k, "drained after GOAWAY");
    else if (!nghttp2_session_want_read(k->h2) && !nghttp2_session_want_write(k->h2) &&
             k->out_len == 0)
        conn_kill(k, k->was_ready ? "HTTP/2 session ended"
                                  : "the peer does not speak HTTP/2 (bad frames before SETTINGS)");
}

static void add_nv(nghttp2_nv *nv, size_t *n, const char *name, const char *value)
{
    nv[*n].name = (uint8_t *)name;
    nv[*n].namelen = strlen(name);
    nv[*n].value = (uint8_t *)value;
    nv[*n].valuelen = strlen(value);
    nv[*n].flags = NGHTTP2_NV_FLAG_NONE;
    (*n)++;
}

int conn_submit(conn_t *k, call_t *call)
{
    repo_client_t *c = k->client;
    nghttp2_nv nv[8 + REPO_MAX_MD];
    size_t n = 0;
    char timeout[24];
    int64_t left = call->deadline - client_now();
    wire_timeout_format(left, timeout, sizeof timeout);
    add_nv(nv, &n, ":method", "POST");
    add_nv(nv, &n, ":scheme", c->ssl_ctx ? "https" : "http");
    add_nv(nv, &n, ":path", call->m->path);
    add_nv(nv, &n, ":authority", k->ep->addr);
    add_nv(nv, &n, "content-type", "application/grpc");
    add_nv(nv, &n, "te", "trailers");
    add_nv(nv, &n, "grpc-timeout", timeout);
    add_nv(nv, &n, "user-agent", "im-task-repoclient/0.1");
    const char *p = call->md_buf;
    for (size_t i = 0; i < call->nmd; i++) {
        const char *name = p;
        const char *value = name + strlen(name) + 1;
        add_nv(nv, &n, name, value);
        p = value + strlen(value) + 1;
    }
    call->body_off = 0;
    wire_parser_init(&call->parser, (size_t)c->conf->max_recv_msg_bytes);
    call->http_status = 0;
    call->grpc_ct = false;
    call->grpc_status = -1;
    call->grpc_message[0] = '\0';
    call->header_bytes = 0;
    call->local.code = REPO_ERR_OK;
    call->local.message[0] = '\0';
    call->unprocessed = false;
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = body_read};
    int32_t sid = nghttp2_submit_request(k->h2, NULL, nv, n, &prd, call);
    if (sid < 0)
        return -1;
    call->stream_id = sid;
    call->conn = k;
    call->prev = NULL;
    call->next = k->streams;
    if (k->streams)
        k->streams->prev = call;
    k->streams = call;
    k->active++;
    atomic_fetch_add(&c->st_inflight, 1);
    uint32_t mx = atomic_load(&c->st_max_inflight);
    while (k->active > mx && !atomic_compare_exchange_weak(&c->st_max_inflight, &mx, k->active))
        ;
    return 0;
}

bool conn_has_capacity(const conn_t *k)
{
    if (k->state != CONN_READY || k->goaway)
        return false;
    uint32_t mx =
        nghttp2_session_get_remote_settings(k->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (mx > (uint32_t)k->client->conf->max_streams_per_conn)
        mx = (uint32_t)k->client->conf->max_streams_per_conn;
    return k->active < mx;
}

void conn_timers(conn_t *k, int64_t now)
{
    repo_client_t *c = k->client;
    if (k->state == CONN_DEAD)
        return;
    if (k->state != CONN_READY) {
        if (now - k->started > c->conf->connect_timeout_ms)
            conn_kill(k, "connect timeout");
        return;
    }
    int64_t iv = c->conf->keepalive_interval_ms;
    if (iv <= 0)
        return;
    if (k->ping_sent && now - k->ping_sent > c->conf->keepalive_timeout_ms) {
        atomic_fetch_add(&c->st_ka_timeouts, 1);
        conn_kill(k, "keepalive timeout (no PING ACK)");
        return;
    }
    if (!k->ping_sent && now - k->last_recv >= iv) {
        if (nghttp2_submit_ping(k->h2, NGHTTP2_FLAG_NONE, NULL) == 0)
            k->ping_sent = now;
        conn_flush(k);
    }
}

/* Close the socket and fail the calls on it; the client frees the conn at
 * the end of the loop iteration (client_conn_failed). */
void conn_kill(conn_t *k, const char *why)
{
    repo_client_t *c = k->client;
    if (k->state == CONN_DEAD)
        return;
    bool was_ready = k->state == CONN_READY;
    k->state = CONN_DEAD;
    snprintf(k->why, sizeof k->why, "%s", why);
    if (was_ready)
        atomic_fetch_sub(&c->st_ready, 1);
    while (k->streams) {
        call_t *call = k->streams;
        if (k->h2)
            nghttp2_session_set_stream_user_data(k->h2, call->stream_id, NULL);
        stream_unlink(k, call);
        if (call->local.code == REPO_ERR_OK) {
            call->result.code = REPO_ERR_UNAVAILABLE;
            snprintf(call->result.message, sizeof call->result.message, "connection to %s lost: %s",
                     k->ep->addr, why);
        } else {
            call->result = call->local;
        }
        call->resp = NULL;
        client_stream_closed(c, call);
    }
    if (k->ssl) {
        SSL_free(k->ssl);
        k->ssl = NULL;
    }
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
    if (k->h2) {
        nghttp2_session_del(k->h2);
        k->h2 = NULL;
    }
    client_conn_failed(c, k);
}

void conn_free(conn_t *k)
{
    if (!k)
        return;
    free(k->out);
    free(k);
}
