/* log.c: JSON-lines logger with per-thread task context and secret redaction. */
#include "infra/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "infra/str.h"

static char log_component[64] = "imtask";
static _Atomic int log_level = LOG_LEVEL_INFO;
static _Atomic int log_fd = 1;

static pthread_mutex_t log_secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_secrets[LOG_MAX_SECRETS];
static size_t log_nsecrets;

static _Thread_local char log_ctx_task[LOG_CTX_ID_MAX];
static _Thread_local char log_ctx_trace[LOG_CTX_ID_MAX];

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_setup(const char *component, log_level_t level)
{
    if (component)
        snprintf(log_component, sizeof(log_component), "%s", component);
    log_set_level(level);
}

void log_set_level(log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

log_level_t log_get_level(void)
{
    return (log_level_t)atomic_load(&log_level);
}

void log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

int log_level_parse(const char *s, log_level_t *out)
{
    if (!s)
        return -1;
    for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcasecmp(s, log_level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

const char *log_level_name(log_level_t level)
{
    if ((int)level < 0 || (size_t)level >= sizeof(log_level_names) / sizeof(log_level_names[0]))
        return "unknown";
    return log_level_names[level];
}

int log_add_secret(const char *value)
{
    int rc = 0;
    if (!value || strlen(value) < 4)
        return 0;
    pthread_mutex_lock(&log_secrets_lock);
    for (size_t i = 0; i < log_nsecrets; i++) {
        if (strcmp(log_secrets[i], value) == 0)
            goto out;
    }
    if (log_nsecrets == LOG_MAX_SECRETS) {
        rc = -1;
        goto out;
    }
    log_secrets[log_nsecrets] = strdup(value);
    if (!log_secrets[log_nsecrets]) {
        rc = -1;
        goto out;
    }
    log_nsecrets++;
out:
    pthread_mutex_unlock(&log_secrets_lock);
    return rc;
}

void log_clear_secrets(void)
{
    pthread_mutex_lock(&log_secrets_lock);
    for (size_t i = 0; i < log_nsecrets; i++)
        free(log_secrets[i]);
    log_nsecrets = 0;
    pthread_mutex_unlock(&log_secrets_lock);
}

void log_ctx_set(const char *task_id, const char *trace_id)
{
    str_copy(log_ctx_task, sizeof(log_ctx_task), task_id); /* per task: no snprintf */
    str_copy(log_ctx_trace, sizeof(log_ctx_trace), trace_id);
}

void log_ctx_clear(void)
{
    log_ctx_task[0] = '\0';
    log_ctx_trace[0] = '\0';
}

size_t log_json_escape(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (cap == 0)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[7];
        size_t elen = 0;
        switch (c) {
        case '"':
            esc[0] = '\\';
            esc[1] = '"';
            elen = 2;
            break;
        case '\\':
            esc[0] = '\\';
            esc[1] = '\\';
            elen = 2;
            break;
        case '\n':
            esc[0] = '\\';
            esc[1] = 'n';
            elen = 2;
            break;
        case '\r':
            esc[0] = '\\';
            esc[1] = 'r';
            elen = 2;
            break;
        case '\t':
            esc[0] = '\\';
            esc[1] = 't';
            elen = 2;
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 0xf];
                elen = 6;
            } else {
                esc[0] = (char)c;
                elen = 1;
            }
        }
        if (n + elen >= cap)
            break;
        memcpy(out + n, esc, elen);
        n += elen;
    }
    out[n] = '\0';
    return n;
}

/* Replace every registered secret in msg (in place, shrinking or keeping size). */
static void log_redact(char *msg, size_t cap)
{
    static const char mark[] = "[REDACTED]";
    pthread_mutex_lock(&log_secrets_lock);
    for (size_t i = 0; i < log_nsecrets; i++) {
        size_t slen = strlen(log_secrets[i]);
        char *p = msg;
        while ((p = strstr(p, log_secrets[i])) != NULL) {
            size_t tail = strlen(p + slen);
            size_t mlen = sizeof(mark) - 1;
            if ((size_t)(p - msg) + mlen + tail + 1 > cap)
                mlen = slen < mlen ? slen : mlen; /* no room: overwrite in place */
            memmove(p + mlen, p + slen, tail + 1);
            memcpy(p, mark, mlen);
            p += mlen;
        }
    }
    pthread_mutex_unlock(&log_secrets_lock);
}

static size_t log_append(char *buf, size_t cap, size_t n, const char *s)
{
    size_t len = strlen(s);
    if (n + len >= cap)
        len = n < cap ? cap - n - 1 : 0;
    memcpy(buf + n, s, len);
    buf[n + len] = '\0';
    return n + len;
}

static size_t log_append_field(char *buf, size_t cap, size_t n, const char *key, const char *val)
{
    n = log_append(buf, cap, n, ",\"");
    n = log_append(buf, cap, n, key);
    n = log_append(buf, cap, n, "\":\"");
    if (n < cap)
        n += log_json_escape(buf + n, cap - n, val);
    return log_append(buf, cap, n, "\"");
}

void log_write(log_level_t level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    char line[LOG_LINE_MAX + 512];
    char ts[40];
    struct timespec now;
    struct tm tm;
    va_list ap;
    size_t n;
    int fd;

    if ((int)level < atomic_load(&log_level))
        return;

    va_start(ap, fmt);
    int want = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (want >= (int)sizeof(msg))
        memcpy(msg + sizeof(msg) - sizeof("...(cut)"), "...(cut)", sizeof("...(cut)"));
    log_redact(msg, sizeof(msg));

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000L);

    n = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\"", ts,
                         log_level_name(level));
    n = log_append_field(line, sizeof(line) - 2, n, "component", log_component);
    n = log_append_field(line, sizeof(line) - 2, n, "msg", msg);
    if (log_ctx_task[0])
        n = log_append_field(line, sizeof(line) - 2, n, "task_id", log_ctx_task);
    if (log_ctx_trace[0])
        n = log_append_field(line, sizeof(line) - 2, n, "trace_id", log_ctx_trace);
    line[n++] = '}';
    line[n++] = '\n';

    fd = atomic_load(&log_fd);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, line + off, n - off);
        if (w <= 0)
            break; /* nowhere to report a failing log */
        off += (size_t)w;
    }
}
