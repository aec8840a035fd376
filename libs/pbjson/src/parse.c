/* parse.c: JSON -> protobuf-c message (pbjson_to_message, pbjson_json_to_packed). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PBJSON_EXACT_MAX 9007199254740992.0 /* 2^53: larger doubles skip integers */
#define PBJSON_SHOW_MAX 40                  /* bytes of a bad value quoted in errors */

/* "string \"abc\"", "number 1.5", "an object", ... for error messages. */
static void pbjson_describe(const cJSON *v, char *buf, size_t len)
{
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        size_t n = strlen(s);
        snprintf(buf, len, "string \"%.*s%s\"", n > PBJSON_SHOW_MAX ? PBJSON_SHOW_MAX : (int)n, s,
                 n > PBJSON_SHOW_MAX ? "..." : "");
    } else if (cJSON_IsNumber(v)) {
        snprintf(buf, len, "number %.17g", v->valuedouble);
    } else if (cJSON_IsBool(v)) {
        snprintf(buf, len, "boolean %s", cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNull(v)) {
        snprintf(buf, len, "null");
    } else if (cJSON_IsArray(v)) {
        snprintf(buf, len, "an array");
    } else if (cJSON_IsObject(v)) {
        snprintf(buf, len, "an object");
    } else {
        snprintf(buf, len, "an invalid value");
    }
}

static const char *pbjson_type_name(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
        return "int32";
    case PROTOBUF_C_TYPE_SINT32:
        return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32:
        return "sfixed32";
    case PROTOBUF_C_TYPE_INT64:
        return "int64";
    case PROTOBUF_C_TYPE_SINT64:
        return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64:
        return "sfixed64";
    case PROTOBUF_C_TYPE_UINT32:
        return "uint32";
    case PROTOBUF_C_TYPE_FIXED32:
        return "fixed32";
    case PROTOBUF_C_TYPE_UINT64:
        return "uint64";
    case PROTOBUF_C_TYPE_FIXED64:
        return "fixed64";
    case PROTOBUF_C_TYPE_FLOAT:
        return "float";
    case PROTOBUF_C_TYPE_DOUBLE:
        return "double";
    case PROTOBUF_C_TYPE_BOOL:
        return "bool";
    case PROTOBUF_C_TYPE_ENUM:
        return ((const ProtobufCEnumDescriptor *)f->descriptor)->name;
    case PROTOBUF_C_TYPE_STRING:
        return "string";
    case PROTOBUF_C_TYPE_BYTES:
        return "bytes";
    case PROTOBUF_C_TYPE_MESSAGE:
        return ((const ProtobufCMessageDescriptor *)f->descriptor)->name;
    }
    return "unknown type";
}

/* What JSON a field of this kind takes, for error messages. */
static const char *pbjson_type_expect(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return "a JSON number or a decimal string";
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return "a decimal string (or a JSON number up to 2^53)";
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return "a JSON number, \"NaN\", \"Infinity\" or \"-Infinity\"";
    case PROTOBUF_C_TYPE_BOOL:
        return "true or false";
    case PROTOBUF_C_TYPE_ENUM:
        return "a value name or number";
    case PROTOBUF_C_TYPE_STRING:
        return "a JSON string";
    case PROTOBUF_C_TYPE_BYTES:
        return "a base64 string";
    case PROTOBUF_C_TYPE_MESSAGE:
        return "a JSON object";
    }
    return "nothing (unsupported field type)";
}

/* True when key is the lowerCamel JSON name of the .proto name ("task_id" ->
 * "taskId"). */
static bool pbjson_camel_equal(const char *name, const char *key)
{
    bool upper = false;
    for (; *name; name++) {
        char want = *name;
        if (want == '_') {
            upper = true;
            continue;
        }
        if (upper && want >= 'a' && want <= 'z')
            want = (char)(want - 'a' + 'A');
        upper = false;
        if (*key++ != want)
            return false;
    }
    return *key == '\0';
}

