/* support_test.c: ts_file_has finds a text anywhere in a file, across the
 * boundary of its 64 KiB reads too, and nothing in a missing file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_file_has)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
