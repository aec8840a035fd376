// shards.go: the double's shard index. The contract asks im-repo for "the
// members with fnv1a64(user_id) % n == i" (docs/imrepo.md); a real im-repo
// answers that from an indexed shard key, reading only the shard's rows. The
// double's members are generated, so without an index every page of a shard
// hashes the whole group up to the page's last member (n times the work of
// an unsharded page). The index lists, once per (group, shard count), the
// member numbers k of each shard in order; pages then read their slice of it.
// The answers are exactly those of the scan (same members, cursors and
// has_more), only cheaper.
package main

import (
	"sort"
	"sync"
)

const (
	indexMinMembers = 10_000    // smaller groups are scanned
	indexMaxMembers = 4_000_000 // larger ones too: 4 bytes per member per entry
	indexEntries    = 4         // (group, shard count) pairs kept, most recent
)

type shardIndexKey struct {
	group  string
	shards uint64
}

type shardIndexEntry struct {
	key  shardIndexKey
	once sync.Once
	ks   [][]int32 // per shard: its member numbers k, ascending
}

type shardIndex struct {
	mu      sync.Mutex
	entries []*shardIndexEntry // least recently used first
}

// get returns the member numbers of shard i of n of a group of size
// members with id base, or nil when the group is scanned instead.
func (x *shardIndex) get(group string, base, members int64, shards, i uint64) []int32 {
	if x == nil || shards < 2 || members < indexMinMembers || members > indexMaxMembers {
		return nil
	}
	key := shardIndexKey{group, shards}
	x.mu.Lock()
	var e *shardIndexEntry
	for j, c := range x.entries {
		if c.key == key {
			e = c
			x.entries = append(x.entries[:j], x.entries[j+1:]...)
			break
		}
	}
	if e == nil {
		e = &shardIndexEntry{key: key}
		if len(x.entries) >= indexEntries {
			x.entries = x.entries[1:]
		}
	}
	x.entries = append(x.entries, e)
	x.mu.Unlock()
	e.once.Do(func() { // other callers of this pair wait for it
		e.ks = make([][]int32, shards)
		for s := range e.ks {
			e.ks[s] = make([]int32, 0, members/int64(shards)+members/int64(shards)/8+16)
		}
		for k := int64(0); k < members; k++ {
			s := memberHash(base, k) % shards
			e.ks[s] = append(e.ks[s], int32(k))
		}
	})
	return e.ks[i]
}

// indexPage cuts a page of at most limit members out of a shard's member
// numbers, from the first k >= from: the members taken and the next k to
// look at (members when the shard is exhausted), where the scan would stop.
func indexPage(ks []int32, from int64, limit int, members int64) ([]int32, int64) {
	pos := sort.Search(len(ks), func(j int) bool { return int64(ks[j]) >= from })
	end := pos + limit
	if end > len(ks) {
		end = len(ks)
	}
	page := ks[pos:end]
	if len(page) < limit { // the scan ran to the group's end
		return page, members
	}
	return page, int64(page[len(page)-1]) + 1 // it stopped after the last match
}
