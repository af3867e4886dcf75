package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
)

// liveFleet is a fleet without Rancher whose providers are the EC2 protocol
// server and the vCenter simulator; %s are filled in by the test.
const liveFleet = `apiVersion: fleetd.io/v1alpha1
kind: Fleet
name: acme
providers:
  - name: aws-eu
    type: aws
    aws:
      region: eu-west-1
      subnets: [subnet-0a1b2c3d4e5f60001, subnet-0a1b2c3d4e5f60002]
      image: ami-0abcdef1234567890
  - name: dc1
    type: vsphere
    vsphere:
      server: %SERVER%
      credentials: env:FLEETD_TEST_VSPHERE
      datacenter: %DC%
      computeCluster: %CLUSTER%
      datastore: %DS%
      network: %NET%
      folder: fleetd
      template: %TEMPLATE%
      caFile: %CA%
teams:
  - name: qa
sizes:
  small:
    aws: {instanceType: m6i.large}
    vsphere: {cpus: 2, memoryMiB: 4096, diskGiB: 20}
classes:
  single:
    kubernetesVersion: v1.31.4+rke2r1
    pools:
      - name: all
        roles: [etcd, controlplane, worker]
        replicas: 1
        size: small
pricing:
  aws-eu:
    instanceHourly: {m6i.large: 0.107}
  dc1:
    cpuHourly: 0.012
    memoryGiBHourly: 0.004
`

// startLiveFleet starts the EC2 protocol server and the vCenter simulator
// (started with opts), points the AWS SDK and the vSphere credentials at
// them, and writes liveFleet with one cluster per provider (qa-aws on
// aws-eu, qa-vs on dc1) into dir/fleet, which it returns as dir.
func startLiveFleet(t *testing.T, opts vcsimserver.Options) (*ec2test.Server, *vcsimserver.Server, string) {
	t.Helper()
	ec2 := ec2test.New()
	t.Cleanup(ec2.Close)
	ec2.AddImage("ami-0abcdef1234567890", "/dev/sda1")
	ec2.AddSubnet("subnet-0a1b2c3d4e5f60001", "eu-west-1a")
	ec2.AddSubnet("subnet-0a1b2c3d4e5f60002", "eu-west-1b")
	vc, err := vcsimserver.Start(context.Background(), opts)
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
	writeFile(t, filepath.Join(dir, "fleet", "fleet.yaml"), fleet)
	for _, c := range []struct{ name, provider string }{{"qa-aws", "aws-eu"}, {"qa-vs", "dc1"}} {
		writeFile(t, filepath.Join(dir, "fleet", "clusters", "qa", c.name+".yaml"), "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: "+c.name+
			"\nteam: qa\nprovider: "+c.provider+"\nclass: single\n")
	}
	t.Setenv("FLEETD_TEST_VSPHERE", "fleetd:not-a-real-password")
	t.Setenv("AWS_ENDPOINT_URL_EC2", ec2.URL)
	awsTestEnv(t, dir)
	return ec2, vc, dir
}

// awsTestEnv gives the AWS SDK the EC2 protocol server's keys and no
// other source of credentials or configuration (files under dir that do
// not exist, no instance metadata).
func awsTestEnv(t *testing.T, dir string) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", ec2test.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ec2test.SecretAccessKey)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-aws-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// TestApplyLive runs fleetd apply through the real provider wiring (fleet.yaml
// → aws.New and vsphere.New) against the EC2 protocol server and the vCenter
// simulator over verified TLS, then removes a cluster and applies again.
func TestApplyLive(t *testing.T) {
	ec2, vc, dir := startLiveFleet(t, vcsimserver.Options{})
	fleetDir := filepath.Join(dir, "fleet")
	git := gitRepo(t, fleetDir)
	work := filepath.Join(dir, "work")
	apply := func() (int, string, string) { return run(t, "apply", fleetDir, "--work-dir", work) }
	code, out, stderr := apply()
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "2 to create") {
		t.Errorf("first apply:\n%s", out)
	}
	if n := len(ec2.Instances()); n != 1 {
		t.Errorf("%d EC2 instances, want 1", n)
	}
	if strings.Contains(stderr, "not-a-real-password") {
		t.Error("the vCenter password is in the log")
	}
	for _, in := range ec2.Instances() {
		_ = ec2.SetState(in.ID, ec2test.StateRunning)
	}

	// Applying again finds the machines, makes no twins, and records them.
	if code, out, stderr := apply(); code != 0 || !strings.Contains(out, "Machines: 0 to create, 0 to remove") {
		t.Fatalf("second apply: exit %d\n%s\n%s", code, out, stderr)
	}
	if n := len(ec2.Instances()); n != 1 {
		t.Errorf("%d EC2 instances after a second apply, want 1", n)
	}
	status := git("show", "fleet-status:status/qa/qa-vs.yaml")
	if !strings.Contains(status, "name: qa-vs-all-") || !strings.Contains(status, "existing: 1") {
		t.Fatalf("status of qa-vs:\n%s", status)
	}

	vms, err := vc.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := countFleetVMs(t, vms); n != 1 {
		t.Fatalf("%d fleet VMs in vCenter, want 1", n)
	}

	// Removing one of two clusters trips the prune guard (50% > 30%).
	git("rm", "-q", "clusters/qa/qa-vs.yaml")
	git("commit", "-q", "-m", "qa: remove qa-vs")
	code, out, stderr = apply()
	if code != 0 || !strings.Contains(out, "prune guard") {
		t.Fatalf("apply after removal: exit %d, want the prune guard to hold the decommission\n%s\n%s", code, out, stderr)
	}
	// With the guard raised, the cluster is decommissioned: its VM destroyed.
	fleetYAML := filepath.Join(fleetDir, "fleet.yaml")
	fleet, err := os.ReadFile(fleetYAML)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, fleetYAML, string(fleet)+"policy:\n  pruneGuardPercent: 50\n")
	git("commit", "-q", "-am", "policy: allow removing half the fleet")
	for i := 0; ; i++ {
		code, out, stderr := apply()
		if code != 0 {
			t.Fatalf("apply after removal: exit %d\n%s\n%s", code, out, stderr)
		}
		if strings.Contains(out, "no cluster changes") {
			break
		}
		if i == 5 {
			t.Fatalf("qa-vs is not decommissioned:\n%s", out)
		}
	}
	summary := git("show", "fleet-status:status/SUMMARY.md")
	if strings.Contains(summary, "| qa-vs |") && !strings.Contains(summary, "Decommissioned") {
		t.Errorf("summary after removal:\n%s", summary)
	}
	if n := countFleetVMs(t, vms); n != 0 {
		t.Errorf("%d fleet VMs left in vCenter after the decommission, want 0", n)
	}
}

// countFleetVMs counts the VMs below the fleet's base folder in vCenter.
func countFleetVMs(t *testing.T, c *vim25.Client) int {
	t.Helper()
	ctx := context.Background()
	m := view.NewManager(c)
	v, err := m.CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Destroy(ctx) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, vm := range vms {
		if strings.HasPrefix(vm.Name, "qa-") {
			n++
		}
	}
	return n
}
