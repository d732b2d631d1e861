package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// nodeRow is one line of `tessctl nodes` (JSON fields in snake_case).
type nodeRow struct {
	ID             uint64   `json:"id"`
	Name           string   `json:"name"`
	PeerURLs       []string `json:"peer_urls"`
	ClientURLs     []string `json:"client_urls"`
	GossipAddr     string   `json:"gossip_addr"`
	Learner        bool     `json:"learner"`
	State          string   `json:"state"`
	Liveness       string   `json:"liveness"`
	Gossip         string   `json:"gossip"`
	HeartbeatAgeMs int64    `json:"heartbeat_age_ms"`
	Replicas       uint32   `json:"replicas"`
	Leaders        uint32   `json:"leaders"`
	Bytes          uint64   `json:"bytes"`
}

func nodesCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List every node as the placement driver sees it: addresses, liveness, replicas, leaders, bytes",
		Long: `nodes asks the placement driver (the meta group's leader, through any
member's peer URL) for every node of the node table: its id, name and
addresses, its liveness (live, suspect or dead, from heartbeats and gossip;
dead after --dead-node-timeout), and the replicas, leaderships and bytes
of ranges it holds (from the range directory and its heartbeats).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), g.dialTimeout+g.commandTimeout)
			defer cancel()
			resp, err := askNodes(ctx, g)
			if err != nil {
				return err
			}
			format, _ := parseFormat(g.writeOut)
			return writeNodes(cmd.OutOrStdout(), format, nodeRows(resp))
		},
	}
}

// askNodes lists the members through the endpoints, then asks their peer
// URLs in turn for the placement driver's node list.
func askNodes(ctx context.Context, g *globalFlags) (*tesserapb.NodesResponse, error) {
	user, password, _ := strings.Cut(g.user, ":")
	cli, err := clientv3.New(clientv3.Config{
		Username: user, Password: password, Endpoints: g.endpoints, DialTimeout: g.dialTimeout,
		Logger: zap.NewNop(), Context: ctx, TLS: g.tlsConfig,
	})
	if err != nil {
		return nil, fmt.Errorf("tessctl: connect to %v: %w", g.endpoints, err)
	}
	defer cli.Close()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("tessctl: member list from %v: %w", g.endpoints, err)
	}
	var errs []error
	for _, m := range list.Members {
		if len(m.GetPeerURLs()) == 0 || m.GetName() == "" {
			continue // unstarted
		}
		conn, err := dialMember(g.tlsConfig, member{ID: m.GetID(), Name: m.GetName(), PeerURLs: m.GetPeerURLs()})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp, err := tesserapb.NewMembershipClient(conn).Nodes(ctx, &tesserapb.NodesRequest{})
		_ = conn.Close()
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("nodes from %s: %w", m.GetPeerURLs()[0], err))
	}
	return nil, fmt.Errorf("tessctl: no member answered with the node list: %w", errors.Join(errs...))
}

func nodeRows(resp *tesserapb.NodesResponse) []nodeRow {
	rows := []nodeRow{}
	for _, n := range resp.GetNodes() {
		r := n.GetNode()
		rows = append(rows, nodeRow{
			ID: r.GetNodeId(), Name: r.GetName(), PeerURLs: nonNil(r.GetPeerUrls()), ClientURLs: nonNil(r.GetClientUrls()),
			GossipAddr: r.GetGossipAddr(), Learner: r.GetIsLearner(), State: strings.ToLower(r.GetState().String()),
			Liveness: n.GetLiveness(), Gossip: n.GetGossip(), HeartbeatAgeMs: n.GetHeartbeatAgeMs(),
			Replicas: n.GetReplicas(), Leaders: n.GetLeaders(), Bytes: n.GetBytes(),
		})
	}
	return rows
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// writeNodes writes the nodes as an aligned table or as JSON
// ({"nodes": [...]}).
func writeNodes(w io.Writer, f format, rows []nodeRow) error {
	if f == formatJSON {
		return writeJSON(w, struct {
			Nodes []nodeRow `json:"nodes"`
		}{rows})
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tPEER URL\tCLIENT URL\tSTATE\tLIVENESS\tREPLICAS\tLEADERS\tBYTES")
	for _, r := range rows {
		name := r.Name
		if name == "" {
			name = "(unstarted)"
		}
		if r.Learner {
			name += " (learner)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n",
			r.ID, name, firstOrDash(r.PeerURLs), firstOrDash(r.ClientURLs), r.State, r.Liveness, r.Replicas, r.Leaders, r.Bytes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprint(w, "\nLIVENESS: live (heartbeats on time), suspect (late, or gossip lost it), dead (silent longer than --dead-node-timeout).\n"+
		"REPLICAS counts the meta group; LEADERS and BYTES come from the node's last heartbeat.\n")
	return err
}

func firstOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return s[0]
}
