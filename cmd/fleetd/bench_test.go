package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/benchfleet"
	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// BenchmarkValidate runs `fleetd validate` on a generated fleet of 10,000
// clusters on disk. `make bench` also times the binary against Ajv.
func BenchmarkValidate(b *testing.B) {
	dir := b.TempDir()
	if err := benchfleet.Write(dir, 10000); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if code := Run(context.Background(), []string{"validate", dir}, io.Discard, io.Discard); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}

// BenchmarkPlanObservedStatus runs `fleetd plan --observed=status` on a
// generated fleet of 10,000 clusters whose status/ records a converged
// world: the merge-request pipeline's plan at that size.
//
// FLEETD_BENCH_DIR keeps the generated fleet there, to time the binary on it.
func BenchmarkPlanObservedStatus(b *testing.B) {
	dir := os.Getenv("FLEETD_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	if err := benchfleet.Write(dir, 10000); err != nil {
		b.Fatal(err)
	}
	fleet, diags := schema.Load(os.DirFS(dir))
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var o reconcile.Observed
	for _, c := range fleet.Clusters {
		for i, m := range reconciletest.Machines(c, created) {
			m.ID = fmt.Sprintf("i-%s-%d", c.Spec.Name, i)
			o.Machines = append(o.Machines, m)
		}
	}
	now := created.Add(time.Hour)
	d := reconcile.Desired{Fleet: fleet, Revision: "0123456789abcdef0123456789abcdef01234567"}
	p := reconcile.Compute(d, o, fleet.Spec.Policy.Limits(), now)
	for path, data := range reconcile.RenderStatus(reconcile.StatusInput{Desired: d, Observed: o, Plan: p, Now: now}) {
		full := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var out bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out.Reset()
		if code := Run(context.Background(), []string{"plan", "--observed=status", "--now", now.Format(time.RFC3339), dir}, &out, io.Discard); code != 0 {
			b.Fatalf("exit %d: %s", code, out.String())
		}
	}
	b.StopTimer()
	if !strings.Contains(out.String(), "10000 unchanged") {
		b.Fatalf("not converged:\n%.2000s", out.String())
	}
}

// BenchmarkNoOpApply times one-shot `fleetd apply` (the binary, a process
// of its own each time) of a converged fleet of 1,000 clusters and 6,600
// machines at the EC2 protocol server, against the floor timed in the same
// run: a bare program (internal/testenv/benchfleet/barelist) that makes only the
// same DescribeInstances calls. It reports both and their ratio (target
// ≤ 1.2). FLEETD_BENCH_APPLY_ROUNDS sets the rounds (default 7); the
// ratio is the median of the rounds' ratios.
func BenchmarkNoOpApply(b *testing.B) {
	const n = 1000
	dir := b.TempDir()
	fleet, err := benchfleet.WriteConverged(dir, n)
	if err != nil {
		b.Fatal(err)
	}
	gitRepo(b, dir)
	ec2 := ec2test.New()
	defer ec2.Close()
	machines := benchfleet.SeedEC2(ec2, fleet)
	bins := b.TempDir()
	for _, pkg := range []string{"./cmd/fleetd", "./internal/testenv/benchfleet/barelist"} {
		cmd := exec.Command("go", "build", "-o", bins, pkg)
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	env := append(os.Environ(), benchfleet.EC2Env(ec2)...)
	work := b.TempDir()
	run := func(name string, args ...string) (time.Duration, string) {
		cmd := exec.Command(filepath.Join(bins, name), args...)
		cmd.Env = env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, tail(string(out), 20))
		}
		return d, string(out)
	}
	apply := func() (time.Duration, string) { return run("fleetd", "apply", "--work-dir", work, dir) }
	floorArgs := []string{"-filter", "tag:" + aws.TagFleet + "=" + benchfleet.AWSFleet, "-filter", "tag:" + aws.TagProvider + "=" + benchfleet.AWSProvider,
		"-filter", "instance-state-name=pending,running,stopping,stopped,shutting-down"}
	floor := func() time.Duration {
		d, out := run("barelist", floorArgs...)
		if strings.TrimSpace(out) != strconv.Itoa(machines) {
			b.Fatalf("barelist saw %s instances, want %d", strings.TrimSpace(out), machines)
		}
		return d
	}
	// The first apply records the status of the converged fleet; from the
	// second on, there is nothing to do.
	for range 2 {
		apply()
	}
	if c := ec2.Calls("RunInstances") + ec2.Calls("TerminateInstances"); c != 0 {
		b.Fatalf("the fleet is not converged: %d RunInstances/TerminateInstances calls", c)
	}
	rounds := 7
	if s := os.Getenv("FLEETD_BENCH_APPLY_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	var applyT, floorT []time.Duration
	b.ResetTimer()
	for range b.N {
		for range rounds {
			floorT = append(floorT, floor())
			d, out := apply()
			applyT = append(applyT, d)
			if strings.Contains(out, "Status recorded") {
				b.Fatalf("a no-op apply recorded status:\n%s", tail(out, 20))
			}
		}
	}
	b.StopTimer()
	if c := ec2.Calls("RunInstances") + ec2.Calls("TerminateInstances"); c != 0 {
		b.Fatalf("a no-op apply changed machines: %d RunInstances/TerminateInstances calls", c)
	}
	// Each apply is compared with the floor timed just before it, so a
	// neighbour's load that comes and goes counts in both; the ratio is the
	// median of the rounds'.
	ratios := make([]float64, len(applyT))
	for i := range applyT {
		ratios[i] = float64(applyT[i]) / float64(floorT[i])
	}
	slices.Sort(ratios)
	ratio := ratios[len(ratios)/2]
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	a, f := median(applyT), median(floorT)
	b.Logf("%d clusters, %d machines: no-op fleetd apply %v, bare list calls %v (medians of %d rounds); apply/floor %.2f× (median of the rounds' ratios, %.2f× to %.2f×)",
		n, machines, a.Round(time.Millisecond), f.Round(time.Millisecond), len(applyT), ratio, ratios[0], ratios[len(ratios)-1])
	b.ReportMetric(float64(a.Milliseconds()), "apply-ms")
	b.ReportMetric(float64(f.Milliseconds()), "floor-ms")
	b.ReportMetric(ratio, "apply/floor")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
