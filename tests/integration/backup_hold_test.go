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
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestSnapshotHoldsCompactionClusterWide: while a backup is streamed from
// node 0 (held open by a client that does not read), a compaction above
// the backup's revision asked of node 1 waits too; once the backup is read
// to its end the compaction completes, and the backup holds exactly the
// keys, values and revisions written before it.
func TestSnapshotHoldsCompactionClusterWide(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{SplitKeys: []string{"h", "p"}})
	c.WaitReady(t)
	cliA, cliB := c.NodeClient(t, 0), c.NodeClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := strings.Repeat("y", 64<<10)
	want := map[string]int64{} // key -> mod revision
	for i := range 64 {        // 4 MiB: more than gRPC's flow-control windows
		k := fmt.Sprintf("%c/%d", 'a'+i%26, i)
		resp, err := cliA.Put(ctx, k, big)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = resp.Header.Revision
	}
	stream, err := pb.NewMaintenanceClient(cliA.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	put, err := cliB.Put(ctx, "during", "backup")
	if err != nil {
		t.Fatalf("put while a backup is streamed: %v", err)
	}
	// Held: a compaction through node 1 does not finish while the backup
	// on node 0 runs.
	cctx, ccancel := context.WithTimeout(ctx, time.Second)
	_, err = cliB.Compact(cctx, put.Header.Revision)
	ccancel()
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded &&
		// The server's own deadline can end the wait first: etcd's timeout.
		rpctypes.ErrorDesc(err) != rpctypes.ErrTimeout.Error() {
		t.Fatalf("compaction through another node above the backup's revision during the backup: %v, want it to wait", err)
	}
	compacted := make(chan error, 1)
	go func() {
		_, err := cliB.Compact(ctx, put.Header.Revision)
		compacted <- err
	}()
	var buf bytes.Buffer
	buf.Write(first.GetBlob())
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("backup while a compaction through another node waits: %v", err)
		}
		buf.Write(resp.GetBlob())
	}
	got := map[string]*mvccpb.KeyValue{}
	info, err := router.ReadBackup(bytes.NewReader(buf.Bytes()), int64(buf.Len()), false, func(_ uint64, kv *mvccpb.KeyValue) error {
		got[string(kv.Key)] = kv
		return nil
	})
	if err != nil {
		t.Fatalf("backup streamed during a held compaction: %v", err)
	}
	if info.Header.GetRevision() >= put.Header.Revision {
		t.Errorf("backup revision %d, want below the later put's %d", info.Header.GetRevision(), put.Header.Revision)
	}
	if len(got) != len(want) {
		t.Errorf("backup holds %d keys, want %d", len(got), len(want))
	}
	for k, rev := range want {
		kv := got[k]
		if kv == nil || kv.ModRevision != rev || kv.CreateRevision != rev || kv.Version != 1 || string(kv.Value) != big {
			t.Errorf("backup: key %q = %v, want mod/create revision %d, version 1, the value written", k, kv, rev)
		}
	}
	select {
	case err := <-compacted:
		if err != nil {
			t.Fatalf("compaction after the backup: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("compaction through node 1 still waits after the backup ended")
	}
	// The compaction did happen: below it is compacted on every node.
	if _, err := cliA.Get(ctx, "a/0", clientv3.WithRev(put.Header.Revision-1)); err == nil {
		t.Errorf("read below the compaction revision %d succeeded", put.Header.Revision)
	}
}
