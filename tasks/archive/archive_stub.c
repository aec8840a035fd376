/* PLACEHOLDER, replaced by the archive job (archive.c): dead-letters. */
#include "archive.h"

static dispatch_result_t archive_stub_process(void *state, dispatch_task_t *task)
{
    (void)state;
    (void)task;
    return dispatch_dead("archive is not implemented yet");
}

const dispatch_ops_t archive_ops = {
    .api_version = DISPATCH_API_VERSION,
    .name = "archive",
    .process = archive_stub_process,
};
