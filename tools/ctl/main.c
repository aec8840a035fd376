/* main.c: imtask-ctl, the operator's command line of im-task: finds the
 * subcommand and runs it (enqueue, dlq list|show|replay, lag, topics). */
#include <librdkafka/rdkafka.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "infra/log.h"
#include "infra/version.h"

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(ctl_env_t *env, int argc, char **argv);
} ctl_entry_t;

static int ctl_cmd_version(ctl_env_t *env, int argc, char **argv);
static int ctl_cmd_help(ctl_env_t *env, int argc, char **argv);

static const ctl_entry_t ctl_entries[] = {
    {"enqueue", "build a task envelope and produce it to the task topic", ctl_cmd_enqueue},
    {"dlq", "list, show and replay dead-lettered tasks (dlq list|show|replay)", ctl_cmd_dlq},
    {"lag", "committed offset, end and lag of the task consumer groups", ctl_cmd_lag},
    {"topics", "list the topics of the broker with their partition counts", ctl_cmd_topics},
    {"schedule", "scheduled jobs: list with next runs and leader, run one now", ctl_cmd_schedule},
    {"archive", "the message archive: list segments, verify them, cat messages", ctl_cmd_archive},
    {"version", "print the version of imtask-ctl and its libraries", ctl_cmd_version},
    {"help", "help COMMAND: the usage of a command", ctl_cmd_help},
};

#define CTL_NENTRIES (sizeof(ctl_entries) / sizeof(ctl_entries[0]))

static void ctl_main_usage(FILE *out, ctl_env_t *env)
{
    static const ctl_command_t cmd = {
        "COMMAND", "[ARGS...]",
        "The operator's command line of im-task: enqueue tasks, inspect and replay the\n"
        "dead-letter queue, watch consumer lag. Exit status: 0 ok, 1 failure, 2 usage error."};
    ctl_usage(out, env, &cmd, NULL);
    fprintf(out, "\ncommands:\n");
    for (size_t i = 0; i < CTL_NENTRIES; i++)
        fprintf(out, "  %-10s%s\n", ctl_entries[i].name, ctl_entries[i].summary);
    fprintf(out, "\nRun '%s COMMAND --help' for the options of a command.\n", CTL_NAME);
}

static const ctl_entry_t *ctl_entry_find(const char *name)
{
    for (size_t i = 0; i < CTL_NENTRIES; i++) {
        if (strcmp(ctl_entries[i].name, name) == 0)
            return &ctl_entries[i];
    }
    return NULL;
}

static int ctl_cmd_version(ctl_env_t *env, int argc, char **argv)
{
    static const ctl_command_t cmd = {"version", NULL,
                                      "Print the version of imtask-ctl and of the libraries it "
                                      "runs with."};
    int rc = ctl_parse(env, &cmd, NULL, argc, argv, NULL, 0, NULL);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    printf("%s %s (librdkafka %s, protobuf-c %s)\n", CTL_NAME, IMTASK_VERSION,
           rd_kafka_version_str(), protobuf_c_version());
    return CTL_EXIT_OK;
}

static int ctl_cmd_help(ctl_env_t *env, int argc, char **argv)
{
    char *sub[4] = {NULL, NULL, NULL, NULL};
    const ctl_entry_t *e;
    if (argc < 2 || strcmp(argv[1], "help") == 0) {
        ctl_main_usage(stdout, env);
        return CTL_EXIT_OK;
    }
    e = ctl_entry_find(argv[1]);
    if (!e) {
        fprintf(stderr, "%s help: unknown command \"%s\"\n", CTL_NAME, argv[1]);
        ctl_main_usage(stderr, env);
        return CTL_EXIT_USAGE;
    }
    /* "help dlq replay" is "dlq replay --help" */
    sub[0] = argv[1];
    if (argc >= 3) {
        sub[1] = argv[2];
        sub[2] = "--help";
        return e->run(env, 3, sub);
    }
    sub[1] = "--help";
    return e->run(env, 2, sub);
}

int main(int argc, char **argv)
{
    ctl_env_t env;
    ctl_optset_t common;
    const ctl_entry_t *e;
    char err[CTL_ERR_MAX];
    size_t npos = 0;
    int consumed = 0, rc;

    /* librdkafka's and mqclient's log lines go to stderr: stdout is output */
    log_setup(CTL_NAME, LOG_LEVEL_WARN);
    log_set_fd(2);
    ctl_env_init(&env);

    /* common options may come before the command too */
    common = ctl_env_options(&env);
    rc = ctl_args_parse(argc - 1, argv + 1, &common, 1, CTL_ARGS_STOP_AT_POSITIONAL, NULL, 0, &npos,
                        &consumed, err, sizeof(err));
    if (rc == CTL_ARGS_HELP) {
        ctl_main_usage(stdout, &env);
        return CTL_EXIT_OK;
    }
    if (rc != CTL_ARGS_OK) {
        fprintf(stderr, "%s: %s\nrun '%s help' for usage\n", CTL_NAME, err, CTL_NAME);
        return CTL_EXIT_USAGE;
    }
    if (consumed + 1 >= argc) {
        ctl_main_usage(stderr, &env);
        return CTL_EXIT_USAGE;
    }
    argc -= consumed + 1;
    argv += consumed + 1;
    if (strcmp(argv[0], "--version") == 0)
        return ctl_cmd_version(&env, 1, argv);
    e = ctl_entry_find(argv[0]);
    if (!e) {
        fprintf(stderr, "%s: unknown command \"%s\"\nrun '%s help' for the commands\n", CTL_NAME,
                argv[0], CTL_NAME);
        return CTL_EXIT_USAGE;
    }
    return e->run(&env, argc, argv);
}
