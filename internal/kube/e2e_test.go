package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/fleetd/fleetd/internal/fleetsync"
	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// callIndex returns the position of the first call that starts with prefix
// and mentions what, or -1.
func callIndex(calls []string, prefix, what string) int {
	for i, c := range calls {
		if strings.HasPrefix(c, prefix) && strings.Contains(c, what) {
			return i
		}
	}
	return -1
}

// checkRemovalOrder asserts, for each removed machine, drain → delete its
// Rancher Machine → delete its VM in the call log.
func checkRemovalOrder(t *testing.T, calls []string, removed []string, drained bool) {
	t.Helper()
	for _, m := range removed {
		d := callIndex(calls, "drain ", m)
		rm := callIndex(calls, "delete-rancher-machine ", reconcile.RancherMachineName(m))
		vm := callIndex(calls, "delete-vm ", m)
		if rm < 0 || vm < 0 || rm > vm || (drained && (d < 0 || d > rm)) {
			t.Errorf("%s removed out of order (drain %d, delete Rancher machine %d, delete VM %d) in\n%s", m, d, rm, vm, strings.Join(calls, "\n"))
		}
	}
}

// checkSteps asserts status showed each removed machine going through the
// removal steps in order (a sync may finish more than one step), ending with
// Deleting.
func checkSteps(t *testing.T, e *e2e, removed []string) {
	t.Helper()
	order := []string{reconcile.StepDraining, reconcile.StepRemoving, reconcile.StepDeleting}
	for _, m := range removed {
		steps := e.steps[m]
		last := -1
		for _, s := range steps {
			i := slices.Index(order, s)
			if i <= last {
				t.Errorf("%s: status showed steps %v, out of order", m, steps)
			}
			last = i
		}
		if len(steps) < 2 || steps[len(steps)-1] != reconcile.StepDeleting {
			t.Errorf("%s: status showed steps %v, want them ending Removing, Deleting", m, steps)
		}
	}
}

func gone(before, after []string) []string {
	var out []string
	for _, b := range before {
		if !slices.Contains(after, b) {
			out = append(out, b)
		}
	}
	return out
}

