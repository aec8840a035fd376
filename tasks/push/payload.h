/* payload.h: the JSON the providers get: the APNs payload and the FCM HTTP v1
 * message, built from a PushNotification, within the providers' size limits.
 *
 * Too long: the body text is shortened on a UTF-8 code point boundary and
 * ends with an ellipsis (U+2026); the JSON itself is never cut. When even an
 * empty body does not fit, the title is shortened the same way; when that
 * does not fit either (custom data too large), building fails.
 *
 * Strings are escaped as JSON requires; bytes that are not valid UTF-8 become
 * U+FFFD, so the output is always valid JSON in valid UTF-8.
 */
#ifndef PUSH_PAYLOAD_H
#define PUSH_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/push.pb-c.h"

#define PUSH_APNS_MAX_PAYLOAD 4096 /* bytes of the JSON body (VoIP: 5120) */
#define PUSH_APNS_MAX_PAYLOAD_VOIP 5120
#define PUSH_FCM_MAX_PAYLOAD 4096 /* title + body + data keys and values */
#define PUSH_COLLAPSE_ID_MAX 64   /* apns-collapse-id bytes */
#define PUSH_JSON_MAX (64 * 1024) /* no payload we build is larger */

/* A growing buffer with a maximum size (PUSH_JSON_MAX). */
typedef struct {
    char *data;
    size_t len, cap;
    bool overflow; /* something did not fit: the content is incomplete */
} push_buf_t;

void push_buf_reset(push_buf_t *b);
void push_buf_free(push_buf_t *b);
void push_buf_add(push_buf_t *b, const void *p, size_t n);
void push_buf_str(push_buf_t *b, const char *s);
/* s (n bytes) as a JSON string with its quotes; invalid UTF-8 -> U+FFFD. */
void push_buf_json_str(push_buf_t *b, const char *s, size_t n);

/* The largest n <= max such that s[0..n) does not end inside a UTF-8
 * sequence (continuation bytes are never split from their lead byte). */
size_t push_utf8_cut(const char *s, size_t len, size_t max);

/* Bytes the JSON string form of s takes, quotes included. */
size_t push_json_str_len(const char *s, size_t n);

/* The collapse id for a notification: collapse_key, else the message id
 * (so that a notification pushed twice replaces itself on the device
 * instead of showing twice); longer than 64 bytes: its SHA-256 in hex (64
 * chars). "" when neither is set. out >= PUSH_COLLAPSE_ID_MAX + 1 bytes. */
void push_collapse_id(const Imtask__V1__PushNotification *n, char *out);

typedef struct {
    size_t max_bytes;       /* PUSH_APNS_MAX_PAYLOAD or ..._VOIP */
    bool content_available; /* "content-available":1 (background push) */
} push_apns_opts_t;

typedef struct {
    bool truncated;     /* body (or title) text was shortened */
    size_t body_bytes;  /* bytes of the body text kept */
    size_t title_bytes; /* bytes of the title kept */
} push_fit_t;

/* The APNs payload ({"aps":{...}, custom keys}) into out (reset first).
 * Returns 0, or -1 when it cannot fit (err says why). */
int push_payload_apns(const Imtask__V1__PushNotification *n, const push_apns_opts_t *o,
                      push_buf_t *out, push_fit_t *fit, char *err, size_t errlen);

typedef struct {
    size_t max_bytes;   /* PUSH_FCM_MAX_PAYLOAD */
    bool high_priority; /* android.priority HIGH / apns-priority 10 */
    bool ttl_set;       /* android.ttl and apns-expiration */
    int64_t ttl_seconds;
    int64_t apns_expiration_s; /* Unix seconds for the apns block (0: now or never) */
    const char *collapse_id;   /* "" or NULL: none */
} push_fcm_opts_t;

/* The FCM v1 request body without the token: the body of a request for
 * token T is prefix + JSON string of T + suffix (push_fcm_body). Returns 0,
 * or -1 when it cannot fit. */
typedef struct {
    push_buf_t prefix, suffix;
} push_fcm_msg_t;

int push_payload_fcm(const Imtask__V1__PushNotification *n, const push_fcm_opts_t *o,
                     push_fcm_msg_t *out, push_fit_t *fit, char *err, size_t errlen);
void push_fcm_msg_free(push_fcm_msg_t *m);
/* The whole body for one token into out (reset first). */
void push_fcm_body(const push_fcm_msg_t *m, const char *token, push_buf_t *out);

#endif
