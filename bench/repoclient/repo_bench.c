/* repo_bench.c: closed-loop benchmark of libs/repoclient: `concurrency`
 * GetGroupMembers calls (a 200-member page) always in flight for `seconds`,
 * then calls/s and p50/p99 latency. bench/repoclient/run.sh runs it beside
 * the grpc-go reference client against the same im-repo double.
 *
 *   repo_bench ADDR [concurrency=64] [seconds=10] [group=g5000] [limit=200]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "repoclient/repoclient.h"

#define MAX_SAMPLES (8 * 1024 * 1024)

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct {
    repo_client_t *c;
    ImRepo__V1__GetGroupMembersRequest req;
    int64_t end_us;
    int32_t *lat; /* us */
    atomic_size_t n;
    atomic_long errors;
    atomic_int live;
    int limit;
} bench_t;

typedef struct {
    bench_t *b;
    int64_t t0;
} slot_t;

static void on_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp);

static void issue(slot_t *s)
{
    s->t0 = now_us();
    if (repo_call_async(s->b->c, &repo_method_get_group_members, &s->b->req.base, NULL, on_done,
                        s) != REPO_ERR_OK) {
        atomic_fetch_add(&s->b->errors, 1);
        atomic_fetch_sub(&s->b->live, 1);
    }
}

static void on_done(void *opaque, const repo_status_t *st, ProtobufCMessage *resp)
{
    slot_t *s = opaque;
    bench_t *b = s->b;
    int64_t t = now_us();
    if (st->code == REPO_ERR_OK) {
        ImRepo__V1__GetGroupMembersResponse *r = (ImRepo__V1__GetGroupMembersResponse *)resp;
        if ((int)r->n_members != b->limit)
            atomic_fetch_add(&b->errors, 1);
        size_t i = atomic_fetch_add(&b->n, 1);
        if (i < MAX_SAMPLES)
            b->lat[i] = (int32_t)(t - s->t0);
    } else {
        atomic_fetch_add(&b->errors, 1);
    }
    repo_response_free(resp);
    if (t < b->end_us)
        issue(s);
    else
        atomic_fetch_sub(&b->live, 1);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s ADDR [concurrency] [seconds] [group] [limit]\n", argv[0]);
        return 2;
    }
    int conc = argc > 2 ? atoi(argv[2]) : 64;
    int secs = argc > 3 ? atoi(argv[3]) : 10;
    const char *group = argc > 4 ? argv[4] : "g5000";
    int limit = argc > 5 ? atoi(argv[5]) : 200;
    char err[512];
    repo_conf_t *conf = repo_conf_new();
    if (repo_conf_set(conf, "endpoints", argv[1], err, sizeof err) ||
        repo_conf_set(conf, "default_timeout", "10s", err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    bench_t b = {.limit = limit};
    if (repo_client_new(&b.c, conf, err, sizeof err)) {
        fprintf(stderr, "repo_client_new: %s\n", err);
        return 1;
    }
    ImRepo__V1__GetGroupMembersRequest init = IM_REPO__V1__GET_GROUP_MEMBERS_REQUEST__INIT;
    b.req = init;
    b.req.group_id = (char *)group;
    b.req.limit = limit;
    b.lat = malloc(sizeof(int32_t) * MAX_SAMPLES);
    slot_t *slots = calloc((size_t)conc, sizeof *slots);
    /* Warm up: one call, so the connection is up before the clock starts. */
    ImRepo__V1__GetGroupMembersResponse *r;
    repo_status_t st;
    if (repo_get_group_members(b.c, &b.req, NULL, &r, &st)) {
        fprintf(stderr, "warm-up call: %s: %s\n", repo_err_name(st.code), st.message);
        return 1;
    }
    repo_response_free(&r->base);
    int64_t t0 = now_us();
    b.end_us = t0 + (int64_t)secs * 1000000;
    atomic_store(&b.live, conc);
    for (int i = 0; i < conc; i++) {
        slots[i].b = &b;
        issue(&slots[i]);
    }
    while (atomic_load(&b.live) > 0)
        usleep(1000);
    double took = (double)(now_us() - t0) / 1e6;
    size_t n = atomic_load(&b.n);
    size_t ns = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    qsort(b.lat, ns, sizeof *b.lat, cmp_i32);
    double p50 = ns ? b.lat[ns / 2] / 1000.0 : 0, p99 = ns ? b.lat[ns * 99 / 100] / 1000.0 : 0;
    repo_stats_t s;
    repo_client_stats(b.c, &s);
    printf("client=repoclient(C,nghttp2) concurrency=%d seconds=%.1f calls=%zu errors=%ld "
           "calls_per_s=%.0f p50_ms=%.3f p99_ms=%.3f conns=%u\n",
           conc, took, n, atomic_load(&b.errors), (double)n / took, p50, p99, s.conns_ready);
    repo_client_destroy(&b.c);
    free(b.lat);
    free(slots);
    return atomic_load(&b.errors) ? 1 : 0;
}
