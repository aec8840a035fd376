/* util.c: hex, escapes and bounded file reading for imtask-ctl. */
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int ctl_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ctl_hex_decode(const char *s, size_t max, uint8_t **out, size_t *outlen, char *err,
                   size_t errlen)
{
    size_t len = strlen(s), n = 0, start = 0;
    uint8_t *buf = NULL;
    int hi = -1;

    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        start = 2;
    buf = malloc(len / 2 + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = start; i < len; i++) {
        int v;
        if (s[i] == ' ' || s[i] == ':') {
            if (hi >= 0)
                goto odd;
            continue;
        }
        v = ctl_hex_value(s[i]);
        if (v < 0) {
            snprintf(err, errlen, "not a hex digit: '%c' at offset %zu", s[i], i);
            free(buf);
            return -1;
        }
        if (hi < 0) {
            hi = v;
            continue;
        }
        if (n >= max) {
            snprintf(err, errlen, "more than %zu bytes of hex", max);
            free(buf);
            return -1;
        }
        buf[n++] = (uint8_t)(hi << 4 | v);
        hi = -1;
    }
    if (hi >= 0)
        goto odd;
    if (n == 0) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    *outlen = n;
    return 0;
odd:
    snprintf(err, errlen, "odd number of hex digits (each byte takes two)");
    free(buf);
    return -1;
}

void ctl_hexdump(FILE *out, const uint8_t *data, size_t len, size_t max, const char *indent)
{
    size_t n = len < max ? len : max;
    for (size_t off = 0; off < n; off += 16) {
        fprintf(out, "%s%06zx ", indent, off);
        for (size_t i = 0; i < 16; i++) {
            if (off + i < n)
                fprintf(out, " %02x", data[off + i]);
            else
                fputs("   ", out);
        }
        fputs("  |", out);
        for (size_t i = 0; i < 16 && off + i < n; i++) {
            uint8_t c = data[off + i];
            fputc(c >= 0x20 && c < 0x7f ? c : '.', out);
        }
        fputs("|\n", out);
    }
    if (n < len)
        fprintf(out, "%s... %zu more bytes not shown\n", indent, len - n);
}

/* Length of a valid multi-byte UTF-8 sequence at p (at most avail bytes), or 0. */
static size_t ctl_utf8_len(const uint8_t *p, size_t avail)
{
    size_t n;
    uint32_t c;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (n > avail)
        return 0;
    c = p[0] & (0xff >> (n + 1));
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
        (n == 4 && (c < 0x10000 || c > 0x10ffff)))
        return 0;
    return n;
}

/* The escaped form of the byte(s) at p[i] into tmp (>= 5 bytes); returns
 * its length and sets *used to the input bytes it covers. */
static size_t ctl_escape_one(const uint8_t *p, size_t i, size_t len, char *tmp, size_t *used)
{
    size_t u8 = p[i] >= 0x80 ? ctl_utf8_len(p + i, len - i) : 0;
    *used = 1;
    if (u8) {
        memcpy(tmp, p + i, u8);
        *used = u8;
        return u8;
    }
    if (p[i] == '\\') {
        memcpy(tmp, "\\\\", 2);
        return 2;
    }
    if (p[i] >= 0x20 && p[i] < 0x7f) {
        tmp[0] = (char)p[i];
        return 1;
    }
    snprintf(tmp, 5, "\\x%02x", p[i]);
    return 4;
}

void ctl_escape(const void *data, size_t len, char *out, size_t outlen)
{
    const uint8_t *p = data;
    size_t total = 0, o = 0, used;
    char tmp[8];
    if (outlen == 0)
        return;
    for (size_t i = 0; i < len; i += used)
        total += ctl_escape_one(p, i, len, tmp, &used);
    for (size_t i = 0; i < len; i += used) {
        size_t n = ctl_escape_one(p, i, len, tmp, &used);
        /* all of it fits, or keep room for "..." */
        size_t room = total < outlen ? outlen - 1 : (outlen > 4 ? outlen - 4 : 0);
        if (o + n > room)
            break;
        memcpy(out + o, tmp, n);
        o += n;
    }
    if (total >= outlen) {
        for (size_t k = 0; k < 3 && o + 1 < outlen; k++)
            out[o++] = '.';
    }
    out[o] = '\0';
}

int ctl_read_file(const char *path, size_t max, char **out, size_t *outlen, char *err,
                  size_t errlen)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;

    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t got;
        if (cap - n < 2) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *grown;
            if (ncap > max + 2)
                ncap = max + 2;
            if (ncap <= cap) {
                snprintf(err, errlen, "%s is larger than %zu bytes", is_stdin ? "stdin" : path,
                         max);
                goto out;
            }
            grown = realloc(buf, ncap);
            if (!grown) {
                snprintf(err, errlen, "out of memory reading %s", path);
                goto out;
            }
            buf = grown;
            cap = ncap;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n > max) {
            snprintf(err, errlen, "%s is larger than %zu bytes", is_stdin ? "stdin" : path, max);
            goto out;
        }
        if (got == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
                goto out;
            }
            break;
        }
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    if (!is_stdin)
        fclose(f);
    return rc;
}
