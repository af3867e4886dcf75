package vsphere

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/reconcile"
)

// cloneDelayMS is the simulated time vCenter takes for one clone: large
// against the simulator's own work, so the benchmark measures how well the
// provider keeps 16 clones in flight.
const cloneDelayMS = 500

// BenchmarkCreate500 creates 500 machines (100 clusters × 5) with 16 clones
// in flight and reports the wall time against the ideal: the sum of
// single-clone latencies divided by 16.
func BenchmarkCreate500(b *testing.B) {
	s := newSim(b, vcsimserver.Options{MethodDelay: map[string]int{"CloneVM_Task": cloneDelayMS}})
	cfg := s.config("bench")
	cfg.MaxInFlight = 16
	p := s.provider(b, cfg)
	ctx := context.Background()

	// The latency of one clone alone, averaged.
	const probes = 3
	var single time.Duration
	for i := range probes {
		t0 := time.Now()
		if _, err := p.Create(ctx, []reconcile.MachineSpec{benchSpec("probe", i, 0)}); err != nil {
			b.Fatal(err)
		}
		single += time.Since(t0)
	}
	single /= probes

	const clusters, perCluster, inFlight = 100, 5, 16
	ideal := time.Duration(clusters * perCluster * int64(single) / inFlight)
	var wall time.Duration
	b.ResetTimer()
	for n := range b.N {
		specs := make([]reconcile.MachineSpec, 0, clusters*perCluster)
		for c := range clusters {
			for i := range perCluster {
				specs = append(specs, benchSpec(fmt.Sprintf("b%d-c%d", n, c), i, c))
			}
		}
		t0 := time.Now()
		ms, err := p.Create(ctx, specs)
		wall += time.Since(t0)
		if err != nil || len(ms) != len(specs) {
			b.Fatalf("Create: %d of %d, %v", len(ms), len(specs), err)
		}
	}
	wall /= time.Duration(b.N)
	b.ReportMetric(float64(single.Milliseconds()), "single-clone-ms")
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(ideal.Seconds(), "ideal-s")
	b.ReportMetric(wall.Seconds()/ideal.Seconds(), "ratio")
	b.ReportMetric(float64(s.srv.PeakInFlight("CloneVM_Task")), "peak-in-flight")
}

func benchSpec(cluster string, i, team int) reconcile.MachineSpec {
	return reconcile.MachineSpec{
		Name:         fmt.Sprintf("%s-workers-0a0a0-%d", cluster, i),
		Cluster:      cluster,
		Team:         fmt.Sprintf("team%d", team%10),
		Pool:         "workers",
		TemplateHash: "0a0a0",
		Size:         testSize,
		UserData:     []byte("#cloud-config\n"),
	}
}

// BenchmarkList5000 lists a fleet of 5,000 VMs and reports the time and the
// SOAP round trips of one List.
func BenchmarkList5000(b *testing.B) {
	s := newSim(b, vcsimserver.Options{})
	const n = 5000
	vms := make([]vcsimserver.SeedVM, n)
	for i := range vms {
		cluster := fmt.Sprintf("c%03d", i/50)
		vms[i] = vcsimserver.SeedVM{
			Folder: fmt.Sprintf("%s/team%d/%s", baseFolder, i/500, cluster),
			Name:   fmt.Sprintf("%s-workers-0a0a0-%d", cluster, i%50),
			ExtraConfig: map[string]string{
				KeyFleet: "bench", KeyCluster: cluster, KeyTeam: fmt.Sprintf("team%d", i/500),
				KeyPool: "workers", KeyTemplateHash: "0a0a0",
			},
		}
	}
	if _, err := s.srv.Seed(context.Background(), vms); err != nil {
		b.Fatal(err)
	}
	p := s.provider(b, s.config("bench"))
	ctx := context.Background()
	if _, err := p.List(ctx); err != nil { // resolve the inventory once
		b.Fatal(err)
	}

	var trips int64
	b.ResetTimer()
	for range b.N {
		r0 := s.srv.Requests()
		ms, err := p.List(ctx)
		trips += s.srv.Requests() - r0
		if err != nil || len(ms) != n {
			b.Fatalf("List: %d machines, %v", len(ms), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/list")
	b.ReportMetric(float64(trips)/float64(b.N), "round-trips/list")
}
