/* oracle.h: the im-repo double's synthetic data (tests/doubles/imrepo,
 * data.go) recomputed in C, so the fan-out tests know who should get what
 * without asking the service under test: members of "g<N>..." groups,
 * online status and gateway, shards, messages. Must follow data.go. */
#ifndef TESTS_FANOUT_ORACLE_H
#define TESTS_FANOUT_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint64_t oracle_fnv1a64(const char *s);
/* The user id of member k of group gid, into out (>= 24 bytes). */
void oracle_member(const char *gid, int64_t k, char *out, size_t outlen);
/* Online under this ratio, and then its gateway number 1..gateways. */
bool oracle_online(const char *uid, double ratio, int gateways, int *gateway);
/* The shard of a user among n (im-repo's selector). */
uint32_t oracle_shard(const char *uid, uint32_t n);
/* Message "m<i>": content and seq id as the double makes them. */
void oracle_message_content(int64_t i, char *out, size_t outlen);

#endif
