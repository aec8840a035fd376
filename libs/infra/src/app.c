/* app.c: the shared main() skeleton: arguments, config, logging, metrics and
 * health server, signal handling and graceful stop. */
#include "infra/app.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/clock.h"
#include "infra/log.h"
#include "infra/version.h"

struct app_s {
    const app_spec_t *spec;
    app_config_t conf;
    cfg_t *cfg;
    metrics_registry_t *metrics;
    httpd_t *httpd;
    atomic_bool stopping;
    atomic_bool exiting;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t sigthread;
    bool have_sigthread;
    bool curl_inited;
};

static const char *const app_log_levels[] = {"debug", "info", "warn", "error", NULL};

static const cfg_field_t app_log_fields[] = {
    {.key = "level",
     .type = CFG_ENUM,
     .offset = offsetof(app_config_t, log_level),
     .def = "info",
     .choices = app_log_levels,
     .help = "lowest level logged"},
};

static const cfg_field_t app_http_fields[] = {
    {.key = "listen",
     .type = CFG_STRING,
     .offset = offsetof(app_config_t, http_listen),
     .def = "0.0.0.0:9090",
     .help = "host:port of /metrics, /healthz, /readyz"},
};

static const cfg_field_t app_kafka_fields[] = {
    {.key = "brokers",
     .type = CFG_STRING,
     .offset = offsetof(app_config_t, kafka_brokers),
     .flags = CFG_REQUIRED,
     .help = "bootstrap brokers, host:port[,host:port...]"},
};

static const cfg_field_t app_shutdown_fields[] = {
    {.key = "grace",
     .type = CFG_DURATION,
     .offset = offsetof(app_config_t, shutdown_grace_ms),
     .def = "25s",
     .min = 0,
     .max = 3600000,
     .help = "how long in-flight work may take to finish after SIGTERM"},
};

#define APP_NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

const app_config_t *app_config(const app_t *app)
{
    return &app->conf;
}

const char *app_name(const app_t *app)
{
    return app->spec->name;
}

metrics_registry_t *app_metrics(app_t *app)
{
    return app->metrics;
}

httpd_t *app_httpd(app_t *app)
{
    return app->httpd;
}

bool app_stopping(app_t *app)
{
    return atomic_load(&app->stopping);
}

void app_request_stop(app_t *app)
{
    pthread_mutex_lock(&app->lock);
    atomic_store(&app->stopping, true);
    pthread_cond_broadcast(&app->cond);
    pthread_mutex_unlock(&app->lock);
}

bool app_wait_stop(app_t *app, int64_t timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&app->lock);
    while (!atomic_load(&app->stopping)) {
        int rc = timeout_ms >= 0 ? pthread_cond_timedwait(&app->cond, &app->lock, &deadline)
                                 : pthread_cond_wait(&app->cond, &app->lock);
        if (rc == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&app->lock);
    return atomic_load(&app->stopping);
}

/* Waits for SIGTERM/SIGINT (blocked in every thread) and turns them into a
 * stop request; SIGUSR1 with app->exiting set ends the thread. */
static void *app_signal_thread(void *arg)
{
    app_t *app = arg;
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR1) {
            if (atomic_load(&app->exiting))
                return NULL;
            continue;
        }
        if (app_stopping(app)) {
            log_warn("second %s: exiting now without draining",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT");
            _exit(1);
        }
        log_info("%s received: stopping gracefully (grace %lld ms)",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", (long long)app->conf.shutdown_grace_ms);
        app_request_stop(app);
    }
}

/* Check every kafka property with librdkafka itself, naming where it came from. */
static int app_check_kafka_props(const app_config_t *c, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char rderr[256];
    int rc = 0;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", c->kafka_brokers, rderr, sizeof(rderr)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka.brokers: %s", rderr);
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < c->kafka_props.count; i++) {
        const cfg_kv_t *kv = &c->kafka_props.items[i];
        if (rd_kafka_conf_set(conf, kv->key, kv->value, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "%s: kafka.%s: not accepted by librdkafka: %s", kv->origin,
                     kv->key, rderr);
            rc = -1;
            goto out;
        }
    }
out:
    rd_kafka_conf_destroy(conf);
    return rc;
}

static int app_configure(app_t *app, const char *path, char *err, size_t errlen)
{
    cfg_t *cfg = cfg_load(path, err, errlen);
    if (!cfg)
        return -1;
    app->cfg = cfg;
    if (cfg_bind(cfg, "log", app_log_fields, APP_NFIELDS(app_log_fields), &app->conf, NULL, err,
                 errlen) ||
        cfg_bind(cfg, "http", app_http_fields, APP_NFIELDS(app_http_fields), &app->conf, NULL, err,
                 errlen) ||
        cfg_bind(cfg, "kafka", app_kafka_fields, APP_NFIELDS(app_kafka_fields), &app->conf,
                 &app->conf.kafka_props, err, errlen) ||
        cfg_bind(cfg, "shutdown", app_shutdown_fields, APP_NFIELDS(app_shutdown_fields), &app->conf,
                 NULL, err, errlen))
        return -1;
    if (app->spec->configure && app->spec->configure(app, cfg, app->spec->opaque, err, errlen))
        return -1;
    if (cfg_finish(cfg, err, errlen))
        return -1;
    return app_check_kafka_props(&app->conf, err, errlen);
}

