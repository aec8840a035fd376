/* processor.c: the `fanout` processor: one process() call is one bounded
 * slice of one shard of a fan-out, run in the runtime's exactly-once mode.
 *
 *   new task (shard_count 0)  GetMessage + GetGroupMemberCount, together;
 *                             a big group is split into n shard tasks (and
 *                             that is all this call does); a small one goes
 *                             on as shard 0 of 1, slice 0.
 *   slice                     up to slice_pages pages from the cursor(s),
 *                             none begun after slice_time (pager.c): online
 *                             members -> downlinks on their gateway's
 *                             topic, offline ones -> push tasks; then the
 *                             task of the next slice, with the cursor(s),
 *                             if the shard has more members. A shard task
 *                             of a sharded fan-out reads fanout.walks
 *                             im-repo shards side by side (walks).
 *
 * Every output (downlinks, push tasks, shard and next-slice tasks) is
 * produced in the transaction that commits the input's offset, so a crash
 * repeats at most the unfinished slice and read_committed readers see each
 * recipient once. Follow-up task ids are deterministic
 * (<fanout>.s<i>of<n>.c<k>[.p<j>]), so a repeated slice writes the same ids
 * (a repeat may end at another page than an aborted try cut by slice_time:
 * only the committed try is ever read).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/outcome.h"
#include "dispatch/task.h"
#include "fanout.h"
#include "infra/clock.h"
#include "infra/log.h"
#include "infra/str.h"

#define FANOUT_ID_MAX 80          /* longer fan-out ids are replaced by a hash */
#define FANOUT_TOPIC_CACHE 256    /* gateways remembered per slice */
#define FANOUT_RECORD_MAX 1000000 /* a downlink record stays below Kafka's 1 MB default */

_Static_assert((FANOUT_TOPIC_CACHE & (FANOUT_TOPIC_CACHE - 1)) == 0, "gw_slots: a power of 2");

typedef struct {
    fanout_conf_t conf;
    repo_conf_t *rconf; /* until the client owns it */
    repo_client_t *rc;
    fanout_metrics_t metrics;
} fanout_state_t;

/* ---- metrics -------------------------------------------------------------- */

void fanout_metrics_call(fanout_metrics_t *m, const char *method, int64_t ms,
                         const repo_status_t *st)
{
    if (!m || !m->imrepo_seconds)
        return;
    metrics_histogram_observe(metrics_series_get1(m->imrepo_seconds, method), (double)ms / 1000.0);
    if (st->code != REPO_ERR_OK) {
        const char *labels[] = {method, repo_err_name(st->code)};
        metrics_counter_add(metrics_series_get(m->imrepo_errors, labels), 1);
    }
}

static void fanout_metrics_init(fanout_metrics_t *m, metrics_registry_t *reg)
{
    static const char *const l_gw[] = {"gateway", "format"};
    static const char *const l_fmt[] = {"format"};
    static const char *const l_res[] = {"result"};
    static const char *const l_reason[] = {"reason"};
    static const char *const l_method[] = {"method"};
    static const char *const l_err[] = {"method", "code"};
    metrics_family_t *f;

    m->recipients =
        metrics_counter_new(reg, "imtask_fanout_recipients_total",
                            "Online members given the message, by gateway and format", 2, l_gw);
    f = metrics_counter_new(reg, "imtask_fanout_downlinks_total",
                            "Downlink records written to gateway topics", 1, l_fmt);
    m->downlinks[FANOUT_FORMAT_RECIPIENT] = metrics_series_get1(f, "recipient");
    m->downlinks[FANOUT_FORMAT_BATCH] = metrics_series_get1(f, "batch");
    m->offline = metrics_series_get0(metrics_counter_new(
        reg, "imtask_fanout_offline_total", "Offline members handed to push tasks", 0, NULL));
    m->push_tasks = metrics_series_get0(metrics_counter_new(
        reg, "imtask_fanout_push_tasks_total", "Push tasks enqueued for offline members", 0, NULL));
    m->excluded = metrics_series_get0(metrics_counter_new(
        reg, "imtask_fanout_excluded_total", "Members left out (sender, excluded ids)", 0, NULL));
    m->bad_gateway = metrics_series_get0(metrics_counter_new(
        reg, "imtask_fanout_bad_gateway_total",
        "Online members whose gateway id makes no topic name (pushed instead)", 0, NULL));
    m->pages = metrics_series_get0(
        metrics_counter_new(reg, "imtask_fanout_pages_total", "Member pages walked", 0, NULL));
    f = metrics_counter_new(reg, "imtask_fanout_slices_total", "Slices run, by result", 1, l_res);
    m->slices_done = metrics_series_get1(f, "done");
    m->slices_retry = metrics_series_get1(f, "retry");
    m->slices_dead = metrics_series_get1(f, "dead");
    m->shards = metrics_series_get0(metrics_counter_new(
        reg, "imtask_fanout_shards_total", "Shard tasks planned for big groups", 0, NULL));
    f = metrics_counter_new(reg, "imtask_fanout_skipped_total",
                            "Fan-outs not delivered because of the message's state", 1, l_reason);
    m->skipped_deleted = metrics_series_get1(f, "deleted");
    m->skipped_blocked = metrics_series_get1(f, "blocked");
    m->imrepo_seconds = metrics_histogram_new(reg, "imtask_fanout_imrepo_seconds",
                                              "im-repo call latency, retries included", 1, l_method,
                                              metrics_latency_nbounds, metrics_latency_bounds);
    m->imrepo_errors =
        metrics_counter_new(reg, "imtask_fanout_imrepo_errors_total",
                            "im-repo calls that failed, by method and code", 2, l_err);
    static const double shard_bounds[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 600};
    m->shard_seconds = metrics_series_get0(
        metrics_histogram_new(reg, "imtask_fanout_shard_seconds",
                              "From the fan-out's first task to the end of a shard's last slice", 0,
                              NULL, sizeof(shard_bounds) / sizeof(shard_bounds[0]), shard_bounds));
}

