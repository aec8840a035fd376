// evil.go: a misbehaving gRPC peer (plain net/http over h2c, not grpc-go) for
// the client's robustness tests. The request header x-imrepo-evil picks
// what goes wrong; every answer is to any path.
//
//	huge-length     a message header announcing 4 GiB - 16 bytes, then a stall
//	truncated       a header announcing 100 bytes, 10 sent, then status OK
//	compressed      compressed flag without grpc-encoding
//	bad-flag        flag byte 7
//	two-messages    two messages on a unary call
//	garbage-proto   framing fine, protobuf undecodable
//	no-status       a message and no grpc-status at all
//	http-503        HTTP 503, no gRPC status
//	bad-content-type text/html with a body
//	header-flood    800 headers of 100 bytes each
//	split           a valid GetMessageResponse sent one byte a DATA frame
//	trailers-only   grpc-status 5 in the only HEADERS frame
//	bad-status      grpc-status "abc"
//	message         grpc-status 13 with a percent-encoded grpc-message
//	rst             the stream is reset
//	hang            nothing until the client gives up
package main

import (
	"encoding/binary"
	"log"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "imtask/imrepo-double/gen/imrepov1"
)

func frame(flag byte, msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	b[0] = flag
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

func evilHandler(w http.ResponseWriter, r *http.Request) {
	mode := r.Header.Get("x-imrepo-evil")
	fl, _ := w.(http.Flusher)
	flush := func() {
		if fl != nil {
			fl.Flush()
		}
	}
	okMsg, _ := proto.Marshal(&pb.GetMessageResponse{Message: &pb.Message{Id: "m1", Content: "hello from evil"}})
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	trailer := func(status, msg string) {
		h.Set(http.TrailerPrefix+"Grpc-Status", status)
		if msg != "" {
			h.Set(http.TrailerPrefix+"Grpc-Message", msg)
		}
	}
	switch mode {
	case "huge-length":
		w.WriteHeader(200)
		b := []byte{0, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3}
		_, _ = w.Write(b)
		flush()
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
		trailer("0", "")
	case "truncated":
		w.WriteHeader(200)
		b := frame(0, make([]byte, 100))
		_, _ = w.Write(b[:15])
		trailer("0", "")
	case "compressed":
		w.WriteHeader(200)
		_, _ = w.Write(frame(1, okMsg))
		trailer("0", "")
	case "bad-flag":
		w.WriteHeader(200)
		_, _ = w.Write(frame(7, okMsg))
		trailer("0", "")
	case "two-messages":
		w.WriteHeader(200)
		_, _ = w.Write(append(frame(0, okMsg), frame(0, okMsg)...))
		trailer("0", "")
	case "garbage-proto":
		w.WriteHeader(200)
		_, _ = w.Write(frame(0, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}))
		trailer("0", "")
	case "no-status":
		w.WriteHeader(200)
		_, _ = w.Write(frame(0, okMsg))
	case "http-503":
		h.Set("Content-Type", "text/plain")
		w.WriteHeader(503)
		_, _ = w.Write([]byte("overloaded\n"))
	case "bad-content-type":
		h.Set("Content-Type", "text/html")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("<html>not grpc</html>"))
	case "header-flood":
		for i := 0; i < 800; i++ {
			h.Set("x-flood-"+strings.Repeat("a", 10)+string(rune('a'+i%26))+strings.Repeat("b", i%7)+
				string(rune('a'+(i/26)%26))+string(rune('a'+(i/676)%26)), strings.Repeat("v", 80))
		}
		w.WriteHeader(200)
		_, _ = w.Write(frame(0, okMsg))
		trailer("0", "")
	case "split":
		w.WriteHeader(200)
		for _, c := range frame(0, okMsg) {
			_, _ = w.Write([]byte{c})
			flush()
		}
		trailer("0", "")
	case "trailers-only":
		h.Set("Grpc-Status", "5")
		h.Set("Grpc-Message", "no such thing")
		w.WriteHeader(200)
	case "bad-status":
		w.WriteHeader(200)
		_, _ = w.Write(frame(0, okMsg))
		trailer("abc", "")
	case "message":
		w.WriteHeader(200)
		trailer("13", "bad%20thing%E2%9C%93%")
	case "rst":
		w.WriteHeader(200)
		_, _ = w.Write([]byte{0, 0})
		flush()
		panic(http.ErrAbortHandler)
	case "hang":
		w.WriteHeader(200)
		flush()
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		trailer("0", "")
	default:
		w.WriteHeader(200)
		_, _ = w.Write(frame(0, okMsg))
		trailer("0", "")
	}
}

func serveEvil(addr string) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(evilHandler), Protocols: &p,
		ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Printf("evil listener %s: %v", addr, err)
	}
}
