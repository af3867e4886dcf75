package reconcile_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
)

// firstCall returns the sequence number of the first call matching, or 0.
func firstCall(calls []reconciletest.Call, op, cluster, arg string) int {
	for _, c := range calls {
		if strings.HasSuffix(c.Op, op) && c.Cluster == cluster && (arg == "" || strings.Contains(strings.Join(c.Args, ","), arg)) {
			return c.Seq
		}
	}
	return 0
}

func lastCall(calls []reconciletest.Call, op, cluster string) int {
	last := 0
	for _, c := range calls {
		if strings.HasSuffix(c.Op, op) && c.Cluster == cluster {
			last = c.Seq
		}
	}
	return last
}

func TestCallOrder(t *testing.T) {
	h := crashScenario(t)
	var plans []reconcile.Plan
	for range 40 {
		res := h.sync()
		plans = append(plans, res.Plan)
		if res.Plan.Converged() {
			break
		}
	}
	checkSettled(t, h, "order scenario")
	calls := h.w.Calls()

	t.Run("drain before deleting the Rancher machine before deleting the VM", func(t *testing.T) {
		n := 0
		for _, c := range calls {
			if c.Op != "rancher.DeleteMachine" || c.Cluster == "lost" {
				continue
			}
			// Find the node of this Rancher machine from the plans.
			node := ""
			for _, p := range plans {
				for _, cp := range p.Clusters {
					for _, a := range cp.Actions {
						if a.Kind == reconcile.ActionDeleteRancherMachine && a.RancherMachine == c.Args[0] {
							node = a.Machines[0]
						}
					}
				}
			}
			drain := firstCall(calls, "nodes.Drain", c.Cluster, node)
			del := firstCall(calls, ".Delete", c.Cluster, node)
			if drain == 0 || drain > c.Seq {
				t.Errorf("%s: Rancher machine of %s deleted at call %d, drained at %d", c.Cluster, node, c.Seq, drain)
			}
			if del == 0 || del < c.Seq {
				t.Errorf("%s: VM %s deleted at call %d, its Rancher machine at %d", c.Cluster, node, del, c.Seq)
			}
			n++
		}
		if n == 0 {
			t.Fatal("no machine was removed through Rancher")
		}
	})

	t.Run("decommission unbinds and unregisters before deleting machines", func(t *testing.T) {
		unbind := firstCall(calls, "rancher.Unbind", "gone", "")
		unreg := firstCall(calls, "rancher.Unregister", "gone", "")
		del := firstCall(calls, "aws-eu.Delete", "gone", "")
		lastDel := lastCall(calls, "aws-eu.Delete", "gone")
		if !(unbind > 0 && unbind < unreg && unreg < del && del <= lastDel) {
			t.Errorf("unbind %d, unregister %d, first delete %d, last delete %d", unbind, unreg, del, lastDel)
		}
	})

	t.Run("bindings only after registration", func(t *testing.T) {
		reg := firstCall(calls, "rancher.Register", "new", "")
		bind := firstCall(calls, "rancher.Bind", "new", "")
		if !(reg > 0 && bind > reg) {
			t.Errorf("register %d, bind %d", reg, bind)
		}
	})

	t.Run("machines are created with the node command after registration", func(t *testing.T) {
		reg := firstCall(calls, "rancher.Register", "new", "")
		join := firstCall(calls, "rancher.JoinCommand", "new", "")
		create := firstCall(calls, "aws-eu.Create", "new", "")
		if !(reg < join && join < create) {
			t.Errorf("register %d, join command %d, create %d", reg, join, create)
		}
		ud := string(h.w.UserData("new-control-58a24-0"))
		for _, want := range []string{"export CATTLE_ID='new-control-58a24-0'", "--token SECRET-TOKEN-new", "--etcd", "--node-name 'new-control-58a24-0'"} {
			if !strings.Contains(ud, want) {
				t.Errorf("user data lacks %q:\n%s", want, ud)
			}
		}
	})

	t.Run("registration tokens appear in no log, plan or status", func(t *testing.T) {
		for _, c := range []string{"new", "down", "roll", "lost"} {
			tok := h.w.Token(c)
			if tok == "" {
				t.Fatalf("no token for %s", c)
			}
			if strings.Contains(h.logs.String(), tok) {
				t.Errorf("token of %s in the log", c)
			}
			for _, p := range plans {
				if strings.Contains(string(must(p.JSON())), tok) {
					t.Errorf("token of %s in a plan", c)
				}
			}
			for path, b := range h.status {
				if strings.Contains(string(b), tok) {
					t.Errorf("token of %s in %s", c, path)
				}
			}
		}
	})
}

