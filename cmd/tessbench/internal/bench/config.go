package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Consistency of a Range request.
type Consistency string

const (
	// Linearizable reads go through the leader's read index (etcd's default).
	Linearizable Consistency = "l"
	// Serializable reads are answered from the local replica.
	Serializable Consistency = "s"
)

// ParseConsistency accepts "l", "linearizable", "s" and "serializable".
func ParseConsistency(s string) (Consistency, error) {
	switch strings.ToLower(s) {
	case "l", "linearizable":
		return Linearizable, nil
	case "s", "serializable":
		return Serializable, nil
	}
	return "", fmt.Errorf("bench: consistency %q is neither l(inearizable) nor s(erializable)", s)
}

// RunConfig describes how requests are driven: which endpoints, how many
// connections and concurrent clients, how many requests or for how long, and
// at what rate.
type RunConfig struct {
	// Endpoints are the etcd-API client URLs or host:port pairs.
	Endpoints []string
	// Conns is the number of gRPC connections (one clientv3.Client each).
	Conns int
	// Clients is the number of concurrent requesters, spread round-robin over
	// the connections.
	Clients int
	// Total stops the run after this many requests; 0 means no count limit.
	Total int64
	// Duration stops the run after this long; 0 means no time limit. With
	// both Total and Duration set, whichever comes first ends the run.
	Duration time.Duration
	// Rate, when positive, makes the run an open loop at Rate requests per
	// second across all clients; 0 is a closed loop.
	Rate float64
	// MaxLag bounds how far an open loop may fall behind its schedule: once
	// the run is MaxLag past its last intended send time, requests not yet
	// sent are counted as Unsent instead of being sent. 0 means
	// max(Duration, 10s), so an overloaded server cannot hold the run forever.
	MaxLag time.Duration
	// Timeout bounds each request.
	Timeout time.Duration
	// DialTimeout bounds connecting to the endpoints.
	DialTimeout time.Duration
	// Seed makes key choice reproducible; each client derives its own stream.
	Seed uint64
	// OnComplete, when set, is called after each finished request (any
	// outcome). It must be safe for concurrent use; the progress bar uses it.
	OnComplete func()
	// TLS, when set, is the clients' TLS configuration (https endpoints).
	TLS *tls.Config
	// Username and Password, when set, make every connection authenticate
	// (etcd's auth: one Authenticate per connection, then a token).
	Username, Password string
}

// DefaultRunConfig returns the settings used when a flag is not given.
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Endpoints:   []string{"127.0.0.1:2379"}, // etcd's and Tessera's default client port
		Conns:       1,                          // one HTTP/2 connection, as most etcd clients use
		Clients:     16,                         // enough to keep a 3-node cluster's pipeline busy
		Total:       0,
		Duration:    10 * time.Second, // long enough for a steady state, short enough to repeat in rounds
		Timeout:     10 * time.Second, // above etcd's leader-election worst case on loopback
		DialTimeout: 5 * time.Second,
		Seed:        1,
	}
}

// Validate reports the first setting that cannot work.
func (c RunConfig) Validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("bench: no endpoints")
	case c.Conns < 1:
		return fmt.Errorf("bench: conns must be at least 1, got %d", c.Conns)
	case c.Clients < 1:
		return fmt.Errorf("bench: clients must be at least 1, got %d", c.Clients)
	case c.Total < 0:
		return fmt.Errorf("bench: total must not be negative, got %d", c.Total)
	case c.Duration < 0:
		return fmt.Errorf("bench: duration must not be negative, got %s", c.Duration)
	case c.Total == 0 && c.Duration == 0:
		return errors.New("bench: set a total or a duration")
	case c.Rate < 0:
		return fmt.Errorf("bench: rate must not be negative, got %g", c.Rate)
	case c.MaxLag < 0:
		return fmt.Errorf("bench: max lag must not be negative, got %s", c.MaxLag)
	case c.Timeout <= 0:
		return fmt.Errorf("bench: timeout must be positive, got %s", c.Timeout)
	}
	return nil
}

// maxLag is MaxLag with its default applied.
func (c RunConfig) maxLag() time.Duration {
	if c.MaxLag > 0 {
		return c.MaxLag
	}
	return max(c.Duration, 10*time.Second)
}

// Mode names the loop for reports: "closed" or "open".
func (c RunConfig) Mode() string {
	if c.Rate > 0 {
		return "open"
	}
	return "closed"
}

