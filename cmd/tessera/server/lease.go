package server

import (
	"fmt"
	"math"
	"time"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/router"
)

// newLeases creates etcd's Lease service (serve registers it on the client
// port, where it forwards to the meta leader and runs the expiry loop, and
// on the peer port, where it answers forwarded requests) and configures the meta group's lessor
// with etcd's rules: the minimum TTL is 1.5 election timeouts rounded up to
// a second, and a new meta leader extends every lease by an election
// timeout.
func (s *Server) newLeases() error {
	hcfg := raftgroup.DefaultConfig()
	tick, ticks := hcfg.TickInterval, hcfg.ElectionTicks
	if s.cfg.TickInterval > 0 {
		tick = s.cfg.TickInterval
	}
	if s.cfg.ElectionTicks > 0 {
		ticks = s.cfg.ElectionTicks
	}
	election := tick * time.Duration(ticks)
	if s.meta != nil {
		lc := placement.DefaultLeaseConfig()
		lc.MinTTL = int64(math.Ceil((election * 3 / 2).Seconds()))
		lc.PromoteExtension = election
		if s.cfg.LeaseLookupValidity > 0 {
			lc.LookupValidity = s.cfg.LeaseLookupValidity
		}
		if err := s.meta.SetLeaseConfig(lc); err != nil {
			return fmt.Errorf("server: leases: %w", err)
		}
	}
	cfg := router.DefaultLeaseConfig()
	cfg.Registerer = s.reg
	var err error
	if s.leases, err = router.NewLease(s.router, true, cfg); err != nil {
		return fmt.Errorf("server: leases: %w", err)
	}
	return nil
}
