// main.go: the im-repo test double: grpc-go servers of the contract on
// loopback, an admin HTTP endpoint (faults, counters, extra listeners), a
// misbehaving HTTP/2 peer for the client's robustness tests, and its
// registration in etcd.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

type double struct {
	cfg      *dataConfig
	state    *dataState
	counters *counters
	faults   *faults
	maxStrm  uint32

	mu        sync.Mutex
	listeners map[string]*listener // by address
	spawned   int
}

// listener: one gRPC server on one address; can go down and come back on
// the same port.
type listener struct {
	addr  string
	creds credentials.TransportCredentials
	gs    *grpc.Server
	up    bool
	spawn bool
	timer *time.Timer
}

func (d *double) serverOptions(addr string, creds credentials.TransportCredentials) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.UnaryInterceptor(d.interceptor(addr)),
		grpc.MaxConcurrentStreams(d.maxStrm),
		grpc.MaxSendMsgSize(64 << 20),
		// Clients may ping every second, also without calls in flight.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: time.Second, PermitWithoutStream: true}),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	return opts
}

// start (re)binds l.addr; the caller holds d.mu.
func (d *double) start(l *listener) error {
	if l.up {
		return nil
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", l.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if l.addr != ln.Addr().String() { // port 0 picked one
		delete(d.listeners, l.addr)
		l.addr = ln.Addr().String()
	}
	gs := grpc.NewServer(d.serverOptions(l.addr, l.creds)...)
	registerServices(gs, d)
	l.gs, l.up = gs, true
	d.listeners[l.addr] = l
	go func() { _ = gs.Serve(ln) }()
	return nil
}

// stop: hard (connections reset, like a crash) or graceful (GOAWAY, drain).
func (d *double) stop(l *listener, graceful bool) {
	if !l.up {
		return
	}
	l.up = false
	gs := l.gs
	if graceful {
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			gs.Stop()
		}
	} else {
		gs.Stop()
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	port, _ := strconv.Atoi(envOr("IMTASK_IMREPO_PORT", "19500"))
	host := flag.String("host", "127.0.0.1", "address to listen on (loopback)")
	flag.IntVar(&port, "port", port, "gRPC port (h2c); admin is port+1, misbehaving peer port+2, TLS port+3")
	etcd := flag.String("etcd", os.Getenv("IMTASK_ETCD_ENDPOINTS"), "etcd endpoint (http://host:port); empty: no registration")
	prefix := flag.String("prefix", "/services/im-repo/", "etcd key prefix")
	instance := flag.String("instance", "", "instance id (default imrepo-double-<port>)")
	ttl := flag.Int("lease-ttl", 10, "etcd lease TTL in seconds")
	stateDir := flag.String("state-dir", os.TempDir(), "where the TLS certificate (imrepo-ca.pem) is written")
	ratio := flag.Float64("online-ratio", 0.2, "share of users online")
	gws := flag.Int("gateways", 4, "gateways the online users spread over (gw-1..gw-N)")
	dmax := flag.Int("devices-max", 3, "devices per user, 0..N by hash")
	msgs := flag.Int64("messages", 100_000, "messages in the synthetic history (one a minute from 2025-01-01)")
	maxStreams := flag.Uint("max-streams", 100, "SETTINGS_MAX_CONCURRENT_STREAMS")
	flag.Parse()
	if *instance == "" {
		*instance = fmt.Sprintf("imrepo-double-%d", port)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	d := &double{
		cfg:       &dataConfig{onlineRatio: *ratio, gateways: *gws, devicesMax: *dmax, messages: *msgs},
		state:     newDataState(),
		counters:  newCounters(),
		faults:    newFaults(),
		maxStrm:   uint32(*maxStreams),
		listeners: map[string]*listener{},
	}
	mainAddr := net.JoinHostPort(*host, strconv.Itoa(port))
	d.mu.Lock()
	if err := d.start(&listener{addr: mainAddr}); err != nil {
		log.Fatalf("listen %s: %v", mainAddr, err)
	}
	tlsAddr := net.JoinHostPort(*host, strconv.Itoa(port+3))
	caPath := strings.TrimRight(*stateDir, "/") + "/imrepo-ca.pem"
	creds, err := selfSignedCreds(caPath)
	if err != nil {
		log.Fatalf("tls: %v", err)
	}
	if err := d.start(&listener{addr: tlsAddr, creds: creds}); err != nil {
		log.Fatalf("listen %s: %v", tlsAddr, err)
	}
	d.mu.Unlock()

	evilAddr := net.JoinHostPort(*host, strconv.Itoa(port+2))
	go serveEvil(evilAddr)

	adminAddr := net.JoinHostPort(*host, strconv.Itoa(port+1))
	info := map[string]any{"grpc": mainAddr, "tls": tlsAddr, "tls_ca": caPath, "evil": evilAddr,
		"admin": adminAddr, "instance": *instance, "etcd_key": *prefix + *instance, "pid": os.Getpid()}
	adminLn, err := net.Listen("tcp", adminAddr)
	if err != nil {
		log.Fatalf("listen %s: %v", adminAddr, err)
	}
	go func() { _ = http.Serve(adminLn, d.adminMux(info)) }()

	ctx, cancel := context.WithCancel(context.Background())
	var reg *etcdReg
	if *etcd != "" {
		reg = &etcdReg{endpoint: strings.Split(*etcd, ",")[0], key: *prefix + *instance,
			value: fmt.Sprintf(`{"addr":"%s","instance":"%s"}`, mainAddr, *instance), ttl: *ttl}
		go reg.run(ctx)
	}
	b, _ := json.Marshal(info)
	log.Printf("imrepo-double ready %s", b)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	log.Printf("stopping")
	cancel()
	if reg != nil {
		reg.revoke()
	}
	d.mu.Lock()
	for _, l := range d.listeners {
		d.stop(l, true)
	}
	d.mu.Unlock()
}
