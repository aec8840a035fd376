// messages.go: admin of the double's message history, for the archive tests
// and benchmark (docs/archive.md):
//
//	GET  /messages                  {"messages": N, "deleted": D}
//	POST /messages?count=N&reset=1  set the history to N messages (m0 .. m<N-1>,
//	                                one a minute from 2025-01-01) and/or forget
//	                                every deletion (reset=1)
package main

import (
	"net/http"
	"strconv"
)

func (d *double) messagesAdmin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		if v := q.Get("count"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n > 1_000_000_000 {
				fail(w, 400, "count: expected an integer in [0, 1e9], got %q", v)
				return
			}
			d.cfg.mu.Lock()
			d.cfg.messages = n
			d.cfg.mu.Unlock()
		}
		if q.Get("reset") == "1" {
			d.state.mu.Lock()
			d.state.deleted = map[int64]bool{}
			d.state.mu.Unlock()
		}
	} else if r.Method != http.MethodGet {
		fail(w, 405, "GET or POST")
		return
	}
	_, _, _, total := d.cfg.get()
	d.state.mu.Lock()
	deleted := len(d.state.deleted)
	d.state.mu.Unlock()
	writeJSON(w, 200, map[string]any{"messages": total, "deleted": deleted})
}
