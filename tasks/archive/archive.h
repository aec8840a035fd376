/* archive.h: the `archive` processor of imtask-archive: messages older than
 * the retention period, from im-repo into verified segment files, then
 * deleted from im-repo (docs/archive.md). */
#ifndef IMTASK_ARCHIVE_ARCHIVE_H
#define IMTASK_ARCHIVE_ARCHIVE_H

#include "dispatch/dispatch.h"

#define ARCHIVE_TASK_TYPE "archive"

extern const dispatch_ops_t archive_ops;

#endif
