package robustness

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// op builds an operation for the tables: client, call, return (-1:
// unknown outcome), input, output.
func op(client int, call, ret int64, in Input, out Output) Op {
	if ret < 0 {
		out.Unknown = true
	}
	return Op{Client: client, Call: call, Return: ret, Input: in, Output: out}
}

func put(k, v string) Input { return Input{Kind: OpPut, Key: k, Value: v} }
func get(k string) Input    { return Input{Kind: OpGet, Key: k} }
func del(k string) Input    { return Input{Kind: OpDelete, Key: k} }
func casRev(k string, rev int64, v string) Input {
	return Input{Kind: OpCASRev, Key: k, ExpectRev: rev, Value: v}
}
func casValue(k, want, v string) Input {
	return Input{Kind: OpCASValue, Key: k, ExpectValue: want, Value: v}
}
func rev(r int64) Output { return Output{Rev: r} }
func found(r int64, v string, mod, create, ver int64) Output {
	return Output{Rev: r, Found: true, Value: v, ModRev: mod, CreateRev: create, Version: ver}
}

func TestKVModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"sequential put get", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, get("a"), found(150, "1", 100, 100, 1)),
			op(0, 40, 50, put("a", "2"), rev(200)),
			op(0, 60, 70, get("a"), found(250, "2", 200, 100, 2)),
		}, porcupine.Ok},
		{"stale read", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, put("a", "2"), rev(200)),
			op(1, 40, 50, get("a"), found(250, "1", 100, 100, 1)),
		}, porcupine.Illegal},
		{"concurrent read may see either", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 60, put("a", "2"), rev(200)),
			op(1, 30, 50, get("a"), found(150, "1", 100, 100, 1)),
		}, porcupine.Ok},
		{"wrong mod revision", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, get("a"), found(150, "1", 90, 90, 1)),
		}, porcupine.Illegal},
		{"wrong version", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, put("a", "2"), rev(110)),
			op(0, 40, 50, get("a"), found(150, "2", 110, 100, 3)),
		}, porcupine.Illegal},
		{"header revision below the write it shows", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, get("a"), found(90, "1", 100, 100, 1)),
		}, porcupine.Illegal},
		{"write revision below a read ordered before it", []Op{
			op(0, 0, 10, get("a"), Output{Rev: 300}),
			op(0, 20, 30, put("a", "1"), rev(200)),
		}, porcupine.Illegal},
		{"delete then recreate", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, del("a"), Output{Rev: 200, Deleted: 1}),
			op(0, 40, 50, del("a"), Output{Rev: 250}),
			op(0, 60, 70, put("a", "2"), rev(300)),
			op(0, 80, 90, get("a"), found(350, "2", 300, 300, 1)),
		}, porcupine.Ok},
		{"delete of a missing key deletes nothing", []Op{
			op(0, 0, 10, del("a"), Output{Rev: 200, Deleted: 1}),
		}, porcupine.Illegal},
		{"ambiguous put applied, revealed by a read", []Op{
			op(0, 0, -1, put("a", "1"), Output{}),
			op(1, 20, 30, get("a"), found(150, "1", 120, 120, 1)),
		}, porcupine.Ok},
		{"ambiguous put never applied", []Op{
			op(0, 0, -1, put("a", "1"), Output{}),
			op(1, 20, 30, get("a"), Output{Rev: 150}),
		}, porcupine.Ok},
		{"value nobody wrote", []Op{
			op(0, 0, -1, put("a", "1"), Output{}),
			op(1, 20, 30, get("a"), found(150, "2", 120, 120, 1)),
		}, porcupine.Illegal},
		{"cas on mod revision", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, casRev("a", 100, "2"), Output{Rev: 200, Succeeded: true}),
			op(1, 40, 50, casRev("a", 100, "3"), Output{Rev: 250, Found: true, Value: "2", ModRev: 200, CreateRev: 100, Version: 2}),
			op(1, 60, 70, casRev("b", 0, "x"), Output{Rev: 300, Succeeded: true}),
		}, porcupine.Ok},
		{"cas succeeds on a stale revision", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, put("a", "2"), rev(200)),
			op(1, 40, 50, casRev("a", 100, "3"), Output{Rev: 250, Succeeded: true}),
		}, porcupine.Illegal},
		{"cas on the revision of an ambiguous put", []Op{
			op(0, 0, -1, put("a", "1"), Output{}),
			op(1, 20, 30, casRev("a", 120, "2"), Output{Rev: 200, Succeeded: true}),
			op(1, 40, 50, get("a"), found(250, "2", 200, 120, 2)),
		}, porcupine.Ok},
		{"cas on value", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(1, 20, 30, casValue("a", "1", "2"), Output{Rev: 200, Succeeded: true}),
			op(1, 40, 50, casValue("a", "1", "3"), Output{Rev: 250, Found: true, Value: "2", ModRev: 200, CreateRev: 100, Version: 2}),
			op(1, 60, 70, casValue("b", "", "3"), Output{Rev: 300}),
		}, porcupine.Ok},
		{"value compare on a missing key is false", []Op{
			op(1, 0, 10, casValue("b", "", "3"), Output{Rev: 300, Succeeded: true}),
		}, porcupine.Illegal},
		{"lost acknowledged write", []Op{
			op(0, 0, 10, put("a", "1"), rev(100)),
			op(0, 20, 30, get("a"), Output{Rev: 150}),
		}, porcupine.Illegal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(CloseOps(tt.ops), nil, 10*time.Second)
			if r.Linearizable != tt.want {
				t.Fatalf("porcupine says %v, want %v", r.Linearizable, tt.want)
			}
		})
	}
}

