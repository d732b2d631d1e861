package placement

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/authpb"
	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Auth state in the meta group: one system key holds the whole AuthRecord
// (auth state is small and changes rarely), rewritten by every applied
// change in the same batch as the change's raft index. Readers get an
// immutable snapshot (AuthSnapshot) swapped in after each change, so the
// request path checks permissions without a lock.

var keyAuth = engine.SystemKey("meta/auth")

// metaAuth is the Meta's auth state: cur is mutated by the apply (under
// Meta.mu); snap is the latest published copy.
type metaAuth struct {
	cur  *AuthState
	snap atomic.Pointer[AuthState]
}

// Record returns the state as an AuthRecord.
func (s *AuthState) Record() (*tesserapb.AuthRecord, error) {
	r := &tesserapb.AuthRecord{Enabled: s.enabled, Revision: s.revision, TokenKey: s.tokenKey}
	for _, name := range s.Users() {
		b, err := proto.Marshal(s.users[name])
		if err != nil {
			return nil, err
		}
		r.Users = append(r.Users, b)
	}
	for _, name := range s.Roles() {
		b, err := proto.Marshal(s.roles[name])
		if err != nil {
			return nil, err
		}
		r.Roles = append(r.Roles, b)
	}
	return r, nil
}

// AuthStateFromRecord decodes an AuthRecord.
func AuthStateFromRecord(r *tesserapb.AuthRecord) (*AuthState, error) {
	s := NewAuthState()
	s.enabled, s.revision, s.tokenKey = r.GetEnabled(), r.GetRevision(), r.GetTokenKey()
	if s.revision == 0 {
		s.revision = 1
	}
	for _, b := range r.GetUsers() {
		u := &authpb.User{}
		if err := proto.Unmarshal(b, u); err != nil {
			return nil, fmt.Errorf("placement: decode auth user: %w", err)
		}
		s.users[string(u.Name)] = u
	}
	for _, b := range r.GetRoles() {
		ro := &authpb.Role{}
		if err := proto.Unmarshal(b, ro); err != nil {
			return nil, fmt.Errorf("placement: decode auth role: %w", err)
		}
		s.roles[string(ro.Name)] = ro
	}
	return s, nil
}

// Clone returns a deep copy.
func (s *AuthState) Clone() *AuthState {
	c := NewAuthState()
	c.enabled, c.revision, c.tokenKey = s.enabled, s.revision, s.tokenKey
	for k, u := range s.users {
		c.users[k] = proto.Clone(u).(*authpb.User)
	}
	for k, r := range s.roles {
		c.roles[k] = proto.Clone(r).(*authpb.Role)
	}
	return c
}

// TokenKey is the key auth tokens are signed with (nil before auth was
// first enabled).
func (s *AuthState) TokenKey() []byte { return s.tokenKey }

// loadAuthLocked reads the auth state from the engine.
func (m *Meta) loadAuthLocked() error {
	st := NewAuthState()
	v, err := m.eng.Get(keyAuth)
	switch {
	case errors.Is(err, engine.ErrNotFound):
	case err != nil:
		return fmt.Errorf("placement: read auth state: %w", err)
	default:
		r := &tesserapb.AuthRecord{}
		if err := proto.Unmarshal(v, r); err != nil {
			return fmt.Errorf("placement: decode auth state: %w", err)
		}
		if st, err = AuthStateFromRecord(r); err != nil {
			return err
		}
	}
	m.auth.cur = st
	m.auth.snap.Store(st.Clone())
	return nil
}

// applyAuthLocked applies one auth change. A refused change (etcd's error)
// changes nothing and is the command's result, the same on every replica.
func (m *Meta) applyAuthLocked(b *engine.Batch, raw, tokenKey []byte) (error, error) {
	req := &etcdpb.InternalRaftRequest{}
	if err := proto.Unmarshal(raw, req); err != nil {
		return nil, fmt.Errorf("decode auth request: %w", err)
	}
	next := m.auth.cur.Clone()
	if len(next.tokenKey) == 0 && len(tokenKey) > 0 {
		next.tokenKey = tokenKey
	}
	if refused := next.applyRequest(req); refused != nil {
		return refused, nil
	}
	rec, err := next.Record()
	if err != nil {
		return nil, err
	}
	v, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if err := b.Set(keyAuth, v); err != nil {
		return nil, err
	}
	m.auth.cur = next
	m.auth.snap.Store(next.Clone())
	return nil, nil
}

// applyRequest applies the one auth change req carries.
func (s *AuthState) applyRequest(r *etcdpb.InternalRaftRequest) error {
	switch {
	case r.AuthEnable != nil:
		return s.Enable()
	case r.AuthDisable != nil:
		s.Disable()
		return nil
	case r.AuthUserAdd != nil:
		return s.UserAdd(r.AuthUserAdd.Name, []byte(r.AuthUserAdd.HashedPassword), r.AuthUserAdd.Options)
	case r.AuthUserDelete != nil:
		return s.UserDelete(r.AuthUserDelete.Name)
	case r.AuthUserChangePassword != nil:
		return s.UserChangePassword(r.AuthUserChangePassword.Name, []byte(r.AuthUserChangePassword.HashedPassword))
	case r.AuthUserGrantRole != nil:
		return s.UserGrantRole(r.AuthUserGrantRole.User, r.AuthUserGrantRole.Role)
	case r.AuthUserRevokeRole != nil:
		return s.UserRevokeRole(r.AuthUserRevokeRole.Name, r.AuthUserRevokeRole.Role)
	case r.AuthRoleAdd != nil:
		return s.RoleAdd(r.AuthRoleAdd.Name)
	case r.AuthRoleDelete != nil:
		return s.RoleDelete(r.AuthRoleDelete.Role)
	case r.AuthRoleGrantPermission != nil:
		return s.RoleGrantPermission(r.AuthRoleGrantPermission.Name, r.AuthRoleGrantPermission.Perm)
	case r.AuthRoleRevokePermission != nil:
		return s.RoleRevokePermission(r.AuthRoleRevokePermission.Role, []byte(r.AuthRoleRevokePermission.Key), []byte(r.AuthRoleRevokePermission.RangeEnd))
	}
	return errors.New("placement: auth request carries no change")
}

// Auth returns the latest applied auth state. It is shared and must not
// be modified.
func (m *Meta) Auth() *AuthState { return m.auth.snap.Load() }

// ProposeAuth runs one auth change through the meta group and returns
// etcd's error when the change was refused. tokenKey is a fresh random key,
// kept by the first change that finds none. Only the meta group's leader
// accepts proposals (a *raftgroup.NotLeaderError otherwise).
func (m *Meta) ProposeAuth(ctx context.Context, req *etcdpb.InternalRaftRequest, tokenKey []byte) error {
	raw, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	res, err := m.propose(ctx, &tesserapb.MetaCommand{AuthRequest: raw, AuthTokenKey: tokenKey})
	if err != nil {
		return fmt.Errorf("placement: auth change: %w", err)
	}
	return res.authErr
}
