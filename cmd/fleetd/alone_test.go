package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
)

// TestAnUnavailableVCenterHoldsBackOnlyItsClusters applies a fleet of two
// providers while vCenter answers every call with 503: AWS's cluster gets
// its machine in the same sync, the vSphere cluster is left as it is and its
// status says why.
func TestAnUnavailableVCenterHoldsBackOnlyItsClusters(t *testing.T) {
	ec2, _, dir := startLiveFleet(t, vcsimserver.Options{
		HTTPStatus: func(string) int { return 503 },
	})
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
