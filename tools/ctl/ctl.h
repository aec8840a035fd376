/* ctl.h: what the imtask-ctl subcommands share: exit codes, the common
 * options (brokers, topics, timeout) and the command entry points. */
#ifndef CTL_CTL_H
#define CTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "args.h"

#define CTL_NAME "imtask-ctl"

/* Process exit codes. */
enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAIL = 1,  /* the command ran and something failed */
    CTL_EXIT_USAGE = 2, /* bad command line: nothing was done */
};

#define CTL_ENV_BROKERS "IMTASK_KAFKA_BROKERS"
#define CTL_DEFAULT_BROKERS "127.0.0.1:19092"
#define CTL_DEFAULT_TASK_TOPIC "im-task-topic"
#define CTL_DEFAULT_RETRY_TOPIC "im-task-retry-topic"
#define CTL_DEFAULT_DLQ_TOPIC "im-task-dlq-topic"
#define CTL_DEFAULT_TIMEOUT_MS 10000
#define CTL_ERR_MAX 512
#define CTL_ENV_NOPTS 8 /* common options */

/* The options every subcommand takes. Strings point into argv or the
 * environment (or are literals): nothing here is freed. */
typedef struct {
    const char *brokers;
    const char *task_topic;
    const char *retry_topic;
    const char *dlq_topic;
    int64_t timeout_ms; /* for each Kafka request or wait */
    int64_t width;      /* columns tables may take; 0 = as wide as they are */
    bool wide;          /* --wide: never cut table cells */
    bool verbose;
    ctl_opt_t opts[CTL_ENV_NOPTS]; /* the table of the above, by ctl_env_init */
} ctl_env_t;

/* Defaults: brokers from $IMTASK_KAFKA_BROKERS or 127.0.0.1:19092, the
 * im-task topics, a 10 s timeout, the terminal's width. */
void ctl_env_init(ctl_env_t *env);

/* The common options as an option set (bound to env's fields). */
ctl_optset_t ctl_env_options(ctl_env_t *env);

/* Parse argv (argv[0] is the command name) with the command's options and
 * the common ones; positionals go to pos. Returns CTL_PARSE_GO_ON when the
 * command should run, else the exit code to return at once: CTL_EXIT_OK
 * after printing the usage for --help, CTL_EXIT_USAGE after a one-line
 * error and a hint. */
#define CTL_PARSE_GO_ON (-1)
int ctl_parse(ctl_env_t *env, const ctl_command_t *cmd, const ctl_optset_t *own, int argc,
              char **argv, const char **pos, size_t maxpos, size_t *npos);

/* Print the usage of cmd (own options, then the common ones) to out. */
void ctl_usage(FILE *out, ctl_env_t *env, const ctl_command_t *cmd, const ctl_optset_t *own);

/* Report a usage error of cmd (printf-like) and return CTL_EXIT_USAGE. */
int ctl_usage_error(const ctl_command_t *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Report a failure of cmd (printf-like) on stderr. */
void ctl_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The subcommands; argv[0] is the subcommand's own name. */
int ctl_cmd_enqueue(ctl_env_t *env, int argc, char **argv);
int ctl_cmd_dlq(ctl_env_t *env, int argc, char **argv); /* list | show | replay */
int ctl_cmd_dlq_replay(ctl_env_t *env, int argc, char **argv);
int ctl_cmd_lag(ctl_env_t *env, int argc, char **argv);
int ctl_cmd_topics(ctl_env_t *env, int argc, char **argv);
int ctl_cmd_schedule(ctl_env_t *env, int argc, char **argv); /* list | run */
int ctl_cmd_archive(ctl_env_t *env, int argc, char **argv);  /* ls | verify | cat */

#endif
