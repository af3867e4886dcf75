package reconciletest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/fleetd/fleetd/reconcile"
)

// ErrCrashed is returned by every call after a simulated crash.
var ErrCrashed = errors.New("reconciletest: fleetd crashed")

// Call is one call to a world's provider, Rancher or nodes, as Faulty logs
// it.
type Call struct {
	// Seq numbers calls from 1 in the order they started.
	Seq int
	// Op is "<provider>.List", "<provider>.Create", "<provider>.Delete",
	// "rancher.<Method>" or "nodes.<Method>".
	Op      string
	Cluster string
	// Args are the call's objects: machine names (IDs for a Delete that
	// Wrap decorates), binding, Rancher machine, node.
	Args []string
	// Changes says the call changes the world (everything but List,
	// Clusters, Machines, JoinCommand and Ready).
	Changes bool
}

func (c Call) String() string {
	s := c.Op
	if c.Cluster != "" {
		s += " " + c.Cluster
	}
	if len(c.Args) > 0 {
		s += " " + strings.Join(c.Args, ",")
	}
	return s
}

// Fault decides whether a call fails. It returns nil to let the call run,
// an error to fail it before it has any effect, or an error wrapped by
// AfterEffect to fail it after its effect (a lost reply).
type Fault func(c Call) error

type afterEffect struct{ err error }

func (e *afterEffect) Error() string { return e.err.Error() }
func (e *afterEffect) Unwrap() error { return e.err }

// AfterEffect marks a fault's error as returned after the call took effect.
func AfterEffect(err error) error { return &afterEffect{err} }

// FailNth fails the nth call (1-based) counted from when the fault is
// installed, before it has any effect.
func FailNth(n int, err error) Fault {
	var seen int
	var mu sync.Mutex
	return func(Call) error {
		mu.Lock()
		defer mu.Unlock()
		seen++
		if seen == n {
			return err
		}
		return nil
	}
}

// CrashAfter lets k calls run and fails every later one with ErrCrashed, as
// if fleetd died after its kth call. With lostReply, call k+1 takes effect
// before it fails.
func CrashAfter(k int, lostReply bool) Fault {
	var seen int
	var mu sync.Mutex
	return func(Call) error {
		mu.Lock()
		defer mu.Unlock()
		seen++
		switch {
		case seen <= k:
			return nil
		case seen == k+1 && lostReply:
			return AfterEffect(ErrCrashed)
		}
		return ErrCrashed
	}
}

// FailCluster fails every call that concerns cluster.
func FailCluster(cluster string, err error) Fault {
	return func(c Call) error {
		if c.Cluster == cluster {
			return err
		}
		return nil
	}
}

// FailOp fails every call whose Op is op.
func FailOp(op string, err error) Fault {
	return func(c Call) error {
		if c.Op == op {
			return err
		}
		return nil
	}
}

// CrashAfterChanges lets k calls that change the world run (and every read
// among them) and fails every later call, reads included, with ErrCrashed,
// as if fleetd died after its kth change. With lostReply, change k+1 takes
// effect before it fails.
func CrashAfterChanges(k int, lostReply bool) Fault {
	var (
		seen    int
		crashed bool
		mu      sync.Mutex
	)
	return func(c Call) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case crashed:
			return ErrCrashed
		case !c.Changes:
			return nil
		}
		seen++
		if seen <= k {
			return nil
		}
		crashed = true
		if lostReply {
			return AfterEffect(ErrCrashed)
		}
		return ErrCrashed
	}
}

// Faulty is the one fault-injection layer of fleetd's tests: it logs calls
// and asks the installed faults whether each fails, before it takes effect
// or after (a lost reply). The fakes of this package go through it, and
// Wrap puts it in front of any world, the real peers' included.
type Faulty struct {
	mu     sync.Mutex
	calls  []Call
	faults []Fault
}

// Inject installs a fault; every installed fault is asked about every call.
func (f *Faulty) Inject(flt Fault) {
	f.mu.Lock()
	f.faults = append(f.faults, flt)
	f.mu.Unlock()
}

// ClearFaults removes every fault.
func (f *Faulty) ClearFaults() {
	f.mu.Lock()
	f.faults = nil
	f.mu.Unlock()
}

// Calls returns the call log.
func (f *Faulty) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ResetCalls empties the call log.
func (f *Faulty) ResetCalls() {
	f.mu.Lock()
	f.calls = nil
	f.mu.Unlock()
}

// begin logs a call and asks the faults about it. It returns the error to
// fail with before the effect, and the one to return after it.
func (f *Faulty) begin(ctx context.Context, op, cluster string, args ...string) (before, after error) {
	if err := ctx.Err(); err != nil {
		return err, nil
	}
	method := op[strings.LastIndexByte(op, '.')+1:]
	f.mu.Lock()
	c := Call{Seq: len(f.calls) + 1, Op: op, Cluster: cluster, Args: args,
		Changes: !slices.Contains([]string{"List", "Clusters", "Machines", "JoinCommand", "Ready"}, method)}
	f.calls = append(f.calls, c)
	faults := slices.Clone(f.faults)
	f.mu.Unlock()
	for _, flt := range faults {
		if err := flt(c); err != nil {
			var ae *afterEffect
			if errors.As(err, &ae) {
				return nil, ae.err
			}
			return err, nil
		}
	}
	return nil, nil
}

