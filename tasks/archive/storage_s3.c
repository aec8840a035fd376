/* storage_s3.c: the S3-compatible backend of storage.h, on libcurl: requests
 * signed with AWS SigV4 by libcurl itself (CURLOPT_AWS_SIGV4), path-style
 * URLs (<endpoint>/<bucket>/<prefix><key>), PUT with Content-MD5 (the server
 * refuses a body that does not match) and x-amz-content-sha256 (a create-only
 * PUT adds If-None-Match: *, S3's conditional write: 412 = the key exists), GET bounded
 * by max_object_bytes, ListObjectsV2 pages, DELETE. One easy handle per
 * request, so a store may be used from several threads. The ListObjectsV2
 * answer is scanned for its few elements by hand rather than with an XML
 * library: the elements are flat and their text is entity-escaped only. */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_internal.h"

#define S3_URL_MAX 4096
#define S3_LIST_PAGE_MAX (8u << 20) /* one ListObjectsV2 answer */
#define S3_ERR_BODY 300             /* bytes of an error answer quoted */

typedef struct {
    char endpoint[1024]; /* without a trailing '/' */
    char bucket[256];
    char prefix[512];
    char sigv4[300]; /* "aws:amz:<region>:s3" */
    char userpwd[600];
    long timeout_ms;
} s3_t;

void *store_s3_open(const store_config_t *c, char *desc, size_t desclen, char *err, size_t errlen)
{
    s3_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t n = strlen(c->s3_endpoint);
    while (n && c->s3_endpoint[n - 1] == '/')
        n--;
    if (n == 0 || n >= sizeof(s->endpoint) || strlen(c->s3_bucket) >= sizeof(s->bucket) ||
        strlen(c->s3_prefix) >= sizeof(s->prefix) || strlen(c->s3_region) > 64) {
        snprintf(err, errlen, "storage: s3_endpoint, s3_bucket, s3_prefix or s3_region too long");
        free(s);
        return NULL;
    }
    memcpy(s->endpoint, c->s3_endpoint, n);
    snprintf(s->bucket, sizeof(s->bucket), "%s", c->s3_bucket);
    snprintf(s->prefix, sizeof(s->prefix), "%s", c->s3_prefix);
    snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3",
             c->s3_region[0] ? c->s3_region : "us-east-1");
    if (snprintf(s->userpwd, sizeof(s->userpwd), "%s:%s", c->s3_access_key_id,
                 c->s3_secret_access_key) >= (int)sizeof(s->userpwd)) {
        snprintf(err, errlen, "storage: s3 credentials too long");
        free(s);
        return NULL;
    }
    s->timeout_ms = c->s3_timeout_ms > 0 ? (long)c->s3_timeout_ms : 30000;
    snprintf(desc, desclen, "s3:%s/%s/%s", s->endpoint, s->bucket, s->prefix);
    return s;
}

/* RFC 3986 percent-encoding of everything but unreserved characters (and
 * '/' when keep_slash), as SigV4's canonical form wants. */
static int enc(char *out, size_t cap, const char *in, int keep_slash)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~' ||
                    (keep_slash && *p == '/');
        if (o + 4 >= cap)
            return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hexd[*p >> 4];
            out[o++] = hexd[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

static int object_url(const s3_t *s, const char *key, char *url, size_t cap)
{
    char full[1200], e[3600];
    if (snprintf(full, sizeof(full), "%s%s", s->prefix, key) >= (int)sizeof(full) ||
        enc(e, sizeof(e), full, 1))
        return -1;
    return snprintf(url, cap, "%s/%s/%s", s->endpoint, s->bucket, e) >= (int)cap ? -1 : 0;
}

typedef struct {
    char *data;
    size_t len, cap, max;
    int over;
} buf_t;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    buf_t *b = ud;
    size_t k = sz * n;
    if (b->len + k > b->max) {
        b->over = 1;
        return 0; /* aborts the transfer */
    }
    if (b->len + k + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 16384;
        while (nc < b->len + k + 1)
            nc *= 2;
        char *nd = realloc(b->data, nc);
        if (!nd)
            return 0;
        b->data = nd;
        b->cap = nc;
    }
    memcpy(b->data + b->len, p, k);
    b->len += k;
    b->data[b->len] = '\0';
    return k;
}

