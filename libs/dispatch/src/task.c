/* task.c: task envelope encoding, task types, ids and trace context. */
#include "dispatch/task.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "proto/task.pb-c.h"

const char *const task_types[] = {"fanout", "push", "content_audit", "archive", "report", NULL};

const char *task_type_canonical(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "audit") == 0)
        return "content_audit";
    for (size_t i = 0; task_types[i]; i++) {
        if (strcmp(name, task_types[i]) == 0)
            return task_types[i];
    }
    return NULL;
}

int task_encode(const task_t *t, uint8_t **out, size_t *outlen)
{
    Imtask__V1__Task m = IMTASK__V1__TASK__INIT;
    m.task_id = (char *)t->task_id;
    m.task_type = (char *)t->task_type;
    m.trace_id = (char *)t->trace_id;
    m.traceparent = (char *)t->traceparent;
    m.created_at_ms = t->created_at_ms;
    m.attempt = t->attempt;
    m.deadline_ms = t->deadline_ms;
    m.payload.data = (uint8_t *)t->payload;
    m.payload.len = t->payload_len;
    *outlen = imtask__v1__task__get_packed_size(&m);
    *out = malloc(*outlen ? *outlen : 1);
    if (!*out)
        return -1;
    imtask__v1__task__pack(&m, *out);
    return 0;
}

static int task_copy(char *dst, size_t cap, const char *src, const char *what, char *err,
                     size_t errlen)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        snprintf(err, errlen, "%s is %zu bytes, at most %zu allowed", what, n, cap - 1);
        return -1;
    }
    memcpy(dst, src ? src : "", n + 1);
    return 0;
}

/* Decoding an envelope makes a handful of small allocations (the message,
 * its strings, the payload): on the hot path of every task. They come from a
 * small per-thread arena, reset when the last of them is freed; what does not
 * fit goes to malloc. */
#define TASK_ARENA_BYTES 16384

typedef struct {
    _Alignas(max_align_t) unsigned char buf[TASK_ARENA_BYTES];
    size_t used;
    size_t live;
} task_arena_t;

static _Thread_local task_arena_t task_arena;

static void *task_arena_alloc(void *opaque, size_t size)
{
    task_arena_t *a = opaque;
    size_t need = (size + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    if (need <= TASK_ARENA_BYTES - a->used) {
        void *p = a->buf + a->used;
        a->used += need;
        a->live++;
        return p;
    }
    return malloc(size);
}

static void task_arena_free(void *opaque, void *p)
{
    task_arena_t *a = opaque;
    if ((unsigned char *)p >= a->buf && (unsigned char *)p < a->buf + TASK_ARENA_BYTES) {
        if (--a->live == 0)
            a->used = 0;
        return;
    }
    free(p);
}

static ProtobufCAllocator *task_allocator(void)
{
    static _Thread_local ProtobufCAllocator alloc;
    alloc.alloc = task_arena_alloc;
    alloc.free = task_arena_free;
    alloc.allocator_data = &task_arena;
    return &alloc;
}

int task_decode(const uint8_t *buf, size_t len, task_t *t, void **owner, char *err, size_t errlen)
{
    Imtask__V1__Task *m;
    if (len > TASK_MAX_BYTES) {
        snprintf(err, errlen, "task envelope is %zu bytes, at most %d allowed", len,
                 TASK_MAX_BYTES);
        return -1;
    }
    m = imtask__v1__task__unpack(task_allocator(), len, buf);
    if (!m) {
        snprintf(err, errlen, "value is not a task envelope (imtask.v1.Task protobuf, %zu bytes)",
                 len);
        return -1;
    }
    memset(t, 0, sizeof(*t));
    if (task_copy(t->task_id, sizeof(t->task_id), m->task_id, "task_id", err, errlen) ||
        task_copy(t->task_type, sizeof(t->task_type), m->task_type, "task_type", err, errlen) ||
        task_copy(t->trace_id, sizeof(t->trace_id), m->trace_id, "trace_id", err, errlen) ||
        task_copy(t->traceparent, sizeof(t->traceparent), m->traceparent, "traceparent", err,
                  errlen)) {
        imtask__v1__task__free_unpacked(m, task_allocator());
        return -1;
    }
    if (!t->task_id[0]) {
        snprintf(err, errlen, "task envelope has no task_id");
        imtask__v1__task__free_unpacked(m, task_allocator());
        return -1;
    }
    t->created_at_ms = m->created_at_ms;
    t->attempt = m->attempt;
    t->deadline_ms = m->deadline_ms;
    t->payload = m->payload.data;
    t->payload_len = m->payload.len;
    *owner = m;
    return 0;
}

void task_decoded_free(void *owner)
{
    if (owner)
        imtask__v1__task__free_unpacked(owner, task_allocator());
}

static void task_random(void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom((char *)buf + got, len - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
}

static void task_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}

void task_id_new(char *out)
{
    uint8_t b[16];
    char h[33];
    task_random(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    task_hex(b, sizeof(b), h);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

void task_trace_id_new(char *out)
{
    uint8_t b[16];
    do
        task_random(b, sizeof(b));
    while (!(b[0] | b[1] | b[2] | b[3] | b[4] | b[5] | b[6] | b[7] | b[8] | b[9] | b[10] | b[11] |
             b[12] | b[13] | b[14] | b[15]));
    task_hex(b, sizeof(b), out);
}

static bool task_is_hex(const char *s, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        nonzero = nonzero || c != '0';
    }
    return nonzero;
}

int task_traceparent_parse(const char *tp, char *trace_id)
{
    /* version "00": 2-32-16-2 hex digits, ids not all zero */
    if (!tp || strlen(tp) != TASK_TRACEPARENT_LEN || tp[2] != '-' || tp[35] != '-' ||
        tp[52] != '-' || strncmp(tp, "00", 2) != 0 || !task_is_hex(tp + 3, 32) ||
        !task_is_hex(tp + 36, 16))
        return -1;
    for (int i = 53; i < 55; i++) {
        char c = tp[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
    }
    memcpy(trace_id, tp + 3, 32);
    trace_id[32] = '\0';
    return 0;
}

void task_traceparent_new(const char *trace_id, char *out)
{
    uint8_t b[8];
    char parent[17];
    do
        task_random(b, sizeof(b));
    while (!(b[0] | b[1] | b[2] | b[3] | b[4] | b[5] | b[6] | b[7]));
    task_hex(b, sizeof(b), parent);
    snprintf(out, TASK_TRACEPARENT_LEN + 1, "00-%.32s-%s-01", trace_id, parent);
}
