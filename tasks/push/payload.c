/* payload.c: APNs payloads and FCM messages as JSON, shortened to the
 * providers' limits on UTF-8 boundaries (see payload.h). */
#include "payload.h"

#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ELLIPSIS "\xE2\x80\xA6" /* U+2026 */
#define ELLIPSIS_LEN 3

/* ---- buffer ------------------------------------------------------------ */

void push_buf_reset(push_buf_t *b)
{
    b->len = 0;
    b->overflow = false;
    if (b->data)
        b->data[0] = '\0';
}

void push_buf_free(push_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void push_buf_add(push_buf_t *b, const void *p, size_t n)
{
    if (b->overflow)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > PUSH_JSON_MAX + 1)
            cap = PUSH_JSON_MAX + 1;
        if (b->len + n + 1 > cap) {
            b->overflow = true;
            return;
        }
        char *d = realloc(b->data, cap);
        if (!d) {
            b->overflow = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void push_buf_str(push_buf_t *b, const char *s)
{
    push_buf_add(b, s, strlen(s));
}

static void buf_fmt(push_buf_t *b, const char *fmt, int64_t v)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof(tmp), fmt, v);
    push_buf_add(b, tmp, (size_t)k);
}

/* ---- UTF-8 and JSON strings -------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0] (n bytes available), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

size_t push_utf8_cut(const char *s, size_t len, size_t max)
{
    size_t n = max < len ? max : len;
    if (n == len)
        return n;
    /* s[n] is the first byte left out: back up while it continues a sequence */
    for (int i = 0; i < 3 && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80; i++)
        n--;
    return n;
}

/* Escape form of one byte that needs it, or NULL. */
static const char *json_esc(unsigned char c, char tmp[8])
{
    static const char hex[] = "0123456789abcdef";
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    default:
        if (c < 0x20 || c == 0x7f) {
            memcpy(tmp, "\\u00", 4);
            tmp[4] = hex[c >> 4];
            tmp[5] = hex[c & 0xf];
            tmp[6] = '\0';
            return tmp;
        }
        return NULL;
    }
}

size_t push_json_str_len(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t out = 2, i = 0;
    char tmp[8];
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        if (k == 0) {
            out += 3; /* U+FFFD */
            i++;
        } else if (k == 1) {
            const char *e = json_esc(u[i], tmp);
            out += e ? strlen(e) : 1;
            i++;
        } else {
            out += k;
            i += k;
        }
    }
    return out;
}

void push_buf_json_str(push_buf_t *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* bytes copied as they are, pending */
    char tmp[8];
    push_buf_add(b, "\"", 1);
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        const char *e = k == 1 ? json_esc(u[i], tmp) : NULL;
        if (k > 1 || (k == 1 && !e)) {
            i += k;
            run += k;
            continue;
        }
        push_buf_add(b, s + i - run, run);
        run = 0;
        if (k == 0) {
            push_buf_add(b, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            push_buf_str(b, e);
            i++;
        }
    }
    push_buf_add(b, s + i - run, run);
    push_buf_add(b, "\"", 1);
}

static void buf_jstr(push_buf_t *b, const char *s)
{
    push_buf_json_str(b, s, strlen(s));
}

static void buf_key(push_buf_t *b, bool *first, const char *key)
{
    if (!*first)
        push_buf_add(b, ",", 1);
    *first = false;
    buf_jstr(b, key);
    push_buf_add(b, ":", 1);
}

/* ---- collapse id -------------------------------------------------------- */

void push_collapse_id(const Imtask__V1__PushNotification *n, char *out)
{
    const char *src = n && n->collapse_key && n->collapse_key[0] ? n->collapse_key
                      : n && n->message_id && n->message_id[0]   ? n->message_id
                                                                 : "";
    size_t len = strlen(src);
    if (len <= PUSH_COLLAPSE_ID_MAX) {
        memcpy(out, src, len + 1);
        return;
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)src, len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- fitting ----------------------------------------------------------- */

/* What to keep of the two texts. */
typedef struct {
    size_t body_keep, title_keep;
    bool body_cut, title_cut; /* append the ellipsis */
} keep_t;

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

static void buf_text(push_buf_t *b, const char *s, size_t keep, bool cut)
{
    if (!cut) {
        push_buf_json_str(b, s, keep);
        return;
    }
    /* the kept prefix and the ellipsis, as one JSON string */
    push_buf_t tmp = {0};
    push_buf_add(&tmp, s, keep);
    push_buf_add(&tmp, ELLIPSIS, ELLIPSIS_LEN);
    if (tmp.overflow)
        b->overflow = true;
    else
        push_buf_json_str(b, tmp.data, tmp.len);
    push_buf_free(&tmp);
}

typedef size_t (*measure_fn)(void *ctx, const keep_t *k);

/* The largest keep of one text (body or title) that fits, by binary search
 * over UTF-8 boundaries; returns false when not even an empty cut fits. */
static bool fit_one(measure_fn m, void *ctx, keep_t *k, bool title, const char *s, size_t len,
                    size_t max)
{
    size_t lo = 0, hi = len; /* candidates: utf8_cut(s, len, x) for x in [lo, hi] */
    keep_t t = *k;
    bool *cut = title ? &t.title_cut : &t.body_cut;
    size_t *keep = title ? &t.title_keep : &t.body_keep;
    *cut = true;
    *keep = 0;
    if (m(ctx, &t) > max)
        return false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        *keep = push_utf8_cut(s, len, mid);
        if (m(ctx, &t) <= max)
            lo = mid;
        else
            hi = mid - 1;
    }
    *keep = push_utf8_cut(s, len, lo);
    *k = t;
    return true;
}