static const ProtobufCFieldDescriptor *pbjson_field_find(const ProtobufCMessageDescriptor *d,
                                                         const char *key)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        if (strcmp(d->fields[i].name, key) == 0)
            return &d->fields[i];
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        if (pbjson_camel_equal(d->fields[i].name, key))
            return &d->fields[i];
    }
    return NULL;
}

/* "a, b, c" (cut to fit), for "unknown field" errors. */
static void pbjson_field_list(const ProtobufCMessageDescriptor *d, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < d->n_fields && used < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", d->fields[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (d->n_fields == 0)
        snprintf(buf, len, "none");
}

static int pbjson_b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* Decode standard or URL-safe base64, padding optional. Returns 0, or -1 with
 * *bad at the offending offset (or len when the length is impossible). */
static int pbjson_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen, size_t *bad)
{
    size_t n = len, o = 0;
    uint32_t acc = 0;
    int bits = 0;
    uint8_t *buf;
    while (n > 0 && s[n - 1] == '=' && len - n < 2)
        n--;
    if (n % 4 == 1) {
        *bad = len;
        return -1;
    }
    buf = malloc(n / 4 * 3 + 3);
    if (!buf) {
        *bad = (size_t)-1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int v = pbjson_b64_value(s[i]);
        if (v < 0) {
            free(buf);
            *bad = i;
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (o == 0) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    *outlen = o;
    return 0;
}

/* The integer in v (a number or a decimal string). Returns NULL on success,
 * else why it is not one. */
static const char *pbjson_json_int(const cJSON *v, bool is_unsigned, int64_t *s, uint64_t *u)
{
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d))
            return "not a finite number";
        if (d != floor(d))
            return "has a fractional part";
        if (fabs(d) > PBJSON_EXACT_MAX)
            return "is beyond 2^53, where JSON numbers lose digits: write it as a decimal string";
        if (is_unsigned) {
            if (d < 0)
                return "is negative";
            *u = (uint64_t)d;
        } else {
            *s = (int64_t)d;
        }
        return NULL;
    }
    if (cJSON_IsString(v)) {
        const char *p = v->valuestring;
        char *end;
        bool neg = p[0] == '-';
        if (!(p[neg] >= '0' && p[neg] <= '9'))
            return "is not a decimal integer";
        if (is_unsigned && neg)
            return "is negative";
        errno = 0;
        if (is_unsigned)
            *u = strtoull(p, &end, 10);
        else
            *s = strtoll(p, &end, 10);
        if (*end != '\0')
            return "is not a decimal integer";
        if (errno == ERANGE)
            return "is out of range";
        return NULL;
    }
    return "";
}

/* The floating-point value in v. Returns NULL on success, else why not. */
static const char *pbjson_json_double(const cJSON *v, double *out)
{
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return NULL;
    }
    if (cJSON_IsString(v)) {
        const char *p = v->valuestring;
        char *end;
        if (strcmp(p, "NaN") == 0) {
            *out = NAN;
            return NULL;
        }
        if (strcmp(p, "Infinity") == 0 || strcmp(p, "-Infinity") == 0) {
            *out = p[0] == '-' ? -INFINITY : INFINITY;
            return NULL;
        }
        if (!((p[0] >= '0' && p[0] <= '9') || p[0] == '-' || p[0] == '.'))
            return "is not a number";
        errno = 0;
        *out = strtod(p, &end);
        if (*end != '\0' || !isfinite(*out))
            return "is not a number";
        return NULL;
    }
    return "";
}

/* Error for a value that does not fit the field. why "" means "wrong JSON type". */
static pbjson_err_t pbjson_bad_value(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                     const ProtobufCFieldDescriptor *f, const cJSON *v,
                                     const char *why)
{
    char got[PBJSON_SHOW_MAX + 32];
    pbjson_describe(v, got, sizeof(got));
    if (why && why[0])
        return pbjson_fail(c, PBJSON_ERR_TYPE, "field %s.%s (%s): %s %s", d->name, f->name,
                           pbjson_type_name(f), got, why);
    return pbjson_fail(c, PBJSON_ERR_TYPE, "field %s.%s (%s): expected %s, got %s", d->name,
                       f->name, pbjson_type_name(f), pbjson_type_expect(f), got);
}

