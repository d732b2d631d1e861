package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tesseradb/tessera/cmd/buildinfo"
	"github.com/tesseradb/tessera/cmd/tessera/server"
)

// devOptions are the flags of `tessera dev`.
type devOptions struct {
	nodes    int
	split    []string
	basePort int    // 0: free ports chosen by the kernel
	dataDir  string // "": a temporary directory
	keepData bool   // keep a temporary data dir on exit
	logLevel string
	pprof    bool
}

// devCmd runs a local N-node cluster in one process, for trying things out.
func devCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local multi-node cluster on loopback (for trying things out)",
		Long: `tessera dev runs a cluster of --nodes nodes in one process on 127.0.0.1 and
prints a line to copy that sets E to every client endpoint.

Node i (from 0) serves clients on --base-port+2i and peers on --base-port+2i+1
(default: free ports). Its data goes to a temporary directory removed on
Ctrl-C (unless --keep-data), or to --data-dir, which is kept; a cluster
restarted with the same --data-dir reuses its ports and resumes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 3, "number of nodes")
	f.StringSliceVar(&o.split, "initial-split-keys", []string{"g", "n", "t"}, "keys at which the keyspace is cut into ranges")
	f.IntVar(&o.basePort, "base-port", 0, "first port: node i serves clients on base+2i and peers on base+2i+1 (0: free ports)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory for the nodes' data, kept on exit (default: a temporary directory, removed on exit)")
	f.StringVar(&o.dataDir, "dir", "", "same as --data-dir")
	_ = f.MarkDeprecated("dir", "use --data-dir")
	f.BoolVar(&o.keepData, "keep-data", false, "keep the temporary data directory on exit")
	f.StringVar(&o.logLevel, "log-level", "warn", "the nodes' log level (debug, info, warn, error); dev prints its own summary")
	f.BoolVar(&o.pprof, "enable-pprof", false, "serve /debug/pprof/ on each node's client port")
	return cmd
}

// devLayout is what a dev cluster records in its data dir, so that a
// restart with the same --data-dir finds its nodes at the same addresses
// (they are part of the cluster's bootstrap record).
type devLayout struct {
	Client []string `json:"client"` // host:port per node
	Peer   []string `json:"peer"`
}

const devLayoutFile = "dev-cluster.json"

func (o devOptions) validate() error {
	switch {
	case o.nodes < 1:
		return fmt.Errorf("--nodes %d: must be at least 1", o.nodes)
	case o.basePort < 0 || o.basePort > 0 && o.basePort+2*o.nodes-1 > 65535:
		return fmt.Errorf("--base-port %d: %d nodes need ports %d..%d, within 1..65535", o.basePort, o.nodes, o.basePort, o.basePort+2*o.nodes-1)
	case o.keepData && o.dataDir != "":
		return errors.New("--keep-data is for the temporary directory; --data-dir is always kept")
	}
	return nil
}

func runDev(out io.Writer, o devOptions) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	logger, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	dir, temp := o.dataDir, o.dataDir == ""
	if temp {
		if dir, err = os.MkdirTemp("", "tessera-dev-"); err != nil {
			return fmt.Errorf("dev: temporary data dir: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dev: data dir: %w", err)
	}
	var servers []*server.Server
	defer func() {
		for _, s := range servers {
			s.BeginShutdown()
		}
		for _, s := range servers {
			s.Close()
		}
		switch {
		case temp && !o.keepData:
			if rmErr := os.RemoveAll(dir); rmErr != nil {
				fmt.Fprintf(out, "could not remove the temporary data dir %s: %v\n", dir, rmErr)
			} else {
				fmt.Fprintf(out, "removed the temporary data dir %s\n", dir)
			}
		case err == nil || len(servers) > 0:
			fmt.Fprintf(out, "data kept in %s (restart: tessera dev --data-dir %s --nodes %d)\n", dir, dir, o.nodes)
		}
	}()

	listeners, layout, err := devListen(dir, o)
	if err != nil {
		return err
	}
	names := make([]string, o.nodes)
	var cluster []string
	for i := range names {
		names[i] = fmt.Sprintf("node%d", i+1)
		cluster = append(cluster, fmt.Sprintf("%s=http://%s", names[i], layout.Peer[i]))
	}
	fmt.Fprintf(out, "Tessera %s: %d nodes on 127.0.0.1, keyspace cut at %q (%d ranges)\n", buildinfo.Version, o.nodes, o.split, len(o.split)+1)
	var endpoints []string
	for i, name := range names {
		cfg := server.DefaultConfig()
		cfg.Name = name
		cfg.DataDir = filepath.Join(dir, name)
		clientURL, peerURL := "http://"+layout.Client[i], "http://"+layout.Peer[i]
		cfg.ListenClientURLs, cfg.AdvertiseClientURLs = []string{clientURL}, []string{clientURL}
		cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []string{peerURL}, []string{peerURL}
		cfg.InitialCluster = strings.Join(cluster, ",")
		cfg.InitialSplitKeys = o.split
		cfg.ClientListener, cfg.PeerListener = listeners[2*i], listeners[2*i+1]
		cfg.Logger = logger
		cfg.EnablePprof = o.pprof
		s, err := server.Start(cfg)
		if err != nil {
			for _, l := range listeners[2*i:] {
				_ = l.Close()
			}
			return fmt.Errorf("dev: start %s: %w", name, err)
		}
		servers = append(servers, s)
		endpoints = append(endpoints, clientURL)
		fmt.Fprintf(out, "%s: client %s  peer %s  data %s\n", name, clientURL, peerURL, cfg.DataDir)
	}
	switch {
	case temp && o.keepData:
		fmt.Fprintf(out, "data: %s (temporary, kept on exit: --keep-data)\n", dir)
	case temp:
		fmt.Fprintf(out, "data: %s (temporary, removed on exit; --keep-data or --data-dir keep it)\n", dir)
	default:
		fmt.Fprintf(out, "data: %s (kept on exit)\n", dir)
	}
	sigs := notifySignals()
	for _, s := range servers {
		select {
		case <-s.Ready():
		case sig := <-sigs:
			fmt.Fprintf(out, "%s before the cluster was ready; stopping\n", sig)
			return nil
		}
	}
	fmt.Fprintf(out, "\nready; copy this line to reach every node:\n\n  export E=%s\n\nthen: etcdctl --endpoints=$E put foo bar\nCtrl-C stops the cluster.\n", strings.Join(endpoints, ","))
	sig := <-sigs
	fmt.Fprintf(out, "\n%s: stopping the cluster\n", sig)
	return nil
}

// devListen opens every node's client and peer listener: at the addresses
// recorded in the data dir by an earlier run, else at --base-port, else on
// free ports; it records the addresses it used.
func devListen(dir string, o devOptions) (ls []net.Listener, layout devLayout, err error) {
	defer func() {
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			ls = nil
		}
	}()
	path := filepath.Join(dir, devLayoutFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &layout); err != nil {
			return nil, layout, fmt.Errorf("dev: %s: %w", path, err)
		}
		if len(layout.Client) != o.nodes || len(layout.Peer) != o.nodes {
			return nil, layout, fmt.Errorf("dev: %s holds a cluster of %d nodes; --nodes is %d", dir, len(layout.Client), o.nodes)
		}
	case errors.Is(err, fs.ErrNotExist):
		layout = devLayout{}
		for i := range o.nodes {
			c, p := "127.0.0.1:0", "127.0.0.1:0"
			if o.basePort > 0 {
				c, p = fmt.Sprintf("127.0.0.1:%d", o.basePort+2*i), fmt.Sprintf("127.0.0.1:%d", o.basePort+2*i+1)
			}
			layout.Client, layout.Peer = append(layout.Client, c), append(layout.Peer, p)
		}
	default:
		return nil, layout, fmt.Errorf("dev: %w", err)
	}
	for i := range o.nodes {
		for _, addr := range []*string{&layout.Client[i], &layout.Peer[i]} {
			l, err := net.Listen("tcp", *addr)
			if err != nil {
				return ls, layout, fmt.Errorf("dev: listen on %s: %w", *addr, err)
			}
			ls = append(ls, l)
			*addr = l.Addr().String()
		}
	}
	if b, err = json.Marshal(layout); err != nil {
		return ls, layout, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return ls, layout, fmt.Errorf("dev: %w", err)
	}
	return ls, layout, nil
}
