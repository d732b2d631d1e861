package router

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/placement"
)

// authTableFile holds etcd 3.7.3's answers to every RPC as every identity,
// recorded by tests/system's TestAuthTableEtcd.
const authTableFile = "../tests/system/testdata/auth_table_etcd.txt"

// leaseRow ids: the lease each lease row of the table uses, attached to a
// key named after the identity.
var leaseRowKeys = map[int64]string{1: "w/leased-", 2: "r/leased-", 3: "w/ttl-", 4: "w/ka-"}

// tableRequests maps the table's rows to the request each sends (rows
// about tokens and passwords are not permission checks and are left out).
func tableRequests() map[string]any {
	put := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k)}}}
	}
	get := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
	}
	return map[string]any{
		"Range r/a":             &pb.RangeRequest{Key: []byte("r/a")},
		"Range w/a":             &pb.RangeRequest{Key: []byte("w/a")},
		"Range r/ prefix":       &pb.RangeRequest{Key: []byte("r/"), RangeEnd: []byte("r0")},
		"Range all keys":        &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}},
		"Put r/a":               &pb.PutRequest{Key: []byte("r/a")},
		"Put w/a":               &pb.PutRequest{Key: []byte("w/a")},
		"Put w/a prev_kv":       &pb.PutRequest{Key: []byte("w/a"), PrevKv: true},
		"DeleteRange w/b":       &pb.DeleteRangeRequest{Key: []byte("w/b")},
		"DeleteRange w/ prefix": &pb.DeleteRangeRequest{Key: []byte("w/zz"), RangeEnd: []byte("w/zz0")},
		"Txn compare r/a then put w/a": &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("r/a")}}, Success: []*pb.RequestOp{put("w/a")},
		},
		"Txn get r/a else put r/a": &pb.TxnRequest{Success: []*pb.RequestOp{get("r/a")}, Failure: []*pb.RequestOp{put("r/a")}},
		"Txn nested put w/a": &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{
			RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{put("w/a")}}}}}},
		"Txn compare w/a":         &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("w/a")}}},
		"Compact":                 &pb.CompactionRequest{Revision: 1},
		"Watch r/ prefix":         &pb.WatchCreateRequest{Key: []byte("r/"), RangeEnd: []byte("r0")},
		"Watch w/ prefix":         &pb.WatchCreateRequest{Key: []byte("w/"), RangeEnd: []byte("w0")},
		"LeaseGrant":              &pb.LeaseGrantRequest{TTL: 60},
		"LeaseRevoke lease on w/": &pb.LeaseRevokeRequest{ID: 1},
		"LeaseRevoke lease on r/": &pb.LeaseRevokeRequest{ID: 2},
		"LeaseTimeToLive keys":    &pb.LeaseTimeToLiveRequest{ID: 3, Keys: true},
		"LeaseLeases":             &pb.LeaseLeasesRequest{},
		"LeaseKeepAlive":          &pb.LeaseKeepAliveRequest{ID: 4},
		"MemberList":              &pb.MemberListRequest{},
		"Status":                  &pb.StatusRequest{},
		"Alarm GET":               &pb.AlarmRequest{Action: pb.AlarmRequest_GET},
		"Hash":                    &pb.HashRequest{},
		"HashKV":                  &pb.HashKVRequest{},
		"Defragment":              &pb.DefragmentRequest{},
		"Snapshot":                &pb.SnapshotRequest{},
		"AuthStatus":              &pb.AuthStatusRequest{},
		"UserList":                &pb.AuthUserListRequest{},
		"UserGet reader":          &pb.AuthUserGetRequest{Name: "reader"},
		"RoleGet reader":          &pb.AuthRoleGetRequest{Role: "reader"},
		"UserAdd":                 &pb.AuthUserAddRequest{Name: "new"},
	}
}

// tableAuthState holds the table's users and roles: root; reader (READ
// on prefix r/); writer (WRITE on prefix w/); norole.
func tableAuthState(t *testing.T) *placement.AuthState {
	t.Helper()
	s := placement.NewAuthState()
	for _, err := range []error{
		s.UserAdd("root", []byte("h"), nil), s.UserGrantRole("root", "root"),
		s.RoleAdd("reader"), s.RoleGrantPermission("reader", &authpb.Permission{PermType: authpb.READ, Key: []byte("r/"), RangeEnd: []byte("r0")}),
		s.RoleAdd("writer"), s.RoleGrantPermission("writer", &authpb.Permission{PermType: authpb.WRITE, Key: []byte("w/"), RangeEnd: []byte("w0")}),
		s.UserAdd("reader", []byte("h"), nil), s.UserGrantRole("reader", "reader"),
		s.UserAdd("writer", []byte("h"), nil), s.UserGrantRole("writer", "writer"),
		s.UserAdd("norole", []byte("h"), nil), s.Enable(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestCheckRequestMatchesEtcd decides every request of the recorded table
// as every identity with a user (and with none) and compares with etcd
// 3.7.3's answer. Tokens (bad, expired) are not permission checks and are
// not covered here.
func TestCheckRequestMatchesEtcd(t *testing.T) {
	f, err := os.Open(authTableFile)
	if err != nil {
		t.Fatalf("the recorded table: %v", err)
	}
	defer f.Close()
	s := tableAuthState(t)
	reqs := tableRequests()
	users := map[string]string{"root": "root", "reader": "reader", "writer": "writer", "norole": "norole", "notoken": ""}
	checked := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		lhs, want, ok := strings.Cut(line, " => ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		id, row, _ := strings.Cut(lhs, " ")
		row = strings.TrimSpace(row)
		user, ok := users[id]
		req, known := reqs[row]
		if !ok || !known {
			continue
		}
		// Watch answers are a canceled creation carrying the error's text.
		want = strings.TrimPrefix(want, "watch canceled: ")
		leaseKeys := func(lid int64) ([][]byte, error) { return [][]byte{[]byte(leaseRowKeys[lid] + id)}, nil }
		got := "OK"
		if err := CheckRequest(s, user, req, leaseKeys); err != nil {
			st, _ := status.FromError(err)
			got = st.Code().String() + ": " + st.Message()
			if strings.HasPrefix(row, "Watch") {
				got = fmt.Sprintf("rpc error: code = %s desc = %s", st.Code(), st.Message())
			}
		}
		if got != want {
			t.Errorf("%s %s: %s; etcd 3.7.3: %s", id, row, got, want)
		}
		checked++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if want := len(reqs) * len(users); checked != want {
		t.Errorf("checked %d answers, want %d", checked, want)
	}
}
