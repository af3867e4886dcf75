package git

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// FetchResult is what a Fetch found on the tracked branch.
type FetchResult struct {
	// Head is the branch's commit on the remote, now in the clone.
	Head string
	// Previous is the Head of the previous successful Fetch of this Repo,
	// "" for the first.
	Previous string
	// Changed reports Head != Previous.
	Changed bool
	// Downloaded reports that objects were fetched (Head was new to the
	// clone). An unchanged remote costs one reference listing and downloads
	// nothing.
	Downloaded bool
	// Desired is the newest commit on Head's first-parent history that
	// changed something outside status/. When status is written to the
	// tracked branch, fleetd's own status commits leave it unchanged, so they
	// never trigger a sync. Status files record Desired as the spec commit.
	Desired string
	// DesiredChanged reports Desired != the previous Fetch's Desired (true
	// for the first Fetch).
	DesiredChanged bool
	// Time is Head's commit time.
	Time time.Time
	// Rewritten reports that Previous is not an ancestor of Head: the
	// branch was force-pushed (or reset) since the previous Fetch. The
	// commits' dates of a rewritten history are whatever the pusher chose.
	Rewritten bool
	// StatusHead is the status branch's head on the remote, fetched in the
	// same exchange ("" when the branch was deleted). It is set only when
	// status is kept on a branch of its own that the clone already follows
	// (fleetd wrote or read it); StatusListed says so.
	StatusHead   string
	StatusListed bool
}

// Fetch brings the tracked branch up to date from the remote: it lists the
// remote's references, and only when the branch's head is not in the clone
// downloads the missing objects (an incremental fetch of that branch, and of
// the status branch when the clone follows it and someone else moved it).
// A work directory found broken since the last call is re-cloned first.
// Fetch changes nothing on the remote and is safe to repeat.
func (r *Repo) Fetch(ctx context.Context) (FetchResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(ctx); err != nil {
		return FetchResult{}, err
	}
	res, err := r.fetchTrackedLocked(ctx)
	if err != nil && isCorruptLocal(err) {
		// The clone lost objects it had: start over once.
		if rerr := r.recoverLocked(ctx, err); rerr != nil {
			return FetchResult{}, rerr
		}
		res, err = r.fetchTrackedLocked(ctx)
	}
	// Packs are compacted when nothing waits for the sync: after a poll
	// that found the branch unchanged. A sync that a push triggered should
	// reach the providers without waiting for a repack; it compacts only
	// past twice the limit (a remote that changes at every poll).
	if err == nil && !res.Changed {
		r.compactLocked(r.packLimit)
	} else {
		r.compactLocked(2 * r.packLimit)
	}
	return res, err
}

// isAncestor reports whether commit old is reachable from head (any
// parent, not only the first: a merge that brings old in as its second
// parent is still a fast-forward of the remote branch).
func (r *Repo) isAncestor(old plumbing.Hash, head *object.Commit) (bool, error) {
	oc, err := object.GetCommit(r.st, old)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		// The previous head is gone from the clone (re-cloned since): the
		// branch moved in a way this clone cannot follow.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read commit %s: %w", old, err)
	}
	return oc.IsAncestor(head)
}

func isCorruptLocal(err error) bool {
	var c *corruptError
	return errors.As(err, &c)
}

