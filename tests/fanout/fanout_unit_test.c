/* fanout_unit_test.c: the parts of tasks/fanout that need no service: topic
 * names, the two downlink encodings (decoded back with protobuf-c), the
 * exclusion set, UTF-8 cutting, push batches and notifications, config
 * checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/fanout/fanout.h"

static void test_topic_template(void **state)
{
    char err[256], out[FANOUT_TOPIC_MAX + 1];
    (void)state;
    assert_int_equal(
        fanout_topic_template_check("im-downstream-topic-{gateway_id}", err, sizeof(err)), 0);
    assert_int_equal(
        fanout_topic_template_check("gochat.messages.downstream.{gateway_id}", err, sizeof(err)),
        0);
    assert_int_equal(fanout_topic_template_check("{gateway_id}", err, sizeof(err)), 0);
    assert_int_equal(fanout_topic_template_check("no-placeholder", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "exactly one"));
    assert_int_equal(fanout_topic_template_check("{gateway_id}-{gateway_id}", err, sizeof(err)),
                     -1);
    assert_int_equal(fanout_topic_template_check("bad topic {gateway_id}", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "' '"));

    assert_int_equal(
        fanout_topic_name("im-downstream-topic-{gateway_id}", "gw-7", out, sizeof(out)),
        (int)strlen("im-downstream-topic-gw-7"));
    assert_string_equal(out, "im-downstream-topic-gw-7");
    assert_int_equal(fanout_topic_name("a.{gateway_id}.b", "x_1", out, sizeof(out)), 7);
    assert_string_equal(out, "a.x_1.b");
    /* gateway ids that make no topic name */
    assert_int_equal(fanout_topic_name("t-{gateway_id}", "", out, sizeof(out)), -1);
    assert_int_equal(fanout_topic_name("t-{gateway_id}", NULL, out, sizeof(out)), -1);
    assert_int_equal(fanout_topic_name("t-{gateway_id}", "gw/1", out, sizeof(out)), -1);
    assert_int_equal(fanout_topic_name("t-{gateway_id}", "gw 1", out, sizeof(out)), -1);
    char longgw[300];
    memset(longgw, 'g', sizeof(longgw) - 1);
    longgw[sizeof(longgw) - 1] = '\0';
    assert_int_equal(fanout_topic_name("t-{gateway_id}", longgw, out, sizeof(out)), -1);
    /* too small an output buffer */
    assert_int_equal(fanout_topic_name("t-{gateway_id}", "gw-1", out, 4), -1);
}

static Imtask__V1__DownstreamMessage *sample_message(Imtask__V1__UserInfo *ui)
{
    static Imtask__V1__DownstreamMessage m;
    imtask__v1__user_info__init(ui);
    ui->id = (char *)"u1";
    ui->nickname = (char *)"Ann";
    ui->avatar_url = (char *)"https://a/b.png";
    imtask__v1__downstream_message__init(&m);
    m.trace_id = (char *)"0123456789abcdef0123456789abcdef";
    m.target_user_id = (char *)"must-not-stay";
    m.message_id = (char *)"m42";
    m.conversation_id = (char *)"group:g9";
    m.sender_id = (char *)"u1";
    m.sender_info = ui;
    m.message_type = 3;
    m.content = (char *)"h\xc3\xa9llo";
    m.seq_id = 43;
    m.timestamp = 1735689600000;
    m.extra = (char *)"{\"k\":1}";
    return &m;
}

static void check_message(const Imtask__V1__DownstreamMessage *d)
{
    assert_string_equal(d->trace_id, "0123456789abcdef0123456789abcdef");
    assert_string_equal(d->message_id, "m42");
    assert_string_equal(d->conversation_id, "group:g9");
    assert_string_equal(d->sender_id, "u1");
    assert_non_null(d->sender_info);
    assert_string_equal(d->sender_info->nickname, "Ann");
    assert_int_equal(d->message_type, 3);
    assert_string_equal(d->content, "h\xc3\xa9llo");
    assert_int_equal(d->seq_id, 43);
    assert_int_equal(d->timestamp, 1735689600000);
    assert_string_equal(d->extra, "{\"k\":1}");
}

