/* str.h: bounded string copy for hot paths.
 *
 * str_copy(dst, cap, src) does what snprintf(dst, cap, "%s", src) does --
 * copies at most cap - 1 bytes and always terminates (cap > 0) -- without
 * the format machinery, which costs about 500 instructions a call in glibc
 * and showed up as 13% of the task runtime's per-message work (callgrind,
 * bench/README.md). Returns strlen(src), like strlcpy: a result >= cap means
 * the copy was truncated. src NULL copies "". */
#ifndef IMTASK_INFRA_STR_H
#define IMTASK_INFRA_STR_H

#include <stddef.h>
#include <string.h>

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

#endif
