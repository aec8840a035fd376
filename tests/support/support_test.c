/* support_test.c: ts_file_has finds a text anywhere in a file, across the
 * boundary of its 64 KiB reads too, and nothing in a missing file; ts_spawn
 * starts a child with its output in a log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/support.h"

/* A file of `before` bytes of 'x', then text, then 100 bytes of 'y'. */
static void write_file(const char *path, size_t before, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < before; i++)
        fputc('x', f);
    fputs(text, f);
    for (int i = 0; i < 100; i++)
        fputc('y', f);
    fclose(f);
}

static void test_file_has(void **state)
{
    (void)state;
    char path[] = "/tmp/ts-support-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    /* the needle before, across and after the first read's end (65536) */
    static const size_t at[] = {0, 65530, 65533, 65536, 70000, 200000};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        write_file(path, at[i], "needle-123");
        assert_true(ts_file_has(path, "needle-123"));
        assert_true(at[i] == 0 || ts_file_has(path, "xneedle"));
        assert_false(ts_file_has(path, "needle-124"));
    }
    unlink(path);
    assert_false(ts_file_has(path, "needle"));
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* ts_spawn: output to the log (emptied or appended to), stdin from
 * /dev/null, the given environment, exec failure said in the log. */
static void test_spawn(void **state)
{
    (void)state;
    char log[] = "/tmp/ts-spawn-XXXXXX";
    int fd = mkstemp(log);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "old\n", 4), 4);
    close(fd);
    char *const argv[] = {(char *)"/bin/sh", (char *)"-c",
                          (char *)"echo out-$TS_X; echo err >&2; read x || echo eof", NULL};
    char *const envp[] = {(char *)"TS_X=1", NULL};
    pid_t pid = ts_spawn("/bin/sh", argv, envp, log, true);
    assert_true(pid > 0);
    assert_false(ts_file_has(log, "old")); /* emptied before ts_spawn returned */
    assert_int_equal(wait_exit(pid), 0);
    assert_true(ts_file_has(log, "out-1\n"));
    assert_true(ts_file_has(log, "err\n"));
    assert_true(ts_file_has(log, "eof\n"));
    assert_false(ts_file_has(log, "old"));

    pid = ts_spawn("/bin/sh", argv, envp, log, false);
    assert_true(pid > 0);
    assert_int_equal(wait_exit(pid), 0);
    assert_true(ts_file_has(log, "eof\nout-1\n")); /* appended */

    char *const bad[] = {(char *)"/nonexistent/imtask-bin", NULL};
    pid = ts_spawn(bad[0], bad, NULL, log, true);
    assert_true(pid > 0);
    assert_int_equal(wait_exit(pid), 127);
    assert_true(ts_file_has(log, "ts_spawn: exec failed"));
    unlink(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_file_has),
                                       cmocka_unit_test(test_spawn)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
