/* print.c: protobuf-c message -> JSON (pbjson_from_message, pbjson_packed_to_json). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char pbjson_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *pbjson_b64_encode(const uint8_t *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1), *p;
    if (!out)
        return NULL;
    p = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *p++ = pbjson_b64[(v >> 18) & 63];
        *p++ = pbjson_b64[(v >> 12) & 63];
        *p++ = i + 1 < len ? pbjson_b64[(v >> 6) & 63] : '=';
        *p++ = i + 2 < len ? pbjson_b64[v & 63] : '=';
    }
    *p = '\0';
    return out;
}

/* The shortest decimal that reads back as the same float, as a double (so
 * 0.1f prints as 0.1, not 0.10000000149011612). */
static double pbjson_float_short(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f)
            break;
    }
    return strtod(buf, NULL);
}

static cJSON *pbjson_double_json(double x)
{
    if (isnan(x))
        return cJSON_CreateString("NaN");
    if (isinf(x))
        return cJSON_CreateString(x > 0 ? "Infinity" : "-Infinity");
    return cJSON_CreateNumber(x);
}

static pbjson_err_t pbjson_write_message(pbjson_ctx_t *c, const ProtobufCMessage *m, unsigned flags,
                                         int depth, cJSON **out);

/* The JSON of the value of field f stored at src. */
static pbjson_err_t pbjson_write_value(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                       const ProtobufCFieldDescriptor *f, const void *src,
                                       unsigned flags, int depth, cJSON **out)
{
    char num[32];
    cJSON *v = NULL;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        v = cJSON_CreateNumber(*(const int32_t *)src);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        v = cJSON_CreateNumber(*(const uint32_t *)src);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(num, sizeof(num), "%" PRId64, *(const int64_t *)src);
        v = cJSON_CreateString(num);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(num, sizeof(num), "%" PRIu64, *(const uint64_t *)src);
        v = cJSON_CreateString(num);
        break;
    case PROTOBUF_C_TYPE_FLOAT: {
        float x = *(const float *)src;
        v = isfinite(x) ? cJSON_CreateNumber(pbjson_float_short(x)) : pbjson_double_json(x);
        break;
    }
    case PROTOBUF_C_TYPE_DOUBLE:
        v = pbjson_double_json(*(const double *)src);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        v = cJSON_CreateBool(*(const protobuf_c_boolean *)src != 0);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        int x = *(const int *)src;
        for (unsigned i = 0; i < ed->n_values && !v; i++) {
            if (ed->values[i].value == x)
                v = cJSON_CreateString(ed->values[i].name);
        }
        if (!v)
            v = cJSON_CreateNumber(x);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)src;
        v = cJSON_CreateString(s ? s : "");
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = src;
        char *b64 = pbjson_b64_encode(bd->data, bd->data ? bd->len : 0);
        if (!b64)
            return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
        v = cJSON_CreateString(b64);
        free(b64);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)src;
        if (!sub) {
            v = cJSON_CreateObject();
            break;
        }
        return pbjson_write_message(c, sub, flags, depth + 1, out);
    }
    default:
        return pbjson_fail(c, PBJSON_ERR_UNSUPPORTED, "field %s.%s: field type %d not supported",
                           d->name, f->name, (int)f->type);
    }
    if (!v)
        return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
    *out = v;
    return PBJSON_OK;
}

/* True when a singular field holds something other than its default. */
static bool pbjson_field_present(const ProtobufCFieldDescriptor *f, const char *base)
{
    const void *p = base + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(ProtobufCMessage *const *)p != NULL;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const char *s = *(char *const *)p;
            return s && s != f->default_value;
        }
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT: {
        uint32_t bits; /* +0.0f is all zero bits; -0.0f is printed */
        memcpy(&bits, p, sizeof(bits));
        return bits != 0;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: {
        uint64_t bits;
        memcpy(&bits, p, sizeof(bits));
        return bits != 0;
    }
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p != 0;
    case PROTOBUF_C_TYPE_ENUM:
        return *(const int *)p != 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && s[0];
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    default:
        return true;
    }
}

