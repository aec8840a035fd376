/* arena_test.c: responses unpacked into an arena (src/arena.c) equal what
 * protobuf-c's plain unpack gives, over one and many chunks; garbage is
 * refused; empty messages work; everything is freed (valgrind, ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "proto/im_repo_v1/im_repo.pb-c.h"

/* A page of n members, packed. */
static uint8_t *pack_members(size_t n, size_t *len)
{
    ImRepo__V1__GetGroupMembersResponse r = IM_REPO__V1__GET_GROUP_MEMBERS_RESPONSE__INIT;
    ImRepo__V1__GroupMember *ms = calloc(n ? n : 1, sizeof(*ms));
    ImRepo__V1__GroupMember **ps = calloc(n ? n : 1, sizeof(*ps));
    char(*uids)[32] = calloc(n ? n : 1, sizeof(*uids));
    assert_non_null(ms);
    assert_non_null(ps);
    assert_non_null(uids);
    for (size_t i = 0; i < n; i++) {
        im_repo__v1__group_member__init(&ms[i]);
        snprintf(uids[i], sizeof(uids[i]), "user-%zu", i);
        ms[i].group_id = "g-1";
        ms[i].user_id = uids[i];
        ms[i].joined_at = (int64_t)i * 1000;
        ps[i] = &ms[i];
    }
    r.n_members = n;
    r.members = ps;
    r.total = (int64_t)n;
    r.has_more = n > 0;
    r.next_cursor = n ? "cursor-next" : "";
    *len = protobuf_c_message_get_packed_size(&r.base);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(&r.base, buf);
    free(uids);
    free(ps);
    free(ms);
    return buf;
}

static void check_page(size_t n)
{
    size_t len;
    uint8_t *buf = pack_members(n, &len);
    ProtobufCMessage *m =
        arena_unpack(&im_repo__v1__get_group_members_response__descriptor, len, buf);
    assert_non_null(m);
    assert_true(arena_holds(m));
    ImRepo__V1__GetGroupMembersResponse *r = (ImRepo__V1__GetGroupMembersResponse *)m;
    assert_int_equal(r->n_members, n);
    assert_int_equal(r->total, (int64_t)n);
    assert_int_equal(r->has_more, n > 0);
    assert_string_equal(r->next_cursor, n ? "cursor-next" : "");
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "user-%zu", i);
        assert_string_equal(r->members[i]->user_id, want);
        assert_string_equal(r->members[i]->group_id, "g-1");
        assert_int_equal(r->members[i]->joined_at, (int64_t)i * 1000);
    }
    /* the same bytes re-packed from the arena's message */
    size_t len2 = protobuf_c_message_get_packed_size(m);
    uint8_t *buf2 = malloc(len2 ? len2 : 1);
    assert_non_null(buf2);
    protobuf_c_message_pack(m, buf2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf2);
    arena_free(m);
    free(buf);
}

static void test_pages(void **state)
{
    (void)state;
    check_page(0); /* an empty message */
    check_page(1);
    check_page(200);   /* a default page: one chunk */
    check_page(20000); /* many chunks */
}

static void test_garbage(void **state)
{
    (void)state;
    static const uint8_t bad[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}; /* length past end */
    assert_null(
        arena_unpack(&im_repo__v1__get_group_members_response__descriptor, sizeof(bad), bad));
    arena_free(NULL); /* no-op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
