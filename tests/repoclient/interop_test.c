/* interop_test.c: libs/repoclient against the im-repo test double (grpc-go)
 * of the local stack: every RPC, large responses, 1,000 concurrent calls,
 * deadlines, UNAVAILABLE then success, TLS. Needs IMTASK_IMREPO_ADDR and
 * IMTASK_IMREPO_ADMIN (scripts/stack.sh env). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define P(x) "/im_repo.v1." x

static repo_client_t *cli;

static int setup(void **state)
{
    (void)state;
    if (!env_imrepo_addr() || !env_imrepo_admin()) {
        fprintf(stderr, "IMTASK_IMREPO_ADDR / IMTASK_IMREPO_ADMIN not set\n");
        return -1;
    }
    const char *kv[] = {"endpoints", env_imrepo_addr(), NULL};
    cli = client_new(kv);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    repo_client_destroy(&cli);
    assert_null(cli);
    return 0;
}

static void test_each_rpc(void **state)
{
    (void)state;
    char tag[96];
    repo_status_t st;
    test_tag(tag, sizeof tag, "rpc");
    repo_md_t md[] = {{"x-imrepo-tag", tag}};
    repo_call_opts_t o = {.timeout_ms = 5000, .md = md, .nmd = 1};

    /* Members by cursor, whole group: 1000 unique, in order. */
    ImRepo__V1__GetGroupMembersRequest gm = IM_REPO__V1__GET_GROUP_MEMBERS_REQUEST__INIT;
    gm.group_id = "g1000";
    gm.limit = 200;
    char cursor[256] = "";
    int pages = 0, total = 0;
    char first[32] = "";
    do {
        ImRepo__V1__GetGroupMembersResponse *r = NULL;
        gm.cursor = cursor;
        assert_int_equal(repo_get_group_members(cli, &gm, &o, &r, &st), REPO_ERR_OK);
        assert_int_equal(r->total, 1000);
        if (pages == 0) {
            snprintf(first, sizeof first, "%s", r->members[0]->user_id);
            assert_int_equal(r->members[0]->role, IM_REPO__V1__GROUP_ROLE__GROUP_ROLE_OWNER);
        }
        total += (int)r->n_members;
        snprintf(cursor, sizeof cursor, "%s", r->next_cursor);
        assert_int_equal(r->has_more, cursor[0] != '\0');
        repo_response_free(&r->base);
        pages++;
    } while (cursor[0]);
    assert_int_equal(total, 1000);
    assert_int_equal(pages, 5);
    assert_int_equal(admin_calls(tag, P("GroupService/GetGroupMembers"), NULL), 5);

    /* Shards: 4 workers together see each member once, each in its shard. */
    int seen = 0;
    for (uint32_t s = 0; s < 4; s++) {
        ImRepo__V1__GetGroupMembersResponse *r = NULL;
        gm.cursor = "";
        gm.limit = 1000;
        gm.shard_index = s;
        gm.shard_count = 4;
        assert_int_equal(repo_get_group_members(cli, &gm, &o, &r, &st), REPO_ERR_OK);
        for (size_t i = 0; i < r->n_members; i++)
            assert_int_equal(repo_shard_of(r->members[i]->user_id, 4), s);
        seen += (int)r->n_members;
        repo_response_free(&r->base);
    }
    assert_int_equal(seen, 1000);

    ImRepo__V1__GetGroupMemberCountRequest cr = IM_REPO__V1__GET_GROUP_MEMBER_COUNT_REQUEST__INIT;
    ImRepo__V1__GetGroupMemberCountResponse *cresp = NULL;
    cr.group_id = "g1000000";
    assert_int_equal(repo_get_group_member_count(cli, &cr, &o, &cresp, &st), REPO_ERR_OK);
    assert_int_equal(cresp->total, 1000000);
    repo_response_free(&cresp->base);

    /* Online status in one batch of 500. */
    char *ids[500], idbuf[500][16];
    for (int i = 0; i < 500; i++) {
        snprintf(idbuf[i], sizeof idbuf[i], "u%d", 1000 + i);
        ids[i] = idbuf[i];
    }
    ImRepo__V1__GetMembersOnlineStatusRequest os =
        IM_REPO__V1__GET_MEMBERS_ONLINE_STATUS_REQUEST__INIT;
    os.n_user_ids = 500;
    os.user_ids = ids;
    ImRepo__V1__GetMembersOnlineStatusResponse *osr = NULL;
    assert_int_equal(repo_get_members_online_status(cli, &os, &o, &osr, &st), REPO_ERR_OK);
    assert_int_equal(osr->n_statuses, 500);
    int online = 0;
    for (int i = 0; i < 500; i++) {
        assert_string_equal(osr->statuses[i]->user_id, ids[i]);
        if (osr->statuses[i]->is_online) {
            online++;
            assert_true(!strncmp(osr->statuses[i]->gateway_id, "gw-", 3));
        }
    }
    assert_true(online > 50 && online < 150); /* online ratio 0.2 */
    repo_response_free(&osr->base);
    int64_t items = 0;
    assert_int_equal(admin_calls(tag, P("GroupService/GetMembersOnlineStatus"), &items), 1);
    assert_int_equal(items, 500);

    ImRepo__V1__GetUsersOnlineStatusRequest us = IM_REPO__V1__GET_USERS_ONLINE_STATUS_REQUEST__INIT;
    us.n_user_ids = 3;
    us.user_ids = ids;
    ImRepo__V1__GetUsersOnlineStatusResponse *usr = NULL;
    assert_int_equal(repo_get_users_online_status(cli, &us, &o, &usr, &st), REPO_ERR_OK);
    assert_int_equal(usr->n_statuses, 3);
    repo_response_free(&usr->base);

    /* Devices, then removing one token hides it. */
    ImRepo__V1__GetUserDevicesRequest dr = IM_REPO__V1__GET_USER_DEVICES_REQUEST__INIT;
    dr.n_user_ids = 100;
    dr.user_ids = ids;
    ImRepo__V1__GetUserDevicesResponse *dv = NULL;
    assert_int_equal(repo_get_user_devices(cli, &dr, &o, &dv, &st), REPO_ERR_OK);
    assert_true(dv->n_devices > 50);
    char token[200];
    snprintf(token, sizeof token, "%s", dv->devices[0]->token);
    size_t before = dv->n_devices;
    ImRepo__V1__PushPlatform plat = dv->devices[0]->platform;
    assert_true(plat == IM_REPO__V1__PUSH_PLATFORM__PUSH_PLATFORM_APNS ||
                plat == IM_REPO__V1__PUSH_PLATFORM__PUSH_PLATFORM_FCM);
    repo_response_free(&dv->base);
    ImRepo__V1__InvalidToken it = IM_REPO__V1__INVALID_TOKEN__INIT, *itp = &it;
    it.token = token;
    it.platform = plat;
    it.reason = "Unregistered";
    ImRepo__V1__RemoveInvalidTokensRequest rt = IM_REPO__V1__REMOVE_INVALID_TOKENS_REQUEST__INIT;
    rt.n_tokens = 1;
    rt.tokens = &itp;
    ImRepo__V1__RemoveInvalidTokensResponse *rtr = NULL;
    assert_int_equal(repo_remove_invalid_tokens(cli, &rt, &o, &rtr, &st), REPO_ERR_OK);
    assert_true(rtr->removed <= 1); /* 0 when an earlier run removed it */
    repo_response_free(&rtr->base);
    assert_int_equal(repo_get_user_devices(cli, &dr, &o, &dv, &st), REPO_ERR_OK);
    assert_true(dv->n_devices <= before);
    for (size_t i = 0; i < dv->n_devices; i++)
        assert_string_not_equal(dv->devices[i]->token, token);
    repo_response_free(&dv->base);

    /* Messages. */
    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    mr.message_id = "m42";
    ImRepo__V1__GetMessageResponse *m = NULL;
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR_OK);
    assert_string_equal(m->message->id, "m42");
    assert_int_equal(m->message->seq_id, 43);
    repo_response_free(&m->base);
    mr.message_id = "nope";
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR_NOT_FOUND);
    assert_null(m);
    assert_non_null(strstr(st.message, "nope"));

    ImRepo__V1__ListMessagesBeforeRequest lr = IM_REPO__V1__LIST_MESSAGES_BEFORE_REQUEST__INIT;
    lr.before = 1735689600000LL + 250 * 60000LL; /* messages 0..249 */
    lr.limit = 100;
    int listed = 0;
    char mcur[256] = "";
    do {
        ImRepo__V1__ListMessagesBeforeResponse *l = NULL;
        lr.cursor = mcur;
        assert_int_equal(repo_list_messages_before(cli, &lr, &o, &l, &st), REPO_ERR_OK);
        for (size_t i = 0; i < l->n_messages; i++)
            assert_true(l->messages[i]->created_at < lr.before);
        listed += (int)l->n_messages;
        snprintf(mcur, sizeof mcur, "%s", l->next_cursor);
        repo_response_free(&l->base);
    } while (mcur[0]);
    assert_true(listed > 200 && listed <= 250); /* some may be deleted by earlier runs */

    char *del_ids[] = {"m90001", "m90002", "bogus"};
    ImRepo__V1__DeleteMessagesRequest dm = IM_REPO__V1__DELETE_MESSAGES_REQUEST__INIT;
    dm.n_message_ids = 3;
    dm.message_ids = del_ids;
    ImRepo__V1__DeleteMessagesResponse *dmr = NULL;
    assert_int_equal(repo_delete_messages(cli, &dm, &o, &dmr, &st), REPO_ERR_OK);
    assert_true(dmr->deleted <= 2);
    repo_response_free(&dmr->base);

    ImRepo__V1__SetMessageAuditStatusRequest sa =
        IM_REPO__V1__SET_MESSAGE_AUDIT_STATUS_REQUEST__INIT;
    sa.message_id = "m7";
    sa.status = IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_BLOCK;
    ImRepo__V1__SetMessageAuditStatusResponse *sar = NULL;
    assert_int_equal(repo_set_message_audit_status(cli, &sa, &o, &sar, &st), REPO_ERR_OK);
    repo_response_free(&sar->base);
    mr.message_id = "m7";
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR_OK);
    assert_int_equal(m->message->audit_status, IM_REPO__V1__AUDIT_STATUS__AUDIT_STATUS_BLOCK);
    repo_response_free(&m->base);

    ImRepo__V1__GetActivityStatsRequest ar = IM_REPO__V1__GET_ACTIVITY_STATS_REQUEST__INIT;
    ar.from = 1735689600000LL;
    ar.to = ar.from + 3600 * 1000LL;
    ImRepo__V1__GetActivityStatsResponse *a = NULL;
    assert_int_equal(repo_get_activity_stats(cli, &ar, &o, &a, &st), REPO_ERR_OK);
    assert_int_equal(a->messages, 60);
    repo_response_free(&a->base);

    /* Server-side validation comes back as INVALID_ARGUMENT with its message. */
    gm.group_id = "";
    ImRepo__V1__GetGroupMembersResponse *bad = NULL;
    assert_int_equal(repo_get_group_members(cli, &gm, &o, &bad, &st), REPO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "group_id"));
}

