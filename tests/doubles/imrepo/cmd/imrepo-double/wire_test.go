package main

import (
	"context"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "imtask/imrepo-double/gen/imrepov1"
)

// The structs the generated code would carry, the reference for wire.go.
func groupMember(gid string, base, k int64) *pb.GroupMember {
	return &pb.GroupMember{GroupId: gid, UserId: "u" + strconv.FormatInt(base+k, 10),
		Role: memberRole(k), JoinedAt: epochMs + k*1000}
}

func onlineStatus(ratio float64, gws int, uid string) *pb.OnlineStatus {
	h := fnvMore(fnv1a64(uid), "|online")
	st := &pb.OnlineStatus{UserId: uid, LastSeen: epochMs + int64(h%1_000_000_000)}
	if float64(h%1_000_000) < ratio*1_000_000 {
		st.IsOnline = true
		st.GatewayId = "gw-" + strconv.FormatUint((h/1_000_000)%uint64(gws)+1, 10)
	}
	return st
}

// decoded: m as a client reads it (marshalled, then unmarshalled).
func decoded[M proto.Message](t *testing.T, m M, into M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if err := proto.Unmarshal(b, into); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return into
}

// A page encoded by wire.go decodes to the members the structs would carry
// (group, user id, role, join time; the owner's and admins' roles included),
// with the response's own fields beside them.
func TestWireMembersDecodeAsStructs(t *testing.T) {
	d := &double{cfg: &dataConfig{onlineRatio: 0.3, gateways: 16, devicesMax: 2}, state: newDataState()}
	svc := &groupSvc{d: d, index: &shardIndex{}}
	for _, req := range []*pb.GetGroupMembersRequest{
		{GroupId: "g250", Limit: 200},
		{GroupId: "g20000", Limit: 200, ShardIndex: 3, ShardCount: 8},
		{GroupId: "g1", Limit: 10},
		{GroupId: "g0", Limit: 10},
	} {
		resp, err := svc.GetGroupMembers(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: %v", req.GroupId, err)
		}
		got := decoded(t, resp, &pb.GetGroupMembersResponse{})
		base := memberBase(req.GroupId)
		want := &pb.GetGroupMembersResponse{Total: resp.Total, HasMore: resp.HasMore,
			NextCursor: resp.NextCursor}
		for _, m := range got.Members {
			id, err := strconv.ParseInt(m.UserId[1:], 10, 64)
			if err != nil {
				t.Fatalf("%s: user id %q", req.GroupId, m.UserId)
			}
			want.Members = append(want.Members, groupMember(req.GroupId, base, id-base))
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%s: decoded %v, want %v", req.GroupId, got, want)
		}
		if n := int64(len(got.Members)); n != min(groupSize(req.GroupId), int64(req.Limit)) && req.ShardCount == 0 {
			t.Fatalf("%s: %d members on the first page", req.GroupId, n)
		}
	}
}

// A status batch encoded by wire.go decodes to the statuses the structs
// would carry, one per id in order, online ones with their gateway.
func TestWireStatusesDecodeAsStructs(t *testing.T) {
	d := &double{cfg: &dataConfig{onlineRatio: 0.5, gateways: 300, devicesMax: 2}, state: newDataState()}
	svc := &groupSvc{d: d}
	ids := []string{"u1", "u2", "x", "u123456789012"}
	for i := 0; i < 500; i++ {
		ids = append(ids, "u"+strconv.Itoa(1000+i))
	}
	resp, err := svc.GetMembersOnlineStatus(context.Background(), &pb.GetMembersOnlineStatusRequest{UserIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	got := decoded(t, resp, &pb.GetMembersOnlineStatusResponse{})
	want := &pb.GetMembersOnlineStatusResponse{}
	online := 0
	for _, id := range ids {
		st := onlineStatus(0.5, 300, id)
		if st.IsOnline {
			online++
		}
		want.Statuses = append(want.Statuses, st)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("decoded statuses differ from the structs'")
	}
	if online == 0 || online == len(ids) {
		t.Fatalf("%d of %d online: the test needs both", online, len(ids))
	}
	users, err := (&onlineSvc{g: svc}).GetUsersOnlineStatus(context.Background(), &pb.GetUsersOnlineStatusRequest{UserIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	if gotU := decoded(t, users, &pb.GetUsersOnlineStatusResponse{}); len(gotU.Statuses) != len(ids) ||
		!proto.Equal(gotU.Statuses[7], want.Statuses[7]) {
		t.Fatalf("GetUsersOnlineStatus: %d statuses", len(gotU.Statuses))
	}
}