// WorkloadConfig holds the parameters of the workloads. Each workload reads
// only the fields that concern it (listed per field).
type WorkloadConfig struct {
	// Prefix is put before every key the workload touches; each workload
	// works under Prefix + its own name + "/" unless Prefix ends the key
	// space itself (see KeyPrefix).
	Prefix string
	// KeySize is the length of every key in bytes, prefix included (all).
	KeySize int
	// ValueSize is the length of every written value in bytes (put, txn-put,
	// watch, mixed, and the preload of range and mixed).
	ValueSize int
	// KeySpace is the number of distinct keys (put, range, txn-put, mixed,
	// watch).
	KeySpace int
	// Sequential picks keys 0, 1, 2, … across all clients instead of at
	// random (put, txn-put).
	Sequential bool
	// Consistency of reads (range, mixed).
	Consistency Consistency
	// PrefixKeys, when positive, makes range preload that many keys under its
	// prefix and read the whole prefix in each request (range).
	PrefixKeys int
	// ReadRatio is the fraction of requests that are reads (mixed).
	ReadRatio float64
	// Watchers is the number of watch streams on the workload's prefix
	// (watch).
	Watchers int
	// WatchDrainTimeout bounds the wait, after the last put, for every
	// watcher to receive every event (watch).
	WatchDrainTimeout time.Duration
	// Leases is the number of leases kept alive (lease-keepalive); 0 means
	// one per client.
	Leases int
	// LeaseTTL is the TTL in seconds of those leases (lease-keepalive).
	LeaseTTL int64
	// SkipPreload leaves out the preload when the keys are known to be there.
	SkipPreload bool
}

// DefaultWorkloadConfig returns the settings used when a flag is not given.
func DefaultWorkloadConfig() WorkloadConfig {
	return WorkloadConfig{
		Prefix:            "tessbench/",
		KeySize:           32,    // a typical Kubernetes-ish key, long enough for prefix + index
		ValueSize:         256,   // etcd's own benchmark docs use 256-byte values
		KeySpace:          10000, // preloads in seconds; large enough that random keys rarely collide
		Consistency:       Linearizable,
		ReadRatio:         0.9, // read-mostly, like most etcd users (Kubernetes lists and gets)
		Watchers:          10,
		WatchDrainTimeout: 10 * time.Second,
		LeaseTTL:          60, // far above the keep-alive period, so no lease expires mid-run
	}
}

// Validate reports the first setting that cannot work for the named workload.
func (c WorkloadConfig) Validate(workload string) error {
	if _, ok := workloads[workload]; !ok {
		return fmt.Errorf("bench: unknown workload %q (want one of %s)", workload, strings.Join(WorkloadNames(), ", "))
	}
	switch {
	case c.KeySpace < 1:
		return fmt.Errorf("bench: key space must be at least 1, got %d", c.KeySpace)
	case c.ValueSize < 0:
		return fmt.Errorf("bench: value size must not be negative, got %d", c.ValueSize)
	case c.ReadRatio < 0 || c.ReadRatio > 1:
		return fmt.Errorf("bench: read ratio must be within [0,1], got %g", c.ReadRatio)
	case c.PrefixKeys < 0:
		return fmt.Errorf("bench: prefix keys must not be negative, got %d", c.PrefixKeys)
	case c.Watchers < 0:
		return fmt.Errorf("bench: watchers must not be negative, got %d", c.Watchers)
	case c.Leases < 0:
		return fmt.Errorf("bench: leases must not be negative, got %d", c.Leases)
	case c.LeaseTTL < 1:
		return fmt.Errorf("bench: lease TTL must be at least 1s, got %d", c.LeaseTTL)
	}
	if _, err := ParseConsistency(string(c.Consistency)); err != nil {
		return err
	}
	if workload == "watch" && c.Watchers < 1 {
		return errors.New("bench: watch needs at least one watcher")
	}
	if workload == "watch" && c.ValueSize < watchStampSize {
		return fmt.Errorf("bench: watch carries the send time in the value and needs a value size of at least %d, got %d", watchStampSize, c.ValueSize)
	}
	_, err := c.keyGen(workload)
	return err
}

// KeyPrefix is the prefix under which the named workload keeps its keys.
func (c WorkloadConfig) KeyPrefix(workload string) string {
	return c.Prefix + workload + "/"
}

// keyGen returns the names of the keys the named workload writes or reads.
func (c WorkloadConfig) keyGen(workload string) (KeyGen, error) {
	switch {
	case workload == "range" && c.PrefixKeys > 0:
		return RangePrefixKeys(c, c.PrefixKeys)
	case workload == "range":
		return NewKeyGen(c.KeyPrefix(workload)+"key/", c.KeySize, c.KeySpace)
	}
	return NewKeyGen(c.KeyPrefix(workload), c.KeySize, c.KeySpace)
}
