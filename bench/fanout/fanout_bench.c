/* fanout_bench.c: the large-group fan-out benchmark (issue 5; figures in
 * docs/fanout.md). For each scenario (members, online ratio, format, worker
 * processes) it starts a private im-repo double (16 gateways), fresh topics
 * and imtask-fanout processes, produces ONE FanoutTask and measures:
 *   - the time from the task produced to the last downlink committed (the
 *     processes' metrics: every shard ended and no slice in flight, polled
 *     every 20 ms or 1 % of the time so far), after a warm-up in which
 *     every worker used its producer; a read_committed reader then checks
 *     every recipient's downlink is there;
 *   - members per second and downlink records per second over that time;
 *   - the peak RSS (VmHWM) of each fan-out process;
 *   - im-repo calls (the double's counters);
 *   - CPU seconds of the fan-out processes, of the double and of the broker
 *     meanwhile (the broker's when the stack's kafka.pid names it).
 * Then the ceiling in the same run: a plain librdkafka producer writing the
 * same number of records of the same mean size, key (the group id, or one
 * per user with --record-key user) and header to 16 fresh
 * topics of the same layout, records per second from the first produce to
 * the last delivery report, and its and the broker's CPU seconds: the median
 * of three runs.
 *
 *   fanout_bench BIN [--members 10000,100000,1000000] [--ratios 1,0.3]
 *                [--procs 1] [--workers 4] [--format recipient|batch]
 *                [--record-key group|user]
 *                [--batch-size 200] [--slice-pages 250] [--slice-time-ms 1000]
 *                [--shard-members 25000]
 *                [--max-shards 16] [--walks 4] [--pages-in-flight 8]
 *                [--kafka "key: value;..."] [--no-ceiling] [--ceiling-txn N]
 *                [--imrepo-latency-ms 0] [--no-push] [--task-partitions 6]
 *                [--split-cpus]
 * --split-cpus splits the CPUs this process may use in two halves (one and
 * one on two cores): the fan-out processes, the ceiling's producer and the
 * stack's broker (every thread of kafka.pid, put back at exit) on the first,
 * the im-repo double and the bench's own polling on the second. Both sides
 * then have the same CPUs for a client and its broker, and the double, which
 * stands for a service on other machines, takes none of them (docs/fanout.md,
 * Benchmark).
 * FANOUT_BENCH_METRICS=1 prints the fan-out's slice and im-repo metrics,
 * FANOUT_BENCH_LOG=debug sets the processes' log level; FANOUT_BENCH_KEEP=1
 * keeps their logs and configs after a good run (the path is printed).
 *
 * Prints one markdown table row per scenario. Needs IMTASK_KAFKA_BROKERS and
 * IMTASK_STACK_DIR (or IMTASK_IMREPO_DOUBLE_BIN). Nothing is asserted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/fanout.pb-c.h"
#include "tests/fanout/harness.h"
#include "tests/fanout/oracle.h"

#define NGW 16
#define GW_PARTS 3
static int g_task_parts = 6; /* --task-partitions: of the task topic */
#define MAX_PROCS 4
#define WARM_MEMBERS 200 /* members of each warm-up group: one page, most gateways */

typedef struct {
    const char *bin;
    int64_t members[8];
    int nmembers;
    double ratios[4];
    int nratios;
    int procs, workers, batch_size, slice_pages, slice_time_ms, shard_members, max_shards, walks,
        pages_in_flight;
    const char *format;
    const char *record_key; /* group | user */
    const char *kafka;      /* extra kafka: lines, "key: value" separated by ';' */
    bool ceiling;
    bool push;             /* offline members become push tasks (fanout.push_enabled) */
    int imrepo_latency_ms; /* added by the double to every call after the warm-up */
    bool split_cpus;       /* --split-cpus */
} opts_t;

typedef struct {
    char base[H_NAME_MAX];
    char names[3 + NGW][H_NAME_MAX + 16];
    const char *tp[3 + NGW];
    int parts[3 + NGW];
} topics_t;

/* The stack's broker, for its CPU seconds: $IMTASK_STACK_DIR/kafka.pid, or
 * 0 when there is none (a broker elsewhere). */
static pid_t broker_pid(void)
{
    static pid_t pid = -1;
    if (pid >= 0)
        return pid;
    pid = 0;
    const char *dir = getenv("IMTASK_STACK_DIR");
    char path[512];
    if (!dir || snprintf(path, sizeof(path), "%s/kafka.pid", dir) >= (int)sizeof(path))
        return pid;
    FILE *f = fopen(path, "r");
    int v = 0;
    if (f && fscanf(f, "%d", &v) == 1 && v > 0)
        pid = (pid_t)v;
    if (f)
        fclose(f);
    return pid;
}

