/* faults_test.c: libs/repoclient when things go wrong: the server restarts
 * (hard and with GOAWAY) in the middle of calls, a misbehaving HTTP/2 peer
 * (the double's "evil" listener) sends malformed lengths, flags, statuses
 * and headers, a raw TCP peer sends junk or nothing. Every call must end
 * with a clear error, never a hang, a crash or an unbounded allocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static int setup(void **state)
{
    (void)state;
    if (!env_imrepo_addr() || !env_imrepo_admin()) {
        fprintf(stderr, "IMTASK_IMREPO_ADDR / IMTASK_IMREPO_ADMIN not set\n");
        return -1;
    }
    return 0;
}

typedef struct {
    atomic_int done, ok, unavailable, deadline, other;
    char last_err[REPO_MESSAGE_MAX];
    pthread_mutex_t mu;
} tally_t;

static void tally_cb(void *opaque, const repo_status_t *st, ProtobufCMessage *resp)
{
    tally_t *t = opaque;
    if (st->code == REPO_ERR_OK)
        atomic_fetch_add(&t->ok, 1);
    else if (st->code == REPO_ERR_UNAVAILABLE)
        atomic_fetch_add(&t->unavailable, 1);
    else if (st->code == REPO_ERR_DEADLINE_EXCEEDED)
        atomic_fetch_add(&t->deadline, 1);
    else
        atomic_fetch_add(&t->other, 1);
    if (st->code != REPO_ERR_OK) {
        pthread_mutex_lock(&t->mu);
        snprintf(t->last_err, sizeof t->last_err, "%s: %.200s", repo_err_name(st->code),
                 st->message);
        pthread_mutex_unlock(&t->mu);
    }
    repo_response_free(resp);
    atomic_fetch_add(&t->done, 1);
}

/* Keep `rate` calls a 10 ms tick going for ms milliseconds. */
static int run_load(repo_client_t *c, tally_t *t, int64_t ms, int per_tick, int delay_ms)
{
    char delay[16];
    snprintf(delay, sizeof delay, "%d", delay_ms);
    repo_md_t md[] = {{"x-imrepo-delay-ms", delay}};
    repo_call_opts_t o = {.timeout_ms = 1500, .md = md, .nmd = 1};
    ImRepo__V1__GetGroupMembersRequest gm = IM_REPO__V1__GET_GROUP_MEMBERS_REQUEST__INIT;
    gm.group_id = "g2000";
    gm.limit = 200;
    int n = 0;
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        for (int i = 0; i < per_tick; i++)
            if (repo_call_async(c, &repo_method_get_group_members, &gm.base, &o, tally_cb, t) ==
                REPO_ERR_OK)
                n++;
        sleep_ms(10);
    }
    return n;
}

static void wait_all(tally_t *t, int n, int64_t limit_ms)
{
    int64_t end = now_ms() + limit_ms;
    while (atomic_load(&t->done) < n && now_ms() < end)
        sleep_ms(5);
    assert_int_equal(atomic_load(&t->done), n); /* no hang */
}

static void restart(int graceful)
{
    char addr[64];
    admin_spawn(addr, sizeof addr);
    const char *kv[] = {"endpoints", addr, "reconnect_backoff", "50ms", "reconnect_backoff_max",
                        "200ms",     NULL};
    repo_client_t *c = client_new(kv);
    tally_t t = {0};
    pthread_mutex_init(&t.mu, NULL);
    /* Calls before, while the listener is down for 700 ms, and after. */
    int n = run_load(c, &t, 300, 5, 20);
    cJSON *j = admin(1, "/down?addr=%s&for_ms=700&graceful=%d", addr, graceful);
    assert_non_null(j);
    cJSON_Delete(j);
    n += run_load(c, &t, 1500, 5, 20);
    wait_all(&t, n, 5000);
    int before_ok = atomic_load(&t.ok);
    /* After recovery everything works again. */
    tally_t t2 = {0};
    pthread_mutex_init(&t2.mu, NULL);
    int n2 = run_load(c, &t2, 200, 5, 0);
    wait_all(&t2, n2, 5000);
    repo_stats_t s;
    repo_client_stats(c, &s);
    fprintf(
        stderr,
        "%s restart: %d calls: %d ok, %d unavailable, %d deadline, %d other (last: %s); "
        "after: %d/%d ok; conns opened %llu, lost %llu, failed %llu, goaways %llu, retries %llu\n",
        graceful ? "graceful" : "hard", n, before_ok, atomic_load(&t.unavailable),
        atomic_load(&t.deadline), atomic_load(&t.other), t.last_err, atomic_load(&t2.ok), n2,
        (unsigned long long)s.conns_opened, (unsigned long long)s.conns_lost,
        (unsigned long long)s.conns_failed, (unsigned long long)s.goaways,
        (unsigned long long)s.retries);
    assert_int_equal(atomic_load(&t.other), 0); /* only clear, retriable errors */
    assert_true(before_ok > 0);
    assert_int_equal(atomic_load(&t2.ok), n2);
    assert_true(s.conns_opened >= 2);
    if (graceful)
        assert_true(s.goaways >= 1);
    repo_client_destroy(&c);
    j = admin(1, "/close?addr=%s", addr);
    cJSON_Delete(j);
    pthread_mutex_destroy(&t.mu);
    pthread_mutex_destroy(&t2.mu);
}

