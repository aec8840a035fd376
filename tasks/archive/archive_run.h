/* archive_run.h: one run of an archive job, independent of the task runtime
 * (archive.c is the processor around it; the benchmark calls it directly).
 *
 * A run moves every message created before cutoff_ms from im-repo into
 * segments of the store, segment by segment:
 *   1. list pages (ListMessagesBefore) from the checkpoint's cursor into a
 *      segment writer until the segment is full or nothing is left;
 *   2. put the segment, read it back and verify it (size, sha256 of the
 *      compressed bytes, decompress: count, size, sha256 of the NDJSON);
 *   3. create its manifest (only if absent): from here on the segment is
 *      committed; if another run of the job committed it first, this try is
 *      dropped and theirs finished as after a crash;
 *   4. delete its messages from im-repo in batches (DeleteMessages);
 *   5. put the checkpoint (next seq, the cursor after the segment).
 * Before 1, a committed segment at the checkpoint's seq (a crash between 3
 * and 5) is verified again, its ids are deleted again (idempotent) and the
 * checkpoint advanced past it. Each try writes its own segment object
 * (<seq>.<token>.ndjson.zst) and the manifest names it, so no try overwrites
 * a committed segment. docs/archive.md has the argument in full. */
#ifndef IMTASK_ARCHIVE_ARCHIVE_RUN_H
#define IMTASK_ARCHIVE_ARCHIVE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "repoclient/repoclient.h"
#include "segment.h"
#include "storage.h"

typedef struct {
    const char *prefix;           /* key prefix ("archive") */
    int64_t page_size;            /* ListMessagesBefore limit, 1..10000 */
    int64_t segment_max_messages; /* a segment ends at this many messages ... */
    int64_t segment_max_bytes;    /* ... or this many NDJSON bytes */
    int64_t delete_batch;         /* ids per DeleteMessages, 1..10000 */
    int zstd_level;
    int64_t call_timeout_ms; /* each im-repo call */
} archive_limits_t;

typedef struct {
    uint64_t messages; /* archived (and deleted) by this run */
    uint64_t segments;
    uint64_t ndjson_bytes;
    uint64_t zst_bytes;
    uint64_t deleted; /* ids im-repo said it deleted now */
    uint64_t verify_failures;
    uint64_t recovered; /* committed segments finished after a crash */
    uint64_t conflicts; /* tries dropped: another run committed the segment first */
    uint64_t pages;
} archive_counts_t;

typedef struct {
    store_t *store;
    repo_client_t *repo;
    /* polled between steps; true: stop at the next safe point */
    bool (*cancelled)(void *opaque);
    void *opaque;
    /* after each segment (delta of that segment); may be NULL */
    void (*progress)(void *opaque, const archive_counts_t *delta);
} archive_env_t;

typedef enum {
    ARCHIVE_OK = 0,        /* nothing older than the cutoff is left */
    ARCHIVE_CANCELLED = 1, /* stopped at a safe point; run again to go on */
    ARCHIVE_TRANSIENT = 3, /* im-repo or storage failed; run again later */
    ARCHIVE_FATAL = 4,     /* needs a person (corrupt checkpoint/segment, bad data) */
} archive_rc_t;

/* The checkpoint of a job (<prefix>/<job>/checkpoint.json). */
typedef struct {
    uint64_t next_seq;
    char cursor[SEG_CURSOR_MAX + 1];
    uint64_t archived_total;
    uint64_t segments_total;
    char last_run[160];
    bool last_run_done;
    int64_t updated_at_ms;
} archive_checkpoint_t;

void archive_limits_default(archive_limits_t *l);

archive_rc_t archive_run(const archive_env_t *env, const archive_limits_t *lim, const char *job,
                         const char *run_id, int64_t cutoff_ms, archive_counts_t *counts, char *err,
                         size_t errlen);

/* Read the checkpoint: 0, 1 when there is none (*cp zeroed), -1 on error. */
int archive_checkpoint_load(store_t *s, const char *prefix, const char *job,
                            archive_checkpoint_t *cp, char *err, size_t errlen);
int archive_checkpoint_parse(const char *json, size_t len, archive_checkpoint_t *cp, char *err,
                             size_t errlen);
char *archive_checkpoint_to_json(const char *job, const archive_checkpoint_t *cp);

#endif
