package reconcile_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// maxSyncs bounds how many syncs a random fleet may take to converge.
const maxSyncs = 80

// randomScenario builds a random fleet and a random world around it: clusters
// missing, converged, converged to an older template, partly built, with
// machines that vanished or whose nodes are not ready, and clusters that are
// no longer in the repo.
func randomScenario(t testing.TB, seed uint64) *harness {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	h := newHarness(t, r.IntN(2) == 0)
	h.roundTrip = seed%10 == 0
	pol := &h.fleet.F.Spec.Policy
	pol.MaxDecommissionsPerSync = intp(1 + r.IntN(3))
	pol.MaxMachineChangesPerSync = intp(3 + r.IntN(30))
	pol.ConfirmPrune = h.rev
	teams := []string{"payments", "trading", "qa"}
	provs := []string{"aws-eu", "dc1"}
	sizes := []string{"small", "medium", "large"}
	versions := []string{"v1.31.4+rke2r1", "v1.32.1+rke2r1"}
	randCluster := func(name string) reconciletest.Cluster {
		control := []int{1, 3}[r.IntN(2)]
		pools := []reconciletest.Pool{
			{Name: "control", Roles: []string{schema.RoleEtcd, schema.RoleControlPlane}, Replicas: control, Size: sizes[r.IntN(3)]},
			{Name: "workers", Roles: []string{schema.RoleWorker}, Replicas: r.IntN(4), Size: sizes[r.IntN(3)]},
		}
		if r.IntN(4) == 0 {
			pools = append(pools, reconciletest.Pool{Name: "extra", Roles: []string{schema.RoleWorker}, Replicas: r.IntN(3), Size: sizes[r.IntN(3)]})
		}
		c := reconciletest.Cluster{Name: name, Team: teams[r.IntN(3)], Provider: provs[r.IntN(2)], Pools: pools,
			KubernetesVersion: versions[r.IntN(2)]}
		if r.IntN(10) == 0 {
			c.TTL = time.Duration(1+r.IntN(3)) * time.Hour
		}
		return c
	}
	// materialize puts a cluster's machines into the world in a random state.
	materialize := func(c *schema.Cluster) {
		ms := reconciletest.Machines(c, h.w.Now().Add(-time.Duration(r.IntN(100))*time.Hour))
		state := r.IntN(6)
		if state == 0 {
			return // nothing built yet
		}
		rancher := h.fleet.F.Spec.Rancher != nil
		registered := rancher && r.IntN(5) != 0
		if registered {
			var bs []reconcile.Binding
			for _, a := range c.Effective.Access {
				if r.IntN(4) != 0 {
					bs = append(bs, reconcile.Binding{PrincipalID: "openldap_group://" + a.Group, Role: a.Role})
				}
			}
			if r.IntN(5) == 0 {
				bs = append(bs, reconcile.Binding{PrincipalID: "openldap_group://cn=stale", Role: "cluster-owner"})
			}
			h.w.AddCluster(reconcile.RancherCluster{Name: c.Effective.Name, Team: c.Effective.Team, Ready: true,
				KubernetesVersion: c.Effective.KubernetesVersion, Bindings: bs})
		}
		for i, m := range ms {
			switch {
			case state == 2 && i%2 == 1:
				continue // partly built
			case state == 3 && i == 0:
				// vanished out of band, still known to Rancher
				if registered {
					h.w.Join(m.Cluster, m.Name, true)
				}
				continue
			}
			m = h.w.AddMachine(m)
			if registered && r.IntN(8) != 0 {
				h.w.Join(m.Cluster, m.Name, state != 4 || i%2 == 0)
			}
		}
		if state == 5 {
			// One surplus machine.
			extra := ms[len(ms)-1]
			extra.Name = extra.Name[:strings.LastIndexByte(extra.Name, '-')] + "-9"
			h.w.AddMachine(extra)
		}
	}
	n := 1 + r.IntN(4)
	for i := range n {
		name := fmt.Sprintf("k%d", i)
		c := randCluster(name)
		switch r.IntN(4) {
		case 0:
			// The world has an older shape of the cluster.
			materialize(h.fleet.Build(randCluster(name)))
			c.Team = h.fleet.Build(c).Spec.Team
		case 1, 2:
			materialize(h.fleet.Build(c))
		}
		if r.IntN(12) == 0 {
			c.Paused = true
		}
		h.fleet.Add(c)
		if c.TTL > 0 {
			h.created[name] = h.w.Now().Add(-time.Duration(r.IntN(4)) * time.Hour)
		}
	}
	// Clusters that are no longer in the repo.
	for i := range r.IntN(3) {
		c := h.fleet.Build(randCluster(fmt.Sprintf("gone%d", i)))
		materialize(c)
		if r.IntN(6) == 0 {
			h.desiredProtected(c.Spec.Name)
		}
	}
	return h
}

