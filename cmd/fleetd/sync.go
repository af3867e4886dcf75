package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	gogit "github.com/go-git/go-git/v5"
	"go.yaml.in/yaml/v3"

	"github.com/fleetd/fleetd/internal/fleetsync"
	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// reportLoad prints the diagnostics of a sync's load and returns exit 1 for
// an invalid fleet.yaml (nothing was planned), and with strict for rejected
// cluster files too.
func reportLoad(stderr io.Writer, dir string, res *fleetsync.Result, strict bool) error {
	if len(res.Diagnostics) > 0 {
		if err := writeDiagnostics(stderr, "text", dir, res.Diagnostics); err != nil {
			return err
		}
	}
	if res.Snapshot != nil && (res.Fleet == nil || strict && res.Diagnostics.HasErrors()) {
		errs, _ := countDiags(res.Diagnostics)
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s: the fleet is invalid (%s): nothing is planned", dir, plural(errs, "error"))}
	}
	return nil
}

// defaultWorkDir is where `fleetd apply` keeps its clone of a fleet repo:
// a folder of the user's cache named after the repository's path.
func defaultWorkDir(root string) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder for the work directory (%w): pass --work-dir", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "fleetd", "apply", fmt.Sprintf("%x", sha256.Sum256([]byte(abs)))[:16]), nil
}

// applySource returns where `fleetd apply DIR` reads the fleet and writes
// status: for a git clone, the committed branch through a kept clone (the
// loop the daemon runs), with status committed to the status branch of DIR's
// repository; for a plain directory, its files, with status in DIR/status/.
func applySource(dir, branch, workDir string, stderr io.Writer, logger *slog.Logger) (fleetsync.Source, func(), error) {
	local, err := fgit.OpenLocal(dir)
	if errors.Is(err, gogit.ErrRepositoryNotExists) {
		fmt.Fprintf(stderr, "%s is not a git clone: its files are applied and status is written to %s; without git history no cluster is decommissioned and no TTL expires\n",
			dir, filepath.Join(dir, reconcile.StatusDir))
		return &fleetsync.DirSource{Dir: dir}, func() {}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	root := local.Root()
	if root == "" {
		return nil, nil, fmt.Errorf("%s is a bare repository: apply a clone with a work tree, or run the daemon", dir)
	}
	absDir, _ := filepath.Abs(dir)
	if r, err := filepath.EvalSymlinks(absDir); err == nil {
		absDir = r
	}
	if r, err := filepath.EvalSymlinks(root); err == nil && r != absDir {
		return nil, nil, fmt.Errorf("%s is inside the clone %s: apply the fleet repo's root", dir, root)
	}
	if branch == "" {
		_, b, err := local.Head()
		if err != nil {
			return nil, nil, err
		}
		if b == "" {
			return nil, nil, fmt.Errorf("%s has a detached HEAD: name the branch to apply with --branch", dir)
		}
		branch = b
	}
	if workDir == "" {
		if workDir, err = defaultWorkDir(root); err != nil {
			return nil, nil, err
		}
	}
	// Status commits continue the status branch the clone fetched from its
	// origin, when it has no local one yet.
	sb := fleetFileStatus(root).StatusBranch()
	if created, err := local.SeedBranch(sb, "refs/remotes/origin/"+sb); err != nil {
		return nil, nil, err
	} else if created {
		fmt.Fprintf(stderr, "Created the local branch %s from origin/%s to continue its status history\n", sb, sb)
	}
	fmt.Fprintf(stderr, "Applying the committed branch %s of %s (uncommitted changes are not applied); status is committed to its branch %s\n", branch, root, sb)
	src := &fleetsync.RepoSource{Options: fgit.Options{URL: root, Branch: branch, Dir: workDir, Logger: logger}}
	return src, func() { _ = src.Close() }, nil
}

// observedLine says what a plan was computed against.
func observedLine(mode fleetsync.ObserveMode, res *fleetsync.Result) string {
	if mode == fleetsync.ObserveLive {
		return "the providers and Rancher, live"
	}
	if res.Previous.From != "" {
		return "recorded status, " + res.Previous.From
	}
	return "nothing: no recorded status"
}

// fleetFileStatus reads the status block of DIR's fleet.yaml leniently, for
// the status branch's name; an unreadable file gives the default.
func fleetFileStatus(root string) *schema.Fleet {
	data, err := os.ReadFile(filepath.Join(root, schema.FleetFile)) //nolint:gosec // the fleet repo the user named
	if err != nil {
		return nil
	}
	var doc struct {
		Status struct {
			Branch string `yaml:"branch"`
		} `yaml:"status"`
	}
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	return &schema.Fleet{Spec: schema.FleetSpec{Status: schema.StatusConfig{Branch: doc.Status.Branch}}}
}
