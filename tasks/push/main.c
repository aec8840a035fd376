/* main.c: imtask-push, offline push through Apple APNs and Google FCM. */
#include "infra/app.h"

static const app_spec_t spec = {
    .name = "push",
    .summary = "offline push through Apple APNs and Google FCM",
};

int main(int argc, char **argv)
{
    return app_main(argc, argv, &spec);
}
