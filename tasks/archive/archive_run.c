/* archive_run.c: one run of an archive job (archive_run.h): list, write,
 * verify, commit, delete, checkpoint; and finishing a committed segment
 * after a crash. */
#include "archive_run.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infra/log.h"

#define ARCHIVE_KEY_MAX 600
#define ARCHIVE_MAX_LINE (64u << 20) /* one NDJSON line read back in recovery */

void archive_limits_default(archive_limits_t *l)
{
    l->prefix = "archive";
    l->page_size = 10000;
    l->segment_max_messages = 100000;
    l->segment_max_bytes = 64 << 20;
    l->delete_batch = 10000;
    l->zstd_level = 3;
    l->call_timeout_ms = 30000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- checkpoint --------------------------------------------------------- */

char *archive_checkpoint_to_json(const char *job, const archive_checkpoint_t *cp)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "format", "imtask-archive-checkpoint");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "job", job);
    cJSON_AddNumberToObject(o, "next_seq", (double)cp->next_seq);
    cJSON_AddStringToObject(o, "cursor", cp->cursor);
    cJSON_AddNumberToObject(o, "archived_total", (double)cp->archived_total);
    cJSON_AddNumberToObject(o, "segments_total", (double)cp->segments_total);
    cJSON_AddStringToObject(o, "last_run", cp->last_run);
    cJSON_AddBoolToObject(o, "last_run_done", cp->last_run_done);
    cJSON_AddNumberToObject(o, "updated_at_ms", (double)cp->updated_at_ms);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int archive_checkpoint_parse(const char *json, size_t len, archive_checkpoint_t *cp, char *err,
                             size_t errlen)
{
    memset(cp, 0, sizeof(*cp));
    cJSON *o = cJSON_ParseWithLength(json, len);
    int rc = -1;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "version");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "next_seq");
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(o, "cursor");
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(o, "archived_total");
    const cJSON *segs = cJSON_GetObjectItemCaseSensitive(o, "segments_total");
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(o, "last_run");
    const cJSON *done = cJSON_GetObjectItemCaseSensitive(o, "last_run_done");
    const cJSON *upd = cJSON_GetObjectItemCaseSensitive(o, "updated_at_ms");
    if (!cJSON_IsObject(o) || !cJSON_IsString(f) ||
        strcmp(f->valuestring, "imtask-archive-checkpoint") || !cJSON_IsNumber(v) ||
        v->valuedouble != 1) {
        snprintf(err, errlen,
                 "checkpoint: expected a JSON object with format \"imtask-archive-checkpoint\" "
                 "and version 1");
        goto out;
    }
    if (!cJSON_IsNumber(seq) || seq->valuedouble < 0 || seq->valuedouble > 1e15 ||
        !cJSON_IsString(cur) || strlen(cur->valuestring) > SEG_CURSOR_MAX) {
        snprintf(err, errlen,
                 "checkpoint: expected next_seq (an integer >= 0) and cursor (a string of at "
                 "most %d bytes)",
                 SEG_CURSOR_MAX);
        goto out;
    }
    cp->next_seq = (uint64_t)seq->valuedouble;
    snprintf(cp->cursor, sizeof(cp->cursor), "%s", cur->valuestring);
    if (cJSON_IsNumber(tot) && tot->valuedouble >= 0)
        cp->archived_total = (uint64_t)tot->valuedouble;
    if (cJSON_IsNumber(segs) && segs->valuedouble >= 0)
        cp->segments_total = (uint64_t)segs->valuedouble;
    if (cJSON_IsString(run))
        snprintf(cp->last_run, sizeof(cp->last_run), "%s", run->valuestring);
    cp->last_run_done = cJSON_IsTrue(done);
    if (cJSON_IsNumber(upd))
        cp->updated_at_ms = (int64_t)upd->valuedouble;
    rc = 0;
out:
    cJSON_Delete(o);
    return rc;
}

