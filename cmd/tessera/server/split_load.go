package server

import (
	"context"

	"github.com/tesseradb/tessera/shard"
)

// checkLoad splits every range this node leads that served at least
// cfg.RangeSplitQPS requests in each second of cfg.LoadSplitSustain, at
// the key its split finder chose (shard/split_load.go).
func (s *Server) checkLoad(ctx context.Context, cfg SplitConfig) {
	if cfg.RangeSplitQPS <= 0 {
		return
	}
	for _, rep := range s.store.Replicas() {
		if ctx.Err() != nil {
			return
		}
		if !rep.IsLeader() {
			continue
		}
		key := rep.LoadSplitKey(cfg.RangeSplitQPS, cfg.LoadSplitSustain)
		if key == nil {
			continue
		}
		id := rep.Descriptor().GetRangeId()
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		res, err := s.router.Split(sctx, id, key, shard.TriggerLoad)
		cancel()
		if err != nil {
			s.log.Warn("load-based split failed", "range", id, "key", string(key), "err", err)
			continue
		}
		s.log.Info("split a range by load", "range", id, "key", string(key), "right", res.Right.GetRangeId())
	}
}