// Wrap returns w with every call of its providers, Registry and Nodes
// logged and asked of f's faults first.
func (f *Faulty) Wrap(w reconcile.World) reconcile.World {
	out := reconcile.World{Providers: make(map[string]reconcile.Provider, len(w.Providers))}
	for name, p := range w.Providers {
		out.Providers[name] = faultyProvider{p: p, f: f}
	}
	if w.Registry != nil {
		out.Registry = faultyRegistry{r: w.Registry, f: f}
	}
	if w.Nodes != nil {
		out.Nodes = faultyNodes{n: w.Nodes, f: f}
	}
	return out
}

type faultyProvider struct {
	p reconcile.Provider
	f *Faulty
}

func (p faultyProvider) Name() string { return p.p.Name() }

func (p faultyProvider) List(ctx context.Context) ([]reconcile.Machine, error) {
	if before, _ := p.f.begin(ctx, p.p.Name()+".List", ""); before != nil {
		return nil, before
	}
	return p.p.List(ctx)
}

func (p faultyProvider) Create(ctx context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	var cluster string
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		cluster = s.Cluster
		names = append(names, s.Name)
	}
	before, after := p.f.begin(ctx, p.p.Name()+".Create", cluster, names...)
	if before != nil {
		return nil, before
	}
	ms, err := p.p.Create(ctx, specs)
	return ms, errors.Join(err, after)
}

func (p faultyProvider) Delete(ctx context.Context, ids []string) error {
	before, after := p.f.begin(ctx, p.p.Name()+".Delete", "", ids...)
	if before != nil {
		return before
	}
	return errors.Join(p.p.Delete(ctx, ids), after)
}

type faultyRegistry struct {
	r reconcile.Registry
	f *Faulty
}

func (r faultyRegistry) Clusters(ctx context.Context) ([]reconcile.RancherCluster, error) {
	if before, _ := r.f.begin(ctx, "rancher.Clusters", ""); before != nil {
		return nil, before
	}
	return r.r.Clusters(ctx)
}

func (r faultyRegistry) Machines(ctx context.Context, cluster string) ([]reconcile.RancherMachine, error) {
	if before, _ := r.f.begin(ctx, "rancher.Machines", cluster); before != nil {
		return nil, before
	}
	return r.r.Machines(ctx, cluster)
}

func (r faultyRegistry) Register(ctx context.Context, spec reconcile.RegisterSpec) (reconcile.RancherCluster, error) {
	before, after := r.f.begin(ctx, "rancher.Register", spec.Name)
	if before != nil {
		return reconcile.RancherCluster{}, before
	}
	rc, err := r.r.Register(ctx, spec)
	return rc, errors.Join(err, after)
}

func (r faultyRegistry) JoinCommand(ctx context.Context, cluster string, roles []string) (string, error) {
	if before, _ := r.f.begin(ctx, "rancher.JoinCommand", cluster, roles...); before != nil {
		return "", before
	}
	return r.r.JoinCommand(ctx, cluster, roles)
}

func (r faultyRegistry) Bind(ctx context.Context, cluster string, b reconcile.Binding) error {
	before, after := r.f.begin(ctx, "rancher.Bind", cluster, b.Role+"="+b.PrincipalID)
	if before != nil {
		return before
	}
	return errors.Join(r.r.Bind(ctx, cluster, b), after)
}

func (r faultyRegistry) Unbind(ctx context.Context, cluster string, b reconcile.Binding) error {
	before, after := r.f.begin(ctx, "rancher.Unbind", cluster, b.Role+"="+b.PrincipalID)
	if before != nil {
		return before
	}
	return errors.Join(r.r.Unbind(ctx, cluster, b), after)
}

func (r faultyRegistry) DeleteMachine(ctx context.Context, cluster, machine string, excludeDrain bool) error {
	arg := machine
	if excludeDrain {
		arg += " excludeDrain"
	}
	before, after := r.f.begin(ctx, "rancher.DeleteMachine", cluster, arg)
	if before != nil {
		return before
	}
	return errors.Join(r.r.DeleteMachine(ctx, cluster, machine, excludeDrain), after)
}

func (r faultyRegistry) Unregister(ctx context.Context, cluster string) error {
	before, after := r.f.begin(ctx, "rancher.Unregister", cluster)
	if before != nil {
		return before
	}
	return errors.Join(r.r.Unregister(ctx, cluster), after)
}

type faultyNodes struct {
	n reconcile.Nodes
	f *Faulty
}

func (n faultyNodes) Ready(ctx context.Context, cluster reconcile.ClusterRef) (map[string]bool, error) {
	if before, _ := n.f.begin(ctx, "nodes.Ready", cluster.Name); before != nil {
		return nil, before
	}
	return n.n.Ready(ctx, cluster)
}

func (n faultyNodes) Drain(ctx context.Context, cluster reconcile.ClusterRef, node string) error {
	before, after := n.f.begin(ctx, "nodes.Drain", cluster.Name, node)
	if before != nil {
		return before
	}
	return errors.Join(n.n.Drain(ctx, cluster, node), after)
}