static pbjson_err_t pbjson_read_message(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                        const cJSON *obj, ProtobufCMessage **out, int depth);

/* Store the JSON value v of field f (of message d) at dst, the member (or the
 * array element) the field's type lives in. depth: of the message holding f. */
static pbjson_err_t pbjson_read_value(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                      const ProtobufCFieldDescriptor *f, const cJSON *v, void *dst,
                                      int depth)
{
    const char *why = NULL;
    int64_t s = 0;
    uint64_t u = 0;
    double x = 0;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        why = pbjson_json_int(v, false, &s, &u);
        if (!why && (s < INT32_MIN || s > INT32_MAX))
            why = "is out of range [-2147483648, 2147483647]";
        if (!why)
            *(int32_t *)dst = (int32_t)s;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        why = pbjson_json_int(v, true, &s, &u);
        if (!why && u > UINT32_MAX)
            why = "is out of range [0, 4294967295]";
        if (!why)
            *(uint32_t *)dst = (uint32_t)u;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        why = pbjson_json_int(v, false, &s, &u);
        if (!why)
            *(int64_t *)dst = s;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        why = pbjson_json_int(v, true, &s, &u);
        if (!why)
            *(uint64_t *)dst = u;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        why = pbjson_json_double(v, &x);
        if (!why && isfinite(x) && fabs(x) > FLT_MAX)
            why = "is out of the range of a float";
        if (!why)
            *(float *)dst = (float)x;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        why = pbjson_json_double(v, &x);
        if (!why)
            *(double *)dst = x;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        if (!cJSON_IsBool(v))
            why = "";
        else
            *(protobuf_c_boolean *)dst = cJSON_IsTrue(v) ? 1 : 0;
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        if (cJSON_IsString(v)) {
            why = "is not a value of this enum";
            for (unsigned i = 0; i < ed->n_values; i++) {
                if (strcmp(ed->values[i].name, v->valuestring) == 0) {
                    *(int *)dst = ed->values[i].value;
                    why = NULL;
                    break;
                }
            }
        } else if (cJSON_IsNumber(v)) {
            /* proto3 enums are open: any int32 number is kept */
            why = pbjson_json_int(v, false, &s, &u);
            if (!why && (s < INT32_MIN || s > INT32_MAX))
                why = "is out of the int32 range of enum numbers";
            if (!why)
                *(int *)dst = (int)s;
        } else {
            why = "";
        }
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        char *copy;
        if (!cJSON_IsString(v)) {
            why = "";
            break;
        }
        copy = strdup(v->valuestring);
        if (!copy)
            return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
        *(char **)dst = copy; /* a fresh member: only ever the default before */
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *bd = dst;
        size_t bad = 0;
        if (!cJSON_IsString(v)) {
            why = "";
            break;
        }
        if (pbjson_b64_decode(v->valuestring, strlen(v->valuestring), &bd->data, &bd->len, &bad) !=
            0) {
            if (bad == (size_t)-1)
                return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
            bd->data = NULL;
            bd->len = 0;
            if (bad >= strlen(v->valuestring))
                return pbjson_fail(c, PBJSON_ERR_TYPE,
                                   "field %s.%s (bytes): base64 of impossible length %zu", d->name,
                                   f->name, strlen(v->valuestring));
            return pbjson_fail(c, PBJSON_ERR_TYPE,
                               "field %s.%s (bytes): invalid base64 character '%c' at offset %zu",
                               d->name, f->name, v->valuestring[bad], bad);
        }
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        if (!cJSON_IsObject(v)) {
            why = "";
            break;
        }
        return pbjson_read_message(c, f->descriptor, v, dst, depth + 1);
    default:
        return pbjson_fail(c, PBJSON_ERR_UNSUPPORTED, "field %s.%s: field type %d not supported",
                           d->name, f->name, (int)f->type);
    }
    if (why)
        return pbjson_bad_value(c, d, f, v, why);
    return PBJSON_OK;
}

