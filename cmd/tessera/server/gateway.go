package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	gw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
)

// gateway is etcd's HTTP/JSON gateway on the client port: the handlers
// grpc-gateway v2 generated from etcd's own API definitions
// (go.etcd.io/etcd/api/v3/etcdserverpb/gw), served under /v3/ (and the old
// /v3beta/ prefix, rewritten as etcd does), calling the node's own client
// gRPC server over loopback as etcd's gateway does.
//
// Handlers are registered for every etcd service, implemented or not: a
// service this node does not serve yet (Lease, Auth) answers what etcd's
// gateway answers for an unimplemented gRPC service (HTTP 501 with gRPC
// code 12 in the JSON error), and lights up once its server is registered.
// Streams (watch, lease keep-alive, snapshot) are newline-delimited JSON
// messages, each {"result": …} or {"error": …}, as etcd without a websocket
// upgrade (etcd also accepts websockets through a proxy library Tessera
// does not carry).
type gateway struct {
	conn   *grpc.ClientConn
	mux    *runtime.ServeMux
	cancel context.CancelFunc
}

// startGateway dials the node's client port and registers the gateway under
// /v3/ and /v3beta/ on mux.
func (s *Server) startGateway(mux *http.ServeMux) error {
	if !s.cfg.EnableGRPCGateway {
		return nil
	}
	self, err := s.selfDialOptions() // TLS when the client port has it (tls_wiring.go)
	if err != nil {
		return fmt.Errorf("server: gateway: %w", err)
	}
	conn, err := grpc.NewClient("passthrough:///"+s.clientLis.Addr().String(),
		append(self, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))...,
	)
	if err != nil {
		return fmt.Errorf("server: gateway: dial own client port: %w", err)
	}
	g := &gateway{conn: conn}
	// etcd's marshaler: proto field names, zero values left out, unknown
	// JSON fields ignored; bytes are base64 (protojson's encoding).
	g.mux = runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	var ctx context.Context
	ctx, g.cancel = context.WithCancel(context.Background())
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler,
		gw.RegisterWatchHandler,
		gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler,
		gw.RegisterMaintenanceHandler,
		gw.RegisterAuthHandler,
	} {
		if err := register(ctx, g.mux, conn); err != nil {
			g.close()
			return fmt.Errorf("server: gateway: register: %w", err)
		}
	}
	s.gw = g
	mux.Handle("/v3/", g.mux)
	mux.Handle("/v3beta/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// etcd redirects the pre-3.4 prefix to /v3/ in place.
		r.URL.Path = strings.Replace(r.URL.Path, "/v3beta/", "/v3/", 1)
		g.mux.ServeHTTP(w, r)
	}))
	return nil
}

func (g *gateway) close() {
	if g == nil {
		return
	}
	g.cancel()
	_ = g.conn.Close()
}
