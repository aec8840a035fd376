/* repoclient.h: the im-repo client: gRPC over HTTP/2 (nghttp2, protobuf-c),
 * a pool over im-repo endpoints found in etcd or listed in config.
 *
 *   repo_conf_t *conf = repo_conf_new();
 *   repo_conf_set(conf, "endpoints", "10.0.0.5:9000,10.0.0.6:9000", err, sizeof err);
 *   repo_client_t *c;
 *   if (repo_client_new(&c, conf, err, sizeof err)) { repo_conf_destroy(conf); ... }
 *   ImRepo__V1__GetGroupMembersRequest req = IM_REPO__V1__GET_GROUP_MEMBERS_REQUEST__INIT;
 *   req.group_id = "g1000"; req.limit = 200;
 *   ImRepo__V1__GetGroupMembersResponse *resp;
 *   repo_status_t st;
 *   if (repo_get_group_members(c, &req, NULL, &resp, &st) == REPO_ERR_OK) {
 *       ... resp->members ...
 *       repo_response_free(&resp->base);
 *   } else if (repo_err_is_retriable(st.code)) { ... retry the task later ... }
 *   repo_client_destroy(&c);
 *
 * Model. A client owns one I/O thread that runs every connection: HTTP/2
 * (h2c with prior knowledge by default, TLS with ALPN "h2" as an option),
 * many calls multiplexed per connection up to the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS, more connections per endpoint (up to
 * max_conns_per_endpoint) when those are full, calls queued (bounded) beyond.
 * Endpoints are chosen round robin among those with a ready connection;
 * endpoints whose connection failed are skipped and reconnected with
 * exponential backoff. GOAWAY drains a connection; calls the server did not
 * process (refused streams, streams above GOAWAY's last id) are retried on
 * another connection. Keepalive PINGs detect dead peers.
 *
 * Deadlines: each call has one (opts->timeout_ms, else the conf's
 * default_timeout); it is sent as grpc-timeout and enforced locally:
 * the callback comes at the deadline at the latest, with DEADLINE_EXCEEDED.
 * Retries: idempotent methods (the reads) are retried on UNAVAILABLE with
 * exponential backoff and jitter while the deadline allows, at most
 * max_attempts tries; a call the server never processed is retried whatever
 * the method.
 *
 * Thread safety. repo_client_t is shared by all workers: every call function
 * and repo_client_set_endpoints/repo_client_stats are safe from any thread.
 * repo_conf_t is not thread-safe; it belongs to the client once
 * repo_client_new succeeded. Callbacks run on the client's I/O thread: they
 * must be quick, must not block, and must not call the blocking functions
 * (repo_call, repo_get_*, ...) or repo_client_destroy (those return
 * REPO_ERR__BAD_ARG when called there); repo_call_async is fine.
 *
 * Ownership. Requests are encoded before a call function returns: the caller
 * may free its request at once. A response handed to the caller (callback or
 * *resp) is the caller's, freed with repo_response_free().
 */
#ifndef REPOCLIENT_REPOCLIENT_H
#define REPOCLIENT_REPOCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "infra/config.h"
#include "proto/im_repo_v1/im_repo.pb-c.h"

/* ------------------------------------------------------------------ errors */

/* 0..16 are the gRPC status codes (as received, or as gRPC clients report
 * local conditions: UNAVAILABLE when no connection can be had,
 * DEADLINE_EXCEEDED when the local deadline passed). Negative values are
 * local conditions that have no gRPC code. Numbers never change. */
