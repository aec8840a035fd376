/* ledger.c: two rotating generations of 64-bit keys (see ledger.h). */
#include "ledger.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "infra/str.h"

typedef struct {
    uint64_t *slots; /* 0: empty */
    size_t used;
    int64_t born_ms;
} gen_t;

struct push_ledger_s {
    pthread_mutex_t lock;
    size_t cap, mask;
    int64_t ttl_ms;
    gen_t cur, prev;
};

uint64_t push_ledger_key(const char *root, int platform, const char *token)
{
    uint64_t h = str_hash(root);
    h = (h ^ 0xff) * STR_HASH_PRIME;
    h = (h ^ (unsigned)(platform & 0xff)) * STR_HASH_PRIME;
    h = (h ^ 0xfe) * STR_HASH_PRIME;
    h = str_hash_more(h, token);
    /* final mix (the low bits index the table) */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

push_ledger_t *push_ledger_new(size_t capacity, int64_t ttl_ms)
{
    size_t cap = 64;
    while (cap < capacity && cap < ((size_t)1 << 30))
        cap <<= 1;
    push_ledger_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->cur.slots = calloc(cap, sizeof(uint64_t));
    l->prev.slots = calloc(cap, sizeof(uint64_t));
    if (!l->cur.slots || !l->prev.slots) {
        free(l->cur.slots);
        free(l->prev.slots);
        free(l);
        return NULL;
    }
    l->cap = cap;
    l->mask = cap - 1;
    l->ttl_ms = ttl_ms > 0 ? ttl_ms : 3600000;
    l->cur.born_ms = l->prev.born_ms = -1;
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

void push_ledger_free(push_ledger_t **lp)
{
    if (!lp || !*lp)
        return;
    free((*lp)->cur.slots);
    free((*lp)->prev.slots);
    pthread_mutex_destroy(&(*lp)->lock);
    free(*lp);
    *lp = NULL;
}

static bool gen_has(const push_ledger_t *l, const gen_t *g, uint64_t key)
{
    for (size_t i = key & l->mask;; i = (i + 1) & l->mask) {
        if (g->slots[i] == key)
            return true;
        if (g->slots[i] == 0)
            return false;
    }
}

/* With the lock: rotate when the current generation is half full or old. */
static void rotate(push_ledger_t *l, int64_t now)
{
    if (l->cur.born_ms < 0)
        l->cur.born_ms = now;
    if (l->cur.used < l->cap / 2 && now - l->cur.born_ms < l->ttl_ms / 2)
        return;
    gen_t old = l->prev;
    l->prev = l->cur;
    memset(old.slots, 0, l->cap * sizeof(uint64_t));
    old.used = 0;
    old.born_ms = now;
    l->cur = old;
}

bool push_ledger_has(push_ledger_t *l, uint64_t key, int64_t now)
{
    bool found;
    pthread_mutex_lock(&l->lock);
    rotate(l, now);
    found = gen_has(l, &l->cur, key) ||
            (now - l->prev.born_ms < l->ttl_ms && gen_has(l, &l->prev, key));
    pthread_mutex_unlock(&l->lock);
    return found;
}

void push_ledger_add(push_ledger_t *l, uint64_t key, int64_t now)
{
    pthread_mutex_lock(&l->lock);
    rotate(l, now);
    for (size_t i = key & l->mask;; i = (i + 1) & l->mask) {
        if (l->cur.slots[i] == key)
            break;
        if (l->cur.slots[i] == 0) {
            l->cur.slots[i] = key;
            l->cur.used++;
            break;
        }
    }
    pthread_mutex_unlock(&l->lock);
}
