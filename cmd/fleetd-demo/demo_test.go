package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/kubetest"
)

// TestDemoConverges runs the whole demo: the example fleet converges on the
// vCenter simulator and the EC2 protocol server through the real providers,
// the merged change and the TTL expiry converge too, and the status branch
// tells the story.
func TestDemoConverges(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed")
	}
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"loop", "-work-dir", dir, "-rancher", "memory", "../../examples/fleet-repo"}, &out, &errOut); err != nil {
		t.Fatalf("demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{
		"9 to create",
		"| payments | payments-prod | Ready | control 3/3, workers 8/8 |",
		"| qa | qa-pr-77 | **Decommissioned** |",
		"status: trading/trading-dev Decommissioned",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "error:") {
		t.Errorf("a sync failed:\n%s", out.String())
	}
	// The registration token is a secret: it reaches machines' user data and
	// nothing the demo shows or commits.
	logOut, err := exec.Command("git", "-C", dir+"/fleet-repo", "log", "-p", "fleet-status").Output()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(logOut, []byte("SECRET-TOKEN")) || strings.Contains(out.String()+errOut.String(), "SECRET-TOKEN") {
		t.Error("a registration token leaked into status commits or output")
	}
}

// TestDemoKube runs the demo against a real kube-apiserver with the Rancher
// stand-in: fleetd's real registry and node access register every cluster,
// scale payments-prod up and down through drain and Rancher machine deletion,
// and decommission two clusters.
func TestDemoKube(t *testing.T) {
	if _, err := kubetest.FindAssets(); err != nil {
		if kubetest.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"loop", "-work-dir", dir, "-rancher", "kube", "../../examples/fleet-repo"}, &out, &errOut); err != nil {
		t.Fatalf("demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{
		"Rancher stand-in at https://127.0.0.1:",
		"Rancher (stand-in): node-deleted payments-prod-workers-",
		// Rancher serves no new cluster's API before its first machine
		// registers: the first syncs say the clusters are registering.
		"registering with Rancher (no node has joined yet): ",
		"| payments | payments-prod | Ready | control 3/3, workers 6/6 |",
		"| qa | qa-pr-77 | **Decommissioned** |",
		"status: trading/trading-dev Decommissioned",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "error:") {
		t.Errorf("a sync failed:\n%s", out.String())
	}
}
