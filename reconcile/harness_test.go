package reconcile_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// harness runs syncs of a test fleet against a fake world.
type harness struct {
	t       testing.TB
	w       *reconciletest.World
	fleet   *reconciletest.Fleet
	world   reconcile.World
	rev     string
	created map[string]time.Time
	prev    *reconcile.StatusSet
	logs    *bytes.Buffer
	// status is the last status rendered.
	status map[string][]byte
	// roundTrip parses every status back (slower; on by default).
	roundTrip bool
	dryRun    bool
	held      []reconcile.Held
	removedBy map[string]string
	changedBy map[string]string
	protected []string
	facts     string
	unproven  map[string]string
}

func (h *harness) desiredProtected(names ...string) { h.protected = append(h.protected, names...) }

func newHarness(t testing.TB, rancher bool) *harness {
	w := reconciletest.NewWorld(t0)
	return &harness{
		t: t, w: w, fleet: reconciletest.NewFleet(rancher), world: w.World(rancher, "aws-eu", "dc1"),
		rev: "0123456789abcdef0123456789abcdef01234567", created: map[string]time.Time{}, logs: &bytes.Buffer{},
		roundTrip: true,
	}
}

func (h *harness) desired() reconcile.Desired {
	for _, c := range h.fleet.F.Clusters {
		if _, ok := h.created[c.Spec.Name]; !ok {
			h.created[c.Spec.Name] = h.w.Now()
		}
	}
	return reconcile.Desired{Fleet: h.fleet.F, Revision: h.rev, CreatedAt: h.created, Held: h.held,
		RemovedBy: h.removedBy, ChangedBy: h.changedBy, Protected: h.protected, FactsError: h.facts, Unproven: h.unproven}
}

func (h *harness) reconciler() *reconcile.Reconciler {
	return &reconcile.Reconciler{
		World:  h.world,
		Logger: slog.New(slog.NewTextHandler(h.logs, nil)),
		DryRun: h.dryRun,
		Apply:  reconcile.ApplyOptions{},
	}
}

// sync runs one sync, records its status as the next previous one, and lets
// the world settle.
func (h *harness) sync() reconcile.SyncResult {
	h.t.Helper()
	res := h.reconciler().Sync(context.Background(), h.desired(), h.prev, h.w.Now())
	h.status = res.Status
	if h.roundTrip {
		fsys := fstest.MapFS{}
		for p, b := range res.Status {
			fsys[p] = &fstest.MapFile{Data: b}
		}
		set, err := reconcile.ReadStatus(fsys)
		if err != nil {
			h.t.Fatalf("status does not read back: %v", err)
		}
		h.prev = set
	}
	h.w.Settle()
	h.w.Advance(time.Minute)
	return res
}

// converge syncs until the plan is converged and returns the number of syncs.
func (h *harness) converge(max int) int {
	h.t.Helper()
	for i := 1; i <= max; i++ {
		res := h.sync()
		if res.Plan.Converged() && res.Applied.Err() == nil {
			return i
		}
		if i == max {
			var b strings.Builder
			_ = res.Plan.WriteText(&b)
			h.t.Fatalf("not converged after %d syncs; last plan:\n%s\nerr: %v", max, b.String(), res.Err())
		}
	}
	return max
}

// checkWorld asserts the world matches the fleet exactly: every desired pool
// has its replicas with the current template, running and ready, nothing
// else exists, and access matches.
func (h *harness) checkWorld() {
	h.t.Helper()
	f := h.fleet.F
	want := map[string]bool{}
	for _, c := range f.Clusters {
		for _, m := range reconciletest.Machines(c, time.Time{}) {
			if !c.Effective.Paused {
				want[m.Cluster+"/"+m.Pool+"/"+m.TemplateHash] = true
			}
		}
	}
	if d := h.w.Duplicates(); len(d) > 0 {
		h.t.Errorf("duplicate machines: %v", d)
	}
	counts := map[string]int{}
	for _, m := range h.w.Machines() {
		k := m.Cluster + "/" + m.Pool + "/" + m.TemplateHash
		if !want[k] {
			h.t.Errorf("orphaned machine %s (%s) in %s", m.Name, m.State, k)
			continue
		}
		counts[k]++
	}
	rcs := map[string]reconcile.RancherCluster{}
	for _, rc := range h.w.RancherClusters() {
		rcs[rc.Name] = rc
	}
	for _, c := range f.Clusters {
		e := &c.Effective
		if e.Paused {
			continue
		}
		for i := range e.Pools {
			p := &e.Pools[i]
			t := reconcile.NewTemplate(e, p)
			if got := counts[e.Name+"/"+p.Name+"/"+t.Hash]; got != p.Replicas {
				h.t.Errorf("%s/%s: %d machines, want %d", e.Name, p.Name, got, p.Replicas)
			}
		}
		if f.Spec.Rancher == nil {
			continue
		}
		rc, ok := rcs[e.Name]
		if !ok {
			h.t.Errorf("%s: not registered", e.Name)
			continue
		}
		var wantB []reconcile.Binding
		for _, a := range e.Access {
			wantB = append(wantB, reconcile.Binding{PrincipalID: "openldap_group://" + a.Group, Role: a.Role})
		}
		slices.SortFunc(wantB, func(a, b reconcile.Binding) int { return strings.Compare(a.PrincipalID+a.Role, b.PrincipalID+b.Role) })
		if !slices.Equal(rc.Bindings, wantB) {
			h.t.Errorf("%s: bindings %v, want %v", e.Name, rc.Bindings, wantB)
		}
		delete(rcs, e.Name)
	}
	for name := range rcs {
		if f.Spec.Rancher != nil && h.fleet.F != nil && !slices.ContainsFunc(f.Clusters, func(c *schema.Cluster) bool { return c.Spec.Name == name }) {
			h.t.Errorf("orphaned Rancher cluster %s", name)
		}
	}
}

func TestSmokeCreateAndConverge(t *testing.T) {
	for _, rancher := range []bool{false, true} {
		h := newHarness(t, rancher)
		h.fleet.Add(reconciletest.Cluster{Name: "pay", Team: "payments", Pools: reconciletest.Standard(3, 2)})
		h.fleet.Add(reconciletest.Cluster{Name: "trade", Team: "trading", Provider: "dc1"})
		n := h.converge(20)
		h.checkWorld()
		t.Logf("rancher=%t converged in %d syncs", rancher, n)
		_ = io.Discard
	}
}
