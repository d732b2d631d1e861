package integration_test

import (
	"bytes"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestClientKeepaliveEnforcement checks etcd's --grpc-keepalive-min-time on
// the client port with a raw HTTP/2 connection holding one Watch stream
// open: pings as often as the flag allows are answered and the connection
// stays up (without the flag gRPC's own 5-minute minimum sent clientv3's
// and Kubernetes' keepalive pings a GOAWAY "too_many_pings", which dropped
// idle watches), and pings faster than it get that GOAWAY, as from etcd.
func TestClientKeepaliveEnforcement(t *testing.T) {
	const minTime = time.Second
	c := testcluster.Start(t, testcluster.Options{Nodes: 1, Configure: func(cfg *server.Config) {
		cfg.Keepalive.MinTime = minTime
	}})
	u, err := url.Parse(c.Endpoint(0))
	must(t, "endpoint", err)
	conn, err := net.Dial("tcp", u.Host)
	must(t, "dial", err)
	t.Cleanup(func() { conn.Close() })

	// Client preface, settings, and a Watch stream that stays open.
	_, err = conn.Write([]byte(http2.ClientPreface))
	must(t, "preface", err)
	fr := http2.NewFramer(conn, conn)
	// The framer's writes are not safe for concurrent use: the reader acks
	// settings while the test pings.
	var wmu sync.Mutex
	write := func(f func() error) error {
		wmu.Lock()
		defer wmu.Unlock()
		return f()
	}
	must(t, "settings", fr.WriteSettings())
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/etcdserverpb.Watch/Watch"}, {":authority", u.Host}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		must(t, "hpack", enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	must(t, "headers", fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr.Bytes(), EndHeaders: true}))

	// The reader reports ping acks and a GOAWAY; it acks the server's
	// settings.
	acks := make(chan struct{}, 16)
	goaway := make(chan *http2.GoAwayFrame, 1)
	readErr := make(chan error, 1)
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				readErr <- err
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					if err := write(fr.WriteSettingsAck); err != nil {
						readErr <- err
						return
					}
				}
			case *http2.PingFrame:
				if f.IsAck() {
					acks <- struct{}{}
				}
			case *http2.GoAwayFrame:
				goaway <- f
				return
			}
		}
	}()
	ping := func(i int) {
		t.Helper()
		must(t, "ping", write(func() error { return fr.WritePing(false, [8]byte{byte(i)}) }))
		select {
		case <-acks:
		case g := <-goaway:
			t.Fatalf("ping %d: GOAWAY %v %q", i, g.ErrCode, g.DebugData())
		case err := <-readErr:
			t.Fatalf("ping %d: connection: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("ping %d: no ack", i)
		}
	}

	// gRPC strikes a ping closer than the minimum to the previous one and
	// sends GOAWAY after the third strike: five pings at a bit more than
	// the minimum must all be answered.
	tick := time.NewTicker(minTime + minTime/4)
	defer tick.Stop()
	for i := range 5 {
		ping(i)
		<-tick.C
	}

	// Pings in a burst are refused as etcd refuses them.
	deadline := time.After(10 * time.Second)
	for i := 5; ; i++ {
		if err := write(func() error { return fr.WritePing(false, [8]byte{byte(i)}) }); err != nil {
			t.Fatalf("burst ping %d: %v (no GOAWAY seen)", i, err)
		}
		select {
		case <-acks:
		case g := <-goaway:
			if g.ErrCode != http2.ErrCodeEnhanceYourCalm || string(g.DebugData()) != "too_many_pings" {
				t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", g.ErrCode, g.DebugData())
			}
			return
		case err := <-readErr:
			t.Fatalf("burst: connection: %v (no GOAWAY seen)", err)
		case <-deadline:
			t.Fatal("burst pings were never refused")
		}
	}
}
