package reconcile_test

import (
	"testing"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
)

func condition(st *reconcile.ClusterStatus, typ string) reconcile.Condition {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return reconcile.Condition{}
}

// TestConditionsOfAScaleUp: a healthy cluster scaled up (workers 2 → 4) is
// Scaling and Ready while its new machines join, then Ready and converged.
// It read phase Degraded and Ready: False.
func TestConditionsOfAScaleUp(t *testing.T) {
	h := newHarness(t, true)
	h.existing(h.add(reconciletest.Cluster{Name: "a", Pools: reconciletest.Standard(1, 2)}))
	h.converge(5)
	h.add(reconciletest.Cluster{Name: "a", Pools: reconciletest.Standard(1, 4)})
	// The machines are created and have not joined yet.
	h.w.JoinOnSettle = false
	h.sync()
	st := h.prev.Clusters["a"]
	if st.Phase != reconcile.PhaseScaling {
		t.Errorf("phase %s while new workers join, want Scaling", st.Phase)
	}
	if c := condition(st, reconcile.ConditionReady); c.Status != "True" {
		t.Errorf("Ready %+v while the cluster serves and new workers join", c)
	}
	if c := condition(st, reconcile.ConditionConverged); c.Status != "False" {
		t.Errorf("Converged %+v while new workers join", c)
	}
	h.w.JoinOnSettle = true
	h.w.Settle()
	h.converge(5)
	st = h.prev.Clusters["a"]
	for _, typ := range []string{reconcile.ConditionReady, reconcile.ConditionUpToDate, reconcile.ConditionConverged} {
		if c := condition(st, typ); c.Status != "True" {
			t.Errorf("converged: %s %+v", typ, c)
		}
	}
	if st.Phase != reconcile.PhaseReady {
		t.Errorf("converged: phase %s", st.Phase)
	}
}

// TestConditionsOfAHeldProtectedRemoval: a protected cluster whose file is
// removed is held back; its machines serve, so it is Ready and Blocked,
// and its message counts the machines it has. It read Ready: False and
// "control 3/0, workers 6/0".
func TestConditionsOfAHeldProtectedRemoval(t *testing.T) {
	h := newHarness(t, true)
	h.existing(h.add(reconciletest.Cluster{Name: "prod", Protected: true, Pools: reconciletest.Standard(3, 6)}))
	h.converge(5)
	h.fleet.Remove("prod")
	h.desiredProtected("prod")
	h.sync()
	st := h.prev.Clusters["prod"]
	if st.Phase != reconcile.PhaseBlocked {
		t.Errorf("phase %s, want Blocked", st.Phase)
	}
	if c := condition(st, reconcile.ConditionReady); c.Status != "True" || c.Message != "control 3/3, workers 6/6" {
		t.Errorf("Ready %+v: the cluster serves with all its machines", c)
	}
	if c := condition(st, reconcile.ConditionBlocked); c.Status != "True" || c.Message == "" {
		t.Errorf("Blocked %+v, want True with the policy's reason", c)
	}
}

// TestConditionsOfALostQuorum: a cluster that lost two of its three etcd
// machines is not Ready, whatever else it has.
func TestConditionsOfALostQuorum(t *testing.T) {
	h := newHarness(t, true)
	h.existing(h.add(reconciletest.Cluster{Name: "a", Pools: reconciletest.Standard(3, 3)}))
	h.converge(5)
	h.w.HealNodes = false
	n := 0
	for _, m := range h.w.Machines() {
		if m.Pool == "control" && n < 2 {
			h.w.SetNodeReady(m.Cluster, m.Name, false)
			n++
		}
	}
	h.sync()
	st := h.prev.Clusters["a"]
	if c := condition(st, reconcile.ConditionReady); c.Status != "False" || c.Reason != "NotEnoughNodesReady" {
		t.Errorf("Ready %+v with 1 of 3 etcd members ready", c)
	}
}
