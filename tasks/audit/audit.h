/* audit.h: the content_audit processor (processor.c), registered by main.c.
 *
 * One task: decode the AuditTask payload; take its inline content or fetch
 * the message from im-repo (GetMessage; a message that no longer exists is
 * dead-lettered); ask the configured provider through the shared HTTP client
 * behind the circuit breaker; set the message's audit status in im-repo for
 * review and block (SetMessageAuditStatus); produce an AuditResult to the
 * result topic (an output of the task: the input offset advances only once
 * it is acknowledged). Transient failures are retries (Retry-After honoured);
 * on the task's last chance, or when the provider cannot judge the content,
 * audit.on_exhausted decides: review (fail closed) or dead_letter.
 * docs/audit.md is the reference.
 */
#ifndef AUDIT_AUDIT_H
#define AUDIT_AUDIT_H

#include "dispatch/dispatch.h"

#define AUDIT_TASK_TYPE "content_audit"

extern const dispatch_ops_t audit_ops;

#endif
