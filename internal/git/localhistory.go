package git

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// LocalCreationTimes returns, for every file below prefix in the commit
// checked out in the git clone that contains dir, the commit time of the
// commit on HEAD's first-parent history that added it, as CreationTimes does
// for a kept clone. prefix is relative to dir and keys are slash-separated
// paths relative to dir; files not committed yet are absent. It returns
// gogit.ErrRepositoryNotExists when dir is in no clone, and an error when the
// history cannot be read whole (a shallow clone). It changes nothing.
func LocalCreationTimes(ctx context.Context, dir, prefix string) (map[string]time.Time, error) {
	repo, err := gogit.PlainOpenWithOptions(dir, &gogit.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", dir, err)
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(wt.Filesystem.Root(), absDir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("git: %s is outside its clone %s", dir, wt.Filesystem.Root())
	}
	rel = filepath.ToSlash(rel)
	base := strings.Trim(path.Clean(path.Join(rel, prefix)), "/")
	head, err := repo.Head()
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", dir, err)
	}
	var chain []chainLink
	for cur, n := head.Hash(), 0; ; n++ {
		if n%256 == 255 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		c, err := object.GetCommit(repo.Storer, cur)
		if err != nil {
			return nil, fmt.Errorf("git: %s: read commit %s (a shallow clone?): %w", dir, cur, err)
		}
		chain = append(chain, chainLink{tree: c.TreeHash, when: c.Committer.When})
		if len(c.ParentHashes) == 0 {
			break
		}
		cur = c.ParentHashes[0]
	}
	tc := newTreeCache(repo.Storer)
	times := map[string]time.Time{}
	prev := plumbing.ZeroHash
	for i := len(chain) - 1; i >= 0; i-- {
		tc.step()
		sub, err := tc.subtree(chain[i].tree, base)
		if err != nil {
			return nil, fmt.Errorf("git: %s: %w", dir, err)
		}
		if sub == prev {
			continue
		}
		when := chain[i].when
		err = tc.diff(prev, sub, base, func(p string, old, cur *object.TreeEntry) error {
			switch {
			case old == nil:
				times[p] = when
			case cur == nil:
				delete(times, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("git: %s: %w", dir, err)
		}
		prev = sub
	}
	if rel == "." || rel == "" {
		return times, nil
	}
	out := make(map[string]time.Time, len(times))
	for p, t := range times {
		out[strings.TrimPrefix(p, rel+"/")] = t
	}
	return out, nil
}

// LocalRoot returns the top folder of the git clone that contains dir, or ""
// when dir is in no clone. Reports that name files by their path in the
// repository (GitLab Code Quality) join it with paths below dir.
func LocalRoot(dir string) string {
	repo, err := gogit.PlainOpenWithOptions(dir, &gogit.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return ""
	}
	wt, err := repo.Worktree()
	if err != nil {
		return ""
	}
	return wt.Filesystem.Root()
}
