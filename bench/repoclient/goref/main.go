// main.go: the reference for bench/repoclient: a grpc-go client running the
// same closed-loop workload as repo_bench (concurrency calls of
// GetGroupMembers always in flight on one grpc.ClientConn, as grpc-go does
// by default), printing the same line.
//
//	goref ADDR [concurrency=64] [seconds=10] [group=g5000] [limit=200]
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "imtask/imrepo-double/gen/imrepov1"
)

func arg(i int, def string) string {
	if len(os.Args) > i {
		return os.Args[i]
	}
	return def
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goref ADDR [concurrency] [seconds] [group] [limit]")
		os.Exit(2)
	}
	conc, _ := strconv.Atoi(arg(2, "64"))
	secs, _ := strconv.Atoi(arg(3, "10"))
	group := arg(4, "g5000")
	limit, _ := strconv.Atoi(arg(5, "200"))
	cc, err := grpc.NewClient(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer cc.Close()
	cl := pb.NewGroupServiceClient(cc)
	req := &pb.GetGroupMembersRequest{GroupId: group, Limit: int32(limit)}
	ctx := context.Background()
	if _, err := cl.GetGroupMembers(ctx, req); err != nil { // warm-up
		fmt.Fprintln(os.Stderr, "warm-up call:", err)
		os.Exit(1)
	}
	start := time.Now()
	end := start.Add(time.Duration(secs) * time.Second)
	var errors atomic.Int64
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for time.Now().Before(end) {
				t0 := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				r, err := cl.GetGroupMembers(cctx, req)
				cancel()
				if err != nil || len(r.Members) != limit {
					errors.Add(1)
					continue
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	var p50, p99 float64
	if n := len(all); n > 0 {
		p50 = float64(all[n/2].Microseconds()) / 1000
		p99 = float64(all[n*99/100].Microseconds()) / 1000
	}
	fmt.Printf("client=grpc-go(reference) concurrency=%d seconds=%.1f calls=%d errors=%d "+
		"calls_per_s=%.0f p50_ms=%.3f p99_ms=%.3f conns=1\n",
		conc, took, len(all), errors.Load(), float64(len(all))/took, p50, p99)
	if errors.Load() > 0 {
		os.Exit(1)
	}
}
