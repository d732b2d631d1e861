// Package robustness is Tessera's linearizability harness (issue #5), in
// the manner of etcd's tests/robustness: real tessera processes on
// loopback, concurrent clientv3 traffic over keys in every range, faults
// injected during the traffic (SIGKILL and restart, SIGSTOP/SIGCONT, a
// network partition of one node's peer traffic, leader transfers), and a
// check of every recorded history:
//
//   - porcupine with KVModel: etcd's KV per key, revisions included, and
//     leases (model_lease.go: grant, put with a lease, keep-alive, revoke,
//     expiry; a lease operation takes part in the history of every key
//     of its slot, driven by traffic_lease_test.go);
//   - CheckRevisions: header revisions never go back in real time;
//   - CheckAcknowledged: no acknowledged write is lost;
//   - every replica of every range has the same content hash at the same
//     applied index (Internal.Hash).
//
// The package's non-test files hold the model, the checkers and the
// fault-injecting proxy; the process harness and the scenarios are in its
// tests. `make test` runs a short set on three nodes; `make robustness`
// (ROBUSTNESS_LONG=1) runs three- and five-node clusters for longer.
package robustness
