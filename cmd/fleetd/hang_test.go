package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"

	"github.com/fleetd/fleetd/internal/testenv/netfault"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

const hangFleetHead = `apiVersion: fleetd.io/v1alpha1
kind: Fleet
name: acme
`

const hangFleetAWS = `  - name: aws-eu
    type: aws
    aws:
      region: eu-west-1
      subnets: [subnet-0a1b2c3d4e5f60001]
      image: ami-0abcdef1234567890
`

const hangFleetVSphere = `  - name: dc1
    type: vsphere
    vsphere:
      server: https://%HANG%/sdk
      credentials: env:FLEETD_TEST_VSPHERE
      datacenter: DC0
      computeCluster: DC0_C0
      datastore: LocalDS_0
      network: VM Network
      folder: fleetd
      template: ubuntu
      insecure: true
`

const hangFleetTail = `teams:
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
`

// TestRunSurvivesAHungPeer runs `fleetd run` with the real sync loop while
// one peer accepts connections and never answers. Every sync ends, as a
// transient failure that names the call that hung, and the daemon goes on
// syncing.
func TestRunSurvivesAHungPeer(t *testing.T) {
	ec2 := ec2test.New()
	t.Cleanup(ec2.Close)
	ec2.AddImage("ami-0abcdef1234567890", "/dev/sda1")
	ec2.AddSubnet("subnet-0a1b2c3d4e5f60001", "eu-west-1a")
	dir := t.TempDir()
	t.Setenv("FLEETD_TEST_VSPHERE", "fleetd:not-a-real-password")
	t.Setenv("FLEETD_TEST_RANCHER_TOKEN", "token-abc:not-a-real-secret")
	awsTestEnv(t, dir)

	cluster := func(name, provider string) string {
		return "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: " + name + "\nteam: qa\nprovider: " + provider + "\nclass: single\n"
	}
	for _, c := range []struct {
		name  string
		fleet string // %HANG% is the hanging peer's address
		files map[string]string
		ec2   string // AWS_ENDPOINT_URL_EC2; %HANG% or the EC2 server
		repo  string // "" for the fleet repo itself; else the remote URL
		want  string
	}{
		// A local fleet repo has no deadline (it is not a peer); the git
		// case names its remote.
		{name: "git remote", fleet: hangFleetHead + "providers:\n" + hangFleetAWS + hangFleetTail,
			repo: "http://fleetd:s3cret-token@%HANG%/fleet.git",
			want: "git: clone http://%HANG%/fleet.git branch main: no answer within 300ms"},
		{name: "EC2 endpoint", fleet: hangFleetHead + "providers:\n" + hangFleetAWS + hangFleetTail,
			files: map[string]string{"clusters/qa/qa-aws.yaml": cluster("qa-aws", "aws-eu")}, ec2: "http://%HANG%",
			want: "provider aws-eu: list machines: no answer within 300ms"},
		{name: "vCenter", fleet: hangFleetHead + "providers:\n" + hangFleetVSphere + hangFleetTail,
			files: map[string]string{"clusters/qa/qa-vs.yaml": cluster("qa-vs", "dc1")},
			want:  "provider dc1: list machines: no answer within 300ms"},
		{name: "Rancher", fleet: hangFleetHead + "rancher:\n  url: https://%HANG%\n  token: env:FLEETD_TEST_RANCHER_TOKEN\n  authProvider: openldap\nproviders:\n" + hangFleetAWS + hangFleetTail,
			files: map[string]string{"clusters/qa/qa-aws.yaml": cluster("qa-aws", "aws-eu")},
			want:  "rancher: list clusters: no answer within 300ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hang := netfault.HangingPeer(t)
			sub := func(s string) string { return strings.ReplaceAll(s, "%HANG%", hang) }
			t.Setenv("AWS_ENDPOINT_URL_EC2", ec2.URL)
			if c.ec2 != "" {
				t.Setenv("AWS_ENDPOINT_URL_EC2", sub(c.ec2))
			}
			fleetDir := filepath.Join(t.TempDir(), "fleet")
			files := map[string]string{"fleet.yaml": sub(c.fleet)}
			for p, d := range c.files {
				files[p] = d
			}
			for p, d := range files {
				writeFile(t, filepath.Join(fleetDir, p), d)
			}
			gitRepo(t, fleetDir)
			repo := fleetDir
			if c.repo != "" {
				repo = sub(c.repo)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stderr := &logbuf.Buffer{}
			code := make(chan int, 1)
			go func() {
				code <- Run(ctx, []string{"run", "--repo", repo, "--work-dir", filepath.Join(t.TempDir(), "work"),
					"--listen", "127.0.0.1:0", "--sync-timeout", "20s", "--git-timeout", "300ms", "--call-timeout", "300ms"},
					io.Discard, stderr)
			}()
			want := sub(c.want)
			var ended []map[string]any
			deadline := time.Now().Add(60 * time.Second)
			for len(ended) < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("fewer than two syncs ended; log:\n%s", stderr.String())
				}
				select {
				case n := <-code:
					t.Fatalf("fleetd run exited %d; log:\n%s", n, stderr.String())
				case <-time.After(50 * time.Millisecond):
				}
				ended = syncsEnded(stderr.String())
			}
			for i, e := range ended[:2] {
				msg, _ := e["error"].(string)
				if e["result"] != "retry" || !strings.Contains(msg, want) {
					t.Errorf("sync %d ended %v with %q; want a retry naming %q", i+1, e["result"], msg, want)
				}
			}
			for _, secret := range []string{"s3cret-token", "not-a-real-password", "not-a-real-secret"} {
				if strings.Contains(stderr.String(), secret) {
					t.Errorf("the log holds the secret %q", secret)
				}
			}
			cancel()
			select {
			case n := <-code:
				if n != 0 {
					t.Errorf("fleetd run exited %d after the stop; log:\n%s", n, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("fleetd run did not stop")
			}
		})
	}
}

// syncsEnded returns the "Sync ended" log records of a JSON log.
func syncsEnded(log string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if m, _ := rec["msg"].(string); strings.HasPrefix(m, "Sync ended") {
			out = append(out, rec)
		}
	}
	return out
}
