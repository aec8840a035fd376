// etcd.go: registers the double in etcd through the v3 JSON gateway: a lease
// with a TTL, the key <prefix><instance> bound to it, keepalives at TTL/3;
// re-registers after etcd restarts or the lease is lost; revokes on exit.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"time"
)

type etcdReg struct {
	endpoint, key, value string
	ttl                  int
	lease                string
}

var etcdHTTP = &http.Client{Timeout: 3 * time.Second}

func (e *etcdReg) post(path string, body any, out any) error {
	b, _ := json.Marshal(body)
	resp, err := etcdHTTP.Post(e.endpoint+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (e *etcdReg) register() error {
	var grant struct {
		ID    string `json:"ID"`
		Error string `json:"error"`
	}
	if err := e.post("/v3/lease/grant", map[string]any{"TTL": e.ttl}, &grant); err != nil {
		return err
	}
	if grant.ID == "" {
		return fmt.Errorf("lease grant: %s", grant.Error)
	}
	var put map[string]any
	if err := e.post("/v3/kv/put", map[string]any{"key": b64(e.key), "value": b64(e.value),
		"lease": grant.ID}, &put); err != nil {
		return err
	}
	e.lease = grant.ID
	log.Printf("etcd: registered %s -> %s (lease %s, ttl %ds)", e.key, e.value, e.lease, e.ttl)
	return nil
}

// keepalive returns false when the lease is gone (TTL 0 or an error).
func (e *etcdReg) keepalive() bool {
	var out struct {
		Result struct {
			TTL string `json:"TTL"`
		} `json:"result"`
	}
	if err := e.post("/v3/lease/keepalive", map[string]any{"ID": e.lease}, &out); err != nil {
		return false
	}
	return out.Result.TTL != "" && out.Result.TTL != "0"
}

func (e *etcdReg) run(ctx context.Context) {
	period := time.Duration(e.ttl) * time.Second / 3
	for {
		if e.lease == "" {
			if err := e.register(); err != nil {
				log.Printf("etcd: register: %v (retrying)", err)
			}
		} else if !e.keepalive() {
			log.Printf("etcd: lease %s lost; registering again", e.lease)
			e.lease = ""
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

func (e *etcdReg) revoke() {
	if e.lease == "" {
		return
	}
	var out map[string]any
	if err := e.post("/v3/lease/revoke", map[string]any{"ID": e.lease}, &out); err != nil {
		log.Printf("etcd: revoke: %v", err)
	}
}