func (r *Repo) fetchTrackedLocked(ctx context.Context) (FetchResult, error) {
	b := r.opts.Branch
	branches := []string{b}
	sb := r.opts.StatusBranch
	statusListed := sb != b && !r.localHead(sb).IsZero()
	if statusListed {
		branches = append(branches, sb)
	}
	before := r.localHead(b)
	heads, downloaded, err := r.fetchLocked(ctx, "fetch", branches...)
	if err != nil {
		return FetchResult{}, err
	}
	head := heads[b]
	// A pack may hold only the status branch's new commits.
	downloaded = downloaded && head != before
	if head.IsZero() {
		return FetchResult{}, r.errf("fetch", b, ErrBranchNotFound)
	}
	c, err := object.GetCommit(r.st, head)
	if err != nil {
		return FetchResult{}, r.errf("fetch", b, &corruptError{fmt.Errorf("read commit %s: %w", head, err)})
	}
	desired, err := r.desiredCommit(ctx, head, r.lastHead, r.lastDesired)
	if err != nil {
		return FetchResult{}, r.errf("fetch", b, &corruptError{err})
	}
	res := FetchResult{
		Head:           head.String(),
		Changed:        head != r.lastHead,
		Downloaded:     downloaded,
		Desired:        desired.String(),
		DesiredChanged: desired != r.lastDesired,
		Time:           c.Committer.When,
	}
	if !r.lastHead.IsZero() {
		res.Previous = r.lastHead.String()
		if res.Changed {
			ff, err := r.isAncestor(r.lastHead, c)
			if err != nil {
				return FetchResult{}, r.errf("fetch", b, &corruptError{err})
			}
			res.Rewritten = !ff
		}
	}
	if statusListed {
		res.StatusListed = true
		if h := heads[sb]; !h.IsZero() {
			res.StatusHead = h.String()
		}
	}
	if res.Changed {
		r.log.Info("Fetched fleet repo", "commit", res.Head, "desired", res.Desired, "downloaded", downloaded)
	} else {
		r.log.Debug("Fleet repo unchanged", "commit", res.Head)
	}
	r.lastHead, r.lastDesired = head, desired
	return res, nil
}

// fetchLocked brings the given branches from the remote with go-git's
// Remote.FetchContext, in one upload-pack session: one reference listing,
// and a download only of what the clone lacks. Each branch is fetched into
// its tracking reference, forced (a rewritten branch is followed; Fetch
// tells it apart). A branch missing on the remote has its tracking
// reference removed. It returns each branch's remote head (zero when the
// branch does not exist) and whether a pack was downloaded.
//
// The first branch is the one the caller needs; the others are optional:
// when the remote lacks one of them, the fetch is made again without them
// (go-git fails a fetch whose ref specification matches nothing), which
// costs a second listing only then.
func (r *Repo) fetchLocked(ctx context.Context, op string, branches ...string) (map[string]plumbing.Hash, bool, error) {
	errBranch := branches[0]
	ctx, cancel := r.bound(ctx, op)
	defer cancel()
	auth, secrets, err := r.remote.authMethod(ctx)
	if err != nil {
		return nil, false, r.errf(op, errBranch, err, secrets...)
	}
	packsBefore, err := r.st.ObjectPacks()
	if err != nil {
		return nil, false, r.errf(op, errBranch, &corruptError{fmt.Errorf("list packs: %w", err)})
	}
	heads := make(map[string]plumbing.Hash, len(branches))
	fetched := branches
	for {
		err = r.remote.fetch(ctx, r.st, auth, fetched)
		var nomatch gogit.NoMatchingRefSpecError
		if !errors.As(err, &nomatch) || len(fetched) == 1 {
			break
		}
		fetched = fetched[:1]
	}
	switch {
	case err == nil, errors.Is(err, gogit.NoErrAlreadyUpToDate):
	case errors.Is(err, transport.ErrEmptyRemoteRepository), errors.As(err, new(gogit.NoMatchingRefSpecError)):
		// None of the branches exists (len(fetched) == 1 here).
		fetched = nil
	default:
		if terr := r.timedOut(ctx, op, err); terr != err {
			return nil, false, r.errf(op, errBranch, terr)
		}
		return nil, false, r.errf(op, errBranch, err, secrets...)
	}
	for _, b := range branches {
		if !slices.Contains(fetched, b) {
			heads[b] = plumbing.ZeroHash
			if err := r.st.RemoveReference(trackingRef(b)); err != nil {
				return nil, false, r.errf(op, b, fmt.Errorf("remove ref: %w", err))
			}
			continue
		}
		h := r.localHead(b)
		if err := r.st.HasEncodedObject(h); h.IsZero() || err != nil {
			return nil, false, r.errf(op, b, fmt.Errorf("commit %s missing after fetch", h))
		}
		heads[b] = h
	}
	packsAfter, err := r.st.ObjectPacks()
	if err != nil {
		return nil, false, r.errf(op, errBranch, &corruptError{fmt.Errorf("list packs: %w", err)})
	}
	return heads, len(packsAfter) > len(packsBefore), nil
}
