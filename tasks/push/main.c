/* main.c: imtask-push, offline push through Apple APNs and Google FCM. */
#include "dispatch/dispatch.h"
#include "processor.h"

static int push_register(dispatch_t *d)
{
    return dispatch_register(d, "push", &push_ops);
}

int main(int argc, char **argv)
{
    return dispatch_main(argc, argv, "push", "offline push through Apple APNs and Google FCM",
                         push_register);
}
