/* discovery.c: im-repo endpoints from etcd through its v3 JSON gateway
 * (libcurl + cJSON): a range over the prefix, then a watch from the next
 * revision; every change hands the whole set to the client. On any error
 * the watch is dropped and, after a backoff, range and watch start again
 * (the next etcd endpoint of the list); the last known set stays in use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "infra/clock.h"
#include "infra/log.h"
#include "internal.h"

#define DISC_MAX_BUF (1024 * 1024) /* one JSON message of the watch stream */
#define DISC_MAX_ETCD 8
#define DISC_KEY_MAX 256

typedef struct {
    char key[DISC_KEY_MAX];
    char addr[128];
} item_t;

struct discovery {
    repo_client_t *c;
    pthread_t thread;
    CURLM *multi;
    _Atomic bool stop;
    char *etcd[DISC_MAX_ETCD];
    size_t netcd, cur;
    char prefix[DISC_KEY_MAX];
    int64_t timeout_ms;
    item_t items[REPO_MAX_ENDPOINTS];
    size_t nitems;
    int64_t revision;
    char *buf;
    size_t len;
    bool changed;
    bool streaming; /* the current transfer is the watch */
    bool failed;    /* watch stream said canceled / compacted, or bad JSON */
};

/* ------------------------------------------------------------- base64 */

static const char b64c[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(uint8_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(uint8_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (uint8_t)in[i + 2];
        out[o++] = b64c[v >> 18 & 63];
        out[o++] = b64c[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64c[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64c[v & 63] : '=';
    }
    out[o] = '\0';
}

/* Returns the decoded length, or -1; out holds at most cap-1 bytes + NUL. */
static long b64_decode(const char *in, char *out, size_t cap)
{
    uint32_t v = 0;
    int bits = 0;
    size_t o = 0;
    for (; *in && *in != '='; in++) {
        const char *p = strchr(b64c, *in);
        if (!p)
            return -1;
        v = v << 6 | (uint32_t)(p - b64c);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)(v >> bits & 0xff);
        }
    }
    out[o] = '\0';
    return (long)o;
}

/* ------------------------------------------------------------- values */

int discovery_parse_value(const char *v, size_t len, char *out, size_t outlen)
{
    while (len && (*v == ' ' || *v == '\n' || *v == '\t')) {
        v++;
        len--;
    }
    if (len && *v == '{') {
        cJSON *j = cJSON_ParseWithLength(v, len);
        static const char *const names[] = {"addr", "Addr", "address", "endpoint", NULL};
        int rv = -1;
        for (int i = 0; j && names[i]; i++) {
            cJSON *a = cJSON_GetObjectItemCaseSensitive(j, names[i]);
            if (cJSON_IsString(a) && a->valuestring[0] && strlen(a->valuestring) < outlen) {
                snprintf(out, outlen, "%s", a->valuestring);
                rv = 0;
                break;
            }
        }
        cJSON_Delete(j);
        return rv;
    }
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\n'))
        len--;
    if (len == 0 || len >= outlen || memchr(v, ':', len) == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (v[i] <= ' ' || v[i] > '~')
            return -1;
    memcpy(out, v, len);
    out[len] = '\0';
    return 0;
}

static void push_set(struct discovery *d)
{
    const char *addrs[REPO_MAX_ENDPOINTS];
    char err[256];
    for (size_t i = 0; i < d->nitems; i++)
        addrs[i] = d->items[i].addr;
    if (client_set_endpoints(d->c, addrs, d->nitems, true, err, sizeof err))
        log_warn("repoclient: etcd endpoints not applied: %s", err);
    d->changed = false;
}

static void item_put(struct discovery *d, const char *key, const char *addr)
{
    for (size_t i = 0; i < d->nitems; i++) {
        if (!strcmp(d->items[i].key, key)) {
            if (strcmp(d->items[i].addr, addr)) {
                snprintf(d->items[i].addr, sizeof d->items[i].addr, "%s", addr);
                d->changed = true;
            }
            return;
        }
    }
    if (d->nitems == REPO_MAX_ENDPOINTS) {
        log_warn("repoclient: more than %d im-repo instances in etcd; %s ignored",
                 REPO_MAX_ENDPOINTS, key);
        return;
    }
    snprintf(d->items[d->nitems].key, DISC_KEY_MAX, "%s", key);
    snprintf(d->items[d->nitems].addr, sizeof d->items[0].addr, "%s", addr);
    d->nitems++;
    d->changed = true;
}

static void item_del(struct discovery *d, const char *key)
{
    for (size_t i = 0; i < d->nitems; i++) {
        if (!strcmp(d->items[i].key, key)) {
            d->items[i] = d->items[--d->nitems];
            d->changed = true;
            return;
        }
    }
}

/* One kv object {"key":b64,"value":b64}: put (or delete when del). */
static void apply_kv(struct discovery *d, cJSON *kv, bool del)
{
    char key[DISC_KEY_MAX], val[1024], addr[128];
    cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
    cJSON *v = cJSON_GetObjectItemCaseSensitive(kv, "value");
    if (!cJSON_IsString(k) || b64_decode(k->valuestring, key, sizeof key) < 0)
        return;
    if (del) {
        item_del(d, key);
        return;
    }
    long vl;
    if (!cJSON_IsString(v) || (vl = b64_decode(v->valuestring, val, sizeof val)) < 0 ||
        discovery_parse_value(val, (size_t)vl, addr, sizeof addr)) {
        log_warn("repoclient: etcd key %s: value is not an address; ignored", key);
        item_del(d, key);
        return;
    }
    item_put(d, key, addr);
}

static int64_t json_i64(cJSON *o, const char *name)
{
    cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsString(x))
        return strtoll(x->valuestring, NULL, 10);
    if (cJSON_IsNumber(x))
        return (int64_t)x->valuedouble;
    return 0;
}

/* ---------------------------------------------------------------- http */

static size_t on_body(char *p, size_t size, size_t n, void *ud);

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool stopped(struct discovery *d)
{
    return atomic_load(&d->stop);
}

/* POST body to path; with stream, the body is parsed message by message
 * while it arrives (watch). Returns 0 when the transfer ended normally. */
static int post(struct discovery *d, const char *path, const char *body, bool stream, char *err,
                size_t errlen)
{
    char url[512];
    CURL *e = curl_easy_init();
    int rv = -1;
    if (!e) {
        snprintf(err, errlen, "curl_easy_init failed");
        return -1;
    }
    snprintf(url, sizeof url, "%s%s", d->etcd[d->cur], path);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    d->len = 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)d->timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (!stream)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)d->timeout_ms);
    curl_multi_add_handle(d->multi, e);
    int running = 1;
    while (running && !stopped(d)) {
        if (curl_multi_perform(d->multi, &running) != CURLM_OK)
            break;
        if (running)
            curl_multi_poll(d->multi, NULL, 0, 1000, NULL);
    }
    CURLMsg *msg;
    int left;
    CURLcode res = CURLE_ABORTED_BY_CALLBACK;
    while ((msg = curl_multi_info_read(d->multi, &left)))
        if (msg->msg == CURLMSG_DONE)
            res = msg->data.result;
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    if (stopped(d))
        snprintf(err, errlen, "stopped");
    else if (res != CURLE_OK)
        snprintf(err, errlen, "%.300s: %s", url, curl_easy_strerror(res));
    else if (code != 200)
        snprintf(err, errlen, "%.300s: HTTP %ld", url, code);
    else
        rv = 0;
    curl_multi_remove_handle(d->multi, e);
    curl_easy_cleanup(e);
    curl_slist_free_all(hdrs);
    return rv;
}

