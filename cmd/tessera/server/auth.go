package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/shard"
)

// AuthConfig is etcd's auth configuration (--auth-token, --auth-token-ttl,
// --bcrypt-cost) and this node's auth plumbing.
type AuthConfig struct {
	// Token is --auth-token: "simple", or
	// "jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256|...|ES512[,ttl=DUR]".
	Token string
	// TokenTTL is --auth-token-ttl (300 s, etcd's default): a simple token
	// is valid this long after its last use on a node (after it was issued
	// on a node it was never used on), as etcd's. A JWT lives for its own
	// ttl= option (5 minutes by default, as in etcd, whatever this says).
	TokenTTL time.Duration
	// BcryptCost is --bcrypt-cost (10, etcd's default; 4 to 31).
	BcryptCost int
	// RefreshInterval is how often a node without a meta replica fetches
	// the auth state from one that has one (1 s: a revoked permission
	// reaches it within a second).
	RefreshInterval time.Duration
	// FailedAuthPerSecond and FailedAuthBurst rate-limit failed
	// authentications per node (10/s, burst 20): beyond them Authenticate
	// answers "authentication failed" without checking the password,
	// which bounds password guessing and the bcrypt work it costs.
	FailedAuthPerSecond float64
	FailedAuthBurst     float64
	// Knobs are test hooks; nil in production.
	Knobs *AuthTestingKnobs
}

// AuthTestingKnobs are hooks for tests.
type AuthTestingKnobs struct {
	// AfterCheck runs on the client port after a unary request passed its
	// permission check and before it runs (a test changes the auth state
	// between check and apply there).
	AfterCheck func(ctx context.Context, req any)
}

// DefaultAuthConfig returns etcd's defaults.
func DefaultAuthConfig() AuthConfig {
	return AuthConfig{Token: "simple", TokenTTL: 300 * time.Second, BcryptCost: bcrypt.DefaultCost,
		RefreshInterval: time.Second, FailedAuthPerSecond: 10, FailedAuthBurst: 20}
}

// Validate checks the configuration.
func (c *AuthConfig) Validate() error {
	switch {
	case c.Token != "simple" && !strings.HasPrefix(c.Token, "jwt,"):
		return fmt.Errorf("server: --auth-token %q: want simple or jwt,pub-key=...,priv-key=...,sign-method=...", c.Token)
	case c.TokenTTL <= 0:
		return fmt.Errorf("server: --auth-token-ttl %s must be positive", c.TokenTTL)
	case c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost:
		return fmt.Errorf("server: --bcrypt-cost %d must be between %d and %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	case c.RefreshInterval <= 0 || c.FailedAuthPerSecond <= 0 || c.FailedAuthBurst < 1:
		return errors.New("server: auth refresh interval and failed-authentication rate must be positive")
	}
	return nil
}

// nodeAuth is a node's auth: who a request speaks for, the auth state it
// is checked against, tokens, and the Auth service.
type nodeAuth struct {
	s   *Server
	cfg AuthConfig
	log *slog.Logger
	// jwt is set with --auth-token jwt,...; nil: simple tokens.
	jwt *jwtTokens
	// renewals push a simple token's deadline on each use (etcd's TTL).
	renewals *tokenRenewals
	// now is the clock of token deadlines (nil: time.Now; tests set it).
	now func() time.Time
	// polled is the state fetched by a node without a meta replica (nil
	// until the first fetch: then every request is refused).
	polled atomic.Pointer[placement.AuthState]

	limMu   sync.Mutex
	limLeft float64
	limLast time.Time

	// authentications counts Authenticate calls by result: ok, failed,
	// limited (refused by the rate limit without a check).
	authentications *prometheus.CounterVec

	stop chan struct{}
	wg   sync.WaitGroup
}

var _ router.Authenticator = (*nodeAuth)(nil)

func (s *Server) setupAuth() error {
	if s.cfg.Auth == (AuthConfig{}) {
		s.cfg.Auth = DefaultAuthConfig()
	}
	if err := s.cfg.Auth.Validate(); err != nil {
		return err
	}
	s.auth = &nodeAuth{s: s, cfg: s.cfg.Auth, log: s.log.With("component", "auth"), limLeft: s.cfg.Auth.FailedAuthBurst, stop: make(chan struct{}),
		renewals: newTokenRenewals(s.cfg.Auth.TokenTTL)}
	s.auth.authentications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tessera_auth_authentications_total",
		Help: "Authenticate calls by result: ok, failed, limited (refused by the failed-authentication rate limit).",
	}, []string{"result"})
	if err := s.reg.Register(s.auth.authentications); err != nil {
		return fmt.Errorf("server: register auth metrics: %w", err)
	}
	if strings.HasPrefix(s.cfg.Auth.Token, "jwt,") {
		var err error
		if s.auth.jwt, err = parseJWTOptions(s.cfg.Auth.Token, jwtDefaultTTL); err != nil {
			return err
		}
	}
	return nil
}

