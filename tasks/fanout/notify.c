/* notify.c: offline members become `push` tasks (proto/push.proto): the
 * notification of a message, and batches of at most push_batch user ids. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"

#define FANOUT_COLLAPSE_MAX 64 /* APNs apns-collapse-id */

size_t fanout_utf8_prefix(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max)
        return len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--; /* s[cut] continues a character: leave that character out */
    return cut;
}

void fanout_notification_init(Imtask__V1__PushNotification *n, const fanout_conf_t *conf,
                              const Imtask__V1__DownstreamMessage *msg, char *body,
                              Imtask__V1__PushNotification__DataEntry *dkv,
                              Imtask__V1__PushNotification__DataEntry **dptr, char *seqbuf)
{
    imtask__v1__push_notification__init(n);
    n->title = (char *)conf->push_title;
    if (conf->push_show_content && msg->content && *msg->content) {
        size_t k = fanout_utf8_prefix(msg->content, (size_t)conf->push_body_max);
        memcpy(body, msg->content, k);
        body[k] = '\0';
        n->body = body;
    } else {
        n->body = (char *)conf->push_body;
    }
    n->conversation_id = msg->conversation_id;
    n->sender_id = msg->sender_id;
    n->message_id = msg->message_id;
    n->sound = (char *)conf->push_sound;
    if (msg->conversation_id && strlen(msg->conversation_id) <= FANOUT_COLLAPSE_MAX)
        n->collapse_key = msg->conversation_id;
    n->priority = conf->push_priority == FANOUT_PUSH_PRIORITY_NORMAL
                      ? IMTASK__V1__PUSH_PRIORITY__PUSH_PRIORITY_NORMAL
                      : IMTASK__V1__PUSH_PRIORITY__PUSH_PRIORITY_HIGH;
    if (conf->push_ttl_ms > 0) {
        n->ttl_set_case = IMTASK__V1__PUSH_NOTIFICATION__TTL_SET_TTL_SECONDS;
        n->ttl_seconds = conf->push_ttl_ms / 1000;
    }
    n->seq_id = msg->seq_id;
    n->sent_at_ms = msg->timestamp;
    snprintf(seqbuf, 24, "%" PRId64, msg->seq_id);
    static const char *const keys[] = {"conversation_id", "message_id", "seq_id"};
    char *vals[] = {msg->conversation_id, msg->message_id, seqbuf};
    for (int i = 0; i < 3; i++) {
        imtask__v1__push_notification__data_entry__init(&dkv[i]);
        dkv[i].key = (char *)keys[i];
        dkv[i].value = vals[i];
        dptr[i] = &dkv[i];
    }
    n->n_data = 3;
    n->data = dptr;
}

int fanout_push_batch_init(fanout_push_batch_t *pb, size_t batch)
{
    memset(pb, 0, sizeof(*pb));
    pb->batch = batch;
    pb->ids = calloc(batch, sizeof(*pb->ids));
    return pb->ids ? 0 : -1;
}

int fanout_push_batch_add(fanout_push_batch_t *pb, const char *id)
{
    if (pb->n >= pb->batch)
        return -1; /* the caller flushes at 1 */
    pb->ids[pb->n] = strdup(id);
    if (!pb->ids[pb->n])
        return -1;
    pb->n++;
    return pb->n == pb->batch ? 1 : 0;
}

static void fanout_push_batch_clear(fanout_push_batch_t *pb)
{
    for (size_t i = 0; i < pb->n; i++)
        free(pb->ids[i]);
    pb->n = 0;
}

int fanout_push_batch_encode(fanout_push_batch_t *pb, const Imtask__V1__PushNotification *n,
                             const char *group_id, uint8_t **out, size_t *outlen)
{
    Imtask__V1__PushTask pt = IMTASK__V1__PUSH_TASK__INIT;
    pt.n_user_ids = pb->n;
    pt.user_ids = pb->ids;
    pt.notification = (Imtask__V1__PushNotification *)n;
    pt.source = (char *)"fanout";
    pt.group_id = (char *)group_id;
    size_t len = protobuf_c_message_get_packed_size(&pt.base);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    *outlen = protobuf_c_message_pack(&pt.base, buf);
    *out = buf;
    fanout_push_batch_clear(pb);
    pb->seq++;
    return 0;
}

void fanout_push_batch_free(fanout_push_batch_t *pb)
{
    if (pb->ids)
        fanout_push_batch_clear(pb);
    free(pb->ids);
    pb->ids = NULL;
}
