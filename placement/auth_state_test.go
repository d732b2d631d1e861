package placement

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func plainVerify(hash []byte, pw string) bool { return string(hash) == "hash:"+pw }

// tableState builds the users and roles of tests/system's auth table:
// root; reader (READ on prefix r/); writer (WRITE on prefix w/); norole.
func tableState(t *testing.T) *AuthState {
	t.Helper()
	s := NewAuthState()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.UserAdd("root", []byte("hash:rootpw"), nil))
	if err := s.Enable(); !errors.Is(err, rpctypes.ErrGRPCRootRoleNotExist) {
		t.Fatalf("enable without root role: %v", err)
	}
	must(s.UserGrantRole("root", "root"))
	must(s.RoleAdd("reader"))
	must(s.RoleGrantPermission("reader", &authpb.Permission{PermType: authpb.READ, Key: []byte("r/"), RangeEnd: []byte("r0")}))
	must(s.RoleAdd("writer"))
	must(s.RoleGrantPermission("writer", &authpb.Permission{PermType: authpb.WRITE, Key: []byte("w/"), RangeEnd: []byte("w0")}))
	for _, u := range []string{"reader", "writer", "norole"} {
		must(s.UserAdd(u, []byte("hash:"+u+"pw"), nil))
	}
	must(s.UserGrantRole("reader", "reader"))
	must(s.UserGrantRole("writer", "writer"))
	must(s.Enable())
	return s
}

// TestAuthCheckRange: the permission answers etcd 3.7.3 gave for the KV
// rows of tests/system/testdata/auth_table_etcd.txt.
func TestAuthCheckRange(t *testing.T) {
	s := tableState(t)
	deny, empty := rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCUserEmpty
	for _, tc := range []struct {
		user       string
		key, end   string
		write      bool
		want       error
		recordedAs string
	}{
		{"root", "\x00", "\x00", true, nil, "root Range all keys"},
		{"reader", "r/a", "", false, nil, "reader Range r/a"},
		{"reader", "w/a", "", false, deny, "reader Range w/a"},
		{"reader", "r/", "r0", false, nil, "reader Range r/ prefix"},
		{"reader", "\x00", "\x00", false, deny, "reader Range all keys"},
		{"reader", "r/a", "", true, deny, "reader Put r/a"},
		{"writer", "w/a", "", true, nil, "writer Put w/a"},
		{"writer", "w/a", "", false, deny, "writer Put w/a prev_kv (reads w/a)"},
		{"writer", "w/zz", "w/zz0", true, nil, "writer DeleteRange w/ prefix"},
		{"writer", "r/a", "", false, deny, "writer Range r/a"},
		{"norole", "r/a", "", false, deny, "norole Range r/a"},
		{"nobody", "r/a", "", false, deny, "a deleted user"},
		{"", "r/a", "", false, empty, "notoken Range r/a"},
	} {
		if err := s.CheckRange(tc.user, []byte(tc.key), []byte(tc.end), tc.write); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.recordedAs, err, tc.want)
		}
	}
	s.Disable()
	if err := s.CheckRange("", []byte("x"), nil, true); err != nil {
		t.Errorf("auth disabled: %v", err)
	}
}

