// Command vcsim-lite serves govmomi's vCenter simulator on 127.0.0.1 over
// HTTPS, with a template ready to clone, for fleetd's demos and tests: the
// vcsim binary itself cannot be installed with go install.
//
//	vcsim-lite -listen 127.0.0.1:8989 -ca-file /tmp/vcsim-ca.pem
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := vcsimserver.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(1)
	}
}
