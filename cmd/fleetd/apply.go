package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
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
	if err := os.MkdirAll(filepath.Join(dir, reconcile.StatusDir), 0o755); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	// Every change goes through an os.Root of status/, so no path or link
	// can make it write or remove anything outside status/.
	root, err := os.OpenRoot(filepath.Join(dir, reconcile.StatusDir))
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	defer root.Close()
	keep := make(map[string]bool, len(files))
	paths := make([]string, 0, len(files))
	for p := range files {
		rel, ok := strings.CutPrefix(p, reconcile.StatusDir+"/")
		if !ok {
			return fmt.Errorf("write status: %s is not in %s/", p, reconcile.StatusDir)
		}
		keep[rel] = true
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		rel := strings.TrimPrefix(p, reconcile.StatusDir+"/")
		if old, err := root.ReadFile(rel); err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		if err := root.MkdirAll(path.Dir(rel), 0o755); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
		tmp := rel + ".tmp"
		if err := root.WriteFile(tmp, files[p], 0o644); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
		if err := root.Rename(tmp, rel); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
	}
	// Remove the cluster files of clusters that are gone; anything else in
	// status/ that fleetd does not write is left alone.
	err = fs.WalkDir(root.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() || !strings.HasSuffix(p, ".yaml") || strings.Count(p, "/") != 1 {
			return nil
		}
		if !keep[p] {
			return root.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("clean status: %w", err)
	}
	return nil
}
