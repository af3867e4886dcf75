package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/fleetd/fleetd/schema"
)

// Observed is the world as one sync saw it. Observation needs no local state:
// everything the fleet owns carries its marks.
type Observed struct {
	// Machines are every machine the fleet owns, from every provider.
	Machines []Machine `json:"machines"`
	// Rancher holds the registered clusters; empty without a Registry.
	Rancher []RancherCluster `json:"rancher,omitempty"`
	// Templates describe machine templates seen before (from status), by hash,
	// so machines whose template is no longer in the fleet repo can still be
	// priced and their roles known.
	Templates map[string]Template `json:"templates,omitempty"`
	// ProviderErrors are the providers that could not be listed, with why.
	// Clusters with machines there are left alone this sync.
	ProviderErrors map[string]string `json:"providerErrors,omitempty"`
	// RegistryError says why Rancher could not be listed; then nothing is
	// changed in a fleet with a rancher block.
	RegistryError string `json:"registryError,omitempty"`
}

// ObserveOptions tune Observe.
type ObserveOptions struct {
	// Concurrency bounds the per-cluster Rancher and node queries (default 8).
	Concurrency int
	// Skip are peers (see ProviderPeer and RancherPeer) not to call this
	// time, with why: each is recorded as not observed, with that reason,
	// so the clusters there are left alone.
	Skip map[string]string
	// Peer, when set, is told how each peer it called answered its list:
	// err is nil when it did.
	Peer func(peer string, err error)
}

// RancherPeer names Rancher among the peers of ObserveOptions.
const RancherPeer = "rancher"

// ProviderPeer names a provider among the peers of ObserveOptions.
func ProviderPeer(name string) string { return "provider " + name }

// Observe lists every provider's machines concurrently, Rancher's clusters and
// their machines, and the readiness of every registered cluster's nodes. What
// cannot be observed is recorded in the result, so the planner leaves the
// affected clusters alone; the returned error joins those failures for the
// log. Observe changes nothing.
func Observe(ctx context.Context, fleet *schema.Fleet, w World, opts ObserveOptions) (Observed, error) {
	conc := cmp.Or(opts.Concurrency, 8)
	var (
		o    Observed
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	told := func(peer string, err error) {
		if opts.Peer != nil {
			opts.Peer(peer, err)
		}
	}
	names := providerNames(fleet, w)
	lists := make([][]Machine, len(names))
	for i, name := range names {
		p := w.Providers[name]
		if p == nil {
			o.setProviderError(name, "no provider implementation")
			fail(fmt.Errorf("observe provider %s: no provider implementation", name))
			continue
		}
		if why, ok := opts.Skip[ProviderPeer(name)]; ok {
			o.setProviderError(name, why)
			fail(Transient(fmt.Errorf("observe provider %s: %s", name, why)))
			continue
		}
		wg.Go(func() {
			ms, err := p.List(ctx)
			told(ProviderPeer(name), err)
			if err != nil {
				mu.Lock()
				o.setProviderError(name, err.Error())
				mu.Unlock()
				fail(fmt.Errorf("observe provider %s: %w", name, err))
				return
			}
			lists[i] = ms
		})
	}
	if why, ok := opts.Skip[RancherPeer]; ok && w.Registry != nil {
		o.RegistryError = why
		fail(Transient(fmt.Errorf("observe rancher clusters: %s", why)))
	} else if w.Registry != nil {
		wg.Go(func() {
			rcs, err := w.Registry.Clusters(ctx)
			told(RancherPeer, err)
			if err != nil {
				o.RegistryError = err.Error()
				fail(fmt.Errorf("observe rancher clusters: %w", err))
				return
			}
			o.Rancher = rcs
			observeRancherClusters(ctx, w, o.Rancher, conc, fail)
		})
	}
	wg.Wait()
	total := 0
	for _, ms := range lists {
		total += len(ms)
	}
	if total > 0 {
		o.Machines = make([]Machine, 0, total)
	}
	for i, ms := range lists {
		for _, m := range ms {
			if m.Provider == "" {
				m.Provider = names[i]
			}
			o.Machines = append(o.Machines, m)
		}
	}
	slices.SortFunc(o.Machines, func(a, b Machine) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	if o.RegistryError != "" {
		o.Rancher = nil
	}
	return o, errors.Join(errs...)
}

// Unreachable joins the peers that could not be observed at all: providers
// that could not be listed and Rancher when its clusters could not be. A
// failure that concerns one cluster only (its Rancher machines, its nodes) is
// not among them. It returns nil when every peer answered.
func (o *Observed) Unreachable() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(o.ProviderErrors)) {
		errs = append(errs, fmt.Errorf("provider %s: %s", name, o.ProviderErrors[name]))
	}
	if o.RegistryError != "" {
		errs = append(errs, fmt.Errorf("rancher: %s", o.RegistryError))
	}
	return errors.Join(errs...)
}

func (o *Observed) setProviderError(name, msg string) {
	if o.ProviderErrors == nil {
		o.ProviderErrors = map[string]string{}
	}
	o.ProviderErrors[name] = msg
}

// observeRancherClusters fills in each registered cluster's machines and node
// readiness, conc clusters at a time.
func observeRancherClusters(ctx context.Context, w World, rcs []RancherCluster, conc int, fail func(error)) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range rcs {
		rc := &rcs[i]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ms, err := w.Registry.Machines(ctx, rc.Name)
			if err != nil {
				// Without its machines a cluster cannot be changed safely:
				// record the failure where the planner sees it.
				rc.MachinesError = err.Error()
				rc.Machines = nil
				fail(fmt.Errorf("observe rancher machines of %s: %w", rc.Name, err))
				return
			}
			rc.Machines = ms
			if w.Nodes == nil || rc.ID == "" {
				return
			}
			nodes, err := w.Nodes.Ready(ctx, rc.Ref())
			var unavailable *UnavailableError
			if errors.As(err, &unavailable) && !rc.Provisioned {
				// Rancher serves a cluster's API only once its first machine
				// registered: a new cluster has no nodes yet, which is work in
				// progress, not a failure.
				LoggerFrom(ctx).Debug("Downstream cluster not provisioned yet: no nodes", "cluster", rc.Name, "clusterID", rc.ID)
				rc.NoNodesYet = true
				return
			}
			if err != nil {
				// A provisioned cluster Rancher cannot reach (its agent is
				// disconnected) is that cluster's transient fault.
				rc.NodesError = err.Error()
				fail(fmt.Errorf("observe nodes of %s: %w", rc.Name, err))
				return
			}
			rc.Nodes = nodes
		})
	}
	wg.Wait()
}

// providerNames lists the providers to observe: those of fleet.yaml and any
// other the world has, sorted.
func providerNames(fleet *schema.Fleet, w World) []string {
	var names []string
	if fleet != nil {
		for _, p := range fleet.Spec.Providers {
			names = append(names, p.Name)
		}
	}
	for name := range w.Providers {
		names = append(names, name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}
