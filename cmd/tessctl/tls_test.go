package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcerts"
)

// TestTLS runs tessctl with --cacert/--cert/--key against a cluster whose
// client and peer ports require client certificates of one CA: status
// reaches every member's client URL (/health) and peer URL (Ranges);
// without a client certificate tessctl fails.
func TestTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	tc := startClusterWith(t, 3, nil, "https", func(c *server.Config) {
		cert, key := ca.Issue(c.Name, c.Name)
		info := server.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: ca.CAPath, ClientCertAuth: true}
		c.TLS.Client, c.TLS.Peer = info, info
	})
	cert, key := ca.Issue("operator", "operator")
	eventually(t, 30*time.Second, func() error {
		out, stderr, code := tc.tessctl(t, "--cacert", ca.CAPath, "--cert", cert, "--key", key, "status", "-w", "json")
		if code != 0 {
			return fmt.Errorf("status: exit %d, %s%s", code, out, stderr)
		}
		nodes := decodeNodes(t, out)
		if len(nodes) != 3 {
			return fmt.Errorf("status: %d nodes in %s", len(nodes), out)
		}
		for _, n := range nodes {
			if !n.Healthy || n.Error != "" {
				return fmt.Errorf("status: %+v", n)
			}
		}
		return nil
	})
	if out, stderr, code := tc.tessctl(t, "--cacert", ca.CAPath, "status"); code == 0 {
		t.Errorf("tessctl without a client certificate succeeded: %s%s", out, stderr)
	}
}

// TestAuthUser: with auth enabled, tessctl lists the members as the
// --user it is given; without one it fails with etcd's error.
func TestAuthUser(t *testing.T) {
	tc := startCluster(t, 1, nil)
	cli, err := clientv3.New(clientv3.Config{Endpoints: tc.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := t.Context()
	// Until the meta group has elected its leader, changes fail with
	// etcd's "no leader".
	eventually(t, 30*time.Second, func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err })
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := tc.tessctl(t, "status"); code == 0 || !strings.Contains(stderr, "user name is empty") {
		t.Errorf("status without --user: exit %d, %s%s", code, out, stderr)
	}
	eventually(t, 30*time.Second, func() error {
		if out, stderr, code := tc.tessctl(t, "--dial-timeout", "20s", "--user", "root:rootpw", "status"); code != 0 {
			return fmt.Errorf("status --user root: exit %d, %s%s", code, out, stderr)
		}
		return nil
	})
}
