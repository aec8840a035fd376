/* harness.h: what the fan-out integration tests (and the benchmark) need
 * around the binary under test: the real broker of the local stack (topics
 * through the Admin API, task records, read_committed reading, committed
 * offsets), a PRIVATE im-repo double (the stack's binary started on free
 * ports with its own data knobs, counters and faults, so nothing disturbs
 * or is disturbed by other users of the shared one), and imtask-fanout
 * children (fork/exec with a YAML config, log kept for failures).
 *
 * Failures call cmocka's fail_msg (the harness is for cmocka tests) unless
 * h_soft_fail is set, then they print and exit(1) (the benchmark).
 */
#ifndef TESTS_FANOUT_HARNESS_H
#define TESTS_FANOUT_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#define H_NAME_MAX 200

void h_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define H_CHECK(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            h_fail(__VA_ARGS__);                                                                   \
    } while (0)

extern bool h_soft_fail;      /* exit(1) instead of fail_msg */
extern const char *h_brokers; /* IMTASK_KAFKA_BROKERS */
extern char h_tmp[PATH_MAX];  /* a temporary directory of this run */

int64_t h_mono_ms(void);
int64_t h_wall_ms(void);
void h_sleep_ms(int64_t ms);

/* Brokers from the environment, a temporary directory, signals (children
 * and the double never outlive the run), the broker answering. 0 or -1. */
int h_setup(const char *what);

/* ---- kafka ----------------------------------------------------------------- */

/* kv: NULL-terminated key, value pairs. */
rd_kafka_t *h_kafka_new(rd_kafka_type_t type, const char *const *kv);
/* Create topics (and wait until every partition has a leader). */
void h_topics_create(const char *const *names, const int *parts, int n);
void h_topics_delete(const char *const *names, int n);
void h_group_delete(const char *group);

typedef struct {
    rd_kafka_t *rk;
    int queued, delivered, failed;
    char first_error[256];
} h_prod_t;

void h_prod_open(h_prod_t *p);
/* A task envelope (imtask.v1.Task) with the runtime's headers. */
void h_prod_task(h_prod_t *p, const char *topic, const char *key, const char *type, const char *id,
                 const void *payload, size_t len);
void h_prod_raw(h_prod_t *p, const char *topic, const char *key, const void *v, size_t len);
/* Flush and require every record acknowledged. */
void h_prod_close(h_prod_t *p);

/* Every committed record (isolation.level=read_committed) of the topics from
 * their beginning to their ends (bounded by timeout_s); fn per record. */
typedef void (*h_msg_fn)(void *ctx, const rd_kafka_message_t *m);
void h_read_all(const char *const *topics, const int *parts, int n, h_msg_fn fn, void *ctx,
                int timeout_s);
/* The same with isolation.level=read_uncommitted when uncommitted: aborted
 * records too. */
void h_read_all_iso(const char *const *topics, const int *parts, int n, h_msg_fn fn, void *ctx,
                    int timeout_s, bool uncommitted);
/* The sum of the high watermarks of the topics (records written so far,
 * committed or not, plus transaction markers). */
int64_t h_high_sum(const char *const *topics, const int *parts, int n);
/* How many partitions of the topics have an open transaction (the last
 * stable offset is below the high watermark); where (may be NULL) names the
 * first. A killed producer's transaction stays open until the broker aborts
 * it (transaction.timeout.ms, checked every 10 s by default), and
 * read_committed readers, the runtime's consumers included, stop at it. */
int h_open_txns(const char *const *topics, const int *parts, int n, char *where, size_t len);
/* The group's committed offsets on topic (-1 where none). */
void h_committed(const char *group, const char *topic, int nparts, int64_t *out);
/* The last header `name` as a string, "" when absent. */
const char *h_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t len);

/* ---- the private im-repo double ----------------------------------------------- */

typedef struct {
    pid_t pid;
    int port;
    char addr[64];  /* gRPC h2c */
    char admin[80]; /* http://127.0.0.1:port+1 */
    char log[PATH_MAX];
} h_double_t;

/* Start the stack's double binary (IMTASK_IMREPO_DOUBLE_BIN, or the running
 * stack double found through $IMTASK_STACK_DIR/imrepo.pid) on free ports,
 * not registered in etcd. */
void h_double_start(h_double_t *d, double online_ratio, int gateways);
void h_double_stop(h_double_t *d);
/* GET (post false) or POST an admin path; the parsed answer (caller deletes). */
cJSON *h_double_admin(h_double_t *d, bool post, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Calls (and batch items when items != NULL) of a method since the last
 * /stats/reset, e.g. "/im_repo.v1.GroupService/GetGroupMembers". */
int64_t h_double_calls(h_double_t *d, const char *method, int64_t *items);

/* ---- children ------------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    bool running;
    int status;
    char name[32];
    char cfg[PATH_MAX], log[PATH_MAX];
} h_child_t;

/* Write yaml into dir/name.yaml and run bin --config it, output into
 * dir/name.log. The child gets SIGKILL if the test dies. */
void h_child_start(h_child_t *ch, const char *bin, const char *dir, const char *name,
                   const char *yaml);
/* Fails when the child ended on its own. */
void h_child_check(h_child_t *ch);
/* Send sig (0: none) and wait, bounded; returns the wait status. */
int h_child_stop(h_child_t *ch, int sig);
void h_child_kill(h_child_t *ch); /* SIGKILL + reap, if running */
void h_child_print_log(const h_child_t *ch, int lines);
/* A free TCP port on 127.0.0.1. */
int h_free_port(void);
/* GET http://127.0.0.1:port/metrics and return the value of the first line
 * starting with prefix (e.g. "imtask_fanout_pages_total "), or -1. */
double h_metric(int port, const char *prefix);
/* The whole /metrics text (caller frees), or NULL. */
char *h_metrics_text(int port);
/* The value of the first line of a /metrics text starting with prefix, or -1. */
double h_metric_in(const char *text, const char *prefix);
/* CPU time (user + system) a process used so far, seconds; -1 when gone. */
double h_cpu_seconds(pid_t pid);
/* Peak resident set of a process (VmHWM), kB; -1 when gone. */
long h_peak_rss_kb(pid_t pid);

#endif
