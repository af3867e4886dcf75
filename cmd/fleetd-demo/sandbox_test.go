package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/kubetest"
)

// TestUpServesTheSandboxAndLeavesNothing runs `fleetd-demo up`, checks the
// environment file and the seeded repository, interrupts it, and checks that
// nothing is left behind.
func TestUpServesTheSandboxAndLeavesNothing(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed")
	}
	t.Setenv("TMPDIR", t.TempDir())
	envFile := filepath.Join(t.TempDir(), "sandbox.env")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	done := make(chan error, 1)
	// With the test kube-apiserver built (make test), the sandbox plays
	// Rancher too; without it, the rancher block is left out.
	withRancher := os.Getenv(kubetest.AssetsEnv) != ""
	mode := "off"
	if withRancher {
		mode = "auto"
	}
	go func() {
		done <- Run(ctx, []string{"up", "--env-file", envFile, "--rancher", mode, "../../examples/fleet-repo"}, &out, &errb)
	}()
	var env []byte
	for i := 0; ; i++ {
		if b, err := os.ReadFile(envFile); err == nil && len(b) > 0 {
			env = b
			break
		}
		if i == 300 {
			cancel()
			t.Fatalf("no environment file: %s%s", out.String(), errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"FLEETD_REPO=", "AWS_ENDPOINT_URL_EC2='http://127.0.0.1:", "VSPHERE_DC1=", "AWS_PROFILE_EU="} {
		if !strings.Contains(string(env), want) {
			t.Errorf("environment file lacks %s:\n%s", want, env)
		}
	}
	var repo string
	for _, line := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(line, "export FLEETD_REPO="); ok {
			repo = strings.Trim(v, "'")
		}
	}
	fleet, err := exec.Command("git", "--git-dir", repo, "show", "main:fleet.yaml").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(fleet), "server: https://127.0.0.1:") {
		t.Errorf("seeded fleet.yaml does not point at the simulator:\n%s", fleet)
	}
	if withRancher != strings.Contains(string(fleet), "url: https://127.0.0.1:") || withRancher != strings.Contains(string(env), "KUBECONFIG=") {
		t.Errorf("Rancher %v: seeded fleet.yaml and environment:\n%s\n%s", withRancher, fleet, env)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(envFile); !os.IsNotExist(err) {
		t.Error("the environment file is left behind")
	}
	if _, err := os.Stat(repo); !os.IsNotExist(err) {
		t.Error("the sandbox repository is left behind")
	}
}
