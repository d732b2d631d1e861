package placement

import (
	"bytes"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"
)

// AuthState is the cluster's auth state as etcd's auth store keeps it:
// whether auth is enabled, the auth revision (raised by every change), the
// users and the roles with their key permissions. Its methods apply etcd's
// Auth requests with etcd's rules and rpctypes errors; they are
// deterministic (passwords arrive hashed), so every replica of the meta
// group that applies the same requests in the same order holds the same
// state. It is pure: no I/O, no locks (the owner serializes calls).
type AuthState struct {
	enabled  bool
	revision uint64
	users    map[string]*authpb.User
	roles    map[string]*authpb.Role
	// tokenKey signs auth tokens (set by the first enable; auth_meta.go).
	tokenKey []byte
}

// rootName is the name of etcd's root user and role.
const rootName = "root"

// NewAuthState returns the state of a new cluster: auth disabled, no users
// or roles, revision 1 (etcd starts its auth revision at 1).
func NewAuthState() *AuthState {
	return &AuthState{revision: 1, users: map[string]*authpb.User{}, roles: map[string]*authpb.Role{}}
}

// Enabled reports whether auth is enabled.
func (s *AuthState) Enabled() bool { return s.enabled }

// Revision is the auth revision.
func (s *AuthState) Revision() uint64 { return s.revision }

func (s *AuthState) bump() { s.revision++ }

// Enable turns auth on; the root user must exist and hold the root role.
func (s *AuthState) Enable() error {
	if s.enabled {
		return nil
	}
	root, ok := s.users[rootName]
	if !ok {
		return rpctypes.ErrGRPCRootUserNotExist
	}
	if !slices.Contains(root.Roles, rootName) {
		return rpctypes.ErrGRPCRootRoleNotExist
	}
	s.enabled = true
	// etcd's AuthEnable keeps the revision (AuthDisable and every other
	// change move it): tokens from both carry the same revisions.
	return nil
}

// Disable turns auth off.
func (s *AuthState) Disable() {
	if !s.enabled {
		return
	}
	s.enabled = false
	s.bump()
}

// UserAdd adds a user. hashedPassword is the bcrypt hash the proposer
// computed (empty with NoPassword).
func (s *AuthState) UserAdd(name string, hashedPassword []byte, opts *authpb.UserAddOptions) error {
	if name == "" {
		return rpctypes.ErrGRPCUserEmpty
	}
	if _, ok := s.users[name]; ok {
		return rpctypes.ErrGRPCUserAlreadyExist
	}
	u := &authpb.User{Name: []byte(name), Options: opts}
	if opts == nil || !opts.NoPassword {
		u.Password = hashedPassword
	}
	s.users[name] = u
	s.bump()
	return nil
}

// UserDelete deletes a user; root cannot be deleted while auth is enabled.
func (s *AuthState) UserDelete(name string) error {
	if s.enabled && name == rootName {
		return rpctypes.ErrGRPCInvalidAuthMgmt
	}
	if _, ok := s.users[name]; !ok {
		return rpctypes.ErrGRPCUserNotFound
	}
	delete(s.users, name)
	s.bump()
	return nil
}

// UserChangePassword replaces a user's password hash.
func (s *AuthState) UserChangePassword(name string, hashedPassword []byte) error {
	u, ok := s.users[name]
	if !ok {
		return rpctypes.ErrGRPCUserNotFound
	}
	u.Password = hashedPassword
	s.bump()
	return nil
}

// UserGrantRole grants a role (the root role always exists); granting a
// role the user has is a no-op, as in etcd.
func (s *AuthState) UserGrantRole(user, role string) error {
	u, ok := s.users[user]
	if !ok {
		return rpctypes.ErrGRPCUserNotFound
	}
	if _, ok := s.roles[role]; !ok && role != rootName {
		return rpctypes.ErrGRPCRoleNotFound
	}
	i, found := slices.BinarySearch(u.Roles, role)
	if found {
		return nil
	}
	u.Roles = slices.Insert(u.Roles, i, role)
	s.bump()
	return nil
}

