package reconciletest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// Provider is a fake reconcile.Provider over a World. A non-nil function
// field replaces the default behaviour of its method (the call is still
// logged and the faults still apply).
type Provider struct {
	W            *World
	ProviderName string

	ListFunc   func(ctx context.Context) ([]reconcile.Machine, error)
	CreateFunc func(ctx context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error)
	DeleteFunc func(ctx context.Context, ids []string) error
}

var _ reconcile.Provider = (*Provider)(nil)

// Name returns the provider's name.
func (p *Provider) Name() string { return p.ProviderName }

// List returns the provider's machines sorted by name.
func (p *Provider) List(ctx context.Context) ([]reconcile.Machine, error) {
	before, after := p.W.begin(ctx, p.ProviderName+".List", "")
	if before != nil {
		return nil, before
	}
	if p.ListFunc != nil {
		return p.ListFunc(ctx)
	}
	p.W.mu.Lock()
	ms := p.W.machinesLocked(p.ProviderName)
	p.W.mu.Unlock()
	if after != nil {
		return nil, after
	}
	return ms, nil
}

// Create creates machines by name, idempotently: a machine of that name is
// returned as it is. New machines are pending until Settle.
func (p *Provider) Create(ctx context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	cluster := ""
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i], cluster = s.Name, s.Cluster
	}
	before, after := p.W.begin(ctx, p.ProviderName+".Create", cluster, names...)
	if before != nil {
		return nil, before
	}
	if p.CreateFunc != nil {
		return p.CreateFunc(ctx, specs)
	}
	w := p.W
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.vms[p.ProviderName] == nil {
		w.vms[p.ProviderName] = map[string]*vm{}
	}
	out := make([]reconcile.Machine, 0, len(specs))
	for _, s := range specs {
		var found *vm
		for _, v := range w.vms[p.ProviderName] {
			if v.m.Name == s.Name {
				found = v
				break
			}
		}
		if found == nil {
			w.nextID++
			found = &vm{m: reconcile.Machine{
				ID: fmt.Sprintf("%s-%05d", p.ProviderName, w.nextID), Name: s.Name, Provider: p.ProviderName,
				Cluster: s.Cluster, Team: s.Team, Pool: s.Pool, TemplateHash: s.TemplateHash,
				State: reconcile.MachinePending, Address: fmt.Sprintf("10.%d.%d.%d", w.nextID>>16&255, w.nextID>>8&255, w.nextID&255),
				CreatedAt: w.now,
			}, userData: slices.Clone(s.UserData)}
			w.vms[p.ProviderName][found.m.ID] = found
			w.created[s.Name]++
		}
		out = append(out, found.m)
	}
	if after != nil {
		return nil, after
	}
	return out, nil
}

// Delete marks machines deleting; they are gone after Settle. Unknown IDs are
// a success.
func (p *Provider) Delete(ctx context.Context, ids []string) error {
	w := p.W
	w.mu.Lock()
	cluster := ""
	names := make([]string, 0, len(ids))
	for _, id := range ids {
		if v := w.vms[p.ProviderName][id]; v != nil {
			cluster = v.m.Cluster
			names = append(names, v.m.Name)
		} else {
			names = append(names, id)
		}
	}
	w.mu.Unlock()
	before, after := w.begin(ctx, p.ProviderName+".Delete", cluster, names...)
	if before != nil {
		return before
	}
	if p.DeleteFunc != nil {
		return p.DeleteFunc(ctx, ids)
	}
	w.mu.Lock()
	for _, id := range ids {
		if v := w.vms[p.ProviderName][id]; v != nil {
			v.m.State = reconcile.MachineDeleting
		}
	}
	w.mu.Unlock()
	return after
}

// Registry is a fake reconcile.Registry over a World.
type Registry struct {
	W *World

	ClustersFunc      func(ctx context.Context) ([]reconcile.RancherCluster, error)
	MachinesFunc      func(ctx context.Context, cluster string) ([]reconcile.RancherMachine, error)
	RegisterFunc      func(ctx context.Context, spec reconcile.RegisterSpec) (reconcile.RancherCluster, error)
	JoinCommandFunc   func(ctx context.Context, cluster string, roles []string) (string, error)
	BindFunc          func(ctx context.Context, cluster string, b reconcile.Binding) error
	UnbindFunc        func(ctx context.Context, cluster string, b reconcile.Binding) error
	DeleteMachineFunc func(ctx context.Context, cluster, machine string, excludeDrain bool) error
	UnregisterFunc    func(ctx context.Context, cluster string) error
}

