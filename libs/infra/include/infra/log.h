/* log.h: JSON-lines logging to stdout, one object a line:
 *   {"ts":"2026-11-28T14:10:37.123Z","level":"info","component":"fanout",
 *    "msg":"...","task_id":"...","trace_id":"..."}
 * task_id and trace_id come from the calling thread's context (log_ctx_set).
 * Registered secrets are replaced by "[REDACTED]" in every message.
 * Safe from many threads; each line is written with one write(2).
 */
#ifndef INFRA_LOG_H
#define INFRA_LOG_H

#include <stddef.h>

typedef enum {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
} log_level_t;

#define LOG_LINE_MAX 8192  /* longer messages are cut, marked "...(cut)" */
#define LOG_MAX_SECRETS 32 /* values log_add_secret accepts */
#define LOG_CTX_ID_MAX 128 /* task_id / trace_id bytes kept per thread */

/* Process-wide settings; call before starting threads. component is copied. */
void log_setup(const char *component, log_level_t level);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Where lines go (a file descriptor); default 1 (stdout). For tests. */
void log_set_fd(int fd);

/* "debug" | "info" | "warn" | "error" (case-insensitive; "warning" too).
 * Returns 0 and sets *out, or -1 for anything else. */
int log_level_parse(const char *s, log_level_t *out);
const char *log_level_name(log_level_t level);

/* Never print this value: it is replaced in every later message. Values
 * shorter than 4 bytes are ignored (they would redact ordinary words).
 * Returns 0, or -1 when LOG_MAX_SECRETS are registered already. */
int log_add_secret(const char *value);
void log_clear_secrets(void);

/* This thread's task context; NULL or "" clears a field. Copied. */
void log_ctx_set(const char *task_id, const char *trace_id);
void log_ctx_clear(void);

void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

/* Append s to out as the body of a JSON string (no quotes), escaping
 * quotes, backslashes and control bytes; never writes more than cap bytes
 * including the NUL. Returns the bytes written (without the NUL). Shared with
 * the other JSON writers of the project. */
size_t log_json_escape(char *out, size_t cap, const char *s);

#endif
