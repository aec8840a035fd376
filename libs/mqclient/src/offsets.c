/* offsets.c: per-partition offset tracker on a ring buffer sorted by offset. */
#include "offsets.h"

#include <stdbool.h>
#include <stdlib.h>

typedef struct {
    int64_t offset; /* for a finished entry: the highest offset it covers */
    bool done;
} mq_offsets_entry_t;

struct mq_offsets_s {
    mq_offsets_entry_t *ring;
    size_t cap;     /* most entries allowed */
    size_t size;    /* allocated slots (grows by doubling up to cap) */
    size_t head;    /* index of the oldest entry */
    size_t count;   /* entries held */
    size_t pending; /* entries not done */
    int64_t last;   /* highest offset added, -1 none */
    int64_t frontier;
};

mq_offsets_t *mq_offsets_new(size_t cap)
{
    mq_offsets_t *t;
    if (cap == 0)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cap = cap;
    t->last = -1;
    t->frontier = -1;
    return t;
}

void mq_offsets_destroy(mq_offsets_t *t)
{
    if (!t)
        return;
    free(t->ring);
    free(t);
}

static mq_offsets_entry_t *mq_offsets_at(const mq_offsets_t *t, size_t i)
{
    return &t->ring[(t->head + i) % t->size];
}

/* Make room for one more entry; -1 when at cap or out of memory. */
static int mq_offsets_reserve(mq_offsets_t *t)
{
    mq_offsets_entry_t *n;
    size_t nsize;
    if (t->count < t->size)
        return 0;
    if (t->count >= t->cap)
        return -1;
    nsize = t->size ? t->size * 2 : 16;
    if (nsize > t->cap)
        nsize = t->cap;
    n = malloc(nsize * sizeof(*n));
    if (!n)
        return -1;
    for (size_t i = 0; i < t->count; i++)
        n[i] = *mq_offsets_at(t, i);
    free(t->ring);
    t->ring = n;
    t->size = nsize;
    t->head = 0;
    return 0;
}

static int mq_offsets_push(mq_offsets_t *t, int64_t offset, bool done)
{
    if (offset <= t->last || mq_offsets_reserve(t))
        return -1;
    *mq_offsets_at(t, t->count) = (mq_offsets_entry_t){.offset = offset, .done = done};
    t->count++;
    if (!done)
        t->pending++;
    t->last = offset;
    return 0;
}

int mq_offsets_add(mq_offsets_t *t, int64_t offset)
{
    return mq_offsets_push(t, offset, false);
}

int mq_offsets_skip(mq_offsets_t *t, int64_t offset)
{
    if (offset <= t->last)
        return -1;
    if (t->count == 0) {
        t->frontier = offset + 1;
        t->last = offset;
        return 0;
    }
    mq_offsets_entry_t *tail = mq_offsets_at(t, t->count - 1);
    if (tail->done) {
        tail->offset = offset; /* the finished tail now covers this one too */
        t->last = offset;
        return 0;
    }
    return mq_offsets_push(t, offset, true);
}

int mq_offsets_done(mq_offsets_t *t, int64_t offset)
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) { /* first entry with entry.offset >= offset */
        size_t mid = lo + (hi - lo) / 2;
        if (mq_offsets_at(t, mid)->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->count)
        return -1;
    mq_offsets_entry_t *e = mq_offsets_at(t, lo);
    if (e->offset != offset || e->done)
        return -1;
    e->done = true;
    t->pending--;
    return 0;
}

int64_t mq_offsets_frontier(mq_offsets_t *t)
{
    while (t->count > 0 && mq_offsets_at(t, 0)->done) {
        t->frontier = mq_offsets_at(t, 0)->offset + 1;
        t->head = (t->head + 1) % t->size;
        t->count--;
    }
    return t->frontier;
}

size_t mq_offsets_entries(const mq_offsets_t *t)
{
    return t->count;
}

size_t mq_offsets_pending(const mq_offsets_t *t)
{
    return t->pending;
}
