package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// buildWorld builds the live providers, Rancher registry and downstream node
// access of a fleet. registry and nodes are nil for a fleet without a rancher
// block.
func buildWorld(ctx context.Context, fleet *schema.Fleet, logger *slog.Logger) (providers map[string]reconcile.Provider, registry reconcile.Registry, nodes reconcile.Nodes, err error) {
	return nil, nil, nil, errors.New("no provider implementation wired yet")
}