// state returns the auth state to enforce, nil when not known yet.
func (a *nodeAuth) state() *placement.AuthState {
	if a.s.meta != nil {
		return a.s.meta.Auth()
	}
	return a.polled.Load()
}

// Permissions implements router.Authenticator.
func (a *nodeAuth) Permissions() router.AuthPermissions {
	if st := a.state(); st != nil {
		return st
	}
	return unknownAuth{}
}

// unknownAuth fails closed until a node without a meta replica has fetched
// the auth state.
type unknownAuth struct{}

var errAuthUnknown = status.Error(codes.Unavailable, "server: auth state not known yet on this node")

func (unknownAuth) Enabled() bool                                 { return true }
func (unknownAuth) CheckRange(string, []byte, []byte, bool) error { return errAuthUnknown }
func (unknownAuth) IsRoot(string) bool                            { return false }
func (unknownAuth) HasRole(string, string) bool                   { return false }
func (unknownAuth) Revision() uint64                              { return 0 }

// appliedRevision is the auth revision this node has applied, 0 when auth
// is disabled or not known yet: the stamp a range leader here puts on the
// writes it proposes (shard.Config.AuthRevision).
func (a *nodeAuth) appliedRevision() uint64 {
	st := a.state()
	if st == nil || !st.Enabled() {
		return 0
	}
	return st.Revision()
}

// User implements router.Authenticator: the token's user; else, with
// --client-cert-auth, the verified client certificate's common name.
func (a *nodeAuth) User(ctx context.Context) (string, uint64, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	toks := md.Get(rpctypes.TokenFieldNameGRPC)
	if len(toks) == 0 {
		// The HTTP/JSON gateway passes the Authorization header on.
		toks = md.Get(rpctypes.TokenFieldNameSwagger)
	}
	if len(toks) > 0 {
		st := a.state()
		if st == nil {
			return "", 0, errAuthUnknown
		}
		if a.jwt != nil {
			// A JWT carries the auth revision it was issued at.
			return a.jwt.verify(toks[0])
		}
		user, err := a.verifyToken(st, toks[0])
		return user, 0, err
	}
	if !a.s.cfg.TLS.Client.ClientCertAuth {
		return "", 0, nil
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			return ti.State.VerifiedChains[0][0].Subject.CommonName, 0, nil
		}
	}
	return "", 0, nil
}

// A token is base64url(user).expiry-unix-seconds.nonce.base64url(HMAC-SHA256
// of the rest and of the user's password hash), signed with the cluster's
// token key: any node verifies it without a round trip, and deleting the
// user or changing its password invalidates it, as in etcd. The random
// nonce makes every Authenticate's token distinct, as etcd's are (each
// token's TTL is renewed on its own, auth_token_ttl.go).
func (a *nodeAuth) issueToken(st *placement.AuthState, user string) (string, error) {
	pw, ok := st.UserPassword(user)
	if len(st.TokenKey()) == 0 || !ok {
		return "", errors.New("server: cannot issue a token yet")
	}
	nonce := make([]byte, 9)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("server: token nonce: %w", err)
	}
	body := base64.RawURLEncoding.EncodeToString([]byte(user)) + "." + strconv.FormatInt(a.clock().Add(a.cfg.TokenTTL).Unix(), 10) +
		"." + base64.RawURLEncoding.EncodeToString(nonce)
	return body + "." + sign(st.TokenKey(), body, pw), nil
}

