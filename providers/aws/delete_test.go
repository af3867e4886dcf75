package aws_test

import (
	"errors"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
)

func TestDeleteNotFoundIsSuccess(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	ctx := ctxT(t)
	ids := seed(srv, "acme", "c", 2)
	unknown := "i-0000000000000dead"
	if err := p.Delete(ctx, append([]string{unknown}, ids...)); err != nil {
		t.Fatalf("Delete with an unknown ID: %v", err)
	}
	if n := live(srv); n != 0 {
		t.Errorf("%d instances left, want 0", n)
	}
	srv.ResetCalls()
	if err := p.Delete(ctx, []string{unknown}); err != nil {
		t.Fatalf("Delete of an unknown ID: %v", err)
	}
	if err := p.Delete(ctx, ids); err != nil {
		t.Fatalf("Delete again: %v", err)
	}
	if n := srv.Calls("TerminateInstances"); n != 0 {
		t.Errorf("%d TerminateInstances calls for gone instances, want 0", n)
	}
}

// TestDeleteInstanceVanishing makes one instance of a batch vanish between
// describe and terminate: EC2 fails the whole call with
// InvalidInstanceID.NotFound, and the provider retries with the others.
func TestDeleteInstanceVanishing(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	ids := seed(srv, "acme", "c", 3)
	// After the provider described the batch, one instance is terminated out
	// of band and leaves the API, as EC2 does some time after termination.
	srv.OnCall("TerminateInstances", func(n int) {
		if n == 1 {
			_ = srv.SetState(ids[1], ec2test.StateTerminated)
			srv.Forget(ids[1])
		}
	})
	if err := p.Delete(ctxT(t), ids); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	reqs := srv.Requests("TerminateInstances")
	if len(reqs) != 2 {
		t.Fatalf("%d TerminateInstances calls, want 2", len(reqs))
	}
	if got := reqs[1].Form; got.Get("InstanceId.1") != ids[0] || got.Get("InstanceId.2") != ids[2] || got.Has("InstanceId.3") {
		t.Errorf("retry terminated %v, want %s and %s", got, ids[0], ids[2])
	}
	if n := live(srv); n != 0 {
		t.Errorf("%d instances left, want 0", n)
	}
	if first := reqs[0].Form; first.Get("InstanceId.2") != ids[1] {
		t.Errorf("first call %v should have asked for %s", first, ids[1])
	}
}

// TestDeleteRefusesForeign never terminates an instance without the fleet's
// tag, even when asked by ID, and terminates nothing in such a call.
func TestDeleteRefusesForeign(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	ctx := ctxT(t)
	ours := seed(srv, "acme", "c", 1)[0]
	untagged := srv.Launch(ec2test.LaunchSpec{ImageID: testImage, SubnetID: testSubnets[0]})
	otherFleet := seed(srv, "other", "c", 1)[0]
	nameOnly := srv.Launch(ec2test.LaunchSpec{ImageID: testImage, SubnetID: testSubnets[0],
		Tags: map[string]string{"Name": "c-workers-7c3a1-0", "fleetd.io/cluster": "c"}})

	for _, foreign := range []string{untagged, otherFleet, nameOnly} {
		err := p.Delete(ctx, []string{ours, foreign})
		if !errors.Is(err, aws.ErrNotOwned) {
			t.Errorf("Delete(%s): %v, want ErrNotOwned", foreign, err)
		}
	}
	if n := srv.Calls("TerminateInstances"); n != 0 {
		t.Errorf("%d TerminateInstances calls, want 0", n)
	}
	if n := live(srv); n != 4 {
		t.Errorf("%d live instances, want all 4", n)
	}
}

// TestDeleteBatches deletes 2,500 instances: at most 1,000 per
// TerminateInstances call.
func TestDeleteBatches(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	ids := seed(srv, "acme", "c", 2500)
	if err := p.Delete(ctxT(t), ids); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests("TerminateInstances")
	if len(reqs) != 3 {
		t.Errorf("%d TerminateInstances calls, want 3", len(reqs))
	}
	for i, r := range reqs {
		if r.Form.Has("InstanceId.1001") {
			t.Errorf("call %d has more than 1,000 IDs", i)
		}
	}
	if n := live(srv); n != 0 {
		t.Errorf("%d instances left, want 0", n)
	}
}
