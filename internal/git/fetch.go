package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// havesPerRef bounds how many first-parent ancestors of each local branch are
// offered to the server as common commits. go-git negotiates in one round, so
// a few ancestors let the server find a common base after a rewrite.
const havesPerRef = 32

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
	// StatusHead is the status branch's head on the remote, from the same
	// reference listing ("" when the branch does not exist). It is set only
	// when status is kept on a branch of its own; StatusListed says so.
	StatusHead   string
	StatusListed bool
}

// Fetch brings the tracked branch up to date from the remote: it lists the
// remote's references, and only when the branch's head is not in the clone
// downloads the missing objects (an incremental fetch of that branch only).
// A work directory found broken since the last call is re-cloned first.
// Fetch changes nothing on the remote and is safe to repeat.
func (r *Repo) Fetch(ctx context.Context) (FetchResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(ctx); err != nil {
		return FetchResult{}, err
	}
	// Packs are compacted after a status push (WriteStatus), at the end of
	// a sync: a webhook-triggered sync should reach the providers without
	// waiting for a repack. A fetch compacts only past twice the limit, for
	// a daemon that pushes no status (--dry-run).
	defer r.compactOverLocked(2 * r.packLimit)
	res, err := r.fetchTrackedLocked(ctx)
	if err != nil && isCorruptLocal(err) {
		// The clone lost objects it had: start over once.
		if rerr := r.recoverLocked(ctx, err); rerr != nil {
			return FetchResult{}, rerr
		}
		res, err = r.fetchTrackedLocked(ctx)
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
	heads, downloaded, err := r.fetchLocked(ctx, "fetch", b)
	if err != nil {
		return FetchResult{}, err
	}
	head := heads[b]
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
	if sb := r.opts.StatusBranch; sb != b {
		res.StatusListed = true
		if ref, ok := r.advertised[plumbing.NewBranchReferenceName(sb)]; ok {
			res.StatusHead = ref.Hash().String()
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

// fetchLocked lists the remote's references and downloads what the clone
// lacks of the given branches, in one upload-pack session. It returns each
// branch's remote head (zero when the branch does not exist) and updates the
// clone's tracking references to them.
func (r *Repo) fetchLocked(ctx context.Context, op string, branches ...string) (map[string]plumbing.Hash, bool, error) {
	errBranch := branches[0]
	ctx, cancel := r.bound(ctx, op)
	defer cancel()
	sess, secrets, err := r.remote.uploadPack(ctx)
	if err != nil {
		return nil, false, r.errf(op, errBranch, r.timedOut(ctx, op, err), secrets...)
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			r.advertised = nil
			return map[string]plumbing.Hash{}, false, nil
		}
		return nil, false, r.errf(op, errBranch, r.timedOut(ctx, op, err), secrets...)
	}
	refs, err := ar.AllReferences()
	if err != nil {
		return nil, false, r.errf(op, errBranch, err, secrets...)
	}
	r.advertised = refs
	heads := make(map[string]plumbing.Hash, len(branches))
	var wants []plumbing.Hash
	for _, b := range branches {
		ref, ok := refs[plumbing.NewBranchReferenceName(b)]
		if !ok {
			heads[b] = plumbing.ZeroHash
			continue
		}
		heads[b] = ref.Hash()
		if r.st.HasEncodedObject(ref.Hash()) != nil {
			wants = append(wants, ref.Hash())
		}
	}
	downloaded := false
	if len(wants) > 0 {
		req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
		// A pack that is complete on its own is indexed without looking
		// up delta bases in the clone.
		req.Capabilities.Delete(capability.ThinPack)
		if ar.Capabilities.Supports(capability.NoProgress) {
			_ = req.Capabilities.Set(capability.NoProgress)
		}
		req.Wants = wants
		req.Haves = r.haves()
		resp, err := sess.UploadPack(ctx, req)
		if err != nil {
			return nil, false, r.errf(op, errBranch, r.timedOut(ctx, op, err), secrets...)
		}
		rd := sidebandReader(req.Capabilities, resp)
		err = packfile.UpdateObjectStorage(r.st, rd)
		_ = resp.Close()
		if err != nil {
			if terr := r.timedOut(ctx, op, err); terr != err {
				return nil, false, r.errf(op, errBranch, terr)
			}
			return nil, false, r.errf(op, errBranch, fmt.Errorf("receive pack: %w", err), secrets...)
		}
		for _, h := range wants {
			if err := r.st.HasEncodedObject(h); err != nil {
				return nil, false, r.errf(op, errBranch, fmt.Errorf("commit %s missing after fetch", h))
			}
		}
		downloaded = true
	}
	for _, b := range branches {
		name := trackingRef(b)
		if heads[b].IsZero() {
			_ = r.st.RemoveReference(name)
			continue
		}
		if r.localHead(b) == heads[b] {
			continue
		}
		if err := r.st.SetReference(plumbing.NewHashReference(name, heads[b])); err != nil {
			return nil, false, r.errf(op, b, fmt.Errorf("update ref: %w", err))
		}
	}
	return heads, downloaded, nil
}

func sidebandReader(caps *capability.List, resp *packp.UploadPackResponse) io.Reader {
	switch {
	case caps.Supports(capability.Sideband64k):
		return sideband.NewDemuxer(sideband.Sideband64k, resp)
	case caps.Supports(capability.Sideband):
		return sideband.NewDemuxer(sideband.Sideband, resp)
	}
	return resp
}

// haves lists the clone's branch heads and a few of their ancestors.
func (r *Repo) haves() []plumbing.Hash {
	seen := map[plumbing.Hash]bool{}
	var out []plumbing.Hash
	iter, err := r.st.IterReferences()
	if err != nil {
		return nil
	}
	_ = iter.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference || !ref.Name().IsRemote() {
			return nil
		}
		h := ref.Hash()
		for i := 0; i < havesPerRef && !seen[h]; i++ {
			c, err := object.GetCommit(r.st, h)
			if err != nil {
				break // haves are a hint to the server: fewer is only slower
			}
			seen[h] = true
			out = append(out, h)
			if len(c.ParentHashes) == 0 {
				break
			}
			h = c.ParentHashes[0]
		}
		return nil //nolint:nilerr // a missing ancestor only shortens the haves
	})
	return out
}
