package main

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetd/fleetd/reconcile"
)

// exitFailed is apply's exit code when some clusters failed.
const exitFailed = 1

func init() {
	subcommands = append(subcommands, newApplyCmd)
}

func newApplyCmd() *cobra.Command {
	var (
		dryRun      bool
		concurrency int
	)
	cmd := &cobra.Command{
		Use:   "apply [DIR]",
		Short: "Run one sync of the fleet repo in DIR against the live providers",
		Long: `Apply loads the fleet repo in DIR (default .), observes the providers and
Rancher, plans, holds back what policy forbids, applies the rest and writes
the status files into DIR/status/ (committing them is left to you). It prints
the plan first. Long operations are not waited for: run apply again (or the
daemon) to move clusters further.

--dry-run plans and prints, and changes nothing, not even DIR/status/.

Exit codes: 0 success, 1 invalid fleet or some clusters failed, 2 usage or
I/O problems (including providers that cannot be reached).`,
		Args: cobra.MaximumNArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if concurrency < 1 {
				return usageError(fmt.Errorf("--concurrency must be at least 1, not %d", concurrency))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dirArg(args)
			fleet, err := loadValid(cmd.ErrOrStderr(), dir)
			if err != nil {
				return err
			}
			prev, err := readStatusDir(dir)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			w, err := liveWorld(cmd.Context(), fleet, logger)
			if err != nil {
				return err
			}
			defer closeProviders(cmd.Context(), w.Providers, logger)
			now := time.Now().UTC().Truncate(time.Second)
			r := &reconcile.Reconciler{World: w, Logger: logger, DryRun: dryRun, Apply: reconcile.ApplyOptions{Concurrency: concurrency}}
			res := r.Sync(cmd.Context(), desiredFor(fleet, dir, prev, now), prev, now)
			if err := res.Plan.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			if dryRun {
				return nil
			}
			if err := writeStatusDir(dir, res.Status); err != nil {
				return usageError(err)
			}
			if res.Requeue > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "Work is in progress: run apply again in %s\n", res.Requeue)
			}
			if err := res.Applied.Err(); err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "plan and print, change nothing")
	cmd.Flags().IntVar(&concurrency, "concurrency", 8, "clusters worked on at once")
	return cmd
}

// writeStatusDir makes DIR/status/ hold exactly files: it writes each one
// whose content differs and removes the status files that are no longer
// there. It touches nothing in status/ that fleetd does not write.
func writeStatusDir(dir string, files map[string][]byte) error {
	root := filepath.Join(dir, reconcile.StatusDir)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		target := filepath.Join(dir, filepath.FromSlash(p))
		if old, err := os.ReadFile(target); err == nil && string(old) == string(files[p]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
		tmp := target + ".tmp"
		if err := os.WriteFile(tmp, files[p], 0o644); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
		if err := os.Rename(tmp, target); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
	}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if e.IsDir() || !e.Type().IsRegular() || !strings.HasSuffix(rel, ".yaml") || strings.Count(rel, "/") != 2 {
			return nil
		}
		if _, keep := files[rel]; !keep {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("clean status: %w", err)
	}
	return nil
}