/* Fill a map field (a repeated Entry message) from a JSON object. */
static pbjson_err_t pbjson_read_map(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                    const ProtobufCFieldDescriptor *f, const cJSON *obj, char *base,
                                    int depth)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    size_t n = 0, i = 0;
    ProtobufCMessage **arr;
    const cJSON *item;
    pbjson_err_t e = PBJSON_OK;

    if (!cJSON_IsObject(obj))
        return pbjson_fail(c, PBJSON_ERR_TYPE, "field %s.%s (map): expected a JSON object, got %s",
                           d->name, f->name, cJSON_IsArray(obj) ? "an array" : "a scalar");
    if (depth + 1 > PBJSON_MAX_DEPTH)
        return pbjson_fail(c, PBJSON_ERR_DEPTH, "messages nested deeper than %d", PBJSON_MAX_DEPTH);
    cJSON_ArrayForEach(item, obj) n++;
    if (n == 0)
        return PBJSON_OK;
    arr = calloc(n, sizeof(*arr));
    if (!arr)
        return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
    /* stored before filling so a failure frees the entries made so far */
    *(ProtobufCMessage ***)(base + f->offset) = arr;
    *(size_t *)(base + f->quantifier_offset) = n;
    cJSON_ArrayForEach(item, obj)
    {
        size_t saved = pbjson_path_push(c, "[\"%s\"]", item->string);
        ProtobufCMessage *entry = malloc(ed->sizeof_message);
        cJSON *key = NULL;
        if (!entry) {
            e = pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
            goto out;
        }
        protobuf_c_message_init(ed, entry);
        arr[i++] = entry;
        if (kf->type == PROTOBUF_C_TYPE_BOOL) {
            if (strcmp(item->string, "true") != 0 && strcmp(item->string, "false") != 0) {
                e = pbjson_fail(c, PBJSON_ERR_TYPE,
                                "field %s.%s: map key \"%s\" is not \"true\" or \"false\"", d->name,
                                f->name, item->string);
                goto out;
            }
            *(protobuf_c_boolean *)((char *)entry + kf->offset) = item->string[0] == 't';
        } else {
            key = cJSON_CreateString(item->string);
            if (!key) {
                e = pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
                goto out;
            }
            e = pbjson_read_value(c, ed, kf, key, (char *)entry + kf->offset, depth + 1);
            cJSON_Delete(key);
            if (e)
                goto out;
        }
        if (kf->label == PROTOBUF_C_LABEL_OPTIONAL && kf->type != PROTOBUF_C_TYPE_STRING)
            *(protobuf_c_boolean *)((char *)entry + kf->quantifier_offset) = 1;
        if (cJSON_IsNull(item)) {
            e = pbjson_fail(c, PBJSON_ERR_TYPE, "field %s.%s: map values may not be null", d->name,
                            f->name);
            goto out;
        }
        e = pbjson_read_value(c, ed, vf, item, (char *)entry + vf->offset, depth + 1);
        if (e)
            goto out;
        if (vf->label == PROTOBUF_C_LABEL_OPTIONAL && vf->type != PROTOBUF_C_TYPE_STRING &&
            vf->type != PROTOBUF_C_TYPE_MESSAGE)
            *(protobuf_c_boolean *)((char *)entry + vf->quantifier_offset) = 1;
        pbjson_path_pop(c, saved);
    }
out:
    return e;
}

