/* etcd.h: the few etcd v3 calls leader election needs, through etcd's JSON
 * gateway (/v3/...) with libcurl: leases, a create-if-absent transaction, a
 * put guarded by another key's value, get, delete.
 *
 * (libs/repoclient/src/discovery.c talks to the same gateway for range and
 * watch; its code is private to the im-repo client and streams, so this is a
 * small blocking client of its own; the two could share one later.)
 *
 * Keys and values are text (at most SCHED_ETCD_VALUE_MAX bytes), base64-coded
 * on the wire by OpenSSL. 64-bit ids travel as JSON strings (never through a
 * double). Endpoints are tried in turn: a failed call moves to the next one.
 * One handle is used by one thread at a time.
 */
#ifndef SCHEDULE_ETCD_H
#define SCHEDULE_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHED_ETCD_KEY_MAX 256
#define SCHED_ETCD_VALUE_MAX 1024
#define SCHED_ETCD_MAX_ENDPOINTS 8

typedef struct sched_etcd_s sched_etcd_t;

/* endpoints: "http://host:port[,http://...]". Each call gives up after
 * timeout_ms. cancel (may be NULL) is asked during transfers; true aborts. */
int sched_etcd_new(const char *endpoints, int64_t timeout_ms, bool (*cancel)(void *opaque),
                   void *opaque, sched_etcd_t **out, char *err, size_t errlen);
void sched_etcd_destroy(sched_etcd_t **ep); /* NULL is a no-op */

/* Returns 0 or -1 with err; every call below. */
int sched_etcd_lease_grant(sched_etcd_t *e, int64_t ttl_s, int64_t *lease_id, char *err,
                           size_t errlen);
/* One keep-alive; *ttl_left is the remaining TTL in seconds, 0 when the lease
 * no longer exists (expired or revoked). */
int sched_etcd_lease_keepalive(sched_etcd_t *e, int64_t lease_id, int64_t *ttl_left, char *err,
                               size_t errlen);
int sched_etcd_lease_revoke(sched_etcd_t *e, int64_t lease_id, char *err, size_t errlen);

/* Create key=value with the lease if the key does not exist
 * (create_revision == 0). *created says whether it did; the key's current
 * value (ours or the holder's) goes to holder (>= SCHED_ETCD_VALUE_MAX). */
int sched_etcd_create(sched_etcd_t *e, const char *key, const char *value, int64_t lease_id,
                      bool *created, char *holder, size_t holderlen, char *err, size_t errlen);
/* Put key=value only while guard_key holds guard_value; *done says so. */
int sched_etcd_put_guarded(sched_etcd_t *e, const char *guard_key, const char *guard_value,
                           const char *key, const char *value, bool *done, char *err,
                           size_t errlen);
int sched_etcd_put(sched_etcd_t *e, const char *key, const char *value, char *err, size_t errlen);
/* *found false when the key does not exist. */
int sched_etcd_get(sched_etcd_t *e, const char *key, char *value, size_t valuelen, bool *found,
                   char *err, size_t errlen);
/* Delete key only while it holds value (a leader resigning). */
int sched_etcd_delete_if(sched_etcd_t *e, const char *key, const char *value, char *err,
                         size_t errlen);

#endif