static void test_large_responses(void **state)
{
    (void)state;
    repo_status_t st;
    repo_call_opts_t o = {.timeout_ms = 10000};
    ImRepo__V1__GetGroupMembersRequest gm = IM_REPO__V1__GET_GROUP_MEMBERS_REQUEST__INIT;
    gm.group_id = "g50000";
    gm.limit = 10000; /* ~400 KB: many DATA frames */
    ImRepo__V1__GetGroupMembersResponse *r = NULL;
    assert_int_equal(repo_get_group_members(cli, &gm, &o, &r, &st), REPO_ERR_OK);
    assert_int_equal(r->n_members, 10000);
    repo_response_free(&r->base);

    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    ImRepo__V1__GetMessageResponse *m = NULL;
    mr.message_id = "m1-big3000000"; /* 3 MB in one message */
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR_OK);
    assert_int_equal(strlen(m->message->content), 3000000);
    repo_response_free(&m->base);
    mr.message_id = "m1-big5000000"; /* over max_recv_msg_bytes (4 MiB) */
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR__MSG_TOO_LARGE);
    assert_null(m);
    /* The connection stays usable. */
    mr.message_id = "m2";
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR_OK);
    repo_response_free(&m->base);
}

typedef struct {
    atomic_int done, ok;
    atomic_int codes[32];
} tally_t;

