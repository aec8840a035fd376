/* tc3.h: Tencent Cloud API 3.0 request signing (TC3-HMAC-SHA256), for the
 * Tencent-shaped provider; separate so tests can check it against vectors. */
#ifndef AUDIT_TC3_H
#define AUDIT_TC3_H

#include <stddef.h>
#include <stdint.h>

/* The Authorization header value of a POST to https://<host>/ with this body,
 * the headers content-type (content_type) and host signed, plus
 * x-tc-action (lower-cased action) when action is not NULL:
 *   TC3-HMAC-SHA256 Credential=<id>/<date>/<service>/tc3_request,
 *   SignedHeaders=content-type;host[;x-tc-action], Signature=<hex>
 * date is the UTC date of timestamp (seconds). Returns 0, or -1 when out is
 * too small. */
int audit_tc3_authorization(const char *secret_id, const char *secret_key, const char *service,
                            const char *host, const char *action, const char *content_type,
                            int64_t timestamp, const char *body, size_t body_len, char *out,
                            size_t outlen);

#endif
