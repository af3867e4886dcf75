package fleetsync_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/fleetd/fleetd/internal/fleetsync"
	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

const benchFleet = `apiVersion: fleetd.io/v1alpha1
kind: Fleet
name: bench
providers:
  - name: aws-eu
    type: aws
    aws: {region: eu-west-1, subnets: [subnet-0a1b2c3d4e5f60001, subnet-0a1b2c3d4e5f60002], image: ami-0abcdef1234567890}
teams:
%s
sizes:
  medium: {aws: {instanceType: m6i.xlarge}}
classes:
  std:
    kubernetesVersion: v1.31.4+rke2r1
    pools:
      - {name: control, roles: [etcd, controlplane], replicas: 3, size: medium}
      - {name: workers, roles: [worker], replicas: 3, size: medium}
pricing:
  aws-eu: {instanceHourly: {m6i.xlarge: 0.214}}
policy: {maxMachineChangesPerSync: 100000}
`

// benchWorld is a converged fleet of n clusters (6.6 machines each on
// average, as the 10,000 clusters and 66,000 machines) in a git
// repository, with its machines running in the EC2 protocol server.
func benchWorld(b *testing.B, n int) (*fleetsync.Loop, reconcile.Provider) {
	b.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		b.Skip("git binary not installed")
	}
	dir := b.TempDir()
	var teams strings.Builder
	for t := range 10 {
		fmt.Fprintf(&teams, "  - name: team-%d\n", t)
	}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte(fmt.Sprintf(benchFleet, teams.String())), 0o644))
	for i := range n {
		team := fmt.Sprintf("team-%d", i%10)
		p := filepath.Join(dir, "clusters", team, fmt.Sprintf("c%05d.yaml", i))
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		body := fmt.Sprintf("apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: c%05d\nteam: %s\nprovider: aws-eu\nclass: std\n", i, team)
		if i%5 < 3 {
			body += "pools:\n  - name: workers\n    replicas: 4\n"
		}
		must(os.WriteFile(p, []byte(body), 0o644))
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "fleet"}} {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=B", "-c", "user.email=b@example.com"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	fleet, diags := schema.Load(os.DirFS(dir))
	if fleet == nil || diags.HasErrors() {
		b.Fatalf("bench fleet: %s", diags.Error())
	}
	ec2 := ec2test.New()
	b.Cleanup(ec2.Close)
	ec2.AddImage("ami-0abcdef1234567890", "/dev/sda1")
	ec2.AddSubnet("subnet-0a1b2c3d4e5f60001", "eu-west-1a")
	ec2.AddSubnet("subnet-0a1b2c3d4e5f60002", "eu-west-1b")
	for _, c := range fleet.Clusters {
		for k := range c.Effective.Pools {
			pool := &c.Effective.Pools[k]
			t := reconcile.NewTemplate(&c.Effective, pool)
			for m := range pool.Replicas {
				ec2.Launch(ec2test.LaunchSpec{ImageID: "ami-0abcdef1234567890", InstanceType: "m6i.xlarge", SubnetID: "subnet-0a1b2c3d4e5f60001",
					Tags: map[string]string{aws.TagFleet: "bench", aws.TagProvider: "aws-eu", aws.TagCluster: c.Effective.Name,
						aws.TagTeam: c.Effective.Team, aws.TagPool: pool.Name, aws.TagTemplateHash: t.Hash,
						aws.TagName: reconcile.MachineName(c.Effective.Name, pool.Name, t.Hash, m)}})
			}
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newProvider := func(ctx context.Context) (reconcile.Provider, error) {
		return aws.New(ctx, aws.Config{Fleet: "bench", Name: "aws-eu", Spec: *fleet.Spec.Providers[0].AWS, Endpoint: ec2.URL,
			Credentials: credentials.NewStaticCredentialsProvider(ec2test.AccessKeyID, ec2test.SecretAccessKey, ""), Logger: quiet})
	}
	src := &fleetsync.RepoSource{Options: fgit.Options{URL: dir, Branch: "main", Dir: b.TempDir(), Logger: quiet}}
	b.Cleanup(func() { _ = src.Close() })
	loop := &fleetsync.Loop{Source: src, Logger: quiet,
		World: func(ctx context.Context, _ *schema.Fleet, _ *slog.Logger) (reconcile.World, func(context.Context), error) {
			p, err := newProvider(ctx)
			return reconcile.World{Providers: map[string]reconcile.Provider{"aws-eu": p}}, func(context.Context) {}, err
		}}
	for i := range 2 {
		res := loop.Sync(context.Background())
		if res.Err != nil || res.Plan.HasChanges() {
			b.Fatalf("sync %d of the converged fleet: %v, changes %v", i, res.Err, res.Plan.HasChanges())
		}
	}
	floor, err := newProvider(context.Background())
	must(err)
	return loop, floor
}

// BenchmarkNoOpSync times a sync that finds nothing to do against a raw
// floor timed in the same run: the provider's list calls alone, which no
// sync can avoid. It reports the ratio (target ≤ 1.2) and the heap the
// loop keeps between syncs.
func BenchmarkNoOpSync(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			if testing.Short() && n > 1000 {
				b.Skip("short")
			}
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			loop, floor := benchWorld(b, n)
			ctx := context.Background()
			var syncT, floorT time.Duration
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := floor.List(ctx); err != nil {
					b.Fatal(err)
				}
				floorT += time.Since(start)
				start = time.Now()
				res := loop.Sync(ctx)
				syncT += time.Since(start)
				if res.Err != nil || res.StatusCommit != "" {
					b.Fatalf("no-op sync: %v, committed %q", res.Err, res.StatusCommit)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(syncT.Milliseconds())/float64(b.N), "sync-ms/op")
			b.ReportMetric(float64(floorT.Milliseconds())/float64(b.N), "floor-ms/op")
			b.ReportMetric(float64(syncT)/float64(floorT), "sync/floor")
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-inuse-MiB")
			runtime.KeepAlive(loop)
		})
	}
}
