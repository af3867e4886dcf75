// Package live builds a fleet's live world: its providers (AWS, vSphere),
// Rancher and the downstream clusters, as fleet.yaml names them. fleetd's
// commands and the demo build it here and hand it to the sync loop
// (internal/fleetsync), which knows no provider.
package live

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/fleetd/fleetd/internal/kube"
	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/providers/vsphere"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// Options change how the world is built, for a sandbox: the zero value
// builds it as fleet.yaml says.
type Options struct {
	// AWS, when set, adjusts each AWS provider's configuration (a
	// simulator's endpoint and credentials).
	AWS func(*aws.Config)
	// VSphere, when set, adjusts each vSphere provider's configuration (a
	// simulator's URL, CA and login).
	VSphere func(*vsphere.Config)
	// Rancher, when set, stands for the Rancher registry and downstream
	// clusters of a fleet with a rancher block (an in-memory stand-in).
	Rancher *reconcile.World
	// Provider, when set, wraps every provider built (metrics).
	Provider func(reconcile.Provider) reconcile.Provider
}

// World builds the real providers (AWS through aws-sdk-go-v2, vSphere
// through govmomi) with credentials from where fleet.yaml says, and, for a
// fleet with a rancher block, the Rancher registry and the downstream
// clusters' nodes through client-go. Building makes no request: an
// unreachable Rancher or provider shows in the first observation. A
// provider that cannot be built (its credentials cannot be read, its block
// is unusable) is in the world as one whose every call fails with why, so
// that it holds back its own clusters only.
func World(ctx context.Context, fleet *schema.Fleet, log *slog.Logger) (reconcile.World, func(context.Context), error) {
	return Options{}.World(ctx, fleet, log)
}

// World is the package's World built with o: a fleetsync.WorldFunc.
func (o Options) World(ctx context.Context, fleet *schema.Fleet, log *slog.Logger) (reconcile.World, func(context.Context), error) {
	w := reconcile.World{Providers: map[string]reconcile.Provider{}}
	if r := fleet.Spec.Rancher; r != nil && o.Rancher != nil {
		w.Registry, w.Nodes = o.Rancher.Registry, o.Rancher.Nodes
	} else if r != nil {
		reg, err := rancher.New(ctx, rancher.Config{Fleet: fleet.Spec.Name, Spec: *r, Logger: log})
		if err != nil {
			return reconcile.World{}, nil, reconcile.Stalled(err)
		}
		nodes, err := kube.New(ctx, kube.Config{Spec: *r, Logger: log})
		if err != nil {
			return reconcile.World{}, nil, reconcile.Stalled(err)
		}
		w.Registry, w.Nodes = reg, nodes
	}
	// The providers as built, unwrapped: their sessions are ended.
	built := map[string]reconcile.Provider{}
	closeAll := func(ctx context.Context) { closeProviders(ctx, built, log) }
	for _, p := range fleet.Spec.Providers {
		var (
			prov reconcile.Provider
			err  error
		)
		switch p.Type {
		case schema.ProviderAWS:
			cfg := aws.Config{Fleet: fleet.Spec.Name, Name: p.Name, Spec: *p.AWS, Logger: log}
			if o.AWS != nil {
				o.AWS(&cfg)
			}
			prov, err = aws.New(ctx, cfg)
		case schema.ProviderVSphere:
			cfg := vsphere.Config{Fleet: fleet.Spec.Name, Name: p.Name, Spec: *p.VSphere, Logger: log}
			if o.VSphere != nil {
				o.VSphere(&cfg)
			}
			prov, err = vsphere.New(ctx, cfg)
		default:
			err = reconcile.Stalled(fmt.Errorf("unknown provider type %q", p.Type))
		}
		if err != nil {
			err = fmt.Errorf("provider %s: %w", p.Name, err)
			log.Warn("Provider cannot be built: its clusters are left alone", "provider", p.Name, "error", err.Error())
			prov = &unavailable{name: p.Name, err: err}
		}
		built[p.Name] = prov
		if o.Provider != nil {
			prov = o.Provider(prov)
		}
		w.Providers[p.Name] = prov
	}
	return w, closeAll, nil
}

// unavailable is a provider that could not be built: every call fails with
// why, so Observe records it and the planner leaves its clusters as they are.
type unavailable struct {
	name string
	err  error
}

func (u *unavailable) Name() string { return u.name }
func (u *unavailable) List(context.Context) ([]reconcile.Machine, error) {
	return nil, u.err
}
func (u *unavailable) Create(context.Context, []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	return nil, u.err
}
func (u *unavailable) Delete(context.Context, []string) error { return u.err }

// closer is a provider that holds a session to end (vCenter).
type closer interface {
	Close(ctx context.Context) error
}

func closeProviders(ctx context.Context, providers map[string]reconcile.Provider, log *slog.Logger) {
	for name, p := range providers {
		if c, ok := p.(closer); ok {
			if err := c.Close(context.WithoutCancel(ctx)); err != nil {
				log.Warn("Cannot end provider session", "provider", name, "error", err)
			}
		}
	}
}
