/* jws.h: the compact JWS (RFC 7515) the providers want, with OpenSSL:
 * ES256 for APNs provider tokens (a P-256 key from a .p8 file) and RS256 for
 * the OAuth2 assertion of an FCM service account.
 *
 * Why OpenSSL and not libjwt: an ES256 JWS signature is the 64-byte R||S
 * pair (RFC 7518 3.4) while OpenSSL produces a DER ECDSA-Sig-Value, so the
 * conversion has to be right somewhere; doing it here (d2i_ECDSA_SIG, then
 * each half left-padded to 32 bytes) keeps it visible and unit-tested
 * (jws_test verifies our tokens after converting back, the APNs double
 * verifies them with Node's crypto). It also lets the key be parsed and
 * checked once at start with a precise error (libjwt 1.10 re-reads the PEM
 * on every encode and reports failures as a bare errno), and keeps the
 * header exactly {"alg":"ES256","kid":...} as Apple documents it.
 *
 * Keys are never logged; the signing key stays in the EVP_PKEY only.
 */
#ifndef PUSH_JWS_H
#define PUSH_JWS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct push_key_s push_key_t;

typedef enum {
    PUSH_KEY_EC_P256 = 1, /* ES256 */
    PUSH_KEY_RSA = 2,     /* RS256 */
} push_key_kind_t;

#define PUSH_JWS_MAX 4096 /* a signed token fits in this (with the NUL) */

/* Parse a PEM private key (PKCS#8 "BEGIN PRIVATE KEY", as in an APNs .p8 or
 * a service account's private_key) of the wanted kind. what names it in
 * errors ("apns_app_main.key_file /secrets/k.p8"). Returns 0 with *out set,
 * or -1 with err. */
int push_key_from_pem(push_key_t **out, const char *pem, size_t len, push_key_kind_t kind,
                      const char *what, char *err, size_t errlen);
/* Read a PEM key file (at most 64 KiB). Sets *world_readable when the file
 * may be read by users other than its owner and group (the caller warns). */
int push_key_load(push_key_t **out, const char *path, push_key_kind_t kind, const char *what,
                  bool *world_readable, char *err, size_t errlen);
void push_key_free(push_key_t **kp); /* NULL no-op */

/* header_json and claims_json are JSON objects (as text); the result is
 * base64url(header).base64url(claims).base64url(signature) in out. Returns
 * its length, or -1 (out too small, signing failed). */
int push_jws_sign(const push_key_t *key, const char *header_json, const char *claims_json,
                  char *out, size_t outcap);

/* base64url without padding; returns the length written (out NUL-terminated;
 * outcap >= 4 * ((n + 2) / 3) + 1). */
size_t push_b64url(const unsigned char *in, size_t n, char *out, size_t outcap);

/* For tests: verify a token we signed with the key's public half (ES256:
 * R||S converted back to DER first). Returns true when valid. */
bool push_jws_verify(const push_key_t *key, const char *token);

#endif
