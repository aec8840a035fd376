/* err.c: names and descriptions of repo_err_t, and which are retriable. */
#include "repoclient/repoclient.h"

const char *repo_err_name(repo_err_t err)
{
    switch (err) {
    case REPO_ERR_OK:
        return "OK";
    case REPO_ERR_CANCELLED:
        return "CANCELLED";
    case REPO_ERR_UNKNOWN:
        return "UNKNOWN";
    case REPO_ERR_INVALID_ARGUMENT:
        return "INVALID_ARGUMENT";
    case REPO_ERR_DEADLINE_EXCEEDED:
        return "DEADLINE_EXCEEDED";
    case REPO_ERR_NOT_FOUND:
        return "NOT_FOUND";
    case REPO_ERR_ALREADY_EXISTS:
        return "ALREADY_EXISTS";
    case REPO_ERR_PERMISSION_DENIED:
        return "PERMISSION_DENIED";
    case REPO_ERR_RESOURCE_EXHAUSTED:
        return "RESOURCE_EXHAUSTED";
    case REPO_ERR_FAILED_PRECONDITION:
        return "FAILED_PRECONDITION";
    case REPO_ERR_ABORTED:
        return "ABORTED";
    case REPO_ERR_OUT_OF_RANGE:
        return "OUT_OF_RANGE";
    case REPO_ERR_UNIMPLEMENTED:
        return "UNIMPLEMENTED";
    case REPO_ERR_INTERNAL:
        return "INTERNAL";
    case REPO_ERR_UNAVAILABLE:
        return "UNAVAILABLE";
    case REPO_ERR_DATA_LOSS:
        return "DATA_LOSS";
    case REPO_ERR_UNAUTHENTICATED:
        return "UNAUTHENTICATED";
    case REPO_ERR__BAD_ARG:
        return "_BAD_ARG";
    case REPO_ERR__NOMEM:
        return "_NOMEM";
    case REPO_ERR__QUEUE_FULL:
        return "_QUEUE_FULL";
    case REPO_ERR__SHUTDOWN:
        return "_SHUTDOWN";
    case REPO_ERR__PROTOCOL:
        return "_PROTOCOL";
    case REPO_ERR__MSG_TOO_LARGE:
        return "_MSG_TOO_LARGE";
    case REPO_ERR__DECODE:
        return "_DECODE";
    case REPO_ERR__ENCODE:
        return "_ENCODE";
    }
    return "?";
}

const char *repo_err_str(repo_err_t err)
{
    switch (err) {
    case REPO_ERR_OK:
        return "success";
    case REPO_ERR_CANCELLED:
        return "the call was cancelled";
    case REPO_ERR_UNKNOWN:
        return "unknown error";
    case REPO_ERR_INVALID_ARGUMENT:
        return "the server rejected an argument";
    case REPO_ERR_DEADLINE_EXCEEDED:
        return "the deadline passed before the call completed";
    case REPO_ERR_NOT_FOUND:
        return "not found";
    case REPO_ERR_ALREADY_EXISTS:
        return "already exists";
    case REPO_ERR_PERMISSION_DENIED:
        return "permission denied";
    case REPO_ERR_RESOURCE_EXHAUSTED:
        return "the server is out of a resource";
    case REPO_ERR_FAILED_PRECONDITION:
        return "failed precondition";
    case REPO_ERR_ABORTED:
        return "aborted";
    case REPO_ERR_OUT_OF_RANGE:
        return "out of range";
    case REPO_ERR_UNIMPLEMENTED:
        return "the server does not implement the method";
    case REPO_ERR_INTERNAL:
        return "internal error";
    case REPO_ERR_UNAVAILABLE:
        return "the service is unavailable";
    case REPO_ERR_DATA_LOSS:
        return "data loss";
    case REPO_ERR_UNAUTHENTICATED:
        return "unauthenticated";
    case REPO_ERR__BAD_ARG:
        return "invalid argument or use";
    case REPO_ERR__NOMEM:
        return "out of memory";
    case REPO_ERR__QUEUE_FULL:
        return "too many calls waiting";
    case REPO_ERR__SHUTDOWN:
        return "the client is shutting down";
    case REPO_ERR__PROTOCOL:
        return "the peer broke the HTTP/2 or gRPC protocol";
    case REPO_ERR__MSG_TOO_LARGE:
        return "message larger than allowed";
    case REPO_ERR__DECODE:
        return "the response could not be decoded";
    case REPO_ERR__ENCODE:
        return "the request could not be encoded";
    }
    return "unknown error code";
}

bool repo_err_is_retriable(repo_err_t err)
{
    switch (err) {
    case REPO_ERR_UNAVAILABLE:
    case REPO_ERR_DEADLINE_EXCEEDED:
    case REPO_ERR_RESOURCE_EXHAUSTED:
    case REPO_ERR_ABORTED:
    case REPO_ERR__QUEUE_FULL:
    case REPO_ERR__NOMEM:
        return true;
    default:
        return false;
    }
}
