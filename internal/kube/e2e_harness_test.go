package kube

import (
	"bytes"
	"context"
	"errors"
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
	"github.com/fleetd/fleetd/internal/rancherstandin"
	"github.com/fleetd/fleetd/internal/vcsimserver"
	"github.com/fleetd/fleetd/providers/vsphere"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// errCrashed is what every call returns after a simulated crash of fleetd.
var errCrashed = errors.New("e2e: fleetd crashed")

// recorder logs every call the reconciler makes to the real Registry, Nodes
// and vSphere provider, checks the removal order at each VM deletion, and can
// crash the process after k changing calls (with or without a lost reply).
type recorder struct {
	mu         sync.Mutex
	calls      []string
	changes    int
	crashAfter int // -1: never
	lostReply  bool
	crashed    bool
	violations []string
}

// gate is called before a changing call: it returns whether to run the call
// and the error to return after it (a crash, or a lost reply).
func (r *recorder) gate(op string) (run bool, after error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.crashed {
		return false, errCrashed
	}
	r.calls = append(r.calls, op)
	r.changes++
	if r.crashAfter >= 0 && r.changes > r.crashAfter {
		r.crashed = true
		if r.lostReply {
			return true, errCrashed
		}
		r.calls[len(r.calls)-1] += " (crashed before)"
		return false, errCrashed
	}
	return true, nil
}

func (r *recorder) read() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.crashed {
		return errCrashed
	}
	return nil
}

func (r *recorder) violate(format string, args ...any) {
	r.mu.Lock()
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

type recRegistry struct {
	reconcile.Registry
	r *recorder
}

func (g recRegistry) Clusters(ctx context.Context) ([]reconcile.RancherCluster, error) {
	if err := g.r.read(); err != nil {
		return nil, err
	}
	return g.Registry.Clusters(ctx)
}

func (g recRegistry) Machines(ctx context.Context, c string) ([]reconcile.RancherMachine, error) {
	if err := g.r.read(); err != nil {
		return nil, err
	}
	return g.Registry.Machines(ctx, c)
}

func (g recRegistry) JoinCommand(ctx context.Context, c string, roles []string) (string, error) {
	if err := g.r.read(); err != nil {
		return "", err
	}
	return g.Registry.JoinCommand(ctx, c, roles)
}

func (g recRegistry) Register(ctx context.Context, s reconcile.RegisterSpec) (reconcile.RancherCluster, error) {
	run, after := g.r.gate("register " + s.Name)
	if !run {
		return reconcile.RancherCluster{}, after
	}
	rc, err := g.Registry.Register(ctx, s)
	return rc, errors.Join(err, after)
}

func (g recRegistry) Bind(ctx context.Context, c string, b reconcile.Binding) error {
	run, after := g.r.gate("bind " + c + " " + b.PrincipalID + " " + b.Role)
	if !run {
		return after
	}
	return errors.Join(g.Registry.Bind(ctx, c, b), after)
}

func (g recRegistry) Unbind(ctx context.Context, c string, b reconcile.Binding) error {
	run, after := g.r.gate("unbind " + c + " " + b.PrincipalID + " " + b.Role)
	if !run {
		return after
	}
	return errors.Join(g.Registry.Unbind(ctx, c, b), after)
}

func (g recRegistry) DeleteMachine(ctx context.Context, c, m string, excludeDrain bool) error {
	run, after := g.r.gate(fmt.Sprintf("delete-rancher-machine %s excludeDrain=%t", m, excludeDrain))
	if !run {
		return after
	}
	return errors.Join(g.Registry.DeleteMachine(ctx, c, m, excludeDrain), after)
}

func (g recRegistry) Unregister(ctx context.Context, c string) error {
	run, after := g.r.gate("unregister " + c)
	if !run {
		return after
	}
	return errors.Join(g.Registry.Unregister(ctx, c), after)
}

type recNodes struct {
	reconcile.Nodes
	r *recorder
}

func (g recNodes) Ready(ctx context.Context, c reconcile.ClusterRef) (map[string]bool, error) {
	if err := g.r.read(); err != nil {
		return nil, err
	}
	return g.Nodes.Ready(ctx, c)
}

func (g recNodes) Drain(ctx context.Context, c reconcile.ClusterRef, node string) error {
	run, after := g.r.gate("drain " + node)
	if !run {
		return after
	}
	return errors.Join(g.Nodes.Drain(ctx, c, node), after)
}

// recProvider checks, at every VM deletion, that the VM's Rancher Machine is
// gone (404) and its cluster is not being deleted in Rancher.
type recProvider struct {
	reconcile.Provider
	r   *recorder
	dyn dynamic.Interface
}

func (g recProvider) List(ctx context.Context) ([]reconcile.Machine, error) {
	if err := g.r.read(); err != nil {
		return nil, err
	}
	return g.Provider.List(ctx)
}

func (g recProvider) Create(ctx context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	run, after := g.r.gate("create-vm " + strings.Join(names, ","))
	if !run {
		return nil, after
	}
	ms, err := g.Provider.Create(ctx, specs)
	return ms, errors.Join(err, after)
}

func (g recProvider) Delete(ctx context.Context, ids []string) error {
	ms, err := g.Provider.List(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, m := range ms {
		if !slices.Contains(ids, m.ID) {
			continue
		}
		names = append(names, m.Name)
		_, err := g.dyn.Resource(rancher.MachineGVR("v1beta2")).Namespace("fleet-default").Get(ctx, reconcile.RancherMachineName(m.Name), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			g.r.violate("VM %s deleted while its Rancher Machine exists (get: %v)", m.Name, err)
		}
		pc, err := g.dyn.Resource(rancher.ProvisioningClusterGVR).Namespace("fleet-default").Get(ctx, m.Cluster, metav1.GetOptions{})
		if err == nil && pc.GetDeletionTimestamp() != nil {
			g.r.violate("VM %s deleted while its cluster %s is being deleted in Rancher", m.Name, m.Cluster)
		}
	}
	run, after := g.r.gate("delete-vm " + strings.Join(names, ","))
	if !run {
		return after
	}
	return errors.Join(g.Provider.Delete(ctx, ids), after)
}

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
		e.rec = &recorder{crashAfter: -1}
	}
	e.world = reconcile.World{
		Providers: map[string]reconcile.Provider{"dc1": recProvider{Provider: prov, r: e.rec, dyn: dyn}},
		Registry:  recRegistry{Registry: reg, r: e.rec},
		Nodes:     recNodes{Nodes: nodes, r: e.rec},
	}
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
	if err := s.r.read(); err != nil {
		return "", false, err
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
