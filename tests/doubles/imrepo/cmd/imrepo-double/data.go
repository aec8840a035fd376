// data.go: the deterministic synthetic data set of the im-repo double
// (groups of any size, online status, devices, messages), generated from
// hashes of the ids, never stored; only deletions and audit marks are kept.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"

	pb "imtask/imrepo-double/gen/imrepov1"
)

const fnvOffset = uint64(14695981039346656037)

// FNV-1a 64: the shard hash of the contract (shard = fnv1a64(user_id) % n).
func fnv1a64(s string) uint64 {
	return fnvMore(fnvOffset, s)
}

// fnvMore continues an FNV-1a 64 hash over s: fnvMore(fnv1a64(a), b) ==
// fnv1a64(a + b), without building a + b; s may be bytes, not to allocate.
func fnvMore[T string | []byte](h uint64, s T) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

const (
	maxGroupSize  = 100_000_000
	maxPageSize   = 10_000
	maxBatch      = 10_000
	maxKeptWrites = 1_000_000            // deleted ids, removed tokens, audit marks
	epochMs       = int64(1735689600000) // 2025-01-01T00:00:00Z
	messageStepMs = int64(60_000)
	maxBigContent = 16 << 20
)

// Tunables; changed at start (flags) or through the admin endpoint.
type dataConfig struct {
	mu          sync.RWMutex
	onlineRatio float64
	gateways    int
	devicesMax  int
	messages    int64
}

func (c *dataConfig) get() (float64, int, int, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.onlineRatio, c.gateways, c.devicesMax, c.messages
}

// Mutable state kept by the double: what write calls changed.
type dataState struct {
	mu            sync.Mutex
	deleted       map[int64]bool
	removedTokens map[string]bool
	audit         map[int64]pb.AuditStatus
}

func newDataState() *dataState {
	return &dataState{deleted: map[int64]bool{}, removedTokens: map[string]bool{},
		audit: map[int64]pb.AuditStatus{}}
}

// groupSize: "g<N>" or "g<N>-<anything>" has N members; any other id has
// 1..500 members chosen by its hash.
func groupSize(gid string) int64 {
	if strings.HasPrefix(gid, "g") {
		rest := gid[1:]
		if i := strings.IndexByte(rest, '-'); i >= 0 {
			rest = rest[:i]
		}
		if n, err := strconv.ParseInt(rest, 10, 64); err == nil && n >= 0 {
			if n > maxGroupSize {
				n = maxGroupSize
			}
			return n
		}
	}
	return int64(1 + fnv1a64(gid)%500)
}

// The members of a group are users "u<base+k>", k = 0 .. size-1.
func memberBase(gid string) int64 {
	return int64(fnvMore(fnv1a64("members|"), gid) % 1_000_000_000)
}

// memberHash is fnv1a64 of the user id of member k, without allocating it
// (shards.go hashes every member of a group once per shard count).
func memberHash(base, k int64) uint64 {
	var buf [24]byte
	return fnvMore(fnvOffset, strconv.AppendInt(append(buf[:0], 'u'), base+k, 10))
}

func memberRole(k int64) pb.GroupRole {
	switch {
	case k == 0:
		return pb.GroupRole_GROUP_ROLE_OWNER
	case k <= 3:
		return pb.GroupRole_GROUP_ROLE_ADMIN
	default:
		return pb.GroupRole_GROUP_ROLE_MEMBER
	}
}

func encodeCursor(kind string, k int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + strconv.FormatInt(k, 10)))
}

func decodeCursor(kind, c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), kind+":") {
		return 0, fmt.Errorf("bad cursor")
	}
	k, err := strconv.ParseInt(string(b[len(kind)+1:]), 10, 64)
	if err != nil || k < 0 {
		return 0, fmt.Errorf("bad cursor")
	}
	return k, nil
}

var locales = []string{"en-US", "zh-CN", "de-DE", "ja-JP", "fr-FR"}

func userDevices(cfg *dataConfig, st *dataState, uid string) []*pb.Device {
	_, _, dmax, _ := cfg.get()
	h := fnv1a64(uid + "|devices")
	n := int(h % uint64(dmax+1))
	out := make([]*pb.Device, 0, n)
	for j := 0; j < n; j++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%d", uid, j)))
		d := &pb.Device{UserId: uid, DeviceId: fmt.Sprintf("%s-d%d", uid, j),
			Locale: locales[(h>>20+uint64(j))%uint64(len(locales))]}
		if (h>>8+uint64(j))%2 == 0 {
			d.Platform = pb.PushPlatform_PUSH_PLATFORM_APNS
			d.Token = hex.EncodeToString(sum[:])
			d.AppId = "com.gochat.im"
			d.Sandbox = (h>>16)%5 == 0
		} else {
			d.Platform = pb.PushPlatform_PUSH_PLATFORM_FCM
			d.Token = "fcm:" + base64.RawURLEncoding.EncodeToString(sum[:])
			d.AppId = "gochat-im"
		}
		st.mu.Lock()
		removed := st.removedTokens[d.Token]
		st.mu.Unlock()
		if !removed {
			out = append(out, d)
		}
	}
	return out
}

// parseMessageID: "m<i>" or "<i>", optionally "-big<N>" for an N-byte content.
func parseMessageID(id string) (int64, int, bool) {
	s := strings.TrimPrefix(id, "m")
	big := 0
	if i := strings.Index(s, "-big"); i >= 0 {
		n, err := strconv.Atoi(s[i+4:])
		if err != nil || n < 0 || n > maxBigContent {
			return 0, 0, false
		}
		big, s = n, s[:i]
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || i < 0 {
		return 0, 0, false
	}
	return i, big, true
}

func message(st *dataState, i int64, big int) *pb.Message {
	h := fnv1a64("msg|" + strconv.FormatInt(i, 10))
	created := epochMs + i*messageStepMs
	m := &pb.Message{Id: "m" + strconv.FormatInt(i, 10),
		ConversationId: fmt.Sprintf("group:g%d", h%1000),
		SenderId:       "u" + strconv.FormatUint(h%100_000, 10),
		MessageType:    1,
		Content:        fmt.Sprintf("message %d", i),
		SeqId:          i + 1,
		CreatedAt:      created,
		UpdatedAt:      created,
	}
	if big > 0 {
		m.Content = strings.Repeat("x", big)
	}
	st.mu.Lock()
	m.Deleted = st.deleted[i]
	m.AuditStatus = st.audit[i]
	st.mu.Unlock()
	return m
}