// TestEndToEndRegisterScaleDecommission registers a cluster with its
// machines, scales its workers 3 → 1 through drain, Rancher machine deletion
// and VM deletion, then decommissions it: Rancher cluster first, VMs after.
func TestEndToEndRegisterScaleDecommission(t *testing.T) {
	e := newE2E(t, "e2e-scale")
	e.add(reconciletest.Cluster{Name: "e2e-a", Team: "payments", Pools: reconciletest.Standard(1, 3)})
	n := e.converge(15)
	t.Logf("registered with 4 machines in %d syncs", n)
	e.checkSettled("e2e-a", 1, 4)
	id := e.clusterID("e2e-a")
	if !strings.Contains(string(e.status["status/payments/e2e-a.yaml"]), id) {
		t.Errorf("status does not name the Rancher cluster %s:\n%s", id, e.status["status/payments/e2e-a.yaml"])
	}

	before := e.vmNames("e2e-a")
	e.add(reconciletest.Cluster{Name: "e2e-a", Team: "payments", Pools: reconciletest.Standard(1, 1)})
	e.plans = nil
	n = e.converge(20)
	removed := gone(before, e.vmNames("e2e-a"))
	t.Logf("scaled 3 → 1 in %d syncs, removed %v", n, removed)
	if len(removed) != 2 {
		t.Fatalf("removed %v, want 2 workers", removed)
	}
	checkRemovalOrder(t, e.rec.calls(), removed, true)
	checkSteps(t, e, removed)
	e.checkSettled("e2e-a", 1, 2)
	// The plans show the steps in order: drain, delete Rancher machine, delete VM.
	steps := strings.Join(e.plans, "\n")
	for _, step := range []string{"drain", "delete rancher machine", "delete"} {
		if !strings.Contains(strings.ToLower(steps), step) {
			t.Errorf("no plan shows the step %q:\n%s", step, steps)
		}
	}

	// Rancher v2.15.0 holds a deleted provisioning Cluster with this
	// finalizer until the cluster's Cluster API objects are gone: fleetd
	// waits for the Cluster itself to be gone before deleting VMs (the
	// recorder checks that at each VM deletion).
	dyn, err := dynamic.NewForConfig(shared.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := dyn.Resource(rancher.ProvisioningClusterGVR).Namespace("fleet-default").Get(e.ctx, "e2e-a", metav1.GetOptions{})
	if err != nil || !slices.Contains(pc.GetFinalizers(), "auth.cattle.io/capi-resources-cleanup") {
		t.Errorf("provisioning cluster finalizers %v (%v), want Rancher's capi-resources-cleanup", pc.GetFinalizers(), err)
	}
	e.fleet.Remove("e2e-a")
	e.rec.reset()
	n = e.converge(20)
	t.Logf("decommissioned in %d syncs: %v", n, e.rec.calls())
	un := callIndex(e.rec.calls(), "unregister ", "e2e-a")
	firstVM := callIndex(e.rec.calls(), "delete-vm ", "e2e-a")
	if un < 0 || firstVM < 0 || un > firstVM {
		t.Errorf("decommission order: unregister %d, first VM deletion %d", un, firstVM)
	}
	if vms := e.vmNames("e2e-a"); len(vms) != 0 {
		t.Errorf("VMs left after decommission: %v", vms)
	}
	if ms := e.rancherMachines("e2e-a"); len(ms) != 0 {
		t.Errorf("Rancher machines left after decommission: %v", ms)
	}
	if len(e.rec.violations) > 0 {
		t.Errorf("violations: %v", e.rec.violations)
	}
	// The tokens never reach logs, status or plans.
	for _, secret := range []string{e.rs.Token, e.rs.RegistrationToken(id)} {
		if secret == "" {
			t.Fatal("no token to look for")
		}
		if strings.Contains(e.logs.String(), secret) || strings.Contains(strings.Join(e.plans, ""), secret) {
			t.Error("a token is in the logs or a plan")
		}
		for p, b := range e.status {
			if strings.Contains(string(b), secret) {
				t.Errorf("a token is in %s", p)
			}
		}
	}
}

// TestEndToEndReplaceEtcd replaces all three etcd machines of a cluster
// (a new Kubernetes version): one at a time, a new member ready before an
// old one goes, never fewer ready members than a quorum, no stale member.
func TestEndToEndReplaceEtcd(t *testing.T) {
	e := newE2E(t, "e2e-etcd")
	e.add(reconciletest.Cluster{Name: "e2e-etcd", Team: "payments", Pools: reconciletest.Standard(3, 1)})
	e.converge(15)
	e.checkSettled("e2e-etcd", 3, 4)
	id := e.clusterID("e2e-etcd")
	before := e.vmNames("e2e-etcd")
	e.rs.ResetQuorumWatch(id)

	e.add(reconciletest.Cluster{Name: "e2e-etcd", Team: "payments", Pools: reconciletest.Standard(3, 1), KubernetesVersion: "v1.32.1+rke2r1"})
	e.rec.reset()
	n := e.converge(60)
	after := e.vmNames("e2e-etcd")
	removed := gone(before, after)
	t.Logf("replaced in %d syncs: removed %v, now %v", n, removed, after)
	if len(removed) != 4 {
		t.Errorf("removed %v, want all 4 machines replaced", removed)
	}
	checkRemovalOrder(t, e.rec.calls(), removed, true)
	checkSteps(t, e, removed)
	e.checkSettled("e2e-etcd", 3, 4)
	if w := e.rs.FewestReadyMembers(id); w < 2 {
		t.Errorf("at one point only %d etcd members were ready, fewer than a quorum of 3", w)
	}
}

// TestEndToEndPDBBlocks scales down a pool whose pods a PodDisruptionBudget
// protects: the machine stays in the drain step, status names the budget,
// nothing is deleted; once the budget goes, the removal finishes.
func TestEndToEndPDBBlocks(t *testing.T) {
	e := newE2E(t, "e2e-pdb")
	e.add(reconciletest.Cluster{Name: "e2e-pdb", Team: "payments", Pools: reconciletest.Standard(1, 2)})
	e.converge(15)
	workers := []string{}
	for _, vm := range e.vmNames("e2e-pdb") {
		if strings.Contains(vm, "-workers-") {
			workers = append(workers, vm)
		}
	}
	for i, w := range workers {
		pod(t, "e2e-pdb-apps", fmt.Sprintf("db-%d", i), w, map[string]string{"app": "db"}, false)
	}
	budget(t, "e2e-pdb-apps", "db-quorum", 2, map[string]string{"app": "db"})
	time.Sleep(300 * time.Millisecond)

	e.add(reconciletest.Cluster{Name: "e2e-pdb", Team: "payments", Pools: reconciletest.Standard(1, 1)})
	e.rec.reset()
	var last *fleetsync.Result
	for range 4 {
		last = e.sync()
	}
	st := string(e.status["status/payments/e2e-pdb.yaml"])
	if !strings.Contains(st, "PodDisruptionBudget e2e-pdb-apps/db-quorum") {
		t.Errorf("status does not name the blocking budget:\n%s\nerr: %v", st, last.Err)
	}
	draining := 0
	for _, w := range workers {
		if steps := e.steps[w]; len(steps) > 0 && steps[len(steps)-1] == reconcile.StepDraining {
			draining++
		}
	}
	if draining != 1 {
		t.Errorf("status shows %d machines Draining, want the one being removed: %v", draining, e.steps)
	}
	if callIndex(e.rec.calls(), "delete-rancher-machine", "") >= 0 || callIndex(e.rec.calls(), "delete-vm", "") >= 0 {
		t.Errorf("something was deleted while the drain was blocked: %v", e.rec.calls())
	}
	if len(e.vmNames("e2e-pdb")) != 3 || len(e.rancherMachines("e2e-pdb")) != 3 {
		t.Error("a machine is gone while its drain is blocked")
	}
	deleteBudget(t, "e2e-pdb-apps", "db-quorum")
	e.converge(20)
	e.checkSettled("e2e-pdb", 1, 2)
}

// TestEndToEndVMDeletedOutOfBand deletes a worker's VM behind fleetd's back:
// its Rancher machine is deleted with drain excluded, and it is replaced.
func TestEndToEndVMDeletedOutOfBand(t *testing.T) {
	e := newE2E(t, "e2e-oob")
	e.add(reconciletest.Cluster{Name: "e2e-oob", Team: "payments", Pools: reconciletest.Standard(1, 2)})
	e.converge(15)
	var victim string
	for _, vm := range e.vmNames("e2e-oob") {
		if strings.Contains(vm, "-workers-") {
			victim = vm
			break
		}
	}
	destroyVM(t, e, victim)
	e.settle()
	e.rec.reset()
	e.converge(20)
	if i := callIndex(e.rec.calls(), "delete-rancher-machine "+reconcile.RancherMachineName(victim), "excludeDrain=true"); i < 0 {
		t.Errorf("the vanished VM's Rancher machine was not deleted with drain excluded: %v", e.rec.calls())
	}
	if i := callIndex(e.rec.calls(), "drain ", victim); i >= 0 {
		t.Errorf("fleetd drained the node of a vanished VM: %v", e.rec.calls())
	}
	if slices.Contains(e.vmNames("e2e-oob"), victim) {
		t.Error("the victim is back")
	}
	e.checkSettled("e2e-oob", 1, 3)
}

// TestEndToEndCrashDuringRemoval kills fleetd between every two steps of a
// worker's removal (and with the reply of each step lost), restarts it, and
// checks the restart finishes the removal with no orphan and no stale member.
func TestEndToEndCrashDuringRemoval(t *testing.T) {
	e := newE2E(t, "e2e-crash")
	up := reconciletest.Cluster{Name: "e2e-crash", Team: "payments", Pools: reconciletest.Standard(1, 2)}
	down := reconciletest.Cluster{Name: "e2e-crash", Team: "payments", Pools: reconciletest.Standard(1, 1)}
	e.add(up)
	e.converge(15)

	// Baseline: how many changing calls a removal takes.
	e.add(down)
	e.rec.reset()
	e.converge(20)
	steps := len(e.rec.calls())
	t.Logf("a removal takes %d changing calls: %v", steps, e.rec.calls())
	if steps < 3 {
		t.Fatalf("a removal of %d calls: drain, delete Rancher machine and delete VM expected", steps)
	}
	runs := 0
	for k := 0; k < steps; k++ {
		for _, lost := range []bool{false, true} {
			label := fmt.Sprintf("crash after call %d (lost reply %t)", k, lost)
			e.add(up)
			e.converge(15)
			e.add(down)
			e.rec.reset()
			e.rec.crashAfter(k, lost)
			for i := 0; i < 10 && !e.rec.isCrashed(); i++ {
				e.sync()
			}
			if !e.rec.isCrashed() {
				t.Fatalf("%s: never crashed", label)
			}
			e.rec.restarted()
			e.restart()
			e.converge(20)
			e.checkSettled("e2e-crash", 1, 2)
			if t.Failed() {
				t.Fatalf("%s: %v", label, e.rec.calls())
			}
			runs++
		}
	}
	t.Logf("%d crash points converged with no orphan and no stale member", runs)
}

func destroyVM(t *testing.T, e *e2e, name string) {
	t.Helper()
	ctx := context.Background()
	v, err := view.NewManager(e.vim).CreateContainerView(ctx, e.vim.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Destroy(ctx) }()
	refs, err := v.Find(ctx, []string{"VirtualMachine"}, property.Match{"name": name})
	if err != nil || len(refs) != 1 {
		t.Fatalf("find VM %s: %v (%d found)", name, err, len(refs))
	}
	vm := object.NewVirtualMachine(e.vim, refs[0])
	if task, err := vm.PowerOff(ctx); err == nil {
		_ = task.Wait(ctx)
	}
	task, err := vm.Destroy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestEndToEndRemoveBeforeJoin removes a machine whose agent registered but
// whose node has not joined: Rancher v2.15.0 gives such a Machine no
// finalizer, phase or nodeRef, so deleting it is immediate. fleetd deletes
// it, and only then the VM, and the cluster settles.
func TestEndToEndRemoveBeforeJoin(t *testing.T) {
	e := newE2E(t, "e2e-early")
	e.add(reconciletest.Cluster{Name: "e2e-early", Team: "payments", Pools: reconciletest.Standard(1, 1)})
	e.converge(15)

	e.add(reconciletest.Cluster{Name: "e2e-early", Team: "payments", Pools: reconciletest.Standard(1, 2)})
	var spec *schema.EffectiveCluster
	for i := range e.fleet.F.Clusters {
		if c := e.fleet.F.Clusters[i]; c.Effective.Name == "e2e-early" {
			spec = &c.Effective
		}
	}
	pool := &spec.Pools[1]
	early := reconcile.MachineName("e2e-early", pool.Name, reconcile.NewTemplate(spec, pool).Hash, 1)
	e.rs.HoldJoin(early)
	t.Cleanup(func() { e.rs.ReleaseJoin(early) })
	dyn, err := dynamic.NewForConfig(shared.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	mri := dyn.Resource(rancher.MachineGVR("v1beta2")).Namespace("fleet-default")
	for i := 0; ; i++ {
		if i == 10 {
			t.Fatalf("%s never registered; plans:\n%s", early, strings.Join(e.plans, "\n"))
		}
		e.sync()
		if slices.Contains(e.rancherMachines("e2e-early"), early) {
			break
		}
	}
	m, err := mri.Get(e.ctx, reconcile.RancherMachineName(early), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if phase, _, _ := unstructured.NestedString(m.Object, "status", "phase"); len(m.GetFinalizers()) > 0 || phase != "" {
		t.Fatalf("a registered machine whose node has not joined has finalizers %v and phase %q, want none", m.GetFinalizers(), phase)
	}

	e.add(reconciletest.Cluster{Name: "e2e-early", Team: "payments", Pools: reconciletest.Standard(1, 1)})
	e.rec.reset()
	e.plans = nil
	e.converge(20)
	checkRemovalOrder(t, e.rec.calls(), []string{early}, false)
	if slices.Contains(e.vmNames("e2e-early"), early) {
		t.Errorf("%s's VM is left", early)
	}
	for _, p := range e.plans {
		if strings.Contains(p, early+" is starting") {
			t.Errorf("a plan says the machine it removes is starting:\n%s", p)
		}
	}
	e.checkSettled("e2e-early", 1, 2)
}