static void hexs(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* One request. body/len: for PUT. resp: the answer (bounded by max). Returns
 * the HTTP status, or -1 with err (transport, or an answer over max). */
static long s3_request(const s3_t *s, const char *method, const char *url, const void *body,
                       size_t len, const char *content_type, int only_new, buf_t *resp, char *err,
                       size_t errlen)
{
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "storage: curl_easy_init failed");
        return -1;
    }
    struct curl_slist *h = NULL;
    unsigned char md[32];
    unsigned int mdlen = 0;
    char sha_hex[65], line[200];
    EVP_Digest(body ? body : "", body ? len : 0, md, &mdlen, EVP_sha256(), NULL);
    hexs(md, 32, sha_hex);
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", sha_hex);
    h = curl_slist_append(h, line);
    if (body) {
        unsigned char m5[16], b64[32];
        unsigned int m5len = 0;
        EVP_Digest(body, len, m5, &m5len, EVP_md5(), NULL);
        EVP_EncodeBlock(b64, m5, 16);
        snprintf(line, sizeof(line), "Content-MD5: %s", (const char *)b64);
        h = curl_slist_append(h, line);
        snprintf(line, sizeof(line), "Content-Type: %s", content_type);
        h = curl_slist_append(h, line);
        if (only_new)
            h = curl_slist_append(h, "If-None-Match: *");
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(c, CURLOPT_USERPWD, s->userpwd);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms < 10000 ? s->timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (resp->over) {
        snprintf(err, errlen, "storage: %s %s: the answer is larger than %zu bytes", method, url,
                 resp->max);
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "storage: %s %s: %s", method, url, curl_easy_strerror(rc));
        return -1;
    }
    return status;
}

static void http_fail(const char *method, const char *url, long status, const buf_t *b, char *err,
                      size_t errlen)
{
    snprintf(err, errlen, "storage: %s %s: HTTP %ld %.*s", method, url, status,
             (int)(b->len < S3_ERR_BODY ? b->len : S3_ERR_BODY), b->data ? b->data : "");
}

static int s3_put(void *bk, const char *key, const void *data, size_t len, const char *content_type,
                  int only_new, char *err, size_t errlen)
{
    s3_t *s = bk;
    char url[S3_URL_MAX];
    if (object_url(s, key, url, sizeof(url))) {
        snprintf(err, errlen, "storage: key too long for a URL");
        return -1;
    }
    buf_t b = {.max = 1 << 20};
    /* a zero-length body still goes as a body (Content-Length: 0) */
    long st =
        s3_request(s, "PUT", url, data ? data : "", len, content_type, only_new, &b, err, errlen);
    int rc = 0;
    if (st < 0) {
        rc = -1;
    } else if (only_new && st == 412) {
        rc = 1; /* PreconditionFailed: the key exists */
    } else if (st != 200) {
        http_fail("PUT", url, st, &b, err, errlen);
        rc = -1;
    }
    free(b.data);
    return rc;
}

static int s3_get(void *bk, const char *key, size_t max, void **data, size_t *len, char *err,
                  size_t errlen)
{
    s3_t *s = bk;
    char url[S3_URL_MAX];
    if (object_url(s, key, url, sizeof(url))) {
        snprintf(err, errlen, "storage: key too long for a URL");
        return -1;
    }
    buf_t b = {.max = max};
    long st = s3_request(s, "GET", url, NULL, 0, NULL, 0, &b, err, errlen);
    if (st == 200) {
        if (!b.data) {
            b.data = malloc(1);
            if (!b.data) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            b.data[0] = '\0';
        }
        *data = b.data;
        *len = b.len;
        return 0;
    }
    int rc = -1;
    if (st == 404)
        rc = 1;
    else if (st > 0)
        http_fail("GET", url, st, &b, err, errlen);
    free(b.data);
    return rc;
}

static int s3_del(void *bk, const char *key, char *err, size_t errlen)
{
    s3_t *s = bk;
    char url[S3_URL_MAX];
    if (object_url(s, key, url, sizeof(url))) {
        snprintf(err, errlen, "storage: key too long for a URL");
        return -1;
    }
    buf_t b = {.max = 1 << 20};
    long st = s3_request(s, "DELETE", url, NULL, 0, NULL, 0, &b, err, errlen);
    int rc = 0;
    if (st < 0) {
        rc = -1;
    } else if (st != 204 && st != 200 && st != 404) {
        http_fail("DELETE", url, st, &b, err, errlen);
        rc = -1;
    }
    free(b.data);
    return rc;
}