typedef enum {
    REPO_ERR_OK = 0,
    REPO_ERR_CANCELLED = 1,
    REPO_ERR_UNKNOWN = 2,
    REPO_ERR_INVALID_ARGUMENT = 3,
    REPO_ERR_DEADLINE_EXCEEDED = 4,
    REPO_ERR_NOT_FOUND = 5,
    REPO_ERR_ALREADY_EXISTS = 6,
    REPO_ERR_PERMISSION_DENIED = 7,
    REPO_ERR_RESOURCE_EXHAUSTED = 8,
    REPO_ERR_FAILED_PRECONDITION = 9,
    REPO_ERR_ABORTED = 10,
    REPO_ERR_OUT_OF_RANGE = 11,
    REPO_ERR_UNIMPLEMENTED = 12,
    REPO_ERR_INTERNAL = 13,
    REPO_ERR_UNAVAILABLE = 14,
    REPO_ERR_DATA_LOSS = 15,
    REPO_ERR_UNAUTHENTICATED = 16,

    REPO_ERR__BAD_ARG = -1,       /* misuse: NULL, bad metadata, wrong thread */
    REPO_ERR__NOMEM = -2,         /* allocation failed */
    REPO_ERR__QUEUE_FULL = -3,    /* max_pending calls already waiting */
    REPO_ERR__SHUTDOWN = -4,      /* the client is being destroyed */
    REPO_ERR__PROTOCOL = -5,      /* the peer broke HTTP/2 or gRPC framing */
    REPO_ERR__MSG_TOO_LARGE = -6, /* a message over max_{send,recv}_msg_bytes */
    REPO_ERR__DECODE = -7,        /* the response is not a valid protobuf */
    REPO_ERR__ENCODE = -8,        /* the request could not be encoded */
} repo_err_t;

/* "UNAVAILABLE", "DEADLINE_EXCEEDED", "_PROTOCOL", ...; never NULL. */
const char *repo_err_name(repo_err_t err);
/* A short description ("the service is unavailable", ...); never NULL. */
const char *repo_err_str(repo_err_t err);
/* True for conditions a processor should retry later (the task, not the
 * call: the client already retried what it could): UNAVAILABLE,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, _QUEUE_FULL, _NOMEM. */
bool repo_err_is_retriable(repo_err_t err);

#define REPO_MESSAGE_MAX 256

/* The outcome of a call: the code and a message (grpc-message decoded, or
 * what happened locally, naming the endpoint). */
typedef struct {
    repo_err_t code;
    char message[REPO_MESSAGE_MAX];
} repo_status_t;

/* ------------------------------------------------------------------- conf */

typedef struct repo_conf_s repo_conf_t;

/* Settings (name: default) — the same names as the config section's keys:
 *   endpoints            ""        static list "host:port,host:port" (IPv6: [::1]:9000)
 *   etcd_endpoints       ""        "http://host:port[,...]": discovery through etcd
 *   etcd_prefix          "/services/im-repo/"  one key per instance; value
 *                                  {"addr":"host:port",...} or "host:port"
 *   etcd_timeout         5s        each etcd request (range; watch is a stream)
 *   tls                  false     TLS with ALPN h2 instead of h2c
 *   tls_ca_file          ""        CA bundle (PEM); "" = system default
 *   tls_server_name      ""        name to verify (and SNI); "" = the host
 *   tls_insecure         false     do not verify the server (development only)
 *   default_timeout      5s        deadline of a call without its own
 *   connect_timeout      3s        TCP + TLS + the server's SETTINGS
 *   max_attempts         5         tries of one call (1 = no retry)
 *   retry_backoff        50ms      first retry delay (doubles, +-20% jitter)
 *   retry_backoff_max    1s
 *   reconnect_backoff    100ms     first reconnect delay after a failure
 *   reconnect_backoff_max 5s
 *   keepalive_interval   30s       PING after this much silence; 0 = off
 *   keepalive_timeout    10s       no PING ACK within this: connection dead
 *   max_conns_per_endpoint 4       connections opened when streams are full
 *   max_streams_per_conn 1000      our own cap (the server's may be lower)
 *   max_pending          100000    calls waiting for a stream
 *   max_recv_msg_bytes   4194304   larger responses fail with _MSG_TOO_LARGE
 *   max_send_msg_bytes   4194304
 *   max_header_bytes     16384     response header block cap
 */
