/* ctl.c: the common options of imtask-ctl, their parsing and the error
 * reporting every subcommand uses. */
#include "ctl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "infra/log.h"

#define CTL_WIDTH_DEFAULT 160 /* tables when stdout is not a terminal */

/* The table of the common options, bound to env. */
static void ctl_env_table(ctl_env_t *env)
{
    const ctl_opt_t table[CTL_ENV_NOPTS] = {
        {"brokers", CTL_OPT_STRING, &env->brokers, "HOST:PORT[,...]",
         "Kafka bootstrap servers (default $" CTL_ENV_BROKERS " or " CTL_DEFAULT_BROKERS ")", 0, 0},
        {"task-topic", CTL_OPT_STRING, &env->task_topic, "TOPIC",
         "the task topic (default " CTL_DEFAULT_TASK_TOPIC ")", 0, 0},
        {"retry-topic", CTL_OPT_STRING, &env->retry_topic, "TOPIC",
         "the retry topic (default " CTL_DEFAULT_RETRY_TOPIC ")", 0, 0},
        {"dlq-topic", CTL_OPT_STRING, &env->dlq_topic, "TOPIC",
         "the dead-letter topic (default " CTL_DEFAULT_DLQ_TOPIC ")", 0, 0},
        {"timeout-ms", CTL_OPT_INT, &env->timeout_ms, "N",
         "how long to wait for Kafka at each step (default 10000)", 100, 600000},
        {"width", CTL_OPT_INT, &env->width, "N",
         "columns tables may take (default: the terminal's, else $COLUMNS, else 160)", 20, 10000},
        {"wide", CTL_OPT_FLAG, &env->wide, NULL, "never cut table cells to fit", 0, 0},
        {"verbose", CTL_OPT_FLAG, &env->verbose, NULL, "log more (-v)", 0, 0},
    };
    memcpy(env->opts, table, sizeof(table));
}

void ctl_env_init(ctl_env_t *env)
{
    const char *b = getenv(CTL_ENV_BROKERS);
    const char *cols = getenv("COLUMNS");
    struct winsize ws;
    int64_t w = 0;

    env->brokers = b && *b ? b : CTL_DEFAULT_BROKERS;
    env->task_topic = CTL_DEFAULT_TASK_TOPIC;
    env->retry_topic = CTL_DEFAULT_RETRY_TOPIC;
    env->dlq_topic = CTL_DEFAULT_DLQ_TOPIC;
    env->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
    env->wide = false;
    env->verbose = false;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        w = ws.ws_col;
    else if (!cols || ctl_parse_int(cols, 20, 10000, &w) != 0)
        w = CTL_WIDTH_DEFAULT;
    env->width = w;
    ctl_env_table(env);
}

ctl_optset_t ctl_env_options(ctl_env_t *env)
{
    return (ctl_optset_t){env->opts, CTL_ENV_NOPTS, "common options"};
}

void ctl_usage(FILE *out, ctl_env_t *env, const ctl_command_t *cmd, const ctl_optset_t *own)
{
    ctl_optset_t sets[2];
    size_t n = 0;
    if (own)
        sets[n++] = *own;
    sets[n++] = ctl_env_options(env);
    ctl_args_usage(out, CTL_NAME, cmd, sets, n);
}

int ctl_usage_error(const ctl_command_t *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s %s: ", CTL_NAME, cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrun '%s %s --help' for usage\n", CTL_NAME, cmd->name);
    return CTL_EXIT_USAGE;
}

void ctl_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s %s: ", CTL_NAME, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int ctl_parse(ctl_env_t *env, const ctl_command_t *cmd, const ctl_optset_t *own, int argc,
              char **argv, const char **pos, size_t maxpos, size_t *npos)
{
    ctl_optset_t sets[2];
    char err[CTL_ERR_MAX];
    size_t n = 0, dummy = 0;
    int rc;

    if (own)
        sets[n++] = *own;
    sets[n++] = ctl_env_options(env);
    rc = ctl_args_parse(argc - 1, argv + 1, sets, n, 0, pos, maxpos, npos ? npos : &dummy, NULL,
                        err, sizeof(err));
    if (rc == CTL_ARGS_HELP) {
        ctl_usage(stdout, env, cmd, own);
        return CTL_EXIT_OK;
    }
    if (rc != CTL_ARGS_OK)
        return ctl_usage_error(cmd, "%s", err);
    if (!env->brokers || !*env->brokers)
        return ctl_usage_error(cmd, "--brokers is empty: expected HOST:PORT[,HOST:PORT...]");
    if (env->verbose)
        log_set_level(LOG_LEVEL_INFO);
    return CTL_PARSE_GO_ON;
}
