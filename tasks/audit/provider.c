/* provider.c: what the providers share: names, verdict and request helpers,
 * the outcome an HTTP status implies. */
#include "provider.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsonutil.h"

const char *audit_decision_name(audit_decision_t d)
{
    switch (d) {
    case AUDIT_PASS:
        return "pass";
    case AUDIT_REVIEW:
        return "review";
    case AUDIT_BLOCK:
        return "block";
    }
    return "unknown";
}

const char *audit_kind_name(audit_kind_t k)
{
    return k == AUDIT_KIND_IMAGE_URL ? "image_url" : "text";
}

const char *audit_outcome_name(audit_outcome_t o)
{
    switch (o) {
    case AUDIT_OK:
        return "ok";
    case AUDIT_THROTTLED:
        return "throttled";
    case AUDIT_UNAVAILABLE:
        return "unavailable";
    case AUDIT_MALFORMED:
        return "malformed";
    case AUDIT_AUTH:
        return "auth";
    case AUDIT_REJECTED:
        return "rejected";
    }
    return "unknown";
}

audit_outcome_t audit_outcome_of_status(long status)
{
    if (status >= 200 && status < 300)
        return AUDIT_OK;
    if (status == 429)
        return AUDIT_THROTTLED;
    if (status >= 500 || status == 408)
        return AUDIT_UNAVAILABLE;
    if (status == 401 || status == 403 || status == 404 || status == 405)
        return AUDIT_AUTH;
    if (status >= 400)
        return AUDIT_REJECTED;
    return AUDIT_MALFORMED;
}

audit_label_t *audit_verdict_add_label(audit_verdict_t *v, const char *label, const char *sub_label,
                                       double score)
{
    if (v->nlabels >= AUDIT_MAX_LABELS)
        return NULL;
    audit_label_t *l = &v->labels[v->nlabels++];
    memset(l, 0, sizeof(*l));
    audit_copy_utf8(l->label, sizeof(l->label), label ? label : "");
    audit_copy_utf8(l->sub_label, sizeof(l->sub_label), sub_label ? sub_label : "");
    l->score = score;
    return l;
}

void audit_label_add_keyword(audit_label_t *l, const char *kw)
{
    if (!l || !kw || l->nkeywords >= AUDIT_MAX_KEYWORDS)
        return;
    audit_copy_utf8(l->keywords[l->nkeywords++], AUDIT_LABEL_MAX, kw);
}

int audit_req_set_url(audit_req_t *r, const char *url)
{
    free(r->url);
    r->url = strdup(url);
    return r->url ? 0 : -1;
}

int audit_req_add_header(audit_req_t *r, const char *fmt, ...)
{
    va_list ap;
    char *line = NULL;
    int n;
    if (r->nheaders >= AUDIT_REQ_MAX_HEADERS)
        return -1;
    va_start(ap, fmt);
    n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    r->headers[r->nheaders++] = line;
    return 0;
}

const char *audit_req_header(const audit_req_t *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *h = r->headers[i];
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            h += n + 1;
            while (*h == ' ')
                h++;
            return h;
        }
    }
    return NULL;
}

void audit_req_free(audit_req_t *r)
{
    free(r->url);
    for (size_t i = 0; i < r->nheaders; i++)
        free(r->headers[i]);
    free(r->body);
    memset(r, 0, sizeof(*r));
}
