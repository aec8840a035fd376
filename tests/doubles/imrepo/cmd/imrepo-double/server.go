// server.go: the gRPC services of the im-repo contract over the synthetic
// data, and the interceptor that counts calls and injects faults.
package main

import (
	"context"
	"math/rand"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "imtask/imrepo-double/gen/imrepov1"
)

// ------------------------------------------------------------ counters

type methodCount struct {
	Calls int64 `json:"calls"`
	Items int64 `json:"items"` // user ids, tokens or message ids in the batch
}

type counters struct {
	mu         sync.Mutex
	total      int64
	byMethod   map[string]*methodCount
	byListener map[string]int64
	byTag      map[string]map[string]*methodCount
}

func newCounters() *counters {
	c := &counters{}
	c.reset()
	return c
}

func (c *counters) reset() {
	c.mu.Lock()
	c.total = 0
	c.byMethod = map[string]*methodCount{}
	c.byListener = map[string]int64{}
	c.byTag = map[string]map[string]*methodCount{}
	c.mu.Unlock()
}

const maxTags = 10_000

func (c *counters) add(listener, method, tag string, items int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	m := c.byMethod[method]
	if m == nil {
		m = &methodCount{}
		c.byMethod[method] = m
	}
	m.Calls++
	m.Items += int64(items)
	c.byListener[listener]++
	if tag == "" {
		return
	}
	t := c.byTag[tag]
	if t == nil {
		if len(c.byTag) >= maxTags {
			return
		}
		t = map[string]*methodCount{}
		c.byTag[tag] = t
	}
	tm := t[method]
	if tm == nil {
		tm = &methodCount{}
		t[method] = tm
	}
	tm.Calls++
	tm.Items += int64(items)
}

func (c *counters) snapshot(tag string) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	copyM := func(src map[string]*methodCount) map[string]methodCount {
		out := map[string]methodCount{}
		for k, v := range src {
			out[k] = *v
		}
		return out
	}
	out := map[string]any{"total": c.total, "by_listener": c.byListener}
	if tag != "" {
		out["methods"] = copyM(c.byTag[tag])
	} else {
		out["methods"] = copyM(c.byMethod)
	}
	return out
}

// ------------------------------------------------------------- faults

type faults struct {
	mu          sync.Mutex
	latency     time.Duration
	unavailable float64 // share of calls failed with UNAVAILABLE
	failKeys    map[string]int64
	rng         *rand.Rand
}

func newFaults() *faults {
	return &faults{failKeys: map[string]int64{}, rng: rand.New(rand.NewSource(1))}
}

func mdInt(md metadata.MD, key string) int64 {
	if v := md.Get(key); len(v) > 0 {
		n, _ := strconv.ParseInt(v[0], 10, 64)
		return n
	}
	return 0
}

