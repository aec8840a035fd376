/* h2.h: the HTTP/2 client of the providers, on nghttp2 and OpenSSL.
 *
 * Requests are grouped in lanes: one per provider app and endpoint (origin).
 * Each lane has its own I/O thread (epoll), its own TLS connections (so
 * APNs provider tokens of different teams never share a connection) and its
 * own bounds: streams in flight, connections, streams per connection, and an
 * optional rate (token bucket). Requests above the bounds wait in the lane's
 * FIFO.
 *
 * Per connection: TLS 1.2+ with ALPN h2 and verification always on (the
 * lane's CA file or the system's, host name or IP checked); no stream is
 * opened before the server's first SETTINGS, and never more than its
 * SETTINGS_MAX_CONCURRENT_STREAMS (APNs allows one stream on a new
 * connection until it has seen a valid provider token, then raises it). A
 * stream the server provably did not process (RST_STREAM REFUSED_STREAM, or
 * above the last stream id of a GOAWAY) is sent again on another connection,
 * at most PUSH_H2_MAX_REPLAYS times, without the caller seeing it: it cannot
 * have been delivered. A GOAWAY drains the connection; a broken connection
 * fails its other streams with PUSH_H2_E_CLOSED (they may have been
 * processed); connecting again backs off (100 ms doubling to 5 s) and, while
 * no connection can be had, new requests fail at once with
 * PUSH_H2_E_CONNECT instead of waiting out their timeout.
 *
 * Workers hand a batch of requests to push_h2_run(), which returns when
 * every one has an answer or an error, so the requests of one task run
 * concurrently while process() stays synchronous.
 *
 * Threads: push_h2_lane_add before push_h2_start; push_h2_run from any number
 * of threads at once; push_h2_destroy after every run returned.
 */
#ifndef PUSH_H2_H
#define PUSH_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infra/metrics.h"

#define PUSH_H2_MAX_LANES 64
#define PUSH_H2_MAX_HDRS 12    /* request headers besides the pseudo-headers */
#define PUSH_H2_MAX_RESP 16384 /* response body bytes kept; the rest is dropped */
#define PUSH_H2_MAX_REPLAYS 3  /* sends of a stream the server did not process */

/* Transport outcomes (req.err); 0 when an HTTP answer came. */
typedef enum {
    PUSH_H2_OK = 0,
    PUSH_H2_E_CANCELLED = 1, /* never sent: cancelled or shutting down */
    PUSH_H2_E_CONNECT = 2,   /* no connection could be made (TCP) */
    PUSH_H2_E_TLS = 3,       /* TLS handshake or verification failed, or no ALPN h2 */
    PUSH_H2_E_TIMEOUT = 4,   /* no answer within the lane's request timeout */
    PUSH_H2_E_RESET = 5,     /* the server reset the stream */
    PUSH_H2_E_CLOSED = 6,    /* the connection broke with the stream in flight */
    PUSH_H2_E_PROTOCOL = 7,  /* an HTTP/2 or local error */
} push_h2_err_t;

const char *push_h2_err_name(push_h2_err_t e);

typedef struct push_h2_s push_h2_t;

typedef struct {
    const char *name;           /* "apns/main": logs */
    const char *provider;       /* "apns" | "fcm": the metrics' label */
    const char *origin;         /* "https://host[:port]" */
    int max_in_flight;          /* streams in flight, >= 1 */
    int max_conns;              /* connections, >= 1 */
    int max_streams_per_conn;   /* our own cap per connection (the server's also holds) */
    double rate_per_s;          /* 0: no limit */
    const char *ca_file;        /* NULL or "": the system's CAs */
    const char *client_cert;    /* certificate auth: PEM certificate chain (NULL: none) */
    const char *client_key;     /* and its key */
    int64_t connect_timeout_ms; /* TCP + TLS + the server's SETTINGS */
    int64_t request_timeout_ms; /* from queued to answered */
} push_lane_conf_t;

typedef struct {
    metrics_registry_t *metrics; /* may be NULL */
} push_h2_conf_t;

typedef struct {
    const char *name; /* lower case */
    const char *value;
} push_hdr_t;

typedef struct push_h2_req_s push_h2_req_t;
struct push_h2_req_s {
    /* set by the caller; must stay valid until push_h2_run returns */
    int lane;
    const char *path; /* ":path"; the method is POST */
    push_hdr_t hdrs[PUSH_H2_MAX_HDRS];
    size_t nhdrs;
    const char *body;
    size_t body_len;
    void *opaque;

    /* the outcome, after push_h2_run */
    long status;       /* HTTP status; 0 when there was no answer */
    push_h2_err_t err; /* PUSH_H2_OK when status is set */
    char error[160];   /* what went wrong, for logs */
    char *resp;        /* the body (NUL-terminated, at most PUSH_H2_MAX_RESP); free with _clear */
    size_t resp_len;
    char retry_after[64]; /* the Retry-After header, "" when none */
    char apns_id[64];     /* the apns-id header, "" when none */
    int64_t latency_ms;   /* from sent to answered */

    /* private */
    push_h2_req_t *next, *prev;
    void *batch;
    void *conn;
    int32_t stream_id;
    int replays;
    size_t body_off;
    int64_t queued_ms, sent_ms;
};

int push_h2_new(push_h2_t **out, const push_h2_conf_t *conf, char *err, size_t errlen);
/* Returns the lane id (>= 0), or -1 with err (bad origin, too many lanes,
 * CA/client certificate files that cannot be loaded, already started). */
int push_h2_lane_add(push_h2_t *h, const push_lane_conf_t *conf, char *err, size_t errlen);
int push_h2_start(push_h2_t *h, char *err, size_t errlen);
/* Run n requests; returns when each one finished. cancelled (may be NULL)
 * is polled while waiting: once it says true, requests not sent yet finish
 * at once with PUSH_H2_E_CANCELLED (those in flight still get their answer). */
void push_h2_run(push_h2_t *h, push_h2_req_t *const *reqs, size_t n,
                 bool (*cancelled)(void *opaque), void *cancel_opaque);
/* Free what a run left in the request (the response body). */
void push_h2_req_clear(push_h2_req_t *r);
void push_h2_destroy(push_h2_t **hp);

/* Streams in flight now, over all lanes (for tests and the bench). */
int push_h2_in_flight(push_h2_t *h);

#endif
