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
// A worked example: three live nodes n1..n3 and range r2 with voters on n1,
// n2, n3 (leader n1). Node n4 joins: counts are 1,1,1,0, mean 0.75, so n4
// is below the lower bound and n1 (the first of the fullest) is above the
// upper one; Schedule returns "move r2 n1->n4 (leader to n2 first)", which
// the executor runs as: transfer leader to n2, add learner on n4 (a
// snapshot), promote n4 (joint consensus), remove n1.
package scheduler
