/* storage.c: the `storage:` config section, the shared store of
 * imtask-archive, key checks and dispatch to a backend. */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/log.h"
#include "storage_internal.h"

struct store_s {
    const store_backend_ops_t *ops;
    void *b;
    size_t max_get;
    char desc[600];
};

static const char *const kind_choices[] = {"local", "s3", NULL};

static const cfg_field_t store_fields[] = {
    {"kind", CFG_ENUM, offsetof(store_config_t, kind), "local", 0, 0, 0, kind_choices,
     "where objects go: local (a directory) or s3 (an S3-compatible bucket)"},
    {"dir", CFG_STRING, offsetof(store_config_t, dir), "./imtask-store", 0, 0, 0, NULL,
     "kind local: the directory (created if missing)"},
    {"s3_endpoint", CFG_STRING, offsetof(store_config_t, s3_endpoint), NULL, 0, 0, 0, NULL,
     "kind s3: base URL, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:19700"},
    {"s3_bucket", CFG_STRING, offsetof(store_config_t, s3_bucket), NULL, 0, 0, 0, NULL,
     "kind s3: bucket (path-style addressing)"},
    {"s3_region", CFG_STRING, offsetof(store_config_t, s3_region), "us-east-1", 0, 0, 0, NULL,
     "kind s3: region used in the SigV4 signature"},
    {"s3_prefix", CFG_STRING, offsetof(store_config_t, s3_prefix), NULL, 0, 0, 0, NULL,
     "kind s3: prefix put before every key (e.g. imtask/)"},
    {"s3_access_key_id", CFG_STRING, offsetof(store_config_t, s3_access_key_id), NULL, 0, 0, 0,
     NULL, "kind s3: access key id"},
    {"s3_secret_access_key", CFG_STRING, offsetof(store_config_t, s3_secret_access_key), NULL,
     CFG_SECRET, 0, 0, NULL, "kind s3: secret access key"},
    {"s3_timeout", CFG_DURATION, offsetof(store_config_t, s3_timeout_ms), "30s", 0, 100, 3600000,
     NULL, "kind s3: timeout of one request"},
    {"max_object_bytes", CFG_INT, offsetof(store_config_t, max_object_bytes), "268435456", 0, 1024,
     4294967296.0, NULL, "largest object store_get reads"},
};

int store_config_bind(cfg_t *cfg, const char *section, store_config_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (cfg_bind(cfg, section, store_fields, sizeof(store_fields) / sizeof(store_fields[0]), c,
                 NULL, err, errlen))
        return -1;
    const char **strs[] = {
        &c->dir,       &c->s3_endpoint,      &c->s3_bucket,           &c->s3_region,
        &c->s3_prefix, &c->s3_access_key_id, &c->s3_secret_access_key};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (!*strs[i])
            *strs[i] = "";
    }
    if (c->kind == STORE_LOCAL && !c->dir[0]) {
        snprintf(err, errlen, "%s.dir: expected a directory, got \"\"", section);
        return -1;
    }
    if (c->kind == STORE_S3) {
        if (!c->s3_endpoint[0] || !c->s3_bucket[0]) {
            snprintf(err, errlen, "%s: kind s3 needs s3_endpoint and s3_bucket", section);
            return -1;
        }
        if (strncmp(c->s3_endpoint, "http://", 7) && strncmp(c->s3_endpoint, "https://", 8)) {
            snprintf(err, errlen, "%s.s3_endpoint: expected an http:// or https:// URL, got \"%s\"",
                     section, c->s3_endpoint);
            return -1;
        }
        if (!c->s3_access_key_id[0] || !c->s3_secret_access_key[0]) {
            snprintf(err, errlen, "%s: kind s3 needs s3_access_key_id and s3_secret_access_key",
                     section);
            return -1;
        }
        if (c->s3_prefix[0] && !store_key_ok(c->s3_prefix) &&
            !(c->s3_prefix[strlen(c->s3_prefix) - 1] == '/')) {
            snprintf(err, errlen, "%s.s3_prefix: \"%s\" is not a valid key prefix", section,
                     c->s3_prefix);
            return -1;
        }
    }
    return 0;
}

int store_key_ok(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > STORE_KEY_MAX)
        return 0;
    int start = 1;
    for (size_t i = 0; i < n; i++) {
        char ch = key[i];
        if (ch == '/') {
            if (start)
                return 0; /* empty part */
            start = 1;
            continue;
        }
        if (start && ch == '.')
            return 0;
        start = 0;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("._=@:+-", ch)))
            return 0;
    }
    return !start;
}

