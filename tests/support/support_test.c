/* support_test.c: ts_file_has finds a text anywhere in a file, across the
 * boundary of its 64 KiB reads too, and nothing in a missing file; ts_spawn
 * starts a child with its output in a log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
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

/* The stderr of ts_print_tail(path, lines), in the file out. */
static void tail_to(const char *path, int lines, const char *out)
{
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(ofd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(ofd, 2);
    ts_print_tail(path, lines);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(ofd);
}

/* ts_print_tail: exactly the last lines, with or without a final newline;
 * the whole of a shorter file. */
static void test_print_tail(void **state)
{
    (void)state;
    char path[] = "/tmp/ts-tail-XXXXXX", out[] = "/tmp/ts-tail-out-XXXXXX";
    int fd = mkstemp(path), ofd = mkstemp(out);
    assert_true(fd >= 0 && ofd >= 0);
    close(ofd);
    FILE *f = fdopen(fd, "w");
    for (int i = 1; i <= 100; i++)
        fprintf(f, "line %d\n", i);
    fclose(f);
    tail_to(path, 3, out);
    assert_true(ts_file_has(out, "line 98\nline 99\nline 100\n"));
    assert_false(ts_file_has(out, "line 97"));
    tail_to(path, 1000, out);
    assert_true(ts_file_has(out, "line 1\nline 2\n"));
    f = fopen(path, "a");
    fputs("last", f); /* no final newline */
    fclose(f);
    tail_to(path, 2, out);
    assert_true(ts_file_has(out, "line 100\nlast"));
    assert_false(ts_file_has(out, "line 99"));
    unlink(path);
    unlink(out);
}

/* ts_free_port: a port that can then be bound. */
static void test_free_port(void **state)
{
    (void)state;
    int port = ts_free_port();
    assert_true(port > 0 && port < 65536);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_has), cmocka_unit_test(test_spawn),
        cmocka_unit_test(test_print_tail), cmocka_unit_test(test_free_port)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
