package reconcile_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

const oldHash = "0000011111222223"

// oldMachine is a machine of pool with a template that is no longer desired.
func oldMachine(c *schema.Cluster, pool string, n int, created time.Time) reconcile.Machine {
	return reconcile.Machine{Name: reconcile.MachineName(c.Effective.Name, pool, oldHash, n), Provider: c.Effective.Provider,
		Cluster: c.Effective.Name, Team: c.Effective.Team, Pool: pool, TemplateHash: oldHash, State: reconcile.MachineRunning, CreatedAt: created}
}

func TestPlanActions(t *testing.T) {
	type tc struct {
		name    string
		rancher bool
		setup   func(h *harness) (want []string)
		// waits are substrings expected among the plan's waits.
		waits []string
	}
	cases := []tc{
		{
			name: "new cluster without rancher creates every pool",
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(3, 2)})
				return []string{
					"pay create-machines " + name(c, "control", 0) + "," + name(c, "control", 1) + "," + name(c, "control", 2),
					"pay create-machines " + name(c, "workers", 0) + "," + name(c, "workers", 1),
				}
			},
		},
		{
			name:    "new cluster with rancher registers, creates and binds",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Access: []schema.EffectiveAccess{{Group: "cn=ops,dc=acme", Role: "cluster-owner"}}})
				return []string{
					"pay register",
					"pay create-machines " + name(c, "control", 0),
					"pay create-machines " + name(c, "workers", 0),
					"pay bind cluster-owner openldap_group://cn=ops,dc=acme",
					"pay bind cluster-member openldap_group://cn=payments,ou=groups,dc=acme,dc=example",
				}
			},
		},
		{
			name:    "converged cluster plans nothing",
			rancher: true,
			setup: func(h *harness) []string {
				h.existing(h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(3, 2)}))
				return nil
			},
		},
		{
			name: "scale up takes the lowest free ordinals",
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 4)})
				ms := reconciletest.Machines(c, h.w.Now())
				h.w.AddMachine(ms[0])
				h.w.AddMachine(ms[2]) // workers-1
				return []string{"pay create-machines " + name(c, "workers", 0) + "," + name(c, "workers", 2) + "," + name(c, "workers", 3)}
			},
		},
		{
			name: "scale down without rancher deletes the newest",
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 3)})
				for i, m := range reconciletest.Machines(c, h.w.Now()) {
					m.CreatedAt = m.CreatedAt.Add(time.Duration(i) * time.Minute)
					h.w.AddMachine(m)
				}
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				return []string{"pay delete-machines " + name(c, "workers", 2) + "," + name(c, "workers", 1)}
			},
		},
		{
			name:    "scale down picks not ready, then old template, then newest",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 4)})
				h.existing(c)
				h.w.Advance(time.Hour)
				h.w.SetNodeReady("pay", name(c, "workers", 1), false)
				old := h.w.AddMachine(oldMachine(c, "workers", 0, t0.Add(-time.Hour)))
				h.w.Join("pay", old.Name, true)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				// 5 live, want 1, rolling keeps one surge: remove 3.
				return []string{
					"pay drain-machine " + name(c, "workers", 1),
					"pay delete-rancher-machine " + name(c, "workers", 1),
					"pay drain-machine " + old.Name,
					"pay delete-rancher-machine " + old.Name,
					"pay drain-machine " + name(c, "workers", 3),
					"pay delete-rancher-machine " + name(c, "workers", 3),
				}
			},
		},
		{
			name:    "removed machine's VM goes once Rancher is done",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				p := h.plan()
				h.apply(p)
				h.w.Settle()
				return []string{"pay delete-machines " + name(c, "workers", 1)}
			},
		},
		{
			name:    "Rancher still removing a machine is waited for",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				h.apply(h.plan())
				return nil
			},
			waits: []string{"is being removed"},
		},
		{
			name:    "template change surges one replacement",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.w.Advance(time.Hour)
				pools := reconciletest.Standard(1, 2)
				pools[1].Size = "medium"
				c2 := h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: pools})
				return []string{"pay replace-machine " + name(c2, "workers", 0) + " for " + name(c, "workers", 0)}
			},
		},
		{
			name:    "rolling waits for the surge machine to be ready",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.w.Advance(time.Hour)
				pools := reconciletest.Standard(1, 2)
				pools[1].Size = "medium"
				c2 := h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: pools})
				h.apply(h.plan())
				if w := waits(h.plan()); len(w) != 1 || !strings.Contains(w[0], "is starting") {
					h.t.Errorf("waits for a new machine: %v", w)
				}
				h.w.Settle()
				h.w.SetNodeReady("pay", name(c2, "workers", 0), false)
				h.w.Advance(time.Hour)
				return nil
			},
			waits: []string{"rolling workers: waiting for pay-workers-"},
		},
		{
			name:    "ready surge machine lets the oldest old machine go",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.w.Advance(time.Hour)
				pools := reconciletest.Standard(1, 2)
				pools[1].Size = "medium"
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: pools})
				h.apply(h.plan())
				h.w.Settle()
				return []string{
					"pay drain-machine " + name(c, "workers", 0),
					"pay delete-rancher-machine " + name(c, "workers", 0),
				}
			},
		},
		{
			name:    "Kubernetes upgrade updates Rancher and replaces machines",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				h.existing(c)
				c2 := h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1), KubernetesVersion: "v1.32.1+rke2r1"})
				return []string{
					"pay register",
					"pay replace-machine " + name(c2, "control", 0) + " for " + name(c, "control", 0),
					"pay replace-machine " + name(c2, "workers", 0) + " for " + name(c, "workers", 0),
				}
			},
		},
		{
			name:    "etcd replacement never goes below quorum",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(3, 0)})
				h.existing(c)
				h.w.Advance(time.Hour)
				// Three old members of which one is not ready, plus a ready
				// surge of the new template: removing a ready old member
				// would leave 2 of 3 ready... allowed; removing the not-ready
				// one is preferred anyway.
				h.w.SetNodeReady("pay", name(c, "control", 1), false)
				h.w.SetNodeReady("pay", name(c, "control", 2), false)
				pools := reconciletest.Standard(3, 0)
				pools[0].Size = "large"
				c2 := h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: pools})
				surge := h.w.AddMachine(reconciletest.Machines(c2, h.w.Now())[0])
				h.w.Join("pay", surge.Name, true)
				// 4 members, 2 ready: removing a not-ready one leaves 2 of 3 ready.
				return []string{
					"pay drain-machine " + name(c, "control", 1),
					"pay delete-rancher-machine " + name(c, "control", 1),
				}
			},
		},
		{
			name:    "etcd member removal waits when it would break quorum",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(3, 0)})
				h.existing(c)
				h.w.Advance(time.Hour)
				h.w.SetNodeReady("pay", name(c, "control", 0), false)
				h.w.SetNodeReady("pay", name(c, "control", 1), false)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 0)})
				// Scale 3 → 1: control-0 and control-1 are not ready; removing
				// one leaves 1 of 2 ready (quorum 2).
				return nil
			},
			waits: []string{"below quorum"},
		},
		{
			name:    "one etcd member at a time",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(5, 0)})
				h.existing(c)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(3, 0)})
				return []string{
					"pay drain-machine " + name(c, "control", 4),
					"pay delete-rancher-machine " + name(c, "control", 4),
				}
			},
			waits: []string{"another etcd member is being removed"},
		},
		{
			name:    "machine whose VM vanished is cleaned from Rancher and replaced",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.w.RemoveMachine(name(c, "workers", 0))
				return []string{
					"pay delete-rancher-machine " + name(c, "workers", 0) + " (exclude drain)",
					"pay create-machines " + name(c, "workers", 2),
				}
			},
		},
		{
			name:    "machine that never joined is replaced",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				h.existing(c)
				h.w.AddMachine(reconciletest.Machines(h.fleet.Build(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)}), h.w.Now())[2])
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.w.Advance(reconcile.JoinTimeout + time.Minute)
				return []string{
					"pay create-machines " + name(c, "workers", 2),
					"pay delete-machines " + name(c, "workers", 1),
				}
			},
		},
		{
			name:    "access changes bind before they unbind",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay"})
				h.existing(c)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Access: []schema.EffectiveAccess{{Group: "cn=ops,dc=acme", Role: "cluster-owner"}}})
				h.fleet.F.Spec.Teams[0].Groups = []string{"cn=payments-new,dc=acme"}
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Access: []schema.EffectiveAccess{{Group: "cn=ops,dc=acme", Role: "cluster-owner"}}})
				return []string{
					"pay bind cluster-owner openldap_group://cn=ops,dc=acme",
					"pay bind cluster-member openldap_group://cn=payments-new,dc=acme",
					"pay unbind cluster-member openldap_group://cn=payments,ou=groups,dc=acme,dc=example",
				}
			},
		},
		{
			name:    "principal IDs follow the auth provider",
			rancher: true,
			setup: func(h *harness) []string {
				h.fleet.F.Spec.Rancher.AuthProvider = "activedirectory"
				h.existing(h.add(reconciletest.Cluster{Name: "pay"}))
				return []string{
					"pay bind cluster-member activedirectory_group://cn=payments,ou=groups,dc=acme,dc=example",
					"pay unbind cluster-member openldap_group://cn=payments,ou=groups,dc=acme,dc=example",
				}
			},
		},
		{
			name:    "removed pool is drained away",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: append(reconciletest.Standard(1, 1), reconciletest.Pool{Name: "gpu", Roles: []string{"worker"}, Replicas: 1, Size: "small"})})
				h.existing(c)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				return []string{
					"pay drain-machine " + name(c, "gpu", 0),
					"pay delete-rancher-machine " + name(c, "gpu", 0),
				}
			},
		},
		{
			name:    "decommission with rancher unbinds and unregisters first",
			rancher: true,
			setup: func(h *harness) []string {
				for _, n := range []string{"a", "b", "c", "d"} {
					h.existing(h.add(reconciletest.Cluster{Name: n}))
				}
				h.fleet.Remove("a")
				return []string{
					"a unbind cluster-member openldap_group://cn=payments,ou=groups,dc=acme,dc=example",
					"a unregister",
				}
			},
		},
		{
			name:    "decommission waits for Rancher, then deletes every machine",
			rancher: true,
			setup: func(h *harness) []string {
				var c *schema.Cluster
				for _, n := range []string{"a", "b", "c", "d"} {
					c = h.add(reconciletest.Cluster{Name: n})
					h.existing(c)
				}
				h.fleet.Remove("d")
				h.apply(h.plan())
				if w := waits(h.plan()); len(w) != 1 || !strings.Contains(w[0], "Rancher is deleting the cluster") {
					h.t.Errorf("waits while Rancher deletes: %v", w)
				}
				h.w.Settle()
				return []string{"d delete-machines " + name(c, "control", 0) + "," + name(c, "workers", 0)}
			},
		},
		{
			name: "decommission without rancher deletes the machines",
			setup: func(h *harness) []string {
				var c *schema.Cluster
				for _, n := range []string{"a", "b", "c", "d"} {
					c = h.add(reconciletest.Cluster{Name: n})
					h.existing(c)
				}
				h.fleet.Remove("d")
				return []string{"d delete-machines " + name(c, "control", 0) + "," + name(c, "workers", 0)}
			},
		},
		{
			name: "unobservable provider leaves its clusters alone",
			setup: func(h *harness) []string {
				h.add(reconciletest.Cluster{Name: "pay"})
				h.add(reconciletest.Cluster{Name: "vs", Provider: "dc1"})
				h.w.Inject(reconciletest.FailOp("aws-eu.List", errString("throttled")))
				return []string{
					"vs create-machines " + name(h.fleet.F.Clusters[1], "control", 0),
					"vs create-machines " + name(h.fleet.F.Clusters[1], "workers", 0),
				}
			},
			waits: []string{"pay wait: provider aws-eu could not be listed: throttled"},
		},
		{
			name:    "unobservable Rancher machines leave the cluster alone",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				h.w.Inject(reconciletest.FailOp("rancher.Machines", errString("timeout")))
				return nil
			},
			waits: []string{"Rancher machines could not be listed"},
		},
		{
			name:    "unknown node readiness keeps machines",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
				h.w.Inject(reconciletest.FailOp("nodes.Ready", errString("apiserver down")))
				return nil
			},
			waits: []string{"node readiness is unknown"},
		},
		{
			name:    "held cluster converges to its last valid spec and is not decommissioned",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
				h.existing(c)
				h.w.RemoveMachine(name(c, "workers", 1))
				h.fleet.Remove("pay")
				h.fleet.F.Rejected = []schema.RejectedFile{{Path: c.Path, Name: "pay", Team: "payments"}}
				h.held = []reconcile.Held{{Path: c.Path, Last: c}}
				return []string{
					"pay delete-rancher-machine " + name(c, "workers", 1) + " (exclude drain)",
					"pay create-machines " + name(c, "workers", 2),
				}
			},
		},
		{
			name:    "rejected file without a valid version is never decommissioned",
			rancher: true,
			setup: func(h *harness) []string {
				c := h.add(reconciletest.Cluster{Name: "pay"})
				h.existing(c)
				h.fleet.Remove("pay")
				h.fleet.F.Rejected = []schema.RejectedFile{{Path: c.Path, Name: "pay", Team: "payments"}}
				return nil
			},
			waits: []string{"pay blocked: cluster file clusters/payments/pay.yaml is rejected"},
		},
		{
			name:    "unidentified rejected file blocks every decommission",
			rancher: true,
			setup: func(h *harness) []string {
				for _, n := range []string{"a", "b", "c", "d"} {
					h.existing(h.add(reconciletest.Cluster{Name: n}))
				}
				h.fleet.Remove("d")
				h.fleet.F.Rejected = []schema.RejectedFile{{Path: "clusters/payments/broken.yaml"}}
				return []string{
					"d unbind cluster-member openldap_group://cn=payments,ou=groups,dc=acme,dc=example [blocked]",
					"d unregister [blocked]",
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.rancher)
			want := c.setup(h)
			// Faults installed by setup apply to the observation.
			p := h.plan()
			diffLines(t, "actions", lines(p), want)
			for _, w := range c.waits {
				containsLine(t, "waits", waits(p), w)
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestPlanDeterministic(t *testing.T) {
	h := newHarness(t, true)
	for i, n := range []string{"a", "b", "c", "d", "e", "f"} {
		c := h.add(reconciletest.Cluster{Name: n, Team: []string{"payments", "trading", "qa"}[i%3], Pools: reconciletest.Standard(3, i)})
		if i%2 == 0 {
			h.existing(c)
		}
	}
	h.fleet.Remove("c")
	h.fleet.Add(reconciletest.Cluster{Name: "e", Pools: reconciletest.Standard(3, 1), KubernetesVersion: "v1.32.0+rke2r1"})
	d := h.desired()
	o := h.observe()
	lim := h.fleet.F.Spec.Policy.Limits()
	want := must(json.Marshal(reconcile.Compute(d, o, lim, t0)))
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		o2 := o
		o2.Machines = append([]reconcile.Machine(nil), o.Machines...)
		r.Shuffle(len(o2.Machines), func(i, j int) { o2.Machines[i], o2.Machines[j] = o2.Machines[j], o2.Machines[i] })
		o2.Rancher = append([]reconcile.RancherCluster(nil), o.Rancher...)
		r.Shuffle(len(o2.Rancher), func(i, j int) { o2.Rancher[i], o2.Rancher[j] = o2.Rancher[j], o2.Rancher[i] })
		got := must(json.Marshal(reconcile.Compute(d, o2, lim, t0)))
		if string(got) != string(want) {
			t.Fatalf("plan depends on input order:\n%s\n%s", got, want)
		}
	}
}

func TestPlanInvalidFleetPlansNothing(t *testing.T) {
	h := newHarness(t, true)
	h.existing(h.add(reconciletest.Cluster{Name: "pay"}))
	o := h.observe()
	d := reconcile.Desired{Revision: "abc", Diagnostics: schema.Diagnostics{{Severity: schema.SeverityError, Path: "fleet.yaml", Line: 3, Column: 1, Message: "bad"}}}
	p := reconcile.Compute(d, o, schema.Limits{}, t0)
	if len(lines(p)) != 0 || !strings.Contains(p.Blocked, "fleet.yaml:3:1: bad") {
		t.Fatalf("plan: %v, blocked %q", lines(p), p.Blocked)
	}
	if p.HasChanges() {
		t.Fatal("an invalid fleet has changes")
	}
}

func TestMachineNames(t *testing.T) {
	h := newHarness(t, false)
	c := h.add(reconciletest.Cluster{Name: "pay-prod", Pools: reconciletest.Standard(1, 1)})
	tmpl := reconcile.NewTemplate(&c.Effective, &c.Effective.Pools[1])
	got := reconcile.MachineName("pay-prod", "workers", tmpl.Hash, 7)
	if want := "pay-prod-workers-" + tmpl.Hash[:5] + "-7"; got != want {
		t.Fatalf("name %s, want %s", got, want)
	}
	// The hash covers provider, size, roles and version, and nothing else.
	base := tmpl
	for _, mut := range []func(*reconcile.Template){
		func(t *reconcile.Template) { t.Provider = "dc1" },
		func(t *reconcile.Template) { t.Size.InstanceType = "m6i.large" },
		func(t *reconcile.Template) { t.Size.Image = "ami-2" },
		func(t *reconcile.Template) { t.Roles = []string{"etcd"} },
		func(t *reconcile.Template) { t.KubernetesVersion = "v1.32.0+rke2r1" },
	} {
		m := base
		m.Roles = append([]string(nil), base.Roles...)
		mut(&m)
		if reconcile.TemplateHash(m) == base.Hash {
			t.Errorf("template change %+v keeps the hash", m)
		}
	}
	r := base
	r.Roles = []string{"worker"}
	if reconcile.TemplateHash(r) != base.Hash {
		t.Error("hash depends on something beyond the template")
	}
}

// unavailable is Rancher's answer for a downstream cluster without a
// connected agent, as the kube package classifies it.
var unavailable = reconcile.Transient(&reconcile.UnavailableError{Err: errString("rancher: list nodes of pay: cluster not provisioned")})

// TestPlanRegisteringCluster pins a new cluster that Rancher has not
// provisioned yet: the downstream API answers ClusterUnavailable, which is
// work in progress (the cluster is registering, nothing failed), and
// removals that need node readiness wait. The same answer for a cluster that
// was provisioned is that cluster's own transient failure, never the whole
// Rancher's.
func TestPlanRegisteringCluster(t *testing.T) {
	t.Run("not provisioned: registering, no error", func(t *testing.T) {
		h := newHarness(t, true)
		c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
		h.w.AddCluster(reconcile.RancherCluster{Name: "pay", Team: "payments", KubernetesVersion: c.Effective.KubernetesVersion,
			Bindings: []reconcile.Binding{{PrincipalID: "openldap_group://" + c.Effective.Access[0].Group, Role: c.Effective.Access[0].Role}}})
		for _, m := range reconciletest.Machines(c, h.w.Now()) {
			h.w.AddMachine(m)
		}
		h.w.Inject(reconciletest.FailOp("nodes.Ready", unavailable))
		o, err := reconcile.Observe(context.Background(), h.fleet.F, h.world, reconcile.ObserveOptions{})
		if err != nil || o.Unreachable() != nil {
			t.Fatalf("observe: %v (unreachable %v), want no error", err, o.Unreachable())
		}
		if len(o.Rancher) != 1 || !o.Rancher[0].NoNodesYet || o.Rancher[0].NodesError != "" || o.Rancher[0].Nodes != nil {
			t.Fatalf("observed %+v, want no nodes yet", o.Rancher)
		}
		p := reconcile.Compute(h.desired(), o, h.fleet.F.Spec.Policy.Limits(), h.w.Now())
		containsLine(t, "waits", waits(p), "pay wait: cluster pay is registering: Rancher provisions it when its first machine registers")
		if !p.InProgress() {
			t.Error("a registering cluster is not in progress: no sync soon")
		}
	})
	t.Run("not provisioned: removals wait", func(t *testing.T) {
		h := newHarness(t, true)
		c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
		h.existing(c)
		h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
		o := h.observe()
		for i := range o.Rancher {
			// The moment Rancher answered ClusterUnavailable for a cluster
			// it never provisioned.
			o.Rancher[i].Provisioned, o.Rancher[i].Nodes, o.Rancher[i].NoNodesYet = false, nil, true
		}
		p := reconcile.Compute(h.desired(), o, h.fleet.F.Spec.Policy.Limits(), h.w.Now())
		if got := lines(p); len(got) != 0 {
			t.Errorf("actions %v, want none while node readiness is not known", got)
		}
		containsLine(t, "waits", waits(p), "keeping "+name(c, "workers", 1)+": node readiness is unknown (Rancher has not provisioned the cluster yet)")
	})
	t.Run("provisioned: that cluster's transient error", func(t *testing.T) {
		h := newHarness(t, true)
		c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
		h.existing(c)
		h.existing(h.add(reconciletest.Cluster{Name: "other"}))
		h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
		h.w.Inject(func(call reconciletest.Call) error {
			if call.Op == "nodes.Ready" && call.Cluster == "pay" {
				return unavailable
			}
			return nil
		})
		o, err := reconcile.Observe(context.Background(), h.fleet.F, h.world, reconcile.ObserveOptions{})
		if err == nil || reconcile.Classify(err) != reconcile.ReactRetry || !strings.Contains(err.Error(), "observe nodes of pay") {
			t.Fatalf("observe error %v, want a transient error of cluster pay", err)
		}
		if o.Unreachable() != nil {
			t.Errorf("one cluster's disconnected agent makes %v unreachable", o.Unreachable())
		}
		for _, rc := range o.Rancher {
			if rc.NoNodesYet || (rc.Name == "pay") != (rc.NodesError != "") {
				t.Errorf("%s: no nodes yet %t, nodes error %q", rc.Name, rc.NoNodesYet, rc.NodesError)
			}
		}
		p := reconcile.Compute(h.desired(), o, h.fleet.F.Spec.Policy.Limits(), h.w.Now())
		containsLine(t, "waits", waits(p), "keeping "+name(c, "workers", 1)+": node readiness is unknown")
		for _, w := range waits(p) {
			if strings.Contains(w, "registering") {
				t.Errorf("a provisioned cluster is said to be registering: %s", w)
			}
		}
	})
}

// TestPlanRemovedMachineIsNotStarting pins the plan of a scale-down once the
// removed machine's Rancher machine is gone: it deletes the VM and does not
// say the machine is starting.
func TestPlanRemovedMachineIsNotStarting(t *testing.T) {
	h := newHarness(t, true)
	c := h.add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 2)})
	h.existing(c)
	h.fleet.Add(reconciletest.Cluster{Name: "pay", Pools: reconciletest.Standard(1, 1)})
	victim := name(c, "workers", 1)
	if err := h.world.Registry.DeleteMachine(context.Background(), "pay", reconcile.RancherMachineName(victim), false); err != nil {
		t.Fatal(err)
	}
	h.w.Settle()
	p := h.plan()
	diffLines(t, "actions", lines(p), []string{"pay delete-machines " + victim})
	for _, w := range waits(p) {
		if strings.Contains(w, victim) {
			t.Errorf("the plan deletes %s and says: %s", victim, w)
		}
	}
}
