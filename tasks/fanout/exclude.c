/* exclude.c: the users a fan-out leaves out (the sender and the task's
 * exclude_user_ids), as an open-addressing hash set looked up once per
 * member. The set points at strings its owner keeps alive. */
#include <stdlib.h>
#include <string.h>

#include "fanout.h"
#include "infra/str.h"

int fanout_exclude_init(fanout_exclude_t *s, size_t n)
{
    size_t cap = 8;
    while (cap < 2 * n + 2) /* load factor at most 1/2 */
        cap *= 2;
    s->slots = calloc(cap, sizeof(*s->slots));
    s->cap = s->slots ? cap : 0;
    s->count = 0;
    return s->slots ? 0 : -1;
}

void fanout_exclude_add(fanout_exclude_t *s, const char *id)
{
    if (!id || !*id || !s->slots || 2 * (s->count + 1) > s->cap)
        return;
    for (size_t i = str_hash(id) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i]) {
            s->slots[i] = id;
            s->count++;
            return;
        }
        if (strcmp(s->slots[i], id) == 0)
            return;
    }
}

bool fanout_exclude_has(const fanout_exclude_t *s, const char *id)
{
    if (!id || !s->count)
        return false;
    for (size_t i = str_hash(id) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i])
            return false;
        if (strcmp(s->slots[i], id) == 0)
            return true;
    }
}

void fanout_exclude_free(fanout_exclude_t *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = s->count = 0;
}
