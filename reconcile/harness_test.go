package reconcile_test

import (
	"bytes"
	"context"
	"errors"
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
	// concurrency is Apply's and Observe's (0: their default).
	concurrency int
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

// desired is the fleet with the facts a history would give: every cluster
// of the world that the fleet no longer declares was removed (by
// removedBy's commit, protected when desiredProtected says so), except the
// unproven ones, which no history declared.
func (h *harness) desired() reconcile.Desired {
	declared := map[string]bool{}
	for _, c := range h.fleet.F.Clusters {
		declared[c.Spec.Name] = true
		if _, ok := h.created[c.Spec.Name]; !ok {
			h.created[c.Spec.Name] = h.w.Now()
		}
	}
	removed := reconcile.Removals{}
	for _, name := range h.w.ClusterNames() {
		if declared[name] || h.unproven[name] != "" {
			continue
		}
		removed[name] = reconcile.Removal{Path: "clusters/" + name + ".yaml", By: h.removedBy[name], Protected: slices.Contains(h.protected, name)}
	}
	return reconcile.Desired{Fleet: h.fleet.F, Revision: h.rev, CreatedAt: h.created, Held: h.held,
		ChangedBy: h.changedBy, Removed: removed, FactsError: h.facts}
}

// syncResult is what the steps of one sync returned.
type syncResult struct {
	Observed, After reconcile.Observed
	Plan            reconcile.Plan
	Applied         *reconcile.ApplyResult
	Status          map[string][]byte
	ObserveErr      error
}

// Err joins the sync's failures: observation and per-cluster apply errors.
func (r *syncResult) Err() error {
	if r.Applied == nil {
		return r.ObserveErr
	}
	return errors.Join(r.ObserveErr, r.Applied.Err())
}

// run drives the steps of one sync of d in the order internal/fleetsync's
// Loop runs them (observe, Compute with its gate, Apply unless a dry run,
// Fold, RenderStatus), so that this package's tests exercise the steps
// against the fake world. The loop itself, with git and the real peers, is
// tested in internal/fleetsync, internal/kube and cmd/fleetd.
func (h *harness) run(d reconcile.Desired, prev *reconcile.StatusSet, now time.Time) syncResult {
	h.t.Helper()
	ctx := reconcile.WithLogger(context.Background(), slog.New(slog.NewTextHandler(h.logs, nil)))
	var res syncResult
	res.Observed, res.ObserveErr = reconcile.Observe(ctx, d.Fleet, h.world, reconcile.ObserveOptions{Concurrency: h.concurrency})
	res.Observed = res.Observed.WithTemplates(prev)
	var limits schema.Limits
	if d.Fleet != nil {
		limits = d.Fleet.Spec.Policy.Limits()
	}
	res.Plan = reconcile.Compute(d, res.Observed, limits, now)
	if !h.dryRun {
		a := reconcile.Apply(ctx, res.Plan, h.world, reconcile.ApplyOptions{Concurrency: h.concurrency})
		res.Applied = &a
	}
	res.After = reconcile.Fold(res.Observed, res.Applied)
	res.Status = reconcile.RenderStatus(reconcile.StatusInput{Desired: d, Observed: res.After, Plan: res.Plan, Apply: res.Applied, Previous: prev, Now: now})
	return res
}

// sync runs one sync, records its status as the next previous one, and lets
// the world settle.
func (h *harness) sync() syncResult {
	h.t.Helper()
	res := h.run(h.desired(), h.prev, h.w.Now())
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
