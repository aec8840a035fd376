/* util_test.c: hex decoding and dumps, escapes, bounded file reading. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/ctl/util.h"

static void test_hex_decode(void **state)
{
    (void)state;
    uint8_t *out = NULL;
    size_t n = 0;
    char err[128];
    assert_int_equal(ctl_hex_decode("0xDEadbe:ef 00", 100, &out, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "\xde\xad\xbe\xef\x00", 5);
    free(out);
    assert_int_equal(ctl_hex_decode("", 100, &out, &n, err, sizeof(err)), 0);
    assert_null(out);
    assert_int_equal(n, 0);
    assert_int_equal(ctl_hex_decode("abc", 100, &out, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "odd number"));
    assert_int_equal(ctl_hex_decode("a b", 100, &out, &n, err, sizeof(err)), -1);
    assert_int_equal(ctl_hex_decode("zz", 100, &out, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'z' at offset 0"));
    assert_int_equal(ctl_hex_decode("000102", 2, &out, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than 2 bytes"));
}

static void test_hexdump(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const uint8_t data[20] = "0123456789abcdef\x01\x02\x03\x04";
    ctl_hexdump(f, data, sizeof(data), 18, "  ");
    fclose(f);
    assert_string_equal(buf, "  000000  30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66  "
                             "|0123456789abcdef|\n"
                             "  000010  01 02                                            |..|\n"
                             "  ... 2 more bytes not shown\n");
    free(buf);
}

static void test_escape(void **state)
{
    (void)state;
    char out[32];
    ctl_escape("plain", 5, out, sizeof(out));
    assert_string_equal(out, "plain");
    ctl_escape("a\\b\x01\xff\xc3\xa9", 7, out, sizeof(out));
    assert_string_equal(out, "a\\\\b\\x01\\xff\xc3\xa9");
    ctl_escape("\xc3", 1, out, sizeof(out)); /* a cut UTF-8 sequence */
    assert_string_equal(out, "\\xc3");
    ctl_escape("0123456789abcdefghijklmnopqrstuvwxyz", 36, out, 16);
    assert_string_equal(out, "0123456789ab...");
    ctl_escape("0123456789abcde", 15, out, 16); /* fits exactly */
    assert_string_equal(out, "0123456789abcde");
}

static void test_read_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ctl_util_test_XXXXXX";
    int fd = mkstemp(path);
    char err[256], *buf = NULL;
    size_t n = 0;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hello world", 11), 11);
    close(fd);
    assert_int_equal(ctl_read_file(path, 11, &buf, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 11);
    assert_string_equal(buf, "hello world");
    free(buf);
    assert_int_equal(ctl_read_file(path, 10, &buf, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "larger than 10 bytes"));
    unlink(path);
    assert_int_equal(ctl_read_file(path, 10, &buf, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open"));

    /* bigger than one read buffer */
    snprintf(path, sizeof(path), "/tmp/ctl_util_test_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    static char big[100000];
    memset(big, 'x', sizeof(big));
    assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
    close(fd);
    assert_int_equal(ctl_read_file(path, sizeof(big), &buf, &n, err, sizeof(err)), 0);
    assert_int_equal(n, sizeof(big));
    free(buf);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_decode),
        cmocka_unit_test(test_hexdump),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_read_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
