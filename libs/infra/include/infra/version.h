/* version.h: the im-task release, shown by --version and in /metrics. */
#ifndef INFRA_VERSION_H
#define INFRA_VERSION_H
#define IMTASK_VERSION "0.1.0"
#endif