// UserRevokeRole revokes a role; root's root role cannot be revoked while
// auth is enabled.
func (s *AuthState) UserRevokeRole(user, role string) error {
	if s.enabled && user == rootName && role == rootName {
		return rpctypes.ErrGRPCInvalidAuthMgmt
	}
	u, ok := s.users[user]
	if !ok {
		return rpctypes.ErrGRPCUserNotFound
	}
	i, found := slices.BinarySearch(u.Roles, role)
	if !found {
		return rpctypes.ErrGRPCRoleNotGranted
	}
	u.Roles = slices.Delete(u.Roles, i, i+1)
	s.bump()
	return nil
}

// User returns a copy of a user.
func (s *AuthState) User(name string) (*authpb.User, error) {
	u, ok := s.users[name]
	if !ok {
		return nil, rpctypes.ErrGRPCUserNotFound
	}
	return proto.Clone(u).(*authpb.User), nil
}

// Users returns the user names, sorted.
func (s *AuthState) Users() []string { return sortedKeys(s.users) }

// RoleAdd adds a role.
func (s *AuthState) RoleAdd(name string) error {
	if name == "" {
		return rpctypes.ErrGRPCRoleEmpty
	}
	if _, ok := s.roles[name]; ok {
		return rpctypes.ErrGRPCRoleAlreadyExist
	}
	s.roles[name] = &authpb.Role{Name: []byte(name)}
	s.bump()
	return nil
}

// RoleDelete deletes a role and revokes it from every user; the root role
// cannot be deleted while auth is enabled.
func (s *AuthState) RoleDelete(name string) error {
	if s.enabled && name == rootName {
		return rpctypes.ErrGRPCInvalidAuthMgmt
	}
	if _, ok := s.roles[name]; !ok {
		return rpctypes.ErrGRPCRoleNotFound
	}
	delete(s.roles, name)
	for _, u := range s.users {
		if i, found := slices.BinarySearch(u.Roles, name); found {
			u.Roles = slices.Delete(u.Roles, i, i+1)
		}
	}
	s.bump()
	return nil
}

// Role returns a copy of a role.
func (s *AuthState) Role(name string) (*authpb.Role, error) {
	r, ok := s.roles[name]
	if !ok {
		return nil, rpctypes.ErrGRPCRoleNotFound
	}
	return proto.Clone(r).(*authpb.Role), nil
}

// Roles returns the role names, sorted.
func (s *AuthState) Roles() []string { return sortedKeys(s.roles) }

// RoleGrantPermission grants a permission; a permission on the same key
// and range end is replaced (its type changes), as in etcd.
func (s *AuthState) RoleGrantPermission(role string, perm *authpb.Permission) error {
	if perm == nil {
		return rpctypes.ErrGRPCPermissionNotGiven
	}
	r, ok := s.roles[role]
	if !ok {
		return rpctypes.ErrGRPCRoleNotFound
	}
	i := sort.Search(len(r.KeyPermission), func(i int) bool {
		return comparePerm(r.KeyPermission[i], perm.Key, perm.RangeEnd) >= 0
	})
	if i < len(r.KeyPermission) && comparePerm(r.KeyPermission[i], perm.Key, perm.RangeEnd) == 0 {
		r.KeyPermission[i].PermType = perm.PermType
	} else {
		p := &authpb.Permission{PermType: perm.PermType, Key: slices.Clone(perm.Key), RangeEnd: slices.Clone(perm.RangeEnd)}
		r.KeyPermission = slices.Insert(r.KeyPermission, i, p)
	}
	s.bump()
	return nil
}

// RoleRevokePermission revokes the permission on exactly key and rangeEnd.
func (s *AuthState) RoleRevokePermission(role string, key, rangeEnd []byte) error {
	r, ok := s.roles[role]
	if !ok {
		return rpctypes.ErrGRPCRoleNotFound
	}
	i := slices.IndexFunc(r.KeyPermission, func(p *authpb.Permission) bool { return comparePerm(p, key, rangeEnd) == 0 })
	if i < 0 {
		return rpctypes.ErrGRPCPermissionNotGranted
	}
	r.KeyPermission = slices.Delete(r.KeyPermission, i, i+1)
	s.bump()
	return nil
}

