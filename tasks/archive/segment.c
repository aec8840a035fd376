/* segment.c: archive segments (segment.h): the NDJSON encoding of a message,
 * the zstd stream, sha256 (OpenSSL EVP), the manifest as JSON (cJSON), keys. */
#include "segment.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#define SEG_STAGE_BYTES (256 * 1024) /* NDJSON staged before each compress call */

struct seg_writer_s {
    ZSTD_CCtx *z;
    EVP_MD_CTX *sha;
    char *stage; /* NDJSON not yet compressed */
    size_t stage_len, stage_cap;
    char *out; /* the compressed frame */
    size_t out_len, out_cap;
    char *ids; /* ids, NUL-separated */
    size_t ids_len, ids_cap;
    size_t *id_off;
    size_t id_cap;
    uint64_t count, ndjson_bytes;
    int64_t min_created, max_created;
    int started;
};

static void hex(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void seg_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    hex(md, 32, out);
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need)
        nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

seg_writer_t *seg_writer_new(int level, char *err, size_t errlen)
{
    seg_writer_t *w = calloc(1, sizeof(*w));
    if (!w)
        goto oom;
    w->z = ZSTD_createCCtx();
    w->sha = EVP_MD_CTX_new();
    w->stage = malloc(SEG_STAGE_BYTES);
    w->stage_cap = SEG_STAGE_BYTES;
    if (!w->z || !w->sha || !w->stage)
        goto oom;
    if (level) {
        size_t r = ZSTD_CCtx_setParameter(w->z, ZSTD_c_compressionLevel, level);
        if (ZSTD_isError(r)) {
            snprintf(err, errlen, "zstd level %d: %s", level, ZSTD_getErrorName(r));
            seg_writer_destroy(w);
            return NULL;
        }
    }
    ZSTD_CCtx_setParameter(w->z, ZSTD_c_checksumFlag, 1);
    seg_writer_reset(w);
    return w;
oom:
    snprintf(err, errlen, "out of memory");
    seg_writer_destroy(w);
    return NULL;
}

void seg_writer_destroy(seg_writer_t *w)
{
    if (!w)
        return;
    ZSTD_freeCCtx(w->z);
    EVP_MD_CTX_free(w->sha);
    free(w->stage);
    free(w->out);
    free(w->ids);
    free(w->id_off);
    free(w);
}

void seg_writer_reset(seg_writer_t *w)
{
    ZSTD_CCtx_reset(w->z, ZSTD_reset_session_only);
    EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL);
    w->stage_len = w->out_len = w->ids_len = 0;
    w->count = w->ndjson_bytes = 0;
    w->min_created = INT64_MAX;
    w->max_created = INT64_MIN;
}

uint64_t seg_writer_count(const seg_writer_t *w)
{
    return w->count;
}

uint64_t seg_writer_ndjson_bytes(const seg_writer_t *w)
{
    return w->ndjson_bytes;
}

const char *seg_writer_id(const seg_writer_t *w, uint64_t i)
{
    return i < w->count ? w->ids + w->id_off[i] : NULL;
}

/* Compress the staged NDJSON (mode ZSTD_e_continue or ZSTD_e_end). */
static int flush_stage(seg_writer_t *w, ZSTD_EndDirective mode, char *err, size_t errlen)
{
    ZSTD_inBuffer in = {w->stage, w->stage_len, 0};
    for (;;) {
        size_t room = ZSTD_compressBound(in.size - in.pos) + 1024;
        if (grow(&w->out, &w->out_cap, w->out_len + room)) {
            snprintf(err, errlen, "out of memory (segment of %zu bytes)", w->out_len);
            return -1;
        }
        ZSTD_outBuffer out = {w->out, w->out_cap, w->out_len};
        size_t r = ZSTD_compressStream2(w->z, &out, &in, mode);
        if (ZSTD_isError(r)) {
            snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(r));
            return -1;
        }
        w->out_len = out.pos;
        if (mode == ZSTD_e_end ? r == 0 : in.pos == in.size)
            break;
    }
    w->stage_len = 0;
    return 0;
}

/* JSON string body of s[0..n) into out: escapes '"', '\\' and control bytes;
 * other bytes pass through (proto3 strings are UTF-8). */
