/* httpd.h: the small HTTP server every binary runs for operators:
 * GET /metrics (Prometheus text), /healthz (the process is alive) and
 * /readyz (every registered readiness check passes). Built on libmicrohttpd
 * with its own thread; requests never touch the task path.
 */
#ifndef INFRA_HTTPD_H
#define INFRA_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#include "infra/metrics.h"

typedef struct httpd_s httpd_t;

/* A readiness check: returns 1 when ready, 0 when not; may write a short
 * reason (NUL-terminated, at most reasonlen bytes) shown in /readyz's body.
 * Called from the server's thread: it must be thread-safe and quick. Only a
 * return of exactly 1 counts as ready. */
typedef int (*httpd_ready_cb)(void *opaque, char *reason, size_t reasonlen);

#define HTTPD_MAX_CHECKS 16
#define HTTPD_MAX_CHECK_NAME 64 /* bytes, NUL included */
#define HTTPD_MAX_REASON 256    /* reasonlen passed to checks, NUL included */

/* Start serving on "host:port" (port 0 picks a free one; see httpd_port).
 * host is a numeric IPv4 address ("0.0.0.0" for all interfaces), a numeric
 * IPv6 address in brackets ("[::1]:9090", IPv6 only) or "localhost"
 * (127.0.0.1); port is 0..65535 in decimal. Nothing else is accepted.
 * reg may be NULL (then /metrics is empty). On failure returns NULL and writes
 * why into err (err may be NULL). The registry must outlive the server. */
httpd_t *httpd_start(const char *listen, metrics_registry_t *reg, char *err, size_t errlen);
/* Stop and free; NULL is a no-op. Sets *hp to NULL. */
void httpd_stop(httpd_t **hp);
uint16_t httpd_port(const httpd_t *h);

/* Register a named readiness check (name copied). Returns 0, or -1 when
 * HTTPD_MAX_CHECKS are already registered. May be called while serving.
 * Also -1 for a NULL server or callback, or a name that is empty, has control
 * characters or does not fit in HTTPD_MAX_CHECK_NAME. */
int httpd_add_ready_check(httpd_t *h, const char *name, httpd_ready_cb cb, void *opaque);

#endif
