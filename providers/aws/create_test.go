package aws_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/reconcile"
)

// tagSpecs decodes TagSpecification.N.* of a RunInstances form into
// resource type -> tags.
func tagSpecs(form url.Values) map[string]map[string]string {
	out := map[string]map[string]string{}
	for n := 1; form.Has(fmt.Sprintf("TagSpecification.%d.ResourceType", n)); n++ {
		p := fmt.Sprintf("TagSpecification.%d.", n)
		tags := map[string]string{}
		for m := 1; form.Has(fmt.Sprintf("%sTag.%d.Key", p, m)); m++ {
			tags[form.Get(fmt.Sprintf("%sTag.%d.Key", p, m))] = form.Get(fmt.Sprintf("%sTag.%d.Value", p, m))
		}
		out[form.Get(p+"ResourceType")] = tags
	}
	return out
}

// TestCreateSendsDocumentedRequest asserts on what the server received: the
// form parameters of RunInstances, and the instance it made of them.
func TestCreateSendsDocumentedRequest(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	spec := machineSpecs("payments-prod", "workers", 4, 1)[0]
	ms, err := p.Create(ctxT(t), []reconcile.MachineSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests("RunInstances")
	if len(reqs) != 1 {
		t.Fatalf("%d RunInstances requests, want 1", len(reqs))
	}
	form := reqs[0].Form
	wantTags := map[string]string{
		"fleetd.io/fleet": "acme", "fleetd.io/provider": testProvider, "fleetd.io/cluster": "payments-prod", "fleetd.io/team": "payments",
		"fleetd.io/pool": "workers", "fleetd.io/template-hash": "7c3a1", "Name": spec.Name,
	}
	for _, c := range []struct{ param, want string }{
		{"Action", "RunInstances"},
		{"Version", "2016-11-15"},
		{"ImageId", testImage},
		{"InstanceType", "m6i.xlarge"},
		{"MinCount", "1"},
		{"MaxCount", "1"},
		{"SubnetId", testSubnets[4%3]},
		{"SecurityGroupId.1", testGroups[0]},
		{"SecurityGroupId.2", testGroups[1]},
		{"IamInstanceProfile.Name", testProfile},
		{"MetadataOptions.HttpTokens", "required"},
		{"BlockDeviceMapping.1.DeviceName", testRootDevice},
		{"BlockDeviceMapping.1.Ebs.VolumeSize", "100"},
		{"BlockDeviceMapping.1.Ebs.VolumeType", "gp3"},
		{"BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"},
		{"ClientToken", aws.ClientToken("acme", "payments-prod", spec.Name)},
	} {
		if got := form.Get(c.param); got != c.want {
			t.Errorf("%s = %q, want %q", c.param, got, c.want)
		}
	}
	if tok := form.Get("ClientToken"); len(tok) == 0 || len(tok) > 64 {
		t.Errorf("ClientToken %q: want 1..64 characters", tok)
	}
	ud, err := base64.StdEncoding.DecodeString(form.Get("UserData"))
	if err != nil || !bytes.Equal(ud, spec.UserData) {
		t.Errorf("UserData does not decode to the spec's user data (err %v)", err)
	}
	specs := tagSpecs(form)
	for _, rt := range []string{"instance", "volume"} {
		if fmt.Sprint(specs[rt]) != fmt.Sprint(wantTags) {
			t.Errorf("TagSpecification for %s = %v, want %v", rt, specs[rt], wantTags)
		}
	}
	if reqs[0].Region != testRegion {
		t.Errorf("signed for region %q, want %q", reqs[0].Region, testRegion)
	}

	// What the server made of it.
	in, ok := srv.Instance(ms[0].ID)
	if !ok {
		t.Fatalf("instance %s not on the server", ms[0].ID)
	}
	if in.HTTPTokens != "required" {
		t.Errorf("instance HttpTokens %q, want required (IMDSv2)", in.HTTPTokens)
	}
	if fmt.Sprint(in.Tags) != fmt.Sprint(wantTags) {
		t.Errorf("instance tags %v", in.Tags)
	}
	if len(in.Volumes) != 1 || in.Volumes[0].SizeGiB != 100 || in.Volumes[0].DeviceName != testRootDevice ||
		fmt.Sprint(in.Volumes[0].Tags) != fmt.Sprint(wantTags) {
		t.Errorf("volumes %+v, want one 100 GiB root volume with the tags", in.Volumes)
	}
	if in.AvailabilityZone != testZones[1] {
		t.Errorf("zone %q, want %q", in.AvailabilityZone, testZones[1])
	}
	m := ms[0]
	if m.Name != spec.Name || m.Provider != testProvider || m.Address != in.PrivateIP || m.State != reconcile.MachinePending || m.CreatedAt.IsZero() {
		t.Errorf("returned machine %+v", m)
	}
}

func TestCreateRootVolume(t *testing.T) {
	t.Run("DiskGiB 0 keeps the image's root volume and asks nothing about the image", func(t *testing.T) {
		srv := newServer(t)
		p := newProvider(t, srv, "acme")
		spec := machineSpecs("c", "workers", 0, 1)[0]
		spec.Size.DiskGiB = 0
		if _, err := p.Create(ctxT(t), []reconcile.MachineSpec{spec}); err != nil {
			t.Fatal(err)
		}
		for k := range srv.Requests("RunInstances")[0].Form {
			if strings.HasPrefix(k, "BlockDeviceMapping") {
				t.Errorf("request has %s", k)
			}
		}
		if n := srv.Calls("DescribeImages"); n != 0 {
			t.Errorf("%d DescribeImages calls, want 0", n)
		}
	})
	t.Run("the root device is looked up once per image", func(t *testing.T) {
		srv := newServer(t)
		p := newProvider(t, srv, "acme")
		ctx := ctxT(t)
		if _, err := p.Create(ctx, machineSpecs("c", "workers", 0, 6)); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Create(ctx, machineSpecs("d", "workers", 0, 2)); err != nil {
			t.Fatal(err)
		}
		if n := srv.Calls("DescribeImages"); n != 1 {
			t.Errorf("%d DescribeImages calls for one image, want 1", n)
		}
	})
}

// TestCreateSpreadsSubnets checks that a pool's machines go round-robin
// across the subnets (and so the zones), and that a retry picks the same
// subnet.
func TestCreateSpreadsSubnets(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	specs := machineSpecs("payments-prod", "workers", 0, 7)
	ms, err := p.Create(ctxT(t), specs)
	if err != nil {
		t.Fatal(err)
	}
	zones := map[string]int{}
	for i, m := range ms {
		in, _ := srv.Instance(m.ID)
		if want := testSubnets[i%3]; in.SubnetID != want {
			t.Errorf("machine %s in %s, want %s", m.Name, in.SubnetID, want)
		}
		zones[in.AvailabilityZone]++
	}
	if len(zones) != 3 || zones[testZones[0]] != 3 || zones[testZones[1]] != 2 || zones[testZones[2]] != 2 {
		t.Errorf("machines per zone %v, want 3/2/2", zones)
	}

}

// TestCreateIdempotent covers creates retried after failures at every point.
func TestCreateIdempotent(t *testing.T) {
	t.Run("lost response retried by the SDK returns the same instance", func(t *testing.T) {
		srv := newServer(t)
		p := newProvider(t, srv, "acme")
		srv.LoseResponses("RunInstances", 1)
		ms, err := p.Create(ctxT(t), machineSpecs("c", "workers", 0, 1))
		if err != nil {
			t.Fatal(err)
		}
		if n := srv.Calls("RunInstances"); n != 2 {
			t.Errorf("%d RunInstances calls, want 2 (one lost, one retried)", n)
		}
		if n := len(srv.Instances()); n != 1 {
			t.Errorf("%d instances, want 1 (no twin)", n)
		}
		reqs := srv.Requests("RunInstances")
		if reqs[0].Form.Get("ClientToken") != reqs[1].Form.Get("ClientToken") {
			t.Errorf("the retry changed the client token")
		}
		if in, _ := srv.Instance(ms[0].ID); in.ID == "" {
			t.Errorf("returned ID %s is not the instance made", ms[0].ID)
		}
	})

	t.Run("lost response retried by the next sync before describe shows it", func(t *testing.T) {
		srv := newServer(t)
		p := newProvider(t, srv, "acme", withAttempts(1))
		ctx := ctxT(t)
		specs := machineSpecs("c", "workers", 0, 2)
		srv.SetDescribeLag(true) // EC2's eventual consistency: new instances are not described yet
		srv.LoseResponses("RunInstances", 2)
		ms, err := p.Create(ctx, specs)
		if err == nil || len(ms) != 0 {
			t.Fatalf("Create with lost responses: %v, %d machines; want an error and none", err, len(ms))
		}
		if reconcile.Classify(err) != reconcile.ReactRetry {
			t.Errorf("lost response: %v is not transient", err)
		}
		ms, err = p.Create(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		srv.SetDescribeLag(false)
		// The retry sent the same launch: same subnet, same token.
		byName := map[string][]url.Values{}
		for _, r := range srv.Requests("RunInstances") {
			tags := tagSpecs(r.Form)["instance"]
			byName[tags["Name"]] = append(byName[tags["Name"]], r.Form)
		}
		for _, s := range specs {
			forms := byName[s.Name]
			if len(forms) != 2 {
				t.Fatalf("%s: %d launches, want 2", s.Name, len(forms))
			}
			for _, k := range []string{"SubnetId", "ClientToken"} {
				if forms[0].Get(k) != forms[1].Get(k) {
					t.Errorf("%s: retry changed %s from %q to %q", s.Name, k, forms[0].Get(k), forms[1].Get(k))
				}
			}
		}
		if n := len(srv.Instances()); n != 2 {
			t.Errorf("%d instances, want 2 (no twins)", n)
		}
		listed, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(listed) != 2 || listed[0].ID != ms[0].ID || listed[1].ID != ms[1].ID {
			t.Errorf("listed %v, created %v", listed, ms)
		}
	})

	t.Run("an existing name makes no call to RunInstances", func(t *testing.T) {
		srv := newServer(t)
		p := newProvider(t, srv, "acme")
		ctx := ctxT(t)
		specs := machineSpecs("c", "workers", 0, 3)
		first, err := p.Create(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		srv.ResetCalls()
		again, err := p.Create(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		if n := srv.Calls("RunInstances"); n != 0 {
			t.Errorf("%d RunInstances calls, want 0", n)
		}
		for i := range first {
			if first[i].ID != again[i].ID {
				t.Errorf("%s: %s then %s", first[i].Name, first[i].ID, again[i].ID)
			}
		}
	})

	t.Run("a name reused after termination gets a new instance, retries included", func(t *testing.T) {
		srv := newServer(t)
		p := newProvider(t, srv, "acme")
		ctx := ctxT(t)
		specs := machineSpecs("c", "workers", 0, 1)
		old, err := p.Create(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Delete(ctx, []string{old[0].ID}); err != nil {
			t.Fatal(err)
		}
		srv.SetDescribeLag(true)
		fresh, err := p.Create(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		if fresh[0].ID == old[0].ID {
			t.Fatalf("recreate returned the terminated instance %s", old[0].ID)
		}
		// The same create again, while describe does not show the new one yet.
		retried, err := p.Create(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		srv.SetDescribeLag(false)
		if retried[0].ID != fresh[0].ID {
			t.Errorf("retried recreate made %s, want %s", retried[0].ID, fresh[0].ID)
		}
		if n := live(srv); n != 1 {
			t.Errorf("%d live instances, want 1", n)
		}
	})

	t.Run("changed user data under a used token gets a new instance, retries included", func(t *testing.T) {
		srv := newServer(t)
		p := newProvider(t, srv, "acme")
		ctx := ctxT(t)
		specs := machineSpecs("c", "workers", 0, 1)
		old, err := p.Create(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Delete(ctx, []string{old[0].ID}); err != nil {
			t.Fatal(err)
		}
		specs[0].UserData = []byte("#cloud-config\n# a new registration token\n")
		srv.SetDescribeLag(true)
		var ids []string
		for range 2 {
			ms, err := p.Create(ctx, specs)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ms[0].ID)
		}
		srv.SetDescribeLag(false)
		if ids[0] == old[0].ID || ids[0] != ids[1] {
			t.Errorf("old %s, then %v; want one new instance", old[0].ID, ids)
		}
		if n := live(srv); n != 1 {
			t.Errorf("%d live instances, want 1", n)
		}
	})

	t.Run("the token differs by fleet, cluster and name", func(t *testing.T) {
		seen := map[string]bool{}
		for _, k := range [][3]string{{"acme", "c", "c-w-1"}, {"other", "c", "c-w-1"}, {"acme", "d", "c-w-1"}, {"acme", "c", "c-w-2"}} {
			tok := aws.ClientToken(k[0], k[1], k[2])
			if len(tok) != 64 || seen[tok] {
				t.Errorf("ClientToken%v = %q", k, tok)
			}
			seen[tok] = true
			if tok != aws.ClientToken(k[0], k[1], k[2]) {
				t.Errorf("ClientToken%v is not deterministic", k)
			}
		}
	})
}

// TestUserDataStaysSecret makes the endpoint quote the user data in its
// error and checks that neither the error nor any log line carries it.
func TestUserDataStaysSecret(t *testing.T) {
	srv := newServer(t)
	var logs bytes.Buffer
	p := newProvider(t, srv, "acme", withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	spec := machineSpecs("c", "workers", 0, 1)[0]
	encoded := base64.StdEncoding.EncodeToString(spec.UserData)
	srv.FailNext("RunInstances", "InvalidParameterValue",
		"Invalid user data '"+encoded+"': the line '"+string(spec.UserData)+"' has token "+secretToken, 400)
	_, err := p.Create(ctxT(t), []reconcile.MachineSpec{spec})
	if err == nil {
		t.Fatal("Create: no error")
	}
	for _, secret := range []string{secretToken, encoded} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals user data: %v", err)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs reveal user data: %s", logs.String())
		}
	}
	if !strings.Contains(err.Error(), "InvalidParameterValue") || !strings.Contains(err.Error(), spec.Name) {
		t.Errorf("error %q should name the code and the machine", err)
	}
	if !strings.Contains(logs.String(), "Launching instance") {
		t.Errorf("no log before launching: %s", logs.String())
	}
}

func TestCreateReactions(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(*ec2test.Server, *reconcile.MachineSpec)
		want  reconcile.Reaction
	}{
		{"unknown image stalls", func(_ *ec2test.Server, s *reconcile.MachineSpec) {
			s.Size.Image, s.Size.DiskGiB = "ami-00000000000000bad", 0
		}, reconcile.ReactStall},
		{"unknown image behind a disk size stalls", func(_ *ec2test.Server, s *reconcile.MachineSpec) {
			s.Size.Image = "ami-00000000000000bad"
		}, reconcile.ReactStall},
		{"no instance type stalls", func(_ *ec2test.Server, s *reconcile.MachineSpec) { s.Size.InstanceType = "" }, reconcile.ReactStall},
		{"a disk larger than EBS allows stalls", func(_ *ec2test.Server, s *reconcile.MachineSpec) { s.Size.DiskGiB = 70000 }, reconcile.ReactStall},
		{"unknown subnet stalls", func(srv *ec2test.Server, _ *reconcile.MachineSpec) {
			srv.FailNext("RunInstances", "InvalidSubnetID.NotFound", "The subnet ID 'subnet-x' does not exist", 400)
		}, reconcile.ReactStall},
		{"insufficient capacity is transient", func(srv *ec2test.Server, _ *reconcile.MachineSpec) {
			srv.FailNext("RunInstances", "InsufficientInstanceCapacity", "We currently do not have sufficient capacity.", 500)
			srv.FailNext("RunInstances", "InsufficientInstanceCapacity", "We currently do not have sufficient capacity.", 500)
			srv.FailNext("RunInstances", "InsufficientInstanceCapacity", "We currently do not have sufficient capacity.", 500)
		}, reconcile.ReactRetry},
		{"unauthorized stalls until the configuration changes", func(srv *ec2test.Server, _ *reconcile.MachineSpec) {
			srv.FailNext("RunInstances", "UnauthorizedOperation", "You are not authorized to perform this operation.", 403)
		}, reconcile.ReactStall},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t)
			p := newProvider(t, srv, "acme")
			spec := machineSpecs("c", "workers", 0, 1)[0]
			c.setup(srv, &spec)
			ms, err := p.Create(ctxT(t), []reconcile.MachineSpec{spec})
			if got := reconcile.Classify(err); got != c.want {
				t.Errorf("Classify(%v) = %v, want %v", err, got, c.want)
			}
			if len(ms) != 0 || live(srv) != 0 {
				t.Errorf("%d machines returned, %d made; want none", len(ms), live(srv))
			}
		})
	}
}

// TestCreatePartial checks that one failing machine neither stops nor hides
// the others.
func TestCreatePartial(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	specs := machineSpecs("c", "workers", 0, 3)
	specs[1].Size.Image = "ami-00000000000000bad"
	specs[1].Size.DiskGiB = 0
	ms, err := p.Create(ctxT(t), specs)
	if err == nil || !strings.Contains(err.Error(), specs[1].Name) {
		t.Fatalf("Create: %v; want an error naming %s", err, specs[1].Name)
	}
	var stalled *reconcile.StalledError
	if !errors.As(err, &stalled) {
		t.Errorf("error %v is not stalled", err)
	}
	if len(ms) != 2 || ms[0].Name != specs[0].Name || ms[1].Name != specs[2].Name {
		t.Errorf("machines %v, want the first and third in order", ms)
	}
}

// TestCreateNameOfAnotherCluster refuses to treat another cluster's machine
// of the same name as the one asked for.
func TestCreateNameOfAnotherCluster(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	spec := machineSpecs("c", "workers", 0, 1)[0]
	srv.Launch(ec2test.LaunchSpec{ImageID: testImage, SubnetID: testSubnets[0], Tags: ownedTags("acme", "other", spec.Name)})
	ms, err := p.Create(ctxT(t), []reconcile.MachineSpec{spec})
	if err == nil || !strings.Contains(err.Error(), `cluster "other"`) || len(ms) != 0 {
		t.Errorf("Create: %v, %v; want an error naming cluster other", ms, err)
	}
	if n := srv.Calls("RunInstances"); n != 0 {
		t.Errorf("%d launches, want 0", n)
	}
}
