package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// ErrShallow says a history walk reached a commit whose parents the clone
// does not have: facts that need the whole history cannot be established.
var ErrShallow = errors.New("the clone's history is shallow")

// maxPrior bounds how many earlier contents of a file History keeps: enough
// to find the last valid version of a file broken by a few commits in a row.
const maxPrior = 8

// Version is one content of a file in history.
type Version struct {
	// Blob is the content's object.
	Blob string
	// Commit is the newest commit of the first-parent history that had it.
	Commit string
}

// FileFacts are the history of a file present at the walked commit.
type FileFacts struct {
	// Created is the commit time of the commit that created the file (its
	// latest creation when it was removed and added again).
	Created time.Time
	// CreatedBy is that commit.
	CreatedBy string
	// ChangedBy is the newest commit that changed the file's content.
	ChangedBy string
	// Blob is the file's content at the walked commit.
	Blob string
	// Prior are earlier contents, newest first, at most 8.
	Prior []Version
}

// Removal is a file that existed in the history and is absent at the
// walked commit.
type Removal struct {
	// By is the commit that removed the file (its latest removal).
	By string
	// At is By's commit time.
	At time.Time
	// Last is the content the file had just before By.
	Last Version
}

// History is what the first-parent history of a commit says about the files
// under a prefix: facts that nobody can edit by accident, for decisions that
// destroy things.
type History struct {
	// Commit is the walked commit.
	Commit string
	// Files are the files present at Commit, by path.
	Files map[string]FileFacts
	// Removed are the files removed since they were last added, by path.
	Removed map[string]Removal
}

// historyCache is the History of one prefix at one commit, kept to make the
// next walk incremental.
type historyCache struct {
	commit  plumbing.Hash
	files   map[string]FileFacts
	removed map[string]Removal
}

func (c *historyCache) history() *History {
	return &History{Commit: c.commit.String(), Files: maps.Clone(c.files), Removed: maps.Clone(c.removed)}
}

type chainLink struct {
	hash plumbing.Hash
	tree plumbing.Hash
	when time.Time
}

// walkHistory replays head's first-parent history under prefix on top of
// base (when base.commit is an ancestor of head), else from the root commit.
// It reads objects from st and fails with ErrShallow when the history ends
// at a shallow boundary rather than at a root commit.
func walkHistory(ctx context.Context, st storer.EncodedObjectStorer, shallow map[plumbing.Hash]bool, head plumbing.Hash, prefix string, base *historyCache) (*historyCache, error) {
	if base != nil && base.commit == head {
		return base, nil
	}
	var chain []chainLink
	var from *historyCache
	for cur, n := head, 0; ; n++ {
		if base != nil && cur == base.commit {
			from = base
			break
		}
		if n%256 == 255 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		c, err := object.GetCommit(st, cur)
		if err != nil {
			if errors.Is(err, plumbing.ErrObjectNotFound) && len(chain) > 0 {
				return nil, fmt.Errorf("%w: commit %s is missing", ErrShallow, cur)
			}
			return nil, fmt.Errorf("read commit %s: %w", cur, err)
		}
		chain = append(chain, chainLink{hash: c.Hash, tree: c.TreeHash, when: c.Committer.When})
		if shallow[cur] {
			return nil, fmt.Errorf("%w: it ends at %s", ErrShallow, cur)
		}
		if len(c.ParentHashes) == 0 {
			break
		}
		cur = c.ParentHashes[0]
	}
	tc := newTreeCache(st)
	out := &historyCache{commit: head, files: map[string]FileFacts{}, removed: map[string]Removal{}}
	prevTree, prevCommit := plumbing.ZeroHash, plumbing.ZeroHash
	if from != nil {
		out.files, out.removed = maps.Clone(from.files), maps.Clone(from.removed)
		bc, err := object.GetCommit(st, from.commit)
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", from.commit, err)
		}
		if prevTree, err = tc.subtree(bc.TreeHash, prefix); err != nil {
			return nil, err
		}
		prevCommit = from.commit
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if i%256 == 255 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		link := chain[i]
		tc.step()
		sub, err := tc.subtree(link.tree, prefix)
		if err != nil {
			return nil, err
		}
		if sub != prevTree {
			commit, parent := link.hash.String(), prevCommit.String()
			err = tc.diff(prevTree, sub, prefix, func(path string, old, cur *object.TreeEntry) error {
				switch {
				case old == nil:
					out.files[path] = FileFacts{Created: link.when, CreatedBy: commit, ChangedBy: commit, Blob: cur.Hash.String()}
					delete(out.removed, path)
				case cur == nil:
					out.removed[path] = Removal{By: commit, At: link.when, Last: Version{Blob: old.Hash.String(), Commit: parent}}
					delete(out.files, path)
				default:
					f := out.files[path]
					prior := make([]Version, 0, min(len(f.Prior)+1, maxPrior))
					prior = append(prior, Version{Blob: old.Hash.String(), Commit: parent})
					prior = append(prior, f.Prior[:min(len(f.Prior), maxPrior-1)]...)
					f.Prior, f.ChangedBy, f.Blob = prior, commit, cur.Hash.String()
					out.files[path] = f
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			prevTree = sub
		}
		prevCommit = link.hash
	}
	return out, nil
}

// shallowSet returns the clone's shallow commits.
func shallowSet(st storer.ShallowStorer) map[plumbing.Hash]bool {
	hs, err := st.Shallow()
	if err != nil || len(hs) == 0 {
		return nil
	}
	m := make(map[plumbing.Hash]bool, len(hs))
	for _, h := range hs {
		m[h] = true
	}
	return m
}

// History walks commit's first-parent history under prefix (for example
// "clusters/"): when each present file was created and last changed, its
// earlier contents, and which files were removed by which commit. The walk is
// incremental: a later commit replays only the commits since the last call
// for the same prefix. It fails, wrapping ErrShallow, when the clone lacks
// part of the history. The result is the caller's.
func (r *Repo) History(ctx context.Context, commit, prefix string) (*History, error) {
	h, err := parseHash(commit)
	if err != nil {
		return nil, fmt.Errorf("git: history: %w", err)
	}
	prefix = strings.Trim(prefix, "/")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("git: repo is closed")
	}
	c, err := walkHistory(ctx, r.st, shallowSet(r.st), h, prefix, r.history[prefix])
	if err != nil {
		r.noteCorrupt(err)
		return nil, fmt.Errorf("git: history of %s/ at %s: %w", prefix, h, err)
	}
	r.history[prefix] = c
	return c.history(), nil
}

// CreationTimes returns, for every file under prefix (for example
// "clusters/") in commit, the commit time of the commit that created it: the
// commit on the branch's first-parent history whose change added the path.
// A merge request's files get the time it was merged. A path deleted and
// added again counts from its re-creation. It shares History's incremental
// walk. The returned map is the caller's.
func (r *Repo) CreationTimes(ctx context.Context, commit, prefix string) (map[string]time.Time, error) {
	hist, err := r.History(ctx, commit, prefix)
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(hist.Files))
	for p, f := range hist.Files {
		out[p] = f.Created
	}
	return out, nil
}