static void tally_cb(void *opaque, const repo_status_t *st, ProtobufCMessage *resp)
{
    tally_t *t = opaque;
    if (st->code == REPO_ERR_OK)
        atomic_fetch_add(&t->ok, 1);
    atomic_fetch_add(&t->codes[(st->code + 16) & 31], 1);
    repo_response_free(resp);
    atomic_fetch_add(&t->done, 1);
}

static void wait_done(tally_t *t, int n, int64_t limit_ms)
{
    int64_t end = now_ms() + limit_ms;
    while (atomic_load(&t->done) < n && now_ms() < end)
        sleep_ms(5);
    assert_int_equal(atomic_load(&t->done), n);
}

static void test_concurrent_1000(void **state)
{
    (void)state;
    tally_t t = {0};
    char tag[96];
    test_tag(tag, sizeof tag, "c1000");
    repo_md_t md[] = {{"x-imrepo-tag", tag}, {"x-imrepo-delay-ms", "50"}};
    repo_call_opts_t o = {.timeout_ms = 20000, .md = md, .nmd = 2};
    ImRepo__V1__GetGroupMembersRequest gm = IM_REPO__V1__GET_GROUP_MEMBERS_REQUEST__INIT;
    gm.group_id = "g5000";
    gm.limit = 200;
    repo_stats_t s0, s1;
    repo_client_stats(cli, &s0);
    int64_t t0 = now_ms();
    for (int i = 0; i < 1000; i++)
        assert_int_equal(
            repo_call_async(cli, &repo_method_get_group_members, &gm.base, &o, tally_cb, &t),
            REPO_ERR_OK);
    wait_done(&t, 1000, 30000);
    int64_t took = now_ms() - t0;
    assert_int_equal(atomic_load(&t.ok), 1000);
    repo_client_stats(cli, &s1);
    fprintf(stderr,
            "1000 concurrent calls (50 ms server delay) in %lld ms; conns ready %u, "
            "max in flight per conn %u\n",
            (long long)took, s1.conns_ready, s1.max_in_flight_per_conn);
    /* The double advertises MAX_CONCURRENT_STREAMS 100: never more per conn. */
    assert_true(s1.max_in_flight_per_conn <= 100);
    assert_true(s1.conns_ready >= 2); /* more connections when streams are full */
    /* Multiplexed, not serialised: 1000 x 50 ms in far less than 50 s. */
    assert_true(took < 10000);
    assert_int_equal(admin_calls(tag, P("GroupService/GetGroupMembers"), NULL), 1000);
}

