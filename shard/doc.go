// Package shard is one range's replicated state machine.
//
// A Replica owns a range's descriptor and applies etcd's KV operations to
// the engine's MVCC data in its span (kv_ops.go), in the order of its Raft
// log. It promises:
//
//   - Revisions: the leader assigns every write a TSO timestamp fetched after
//     the write arrived, and proposes writes in revision order, so revisions
//     increase along the log. All ops of one Txn share one revision.
//   - Reads at a revision R see exactly the writes with revision <= R: the
//     leader first waits until no write it may still propose or commit has a
//     revision <= R, then confirms leadership with ReadIndex and waits for its
//     applied index to reach it.
//   - A request whose keys leave the range, or that names a stale descriptor,
//     fails with a RoutingError carrying the descriptor, so routers correct
//     their caches from errors.
//   - A bad request changes nothing and gets etcd's error (rpctypes).
//
// It knows nothing of other ranges or of routing: the router fans a request
// out over replicas and merges their answers (kv_merge.go).
package shard
