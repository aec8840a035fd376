/* oracle.c: see oracle.h; each function names the data.go function it
 * follows. */
#include "oracle.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* fnv1a64 */
uint64_t oracle_fnv1a64(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* memberUserID */
void oracle_member(const char *gid, int64_t k, char *out, size_t outlen)
{
    char key[256];
    snprintf(key, sizeof(key), "members|%s", gid);
    int64_t base = (int64_t)(oracle_fnv1a64(key) % 1000000000ULL);
    snprintf(out, outlen, "u%" PRId64, base + k);
}

/* onlineStatus */
bool oracle_online(const char *uid, double ratio, int gateways, int *gateway)
{
    char key[128];
    snprintf(key, sizeof(key), "%s|online", uid);
    uint64_t h = oracle_fnv1a64(key);
    if ((double)(h % 1000000ULL) < ratio * 1000000.0) {
        *gateway = (int)((h / 1000000ULL) % (uint64_t)gateways) + 1;
        return true;
    }
    *gateway = 0;
    return false;
}

uint32_t oracle_shard(const char *uid, uint32_t n)
{
    return n <= 1 ? 0 : (uint32_t)(oracle_fnv1a64(uid) % n);
}

/* message */
void oracle_message_content(int64_t i, char *out, size_t outlen)
{
    snprintf(out, outlen, "message %" PRId64, i);
}
