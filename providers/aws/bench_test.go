package aws_test

import (
	"testing"
)

// BenchmarkList5000 lists a fleet of 5,000 instances through the real SDK
// against the protocol server and reports the API calls per List (target:
// at most 5, DescribeInstances pages of 1,000).
func BenchmarkList5000(b *testing.B) {
	srv := newServer(b)
	seed(srv, "acme", "big", 5000)
	seed(srv, "other", "big", 200) // another fleet, filtered out by EC2
	p := newProvider(b, srv, "acme")
	ctx := ctxT(b)
	srv.ResetCalls()
	n := 0
	for b.Loop() {
		ms, err := p.List(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(ms) != 5000 {
			b.Fatalf("listed %d machines, want 5000", len(ms))
		}
		n++
	}
	b.ReportMetric(float64(srv.TotalCalls())/float64(n), "calls/op")
	b.ReportMetric(5000, "machines/op")
}