static void test_restart_hard(void **state)
{
    (void)state;
    restart(0);
}

static void test_restart_graceful(void **state)
{
    (void)state;
    restart(1);
}

/* Calls in flight when the client is destroyed end with _SHUTDOWN. */
static void test_destroy_with_calls(void **state)
{
    (void)state;
    const char *kv[] = {"endpoints", env_imrepo_addr(), NULL};
    repo_client_t *c = client_new(kv);
    tally_t t = {0};
    pthread_mutex_init(&t.mu, NULL);
    int n = run_load(c, &t, 50, 20, 2000);
    repo_client_destroy(&c);
    assert_int_equal(atomic_load(&t.done), n);
    assert_int_equal(atomic_load(&t.other), n); /* all _SHUTDOWN */
    pthread_mutex_destroy(&t.mu);
}

typedef struct {
    const char *mode;
    repo_err_t want;
    const char *want_text; /* in the message; NULL: any */
} evil_case_t;

static void test_misbehaving_peer(void **state)
{
    (void)state;
    char evil[64];
    admin_info("evil", evil, sizeof evil);
    const char *kv[] = {"endpoints", evil, "max_attempts", "1", "max_recv_msg_bytes",
                        "65536",     NULL};
    repo_client_t *c = client_new(kv);
    static const evil_case_t cases[] = {
        {"ok", REPO_ERR_OK, NULL},
        {"split", REPO_ERR_OK, NULL},
        {"huge-length", REPO_ERR__MSG_TOO_LARGE, "over 65536"},
        {"truncated", REPO_ERR__PROTOCOL, "inside a message"},
        {"compressed", REPO_ERR__PROTOCOL, "compress"},
        {"bad-flag", REPO_ERR__PROTOCOL, "flag"},
        {"two-messages", REPO_ERR__PROTOCOL, "more than one"},
        {"garbage-proto", REPO_ERR__DECODE, NULL},
        {"no-status", REPO_ERR_INTERNAL, "grpc-status"},
        {"http-503", REPO_ERR_UNAVAILABLE, "503"},
        {"bad-content-type", REPO_ERR_UNKNOWN, "application/grpc"},
        {"trailers-only", REPO_ERR_NOT_FOUND, "no such thing"},
        {"bad-status", REPO_ERR_UNKNOWN, "grpc-status"},
        {"message", REPO_ERR_INTERNAL, "bad thing\xe2\x9c\x93%"},
        {"rst", REPO_ERR_INTERNAL, NULL},
        {"hang", REPO_ERR_DEADLINE_EXCEEDED, NULL},
        {"header-flood", (repo_err_t)99, NULL}, /* any error */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const evil_case_t *ec = &cases[i];
        repo_md_t md[] = {{"x-imrepo-evil", ec->mode}};
        repo_call_opts_t o = {.timeout_ms = 500, .md = md, .nmd = 1};
        ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
        mr.message_id = "m1";
        ImRepo__V1__GetMessageResponse *m = NULL;
        repo_status_t st;
        int64_t t0 = now_ms();
        repo_err_t e = repo_get_message(c, &mr, &o, &m, &st);
        fprintf(stderr, "evil %-16s -> %s: %s (%lld ms)\n", ec->mode, repo_err_name(e), st.message,
                (long long)(now_ms() - t0));
        if (ec->want == (repo_err_t)99)
            assert_int_not_equal(e, REPO_ERR_OK);
        else
            assert_int_equal(e, ec->want);
        if (ec->want_text)
            assert_non_null(strstr(st.message, ec->want_text));
        if (e == REPO_ERR_OK) {
            assert_string_equal(m->message->content, "hello from evil");
            repo_response_free(&m->base);
        } else {
            assert_null(m);
        }
        if (!strcmp(ec->mode, "huge-length"))
            assert_true(now_ms() - t0 < 400); /* rejected at once, not at the stall's end */
    }
    repo_client_destroy(&c);
}

