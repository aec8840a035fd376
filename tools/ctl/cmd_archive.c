/* cmd_archive.c: imtask-ctl archive ls|verify|cat: the segments of the
 * archive jobs with their manifests and checkpoints, a full check of every
 * segment against its manifest, and the archived messages as NDJSON on
 * stdout (restore: pipe it wherever the messages should go). The store comes
 * from an imtask-archive config (storage: and archive.prefix, with the same
 * environment overrides) or --dir for a local directory (docs/archive.md). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl.h"
#include "infra/clock.h"
#include "infra/config.h"
#include "table.h"
#include "tasks/archive/archive_run.h"
#include "tasks/archive/segment.h"
#include "tasks/archive/storage.h"
#include "timeparse.h"

#define ARCH_MAX_SEGMENTS 10000000
#define ARCH_MAX_LINE (64u << 20)

static const ctl_command_t ctl_archive_cmd = {
    "archive", "ls|verify|cat ...",
    "The message archive written by imtask-archive (docs/archive.md):\n"
    "  archive ls     [--job JOB]                       segments with their manifests\n"
    "  archive verify [--job JOB]                       check every segment against its\n"
    "                                                   manifest (sizes, sha256, lines)\n"
    "  archive cat    --job JOB [--seq N] [--from T] [--to T]\n"
    "                                                   the archived messages as NDJSON\n"
    "Where: --config FILE (an imtask-archive config: storage: and archive.prefix, the\n"
    "environment overriding it as for the binary) or --dir DIR (a local store)."};

static const ctl_command_t ctl_archive_ls_cmd = {
    "archive ls", "(--config FILE | --dir DIR) [--job JOB]",
    "One row per segment: job, seq, messages, first and last id, the time range of the\n"
    "messages, compressed bytes, the run that wrote it; then each job's checkpoint.\n"
    "A segment object no manifest names (a try a crash or another run's commit\n"
    "interrupted; never part of the archive) is listed as an uncommitted try."};

static const ctl_command_t ctl_archive_verify_cmd = {
    "archive verify", "(--config FILE | --dir DIR) [--job JOB]",
    "Read every segment back and check it against its manifest: size and sha256 of the\n"
    "stored bytes, then decompressed: line count, size and sha256 of the NDJSON. Exit\n"
    "status 1 when any segment fails or a seq has no manifest (a gap)."};

static const ctl_command_t ctl_archive_cat_cmd = {
    "archive cat", "(--config FILE | --dir DIR) --job JOB [--seq N] [--from T] [--to T]",
    "Write the archived messages of JOB as NDJSON (one message a line, the fields of\n"
    "docs/archive.md) to stdout, oldest segment first. --seq: one segment. --from/--to\n"
    "(RFC 3339, Unix ms or -2h style): only messages with created_at in [from, to);\n"
    "segments outside the range are not read. Each segment is verified before any of\n"
    "its lines is written."};

typedef struct {
    const char *config, *dir, *job;
    store_t *store;
    cfg_t *cfg;
    const char *prefix;
} arch_ctx_t;

static const ctl_opt_t *arch_opts(arch_ctx_t *c, ctl_opt_t *o)
{
    o[0] =
        (ctl_opt_t){"config", CTL_OPT_STRING, &c->config, "FILE", "an imtask-archive config", 0, 0};
    o[1] = (ctl_opt_t){
        "dir", CTL_OPT_STRING, &c->dir, "DIR", "a local store (instead of --config)", 0, 0};
    o[2] = (ctl_opt_t){"job", CTL_OPT_STRING, &c->job, "JOB", "one job only", 0, 0};
    return o;
}

static const cfg_field_t arch_prefix_field[] = {
    {.key = "prefix",
     .type = CFG_STRING,
     .offset = 0,
     .def = "archive",
     .help = "key prefix of archives"},
};

/* Open the store; 0 or -1 (reported). */
static int arch_open(const char *cmdname, arch_ctx_t *c)
{
    char err[CFG_ERR_MAX];
    if ((c->config != NULL) == (c->dir != NULL)) {
        ctl_fail(cmdname, "give either --config FILE or --dir DIR");
        return -1;
    }
    c->prefix = "archive";
    if (c->job && !seg_job_ok(c->job)) {
        ctl_fail(cmdname, "--job \"%s\": expected [A-Za-z0-9._-], 1..%d bytes", c->job,
                 SEG_JOB_MAX);
        return -1;
    }
    if (c->dir) {
        struct stat st;
        if (stat(c->dir, &st) || !S_ISDIR(st.st_mode)) {
            ctl_fail(cmdname, "--dir %s: not a directory", c->dir); /* read-only: never create it */
            return -1;
        }
        c->store = store_open_local(c->dir, err, sizeof(err));
    } else {
        store_config_t sc;
        struct {
            const char *prefix;
        } ac = {NULL};
        if (!(c->cfg = cfg_load(c->config, err, sizeof(err)))) {
            ctl_fail(cmdname, "%s", err);
            return -1;
        }
        if (store_config_bind(c->cfg, "storage", &sc, err, sizeof(err)) ||
            cfg_bind(c->cfg, "archive", arch_prefix_field, 1, &ac, NULL, err, sizeof(err))) {
            ctl_fail(cmdname, "%s: %s", c->config, err);
            return -1;
        }
        if (ac.prefix && store_key_ok(ac.prefix))
            c->prefix = ac.prefix;
        c->store = store_open(&sc, err, sizeof(err));
    }
    if (!c->store) {
        ctl_fail(cmdname, "%s", err);
        return -1;
    }
    return 0;
}

