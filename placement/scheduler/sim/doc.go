// Package sim runs the placement scheduler against a model cluster: no
// processes, no Raft, no network. Nodes and ranges are scheduler.Node and
// scheduler.Range values; an operation takes simulated time (its snapshot's
// bytes at the snapshot rate, serialized per sending and per receiving node,
// plus a fixed cost per conf change or leader transfer) and changes the
// model when it ends. The executor's admission rules are modelled (at most
// MaxRunning operations, MaxMovesPerNode snapshot-sending operations per
// node, submission order); its token bucket is replaced by the per-node
// serialization of snapshot streams, which bounds each node to the same
// rate.
//
// A run has phases: the initial cluster (replicas placed at random,
// balanced within noise), then nodes added, then nodes killed for good
// (suspect until the dead-node timeout, then dead). Each phase runs until
// the cluster has converged (every range has its voters on live nodes, no
// learner left, replica count, bytes and leaders per live node within the
// tolerance of the mean, nothing in flight) or a time limit, and reports the
// operations issued, the simulated time to converge and samples of the
// spread over time.
package sim
