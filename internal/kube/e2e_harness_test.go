package kube

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/vmware/govmomi/vim25"

	"github.com/fleetd/fleetd/internal/fleetsync"
	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/internal/testenv/rancherstandin"
	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/providers/vsphere"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// recorder puts reconciletest's fault layer (Faulty) in front of the real
// Registry, Nodes and vSphere provider: it logs every call, checks the
// removal order at each VM deletion, and can crash fleetd after k changing
// calls (with or without a lost reply).
type recorder struct {
	f   *reconciletest.Faulty
	ctx context.Context
	// prov is the provider itself, and dyn the apiserver, for the checks.
	prov reconcile.Provider
	dyn  dynamic.Interface

	mu         sync.Mutex
	names      map[string]string // VM names by ID, seen at deletions
	crashed    bool
	violations []string
}

func newRecorder(ctx context.Context) *recorder {
	r := &recorder{f: &reconciletest.Faulty{}, ctx: ctx, names: map[string]string{}}
	r.f.Inject(r.check)
	return r
}

// check is a fault that fails nothing: at every VM deletion it checks that
// the VM's Rancher Machine is gone (404) and its cluster is not being
// deleted in Rancher, and it remembers the VMs' names.
func (r *recorder) check(c reconciletest.Call) error {
	if c.Op != "dc1.Delete" {
		return nil
	}
	ms, err := r.prov.List(r.ctx)
	if err != nil {
		r.violate("cannot list the VMs to check a deletion: %v", err)
		return nil
	}
	for _, m := range ms {
		if !slices.Contains(c.Args, m.ID) {
			continue
		}
		r.mu.Lock()
		r.names[m.ID] = m.Name
		r.mu.Unlock()
		_, err := r.dyn.Resource(rancher.MachineGVR("v1beta2")).Namespace("fleet-default").Get(r.ctx, reconcile.RancherMachineName(m.Name), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			r.violate("VM %s deleted while its Rancher Machine exists (get: %v)", m.Name, err)
		}
		pc, err := r.dyn.Resource(rancher.ProvisioningClusterGVR).Namespace("fleet-default").Get(r.ctx, m.Cluster, metav1.GetOptions{})
		if err == nil && pc.GetDeletionTimestamp() != nil {
			r.violate("VM %s deleted while its cluster %s is being deleted in Rancher", m.Name, m.Cluster)
		}
	}
	return nil
}

func (r *recorder) violate(format string, args ...any) {
	r.mu.Lock()
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// crashAfter crashes fleetd after its next k changing calls: every later
// call fails, and no status is written.
func (r *recorder) crashAfter(k int, lostReply bool) {
	crash := reconciletest.CrashAfterChanges(k, lostReply)
	r.f.Inject(func(c reconciletest.Call) error {
		err := crash(c)
		if err != nil {
			r.mu.Lock()
			r.crashed = true
			r.mu.Unlock()
		}
		return err
	})
}

// restarted ends the crash: the faults are the checks alone again.
func (r *recorder) restarted() {
	r.f.ClearFaults()
	r.f.Inject(r.check)
	r.mu.Lock()
	r.crashed = false
	r.mu.Unlock()
}

func (r *recorder) isCrashed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.crashed
}

