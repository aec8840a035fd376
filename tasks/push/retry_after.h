/* retry_after.h: the HTTP Retry-After header (RFC 9110 10.2.3): a number of
 * seconds, or an HTTP-date (IMF-fixdate, and the obsolete RFC 850 and
 * asctime forms recipients must accept). */
#ifndef PUSH_RETRY_AFTER_H
#define PUSH_RETRY_AFTER_H

#include <stdint.h>

#define PUSH_RETRY_AFTER_MAX_MS (24LL * 3600 * 1000) /* longer values are cut to this */

/* The wait a Retry-After value asks for, in ms from now_ms (Unix ms): a date
 * in the past is 0. Returns 0 and sets *delay_ms, or -1 when the value is
 * neither form (the header is then ignored). */
int push_retry_after_parse(const char *value, int64_t now_ms, int64_t *delay_ms);

/* An HTTP-date in IMF-fixdate form for Unix seconds t, out >= 30 bytes (for
 * the tests and the doubles' peers). */
void push_http_date(int64_t t, char *out);

#endif
