/* processor.h: the `push` task processor (ops table for the dispatch
 * runtime). See docs/push.md. */
#ifndef PUSH_PROCESSOR_H
#define PUSH_PROCESSOR_H

#include "dispatch/dispatch.h"

extern const dispatch_ops_t push_ops;

#endif