// calls lists the changing calls since the last reset, as
// "drain <node>", "delete-rancher-machine <machine> excludeDrain=<bool>",
// "delete-vm <names>", "unregister <cluster>", and so on.
func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.f.Calls() {
		if !c.Changes {
			continue
		}
		var s string
		switch c.Op {
		case "nodes.Drain":
			s = "drain " + strings.Join(c.Args, " ")
		case "rancher.DeleteMachine":
			m, exclude := strings.CutSuffix(c.Args[0], " excludeDrain")
			s = fmt.Sprintf("delete-rancher-machine %s excludeDrain=%t", m, exclude)
		case "dc1.Delete":
			var names []string
			for _, id := range c.Args {
				names = append(names, cmp.Or(r.names[id], id))
			}
			s = "delete-vm " + strings.Join(names, ",")
		case "dc1.Create":
			s = "create-vm " + strings.Join(c.Args, ",")
		default:
			s = strings.ToLower(strings.TrimPrefix(c.Op, "rancher.")) + " " + strings.Join(append([]string{c.Cluster}, c.Args...), " ")
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// reset empties the call log.
func (r *recorder) reset() { r.f.ResetCalls() }

// e2e runs fleetd's sync loop (internal/fleetsync, as `fleetd run` does)
// on a fleet repo in a real git repository against the real apiserver with
// the Rancher stand-in and the vCenter simulator.
type e2e struct {
	t      *testing.T
	ctx    context.Context
	rs     *rancherstandin.Rancher
	vc     *vcsimserver.Server
	vim    *vim25.Client
	caFile string
	fleet  *reconciletest.Fleet
	// remote is the fleet repo (a git work tree the loop clones), work the
	// loop's kept clone, committed the files of the last fleet commit.
	remote, work string
	committed    map[string][]byte
	rec          *recorder
	world        reconcile.World
	loop         *fleetsync.Loop
	closers      []func()
	logs         *bytes.Buffer
	// status is the last status rendered; plans the plans, one per sync.
	status map[string][]byte
	plans  []string
	// steps are the removal steps status showed for each machine, in order.
	steps map[string][]string
}

func newE2E(t *testing.T, fleetName string) *e2e {
	rs := needRancher(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed")
	}
	ctx := context.Background()
	vc, err := vcsimserver.Start(ctx, vcsimserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Close)
	vim, err := vc.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "vcenter-ca.pem")
	if err := vc.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLEETD_TEST_VSPHERE", "fleetd:not-a-real-password")
	t.Setenv("FLEETD_TEST_RANCHER_TOKEN", rs.Token)
	f := reconciletest.NewFleet(true)
	f.F.Spec.Name = fleetName
	f.F.Spec.Rancher.URL = rs.URL
	f.F.Spec.Rancher.Token = "env:FLEETD_TEST_RANCHER_TOKEN"
	// Only the vSphere provider: every cluster of these tests lives there.
	f.F.Spec.Providers = slices.DeleteFunc(f.F.Spec.Providers, func(p schema.Provider) bool { return p.Name != "dc1" })
	spec := vc.Spec("fleetd", "env:FLEETD_TEST_VSPHERE", caFile)
	f.F.Spec.Providers[0].VSphere = &spec
	e := &e2e{t: t, ctx: ctx, rs: rs, vc: vc, vim: vim, caFile: caFile, fleet: f,
		remote: t.TempDir(), work: t.TempDir(), logs: &bytes.Buffer{}}
	e.git("init", "-q", "-b", "main")
	e.restart()
	t.Cleanup(func() {
		for _, c := range e.closers {
			c()
		}
	})
	return e
}

func (e *e2e) git(args ...string) string {
	e.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", e.remote, "-c", "user.name=Team", "-c", "user.email=team@example.com"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit makes the fleet repo hold the test fleet, as a team's merge would:
// one commit when the files changed. A commit that removes clusters is
// followed by the one a person makes to confirm the removal
// (policy.confirmPrune naming it), as the prune guard asks.
func (e *e2e) commit() {
	e.t.Helper()
	files, err := e.fleet.Files()
	if err != nil {
		e.t.Fatal(err)
	}
	if maps.EqualFunc(files, e.committed, bytes.Equal) {
		return
	}
	removed := false
	for p := range e.committed {
		if _, ok := files[p]; !ok && p != schema.FleetFile {
			removed = true
		}
	}
	write := func(files map[string][]byte) {
		if err := os.RemoveAll(filepath.Join(e.remote, schema.ClustersDir)); err != nil {
			e.t.Fatal(err)
		}
		for p, b := range files {
			full := filepath.Join(e.remote, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				e.t.Fatal(err)
			}
			if err := os.WriteFile(full, b, 0o644); err != nil {
				e.t.Fatal(err)
			}
		}
		e.git("add", "-A")
		e.git("commit", "-q", "--allow-empty", "-m", "fleet change")
	}
	write(files)
	if removed {
		e.fleet.F.Spec.Policy.ConfirmPrune = e.git("rev-parse", "HEAD")
		if files, err = e.fleet.Files(); err != nil {
			e.t.Fatal(err)
		}
		write(files)
	}
	e.committed = files
}

// restart builds a fresh Registry, Nodes and provider and a new loop on the
// kept clone, as a restarted fleetd would: nothing is carried over but what
// the world and the repositories hold.
func (e *e2e) restart() {
	e.t.Helper()
	for _, c := range e.closers {
		c()
	}
	e.closers = nil
	f := e.fleet.F
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, err := rancher.New(e.ctx, rancher.Config{Fleet: f.Spec.Name, Spec: *f.Spec.Rancher, Logger: log, CAData: e.rs.CAPEM})
	if err != nil {
		e.t.Fatal(err)
	}
	nodes, err := New(e.ctx, Config{Spec: *f.Spec.Rancher, Logger: log, CAData: e.rs.CAPEM})
	if err != nil {
		e.t.Fatal(err)
	}
	var spec = *f.Spec.Providers[0].VSphere
	prov, err := vsphere.New(e.ctx, vsphere.Config{Fleet: f.Spec.Name, Name: "dc1", Spec: spec, Logger: log})
	if err != nil {
		e.t.Fatal(err)
	}
	e.closers = append(e.closers, func() { _ = prov.Close(context.Background()) })
	dyn, err := dynamic.NewForConfig(shared.Env.Config)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.rec == nil {
		e.rec = newRecorder(e.ctx)
	}
	e.rec.prov, e.rec.dyn = prov, dyn
	e.world = e.rec.f.Wrap(reconcile.World{
		Providers: map[string]reconcile.Provider{"dc1": prov},
		Registry:  reg,
		Nodes:     nodes,
	})
	src := &fleetsync.RepoSource{Options: fgit.Options{URL: e.remote, Branch: "main", Dir: e.work, Logger: log}}
	e.closers = append(e.closers, func() { _ = src.Close() })
	e.loop = &fleetsync.Loop{
		Source: crashSource{Source: src, r: e.rec},
		World: func(context.Context, *schema.Fleet, *slog.Logger) (reconcile.World, func(context.Context), error) {
			return e.world, func(context.Context) {}, nil
		},
		Logger: log,
	}
}

// crashSource is the fleet repo as a crashed fleetd sees it: no status is
// written after the crash.
type crashSource struct {
	fleetsync.Source
	r *recorder
}

func (s crashSource) WriteStatus(ctx context.Context, f *schema.Fleet, files map[string][]byte, msg fgit.Message) (string, bool, error) {
	if s.r.isCrashed() {
		return "", false, reconciletest.ErrCrashed
	}
	return s.Source.WriteStatus(ctx, f, files, msg)
}

func (e *e2e) add(c reconciletest.Cluster) {
	c.Provider = "dc1"
	e.fleet.Add(c)
}

// sync commits the fleet when it changed, runs one sync of the loop, then
// lets the world move: the agents of new VMs register, nodes of vanished
// VMs go NotReady, and the stand-in's controllers run.
func (e *e2e) sync() *fleetsync.Result {
	e.t.Helper()
	e.commit()
	res := e.loop.Sync(e.ctx)
	if res.Snapshot == nil || !res.Loaded {
		e.t.Fatalf("the fleet repo did not load: %v %v", res.Err, res.Diagnostics)
	}
	if res.Status != nil {
		e.status = res.Status
	}
	if e.steps == nil {
		e.steps = map[string][]string{}
	}
	for _, c := range res.Statuses {
		for _, p := range c.Pools {
			for _, m := range p.Machines {
				if seen := e.steps[m.Name]; m.Step != "" && (len(seen) == 0 || seen[len(seen)-1] != m.Step) {
					e.steps[m.Name] = append(seen, m.Step)
				}
			}
		}
	}
	var b strings.Builder
	_ = res.Plan.WriteText(&b)
	e.plans = append(e.plans, b.String())
	e.settle()
	return res
}

func (e *e2e) settle() {
	e.t.Helper()
	vms, err := rancherstandin.VSphereVMs(e.ctx, e.vim)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.rs.SyncAgents(e.ctx, vms); err != nil {
		e.t.Fatal(err)
	}
	for range 3 {
		_ = e.rs.Step(e.ctx)
	}
}

// converge syncs until nothing is left to do and returns the number of syncs.
func (e *e2e) converge(max int) int {
	e.t.Helper()
	for i := 1; i <= max; i++ {
		res := e.sync()
		if res.Plan.Converged() && res.Err == nil {
			return i
		}
		if i == max {
			e.t.Fatalf("not converged after %d syncs; last plan:\n%s\nerr: %v\nviolations: %v", max, e.plans[len(e.plans)-1], res.Err, e.rec.violations)
		}
	}
	return max
}

// vmNames returns the names of the fleet's VMs in the simulator.
func (e *e2e) vmNames(cluster string) []string {
	e.t.Helper()
	vms, err := rancherstandin.VSphereVMs(e.ctx, e.vim)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, vm := range vms {
		if strings.HasPrefix(vm.Name, cluster+"-") {
			out = append(out, vm.Name)
		}
	}
	return out
}

// rancherMachines returns the cluster's Machines in the apiserver, by node.
func (e *e2e) rancherMachines(cluster string) []string {
	e.t.Helper()
	dyn, _ := dynamic.NewForConfig(shared.Env.Config)
	l, err := dyn.Resource(rancher.MachineGVR("v1beta2")).Namespace("fleet-default").List(e.ctx, metav1.ListOptions{LabelSelector: rancher.LabelCAPICluster + "=" + cluster})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, m := range l.Items {
		out = append(out, m.GetLabels()["rke.cattle.io/node-name"])
	}
	slices.Sort(out)
	return out
}

// clusterID returns the cluster's management ID from the apiserver.
func (e *e2e) clusterID(cluster string) string {
	dyn, _ := dynamic.NewForConfig(shared.Env.Config)
	u, err := dyn.Resource(rancher.ProvisioningClusterGVR).Namespace("fleet-default").Get(e.ctx, cluster, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	id, _, _ := unstructuredString(u.Object, "status", "clusterName")
	return id
}

// checkSettled asserts the world holds exactly the cluster's machines: a VM,
// a Rancher Machine and a ready node each, the etcd members those of the
// etcd pool, and no violation was seen.
func (e *e2e) checkSettled(cluster string, etcd int, total int) {
	e.t.Helper()
	vms := e.vmNames(cluster)
	machines := e.rancherMachines(cluster)
	slices.Sort(vms)
	if len(vms) != total || !slices.Equal(vms, machines) {
		e.t.Errorf("%s: VMs %v, Rancher machines %v, want %d of each, the same", cluster, vms, machines, total)
	}
	members := e.rs.Members(e.clusterID(cluster))
	slices.Sort(members)
	if len(members) != etcd {
		e.t.Errorf("%s: etcd members %v, want %d", cluster, members, etcd)
	}
	for _, m := range members {
		if !slices.Contains(vms, m) {
			e.t.Errorf("%s: stale etcd member %s (no VM)", cluster, m)
		}
	}
	if len(e.rec.violations) > 0 {
		e.t.Errorf("order violations: %v", e.rec.violations)
	}
	id := e.clusterID(cluster)
	for _, ev := range e.rs.Events() {
		if ev.Kind == "quorum-lost" && ev.Cluster == id {
			e.t.Errorf("etcd quorum lost: %v", ev)
		}
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[f]
	}
	s, ok := cur.(string)
	return s, ok, nil
}
