/* table_test.c: table alignment, cutting to a width, UTF-8 widths, cleaning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctl/table.h"

/* Print t into a malloc'd string. */
static char *render(const ctl_table_t *t, size_t width)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    ctl_table_print(t, f, width);
    fclose(f);
    return buf;
}

static void test_aligned(void **state)
{
    (void)state;
    static const char *const heads[] = {"P:O", "N", "REASON"};
    ctl_table_t *t = ctl_table_new(3, heads);
    assert_non_null(t);
    ctl_table_align_right(t, 1);
    const char *r1[] = {"0:1", "5", "short"};
    const char *r2[] = {"12:345", "1234", NULL};
    assert_int_equal(ctl_table_add(t, r1), 0);
    assert_int_equal(ctl_table_add(t, r2), 0);
    assert_int_equal(ctl_table_rows(t), 2);
    char *out = render(t, 0);
    assert_string_equal(out, "P:O        N  REASON\n"
                             "0:1        5  short\n"
                             "12:345  1234  -\n");
    free(out);
    ctl_table_destroy(&t);
    assert_null(t);
    ctl_table_destroy(NULL);
    ctl_table_destroy(&t);
}

static void test_flex_cut(void **state)
{
    (void)state;
    static const char *const heads[] = {"ID", "REASON", "KIND"};
    ctl_table_t *t = ctl_table_new(3, heads);
    ctl_table_set_flex(t, 1);
    const char *r1[] = {"a", "the downstream gateway timed out after five attempts", "perm"};
    ctl_table_add(t, r1);
    /* ID(2) + 2 + REASON + 2 + KIND(4) = 30 -> REASON gets 20 */
    char *out = render(t, 30);
    assert_string_equal(out, "ID  REASON                KIND\n"
                             "a   the downstream ga...  perm\n");
    free(out);
    /* never below CTL_TABLE_FLEX_MIN */
    out = render(t, 5);
    assert_non_null(strstr(out, "a   the downs...  perm\n"));
    free(out);
    /* width 0: nothing cut */
    out = render(t, 0);
    assert_non_null(strstr(out, "five attempts  perm"));
    free(out);
    ctl_table_destroy(&t);
}

static void test_utf8_and_cleaning(void **state)
{
    (void)state;
    assert_int_equal(ctl_text_width("abc"), 3);
    assert_int_equal(ctl_text_width("h\xc3\xa9"), 2);                /* é */
    assert_int_equal(ctl_text_width("\xe4\xbd\xa0\xe5\xa5\xbd"), 4); /* 你好 */
    assert_int_equal(ctl_text_width("a\xffz"), 3);

    char buf[64];
    ctl_text_clean("line1\nline2\t\x7f\xff\xc3\xa9", buf, sizeof(buf));
    assert_string_equal(buf, "line1 line2  ?\xc3\xa9");
    ctl_text_clean("\xe4\xbd\xa0\xe5\xa5\xbd", buf, 5); /* no split sequence */
    assert_string_equal(buf, "\xe4\xbd\xa0");

    ctl_text_cut("abcdefgh", 8, buf, sizeof(buf));
    assert_string_equal(buf, "abcdefgh");
    ctl_text_cut("abcdefghi", 8, buf, sizeof(buf));
    assert_string_equal(buf, "abcde...");
    ctl_text_cut("\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xbd\xa0\xe5\xa5\xbd", 7, buf, sizeof(buf));
    assert_string_equal(buf, "\xe4\xbd\xa0\xe5\xa5\xbd..."); /* 4 columns + ... */
    ctl_text_cut("abcdef", 2, buf, sizeof(buf));
    assert_string_equal(buf, "..");

    /* CJK cells align by columns, not bytes */
    static const char *const heads[] = {"A", "B"};
    ctl_table_t *t = ctl_table_new(2, heads);
    const char *r1[] = {"\xe4\xbd\xa0\xe5\xa5\xbd", "x"};
    const char *r2[] = {"abcd", "y"};
    ctl_table_add(t, r1);
    ctl_table_add(t, r2);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ctl_table_print(t, f, 0);
    fclose(f);
    assert_string_equal(out, "A     B\n\xe4\xbd\xa0\xe5\xa5\xbd  x\nabcd  y\n");
    free(out);
    ctl_table_destroy(&t);
}

static void test_bad_args(void **state)
{
    (void)state;
    static const char *const heads[] = {"A"};
    assert_null(ctl_table_new(0, heads));
    assert_null(ctl_table_new(CTL_TABLE_MAX_COLS + 1, heads));
    assert_null(ctl_table_new(1, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aligned),
        cmocka_unit_test(test_flex_cut),
        cmocka_unit_test(test_utf8_and_cleaning),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
