// wire.go: the two answers a large fan-out asks for 10,000 times per million
// members (a page of members, a batch of online statuses), encoded straight
// into protobuf's wire format with protowire and carried as the response's
// unknown fields, which proto.Marshal writes out as they are. The bytes mean
// exactly what the generated structs would (wire_test.go decodes both and
// compares): a client reads the same messages. Why: the benchmark runs the
// double on the fan-out's own two cores, where building 200 structs per
// answer and marshalling them by reflection took about half of the double's
// CPU, time a deployment's im-repo spends on other machines.
package main

import (
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Field numbers of proto/im_repo_v1/im_repo.proto.
const (
	fieldRepeated = 1 // GetGroupMembersResponse.members, Get*OnlineStatusResponse.statuses

	fieldMemberGroup  = 1 // GroupMember
	fieldMemberUser   = 2
	fieldMemberRole   = 3
	fieldMemberJoined = 4

	fieldStatusUser     = 1 // OnlineStatus
	fieldStatusOnline   = 2
	fieldStatusGateway  = 3
	fieldStatusLastSeen = 4
)

// proto3: fields at their zero value are not written.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, s []byte) []byte {
	if len(s) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendElement appends body as one element of the repeated field 1.
func appendElement(b, body []byte) []byte {
	b = protowire.AppendTag(b, fieldRepeated, protowire.BytesType)
	return protowire.AppendBytes(b, body)
}

// appendMember: groupMember(gid, base, k) as wire bytes (scratch: room for
// the element's body).
func appendMember(b, scratch []byte, gid string, base, k int64) []byte {
	var uid [24]byte
	m := appendString(scratch[:0], fieldMemberGroup, gid)
	m = appendBytes(m, fieldMemberUser, strconv.AppendInt(append(uid[:0], 'u'), base+k, 10))
	m = appendVarint(m, fieldMemberRole, uint64(memberRole(k)))
	m = appendVarint(m, fieldMemberJoined, uint64(epochMs+k*1000))
	return appendElement(b, m)
}

// appendStatus: onlineStatus(ratio, gws, uid) as wire bytes.
func appendStatus(b, scratch []byte, ratio float64, gws int, uid string) []byte {
	var gw [24]byte
	h := fnvMore(fnv1a64(uid), "|online")
	m := appendString(scratch[:0], fieldStatusUser, uid)
	if float64(h%1_000_000) < ratio*1_000_000 {
		m = appendVarint(m, fieldStatusOnline, 1)
		m = appendBytes(m, fieldStatusGateway,
			strconv.AppendUint(append(gw[:0], "gw-"...), (h/1_000_000)%uint64(gws)+1, 10))
	}
	m = appendVarint(m, fieldStatusLastSeen, uint64(epochMs+int64(h%1_000_000_000)))
	return appendElement(b, m)
}

// withRaw sets m's unknown fields to raw: the repeated field 1 as encoded.
func withRaw[M interface{ ProtoReflect() protoreflect.Message }](m M, raw []byte) M {
	if len(raw) > 0 {
		m.ProtoReflect().SetUnknown(protoreflect.RawFields(raw))
	}
	return m
}

// statusesRaw: the statuses of ids, one per id in their order, as the
// repeated field 1 of GetMembersOnlineStatusResponse or
// GetUsersOnlineStatusResponse.
func (s *groupSvc) statusesRaw(ids []string) []byte {
	ratio, gws, _, _ := s.d.cfg.get()
	var scratch [128]byte
	raw := make([]byte, 0, len(ids)*48)
	for _, id := range ids {
		raw = appendStatus(raw, scratch[:], ratio, gws, id)
	}
	return raw
}
