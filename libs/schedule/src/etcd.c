/* etcd.c: a small blocking etcd v3 client over the JSON gateway (etcd.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "schedule/etcd.h"

#define ETCD_BODY_MAX (64 * 1024) /* one response; ours are small */
#define ETCD_B64_MAX (((SCHED_ETCD_VALUE_MAX + 2) / 3) * 4 + 1)

struct sched_etcd_s {
    CURL *curl;
    struct curl_slist *headers;
    char *endpoints[SCHED_ETCD_MAX_ENDPOINTS];
    size_t nendpoints, cur;
    int64_t timeout_ms;
    bool (*cancel)(void *opaque);
    void *opaque;
    char *body;
    size_t len;
    bool overflow;
};

/* ---- base64 (OpenSSL) --------------------------------------------------- */

static int etcd_b64(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    if (n > SCHED_ETCD_VALUE_MAX || ((n + 2) / 3) * 4 + 1 > cap)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
    return 0;
}

/* Decode into out (NUL-terminated); -1 when invalid or too long. */
static int etcd_unb64(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    if (n % 4)
        return -1;
    unsigned char *tmp = malloc(n / 4 * 3 + 1);
    if (!tmp)
        return -1;
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
    if (len < 0) {
        free(tmp);
        return -1;
    }
    /* EVP_DecodeBlock counts the '=' padding as zero bytes */
    if (n >= 1 && in[n - 1] == '=')
        len--;
    if (n >= 2 && in[n - 2] == '=')
        len--;
    if ((size_t)len >= cap) {
        free(tmp);
        return -1;
    }
    memcpy(out, tmp, (size_t)len);
    out[len] = '\0';
    free(tmp);
    return 0;
}

/* ---- HTTP --------------------------------------------------------------- */

static size_t etcd_on_body(char *p, size_t size, size_t n, void *ud)
{
    sched_etcd_t *e = ud;
    size_t len = size * n;
    if (e->len + len + 1 > ETCD_BODY_MAX) {
        e->overflow = true;
        return 0;
    }
    memcpy(e->body + e->len, p, len);
    e->len += len;
    e->body[e->len] = '\0';
    return len;
}

static int etcd_on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    sched_etcd_t *e = ud;
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    return e->cancel && e->cancel(e->opaque) ? 1 : 0;
}

/* POST body to path; on success *out is the parsed JSON response (the
 * caller deletes it). A failed transfer moves to the next endpoint. */
static int etcd_post(sched_etcd_t *e, const char *path, const char *body, cJSON **out, char *err,
                     size_t errlen)
{
    char url[512];
    long code = 0;
    snprintf(url, sizeof(url), "%s%s", e->endpoints[e->cur], path);
    e->len = 0;
    e->overflow = false;
    e->body[0] = '\0';
    curl_easy_setopt(e->curl, CURLOPT_URL, url);
    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(e->curl);
    curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", url,
                 e->overflow ? "response larger than 64 KiB" : curl_easy_strerror(rc));
        e->cur = (e->cur + 1) % e->nendpoints;
        return -1;
    }
    cJSON *j = cJSON_ParseWithLength(e->body, e->len);
    if (code != 200) {
        cJSON *m = j ? cJSON_GetObjectItemCaseSensitive(j, "message") : NULL;
        snprintf(err, errlen, "%s: HTTP %ld%s%.200s", url, code, cJSON_IsString(m) ? ": " : "",
                 cJSON_IsString(m) ? m->valuestring : "");
        cJSON_Delete(j);
        if (code >= 500)
            e->cur = (e->cur + 1) % e->nendpoints;
        return -1;
    }
    if (!j) {
        snprintf(err, errlen, "%s: response is not JSON", url);
        return -1;
    }
    *out = j;
    return 0;
}

static int64_t etcd_i64(const cJSON *o, const char *name)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsString(x))
        return strtoll(x->valuestring, NULL, 10);
    if (cJSON_IsNumber(x))
        return (int64_t)x->valuedouble;
    return 0;
}

