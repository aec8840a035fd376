/* wire.h: gRPC's wire details, free of I/O so they can be unit tested:
 * the length-prefixed message parser, grpc-timeout, grpc-status and
 * grpc-message decoding, HTTP and RST_STREAM codes mapped to gRPC codes. */
#ifndef REPOCLIENT_WIRE_H
#define REPOCLIENT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "repoclient/repoclient.h"

#define WIRE_PREFIX 5 /* flag byte + 4-byte big-endian length */

typedef enum {
    WIRE_OK = 0,
    WIRE_TOO_LARGE = 1,  /* announced length over the maximum */
    WIRE_COMPRESSED = 2, /* flag 1: we never negotiate compression */
    WIRE_BAD_FLAG = 3,   /* flag other than 0 or 1 */
    WIRE_TOO_MANY = 4,   /* a second message where one was expected */
    WIRE_NOMEM = 5,
    WIRE_TRUNCATED = 6, /* the stream ended inside a message */
} wire_err_t;

/* Incremental parser of one stream's messages: feed bytes as they come, in
 * any cut. A length is checked against max_len before anything is
 * allocated; the buffer is exactly the announced size. At most one message
 * is accepted (unary calls). */
typedef struct {
    uint8_t hdr[WIRE_PREFIX];
    size_t hdr_have;
    uint8_t *msg; /* the message being read, or the complete one */
    size_t msg_len;
    size_t msg_have;
    size_t max_len;
    int nmsgs;      /* complete messages */
    wire_err_t err; /* sticky */
} wire_parser_t;

void wire_parser_init(wire_parser_t *p, size_t max_len);
void wire_parser_reset(wire_parser_t *p); /* frees; back to init state */
/* Returns WIRE_OK or the (sticky) error. */
wire_err_t wire_parser_feed(wire_parser_t *p, const uint8_t *data, size_t len);
/* At end of stream: WIRE_TRUNCATED when inside a message. */
wire_err_t wire_parser_finish(const wire_parser_t *p);
/* The complete message (NULL, 0 when none). Ownership moves to the caller
 * (free()) with take; the parser forgets it. */
uint8_t *wire_parser_take(wire_parser_t *p, size_t *len);
const char *wire_err_str(wire_err_t e);

/* Frame a message: out gets WIRE_PREFIX + len bytes (malloc'd). */
uint8_t *wire_frame(const uint8_t *msg, size_t len, size_t *outlen);

/* grpc-timeout for ms milliseconds ("<= 8 digits><unit>"), out >= 16 bytes. */
void wire_timeout_format(int64_t ms, char *out, size_t outlen);
/* Parse grpc-timeout into ms (rounded up); -1 when malformed. */
int64_t wire_timeout_parse(const char *s);

/* grpc-status: decimal 0..99 only; -1 otherwise. */
int wire_status_parse(const char *s, size_t len);
/* Decode percent-encoding into out (NUL-terminated, cut to outlen); bad
 * escapes are kept as they are. */
void wire_percent_decode(const char *s, size_t len, char *out, size_t outlen);
/* gRPC's mapping of an HTTP status without grpc-status. */
repo_err_t wire_http_to_grpc(int http_status);
/* gRPC's mapping of an HTTP/2 RST_STREAM / GOAWAY error code. */
repo_err_t wire_h2_to_grpc(uint32_t h2_error);

#endif
