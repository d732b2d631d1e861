// Package engine owns the one Pebble database of a Tessera node.
//
// Every Raft group hosted on the node, and all of their data, live in this one
// engine. The package knows nothing of Raft, gRPC or etcd's types: it offers a
// key layout, a versioned (MVCC) key encoding with a Pebble Comparer, batches,
// iterators, snapshots, and SST export/ingest for moving a span between engines.
//
// # Key layout
//
// Every key stored in Pebble is an encoded key: a prefix, a 0x00 sentinel, and
// an optional 9-byte version suffix:
//
//	prefix 0x00                        unversioned key (local keys)
//	prefix 0x00 ^rev(8, big endian) 0x09  version rev of prefix (data keys)
//
// The last byte says how long the suffix is (0: none, 9: a revision), which is
// what the Comparer's Split uses. Keys compare by prefix bytes first, then by
// suffix: the bare key first, then versions newest first (the revision is
// stored bit-inverted so that bytes order equals descending revision). So the
// versions of one user key are adjacent, newest first, and a seek to
// (key, rev) lands on the newest version at or below rev.
//
// The first byte of a prefix names its key space:
//
//	0x01 group(8) sec kind [idx(8)] local keys of one Raft group (see Kind*);
//	                                sec is 'r' (replicated: applied state,
//	                                descriptor, range state, change log
//	                                by revision) or 'u' (unreplicated: raft
//	                                HardState, log, truncated state)
//	0x02 name                       store-local keys (node identity, ...)
//	0x03 userkey                    data: MVCC versions of etcd user keys
//	0x05 name                       replicated system data (cluster metadata)
//
// A group's local keys are one contiguous span (LocalGroupSpan), so a replica
// can be dropped or replaced with one range deletion. User keys are not
// prefixed by any range or group id: a range [a, b) of the keyspace is the
// contiguous engine span DataSpan(a, b), so splitting a range moves no data.
//
// # Values of data keys
//
// A version holds either a tombstone or (create revision, version, lease,
// value); see Value. Worked example for user key "k":
//
//	put k=v1 @5   -> 0x03 k 0x00 ^5 0x09   {create 5, version 1, v1}
//	put k=v2 @9   -> 0x03 k 0x00 ^9 0x09   {create 5, version 2, v2}
//	del k    @12  -> 0x03 k 0x00 ^12 0x09  tombstone
//	put k=v3 @20  -> 0x03 k 0x00 ^20 0x09  {create 20, version 1, v3}
//
// Physical order is @20, @12, @9, @5. A read at 10 seeks to (k, 10) and finds
// @9; a read at 15 finds the tombstone @12 (k absent). Compaction at 15 keeps
// nothing at or below 15 for k (the newest such version is a tombstone) and
// leaves @20; compaction at 10 keeps @9 and drops @5.
//
// # Durability
//
// Batches commit with or without fsync; the caller decides (Raft log appends
// sync, state machine applies need not because the log replays them). The
// engine counts fsyncs of its write-ahead log so that batching can be measured.
package engine