/* Fill a repeated field from a JSON array. */
static pbjson_err_t pbjson_read_array(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                      const ProtobufCFieldDescriptor *f, const cJSON *arr,
                                      char *base, int depth)
{
    size_t n = 0, i = 0, size = pbjson_type_size(f->type);
    const cJSON *item;
    char *elems;

    if (!cJSON_IsArray(arr)) {
        char got[PBJSON_SHOW_MAX + 32];
        pbjson_describe(arr, got, sizeof(got));
        return pbjson_fail(c, PBJSON_ERR_TYPE,
                           "field %s.%s (repeated %s): expected a JSON array, got %s", d->name,
                           f->name, pbjson_type_name(f), got);
    }
    if (size == 0)
        return pbjson_fail(c, PBJSON_ERR_UNSUPPORTED, "field %s.%s: field type %d not supported",
                           d->name, f->name, (int)f->type);
    cJSON_ArrayForEach(item, arr) n++;
    if (n == 0)
        return PBJSON_OK;
    elems = calloc(n, size);
    if (!elems)
        return pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
    /* stored before filling so a failure frees the elements made so far */
    *(void **)(base + f->offset) = elems;
    *(size_t *)(base + f->quantifier_offset) = n;
    cJSON_ArrayForEach(item, arr)
    {
        size_t saved = pbjson_path_push(c, "[%zu]", i);
        pbjson_err_t e;
        if (cJSON_IsNull(item))
            return pbjson_fail(c, PBJSON_ERR_TYPE,
                               "field %s.%s: null is not allowed in a repeated field", d->name,
                               f->name);
        e = pbjson_read_value(c, d, f, item, elems + i * size, depth);
        if (e)
            return e;
        pbjson_path_pop(c, saved);
        i++;
    }
    return PBJSON_OK;
}

/* Set one field of the message at base from the JSON value v. */
static pbjson_err_t pbjson_read_field(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                      const ProtobufCFieldDescriptor *f, const cJSON *v, char *base,
                                      int depth)
{
    pbjson_err_t e;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (pbjson_is_map(d, f))
            return pbjson_read_map(c, d, f, v, base, depth);
        return pbjson_read_array(c, d, f, v, base, depth);
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(base + f->quantifier_offset) = f->id;
    e = pbjson_read_value(c, d, f, v, base + f->offset, depth);
    if (!e && f->label == PROTOBUF_C_LABEL_OPTIONAL && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
    return e;
}

/* A new message of type d from the JSON object obj, stored at *out at once
 * (so that on failure the caller frees whatever was built). */
static pbjson_err_t pbjson_read_message(pbjson_ctx_t *c, const ProtobufCMessageDescriptor *d,
                                        const cJSON *obj, ProtobufCMessage **out, int depth)
{
    ProtobufCMessage *m;
    const cJSON *item;
    const ProtobufCFieldDescriptor **oneof_set = NULL;
    unsigned char *seen = NULL;
    pbjson_err_t e = PBJSON_OK;

    if (depth > PBJSON_MAX_DEPTH)
        return pbjson_fail(c, PBJSON_ERR_DEPTH, "message %s is nested deeper than %d messages",
                           d->name, PBJSON_MAX_DEPTH);
    if (!cJSON_IsObject(obj)) {
        char got[PBJSON_SHOW_MAX + 32];
        pbjson_describe(obj, got, sizeof(got));
        return pbjson_fail(c, PBJSON_ERR_TYPE, "message %s: expected a JSON object, got %s",
                           d->name, got);
    }
    m = malloc(d->sizeof_message);
    seen = calloc(d->n_fields + 1, 1);
    oneof_set = calloc(d->n_fields + 1, sizeof(*oneof_set));
    if (!m || !seen || !oneof_set) {
        free(m);
        e = pbjson_fail(c, PBJSON_ERR_NOMEM, "out of memory");
        goto out;
    }
    protobuf_c_message_init(d, m);
    *out = m;

    cJSON_ArrayForEach(item, obj)
    {
        const ProtobufCFieldDescriptor *f = pbjson_field_find(d, item->string);
        size_t idx, saved;
        if (!f) {
            char known[256];
            pbjson_field_list(d, known, sizeof(known));
            e = pbjson_fail(c, PBJSON_ERR_UNKNOWN_FIELD,
                            "unknown field \"%s\" in message %s (its fields: %s)", item->string,
                            d->name, known);
            goto out;
        }
        idx = (size_t)(f - d->fields);
        if (seen[idx]) {
            e = pbjson_fail(c, PBJSON_ERR_TYPE, "field %s.%s is given twice (as \"%s\")", d->name,
                            f->name, item->string);
            goto out;
        }
        seen[idx] = 1;
        if (cJSON_IsNull(item))
            continue; /* proto3 JSON: null is the default value */
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            /* members of one oneof share the case member (quantifier_offset) */
            for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *o = oneof_set[i];
                if (o && o->quantifier_offset == f->quantifier_offset) {
                    e = pbjson_fail(c, PBJSON_ERR_TYPE,
                                    "fields %s.%s and %s.%s are members of one oneof: give at "
                                    "most one",
                                    d->name, o->name, d->name, f->name);
                    goto out;
                }
            }
            oneof_set[idx] = f;
        }
        saved = pbjson_path_push(c, ".%s", f->name);
        e = pbjson_read_field(c, d, f, item, (char *)m, depth);
        if (e)
            goto out;
        pbjson_path_pop(c, saved);
    }
    /* proto2: a required field left out would not even pack */
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REQUIRED && !seen[i]) {
            e = pbjson_fail(c, PBJSON_ERR_TYPE, "required field %s.%s (%s) is missing", d->name,
                            f->name, pbjson_type_name(f));
            goto out;
        }
        if (f->label == PROTOBUF_C_LABEL_REQUIRED && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) &&
            !*(void **)((char *)m + f->offset)) {
            e = pbjson_fail(c, PBJSON_ERR_TYPE, "required field %s.%s (%s) may not be null",
                            d->name, f->name, pbjson_type_name(f));
            goto out;
        }
    }