static void arch_close(arch_ctx_t *c)
{
    store_close(c->store);
    cfg_destroy(c->cfg);
}

/* The segment keys under the prefix (or one job), sorted. */
typedef struct {
    char job[SEG_JOB_MAX + 1];
    int64_t seq;
    int is_manifest;
    uint64_t size;
    char name[64]; /* the file name under segments/ */
} arch_key_t;

typedef struct {
    arch_key_t *v;
    size_t n, cap;
    size_t plen;
    int oom;
} arch_keys_t;

static int arch_collect(void *opaque, const char *key, uint64_t size)
{
    arch_keys_t *k = opaque;
    const char *rest = key + k->plen; /* "<job>/segments/..." */
    const char *slash = strchr(rest, '/');
    int is_manifest = 0;
    int64_t seq = seg_key_seq(key, &is_manifest);
    if (!slash || seq < 0 || (size_t)(slash - rest) > SEG_JOB_MAX ||
        strncmp(slash, "/segments/", 10))
        return 0;
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 256;
        arch_key_t *nv = nc <= ARCH_MAX_SEGMENTS ? realloc(k->v, nc * sizeof(*nv)) : NULL;
        if (!nv) {
            k->oom = 1;
            return 1;
        }
        k->v = nv;
        k->cap = nc;
    }
    arch_key_t *e = &k->v[k->n++];
    memcpy(e->job, rest, (size_t)(slash - rest));
    e->job[slash - rest] = '\0';
    e->seq = seq;
    e->is_manifest = is_manifest;
    e->size = size;
    snprintf(e->name, sizeof(e->name), "%s", slash + 10);
    return 0;
}

static int arch_list(const char *cmdname, arch_ctx_t *c, arch_keys_t *k)
{
    char pfx[STORE_KEY_MAX + 2], err[CTL_ERR_MAX];
    memset(k, 0, sizeof(*k));
    snprintf(pfx, sizeof(pfx), "%s/", c->prefix);
    k->plen = strlen(pfx);
    if (c->job)
        snprintf(pfx, sizeof(pfx), "%s/%s/segments/", c->prefix, c->job);
    if (store_list(c->store, pfx, arch_collect, k, err, sizeof(err))) {
        ctl_fail(cmdname, "list %s: %s", pfx, err);
        return -1;
    }
    if (k->oom) {
        ctl_fail(cmdname, "out of memory or more than %d segments", ARCH_MAX_SEGMENTS);
        return -1;
    }
    return 0;
}