// Blob returns the content of a blob of the clone, at most 1 MiB.
func (r *Repo) Blob(ctx context.Context, hash string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := parseHash(hash)
	if err != nil {
		return nil, fmt.Errorf("git: read blob: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("git: repo is closed")
	}
	return readBlob(r.st, h)
}

func readBlob(st storer.EncodedObjectStorer, h plumbing.Hash) ([]byte, error) {
	o, err := st.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, fmt.Errorf("git: read blob %s: %w", h, err)
	}
	if o.Size() > maxLocalFile {
		return nil, fmt.Errorf("git: blob %s: %d bytes, more than 1 MiB", h, o.Size())
	}
	rd, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("git: read blob %s: %w", h, err)
	}
	defer rd.Close()
	data, err := io.ReadAll(io.LimitReader(rd, maxLocalFile+1))
	if err != nil {
		return nil, fmt.Errorf("git: read blob %s: %w", h, err)
	}
	return data, nil
}

// Local is a git clone a person works in (the merge request pipeline's
// checkout, a laptop): fleetd reads its history and refs, and never changes
// it.
type Local struct {
	repo *gogit.Repository
	root string
}

// OpenLocal opens the git clone that contains dir. It returns an error
// wrapping gogit.ErrRepositoryNotExists when dir is in no clone.
func OpenLocal(dir string) (*Local, error) {
	repo, err := gogit.PlainOpenWithOptions(dir, &gogit.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", dir, err)
	}
	l := &Local{repo: repo}
	if wt, err := repo.Worktree(); err == nil {
		l.root = wt.Filesystem.Root()
	}
	return l, nil
}

// Root returns the clone's work tree ("" for a bare repository).
func (l *Local) Root() string { return l.root }

// Head returns the checked-out commit and its branch ("" when detached).
func (l *Local) Head() (commit, branch string, err error) {
	ref, err := l.repo.Head()
	if err != nil {
		return "", "", fmt.Errorf("git: read HEAD: %w", err)
	}
	if ref.Name().IsBranch() {
		branch = ref.Name().Short()
	}
	return ref.Hash().String(), branch, nil
}

// Resolve returns the commit a revision (a branch, origin/fleet-status, a
// hash) names, wrapping ErrRevisionNotFound when it names none.
func (l *Local) Resolve(rev string) (string, error) {
	h, err := l.repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", fmt.Errorf("git: %q: %w", rev, ErrRevisionNotFound)
	}
	return h.String(), nil
}

// History is Repo.History for the local clone, without a cache.
func (l *Local) History(ctx context.Context, commit, prefix string) (*History, error) {
	h, err := parseHash(commit)
	if err != nil {
		return nil, fmt.Errorf("git: history: %w", err)
	}
	prefix = strings.Trim(prefix, "/")
	c, err := walkHistory(ctx, l.repo.Storer, shallowSet(l.repo.Storer), h, prefix, nil)
	if err != nil {
		return nil, fmt.Errorf("git: history of %s/ at %s: %w", prefix, h, err)
	}
	return c.history(), nil
}

// Blob returns the content of a blob of the clone, at most 1 MiB.
func (l *Local) Blob(_ context.Context, hash string) ([]byte, error) {
	h, err := parseHash(hash)
	if err != nil {
		return nil, fmt.Errorf("git: read blob: %w", err)
	}
	return readBlob(l.repo.Storer, h)
}

// SeedBranch creates the local branch from the revision from (such as
// origin/fleet-status) when the branch does not exist and from does, so
// that status commits continue the shared history instead of starting an
// orphan branch. It reports whether it created the branch; an existing
// branch is left as it is.
func (l *Local) SeedBranch(branch, from string) (bool, error) {
	name := plumbing.NewBranchReferenceName(branch)
	if err := name.Validate(); err != nil {
		return false, fmt.Errorf("git: invalid branch name %q", branch)
	}
	if _, err := l.repo.Reference(name, false); err == nil {
		return false, nil
	}
	h, err := l.repo.ResolveRevision(plumbing.Revision(from))
	if err != nil {
		return false, nil
	}
	if err := l.repo.Storer.SetReference(plumbing.NewHashReference(name, *h)); err != nil {
		return false, fmt.Errorf("git: create branch %s: %w", branch, err)
	}
	return true, nil
}