/* Full texts if they fit; else the body shortened; else the body reduced to
 * the ellipsis and the title shortened. */
static int fit(measure_fn m, void *ctx, const char *title, const char *body, size_t max, keep_t *k,
               char *err, size_t errlen)
{
    size_t tl = strlen(title), bl = strlen(body);
    *k = (keep_t){.body_keep = bl, .title_keep = tl};
    if (m(ctx, k) <= max)
        return 0;
    if (bl > 0 && fit_one(m, ctx, k, false, body, bl, max))
        return 0;
    if (bl > 0)
        *k = (keep_t){.body_keep = 0, .body_cut = true, .title_keep = tl};
    if (tl > 0 && fit_one(m, ctx, k, true, title, tl, max))
        return 0;
    snprintf(err, errlen,
             "payload over %zu bytes even with the title and body shortened (custom data too "
             "large)",
             max);
    return -1;
}

/* ---- custom data --------------------------------------------------------- */

static bool reserved_apns_key(const char *k)
{
    static const char *const r[] = {"aps",        "conversation_id", "sender_id",
                                    "message_id", "seq_id",          NULL};
    for (int i = 0; r[i]; i++) {
        if (strcmp(k, r[i]) == 0)
            return true;
    }
    return false;
}

/* FCM refuses these data keys (from, gcm*, google*) or uses them itself. */
static bool reserved_fcm_key(const char *k)
{
    return strcmp(k, "from") == 0 || strcmp(k, "message_type") == 0 || strncmp(k, "gcm", 3) == 0 ||
           strncmp(k, "google", 6) == 0 || strcmp(k, "conversation_id") == 0 ||
           strcmp(k, "sender_id") == 0 || strcmp(k, "message_id") == 0 || strcmp(k, "seq_id") == 0;
}

/* True when data entry i repeats the key of an earlier entry. */
static bool dup_key(const Imtask__V1__PushNotification *n, size_t i)
{
    for (size_t j = 0; j < i; j++) {
        if (strcmp(str_or_empty(n->data[j]->key), str_or_empty(n->data[i]->key)) == 0)
            return true;
    }
    return false;
}

/* ---- APNs ---------------------------------------------------------------- */

typedef struct {
    const Imtask__V1__PushNotification *n;
    const push_apns_opts_t *o;
    push_buf_t *out;
} apns_ctx_t;

