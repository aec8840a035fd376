/* httpd.c: the operator HTTP server (/healthz, /readyz, /metrics) on libmicrohttpd. */
#include "infra/httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define HTTPD_LISTEN_MAX 256    /* bytes in a listen string */
#define HTTPD_PORT_DIGITS 5     /* "65535" */
#define HTTPD_CONN_LIMIT 64     /* concurrent connections */
#define HTTPD_CONN_TIMEOUT_S 10 /* idle connection timeout */
#define HTTPD_LOG_MAX 256       /* one libmicrohttpd log message */
#define HTTPD_READYZ_LINE_MAX (HTTPD_MAX_CHECK_NAME + HTTPD_MAX_REASON + 32)

#define HTTPD_CT_TEXT "text/plain; charset=utf-8"
#define HTTPD_CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

typedef struct {
    char name[HTTPD_MAX_CHECK_NAME];
    httpd_ready_cb cb;
    void *opaque;
} httpd_check_t;

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} httpd_addr_t;

struct httpd_s {
    struct MHD_Daemon *daemon;
    metrics_registry_t *reg;
    pthread_mutex_t checks_mu; /* checks, nchecks */
    httpd_check_t checks[HTTPD_MAX_CHECKS];
    size_t nchecks;
    pthread_mutex_t log_mu; /* starting, start_log */
    bool starting;
    char start_log[HTTPD_LOG_MAX]; /* the first message libmicrohttpd logged while starting */
};

__attribute__((format(printf, 3, 4))) static void httpd_errf(char *err, size_t errlen,
                                                             const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- listen string ---- */

/* Parses a decimal port 0..65535: digits only, no sign, no blanks. */
static int httpd_parse_port(const char *s, const char *listen, uint16_t *port, char *err,
                            size_t errlen)
{
    size_t n = strlen(s);
    if (n == 0) {
        httpd_errf(err, errlen,
                   "listen address \"%s\" has an empty port (want host:port, "
                   "e.g. 127.0.0.1:9090)",
                   listen);
        return -1;
    }
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            httpd_errf(err, errlen,
                       "port \"%s\" in listen address \"%s\" is not a decimal "
                       "number",
                       s, listen);
            return -1;
        }
        if (i >= HTTPD_PORT_DIGITS || (v = v * 10 + (unsigned long)(s[i] - '0')) > 65535) {
            httpd_errf(err, errlen, "port %s in listen address \"%s\" is out of range 0..65535", s,
                       listen);
            return -1;
        }
    }
    *port = (uint16_t)v;
    return 0;
}

/* "host:port" with host a numeric IPv4 address, "[IPv6]" or "localhost". */
static int httpd_parse_listen(const char *listen, httpd_addr_t *addr, bool *ipv6, char *err,
                              size_t errlen)
{
    char host[HTTPD_LISTEN_MAX + 1];
    const char *port_str;
    uint16_t port = 0;

    if (listen == NULL || listen[0] == '\0') {
        httpd_errf(err, errlen, "listen address is empty (want host:port, e.g. 127.0.0.1:9090)");
        return -1;
    }
    size_t n = strnlen(listen, HTTPD_LISTEN_MAX + 1);
    if (n > HTTPD_LISTEN_MAX) {
        httpd_errf(err, errlen, "listen address is longer than %d bytes", HTTPD_LISTEN_MAX);
        return -1;
    }

    *ipv6 = listen[0] == '[';
    if (*ipv6) {
        const char *close = strchr(listen, ']');
        if (close == NULL) {
            httpd_errf(err, errlen, "listen address \"%s\" has no ']' after the IPv6 address",
                       listen);
            return -1;
        }
        if (close[1] != ':') {
            httpd_errf(err, errlen, "listen address \"%s\" has no ':port' after ']'", listen);
            return -1;
        }
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        port_str = close + 2;
    } else {
        const char *colon = strchr(listen, ':');
        if (colon == NULL) {
            httpd_errf(err, errlen,
                       "listen address \"%s\" has no port (want host:port, "
                       "e.g. 127.0.0.1:9090)",
                       listen);
            return -1;
        }
        if (strchr(colon + 1, ':') != NULL) {
            httpd_errf(err, errlen,
                       "listen address \"%s\" has more than one ':' (write IPv6 "
                       "addresses in brackets, e.g. [::1]:9090)",
                       listen);
            return -1;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port_str = colon + 1;
    }

    if (host[0] == '\0') {
        httpd_errf(err, errlen,
                   "listen address \"%s\" has an empty host (use 0.0.0.0 for all "
                   "interfaces)",
                   listen);
        return -1;
    }
    if (httpd_parse_port(port_str, listen, &port, err, errlen) != 0)
        return -1;

    memset(addr, 0, sizeof(*addr));
    if (*ipv6) {
        addr->in6.sin6_family = AF_INET6;
        addr->in6.sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &addr->in6.sin6_addr) != 1) {
            httpd_errf(err, errlen,
                       "\"%s\" in listen address \"%s\" is not a numeric IPv6 "
                       "address",
                       host, listen);
            return -1;
        }
        return 0;
    }
    addr->in4.sin_family = AF_INET;
    addr->in4.sin_port = htons(port);
    if (strcmp(host, "localhost") == 0) {
        addr->in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return 0;
    }
    if (inet_pton(AF_INET, host, &addr->in4.sin_addr) != 1) {
        httpd_errf(err, errlen,
                   "host \"%s\" in listen address \"%s\" is not a numeric IPv4 "
                   "address, an [IPv6] address or localhost",
                   host, listen);
        return -1;
    }
    return 0;
}

