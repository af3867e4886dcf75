package main

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/internal/testenv/kubetest"
	"github.com/fleetd/fleetd/internal/testenv/rancherstandin"
	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/reconcile"
)

// TestApplyLiveRancher runs fleetd apply on a fleet with a rancher block
// (token and CA from files, as in production) against the Rancher stand-in
// on a real kube-apiserver: the cluster is registered, its machine created
// with the node command, and its agent's Rancher machine appears.
func TestApplyLiveRancher(t *testing.T) {
	env := startAPIServer(t, kubetest.Options{})
	ctx := context.Background()
	rs, err := rancherstandin.Start(ctx, env, rancherstandin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)
	ec2 := ec2test.New()
	t.Cleanup(ec2.Close)
	ec2.AddImage("ami-0abcdef1234567890", "/dev/sda1")
	vc, err := vcsimserver.Start(ctx, vcsimserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Close)

	dir := t.TempDir()
	vcCA, rancherCA, tokenFile := filepath.Join(dir, "vcenter-ca.pem"), filepath.Join(dir, "rancher-ca.pem"), filepath.Join(dir, "rancher-token")
	if err := vc.WriteCA(vcCA); err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string][]byte{rancherCA: rs.CAPEM, tokenFile: []byte(rs.Token + "\n")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fleet := strings.NewReplacer("%SERVER%", vc.URL.String(), "%DC%", vcsimserver.Datacenter,
		"%CLUSTER%", vcsimserver.ComputeCluster, "%DS%", vcsimserver.Datastore, "%NET%", vcsimserver.Network,
		"%TEMPLATE%", vc.Template, "%CA%", vcCA).Replace(liveFleet)
	fleet = strings.Replace(fleet, "name: acme\n", "name: acme\nrancher:\n  url: "+rs.URL+"\n  token: file:"+tokenFile+
		"\n  authProvider: openldap\n  caFile: "+rancherCA+"\n", 1)
	// The team's group is bound to the cluster (cluster-member).
	fleet = strings.Replace(fleet, "  - name: qa\n", "  - name: qa\n    groups: [\"cn=qa,ou=groups,dc=acme,dc=example\"]\n", 1)
	fleetDir := filepath.Join(dir, "fleet")
	for p, data := range map[string]string{
		"fleet.yaml":             fleet,
		"clusters/qa/qa-rs.yaml": "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-rs\nteam: qa\nprovider: dc1\nclass: single\n",
	} {
		writeFile(t, filepath.Join(fleetDir, p), data)
	}
	t.Setenv("FLEETD_TEST_VSPHERE", "fleetd:not-a-real-password")
	t.Setenv("AWS_ENDPOINT_URL_EC2", ec2.URL)
	awsTestEnv(t, dir)

	vim, err := vc.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	var out, stderr string
	registering := false
	for i := 0; i < 6; i++ {
		var code int
		code, out, stderr = run(t, "apply", fleetDir)
		// Work that waits for Rancher (no ID, no token, a downstream cluster
		// Rancher answers with 503 ClusterUnavailable until its first
		// machine registers) is in progress, not a failure: exit 0.
		if code != 0 {
			t.Fatalf("apply %d: exit %d\n%s\n%s", i+1, code, out, stderr)
		}
		t.Logf("apply %d:\n%s\n%s", i+1, out, stderr)
		if strings.Contains(out, "waiting: cluster qa-rs is registering") {
			registering = true
			if !strings.Contains(stderr, "Work is in progress") {
				t.Errorf("apply %d says the cluster is registering but asks for no next run:\n%s", i+1, stderr)
			}
			st, err := os.ReadFile(filepath.Join(fleetDir, "status", "qa", "qa-rs.yaml"))
			if err != nil || !strings.Contains(string(st), "phase: Provisioning") || !strings.Contains(string(st), "registering: Rancher provisions the cluster when its first machine registers") {
				t.Errorf("status of a registering cluster (%v):\n%s", err, st)
			}
		}
		_ = rs.Step(ctx)
		if i < 2 {
			// The machine boots for a while: Rancher has assigned the
			// cluster an ID, and no agent has registered yet.
			continue
		}
		vms, err := rancherstandin.VSphereVMs(ctx, vim)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.SyncAgents(ctx, vms); err != nil {
			t.Fatal(err)
		}
		_ = rs.Step(ctx)
		ms, err := dyn.Resource(rancher.MachineGVR("v1beta2")).Namespace("fleet-default").List(ctx, metav1.ListOptions{LabelSelector: rancher.LabelCAPICluster + "=qa-rs"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ms.Items) == 1 && registering {
			if name := ms.Items[0].GetName(); !strings.HasPrefix(name, "custom-") || ms.Items[0].GetLabels()["rke.cattle.io/machine-id"] == "" ||
				reconcile.RancherMachineName(ms.Items[0].GetLabels()["rke.cattle.io/machine-id"]) != name {
				t.Errorf("Rancher machine %s does not match its agent ID", name)
			}
			pc, err := dyn.Resource(rancher.ProvisioningClusterGVR).Namespace("fleet-default").Get(ctx, "qa-rs", metav1.GetOptions{})
			if err != nil || pc.GetLabels()[rancher.LabelFleet] != "acme" {
				t.Fatalf("provisioning cluster: %v %v", err, pc)
			}
			for _, secret := range []string{rs.Token, "not-a-real-password"} {
				if strings.Contains(out+stderr, secret) {
					t.Error("a secret is in fleetd's output")
				}
			}
			// Provisioned, its agent disconnects: Rancher answers the same
			// 503 ClusterUnavailable, now a transient error of this cluster
			// (exit 1), not an unreachable Rancher (exit 2).
			id, _, _ := unstructured.NestedString(pc.Object, "status", "clusterName")
			// The machine registered with the token of Rancher v2.15.0's
			// form: {token} in the node command, the token in this Secret.
			sec, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace(id).Get(ctx, "crt-token-default-token", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("registration token secret: %v", err)
			}
			if data, _, _ := unstructured.NestedMap(sec.Object, "data"); data["token"] == nil || data["expiresAt"] == nil {
				t.Errorf("registration token secret has keys %v, want token and expiresAt", slices.Collect(maps.Keys(data)))
			}
			rs.Disconnect(id)
			code, out, stderr := run(t, "apply", fleetDir)
			if code != exitFailed || !strings.Contains(stderr, "observe nodes of qa-rs") || strings.Contains(stderr, "could not be reached") {
				t.Errorf("apply with the agent disconnected: exit %d, want %d and the cluster's error\n%s\n%s", code, exitFailed, out, stderr)
			}
			if strings.Contains(out, "is registering") {
				t.Errorf("a provisioned cluster whose agent is disconnected is said to be registering:\n%s", out)
			}
			rs.Reconnect(id)
			_ = rs.Step(ctx)
			// Rancher v2.15.0 leaves a binding's summary at Error after the
			// retry that completes it, while its local outcome is
			// Completed: fleetd takes the binding as made and binds nothing
			// again.
			crtbs, err := dyn.Resource(rancher.CRTBGVR).Namespace(id).List(ctx, metav1.ListOptions{LabelSelector: rancher.LabelFleet + "=acme"})
			if err != nil || len(crtbs.Items) != 1 {
				t.Fatalf("bindings of %s: %v %v", id, err, crtbs)
			}
			summary, _, _ := unstructured.NestedString(crtbs.Items[0].Object, "status", "summary")
			local, _, _ := unstructured.NestedString(crtbs.Items[0].Object, "status", "summaryLocal")
			if summary != "Error" || local != "Completed" {
				t.Errorf("binding status summary %q, summaryLocal %q: the stand-in does not play Rancher v2.15.0", summary, local)
			}
			code, out, stderr = run(t, "apply", fleetDir)
			if code != 0 || strings.Contains(out, "bind ") || strings.Contains(out, "waiting:") {
				t.Errorf("apply after the agent reconnected: exit %d, want 0 with nothing to bind or wait for\n%s\n%s", code, out, stderr)
			}
			return
		}
	}
	t.Fatalf("the cluster's machine never registered with Rancher, or no apply said the cluster is registering (%t); last apply:\n%s\n%s", registering, out, stderr)
}