int sched_etcd_new(const char *endpoints, int64_t timeout_ms, bool (*cancel)(void *opaque),
                   void *opaque, sched_etcd_t **out, char *err, size_t errlen)
{
    sched_etcd_t *e = calloc(1, sizeof(*e));
    char *copy = endpoints ? strdup(endpoints) : NULL, *save = NULL;
    if (!e || !copy || !(e->body = malloc(ETCD_BODY_MAX))) {
        snprintf(err, errlen, "out of memory or no endpoints");
        goto fail;
    }
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        size_t tl = strlen(t);
        while (tl && t[tl - 1] == '/')
            t[--tl] = '\0';
        if ((strncmp(t, "http://", 7) && strncmp(t, "https://", 8)) || tl > 256) {
            snprintf(err, errlen, "etcd endpoint \"%.256s\": expected http://host:port", t);
            goto fail;
        }
        if (e->nendpoints == SCHED_ETCD_MAX_ENDPOINTS) {
            snprintf(err, errlen, "more than %d etcd endpoints", SCHED_ETCD_MAX_ENDPOINTS);
            goto fail;
        }
        if (!(e->endpoints[e->nendpoints++] = strdup(t))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (e->nendpoints == 0) {
        snprintf(err, errlen, "no etcd endpoint given (expected http://host:port[,...])");
        goto fail;
    }
    if (!(e->curl = curl_easy_init())) {
        snprintf(err, errlen, "curl_easy_init failed");
        goto fail;
    }
    if (!(e->headers = curl_slist_append(NULL, "Content-Type: application/json"))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    e->timeout_ms = timeout_ms;
    e->cancel = cancel;
    e->opaque = opaque;
    curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, etcd_on_body);
    curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e->curl, CURLOPT_XFERINFOFUNCTION, etcd_on_progress);
    curl_easy_setopt(e->curl, CURLOPT_XFERINFODATA, e);
    curl_easy_setopt(e->curl, CURLOPT_NOPROGRESS, 0L);
    free(copy);
    *out = e;
    return 0;
fail:
    free(copy);
    sched_etcd_destroy(&e);
    return -1;
}

void sched_etcd_destroy(sched_etcd_t **ep)
{
    sched_etcd_t *e = ep ? *ep : NULL;
    if (!e)
        return;
    if (e->curl)
        curl_easy_cleanup(e->curl);
    curl_slist_free_all(e->headers);
    for (size_t i = 0; i < e->nendpoints; i++)
        free(e->endpoints[i]);
    free(e->body);
    free(e);
    *ep = NULL;
}

/* ---- calls -------------------------------------------------------------- */

int sched_etcd_lease_grant(sched_etcd_t *e, int64_t ttl_s, int64_t *lease_id, char *err,
                           size_t errlen)
{
    char body[64];
    cJSON *j = NULL;
    snprintf(body, sizeof(body), "{\"TTL\":\"%lld\"}", (long long)ttl_s);
    if (etcd_post(e, "/v3/lease/grant", body, &j, err, errlen))
        return -1;
    *lease_id = etcd_i64(j, "ID");
    cJSON_Delete(j);
    if (*lease_id == 0) {
        snprintf(err, errlen, "lease grant: no lease id in the response");
        return -1;
    }
    return 0;
}

int sched_etcd_lease_keepalive(sched_etcd_t *e, int64_t lease_id, int64_t *ttl_left, char *err,
                               size_t errlen)
{
    char body[64];
    cJSON *j = NULL;
    snprintf(body, sizeof(body), "{\"ID\":\"%lld\"}", (long long)lease_id);
    if (etcd_post(e, "/v3/lease/keepalive", body, &j, err, errlen))
        return -1;
    cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
    if (!r) {
        snprintf(err, errlen, "lease keep-alive: no result in the response");
        cJSON_Delete(j);
        return -1;
    }
    *ttl_left = etcd_i64(r, "TTL"); /* absent (0) when the lease is gone */
    cJSON_Delete(j);
    return 0;
}

int sched_etcd_lease_revoke(sched_etcd_t *e, int64_t lease_id, char *err, size_t errlen)
{
    char body[64];
    cJSON *j = NULL;
    snprintf(body, sizeof(body), "{\"ID\":\"%lld\"}", (long long)lease_id);
    if (etcd_post(e, "/v3/lease/revoke", body, &j, err, errlen))
        return strstr(err, "lease not found") ? 0 : -1;
    cJSON_Delete(j);
    return 0;
}

/* The value of the first kv of a range response into out ("" when none). */
static bool etcd_first_value(const cJSON *range, char *out, size_t outlen)
{
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(range, "kvs");
    const cJSON *kv = cJSON_GetArrayItem(kvs, 0);
    const cJSON *v = kv ? cJSON_GetObjectItemCaseSensitive(kv, "value") : NULL;
    if (outlen)
        out[0] = '\0';
    if (!kv)
        return false;
    if (cJSON_IsString(v) && etcd_unb64(v->valuestring, out, outlen))
        out[0] = '\0';
    return true;
}