/* ---- ops: configure, start, destroy ------------------------------------------ */

static int fanout_configure(void **state, cfg_t *cfg, char *err, size_t errlen)
{
    fanout_state_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->rconf = repo_conf_new();
    if (!s->rconf || fanout_conf_bind(&s->conf, cfg, err, errlen) ||
        repo_conf_bind(s->rconf, cfg, "imrepo", err, errlen)) {
        if (!s->rconf)
            snprintf(err, errlen, "out of memory");
        repo_conf_destroy(s->rconf);
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

/* Downlinks keyed by the group id: batch records always, recipient records
 * unless fanout.record_key is user. */
static bool fanout_keyed_by_group(const fanout_conf_t *conf)
{
    return conf->format == FANOUT_FORMAT_BATCH || conf->record_key == FANOUT_KEY_GROUP;
}

static int fanout_start(void *state, app_t *app, char *err, size_t errlen)
{
    fanout_state_t *s = state;
    char rerr[256];
    fanout_metrics_init(&s->metrics, app_metrics(app));
    if (repo_client_new(&s->rc, s->rconf, rerr, sizeof(rerr))) {
        snprintf(err, errlen, "im-repo client: %s", rerr);
        return -1;
    }
    s->rconf = NULL; /* the client's now */
    log_info("fan-out: format %s (keyed by %s), topics %s, pages of %lld members, slices of up to "
             "%lld pages or %lld ms, shards above %lld members (at most %lld), push %s",
             s->conf.format == FANOUT_FORMAT_BATCH ? "batch" : "recipient",
             fanout_keyed_by_group(&s->conf) ? "group" : "user", s->conf.topic_template,
             (long long)s->conf.batch_size, (long long)s->conf.slice_pages,
             (long long)s->conf.slice_time_ms, (long long)s->conf.shard_members,
             (long long)s->conf.max_shards, s->conf.push_enabled ? "on" : "off");
    return 0;
}

static void fanout_destroy(void *state)
{
    fanout_state_t *s = state;
    if (!s)
        return;
    repo_client_destroy(&s->rc);
    repo_conf_destroy(s->rconf);
    free(s);
}

/* ---- results from im-repo errors ------------------------------------------------ */

/* Errors no retry will cure: the task is dead-lettered at once. */
static bool fanout_repo_permanent(repo_err_t c)
{
    switch (c) {
    case REPO_ERR_NOT_FOUND:
    case REPO_ERR_INVALID_ARGUMENT:
    case REPO_ERR_PERMISSION_DENIED:
    case REPO_ERR_FAILED_PRECONDITION:
    case REPO_ERR_OUT_OF_RANGE:
    case REPO_ERR_UNIMPLEMENTED:
    case REPO_ERR_DATA_LOSS:
    case REPO_ERR__BAD_ARG:
    case REPO_ERR__MSG_TOO_LARGE:
    case REPO_ERR__DECODE:
    case REPO_ERR__ENCODE:
        return true;
    default:
        return false;
    }
}

static dispatch_result_t fanout_repo_result(const char *what, const char *method,
                                            const repo_status_t *st)
{
    if (fanout_repo_permanent(st->code))
        return dispatch_dead("%s (im-repo %s: %s: %s)", what, method, repo_err_name(st->code),
                             st->message);
    return dispatch_retry(0, "im-repo %s: %s: %s", method, repo_err_name(st->code), st->message);
}

/* ---- one task's context ----------------------------------------------------------- */

typedef struct {
    char *gateway;
    uint64_t hash; /* str_hash(gateway) */
    char topic[FANOUT_TOPIC_MAX + 1];
    bool bad;
    uint64_t recipients;
} fanout_gw_t;

typedef struct {
    fanout_state_t *s;
    dispatch_task_t *t;
    const Imtask__V1__FanoutTask *ft;
    const char *trace_id;
    const char *fanout_id; /* short form for ids and keys */
    char fid_buf[24];
    repo_md_t md[FANOUT_MAX_METADATA + 1];
    size_t nmd;

    /* the slice: shard task shard_index of shard_count, its walks over
     * im-repo's shard_count x walks shards (walks 0: the task's one walk is
     * not split) */
    uint32_t shard_index, shard_count, slice, walks;
    fanout_walk_t walk[FANOUT_WALKS_MAX];
    int nwalk;
    const Imtask__V1__DownstreamMessage *msg;
    const char *sender;
    int64_t started_at_ms, total_members;
    fanout_buf_t packed, rec;
    fanout_exclude_t exclude;
    fanout_push_batch_t push;
    Imtask__V1__PushNotification note;
    Imtask__V1__PushNotification__DataEntry note_kv[3], *note_kvp[3];
    char note_seq[24];
    char *note_body;
    fanout_gw_t gws[FANOUT_TOPIC_CACHE];
    size_t ngws;
    uint16_t gw_slots[2 * FANOUT_TOPIC_CACHE]; /* open addressing: index in gws + 1, 0 empty */
    uint64_t recipients, offline, excluded, bad_gateway, records, push_tasks;
    /* batch format: (gateway index, user id) of the page's online members */
    struct fanout_pair {
        size_t gw;
        const char *uid;
    } * pairs;
    const char **batch_ids;
} fanout_ctx_t;

static void fanout_task_id(const fanout_ctx_t *c, uint32_t shard, uint32_t nshards, uint32_t slice,
                           long push_seq, char *out, size_t len)
{
    if (push_seq >= 0)
        snprintf(out, len, "%s.s%uof%u.c%u.p%ld", c->fanout_id, shard, nshards, slice, push_seq);
    else
        snprintf(out, len, "%s.s%uof%u.c%u", c->fanout_id, shard, nshards, slice);
}

/* The gateway's entry (topic and counters), made on first sight. NULL when
 * the cache is full: the caller makes the topic name itself. */
static fanout_gw_t *fanout_gw_get(fanout_ctx_t *c, const char *gateway)
{
    /* looked up once per online member: a linear scan with strcmp over 16
     * gateways was 4 % of the workers' CPU (perf) */
    const size_t mask = sizeof(c->gw_slots) / sizeof(c->gw_slots[0]) - 1;
    uint64_t h = str_hash(gateway);
    size_t i = h & mask;
    for (; c->gw_slots[i]; i = (i + 1) & mask) {
        fanout_gw_t *g = &c->gws[c->gw_slots[i] - 1];
        if (g->hash == h && strcmp(g->gateway, gateway) == 0)
            return g;
    }
    if (c->ngws == FANOUT_TOPIC_CACHE)
        return NULL;
    fanout_gw_t *g = &c->gws[c->ngws];
    memset(g, 0, sizeof(*g));
    g->gateway = strdup(gateway);
    if (!g->gateway)
        return NULL;
    g->hash = h;
    c->gw_slots[i] = (uint16_t)(c->ngws + 1);
    g->bad = fanout_topic_name(c->s->conf.topic_template, gateway, g->topic, sizeof(g->topic)) < 0;
    if (g->bad)
        log_warn("gateway id \"%.64s\" makes no valid topic name from %s: its members are "
                 "pushed instead",
                 gateway, c->s->conf.topic_template);
    c->ngws++;
    return g;
}

static int fanout_enqueue(fanout_ctx_t *c, const char *type, const char *id, const uint8_t *p,
                          size_t len)
{
    return dispatch_task_enqueue(c->t, type, id, id, strlen(id), p, len);
}

static int fanout_push_flush(fanout_ctx_t *c, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    char id[TASK_ID_MAX];
    if (c->push.n == 0)
        return 0;
    long seq = (long)c->push.seq;
    size_t n = c->push.n;
    if (fanout_push_batch_encode(&c->push, &c->note, c->ft->group_id, &buf, &len)) {
        snprintf(err, errlen, "out of memory encoding a push task");
        return -1;
    }
    fanout_task_id(c, c->shard_index, c->shard_count, c->slice, seq, id, sizeof(id));
    int rc = fanout_enqueue(c, "push", id, buf, len);
    free(buf);
    if (rc) {
        snprintf(err, errlen, "cannot queue push task %s (%zu users)", id, n);
        return -1;
    }
    c->push_tasks++;
    return 0;
}

static int fanout_offline(fanout_ctx_t *c, const char *uid, char *err, size_t errlen)
{
    c->offline++;
    if (!c->s->conf.push_enabled)
        return 0;
    int full = fanout_push_batch_add(&c->push, uid);
    if (full < 0) {
        snprintf(err, errlen, "out of memory collecting offline members");
        return -1;
    }
    return full ? fanout_push_flush(c, err, errlen) : 0;
}

static int fanout_produce(fanout_ctx_t *c, const char *topic, const char *key, const char *fmt,
                          char *err, size_t errlen)
{
    mq_header_t h = {FANOUT_HDR_FORMAT, fmt, strlen(fmt)};
    if (dispatch_task_produce(c->t, topic, key, strlen(key), c->rec.data, c->rec.len, &h, 1)) {
        snprintf(err, errlen, "cannot queue a downlink to %s", topic);
        return -1;
    }
    c->records++;
    return 0;
}

static int fanout_pair_cmp(const void *a, const void *b)
{
    const struct fanout_pair *x = a, *y = b;
    return x->gw < y->gw ? -1 : x->gw > y->gw ? 1 : 0;
}

/* One gateway's users of a page as batch records, cut where a record would
 * pass FANOUT_RECORD_MAX. */
static int fanout_emit_batch(fanout_ctx_t *c, fanout_gw_t *g, const char **ids, size_t n, char *err,
                             size_t errlen)
{
    size_t base = c->packed.len + strlen(g->gateway) + strlen(c->ft->group_id) + 32;
    size_t from = 0;
    while (from < n) {
        size_t to = from, size = base;
        while (to < n) {
            size_t add = strlen(ids[to]) + 12;
            if (to > from && size + add > FANOUT_RECORD_MAX)
                break;
            size += add;
            to++;
        }
        if (fanout_encode_batch(&c->packed, ids + from, to - from, g->gateway, c->ft->group_id,
                                &c->rec)) {
            snprintf(err, errlen, "a batch record for %s is too large", g->gateway);
            return -1;
        }
        if (fanout_produce(c, g->topic, c->ft->group_id, "batch", err, errlen))
            return -1;
        from = to;
    }
    return 0;
}

static int fanout_on_page(void *opaque, const fanout_page_t *page, char *err, size_t errlen)
{
    fanout_ctx_t *c = opaque;
    const bool batch = c->s->conf.format == FANOUT_FORMAT_BATCH;
    size_t npairs = 0;
    char topic[FANOUT_TOPIC_MAX + 1];

    c->excluded += page->excluded;
    metrics_counter_add(c->s->metrics.pages, 1);
    for (size_t i = 0; i < page->nids; i++) {
        const char *uid = page->ids[i];
        const ImRepo__V1__OnlineStatus *st = page->statuses[i];
        if (!st->is_online || !st->gateway_id || !*st->gateway_id) {
            if (fanout_offline(c, uid, err, errlen))
                return -1;
            continue;
        }
        fanout_gw_t *g = fanout_gw_get(c, st->gateway_id);
        const char *t = g ? g->topic : topic;
        bool bad = g ? g->bad
                     : fanout_topic_name(c->s->conf.topic_template, st->gateway_id, topic,
                                         sizeof(topic)) < 0;
        if (bad) {
            c->bad_gateway++;
            if (fanout_offline(c, uid, err, errlen))
                return -1;
            continue;
        }
        c->recipients++;
        if (g)
            g->recipients++;
        if (batch && g) {
            c->pairs[npairs++] = (struct fanout_pair){(size_t)(g - c->gws), uid};
            continue;
        }
        /* the recipient format, or a gateway past the cache in batch format
         * (then a batch of one) */
        int rc = batch ? fanout_encode_batch(&c->packed, &uid, 1, st->gateway_id, c->ft->group_id,
                                             &c->rec)
                       : fanout_encode_recipient(&c->packed, uid, &c->rec);
        if (rc) {
            snprintf(err, errlen, "a downlink record for %s is too large", uid);
            return -1;
        }
        const char *key = fanout_keyed_by_group(&c->s->conf) ? c->ft->group_id : uid;
        if (fanout_produce(c, t, key, batch ? "batch" : "recipient", err, errlen))
            return -1;
    }
    if (npairs) {
        qsort(c->pairs, npairs, sizeof(*c->pairs), fanout_pair_cmp);
        for (size_t a = 0; a < npairs;) {
            size_t b = a;
            while (b < npairs && c->pairs[b].gw == c->pairs[a].gw) {
                c->batch_ids[b - a] = c->pairs[b].uid;
                b++;
            }
            if (fanout_emit_batch(c, &c->gws[c->pairs[a].gw], c->batch_ids, b - a, err, errlen))
                return -1;
            a = b;
        }
    }
    return 0;
}

static bool fanout_cancelled(void *opaque)
{
    fanout_ctx_t *c = opaque;
    return dispatch_task_cancelled(c->t);
}

/* The follow-up FanoutTask for (shard, slice): the task's own fields, the
 * fan-out's id and message, and where its walks go on. walks 0: one walk,
 * w[0].cursor; otherwise the walks of w that have more members (w[k].shard
 * is im-repo's shard shard + nshards * j). */
static int fanout_enqueue_follow_up(fanout_ctx_t *c, uint32_t shard, uint32_t nshards,
                                    uint32_t slice, uint32_t walks, const fanout_walk_t *w, int nw,
                                    char *err, size_t errlen)
{
    Imtask__V1__FanoutTask nt = *c->ft; /* shallow: the strings stay the input's */
    Imtask__V1__WalkCursor wc[FANOUT_WALKS_MAX], *wcp[FANOUT_WALKS_MAX];
    char id[TASK_ID_MAX];
    nt.base.unknown_fields = NULL;
    nt.base.n_unknown_fields = 0;
    nt.sender_id = (char *)c->sender;
    nt.trace_id = (char *)c->trace_id;
    nt.shard_index = shard;
    nt.shard_count = nshards;
    nt.cursor = walks ? "" : w[0].cursor;
    nt.walks = walks;
    nt.n_walk_cursors = 0;
    nt.walk_cursors = wcp;
    for (int k = 0; walks && k < nw; k++) {
        if (!w[k].more)
            continue;
        imtask__v1__walk_cursor__init(&wc[nt.n_walk_cursors]);
        wc[nt.n_walk_cursors].walk = w[k].shard / nshards;
        wc[nt.n_walk_cursors].cursor = w[k].cursor;
        wcp[nt.n_walk_cursors] = &wc[nt.n_walk_cursors];
        nt.n_walk_cursors++;
    }
    nt.slice = slice;
    nt.fanout_id = (char *)c->fanout_id;
    nt.message = (Imtask__V1__DownstreamMessage *)c->msg;
    nt.total_members = c->total_members;
    nt.started_at_ms = c->started_at_ms;
    size_t len = protobuf_c_message_get_packed_size(&nt.base);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    protobuf_c_message_pack(&nt.base, buf);
    fanout_task_id(c, shard, nshards, slice, -1, id, sizeof(id));
    /* Shard i of every slice on partition (h + i) mod N of the task topic:
     * the shards spread evenly and each stays on its partition. By the ids'
     * hashes, which differ per slice, a 1M fan-out's 32 slices fell 3, 5,
     * 5, 6, 6 and 7 on 6 partitions: the partitions with more ran their
     * slices one after the other at the end (docs/fanout.md). */
    uint32_t slot = (uint32_t)str_hash(c->fanout_id) + shard;
    int rc = dispatch_task_enqueue_spread(c->t, "fanout", id, slot, id, strlen(id), buf, len);
    free(buf);
    if (rc)
        snprintf(err, errlen, "cannot queue the follow-up task %s", id);
    return rc;
}

static void fanout_ctx_free(fanout_ctx_t *c)
{
    fanout_buf_free(&c->packed);
    fanout_buf_free(&c->rec);
    fanout_exclude_free(&c->exclude);
    fanout_push_batch_free(&c->push);
    for (size_t i = 0; i < c->ngws; i++)
        free(c->gws[i].gateway);
    free(c->note_body);
    free(c->pairs);
    free(c->batch_ids);
}

/* One slice of one shard: c->msg, shard, slice and the walks are set. */
static dispatch_result_t fanout_slice(fanout_ctx_t *c)
{
    fanout_state_t *s = c->s;
    const fanout_conf_t *conf = &s->conf;
    const Imtask__V1__FanoutTask *ft = c->ft;
    fanout_pager_result_t pr;
    char err[DISPATCH_REASON_MAX];
    dispatch_result_t r;

    c->packed.max = (size_t)conf->max_message_bytes + 64;
    c->rec.max = FANOUT_RECORD_MAX;
    if (fanout_message_pack(c->msg, &c->packed)) {
        fanout_ctx_free(c);
        return dispatch_dead("message %s encodes to more than fanout.max_message_bytes (%lld)",
                             ft->message_id, (long long)conf->max_message_bytes);
    }
    c->note_body = malloc((size_t)conf->push_body_max + 1);
    c->pairs = malloc((size_t)conf->batch_size * sizeof(*c->pairs));
    c->batch_ids = malloc((size_t)conf->batch_size * sizeof(*c->batch_ids));
    if (!c->note_body || !c->pairs || !c->batch_ids ||
        fanout_exclude_init(&c->exclude, ft->n_exclude_user_ids + 1) ||
        fanout_push_batch_init(&c->push, (size_t)conf->push_batch)) {
        fanout_ctx_free(c);
        return dispatch_retry(0, "out of memory");
    }
    fanout_exclude_add(&c->exclude, c->sender);
    for (size_t i = 0; i < ft->n_exclude_user_ids; i++)
        fanout_exclude_add(&c->exclude, ft->exclude_user_ids[i]);
    fanout_notification_init(&c->note, conf, c->msg, c->note_body, c->note_kv, c->note_kvp,
                             c->note_seq);

    fanout_pager_opts_t po = {
        .rc = s->rc,
        .group_id = ft->group_id,
        .shard_count = c->shard_count * (c->walks ? c->walks : 1),
        .walks = c->walk,
        .nwalks = c->nwalk,
        .batch_size = (int)conf->batch_size,
        .max_pages = (int)conf->slice_pages,
        .issue_until_ms = clock_mono_ms() + conf->slice_time_ms,
        .pages_in_flight = (int)conf->pages_in_flight,
        .timeout_ms = conf->imrepo_timeout_ms,
        .md = c->md,
        .nmd = c->nmd,
        .exclude = &c->exclude,
        .metrics = &s->metrics,
        .on_page = fanout_on_page,
        .cancelled = fanout_cancelled,
        .opaque = c,
    };
    int64_t t0 = clock_mono_ms();
    fanout_pager_run(&po, &pr);
    switch (pr.outcome) {
    case FANOUT_PAGER_OK:
        break;
    case FANOUT_PAGER_REPO: {
        char what[DISPATCH_REASON_MAX / 2];
        snprintf(what, sizeof(what), "group %.80s (shard %u of %u, slice %u)", ft->group_id,
                 c->shard_index, c->shard_count, c->slice);
        if (pr.status.code == REPO_ERR_NOT_FOUND)
            snprintf(what, sizeof(what), "group %.80s not found", ft->group_id);
        r = fanout_repo_result(what, pr.method, &pr.status);
        goto failed;
    }
    case FANOUT_PAGER_CALLBACK:
        r = dispatch_retry(0, "%s", pr.err);
        goto failed;
    case FANOUT_PAGER_CANCELLED:
        r = dispatch_retry(0, "stopping: slice %u of shard %u abandoned", c->slice, c->shard_index);
        goto failed;
    }
    if (fanout_push_flush(c, err, sizeof(err))) {
        r = dispatch_retry(0, "%s", err);
        goto failed;
    }
    if (pr.more) {
        if (fanout_enqueue_follow_up(c, c->shard_index, c->shard_count, c->slice + 1, c->walks,
                                     pr.walks, pr.nwalks, err, sizeof(err))) {
            r = dispatch_retry(0, "%s", err);
            goto failed;
        }
    }
    /* counted once the slice's outputs are queued; a commit that fails after
     * this repeats the slice, which then counts again */
    fanout_metrics_t *m = &s->metrics;
    const char *fmt = conf->format == FANOUT_FORMAT_BATCH ? "batch" : "recipient";
    for (size_t i = 0; i < c->ngws; i++) {
        if (c->gws[i].recipients) {
            const char *labels[] = {c->gws[i].gateway, fmt};
            metrics_counter_add(metrics_series_get(m->recipients, labels),
                                (double)c->gws[i].recipients);
        }
    }
    metrics_counter_add(m->downlinks[conf->format], (double)c->records);
    metrics_counter_add(m->offline, (double)c->offline);
    metrics_counter_add(m->push_tasks, (double)c->push_tasks);
    metrics_counter_add(m->excluded, (double)c->excluded);
    metrics_counter_add(m->bad_gateway, (double)c->bad_gateway);
    metrics_counter_add(m->slices_done, 1);
    { /* outcome events for the report (docs/report.md): one per delivery, per slice */
        dispatch_outcome_label_t on[] = {{"delivery", "online"}}, off[] = {{"delivery", "offline"}};
        dispatch_outcome(c->t, OUTCOME_FANOUT_RECIPIENTS, on, 1, (int64_t)c->recipients);
        dispatch_outcome(c->t, OUTCOME_FANOUT_RECIPIENTS, off, 1, (int64_t)c->offline);
    }
    log_debug("fan-out %s shard %u/%u slice %u: %d pages, %" PRIu64 " online, %" PRIu64
              " offline, %" PRIu64 " excluded, %" PRIu64 " records, %lld ms%s",
              c->fanout_id, c->shard_index, c->shard_count, c->slice, pr.pages, c->recipients,
              c->offline, c->excluded, c->records, (long long)(clock_mono_ms() - t0),
              pr.more ? "" : " (shard done)");
    if (!pr.more) {
        if (c->started_at_ms > 0)
            metrics_histogram_observe(m->shard_seconds,
                                      (double)(clock_wall_ms() - c->started_at_ms) / 1000.0);
        log_info("fan-out %s of message %s to group %s: shard %u of %u done after %u slices",
                 c->fanout_id, ft->message_id, ft->group_id, c->shard_index, c->shard_count,
                 c->slice + 1);
    }
    fanout_pager_result_free(&pr);
    fanout_ctx_free(c);
    return dispatch_done();
failed:
    metrics_counter_add(
        r.status == DISPATCH_DEAD ? s->metrics.slices_dead : s->metrics.slices_retry, 1);
    fanout_pager_result_free(&pr);
    fanout_ctx_free(c);
    return r;
}

/* ---- planning a new fan-out ------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    repo_status_t st[2];
    ProtobufCMessage *resp[2];
    int64_t started_ms;
    fanout_metrics_t *m;
} fanout_pair_wait_t;

typedef struct {
    fanout_pair_wait_t *w;
    int i;
    const char *method;
} fanout_pair_slot_t;

static void fanout_pair_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp)
{
    fanout_pair_slot_t *ps = opaque;
    fanout_pair_wait_t *w = ps->w;
    fanout_metrics_call(w->m, ps->method, clock_mono_ms() - w->started_ms, st);
    pthread_mutex_lock(&w->mu);
    w->st[ps->i] = *st;
    w->resp[ps->i] = resp;
    w->pending--;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* GetGroupMemberCount and GetMessage at once; waits for both. */
static void fanout_fetch_plan(fanout_ctx_t *c, fanout_pair_wait_t *w)
{
    ImRepo__V1__GetGroupMemberCountRequest creq = IM_REPO__V1__GET_GROUP_MEMBER_COUNT_REQUEST__INIT;
    ImRepo__V1__GetMessageRequest mreq = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    repo_call_opts_t co = {.timeout_ms = c->s->conf.imrepo_timeout_ms, .md = c->md, .nmd = c->nmd};
    fanout_pair_slot_t slots[2] = {{w, 0, "GetGroupMemberCount"}, {w, 1, "GetMessage"}};
    const repo_method_t *methods[2] = {&repo_method_get_group_member_count,
                                       &repo_method_get_message};
    const ProtobufCMessage *reqs[2] = {&creq.base, &mreq.base};

    creq.group_id = c->ft->group_id;
    mreq.message_id = c->ft->message_id;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->started_ms = clock_mono_ms();
    w->m = &c->s->metrics;
    for (int i = 0; i < 2; i++) {
        pthread_mutex_lock(&w->mu);
        w->pending++;
        pthread_mutex_unlock(&w->mu);
        repo_err_t e =
            repo_call_async(c->s->rc, methods[i], reqs[i], &co, fanout_pair_done, &slots[i]);
        if (e) {
            pthread_mutex_lock(&w->mu);
            w->pending--;
            w->st[i].code = e;
            snprintf(w->st[i].message, sizeof(w->st[i].message), "%s", repo_err_str(e));
            pthread_mutex_unlock(&w->mu);
        }
    }
    pthread_mutex_lock(&w->mu);
    while (w->pending > 0)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static dispatch_result_t fanout_plan(fanout_ctx_t *c)
{
    fanout_state_t *s = c->s;
    const fanout_conf_t *conf = &s->conf;
    const Imtask__V1__FanoutTask *ft = c->ft;
    fanout_pair_wait_t w;
    char what[DISPATCH_REASON_MAX / 2], err[DISPATCH_REASON_MAX];
    dispatch_result_t r;

    memset(&w, 0, sizeof(w));
    fanout_fetch_plan(c, &w);
    ImRepo__V1__GetGroupMemberCountResponse *cnt =
        (ImRepo__V1__GetGroupMemberCountResponse *)w.resp[0];
    ImRepo__V1__GetMessageResponse *mr = (ImRepo__V1__GetMessageResponse *)w.resp[1];

    /* permanent answers first (the group, then the message), then transient */
    if (w.st[0].code && fanout_repo_permanent(w.st[0].code)) {
        snprintf(what, sizeof(what), "group %.80s %s", ft->group_id,
                 w.st[0].code == REPO_ERR_NOT_FOUND ? "not found" : "cannot be counted");
        r = fanout_repo_result(what, "GetGroupMemberCount", &w.st[0]);
        goto out;
    }
    if (w.st[1].code && fanout_repo_permanent(w.st[1].code)) {
        snprintf(what, sizeof(what), "message %.80s %s", ft->message_id,
                 w.st[1].code == REPO_ERR_NOT_FOUND ? "not found" : "cannot be read");
        r = fanout_repo_result(what, "GetMessage", &w.st[1]);
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        if (w.st[i].code) {
            r = fanout_repo_result("", i ? "GetMessage" : "GetGroupMemberCount", &w.st[i]);
            goto out;
        }
    }
    const ImRepo__V1__Message *m = mr->message;
    if (!m || !m->id || !*m->id) {
        r = dispatch_dead("message %.80s not found (im-repo GetMessage answered no message)",
                          ft->message_id);
        goto out;
    }
    if (m->deleted || m->audit_status == IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_BLOCK) {
        const char *why = m->deleted ? "deleted" : "blocked by content audit";
        metrics_counter_add(m->deleted ? s->metrics.skipped_deleted : s->metrics.skipped_blocked,
                            1);
        log_info("fan-out of message %s to group %s: the message is %s: nothing delivered",
                 ft->message_id, ft->group_id, why);
        r = dispatch_done();
        goto out;
    }
    if (cnt->total <= 0) {
        r = dispatch_dead("group %.80s has no members: it does not exist or was dissolved",
                          ft->group_id);
        goto out;
    }

    Imtask__V1__DownstreamMessage dm = IMTASK__V1__DOWNSTREAM_MESSAGE__INIT;
    dm.trace_id = (char *)c->trace_id;
    dm.message_id = m->id;
    dm.conversation_id = m->conversation_id;
    dm.sender_id = m->sender_id;
    dm.sender_info = ft->sender_info;
    dm.message_type = m->message_type;
    dm.content = m->content;
    dm.seq_id = m->seq_id;
    dm.timestamp = m->created_at;
    dm.extra = m->extra;
    c->msg = &dm;
    if (!c->sender || !*c->sender)
        c->sender = m->sender_id;
    c->total_members = cnt->total;
    if (protobuf_c_message_get_packed_size(&dm.base) > (size_t)conf->max_message_bytes) {
        r = dispatch_dead("message %.80s encodes to %zu bytes, more than "
                          "fanout.max_message_bytes (%lld)",
                          ft->message_id, protobuf_c_message_get_packed_size(&dm.base),
                          (long long)conf->max_message_bytes);
        goto out;
    }
    uint32_t n = 1;
    if (cnt->total > conf->shard_members) {
        int64_t k = (cnt->total + conf->shard_members - 1) / conf->shard_members;
        n = (uint32_t)(k < conf->max_shards ? k : conf->max_shards);
    }
    log_info("fan-out %s of message %s to group %s: %lld members, %u shard%s", c->fanout_id,
             ft->message_id, ft->group_id, (long long)cnt->total, n, n > 1 ? "s" : "");
    if (n > 1) {
        uint32_t walks = conf->walks > 1 ? (uint32_t)conf->walks : 0;
        fanout_walk_t fw[FANOUT_WALKS_MAX];
        for (uint32_t i = 0; i < n; i++) {
            for (uint32_t j = 0; j < (walks ? walks : 1); j++)
                fw[j] = (fanout_walk_t){.shard = i + n * j, .cursor = (char *)"", .more = true};
            if (fanout_enqueue_follow_up(c, i, n, 0, walks, fw, (int)(walks ? walks : 1), err,
                                         sizeof(err))) {
                r = dispatch_retry(0, "%s", err);
                goto out;
            }
        }
        metrics_counter_add(s->metrics.shards, n);
        r = dispatch_done();
        goto out;
    }
    c->shard_index = 0;
    c->shard_count = 1;
    c->slice = 0;
    c->walk[0] = (fanout_walk_t){.shard = 0, .cursor = (char *)""};
    c->nwalk = 1;
    r = fanout_slice(c);
out:
    c->msg = NULL;
    repo_response_free(w.resp[0]);
    repo_response_free(w.resp[1]);
    return r;
}

/* ---- process ------------------------------------------------------------------------ */

/* The shard and walks of a follow-up task (shard_count > 0). Returns 0, or
 * -1 with what is wrong with the task in err. */
static int fanout_walks_set(fanout_ctx_t *c, const Imtask__V1__FanoutTask *ft, char *err,
                            size_t errlen)
{
    uint32_t seen = 0;
    c->shard_index = ft->shard_index;
    c->shard_count = ft->shard_count;
    c->walks = ft->walks > 1 ? ft->walks : 0;
    if (!c->walks) {
        c->walk[0] = (fanout_walk_t){.shard = ft->shard_index,
                                     .cursor = (char *)(ft->cursor ? ft->cursor : "")};
        c->nwalk = 1;
        return 0;
    }
    if (c->walks > FANOUT_WALKS_MAX ||
        (uint64_t)ft->shard_count * c->walks > FANOUT_REPO_SHARDS_MAX || ft->n_walk_cursors < 1 ||
        ft->n_walk_cursors > c->walks) {
        snprintf(err, errlen,
                 "a FanoutTask with walks needs 2..%d walks, shard_count x walks at most %d and "
                 "1..walks walk_cursors (walks %u, shard_count %u, %zu walk_cursors)",
                 FANOUT_WALKS_MAX, FANOUT_REPO_SHARDS_MAX, ft->walks, ft->shard_count,
                 ft->n_walk_cursors);
        return -1;
    }
    for (size_t k = 0; k < ft->n_walk_cursors; k++) {
        const Imtask__V1__WalkCursor *wc = ft->walk_cursors[k];
        if (wc->walk >= c->walks) {
            snprintf(err, errlen, "walk_cursors[%zu]: walk %u is not below walks (%u)", k, wc->walk,
                     c->walks);
            return -1;
        }
        if (seen & (1u << wc->walk)) {
            snprintf(err, errlen, "walk_cursors[%zu]: walk %u is listed twice", k, wc->walk);
            return -1;
        }
        seen |= 1u << wc->walk;
        c->walk[k] = (fanout_walk_t){.shard = ft->shard_index + ft->shard_count * wc->walk,
                                     .cursor = (char *)(wc->cursor ? wc->cursor : "")};
    }
    c->nwalk = (int)ft->n_walk_cursors;
    return 0;
}

static dispatch_result_t fanout_process(void *state, dispatch_task_t *t)
{
    fanout_state_t *s = state;
    size_t len;
    const uint8_t *p = dispatch_task_payload(t, &len);
    Imtask__V1__FanoutTask *ft = imtask__v1__fanout_task__unpack(NULL, len, p);
    fanout_ctx_t *c = NULL;
    dispatch_result_t r;
    char werr[DISPATCH_REASON_MAX];

    if (!ft)
        return dispatch_dead("the payload is not a FanoutTask (%zu bytes that do not decode)", len);
    if (!ft->group_id || !*ft->group_id || !ft->message_id || !*ft->message_id) {
        r = dispatch_dead("a FanoutTask needs group_id and message_id");
        goto out;
    }
    if (ft->n_exclude_user_ids > (size_t)s->conf.max_excluded) {
        r = dispatch_dead("%zu exclude_user_ids, more than fanout.max_excluded (%lld)",
                          ft->n_exclude_user_ids, (long long)s->conf.max_excluded);
        goto out;
    }
    if (ft->shard_count > 0 && (ft->shard_index >= ft->shard_count || !ft->message)) {
        r = dispatch_dead("a follow-up FanoutTask needs shard_index < shard_count (%u, %u) and "
                          "the message",
                          ft->shard_index, ft->shard_count);
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        r = dispatch_retry(0, "out of memory");
        goto out;
    }
    c->s = s;
    c->t = t;
    c->ft = ft;
    c->trace_id = dispatch_task_trace_id(t);
    if ((!c->trace_id || !*c->trace_id) && ft->trace_id)
        c->trace_id = ft->trace_id;
    const char *fid = ft->fanout_id && *ft->fanout_id ? ft->fanout_id : dispatch_task_id(t);
    if (strlen(fid) <= FANOUT_ID_MAX) {
        c->fanout_id = fid;
    } else {
        snprintf(c->fid_buf, sizeof(c->fid_buf), "h%016" PRIx64, str_hash(fid));
        c->fanout_id = c->fid_buf;
    }
    const char *tp = dispatch_task_traceparent(t);
    if (tp && *tp)
        c->md[c->nmd++] = (repo_md_t){"traceparent", tp};
    for (size_t i = 0; i < s->conf.nmd; i++)
        c->md[c->nmd++] = s->conf.md[i];
    c->sender = ft->sender_id;

    if (ft->shard_count == 0) {
        c->started_at_ms = clock_wall_ms();
        r = fanout_plan(c);
        goto out;
    }
    if (fanout_walks_set(c, ft, werr, sizeof(werr))) {
        r = dispatch_dead("%s", werr);
        goto out;
    }
    c->slice = ft->slice;
    c->msg = ft->message;
    c->total_members = ft->total_members;
    c->started_at_ms = ft->started_at_ms;
    if (!c->sender || !*c->sender)
        c->sender = ft->message->sender_id;
    r = fanout_slice(c);
out:
    free(c);
    imtask__v1__fanout_task__free_unpacked(ft, NULL);
    return r;
}

const dispatch_ops_t fanout_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "fanout",
    .configure = fanout_configure,
    .start = fanout_start,
    .process = fanout_process,
    .destroy = fanout_destroy,
    .exactly_once = true,
};
