package fleetsync

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/fleetd/fleetd/internal/kube"
	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/providers/vsphere"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// WorldFunc builds the live world of a fleet: its providers, and Rancher
// when fleet.yaml names it. The returned func ends provider sessions.
type WorldFunc func(ctx context.Context, fleet *schema.Fleet, log *slog.Logger) (reconcile.World, func(context.Context), error)

// LiveWorld builds the real providers (AWS through aws-sdk-go-v2, vSphere
// through govmomi) with credentials from where fleet.yaml says, and, for a
// fleet with a rancher block, the Rancher registry and the downstream
// clusters' nodes through client-go. Building makes no request: an
// unreachable Rancher shows in the first observation.
func LiveWorld(ctx context.Context, fleet *schema.Fleet, log *slog.Logger) (reconcile.World, func(context.Context), error) {
	w := reconcile.World{Providers: map[string]reconcile.Provider{}}
	if r := fleet.Spec.Rancher; r != nil {
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
	closeAll := func(ctx context.Context) { closeProviders(ctx, w.Providers, log) }
	for _, p := range fleet.Spec.Providers {
		var (
			prov reconcile.Provider
			err  error
		)
		switch p.Type {
		case schema.ProviderAWS:
			prov, err = aws.New(ctx, aws.Config{Fleet: fleet.Spec.Name, Name: p.Name, Spec: *p.AWS, Logger: log})
		case schema.ProviderVSphere:
			prov, err = vsphere.New(ctx, vsphere.Config{Fleet: fleet.Spec.Name, Name: p.Name, Spec: *p.VSphere, Logger: log})
		default:
			err = reconcile.Stalled(fmt.Errorf("unknown provider type %q", p.Type))
		}
		if err != nil {
			closeAll(ctx)
			return reconcile.World{}, nil, fmt.Errorf("provider %s: %w", p.Name, err)
		}
		w.Providers[p.Name] = prov
	}
	return w, closeAll, nil
}

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

// worldKey digests what the live world is built from: a changed provider or
// Rancher block rebuilds it.
func worldKey(f *schema.Fleet) string {
	b, _ := json.Marshal(struct {
		Name      string
		Providers []schema.Provider
		Rancher   *schema.Rancher
	}{f.Spec.Name, f.Spec.Providers, f.Spec.Rancher})
	return fmt.Sprintf("%x", sha256.Sum256(b))
}
