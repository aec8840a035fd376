/* main.c: imtask-audit, content moderation through third-party APIs: the
 * content_audit processor (processor.c) on the task runtime. */
#include "audit.h"

static int audit_register(dispatch_t *d)
{
    return dispatch_register(d, AUDIT_TASK_TYPE, &audit_ops);
}

int main(int argc, char **argv)
{
    return dispatch_main(argc, argv, "audit", "content moderation through third-party APIs",
                         audit_register);
}
