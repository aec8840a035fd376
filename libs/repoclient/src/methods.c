/* methods.c: the im-repo methods (paths, message types, idempotency), their
 * typed blocking wrappers, and the contract's shard hash. */
#include "repoclient/repoclient.h"
#include "infra/str.h"

#define METHOD(var, svc, name, req, resp, idem)                                                    \
    const repo_method_t var = {"/im_repo.v1." svc "/" name, &im_repo__v1__##req##__descriptor,     \
                               &im_repo__v1__##resp##__descriptor, idem}

METHOD(repo_method_get_group_members, "GroupService", "GetGroupMembers", get_group_members_request,
       get_group_members_response, true);
METHOD(repo_method_get_group_member_count, "GroupService", "GetGroupMemberCount",
       get_group_member_count_request, get_group_member_count_response, true);
METHOD(repo_method_get_members_online_status, "GroupService", "GetMembersOnlineStatus",
       get_members_online_status_request, get_members_online_status_response, true);
METHOD(repo_method_get_users_online_status, "OnlineStatusService", "GetUsersOnlineStatus",
       get_users_online_status_request, get_users_online_status_response, true);
METHOD(repo_method_get_user_devices, "DeviceService", "GetUserDevices", get_user_devices_request,
       get_user_devices_response, true);
METHOD(repo_method_remove_invalid_tokens, "DeviceService", "RemoveInvalidTokens",
       remove_invalid_tokens_request, remove_invalid_tokens_response, false);
METHOD(repo_method_get_message, "MessageService", "GetMessage", get_message_request,
       get_message_response, true);
METHOD(repo_method_list_messages_before, "MessageService", "ListMessagesBefore",
       list_messages_before_request, list_messages_before_response, true);
METHOD(repo_method_delete_messages, "MessageService", "DeleteMessages", delete_messages_request,
       delete_messages_response, false);
METHOD(repo_method_set_message_audit_status, "MessageService", "SetMessageAuditStatus",
       set_message_audit_status_request, set_message_audit_status_response, false);
METHOD(repo_method_get_activity_stats, "MessageService", "GetActivityStats",
       get_activity_stats_request, get_activity_stats_response, true);

#define TYPED(fn, method, Req, Resp)                                                               \
    REPO_TYPED_CALL(fn, Req, Resp)                                                                 \
    {                                                                                              \
        ProtobufCMessage *r = NULL;                                                                \
        repo_err_t e = repo_call(c, &method, req ? &req->base : NULL, opts, &r, st);               \
        if (resp)                                                                                  \
            *resp = (Resp *)r;                                                                     \
        else                                                                                       \
            repo_response_free(r);                                                                 \
        return e;                                                                                  \
    }

TYPED(repo_get_group_members, repo_method_get_group_members, ImRepo__V1__GetGroupMembersRequest,
      ImRepo__V1__GetGroupMembersResponse)
TYPED(repo_get_group_member_count, repo_method_get_group_member_count,
      ImRepo__V1__GetGroupMemberCountRequest, ImRepo__V1__GetGroupMemberCountResponse)
TYPED(repo_get_members_online_status, repo_method_get_members_online_status,
      ImRepo__V1__GetMembersOnlineStatusRequest, ImRepo__V1__GetMembersOnlineStatusResponse)
TYPED(repo_get_users_online_status, repo_method_get_users_online_status,
      ImRepo__V1__GetUsersOnlineStatusRequest, ImRepo__V1__GetUsersOnlineStatusResponse)
TYPED(repo_get_user_devices, repo_method_get_user_devices, ImRepo__V1__GetUserDevicesRequest,
      ImRepo__V1__GetUserDevicesResponse)
TYPED(repo_remove_invalid_tokens, repo_method_remove_invalid_tokens,
      ImRepo__V1__RemoveInvalidTokensRequest, ImRepo__V1__RemoveInvalidTokensResponse)
TYPED(repo_get_message, repo_method_get_message, ImRepo__V1__GetMessageRequest,
      ImRepo__V1__GetMessageResponse)
TYPED(repo_list_messages_before, repo_method_list_messages_before,
      ImRepo__V1__ListMessagesBeforeRequest, ImRepo__V1__ListMessagesBeforeResponse)
TYPED(repo_delete_messages, repo_method_delete_messages, ImRepo__V1__DeleteMessagesRequest,
      ImRepo__V1__DeleteMessagesResponse)
TYPED(repo_set_message_audit_status, repo_method_set_message_audit_status,
      ImRepo__V1__SetMessageAuditStatusRequest, ImRepo__V1__SetMessageAuditStatusResponse)
TYPED(repo_get_activity_stats, repo_method_get_activity_stats, ImRepo__V1__GetActivityStatsRequest,
      ImRepo__V1__GetActivityStatsResponse)

uint32_t repo_shard_of(const char *user_id, uint32_t shard_count)
{
    if (shard_count <= 1 || !user_id)
        return 0;
    return (uint32_t)(str_hash(user_id) % shard_count);
}
