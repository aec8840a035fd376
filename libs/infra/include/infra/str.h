/* str.h: bounded string copy for hot paths.
 *
 * str_copy(dst, cap, src) does what snprintf(dst, cap, "%s", src) does --
 * copies at most cap - 1 bytes and always terminates (cap > 0) -- without
 * the format machinery, which costs about 500 instructions a call in glibc
 * and showed up as 13% of the task runtime's per-message work (callgrind,
 * bench/README.md). Returns strlen(src), like strlcpy: a result >= cap means
 * the copy was truncated. src NULL copies "".
 *
 * str_hash(s) is FNV-1a 64 of the string's bytes; str_hash_more(h, s) goes
 * on from h (STR_HASH_INIT to start), for keys of several strings. It keys
 * the hash tables and im-repo's shard contract (repo_shard_of): it must not
 * change. s NULL adds nothing. */
#ifndef IMTASK_INFRA_STR_H
#define IMTASK_INFRA_STR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define STR_HASH_INIT 14695981039346656037ULL
#define STR_HASH_PRIME 1099511628211ULL

static inline size_t str_copy(char *dst, size_t cap, const char *src)
{
    size_t len = src ? strlen(src) : 0;
    if (cap > 0) {
        size_t n = len < cap - 1 ? len : cap - 1;
        if (n)
            memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return len;
}

static inline uint64_t str_hash_more(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
        h = (h ^ *p) * STR_HASH_PRIME;
    return h;
}

static inline uint64_t str_hash(const char *s)
{
    return str_hash_more(STR_HASH_INIT, s);
}

#endif