static int arch_manifest(arch_ctx_t *c, const char *job, int64_t seq, seg_manifest_t *m, char *err,
                         size_t errlen)
{
    char key[STORE_KEY_MAX + 1], why[512];
    void *d;
    size_t n;
    seg_key_manifest(key, sizeof(key), c->prefix, job, (uint64_t)seq);
    int rc = store_get(c->store, key, &d, &n, why, sizeof(why));
    if (rc) {
        snprintf(err, errlen, "%s: %s", key, rc == 1 ? "missing" : why);
        return -1;
    }
    rc = seg_manifest_parse(d, n, m, why, sizeof(why));
    free(d);
    if (rc)
        snprintf(err, errlen, "%s: %s", key, why);
    return rc;
}

/* The committed view of the listed keys: each manifest entry's manifest
 * (loaded), and for each data entry whether a manifest names it. Keys sort by
 * job, then seq; within a seq the tries' objects ("<seq>.<hex>.ndjson.zst")
 * and the manifest ("<seq>.manifest.json") sit together. */
typedef struct {
    seg_manifest_t *m; /* per entry: the manifest (manifest entries that loaded) */
    char **merr;       /* per entry: why a manifest did not load */
    bool *committed;   /* per entry: a data object a manifest names */
} arch_view_t;

static void arch_view_free(arch_view_t *v, size_t n)
{
    for (size_t i = 0; v->merr && i < n; i++)
        free(v->merr[i]);
    free(v->m);
    free(v->merr);
    free(v->committed);
    memset(v, 0, sizeof(*v));
}

static int arch_view(arch_ctx_t *c, const arch_keys_t *k, arch_view_t *v)
{
    v->m = calloc(k->n + 1, sizeof(*v->m));
    v->merr = calloc(k->n + 1, sizeof(*v->merr));
    v->committed = calloc(k->n + 1, sizeof(*v->committed));
    if (!v->m || !v->merr || !v->committed)
        return -1;
    for (size_t i = 0; i < k->n; i++) {
        char err[700];
        if (!k->v[i].is_manifest)
            continue;
        if (arch_manifest(c, k->v[i].job, k->v[i].seq, &v->m[i], err, sizeof(err))) {
            v->merr[i] = strdup(err);
            if (!v->merr[i])
                return -1;
            continue;
        }
        /* the object it names, among the entries of the same job and seq */
        for (size_t j = i;
             j-- > 0 && k->v[j].seq == k->v[i].seq && strcmp(k->v[j].job, k->v[i].job) == 0;)
            if (!k->v[j].is_manifest && strcmp(k->v[j].name, v->m[i].object) == 0)
                v->committed[j] = true;
        for (size_t j = i + 1;
             j < k->n && k->v[j].seq == k->v[i].seq && strcmp(k->v[j].job, k->v[i].job) == 0; j++)
            if (!k->v[j].is_manifest && strcmp(k->v[j].name, v->m[i].object) == 0)
                v->committed[j] = true;
    }
    return 0;
}

/* The size of the object manifest entry i names (0 when not listed). */
static uint64_t arch_object_size(const arch_keys_t *k, const arch_view_t *v, size_t i)
{
    for (size_t j = 0; j < k->n; j++)
        if (v->committed[j] && k->v[j].seq == k->v[i].seq &&
            strcmp(k->v[j].job, k->v[i].job) == 0 && strcmp(k->v[j].name, v->m[i].object) == 0)
            return k->v[j].size;
    return 0;
}

