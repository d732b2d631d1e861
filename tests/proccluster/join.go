package proccluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// NewJoiningNode prepares (does not start) one more member for a running
// cluster, the etcd way: its --initial-cluster lists every member of the
// cluster plus itself and --initial-cluster-state is existing. The caller
// adds it to the cluster first (etcdctl member add NAME --peer-urls=URL,
// with n.AdvertisePeerURL), may edit n.Args, then calls StartJoining. The
// cluster stops it with the others.
func (c *Cluster) NewJoiningNode(name string, extraArgs ...string) (*Node, error) {
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	clientScheme, peerScheme := "http", "http"
	if c.cfg.ClientTLS != nil {
		clientScheme = "https"
	}
	if c.cfg.PeerTLS != nil {
		peerScheme = "https"
	}
	i := len(c.nodes)
	n := &Node{
		Index:     i,
		Name:      name,
		ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", clientScheme, ports[0]),
		PeerURL:   fmt.Sprintf("%s://127.0.0.1:%d", peerScheme, ports[1]),
		ClientTLS: c.cfg.ClientTLS,
		PeerTLS:   c.cfg.PeerTLS,
		DataDir:   filepath.Join(c.cfg.Dir, name),
		bin:       c.cfg.Bin,
		log:       c.cfg.Logger,
	}
	n.AdvertisePeerURL = n.PeerURL
	n.LogPath = n.DataDir + ".log"
	var peers []string
	for _, m := range c.nodes {
		peers = append(peers, m.Name+"="+m.AdvertisePeerURL)
	}
	peers = append(peers, n.Name+"="+n.AdvertisePeerURL)
	n.Args = append(append([]string{
		"--name", n.Name,
		"--data-dir", n.DataDir,
		"--listen-client-urls", n.ClientURL,
		"--advertise-client-urls", n.ClientURL,
		"--listen-peer-urls", n.PeerURL,
		"--initial-advertise-peer-urls", n.AdvertisePeerURL,
		"--initial-cluster", strings.Join(peers, ","),
		"--initial-cluster-state", "existing",
	}, c.cfg.ExtraArgs...), extraArgs...)
	return n, nil
}

// StartJoining starts a node from NewJoiningNode, makes it a member of the
// cluster (Stop stops it) and waits until it is ready.
func (c *Cluster) StartJoining(ctx context.Context, n *Node) error {
	if err := n.Start(); err != nil {
		return err
	}
	c.nodes = append(c.nodes, n)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	return n.AwaitReady(ctx, c.cfg.Ready)
}