func comparePerm(p *authpb.Permission, key, rangeEnd []byte) int {
	if c := bytes.Compare(p.Key, key); c != 0 {
		return c
	}
	return bytes.Compare(p.RangeEnd, rangeEnd)
}

// Authenticate checks a user's password with verify (bcrypt's comparison,
// injected: the hash function is the caller's) and answers etcd's single
// error for an unknown user, a wrong password and a user without password.
func (s *AuthState) Authenticate(name, password string, verify func(hash []byte, password string) bool) error {
	if !s.enabled {
		return rpctypes.ErrGRPCAuthNotEnabled
	}
	u, ok := s.users[name]
	if !ok || (u.Options != nil && u.Options.NoPassword) || !verify(u.Password, password) {
		return rpctypes.ErrGRPCAuthFailed
	}
	return nil
}

// IsRoot reports whether user holds the root role.
func (s *AuthState) IsRoot(user string) bool {
	u, ok := s.users[user]
	return ok && slices.Contains(u.Roles, rootName)
}

// CheckRange checks, as etcd's isOpPermitted does, that user may read
// (write false) or write the keys [key, rangeEnd) (a single key when
// rangeEnd is empty; to the end of the keyspace when it is "\x00"). With
// auth disabled everything is permitted; an empty user name is etcd's
// "user name is empty"; an unknown user or one whose roles' permissions
// (merged into intervals) do not cover the whole range is denied.
func (s *AuthState) CheckRange(user string, key, rangeEnd []byte, write bool) error {
	if !s.enabled {
		return nil
	}
	if user == "" {
		return rpctypes.ErrGRPCUserEmpty
	}
	u, ok := s.users[user]
	if !ok {
		return rpctypes.ErrGRPCPermissionDenied
	}
	if slices.Contains(u.Roles, rootName) {
		return nil
	}
	var ivs []interval
	for _, name := range u.Roles {
		r, ok := s.roles[name]
		if !ok {
			continue
		}
		for _, p := range r.KeyPermission {
			if p.PermType == authpb.READWRITE || (write && p.PermType == authpb.WRITE) || (!write && p.PermType == authpb.READ) {
				ivs = append(ivs, toInterval(p.Key, p.RangeEnd))
			}
		}
	}
	if covered(ivs, toInterval(key, rangeEnd)) {
		return nil
	}
	return rpctypes.ErrGRPCPermissionDenied
}

// interval is [start, end) of keys; a nil end is the end of the keyspace.
type interval struct{ start, end []byte }

// toInterval reads etcd's (key, range_end): empty range_end is the single
// key, "\x00" is every key from key on.
func toInterval(key, rangeEnd []byte) interval {
	switch {
	case len(rangeEnd) == 0:
		return interval{key, append(slices.Clone(key), 0)}
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return interval{key, nil}
	}
	return interval{key, rangeEnd}
}

// covered reports whether the union of ivs contains want.
func covered(ivs []interval, want interval) bool {
	slices.SortFunc(ivs, func(a, b interval) int { return bytes.Compare(a.start, b.start) })
	reach := want.start // everything in [want.start, reach) is covered
	for _, iv := range ivs {
		if bytes.Compare(iv.start, reach) > 0 {
			return false // a gap at reach
		}
		if iv.end == nil {
			return true
		}
		if bytes.Compare(iv.end, reach) > 0 {
			reach = iv.end
		}
		if want.end != nil && bytes.Compare(reach, want.end) >= 0 {
			return true
		}
	}
	return false
}

// AuthStatus answers Auth/AuthStatus.
func (s *AuthState) AuthStatus() *pb.AuthStatusResponse {
	return &pb.AuthStatusResponse{Enabled: s.enabled, AuthRevision: s.revision}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// HasRole reports whether user holds role.
func (s *AuthState) HasRole(user, role string) bool {
	u, ok := s.users[user]
	return ok && slices.Contains(u.Roles, role)
}

// UserPassword returns a user's stored password hash (shared: do not
// modify) and whether the user exists. Tokens carry a digest of it, so a
// password change or a deletion invalidates them, as etcd's do.
func (s *AuthState) UserPassword(user string) ([]byte, bool) {
	u, ok := s.users[user]
	if !ok {
		return nil, false
	}
	return u.Password, true
}
