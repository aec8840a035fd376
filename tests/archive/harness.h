/* harness.h: helpers of the archive integration tests: the environment of the
 * local stack, the im-repo double's message admin, a store (local or the S3
 * server) to check, reading every segment of a job back and checking it,
 * Kafka topics and ScheduledRun tasks, imtask-archive children. Every wait is
 * bounded; nothing asserts a duration. */
#ifndef TESTS_ARCHIVE_HARNESS_H
#define TESTS_ARCHIVE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "repoclient/repoclient.h"
#include "tasks/archive/archive_run.h"
#include "tasks/archive/storage.h"

#define H_EPOCH_MS 1735689600000LL /* the double's first message, m0 */
#define H_STEP_MS 60000LL          /* one message a minute */

typedef struct {
    const char *brokers;
    const char *imrepo_addr;
    const char *imrepo_admin;
    const char *s3_endpoint; /* NULL unless the case needs it */
    const char *archive_bin;
    char tmp[400];
} h_env_t;

extern h_env_t h_env;

/* Reads the environment; fails the test with a clear message when a
 * variable is missing. need_s3: IMTASK_S3_ENDPOINT too. */
void h_env_load(const char *archive_bin, bool need_s3);

int64_t h_now_ms(void);
void h_sleep_ms(int64_t ms);

/* HTTP through libcurl: returns the status, the body in out (may be NULL). */
int h_http(const char *method, const char *url, char *out, size_t outlen);

/* The double: history of n messages, deletions forgotten; latency of every
 * call (0: none). h_double_deleted: how many deletions it holds. */
void h_double_seed(int64_t n);
void h_double_latency(int latency_ms);
int64_t h_double_deleted(void);
void h_double_restore(void); /* back to the stack's defaults (100000, no deletions) */

repo_client_t *h_repo(void);
/* Ids (as numbers i of "m<i>") im-repo still lists before `before`, as a
 * bitmap of n bits (caller frees); *count the number listed. */
uint8_t *h_repo_listed(repo_client_t *r, int64_t before, int64_t n, int64_t *count);

/* A store for a case: local under h_env.tmp/<name>, or the S3 server with a
 * fresh prefix (bucket "imtask-test" created if missing). The YAML lines of
 * its `storage:` section go to yaml. */
store_t *h_store_open(const char *name, bool s3, char *yaml, size_t yamlcap);

/* Every segment of a job read back: each manifest parsed, each segment
 * verified against it; ids "m<i>" with i < n marked in seen (counts per id,
 * n bytes). Returns the number of segments; fails the test on any error. */
typedef struct {
    int64_t segments;
    int64_t messages;
    uint8_t *seen; /* per id: times seen (saturating at 255) */
    int64_t n;
    int64_t foreign;     /* ids outside 0..n-1 */
    int64_t uncommitted; /* segment objects no manifest names */
} h_archive_t;
void h_archive_read(store_t *s, const char *prefix, const char *job, int64_t n, h_archive_t *out);
void h_archive_free(h_archive_t *a);

/* Kafka */
typedef struct {
    char base[128];
    char topic[160], retry[160], dlq[160], group[160];
} h_topics_t;
void h_topics_create(h_topics_t *t, const char *tag);
void h_topics_delete(h_topics_t *t);
/* An archive task: ScheduledRun{job, slot, params} with id "<job>@<slot>". */
void h_produce_run(const h_topics_t *t, const char *job, int64_t slot_ms, const char *const *params,
                   size_t nparams);
int64_t h_topic_count(const char *topic);

/* imtask-archive children */
typedef struct {
    pid_t pid;
    char cfg[600];
    char log[600];
    int port;
} h_child_t;
void h_child_start(h_child_t *c, const h_topics_t *t, const char *storage_yaml,
                   const char *archive_yaml, const char *dir);
void h_child_kill9(h_child_t *c);
void h_child_stop(h_child_t *c); /* SIGTERM, must exit 0 */
void h_child_check_alive(h_child_t *c);

#endif
