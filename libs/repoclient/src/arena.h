/* arena.h: the memory of one unpacked im-repo response.
 *
 * protobuf-c's unpack makes one malloc per sub-message, string and repeated
 * field: about 1,200 for a page of 200 group members, and malloc + free of
 * those were 20% of imtask-fanout's instructions (callgrind, docs/fanout.md).
 * A response is always freed whole (repo_response_free), so its pieces come
 * from a few growing chunks instead, freed together.
 *
 * The first chunk starts with a header that the response message itself
 * follows (protobuf-c allocates the message first); arena_free finds the
 * header from the message. arena_unpack checks that layout and, should a
 * protobuf-c version allocate something else first, unpacks with malloc
 * instead: arena_free tells the two apart by the header's magic. */
#ifndef IMTASK_REPOCLIENT_ARENA_H
#define IMTASK_REPOCLIENT_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* NULL: undecodable (or out of memory). */
ProtobufCMessage *arena_unpack(const ProtobufCMessageDescriptor *desc, size_t len,
                               const uint8_t *data);
/* Frees a message from arena_unpack (NULL: no-op). */
void arena_free(ProtobufCMessage *m);
/* For tests: whether m lives in an arena (not the malloc fallback). */
int arena_holds(const ProtobufCMessage *m);

#endif
