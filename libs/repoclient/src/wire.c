/* wire.c: gRPC message framing, grpc-timeout, status and code mappings. */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wire_parser_init(wire_parser_t *p, size_t max_len)
{
    memset(p, 0, sizeof *p);
    p->max_len = max_len;
}

void wire_parser_reset(wire_parser_t *p)
{
    size_t max = p->max_len;
    free(p->msg);
    wire_parser_init(p, max);
}

wire_err_t wire_parser_feed(wire_parser_t *p, const uint8_t *data, size_t len)
{
    while (len > 0 && p->err == WIRE_OK) {
        if (p->hdr_have < WIRE_PREFIX) {
            size_t n = WIRE_PREFIX - p->hdr_have;
            if (n > len)
                n = len;
            memcpy(p->hdr + p->hdr_have, data, n);
            p->hdr_have += n;
            data += n;
            len -= n;
            if (p->hdr_have < WIRE_PREFIX)
                break;
            uint8_t flag = p->hdr[0];
            size_t mlen = (size_t)p->hdr[1] << 24 | (size_t)p->hdr[2] << 16 |
                          (size_t)p->hdr[3] << 8 | (size_t)p->hdr[4];
            if (flag == 1) {
                p->err = WIRE_COMPRESSED;
                break;
            }
            if (flag != 0) {
                p->err = WIRE_BAD_FLAG;
                break;
            }
            if (p->nmsgs >= 1) {
                p->err = WIRE_TOO_MANY;
                break;
            }
            if (mlen > p->max_len) {
                p->err = WIRE_TOO_LARGE;
                break;
            }
            p->msg = malloc(mlen ? mlen : 1);
            if (!p->msg) {
                p->err = WIRE_NOMEM;
                break;
            }
            p->msg_len = mlen;
            p->msg_have = 0;
        }
        size_t n = p->msg_len - p->msg_have;
        if (n > len)
            n = len;
        memcpy(p->msg + p->msg_have, data, n);
        p->msg_have += n;
        data += n;
        len -= n;
        if (p->msg_have == p->msg_len) {
            p->nmsgs++;
            p->hdr_have = 0; /* ready for a next header (which is refused) */
        }
    }
    return p->err;
}

wire_err_t wire_parser_finish(const wire_parser_t *p)
{
    if (p->err)
        return p->err;
    if (p->hdr_have > 0 && (p->hdr_have < WIRE_PREFIX || p->msg_have < p->msg_len))
        return WIRE_TRUNCATED;
    return WIRE_OK;
}

uint8_t *wire_parser_take(wire_parser_t *p, size_t *len)
{
    if (p->nmsgs < 1) {
        *len = 0;
        return NULL;
    }
    uint8_t *m = p->msg;
    *len = p->msg_len;
    p->msg = NULL;
    p->msg_len = p->msg_have = 0;
    return m;
}

const char *wire_err_str(wire_err_t e)
{
    switch (e) {
    case WIRE_OK:
        return "ok";
    case WIRE_TOO_LARGE:
        return "message length over the maximum";
    case WIRE_COMPRESSED:
        return "compressed message, no compression was negotiated";
    case WIRE_BAD_FLAG:
        return "bad message flag";
    case WIRE_TOO_MANY:
        return "more than one response message on a unary call";
    case WIRE_NOMEM:
        return "out of memory";
    case WIRE_TRUNCATED:
        return "stream ended inside a message";
    }
    return "?";
}

uint8_t *wire_frame(const uint8_t *msg, size_t len, size_t *outlen)
{
    uint8_t *b = malloc(WIRE_PREFIX + len);
    if (!b)
        return NULL;
    b[0] = 0;
    b[1] = (uint8_t)(len >> 24);
    b[2] = (uint8_t)(len >> 16);
    b[3] = (uint8_t)(len >> 8);
    b[4] = (uint8_t)len;
    if (len)
        memcpy(b + WIRE_PREFIX, msg, len);
    *outlen = WIRE_PREFIX + len;
    return b;
}

void wire_timeout_format(int64_t ms, char *out, size_t outlen)
{
    if (ms < 1)
        ms = 1;
    if (ms <= 99999999)
        snprintf(out, outlen, "%lldm", (long long)ms);
    else if (ms / 1000 <= 99999999)
        snprintf(out, outlen, "%lldS", (long long)(ms / 1000));
    else
        snprintf(out, outlen, "%lldM", (long long)(ms / 60000 > 99999999 ? 99999999 : ms / 60000));
}

int64_t wire_timeout_parse(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 9)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    switch (s[n - 1]) {
    case 'H':
        return v * 3600000;
    case 'M':
        return v * 60000;
    case 'S':
        return v * 1000;
    case 'm':
        return v;
    case 'u':
        return (v + 999) / 1000;
    case 'n':
        return (v + 999999) / 1000000;
    }
    return -1;
}

int wire_status_parse(const char *s, size_t len)
{
    if (len < 1 || len > 2)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void wire_percent_decode(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen == 0)
        return;
    for (size_t i = 0; i < len && o + 1 < outlen; i++) {
        if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
}

repo_err_t wire_http_to_grpc(int http_status)
{
    switch (http_status) {
    case 400:
        return REPO_ERR_INTERNAL;
    case 401:
        return REPO_ERR_UNAUTHENTICATED;
    case 403:
        return REPO_ERR_PERMISSION_DENIED;
    case 404:
        return REPO_ERR_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return REPO_ERR_UNAVAILABLE;
    }
    return REPO_ERR_UNKNOWN;
}

repo_err_t wire_h2_to_grpc(uint32_t e)
{
    switch (e) {
    case 0x7:
        return REPO_ERR_UNAVAILABLE; /* REFUSED_STREAM */
    case 0x8:
        return REPO_ERR_CANCELLED; /* CANCEL */
    case 0xb:
        return REPO_ERR_RESOURCE_EXHAUSTED; /* ENHANCE_YOUR_CALM */
    case 0xc:
        return REPO_ERR_PERMISSION_DENIED; /* INADEQUATE_SECURITY */
    }
    return REPO_ERR_INTERNAL;
}
