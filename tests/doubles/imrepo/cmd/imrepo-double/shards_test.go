package main

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "imtask/imrepo-double/gen/imrepov1"
)

// The indexed shard pages must answer exactly as the scan: same members,
// cursors, has_more and page count, for every shard, with and without an
// offset.
func TestShardIndexAnswersAsTheScan(t *testing.T) {
	d := &double{cfg: &dataConfig{onlineRatio: 0.3, gateways: 16, devicesMax: 2}, state: newDataState()}
	indexed := &groupSvc{d: d, index: &shardIndex{}}
	scanned := &groupSvc{d: d}
	ctx := context.Background()
	for _, c := range []struct {
		group  string
		shards uint32
		limit  int32
		offset int64
	}{
		{"g10000", 2, 200, 0}, {"g25000", 3, 200, 0}, {"g20000", 16, 7, 0},
		{"g12345-x", 4, 1000, 0}, {"g10000", 5, 100, 37}, {"g10000", 4, 2500, 0},
	} {
		total := 0
		for i := uint32(0); i < c.shards; i++ {
			req := &pb.GetGroupMembersRequest{GroupId: c.group, Limit: c.limit,
				ShardIndex: i, ShardCount: c.shards, Offset: c.offset}
			for pages := 0; ; pages++ {
				if pages > 100000 {
					t.Fatalf("%s shard %d/%d: the pages do not end", c.group, i, c.shards)
				}
				ra, errA := indexed.GetGroupMembers(ctx, req)
				rb, errB := scanned.GetGroupMembers(ctx, req)
				if errA != nil || errB != nil {
					t.Fatalf("%s shard %d/%d: errors %v / %v", c.group, i, c.shards, errA, errB)
				}
				a := decoded(t, ra, &pb.GetGroupMembersResponse{})
				b := decoded(t, rb, &pb.GetGroupMembersResponse{})
				if !proto.Equal(a, b) {
					t.Fatalf("%s shard %d/%d page %d (cursor %q): indexed %d members next %q more %v; scanned %d members next %q more %v",
						c.group, i, c.shards, pages, req.Cursor, len(a.Members), a.NextCursor, a.HasMore,
						len(b.Members), b.NextCursor, b.HasMore)
				}
				total += len(a.Members)
				if !a.HasMore {
					break
				}
				req.Cursor = a.NextCursor
			}
		}
		if want := int(groupSize(c.group)) - int(c.offset)*int(c.shards); c.offset == 0 && total != want {
			t.Fatalf("%s in %d shards: %d members paged, want %d", c.group, c.shards, total, want)
		}
	}
}