var _ reconcile.Registry = (*Registry)(nil)

// Clusters lists the registered clusters with their bindings.
func (r *Registry) Clusters(ctx context.Context) ([]reconcile.RancherCluster, error) {
	before, after := r.W.begin(ctx, "rancher.Clusters", "")
	if before != nil {
		return nil, before
	}
	if r.ClustersFunc != nil {
		return r.ClustersFunc(ctx)
	}
	w := r.W
	w.mu.Lock()
	var out []reconcile.RancherCluster
	for _, name := range slices.Sorted(maps.Keys(w.clusters)) {
		out = append(out, w.clusters[name].snapshot())
	}
	w.mu.Unlock()
	if after != nil {
		return nil, after
	}
	return out, nil
}

// Machines lists a cluster's Rancher machines.
func (r *Registry) Machines(ctx context.Context, cluster string) ([]reconcile.RancherMachine, error) {
	before, after := r.W.begin(ctx, "rancher.Machines", cluster)
	if before != nil {
		return nil, before
	}
	if r.MachinesFunc != nil {
		return r.MachinesFunc(ctx, cluster)
	}
	w := r.W
	w.mu.Lock()
	var out []reconcile.RancherMachine
	if c := w.clusters[cluster]; c != nil {
		out = c.machineList()
	}
	w.mu.Unlock()
	if after != nil {
		return nil, after
	}
	return out, nil
}

// Register creates the cluster or updates its version and marks.
func (r *Registry) Register(ctx context.Context, spec reconcile.RegisterSpec) (reconcile.RancherCluster, error) {
	before, after := r.W.begin(ctx, "rancher.Register", spec.Name)
	if before != nil {
		return reconcile.RancherCluster{}, before
	}
	if r.RegisterFunc != nil {
		return r.RegisterFunc(ctx, spec)
	}
	w := r.W
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.clusters[spec.Name]
	switch {
	case c == nil:
		c = &rcluster{rc: reconcile.RancherCluster{Name: spec.Name, Team: spec.Team},
			token: "SECRET-TOKEN-" + spec.Name, machines: map[string]*reconcile.RancherMachine{}, nodes: map[string]bool{}, drained: map[string]bool{}}
		if !w.DeferClusterID {
			w.nextID++
			c.rc.ID = fmt.Sprintf("c-m-%05d", w.nextID)
		}
		w.clusters[spec.Name] = c
	case c.rc.Deleting:
		return reconcile.RancherCluster{}, &reconcile.WaitError{Reason: "cluster " + spec.Name + " is being deleted", After: time.Second}
	}
	c.rc.KubernetesVersion, c.rc.Protected = spec.KubernetesVersion, spec.Protected
	if after != nil {
		return reconcile.RancherCluster{}, after
	}
	return c.snapshot(), nil
}

// JoinCommand returns a node command holding the cluster's token.
func (r *Registry) JoinCommand(ctx context.Context, cluster string, roles []string) (string, error) {
	before, after := r.W.begin(ctx, "rancher.JoinCommand", cluster, roles...)
	if before != nil {
		return "", before
	}
	if r.JoinCommandFunc != nil {
		return r.JoinCommandFunc(ctx, cluster, roles)
	}
	w := r.W
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.clusters[cluster]
	switch {
	case c == nil:
		return "", fmt.Errorf("cluster %s is not registered", cluster)
	case c.rc.ID == "":
		return "", &reconcile.WaitError{Reason: "no registration token yet", After: time.Second}
	}
	var flags []string
	for _, role := range roles {
		flags = append(flags, "--"+role)
	}
	if after != nil {
		return "", after
	}
	return "curl -fL https://rancher.test/system-agent-install.sh | sh -s - --server https://rancher.test --token " + c.token + " " + strings.Join(flags, " "), nil
}

