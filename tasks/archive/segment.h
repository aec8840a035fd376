/* segment.h: archive segments: im-repo messages as NDJSON (one JSON object a
 * line), zstd-compressed, with a manifest (docs/archive.md "Format").
 *
 * A writer streams messages into a zstd frame held in memory (bounded by the
 * caller's limits: the NDJSON bytes and message count it allows before it
 * finishes the segment), hashing the NDJSON as it goes; seg_writer_finish()
 * ends the frame and fills in the manifest. seg_verify() reads a segment back
 * (decompressing in a bounded window) and checks it against its manifest. */
#ifndef IMTASK_ARCHIVE_SEGMENT_H
#define IMTASK_ARCHIVE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/im_repo_v1/im_repo.pb-c.h"

#define SEG_FORMAT "imtask-archive-segment"
#define SEG_FORMAT_VERSION 1
#define SEG_ID_MAX 256      /* bytes of a message id kept in a manifest */
#define SEG_CURSOR_MAX 1024 /* bytes of an im-repo cursor kept in a manifest */
#define SEG_JOB_MAX 64

typedef struct {
    int version;                   /* SEG_FORMAT_VERSION */
    char job[SEG_JOB_MAX + 1];     /* the archive job */
    char run[160];                 /* the task id of the run that wrote it */
    uint64_t seq;                  /* 0, 1, 2 ... within the job */
    char object[64];               /* the segment object: <seq>.<token>.ndjson.zst */
    uint64_t count;                /* messages (NDJSON lines) */
    char first_id[SEG_ID_MAX + 1]; /* the first message's id (listing order) */
    char last_id[SEG_ID_MAX + 1];  /* the last message's id */
    int64_t min_created_at;        /* Unix ms, over the messages */
    int64_t max_created_at;
    int64_t cutoff_ms;                     /* the run's "created before" bound */
    char start_cursor[SEG_CURSOR_MAX + 1]; /* im-repo cursor the listing started at */
    char end_cursor[SEG_CURSOR_MAX + 1];   /* cursor after its last message ("" = from the start) */
    uint64_t ndjson_bytes;
    char ndjson_sha256[65]; /* hex */
    uint64_t zst_bytes;
    char zst_sha256[65]; /* hex, of the object as stored */
    int64_t written_at_ms;
} seg_manifest_t;

typedef struct seg_writer_s seg_writer_t;

/* level: zstd level (1..19; 0 = zstd's default). */
seg_writer_t *seg_writer_new(int level, char *err, size_t errlen);
void seg_writer_destroy(seg_writer_t *w); /* NULL is a no-op */
/* Start a new segment (drops what the writer held). */
void seg_writer_reset(seg_writer_t *w);
/* Append one message as a line. Returns 0 or -1 (err: out of memory, zstd). */
int seg_writer_add(seg_writer_t *w, const ImRepo__V1__Message *m, char *err, size_t errlen);
uint64_t seg_writer_count(const seg_writer_t *w);
uint64_t seg_writer_ndjson_bytes(const seg_writer_t *w);
/* The id of the i-th message added (valid until reset/destroy). */
const char *seg_writer_id(const seg_writer_t *w, uint64_t i);
/* End the frame; fills count, ids, time range, sizes and hashes of m (the
 * caller sets job, run, seq, cursors, cutoff). data, len: the compressed
 * object, owned by the writer (valid until reset/destroy). */
int seg_writer_finish(seg_writer_t *w, seg_manifest_t *m, const void **data, size_t *len, char *err,
                      size_t errlen);

/* One message as a JSON object (no newline) appended to out (see
 * docs/archive.md for the fields). Exposed for tests. Returns bytes written,
 * or 0 when cap is too small. */
size_t seg_message_json(const ImRepo__V1__Message *m, char *out, size_t cap);

/* Decompress a whole segment, calling line(opaque, text, len) for each NDJSON
 * line (without the newline; text is not NUL-terminated); lines longer than
 * max_line are an error. A non-zero return of line stops with that value.
 * Computes count, ndjson bytes and sha256 into the out-parameters (any may be
 * NULL). Returns 0, -1 on a corrupt frame or bad line, or line's value. */
int seg_decode(const void *zst, size_t len, size_t max_line,
               int (*line)(void *opaque, const char *text, size_t n), void *opaque, uint64_t *count,
               uint64_t *ndjson_bytes, char ndjson_sha256[65], char *err, size_t errlen);

/* Check a stored segment against its manifest: size and sha256 of the
 * compressed bytes, then decompress: line count, NDJSON size and sha256.
 * Returns 0, or -1 with what differs in err. */
int seg_verify(const seg_manifest_t *m, const void *zst, size_t len, char *err, size_t errlen);

/* sha256 of data as 64 hex digits + NUL. */
void seg_sha256_hex(const void *data, size_t len, char out[65]);

/* Manifest <-> JSON (malloc'd text, caller frees). Parsing checks the format
 * name, version and every field's type; unknown fields are ignored. */
char *seg_manifest_to_json(const seg_manifest_t *m);
int seg_manifest_parse(const char *json, size_t len, seg_manifest_t *m, char *err, size_t errlen);

/* Keys: <prefix>/<job>/segments/<seq, 12 digits>.<token>.ndjson.zst (each
 * try of a segment its own object, named by a random token, so a try never
 * overwrites another), <prefix>/<job>/segments/<seq>.manifest.json (created
 * only if absent: the commit), <prefix>/<job>/checkpoint.json. Return 0, or
 * -1 when the key would not fit cap. */
#define SEG_TOKEN_LEN 16
void seg_token_new(char token[SEG_TOKEN_LEN + 1]); /* random hex */
int seg_object_name(char *out, size_t cap, uint64_t seq, const char *token);
int seg_key_data(char *out, size_t cap, const char *prefix, const char *job, const char *object);
int seg_key_manifest(char *out, size_t cap, const char *prefix, const char *job, uint64_t seq);
int seg_key_checkpoint(char *out, size_t cap, const char *prefix, const char *job);
/* The seq of a segment key or object name (data or manifest), or -1 if it
 * is not one. */
int64_t seg_key_seq(const char *key, int *is_manifest);
/* 1 when job is a valid job name: [A-Za-z0-9._-], 1..SEG_JOB_MAX, not
 * starting with '.'. */
int seg_job_ok(const char *job);

#endif