func TestApplyIsolatesClusters(t *testing.T) {
	h := newHarness(t, true)
	h.add(reconciletest.Cluster{Name: "a"})
	h.add(reconciletest.Cluster{Name: "b"})
	h.add(reconciletest.Cluster{Name: "c"})
	p := h.plan()
	boom := errors.New("boom")
	h.w.Inject(reconciletest.FailCluster("b", boom))
	res := h.apply(p)
	if r := res.Cluster("b"); r == nil || !errors.Is(r.Err, boom) || r.Reaction != reconcile.ReactFail {
		t.Fatalf("b: %+v", r)
	}
	for _, c := range []string{"a", "c"} {
		if r := res.Cluster(c); r == nil || r.Err != nil || r.Done != 4 {
			t.Errorf("%s: %+v", c, r)
		}
	}
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), "cluster b: register cluster b: boom") {
		t.Errorf("joined error: %v", err)
	}
	if res.Requeue == 0 {
		t.Error("no requeue while machines boot")
	}
}

func TestApplyReactions(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		react   reconcile.Reaction
		requeue time.Duration
	}{
		{"a wait requeues after its delay", &reconcile.WaitError{Reason: "PodDisruptionBudget blocks eviction", After: 7 * time.Second}, reconcile.ReactRequeue, 7 * time.Second},
		// The loop backs the cluster off; Apply itself neither retries nor
		// asks for a sooner sync than the work in progress does.
		{"a transient error is tried once, and left to the loop's backoff", reconcile.Transient(errors.New("throttled")), reconcile.ReactRetry, 15 * time.Second},
		{"a bad spec stalls", reconcile.Stalled(errors.New("instance type unknown")), reconcile.ReactStall, 15 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, true)
			cl := h.add(reconciletest.Cluster{Name: "a", Pools: reconciletest.Standard(1, 2)})
			h.existing(cl)
			h.fleet.Add(reconciletest.Cluster{Name: "a", Pools: reconciletest.Standard(1, 1)})
			p := h.plan()
			h.world.Nodes.(*reconciletest.Nodes).DrainFunc = func(context.Context, reconcile.ClusterRef, string) error { return c.err }
			res := reconcile.Apply(context.Background(), p, h.world, reconcile.ApplyOptions{})
			r := res.Cluster("a")
			if r.Reaction != c.react || r.Done != 0 {
				t.Fatalf("reaction %v, done %d, err %v", r.Reaction, r.Done, r.Err)
			}
			if res.Requeue != c.requeue {
				t.Errorf("requeue %v, want %v", res.Requeue, c.requeue)
			}
			if got := firstCall(h.w.Calls(), "rancher.DeleteMachine", "a", ""); got != 0 {
				t.Error("the Rancher machine was deleted although its drain did not finish")
			}
			drains := 0
			for _, call := range h.w.Calls() {
				if call.Op == "nodes.Drain" {
					drains++
				}
			}
			if want := map[reconcile.Reaction]int{reconcile.ReactRetry: 1}[c.react]; want > 0 && drains != want {
				t.Errorf("%d drains, want %d", drains, want)
			}
		})
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	h := newHarness(t, true)
	h.add(reconciletest.Cluster{Name: "a"})
	h.dryRun = true
	res := h.sync()
	if res.Applied != nil || len(h.w.Machines()) != 0 || len(h.w.RancherClusters()) != 0 {
		t.Fatal("dry run changed the world")
	}
	h.dryRun = false
	again := h.plan()
	if got, want := string(must(again.JSON())), string(must(res.Plan.JSON())); got != want {
		t.Error("dry run changed the plan")
	}
	if !res.Plan.InProgress() {
		t.Error("a dry run's plan with pending work is not in progress (the loop syncs again soon only then)")
	}
}