func mdStr(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// apply: global latency and UNAVAILABLE share, then per-call metadata:
//
//	x-imrepo-delay-ms: N                 sleep N ms (cut short by the deadline)
//	x-imrepo-fail-first: N + x-imrepo-fail-key: K
//	                                     the first N calls with key K fail UNAVAILABLE
//	x-imrepo-fail-code: C [+ x-imrepo-fail-message: M]
//	                                     fail with gRPC code C
func (f *faults) apply(ctx context.Context, md metadata.MD) error {
	f.mu.Lock()
	lat, share := f.latency, f.unavailable
	fail := share > 0 && f.rng.Float64() < share
	f.mu.Unlock()
	if d := time.Duration(mdInt(md, "x-imrepo-delay-ms")) * time.Millisecond; d > 0 {
		lat += d
	}
	if lat > 0 {
		select {
		case <-time.After(lat):
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if fail {
		return status.Error(codes.Unavailable, "imrepo-double: injected UNAVAILABLE (share)")
	}
	if n := mdInt(md, "x-imrepo-fail-first"); n > 0 {
		key := mdStr(md, "x-imrepo-fail-key")
		f.mu.Lock()
		seen := f.failKeys[key]
		if len(f.failKeys) < maxTags || seen > 0 {
			f.failKeys[key] = seen + 1
		}
		f.mu.Unlock()
		if seen < n {
			return status.Errorf(codes.Unavailable, "imrepo-double: injected UNAVAILABLE %d/%d", seen+1, n)
		}
	}
	if c := mdInt(md, "x-imrepo-fail-code"); c > 0 {
		msg := mdStr(md, "x-imrepo-fail-message")
		if msg == "" {
			msg = "imrepo-double: injected failure"
		}
		return status.Error(codes.Code(c), msg)
	}
	return nil
}

func batchItems(req any) int {
	switch r := req.(type) {
	case *pb.GetMembersOnlineStatusRequest:
		return len(r.UserIds)
	case *pb.GetUsersOnlineStatusRequest:
		return len(r.UserIds)
	case *pb.GetUserDevicesRequest:
		return len(r.UserIds)
	case *pb.RemoveInvalidTokensRequest:
		return len(r.Tokens)
	case *pb.DeleteMessagesRequest:
		return len(r.MessageIds)
	}
	return 1
}

func (d *double) interceptor(listener string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		d.counters.add(listener, info.FullMethod, mdStr(md, "x-imrepo-tag"), batchItems(req))
		if err := d.faults.apply(ctx, md); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// ------------------------------------------------------------ services

type groupSvc struct {
	pb.UnimplementedGroupServiceServer
	d     *double
	index *shardIndex // nil: every shard page scans the group
}

func (s *groupSvc) GetGroupMembers(_ context.Context, r *pb.GetGroupMembersRequest) (*pb.GetGroupMembersResponse, error) {
	if r.GroupId == "" {
		return nil, status.Error(codes.InvalidArgument, "group_id is required")
	}
	n := groupSize(r.GroupId)
	limit := int(r.Limit)
	if limit <= 0 {
		limit = 100
	}
	if limit > maxPageSize {
		limit = maxPageSize
	}
	shards := uint64(r.ShardCount)
	if shards == 0 {
		shards = 1
	}
	if uint64(r.ShardIndex) >= shards {
		return nil, status.Errorf(codes.InvalidArgument, "shard_index %d not below shard_count %d", r.ShardIndex, shards)
	}
	base := memberBase(r.GroupId)
	match := func(k int64) bool {
		if r.RoleFilter != pb.GroupRole_GROUP_ROLE_UNSPECIFIED && memberRole(k) != r.RoleFilter {
			return false
		}
		return shards == 1 || memberHash(base, k)%shards == uint64(r.ShardIndex)
	}
	k, err := decodeCursor("members", r.Cursor)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "bad cursor")
	}
	if r.Cursor == "" && r.Offset > 0 { // origin offset paging: skip matches
		for skipped := int64(0); k < n && skipped < r.Offset; k++ {
			if match(k) {
				skipped++
			}
		}
	}
	resp := &pb.GetGroupMembersResponse{Total: n}
	var scratch [128]byte
	raw := make([]byte, 0, limit*48) // the members, as wire bytes (wire.go)
	var ks []int32
	if r.RoleFilter == pb.GroupRole_GROUP_ROLE_UNSPECIFIED {
		ks = s.index.get(r.GroupId, base, n, shards, uint64(r.ShardIndex))
	}
	if ks != nil { // the shard's members from the index; k is past an offset's skipped ones
		var page []int32
		page, k = indexPage(ks, k, limit, n)
		for _, pk := range page {
			raw = appendMember(raw, scratch[:], r.GroupId, base, int64(pk))
		}
	} else {
		for taken := 0; k < n && taken < limit; k++ {
			if !match(k) {
				continue
			}
			raw = appendMember(raw, scratch[:], r.GroupId, base, k)
			taken++
		}
	}
	if k < n {
		resp.HasMore = true
		resp.NextCursor = encodeCursor("members", k)
	}
	return withRaw(resp, raw), nil
}

func (s *groupSvc) GetGroupMemberCount(_ context.Context, r *pb.GetGroupMemberCountRequest) (*pb.GetGroupMemberCountResponse, error) {
	if r.GroupId == "" {
		return nil, status.Error(codes.InvalidArgument, "group_id is required")
	}
	return &pb.GetGroupMemberCountResponse{Total: groupSize(r.GroupId)}, nil
}

// statuses: the online status of each id, in their order, as the wire
// bytes of the responses' repeated field 1 (wire.go).
func (s *groupSvc) statuses(ids []string) ([]byte, error) {
	if len(ids) > maxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d user ids over %d", len(ids), maxBatch)
	}
	return s.statusesRaw(ids), nil
}

func (s *groupSvc) GetMembersOnlineStatus(_ context.Context, r *pb.GetMembersOnlineStatusRequest) (*pb.GetMembersOnlineStatusResponse, error) {
	st, err := s.statuses(r.UserIds)
	if err != nil {
		return nil, err
	}
	return withRaw(&pb.GetMembersOnlineStatusResponse{}, st), nil
}

type onlineSvc struct {
	pb.UnimplementedOnlineStatusServiceServer
	g *groupSvc
}

func (s *onlineSvc) GetUsersOnlineStatus(_ context.Context, r *pb.GetUsersOnlineStatusRequest) (*pb.GetUsersOnlineStatusResponse, error) {
	st, err := s.g.statuses(r.UserIds)
	if err != nil {
		return nil, err
	}
	return withRaw(&pb.GetUsersOnlineStatusResponse{}, st), nil
}

type deviceSvc struct {
	pb.UnimplementedDeviceServiceServer
	d *double
}

func (s *deviceSvc) GetUserDevices(_ context.Context, r *pb.GetUserDevicesRequest) (*pb.GetUserDevicesResponse, error) {
	if len(r.UserIds) > maxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d user ids over %d", len(r.UserIds), maxBatch)
	}
	resp := &pb.GetUserDevicesResponse{}
	for _, id := range r.UserIds {
		resp.Devices = append(resp.Devices, userDevices(s.d.cfg, s.d.state, id)...)
	}
	return resp, nil
}