store_t *store_open(const store_config_t *c, char *err, size_t errlen)
{
    store_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->max_get = c->max_object_bytes > 0 ? (size_t)c->max_object_bytes : (size_t)256 << 20;
    if (c->kind == STORE_S3) {
        s->ops = &store_s3_ops;
        s->b = store_s3_open(c, s->desc, sizeof(s->desc), err, errlen);
    } else {
        s->ops = &store_local_ops;
        s->b = store_local_open(c, s->desc, sizeof(s->desc), err, errlen);
    }
    if (!s->b) {
        free(s);
        return NULL;
    }
    return s;
}

store_t *store_open_local(const char *dir, char *err, size_t errlen)
{
    store_config_t c = {.kind = STORE_LOCAL, .dir = dir, .max_object_bytes = 256 << 20};
    return store_open(&c, err, errlen);
}

void store_close(store_t *s)
{
    if (!s)
        return;
    s->ops->close(s->b);
    free(s);
}

const char *store_describe(const store_t *s)
{
    return s ? s->desc : "(none)";
}

static int bad_key(const char *key, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "storage key \"%.100s\": expected '/'-separated parts of [A-Za-z0-9._=@:+-], none "
             "empty or starting with '.', at most %d bytes",
             key ? key : "(null)", STORE_KEY_MAX);
    return -1;
}

int store_put(store_t *s, const char *key, const void *data, size_t len, const char *content_type,
              char *err, size_t errlen)
{
    if (!store_key_ok(key))
        return bad_key(key, err, errlen);
    return s->ops->put(s->b, key, data, len,
                       content_type ? content_type : "application/octet-stream", 0, err, errlen);
}

int store_put_new(store_t *s, const char *key, const void *data, size_t len,
                  const char *content_type, char *err, size_t errlen)
{
    if (!store_key_ok(key))
        return bad_key(key, err, errlen);
    return s->ops->put(s->b, key, data, len,
                       content_type ? content_type : "application/octet-stream", 1, err, errlen);
}

int store_get(store_t *s, const char *key, void **data, size_t *len, char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    if (!store_key_ok(key))
        return bad_key(key, err, errlen);
    return s->ops->get(s->b, key, s->max_get, data, len, err, errlen);
}

int store_list(store_t *s, const char *prefix,
               int (*each)(void *opaque, const char *key, uint64_t size), void *opaque, char *err,
               size_t errlen)
{
    if (!prefix || strlen(prefix) > STORE_KEY_MAX) {
        snprintf(err, errlen, "storage list: prefix missing or longer than %d bytes",
                 STORE_KEY_MAX);
        return -1;
    }
    return s->ops->list(s->b, prefix, each, opaque, err, errlen);
}

int store_delete(store_t *s, const char *key, char *err, size_t errlen)
{
    if (!store_key_ok(key))
        return bad_key(key, err, errlen);
    return s->ops->del(s->b, key, err, errlen);
}

/* The shared store of the process: bound once per cfg, opened lazily. */
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static cfg_t *shared_cfg;
static store_config_t shared_conf;
static store_t *shared_store;
static int shared_failed;

int store_configure(cfg_t *cfg, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&shared_mu);
    if (shared_cfg != cfg) {
        store_config_t c;
        if (store_config_bind(cfg, "storage", &c, err, errlen)) {
            rc = -1;
        } else {
            store_close(shared_store);
            shared_store = NULL;
            shared_failed = 0;
            shared_conf = c;
            shared_cfg = cfg;
        }
    }
    pthread_mutex_unlock(&shared_mu);
    return rc;
}

store_t *store_shared(void)
{
    store_t *s;
    pthread_mutex_lock(&shared_mu);
    if (!shared_store && shared_cfg) {
        char err[512];
        shared_store = store_open(&shared_conf, err, sizeof(err));
        if (!shared_store && !shared_failed) {
            log_error("storage: %s", err);
            shared_failed = 1;
        }
        if (shared_store)
            shared_failed = 0;
    }
    s = shared_store;
    pthread_mutex_unlock(&shared_mu);
    return s;
}

void store_shared_reset(void)
{
    pthread_mutex_lock(&shared_mu);
    store_close(shared_store);
    shared_store = NULL;
    shared_cfg = NULL;
    shared_failed = 0;
    pthread_mutex_unlock(&shared_mu);
}