static size_t json_str(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    if (o >= cap)
        return 0;
    out[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (o + 7 >= cap)
            return 0;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if (c == '\t') {
            out[o++] = '\\';
            out[o++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (o + 1 >= cap)
        return 0;
    out[o++] = '"';
    return o;
}

static const char *audit_name(int v)
{
    switch (v) {
    case IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_PASS:
        return "AUDIT_STATUS_PASS";
    case IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_REVIEW:
        return "AUDIT_STATUS_REVIEW";
    case IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_BLOCK:
        return "AUDIT_STATUS_BLOCK";
    default:
        return "AUDIT_STATUS_UNSPECIFIED";
    }
}

size_t seg_message_json(const ImRepo__V1__Message *m, char *out, size_t cap)
{
    size_t o = 0, n;
#define LIT(s)                                                                                     \
    do {                                                                                           \
        size_t l_ = sizeof(s) - 1;                                                                 \
        if (o + l_ >= cap)                                                                         \
            return 0;                                                                              \
        memcpy(out + o, s, l_);                                                                    \
        o += l_;                                                                                   \
    } while (0)
#define STR(v)                                                                                     \
    do {                                                                                           \
        n = json_str(out + o, cap - o, v);                                                         \
        if (!n)                                                                                    \
            return 0;                                                                              \
        o += n;                                                                                    \
    } while (0)
#define NUM(fmt, v)                                                                                \
    do {                                                                                           \
        int k_ = snprintf(out + o, cap - o, fmt, v);                                               \
        if (k_ < 0 || (size_t)k_ >= cap - o)                                                       \
            return 0;                                                                              \
        o += (size_t)k_;                                                                           \
    } while (0)
    LIT("{\"id\":");
    STR(m->id);
    LIT(",\"conversation_id\":");
    STR(m->conversation_id);
    LIT(",\"sender_id\":");
    STR(m->sender_id);
    LIT(",\"message_type\":");
    NUM("%" PRId32, m->message_type);
    LIT(",\"content\":");
    STR(m->content);
    LIT(",\"seq_id\":");
    NUM("%" PRId64, m->seq_id);
    LIT(",\"created_at\":");
    NUM("%" PRId64, m->created_at);
    LIT(",\"updated_at\":");
    NUM("%" PRId64, m->updated_at);
    LIT(",\"deleted\":");
    if (m->deleted)
        LIT("true");
    else
        LIT("false");
    LIT(",\"extra\":");
    STR(m->extra);
    LIT(",\"audit_status\":\"");
    const char *a = audit_name(m->audit_status);
    n = strlen(a);
    if (o + n + 3 >= cap)
        return 0;
    memcpy(out + o, a, n);
    o += n;
    LIT("\"}");
#undef LIT
#undef STR
#undef NUM
    return o;
}

int seg_writer_add(seg_writer_t *w, const ImRepo__V1__Message *m, char *err, size_t errlen)
{
    const char *id = m->id ? m->id : "";
    /* worst case: every byte escaped as \u00XX, plus the fixed text */
    size_t need = 6 * (strlen(id) + strlen(m->conversation_id ? m->conversation_id : "") +
                       strlen(m->sender_id ? m->sender_id : "") +
                       strlen(m->content ? m->content : "") + strlen(m->extra ? m->extra : "")) +
                  512;
    if (w->stage_len + need > w->stage_cap && w->stage_len) {
        if (flush_stage(w, ZSTD_e_continue, err, errlen))
            return -1;
    }
    if (grow(&w->stage, &w->stage_cap, need)) {
        snprintf(err, errlen, "out of memory (a message of %zu bytes)", need);
        return -1;
    }
    size_t n = seg_message_json(m, w->stage + w->stage_len, w->stage_cap - w->stage_len - 1);
    if (!n) {
        snprintf(err, errlen, "message %.100s: JSON encoding did not fit", id);
        return -1;
    }
    w->stage[w->stage_len + n] = '\n';
    EVP_DigestUpdate(w->sha, w->stage + w->stage_len, n + 1);
    w->stage_len += n + 1;
    w->ndjson_bytes += n + 1;

    size_t idlen = strlen(id);
    if (w->count == w->id_cap) {
        size_t nc = w->id_cap ? w->id_cap * 2 : 1024;
        size_t *no = realloc(w->id_off, nc * sizeof(*no));
        if (!no) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        w->id_off = no;
        w->id_cap = nc;
    }
    if (grow(&w->ids, &w->ids_cap, w->ids_len + idlen + 1)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(w->ids + w->ids_len, id, idlen + 1);
    w->id_off[w->count] = w->ids_len;
    w->ids_len += idlen + 1;
    w->count++;
    if (m->created_at < w->min_created)
        w->min_created = m->created_at;
    if (m->created_at > w->max_created)
        w->max_created = m->created_at;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int seg_writer_finish(seg_writer_t *w, seg_manifest_t *m, const void **data, size_t *len, char *err,
                      size_t errlen)
{
    if (flush_stage(w, ZSTD_e_end, err, errlen))
        return -1;
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(w->sha, md, &mdlen);
    hex(md, 32, m->ndjson_sha256);
    seg_sha256_hex(w->out, w->out_len, m->zst_sha256);
    m->version = SEG_FORMAT_VERSION;
    m->count = w->count;
    m->ndjson_bytes = w->ndjson_bytes;
    m->zst_bytes = w->out_len;
    m->min_created_at = w->count ? w->min_created : 0;
    m->max_created_at = w->count ? w->max_created : 0;
    snprintf(m->first_id, sizeof(m->first_id), "%s", w->count ? seg_writer_id(w, 0) : "");
    snprintf(m->last_id, sizeof(m->last_id), "%s", w->count ? seg_writer_id(w, w->count - 1) : "");
    m->written_at_ms = now_ms();
    *data = w->out;
    *len = w->out_len;
    return 0;
}

int seg_decode(const void *zst, size_t len, size_t max_line,
               int (*line)(void *opaque, const char *text, size_t n), void *opaque, uint64_t *count,
               uint64_t *ndjson_bytes, char ndjson_sha256[65], char *err, size_t errlen)
{
    int rc = -1;
    ZSTD_DCtx *z = ZSTD_createDCtx();
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    size_t wcap = ZSTD_DStreamOutSize();
    char *win = malloc(wcap);
    char *lbuf = NULL;
    size_t llen = 0, lcap = 0;
    uint64_t lines = 0, bytes = 0;
    if (!z || !sha || !win) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    ZSTD_inBuffer in = {zst, len, 0};
    size_t r = 1;
    int frames = 0;
    while (in.pos < in.size) {
        ZSTD_outBuffer o = {win, wcap, 0};
        r = ZSTD_decompressStream(z, &o, &in);
        if (ZSTD_isError(r)) {
            snprintf(err, errlen, "zstd: %s (at compressed byte %zu)", ZSTD_getErrorName(r),
                     in.pos);
            goto out;
        }
        if (r == 0)
            frames++;
        EVP_DigestUpdate(sha, win, o.pos);
        bytes += o.pos;
        size_t start = 0;
        for (size_t i = 0; i < o.pos; i++) {
            if (win[i] != '\n')
                continue;
            const char *text = win + start;
            size_t n = i - start;
            if (llen) {
                if (llen + n > max_line) {
                    snprintf(err, errlen, "line %" PRIu64 " longer than %zu bytes", lines + 1,
                             max_line);
                    goto out;
                }
                if (grow(&lbuf, &lcap, llen + n + 1)) {
                    snprintf(err, errlen, "out of memory");
                    goto out;
                }
                memcpy(lbuf + llen, text, n);
                text = lbuf;
                n += llen;
                llen = 0;
            }
            if (n > max_line) {
                snprintf(err, errlen, "line %" PRIu64 " longer than %zu bytes", lines + 1,
                         max_line);
                goto out;
            }
            lines++;
            if (line) {
                int lr = line(opaque, text, n);
                if (lr) {
                    rc = lr;
                    goto out;
                }
            }
            start = i + 1;
        }
        if (start < o.pos) {
            size_t n = o.pos - start;
            if (llen + n > max_line) {
                snprintf(err, errlen, "line %" PRIu64 " longer than %zu bytes", lines + 1,
                         max_line);
                goto out;
            }
            if (grow(&lbuf, &lcap, llen + n + 1)) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            memcpy(lbuf + llen, win + start, n);
            llen += n;
        }
    }
    if (r != 0) {
        snprintf(err, errlen, "zstd: the compressed data ends inside a frame (truncated)");
        goto out;
    }
    if (llen) {
        snprintf(err, errlen, "the NDJSON does not end with a newline");
        goto out;
    }
    if (len == 0 || frames == 0) {
        snprintf(err, errlen, "no zstd frame");
        goto out;
    }
    if (count)
        *count = lines;
    if (ndjson_bytes)
        *ndjson_bytes = bytes;
    if (ndjson_sha256) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        EVP_DigestFinal_ex(sha, md, &mdlen);
        hex(md, 32, ndjson_sha256);
    }
    rc = 0;
out:
    ZSTD_freeDCtx(z);
    EVP_MD_CTX_free(sha);
    free(win);
    free(lbuf);
    return rc;
}

int seg_verify(const seg_manifest_t *m, const void *zst, size_t len, char *err, size_t errlen)
{
    char sha[65];
    if (len != m->zst_bytes) {
        snprintf(err, errlen,
                 "segment %" PRIu64 ": %zu compressed bytes, the manifest says %" PRIu64, m->seq,
                 len, m->zst_bytes);
        return -1;
    }
    seg_sha256_hex(zst, len, sha);
    if (strcmp(sha, m->zst_sha256)) {
        snprintf(err, errlen,
                 "segment %" PRIu64 ": sha256 of the compressed bytes is %s, the manifest says %s",
                 m->seq, sha, m->zst_sha256);
        return -1;
    }
    uint64_t count = 0, bytes = 0;
    char why[256];
    if (seg_decode(zst, len, (size_t)-1, NULL, NULL, &count, &bytes, sha, why, sizeof(why))) {
        snprintf(err, errlen, "segment %" PRIu64 ": %s", m->seq, why);
        return -1;
    }
    if (count != m->count || bytes != m->ndjson_bytes || strcmp(sha, m->ndjson_sha256)) {
        snprintf(err, errlen,
                 "segment %" PRIu64 ": decompressed %" PRIu64 " lines, %" PRIu64
                 " bytes, sha256 %s; the manifest says %" PRIu64 ", %" PRIu64 ", %s",
                 m->seq, count, bytes, sha, m->count, m->ndjson_bytes, m->ndjson_sha256);
        return -1;
    }
    return 0;
}

char *seg_manifest_to_json(const seg_manifest_t *m)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "format", SEG_FORMAT);
    cJSON_AddNumberToObject(o, "version", m->version);
    cJSON_AddStringToObject(o, "job", m->job);
    cJSON_AddStringToObject(o, "run", m->run);
    cJSON_AddNumberToObject(o, "seq", (double)m->seq);
    cJSON_AddStringToObject(o, "object", m->object);
    cJSON_AddNumberToObject(o, "count", (double)m->count);
    cJSON_AddStringToObject(o, "first_id", m->first_id);
    cJSON_AddStringToObject(o, "last_id", m->last_id);
    cJSON_AddNumberToObject(o, "min_created_at", (double)m->min_created_at);
    cJSON_AddNumberToObject(o, "max_created_at", (double)m->max_created_at);
    cJSON_AddNumberToObject(o, "cutoff_ms", (double)m->cutoff_ms);
    cJSON_AddStringToObject(o, "start_cursor", m->start_cursor);
    cJSON_AddStringToObject(o, "end_cursor", m->end_cursor);
    cJSON_AddStringToObject(o, "compression", "zstd");
    cJSON_AddNumberToObject(o, "ndjson_bytes", (double)m->ndjson_bytes);
    cJSON_AddStringToObject(o, "ndjson_sha256", m->ndjson_sha256);
    cJSON_AddNumberToObject(o, "zst_bytes", (double)m->zst_bytes);
    cJSON_AddStringToObject(o, "zst_sha256", m->zst_sha256);
    cJSON_AddNumberToObject(o, "written_at_ms", (double)m->written_at_ms);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int get_str(const cJSON *o, const char *k, char *out, size_t cap, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) {
        snprintf(err, errlen, "manifest: \"%s\": expected a string of at most %zu bytes", k,
                 cap - 1);
        return -1;
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int get_num(const cJSON *o, const char *k, double min, double *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(int64_t)v->valuedouble) {
        snprintf(err, errlen, "manifest: \"%s\": expected an integer >= %.0f", k, min);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

int seg_manifest_parse(const char *json, size_t len, seg_manifest_t *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(o)) {
        snprintf(err, errlen, "manifest: not a JSON object");
        cJSON_Delete(o);
        return -1;
    }
    int rc = -1;
    char fmt[64];
    double v;
    if (get_str(o, "format", fmt, sizeof(fmt), err, errlen))
        goto out;
    if (strcmp(fmt, SEG_FORMAT)) {
        snprintf(err, errlen, "manifest: format \"%s\", expected \"%s\"", fmt, SEG_FORMAT);
        goto out;
    }
    if (get_num(o, "version", 1, &v, err, errlen))
        goto out;
    if (v != SEG_FORMAT_VERSION) {
        snprintf(err, errlen, "manifest: version %.0f, this build reads version %d", v,
                 SEG_FORMAT_VERSION);
        goto out;
    }
    m->version = (int)v;
    if (get_str(o, "job", m->job, sizeof(m->job), err, errlen) ||
        get_str(o, "run", m->run, sizeof(m->run), err, errlen) ||
        get_str(o, "object", m->object, sizeof(m->object), err, errlen) ||
        get_str(o, "first_id", m->first_id, sizeof(m->first_id), err, errlen) ||
        get_str(o, "last_id", m->last_id, sizeof(m->last_id), err, errlen) ||
        get_str(o, "start_cursor", m->start_cursor, sizeof(m->start_cursor), err, errlen) ||
        get_str(o, "end_cursor", m->end_cursor, sizeof(m->end_cursor), err, errlen) ||
        get_str(o, "ndjson_sha256", m->ndjson_sha256, sizeof(m->ndjson_sha256), err, errlen) ||
        get_str(o, "zst_sha256", m->zst_sha256, sizeof(m->zst_sha256), err, errlen))
        goto out;
    struct {
        const char *k;
        double min;
        int is_signed;
        void *p;
    } nums[] = {
        {"seq", 0, 0, &m->seq},
        {"count", 0, 0, &m->count},
        {"ndjson_bytes", 0, 0, &m->ndjson_bytes},
        {"zst_bytes", 0, 0, &m->zst_bytes},
        {"min_created_at", -9007199254740992.0, 1, &m->min_created_at},
        {"max_created_at", -9007199254740992.0, 1, &m->max_created_at},
        {"cutoff_ms", -9007199254740992.0, 1, &m->cutoff_ms},
        {"written_at_ms", 0, 1, &m->written_at_ms},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        if (get_num(o, nums[i].k, nums[i].min, &v, err, errlen))
            goto out;
        if (nums[i].is_signed)
            *(int64_t *)nums[i].p = (int64_t)v;
        else
            *(uint64_t *)nums[i].p = (uint64_t)v;
    }
    int is_manifest = 1;
    if (seg_key_seq(m->object, &is_manifest) != (int64_t)m->seq || is_manifest ||
        strchr(m->object, '/')) {
        snprintf(err, errlen,
                 "manifest: \"object\": expected <seq>.<token>.ndjson.zst of seq %" PRIu64
                 ", got \"%s\"",
                 m->seq, m->object);
        goto out;
    }
    if (strlen(m->zst_sha256) != 64 || strlen(m->ndjson_sha256) != 64) {
        snprintf(err, errlen, "manifest: sha256 fields must be 64 hex digits");
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(o);
    return rc;
}

int seg_job_ok(const char *job)
{
    size_t n = job ? strlen(job) : 0;
    if (n == 0 || n > SEG_JOB_MAX || job[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = job[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int fits(int n, size_t cap)
{
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

void seg_token_new(char token[SEG_TOKEN_LEN + 1])
{
    unsigned char r[SEG_TOKEN_LEN / 2];
    if (RAND_bytes(r, sizeof(r)) != 1) {
        /* no entropy from OpenSSL: time and address, still distinct per try */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)r;
        memcpy(r, &v, sizeof(r));
    }
    hex(r, sizeof(r), token);
}

int seg_object_name(char *out, size_t cap, uint64_t seq, const char *token)
{
    return fits(snprintf(out, cap, "%012" PRIu64 ".%s.ndjson.zst", seq, token), cap);
}

int seg_key_data(char *out, size_t cap, const char *prefix, const char *job, const char *object)
{
    return fits(snprintf(out, cap, "%s/%s/segments/%s", prefix, job, object), cap);
}

int seg_key_manifest(char *out, size_t cap, const char *prefix, const char *job, uint64_t seq)
{
    return fits(snprintf(out, cap, "%s/%s/segments/%012" PRIu64 ".manifest.json", prefix, job, seq),
                cap);
}

int seg_key_checkpoint(char *out, size_t cap, const char *prefix, const char *job)
{
    return fits(snprintf(out, cap, "%s/%s/checkpoint.json", prefix, job), cap);
}

int64_t seg_key_seq(const char *key, int *is_manifest)
{
    const char *p = strstr(key, "/segments/");
    p = p ? p + strlen("/segments/") : key;
    int64_t seq = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 18) {
        seq = seq * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits != 12)
        return -1;
    if (*p == '.' && strlen(p) == 1 + SEG_TOKEN_LEN + strlen(".ndjson.zst") &&
        strcmp(p + 1 + SEG_TOKEN_LEN, ".ndjson.zst") == 0) {
        for (int i = 1; i <= SEG_TOKEN_LEN; i++)
            if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
                return -1;
        if (is_manifest)
            *is_manifest = 0;
        return seq;
    }
    if (strcmp(p, ".manifest.json") == 0) {
        if (is_manifest)
            *is_manifest = 1;
        return seq;
    }
    return -1;
}
