package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// member is one member of the cluster as Cluster.MemberList lists it.
type member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
}

// nodeReport is what one member told about itself.
type nodeReport struct {
	member member
	// ranges is the member's answer to Internal/Ranges; nil when it could
	// not be asked (err says why).
	ranges *tesserapb.RangesResponse
	err    error
	health health
}

// health is a member's /health.
type health struct {
	ok     bool
	reason string // why not ok
}

// clusterView is everything tessctl learned from the cluster.
type clusterView struct {
	reports []nodeReport // by member id
	// tls is how members are dialed (nil: plaintext).
	tls *tls.Config
}

// collect lists the members through the endpoints, then asks every member
// for its replicas and health, all at once.
func collect(ctx context.Context, g *globalFlags) (*clusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, g.dialTimeout+g.commandTimeout)
	defer cancel()
	user, password, _ := strings.Cut(g.user, ":")
	cli, err := clientv3.New(clientv3.Config{
		Username:    user,
		Password:    password,
		Endpoints:   g.endpoints,
		DialTimeout: g.dialTimeout,
		Logger:      zap.NewNop(),
		Context:     ctx,
		TLS:         g.tlsConfig,
	})
	if err != nil {
		return nil, fmt.Errorf("tessctl: connect to %v: %w", g.endpoints, err)
	}
	defer cli.Close()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("tessctl: member list from %v: %w", g.endpoints, err)
	}
	view := &clusterView{tls: g.tlsConfig}
	for _, m := range resp.Members {
		view.reports = append(view.reports, nodeReport{member: member{
			ID: m.GetID(), Name: m.GetName(), PeerURLs: m.GetPeerURLs(), ClientURLs: m.GetClientURLs(),
		}})
	}
	slices.SortFunc(view.reports, func(a, b nodeReport) int { return cmp.Compare(a.member.ID, b.member.ID) })
	var wg sync.WaitGroup
	for i := range view.reports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &view.reports[i]
			r.ranges, r.err = askRanges(ctx, view.tls, r.member)
			r.health = askHealth(ctx, view.tls, r.member)
		}()
	}
	wg.Wait()
	return view, nil
}

var (
	errNoClientURL = errors.New("no client URL known (the member did not answer the node that listed it)")
	errNoPeerURL   = errors.New("no peer URL known")
)

// askRanges calls Internal/Ranges on the member's peer URL.
func askRanges(ctx context.Context, tlsConf *tls.Config, m member) (*tesserapb.RangesResponse, error) {
	conn, err := dialMember(tlsConf, m)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := tesserapb.NewInternalClient(conn).Ranges(ctx, &tesserapb.RangesRequest{})
	if err != nil {
		return nil, fmt.Errorf("ranges from %s: %w", m.PeerURLs[0], err)
	}
	return resp, nil
}

// askHealth reads the member's /health, as etcdctl endpoint health does.
func askHealth(ctx context.Context, tlsConf *tls.Config, m member) health {
	if len(m.ClientURLs) == 0 {
		return health{reason: errNoClientURL.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURLs[0]+"/health", nil)
	if err != nil {
		return health{reason: err.Error()}
	}
	resp, err := httpClient(tlsConf).Do(req)
	if err != nil {
		return health{reason: err.Error()}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return health{reason: err.Error()}
	}
	return parseHealth(resp.StatusCode, raw)
}

// parseHealth reads a /health answer: {"health":"true","reason":""}.
func parseHealth(status int, body []byte) health {
	var b struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return health{reason: fmt.Sprintf("HTTP %d: %q", status, body)}
	}
	if b.Health == "true" && status == http.StatusOK {
		return health{ok: true}
	}
	if b.Reason == "" {
		b.Reason = fmt.Sprintf("HTTP %d, health %q", status, b.Health)
	}
	return health{reason: b.Reason}
}