static void test_deadline(void **state)
{
    (void)state;
    repo_status_t st;
    repo_md_t md[] = {{"x-imrepo-delay-ms", "3000"}};
    repo_call_opts_t o = {.timeout_ms = 200, .md = md, .nmd = 1};
    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    ImRepo__V1__GetMessageResponse *m = NULL;
    mr.message_id = "m1";
    int64_t t0 = now_ms();
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR_DEADLINE_EXCEEDED);
    int64_t took = now_ms() - t0;
    fprintf(stderr, "deadline 200 ms: failed after %lld ms: %s\n", (long long)took, st.message);
    assert_true(took >= 190 && took < 1000);
    assert_true(repo_err_is_retriable(st.code));
    /* Client and connection fine afterwards. */
    o.nmd = 0;
    o.timeout_ms = 2000;
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR_OK);
    repo_response_free(&m->base);
}

static void test_unavailable_then_success(void **state)
{
    (void)state;
    repo_status_t st;
    char key[96];
    test_tag(key, sizeof key, "fail");
    repo_md_t md[] = {
        {"x-imrepo-fail-first", "2"}, {"x-imrepo-fail-key", key}, {"x-imrepo-tag", key}};
    repo_call_opts_t o = {.timeout_ms = 5000, .md = md, .nmd = 3};
    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    ImRepo__V1__GetMessageResponse *m = NULL;
    mr.message_id = "m1";
    repo_stats_t s0, s1;
    repo_client_stats(cli, &s0);
    assert_int_equal(repo_get_message(cli, &mr, &o, &m, &st), REPO_ERR_OK);
    repo_response_free(&m->base);
    repo_client_stats(cli, &s1);
    assert_int_equal(s1.retries - s0.retries, 2);
    assert_int_equal(admin_calls(key, P("MessageService/GetMessage"), NULL), 3);

    /* A write is not retried once sent: the UNAVAILABLE comes back. */
    test_tag(key, sizeof key, "failw");
    md[0].value = "1";
    char *ids[] = {"m123456"};
    ImRepo__V1__DeleteMessagesRequest dm = IM_REPO__V1__DELETE_MESSAGES_REQUEST__INIT;
    dm.n_message_ids = 1;
    dm.message_ids = ids;
    ImRepo__V1__DeleteMessagesResponse *dmr = NULL;
    assert_int_equal(repo_delete_messages(cli, &dm, &o, &dmr, &st), REPO_ERR_UNAVAILABLE);
    assert_non_null(strstr(st.message, "injected"));
    assert_int_equal(admin_calls(key, P("MessageService/DeleteMessages"), NULL), 1);

    /* Retries stop at the deadline: always failing, 300 ms budget. The call
     * ends UNAVAILABLE when the last try failed before the deadline, or
     * DEADLINE_EXCEEDED when a try was still in flight at it (a slow machine,
     * or the sanitizers): both are right, and either way it retried. */
    test_tag(key, sizeof key, "failall");
    md[0].value = "1000";
    o.timeout_ms = 300;
    repo_client_stats(cli, &s0);
    int64_t t0 = now_ms();
    repo_err_t e = repo_get_message(cli, &mr, &o, &m, &st);
    assert_true(now_ms() - t0 < 1000);
    assert_true(e == REPO_ERR_UNAVAILABLE || e == REPO_ERR_DEADLINE_EXCEEDED);
    repo_client_stats(cli, &s1);
    assert_true(s1.retries - s0.retries >= 1);
    assert_true(admin_calls(key, P("MessageService/GetMessage"), NULL) >= 2);
    fprintf(stderr, "always UNAVAILABLE: %s\n", st.message);
}

