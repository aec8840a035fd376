/* jsonutil.h: small JSON helpers the providers share: a bounded growable
 * buffer, JSON string escaping, dotted-path lookup in a cJSON tree, base64. */
#ifndef AUDIT_JSONUTIL_H
#define AUDIT_JSONUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* A growable buffer that never grows past max bytes (NUL included). */
typedef struct {
    char *data; /* NUL-terminated; NULL until something is appended */
    size_t len, cap, max;
    bool overflow; /* an append did not fit: the content is incomplete */
} audit_buf_t;

void audit_buf_init(audit_buf_t *b, size_t max);
int audit_buf_append(audit_buf_t *b, const char *s, size_t n); /* 0, or -1 (overflow/nomem) */
int audit_buf_puts(audit_buf_t *b, const char *s);
/* Append s (n bytes) as a JSON string literal with its quotes; invalid UTF-8
 * bytes become U+FFFD so the output is always valid JSON. */
int audit_buf_json_string(audit_buf_t *b, const char *s, size_t n);
/* Hand the data over (caller frees); the buffer is empty afterwards. */
char *audit_buf_take(audit_buf_t *b, size_t *len);
void audit_buf_free(audit_buf_t *b);

/* Look up "a.b[2].c" (object keys separated by '.', array indexes in
 * brackets; keys are case-sensitive; a key holding '.' cannot be named).
 * Returns the node or NULL when any step is missing or of the wrong type. An
 * empty path is the root. */
const cJSON *audit_json_path(const cJSON *root, const char *path);
/* The string at path copied into out (cut to fit), or -1. Numbers are
 * printed (%.17g) so an id given as a number is accepted. */
int audit_json_path_str(const cJSON *root, const char *path, char *out, size_t outlen);

/* Base64 (RFC 4648 with padding) of n bytes: malloc'd, NUL-terminated. */
char *audit_base64(const void *data, size_t n);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void audit_hex(const unsigned char *in, size_t n, char *out);

/* Copy at most outlen-1 bytes of s, never cutting a UTF-8 sequence. */
void audit_copy_utf8(char *out, size_t outlen, const char *s);

#endif
