package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tesseradb/tessera/cmd/tessera/server"
)

// devCmd runs a local N-node cluster in one process, for trying things out.
func devCmd() *cobra.Command {
	var n int
	var dir, logLevel string
	var split []string
	var pprofOn bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local multi-node cluster on loopback (for trying things out)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 {
				return fmt.Errorf("--nodes must be at least 1")
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "tessera-dev-")
				if err != nil {
					return err
				}
				dir = d
			}
			return runDev(n, dir, split, logLevel, pprofOn)
		},
	}
	cmd.Flags().IntVar(&n, "nodes", 3, "number of nodes")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the nodes' data (default: a new temporary directory)")
	cmd.Flags().StringSliceVar(&split, "initial-split-keys", []string{"g", "n", "t"}, "keys at which the keyspace is cut into ranges")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level")
	cmd.Flags().BoolVar(&pprofOn, "enable-pprof", false, "serve /debug/pprof/ on each node's client port")
	return cmd
}

func runDev(n int, dir string, split []string, logLevel string, pprofOn bool) error {
	type node struct {
		name         string
		client, peer net.Listener
	}
	nodes := make([]node, n)
	var cluster []string
	for i := range nodes {
		c, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		p, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		nodes[i] = node{name: fmt.Sprintf("node%d", i+1), client: c, peer: p}
		cluster = append(cluster, fmt.Sprintf("%s=http://%s", nodes[i].name, p.Addr()))
	}
	var servers []*server.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	var endpoints []string
	for _, nd := range nodes {
		cfg := server.DefaultConfig()
		cfg.Name = nd.name
		cfg.DataDir = filepath.Join(dir, nd.name)
		clientURL := "http://" + nd.client.Addr().String()
		peerURL := "http://" + nd.peer.Addr().String()
		cfg.ListenClientURLs, cfg.AdvertiseClientURLs = []string{clientURL}, []string{clientURL}
		cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []string{peerURL}, []string{peerURL}
		cfg.InitialCluster = strings.Join(cluster, ",")
		cfg.InitialSplitKeys = split
		cfg.ClientListener, cfg.PeerListener = nd.client, nd.peer
		cfg.Logger = newLogger(logLevel)
		cfg.EnablePprof = pprofOn
		s, err := server.Start(cfg)
		if err != nil {
			return fmt.Errorf("start %s: %w", nd.name, err)
		}
		servers = append(servers, s)
		endpoints = append(endpoints, clientURL)
		fmt.Printf("%s: client %s  peer %s  data %s\n", nd.name, clientURL, peerURL, cfg.DataDir)
	}
	fmt.Printf("\nranges split at %q; try:\n\n  etcdctl --endpoints=%s put foo bar\n\nCtrl-C stops the cluster.\n", split, strings.Join(endpoints, ","))
	waitForSignal()
	return nil
}