int sched_etcd_create(sched_etcd_t *e, const char *key, const char *value, int64_t lease_id,
                      bool *created, char *holder, size_t holderlen, char *err, size_t errlen)
{
    char k[ETCD_B64_MAX], v[ETCD_B64_MAX], body[4 * ETCD_B64_MAX + 512];
    cJSON *j = NULL;
    if (etcd_b64(key, k, sizeof(k)) || etcd_b64(value, v, sizeof(v))) {
        snprintf(err, errlen, "key or value longer than %d bytes", SCHED_ETCD_VALUE_MAX);
        return -1;
    }
    snprintf(body, sizeof(body),
             "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\",\"result\":\"EQUAL\","
             "\"create_revision\":\"0\"}],"
             "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%lld\"}}],"
             "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
             k, k, v, (long long)lease_id, k);
    if (etcd_post(e, "/v3/kv/txn", body, &j, err, errlen))
        return -1;
    *created = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "succeeded"));
    if (*created) {
        snprintf(holder, holderlen, "%s", value);
    } else {
        const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "responses"), 0);
        etcd_first_value(cJSON_GetObjectItemCaseSensitive(r, "response_range"), holder, holderlen);
    }
    cJSON_Delete(j);
    return 0;
}

int sched_etcd_put_guarded(sched_etcd_t *e, const char *guard_key, const char *guard_value,
                           const char *key, const char *value, bool *done, char *err, size_t errlen)
{
    char gk[ETCD_B64_MAX], gv[ETCD_B64_MAX], k[ETCD_B64_MAX], v[ETCD_B64_MAX];
    char body[4 * ETCD_B64_MAX + 512];
    cJSON *j = NULL;
    if (etcd_b64(guard_key, gk, sizeof(gk)) || etcd_b64(guard_value, gv, sizeof(gv)) ||
        etcd_b64(key, k, sizeof(k)) || etcd_b64(value, v, sizeof(v))) {
        snprintf(err, errlen, "key or value longer than %d bytes", SCHED_ETCD_VALUE_MAX);
        return -1;
    }
    snprintf(body, sizeof(body),
             "{\"compare\":[{\"key\":\"%s\",\"target\":\"VALUE\",\"result\":\"EQUAL\","
             "\"value\":\"%s\"}],"
             "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
             gk, gv, k, v);
    if (etcd_post(e, "/v3/kv/txn", body, &j, err, errlen))
        return -1;
    *done = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "succeeded"));
    cJSON_Delete(j);
    return 0;
}

int sched_etcd_put(sched_etcd_t *e, const char *key, const char *value, char *err, size_t errlen)
{
    char k[ETCD_B64_MAX], v[ETCD_B64_MAX], body[2 * ETCD_B64_MAX + 128];
    cJSON *j = NULL;
    if (etcd_b64(key, k, sizeof(k)) || etcd_b64(value, v, sizeof(v))) {
        snprintf(err, errlen, "key or value longer than %d bytes", SCHED_ETCD_VALUE_MAX);
        return -1;
    }
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
    if (etcd_post(e, "/v3/kv/put", body, &j, err, errlen))
        return -1;
    cJSON_Delete(j);
    return 0;
}

int sched_etcd_get(sched_etcd_t *e, const char *key, char *value, size_t valuelen, bool *found,
                   char *err, size_t errlen)
{
    char k[ETCD_B64_MAX], body[ETCD_B64_MAX + 32];
    cJSON *j = NULL;
    if (etcd_b64(key, k, sizeof(k))) {
        snprintf(err, errlen, "key longer than %d bytes", SCHED_ETCD_VALUE_MAX);
        return -1;
    }
    snprintf(body, sizeof(body), "{\"key\":\"%s\"}", k);
    if (etcd_post(e, "/v3/kv/range", body, &j, err, errlen))
        return -1;
    *found = etcd_first_value(j, value, valuelen);
    cJSON_Delete(j);
    return 0;
}

int sched_etcd_delete_if(sched_etcd_t *e, const char *key, const char *value, char *err,
                         size_t errlen)
{
    char k[ETCD_B64_MAX], v[ETCD_B64_MAX], body[3 * ETCD_B64_MAX + 512];
    cJSON *j = NULL;
    if (etcd_b64(key, k, sizeof(k)) || etcd_b64(value, v, sizeof(v))) {
        snprintf(err, errlen, "key or value longer than %d bytes", SCHED_ETCD_VALUE_MAX);
        return -1;
    }
    snprintf(body, sizeof(body),
             "{\"compare\":[{\"key\":\"%s\",\"target\":\"VALUE\",\"result\":\"EQUAL\","
             "\"value\":\"%s\"}],\"success\":[{\"request_delete_range\":{\"key\":\"%s\"}}]}",
             k, v, k);
    if (etcd_post(e, "/v3/kv/txn", body, &j, err, errlen))
        return -1;
    cJSON_Delete(j);
    return 0;
}