static void app_usage(const app_spec_t *spec, FILE *out)
{
    fprintf(out,
            "imtask-%s %s: %s\n\n"
            "usage: imtask-%s [--config FILE] [--check-config] [--version] [--help]\n\n"
            "  -c, --config FILE   YAML configuration (every key can also be set as\n"
            "                      IMTASK_<SECTION>_<KEY>, e.g. IMTASK_KAFKA_BROKERS)\n"
            "      --check-config  validate the configuration, print it (secrets redacted)\n"
            "                      and exit: 0 when valid, 2 when not\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          print this help and exit\n",
            spec->name, IMTASK_VERSION, spec->summary ? spec->summary : "", spec->name);
}

static void app_metrics_static(app_t *app)
{
    static const char *const labels[] = {"version", "component"};
    metrics_family_t *f = metrics_gauge_new(app->metrics, "imtask_build_info",
                                            "im-task build information (always 1)", 2, labels);
    const char *values[] = {IMTASK_VERSION, app->spec->name};
    metrics_gauge_set(metrics_series_get(f, values), 1);
}

/* glibc gives a thread that allocates while others do an arena of its own
 * (up to 8 per core) and keeps each arena's peak. The fan-out's workers
 * allocate the records its producer's thread frees: a 1M-member fan-out
 * peaked at 25.7-26.5 MB with an arena per worker, 22.6-23.4 MB with two
 * and 21.8-22.0 MB with one, at the same rate (bench/fanout, docs/fanout.md).
 * Two, unless the operator sets glibc.malloc.arena_max in GLIBC_TUNABLES. */
#define APP_MALLOC_ARENAS 2

static void app_malloc_arenas(void)
{
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (!tunables || !strstr(tunables, "glibc.malloc.arena_max"))
        mallopt(M_ARENA_MAX, APP_MALLOC_ARENAS);
}

int app_main(int argc, char **argv, const app_spec_t *spec)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    app_t app;
    const char *path = getenv("IMTASK_CONFIG");
    bool check_only = false;
    char err[CFG_ERR_MAX] = "";
    sigset_t set;
    int opt, status = 2;

    app_malloc_arenas(); /* before any thread */
    memset(&app, 0, sizeof(app));
    app.spec = spec;
    pthread_mutex_init(&app.lock, NULL);
    pthread_cond_init(&app.cond, NULL);
    log_setup(spec->name, LOG_LEVEL_INFO);

    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'V':
            printf("imtask-%s %s (librdkafka %s)\n", spec->name, IMTASK_VERSION,
                   rd_kafka_version_str());
            status = 0;
            goto out;
        case 'h':
            app_usage(spec, stdout);
            status = 0;
            goto out;
        default:
            app_usage(spec, stderr);
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "imtask-%s: unexpected argument \"%s\" (see --help)\n", spec->name,
                argv[optind]);
        goto out;
    }

    if (app_configure(&app, path, err, sizeof(err))) {
        fprintf(stderr, "imtask-%s: configuration error: %s\n", spec->name, err);
        log_error("configuration error: %s", err);
        goto out;
    }
    log_set_level((log_level_t)app.conf.log_level);
    if (check_only) {
        cfg_dump(app.cfg, stdout);
        printf("# configuration is valid\n");
        status = 0;
        goto out;
    }

    /* libcurl's global state (the TLS library under it) is set up once
     * here, before any thread starts, and torn down after they all ended:
     * libraries that use libcurl (im-repo discovery, the audit and push
     * HTTP clients) then only take and drop references, never the last. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("libcurl global initialisation failed");
        status = 1;
        goto out;
    }
    app.curl_inited = true;

    /* Block the stop signals before any thread starts, so only the signal
     * thread receives them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&app.sigthread, NULL, app_signal_thread, &app) != 0) {
        log_error("cannot start the signal thread");
        status = 1;
        goto out;
    }
    app.have_sigthread = true;

    app.metrics = metrics_registry_new();
    if (!app.metrics) {
        log_error("out of memory creating the metrics registry");
        status = 1;
        goto out;
    }
    app_metrics_static(&app);
    app.httpd = httpd_start(app.conf.http_listen, app.metrics, err, sizeof(err));
    if (!app.httpd) {
        log_error("http.listen %s: %s", app.conf.http_listen, err);
        status = 1;
        goto out;
    }
    log_info("imtask-%s %s started: config %s, metrics and health on %s (port %u)", spec->name,
             IMTASK_VERSION, path ? path : "(none, environment only)", app.conf.http_listen,
             (unsigned)httpd_port(app.httpd));

    if (spec->run) {
        status = spec->run(&app, spec->opaque);
    } else {
        app_wait_stop(&app, -1);
        status = 0;
    }
    log_info("imtask-%s stopped (status %d)", spec->name, status);

out:
    httpd_stop(&app.httpd);
    if (app.have_sigthread) {
        atomic_store(&app.exiting, true);
        pthread_kill(app.sigthread, SIGUSR1);
        pthread_join(app.sigthread, NULL);
    }
    metrics_registry_destroy(app.metrics);
    if (app.curl_inited)
        curl_global_cleanup();
    cfg_destroy(app.cfg);
    log_clear_secrets();
    pthread_cond_destroy(&app.cond);
    pthread_mutex_destroy(&app.lock);
    fflush(stdout);
    return status;
}
