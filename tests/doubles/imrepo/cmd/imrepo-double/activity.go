// activity.go: message activity seeded by tests for GetActivityStats (the
// report job's source), on top of the synthetic history:
//
//	POST /activity   body {"events":[{"ts":ms,"message_type":1,
//	                 "sender_id":"u1","conversation_id":"group:g1",
//	                 "new_user":false}, ...]}  -> {"kept": n}
//
// A test seeds a time range of its own (e.g. a random hour years ahead, where
// the synthetic history has nothing), so parallel tests and the demo do not
// see each other's figures. Kept in memory, bounded to maxSeededActivity.
package main

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"

	pb "imtask/imrepo-double/gen/imrepov1"
)

const (
	maxSeededActivity = 1_000_000
	maxActivityBody   = 64 << 20
	maxStatsBuckets   = 1000
)

type activityEvent struct {
	Ts             int64  `json:"ts"`
	MessageType    int32  `json:"message_type"`
	SenderID       string `json:"sender_id"`
	ConversationID string `json:"conversation_id"`
	NewUser        bool   `json:"new_user"`
}

var seeded struct {
	mu     sync.Mutex
	events []activityEvent
}

func activityHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		fail(w, 405, "POST a JSON body {\"events\":[...]}")
		return
	}
	var body struct {
		Events []activityEvent `json:"events"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActivityBody))
	if err := dec.Decode(&body); err != nil {
		fail(w, 400, "activity: %v", err)
		return
	}
	seeded.mu.Lock()
	defer seeded.mu.Unlock()
	if len(seeded.events)+len(body.Events) > maxSeededActivity {
		fail(w, 429, "activity: more than %d seeded events", maxSeededActivity)
		return
	}
	seeded.events = append(seeded.events, body.Events...)
	writeJSON(w, 200, map[string]int{"kept": len(body.Events)})
}

// activityStats: the synthetic history (one message a minute of type 1,
// counted with idx) plus the seeded events, over [from, to).
func activityStats(r *pb.GetActivityStatsRequest, idx func(int64) int64) (*pb.GetActivityStatsResponse, bool) {
	bucket := r.BucketMs
	if bucket <= 0 {
		bucket = 3_600_000
	}
	nb := (r.To - r.From + bucket - 1) / bucket
	if nb > maxStatsBuckets {
		return nil, false
	}
	n := idx(r.To) - idx(r.From)
	resp := &pb.GetActivityStatsResponse{Messages: n}
	if n > 0 {
		resp.ActiveUsers = min(n/3+1, 100_000)
		resp.ActiveGroups = min(n, 1000)
		resp.NewUsers = n / 50
	}
	byType := map[int32]int64{}
	if n > 0 {
		byType[1] = n
	}
	for b := int64(0); b < nb; b++ {
		s := r.From + b*bucket
		e := min(s+bucket, r.To)
		resp.ByBucket = append(resp.ByBucket, &pb.ActivityBucket{Start: s, Messages: idx(e) - idx(s)})
	}
	users, groups := map[string]bool{}, map[string]bool{}
	seeded.mu.Lock()
	for _, ev := range seeded.events {
		if ev.Ts < r.From || ev.Ts >= r.To {
			continue
		}
		resp.Messages++
		byType[ev.MessageType]++
		resp.ByBucket[(ev.Ts-r.From)/bucket].Messages++
		if ev.SenderID != "" {
			users[ev.SenderID] = true
		}
		if len(ev.ConversationID) > 6 && ev.ConversationID[:6] == "group:" {
			groups[ev.ConversationID] = true
		}
		if ev.NewUser {
			resp.NewUsers++
		}
	}
	seeded.mu.Unlock()
	resp.ActiveUsers += int64(len(users))
	resp.ActiveGroups += int64(len(groups))
	types := make([]int32, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	for _, t := range types {
		resp.ByType = append(resp.ByType, &pb.MessageTypeCount{MessageType: t, Messages: byType[t]})
	}
	return resp, true
}
