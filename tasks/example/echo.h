/* echo.h: the `echo` task type (docs/adding-a-task-type.md). */
#ifndef TASKS_EXAMPLE_ECHO_H
#define TASKS_EXAMPLE_ECHO_H

#include "dispatch/dispatch.h"

#define ECHO_TASK_TYPE "echo"

extern const dispatch_ops_t echo_ops;

#endif
