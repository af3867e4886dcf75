// Command fleetd is a GitOps reconciler for fleets of Kubernetes clusters.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the default handling returns, so a second
	// SIGINT or SIGTERM ends a graceful stop that takes too long.
	context.AfterFunc(ctx, stop)
	code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
