package router

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// Feed serves a range's change feed from this node's replica (its leader):
// the first request names the range and start; later ones ask for resolved
// checkpoints. A routing or compaction error is the stream's last message.
func (s *Internal) Feed(stream tesserapb.Internal_FeedServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := s.validateFeedStart(stream.Context(), first); err != nil {
		return toGRPCError(err)
	}
	rep := s.r.replicas.Replica(first.GetRangeId())
	if rep == nil {
		return stream.Send(&tesserapb.FeedResponse{RoutingError: &tesserapb.RoutingError{
			Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: fmt.Sprintf("range %d not on this node", first.GetRangeId()),
		}})
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	resolve := make(chan engine.Revision, 16)
	go func() {
		for {
			req, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return // the subscriber sends no more requests
			}
			if err != nil {
				cancel()
				return
			}
			if err := s.validateFeedResolve(ctx, req); err != nil {
				s.r.log.Warn("feed: invalid resolve request, stream ended", "range", first.GetRangeId(), "err", err)
				cancel()
				return
			}
			if rev := engine.Revision(req.GetResolveRevision()); rev > 0 {
				select {
				case resolve <- rev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	opts := shard.FeedOptions{
		Generation: first.GetGeneration(),
		Start:      engine.Revision(first.GetStartRevision()),
		End:        engine.Revision(first.GetEndRevision()),
		PrevKV:     first.GetPrevKv(),
	}
	err = rep.Feed(ctx, opts, resolve, func(revs []shard.FeedRevision, resolved engine.Revision) error {
		resp := &tesserapb.FeedResponse{ResolvedRevision: int64(resolved)}
		for _, fr := range revs {
			pr := &tesserapb.FeedRevision{Revision: int64(fr.Rev), Events: make([][]byte, 0, len(fr.Events))}
			for _, ev := range fr.Events {
				b, err := proto.Marshal(ev)
				if err != nil {
					return fmt.Errorf("router: encode event: %w", err)
				}
				pr.Events = append(pr.Events, b)
			}
			resp.Revisions = append(resp.Revisions, pr)
		}
		return stream.Send(resp)
	})
	var re *shard.RoutingError
	var ce *shard.CompactedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return stream.Send(&tesserapb.FeedResponse{RoutingError: re.Proto()})
	case errors.As(err, &ce):
		return stream.Send(&tesserapb.FeedResponse{CompactRevision: int64(ce.CompactRev)})
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return toGRPCError(err)
}