static void apns_build(const apns_ctx_t *c, const keep_t *k)
{
    const Imtask__V1__PushNotification *n = c->n;
    push_buf_t *b = c->out;
    const char *title = str_or_empty(n->title), *body = str_or_empty(n->body);
    bool first = true, afirst = true;
    bool alert = title[0] || body[0];

    push_buf_reset(b);
    push_buf_str(b, "{\"aps\":{");
    if (alert) {
        buf_key(b, &first, "alert");
        push_buf_add(b, "{", 1);
        if (title[0]) {
            buf_key(b, &afirst, "title");
            buf_text(b, title, k->title_keep, k->title_cut);
        }
        if (body[0]) {
            buf_key(b, &afirst, "body");
            buf_text(b, body, k->body_keep, k->body_cut);
        }
        push_buf_add(b, "}", 1);
    }
    if (n->badge_set_case == IMTASK__V1__PUSH_NOTIFICATION__BADGE_SET_BADGE) {
        buf_key(b, &first, "badge");
        buf_fmt(b, "%" PRId64, n->badge);
    }
    if (n->sound && n->sound[0]) {
        buf_key(b, &first, "sound");
        buf_jstr(b, n->sound);
    }
    if (n->conversation_id && n->conversation_id[0]) {
        buf_key(b, &first, "thread-id");
        buf_jstr(b, n->conversation_id);
    }
    if (c->o->content_available || !alert) {
        buf_key(b, &first, "content-available");
        push_buf_add(b, "1", 1);
    }
    push_buf_add(b, "}", 1);
    first = false;
    if (n->conversation_id && n->conversation_id[0]) {
        buf_key(b, &first, "conversation_id");
        buf_jstr(b, n->conversation_id);
    }
    if (n->sender_id && n->sender_id[0]) {
        buf_key(b, &first, "sender_id");
        buf_jstr(b, n->sender_id);
    }
    if (n->message_id && n->message_id[0]) {
        buf_key(b, &first, "message_id");
        buf_jstr(b, n->message_id);
    }
    if (n->seq_id) {
        buf_key(b, &first, "seq_id");
        buf_fmt(b, "%" PRId64, n->seq_id);
    }
    for (size_t i = 0; i < n->n_data; i++) {
        const char *key = str_or_empty(n->data[i]->key);
        if (!key[0] || reserved_apns_key(key) || dup_key(n, i))
            continue;
        buf_key(b, &first, key);
        buf_jstr(b, str_or_empty(n->data[i]->value));
    }
    push_buf_add(b, "}", 1);
}

static size_t apns_measure(void *ctx, const keep_t *k)
{
    const apns_ctx_t *c = ctx;
    apns_build(c, k);
    return c->out->overflow ? SIZE_MAX : c->out->len;
}

int push_payload_apns(const Imtask__V1__PushNotification *n, const push_apns_opts_t *o,
                      push_buf_t *out, push_fit_t *fit_out, char *err, size_t errlen)
{
    apns_ctx_t c = {n, o, out};
    keep_t k;
    if (fit(apns_measure, &c, str_or_empty(n->title), str_or_empty(n->body), o->max_bytes, &k, err,
            errlen))
        return -1;
    apns_build(&c, &k);
    if (fit_out)
        *fit_out = (push_fit_t){k.body_cut || k.title_cut, k.body_keep, k.title_keep};
    return 0;
}

/* ---- FCM ----------------------------------------------------------------- */

typedef struct {
    const Imtask__V1__PushNotification *n;
    size_t data_bytes; /* keys and values of the data block */
} fcm_ctx_t;

/* FCM counts the raw bytes of the notification texts and the data keys
 * and values. */
static size_t fcm_measure(void *ctx, const keep_t *k)
{
    const fcm_ctx_t *c = ctx;
    return c->data_bytes + k->title_keep + (k->title_cut ? ELLIPSIS_LEN : 0) + k->body_keep +
           (k->body_cut ? ELLIPSIS_LEN : 0);
}

static void fcm_data_kv(push_buf_t *b, bool *first, const char *key, const char *val, size_t *bytes)
{
    if (b) {
        buf_key(b, first, key);
        buf_jstr(b, val);
    }
    *bytes += strlen(key) + strlen(val);
}

/* Writes the data block into b (when not NULL); returns its raw size. */
static size_t fcm_data(const Imtask__V1__PushNotification *n, push_buf_t *b)
{
    size_t bytes = 0;
    bool first = true;
    char seq[32];
    if (n->conversation_id && n->conversation_id[0])
        fcm_data_kv(b, &first, "conversation_id", n->conversation_id, &bytes);
    if (n->sender_id && n->sender_id[0])
        fcm_data_kv(b, &first, "sender_id", n->sender_id, &bytes);
    if (n->message_id && n->message_id[0])
        fcm_data_kv(b, &first, "message_id", n->message_id, &bytes);
    if (n->seq_id) {
        snprintf(seq, sizeof(seq), "%" PRId64, n->seq_id);
        fcm_data_kv(b, &first, "seq_id", seq, &bytes);
    }
    for (size_t i = 0; i < n->n_data; i++) {
        const char *key = str_or_empty(n->data[i]->key);
        if (!key[0] || reserved_fcm_key(key) || dup_key(n, i))
            continue;
        fcm_data_kv(b, &first, key, str_or_empty(n->data[i]->value), &bytes);
    }
    return bytes;
}

