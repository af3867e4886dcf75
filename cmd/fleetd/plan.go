package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetd/fleetd/internal/fleetsync"
	"github.com/fleetd/fleetd/reconcile"
)

// exitHeldBack is plan's exit code with --detailed-exitcode when the policy
// holds back some of the plan's actions: merged, the fleet would stay
// blocked until someone acts.
const exitHeldBack = 3

// exitChanges is plan's exit code with --detailed-exitcode when the plan
// changes something.
const exitChanges = 2

func init() {
	subcommands = append(subcommands, newPlanCmd)
}

func newPlanCmd(w *wiring) *cobra.Command {
	var (
		observed, output, now  string
		statusRef              string
		detailed, allowMissing bool
		logs                   logFlags
	)
	cmd := &cobra.Command{
		Use:   "plan [DIR]",
		Short: "Show what a sync of the fleet repo in DIR would do",
		Long: `Plan loads the fleet repo in DIR (default .) and shows what one sync would do:
clusters created, updated and decommissioned, machines added and removed,
access bound and unbound, what policy holds back and why, and the cost per
month now, after this sync, and once held-back actions are done. It runs the
same loop as apply and the daemon, and changes nothing.

Safety facts (which commit removed a cluster's file, whether it was
protected, when a temporary cluster's file was created) come from the git
history of DIR's clone; outside a clone, nothing is decommissioned and no
TTL expires, and the plan says so.

--observed=status (the default) plans against the state fleetd last
recorded, and needs no credentials, for merge request pipelines. It reads
--status-ref when given; in a clone, status/ of HEAD when fleet.yaml keeps
status on the checked-out branch, else origin/<status branch>, else the
local <status branch>; if none can be read, plan fails unless
--allow-missing-status. Outside a clone it reads DIR/status/, or plans the
creation of everything with a warning. The plan says what it planned against.
--observed=live asks the providers and Rancher.

-o markdown writes a merge request comment grouped by team with the cost delta.

Exit codes: 0 success, 1 invalid fleet (diagnostics on stderr), 2 usage or I/O
problems (including a status branch that cannot be read); with
--detailed-exitcode, 0 no changes, 1 error, 2 changes, 3 changes of which
the policy holds some back (a protected cluster's removal, the prune guard,
a limit): merged as it is, the fleet stays blocked until someone acts, and
the plan's "Held back by the policy" lines say what to do.`,
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
			stderr := cmd.ErrOrStderr()
			mode := fleetsync.ObserveStatus
			if observed == "live" {
				mode = fleetsync.ObserveLive
			}
			src := &fleetsync.DirSource{Dir: dir, StatusRef: statusRef, AllowMissingStatus: allowMissing}
			logger, err := logs.logger(stderr)
			if err != nil {
				return err
			}
			loop := &fleetsync.Loop{Source: src, World: w.world, Observe: mode, DryRun: true,
				Logger: logger, Now: func() time.Time { return at }}
			defer loop.Close(cmd.Context())
			res := loop.Sync(cmd.Context())
			if res.Snapshot == nil {
				return usageError(res.Err)
			}
			if err := reportLoad(stderr, dir, res, true); err != nil {
				return err
			}
			switch res.FailedAt {
			case fleetsync.StageStatus, fleetsync.StageWorld:
				if errors.Is(res.Err, fleetsync.ErrNoStatus) {
					return usageError(fmt.Errorf("%w (fleet.yaml keeps status on branch %s)", res.Err, res.Fleet.StatusBranch()))
				}
				return usageError(res.Err)
			}
			p := &res.Plan
			p.Observed = observedLine(mode, res)
			if w := res.Previous.Warning; w != "" && mode == fleetsync.ObserveStatus {
				p.Warnings = append(p.Warnings, w)
				fmt.Fprintf(stderr, "Warning: %s\n", w)
			}
			if res.Desired.FactsError != "" {
				p.Warnings = append(p.Warnings, "safety facts unavailable ("+res.Desired.FactsError+"): no cluster is decommissioned and no TTL expires")
			}
			if err := writePlan(cmd.OutOrStdout(), p, output); err != nil {
				return err
			}
			// A plan is a read: anything it could not observe, a whole peer or
			// one cluster's nodes, is worth a failing exit.
			if unobserved := res.Unreachable; unobserved != nil || res.FailedAt == fleetsync.StageObserve {
				if unobserved == nil {
					unobserved = res.Err
				}
				return usageError(fmt.Errorf("the plan leaves alone what could not be observed: %w", unobserved))
			}
			switch {
			case detailed && p.HeldBack() > 0:
				return &exitError{code: exitHeldBack, err: fmt.Errorf("the policy holds back %d of the plan's actions: see \"Held back by the policy\" and \"Destroys\" at the top of the plan", p.HeldBack())}
			case detailed && p.HasChanges():
				return &exitError{code: exitChanges}
			}
			return nil
		},
	}
	logs.add(cmd)
	f := cmd.Flags()
	f.StringVar(&observed, "observed", "status", "where the observed state comes from: status (the recorded status) or live")
	f.StringVarP(&output, "output", "o", "text", "output format: text, markdown or json")
	f.BoolVar(&detailed, "detailed-exitcode", false, "exit 0 without changes, 1 on errors, 2 when the plan changes something, 3 when the policy holds some of it back")
	f.StringVar(&now, "now", "", "plan as of this time (RFC 3339), for TTLs; default the current time")
	f.StringVar(&statusRef, "status-ref", "", "read status/ from this revision of DIR's git clone (default: see above)")
	f.BoolVar(&allowMissing, "allow-missing-status", false, "plan against an empty world when the status branch cannot be read, instead of failing")
	return cmd
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
