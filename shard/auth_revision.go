package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// The auth revision check at apply (etcd's "auth: revision in header is
// old").
//
// etcd checks a request's permissions when it arrives and again when it
// applies: a request checked under auth revision R is refused at apply when
// the auth store has moved past R (a permission revoked, a user deleted, ...
// in between). Tessera's auth state lives in the meta group, a different
// raft log from the range's, so "the auth revision at apply" must be made a
// function of the range's own log, or replicas would decide differently:
//
//   - The node a request enters checks it and records the auth revision it
//     checked under (ShardCommand.auth_revision) for a put, delete or txn;
//     0 when auth is disabled there, and for compactions and lease
//     revocations (opAuthRevision).
//   - The range leader that proposes it stamps the auth revision its node
//     has applied at that moment (proposer_auth_revision; 0 when auth is
//     disabled there).
//   - Every replica keeps, as replicated state, the highest stamp it has
//     applied (engine.KindAuthRevision, written in the apply batch, carried
//     by raft snapshots, reloaded on restart). At apply, a checked command
//     first raises it with its own stamp, then is refused when its checked
//     revision is below it. Nothing else is written for a refused command.
//
// The decision reads only the command and the replicated state, so every
// replica decides alike. A permission revoked at auth revision R is thus
// enforced at apply for every request checked before R and proposed, or
// applied after another proposal, by a leader that had applied R: a request
// checked on a lagging node is refused once the range's leader knows better.
// A range created by a split starts at 0 and learns from its first stamped
// command. Reads do not go through the log; the entry node's check is theirs
// (etcd checks reads against the auth store once, too).

type authRevisionKey struct{}

// WithAuthRevision returns ctx carrying the auth revision a request was
// permission-checked under (0: not checked). Writes proposed under ctx carry
// it to the apply check.
func WithAuthRevision(ctx context.Context, rev uint64) context.Context {
	if rev == 0 {
		return ctx
	}
	return context.WithValue(ctx, authRevisionKey{}, rev)
}

// AuthRevisionFrom returns the auth revision WithAuthRevision put in ctx, 0
// when none.
func AuthRevisionFrom(ctx context.Context) uint64 {
	rev, _ := ctx.Value(authRevisionKey{}).(uint64)
	return rev
}

// opAuthRevision is the checked auth revision a write carries: only a
// request's op (put, delete, txn) is compared at apply, as etcd compares
// them. A compaction needs root, and a lease revocation by root or by the
// expiry loop is not compared in etcd either; both fan out to every range,
// where a refusal in some ranges only would leave them half done.
func opAuthRevision(ctx context.Context, op *pb.RequestOp) uint64 {
	if op == nil {
		return 0
	}
	return AuthRevisionFrom(ctx)
}

// stampAuthRevision is the proposer's stamp for a command checked under
// checked: the auth revision this node has applied, 0 for an unchecked
// command (it is not compared) or without an AuthRevision source.
func (r *Replica) stampAuthRevision(checked uint64) uint64 {
	if checked == 0 || r.cfg.AuthRevision == nil {
		return 0
	}
	return r.cfg.AuthRevision()
}

// checkAuthRevisionLocked applies the command's stamp and refuses a command
// checked under an older auth revision than the range knows.
func (r *Replica) checkAuthRevisionLocked(b *engine.Batch, cmd *tesserapb.ShardCommand) error {
	checked := cmd.GetAuthRevision()
	if checked == 0 {
		return nil
	}
	if stamp := cmd.GetProposerAuthRevision(); stamp > r.mu.authRev {
		r.mu.authRev = stamp
		v := binary.BigEndian.AppendUint64(nil, stamp)
		if err := b.Set(engine.LocalGroupKey(uint64(r.group), engine.KindAuthRevision), v); err != nil {
			return storageError{err: fmt.Errorf("shard: range %d: write auth revision: %w", r.group, err)}
		}
	}
	if checked < r.mu.authRev {
		if cmd.GetProposerNode() == uint64(r.cfg.NodeID) {
			r.cfg.Metrics.authOldRevision.Inc()
		}
		return rpctypes.ErrGRPCAuthOldRevision
	}
	return nil
}

// loadAuthRevisionLocked reads the range's auth revision (0 when it has
// applied no stamped command).
func (r *Replica) loadAuthRevisionLocked() error {
	v, err := r.cfg.Engine.Get(engine.LocalGroupKey(uint64(r.group), engine.KindAuthRevision))
	switch {
	case errors.Is(err, engine.ErrNotFound):
		r.mu.authRev = 0
		return nil
	case err != nil:
		return fmt.Errorf("shard: range %d: read auth revision: %w", r.group, err)
	case len(v) != 8:
		return fmt.Errorf("shard: range %d: auth revision of %d bytes", r.group, len(v))
	}
	r.mu.authRev = binary.BigEndian.Uint64(v)
	return nil
}

// AuthRevision returns the highest auth revision the range has applied.
func (r *Replica) AuthRevision() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.authRev
}
