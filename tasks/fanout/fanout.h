/* fanout.h: the large-group fan-out processor (task type `fanout`), private
 * to tasks/fanout. See docs/fanout.md for the design, formats and config.
 *
 * Modules:
 *   conf.c       the `fanout:` section: fields, validation, im-repo metadata
 *   downlink.c   gateway topic names, the two downlink encodings
 *   exclude.c    the set of users who get nothing (sender, excluded ids)
 *   notify.c     push tasks for offline members (notification, batching)
 *   pager.c      the pipelined member walk of one slice through im-repo
 *   processor.c  the ops table: plan shards, run a slice, chain the next
 */
#ifndef TASKS_FANOUT_FANOUT_H
#define TASKS_FANOUT_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dispatch/dispatch.h"
#include "infra/config.h"
#include "infra/metrics.h"
#include "proto/fanout.pb-c.h"
#include "proto/im_repo_v1/im_repo.pb-c.h"
#include "proto/push.pb-c.h"
#include "repoclient/repoclient.h"

/* ---- configuration (conf.c) ------------------------------------------- */

typedef enum {
    FANOUT_FORMAT_RECIPIENT = 0, /* one DownstreamMessage per recipient */
    FANOUT_FORMAT_BATCH = 1,     /* one DownstreamBatch per gateway per page */
} fanout_format_t;

typedef enum {
    FANOUT_KEY_GROUP = 0, /* the group id: a group's downlinks in one partition per gateway */
    FANOUT_KEY_USER = 1,  /* target_user_id: a user's downlinks in one partition */
} fanout_key_t;

typedef enum {
    FANOUT_PUSH_PRIORITY_HIGH = 0,
    FANOUT_PUSH_PRIORITY_NORMAL = 1,
} fanout_push_priority_t;

#define FANOUT_MAX_METADATA 8 /* extra im-repo metadata entries */
#define FANOUT_TOPIC_MAX 249  /* Kafka's limit on a topic name */
#define FANOUT_GATEWAY_PLACEHOLDER "{gateway_id}"
/* Header on every downlink record: its format, "recipient" or "batch". */
#define FANOUT_HDR_FORMAT "downlink_format"

typedef struct {
    int format;     /* fanout_format_t */
    int record_key; /* fanout_key_t: the key of recipient records */
    const char *topic_template;
    int64_t batch_size;      /* members per GetGroupMembers page */
    int64_t slice_pages;     /* pages per slice (one transaction), at most */
    int64_t slice_time_ms;   /* a slice takes no new page after this long */
    int64_t pages_in_flight; /* pages fetched or being fetched, not yet produced (all walks) */
    int64_t shard_members;   /* a group above this many members is split */
    int64_t max_shards;
    int64_t walks; /* im-repo shards a shard task reads side by side */
    int64_t max_excluded;
    int64_t max_message_bytes;  /* encoded downlink message, without the recipient */
    int64_t imrepo_timeout_ms;  /* deadline of each im-repo call */
    cfg_list_t imrepo_metadata; /* "name=value" entries */

    bool push_enabled;
    int64_t push_batch; /* user ids per push task */
    const char *push_title;
    bool push_show_content;
    const char *push_body; /* when the content is not shown */
    int64_t push_body_max; /* bytes of content in the body */
    const char *push_sound;
    int push_priority;   /* fanout_push_priority_t */
    int64_t push_ttl_ms; /* 0: the provider's default */

    /* parsed from imrepo_metadata */
    repo_md_t md[FANOUT_MAX_METADATA];
    size_t nmd;
    char md_buf[REPO_MAX_MD_BYTES];
} fanout_conf_t;

/* Bind and validate the `fanout:` section. Returns 0, or -1 with err naming
 * the file and key. */
int fanout_conf_bind(fanout_conf_t *c, cfg_t *cfg, char *err, size_t errlen);
/* Check values against each other and parse the metadata (also for tests).
 * origin names the config file in messages. */
int fanout_conf_check(fanout_conf_t *c, const char *origin, char *err, size_t errlen);

/* ---- downlinks (downlink.c) --------------------------------------------- */

