/* tokens_test.c: keys, ES256/RS256 signatures (R||S form), and the two
 * credential caches driven by an injected clock: the APNs provider token
 * kept 20..60 minutes and replaced once on ExpiredProviderToken; the FCM
 * access token cached until shortly before it expires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tasks/push/jws.h"
#include "tasks/push/tokens.h"

#define MIN_MS (60 * 1000LL)

/* A fresh private key as PKCS#8 PEM (malloc'd). */
static char *gen_pem(int ec)
{
    EVP_PKEY *pk = ec ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;
    assert_non_null(pk);
    assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(b, &data);
    out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    EVP_PKEY_free(pk);
    return out;
}

static int b64url_dec(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = strchr(t, in[i]);
        if (!p || !in[i])
            return -1;
        v = (v << 6) | (unsigned)(p - t);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)(v >> bits);
        }
    }
    out[o] = '\0';
    return (int)o;
}

/* The three parts of a compact JWS: header and claims decoded, the
 * signature's decoded length. */
static void jws_parts(const char *tok, char *hdr, char *claims, int *siglen)
{
    const char *d1 = strchr(tok, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    char sig[1024];
    assert_non_null(d1);
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    assert_true(b64url_dec(tok, (size_t)(d1 - tok), hdr, 512) > 0);
    assert_true(b64url_dec(d1 + 1, (size_t)(d2 - d1 - 1), claims, 1024) > 0);
    *siglen = b64url_dec(d2 + 1, strlen(d2 + 1), sig, sizeof(sig));
}

static void test_keys(void **state)
{
    (void)state;
    char err[512];
    push_key_t *k = NULL;
    char *ec = gen_pem(1), *rsa = gen_pem(0);
    assert_int_equal(push_key_from_pem(&k, ec, strlen(ec), PUSH_KEY_EC_P256, "k", err, sizeof(err)),
                     0);
    push_key_free(&k);
    assert_null(k);
    /* the wrong kind, or no key at all: clear errors naming the key */
    assert_int_equal(
        push_key_from_pem(&k, rsa, strlen(rsa), PUSH_KEY_EC_P256, "apns key", err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "apns key: not an EC P-256"));
    assert_int_equal(push_key_from_pem(&k, ec, strlen(ec), PUSH_KEY_RSA, "sa", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "not an RSA"));
    assert_int_equal(push_key_from_pem(&k, "garbage", 7, PUSH_KEY_EC_P256, "g", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "g: not a PEM private key"));
    assert_null(k);

    /* files: permissions reported, missing file named */
    char path[] = "/tmp/push_tokens_test_XXXXXX";
    int fd = mkstemp(path);
    bool others = true;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, ec, strlen(ec)), (ssize_t)strlen(ec));
    close(fd);
    chmod(path, 0600);
    assert_int_equal(push_key_load(&k, path, PUSH_KEY_EC_P256, "x", &others, err, sizeof(err)), 0);
    assert_false(others);
    push_key_free(&k);
    chmod(path, 0644);
    assert_int_equal(push_key_load(&k, path, PUSH_KEY_EC_P256, "x", &others, err, sizeof(err)), 0);
    assert_true(others);
    push_key_free(&k);
    unlink(path);
    assert_int_equal(
        push_key_load(&k, path, PUSH_KEY_EC_P256, "apns_app_main.key_file", NULL, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "apns_app_main.key_file /tmp/push_tokens_test_"));
    assert_non_null(strstr(err, "No such file"));
    free(ec);
    free(rsa);
}

static void test_es256_rs(void **state)
{
    (void)state;
    char err[256], tok[PUSH_JWS_MAX], hdr[512], claims[1024];
    int siglen;
    push_key_t *k = NULL;
    char *ec = gen_pem(1);
    assert_int_equal(push_key_from_pem(&k, ec, strlen(ec), PUSH_KEY_EC_P256, "k", err, sizeof(err)),
                     0);
    /* many signatures: R or S with leading zero bytes must still be 32 each */
    for (int i = 0; i < 200; i++) {
        char c[64];
        snprintf(c, sizeof(c), "{\"iss\":\"TEAM123456\",\"iat\":%d}", 1700000000 + i);
        assert_true(push_jws_sign(k, "{\"alg\":\"ES256\",\"kid\":\"KEY1234567\"}", c, tok,
                                  sizeof(tok)) > 0);
        jws_parts(tok, hdr, claims, &siglen);
        assert_int_equal(siglen, 64); /* R||S, not DER */
        assert_string_equal(claims, c);
        assert_true(push_jws_verify(k, tok));
    }
    assert_string_equal(hdr, "{\"alg\":\"ES256\",\"kid\":\"KEY1234567\"}");
    tok[strlen(tok) - 2] ^= 1; /* a flipped bit fails */
    assert_false(push_jws_verify(k, tok));
    push_key_free(&k);
    free(ec);
}

/* ---- the APNs provider token ------------------------------------------------ */

