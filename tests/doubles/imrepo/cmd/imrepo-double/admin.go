// admin.go: the double's admin HTTP endpoint (JSON), for tests and demos:
//
//	GET  /healthz                   "ok"
//	GET  /info                      addresses, TLS CA file, etcd key, pid
//	GET  /stats[?tag=T]             calls by method (and by listener); with tag,
//	                                only calls that carried x-imrepo-tag: T
//	POST /stats/reset
//	GET|POST /faults[?latency_ms=N&unavailable=0.25]   global faults
//	POST /faults/reset
//	POST /config?online_ratio=&gateways=&devices_max=&messages=
//	POST /activity                  seed message activity (activity.go)
//	GET|POST /messages[?count=N&reset=1]  message history size, forget deletions (messages.go)
//	POST /spawn                     a new gRPC listener on a free port -> {"addr"}
//	POST /down?addr=A[&graceful=1][&for_ms=N]   stop listener A (and restart after N ms)
//	POST /up?addr=A                 start it again on the same port
//	POST /close?addr=A              stop and forget a spawned listener
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"time"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (d *double) adminMux(info map[string]any) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/info", func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		ls := map[string]bool{}
		for a, l := range d.listeners {
			ls[a] = l.up
		}
		d.mu.Unlock()
		out := map[string]any{"listeners": ls}
		for k, v := range info {
			out[k] = v
		}
		writeJSON(w, 200, out)
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, d.counters.snapshot(r.URL.Query().Get("tag")))
	})
	mux.HandleFunc("/stats/reset", func(w http.ResponseWriter, _ *http.Request) {
		d.counters.reset()
		writeJSON(w, 200, map[string]bool{"ok": true})
	})
	faultsOut := func(w http.ResponseWriter) {
		d.faults.mu.Lock()
		defer d.faults.mu.Unlock()
		writeJSON(w, 200, map[string]any{"latency_ms": d.faults.latency.Milliseconds(),
			"unavailable": d.faults.unavailable})
	}
	mux.HandleFunc("/faults", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		d.faults.mu.Lock()
		if v := q.Get("latency_ms"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 600_000 {
				d.faults.mu.Unlock()
				fail(w, 400, "latency_ms: want 0..600000")
				return
			}
			d.faults.latency = time.Duration(n) * time.Millisecond
		}
		if v := q.Get("unavailable"); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				d.faults.mu.Unlock()
				fail(w, 400, "unavailable: want 0..1")
				return
			}
			d.faults.unavailable = f
		}
		d.faults.mu.Unlock()
		faultsOut(w)
	})
	mux.HandleFunc("/faults/reset", func(w http.ResponseWriter, _ *http.Request) {
		d.faults.mu.Lock()
		d.faults.latency, d.faults.unavailable = 0, 0
		d.faults.failKeys = map[string]int64{}
		d.faults.mu.Unlock()
		faultsOut(w)
	})
	mux.HandleFunc("/config", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c := d.cfg
		c.mu.Lock()
		defer c.mu.Unlock()
		if v := q.Get("online_ratio"); v != "" {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				c.onlineRatio = f
			}
		}
		if v := q.Get("gateways"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 10000 {
				c.gateways = n
			}
		}
		if v := q.Get("devices_max"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 100 {
				c.devicesMax = n
			}
		}
		if v := q.Get("messages"); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				c.messages = n
			}
		}
		writeJSON(w, 200, map[string]any{"online_ratio": c.onlineRatio, "gateways": c.gateways,
			"devices_max": c.devicesMax, "messages": c.messages})
	})
	mux.HandleFunc("/activity", activityHandler) // activity.go
	mux.HandleFunc("/messages", d.messagesAdmin) // messages.go
	mux.HandleFunc("/spawn", func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.spawned >= 64 {
			fail(w, 429, "64 spawned listeners already")
			return
		}
		l := &listener{addr: "127.0.0.1:0", spawn: true}
		if err := d.start(l); err != nil {
			fail(w, 500, "%v", err)
			return
		}
		d.spawned++
		writeJSON(w, 200, map[string]string{"addr": l.addr})
	})
	find := func(w http.ResponseWriter, r *http.Request) *listener {
		l := d.listeners[r.URL.Query().Get("addr")]
		if l == nil {
			fail(w, 404, "no listener %q", r.URL.Query().Get("addr"))
		}
		return l
	}
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		l := find(w, r)
		if l == nil {
			return
		}
		if l.timer != nil {
			l.timer.Stop()
			l.timer = nil
		}
		d.stop(l, r.URL.Query().Get("graceful") == "1")
		if ms, _ := strconv.Atoi(r.URL.Query().Get("for_ms")); ms > 0 {
			l.timer = time.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
				d.mu.Lock()
				defer d.mu.Unlock()
				if err := d.start(l); err != nil {
					log.Printf("imrepo-double: %s stays down: restarting it: %v", l.addr, err)
				}
			})
		}
		writeJSON(w, 200, map[string]any{"addr": l.addr, "up": false})
	})
	mux.HandleFunc("/up", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		l := find(w, r)
		if l == nil {
			return
		}
		if err := d.start(l); err != nil {
			fail(w, 500, "%v", err)
			return
		}
		writeJSON(w, 200, map[string]any{"addr": l.addr, "up": true})
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		l := find(w, r)
		if l == nil {
			return
		}
		if !l.spawn {
			fail(w, 400, "only spawned listeners can be closed")
			return
		}
		if l.timer != nil {
			l.timer.Stop()
		}
		d.stop(l, false)
		delete(d.listeners, l.addr)
		d.spawned--
		writeJSON(w, 200, map[string]any{"addr": l.addr, "closed": true})
	})
	return mux
}
