/* storage_s3.c: the S3-compatible backend of storage.h (libcurl, SigV4). */
#include <stdio.h>

#include "storage_internal.h"

void *store_s3_open(const store_config_t *c, char *desc, size_t desclen, char *err, size_t errlen)
{
    (void)c;
    (void)desc;
    (void)desclen;
    snprintf(err, errlen, "storage: kind s3 is not available yet");
    return NULL;
}

const store_backend_ops_t store_s3_ops = {0};
