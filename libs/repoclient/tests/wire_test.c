/* wire_test.c: the gRPC message parser with valid and malformed input cut
 * every way, grpc-timeout, grpc-status and grpc-message, code mappings,
 * conf parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "repoclient/repoclient.h"
#include "wire.h"

static void feed_cut(const uint8_t *b, size_t n, size_t cut, wire_parser_t *p)
{
    for (size_t off = 0; off < n; off += cut)
        wire_parser_feed(p, b + off, off + cut > n ? n - off : cut);
}

static void test_parser_any_cut(void **state)
{
    (void)state;
    uint8_t msg[300];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)i;
    size_t flen;
    uint8_t *f = wire_frame(msg, sizeof msg, &flen);
    for (size_t cut = 1; cut <= flen; cut++) {
        wire_parser_t p;
        wire_parser_init(&p, 1000);
        feed_cut(f, flen, cut, &p);
        assert_int_equal(wire_parser_finish(&p), WIRE_OK);
        size_t len;
        uint8_t *m = wire_parser_take(&p, &len);
        assert_non_null(m);
        assert_int_equal(len, sizeof msg);
        assert_memory_equal(m, msg, len);
        free(m);
        wire_parser_reset(&p);
    }
    free(f);
}

static void test_parser_empty_message(void **state)
{
    (void)state;
    uint8_t f[5] = {0, 0, 0, 0, 0};
    wire_parser_t p;
    wire_parser_init(&p, 10);
    assert_int_equal(wire_parser_feed(&p, f, 5), WIRE_OK);
    assert_int_equal(wire_parser_finish(&p), WIRE_OK);
    size_t len;
    uint8_t *m = wire_parser_take(&p, &len);
    assert_non_null(m);
    assert_int_equal(len, 0);
    free(m);
    wire_parser_reset(&p);
}

static void test_parser_malformed(void **state)
{
    (void)state;
    wire_parser_t p;
    /* Huge length: refused from the header alone, nothing allocated. */
    uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xf0, 1, 2};
    wire_parser_init(&p, 4 << 20);
    assert_int_equal(wire_parser_feed(&p, huge, sizeof huge), WIRE_TOO_LARGE);
    assert_null(p.msg);
    assert_int_equal(wire_parser_feed(&p, huge, 1), WIRE_TOO_LARGE); /* sticky */
    wire_parser_reset(&p);
    /* Just over the limit. */
    uint8_t over[] = {0, 0, 0, 0, 11};
    wire_parser_init(&p, 10);
    assert_int_equal(wire_parser_feed(&p, over, 5), WIRE_TOO_LARGE);
    wire_parser_reset(&p);
    uint8_t comp[] = {1, 0, 0, 0, 1, 9};
    wire_parser_init(&p, 10);
    assert_int_equal(wire_parser_feed(&p, comp, sizeof comp), WIRE_COMPRESSED);
    wire_parser_reset(&p);
    uint8_t flag[] = {0x80, 0, 0, 0, 1, 9};
    wire_parser_init(&p, 10);
    assert_int_equal(wire_parser_feed(&p, flag, sizeof flag), WIRE_BAD_FLAG);
    wire_parser_reset(&p);
    uint8_t two[] = {0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 1, 8};
    for (size_t cut = 1; cut <= sizeof two; cut++) {
        wire_parser_init(&p, 10);
        feed_cut(two, sizeof two, cut, &p);
        assert_int_equal(wire_parser_finish(&p), WIRE_TOO_MANY);
        wire_parser_reset(&p);
    }
    /* Truncated in the header and in the body. */
    uint8_t trunc[] = {0, 0, 0, 0, 4, 1, 2};
    for (size_t n = 1; n < sizeof trunc; n++) {
        wire_parser_init(&p, 10);
        assert_int_equal(wire_parser_feed(&p, trunc, n), WIRE_OK);
        assert_int_equal(wire_parser_finish(&p), WIRE_TRUNCATED);
        wire_parser_reset(&p);
    }
    /* Nothing at all is not truncated (the caller sees "no message"). */
    wire_parser_init(&p, 10);
    assert_int_equal(wire_parser_finish(&p), WIRE_OK);
    size_t len;
    assert_null(wire_parser_take(&p, &len));
    wire_parser_reset(&p);
    assert_string_equal(wire_err_str(WIRE_TRUNCATED), "stream ended inside a message");
}