/* Watch messages: {"result":{"header":{"revision":"N"},"events":[...]}}. */
static void on_watch_message(struct discovery *d, cJSON *j)
{
    cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
    if (!r) {
        d->failed = true;
        return;
    }
    cJSON *canceled = cJSON_GetObjectItemCaseSensitive(r, "canceled");
    if (cJSON_IsTrue(canceled) || json_i64(r, "compact_revision") > 0) {
        d->failed = true;
        return;
    }
    cJSON *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(r, "events"))
    {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "type");
        bool del = cJSON_IsString(t) && !strcmp(t->valuestring, "DELETE");
        cJSON *kv = cJSON_GetObjectItemCaseSensitive(ev, "kv");
        if (kv)
            apply_kv(d, kv, del);
        int64_t mr = kv ? json_i64(kv, "mod_revision") : 0;
        if (mr > d->revision)
            d->revision = mr;
    }
    if (d->changed)
        push_set(d);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct discovery *d = ud;
    size_t len = size * n;
    if (stopped(d) || d->len + len + 1 > DISC_MAX_BUF)
        return 0; /* aborts the transfer */
    if (!d->buf && !(d->buf = malloc(DISC_MAX_BUF)))
        return 0;
    memcpy(d->buf + d->len, p, len);
    d->len += len;
    d->buf[d->len] = '\0';
    if (!d->streaming)
        return len;
    /* Watch: consume every complete JSON message; keep a partial one. */
    for (;;) {
        const char *start = d->buf;
        while (*start == '\n' || *start == '\r' || *start == ' ')
            start++;
        if (!*start) {
            d->len = 0;
            break;
        }
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithOpts(start, &end, 0);
        if (!j)
            break; /* incomplete: wait for more (bounded by DISC_MAX_BUF) */
        on_watch_message(d, j);
        cJSON_Delete(j);
        size_t used = (size_t)(end - d->buf);
        memmove(d->buf, end, d->len - used + 1);
        d->len -= used;
        if (d->failed)
            return 0;
    }
    return len;
}

