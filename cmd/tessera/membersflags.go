package main

import (
	"github.com/spf13/pflag"

	"github.com/tesseradb/tessera/cmd/tessera/server"
)

// addMembersFlags adds the membership flags: gossip and liveness.
func addMembersFlags(f *pflag.FlagSet, c *server.MembersConfig) {
	f.StringVar(&c.GossipAddr, "gossip-addr", "", "host:port this member gossips on with memberlist, TCP and UDP (default the host of --initial-advertise-peer-urls, port 7946; 'off' disables gossip)")
	f.DurationVar(&c.DeadNodeTimeout, "dead-node-timeout", 0, "a member silent this long is dead and its replicas are rebuilt elsewhere (default 5m)")
	f.DurationVar(&c.HeartbeatInterval, "node-heartbeat-interval", 0, "how often a member sends the placement driver its heartbeat with per-range statistics (default 1s)")
}

// membersDefaults fills --gossip-addr's default from the advertised peer URL.
func membersDefaults(c *server.Config) {
	switch c.Members.GossipAddr {
	case "off":
		c.Members.GossipAddr = ""
	case "":
		peer := ""
		if len(c.InitialAdvertisePeerURLs) > 0 {
			peer = c.InitialAdvertisePeerURLs[0]
		}
		c.Members.GossipAddr = server.DefaultGossipAddr(peer)
		c.Members.GossipAddrDefaulted = true
	}
}
