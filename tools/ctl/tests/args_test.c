/* args_test.c: option tables, usage text, integer and PARTITION:OFFSET parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctl/args.h"

typedef struct {
    const char *name;
    int64_t count;
    bool dry;
    ctl_list_t groups;
} opts_t;

static int parse(opts_t *o, int argc, char **argv, const char **pos, size_t maxpos, size_t *npos,
                 char *err, size_t errlen)
{
    const ctl_opt_t table[] = {
        {"name", CTL_OPT_STRING, &o->name, "NAME", "a name", 0, 0},
        {"count", CTL_OPT_INT, &o->count, "N", "how many", 1, 100},
        {"dry-run", CTL_OPT_FLAG, &o->dry, NULL, "do nothing", 0, 0},
        {"group", CTL_OPT_LIST, &o->groups, "G", "a group", 0, 0},
    };
    ctl_optset_t set = {table, 4, "options"};
    return ctl_args_parse(argc, argv, &set, 1, 0, pos, maxpos, npos, NULL, err, errlen);
}

static void test_parse_ok(void **state)
{
    (void)state;
    opts_t o = {.count = 1};
    char *argv[] = {"--name",  "x", "pos1",      "--count=7", "--dry-run",
                    "--group", "a", "--group=b", "--",        "--not-an-option"};
    const char *pos[4];
    size_t npos = 0;
    char err[256];
    assert_int_equal(parse(&o, 10, argv, pos, 4, &npos, err, sizeof(err)), CTL_ARGS_OK);
    assert_string_equal(o.name, "x");
    assert_int_equal(o.count, 7);
    assert_true(o.dry);
    assert_int_equal(o.groups.count, 2);
    assert_string_equal(o.groups.items[1], "b");
    assert_int_equal(npos, 2);
    assert_string_equal(pos[0], "pos1");
    assert_string_equal(pos[1], "--not-an-option");
}

static void expect_error(char **argv, int argc, const char *needle)
{
    opts_t o = {.count = 1};
    const char *pos[1];
    size_t npos = 0;
    char err[256] = "";
    assert_int_equal(parse(&o, argc, argv, pos, 1, &npos, err, sizeof(err)), CTL_ARGS_ERROR);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static void test_parse_errors(void **state)
{
    (void)state;
    char *a1[] = {"--nope"};
    expect_error(a1, 1, "unknown option \"--nope\"");
    char *a2[] = {"--count", "0"};
    expect_error(a2, 2, "--count: expected an integer in [1, 100], got \"0\"");
    char *a3[] = {"--count", "12abc"};
    expect_error(a3, 2, "got \"12abc\"");
    char *a4[] = {"--name"};
    expect_error(a4, 1, "--name needs a value (NAME)");
    char *a5[] = {"--name", "a", "--name=b"};
    expect_error(a5, 3, "--name given twice");
    char *a6[] = {"--dry-run=yes"};
    expect_error(a6, 1, "--dry-run takes no value");
    char *a7[] = {"p1", "p2"};
    expect_error(a7, 2, "unexpected argument \"p2\"");
    char *a8[] = {"-x"};
    expect_error(a8, 1, "unknown option \"-x\"");

    opts_t o = {.count = 1};
    size_t npos;
    char err[64];
    char *h[] = {"--name", "x", "-h"};
    assert_int_equal(parse(&o, 3, h, NULL, 0, &npos, err, sizeof(err)), CTL_ARGS_HELP);
    char *h2[] = {"--help"};
    assert_int_equal(parse(&o, 1, h2, NULL, 0, &npos, err, sizeof(err)), CTL_ARGS_HELP);
}

static void test_stop_at_positional(void **state)
{
    (void)state;
    const char *name = NULL;
    ctl_opt_t table[] = {{"name", CTL_OPT_STRING, &name, "N", "", 0, 0}};
    ctl_optset_t set = {table, 1, NULL};
    char *argv[] = {"--name", "n", "dlq", "list", "--type", "x"};
    size_t npos = 0;
    int consumed = -1;
    char err[64];
    assert_int_equal(ctl_args_parse(6, argv, &set, 1, CTL_ARGS_STOP_AT_POSITIONAL, NULL, 0, &npos,
                                    &consumed, err, sizeof(err)),
                     CTL_ARGS_OK);
    assert_int_equal(consumed, 2);
    assert_string_equal(name, "n");
}

static void test_usage(void **state)
{
    (void)state;
    opts_t o = {0};
    const ctl_opt_t table[] = {
        {"name", CTL_OPT_STRING, &o.name, "NAME", "a name", 0, 0},
        {"a-very-long-option-name", CTL_OPT_STRING, &o.name, "VALUE", "long one", 0, 0},
        {"group", CTL_OPT_LIST, &o.groups, "G", "a group", 0, 0},
    };
    ctl_optset_t set = {table, 3, "options"};
    ctl_command_t cmd = {"dlq list", "[--name NAME]", "Lists things."};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    ctl_args_usage(f, "imtask-ctl", &cmd, &set, 1);
    fclose(f);
    assert_non_null(strstr(buf, "usage: imtask-ctl dlq list [--name NAME]\n\nLists things.\n"));
    assert_non_null(strstr(buf, "\noptions:\n  --name NAME               a name\n"));
    assert_non_null(strstr(buf, "  --a-very-long-option-name VALUE\n                            "
                                "long one\n"));
    assert_non_null(strstr(buf, "a group (may be repeated)"));
    free(buf);
}

static void test_parse_int(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(ctl_parse_int("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(ctl_parse_int("-5", -10, 0, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(ctl_parse_int("9223372036854775807", 0, INT64_MAX, &v), 0);
    assert_int_equal(ctl_parse_int("9223372036854775808", 0, INT64_MAX, &v), -1);
    assert_int_equal(ctl_parse_int("", 0, 1, &v), -1);
    assert_int_equal(ctl_parse_int(" 1", 0, 1, &v), -1);
    assert_int_equal(ctl_parse_int("+1", 0, 1, &v), -1);
    assert_int_equal(ctl_parse_int("1.0", 0, 1, &v), -1);
    assert_int_equal(ctl_parse_int("101", 0, 100, &v), -1);
    assert_int_equal(ctl_parse_int(NULL, 0, 100, &v), -1);
}

static void test_partoff(void **state)
{
    (void)state;
    ctl_partoff_t po;
    assert_int_equal(ctl_parse_partoff("3:1234", &po), 0);
    assert_int_equal(po.partition, 3);
    assert_int_equal(po.offset, 1234);
    assert_int_equal(ctl_parse_partoff("0:0", &po), 0);
    assert_int_equal(ctl_parse_partoff("3", &po), -1);
    assert_int_equal(ctl_parse_partoff(":5", &po), -1);
    assert_int_equal(ctl_parse_partoff("3:", &po), -1);
    assert_int_equal(ctl_parse_partoff("-1:5", &po), -1);
    assert_int_equal(ctl_parse_partoff("1:-5", &po), -1);
    assert_int_equal(ctl_parse_partoff("2147483648:5", &po), -1);
    assert_int_equal(ctl_parse_partoff("1:2:3", &po), -1);

    ctl_partoff_t list[3];
    size_t n = 0;
    char err[128];
    assert_int_equal(ctl_parse_partoff_list("0:5,1:7,0:5,2:0", list, 3, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3); /* the duplicate is kept once */
    assert_int_equal(list[2].partition, 2);
    assert_int_equal(ctl_parse_partoff_list("0:5,1:7,2:0,3:1", list, 3, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than 3 offsets"));
    assert_int_equal(ctl_parse_partoff_list("0:5,x", list, 3, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "got \"x\""));
    assert_int_equal(ctl_parse_partoff_list("0:5,", list, 3, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "after the last ','"));
    assert_int_equal(ctl_parse_partoff_list("0:5,,1:2", list, 3, &n, err, sizeof(err)), -1);
    assert_int_equal(ctl_parse_partoff_list("", list, 3, &n, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),           cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_stop_at_positional), cmocka_unit_test(test_usage),
        cmocka_unit_test(test_parse_int),          cmocka_unit_test(test_partoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
