/* conf.c: the `fanout:` configuration section of imtask-fanout: fields,
 * defaults, and the checks of values against each other. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "fanout.h"
#include "infra/log.h"

static const char *const fanout_format_choices[] = {"recipient", "batch", NULL};
static const char *const fanout_priority_choices[] = {"high", "normal", NULL};
static const char *const fanout_key_choices[] = {"group", "user", NULL};

#define FC(k) offsetof(fanout_conf_t, k)
static const cfg_field_t fanout_fields[] = {
    {.key = "format",
     .type = CFG_ENUM,
     .offset = FC(format),
     .def = "recipient",
     .choices = fanout_format_choices,
     .help = "downlinks: recipient (one DownstreamMessage per user) or batch (one "
             "DownstreamBatch per gateway per page)"},
    {.key = "record_key",
     .type = CFG_ENUM,
     .offset = FC(record_key),
     .def = "group",
     .choices = fanout_key_choices,
     .help = "key of recipient-format downlinks: group (a group's downlinks stay in one "
             "partition per gateway, in order; bigger batches) or user (a user's downlinks stay "
             "in one partition)"},
    {.key = "topic_template",
     .type = CFG_STRING,
     .offset = FC(topic_template),
     .def = "im-downstream-topic-" FANOUT_GATEWAY_PLACEHOLDER,
     .help = "gateway topic; {gateway_id} is replaced by the member's gateway"},
    {.key = "batch_size",
     .type = CFG_INT,
     .offset = FC(batch_size),
     .def = "200",
     .min = 1,
     .max = 10000,
     .help = "members per GetGroupMembers page (one status call each)"},
    {.key = "slice_pages",
     .type = CFG_INT,
     .offset = FC(slice_pages),
     .def = "250",
     .min = 1,
     .max = 10000,
     .help = "pages per slice at most: one Kafka transaction, the unit repeated after a crash"},
    {.key = "slice_time",
     .type = CFG_DURATION,
     .offset = FC(slice_time_ms),
     .def = "1s",
     .min = 10,
     .max = 600000,
     .help = "a slice begins no new page after this long, so read_committed readers see its "
             "downlinks soon however slow im-repo is"},
    {.key = "pages_in_flight",
     .type = CFG_INT,
     .offset = FC(pages_in_flight),
     .def = "8",
     .min = 1,
     .max = 64,
     .help = "pages fetched or being fetched and not yet produced, of all walks of a slice "
             "together (two per walk keep each walk's next member call in flight)"},
    {.key = "shard_members",
     .type = CFG_INT,
     .offset = FC(shard_members),
     .def = "25000",
     .min = 1,
     .max = 100000000,
     .help = "a group with more members is split into shards of about this many (im-repo "
             "should index the shard key)"},
    {.key = "max_shards",
     .type = CFG_INT,
     .offset = FC(max_shards),
     .def = "16",
     .min = 1,
     .max = 1024,
     .help = "shards of one group at most"},
    {.key = "walks",
     .type = CFG_INT,
     .offset = FC(walks),
     .def = "4",
     .min = 1,
     .max = FANOUT_WALKS_MAX,
     .help = "im-repo shards each shard task of a sharded group reads side by side, in one "
             "transaction (im-repo is asked for max_shards x walks shards at most)"},
    {.key = "max_excluded",
     .type = CFG_INT,
     .offset = FC(max_excluded),
     .def = "10000",
     .min = 0,
     .max = 1000000,
     .help = "exclude_user_ids a task may carry (more: dead-letter)"},
    {.key = "max_message_bytes",
     .type = CFG_INT,
     .offset = FC(max_message_bytes),
     .def = "262144",
     .min = 64,
     .max = 900000,
     .help = "encoded downlink message (more: dead-letter)"},
    {.key = "imrepo_timeout",
     .type = CFG_DURATION,
     .offset = FC(imrepo_timeout_ms),
     .def = "5s",
     .min = 10,
     .max = 600000,
     .help = "deadline of each im-repo call (retries included)"},
    {.key = "imrepo_metadata",
     .type = CFG_LIST,
     .offset = FC(imrepo_metadata),
     .help = "extra gRPC metadata on every im-repo call, name=value each"},
    {.key = "push_enabled",
     .type = CFG_BOOL,
     .offset = FC(push_enabled),
     .def = "true",
     .help = "offline members become push tasks"},
    {.key = "push_batch",
     .type = CFG_INT,
     .offset = FC(push_batch),
     .def = "500",
     .min = 1,
     .max = 10000,
     .help = "user ids per push task"},
    {.key = "push_title",
     .type = CFG_STRING,
     .offset = FC(push_title),
     .help = "notification title (unset: none, the device shows the app's name)"},
    {.key = "push_show_content",
     .type = CFG_BOOL,
     .offset = FC(push_show_content),
     .def = "true",
     .help = "the body is the start of the message; false: push_body"},
    {.key = "push_body",
     .type = CFG_STRING,
     .offset = FC(push_body),
     .def = "You have a new message",
     .help = "notification body when the content is hidden"},
    {.key = "push_body_max",
     .type = CFG_INT,
     .offset = FC(push_body_max),
     .def = "200",
     .min = 1,
     .max = 4000,
     .help = "bytes of content in the body (cut on a UTF-8 boundary)"},
    {.key = "push_sound",
     .type = CFG_STRING,
     .offset = FC(push_sound),
     .def = "default",
     .help = "notification sound: default, a sound file name, or none (silent)"},
    {.key = "push_priority",
     .type = CFG_ENUM,
     .offset = FC(push_priority),
     .def = "high",
     .choices = fanout_priority_choices,
     .help = "high or normal"},
    {.key = "push_ttl",
     .type = CFG_DURATION,
     .offset = FC(push_ttl_ms),
     .def = "1d",
     .min = 0,
     .max = 2419200000.0,
     .help = "how long providers keep trying (0: their default)"},
};
#undef FC

/* A metadata name as repoclient takes it: [a-z0-9-_.], not grpc-* or :*. */
static bool fanout_md_name_ok(const char *s, size_t n)
{
    if (n == 0 || s[0] == ':' || (n >= 5 && strncmp(s, "grpc-", 5) == 0))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.'))
            return false;
    }
    return true;
}

