package main

import (
	"context"
	"io"
	"testing"

	"github.com/fleetd/fleetd/internal/benchfleet"
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
