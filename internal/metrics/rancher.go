package metrics

import (
	"context"

	"github.com/fleetd/fleetd/reconcile"
)

// InstrumentRancher returns w with every call to Rancher (its Registry) and
// to the downstream clusters through it (its Nodes: readiness, drains)
// counted in fleetd_rancher_calls_total{call}, and the failed ones in
// fleetd_rancher_call_errors_total, like InstrumentProvider does for
// providers. A nil m returns w unchanged.
func InstrumentRancher(w reconcile.World, m *Metrics) reconcile.World {
	if m == nil {
		return w
	}
	if w.Registry != nil {
		w.Registry = &registry{r: w.Registry, m: m}
	}
	if w.Nodes != nil {
		w.Nodes = &nodes{n: w.Nodes, m: m}
	}
	return w
}

func (m *Metrics) rancherCall(call string, err error) {
	m.rancherCalls.WithLabelValues(call).Inc()
	if err != nil {
		m.rancherErrs.WithLabelValues(call).Inc()
	}
}

type registry struct {
	r reconcile.Registry
	m *Metrics
}

func (r *registry) Clusters(ctx context.Context) ([]reconcile.RancherCluster, error) {
	out, err := r.r.Clusters(ctx)
	r.m.rancherCall("clusters", err)
	return out, err
}

func (r *registry) Machines(ctx context.Context, cluster string) ([]reconcile.RancherMachine, error) {
	out, err := r.r.Machines(ctx, cluster)
	r.m.rancherCall("machines", err)
	return out, err
}

func (r *registry) Register(ctx context.Context, spec reconcile.RegisterSpec) (reconcile.RancherCluster, error) {
	out, err := r.r.Register(ctx, spec)
	r.m.rancherCall("register", err)
	return out, err
}

func (r *registry) JoinCommand(ctx context.Context, cluster string, roles []string) (string, error) {
	out, err := r.r.JoinCommand(ctx, cluster, roles)
	r.m.rancherCall("join-command", err)
	return out, err
}

func (r *registry) Bind(ctx context.Context, cluster string, b reconcile.Binding) error {
	err := r.r.Bind(ctx, cluster, b)
	r.m.rancherCall("bind", err)
	return err
}

func (r *registry) Unbind(ctx context.Context, cluster string, b reconcile.Binding) error {
	err := r.r.Unbind(ctx, cluster, b)
	r.m.rancherCall("unbind", err)
	return err
}

func (r *registry) DeleteMachine(ctx context.Context, cluster, machine string, excludeDrain bool) error {
	err := r.r.DeleteMachine(ctx, cluster, machine, excludeDrain)
	r.m.rancherCall("delete-machine", err)
	return err
}

func (r *registry) Unregister(ctx context.Context, cluster string) error {
	err := r.r.Unregister(ctx, cluster)
	r.m.rancherCall("unregister", err)
	return err
}

type nodes struct {
	n reconcile.Nodes
	m *Metrics
}

func (n *nodes) Ready(ctx context.Context, c reconcile.ClusterRef) (map[string]bool, error) {
	out, err := n.n.Ready(ctx, c)
	n.m.rancherCall("node-readiness", err)
	return out, err
}

func (n *nodes) Drain(ctx context.Context, c reconcile.ClusterRef, node string) error {
	err := n.n.Drain(ctx, c, node)
	n.m.rancherCall("drain", err)
	return err
}
