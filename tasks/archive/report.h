/* report.h: the `report` processor of imtask-archive: statistics of a
 * period as JSON, CSV and a self-contained HTML page (docs/report.md). */
#ifndef IMTASK_ARCHIVE_REPORT_H
#define IMTASK_ARCHIVE_REPORT_H

#include "dispatch/dispatch.h"

#define REPORT_TASK_TYPE "report"

extern const dispatch_ops_t report_ops;

#endif
