/* pbjson.h: JSON <-> protobuf-c messages through descriptor reflection only
 * (the basics of the proto3 JSON mapping), for tools that take or show
 * payloads as JSON without per-message code.
 *
 * Mapping (JSON -> message):
 * - object keys are the field names of the .proto ("task_id"); the lowerCamel
 *   JSON names ("taskId") are accepted too. An unknown key is an error naming
 *   the key and the message type. A key given twice is an error. null leaves
 *   the field at its default.
 * - string: JSON string. bool: true/false.
 * - int32/sint32/sfixed32/uint32/fixed32: a JSON number with no fraction, or
 *   a decimal string, within the range of the type.
 * - int64/sint64/sfixed64/uint64/fixed64: a decimal string, or a JSON number
 *   when its magnitude is at most 2^53 (a double holds no more exactly).
 * - float/double: a JSON number, a numeric string, "NaN", "Infinity",
 *   "-Infinity".
 * - enum: the value name ("PRIORITY_HIGH") or its number.
 * - bytes: base64 (standard or URL-safe alphabet, padding optional).
 * - repeated: a JSON array; message: a JSON object; map<K, V>: a JSON object
 *   whose keys are the map keys as text.
 * - oneof: at most one member of a oneof may be given.
 * Well-known types (Timestamp, Duration, wrappers, Struct, Any) get no special
 * form: they read and print as ordinary messages.
 *
 * Message -> JSON uses the .proto field names, omits fields at their default
 * (unless PBJSON_EMIT_DEFAULTS), prints 64-bit integers as strings, enums by
 * name (by number when the value has no name), bytes as standard base64.
 *
 * Bounds: input at most PBJSON_MAX_INPUT bytes, messages nested at most
 * PBJSON_MAX_DEPTH deep (the top-level message is depth 1), both ways.
 *
 * Ownership: messages made here are allocated with the system allocator
 * exactly as protobuf_c_message_unpack(desc, NULL, ...) would allocate them;
 * free them with pbjson_message_free() or protobuf_c_message_free_unpacked(m,
 * NULL). JSON text returned is malloc'd; free() it. Thread-safe: no state.
 */
#ifndef PBJSON_PBJSON_H
#define PBJSON_PBJSON_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define PBJSON_MAX_DEPTH 16
#define PBJSON_MAX_INPUT (1024 * 1024)
#define PBJSON_ERR_MAX 512 /* an error buffer of this size never cuts a message */

typedef enum {
    PBJSON_OK = 0,
    PBJSON_ERR_INVALID = 1,       /* a NULL or inconsistent argument */
    PBJSON_ERR_TOO_LARGE = 2,     /* input longer than PBJSON_MAX_INPUT */
    PBJSON_ERR_SYNTAX = 3,        /* the text is not JSON */
    PBJSON_ERR_UNKNOWN_FIELD = 4, /* a key that names no field of the message */
    PBJSON_ERR_TYPE = 5,          /* a value of the wrong JSON type, or out of range */
    PBJSON_ERR_DEPTH = 6,         /* messages nested deeper than PBJSON_MAX_DEPTH */
    PBJSON_ERR_UNSUPPORTED = 7,   /* a field kind this library does not map */
    PBJSON_ERR_NOMEM = 8,
    PBJSON_ERR_DECODE = 9, /* protobuf bytes that do not unpack */
} pbjson_err_t;

/* Flags of pbjson_from_message. */
enum {
    PBJSON_PRETTY = 1 << 0,        /* indented, one field a line */
    PBJSON_EMIT_DEFAULTS = 1 << 1, /* print fields at their default value too */
};

/* A short, fixed description of err ("unknown field", ...). */
const char *pbjson_err_str(pbjson_err_t err);

/* Parse len bytes of JSON (no NUL needed) into a new message of type d. On
 * success returns PBJSON_OK and sets *out (free with pbjson_message_free). On
 * failure *out is untouched and err says what was wrong and where, e.g.
 *   "$.items[2].count: field imtask.v1.Item.count: expected uint32 (a JSON
 *    number or a decimal string), got string \"ten\"". */
pbjson_err_t pbjson_to_message(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                               ProtobufCMessage **out, char *err, size_t errlen);

/* Same, then packed: *out is a malloc'd protobuf encoding (free()), *outlen
 * its length (0 is valid: a message at all defaults packs to nothing). */
pbjson_err_t pbjson_json_to_packed(const ProtobufCMessageDescriptor *d, const char *json,
                                   size_t len, uint8_t **out, size_t *outlen, char *err,
                                   size_t errlen);

/* Print m as JSON (flags: PBJSON_PRETTY, PBJSON_EMIT_DEFAULTS). On success
 * *out is a malloc'd NUL-terminated string (free()). */
pbjson_err_t pbjson_from_message(const ProtobufCMessage *m, unsigned flags, char **out, char *err,
                                 size_t errlen);

/* Unpack len bytes as a message of type d and print it as JSON. */
pbjson_err_t pbjson_packed_to_json(const ProtobufCMessageDescriptor *d, const uint8_t *data,
                                   size_t len, unsigned flags, char **out, char *err,
                                   size_t errlen);

/* Free a message made by pbjson_to_message; sets *mp to NULL; NULL no-op. */
void pbjson_message_free(ProtobufCMessage **mp);

#endif
