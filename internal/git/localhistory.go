package git

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// LocalCreationTimes returns, for every file below prefix in the commit
// checked out in the git clone that contains dir, the commit time of the
// commit on HEAD's first-parent history that added it, as CreationTimes does
// for a kept clone. prefix is relative to dir and keys are slash-separated
// paths relative to dir; files not committed yet are absent. It returns
// gogit.ErrRepositoryNotExists when dir is in no clone, and an error when the
// history cannot be read whole (a shallow clone). It changes nothing.
func LocalCreationTimes(ctx context.Context, dir, prefix string) (map[string]time.Time, error) {
	l, err := OpenLocal(dir)
	if err != nil {
		return nil, err
	}
	rel, err := l.Rel(dir)
	if err != nil {
		return nil, err
	}
	head, _, err := l.Head()
	if err != nil {
		return nil, err
	}
	h, err := l.History(ctx, head, path.Join(rel, prefix))
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(h.Files))
	for p, f := range h.Files {
		if rel != "" {
			p = strings.TrimPrefix(p, rel+"/")
		}
		out[p] = f.Created
	}
	return out, nil
}

// LocalRoot returns the top folder of the git clone that contains dir, or ""
// when dir is in no clone. Reports that name files by their path in the
// repository (GitLab Code Quality) join it with paths below dir.
func LocalRoot(dir string) string {
	l, err := OpenLocal(dir)
	if err != nil {
		return ""
	}
	return l.Root()
}

// Rel returns dir's path inside the clone, slash-separated ("" at the
// clone's root), so history paths of the clone can be matched with paths
// below dir. Symbolic links in either path are resolved first.
func (l *Local) Rel(dir string) (string, error) {
	if l.root == "" {
		return "", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	root := l.root
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("git: %s is outside its clone %s", dir, l.root)
	}
	if rel == "." {
		return "", nil
	}
	return filepath.ToSlash(rel), nil
}
