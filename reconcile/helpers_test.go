package reconcile_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// observe observes the harness's world.
func (h *harness) observe() reconcile.Observed {
	h.t.Helper()
	o, err := reconcile.Observe(context.Background(), h.fleet.F, h.world, reconcile.ObserveOptions{})
	if err != nil {
		h.t.Logf("observe: %v", err)
	}
	return o
}

// plan observes and plans with the fleet's policy.
func (h *harness) plan() reconcile.Plan {
	h.t.Helper()
	return reconcile.Compute(h.desired(), h.observe(), h.fleet.F.Spec.Policy.Limits(), h.w.Now())
}

// apply runs a plan against the fake world.
func (h *harness) apply(p reconcile.Plan) reconcile.ApplyResult {
	return reconcile.Apply(reconcile.WithLogger(context.Background(), slog.New(slog.NewTextHandler(h.logs, nil))), p, h.world, reconcile.ApplyOptions{})
}

// add puts a cluster into the fleet and returns it.
func (h *harness) add(c reconciletest.Cluster) *schema.Cluster { return h.fleet.Add(c) }

// existing adds a cluster's converged machines to the world (running), and
// with rancher registers it with every node joined and ready and access bound.
func (h *harness) existing(c *schema.Cluster) []reconcile.Machine {
	var out []reconcile.Machine
	for _, m := range reconciletest.Machines(c, h.w.Now()) {
		out = append(out, h.w.AddMachine(m))
	}
	if h.fleet.F.Spec.Rancher != nil {
		var bs []reconcile.Binding
		for _, a := range c.Effective.Access {
			bs = append(bs, reconcile.Binding{PrincipalID: "openldap_group://" + a.Group, Role: a.Role})
		}
		h.w.AddCluster(reconcile.RancherCluster{Name: c.Effective.Name, Team: c.Effective.Team, Ready: true,
			KubernetesVersion: c.Effective.KubernetesVersion, Protected: c.Effective.Protected, Bindings: bs})
		for _, m := range out {
			h.w.Join(m.Cluster, m.Name, true)
		}
	}
	return out
}

// name returns the name of machine n of a pool with its current template.
func name(c *schema.Cluster, pool string, n int) string {
	for i := range c.Effective.Pools {
		p := &c.Effective.Pools[i]
		if p.Name == pool {
			return reconcile.MachineName(c.Effective.Name, pool, reconcile.NewTemplate(&c.Effective, p).Hash, n)
		}
	}
	panic("no pool " + pool)
}

// lines renders a plan's actions one per line: cluster, kind, machines or
// binding, and [blocked] or [deferred].
func lines(p reconcile.Plan) []string {
	var out []string
	for _, cp := range p.Clusters {
		for _, a := range cp.Actions {
			s := cp.Name + " " + string(must(a.Kind.MarshalText()))
			switch {
			case a.Binding != nil:
				s += " " + a.Binding.Role + " " + a.Binding.PrincipalID
			case a.Kind == reconcile.ActionReplaceMachine:
				s += " " + strings.Join(a.Machines, ",") + " for " + a.Replaces
			case len(a.Machines) > 0:
				s += " " + strings.Join(a.Machines, ",")
			}
			if a.ExcludeDrain {
				s += " (exclude drain)"
			}
			switch {
			case a.Deferred:
				s += " [deferred]"
			case !a.Runnable():
				s += " [blocked]"
			}
			out = append(out, s)
		}
	}
	return out
}

// waits renders a plan's waits and cluster blocks one per line.
func waits(p reconcile.Plan) []string {
	var out []string
	for _, cp := range p.Clusters {
		if cp.Blocked != "" {
			out = append(out, cp.Name+" blocked: "+cp.Blocked)
		}
		for _, w := range cp.Waiting {
			out = append(out, cp.Name+" wait: "+w)
		}
	}
	return out
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func diffLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func containsLine(t *testing.T, what string, got []string, sub string) {
	t.Helper()
	for _, g := range got {
		if strings.Contains(g, sub) {
			return
		}
	}
	t.Errorf("%s: no line contains %q in:\n  %s", what, sub, strings.Join(got, "\n  "))
}

var _ = fmt.Sprint
