/* main.c: imtask-archive, scheduled jobs: message archiving and statistics reports. */
#include "infra/app.h"

static const app_spec_t spec = {
    .name = "archive",
    .summary = "scheduled jobs: message archiving and statistics reports",
};

int main(int argc, char **argv)
{
    return app_main(argc, argv, &spec);
}