/* The broker's CPU seconds so far; 0 when it is not known. */
static double broker_cpu(void)
{
    double c = broker_pid() ? h_cpu_seconds(broker_pid()) : 0;
    return c > 0 ? c : 0;
}

/* --split-cpus: the measured side's CPUs (the fan-out, the ceiling, the
 * broker) and the others (the double, the bench's polling). */
static bool g_split;
static cpu_set_t g_cpus_measured, g_cpus_other, g_broker_mask;
static volatile sig_atomic_t g_broker_pinned;
static char g_broker_tasks[64];           /* /proc/<broker>/task */
static void (*g_prev_handler[NSIG])(int); /* the harness's: kills the children */

/* Run the calling thread (and what it starts from now on) on `set`. */
static void cpus_use(const cpu_set_t *set)
{
    if (g_split)
        H_CHECK(sched_setaffinity(0, sizeof(*set), set) == 0, "sched_setaffinity: %s",
                strerror(errno));
}

/* --split-cpus: fails unless process `pid` runs on exactly `set`. */
static void cpus_expect(pid_t pid, const cpu_set_t *set, const char *who)
{
    cpu_set_t got;
    if (!g_split)
        return;
    CPU_ZERO(&got);
    H_CHECK(sched_getaffinity(pid, sizeof(got), &got) == 0, "%s (pid %d): its CPUs: %s", who,
            (int)pid, strerror(errno));
    H_CHECK(CPU_EQUAL(&got, set), "%s (pid %d) is not on the CPUs it was started on", who,
            (int)pid);
}

/* Every thread the broker has now on `set` (threads it starts later inherit
 * their starter's); the number that could not be moved, -1 when the broker's
 * threads cannot be listed. System calls only: it also runs in a signal
 * handler (bench_on_signal). */
static int broker_threads_set(const cpu_set_t *set)
{
    _Alignas(struct dirent64) char buf[4096];
    int fd = open(g_broker_tasks, O_RDONLY | O_DIRECTORY | O_CLOEXEC), failed = 0;
    if (fd < 0)
        return -1;
    for (ssize_t n; (n = getdents64(fd, buf, sizeof(buf))) > 0;) {
        for (ssize_t off = 0; off < n;) {
            const struct dirent64 *e = (const struct dirent64 *)(buf + off);
            pid_t tid = 0;
            for (const char *c = e->d_name; *c >= '0' && *c <= '9'; c++)
                tid = tid * 10 + (*c - '0');
            if (tid > 0 && sched_setaffinity(tid, sizeof(*set), set) != 0)
                failed++;
            off += e->d_reclen;
        }
    }
    close(fd);
    return failed;
}

/* The broker's threads back on the CPUs they had (at exit, or on a signal). */
static void broker_unpin(void)
{
    if (g_broker_pinned)
        broker_threads_set(&g_broker_mask);
    g_broker_pinned = 0;
}

static void bench_on_signal(int sig)
{
    broker_unpin();
    if (g_prev_handler[sig] != SIG_DFL && g_prev_handler[sig] != SIG_IGN &&
        g_prev_handler[sig] != SIG_ERR)
        g_prev_handler[sig](sig); /* re-raises the signal */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Split the CPUs this process may use: the first half measured, the rest
 * other; pin the broker to the measured half until exit; move to the other. */
static void cpus_split(void)
{
    cpu_set_t all;
    CPU_ZERO(&all);
    H_CHECK(sched_getaffinity(0, sizeof(all), &all) == 0, "sched_getaffinity: %s", strerror(errno));
    int n = CPU_COUNT(&all), seen = 0;
    H_CHECK(n >= 2, "--split-cpus needs at least 2 CPUs; this process may use %d", n);
    CPU_ZERO(&g_cpus_measured);
    CPU_ZERO(&g_cpus_other);
    char list[2][256] = {"", ""};
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &all))
            continue;
        int other = seen++ >= n / 2;
        CPU_SET(c, other ? &g_cpus_other : &g_cpus_measured);
        size_t used = strlen(list[other]);
        snprintf(list[other] + used, sizeof(list[other]) - used, "%s%d", used ? "," : "", c);
    }
    pid_t b = broker_pid();
    if (b) {
        H_CHECK(sched_getaffinity(b, sizeof(g_broker_mask), &g_broker_mask) == 0,
                "the broker's CPUs (pid %d): %s", (int)b, strerror(errno));
        snprintf(g_broker_tasks, sizeof(g_broker_tasks), "/proc/%d/task", (int)b);
        atexit(broker_unpin);
        static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            g_prev_handler[sigs[i]] = signal(sigs[i], bench_on_signal);
        g_broker_pinned = 1;
        int failed = broker_threads_set(&g_cpus_measured);
        H_CHECK(failed == 0, "could not move %s of the broker's threads (pid %d) to CPUs %s",
                failed < 0 ? "any" : "some", (int)b, list[0]);
    }
    g_split = true;
    cpus_use(&g_cpus_other);
    printf("# CPUs split: fan-out, ceiling and %s on %s; im-repo double and the bench on %s\n",
           b ? "broker" : "(no local broker: kafka.pid unknown)", list[0], list[1]);
}

