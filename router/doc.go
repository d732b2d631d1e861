// Package router is Tessera's front door: etcd's KV service on every node,
// the internal service peers forward to, and the range cache.
//
// Any node accepts any request. The router finds the ranges the request
// covers in its cache, and sends the request to each range's leader —
// directly to the local replica when this node leads it, else over the peer
// connection (Internal.Execute). A replica that is not the leader answers
// with a routing error naming the leader; the router retries there, so
// leader changes are not surfaced to clients. A linearizable Range gets one
// fresh revision from the TSO and every covered range answers at it; the
// router merges the parts (shard.MergeRangeResponses). Writes must stay in
// one range for now: a Txn or DeleteRange over several ranges fails with
// FailedPrecondition naming them.
//
// etcd's Maintenance service lives here too (maintenance*.go): alarms and
// status; Snapshot, a whole-cluster backup read at one revision in the
// format of backup.go (docs/snapshot.md); HashKV and the periodic
// corruption check, which compare range replicas at a revision; Defragment
// and MoveLeader; and the auto-compactor (autocompact.go). A backup in
// progress holds back compactions through its node (compaction_hold.go).
//
// Every error returned to a client is one of etcd's rpctypes errors (errors.go
// holds the one mapping table), so etcd clients retry and report correctly.
package router
