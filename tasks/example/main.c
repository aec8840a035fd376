/* main.c: imtask-example, a binary of its own for the `echo` task type
 * (consumer group im-task-example). */
#include "echo.h"

static int example_register(dispatch_t *d)
{
    return dispatch_register(d, ECHO_TASK_TYPE, &echo_ops);
}

int main(int argc, char **argv)
{
    return dispatch_main(argc, argv, "example", "the example task type: echo a payload to a topic",
                         example_register);
}