/* The text of the next <tag>...</tag> at or after *p (before end), entity-
 * decoded into out; advances *p past it. Returns 0, or -1 when none. */
static int xml_next(const char **p, const char *end, const char *tag, char *out, size_t cap)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(*p, open);
    if (!a || a >= end)
        return -1;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (!b || b > end)
        return -1;
    size_t o = 0;
    for (const char *q = a; q < b && o + 1 < cap;) {
        static const struct {
            const char *ent;
            char ch;
        } ents[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        size_t i;
        for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
            size_t l = strlen(ents[i].ent);
            if ((size_t)(b - q) >= l && strncmp(q, ents[i].ent, l) == 0) {
                out[o++] = ents[i].ch;
                q += l;
                break;
            }
        }
        if (i == sizeof(ents) / sizeof(ents[0]))
            out[o++] = *q++;
    }
    out[o] = '\0';
    *p = b + strlen(close);
    return 0;
}

static int s3_list(void *bk, const char *prefix,
                   int (*each)(void *opaque, const char *key, uint64_t size), void *opaque,
                   char *err, size_t errlen)
{
    s3_t *s = bk;
    char full[1200], eprefix[3600], token[2048] = "", etoken[6200];
    if (snprintf(full, sizeof(full), "%s%s", s->prefix, prefix) >= (int)sizeof(full) ||
        enc(eprefix, sizeof(eprefix), full, 0)) {
        snprintf(err, errlen, "storage: list prefix too long");
        return -1;
    }
    size_t plen = strlen(s->prefix);
    for (int page = 0; page < 100000; page++) {
        char url[S3_URL_MAX + 6200 + 3600 + 1024 + 256 + 64];
        /* query parameters in sorted order (SigV4's canonical query) */
        if (token[0]) {
            if (enc(etoken, sizeof(etoken), token, 0)) {
                snprintf(err, errlen, "storage: continuation token too long");
                return -1;
            }
            snprintf(url, sizeof(url), "%s/%s?continuation-token=%s&list-type=2&prefix=%s",
                     s->endpoint, s->bucket, etoken, eprefix);
        } else {
            snprintf(url, sizeof(url), "%s/%s?list-type=2&prefix=%s", s->endpoint, s->bucket,
                     eprefix);
        }
        buf_t b = {.max = S3_LIST_PAGE_MAX};
        long st = s3_request(s, "GET", url, NULL, 0, NULL, 0, &b, err, errlen);
        if (st != 200) {
            if (st > 0)
                http_fail("GET", url, st, &b, err, errlen);
            free(b.data);
            return -1;
        }
        const char *p = b.data ? b.data : "";
        const char *end = p + b.len;
        int stop = 0;
        for (;;) {
            const char *c = strstr(p, "<Contents>");
            if (!c)
                break;
            const char *ce = strstr(c, "</Contents>");
            if (!ce)
                break;
            char key[1200], size[32];
            const char *q = c;
            if (xml_next(&q, ce, "Key", key, sizeof(key)) == 0) {
                const char *q2 = c;
                uint64_t sz = 0;
                if (xml_next(&q2, ce, "Size", size, sizeof(size)) == 0)
                    sz = strtoull(size, NULL, 10);
                if (strncmp(key, s->prefix, plen) == 0 && !stop && store_key_ok(key + plen) &&
                    each(opaque, key + plen, sz))
                    stop = 1;
            }
            p = ce + strlen("</Contents>");
        }
        char trunc[16] = "";
        const char *q = b.data ? b.data : "";
        xml_next(&q, end, "IsTruncated", trunc, sizeof(trunc));
        token[0] = '\0';
        q = b.data ? b.data : "";
        if (strcmp(trunc, "true") == 0)
            xml_next(&q, end, "NextContinuationToken", token, sizeof(token));
        free(b.data);
        if (stop || !token[0])
            return 0;
    }
    snprintf(err, errlen, "storage: list %s: more than 100000 pages", prefix);
    return -1;
}

static void s3_close(void *bk)
{
    free(bk);
}

const store_backend_ops_t store_s3_ops = {
    .put = s3_put,
    .get = s3_get,
    .list = s3_list,
    .del = s3_del,
    .close = s3_close,
};