static int do_range(struct discovery *d, char *err, size_t errlen)
{
    char body[2048], k64[DISC_KEY_MAX * 2], e64[DISC_KEY_MAX * 2], end[DISC_KEY_MAX];
    size_t pl = strlen(d->prefix);
    memcpy(end, d->prefix, pl + 1);
    end[pl - 1]++; /* the prefix's range end */
    b64_encode(d->prefix, pl, k64);
    b64_encode(end, pl, e64);
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"range_end\":\"%s\"}", k64, e64);
    d->streaming = false;
    if (post(d, "/v3/kv/range", body, false, err, errlen))
        return -1;
    cJSON *j = cJSON_ParseWithLength(d->buf, d->len);
    if (!j) {
        snprintf(err, errlen, "range: bad JSON from etcd");
        return -1;
    }
    int64_t rev = json_i64(cJSON_GetObjectItemCaseSensitive(j, "header"), "revision");
    d->nitems = 0;
    cJSON *kv;
    cJSON_ArrayForEach(kv, cJSON_GetObjectItemCaseSensitive(j, "kvs")) apply_kv(d, kv, false);
    cJSON_Delete(j);
    d->revision = rev > 0 ? rev : 1;
    push_set(d);
    return 0;
}

static int do_watch(struct discovery *d, char *err, size_t errlen)
{
    char body[2048], k64[DISC_KEY_MAX * 2], e64[DISC_KEY_MAX * 2], end[DISC_KEY_MAX];
    size_t pl = strlen(d->prefix);
    memcpy(end, d->prefix, pl + 1);
    end[pl - 1]++;
    b64_encode(d->prefix, pl, k64);
    b64_encode(end, pl, e64);
    snprintf(body, sizeof body,
             "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\",\"start_revision\":%lld}}",
             k64, e64, (long long)(d->revision + 1));
    d->failed = false;
    d->streaming = true;
    int rv = post(d, "/v3/watch", body, true, err, errlen);
    if (rv == 0 || d->failed) {
        snprintf(err, errlen, "watch ended%s", d->failed ? " (canceled or compacted)" : "");
        return -1;
    }
    return rv;
}

static void *disc_main(void *arg)
{
    struct discovery *d = arg;
    int fails = 0;
    char err[512];
    while (!stopped(d)) {
        if (do_range(d, err, sizeof err) == 0) {
            fails = 0;
            do_watch(d, err, sizeof err);
        }
        if (stopped(d))
            break;
        fails++;
        log_warn("repoclient: etcd %s: %s", d->etcd[d->cur], err);
        d->cur = (d->cur + 1) % d->netcd;
        int64_t wait = 100;
        for (int i = 1; i < fails && wait < 5000; i++)
            wait *= 2;
        if (wait > 5000)
            wait = 5000;
        curl_multi_poll(d->multi, NULL, 0, (int)wait, NULL);
    }
    return NULL;
}

int discovery_start(repo_client_t *c, discovery_t **out, char *err, size_t errlen)
{
    struct discovery *d = calloc(1, sizeof *d);
    char *copy = NULL, *save = NULL;
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    d->c = c;
    d->timeout_ms = c->conf->etcd_timeout_ms;
    if (strlen(c->conf->etcd_prefix) == 0 || strlen(c->conf->etcd_prefix) >= DISC_KEY_MAX) {
        snprintf(err, errlen, "etcd_prefix: expected 1..%d bytes", DISC_KEY_MAX - 1);
        goto fail;
    }
    snprintf(d->prefix, sizeof d->prefix, "%s", c->conf->etcd_prefix);
    copy = strdup(c->conf->etcd_endpoints);
    for (char *t = copy ? strtok_r(copy, ", ", &save) : NULL; t; t = strtok_r(NULL, ", ", &save)) {
        if (d->netcd == DISC_MAX_ETCD)
            break;
        size_t tl = strlen(t);
        while (tl && t[tl - 1] == '/')
            t[--tl] = '\0';
        if (strncmp(t, "http://", 7) && strncmp(t, "https://", 8)) {
            snprintf(err, errlen, "etcd_endpoints: \"%s\" is not http://host:port", t);
            goto fail;
        }
        if (!(d->etcd[d->netcd++] = strdup(t))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (d->netcd == 0) {
        snprintf(err, errlen, "etcd_endpoints: empty");
        goto fail;
    }
    pthread_once(&curl_once, curl_init);
    d->multi = curl_multi_init();
    if (!d->multi || pthread_create(&d->thread, NULL, disc_main, d)) {
        snprintf(err, errlen, "discovery thread could not start");
        goto fail;
    }
    free(copy);
    *out = d;
    return 0;
fail:
    free(copy);
    if (d->multi)
        curl_multi_cleanup(d->multi);
    for (size_t i = 0; i < d->netcd; i++)
        free(d->etcd[i]);
    free(d);
    return -1;
}

void discovery_stop(discovery_t *d)
{
    if (!d)
        return;
    atomic_store(&d->stop, true);
    curl_multi_wakeup(d->multi);
    pthread_join(d->thread, NULL);
    curl_multi_cleanup(d->multi);
    for (size_t i = 0; i < d->netcd; i++)
        free(d->etcd[i]);
    free(d->buf);
    free(d);
}
