/* app.h: the main() every im-task binary shares.
 *
 *   int main(int argc, char **argv) { return app_main(argc, argv, &spec); }
 *
 * app_main parses --config FILE, --check-config, --version and --help; loads
 * and validates the config (core sections here, the binary's own through
 * spec->configure); sets up JSON logging, metrics and the HTTP server
 * (/metrics, /healthz, /readyz); then calls spec->run until it returns.
 * SIGTERM or SIGINT make app_stopping() true and wake app_wait_stop(); run
 * is expected to drain its in-flight work within shutdown.grace and return.
 * A second signal exits at once with status 1.
 *
 * Exit status: what run returns; 2 for bad arguments or a bad config.
 */
#ifndef INFRA_APP_H
#define INFRA_APP_H

#include <stdbool.h>
#include <stdint.h>

#include "infra/config.h"
#include "infra/httpd.h"
#include "infra/metrics.h"

typedef struct app_s app_t;

/* The core sections every binary has; see docs/configuration.md. */
typedef struct {
    int log_level;             /* log.level */
    const char *http_listen;   /* http.listen */
    const char *kafka_brokers; /* kafka.brokers */
    cfg_kvs_t kafka_props;     /* kafka.<any librdkafka property>, passed through */
    int64_t shutdown_grace_ms; /* shutdown.grace */
} app_config_t;

typedef struct {
    const char *name;    /* component: "fanout", "push", ... */
    const char *summary; /* one line for --help */
    /* Bind the binary's own sections (cfg_bind). May be NULL. Return 0, or -1
     * with a message in err. */
    int (*configure)(app_t *app, cfg_t *cfg, void *opaque, char *err, size_t errlen);
    /* The work; returns the exit status. NULL: serve health until stopped. */
    int (*run)(app_t *app, void *opaque);
    void *opaque;
} app_spec_t;

int app_main(int argc, char **argv, const app_spec_t *spec);

const app_config_t *app_config(const app_t *app);
const char *app_name(const app_t *app);
metrics_registry_t *app_metrics(app_t *app);
httpd_t *app_httpd(app_t *app);

/* True once a stop was asked for (signal or app_request_stop). Thread-safe. */
bool app_stopping(app_t *app);
void app_request_stop(app_t *app);
/* Sleep until a stop is asked for or timeout_ms pass (-1: no timeout).
 * Returns true when stopping. */
bool app_wait_stop(app_t *app, int64_t timeout_ms);

#endif