func sign(key []byte, body string, password []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	m.Write([]byte{0})
	m.Write(password)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (a *nodeAuth) verifyToken(st *placement.AuthState, tok string) (string, error) {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 || len(st.TokenKey()) == 0 {
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	parts := strings.Split(tok[:i], ".") // user, expiry, nonce
	if len(parts) != 3 {
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	user, uerr := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || uerr != nil {
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	pw, exists := st.UserPassword(string(user))
	if !exists || !hmac.Equal([]byte(tok[i+1:]), []byte(sign(st.TokenKey(), tok[:i], pw))) {
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	// Only a signed token reaches the renewal table (auth_token_ttl.go).
	if !a.renewals.use(tok, time.Unix(exp, 0), a.clock()) {
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	return string(user), nil
}

// clock returns the time tokens are checked at.
func (a *nodeAuth) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

// allowFailure takes one failed authentication from the bucket.
func (a *nodeAuth) allowFailure() bool {
	a.limMu.Lock()
	defer a.limMu.Unlock()
	now := time.Now()
	a.limLeft = min(a.cfg.FailedAuthBurst, a.limLeft+now.Sub(a.limLast).Seconds()*a.cfg.FailedAuthPerSecond)
	a.limLast = now
	if a.limLeft < 1 {
		return false
	}
	a.limLeft--
	return true
}

// startRefresh fetches the auth state every RefreshInterval on a node
// without a meta replica.
func (a *nodeAuth) startRefresh() {
	if a.s.meta != nil {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(a.cfg.RefreshInterval)
		defer t.Stop()
		for {
			a.refresh()
			select {
			case <-a.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (a *nodeAuth) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.RefreshInterval*3)
	defer cancel()
	for _, id := range shard.ReplicaNodes(a.s.layout.GetMeta()) {
		conn, err := a.s.nodes.Conn(id)
		if err != nil {
			continue
		}
		rec, err := tesserapb.NewInternalClient(conn).AuthState(ctx, &tesserapb.AuthStateRequest{})
		if err != nil {
			continue
		}
		st, err := placement.AuthStateFromRecord(rec)
		if err != nil {
			a.log.Warn("auth state from meta node", "node", id, "err", err)
			continue
		}
		if cur := a.polled.Load(); cur == nil || cur.Revision() <= st.Revision() {
			a.polled.Store(st)
		}
		return
	}
}

func (a *nodeAuth) close() {
	close(a.stop)
	a.wg.Wait()
}

// clientServerOptions install the auth checks on the client port.
func (a *nodeAuth) clientServerOptions() []grpc.ServerOption {
	// Lease Revoke/KeepAlive/TimeToLive need permission on the lease's keys.
	leaseKeys := func(id int64) ([][]byte, error) {
		if a.s.leases == nil {
			return nil, errors.New("server: no lease service")
		}
		return a.s.leases.KeysOf(id)
	}
	unary := []grpc.UnaryServerInterceptor{router.AuthUnaryInterceptor(a, leaseKeys)}
	if k := a.cfg.Knobs; k != nil && k.AfterCheck != nil {
		unary = append(unary, func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			k.AfterCheck(ctx, req)
			return handler(ctx, req)
		})
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(router.AuthStreamInterceptor(a, leaseKeys)),
	}
}

// authServer is etcd's Auth service. On the client port (forward) its
// callers were checked by the interceptors and changes go to the meta
// group's leader, forwarded over the peer port when it is elsewhere; on the
// peer port it serves those forwards.
type authServer struct {
	pb.UnimplementedAuthServer
	a       *nodeAuth
	forward bool
}

func (s *authServer) header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.a.s.layout.GetClusterId(), MemberId: uint64(s.a.s.self)}
}

// change runs one auth change on the meta group's leader: here, or through
// another node's peer-port Auth service (via).
func (s *authServer) change(ctx context.Context, req *pb.InternalRaftRequest, via func(pb.AuthClient) error) error {
	meta := s.a.s.meta
	if meta != nil && meta.Leader() == s.a.s.self {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		err := meta.ProposeAuth(ctx, req, key)
		if err == nil || !errors.Is(err, raftgroup.ErrNotLeader) {
			return err
		}
	}
	if !s.forward {
		return status.Error(codes.Unavailable, "server: not the meta group's leader")
	}
	order := []raftgroup.NodeID{}
	if meta != nil && meta.Leader() != 0 && meta.Leader() != s.a.s.self {
		order = append(order, meta.Leader())
	}
	for _, id := range shard.ReplicaNodes(s.a.s.layout.GetMeta()) {
		if id != s.a.s.self && !slices.Contains(order, id) {
			order = append(order, id)
		}
	}
	var errs []error
	for _, id := range order {
		conn, err := s.a.s.nodes.Conn(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = via(pb.NewAuthClient(conn))
		if st, ok := status.FromError(err); err == nil || ok && st.Code() != codes.Unavailable {
			return err // done, or etcd's answer
		}
		errs = append(errs, fmt.Errorf("node %s: %w", id, err))
	}
	if len(errs) == 0 {
		return rpctypes.ErrGRPCNoLeader // no leader elected yet
	}
	s.a.log.Warn("auth change: no meta group leader answered", "err", errors.Join(errs...))
	return rpctypes.ErrGRPCNoLeader
}

func (s *authServer) hash(password, hashed string) (string, error) {
	if hashed != "" || password == "" {
		return hashed, nil
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.a.cfg.BcryptCost)
	if err != nil {
		return "", fmt.Errorf("server: hash password: %w", err)
	}
	return string(h), nil
}

func (s *authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthEnable: r}, func(c pb.AuthClient) error { _, err := c.AuthEnable(ctx, r); return err })
	return &pb.AuthEnableResponse{Header: s.header()}, err
}

func (s *authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthDisable: r}, func(c pb.AuthClient) error { _, err := c.AuthDisable(ctx, r); return err })
	return &pb.AuthDisableResponse{Header: s.header()}, err
}

func (s *authServer) AuthStatus(context.Context, *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	st := s.a.state()
	if st == nil {
		return nil, errAuthUnknown
	}
	resp := st.AuthStatus()
	resp.Header = s.header()
	return resp, nil
}

func (s *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	st := s.a.state()
	if st == nil {
		return nil, errAuthUnknown
	}
	if !st.Enabled() {
		return nil, rpctypes.ErrGRPCAuthNotEnabled
	}
	from := ""
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr.String()
	}
	if !s.a.allowFailure() {
		// The bucket is empty: refuse without spending bcrypt on it. A
		// success gives its token back.
		s.a.authentications.WithLabelValues("limited").Inc()
		s.a.log.Warn("authentication refused: too many failures", "user", r.Name, "from", from)
		return nil, rpctypes.ErrGRPCAuthFailed
	}
	if err := st.Authenticate(r.Name, r.Password, func(hash []byte, pw string) bool {
		return bcrypt.CompareHashAndPassword(hash, []byte(pw)) == nil
	}); err != nil {
		s.a.authentications.WithLabelValues("failed").Inc()
		s.a.log.Warn("authentication failed", "user", r.Name, "from", from) // never the password
		return nil, err
	}
	s.a.authentications.WithLabelValues("ok").Inc()
	s.a.limMu.Lock()
	s.a.limLeft = min(s.a.cfg.FailedAuthBurst, s.a.limLeft+1)
	s.a.limMu.Unlock()
	var tok string
	var err error
	if s.a.jwt != nil {
		tok, err = s.a.jwt.issue(r.Name, st.Revision())
	} else {
		tok, err = s.a.issueToken(st, r.Name)
	}
	if err != nil {
		return nil, err
	}
	return &pb.AuthenticateResponse{Header: s.header(), Token: tok}, nil
}

func (s *authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if r.Name == "" {
		return nil, rpctypes.ErrGRPCUserEmpty
	}
	h, err := s.hash(r.Password, r.HashedPassword)
	if err != nil {
		return nil, err
	}
	fwd := &pb.AuthUserAddRequest{Name: r.Name, HashedPassword: h, Options: r.Options}
	err = s.change(ctx, &pb.InternalRaftRequest{AuthUserAdd: fwd}, func(c pb.AuthClient) error { _, err := c.UserAdd(ctx, fwd); return err })
	return &pb.AuthUserAddResponse{Header: s.header()}, err
}

func (s *authServer) UserGet(_ context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	st := s.a.state()
	if st == nil {
		return nil, errAuthUnknown
	}
	u, err := st.User(r.Name)
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserGetResponse{Header: s.header(), Roles: u.Roles}, nil
}

func (s *authServer) UserList(context.Context, *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	st := s.a.state()
	if st == nil {
		return nil, errAuthUnknown
	}
	return &pb.AuthUserListResponse{Header: s.header(), Users: st.Users()}, nil
}

func (s *authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthUserDelete: r}, func(c pb.AuthClient) error { _, err := c.UserDelete(ctx, r); return err })
	return &pb.AuthUserDeleteResponse{Header: s.header()}, err
}

