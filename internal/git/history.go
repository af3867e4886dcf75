package git

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// statusDir is the top-level directory fleetd owns in the fleet repo.
const statusDir = "status"

// objectGetter reads objects; the clone's storage and in-memory overlays
// implement it.
type objectGetter interface {
	EncodedObject(plumbing.ObjectType, plumbing.Hash) (plumbing.EncodedObject, error)
}

// readTree decodes tree h; the zero hash is the empty tree.
func readTree(g objectGetter, h plumbing.Hash) (*object.Tree, error) {
	t := &object.Tree{}
	if h.IsZero() {
		return t, nil
	}
	o, err := g.EncodedObject(plumbing.TreeObject, h)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", h, err)
	}
	if err := t.Decode(o); err != nil {
		return nil, fmt.Errorf("decode tree %s: %w", h, err)
	}
	return t, nil
}

func parseHash(s string) (plumbing.Hash, error) {
	if !plumbing.IsHash(s) {
		return plumbing.ZeroHash, fmt.Errorf("invalid commit hash %q", s)
	}
	return plumbing.NewHash(s), nil
}

// sameOutsideStatus reports whether two root trees are equal except for the
// status/ directory.
func sameOutsideStatus(g objectGetter, a, b plumbing.Hash) (bool, error) {
	if a == b {
		return true, nil
	}
	ta, err := readTree(g, a)
	if err != nil {
		return false, err
	}
	tb, err := readTree(g, b)
	if err != nil {
		return false, err
	}
	strip := func(t *object.Tree) map[string]object.TreeEntry {
		m := make(map[string]object.TreeEntry, len(t.Entries))
		for _, e := range t.Entries {
			if e.Name == statusDir && e.Mode == filemode.Dir {
				continue
			}
			m[e.Name] = e
		}
		return m
	}
	return maps.Equal(strip(ta), strip(tb)), nil
}

// desiredCommit walks head's first-parent history back to the newest commit
// that changed something outside status/. Reaching prevHead, whose answer is
// prevDesired, ends the walk early.
func (r *Repo) desiredCommit(ctx context.Context, head, prevHead, prevDesired plumbing.Hash) (plumbing.Hash, error) {
	h := head
	for n := 0; ; n++ {
		if h == prevHead && !prevDesired.IsZero() {
			return prevDesired, nil
		}
		if n%256 == 255 {
			if err := ctx.Err(); err != nil {
				return plumbing.ZeroHash, err
			}
		}
		c, err := object.GetCommit(r.st, h)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read commit %s: %w", h, err)
		}
		if len(c.ParentHashes) == 0 {
			return h, nil
		}
		p, err := object.GetCommit(r.st, c.ParentHashes[0])
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read commit %s: %w", c.ParentHashes[0], err)
		}
		same, err := sameOutsideStatus(r.st, c.TreeHash, p.TreeHash)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if !same {
			return h, nil
		}
		h = p.Hash
	}
}

// DesiredChanged reports whether commit newCommit differs from oldCommit
// anywhere outside status/, that is whether the desired state changed.
// An empty oldCommit always counts as a change. Both commits must be in the
// clone (they are when they came from Fetch).
func (r *Repo) DesiredChanged(ctx context.Context, oldCommit, newCommit string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if oldCommit == "" {
		return true, nil
	}
	if oldCommit == newCommit {
		return false, nil
	}
	oh, err := parseHash(oldCommit)
	if err != nil {
		return false, fmt.Errorf("git: compare commits: %w", err)
	}
	nh, err := parseHash(newCommit)
	if err != nil {
		return false, fmt.Errorf("git: compare commits: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, errors.New("git: repo is closed")
	}
	oc, err := object.GetCommit(r.st, oh)
	if err != nil {
		return false, fmt.Errorf("git: compare commits: read commit %s: %w", oh, err)
	}
	nc, err := object.GetCommit(r.st, nh)
	if err != nil {
		return false, fmt.Errorf("git: compare commits: read commit %s: %w", nh, err)
	}
	same, err := sameOutsideStatus(r.st, oc.TreeHash, nc.TreeHash)
	if err != nil {
		r.noteCorrupt(err)
		return false, fmt.Errorf("git: compare commits %s and %s: %w", oh, nh, err)
	}
	return !same, nil
}
