package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/vcsimserver"
	"github.com/fleetd/fleetd/providers/aws/ec2test"
)

// TestAnUnavailableVCenterHoldsBackOnlyItsClusters applies a fleet of two
// providers while vCenter answers every call with 503: AWS's cluster gets
// its machine in the same sync, the vSphere cluster is left as it is and its
// status says why.
func TestAnUnavailableVCenterHoldsBackOnlyItsClusters(t *testing.T) {
	ec2 := ec2test.New()
	t.Cleanup(ec2.Close)
	ec2.AddImage("ami-0abcdef1234567890", "/dev/sda1")
	ec2.AddSubnet("subnet-0a1b2c3d4e5f60001", "eu-west-1a")
	ec2.AddSubnet("subnet-0a1b2c3d4e5f60002", "eu-west-1b")
	vc, err := vcsimserver.Start(context.Background(), vcsimserver.Options{
		HTTPStatus: func(string) int { return 503 },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Close)

	dir := t.TempDir()
	ca := filepath.Join(dir, "vcenter-ca.pem")
	if err := vc.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	fleet := strings.NewReplacer("%SERVER%", vc.URL.String(), "%DC%", vcsimserver.Datacenter,
		"%CLUSTER%", vcsimserver.ComputeCluster, "%DS%", vcsimserver.Datastore, "%NET%", vcsimserver.Network,
		"%TEMPLATE%", vc.Template, "%CA%", ca).Replace(liveFleet)
	write := func(p, data string) {
		t.Helper()
		full := filepath.Join(dir, "fleet", p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fleet.yaml", fleet)
	for _, c := range []struct{ name, provider string }{{"qa-aws", "aws-eu"}, {"qa-vs", "dc1"}} {
		write("clusters/qa/"+c.name+".yaml", "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: "+c.name+
			"\nteam: qa\nprovider: "+c.provider+"\nclass: single\n")
	}
	t.Setenv("FLEETD_TEST_VSPHERE", "fleetd:not-a-real-password")
	t.Setenv("AWS_ENDPOINT_URL_EC2", ec2.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", ec2test.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ec2test.SecretAccessKey)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-aws-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	fleetDir := filepath.Join(dir, "fleet")
	git := gitRepo(t, fleetDir)
	_, out, stderr := run(t, "apply", fleetDir, "--work-dir", filepath.Join(dir, "work"))
	if n := len(ec2.Instances()); n != 1 {
		t.Fatalf("%d EC2 instances, want 1: an unavailable vCenter held back AWS\n%s\n%s", n, out, stderr)
	}
	if !strings.Contains(out, "provider dc1 could not be listed") {
		t.Errorf("the plan does not say why qa-vs is left alone:\n%s", out)
	}
	status := git("show", "fleet-status:status/qa/qa-vs.yaml")
	if !strings.Contains(status, "dc1") || !strings.Contains(status, "503") {
		t.Errorf("status of qa-vs does not say why it is left alone:\n%s", status)
	}
	if strings.Contains(stderr, "not-a-real-password") {
		t.Error("the vCenter password is in the log")
	}
}
