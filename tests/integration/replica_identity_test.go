package integration_test

import (
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// replicaIDs returns, per data range, the replica id each node hosts, as
// its raft host reports it; it checks it against the range's descriptor.
func replicaIDs(t *testing.T, c *testcluster.Cluster) map[uint64]map[raftgroup.NodeID]raftgroup.ReplicaID {
	t.Helper()
	out := map[uint64]map[raftgroup.NodeID]raftgroup.ReplicaID{}
	for _, id := range dataRanges {
		out[id] = map[raftgroup.NodeID]raftgroup.ReplicaID{}
		for i := range c.Size() {
			s := c.Node(i)
			r, err := s.Host().ReplicaID(raftgroup.GroupID(id))
			must(t, fmt.Sprintf("replica id of range %d on node %d", id, i), err)
			desc := s.Replica(id).Descriptor().GetReplicas()
			rd := shard.ReplicaOn(s.Replica(id).Descriptor(), c.NodeID(i))
			if rd == nil || raftgroup.ReplicaID(rd.GetReplicaId()) != r {
				t.Fatalf("range %d on node %d: raft runs as %s, descriptor says %v", id, i, r, desc)
			}
			out[id][c.NodeID(i)] = r
		}
	}
	return out
}

// TestReplicaIDsDistinctFromNodeIDs runs a cluster whose ranges' raft peer
// ids are replica ids that differ from the node ids on most ranges: it
// elects, serves reads and writes, moves leadership to a node whose replica
// id is not its node id (the host translates), and survives a node restart
// with the same replica ids.
func TestReplicaIDsDistinctFromNodeIDs(t *testing.T) {
	c, cli := newClusterClient(t)
	ids := replicaIDs(t, c)
	differ := 0
	for _, byNode := range ids {
		for n, r := range byNode {
			if uint64(n) != uint64(r) {
				differ++
			}
		}
	}
	if differ == 0 {
		t.Fatalf("every replica id equals its node id (%v): the mapping is not exercised", ids)
	}

	putAll := func(tag string) {
		t.Helper()
		for _, p := range rangeKeys {
			put(t, cli, p+"/ident/"+tag, tag)
		}
	}
	getAll := func(cli *clientv3.Client, tags ...string) {
		t.Helper()
		g, err := cli.Get(tctx(t), "", clientv3.WithPrefix())
		must(t, "get", err)
		var want []string
		for _, p := range rangeKeys {
			for _, tag := range tags {
				want = append(want, p+"/ident/"+tag)
			}
		}
		wantKeys(t, "keys", g.Kvs, want...)
	}
	putAll("a")
	getAll(cli, "a")

	// Move each range's leadership to a node whose replica id differs from
	// its node id; Leader and Status speak node ids.
	for _, id := range dataRanges {
		target := -1
		for i := range c.Size() {
			if r := ids[id][c.NodeID(i)]; uint64(r) != uint64(c.NodeID(i)) && i != c.Leader(id) {
				target = i
				break
			}
		}
		if target < 0 {
			continue
		}
		c.TransferLeader(id, target)
		st, err := c.Node(target).Host().Status(raftgroup.GroupID(id))
		must(t, "status", err)
		if !st.IsLeader || st.Leader != c.NodeID(target) {
			t.Fatalf("range %d after transfer to node %d: status %+v", id, target, st)
		}
		for _, v := range st.Voters {
			if v < 1 || int(v) > c.Size() {
				t.Fatalf("range %d: voters %v are not node ids", id, st.Voters)
			}
		}
	}
	putAll("b")
	getAll(cli, "a", "b")

	// Restart a node: it comes back with the same replica ids and catches up.
	c.Restart(1)
	c.WaitReady(t)
	if got := replicaIDs(t, c); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("replica ids after restart %v, before %v", got, ids)
	}
	putAll("c")
	getAll(c.NodeClient(t, 1), "a", "b", "c")
}
