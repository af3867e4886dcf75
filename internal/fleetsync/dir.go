package fleetsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	gogit "github.com/go-git/go-git/v5"

	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// DirSource is a fleet repo checked out in a directory a person works in:
// the merge request pipeline's clone, a laptop, or a plain directory without
// git. The desired state is the directory's files as they are; the safety
// facts come from the history of the clone's HEAD when the directory is in a
// clone.
type DirSource struct {
	// Dir is the fleet repo's root directory.
	Dir string
	// StatusRef names the revision of the clone to read status/ from
	// (default: see ReadStatus).
	StatusRef string
	// AllowMissingStatus lets ReadStatus answer "no recorded status" in a
	// clone whose status branch cannot be read, instead of failing.
	AllowMissingStatus bool

	local  *fgit.Local
	prefix string // Dir relative to the clone's root, "" at the root
	head   string
	branch string
	gitErr error
}

// ErrNoStatus is returned by DirSource.ReadStatus in a clone whose status
// cannot be read, unless AllowMissingStatus is set.
var ErrNoStatus = errors.New("no recorded status")

func (s *DirSource) openGit() {
	if s.local != nil || s.gitErr != nil {
		return
	}
	l, err := fgit.OpenLocal(s.Dir)
	if err != nil {
		if errors.Is(err, gogit.ErrRepositoryNotExists) {
			err = fmt.Errorf("%s is not in a git clone", s.Dir)
		}
		s.gitErr = err
		return
	}
	head, branch, err := l.Head()
	if err != nil {
		s.gitErr = fmt.Errorf("%s: the clone has no commit: %w", s.Dir, err)
		return
	}
	if s.prefix, err = l.Rel(s.Dir); err != nil {
		s.gitErr = err
		return
	}
	s.local, s.head, s.branch = l, head, branch
}

// InClone reports whether Dir is in a git clone with a commit.
func (s *DirSource) InClone() bool {
	s.openGit()
	return s.local != nil
}

// Snapshot reads the directory; history is that of the clone's HEAD.
func (s *DirSource) Snapshot(context.Context) (*Snapshot, error) {
	if info, err := os.Stat(s.Dir); err != nil {
		return nil, err
	} else if !info.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", s.Dir)
	}
	s.openGit()
	snap := &Snapshot{FS: os.DirFS(s.Dir), Describe: "the files in " + s.Dir, Changed: true, WorkTree: true}
	if s.local == nil {
		snap.HistoryError = s.gitErr.Error()
		return snap, nil
	}
	snap.Revision, snap.Head = s.head, s.head
	snap.History, snap.HistoryCommit, snap.Prefix = s.local, s.head, s.prefix
	snap.Describe = fmt.Sprintf("the files in %s (HEAD %s", s.Dir, short(s.head))
	if s.branch != "" {
		snap.Describe += " of " + s.branch
	}
	snap.Describe += ")"
	return snap, nil
}