static void test_tls(void **state)
{
    (void)state;
    char addr[64], ca[512];
    repo_status_t st;
    admin_info("tls", addr, sizeof addr);
    admin_info("tls_ca", ca, sizeof ca);
    const char *kv[] = {"endpoints", addr, "tls", "true", "tls_ca_file", ca, NULL};
    repo_client_t *c = client_new(kv);
    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    ImRepo__V1__GetMessageResponse *m = NULL;
    mr.message_id = "m5";
    repo_call_opts_t o = {.timeout_ms = 5000};
    assert_int_equal(repo_get_message(c, &mr, &o, &m, &st), REPO_ERR_OK);
    assert_string_equal(m->message->id, "m5");
    repo_response_free(&m->base);
    repo_client_destroy(&c);

    /* Without the CA the handshake fails: a clear UNAVAILABLE. */
    const char *kv2[] = {"endpoints", addr, "tls", "true", "max_attempts", "1", NULL};
    c = client_new(kv2);
    o.timeout_ms = 2000;
    repo_err_t e = repo_get_message(c, &mr, &o, &m, &st);
    fprintf(stderr, "TLS without the CA: %s: %s\n", repo_err_name(e), st.message);
    assert_true(e == REPO_ERR_UNAVAILABLE || e == REPO_ERR_DEADLINE_EXCEEDED);
    assert_non_null(strstr(st.message, "certificate"));
    repo_client_destroy(&c);
}

static void test_misuse(void **state)
{
    (void)state;
    repo_status_t st;
    ImRepo__V1__GetMessageRequest mr = IM_REPO__V1__GET_MESSAGE_REQUEST__INIT;
    ProtobufCMessage *resp;
    /* Wrong request type for the method. */
    assert_int_equal(repo_call(cli, &repo_method_get_group_members, &mr.base, NULL, &resp, &st),
                     REPO_ERR__BAD_ARG);
    repo_md_t bad[] = {{"Upper", "x"}};
    repo_call_opts_t o = {.md = bad, .nmd = 1};
    mr.message_id = "m1";
    assert_int_equal(repo_call(cli, &repo_method_get_message, &mr.base, &o, &resp, &st),
                     REPO_ERR__BAD_ARG);
    repo_md_t reserved[] = {{"grpc-timeout", "1S"}};
    o.md = reserved;
    assert_int_equal(repo_call(cli, &repo_method_get_message, &mr.base, &o, &resp, &st),
                     REPO_ERR__BAD_ARG);
    assert_string_equal(repo_err_name(REPO_ERR_UNAVAILABLE), "UNAVAILABLE");
    assert_true(repo_err_is_retriable(REPO_ERR_UNAVAILABLE));
    assert_false(repo_err_is_retriable(REPO_ERR_INVALID_ARGUMENT));
    assert_false(repo_err_is_retriable(REPO_ERR__PROTOCOL));
    repo_client_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_rpc),
        cmocka_unit_test(test_large_responses),
        cmocka_unit_test(test_concurrent_1000),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_unavailable_then_success),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
