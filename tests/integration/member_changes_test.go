package integration_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestMemberChanges runs etcd's member add/update/promote/remove sequence
// through a 3-node cluster's client port, each change on another node (so
// non-leaders forward to the meta leader): answers, etcd's errors, member
// ids that are never reused, and the refusal to remove a node that holds
// replicas.
func TestMemberChanges(t *testing.T) {
	c, _ := newClusterClient(t)
	clients := make([]*clientv3.Client, 3)
	for i := range clients {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Endpoint(i)}, DialTimeout: 5 * time.Second})
		must(t, "client", err)
		t.Cleanup(func() { _ = cli.Close() })
		clients[i] = cli
	}
	cli := func(i int) *clientv3.Client { return clients[i%3] }
	ctx := tctx(t)

	add, err := cli(0).MemberAdd(ctx, []string{"http://127.0.0.1:1"})
	must(t, "member add", err)
	if add.Member.ID != 4 || add.Member.Name != "" || add.Member.IsLearner || len(add.Members) != 4 {
		t.Fatalf("member add: %v (members %v), want id 4, unstarted, 4 members", add.Member, add.Members)
	}
	_, err = cli(1).MemberAdd(ctx, []string{"http://127.0.0.1:1"})
	wantErr(t, "add a taken peer URL", err, rpctypes.ErrPeerURLExist)
	// clientv3 checks URLs itself: the server's answer needs raw gRPC.
	raw := pb.NewClusterClient(cli(2).ActiveConnection())
	for _, bad := range [][]string{{"127.0.0.1:2"}, {"http://127.0.0.1"}, {"http://127.0.0.1:2/path"}, nil} {
		_, err = raw.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: bad})
		wantErr(t, fmt.Sprintf("add %q", bad), err, rpctypes.ErrGRPCMemberBadURLs)
	}
	learner, err := cli(1).MemberAddAsLearner(ctx, []string{"http://127.0.0.1:2"})
	must(t, "add a learner", err)
	if learner.Member.ID != 5 || !learner.Member.IsLearner {
		t.Fatalf("learner: %v", learner.Member)
	}
	_, err = cli(2).MemberAddAsLearner(ctx, []string{"http://127.0.0.1:3"})
	wantErr(t, "a second learner", err, rpctypes.ErrTooManyLearners)
	_, err = cli(0).MemberPromote(ctx, 4)
	wantErr(t, "promote a voter", err, rpctypes.ErrMemberNotLearner)
	_, err = cli(1).MemberPromote(ctx, 99)
	wantErr(t, "promote unknown", err, rpctypes.ErrMemberNotFound)
	_, err = cli(2).MemberPromote(ctx, 5)
	wantErr(t, "promote the unstarted learner", err, rpctypes.ErrGRPCLearnerNotReady)
	_, err = cli(0).MemberUpdate(ctx, 99, []string{"http://127.0.0.1:6"})
	wantErr(t, "update unknown", err, rpctypes.ErrMemberNotFound)
	_, err = cli(1).MemberUpdate(ctx, 4, []string{"http://127.0.0.1:2"})
	wantErr(t, "update to a taken URL", err, rpctypes.ErrPeerURLExist)
	_, err = cli(2).MemberUpdate(ctx, 4, []string{"http://127.0.0.1:7"})
	must(t, "update", err)
	_, err = cli(0).MemberRemove(ctx, 99)
	wantErr(t, "remove unknown", err, rpctypes.ErrMemberNotFound)
	_, err = cli(1).MemberRemove(ctx, 2)
	if err == nil || !strings.Contains(err.Error(), "node 2 still holds replicas of ranges") || !strings.Contains(err.Error(), "drain it first") {
		t.Fatalf("remove a node with replicas: %v, want the refusal with its reason", err)
	}
	rm, err := cli(2).MemberRemove(ctx, 4)
	must(t, "remove the added node", err)
	if len(rm.Members) != 4 {
		t.Fatalf("after remove: %v", rm.Members)
	}
	_, err = cli(0).MemberRemove(ctx, 4)
	wantErr(t, "remove again", err, rpctypes.ErrMemberNotFound)
	again, err := cli(1).MemberAdd(ctx, []string{"http://127.0.0.1:7"})
	must(t, "add the removed node's URL", err)
	if again.Member.ID != 6 {
		t.Fatalf("re-added member id %d, want 6 (ids are never reused)", again.Member.ID)
	}
	list, err := cli(2).MemberList(ctx)
	must(t, "member list", err)
	var got []string
	for _, m := range list.Members {
		got = append(got, fmt.Sprintf("%d:%s:%v:%v", m.ID, m.Name, m.PeerURLs, m.IsLearner))
	}
	want := fmt.Sprintf("%v", []string{
		fmt.Sprintf("1:node1:%v:false", list.Members[0].PeerURLs), fmt.Sprintf("2:node2:%v:false", list.Members[1].PeerURLs),
		fmt.Sprintf("3:node3:%v:false", list.Members[2].PeerURLs),
		"5::[http://127.0.0.1:2]:true", "6::[http://127.0.0.1:7]:false",
	})
	if fmt.Sprintf("%v", got) != want {
		t.Fatalf("member list %v, want %v", got, want)
	}
}
