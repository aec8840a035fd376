/* provider.c: what both providers share (see provider.h). */
#include "provider.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry_after.h"

const char *push_outcome_name(push_outcome_t o)
{
    switch (o) {
    case PUSH_OK:
        return "ok";
    case PUSH_INVALID_TOKEN:
        return "invalid_token";
    case PUSH_TRANSIENT:
        return "transient";
    case PUSH_AUTH_EXPIRED:
        return "auth_expired";
    case PUSH_PERMANENT:
        return "permanent";
    }
    return "?";
}

void push_verdict_transport(const push_h2_req_t *r, push_verdict_t *v)
{
    v->outcome = PUSH_TRANSIENT;
    v->retry_after_ms = -1;
    snprintf(v->reason, sizeof(v->reason), "%s",
             push_h2_err_name(r->err != PUSH_H2_OK ? r->err : PUSH_H2_E_PROTOCOL));
}

bool push_verdict_decided(const push_h2_req_t *r, push_verdict_t *v)
{
    if (r->err != PUSH_H2_OK || r->status == 0) {
        push_verdict_transport(r, v);
        return true;
    }
    v->retry_after_ms = -1;
    if (r->status == 200) {
        v->outcome = PUSH_OK;
        snprintf(v->reason, sizeof(v->reason), "ok");
        return true;
    }
    return false;
}

void push_verdict_retry_after(const push_h2_req_t *r, int64_t now_ms, int64_t max_ra,
                              push_verdict_t *v)
{
    int64_t d;
    if (v->outcome == PUSH_TRANSIENT && r->retry_after[0] &&
        push_retry_after_parse(r->retry_after, now_ms, &d) == 0)
        v->retry_after_ms = d > max_ra ? max_ra : d;
}

void push_conn_conf_fix(push_conn_conf_t *c)
{
    if (!c->ca_file)
        c->ca_file = "";
}

push_lane_conf_t push_conn_lane(const push_conn_conf_t *c, const char *name, const char *provider)
{
    return (push_lane_conf_t){
        .name = name,
        .provider = provider,
        .origin = c->endpoint,
        .max_in_flight = (int)c->max_in_flight,
        .max_conns = (int)c->max_conns,
        .max_streams_per_conn = (int)c->max_streams_per_conn,
        .rate_per_s = c->rate_limit,
        .ca_file = c->ca_file,
        .connect_timeout_ms = c->connect_timeout_ms,
        .request_timeout_ms = c->request_timeout_ms,
    };
}

void push_uuid_for(const char *root, const char *token, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    memset(md, 0, sizeof(md));
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(c, root, strlen(root));
        EVP_DigestUpdate(c, "|", 1);
        EVP_DigestUpdate(c, token, strlen(token));
        EVP_DigestFinal_ex(c, md, &mdlen);
    }
    EVP_MD_CTX_free(c);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x80); /* version 8 (RFC 9562: custom) */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* the RFC variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", md[0],
             md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10], md[11], md[12],
             md[13], md[14], md[15]);
}

void push_job_clear(push_job_t *j)
{
    free(j->path);
    j->path = NULL;
    push_buf_free(&j->body);
    push_h2_req_clear(&j->req);
}