int push_payload_fcm(const Imtask__V1__PushNotification *n, const push_fcm_opts_t *o,
                     push_fcm_msg_t *out, push_fit_t *fit_out, char *err, size_t errlen)
{
    fcm_ctx_t c = {n, fcm_data(n, NULL)};
    const char *title = str_or_empty(n->title), *body = str_or_empty(n->body);
    const char *cid = o->collapse_id ? o->collapse_id : "";
    bool badge = n->badge_set_case == IMTASK__V1__PUSH_NOTIFICATION__BADGE_SET_BADGE;
    bool sound = n->sound && n->sound[0];
    bool first, f2, f3;
    keep_t k;
    push_buf_t *b = &out->suffix;

    if (fit(fcm_measure, &c, title, body, o->max_bytes, &k, err, errlen))
        return -1;
    push_buf_reset(&out->prefix);
    push_buf_reset(b);
    push_buf_str(&out->prefix, "{\"message\":{\"token\":");

    first = false; /* the token comes first */
    if (title[0] || body[0]) {
        buf_key(b, &first, "notification");
        push_buf_add(b, "{", 1);
        f2 = true;
        if (title[0]) {
            buf_key(b, &f2, "title");
            buf_text(b, title, k.title_keep, k.title_cut);
        }
        if (body[0]) {
            buf_key(b, &f2, "body");
            buf_text(b, body, k.body_keep, k.body_cut);
        }
        push_buf_add(b, "}", 1);
    }
    if (c.data_bytes > 0) {
        buf_key(b, &first, "data");
        push_buf_add(b, "{", 1);
        fcm_data(n, b);
        push_buf_add(b, "}", 1);
    }

    /* android: priority, ttl, collapse key, sound, tag, count */
    buf_key(b, &first, "android");
    push_buf_add(b, "{", 1);
    f2 = true;
    buf_key(b, &f2, "priority");
    buf_jstr(b, o->high_priority ? "HIGH" : "NORMAL");
    if (o->ttl_set) {
        buf_key(b, &f2, "ttl");
        buf_fmt(b, "\"%" PRId64 "s\"", o->ttl_seconds < 0 ? 0 : o->ttl_seconds);
    }
    if (cid[0]) {
        buf_key(b, &f2, "collapse_key");
        buf_jstr(b, cid);
    }
    if (sound || cid[0] || badge) {
        buf_key(b, &f2, "notification");
        push_buf_add(b, "{", 1);
        f3 = true;
        if (sound) {
            buf_key(b, &f3, "sound");
            buf_jstr(b, n->sound);
        }
        if (cid[0]) {
            buf_key(b, &f3, "tag");
            buf_jstr(b, cid);
        }
        if (badge) {
            buf_key(b, &f3, "notification_count");
            buf_fmt(b, "%" PRId64, n->badge);
        }
        push_buf_add(b, "}", 1);
    }
    push_buf_add(b, "}", 1);

    /* apns: the headers and the aps fields FCM does not fill itself */
    buf_key(b, &first, "apns");
    push_buf_str(b, "{\"headers\":{");
    f2 = true;
    buf_key(b, &f2, "apns-priority");
    buf_jstr(b, o->high_priority ? "10" : "5");
    if (o->ttl_set) {
        buf_key(b, &f2, "apns-expiration");
        buf_fmt(b, "\"%" PRId64 "\"", o->apns_expiration_s);
    }
    if (cid[0]) {
        buf_key(b, &f2, "apns-collapse-id");
        buf_jstr(b, cid);
    }
    push_buf_str(b, "},\"payload\":{\"aps\":{");
    f3 = true;
    if (badge) {
        buf_key(b, &f3, "badge");
        buf_fmt(b, "%" PRId64, n->badge);
    }
    if (sound) {
        buf_key(b, &f3, "sound");
        buf_jstr(b, n->sound);
    }
    if (n->conversation_id && n->conversation_id[0]) {
        buf_key(b, &f3, "thread-id");
        buf_jstr(b, n->conversation_id);
    }
    if (!title[0] && !body[0]) {
        buf_key(b, &f3, "content-available");
        push_buf_add(b, "1", 1);
    }
    push_buf_str(b, "}}}}}");
    if (out->prefix.overflow || b->overflow) {
        snprintf(err, errlen, "FCM message over %d bytes", PUSH_JSON_MAX);
        return -1;
    }
    if (fit_out)
        *fit_out = (push_fit_t){k.body_cut || k.title_cut, k.body_keep, k.title_keep};
    return 0;
}

void push_fcm_msg_free(push_fcm_msg_t *m)
{
    push_buf_free(&m->prefix);
    push_buf_free(&m->suffix);
}

void push_fcm_body(const push_fcm_msg_t *m, const char *token, push_buf_t *out)
{
    push_buf_reset(out);
    push_buf_add(out, m->prefix.data, m->prefix.len);
    buf_jstr(out, token);
    push_buf_add(out, m->suffix.data, m->suffix.len);
}
