// Package proccluster is the one harness that runs servers as real
// processes: N nodes of Tessera or etcd (Tessera takes etcd's flags) on free
// loopback ports, each with its data directory and log under one root. The
// system tests, the robustness suite, the differential tests and tessbench
// all start their clusters through it (issue #11: one process harness).
//
// What it promises: every process it starts runs in its own process group,
// dies with the process that started it (Pdeathsig), and is tracked by PID;
// Stop, Kill and Signal reach exactly those groups and wait for them. It
// never looks for, signals or waits on a process it did not start. A node
// can be killed (SIGKILL), stopped (SIGTERM), paused (SIGSTOP) and started
// again with the same flags and data; each start and exit is marked in the
// node's log.
//
// What it must never do: pass --unsafe-no-fsync or any other setting that
// makes one system faster than the other in a way users would not run it.
//
//	cfg := proccluster.DefaultConfig("tessera", bin, dir)
//	cfg.ExtraArgs = []string{"--initial-split-keys", "m"}
//	c, err := proccluster.Start(ctx, cfg)
//	...
//	n := c.Node(0)
//	_ = n.Kill(stopTimeout)  // SIGKILL, reaped
//	_ = n.Start()            // same flags, same data dir
//	_ = c.Stop()             // SIGTERM (SIGKILL after the grace), data root removed
package proccluster
