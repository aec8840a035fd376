/* internal.h: what the parts of pbjson share (not installed, see pbjson.c): the walk
 * context that knows the JSON path and writes errors, and field-kind helpers. */
#ifndef PBJSON_INTERNAL_H
#define PBJSON_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "pbjson/pbjson.h"

#define PBJSON_PATH_MAX 200

/* Where we are (a JSON path like "$.items[2].name") and where errors go. */
typedef struct {
    char *err;
    size_t errlen;
    char path[PBJSON_PATH_MAX];
    size_t pathlen;
} pbjson_ctx_t;

/* Start at "$"; err may be NULL (errors are then only returned). */
void pbjson_ctx_init(pbjson_ctx_t *c, char *err, size_t errlen);

/* Append to the path (cut when full); returns the length to restore. */
size_t pbjson_path_push(pbjson_ctx_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pbjson_path_pop(pbjson_ctx_t *c, size_t saved);

/* Write "<path>: <message>" into the error buffer; returns e. */
pbjson_err_t pbjson_fail(pbjson_ctx_t *c, pbjson_err_t e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Bytes one element of a repeated field of this type takes in its array
 * (0 for a type this library does not know). */
size_t pbjson_type_size(ProtobufCType t);

/* True when f (a field of parent) is a map<K, V>. */
bool pbjson_is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f);

#endif
