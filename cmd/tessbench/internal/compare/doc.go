// Package compare runs the same workloads against a local etcd cluster and a
// local Tessera cluster, in turn (etcd, Tessera, etcd, Tessera, …) on one
// machine, and reports each figure with the ratio Tessera/etcd.
//
// What it promises: both clusters get the same settings (node count, data
// root on the same disk, fsync on, the same client and connection counts);
// the clusters are started by this package and stopped by it, and nothing
// else is touched. When no Tessera binary is available, or it does not come
// up, it says so and measures etcd alone, so the tool is useful before the
// server exists.
package compare
