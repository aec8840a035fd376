/* payloads.h: the protobuf message of each task type's payload, so that
 * imtask-ctl can take (--payload-json) and show payloads as JSON. */
#ifndef CTL_PAYLOADS_H
#define CTL_PAYLOADS_H

#include <protobuf-c/protobuf-c.h>

/* The payload message of a task type (canonical name, see task.h), or NULL
 * when none is registered in payloads.c. */
const ProtobufCMessageDescriptor *ctl_payload_descriptor(const char *task_type);

/* The task types that have one, comma-separated ("none" when none), for
 * messages. */
const char *ctl_payload_types(void);

#endif