static void test_recipient_encoding(void **state)
{
    Imtask__V1__UserInfo ui;
    fanout_buf_t packed = {.max = 4096}, rec = {.max = 4096};
    (void)state;
    assert_int_equal(fanout_message_pack(sample_message(&ui), &packed), 0);
    const char *users[] = {"u1000", "", "u-\xe4\xb8\xad", "a-much-longer-user-id-0123456789"};
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        assert_int_equal(fanout_encode_recipient(&packed, users[i], &rec), 0);
        Imtask__V1__DownstreamMessage *d =
            imtask__v1__downstream_message__unpack(NULL, rec.len, rec.data);
        assert_non_null(d);
        assert_string_equal(d->target_user_id, users[i]);
        check_message(d);
        imtask__v1__downstream_message__free_unpacked(d, NULL);
    }
    /* the record may not pass the buffer's maximum */
    fanout_buf_t small = {.max = 16};
    assert_int_equal(fanout_encode_recipient(&packed, "u1", &small), -1);
    fanout_buf_free(&small);
    fanout_buf_free(&packed);
    fanout_buf_free(&rec);
}

static void test_batch_encoding(void **state)
{
    Imtask__V1__UserInfo ui;
    fanout_buf_t packed = {.max = 4096}, rec = {.max = 1 << 20};
    char ids[300][16];
    const char *ptrs[300];
    (void)state;
    assert_int_equal(fanout_message_pack(sample_message(&ui), &packed), 0);
    for (int i = 0; i < 300; i++) {
        snprintf(ids[i], sizeof(ids[i]), "u%d", 5000 + i);
        ptrs[i] = ids[i];
    }
    assert_int_equal(fanout_encode_batch(&packed, ptrs, 300, "gw-3", "g1000000", &rec), 0);
    Imtask__V1__DownstreamBatch *b = imtask__v1__downstream_batch__unpack(NULL, rec.len, rec.data);
    assert_non_null(b);
    assert_non_null(b->message);
    check_message(b->message);
    assert_string_equal(b->message->target_user_id, "");
    assert_int_equal(b->n_target_user_ids, 300);
    for (int i = 0; i < 300; i++)
        assert_string_equal(b->target_user_ids[i], ids[i]);
    assert_string_equal(b->gateway_id, "gw-3");
    assert_string_equal(b->group_id, "g1000000");
    imtask__v1__downstream_batch__free_unpacked(b, NULL);

    /* a batch says the message once: far fewer bytes than one record each */
    size_t batch_bytes = rec.len, each = 0;
    for (int i = 0; i < 300; i++) {
        assert_int_equal(fanout_encode_recipient(&packed, ptrs[i], &rec), 0);
        each += rec.len;
    }
    assert_true(batch_bytes * 4 < each);
    fanout_buf_free(&packed);
    fanout_buf_free(&rec);
}

static void test_exclude(void **state)
{
    fanout_exclude_t s;
    char ids[1000][16];
    (void)state;
    assert_int_equal(fanout_exclude_init(&s, 1000), 0);
    assert_false(fanout_exclude_has(&s, "u1"));
    for (int i = 0; i < 1000; i++) {
        snprintf(ids[i], sizeof(ids[i]), "u%d", i * 7);
        fanout_exclude_add(&s, ids[i]);
    }
    fanout_exclude_add(&s, ids[5]); /* twice */
    fanout_exclude_add(&s, "");
    fanout_exclude_add(&s, NULL);
    assert_int_equal(s.count, 1000);
    for (int i = 0; i < 7000; i++) {
        char id[16];
        snprintf(id, sizeof(id), "u%d", i);
        assert_int_equal(fanout_exclude_has(&s, id), i % 7 == 0);
    }
    assert_false(fanout_exclude_has(&s, ""));
    fanout_exclude_free(&s);
    fanout_exclude_free(&s); /* twice is fine */
}