static int ctl_archive_ls(ctl_env_t *env, int argc, char **argv)
{
    static const char *const heads[] = {"JOB",  "SEQ", "MESSAGES", "FIRST ID", "LAST ID",
                                        "FROM", "TO",  "BYTES",    "RUN"};
    arch_ctx_t c = {0};
    ctl_opt_t o[3];
    ctl_optset_t own = {arch_opts(&c, o), 3, "options"};
    int rc = ctl_parse(env, &ctl_archive_ls_cmd, &own, argc, argv, NULL, 0, NULL);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    arch_keys_t k = {0};
    arch_view_t v = {0};
    ctl_table_t *t = NULL;
    rc = CTL_EXIT_FAIL;
    if (arch_open("archive ls", &c) || arch_list("archive ls", &c, &k))
        goto out;
    if (arch_view(&c, &k, &v) || !(t = ctl_table_new(9, heads)))
        goto oom;
    ctl_table_align_right(t, 1);
    ctl_table_align_right(t, 2);
    ctl_table_align_right(t, 7);
    uint64_t total = 0, bytes = 0, segs = 0;
    for (size_t i = 0; i < k.n; i++) {
        char seq[24], cnt[24], from[40] = "", to[40] = "", sz[24];
        snprintf(seq, sizeof(seq), "%" PRId64, k.v[i].seq);
        if (!k.v[i].is_manifest) {
            if (v.committed[i])
                continue;
            snprintf(sz, sizeof(sz), "%" PRIu64, k.v[i].size);
            const char *cells[9] = {k.v[i].job, seq, "-", "(uncommitted try)", "", "", "", sz, ""};
            if (ctl_table_add(t, cells))
                goto oom;
            continue;
        }
        if (v.merr[i]) {
            const char *cells[9] = {k.v[i].job, seq, "-", "(bad manifest)", "", "", "", "", ""};
            if (ctl_table_add(t, cells))
                goto oom;
            continue;
        }
        const seg_manifest_t *m = &v.m[i];
        uint64_t size = arch_object_size(&k, &v, i);
        snprintf(cnt, sizeof(cnt), "%" PRIu64, m->count);
        snprintf(sz, sizeof(sz), "%" PRIu64, size);
        ctl_time_format(m->min_created_at, 0, from, sizeof(from));
        ctl_time_format(m->max_created_at, 0, to, sizeof(to));
        const char *cells[9] = {k.v[i].job, seq, cnt, m->first_id, m->last_id,
                                from,       to,  sz,  m->run};
        if (ctl_table_add(t, cells))
            goto oom;
        total += m->count;
        bytes += size;
        segs++;
    }
    ctl_table_print(t, stdout, env->wide ? 0 : (size_t)env->width);
    printf("\n%" PRIu64 " segments, %" PRIu64 " messages, %" PRIu64 " bytes stored\n", segs, total,
           bytes);
    /* checkpoints of the jobs seen */
    for (size_t i = 0; i < k.n; i++) {
        if (i > 0 && strcmp(k.v[i].job, k.v[i - 1].job) == 0)
            continue;
        archive_checkpoint_t cp;
        char err[600], when[40];
        int r = archive_checkpoint_load(c.store, c.prefix, k.v[i].job, &cp, err, sizeof(err));
        if (r < 0) {
            printf("checkpoint %s: %s\n", k.v[i].job, err);
        } else if (r == 1) {
            printf("checkpoint %s: none\n", k.v[i].job);
        } else {
            ctl_time_format(cp.updated_at_ms, 0, when, sizeof(when));
            printf("checkpoint %s: next seq %" PRIu64 ", %" PRIu64 " messages archived, last run "
                   "%s (%s), at %s\n",
                   k.v[i].job, cp.next_seq, cp.archived_total, cp.last_run,
                   cp.last_run_done ? "done" : "in progress", when);
        }
    }
    rc = CTL_EXIT_OK;
    goto out;
oom:
    ctl_fail("archive ls", "out of memory");
out:
    ctl_table_destroy(&t);
    arch_view_free(&v, k.n);
    free(k.v);
    arch_close(&c);
    return rc;
}

/* Get and verify the segment a manifest names; *data malloc'd. 0 or -1. */
static int arch_load(arch_ctx_t *c, const char *job, const seg_manifest_t *m, void **data,
                     size_t *len, char *err, size_t errlen)
{
    char key[STORE_KEY_MAX + 1], why[600];
    seg_key_data(key, sizeof(key), c->prefix, job, m->object);
    int rc = store_get(c->store, key, data, len, why, sizeof(why));
    if (rc) {
        snprintf(err, errlen, "%s: %s", key, rc == 1 ? "missing" : why);
        return -1;
    }
    if (seg_verify(m, *data, *len, why, sizeof(why))) {
        snprintf(err, errlen, "%s: %s", key, why);
        free(*data);
        *data = NULL;
        return -1;
    }
    return 0;
}