/* A raw TCP peer: junk instead of HTTP/2, or silence. */
typedef struct {
    int lfd;
    int mode; /* 0 junk, 1 silent */
    atomic_bool stop;
} raw_peer_t;

static void *raw_main(void *arg)
{
    raw_peer_t *p = arg;
    while (!atomic_load(&p->stop)) {
        int fd = accept(p->lfd, NULL, NULL);
        if (fd < 0)
            break;
        if (p->mode == 0) {
            static const char junk[] =
                "HTTP/1.1 400 Bad Request\r\n\r\n\xff\xff\xff\xff\x00\x00garbage";
            ssize_t w = write(fd, junk, sizeof junk);
            (void)w;
            sleep_ms(50);
        } else {
            sleep_ms(1500);
        }
        close(fd);
    }
    return NULL;
}

static void raw_case(int mode)
{
    raw_peer_t p = {.mode = mode};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    p.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(p.lfd >= 0);
    assert_int_equal(bind(p.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(p.lfd, 16), 0);
    getsockname(p.lfd, (struct sockaddr *)&sa, &sl);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    pthread_t th;
    pthread_create(&th, NULL, raw_main, &p);
    const char *kv[] = {"endpoints", addr, "connect_timeout", "300ms", NULL};
    repo_client_t *c = client_new(kv);
    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    mr.message_id = "m1";
    ImRepo__V1__GetMessageResponse *m = NULL;
    repo_status_t st;
    repo_call_opts_t o = {.timeout_ms = 1000};
    int64_t t0 = now_ms();
    repo_err_t e = repo_get_message(c, &mr, &o, &m, &st);
    fprintf(stderr, "raw peer (%s) -> %s: %s (%lld ms)\n", mode ? "silent" : "junk",
            repo_err_name(e), st.message, (long long)(now_ms() - t0));
    assert_true(e == REPO_ERR_UNAVAILABLE || e == REPO_ERR_DEADLINE_EXCEEDED);
    assert_null(m);
    assert_true(now_ms() - t0 < 1500);
    repo_client_destroy(&c);
    atomic_store(&p.stop, true);
    shutdown(p.lfd, SHUT_RDWR);
    close(p.lfd);
    pthread_join(th, NULL);
}

static void test_raw_junk_peer(void **state)
{
    (void)state;
    raw_case(0);
}

static void test_raw_silent_peer(void **state)
{
    (void)state;
    raw_case(1);
}

/* Keepalive: a peer that stops answering (SIGSTOP-like: the spawned
 * listener goes down hard while idle) is noticed by PINGs. */
static void test_keepalive(void **state)
{
    (void)state;
    const char *kv[] = {"endpoints", env_imrepo_addr(),   "keepalive_interval",
                        "100ms",     "keepalive_timeout", "500ms",
                        NULL};
    repo_client_t *c = client_new(kv);
    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    mr.message_id = "m1";
    ImRepo__V1__GetMessageResponse *m = NULL;
    repo_status_t st;
    assert_int_equal(repo_get_message(c, &mr, NULL, &m, &st), REPO_ERR_OK);
    repo_response_free(&m->base);
    sleep_ms(1200); /* several PING rounds; the double allows them */
    repo_stats_t s;
    repo_client_stats(c, &s);
    assert_int_equal(s.keepalive_timeouts, 0);
    assert_int_equal(s.conns_lost, 0);
    assert_int_equal(repo_get_message(c, &mr, NULL, &m, &st), REPO_ERR_OK);
    repo_response_free(&m->base);
    repo_client_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_hard),       cmocka_unit_test(test_restart_graceful),
        cmocka_unit_test(test_destroy_with_calls), cmocka_unit_test(test_misbehaving_peer),
        cmocka_unit_test(test_raw_junk_peer),      cmocka_unit_test(test_raw_silent_peer),
        cmocka_unit_test(test_keepalive),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
