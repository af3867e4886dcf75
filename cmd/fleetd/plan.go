package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/spf13/cobra"

	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// exitChanges is plan's exit code with --detailed-exitcode when the plan
// changes something.
const exitChanges = 2

func init() {
	subcommands = append(subcommands, newPlanCmd)
}

func newPlanCmd() *cobra.Command {
	var (
		observed, output, now string
		statusRef             string
		detailed              bool
	)
	cmd := &cobra.Command{
		Use:   "plan [DIR]",
		Short: "Show what a sync of the fleet repo in DIR would do",
		Long: `Plan loads the fleet repo in DIR (default .) and shows what one sync would do:
clusters created, updated and decommissioned, machines added and removed,
access bound and unbound, what policy holds back and why, and the cost per
month before and after.

--observed=status (the default) plans against the state fleetd last recorded
in DIR/status/ and needs no credentials, for merge request pipelines; without
DIR/status/ the world is empty and the plan creates everything.
--observed=live asks the providers and Rancher.

-o markdown writes a merge request comment grouped by team with the cost delta.

Exit codes: 0 success, 1 invalid fleet (diagnostics on stderr), 2 usage or I/O
problems; with --detailed-exitcode, 2 also when the plan changes something.`,
		Args: cobra.MaximumNArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if err := checkFormat(output, "text", "markdown", "json"); err != nil {
				return err
			}
			if observed != "status" && observed != "live" {
				return usageError(fmt.Errorf("unknown --observed %q: want status or live", observed))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			at, err := parseNow(now)
			if err != nil {
				return err
			}
			dir := dirArg(args)
			fleet, err := loadValid(cmd.ErrOrStderr(), dir)
			if err != nil {
				return err
			}
			prev, err := readPlanStatus(dir, fleet, statusRef)
			if err != nil {
				return err
			}
			var obs reconcile.Observed
			if observed == "live" {
				logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
				w, err := liveWorld(cmd.Context(), fleet, logger)
				if err != nil {
					return err
				}
				defer closeProviders(cmd.Context(), w.Providers, logger)
				var oerr error
				obs, oerr = reconcile.Observe(cmd.Context(), fleet, w, reconcile.ObserveOptions{})
				if oerr != nil {
					logger.Warn("Observation incomplete", "error", oerr)
				}
				mergeTemplates(&obs, prev)
			} else {
				obs = prev.Observed()
			}
			d := desiredFor(fleet, dir, prev, at)
			p := reconcile.Compute(d, obs, fleet.Spec.Policy.Limits(), at)
			if err := writePlan(cmd.OutOrStdout(), &p, output); err != nil {
				return err
			}
			if detailed && p.HasChanges() {
				return &exitError{code: exitChanges}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&observed, "observed", "status", "where the observed state comes from: status (DIR/status/) or live")
	f.StringVarP(&output, "output", "o", "text", "output format: text, markdown or json")
	f.BoolVar(&detailed, "detailed-exitcode", false, "exit 2 when the plan changes something")
	f.StringVar(&now, "now", "", "plan as of this time (RFC 3339), for TTLs; default the current time")
	f.StringVar(&statusRef, "status-ref", "", "read status/ from this revision of DIR's git clone (default: DIR/status/ when present, else origin/<status branch> when the clone has it)")
	return cmd
}

// readPlanStatus reads the last observed state for plan: from the revision
// statusRef of DIR's clone when given; otherwise from DIR/status/ when it
// exists, else from origin/<status branch> when DIR is a clone that has it
// (the fleet keeps status on its own branch); with neither, the world is
// empty and the plan creates everything.
func readPlanStatus(dir string, fleet *schema.Fleet, statusRef string) (*reconcile.StatusSet, error) {
	if statusRef == "" {
		if info, err := os.Stat(filepath.Join(dir, reconcile.StatusDir)); err == nil && info.IsDir() {
			return readStatusDir(dir)
		}
	}
	ref := statusRef
	if ref == "" {
		branch := fleet.Spec.Status.Branch
		if branch == "" {
			branch = schema.DefaultStatusBranch
		}
		ref = "origin/" + branch
	}
	files, err := fgit.ReadLocalFiles(dir, ref, reconcile.StatusDir)
	switch {
	case err == nil:
	case statusRef == "" && (errors.Is(err, gogit.ErrRepositoryNotExists) || errors.Is(err, fgit.ErrRevisionNotFound)):
		return &reconcile.StatusSet{Clusters: map[string]*reconcile.ClusterStatus{}}, nil
	default:
		return nil, usageError(fmt.Errorf("cannot read status from %s: %w", ref, err))
	}
	set, err := reconcile.ReadStatusFiles(files)
	if err != nil {
		return nil, usageError(fmt.Errorf("status at %s: %w", ref, err))
	}
	return set, nil
}

func writePlan(w io.Writer, p *reconcile.Plan, format string) error {
	switch format {
	case "json":
		b, err := p.JSON()
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "markdown":
		return p.WriteMarkdown(w)
	}
	return p.WriteText(w)
}

func parseNow(s string) (time.Time, error) {
	if s == "" {
		return time.Now().UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageError(fmt.Errorf("--now: %w", err))
	}
	return t, nil
}

// loadValid loads DIR, printing its diagnostics to stderr; a fleet with
// errors is exit 1.
func loadValid(stderr io.Writer, dir string) (*schema.Fleet, error) {
	fleet, diags, err := loadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(diags) > 0 {
		if err := writeDiagnostics(stderr, "text", dir, diags); err != nil {
			return nil, err
		}
	}
	if diags.HasErrors() || fleet == nil {
		errs, _ := countDiags(diags)
		return nil, &exitError{code: exitInvalid, err: fmt.Errorf("%s: the fleet is invalid (%s): nothing is planned", dir, plural(errs, "error"))}
	}
	return fleet, nil
}

// readStatusDir reads DIR/status/; a missing one is an empty status.
func readStatusDir(dir string) (*reconcile.StatusSet, error) {
	set, err := reconcile.ReadStatus(os.DirFS(dir))
	if err != nil {
		return nil, usageError(fmt.Errorf("cannot read %s: %w", filepath.Join(dir, reconcile.StatusDir), err))
	}
	return set, nil
}

// liveWorld builds the live world of a fleet.
func liveWorld(ctx context.Context, fleet *schema.Fleet, logger *slog.Logger) (reconcile.World, error) {
	providers, registry, nodes, err := buildWorldFunc(ctx, fleet, logger)
	if err != nil {
		return reconcile.World{}, usageError(fmt.Errorf("cannot reach the fleet's providers: %w", err))
	}
	return reconcile.World{Providers: providers, Registry: registry, Nodes: nodes}, nil
}

// buildWorldFunc is buildWorld; tests replace it with fakes.
var buildWorldFunc = buildWorld

func mergeTemplates(o *reconcile.Observed, prev *reconcile.StatusSet) {
	for h, t := range prev.Observed().Templates {
		if _, ok := o.Templates[h]; ok {
			continue
		}
		if o.Templates == nil {
			o.Templates = map[string]reconcile.Template{}
		}
		o.Templates[h] = t
	}
}

// desiredFor builds the desired state of a loaded fleet in dir. Without the
// git history, a temporary cluster's creation time comes from its recorded
// expiry, else it is taken as created now (the change being planned creates
// it).
func desiredFor(fleet *schema.Fleet, dir string, prev *reconcile.StatusSet, now time.Time) reconcile.Desired {
	d := reconcile.Desired{Fleet: fleet, Revision: fgit.LocalHead(dir), CreatedAt: map[string]time.Time{}, Protected: prev.Protected()}
	for _, c := range fleet.Clusters {
		if c.Effective.TTL <= 0 {
			continue
		}
		created := now
		if st := prev.Clusters[c.Effective.Name]; st != nil && st.ExpiresAt != nil {
			created = st.ExpiresAt.Add(-c.Effective.TTL)
		}
		d.CreatedAt[c.Effective.Name] = created
	}
	return d
}
