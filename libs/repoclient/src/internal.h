/* internal.h: the client's private structures, shared by client.c (loop,
 * pool, calls, retries), conn.c (one HTTP/2 connection) and discovery.c. */
#ifndef REPOCLIENT_INTERNAL_H
#define REPOCLIENT_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "repoclient/repoclient.h"
#include "wire.h"

typedef struct call call_t;
typedef struct conn conn_t;
typedef struct endpoint endpoint_t;
typedef struct discovery discovery_t;

typedef enum {
    CALL_PENDING,  /* waiting for a stream */
    CALL_WAITING,  /* backing off before a retry */
    CALL_INFLIGHT, /* a stream is open */
    CALL_DONE,     /* on the done list */
} call_state_t;

struct call {
    repo_client_t *client;
    const repo_method_t *m;
    uint8_t *body; /* framed request */
    size_t body_len, body_off;
    char *md_buf; /* metadata, "name\0value\0" pairs */
    size_t nmd;
    int64_t deadline; /* monotonic ms */
    int64_t retry_at;
    int attempts; /* tries started */
    repo_done_cb cb;
    void *opaque;
    call_state_t state;
    call_t *prev, *next; /* pending list, or its connection's streams */
    size_t heap_idx;     /* in the timer heap; SIZE_MAX when not */
    /* The stream of the current try. */
    conn_t *conn;
    int32_t stream_id;
    wire_parser_t parser;
    int http_status;
    bool grpc_ct;    /* content-type application/grpc* */
    int grpc_status; /* -1: none */
    char grpc_message[REPO_MESSAGE_MAX];
    size_t header_bytes;
    repo_status_t local; /* set when this side failed the stream */
    bool unprocessed;    /* the server certainly did not process it */
    repo_status_t result;
    ProtobufCMessage *resp;
};

typedef enum {
    CONN_CONNECTING, /* TCP */
    CONN_TLS,        /* handshake */
    CONN_H2,         /* preface sent, waiting for the server's SETTINGS */
    CONN_READY,
    CONN_DEAD,
} conn_state_t;

struct conn {
    repo_client_t *client;
    endpoint_t *ep;
    int fd;
    SSL *ssl;
    conn_state_t state;
    bool goaway;     /* no new streams */
    bool want_write; /* wait for EPOLLOUT */
    bool was_ready;  /* reached CONN_READY once */
    nghttp2_session *h2;
    call_t *streams; /* calls with an open stream here */
    uint32_t active;
    uint8_t *out; /* bytes waiting for the socket */
    size_t out_len, out_off, out_cap;
    uint32_t epoll_mask;
    int64_t started; /* connect began */
    int64_t last_recv;
    int64_t ping_sent; /* 0: no PING outstanding */
    char why[160];     /* why it died */
};

struct endpoint {
    char addr[128]; /* as given: host:port */
    char host[100]; /* for SNI / :authority */
    struct sockaddr_storage sa;
    socklen_t salen;
    conn_t *conns[REPO_MAX_CONNS_PER_ENDPOINT];
    int nconns;
    int fails;            /* consecutive connection failures */
    int64_t next_attempt; /* no connect before this */
    bool removed;
    bool seen; /* set diffing */
    char last_err[160];
    endpoint_t *next;
};

/* A resolved endpoint list handed to the loop. */
typedef struct {
    size_t n;
    endpoint_t *eps; /* array of n, only addr/host/sa/salen set */
} epset_t;

struct repo_client_s {
    repo_conf_t *conf;
    pthread_t thread;
    pthread_t loop_tid;
    int epfd, evfd;
    SSL_CTX *ssl_ctx;
    /* Shared with callers (mu). */
    pthread_mutex_t mu;
    call_t *inbound, *inbound_tail;
    size_t queued;    /* inbound + pending + waiting (for max_pending) */
    epset_t *new_set; /* endpoint set to apply */
    bool stopping;
    _Atomic bool wake_pending; /* an eventfd write is outstanding */
    /* Loop-only. */
    endpoint_t *eps;
    size_t neps;
    size_t rr;
    call_t *pending, *pending_tail;
    call_t **heap;
    size_t heap_len, heap_cap;
    call_t *done; /* completed, callbacks to run */
    uint32_t seed;
    uint8_t rbuf[65536]; /* socket reads */
    discovery_t *disc;
    /* Stats. */
    _Atomic uint64_t st_calls, st_ok, st_failed, st_retries, st_opened, st_conn_failed, st_lost,
        st_goaways, st_ka_timeouts, st_ep_updates;
    _Atomic uint32_t st_eps, st_ready, st_inflight, st_pending, st_max_inflight;
};

/* conn.c */
conn_t *conn_open(repo_client_t *c, endpoint_t *ep, char *err, size_t errlen);
void conn_on_event(conn_t *k, uint32_t events);
int conn_submit(conn_t *k, call_t *call);
/* Push nghttp2's output to the socket; update epoll interest. */
void conn_flush(conn_t *k);
void conn_timers(conn_t *k, int64_t now);
void conn_kill(conn_t *k, const char *why);
void conn_free(conn_t *k);
bool conn_has_capacity(const conn_t *k);

/* client.c, for conn.c */
void client_stream_closed(repo_client_t *c, call_t *call);
void client_conn_ready(repo_client_t *c, conn_t *k);
void client_conn_failed(repo_client_t *c, conn_t *k);
int64_t client_now(void);
/* repo_client_set_endpoints; skip_bad drops unresolvable entries instead of
 * failing (for discovery). */
int client_set_endpoints(repo_client_t *c, const char *const *addrs, size_t n, bool skip_bad,
                         char *err, size_t errlen);

/* discovery.c */
int discovery_start(repo_client_t *c, discovery_t **out, char *err, size_t errlen);
void discovery_stop(discovery_t *d);
/* Parse an etcd value: {"addr":"h:p",...} or "h:p"; out >= 128. 0 or -1. */
int discovery_parse_value(const char *v, size_t len, char *out, size_t outlen);

#endif