static void test_utf8_prefix(void **state)
{
    (void)state;
    assert_int_equal(fanout_utf8_prefix("hello", 10), 5);
    assert_int_equal(fanout_utf8_prefix("hello", 5), 5);
    assert_int_equal(fanout_utf8_prefix("hello", 3), 3);
    /* "h" + é (2 bytes) + "llo": cut inside é leaves it out */
    assert_int_equal(fanout_utf8_prefix("h\xc3\xa9llo", 2), 1);
    assert_int_equal(fanout_utf8_prefix("h\xc3\xa9llo", 3), 3);
    /* 中 is 3 bytes, an emoji 4 */
    assert_int_equal(fanout_utf8_prefix("\xe4\xb8\xad\xe4\xb8\xad", 5), 3);
    assert_int_equal(fanout_utf8_prefix("\xf0\x9f\x98\x80x", 3), 0);
    assert_int_equal(fanout_utf8_prefix("\xf0\x9f\x98\x80x", 4), 4);
    assert_int_equal(fanout_utf8_prefix("", 0), 0);
}

static fanout_conf_t base_conf(void)
{
    fanout_conf_t c;
    memset(&c, 0, sizeof(c));
    c.topic_template = "im-downstream-topic-{gateway_id}";
    c.batch_size = 200;
    c.slice_pages = 50;
    c.pages_in_flight = 4;
    c.max_shards = 16;
    c.walks = 4;
    c.push_batch = 3;
    c.push_title = "";
    c.push_show_content = true;
    c.push_body = "You have a new message";
    c.push_body_max = 4;
    c.push_sound = "default";
    c.push_ttl_ms = 3600 * 1000;
    return c;
}

static void test_push_batch(void **state)
{
    fanout_conf_t conf = base_conf();
    Imtask__V1__UserInfo ui;
    Imtask__V1__PushNotification n;
    Imtask__V1__PushNotification__DataEntry kv[3], *kvp[3];
    char body[8], seq[24];
    fanout_push_batch_t pb;
    uint8_t *buf;
    size_t len;
    (void)state;
    fanout_notification_init(&n, &conf, sample_message(&ui), body, kv, kvp, seq);
    assert_string_equal(n.body, "h\xc3\xa9l"); /* 4 bytes, on a boundary */
    assert_string_equal(n.collapse_key, "group:g9");
    assert_int_equal(n.priority, IMTASK__V1__PUSH_PRIORITY__PUSH_PRIORITY_HIGH);
    assert_int_equal(n.ttl_set_case, IMTASK__V1__PUSH_NOTIFICATION__TTL_SET_TTL_SECONDS);
    assert_int_equal(n.ttl_seconds, 3600);
    assert_int_equal(n.badge_set_case, IMTASK__V1__PUSH_NOTIFICATION__BADGE_SET__NOT_SET);

    assert_int_equal(fanout_push_batch_init(&pb, 3), 0);
    assert_int_equal(fanout_push_batch_add(&pb, "u1"), 0);
    assert_int_equal(fanout_push_batch_add(&pb, "u2"), 0);
    assert_int_equal(fanout_push_batch_add(&pb, "u3"), 1); /* full: flush */
    assert_int_equal(fanout_push_batch_encode(&pb, &n, "g9", &buf, &len), 0);
    assert_int_equal(pb.n, 0);
    assert_int_equal(pb.seq, 1);
    Imtask__V1__PushTask *pt = imtask__v1__push_task__unpack(NULL, len, buf);
    assert_non_null(pt);
    assert_int_equal(pt->n_user_ids, 3);
    assert_string_equal(pt->user_ids[2], "u3");
    assert_string_equal(pt->source, "fanout");
    assert_string_equal(pt->group_id, "g9");
    assert_string_equal(pt->notification->message_id, "m42");
    assert_string_equal(pt->notification->sound, "default");
    assert_int_equal(pt->notification->seq_id, 43);
    assert_int_equal(pt->notification->n_data, 3);
    assert_int_equal(pt->notification->ttl_set_case,
                     IMTASK__V1__PUSH_NOTIFICATION__TTL_SET_TTL_SECONDS);
    imtask__v1__push_task__free_unpacked(pt, NULL);
    free(buf);
    assert_int_equal(fanout_push_batch_add(&pb, "u4"), 0);
    fanout_push_batch_free(&pb); /* frees what was not flushed */

    /* content hidden, no ttl, normal priority */
    conf.push_show_content = false;
    conf.push_ttl_ms = 0;
    conf.push_priority = FANOUT_PUSH_PRIORITY_NORMAL;
    fanout_notification_init(&n, &conf, sample_message(&ui), body, kv, kvp, seq);
    assert_string_equal(n.body, "You have a new message");
    assert_int_equal(n.ttl_set_case, IMTASK__V1__PUSH_NOTIFICATION__TTL_SET__NOT_SET);
    assert_int_equal(n.priority, IMTASK__V1__PUSH_PRIORITY__PUSH_PRIORITY_NORMAL);
}

