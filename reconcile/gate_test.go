package reconcile_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

func intp(v int) *int { return &v }

// fleetOf adds n converged clusters c0..c(n-1) without rancher.
func fleetOf(h *harness, n int) []*schema.Cluster {
	var out []*schema.Cluster
	for i := range n {
		c := h.add(reconciletest.Cluster{Name: fmt.Sprintf("c%d", i)})
		h.existing(c)
		out = append(out, c)
	}
	return out
}

func TestGate(t *testing.T) {
	cases := []struct {
		name  string
		setup func(h *harness) []string
		// reason is a substring of every blocked action's reason.
		reason string
	}{
		{
			name: "paused cluster is observed, never changed",
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Paused: true})
				return []string{
					"pay create-machines " + name(c, "control", 0) + " [blocked]",
					"pay create-machines " + name(c, "workers", 0) + " [blocked]",
				}
			},
			reason: "paused",
		},
		{
			name: "protected cluster whose file is removed is not decommissioned",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 5)
				h.desiredProtected("c4")
				h.fleet.Remove("c4")
				return []string{"c4 delete-machines " + name(cs[4], "control", 0) + "," + name(cs[4], "workers", 0) + " [blocked]"}
			},
			reason: "protected",
		},
		{
			name: "protected expired cluster is not decommissioned",
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "tmp", TTL: time.Hour, Protected: true})
				h.existing(c)
				h.created["tmp"] = h.w.Now().Add(-2 * time.Hour)
				h.w.Launched("tmp", h.w.Now().Add(-2*time.Hour))
				return []string{"tmp delete-machines " + name(c, "control", 0) + "," + name(c, "workers", 0) + " [blocked]"}
			},
			reason: "TTL expired",
		},
		{
			name: "expired TTL decommissions",
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "tmp", TTL: time.Hour})
				h.existing(c)
				h.created["tmp"] = h.w.Now().Add(-time.Hour)
				h.w.Launched("tmp", h.w.Now().Add(-time.Hour))
				h.existing(h.add(reconciletest.Cluster{Name: "young", TTL: time.Hour}))
				h.created["young"] = h.w.Now().Add(-59 * time.Minute)
				h.w.Launched("young", h.w.Now().Add(-59*time.Minute))
				fleetOf(h, 2)
				return []string{"tmp delete-machines " + name(c, "control", 0) + "," + name(c, "workers", 0)}
			},
		},
		{
			name: "at most maxDecommissionsPerSync decommissions, started ones first",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 10)
				// c1's decommission is under way: one of its machines is deleting.
				h.fleet.Remove("c1")
				h.fleet.Remove("c2")
				h.fleet.Remove("c3")
				p := h.plan()
				for _, cp := range p.Clusters {
					if cp.Name == "c3" {
						h.apply(reconcile.Plan{Revision: p.Revision, Clusters: []reconcile.ClusterPlan{{Name: "c3", Actions: []reconcile.Action{{
							Kind: reconcile.ActionDeleteMachines, Provider: "aws-eu", Machines: cp.Actions[0].Machines[:1], IDs: cp.Actions[0].IDs[:1]}}}}})
					}
				}
				return []string{
					"c1 delete-machines " + name(cs[1], "control", 0) + "," + name(cs[1], "workers", 0) + " [deferred]",
					"c2 delete-machines " + name(cs[2], "control", 0) + "," + name(cs[2], "workers", 0) + " [deferred]",
					"c3 delete-machines " + name(cs[3], "workers", 0),
				}
			},
			reason: "maxDecommissionsPerSync is 1",
		},
		{
			name: "prune guard stops every decommission",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 10)
				h.fleet.F.Spec.Policy.MaxDecommissionsPerSync = intp(10)
				var want []string
				for _, i := range []int{2, 5, 7, 9} {
					h.fleet.Remove(cs[i].Spec.Name)
					want = append(want, fmt.Sprintf("c%d delete-machines %s,%s [blocked]", i, name(cs[i], "control", 0), name(cs[i], "workers", 0)))
				}
				return want
			},
			reason: "prune guard: 4 of 10 clusters (40%)",
		},
		{
			name: "prune guard at the limit lets decommissions run",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 10)
				h.fleet.F.Spec.Policy.MaxDecommissionsPerSync = intp(10)
				var want []string
				for _, i := range []int{2, 5, 7} {
					h.fleet.Remove(cs[i].Spec.Name)
					want = append(want, fmt.Sprintf("c%d delete-machines %s,%s", i, name(cs[i], "control", 0), name(cs[i], "workers", 0)))
				}
				return want
			},
		},
		{
			name: "confirmPrune naming the removing commit releases the guard",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 4)
				h.fleet.F.Spec.Policy.MaxDecommissionsPerSync = intp(10)
				h.fleet.F.Spec.Policy.ConfirmPrune = "feedbee"
				h.removedBy = map[string]string{"c0": "feedbeef00000000000000000000000000000000", "c1": "feedbeef00000000000000000000000000000000"}
				h.fleet.Remove("c0")
				h.fleet.Remove("c1")
				return []string{
					"c0 delete-machines " + name(cs[0], "control", 0) + "," + name(cs[0], "workers", 0),
					"c1 delete-machines " + name(cs[1], "control", 0) + "," + name(cs[1], "workers", 0),
				}
			},
		},
		{
			name: "TTL expiries count against the prune guard",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 3)
				h.fleet.F.Spec.Policy.MaxDecommissionsPerSync = intp(10)
				var want []string
				for _, c := range cs {
					c.Effective.TTL = time.Hour
					h.created[c.Spec.Name] = h.w.Now().Add(-2 * time.Hour)
					h.w.Launched(c.Spec.Name, h.w.Now().Add(-2*time.Hour))
					want = append(want, c.Spec.Name+" delete-machines "+name(c, "control", 0)+","+name(c, "workers", 0)+" [blocked]")
				}
				return want
			},
			reason: "prune guard: 3 of 3 clusters",
		},
		{
			name: "confirmPrune naming the commit that set the TTLs releases the guard",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 3)
				h.fleet.F.Spec.Policy.MaxDecommissionsPerSync = intp(10)
				h.fleet.F.Spec.Policy.ConfirmPrune = "7717a11"
				h.changedBy = map[string]string{}
				var want []string
				for _, c := range cs {
					c.Effective.TTL = time.Hour
					h.created[c.Spec.Name] = h.w.Now().Add(-2 * time.Hour)
					h.w.Launched(c.Spec.Name, h.w.Now().Add(-2*time.Hour))
					h.changedBy[c.Spec.Name] = "7717a11000000000000000000000000000000000"
					want = append(want, c.Spec.Name+" delete-machines "+name(c, "control", 0)+","+name(c, "workers", 0))
				}
				return want
			},
		},
		{
			name: "no decommission while history cannot be read",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 10)
				h.facts = "the clone's history is shallow"
				h.fleet.Remove("c0")
				return []string{"c0 delete-machines " + name(cs[0], "control", 0) + "," + name(cs[0], "workers", 0) + " [blocked]"}
			},
			reason: "the git history cannot tell",
		},
		{
			name: "no decommission of a cluster the history never declared",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 10)
				h.unproven = map[string]string{"c0": "no file of the fleet repo's history declared c0"}
				h.fleet.Remove("c0")
				return []string{"c0 delete-machines " + name(cs[0], "control", 0) + "," + name(cs[0], "workers", 0) + " [blocked]"}
			},
			reason: "no cluster file in the history of",
		},
		{
			name: "confirmPrune of another commit does not",
			setup: func(h *harness) []string {
				cs := fleetOf(h, 4)
				h.fleet.F.Spec.Policy.ConfirmPrune = "0ddba11"
				h.fleet.Remove("c0")
				h.fleet.Remove("c1")
				return []string{
					"c0 delete-machines " + name(cs[0], "control", 0) + "," + name(cs[0], "workers", 0) + " [blocked]",
					"c1 delete-machines " + name(cs[1], "control", 0) + "," + name(cs[1], "workers", 0) + " [blocked]",
				}
			},
			reason: "prune guard",
		},
		{
			name: "maxMachineChangesPerSync splits an action across syncs",
			setup: func(h *harness) []string {
				h.fleet.F.Spec.Policy.MaxMachineChangesPerSync = intp(4)
				a := h.add(reconciletest.Cluster{Name: "a", Pools: reconciletest.Standard(1, 2)})
				b := h.add(reconciletest.Cluster{Name: "b", Pools: reconciletest.Standard(1, 3)})
				return []string{
					"a create-machines " + name(a, "control", 0),
					"a create-machines " + name(a, "workers", 0) + "," + name(a, "workers", 1),
					"b create-machines " + name(b, "control", 0),
					"b create-machines " + name(b, "workers", 0) + "," + name(b, "workers", 1) + "," + name(b, "workers", 2) + " [deferred]",
				}
			},
			reason: "maxMachineChangesPerSync is 4",
		},
		{
			name: "a deferred drain holds back its Rancher machine deletion",
			setup: func(h *harness) []string {
				h.fleet = reconciletest.NewFleet(true)
				h.world = h.w.World(true, "aws-eu", "dc1")
				h.fleet.F.Spec.Policy.MaxMachineChangesPerSync = intp(1)
				c := h.add(reconciletest.Cluster{Name: "a", Pools: reconciletest.Standard(1, 3)})
				h.existing(c)
				h.fleet.Add(reconciletest.Cluster{Name: "a", Pools: reconciletest.Standard(1, 1)})
				return []string{
					"a drain-machine " + name(c, "workers", 2),
					"a delete-rancher-machine " + name(c, "workers", 2),
					"a drain-machine " + name(c, "workers", 1) + " [deferred]",
					"a delete-rancher-machine " + name(c, "workers", 1) + " [deferred]",
				}
			},
			reason: "maxMachineChangesPerSync is 1",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, false)
			want := c.setup(h)
			p := h.plan()
			diffLines(t, "actions", lines(p), want)
			for _, cp := range p.Clusters {
				for _, a := range cp.Actions {
					if !a.Runnable() && !strings.Contains(a.Blocked, c.reason) {
						t.Errorf("%s %s blocked for %q, want %q", cp.Name, a.Kind, a.Blocked, c.reason)
					}
				}
			}
		})
	}
}

