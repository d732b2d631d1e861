package server

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// KeepaliveConfig is etcd's gRPC keepalive settings of the client port.
// Without them gRPC's own enforcement (a client may ping at most every 5
// minutes) answers clientv3's and etcdctl's keepalive pings (every 10 s at
// the fastest gRPC allows, 30 s from Kubernetes) on an idle connection with
// a GOAWAY "too_many_pings", which drops long-lived watches and
// `etcdctl elect --listen`.
type KeepaliveConfig struct {
	// MinTime is --grpc-keepalive-min-time: how often a client may ping at
	// most (5 s, etcd's default; 0: gRPC's own 5 minutes). As in etcd, a
	// client with no stream open may not ping.
	MinTime time.Duration
	// Interval is --grpc-keepalive-interval: how often the server pings an
	// idle client connection (2 h; 0, or a zero Timeout: never).
	Interval time.Duration
	// Timeout is --grpc-keepalive-timeout: how long the server waits for
	// the answer to its ping before closing the connection (20 s).
	Timeout time.Duration
}

// DefaultKeepaliveConfig returns etcd's defaults.
func DefaultKeepaliveConfig() KeepaliveConfig {
	return KeepaliveConfig{MinTime: 5 * time.Second, Interval: 2 * time.Hour, Timeout: 20 * time.Second}
}

// Validate refuses negative durations.
func (c KeepaliveConfig) Validate() error {
	if c.MinTime < 0 || c.Interval < 0 || c.Timeout < 0 {
		return fmt.Errorf("server: --grpc-keepalive-min-time %v, --grpc-keepalive-interval %v and --grpc-keepalive-timeout %v must not be negative", c.MinTime, c.Interval, c.Timeout)
	}
	return nil
}

// serverOptions are the client gRPC server's keepalive options, as etcd
// sets them.
func (c KeepaliveConfig) serverOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if c.MinTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: c.MinTime}))
	}
	if c.Interval > 0 && c.Timeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{Time: c.Interval, Timeout: c.Timeout}))
	}
	return opts
}
