package reconcile_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// crashScenario is a fleet with Rancher where one sync does a bit of
// everything: create and register a cluster, scale one down, roll another to
// a new template, replace a vanished machine, change access and decommission
// a removed cluster.
func crashScenario(t testing.TB) *harness {
	h := newHarness(t, true)
	h.roundTrip = false
	h.fleet.F.Spec.Policy.ConfirmPrune = h.rev
	h.add(reconciletest.Cluster{Name: "new", Team: "trading", Pools: reconciletest.Standard(1, 2)})
	down := h.add(reconciletest.Cluster{Name: "down", Pools: reconciletest.Standard(1, 3)})
	h.existing(down)
	h.fleet.Add(reconciletest.Cluster{Name: "down", Pools: reconciletest.Standard(1, 1),
		Access: []schema.EffectiveAccess{{Group: "cn=ops,dc=acme", Role: "cluster-owner"}}})
	roll := h.add(reconciletest.Cluster{Name: "roll", Provider: "dc1", Pools: reconciletest.Standard(3, 1)})
	h.existing(roll)
	h.fleet.Add(reconciletest.Cluster{Name: "roll", Provider: "dc1", Pools: reconciletest.Standard(3, 1), KubernetesVersion: "v1.32.1+rke2r1"})
	lost := h.add(reconciletest.Cluster{Name: "lost", Team: "qa", Pools: reconciletest.Standard(1, 2)})
	h.existing(lost)
	h.w.RemoveMachine(name(lost, "workers", 1))
	gone := h.add(reconciletest.Cluster{Name: "gone", Team: "qa"})
	h.existing(gone)
	h.fleet.Remove("gone")
	h.w.Advance(time.Hour)
	return h
}

// crashSync runs one sync whose apply crashes after k calls (k < 0: no
// crash) and returns how many calls the apply made.
func crashSync(h *harness, k int, lostReply bool) int {
	h.t.Helper()
	o := h.observe()
	p := reconcile.Compute(h.desired(), o, h.fleet.F.Spec.Policy.Limits(), h.w.Now())
	before := len(h.w.Calls())
	if k >= 0 {
		h.w.Inject(reconciletest.CrashAfter(k, lostReply))
	}
	reconcile.Apply(reconcile.WithLogger(context.Background(), slog.New(slog.NewTextHandler(h.logs, nil))), p, h.world, reconcile.ApplyOptions{Concurrency: 1})
	h.w.ClearFaults()
	h.w.Settle()
	h.w.Advance(time.Minute)
	return len(h.w.Calls()) - before
}

func TestCrashConsistency(t *testing.T) {
	// The baseline: how many calls each sync's apply makes until nothing is
	// left to do, and which machines the whole run creates.
	base := crashScenario(t)
	var calls []int
	for len(calls) < 40 {
		n := crashSync(base, -1, false)
		if n == 0 {
			break
		}
		calls = append(calls, n)
	}
	base.converge(40)
	checkSettled(t, base, "baseline")
	baseCreated := base.w.Created()
	runs := 0
	for s, n := range calls {
		for k := 0; k <= n; k++ {
			for _, lost := range []bool{false, true} {
				label := fmt.Sprintf("crash in sync %d after call %d (lost reply %t)", s+1, k, lost)
				h := crashScenario(t)
				for range s {
					crashSync(h, -1, false)
				}
				crashSync(h, k, lost)
				h.converge(40)
				checkSettled(t, h, label)
				created := h.w.Created()
				for name, times := range created {
					if times > 1 {
						t.Errorf("%s: %s created %d times", label, name, times)
					}
				}
				// A crash may shift which free ordinal a replacement gets,
				// never how many machines are made.
				if got, want := slices.Sorted(maps.Keys(created)), slices.Sorted(maps.Keys(baseCreated)); len(got) != len(want) {
					t.Errorf("%s: created %v, want as many as %v", label, got, want)
				}
				if t.Failed() {
					t.Fatalf("%s failed", label)
				}
				runs++
			}
		}
	}
	t.Logf("%d crash points over syncs with %v calls converged without duplicates or orphans", runs, calls)
}

// TestCrashEveryCallConcurrent repeats the crash sweep of the first sync with
// clusters in parallel: the order of calls varies, the outcome must not.
func TestCrashEveryCallConcurrent(t *testing.T) {
	base := crashScenario(t)
	n := crashSync(base, -1, false)
	for k := 0; k <= n; k++ {
		h := crashScenario(t)
		o := h.observe()
		p := reconcile.Compute(h.desired(), o, h.fleet.F.Spec.Policy.Limits(), h.w.Now())
		h.w.Inject(reconciletest.CrashAfter(k, k%2 == 0))
		reconcile.Apply(reconcile.WithLogger(context.Background(), slog.New(slog.DiscardHandler)), p, h.world, reconcile.ApplyOptions{})
		h.w.ClearFaults()
		h.w.Settle()
		h.converge(40)
		checkSettled(t, h, fmt.Sprintf("concurrent crash after call %d", k))
	}
}