/* Random bytes never crash the parser nor allocate over the limit. */
static void test_parser_fuzz(void **state)
{
    (void)state;
    unsigned seed = 42;
    uint8_t buf[64];
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand_r(&seed) % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rand_r(&seed);
        if (n > 0 && rand_r(&seed) % 2)
            buf[0] = 0;
        wire_parser_t p;
        wire_parser_init(&p, 32);
        feed_cut(buf, n, 1 + (size_t)(rand_r(&seed) % 7), &p);
        (void)wire_parser_finish(&p);
        assert_true(p.msg_len <= 32);
        wire_parser_reset(&p);
    }
}

static void test_timeout(void **state)
{
    (void)state;
    char b[24];
    wire_timeout_format(250, b, sizeof b);
    assert_string_equal(b, "250m");
    wire_timeout_format(0, b, sizeof b);
    assert_string_equal(b, "1m");
    wire_timeout_format(99999999, b, sizeof b);
    assert_string_equal(b, "99999999m");
    wire_timeout_format(100000000, b, sizeof b);
    assert_string_equal(b, "100000S");
    assert_int_equal(wire_timeout_parse("250m"), 250);
    assert_int_equal(wire_timeout_parse("2S"), 2000);
    assert_int_equal(wire_timeout_parse("1H"), 3600000);
    assert_int_equal(wire_timeout_parse("1500u"), 2);
    assert_int_equal(wire_timeout_parse("1n"), 1);
    assert_int_equal(wire_timeout_parse("123456789m"), -1); /* 9 digits */
    assert_int_equal(wire_timeout_parse("m"), -1);
    assert_int_equal(wire_timeout_parse("12x"), -1);
    assert_int_equal(wire_timeout_parse("-1S"), -1);
}

static void test_status_and_message(void **state)
{
    (void)state;
    assert_int_equal(wire_status_parse("0", 1), 0);
    assert_int_equal(wire_status_parse("14", 2), 14);
    assert_int_equal(wire_status_parse("abc", 3), -1);
    assert_int_equal(wire_status_parse("", 0), -1);
    assert_int_equal(wire_status_parse("123", 3), -1);
    assert_int_equal(wire_status_parse("1 ", 2), -1);
    char out[32];
    wire_percent_decode("a%20b%E2%9C%93%zz%", 18, out, sizeof out);
    assert_string_equal(out, "a b\xe2\x9c\x93%zz%");
    wire_percent_decode("0123456789abcdef", 16, out, 8);
    assert_string_equal(out, "0123456");
    assert_int_equal(wire_http_to_grpc(503), REPO_ERR_UNAVAILABLE);
    assert_int_equal(wire_http_to_grpc(404), REPO_ERR_UNIMPLEMENTED);
    assert_int_equal(wire_http_to_grpc(401), REPO_ERR_UNAUTHENTICATED);
    assert_int_equal(wire_http_to_grpc(500), REPO_ERR_UNKNOWN);
    assert_int_equal(wire_h2_to_grpc(0x7), REPO_ERR_UNAVAILABLE);
    assert_int_equal(wire_h2_to_grpc(0x8), REPO_ERR_CANCELLED);
    assert_int_equal(wire_h2_to_grpc(0x2), REPO_ERR_INTERNAL);
}

static void test_errors(void **state)
{
    (void)state;
    for (int e = -8; e <= 16; e++) {
        assert_non_null(repo_err_name((repo_err_t)e));
        assert_string_not_equal(repo_err_str((repo_err_t)e), "unknown error code");
    }
    assert_string_equal(repo_err_str((repo_err_t)99), "unknown error code");
    assert_true(repo_err_is_retriable(REPO_ERR_DEADLINE_EXCEEDED));
    assert_false(repo_err_is_retriable(REPO_ERR__MSG_TOO_LARGE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_any_cut),   cmocka_unit_test(test_parser_empty_message),
        cmocka_unit_test(test_parser_malformed), cmocka_unit_test(test_parser_fuzz),
        cmocka_unit_test(test_timeout),          cmocka_unit_test(test_status_and_message),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