static void topics_make(topics_t *t, const char *tag)
{
    static const char *const sfx[] = {"task", "retry", "dlq"};
    snprintf(t->base, sizeof(t->base), "imtask-bench-fo-%s-%lld-%d", tag,
             (long long)(h_wall_ms() / 1000), (int)getpid());
    char base[sizeof(t->base)]; /* a copy: gcc -O1 cannot tell the fields apart (-Wrestrict) */
    memcpy(base, t->base, sizeof(base));
    for (int i = 0; i < 3 + NGW; i++) {
        if (i < 3)
            snprintf(t->names[i], sizeof(t->names[i]), "%s-%s", base, sfx[i]);
        else
            snprintf(t->names[i], sizeof(t->names[i]), "%s-gw-%d", base, i - 2);
        t->tp[i] = t->names[i];
        t->parts[i] = i == 0 ? g_task_parts : i < 3 ? 1 : GW_PARTS;
    }
    h_topics_create(t->tp, t->parts, 3 + NGW);
}

/* A read_committed reader of the gateway topics from their beginning. */
static rd_kafka_t *tail_open(const topics_t *t)
{
    char group[H_NAME_MAX + 32];
    snprintf(group, sizeof(group), "%s-tail", t->base);
    const char *kv[] = {"group.id",
                        group,
                        "enable.auto.commit",
                        "false",
                        "isolation.level",
                        "read_committed",
                        "fetch.wait.max.ms",
                        "100",
                        "fetch.min.bytes",
                        "262144",
                        NULL};
    rd_kafka_t *rk = h_kafka_new(RD_KAFKA_CONSUMER, kv);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NGW * GW_PARTS);
    for (int i = 3; i < 3 + NGW; i++) {
        for (int p = 0; p < GW_PARTS; p++)
            rd_kafka_topic_partition_list_add(l, t->tp[i], p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    return rk;
}

/* Pause (or resume) the reader: paused, it fetches nothing, so neither its
 * client nor the broker spend CPU on it while the fan-out is timed. */
static void tail_pause(rd_kafka_t *tail, bool pause)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    H_CHECK(rd_kafka_assignment(tail, &l) == RD_KAFKA_RESP_ERR_NO_ERROR, "reader assignment");
    rd_kafka_resp_err_t e =
        pause ? rd_kafka_pause_partitions(tail, l) : rd_kafka_resume_partitions(tail, l);
    H_CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "reader %s: %s", pause ? "pause" : "resume",
            rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

typedef struct {
    int64_t members, online, recipients_expected;
    double secs, members_per_s, records_per_s, mean_bytes;
    char key[64]; /* the recipient records' key when they share one (record_key group) */
    long records;
    long rss_kb[MAX_PROCS];
    double cpu_fanout, cpu_double, cpu_broker; /* seconds during the fan-out */
    int64_t calls_members, calls_status, calls_count, calls_msg;
} result_t;

typedef struct {
    long recipients, records;
    int64_t bytes, last;
} tally_t;

/* Count what the tail reader gets until `want` recipients (records, or the
 * users in batch records); fails after 120 s without progress. */
static void tail_count(rd_kafka_t *tail, const opts_t *o, int64_t want, tally_t *tl, h_child_t *ch,
                       const char *what)
{
    int64_t moved = h_mono_ms();
    while (tl->recipients < want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(tail, 100);
        if (m) {
            if (!m->err) {
                if (strcmp(o->format, "batch") == 0) {
                    Imtask__V1__DownstreamBatch *b =
                        imtask__v1__downstream_batch__unpack(NULL, m->len, m->payload);
                    tl->recipients += b ? (long)b->n_target_user_ids : 0;
                    if (b)
                        imtask__v1__downstream_batch__free_unpacked(b, NULL);
                } else {
                    tl->recipients++;
                }
                tl->records++;
                tl->bytes += (int64_t)m->len;
                tl->last = moved = h_mono_ms();
            }
            rd_kafka_message_destroy(m);
        }
        H_CHECK(h_mono_ms() - moved < 120000,
                "%s: %ld of %" PRId64 " recipients after 120 s without progress", what,
                tl->recipients, want);
        for (int i = 0; i < o->procs; i++)
            h_child_check(&ch[i]);
    }
}

/* What the clock watches, summed over the processes from one scrape each. */
typedef struct {
    double shard_ends, in_flight, pages;
} progress_t;

static progress_t progress(const int *ports, int n)
{
    progress_t p = {0};
    for (int i = 0; i < n; i++) {
        char *txt = h_metrics_text(ports[i]);
        if (!txt)
            continue;
        double v[3] = {h_metric_in(txt, "imtask_fanout_shard_seconds_count "),
                       h_metric_in(txt, "imtask_tasks_in_flight{task_type=\"fanout\"} "),
                       h_metric_in(txt, "imtask_fanout_pages_total ")};
        p.shard_ends += v[0] > 0 ? v[0] : 0;
        p.in_flight += v[1] > 0 ? v[1] : 0;
        p.pages += v[2] > 0 ? v[2] : 0;
        free(txt);
    }
    return p;
}

static void run_scenario(const opts_t *o, h_double_t *dbl, int64_t n, double ratio, result_t *r)
{
    char dir[PATH_MAX], gid[64], tag[32], yaml[4096];
    topics_t t;
    h_child_t ch[MAX_PROCS];
    int ports[MAX_PROCS];

    memset(r, 0, sizeof(*r));
    r->members = n;
    snprintf(tag, sizeof(tag), "%" PRId64 "-%d", n, (int)(ratio * 100));
    snprintf(gid, sizeof(gid), "g%" PRId64 "-bench-%lld", n, (long long)h_wall_ms());
    snprintf(dir, sizeof(dir), "%.3900s/%.30s", h_tmp, tag);
    mkdir(dir, 0755);
    topics_make(&t, tag);

    /* who should get a downlink: every online member but the sender (k=1) */
    char sender[24];
    oracle_member(gid, 1, sender, sizeof(sender));
    for (int64_t k = 0; k < n; k++) {
        char uid[24];
        int gw;
        oracle_member(gid, k, uid, sizeof(uid));
        if (oracle_online(uid, ratio, NGW, &gw))
            r->online++;
        if (k == 1 && oracle_online(uid, ratio, NGW, &gw))
            r->online--; /* the sender */
    }
    r->recipients_expected = r->online;

    char kextra[512] = "";
    for (const char *k = o->kafka; k && *k;) {
        const char *e = strchr(k, ';');
        size_t l = e ? (size_t)(e - k) : strlen(k);
        size_t used = strlen(kextra);
        snprintf(kextra + used, sizeof(kextra) - used, "  %.*s\n", (int)l, k);
        k = e ? e + 1 : NULL;
    }
    for (int i = 0; i < o->procs; i++) {
        ports[i] = h_free_port();
        snprintf(yaml, sizeof(yaml),
                 "log:\n  level: %s\nhttp:\n  listen: 127.0.0.1:%d\n"
                 "kafka:\n  brokers: %s\n%s"
                 "consumer:\n  group_id: %s-group\n  topic: %s\n  retry_topic: %s\n"
                 "  dlq_topic: %s\n  workers: %d\n"
                 "imrepo:\n  endpoints: %s\n"
                 "fanout:\n  topic_template: %s-{gateway_id}\n  format: %s\n  record_key: %s\n"
                 "  batch_size: %d\n  slice_pages: %d\n  slice_time: %dms\n  shard_members: %d\n"
                 "  max_shards: %d\n  walks: %d\n  pages_in_flight: %d\n  push_enabled: %s\n",
                 getenv("FANOUT_BENCH_LOG") ? getenv("FANOUT_BENCH_LOG") : "warn", ports[i],
                 h_brokers, kextra, t.base, t.tp[0], t.tp[1], t.tp[2], o->workers, dbl->addr,
                 t.base, o->format, o->record_key, o->batch_size, o->slice_pages, o->slice_time_ms,
                 o->shard_members, o->max_shards, o->walks, o->pages_in_flight,
                 o->push ? "true" : "false");
        char name[32];
        snprintf(name, sizeof(name), "fanout-%d", i);
        cpus_use(&g_cpus_measured); /* inherited by the child */
        h_child_start(&ch[i], o->bin, dir, name, yaml);
        cpus_use(&g_cpus_other);
        cpus_expect(ch[i].pid, &g_cpus_measured, name);
    }
    /* every process has joined the group (one metric line, then a
     * settling second so the first assignment does not move) */
    int64_t until = h_mono_ms() + 60000;
    for (int i = 0; i < o->procs; i++) {
        while (h_metric(ports[i], "imtask_build_info") < 0) {
            h_child_check(&ch[i]);
            H_CHECK(h_mono_ms() < until, "fan-out process %d did not come up", i);
            h_sleep_ms(100);
        }
    }
    h_sleep_ms(o->procs > 1 ? 8000 : 3000);

    /* warm-up: small fan-outs on many keys, so that every worker has used
     * its transactional producer and learnt the gateway topics (a
     * producer's first records to a topic wait for its metadata, up to a
     * second seen here) and the measured fan-out sees a process in its
     * steady state: 12 per worker, so that every task-topic partition (and
     * so every worker) gets some (6 partitions miss none of 48 random keys
     * but one time in a thousand) */
    rd_kafka_t *tail = tail_open(&t);
    h_prod_t p;
    tally_t warm = {0};
    int64_t want_warm = 0;
    h_prod_open(&p);
    for (int i = 0; i < 12 * o->procs * o->workers; i++) {
        char wgid[64], wid[32];
        Imtask__V1__FanoutTask wt = IMTASK__V1__FANOUT_TASK__INIT;
        uint8_t wbuf[256];
        snprintf(wgid, sizeof(wgid), "g%d-warm%d-%lld", WARM_MEMBERS, i, (long long)h_wall_ms());
        snprintf(wid, sizeof(wid), "warm-%d", i);
        for (int k = 0; k < WARM_MEMBERS; k++) {
            char uid[24];
            int gw;
            oracle_member(wgid, k, uid, sizeof(uid));
            want_warm += oracle_online(uid, ratio, NGW, &gw);
        }
        wt.group_id = wgid;
        wt.message_id = (char *)"m1";
        wt.sender_id = (char *)"u-outsider";
        size_t wl = imtask__v1__fanout_task__pack(&wt, wbuf);
        h_prod_task(&p, t.tp[0], wid, "fanout", wid, wbuf, wl);
    }
    h_prod_close(&p);
    tail_count(tail, o, want_warm, &warm, ch, "warm-up");
    tail_pause(tail, true);

    cJSON_Delete(h_double_admin(dbl, true, "/stats/reset"));
    /* im-repo across a network: every call answers after this long, so a
     * worker waits on round trips rather than on the CPU */
    cJSON_Delete(h_double_admin(dbl, true, "/faults?latency_ms=%d", o->imrepo_latency_ms));
    double cpu0[MAX_PROCS], dcpu0 = h_cpu_seconds(dbl->pid), bcpu0 = broker_cpu();
    for (int i = 0; i < o->procs; i++)
        cpu0[i] = h_cpu_seconds(ch[i].pid);
    Imtask__V1__FanoutTask ft = IMTASK__V1__FANOUT_TASK__INIT;
    uint8_t buf[512];
    ft.group_id = gid;
    if (strcmp(o->format, "batch") == 0 || strcmp(o->record_key, "group") == 0)
        snprintf(r->key, sizeof(r->key), "%s", gid); /* the ceiling's records share it too */
    ft.message_id = (char *)"m4242";
    ft.sender_id = sender;
    size_t len = imtask__v1__fanout_task__pack(&ft, buf);
    uint32_t n_shards = 1;
    if (n > o->shard_members) {
        int64_t k = (n + o->shard_members - 1) / o->shard_members;
        n_shards = (uint32_t)(k < o->max_shards ? k : o->max_shards);
    }
    double shards_before = progress(ports, o->procs).shard_ends;
    h_prod_open(&p);
    int64_t t0 = h_mono_ms();
    h_prod_task(&p, t.tp[0], gid, "fanout", "bench-fanout", buf, len);
    h_prod_close(&p);
    /* the clock stops when every shard's last slice is committed: the
     * processes' own metrics (a shard's end is observed before its commit,
     * in_flight drops after it), one scrape per process every 20 ms, or
     * every 1 % of the time so far when that is longer (at most 200 ms), so
     * the scrapes cost the measured process little and the clock is off by
     * at most 1 % (20 ms for short runs); the reader, paused meanwhile,
     * counts what was written after that, so neither its CPU nor the
     * broker's for it is in the measured time */
    int64_t last = t0, moved = t0;
    double pages = 0;
    for (;;) {
        progress_t pr = progress(ports, o->procs);
        if (pr.shard_ends >= shards_before + (double)n_shards && pr.in_flight == 0) {
            last = h_mono_ms();
            r->cpu_broker = broker_cpu() - bcpu0; /* before the reader's fetches */
            break;
        }
        if (pr.pages != pages) {
            pages = pr.pages;
            moved = h_mono_ms();
        }
        H_CHECK(h_mono_ms() - moved < 120000, "scenario %s: no page walked for 120 s", tag);
        for (int i = 0; i < o->procs; i++)
            h_child_check(&ch[i]);
        int64_t wait = (h_mono_ms() - t0) / 100;
        h_sleep_ms(wait < 20 ? 20 : wait > 200 ? 200 : wait);
    }
    tally_t tal = {0};
    tail_pause(tail, false);
    tail_count(tail, o, r->recipients_expected, &tal, ch, tag);
    int64_t bytes = tal.bytes;
    r->records = tal.records;
    rd_kafka_consumer_close(tail);
    rd_kafka_destroy(tail);
    r->secs = (double)(last - t0) / 1000.0;
    r->members_per_s = (double)n / r->secs;
    r->records_per_s = (double)r->records / r->secs;
    r->mean_bytes = r->records ? (double)bytes / (double)r->records : 0;
    for (int i = 0; i < o->procs; i++) {
        r->rss_kb[i] = h_peak_rss_kb(ch[i].pid);
        r->cpu_fanout += h_cpu_seconds(ch[i].pid) - cpu0[i];
    }
    r->cpu_double = h_cpu_seconds(dbl->pid) - dcpu0;
    r->calls_members = h_double_calls(dbl, "/im_repo.v1.GroupService/GetGroupMembers", NULL);
    r->calls_status = h_double_calls(dbl, "/im_repo.v1.GroupService/GetMembersOnlineStatus", NULL);
    r->calls_count = h_double_calls(dbl, "/im_repo.v1.GroupService/GetGroupMemberCount", NULL);
    r->calls_msg = h_double_calls(dbl, "/im_repo.v1.MessageService/GetMessage", NULL);
    if (o->imrepo_latency_ms)
        cJSON_Delete(h_double_admin(dbl, true, "/faults?latency_ms=0"));
    if (getenv("FANOUT_BENCH_METRICS")) { /* diagnostics: the fan-out's own metrics */
        for (int i = 0; i < o->procs; i++) {
            char *txt = h_metrics_text(ports[i]);
            for (char *line = txt ? strtok(txt, "\n") : NULL; line; line = strtok(NULL, "\n")) {
                if (strstr(line, "imtask_fanout_imrepo_seconds_sum") ||
                    strstr(line, "imtask_fanout_imrepo_seconds_count") ||
                    strstr(line, "imtask_task_processing_seconds"))
                    fprintf(stderr, "  [%d] %s\n", i, line);
                else if (strncmp(line, "imtask_fanout_slices_total", 26) == 0 ||
                         strncmp(line, "imtask_fanout_pages_total", 25) == 0)
                    fprintf(stderr, "  [%d] %s\n", i, line);
            }
            free(txt);
        }
    }
    /* let the offline members' push tasks finish before stopping */
    h_sleep_ms(1000);
    for (int i = 0; i < o->procs; i++)
        h_child_stop(&ch[i], SIGTERM);
    h_topics_delete(t.tp, 3 + NGW);
    char group[H_NAME_MAX + 16];
    snprintf(group, sizeof(group), "%s-group", t.base);
    h_group_delete(group);
}

/* The ceiling: a plain producer, the same records count, size, keys and
 * header, to 16 fresh topics of the same layout. Records per second. With
 * --ceiling-txn N (g_ceiling_txn) the producer is transactional and commits
 * every N records: what transactions alone cost the broker, for comparison
 * (not the ceiling). */
static long g_ceiling_txn;

static void ceil_txn_check(rd_kafka_error_t *e, const char *what)
{
    H_CHECK(e == NULL, "ceiling %s: %s", what, e ? rd_kafka_error_string(e) : "");
}

typedef struct {
    long delivered, failed;
} ceil_dr_t;

static void ceil_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    ceil_dr_t *c = opaque;
    (void)rk;
    if (m->err)
        c->failed++;
    else
        c->delivered++;
}

