/* storage_internal.h: the backend table behind storage.h (storage_local.c,
 * storage_s3.c); private to //tasks/archive:storage. */
#ifndef IMTASK_ARCHIVE_STORAGE_INTERNAL_H
#define IMTASK_ARCHIVE_STORAGE_INTERNAL_H

#include "storage.h"

typedef struct {
    /* only_new: create only if absent (0 created, 1 existed) */
    int (*put)(void *b, const char *key, const void *data, size_t len, const char *content_type,
               int only_new, char *err, size_t errlen);
    int (*get)(void *b, const char *key, size_t max, void **data, size_t *len, char *err,
               size_t errlen);
    int (*list)(void *b, const char *prefix,
                int (*each)(void *opaque, const char *key, uint64_t size), void *opaque, char *err,
                size_t errlen);
    int (*del)(void *b, const char *key, char *err, size_t errlen);
    void (*close)(void *b);
} store_backend_ops_t;

void *store_local_open(const store_config_t *c, char *desc, size_t desclen, char *err,
                       size_t errlen);
extern const store_backend_ops_t store_local_ops;

void *store_s3_open(const store_config_t *c, char *desc, size_t desclen, char *err, size_t errlen);
extern const store_backend_ops_t store_s3_ops;

#endif
