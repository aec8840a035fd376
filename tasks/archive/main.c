/* main.c: imtask-archive, scheduled jobs: message archiving (archive.h) and
 * statistics reports (report.h) on the task runtime. */
#include "archive.h"
#include "report.h"

static int archive_register(dispatch_t *d)
{
    if (dispatch_register(d, ARCHIVE_TASK_TYPE, &archive_ops))
        return -1;
    return dispatch_register(d, REPORT_TASK_TYPE, &report_ops);
}

int main(int argc, char **argv)
{
    return dispatch_main(argc, argv, "archive",
                         "scheduled jobs: message archiving and statistics reports",
                         archive_register);
}