typedef struct {
    int64_t now;
} fake_clock_t;

static int64_t fake_now(void *opaque)
{
    return ((fake_clock_t *)opaque)->now;
}

static void test_apns_refresh_timing(void **state)
{
    (void)state;
    char err[256], a[PUSH_JWS_MAX], b[PUSH_JWS_MAX], hdr[512], claims[1024];
    int siglen;
    uint64_t ga, gb;
    push_key_t *k = NULL;
    char *ec = gen_pem(1);
    fake_clock_t clk = {1767225600000LL}; /* 2026-01-01 */
    push_apns_jwt_t *j = NULL;
    assert_int_equal(push_key_from_pem(&k, ec, strlen(ec), PUSH_KEY_EC_P256, "k", err, sizeof(err)),
                     0);
    push_apns_jwt_conf_t c = {.key = k,
                              .team_id = "TEAM123456",
                              .key_id = "KEY1234567",
                              .refresh_ms = 40 * MIN_MS,
                              .clock = fake_now,
                              .clock_opaque = &clk};

    /* the interval must stay within Apple's 20..60 minutes */
    c.refresh_ms = 19 * MIN_MS;
    assert_int_equal(push_apns_jwt_new(&j, &c, err, sizeof(err)), -1);
    c.refresh_ms = 60 * MIN_MS;
    assert_int_equal(push_apns_jwt_new(&j, &c, err, sizeof(err)), -1);
    c.refresh_ms = 40 * MIN_MS;
    assert_int_equal(push_apns_jwt_new(&j, &c, err, sizeof(err)), 0);

    assert_int_equal(push_apns_jwt_get(j, a, sizeof(a), &ga), 0);
    jws_parts(a, hdr, claims, &siglen);
    assert_string_equal(hdr, "{\"alg\":\"ES256\",\"kid\":\"KEY1234567\"}");
    assert_string_equal(claims, "{\"iss\":\"TEAM123456\",\"iat\":1767225600}");
    assert_true(push_jws_verify(k, a));

    /* reused: never replaced within 20 minutes, nor before the interval */
    for (int64_t t = 0; t < 40 * MIN_MS; t += 37 * 1000) {
        clk.now = 1767225600000LL + t;
        assert_int_equal(push_apns_jwt_get(j, b, sizeof(b), &gb), 0);
        assert_string_equal(a, b);
        assert_true(gb == ga);
    }
    clk.now = 1767225600000LL + 40 * MIN_MS - 1;
    push_apns_jwt_get(j, b, sizeof(b), &gb);
    assert_string_equal(a, b);
    assert_int_equal(push_apns_jwt_signed(j), 1);
    /* at the interval: a new token with the new iat, well before the hour */
    clk.now = 1767225600000LL + 40 * MIN_MS;
    push_apns_jwt_get(j, b, sizeof(b), &gb);
    assert_string_not_equal(a, b);
    assert_true(gb != ga);
    jws_parts(b, hdr, claims, &siglen);
    assert_string_equal(claims, "{\"iss\":\"TEAM123456\",\"iat\":1767228000}");
    assert_int_equal(push_apns_jwt_signed(j), 2);

    /* ExpiredProviderToken for an old token: nothing to do */
    assert_false(push_apns_jwt_expired(j, ga));
    /* for the current one: retired once, however many streams report it */
    clk.now += 1000;
    assert_true(push_apns_jwt_expired(j, gb));
    assert_false(push_apns_jwt_expired(j, gb));
    push_apns_jwt_get(j, a, sizeof(a), &ga);
    assert_true(ga != gb);
    assert_int_equal(push_apns_jwt_signed(j), 3);
    /* and the new one lives its full interval again */
    clk.now += 39 * MIN_MS;
    push_apns_jwt_get(j, b, sizeof(b), &gb);
    assert_true(gb == ga);
    /* a clock that jumps back more than a minute: a token is never from the future */
    clk.now -= 45 * MIN_MS;
    push_apns_jwt_get(j, b, sizeof(b), &gb);
    assert_true(gb != ga);

    push_apns_jwt_free(&j);
    push_key_free(&k);
    free(ec);
}

/* ---- the FCM access token ------------------------------------------------------- */

typedef struct {
    int calls;
    int fail;
    int64_t expires_in;
    char last_assertion[PUSH_JWS_MAX];
    char last_uri[256];
} fake_fetch_t;

static int fake_fetch(void *opaque, const char *uri, const char *assertion, char *token, size_t cap,
                      int64_t *expires_in, char *err, size_t errlen)
{
    fake_fetch_t *f = opaque;
    f->calls++;
    snprintf(f->last_assertion, sizeof(f->last_assertion), "%s", assertion);
    snprintf(f->last_uri, sizeof(f->last_uri), "%s", uri);
    if (f->fail) {
        snprintf(err, errlen, "token endpoint down");
        return -1;
    }
    snprintf(token, cap, "ya29.token-%d", f->calls);
    *expires_in = f->expires_in;
    return 0;
}

