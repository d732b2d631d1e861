// Package placement is the placement driver: the meta group and what its
// leader serves.
//
// The meta group is a Raft group like any other (group 1), on the first three
// nodes of the cluster. Its replicated state holds the cluster's bootstrap
// record (cluster id, nodes, initial range descriptors) and the TSO
// high-water mark. Its leader serves the TSO:
//
//   - A timestamp is physical_ms<<18 | logical. Timestamps strictly increase,
//     also across leader changes: a leader never hands out a timestamp at or
//     above the persisted high-water mark, raises the mark (through the meta
//     group) a window ahead before it gets there, and a new leader starts at
//     the mark it finds, which its predecessor never reached.
//   - Each node has one TSO client (TSOClient) that coalesces concurrent
//     requests into one call, always made after the requests arrived.
//
// Layout (InitialLayout) is a pure function from the initial cluster to the
// initial range descriptors. Splits, merges, rebalancing, memberlist and the
// admin RPC come later; the descriptors already carry generations so that
// routers can be corrected by errors once ranges move.
package placement
