/* pbjson.c: pbjson's error strings, walk context (JSON path, errors) and field-kind
 * helpers shared by parse.c (JSON -> message) and print.c (message -> JSON). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const char *const pbjson_err_strs[] = {
    [PBJSON_OK] = "success",
    [PBJSON_ERR_INVALID] = "invalid argument",
    [PBJSON_ERR_TOO_LARGE] = "input too large",
    [PBJSON_ERR_SYNTAX] = "not valid JSON",
    [PBJSON_ERR_UNKNOWN_FIELD] = "unknown field",
    [PBJSON_ERR_TYPE] = "wrong type or out of range",
    [PBJSON_ERR_DEPTH] = "nested too deep",
    [PBJSON_ERR_UNSUPPORTED] = "not supported",
    [PBJSON_ERR_NOMEM] = "out of memory",
    [PBJSON_ERR_DECODE] = "not a valid protobuf encoding",
};

const char *pbjson_err_str(pbjson_err_t err)
{
    if ((size_t)err >= sizeof(pbjson_err_strs) / sizeof(pbjson_err_strs[0]) ||
        !pbjson_err_strs[err])
        return "unknown error";
    return pbjson_err_strs[err];
}

void pbjson_ctx_init(pbjson_ctx_t *c, char *err, size_t errlen)
{
    c->err = err;
    c->errlen = err ? errlen : 0;
    if (c->errlen)
        c->err[0] = '\0';
    snprintf(c->path, sizeof(c->path), "$");
    c->pathlen = 1;
}

size_t pbjson_path_push(pbjson_ctx_t *c, const char *fmt, ...)
{
    size_t saved = c->pathlen;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->path + c->pathlen, sizeof(c->path) - c->pathlen, fmt, ap);
    va_end(ap);
    c->pathlen += strlen(c->path + c->pathlen);
    return saved;
}

void pbjson_path_pop(pbjson_ctx_t *c, size_t saved)
{
    c->pathlen = saved;
    c->path[saved] = '\0';
}

pbjson_err_t pbjson_fail(pbjson_ctx_t *c, pbjson_err_t e, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (!c->errlen)
        return e;
    n = snprintf(c->err, c->errlen, "%s: ", c->path);
    if (n < 0 || (size_t)n >= c->errlen)
        return e;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return e;
}

/* Bytes one element of a repeated field of this type takes in its array. */
size_t pbjson_type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return sizeof(int32_t);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return sizeof(uint32_t);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return sizeof(int64_t);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* protoc turns `map<K, V> foo_bar = n;` into a repeated message Parent.FooBarEntry
 * nested in the parent, with fields key = 1 and value = 2. */
bool pbjson_is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *ed;
    size_t plen, nlen;
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    ed = f->descriptor;
    plen = strlen(parent->name);
    nlen = strlen(ed->short_name);
    return nlen > 5 && strcmp(ed->short_name + nlen - 5, "Entry") == 0 &&
           strncmp(ed->name, parent->name, plen) == 0 && ed->name[plen] == '.' &&
           ed->n_fields == 2 && ed->fields[0].id == 1 && strcmp(ed->fields[0].name, "key") == 0 &&
           ed->fields[1].id == 2 && strcmp(ed->fields[1].name, "value") == 0;
}

void pbjson_message_free(ProtobufCMessage **mp)
{
    if (!mp || !*mp)
        return;
    protobuf_c_message_free_unpacked(*mp, NULL);
    *mp = NULL;
}
