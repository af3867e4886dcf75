package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	yaml "go.yaml.in/yaml/v3"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

func init() {
	subcommands = append(subcommands, newShowCmd)
}

// KindEffectiveCluster is the kind of what show prints: a cluster file with
// its class and overrides applied and every reference resolved.
const KindEffectiveCluster = "EffectiveCluster"

func newShowCmd(*wiring) *cobra.Command {
	var all bool
	var output string
	cmd := &cobra.Command{
		Use:   "show CLUSTER [DIR] | show --all [DIR]",
		Short: "Print a cluster's effective spec (its class with overrides applied)",
		Long: `Show prints the effective spec of CLUSTER in the fleet repo DIR (default
.): its class with the cluster file's overrides applied, sizes resolved for
its provider and access expanded into LDAP group bindings, in the order of
the cluster schema, as kind EffectiveCluster.

--all prints every cluster's pools as a table with the cost per month;
invalid clusters are listed as invalid and left out of the totals, and the
command then exits 1.`,
		Example: `  # The effective spec of one cluster, as YAML or JSON
  fleetd show payments-prod
  fleetd show payments-prod ./fleet -o json

  # Every cluster's pools and cost per month
  fleetd show --all ./fleet`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all {
				return cobra.MaximumNArgs(1)(cmd, args)
			}
			return cobra.RangeArgs(1, 2)(cmd, args)
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if all || len(args) > 0 {
				return nil, cobra.ShellCompDirectiveFilterDirs
			}
			return clusterNames("."), cobra.ShellCompDirectiveNoFileComp
		},
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if all {
				return checkFormat(output, "table", "yaml", "json")
			}
			return checkFormat(output, "yaml", "json")
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
				return showAll(cmd, dir, fleet, output)
			}
			for _, c := range fleet.Clusters {
				if c.Spec.Name == name {
					return writeShown(cmd.OutOrStdout(), output, shownOf(c))
				}
			}
			for _, r := range fleet.Rejected {
				if r.Name == name {
					_ = writeDiagnostics(cmd.ErrOrStderr(), "text", dir, r.Diagnostics)
					return &exitError{code: exitInvalid, err: fmt.Errorf("cluster %s (%s) is invalid", name, displayPath(dir, r.Path))}
				}
			}
			hint := ""
			names := clusterNamesOf(fleet)
			if s := suggestCluster(name, names); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			return &exitError{code: exitInvalid, err: fmt.Errorf("no cluster named %q in %s%s; clusters: %s",
				reconcile.EscapeText(name), dir, hint, strings.Join(firstN(names, 20), ", "))}
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "print every cluster's effective pools as a table")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json (default yaml); with --all: table, yaml or json (default table)")
	cmd.PreRunE = wrapDefaultOutput(cmd.PreRunE, &output, &all)
	return cmd
}

// wrapDefaultOutput fills in the default -o, which depends on --all.
func wrapDefaultOutput(next func(*cobra.Command, []string) error, output *string, all *bool) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if *output == "" {
			*output = "yaml"
			if *all {
				*output = "table"
			}
		}
		return next(cmd, args)
	}
}

// suggestCluster finds the cluster a mistyped name most likely means: a
// close spelling, else the one whose dash-separated words start with the
// name's words in order (pay-prod: payments-prod).
func suggestCluster(name string, names []string) string {
	if s := schema.Suggest(name, names); s != "" {
		return s
	}
	words := strings.Split(name, "-")
	for _, n := range names {
		cand := strings.Split(n, "-")
		i := 0
		for _, c := range cand {
			if i < len(words) && words[i] != "" && strings.HasPrefix(c, words[i]) {
				i++
			}
		}
		if i == len(words) {
			return n
		}
	}
	return ""
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), "...")
	}
	return s
}

// shownCluster is what show prints: the effective spec in the order of the
// cluster schema's fields, with apiVersion and kind.
type shownCluster struct {
	APIVersion        string                   `json:"apiVersion" yaml:"apiVersion"`
	Kind              string                   `json:"kind" yaml:"kind"`
	Name              string                   `json:"name" yaml:"name"`
	Team              string                   `json:"team" yaml:"team"`
	Provider          string                   `json:"provider" yaml:"provider"`
	ProviderType      string                   `json:"providerType" yaml:"providerType"`
	Class             string                   `json:"class" yaml:"class"`
	KubernetesVersion string                   `json:"kubernetesVersion" yaml:"kubernetesVersion"`
	Pools             []shownPool              `json:"pools" yaml:"pools"`
	Access            []schema.EffectiveAccess `json:"access" yaml:"access"`
	TTL               string                   `json:"ttl,omitempty" yaml:"ttl,omitempty"`
	Protected         bool                     `json:"protected,omitempty" yaml:"protected,omitempty"`
	Paused            bool                     `json:"paused,omitempty" yaml:"paused,omitempty"`
	Labels            map[string]string        `json:"labels,omitempty" yaml:"labels,omitempty"`
	Path              string                   `json:"path" yaml:"path"`
}

type shownPool struct {
	Name     string       `json:"name" yaml:"name"`
	Roles    []string     `json:"roles" yaml:"roles,flow"`
	Replicas int          `json:"replicas" yaml:"replicas"`
	Size     string       `json:"size" yaml:"size"`
	Machine  shownMachine `json:"machine" yaml:"machine"`
}