int archive_checkpoint_load(store_t *s, const char *prefix, const char *job,
                            archive_checkpoint_t *cp, char *err, size_t errlen)
{
    char key[ARCHIVE_KEY_MAX];
    memset(cp, 0, sizeof(*cp));
    if (seg_key_checkpoint(key, sizeof(key), prefix, job)) {
        snprintf(err, errlen, "checkpoint key too long");
        return -1;
    }
    void *data;
    size_t len;
    int rc = store_get(s, key, &data, &len, err, errlen);
    if (rc)
        return rc;
    char why[256];
    rc = archive_checkpoint_parse(data, len, cp, why, sizeof(why));
    free(data);
    if (rc)
        snprintf(err, errlen, "%s: %s", key, why);
    return rc;
}

static int checkpoint_put(store_t *s, const char *prefix, const char *job, archive_checkpoint_t *cp,
                          char *err, size_t errlen)
{
    char key[ARCHIVE_KEY_MAX];
    if (seg_key_checkpoint(key, sizeof(key), prefix, job)) {
        snprintf(err, errlen, "checkpoint key too long");
        return -1;
    }
    cp->updated_at_ms = wall_ms();
    char *json = archive_checkpoint_to_json(job, cp);
    if (!json) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = store_put(s, key, json, strlen(json), "application/json", err, errlen);
    free(json);
    return rc;
}

/* ---- im-repo calls ------------------------------------------------------ */

static archive_rc_t repo_fail(const char *what, const repo_status_t *st, char *err, size_t errlen)
{
    snprintf(err, errlen, "im-repo %s: %s: %s", what, repo_err_name(st->code), st->message);
    return repo_err_is_retriable(st->code) ? ARCHIVE_TRANSIENT : ARCHIVE_FATAL;
}

/* A call waited for: repo_call_async's callback (I/O thread) hands the
 * result over. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool active; /* started, not yet taken by call_wait */
    bool done;
    repo_status_t st;
    ProtobufCMessage *resp;
} call_t;

