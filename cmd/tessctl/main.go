// Command tessctl is Tessera's operator CLI. It finds every member of a
// cluster through etcd's Cluster.MemberList on any endpoint, asks each
// member for its replicas (tesserapb.Internal/Ranges on its client URL) and
// its /health, and shows the cluster's ranges or nodes:
//
//	tessctl --endpoints http://127.0.0.1:2379 ranges [-w table|json]
//	tessctl --endpoints http://127.0.0.1:2379 status [-w table|json]
//	tessctl --endpoints http://127.0.0.1:2379 check [--timeout 30s] [-w table|json]
//	tessctl --endpoints http://127.0.0.1:2379 transfer-leader --range N --to NODE
//	tessctl --endpoints http://127.0.0.1:2379 range split KEY
//	tessctl --endpoints http://127.0.0.1:2379 range merge ID
//	tessctl --endpoints http://127.0.0.1:2379 nodes [-w table|json]
//	tessctl version
//	tessctl --endpoints http://127.0.0.1:2379 snapshot save FILE
//	tessctl snapshot status FILE [-w table|json]
//	tessctl snapshot restore FILE --name NAME --data-dir DIR --initial-cluster n0=URL,… --initial-advertise-peer-urls URL
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run runs tessctl with args and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd, g := rootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(stderr, "Error:", withHint(err, g.endpoints))
		}
		return 1
	}
	return 0
}

// errReported fails a command whose output already says what is wrong
// (status with an unhealthy node): the exit status is 1, nothing more is
// printed.
var errReported = errors.New("tessctl: reported")

// globalFlags are the flags every command takes.
type globalFlags struct {
	endpoints      []string
	dialTimeout    time.Duration
	commandTimeout time.Duration
	writeOut       string
	tls            tlsFlags
	// user is etcdctl's --user name[:password] (auth enabled).
	user string
	// tlsConfig is built from tls before a command runs (nil: plaintext).
	tlsConfig *tls.Config
}

func rootCmd() (*cobra.Command, *globalFlags) {
	g := &globalFlags{}
	cmd := &cobra.Command{
		Use:           "tessctl",
		Short:         "Tessera's operator CLI: ranges, replicas, leaders and node status",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if _, err := parseFormat(g.writeOut); err != nil {
				return err
			}
			if len(g.endpoints) == 0 {
				return errors.New("tessctl: no --endpoints")
			}
			var err error
			g.tlsConfig, err = g.tls.config()
			return err
		},
	}
	f := cmd.PersistentFlags()
	f.StringSliceVar(&g.endpoints, "endpoints", []string{"http://127.0.0.1:2379"}, "client URLs of any members of the cluster (comma-separated)")
	f.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "timeout to connect to the endpoints")
	f.DurationVar(&g.commandTimeout, "command-timeout", 5*time.Second, "timeout of the whole command, after connecting")
	f.StringVarP(&g.writeOut, "write-out", "w", "table", "output format: table or json")
	addTLSFlags(f, &g.tls)
	f.StringVar(&g.user, "user", "", "username[:password] for authentication (with auth enabled, listing members needs a user)")
	cmd.AddCommand(rangesCmd(g), statusCmd(g), checkCmd(g), transferLeaderCmd(g), versionCmd(), snapshotCmd(g))
	cmd.AddCommand(rangeCmd(g)) // range split, range merge (range.go)
	cmd.AddCommand(nodesCmd(g)) // nodes.go
	return cmd, g
}

func rangesCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ranges",
		Short: "List every range: span, replicas, leader, applied index and resolved revision",
		Long: `ranges lists every range of the cluster, the meta group first, then the data
ranges in key order, with the leader's applied index and resolved revision.
Members that cannot be reached are reported on stderr; their replicas are
missing from the view.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			view, err := collect(cmd.Context(), g)
			if err != nil {
				return err
			}
			warnUnreachable(cmd.ErrOrStderr(), view.reports)
			if reachable(view.reports) == 0 {
				return errors.New("tessctl: no member answered")
			}
			format, _ := parseFormat(g.writeOut)
			return writeRanges(cmd.OutOrStdout(), format, mergeRanges(view.reports))
		},
	}
}

func statusCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every node: name, id, client URL, health, replicas and leaderships",
		Long: `status shows every member of the cluster with its health (its /health) and
the number of replicas it holds and ranges it leads (the meta group counts).
It exits with status 1 when a node is unhealthy or cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			view, err := collect(cmd.Context(), g)
			if err != nil {
				return err
			}
			nodes := nodeStatuses(view.reports, mergeRanges(view.reports))
			format, _ := parseFormat(g.writeOut)
			if err := writeStatus(cmd.OutOrStdout(), format, nodes); err != nil {
				return err
			}
			for _, n := range nodes {
				if !n.Healthy || n.Error != "" {
					return errReported
				}
			}
			return nil
		},
	}
}

func warnUnreachable(w io.Writer, reports []nodeReport) {
	for _, r := range reports {
		if r.err != nil {
			fmt.Fprintf(w, "warning: member %d (%s): %v\n", r.member.ID, r.member.Name, r.err)
		}
	}
}

func reachable(reports []nodeReport) int {
	n := 0
	for _, r := range reports {
		if r.ranges != nil {
			n++
		}
	}
	return n
}
