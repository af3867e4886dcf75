// Command fleetd-demo runs fleetd's main job, the sync loop, on embedded
// defaults: the example fleet repo in a local git repository, VMware's vCenter
// simulator and an EC2 protocol server on 127.0.0.1 as the providers, and a
// simulated Rancher. It converges the fleet, writes status commits to the
// fleet-status branch, then plays a merge (a scale-up and a removed cluster)
// and the expiry of a temporary cluster, and converges again. The simulators
// live in this command only, never in the fleetd binary.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "fleetd-demo: %v\n", err)
		os.Exit(1)
	}
}
