// Package bench is the measuring harness of tessbench: it drives requests
// against any etcd-API endpoint and reports what it saw.
//
// What it owns:
//
//   - Scheduling. A closed loop runs every client back to back. An open loop
//     (RunConfig.Rate > 0) gives request i the intended send time t0 + i/Rate;
//     a free client claims the next request, waits until its intended time if
//     that is still ahead, and sends it. Latency is always completion minus the
//     intended time, so a request that waited for a busy client counts the wait
//     (no coordinated omission).
//   - Recording. Latencies go into HDR histograms (one per client and op, merged
//     at the end, so recording takes no lock); failures are counted by gRPC code
//     and etcd error string (see Classify).
//   - Reporting. A Result renders as a table (WriteTable) or as JSON, and carries
//     each op's full histogram in the HdrHistogram V2 compressed format so that
//     runs can be merged and re-analysed.
//   - The workloads: put, range, txn-put, watch, lease-keepalive and mixed
//     (see Workload and the workload_*.go files).
//
// What it promises: every request that the schedule issued is either in a
// latency histogram or in the error counts; the scheduled requests that a hard
// stop prevented from being sent are reported as Result.Unsent.
//
// What it must never do: know which server it talks to. Everything here speaks
// only the etcd v3 API through go.etcd.io/etcd/client/v3, so the same numbers
// can be taken against etcd and against Tessera.
package bench