repo_conf_t *repo_conf_new(void);
void repo_conf_destroy(repo_conf_t *conf); /* NULL is a no-op */
/* Set one setting from text (durations as "250ms", "5s"; bools
 * true/false). Returns 0, or -1 with "name: what was expected" in err. */
int repo_conf_set(repo_conf_t *conf, const char *name, const char *value, char *err, size_t errlen);
/* Bind a config section (e.g. "imrepo") with cfg_bind: keys as above,
 * environment IMTASK_<SECTION>_<KEY>. Returns 0, or -1 with err. */
int repo_conf_bind(repo_conf_t *conf, cfg_t *cfg, const char *section, char *err, size_t errlen);

/* ----------------------------------------------------------------- client */

typedef struct repo_client_s repo_client_t;

/* Start a client (its I/O thread, connections to the static endpoints, the
 * etcd watch). On success takes conf (destroyed with the client), sets *out
 * and returns 0; on failure returns -1 with why in err, leaves *out and conf
 * untouched. Needs endpoints or etcd_endpoints (or later
 * repo_client_set_endpoints). */
int repo_client_new(repo_client_t **out, repo_conf_t *conf, char *err, size_t errlen);
/* Fail every call still running with _SHUTDOWN (their callbacks run), stop
 * the threads, free, set *cp to NULL. NULL or *cp NULL is a no-op. */
void repo_client_destroy(repo_client_t **cp);

/* Replace the endpoint set ("host:port" each, at most REPO_MAX_ENDPOINTS).
 * New endpoints are connected; removed ones take no new calls and close
 * once their calls finish. With etcd discovery, the watch calls this. */
#define REPO_MAX_ENDPOINTS 256
int repo_client_set_endpoints(repo_client_t *c, const char *const *addrs, size_t n, char *err,
                              size_t errlen);

typedef struct {
    uint64_t calls; /* started (accepted) */
    uint64_t calls_ok;
    uint64_t calls_failed;
    uint64_t retries;      /* extra tries */
    uint64_t conns_opened; /* connections that became ready */
    uint64_t conns_failed; /* connect/TLS/handshake failures */
    uint64_t conns_lost;   /* ready connections that died */
    uint64_t goaways;
    uint64_t keepalive_timeouts;
    uint64_t endpoint_updates;
    uint32_t endpoints;              /* now */
    uint32_t conns_ready;            /* now */
    uint32_t in_flight;              /* streams open now */
    uint32_t pending;                /* calls waiting for a stream now */
    uint32_t max_in_flight_per_conn; /* highest seen on one connection */
} repo_stats_t;

void repo_client_stats(repo_client_t *c, repo_stats_t *out);

/* ------------------------------------------------------------------ calls */

/* An RPC: path, message types, and whether it is idempotent (retried). */
typedef struct {
    const char *path; /* "/im_repo.v1.GroupService/GetGroupMembers" */
    const ProtobufCMessageDescriptor *req;
    const ProtobufCMessageDescriptor *resp;
    bool idempotent;
} repo_method_t;

extern const repo_method_t repo_method_get_group_members;
extern const repo_method_t repo_method_get_group_member_count;
extern const repo_method_t repo_method_get_members_online_status;
extern const repo_method_t repo_method_get_users_online_status;
extern const repo_method_t repo_method_get_user_devices;
extern const repo_method_t repo_method_remove_invalid_tokens;
extern const repo_method_t repo_method_get_message;
extern const repo_method_t repo_method_list_messages_before;
extern const repo_method_t repo_method_delete_messages;
extern const repo_method_t repo_method_set_message_audit_status;
extern const repo_method_t repo_method_get_activity_stats;

#define REPO_MAX_MD 16         /* metadata entries per call */
#define REPO_MAX_MD_BYTES 4096 /* their names and values together */

/* Metadata: lower-case names ([a-z0-9-_.]), not starting with ':' or
 * "grpc-"; printable ASCII values. E.g. traceparent. */