/* The text of a map key (the key field of an Entry message). */
static void pbjson_map_key(const ProtobufCFieldDescriptor *kf, const ProtobufCMessage *entry,
                           char *buf, size_t len)
{
    const void *p = (const char *)entry + kf->offset;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        snprintf(buf, len, "%s", s ? s : "");
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        snprintf(buf, len, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(buf, len, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(buf, len, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, len, "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p);
        break;
    default:
        snprintf(buf, len, "?");
        break;
    }
}

/* The JSON object of a map field. */
static pbjson_err_t pbjson_write_map(pbjson_ctx_t *c, const ProtobufCFieldDescriptor *f,
                                     const char *base, unsigned flags, int depth, cJSON **out)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t n = *(const size_t *)(base + f->quantifier_offset);
    ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
    cJSON *obj = cJSON_CreateObject();
    pbjson_err_t e = PBJSON_OK;

    if (!obj)
        return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
    if (depth + 1 > PBJSON_MAX_DEPTH) {
        e = pbjson_fail(c, PBJSON_ERR_DEPTH, "messages nested deeper than %d", PBJSON_MAX_DEPTH);
        goto out;
    }
    for (size_t i = 0; i < n && arr; i++) {
        char key[128];
        cJSON *v = NULL;
        size_t saved;
        if (!arr[i])
            continue;
        pbjson_map_key(&ed->fields[0], arr[i], key, sizeof(key));
        saved = pbjson_path_push(c, "[\"%s\"]", key);
        e = pbjson_write_value(c, ed, &ed->fields[1], (const char *)arr[i] + ed->fields[1].offset,
                               flags, depth + 1, &v);
        if (e)
            goto out;
        pbjson_path_pop(c, saved);
        /* the last entry of a key wins, as when protobuf parses a map */
        if (!(cJSON_GetObjectItemCaseSensitive(obj, key)
                  ? cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v)
                  : cJSON_AddItemToObject(obj, key, v))) {
            cJSON_Delete(v);
            e = pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
out:
    if (e) {
        cJSON_Delete(obj);
        return e;
    }
    *out = obj;
    return PBJSON_OK;
}

/* The JSON array of a repeated field. */
static pbjson_err_t pbjson_write_array(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                       const ProtobufCFieldDescriptor *f, const char *base,
                                       unsigned flags, int depth, cJSON **out)
{
    size_t n = *(const size_t *)(base + f->quantifier_offset);
    size_t size = pbjson_type_size(f->type);
    const char *elems = *(char *const *)(base + f->offset);
    cJSON *arr = cJSON_CreateArray();
    pbjson_err_t e = PBJSON_OK;

    if (!arr)
        return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
    if (size == 0) {
        e = pbjson_fail(c, PBJSON_ERR_UNSUPPORTED, "field %s.%s: field type %d not supported",
                        d->name, f->name, (int)f->type);
        goto out;
    }
    for (size_t i = 0; i < n && elems; i++) {
        cJSON *v = NULL;
        size_t saved = pbjson_path_push(c, "[%zu]", i);
        e = pbjson_write_value(c, d, f, elems + i * size, flags, depth, &v);
        if (e)
            goto out;
        pbjson_path_pop(c, saved);
        if (!cJSON_AddItemToArray(arr, v)) {
            cJSON_Delete(v);
            e = pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
out:
    if (e) {
        cJSON_Delete(arr);
        return e;
    }
    *out = arr;
    return PBJSON_OK;
}

static pbjson_err_t pbjson_write_message(pbjson_ctx_t *c, const ProtobufCMessage *m, unsigned flags,
                                         int depth, cJSON **out)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    cJSON *obj;
    pbjson_err_t e = PBJSON_OK;

    if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
        return pbjson_fail(c, PBJSON_ERR_INVALID, "not a protobuf-c message (bad descriptor)");
    if (depth > PBJSON_MAX_DEPTH)
        return pbjson_fail(c, PBJSON_ERR_DEPTH, "message %s is nested deeper than %d messages",
                           d->name, PBJSON_MAX_DEPTH);
    obj = cJSON_CreateObject();
    if (!obj)
        return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        cJSON *v = NULL;
        size_t saved;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
                continue;
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (*(const size_t *)(base + f->quantifier_offset) == 0 &&
                !(flags & PBJSON_EMIT_DEFAULTS))
                continue;
        } else if (!pbjson_field_present(f, base)) {
            if (!(flags & PBJSON_EMIT_DEFAULTS) || f->type == PROTOBUF_C_TYPE_MESSAGE)
                continue;
        }
        saved = pbjson_path_push(c, ".%s", f->name);
        if (f->label == PROTOBUF_C_LABEL_REPEATED && pbjson_is_map(d, f))
            e = pbjson_write_map(c, f, base, flags, depth, &v);
        else if (f->label == PROTOBUF_C_LABEL_REPEATED)
            e = pbjson_write_array(c, d, f, base, flags, depth, &v);
        else
            e = pbjson_write_value(c, d, f, base + f->offset, flags, depth, &v);
        if (e)
            goto out;
        pbjson_path_pop(c, saved);
        if (!cJSON_AddItemToObject(obj, f->name, v)) {
            cJSON_Delete(v);
            e = pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
out:
    if (e) {
        cJSON_Delete(obj);
        return e;
    }
    *out = obj;
    return PBJSON_OK;
}

pbjson_err_t pbjson_from_message(const ProtobufCMessage *m, unsigned flags, char **out, char *err,
                                 size_t errlen)
{
    pbjson_ctx_t c;
    cJSON *root = NULL;
    char *text;
    pbjson_err_t e;

    pbjson_ctx_init(&c, err, errlen);
    if (!m || !out)
        return pbjson_fail(&c, PBJSON_ERR_INVALID, "invalid argument (message, out)");
    e = pbjson_write_message(&c, m, flags, 1, &root);
    if (e)
        return e;
    text = (flags & PBJSON_PRETTY) ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text)
        return pbjson_fail(&c, PBJSON_ERR_NOMEM, "out of memory printing %s", m->descriptor->name);
    *out = text;
    return PBJSON_OK;
}

pbjson_err_t pbjson_packed_to_json(const ProtobufCMessageDescriptor *d, const uint8_t *data,
                                   size_t len, unsigned flags, char **out, char *err, size_t errlen)
{
    ProtobufCMessage *m;
    pbjson_err_t e;

    if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || (!data && len) || !out) {
        if (err && errlen)
            snprintf(err, errlen, "invalid argument (descriptor, data, out)");
        return PBJSON_ERR_INVALID;
    }
    if (len > PBJSON_MAX_INPUT) {
        if (err && errlen)
            snprintf(err, errlen, "%s encoding is %zu bytes, at most %d allowed", d->name, len,
                     PBJSON_MAX_INPUT);
        return PBJSON_ERR_TOO_LARGE;
    }
    m = protobuf_c_message_unpack(d, NULL, len, data);
    if (!m) {
        if (err && errlen)
            snprintf(err, errlen, "%zu bytes are not a valid %s protobuf encoding", len, d->name);
        return PBJSON_ERR_DECODE;
    }
    e = pbjson_from_message(m, flags, out, err, errlen);
    protobuf_c_message_free_unpacked(m, NULL);
    return e;
}
