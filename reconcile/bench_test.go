package reconcile_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// bigFleet is a fleet of n clusters with three pools each (3 control, 2
// workers, 1 extra), with Rancher, and a world where every cluster has its
// control and worker machines (5 per cluster) joined and ready: the extra
// pool is to be created everywhere, and every tenth cluster is on a new
// Kubernetes version.
func bigFleet(n int) (reconcile.Desired, reconcile.Observed, schema.Limits) {
	b := reconciletest.NewFleet(true)
	teams := make([]schema.Team, 20)
	for i := range teams {
		teams[i] = schema.Team{Name: fmt.Sprintf("team%02d", i), Groups: []string{fmt.Sprintf("cn=team%02d,dc=acme", i)}}
	}
	b.F.Spec.Teams = teams
	var o reconcile.Observed
	created := map[string]time.Time{}
	for i := range n {
		pools := append(reconciletest.Standard(3, 2), reconciletest.Pool{Name: "extra", Roles: []string{"worker"}, Replicas: 1, Size: "small"})
		c := reconciletest.Cluster{Name: fmt.Sprintf("cluster-%05d", i), Team: teams[i%len(teams)].Name, Provider: []string{"aws-eu", "dc1"}[i%2], Pools: pools}
		sc := b.Build(c)
		b.F.Clusters = append(b.F.Clusters, sc)
		created[c.Name] = t0
		world := sc
		if i%10 == 0 {
			c.KubernetesVersion = "v1.30.1+rke2r1"
			world = b.Build(c)
		}
		rc := reconcile.RancherCluster{Name: c.Name, Team: c.Team, ID: fmt.Sprintf("c-m-%05d", i), Ready: true,
			KubernetesVersion: world.Effective.KubernetesVersion, Nodes: map[string]bool{}}
		for _, a := range sc.Effective.Access {
			rc.Bindings = append(rc.Bindings, reconcile.Binding{PrincipalID: "openldap_group://" + a.Group, Role: a.Role})
		}
		for j, m := range reconciletest.Machines(world, t0) {
			if m.Pool == "extra" {
				continue
			}
			m.ID = fmt.Sprintf("i-%08d-%d", i, j)
			o.Machines = append(o.Machines, m)
			rc.Machines = append(rc.Machines, reconcile.RancherMachine{Name: reconcile.RancherMachineName(m.Name), Node: m.Name, Phase: reconcile.RancherMachineRunning})
			rc.Nodes[m.Name] = true
		}
		o.Rancher = append(o.Rancher, rc)
	}
	slices.SortFunc(b.F.Clusters, func(x, y *schema.Cluster) int { return strings.Compare(x.Spec.Name, y.Spec.Name) })
	b.F.Spec.Policy.MaxMachineChangesPerSync = intp(1000)
	d := reconcile.Desired{Fleet: b.F, Revision: "0123456789abcdef0123456789abcdef01234567", CreatedAt: created}
	return d, o, b.F.Spec.Policy.Limits()
}

// BenchmarkPlan plans and gates 10,000 clusters with 3 pools each against
// 50,000 observed machines.
func BenchmarkPlan(b *testing.B) {
	d, o, lim := bigFleet(10_000)
	if len(o.Machines) != 50_000 {
		b.Fatalf("%d machines", len(o.Machines))
	}
	now := t0.Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		p := reconcile.Compute(d, o, lim, now)
		if len(p.Clusters) != 10_000 {
			b.Fatal(len(p.Clusters))
		}
	}
	reportCPU(b, cpu)
}

// reportCPU reports the CPU time per operation (all threads, GC included):
// unlike ns/op it does not grow when other processes load the machine.
func reportCPU(b *testing.B, start time.Duration) {
	if start > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
	}
}

// BenchmarkRenderStatus renders the status files of 10,000 clusters.
func BenchmarkRenderStatus(b *testing.B) {
	d, o, lim := bigFleet(10_000)
	now := t0.Add(time.Hour)
	p := reconcile.Compute(d, o, lim, now)
	in := reconcile.StatusInput{Desired: d, Observed: o, Plan: p, Now: now}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		files := reconcile.RenderStatus(in)
		if len(files) != 10_001 {
			b.Fatal(len(files))
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkReadStatus reads back the status files of a converged fleet of
// 10,000 clusters (as `fleetd plan --observed=status` does) and turns them
// into the observed world.
func BenchmarkReadStatus(b *testing.B) {
	d, o, lim := bigFleet(10_000)
	now := t0.Add(time.Hour)
	p := reconcile.Compute(d, o, lim, now)
	files := reconcile.RenderStatus(reconcile.StatusInput{Desired: d, Observed: o, Plan: p, Now: now})
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		set, err := reconcile.ReadStatusFiles(files)
		if err != nil {
			b.Fatal(err)
		}
		if obs := set.Observed(); len(obs.Machines) != 50_000 {
			b.Fatal(len(obs.Machines))
		}
	}
	reportCPU(b, cpu)
}
