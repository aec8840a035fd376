/* tests/support: helpers the integration tests and benchmarks share.
 *
 *   ts_kafka_create   make a test's topics and wait until every partition
 *                     has a leader
 *   ts_kafka_delete   remove what a test made on the broker (its topics,
 *                     its consumer group) when it ends
 *   ts_file_has       whether a log or output file contains a text
 *   ts_spawn          start a binary under test with its output in a log,
 *                     never outliving the test
 *   ts_print_tail     show the end of a child's log when a test fails
 *   ts_free_port      a free TCP port on loopback for a child to listen on
 *   ts_kafka_read     every record of some topics, read_committed or not
 *   ts_kafka_open_txns how many partitions have a transaction open
 *   ts_http           one HTTP request to a double's admin API or a metrics
 *                     endpoint
 *   ts_metric         one series' value on a binary's /metrics
 *
 * Clean-up never fails a test: a broker that does not answer is noted on
 * stderr and the test goes on. */
#ifndef IMTASK_TESTS_SUPPORT_H
#define IMTASK_TESTS_SUPPORT_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Creates the topics (parts[i] partitions each, replication 1) on brokers
 * and waits until the metadata shows every partition with a leader (at
 * most 60 s for the answer, 30 s for the leaders); a topic that exists
 * already counts when it has that many partitions. Returns 0, or -1 with
 * what went wrong in err. */
int ts_kafka_create(const char *brokers, const char *const *topics, const int *parts,
                    size_t ntopics, char *err, size_t errlen);

/* Deletes the topics (ntopics may be 0) and then the consumer group (NULL:
 * none) on brokers, waiting at most 30 s for each answer. what names the
 * caller in the notes ("case c7"). */
void ts_kafka_delete(const char *brokers, const char *const *topics, size_t ntopics,
                     const char *group, const char *what);

/* Whether the file at path contains needle (the whole file is read; a
 * missing file contains nothing). */
bool ts_file_has(const char *path, const char *needle);

/* Starts bin with argv (argv[0] included, NULL-terminated) and envp (NULL:
 * this process's environment): stdout and stderr to the file log (emptied
 * before ts_spawn returns when fresh_log, else appended to), stdin from
 * /dev/null, no blocked signals, and SIGKILL when this process dies
 * (PR_SET_PDEATHSIG), so a test killed by its timeout leaves nothing running. Returns the pid, or
 * -1 when fork fails (errno); a child that cannot exec says so in its log and exits 127. */
pid_t ts_spawn(const char *bin, char *const argv[], char *const envp[], const char *log,
               bool fresh_log);

/* Writes the last `lines` lines of the file at path to stderr ("(no <path>)"
 * when it cannot be read). */
void ts_print_tail(const char *path, int lines);

/* A TCP port on 127.0.0.1 that was free a moment ago (bound, read, closed);
 * 0 when none could be had. */
int ts_free_port(void);

/* Reads every record of the topics (parts[i] partitions each) from their
 * beginning until each partition reports its end, calling fn for each
 * record; committed: isolation.level read_committed (records of open or
 * aborted transactions are not seen, and the end of a partition is its last
 * stable offset), else read_uncommitted. Returns 0, or -1 with what went
 * wrong in err (a client that cannot be made, partitions not at their end
 * after timeout_s). */
typedef void (*ts_record_fn)(void *ctx, const rd_kafka_message_t *m);
int ts_kafka_read(const char *brokers, const char *const *topics, const int *parts, size_t ntopics,
                  bool committed, ts_record_fn fn, void *ctx, int timeout_s, char *err,
                  size_t errlen);

/* How many of the topics' partitions have a transaction open: their last
 * stable offset (what ListOffsets answers a read_committed client) is below
 * their high watermark (what it answers a read_uncommitted one). where
 * (NULL: not wanted) names the first such partition. A busy broker may time
 * a call out: each is tried for 30 s. Returns -1 with err when it cannot be
 * told. */
int ts_kafka_open_txns(const char *brokers, const char *const *topics, const int *parts,
                       size_t ntopics, char *where, size_t wherelen, char *err, size_t errlen);

/* One HTTP request: method (NULL: POST when body is given, else GET) to url,
 * with body (NULL: none) as application/json, answered within timeout_ms.
 * Returns the response body (malloc'd, NUL-terminated, the caller frees it)
 * with *status the HTTP status; NULL with *status 0 when no answer came. */
char *ts_http(const char *method, const char *url, const char *body, int timeout_ms, long *status);

/* The value of series (name and labels as the exposition writes them, e.g.
 * imtask_tasks_succeeded_total{task_type="push"}) on
 * http://127.0.0.1:port/metrics, or -1 when the page or the series is not
 * there. */
double ts_metric(int port, const char *series);

#endif
