/* tc3.c: TC3-HMAC-SHA256 signing of Tencent Cloud API 3.0 requests:
 *   CanonicalRequest = POST \n / \n \n CanonicalHeaders \n SignedHeaders \n
 *                      hex(sha256(body))
 *   StringToSign     = TC3-HMAC-SHA256 \n timestamp \n date/service/tc3_request
 *                      \n hex(sha256(CanonicalRequest))
 *   key              = HMAC(HMAC(HMAC("TC3" + SecretKey, date), service),
 *                      "tc3_request")
 *   Signature        = hex(HMAC(key, StringToSign)) */
#include "tc3.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jsonutil.h"

static void tc3_hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n);
}

int audit_tc3_authorization(const char *secret_id, const char *secret_key, const char *service,
                            const char *host, const char *action, const char *content_type,
                            int64_t timestamp, const char *body, size_t body_len, char *out,
                            size_t outlen)
{
    unsigned char h[32], k1[32], k2[32], k3[32], sig[32];
    char body_hex[65], creq_hex[65], sig_hex[65], date[16], action_lc[128];
    char creq[1024], sts[512], keybuf[256];
    time_t ts = (time_t)timestamp;
    struct tm tm;
    size_t i;
    int n;

    gmtime_r(&ts, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d", &tm);
    for (i = 0; action && action[i] && i + 1 < sizeof(action_lc); i++)
        action_lc[i] = (char)tolower((unsigned char)action[i]);
    action_lc[i] = '\0';

    SHA256((const unsigned char *)body, body_len, h);
    audit_hex(h, 32, body_hex);
    if (action)
        n = snprintf(creq, sizeof(creq),
                     "POST\n/\n\ncontent-type:%s\nhost:%s\nx-tc-action:%s\n\n"
                     "content-type;host;x-tc-action\n%s",
                     content_type, host, action_lc, body_hex);
    else
        n = snprintf(creq, sizeof(creq),
                     "POST\n/\n\ncontent-type:%s\nhost:%s\n\ncontent-type;host\n%s", content_type,
                     host, body_hex);
    if (n < 0 || (size_t)n >= sizeof(creq))
        return -1;
    SHA256((const unsigned char *)creq, (size_t)n, h);
    audit_hex(h, 32, creq_hex);
    n = snprintf(sts, sizeof(sts), "TC3-HMAC-SHA256\n%lld\n%s/%s/tc3_request\n%s",
                 (long long)timestamp, date, service, creq_hex);
    if (n < 0 || (size_t)n >= sizeof(sts))
        return -1;
    n = snprintf(keybuf, sizeof(keybuf), "TC3%s", secret_key);
    if (n < 0 || (size_t)n >= sizeof(keybuf))
        return -1;
    tc3_hmac(keybuf, (size_t)n, date, k1);
    tc3_hmac(k1, 32, service, k2);
    tc3_hmac(k2, 32, "tc3_request", k3);
    tc3_hmac(k3, 32, sts, sig);
    audit_hex(sig, 32, sig_hex);
    memset(keybuf, 0, sizeof(keybuf));
    n = snprintf(out, outlen,
                 "TC3-HMAC-SHA256 Credential=%s/%s/%s/tc3_request, SignedHeaders=%s, "
                 "Signature=%s",
                 secret_id, date, service,
                 action ? "content-type;host;x-tc-action" : "content-type;host", sig_hex);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