type shownMachine struct {
	InstanceType string `json:"instanceType,omitempty" yaml:"instanceType,omitempty"`
	Image        string `json:"image,omitempty" yaml:"image,omitempty"`
	CPUs         int    `json:"cpus,omitempty" yaml:"cpus,omitempty"`
	MemoryMiB    int    `json:"memoryMiB,omitempty" yaml:"memoryMiB,omitempty"`
	DiskGiB      int    `json:"diskGiB,omitempty" yaml:"diskGiB,omitempty"`
	Template     string `json:"template,omitempty" yaml:"template,omitempty"`
}

func shownOf(c *schema.Cluster) shownCluster {
	e := c.Effective
	s := shownCluster{
		APIVersion: schema.APIVersion, Kind: KindEffectiveCluster, Name: e.Name, Team: e.Team, Provider: e.Provider,
		ProviderType: e.ProviderType, Class: e.Class, KubernetesVersion: e.KubernetesVersion, Access: e.Access,
		TTL: e.TTLText, Protected: e.Protected, Paused: e.Paused, Labels: e.Labels, Path: c.Path,
	}
	if s.Access == nil {
		s.Access = []schema.EffectiveAccess{}
	}
	for _, p := range e.Pools {
		m := p.Machine
		s.Pools = append(s.Pools, shownPool{Name: p.Name, Roles: p.Roles, Replicas: p.Replicas, Size: p.SizeName,
			Machine: shownMachine{InstanceType: m.InstanceType, Image: m.Image, CPUs: m.CPUs, MemoryMiB: m.MemoryMiB, DiskGiB: m.DiskGiB, Template: m.Template}})
	}
	return s
}

func writeShown(w io.Writer, format string, v any) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return enc.Close()
}

// shownInvalid is an invalid cluster file in show --all -o yaml|json.
type shownInvalid struct {
	Path        string   `json:"path" yaml:"path"`
	Name        string   `json:"name,omitempty" yaml:"name,omitempty"`
	Team        string   `json:"team,omitempty" yaml:"team,omitempty"`
	Diagnostics []string `json:"diagnostics" yaml:"diagnostics"`
}

// shownList is show --all -o yaml|json.
type shownList struct {
	APIVersion string         `json:"apiVersion" yaml:"apiVersion"`
	Kind       string         `json:"kind" yaml:"kind"`
	Items      []shownCluster `json:"items" yaml:"items"`
	Invalid    []shownInvalid `json:"invalid" yaml:"invalid"`
}

// showAll prints one line per pool of every cluster, with each cluster's
// cost per month as the planner prices it (an empty world: everything is
// to be created, so the cost after is the spec's own cost). Invalid clusters
// are listed as such and left out of the totals; then it exits 1.
func showAll(cmd *cobra.Command, dir string, fleet *schema.Fleet, output string) error {
	var err error
	if output != "table" {
		list := shownList{APIVersion: schema.APIVersion, Kind: KindEffectiveCluster + "List", Items: []shownCluster{}, Invalid: []shownInvalid{}}
		for _, c := range fleet.Clusters {
			list.Items = append(list.Items, shownOf(c))
		}
		for _, r := range fleet.Rejected {
			inv := shownInvalid{Path: r.Path, Name: r.Name, Team: r.Team}
			for _, d := range r.Diagnostics {
				if d.Severity == schema.SeverityError {
					inv.Diagnostics = append(inv.Diagnostics, d.String())
				}
			}
			list.Invalid = append(list.Invalid, inv)
		}
		err = writeShown(cmd.OutOrStdout(), output, list)
	} else {
		err = showTable(cmd.OutOrStdout(), fleet)
	}
	if err != nil {
		return err
	}
	if n := len(fleet.Rejected); n > 0 {
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s: %s invalid and left out of the totals: run fleetd validate %s",
			dir, plural(n, "cluster file"), dir)}
	}
	return nil
}

func showTable(w io.Writer, fleet *schema.Fleet) error {
	plan := reconcile.Compute(reconcile.Desired{Fleet: fleet}, reconcile.Observed{}, fleet.Spec.Policy.Limits(), time.Now())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEAM\tCLUSTER\tPROVIDER\tVERSION\tPOOL\tROLES\tREPLICAS\tSIZE\tCOST/MONTH")
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%10s\n", e.Team, e.Name, e.Provider, e.KubernetesVersion,
				p.Name, strings.Join(p.Roles, ","), p.Replicas, p.SizeName, cost)
		}
	}
	for _, r := range fleet.Rejected {
		team, name := r.Team, r.Name
		if team == "" {
			team = "?"
		}
		if name == "" {
			name = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\tINVALID: %s\t\t\t\t\t\t%10s\n", reconcile.EscapeText(team), reconcile.EscapeText(name), reconcile.EscapeText(r.Path), "-")
	}
	total := "fleet"
	if n := len(fleet.Rejected); n > 0 {
		total = fmt.Sprintf("fleet (excluding %s)", plural(n, "invalid cluster"))
	}
	fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t\t%10s\n", total, plan.After.MonthlyText())
	return tw.Flush()
}

func clusterNamesOf(fleet *schema.Fleet) []string {
	var names []string
	for _, c := range fleet.Clusters {
		names = append(names, c.Spec.Name)
	}
	for _, r := range fleet.Rejected {
		if r.Name != "" {
			names = append(names, r.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// clusterNames lists the cluster names of the fleet in dir, for shell
// completion; nothing when it cannot be loaded.
func clusterNames(dir string) []string {
	fleet, _, err := loadDir(dir)
	if err != nil || fleet == nil {
		return nil
	}
	return clusterNamesOf(fleet)
}
