/* args.h: imtask-ctl's command-line parsing: a table of long options per
 * command (--name VALUE, --name=VALUE, flags), generated usage text, and the
 * parsers of numbers and PARTITION:OFFSET lists the commands share. */
#ifndef CTL_ARGS_H
#define CTL_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    CTL_OPT_FLAG,   /* bool *: set when given */
    CTL_OPT_STRING, /* const char **: points into argv */
    CTL_OPT_INT,    /* int64_t *: a decimal integer within [min, max] */
    CTL_OPT_LIST,   /* ctl_list_t *: may be given up to CTL_LIST_MAX times */
} ctl_opt_kind_t;

#define CTL_LIST_MAX 64
#define CTL_ARGS_MAX_OPTS 64 /* options of one parse, all sets together */

typedef struct {
    const char *items[CTL_LIST_MAX];
    size_t count;
} ctl_list_t;

typedef struct {
    const char *name; /* without the leading "--" */
    ctl_opt_kind_t kind;
    void *out;
    const char *arg;  /* what the value is, for the usage ("N"); NULL for flags */
    const char *help; /* one line */
    int64_t min, max; /* CTL_OPT_INT */
} ctl_opt_t;

/* A group of options with a title for the usage ("options", "common options"). */
typedef struct {
    const ctl_opt_t *opts;
    size_t count;
    const char *title;
} ctl_optset_t;

/* What the usage says of a command. */
typedef struct {
    const char *name;     /* as typed: "dlq list" */
    const char *synopsis; /* the arguments after the name */
    const char *about;    /* what it does; may hold newlines */
} ctl_command_t;

enum {
    CTL_ARGS_OK = 0,
    CTL_ARGS_HELP = 1,   /* -h or --help was given */
    CTL_ARGS_ERROR = -1, /* err says what */
};

/* Stop at the first positional argument (the rest is a subcommand's). */
#define CTL_ARGS_STOP_AT_POSITIONAL 1u

/* Parse argc arguments (argv[0] is the first argument, not a program name).
 * Options may come before, between and after positionals; "--" ends them.
 * Positionals go to pos (at most maxpos, more is an error). *consumed: the
 * arguments used (less than argc only with CTL_ARGS_STOP_AT_POSITIONAL). An
 * option other than a list given twice is an error. */
int ctl_args_parse(int argc, char **argv, const ctl_optset_t *sets, size_t nsets, unsigned flags,
                   const char **pos, size_t maxpos, size_t *npos, int *consumed, char *err,
                   size_t errlen);

/* "usage: imtask-ctl NAME SYNOPSIS", the about text and each option set. */
void ctl_args_usage(FILE *out, const char *prog, const ctl_command_t *cmd, const ctl_optset_t *sets,
                    size_t nsets);

/* A decimal integer (optional '-', no spaces) within [min, max]. 0 or -1. */
int ctl_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

typedef struct {
    int32_t partition;
    int64_t offset;
} ctl_partoff_t;

/* "3:1234" (partition 0..INT32_MAX, offset >= 0). 0 or -1. */
int ctl_parse_partoff(const char *s, ctl_partoff_t *out);

/* "0:5,1:7,..." into out (at most max entries). 0, or -1 with err naming the
 * bad item. Duplicates are kept once. */
int ctl_parse_partoff_list(const char *s, ctl_partoff_t *out, size_t max, size_t *n, char *err,
                           size_t errlen);

#endif
