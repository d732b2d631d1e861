package shard

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// benchReplica opens a range replica on an engine with the node's cache
// and memtable sizes, and returns the engine and a function applying one
// command.
func benchReplica(b *testing.B) (*engine.Engine, func(*tesserapb.ShardCommand)) {
	cfg := engine.DefaultConfig(b.TempDir()) // the node's cache and memtable sizes
	cfg.Registerer = prometheus.NewRegistry()
	e, err := engine.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	if err := WriteInitialState(e, hashTestDesc); err != nil {
		b.Fatal(err)
	}
	r, err := Open(Config{NodeID: 1, Engine: e}, raftgroup.GroupID(hashTestDesc.GetRangeId()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	index := uint64(10)
	return e, func(cmd *tesserapb.ShardCommand) {
		data, err := proto.Marshal(cmd)
		if err != nil {
			b.Fatal(err)
		}
		index++
		wb := e.NewBatch()
		defer wb.Close()
		if err := r.Apply(wb, []*raftpb.Entry{{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(index), Term: proto.Uint64(6), Data: data}}); err != nil {
			b.Fatal(err)
		}
		if err := wb.Commit(false); err != nil {
			b.Fatal(err)
		}
		r.Applied(index)
	}
}

// BenchmarkApplyPutLease measures the apply of one put, without and with a
// lease, cycling over 10,000 keys (after the first pass a put overwrites:
// with a lease, the index then replaces an entry). The difference is the
// lease's cost at apply: the revoked-lease check and the index entry.
// Every write, leased or not, also reads each key's version before and
// after it to keep the index exact.
//
//	go test -run XXX -bench BenchmarkApplyPutLease -count 3 ./shard/
func BenchmarkApplyPutLease(b *testing.B) {
	for _, leased := range []bool{false, true} {
		name := "no-lease"
		if leased {
			name = "lease"
		}
		b.Run(name, func(b *testing.B) {
			_, apply := benchReplica(b)
			rev := baseRev
			for i := range b.N {
				var lease int64
				cmd := &tesserapb.ShardCommand{Generation: 1}
				if leased {
					lease = int64(i%100 + 1)
					cmd.Leases = []*tesserapb.LeaseRef{{Id: lease, Incarnation: 1, ValidUntil: math.MaxInt64}}
				}
				op, err := proto.Marshal(leasePutOp(fmt.Sprintf("c/key%05d", i%10000), lease))
				if err != nil {
					b.Fatal(err)
				}
				rev++
				cmd.Revision, cmd.RequestOp = int64(rev), op
				apply(cmd)
			}
		})
	}
}

// BenchmarkRevokeApply measures the apply of one revocation command of
// 1,000 leases, each with one key, on a range holding TESSERA_RANGE_LEASES
// leased keys (default 25,000: a quarter of 100,000 leases on four
// ranges): the work every replica does per revocation batch.
//
//	go test -run XXX -bench BenchmarkRevokeApply ./shard/
func BenchmarkRevokeApply(b *testing.B) {
	total := 25000
	if v, err := strconv.Atoi(os.Getenv("TESSERA_RANGE_LEASES")); err == nil && v > 0 {
		total = v
	}
	const batch = 1000
	e, apply := benchReplica(b)
	rev := baseRev
	// Leases 1..total, one key each, put 1,000 per command.
	for first := 1; first <= total; first += batch {
		txn := &pb.TxnRequest{}
		cmd := &tesserapb.ShardCommand{Generation: 1}
		for id := first; id < first+batch && id <= total; id++ {
			txn.Success = append(txn.Success, leasePutOp(fmt.Sprintf("c/lease%07d", id), int64(id)))
			cmd.Leases = append(cmd.Leases, &tesserapb.LeaseRef{Id: int64(id), Incarnation: 1, ValidUntil: math.MaxInt64})
		}
		op, err := proto.Marshal(&pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: txn}})
		if err != nil {
			b.Fatal(err)
		}
		rev++
		cmd.Revision, cmd.RequestOp = int64(rev), op
		apply(cmd)
	}
	if os.Getenv("TESSERA_FLUSH") != "" {
		if err := e.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	next := 1
	for range b.N {
		if next+batch > total+1 {
			b.Fatal("out of leases: raise TESSERA_RANGE_LEASES")
		}
		cmd := &tesserapb.ShardCommand{Generation: 1}
		for id := next; id < next+batch; id++ {
			cmd.RevokeLeases = append(cmd.RevokeLeases, &tesserapb.LeaseRef{Id: int64(id), Incarnation: 1, ValidUntil: math.MaxInt64 - 1})
		}
		next += batch
		rev++
		cmd.Revision = int64(rev)
		apply(cmd)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*batch), "µs/lease")
}
