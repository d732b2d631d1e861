package router

import (
	"context"
	"fmt"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// FinishMerge runs again the merge of left with its right neighbour, which
// was left frozen by an initiator that died after the freeze: on this node
// if it leads left, else through MergeRange on left's leader. The merge
// either subsumes the right or, if it cannot (a replica down), thaws it;
// either way the right serves again.
func (r *Router) FinishMerge(ctx context.Context, left *shard.Replica) error {
	st := left.Status()
	id := st.Descriptor.GetRangeId()
	if st.IsLeader {
		if _, err := r.Merge(ctx, id, shard.TriggerAdmin); err != nil {
			return fmt.Errorf("router: finish the merge of range %d: %w", id, err)
		}
		return nil
	}
	if st.Leader == 0 {
		return fmt.Errorf("router: finish the merge of range %d: no leader known", id)
	}
	conn, err := r.nodes.Conn(st.Leader)
	if err != nil {
		return fmt.Errorf("router: finish the merge of range %d on node %d: %w", id, st.Leader, err)
	}
	resp, err := tesserapb.NewInternalClient(conn).MergeRange(ctx, &tesserapb.MergeRangeRequest{RangeId: id})
	if err != nil {
		return fmt.Errorf("router: finish the merge of range %d on node %d: %w", id, st.Leader, err)
	}
	if re := resp.GetRoutingError(); re != nil {
		return fmt.Errorf("router: finish the merge of range %d on node %d: %w", id, st.Leader, shard.RoutingErrorFromProto(re))
	}
	return nil
}
