package integration_test

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestAlarmNoSpace follows etcd's NOSPACE semantics (its capped applier) on a
// four-node cluster, whose fourth node holds no meta group replica: while a
// member's NOSPACE alarm is active, every node refuses Put and Txn with a
// put, and serves Range, DeleteRange, read-only Txn and Compact; alarm list
// shows the alarm on every node; once disarmed, puts succeed again.
func TestAlarmNoSpace(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 4, SplitKeys: []string{"m"}})
	c.WaitReady(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, k := range []string{"a", "z", "del"} {
		if _, err := cli.Put(ctx, k, "before"); err != nil {
			t.Fatal(err)
		}
	}

	// Raise member 2's NOSPACE alarm through node 4 (forwarded to the meta
	// group's leader), as a disk monitor does.
	n4 := c.NodeClient(t, 3)
	resp, err := pb.NewMaintenanceClient(n4.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: 2, Alarm: pb.AlarmType_NOSPACE})
	if err != nil || len(resp.Alarms) != 1 || resp.Alarms[0].MemberID != 2 || resp.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("activate: %v, %v", resp, err)
	}
	for i := range c.Size() {
		nc := c.NodeClient(t, i)
		// Node 4 learns the alarm from the meta group within a second
		// (until then it accepts puts: the probe key).
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := nc.Put(ctx, "probe", "during")
			if errors.Is(err, rpctypes.ErrNoSpace) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: put with NOSPACE active: %v, want %v", i+1, err, rpctypes.ErrNoSpace)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := nc.Txn(ctx).Then(clientv3.OpPut("z", "during")).Commit(); !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Errorf("node %d: txn with a put: %v, want %v", i+1, err, rpctypes.ErrNoSpace)
		}
		if _, err := nc.Txn(ctx).If(clientv3.Compare(clientv3.Value("a"), "=", "before")).Then(clientv3.OpGet("a")).Commit(); err != nil {
			t.Errorf("node %d: read-only txn: %v", i+1, err)
		}
		if g, err := nc.Get(ctx, "a"); err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "before" {
			t.Errorf("node %d: get: %v, %v", i+1, g, err)
		}
		list, err := nc.AlarmList(ctx)
		if err != nil || len(list.Alarms) != 1 || list.Alarms[0].MemberID != 2 || list.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
			t.Errorf("node %d: alarm list: %v, %v", i+1, list, err)
		}
		st, err := nc.Status(ctx, c.Endpoint(i))
		if err != nil || len(st.Errors) != 1 {
			t.Errorf("node %d: status: %v, %v", i+1, st, err)
		}
	}
	if d, err := cli.Delete(ctx, "del"); err != nil || d.Deleted != 1 {
		t.Errorf("delete with NOSPACE active: %v, %v", d, err)
	}
	g, err := cli.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, g.Header.Revision); err != nil {
		t.Errorf("compact with NOSPACE active: %v", err)
	}

	// etcdctl alarm disarm: clientv3 lists the alarms and deactivates each.
	if d, err := n4.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil || len(d.Alarms) != 1 {
		t.Fatalf("disarm: %v, %v", d, err)
	}
	for i := range c.Size() {
		nc := c.NodeClient(t, i)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := nc.Put(ctx, "a", "after")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: put after disarm: %v", i+1, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if list, err := nc.AlarmList(ctx); err != nil || len(list.Alarms) != 0 {
			t.Errorf("node %d: alarm list after disarm: %v, %v", i+1, list, err)
		}
	}
	// Disarming again changes nothing.
	resp, err = pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: 2, Alarm: pb.AlarmType_NOSPACE})
	if err != nil || len(resp.Alarms) != 0 {
		t.Errorf("second deactivate: %v, %v", resp, err)
	}
}
