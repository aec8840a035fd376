/* ledger.h: what this process already pushed (or settled for good), so that
 * a task run again does not push it twice.
 *
 * A key is a 64-bit hash of (root task id, platform, token): the root task id
 * names one notification across its follow-ups. Keys are recorded when a
 * device is settled (the provider accepted it, or refused it for good) and
 * checked before anything is sent. Cases it covers, all in one process:
 * a task retried in process or through the retry topic after its follow-up
 * could not be written, a follow-up or a task delivered twice (at-least-once
 * producers), a task redelivered after a rebalance back to this member.
 * A crash loses it: see docs/push.md for what happens then.
 *
 * Bounded: two generations of open-addressing sets of `capacity` slots
 * each, filled to half; when the current one is half full or older than
 * ttl/2 it becomes the previous one and the previous one is dropped, so a
 * key is remembered for at least min(ttl/2, capacity/2 insertions).
 * Memory: 16 bytes per slot (capacity 262144: 4 MiB). Thread-safe.
 */
#ifndef PUSH_LEDGER_H
#define PUSH_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct push_ledger_s push_ledger_t;

/* capacity: slots per generation (rounded up to a power of two, >= 64);
 * ttl_ms: how long a key is kept at most. NULL on allocation failure. */
push_ledger_t *push_ledger_new(size_t capacity, int64_t ttl_ms);
void push_ledger_free(push_ledger_t **lp);

uint64_t push_ledger_key(const char *root_task_id, int platform, const char *token);
/* now_ms: a monotonic time. */
bool push_ledger_has(push_ledger_t *l, uint64_t key, int64_t now_ms);
void push_ledger_add(push_ledger_t *l, uint64_t key, int64_t now_ms);

#endif