static double run_ceiling(long n, size_t size, const char *group_key, double *cpu, double *bcpu)
{
    topics_t t;
    char err[256];
    ceil_dr_t dr = {0};
    topics_make(&t, "ceiling");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", h_brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err));
    if (g_ceiling_txn > 0) {
        char txid[256];
        snprintf(txid, sizeof(txid), "%s-txn", t.base);
        rd_kafka_conf_set(conf, "transactional.id", txid, err, sizeof(err));
    }
    rd_kafka_conf_set_dr_msg_cb(conf, ceil_dr);
    rd_kafka_conf_set_opaque(conf, &dr);
    cpus_use(&g_cpus_measured); /* this thread and the client's threads */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    H_CHECK(rk != NULL, "ceiling producer: %s", err);
    uint8_t *v = malloc(size ? size : 1);
    H_CHECK(v != NULL, "out of memory");
    memset(v, 'x', size);
    if (g_ceiling_txn > 0) {
        ceil_txn_check(rd_kafka_init_transactions(rk, 30000), "init_transactions");
        ceil_txn_check(rd_kafka_begin_transaction(rk), "begin_transaction");
    }
    /* warm-up, not timed: the producer id and every partition's leader (a
     * record to a partition whose leader the producer has not learnt yet
     * waits for a metadata refresh: up to a second seen here) */
    for (int i = 0; i < NGW; i++) {
        for (int p = 0; p < GW_PARTS; p++)
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(t.tp[3 + i]), RD_KAFKA_V_PARTITION(p),
                              RD_KAFKA_V_VALUE(v, size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END);
    }
    rd_kafka_flush(rk, 60000);
    if (g_ceiling_txn > 0) {
        ceil_txn_check(rd_kafka_commit_transaction(rk, 30000), "commit_transaction");
        ceil_txn_check(rd_kafka_begin_transaction(rk), "begin_transaction");
    }
    dr.delivered = 0;
    double c0 = h_cpu_seconds(getpid()), b0 = broker_cpu();
    int64_t t0 = h_mono_ms();
    for (long i = 0; i < n; i++) {
        char ukey[24];
        const char *key = group_key ? group_key : ukey;
        if (!group_key)
            snprintf(ukey, sizeof(ukey), "u%ld", 500000000 + i);
        size_t kl = strlen(key);
        const char *topic = t.tp[3 + (i % NGW)];
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, kl), RD_KAFKA_V_VALUE(v, size),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADER("downlink_format", "recipient", 9), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            H_CHECK(e == RD_KAFKA_RESP_ERR__QUEUE_FULL, "ceiling produce: %s", rd_kafka_err2str(e));
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
        if (g_ceiling_txn > 0 && (i + 1) % g_ceiling_txn == 0 && i + 1 < n) {
            ceil_txn_check(rd_kafka_commit_transaction(rk, 30000), "commit_transaction");
            ceil_txn_check(rd_kafka_begin_transaction(rk), "begin_transaction");
        }
    }
    if (g_ceiling_txn > 0)
        ceil_txn_check(rd_kafka_commit_transaction(rk, 120000), "commit_transaction");
    rd_kafka_flush(rk, 120000);
    int64_t t1 = h_mono_ms();
    *cpu = h_cpu_seconds(getpid()) - c0;
    *bcpu = broker_cpu() - b0;
    H_CHECK(dr.delivered == n, "ceiling: %ld of %ld delivered", dr.delivered, n);
    rd_kafka_destroy(rk);
    cpus_use(&g_cpus_other);
    free(v);
    h_topics_delete(t.tp, 3 + NGW);
    return (double)n * 1000.0 / (double)(t1 - t0 ? t1 - t0 : 1);
}

