// Package cluster starts and stops local server clusters for tessbench
// compare and for tests: N nodes of etcd or Tessera (which takes etcd's
// flags) on free loopback ports, each in its own data directory under one
// root.
//
// What it promises: every process it starts runs in its own process group
// and is tracked by PID; Stop signals exactly those groups (SIGTERM, then
// SIGKILL after a grace period), waits for them, and removes the data root.
// It never looks for, signals or waits on a process it did not start.
//
// What it must never do: pass --unsafe-no-fsync or any other setting that
// makes one system faster than the other in a way users would not run it.
package cluster