static int ctl_archive_verify(ctl_env_t *env, int argc, char **argv)
{
    arch_ctx_t c = {0};
    ctl_opt_t o[3];
    ctl_optset_t own = {arch_opts(&c, o), 3, "options"};
    int rc = ctl_parse(env, &ctl_archive_verify_cmd, &own, argc, argv, NULL, 0, NULL);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    arch_keys_t k = {0};
    arch_view_t v = {0};
    rc = CTL_EXIT_FAIL;
    if (arch_open("archive verify", &c) || arch_list("archive verify", &c, &k))
        goto out;
    if (arch_view(&c, &k, &v)) {
        ctl_fail("archive verify", "out of memory");
        goto out;
    }
    uint64_t ok = 0, bad = 0, msgs = 0;
    int64_t expect = 0;
    for (size_t i = 0; i < k.n; i++) {
        char err[1200];
        if (i == 0 || strcmp(k.v[i].job, k.v[i - 1].job))
            expect = 0;
        if (!k.v[i].is_manifest) {
            if (!v.committed[i])
                printf("SKIP %s/%s: no manifest names it (a try that was not committed)\n",
                       k.v[i].job, k.v[i].name);
            continue;
        }
        if (k.v[i].seq != expect) {
            printf("FAIL %s: no manifest for segments %" PRId64 "..%" PRId64 " (a gap)\n",
                   k.v[i].job, expect, k.v[i].seq - 1);
            bad++;
        }
        expect = k.v[i].seq + 1;
        if (v.merr[i]) {
            printf("FAIL %s\n", v.merr[i]);
            bad++;
            continue;
        }
        void *data = NULL;
        size_t len;
        if (arch_load(&c, k.v[i].job, &v.m[i], &data, &len, err, sizeof(err))) {
            printf("FAIL %s\n", err);
            bad++;
            continue;
        }
        free(data);
        printf("OK   %s/%012" PRId64 ": %" PRIu64 " messages, %" PRIu64 " -> %" PRIu64
               " bytes, sha256 %.16s...\n",
               k.v[i].job, k.v[i].seq, v.m[i].count, v.m[i].ndjson_bytes, v.m[i].zst_bytes,
               v.m[i].zst_sha256);
        ok++;
        msgs += v.m[i].count;
    }
    printf("%" PRIu64 " segments verified (%" PRIu64 " messages), %" PRIu64 " failed\n", ok, msgs,
           bad);
    rc = bad ? CTL_EXIT_FAIL : CTL_EXIT_OK;
out:
    arch_view_free(&v, k.n);
    free(k.v);
    arch_close(&c);
    return rc;
}

typedef struct {
    int64_t from, to;
    int filter;
    uint64_t written;
    char err[200];
} cat_ctx_t;

static int cat_line(void *opaque, const char *text, size_t n)
{
    cat_ctx_t *cc = opaque;
    if (cc->filter) {
        cJSON *o = cJSON_ParseWithLength(text, n);
        const cJSON *ca = cJSON_GetObjectItemCaseSensitive(o, "created_at");
        if (!cJSON_IsNumber(ca)) {
            cJSON_Delete(o);
            snprintf(cc->err, sizeof(cc->err), "a line without a numeric created_at");
            return -2;
        }
        int64_t t = (int64_t)ca->valuedouble;
        cJSON_Delete(o);
        if (t < cc->from || t >= cc->to)
            return 0;
    }
    if (fwrite(text, 1, n, stdout) != n || fputc('\n', stdout) == EOF) {
        snprintf(cc->err, sizeof(cc->err), "write to stdout failed");
        return -2;
    }
    cc->written++;
    return 0;
}

