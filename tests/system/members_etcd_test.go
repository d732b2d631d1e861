package system_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/tests/proccluster"
)

// memberSteps is etcd's member add/update/promote/remove sequence, on a
// cluster whose first member is voter; learner is the id step 0 created.
// Every step's answer is "ok" or the gRPC error (code and message).
func memberSteps(t *testing.T, cli pb.ClusterClient) []string {
	t.Helper()
	ctx := context.Background()
	list, err := cli.MemberList(ctx, &pb.MemberListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	voter := list.Members[0].ID
	answer := func(err error) string {
		if err == nil {
			return "ok"
		}
		s, _ := status.FromError(err)
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	var learner uint64
	var out []string
	steps := []struct {
		name string
		run  func() error
	}{
		{"add a learner", func() error {
			r, err := cli.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}, IsLearner: true})
			learner = r.GetMember().GetID()
			return err
		}},
		{"add a second learner", func() error {
			_, err := cli.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:2"}, IsLearner: true})
			return err
		}},
		// The first member's URL: adding the learner's URL again within the
		// same second makes etcd derive the same member id (from the URLs
		// and the time in seconds) and answer "member ID already exist";
		// a second later it answers "Peer URLs already exists".
		{"add a learner with a taken URL", func() error {
			_, err := cli.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: list.Members[0].PeerURLs, IsLearner: true})
			return err
		}},
		{"add without scheme", func() error {
			_, err := cli.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"127.0.0.1:3"}})
			return err
		}},
		{"add without URL", func() error {
			_, err := cli.MemberAdd(ctx, &pb.MemberAddRequest{})
			return err
		}},
		{"promote the unstarted learner", func() error {
			_, err := cli.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: learner})
			return err
		}},
		{"promote a voter", func() error {
			_, err := cli.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: voter})
			return err
		}},
		{"promote unknown", func() error {
			_, err := cli.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: 12345})
			return err
		}},
		{"update unknown", func() error {
			_, err := cli.MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: 12345, PeerURLs: []string{"http://127.0.0.1:4"}})
			return err
		}},
		{"update to a taken URL", func() error {
			_, err := cli.MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: learner, PeerURLs: list.Members[0].PeerURLs})
			return err
		}},
		// Not compared: MemberUpdate to "127.0.0.1:5" makes etcd 3.7.3 panic
		// in rafthttp.UpdatePeer (its URL check lets it through); Tessera
		// answers "given member URLs are invalid" (TestMemberChanges).
		{"update", func() error {
			_, err := cli.MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: learner, PeerURLs: []string{"http://127.0.0.1:6"}})
			return err
		}},
		{"remove unknown", func() error {
			_, err := cli.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: 12345})
			return err
		}},
		{"remove the learner", func() error {
			_, err := cli.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: learner})
			return err
		}},
		{"remove it again", func() error {
			_, err := cli.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: learner})
			return err
		}},
		{"promote the removed learner", func() error {
			_, err := cli.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: learner})
			return err
		}},
	}
	for _, s := range steps {
		out = append(out, s.name+": "+answer(s.run()))
	}
	return out
}

// TestMemberAPIMatchesEtcd runs the same member sequence against etcd
// 3.7.3 (one member) and Tessera (three nodes) and compares every answer.
func TestMemberAPIMatchesEtcd(t *testing.T) {
	etcdBin, err := proccluster.ReferenceEtcd("etcd")
	if err != nil {
		t.Skipf("no etcd 3.7.3 reference build (make etcd-reference): %v", err)
	}
	want := memberSteps(t, pb.NewClusterClient(newClient(t, startEtcd(t, etcdBin)).ActiveConnection()))
	c := newCluster(t, clusterConfig{nodes: 3})
	got := memberSteps(t, pb.NewClusterClient(c.nodes[1].client().ActiveConnection()))
	t.Logf("etcd 3.7.3:\n%s", strings.Join(want, "\n"))
	diffs := 0
	for i := range want {
		if got[i] != want[i] {
			diffs++
			t.Errorf("step %d:\n  etcd:    %s\n  tessera: %s", i, want[i], got[i])
		}
	}
	t.Logf("%d of %d answers differ", diffs, len(want))
}
