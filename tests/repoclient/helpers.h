/* helpers.h: what the repoclient integration tests share: the stack's
 * addresses from the environment, the double's admin endpoint (curl +
 * cJSON), etcd puts/deletes, and client construction. */
#ifndef TESTS_REPOCLIENT_HELPERS_H
#define TESTS_REPOCLIENT_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "repoclient/repoclient.h"

/* IMTASK_IMREPO_ADDR, IMTASK_IMREPO_ADMIN, IMTASK_ETCD_ENDPOINTS; when
 * unset, the defaults of scripts/stack.sh. */
const char *env_imrepo_addr(void);
const char *env_imrepo_admin(void);
const char *env_etcd(void);

/* POST (or GET when post is 0) admin path; returns parsed JSON (caller
 * deletes) or NULL. */
cJSON *admin(int post, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Calls of method (e.g. "/im_repo.v1.GroupService/GetGroupMembers") carrying
 * tag; items too when items is not NULL. */
int64_t admin_calls(const char *tag, const char *method, int64_t *items);
/* Calls a listener received so far. */
int64_t admin_listener_calls(const char *addr);
/* A new gRPC listener of the double; its address into out. */
void admin_spawn(char *out, size_t outlen);
/* A string field of GET /info. */
void admin_info(const char *field, char *out, size_t outlen);

int etcd_put(const char *key, const char *value);
int etcd_del(const char *key);

/* A client from "name=value" pairs, NULL-terminated; fails the test on error. */
repo_client_t *client_new(const char *const *kv);

/* A unique tag for x-imrepo-tag. */
void test_tag(char *out, size_t outlen, const char *what);

int64_t now_ms(void);
void sleep_ms(int64_t ms);

#endif
