/* arena.c: one response's memory in a few chunks (arena.h). */
#include "arena.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_MAGIC 0x31616e6572616e61ULL  /* the message is an arena's first allocation */
#define TAGGED_MAGIC 0x3164656767617461ULL /* the message came from tagged_alloc */
#define ARENA_MIN_CHUNK 4096
#define ARENA_MAX_CHUNK (1u << 20) /* chunks grow by doubling up to this */

typedef struct chunk_s {
    struct chunk_s *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
} chunk_t;

/* The header right in front of every message this file hands out. For an
 * arena it starts the first chunk's data, and the message follows it. */
typedef struct {
    alignas(max_align_t) uint64_t magic;
    chunk_t *chunks; /* newest first; the last holds this header */
    size_t next_cap;
} arena_t;

_Static_assert(sizeof(arena_t) % alignof(max_align_t) == 0, "arena header alignment");

static size_t arena_round(size_t n)
{
    return (n + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
}

static void *arena_alloc(void *opaque, size_t size)
{
    arena_t *a = opaque;
    size_t need = arena_round(size ? size : 1);
    chunk_t *c = a->chunks;
    if (need > c->cap - c->used) {
        size_t cap = a->next_cap > need ? a->next_cap : need;
        chunk_t *n = malloc(sizeof(*n) + cap);
        if (!n)
            return NULL;
        n->next = c;
        n->cap = cap;
        n->used = 0;
        a->chunks = c = n;
        if (a->next_cap < ARENA_MAX_CHUNK)
            a->next_cap *= 2;
    }
    void *p = c->data + c->used;
    c->used += need;
    return p;
}

static void arena_nofree(void *opaque, void *p)
{
    (void)opaque;
    (void)p; /* freed with the whole arena */
}

static void arena_release(arena_t *a)
{
    chunk_t *c = a->chunks;
    while (c) { /* the last chunk holds *a: nothing reads a after it */
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
}

/* The fallback allocator: malloc with the same header in front of every
 * allocation, so that arena_free can always read the header of a message. */
static void *tagged_alloc(void *opaque, size_t size)
{
    (void)opaque;
    arena_t *h = malloc(sizeof(*h) + size);
    if (!h)
        return NULL;
    h->magic = TAGGED_MAGIC;
    return h + 1;
}

static void tagged_free(void *opaque, void *p)
{
    (void)opaque;
    if (p)
        free((arena_t *)p - 1);
}

static const ProtobufCAllocator tagged = {.alloc = tagged_alloc, .free = tagged_free};

ProtobufCMessage *arena_unpack(const ProtobufCMessageDescriptor *desc, size_t len,
                               const uint8_t *data)
{
    /* unpacked, a message takes a few times its wire size (structs and
     * pointer arrays per element): one chunk for most responses */
    size_t cap = arena_round(len * 4 + 512);
    if (cap < ARENA_MIN_CHUNK)
        cap = ARENA_MIN_CHUNK;
    if (cap > ARENA_MAX_CHUNK)
        cap = ARENA_MAX_CHUNK;
    chunk_t *c = malloc(sizeof(*c) + sizeof(arena_t) + cap);
    if (!c)
        return NULL;
    arena_t *a = (arena_t *)c->data;
    c->next = NULL;
    c->cap = sizeof(arena_t) + cap;
    c->used = sizeof(arena_t);
    a->magic = ARENA_MAGIC;
    a->chunks = c;
    a->next_cap = cap * 2;
    ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_nofree, .allocator_data = a};
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &alloc, len, data);
    if (m && (void *)m == (void *)(a + 1))
        return m;
    arena_release(a);
    if (!m)
        return NULL;
    /* the message was not the first allocation (another protobuf-c): the
     * plain way, with the header in front of each piece */
    return protobuf_c_message_unpack(desc, (ProtobufCAllocator *)&tagged, len, data);
}

void arena_free(ProtobufCMessage *m)
{
    if (!m)
        return;
    arena_t *a = (arena_t *)m - 1;
    if (a->magic == ARENA_MAGIC)
        arena_release(a);
    else
        protobuf_c_message_free_unpacked(m, (ProtobufCAllocator *)&tagged);
}

int arena_holds(const ProtobufCMessage *m)
{
    return m && ((const arena_t *)m - 1)->magic == ARENA_MAGIC;
}
