package fleetsync

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// DefaultCallTimeout bounds each call to a provider, to Rancher and to a
// downstream cluster when Loop.CallTimeout is zero. A call that changes the
// world and waits for the peer's own work (a provider's create or delete,
// which waits for vCenter's clone and destroy tasks; a drain) gets
// ChangeTimeoutFactor times as long.
const (
	DefaultCallTimeout  = time.Minute
	ChangeTimeoutFactor = 5
)

// Bound returns w with every call to its providers, Rancher and downstream
// clusters given a deadline: read calls get call, calls that change the world
// ChangeTimeoutFactor × call. A call that runs out of time fails with a
// transient *reconcile.HungError that names the peer and the call
// ("provider dc1: list machines: no answer within 1m"), so that a peer which
// accepts connections and never answers costs one sync a bounded time and
// says who hung. The deadline is put here, around every peer alike, rather
// than in each client: the contract's calls are what a sync waits on.
func Bound(w reconcile.World, call time.Duration) reconcile.World {
	if call <= 0 {
		call = DefaultCallTimeout
	}
	change := ChangeTimeoutFactor * call
	out := reconcile.World{Providers: make(map[string]reconcile.Provider, len(w.Providers))}
	for name, p := range w.Providers {
		if p != nil {
			p = &boundProvider{p: p, read: call, change: change, refused: &refusal{}}
		}
		out.Providers[name] = p
	}
	// Rancher and the downstream clusters (reached through Rancher's proxy)
	// share the API token, and so its refusal.
	rancher := &refusal{}
	if w.Registry != nil {
		out.Registry = &boundRegistry{r: w.Registry, read: call, change: change, refused: rancher}
	}
	if w.Nodes != nil {
		out.Nodes = &boundNodes{n: w.Nodes, read: call, change: change, refused: rancher}
	}
	return out
}

// refusal remembers a peer's refusal of the credentials
// (*reconcile.CredentialsError): every later call fails with it without
// reaching the peer, since the same credentials would be refused again and
// repeated failed logins lock accounts. The world is built anew, with a new
// refusal, when fleet.yaml's peer blocks or the credentials' files or
// variables change (worldKey).
type refusal struct {
	mu  sync.Mutex
	err error
}

// call runs f unless the credentials were refused before.
func call[T any](r *refusal, f func() (T, error)) (T, error) {
	r.mu.Lock()
	refused := r.err
	r.mu.Unlock()
	if refused != nil {
		var zero T
		return zero, refused
	}
	v, err := f()
	var ce *reconcile.CredentialsError
	if errors.As(err, &ce) {
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
	}
	return v, err
}

type boundProvider struct {
	p            reconcile.Provider
	read, change time.Duration
	refused      *refusal
}

func (b *boundProvider) Name() string { return b.p.Name() }

func (b *boundProvider) call(what string) string { return "provider " + b.p.Name() + ": " + what }

func (b *boundProvider) List(ctx context.Context) ([]reconcile.Machine, error) {
	return call(b.refused, func() ([]reconcile.Machine, error) {
		return reconcile.BoundCall(ctx, b.read, b.call("list machines"), b.p.List)
	})
}

func (b *boundProvider) Create(ctx context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	return call(b.refused, func() ([]reconcile.Machine, error) {
		return reconcile.BoundCall(ctx, b.change, b.call("create machines"), func(ctx context.Context) ([]reconcile.Machine, error) {
			return b.p.Create(ctx, specs)
		})
	})
}

func (b *boundProvider) Delete(ctx context.Context, ids []string) error {
	_, err := call(b.refused, func() (struct{}, error) {
		return reconcile.BoundCall(ctx, b.change, b.call("delete machines"), func(ctx context.Context) (struct{}, error) {
			return none(b.p.Delete(ctx, ids))
		})
	})
	return err
}

type boundRegistry struct {
	r            reconcile.Registry
	read, change time.Duration
	refused      *refusal
}

func none(err error) (struct{}, error) { return struct{}{}, err }

