package server

import (
	"bytes"
	"context"

	"github.com/tesseradb/tessera/shard"
)

// recoverFrozen finishes the merges that froze a range this node leads and
// then lost their initiator: after cfg.FrozenRecoverAfter the left
// neighbour's leader runs the merge again (router.FinishMerge). Merges
// need the same replica set, so the left neighbour has a replica here.
func (s *Server) recoverFrozen(ctx context.Context, cfg SplitConfig) {
	reps := s.store.Replicas()
	for _, rep := range reps {
		if ctx.Err() != nil {
			return
		}
		if !rep.IsLeader() || rep.FrozenFor() < cfg.FrozenRecoverAfter {
			continue
		}
		right := rep.Descriptor()
		var left *shard.Replica
		for _, l := range reps {
			if d := l.Descriptor(); len(d.GetEndKey()) > 0 && bytes.Equal(d.GetEndKey(), right.GetStartKey()) {
				left = l
				break
			}
		}
		if left == nil {
			s.log.Warn("a range is frozen for a merge and its left neighbour has no replica here", "range", right.GetRangeId())
			continue
		}
		s.log.Info("a range stayed frozen for a merge: running the merge again", "range", right.GetRangeId(), "left", left.Descriptor().GetRangeId(), "frozen_for", rep.FrozenFor())
		mctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		err := s.router.FinishMerge(mctx, left)
		cancel()
		if err != nil {
			s.log.Warn("could not finish a frozen range's merge", "range", right.GetRangeId(), "err", err)
		}
	}
}
