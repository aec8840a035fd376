/* http.h: the HTTP client of the audit processor, on libcurl.
 *
 * audit_http_do() is blocking (process() is synchronous) and safe from any
 * number of worker threads; at most max_in_flight transfers run at once, the
 * others wait in a FIFO. Two engines behind the same call:
 *
 *   multi  (default) one thread drives one curl multi handle for every
 *          transfer: connections are shared by all workers and kept alive
 *          (HTTP/1.1 keep-alive, HTTP/2 multiplexing when the server offers
 *          it through ALPN); workers wait on a condition variable. The
 *          in-flight bound is independent of the number of workers, so
 *          workers can outnumber it and keep it full while they do the other
 *          parts of a task (im-repo, Kafka).
 *   easy   each worker thread has its own easy handle (and connection),
 *          reused across its calls; in flight = the workers that are in a
 *          call, capped at max_in_flight.
 *
 * docs/audit.md has the measurements behind the default.
 */
#ifndef AUDIT_HTTP_H
#define AUDIT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "provider.h"

typedef enum {
    AUDIT_HTTP_MULTI = 0,
    AUDIT_HTTP_EASY = 1,
} audit_http_engine_t;

typedef struct {
    int engine;            /* audit_http_engine_t */
    int64_t max_in_flight; /* transfers at once */
    int64_t timeout_ms;    /* one transfer, connect included */
    int64_t connect_timeout_ms;
    int64_t max_response_bytes; /* a longer body fails the transfer */
    int64_t max_conns;          /* idle connections kept (multi engine) */
    const char *user_agent;
    const char *ca_file; /* NULL: the system's */
    bool insecure;       /* do not verify TLS peers (development only) */
} audit_http_conf_t;

typedef struct {
    long status;     /* HTTP status; 0 when no answer came (see curl_code) */
    int curl_code;   /* CURLcode; 0 when the transfer completed */
    char error[256]; /* what went wrong, when curl_code != 0 */
    bool timed_out;  /* curl_code is CURLE_OPERATION_TIMEDOUT */
    bool too_large;  /* the body was over max_response_bytes */
    char *body;      /* NUL-terminated, malloc'd; never NULL after a call */
    size_t len;
    int64_t retry_after_ms; /* Retry-After (seconds or HTTP date); -1: none */
    double seconds;         /* time of the transfer (queueing excluded) */
} audit_http_resp_t;

typedef struct audit_http_s audit_http_t;

/* conf is copied (its strings must outlive the client). Returns 0, or -1 with
 * err; *out untouched on failure. */
int audit_http_new(audit_http_t **out, const audit_http_conf_t *conf, char *err, size_t errlen);
/* After every call returned. NULL or *hp NULL: no-op; sets *hp to NULL. */
void audit_http_destroy(audit_http_t **hp);

/* Do one request (POST when it has a body). Returns 0 when an HTTP answer
 * came (any status), -1 otherwise (resp->curl_code, resp->error). resp is
 * the caller's; free its body with audit_http_resp_free either way. */
int audit_http_do(audit_http_t *h, const audit_req_t *req, audit_http_resp_t *resp);
void audit_http_resp_free(audit_http_resp_t *resp);

/* Transfers running and waiting now. */
void audit_http_load(audit_http_t *h, int *in_flight, int *queued);

#endif