func (s *deviceSvc) RemoveInvalidTokens(_ context.Context, r *pb.RemoveInvalidTokensRequest) (*pb.RemoveInvalidTokensResponse, error) {
	if len(r.Tokens) > maxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d tokens over %d", len(r.Tokens), maxBatch)
	}
	st := s.d.state
	st.mu.Lock()
	defer st.mu.Unlock()
	var removed int64
	for _, t := range r.Tokens {
		if t.Token == "" || st.removedTokens[t.Token] {
			continue
		}
		if len(st.removedTokens) >= maxKeptWrites {
			return nil, status.Error(codes.ResourceExhausted, "imrepo-double: too many removed tokens kept")
		}
		st.removedTokens[t.Token] = true
		removed++
	}
	return &pb.RemoveInvalidTokensResponse{Removed: removed}, nil
}

type messageSvc struct {
	pb.UnimplementedMessageServiceServer
	d *double
}

func (s *messageSvc) GetMessage(_ context.Context, r *pb.GetMessageRequest) (*pb.GetMessageResponse, error) {
	i, big, ok := parseMessageID(r.MessageId)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "message %q not found", r.MessageId)
	}
	return &pb.GetMessageResponse{Message: message(s.d.state, i, big)}, nil
}

func (s *messageSvc) ListMessagesBefore(_ context.Context, r *pb.ListMessagesBeforeRequest) (*pb.ListMessagesBeforeResponse, error) {
	_, _, _, total := s.d.cfg.get()
	limit := int64(r.Limit)
	if limit <= 0 {
		limit = 100
	}
	if limit > maxPageSize {
		limit = maxPageSize
	}
	k, err := decodeCursor("messages", r.Cursor)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "bad cursor")
	}
	// Messages with created_at < before: i < end.
	end := int64(0)
	if r.Before > epochMs {
		end = (r.Before - epochMs + messageStepMs - 1) / messageStepMs
	}
	if end > total {
		end = total
	}
	resp := &pb.ListMessagesBeforeResponse{}
	for ; k < end && int64(len(resp.Messages)) < limit; k++ {
		m := message(s.d.state, k, 0)
		if m.Deleted {
			continue
		}
		resp.Messages = append(resp.Messages, m)
	}
	if k < end {
		resp.HasMore = true
		resp.NextCursor = encodeCursor("messages", k)
	}
	return resp, nil
}

func (s *messageSvc) DeleteMessages(_ context.Context, r *pb.DeleteMessagesRequest) (*pb.DeleteMessagesResponse, error) {
	if len(r.MessageIds) > maxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d ids over %d", len(r.MessageIds), maxBatch)
	}
	st := s.d.state
	st.mu.Lock()
	defer st.mu.Unlock()
	var n int64
	for _, id := range r.MessageIds {
		i, _, ok := parseMessageID(id)
		if !ok || st.deleted[i] {
			continue
		}
		if len(st.deleted) >= maxKeptWrites {
			return nil, status.Error(codes.ResourceExhausted, "imrepo-double: too many deletions kept")
		}
		st.deleted[i] = true
		n++
	}
	return &pb.DeleteMessagesResponse{Deleted: n}, nil
}

func (s *messageSvc) SetMessageAuditStatus(_ context.Context, r *pb.SetMessageAuditStatusRequest) (*pb.SetMessageAuditStatusResponse, error) {
	i, _, ok := parseMessageID(r.MessageId)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "message %q not found", r.MessageId)
	}
	st := s.d.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, seen := st.audit[i]; !seen && len(st.audit) >= maxKeptWrites {
		return nil, status.Error(codes.ResourceExhausted, "imrepo-double: too many audit marks kept")
	}
	st.audit[i] = r.Status
	return &pb.SetMessageAuditStatusResponse{}, nil
}

func (s *messageSvc) GetActivityStats(_ context.Context, r *pb.GetActivityStatsRequest) (*pb.GetActivityStatsResponse, error) {
	if r.To < r.From {
		return nil, status.Error(codes.InvalidArgument, "to before from")
	}
	_, _, _, total := s.d.cfg.get()
	idx := func(t int64) int64 { // first message index with created_at >= t
		if t <= epochMs {
			return 0
		}
		i := (t - epochMs + messageStepMs - 1) / messageStepMs
		if i > total {
			i = total
		}
		return i
	}
	resp, ok := activityStats(r, idx) // activity.go: synthetic + seeded
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "more than %d buckets", maxStatsBuckets)
	}
	return resp, nil
}

func registerServices(gs *grpc.Server, d *double) {
	g := &groupSvc{d: d, index: &shardIndex{}}
	pb.RegisterGroupServiceServer(gs, g)
	pb.RegisterOnlineStatusServiceServer(gs, &onlineSvc{g: g})
	pb.RegisterDeviceServiceServer(gs, &deviceSvc{d: d})
	pb.RegisterMessageServiceServer(gs, &messageSvc{d: d})
}
