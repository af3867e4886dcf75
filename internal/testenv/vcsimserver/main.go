package vcsimserver

import (
	"context"
	"flag"
	"fmt"
	"io"
)

// Main is vcsim-lite: it parses args, serves the simulator until ctx ends and
// prints, once serving, shell assignments that say where and what:
//
//	VCSIM_URL=https://127.0.0.1:8989/sdk
//	VCSIM_CA_FILE=/path/ca.pem      (with -ca-file)
//	VCSIM_DATACENTER=DC0 ... VCSIM_TEMPLATE=fleetd-template
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vcsim-lite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8989", "address to serve HTTPS on (port 0 picks a free port)")
	fs.IntVar(&o.Clusters, "clusters", 1, "compute clusters in the model")
	fs.IntVar(&o.HostsPerCluster, "hosts", 3, "hosts per compute cluster")
	fs.IntVar(&o.VMs, "vms", 2, "VMs per cluster and standalone host in the model (one becomes the template)")
	fs.StringVar(&o.Template, "template", DefaultTemplate, "name of the template VM")
	fs.StringVar(&o.Username, "username", "", "the only accepted user (default: any non-empty user and password)")
	fs.StringVar(&o.Password, "password", "", "the password of -username")
	caFile := fs.String("ca-file", "", "write the server's self-signed certificate, the CA to trust, to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("vcsim-lite: unexpected arguments %q", fs.Args())
	}
	if (o.Username == "") != (o.Password == "") {
		return fmt.Errorf("vcsim-lite: -username and -password go together")
	}
	s, err := Start(ctx, o)
	if err != nil {
		return err
	}
	defer s.Close()
	if *caFile != "" {
		if err := s.WriteCA(*caFile); err != nil {
			return fmt.Errorf("vcsim-lite: %w", err)
		}
	}
	fmt.Fprintf(stdout, "VCSIM_URL=%s\n", s.URL)
	if *caFile != "" {
		fmt.Fprintf(stdout, "VCSIM_CA_FILE=%s\n", *caFile)
	}
	fmt.Fprintf(stdout, "VCSIM_DATACENTER=%s\nVCSIM_COMPUTE_CLUSTER=%s\nVCSIM_DATASTORE=%s\nVCSIM_NETWORK=%s\nVCSIM_TEMPLATE=%s\n",
		Datacenter, ComputeCluster, Datastore, Network, s.Template)
	<-ctx.Done()
	return nil
}
