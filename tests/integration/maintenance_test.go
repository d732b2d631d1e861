package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestHashKVAndCorruptCheck: etcdctl endpoint hashkv's RPC answers the same
// hash on every node of a healthy three-node cluster, at a given revision
// and at a fresh one; once one replica's data is altered under the engine,
// that node's hash differs, and the periodic corruption check raises
// etcd's CORRUPT alarm for it, after which requests fail with etcd's
// "corrupt cluster".
func TestHashKVAndCorruptCheck(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{SplitKeys: []string{"m"}, Configure: func(cfg *server.Config) {
		cfg.CorruptCheckTime = 200 * time.Millisecond
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var last *pb.PutResponse
	for _, k := range []string{"apple", "banana", "mango", "zebra", "apple"} {
		resp, err := cli.Put(ctx, k, "v-"+k)
		if err != nil {
			t.Fatal(err)
		}
		last = (*pb.PutResponse)(resp)
	}
	rev := last.Header.Revision
	hashes := func(rev int64) []*pb.HashKVResponse {
		t.Helper()
		var out []*pb.HashKVResponse
		for i := range c.Size() {
			resp, err := c.NodeClient(t, i).HashKV(ctx, c.Endpoint(i), rev)
			if err != nil {
				t.Fatalf("node %d: hashkv at %d: %v", i+1, rev, err)
			}
			out = append(out, (*pb.HashKVResponse)(resp))
		}
		return out
	}
	for _, at := range []int64{rev, 0} {
		hs := hashes(at)
		for i, h := range hs {
			if h.Hash != hs[0].Hash || (at > 0 && h.HashRevision != at) {
				t.Fatalf("healthy cluster, hashkv at %d: node %d hash %08x at %d, node 1 %08x at %d", at, i+1, h.Hash, h.HashRevision, hs[0].Hash, hs[0].HashRevision)
			}
		}
		t.Logf("hashkv at %d: %08x on every node", at, hs[0].Hash)
	}
	if _, err := c.NodeClient(t, 0).HashKV(ctx, c.Endpoint(0), rev+1<<40); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("hashkv in the future: %v, want %v", err, rpctypes.ErrFutureRev)
	}

	// Alter node 2's copy of "apple" (range [, m)): same revision, another
	// value.
	g, err := cli.Get(ctx, "apple")
	if err != nil {
		t.Fatal(err)
	}
	kv := g.Kvs[0]
	b := c.Node(1).Engine().NewWriteBatch()
	if err := engine.MVCCPut(b, kv.Key, engine.Revision(kv.ModRevision), engine.Value{CreateRev: engine.Revision(kv.CreateRevision), Version: kv.Version, Data: []byte("bogus")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	hs := hashes(rev)
	if hs[1].Hash == hs[0].Hash || hs[2].Hash != hs[0].Hash {
		t.Errorf("after altering node 2's replica: hashes %08x %08x %08x, want only node 2's different", hs[0].Hash, hs[1].Hash, hs[2].Hash)
	}

	// The periodic check raises CORRUPT for node 2.
	deadline := time.Now().Add(testcluster.ReadyTimeout)
	for {
		resp, err := cli.AlarmList(ctx)
		if err == nil && len(resp.Alarms) > 0 {
			if len(resp.Alarms) != 1 || resp.Alarms[0].MemberID != 2 || resp.Alarms[0].Alarm != pb.AlarmType_CORRUPT {
				t.Fatalf("alarms %v, want CORRUPT for member 2", resp.Alarms)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CORRUPT alarm after %v: %v %v", testcluster.ReadyTimeout, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// As in etcd, a cluster with CORRUPT raised refuses requests (on the
	// meta nodes at once: they hold the alarm).
	if _, err := c.NodeClient(t, 0).Put(ctx, "after", "x"); !errors.Is(err, rpctypes.ErrCorrupt) {
		t.Errorf("put with CORRUPT raised: %v, want %v", err, rpctypes.ErrCorrupt)
	}
}

// TestAutoCompactionRevisionMode: --auto-compaction-mode revision
// --auto-compaction-retention 10 keeps the history of the newest ten writes
// of the whole cluster (counted over both ranges): the eleventh newest
// write's revision gets compacted, the tenth newest stays readable.
func TestAutoCompactionRevisionMode(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{SplitKeys: []string{"m"}, Configure: func(cfg *server.Config) {
		cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "revision", "10"
		cfg.AutoCompactionRevisionInterval = 100 * time.Millisecond
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var revs []int64
	for i := range 30 {
		k := "a"
		if i%2 == 1 {
			k = "z" // the other range
		}
		resp, err := cli.Put(ctx, k, "v")
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, resp.Header.Revision)
	}
	tenth, eleventh := revs[len(revs)-10], revs[len(revs)-11]
	deadline := time.Now().Add(testcluster.ReadyTimeout)
	for {
		_, err := cli.Get(ctx, "a", clientv3.WithRev(eleventh))
		if errors.Is(err, rpctypes.ErrCompacted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 11th newest write's revision %d is not compacted: %v", eleventh, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cli.Get(ctx, "z", clientv3.WithRev(tenth)); err != nil {
		t.Errorf("read at the 10th newest write's revision %d: %v", tenth, err)
	}
}

// TestSnapshotHoldsCompaction: while a backup is being streamed (here held
// open by a client that does not read), writes go on, and a compaction
// through the same node above the backup's revision waits until the backup
// ends; the backup is then complete and valid, and the compaction done.
func TestSnapshotHoldsCompaction(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{SplitKeys: []string{"m"}})
	c.WaitReady(t)
	cli := c.NodeClient(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := strings.Repeat("x", 64<<10)
	for i := range 64 { // 4 MiB: more than gRPC's flow-control windows
		if _, err := cli.Put(ctx, fmt.Sprintf("%c/%d", 'a'+i%26, i), big); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	put, err := cli.Put(ctx, "during", "backup")
	if err != nil {
		t.Fatalf("put while a backup is streamed: %v", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = cli.Compact(cctx, put.Header.Revision)
	ccancel()
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded &&
		// The server's own deadline can end the wait first: etcd's timeout.
		rpctypes.ErrorDesc(err) != rpctypes.ErrTimeout.Error() {
		t.Fatalf("compaction above the backup's revision during the backup: %v, want it to wait", err)
	}
	var buf bytes.Buffer
	buf.Write(first.GetBlob())
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(resp.GetBlob())
	}
	info, err := router.ReadBackup(bytes.NewReader(buf.Bytes()), int64(buf.Len()), false, nil)
	if err != nil {
		t.Fatalf("backup streamed during a held compaction: %v", err)
	}
	if info.Footer.GetKeys() != 64 || info.Header.GetRevision() >= put.Header.Revision {
		t.Errorf("backup: %d keys at revision %d, want 64 keys below the later put's %d", info.Footer.GetKeys(), info.Header.GetRevision(), put.Header.Revision)
	}
	if _, err := cli.Compact(ctx, put.Header.Revision); err != nil {
		t.Errorf("compaction after the backup: %v", err)
	}
}
