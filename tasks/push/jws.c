/* jws.c: ES256/RS256 compact JWS with OpenSSL, keys from PEM (see jws.h). */
#include "jws.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX (64 * 1024)

struct push_key_s {
    EVP_PKEY *pkey;
    push_key_kind_t kind;
};

size_t push_b64url(const unsigned char *in, size_t n, char *out, size_t outcap)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    if (outcap < 4 * ((n + 2) / 3) + 1) {
        if (outcap)
            out[0] = '\0';
        return 0;
    }
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = t[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = t[v & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int d = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-'             ? 62
                : c == '_'             ? 63
                                       : -1;
        if (d < 0)
            return -1;
        v = (v << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    return (int)o;
}

static void ssl_err(char *err, size_t errlen, const char *what, const char *msg)
{
    unsigned long e = ERR_get_error();
    char buf[200] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s%s%s", what, msg, buf[0] ? ": " : "", buf);
}

int push_key_from_pem(push_key_t **out, const char *pem, size_t len, push_key_kind_t kind,
                      const char *what, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pk;
    if (!bio) {
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    /* no passphrase callback: an encrypted key is an error, never a prompt */
    pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    BIO_free(bio);
    if (!pk) {
        ssl_err(err, errlen, what, "not a PEM private key (PKCS#8 \"BEGIN PRIVATE KEY\")");
        return -1;
    }
    if (kind == PUSH_KEY_EC_P256) {
        char group[64] = "";
        size_t gl = 0;
        if (EVP_PKEY_base_id(pk) != EVP_PKEY_EC ||
            !EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof(group), &gl) ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
            snprintf(err, errlen, "%s: not an EC P-256 private key (an APNs .p8 key is one)", what);
            EVP_PKEY_free(pk);
            return -1;
        }
    } else if (EVP_PKEY_base_id(pk) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pk) < 2048) {
        snprintf(err, errlen, "%s: not an RSA private key of at least 2048 bits", what);
        EVP_PKEY_free(pk);
        return -1;
    }
    push_key_t *k = calloc(1, sizeof(*k));
    if (!k) {
        EVP_PKEY_free(pk);
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    k->pkey = pk;
    k->kind = kind;
    *out = k;
    return 0;
}

int push_key_load(push_key_t **out, const char *path, push_key_kind_t kind, const char *what,
                  bool *world_readable, char *err, size_t errlen)
{
    struct stat st;
    char *buf;
    ssize_t n;
    int fd, rc;

    if (!path || !path[0]) {
        snprintf(err, errlen, "%s: no file given", what);
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
        snprintf(err, errlen, "%s %s: not a regular file of at most %d bytes", what, path,
                 KEY_FILE_MAX);
        close(fd);
        return -1;
    }
    if (world_readable)
        *world_readable = (st.st_mode & S_IROTH) != 0;
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    if (n != st.st_size) {
        snprintf(err, errlen, "%s %s: short read", what, path);
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    char w[PATH_MAX + 128];
    snprintf(w, sizeof(w), "%s %s", what, path);
    rc = push_key_from_pem(out, buf, (size_t)n, kind, w, err, errlen);
    OPENSSL_cleanse(buf, (size_t)n);
    free(buf);
    return rc;
}

void push_key_free(push_key_t **kp)
{
    if (!kp || !*kp)
        return;
    EVP_PKEY_free((*kp)->pkey);
    free(*kp);
    *kp = NULL;
}

/* DER ECDSA-Sig-Value -> R||S, 32 bytes each (RFC 7518 3.4). */
static int der_to_rs(const unsigned char *der, size_t len, unsigned char rs[64])
{
    const unsigned char *p = der;
    const BIGNUM *r, *s;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    int ok;
    if (!sig)
        return -1;
    ECDSA_SIG_get0(sig, &r, &s);
    ok = BN_bn2binpad(r, rs, 32) == 32 && BN_bn2binpad(s, rs + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? 0 : -1;
}

int push_jws_sign(const push_key_t *key, const char *header_json, const char *claims_json,
                  char *out, size_t outcap)
{
    size_t hl = strlen(header_json), cl = strlen(claims_json), o, siglen = 0;
    unsigned char sig[1024], rs[64];
    const unsigned char *final = sig;
    EVP_MD_CTX *md;
    int ok;

    if (outcap < 4 * ((hl + 2) / 3) + 4 * ((cl + 2) / 3) + 4 * ((512 + 2) / 3) + 3)
        return -1;
    o = push_b64url((const unsigned char *)header_json, hl, out, outcap);
    out[o++] = '.';
    o += push_b64url((const unsigned char *)claims_json, cl, out + o, outcap - o);

    md = EVP_MD_CTX_new();
    if (!md)
        return -1;
    siglen = sizeof(sig);
    ok = EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
         EVP_DigestSign(md, sig, &siglen, (const unsigned char *)out, o) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) {
        ERR_clear_error();
        return -1;
    }
    if (key->kind == PUSH_KEY_EC_P256) {
        if (der_to_rs(sig, siglen, rs))
            return -1;
        final = rs;
        siglen = 64;
    }
    out[o++] = '.';
    o += push_b64url(final, siglen, out + o, outcap - o);
    return (int)o;
}

bool push_jws_verify(const push_key_t *key, const char *token)
{
    const char *dot2 = strrchr(token, '.');
    unsigned char sig[1024], der[128];
    int siglen;
    size_t verlen;
    const unsigned char *v = sig;
    bool ok;
    if (!dot2)
        return false;
    siglen = b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig));
    if (siglen < 0)
        return false;
    verlen = (size_t)siglen;
    if (key->kind == PUSH_KEY_EC_P256) {
        ECDSA_SIG *es;
        unsigned char *p = der;
        BIGNUM *r, *s;
        int dl;
        if (siglen != 64)
            return false;
        es = ECDSA_SIG_new();
        r = BN_bin2bn(sig, 32, NULL);
        s = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
            ECDSA_SIG_free(es);
            BN_free(r);
            BN_free(s);
            return false;
        }
        dl = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        if (dl <= 0)
            return false;
        v = der;
        verlen = (size_t)dl;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
         EVP_DigestVerify(md, v, verlen, (const unsigned char *)token, (size_t)(dot2 - token)) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}
