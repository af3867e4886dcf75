package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

func init() {
	subcommands = append(subcommands, newShowCmd)
}

func newShowCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "show CLUSTER [DIR] | show --all [DIR]",
		Short: "Print a cluster's effective spec (its class with overrides applied) as YAML",
		Args: func(cmd *cobra.Command, args []string) error {
			if all {
				return cobra.MaximumNArgs(1)(cmd, args)
			}
			return cobra.RangeArgs(1, 2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var name string
			if !all {
				name, args = args[0], args[1:]
			}
			dir := dirArg(args)
			fleet, diags, err := loadDir(dir)
			if err != nil {
				return err
			}
			if fleet == nil {
				_ = writeDiagnostics(cmd.ErrOrStderr(), "text", dir, diags)
				return &exitError{code: exitInvalid, err: fmt.Errorf("%s: fleet.yaml is invalid", dir)}
			}
			if all {
				return showAll(cmd, fleet)
			}
			for _, c := range fleet.Clusters {
				if c.Spec.Name == name {
					out, err := yaml.Marshal(c.Effective)
					if err != nil {
						return err
					}
					_, err = cmd.OutOrStdout().Write(out)
					return err
				}
			}
			for _, r := range fleet.Rejected {
				if r.Name == name {
					_ = writeDiagnostics(cmd.ErrOrStderr(), "text", dir, r.Diagnostics)
					return &exitError{code: exitInvalid, err: fmt.Errorf("cluster %s (%s) is invalid", name, displayPath(dir, r.Path))}
				}
			}
			return &exitError{code: exitInvalid, err: fmt.Errorf("no cluster named %q in %s", name, dir)}
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "print every cluster's effective pools as a table")
	return cmd
}

// showAll prints one line per pool of every cluster, with each cluster's
// cost per month as the planner prices it (an empty world: everything is
// to be created, so the cost after is the spec's own cost).
func showAll(cmd *cobra.Command, fleet *schema.Fleet) error {
	plan := reconcile.Compute(reconcile.Desired{Fleet: fleet}, reconcile.Observed{}, fleet.Spec.Policy.Limits(), time.Now())
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TEAM\tCLUSTER\tPROVIDER\tVERSION\tPOOL\tROLES\tREPLICAS\tSIZE\tCOST/MONTH")
	for _, c := range fleet.Clusters {
		e := c.Effective
		cost := "?"
		if cp := plan.Cluster(e.Name); cp != nil {
			cost = cp.After.MonthlyText()
		}
		for i, p := range e.Pools {
			if i > 0 {
				cost = ""
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%10s\n", e.Team, e.Name, e.Provider, e.KubernetesVersion,
				p.Name, joinRoles(p.Roles), p.Replicas, p.SizeName, cost)
		}
	}
	fmt.Fprintf(w, "fleet\t\t\t\t\t\t\t\t%10s\n", plan.After.MonthlyText())
	return w.Flush()
}

func joinRoles(roles []string) string {
	s := ""
	for i, r := range roles {
		if i > 0 {
			s += ","
		}
		s += r
	}
	return s
}