func TestCheckRevisions(t *testing.T) {
	ok := []Op{
		op(0, 0, 10, put("a", "1"), rev(100)),
		op(1, 5, 15, get("b"), rev(90)), // concurrent: may be lower
		op(1, 20, 30, get("b"), rev(100)),
		op(0, 20, 30, put("b", "1"), rev(101)),
		op(2, 0, -1, put("c", "1"), Output{}),
	}
	if errs := CheckRevisions(CloseOps(ok)); len(errs) != 0 {
		t.Fatalf("valid history: %v", errs)
	}
	bad := []Op{
		op(0, 0, 10, put("a", "1"), rev(100)),
		op(1, 20, 30, get("b"), rev(99)),
	}
	if errs := CheckRevisions(CloseOps(bad)); len(errs) != 1 {
		t.Fatalf("read below an earlier write: %d errors (%v), want 1", len(errs), errs)
	}
	sameRevWrite := []Op{
		op(0, 0, 10, get("a"), rev(100)),
		op(1, 20, 30, put("b", "1"), rev(100)),
	}
	if errs := CheckRevisions(CloseOps(sameRevWrite)); len(errs) != 1 {
		t.Fatalf("write at an earlier read's revision: %d errors (%v), want 1", len(errs), errs)
	}
}

func TestCheckAcknowledged(t *testing.T) {
	v := func(s string) *string { return &s }
	ops := CloseOps([]Op{
		op(0, 0, 10, put("a", "1"), rev(100)),
		op(0, 20, 30, put("a", "2"), rev(200)),
		op(1, 0, 10, put("b", "1"), rev(100)),
		op(2, 0, 10, put("c", "1"), rev(100)),
		op(2, 5, -1, del("c"), Output{}),
	})
	if errs := CheckAcknowledged(ops, map[string]*string{"a": v("2"), "b": v("1"), "c": nil}); len(errs) != 0 {
		t.Fatalf("nothing lost: %v", errs)
	}
	if errs := CheckAcknowledged(ops, map[string]*string{"a": v("1"), "b": nil}); len(errs) != 2 {
		t.Fatalf("put a=2 and b=1 lost: got %d errors (%v), want 2", len(errs), errs)
	}
}

// TestReplayHistories replays every history kept under testdata/ through
// the checkers: recorded failures must still be found (the checkers did
// not go blind) and recorded good runs must still pass (they did not get
// stricter than etcd).
func TestReplayHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no histories in testdata/")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			f, err := ReadHistoryFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r := Check(CloseOps(f.Ops), f.Final, time.Minute)
			err = r.Err()
			switch f.Want {
			case "ok":
				if err != nil {
					t.Fatalf("%s: %v", f.Comment, err)
				}
			case "violation":
				if err == nil {
					t.Fatalf("%s: the checkers no longer find the violation", f.Comment)
				}
				t.Logf("found, as recorded: %v", err)
			default:
				t.Fatalf("want %q: must be ok or violation", f.Want)
			}
		})
	}
}