static void test_conf_check(void **state)
{
    char err[512];
    fanout_conf_t c;
    const char *md_ok[] = {"x-imrepo-tag=t1", "x-caller=im-task fanout"};
    const char *md_bad_name[] = {"X-Caller=a"};
    const char *md_no_eq[] = {"x-caller"};
    const char *md_grpc[] = {"grpc-timeout=1S"};
    (void)state;

    c = base_conf();
    assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), 0);
    assert_int_equal(c.nmd, 0);

    c = base_conf();
    c.imrepo_metadata = (cfg_list_t){md_ok, 2};
    assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), 0);
    assert_int_equal(c.nmd, 2);
    assert_string_equal(c.md[0].name, "x-imrepo-tag");
    assert_string_equal(c.md[0].value, "t1");
    assert_string_equal(c.md[1].value, "im-task fanout");

    const char **bad[] = {md_bad_name, md_no_eq, md_grpc};
    for (int i = 0; i < 3; i++) {
        c = base_conf();
        c.imrepo_metadata = (cfg_list_t){bad[i], 1};
        assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), -1);
        assert_non_null(strstr(err, "f.yaml: fanout.imrepo_metadata"));
    }

    c = base_conf();
    c.topic_template = "downstream";
    assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "fanout.topic_template"));

    c = base_conf();
    c.slice_pages = 1000; /* an upper bound: lowered to 50,000 members a slice */
    c.batch_size = 1000;
    assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), 0);
    assert_int_equal(c.slice_pages, 50);
    c = base_conf();
    c.slice_pages = 250;
    c.batch_size = 10000;
    assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), 0);
    assert_int_equal(c.slice_pages, 5);

    c = base_conf();
    c.slice_pages = 2;
    c.pages_in_flight = 8;
    assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), 0);
    assert_int_equal(c.pages_in_flight, 2);

    /* im-repo is asked for max_shards x walks shards at most 1024 */
    c = base_conf();
    c.max_shards = 128;
    c.walks = 8;
    assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), 0);
    c.walks = 9;
    assert_int_equal(fanout_conf_check(&c, "f.yaml", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "f.yaml: fanout.max_shards (128) x fanout.walks (9)"));
}

/* The section bound from YAML: defaults, values, and a bad value named. */
static void test_conf_bind(void **state)
{
    char err[512];
    fanout_conf_t c;
    (void)state;
    cfg_t *cfg = cfg_load_string("fanout:\n  format: batch\n  batch_size: 500\n"
                                 "  push_sound: none\n",
                                 "f.yaml", err, sizeof(err));
    assert_non_null(cfg);
    memset(&c, 0, sizeof(c));
    assert_int_equal(fanout_conf_bind(&c, cfg, err, sizeof(err)), 0);
    assert_int_equal(c.format, FANOUT_FORMAT_BATCH);
    assert_int_equal(c.batch_size, 500);
    assert_int_equal(c.slice_pages, 100); /* the default 250, lowered to 50,000 members */
    assert_int_equal(c.slice_time_ms, 1000);
    assert_string_equal(c.topic_template, "im-downstream-topic-{gateway_id}");
    assert_string_equal(c.push_sound, "");
    assert_string_equal(c.push_title, "");
    assert_int_equal(c.push_ttl_ms, 86400000);
    assert_int_equal(c.max_shards, 16);
    assert_int_equal(c.walks, 4);
    cfg_destroy(cfg);

    cfg = cfg_load_string("fanout:\n  batch_size: 0\n", "f.yaml", err, sizeof(err));
    assert_non_null(cfg);
    memset(&c, 0, sizeof(c));
    assert_int_equal(fanout_conf_bind(&c, cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "fanout.batch_size"));
    cfg_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_template), cmocka_unit_test(test_recipient_encoding),
        cmocka_unit_test(test_batch_encoding), cmocka_unit_test(test_exclude),
        cmocka_unit_test(test_utf8_prefix),    cmocka_unit_test(test_push_batch),
        cmocka_unit_test(test_conf_check),     cmocka_unit_test(test_conf_bind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