// Bind grants a binding; a cluster without ID makes it wait.
func (r *Registry) Bind(ctx context.Context, cluster string, b reconcile.Binding) error {
	before, after := r.W.begin(ctx, "rancher.Bind", cluster, b.Role+"="+b.PrincipalID)
	if before != nil {
		return before
	}
	if r.BindFunc != nil {
		return r.BindFunc(ctx, cluster, b)
	}
	w := r.W
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.clusters[cluster]
	switch {
	case c == nil:
		return fmt.Errorf("cluster %s is not registered", cluster)
	case c.rc.ID == "":
		return &reconcile.WaitError{Reason: "cluster has no ID yet", After: time.Second}
	}
	if !slices.Contains(c.rc.Bindings, b) {
		c.rc.Bindings = append(c.rc.Bindings, b)
	}
	return after
}

// Unbind removes a binding; a missing one is a success.
func (r *Registry) Unbind(ctx context.Context, cluster string, b reconcile.Binding) error {
	before, after := r.W.begin(ctx, "rancher.Unbind", cluster, b.Role+"="+b.PrincipalID)
	if before != nil {
		return before
	}
	if r.UnbindFunc != nil {
		return r.UnbindFunc(ctx, cluster, b)
	}
	w := r.W
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.clusters[cluster]; c != nil {
		c.rc.Bindings = slices.DeleteFunc(c.rc.Bindings, func(x reconcile.Binding) bool { return x == b })
	}
	return after
}

// DeleteMachine marks a Rancher machine deleting; it is gone after Settle.
func (r *Registry) DeleteMachine(ctx context.Context, cluster, machine string, excludeDrain bool) error {
	before, after := r.W.begin(ctx, "rancher.DeleteMachine", cluster, machine)
	if before != nil {
		return before
	}
	if r.DeleteMachineFunc != nil {
		return r.DeleteMachineFunc(ctx, cluster, machine, excludeDrain)
	}
	w := r.W
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.clusters[cluster]; c != nil {
		if m := c.machines[machine]; m != nil {
			m.Phase = reconcile.RancherMachineDeleting
		}
	}
	return after
}

// Unregister marks a cluster deleting; it is gone after Settle.
func (r *Registry) Unregister(ctx context.Context, cluster string) error {
	before, after := r.W.begin(ctx, "rancher.Unregister", cluster)
	if before != nil {
		return before
	}
	if r.UnregisterFunc != nil {
		return r.UnregisterFunc(ctx, cluster)
	}
	w := r.W
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.clusters[cluster]; c != nil {
		c.rc.Deleting = true
	}
	return after
}

// Nodes is a fake reconcile.Nodes over a World.
type Nodes struct {
	W *World

	ReadyFunc func(ctx context.Context, cluster reconcile.ClusterRef) (map[string]bool, error)
	DrainFunc func(ctx context.Context, cluster reconcile.ClusterRef, node string) error
}

var _ reconcile.Nodes = (*Nodes)(nil)

// Ready returns the cluster's node readiness.
func (n *Nodes) Ready(ctx context.Context, cluster reconcile.ClusterRef) (map[string]bool, error) {
	before, after := n.W.begin(ctx, "nodes.Ready", cluster.Name)
	if before != nil {
		return nil, before
	}
	if n.ReadyFunc != nil {
		return n.ReadyFunc(ctx, cluster)
	}
	w := n.W
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.clusters[cluster.Name]
	if c == nil || c.rc.ID != cluster.ID {
		return nil, fmt.Errorf("cluster %s (%s) not found", cluster.Name, cluster.ID)
	}
	if after != nil {
		return nil, after
	}
	return cloneNodes(c.nodes), nil
}

// Drain marks a node drained; a missing node is a success.
func (n *Nodes) Drain(ctx context.Context, cluster reconcile.ClusterRef, node string) error {
	before, after := n.W.begin(ctx, "nodes.Drain", cluster.Name, node)
	if before != nil {
		return before
	}
	if n.DrainFunc != nil {
		return n.DrainFunc(ctx, cluster, node)
	}
	w := n.W
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.clusters[cluster.Name]; c != nil {
		c.drained[node] = true
	}
	return after
}

// Drained reports whether a node was drained.
func (w *World) Drained(cluster, node string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.clusters[cluster]
	return c != nil && c.drained[node]
}