/* The topic of a gateway: the template with {gateway_id} replaced. Returns
 * its length, or -1 when the gateway id is empty, makes a name longer than
 * FANOUT_TOPIC_MAX, or holds a character Kafka refuses ([a-zA-Z0-9._-]). */
int fanout_topic_name(const char *tmpl, const char *gateway_id, char *out, size_t outlen);
/* 0 when the template holds exactly one {gateway_id} and otherwise only
 * characters a topic name may hold. */
int fanout_topic_template_check(const char *tmpl, char *err, size_t errlen);

/* A growable byte buffer with a maximum size. */
typedef struct {
    uint8_t *data;
    size_t len, cap, max;
} fanout_buf_t;

void fanout_buf_free(fanout_buf_t *b);

/* The message packed once without a recipient (DownstreamMessage with
 * target_user_id empty): the part every downlink of a fan-out shares. */
int fanout_message_pack(const Imtask__V1__DownstreamMessage *m, fanout_buf_t *out);
/* A per-recipient record: target_user_id (field 2) then the packed message.
 * Returns 0, or -1 past the buffer's maximum. */
int fanout_encode_recipient(const fanout_buf_t *packed, const char *user_id, fanout_buf_t *out);
/* A batch record: DownstreamBatch{message, target_user_ids, gateway_id,
 * group_id}, hand-encoded around the packed message. */
int fanout_encode_batch(const fanout_buf_t *packed, const char *const *user_ids, size_t n,
                        const char *gateway_id, const char *group_id, fanout_buf_t *out);

/* ---- exclusions (exclude.c) --------------------------------------------- */

/* A set of user ids (pointers to strings the caller keeps alive). */
typedef struct {
    const char **slots;
    size_t cap, count;
} fanout_exclude_t;

/* Room for n ids. Returns 0 or -1 (memory). */
int fanout_exclude_init(fanout_exclude_t *s, size_t n);
void fanout_exclude_add(fanout_exclude_t *s, const char *id); /* "" and NULL ignored */
bool fanout_exclude_has(const fanout_exclude_t *s, const char *id);
void fanout_exclude_free(fanout_exclude_t *s);

/* ---- push tasks (notify.c) ---------------------------------------------- */

/* The longest prefix of s of at most max bytes that ends on a UTF-8
 * character boundary. */
size_t fanout_utf8_prefix(const char *s, size_t max);

/* Offline members collected into push tasks of at most `batch` user ids. */
typedef struct {
    size_t batch;
    char **ids;
    size_t n;
    uint32_t seq; /* push tasks flushed so far */
} fanout_push_batch_t;

int fanout_push_batch_init(fanout_push_batch_t *pb, size_t batch);
/* Add a copy of id. Returns 1 when the batch is full (flush it), 0, or -1. */
int fanout_push_batch_add(fanout_push_batch_t *pb, const char *id);
/* Encode the collected ids as a PushTask with the notification, then empty
 * the batch. *out is malloc'd (the caller frees). */
int fanout_push_batch_encode(fanout_push_batch_t *pb, const Imtask__V1__PushNotification *n,
                             const char *group_id, uint8_t **out, size_t *outlen);
void fanout_push_batch_free(fanout_push_batch_t *pb);

/* The notification for a message, by the conf. Strings point into msg, conf
 * and body (>= conf->push_body_max + 1 bytes), data entries into the
 * caller's arrays (dkv >= 3 entries, dptr >= 3, seqbuf >= 24 bytes). */
void fanout_notification_init(Imtask__V1__PushNotification *n, const fanout_conf_t *conf,
                              const Imtask__V1__DownstreamMessage *msg, char *body,
                              Imtask__V1__PushNotification__DataEntry *dkv,
                              Imtask__V1__PushNotification__DataEntry **dptr, char *seqbuf);

/* ---- the member walk of one slice (pager.c) ------------------------------ */

typedef struct fanout_metrics_s fanout_metrics_t;

/* One page, handed to on_page in order: ids are the page's members that are
 * not excluded (pointers into the members response), statuses[i] belongs to
 * ids[i] (checked). */
