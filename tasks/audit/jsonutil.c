/* jsonutil.c: bounded buffers, JSON escaping, path lookup and base64 for the
 * providers (see jsonutil.h). */
#include "jsonutil.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void audit_buf_init(audit_buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

int audit_buf_append(audit_buf_t *b, const char *s, size_t n)
{
    if (b->overflow)
        return -1;
    if (b->len + n + 1 > b->max) {
        b->overflow = true;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        if (ncap > b->max)
            ncap = b->max;
        char *d = realloc(b->data, ncap);
        if (!d) {
            b->overflow = true;
            return -1;
        }
        b->data = d;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int audit_buf_puts(audit_buf_t *b, const char *s)
{
    return audit_buf_append(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t audit_utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int audit_buf_json_string(audit_buf_t *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    if (audit_buf_append(b, "\"", 1))
        return -1;
    while (i < n) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char ubuf[8];
        size_t seq = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(ubuf, sizeof(ubuf), "\\u%04x", c);
            esc = ubuf;
        } else if (c >= 0x80) {
            seq = audit_utf8_seq(p + i, n - i);
            if (seq == 0) {
                esc = "\\ufffd";
                seq = 1;
            }
        }
        if (esc) {
            if (run && audit_buf_append(b, s + i - run, run))
                return -1;
            run = 0;
            if (audit_buf_puts(b, esc))
                return -1;
            i += seq;
            continue;
        }
        run += seq;
        i += seq;
    }
    if (run && audit_buf_append(b, s + i - run, run))
        return -1;
    return audit_buf_append(b, "\"", 1);
}

char *audit_buf_take(audit_buf_t *b, size_t *len)
{
    char *d = b->data;
    if (!d) {
        d = strdup("");
    }
    if (len)
        *len = b->data ? b->len : 0;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void audit_buf_free(audit_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

const cJSON *audit_json_path(const cJSON *root, const char *path)
{
    const cJSON *cur = root;
    const char *p = path;
    char key[128];
    if (!root || !path)
        return NULL;
    while (*p && cur) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            char *end;
            long idx = strtol(p + 1, &end, 10);
            if (end == p + 1 || *end != ']' || idx < 0 || !cJSON_IsArray(cur))
                return NULL;
            cur = cJSON_GetArrayItem(cur, (int)idx);
            p = end + 1;
            continue;
        }
        size_t n = strcspn(p, ".[");
        if (n >= sizeof(key) || !cJSON_IsObject(cur))
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        p += n;
    }
    return cur;
}

int audit_json_path_str(const cJSON *root, const char *path, char *out, size_t outlen)
{
    const cJSON *n = audit_json_path(root, path);
    if (!n || outlen == 0)
        return -1;
    if (cJSON_IsString(n) && n->valuestring) {
        audit_copy_utf8(out, outlen, n->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(n)) {
        snprintf(out, outlen, "%.17g", n->valuedouble);
        return 0;
    }
    return -1;
}

char *audit_base64(const void *data, size_t n)
{
    size_t cap = 4 * ((n + 2) / 3) + 1;
    unsigned char *out = malloc(cap);
    if (!out)
        return NULL;
    /* EVP_EncodeBlock takes an int length: encode in chunks of 3 * 2^20. */
    size_t done = 0, w = 0;
    const unsigned char *in = data;
    while (done < n) {
        size_t chunk = n - done;
        if (chunk > 3u << 20)
            chunk = 3u << 20;
        w += (size_t)EVP_EncodeBlock(out + w, in + done, (int)chunk);
        done += chunk;
    }
    out[w] = '\0';
    return (char *)out;
}

void audit_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void audit_copy_utf8(char *out, size_t outlen, const char *s)
{
    size_t n = strlen(s);
    if (outlen == 0)
        return;
    if (n >= outlen) {
        n = outlen - 1;
        /* back off continuation bytes so no sequence is cut */
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}
