package placement

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// canonicalBootstrap re-encodes a bootstrap record without the nodes'
// client URLs: each initial node knows only its own when it writes the
// record at bootstrap (server.Config.initialCluster), so the copies differ
// there and nowhere else.
func canonicalBootstrap(v []byte) ([]byte, error) {
	b := &tesserapb.ClusterBootstrap{}
	if err := proto.Unmarshal(v, b); err != nil {
		return nil, fmt.Errorf("placement: hash meta state: decode bootstrap: %w", err)
	}
	for _, n := range b.GetNodes() {
		n.ClientUrl = ""
	}
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("placement: hash meta state: encode bootstrap: %w", err)
	}
	return out, nil
}

// Hash returns a CRC-32 (Castagnoli) of the meta group's replicated state
// (every system key and value of its span) and the applied index it is
// exactly at, both read from one engine snapshot (the bootstrap record
// without the client URLs, see canonicalBootstrap). Meta replicas at the same
// applied index must agree.
func (m *Meta) Hash(ctx context.Context) (appliedIndex uint64, sum uint32, err error) {
	snap := m.eng.NewSnapshot()
	defer snap.Close()
	if appliedIndex, err = raftgroup.AppliedIndex(snap, MetaRangeID); err != nil {
		return 0, 0, err
	}
	it, err := snap.NewIter(metaSpan)
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	var lb [binary.MaxVarintLen64]byte
	field := func(b []byte) {
		_, _ = h.Write(lb[:binary.PutUvarint(lb[:], uint64(len(b)))])
		_, _ = h.Write(b)
	}
	for valid := it.First(); valid; valid = it.Next() {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		v, err := it.Value()
		if err != nil {
			return 0, 0, fmt.Errorf("placement: hash meta state: %w", err)
		}
		if bytes.Equal(it.Key(), keyBootstrap) {
			if v, err = canonicalBootstrap(v); err != nil {
				return 0, 0, err
			}
		}
		field(it.Key())
		field(v)
	}
	if err := it.Error(); err != nil {
		return 0, 0, fmt.Errorf("placement: hash meta state: %w", err)
	}
	return appliedIndex, h.Sum32(), nil
}
