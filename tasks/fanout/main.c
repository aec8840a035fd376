/* main.c: imtask-fanout, large-group message fan-out to the gateway topics
 * (the `fanout` processor, processor.c; docs/fanout.md). */
#include "fanout.h"

static int fanout_register(dispatch_t *d)
{
    return dispatch_register(d, "fanout", &fanout_ops);
}

int main(int argc, char **argv)
{
    return dispatch_main(argc, argv, "fanout", "large-group message fan-out to the gateway topics",
                         fanout_register);
}
