/* PLACEHOLDER, replaced by the report job (report.c): dead-letters. */
#include "report.h"

static dispatch_result_t report_stub_process(void *state, dispatch_task_t *task)
{
    (void)state;
    (void)task;
    return dispatch_dead("report is not implemented yet");
}

const dispatch_ops_t report_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "report",
    .process = report_stub_process,
};