typedef struct {
    const char *name;
    const char *value;
} repo_md_t;

typedef struct {
    int64_t timeout_ms; /* 0: the conf's default_timeout */
    const repo_md_t *md;
    size_t nmd;
} repo_call_opts_t;

/* Called exactly once per accepted call, on the I/O thread. resp is NULL
 * unless st->code is REPO_ERR_OK; it is the callee's to free. */
typedef void (*repo_done_cb)(void *opaque, const repo_status_t *st, ProtobufCMessage *resp);

/* Start a call. Returns REPO_ERR_OK when accepted (cb will run), else the
 * error (cb will not run): _BAD_ARG, _ENCODE, _MSG_TOO_LARGE, _QUEUE_FULL,
 * _SHUTDOWN, _NOMEM. opts may be NULL. */
repo_err_t repo_call_async(repo_client_t *c, const repo_method_t *m, const ProtobufCMessage *req,
                           const repo_call_opts_t *opts, repo_done_cb cb, void *opaque);

/* The same, waiting. Returns st->code; on REPO_ERR_OK *resp is set (the
 * caller frees it with repo_response_free). st may be NULL. */
repo_err_t repo_call(repo_client_t *c, const repo_method_t *m, const ProtobufCMessage *req,
                     const repo_call_opts_t *opts, ProtobufCMessage **resp, repo_status_t *st);

void repo_response_free(ProtobufCMessage *resp); /* NULL is a no-op */

/* Typed blocking calls (repo_call with the method's types). */
#define REPO_TYPED_CALL(fn, Req, Resp)                                                             \
    repo_err_t fn(repo_client_t *c, const Req *req, const repo_call_opts_t *opts, Resp **resp,     \
                  repo_status_t *st)
REPO_TYPED_CALL(repo_get_group_members, ImRepo__V1__GetGroupMembersRequest,
                ImRepo__V1__GetGroupMembersResponse);
REPO_TYPED_CALL(repo_get_group_member_count, ImRepo__V1__GetGroupMemberCountRequest,
                ImRepo__V1__GetGroupMemberCountResponse);
REPO_TYPED_CALL(repo_get_members_online_status, ImRepo__V1__GetMembersOnlineStatusRequest,
                ImRepo__V1__GetMembersOnlineStatusResponse);
REPO_TYPED_CALL(repo_get_users_online_status, ImRepo__V1__GetUsersOnlineStatusRequest,
                ImRepo__V1__GetUsersOnlineStatusResponse);
REPO_TYPED_CALL(repo_get_user_devices, ImRepo__V1__GetUserDevicesRequest,
                ImRepo__V1__GetUserDevicesResponse);
REPO_TYPED_CALL(repo_remove_invalid_tokens, ImRepo__V1__RemoveInvalidTokensRequest,
                ImRepo__V1__RemoveInvalidTokensResponse);
REPO_TYPED_CALL(repo_get_message, ImRepo__V1__GetMessageRequest, ImRepo__V1__GetMessageResponse);
REPO_TYPED_CALL(repo_list_messages_before, ImRepo__V1__ListMessagesBeforeRequest,
                ImRepo__V1__ListMessagesBeforeResponse);
REPO_TYPED_CALL(repo_delete_messages, ImRepo__V1__DeleteMessagesRequest,
                ImRepo__V1__DeleteMessagesResponse);
REPO_TYPED_CALL(repo_set_message_audit_status, ImRepo__V1__SetMessageAuditStatusRequest,
                ImRepo__V1__SetMessageAuditStatusResponse);
REPO_TYPED_CALL(repo_get_activity_stats, ImRepo__V1__GetActivityStatsRequest,
                ImRepo__V1__GetActivityStatsResponse);

/* The shard of a user id for GetGroupMembers' shard selector:
 * FNV-1a 64 of the bytes, modulo shard_count (the contract's hash). */
uint32_t repo_shard_of(const char *user_id, uint32_t shard_count);

#endif