/* ---- libmicrohttpd log ---- */

/* While starting, keeps the first message for httpd_start's err; afterwards, to stderr. */
static void httpd_log(void *cls, const char *fmt, va_list ap)
{
    httpd_t *h = cls;
    char msg[HTTPD_LOG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';

    pthread_mutex_lock(&h->log_mu);
    bool starting = h->starting;
    if (starting && h->start_log[0] == '\0')
        snprintf(h->start_log, sizeof(h->start_log), "%s", msg);
    pthread_mutex_unlock(&h->log_mu);
    if (!starting)
        fprintf(stderr, "httpd: %s\n", msg);
}

/* ---- responses ---- */

/* Queues body (copied) with status and content type; allow adds an Allow header. */
static enum MHD_Result httpd_reply(struct MHD_Connection *conn, unsigned int status,
                                   const char *ctype, const char *body, size_t len,
                                   const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES)
        goto out;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES)
        goto out;
    if (allow != NULL && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)
        goto out;
    ret = MHD_queue_response(conn, status, resp);
out:
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result httpd_reply_text(struct MHD_Connection *conn, unsigned int status,
                                        const char *body)
{
    return httpd_reply(conn, status, HTTPD_CT_TEXT, body, strlen(body), NULL);
}

static enum MHD_Result httpd_serve_metrics(httpd_t *h, struct MHD_Connection *conn)
{
    if (h->reg == NULL)
        return httpd_reply(conn, MHD_HTTP_OK, HTTPD_CT_METRICS, "", 0, NULL);
    size_t len = 0;
    char *body = metrics_render(h->reg, &len);
    if (body == NULL)
        return httpd_reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render metrics\n");
    enum MHD_Result ret = httpd_reply(conn, MHD_HTTP_OK, HTTPD_CT_METRICS, body, len, NULL);
    free(body);
    return ret;
}

/* Keeps a reason on one line: control characters become spaces. */
static void httpd_sanitize_reason(char *reason)
{
    for (char *p = reason; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
}

static enum MHD_Result httpd_serve_readyz(httpd_t *h, struct MHD_Connection *conn)
{
    /* Checks are append-only and immutable once added: run a snapshot unlocked, so a
     * slow check never blocks httpd_add_ready_check. */
    httpd_check_t checks[HTTPD_MAX_CHECKS];
    pthread_mutex_lock(&h->checks_mu);
    size_t nchecks = h->nchecks;
    memcpy(checks, h->checks, nchecks * sizeof(checks[0]));
    pthread_mutex_unlock(&h->checks_mu);

    char body[HTTPD_MAX_CHECKS * HTTPD_READYZ_LINE_MAX + 1];
    size_t len = 0;
    bool ready = true;
    body[0] = '\0';
    for (size_t i = 0; i < nchecks; i++) {
        char reason[HTTPD_MAX_REASON];
        memset(reason, 0, sizeof(reason));
        bool ok = checks[i].cb(checks[i].opaque, reason, sizeof(reason)) == 1;
        reason[sizeof(reason) - 1] = '\0';
        httpd_sanitize_reason(reason);
        int n;
        if (ok)
            n = snprintf(body + len, sizeof(body) - len, "%s: ok\n", checks[i].name);
        else
            n = snprintf(body + len, sizeof(body) - len, "%s: not ready: %s\n", checks[i].name,
                         reason[0] != '\0' ? reason : "no reason given");
        if (n > 0)
            len += (size_t)n < sizeof(body) - len ? (size_t)n : sizeof(body) - len - 1;
        ready = ready && ok;
    }
    return httpd_reply(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, HTTPD_CT_TEXT,
                       body, len, NULL);
}

static enum MHD_Result httpd_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls)
{
    httpd_t *h = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;