func (b *boundRegistry) Clusters(ctx context.Context) ([]reconcile.RancherCluster, error) {
	return call(b.refused, func() ([]reconcile.RancherCluster, error) {
		return reconcile.BoundCall(ctx, b.read, "rancher: list clusters", b.r.Clusters)
	})
}

func (b *boundRegistry) Machines(ctx context.Context, cluster string) ([]reconcile.RancherMachine, error) {
	return call(b.refused, func() ([]reconcile.RancherMachine, error) {
		return reconcile.BoundCall(ctx, b.read, "rancher: list machines of "+cluster, func(ctx context.Context) ([]reconcile.RancherMachine, error) {
			return b.r.Machines(ctx, cluster)
		})
	})
}

func (b *boundRegistry) Register(ctx context.Context, spec reconcile.RegisterSpec) (reconcile.RancherCluster, error) {
	return call(b.refused, func() (reconcile.RancherCluster, error) {
		return reconcile.BoundCall(ctx, b.read, "rancher: register "+spec.Name, func(ctx context.Context) (reconcile.RancherCluster, error) {
			return b.r.Register(ctx, spec)
		})
	})
}

func (b *boundRegistry) JoinCommand(ctx context.Context, cluster string, roles []string) (string, error) {
	return call(b.refused, func() (string, error) {
		return reconcile.BoundCall(ctx, b.read, "rancher: registration command of "+cluster, func(ctx context.Context) (string, error) {
			return b.r.JoinCommand(ctx, cluster, roles)
		})
	})
}

func (b *boundRegistry) Bind(ctx context.Context, cluster string, bd reconcile.Binding) error {
	_, err := call(b.refused, func() (struct{}, error) {
		return reconcile.BoundCall(ctx, b.read, "rancher: bind on "+cluster, func(ctx context.Context) (struct{}, error) {
			return none(b.r.Bind(ctx, cluster, bd))
		})
	})
	return err
}

func (b *boundRegistry) Unbind(ctx context.Context, cluster string, bd reconcile.Binding) error {
	_, err := call(b.refused, func() (struct{}, error) {
		return reconcile.BoundCall(ctx, b.read, "rancher: unbind on "+cluster, func(ctx context.Context) (struct{}, error) {
			return none(b.r.Unbind(ctx, cluster, bd))
		})
	})
	return err
}

func (b *boundRegistry) DeleteMachine(ctx context.Context, cluster, machine string, excludeDrain bool) error {
	_, err := call(b.refused, func() (struct{}, error) {
		return reconcile.BoundCall(ctx, b.read, "rancher: delete machine "+machine+" of "+cluster, func(ctx context.Context) (struct{}, error) {
			return none(b.r.DeleteMachine(ctx, cluster, machine, excludeDrain))
		})
	})
	return err
}

func (b *boundRegistry) Unregister(ctx context.Context, cluster string) error {
	_, err := call(b.refused, func() (struct{}, error) {
		return reconcile.BoundCall(ctx, b.read, "rancher: unregister "+cluster, func(ctx context.Context) (struct{}, error) {
			return none(b.r.Unregister(ctx, cluster))
		})
	})
	return err
}

type boundNodes struct {
	n            reconcile.Nodes
	read, change time.Duration
	refused      *refusal
}

func (b *boundNodes) Ready(ctx context.Context, c reconcile.ClusterRef) (map[string]bool, error) {
	return call(b.refused, func() (map[string]bool, error) {
		return reconcile.BoundCall(ctx, b.read, "cluster "+c.Name+": list nodes", func(ctx context.Context) (map[string]bool, error) {
			return b.n.Ready(ctx, c)
		})
	})
}

func (b *boundNodes) Drain(ctx context.Context, c reconcile.ClusterRef, node string) error {
	_, err := call(b.refused, func() (struct{}, error) {
		return reconcile.BoundCall(ctx, b.change, "cluster "+c.Name+": drain "+node, func(ctx context.Context) (struct{}, error) {
			return none(b.n.Drain(ctx, c, node))
		})
	})
	return err
}