// ReadStatus reads the previous status: from StatusRef when given; in a
// clone, from status/ of HEAD when status is kept on the checked-out branch,
// else from origin/<status branch>, else from the local <status branch>; in
// a directory without git, from DIR/status/. In a clone where none can be
// read it fails with ErrNoStatus unless AllowMissingStatus; without git and
// without DIR/status/, the status is empty and Warning says so.
func (s *DirSource) ReadStatus(ctx context.Context, fleet *schema.Fleet) (RecordedStatus, error) {
	s.openGit()
	readRev := func(rev string) (RecordedStatus, error) {
		commit, err := s.local.Resolve(rev)
		if err != nil {
			return RecordedStatus{}, err
		}
		files, err := fgit.ReadLocalFiles(s.Dir, commit, reconcile.StatusDir)
		if err != nil {
			return RecordedStatus{}, err
		}
		return RecordedStatus{Files: files, From: fmt.Sprintf("%s @ %s", rev, short(commit))}, nil
	}
	if s.StatusRef != "" {
		if s.local == nil {
			return RecordedStatus{}, fmt.Errorf("--status-ref %s: %w", s.StatusRef, s.gitErr)
		}
		rs, err := readRev(s.StatusRef)
		if err != nil {
			return RecordedStatus{}, fmt.Errorf("cannot read status from %s: %w", s.StatusRef, err)
		}
		return rs, nil
	}
	if s.local == nil {
		files, err := readStatusDir(s.Dir)
		if err != nil {
			return RecordedStatus{}, err
		}
		if files == nil {
			return RecordedStatus{Warning: "no recorded status: " + s.gitErr.Error() + " and has no status/ folder, so the plan creates everything"}, nil
		}
		return RecordedStatus{Files: files, From: filepath.Join(s.Dir, reconcile.StatusDir) + "/"}, nil
	}
	sb := fleet.StatusBranch()
	var tried []string
	if sb == s.branch {
		return readRev("HEAD")
	}
	for _, rev := range []string{"origin/" + sb, sb} {
		rs, err := readRev(rev)
		if err == nil {
			return rs, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v", rev, err))
	}
	why := fmt.Sprintf("the status branch %s cannot be read (%s)", sb, strings.Join(tried, "; "))
	if !s.AllowMissingStatus {
		// A plain `git fetch origin <branch>` of a single-branch clone
		// (CI's) updates FETCH_HEAD only: name the refspec that makes
		// origin/<branch>.
		return RecordedStatus{}, fmt.Errorf("%w: %s; fetch it (git fetch origin +refs/heads/%s:refs/remotes/origin/%s), name another revision with --status-ref, or plan against an empty world with --allow-missing-status", ErrNoStatus, why, sb, sb)
	}
	return RecordedStatus{Warning: "no recorded status: " + why + ": planning the creation of everything"}, nil
}

// WriteStatus writes DIR/status/ (for `fleetd apply` on a directory that is
// not a clone): it makes it hold exactly files, writing only what differs.
// A status path that is a symbolic link anywhere is refused, so nothing is
// ever written outside DIR/status/.
func (s *DirSource) WriteStatus(_ context.Context, _ *schema.Fleet, files map[string][]byte, _ fgit.Message) (string, bool, error) {
	changed, err := writeStatusDir(s.Dir, files)
	return "", changed, err
}

// readStatusDir reads DIR/status/ from disk; nil when there is none. A
// symbolic link in it is an error.
func readStatusDir(dir string) (map[string][]byte, error) {
	base := filepath.Join(dir, reconcile.StatusDir)
	info, err := os.Lstat(base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	case info.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("%s is a symbolic link: status is never read or written through links", base)
	case !info.IsDir():
		return nil, fmt.Errorf("%s is not a folder", base)
	}
	files := map[string][]byte{}
	err = filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link: status is never read or written through links", p)
		}
		if e.IsDir() || !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p) //nolint:gosec // p is below DIR/status, and no link is followed
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", base, err)
	}
	return files, nil
}

// writeStatusDir makes DIR/status/ hold exactly files. It refuses a status
// path that is a symbolic link, and writes through an os.Root of status/, so
// no path can make it write or remove anything outside. Only the files
// fleetd writes (status/SUMMARY.md and status/<team>/<cluster>.yaml) are
// removed when gone; anything else there is left alone.
func writeStatusDir(dir string, files map[string][]byte) (bool, error) {
	base := filepath.Join(dir, reconcile.StatusDir)
	if info, err := os.Lstat(base); err == nil && info.Mode()&fs.ModeSymlink != 0 {
		return false, fmt.Errorf("write status: %s is a symbolic link: refusing to write through it", base)
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return false, fmt.Errorf("write status: %w", err)
	}
	// Every link below status/ is refused too, before anything is written.
	if _, err := readStatusDir(dir); err != nil {
		return false, fmt.Errorf("write status: %w", err)
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		return false, fmt.Errorf("write status: %w", err)
	}
	defer root.Close()
	keep := make(map[string]bool, len(files))
	paths := make([]string, 0, len(files))
	for p := range files {
		rel, ok := strings.CutPrefix(p, reconcile.StatusDir+"/")
		if !ok || !fs.ValidPath(rel) {
			return false, fmt.Errorf("write status: %s is not in %s/", p, reconcile.StatusDir)
		}
		keep[rel] = true
		paths = append(paths, p)
	}
	slices.Sort(paths)
	changed := false
	for _, p := range paths {
		rel := strings.TrimPrefix(p, reconcile.StatusDir+"/")
		if old, err := root.ReadFile(rel); err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		changed = true
		if err := root.MkdirAll(path.Dir(rel), 0o755); err != nil {
			return changed, fmt.Errorf("write status: %w", err)
		}
		tmp := rel + ".tmp"
		if err := root.WriteFile(tmp, files[p], 0o644); err != nil {
			return changed, fmt.Errorf("write status: %w", err)
		}
		if err := root.Rename(tmp, rel); err != nil {
			return changed, fmt.Errorf("write status: %w", err)
		}
	}
	err = fs.WalkDir(root.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() || !strings.HasSuffix(p, ".yaml") || strings.Count(p, "/") != 1 {
			return nil
		}
		if !keep[p] {
			changed = true
			return root.Remove(p)
		}
		return nil
	})
	if err != nil {
		return changed, fmt.Errorf("clean status: %w", err)
	}
	return changed, nil
}