// TestAuthCovered: permissions merge into intervals as etcd's do.
func TestAuthCovered(t *testing.T) {
	iv := func(k, e string) interval { return toInterval([]byte(k), []byte(e)) }
	for _, tc := range []struct {
		name string
		have []interval
		want interval
		ok   bool
	}{
		{"single key in prefix", []interval{iv("a", "b")}, iv("a1", ""), true},
		{"single key exact", []interval{iv("a", "")}, iv("a", ""), true},
		{"key's neighbour", []interval{iv("a", "")}, iv("a\x00", ""), false},
		{"adjacent intervals", []interval{iv("b", "c"), iv("a", "b")}, iv("a", "c"), true},
		{"gap", []interval{iv("a", "b"), iv("b1", "c")}, iv("a", "c"), false},
		{"overlapping", []interval{iv("a", "c"), iv("b", "d")}, iv("a1", "d"), true},
		{"from-key needs unbounded", []interval{iv("a", "zzzz")}, iv("b", "\x00"), false},
		{"unbounded covers from-key", []interval{iv("a", "\x00")}, iv("b", "\x00"), true},
		{"nothing", nil, iv("a", ""), false},
	} {
		if got := covered(tc.have, tc.want); got != tc.ok {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestAuthManagement: etcd's errors and revision for user and role changes.
func TestAuthManagement(t *testing.T) {
	s := tableState(t)
	rev := s.Revision()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"delete root while enabled", s.UserDelete("root"), rpctypes.ErrGRPCInvalidAuthMgmt},
		{"revoke root's root role", s.UserRevokeRole("root", "root"), rpctypes.ErrGRPCInvalidAuthMgmt},
		{"delete root role", s.RoleDelete("root"), rpctypes.ErrGRPCInvalidAuthMgmt},
		{"add an existing user", s.UserAdd("reader", nil, nil), rpctypes.ErrGRPCUserAlreadyExist},
		{"add an empty user", s.UserAdd("", nil, nil), rpctypes.ErrGRPCUserEmpty},
		{"add an empty role", s.RoleAdd(""), rpctypes.ErrGRPCRoleEmpty},
		{"grant an unknown role", s.UserGrantRole("reader", "nope"), rpctypes.ErrGRPCRoleNotFound},
		{"grant to an unknown user", s.UserGrantRole("nope", "reader"), rpctypes.ErrGRPCUserNotFound},
		{"revoke a role not granted", s.UserRevokeRole("norole", "reader"), rpctypes.ErrGRPCRoleNotGranted},
		{"revoke a permission not granted", s.RoleRevokePermission("reader", []byte("x"), nil), rpctypes.ErrGRPCPermissionNotGranted},
		{"grant no permission", s.RoleGrantPermission("reader", nil), rpctypes.ErrGRPCPermissionNotGiven},
		{"grant a role already held", s.UserGrantRole("reader", "reader"), nil},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if s.Revision() != rev {
		t.Errorf("refused changes moved the revision %d -> %d", rev, s.Revision())
	}
	// Revoking reader's permission takes effect at once, at a new revision.
	if err := s.RoleRevokePermission("reader", []byte("r/"), []byte("r0")); err != nil {
		t.Fatal(err)
	}
	if s.Revision() != rev+1 {
		t.Errorf("revision %d, want %d", s.Revision(), rev+1)
	}
	if err := s.CheckRange("reader", []byte("r/a"), nil, false); !errors.Is(err, rpctypes.ErrGRPCPermissionDenied) {
		t.Errorf("after revoke: %v", err)
	}
	// Granting the same key range again replaces the type.
	p := func(typ authpb.Permission_Type) *authpb.Permission {
		return &authpb.Permission{PermType: typ, Key: []byte("k")}
	}
	if err := s.RoleGrantPermission("writer", p(authpb.READ)); err != nil {
		t.Fatal(err)
	}
	if err := s.RoleGrantPermission("writer", p(authpb.READWRITE)); err != nil {
		t.Fatal(err)
	}
	r, _ := s.Role("writer")
	if len(r.KeyPermission) != 2 {
		t.Errorf("writer's permissions: %v", r.KeyPermission)
	}
	if err := s.CheckRange("writer", []byte("k"), nil, false); err != nil {
		t.Errorf("READWRITE reads: %v", err)
	}
	// Deleting a role revokes it from its users.
	if err := s.RoleDelete("writer"); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User("writer"); len(u.Roles) != 0 {
		t.Errorf("writer still has roles %v", u.Roles)
	}
	// Authentication: one error for a wrong password and an unknown user.
	if err := s.Authenticate("reader", "readerpw", plainVerify); err != nil {
		t.Errorf("authenticate: %v", err)
	}
	for _, c := range [][2]string{{"reader", "wrong"}, {"nobody", "x"}} {
		if err := s.Authenticate(c[0], c[1], plainVerify); !errors.Is(err, rpctypes.ErrGRPCAuthFailed) {
			t.Errorf("authenticate %s/%s: %v", c[0], c[1], err)
		}
	}
}
