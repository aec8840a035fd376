/* downlink.c: what goes to the gateway topics: topic names from the
 * template, and the two record formats (docs/fanout.md). The message is
 * packed once per fan-out; each record adds only the recipient(s) around
 * it, so encoding costs a copy, not a protobuf pack per user. */
#include <stdlib.h>
#include <string.h>

#include "fanout.h"

static bool fanout_topic_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

int fanout_topic_template_check(const char *tmpl, char *err, size_t errlen)
{
    const char *ph = tmpl ? strstr(tmpl, FANOUT_GATEWAY_PLACEHOLDER) : NULL;
    size_t plen = strlen(FANOUT_GATEWAY_PLACEHOLDER);
    if (!ph || strstr(ph + plen, FANOUT_GATEWAY_PLACEHOLDER)) {
        snprintf(err, errlen, "expected exactly one %s in \"%s\"", FANOUT_GATEWAY_PLACEHOLDER,
                 tmpl ? tmpl : "");
        return -1;
    }
    for (const char *p = tmpl; *p; p++) {
        if (p == ph) {
            p += plen - 1;
            continue;
        }
        if (!fanout_topic_char_ok(*p)) {
            snprintf(err, errlen, "'%c' cannot be in a topic name (only [a-zA-Z0-9._-])", *p);
            return -1;
        }
    }
    if (strlen(tmpl) - plen + 1 > FANOUT_TOPIC_MAX) {
        snprintf(err, errlen, "longer than a topic name may be (%d)", FANOUT_TOPIC_MAX);
        return -1;
    }
    return 0;
}

int fanout_topic_name(const char *tmpl, const char *gateway_id, char *out, size_t outlen)
{
    const char *ph = strstr(tmpl, FANOUT_GATEWAY_PLACEHOLDER);
    size_t plen = strlen(FANOUT_GATEWAY_PLACEHOLDER);
    size_t glen = gateway_id ? strlen(gateway_id) : 0;
    if (!ph || glen == 0)
        return -1;
    for (size_t i = 0; i < glen; i++) {
        if (!fanout_topic_char_ok(gateway_id[i]))
            return -1;
    }
    size_t pre = (size_t)(ph - tmpl), post = strlen(ph + plen);
    size_t total = pre + glen + post;
    if (total > FANOUT_TOPIC_MAX || total + 1 > outlen)
        return -1;
    memcpy(out, tmpl, pre);
    memcpy(out + pre, gateway_id, glen);
    memcpy(out + pre + glen, ph + plen, post);
    out[total] = '\0';
    return (int)total;
}

/* ---- buffers and wire primitives ----------------------------------------- */

void fanout_buf_free(fanout_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int fanout_buf_reserve(fanout_buf_t *b, size_t more)
{
    size_t need = b->len + more;
    if (need <= b->cap)
        return 0;
    if (b->max && need > b->max)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (b->max && cap > b->max)
        cap = b->max;
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static int fanout_buf_put(fanout_buf_t *b, const void *p, size_t n)
{
    if (fanout_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int fanout_buf_varint(fanout_buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    return fanout_buf_put(b, tmp, n);
}

/* A length-delimited field (wire type 2). */
static int fanout_buf_bytes_field(fanout_buf_t *b, uint32_t field, const void *p, size_t n)
{
    if (fanout_buf_varint(b, ((uint64_t)field << 3) | 2) || fanout_buf_varint(b, n))
        return -1;
    return fanout_buf_put(b, p, n);
}

/* ---- the two formats ----------------------------------------------------- */

int fanout_message_pack(const Imtask__V1__DownstreamMessage *m, fanout_buf_t *out)
{
    Imtask__V1__DownstreamMessage copy = *m;
    copy.target_user_id = (char *)""; /* proto3: an empty string is not written */
    size_t n = protobuf_c_message_get_packed_size(&copy.base);
    out->len = 0;
    if (fanout_buf_reserve(out, n))
        return -1;
    out->len = protobuf_c_message_pack(&copy.base, out->data);
    return 0;
}

int fanout_encode_recipient(const fanout_buf_t *packed, const char *user_id, fanout_buf_t *out)
{
    out->len = 0;
    if (fanout_buf_bytes_field(out, 2, user_id, strlen(user_id)))
        return -1;
    return fanout_buf_put(out, packed->data, packed->len);
}

int fanout_encode_batch(const fanout_buf_t *packed, const char *const *user_ids, size_t n,
                        const char *gateway_id, const char *group_id, fanout_buf_t *out)
{
    out->len = 0;
    if (fanout_buf_bytes_field(out, 1, packed->data, packed->len))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (fanout_buf_bytes_field(out, 2, user_ids[i], strlen(user_ids[i])))
            return -1;
    }
    if (gateway_id && *gateway_id && fanout_buf_bytes_field(out, 3, gateway_id, strlen(gateway_id)))
        return -1;
    if (group_id && *group_id && fanout_buf_bytes_field(out, 4, group_id, strlen(group_id)))
        return -1;
    return 0;
}
