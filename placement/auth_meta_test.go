package placement

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"
)

// TestAuthRecordRoundTrip: the persisted record restores the same state.
func TestAuthRecordRoundTrip(t *testing.T) {
	s := tableState(t)
	s.tokenKey = []byte("key")
	rec, err := s.Record()
	if err != nil {
		t.Fatal(err)
	}
	got, err := AuthStateFromRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	rec2, err := got.Record()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(rec, rec2) || got.Revision() != s.Revision() || !got.Enabled() || string(got.TokenKey()) != "key" {
		t.Errorf("round trip: %v -> %v", rec, rec2)
	}
	if err := got.CheckRange("reader", []byte("r/x"), nil, false); err != nil {
		t.Errorf("restored reader: %v", err)
	}
}

// TestAuthApplyRequest: each InternalRaftRequest kind reaches its change.
func TestAuthApplyRequest(t *testing.T) {
	s := NewAuthState()
	for i, r := range []*etcdpb.InternalRaftRequest{
		{AuthUserAdd: &etcdpb.AuthUserAddRequest{Name: "root", HashedPassword: "h"}},
		{AuthUserGrantRole: &etcdpb.AuthUserGrantRoleRequest{User: "root", Role: "root"}},
		{AuthRoleAdd: &etcdpb.AuthRoleAddRequest{Name: "r"}},
		{AuthRoleGrantPermission: &etcdpb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{PermType: authpb.READ, Key: []byte("k")}}},
		{AuthUserAdd: &etcdpb.AuthUserAddRequest{Name: "u", HashedPassword: "h"}},
		{AuthUserGrantRole: &etcdpb.AuthUserGrantRoleRequest{User: "u", Role: "r"}},
		{AuthEnable: &etcdpb.AuthEnableRequest{}},
		{AuthUserChangePassword: &etcdpb.AuthUserChangePasswordRequest{Name: "u", HashedPassword: "h2"}},
		{AuthRoleRevokePermission: &etcdpb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("k")}},
		{AuthUserRevokeRole: &etcdpb.AuthUserRevokeRoleRequest{Name: "u", Role: "r"}},
		{AuthRoleDelete: &etcdpb.AuthRoleDeleteRequest{Role: "r"}},
		{AuthUserDelete: &etcdpb.AuthUserDeleteRequest{Name: "u"}},
		{AuthDisable: &etcdpb.AuthDisableRequest{}},
	} {
		before := s.Revision()
		if err := s.applyRequest(r); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		want := before + 1
		if r.AuthEnable != nil {
			want = before // etcd's AuthEnable keeps the revision
		}
		if s.Revision() != want {
			t.Errorf("request %d: revision %d -> %d, want %d", i, before, s.Revision(), want)
		}
	}
	if s.Enabled() || len(s.Users()) != 1 || len(s.Roles()) != 0 {
		t.Errorf("final state: enabled %v users %v roles %v", s.Enabled(), s.Users(), s.Roles())
	}
	if err := s.applyRequest(&etcdpb.InternalRaftRequest{AuthUserDelete: &etcdpb.AuthUserDeleteRequest{Name: "u"}}); !errors.Is(err, rpctypes.ErrGRPCUserNotFound) {
		t.Errorf("delete a deleted user: %v", err)
	}
	if err := s.applyRequest(&etcdpb.InternalRaftRequest{}); err == nil {
		t.Error("an empty request was applied")
	}
}