static int ctl_archive_cat(ctl_env_t *env, int argc, char **argv)
{
    arch_ctx_t c = {0};
    const char *from_s = NULL, *to_s = NULL;
    int64_t seq = -1;
    ctl_opt_t o[6];
    arch_opts(&c, o);
    o[3] = (ctl_opt_t){"seq", CTL_OPT_INT, &seq, "N", "one segment", 0, INT64_MAX / 2};
    o[4] = (ctl_opt_t){"from", CTL_OPT_STRING, &from_s, "TIME", "created_at >= TIME", 0, 0};
    o[5] = (ctl_opt_t){"to", CTL_OPT_STRING, &to_s, "TIME", "created_at < TIME", 0, 0};
    ctl_optset_t own = {o, 6, "options"};
    int rc = ctl_parse(env, &ctl_archive_cat_cmd, &own, argc, argv, NULL, 0, NULL);
    if (rc != CTL_PARSE_GO_ON)
        return rc;
    if (!c.job)
        return ctl_usage_error(&ctl_archive_cat_cmd, "--job JOB is required");
    cat_ctx_t cc = {.from = INT64_MIN, .to = INT64_MAX};
    char err[1200];
    int64_t now = clock_wall_ms();
    if (from_s && ctl_time_parse(from_s, now, &cc.from, err, sizeof(err)))
        return ctl_usage_error(&ctl_archive_cat_cmd, "--from: %s", err);
    if (to_s && ctl_time_parse(to_s, now, &cc.to, err, sizeof(err)))
        return ctl_usage_error(&ctl_archive_cat_cmd, "--to: %s", err);
    cc.filter = from_s || to_s;
    arch_keys_t k = {0};
    rc = CTL_EXIT_FAIL;
    if (arch_open("archive cat", &c) || arch_list("archive cat", &c, &k))
        goto out;
    uint64_t segs = 0;
    for (size_t i = 0; i < k.n; i++) {
        if (!k.v[i].is_manifest || (seq >= 0 && k.v[i].seq != seq))
            continue;
        seg_manifest_t m;
        void *data = NULL;
        size_t len;
        if (arch_manifest(&c, k.v[i].job, k.v[i].seq, &m, err, sizeof(err))) {
            ctl_fail("archive cat", "%s", err);
            goto out;
        }
        if (cc.filter && (m.count == 0 || m.max_created_at < cc.from || m.min_created_at >= cc.to))
            continue;
        if (arch_load(&c, k.v[i].job, &m, &data, &len, err, sizeof(err))) {
            ctl_fail("archive cat", "%s", err);
            goto out;
        }
        int r =
            seg_decode(data, len, ARCH_MAX_LINE, cat_line, &cc, NULL, NULL, NULL, err, sizeof(err));
        free(data);
        if (r) {
            ctl_fail("archive cat", "%s/%012" PRId64 ": %s", k.v[i].job, k.v[i].seq,
                     r == -2 ? cc.err : err);
            goto out;
        }
        segs++;
    }
    if (fflush(stdout)) {
        ctl_fail("archive cat", "write to stdout failed");
        goto out;
    }
    if (seq >= 0 && segs == 0) {
        ctl_fail("archive cat", "job %s has no committed segment %" PRId64, c.job, seq);
        goto out;
    }
    if (env->verbose)
        fprintf(stderr, "archive cat: %" PRIu64 " messages from %" PRIu64 " segments\n", cc.written,
                segs);
    rc = CTL_EXIT_OK;
out:
    free(k.v);
    arch_close(&c);
    return rc;
}

int ctl_cmd_archive(ctl_env_t *env, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "ls") == 0)
        return ctl_archive_ls(env, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return ctl_archive_verify(env, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "cat") == 0)
        return ctl_archive_cat(env, argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        ctl_usage(stdout, env, &ctl_archive_cmd, NULL);
        return CTL_EXIT_OK;
    }
    if (argc < 2)
        return ctl_usage_error(&ctl_archive_cmd, "expected a subcommand: ls, verify or cat");
    return ctl_usage_error(&ctl_archive_cmd,
                           "unknown subcommand \"%s\", expected ls, verify or cat", argv[1]);
}
