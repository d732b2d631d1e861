// Package scheduler decides where replicas and leaders of ranges go.
//
// It owns three things:
//
//   - The model (model.go): a Snapshot of the cluster as the placement
//     driver sees it (nodes with their liveness, ranges with their replicas,
//     leader, size and load, and the operations already in flight).
//   - The scheduler (Schedule): a pure, deterministic function from a
//     Snapshot to a list of Operations. It reads no clock and draws no random
//     numbers; the same Snapshot and Config give the same Operations. Goals,
//     in priority order: repair (replicas on dead, removed or draining nodes
//     replaced, learners left by an interrupted move promoted or removed, the
//     replication factor met: 3 voters, 5 for the meta range once 5 nodes are
//     live), then balance of replica count, then bytes, then leaders per node
//     (each within Config.Tolerance of the mean), then hot ranges' leaders
//     spread over the nodes.
//   - The executor (Executor): runs Operations step by step through a Mover
//     (the replica moves: ConfChangeV2 of the range), never more than
//     Limits.MaxMovesPerNode at a time on a node and never faster than the
//     snapshot budget of a node, with pause/resume and a status.
//
// It never talks to the network and never decides liveness: the caller
// (the meta leader, from memberlist and node heartbeats) builds the
// Snapshot, and the Mover does the moves.
//
// A worked example (testdata/uneven_counts has it at a larger size): three
// live nodes n1..n3 hold six ranges, three voters each, 6 replicas per
// node. Node n4 joins: counts are 6,6,6,0, mean 4.5, and the band is
// 3.5..5.5 (±10% of the mean, but at least one replica). n4 is below the
// band and n1..n3 above it, so Schedule returns moves to n4, one replica
// at a time from the fullest node (lowest id first on a tie), taking
// replicas their node does not lead when it can (a move of a leader's
// replica carries "leader to nX first"), until n4 is inside the band: four
// moves (after three, n4's 3 is still below 3.5), leaving 4,5,5,4. The
// executor runs each as: transfer leader (if any), add learner on n4 (a
// snapshot), promote it (joint consensus), remove the old replica. The
// next round evens out the leaders with a transfer, and the one after
// finds nothing to do.
package scheduler