// checkSettled asserts the world equals the fleet: every desired pool has
// exactly its replicas with the current template, running, joined and ready;
// nothing else exists, except for paused clusters and protected removed ones,
// which are left as they were.
func checkSettled(t testing.TB, h *harness, label string) {
	t.Helper()
	f := h.fleet.F
	rancher := f.Spec.Rancher != nil
	leftAlone := map[string]bool{}
	for _, name := range h.protected {
		leftAlone[name] = true
	}
	desired := map[string]*schema.EffectiveCluster{}
	now := h.w.Now()
	for _, c := range f.Clusters {
		e := &c.Effective
		switch {
		case e.Paused:
			leftAlone[e.Name] = true
		case e.TTL > 0 && !h.created[e.Name].Add(e.TTL).After(now.Add(-time.Minute)):
			// Expired by the last sync: must be gone (unless protected).
			if e.Protected {
				leftAlone[e.Name] = true
			}
		default:
			desired[e.Name] = e
		}
	}
	if d := h.w.Duplicates(); len(d) > 0 {
		t.Errorf("%s: duplicate machines %v", label, d)
	}
	counts := map[string]int{}
	for _, m := range h.w.Machines() {
		if leftAlone[m.Cluster] {
			continue
		}
		e := desired[m.Cluster]
		ok := false
		if e != nil {
			for i := range e.Pools {
				p := &e.Pools[i]
				if p.Name == m.Pool && reconcile.NewTemplate(e, p).Hash == m.TemplateHash && p.Replicas > 0 {
					ok = true
				}
			}
		}
		if !ok || m.State != reconcile.MachineRunning {
			t.Errorf("%s: orphaned machine %s (%s, template %s)", label, m.Name, m.State, m.TemplateHash)
			continue
		}
		counts[m.Cluster+"/"+m.Pool]++
	}
	rcs := map[string]reconcile.RancherCluster{}
	for _, rc := range h.w.RancherClusters() {
		rcs[rc.Name] = rc
	}
	for _, name := range sortedNames(desired) {
		e := desired[name]
		for _, p := range e.Pools {
			if got := counts[name+"/"+p.Name]; got != p.Replicas {
				t.Errorf("%s: %s/%s has %d machines, want %d", label, name, p.Name, got, p.Replicas)
			}
		}
		if !rancher {
			continue
		}
		rc, ok := rcs[name]
		if !ok {
			t.Errorf("%s: %s not registered", label, name)
			continue
		}
		var want []reconcile.Binding
		for _, a := range e.Access {
			want = append(want, reconcile.Binding{PrincipalID: "openldap_group://" + a.Group, Role: a.Role})
		}
		slices.SortFunc(want, func(a, b reconcile.Binding) int {
			return strings.Compare(a.PrincipalID+"\x00"+a.Role, b.PrincipalID+"\x00"+b.Role)
		})
		if !slices.Equal(rc.Bindings, want) {
			t.Errorf("%s: %s bindings %v, want %v", label, name, rc.Bindings, want)
		}
		if rc.KubernetesVersion != e.KubernetesVersion {
			t.Errorf("%s: %s Rancher version %s, want %s", label, name, rc.KubernetesVersion, e.KubernetesVersion)
		}
		machines := map[string]bool{}
		for _, m := range h.w.Machines() {
			if m.Cluster == name {
				machines[m.Name] = true
			}
		}
		for _, rm := range rc.Machines {
			if !machines[rm.Node] {
				t.Errorf("%s: %s Rancher machine %s of a machine that is gone (%s)", label, name, rm.Name, rm.Node)
			}
			if !rc.Nodes[rm.Node] {
				t.Errorf("%s: %s node %s not ready", label, name, rm.Node)
			}
		}
		if len(rc.Machines) != len(machines) {
			t.Errorf("%s: %s has %d Rancher machines for %d machines", label, name, len(rc.Machines), len(machines))
		}
	}
	for name := range rcs {
		if desired[name] == nil && !leftAlone[name] {
			t.Errorf("%s: orphaned Rancher cluster %s", label, name)
		}
	}
}

func sortedNames[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestConvergence applies plans to random worlds until the plan is empty:
// every one must converge within maxSyncs to exactly the fleet.
func TestConvergence(t *testing.T) {
	n := 500
	if testing.Short() {
		n = 100
	}
	worst := 0
	for seed := range uint64(n) {
		h := randomScenario(t, seed)
		label := fmt.Sprintf("seed %d", seed)
		converged := false
		for i := 1; i <= maxSyncs; i++ {
			res := h.sync()
			if err := res.Err(); err != nil {
				t.Fatalf("%s: sync %d: %v", label, i, err)
			}
			if res.Plan.Converged() {
				converged = true
				worst = max(worst, i)
				break
			}
			if i == maxSyncs {
				var b strings.Builder
				_ = res.Plan.WriteText(&b)
				t.Fatalf("%s: not converged after %d syncs:\n%s", label, maxSyncs, b.String())
			}
		}
		if converged {
			checkSettled(t, h, label)
		}
		if t.Failed() {
			t.Fatalf("%s failed", label)
		}
	}
	t.Logf("%d random fleets converged, the slowest in %d syncs", n, worst)
}
