package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetd/fleetd/internal/fleetsync"
	"github.com/fleetd/fleetd/reconcile"
)

// exitFailed is apply's exit code when some clusters failed: the one the
// sync's decision gives (reconcile.Decision.ExitCode).
const exitFailed = reconcile.ExitFailed

func init() {
	subcommands = append(subcommands, newApplyCmd)
}

func newApplyCmd(w *wiring) *cobra.Command {
	var (
		dryRun      bool
		concurrency int
		workDir     string
		branch      string
		logs        logFlags
	)
	cmd := &cobra.Command{
		Use:   "apply [DIR]",
		Short: "Run one sync of the fleet repo in DIR against the live providers",
		Long: `Apply runs one sync of the fleet repo in DIR (default .) — the same loop
the daemon runs: load, safety facts from git history, observe the providers
and Rancher, plan, hold back what policy forbids, apply the rest, and record
the status. It prints the plan. Long operations are not waited for: run
apply again (or the daemon) to move clusters further.

When DIR is a git clone, apply syncs the committed head of its branch (or
--branch) through a clone kept in --work-dir, and commits status to the
fleet's status branch (fleet.yaml status.branch, default fleet-status) in
DIR's repository; push that branch to share it. When DIR is not a clone, its
files are applied and status is written to DIR/status/; without git history
no cluster is decommissioned and no TTL expires.

--dry-run plans and prints, and changes nothing, not even the status.

Exit codes: 0 success, 1 invalid fleet or some clusters failed, 2 usage or
I/O problems (including providers that cannot be reached or refuse the
credentials).`,
		Args: cobra.MaximumNArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if concurrency < 1 {
				return usageError(fmt.Errorf("--concurrency must be at least 1, not %d", concurrency))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dirArg(args)
			stderr := cmd.ErrOrStderr()
			logger, err := logs.logger(stderr)
			if err != nil {
				return err
			}
			src, closeSrc, err := applySource(dir, branch, workDir, stderr, logger)
			if err != nil {
				return usageError(err)
			}
			defer closeSrc()
			loop := &fleetsync.Loop{Source: src, World: w.world, DryRun: dryRun, Logger: logger,
				Apply: reconcile.ApplyOptions{Concurrency: concurrency}}
			defer loop.Close(cmd.Context())
			res := loop.Sync(cmd.Context())
			if res.Snapshot == nil {
				return usageError(res.Err)
			}
			if err := reportLoad(stderr, dir, res, false); err != nil {
				return err
			}
			if res.FailedAt == fleetsync.StageStatus || res.FailedAt == fleetsync.StageWorld {
				return usageError(res.Err)
			}
			res.Plan.Observed = observedLine(fleetsync.ObserveLive, res)
			if w := res.Previous.Warning; w != "" {
				res.Plan.Warnings = append(res.Plan.Warnings, w)
			}
			if err := res.Plan.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			if res.StatusCommit != "" {
				fmt.Fprintf(stderr, "Status recorded (%s)\n", res.StatusCommit)
			}
			if dec := res.Decision; dec.Requeue > 0 {
				fmt.Fprintf(stderr, "Work is in progress: run apply again in %s\n", dec.Requeue)
			} else if dec.RetryAfter > 0 {
				fmt.Fprintf(stderr, "Some clusters back off after transient failures: run apply again in %s\n", dec.RetryAfter.Round(time.Second))
			}
			switch {
			case res.Unreachable != nil:
				return usageError(fmt.Errorf("the fleet's providers or Rancher could not be reached or refused the credentials; the clusters there were left alone: %w", res.Err))
			case res.FailedAt == fleetsync.StageReport:
				return usageError(res.Err)
			case res.Decision.ExitCode() != reconcile.ExitOK:
				return &exitError{code: res.Decision.ExitCode(), err: res.Err}
			case len(res.Fleet.Rejected) > 0:
				return &exitError{code: exitInvalid, err: fmt.Errorf("%d cluster files are rejected: those clusters are held at their last valid version", len(res.Fleet.Rejected))}
			}
			return nil
		},
	}
	logs.add(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "plan and print, change nothing")
	cmd.Flags().IntVar(&concurrency, "concurrency", 8, "clusters worked on at once")
	cmd.Flags().StringVar(&workDir, "work-dir", "", "where apply keeps its clone of a git DIR (default: a folder of the user cache)")
	cmd.Flags().StringVar(&branch, "branch", "", "the branch of a git DIR to apply (default: the checked-out branch)")
	return cmd
}