/* The ceiling's median of three runs (a single short run moves a lot with
 * the machine's load), with that run's CPU seconds. */
static double ceiling_median(long n, size_t size, const char *group_key, double *cpu, double *bcpu)
{
    double rate[3], c[3], b[3];
    int order[3] = {0, 1, 2};
    for (int i = 0; i < 3; i++)
        rate[i] = run_ceiling(n, size, group_key, &c[i], &b[i]);
    for (int i = 1; i < 3; i++) { /* order the runs by rate */
        for (int j = i; j > 0 && rate[order[j]] < rate[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    }
    *cpu = c[order[1]];
    *bcpu = b[order[1]];
    return rate[order[1]];
}

static int parse_list_i(const char *s, int64_t *out, int max)
{
    int n = 0;
    for (const char *p = s; p && *p && n < max; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        out[n++] = strtoll(p, NULL, 10);
    return n;
}

static int parse_list_d(const char *s, double *out, int max)
{
    int n = 0;
    for (const char *p = s; p && *p && n < max; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        out[n++] = strtod(p, NULL);
    return n;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    opts_t o = {.procs = 1,
                .workers = 4,
                .batch_size = 200,
                .slice_pages = 250,
                .slice_time_ms = 1000,
                .shard_members = 25000, /* the service's defaults */
                .max_shards = 16,
                .walks = 4,
                .pages_in_flight = 8,
                .format = "recipient",
                .record_key = "group",
                .ceiling = true,
                .push = true};
    o.nmembers = parse_list_i("10000,100000,1000000", o.members, 8);
    o.nratios = parse_list_d("1,0.3", o.ratios, 4);
    if (argc < 2) {
        fprintf(stderr, "usage: fanout_bench IMTASK-FANOUT [options] (see the source)\n");
        return 2;
    }
    o.bin = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--members"))
            o.nmembers = parse_list_i(v, o.members, 8), i++;
        else if (!strcmp(a, "--ratios"))
            o.nratios = parse_list_d(v, o.ratios, 4), i++;
        else if (!strcmp(a, "--procs"))
            o.procs = atoi(v), i++;
        else if (!strcmp(a, "--workers"))
            o.workers = atoi(v), i++;
        else if (!strcmp(a, "--record-key"))
            o.record_key = v, i++;
        else if (!strcmp(a, "--format"))
            o.format = v, i++;
        else if (!strcmp(a, "--batch-size"))
            o.batch_size = atoi(v), i++;
        else if (!strcmp(a, "--slice-pages"))
            o.slice_pages = atoi(v), i++;
        else if (!strcmp(a, "--slice-time-ms"))
            o.slice_time_ms = atoi(v), i++;
        else if (!strcmp(a, "--shard-members"))
            o.shard_members = atoi(v), i++;
        else if (!strcmp(a, "--max-shards"))
            o.max_shards = atoi(v), i++;
        else if (!strcmp(a, "--walks"))
            o.walks = atoi(v), i++;
        else if (!strcmp(a, "--pages-in-flight"))
            o.pages_in_flight = atoi(v), i++;
        else if (!strcmp(a, "--kafka"))
            o.kafka = v, i++;
        else if (!strcmp(a, "--no-ceiling"))
            o.ceiling = false;
        else if (!strcmp(a, "--ceiling-txn"))
            g_ceiling_txn = atol(v), i++;
        else if (!strcmp(a, "--task-partitions"))
            g_task_parts = atoi(v), i++;
        else if (!strcmp(a, "--no-push"))
            o.push = false;
        else if (!strcmp(a, "--imrepo-latency-ms"))
            o.imrepo_latency_ms = atoi(v), i++;
        else if (!strcmp(a, "--split-cpus"))
            o.split_cpus = true;
        else {
            fprintf(stderr, "fanout_bench: unknown option %s\n", a);
            return 2;
        }
    }
    if (o.procs < 1 || o.procs > MAX_PROCS) {
        fprintf(stderr, "fanout_bench: --procs 1..%d\n", MAX_PROCS);
        return 2;
    }
    h_soft_fail = true;
    if (h_setup("fanout_bench"))
        return 1;
    if (o.split_cpus)
        cpus_split();
    printf("| members | online | format | procs x workers | recipients | seconds | members/s | "
           "records/s | ceiling rec/s | %% of ceiling | peak RSS MB | im-repo calls (members / "
           "status / count / message) | CPU s fan-out / double / broker | CPU s ceiling / "
           "broker |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    for (int ri = 0; ri < o.nratios; ri++) {
        h_double_t dbl;
        h_double_start(&dbl, o.ratios[ri], NGW); /* on the other CPUs when split */
        cpus_expect(dbl.pid, &g_cpus_other, "the im-repo double");
        for (int mi = 0; mi < o.nmembers; mi++) {
            result_t r;
            run_scenario(&o, &dbl, o.members[mi], o.ratios[ri], &r);
            double ccpu = 0, cbcpu = 0;
            double ceiling = o.ceiling ? ceiling_median(r.records, (size_t)(r.mean_bytes + 0.5),
                                                        r.key[0] ? r.key : NULL, &ccpu, &cbcpu)
                                       : 0;
            char rss[64] = "";
            size_t used = 0;
            for (int i = 0; i < o.procs; i++)
                used += (size_t)snprintf(rss + used, sizeof(rss) - used, "%s%.1f", i ? " + " : "",
                                         (double)r.rss_kb[i] / 1024.0);
            printf("| %" PRId64 " | %.0f%% | %s | %d x %d | %" PRId64 " | %.2f | %.0f | %.0f | "
                   "%.0f | %.0f%% | %s | %" PRId64 " / %" PRId64 " / %" PRId64 " / %" PRId64
                   " | %.1f / %.1f / %.1f | %.1f / %.1f |\n",
                   r.members, o.ratios[ri] * 100, o.format, o.procs, o.workers,
                   r.recipients_expected, r.secs, r.members_per_s, r.records_per_s, ceiling,
                   ceiling > 0 ? 100.0 * r.records_per_s / ceiling : 0, rss, r.calls_members,
                   r.calls_status, r.calls_count, r.calls_msg, r.cpu_fanout, r.cpu_double,
                   r.cpu_broker, ccpu, cbcpu);
            fflush(stdout);
        }
        h_double_stop(&dbl);
    }
    /* the processes' logs and configs: kept only when a scenario failed or
     * FANOUT_BENCH_KEEP is set */
    if (getenv("FANOUT_BENCH_KEEP"))
        fprintf(stderr, "fanout_bench: logs and configs kept in %s\n", h_tmp);
    else
        nftw(h_tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
