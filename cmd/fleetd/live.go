package main

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

// buildWorld builds the live providers, Rancher registry and downstream node
// access of a fleet. registry and nodes are nil for a fleet without a rancher
// block. Providers that hold a session implement closer; closeWorld ends them.
func buildWorld(ctx context.Context, fleet *schema.Fleet, logger *slog.Logger) (providers map[string]reconcile.Provider, registry reconcile.Registry, nodes reconcile.Nodes, err error) {
	if r := fleet.Spec.Rancher; r != nil {
		// Both resolve the token and CA now and make no request: an
		// unreachable Rancher shows up in the first observation.
		if registry, err = rancher.New(ctx, rancher.Config{Fleet: fleet.Spec.Name, Spec: *r, Logger: logger}); err != nil {
			return nil, nil, nil, err
		}
		if nodes, err = kube.New(ctx, kube.Config{Spec: *r, Logger: logger}); err != nil {
			return nil, nil, nil, err
		}
	}
	providers = map[string]reconcile.Provider{}
	for _, p := range fleet.Spec.Providers {
		// Each provider attaches its name and the fleet to its own logs.
		plog := logger
		var (
			prov reconcile.Provider
			perr error
		)
		switch p.Type {
		case schema.ProviderAWS:
			prov, perr = aws.New(ctx, aws.Config{Fleet: fleet.Spec.Name, Name: p.Name, Spec: *p.AWS, Logger: plog})
		case schema.ProviderVSphere:
			prov, perr = vsphere.New(ctx, vsphere.Config{Fleet: fleet.Spec.Name, Name: p.Name, Spec: *p.VSphere, Logger: plog})
		default:
			perr = fmt.Errorf("unknown provider type %q", p.Type)
		}
		if perr != nil {
			closeProviders(ctx, providers, logger)
			return nil, nil, nil, fmt.Errorf("provider %s: %w", p.Name, perr)
		}
		providers[p.Name] = prov
	}
	return providers, registry, nodes, nil
}

// closer is a provider that holds a session to end (vCenter).
type closer interface {
	Close(ctx context.Context) error
}

// closeProviders ends the providers' sessions, so a run leaves no session
// behind on vCenter.
func closeProviders(ctx context.Context, providers map[string]reconcile.Provider, logger *slog.Logger) {
	for name, p := range providers {
		if c, ok := p.(closer); ok {
			if err := c.Close(context.WithoutCancel(ctx)); err != nil {
				logger.Warn("Cannot end provider session", "provider", name, "error", err)
			}
		}
	}
}