static void call_init(call_t *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void call_fini(call_t *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static void call_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp)
{
    call_t *c = opaque;
    pthread_mutex_lock(&c->mu);
    c->st = *st;
    c->resp = resp;
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static repo_err_t call_start(call_t *c, repo_client_t *r, const repo_method_t *m,
                             const ProtobufCMessage *req, const repo_call_opts_t *opts)
{
    c->done = false;
    c->resp = NULL;
    repo_err_t e = repo_call_async(r, m, req, opts, call_done, c);
    if (e != REPO_ERR_OK) {
        c->st.code = e;
        snprintf(c->st.message, sizeof(c->st.message), "%s", repo_err_str(e));
        c->done = true;
    }
    c->active = true;
    return e;
}

/* Waits for the call; returns its code (resp set on OK, the caller frees). */
static repo_err_t call_wait(call_t *c, ProtobufCMessage **resp, repo_status_t *st)
{
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    c->active = false;
    *st = c->st;
    *resp = c->resp;
    c->resp = NULL;
    return c->st.code;
}

/* Waits for a call still running (an error path) and drops its result. */
static void call_drain(call_t *c)
{
    if (!c->active)
        return;
    ProtobufCMessage *resp;
    repo_status_t st;
    call_wait(c, &resp, &st);
    repo_response_free(resp);
}

#define ARCHIVE_DELETES_IN_FLIGHT 4

static bool cancelled(const archive_env_t *env);

/* Delete ids[0..n) in batches, up to ARCHIVE_DELETES_IN_FLIGHT at a time. */
static archive_rc_t delete_ids(const archive_env_t *env, const archive_limits_t *lim,
                               const char *const *ids, size_t n, archive_counts_t *counts,
                               char *err, size_t errlen)
{
    repo_call_opts_t opts = {.timeout_ms = lim->call_timeout_ms};
    call_t calls[ARCHIVE_DELETES_IN_FLIGHT];
    archive_rc_t arc = ARCHIVE_OK;
    size_t batch = (size_t)lim->delete_batch, off = 0;
    for (int i = 0; i < ARCHIVE_DELETES_IN_FLIGHT; i++)
        call_init(&calls[i]);
    for (int slot = 0;; slot = (slot + 1) % ARCHIVE_DELETES_IN_FLIGHT) {
        call_t *c = &calls[slot];
        if (c->active) {
            ProtobufCMessage *resp;
            repo_status_t st;
            if (call_wait(c, &resp, &st) != REPO_ERR_OK) {
                if (arc == ARCHIVE_OK)
                    arc = repo_fail("DeleteMessages", &st, err, errlen);
            } else {
                const ImRepo__V1__DeleteMessagesResponse *d = (const void *)resp;
                counts->deleted += d->deleted > 0 ? (uint64_t)d->deleted : 0;
                repo_response_free(resp);
            }
        }
        /* a stop between batches is safe: the segment is committed, the
         * next run deletes its ids again */
        if (off < n && arc == ARCHIVE_OK && cancelled(env))
            arc = ARCHIVE_CANCELLED;
        if (off < n && arc == ARCHIVE_OK) {
            size_t k = n - off < batch ? n - off : batch;
            ImRepo__V1__DeleteMessagesRequest req = IM_REPO__V1__DELETE_MESSAGES_REQUEST__INIT;
            req.n_message_ids = k;
            req.message_ids = (char **)(ids + off);
            call_start(c, env->repo, &repo_method_delete_messages, &req.base, &opts);
            off += k;
            continue;
        }
        bool any = false;
        for (int i = 0; i < ARCHIVE_DELETES_IN_FLIGHT; i++)
            any = any || calls[i].active;
        if (!any)
            break;
    }
    for (int i = 0; i < ARCHIVE_DELETES_IN_FLIGHT; i++)
        call_fini(&calls[i]);
    return arc;
}

/* ---- finishing a committed segment (crash recovery) --------------------- */

typedef struct {
    char **ids;
    size_t n, cap;
    char err[256];
} idlist_t;

static void idlist_free(idlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
    memset(l, 0, sizeof(*l));
}

static int collect_id(void *opaque, const char *text, size_t n)
{
    idlist_t *l = opaque;
    cJSON *o = cJSON_ParseWithLength(text, n);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (!cJSON_IsString(id)) {
        snprintf(l->err, sizeof(l->err), "line %zu has no string \"id\"", l->n + 1);
        cJSON_Delete(o);
        return -2;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 1024;
        char **ni = realloc(l->ids, nc * sizeof(*ni));
        if (!ni) {
            cJSON_Delete(o);
            snprintf(l->err, sizeof(l->err), "out of memory");
            return -2;
        }
        l->ids = ni;
        l->cap = nc;
    }
    l->ids[l->n] = strdup(id->valuestring);
    cJSON_Delete(o);
    if (!l->ids[l->n]) {
        snprintf(l->err, sizeof(l->err), "out of memory");
        return -2;
    }
    l->n++;
    return 0;
}

/* Reads segment m.seq back, verifies it and deletes its ids again. */
static archive_rc_t finish_committed(const archive_env_t *env, const archive_limits_t *lim,
                                     const char *job, const seg_manifest_t *m,
                                     archive_counts_t *counts, char *err, size_t errlen)
{
    char key[ARCHIVE_KEY_MAX], why[512];
    seg_key_data(key, sizeof(key), lim->prefix, job, m->object);
    void *data;
    size_t len;
    int rc = store_get(env->store, key, &data, &len, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "read %s: %s", key, why);
        return ARCHIVE_TRANSIENT;
    }
    if (rc == 1) {
        counts->verify_failures++;
        snprintf(err, errlen, "%s: the manifest exists but the segment does not", key);
        return ARCHIVE_FATAL;
    }
    if (seg_verify(m, data, len, why, sizeof(why))) {
        counts->verify_failures++;
        free(data);
        snprintf(err, errlen, "%s: %s", key, why);
        return ARCHIVE_FATAL;
    }
    idlist_t l = {0};
    rc =
        seg_decode(data, len, ARCHIVE_MAX_LINE, collect_id, &l, NULL, NULL, NULL, why, sizeof(why));
    free(data);
    if (rc) {
        snprintf(err, errlen, "%s: %s", key, rc == -2 ? l.err : why);
        idlist_free(&l);
        return ARCHIVE_FATAL;
    }
    archive_rc_t arc = delete_ids(env, lim, (const char *const *)l.ids, l.n, counts, err, errlen);
    idlist_free(&l);
    return arc;
}

/* ---- the run ------------------------------------------------------------ */

/* Hands what changed since the last report to env->progress. */
static void report(const archive_env_t *env, const archive_counts_t *c, archive_counts_t *last)
{
    if (!env->progress)
        return;
    archive_counts_t d = {
        .messages = c->messages - last->messages,
        .segments = c->segments - last->segments,
        .ndjson_bytes = c->ndjson_bytes - last->ndjson_bytes,
        .zst_bytes = c->zst_bytes - last->zst_bytes,
        .deleted = c->deleted - last->deleted,
        .verify_failures = c->verify_failures - last->verify_failures,
        .recovered = c->recovered - last->recovered,
        .conflicts = c->conflicts - last->conflicts,
        .pages = c->pages - last->pages,
    };
    *last = *c;
    env->progress(env->opaque, &d);
}

static bool cancelled(const archive_env_t *env)
{
    return env->cancelled && env->cancelled(env->opaque);
}

/* Tries of segment seq that no manifest names (a crash before the commit,
 * or a try another run's commit made moot) are removed once seq is
 * committed: every object of seq but `keep`. Failures are only logged. */
typedef struct {
    const char *keep;
    char keys[8][STORE_KEY_MAX + 1];
    int n;
} others_t;

static int other_try(void *opaque, const char *key, uint64_t size)
{
    (void)size;
    others_t *o = opaque;
    const char *name = strrchr(key, '/');
    int is_manifest = 1;
    name = name ? name + 1 : key;
    if (seg_key_seq(name, &is_manifest) >= 0 && !is_manifest && strcmp(name, o->keep) != 0 &&
        o->n < 8)
        snprintf(o->keys[o->n++], sizeof(o->keys[0]), "%s", key);
    return 0;
}

static void drop_other_tries(const archive_env_t *env, const archive_limits_t *lim, const char *job,
                             uint64_t seq, const char *keep)
{
    char pfx[ARCHIVE_KEY_MAX], why[512];
    others_t o = {.keep = keep};
    snprintf(pfx, sizeof(pfx), "%s/%s/segments/%012" PRIu64 ".", lim->prefix, job, seq);
    if (store_list(env->store, pfx, other_try, &o, why, sizeof(why))) {
        log_warn("archive %s: listing the tries of segment %" PRIu64 ": %s", job, seq, why);
        return;
    }
    for (int i = 0; i < o.n; i++) {
        if (store_delete(env->store, o.keys[i], why, sizeof(why)))
            log_warn("archive %s: %s", job, why);
        else
            log_info("archive %s: removed %s, a try of segment %" PRIu64 " that was not committed",
                     job, o.keys[i], seq);
    }
}

/* Start the listing of up to limit messages (at most a page) from cursor. */
static void list_start(call_t *c, const archive_env_t *env, const archive_limits_t *lim,
                       const repo_call_opts_t *opts, int64_t cutoff_ms, const char *cursor,
                       int64_t limit)
{
    ImRepo__V1__ListMessagesBeforeRequest req = IM_REPO__V1__LIST_MESSAGES_BEFORE_REQUEST__INIT;
    req.before = cutoff_ms;
    req.cursor = (char *)cursor;
    req.limit = (int32_t)(limit < lim->page_size ? limit : lim->page_size);
    call_start(c, env->repo, &repo_method_list_messages_before, &req.base, opts);
}

archive_rc_t archive_run(const archive_env_t *env, const archive_limits_t *lim, const char *job,
                         const char *run_id, int64_t cutoff_ms, archive_counts_t *counts, char *err,
                         size_t errlen)
{
    archive_checkpoint_t cp;
    archive_counts_t reported = {0};
    archive_rc_t arc = ARCHIVE_OK;
    seg_writer_t *w = NULL;
    const char **ids = NULL;
    char why[512], key[ARCHIVE_KEY_MAX];
    memset(counts, 0, sizeof(*counts));

    if (!seg_job_ok(job)) {
        snprintf(err, errlen, "job name \"%.80s\": expected [A-Za-z0-9._-], 1..%d bytes", job,
                 SEG_JOB_MAX);
        return ARCHIVE_FATAL;
    }
    int rc = archive_checkpoint_load(env->store, lim->prefix, job, &cp, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "%s", why);
        /* a checkpoint that does not parse needs a person; a failed read not */
        return strstr(why, "checkpoint:") ? ARCHIVE_FATAL : ARCHIVE_TRANSIENT;
    }
    if (strcmp(cp.last_run, run_id) || !cp.last_run_done) {
        snprintf(cp.last_run, sizeof(cp.last_run), "%s", run_id);
        cp.last_run_done = false;
    }
    w = seg_writer_new(lim->zstd_level, why, sizeof(why));
    if (!w) {
        snprintf(err, errlen, "%s", why);
        return ARCHIVE_TRANSIENT;
    }
    repo_call_opts_t opts = {.timeout_ms = lim->call_timeout_ms};
    call_t pf; /* the next ListMessagesBefore page, fetched ahead ... */
    char pf_cursor[SEG_CURSOR_MAX + 1] = ""; /* ... from this cursor */
    bool first_segment = true;
    call_init(&pf);

    for (;;) {
        report(env, counts, &reported);
        if (cancelled(env)) {
            arc = ARCHIVE_CANCELLED;
            break;
        }

        /* A committed segment at next_seq: a crash after its manifest. */
        seg_key_manifest(key, sizeof(key), lim->prefix, job, cp.next_seq);
        void *mdata;
        size_t mlen;
        rc = store_get(env->store, key, &mdata, &mlen, why, sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "read %s: %s", key, why);
            arc = ARCHIVE_TRANSIENT;
            break;
        }
        if (rc == 0) {
            seg_manifest_t m;
            rc = seg_manifest_parse(mdata, mlen, &m, why, sizeof(why));
            free(mdata);
            if (rc || m.seq != cp.next_seq || strcmp(m.job, job)) {
                snprintf(err, errlen, "%s: %s", key, rc ? why : "seq or job differ from the key");
                arc = ARCHIVE_FATAL;
                break;
            }
            log_info("archive %s: segment %" PRIu64 " was committed before a stop; verifying it "
                     "and deleting its %" PRIu64 " messages again",
                     job, m.seq, m.count);
            arc = finish_committed(env, lim, job, &m, counts, err, errlen);
            if (arc != ARCHIVE_OK)
                break;
            drop_other_tries(env, lim, job, m.seq, m.object);
            cp.next_seq++;
            snprintf(cp.cursor, sizeof(cp.cursor), "%s", m.end_cursor);
            cp.archived_total += m.count;
            cp.segments_total++;
            counts->recovered++;
            if (checkpoint_put(env->store, lim->prefix, job, &cp, why, sizeof(why))) {
                snprintf(err, errlen, "checkpoint: %s", why);
                arc = ARCHIVE_TRANSIENT;
                break;
            }
            continue;
        }

        /* 1. list into a new segment */
        seg_manifest_t m;
        memset(&m, 0, sizeof(m));
        snprintf(m.start_cursor, sizeof(m.start_cursor), "%s", cp.cursor);
        char cursor[SEG_CURSOR_MAX + 1];
        snprintf(cursor, sizeof(cursor), "%s", cp.cursor);
        seg_writer_reset(w);
        bool more = true;
        while (more && seg_writer_count(w) < (uint64_t)lim->segment_max_messages &&
               seg_writer_ndjson_bytes(w) < (uint64_t)lim->segment_max_bytes) {
            if (cancelled(env)) {
                arc = ARCHIVE_CANCELLED;
                goto out;
            }
            int64_t have = (int64_t)seg_writer_count(w);
            /* a page fetched ahead from another cursor (the checkpoint moved
             * to another run's committed segment meanwhile) is not used */
            if (pf.active && strcmp(pf_cursor, cursor) != 0)
                call_drain(&pf);
            if (!pf.active) {
                snprintf(pf_cursor, sizeof(pf_cursor), "%s", cursor);
                list_start(&pf, env, lim, &opts, cutoff_ms, cursor,
                           lim->segment_max_messages - have);
            }
            ProtobufCMessage *pm;
            repo_status_t st;
            if (call_wait(&pf, &pm, &st) != REPO_ERR_OK) {
                if (st.code == REPO_ERR_INVALID_ARGUMENT && cursor[0]) {
                    /* a cursor im-repo no longer takes (expired, or from
                     * another im-repo): start over from the oldest message
                     * left, which is always safe since everything archived
                     * is deleted. The messages of this segment so far are
                     * not deleted yet, so the segment ends here (with an
                     * end cursor of "") rather than list them again. */
                    log_warn("archive %s: im-repo refused the cursor (%s); listing again from the "
                             "oldest message left",
                             job, st.message);
                    cursor[0] = '\0';
                    if (have == 0) {
                        m.start_cursor[0] = '\0';
                        continue;
                    }
                    break;
                }
                arc = repo_fail("ListMessagesBefore", &st, err, errlen);
                goto out;
            }
            ImRepo__V1__ListMessagesBeforeResponse *resp = (void *)pm;
            counts->pages++;
            more = resp->has_more;
            if (more && (!resp->next_cursor || !resp->next_cursor[0] ||
                         strlen(resp->next_cursor) > SEG_CURSOR_MAX)) {
                snprintf(err, errlen,
                         "im-repo ListMessagesBefore: has_more without a usable next_cursor "
                         "(empty or over %d bytes)",
                         SEG_CURSOR_MAX);
                repo_response_free(pm);
                arc = ARCHIVE_FATAL;
                goto out;
            }
            /* the next page is fetched while this one is encoded: for this
             * segment if it has room after this page, else for the next */
            if (more) {
                int64_t room = lim->segment_max_messages - have - (int64_t)resp->n_messages;
                snprintf(pf_cursor, sizeof(pf_cursor), "%s", resp->next_cursor);
                list_start(&pf, env, lim, &opts, cutoff_ms, resp->next_cursor,
                           room > 0 ? room : lim->segment_max_messages);
            }
            for (size_t i = 0; i < resp->n_messages; i++) {
                const ImRepo__V1__Message *msg = resp->messages[i];
                if (msg->created_at >= cutoff_ms || !msg->id || !msg->id[0]) {
                    snprintf(err, errlen,
                             "im-repo ListMessagesBefore(before=%" PRId64
                             ") returned message \"%.100s\" created at %" PRId64
                             ": expected a non-empty id and created_at < before",
                             cutoff_ms, msg->id ? msg->id : "", msg->created_at);
                    repo_response_free(pm);
                    arc = ARCHIVE_FATAL;
                    goto out;
                }
                if (seg_writer_add(w, msg, why, sizeof(why))) {
                    snprintf(err, errlen, "segment %" PRIu64 ": %s", cp.next_seq, why);
                    repo_response_free(pm);
                    arc = ARCHIVE_TRANSIENT;
                    goto out;
                }
            }
            /* no more: the next listing starts from the oldest message left */
            snprintf(cursor, sizeof(cursor), "%s", more ? resp->next_cursor : "");
            repo_response_free(pm);
        }
        uint64_t n = seg_writer_count(w);
        if (n == 0) {
            /* nothing older than the cutoff is left */
            if (strcmp(cp.cursor, cursor)) {
                snprintf(cp.cursor, sizeof(cp.cursor), "%s", cursor);
            }
            cp.last_run_done = true;
            if (checkpoint_put(env->store, lim->prefix, job, &cp, why, sizeof(why))) {
                snprintf(err, errlen, "checkpoint: %s", why);
                arc = ARCHIVE_TRANSIENT;
                goto out;
            }
            arc = ARCHIVE_OK;
            break;
        }
        snprintf(m.end_cursor, sizeof(m.end_cursor), "%s", cursor);
        snprintf(m.job, sizeof(m.job), "%s", job);
        snprintf(m.run, sizeof(m.run), "%s", run_id);
        m.seq = cp.next_seq;
        m.cutoff_ms = cutoff_ms;
        const void *zst;
        size_t zlen;
        if (seg_writer_finish(w, &m, &zst, &zlen, why, sizeof(why))) {
            snprintf(err, errlen, "segment %" PRIu64 ": %s", m.seq, why);
            arc = ARCHIVE_TRANSIENT;
            goto out;
        }

        /* 2. put (an object of this try's own), read back, verify */
        char token[SEG_TOKEN_LEN + 1], dkey[ARCHIVE_KEY_MAX];
        seg_token_new(token);
        if (seg_object_name(m.object, sizeof(m.object), m.seq, token) ||
            seg_key_data(key, sizeof(key), lim->prefix, job, m.object)) {
            snprintf(err, errlen, "segment key too long");
            arc = ARCHIVE_FATAL;
            goto out;
        }
        snprintf(dkey, sizeof(dkey), "%s", key);
        if (store_put(env->store, key, zst, zlen, "application/zstd", why, sizeof(why))) {
            snprintf(err, errlen, "write %s: %s", key, why);
            arc = ARCHIVE_TRANSIENT;
            goto out;
        }
        void *back;
        size_t blen;
        rc = store_get(env->store, key, &back, &blen, why, sizeof(why));
        if (rc == 1) {
            /* gone: another run committed this seq and removed the other
             * tries (drop_other_tries); then finish theirs, as on a lost
             * commit */
            char mkey[ARCHIVE_KEY_MAX];
            void *md;
            size_t ml;
            seg_key_manifest(mkey, sizeof(mkey), lim->prefix, job, m.seq);
            if (store_get(env->store, mkey, &md, &ml, why, sizeof(why)) == 0) {
                free(md);
                log_warn("archive %s: segment %" PRIu64 " was committed by another run meanwhile; "
                         "finishing theirs",
                         job, m.seq);
                counts->conflicts++;
                continue;
            }
        }
        if (rc) {
            counts->verify_failures++;
            snprintf(err, errlen, "read back %s: %s", key, rc == 1 ? "missing after write" : why);
            arc = ARCHIVE_TRANSIENT;
            goto out;
        }
        rc = seg_verify(&m, back, blen, why, sizeof(why));
        free(back);
        if (rc) {
            counts->verify_failures++;
            snprintf(err, errlen, "verify %s: %s", key, why);
            arc = ARCHIVE_TRANSIENT;
            goto out;
        }

        /* 3. commit: the manifest */
        char *mj = seg_manifest_to_json(&m);
        if (!mj) {
            snprintf(err, errlen, "out of memory");
            arc = ARCHIVE_TRANSIENT;
            goto out;
        }
        seg_key_manifest(key, sizeof(key), lim->prefix, job, m.seq);
        rc = store_put_new(env->store, key, mj, strlen(mj), "application/json", why, sizeof(why));
        free(mj);
        if (rc < 0) {
            snprintf(err, errlen, "write %s: %s", key, why);
            arc = ARCHIVE_TRANSIENT;
            goto out;
        }
        if (rc == 1) {
            /* another run of this job committed segment seq meanwhile (two
             * runners at once, e.g. a task redelivered after a rebalance while
             * the first still ran): ours never counted; drop it and finish
             * theirs (the loop's next pass finds their manifest) */
            log_warn("archive %s: segment %" PRIu64 " was committed by another run meanwhile; "
                     "dropping this try (%s) and finishing theirs",
                     job, m.seq, m.object);
            if (store_delete(env->store, dkey, why, sizeof(why)))
                log_warn("archive %s: %s", job, why);
            counts->conflicts++;
            continue;
        }

        /* the first segment of a run is where a crash before a commit left
         * its try: look once per run (a listing per segment would cost) */
        if (first_segment)
            drop_other_tries(env, lim, job, m.seq, m.object);
        first_segment = false;

        /* 4. delete from im-repo */
        const char **nids = realloc(ids, n * sizeof(*ids));
        if (!nids) {
            snprintf(err, errlen, "out of memory");
            arc = ARCHIVE_TRANSIENT;
            goto out;
        }
        ids = nids;
        for (uint64_t i = 0; i < n; i++)
            ids[i] = seg_writer_id(w, i);
        arc = delete_ids(env, lim, ids, n, counts, err, errlen);
        if (arc != ARCHIVE_OK)
            goto out;

        /* 5. checkpoint */
        cp.next_seq++;
        snprintf(cp.cursor, sizeof(cp.cursor), "%s", cursor);
        cp.archived_total += n;
        cp.segments_total++;
        if (checkpoint_put(env->store, lim->prefix, job, &cp, why, sizeof(why))) {
            snprintf(err, errlen, "checkpoint: %s", why);
            arc = ARCHIVE_TRANSIENT;
            goto out;
        }
        counts->messages += n;
        counts->segments++;
        counts->ndjson_bytes += m.ndjson_bytes;
        counts->zst_bytes += m.zst_bytes;
    }
out:
    call_drain(&pf);
    call_fini(&pf);
    report(env, counts, &reported);
    free(ids);
    seg_writer_destroy(w);
    return arc;
}