func (s *authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	h, err := s.hash(r.Password, r.HashedPassword)
	if err != nil {
		return nil, err
	}
	fwd := &pb.AuthUserChangePasswordRequest{Name: r.Name, HashedPassword: h}
	err = s.change(ctx, &pb.InternalRaftRequest{AuthUserChangePassword: fwd}, func(c pb.AuthClient) error { _, err := c.UserChangePassword(ctx, fwd); return err })
	return &pb.AuthUserChangePasswordResponse{Header: s.header()}, err
}

func (s *authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthUserGrantRole: r}, func(c pb.AuthClient) error { _, err := c.UserGrantRole(ctx, r); return err })
	return &pb.AuthUserGrantRoleResponse{Header: s.header()}, err
}

func (s *authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthUserRevokeRole: r}, func(c pb.AuthClient) error { _, err := c.UserRevokeRole(ctx, r); return err })
	return &pb.AuthUserRevokeRoleResponse{Header: s.header()}, err
}

func (s *authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthRoleAdd: r}, func(c pb.AuthClient) error { _, err := c.RoleAdd(ctx, r); return err })
	return &pb.AuthRoleAddResponse{Header: s.header()}, err
}

func (s *authServer) RoleGet(_ context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	st := s.a.state()
	if st == nil {
		return nil, errAuthUnknown
	}
	ro, err := st.Role(r.Role)
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleGetResponse{Header: s.header(), Perm: ro.KeyPermission}, nil
}

func (s *authServer) RoleList(context.Context, *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	st := s.a.state()
	if st == nil {
		return nil, errAuthUnknown
	}
	return &pb.AuthRoleListResponse{Header: s.header(), Roles: st.Roles()}, nil
}

func (s *authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthRoleDelete: r}, func(c pb.AuthClient) error { _, err := c.RoleDelete(ctx, r); return err })
	return &pb.AuthRoleDeleteResponse{Header: s.header()}, err
}

func (s *authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthRoleGrantPermission: r}, func(c pb.AuthClient) error { _, err := c.RoleGrantPermission(ctx, r); return err })
	return &pb.AuthRoleGrantPermissionResponse{Header: s.header()}, err
}

func (s *authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	err := s.change(ctx, &pb.InternalRaftRequest{AuthRoleRevokePermission: r}, func(c pb.AuthClient) error { _, err := c.RoleRevokePermission(ctx, r); return err })
	return &pb.AuthRoleRevokePermissionResponse{Header: s.header()}, err
}
