/* conf.h: the client's settings (private; see repoclient.h for names). */
#ifndef REPOCLIENT_CONF_H
#define REPOCLIENT_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "repoclient/repoclient.h"

struct repo_conf_s {
    char *endpoints; /* owned strings */
    char *etcd_endpoints;
    char *etcd_prefix;
    char *tls_ca_file;
    char *tls_server_name;
    bool tls;
    bool tls_insecure;
    int64_t etcd_timeout_ms;
    int64_t default_timeout_ms;
    int64_t connect_timeout_ms;
    int64_t max_attempts;
    int64_t retry_backoff_ms;
    int64_t retry_backoff_max_ms;
    int64_t reconnect_backoff_ms;
    int64_t reconnect_backoff_max_ms;
    int64_t keepalive_interval_ms;
    int64_t keepalive_timeout_ms;
    int64_t max_conns_per_endpoint;
    int64_t max_streams_per_conn;
    int64_t max_pending;
    int64_t max_recv_msg_bytes;
    int64_t max_send_msg_bytes;
    int64_t max_header_bytes;
};

#define REPO_MAX_CONNS_PER_ENDPOINT 16
#define REPO_HARD_MAX_MSG (64 * 1024 * 1024)

#endif
