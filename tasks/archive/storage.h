/* storage.h: where imtask-archive writes what it keeps (archive segments,
 * manifests, checkpoints, reports): a local directory (a Kubernetes volume,
 * the default) or an S3-compatible bucket (libcurl signs AWS SigV4).
 *
 * Keys are relative paths of '/'-separated parts of [A-Za-z0-9._=@:+-]
 * (no empty part, no part starting with "." (temporary files), at most
 * STORE_KEY_MAX bytes); a bad key is
 * an error, never a path outside the store.
 *
 * Config, section `storage:` (env IMTASK_STORAGE_<KEY>, docs/archive.md):
 *   kind: local | s3                      (local)
 *   dir: the local directory              (./imtask-store)
 *   s3_endpoint, s3_bucket, s3_region (us-east-1), s3_prefix (""),
 *   s3_access_key_id, s3_secret_access_key (secret), s3_timeout (30s),
 *   max_object_bytes (store_get's bound, 256 MiB)
 *
 * Thread-safety: a store_t may be used from several threads at once. */
#ifndef IMTASK_ARCHIVE_STORAGE_H
#define IMTASK_ARCHIVE_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "infra/config.h"

#define STORE_KEY_MAX 512

typedef struct store_s store_t;

typedef enum { STORE_LOCAL = 0, STORE_S3 = 1 } store_kind_t;

/* The `storage:` section as bound (strings owned by the cfg_t or static). */
typedef struct {
    int kind; /* store_kind_t */
    const char *dir;
    const char *s3_endpoint;
    const char *s3_bucket;
    const char *s3_region;
    const char *s3_prefix;
    const char *s3_access_key_id;
    const char *s3_secret_access_key;
    int64_t s3_timeout_ms;
    int64_t max_object_bytes;
} store_config_t;

/* Binds the `storage:` config section (kind: local|s3; dir; s3_endpoint,
 * s3_bucket, s3_region, s3_prefix, s3_access_key_id, s3_secret_access_key
 * (CFG_SECRET), ...). Safe to call from both processors' configure(): the
 * first call binds, later calls with the same cfg return the same (a call
 * with another cfg, e.g. in tests, rebinds). */
int store_configure(cfg_t *cfg, char *err, size_t errlen);
store_t *store_shared(void); /* the configured store, after configure; opened lazily; NULL if
                                unconfigured or it cannot be opened (logged) */
/* Drops the shared store (tests, end of main). */
void store_shared_reset(void);

/* Bind `section` of cfg into c (store_configure uses "storage"). */
int store_config_bind(cfg_t *cfg, const char *section, store_config_t *c, char *err, size_t errlen);
/* Open a store from a config (the local directory is created if missing). */
store_t *store_open(const store_config_t *c, char *err, size_t errlen);
/* A local-directory store with default bounds. */
store_t *store_open_local(const char *dir, char *err, size_t errlen);
void store_close(store_t *s); /* NULL is a no-op */
/* "local:<dir>" or "s3:<endpoint>/<bucket>/<prefix>", for logs. */
const char *store_describe(const store_t *s);

/* Durable write: the object exists completely or not at all (local: write
 * tmp, fsync, rename, fsync dir; S3: PUT with Content-MD5, 200). An existing
 * object is replaced. */
int store_put(store_t *s, const char *key, const void *data, size_t len, const char *content_type,
              char *err, size_t errlen);
/* The same, but only if the key does not exist yet (local: link(2) of the
 * written temporary file; S3: If-None-Match: *). Returns 0 when created, 1
 * when the key existed (nothing written), -1 on error. */
int store_put_new(store_t *s, const char *key, const void *data, size_t len,
                  const char *content_type, char *err, size_t errlen);
/* Returns 0 and a malloc'd copy (caller frees *data; one extra NUL byte
 * after len, not counted); 1 when the key does not exist; -1 on error
 * (including an object larger than max_object_bytes). */
int store_get(store_t *s, const char *key, void **data, size_t *len, char *err, size_t errlen);
/* Calls each(opaque, key, size) for every key starting with prefix (a plain
 * string prefix, e.g. "job/segments/"), in ascending byte order of keys;
 * each returning non-zero stops the listing (store_list returns 0). */
int store_list(store_t *s, const char *prefix,
               int (*each)(void *opaque, const char *key, uint64_t size), void *opaque, char *err,
               size_t errlen);
/* Removes a key; removing a missing key is not an error. */
int store_delete(store_t *s, const char *key, char *err, size_t errlen);

/* 1 when key is acceptable (see above). */
int store_key_ok(const char *key);

#endif
