// Command fleetd-demo shows fleetd's main job on embedded defaults, against
// simulators on 127.0.0.1 that live in this command only, never in the
// fleetd binary.
//
//	fleetd-demo [--fleetd bin/fleetd] [FLEET_DIR]
//	    runs `fleetd run`, the daemon, against the sandbox: it converges the
//	    example fleet, pushes a commit and sends GitHub's signed webhook,
//	    converges again, removes a cluster, and stops the daemon.
//	fleetd-demo up --env-file FILE [FLEET_DIR]
//	    starts the sandbox (vCenter simulator, EC2 server, a seeded fleet
//	    repository, and Rancher played on the test kube-apiserver when it is
//	    built) and writes the environment that points fleetd at it.
//	fleetd-demo loop [FLEET_DIR]
//	    runs the sync loop in-process on a simulated clock: registration, a
//	    merge, a scale-down through drain and Rancher, a TTL expiry.
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
