package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/benchfleet"
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
