package aws_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/reconcile"
)

// TestListPages lists a fleet of 1,200 instances among foreign, other
// fleets' and terminated ones: two DescribeInstances calls, filtered by the
// fleet's tag and the live states, following NextToken.
func TestListPages(t *testing.T) {
	srv := newServer(t)
	ids := seed(srv, "acme", "big", 1200)
	seed(srv, "other", "big", 30)
	for range 50 {
		srv.Launch(ec2test.LaunchSpec{ImageID: testImage, InstanceType: "t3.micro", SubnetID: testSubnets[0]})
	}
	for _, id := range seed(srv, "acme", "gone", 20) {
		if err := srv.SetState(id, ec2test.StateTerminated); err != nil {
			t.Fatal(err)
		}
	}
	p := newProvider(t, srv, "acme")
	ms, err := p.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(ids) {
		t.Fatalf("listed %d machines, want %d", len(ms), len(ids))
	}
	got := map[string]bool{}
	for _, m := range ms {
		got[m.ID] = true
		if m.Cluster != "big" || m.Provider != testProvider {
			t.Fatalf("foreign or misattributed machine listed: %+v", m)
		}
	}
	for _, id := range ids {
		if !got[id] {
			t.Errorf("%s not listed", id)
		}
	}
	if !slices.IsSortedFunc(ms, func(a, b reconcile.Machine) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	}) {
		t.Error("not sorted by name")
	}

	reqs := srv.Requests("DescribeInstances")
	if len(reqs) != 2 {
		for _, r := range reqs {
			t.Logf("%v", r.Form)
		}
		t.Fatalf("%d DescribeInstances calls, want 2", len(reqs))
	}
	f := reqs[0].Form
	for _, c := range []struct{ param, want string }{
		{"MaxResults", "1000"},
		{"Filter.1.Name", "tag:fleetd.io/fleet"},
		{"Filter.1.Value.1", "acme"},
		{"Filter.2.Name", "tag:fleetd.io/provider"},
		{"Filter.2.Value.1", testProvider},
		{"Filter.3.Name", "instance-state-name"},
	} {
		if got := f.Get(c.param); got != c.want {
			t.Errorf("%s = %q, want %q", c.param, got, c.want)
		}
	}
	var states []string
	for i := 1; f.Has(fmt.Sprintf("Filter.3.Value.%d", i)); i++ {
		states = append(states, f.Get(fmt.Sprintf("Filter.3.Value.%d", i)))
	}
	slices.Sort(states)
	if fmt.Sprint(states) != "[pending running shutting-down stopped stopping]" {
		t.Errorf("state filter %v", states)
	}
	if reqs[0].Form.Has("NextToken") || !reqs[1].Form.Has("NextToken") {
		t.Errorf("NextToken not followed: first %v, second %v", reqs[0].Form.Has("NextToken"), reqs[1].Form.Has("NextToken"))
	}
}

func TestListMapsInstances(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	for _, c := range []struct {
		state string
		want  reconcile.MachineState // "" = not listed
	}{
		{ec2test.StatePending, reconcile.MachinePending},
		{ec2test.StateRunning, reconcile.MachineRunning},
		{ec2test.StateStopping, reconcile.MachineStopped},
		{ec2test.StateStopped, reconcile.MachineStopped},
		{ec2test.StateShuttingDown, reconcile.MachineDeleting},
		{ec2test.StateTerminated, ""},
	} {
		t.Run(c.state, func(t *testing.T) {
			cluster := "st-" + c.state
			id := seed(srv, "acme", cluster, 1)[0]
			if err := srv.SetState(id, c.state); err != nil {
				t.Fatal(err)
			}
			ms, err := p.List(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			var got *reconcile.Machine
			for i := range ms {
				if ms[i].ID == id {
					got = &ms[i]
				}
			}
			if c.want == "" {
				if got != nil {
					t.Errorf("terminated instance listed: %+v", *got)
				}
				return
			}
			if got == nil {
				t.Fatalf("%s instance not listed", c.state)
			}
			in, _ := srv.Instance(id)
			want := reconcile.Machine{
				ID: id, Name: cluster + "-workers-7c3a1-0", Provider: testProvider, Cluster: cluster, Team: "payments",
				Pool: "workers", TemplateHash: "7c3a1", State: c.want, Address: in.PrivateIP, CreatedAt: in.LaunchTime,
			}
			if *got != want {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestListOwnedWithoutNameTag(t *testing.T) {
	srv := newServer(t)
	id := srv.Launch(ec2test.LaunchSpec{ImageID: testImage, SubnetID: testSubnets[0], Tags: map[string]string{"fleetd.io/fleet": "acme", "fleetd.io/provider": testProvider}})
	ms, err := newProvider(t, srv, "acme").List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != id || ms[0].Name != id {
		t.Errorf("listed %+v; want the owned instance, named by its ID", ms)
	}
}

// Two providers of one fleet may share an account and region: each lists and
// deletes only the machines it launched itself.
func TestListIgnoresOtherProvidersOfTheFleet(t *testing.T) {
	srv := newServer(t)
	tags := ownedTags("acme", "payments-prod", "payments-prod-workers-7c3a1-0")
	tags["fleetd.io/provider"] = "aws-other"
	id := srv.Launch(ec2test.LaunchSpec{ImageID: testImage, SubnetID: testSubnets[0], Tags: tags})
	p := newProvider(t, srv, "acme")
	ms, err := p.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 {
		t.Fatalf("listed %+v; want nothing of provider aws-other", ms)
	}
	if err := p.Delete(ctxT(t), []string{id}); err == nil {
		t.Fatal("deleting another provider's machine succeeded")
	}
}