out:
    free(oneof_set);
    free(seen);
    return e;
}

pbjson_err_t pbjson_to_message(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                               ProtobufCMessage **out, char *err, size_t errlen)
{
    pbjson_ctx_t c;
    cJSON *root = NULL;
    const char *end = NULL;
    ProtobufCMessage *m = NULL;
    pbjson_err_t e = PBJSON_OK;

    pbjson_ctx_init(&c, err, errlen);
    if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || !json || !out)
        return pbjson_fail(&c, PBJSON_ERR_INVALID, "invalid argument (descriptor, json, out)");
    if (len > PBJSON_MAX_INPUT)
        return pbjson_fail(&c, PBJSON_ERR_TOO_LARGE, "JSON for %s is %zu bytes, at most %d allowed",
                           d->name, len, PBJSON_MAX_INPUT);
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root && end) {
        /* only white space may follow the value */
        for (const char *p = end; p < json + len; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                end = p;
                cJSON_Delete(root);
                root = NULL;
                break;
            }
        }
    }
    if (!root) {
        size_t off = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (json[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return pbjson_fail(&c, PBJSON_ERR_SYNTAX,
                           "not valid JSON for %s: syntax error at byte %zu (line %zu, column %zu)",
                           d->name, off, line, col);
    }
    e = pbjson_read_message(&c, d, root, &m, 1);
    cJSON_Delete(root);
    if (e) {
        pbjson_message_free(&m);
        return e;
    }
    *out = m;
    return PBJSON_OK;
}

pbjson_err_t pbjson_json_to_packed(const ProtobufCMessageDescriptor *d, const char *json,
                                   size_t len, uint8_t **out, size_t *outlen, char *err,
                                   size_t errlen)
{
    ProtobufCMessage *m = NULL;
    uint8_t *buf;
    size_t n;
    pbjson_err_t e;

    if (!out || !outlen) {
        if (err && errlen)
            snprintf(err, errlen, "invalid argument (out, outlen)");
        return PBJSON_ERR_INVALID;
    }
    e = pbjson_to_message(d, json, len, &m, err, errlen);
    if (e)
        return e;
    n = protobuf_c_message_get_packed_size(m);
    buf = malloc(n ? n : 1);
    if (!buf) {
        pbjson_message_free(&m);
        if (err && errlen)
            snprintf(err, errlen, "out of memory packing %s (%zu bytes)", d->name, n);
        return PBJSON_ERR_NOMEM;
    }
    protobuf_c_message_pack(m, buf);
    pbjson_message_free(&m);
    *out = buf;
    *outlen = n;
    return PBJSON_OK;
}
