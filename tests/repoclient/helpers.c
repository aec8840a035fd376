/* helpers.c: see helpers.h. */
#include "helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "infra/clock.h"
#include "tests/support/support.h"

/* Unset: the defaults of scripts/stack.sh. */
static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

const char *env_imrepo_addr(void)
{
    return env_or("IMTASK_IMREPO_ADDR", "127.0.0.1:19500");
}

const char *env_imrepo_admin(void)
{
    return env_or("IMTASK_IMREPO_ADMIN", "http://127.0.0.1:19501");
}

const char *env_etcd(void)
{
    return env_or("IMTASK_ETCD_ENDPOINTS", "http://127.0.0.1:12379");
}

int64_t now_ms(void)
{
    return clock_mono_ms();
}

void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *http(const char *url, const char *post_body)
{
    long status;
    return ts_http(NULL, url, post_body, 10000, &status);
}

cJSON *admin(int post, const char *fmt, ...)
{
    char path[512], url[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    snprintf(url, sizeof url, "%s%s", env_imrepo_admin(), path);
    char *body = http(url, post ? "" : NULL);
    if (!body)
        return NULL;
    cJSON *j = cJSON_Parse(body);
    free(body);
    return j;
}

int64_t admin_calls(const char *tag, const char *method, int64_t *items)
{
    cJSON *j = admin(0, "/stats?tag=%s", tag);
    assert_non_null(j);
    cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "methods"), method);
    int64_t calls = m ? (int64_t)cJSON_GetObjectItem(m, "calls")->valuedouble : 0;
    if (items)
        *items = m ? (int64_t)cJSON_GetObjectItem(m, "items")->valuedouble : 0;
    cJSON_Delete(j);
    return calls;
}

int64_t admin_listener_calls(const char *addr)
{
    cJSON *j = admin(0, "/stats");
    assert_non_null(j);
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "by_listener"), addr);
    int64_t n = v ? (int64_t)v->valuedouble : 0;
    cJSON_Delete(j);
    return n;
}

void admin_spawn(char *out, size_t outlen)
{
    cJSON *j = admin(1, "/spawn");
    assert_non_null(j);
    cJSON *a = cJSON_GetObjectItem(j, "addr");
    assert_true(cJSON_IsString(a));
    snprintf(out, outlen, "%s", a->valuestring);
    cJSON_Delete(j);
}

void admin_info(const char *field, char *out, size_t outlen)
{
    cJSON *j = admin(0, "/info");
    assert_non_null(j);
    cJSON *a = cJSON_GetObjectItem(j, field);
    assert_true(cJSON_IsString(a));
    snprintf(out, outlen, "%s", a->valuestring);
    cJSON_Delete(j);
}

static void b64(const char *in, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

int etcd_put(const char *key, const char *value)
{
    char k[512], v[512], body[1200], url[300];
    b64(key, k);
    b64(value, v);
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
    snprintf(url, sizeof url, "%s/v3/kv/put", env_etcd());
    char *r = http(url, body);
    free(r);
    return r ? 0 : -1;
}

int etcd_del(const char *key)
{
    char k[512], body[700], url[300];
    b64(key, k);
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", k);
    snprintf(url, sizeof url, "%s/v3/kv/deleterange", env_etcd());
    char *r = http(url, body);
    free(r);
    return r ? 0 : -1;
}

repo_client_t *client_new(const char *const *kv)
{
    char err[512];
    repo_conf_t *conf = repo_conf_new();
    assert_non_null(conf);
    for (; kv && kv[0]; kv += 2)
        if (repo_conf_set(conf, kv[0], kv[1], err, sizeof err))
            fail_msg("%s", err);
    repo_client_t *c = NULL;
    if (repo_client_new(&c, conf, err, sizeof err)) {
        repo_conf_destroy(conf);
        fail_msg("repo_client_new: %s", err);
    }
    return c;
}

void test_tag(char *out, size_t outlen, const char *what)
{
    static int n;
    snprintf(out, outlen, "t-%d-%lld-%s-%d", (int)getpid(), (long long)clock_wall_ms(), what, ++n);
}
