/* offsets.h: per-partition offset tracker: which offsets are handed out, which
 * are finished, and the highest contiguous finished one (the commit frontier).
 * Private to mqclient; used by the consumer's poll thread only (no locking).
 *
 * Offsets are added in ascending order (as a partition delivers them, gaps
 * allowed). Each added offset is an entry until it and every earlier one is
 * finished; consecutive skipped offsets at the tail share one entry, so a run
 * of other tasks' messages costs O(1) memory.
 */
#ifndef MQCLIENT_OFFSETS_H
#define MQCLIENT_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct mq_offsets_s mq_offsets_t;

/* cap: the most entries it may hold (>= 1). */
mq_offsets_t *mq_offsets_new(size_t cap);
void mq_offsets_destroy(mq_offsets_t *t); /* NULL is a no-op */

/* Hand out offset (must be above every offset added before). Returns 0, or -1
 * when full (cap entries) or not ascending. */
int mq_offsets_add(mq_offsets_t *t, int64_t offset);
/* Add an offset finished at once (a skipped message). Returns 0 or -1 (full,
 * not ascending). Never needs a new entry when the tail is finished already. */
int mq_offsets_skip(mq_offsets_t *t, int64_t offset);
/* Mark an added offset finished. Returns 0, or -1 when it is not pending. */
int mq_offsets_done(mq_offsets_t *t, int64_t offset);

/* The next offset to commit (last contiguous finished + 1), or -1 when no
 * offset was finished yet. Pops finished entries from the head. */
int64_t mq_offsets_frontier(mq_offsets_t *t);
/* Entries held (pending, or finished behind a pending one). */
size_t mq_offsets_entries(const mq_offsets_t *t);
/* Offsets added and not finished. */
size_t mq_offsets_pending(const mq_offsets_t *t);

#endif