typedef struct {
    const ImRepo__V1__GetGroupMembersResponse *members;
    const char *const *ids;
    size_t nids;
    ImRepo__V1__OnlineStatus *const *statuses;
    size_t excluded; /* members of the page left out */
} fanout_page_t;

/* Walks of one slice at most (fanout.walks). */
#define FANOUT_WALKS_MAX 16
/* im-repo shards of one fan-out at most (max_shards x walks) */
#define FANOUT_REPO_SHARDS_MAX 1024

/* One member walk: im-repo shard `shard` of the pager's shard_count, read
 * page by page from a cursor. */
typedef struct {
    uint32_t shard;
    char *cursor; /* opts: where it starts ("" its first page); result: where
                   * the next slice starts, malloc'd when more */
    bool more;    /* result: the walk has members after this slice */
} fanout_walk_t;

typedef struct {
    repo_client_t *rc;
    const char *group_id;
    uint32_t shard_count; /* of im-repo; 1: the whole group */
    /* the walks, side by side: each a chain of member calls, its pages
     * interleaved with the others' (1 to FANOUT_WALKS_MAX) */
    const fanout_walk_t *walks;
    int nwalks;
    int batch_size, max_pages, pages_in_flight; /* of all walks together */
    int64_t issue_until_ms; /* monotonic: no page is begun after it (the first always is); 0 none */
    int64_t timeout_ms;
    const repo_md_t *md; /* metadata of every call (traceparent, configured) */
    size_t nmd;
    const fanout_exclude_t *exclude;
    fanout_metrics_t *metrics; /* may be NULL */
    /* On the calling thread, in page order. Non-zero stops the walk (the
     * message in err). */
    int (*on_page)(void *opaque, const fanout_page_t *page, char *err, size_t errlen);
    /* Polled while waiting: true stops the walk. May be NULL. */
    bool (*cancelled)(void *opaque);
    void *opaque;
} fanout_pager_opts_t;

typedef enum {
    FANOUT_PAGER_OK = 0,
    FANOUT_PAGER_REPO = 1,      /* an im-repo call failed: status and method */
    FANOUT_PAGER_CALLBACK = 2,  /* on_page returned non-zero: err */
    FANOUT_PAGER_CANCELLED = 3, /* cancelled() said so */
} fanout_pager_outcome_t;

typedef struct {
    fanout_pager_outcome_t outcome;
    int pages;                             /* handed to on_page */
    bool more;                             /* some walk has more members after this slice */
    fanout_walk_t walks[FANOUT_WALKS_MAX]; /* opts' walks, in order, with their ends */
    int nwalks;
    repo_status_t status; /* FANOUT_PAGER_REPO */
    const char *method;   /* FANOUT_PAGER_REPO: "GetGroupMembers", ... */
    char err[DISPATCH_REASON_MAX];
} fanout_pager_result_t;

/* Walk up to max_pages pages from the walks' cursors: each walk's next
 * GetGroupMembers is in flight while earlier pages' GetMembersOnlineStatus
 * calls run and on_page produces; at most pages_in_flight pages are held. Returns when every call
 * it started has ended; the caller frees the result with fanout_pager_result_free. */
void fanout_pager_run(const fanout_pager_opts_t *o, fanout_pager_result_t *r);
void fanout_pager_result_free(fanout_pager_result_t *r);

/* ---- metrics (processor.c) ---------------------------------------------- */

struct fanout_metrics_s {
    metrics_family_t *recipients; /* gateway, format */
    metrics_series_t *downlinks[2];
    metrics_series_t *offline, *push_tasks, *excluded, *pages, *bad_gateway;
    metrics_series_t *slices_done, *slices_retry, *slices_dead;
    metrics_series_t *shards, *skipped_deleted, *skipped_blocked;
    metrics_family_t *imrepo_seconds; /* method */
    metrics_family_t *imrepo_errors;  /* method, code */
    metrics_series_t *shard_seconds;
};

/* The latency of a call and its error (code != OK), by method. NULL m: no-op. */
void fanout_metrics_call(fanout_metrics_t *m, const char *method, int64_t ms,
                         const repo_status_t *st);

/* The ops table registered as `fanout`. */
extern const dispatch_ops_t fanout_ops;

#endif