static int fanout_parse_metadata(fanout_conf_t *c, const char *origin, char *err, size_t errlen)
{
    size_t used = 0;
    c->nmd = 0;
    if (c->imrepo_metadata.count > FANOUT_MAX_METADATA) {
        snprintf(err, errlen, "%s: fanout.imrepo_metadata: at most %d entries, got %zu", origin,
                 FANOUT_MAX_METADATA, c->imrepo_metadata.count);
        return -1;
    }
    for (size_t i = 0; i < c->imrepo_metadata.count; i++) {
        const char *item = c->imrepo_metadata.items[i];
        const char *eq = strchr(item, '=');
        size_t nlen = eq ? (size_t)(eq - item) : 0, vlen = eq ? strlen(eq + 1) : 0;
        if (!eq || !fanout_md_name_ok(item, nlen)) {
            snprintf(err, errlen,
                     "%s: fanout.imrepo_metadata: expected name=value with a lower-case name "
                     "([a-z0-9-_.], not grpc-*), got \"%s\"",
                     origin, item);
            return -1;
        }
        for (size_t k = 0; k < vlen; k++) {
            unsigned char ch = (unsigned char)eq[1 + k];
            if (ch < 0x20 || ch > 0x7e) {
                snprintf(err, errlen,
                         "%s: fanout.imrepo_metadata: the value of \"%.*s\" must be "
                         "printable ASCII",
                         origin, (int)nlen, item);
                return -1;
            }
        }
        if (used + nlen + vlen + 2 > sizeof(c->md_buf)) {
            snprintf(err, errlen, "%s: fanout.imrepo_metadata: more than %d bytes", origin,
                     REPO_MAX_MD_BYTES);
            return -1;
        }
        char *name = c->md_buf + used;
        memcpy(name, item, nlen);
        name[nlen] = '\0';
        char *value = name + nlen + 1;
        memcpy(value, eq + 1, vlen);
        value[vlen] = '\0';
        used += nlen + vlen + 2;
        c->md[c->nmd++] = (repo_md_t){name, value};
    }
    return 0;
}

int fanout_conf_check(fanout_conf_t *c, const char *origin, char *err, size_t errlen)
{
    char terr[256];
    if (fanout_topic_template_check(c->topic_template, terr, sizeof(terr))) {
        snprintf(err, errlen, "%s: fanout.topic_template: %s", origin, terr);
        return -1;
    }
    /* one slice's outputs (downlinks, push tasks, the next task) must stay
     * below what the runtime accepts from one process() call: slice_pages is
     * an upper bound, so it is lowered to fit (with big pages) */
    int64_t fit = (DISPATCH_MAX_OUTPUTS / 2) / c->batch_size;
    if (fit < 1)
        fit = 1;
    if (c->slice_pages > fit) {
        log_warn("%s: fanout.slice_pages %lld lowered to %lld: a slice holds at most %d members "
                 "(pages of %lld)",
                 origin, (long long)c->slice_pages, (long long)fit, DISPATCH_MAX_OUTPUTS / 2,
                 (long long)c->batch_size);
        c->slice_pages = fit;
    }
    if (c->max_shards * c->walks > FANOUT_REPO_SHARDS_MAX) {
        snprintf(err, errlen,
                 "%s: fanout.max_shards (%lld) x fanout.walks (%lld) must be at most %d: the "
                 "im-repo shards of one fan-out",
                 origin, (long long)c->max_shards, (long long)c->walks, FANOUT_REPO_SHARDS_MAX);
        return -1;
    }
    if (!c->push_title)
        c->push_title = "";
    if (!c->push_sound || strcmp(c->push_sound, "none") == 0)
        c->push_sound = "";
    if (c->pages_in_flight > c->slice_pages)
        c->pages_in_flight = c->slice_pages;
    return fanout_parse_metadata(c, origin, err, errlen);
}

int fanout_conf_bind(fanout_conf_t *c, cfg_t *cfg, char *err, size_t errlen)
{
    const char *path = cfg_path(cfg);
    if (cfg_bind(cfg, "fanout", fanout_fields, sizeof(fanout_fields) / sizeof(fanout_fields[0]), c,
                 NULL, err, errlen))
        return -1;
    return fanout_conf_check(c, path && *path ? path : "config", err, errlen);
}
