/* main.c: imtask-fanout, large-group message fan-out to the gateway topics. */
#include "infra/app.h"

static const app_spec_t spec = {
    .name = "fanout",
    .summary = "large-group message fan-out to the gateway topics",
};

int main(int argc, char **argv)
{
    return app_main(argc, argv, &spec);
}
