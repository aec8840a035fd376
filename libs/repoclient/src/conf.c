/* conf.c: repo_conf_t: defaults, repo_conf_set by name, and binding a config
 * section (cfg_bind) with the same names. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"

typedef enum { K_STR, K_BOOL, K_DUR, K_INT } kind_t;

typedef struct {
    const char *name;
    kind_t kind;
    size_t off;
    const char *def;
    double min, max;
    const char *help;
} opt_t;

#define O(f) offsetof(struct repo_conf_s, f)
static const opt_t opts[] = {
    {"endpoints", K_STR, O(endpoints), "", 0, 0, "static im-repo endpoints host:port,..."},
    {"etcd_endpoints", K_STR, O(etcd_endpoints), "", 0, 0, "etcd for discovery, http://host:port"},
    {"etcd_prefix", K_STR, O(etcd_prefix), "/services/im-repo/", 0, 0, "etcd key prefix"},
    {"etcd_timeout", K_DUR, O(etcd_timeout_ms), "5s", 100, 600000, "etcd request timeout"},
    {"tls", K_BOOL, O(tls), "false", 0, 0, "TLS with ALPN h2 (else h2c)"},
    {"tls_ca_file", K_STR, O(tls_ca_file), "", 0, 0, "CA bundle (PEM)"},
    {"tls_server_name", K_STR, O(tls_server_name), "", 0, 0, "name to verify and send as SNI"},
    {"tls_insecure", K_BOOL, O(tls_insecure), "false", 0, 0, "skip verification (dev only)"},
    {"default_timeout", K_DUR, O(default_timeout_ms), "5s", 1, 3600000, "call deadline"},
    {"connect_timeout", K_DUR, O(connect_timeout_ms), "3s", 10, 600000, "connect+TLS+SETTINGS"},
    {"max_attempts", K_INT, O(max_attempts), "5", 1, 100, "tries of one call"},
    {"retry_backoff", K_DUR, O(retry_backoff_ms), "50ms", 1, 600000, "first retry delay"},
    {"retry_backoff_max", K_DUR, O(retry_backoff_max_ms), "1s", 1, 600000, "retry delay cap"},
    {"reconnect_backoff", K_DUR, O(reconnect_backoff_ms), "100ms", 1, 600000,
     "first reconnect delay"},
    {"reconnect_backoff_max", K_DUR, O(reconnect_backoff_max_ms), "5s", 1, 600000, "reconnect cap"},
    {"keepalive_interval", K_DUR, O(keepalive_interval_ms), "30s", 0, 86400000,
     "PING after silence; 0 off"},
    {"keepalive_timeout", K_DUR, O(keepalive_timeout_ms), "10s", 10, 600000, "PING ACK wait"},
    {"max_conns_per_endpoint", K_INT, O(max_conns_per_endpoint), "4", 1,
     REPO_MAX_CONNS_PER_ENDPOINT, "connections per endpoint"},
    {"max_streams_per_conn", K_INT, O(max_streams_per_conn), "1000", 1, 100000, "own stream cap"},
    {"max_pending", K_INT, O(max_pending), "100000", 1, 10000000, "calls waiting for a stream"},
    {"max_recv_msg_bytes", K_INT, O(max_recv_msg_bytes), "4194304", 16, REPO_HARD_MAX_MSG,
     "response cap"},
    {"max_send_msg_bytes", K_INT, O(max_send_msg_bytes), "4194304", 16, REPO_HARD_MAX_MSG,
     "request cap"},
    {"max_header_bytes", K_INT, O(max_header_bytes), "16384", 1024, 1048576, "response header cap"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static int set_opt(repo_conf_t *c, const opt_t *o, const char *v, char *err, size_t errlen)
{
    char *base = (char *)c;
    switch (o->kind) {
    case K_STR: {
        char *dup = strdup(v);
        if (!dup) {
            snprintf(err, errlen, "%s: out of memory", o->name);
            return -1;
        }
        char **slot = (char **)(base + o->off);
        free(*slot);
        *slot = dup;
        return 0;
    }
    case K_BOOL: {
        bool b;
        if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") ||
            !strcasecmp(v, "on"))
            b = true;
        else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") ||
                 !strcasecmp(v, "off"))
            b = false;
        else {
            snprintf(err, errlen, "%s: expected true or false, got \"%s\"", o->name, v);
            return -1;
        }
        *(bool *)(base + o->off) = b;
        return 0;
    }
    case K_DUR:
    case K_INT: {
        int64_t n;
        if (o->kind == K_DUR) {
            if (cfg_parse_duration_ms(v, &n)) {
                snprintf(err, errlen, "%s: expected a duration like 250ms or 5s, got \"%s\"",
                         o->name, v);
                return -1;
            }
        } else {
            char *end;
            long long ll = strtoll(v, &end, 10);
            if (!*v || *end) {
                snprintf(err, errlen, "%s: expected an integer, got \"%s\"", o->name, v);
                return -1;
            }
            n = ll;
        }
        if (n < o->min || n > o->max) {
            snprintf(err, errlen, "%s: expected %s in [%.0f, %.0f], got \"%s\"", o->name,
                     o->kind == K_DUR ? "a duration (ms)" : "an integer", o->min, o->max, v);
            return -1;
        }
        *(int64_t *)(base + o->off) = n;
        return 0;
    }
    }
    return -1;
}

repo_conf_t *repo_conf_new(void)
{
    repo_conf_t *c = calloc(1, sizeof *c);
    char err[128];
    if (!c)
        return NULL;
    for (size_t i = 0; i < NOPTS; i++) {
        if (set_opt(c, &opts[i], opts[i].def, err, sizeof err)) {
            repo_conf_destroy(c);
            return NULL;
        }
    }
    return c;
}

void repo_conf_destroy(repo_conf_t *c)
{
    if (!c)
        return;
    free(c->endpoints);
    free(c->etcd_endpoints);
    free(c->etcd_prefix);
    free(c->tls_ca_file);
    free(c->tls_server_name);
    free(c);
}

int repo_conf_set(repo_conf_t *c, const char *name, const char *value, char *err, size_t errlen)
{
    if (!c || !name || !value) {
        snprintf(err, errlen, "repo_conf_set: NULL argument");
        return -1;
    }
    for (size_t i = 0; i < NOPTS; i++)
        if (!strcmp(opts[i].name, name))
            return set_opt(c, &opts[i], value, err, errlen);
    snprintf(err, errlen, "%s: unknown setting", name);
    return -1;
}

/* Bound through cfg_bind as text, then applied with set_opt, so the file,
 * the environment and repo_conf_set share one parser and one set of limits. */
typedef struct {
    const char *v[NOPTS];
} raw_t;

int repo_conf_bind(repo_conf_t *c, cfg_t *cfg, const char *section, char *err, size_t errlen)
{
    cfg_field_t fields[NOPTS];
    raw_t raw;
    memset(&raw, 0, sizeof raw);
    memset(fields, 0, sizeof fields);
    for (size_t i = 0; i < NOPTS; i++) {
        fields[i].key = opts[i].name;
        fields[i].type = CFG_STRING;
        fields[i].offset = offsetof(raw_t, v) + i * sizeof(const char *);
        fields[i].def = NULL;
        fields[i].help = opts[i].help;
    }
    if (cfg_bind(cfg, section, fields, NOPTS, &raw, NULL, err, errlen))
        return -1;
    for (size_t i = 0; i < NOPTS; i++) {
        if (!raw.v[i])
            continue;
        char e[256];
        if (set_opt(c, &opts[i], raw.v[i], e, sizeof e)) {
            snprintf(err, errlen, "%s: %s.%s", cfg_path(cfg), section, e);
            return -1;
        }
    }
    return 0;
}
