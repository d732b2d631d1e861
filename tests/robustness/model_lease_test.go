package robustness

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var slotKeys = []string{"a", "b"}

func grant(id int64, expirable bool) Input {
	return Input{Kind: OpLeaseGrant, Lease: id, Keys: slotKeys, Expirable: expirable}
}
func revoke(id int64) Input    { return Input{Kind: OpLeaseRevoke, Lease: id, Keys: slotKeys} }
func keepAlive(id int64) Input { return Input{Kind: OpLeaseKeepAlive, Lease: id, Keys: slotKeys} }
func putLease(k, v string, id int64) Input {
	return Input{Kind: OpPutLease, Key: k, Value: v, Lease: id}
}
func foundLease(r int64, v string, mod, create, ver, lease int64) Output {
	out := found(r, v, mod, create, ver)
	out.Lease = lease
	return out
}

var (
	ok       = Output{}
	notFound = Output{LeaseNotFound: true}
	none     = func(r int64) Output { return Output{Rev: r} }
)

func TestLeaseModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"revoke deletes the attached key", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 20, 30, putLease("a", "1", 7), rev(100)),
			op(0, 40, 50, get("a"), foundLease(150, "1", 100, 100, 1, 7)),
			op(0, 60, 70, revoke(7), ok),
			op(0, 80, 90, get("a"), none(250)),
		}, porcupine.Ok},
		{"key of a revoked lease still readable", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 20, 30, putLease("a", "1", 7), rev(100)),
			op(0, 60, 70, revoke(7), ok),
			op(0, 80, 90, get("a"), foundLease(250, "1", 100, 100, 1, 7)),
		}, porcupine.Illegal},
		{"put with a revoked lease succeeds", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 20, 30, revoke(7), ok),
			op(0, 40, 50, putLease("a", "1", 7), rev(100)),
		}, porcupine.Illegal},
		{"put with a live lease refused", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 20, 30, putLease("a", "1", 7), notFound),
		}, porcupine.Illegal},
		{"put racing the revoke, then deleted", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(1, 20, 60, putLease("a", "1", 7), rev(100)),
			op(0, 30, 50, revoke(7), ok),
			op(0, 70, 80, get("a"), none(200)),
		}, porcupine.Ok},
		{"put racing the revoke leaves an orphan", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(1, 20, 60, putLease("a", "1", 7), rev(100)),
			op(0, 30, 50, revoke(7), ok),
			op(0, 70, 80, get("a"), foundLease(200, "1", 100, 100, 1, 7)),
		}, porcupine.Illegal},
		{"a lease that is kept alive ends without a revoke", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 20, 30, keepAlive(7), ok),
			op(0, 40, 50, keepAlive(7), notFound),
		}, porcupine.Illegal},
		{"a deposed meta leader denies a fresh lease (partition run, fixed)", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 11, 12, keepAlive(7), notFound),
			op(1, 20, 30, keepAlive(7), ok),
			op(1, 40, 50, putLease("a", "1", 7), rev(100)),
		}, porcupine.Illegal},
		{"an expirable lease expires", []Op{
			op(0, 0, 10, grant(8, true), ok),
			op(0, 20, 30, putLease("a", "1", 8), rev(100)),
			op(0, 40, 50, keepAlive(8), notFound),
			op(0, 60, 70, get("a"), none(200)),
			op(0, 80, 90, putLease("b", "2", 8), notFound),
		}, porcupine.Ok},
		{"an expired lease comes back", []Op{
			op(0, 0, 10, grant(8, true), ok),
			op(0, 40, 50, keepAlive(8), notFound),
			op(0, 80, 90, putLease("b", "2", 8), rev(300)),
		}, porcupine.Illegal},
		{"a put without the lease detaches the key", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 20, 30, putLease("a", "1", 7), rev(100)),
			op(0, 40, 50, put("a", "2"), rev(200)),
			op(0, 60, 70, revoke(7), ok),
			op(0, 80, 90, get("a"), found(250, "2", 200, 100, 2)),
		}, porcupine.Ok},
		{"each range applies the revoke at its own point", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 20, 30, putLease("a", "1", 7), rev(100)),
			op(0, 20, 30, putLease("b", "1", 7), rev(101)),
			op(0, 40, 100, revoke(7), ok),
			op(1, 50, 60, get("a"), none(200)),
			op(1, 70, 80, get("b"), foundLease(210, "1", 101, 101, 1, 7)),
		}, porcupine.Ok},
		{"an ambiguous grant that took effect late", []Op{
			op(0, 0, -1, grant(9, false), ok),
			op(1, 20, 30, putLease("a", "1", 9), notFound),
			op(1, 40, 50, keepAlive(9), ok),
			op(1, 60, 70, putLease("a", "2", 9), rev(100)),
		}, porcupine.Ok},
		{"the lease of a key read wrong", []Op{
			op(0, 0, 10, grant(7, false), ok),
			op(0, 20, 30, putLease("a", "1", 7), rev(100)),
			op(0, 40, 50, get("a"), found(150, "1", 100, 100, 1)),
		}, porcupine.Illegal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(CloseOps(tt.ops), nil, 10*time.Second)
			if r.Linearizable != tt.want {
				t.Fatalf("porcupine: %v, want %v", r.Linearizable, tt.want)
			}
			if errs := r.Errs; len(errs) > 0 {
				t.Fatalf("other checks: %v", errs)
			}
		})
	}
}