func TestExpiresAt(t *testing.T) {
	h := newHarness(t, false)
	h.add(reconciletest.Cluster{Name: "tmp", TTL: 48 * time.Hour})
	h.created["tmp"] = t0
	h.w.Launched("tmp", t0)
	p := h.plan()
	cp := p.Cluster("tmp")
	if cp.ExpiresAt == nil || !cp.ExpiresAt.Equal(t0.Add(48*time.Hour)) || cp.Expired {
		t.Fatalf("expiresAt %v, expired %t", cp.ExpiresAt, cp.Expired)
	}
}

func TestActionKinds(t *testing.T) {
	destructive := map[reconcile.ActionKind]bool{
		reconcile.ActionUnbind: true, reconcile.ActionDrainMachine: true, reconcile.ActionDeleteRancherMachine: true,
		reconcile.ActionDeleteMachines: true, reconcile.ActionUnregister: true,
	}
	for k := reconcile.ActionRegister; k <= reconcile.ActionUnregister; k++ {
		if strings.HasPrefix(k.String(), "ActionKind(") {
			t.Errorf("%d has no name", k)
		}
		if k.IsDestructive() != destructive[k] {
			t.Errorf("%s: destructive %t", k, k.IsDestructive())
		}
		var back reconcile.ActionKind
		if err := back.UnmarshalText(must(k.MarshalText())); err != nil || back != k {
			t.Errorf("%s does not round-trip: %v", k, err)
		}
	}
}
