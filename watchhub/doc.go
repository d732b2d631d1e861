// Package watchhub serves etcd's Watch API on every node.
//
// A range publishes a change feed (shard.Replica.Feed, served by its leader
// over Internal.Feed): its events in revision order plus resolved-revision
// checkpoints. The hub of a node keeps one feed subscription per range that
// any of its watchers covers and merges them into one revision order: it
// releases the events up to the released revision G, the smallest frontier
// of its subscriptions (every event <= G of every subscribed range has been
// received). When some range has events beyond G, the hub asks the ranges
// behind to resolve up to them, so idle ranges do not hold others back.
//
// A watcher is synced or unsynced, as in etcd's watchable store. Synced
// watchers get each released batch from the hub, filtered by their key span;
// all events of one revision go out in one response. A watcher that starts
// below G, or whose stream cannot take a batch (a slow reader), is unsynced:
// it catches up on its own, from the hub's ring of recently released
// revisions or from the ranges' history (Feed with an end revision), and
// joins the synced set when it reaches G. Writers and other watchers never
// wait for it.
//
// A subscription that loses its feed (leader change, restart, network)
// resubscribes from the revision after the last one it received, so nothing
// is lost or repeated. Progress notifications carry a revision R only when
// every event <= R has been sent to the watchers they are for.
package watchhub
