/* main.c: imtask-audit, content moderation through third-party APIs. */
#include "infra/app.h"

static const app_spec_t spec = {
    .name = "audit",
    .summary = "content moderation through third-party APIs",
};

int main(int argc, char **argv)
{
    return app_main(argc, argv, &spec);
}