    /* Every answer is decided by the request line, so reply on the first call; any request
     * body is discarded by libmicrohttpd. */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return httpd_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, HTTPD_CT_TEXT, "method not allowed\n",
                           strlen("method not allowed\n"), "GET, HEAD");
    if (strcmp(url, "/healthz") == 0)
        return httpd_reply_text(conn, MHD_HTTP_OK, "ok\n");
    if (strcmp(url, "/readyz") == 0)
        return httpd_serve_readyz(h, conn);
    if (strcmp(url, "/metrics") == 0)
        return httpd_serve_metrics(h, conn);
    return httpd_reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* ---- lifecycle ---- */

httpd_t *httpd_start(const char *listen, metrics_registry_t *reg, char *err, size_t errlen)
{
    httpd_addr_t addr;
    bool ipv6 = false;
    httpd_t *h = NULL;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (httpd_parse_listen(listen, &addr, &ipv6, err, errlen) != 0)
        return NULL;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        httpd_errf(err, errlen, "out of memory");
        return NULL;
    }
    h->reg = reg;
    if (pthread_mutex_init(&h->checks_mu, NULL) != 0) {
        httpd_errf(err, errlen, "cannot create a mutex");
        goto out_free;
    }
    if (pthread_mutex_init(&h->log_mu, NULL) != 0) {
        httpd_errf(err, errlen, "cannot create a mutex");
        goto out_checks_mu;
    }

    h->starting = true;
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    uint16_t port = ipv6 ? ntohs(addr.in6.sin6_port) : ntohs(addr.in4.sin_port);
    /* The logger must be the first option, or libmicrohttpd logs to stderr until it sees it. */
    h->daemon = MHD_start_daemon(
        flags, port, NULL, NULL, httpd_handle, h, MHD_OPTION_EXTERNAL_LOGGER, httpd_log, h,
        MHD_OPTION_SOCK_ADDR, &addr.sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTPD_CONN_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTPD_CONN_TIMEOUT_S, MHD_OPTION_END);
    pthread_mutex_lock(&h->log_mu);
    h->starting = false;
    pthread_mutex_unlock(&h->log_mu);
    if (h->daemon == NULL) {
        httpd_errf(err, errlen, "cannot serve HTTP on %s: %s", listen,
                   h->start_log[0] != '\0' ? h->start_log : "libmicrohttpd failed to start");
        goto out_log_mu;
    }
    return h;

out_log_mu:
    pthread_mutex_destroy(&h->log_mu);
out_checks_mu:
    pthread_mutex_destroy(&h->checks_mu);
out_free:
    free(h);
    return NULL;
}

void httpd_stop(httpd_t **hp)
{
    if (hp == NULL || *hp == NULL)
        return;
    httpd_t *h = *hp;
    *hp = NULL;
    MHD_stop_daemon(h->daemon); /* joins the server thread: no callback runs after this */
    pthread_mutex_destroy(&h->log_mu);
    pthread_mutex_destroy(&h->checks_mu);
    free(h);
}

uint16_t httpd_port(const httpd_t *h)
{
    if (h == NULL || h->daemon == NULL)
        return 0;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info != NULL ? info->port : 0;
}

int httpd_add_ready_check(httpd_t *h, const char *name, httpd_ready_cb cb, void *opaque)
{
    if (h == NULL || name == NULL || cb == NULL || name[0] == '\0')
        return -1;
    size_t n = strnlen(name, HTTPD_MAX_CHECK_NAME);
    if (n >= HTTPD_MAX_CHECK_NAME)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return -1;
    }

    int rc = -1;
    pthread_mutex_lock(&h->checks_mu);
    if (h->nchecks >= HTTPD_MAX_CHECKS)
        goto out;
    httpd_check_t *c = &h->checks[h->nchecks];
    memcpy(c->name, name, n + 1);
    c->cb = cb;
    c->opaque = opaque;
    h->nchecks++;
    rc = 0;
out:
    pthread_mutex_unlock(&h->checks_mu);
    return rc;
}