static void test_fcm_cache(void **state)
{
    (void)state;
    char err[256], tok[PUSH_BEARER_MAX], hdr[512], claims[1024];
    int siglen;
    uint64_t g1, g2;
    push_key_t *k = NULL;
    char *rsa = gen_pem(0);
    fake_clock_t clk = {1767225600000LL};
    fake_fetch_t ff = {.expires_in = 3600};
    push_fcm_auth_t *a = NULL;
    assert_int_equal(push_key_from_pem(&k, rsa, strlen(rsa), PUSH_KEY_RSA, "k", err, sizeof(err)),
                     0);
    push_fcm_auth_conf_t c = {.key = k,
                              .client_email = "push@proj.iam.gserviceaccount.com",
                              .token_uri = "https://oauth2.googleapis.com/token",
                              .margin_ms = 5 * MIN_MS,
                              .fetch = fake_fetch,
                              .fetch_opaque = &ff,
                              .clock = fake_now,
                              .clock_opaque = &clk};
    assert_int_equal(push_fcm_auth_new(&a, &c, err, sizeof(err)), 0);

    /* nothing fetched until needed */
    assert_int_equal(ff.calls, 0);
    assert_int_equal(push_fcm_auth_get(a, tok, sizeof(tok), &g1, err, sizeof(err)), 0);
    assert_string_equal(tok, "ya29.token-1");
    assert_int_equal(ff.calls, 1);

    /* the assertion: RS256 with the documented claims, for the token URI */
    jws_parts(ff.last_assertion, hdr, claims, &siglen);
    assert_string_equal(hdr, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    assert_int_equal(siglen, 256);
    assert_true(push_jws_verify(k, ff.last_assertion));
    cJSON *cl = cJSON_Parse(claims);
    assert_string_equal(cJSON_GetObjectItem(cl, "iss")->valuestring,
                        "push@proj.iam.gserviceaccount.com");
    assert_string_equal(cJSON_GetObjectItem(cl, "scope")->valuestring,
                        "https://www.googleapis.com/auth/firebase.messaging");
    assert_string_equal(cJSON_GetObjectItem(cl, "aud")->valuestring,
                        "https://oauth2.googleapis.com/token");
    assert_int_equal((int64_t)cJSON_GetObjectItem(cl, "iat")->valuedouble, 1767225600);
    assert_int_equal((int64_t)cJSON_GetObjectItem(cl, "exp")->valuedouble, 1767225600 + 3600);
    cJSON_Delete(cl);
    assert_string_equal(ff.last_uri, "https://oauth2.googleapis.com/token");

    /* cached until `margin` before expiry */
    clk.now += 3600 * 1000LL - 5 * MIN_MS - 1;
    push_fcm_auth_get(a, tok, sizeof(tok), &g2, err, sizeof(err));
    assert_string_equal(tok, "ya29.token-1");
    assert_int_equal(ff.calls, 1);
    clk.now += 1;
    push_fcm_auth_get(a, tok, sizeof(tok), &g2, err, sizeof(err));
    assert_string_equal(tok, "ya29.token-2");
    assert_int_equal(ff.calls, 2);
    assert_true(g2 != g1);

    /* a 401 with an older token does nothing; with the current one: one fetch */
    assert_false(push_fcm_auth_invalidate(a, g1));
    assert_true(push_fcm_auth_invalidate(a, g2));
    assert_false(push_fcm_auth_invalidate(a, g2));
    push_fcm_auth_get(a, tok, sizeof(tok), &g1, err, sizeof(err));
    assert_string_equal(tok, "ya29.token-3");
    assert_int_equal(ff.calls, 3);

    /* the endpoint fails inside the margin: the old token still serves */
    clk.now += 3600 * 1000LL - 4 * MIN_MS;
    ff.fail = 1;
    assert_int_equal(push_fcm_auth_get(a, tok, sizeof(tok), &g2, err, sizeof(err)), 0);
    assert_string_equal(tok, "ya29.token-3");
    assert_int_equal(ff.calls, 4);
    /* and the failed fetch is not repeated at once */
    push_fcm_auth_get(a, tok, sizeof(tok), &g2, err, sizeof(err));
    assert_int_equal(ff.calls, 4);
    /* expired and still failing: an error naming the cause */
    clk.now += 5 * MIN_MS;
    assert_int_equal(push_fcm_auth_get(a, tok, sizeof(tok), &g2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "token endpoint down"));
    ff.fail = 0;
    clk.now += 3000;
    assert_int_equal(push_fcm_auth_get(a, tok, sizeof(tok), &g2, err, sizeof(err)), 0);
    assert_string_equal(tok, "ya29.token-6");

    push_fcm_auth_free(&a);
    push_key_free(&k);
    free(rsa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_es256_rs),
        cmocka_unit_test(test_apns_refresh_timing),
        cmocka_unit_test(test_fcm_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
