package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// TestRefusedVSphereLoginIsNotRetriedUntilTheFileChanges runs `fleetd run`
// with vSphere credentials from a file that vCenter refuses: the login is
// tried once across several syncs, each ending stalled with a message that
// says what to fix, and again once the file changes.
func TestRefusedVSphereLoginIsNotRetriedUntilTheFileChanges(t *testing.T) {
	vc, err := vcsimserver.Start(context.Background(), vcsimserver.Options{Username: "fleetd", Password: "right-password"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "vcenter-ca.pem")
	if err := vc.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "dc1-credentials")
	if err := os.WriteFile(creds, []byte("fleetd:wrong-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fleet := hangFleetHead + "providers:\n" + strings.NewReplacer(
		"https://%HANG%/sdk", vc.URL.String(), "env:FLEETD_TEST_VSPHERE", "file:"+creds,
		"DC0_C0", vcsimserver.ComputeCluster, "DC0", vcsimserver.Datacenter, "LocalDS_0", vcsimserver.Datastore,
		"VM Network", vcsimserver.Network, "template: ubuntu", "template: "+vc.Template,
		"insecure: true", "caFile: "+ca).Replace(hangFleetVSphere) + hangFleetTail
	fleetDir := filepath.Join(dir, "fleet")
	for p, d := range map[string]string{"fleet.yaml": fleet,
		"clusters/qa/qa-vs.yaml": "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-vs\nteam: qa\nprovider: dc1\nclass: single\n"} {
		writeFile(t, filepath.Join(fleetDir, p), d)
	}
	gitRepo(t, fleetDir)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &logbuf.Buffer{}
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"run", "--repo", fleetDir, "--work-dir", filepath.Join(dir, "work"),
			"--listen", "127.0.0.1:0", "--poll-interval", "1s"}, io.Discard, stderr)
	}()
	waitSyncs := func(n int) []map[string]any {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if ended := syncsEnded(stderr.String()); len(ended) >= n {
				return ended
			}
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d syncs ended; log:\n%s", n, stderr.String())
			}
			select {
			case c := <-code:
				t.Fatalf("fleetd run exited %d; log:\n%s", c, stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	ended := waitSyncs(3)
	for i, e := range ended[:3] {
		msg, _ := e["error"].(string)
		if e["result"] != "stalled" || !strings.Contains(msg, "vSphere dc1 refused the credentials from file:"+creds+": fix them") {
			t.Errorf("sync %d ended %v with %q; want stalled on refused credentials", i+1, e["result"], msg)
		}
	}
	if n := vc.RequestsByMethod()["Login"]; n != 1 {
		t.Fatalf("%d logins in 3 syncs, want 1", n)
	}

	if err := os.WriteFile(creds, []byte("fleetd:right-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(ended)
	var last map[string]any
	for i := 0; ; i++ {
		ended = waitSyncs(before + i + 1)
		last = ended[len(ended)-1]
		if last["result"] != "stalled" || i == 5 {
			break
		}
	}
	if msg, _ := last["error"].(string); strings.Contains(msg, "refused the credentials") {
		t.Fatalf("after the credentials file changed, the sync ended %v with %q", last["result"], msg)
	}
	if n := vc.RequestsByMethod()["Login"]; n != 2 {
		t.Errorf("%d logins after the credentials file changed, want 2", n)
	}
	if strings.Contains(stderr.String(), "wrong-password") || strings.Contains(stderr.String(), "right-password") {
		t.Error("the log holds the vCenter password")
	}
	cancel()
	<-code
}
