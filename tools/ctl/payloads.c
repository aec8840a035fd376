/* payloads.c: the per-task-type payload descriptor table of imtask-ctl.
 *
 * Adding a payload is one row below plus the proto's target in BUILD.bazel's
 * deps, e.g. when proto/fanout.proto exists:
 *     #include "proto/fanout.pb-c.h"
 *     {"fanout", &imtask__v1__fanout_task__descriptor},
 */
#include "payloads.h"

#include "proto/audit.pb-c.h"
#include "proto/fanout.pb-c.h"
#include "proto/push.pb-c.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *task_type; /* canonical name (task_type_canonical) */
    const ProtobufCMessageDescriptor *descriptor;
} ctl_payload_t;

static const ctl_payload_t ctl_payloads[] = {
    {"fanout", &imtask__v1__fanout_task__descriptor},
    {"push", &imtask__v1__push_task__descriptor},
    {"content_audit", &imtask__v1__audit_task__descriptor},
    {NULL, NULL}, /* end */
};

const ProtobufCMessageDescriptor *ctl_payload_descriptor(const char *task_type)
{
    for (size_t i = 0; task_type && ctl_payloads[i].task_type; i++) {
        if (strcmp(ctl_payloads[i].task_type, task_type) == 0)
            return ctl_payloads[i].descriptor;
    }
    return NULL;
}

const char *ctl_payload_types(void)
{
    static char list[256];
    size_t used = 0;
    if (list[0])
        return list;
    for (size_t i = 0; ctl_payloads[i].task_type && used < sizeof(list); i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
                         ctl_payloads[i].task_type);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (!list[0])
        snprintf(list, sizeof(list), "none");
    return list;
}
